//! Packets into unidirectional flows (the 5-tuple, as NetFlow/IPFIX count them), with TCP
//! analysis as Wireshark's `tcp.analysis` flags define it and RoCEv2 signals from the
//! InfiniBand transport headers.
//!
//! - A flow's bytes are frame bytes on the wire (Ethernet header and all), its payload the
//!   transport payload.
//! - TCP retransmission: a segment carrying data (or SYN/FIN) that ends at or before the
//!   highest sequence already seen in its direction and is not a keep-alive. Out-of-order
//!   arrivals count here too (Wireshark separates them with an RTT estimate; meshway does not).
//! - Duplicate ACK: no data, no SYN/FIN/RST, the same acknowledgement number and window as the
//!   previous segment in its direction.
//! - Zero window: a window of 0 on a segment without SYN/FIN/RST.
//! - RoCEv2: UDP to port 4791 (IANA). The Base Transport Header's opcode (InfiniBand
//!   Architecture Specification vol. 1, 9.2): 0x11 RC Acknowledge with the AETH syndrome
//!   (bits 7-5: 000 ACK, 001 RNR NAK, 011 NAK) and 0x81 CNP (RoCEv2 Annex A17, congestion
//!   notification packet).

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
    #[serde(skip)]
    next_seq: Option<u32>,
    #[serde(skip)]
    last_ack: Option<(u32, u16)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RoceStats {
    pub acks: u64,
    pub naks: u64,
    pub rnr_naks: u64,
    pub cnps: u64,
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
        let (src, dst, proto, ip_payload_len, frag) = match &s.net {
            Some(LaxNetSlice::Ipv4(v4)) => {
                let h = v4.header();
                let len = h.payload_len().map(u64::from).unwrap_or(v4.payload().payload.len() as u64);
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
                // slice is shorter when the snap length cut the packet. 0 is a jumbogram.
                let ext = v6.extensions().slice().len() as u64;
                let len = match u64::from(h.payload_length()) {
                    0 => p6.payload.len() as u64,
                    n => n.saturating_sub(ext),
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
        // payload starts in the captured bytes, measured against the frame's wire length.
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
                let seq = t.sequence_number();
                let span = seg as u32 + u32::from(syn) + u32::from(fin);
                if span > 0 {
                    let end = seq.wrapping_add(span);
                    match st.next_seq {
                        // Wireshark's test: the segment starts before the next expected byte
                        // (all of it sent before, or only its start: a partial overlap).
                        Some(next) if seq_after(next, seq) => {
                            // A keep-alive: one byte (or none) just below what was sent.
                            let keepalive = seg <= 1 && seq.wrapping_add(1) == next && !syn && !fin;
                            if !keepalive {
                                st.retransmissions += 1;
                            }
                            if seq_after(end, next) {
                                st.next_seq = Some(end);
                            }
                        }
                        // At the next byte (a window probe too) or past it (a gap).
                        _ => st.next_seq = Some(end),
                    }
                }
                if t.ack() && !syn && !fin && !rst {
                    let ack = (t.acknowledgment_number(), t.window_size());
                    if seg == 0 && st.last_ack == Some(ack) {
                        st.dup_acks += 1;
                    }
                    st.last_ack = Some(ack);
                }
                if t.window_size() == 0 && !syn && !fin && !rst {
                    st.zero_windows += 1;
                }
            }
            Some(TransportSlice::Udp(u)) => {
                let payload = u.payload();
                // The UDP length, at most what the IP payload (as the wire carried it) holds.
                let udp = u64::from(u.length()).min(ip_payload_len).saturating_sub(8);
                f.payload_bytes = f.payload_bytes.saturating_add(udp.saturating_mul(weight));
                if !analyse {
                    return None;
                }
                if dport == ROCEV2_PORT {
                    let r = f.roce.get_or_insert_with(RoceStats::default);
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
