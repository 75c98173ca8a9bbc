//! Closed-form checks: every case here has an answer computed by hand.

use meshway_sim::{FlowId, FlowSpec, LinkId, Network, SimError, SimResult, Simulation, Stall};
use meshway_units::{BitsPerSec, Bytes, Nanos, SimTime};

const MB: Bytes = Bytes(1_000_000);

fn end(r: &SimResult, f: FlowId) -> u64 {
    r.flows[f.index()].end.expect("flow completed").0
}

fn flow(path: &[LinkId], size: Bytes) -> FlowSpec {
    FlowSpec::new(path.to_vec(), size, SimTime::ZERO)
}

#[test]
fn one_flow_takes_size_over_rate_plus_latency_plus_last_packet() {
    let mut net = Network::new();
    let l = net.add_link(BitsPerSec::gbps(100), Nanos(500));
    let mut sim = Simulation::new(net);
    let f = sim.add_flow(flow(&[l], Bytes(1 << 20)).last_packet(Bytes(4096))).unwrap();
    let r = sim.run().unwrap();
    // 1 MiB at 100 Gbps = 83,886.08 ns -> 83,887; 4096 B at 100 Gbps = 327.68 ns -> 328.
    assert_eq!(end(&r, f), 83_887 + 500 + 328);
    let expect = BitsPerSec::gbps(100).transmit_time(Bytes(1 << 20)).0
        + 500
        + BitsPerSec::gbps(100).transmit_time(Bytes(4096)).0;
    assert_eq!(end(&r, f), expect);
    assert_eq!(r.flows[0].start, Some(SimTime::ZERO));
    assert_eq!(r.flows[0].delivered, Bytes(1 << 20));
    assert_eq!(r.link_stats[0].bytes, Bytes(1 << 20));
    assert_eq!(r.link_stats[0].busy, Nanos(83_887));
    assert_eq!(r.link_stats[0].peak_utilization, 1.0);
    assert_eq!(r.end, SimTime(84_715));
}

#[test]
fn fluid_finish_rounds_up_for_awkward_rates() {
    for (bytes, bps) in [(1u64, 3u64), (999_983, 7_000_000_001), (12_345, 1_000_000_007), (1 << 30, 400_000_000_000)] {
        let mut net = Network::new();
        let l = net.add_link(BitsPerSec(bps), Nanos::ZERO);
        let mut sim = Simulation::new(net);
        let f = sim.add_flow(flow(&[l], Bytes(bytes))).unwrap();
        let r = sim.run().unwrap();
        let exact = (u128::from(bytes) * 8_000_000_000).div_ceil(u128::from(bps)) as u64;
        assert_eq!(end(&r, f), exact, "{bytes} B at {bps} bit/s");
    }
}

#[test]
fn two_flows_on_one_link_get_half_each() {
    let mut net = Network::new();
    let l = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
    let mut sim = Simulation::new(net);
    let a = sim.add_flow(flow(&[l], MB)).unwrap();
    let b = sim.add_flow(flow(&[l], MB)).unwrap();
    sim.advance().unwrap();
    assert_eq!(sim.flow_rate(a), Some(BitsPerSec::gbps(5)));
    assert_eq!(sim.flow_rate(b), Some(BitsPerSec::gbps(5)));
    assert_eq!(sim.link_load(l), Some(BitsPerSec::gbps(10)));
    let r = sim.run().unwrap();
    // 2 * 8e6 bit / 1e10 bit/s = 1.6 ms.
    assert_eq!(end(&r, a), 1_600_000);
    assert_eq!(end(&r, b), 1_600_000);
    assert_eq!(r.link_stats[0].bytes, Bytes(2_000_000));
}

#[test]
fn rates_rise_when_a_flow_leaves() {
    let mut net = Network::new();
    let l = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
    let mut sim = Simulation::new(net);
    let small = sim.add_flow(flow(&[l], MB)).unwrap();
    let big = sim.add_flow(flow(&[l], Bytes(2_000_000))).unwrap();
    let r = sim.run().unwrap();
    // Both at 5 Gbps until the small one is done at 1.6 ms, then 1 MB alone at 10 Gbps.
    assert_eq!(end(&r, small), 1_600_000);
    assert_eq!(end(&r, big), 2_400_000);
    assert_eq!(r.link_stats[0].busy, Nanos(2_400_000));
}

#[test]
fn classic_three_flow_max_min_symmetric() {
    let mut net = Network::new();
    let l1 = net.add_link(BitsPerSec::gbps(1), Nanos::ZERO);
    let l2 = net.add_link(BitsPerSec::gbps(1), Nanos::ZERO);
    let mut sim = Simulation::new(net);
    let a = sim.add_flow(flow(&[l1, l2], MB)).unwrap();
    let b = sim.add_flow(flow(&[l1], MB)).unwrap();
    let c = sim.add_flow(flow(&[l2], MB)).unwrap();
    sim.advance().unwrap();
    for f in [a, b, c] {
        assert_eq!(sim.flow_rate(f), Some(BitsPerSec(500_000_000)));
    }
    let r = sim.run().unwrap();
    // 8e6 bit at 0.5 Gbps = 16 ms for everyone.
    for f in [a, b, c] {
        assert_eq!(end(&r, f), 16_000_000);
    }
}

#[test]
fn classic_three_flow_max_min_asymmetric() {
    let mut net = Network::new();
    let l1 = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
    let l2 = net.add_link(BitsPerSec::gbps(4), Nanos::ZERO);
    let mut sim = Simulation::new(net);
    let a = sim.add_flow(flow(&[l1, l2], MB)).unwrap();
    let b = sim.add_flow(flow(&[l1], MB)).unwrap();
    let c = sim.add_flow(flow(&[l2], MB)).unwrap();
    sim.advance().unwrap();
    assert_eq!(sim.flow_rate(a), Some(BitsPerSec::gbps(2)));
    assert_eq!(sim.flow_rate(b), Some(BitsPerSec::gbps(8)));
    assert_eq!(sim.flow_rate(c), Some(BitsPerSec::gbps(2)));
    let r = sim.run().unwrap();
    // B: 8e6 bit at 8 Gbps = 1 ms. A and C stay at 2 Gbps (L2 is their bottleneck): 4 ms.
    assert_eq!(end(&r, b), 1_000_000);
    assert_eq!(end(&r, a), 4_000_000);
    assert_eq!(end(&r, c), 4_000_000);
    assert_eq!(r.link_stats[l1.index()].peak_utilization, 1.0);
    assert_eq!(r.link_stats[l1.index()].bytes, Bytes(2_000_000));
}

#[test]
fn dependency_starts_after_completion_plus_delay() {
    let mut net = Network::new();
    let l = net.add_link(BitsPerSec::gbps(10), Nanos(1_000));
    let mut sim = Simulation::new(net);
    let a = sim.add_flow(flow(&[l], MB)).unwrap();
    let b = sim.add_flow(flow(&[l], MB).after(vec![a], Nanos(5_000))).unwrap();
    let r = sim.run().unwrap();
    assert_eq!(end(&r, a), 801_000);
    assert_eq!(r.flows[b.index()].start, Some(SimTime(806_000)));
    assert_eq!(end(&r, b), 806_000 + 800_000 + 1_000);
    assert_eq!(r.flows[b.index()].duration(), Some(Nanos(801_000)));
}

#[test]
fn dependency_waits_for_the_latest_dep_and_own_start() {
    let mut net = Network::new();
    let l1 = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
    let l2 = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
    let mut sim = Simulation::new(net);
    let a = sim.add_flow(flow(&[l1], MB)).unwrap(); // done at 0.8 ms
    let b = sim.add_flow(flow(&[l2], Bytes(2_000_000))).unwrap(); // done at 1.6 ms
    let c = sim.add_flow(FlowSpec::new(vec![l1], MB, SimTime(1_000_000)).after(vec![a, b], Nanos(10))).unwrap();
    let d = sim.add_flow(FlowSpec::new(vec![l1], MB, SimTime(5_000_000)).after(vec![a], Nanos(10))).unwrap();
    let r = sim.run().unwrap();
    assert_eq!(r.flows[c.index()].start, Some(SimTime(1_600_010)));
    assert_eq!(r.flows[d.index()].start, Some(SimTime(5_000_000)));
}

#[test]
fn local_copies_and_empty_flows() {
    let mut net = Network::new();
    let l = net.add_link(BitsPerSec::gbps(10), Nanos(700));
    let mut sim = Simulation::new(net);
    let copy = sim.add_flow(FlowSpec::new(vec![], MB, SimTime(42))).unwrap();
    let empty = sim.add_flow(FlowSpec::new(vec![l], Bytes(0), SimTime(50)).last_packet(Bytes(1500))).unwrap();
    let after = sim.add_flow(FlowSpec::new(vec![], MB, SimTime::ZERO).after(vec![copy, empty], Nanos::ZERO)).unwrap();
    let r = sim.run().unwrap();
    assert_eq!(end(&r, copy), 42);
    // No bytes: the last packet clamps to zero, only latency remains.
    assert_eq!(end(&r, empty), 750);
    assert_eq!(end(&r, after), 750);
}

/// Ring all-gather over n nodes: n-1 steps; in each, every node sends a chunk to its
/// neighbour, after receiving the previous step's chunk. All links are busy in parallel, so
/// each step takes chunk/B + latency + last packet, and steps are separated by the delay.
#[test]
fn ring_all_gather_has_closed_form_time() {
    let n = 8u64;
    let (bw, lat, chunk, mtu, delay) =
        (BitsPerSec::gbps(400), Nanos(1_500), Bytes(16 << 20), Bytes(4096), Nanos(2_000));
    let mut net = Network::new();
    let ring: Vec<LinkId> = (0..n).map(|_| net.add_link(bw, lat)).collect();
    let mut sim = Simulation::new(net);
    let mut prev: Vec<FlowId> = Vec::new();
    for step in 0..n - 1 {
        let cur: Vec<FlowId> = (0..n)
            .map(|i| {
                let mut spec =
                    FlowSpec::new(vec![ring[i as usize]], chunk, SimTime::ZERO).last_packet(mtu).tag(step as u32);
                if step > 0 {
                    spec = spec.after(vec![prev[((i + n - 1) % n) as usize]], delay);
                }
                sim.add_flow(spec).unwrap()
            })
            .collect();
        prev = cur;
    }
    let r = sim.run().unwrap();
    let step = bw.transmit_time(chunk).0 + lat.0 + bw.transmit_time(mtu).0;
    let total = (n - 1) * step + (n - 2) * delay.0;
    assert_eq!(r.end, SimTime(total));
    assert!(r.flows.iter().all(|f| f.end.unwrap().0 <= total));
    // 16 MiB at 400 Gbps = 335,544.32 ns -> 335,545; 4096 B -> 82 ns.
    assert_eq!(step, 335_545 + 1_500 + 82);
}

/// A chain of hops through a pipeline: each flow depends on the previous one.
#[test]
fn chain_of_dependent_flows() {
    let mut net = Network::new();
    let links: Vec<LinkId> = (0..5).map(|i| net.add_link(BitsPerSec::gbps(10 * (i + 1)), Nanos(100))).collect();
    let mut sim = Simulation::new(net);
    let mut prev = None;
    for &l in &links {
        let spec = flow(&[l], MB).after(prev.into_iter().collect(), Nanos(50));
        prev = Some(sim.add_flow(spec).unwrap());
    }
    let r = sim.run().unwrap();
    // 8e6 bit at 10, 20, 30, 40, 50 Gbps: 800000, 400000, 266667 (ceil), 200000, 160000.
    let expect = 800_000 + 400_000 + 266_667 + 200_000 + 160_000 + 5 * 100 + 4 * 50;
    assert_eq!(r.end, SimTime(expect));
}

#[test]
fn link_down_stalls_flows_and_reports_reasons() {
    let mut net = Network::new();
    let l = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
    let other = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
    let mut sim = Simulation::new(net);
    let a = sim.add_flow(flow(&[l], MB)).unwrap();
    let b = sim.add_flow(flow(&[other], MB).after(vec![a], Nanos::ZERO)).unwrap();
    let c = sim.add_flow(flow(&[other], MB)).unwrap();
    sim.schedule_link_down(l, SimTime(100_000)).unwrap();
    let r = sim.run().unwrap();
    let fa = &r.flows[a.index()];
    assert_eq!(fa.end, None);
    assert_eq!(fa.stall, Some(Stall::LinkDown { link: l }));
    assert_eq!(fa.stall.unwrap().to_string(), "link 0 is down");
    // 100 us at 10 Gbps = 125,000 bytes sent before the failure.
    assert_eq!(fa.delivered, Bytes(125_000));
    assert_eq!(r.link_stats[l.index()].bytes, Bytes(125_000));
    assert_eq!(r.flows[b.index()].stall, Some(Stall::Dependency { flow: a }));
    assert_eq!(r.flows[b.index()].start, None);
    assert_eq!(end(&r, c), 800_000);
    assert_eq!(r.stalled().count(), 2);
}

#[test]
fn link_down_then_up_resumes() {
    let mut net = Network::new();
    let l = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
    let mut sim = Simulation::new(net);
    let a = sim.add_flow(flow(&[l], MB)).unwrap();
    sim.schedule_link_down(l, SimTime(100_000)).unwrap();
    sim.schedule_link_up(l, SimTime(300_000)).unwrap();
    let r = sim.run().unwrap();
    assert_eq!(end(&r, a), 1_000_000);
    assert_eq!(r.flows[0].stall, None);
    assert_eq!(r.link_stats[0].busy, Nanos(800_000));
}

#[test]
fn rerouting_a_stalled_flow_keeps_its_progress() {
    let mut net = Network::new();
    let primary = net.add_link(BitsPerSec::gbps(10), Nanos(100));
    let backup = net.add_link(BitsPerSec::gbps(5), Nanos(900));
    let mut sim = Simulation::new(net);
    let a = sim.add_flow(flow(&[primary], MB)).unwrap();
    sim.schedule_link_down(primary, SimTime(400_000)).unwrap();
    while let Some(t) = sim.advance().unwrap() {
        if t == SimTime(400_000) {
            let stuck: Vec<FlowId> = sim.flows_on_link(primary).collect();
            assert_eq!(stuck, vec![a]);
            sim.set_path(a, vec![backup]).unwrap();
        }
    }
    let r = sim.result();
    // Half sent at 10 Gbps by 0.4 ms; the other 4e6 bit at 5 Gbps take 0.8 ms; backup latency.
    assert_eq!(end(&r, a), 1_200_000 + 900);
    assert_eq!(r.link_stats[backup.index()].bytes, Bytes(500_000));
    assert_eq!(r.link_stats[primary.index()].bytes, Bytes(500_000));
    assert_eq!(sim.set_path(a, vec![primary]), Err(SimError::FlowFinished { flow: a }));
}

#[test]
fn identical_input_gives_identical_output() {
    let build = || {
        let mut net = Network::new();
        let links: Vec<LinkId> =
            (0..6).map(|i| net.add_link(BitsPerSec(3_000_000_007 * (i + 1)), Nanos(10 * i))).collect();
        let mut sim = Simulation::new(net);
        for i in 0..60u64 {
            let a = links[(i % 6) as usize];
            let b = links[((i * 7 + 1) % 6) as usize];
            let path = if a == b { vec![a] } else { vec![a, b] };
            let deps = if i >= 10 { vec![FlowId((i / 3) as u32)] } else { vec![] };
            let spec =
                FlowSpec::new(path, Bytes(10_000 + i * 7_919), SimTime(i * 13)).after(deps, Nanos(i)).tag(i as u32 % 4);
            sim.add_flow(spec).unwrap();
        }
        sim.schedule_link_down(links[5], SimTime(30_000)).unwrap();
        sim.run().unwrap()
    };
    let (r1, r2) = (build(), build());
    assert_eq!(r1, r2);
    assert_eq!(serde_json::to_string(&r1).unwrap(), serde_json::to_string(&r2).unwrap());
    assert!(r1.stalled().count() > 0, "the link-down case stalls some flows");
}

#[test]
fn bad_input_is_an_error_naming_the_culprit() {
    let mut net = Network::new();
    let l = net.add_link(BitsPerSec::gbps(1), Nanos::ZERO);
    let mut sim = Simulation::new(net);
    let e = sim.add_flow(flow(&[LinkId(3)], MB)).unwrap_err();
    assert_eq!(e.to_string(), "flow 0 uses unknown link 3 (the network has 1 links)");
    let e = sim.add_flow(flow(&[l, l], MB)).unwrap_err();
    assert_eq!(e.to_string(), "flow 0 crosses link 0 more than once");
    let e = sim.add_flow(flow(&[l], MB).after(vec![FlowId(0)], Nanos::ZERO)).unwrap_err();
    assert_eq!(e.to_string(), "flow 0 depends on unknown flow 0");
    let e = sim.schedule_link_down(LinkId(9), SimTime::ZERO).unwrap_err();
    assert_eq!(e.to_string(), "unknown link 9 (the network has 1 links)");
    let e = sim.set_path(FlowId(4), vec![]).unwrap_err();
    assert_eq!(e.to_string(), "unknown flow 4");
    sim.add_flow(FlowSpec::new(vec![l], MB, SimTime(1_000))).unwrap();
    sim.advance().unwrap();
    let e = sim.add_flow(flow(&[l], MB)).unwrap_err();
    assert_eq!(e.to_string(), "flow 1 starts at 0ns, before the current simulation time 1us");
    let e = sim.schedule_link_up(l, SimTime(5)).unwrap_err();
    assert_eq!(e.to_string(), "link 0 event at 5ns is before the current simulation time 1us");
    assert_eq!(sim.flow_count(), 1, "rejected flows are not added");
}

#[test]
fn zero_capacity_and_zero_share_stall_without_hanging() {
    let mut net = Network::new();
    let dead = net.add_link(BitsPerSec(0), Nanos::ZERO);
    let thin = net.add_link(BitsPerSec(1), Nanos::ZERO);
    let mut sim = Simulation::new(net);
    let a = sim.add_flow(flow(&[dead], MB)).unwrap();
    // 1 bit/s = 1024 rate units shared by 1025 flows: each share rounds to zero.
    for _ in 0..1025 {
        sim.add_flow(flow(&[thin], Bytes(1))).unwrap();
    }
    let r = sim.run().unwrap();
    assert_eq!(r.flows[a.index()].stall, Some(Stall::ZeroCapacity { link: dead }));
    assert_eq!(r.flows[1].stall, Some(Stall::ZeroShare { link: thin }));
    assert_eq!(r.stalled().count(), 1026);
}

#[test]
fn results_serialize_with_units_in_field_names() {
    let mut net = Network::new();
    let l = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
    let mut sim = Simulation::new(net);
    sim.add_flow(flow(&[l], MB).tag(7)).unwrap();
    let r = sim.run().unwrap();
    let json = serde_json::to_string(&r.flows[0]).unwrap();
    assert_eq!(
        json,
        r#"{"id":0,"tag":7,"size_bytes":1000000,"delivered_bytes":1000000,"start_ns":0,"end_ns":800000,"stall":null}"#
    );
}

/// A flow spread over several paths is one flow with one rate; a link that `m` of its `K`
/// paths cross carries `m/K` of it.
mod spread {
    use super::*;

    #[test]
    fn spread_over_two_equal_paths_gets_both() {
        let mut net = Network::new();
        let a = net.add_link(BitsPerSec::gbps(10), Nanos(100));
        let b = net.add_link(BitsPerSec::gbps(10), Nanos(300));
        let mut sim = Simulation::new(net);
        let f = sim.add_flow(FlowSpec::new(vec![], MB, SimTime::ZERO).spread(vec![vec![a], vec![b]])).unwrap();
        sim.advance().unwrap();
        assert_eq!(sim.flow_rate(f), Some(BitsPerSec::gbps(20)));
        assert_eq!(sim.link_load(a), Some(BitsPerSec::gbps(10)));
        let r = sim.run().unwrap();
        // 8e6 bit at 20 Gbps = 400 us, plus the slower path's 300 ns.
        assert_eq!(end(&r, f), 400_000 + 300);
        assert_eq!(r.flows.len(), 1);
        assert_eq!(r.link_stats[a.index()].bytes, Bytes(500_000));
        assert_eq!(r.link_stats[b.index()].bytes, Bytes(500_000));
    }

    #[test]
    fn even_spreading_is_held_back_by_the_slowest_path() {
        // 10G and 40G: half the rate on each, so the 10G path caps the flow at 20G.
        let mut net = Network::new();
        let a = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
        let b = net.add_link(BitsPerSec::gbps(40), Nanos::ZERO);
        let mut sim = Simulation::new(net);
        let f = sim.add_flow(FlowSpec::new(vec![], MB, SimTime::ZERO).spread(vec![vec![a], vec![b]])).unwrap();
        sim.advance().unwrap();
        assert_eq!(sim.flow_rate(f), Some(BitsPerSec::gbps(20)));
        assert_eq!(sim.link_load(b), Some(BitsPerSec::gbps(10)));
    }

    #[test]
    fn weighted_share_against_a_one_path_flow() {
        // x is spread over a and b (10G each); y uses a alone. On a: x/2 + y <= 10G and both
        // get the same rate per unit of weight: x = y = 10 / 1.5 = 6.667 Gbps.
        let mut net = Network::new();
        let a = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
        let b = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
        let mut sim = Simulation::new(net);
        let x = sim.add_flow(FlowSpec::new(vec![], MB, SimTime::ZERO).spread(vec![vec![a], vec![b]])).unwrap();
        let y = sim.add_flow(flow(&[a], MB)).unwrap();
        sim.advance().unwrap();
        let (rx, ry) = (sim.flow_rate(x).unwrap().0, sim.flow_rate(y).unwrap().0);
        assert_eq!(rx, 6_666_666_666);
        assert_eq!(ry, 6_666_666_666);
        assert!(sim.link_load(a).unwrap().0 <= 10_000_000_000);
        assert_eq!(sim.link_load(b).unwrap().0, 3_333_333_333);
    }

    #[test]
    fn shared_first_hop_and_three_paths() {
        // One 30G first hop, then three 10G paths: K = 3 is not a power of two, so weights are
        // rounded to 2^-20; the rate is 30G within a millionth.
        let mut net = Network::new();
        let up = net.add_link(BitsPerSec::gbps(30), Nanos(50));
        let p: Vec<LinkId> = (0..3).map(|_| net.add_link(BitsPerSec::gbps(10), Nanos(100))).collect();
        let mut sim = Simulation::new(net);
        let paths = p.iter().map(|&l| vec![up, l]).collect();
        let f = sim.add_flow(FlowSpec::new(vec![], MB, SimTime::ZERO).spread(paths)).unwrap();
        sim.advance().unwrap();
        let rate = sim.flow_rate(f).unwrap().0 as f64;
        assert!((rate / 30e9 - 1.0).abs() < 1e-6, "{rate}");
        assert!(sim.link_load(up).unwrap().0 <= 30_000_000_000);
        let r = sim.run().unwrap();
        // 8e6 bit at 30 Gbps = 266,667 ns, plus 150 ns of latency.
        let t = end(&r, f) as i64;
        assert!((t - 266_817).abs() <= 1, "{t}");
    }

    #[test]
    fn a_spread_path_repeating_a_link_is_refused() {
        let mut net = Network::new();
        let a = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
        let b = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
        let mut sim = Simulation::new(net);
        let e = sim.add_flow(FlowSpec::new(vec![], MB, SimTime::ZERO).spread(vec![vec![b], vec![a, a]])).unwrap_err();
        assert_eq!(e, SimError::RepeatedLink { flow: FlowId(0), link: a });
    }
}

#[test]
fn link_history_is_carried_bytes_per_interval() {
    // Link a carries 1 MB at 10 Gbps from 0 to 800 us; link b 0.5 MB from 400 to 800 us. The
    // history starts at 1 us intervals and doubles them each time it holds 64: 16 us wide by
    // 512 us, so 800 us is 50 intervals of 16 us, 20,000 B each while a link is busy.
    let mut net = Network::new();
    let a = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
    let b = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
    let mut sim = Simulation::new(net);
    assert!(sim.record_link_history(2));
    sim.add_flow(flow(&[a], MB)).unwrap();
    sim.add_flow(FlowSpec::new(vec![b], Bytes(500_000), SimTime(400_000))).unwrap();
    let r = sim.run().unwrap();
    assert_eq!(r.end, SimTime(800_000));
    let h = r.link_history.expect("recorded");
    assert_eq!(h.interval, Nanos(16_000));
    assert_eq!(h.bytes[0], vec![20_000; 50]);
    assert_eq!(h.bytes[1][..25], [0; 25]);
    assert_eq!(h.bytes[1][25..], [20_000; 25]);
    for (l, s) in h.bytes.iter().zip(&r.link_stats) {
        assert_eq!(l.iter().sum::<u64>(), s.bytes.0);
    }
    // A cap below the link count refuses, and nothing is recorded.
    let mut net = Network::new();
    let a = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
    let mut sim = Simulation::new(net);
    assert!(!sim.record_link_history(0));
    sim.add_flow(flow(&[a], MB)).unwrap();
    assert!(sim.run().unwrap().link_history.is_none());
}
