//! `meshway reflect`: the STAMP (RFC 8762) session-reflector, unauthenticated, stateful
//! (one reflector sequence counter per source address and port).
//!
//! Guarantees: an answer is never longer than the packet it answers (it is exactly as long);
//! packets shorter than 44 bytes, longer than 65,507, or with an invalid error estimate (a
//! zero multiplier; a sender's PTP timestamp format is valid, and answered) are ignored, and so are packets that could loop between reflectors (see [`loops`]); each source IP address gets two token buckets, packets (`rate_limit_pps`) and
//! bytes (`rate_limit_bytes`) per second, each with a burst of one second's worth, and
//! packets beyond either are ignored. The per-source state is
//! bounded ([`ReflectConfig::max_sources`]) and a new source is never refused: a churn of
//! addresses pushes out the ones not seen lately (see [`Recent`]). A test mode drops every
//! k-th valid packet of each source, so loss accounting can be checked exactly.
//!
//! Bound to a wildcard address, each answer leaves from the address the probe was sent to
//! (IP_PKTINFO / IPV6_PKTINFO), so one reflector serves every local address, and the STAMP
//! "Ses-Sender TTL" field carries the probe's received TTL or hop limit (IP_RECVTTL /
//! IPV6_RECVHOPLIMIT; on a dual-stack `[::]` socket, IP_RECVTTL too, for IPv4 probes), bound
//! to one address as well. It is 0 (unknown) only where the kernel gives no TTL.
//!
//! The receive timestamp is the kernel's (`SO_TIMESTAMPNS`), so a probe that waited in the
//! socket for the reflector to be scheduled shows that wait as hold time, which the sender
//! subtracts, rather than as network round trip. Where the kernel gives no stamp the clock is
//! read after the receive.

use crate::clock;
use meshway_probe::stamp::{self, ErrorEstimate, NtpTimestamp};
use meshway_units::Nanos;
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Sources remembered at once by default (see [`Recent`]).
pub const MAX_SOURCES: usize = 65_536;

/// A bounded map that always admits a new key: two generations, each at most half the
/// capacity. A key found in the old generation moves to the current one; when the current
/// one is full it becomes the old one and the previous old one is dropped. A key seen at
/// least once per generation therefore stays, and however many new keys arrive (a churn of
/// source addresses) a newcomer is never refused; every operation is O(1).
#[derive(Debug)]
pub struct Recent<K, V> {
    cur: HashMap<K, V>,
    old: HashMap<K, V>,
    half: usize,
}

impl<K: std::hash::Hash + Eq + Copy, V> Recent<K, V> {
    pub fn new(capacity: usize) -> Self {
        Recent { cur: HashMap::new(), old: HashMap::new(), half: (capacity / 2).max(1) }
    }

    /// The value of `k`, made with `make` if it is not remembered.
    pub fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.cur.contains_key(&k) {
            let v = self.old.remove(&k).unwrap_or_else(make);
            if self.cur.len() >= self.half {
                self.old = std::mem::take(&mut self.cur);
            }
            self.cur.insert(k, v);
        }
        self.cur.get_mut(&k).expect("just inserted")
    }

    /// Keys remembered now (at most the capacity).
    pub fn len(&self) -> usize {
        self.cur.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone)]
pub struct ReflectConfig {
    /// Packets per second allowed from one source IP; 0 means unlimited.
    pub rate_limit_pps: u32,
    /// Bytes per second answered to one source IP (a one-second burst); 0 means unlimited.
    /// A reflector's answers are as large as the probes, so this bounds what it sends
    /// towards any one address, a spoofed one included.
    pub rate_limit_bytes: u64,
    /// Test mode: drop the k-th, 2k-th, ... valid packet from each source.
    pub drop_every: Option<u64>,
    /// Set the S bit: this host's clock is synchronized to UTC.
    pub synchronized: bool,
    /// Source addresses (and source IPs for the rate limit) remembered at once.
    pub max_sources: usize,
    /// Socket receive buffer to ask for, bytes: room for a burst (or a flood of malformed
    /// packets) without dropping valid probes. Above `net.core.rmem_max` it takes
    /// CAP_NET_ADMIN (SO_RCVBUFFORCE); otherwise the kernel caps it there.
    pub recv_buffer: usize,
    /// STAMP authenticated mode: only packets whose HMAC verifies under this key are answered.
    pub key: Option<meshway_probe::stamp_auth::Key>,
    /// Drop malformed packets in the kernel, before they take room in the receive buffer or
    /// time of this thread (a socket filter, [`junk_filter`]); they are then not counted.
    pub kernel_filter: bool,
}

/// A classic BPF socket filter that drops, in the kernel, what the reflector would ignore as
/// malformed: datagrams shorter than a STAMP sender packet (44 bytes, or 112 authenticated)
/// and, unauthenticated, those whose error estimate has a zero multiplier. A sender's PTP
/// timestamp format (the Z bit) is no reason to drop: the reflector copies it back.
/// A socket filter on a UDP socket sees the packet from the UDP header (8 bytes) on.
pub fn junk_filter(authenticated: bool) -> Vec<socket2::SockFilter> {
    use socket2::SockFilter as F;
    // Opcodes (linux/bpf_common.h): ld len, ldh abs, jge k, jset k, and k, jeq k, ret k.
    const LD_LEN: u16 = 0x80;
    const LDH_ABS: u16 = 0x28;
    const JGE_K: u16 = 0x35;
    const AND_K: u16 = 0x54;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const UDP_HEADER: u32 = 8;
    if authenticated {
        let min = UDP_HEADER + meshway_probe::stamp_auth::AUTH_LEN as u32;
        return vec![
            F::new(LD_LEN, 0, 0, 0),
            F::new(JGE_K, 0, 1, min),
            F::new(RET_K, 0, 0, u32::MAX),
            F::new(RET_K, 0, 0, 0),
        ];
    }
    let min = UDP_HEADER + stamp::BASE_LEN as u32;
    vec![
        F::new(LD_LEN, 0, 0, 0),
        F::new(JGE_K, 0, 4, min),               // too short: drop
        F::new(LDH_ABS, 0, 0, UDP_HEADER + 12), // the error estimate
        F::new(AND_K, 0, 0, 0xff),
        F::new(JEQ_K, 1, 0, 0), // zero multiplier: drop
        F::new(RET_K, 0, 0, u32::MAX),
        F::new(RET_K, 0, 0, 0),
    ]
}

/// Default byte rate answered to one source: 125 MB/s (1 Gbit/s), an assumption: above what
/// the default packet limit allows of full-size (1,500-byte) probes (10,000 a second, 120
/// Mbit/s) and of a 60,000-byte probe every millisecond (480 Mbit/s), and a fifth of the 5
/// Gbit/s that 10,000 maximum-size answers a second would aim at a spoofed address.
pub const DEFAULT_RATE_LIMIT_BYTES: u64 = 125_000_000;
/// Smallest byte rate that still answers a maximum-size probe (65,507 bytes) within its
/// one-second burst.
pub const MIN_RATE_LIMIT_BYTES: u64 = 65_507;

/// Default receive buffer: 4 MiB, about 90,000 minimum-size STAMP packets of kernel
/// accounting (an assumption sized to absorb 100 ms of a 1 Mpps flood per core).
pub const DEFAULT_RECV_BUFFER: usize = 4 << 20;

/// Asks for `bytes` of receive buffer on `sock` (forcing past rmem_max where allowed) and
/// returns what the kernel granted (it reports twice the usable size, as Linux does).
pub fn set_recv_buffer(sock: &UdpSocket, bytes: usize) -> std::io::Result<usize> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    // The option is a C int, which the kernel doubles: past i32::MAX / 2 a request wrapped to
    // the kernel's minimum (2 GiB asked gave 1.13 KiB).
    let bytes = bytes.min(i32::MAX as usize / 2);
    if setsockopt(sock, sockopt::RcvBufForce, &bytes).is_err() {
        setsockopt(sock, sockopt::RcvBuf, &bytes).map_err(std::io::Error::from)?;
    }
    getsockopt(sock, sockopt::RcvBuf).map_err(std::io::Error::from)
}

impl Default for ReflectConfig {
    fn default() -> Self {
        ReflectConfig {
            rate_limit_pps: 10_000,
            rate_limit_bytes: DEFAULT_RATE_LIMIT_BYTES,
            drop_every: None,
            synchronized: false,
            max_sources: MAX_SOURCES,
            recv_buffer: DEFAULT_RECV_BUFFER,
            key: None,
            kernel_filter: true,
        }
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
    /// Authenticated mode: packets whose HMAC did not verify.
    pub auth_failures: AtomicU64,
    /// Valid packets whose sender stamps in PTPv2 format (the Z bit), answered like any other.
    pub ptp_format: AtomicU64,
    /// Packets from this reflector's own address and port, or carrying a reflector answer's times:
    /// answering them would loop between reflectors.
    pub looped: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReflectTotals {
    pub received: u64,
    pub answered: u64,
    pub malformed: u64,
    pub rate_limited: u64,
    pub test_dropped: u64,
    pub send_errors: u64,
    pub auth_failures: u64,
    pub looped: u64,
    pub ptp_format: u64,
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
            auth_failures: g(&self.auth_failures),
            looped: g(&self.looped),
            ptp_format: g(&self.ptp_format),
        }
    }
}

/// A token bucket with time passed in: `rate` tokens per second, burst `rate` (at least 1).
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    /// Tokens in millionths, so integer refill is exact at any rate.
    micro_tokens: u128,
    last: Nanos,
}

impl TokenBucket {
    pub fn new(now: Nanos, rate: u64) -> TokenBucket {
        TokenBucket { micro_tokens: u128::from(rate.max(1)) * 1_000_000, last: now }
    }

    /// Refills for the time since the last call (at most one second's worth).
    fn refill(&mut self, now: Nanos, rate: u64) {
        let cap = u128::from(rate.max(1)) * 1_000_000;
        let dt = now.saturating_sub(self.last).get();
        // rate tokens/s × dt ns = rate × dt / 1000 micro-tokens.
        let add = (u128::from(rate) * u128::from(dt) / 1_000).min(cap);
        self.micro_tokens = (self.micro_tokens + add).min(cap);
        self.last = now;
    }

    fn has(&self, n: u64) -> bool {
        self.micro_tokens >= u128::from(n) * 1_000_000
    }

    fn spend(&mut self, n: u64) {
        self.micro_tokens = self.micro_tokens.saturating_sub(u128::from(n) * 1_000_000);
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Nanos, rate: u64) -> bool {
        self.refill(now, rate);
        let ok = self.has(1);
        if ok {
            self.spend(1);
        }
        ok
    }
}

/// What one source may still send: packets and bytes per second, each with a one-second
/// burst; a packet is answered only when both allow it, and then takes from both.
#[derive(Debug, Clone, Copy)]
struct Allowance {
    packets: TokenBucket,
    bytes: TokenBucket,
}

impl Allowance {
    fn new(now: Nanos, cfg: &ReflectConfig) -> Allowance {
        Allowance {
            packets: TokenBucket::new(now, u64::from(cfg.rate_limit_pps)),
            bytes: TokenBucket::new(now, cfg.rate_limit_bytes),
        }
    }

    /// Whether a packet of `len` bytes is within both limits (a limit of 0 is none).
    fn admit(&mut self, now: Nanos, cfg: &ReflectConfig, len: u64) -> bool {
        let pps = u64::from(cfg.rate_limit_pps);
        let bps = cfg.rate_limit_bytes;
        if pps > 0 {
            self.packets.refill(now, pps);
        }
        if bps > 0 {
            self.bytes.refill(now, bps);
        }
        if (pps > 0 && !self.packets.has(1)) || (bps > 0 && !self.bytes.has(len)) {
            return false;
        }
        if pps > 0 {
            self.packets.spend(1);
        }
        if bps > 0 {
            self.bytes.spend(len);
        }
        true
    }
}

#[derive(Debug)]
struct Source {
    valid: u64,
    seq: u32,
}

/// One received datagram: its length, sender, the local address it was sent to and its TTL.
struct Received {
    len: usize,
    from: SocketAddr,
    local: Option<IpAddr>,
    ttl: Option<u8>,
    /// The kernel's receive time (ns since the Unix epoch), when stamps are on.
    kernel_ns: Option<u64>,
}

/// Asks the kernel for the TTL (or hop limit) of each datagram, for the STAMP Ses-Sender TTL,
/// and, when the socket is bound to a wildcard address (where the answer's source must be
/// chosen per packet), for its destination address. An IPv6 socket also asks for the IPv4
/// TTL (IP_RECVTTL): a dual-stack `[::]` socket receives IPv4 probes as v4-mapped, and Linux
/// gives their TTL only at the IPv4 level. `false` when no option could be set (the plain
/// receive path then writes TTL 0, unknown).
fn enable_ancillary(sock: &UdpSocket) -> bool {
    use nix::sys::socket::{setsockopt, sockopt};
    let Ok(local) = sock.local_addr() else { return false };
    let wildcard = local.ip().is_unspecified();
    match local {
        SocketAddr::V4(_) => {
            (!wildcard || setsockopt(sock, sockopt::Ipv4PacketInfo, &true).is_ok())
                && setsockopt(sock, sockopt::Ipv4RecvTtl, &true).is_ok()
        }
        SocketAddr::V6(_) => {
            // Not on an IPV6_V6ONLY socket's kernel, perhaps: IPv6 probes keep their hop limit.
            let v4 = setsockopt(sock, sockopt::Ipv4RecvTtl, &true).is_ok();
            let v6 = (!wildcard || setsockopt(sock, sockopt::Ipv6RecvPacketInfo, &true).is_ok())
                && setsockopt(sock, sockopt::Ipv6RecvHopLimit, &true).is_ok();
            v4 || v6
        }
    }
}

fn receive(sock: &UdpSocket, buf: &mut [u8], ancillary: bool, stamps: bool) -> std::io::Result<Received> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    if !ancillary && !stamps {
        let (len, from) = sock.recv_from(buf)?;
        return Ok(Received { len, from, local: None, ttl: None, kernel_ns: None });
    }
    let mut cmsg = nix::cmsg_space!(
        nix::libc::in6_pktinfo,
        nix::libc::c_int,
        nix::libc::in_pktinfo,
        nix::libc::c_int,
        nix::sys::time::TimeSpec
    );
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
        .map_err(std::io::Error::from)?;
    let from = msg.address.and_then(|a| {
        a.as_sockaddr_in()
            .map(|v4| SocketAddr::V4((*v4).into()))
            .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
    });
    let Some(from) = from else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "datagram without a source address"));
    };
    let (mut local, mut ttl, mut kernel_ns) = (None, None, None);
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                // `ipi_addr` is the header's destination (the probed address); `ipi_spec_dst`
                // would be the route's preferred source, which differs for 127.0.0.2 and friends.
                ControlMessageOwned::Ipv4PacketInfo(p) => {
                    local = Some(IpAddr::V4(std::net::Ipv4Addr::from(p.ipi_addr.s_addr.to_ne_bytes())))
                }
                ControlMessageOwned::Ipv6PacketInfo(p) => {
                    local = Some(IpAddr::V6(std::net::Ipv6Addr::from(p.ipi6_addr.s6_addr)))
                }
                ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => ttl = u8::try_from(t).ok(),
                ControlMessageOwned::ScmTimestampns(ts) => {
                    let ns = i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec());
                    kernel_ns = u64::try_from(ns).ok();
                }
                _ => {}
            }
        }
    }
    Ok(Received { len: msg.bytes, from, local, ttl, kernel_ns })
}

/// Sends `buf` to `to`, from `local` when known (so the answer leaves from the probed address).
fn send(sock: &UdpSocket, buf: &[u8], to: SocketAddr, local: Option<IpAddr>) -> std::io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let iov = [std::io::IoSlice::new(buf)];
    let dst = SockaddrStorage::from(to);
    let r = match (local, to) {
        (Some(IpAddr::V4(l)), SocketAddr::V4(_)) => {
            let info = nix::libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: nix::libc::in_addr { s_addr: u32::from_ne_bytes(l.octets()) },
                ipi_addr: nix::libc::in_addr { s_addr: 0 },
            };
            sendmsg(sock.as_raw_fd(), &iov, &[ControlMessage::Ipv4PacketInfo(&info)], MsgFlags::empty(), Some(&dst))
        }
        (Some(IpAddr::V6(l)), SocketAddr::V6(_)) => {
            let info =
                nix::libc::in6_pktinfo { ipi6_addr: nix::libc::in6_addr { s6_addr: l.octets() }, ipi6_ifindex: 0 };
            sendmsg(sock.as_raw_fd(), &iov, &[ControlMessage::Ipv6PacketInfo(&info)], MsgFlags::empty(), Some(&dst))
        }
        _ => return sock.send_to(buf, to),
    };
    r.map_err(std::io::Error::from)
}

/// The receive buffer and the kernel filter. [`ReflectorHandle::spawn`] applies them before it
/// returns, so no junk sent after it returns reaches the socket.
fn prepare(sock: &UdpSocket, cfg: &ReflectConfig) -> std::io::Result<()> {
    if cfg.recv_buffer > 0 {
        set_recv_buffer(sock, cfg.recv_buffer)?;
    }
    if cfg.kernel_filter {
        // Without it (a kernel without socket filters) the reflector's own checks still drop
        // junk, only later: not a reason to refuse to run.
        let _ = socket2::SockRef::from(sock).attach_filter(&junk_filter(cfg.key.is_some()));
    }
    Ok(())
}

/// Runs the reflector on `sock` until `shutdown` is set (checked every 100 ms).
pub fn run(
    sock: &UdpSocket,
    cfg: &ReflectConfig,
    counters: &ReflectCounters,
    shutdown: &AtomicBool,
) -> std::io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    prepare(sock, cfg)?;
    let error = if cfg.synchronized { ErrorEstimate::SYNCHRONIZED } else { ErrorEstimate::UNSYNCHRONIZED };
    let mut sources: Recent<SocketAddr, Source> = Recent::new(cfg.max_sources);
    let mut buckets: Recent<IpAddr, Allowance> = Recent::new(cfg.max_sources);
    let mut rx = vec![0u8; 65_536];
    let mut tx = vec![0u8; 65_536];
    let ancillary = enable_ancillary(sock);
    // The receive timestamp is when the kernel took the packet, so a sender subtracting the
    // hold time does not count the time a probe waited for this thread to be scheduled.
    let stamps = crate::kstamp::enable(sock);
    let own = sock.local_addr()?;
    while !shutdown.load(Ordering::Relaxed) {
        let Received { len: n, from, local, ttl, kernel_ns } = match receive(sock, &mut rx, ancillary, stamps) {
            Ok(v) => v,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // ICMP errors from earlier answers surface here on Linux: not fatal; nor is a
            // datagram whose source could not be read.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => continue,
            Err(e) => return Err(e),
        };
        let rx_time = kernel_ns.map_or_else(clock::ntp, NtpTimestamp::from_unix_nanos);
        let now = clock::mono();
        counters.received.fetch_add(1, Ordering::Relaxed);
        let pkt = &rx[..n];
        let decoded = match &cfg.key {
            Some(k) => match meshway_probe::stamp_auth::decode_sender(pkt, k) {
                Err(stamp::StampError::BadHmac) => {
                    counters.auth_failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                r => r,
            },
            None => stamp::SenderPacket::decode(pkt),
        };
        let Ok(sender) = decoded else {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if sender.error.ptp {
            counters.ptp_format.fetch_add(1, Ordering::Relaxed);
        }
        if loops(pkt, from, local, own, cfg.key.is_some(), rx_time) {
            counters.looped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if cfg.rate_limit_pps > 0 || cfg.rate_limit_bytes > 0 {
            let b = buckets.get_or_insert_with(from.ip(), || Allowance::new(now, cfg));
            if !b.admit(now, cfg, n as u64) {
                counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        let src = sources.get_or_insert_with(from, || Source { valid: 0, seq: 0 });
        src.valid += 1;
        if cfg.drop_every.is_some_and(|k| k > 0 && src.valid.is_multiple_of(k)) {
            counters.test_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let seq = src.seq;
        src.seq = src.seq.wrapping_add(1);
        let ttl = ttl.unwrap_or(0);
        let reflected = match &cfg.key {
            Some(k) => meshway_probe::stamp_auth::reflect(pkt, k, &mut tx, seq, rx_time, clock::ntp(), error, ttl),
            None => stamp::reflect(pkt, &mut tx, seq, rx_time, clock::ntp(), error, ttl),
        };
        let Ok(len) = reflected else {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        debug_assert!(len <= n);
        match send(sock, &tx[..len.min(n)], from, local) {
            Ok(_) => counters.answered.fetch_add(1, Ordering::Relaxed),
            Err(_) => counters.send_errors.fetch_add(1, Ordering::Relaxed),
        };
    }
    Ok(())
}

/// How near this reflector's clock a timestamp in a sender's must-be-zero bytes must be to
/// mark the packet as a reflector's answer: 60 s (an assumption; NTP keeps hosts within
/// milliseconds, and random padding lands this near with odds of about 3e-8 per field).
const LOOP_WINDOW_SECS: u32 = 60;

/// Whether answering `pkt` from `from` could feed a loop between reflectors: it comes from
/// this socket itself (its port, and its address or the one the packet was sent to), or a
/// field where a sender's packet has must-be-zero bytes holds a time within
/// [`LOOP_WINDOW_SECS`] of `now`: a reflector answer's receive timestamp (unauthenticated
/// bytes 16-23, authenticated 32-39) or its copy of the sender's timestamp (28-35, 64-71).
/// In a loop one of them is this reflector's own time by the second bounce, whatever the
/// other reflector's clock says: its own receive time when it answers itself, its own send
/// time copied back by the other. Senders that pad with random bytes (TWAMP-Light) are
/// still answered (RFC 8762 4.2.1: must-be-zero bytes are ignored on receipt), and the
/// authenticated case is covered too, where an answer carries a valid HMAC.
fn loops(
    pkt: &[u8],
    from: SocketAddr,
    local: Option<IpAddr>,
    own: SocketAddr,
    authenticated: bool,
    now: NtpTimestamp,
) -> bool {
    let ours = |ip: IpAddr| ip.to_canonical() == from.ip().to_canonical();
    if from.port() == own.port() && (ours(own.ip()) || local.is_some_and(ours)) {
        return true;
    }
    let near = |at: usize| {
        pkt.get(at..at + 4).is_some_and(|b| {
            let secs = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            secs.wrapping_sub(now.secs).wrapping_add(LOOP_WINDOW_SECS) <= 2 * LOOP_WINDOW_SECS
        })
    };
    let fields: [usize; 2] = if authenticated { [32, 64] } else { [16, 28] };
    fields.iter().any(|&at| near(at))
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
        prepare(&sock, &cfg)?;
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

    /// A packet from the reflector's own socket, or carrying a time near the reflector's
    /// clock where a sender's packet has must-be-zero bytes, would loop; a sender's packet
    /// from another port or host, zero- or randomly padded, would not.
    #[test]
    fn loops_are_refused() {
        let now = NtpTimestamp { secs: 3_970_000_000, frac: 0 };
        let own: SocketAddr = "127.0.0.1:862".parse().unwrap();
        let wild: SocketAddr = "0.0.0.0:862".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let at = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let sender = [0u8; 112];
        let with = |off: usize, secs: u32| {
            let mut p = [0u8; 112];
            p[off..off + 4].copy_from_slice(&secs.to_be_bytes());
            p
        };
        let other = at("127.0.0.2:40000");
        assert!(loops(&sender, own, None, own, false, now));
        assert!(loops(&sender, at("127.0.0.1:862"), Some(lo), wild, false, now));
        assert!(loops(&sender, at("[::ffff:127.0.0.1]:862"), None, own, false, now));
        assert!(!loops(&sender, at("127.0.0.1:40000"), Some(lo), wild, false, now));
        assert!(!loops(&sender, at("127.0.0.2:862"), None, own, false, now));
        // An answer's receive or sender timestamp near our clock, either mode at its offsets.
        for (auth, offs) in [(false, [16, 28]), (true, [32, 64])] {
            for off in offs {
                assert!(loops(&with(off, now.secs - 30), other, None, own, auth, now), "{auth} {off}");
                assert!(loops(&with(off, now.secs + 59), other, None, own, auth, now), "{auth} {off}");
                assert!(!loops(&with(off, now.secs - 61), other, None, own, auth, now), "{auth} {off}");
            }
        }
        // Random padding (TWAMP-Light) is answered: these bytes are no time near ours.
        let mut random = [0u8; 112];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for b in random.iter_mut().skip(14) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        assert!(!loops(&random, other, None, own, false, now));
    }

    #[test]
    fn recent_keeps_what_is_used_and_admits_every_newcomer() {
        let mut r: Recent<u32, u32> = Recent::new(8);
        *r.get_or_insert_with(1, || 10) += 1;
        // A churn of 1,000 new keys, key 1 touched every 3: it keeps its value, every
        // newcomer is admitted, and no more than 8 keys are held.
        for k in 100..1_100u32 {
            assert_eq!(*r.get_or_insert_with(k, || k), k);
            if k % 3 == 0 {
                assert_eq!(*r.get_or_insert_with(1, || 0), 11, "key 1 kept at churn key {k}");
            }
            assert!(r.len() <= 8);
        }
        // Not touched for a whole generation: forgotten, and made afresh.
        for k in 2_000..2_010u32 {
            r.get_or_insert_with(k, || k);
        }
        assert_eq!(*r.get_or_insert_with(1, || 0), 0);
    }

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

    #[test]
    fn allowance_needs_both_limits_and_takes_from_both() {
        let cfg = ReflectConfig { rate_limit_pps: 3, rate_limit_bytes: 1_000, ..Default::default() };
        let mut a = Allowance::new(Nanos(0), &cfg);
        // 400 + 400 bytes pass; the third 400 would exceed the 1,000-byte burst.
        assert!(a.admit(Nanos(0), &cfg, 400));
        assert!(a.admit(Nanos(0), &cfg, 400));
        assert!(!a.admit(Nanos(0), &cfg, 400));
        // A refusal takes nothing: 200 bytes still fit, and use the third packet token.
        assert!(a.admit(Nanos(0), &cfg, 200));
        assert!(!a.admit(Nanos(0), &cfg, 1), "no packet token left");
        // After 0.5 s: 1.5 packet tokens and 500 bytes.
        assert!(a.admit(Nanos(500_000_000), &cfg, 500));
        assert!(!a.admit(Nanos(500_000_000), &cfg, 1), "nothing left of either");
        // A probe larger than the one-second burst is never answered.
        assert!(!a.admit(Nanos(10_000_000_000), &cfg, 1_001));
        // A limit of 0 is none.
        let open = ReflectConfig { rate_limit_pps: 0, rate_limit_bytes: 0, ..Default::default() };
        let mut a = Allowance::new(Nanos(0), &open);
        assert!((0..10_000).all(|_| a.admit(Nanos(0), &open, 65_507)));
        // A byte rate of 100 Tbit/s does not overflow.
        let fast = ReflectConfig { rate_limit_pps: 0, rate_limit_bytes: 12_500_000_000_000, ..Default::default() };
        let mut a = Allowance::new(Nanos(0), &fast);
        assert!(a.admit(Nanos(u64::MAX), &fast, 65_507));
    }
}
