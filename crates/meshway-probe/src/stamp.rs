//! STAMP test packets, unauthenticated mode (RFC 8762 §4.2.1 and §4.3.1).
//!
//! Session-Sender test packet (44 bytes, then optional padding):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |   0
//! |                          Timestamp (NTP 64-bit)               |   4
//! |                                                               |
//! |         Error Estimate        |             SSID              |  12
//! |                         MBZ (28 octets)                       |  16..44
//! ```
//!
//! Session-Reflector test packet (44 bytes, then the same padding length):
//!
//! ```text
//! |                        Sequence Number                        |   0
//! |                          Timestamp (transmit, NTP)            |   4
//! |         Error Estimate        |             SSID              |  12
//! |                          Receive Timestamp (NTP)              |  16
//! |                 Session-Sender Sequence Number                |  24
//! |                  Session-Sender Timestamp                     |  28
//! | Session-Sender Error Estimate |            MBZ                |  36
//! |Ses-Sender TTL |                   MBZ                         |  40
//! ```
//!
//! Error Estimate (RFC 4656 §4.1.2, Z bit from RFC 8186): `S` (1 bit: clock synchronized to
//! UTC), `Z` (1 bit: the format of the timestamps of the packet's sender: 0 = NTP, 1 = PTPv2
//! truncated, 32-bit seconds and 32-bit nanoseconds), `Scale` (6 bits), `Multiplier` (8 bits,
//! must not be 0); the error is `Multiplier × 2^(Scale − 32)` seconds. All fields are
//! big-endian. A reflector answers a sender's packet whatever its Z (RFC 8762 §4.2.1: Z only
//! says how to read the sender's timestamp, which the reflector copies back untouched, with the
//! sender's error estimate); its own timestamps are NTP, and its own error estimate says Z = 0
//! (§4.3.1: the reflector's Error Estimate applies to its Timestamp and Receive Timestamp).
//!
//! SSID (RFC 8972 §3, bytes 14-15): the Session-Sender Identifier, which the reflector copies
//! into the same place of its answer. RFC 8972's TLVs after the base packet are not
//! interpreted: the reflector's padding is zero.
//!
//! Packets shorter than 44 bytes are malformed. A reflector answers with exactly as many bytes
//! as it received (RFC 8762 §4.3 symmetric size), never more; padding in the reply is zero.

use thiserror::Error;

/// Length of the base test packet, sender and reflector alike.
pub const BASE_LEN: usize = 44;
/// Largest test packet accepted: the largest UDP payload over IPv4.
pub const MAX_LEN: usize = 65_507;
/// Seconds between the NTP epoch (1900-01-01) and the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// Why bytes are not a STAMP test packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StampError {
    #[error("test packet too short: {len} bytes, need at least {BASE_LEN}")]
    TooShort { len: usize },
    #[error("test packet too long: {len} bytes, at most {MAX_LEN}")]
    TooLong { len: usize },
    #[error("error estimate multiplier is zero")]
    ZeroMultiplier,
    #[error("buffer too small: {len} bytes, need {need}")]
    BufferTooSmall { len: usize, need: usize },
    #[error("authenticated packet: the HMAC does not verify (another key, or altered on the way)")]
    BadHmac,
}

/// A 64-bit NTP timestamp: seconds since 1900 (32 bits) and a binary fraction (32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpTimestamp {
    pub secs: u32,
    pub frac: u32,
}

impl NtpTimestamp {
    /// From nanoseconds since the Unix epoch. The fraction is rounded down (resolution
    /// 2^-32 s ≈ 0.23 ns, so the round trip to nanoseconds is exact to 1 ns).
    pub fn from_unix_nanos(ns: u64) -> NtpTimestamp {
        let secs = ns / 1_000_000_000 + NTP_UNIX_OFFSET_SECS;
        let sub = ns % 1_000_000_000;
        let frac = ((u128::from(sub) << 32) / 1_000_000_000) as u32;
        NtpTimestamp { secs: secs as u32, frac }
    }

    /// Nanoseconds since the Unix epoch, rounded to the nearest nanosecond; `None` before 1970.
    pub fn to_unix_nanos(self) -> Option<u64> {
        let secs = u64::from(self.secs).checked_sub(NTP_UNIX_OFFSET_SECS)?;
        let sub = ((u128::from(self.frac) * 1_000_000_000 + (1 << 31)) >> 32) as u64;
        Some(secs * 1_000_000_000 + sub)
    }

    /// Nanoseconds from `earlier` to `self`, negative when `self` is earlier. Exact to ±1 ns.
    pub fn nanos_since(self, earlier: NtpTimestamp) -> i64 {
        let a = (u128::from(self.secs) << 32) | u128::from(self.frac);
        let b = (u128::from(earlier.secs) << 32) | u128::from(earlier.frac);
        let (d, neg) = if a >= b { (a - b, false) } else { (b - a, true) };
        let ns = ((d * 1_000_000_000 + (1 << 31)) >> 32) as i64;
        if neg {
            -ns
        } else {
            ns
        }
    }

    pub(crate) fn to_be_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.secs.to_be_bytes());
        b[4..].copy_from_slice(&self.frac.to_be_bytes());
        b
    }

    pub(crate) fn from_be_slice(b: &[u8]) -> NtpTimestamp {
        NtpTimestamp { secs: be32(&b[..4]), frac: be32(&b[4..8]) }
    }
}

/// The Error Estimate field (RFC 4656 §4.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorEstimate {
    /// The clock is synchronized to UTC (the `S` bit). One-way delays are meaningful only
    /// when both ends set it.
    pub synchronized: bool,
    /// The `Z` bit: the timestamps this estimate goes with are PTPv2 truncated (32-bit
    /// seconds, 32-bit nanoseconds) rather than NTP. Meshway's own timestamps are NTP.
    pub ptp: bool,
    pub scale: u8,
    pub multiplier: u8,
}

impl ErrorEstimate {
    /// An unsynchronized clock with an error estimate of about 1 ms (multiplier 1, scale 22:
    /// 2^-10 s).
    pub const UNSYNCHRONIZED: ErrorEstimate =
        ErrorEstimate { synchronized: false, ptp: false, scale: 22, multiplier: 1 };
    /// A clock synchronized to UTC, error estimate about 1 ms.
    pub const SYNCHRONIZED: ErrorEstimate = ErrorEstimate { synchronized: true, ptp: false, scale: 22, multiplier: 1 };

    pub fn encode(self) -> u16 {
        (u16::from(self.synchronized) << 15)
            | (u16::from(self.ptp) << 14)
            | (u16::from(self.scale & 0x3f) << 8)
            | u16::from(self.multiplier)
    }

    pub fn decode(v: u16) -> Result<ErrorEstimate, StampError> {
        let multiplier = (v & 0xff) as u8;
        if multiplier == 0 {
            return Err(StampError::ZeroMultiplier);
        }
        Ok(ErrorEstimate {
            synchronized: v & 0x8000 != 0,
            ptp: v & 0x4000 != 0,
            scale: ((v >> 8) & 0x3f) as u8,
            multiplier,
        })
    }

    /// The error estimate in nanoseconds, rounded up.
    pub fn nanos(self) -> u64 {
        let num = u128::from(self.multiplier) << self.scale;
        ((num * 1_000_000_000).div_ceil(1 << 32)) as u64
    }
}

/// A Session-Sender test packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderPacket {
    pub seq: u32,
    pub timestamp: NtpTimestamp,
    pub error: ErrorEstimate,
}

impl SenderPacket {
    /// Writes the packet into `buf[..len]`, `len ≥ 44`; bytes after the base packet are zero.
    pub fn encode(&self, buf: &mut [u8], len: usize) -> Result<(), StampError> {
        let b = zeroed(buf, len)?;
        b[0..4].copy_from_slice(&self.seq.to_be_bytes());
        b[4..12].copy_from_slice(&self.timestamp.to_be_bytes());
        b[12..14].copy_from_slice(&self.error.encode().to_be_bytes());
        Ok(())
    }

    /// Reads a sender packet. MBZ and padding bytes are ignored, as RFC 8762 asks.
    pub fn decode(b: &[u8]) -> Result<SenderPacket, StampError> {
        check_len(b.len())?;
        Ok(SenderPacket {
            seq: be32(&b[0..4]),
            timestamp: NtpTimestamp::from_be_slice(&b[4..12]),
            error: ErrorEstimate::decode(be16(&b[12..14]))?,
        })
    }
}

/// A Session-Reflector test packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReflectorPacket {
    /// The reflector's own sequence number (RFC 8762 stateful mode: per session counter).
    pub seq: u32,
    /// When the reflector sent this packet.
    pub tx_timestamp: NtpTimestamp,
    pub error: ErrorEstimate,
    /// When the reflector received the sender's packet.
    pub rx_timestamp: NtpTimestamp,
    pub sender_seq: u32,
    pub sender_timestamp: NtpTimestamp,
    pub sender_error: ErrorEstimate,
    /// The TTL (or hop limit) of the sender's packet as received, or 0 when the reflector
    /// could not tell.
    pub sender_ttl: u8,
    /// The Session-Sender Identifier (RFC 8972 §3) copied from the sender's packet; 0 for a
    /// sender that does not set one.
    pub ssid: u16,
}

impl ReflectorPacket {
    /// Writes the packet into `buf[..len]`, `len ≥ 44`; bytes after the base packet are zero.
    pub fn encode(&self, buf: &mut [u8], len: usize) -> Result<(), StampError> {
        let b = zeroed(buf, len)?;
        b[0..4].copy_from_slice(&self.seq.to_be_bytes());
        b[4..12].copy_from_slice(&self.tx_timestamp.to_be_bytes());
        b[12..14].copy_from_slice(&self.error.encode().to_be_bytes());
        b[14..16].copy_from_slice(&self.ssid.to_be_bytes());
        b[16..24].copy_from_slice(&self.rx_timestamp.to_be_bytes());
        b[24..28].copy_from_slice(&self.sender_seq.to_be_bytes());
        b[28..36].copy_from_slice(&self.sender_timestamp.to_be_bytes());
        b[36..38].copy_from_slice(&self.sender_error.encode().to_be_bytes());
        b[40] = self.sender_ttl;
        Ok(())
    }

    pub fn decode(b: &[u8]) -> Result<ReflectorPacket, StampError> {
        check_len(b.len())?;
        Ok(ReflectorPacket {
            seq: be32(&b[0..4]),
            tx_timestamp: NtpTimestamp::from_be_slice(&b[4..12]),
            error: ErrorEstimate::decode(be16(&b[12..14]))?,
            rx_timestamp: NtpTimestamp::from_be_slice(&b[16..24]),
            sender_seq: be32(&b[24..28]),
            sender_timestamp: NtpTimestamp::from_be_slice(&b[28..36]),
            sender_error: ErrorEstimate::decode(be16(&b[36..38]))?,
            sender_ttl: b[40],
            ssid: be16(&b[14..16]),
        })
    }

    /// Time the reflector held the packet (transmit − receive), in nanoseconds, at least 0.
    /// A reflector whose error estimate has the Z bit wrote its two times in PTPv2 format
    /// (seconds and nanoseconds); they are read so.
    pub fn turnaround_nanos(&self) -> u64 {
        if self.error.ptp {
            let ns = |t: NtpTimestamp| i128::from(t.secs) * 1_000_000_000 + i128::from(t.frac);
            let d = ns(self.tx_timestamp) - ns(self.rx_timestamp);
            return u64::try_from(d.max(0)).unwrap_or(u64::MAX);
        }
        self.tx_timestamp.nanos_since(self.rx_timestamp).max(0) as u64
    }
}

/// The reflector's side of one received packet: decodes `rx`, writes the answer into `out`
/// and returns its length, which is always `rx.len()` (never more than received). The
/// sender's timestamp and error estimate (whatever its Z bit) and its SSID (bytes 14-15,
/// RFC 8972 §3) are copied back.
/// `rx_time` and `tx_time` are the reflector's clock at receive and at (planned) transmit;
/// `seq` is the reflector's own counter for this session.
pub fn reflect(
    rx: &[u8],
    out: &mut [u8],
    seq: u32,
    rx_time: NtpTimestamp,
    tx_time: NtpTimestamp,
    error: ErrorEstimate,
    ttl: u8,
) -> Result<usize, StampError> {
    let s = SenderPacket::decode(rx)?;
    let r = ReflectorPacket {
        seq,
        tx_timestamp: tx_time,
        error,
        rx_timestamp: rx_time,
        sender_seq: s.seq,
        sender_timestamp: s.timestamp,
        sender_error: s.error,
        sender_ttl: ttl,
        ssid: be16(&rx[14..16]),
    };
    r.encode(out, rx.len())?;
    Ok(rx.len())
}

/// The first `len` bytes of `buf`, zeroed, after checking `len` is a valid packet length.
fn zeroed(buf: &mut [u8], len: usize) -> Result<&mut [u8], StampError> {
    check_len(len)?;
    let have = buf.len();
    let b = buf.get_mut(..len).ok_or(StampError::BufferTooSmall { len: have, need: len })?;
    b.fill(0);
    Ok(b)
}

fn check_len(len: usize) -> Result<(), StampError> {
    if len < BASE_LEN {
        Err(StampError::TooShort { len })
    } else if len > MAX_LEN {
        Err(StampError::TooLong { len })
    } else {
        Ok(())
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ntp_epoch_offset_and_fraction() {
        // 2000-01-01T00:00:00.5Z: 946684800 s after 1970.
        let t = NtpTimestamp::from_unix_nanos(946_684_800_500_000_000);
        assert_eq!(t.secs, 946_684_800 + 2_208_988_800);
        assert_eq!(t.frac, 1 << 31);
        assert_eq!(t.to_unix_nanos(), Some(946_684_800_500_000_000));
        assert_eq!(NtpTimestamp { secs: 0, frac: 0 }.to_unix_nanos(), None);
    }

    #[test]
    fn nanos_since_is_signed() {
        let a = NtpTimestamp::from_unix_nanos(1_000_000_000_000);
        let b = NtpTimestamp::from_unix_nanos(1_000_000_250_000);
        assert_eq!(b.nanos_since(a), 250_000);
        assert_eq!(a.nanos_since(b), -250_000);
    }

    #[test]
    fn sender_packet_layout_is_byte_exact() {
        let p = SenderPacket {
            seq: 0x0102_0304,
            timestamp: NtpTimestamp { secs: 0x0a0b_0c0d, frac: 0x1112_1314 },
            error: ErrorEstimate { synchronized: true, ptp: false, scale: 3, multiplier: 7 },
        };
        let mut buf = [0xffu8; 64];
        p.encode(&mut buf, 44).unwrap();
        let mut want = [0u8; 44];
        want[..14].copy_from_slice(&[1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0x11, 0x12, 0x13, 0x14, 0x83, 0x07]);
        assert_eq!(&buf[..44], &want[..]);
        assert_eq!(buf[44], 0xff, "nothing written past len");
        assert_eq!(SenderPacket::decode(&buf[..44]).unwrap(), p);
    }

    #[test]
    fn reflect_answers_with_received_length_and_copies_sender_fields() {
        let p =
            SenderPacket { seq: 9, timestamp: NtpTimestamp { secs: 5, frac: 6 }, error: ErrorEstimate::SYNCHRONIZED };
        let mut rx = [0u8; 100];
        p.encode(&mut rx, 100).unwrap();
        let mut out = [0u8; 200];
        let rxt = NtpTimestamp { secs: 10, frac: 0 };
        let txt = NtpTimestamp { secs: 10, frac: 1 << 30 };
        let n = reflect(&rx, &mut out, 3, rxt, txt, ErrorEstimate::UNSYNCHRONIZED, 64).unwrap();
        assert_eq!(n, 100);
        let r = ReflectorPacket::decode(&out[..n]).unwrap();
        assert_eq!((r.seq, r.sender_seq, r.sender_timestamp, r.sender_ttl), (3, 9, p.timestamp, 64));
        assert!(r.sender_error.synchronized && !r.error.synchronized);
        assert_eq!(r.turnaround_nanos(), 250_000_000);
        // Field offsets of the reflector packet (RFC 8762 figure 4).
        assert_eq!(&out[24..28], &[0, 0, 0, 9]);
        assert_eq!(&out[16..20], &[0, 0, 0, 10]);
    }

    #[test]
    fn malformed_packets_are_rejected() {
        assert_eq!(SenderPacket::decode(&[0u8; 43]), Err(StampError::TooShort { len: 43 }));
        let mut b = [0u8; 44];
        assert_eq!(SenderPacket::decode(&b), Err(StampError::ZeroMultiplier));
        b[12] = 0x40;
        assert_eq!(SenderPacket::decode(&b), Err(StampError::ZeroMultiplier), "Z does not excuse a zero multiplier");
        let big = vec![0u8; MAX_LEN + 1];
        assert_eq!(SenderPacket::decode(&big), Err(StampError::TooLong { len: MAX_LEN + 1 }));
    }

    /// A sender in PTPv2 format (Z = 1) is answered: its timestamp and error estimate come back
    /// bit for bit, with its SSID (RFC 8972 §3) at bytes 14-15; the reflector's own error
    /// estimate says NTP (Z = 0), and padding (RFC 8972 TLVs) is not echoed.
    #[test]
    fn ptp_senders_are_answered_and_the_ssid_is_copied() {
        let mut rx = [0u8; 60];
        rx[0..4].copy_from_slice(&77u32.to_be_bytes());
        rx[4..12].copy_from_slice(&[0x65, 0x00, 0x00, 0x01, 0x1d, 0xcd, 0x64, 0xff]); // 1694498817 s, 499999999 ns
        rx[12..14].copy_from_slice(&0xc105u16.to_be_bytes()); // S, Z, scale 1, multiplier 5
        rx[14..16].copy_from_slice(&0xabcdu16.to_be_bytes());
        rx[44..].fill(0x5a);
        let s = SenderPacket::decode(&rx).unwrap();
        assert_eq!(s.error, ErrorEstimate { synchronized: true, ptp: true, scale: 1, multiplier: 5 });
        assert_eq!(s.error.encode(), 0xc105);
        let mut out = [0xeeu8; 60];
        let t = NtpTimestamp { secs: 3_900_000_000, frac: 0 };
        let n = reflect(&rx, &mut out, 4, t, t, ErrorEstimate::UNSYNCHRONIZED, 64).unwrap();
        assert_eq!(n, 60);
        assert_eq!(&out[28..36], &rx[4..12], "sender timestamp copied verbatim");
        assert_eq!(&out[36..38], &[0xc1, 0x05], "sender error estimate copied with its Z bit");
        assert_eq!(&out[12..14], &[0x16, 0x01], "the reflector's own estimate: NTP (Z = 0), scale 22, multiplier 1");
        assert_eq!(&out[14..16], &[0xab, 0xcd], "SSID copied");
        assert!(out[44..60].iter().all(|&b| b == 0), "TLV bytes are not echoed");
        let r = ReflectorPacket::decode(&out).unwrap();
        assert_eq!((r.ssid, r.sender_seq, r.sender_error.ptp, r.error.ptp), (0xabcd, 77, true, false));
    }

    /// A reflector in PTP format: its hold time reads seconds and nanoseconds.
    #[test]
    fn ptp_reflector_turnaround() {
        let mut r = ReflectorPacket::decode(&{
            let mut b = [0u8; 44];
            b[13] = 1;
            b[37] = 1;
            b
        })
        .unwrap();
        r.error.ptp = true;
        r.rx_timestamp = NtpTimestamp { secs: 10, frac: 999_999_000 };
        r.tx_timestamp = NtpTimestamp { secs: 11, frac: 500 };
        assert_eq!(r.turnaround_nanos(), 1_500);
        r.error.ptp = false;
        assert_eq!(r.turnaround_nanos(), 767_169_706); // the same bits read as NTP: wrong by far
    }

    #[test]
    fn error_estimate_value() {
        // multiplier 1, scale 32: exactly one second.
        assert_eq!(ErrorEstimate { synchronized: false, ptp: false, scale: 32, multiplier: 1 }.nanos(), 1_000_000_000);
        assert_eq!(ErrorEstimate::UNSYNCHRONIZED.nanos(), 976_563); // 2^-10 s rounded up
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_reflect_never_amplifies(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SenderPacket::decode(&bytes);
            let _ = ReflectorPacket::decode(&bytes);
            let mut out = [0u8; 256];
            if let Ok(n) = reflect(&bytes, &mut out, 0, NtpTimestamp::default(), NtpTimestamp::default(), ErrorEstimate::UNSYNCHRONIZED, 0) {
                prop_assert_eq!(n, bytes.len());
            }
        }

        #[test]
        fn ntp_round_trip(ns in 0u64..2_000_000_000_000_000_000) {
            prop_assert_eq!(NtpTimestamp::from_unix_nanos(ns).to_unix_nanos(), Some(ns));
        }
    }
}
