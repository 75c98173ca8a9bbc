//! Flow telemetry carried inside a capture: sFlow version 5 datagrams (UDP 6343) and IPFIX
//! messages (UDP 4739), decoded into an estimated flow table.
//!
//! - sFlow v5 (sFlow.org, "sFlow Version 5", July 2004; XDR, big-endian, 4-byte aligned): the
//!   datagram header (version 5, agent address, sub-agent, sequence, uptime, sample count),
//!   flow samples (format 1) and expanded flow samples (format 3) with their sampling rate,
//!   and in them raw packet header records (format 1: header protocol 1 Ethernet, 11 IPv4,
//!   12 IPv6; frame length; stripped; the header bytes). Each sampled header stands for
//!   `sampling rate` frames of its frame length. Counter samples are counted and skipped. A
//!   flow sample whose sampling rate is 0, or a record whose frame length is over 1 MiB or
//!   shorter than its header, is malformed.
//! - IPFIX (RFC 7011): message header (version 10), template sets (set id 2) kept per
//!   exporter, observation domain and template id, data sets decoded with them; fields
//!   (IANA IPFIX information elements): 1 octetDeltaCount, 2 packetDeltaCount,
//!   4 protocolIdentifier, 7 sourceTransportPort, 8 sourceIPv4Address, 11
//!   destinationTransportPort, 12 destinationIPv4Address, 27/28 IPv6 addresses, 150/151
//!   flowStart/EndSeconds, 152/153 flowStart/EndMilliseconds; others skipped, variable-length
//!   fields and enterprise fields included. A record with neither is placed at its message's
//!   capture time. A template with no fields withdraws that template (RFC 7011 section 8.1).
//!   A data set whose template has not been seen is counted and skipped. IPFIX octet counts
//!   include the IP and transport headers; a record's payload is estimated as its octets less
//!   `packets` of those headers (20 + 20 for TCP over IPv4, 20 + 8 for UDP; 40 for IPv6).
//!   A record is malformed when its octets are over 2^50, outside 20 octets to 1 MiB per
//!   packet, or above 0 where it counts 0 packets.
//!
//! Malformed input stops the decoding of that datagram and is counted, never a panic;
//! templates and records outside the bounds below are refused and counted as malformed.

use crate::capture::{Packet, LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6};
use crate::flows::{Flow, FlowKey, Flows};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

pub const SFLOW_PORT: u16 = 6343;
pub const IPFIX_PORT: u16 = 4739;

/// The most fields an IPFIX template may list (an assumption: IANA defines about 500
/// information elements); a longer template is malformed.
pub const MAX_TEMPLATE_FIELDS: usize = 512;
/// A template may list at most this many fields per byte of its shortest record (fixed
/// lengths, a byte per variable-length field), so decoding a message reads at most four
/// fields per byte of it: zero-length fields cannot make a 1-byte record walk thousands.
pub const MAX_FIELDS_PER_BYTE: usize = 4;
/// Templates kept in all, over every exporter and observation domain (an assumption: past
/// it a new template is malformed), so that memory stays bounded.
pub const MAX_TEMPLATES: usize = 16_384;
/// The most octets one IPFIX record may count: 2^50 (1.1 PB, an assumption: an hour and a
/// half of a 1.6 Tbit/s link at line rate); a record claiming more is corrupt.
pub const MAX_RECORD_OCTETS: u64 = 1 << 50;
/// The fewest octets a packet counts (an IPv4 header): a record claiming fewer per packet, or
/// more than a capture's longest frame (1 MiB) per packet, is corrupt.
pub const MIN_PACKET_OCTETS: u64 = 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExportStats {
    pub sflow_datagrams: u64,
    pub sflow_flow_samples: u64,
    pub sflow_counter_samples: u64,
    pub ipfix_messages: u64,
    pub ipfix_records: u64,
    pub ipfix_unknown_template_sets: u64,
    pub malformed: u64,
    /// Exporter addresses seen.
    pub agents: BTreeSet<IpAddr>,
}

/// A template's fields (information element, length), shared by the data sets that use it.
type Template = Arc<[(u16, u16)]>;

/// The estimated flow table and what fed it.
#[derive(Debug, Default)]
pub struct Exported {
    pub flows: Flows,
    pub stats: ExportStats,
    templates: HashMap<(IpAddr, u32, u16), Template>,
}

struct Rd<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Rd<'a> {
    fn u32(&mut self) -> Option<u32> {
        let v = u32::from_be_bytes(self.b.get(self.i..self.i + 4)?.try_into().ok()?);
        self.i += 4;
        Some(v)
    }
    fn u16(&mut self) -> Option<u16> {
        let v = u16::from_be_bytes(self.b.get(self.i..self.i + 2)?.try_into().ok()?);
        self.i += 2;
        Some(v)
    }
    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.i)?;
        self.i += 1;
        Some(v)
    }
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let v = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(v)
    }
    /// XDR opaque: `n` bytes padded to 4.
    fn opaque(&mut self, n: usize) -> Option<&'a [u8]> {
        let v = self.bytes(n)?;
        self.i += (4 - n % 4) % 4;
        Some(v)
    }
}

/// The length of a template's shortest record: its fixed lengths, a length byte per
/// variable-length field.
fn shortest(fields: &[(u16, u16)]) -> usize {
    fields.iter().map(|f| if f.1 == 65535 { 1 } else { usize::from(f.1) }).sum()
}

fn uint(b: &[u8]) -> u64 {
    b.iter().take(8).fold(0u64, |a, &x| (a << 8) | u64::from(x))
}

impl Exported {
    pub fn new() -> Exported {
        Exported::default()
    }

    /// Offers one UDP datagram seen in the capture (source address, destination port,
    /// payload, capture time); returns whether it was flow telemetry.
    pub fn offer(&mut self, src: IpAddr, dport: u16, payload: &[u8], ts_ns: u64) -> bool {
        match dport {
            SFLOW_PORT => {
                if self.sflow(payload, ts_ns).is_none() {
                    self.stats.malformed += 1;
                }
                true
            }
            IPFIX_PORT => {
                if self.ipfix(src, payload, ts_ns).is_none() {
                    self.stats.malformed += 1;
                }
                true
            }
            _ => false,
        }
    }

    fn sflow(&mut self, b: &[u8], ts_ns: u64) -> Option<()> {
        let mut r = Rd { b, i: 0 };
        if r.u32()? != 5 {
            return None;
        }
        let agent = match r.u32()? {
            1 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(r.bytes(4)?).ok()?)),
            2 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(r.bytes(16)?).ok()?)),
            _ => return None,
        };
        self.stats.agents.insert(agent);
        self.stats.sflow_datagrams += 1;
        let (_sub, _seq, _uptime) = (r.u32()?, r.u32()?, r.u32()?);
        let n = r.u32()?;
        for _ in 0..n.min(10_000) {
            let format = r.u32()?;
            let len = r.u32()? as usize;
            let body = r.opaque(len)?;
            match format & 0xfff {
                1 | 3 if format >> 12 == 0 => {
                    self.stats.sflow_flow_samples += 1;
                    self.flow_sample(body, format & 0xfff == 3, ts_ns)?;
                }
                2 | 4 if format >> 12 == 0 => self.stats.sflow_counter_samples += 1,
                _ => {}
            }
        }
        Some(())
    }

    fn flow_sample(&mut self, b: &[u8], expanded: bool, ts_ns: u64) -> Option<()> {
        let mut r = Rd { b, i: 0 };
        r.u32()?; // sequence
        if expanded {
            r.u32()?;
            r.u32()?;
        } else {
            r.u32()?;
        }
        // A sampling rate of 0 stands for no frames: the sample is corrupt, not one frame.
        let rate = r.u32()?;
        if rate == 0 {
            self.stats.malformed += 1;
            return Some(());
        }
        let (_pool, _drops) = (r.u32()?, r.u32()?);
        if expanded {
            for _ in 0..4 {
                r.u32()?;
            }
        } else {
            r.u32()?;
            r.u32()?;
        }
        let n = r.u32()?;
        for _ in 0..n.min(1_000) {
            let format = r.u32()?;
            let len = r.u32()? as usize;
            let rec = r.opaque(len)?;
            if format != 1 {
                continue;
            }
            let mut h = Rd { b: rec, i: 0 };
            let proto = h.u32()?;
            let frame_len = h.u32()?;
            let _stripped = h.u32()?;
            let hl = h.u32()? as usize;
            let header = h.bytes(hl)?;
            // The same bounds as a capture's wire lengths: a frame longer than 1 MiB, or
            // shorter than the header sampled from it, is a corrupt record.
            if frame_len > crate::capture::MAX_WIRE_LEN || (frame_len as usize) < hl {
                self.stats.malformed += 1;
                continue;
            }
            let linktype = match proto {
                1 => LINKTYPE_ETHERNET,
                11 => LINKTYPE_IPV4,
                12 => LINKTYPE_IPV6,
                _ => continue,
            };
            let p = Packet { ts_ns, wire_len: frame_len, linktype, data: header };
            self.flows.add_sampled(&p, u64::from(rate));
        }
        Some(())
    }

    fn ipfix(&mut self, src: IpAddr, b: &[u8], ts_ns: u64) -> Option<()> {
        let mut r = Rd { b, i: 0 };
        if r.u16()? != 10 {
            return None;
        }
        let len = (r.u16()? as usize).min(b.len());
        let (_export_time, _seq, domain) = (r.u32()?, r.u32()?, r.u32()?);
        self.stats.agents.insert(src);
        self.stats.ipfix_messages += 1;
        while r.i + 4 <= len {
            let set_id = r.u16()?;
            let set_len = r.u16()? as usize;
            if set_len < 4 {
                return None;
            }
            let body = r.bytes(set_len - 4)?;
            match set_id {
                2 => {
                    let mut t = Rd { b: body, i: 0 };
                    while t.i + 4 <= body.len() {
                        let id = t.u16()?;
                        let count = t.u16()?;
                        if count == 0 {
                            // A withdrawal: the template is gone; id 2 (the template set's
                            // own) withdraws them all (RFC 7011 section 8.1).
                            if id == 2 {
                                self.templates.retain(|k, _| (k.0, k.1) != (src, domain));
                            } else {
                                self.templates.remove(&(src, domain, id));
                            }
                            continue;
                        }
                        let mut fields = Vec::with_capacity(usize::from(count).min(MAX_TEMPLATE_FIELDS));
                        for _ in 0..count {
                            let ie = t.u16()?;
                            let flen = t.u16()?;
                            if ie & 0x8000 != 0 {
                                t.u32()?; // enterprise number: a field meshway skips
                                fields.push((u16::MAX, flen));
                            } else {
                                fields.push((ie, flen));
                            }
                        }
                        let key = (src, domain, id);
                        let full = self.templates.len() >= MAX_TEMPLATES && !self.templates.contains_key(&key);
                        if fields.len() > MAX_TEMPLATE_FIELDS
                            || fields.len() > shortest(&fields).saturating_mul(MAX_FIELDS_PER_BYTE)
                            || full
                        {
                            // Refused as malformed; an earlier template of that id is gone too
                            // (the exporter redefined it), so its data sets count as unknown.
                            self.stats.malformed += 1;
                            self.templates.remove(&key);
                            continue;
                        }
                        self.templates.insert(key, fields.into());
                    }
                }
                3 => {} // options templates: not needed
                id if id >= 256 => {
                    let Some(fields) = self.templates.get(&(src, domain, id)).map(Arc::clone) else {
                        self.stats.ipfix_unknown_template_sets += 1;
                        continue;
                    };
                    // A kept template's records take a byte or more per four fields (see the
                    // refusal above): the loop ends, having read at most four fields a byte.
                    let least = shortest(&fields).max(1);
                    let mut d = Rd { b: body, i: 0 };
                    while d.i + least <= body.len() {
                        self.record(&mut d, &fields, ts_ns)?;
                    }
                }
                _ => {}
            }
        }
        Some(())
    }

    fn record(&mut self, d: &mut Rd<'_>, fields: &[(u16, u16)], ts_ns: u64) -> Option<()> {
        let (mut src, mut dst) = (None, None);
        let (mut proto, mut sport, mut dport, mut bytes, mut counted) = (0u8, 0, 0, None::<u64>, None::<u64>);
        let (mut start, mut end) = (None::<u64>, None::<u64>);
        for &(ie, flen) in fields {
            let n = if flen == 65535 {
                match d.u8()? {
                    255 => d.u16()? as usize,
                    n => n as usize,
                }
            } else {
                flen as usize
            };
            let v = d.bytes(n)?;
            match (ie, n) {
                (1, _) => bytes = Some(uint(v)),
                (2, _) => counted = Some(uint(v)),
                (4, 1) => proto = v[0],
                (7, 2) => sport = uint(v) as u16,
                (11, 2) => dport = uint(v) as u16,
                (8, 4) => src = Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?))),
                (12, 4) => dst = Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?))),
                (27, 16) => src = Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?))),
                (28, 16) => dst = Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?))),
                (150, _) => start = Some(uint(v).saturating_mul(1_000_000_000)),
                (151, _) => end = Some(uint(v).saturating_mul(1_000_000_000)),
                (152, _) => start = Some(uint(v).saturating_mul(1_000_000)),
                (153, _) => end = Some(uint(v).saturating_mul(1_000_000)),
                _ => {}
            }
        }
        // Bounded as captured packets are: between 20 octets (an IPv4 header) and 1 MiB (the
        // longest frame) per packet, at most 2^50 octets a record; outside them the record is
        // corrupt and left out.
        // A record that counts packets and says 0 of them carries no octets either.
        let packets = counted.unwrap_or(0);
        let octets_ok = match bytes {
            Some(b) => {
                b <= MAX_RECORD_OCTETS
                    && b <= packets.max(1).saturating_mul(u64::from(crate::capture::MAX_WIRE_LEN))
                    && b >= packets.saturating_mul(MIN_PACKET_OCTETS)
                    && !(counted == Some(0) && b > 0)
            }
            None => packets <= MAX_RECORD_OCTETS / MIN_PACKET_OCTETS,
        };
        if !octets_ok {
            self.stats.malformed += 1;
            return Some(());
        }
        self.stats.ipfix_records += 1;
        let bytes = bytes.unwrap_or(0);
        // A time past 2116 (2^62 ns) is corrupt: counted, and the record takes its other
        // time, or its message's capture time, as a packet takes the one before it.
        let mut good = |t: Option<u64>| match t {
            Some(t) if t > crate::capture::MAX_TS_NS => {
                self.stats.malformed += 1;
                None
            }
            t => t,
        };
        let (start, end) = (good(start), good(end));
        if let (Some(src), Some(dst)) = (src, dst) {
            let key = FlowKey { src, dst, proto, sport, dport };
            let (start, end) = match (start, end) {
                (Some(a), Some(b)) => (a.min(b), a.max(b)),
                (Some(a), None) | (None, Some(a)) => (a, a),
                (None, None) => (ts_ns, ts_ns),
            };
            let headers = match (src.is_ipv4(), proto) {
                (true, 6) => 40,
                (true, _) => 28,
                (false, 6) => 60,
                (false, _) => 48,
            };
            self.flows.add_record(Flow {
                key,
                packets,
                bytes,
                payload_bytes: bytes.saturating_sub(packets.saturating_mul(headers)),
                first_ns: start,
                last_ns: end,
                tcp: None,
                roce: None,
            });
        }
        Some(())
    }
}
