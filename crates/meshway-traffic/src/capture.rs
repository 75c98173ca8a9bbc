//! Capture files: pcap (microsecond and nanosecond) and pcapng (any number of sections and
//! interfaces, each with its link type and timestamp resolution), read as a stream with
//! `pcap-parser`. A damaged or cut file stops at the damage with what was read so far and a
//! message naming the byte offset; a file that is not a capture is an error.

use pcap_parser::pcapng::Block;
use pcap_parser::{create_reader, PcapBlockOwned, PcapError};
use serde::Serialize;
use std::io::Read;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("the file is empty")]
    Empty,
    #[error("not a pcap or pcapng capture (the first bytes are neither format's magic number)")]
    NotACapture,
    /// Why the capture could not be read (the caller names the file and says "cannot read").
    #[error("{0}")]
    Read(String),
    #[error("malformed capture: {0}")]
    Malformed(String),
}

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Length on the wire (the captured part may be shorter).
    pub wire_len: u32,
    /// LINKTYPE_ value of the frame's interface.
    pub linktype: i32,
    pub data: &'a [u8],
}

/// What reading found besides packets.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaptureInfo {
    pub format: &'static str,
    pub packets: u64,
    /// Where and why reading stopped early, if it did.
    pub stopped_early: Option<String>,
    /// Packets on interfaces whose link type meshway does not decode.
    pub other_linktype_packets: u64,
    /// Packets whose recorded wire length was above 1 MiB (corrupt): counted at their
    /// captured length.
    pub bad_length_packets: u64,
    /// Packets that captured more bytes than their recorded wire length (corrupt: a capture
    /// holds at most the frame): counted at their captured length.
    pub short_wire_packets: u64,
    /// Packets whose timestamp was past 2116 (2^62 ns), or whose pcap fraction of a second
    /// was a second or more (corrupt): given the previous
    /// packet's time so that one bad field does not stretch the capture's span, or left
    /// out when no packet before them had a good time.
    pub bad_time_packets: u64,
    /// pcapng Simple Packet Blocks, which carry no time: each is given the time of the
    /// timestamped packet before it (or, before any, of the first one after it).
    pub untimed_packets: u64,
    /// The last good timestamp delivered.
    #[serde(skip)]
    last_ts_ns: Option<u64>,
}

/// The longest frame a wire length may claim: 1 MiB (an assumption: twice the 512 KiB a
/// host capture of Linux BIG TCP's aggregated segments can record; 4 GB lengths are corrupt).
pub const MAX_WIRE_LEN: u32 = 1 << 20;
/// Timestamps past this (2^62 ns, the year 2116) are taken as corrupt.
pub const MAX_TS_NS: u64 = 1 << 62;

/// Link types decoded: Ethernet, raw IP, IPv4, IPv6, Linux cooked v1 and v2.
pub const LINKTYPE_ETHERNET: i32 = 1;
pub const LINKTYPE_RAW: i32 = 101;
pub const LINKTYPE_LINUX_SLL: i32 = 113;
pub const LINKTYPE_IPV4: i32 = 228;
pub const LINKTYPE_IPV6: i32 = 229;
pub const LINKTYPE_LINUX_SLL2: i32 = 276;

/// The file headers' magic numbers: pcap (microsecond and nanosecond, both byte orders) and
/// pcapng's Section Header Block type.
const MAGICS: [[u8; 4]; 5] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
    [0x0a, 0x0d, 0x0d, 0x0a],
];
/// How much is read before the format is decided: `create_reader` looks at what one read
/// gives, and a pipe (ssh, netcat) may hand over a few bytes at a time.
const HEAD: usize = 64 * 1024;
/// Simple Packet Blocks held while no packet has had a time (an assumption: a capture that
/// opens with more than this is given time 0 for the rest of them).
const MAX_HELD: usize = 4_096;

/// Units per second of a pcapng `if_tsresol` (RFC-draft pcapng section 4.2): 10^-n, or 2^-n
/// when the top bit is set; `None` when that does not fit 64 bits.
fn per_second(tsresol: u8) -> Option<u64> {
    let e = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(e)
    } else {
        (e < 64).then(|| 1u64 << e)
    }
}

/// Reads every packet of `r`, in file order, into `each`.
pub fn read<R: Read + Send>(mut r: R, each: &mut dyn FnMut(&Packet<'_>)) -> Result<CaptureInfo, CaptureError> {
    let mut head = Vec::with_capacity(HEAD);
    (&mut r).take(HEAD as u64).read_to_end(&mut head).map_err(|e| CaptureError::Read(e.to_string()))?;
    if head.is_empty() {
        return Err(CaptureError::Empty);
    }
    // Starts as a capture does (all four bytes of a magic number, or as many as there are).
    let n = head.len();
    if !MAGICS.iter().any(|k| k.starts_with(&head[..n.min(4)])) {
        return Err(CaptureError::NotACapture);
    }
    let cut =
        |n: usize| CaptureError::Read(format!("the capture ends inside its file header, after {n} bytes (cut short)"));
    if n < 4 {
        return Err(cut(n));
    }
    // A pcapng file starts with its section header block: its damage is named, and only a
    // file shorter than the block it announces is cut short.
    if head.starts_with(&MAGICS[4]) {
        match diagnose(&head, 0, false) {
            Some(Damage::Malformed(why)) => return Err(CaptureError::Malformed(why)),
            Some(Damage::Cut) if n < HEAD => return Err(cut(n)),
            _ => {}
        }
    }
    let mut reader = match create_reader(1 << 20, std::io::Cursor::new(head).chain(r)) {
        Ok(r) => r,
        Err(PcapError::Eof) => return Err(CaptureError::Empty),
        Err(PcapError::HeaderNotRecognized | PcapError::Incomplete(_) | PcapError::UnexpectedEof) if n < HEAD => {
            return Err(cut(n))
        }
        Err(e) => return Err(CaptureError::Read(format!("{e:?}"))),
    };
    // Simple Packet Blocks seen before any packet had a time: (data, wire length, link type).
    let mut held: Vec<(Vec<u8>, u32, i32)> = Vec::new();
    let mut info = CaptureInfo::default();
    // pcap: one link type and resolution for the file. pcapng: per interface of the section.
    let mut legacy: (i32, u64) = (LINKTYPE_ETHERNET, 1_000);
    // Bytes of frame check sequence at the end of each pcap frame (0: none).
    let mut legacy_fcs: u32 = 0;
    let mut ifaces: Vec<(i32, u64, i64)> = Vec::new();
    // The section's byte order (pcapng), for naming a damaged block.
    let mut big_endian = false;
    let mut offset: u64 = 0;
    loop {
        let stop = match reader.next() {
            Ok((len, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        info.format = "pcap";
                        // 0xa1b23c4d: nanosecond timestamps (either byte order).
                        let nanos = h.magic_number == 0xa1b2_3c4d || h.magic_number == 0x4d3c_b2a1;
                        // The LinkType field's low 26 bits are the link type; bit 26 says the
                        // frames end with a frame check sequence of bits 28-31 x 16 bits
                        // (draft-ietf-opsawg-pcap, "LinkType and additional information").
                        let fcs =
                            if h.network.0 & (1 << 26) != 0 { ((h.network.0 >> 28) & 0x0f) as u32 * 2 } else { 0 };
                        legacy = (h.network.0 & 0x03ff_ffff, if nanos { 1 } else { 1_000 });
                        legacy_fcs = fcs;
                    }
                    PcapBlockOwned::Legacy(b) => {
                        info.packets += 1;
                        // A fraction of a second of a second or more is corrupt.
                        let ts_ns = if u64::from(b.ts_usec) * legacy.1 >= 1_000_000_000 {
                            u64::MAX
                        } else {
                            u64::from(b.ts_sec) * 1_000_000_000 + u64::from(b.ts_usec) * legacy.1
                        };
                        release(&mut info, each, &mut held, ts_ns);
                        // The FCS is not part of the frame's payload: off the wire length, and
                        // off the data where the record holds the frame's end.
                        let data = if legacy_fcs > 0 && b.data.len() as u64 >= u64::from(b.origlen) {
                            &b.data[..b.data.len().saturating_sub(legacy_fcs as usize)]
                        } else {
                            b.data
                        };
                        deliver(&mut info, each, ts_ns, b.origlen.saturating_sub(legacy_fcs), legacy.0, data);
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                        info.format = "pcapng";
                        big_endian = shb.big_endian();
                        ifaces.clear();
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        // A resolution that does not fit 64 bits cannot be read: its packets.
                        // times are corrupt (0 units a second; counted, not guessed).
                        let per_s = per_second(idb.if_tsresol).unwrap_or(0);
                        ifaces.push((idb.linktype.0, per_s, idb.ts_offset()));
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        // The parser takes a block whose length is not a multiple of 4 when
                        // it captured nothing; the blocks after it are then misaligned.
                        if epb.block_len1 % 4 != 0 {
                            info.stopped_early = Some(format!(
                                "malformed capture: the enhanced packet block at byte {offset} is {} bytes long; it needs at least 32, a multiple of 4; packets after it are not read",
                                epb.block_len1
                            ));
                            break;
                        }
                        let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                        let data = &epb.data[..(epb.caplen as usize).min(epb.data.len())];
                        let pkt = NgPacket { if_id: epb.if_id, units, origlen: epb.origlen, data };
                        if let Err(why) =
                            ng_packet(&mut info, each, &mut held, &ifaces, "an enhanced packet", offset, pkt)
                        {
                            info.stopped_early = Some(why);
                            break;
                        }
                    }
                    // The obsolete Packet Block (type 2, pcapng before 1.0; Wireshark reads it):
                    // an enhanced packet's fields, with a 16-bit interface id and drop count.
                    PcapBlockOwned::NG(Block::Unknown(b)) if native(b.block_type, big_endian) == PB_TYPE => {
                        let field = |at: usize| -> u32 {
                            let w: [u8; 4] = b.data[at..at + 4].try_into().unwrap_or_default();
                            if big_endian {
                                u32::from_be_bytes(w)
                            } else {
                                u32::from_le_bytes(w)
                            }
                        };
                        let body = b.data.len().saturating_sub(PB_FIELDS);
                        let caplen = if b.data.len() >= PB_FIELDS { field(12) as usize } else { usize::MAX };
                        if caplen > body {
                            info.stopped_early = Some(match caplen {
                                usize::MAX => format!(
                                    "malformed capture: the packet block at byte {offset} is {} bytes long; it needs at least 32, a multiple of 4; packets after it are not read",
                                    b.block_len1
                                ),
                                _ => format!(
                                    "malformed capture: the packet block at byte {offset} claims {caplen} captured bytes, more than its {}-byte block holds ({body}); packets after it are not read",
                                    b.block_len1
                                ),
                            });
                            break;
                        }
                        let id = field(0);
                        let if_id = if big_endian { id >> 16 } else { id & 0xffff };
                        let units = (u64::from(field(4)) << 32) | u64::from(field(8));
                        let data = &b.data[PB_FIELDS..PB_FIELDS + caplen];
                        let pkt = NgPacket { if_id, units, origlen: field(16), data };
                        if let Err(why) = ng_packet(&mut info, each, &mut held, &ifaces, "a packet", offset, pkt) {
                            info.stopped_early = Some(why);
                            break;
                        }
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        let Some(&(lt, _, _)) = ifaces.first() else {
                            info.stopped_early = Some(undefined_interface("a simple packet", offset, 0, 0));
                            break;
                        };
                        info.packets += 1;
                        let data = &spb.data[..(spb.origlen as usize).min(spb.data.len())];
                        info.untimed_packets += 1;
                        match info.last_ts_ns {
                            Some(t) => deliver(&mut info, each, t, spb.origlen, lt, data),
                            None if held.len() < MAX_HELD => held.push((data.to_vec(), spb.origlen, lt)),
                            None => {
                                release(&mut info, each, &mut held, 0);
                                deliver(&mut info, each, 0, spb.origlen, lt, data);
                            }
                        }
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                offset += len as u64;
                reader.consume(len);
                continue;
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => Stop::Incomplete,
            Err(PcapError::UnexpectedEof) => Stop::Cut,
            Err(PcapError::BufferTooSmall) => Stop::Other("a block larger than 1 MiB".to_string()),
            Err(PcapError::NomError(_, k)) => Stop::Other(format!("malformed block ({k:?})")),
            Err(PcapError::OwnedNomError(_, k)) => Stop::Other(format!("malformed block ({k:?})")),
            Err(other) => Stop::Other(format!("{other:?}")),
        };
        // A pcapng block that the file holds whole but that is wrong is named as such.
        let exhausted = reader.reader_exhausted();
        if info.format == "pcapng" && (exhausted || !matches!(stop, Stop::Incomplete)) {
            if let Some(Damage::Malformed(why)) = diagnose(reader.data(), offset, big_endian) {
                info.stopped_early = Some(format!("malformed capture: {why}; packets after it are not read"));
                break;
            }
        }
        match stop {
            Stop::Cut | Stop::Incomplete if exhausted => {
                info.stopped_early = Some(format!("the capture ends inside a packet at byte {offset} (cut short)"));
                break;
            }
            Stop::Cut => {
                info.stopped_early = Some(format!("the capture ends inside a packet at byte {offset} (cut short)"));
                break;
            }
            Stop::Incomplete => {
                if let Err(e) = reader.refill() {
                    info.stopped_early = Some(format!("read error at byte {offset}: {e:?}"));
                    break;
                }
            }
            Stop::Other(what) => {
                info.stopped_early = Some(format!("{what} at byte {offset}; packets after it are not read"));
                break;
            }
        }
    }
    // No packet had a time: the held ones get 0.
    release(&mut info, each, &mut held, 0);
    if info.format.is_empty() {
        info.format = "pcap";
    }
    Ok(info)
}

/// pcapng's obsolete Packet Block type, and the bytes of its fields before the packet data
/// (interface id and drop count 2 bytes each, timestamp 8, captured and original lengths 4
/// each).
const PB_TYPE: u32 = 2;
const PB_FIELDS: usize = 20;

/// A block type as `pcap-parser` hands it over (the file's first four bytes read
/// little-endian), in the section's byte order.
fn native(block_type: u32, big_endian: bool) -> u32 {
    if big_endian {
        block_type.swap_bytes()
    } else {
        block_type
    }
}

/// A packet of an enhanced (or obsolete) packet block: its interface, time in the interface's
/// units, wire length and captured bytes.
struct NgPacket<'a> {
    if_id: u32,
    units: u64,
    origlen: u32,
    data: &'a [u8],
}

/// Delivers a packet block's packet on its interface of the section (`ifaces`: link type,
/// units per second, if_tsoffset), or says why not: an interface the section does not define.
fn ng_packet(
    info: &mut CaptureInfo,
    each: &mut dyn FnMut(&Packet<'_>),
    held: &mut Vec<(Vec<u8>, u32, i32)>,
    ifaces: &[(i32, u64, i64)],
    what: &str,
    offset: u64,
    pkt: NgPacket<'_>,
) -> Result<(), String> {
    let Some(&(lt, per_s, off)) = ifaces.get(pkt.if_id as usize) else {
        return Err(undefined_interface(what, offset, pkt.if_id, ifaces.len()));
    };
    info.packets += 1;
    // if_tsoffset (seconds, signed) moves the interface's times; a time it moves before 1970,
    // or an unreadable resolution, is corrupt.
    let ns = match per_s {
        0 => u64::MAX,
        _ => {
            let t = i128::from(units_to_ns(pkt.units, per_s)) + i128::from(off) * 1_000_000_000;
            u64::try_from(t).unwrap_or(u64::MAX)
        }
    };
    release(info, each, held, ns);
    deliver(info, each, ns, pkt.origlen, lt, pkt.data);
    Ok(())
}

fn undefined_interface(what: &str, offset: u64, id: u32, defined: usize) -> String {
    format!(
        "malformed capture: {what} block at byte {offset} is on interface {id}, but its section defines {defined} interface{}; packets after it are not read",
        if defined == 1 { "" } else { "s" }
    )
}

/// Why reading stopped before the end: more bytes needed, or something else.
enum Stop {
    Incomplete,
    /// The reader says the file ended inside a block.
    Cut,
    Other(String),
}

/// What is wrong with the pcapng block at the start of `b` (at file offset `offset`).
enum Damage {
    /// The file ends before the block does.
    Cut,
    /// The block is whole but wrong: what and where.
    Malformed(String),
}

/// Examines the pcapng block at the start of `b` (all the file's bytes from `offset` on), in
/// the section's byte order (a section header block gives its own): its length against its
/// type's minimum and the file, its trailing length, an enhanced (or obsolete) packet's
/// captured length against its block. `None` when nothing is found wrong.
fn diagnose(b: &[u8], offset: u64, big_endian: bool) -> Option<Damage> {
    let word = |at: usize, be: bool| -> Option<u32> {
        let w: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if be { u32::from_be_bytes(w) } else { u32::from_le_bytes(w) })
    };
    let typ = word(0, false)?;
    let be = if typ == 0x0a0d_0d0a {
        let Some(bom) = word(8, false) else { return Some(Damage::Cut) };
        match bom {
            0x1a2b_3c4d => false,
            0x4d3c_2b1a => true,
            other => {
                return Some(Damage::Malformed(format!(
                    "the section header block at byte {offset} has byte-order magic 0x{other:08x} at byte {}, not 0x1a2b3c4d",
                    offset + 8
                )))
            }
        }
    } else {
        big_endian
    };
    let Some(len) = word(4, be) else { return Some(Damage::Cut) };
    let typ = word(0, be)?;
    let (name, min) = match typ {
        0x0a0d_0d0a => ("section header block", 28),
        1 => ("interface description block", 20),
        2 => ("packet block", 32),
        3 => ("simple packet block", 16),
        6 => ("enhanced packet block", 32),
        _ => ("block", 12),
    };
    let bad = |why: String| Some(Damage::Malformed(format!("the {name} at byte {offset} {why}")));
    if len < min || len % 4 != 0 {
        return bad(format!("is {len} bytes long; it needs at least {min}, a multiple of 4"));
    }
    let len = len as usize;
    if len > b.len() {
        return Some(Damage::Cut);
    }
    if typ == 6 || typ == 2 {
        let caplen = word(20, be)? as usize;
        if caplen > len - 32 {
            return bad(format!("claims {caplen} captured bytes, more than its {len}-byte block holds ({})", len - 32));
        }
    }
    let trail = word(len - 4, be)? as usize;
    if trail != len {
        return bad(format!("ends with a length of {trail}, not its {len}"));
    }
    None
}

/// Delivers the held Simple Packet Blocks, in file order, at `t` (the time of the packet
/// after them) unless that time is corrupt: then they wait for a good one.
fn release(info: &mut CaptureInfo, each: &mut dyn FnMut(&Packet<'_>), held: &mut Vec<(Vec<u8>, u32, i32)>, t: u64) {
    if held.is_empty() || t > MAX_TS_NS {
        return;
    }
    for (data, wire, lt) in std::mem::take(held) {
        deliver(info, each, t, wire, lt, &data);
    }
}

fn units_to_ns(units: u64, per_s: u64) -> u64 {
    if per_s == 0 {
        return 0;
    }
    let secs = units / per_s;
    let frac = units % per_s;
    secs.saturating_mul(1_000_000_000).saturating_add((u128::from(frac) * 1_000_000_000 / u128::from(per_s)) as u64)
}

fn deliver(info: &mut CaptureInfo, each: &mut dyn FnMut(&Packet<'_>), ts_ns: u64, wire: u32, lt: i32, data: &[u8]) {
    match lt {
        LINKTYPE_ETHERNET | LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 | LINKTYPE_LINUX_SLL | LINKTYPE_LINUX_SLL2
        | 12 | 14 => {
            let wire = if wire > MAX_WIRE_LEN {
                info.bad_length_packets += 1;
                0
            } else {
                if (wire as usize) < data.len() {
                    info.short_wire_packets += 1;
                }
                wire
            };
            let ts_ns = match (ts_ns > MAX_TS_NS, info.last_ts_ns) {
                (false, _) => ts_ns,
                (true, Some(last)) => {
                    info.bad_time_packets += 1;
                    last
                }
                (true, None) => {
                    info.bad_time_packets += 1;
                    return;
                }
            };
            info.last_ts_ns = Some(ts_ns);
            each(&Packet { ts_ns, wire_len: wire.max(data.len() as u32), linktype: lt, data })
        }
        _ => info.other_linktype_packets += 1,
    }
}
