//! Synthetic captures for tests and benchmarks: a pcap writer and a seeded generator of
//! GPU-to-GPU traffic (RoCEv2 writes and TCP streams between the testbed's addresses).

use etherparse::PacketBuilder;
use std::io::Write;

/// The 24-byte pcap file header: little-endian, microseconds, Ethernet.
pub fn pcap_header(snaplen: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&snaplen.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h
}

/// One record: time in ns since the epoch, the frame cut to `snaplen`.
pub fn pcap_record(out: &mut impl Write, ts_ns: u64, frame: &[u8], snaplen: usize) -> std::io::Result<()> {
    let cap = frame.len().min(snaplen);
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
    h[4..8].copy_from_slice(&((ts_ns % 1_000_000_000 / 1_000) as u32).to_le_bytes());
    h[8..12].copy_from_slice(&(cap as u32).to_le_bytes());
    h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
    out.write_all(&h)?;
    out.write_all(&frame[..cap])
}

/// An Ethernet frame of one UDP datagram from `src` to `dst` (both IPv4 or both IPv6) with
/// `ports` (source, destination) and `payload`.
pub fn udp_frame(src: std::net::IpAddr, dst: std::net::IpAddr, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    use std::net::IpAddr::{V4, V6};
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = match (src, dst) {
        (V4(a), V4(b)) => eth.ipv4(a.octets(), b.octets(), 64),
        (V6(a), V6(b)) => eth.ipv6(a.octets(), b.octets(), 64),
        _ => panic!("udp_frame: {src} and {dst} are of different families"),
    };
    let mut v = Vec::new();
    ip.udp(ports.0, ports.1).write(&mut v, payload).expect("a UDP frame");
    v
}

/// The testbed's address of GPU rank `r` (10.64.0.1 + r).
pub fn gpu_addr(r: u32) -> [u8; 4] {
    (0x0a40_0001u32 + r).to_be_bytes()
}

/// Writes `packets` frames of GPU-to-GPU traffic among `gpus` ranks to `out` as pcap cut to
/// `snaplen` bytes (`tcpdump -s`): `flows` flows, each a RoCEv2 (even flows) or TCP stream
/// of 4,096-byte payloads, one packet every 1 µs of capture time, flows interleaved round
/// robin. Deterministic in `seed`. Returns the bytes written.
pub fn gpu_traffic(
    out: &mut impl Write,
    gpus: u32,
    flows: u32,
    packets: u64,
    seed: u64,
    snaplen: usize,
) -> std::io::Result<u64> {
    out.write_all(&pcap_header(snaplen as u32))?;
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let ends: Vec<(u32, u32)> = (0..flows)
        .map(|_| {
            let a = (rnd() % u64::from(gpus)) as u32;
            let b = (a + 1 + (rnd() % u64::from(gpus - 1)) as u32) % gpus;
            (a, b)
        })
        .collect();
    let payload = vec![0x5au8; 4096];
    let mut seqs = vec![1u32; flows as usize];
    let mut frame = Vec::with_capacity(4200);
    let mut bytes = 0;
    for i in 0..packets {
        let f = (i % u64::from(flows)) as usize;
        let (a, b) = ends[f];
        frame.clear();
        let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(gpu_addr(a), gpu_addr(b), 64);
        if f.is_multiple_of(2) {
            // Each queue pair's PSNs in sequence (24 bits), from 1.
            let psn = seqs[f] & 0x00ff_ffff;
            let mut bth = vec![0x0au8, 0, 0xff, 0xff, 0, 0, 0, 0x11, 0];
            bth.extend_from_slice(&psn.to_be_bytes()[1..]);
            bth.extend_from_slice(&payload);
            eth.udp(49152 + f as u16, 4791).write(&mut frame, &bth).map_err(std::io::Error::other)?;
            seqs[f] = seqs[f].wrapping_add(1);
        } else {
            eth.tcp(40000 + f as u16, 5201, seqs[f], 65535)
                .ack(1)
                .write(&mut frame, &payload)
                .map_err(std::io::Error::other)?;
            seqs[f] = seqs[f].wrapping_add(4096);
        }
        pcap_record(out, 1_780_000_000_000_000_000 + i * 1_000, &frame, snaplen)?;
        bytes += frame.len().min(snaplen) as u64 + 16;
    }
    Ok(bytes + 24)
}
