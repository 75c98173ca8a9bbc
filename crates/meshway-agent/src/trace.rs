//! `meshway trace`: TTL-limited probes over rounds, aggregated per hop by
//! [`meshway_probe::trace::TraceTable`].
//!
//! Probes are UDP to port 33434 (or ICMP echo with `icmp`). Every probe of one flow carries
//! the same addresses, ports and protocol, so it follows one ECMP path (the Paris traceroute
//! idea); the probe's identity rides in a field routers do not hash: the UDP length (payload
//! `16 + ttl + 64 × (round mod 4)` bytes) or the ICMP sequence number. With `flows > 1`, flow
//! `f` uses source port `base + f` (UDP) or identifier `base + f` (ICMP), which spreads the
//! flows over parallel paths where the network hashes on them.
//!
//! With `tcp_port`, probes are TCP SYNs to that port (as tcptraceroute sends them, for paths
//! where UDP and ICMP are filtered): crafted on a raw TCP socket with fixed ports per flow, the
//! probe's identity in the sequence number (`0x4d00_0000 | round mod 4 << 8 | ttl`); routers
//! answer with time exceeded quoting it, the destination with SYN-ACK (port open) or RST
//! (closed), both acknowledging sequence + 1. The kernel resets the half-open connection.
//!
//! Answers are read from a raw ICMP socket (ICMPv6 for IPv6 targets, whose time exceeded and
//! destination unreachable messages quote the probe the same way): this needs root or
//! CAP_NET_RAW. TCP probes are IPv4 only.

use crate::clock;
use meshway_probe::trace::{HopReport, TraceTable};
use meshway_units::Nanos;
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use thiserror::Error;

/// Destination port of UDP probes (traceroute's traditional base).
pub const TRACE_PORT: u16 = 33434;
const PAYLOAD_BASE: usize = 16;

#[derive(Debug, Clone)]
pub struct TraceConfig {
    pub target: IpAddr,
    pub icmp: bool,
    pub max_ttl: u8,
    pub rounds: u32,
    /// Time between rounds.
    pub interval: Nanos,
    /// How long to wait for answers after a round's probes.
    pub timeout: Nanos,
    /// Parallel flows (distinct source ports or ICMP identifiers).
    pub flows: u16,
    /// TCP SYN probes to this port instead of UDP or ICMP.
    pub tcp_port: Option<u16>,
}

/// The sequence number of a TCP probe.
fn tcp_seq(ttl: u8, round_mod: u8) -> u32 {
    0x4d00_0000 | (u32::from(round_mod) << 8) | u32::from(ttl)
}

/// The Internet checksum of the TCP pseudo header (RFC 793) and `seg`.
fn tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, seg: &[u8]) -> u16 {
    let mut b = Vec::with_capacity(12 + seg.len());
    b.extend_from_slice(&src.octets());
    b.extend_from_slice(&dst.octets());
    b.extend_from_slice(&[0, 6]);
    b.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    b.extend_from_slice(seg);
    crate::ping::inet_checksum(&b)
}

/// A 20-byte TCP SYN.
pub fn tcp_syn(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, seq: u32) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = 0x02;
    h[14..16].copy_from_slice(&65_535u16.to_be_bytes());
    let c = tcp_checksum(src, dst, &h);
    h[16..18].copy_from_slice(&c.to_be_bytes());
    h
}

/// Matches a packet read from a raw TCP socket (IPv4 header first) to a probe: the
/// destination's SYN-ACK or RST acknowledging one of our sequence numbers.
pub fn match_tcp_reply(pkt: &[u8], target: Ipv4Addr, port: u16, flow_base: u16, flows: u16) -> Option<Matched> {
    let ihl = usize::from(*pkt.first()? & 0x0f) * 4;
    if ihl < 20 || *pkt.get(9)? != 6 || pkt.get(12..16)? != target.octets() {
        return None;
    }
    let t = pkt.get(ihl..ihl + 20)?;
    let (sport, dport) = (u16::from_be_bytes([t[0], t[1]]), u16::from_be_bytes([t[2], t[3]]));
    let flags = t[13];
    let syn_ack = flags & 0x12 == 0x12;
    let rst = flags & 0x04 != 0;
    if sport != port || !(syn_ack || rst) || flags & 0x10 == 0 {
        return None;
    }
    let flow = dport.checked_sub(flow_base).filter(|f| *f < flows)?;
    let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]).wrapping_sub(1);
    if ack >> 16 != 0x4d00 {
        return None;
    }
    Some(Matched { flow, ttl: (ack & 0xff) as u8, round_mod: ((ack >> 8) & 0xff) as u8, destination: true })
}

#[derive(Debug, Error)]
pub enum TraceError {
    #[error(
        "trace reads ICMP time-exceeded messages from a raw socket, which this user may not open: run as \
         root or grant CAP_NET_RAW (`setcap cap_net_raw+ep $(which meshway)`)"
    )]
    NotPermitted,
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid trace: {0}")]
    Invalid(String),
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> TraceError {
    move |source| TraceError::Io { what: what.to_string(), source }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceReport {
    pub target: String,
    pub protocol: &'static str,
    pub rounds: u32,
    pub flows: u16,
    pub hops: Vec<HopReport>,
    /// Distinct hop sequences seen across flows (ECMP paths), each as a list of addresses; a
    /// hop that did not answer matches any address.
    pub paths: Vec<Vec<Option<IpAddr>>>,
}

/// What an ICMP answer tells about one of our probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched {
    pub flow: u16,
    pub ttl: u8,
    pub round_mod: u8,
    pub destination: bool,
}

/// Parses an IPv4 packet from a raw ICMP socket and matches it to a probe. `flow_base` is the
/// first source port (UDP) or identifier (ICMP). Pure, so it is tested on crafted bytes.
pub fn match_answer(pkt: &[u8], target: Ipv4Addr, icmp: bool, flow_base: u16, flows: u16) -> Option<Matched> {
    match_answer_proto(pkt, target, if icmp { 1 } else { 17 }, flow_base, flows)
}

/// [`match_answer`] for a probe protocol: 1 ICMP, 17 UDP, 6 TCP.
pub fn match_answer_proto(pkt: &[u8], target: Ipv4Addr, proto: u8, flow_base: u16, flows: u16) -> Option<Matched> {
    let icmp = proto == 1;
    let ihl = usize::from(*pkt.first()? & 0x0f) * 4;
    if ihl < 20 {
        return None;
    }
    let icmp_msg = pkt.get(ihl..)?;
    let (typ, code) = (*icmp_msg.first()?, *icmp_msg.get(1)?);
    let flow_of = |v: u16| v.checked_sub(flow_base).filter(|f| *f < flows);
    if icmp && typ == 0 {
        // Echo reply from the destination itself.
        let s = pkt.get(12..16)?;
        let src = Ipv4Addr::new(s[0], s[1], s[2], s[3]);
        if src != target || icmp_msg.len() < 8 {
            return None;
        }
        let flow = flow_of(u16::from_be_bytes([icmp_msg[4], icmp_msg[5]]))?;
        let seq = u16::from_be_bytes([icmp_msg[6], icmp_msg[7]]);
        return Some(Matched { flow, ttl: (seq & 0xff) as u8, round_mod: (seq >> 8) as u8, destination: true });
    }
    let destination = match (typ, code) {
        (11, 0) => false,
        (3, _) => true,
        _ => return None,
    };
    // The quoted datagram: its IP header, then at least 8 bytes of ours.
    let quoted = icmp_msg.get(8..)?;
    let qihl = usize::from(*quoted.first()? & 0x0f) * 4;
    if qihl < 20 {
        return None;
    }
    let d = quoted.get(16..20)?;
    let qdst = Ipv4Addr::new(d[0], d[1], d[2], d[3]);
    if qdst != target {
        return None;
    }
    let l4 = quoted.get(qihl..qihl + 8)?;
    if icmp {
        if quoted[9] != 1 || l4[0] != 8 {
            return None;
        }
        let flow = flow_of(u16::from_be_bytes([l4[4], l4[5]]))?;
        let seq = u16::from_be_bytes([l4[6], l4[7]]);
        Some(Matched { flow, ttl: (seq & 0xff) as u8, round_mod: (seq >> 8) as u8, destination })
    } else if proto == 6 {
        if quoted[9] != 6 {
            return None;
        }
        let flow = flow_of(u16::from_be_bytes([l4[0], l4[1]]))?;
        let seq = u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]);
        if seq >> 16 != 0x4d00 {
            return None;
        }
        Some(Matched { flow, ttl: (seq & 0xff) as u8, round_mod: ((seq >> 8) & 0xff) as u8, destination })
    } else {
        if quoted[9] != 17 || u16::from_be_bytes([l4[2], l4[3]]) != TRACE_PORT {
            return None;
        }
        let flow = flow_of(u16::from_be_bytes([l4[0], l4[1]]))?;
        let payload = usize::from(u16::from_be_bytes([l4[4], l4[5]])).checked_sub(8 + PAYLOAD_BASE)?;
        Some(Matched { flow, ttl: (payload % 64) as u8, round_mod: (payload / 64) as u8, destination })
    }
}

/// Matches an ICMPv6 message (a raw ICMPv6 socket delivers it without the IPv6 header) from
/// `from` to a probe: time exceeded (type 3) from a router, destination unreachable (type 1)
/// or an echo reply (129) from the target. The quoted packet is the probe's 40-byte IPv6
/// header and at least 8 bytes of its UDP header or ICMPv6 echo.
pub fn match_answer_v6(
    msg: &[u8],
    from: Ipv6Addr,
    target: Ipv6Addr,
    icmp: bool,
    flow_base: u16,
    flows: u16,
) -> Option<Matched> {
    let (typ, code) = (*msg.first()?, *msg.get(1)?);
    let flow_of = |v: u16| v.checked_sub(flow_base).filter(|f| *f < flows);
    if icmp && typ == 129 {
        if from != target || msg.len() < 8 {
            return None;
        }
        let flow = flow_of(u16::from_be_bytes([msg[4], msg[5]]))?;
        let seq = u16::from_be_bytes([msg[6], msg[7]]);
        return Some(Matched { flow, ttl: (seq & 0xff) as u8, round_mod: (seq >> 8) as u8, destination: true });
    }
    let destination = match (typ, code) {
        (3, 0) => false,
        (1, _) => true,
        _ => return None,
    };
    let quoted = msg.get(8..)?;
    if quoted.first()? >> 4 != 6 || quoted.get(24..40)? != target.octets() {
        return None;
    }
    let next = *quoted.get(6)?;
    let l4 = quoted.get(40..48)?;
    if icmp {
        if next != 58 || l4[0] != 128 {
            return None;
        }
        let flow = flow_of(u16::from_be_bytes([l4[4], l4[5]]))?;
        let seq = u16::from_be_bytes([l4[6], l4[7]]);
        Some(Matched { flow, ttl: (seq & 0xff) as u8, round_mod: (seq >> 8) as u8, destination })
    } else {
        if next != 17 || u16::from_be_bytes([l4[2], l4[3]]) != TRACE_PORT {
            return None;
        }
        let flow = flow_of(u16::from_be_bytes([l4[0], l4[1]]))?;
        let payload = usize::from(u16::from_be_bytes([l4[4], l4[5]])).checked_sub(8 + PAYLOAD_BASE)?;
        Some(Matched { flow, ttl: (payload % 64) as u8, round_mod: (payload / 64) as u8, destination })
    }
}

/// Sets the TTL (IPv4) or hop limit (IPv6) of a socket.
/// Asks for a receive buffer of `bytes` on `sock`: past the system's limit where the caller
/// may (root, as raw sockets need), else up to it. A smaller buffer only means more reads.
fn grow_receive_buffer(sock: &Socket, bytes: usize) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(sock, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = sock.set_recv_buffer_size(bytes);
    }
}

fn set_hops(s: socket2::SockRef<'_>, v6: bool, ttl: u8) -> io::Result<()> {
    if v6 {
        s.set_unicast_hops_v6(u32::from(ttl))
    } else {
        s.set_ttl_v4(u32::from(ttl))
    }
}

/// Runs the trace; `on_round` sees the round number after each round.
pub fn run(cfg: &TraceConfig, stop: &AtomicBool, on_round: &mut dyn FnMut(u32)) -> Result<TraceReport, TraceError> {
    if cfg.max_ttl == 0 || cfg.max_ttl > 63 {
        return Err(TraceError::Invalid(format!("max ttl {} out of range 1..=63", cfg.max_ttl)));
    }
    if cfg.flows == 0 || cfg.flows > 64 {
        return Err(TraceError::Invalid(format!("flows {} out of range 1..=64", cfg.flows)));
    }
    let v6 = cfg.target.is_ipv6();
    let target4 = match cfg.target {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    };
    let target6 = match cfg.target {
        IpAddr::V6(a) => a,
        IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
    };
    if v6 && cfg.tcp_port.is_some() {
        return Err(TraceError::Invalid("--tcp traces IPv4 targets; an IPv6 target takes udp or icmp probes".into()));
    }
    let (domain, proto) = if v6 { (Domain::IPV6, Protocol::ICMPV6) } else { (Domain::IPV4, Protocol::ICMPV4) };
    let raw = match Socket::new(domain, Type::RAW, Some(proto)) {
        Ok(s) => s,
        Err(e) if matches!(e.raw_os_error(), Some(1 | 13)) => return Err(TraceError::NotPermitted),
        Err(e) => return Err(io_err("cannot open a raw icmp socket")(e)),
    };
    // TCP: a raw TCP socket sends the SYNs and reads the destination's answers; the source
    // address (for the checksum) is the one the kernel would use toward the target.
    let tcp = match cfg.tcp_port {
        None => None,
        Some(port) => {
            let s = match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)) {
                Ok(s) => s,
                Err(e) if matches!(e.raw_os_error(), Some(1 | 13)) => return Err(TraceError::NotPermitted),
                Err(e) => return Err(io_err("cannot open a raw tcp socket")(e)),
            };
            let probe = UdpSocket::bind("0.0.0.0:0").map_err(io_err("cannot bind a udp socket"))?;
            probe.connect(SocketAddrV4::new(target4, port)).map_err(io_err("no route to the target"))?;
            let src = match probe.local_addr().map_err(io_err("socket"))?.ip() {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(_) => return Err(TraceError::Invalid("no IPv4 source address".into())),
            };
            Some((s, src, port))
        }
    };
    // UDP probe sockets, one per flow, on consecutive source ports where free.
    let mut udp: Vec<UdpSocket> = Vec::new();
    let flow_base = if tcp.is_some() {
        // Source ports of the TCP flows: high, fixed per run.
        0xc000 | ((std::process::id() as u16) & 0x0fc0)
    } else if cfg.icmp {
        0x4d00 | ((std::process::id() as u16) & 0x00c0)
    } else {
        let any: IpAddr = if v6 { Ipv6Addr::UNSPECIFIED.into() } else { Ipv4Addr::UNSPECIFIED.into() };
        let first = UdpSocket::bind(SocketAddr::new(any, 0)).map_err(io_err("cannot bind a udp socket"))?;
        let base = first.local_addr().map_err(io_err("socket"))?.port();
        drop(first);
        let base = base.min(u16::MAX - cfg.flows);
        for f in 0..cfg.flows {
            let s = UdpSocket::bind(SocketAddr::new(any, base + f))
                .map_err(io_err("cannot bind the probe source ports"))?;
            udp.push(s);
        }
        base
    };
    // Answers carry the kernel's receive time: read after a round's whole send loop, the
    // clock would add that loop to every round trip (15 ms on loopback at 64 flows).
    let stamps = crate::kstamp::enable(&raw);
    if let Some((s, _, _)) = &tcp {
        crate::kstamp::enable(s);
    }
    // Room for a round's answers (and, on loopback, the raw socket's copies of the probes
    // themselves): the default 208 KiB dropped 3,584 of 64 flows x 30 hops, and those flows
    // read as lost at every hop. The answers are also read between flows as they are sent.
    let room = usize::from(cfg.flows) * usize::from(cfg.max_ttl) * 2 * 2048;
    grow_receive_buffer(&raw, room);
    if let Some((s, _, _)) = &tcp {
        grow_receive_buffer(s, room);
    }
    let proto = if tcp.is_some() {
        6
    } else if cfg.icmp {
        1
    } else {
        17
    };
    // One packet read from the raw ICMP socket: a probe's answer of this round, or nothing.
    let take_icmp = |rx: &[u8],
                     from6: Option<Ipv6Addr>,
                     kernel_ns: Option<u64>,
                     rmod: u8,
                     table: &mut TraceTable,
                     sent_at: &mut HashMap<(u16, u8), Nanos>| {
        let at = if stamps { crate::kstamp::to_mono(kernel_ns) } else { clock::mono() };
        let matched = if v6 {
            from6.and_then(|from| match_answer_v6(rx, from, target6, cfg.icmp, flow_base, cfg.flows))
        } else {
            match_answer_proto(rx, target4, proto, flow_base, cfg.flows)
        };
        let Some(m) = matched else { return };
        if m.round_mod != rmod {
            return; // a late answer from an earlier round
        }
        let Some(t0) = sent_at.remove(&(m.flow, m.ttl)) else { return };
        let from = match from6 {
            Some(a) => IpAddr::V6(a),
            None => IpAddr::V4(Ipv4Addr::new(rx[12], rx[13], rx[14], rx[15])), // n ≥ 20: matched
        };
        table.on_answer(m.ttl, m.flow, from, at.saturating_sub(t0).get(), m.destination);
    };
    // One packet read from the raw TCP socket: the destination's answer to a SYN, or nothing.
    let take_tcp = |rx: &[u8],
                    kernel_ns: Option<u64>,
                    port: u16,
                    rmod: u8,
                    table: &mut TraceTable,
                    sent_at: &mut HashMap<(u16, u8), Nanos>| {
        let at = crate::kstamp::to_mono(kernel_ns);
        let Some(m) = match_tcp_reply(rx, target4, port, flow_base, cfg.flows) else { return };
        if m.round_mod != rmod {
            return;
        }
        let Some(t0) = sent_at.remove(&(m.flow, m.ttl)) else { return };
        table.on_answer(m.ttl, m.flow, cfg.target, at.saturating_sub(t0).get(), true);
    };
    // IPv6: the ICMPv6 message alone, the sender from the socket address; IPv4: the IP
    // packet, the sender from its header.
    let from6_of = |r: &crate::kstamp::Received| match r.from {
        Some(SocketAddr::V6(a)) if v6 => Some(*a.ip()),
        _ => None,
    };
    let dest = SocketAddr::new(cfg.target, TRACE_PORT);
    let mut table = TraceTable::new();
    let mut max_ttl = cfg.max_ttl;
    let buf = vec![0u8; 2048];
    for round in 0..cfg.rounds {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let round_start = clock::mono();
        let rmod = (round % 4) as u8;
        let mut sent_at: HashMap<(u16, u8), Nanos> = HashMap::new();
        let mut rx = [0u8; 2048];
        for f in 0..cfg.flows {
            // A flow that has reached the destination is not probed past it.
            let top = table.destination_ttl(f).map_or(max_ttl, |d| d.min(max_ttl));
            for ttl in 1..=top {
                let now = clock::mono();
                if let Some((s, src, port)) = &tcp {
                    let syn = tcp_syn(*src, target4, flow_base + f, *port, tcp_seq(ttl, rmod));
                    s.set_ttl_v4(u32::from(ttl)).map_err(io_err("cannot set ttl"))?;
                    let to = SockAddr::from(SocketAddr::V4(SocketAddrV4::new(target4, 0)));
                    s.send_to(&syn, &to).map_err(io_err("cannot send a probe"))?;
                } else if cfg.icmp {
                    let mut pkt = [0u8; 8 + PAYLOAD_BASE];
                    pkt[0] = if v6 { 128 } else { 8 };
                    pkt[4..6].copy_from_slice(&(flow_base + f).to_be_bytes());
                    pkt[6..8].copy_from_slice(&((u16::from(rmod) << 8) | u16::from(ttl)).to_be_bytes());
                    if !v6 {
                        // ICMPv6 checksums cover a pseudo header: the kernel fills them in.
                        let c = crate::ping::inet_checksum(&pkt);
                        pkt[2..4].copy_from_slice(&c.to_be_bytes());
                    }
                    set_hops(socket2::SockRef::from(&raw), v6, ttl).map_err(io_err("cannot set ttl"))?;
                    // Port 0: a raw IPv6 socket reads a port as the protocol and refuses others.
                    raw.send_to(&pkt, &SockAddr::from(SocketAddr::new(cfg.target, 0)))
                        .map_err(io_err("cannot send a probe"))?;
                } else {
                    let s = &udp[usize::from(f)];
                    set_hops(socket2::SockRef::from(s), v6, ttl).map_err(io_err("cannot set ttl"))?;
                    let len = PAYLOAD_BASE + usize::from(ttl) + 64 * usize::from(rmod);
                    match s.send_to(&buf[..len], dest) {
                        Ok(_) => {}
                        // An earlier port unreachable reported on this socket: not fatal.
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                        Err(e) => return Err(io_err("cannot send a probe")(e)),
                    }
                }
                table.on_sent(ttl, f);
                sent_at.insert((f, ttl), now);
            }
            // Read what has come back so far, so the socket never holds a round's answers.
            while let Ok(got) = crate::kstamp::recv(&raw, &mut rx, true) {
                let from6 = from6_of(&got);
                take_icmp(&rx[..got.len], from6, got.kernel_ns, rmod, &mut table, &mut sent_at);
            }
            if let Some((s, _, port)) = &tcp {
                while let Ok(got) = crate::kstamp::recv(s, &mut rx, true) {
                    take_tcp(&rx[..got.len], got.kernel_ns, *port, rmod, &mut table, &mut sent_at);
                }
            }
        }
        // Collect answers until the timeout.
        let deadline = clock::mono() + cfg.timeout;
        loop {
            let now = clock::mono();
            if now >= deadline || sent_at.is_empty() {
                break;
            }
            // With TCP, two sockets take turns in short waits.
            let wait = clock::dur(deadline.saturating_sub(now)).max(std::time::Duration::from_micros(100));
            let wait = if tcp.is_some() { wait.min(std::time::Duration::from_millis(2)) } else { wait };
            if let Some((s, _, port)) = &tcp {
                s.set_read_timeout(Some(std::time::Duration::from_micros(500))).map_err(io_err("socket"))?;
                while let Ok(got) = crate::kstamp::recv(s, &mut rx, false) {
                    take_tcp(&rx[..got.len], got.kernel_ns, *port, rmod, &mut table, &mut sent_at);
                }
            }
            raw.set_read_timeout(Some(wait)).map_err(io_err("socket"))?;
            let got = crate::kstamp::recv(&raw, &mut rx, false).map(|r| (r.len, from6_of(&r), r.kernel_ns));
            let (n, from6, kernel_ns) = match got {
                Ok(x) => x,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) =>
                {
                    if tcp.is_some() {
                        continue; // back to the TCP socket until the deadline
                    }
                    break;
                }
                Err(e) => return Err(io_err("cannot read icmp")(e)),
            };
            take_icmp(&rx[..n], from6, kernel_ns, rmod, &mut table, &mut sent_at);
        }
        // Once every flow has reached the destination, stop probing past it.
        let reached: Option<u8> = (0..cfg.flows)
            .map(|f| table.destination_ttl(f))
            .collect::<Option<Vec<u8>>>()
            .and_then(|v| v.into_iter().max());
        if let Some(d) = reached {
            max_ttl = max_ttl.min(d);
        }
        on_round(round + 1);
        let next = round_start + cfg.interval;
        let now = clock::mono();
        if next > now && round + 1 < cfg.rounds {
            std::thread::sleep(clock::dur(next.saturating_sub(now)));
        }
    }
    let hops = table.report();
    let paths = distinct_paths(&hops, cfg.flows);
    Ok(TraceReport {
        target: cfg.target.to_string(),
        protocol: if tcp.is_some() {
            "tcp"
        } else if cfg.icmp {
            "icmp"
        } else {
            "udp"
        },
        rounds: cfg.rounds,
        flows: cfg.flows,
        hops,
        paths,
    })
}

/// The distinct hop sequences of `flows` flows (ECMP paths), each hop by the address that
/// answered most often.
fn distinct_paths(hops: &[HopReport], flows: u16) -> Vec<Vec<Option<IpAddr>>> {
    // Each path with whether its flow reached the target (its last hop is the target).
    let mut paths: Vec<(Vec<Option<IpAddr>>, bool)> = Vec::new();
    for f in 0..flows {
        let mine: Vec<&HopReport> = hops.iter().filter(|h| h.flow == f).collect();
        let path: Vec<Option<IpAddr>> = mine.iter().map(|h| h.addresses.first().map(|a| a.0)).collect();
        let reached = mine.iter().any(|h| h.destination);
        // A flow nothing answered (routers rate-limit their ICMP errors) shows no path.
        if path.iter().all(Option::is_none) {
            continue;
        }
        // A hop that never answered (None) matches any address: such a path is not distinct.
        // Nor is one cut short: a flow whose target never answered has silent TTLs past where
        // the others ended, so a path that did not reach the target is silent beyond its end.
        // One that reached it ends there: a longer path is another path.
        let same = |a: &[Option<IpAddr>], a_reached: bool| {
            (0..a.len().max(path.len())).all(|i| match (a.get(i), path.get(i)) {
                (Some(None), _) | (_, Some(None)) => true,
                (Some(Some(x)), Some(Some(y))) => x == y,
                (None, None) => true,
                (None, Some(Some(_))) => !a_reached,
                (Some(Some(_)), None) => !reached,
            })
        };
        match paths.iter_mut().find(|(p, r)| same(p, *r)) {
            Some((p, r)) => {
                let len = match (*r, reached) {
                    (true, _) => p.len(),
                    (false, true) => path.len(),
                    (false, false) => p.len().max(path.len()),
                };
                p.resize(len, None);
                for (x, y) in p.iter_mut().zip(&path) {
                    if x.is_none() {
                        *x = *y;
                    }
                }
                *r |= reached;
            }
            None => paths.push((path, reached)),
        }
    }
    paths
        .into_iter()
        .map(|(mut p, _)| {
            while p.last().is_some_and(Option::is_none) {
                p.pop();
            }
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three flows over one path: one reached the target at TTL 3, one never heard from it
    /// (silent TTLs 3-5), one went another way at TTL 2. Two paths, the first complete.
    #[test]
    fn a_flow_cut_short_is_not_a_path_of_its_own() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let mut t = TraceTable::new();
        for (flow, hops) in [
            (0u16, vec![Some("2001:db8::1"), Some("2001:db8::2"), Some("2001:db8::9")]),
            (1, vec![Some("2001:db8::1"), Some("2001:db8::2"), None, None, None]),
            (2, vec![Some("2001:db8::1"), Some("2001:db8::3"), Some("2001:db8::9")]),
        ] {
            for (i, h) in hops.iter().enumerate() {
                let ttl = i as u8 + 1;
                t.on_sent(ttl, flow);
                if let Some(a) = h {
                    t.on_answer(ttl, flow, ip(a), 1_000, *a == "2001:db8::9");
                }
            }
        }
        let paths = distinct_paths(&t.report(), 3);
        let want: Vec<Vec<Option<IpAddr>>> = vec![
            vec![Some(ip("2001:db8::1")), Some(ip("2001:db8::2")), Some(ip("2001:db8::9"))],
            vec![Some(ip("2001:db8::1")), Some(ip("2001:db8::3")), Some(ip("2001:db8::9"))],
        ];
        assert_eq!(paths, want);
        // A longer path is still distinct from a shorter one that answered at every TTL.
        let mut u = TraceTable::new();
        for (ttl, a) in [(1u8, "2001:db8::1"), (2, "2001:db8::2"), (3, "2001:db8::4"), (4, "2001:db8::9")] {
            u.on_sent(ttl, 0);
            u.on_answer(ttl, 0, ip(a), 1_000, a == "2001:db8::9");
        }
        for (ttl, a) in [(1u8, "2001:db8::1"), (2, "2001:db8::2"), (3, "2001:db8::9")] {
            u.on_sent(ttl, 1);
            u.on_answer(ttl, 1, ip(a), 1_000, a == "2001:db8::9");
        }
        assert_eq!(distinct_paths(&u.report(), 2).len(), 2);
        // One that reached the target at TTL 3 and one that reached it at TTL 4 after a
        // silent TTL 3 are two paths, not one ending in the target twice.
        let mut w = TraceTable::new();
        for (flow, hops) in [
            (0u16, vec![Some("2001:db8::1"), Some("2001:db8::2"), Some("2001:db8::9")]),
            (1, vec![Some("2001:db8::1"), Some("2001:db8::2"), None, Some("2001:db8::9")]),
        ] {
            for (i, h) in hops.iter().enumerate() {
                w.on_sent(i as u8 + 1, flow);
                if let Some(a) = h {
                    w.on_answer(i as u8 + 1, flow, ip(a), 1_000, *a == "2001:db8::9");
                }
            }
        }
        assert_eq!(distinct_paths(&w.report(), 2).len(), 2);
    }

    fn ipv4_header(src: [u8; 4], dst: [u8; 4], proto: u8) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 1, proto, 0, 0];
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h
    }

    #[test]
    fn matches_time_exceeded_quoting_our_udp_probe() {
        let target = Ipv4Addr::new(10, 0, 0, 9);
        let mut pkt = ipv4_header([10, 0, 0, 1], [10, 0, 0, 5], 1);
        pkt.extend_from_slice(&[11, 0, 0, 0, 0, 0, 0, 0]); // time exceeded
        pkt.extend(ipv4_header([10, 0, 0, 5], target.octets(), 17));
        let ttl = 3;
        let udp_len = (8 + PAYLOAD_BASE + ttl + 64 * 2) as u16;
        pkt.extend_from_slice(&40_001u16.to_be_bytes());
        pkt.extend_from_slice(&TRACE_PORT.to_be_bytes());
        pkt.extend_from_slice(&udp_len.to_be_bytes());
        pkt.extend_from_slice(&[0, 0]);
        let m = match_answer(&pkt, target, false, 40_000, 4).unwrap();
        assert_eq!(m, Matched { flow: 1, ttl: 3, round_mod: 2, destination: false });
        // Another target, another port, a flow out of range: not ours.
        assert!(match_answer(&pkt, Ipv4Addr::new(10, 0, 0, 8), false, 40_000, 4).is_none());
        assert!(match_answer(&pkt, target, false, 40_000, 1).is_none());
        // Truncated or corrupted packets never panic.
        for n in 0..pkt.len() {
            let _ = match_answer(&pkt[..n], target, false, 40_000, 4);
            let _ = match_answer(&pkt[..n], target, true, 40_000, 4);
        }
        let mut bad = pkt.clone();
        bad[0] = 0x41; // ihl 4: shorter than an IPv4 header
        assert!(match_answer(&bad, target, false, 40_000, 4).is_none());
    }

    #[test]
    fn tcp_probes_match_time_exceeded_and_the_destinations_answers() {
        let (me, target) = (Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 9));
        let syn = tcp_syn(me, target, 0xc001, 443, tcp_seq(4, 3));
        // A valid checksum sums to zero with the pseudo header.
        assert_eq!(tcp_checksum(me, target, &syn), 0);
        assert_eq!((syn[13], u32::from_be_bytes([syn[4], syn[5], syn[6], syn[7]])), (0x02, 0x4d00_0304));
        let mut te = ipv4_header([10, 0, 0, 1], me.octets(), 1);
        te.extend_from_slice(&[11, 0, 0, 0, 0, 0, 0, 0]);
        te.extend(ipv4_header(me.octets(), target.octets(), 6));
        te.extend_from_slice(&syn[..8]);
        let m = match_answer_proto(&te, target, 6, 0xc000, 2).unwrap();
        assert_eq!(m, Matched { flow: 1, ttl: 4, round_mod: 3, destination: false });
        assert!(match_answer_proto(&te, target, 17, 0xc000, 2).is_none(), "not a UDP probe");
        // The destination: RST+ACK from a closed port, acknowledging seq + 1.
        let mut rst = ipv4_header(target.octets(), me.octets(), 6);
        let mut t = [0u8; 20];
        t[0..2].copy_from_slice(&443u16.to_be_bytes());
        t[2..4].copy_from_slice(&0xc001u16.to_be_bytes());
        t[8..12].copy_from_slice(&(tcp_seq(4, 3) + 1).to_be_bytes());
        t[12] = 5 << 4;
        t[13] = 0x14;
        rst.extend_from_slice(&t);
        let m = match_tcp_reply(&rst, target, 443, 0xc000, 2).unwrap();
        assert_eq!(m, Matched { flow: 1, ttl: 4, round_mod: 3, destination: true });
        assert!(match_tcp_reply(&rst, target, 80, 0xc000, 2).is_none(), "another port");
        for n in 0..rst.len() {
            let _ = match_tcp_reply(&rst[..n], target, 443, 0xc000, 2);
            let _ = match_answer_proto(&te[..n.min(te.len())], target, 6, 0xc000, 2);
        }
    }

    #[test]
    fn icmpv6_time_exceeded_unreachable_and_echo_reply_match() {
        let target: Ipv6Addr = "fd00::9".parse().unwrap();
        let router: Ipv6Addr = "fd00::1".parse().unwrap();
        let me: Ipv6Addr = "fd00::5".parse().unwrap();
        let quoted = |next: u8, l4: &[u8]| {
            let mut q = vec![0x60, 0, 0, 0, 0, 0, next, 1];
            q.extend_from_slice(&me.octets());
            q.extend_from_slice(&target.octets());
            q.extend_from_slice(l4);
            q
        };
        let udp_len = (8 + PAYLOAD_BASE + 7 + 64) as u16;
        let mut l4 = Vec::new();
        l4.extend_from_slice(&40_002u16.to_be_bytes());
        l4.extend_from_slice(&TRACE_PORT.to_be_bytes());
        l4.extend_from_slice(&udp_len.to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
        let mut te = vec![3, 0, 0, 0, 0, 0, 0, 0];
        te.extend(quoted(17, &l4));
        let m = match_answer_v6(&te, router, target, false, 40_000, 4).unwrap();
        assert_eq!(m, Matched { flow: 2, ttl: 7, round_mod: 1, destination: false });
        let mut un = vec![1, 4, 0, 0, 0, 0, 0, 0];
        un.extend(quoted(17, &l4));
        assert!(match_answer_v6(&un, target, target, false, 40_000, 4).unwrap().destination);
        let echo = [129, 0, 0, 0, 0x4d, 0x01, 0x02, 0x03];
        assert_eq!(
            match_answer_v6(&echo, target, target, true, 0x4d00, 4),
            Some(Matched { flow: 1, ttl: 3, round_mod: 2, destination: true })
        );
        assert!(match_answer_v6(&echo, router, target, true, 0x4d00, 4).is_none(), "a reply from elsewhere");
        for n in 0..te.len() {
            let _ = match_answer_v6(&te[..n], router, target, false, 40_000, 4);
            let _ = match_answer_v6(&te[..n], router, target, true, 40_000, 4);
        }
    }

    #[test]
    fn matches_port_unreachable_and_echo_reply_as_destination() {
        let target = Ipv4Addr::new(10, 0, 0, 9);
        let mut pkt = ipv4_header(target.octets(), [10, 0, 0, 5], 1);
        pkt.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
        pkt.extend(ipv4_header([10, 0, 0, 5], target.octets(), 17));
        pkt.extend_from_slice(&40_000u16.to_be_bytes());
        pkt.extend_from_slice(&TRACE_PORT.to_be_bytes());
        pkt.extend_from_slice(&((8 + PAYLOAD_BASE + 2) as u16).to_be_bytes());
        pkt.extend_from_slice(&[0, 0]);
        assert!(match_answer(&pkt, target, false, 40_000, 1).unwrap().destination);
        let mut echo = ipv4_header(target.octets(), [10, 0, 0, 5], 1);
        echo.extend_from_slice(&[0, 0, 0, 0, 0x4d, 0x02, 0x01, 0x05]);
        let m = match_answer(&echo, target, true, 0x4d00, 4).unwrap();
        assert_eq!(m, Matched { flow: 2, ttl: 5, round_mod: 1, destination: true });
    }
}
