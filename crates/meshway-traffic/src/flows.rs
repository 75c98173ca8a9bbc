//! Packets into unidirectional flows (the 5-tuple, as NetFlow/IPFIX count them), with TCP
//! analysis as Wireshark's `tcp.analysis` flags define it and RoCEv2 signals from the
//! InfiniBand transport headers.
//!
//! - A flow's bytes are frame bytes on the wire (Ethernet header and all), its payload the
//!   transport payload.
//! - Next expected sequence number of a direction: the highest `seq + length` (+1 for SYN or
//!   FIN) seen in it, pure ACKs included, zero-window probes excluded.
//! - TCP retransmission: a segment carrying data (or SYN/FIN) that starts before the next
//!   expected sequence number, and is not a keep-alive (0 or 1 byte at one below it, no
//!   SYN/FIN/RST) nor more than one byte starting one below it (data resent from a probed byte).
//!   Out-of-order arrivals count here too (Wireshark separates them with an RTT estimate;
//!   meshway does not).
//! - Zero-window probe: 1 byte at the next expected sequence number while the other
//!   direction's last window was 0. It is no retransmission, and it does not advance the next
//!   expected sequence number (the data that follows starts at the probed byte).
//! - Duplicate ACK: no data, no SYN/FIN/RST, a non-zero window, the sequence number at the
//!   next expected one, and the same acknowledgement number and window as the previous segment
//!   in its direction; not the answer to a keep-alive (a keep-alive ACK).
//! - Zero window: a window of 0 on a segment without SYN/FIN/RST (a zero-window probe aside).
//! - A SYN (without ACK) whose sequence number differs from its direction's initial one (or,
//!   without a SYN seen, one below its first) is a new connection on the same ports: both
//!   directions' sequence state starts again, as Wireshark starts a new TCP session.
//! - RoCEv2: UDP to port 4791 (IANA). The Base Transport Header's opcode (InfiniBand
//!   Architecture Specification vol. 1, 9.2): 0x11 RC Acknowledge with the AETH syndrome
//!   (bits 7-5: 000 ACK, 001 RNR NAK, 011 NAK) and 0x81 CNP (RoCEv2 Annex A17, congestion
//!   notification packet). Per destination queue pair, the PSN sequence of SEND, WRITE and
//!   READ-response packets: a PSN below the highest seen is a packet sent again (go-back-N),
//!   one beyond the next expected leaves a gap (packets lost before the capture point); IP
//!   packets marked Congestion Experienced (ECN 11) are counted.

use crate::capture::{self, Packet};
use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;

/// IANA's RoCEv2 UDP port.
pub const ROCEV2_PORT: u16 = 4791;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FlowKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, ...).
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

impl FlowKey {
    pub fn protocol_name(&self) -> &'static str {
        match (self.proto, self.dport == ROCEV2_PORT) {
            (17, true) => "rocev2",
            (6, _) => "tcp",
            (17, _) => "udp",
            (1, _) | (58, _) => "icmp",
            _ => "other",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TcpStats {
    pub retransmissions: u64,
    pub dup_acks: u64,
    pub zero_windows: u64,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    /// Sequence state of the direction (Wireshark's `tcp_analyze_seq_info`), started again by a
    /// new connection on the same ports.
    #[serde(skip)]
    seq: SeqState,
}

/// One direction's sequence state.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct SeqState {
    /// The initial sequence number (a SYN's), or one below the first segment's.
    base: Option<u32>,
    /// The next expected sequence number.
    next: Option<u32>,
    /// The acknowledgement number and window of the previous segment.
    ack: Option<u32>,
    window: Option<u16>,
    /// The previous segment was a keep-alive.
    keepalive: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RoceStats {
    pub acks: u64,
    pub naks: u64,
    pub rnr_naks: u64,
    pub cnps: u64,
    /// Request and read-response packets whose PSN is below the highest already seen on
    /// their queue pair: sent again (go-back-N after a NAK or a timeout) or duplicated.
    pub psn_resent: u64,
    /// Packets missing from a queue pair's PSN sequence (a PSN beyond the next expected one:
    /// lost before the capture point, or not captured).
    pub psn_gaps: u64,
    /// Packets marked Congestion Experienced in their IP header (ECN 11), as DCQCN's switches
    /// mark them.
    pub ecn_ce: u64,
    /// Per destination queue pair, the PSN after the highest seen (None after an RDMA READ
    /// request, whose responses take PSNs the capture cannot count): a flow's first queue
    /// pair inline (most flows carry one; a map for each of 50,000 flows cost 15% of the
    /// analysis time), any others after it.
    #[serde(skip)]
    next_psn: Option<(u32, Option<u32>)>,
    #[serde(skip)]
    more_psn: Vec<(u32, Option<u32>)>,
}

/// PSNs are 24 bits (InfiniBand Architecture Specification vol. 1, 9.7.1).
const PSN_MOD: u32 = 1 << 24;

impl RoceStats {
    /// One packet's Base Transport Header (`bth`, at least 12 bytes): its PSN against its
    /// queue pair's sequence. RC and UC SEND and RDMA WRITE packets (opcodes 0x00-0x0B and
    /// 0x20-0x2B) and RC RDMA READ responses (0x0D-0x10) each take the next PSN; an RDMA READ
    /// request (0x0C) takes as many as its responses, which the capture cannot count, so the
    /// sequence starts again after it. ACKs, CNPs and the rest carry no sequence of their own.
    fn sequence(&mut self, bth: &[u8]) {
        let (op, qp, psn) = (
            bth[0],
            u32::from_be_bytes([0, bth[5], bth[6], bth[7]]),
            u32::from_be_bytes([0, bth[9], bth[10], bth[11]]),
        );
        let next = match &mut self.next_psn {
            None => &mut self.next_psn.insert((qp, None)).1,
            Some((q, n)) if *q == qp => n,
            Some(_) => match self.more_psn.iter().position(|(q, _)| *q == qp) {
                Some(i) => &mut self.more_psn[i].1,
                None => {
                    self.more_psn.push((qp, None));
                    &mut self.more_psn.last_mut().expect("just pushed").1
                }
            },
        };
        match op {
            0x00..=0x0b | 0x0d..=0x10 | 0x20..=0x2b => {
                if let Some(n) = *next {
                    let ahead = psn.wrapping_sub(n) % PSN_MOD;
                    if ahead >= PSN_MOD / 2 {
                        self.psn_resent += 1;
                        return;
                    }
                    self.psn_gaps += u64::from(ahead);
                }
                *next = Some((psn + 1) % PSN_MOD);
            }
            0x0c => *next = None,
            _ => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flow {
    pub key: FlowKey,
    pub packets: u64,
    pub bytes: u64,
    pub payload_bytes: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roce: Option<RoceStats>,
}

impl Flow {
    pub fn duration_ns(&self) -> u64 {
        self.last_ns - self.first_ns
    }
}

/// Counts of what was not a flow.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Other {
    pub arp: u64,
    pub non_ip: u64,
    pub undecodable: u64,
    /// IP fragments after the first whose first fragment was not seen (before them): their
    /// ports are unknown, so they count in a flow of ports 0.
    pub orphan_fragments: u64,
}

/// First fragments remembered for their ports, at most (an assumption: far more datagrams
/// than are in reassembly at once; past it the table starts again).
const MAX_FRAGMENTED: usize = 65_536;

/// The flow table.
#[derive(Debug, Default)]
pub struct Flows {
    pub table: HashMap<FlowKey, Flow>,
    /// Ports of fragmented datagrams by (source, destination, protocol, IP identification),
    /// from their first fragment: later fragments carry no transport header.
    fragmented: HashMap<(IpAddr, IpAddr, u8, u32), (u16, u16)>,
    pub other: Other,
    pub packets: u64,
    pub bytes: u64,
    pub first_ns: Option<u64>,
    pub last_ns: u64,
}

/// A UDP datagram seen while adding a packet: for flow telemetry carried inside the capture.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    pub src: IpAddr,
    pub dport: u16,
    pub payload: &'a [u8],
}

/// The other direction of a TCP segment's connection, as its analysis needs it.
#[derive(Debug, Clone, Copy, Default)]
struct OtherSide {
    /// The segment starts a new connection on the same ports.
    new_session: bool,
    /// The other direction's last window (unknown before its first segment).
    window: Option<u16>,
    /// The other direction's last segment was a keep-alive.
    keepalive: bool,
}

/// `a` is after `b` in sequence space (RFC 1982 serial arithmetic on 32 bits).
fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl Flows {
    pub fn new() -> Flows {
        Flows::default()
    }

    /// Decodes one frame and adds it to its flow; returns its UDP datagram, if it is one.
    pub fn add<'a>(&mut self, p: &Packet<'a>) -> Option<Datagram<'a>> {
        self.add_weighted(p, 1)
    }

    /// A sampled frame (sFlow) standing for `weight` frames: counted `weight` times, without
    /// TCP or RoCE analysis (a sample says nothing about sequence).
    pub fn add_sampled(&mut self, p: &Packet<'_>, weight: u64) {
        self.add_weighted(p, weight.max(1));
    }

    /// A flow record exported by a meter (IPFIX): merged with its key's flow.
    pub fn add_record(&mut self, r: Flow) {
        self.packets = self.packets.saturating_add(r.packets);
        self.bytes = self.bytes.saturating_add(r.bytes);
        self.first_ns = Some(self.first_ns.map_or(r.first_ns, |f| f.min(r.first_ns)));
        self.last_ns = self.last_ns.max(r.last_ns);
        let f = self.table.entry(r.key).or_insert_with(|| Flow { packets: 0, bytes: 0, payload_bytes: 0, ..r.clone() });
        f.packets = f.packets.saturating_add(r.packets);
        f.bytes = f.bytes.saturating_add(r.bytes);
        f.payload_bytes = f.payload_bytes.saturating_add(r.payload_bytes);
        f.first_ns = f.first_ns.min(r.first_ns);
        f.last_ns = f.last_ns.max(r.last_ns);
    }

    fn add_weighted<'a>(&mut self, p: &Packet<'a>, weight: u64) -> Option<Datagram<'a>> {
        let analyse = weight == 1;
        // Sampled counts (frames x sampling rate) saturate rather than wrap.
        let wire = u64::from(p.wire_len).saturating_mul(weight);
        self.packets = self.packets.saturating_add(weight);
        self.bytes = self.bytes.saturating_add(wire);
        self.first_ns = Some(self.first_ns.map_or(p.ts_ns, |f| f.min(p.ts_ns)));
        self.last_ns = self.last_ns.max(p.ts_ns);
        let sliced = match p.linktype {
            capture::LINKTYPE_ETHERNET => LaxSlicedPacket::from_ethernet(p.data).ok(),
            capture::LINKTYPE_LINUX_SLL => ip_after(p.data, 16, 14),
            capture::LINKTYPE_LINUX_SLL2 => ip_after(p.data, 20, 0),
            _ => LaxSlicedPacket::from_ip(p.data).ok(),
        };
        let Some(s) = sliced else {
            self.other.undecodable = self.other.undecodable.saturating_add(weight);
            return None;
        };
        // A fragment: (identification, whether it is the first, the IP payload it holds).
        // Congestion Experienced (ECN 11, RFC 3168), as switches mark for DCQCN.
        let ce = match &s.net {
            Some(LaxNetSlice::Ipv4(v4)) => v4.header().ecn().value() == 0b11,
            Some(LaxNetSlice::Ipv6(v6)) => v6.header().ecn().value() == 0b11,
            _ => false,
        };
        let (src, dst, proto, ip_payload_len, frag) = match &s.net {
            Some(LaxNetSlice::Ipv4(v4)) => {
                let h = v4.header();
                // Total Length 0: a segmentation offload's (Linux BIG TCP above 64 KB leaves it
                // 0), the frame's wire length says (below). Below the header: the captured bytes.
                let len = match h.total_len() {
                    0 => u64::MAX,
                    _ => h.payload_len().map(u64::from).unwrap_or(v4.payload().payload.len() as u64),
                };
                let frag = v4
                    .payload()
                    .fragmented
                    .then(|| (u32::from(h.identification()), h.fragments_offset().value() == 0, v4.payload().payload));
                (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()), h.protocol().0, len, frag)
            }
            Some(LaxNetSlice::Ipv6(v6)) => {
                let h = v6.header();
                let p6 = v6.payload();
                // The header's Payload Length counts the extension headers too; the captured
                // slice is shorter when the snap length cut the packet. 0 is a jumbogram: its
                // hop-by-hop Jumbo Payload option has the length (RFC 2675), or without one (a
                // segmentation offload's) the frame's wire length says (below).
                let ext = v6.extensions().slice();
                let len = match u64::from(h.payload_length()) {
                    0 => match h.next_header().0 {
                        0 => jumbo_payload(ext).map_or(u64::MAX, |n| u64::from(n).saturating_sub(ext.len() as u64)),
                        _ => u64::MAX,
                    },
                    n => n.saturating_sub(ext.len() as u64),
                };
                let frag = p6.fragmented.then(|| {
                    v6.extensions().clone().into_iter().find_map(|e| match e {
                        etherparse::Ipv6ExtensionSlice::Fragment(f) => {
                            Some((f.identification(), f.fragment_offset().value() == 0, p6.payload))
                        }
                        _ => None,
                    })
                });
                let frag = frag.flatten().or(p6.fragmented.then_some((0, false, p6.payload)));
                (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()), p6.ip_number.0, len, frag)
            }
            Some(LaxNetSlice::Arp(_)) => {
                self.other.arp = self.other.arp.saturating_add(weight);
                return None;
            }
            // No network layer: a frame of another protocol, or one whose IP header was cut
            // or malformed (the decoder stopped with an error there).
            None if s.stop_err.is_some() => {
                self.other.undecodable = self.other.undecodable.saturating_add(weight);
                return None;
            }
            None => {
                self.other.non_ip = self.other.non_ip.saturating_add(weight);
                return None;
            }
        };
        // An IP length past what the frame carried on the wire (a 64-byte frame whose header
        // says 65,535) counts only what the frame could hold after its headers: where the IP
        // payload starts in the captured bytes, measured against the frame's wire length. A
        // length of 0 (segmentation offload) is all of that.
        let ip_payload_len = {
            let start = match &s.net {
                Some(LaxNetSlice::Ipv4(v4)) => Some(v4.payload().payload.as_ptr()),
                Some(LaxNetSlice::Ipv6(v6)) => Some(v6.payload().payload.as_ptr()),
                _ => None,
            };
            match start {
                Some(at) => {
                    let off = (at as usize).saturating_sub(p.data.as_ptr() as usize) as u64;
                    ip_payload_len.min(u64::from(p.wire_len).saturating_sub(off))
                }
                None => ip_payload_len,
            }
        };
        if let Some((id, first, payload)) = frag {
            self.add_fragment(p, weight, wire, (src, dst, proto, id), first, payload, ip_payload_len);
            return None;
        }
        let (sport, dport) = match &s.transport {
            Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
            Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
            _ => (0, 0),
        };
        let key = FlowKey { src, dst, proto, sport, dport };
        let other = match &s.transport {
            Some(TransportSlice::Tcp(t)) if analyse => {
                self.tcp_other_side(&key, t.syn() && !t.ack(), t.sequence_number())
            }
            _ => OtherSide::default(),
        };
        let f = self.count(key, p.ts_ns, weight, wire);
        match &s.transport {
            Some(TransportSlice::Tcp(t)) => {
                let hdr = u64::from(t.data_offset()) * 4;
                let seg = ip_payload_len.saturating_sub(hdr);
                f.payload_bytes = f.payload_bytes.saturating_add(seg.saturating_mul(weight));
                if !analyse {
                    return None;
                }
                let st = f.tcp.get_or_insert_with(TcpStats::default);
                let (syn, fin, rst) = (t.syn(), t.fin(), t.rst());
                st.syn |= syn;
                st.fin |= fin;
                st.rst |= rst;
                let (seq, ack, win) = (t.sequence_number(), t.acknowledgment_number(), t.window_size());
                let control = syn || fin || rst;
                let q = &mut st.seq;
                if other.new_session {
                    *q = SeqState::default();
                }
                if q.base.is_none() {
                    q.base = Some(if syn { seq } else { seq.wrapping_sub(1) });
                }
                let at_next = q.next == Some(seq);
                // A zero-window probe: one byte at the next expected one into a closed window.
                let probe = seg == 1 && at_next && other.window == Some(0);
                // A keep-alive: one byte (or none) just below the next expected one.
                let keepalive = !probe && seg <= 1 && !control && q.next.is_some_and(|n| seq == n.wrapping_sub(1));
                if !probe {
                    if win == 0 && !control {
                        st.zero_windows += 1;
                    }
                    // The same acknowledgement and open window again, at the next expected
                    // sequence number; a keep-alive's answer is not one.
                    let repeat =
                        seg == 0 && !control && win != 0 && at_next && q.window == Some(win) && q.ack == Some(ack);
                    if repeat && !other.keepalive {
                        st.dup_acks += 1;
                    }
                }
                if (seg > 0 || syn || fin) && !keepalive {
                    // Wireshark's test: the segment starts before the next expected byte (all
                    // of it sent before, or only its start: a partial overlap), unless it
                    // carries more than a byte from one below it (resent from a probed byte).
                    let from_probe = seg > 1 && q.next.is_some_and(|n| seq == n.wrapping_sub(1));
                    if q.next.is_some_and(|n| seq_after(n, seq)) && !from_probe {
                        st.retransmissions += 1;
                    }
                }
                let end = seq.wrapping_add(seg as u32).wrapping_add(u32::from(syn || fin));
                if !probe && q.next.is_none_or(|n| seq_after(end, n)) {
                    q.next = Some(end);
                }
                q.ack = Some(ack);
                q.window = Some(win);
                q.keepalive = keepalive;
            }
            Some(TransportSlice::Udp(u)) => {
                let payload = u.payload();
                // The UDP length, at most what the IP payload (as the wire carried it) holds; 0
                // in an IPv6 jumbogram above 65,535 bytes (RFC 2675): the IP payload's.
                let udp = match u.length() {
                    0 if src.is_ipv6() && ip_payload_len > 0xffff => ip_payload_len,
                    n => u64::from(n).min(ip_payload_len),
                }
                .saturating_sub(8);
                f.payload_bytes = f.payload_bytes.saturating_add(udp.saturating_mul(weight));
                if !analyse {
                    return None;
                }
                if dport == ROCEV2_PORT {
                    let r = f.roce.get_or_insert_with(RoceStats::default);
                    r.ecn_ce += u64::from(ce);
                    if payload.len() >= 12 {
                        r.sequence(payload);
                    }
                    match payload.first() {
                        Some(0x81) => r.cnps += 1,
                        Some(0x11) => match payload.get(12).map(|s| s >> 5) {
                            Some(0b000) => r.acks += 1,
                            Some(0b001) => r.rnr_naks += 1,
                            Some(0b011) => r.naks += 1,
                            _ => {}
                        },
                        _ => {}
                    }
                }
                return Some(Datagram { src, dport, payload });
            }
            _ => f.payload_bytes = f.payload_bytes.saturating_add(ip_payload_len.saturating_mul(weight)),
        }
        None
    }

    /// Adds a fragment to its datagram's flow: the first carries the ports (TCP and UDP),
    /// later ones take them from it. Fragments are counted, not analysed (no TCP or RoCEv2
    /// trouble, no telemetry).
    #[allow(clippy::too_many_arguments)]
    fn add_fragment(
        &mut self,
        p: &Packet<'_>,
        weight: u64,
        wire: u64,
        dgram: (IpAddr, IpAddr, u8, u32),
        first: bool,
        payload: &[u8],
        ip_payload_len: u64,
    ) {
        let (src, dst, proto, _) = dgram;
        let ported = proto == 6 || proto == 17;
        let (ports, header) = if first {
            let ports = match payload {
                [a, b, c, d, ..] if ported => (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
                _ => (0, 0),
            };
            if ported {
                if self.fragmented.len() >= MAX_FRAGMENTED {
                    self.fragmented.clear();
                }
                self.fragmented.insert(dgram, ports);
            }
            let header = match proto {
                17 => 8,
                6 => payload.get(12).map_or(20, |b| u64::from(b >> 4) * 4),
                _ => 0,
            };
            (ports, header)
        } else {
            let ports = self.fragmented.get(&dgram).copied();
            if ports.is_none() && ported {
                self.other.orphan_fragments = self.other.orphan_fragments.saturating_add(weight);
            }
            (ports.unwrap_or((0, 0)), 0)
        };
        let key = FlowKey { src, dst, proto, sport: ports.0, dport: ports.1 };
        let f = self.count(key, p.ts_ns, weight, wire);
        f.payload_bytes = f.payload_bytes.saturating_add(ip_payload_len.saturating_sub(header).saturating_mul(weight));
    }

    /// What a TCP segment of `key` at `seq` (a SYN without ACK: `pure_syn`) needs from the
    /// other direction. A pure SYN at another initial sequence number than its direction's
    /// starts a new connection on the same ports: the other direction's sequence state starts
    /// again too.
    fn tcp_other_side(&mut self, key: &FlowKey, pure_syn: bool, seq: u32) -> OtherSide {
        let base = self.table.get(key).and_then(|f| f.tcp.as_ref()).and_then(|t| t.seq.base);
        let new_session = pure_syn && base.is_some_and(|b| b != seq);
        let rev = FlowKey { src: key.dst, dst: key.src, proto: key.proto, sport: key.dport, dport: key.sport };
        match self.table.get_mut(&rev).and_then(|f| f.tcp.as_mut()) {
            Some(r) => {
                if new_session {
                    r.seq = SeqState::default();
                }
                OtherSide { new_session, window: r.seq.window, keepalive: r.seq.keepalive }
            }
            None => OtherSide { new_session, ..OtherSide::default() },
        }
    }

    /// The flow of `key`, made at its first packet, with a packet (of `weight` and `wire`
    /// bytes) at `ts_ns` counted.
    fn count(&mut self, key: FlowKey, ts_ns: u64, weight: u64, wire: u64) -> &mut Flow {
        let f = self.table.entry(key).or_insert_with(|| Flow {
            key,
            packets: 0,
            bytes: 0,
            payload_bytes: 0,
            first_ns: ts_ns,
            last_ns: ts_ns,
            tcp: None,
            roce: None,
        });
        f.packets = f.packets.saturating_add(weight);
        f.bytes = f.bytes.saturating_add(wire);
        f.first_ns = f.first_ns.min(ts_ns);
        f.last_ns = f.last_ns.max(ts_ns);
        f
    }

    /// The flows, largest first (ties by key, so the order is deterministic).
    pub fn sorted(&self) -> Vec<&Flow> {
        let mut v: Vec<&Flow> = self.table.values().collect();
        v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.key.cmp(&b.key)));
        v
    }
}

/// The Jumbo Payload option's length (RFC 2675: everything after the IPv6 header) in the
/// hop-by-hop options header at the start of `ext`, if it has one.
fn jumbo_payload(ext: &[u8]) -> Option<u32> {
    let len = (usize::from(*ext.get(1)?) + 1) * 8;
    let opts = ext.get(2..len.min(ext.len()))?;
    let mut at = 0;
    while let Some(&typ) = opts.get(at) {
        // Pad1 is a lone byte; other options are type, length, data.
        if typ == 0 {
            at += 1;
            continue;
        }
        let n = usize::from(*opts.get(at + 1)?);
        if typ == 0xc2 && n == 4 {
            return Some(u32::from_be_bytes(opts.get(at + 2..at + 6)?.try_into().ok()?));
        }
        at += 2 + n;
    }
    None
}

/// Linux cooked captures: the IP packet after a `hdr`-byte header whose protocol type is at
/// `proto_at` (SLL: 14; SLL2: 0).
fn ip_after(data: &[u8], hdr: usize, proto_at: usize) -> Option<LaxSlicedPacket<'_>> {
    let proto = u16::from_be_bytes([*data.get(proto_at)?, *data.get(proto_at + 1)?]);
    if proto != 0x0800 && proto != 0x86dd {
        return None;
    }
    LaxSlicedPacket::from_ip(data.get(hdr..)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_space_wraps() {
        assert!(seq_after(5, 1));
        assert!(!seq_after(1, 5));
        assert!(seq_after(3, u32::MAX - 2), "wraps");
        assert!(!seq_after(7, 7));
    }
}
