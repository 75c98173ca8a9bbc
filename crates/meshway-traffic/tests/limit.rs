//! The flow table's limit: flows past it have no entry, but every total that needs none
//! (bytes, packets, protocol and scope bytes, shares, GPU talkers, matrices, RoCEv2 signals)
//! counts them exactly; their number is exact up to 65,536, then estimated. And an address
//! plan that would run past 255.255.255.255 is refused.

use meshway_fabric::{Catalog, Fabric, Scenario};
use meshway_traffic::analysis::{analyse, AddressPlan, Classifier, Options, Scope, TrafficReport};
use meshway_traffic::capture;
use meshway_traffic::flows::{Flow, FlowKey, Flows, DEFAULT_MAX_FLOWS};
use meshway_traffic::synth::{pcap_header, pcap_record, udp_frame};
use std::net::{IpAddr, Ipv4Addr};

const T0: u64 = 1_780_000_000_000_000_000;

fn testbed() -> (Fabric, Catalog) {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/testbed-2x2.toml")).unwrap();
    let cat = Catalog::builtin();
    let f = Scenario::parse(&text, "testbed-2x2.toml").unwrap().build(&cat).unwrap();
    (f, cat)
}

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// A RoCEv2 packet's UDP payload: the BTH (opcode, PSN), an AETH for an Acknowledge
/// (`syndrome`), `len` bytes of data and the ICRC.
fn bth(opcode: u8, psn: u8, syndrome: Option<u8>, len: usize) -> Vec<u8> {
    let mut p = vec![opcode, 0, 0xff, 0xff, 0, 0, 0, 0x11, 0, 0, 0, psn];
    if let Some(s) = syndrome {
        p.extend_from_slice(&[s, 0, 0, 1]);
    }
    p.extend(std::iter::repeat_n(0u8, len + 4));
    p
}

/// Packets in the order of the capture: two flows fill a table of 2; the rest are beyond it.
/// GPUs of testbed-2x2 are 10.64.0.1-4 (gpu-0 and gpu-1 on leaf-0, gpu-2 and gpu-3 on leaf-1).
fn frames() -> Vec<Vec<u8>> {
    let (g0, g1, g2, g3) = ([10, 64, 0, 1], [10, 64, 0, 2], [10, 64, 0, 3], [10, 64, 0, 4]);
    let mut v = Vec::new();
    // In the table: gpu-0 -> gpu-2 RoCE writes (3 packets) and gpu-1 -> gpu-0 UDP.
    for psn in 0..3 {
        v.push(udp_frame(ip(g0), ip(g2), (49152, 4791), &bth(0x0a, psn, None, 1000)));
    }
    v.push(udp_frame(ip(g1), ip(g0), (7000, 7001), &[0; 300]));
    // Beyond it: the signals back from gpu-2 (a NAK, an RNR NAK, a CNP: one flow),
    v.push(udp_frame(ip(g2), ip(g0), (49153, 4791), &bth(0x11, 0, Some(0x60), 0)));
    v.push(udp_frame(ip(g2), ip(g0), (49153, 4791), &bth(0x11, 0, Some(0x20), 0)));
    v.push(udp_frame(ip(g2), ip(g0), (49153, 4791), &bth(0x81, 0, None, 16)));
    // gpu-3 -> gpu-1 (2 packets), gpu-3 to the outside (north-south), and the table's first
    // flow again (still counted in its entry).
    v.push(udp_frame(ip(g3), ip(g1), (7000, 7002), &[0; 500]));
    v.push(udp_frame(ip(g3), ip(g1), (7000, 7002), &[0; 500]));
    v.push(udp_frame(ip(g3), ip([8, 8, 8, 8]), (5353, 53), &[0; 40]));
    v.push(udp_frame(ip(g0), ip(g2), (49152, 4791), &bth(0x0a, 3, None, 1000)));
    v
}

fn read(frames: &[Vec<u8>], flows: &mut Flows) -> capture::CaptureInfo {
    let mut bytes = pcap_header(65_535).to_vec();
    for (i, f) in frames.iter().enumerate() {
        pcap_record(&mut bytes, T0 + i as u64 * 1_000, f, 65_535).unwrap();
    }
    capture::read(bytes.as_slice(), &mut |p| {
        flows.add(p);
    })
    .unwrap()
}

fn report(max: usize) -> (TrafficReport, Flows) {
    let (f, cat) = testbed();
    let plan = AddressPlan::new(&f, &cat, Ipv4Addr::new(10, 64, 0, 1)).unwrap();
    let o = Options { internal: vec!["10.64.0.0/16".parse().unwrap()], ..Options::default() };
    let mut flows = Flows::with_limit(max, Classifier::new(&o.internal, Some(plan.places())));
    let info = read(&frames(), &mut flows);
    (analyse(info, &flows, Some(&plan), &o), flows)
}

#[test]
fn a_full_table_counts_the_flows_beyond_it_in_every_total_that_needs_no_entry() {
    let (all, _) = report(DEFAULT_MAX_FLOWS);
    let (cut, flows) = report(2);
    let sizes: Vec<u64> = frames().iter().map(|f| f.len() as u64).collect();
    let total: u64 = sizes.iter().sum();
    // Whole: 11 packets in 5 flows; nothing beyond.
    assert_eq!((all.packets, all.bytes, all.flows, all.beyond_table.packets), (11, total, 5, 0));
    // Cut at 2 flows: the 3 others (6 packets, frames 4-9) beyond, exactly; the first flow's
    // 4th packet (frame 10) still in its entry.
    assert_eq!((cut.packets, cut.bytes, cut.flows, cut.max_flows), (11, total, 2, 2));
    let beyond_bytes: u64 = sizes[4..10].iter().sum();
    let b = &cut.beyond_table;
    assert_eq!((b.flows, b.flows_estimated, b.packets, b.bytes), (3, false, 6, beyond_bytes));
    // Payload: the NAK and RNR NAK (BTH, AETH, ICRC: 20 bytes each), the CNP (BTH, 16
    // bytes, ICRC: 32), then 500 + 500 and 40 bytes of UDP payload.
    assert_eq!(b.payload_bytes, 20 + 20 + 32 + 500 + 500 + 40);
    let first = flows.table.values().next().unwrap();
    assert_eq!((first.packets, first.roce.as_ref().unwrap().psn_gaps), (4, 0));
    // Every total that needs no flow entry is the same.
    assert_eq!(cut.east_west_share, all.east_west_share);
    // The one north-south packet (frame 9, to 8.8.8.8) is beyond the table.
    assert!((cut.east_west_share - (1.0 - sizes[9] as f64 / total as f64)).abs() < 1e-12);
    let bytes_by = |r: &TrafficReport| -> Vec<(Scope, u64)> { r.scopes.iter().map(|s| (s.scope, s.bytes)).collect() };
    assert_eq!(bytes_by(&cut), bytes_by(&all));
    let protos = |r: &TrafficReport| -> Vec<(&str, u64)> { r.protocols.iter().map(|p| (p.0, p.2)).collect() };
    assert_eq!(protos(&cut), protos(&all));
    let rocev2 = sizes[..3].iter().sum::<u64>() + sizes[4..7].iter().sum::<u64>() + sizes[10];
    assert_eq!(protos(&cut), vec![("rocev2", rocev2), ("udp", sizes[3] + sizes[7] + sizes[8] + sizes[9])]);
    assert_eq!(cut.matrices, all.matrices);
    let t = |r: &TrafficReport| (r.trouble.naks, r.trouble.rnr_naks, r.trouble.cnps);
    assert_eq!((t(&cut), t(&all)), ((1, 1, 1), (1, 1, 1)));
    // GPU talkers: bytes sent and received the same; flows counted are the table's.
    let talkers = |r: &TrafficReport| -> Vec<(IpAddr, u64, u64)> {
        let mut v: Vec<_> = r
            .top_talkers
            .iter()
            .filter(|t| t.gpu.is_some())
            .map(|t| (t.address, t.sent_bytes, t.received_bytes))
            .collect();
        v.sort();
        v
    };
    assert_eq!(talkers(&cut), talkers(&all));
    // The flow counts, sizes and top flows are the table's.
    assert_eq!(cut.scopes.iter().map(|s| s.flows).sum::<u64>(), 2);
    assert_eq!(cut.size_bins.iter().map(|s| s.flows).sum::<u64>(), 2);
    assert_eq!(cut.top_flows.len(), 2);
}

#[test]
fn flows_beyond_the_table_are_counted_exactly_to_65536_then_estimated() {
    let frame = |i: u32| {
        let [a, b, c, d] = (0x0a00_0000 + i).to_be_bytes();
        udp_frame(ip([a, b, c, d]), ip([10, 200, 0, 1]), (1000, 2000), &[])
    };
    for (n, estimated) in [(1_000u32, false), (65_537, false), (65_538, true), (150_000, true), (300_000, true)] {
        let mut flows = Flows::with_limit(1, Classifier::default());
        // Every flow twice: the second packet finds it counted.
        let frames: Vec<Vec<u8>> = (0..n).chain(0..n).map(frame).collect();
        read(&frames, &mut flows);
        let (count, est) = flows.beyond.flows();
        assert_eq!((est, flows.beyond.packets, flows.table.len()), (estimated, 2 * u64::from(n) - 2, 1), "{n}");
        let want = f64::from(n - 1);
        if estimated {
            // HyperLogLog with 2^16 registers: a standard error of 0.4%; 1.5% is past 3 of them.
            assert!((count as f64 - want).abs() / want < 0.015, "{n}: {count}");
        } else {
            assert_eq!(count, u64::from(n - 1));
        }
    }
}

#[test]
fn records_beyond_the_table_count_in_the_totals() {
    let mut flows = Flows::with_limit(1, Classifier::default());
    let key = |sport| FlowKey { src: ip([10, 0, 0, 1]), dst: ip([10, 0, 0, 2]), proto: 6, sport, dport: 80 };
    for (sport, packets) in [(1, 10), (2, 20), (1, 5), (3, 7)] {
        let bytes = 1_000 * packets;
        flows.add_record(Flow {
            key: key(sport),
            packets,
            bytes,
            payload_bytes: bytes - 40 * packets,
            first_ns: T0,
            last_ns: T0 + 1,
            tcp: None,
            roce: None,
        });
    }
    assert_eq!((flows.packets, flows.bytes, flows.table.len()), (42, 42_000, 1));
    assert_eq!(flows.table.get(&key(1)).map(|f| (f.packets, f.bytes)), Some((15, 15_000)));
    let b = &flows.beyond;
    assert_eq!((b.flows(), b.packets, b.bytes, b.payload_bytes), ((2, false), 27, 27_000, 27_000 - 27 * 40));
}

#[test]
fn an_address_plan_past_255_255_255_255_is_refused() {
    let (f, cat) = testbed();
    let e = AddressPlan::new(&f, &cat, Ipv4Addr::new(255, 255, 255, 254)).err().unwrap();
    assert_eq!((e.gpus, e.highest), (4, Ipv4Addr::new(255, 255, 255, 252)));
    assert_eq!(
        e.to_string(),
        "base address 255.255.255.254 + 4 GPUs passes 255.255.255.255 (GPU rank r has the base + r): the highest base for 4 GPUs is 255.255.255.252"
    );
    // The highest base that fits: gpu-3 at 255.255.255.255, and nothing wraps to 0.0.0.0.
    let plan = AddressPlan::new(&f, &cat, Ipv4Addr::new(255, 255, 255, 252)).unwrap();
    assert_eq!(plan.rank(ip([255, 255, 255, 255])), Some(3));
    assert_eq!((plan.rank(ip([0, 0, 0, 0])), plan.gpus()), (None, 4));
}
