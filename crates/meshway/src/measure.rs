//! Measurement commands: `reflect`, `ping`, `perf`, `trace`, `agent`, `history`. Flags are
//! parsed here into the runtime crate's config structs; the runtime returns reports, which
//! meshway-report renders and this module prints.

use anyhow::{bail, Context, Result};
use meshway_agent::perf::PerfConfig;
use meshway_agent::ping::{PingConfig, PingEvent, PingKind};
use meshway_agent::reflect::{ReflectConfig, ReflectorHandle};
use meshway_agent::signals::Signals;
use meshway_probe::perf::{Direction, Protocol};
use meshway_report::json_line;
use meshway_report::measure as text;
use meshway_units::{BitsPerSec, Bytes, Nanos};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use crate::emit;

// ---------------------------------------------------------------------------------------------
// reflect

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  # answer STAMP on 0.0.0.0:862 (root: port < 1024)
  meshway reflect
  # a local reflector on an unprivileged port
  meshway reflect --listen 127.0.0.1:8620
  meshway reflect --listen [::]:862 --rate-limit 1000
  meshway reflect --rate-limit-bandwidth 10Gbps    more for large probes
  # drop every 10th
  meshway reflect --listen 127.0.0.1:8620 --drop-every 10 --duration 60s

The reflector answers STAMP (RFC 8762) test packets, unauthenticated or, with
--key-file, authenticated, so any RFC 8762 session-sender works with it, as
does `meshway ping --kind udp`; senders stamping in PTPv2 format (the Z bit)
are answered too. RFC 8972's SSID is returned in the answer; its TLVs are
not (the answer's padding is zero). The Ses-Sender TTL is the probe's TTL or
hop limit as received, IPv4 probes to a dual-stack [::] socket included (0
where the kernel gives none). It answers each valid packet with exactly as
many bytes as it received (never more), drops malformed packets (shorter than
44 bytes, a zero error-estimate multiplier) in the kernel with a socket
filter, and answers each source address
at most --rate-limit packets and --rate-limit-bandwidth a second (each with a
one-second burst), and does not answer a packet from its own address and port
or carrying a reflector's answer's timestamps, so spoofed probes can aim at a
victim only what the limits let through, and cannot start a loop between
reflectors. On exit
(Ctrl-C, SIGTERM, or after --duration) it prints its counters.")]
pub struct ReflectArgs {
    /// Address and UDP port to listen on.
    #[arg(long, default_value = "0.0.0.0:862", value_name = "ADDR")]
    listen: SocketAddr,
    /// Packets per second accepted from one source IP address; 0 for no limit.
    #[arg(long, default_value_t = 10_000, value_name = "PPS")]
    rate_limit: u32,
    /// Answers sent to one source IP address, as a rate ("1Gbps", a one-second burst); 0
    /// (or "0bps") for no limit. It bounds what the reflector sends towards an address that a spoofed
    /// sender names.
    #[arg(long, default_value = "1Gbps", value_name = "RATE", value_parser = rate_or_zero)]
    rate_limit_bandwidth: BitsPerSec,
    /// Test mode: drop the k-th, 2k-th, ... valid packet of each source.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    drop_every: Option<u64>,
    /// Claim this host's clock is synchronized to UTC (sets the STAMP S bit).
    #[arg(long)]
    clock_synced: bool,
    /// Socket receive buffer ("4MiB"): room for bursts and floods of malformed packets
    /// without dropping valid probes. Beyond net.core.rmem_max it needs root.
    #[arg(long, default_value = "4MiB", value_name = "BYTES")]
    recv_buffer: Bytes,
    /// Source addresses remembered at once (their sequence counters and rate-limit buckets).
    /// When full, the ones not seen for longest are forgotten; a new sender is never refused.
    #[arg(long, default_value_t = meshway_agent::reflect::MAX_SOURCES, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..=16_777_216))]
    max_sources: usize,
    /// Stop after this long ("60s", "10min"); default: until interrupted.
    #[arg(long, value_name = "DURATION")]
    duration: Option<Nanos>,
    /// STAMP authenticated mode (RFC 8762): answer only packets whose HMAC-SHA-256 verifies
    /// under the key in this file (hex, or raw bytes; at least 16 bytes).
    #[arg(long, value_name = "FILE")]
    key_file: Option<std::path::PathBuf>,
    /// Print the final counters as JSON.
    #[arg(long)]
    json: bool,
}

/// A rate such as "100Mbps", or 0 in any unit ("0", "0bps") for none; at least what answers
/// one maximum-size probe a second.
fn rate_or_zero(s: &str) -> std::result::Result<BitsPerSec, String> {
    if s.trim() == "0" {
        return Ok(BitsPerSec(0));
    }
    let r = s.parse::<BitsPerSec>().map_err(|e| e.to_string())?;
    let min = BitsPerSec(meshway_agent::reflect::MIN_RATE_LIMIT_BYTES * 8);
    if r.get() != 0 && r < min {
        return Err(format!(
            "{r} would never answer a maximum-size probe (65,507 bytes): give at least {min}, or 0 for no limit"
        ));
    }
    Ok(r)
}

/// Reads a STAMP key file for --key-file.
fn stamp_key(path: &Option<std::path::PathBuf>) -> Result<Option<meshway_probe::stamp_auth::Key>> {
    let Some(p) = path else { return Ok(None) };
    let bytes = meshway_agent::read_regular(p, meshway_agent::MAX_SMALL_FILE, true)
        .with_context(|| format!("cannot read key file {}", p.display()))?;
    let key = meshway_probe::stamp_auth::parse_key(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    Ok(Some(key))
}

/// `--recv-buffer`'s range: 4 KiB (a few probes) to 1 GiB (the kernel takes at most
/// i32::MAX / 2). Assumptions beyond the kernel's bound.
const RECV_BUFFER_RANGE: (u64, u64) = (4 << 10, 1 << 30);

pub fn reflect(a: ReflectArgs) -> Result<()> {
    if a.recv_buffer.0 < RECV_BUFFER_RANGE.0 || a.recv_buffer.0 > RECV_BUFFER_RANGE.1 {
        anyhow::bail!("--recv-buffer: expected 4KiB to 1GiB, got {}", a.recv_buffer);
    }
    let sig = Signals::install().context("cannot install signal handlers")?;
    let sock = std::net::UdpSocket::bind(a.listen).with_context(|| {
        let hint = if a.listen.port() < 1024 { " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" } else { "" };
        format!("cannot listen on udp {}{hint}", a.listen)
    })?;
    let granted =
        meshway_agent::reflect::set_recv_buffer(&sock, usize::try_from(a.recv_buffer.0).unwrap_or(usize::MAX))
            .context("cannot set the receive buffer")?;
    let cfg = ReflectConfig {
        rate_limit_pps: a.rate_limit,
        rate_limit_bytes: a.rate_limit_bandwidth.0.div_ceil(8),
        drop_every: a.drop_every,
        synchronized: a.clock_synced,
        recv_buffer: 0, // set above
        key: stamp_key(&a.key_file)?,
        max_sources: a.max_sources,
        kernel_filter: true,
    };
    let h = ReflectorHandle::spawn(sock, cfg).context("cannot start the reflector")?;
    // Linux reports twice the usable size.
    eprintln!("reflecting STAMP on udp {} (receive buffer {})", h.addr, Bytes(granted as u64 / 2));
    let t0 = meshway_agent::clock::mono();
    while !sig.stop.load(Ordering::Relaxed) && a.duration.is_none_or(|d| meshway_agent::clock::mono() < t0 + d) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let t = h.stop();
    if a.json {
        emit(&json_line(&t)?)
    } else {
        emit(&text::reflect_text(&t))
    }
}

// ---------------------------------------------------------------------------------------------
// ping

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum Kind {
    /// STAMP (RFC 8762) test packets to a reflector (`meshway reflect`): RTT, loss,
    /// duplicates, reordering, one-way delay when both clocks are synchronized.
    Udp,
    /// TCP connect time (SYN to SYN-ACK) to host:port.
    Tcp,
    /// ICMP echo: an unprivileged ping socket where allowed, a raw socket as root.
    Icmp,
    /// HTTP GET phases: connect, TLS handshake (https), first byte, total (http:// and https:// URLs).
    Http,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  # STAMP to a reflector (default kind udp, port 862)
  meshway ping 127.0.0.1:8620
  meshway ping 10.0.0.7 -c 100 -i 10ms --size 1400B --dscp 46
  meshway ping --kind tcp example.internal:443     TCP connect time
  meshway ping --kind icmp 127.0.0.1
  meshway ping --kind http http://127.0.0.1:8080/v1/health -c 20 --json
  meshway ping --kind http https://api.internal/v1/health --ca ca.pem
  # until Ctrl-C, one JSON object per line
  meshway ping 127.0.0.1:8620 -c 0 --ndjson

Statistics (the same definitions everywhere in meshway):
  rtt             round-trip time minus the reflector's hold time (udp);
                  connect time (tcp); echo round trip (icmp); the whole GET
                  (http; https includes the TLS handshake)
  min/mean/max/stddev
                  exact; stddev is the population standard deviation
  p50/p90/p99/p99.9
                  nearest rank from a log-linear histogram, within ±0.4% of
                  the exact value
  loss            probes without an answer within --timeout, over probes
                  sent; late answers count as lost
  refused         tcp/http probes whose connection was refused (a TCP reset),
                  reported at once rather than at --timeout; counted as lost
  duplicates      repeated answers
  reordered       an answer arriving after the answer to a later probe
  jitter rfc3550  J += (|D| − J)/16 over consecutive answers, D the
                  difference of their delays (RFC 3550 §6.4.1)
  jitter mean|Δ|  mean absolute difference of consecutive delays
  jitter p95−p50  the 95th minus the 50th percentile of delay

Exit status: 0 when at least one answer came back, 2 on an error or when none
did.")]
pub struct PingArgs {
    /// The target: host or host:port (udp, tcp, icmp), or a URL (http, https).
    target: String,
    /// What to send.
    #[arg(long, short = 'k', value_enum, default_value = "udp")]
    kind: Kind,
    /// Probes to send; 0 sends until interrupted.
    #[arg(long, short = 'c', default_value_t = 10)]
    count: u64,
    /// Time between probes.
    #[arg(long, short = 'i', default_value = "1s", value_name = "DURATION")]
    interval: Nanos,
    /// A probe without an answer after this long is lost.
    #[arg(long, short = 'W', default_value = "1s", value_name = "DURATION")]
    timeout: Nanos,
    /// Probe size in bytes: the UDP payload (STAMP packet, at least 44B) or the ICMP payload
    /// [default: 44B].
    #[arg(long, short = 's', value_name = "SIZE")]
    size: Option<Bytes>,
    /// DSCP (0-63) to mark probes with.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=63))]
    dscp: u8,
    /// Claim this host's clock is synchronized to UTC; one-way delays are reported when the
    /// reflector claims the same.
    #[arg(long)]
    clock_synced: bool,
    /// https: a PEM file of CAs to trust besides the system's (a private PKI).
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// udp: STAMP authenticated mode with the key in this file (hex or raw bytes); probes are
    /// 112 bytes at least and answers whose HMAC does not verify are ignored.
    #[arg(long, value_name = "FILE")]
    key_file: Option<std::path::PathBuf>,
    /// Print one JSON document at the end (replies and summary).
    #[arg(long, conflicts_with = "ndjson")]
    json: bool,
    /// Print one JSON object per reply and loss, then one for the summary.
    #[arg(long)]
    ndjson: bool,
}

pub fn ping(a: PingArgs) -> Result<()> {
    let sig = Signals::install().context("cannot install signal handlers")?;
    let kind = match a.kind {
        Kind::Udp => PingKind::Udp,
        Kind::Tcp => PingKind::Tcp,
        Kind::Icmp => PingKind::Icmp,
        Kind::Http => PingKind::Http,
    };
    if a.interval == Nanos::ZERO {
        bail!("invalid --interval 0: must be positive");
    }
    if a.timeout == Nanos::ZERO {
        bail!("invalid --timeout 0: must be positive");
    }
    let size_b = a.size.unwrap_or(Bytes(44));
    let size = usize::try_from(size_b.get()).unwrap_or(usize::MAX);
    // TCP and HTTP probes are a connection (and a request): their size is the network's.
    let asked =
        if matches!(kind, PingKind::Udp | PingKind::Icmp) { Some(size_b.get()) } else { a.size.map(|b| b.get()) };
    if let Err(e) = meshway_agent::ping::check_size(kind, asked) {
        match kind {
            PingKind::Tcp | PingKind::Http => bail!("--{e}"),
            _ => bail!("invalid --size {e}"),
        }
    }
    let cfg = PingConfig {
        kind,
        target: a.target.clone(),
        count: (a.count > 0).then_some(a.count),
        interval: a.interval,
        timeout: a.timeout,
        size,
        dscp: a.dscp,
        clock_synchronized: a.clock_synced,
        statistics: true,
        ca: a.ca.clone(),
        key: stamp_key(&a.key_file)?,
    };
    let mut events = Vec::new();
    let mut out_err = None;
    // The size on the wire: authenticated STAMP probes are raised to 112 bytes.
    let header = text::LineCtx {
        kind,
        target: a.target.clone(),
        size_bytes: meshway_agent::ping::probe_size(kind, size, cfg.key.is_some()),
    };
    let report = meshway_agent::ping::run(&cfg, &sig.stop, &mut |e: &PingEvent| {
        let r = if a.json {
            events.push(e.clone());
            Ok(())
        } else if a.ndjson {
            json_line(e).map_err(anyhow::Error::from).and_then(|l| emit(&l))
        } else {
            emit(&text::reply_line(&header, e))
        };
        if let Err(e) = r {
            out_err.get_or_insert(e);
        }
    })
    .with_context(|| format!("ping {} failed", a.target))?;
    if let Some(e) = out_err {
        return Err(e);
    }
    if a.json {
        emit(&text::ping_json(&report, &events)?)?;
    } else if a.ndjson {
        emit(&text::ping_ndjson_summary(&report)?)?;
    } else {
        emit(&text::ping_summary(&report))?;
    }
    if report.echo.counts.received == 0 {
        let late = report.echo.counts.late;
        let hint = match report.kind {
            // Something answers, only after the timeout: the timeout is the trouble.
            _ if late > 0 => {
                format!("; {late} answer(s) came after the timeout of {}: give a longer --timeout", a.timeout)
            }
            PingKind::Tcp | PingKind::Http => refused_hint(&report.echo.counts).to_string(),
            // A reflector in authenticated mode, or one with another key, answers nothing
            // either: from here that looks the same as no reflector.
            PingKind::Udp if a.key_file.is_some() => format!(
                "; udp probes need a STAMP reflector on the target: if one runs there, its --key-file may not \
                 match this one (probes whose HMAC does not verify are ignored, and counted there as failed \
                 authentication); otherwise run `meshway reflect --listen {} --key-file ...` there",
                report.address
            ),
            PingKind::Udp => format!(
                "; udp probes need a STAMP reflector on the target: run `meshway reflect --listen {}` there, or try \
                 --kind tcp; a reflector in authenticated mode (reflect --key-file) answers only probes sent with \
                 the same key (--key-file)",
                report.address
            ),
            _ => "; ICMP echo may be filtered on the path: try --kind tcp with an open port".to_string(),
        };
        bail!("no answer from {} ({} probes sent){hint}", report.address, report.echo.counts.sent);
    }
    Ok(())
}

/// For a TCP or HTTP target that never answered: whether the host actively refused the
/// probes' connections (nothing listens on the port), which is not the same as packets being
/// lost. From the probes' own outcomes: no extra connection is opened to find out.
fn refused_hint(counts: &meshway_probe::stats::LossCounts) -> &'static str {
    if counts.refused > 0 {
        ": the connection is refused (a TCP reset: nothing listens on that port)"
    } else {
        ""
    }
}

// ---------------------------------------------------------------------------------------------
// perf

/// The default perf port (TCP and UDP).
const PERF_PORT: u16 = 5301;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  # serve tests on 0.0.0.0:5301 (TCP and UDP)
  meshway perf --server
  meshway perf --server --listen 127.0.0.1:5301
  meshway perf 10.0.0.2                            one TCP stream for 10 s
  meshway perf 10.0.0.2 -P 8 -t 30s                eight parallel streams
  meshway perf 10.0.0.2 --bytes 1GiB               until 1 GiB has been sent
  # server sends, client receives
  meshway perf 10.0.0.2 --reverse
  meshway perf 10.0.0.2 --bidir -P 2               two streams each way at once
  # UDP: loss, jitter, reordering
  meshway perf 10.0.0.2 --udp --rate 100Mbps --size 1200B
  meshway perf 127.0.0.1 -t 5s --json              one JSON document

Throughput is the receiver's goodput: bytes counted by the receiving
application after its first arrival, over its span from first to last
arrival. Intervals are the client's view (bytes it sent and received). CPU is
process CPU time (user + system, from /proc) over wall time, percent of one
core; the server's figure covers its whole process. UDP jitter is RFC 3550's,
on one-way transit times (clock offsets cancel). The server answers many
clients at once.")]
pub struct PerfArgs {
    /// The server to test against: host or host:port (default port 5301).
    #[arg(required_unless_present = "server")]
    target: Option<String>,
    /// Run as a server.
    #[arg(long, conflicts_with = "target")]
    server: bool,
    /// Server: address to listen on (TCP and UDP) [default: 0.0.0.0:5301].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Parallel TCP streams (per direction).
    #[arg(long, short = 'P', conflicts_with = "server", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=128))]
    parallel: u16,
    /// Test length; with --bytes, the longest the test may run (default 10s, or 10min with --bytes).
    #[arg(long, short = 't', value_name = "DURATION", conflicts_with = "server")]
    duration: Option<Nanos>,
    /// Send this many bytes (per direction) instead of running for a duration (TCP).
    #[arg(long, short = 'n', value_name = "SIZE", conflicts_with_all = ["udp", "server"])]
    bytes: Option<Bytes>,
    /// The server sends, the client receives.
    #[arg(long, short = 'R', conflicts_with_all = ["bidir", "server"])]
    reverse: bool,
    /// Both directions at once (TCP).
    #[arg(long, conflicts_with_all = ["udp", "server"])]
    bidir: bool,
    /// UDP at --rate instead of TCP.
    #[arg(long, short = 'u', conflicts_with = "server")]
    udp: bool,
    /// UDP target rate.
    #[arg(long, short = 'b', default_value = "100Mbps", value_name = "RATE", conflicts_with = "server")]
    rate: BitsPerSec,
    /// TCP write size or UDP datagram size (default 128KiB for TCP, 1200B for UDP).
    #[arg(long, short = 'l', value_name = "SIZE", conflicts_with = "server")]
    size: Option<Bytes>,
    /// Time between interval reports.
    #[arg(long, short = 'i', default_value = "1s", value_name = "DURATION", conflicts_with = "server")]
    interval: Nanos,
    /// Print one JSON document at the end.
    #[arg(long, conflicts_with = "server")]
    json: bool,
}

pub fn perf(a: PerfArgs) -> Result<()> {
    let sig = Signals::install().context("cannot install signal handlers")?;
    if a.server {
        let listen = a.listen.unwrap_or(SocketAddr::from(([0, 0, 0, 0], PERF_PORT)));
        let tcp = std::net::TcpListener::bind(listen).with_context(|| format!("cannot listen on tcp {listen}"))?;
        let udp =
            std::net::UdpSocket::bind(tcp.local_addr()?).with_context(|| format!("cannot listen on udp {listen}"))?;
        eprintln!("perf server on {} (tcp and udp)", tcp.local_addr()?);
        let log: std::sync::Arc<dyn Fn(String) + Send + Sync> = std::sync::Arc::new(|l| eprintln!("{l}"));
        return meshway_agent::perf::serve(tcp, udp, sig.stop.clone(), log).context("perf server failed");
    }
    if let Some(l) = a.listen {
        bail!("--listen {l} is the server's address: give it with --server, or give the server to test as TARGET");
    }
    let target = a.target.clone().unwrap_or_default();
    if a.interval == Nanos::ZERO {
        bail!("invalid --interval 0: must be positive");
    }
    if a.bytes.is_some_and(|b| b.get() == 0) {
        bail!("invalid --bytes 0: a test must send at least one byte");
    }
    let server = perf_server(&target)?;
    let protocol = if a.udp { Protocol::Udp } else { Protocol::Tcp };
    let direction = if a.bidir {
        Direction::Bidir
    } else if a.reverse {
        Direction::Reverse
    } else {
        Direction::Forward
    };
    let default_size = if a.udp { 1200 } else { 128 * 1024 };
    let default_duration = if a.bytes.is_some() { Nanos(600_000_000_000) } else { Nanos(10_000_000_000) };
    let cfg = PerfConfig {
        server,
        protocol,
        direction,
        streams: a.parallel,
        duration: a.duration.unwrap_or(default_duration),
        bytes: a.bytes,
        rate: a.udp.then_some(a.rate),
        size: usize::try_from(a.size.map_or(default_size, Bytes::get)).unwrap_or(usize::MAX),
        interval: a.interval,
    };
    let mut out_err = None;
    let r = meshway_agent::perf::run(&cfg, &sig.stop, &mut |iv| {
        if !a.json {
            if let Err(e) = emit(&text::perf_interval_line(iv)) {
                out_err.get_or_insert(e);
            }
        }
    })
    .with_context(|| format!("perf test against {server} failed"))?;
    if let Some(e) = out_err {
        return Err(e);
    }
    emit(&if a.json { crate::json(&r)? } else { text::perf_text(&r) })
}

/// The perf server at `target`: of the addresses a name resolves to (`localhost`: 127.0.0.1
/// and ::1), the first that accepts a TCP connection within a second, as iperf3 and curl try
/// them in turn; the first address when none does (the test then says why). A server on
/// `[::1]` was refused at 127.0.0.1, the only address tried.
fn perf_server(target: &str) -> Result<SocketAddr> {
    let all = resolve_all(target, PERF_PORT)?;
    let first = *all.first().with_context(|| format!("{target:?} resolved to no address"))?;
    if all.len() < 2 {
        return Ok(first);
    }
    Ok(all
        .iter()
        .copied()
        .find(|a| std::net::TcpStream::connect_timeout(a, std::time::Duration::from_secs(1)).is_ok())
        .unwrap_or(first))
}

/// `host`, `host:port`, `[v6]:port` or a bare IPv6 address, with a default port.
pub(crate) fn resolve_host_port(target: &str, default_port: u16) -> Result<SocketAddr> {
    resolve_all(target, default_port)?.into_iter().next().with_context(|| format!("{target:?} resolved to no address"))
}

/// Every address of [`resolve_host_port`]'s target, in the resolver's order.
fn resolve_all(target: &str, default_port: u16) -> Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    let s = match target.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(a)) => format!("[{a}]:{default_port}"),
        Ok(a) => format!("{a}:{default_port}"),
        Err(_) if target.contains(':') => target.to_string(),
        Err(_) => format!("{target}:{default_port}"),
    };
    Ok(s.to_socket_addrs().with_context(|| format!("cannot resolve {target:?}"))?.collect())
}

// ---------------------------------------------------------------------------------------------
// trace

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  # UDP probes, 10 rounds, one flow
  meshway trace 10.0.0.2
  meshway trace 10.0.0.2 --icmp --rounds 30
  # eight flows: discover parallel (ECMP) paths
  meshway trace 10.0.0.2 --flows 8
  # TCP SYNs, for paths that filter UDP and ICMP
  meshway trace 10.0.0.2 --tcp 443
  meshway trace 10.0.0.2 --json

Every probe of a flow has the same addresses and ports, so it follows one ECMP
path; the probe's TTL and round ride in the UDP length (the ICMP or TCP
sequence number), which routers do not hash; the destination answers a TCP SYN
with SYN-ACK (open) or RST (closed). --flows N varies the source port (ICMP
identifier) to find parallel paths. Loss at a hop that later hops do not show
is labelled \"icmp rate limit\": the router limits the ICMP it generates, it
is not dropping traffic. Needs root or CAP_NET_RAW (a raw ICMP or ICMPv6
socket reads the answers). IPv4 and IPv6 (--tcp: IPv4).")]
pub struct TraceArgs {
    /// The target host (IPv4 or IPv6 address, or name).
    target: String,
    /// ICMP echo probes instead of UDP.
    #[arg(long, conflicts_with = "tcp")]
    icmp: bool,
    /// TCP SYN probes to this port instead of UDP (as tcptraceroute sends them).
    #[arg(long, value_name = "PORT")]
    tcp: Option<u16>,
    /// Highest TTL probed.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u8).range(1..=63))]
    max_ttl: u8,
    /// Rounds of probes (one probe per hop and flow each round).
    #[arg(long, short = 'c', default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rounds: u32,
    /// Time between rounds.
    #[arg(long, short = 'i', default_value = "1s", value_name = "DURATION")]
    interval: Nanos,
    /// How long to wait for a round's answers.
    #[arg(long, short = 'W', default_value = "500ms", value_name = "DURATION")]
    timeout: Nanos,
    /// Parallel flows, each pinned to one path.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    flows: u16,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

pub fn trace(a: TraceArgs) -> Result<()> {
    if a.timeout.get() == 0 {
        bail!("invalid --timeout 0: must be positive (every hop would read as lost)");
    }
    if a.interval.get() == 0 && a.rounds > 1 {
        bail!("invalid --interval 0: must be positive");
    }
    if a.tcp == Some(0) {
        bail!("invalid --tcp 0: port 0 cannot be probed: give a port from 1 to 65535");
    }
    let sig = Signals::install().context("cannot install signal handlers")?;
    let target = resolve_host_port(&a.target, 0)?.ip();
    // Addresses no host answers as: 30 hops of 100% loss said nothing useful.
    let why = match target {
        t if t.is_unspecified() => Some("the unspecified address"),
        t if t.is_multicast() => Some("a multicast address"),
        std::net::IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        _ => None,
    };
    if let Some(why) = why {
        bail!(
            "cannot trace {:?}: {target} is {why}, which no host answers as; give a unicast address or name",
            a.target
        );
    }
    if target.is_ipv6() && a.tcp.is_some() {
        bail!("--tcp traces IPv4 targets; {} is IPv6 (use udp or --icmp)", a.target);
    }
    let cfg = meshway_agent::trace::TraceConfig {
        target,
        icmp: a.icmp,
        max_ttl: a.max_ttl,
        rounds: a.rounds,
        interval: a.interval,
        timeout: a.timeout,
        flows: a.flows,
        tcp_port: a.tcp,
    };
    let r =
        meshway_agent::trace::run(&cfg, &sig.stop, &mut |_| {}).with_context(|| format!("trace to {target} failed"))?;
    emit(&if a.json { crate::json(&r)? } else { text::trace_text(&r) })
}

// ---------------------------------------------------------------------------------------------
// agent and history

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  # run: probe, store, serve /metrics, alert
  meshway agent --config agent.toml
  meshway agent --config agent.toml --check        validate the file and exit
  # reload targets, objectives, alerting, token
  kill -HUP $(pidof meshway)

agent.toml:
  [agent]
  # /metrics, /probe?target=&module=, /healthz
  listen = \"127.0.0.1:9330\"
  # SQLite, WAL: raw samples, 1-minute and 1-hour rollups
  database = \"meshway-agent.db\"
  bearer-token = \"s3cret\"          # optional
  evaluate-every = \"10s\"
  retention-raw = \"48h\"            # also retention-1m, retention-1h
  [alerts]
  # Alertmanager webhook JSON (version 4)
  webhook = \"http://127.0.0.1:9093/hook\"
  # consecutive violated evaluations (hysteresis)
  fire-after = 3
  resolve-after = 3
  [[target]]
  name = \"chatbot-edge\"
  kind = \"udp\"                     # udp | tcp | icmp | http | perf
  address = \"127.0.0.1:862\"
  interval = \"1s\"
  [target.objectives]
  window = \"5min\"
  rtt-p99 = \"50ms\"
  # also rtt-p50, rtt-p90, rtt-mean, jitter, throughput-min
  loss = \"0.1%\"

Each target starts at a fixed offset within its interval (start splay). SIGINT
or SIGTERM stops probing, writes what is queued and exits 0.")]
pub struct AgentArgs {
    /// The agent configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: std::path::PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Log lines on standard error as text or as one JSON object per line (timestamp,
    /// level, message).
    #[arg(long, value_enum, default_value = "text", value_name = "FORMAT")]
    log_format: LogFormat,
    /// Least important log lines written: error, warn or info.
    #[arg(long, value_enum, default_value = "info", value_name = "LEVEL")]
    log_level: LogLevel,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum LogLevel {
    Error,
    Warn,
    Info,
}

/// The agent's log through `tracing`: RFC 3339 UTC timestamps, levels, text or JSON lines on
/// standard error.
fn agent_log(format: LogFormat, level: LogLevel) -> meshway_agent::agent::Log {
    use meshway_agent::agent::Level;
    let max = match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
    };
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(max).with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    std::sync::Arc::new(|level, line: String| match level {
        Level::Info => tracing::info!("{line}"),
        Level::Warn => tracing::warn!("{line}"),
        Level::Error => tracing::error!("{line}"),
    })
}

pub fn agent(a: AgentArgs) -> Result<()> {
    if a.check {
        let spec = meshway_agent::agent::load(&a.config)?;
        meshway_agent::store::Store::check_location(&spec.database)
            .map_err(|e| anyhow::anyhow!("{}: agent.database: {e}", a.config.display()))?;
        return emit(&text::agent_check_text(&a.config, spec.targets.len()));
    }
    let sig = Signals::install().context("cannot install signal handlers")?;
    let log = agent_log(a.log_format, a.log_level);
    meshway_agent::agent::run(&a.config, sig, log)?;
    Ok(())
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum HistoryMetric {
    RttP50,
    RttP90,
    RttP99,
    RttMean,
    Jitter,
    Loss,
    ThroughputMin,
    Utilization,
    ErrorRatio,
    DropRatio,
    RxPower,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum HistoryStep {
    Raw,
    #[value(name = "1m")]
    Minute,
    #[value(name = "1h")]
    Hour,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  meshway history --db meshway-agent.db                          list targets
  # 1-minute series of rtt p99
  meshway history --target chatbot-edge --since 6h
  meshway history --target chatbot-edge --metric loss --step 1h --since 168h \\
      --csv
  meshway history --target bulk --metric throughput-min --json
  meshway history --target chatbot-edge --since 168h --step 1h --forecast \\
      --threshold 50ms
  meshway history --target up/eth0/utilization --since 720h --forecast \\
      --threshold 80%
  meshway history --target chatbot-edge --since 168h --anomalies

--forecast fits a least-squares line to the series and prints a 95% prediction
interval and when the line (and the interval's edges) reach --threshold: a
duration for rtt and jitter, \"1%\" for loss and the interface ratios, a rate
(\"100Mbps\") for throughput-min (a floor: crossing from above). Interface
targets store one series per interface and ratio, named
TARGET/INTERFACE/utilization, .../error-ratio and .../drop-ratio; --metric
follows the series' name unless given, and is throughput-min for a perf
target. Without --target the series are listed (--json for JSON); --csv,
--html, --forecast, --anomalies and --metric need a target.")]
pub struct HistoryArgs {
    /// The agent's database.
    #[arg(long, default_value = "meshway-agent.db", value_name = "FILE")]
    db: std::path::PathBuf,
    /// The target to query; without it, the targets are listed.
    #[arg(long)]
    target: Option<String>,
    /// Unless given: throughput-min for a perf target, the ratio an interface series' name
    /// ends with, rx-power for an optics series, else rtt-p99.
    #[arg(long, value_enum)]
    metric: Option<HistoryMetric>,
    /// Window start, as a duration before --until.
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    since: Nanos,
    /// Window end, as a duration before now.
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    until: Nanos,
    /// Series resolution: raw samples, 1-minute or 1-hour rollups.
    #[arg(long, value_enum, default_value = "1m")]
    step: HistoryStep,
    /// Fit a trend and say when it crosses --threshold.
    #[arg(long, requires = "threshold")]
    forecast: bool,
    /// The threshold for --forecast (negative values such as -12dBm are read as values);
    /// without --forecast it would mean nothing, so it is refused.
    #[arg(long, allow_hyphen_values = true, requires = "forecast")]
    threshold: Option<String>,
    /// The season of --forecast and --anomalies (0s: none); a forecast over two seasons or
    /// more fits the deseasonalised series and asks when its peak crosses.
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    season: Nanos,
    /// List points that stand out of their neighbourhood and steps in the level.
    #[arg(long)]
    anomalies: bool,
    /// How far ahead --forecast looks.
    #[arg(long, default_value = "720h", value_name = "DURATION")]
    horizon: Nanos,
    /// Print the report as JSON.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print the series as CSV (one row per interval).
    #[arg(long)]
    csv: bool,
    /// Also write a self-contained HTML page: RTT per interval as smokeping draws it (min to
    /// max, median to p90, the median, loss marks).
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
}

fn metric_of(m: HistoryMetric) -> meshway_probe::objective::Metric {
    use meshway_probe::objective::Metric;
    match m {
        HistoryMetric::RttP50 => Metric::RttP50,
        HistoryMetric::RttP90 => Metric::RttP90,
        HistoryMetric::RttP99 => Metric::RttP99,
        HistoryMetric::RttMean => Metric::RttMean,
        HistoryMetric::Jitter => Metric::JitterRfc3550,
        HistoryMetric::Loss => Metric::Loss,
        HistoryMetric::ThroughputMin => Metric::ThroughputMin,
        HistoryMetric::Utilization => Metric::Utilization,
        HistoryMetric::ErrorRatio => Metric::ErrorRatio,
        HistoryMetric::DropRatio => Metric::DropRatio,
        HistoryMetric::RxPower => Metric::RxPower,
    }
}

pub fn history(a: HistoryArgs) -> Result<()> {
    use meshway_agent::history::{self, Step};
    use meshway_probe::objective::Metric;
    let Some(target) = &a.target else {
        // The list of targets: --json prints it as JSON; what reads one target's series is
        // refused rather than ignored.
        let needs_target = [
            ("--csv", a.csv),
            ("--html", a.html.is_some()),
            ("--forecast", a.forecast),
            ("--anomalies", a.anomalies),
            ("--metric", a.metric.is_some()),
        ];
        if let Some((flag, _)) = needs_target.iter().find(|f| f.1) {
            bail!("{flag} needs --target: without it history lists the targets (--json lists them as JSON)");
        }
        let list = history::targets(&a.db)?;
        if a.json {
            return emit(&crate::json(&list)?);
        }
        let rows: Vec<(String, u64)> = list.into_iter().map(|t| (t.target, t.samples)).collect();
        return emit(&text::history_targets_text(&rows));
    };
    let metric = match a.metric {
        Some(m) => metric_of(m),
        None => history::default_metric(&a.db, target),
    };
    let threshold = match (&a.threshold, a.forecast) {
        (Some(t), true) => Some(match metric {
            Metric::RxPower => t
                .trim()
                .trim_end_matches("dBm")
                .trim()
                .parse::<f64>()
                .map_err(|_| anyhow::anyhow!("invalid --threshold {t:?}: a power such as -12dBm"))?,
            m if m.is_ratio() => meshway_agent::config::parse_ratio(&toml::Value::String(t.clone()))
                .map_err(|e| anyhow::anyhow!("invalid --threshold: {e}"))?,
            Metric::ThroughputMin => t.parse::<BitsPerSec>().context("invalid --threshold")?.get() as f64,
            _ => t.parse::<Nanos>().context("invalid --threshold")?.get() as f64,
        }),
        _ => None,
    };
    let now = meshway_agent::clock::unix_nanos();
    let to = now.saturating_sub(a.until.get());
    let from = to.saturating_sub(a.since.get());
    let step = match a.step {
        HistoryStep::Raw => Step::Raw,
        HistoryStep::Minute => Step::Minute,
        HistoryStep::Hour => Step::Hour,
    };
    // A season shorter than a minute has too few points of any rollup to fit.
    if a.season.get() > 0 && a.season.get() < 60_000_000_000 {
        anyhow::bail!("--season: expected 0s (none) or at least 1min, got {}", a.season);
    }
    let season = (a.season.get() > 0).then(|| a.season.get() as f64 / 1e9);
    let r = history::query(&a.db, target, metric, from, to, step, threshold, a.horizon.get(), season, a.anomalies)?;
    if let Some(p) = &a.html {
        crate::output::write_html(p, &text::history_html(&r), &[&a.db])?;
        eprintln!("wrote {}", p.display());
    }
    emit(&if a.json {
        crate::json(&r)?
    } else if a.csv {
        text::history_csv(&r)
    } else {
        text::history_text(&r)
    })
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  # the module in eth4's cage (root; ethtool netlink)
  meshway optics eth4
  meshway optics /sys/bus/i2c/devices/5-0050/eeprom     an optoe sysfs file
  # `ethtool -m eth4 hex on > dump.hex`, or xxd / xxd -p output
  meshway optics dump.hex --json

Decodes SFP (SFF-8472, internal or external calibration), QSFP/QSFP28
(SFF-8636) and QSFP-DD/OSFP (CMIS 4/5) modules: identity, temperature, supply,
per-lane bias and transmit/receive power in mW and dBm, the module's own alarm
and warning thresholds, its latched flags, and for coherent 400ZR/ZR+ modules
the VDM observables (pre-FEC BER, eSNR, OSNR, chromatic dispersion, ...). A
file is a binary image (upper page p at 128 + 128p, SFP A2h at 256) or hex
text. Exits 2 when the image cannot be decoded; checksum mismatches are
reported and decoding goes on.")]
pub struct OpticsArgs {
    /// An interface name, or a file holding an EEPROM image.
    source: String,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

pub fn optics(a: OpticsArgs) -> Result<()> {
    let path = std::path::Path::new(&a.source);
    let is_file = a.source.contains('/') || path.exists();
    let image = if is_file {
        meshway_agent::optics::read_file(path)?
    } else {
        meshway_agent::optics::read_interface(&a.source)
            .with_context(|| format!("cannot read the module of {} (give a file to decode a dump)", a.source))?
    };
    let m = meshway_probe::optics::decode(&image).with_context(|| format!("{}: cannot decode", a.source))?;
    for c in m.checksums.iter().filter(|c| !c.ok()) {
        eprintln!("warning: {}: {} checksum mismatch at byte {}", a.source, c.name, c.at);
    }
    for n in &m.notes {
        eprintln!("note: {}: {n}", a.source);
    }
    if a.json {
        let mut v = serde_json::to_value(&m)?;
        v["source"] = serde_json::Value::String(a.source.clone());
        v["worst"] = serde_json::to_value(m.worst())?;
        emit(&format!("{}\n", serde_json::to_string_pretty(&v)?))
    } else {
        emit(&text::optics_text(&a.source, &m))
    }
}
