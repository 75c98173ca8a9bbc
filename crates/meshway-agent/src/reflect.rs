//! `meshway reflect`: the STAMP (RFC 8762) session-reflector, unauthenticated, stateful
//! (one reflector sequence counter per source address and port).
//!
//! Guarantees: an answer is never longer than the packet it answers (it is exactly as long);
//! packets shorter than 44 bytes, longer than 65,507, or with an invalid error estimate are
//! ignored; each source IP address gets a token bucket (`rate_limit_pps` tokens per second,
//! a burst of one second's worth) and packets beyond it are ignored. A test mode drops every
//! k-th valid packet of each source, so loss accounting can be checked exactly.

use crate::clock;
use meshway_probe::stamp::{self, ErrorEstimate};
use meshway_units::Nanos;
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Sources remembered at once; beyond this, idle ones are forgotten and new ones refused.
const MAX_SOURCES: usize = 65_536;

#[derive(Debug, Clone)]
pub struct ReflectConfig {
    /// Packets per second allowed from one source IP; 0 means unlimited.
    pub rate_limit_pps: u32,
    /// Test mode: drop the k-th, 2k-th, ... valid packet from each source.
    pub drop_every: Option<u64>,
    /// Set the S bit: this host's clock is synchronized to UTC.
    pub synchronized: bool,
}

impl Default for ReflectConfig {
    fn default() -> Self {
        ReflectConfig { rate_limit_pps: 10_000, drop_every: None, synchronized: false }
    }
}

/// Counters, readable while the reflector runs.
#[derive(Debug, Default)]
pub struct ReflectCounters {
    pub received: AtomicU64,
    pub answered: AtomicU64,
    pub malformed: AtomicU64,
    pub rate_limited: AtomicU64,
    pub test_dropped: AtomicU64,
    pub send_errors: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReflectTotals {
    pub received: u64,
    pub answered: u64,
    pub malformed: u64,
    pub rate_limited: u64,
    pub test_dropped: u64,
    pub send_errors: u64,
}

impl ReflectCounters {
    pub fn totals(&self) -> ReflectTotals {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ReflectTotals {
            received: g(&self.received),
            answered: g(&self.answered),
            malformed: g(&self.malformed),
            rate_limited: g(&self.rate_limited),
            test_dropped: g(&self.test_dropped),
            send_errors: g(&self.send_errors),
        }
    }
}

/// A token bucket with time passed in: `rate` tokens per second, burst `rate` (at least 1).
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    /// Tokens in millionths, so integer refill is exact at any rate.
    micro_tokens: u64,
    last: Nanos,
}

impl TokenBucket {
    pub fn new(now: Nanos, rate: u32) -> TokenBucket {
        TokenBucket { micro_tokens: u64::from(rate.max(1)) * 1_000_000, last: now }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Nanos, rate: u32) -> bool {
        let cap = u64::from(rate.max(1)) * 1_000_000;
        let dt = now.saturating_sub(self.last).get();
        // rate tokens/s × dt ns = rate × dt / 1000 micro-tokens.
        let add = (u128::from(rate) * u128::from(dt) / 1_000).min(u128::from(cap)) as u64;
        self.micro_tokens = (self.micro_tokens + add).min(cap);
        self.last = now;
        if self.micro_tokens >= 1_000_000 {
            self.micro_tokens -= 1_000_000;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Source {
    valid: u64,
    seq: u32,
    last_seen: Nanos,
}

/// Runs the reflector on `sock` until `shutdown` is set (checked every 100 ms).
pub fn run(
    sock: &UdpSocket,
    cfg: &ReflectConfig,
    counters: &ReflectCounters,
    shutdown: &AtomicBool,
) -> std::io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let error = if cfg.synchronized { ErrorEstimate::SYNCHRONIZED } else { ErrorEstimate::UNSYNCHRONIZED };
    let mut sources: HashMap<SocketAddr, Source> = HashMap::new();
    let mut buckets: HashMap<IpAddr, TokenBucket> = HashMap::new();
    let mut rx = vec![0u8; 65_536];
    let mut tx = vec![0u8; 65_536];
    while !shutdown.load(Ordering::Relaxed) {
        let (n, from) = match sock.recv_from(&mut rx) {
            Ok(v) => v,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // ICMP errors from earlier answers surface here on Linux: not fatal.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        let rx_time = clock::ntp();
        let now = clock::mono();
        counters.received.fetch_add(1, Ordering::Relaxed);
        let pkt = &rx[..n];
        if stamp::SenderPacket::decode(pkt).is_err() {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if sources.len() >= MAX_SOURCES || buckets.len() >= MAX_SOURCES {
            let horizon = Nanos(10_000_000_000);
            sources.retain(|_, s| now.saturating_sub(s.last_seen) < horizon);
            buckets.retain(|_, b| now.saturating_sub(b.last) < horizon);
        }
        if cfg.rate_limit_pps > 0 {
            let room = buckets.len() < MAX_SOURCES;
            let allowed = match buckets.get_mut(&from.ip()) {
                Some(b) => b.take(now, cfg.rate_limit_pps),
                None if room => {
                    let mut b = TokenBucket::new(now, cfg.rate_limit_pps);
                    let ok = b.take(now, cfg.rate_limit_pps);
                    buckets.insert(from.ip(), b);
                    ok
                }
                None => false,
            };
            if !allowed {
                counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        let room = sources.len() < MAX_SOURCES;
        let src = match sources.get_mut(&from) {
            Some(s) => s,
            None if room => sources.entry(from).or_insert(Source { valid: 0, seq: 0, last_seen: now }),
            None => {
                counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        src.valid += 1;
        src.last_seen = now;
        if cfg.drop_every.is_some_and(|k| k > 0 && src.valid % k == 0) {
            counters.test_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let seq = src.seq;
        src.seq = src.seq.wrapping_add(1);
        let Ok(len) = stamp::reflect(pkt, &mut tx, seq, rx_time, clock::ntp(), error, 0) else {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        debug_assert!(len <= n);
        match sock.send_to(&tx[..len.min(n)], from) {
            Ok(_) => counters.answered.fetch_add(1, Ordering::Relaxed),
            Err(_) => counters.send_errors.fetch_add(1, Ordering::Relaxed),
        };
    }
    Ok(())
}

/// A reflector on its own thread, for tests and the agent: bound, running, stoppable.
pub struct ReflectorHandle {
    pub addr: SocketAddr,
    pub counters: Arc<ReflectCounters>,
    shutdown: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl ReflectorHandle {
    pub fn spawn(sock: UdpSocket, cfg: ReflectConfig) -> std::io::Result<ReflectorHandle> {
        let addr = sock.local_addr()?;
        let counters = Arc::new(ReflectCounters::default());
        let shutdown = Arc::new(AtomicBool::new(false));
        let (c, s) = (counters.clone(), shutdown.clone());
        let thread = std::thread::Builder::new().name("reflect".into()).spawn(move || run(&sock, &cfg, &c, &s))?;
        Ok(ReflectorHandle { addr, counters, shutdown, thread: Some(thread) })
    }

    pub fn stop(mut self) -> ReflectTotals {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.counters.totals()
    }
}

impl Drop for ReflectorHandle {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_rate_and_burst() {
        let mut b = TokenBucket::new(Nanos(0), 10);
        let ok = (0..20).filter(|_| b.take(Nanos(0), 10)).count();
        assert_eq!(ok, 10, "burst of one second");
        assert!(!b.take(Nanos(50_000_000), 10), "half a token after 50 ms");
        assert!(b.take(Nanos(100_000_000), 10), "one token after 100 ms");
        // A long idle period refills only up to the burst.
        let ok = (0..50).filter(|_| b.take(Nanos(100_000_000_000), 10)).count();
        assert_eq!(ok, 10);
    }
}
