//! `meshway ping`: one echo session ([`meshway_probe::echo::EchoSession`]) driven over a real
//! network by one of four probers: `udp` (STAMP to a reflector), `tcp` (connect time), `icmp`
//! (echo request) and `http` (GET phases).

use crate::clock;
use meshway_probe::echo::{Action, EchoConfig, EchoEvent, EchoReport, EchoSession};
use meshway_probe::stamp::{ErrorEstimate, NtpTimestamp, ReflectorPacket, SenderPacket};
use meshway_probe::stats::{DelayStats, Summary};
use meshway_units::Nanos;
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use thiserror::Error;

/// The STAMP well-known port (RFC 8762 §4.1).
pub const STAMP_PORT: u16 = 862;

/// A STAMP probe's size in bytes: the unauthenticated packet (44) up to the largest UDP payload
/// over IPv4 (65,507).
pub const UDP_SIZES: std::ops::RangeInclusive<usize> = 44..=65_507;
/// The largest ICMP echo payload sent (an assumption: below the 65,507 an IPv4 datagram can
/// carry after the ICMP header, with room for IP options).
pub const MAX_ICMP_PAYLOAD: usize = 65_000;

/// Whether a probe of `kind` can be `size` bytes: udp 44-65507, icmp at most 65000; tcp and
/// http probes are a connection and take no size (`None`: none was asked for).
pub fn check_size(kind: PingKind, size: Option<u64>) -> Result<(), String> {
    let Some(n) = size else { return Ok(()) };
    let fits = usize::try_from(n).ok();
    match kind {
        PingKind::Udp if !fits.is_some_and(|s| UDP_SIZES.contains(&s)) => {
            Err(format!("{n} bytes: a STAMP probe is {} to {} bytes", UDP_SIZES.start(), UDP_SIZES.end()))
        }
        PingKind::Icmp if fits.is_none_or(|s| s > MAX_ICMP_PAYLOAD) => {
            Err(format!("{n} bytes: at most {MAX_ICMP_PAYLOAD} bytes of icmp payload"))
        }
        PingKind::Tcp | PingKind::Http => {
            Err("size applies to udp and icmp probes; a tcp or http probe is a connection, its size the handshake's"
                .into())
        }
        _ => Ok(()),
    }
}

/// The size of the probes [`run`] sends for a requested `size`: a STAMP probe is at least 44
/// bytes, or 112 authenticated (`authenticated`); other kinds as asked.
pub fn probe_size(kind: PingKind, size: usize, authenticated: bool) -> usize {
    match kind {
        PingKind::Udp if authenticated => size.max(meshway_probe::stamp_auth::AUTH_LEN),
        PingKind::Udp => size.max(meshway_probe::stamp::BASE_LEN),
        _ => size,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PingKind {
    Udp,
    Tcp,
    Icmp,
    Http,
}

#[derive(Debug, Clone)]
pub struct PingConfig {
    pub kind: PingKind,
    /// `host`, `host:port` or, for http, a URL `http://host[:port]/path`.
    pub target: String,
    pub count: Option<u64>,
    pub interval: Nanos,
    pub timeout: Nanos,
    /// UDP payload (STAMP packet, ≥ 44) or ICMP payload size in bytes.
    pub size: usize,
    /// Differentiated services code point (0..=63), written into the IP header.
    pub dscp: u8,
    /// This host's clock is synchronized to UTC (the STAMP S bit); one-way delays are reported
    /// only when both ends say so.
    pub clock_synchronized: bool,
    /// Keep delay statistics for the final report; `false` for unbounded sessions whose
    /// samples are aggregated by the caller (the agent), so memory stays constant.
    pub statistics: bool,
    /// https: a PEM bundle of CAs trusted besides the system's.
    pub ca: Option<std::path::PathBuf>,
    /// udp: STAMP authenticated mode with this key (112-byte packets at least).
    pub key: Option<meshway_probe::stamp_auth::Key>,
}

#[derive(Debug, Error)]
pub enum PingError {
    #[error("cannot resolve {target:?}")]
    Resolve {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("{target:?} resolved to no address")]
    NoAddress { target: String },
    #[error("cannot resolve {target:?}: the resolver did not answer within {after}")]
    ResolveTimeout { target: String, after: Nanos },
    #[error("cannot resolve {target:?}: {MAX_LOOKUPS} name lookups are already waiting on the resolver")]
    ResolverBusy { target: String },
    #[error("invalid url {url:?}: {why}")]
    BadUrl { url: String, why: &'static str },
    #[error("tls: {0}")]
    Tls(String),
    #[error(
        "icmp needs a ping socket or a raw socket: this user may open neither. Allow unprivileged ping \
         sockets with `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`, run as root, or grant \
         CAP_NET_RAW (`setcap cap_net_raw+ep $(which meshway)`)"
    )]
    IcmpNotPermitted,
    #[error("invalid size {0}")]
    Size(String),
    #[error("{target:?}: port 0 cannot be probed: give a port from 1 to 65535")]
    PortZero { target: String },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> PingError {
    let what = what.into();
    move |source| PingError::Io { what, source }
}

/// Phases of one HTTP GET, nanoseconds from the start of the connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HttpAttempt {
    pub status: u16,
    pub connect_ns: u64,
    /// https: when the TLS handshake completed (certificate verified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ns: Option<u64>,
    pub first_byte_ns: u64,
    pub total_ns: u64,
    pub body_bytes: u64,
}

/// One line of output: a reply (or loss), with HTTP phases for http probes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PingEvent {
    #[serde(flatten)]
    pub echo: EchoEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpAttempt>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpSummary {
    pub connect: Option<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Summary>,
    pub first_byte: Option<Summary>,
    pub total: Option<Summary>,
    /// Responses by status code.
    pub status: Vec<(u16, u64)>,
    /// Why the last failed attempt failed (refused, timed out, certificate not trusted, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PingReport {
    pub target: String,
    pub address: String,
    pub kind: PingKind,
    pub size_bytes: usize,
    pub dscp: u8,
    #[serde(flatten)]
    pub echo: EchoReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSummary>,
    /// tcp: why the last failed attempt failed (refused, timed out, ...); http has its own in
    /// `http`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

struct Answer {
    seq: u32,
    at: Nanos,
    hold_ns: u64,
    one_way: Option<(i64, i64)>,
    http: Option<HttpAttempt>,
}

trait Prober {
    /// Sends probe `seq`; blocking kinds (tcp, http) complete the attempt and return it,
    /// giving up their connect when `stop` is set.
    fn send(&mut self, seq: u32, stop: &AtomicBool) -> io::Result<Option<Answer>>;
    /// Waits until `until` (monotonic) for one answer.
    fn recv(&mut self, until: Nanos) -> io::Result<Option<Answer>>;
    /// When the kernel sent recent probes (seq, monotonic), where it stamps them.
    fn transmitted(&mut self) -> Vec<(u32, Nanos)> {
        Vec::new()
    }
    /// Blocking kinds: the probe the last `send` saw refused (a connection reset).
    fn refused(&mut self) -> Option<u32> {
        None
    }
}

/// A blocking probe `seq` failed with `e`: kept as the last failure, and as refused when the
/// target reset the connection (as opposed to a loss).
fn note_failure(seq: u32, e: &io::Error, refused: &mut Option<u32>, last: &std::sync::Mutex<Option<String>>) {
    // A connect given up for Ctrl-C says nothing about the target.
    if e.kind() == io::ErrorKind::Interrupted {
        return;
    }
    if e.kind() == io::ErrorKind::ConnectionRefused {
        *refused = Some(seq);
    }
    if let Ok(mut l) = last.lock() {
        *l = Some(e.to_string());
    }
}

fn wait_for(until: Nanos) -> Duration {
    clock::dur(until.saturating_sub(clock::mono())).max(Duration::from_micros(100))
}

/// For blocking kinds: answers come from `send`, so waiting is sleeping.
fn sleep_until(until: Nanos) -> io::Result<Option<Answer>> {
    std::thread::sleep(wait_for(until));
    Ok(None)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}

/// `target` with `default_port` when it has none.
fn with_port(target: &str, default_port: u16) -> String {
    if target.parse::<IpAddr>().is_ok() || !target.contains(':') {
        match target.parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) => format!("[{a}]:{default_port}"),
            _ => format!("{target}:{default_port}"),
        }
    } else {
        target.to_string()
    }
}

/// Resolves `host`, `host:port`, `[v6]:port` or a bare address, with a default port.
pub fn resolve(target: &str, default_port: u16) -> Result<SocketAddr, PingError> {
    let mut addrs = with_port(target, default_port)
        .to_socket_addrs()
        .map_err(|source| PingError::Resolve { target: target.to_string(), source })?;
    addrs.next().ok_or_else(|| PingError::NoAddress { target: target.to_string() })
}

/// Name lookups that may wait on the resolver at once (see [`resolve_within`]); more are
/// refused at once. An assumption: a resolver that stalls this many lookups is down.
pub const MAX_LOOKUPS: usize = 16;
static LOOKUPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// [`resolve`] within `limit`: the system resolver keeps its own timeouts, not the caller's
/// (a resolver that never answers held `/probe?timeout=100ms` for 10 s, and past the server's
/// request deadline with three of them), so a name is looked up on a helper thread and given up on at
/// `limit`. The thread ends when the resolver gives up; at most [`MAX_LOOKUPS`] wait at once.
pub fn resolve_within(target: &str, default_port: u16, limit: Nanos) -> Result<SocketAddr, PingError> {
    let name = with_port(target, default_port);
    // An address needs no lookup.
    if let Ok(a) = name.parse::<SocketAddr>() {
        return Ok(a);
    }
    lookup_within(target, name, limit, |n: &str| n.to_socket_addrs().map(|mut a| a.next()))
}

/// [`resolve_within`]'s lookup of `name` by `lookup` on a helper thread, given up at `limit`.
fn lookup_within(
    target: &str,
    name: String,
    limit: Nanos,
    lookup: impl FnOnce(&str) -> io::Result<Option<SocketAddr>> + Send + 'static,
) -> Result<SocketAddr, PingError> {
    use std::sync::atomic::Ordering::SeqCst;
    if LOOKUPS.fetch_add(1, SeqCst) >= MAX_LOOKUPS {
        LOOKUPS.fetch_sub(1, SeqCst);
        return Err(PingError::ResolverBusy { target: target.to_string() });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("resolve".into()).spawn(move || {
        let r = lookup(&name);
        LOOKUPS.fetch_sub(1, SeqCst);
        let _ = tx.send(r);
    });
    if let Err(source) = spawned {
        LOOKUPS.fetch_sub(1, SeqCst);
        return Err(PingError::Resolve { target: target.to_string(), source });
    }
    match rx.recv_timeout(clock::dur(limit)) {
        Ok(Ok(Some(a))) => Ok(a),
        Ok(Ok(None)) => Err(PingError::NoAddress { target: target.to_string() }),
        Ok(Err(source)) => Err(PingError::Resolve { target: target.to_string(), source }),
        Err(_) => Err(PingError::ResolveTimeout { target: target.to_string(), after: limit }),
    }
}

fn set_dscp(s: &Socket, addr: &SocketAddr, dscp: u8) -> io::Result<()> {
    if dscp == 0 {
        return Ok(());
    }
    let tos = u32::from(dscp) << 2;
    match addr {
        SocketAddr::V4(_) => s.set_tos_v4(tos),
        SocketAddr::V6(_) => s.set_tclass_v6(tos),
    }
}

// ---------------------------------------------------------------------------------------------
// udp: STAMP to a reflector

struct UdpProber {
    sock: UdpSocket,
    size: usize,
    error: ErrorEstimate,
    synchronized: bool,
    buf: Vec<u8>,
    /// Answers are exactly as long as probes; a little slack detects longer (foreign) ones.
    rx: Vec<u8>,
    key: Option<meshway_probe::stamp_auth::Key>,
    /// The socket gives transmit stamps; `unstamped` holds the seq of probes sent and not yet
    /// stamped.
    tx_stamps: bool,
    unstamped: crate::kstamp::TxQueue<u32>,
}

impl Prober for UdpProber {
    fn send(&mut self, seq: u32, _stop: &AtomicBool) -> io::Result<Option<Answer>> {
        let p = SenderPacket { seq, timestamp: clock::ntp(), error: self.error };
        let r = match &self.key {
            Some(k) => meshway_probe::stamp_auth::encode_sender(&p, k, &mut self.buf, self.size),
            None => p.encode(&mut self.buf, self.size),
        };
        r.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        match self.sock.send(&self.buf[..self.size]) {
            Ok(_) => {
                if self.tx_stamps {
                    self.unstamped.sent(seq);
                }
                Ok(None)
            }
            // An ICMP port unreachable from an earlier probe: the probe is lost, not fatal.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn recv(&mut self, until: Nanos) -> io::Result<Option<Answer>> {
        self.sock.set_read_timeout(Some(wait_for(until)))?;
        let rx = &mut self.rx;
        let (n, stamp) = match crate::kstamp::recv(&self.sock, rx, false) {
            Ok(r) => (r.len, r.kernel_ns),
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::ConnectionRefused => return Ok(None),
            Err(e) => return Err(e),
        };
        // When the kernel received it, not when this thread got to read it.
        let at = crate::kstamp::to_mono(stamp);
        // The backward delay ends at the kernel's receive stamp too.
        let wall = stamp.map_or_else(clock::ntp, NtpTimestamp::from_unix_nanos);
        if n != self.size {
            return Ok(None); // not an answer to our probe (which are all `size` bytes)
        }
        // Authenticated mode: an answer whose HMAC does not verify is not an answer.
        let decoded = match &self.key {
            Some(k) => meshway_probe::stamp_auth::decode_reflector(&rx[..n], k),
            None => ReflectorPacket::decode(&rx[..n]),
        };
        let Ok(r) = decoded else { return Ok(None) };
        // A reflector's times in PTP format (its Z bit) count from another epoch (TAI): its
        // hold time reads right, a one-way delay against this host's NTP clock would not.
        let synced = self.synchronized && r.error.synchronized && r.sender_error.synchronized && !r.error.ptp;
        let one_way =
            synced.then(|| (r.rx_timestamp.nanos_since(r.sender_timestamp), wall.nanos_since(r.tx_timestamp)));
        Ok(Some(Answer { seq: r.sender_seq, at, hold_ns: r.turnaround_nanos(), one_way, http: None }))
    }

    fn transmitted(&mut self) -> Vec<(u32, Nanos)> {
        let mut stamps = Vec::new();
        if self.tx_stamps {
            crate::kstamp::tx_stamps(&self.sock, &mut stamps);
        }
        stamps
            .into_iter()
            .filter_map(|(id, ns)| Some((self.unstamped.stamped(id)?, crate::kstamp::to_mono(Some(ns)))))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// tcp: connect time

struct TcpProber {
    addr: SocketAddr,
    timeout: Nanos,
    dscp: u8,
    refused: Option<u32>,
    /// Why the last attempt failed, for the report.
    last_error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl Prober for TcpProber {
    fn send(&mut self, seq: u32, stop: &AtomicBool) -> io::Result<Option<Answer>> {
        let s = Socket::new(Domain::for_address(self.addr), Type::STREAM, Some(Protocol::TCP))?;
        set_dscp(&s, &self.addr, self.dscp)?;
        match connect_until(&s, self.addr, self.timeout, stop) {
            Ok(()) => Ok(Some(Answer { seq, at: clock::mono(), hold_ns: 0, one_way: None, http: None })),
            Err(e) => {
                note_failure(seq, &e, &mut self.refused, &self.last_error);
                Ok(None)
            }
        }
    }

    fn recv(&mut self, until: Nanos) -> io::Result<Option<Answer>> {
        sleep_until(until)
    }

    fn refused(&mut self) -> Option<u32> {
        self.refused.take()
    }
}

// ---------------------------------------------------------------------------------------------
// http: GET phases

struct HttpProber {
    addr: SocketAddr,
    url: crate::tls::Url,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    timeout: Nanos,
    dscp: u8,
    /// Why the last attempt failed, for the report.
    last_error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    refused: Option<u32>,
}

/// Parses `http[s]://host[:port]/path`.
pub fn parse_http_url(url: &str) -> Result<crate::tls::Url, PingError> {
    crate::tls::parse_url(url).map_err(|why| PingError::BadUrl { url: url.to_string(), why })
}

/// Connects `s` to `addr` within `timeout`, in slices of at most 50 ms so that a set `stop`
/// (Ctrl-C) ends a connect to a target that drops SYNs at once, not after the whole `-W`.
fn connect_until(s: &Socket, addr: SocketAddr, timeout: Nanos, stop: &AtomicBool) -> io::Result<()> {
    use std::os::fd::AsFd;
    let deadline = clock::mono() + timeout;
    s.set_nonblocking(true)?;
    match s.connect(&SockAddr::from(addr)) {
        Ok(()) => return s.set_nonblocking(false),
        Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    loop {
        let now = clock::mono();
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
        }
        if now >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connection timed out"));
        }
        let ms = deadline.saturating_sub(now).get().div_ceil(1_000_000).min(50) as u16;
        let mut fds = [nix::poll::PollFd::new(s.as_fd(), nix::poll::PollFlags::POLLOUT)];
        match nix::poll::poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    // A POLLOUT with no error pending is a connection, unless the peer is gone already.
    s.peer_addr()?;
    s.set_nonblocking(false)
}

fn http_get(p: &HttpProber, stop: &AtomicBool) -> io::Result<HttpAttempt> {
    let t0 = clock::mono();
    let s = Socket::new(Domain::for_address(p.addr), Type::STREAM, Some(Protocol::TCP))?;
    set_dscp(&s, &p.addr, p.dscp)?;
    connect_until(&s, p.addr, p.timeout, stop)?;
    let connect_ns = clock::mono().saturating_sub(t0).get();
    let tcp: TcpStream = s.into();
    let deadline = t0 + p.timeout;
    tcp.set_read_timeout(Some(wait_for(deadline)))?;
    tcp.set_write_timeout(Some(wait_for(deadline)))?;
    let mut stream = crate::tls::wrap_by(tcp, &p.url, p.tls.as_ref(), Some(deadline))?;
    // A handshake set the socket's timeouts to what was left of it.
    stream.set_timeouts(wait_for(deadline))?;
    let tls_ns = p.url.tls.then(|| clock::mono().saturating_sub(t0).get());
    let host = p.url.host_header();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: meshway/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        p.url.path,
        host,
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(req.as_bytes())?;
    stream.flush()?;
    let mut buf = vec![0u8; 64 * 1024];
    // Bytes until the head ends (at most 8 KiB of head), then the body by its framing.
    let mut pre: Vec<u8> = Vec::new();
    let mut got: Option<(u16, Body)> = None;
    let mut first_byte_ns = None;
    let mut total_bytes = 0u64;
    let mut ended = false;
    let late = || io::Error::new(io::ErrorKind::TimedOut, format!("no complete http response within {}", p.timeout));
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    // Bounded: at most 64 MiB are read, and never past the timeout.
    while total_bytes < 64 << 20 {
        if got.as_ref().is_some_and(|(_, b)| b.complete()) {
            break;
        }
        if clock::mono() >= deadline {
            return Err(late());
        }
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Err(late()),
            Err(e) => return Err(e),
        };
        if n == 0 {
            ended = true;
            break;
        }
        first_byte_ns.get_or_insert_with(|| clock::mono().saturating_sub(t0).get());
        total_bytes += n as u64;
        match got.as_mut() {
            Some((_, b)) => b.feed(&buf[..n]).map_err(bad)?,
            None => {
                pre.extend_from_slice(&buf[..n]);
                // Interim 1xx heads (100 Continue, 103 Early Hints) come before the final
                // one: each is dropped and the next read from what follows it.
                while let Some((end, body_at)) = head_end(&pre) {
                    let (status, mut b) = http_head(&pre[..end]).map_err(bad)?;
                    if (100..200).contains(&status) && status != 101 {
                        pre.drain(..body_at);
                        continue;
                    }
                    b.feed(&pre[body_at..]).map_err(bad)?;
                    got = Some((status, b));
                    break;
                }
                if got.is_none() && pre.len() > 8192 {
                    if !pre.starts_with(b"HTTP/") {
                        return Err(bad("not an http response".into()));
                    }
                    return Err(bad("the response's headers did not end (closed early, or over 8 KiB)".into()));
                }
            }
        }
    }
    let total_ns = clock::mono().saturating_sub(t0).get();
    let Some((status, body)) = got else {
        if !pre.starts_with(b"HTTP/") {
            return Err(bad("not an http response".into()));
        }
        return Err(bad("the response's headers did not end (closed early, or over 8 KiB)".into()));
    };
    if !body.complete() {
        if !ended {
            return Err(bad("response over 64 MiB (the read limit)".into()));
        }
        if let Some(why) = body.short() {
            return Err(bad(why));
        }
    }
    Ok(HttpAttempt {
        status,
        connect_ns,
        tls_ns,
        first_byte_ns: first_byte_ns.unwrap_or(total_ns),
        total_ns,
        body_bytes: body.bytes,
    })
}

/// Where a response head ends in `b`: the length of the head (before its blank line) and where
/// the body starts. Lines end with CR LF or, as RFC 9112 §2.2 lets a recipient accept, a bare
/// LF.
fn head_end(b: &[u8]) -> Option<(usize, usize)> {
    b.iter().enumerate().find_map(|(i, &c)| match (c, b.get(i + 1), b.get(i + 2)) {
        (b'\n', Some(b'\n'), _) => Some((i, i + 2)),
        (b'\n', Some(b'\r'), Some(b'\n')) => Some((i, i + 3)),
        _ => None,
    })
}

/// The status and body framing of a response head (without its blank line); lines end with
/// CR LF or a bare LF.
fn http_head(head: &[u8]) -> Result<(u16, Body), String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status: u16 = lines
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .filter(|c| (100..=599).contains(c))
        .ok_or("not an http response")?;
    let (mut length, mut chunked, mut encoded) = (None, false, false);
    for l in lines {
        let Some((k, v)) = l.split_once(':') else { continue };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            // A list of one value repeated is that value (RFC 9110 8.6).
            for part in v.split(',') {
                // 1*DIGIT (RFC 9110 8.6): no sign, which `parse` would take.
                let part = part.trim();
                if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(format!("bad Content-Length {v:?}"));
                }
                let n: u64 = part.parse().map_err(|_| format!("bad Content-Length {v:?}"))?;
                if length.is_some_and(|m| m != n) {
                    return Err(format!("Content-Length {v:?} gives different lengths"));
                }
                length = Some(n);
            }
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
            chunked = v.rsplit(',').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    // RFC 9112 6.3: no body for 1xx, 204, 304; chunked when it is the last coding; another
    // transfer coding runs to the close, whatever Content-Length says.
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked(Chunk::Size { digits: 0, value: 0, ext: false })
    } else if encoded {
        Framing::Close
    } else {
        length.map_or(Framing::Close, Framing::Length)
    };
    Ok((status, Body { framing, bytes: 0, excess: 0 }))
}

/// A response body as its framing delimits it (RFC 9112 6): the bytes of its content, and
/// whether it is all there. Bytes after the message's end (past its Content-Length, after a
/// 204 or 304 head, after the last chunk) are not part of it: they are discarded, as curl does
/// ("excess found"), which the request's `Connection: close` makes safe; `excess` counts them.
#[derive(Debug)]
struct Body {
    framing: Framing,
    bytes: u64,
    excess: u64,
}

#[derive(Debug)]
enum Framing {
    /// To the end of the connection.
    Close,
    /// Exactly this many bytes.
    Length(u64),
    Chunked(Chunk),
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Reading a chunk's size line (hex digits, then extensions to the line's end).
    Size {
        digits: u32,
        value: u64,
        ext: bool,
    },
    /// The size line's LF.
    SizeLf(u64),
    /// Data still to come.
    Data(u64),
    /// The CR LF after a chunk's data (`true` when the CR was seen).
    DataEnd(bool),
    /// Trailer lines after the last chunk; the count of bytes on the current line.
    Trailer(u64, bool),
    Done,
}

impl Body {
    fn complete(&self) -> bool {
        match self.framing {
            Framing::Close => false,
            Framing::Length(n) => self.bytes == n,
            Framing::Chunked(c) => matches!(c, Chunk::Done),
        }
    }

    /// Why a body that ended with its connection is short, if it is.
    fn short(&self) -> Option<String> {
        match self.framing {
            Framing::Close => None,
            Framing::Length(n) => {
                Some(format!("the body ended after {} of its {n} bytes (Content-Length)", self.bytes))
            }
            Framing::Chunked(_) => {
                Some(format!("the chunked body ended after {} bytes, before its last chunk", self.bytes))
            }
        }
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        match &mut self.framing {
            Framing::Close => self.bytes += data.len() as u64,
            Framing::Length(n) => {
                let take = (*n - self.bytes).min(data.len() as u64);
                self.bytes += take;
                self.excess += data.len() as u64 - take;
            }
            Framing::Chunked(state) => {
                while let Some((&c, rest)) = data.split_first() {
                    *state = match *state {
                        // `digits` counts the size's digits (leading zeros too, which any
                        // number of may come); the value must stay within 60 bits.
                        Chunk::Size { digits, value, ext } => match c {
                            b'\r' if digits > 0 => Chunk::SizeLf(value),
                            b'\r' => return Err("an empty chunk size line".into()),
                            _ if ext => Chunk::Size { digits, value, ext },
                            b';' | b' ' | b'\t' if digits > 0 => Chunk::Size { digits, value, ext: true },
                            _ if c.is_ascii_hexdigit() && value < 1 << 56 => Chunk::Size {
                                digits: digits.saturating_add(1),
                                value: value * 16 + u64::from((c as char).to_digit(16).unwrap_or(0)),
                                ext,
                            },
                            _ => return Err(format!("bad chunk size (byte 0x{c:02x})")),
                        },
                        Chunk::SizeLf(v) if c == b'\n' => {
                            if v == 0 {
                                Chunk::Trailer(0, false)
                            } else {
                                Chunk::Data(v)
                            }
                        }
                        Chunk::SizeLf(_) => return Err("bad chunk size line".into()),
                        Chunk::Data(left) => {
                            let take = (left as usize).min(data.len());
                            self.bytes += take as u64;
                            data = &data[take..];
                            *state = if left as usize == take {
                                Chunk::DataEnd(false)
                            } else {
                                Chunk::Data(left - take as u64)
                            };
                            continue;
                        }
                        Chunk::DataEnd(false) if c == b'\r' => Chunk::DataEnd(true),
                        Chunk::DataEnd(true) if c == b'\n' => Chunk::Size { digits: 0, value: 0, ext: false },
                        Chunk::DataEnd(_) => return Err("a chunk's data is not followed by CR LF".into()),
                        Chunk::Trailer(k, false) if c == b'\r' => Chunk::Trailer(k, true),
                        Chunk::Trailer(0, true) if c == b'\n' => Chunk::Done,
                        Chunk::Trailer(_, true) if c == b'\n' => Chunk::Trailer(0, false),
                        Chunk::Trailer(k, _) => Chunk::Trailer(k + 1, false),
                        Chunk::Done => {
                            self.excess += data.len() as u64;
                            return Ok(());
                        }
                    };
                    data = rest;
                }
            }
        }
        Ok(())
    }
}

impl Prober for HttpProber {
    fn send(&mut self, seq: u32, stop: &AtomicBool) -> io::Result<Option<Answer>> {
        match http_get(self, stop) {
            Ok(a) => Ok(Some(Answer { seq, at: clock::mono(), hold_ns: 0, one_way: None, http: Some(a) })),
            Err(e) => {
                note_failure(seq, &e, &mut self.refused, &self.last_error);
                Ok(None)
            }
        }
    }

    fn recv(&mut self, until: Nanos) -> io::Result<Option<Answer>> {
        sleep_until(until)
    }

    fn refused(&mut self) -> Option<u32> {
        self.refused.take()
    }
}

// ---------------------------------------------------------------------------------------------
// icmp: echo request over a ping socket, or a raw socket

struct IcmpProber {
    sock: Socket,
    addr: SockAddr,
    v6: bool,
    raw: bool,
    ident: u16,
    size: usize,
    /// Low 16 bits of the sequence number on the wire → the session's sequence number.
    wire_seq: HashMap<u16, u32>,
}

/// The Internet checksum (RFC 1071).
pub fn inet_checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl IcmpProber {
    fn open(addr: SocketAddr, dscp: u8, size: usize) -> Result<IcmpProber, PingError> {
        let (domain, proto) = match addr {
            SocketAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
            SocketAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
        };
        let (sock, raw) = match Socket::new(domain, Type::DGRAM, Some(proto)) {
            Ok(s) => (s, false),
            Err(e) if matches!(e.raw_os_error(), Some(1 | 13)) => match Socket::new(domain, Type::RAW, Some(proto)) {
                Ok(s) => (s, true),
                Err(e) if matches!(e.raw_os_error(), Some(1 | 13)) => return Err(PingError::IcmpNotPermitted),
                Err(e) => return Err(io_err("cannot open a raw icmp socket")(e)),
            },
            Err(e) => return Err(io_err("cannot open an icmp socket")(e)),
        };
        set_dscp(&sock, &addr, dscp).map_err(io_err("cannot set dscp"))?;
        Ok(IcmpProber {
            sock,
            addr: SockAddr::from(addr),
            v6: addr.is_ipv6(),
            raw,
            ident: (std::process::id() & 0xffff) as u16,
            size,
            wire_seq: HashMap::new(),
        })
    }
}

impl Prober for IcmpProber {
    fn send(&mut self, seq: u32, _stop: &AtomicBool) -> io::Result<Option<Answer>> {
        let wire = seq as u16;
        self.wire_seq.insert(wire, seq);
        let mut pkt = vec![0u8; 8 + self.size];
        pkt[0] = if self.v6 { 128 } else { 8 };
        pkt[4..6].copy_from_slice(&self.ident.to_be_bytes());
        pkt[6..8].copy_from_slice(&wire.to_be_bytes());
        for (i, b) in pkt[8..].iter_mut().enumerate() {
            *b = i as u8;
        }
        if !self.v6 {
            // ICMPv6 checksums are filled in by the kernel (they cover a pseudo-header).
            let c = inet_checksum(&pkt);
            pkt[2..4].copy_from_slice(&c.to_be_bytes());
        }
        self.sock.send_to(&pkt, &self.addr)?;
        Ok(None)
    }

    fn recv(&mut self, until: Nanos) -> io::Result<Option<Answer>> {
        loop {
            if clock::mono() >= until {
                return Ok(None);
            }
            self.sock.set_read_timeout(Some(wait_for(until)))?;
            // IP header (≤ 60) + ICMP header + our payload, and slack; longer is not ours.
            let mut buf = vec![0u8; 60 + 8 + self.size + 64];
            let mut s = &self.sock;
            let n = match s.read(&mut buf) {
                Ok(n) => n,
                Err(e) if is_timeout(&e) => return Ok(None),
                Err(e) => return Err(e),
            };
            let at = clock::mono();
            let mut b = &buf[..n];
            if self.raw && !self.v6 {
                let ihl = usize::from(b.first().map_or(0, |v| v & 0x0f)) * 4;
                if b.len() < ihl + 8 {
                    continue;
                }
                b = &b[ihl..];
            }
            if b.len() < 8 || b[0] != if self.v6 { 129 } else { 0 } {
                continue;
            }
            let ident = u16::from_be_bytes([b[4], b[5]]);
            // Ping sockets rewrite the identifier and deliver only our replies; raw sockets
            // see every echo reply on the host.
            if self.raw && ident != self.ident {
                continue;
            }
            let wire = u16::from_be_bytes([b[6], b[7]]);
            if let Some(&seq) = self.wire_seq.get(&wire) {
                return Ok(Some(Answer { seq, at, hold_ns: 0, one_way: None, http: None }));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Runs one ping session. `on_event` sees each reply and loss as it happens; `stop` ends the
/// session early (pending probes still get their timeout).
pub fn run(cfg: &PingConfig, stop: &AtomicBool, on_event: &mut dyn FnMut(&PingEvent)) -> Result<PingReport, PingError> {
    // The library's own guard, whatever its caller checked: a size out of bounds would be a
    // buffer of that size per probe.
    if matches!(cfg.kind, PingKind::Udp | PingKind::Icmp) {
        check_size(cfg.kind, Some(cfg.size as u64)).map_err(PingError::Size)?;
    }
    let last_failure: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
    let (mut prober, addr, size): (Box<dyn Prober>, SocketAddr, usize) = match cfg.kind {
        PingKind::Udp => {
            let addr = resolve_within(&cfg.target, STAMP_PORT, cfg.timeout)?;
            let size = probe_size(PingKind::Udp, cfg.size, cfg.key.is_some());
            let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
                .map_err(io_err("cannot open a udp socket"))?;
            set_dscp(&s, &addr, cfg.dscp).map_err(io_err("cannot set dscp"))?;
            let any: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
            s.bind(&SockAddr::from(any)).map_err(io_err("cannot bind a udp socket"))?;
            let sock: UdpSocket = s.into();
            sock.connect(addr).map_err(io_err(format!("cannot reach {addr}")))?;
            // Kernel transmit and receive stamps; failing that, receive stamps alone.
            let tx_stamps = crate::kstamp::enable_tx(&sock);
            if !tx_stamps {
                crate::kstamp::enable(&sock);
            }
            let error =
                if cfg.clock_synchronized { ErrorEstimate::SYNCHRONIZED } else { ErrorEstimate::UNSYNCHRONIZED };
            let p = UdpProber {
                sock,
                size,
                error,
                synchronized: cfg.clock_synchronized,
                buf: vec![0u8; size],
                rx: vec![0u8; size + 64],
                key: cfg.key.clone(),
                tx_stamps,
                unstamped: Default::default(),
            };
            (Box::new(p), addr, size)
        }
        PingKind::Tcp => {
            let addr = resolve_within(&cfg.target, 80, cfg.timeout)?;
            let p = TcpProber {
                addr,
                timeout: cfg.timeout,
                dscp: cfg.dscp,
                refused: None,
                last_error: last_failure.clone(),
            };
            (Box::new(p), addr, 0)
        }
        PingKind::Http => {
            let url = parse_http_url(&cfg.target)?;
            let addr = resolve_within(&url.host_port(), url.port, cfg.timeout)?;
            let tls = match (&cfg.ca, url.tls) {
                (Some(ca), true) => Some(crate::tls::client_config(Some(ca)).map_err(PingError::Tls)?),
                (None, true) => Some(crate::tls::default_config().map_err(PingError::Tls)?),
                _ => None,
            };
            let p = HttpProber {
                addr,
                url,
                tls,
                timeout: cfg.timeout,
                dscp: cfg.dscp,
                last_error: last_failure.clone(),
                refused: None,
            };
            (Box::new(p), addr, 0)
        }
        PingKind::Icmp => {
            let addr = resolve_within(&cfg.target, 0, cfg.timeout)?;
            (Box::new(IcmpProber::open(addr, cfg.dscp, cfg.size)?), addr, cfg.size)
        }
    };
    // Nothing answers on port 0 (an icmp target has no port).
    if cfg.kind != PingKind::Icmp && addr.port() == 0 {
        return Err(PingError::PortZero { target: cfg.target.clone() });
    }
    let mut session = EchoSession::new(EchoConfig { count: cfg.count, interval: cfg.interval, timeout: cfg.timeout });
    if !cfg.statistics {
        session = session.counts_only();
    }
    let mut http_attempts: HashMap<u32, HttpAttempt> = HashMap::new();
    let mut http_stats = (DelayStats::new(), DelayStats::new(), DelayStats::new());
    let mut tls_stats = DelayStats::new();
    let mut status: std::collections::BTreeMap<u16, u64> = Default::default();
    // How long after the session's send time the kernel sent each probe (transmit stamps);
    // that time comes off the round trip.
    let mut tx_delay: std::collections::VecDeque<(u32, Nanos)> = Default::default();
    let handle = |session: &mut EchoSession,
                  a: Answer,
                  http_attempts: &mut HashMap<u32, HttpAttempt>,
                  tx_delay: &mut std::collections::VecDeque<(u32, Nanos)>| {
        if let Some(h) = a.http {
            http_attempts.insert(a.seq, h);
        }
        let k = tx_delay.iter().position(|d| d.0 == a.seq);
        let delay = k.and_then(|k| tx_delay.remove(k)).map_or(Nanos::ZERO, |d| d.1);
        // The packet's send timestamp was read before the kernel sent it: the forward delay
        // loses the same time the round trip does.
        let one_way = a.one_way.map(|(f, b)| (f.saturating_sub(i64::try_from(delay.get()).unwrap_or(i64::MAX)), b));
        session.on_reply(a.at.saturating_sub(delay), a.seq, a.hold_ns, one_way);
    };
    // Stopped (Ctrl-C), a session ends at once, as ping(8) does: udp and icmp take the answers
    // already received and wait for no other (they waited out -W for the pending probes);
    // tcp and http answer from `send` alone (a connect given up waited out its whole -W). A
    // probe still pending is neither received nor lost.
    let blocking = matches!(cfg.kind, PingKind::Tcp | PingKind::Http);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping {
            session.stop();
        }
        let done = if stopping {
            // Bounded: a peer that keeps answering cannot hold the stop off.
            for _ in 0..if blocking { 0 } else { 1024 } {
                match prober.recv(clock::mono()).map_err(io_err(format!("cannot receive from {addr}")))? {
                    Some(a) => handle(&mut session, a, &mut http_attempts, &mut tx_delay),
                    None => break,
                }
            }
            true
        } else {
            match session.poll(clock::mono()) {
                Action::Send { seq } => {
                    if let Some(a) = prober.send(seq, stop).map_err(io_err(format!("cannot send to {addr}")))? {
                        handle(&mut session, a, &mut http_attempts, &mut tx_delay);
                    }
                    if let Some(seq) = prober.refused() {
                        session.on_refused(seq);
                    }
                    false
                }
                Action::Wait { until } => {
                    for (seq, at) in prober.transmitted() {
                        if let Some(sent) = session.sent_at(seq) {
                            if tx_delay.len() == 64 {
                                tx_delay.pop_front();
                            }
                            tx_delay.push_back((seq, at.saturating_sub(sent)));
                        }
                    }
                    if let Some(a) = prober.recv(until).map_err(io_err(format!("cannot receive from {addr}")))? {
                        handle(&mut session, a, &mut http_attempts, &mut tx_delay);
                    }
                    false
                }
                Action::Done => true,
            }
        };
        for ev in session.drain_events() {
            let http = match &ev {
                EchoEvent::Reply { seq, rtt_ns: Some(_), .. } => http_attempts.remove(seq),
                _ => None,
            };
            if let Some(h) = http {
                if let Some(t) = h.tls_ns {
                    tls_stats.record(t);
                }
                http_stats.0.record(h.connect_ns);
                http_stats.1.record(h.first_byte_ns);
                http_stats.2.record(h.total_ns);
                *status.entry(h.status).or_default() += 1;
            }
            on_event(&PingEvent { echo: ev, http });
        }
        if done {
            break;
        }
    }
    let tcp_failure = last_failure.lock().ok().and_then(|e| e.clone());
    Ok(PingReport {
        target: cfg.target.clone(),
        address: if cfg.kind == PingKind::Icmp { addr.ip().to_string() } else { addr.to_string() },
        kind: cfg.kind,
        size_bytes: size,
        dscp: cfg.dscp,
        echo: session.report(),
        last_error: if cfg.kind == PingKind::Tcp { tcp_failure } else { None },
        http: (cfg.kind == PingKind::Http).then(|| HttpSummary {
            connect: http_stats.0.summary(),
            tls: tls_stats.summary(),
            last_error: last_failure.lock().ok().and_then(|e| e.clone()),
            first_byte: http_stats.1.summary(),
            total: http_stats.2.summary(),
            status: status.into_iter().collect(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name lookup the resolver does not answer is given up at the limit (the system
    /// resolver has none: a stalled one held a 100 ms `/probe` for 10 s); an address needs
    /// no lookup; past [`MAX_LOOKUPS`] stalled lookups, more are refused at once.
    #[test]
    fn a_stalled_lookup_is_given_up_at_its_limit() {
        let stall = |_: &str| -> io::Result<Option<SocketAddr>> {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            Ok(None)
        };
        let t0 = clock::mono();
        let e = lookup_within("slow.example", "slow.example:80".into(), Nanos(100_000_000), stall).unwrap_err();
        let took = clock::mono().saturating_sub(t0);
        assert!(matches!(e, PingError::ResolveTimeout { .. }), "{e}");
        assert!(e.to_string().contains("did not answer within 100ms"), "{e}");
        assert!(took < Nanos(1_000_000_000), "{took}");
        assert_eq!(resolve_within("127.0.0.1", 9, Nanos(1)).unwrap(), "127.0.0.1:9".parse().unwrap());
        assert_eq!(resolve_within("[::1]:7", 9, Nanos(1)).unwrap(), "[::1]:7".parse().unwrap());
        // Fill every lookup slot with stalled lookups: the next is refused without waiting.
        let held: Vec<_> = (0..MAX_LOOKUPS)
            .map(|_| {
                let long = |_: &str| -> io::Result<Option<SocketAddr>> {
                    std::thread::sleep(std::time::Duration::from_secs(4));
                    Ok(None)
                };
                std::thread::spawn(move || lookup_within("h", "h:1".into(), Nanos(5_000_000_000), long))
            })
            .collect();
        // Until every one is waiting (bounded: 5 s).
        for _ in 0..500 {
            if LOOKUPS.load(std::sync::atomic::Ordering::SeqCst) >= MAX_LOOKUPS {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let t0 = clock::mono();
        let e = lookup_within("h", "h:1".into(), Nanos(1_000_000_000), stall).unwrap_err();
        assert!(matches!(e, PingError::ResolverBusy { .. }), "{e}");
        assert!(clock::mono().saturating_sub(t0) < Nanos(500_000_000));
        for h in held {
            let _ = h.join();
        }
    }

    /// Bodies by their framing: Content-Length exact, chunked decoded (extensions and
    /// trailers skipped), short or malformed ones named.
    #[test]
    fn http_bodies_by_their_framing() {
        let body = |head: &str, parts: &[&[u8]]| -> Result<(u16, u64, bool, Option<String>), String> {
            let (st, mut b) = http_head(head.as_bytes())?;
            for p in parts {
                b.feed(p)?;
            }
            Ok((st, b.bytes, b.complete(), b.short()))
        };
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked";
        // One byte at a time, as a slow server sends it.
        let wire = b"5;x=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(
            body(chunked, &bytes).unwrap(),
            (200, 15, true, Some("the chunked body ended after 15 bytes, before its last chunk".into()))
        );
        let e = body(chunked, &[b"zz\r\n"]).unwrap_err();
        assert!(e.contains("bad chunk size"), "{e}");
        let cut = body(chunked, &[b"5\r\nhel"]).unwrap();
        assert_eq!((cut.1, cut.2), (3, false));
        let lied = body("HTTP/1.1 200 OK\r\nContent-Length: 1000", &[b"hello"]).unwrap();
        assert_eq!(lied, (200, 5, false, Some("the body ended after 5 of its 1000 bytes (Content-Length)".into())));
        // The message ends at its Content-Length, or at the blank line of a 204 or 304: what
        // follows is discarded (RFC 9112 6.3), not a failure.
        let over = |head: &str, parts: &[&[u8]]| -> (u64, bool, u64) {
            let (_, mut b) = http_head(head.as_bytes()).unwrap();
            for p in parts {
                b.feed(p).unwrap();
            }
            (b.bytes, b.complete(), b.excess)
        };
        assert_eq!(over("HTTP/1.1 200 OK\r\ncontent-length: 2", &[b"abc"]), (2, true, 1));
        assert_eq!(over("HTTP/1.1 200 OK\r\nContent-Length: 5", &[b"hel", b"lo\r\n"]), (5, true, 2));
        assert_eq!(over("HTTP/1.1 204 No Content", &[b"hello"]), (0, true, 5));
        assert_eq!(over("HTTP/1.1 304 Not Modified\r\nContent-Length: 9", &[b"abc"]), (0, true, 3));
        assert_eq!(over(chunked, &[b"1\r\na\r\n0\r\n\r\nxyz"]), (1, true, 3));
        assert_eq!(
            body("HTTP/1.1 204 No Content", &[]).unwrap(),
            (204, 0, true, Some("the body ended after 0 of its 0 bytes (Content-Length)".into()))
        );
        // Content-Length is 1*DIGIT: a sign, an empty value or a hex digit is refused.
        for v in ["+5", "-5", "", "5a", "5, +5"] {
            let e = body(&format!("HTTP/1.1 200 OK\r\nContent-Length: {v}"), &[]).unwrap_err();
            assert!(e.contains("bad Content-Length"), "{v:?}: {e}");
        }
        // Bare-LF line endings (RFC 9112 2.2): the head ends at its first empty line.
        let wire = b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc";
        let (end, at) = head_end(wire).unwrap();
        assert_eq!((end, at), (33, 35));
        let (st, mut b) = http_head(&wire[..end]).unwrap();
        b.feed(&wire[at..]).unwrap();
        assert_eq!((st, b.bytes, b.complete()), (200, 3, true));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nx"), Some((22, 25)));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\n\r\nx"), Some((21, 24)));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        assert_eq!(body("HTTP/1.0 200 OK", &[b"abc"]).unwrap(), (200, 3, false, None));
        assert!(body("SSH-2.0-x", &[]).unwrap_err().contains("not an http response"));
        // Leading zeros, any number; an empty size line is no last chunk.
        let z = body(chunked, &[b"0000000000000000005\r\nhello\r\n00000000000000000\r\n\r\n"]).unwrap();
        assert_eq!((z.1, z.2), (5, true));
        assert!(body(chunked, &[b"5\r\nhello\r\n\r\n\r\n"]).unwrap_err().contains("an empty chunk size line"));
        let e = body(chunked, &[b"fffffffffffffffff\r\n"]).unwrap_err();
        assert!(e.contains("bad chunk size"), "{e}");
        // A repeated Content-Length is one; a last coding other than chunked runs to the close.
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nContent-Length: 5, 5", &[b"hello"]).unwrap(),
            (200, 5, true, Some("the body ended after 5 of its 5 bytes (Content-Length)".into()))
        );
        assert!(body("HTTP/1.1 200 OK\r\nContent-Length: 5, 6", &[]).unwrap_err().contains("different lengths"));
        let gz = body("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2", &[b"abcdef"]).unwrap();
        assert_eq!((gz.1, gz.2), (6, false));
    }

    #[test]
    fn authenticated_probes_are_at_least_112_bytes() {
        assert_eq!(probe_size(PingKind::Udp, 44, true), 112);
        assert_eq!(probe_size(PingKind::Udp, 200, true), 200);
        assert_eq!(probe_size(PingKind::Udp, 44, false), 44);
        assert_eq!(probe_size(PingKind::Icmp, 8, false), 8);
    }

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2, checksum is its complement.
        assert_eq!(inet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
    }

    #[test]
    fn http_urls() {
        let p = |u: &str| parse_http_url(u).map(|u| (u.host, u.port, u.path));
        assert_eq!(p("http://a.b:8080/v1/x").unwrap(), ("a.b".into(), 8080, "/v1/x".into()));
        assert_eq!(p("http://a.b").unwrap(), ("a.b".into(), 80, "/".into()));
        assert_eq!(p("http://[::1]:9/").unwrap(), ("::1".into(), 9, "/".into()));
        assert_eq!(p("https://a.b/").unwrap(), ("a.b".into(), 443, "/".into()));
        assert!(parse_http_url("ftp://a").is_err());
        assert!(parse_http_url("http://a:x/").is_err());
    }
}
