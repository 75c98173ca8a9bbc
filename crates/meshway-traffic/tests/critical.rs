//! RoCEv2 in a capture: its signals and largest flows on the fabric (critical links), and each
//! queue pair's PSN sequence and ECN marks.

use etherparse::PacketBuilder;
use meshway_fabric::{Catalog, Scenario};
use meshway_traffic::analysis::{analyse, AddressPlan, Options};
use meshway_traffic::capture;
use meshway_traffic::flows::Flows;
use std::net::Ipv4Addr;

/// A RoCEv2 packet from `sport`: the Base Transport Header (opcode first), the AETH for an
/// Acknowledge, payload and ICRC; (ns, Ethernet frame).
fn roce(
    t: u64,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    opcode: u8,
    aeth: Option<u8>,
    payload: usize,
) -> (u64, Vec<u8>) {
    let mut p = vec![opcode, 0, 0xff, 0xff, 0, 0, 0, 0x11, 0, 0, 0, 1];
    if let Some(s) = aeth {
        p.extend_from_slice(&[s, 0, 0, 1]);
    }
    p.extend(std::iter::repeat_n(0u8, payload));
    p.extend_from_slice(&[0, 0, 0, 0]);
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src, dst, 64).udp(sport, 4791);
    let mut v = Vec::new();
    b.write(&mut v, &p).unwrap();
    (t, v)
}

fn pcap(frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for x in [0xa1b2_3c4du32, 0x0004_0002, 0, 0, 65535, 1] {
        out.extend_from_slice(&x.to_le_bytes());
    }
    for (t, f) in frames {
        for x in [(t / 1_000_000_000) as u32, (t % 1_000_000_000) as u32, f.len() as u32, f.len() as u32] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(f);
    }
    out
}

/// Two queue pairs from GPU 0 to GPU 2 (across the leaves of testbed-2x2), and one NAK and
/// one CNP back: the capture cannot say which queue pair they answer, so every link of
/// either pair's path shows the host pair's 1 NAK and 1 CNP, once; the NIC links both queue
/// pairs share used to show 2 of each.
#[test]
fn a_host_pairs_naks_and_cnps_count_once_on_a_link() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/testbed-2x2.toml")).unwrap();
    let cat = Catalog::builtin();
    let f = Scenario::parse(&text, "testbed-2x2.toml").unwrap().build(&cat).unwrap();
    let plan = AddressPlan::new(&f, &cat, Ipv4Addr::new(10, 64, 0, 1)).unwrap();
    let (a, c) = ([10, 64, 0, 1], [10, 64, 0, 3]);
    let mut frames = Vec::new();
    for k in 0..20u64 {
        // RDMA WRITE Only (opcode 0x0a) on two queue pairs, the first larger.
        frames.push(roce(1_000 + k * 100, a, c, 49152, 0x0a, None, 4096));
        frames.push(roce(1_050 + k * 100, a, c, 49153, 0x0a, None, 2048));
    }
    frames.push(roce(5_000, c, a, 50000, 0x11, Some(0x60), 0)); // NAK (PSN sequence error)
    frames.push(roce(5_100, c, a, 50000, 0x81, None, 16)); // CNP
    let mut flows = Flows::new();
    let bytes = pcap(&frames);
    let info = capture::read(bytes.as_slice(), &mut |p| {
        flows.add(p);
    })
    .unwrap();
    let rep = analyse(info, &flows, Some(&plan), &Options::default());
    let shared: Vec<_> = rep.critical_links.iter().filter(|l| l.flows.len() == 2).collect();
    assert!(shared.len() >= 2, "both queue pairs leave and enter by the NICs: {:?}", rep.critical_links);
    for l in &rep.critical_links {
        // The data flows' links show the pair's signals once; the signals' own (flow 2, back
        // to GPU 0) none, as they are sent to nobody's sender on it.
        let want = if l.flows.contains(&2) { (0, 0) } else { (1, 1) };
        assert_eq!((l.roce_naks, l.roce_cnps), want, "{l:?}");
        // Flows are listed by rank, largest first, whatever order they were routed in.
        assert!(l.flows.windows(2).all(|w| w[0] < w[1]), "{l:?}");
    }
    assert_eq!(shared[0].flows, vec![0, 1]);
}

/// A RoCEv2 data packet of queue pair `qp` at `psn` (RDMA WRITE Only, 0x0a, 1 KiB), its IP
/// header's ECN field `ecn` (0b10 ECT(0), 0b11 CE).
fn write(t: u64, sport: u16, qp: u32, psn: u32, ecn: u8) -> (u64, Vec<u8>) {
    let mut p = vec![0x0a, 0, 0xff, 0xff, 0];
    p.extend_from_slice(&qp.to_be_bytes()[1..]);
    p.push(0);
    p.extend_from_slice(&psn.to_be_bytes()[1..]);
    p.extend(std::iter::repeat_n(0u8, 16 + 1024 + 4)); // RETH, payload, ICRC
    let mut ip = etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::UDP, [10, 64, 0, 1], [10, 64, 0, 3]).unwrap();
    ip.ecn = etherparse::IpEcn::try_new(ecn).unwrap();
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .udp(sport, 4791);
    let mut v = Vec::new();
    b.write(&mut v, &p).unwrap();
    (t, v)
}

/// Each queue pair's PSN sequence: PSNs 50 and 51 lost before the capture point are two
/// missing; the go-back-N resend of 50-59 after them is ten resent (50 and 51 among them, as
/// they come after 99); a sequence across the 24-bit wrap is in order; CE marks are counted.
/// These went unseen: a flow with loss, resends and marks showed no trouble.
#[test]
fn a_queue_pairs_psn_gaps_resends_and_ce_marks_are_counted() {
    let mut frames = Vec::new();
    let mut t = 1_000;
    let mut send = |sport: u16, qp: u32, psn: u32, ecn: u8| {
        frames.push(write(t, sport, qp, psn, ecn));
        t += 100;
    };
    for psn in (0..50).chain(52..100) {
        send(49152, 0x100, psn, if (10..13).contains(&psn) { 0b11 } else { 0b10 });
    }
    for psn in 50..60 {
        send(49152, 0x100, psn, 0b10);
    }
    // Another queue pair from 2^24 - 3 across the wrap: in order.
    for i in 0..6u32 {
        send(49153, 0x101, ((1 << 24) - 3 + i) % (1 << 24), 0b10);
    }
    let mut flows = Flows::new();
    let bytes = pcap(&frames);
    let info = capture::read(bytes.as_slice(), &mut |p| {
        flows.add(p);
    })
    .unwrap();
    let rep = analyse(info, &flows, None, &Options::default());
    let roce = |sport: u16| flows.table.values().find(|f| f.key.sport == sport).and_then(|f| f.roce.clone()).unwrap();
    let (a, b) = (roce(49152), roce(49153));
    assert_eq!((a.psn_gaps, a.psn_resent, a.ecn_ce), (2, 10, 3));
    assert_eq!((b.psn_gaps, b.psn_resent, b.ecn_ce), (0, 0, 0));
    let t = &rep.trouble;
    assert_eq!((t.psn_gaps, t.psn_resent, t.ecn_ce), (2, 10, 3));
    assert_eq!(rep.troubled_flows.len(), 1, "the queue pair in order is no trouble");
}
