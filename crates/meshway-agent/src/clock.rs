//! The one place that reads the wall and monotonic clocks (see STYLE.md: pure crates take
//! time as an argument; this runtime crate hands it to them).
#![allow(clippy::disallowed_methods)]

use meshway_probe::stamp::NtpTimestamp;
use meshway_units::Nanos;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Monotonic time since the first call in this process.
pub fn mono() -> Nanos {
    Nanos(origin().elapsed().as_nanos() as u64)
}

/// Wall-clock time as nanoseconds since the Unix epoch (0 before 1970).
pub fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Wall-clock time as an NTP timestamp (STAMP's default format).
pub fn ntp() -> NtpTimestamp {
    NtpTimestamp::from_unix_nanos(unix_nanos())
}

/// The standard library's duration from a span.
pub fn dur(n: Nanos) -> std::time::Duration {
    std::time::Duration::from_nanos(n.get())
}

/// Process CPU time (user + system) in nanoseconds, from /proc/self/stat (clock ticks of
/// 10 ms, the Linux USER_HZ of 100); `None` where /proc is missing.
pub fn process_cpu_nanos() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the state.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * 10_000_000)
}

/// Measures process CPU use over an interval, as a percentage of one core.
pub struct CpuMeter {
    cpu0: Option<u64>,
    wall0: Nanos,
}

impl CpuMeter {
    pub fn start() -> CpuMeter {
        CpuMeter { cpu0: process_cpu_nanos(), wall0: mono() }
    }

    pub fn percent(&self) -> f64 {
        let wall = mono().saturating_sub(self.wall0).get();
        match (self.cpu0, process_cpu_nanos()) {
            (Some(a), Some(b)) if wall > 0 => b.saturating_sub(a) as f64 / wall as f64 * 100.0,
            _ => 0.0,
        }
    }
}
