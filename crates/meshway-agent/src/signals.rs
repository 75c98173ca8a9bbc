//! Signal flags: SIGINT and SIGTERM ask a command to stop (and print its summary); SIGHUP asks
//! the agent to reload its configuration.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Flags set by signals, polled by the loops.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    pub stop: Arc<AtomicBool>,
    pub reload: Arc<AtomicBool>,
}

impl Signals {
    /// Registers SIGINT and SIGTERM on `stop` and SIGHUP on `reload`.
    pub fn install() -> std::io::Result<Signals> {
        let s = Signals::default();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, s.stop.clone())?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, s.reload.clone())?;
        Ok(s)
    }
}
