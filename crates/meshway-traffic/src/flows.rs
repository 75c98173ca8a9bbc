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
//! - The table holds at most `max_flows` flows ([`DEFAULT_MAX_FLOWS`] unless told), in the
//!   order their first packets came. A packet of a flow it has no room for is counted without
//!   a flow entry ([`Beyond`]): in the totals, by protocol and scope, per GPU, between leaves
//!   and sites, and its RoCEv2 signals; its distinct flows are counted too.

use crate::capture::{self, Packet};
use crate::places::{Classifier, Scope};
use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use hashbrown::HashTable;
use serde::Serialize;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
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
    /// TCP and RoCEv2 analysis, boxed: most flows have neither, and a flow without them
    /// takes 96 bytes instead of 240.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Box<TcpStats>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roce: Option<Box<RoceStats>>,
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

/// Flows the table holds unless told otherwise (`--max-flows`; an assumption). A flow takes
/// about 120 bytes at the peak (measured on one-packet UDP flows: 96 of [`Flow`], its index
/// slot, and the analysis's list of them), 200 with TCP analysis (its boxed state): a million
/// flows peaked at 127 MB resident (205 MB of TCP flows), where 5 million one-packet flows
/// took 3.5 GB before there was a limit.
pub const DEFAULT_MAX_FLOWS: usize = 1_000_000;

/// Flows in the order their first packets came, found by key through a hash table of
/// indices into them (4 bytes a slot): growing it moves indices, not flows.
#[derive(Debug, Default)]
pub struct FlowTable {
    flows: Vec<Flow>,
    index: HashTable<u32>,
    hasher: RandomState,
}

impl FlowTable {
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The flows, in the order their first packets came.
    pub fn values(&self) -> std::slice::Iter<'_, Flow> {
        self.flows.iter()
    }

    fn find(&self, key: &FlowKey, hash: u64) -> Option<usize> {
        self.index.find(hash, |&i| self.flows[i as usize].key == *key).map(|&i| i as usize)
    }

    pub fn get(&self, key: &FlowKey) -> Option<&Flow> {
        self.find(key, self.hasher.hash_one(key)).map(|i| &self.flows[i])
    }

    fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Flow> {
        self.find(key, self.hasher.hash_one(key)).map(|i| &mut self.flows[i])
    }

    /// The flow of `key`, made by `new` when the table holds fewer than `max` flows; `None`
    /// when it is not in the table and there is no room for it.
    fn entry(&mut self, key: FlowKey, max: usize, new: impl FnOnce() -> Flow) -> Option<&mut Flow> {
        let hash = self.hasher.hash_one(key);
        if let Some(i) = self.find(&key, hash) {
            return Some(&mut self.flows[i]);
        }
        let n = self.flows.len();
        if n >= max {
            return None;
        }
        let (flows, hasher) = (&self.flows, &self.hasher);
        let rehash = |&i: &u32| hasher.hash_one(flows[i as usize].key);
        // Near the limit, grow to it at once rather than doubling past it.
        if n == self.index.capacity() && n.saturating_mul(2) > max {
            self.index.reserve(max - n, rehash);
        }
        self.index.insert_unique(hash, n as u32, rehash);
        if n == self.flows.capacity() && n.saturating_mul(2) > max {
            self.flows.reserve_exact(max - n);
        }
        self.flows.push(new());
        self.flows.last_mut()
    }
}

/// Distinct keys exact (by their 64-bit hashes) up to this many, then estimated.
const EXACT_DISTINCT: usize = 65_536;
/// HyperLogLog registers: 2^16 (64 KB), a standard error of 1.04 / 2^8 = 0.4%.
const HLL_BITS: u32 = 16;

/// Distinct flows counted without keeping them: exactly up to [`EXACT_DISTINCT`], then by
/// HyperLogLog (Flajolet, Fusy, Gandouet and Meunier, 2007; linear counting while the
/// estimate is below 2.5 times the registers, as they give it).
#[derive(Debug, Clone, Default)]
struct Distinct {
    seen: HashSet<u64>,
    estimated: bool,
    registers: Vec<u8>,
}

impl Distinct {
    fn add(&mut self, hash: u64) {
        if self.registers.is_empty() {
            self.registers = vec![0; 1 << HLL_BITS];
        }
        let j = (hash >> (64 - HLL_BITS)) as usize;
        // The position of the first 1 bit after the register's bits (a guard bit caps it).
        let rho = ((hash << HLL_BITS) | (1 << (HLL_BITS - 1))).leading_zeros() as u8 + 1;
        self.registers[j] = self.registers[j].max(rho);
        if !self.estimated {
            self.seen.insert(hash);
            if self.seen.len() > EXACT_DISTINCT {
                self.estimated = true;
                self.seen = HashSet::new();
            }
        }
    }

    /// The count, and whether it is an estimate.
    fn count(&self) -> (u64, bool) {
        if !self.estimated {
            return (self.seen.len() as u64, false);
        }
        let m = f64::from(1u32 << HLL_BITS);
        let (sum, zeros) = self
            .registers
            .iter()
            .fold((0.0, 0u32), |(s, z), &r| (s + 0.5f64.powi(i32::from(r)), z + u32::from(r == 0)));
        let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / sum;
        let e = if raw <= 2.5 * m && zeros > 0 { m * (m / f64::from(zeros)).ln() } else { raw };
        (e.round() as u64, true)
    }
}

/// A flow key's 64-bit hash, the same in every run (splitmix64's finalizer over its fields).
fn key_hash(k: &FlowKey) -> u64 {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let ip = |a: IpAddr| match a {
        IpAddr::V4(v) => (u128::from(u32::from(v)), 4u64),
        IpAddr::V6(v) => (u128::from(v), 6),
    };
    let ((s, family), (d, _)) = (ip(k.src), ip(k.dst));
    let ports = (family << 40) | (u64::from(k.proto) << 32) | (u64::from(k.sport) << 16) | u64::from(k.dport);
    [s as u64, (s >> 64) as u64, d as u64, (d >> 64) as u64, ports].iter().fold(0, |h, &w| mix(h ^ w))
}

/// Packets of flows the table had no room for: counted without flow entries, in what the
/// report can say without one.
#[derive(Debug, Clone, Default)]
pub struct Beyond {
    pub packets: u64,
    pub bytes: u64,
    pub payload_bytes: u64,
    /// Bytes by protocol and scope.
    pub by_class: BTreeMap<(&'static str, Scope), u64>,
    /// Bytes sent and received per GPU address (of the classifier's address plan).
    pub gpus: HashMap<IpAddr, (u64, u64)>,
    /// Bytes from leaf to leaf and from site to site, as indices into the plan's sorted
    /// leaf and site names.
    pub leaves: HashMap<(u32, u32), u64>,
    pub sites: HashMap<(u32, u32), u64>,
    /// RoCEv2 ACKs, NAKs, RNR NAKs, CNPs and CE marks (a PSN sequence needs its flow).
    pub roce: RoceStats,
    distinct: Distinct,
}

impl Beyond {
    /// Distinct flows, and whether that is an estimate (past 65,536: HyperLogLog, 0.4%).
    pub fn flows(&self) -> (u64, bool) {
        self.distinct.count()
    }
}

/// The flow table.
#[derive(Debug)]
pub struct Flows {
    pub table: FlowTable,
    /// Ports of fragmented datagrams by (source, destination, protocol, IP identification),
    /// from their first fragment: later fragments carry no transport header.
    fragmented: HashMap<(IpAddr, IpAddr, u8, u32), (u16, u16)>,
    pub other: Other,
    pub packets: u64,
    pub bytes: u64,
    pub first_ns: Option<u64>,
    pub last_ns: u64,
    /// The most flows the table holds.
    max_flows: usize,
    /// Where the ends of a flow beyond the table are (its scope, GPUs, leaves and sites).
    classifier: Classifier,
    /// Packets of flows the table had no room for.
    pub beyond: Beyond,
}

impl Default for Flows {
    fn default() -> Flows {
        Flows::with_limit(DEFAULT_MAX_FLOWS, Classifier::default())
    }
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
    /// A table of at most [`DEFAULT_MAX_FLOWS`] flows; flows beyond it are counted with no
    /// internal prefixes and no address plan (all external).
    pub fn new() -> Flows {
        Flows::default()
    }

    /// A table of at most `max_flows` flows (at least 1, at most 2^32 - 1); packets of flows
    /// beyond it are placed by `classifier`, which should be made from the prefixes and
    /// address plan the table will be analysed with.
    pub fn with_limit(max_flows: usize, classifier: Classifier) -> Flows {
        Flows {
            table: FlowTable::default(),
            fragmented: HashMap::new(),
            other: Other::default(),
            packets: 0,
            bytes: 0,
            first_ns: None,
            last_ns: 0,
            max_flows: max_flows.clamp(1, u32::MAX as usize),
            classifier,
            beyond: Beyond::default(),
        }
    }

    /// The most flows the table holds.
    pub fn max_flows(&self) -> usize {
        self.max_flows
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
        let new = || Flow { packets: 0, bytes: 0, payload_bytes: 0, ..r.clone() };
        let Some(f) = self.table.entry(r.key, self.max_flows, new) else {
            self.count_beyond(&r.key, r.packets, r.bytes, r.payload_bytes);
            return;
        };
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
        // The transport payload: a TCP segment's, a UDP datagram's (its length, at most what
        // the IP payload as the wire carried it holds; 0 in an IPv6 jumbogram above 65,535
        // bytes, RFC 2675: the IP payload's), or the IP payload.
        let seg = match &s.transport {
            Some(TransportSlice::Tcp(t)) => ip_payload_len.saturating_sub(u64::from(t.data_offset()) * 4),
            Some(TransportSlice::Udp(u)) => match u.length() {
                0 if src.is_ipv6() && ip_payload_len > 0xffff => ip_payload_len,
                n => u64::from(n).min(ip_payload_len),
            }
            .saturating_sub(8),
            _ => ip_payload_len,
        };
        let udp = match &s.transport {
            Some(TransportSlice::Udp(u)) => Some(Datagram { src, dport, payload: u.payload() }),
            _ => None,
        };
        let Some(f) = self.count(key, p.ts_ns, weight, wire, seg.saturating_mul(weight)) else {
            self.count_beyond(&key, weight, wire, seg.saturating_mul(weight));
            if !analyse {
                return None;
            }
            if let Some(d) = udp.filter(|_| dport == ROCEV2_PORT) {
                roce_signals(&mut self.beyond.roce, ce, d.payload);
            }
            return udp;
        };
        let Some(TransportSlice::Tcp(t)) = &s.transport else {
            if !analyse {
                return None;
            }
            if let Some(d) = udp.filter(|_| dport == ROCEV2_PORT) {
                let r = f.roce.get_or_insert_with(Box::default);
                if d.payload.len() >= 12 {
                    r.sequence(d.payload);
                }
                roce_signals(r, ce, d.payload);
            }
            return udp;
        };
        if !analyse {
            return None;
        }
        let st = f.tcp.get_or_insert_with(Box::default);
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
            let repeat = seg == 0 && !control && win != 0 && at_next && q.window == Some(win) && q.ack == Some(ack);
            if repeat && !other.keepalive {
                st.dup_acks += 1;
            }
        }
        if (seg > 0 || syn || fin) && !keepalive {
            // Wireshark's test: the segment starts before the next expected byte (all of it
            // sent before, or only its start: a partial overlap), unless it carries more than
            // a byte from one below it (resent from a probed byte).
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
        let payload = ip_payload_len.saturating_sub(header).saturating_mul(weight);
        if self.count(key, p.ts_ns, weight, wire, payload).is_none() {
            self.count_beyond(&key, weight, wire, payload);
        }
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

    /// The flow of `key`, made at its first packet, with a packet (of `weight`, `wire` bytes
    /// and `payload` bytes) at `ts_ns` counted; `None` when the table has no room for it.
    fn count(&mut self, key: FlowKey, ts_ns: u64, weight: u64, wire: u64, payload: u64) -> Option<&mut Flow> {
        let new = || Flow {
            key,
            packets: 0,
            bytes: 0,
            payload_bytes: 0,
            first_ns: ts_ns,
            last_ns: ts_ns,
            tcp: None,
            roce: None,
        };
        let f = self.table.entry(key, self.max_flows, new)?;
        f.packets = f.packets.saturating_add(weight);
        f.bytes = f.bytes.saturating_add(wire);
        f.payload_bytes = f.payload_bytes.saturating_add(payload);
        f.first_ns = f.first_ns.min(ts_ns);
        f.last_ns = f.last_ns.max(ts_ns);
        Some(f)
    }

    /// Counts `packets` packets (`wire` and `payload` bytes) of a flow the table has no room
    /// for: in the totals beyond it, by protocol and scope, per GPU and between leaves and
    /// sites.
    fn count_beyond(&mut self, key: &FlowKey, packets: u64, wire: u64, payload: u64) {
        let b = &mut self.beyond;
        b.packets = b.packets.saturating_add(packets);
        b.bytes = b.bytes.saturating_add(wire);
        b.payload_bytes = b.payload_bytes.saturating_add(payload);
        b.distinct.add(key_hash(key));
        let (scope, src, dst) = self.classifier.ends(key.src, key.dst);
        let add = |v: &mut u64| *v = v.saturating_add(wire);
        add(b.by_class.entry((key.protocol_name(), scope)).or_default());
        if src.is_some() {
            add(&mut b.gpus.entry(key.src).or_default().0);
        }
        if dst.is_some() {
            add(&mut b.gpus.entry(key.dst).or_default().1);
        }
        if let (Some(x), Some(y)) = (src, dst) {
            add(b.leaves.entry((x.leaf, y.leaf)).or_default());
            add(b.sites.entry((x.site, y.site)).or_default());
        }
    }

    /// The flows, largest first (ties by key, so the order is deterministic).
    pub fn sorted(&self) -> Vec<&Flow> {
        let mut v: Vec<&Flow> = self.table.values().collect();
        v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.key.cmp(&b.key)));
        v
    }
}

/// The RoCEv2 signals of one packet to port 4791 (`payload`: from its BTH on): a CNP, or an
/// RC Acknowledge's AETH syndrome (ACK, RNR NAK, NAK); and a Congestion Experienced mark.
fn roce_signals(r: &mut RoceStats, ce: bool, payload: &[u8]) {
    r.ecn_ce += u64::from(ce);
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
    fn a_flow_without_tcp_or_rocev2_analysis_takes_96_bytes() {
        // The key (40), five counts and times, two boxes: what DEFAULT_MAX_FLOWS assumes.
        assert_eq!(std::mem::size_of::<Flow>(), 96);
    }

    #[test]
    fn sequence_space_wraps() {
        assert!(seq_after(5, 1));
        assert!(!seq_after(1, 5));
        assert!(seq_after(3, u32::MAX - 2), "wraps");
        assert!(!seq_after(7, 7));
    }
}
