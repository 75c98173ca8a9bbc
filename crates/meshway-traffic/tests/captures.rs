//! Captures written packet by packet (pcap with micro- and nanosecond stamps, pcapng with two
//! interfaces), then read back and analysed; plus cut and foreign files.

use etherparse::PacketBuilder;
use meshway_fabric::{Catalog, Scenario};
use meshway_traffic::analysis::{analyse, flows_csv, AddressPlan, Options, Scope};
use meshway_traffic::capture::{self, CaptureError};
use meshway_traffic::flows::Flows;
use std::net::Ipv4Addr;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// A frame with its time (ns since the epoch).
type Frame = (u64, Vec<u8>);

#[allow(clippy::too_many_arguments)]
fn tcp(t: u64, src: [u8; 4], dst: [u8; 4], ports: (u16, u16), seq: u32, ack: u32, win: u16, len: usize) -> Frame {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64).tcp(ports.0, ports.1, seq, win).ack(ack);
    let mut v = Vec::new();
    b.write(&mut v, &vec![0x61; len]).unwrap();
    (t, v)
}

fn syn(t: u64, src: [u8; 4], dst: [u8; 4], ports: (u16, u16), seq: u32) -> Frame {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64).tcp(ports.0, ports.1, seq, 65535).syn();
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    (t, v)
}

fn udp(t: u64, src: [u8; 4], dst: [u8; 4], ports: (u16, u16), payload: &[u8]) -> Frame {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64).udp(ports.0, ports.1);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    (t, v)
}

/// A RoCEv2 packet: the 12-byte Base Transport Header (opcode first), then for an RC
/// Acknowledge the 4-byte AETH (syndrome first), then payload.
fn roce(t: u64, src: [u8; 4], dst: [u8; 4], opcode: u8, aeth: Option<u8>, payload: usize) -> Frame {
    let mut p = vec![opcode, 0, 0xff, 0xff, 0, 0, 0, 0x11, 0, 0, 0, 1];
    if let Some(s) = aeth {
        p.extend_from_slice(&[s, 0, 0, 1]);
    }
    p.extend(std::iter::repeat_n(0u8, payload));
    p.extend_from_slice(&[0, 0, 0, 0]); // ICRC
    udp(t, src, dst, (49152, 4791), &p)
}

/// A [`roce`] frame with the PSN after the one it was written with (the last BTH byte).
fn next_psn(mut f: Frame) -> Frame {
    // Ethernet 14 + IPv4 20 + UDP 8, then the BTH: its PSN ends at byte 11.
    f.1[42 + 11] += 1;
    f
}

fn arp(t: u64) -> Frame {
    let mut v = vec![0xffu8; 6];
    v.extend_from_slice(&MAC_A);
    v.extend_from_slice(&[0x08, 0x06]);
    v.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    v.extend_from_slice(&[0; 20]);
    (t, v)
}

/// pcap, little-endian, microsecond (magic a1b2c3d4) or nanosecond (a1b23c4d) stamps.
fn pcap(frames: &[Frame], nanos: bool, snaplen: usize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(if nanos { 0xa1b2_3c4du32 } else { 0xa1b2_c3d4 }).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(snaplen as u32).to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (t, f) in frames {
        let cap = f.len().min(snaplen);
        let frac = if nanos { t % 1_000_000_000 } else { t % 1_000_000_000 / 1000 };
        out.extend_from_slice(&((t / 1_000_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(frac as u32).to_le_bytes());
        out.extend_from_slice(&(cap as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&f[..cap]);
    }
    out
}

fn block(out: &mut Vec<u8>, typ: u32, body: &[u8]) {
    let len = 12 + body.len().div_ceil(4) * 4;
    out.extend_from_slice(&typ.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + (4 - body.len() % 4) % 4, 0);
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

/// A little-endian pcapng Section Header Block (version 1.0, length unknown).
fn section() -> Vec<u8> {
    let mut out = Vec::new();
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    out
}

/// An Enhanced Packet Block of `f` on interface 0 at `units` of its resolution.
fn epb(out: &mut Vec<u8>, units: u64, f: &[u8]) {
    let mut b = 0u32.to_le_bytes().to_vec();
    b.extend_from_slice(&((units >> 32) as u32).to_le_bytes());
    b.extend_from_slice(&(units as u32).to_le_bytes());
    b.extend_from_slice(&(f.len() as u32).to_le_bytes());
    b.extend_from_slice(&(f.len() as u32).to_le_bytes());
    b.extend_from_slice(f);
    block(out, 6, &b);
}

/// pcapng: a section, two Ethernet interfaces (the second with if_tsresol 9: nanoseconds),
/// frames alternating between them.
fn pcapng(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    for ns in [false, true] {
        let mut idb = Vec::new();
        idb.extend_from_slice(&1u16.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&65535u32.to_le_bytes());
        if ns {
            // if_tsresol (code 9, length 1) = 9, then opt_endofopt.
            idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
        }
        block(&mut out, 1, &idb);
    }
    for (i, (t, f)) in frames.iter().enumerate() {
        let iface = (i % 2) as u32;
        let units = if iface == 1 { *t } else { t / 1000 };
        let mut epb = Vec::new();
        epb.extend_from_slice(&iface.to_le_bytes());
        epb.extend_from_slice(&((units >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(units as u32).to_le_bytes());
        epb.extend_from_slice(&(f.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(f.len() as u32).to_le_bytes());
        epb.extend_from_slice(f);
        block(&mut out, 6, &epb);
    }
    out
}

const A: [u8; 4] = [10, 64, 0, 1];
const B: [u8; 4] = [10, 64, 0, 2];
const C: [u8; 4] = [10, 64, 0, 3];
const OUT: [u8; 4] = [198, 51, 100, 7];
const T0: u64 = 1_780_000_000_000_000_000;
const US: u64 = 1_000;

/// The reference conversation, times in microseconds from T0.
fn frames() -> Vec<Frame> {
    let t = |us: u64| T0 + us * US;
    vec![
        syn(t(0), A, B, (40000, 5201), 999),
        tcp(t(10), A, B, (40000, 5201), 1000, 1, 65535, 1000),
        tcp(t(20), A, B, (40000, 5201), 2000, 1, 65535, 1000),
        tcp(t(25), B, A, (5201, 40000), 1, 2000, 512, 0), // ACK 2000
        tcp(t(26), B, A, (5201, 40000), 1, 2000, 512, 0), // duplicate ACK
        tcp(t(27), B, A, (5201, 40000), 1, 2000, 512, 0), // duplicate ACK
        tcp(t(30), A, B, (40000, 5201), 2000, 1, 65535, 1000), // retransmission
        tcp(t(40), A, B, (40000, 5201), 3000, 1, 65535, 1000),
        tcp(t(45), B, A, (5201, 40000), 1, 4000, 0, 0),     // zero window
        tcp(t(60), A, B, (40000, 5201), 3999, 1, 65535, 1), // keep-alive: not a retransmission
        roce(t(100), A, C, 0x0a, None, 4096),               // RDMA WRITE ONLY
        next_psn(roce(t(110), A, C, 0x0a, None, 4096)),     // the next PSN of the queue pair
        roce(t(120), C, A, 0x11, Some(0x60), 0),            // NAK (PSN sequence error)
        roce(t(121), C, A, 0x81, None, 16),                 // CNP
        roce(t(130), C, A, 0x11, Some(0x00), 0),            // ACK
        udp(t(200), A, OUT, (53000, 53), &[0; 40]),
        arp(t(300)),
    ]
}

fn read(bytes: &[u8]) -> (capture::CaptureInfo, Flows) {
    let mut flows = Flows::new();
    let info = capture::read(bytes, &mut |p| {
        flows.add(p);
    })
    .unwrap();
    (info, flows)
}

#[test]
fn flows_tcp_analysis_and_rocev2_counts() {
    let (info, flows) = read(&pcap(&frames(), false, 65535));
    assert_eq!((info.format, info.packets, info.stopped_early.as_deref()), ("pcap", 17, None));
    assert_eq!((flows.packets, flows.other.arp, flows.table.len()), (17, 1, 5));
    assert_eq!(flows.last_ns - flows.first_ns.unwrap(), 300_000);
    let key = |s: [u8; 4], d: [u8; 4], sp: u16, dp: u16| {
        flows
            .table
            .values()
            .find(|f| {
                f.key.src == Ipv4Addr::from(s)
                    && f.key.dst == Ipv4Addr::from(d)
                    && f.key.sport == sp
                    && f.key.dport == dp
            })
            .unwrap()
    };
    let ab = key(A, B, 40000, 5201);
    // SYN + 4 data segments + keep-alive: 6 packets; payload 4,001 bytes (the retransmission
    // counts: it crossed the wire); frames 54 bytes of headers each.
    assert_eq!((ab.packets, ab.payload_bytes, ab.bytes), (6, 4001, 6 * 54 + 4001));
    let t = ab.tcp.as_ref().unwrap();
    assert_eq!((t.retransmissions, t.dup_acks, t.zero_windows, t.syn), (1, 0, 0, true));
    let ba = key(B, A, 5201, 40000);
    let t = ba.tcp.as_ref().unwrap();
    assert_eq!((t.retransmissions, t.dup_acks, t.zero_windows), (0, 2, 1));
    let ac = key(A, C, 49152, 4791);
    assert_eq!(ac.key.protocol_name(), "rocev2");
    assert_eq!(ac.payload_bytes, 2 * (12 + 4096 + 4));
    let ca = key(C, A, 49152, 4791);
    let r = ca.roce.as_ref().unwrap();
    assert_eq!((r.naks, r.cnps, r.acks, r.rnr_naks), (1, 1, 1, 0));

    // Without a fabric, inside = 10.64.0.0/16: the DNS query is north-south.
    // Without any internal prefix nothing is east-west: 0, not the empty sum's -0.0.
    let none = analyse(info.clone(), &flows, None, &Options::default());
    assert!(none.east_west_share == 0.0 && none.east_west_share.is_sign_positive(), "{}", none.east_west_share);
    let o = Options { internal: vec!["10.64.0.0/16".parse().unwrap()], ..Options::default() };
    let rep = analyse(info, &flows, None, &o);
    let ns: Vec<_> = rep.scopes.iter().filter(|s| s.scope == Scope::NorthSouth).collect();
    assert_eq!((ns.len(), ns[0].flows, ns[0].bytes), (1, 1, 82));
    // The ARP frame is no flow: shares are of flow bytes.
    let flow_bytes = rep.bytes - 42;
    assert!((rep.east_west_share - (1.0 - 82.0 / flow_bytes as f64)).abs() < 1e-12, "{}", rep.east_west_share);
    assert_eq!((rep.trouble.retransmissions, rep.trouble.dup_acks, rep.trouble.naks, rep.trouble.cnps), (1, 2, 1, 1));
    assert_eq!(rep.top_flows[0].flow.key.dport, 4791, "the RoCE write is the biggest flow");
    assert_eq!(rep.size_bins.iter().map(|b| b.flows).sum::<u64>(), 5);
    assert_eq!(rep.troubled_flows.len(), 3);
}

#[test]
fn pcap_nanosecond_and_pcapng_read_the_same_flows() {
    let (_, a) = read(&pcap(&frames(), false, 65535));
    let (_, b) = read(&pcap(&frames(), true, 65535));
    let (ng, c) = read(&pcapng(&frames()));
    assert_eq!(ng.format, "pcapng");
    for other in [&b, &c] {
        let mut x: Vec<_> = a
            .table
            .values()
            .map(|f| (f.key, f.packets, f.bytes, f.payload_bytes, f.tcp.clone(), f.roce.clone()))
            .collect();
        let mut y: Vec<_> = other
            .table
            .values()
            .map(|f| (f.key, f.packets, f.bytes, f.payload_bytes, f.tcp.clone(), f.roce.clone()))
            .collect();
        x.sort_by_key(|r| r.0);
        y.sort_by_key(|r| r.0);
        assert_eq!(x, y);
    }
    // Nanosecond stamps survive in pcap-ns and on pcapng's second interface.
    let (_, d) = read(&pcap(&[(T0 + 123, arp(0).1)], true, 65535));
    assert_eq!(d.first_ns, Some(T0 + 123));
    let (_, e) = read(&pcapng(&[(T0 + 5_000, arp(0).1), (T0 + 7_001, arp(0).1)]));
    assert_eq!((e.first_ns, e.last_ns), (Some(T0 + 5_000), T0 + 7_001));
}

#[test]
fn snaplen_cut_packets_still_count_their_wire_bytes() {
    // tcpdump -s 96: headers only, the payload counted from the IP length.
    let (info, flows) = read(&pcap(&frames(), false, 96));
    assert_eq!(info.stopped_early, None);
    let ac = flows.table.values().find(|f| f.key.dport == 4791 && f.key.src == Ipv4Addr::from(A)).unwrap();
    assert_eq!(ac.payload_bytes, 2 * (12 + 4096 + 4));
    let ab = flows.table.values().find(|f| f.key.dport == 5201).unwrap();
    assert_eq!(ab.tcp.as_ref().unwrap().retransmissions, 1);
}

/// A frame whose IP (or UDP) length claims more than the frame carried on the wire counts
/// only what the frame holds after its headers (a 64-byte frame claiming 65,535 read as
/// 65,505 payload bytes, more than the flow's wire bytes).
#[test]
fn a_length_past_the_frame_counts_only_the_frame() {
    let mut t = tcp(1_000, A, B, (7, 9), 1, 1, 100, 10);
    // IPv4 total length (bytes 16-17 of the frame) set to 65,535.
    t.1[16] = 0xff;
    t.1[17] = 0xff;
    let mut u = udp(2_000, A, B, (49152, 4791), &[0x11]);
    // UDP length (bytes 38-39) set to 65,535.
    u.1[38] = 0xff;
    u.1[39] = 0xff;
    let (_, flows) = read(&pcap(&[t.clone(), u.clone()], false, 65535));
    for f in flows.table.values() {
        assert!(f.payload_bytes < f.bytes, "{f:?}");
    }
    let tcp_flow = flows.table.values().find(|f| f.key.dport == 9).unwrap();
    assert_eq!(tcp_flow.payload_bytes, t.1.len() as u64 - 14 - 20 - 20);
    let udp_flow = flows.table.values().find(|f| f.key.dport == 4791).unwrap();
    assert_eq!(udp_flow.payload_bytes, 1);
}

#[test]
fn cut_malformed_and_foreign_files() {
    let full = pcap(&frames(), false, 65535);
    // Cut inside the 10th record: 9 packets read, the offset named.
    let mut off = 24;
    for (_, f) in frames().iter().take(9) {
        off += 16 + f.len();
    }
    let (info, flows) = read(&full[..off + 30]);
    assert_eq!(flows.packets, 9);
    let why = info.stopped_early.unwrap();
    assert!(why.contains(&format!("at byte {off}")) && why.contains("cut short"), "{why}");
    // Every cut: no panic, never more packets than written.
    for cut in 0..full.len() {
        let mut n = 0;
        match capture::read(&full[..cut], &mut |_| n += 1) {
            Ok(_) => assert!(n <= 17),
            Err(e) => assert!(cut < 24, "cut {cut}: {e}"),
        }
    }
    // A record claiming 3 GB: stops there.
    let mut bad = pcap(&frames()[..2], false, 65535);
    let at = bad.len();
    bad.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0xc0]);
    bad.extend_from_slice(&[0; 64]);
    let (info, flows) = read(&bad);
    assert_eq!(flows.packets, 2);
    assert!(info.stopped_early.as_deref().is_some_and(|w| w.contains(&format!("at byte {at}"))), "{info:?}");
    assert!(matches!(capture::read(&b"GET / HTTP/1.1\r\n\r\n"[..], &mut |_| {}), Err(CaptureError::NotACapture)));
    assert!(matches!(capture::read(&b""[..], &mut |_| {}), Err(CaptureError::Empty)));
    // Garbage frames inside a valid file: counted as undecodable, not a panic.
    let junk: Vec<Frame> =
        (0..50u64).map(|i| (T0 + i, (0..(i * 7 % 90) as u8).map(|b| b.wrapping_mul(37)).collect())).collect();
    let (_, flows) = read(&pcap(&junk, false, 65535));
    assert_eq!(flows.packets, 50);
}

fn scenario() -> (meshway_fabric::Fabric, Catalog) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/testbed-2x2.toml");
    let text = std::fs::read_to_string(&root).unwrap();
    let s = Scenario::parse(&text, "testbed-2x2.toml").unwrap();
    let cat = Catalog::builtin();
    (s.build(&cat).unwrap(), cat)
}

#[test]
fn the_fabric_maps_addresses_scopes_matrices_and_critical_links() {
    let (f, cat) = scenario();
    let plan = AddressPlan::new(&f, &cat, Ipv4Addr::new(10, 64, 0, 1)).unwrap();
    let (info, flows) = read(&pcap(&frames(), false, 65535));
    let rep = analyse(info, &flows, Some(&plan), &Options::default());
    // 4 GPUs, 2 per leaf: A (rank 0) and B (rank 1) share a leaf, C (rank 2) is across.
    let scope = |s: Scope| rep.scopes.iter().find(|r| r.scope == s).map_or(0, |r| r.flows);
    assert_eq!((scope(Scope::SameLeaf), scope(Scope::CrossLeaf), scope(Scope::NorthSouth)), (2, 2, 1));
    let m = &rep.matrices[0];
    assert_eq!((m.level, m.names.len()), ("leaf", 2));
    let total: u64 = m.bytes.iter().flatten().sum();
    let gpu_bytes: u64 = flows.table.values().filter(|x| x.key.dst != Ipv4Addr::from(OUT)).map(|x| x.bytes).sum();
    assert_eq!(total, gpu_bytes, "the matrix holds every GPU-to-GPU byte");
    // The RoCE write A -> C crosses leaf, spine, leaf: 4 network links (NIC, up, down, NIC).
    let write = &rep.top_flows[0];
    let on: Vec<_> = rep.critical_links.iter().filter(|l| l.flows.contains(&0)).collect();
    assert_eq!(on.len(), 4, "{:?}", rep.critical_links);
    assert!(on.iter().all(|l| l.bytes >= write.flow.bytes && l.roce_naks == 1 && l.roce_cnps == 1));
    // The flows workload parses back on the same fabric.
    let (csv, n) = flows_csv(&flows, &plan);
    // Pure ACK flows carry no payload and are left out.
    assert_eq!(n, 3, "{csv}");
    let topo = meshway_sim::topo::FabricTopo::new(&f, &cat, 1);
    let lines = meshway_sim::simulate::parse_flow_file("captured.csv", &csv, &topo).unwrap();
    assert_eq!(lines.len(), 3);
}

// ---------------------------------------------------------------------------------------------
// sFlow v5 and IPFIX inside a capture

fn be32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_be_bytes());
}

/// An sFlow v5 datagram from agent 192.0.2.10 with one flow sample (sampling rate `rate`)
/// holding one raw packet header record: the first 128 bytes of `frame`, whose length on the
/// wire was `frame_len`; and one counter sample (skipped).
fn sflow(frame: &[u8], frame_len: u32, rate: u32) -> Vec<u8> {
    let hdr = &frame[..frame.len().min(128)];
    let mut rec = Vec::new();
    be32(&mut rec, 1); // header protocol: Ethernet (ISO 8802-3)
    be32(&mut rec, frame_len);
    be32(&mut rec, 4); // stripped (FCS)
    be32(&mut rec, hdr.len() as u32);
    rec.extend_from_slice(hdr);
    rec.resize(rec.len().div_ceil(4) * 4, 0);
    let mut fs = Vec::new();
    be32(&mut fs, 17); // sequence
    be32(&mut fs, 3); // source id: ifIndex 3
    be32(&mut fs, rate);
    be32(&mut fs, rate.wrapping_mul(40)); // sample pool
    be32(&mut fs, 0); // drops
    be32(&mut fs, 3); // input
    be32(&mut fs, 4); // output
    be32(&mut fs, 1); // one record
    be32(&mut fs, 1); // record format: raw packet header
    be32(&mut fs, rec.len() as u32);
    fs.extend_from_slice(&rec);
    let mut d = Vec::new();
    be32(&mut d, 5); // version
    be32(&mut d, 1); // agent address type IPv4
    d.extend_from_slice(&[192, 0, 2, 10]);
    be32(&mut d, 0); // sub agent
    be32(&mut d, 99); // sequence
    be32(&mut d, 123_456); // uptime ms
    be32(&mut d, 2); // two samples
    be32(&mut d, 1); // flow sample
    be32(&mut d, fs.len() as u32);
    d.extend_from_slice(&fs);
    be32(&mut d, 2); // counter sample, 8 bytes of body
    be32(&mut d, 8);
    d.extend_from_slice(&[0; 8]);
    d
}

/// An IPFIX message (observation domain 7): template 256 (src/dst IPv4, ports, protocol,
/// octets, packets, start/end ms, a variable-length field, an enterprise field), then one data
/// set with two records.
fn ipfix(with_template: bool) -> Vec<u8> {
    let mut sets = Vec::new();
    if with_template {
        let fields: [(u16, u16); 11] = [
            (8, 4),
            (12, 4),
            (7, 2),
            (11, 2),
            (4, 1),
            (1, 8),
            (2, 8),
            (152, 8),
            (153, 8),
            (82, 65535),
            (0x8000 | 5, 4),
        ];
        let mut t = Vec::new();
        t.extend_from_slice(&256u16.to_be_bytes());
        t.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        for (ie, len) in fields {
            t.extend_from_slice(&ie.to_be_bytes());
            t.extend_from_slice(&len.to_be_bytes());
            if ie & 0x8000 != 0 {
                t.extend_from_slice(&9u32.to_be_bytes()); // enterprise number
            }
        }
        sets.extend_from_slice(&2u16.to_be_bytes());
        sets.extend_from_slice(&((t.len() + 4) as u16).to_be_bytes());
        sets.extend_from_slice(&t);
    }
    let mut data = Vec::new();
    for (src, dst, bytes, pkts) in
        [([10, 64, 0, 1], [10, 64, 0, 3], 9_000_000_000u64, 2_000_000u64), ([10, 64, 0, 2], [8, 8, 8, 8], 5_000, 10)]
    {
        data.extend_from_slice(&src);
        data.extend_from_slice(&dst);
        data.extend_from_slice(&49152u16.to_be_bytes());
        data.extend_from_slice(&4791u16.to_be_bytes());
        data.push(17);
        data.extend_from_slice(&bytes.to_be_bytes());
        data.extend_from_slice(&pkts.to_be_bytes());
        data.extend_from_slice(&1_780_000_000_000u64.to_be_bytes());
        data.extend_from_slice(&1_780_000_060_000u64.to_be_bytes());
        data.push(4);
        data.extend_from_slice(b"eth0"); // interfaceName, variable length
        data.extend_from_slice(&[0, 0, 0, 1]);
    }
    sets.extend_from_slice(&256u16.to_be_bytes());
    sets.extend_from_slice(&((data.len() + 4) as u16).to_be_bytes());
    sets.extend_from_slice(&data);
    let mut m = Vec::new();
    m.extend_from_slice(&10u16.to_be_bytes());
    m.extend_from_slice(&((sets.len() + 16) as u16).to_be_bytes());
    m.extend_from_slice(&1_780_000_060u32.to_be_bytes());
    m.extend_from_slice(&1u32.to_be_bytes());
    m.extend_from_slice(&7u32.to_be_bytes());
    m.extend_from_slice(&sets);
    m
}

#[test]
fn sflow_and_ipfix_in_a_capture_become_an_estimated_flow_table() {
    use meshway_traffic::export::Exported;
    let sampled = tcp(T0, A, B, (40000, 5201), 1, 1, 65535, 1446).1; // a 1,500-byte frame
    assert_eq!(sampled.len(), 1500);
    let frames = vec![
        udp(T0, [192, 0, 2, 10], [192, 0, 2, 99], (50000, 6343), &sflow(&sampled, 1504, 1000)),
        udp(T0 + US, [192, 0, 2, 10], [192, 0, 2, 99], (50000, 6343), &sflow(&sampled, 1504, 1000)),
        udp(T0 + 2 * US, [192, 0, 2, 11], [192, 0, 2, 99], (50001, 4739), &ipfix(false)), // before its template
        udp(T0 + 3 * US, [192, 0, 2, 11], [192, 0, 2, 99], (50001, 4739), &ipfix(true)),
        udp(T0 + 4 * US, [192, 0, 2, 10], [192, 0, 2, 99], (50000, 6343), &[0, 0, 0, 5, 0, 0]), // cut short
    ];
    let mut flows = Flows::new();
    let mut ex = Exported::new();
    capture::read(&pcap(&frames, false, 65535)[..], &mut |p| {
        if let Some(d) = flows.add(p) {
            ex.offer(d.src, d.dport, d.payload, p.ts_ns);
        }
    })
    .unwrap();
    let s = &ex.stats;
    assert_eq!((s.sflow_datagrams, s.sflow_flow_samples, s.sflow_counter_samples), (2, 2, 2));
    assert_eq!((s.ipfix_messages, s.ipfix_records, s.ipfix_unknown_template_sets, s.malformed), (2, 2, 1, 1));
    assert_eq!(s.agents.len(), 2);
    let t = &ex.flows.table;
    let ab = t.values().find(|f| f.key.dport == 5201).unwrap();
    // Two samples at 1 in 1,000: 2,000 frames of 1,504 bytes.
    assert_eq!((ab.packets, ab.bytes, ab.payload_bytes), (2_000, 2_000 * 1504, 2_000 * 1446));
    assert!(ab.tcp.is_none(), "no TCP analysis on samples");
    let ac = t.values().find(|f| f.key.dst == Ipv4Addr::new(10, 64, 0, 3)).unwrap();
    assert_eq!((ac.packets, ac.bytes, ac.key.protocol_name()), (2_000_000, 9_000_000_000, "rocev2"));
    assert_eq!(ac.last_ns - ac.first_ns, 60_000_000_000);
    // The estimated table analyses like a captured one.
    let (f, cat) = scenario();
    let plan = AddressPlan::new(&f, &cat, Ipv4Addr::new(10, 64, 0, 1)).unwrap();
    let rep = analyse(capture::CaptureInfo::default(), &ex.flows, Some(&plan), &Options::default());
    assert_eq!(rep.top_flows[0].flow.bytes, 9_000_000_000);
    assert_eq!(rep.elephants, 1);
    assert!(rep.scopes.iter().any(|r| r.scope == Scope::NorthSouth && r.bytes == 5_000));
    // Garbage to the telemetry ports: counted, never a panic.
    let mut x = Exported::new();
    for n in 0..300usize {
        let junk: Vec<u8> = (0..n).map(|i| (i * 31 + n) as u8).collect();
        let mut j5 = junk.clone();
        if j5.len() >= 4 {
            j5[..4].copy_from_slice(&5u32.to_be_bytes());
        }
        x.offer("192.0.2.1".parse().unwrap(), 6343, &j5, 0);
        let mut j10 = junk.clone();
        if j10.len() >= 2 {
            j10[..2].copy_from_slice(&10u16.to_be_bytes());
        }
        x.offer("192.0.2.1".parse().unwrap(), 4739, &j10, 0);
    }
}

/// A corrupt wire length is counted at the captured length, and a timestamp past 2116 takes
/// the previous packet's time, so one bad field neither adds gigabytes nor stretches the
/// capture over centuries.
#[test]
fn corrupt_lengths_and_timestamps_are_contained() {
    let frames = [udp(1_000_000_000, [10, 0, 0, 1], [10, 0, 0, 2], (1, 2), &[0; 64])];
    let mut bytes = pcap(&frames, true, 65535);
    // The record header's original length (after ts_sec, ts_frac, incl_len).
    bytes[24 + 12..24 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut seen = Vec::new();
    let info = capture::read(&bytes[..], &mut |p| seen.push((p.ts_ns, p.wire_len))).unwrap();
    assert_eq!(info.bad_length_packets, 1);
    assert_eq!(seen, [(1_000_000_000, frames[0].1.len() as u32)]);
    // Interface 1 of the pcapng counts nanoseconds: 2^63 ns is past 2116.
    let late = [frames[0].clone(), udp(1 << 63, [10, 0, 0, 1], [10, 0, 0, 2], (1, 2), &[0; 64])];
    let mut seen = Vec::new();
    let info = capture::read(&pcapng(&late)[..], &mut |p| seen.push(p.ts_ns)).unwrap();
    assert_eq!((info.bad_time_packets, info.bad_length_packets), (1, 0));
    assert_eq!(seen, [1_000_000_000, 1_000_000_000]);
    // A bad time on the first packet has nothing to borrow: that packet is left out; the
    // third borrows the second's.
    let first = [late[1].clone(), late[0].clone(), late[1].clone()];
    let mut seen = Vec::new();
    let info = capture::read(&pcapng(&first)[..], &mut |p| seen.push(p.ts_ns)).unwrap();
    assert_eq!(info.bad_time_packets, 2);
    assert_eq!(seen, [1_000_000_000, 1_000_000_000]);
}

/// An IPFIX message of domain 7 holding `sets` (set id, body).
fn ipfix_message(sets: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (id, b) in sets {
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&((b.len() + 4) as u16).to_be_bytes());
        body.extend_from_slice(b);
    }
    let mut m = Vec::new();
    m.extend_from_slice(&10u16.to_be_bytes());
    m.extend_from_slice(&((body.len() + 16) as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7]);
    m.extend_from_slice(&body);
    m
}

/// A template set body: template `id` with `fields` (element id, length).
fn template(id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
    let mut t = id.to_be_bytes().to_vec();
    t.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for (ie, len) in fields {
        t.extend_from_slice(&ie.to_be_bytes());
        t.extend_from_slice(&len.to_be_bytes());
    }
    t
}

#[test]
fn ipfix_withdrawals_empty_records_and_times_in_seconds() {
    use meshway_traffic::export::Exported;
    let src: std::net::IpAddr = "192.0.2.11".parse().unwrap();
    // Template 300: addresses, protocol, octets, packets, flowStart/EndSeconds.
    let fields = [(8, 4), (12, 4), (4, 1), (1, 8), (2, 8), (150, 4), (151, 4)];
    let mut rec = vec![10, 64, 0, 1, 10, 64, 0, 2, 6];
    rec.extend_from_slice(&1_000_000u64.to_be_bytes());
    rec.extend_from_slice(&1_000u64.to_be_bytes());
    rec.extend_from_slice(&1_780_000_000u32.to_be_bytes());
    rec.extend_from_slice(&1_780_000_030u32.to_be_bytes());
    let mut x = Exported::new();
    x.offer(src, 4739, &ipfix_message(&[(2, template(300, &fields)), (300, rec.clone())]), 5);
    let f = x.flows.table.values().next().unwrap();
    assert_eq!((f.first_ns, f.last_ns), (1_780_000_000_000_000_000, 1_780_000_030_000_000_000), "seconds, not 1970");
    // Octets less 1,000 packets of IPv4 + TCP headers.
    assert_eq!((f.bytes, f.payload_bytes), (1_000_000, 1_000_000 - 1_000 * 40));
    // A template of no fields withdraws it (RFC 7011 section 8.1): its data is now unknown.
    x.offer(src, 4739, &ipfix_message(&[(2, template(300, &[])), (300, rec.clone())]), 6);
    assert_eq!((x.stats.ipfix_records, x.stats.ipfix_unknown_template_sets, x.stats.malformed), (1, 1, 0));
    // A template whose only field has length 0: its records take no bytes. This looped
    // forever; it is malformed.
    x.offer(src, 4739, &ipfix_message(&[(2, template(301, &[(1, 0)])), (301, vec![0; 8])]), 7);
    assert_eq!((x.stats.ipfix_records, x.stats.malformed), (1, 1));
    // No time fields: the record is placed at its message's capture time.
    let untimed = [(8, 4), (12, 4), (1, 8)];
    let mut r = vec![10, 64, 0, 3, 10, 64, 0, 4];
    r.extend_from_slice(&500u64.to_be_bytes());
    x.offer(src, 4739, &ipfix_message(&[(2, template(302, &untimed)), (302, r)]), 1_780_000_010_000_000_000);
    let g = x.flows.table.values().find(|f| f.bytes == 500).unwrap();
    assert_eq!((g.first_ns, g.last_ns), (1_780_000_010_000_000_000, 1_780_000_010_000_000_000));
    // sFlow: a frame length above 1 MiB times the sampling rate wrapped 64 bits; it is a
    // corrupt record now.
    let frame = tcp(T0, A, B, (1, 2), 1, 1, 100, 100).1;
    let mut s = Exported::new();
    s.offer(src, 6343, &sflow(&frame, u32::MAX, u32::MAX), 0);
    assert_eq!((s.stats.malformed, s.flows.bytes), (1, 0));
}

/// pcapng with base-2 time resolution and Simple Packet Blocks (which carry no time), read
/// through a pipe that hands over a few bytes at a time.
#[test]
fn base2_resolution_untimed_blocks_and_slow_pipes() {
    let mut out = section();
    // if_tsresol 0x8a: 2^-10 s units.
    let mut idb = vec![1, 0, 0, 0, 0xff, 0xff, 0, 0];
    idb.extend_from_slice(&[9, 0, 1, 0, 0x8a, 0, 0, 0, 0, 0, 0, 0]);
    block(&mut out, 1, &idb);
    let f = udp(0, A, B, (1, 2), &[0; 50]).1;
    let spb = |out: &mut Vec<u8>| {
        let mut b = (f.len() as u32).to_le_bytes().to_vec();
        b.extend_from_slice(&f);
        block(out, 3, &b);
    };
    spb(&mut out); // before any time: takes the first packet's
    for units in [1_780_000_000u64 * 1024, 1_780_000_000 * 1024 + 9] {
        epb(&mut out, units, &f);
        spb(&mut out); // after: takes the packet before it
    }
    /// A reader that gives at most 7 bytes per read, as a slow pipe may.
    struct Trickle<'a>(&'a [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(7).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut seen = Vec::new();
    let info = capture::read(Trickle(&out), &mut |p| seen.push(p.ts_ns)).unwrap();
    let t0 = 1_780_000_000_000_000_000;
    let t1 = t0 + 9 * 1_000_000_000 / 1024; // 9/1024 s = 8.789 ms
    assert_eq!(seen, [t0, t0, t0, t1, t1]);
    assert_eq!((info.packets, info.untimed_packets), (5, 3));
    // Cut inside the file header: said so, not "not a capture"; three bytes of text are not
    // a capture at all.
    for n in [2, 20] {
        let e = capture::read(Trickle(&out[..n]), &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains(&format!("ends inside its file header, after {n} bytes (cut short)")), "{e}");
    }
    assert!(matches!(capture::read(&b"hi\n"[..], &mut |_| {}), Err(CaptureError::NotACapture)));
    // More Simple Packet Blocks than are held for a time, with none at all: every one is
    // delivered, in file order (out of order they read as retransmissions).
    let mut only = out[..out.len()].to_vec();
    only.truncate(28 + 32); // the section header and the interface
    for port in 0..5_000u16 {
        let f = udp(0, A, B, (port, 2), &[0; 8]).1;
        let mut b = (f.len() as u32).to_le_bytes().to_vec();
        b.extend_from_slice(&f);
        block(&mut only, 3, &b);
    }
    let mut ports = Vec::new();
    let info = capture::read(&only[..], &mut |p| ports.push(u16::from_be_bytes([p.data[34], p.data[35]]))).unwrap();
    assert_eq!(info.untimed_packets, 5_000);
    assert_eq!(ports, (0..5_000).collect::<Vec<u16>>());
}

/// The snap length cuts an IPv6 TCP packet: its payload comes from the header's Payload
/// Length (less extension headers), as IPv4's comes from Total Length.
#[test]
fn ipv6_payload_comes_from_the_header_when_the_packet_is_cut() {
    let v6 = |ext: bool| {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv6([1; 16], [2; 16], 64);
        let mut v = Vec::new();
        if ext {
            // A hop-by-hop options header (8 bytes) before TCP.
            let b = b.tcp(1, 2, 1, 100);
            b.write(&mut v, &[0x61; 1000]).unwrap();
            // Insert the extension: next header 6 (TCP) after it; the IPv6 next header
            // becomes 0 and the payload length grows by 8.
            let mut w = v[..54].to_vec();
            w[20] = 0;
            let pl = u16::from_be_bytes([w[18], w[19]]) + 8;
            w[18..20].copy_from_slice(&pl.to_be_bytes());
            w.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
            w.extend_from_slice(&v[54..]);
            v = w;
        } else {
            b.tcp(1, 2, 1, 100).write(&mut v, &[0x61; 1000]).unwrap();
        }
        (T0, v)
    };
    for ext in [false, true] {
        let (_, flows) = read(&pcap(&[v6(ext)], false, 128));
        let f = flows.table.values().next().unwrap();
        assert_eq!(f.payload_bytes, 1000, "extension header: {ext}");
    }
}

#[test]
fn a_pcap_fraction_of_a_second_above_one_second_is_a_bad_time() {
    let frames = [udp(T0, A, B, (1, 2), &[0; 10]), udp(T0 + 5 * US, A, B, (1, 2), &[0; 10])];
    let mut bytes = pcap(&frames, false, 65535);
    // The second record's ts_usec: 4e9 microseconds would add 4,000 s.
    let second = 24 + 16 + frames[0].1.len();
    bytes[second + 4..second + 8].copy_from_slice(&4_000_000_000u32.to_le_bytes());
    let mut seen = Vec::new();
    let info = capture::read(&bytes[..], &mut |p| seen.push(p.ts_ns)).unwrap();
    assert_eq!(info.bad_time_packets, 1);
    assert_eq!(seen, [T0, T0]);
}

/// IPv4 fragments: the first carries the UDP header, later ones none; all count in the
/// datagram's flow by its identification. A fragment whose first never came is counted and
/// falls in a flow of ports 0.
#[test]
fn fragments_join_their_datagrams_flow() {
    // One UDP datagram of 8 + 2,000 bytes from 1000 to 2000, cut at 1,480 bytes of IP payload.
    let (t, whole) = udp(T0, A, B, (1000, 2000), &[7; 2000]);
    let (eth, ip) = (14, 20);
    let payload = &whole[eth + ip..];
    let frag = |id: u16, off: usize, more: bool, data: &[u8]| -> Frame {
        let mut v = whole[..eth + ip].to_vec();
        v.extend_from_slice(data);
        let total = (ip + data.len()) as u16;
        v[eth + 2..eth + 4].copy_from_slice(&total.to_be_bytes());
        v[eth + 4..eth + 6].copy_from_slice(&id.to_be_bytes());
        let flags = (u16::from(more) << 13) | (off / 8) as u16;
        v[eth + 6..eth + 8].copy_from_slice(&flags.to_be_bytes());
        (t, v)
    };
    let frames = [
        frag(7, 0, true, &payload[..1480]),
        frag(7, 1480, false, &payload[1480..]),
        // Another datagram's second fragment, its first never captured.
        frag(9, 1480, false, &payload[1480..]),
    ];
    let (_, flows) = read(&pcap(&frames, false, 65535));
    let f = flows.table.values().find(|f| f.key.sport == 1000).expect("the datagram's flow");
    assert_eq!((f.key.dport, f.packets, f.payload_bytes), (2000, 2, 2000));
    let orphan = flows.table.values().find(|f| f.key.sport == 0).expect("a flow of ports 0");
    assert_eq!((orphan.packets, orphan.payload_bytes), (1, 528));
    assert_eq!(flows.other.orphan_fragments, 1);
    assert_eq!(flows.table.len(), 2);
}

/// A frame cut inside its IP header is undecodable, not "non-IP".
#[test]
fn a_frame_cut_in_its_ip_header_is_undecodable() {
    let (t, v) = udp(T0, A, B, (1, 2), &[0; 10]);
    let (_, flows) = read(&pcap(&[(t, v[..14 + 10].to_vec()), arp(T0)], false, 65535));
    assert_eq!((flows.other.undecodable, flows.other.non_ip, flows.other.arp), (1, 0, 1));
}

/// Templates that would make decoding walk more fields than the message has bytes are refused
/// as malformed: 16,000 zero-length fields made each 1-byte record read 16,000 fields.
#[test]
fn ipfix_templates_that_would_read_too_many_fields_are_refused() {
    use meshway_traffic::export::{Exported, MAX_TEMPLATES};
    let src: std::net::IpAddr = "192.0.2.11".parse().unwrap();
    let mut x = Exported::new();
    // 16,000 zero-length fields and one of a byte: refused; its data is then unknown.
    let mut huge = vec![(210, 0); 16_000];
    huge.push((210, 1));
    x.offer(src, 4739, &ipfix_message(&[(2, template(256, &huge)), (256, vec![0; 1000])]), 1);
    assert_eq!((x.stats.malformed, x.stats.ipfix_records, x.stats.ipfix_unknown_template_sets), (1, 0, 1));
    // Four fields per byte of the shortest record is the limit: three zero-length fields and
    // a 1-byte one are kept (100 records in 100 bytes), four and one are refused, and the
    // refusal withdraws the earlier template of that id.
    let four = [(210, 0), (210, 0), (210, 0), (4, 1)];
    x.offer(src, 4739, &ipfix_message(&[(2, template(257, &four)), (257, vec![6; 100])]), 2);
    assert_eq!((x.stats.malformed, x.stats.ipfix_records), (1, 100));
    let five = [(210, 0), (210, 0), (210, 0), (210, 0), (4, 1)];
    x.offer(src, 4739, &ipfix_message(&[(2, template(257, &five)), (257, vec![6; 100])]), 3);
    assert_eq!((x.stats.malformed, x.stats.ipfix_records, x.stats.ipfix_unknown_template_sets), (2, 100, 2));
    // More than 512 fields, each a byte: refused.
    x.offer(src, 4739, &ipfix_message(&[(2, template(258, &[(4, 1); 513]))]), 4);
    assert_eq!(x.stats.malformed, 3);
    // Templates kept in all are bounded: past 16,384 a new one is refused (a redefinition of
    // a kept one is not).
    let mut y = Exported::new();
    for m in 0..17u16 {
        let mut set = Vec::new();
        for i in 0..1000u16 {
            set.extend_from_slice(&template(256 + m * 1000 + i, &[(4, 1)]));
        }
        y.offer(src, 4739, &ipfix_message(&[(2, set)]), 5);
    }
    assert_eq!(y.stats.malformed, 17_000 - MAX_TEMPLATES as u64);
    y.offer(src, 4739, &ipfix_message(&[(2, template(256, &[(4, 1)]))]), 6);
    assert_eq!(y.stats.malformed, 17_000 - MAX_TEMPLATES as u64);
}

/// IPFIX records are bounded as captured packets are: an octet count of 2^64 - 1, or outside
/// 20 octets .. 1 MiB a packet, leaves the record out; a time past 2116 is dropped for the
/// record's other time. Each counts as malformed.
#[test]
fn ipfix_records_with_corrupt_counts_or_times_are_contained() {
    use meshway_traffic::export::Exported;
    let src: std::net::IpAddr = "192.0.2.11".parse().unwrap();
    let fields = [(8, 4), (12, 4), (1, 8), (2, 8), (152, 8), (153, 8)];
    let rec = |host: u8, octets: u64, packets: u64, start: u64, end: u64| {
        let mut r = vec![10, 1, 0, host, 10, 2, 0, host];
        for v in [octets, packets, start, end] {
            r.extend_from_slice(&v.to_be_bytes());
        }
        r
    };
    let ms = 1_700_000_000_000u64;
    let mut data = rec(1, 10_000_000, 10_000, ms, ms + 10_000); // good
    data.extend(rec(2, u64::MAX, 1, ms, ms)); // 16 EB: out
    data.extend(rec(3, 199, 10, ms, ms)); // under 20 octets a packet: out
    data.extend(rec(4, 10 * (1 << 20) + 1, 10, ms, ms)); // over 1 MiB a packet: out
    data.extend(rec(5, 10 * (1 << 20), 10, ms, u64::MAX)); // end past 2116: start kept
    data.extend(rec(6, 1_500, 0, ms, ms)); // octets in no packets: out (it was kept)
    data.extend(rec(7, 0, 0, ms, ms)); // nothing at all: a record of nothing, kept
    let mut x = Exported::new();
    x.offer(src, 4739, &ipfix_message(&[(2, template(300, &fields)), (300, data)]), 7);
    assert_eq!((x.stats.malformed, x.stats.ipfix_records), (5, 3));
    assert_eq!(x.flows.bytes, 10_000_000 + 10 * (1 << 20));
    let mut spans: Vec<(u8, u64, u64)> = x
        .flows
        .table
        .values()
        .map(|f| match f.key.src {
            std::net::IpAddr::V4(a) => (a.octets()[3], f.first_ns, f.last_ns - f.first_ns),
            _ => unreachable!(),
        })
        .collect();
    spans.sort();
    assert_eq!(spans, [(1, ms * 1_000_000, 10_000_000_000), (5, ms * 1_000_000, 0), (7, ms * 1_000_000, 0)]);
    // A template without packetDeltaCount: octets alone are a count, not a corrupt record.
    let octets_only = [(8, 4), (12, 4), (1, 8)];
    let mut r = vec![10, 1, 0, 8, 10, 2, 0, 8];
    r.extend_from_slice(&3_000u64.to_be_bytes());
    x.offer(src, 4739, &ipfix_message(&[(2, template(301, &octets_only)), (301, r)]), 8);
    assert_eq!((x.stats.malformed, x.stats.ipfix_records), (5, 4));
}

/// sFlow samples are held to the bounds captures are: a sampling rate of 0 (it was read as
/// 1) and a frame length shorter than the header sampled from it are corrupt and counted.
#[test]
fn sflow_samples_with_rate_0_or_frames_shorter_than_their_header_are_malformed() {
    use meshway_traffic::export::Exported;
    let src: std::net::IpAddr = "192.0.2.10".parse().unwrap();
    let frame = tcp(T0, A, B, (1, 2), 1, 1, 100, 100).1;
    assert!(frame.len() > 100);
    let mut s = Exported::new();
    s.offer(src, 6343, &sflow(&frame, 1504, 0), 0);
    assert_eq!((s.stats.malformed, s.flows.bytes), (1, 0), "rate 0");
    s.offer(src, 6343, &sflow(&frame, 60, 100), 1);
    assert_eq!((s.stats.malformed, s.flows.bytes), (2, 0), "a 60-byte frame with a longer header");
    // The frame as long as its header is whole: 100 frames of it.
    s.offer(src, 6343, &sflow(&frame, frame.len() as u32, 100), 2);
    assert_eq!((s.stats.malformed, s.flows.bytes), (2, 100 * frame.len() as u64));
}

/// A segment that starts before the next expected byte is a retransmission even when it runs
/// past it (a partial overlap), as Wireshark counts it; the start is tested, not the end.
/// Keep-alives and a zero-window probe (one byte at the next expected byte) are not.
#[test]
fn a_partly_overlapping_segment_is_a_retransmission() {
    let t = |us: u64| T0 + us * US;
    let p = (40000, 5201);
    let frames = vec![
        tcp(t(0), A, B, p, 1000, 1, 65535, 1000), // 1000..2000
        tcp(t(1), A, B, p, 1500, 1, 65535, 1000), // 1500..2500: overlaps, a retransmission
        tcp(t(2), A, B, p, 2500, 1, 65535, 1000), // 2500..3500: new
        tcp(t(3), A, B, p, 3000, 1, 65535, 100),  // 3000..3100: inside, a retransmission
        tcp(t(4), A, B, p, 3499, 1, 65535, 1),    // keep-alive
        tcp(t(5), A, B, p, 3500, 1, 65535, 1),    // a window probe: the next byte
        tcp(t(6), A, B, p, 3600, 1, 65535, 100),  // past a gap: new
    ];
    let (_, flows) = read(&pcap(&frames, false, 65535));
    let f = flows.table.values().next().unwrap();
    assert_eq!(f.tcp.as_ref().unwrap().retransmissions, 2);
}

/// A whole pcapng file whose blocks are wrong says what is wrong and where, rather than
/// "cut short" or "link types meshway does not decode".
#[test]
fn malformed_pcapng_blocks_are_named_with_their_offset() {
    let shb = |bom: u32, len: Option<u32>| {
        let mut b = bom.to_le_bytes().to_vec();
        b.extend_from_slice(&[1, 0, 0, 0]);
        b.extend_from_slice(&(-1i64).to_le_bytes());
        let mut out = Vec::new();
        block(&mut out, 0x0a0d_0d0a, &b);
        if let Some(l) = len {
            out[4..8].copy_from_slice(&l.to_le_bytes());
        }
        out
    };
    let idb = || {
        let mut out = Vec::new();
        block(&mut out, 1, &[1, 0, 0, 0, 0, 0, 0, 0]);
        out
    };
    let frame = udp(T0, A, B, (1, 2), &[0; 100]).1;
    let epb = |iface: u32, caplen: u32| {
        let mut b = iface.to_le_bytes().to_vec();
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&caplen.to_le_bytes());
        b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        b.extend_from_slice(&frame);
        let mut out = Vec::new();
        block(&mut out, 6, &b);
        out
    };
    let file = |parts: &[Vec<u8>]| parts.concat();
    let err = |b: Vec<u8>| capture::read(&b[..], &mut |_| {}).unwrap_err().to_string();
    let stop = |b: Vec<u8>| {
        let mut n = 0;
        let info = capture::read(&b[..], &mut |_| n += 1).unwrap();
        (n, info.stopped_early.unwrap_or_default())
    };
    let ok = file(&[shb(0x1a2b_3c4d, None), idb(), epb(0, frame.len() as u32)]);
    assert_eq!(stop(ok.clone()), (1, String::new()));
    assert_eq!(
        err(file(&[shb(0xdead_beef, None), idb(), epb(0, 142)])),
        "malformed capture: the section header block at byte 0 has byte-order magic 0xdeadbeef at byte 8, not 0x1a2b3c4d"
    );
    assert_eq!(
        err(file(&[shb(0x1a2b_3c4d, Some(16)), idb(), epb(0, 142)])),
        "malformed capture: the section header block at byte 0 is 16 bytes long; it needs at least 28, a multiple of 4"
    );
    assert_eq!(
        stop(file(&[shb(0x1a2b_3c4d, None), idb(), epb(0, 5000)])),
        (0, "malformed capture: the enhanced packet block at byte 48 claims 5000 captured bytes, more than its 176-byte block holds (144); packets after it are not read".to_string())
    );
    let mut short_idb = idb();
    short_idb.truncate(14);
    short_idb[4..8].copy_from_slice(&14u32.to_le_bytes());
    assert_eq!(
        stop(file(&[shb(0x1a2b_3c4d, None), short_idb])),
        (0, "malformed capture: the interface description block at byte 28 is 14 bytes long; it needs at least 20, a multiple of 4; packets after it are not read".to_string())
    );
    assert_eq!(
        stop(file(&[shb(0x1a2b_3c4d, None), epb(0, 142)])),
        (0, "malformed capture: an enhanced packet block at byte 28 is on interface 0, but its section defines 0 interfaces; packets after it are not read".to_string())
    );
    assert_eq!(
        stop(file(&[shb(0x1a2b_3c4d, None), idb(), epb(0, 142), epb(5, 142)])),
        (1, "malformed capture: an enhanced packet block at byte 224 is on interface 5, but its section defines 1 interface; packets after it are not read".to_string())
    );
    // A file that really ends inside a block is still cut short.
    assert_eq!(
        stop(ok[..ok.len() - 10].to_vec()),
        (0, "the capture ends inside a packet at byte 48 (cut short)".to_string())
    );
    assert_eq!(err(ok[..20].to_vec()), "the capture ends inside its file header, after 20 bytes (cut short)");
}

/// pcapng's if_tsoffset moves an interface's times by whole seconds, either way; a time it
/// moves before 1970 is corrupt (counted, not clamped to 0, which made two packets 1 s apart
/// simultaneous), and so is one on an interface whose if_tsresol does not fit 64 bits.
#[test]
fn interface_time_offsets_apply_either_way_and_bad_resolutions_are_bad_times() {
    // One interface with options (if_tsresol: code 9; if_tsoffset: code 14, 8 bytes) and
    // two packets `units` apart.
    let file = |resol: u8, offset: i64, units: [u64; 2]| {
        let mut out = section();
        let mut idb = vec![1, 0, 0, 0, 0xff, 0xff, 0, 0];
        idb.extend_from_slice(&[9, 0, 1, 0, resol, 0, 0, 0]);
        idb.extend_from_slice(&[14, 0, 8, 0]);
        idb.extend_from_slice(&offset.to_le_bytes());
        idb.extend_from_slice(&[0, 0, 0, 0]);
        block(&mut out, 1, &idb);
        let f = udp(0, A, B, (1, 2), &[0; 50]).1;
        for u in units {
            epb(&mut out, u, &f);
        }
        let mut seen = Vec::new();
        let info = capture::read(&out[..], &mut |p| seen.push(p.ts_ns)).unwrap();
        (seen, info.bad_time_packets)
    };
    const S: u64 = 1_000_000_000;
    // Microseconds relative to an offset of 1.78e9 s: absolute times, 1 s apart.
    assert_eq!(file(6, 1_780_000_000, [0, 1_000_000]), (vec![1_780_000_000 * S, 1_780_000_001 * S], 0));
    // A negative offset from absolute times.
    assert_eq!(
        file(6, -10, [1_780_000_000_000_000, 1_780_000_001_000_000]),
        (vec![1_779_999_990 * S, 1_779_999_991 * S], 0)
    );
    // Before 1970: both corrupt, and with no good time before them, left out.
    assert_eq!(file(6, -10, [0, 1_000_000]), (vec![], 2));
    // 10^-25 s units do not fit 64 bits.
    assert_eq!(file(25, 0, [0, 1_000_000]), (vec![], 2));
}

// ---------------------------------------------------------------------------------------------
// TCP analysis against Wireshark's tcp.analysis rules (tshark 4.0 gives the same counts for
// these captures)

const SYN: u8 = 1;
const FIN: u8 = 2;
const ACK: u8 = 4;

/// A TCP segment with `flags` (SYN, FIN, ACK above) and `len` bytes of payload.
#[allow(clippy::too_many_arguments)]
fn seg(
    t: u64,
    src: [u8; 4],
    dst: [u8; 4],
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    len: usize,
) -> Frame {
    let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64).tcp(ports.0, ports.1, seq, win);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    if flags & ACK != 0 {
        b = b.ack(ack);
    }
    let mut v = Vec::new();
    b.write(&mut v, &vec![0x79; len]).unwrap();
    (t, v)
}

/// The TCP counts of the flow from `src`: (retransmissions, duplicate ACKs, zero windows).
fn tcp_counts(flows: &Flows, src: [u8; 4]) -> (u64, u64, u64) {
    let f = flows.table.values().find(|f| f.key.src == Ipv4Addr::from(src)).unwrap();
    let t = f.tcp.as_ref().unwrap();
    (t.retransmissions, t.dup_acks, t.zero_windows)
}

/// A zero-window episode: the receiver closes its window, the sender probes twice with the
/// next byte (not accepted), the window reopens and the sender sends from the probed byte on.
/// The probes do not advance the next expected byte, so that data is no retransmission; the
/// receiver's repeated zero-window ACKs are no duplicate ACKs (the window is 0), and the ACK
/// answering a keep-alive is none either. tshark: 0 retransmissions, 2 duplicate ACKs (the
/// last two), 3 zero windows, 2 zero-window probes (and 2 ACKs to them), 1 keep-alive (and 2
/// ACKs to it).
#[test]
fn zero_window_probes_and_zero_window_acks_are_no_retransmissions_or_duplicate_acks() {
    let t = |ms: u64| T0 + ms * 1_000 * US;
    let (c, s) = ((1000, 80), (80, 1000));
    let frames = vec![
        seg(t(0), A, B, c, 100, 0, SYN, 65535, 0),
        seg(t(1), B, A, s, 500, 101, SYN | ACK, 65535, 0),
        seg(t(2), A, B, c, 101, 501, ACK, 65535, 0),
        seg(t(3), A, B, c, 101, 501, ACK, 65535, 1000),
        seg(t(4), B, A, s, 501, 1101, ACK, 0, 0),          // zero window
        seg(t(200), A, B, c, 1101, 501, ACK, 65535, 1),    // probe
        seg(t(201), B, A, s, 501, 1101, ACK, 0, 0),        // zero window again (probe ACK): not a dup ACK
        seg(t(600), A, B, c, 1101, 501, ACK, 65535, 1),    // probe again
        seg(t(601), B, A, s, 501, 1101, ACK, 0, 0),        // and again
        seg(t(602), B, A, s, 501, 1101, ACK, 65535, 0),    // the window opens
        seg(t(603), A, B, c, 1101, 501, ACK, 65535, 1000), // from the probed byte: new data
        seg(t(604), B, A, s, 501, 2101, ACK, 65535, 0),
        seg(t(700), A, B, c, 2100, 501, ACK, 65535, 0), // keep-alive
        seg(t(701), B, A, s, 501, 2101, ACK, 65535, 0), // its ACK: not a dup ACK
        seg(t(702), B, A, s, 501, 2101, ACK, 65535, 0), // still answering the keep-alive
        seg(t(800), A, B, c, 2101, 501, ACK, 65535, 100),
        seg(t(801), B, A, s, 501, 2201, ACK, 65535, 0),
        seg(t(802), B, A, s, 501, 2201, ACK, 65535, 0), // duplicate ACK
        seg(t(803), B, A, s, 501, 2201, ACK, 65535, 0), // duplicate ACK
    ];
    let (_, flows) = read(&pcap(&frames, false, 65535));
    assert_eq!(tcp_counts(&flows, A), (0, 0, 0));
    assert_eq!(tcp_counts(&flows, B), (0, 2, 3));
    let a = flows.table.values().find(|f| f.key.src == Ipv4Addr::from(A)).unwrap();
    assert_eq!(a.payload_bytes, 2102);
}

/// The same 5-tuple reused: connection 1 (ISN 1,000,000) closes, and 5 s later a SYN at ISN
/// 5,000 opens connection 2, whose SYN-ACK, ACK and data follow, then its data again. tshark:
/// "A new tcp session is started with the same ports", 1 retransmission (the data resent),
/// not the new SYN, SYN-ACK and data; a SYN sent again at its ISN is still one.
#[test]
fn a_syn_at_a_new_isn_on_reused_ports_starts_a_new_connection() {
    let t = |ms: u64| T0 + ms * 1_000 * US;
    let (c, s) = ((2000, 80), (80, 2000));
    let frames = vec![
        seg(t(0), A, B, c, 1_000_000, 0, SYN, 65535, 0),
        seg(t(1), B, A, s, 9000, 1_000_001, SYN | ACK, 65535, 0),
        seg(t(2), A, B, c, 1_000_001, 9001, ACK, 65535, 1000),
        seg(t(3), A, B, c, 1_001_001, 9001, FIN | ACK, 65535, 0),
        seg(t(4), B, A, s, 9001, 1_001_002, FIN | ACK, 65535, 0),
        seg(t(5), A, B, c, 1_001_002, 9002, ACK, 65535, 0),
        seg(t(5005), A, B, c, 5000, 0, SYN, 65535, 0), // new connection, lower ISN
        seg(t(5006), B, A, s, 777, 5001, SYN | ACK, 65535, 0),
        seg(t(5007), A, B, c, 5001, 778, ACK, 65535, 500),
        seg(t(5008), A, B, c, 5001, 778, ACK, 65535, 500), // resent: a retransmission
        seg(t(9000), A, B, c, 5000, 0, SYN, 65535, 0),     // the SYN again: a retransmission
    ];
    let (_, flows) = read(&pcap(&frames, false, 65535));
    assert_eq!(tcp_counts(&flows, A), (2, 0, 0));
    assert_eq!(tcp_counts(&flows, B), (0, 0, 0));
}

/// Linux BIG TCP as tcpdump -s 128 records it: 150,000-byte frames, IPv4 with Total Length 0
/// and IPv6 with Payload Length 0 and a hop-by-hop Jumbo Payload option. The TCP payload comes
/// from the frame's wire length (IPv4) and the jumbo length (IPv6), as tshark's tcp.len does:
/// 149,946 and 149,918 bytes a segment; `--write-flows` carries it.
#[test]
fn big_tcp_and_jumbogram_payloads_come_from_the_wire_length_and_the_jumbo_option() {
    const WIRE: usize = 150_000;
    let v4 = |i: u32, src: [u8; 4], dst: [u8; 4]| {
        let mut v = Vec::new();
        let seq = 1000 + i * (WIRE as u32 - 54);
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src, dst, 64)
            .tcp(40000, 5201, seq, 1000)
            .ack(1)
            .write(&mut v, &[0x64; 80])
            .unwrap();
        v[16..18].copy_from_slice(&[0, 0]); // Total Length 0
        v.resize(WIRE, 0x64);
        (T0 + u64::from(i) * 1_000 * US, v)
    };
    let v6 = |i: u32| {
        let mut v = Vec::new();
        let seq = 1000 + i * (WIRE as u32 - 82);
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(40001, 5201, seq, 1000)
            .ack(1)
            .write(&mut v, &[0x64; 80])
            .unwrap();
        // A hop-by-hop header with the Jumbo Payload option (type 0xc2, length 4) before TCP:
        // the IPv6 next header becomes 0, its Payload Length 0.
        let mut w = v[..54].to_vec();
        w[20] = 0;
        w[18..20].copy_from_slice(&[0, 0]);
        w.extend_from_slice(&[6, 0, 0xc2, 4]);
        w.extend_from_slice(&(WIRE as u32 - 54).to_be_bytes());
        w.extend_from_slice(&v[54..]);
        w.resize(WIRE, 0x64);
        (T0 + (3 + u64::from(i)) * 1_000 * US, w)
    };
    let frames: Vec<Frame> = (0..3).map(|i| v4(i, A, B)).chain((0..3).map(v6)).collect();
    let (_, flows) = read(&pcap(&frames, false, 128));
    let payload = |port: u16| flows.table.values().find(|f| f.key.sport == port).unwrap().payload_bytes;
    assert_eq!((payload(40000), payload(40001)), (3 * 149_946, 3 * 149_918));
    assert_eq!(flows.bytes, 6 * WIRE as u64);
    // Between GPUs, the flows workload carries the payload.
    let (f, cat) = scenario();
    let plan = AddressPlan::new(&f, &cat, Ipv4Addr::new(10, 64, 0, 1)).unwrap();
    let (csv, n) = flows_csv(&flows, &plan);
    assert_eq!(n, 1, "{csv}");
    assert!(csv.contains("gpu-0,gpu-1,449838,0ns"), "{csv}");
}

/// pcapng's obsolete Packet Block (type 2), as Wireshark before pcapng 1.0 wrote it: an
/// interface id and drop count of 16 bits each, then an enhanced packet's fields. capinfos:
/// 3 packets, 426 bytes over 2 s, in either byte order; one on an undefined interface, or
/// claiming more bytes than it holds, stops the reading there.
#[test]
fn obsolete_packet_blocks_are_read_as_enhanced_ones() {
    let file = |be: bool, if_id: u16, caplen_extra: u32| {
        let w16 = |x: u16| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let w32 = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let block = |out: &mut Vec<u8>, typ: u32, body: &[u8]| {
            let len = 12 + body.len().div_ceil(4) * 4;
            out.extend_from_slice(&w32(typ));
            out.extend_from_slice(&w32(len as u32));
            out.extend_from_slice(body);
            out.resize(out.len() + (4 - body.len() % 4) % 4, 0);
            out.extend_from_slice(&w32(len as u32));
        };
        let mut out = Vec::new();
        let mut shb = w32(0x1a2b_3c4d).to_vec();
        shb.extend_from_slice(&w16(1));
        shb.extend_from_slice(&w16(0));
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        block(&mut out, 0x0a0d_0d0a, &shb);
        let mut idb = w16(1).to_vec();
        idb.extend_from_slice(&w16(0));
        idb.extend_from_slice(&w32(65535));
        block(&mut out, 1, &idb);
        for i in 0..3u64 {
            let (_, f) = udp(0, A, B, (5000, 9000), &[0x61; 100]);
            let units = T0 / 1000 + i * 1_000_000;
            let mut pb = w16(if i == 2 { if_id } else { 0 }).to_vec();
            pb.extend_from_slice(&w16(0)); // drops
            pb.extend_from_slice(&w32((units >> 32) as u32));
            pb.extend_from_slice(&w32(units as u32));
            pb.extend_from_slice(&w32(f.len() as u32 + if i == 2 { caplen_extra } else { 0 }));
            pb.extend_from_slice(&w32(f.len() as u32));
            pb.extend_from_slice(&f);
            block(&mut out, 2, &pb);
        }
        out
    };
    for be in [false, true] {
        let (info, flows) = read(&file(be, 0, 0));
        assert_eq!((info.format, info.packets, info.stopped_early.as_deref()), ("pcapng", 3, None), "big-endian {be}");
        assert_eq!((flows.packets, flows.bytes, flows.last_ns - flows.first_ns.unwrap()), (3, 426, 2_000_000_000));
        assert_eq!(flows.table.values().next().unwrap().payload_bytes, 300);
    }
    let (info, flows) = read(&file(false, 1, 0));
    assert_eq!((info.packets, flows.packets), (2, 2));
    let why = info.stopped_early.unwrap();
    assert!(why.contains("a packet block at byte") && why.contains("interface 1"), "{why}");
    let (info, _) = read(&file(false, 0, 400));
    let why = info.stopped_early.unwrap();
    assert!(why.contains("packet block at byte") && why.contains("claims 542 captured bytes"), "{why}");
}

/// A pcap LinkType with the FCS bits set (bit 26, and bits 28-31 the FCS length in 16-bit
/// words) is still Ethernet: the mask of its low 26 bits, and each frame's 4-byte FCS left
/// out of its bytes (the capture read as 0 packets on a link type meshway does not decode).
#[test]
fn a_link_type_with_fcs_bits_is_ethernet_without_the_fcs() {
    let plain = frames();
    let with_fcs: Vec<Frame> =
        plain.iter().map(|(t, f)| (*t, [f.as_slice(), &[0xde, 0xad, 0xbe, 0xef]].concat())).collect();
    let mut bytes = pcap(&with_fcs, false, 65535);
    bytes[20..24].copy_from_slice(&(1u32 | 1 << 26 | 2 << 28).to_le_bytes());
    let (info, flows) = read(&bytes);
    assert_eq!(info.other_linktype_packets, 0);
    let (_, reference) = read(&pcap(&plain, false, 65535));
    let sum = |f: &Flows| {
        f.table
            .values()
            .map(|x| (x.bytes, x.payload_bytes, x.packets))
            .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
    };
    assert_eq!(sum(&flows), sum(&reference));
    assert_eq!(flows.table.len(), reference.table.len());
}

/// An Enhanced Packet Block whose length is not a multiple of 4 is malformed even when it
/// captured nothing (the parser took it, and the blocks after it were misread as a phantom
/// packet).
#[test]
fn an_enhanced_packet_block_of_odd_length_stops_the_read() {
    let mut out = section();
    let mut idb = 1u16.to_le_bytes().to_vec(); // LINKTYPE_ETHERNET
    idb.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    block(&mut out, 1, &idb);
    let (_, f) = &frames()[0];
    epb(&mut out, 1, f);
    let at = out.len();
    // 41 bytes: the 28-byte header and body of an empty packet, 9 bytes of junk, the length.
    let mut bad = 6u32.to_le_bytes().to_vec();
    bad.extend_from_slice(&41u32.to_le_bytes());
    bad.extend_from_slice(&[0; 20]);
    bad.extend_from_slice(&[0; 9]);
    bad.extend_from_slice(&41u32.to_le_bytes());
    assert_eq!(bad.len(), 41);
    out.extend_from_slice(&bad);
    epb(&mut out, 2, f);
    let (info, _) = read(&out);
    let why = info.stopped_early.expect("malformed");
    assert!(
        why.contains(&format!("byte {at}")) && why.contains("41 bytes long") && why.contains("multiple of 4"),
        "{why}"
    );
    assert_eq!(info.packets, 1);
}

/// A record that captured more bytes than its frame had on the wire is corrupt: counted, at
/// its captured length (it was taken silently).
#[test]
fn a_capture_longer_than_its_frame_is_counted_as_corrupt() {
    let fr = frames();
    let mut bytes = pcap(&fr, false, 65535);
    // The first record's orig_len (after the 24-byte file header: ts_sec, ts_usec, incl_len).
    bytes[24 + 12..24 + 16].copy_from_slice(&10u32.to_le_bytes());
    let (info, flows) = read(&bytes);
    assert_eq!((info.short_wire_packets, info.bad_length_packets), (1, 0));
    let (clean, reference) = read(&pcap(&fr, false, 65535));
    assert_eq!(clean.short_wire_packets, 0);
    let total = |f: &Flows| f.table.values().map(|x| x.bytes).sum::<u64>();
    assert_eq!(total(&flows), total(&reference));
}
