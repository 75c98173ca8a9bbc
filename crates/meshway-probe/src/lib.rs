//! Probe wire formats, sans-IO probe state machines and measurement statistics.
//!
//! Pure: nothing here reads a clock or touches a socket. Time comes in as arguments
//! ([`Nanos`](meshway_units::Nanos) since an arbitrary monotonic origin for local events,
//! [`stamp::NtpTimestamp`] for wall-clock stamps carried on the wire); the runtime crate
//! (`meshway-agent`) moves the bytes and sleeps until the next deadline.
//!
//! | module | owns |
//! |---|---|
//! | [`stamp`] | STAMP (RFC 8762) unauthenticated test packets: encode, decode, reflect |
//! | [`stamp_auth`] | STAMP authenticated mode: 112-byte packets with HMAC-SHA-256 |
//! | [`stats`] | log-linear histogram, summary (min/mean/max/stddev/percentiles), the three jitter metrics |
//! | [`forecast`] | least-squares trend, prediction interval, threshold crossing |
//! | [`anomaly`] | seasonal baseline, point anomalies, change points, seasonal capacity forecast |
//! | [`objective`] | sliding windows, objectives, alert hysteresis |
//! | [`optics`] | optical module EEPROM decoding: SFF-8472, SFF-8636, CMIS with VDM/C-CMIS |
//! | [`echo`] | the echo (ping) sender: sequence numbers, deadlines, loss, duplicates, reordering |
//! | [`perf`] | throughput test wire format, UDP pacing, UDP receiver accounting |
//! | [`trace`] | per-hop aggregation of TTL-limited probes, ICMP rate-limit labelling |

pub mod anomaly;
pub mod echo;
pub mod forecast;
pub mod objective;
pub mod optics;
pub mod perf;
pub mod stamp;
pub mod stamp_auth;
pub mod stats;
pub mod trace;
