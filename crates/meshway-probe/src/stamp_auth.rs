//! STAMP test packets in authenticated mode (RFC 8762 §4.2.2 and §4.3.2): 112-byte packets
//! whose last 16 bytes are HMAC-SHA-256 (truncated to 128 bits) over the 96 bytes before them,
//! under a key both ends were given (key management is outside STAMP; meshway reads it from a
//! file). The fields sit where TWAMP's authenticated mode (RFC 5357 §4.1.2, §4.2.1) puts them,
//! with MBZ gaps so that the timestamps fall on 16-byte block boundaries:
//!
//! ```text
//! Session-Sender                      Session-Reflector
//!   0  Sequence Number (4)              0  Sequence Number (4)
//!   4  MBZ (12)                         4  MBZ (12)
//!  16  Timestamp (8)                   16  Timestamp (8)
//!  24  Error Estimate (2)              24  Error Estimate (2)
//!  26  SSID (2)                        26  SSID (2)
//!  28  MBZ (68)                        28  MBZ (4)
//!  96  HMAC (16)                       32  Receive Timestamp (8)
//!                                      40  MBZ (8)
//!                                      48  Session-Sender Sequence Number (4)
//!                                      52  MBZ (12)
//!                                      64  Session-Sender Timestamp (8)
//!                                      72  Session-Sender Error Estimate (2)
//!                                      74  MBZ (6)
//!                                      80  Session-Sender TTL (1)
//!                                      81  MBZ (15)
//!                                      96  HMAC (16)
//! ```
//!
//! The SSID (RFC 8972 §3, in the first two of RFC 8762's MBZ bytes after the error estimate) is
//! copied from the sender's packet into the reflector's, under the reflector's HMAC.
//!
//! A packet whose HMAC does not verify is discarded (and counted); the comparison runs in
//! constant time.

use crate::stamp::{ErrorEstimate, NtpTimestamp, ReflectorPacket, SenderPacket, StampError, MAX_LEN};
use ring::hmac;

/// Length of an authenticated test packet (before any padding).
pub const AUTH_LEN: usize = 112;
const HMAC_AT: usize = 96;

/// A STAMP key: HMAC-SHA-256. Two keys are equal when their secrets are (compared by a
/// SHA-256 fingerprint; the secret itself is not kept).
#[derive(Clone)]
pub struct Key {
    k: hmac::Key,
    fingerprint: [u8; 32],
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn new(secret: &[u8]) -> Key {
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, secret).as_ref());
        Key { k: hmac::Key::new(hmac::HMAC_SHA256, secret), fingerprint }
    }

    fn tag(&self, b: &[u8]) -> [u8; 16] {
        let t = hmac::sign(&self.k, &b[..HMAC_AT]);
        let mut out = [0u8; 16];
        out.copy_from_slice(&t.as_ref()[..16]);
        out
    }

    fn seal(&self, b: &mut [u8]) {
        let t = self.tag(b);
        b[HMAC_AT..AUTH_LEN].copy_from_slice(&t);
    }

    fn verify(&self, b: &[u8]) -> Result<(), StampError> {
        let t = self.tag(b);
        // Constant time: every byte compared whatever the first difference.
        let diff = t.iter().zip(&b[HMAC_AT..AUTH_LEN]).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        if diff == 0 {
            Ok(())
        } else {
            Err(StampError::BadHmac)
        }
    }
}

fn check(len: usize) -> Result<(), StampError> {
    if len < AUTH_LEN {
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

fn ts(b: &[u8]) -> NtpTimestamp {
    NtpTimestamp::from_be_slice(b)
}

/// Writes an authenticated sender packet into `buf[..len]` (`len ≥ 112`; padding zero).
pub fn encode_sender(p: &SenderPacket, key: &Key, buf: &mut [u8], len: usize) -> Result<(), StampError> {
    check(len)?;
    let have = buf.len();
    let b = buf.get_mut(..len).ok_or(StampError::BufferTooSmall { len: have, need: len })?;
    b.fill(0);
    b[0..4].copy_from_slice(&p.seq.to_be_bytes());
    b[16..24].copy_from_slice(&p.timestamp.to_be_bytes());
    b[24..26].copy_from_slice(&p.error.encode().to_be_bytes());
    key.seal(b);
    Ok(())
}

/// Reads an authenticated sender packet, verifying its HMAC.
pub fn decode_sender(b: &[u8], key: &Key) -> Result<SenderPacket, StampError> {
    check(b.len())?;
    key.verify(b)?;
    Ok(SenderPacket { seq: be32(&b[0..4]), timestamp: ts(&b[16..24]), error: ErrorEstimate::decode(be16(&b[24..26]))? })
}

/// Writes an authenticated reflector packet into `buf[..len]`.
pub fn encode_reflector(p: &ReflectorPacket, key: &Key, buf: &mut [u8], len: usize) -> Result<(), StampError> {
    check(len)?;
    let have = buf.len();
    let b = buf.get_mut(..len).ok_or(StampError::BufferTooSmall { len: have, need: len })?;
    b.fill(0);
    b[0..4].copy_from_slice(&p.seq.to_be_bytes());
    b[16..24].copy_from_slice(&p.tx_timestamp.to_be_bytes());
    b[24..26].copy_from_slice(&p.error.encode().to_be_bytes());
    b[32..40].copy_from_slice(&p.rx_timestamp.to_be_bytes());
    b[48..52].copy_from_slice(&p.sender_seq.to_be_bytes());
    b[64..72].copy_from_slice(&p.sender_timestamp.to_be_bytes());
    b[72..74].copy_from_slice(&p.sender_error.encode().to_be_bytes());
    b[80] = p.sender_ttl;
    b[26..28].copy_from_slice(&p.ssid.to_be_bytes());
    key.seal(b);
    Ok(())
}

/// Reads an authenticated reflector packet, verifying its HMAC.
pub fn decode_reflector(b: &[u8], key: &Key) -> Result<ReflectorPacket, StampError> {
    check(b.len())?;
    key.verify(b)?;
    Ok(ReflectorPacket {
        seq: be32(&b[0..4]),
        tx_timestamp: ts(&b[16..24]),
        error: ErrorEstimate::decode(be16(&b[24..26]))?,
        rx_timestamp: ts(&b[32..40]),
        sender_seq: be32(&b[48..52]),
        sender_timestamp: ts(&b[64..72]),
        sender_error: ErrorEstimate::decode(be16(&b[72..74]))?,
        sender_ttl: b[80],
        ssid: be16(&b[26..28]),
    })
}

/// The reflector's side in authenticated mode: verifies `rx`, answers with as many bytes,
/// the sender's SSID (bytes 26-27) copied back.
#[allow(clippy::too_many_arguments)]
pub fn reflect(
    rx: &[u8],
    key: &Key,
    out: &mut [u8],
    seq: u32,
    rx_time: NtpTimestamp,
    tx_time: NtpTimestamp,
    error: ErrorEstimate,
    ttl: u8,
) -> Result<usize, StampError> {
    let s = decode_sender(rx, key)?;
    let r = ReflectorPacket {
        seq,
        tx_timestamp: tx_time,
        error,
        rx_timestamp: rx_time,
        sender_seq: s.seq,
        sender_timestamp: s.timestamp,
        sender_error: s.error,
        sender_ttl: ttl,
        ssid: be16(&rx[26..28]),
    };
    encode_reflector(&r, key, out, rx.len())?;
    Ok(rx.len())
}

/// Reads a key file: hex text (64 hex digits for 32 bytes; spaces and newlines ignored), or the
/// raw bytes when the file is not hex. At least 16 bytes.
pub fn parse_key(file: &[u8]) -> Result<Key, String> {
    let text = String::from_utf8_lossy(file);
    let hex: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = if !hex.is_empty() && hex.len().is_multiple_of(2) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0)).collect()
    } else {
        file.to_vec()
    };
    if bytes.len() < 16 {
        return Err(format!("a STAMP key is at least 16 bytes (32 hex digits); this one has {}", bytes.len()));
    }
    Ok(Key::new(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        parse_key(b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n").unwrap()
    }

    #[test]
    fn sender_and_reflector_round_trip_at_their_offsets() {
        let k = key();
        let e = ErrorEstimate::decode(0x8001).unwrap();
        let s = SenderPacket { seq: 7, timestamp: NtpTimestamp::from_unix_nanos(1_700_000_000_123_456_789), error: e };
        let mut b = [0u8; 128];
        encode_sender(&s, &k, &mut b, 128).unwrap();
        assert_eq!(&b[0..4], &7u32.to_be_bytes());
        assert_eq!(&b[24..26], &0x8001u16.to_be_bytes());
        assert!(b[4..16].iter().chain(&b[26..96]).chain(&b[112..]).all(|&x| x == 0), "MBZ and padding are zero");
        assert_eq!(decode_sender(&b, &k).unwrap(), s);
        // The HMAC is HMAC-SHA-256 of bytes 0..96, its first 16 bytes.
        let full = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &(0u8..32).collect::<Vec<_>>()), &b[..96]);
        assert_eq!(&b[96..112], &full.as_ref()[..16]);
        let mut out = [0u8; 128];
        let t = NtpTimestamp::from_unix_nanos(1_700_000_000_200_000_000);
        let n = reflect(&b, &k, &mut out, 3, t, t, e, 64).unwrap();
        assert_eq!(n, 128, "as long as what was received");
        let r = decode_reflector(&out, &k).unwrap();
        assert_eq!((r.seq, r.sender_seq, r.sender_timestamp, r.sender_ttl), (3, 7, s.timestamp, 64));
        assert_eq!((&out[48..52], out[80]), (&7u32.to_be_bytes()[..], 64));
    }

    /// RFC 8972 §3: the SSID of an authenticated sender packet (bytes 26-27) comes back at
    /// the same place, covered by the answer's HMAC; a PTP-format sender (Z) is answered.
    #[test]
    fn the_ssid_is_copied_under_the_hmac() {
        let k = key();
        let s = SenderPacket {
            seq: 3,
            timestamp: NtpTimestamp { secs: 9, frac: 9 },
            error: ErrorEstimate::decode(0x4001).unwrap(),
        };
        // encode_sender writes no SSID: set it and seal again, as an RFC 8972 sender does.
        let mut sealed = [0u8; 112];
        encode_sender(&s, &k, &mut sealed, 112).unwrap();
        sealed[26..28].copy_from_slice(&0x1234u16.to_be_bytes());
        k.seal(&mut sealed);
        let mut out = [0u8; 112];
        let t = NtpTimestamp { secs: 20, frac: 0 };
        reflect(&sealed, &k, &mut out, 0, t, t, ErrorEstimate::UNSYNCHRONIZED, 1).unwrap();
        assert_eq!(&out[26..28], &[0x12, 0x34]);
        assert_eq!(&out[72..74], &[0x40, 0x01], "the sender's estimate with its Z bit");
        let r = decode_reflector(&out, &k).unwrap();
        assert_eq!((r.ssid, r.sender_error.ptp), (0x1234, true));
    }

    #[test]
    fn a_wrong_key_a_flipped_bit_or_a_short_packet_is_refused() {
        let k = key();
        let s = SenderPacket {
            seq: 1,
            timestamp: NtpTimestamp::from_unix_nanos(1),
            error: ErrorEstimate::decode(1).unwrap(),
        };
        let mut b = [0u8; 112];
        encode_sender(&s, &k, &mut b, 112).unwrap();
        assert_eq!(decode_sender(&b, &parse_key(&[9u8; 32]).unwrap()), Err(StampError::BadHmac));
        for i in 0..112 {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(decode_sender(&c, &k).is_err(), "a flipped bit at {i} goes unnoticed");
        }
        assert_eq!(decode_sender(&b[..44], &k), Err(StampError::TooShort { len: 44 }));
        assert!(parse_key(b"abcd").unwrap_err().contains("at least 16 bytes"));
    }
}
