//! Throughput test (`meshway perf`): wire format, UDP pacing and UDP receiver accounting.
//!
//! A test is one TCP control connection plus data connections (TCP) or datagrams (UDP) to the
//! same port number. Every data connection starts with a [`Hello`] (16 bytes: magic `MWPD`,
//! version, stream index, session id) so the server can attach it to its session. Control
//! messages are JSON lines ([`Request`], [`Accept`], [`Finish`], [`ServerResult`]).
//!
//! UDP datagram (at least [`UDP_HEADER_LEN`] bytes, the rest zero padding):
//!
//! ```text
//! | magic "MWPU" (4) | session id (8) | sequence (8) | sender time ns (8) | padding ... |
//! ```
//!
//! The sender time is the sender's monotonic clock since the test started; receivers use only
//! differences of transit times, so the two clocks need not agree (RFC 3550 jitter).

use crate::stats::DelayStats;
use meshway_units::{BitsPerSec, Bytes, Nanos};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub const HELLO_MAGIC: [u8; 4] = *b"MWPD";
pub const UDP_MAGIC: [u8; 4] = *b"MWPU";
pub const HELLO_LEN: usize = 16;
pub const UDP_HEADER_LEN: usize = 28;
pub const PROTOCOL_VERSION: u8 = 1;

/// First bytes of every TCP data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub stream: u16,
    pub session: u64,
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..4].copy_from_slice(&HELLO_MAGIC);
        b[4] = PROTOCOL_VERSION;
        b[6..8].copy_from_slice(&self.stream.to_be_bytes());
        b[8..16].copy_from_slice(&self.session.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Hello> {
        if b.len() < HELLO_LEN || b[..4] != HELLO_MAGIC || b[4] != PROTOCOL_VERSION {
            return None;
        }
        Some(Hello { stream: u16::from_be_bytes([b[6], b[7]]), session: u64::from_be_bytes(b[8..16].try_into().ok()?) })
    }
}

/// The header of a UDP test datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpHeader {
    pub session: u64,
    pub seq: u64,
    pub sent_ns: u64,
}

impl UdpHeader {
    /// Writes the header into the first [`UDP_HEADER_LEN`] bytes; `None` if `buf` is shorter.
    pub fn encode(&self, buf: &mut [u8]) -> Option<()> {
        let b = buf.get_mut(..UDP_HEADER_LEN)?;
        b[..4].copy_from_slice(&UDP_MAGIC);
        b[4..12].copy_from_slice(&self.session.to_be_bytes());
        b[12..20].copy_from_slice(&self.seq.to_be_bytes());
        b[20..28].copy_from_slice(&self.sent_ns.to_be_bytes());
        Some(())
    }

    pub fn decode(b: &[u8]) -> Option<UdpHeader> {
        if b.len() < UDP_HEADER_LEN || b[..4] != UDP_MAGIC {
            return None;
        }
        let u = |r: std::ops::Range<usize>| u64::from_be_bytes(b[r].try_into().unwrap_or([0; 8]));
        Some(UdpHeader { session: u(4..12), seq: u(12..20), sent_ns: u(20..28) })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Client sends, server receives.
    Forward,
    /// Server sends, client receives.
    Reverse,
    /// Both at once (each stream index used once per direction).
    Bidir,
}

/// Client → server, first control line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Request {
    pub version: u8,
    pub protocol: Protocol,
    pub direction: Direction,
    pub streams: u16,
    /// Test length; the server sends (reverse) until the client says finish, bounded by this
    /// plus a grace period.
    pub duration_ns: u64,
    /// Stop after this many bytes per direction instead of after the duration (TCP).
    pub bytes: Option<u64>,
    /// UDP target rate per stream, bits per second.
    pub rate_bps: Option<u64>,
    /// UDP datagram size or TCP write size, bytes.
    pub size: u32,
}

/// Server → client answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Accept {
    pub ok: bool,
    pub session: u64,
    pub error: Option<String>,
}

/// Client → server: the client has stopped sending; send your results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Finish {
    pub finish: bool,
    /// UDP datagrams the client sent (forward UDP tests).
    pub udp_sent: Option<u64>,
}

/// Server → client at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServerResult {
    /// Bytes the server received (forward and bidir), all streams.
    pub received_bytes: u64,
    /// Bytes the server sent (reverse and bidir), all streams.
    pub sent_bytes: u64,
    /// Seconds from the first to the last arrival at the server.
    pub receive_secs: f64,
    /// Bytes of the first arrival (one read or datagram), which `receive_secs` does not time;
    /// 0 from a server that does not say (throughput then counts them, 1/N too high).
    #[serde(default)]
    pub untimed_bytes: u64,
    /// Process CPU time (user + system) over the test's wall time, percent of one core.
    pub cpu_percent: f64,
    /// The receiving side's UDP report (forward UDP tests).
    pub udp: Option<UdpReport>,
    /// UDP datagrams the server sent (reverse UDP tests).
    pub udp_sent: Option<u64>,
}

/// When datagram `seq` (0-based) of `size` bytes is due, sending at `rate` from `start`.
/// Exact integer arithmetic (rounded up to the nanosecond).
pub fn udp_due(start: Nanos, seq: u64, size: Bytes, rate: BitsPerSec) -> Nanos {
    start + rate.transmit_time(Bytes(size.get().saturating_mul(seq)))
}

/// Loss, duplicates, reordering and RFC 3550 jitter of a received UDP stream.
#[derive(Debug, Clone, Default)]
pub struct UdpReceiver {
    received: u64,
    bytes: u64,
    duplicates: u64,
    reordered: u64,
    max_seq: Option<u64>,
    seen: BTreeSet<u64>,
    seen_floor: u64,
    last_transit: Option<i128>,
    jitter: f64,
    transit: DelayStats,
    min_transit: Option<i128>,
}

/// Sequence numbers remembered for duplicate detection.
const SEEN_WINDOW: u64 = 1 << 16;

impl UdpReceiver {
    pub fn new() -> UdpReceiver {
        UdpReceiver::default()
    }

    /// A datagram with header `h` and `len` bytes arrived at local time `now_ns`.
    pub fn on_datagram(&mut self, now_ns: u64, h: &UdpHeader, len: usize) {
        if h.seq < self.seen_floor || self.seen.contains(&h.seq) {
            self.duplicates += 1;
            return;
        }
        self.seen.insert(h.seq);
        while self.seen.len() as u64 > SEEN_WINDOW {
            if let Some(first) = self.seen.pop_first() {
                self.seen_floor = first + 1;
            }
        }
        self.received += 1;
        self.bytes += len as u64;
        if self.max_seq.is_some_and(|m| h.seq < m) {
            self.reordered += 1;
        }
        self.max_seq = Some(self.max_seq.map_or(h.seq, |m| m.max(h.seq)));
        let transit = i128::from(now_ns) - i128::from(h.sent_ns);
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        // Transit relative to the smallest seen: queueing delay, free of clock offset.
        let min = *self.min_transit.get_or_insert(transit);
        if transit < min {
            self.min_transit = Some(transit);
        }
        self.transit.record((transit - self.min_transit.unwrap_or(transit)).max(0) as u64);
    }

    /// The report, given how many datagrams the sender says it sent (`None`: infer from the
    /// highest sequence number seen, which misses losses at the tail).
    pub fn report(&self, sent: Option<u64>) -> UdpReport {
        let expected = sent.unwrap_or_else(|| self.max_seq.map_or(0, |m| m + 1));
        let lost = expected.saturating_sub(self.received);
        UdpReport {
            sent: expected,
            received: self.received,
            received_bytes: self.bytes,
            lost,
            loss_ratio: if expected == 0 { 0.0 } else { lost as f64 / expected as f64 },
            duplicates: self.duplicates,
            reordered: self.reordered,
            jitter_rfc3550_ns: self.jitter,
            queueing_p99_ns: self.transit.quantile(0.99).unwrap_or(0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UdpReport {
    pub sent: u64,
    pub received: u64,
    pub received_bytes: u64,
    pub lost: u64,
    pub loss_ratio: f64,
    pub duplicates: u64,
    pub reordered: u64,
    pub jitter_rfc3550_ns: f64,
    /// 99th percentile of one-way transit above the smallest seen (queueing).
    pub queueing_p99_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_and_header_round_trip() {
        let h = Hello { stream: 3, session: 0xdead_beef };
        assert_eq!(Hello::decode(&h.encode()), Some(h));
        assert_eq!(Hello::decode(b"GET / HTTP/1.1\r\n"), None);
        let u = UdpHeader { session: 7, seq: 9, sent_ns: 11 };
        let mut b = [0u8; 40];
        u.encode(&mut b).unwrap();
        assert_eq!(UdpHeader::decode(&b), Some(u));
        assert_eq!(UdpHeader::decode(&b[..27]), None);
        assert!(u.encode(&mut [0u8; 10]).is_none());
    }

    #[test]
    fn pacing_is_exact() {
        // 1250-byte datagrams at 10 Mbit/s: one per millisecond.
        let r: BitsPerSec = "10Mbps".parse().unwrap();
        assert_eq!(udp_due(Nanos(5), 0, Bytes(1250), r), Nanos(5));
        assert_eq!(udp_due(Nanos(5), 1000, Bytes(1250), r), Nanos(1_000_000_005));
    }

    #[test]
    fn receiver_counts_loss_duplicates_reordering_and_jitter() {
        let mut r = UdpReceiver::new();
        let h = |seq| UdpHeader { session: 1, seq, sent_ns: seq * 1000 };
        // Arrival transits: 100, 100, (seq 2 lost), 300 for seq 4 then seq 3 late at 500.
        r.on_datagram(100, &h(0), 100);
        r.on_datagram(1100, &h(1), 100);
        r.on_datagram(1100, &h(1), 100); // duplicate
        r.on_datagram(4300, &h(4), 100);
        r.on_datagram(3500, &h(3), 100); // reordered
        let rep = r.report(Some(6));
        assert_eq!((rep.sent, rep.received, rep.lost, rep.duplicates, rep.reordered), (6, 4, 2, 1, 1));
        assert_eq!(rep.received_bytes, 400);
        // |D| = 0, 200, 200: J = 0 → 12.5 → 12.5 + (200 − 12.5)/16
        let want = 12.5 + (200.0 - 12.5) / 16.0;
        assert!((rep.jitter_rfc3550_ns - want).abs() < 1e-9);
        assert_eq!(r.report(None).lost, 1);
    }
}
