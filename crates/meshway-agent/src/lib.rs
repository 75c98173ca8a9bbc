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
