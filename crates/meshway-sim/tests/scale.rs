//! Scale checks: nothing quadratic in the number of flows when components stay small, and
//! a large single component converges in few recomputes when flows are symmetric. Not timed.

use meshway_sim::{FlowId, FlowSpec, LinkId, Network, SimResult, Simulation};
use meshway_units::{BitsPerSec, Bytes, Nanos, SimTime};

/// `links` independent links with `per_link` flows each, of distinct sizes so that almost
/// every flow finishes at its own time, plus a dependency from each flow to the one added
/// `per_link` earlier (on the previous link).
fn disjoint(links: u32, per_link: u32) -> Simulation {
    let mut net = Network::new();
    let ids: Vec<LinkId> =
        (0..links).map(|i| net.add_link(BitsPerSec::gbps(100 + u64::from(i % 7)), Nanos(500))).collect();
    let mut sim = Simulation::new(net);
    for i in 0..links * per_link {
        let link = ids[(i % links) as usize];
        let deps = if i >= links * (per_link - 1) { vec![FlowId(i - links)] } else { vec![] };
        let spec = FlowSpec::new(vec![link], Bytes(50_000 + u64::from(i) * 37), SimTime(u64::from(i % 13) * 100))
            .after(deps, Nanos(100))
            .last_packet(Bytes(4096));
        sim.add_flow(spec).unwrap();
    }
    sim
}

/// All-to-all among `hosts` hosts behind one non-blocking switch: uplink and downlink per host.
fn all_to_all(hosts: u32, size: Bytes) -> Simulation {
    all_to_all_sized(hosts, |_, _| size)
}

/// All-to-all with a size per (source, destination) pair.
fn all_to_all_sized(hosts: u32, size: impl Fn(usize, usize) -> Bytes) -> Simulation {
    let mut net = Network::new();
    let up: Vec<LinkId> = (0..hosts).map(|_| net.add_link(BitsPerSec::gbps(400), Nanos(600))).collect();
    let down: Vec<LinkId> = (0..hosts).map(|_| net.add_link(BitsPerSec::gbps(400), Nanos(600))).collect();
    let mut sim = Simulation::new(net);
    for (s, &src) in up.iter().enumerate() {
        for (d, &dst) in down.iter().enumerate().filter(|&(d, _)| d != s) {
            sim.add_flow(FlowSpec::new(vec![src, dst], size(s, d), SimTime::ZERO).last_packet(Bytes(4096))).unwrap();
        }
    }
    sim
}

fn assert_all_done(r: &SimResult) {
    assert_eq!(r.stalled().count(), 0);
}

#[test]
fn ten_thousand_flows_in_small_components() {
    let mut sim = disjoint(1_000, 10);
    let r = sim.run().unwrap();
    assert_eq!(r.flows.len(), 10_000);
    assert_all_done(&r);
    assert!(r.events >= 20_000, "one activation and one finish per flow: {}", r.events);
}

#[test]
fn ten_thousand_flows_all_to_all_in_one_component() {
    let hosts = 101;
    let mut sim = all_to_all(hosts, Bytes(1 << 20));
    let r = sim.run().unwrap();
    assert_eq!(r.flows.len(), 10_100);
    assert_all_done(&r);
    // Every uplink carries 100 flows, so each gets 4 Gbps and all finish together:
    // 1 MiB at 4 Gbps = 2,097,152 ns, + 1,200 ns latency + 4096 B at 400 Gbps (82 ns).
    assert!(r.flows.iter().all(|f| f.end == Some(SimTime(2_097_152 + 1_200 + 82))));
    assert_eq!(r.recomputes, 2);
}

/// Timing aids, run by hand in release and timed from outside (the crate has no wall clock):
/// `cargo test -p meshway-sim --release --test scale -- --ignored --exact NAME`.
/// Staggered arrivals on 8 links: about ten flows in flight per link at any time.
#[test]
#[ignore = "timing aid, run in release"]
fn timing_100k_staggered() {
    let mut net = Network::new();
    let links: Vec<LinkId> = (0..8).map(|_| net.add_link(BitsPerSec::gbps(100), Nanos(1_000))).collect();
    let mut sim = Simulation::new(net);
    for i in 0..100_000u64 {
        let a = links[(i % 8) as usize];
        let b = links[((i * 3 + 1) % 8) as usize];
        let path = if a == b { vec![a] } else { vec![a, b] };
        sim.add_flow(FlowSpec::new(path, Bytes(100_000 + i % 1_000), SimTime(i * 10_000))).unwrap();
    }
    assert_all_done(&sim.run().unwrap());
}

/// 100k flows of distinct sizes all at once on 8 links (8 components of 12,500 flows, one
/// finish event per flow): the worst case, O(flows²/links).
#[test]
#[ignore = "timing aid, run in release"]
fn timing_100k_simultaneous_distinct_sizes() {
    assert_all_done(&disjoint(8, 12_500).run().unwrap());
}

/// 100k equal flows all-to-all among 317 hosts: one big component, two recomputes.
#[test]
#[ignore = "timing aid, run in release"]
fn timing_100k_all_to_all() {
    assert_all_done(&all_to_all(317, Bytes(1 << 20)).run().unwrap());
}

/// The design target: all-to-all among 1,024 hosts, 1 MiB each (1,047,552 flows), here on
/// a single non-blocking switch.
#[test]
#[ignore = "timing aid, run in release"]
fn timing_1m_all_to_all() {
    let r = all_to_all(1_024, Bytes(1 << 20)).run().unwrap();
    assert_all_done(&r);
    assert_eq!(r.flows.len(), 1_047_552);
}

/// As above with 16 size classes (1 MiB + k·4 KiB), so rates change 16 times and every
/// recompute covers the whole million-flow component.
#[test]
#[ignore = "timing aid, run in release"]
fn timing_1m_all_to_all_16_sizes() {
    let r = all_to_all_sized(1_024, |s, d| Bytes((1 << 20) + ((s * 31 + d * 17) % 16) as u64 * 4096)).run().unwrap();
    assert_all_done(&r);
    assert_eq!(r.recomputes, 17);
}
