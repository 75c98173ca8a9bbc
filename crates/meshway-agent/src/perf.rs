//! `meshway perf`: throughput server and client over TCP (parallel streams, forward, reverse,
//! bidirectional; duration or byte count) and UDP (paced at a target rate; loss, duplicates,
//! reordering, RFC 3550 jitter). Wire format: [`meshway_probe::perf`].
//!
//! Threads: the server runs one thread per connection plus one UDP receive thread; the client
//! one thread per stream plus the reporting loop. Throughput is always the receiver's count of
//! bytes after its first arrival over its span from first to last arrival (goodput), so data
//! still sitting in socket buffers when the sender stops is neither lost nor counted early.

use crate::clock::{self, CpuMeter};
use meshway_probe::perf::{
    udp_due, Accept, Direction, Finish, Hello, Protocol, Request, ServerResult, UdpHeader, UdpReceiver, UdpReport,
    HELLO_LEN, HELLO_MAGIC, PROTOCOL_VERSION, UDP_HEADER_LEN,
};
use meshway_units::{BitsPerSec, Bytes, Nanos};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use thiserror::Error;

/// Largest number of parallel streams a client may ask for.
pub const MAX_STREAMS: u16 = 128;
/// Largest write or datagram size.
pub const MAX_SIZE: u32 = 1 << 20;
/// Longest test a server accepts.
pub const MAX_DURATION: Nanos = Nanos(3_600_000_000_000);
/// Fastest UDP rate a server accepts: 100 Gb/s (an assumption, above what one user-space
/// socket paces; it bounds what a request can make the server send).
pub const MAX_UDP_RATE_BPS: u64 = 100_000_000_000;
/// How long a server keeps sending past the requested duration if the client goes silent.
const GRACE: Nanos = Nanos(10_000_000_000);
/// How long an accepted test may go without a data stream, a datagram or a UDP hello before
/// the server ends it: 10 s, an assumption (a client opens its streams right after the
/// server's accept; iperf3's --idle-timeout is the same idea, off by default).
const IDLE: Nanos = Nanos(10_000_000_000);

#[derive(Debug, Error)]
pub enum PerfError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("server refused the test: {0}")]
    Refused(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("invalid test: {0}")]
    Invalid(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> PerfError {
    let what = what.into();
    move |source| PerfError::Io { what, source }
}

/// Checks a request against the server's limits; the message names the offending field.
pub fn validate(r: &Request) -> Result<(), String> {
    if r.version != PROTOCOL_VERSION {
        return Err(format!("protocol version {} not supported (this server speaks {PROTOCOL_VERSION})", r.version));
    }
    if r.streams == 0 || r.streams > MAX_STREAMS {
        return Err(format!("streams {} out of range 1..={MAX_STREAMS}", r.streams));
    }
    if r.duration_ns == 0 || r.duration_ns > MAX_DURATION.get() {
        return Err(format!("duration {} out of range (0, 1h]", Nanos(r.duration_ns)));
    }
    if r.size == 0 || r.size > MAX_SIZE {
        return Err(format!("size {} out of range 1..={MAX_SIZE} bytes", r.size));
    }
    if r.protocol == Protocol::Udp {
        if r.streams != 1 {
            return Err("udp tests use one stream (raise the rate instead)".into());
        }
        if r.direction == Direction::Bidir {
            return Err("udp tests are forward or reverse, not bidir".into());
        }
        if (r.size as usize) < UDP_HEADER_LEN || r.size > 65_507 {
            return Err(format!("udp datagram size {} out of range {UDP_HEADER_LEN}..=65507", r.size));
        }
        if r.rate_bps.is_none_or(|b| b == 0) {
            return Err("udp tests need a positive rate".into());
        }
        if let Some(b) = r.rate_bps.filter(|&b| b > MAX_UDP_RATE_BPS) {
            return Err(format!(
                "udp rate {} above the server's limit of {}",
                BitsPerSec(b),
                BitsPerSec(MAX_UDP_RATE_BPS)
            ));
        }
        if r.bytes.is_some() {
            return Err("udp tests run for a duration, not a byte count".into());
        }
    }
    Ok(())
}

/// The server's end-of-test figures, held to what the client knows: it cannot have received
/// more than was sent, nor taken negative or non-finite time, and its CPU share is finite.
fn check_server_result(res: &ServerResult, sent: u64, udp_sent: Option<u64>, elapsed: f64) -> Result<(), PerfError> {
    let bad = |why: String| Err(PerfError::Protocol(format!("the server's report is implausible: {why}")));
    if res.received_bytes > sent {
        return bad(format!("it received {} B, more than the {sent} B sent", res.received_bytes));
    }
    if !(res.receive_secs.is_finite() && res.receive_secs >= 0.0 && res.receive_secs <= elapsed + 60.0) {
        return bad(format!("a receive time of {} s in a {elapsed:.1} s test", res.receive_secs));
    }
    if !(res.cpu_percent.is_finite() && (0.0..=1e5).contains(&res.cpu_percent)) {
        return bad(format!("a CPU share of {}%", res.cpu_percent));
    }
    if let (Some(u), Some(n)) = (&res.udp, udp_sent) {
        if u.received > n || u.lost > n || !(0.0..=1.0).contains(&u.loss_ratio) {
            return bad(format!(
                "{} datagrams received and {} lost (ratio {}) of the {n} sent",
                u.received, u.lost, u.loss_ratio
            ));
        }
    }
    Ok(())
}

/// `s` with control characters escaped (`\n`, `\u{1b}`), for a log line.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Does the server send on data connection `stream` of this request?
fn server_sends(r: &Request, stream: u16) -> bool {
    match r.direction {
        Direction::Forward => false,
        Direction::Reverse => true,
        Direction::Bidir => stream >= r.streams,
    }
}

/// Reads one JSON control line (at most 64 KiB), all of it within `within`: a peer that
/// trickles a byte at a time would otherwise restart the socket's timeout with each byte.
fn read_json_line<T: serde::de::DeserializeOwned>(
    r: &mut BufReader<TcpStream>,
    within: Duration,
) -> Result<T, PerfError> {
    let deadline = clock::mono() + Nanos(u64::try_from(within.as_nanos()).unwrap_or(u64::MAX));
    let late = || PerfError::Protocol(format!("no complete control message within {:.0} s", within.as_secs_f64()));
    let mut line = Vec::new();
    loop {
        let left = clock::dur(deadline.saturating_sub(clock::mono()));
        if left.is_zero() {
            return Err(late());
        }
        r.get_ref().set_read_timeout(Some(left)).map_err(io_err("socket"))?;
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Err(late()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("cannot read a control message")(e)),
        };
        if buf.is_empty() {
            return Err(PerfError::Protocol("control connection closed".into()));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if line.len() > 64 * 1024 {
            return Err(PerfError::Protocol("a control message over 64 KiB".into()));
        }
        if done {
            break;
        }
    }
    let text = String::from_utf8_lossy(&line);
    serde_json::from_str(text.trim()).map_err(|e| PerfError::Protocol(format!("bad control message: {e}")))
}

fn write_json_line<T: Serialize>(w: &mut impl Write, v: &T) -> Result<(), PerfError> {
    let mut s = serde_json::to_string(v).map_err(|e| PerfError::Protocol(e.to_string()))?;
    s.push('\n');
    w.write_all(s.as_bytes()).map_err(io_err("cannot write a control message"))
}

/// Received-bytes span: first and last arrival times (monotonic ns; 0 = none yet), and the
/// bytes of the first arrival, which came in before the span starts: N arrivals have N - 1
/// gaps between them, so only the bytes after the first are timed by the span.
#[derive(Debug, Default)]
struct Span {
    first: AtomicU64,
    last: AtomicU64,
    first_bytes: AtomicU64,
}

impl Span {
    /// `bytes` arrived (one read or one datagram) at `now`.
    fn mark(&self, now: Nanos, bytes: usize) {
        if self.first.compare_exchange(0, now.get().max(1), Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.first_bytes.store(bytes as u64, Ordering::Relaxed);
        }
        self.last.fetch_max(now.get().max(1), Ordering::Relaxed);
    }
    /// The bytes of the first arrival, which the span does not time.
    fn untimed(&self) -> u64 {
        self.first_bytes.load(Ordering::Relaxed)
    }
    fn secs(&self) -> f64 {
        let (a, b) = (self.first.load(Ordering::Relaxed), self.last.load(Ordering::Relaxed));
        if a == 0 {
            0.0
        } else {
            Nanos(b.saturating_sub(a)).as_secs_f64()
        }
    }
}

/// Reads a data connection to its end, counting bytes.
/// Reads a TCP data stream to its peer's end of stream, or to the test's hard end: a receiver
/// is not stopped early, so a segment retransmitted late is still counted.
fn receive_loop(mut s: TcpStream, size: usize, bytes: &AtomicU64, span: &Span, hard_end: Nanos) {
    let mut buf = vec![0u8; size.max(64 * 1024)];
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let now = clock::mono();
                span.mark(now, n);
                bytes.fetch_add(n as u64, Ordering::Relaxed);
                // A peer still sending past the hard end (a broken or hostile one) is cut off.
                if now > hard_end {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                if clock::mono() > hard_end {
                    break;
                }
            }
            Err(_) => break,
        }
    }
}

/// Writes to a data connection until `stop`, the byte budget or `hard_end`.
fn send_loop(
    mut s: TcpStream,
    size: usize,
    bytes: &AtomicU64,
    budget: Option<&AtomicI64>,
    stop: &AtomicBool,
    hard_end: Nanos,
) {
    let buf = vec![0x5au8; size];
    let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
    while !stop.load(Ordering::Relaxed) && clock::mono() < hard_end {
        let mut n = size;
        if let Some(b) = budget {
            // Takes at most what is left, never below zero: a stream that found the budget
            // spent while another's chunk was out (and came back unsent) must not keep
            // its own debit, or that chunk is never sent.
            match b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                (left > 0).then(|| left - left.min(size as i64))
            }) {
                Ok(left) => n = n.min(left as usize),
                Err(_) => break,
            }
        }
        match s.write(&buf[..n]) {
            Ok(w) => {
                bytes.fetch_add(w as u64, Ordering::Relaxed);
                if let (Some(b), true) = (budget, w < n) {
                    b.fetch_add((n - w) as i64, Ordering::Relaxed);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                if let Some(b) = budget {
                    b.fetch_add(n as i64, Ordering::Relaxed);
                }
            }
            Err(_) => break,
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}

/// Paces UDP datagrams at `rate` until `stop` or `end`, adding to `bytes` as it goes; returns
/// how many were sent. Sleeps until the next datagram is due and then sends every datagram
/// that is due, so timer slack shows up as small bursts, never as a lower average rate.
#[allow(clippy::too_many_arguments)]
fn udp_send_loop(
    sock: &UdpSocket,
    to: Option<SocketAddr>,
    session: u64,
    size: usize,
    rate: BitsPerSec,
    bytes: &AtomicU64,
    stop: &AtomicBool,
    end: Nanos,
) -> u64 {
    let mut buf = vec![0u8; size];
    let start = clock::mono();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = clock::mono();
        if now >= end {
            break;
        }
        let due = udp_due(start, seq, Bytes(size as u64), rate);
        if due > now {
            std::thread::sleep(clock::dur(due.saturating_sub(now).min(Nanos(50_000_000))));
            continue;
        }
        let h = UdpHeader { session, seq, sent_ns: now.saturating_sub(start).get() };
        let _ = h.encode(&mut buf);
        let r = match to {
            Some(a) => sock.send_to(&buf, a),
            None => sock.send(&buf),
        };
        match r {
            Ok(n) => {
                seq += 1;
                bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            // A full socket buffer or a transient ICMP error: the datagram is not sent; retry.
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused) => {
                std::thread::yield_now()
            }
            Err(_) => break,
        }
    }
    seq
}

/// Asks for 4 MiB socket buffers so a paced burst is not dropped by the host itself (the
/// kernel caps this at net.core.rmem_max / wmem_max).
/// 4 MiB each way. As root the receive buffer is forced past `net.core.rmem_max` (often
/// 208 KiB: about 20 ms of 1,200 B datagrams at 50 Mbit/s, so a short stall of the receiving
/// thread lost datagrams the network delivered); otherwise it is what that limit allows.
fn big_buffers(s: &UdpSocket) {
    let _ = crate::reflect::set_recv_buffer(s, 4 << 20);
    let _ = socket2::SockRef::from(s).set_send_buffer_size(4 << 20);
}

// =============================================================================================
// server

struct ServerSession {
    req: Request,
    rx_bytes: AtomicU64,
    tx_bytes: AtomicU64,
    span: Span,
    stop: AtomicBool,
    budget: Option<AtomicI64>,
    hard_end: Nanos,
    threads: Mutex<Vec<JoinHandle<()>>>,
    udp_rx: Mutex<UdpReceiver>,
    udp_peer: Mutex<Option<SocketAddr>>,
    udp_sent: AtomicU64,
    /// The control connection's address: data connections and datagrams come from it, so a
    /// request cannot aim the server's traffic at another host.
    client: std::net::IpAddr,
    /// Data connections taken, by stream number (each once).
    streams_seen: Mutex<Vec<bool>>,
    /// Data connections whose thread was started (or could not be): the session's end waits
    /// for all of them.
    streams_settled: AtomicU64,
}

impl ServerSession {
    /// Whether the client has started its test: a data stream connected, a datagram came, or
    /// (reverse UDP) its hello said where to send.
    fn started(&self) -> bool {
        self.rx_bytes.load(Ordering::Relaxed) > 0
            || self.streams_seen.lock().is_ok_and(|v| v.iter().any(|&x| x))
            || self.udp_peer.lock().is_ok_and(|p| p.is_some())
    }
}

/// How long a session whose client has said Finish waits for data streams it has not seen
/// yet (an assumption: a connection accepted but still in its hello; a client's Finish can
/// overtake its data connection, which then found its session gone and was counted as 0
/// bytes received).
const STREAM_WAIT: Nanos = Nanos(5_000_000_000);

/// TCP data streams a request opens: twice its `streams` for bidir; none for UDP.
fn stream_count(r: &Request) -> u16 {
    match (r.protocol, r.direction) {
        (Protocol::Udp, _) => 0,
        (_, Direction::Bidir) => r.streams.saturating_mul(2),
        _ => r.streams,
    }
}

/// The same host, an IPv4 address and its IPv4-mapped IPv6 form alike.
fn same_host(a: std::net::IpAddr, b: std::net::IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

type Sessions = Arc<Mutex<HashMap<u64, Arc<ServerSession>>>>;

/// Tests a server runs at once, in all and from one address. Tests side by side measure
/// each other (iperf3 runs one at a time); a few let several people test without one client
/// holding the server. Assumptions.
pub const MAX_SESSIONS: usize = 8;
pub const MAX_SESSIONS_PER_SOURCE: usize = 4;
/// Connections that have not yet said what they are (a test request or a stream hello), in
/// all and from one source (an IPv4 address or an IPv6 /64, as the agent's HTTP server
/// counts them); each gets 10 s to speak. One source may open a whole test's streams at
/// once (twice the most streams, for bidir) and some; when all places are taken, a new
/// connection takes the place of the one silent longest, which is closed. Assumptions.
pub const MAX_PENDING: usize = 1024;
pub const MAX_PENDING_PER_SOURCE: usize = 2 * MAX_STREAMS as usize + 16;

/// Pending connections this process can hold: [`MAX_PENDING`], or fewer under a low
/// open-file limit (each takes two descriptors while pending, and tests need theirs): a
/// third of the soft limit past 64 spare.
fn pending_cap() -> usize {
    let soft =
        std::fs::read_to_string("/proc/self/limits").ok().and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| if v == "unlimited" { Some(u64::MAX) } else { v.parse::<u64>().ok() })
        });
    let by_fds = soft.map_or(MAX_PENDING as u64, |n| n.saturating_sub(64) / 3);
    (by_fds.min(MAX_PENDING as u64) as usize).max(MAX_PENDING_PER_SOURCE.min(16))
}
/// How long a connection may take to say what it is.
const SPEAK_WITHIN: Duration = Duration::from_secs(10);

/// Connections not yet identified: a count by source, and a handle on each, by accept order,
/// to close the one silent longest.
struct Pending {
    inner: Mutex<PendingState>,
    cap: usize,
}

#[derive(Default)]
struct PendingState {
    by_source: HashMap<std::net::IpAddr, usize>,
    silent: std::collections::BTreeMap<u64, Silent>,
    next: u64,
}

/// A pending connection: its source, a handle to close it, and a flag its thread reads to
/// know it was closed to make room (and stay quiet about it).
struct Silent {
    source: std::net::IpAddr,
    handle: TcpStream,
    evicted: Arc<AtomicBool>,
}

/// One pending connection's place; given back when dropped (or when it was closed to make
/// room).
struct PendingSlot {
    pending: Arc<Pending>,
    id: u64,
    evicted: Arc<AtomicBool>,
}

/// Why a connection was closed unheard.
enum Unheard {
    /// Its source holds all its places.
    Source,
    /// It could not be tracked (out of descriptors): the error.
    Untracked(io::Error),
}

impl PendingState {
    fn forget(&mut self, id: u64) -> Option<Silent> {
        let x = self.silent.remove(&id)?;
        if let Some(n) = self.by_source.get_mut(&x.source) {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&x.source);
            }
        }
        Some(x)
    }

    /// Closes the connection silent longest; whether there was one.
    fn evict_oldest(&mut self) -> bool {
        let Some(&oldest) = self.silent.keys().next() else { return false };
        if let Some(old) = self.forget(oldest) {
            old.evicted.store(true, Ordering::Relaxed);
            let _ = old.handle.shutdown(std::net::Shutdown::Both);
        }
        true
    }
}

impl Pending {
    fn new(cap: usize) -> Arc<Pending> {
        Arc::new(Pending { inner: Mutex::new(PendingState::default()), cap })
    }

    /// A place for connection `s` from `source`, and how many were closed to make room.
    fn enter(self: &Arc<Self>, source: std::net::IpAddr, s: &TcpStream) -> Result<(PendingSlot, u64), Unheard> {
        let source = crate::http::source_key(source);
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if st.by_source.get(&source).copied().unwrap_or(0) >= MAX_PENDING_PER_SOURCE {
            return Err(Unheard::Source);
        }
        let mut evicted = 0;
        if st.silent.len() >= self.cap && st.evict_oldest() {
            evicted += 1;
        }
        let handle = match s.try_clone() {
            Ok(h) => h,
            Err(e) => {
                // Out of descriptors: make room for the next one, and close this one.
                st.evict_oldest();
                return Err(Unheard::Untracked(e));
            }
        };
        st.next += 1;
        let id = st.next;
        *st.by_source.entry(source).or_insert(0) += 1;
        let flag = Arc::new(AtomicBool::new(false));
        st.silent.insert(id, Silent { source, handle, evicted: flag.clone() });
        Ok((PendingSlot { pending: self.clone(), id, evicted: flag }, evicted))
    }
}

impl PendingSlot {
    /// The connection has said what it is: gives its place back. False when it was closed
    /// to make room meanwhile (its socket is shut: nothing more to do).
    fn release(&self) -> bool {
        let mut st = self.pending.inner.lock().unwrap_or_else(|e| e.into_inner());
        st.forget(self.id).is_some()
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut st = self.pending.inner.lock().unwrap_or_else(|e| e.into_inner());
        st.forget(self.id);
    }
}

/// Removes a session from the table when dropped: every way a test ends gives its place back.
struct Listed<'a> {
    sessions: &'a Sessions,
    id: u64,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.sessions.lock() {
            m.remove(&self.id);
        }
    }
}

/// An error with its causes, for the server's log ("socket: Too many open files").
fn with_causes(e: &PerfError) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Serves perf clients on `listener` (TCP) and `udp` (the same port number) until `shutdown`.
/// `log` receives one line per test started and finished.
pub fn serve(
    listener: TcpListener,
    udp: UdpSocket,
    shutdown: Arc<AtomicBool>,
    log: Arc<dyn Fn(String) + Send + Sync>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    big_buffers(&udp);
    let sessions: Sessions = Arc::default();
    let udp = Arc::new(udp);
    udp.set_read_timeout(Some(Duration::from_millis(100)))?;
    let udp_thread = {
        let (udp, sessions, shutdown) = (udp.clone(), sessions.clone(), shutdown.clone());
        std::thread::Builder::new().name("perf-udp".into()).spawn(move || udp_receive(&udp, &sessions, &shutdown))?
    };
    // Session ids are a keyed hash (SipHash with std's per-process random key) of a counter,
    // so one client's id tells nothing of the next: a data stream or datagram naming another
    // client's session cannot be guessed.
    let keyed = std::collections::hash_map::RandomState::new();
    let mut counter = 0u64;
    // Peers' names and errors reach the log with control characters escaped.
    let log: Arc<dyn Fn(String) + Send + Sync> = Arc::new(move |line: String| log(printable(&line)));
    let pending = Pending::new(pending_cap());
    // Connections closed unheard (over a source's places, closed to make room, or not
    // accepted), said at most once every 10 s.
    let (mut dropped, mut made_room, mut failed, mut said) = (0u64, 0u64, 0u64, Nanos::ZERO);
    let mut say = |why: String, dropped: &mut u64, made_room: &mut u64, failed: &mut u64| {
        let now = clock::mono();
        if said == Nanos::ZERO || now.saturating_sub(said) >= Nanos(10_000_000_000) {
            log(format!(
                "{why}; in the last 10 s: {dropped} connection(s) closed unheard (over {MAX_PENDING_PER_SOURCE} silent from one source, or untracked), {made_room} silent one(s) closed to make room, {failed} accept(s) failed"
            ));
            (*dropped, *made_room, *failed, said) = (0, 0, 0, now);
        }
    };
    while !shutdown.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, peer)) => {
                let slot = match pending.enter(peer.ip(), &s) {
                    Ok((slot, evicted)) => {
                        made_room += evicted;
                        slot
                    }
                    Err(why) => {
                        // Closed at once, and this server keeps its threads for clients that
                        // speak.
                        drop(s);
                        dropped += 1;
                        let why = match why {
                            Unheard::Source => format!("{peer}: too many silent connections from its source"),
                            Unheard::Untracked(e) => format!("{peer}: cannot track a connection: {e}"),
                        };
                        say(why, &mut dropped, &mut made_room, &mut failed);
                        continue;
                    }
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_nodelay(true);
                counter += 1;
                let id = std::hash::BuildHasher::hash_one(&keyed, counter);
                let (sessions, udp, log) = (sessions.clone(), udp.clone(), log.clone());
                let _ = std::thread::Builder::new().name("perf-conn".into()).spawn(move || {
                    let evicted = slot.evicted.clone();
                    if let Err(e) = handle_connection(s, peer, id, slot, &sessions, &udp, &*log) {
                        // One closed to make room is counted by the accept loop, not logged.
                        if !evicted.load(Ordering::Relaxed) {
                            log(format!("{peer}: {}", with_causes(&e)));
                        }
                    }
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of descriptors and the like: make room, say so, back off.
                if pending.inner.lock().unwrap_or_else(|p| p.into_inner()).evict_oldest() {
                    made_room += 1;
                }
                failed += 1;
                say(format!("accept failed: {e}"), &mut dropped, &mut made_room, &mut failed);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let _ = udp_thread.join();
    Ok(())
}

fn udp_receive(udp: &UdpSocket, sessions: &Sessions, shutdown: &AtomicBool) {
    let mut buf = vec![0u8; 65_536];
    while !shutdown.load(Ordering::Relaxed) {
        let Ok((n, from)) = udp.recv_from(&mut buf) else { continue };
        let now = clock::mono();
        let Some(h) = UdpHeader::decode(&buf[..n]) else { continue };
        let Some(s) = sessions.lock().map(|m| m.get(&h.session).cloned()).unwrap_or(None) else { continue };
        if !same_host(from.ip(), s.client) {
            continue;
        }
        if h.seq == u64::MAX {
            // The client's hello for a reverse test: where to send.
            if let Ok(mut p) = s.udp_peer.lock() {
                p.get_or_insert(from);
            }
            continue;
        }
        if s.req.direction == Direction::Forward {
            s.span.mark(now, n);
            s.rx_bytes.fetch_add(n as u64, Ordering::Relaxed);
            if let Ok(mut r) = s.udp_rx.lock() {
                r.on_datagram(now.get(), &h, n);
            }
        }
    }
}

fn handle_connection(
    s: TcpStream,
    peer: SocketAddr,
    id: u64,
    slot: PendingSlot,
    sessions: &Sessions,
    udp: &Arc<UdpSocket>,
    log: &(dyn Fn(String) + Send + Sync),
) -> Result<(), PerfError> {
    let speak_by = clock::mono() + Nanos(u64::try_from(SPEAK_WITHIN.as_nanos()).unwrap_or(u64::MAX));
    let left = || clock::dur(speak_by.saturating_sub(clock::mono()));
    // The first four bytes say what the connection is: waited for while they could still be
    // a stream hello's (however they are trickled), within the same 10 s.
    let mut head = [0u8; 4];
    loop {
        if left().is_zero() {
            return Err(PerfError::Protocol("nothing said within 10 s".into()));
        }
        s.set_read_timeout(Some(left())).map_err(io_err("socket"))?;
        let n = s.peek(&mut head).map_err(io_err("cannot read from the client"))?;
        if n == 0 {
            return Err(PerfError::Protocol("connection closed before it said anything".into()));
        }
        if n >= 4 || head[..n] != HELLO_MAGIC[..n] {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if head == HELLO_MAGIC {
        // The whole hello within the same 10 s, however it is trickled.
        let mut hello = [0u8; HELLO_LEN];
        let mut got = 0;
        while got < HELLO_LEN {
            let left = left();
            if left.is_zero() {
                return Err(PerfError::Protocol("no complete stream hello within 10 s".into()));
            }
            s.set_read_timeout(Some(left)).map_err(io_err("socket"))?;
            match (&s).read(&mut hello[got..]) {
                Ok(0) => return Err(PerfError::Protocol("connection closed in the stream hello".into())),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("cannot read the stream hello")(e)),
            }
        }
        s.set_read_timeout(Some(SPEAK_WITHIN)).map_err(io_err("socket"))?;
        if !slot.release() {
            return Ok(()); // closed to make room meanwhile
        }
        let h = Hello::decode(&hello).ok_or_else(|| PerfError::Protocol("bad stream hello".into()))?;
        let sess = sessions
            .lock()
            .ok()
            .and_then(|m| m.get(&h.session).cloned())
            .ok_or_else(|| PerfError::Protocol(format!("unknown session {:x}", h.session)))?;
        // TCP cannot be spoofed and the session id cannot be guessed: a data stream may come
        // from another address of the client (a NAT pool), unlike UDP datagrams.
        let fresh = sess.streams_seen.lock().ok().is_some_and(|mut seen| match seen.get_mut(usize::from(h.stream)) {
            Some(x) if !*x => {
                *x = true;
                true
            }
            _ => false,
        });
        if !fresh {
            return Err(PerfError::Protocol(format!(
                "data stream {} of session {:x}: the test has {} streams, each opened once",
                h.stream,
                h.session,
                stream_count(&sess.req)
            )));
        }
        let size = sess.req.size as usize;
        let sess2 = sess.clone();
        // A thread the system refuses closes this stream (the test reports what moved).
        let t = std::thread::Builder::new().name("perf-stream".into()).spawn(move || {
            let ss = &*sess2;
            if server_sends(&ss.req, h.stream) {
                send_loop(s, size, &ss.tx_bytes, ss.budget.as_ref(), &ss.stop, ss.hard_end)
            } else {
                receive_loop(s, size, &ss.rx_bytes, &ss.span, ss.hard_end)
            }
        });
        let r = match t {
            Ok(t) => {
                if let Ok(mut v) = sess.threads.lock() {
                    v.push(t);
                }
                Ok(())
            }
            Err(e) => Err(io_err(format!("cannot start a thread for data stream {}", h.stream))(e)),
        };
        // Settled after its thread is listed, so the session's end joins it.
        sess.streams_settled.fetch_add(1, Ordering::Release);
        return r;
    }
    // A control connection.
    let mut reader = BufReader::new(s.try_clone().map_err(io_err("socket"))?);
    let mut w = s;
    let req: Request = match read_json_line(&mut reader, left().max(Duration::from_millis(1))) {
        Ok(r) => r,
        Err(e) => {
            // A message it cannot read is answered with the reason, when the client is
            // still there to read it (a newer client's field, a typo).
            if let PerfError::Protocol(why) = &e {
                let _ = write_json_line(&mut w, &Accept { ok: false, session: 0, error: Some(why.clone()) });
            }
            return Err(e);
        }
    };
    if !slot.release() {
        return Ok(()); // closed to make room meanwhile
    }
    if let Err(why) = validate(&req) {
        write_json_line(&mut w, &Accept { ok: false, session: 0, error: Some(why.clone()) })?;
        return Err(PerfError::Refused(why));
    }
    let cpu = CpuMeter::start();
    let hard_end = clock::mono() + Nanos(req.duration_ns) + GRACE;
    let sess = Arc::new(ServerSession {
        budget: req.bytes.map(|b| AtomicI64::new(i64::try_from(b).unwrap_or(i64::MAX))),
        req: req.clone(),
        rx_bytes: AtomicU64::new(0),
        tx_bytes: AtomicU64::new(0),
        span: Span::default(),
        stop: AtomicBool::new(false),
        hard_end,
        threads: Mutex::new(Vec::new()),
        udp_rx: Mutex::new(UdpReceiver::new()),
        udp_peer: Mutex::new(None),
        udp_sent: AtomicU64::new(0),
        client: peer.ip(),
        streams_seen: Mutex::new(vec![false; usize::from(stream_count(&req))]),
        streams_settled: AtomicU64::new(0),
    });
    // Checked and taken under one lock: two clients cannot both take the last place.
    let busy = match sessions.lock() {
        Ok(mut m) => {
            let mine = m.values().filter(|x| same_host(x.client, peer.ip())).count();
            if m.len() >= MAX_SESSIONS {
                Some(format!("busy: {} tests are running, the most this server runs at once; try again later", m.len()))
            } else if mine >= MAX_SESSIONS_PER_SOURCE {
                Some(format!(
                    "busy: {mine} tests from {} are running, the most it runs for one address; try again later",
                    peer.ip()
                ))
            } else {
                m.insert(id, sess.clone());
                None
            }
        }
        Err(_) => Some("busy: the server's session table is unusable".into()),
    };
    if let Some(why) = busy {
        write_json_line(&mut w, &Accept { ok: false, session: 0, error: Some(why.clone()) })?;
        return Err(PerfError::Refused(why));
    }
    // From here every way out, an error included, takes the session off the table.
    let _listed = Listed { sessions, id };
    log(format!("{peer}: {:?} {:?} test, {} stream(s), session {id:x}", req.protocol, req.direction, req.streams)
        .to_lowercase());
    write_json_line(&mut w, &Accept { ok: true, session: id, error: None })?;
    if req.protocol == Protocol::Udp && req.direction == Direction::Reverse {
        let (ss, udp) = (sess.clone(), udp.clone());
        let t = std::thread::Builder::new().name("perf-udp-send".into()).spawn(move || {
            // Wait for the client's hello (at most 3 s) to learn where to send.
            let t0 = clock::mono();
            let peer = loop {
                if let Some(p) = ss.udp_peer.lock().ok().and_then(|p| *p) {
                    break Some(p);
                }
                if ss.stop.load(Ordering::Relaxed) || clock::mono() > t0 + Nanos(3_000_000_000) {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            if let Some(p) = peer {
                let rate = BitsPerSec(ss.req.rate_bps.unwrap_or(1));
                // The test's length from the first datagram, as the client's own sender
                // times it: a late Finish (a busy client) does not stretch it.
                let end = clock::mono() + Nanos(ss.req.duration_ns);
                let n = udp_send_loop(&udp, Some(p), id, ss.req.size as usize, rate, &ss.tx_bytes, &ss.stop, end);
                ss.udp_sent.store(n, Ordering::Relaxed);
            }
        });
        match t {
            Ok(t) => {
                if let Ok(mut v) = sess.threads.lock() {
                    v.push(t);
                }
            }
            // The session stays until the client's Finish, as any, and reports 0 sent.
            Err(e) => log(format!("{peer}: session {id:x}: cannot start the UDP sender: {e}")),
        }
    }
    // A client that opens no data stream and sends nothing for IDLE holds a slot for nothing
    // (up to the test's length, an hour): its control connection is closed, which ends the
    // wait below.
    if let Ok(ctl) = w.try_clone() {
        let ss = sess.clone();
        let _ = std::thread::Builder::new().name("perf-idle".into()).spawn(move || {
            let until = clock::mono() + IDLE;
            while clock::mono() < until && !ss.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !ss.stop.load(Ordering::Relaxed) && !ss.started() {
                let _ = ctl.shutdown(std::net::Shutdown::Both);
            }
        });
    }
    // Wait for the client's finish (or its disappearance, or the hard end).
    let fin: Result<Finish, _> = read_json_line(&mut reader, clock::dur(Nanos(req.duration_ns) + GRACE));
    sess.stop.store(true, Ordering::Relaxed);
    if fin.is_err() && !sess.started() {
        log(format!("{peer}: session {id:x}: no data stream or datagram in {IDLE}; ended"));
    }
    // The client's Finish can overtake a data connection still in its hello: wait for every
    // stream the test opens (bounded), or its bytes would be counted as never received.
    if fin.is_ok() {
        let want = u64::from(stream_count(&req));
        let until = clock::mono() + STREAM_WAIT;
        while sess.streams_settled.load(Ordering::Acquire) < want && clock::mono() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
        let got = sess.streams_settled.load(Ordering::Acquire);
        if got < want {
            log(format!("{peer}: session {id:x}: {got} of {want} data streams arrived within {STREAM_WAIT}"));
        }
    }
    // Receivers run until the client's end of stream; senders stop at once.
    let threads = std::mem::take(&mut *sess.threads.lock().map_err(|_| PerfError::Protocol("poisoned".into()))?);
    for t in threads {
        let _ = t.join();
    }
    if req.protocol == Protocol::Udp && req.direction == Direction::Forward {
        // Datagrams still in flight.
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(_listed);
    let fin = fin?;
    let udp_report = (req.protocol == Protocol::Udp && req.direction == Direction::Forward)
        .then(|| sess.udp_rx.lock().map(|r| r.report(fin.udp_sent)).ok())
        .flatten();
    let res = ServerResult {
        received_bytes: sess.rx_bytes.load(Ordering::Relaxed),
        sent_bytes: sess.tx_bytes.load(Ordering::Relaxed),
        receive_secs: sess.span.secs(),
        untimed_bytes: sess.span.untimed(),
        cpu_percent: cpu.percent(),
        udp: udp_report,
        udp_sent: (req.protocol == Protocol::Udp && req.direction == Direction::Reverse)
            .then(|| sess.udp_sent.load(Ordering::Relaxed)),
    };
    write_json_line(&mut w, &res)?;
    log(format!("{peer}: session {id:x} done: received {}, sent {}", Bytes(res.received_bytes), Bytes(res.sent_bytes)));
    Ok(())
}

// =============================================================================================
// client

#[derive(Debug, Clone)]
pub struct PerfConfig {
    pub server: SocketAddr,
    pub protocol: Protocol,
    pub direction: Direction,
    pub streams: u16,
    /// Test length (with `bytes`, the longest the test may run).
    pub duration: Nanos,
    /// Bytes to send per direction (TCP), instead of running for `duration`.
    pub bytes: Option<Bytes>,
    /// UDP target rate.
    pub rate: Option<BitsPerSec>,
    /// TCP write size or UDP datagram size.
    pub size: usize,
    /// Interval between reports.
    pub interval: Nanos,
}

/// One interval, as the client sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntervalReport {
    pub start_secs: f64,
    pub end_secs: f64,
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub sent_bps: f64,
    pub received_bps: f64,
}

/// One direction's result: what left the sender and what the receiver counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowResult {
    pub sent_bytes: u64,
    pub received_bytes: u64,
    /// Receiver's span from the first arrival to the last.
    pub receive_secs: f64,
    /// Goodput: the bytes received after the first arrival × 8 over the receive span (the
    /// first arrival's bytes came before the span starts); `None` (`null` in JSON) when bytes
    /// came but the span is too short to time (every byte came in one read, so first and last
    /// arrival share a time); 0 when nothing was received.
    pub throughput_bps: Option<f64>,
}

impl FlowResult {
    /// `untimed`: the bytes of the first arrival, which the span `secs` does not time.
    fn new(sent: u64, received: u64, secs: f64, untimed: u64) -> FlowResult {
        let bps = match received {
            0 => Some(0.0),
            _ if secs > 0.0 => Some(received.saturating_sub(untimed) as f64 * 8.0 / secs),
            _ => None,
        };
        FlowResult { sent_bytes: sent, received_bytes: received, receive_secs: secs, throughput_bps: bps }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerfReport {
    pub server: String,
    pub protocol: Protocol,
    pub direction: Direction,
    pub streams: u16,
    pub size_bytes: usize,
    pub elapsed_secs: f64,
    /// Client → server.
    pub forward: Option<FlowResult>,
    /// Server → client.
    pub reverse: Option<FlowResult>,
    pub udp_target_rate_bps: Option<u64>,
    pub udp: Option<UdpReport>,
    /// Process CPU time over wall time, percent of one core.
    pub client_cpu_percent: f64,
    /// The server's whole process (it may be serving other clients too).
    pub server_cpu_percent: f64,
    pub intervals: Vec<IntervalReport>,
}

/// Counters and stop flags shared by a test's stream threads and its reporting loop.
#[derive(Clone, Default)]
struct Shared {
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    span: Arc<Span>,
    stop_send: Arc<AtomicBool>,
    stop_recv: Arc<AtomicBool>,
    /// Bytes left to send when the test is bounded by bytes.
    budget: Option<Arc<AtomicI64>>,
}

/// The threads moving a test's data.
#[derive(Default)]
struct Streams {
    senders: Vec<JoinHandle<u64>>,
    receivers: Vec<JoinHandle<Option<UdpReceiver>>>,
}

/// Connects the control channel, sends the request and reads the server's answer.
fn handshake(cfg: &PerfConfig, req: &Request) -> Result<(BufReader<TcpStream>, TcpStream, Accept), PerfError> {
    let ctl = TcpStream::connect_timeout(&cfg.server, Duration::from_secs(5))
        .map_err(io_err(format!("cannot connect to perf server {}", cfg.server)))?;
    let _ = ctl.set_nodelay(true);
    ctl.set_read_timeout(Some(Duration::from_secs(10))).map_err(io_err("socket"))?;
    let mut reader = BufReader::new(ctl.try_clone().map_err(io_err("socket"))?);
    let mut w = ctl;
    write_json_line(&mut w, req)?;
    let acc: Accept = read_json_line(&mut reader, Duration::from_secs(10))?;
    if !acc.ok {
        // The server's words go to the user's terminal: control characters (escape
        // sequences, newlines) are shown escaped, and at most 500 characters.
        let why: String = acc
            .error
            .unwrap_or_default()
            .chars()
            .take(500)
            .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
            .collect();
        return Err(PerfError::Refused(why));
    }
    Ok((reader, w, acc))
}

/// Opens the TCP data streams, each with its sending or receiving thread.
fn start_tcp(
    cfg: &PerfConfig,
    req: &Request,
    session: u64,
    sh: &Shared,
    hard_end: Nanos,
) -> Result<Streams, PerfError> {
    let mut st = Streams::default();
    let n = if cfg.direction == Direction::Bidir { cfg.streams * 2 } else { cfg.streams };
    for stream in 0..n {
        let mut s = TcpStream::connect_timeout(&cfg.server, Duration::from_secs(5))
            .map_err(io_err(format!("cannot open data stream {stream}")))?;
        s.write_all(&Hello { stream, session }.encode()).map_err(io_err("cannot send hello"))?;
        let sh = sh.clone();
        let size = cfg.size;
        if server_sends(req, stream) {
            st.receivers.push(std::thread::spawn(move || {
                receive_loop(s, size, &sh.received, &sh.span, hard_end);
                None
            }));
        } else {
            st.senders.push(std::thread::spawn(move || {
                send_loop(s, size, &sh.sent, sh.budget.as_deref(), &sh.stop_send, hard_end);
                0
            }));
        }
    }
    Ok(st)
}

/// Opens the UDP socket and its paced sender (forward) or its receiver (reverse).
fn start_udp(cfg: &PerfConfig, session: u64, sh: &Shared, end: Nanos, hard_end: Nanos) -> Result<Streams, PerfError> {
    let mut st = Streams::default();
    let any = if cfg.server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let sock = UdpSocket::bind(any).map_err(io_err("cannot bind a udp socket"))?;
    big_buffers(&sock);
    sock.connect(cfg.server).map_err(io_err("cannot reach the server over udp"))?;
    let (rate, size) = (cfg.rate.unwrap_or(BitsPerSec(1)), cfg.size);
    if cfg.direction == Direction::Forward {
        let sh = sh.clone();
        st.senders.push(std::thread::spawn(move || {
            udp_send_loop(&sock, None, session, size, rate, &sh.sent, &sh.stop_send, end)
        }));
        return Ok(st);
    }
    let hello = {
        let mut b = [0u8; UDP_HEADER_LEN];
        let _ = UdpHeader { session, seq: u64::MAX, sent_ns: 0 }.encode(&mut b);
        b
    };
    for _ in 0..3 {
        let _ = sock.send(&hello);
    }
    let sh = sh.clone();
    st.receivers.push(std::thread::spawn(move || {
        let mut rx = UdpReceiver::new();
        let mut buf = vec![0u8; 65_536];
        let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
        while !sh.stop_recv.load(Ordering::Relaxed) && clock::mono() < hard_end {
            let Ok(n) = sock.recv(&mut buf) else { continue };
            let now = clock::mono();
            if let Some(h) = UdpHeader::decode(&buf[..n]).filter(|h| h.session == session) {
                sh.span.mark(now, n);
                sh.received.fetch_add(n as u64, Ordering::Relaxed);
                rx.on_datagram(now.get(), &h, n);
            }
        }
        Some(rx)
    }));
    Ok(st)
}

/// The interval between `last` (time, sent, received) and `now`.
fn interval(t0: Nanos, last: (Nanos, u64, u64), now: Nanos, s: u64, r: u64, dt: f64) -> IntervalReport {
    IntervalReport {
        start_secs: last.0.saturating_sub(t0).as_secs_f64(),
        end_secs: now.saturating_sub(t0).as_secs_f64(),
        sent_bytes: s - last.1,
        received_bytes: r - last.2,
        sent_bps: (s - last.1) as f64 * 8.0 / dt,
        received_bps: (r - last.2) as f64 * 8.0 / dt,
    }
}

/// Reports intervals until the end (duration, byte budget spent, or interrupted); returns
/// the last report point (time, sent, received).
#[allow(clippy::too_many_arguments)]
fn report_intervals(
    cfg: &PerfConfig,
    st: &Streams,
    sh: &Shared,
    stop: &AtomicBool,
    t0: Nanos,
    end: Nanos,
    on_interval: &mut dyn FnMut(&IntervalReport),
    intervals: &mut Vec<IntervalReport>,
) -> (Nanos, u64, u64) {
    let mut last = (t0, 0u64, 0u64);
    loop {
        let now = clock::mono();
        let received_all = st.receivers.iter().all(|t| t.is_finished());
        let senders_done = !st.senders.is_empty() && st.senders.iter().all(|t| t.is_finished());
        // A TCP bidir test with a byte budget ends when both directions have moved theirs:
        // the client's senders can spend its budget before the server's reverse streams
        // have started (256 of them on a loaded host), which ended the test with 0 back.
        let both_ways = cfg.protocol == Protocol::Tcp && cfg.direction == Direction::Bidir;
        let senders_done = senders_done && (!both_ways || received_all);
        let receivers_done = st.senders.is_empty() && received_all;
        let finished = now >= end || stop.load(Ordering::Relaxed) || senders_done || receivers_done;
        let tick = last.0 + cfg.interval;
        if now >= tick || finished {
            let (s, r) = (sh.sent.load(Ordering::Relaxed), sh.received.load(Ordering::Relaxed));
            let dt = now.saturating_sub(last.0).as_secs_f64();
            if dt > 0.0005 {
                let iv = interval(t0, last, now, s, r, dt);
                on_interval(&iv);
                intervals.push(iv);
            }
            last = (now, s, r);
        }
        if finished {
            return last;
        }
        let next = (last.0 + cfg.interval).min(end);
        std::thread::sleep(
            clock::dur(next.saturating_sub(clock::mono())).clamp(Duration::from_micros(500), Duration::from_millis(50)),
        );
    }
}

/// Runs one test against a `meshway perf --server`. `on_interval` sees each interval report.
pub fn run(
    cfg: &PerfConfig,
    stop: &AtomicBool,
    on_interval: &mut dyn FnMut(&IntervalReport),
) -> Result<PerfReport, PerfError> {
    let req = Request {
        version: PROTOCOL_VERSION,
        protocol: cfg.protocol,
        direction: cfg.direction,
        streams: cfg.streams,
        duration_ns: cfg.duration.get(),
        bytes: cfg.bytes.map(Bytes::get),
        rate_bps: cfg.rate.map(BitsPerSec::get),
        size: u32::try_from(cfg.size).unwrap_or(u32::MAX),
    };
    validate(&req).map_err(PerfError::Invalid)?;
    if cfg.interval == Nanos::ZERO {
        return Err(PerfError::Invalid("interval must be positive".into()));
    }
    let (mut reader, mut w, acc) = handshake(cfg, &req)?;
    let cpu = CpuMeter::start();
    let t0 = clock::mono();
    let end = t0 + cfg.duration;
    let hard_end = end + GRACE;
    let sh = Shared {
        budget: cfg.bytes.map(|b| Arc::new(AtomicI64::new(i64::try_from(b.get()).unwrap_or(i64::MAX)))),
        ..Shared::default()
    };
    let st = match cfg.protocol {
        Protocol::Tcp => start_tcp(cfg, &req, acc.session, &sh, hard_end)?,
        Protocol::Udp => start_udp(cfg, acc.session, &sh, end, hard_end)?,
    };
    let mut intervals = Vec::new();
    let last = report_intervals(cfg, &st, &sh, stop, t0, end, on_interval, &mut intervals);
    sh.stop_send.store(true, Ordering::Relaxed);
    let mut udp_sent = None;
    for t in st.senders {
        let n = t.join().map_err(|_| PerfError::Protocol("a sender thread panicked".into()))?;
        if cfg.protocol == Protocol::Udp {
            udp_sent = Some(n);
        }
    }
    let elapsed = clock::mono().saturating_sub(t0).as_secs_f64();
    write_json_line(&mut w, &Finish { finish: true, udp_sent })?;
    let res: ServerResult = read_json_line(&mut reader, clock::dur(GRACE + Nanos(5_000_000_000)))?;
    // TCP receivers end at the server's end of stream; UDP receivers after a short drain.
    if cfg.protocol == Protocol::Udp {
        std::thread::sleep(Duration::from_millis(200));
    }
    sh.stop_recv.store(true, Ordering::Relaxed);
    let mut udp_rx = None;
    for t in st.receivers {
        if let Some(rx) = t.join().map_err(|_| PerfError::Protocol("a receiver thread panicked".into()))? {
            udp_rx = Some(rx);
        }
    }
    let client_sent = sh.sent.load(Ordering::Relaxed);
    let client_received = sh.received.load(Ordering::Relaxed);
    check_server_result(&res, client_sent, udp_sent, elapsed)?;
    // TCP delivers every byte of a stream that lives: fewer received than sent means one
    // broke (the server closed it, or refused it at its limits).
    if cfg.protocol == Protocol::Tcp && cfg.direction != Direction::Reverse && res.received_bytes < client_sent {
        return Err(PerfError::Protocol(format!(
            "the server received {} of the {} bytes sent: a data stream broke (the server's log may say why)",
            res.received_bytes, client_sent
        )));
    }
    // Bytes that moved between the last report and the end (the last writes, the drain of
    // the receive side) go into a final short interval so the intervals add up to the total.
    if client_sent > last.1 || client_received > last.2 {
        let now = clock::mono();
        let dt = now.saturating_sub(last.0).as_secs_f64().max(1e-9);
        let iv = interval(t0, last, now, client_sent, client_received, dt);
        on_interval(&iv);
        intervals.push(iv);
    }
    let forward = matches!(cfg.direction, Direction::Forward | Direction::Bidir)
        .then(|| FlowResult::new(client_sent, res.received_bytes, res.receive_secs, res.untimed_bytes));
    let reverse = matches!(cfg.direction, Direction::Reverse | Direction::Bidir)
        .then(|| FlowResult::new(res.sent_bytes, client_received, sh.span.secs(), sh.span.untimed()));
    let udp = match cfg.direction {
        Direction::Forward => res.udp.clone(),
        _ => udp_rx.map(|r| r.report(res.udp_sent)),
    };
    Ok(PerfReport {
        server: cfg.server.to_string(),
        protocol: cfg.protocol,
        direction: cfg.direction,
        streams: cfg.streams,
        size_bytes: cfg.size,
        elapsed_secs: elapsed,
        forward,
        reverse,
        udp_target_rate_bps: cfg.rate.map(BitsPerSec::get),
        udp,
        client_cpu_percent: cpu.percent(),
        server_cpu_percent: res.cpu_percent,
        intervals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream paced at exactly 1 Mb/s reads as 1 Mb/s: 11 datagrams of 1,200 B, one every
    /// 9.6 ms, span 96 ms, and the first one's bytes came before the span began. Counting
    /// them read 1.10 Mb/s (+10%), and +33% on a 30 ms test.
    #[test]
    fn a_paced_stream_reads_as_its_rate() {
        let span = Span::default();
        let mut received = 0;
        for k in 0..11u64 {
            span.mark(Nanos(5_000_000 + k * 9_600_000), 1200);
            received += 1200;
        }
        assert_eq!(span.untimed(), 1200);
        let r = FlowResult::new(received, received, span.secs(), span.untimed());
        assert!((r.throughput_bps.unwrap() - 1e6).abs() < 1e-3, "{r:?}");
        // Four datagrams over 28.8 ms (a 30 ms test).
        let span = Span::default();
        for k in 0..4u64 {
            span.mark(Nanos(1 + k * 9_600_000), 1200);
        }
        let r = FlowResult::new(4800, 4800, span.secs(), span.untimed());
        assert!((r.throughput_bps.unwrap() - 1e6).abs() < 1e-3, "{r:?}");
        // One arrival: nothing to time.
        let span = Span::default();
        span.mark(Nanos(7), 100 * 1024);
        assert_eq!(FlowResult::new(102_400, 102_400, span.secs(), span.untimed()).throughput_bps, None);
    }

    /// The server's figures are held to what the client knows.
    #[test]
    fn implausible_server_reports_are_refused() {
        let ok = ServerResult {
            received_bytes: 1000,
            untimed_bytes: 0,
            sent_bytes: 0,
            receive_secs: 1.0,
            cpu_percent: 3.0,
            udp: None,
            udp_sent: None,
        };
        assert!(check_server_result(&ok, 1000, None, 1.0).is_ok());
        let e = |r: ServerResult, udp_sent: Option<u64>| {
            check_server_result(&r, 1000, udp_sent, 1.0).unwrap_err().to_string()
        };
        assert!(e(ServerResult { received_bytes: u64::MAX, ..ok.clone() }, None).contains("more than the 1000 B sent"));
        assert!(e(ServerResult { receive_secs: -5.0, ..ok.clone() }, None).contains("a receive time of -5 s"));
        assert!(e(ServerResult { cpu_percent: f64::INFINITY, ..ok.clone() }, None).contains("a CPU share of inf%"));
        let udp = UdpReport {
            sent: 10,
            received: 1000,
            received_bytes: 0,
            lost: 99_999,
            loss_ratio: 5.0,
            duplicates: 0,
            reordered: 0,
            jitter_rfc3550_ns: 0.0,
            queueing_p99_ns: 0,
        };
        assert!(e(ServerResult { udp: Some(udp), ..ok.clone() }, Some(1040)).contains("of the 1040 sent"));
    }

    fn req() -> Request {
        Request {
            version: PROTOCOL_VERSION,
            protocol: Protocol::Tcp,
            direction: Direction::Forward,
            streams: 4,
            duration_ns: 1_000_000_000,
            bytes: None,
            rate_bps: None,
            size: 128 * 1024,
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(validate(&req()).is_ok());
        let mut r = req();
        r.streams = 0;
        assert!(validate(&r).unwrap_err().contains("streams 0"));
        let mut r = req();
        r.protocol = Protocol::Udp;
        r.streams = 1;
        r.size = 1200;
        assert!(validate(&r).unwrap_err().contains("positive rate"));
        r.rate_bps = Some(1_000_000);
        assert!(validate(&r).is_ok());
        r.direction = Direction::Bidir;
        assert!(validate(&r).unwrap_err().contains("bidir"));
        let mut r = req();
        r.duration_ns = 2 * MAX_DURATION.get();
        assert!(validate(&r).unwrap_err().contains("duration"));
    }

    #[test]
    fn bidir_splits_streams() {
        let mut r = req();
        r.direction = Direction::Bidir;
        r.streams = 2;
        assert_eq!((0..4).map(|s| server_sends(&r, s)).collect::<Vec<_>>(), vec![false, false, true, true]);
    }
}
