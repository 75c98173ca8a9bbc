//! The meshway runtime: the one crate that owns sockets, timers and clocks. Protocol logic
//! and statistics live in `meshway-probe` (pure); this crate moves bytes and sleeps until the
//! next deadline. Library code never prints: commands return reports and pass events to
//! callbacks.
//!
//! Threads and `poll(2)` for measurement: each command is a handful of blocking loops, and the
//! agent's udp probes share one event loop (`udp_core`), which keeps timing easy to reason
//! about. The one async runtime is HTTP's: hyper on a current-thread tokio runtime in the
//! `http-accept` thread (`http`), and one per webhook delivery.

pub mod agent;
pub mod clock;
pub mod config;
pub mod expo;
pub mod history;
pub mod http;
pub mod iface;
pub mod kstamp;
pub mod monitor;
pub mod netlink;
pub mod optics;
pub mod perf;
pub mod ping;
pub mod reflect;
pub mod signals;
pub mod store;
pub mod tls;
pub mod trace;
pub mod udp_core;

/// Reads a small file the user named (a key, a certificate, a module image): a regular file,
/// or with `pipes` also a pipe (`--key-file <(...)` in a shell), never a device; at most `max`
/// bytes. So `/dev/zero` given by mistake is an error at once instead of exhausted memory,
/// and a FIFO where a file is expected is not waited on.
pub fn read_regular(path: &std::path::Path, max: u64, pipes: bool) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::metadata(path)?.file_type();
    if !(t.is_file() || (pipes && t.is_fifo())) {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut data = Vec::new();
    std::fs::File::open(path)?.take(max + 1).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        return Err(Error::new(ErrorKind::InvalidData, format!("larger than {max} bytes")));
    }
    Ok(data)
}

/// Largest key, certificate or CA file read: 1 MiB (an assumption; real ones are a few KiB).
pub const MAX_SMALL_FILE: u64 = 1 << 20;
