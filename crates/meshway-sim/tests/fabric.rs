//! Simulations on built fabrics: closed forms, routing policies, oversubscription, failures,
//! determinism and bad input.

use meshway_fabric::{Catalog, Scenario};
use meshway_sim::exec::Policy;
use meshway_sim::simulate::{htsim_connection_matrix, simulate, Options, Setup, SimReport, SimulateError};
use meshway_sim::topo::{FabricTopo, Topology};

fn run_with(text: &str, opts: &Options, files: &[(&str, String)]) -> Result<SimReport, SimulateError> {
    let cat = Catalog::builtin();
    let s = Scenario::parse(text, "test.toml")?;
    let f = s.build(&cat)?;
    let read = |name: &str| -> Result<String, String> {
        files.iter().find(|(n, _)| *n == name).map(|(_, t)| t.clone()).ok_or_else(|| format!("no file {name}"))
    };
    let setup = Setup { scenario: &s, catalog: &cat, fabric: &f, read_file: &read };
    simulate(&setup, opts, &mut |_, _| {})
}

fn run(text: &str, opts: &Options) -> SimReport {
    run_with(text, opts, &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// The first workload's time, in ns, of `text` run with `catalog` (no ideal fabric).
fn first_time_with(text: &str, catalog: &Catalog) -> f64 {
    let s = Scenario::parse(text, "test.toml").unwrap();
    let f = s.build(catalog).unwrap();
    let read = |_: &str| -> Result<String, String> { Err("no files".into()) };
    let setup = Setup { scenario: &s, catalog, fabric: &f, read_file: &read };
    let r = simulate(&setup, &Options { no_ideal: true, ..Options::default() }, &mut |_, _| {}).unwrap();
    r.workloads[0].time_ns.unwrap() as f64
}

fn policy(p: Policy) -> Options {
    Options { routing: Some(p), ..Options::default() }
}

/// 8 single-GPU hosts on one leaf: every pair is GPU -> leaf -> GPU.
const ONE_LEAF: &str = r#"
[fabric]
kind = "leaf-spine"
gpus = 8
gpus-per-host = 1
[transport]
kind = "roce"
"#;

#[test]
fn one_message_takes_wire_bytes_over_rate_plus_latency_exactly() {
    let text = format!("{ONE_LEAF}\n[[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n");
    let csv = "src,dst,bytes\ngpu-0,gpu-1,1MiB\n".to_string();
    let r = run_with(&text, &Options::default(), &[("f.csv", csv)]).unwrap();
    let cat = Catalog::builtin();
    let roce = cat.transport_profile("roce").unwrap();
    let sw = &cat.switch[cat.switch_index("generic-64x400g").unwrap() as usize];
    let prop = cat.cable_lengths.host_leaf.propagation(cat.constants.fiber_delay_per_km);
    let payload = 1u64 << 20;
    let wire = payload + payload.div_ceil(4096) * u64::from(roce.header_bytes);
    let fluid = (wire * 8 * 1_000_000_000).div_ceil(400_000_000_000);
    let last_packet = ((4096 + u64::from(roce.header_bytes)) * 8 * 1_000_000_000).div_ceil(400_000_000_000);
    let expected = roce.alpha.0 + fluid + 2 * prop.0 + sw.latency.0 + last_packet;
    assert_eq!(r.workloads[0].time_ns, Some(expected));
    assert_eq!(r.workloads[0].slowest_message_ns, Some(expected - roce.alpha.0));
}

#[test]
fn ring_all_reduce_matches_the_closed_form() {
    // S = 32 MiB over n = 8 ranks, one channel: chunks of 4 MiB, whole packets. Each of the
    // 2(n-1) steps pays the protocol's network step latency (at least the transport's
    // alpha; with one GPU per host NCCL's tuning model charges a ring the tree's network
    // step, "with ppn=1 latencies are fully exposed") and one packet's path latency; the collective ends the protocol's base latency
    // after its last message; LL and LL128 carry payload / efficiency bytes.
    let n = 8u64;
    let size = 32u64 << 20;
    let cat = Catalog::builtin();
    let roce = cat.transport_profile("roce").unwrap();
    for proto in ["simple", "ll128", "ll"] {
        let text = format!(
            "{ONE_LEAF}\n[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nalgorithm = \"ring\"\nprotocol = \"{proto}\"\nsize = \"32MiB\"\nchannels = 1\nmodel = \"steps\"\n"
        );
        let r = run(&text, &Options::default());
        let w = &r.workloads[0];
        assert_eq!(w.model.as_deref(), Some("steps"));
        assert_eq!((w.algorithm.as_deref(), w.protocol.as_deref()), (Some("ring"), Some(proto)));
        assert!(w.tuner.is_empty(), "named algorithm and protocol: nothing to tune");
        let p = cat.protocol(proto).unwrap();
        let s = Scenario::parse(&text, "t").unwrap();
        let f = s.build(&cat).unwrap();
        let mut topo = FabricTopo::new(&f, &cat, 1);
        let lat = topo.edge_latency(0, 1, None, 4096 + u64::from(roce.header_bytes)).0 as f64;
        let step = p.tree_network_step.0.max(roce.alpha.0) as f64 + lat;
        // Payload bit/s: the NIC's achievable share of the line rate (catalog), headers, protocol.
        let nic = cat.nic_for(meshway_units::BitsPerSec(400_000_000_000)).unwrap().efficiency();
        assert!((nic - 0.96).abs() < 1e-9, "ConnectX-7: 48 of 50 GB/s");
        let b = 400e9 * nic * 4096.0 / (4096.0 + f64::from(roce.header_bytes)) * p.efficiency;
        let nf = n as f64;
        let mut closed = 2.0 * (nf - 1.0) / nf * (size as f64 * 8.0) / b * 1e9
            + 2.0 * (nf - 1.0) * step
            + p.ring_base_latency.0 as f64;
        if proto == "ll" {
            // NCCL's LL ceiling across 3 or more hosts (catalog ll-max) binds: 58.7 MB of bus
            // bytes over 20.4 GB/s is 2.88 ms, against the fabric's 2.59 ms.
            let ceiling = cat.simulation.ll_max[1].0 as f64 / 8.0;
            let bound = 2.0 * (nf - 1.0) / nf * size as f64 / ceiling * 1e9 + p.ring_base_latency.0 as f64;
            assert!(bound > closed, "{bound} against {closed}");
            closed = bound;
        }
        let got = w.time_ns.unwrap() as f64;
        assert!((got - closed).abs() / closed < 0.001, "{proto}: simulated {got} ns vs closed form {closed} ns");
        // busbw is algbw x 2(n-1)/n (nccl-tests).
        let algbw = w.algbw_gbps.unwrap();
        assert!((w.busbw_gbps.unwrap() - algbw * 2.0 * 7.0 / 8.0).abs() < 1e-3);
        // The steady-state model gives the same answer on a contention-free ring.
        let steady = run(&text.replace("model = \"steps\"", "model = \"steady\""), &Options::default());
        let t2 = steady.workloads[0].time_ns.unwrap() as f64;
        assert!((t2 - closed).abs() / closed < 0.001, "{proto}: steady {t2} vs {closed}");
    }
}

#[test]
fn the_tuner_picks_the_fastest_candidate_it_evaluated() {
    // 32 MiB and 4 KiB all-reduces over 4 hosts of 8 GPUs, algorithm and protocol left to it.
    let text = "[fabric]\nkind = \"rail-optimized\"\ngpus = 32\n[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"32MiB\"\n[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"4KiB\"\n[[workload]]\nkind = \"collective\"\nop = \"all-gather\"\nsize = \"32MiB\"\n";
    let r = run(text, &Options { no_ideal: true, ..Options::default() });
    for w in &r.workloads[..2] {
        // Every algorithm NCCL weighs for all-reduce, with every protocol (ring and tree, 2 x
        // 3), and NVLS-tree (H100 hosts), which runs with simple only.
        assert_eq!(w.tuner.len(), 7, "{:?}", w.tuner);
        assert_eq!(w.tuner.iter().filter(|c| c.algorithm == "nvls-tree").count(), 1);
        let best = w.tuner.iter().filter(|c| c.time_ns.is_some()).min_by_key(|c| c.time_ns).unwrap();
        let best_ns = best.time_ns.unwrap();
        assert_eq!(w.algorithm.as_deref(), Some(best.algorithm.as_str()));
        assert_eq!(w.protocol.as_deref(), Some(best.protocol.as_str()));
        // Every candidate has its ideal-fabric time, a lower bound of its time on the fabric;
        // one not simulated on the fabric had a bound no better than the pick's time.
        for c in &w.tuner {
            let ideal = c.ideal_ns.unwrap();
            match c.time_ns {
                Some(t) => assert!(ideal <= t, "{c:?}"),
                None => assert!(ideal >= best_ns, "{c:?} pruned below the best {best_ns}"),
            }
        }
        // Run in the program, the pick takes what it took alone (nothing else runs).
        assert!(w.time_ns.unwrap().abs_diff(best_ns) * 100 <= best_ns, "{} vs {best_ns}", w.time_ns.unwrap());
    }
    // A small message is latency-bound: not simple, whose steps are the slowest.
    assert_ne!(r.workloads[1].protocol.as_deref(), Some("simple"), "{:?}", r.workloads[1].tuner);
    // All-gather has one algorithm (ring): only the protocol is weighed.
    assert_eq!(r.workloads[2].tuner.len(), 3);
    assert_eq!(r.workloads[2].algorithm.as_deref(), Some("ring"));
}

const FAT_TREE_PERM: &str = r#"
seed = 7
[fabric]
kind = "fat-tree"
k = 8
gpus-per-host = 1
[[workload]]
kind = "permutation"
size = "256MiB"
"#;

#[test]
fn ecmp_collides_spray_matches_ideal_on_a_fat_tree_permutation() {
    let ecmp = run(FAT_TREE_PERM, &policy(Policy::Ecmp));
    let spray = run(FAT_TREE_PERM, &policy(Policy::Spray));
    let (te, ts) = (ecmp.workloads[0].time_ns.unwrap(), spray.workloads[0].time_ns.unwrap());
    let ideal = spray.workloads[0].ideal_time_ns.unwrap();
    assert!(te as f64 > 1.3 * ts as f64, "ECMP {te} ns should be clearly slower than spray {ts} ns");
    assert!((ts as f64 / ideal as f64) < 1.01, "spray {ts} ns vs ideal {ideal} ns");
    // Collisions show as links at full load with two or more flows: some link carries 2x.
    let max_carried = ecmp.links.iter().map(|l| l.carried_bytes).max().unwrap();
    assert!(max_carried >= 2 * (256 << 20), "an uplink carries at least two colliding flows");
    let adaptive = run(FAT_TREE_PERM, &policy(Policy::Adaptive));
    assert!(adaptive.workloads[0].time_ns.unwrap() <= te);
}

#[test]
fn global_adaptive_sees_collisions_local_adaptive_cannot() {
    // The 128-host permutation at seed 7: ECMP leaves a 4-way collision, local adaptive
    // (each switch picks its least-loaded next hop) a 3-way one further down the path, and
    // the least-loaded whole path a 2-way one (greedy, flow by flow, cannot find the perfect
    // matching spraying approximates). Each slowdown is the worst collision's width.
    let slowdown = |p| {
        let r = run(FAT_TREE_PERM, &policy(p));
        let w = &r.workloads[0];
        w.time_ns.unwrap() as f64 / w.ideal_time_ns.unwrap() as f64
    };
    let (e, a, g, s) =
        (slowdown(Policy::Ecmp), slowdown(Policy::Adaptive), slowdown(Policy::AdaptiveGlobal), slowdown(Policy::Spray));
    assert!((e - 4.0).abs() < 0.01, "ecmp {e}");
    assert!((a - 3.0).abs() < 0.01, "adaptive {a}");
    assert!((g - 2.0).abs() < 0.01, "adaptive-global {g}");
    assert!((s - 1.0).abs() < 0.01, "spray {s}");
}

#[test]
fn ecmp_collision_gives_half_rate_each() {
    // Two flows from two GPUs of leaf-0 to leaf-1 through a single spine with one uplink per
    // leaf: they share it and each gets half.
    let text = r#"
[fabric]
kind = "custom"
[[fabric.node]]
name = "a"
kind = "gpu"
host = 0
[[fabric.node]]
name = "b"
kind = "gpu"
host = 1
[[fabric.node]]
name = "c"
kind = "gpu"
host = 2
[[fabric.node]]
name = "d"
kind = "gpu"
host = 3
[[fabric.node]]
name = "l0"
kind = "switch"
tier = "leaf"
level = 1
[[fabric.node]]
name = "l1"
kind = "switch"
tier = "leaf"
level = 1
[[fabric.link]]
a = "a"
b = "l0"
rate = "400Gbps"
[[fabric.link]]
a = "b"
b = "l0"
rate = "400Gbps"
[[fabric.link]]
a = "c"
b = "l1"
rate = "400Gbps"
[[fabric.link]]
a = "d"
b = "l1"
rate = "400Gbps"
[[fabric.link]]
a = "l0"
b = "l1"
rate = "400Gbps"
[[workload]]
kind = "flows"
file = "f.csv"
"#;
    let csv = "src,dst,bytes\na,c,1GB\nb,d,1GB\n".to_string();
    let one = run_with(text, &Options::default(), &[("f.csv", "src,dst,bytes\na,c,1GB\n".into())]).unwrap();
    let two = run_with(text, &Options::default(), &[("f.csv", csv)]).unwrap();
    let (t1, t2) = (one.workloads[0].slowest_message_ns.unwrap(), two.workloads[0].slowest_message_ns.unwrap());
    let ratio = t2 as f64 / t1 as f64;
    assert!((ratio - 2.0).abs() < 0.001, "two flows on one uplink take {ratio}x one flow");
}

#[test]
fn oversubscription_slows_a_cross_leaf_all_to_all_by_its_ratio() {
    // (ratio, leaf radix, GPUs) giving two leaves; every GPU of one leaf sends to every GPU
    // of the other and back, so all traffic crosses the leaf uplinks.
    for (ratio, radix, gpus, expect) in [("1:1", 6, 6, 1.0), ("2:1", 6, 8, 2.0), ("3:1", 8, 12, 3.0)] {
        let text = format!(
            "[fabric]\nkind = \"leaf-spine\"\ngpus = {gpus}\ngpus-per-host = 1\nleaf-radix = {radix}\nspine-radix = {radix}\n\
             oversubscription = \"{ratio}\"\n[[workload]]\nkind = \"flows\"\nfile = \"x.csv\"\n"
        );
        let half = gpus / 2;
        let mut csv = String::from("src,dst,bytes\n");
        for a in 0..half {
            for b in half..gpus {
                csv.push_str(&format!("gpu-{a},gpu-{b},64MiB\ngpu-{b},gpu-{a},64MiB\n"));
            }
        }
        let r = run_with(&text, &policy(Policy::Adaptive), &[("x.csv", csv)]).unwrap();
        let w = &r.workloads[0];
        let slow = w.time_ns.unwrap() as f64 / w.ideal_time_ns.unwrap() as f64;
        assert!((slow - expect).abs() / expect < 0.01, "{ratio}: {slow}x the non-blocking time");
    }
}

const TWO_LEAVES: &str = r#"
[fabric]
kind = "leaf-spine"
gpus = 64
gpus-per-host = 1
spines = 2
leaf-radix = 64
spine-radix = 64
[[workload]]
kind = "all-to-all"
size = "1MiB"
group = "all"
"#;

#[test]
fn a_failed_spine_reroutes_and_every_byte_arrives() {
    let base = run(TWO_LEAVES, &policy(Policy::Ecmp));
    let failed = run(&format!("{TWO_LEAVES}\n[[failure]]\nat = \"0s\"\nswitch = \"spine-0\"\n"), &policy(Policy::Ecmp));
    let w = &failed.workloads[0];
    assert_eq!(w.failed_messages, 0, "{:?}", w.failures);
    assert!(w.time_ns.unwrap() > base.workloads[0].time_ns.unwrap(), "losing half the spines costs time");
    assert!(failed.links.iter().all(|l| !l.link.contains("spine-0")), "nothing crosses the failed spine");
    // A failure in mid-run: flows on the spine move to the other one and still complete.
    let mid =
        run(&format!("{TWO_LEAVES}\n[[failure]]\nat = \"100us\"\nswitch = \"spine-0\"\n"), &policy(Policy::Adaptive));
    assert_eq!(mid.workloads[0].failed_messages, 0);
    // A link is down while any of its failures holds: two overlapping outages, in either
    // order, are one (the first to heal used to bring the link back).
    let fail = |spans: &[(&str, &str)]| {
        let mut t = String::from(
            "[fabric]\nkind = \"fat-tree\"\nk = 4\ngpus-per-host = 2\nnic = \"400Gbps\"\n[transport]\nkind = \"roce\"\n\
             [[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n",
        );
        for (a, u) in spans {
            t += &format!("[[failure]]\nat = \"{a}\"\nuntil = \"{u}\"\nlink = \"gpu-0:leaf-0\"\n");
        }
        let r = run_with(&t, &policy(Policy::Ecmp), &[("f.csv", "src,dst,bytes\n0,8,1GiB\n".into())]).unwrap();
        r.workloads[0].time_ns.unwrap()
    };
    let one = fail(&[("1ms", "10ms")]);
    assert_eq!(fail(&[("1ms", "3ms"), ("2ms", "10ms")]), one);
    assert_eq!(fail(&[("2ms", "10ms"), ("1ms", "3ms")]), one);
    assert!(fail(&[("1ms", "3ms")]) < one);
    // A failure long after the traffic does not dilute the links' mean utilization.
    let late = run(&format!("{TWO_LEAVES}\n[[failure]]\nat = \"10s\"\nswitch = \"spine-0\"\n"), &policy(Policy::Ecmp));
    let mean = |r: &SimReport| r.congested_links.first().map(|l| l.mean_utilization).unwrap();
    assert_eq!(mean(&late), mean(&base));
    assert!(mean(&base) > 0.1, "{}", mean(&base));
    // Nor does a late start: the span runs from the first message's start. A lone flow
    // started at 1 s keeps its first link busy throughout (it read 0.2%).
    let lone = |start: &str| {
        let t = format!(
            "[fabric]\nkind = \"leaf-spine\"\ngpus = 16\ngpus-per-host = 1\nnic = \"400Gbps\"\n[transport]\n\
             kind = \"roce\"\n[[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\nstart = \"{start}\"\n"
        );
        let r = run_with(&t, &policy(Policy::Ecmp), &[("f.csv", "src,dst,bytes\n0,8,100MB\n".into())]).unwrap();
        mean(&r)
    };
    assert_eq!(lone("1s"), lone("0s"));
    assert!(lone("0s") > 0.99, "{}", lone("0s"));
}

/// Flows moved off a failed spine come back when the spine does: sprayed, they spread over
/// both spines again; hashed, they take their own paths again once every link is up.
#[test]
fn flows_move_back_to_a_recovered_spine() {
    let spine0 =
        |r: &SimReport| -> u64 { r.links.iter().filter(|l| l.link.contains("spine-0")).map(|l| l.carried_bytes).sum() };
    let text = |failure: &str| {
        format!(
            "[fabric]\nkind = \"leaf-spine\"\ngpus = 16\ngpus-per-host = 1\ngpus-per-leaf = 8\nspines = 2\n\
             nic = \"400Gbps\"\n[transport]\nkind = \"roce\"\n[[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n\
             {failure}"
        )
    };
    let flows = || vec![("f.csv", "src,dst,bytes\n0,8,1GiB\n1,9,1GiB\n2,10,1GiB\n3,11,1GiB\n".to_string())];
    for routing in [Policy::Spray, Policy::Ecmp] {
        let run = |failure: &str| run_with(&text(failure), &policy(routing), &flows()).unwrap();
        let healthy = run("");
        let for_good = run("[[failure]]\nat = \"1ms\"\nswitch = \"spine-0\"\n");
        let healed = run("[[failure]]\nat = \"1ms\"\nuntil = \"3ms\"\nswitch = \"spine-0\"\n");
        // 1 GiB at 400 Gbps takes about 21 ms: most of it after the spine is back.
        assert!(healthy.workloads[0].time_ns.unwrap() > 20_000_000);
        let (h, g, b) = (spine0(&healthy), spine0(&healed), spine0(&for_good));
        assert!(h > 0, "{routing:?}: some flow crosses spine-0");
        assert!(b < h / 10, "{routing:?}: the spine failed for good carried {b} of {h} bytes");
        // Back on spine-0 for the 18 ms after it recovers: all but 2 ms of its healthy bytes.
        assert!(g > h * 8 / 10, "{routing:?}: the recovered spine carried {g} of {h} bytes");
        assert_eq!(healed.workloads[0].failed_messages, 0);
    }
}

/// Adaptive routing moves detoured flows back one by one, each seeing the others already
/// moved and not counting itself against the path it is on: two flows detoured onto one spine
/// split over both again when the other recovers (both took the restored spine, and ran at
/// half rate to the end).
#[test]
fn adaptive_routing_spreads_flows_over_a_recovered_spine() {
    let mut text = String::from("[fabric]\nkind = \"custom\"\n");
    for g in ["g0", "g1", "g2", "g3"] {
        text += &format!("[[fabric.node]]\nname = \"{g}\"\nkind = \"gpu\"\n");
    }
    for (n, tier, level) in [("la", "leaf", 1), ("lb", "leaf", 1), ("s0", "spine", 2), ("s1", "spine", 2)] {
        text += &format!("[[fabric.node]]\nname = \"{n}\"\nkind = \"switch\"\ntier = \"{tier}\"\nlevel = {level}\n");
    }
    for (a, b) in
        [("g0", "la"), ("g1", "la"), ("g2", "lb"), ("g3", "lb"), ("la", "s0"), ("la", "s1"), ("lb", "s0"), ("lb", "s1")]
    {
        text += &format!("[[fabric.link]]\na = \"{a}\"\nb = \"{b}\"\nrate = \"100Gbps\"\n");
    }
    text += "[transport]\nkind = \"roce\"\n[[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n\
             [[failure]]\nat = \"2ms\"\nuntil = \"6ms\"\nswitch = \"s1\"\n";
    let csv = "src,dst,bytes,start\ng0,g2,125MB,3ms\ng1,g3,125MB,3ms\n".to_string();
    let time = |p: Policy| {
        let r = run_with(&text, &policy(p), &[("f.csv", csv.clone())]).unwrap();
        r.workloads[0].time_ns.unwrap() as f64
    };
    let spray = time(Policy::Spray);
    // 3 ms on s0 at half rate each (18.75 MB), then 106.25 MB at the full 100 Gb/s: 11.5 ms
    // of the flows' own (headers add about 2%); sharing one spine to the end would be 20 ms.
    assert!((11.5e6..12.0e6).contains(&spray), "{spray}");
    for p in [Policy::Adaptive, Policy::AdaptiveGlobal] {
        assert!((time(p) - spray).abs() < spray * 1e-3, "{p:?}: {} against spray's {spray}", time(p));
    }
}

#[test]
fn a_cut_off_gpu_fails_its_messages_with_a_reason_and_recovery_completes_them() {
    let text = format!("{TWO_LEAVES}\n[[failure]]\nat = \"0s\"\nlink = \"gpu-0:leaf-0\"\n");
    let r = run(&text, &Options::default());
    let w = &r.workloads[0];
    assert_eq!(w.failed_messages, 2 * 63, "gpu-0's 63 sends and 63 receives");
    assert!(w.time_ns.is_none());
    assert!(w.failures[0].contains("gpu-0") && w.failures[0].contains("is down"), "{}", w.failures[0]);
    let healed = run(&format!("{text}until = \"2ms\"\n"), &Options::default());
    let h = &healed.workloads[0];
    assert_eq!(h.failed_messages, 0);
    assert!(h.end_ns.unwrap() > 2_000_000, "waited for the link to come back");
}

#[test]
fn same_seed_gives_byte_identical_json_and_seeds_matter() {
    let json = |seed| {
        let r = run(FAT_TREE_PERM, &Options { seed: Some(seed), flows: true, ..policy(Policy::Ecmp) });
        serde_json::to_string(&r).unwrap()
    };
    assert_eq!(json(3), json(3));
    assert_ne!(json(3), json(4));
}

#[test]
fn collectives_run_with_every_algorithm() {
    let text = r#"
[fabric]
kind = "rail-optimized"
gpus = 64
gpus-per-host = 8
[[workload]]
kind = "collective"
op = "all-reduce"
algorithm = "ring"
size = "64MiB"
[[workload]]
kind = "collective"
op = "all-reduce"
algorithm = "tree"
size = "64MiB"
[[workload]]
kind = "collective"
op = "all-reduce"
algorithm = "halving-doubling"
size = "64MiB"
[[workload]]
kind = "collective"
op = "all-reduce"
algorithm = "hierarchical"
size = "64MiB"
[[workload]]
kind = "collective"
op = "all-gather"
size = "64MiB"
[[workload]]
kind = "collective"
op = "reduce-scatter"
size = "64MiB"
[[workload]]
kind = "collective"
op = "broadcast"
size = "64MiB"
[[workload]]
kind = "collective"
op = "send-recv"
size = "64MiB"
[[workload]]
kind = "collective"
op = "all-to-all"
size = "64MiB"
"#;
    let r = run(text, &policy(Policy::Adaptive));
    assert_eq!(r.workloads.len(), 9);
    for w in &r.workloads {
        assert_eq!(w.failed_messages, 0, "{}", w.name);
        let (algbw, busbw) = (w.algbw_gbps.unwrap(), w.busbw_gbps.unwrap());
        assert!(algbw > 0.0 && busbw > 0.0);
        // No collective beats the ideal fabric.
        assert!(w.slowdown.unwrap() >= 0.999, "{} {:?}", w.name, w.slowdown);
    }
    // Workloads run back to back.
    for p in r.workloads.windows(2) {
        assert!(p[1].start_ns >= p[0].end_ns.unwrap());
    }
    // Ring all-reduce over 8 rail-aligned channels uses every NIC: busbw well above one NIC.
    assert!(r.workloads[0].busbw_gbps.unwrap() > 1000.0, "{:?}", r.workloads[0].busbw_gbps);
}

#[test]
fn size_sweep_prints_like_nccl_tests() {
    let text = format!(
        "{ONE_LEAF}\n[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsweep-from = \"1KiB\"\nsweep-to = \"1MiB\"\n"
    );
    let r = run(&text, &Options::default());
    let s = &r.sweeps[0];
    assert_eq!(s.rows.len(), 11);
    assert_eq!(s.rows[0].size_bytes, 1024);
    assert_eq!(s.rows[10].size_bytes, 1 << 20);
    // Bandwidth grows with size as latency is amortized.
    assert!(s.rows[10].busbw_gbytes.unwrap() > 10.0 * s.rows[0].busbw_gbytes.unwrap());
    for row in &s.rows {
        assert!((row.busbw_gbytes.unwrap() - row.algbw_gbytes.unwrap() * 2.0 * 7.0 / 8.0).abs() < 1e-9);
        // Left to the tuner, each size lists what it weighed; the pick is the fastest of
        // those simulated, and its time is the row's.
        let best = row.tuner.iter().filter_map(|c| c.time_ns.map(|t| (t, c))).min_by_key(|(t, _)| *t);
        let (t, c) = best.expect("some candidate ran on the fabric");
        assert_eq!((c.algorithm.as_str(), c.protocol.as_str()), (row.algorithm.as_str(), row.protocol.as_str()));
        assert_eq!(t as f64 / 1e3, row.time_us.unwrap(), "{} B", row.size_bytes);
        assert!(row.tuner.len() >= 6, "ring and tree with three protocols: {:?}", row.tuner);
    }
    // A named algorithm and protocol leave nothing to weigh.
    let named = run(&format!("{text}algorithm = \"ring\"\nprotocol = \"simple\"\n"), &Options::default());
    assert!(named.sweeps[0].rows.iter().all(|r| r.tuner.is_empty() && r.algorithm == "ring"));
}

/// Adaptive routing weighs a link's rate: of two idle equal-hop paths, at 100G and 50G, a
/// lone flow takes the 100G one under both adaptive policies (it took the 50G one on a
/// hash, twice as slow).
#[test]
fn adaptive_routing_prefers_the_faster_of_two_idle_paths() {
    let mut text = String::from("name = \"two-paths\"\n[fabric]\nkind = \"custom\"\n");
    for g in ["g0", "g1"] {
        text += &format!("[[fabric.node]]\nname = \"{g}\"\nkind = \"gpu\"\n");
    }
    for (n, tier, level) in [("la", "leaf", 1), ("lb", "leaf", 1), ("x1", "spine", 2), ("x2", "spine", 2)] {
        text += &format!("[[fabric.node]]\nname = \"{n}\"\nkind = \"switch\"\ntier = \"{tier}\"\nlevel = {level}\n");
    }
    for (a, b, rate) in
        [("g0", "la", 400), ("g1", "lb", 400), ("la", "x1", 100), ("x1", "lb", 100), ("la", "x2", 50), ("x2", "lb", 50)]
    {
        text += &format!("[[fabric.link]]\na = \"{a}\"\nb = \"{b}\"\nrate = \"{rate}Gbps\"\nlatency = \"1us\"\n");
    }
    text += "[transport]\nkind = \"roce\"\nqps = 1\n[[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n";
    let time = |p: Policy| {
        let r = run_with(&text, &policy(p), &[("f.csv", "src,dst,bytes\ng0,g1,1GiB\n".into())]).unwrap();
        r.workloads[0].time_ns.unwrap()
    };
    // 1 GiB and its headers at 100 Gb/s: 87.6 ms.
    for p in [Policy::Adaptive, Policy::AdaptiveGlobal] {
        let t = time(p);
        assert!((87_000_000..88_500_000).contains(&t), "{p:?}: {t} ns");
    }
}

/// The NIC's achievable share is of its port: two leaves of 4 GPUs joined by one 100G link,
/// a 1 GiB ring all-reduce. Behind the 100G link the collective runs the same with 100G,
/// 400G (a ConnectX-7 reaching 384 of its 400 Gb/s) or 800G GPU links; the 400G NIC's
/// share slowed every link's bytes, the 100G one too, to 160.0 ms.
#[test]
fn a_nics_share_does_not_slow_a_slower_link_behind_it() {
    let two_leaves = |nic: u32| {
        let mut text = String::from("name = \"two-leaves\"\n[fabric]\nkind = \"custom\"\n");
        for g in 0..8 {
            text += &format!("[[fabric.node]]\nname = \"g{g}\"\nkind = \"gpu\"\n");
        }
        for n in ["la", "lb"] {
            text += &format!("[[fabric.node]]\nname = \"{n}\"\nkind = \"switch\"\ntier = \"leaf\"\nlevel = 1\n");
        }
        let link = |a: &str, b: &str, rate: u32| {
            format!("[[fabric.link]]\na = \"{a}\"\nb = \"{b}\"\nrate = \"{rate}Gbps\"\nlatency = \"1us\"\n")
        };
        for g in 0..8 {
            text += &link(&format!("g{g}"), if g < 4 { "la" } else { "lb" }, nic);
        }
        text += &link("la", "lb", 100);
        text += "[transport]\nkind = \"roce\"\n[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nalgorithm = \"ring\"\n\
                 protocol = \"simple\"\nsize = \"1GiB\"\n";
        run(&text, &Options::default()).workloads[0].time_ns.unwrap()
    };
    let t100 = two_leaves(100);
    for nic in [400, 800] {
        // Within 0.2%: a Simple ring keeps two steps in flight, so the ranks whose links
        // are faster than the 100G one run a step ahead at the start and the end.
        let t = two_leaves(nic);
        assert!(t <= t100 && t * 1002 >= t100 * 1000, "{nic}G NICs behind a 100G link: {t} ns against {t100} ns");
    }
    // The closed form: 2 x 7/8 x 1 GiB over the 100G link's payload rate, within 0.5%.
    let closed = 2.0 * 7.0 / 8.0 * (1u64 << 30) as f64 * 8.0 / (100e9 * 4096.0 / 4178.0) * 1e9;
    assert!((t100 as f64 / closed - 1.0).abs() < 0.005, "{t100} ns vs {closed:.0} ns");
}

/// Small traps a new user falls in: `group` beside `ranks` (the ranks won without a word), a
/// failure after the run has ended (it changed nothing without a word), NVLS across hosts
/// without SHARP switches (the message spoke of CollNet).
#[test]
fn group_with_ranks_late_failures_and_nvls_across_hosts_are_named() {
    let ar = "[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"1MiB\"\n";
    let e = run_with(&format!("{ONE_LEAF}{ar}group = \"all\"\nranks = [0, 1]\n"), &Options::default(), &[])
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("`workload[1].group`: give `group` or `ranks`, not both"), "{e}");
    let r = run(&format!("{ONE_LEAF}{ar}[[failure]]\nswitch = \"leaf-0\"\nat = \"1s\"\n"), &Options::default());
    assert!(
        r.notes.iter().any(|n| n.contains("comes after the run's last message ended") && n.contains("at 1s")),
        "{:?}",
        r.notes
    );
    let e = run_with(&format!("{ONE_LEAF}{ar}algorithm = \"nvls\"\n"), &Options::default(), &[])
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("across hosts NVLS reduces in the network switches too") && e.contains("nvls-tree"), "{e}");
}

/// The NIC share is worked out per pair of GPUs: two hosts of two GPUs on two rails, each
/// rail's leaf at 400G with a 100G uplink. g0 to g2 stays on rail 0 (all 400G, the share
/// binds); g0 to g3 crosses the 100G uplinks (it does not). Whichever comes first, each
/// keeps its own (a cache by host pair gave the second the first one's).
#[test]
fn the_nic_share_is_per_pair_whatever_the_order() {
    let rails = |ranks: &str| {
        let mut text = String::from("name = \"rails\"\n[fabric]\nkind = \"custom\"\n");
        for (g, h) in [("g0", 0), ("g1", 0), ("g2", 1), ("g3", 1)] {
            text += &format!("[[fabric.node]]\nname = \"{g}\"\nkind = \"gpu\"\nhost = {h}\n");
        }
        for (n, tier, level) in [("r0", "leaf", 1), ("r1", "leaf", 1), ("s", "spine", 2)] {
            text +=
                &format!("[[fabric.node]]\nname = \"{n}\"\nkind = \"switch\"\ntier = \"{tier}\"\nlevel = {level}\n");
        }
        for (a, b, rate) in [
            ("g0", "r0", 400),
            ("g2", "r0", 400),
            ("g1", "r1", 400),
            ("g3", "r1", 400),
            ("r0", "s", 100),
            ("r1", "s", 100),
        ] {
            text += &format!("[[fabric.link]]\na = \"{a}\"\nb = \"{b}\"\nrate = \"{rate}Gbps\"\nlatency = \"1us\"\n");
        }
        text += &format!(
            "[transport]\nkind = \"roce\"\n[[workload]]\nkind = \"collective\"\nop = \"all-to-all\"\nsize = \"300MiB\"\nranks = {ranks}\n"
        );
        let r = run(&text, &Options { flows: true, ..Options::default() });
        let mut v: Vec<(String, String, u64)> =
            r.flows.iter().flatten().map(|f| (f.src.clone(), f.dst.clone(), f.link_bytes)).collect();
        v.sort();
        v
    };
    let a = rails("[\"g0\", \"g2\", \"g3\"]");
    assert_eq!(a, rails("[\"g0\", \"g3\", \"g2\"]"));
    let bytes = |s: &str, d: &str| a.iter().find(|f| f.0 == s && f.1 == d).unwrap().2;
    assert!(bytes("g0", "g2") > bytes("g0", "g3"), "{a:?}");
    assert_eq!(bytes("g0", "g3"), 100 << 20);
    // The records give every message its payload, 100 MiB, whatever its link moved.
    let text = "name = \"r\"\n[fabric]\nkind = \"leaf-spine\"\ngpus = 16\ngpus-per-host = 8\ngpus-per-leaf = 8\nnic = \"400Gbps\"\n\
                [transport]\nkind = \"roce\"\n[[workload]]\nkind = \"collective\"\nop = \"all-to-all\"\nsize = \"1600MiB\"\n";
    let r = run(text, &Options { flows: true, ..Options::default() });
    let flows: Vec<_> = r.flows.iter().flatten().collect();
    assert!(flows.iter().all(|f| f.bytes == 100 << 20), "{:?}", flows.iter().map(|f| f.bytes).collect::<Vec<_>>());
    assert!(flows.iter().any(|f| f.link_bytes > f.bytes), "the NIC's achievable share scales the network sends");
}

/// The tuner evaluates its candidates with the scenario's failures: two leaves joined by a
/// 100G link and a 100G detour of 4 ms, the direct link down from the start. A ring's 14
/// steps each wait on the detour (two at a time); a tree crosses it twice. The pick is the
/// fastest of the runs as they go (it was the ring, 34 ms against the tree's 24 ms, with a
/// 1 ms detour and one step at a time).
#[test]
fn the_tuner_sees_the_failures_its_collective_runs_under() {
    let mut text = String::from("name = \"detour\"\n[fabric]\nkind = \"custom\"\n");
    for g in 0..8 {
        text += &format!("[[fabric.node]]\nname = \"g{g}\"\nkind = \"gpu\"\n");
    }
    for (n, tier, level) in [("la", "leaf", 1), ("lb", "leaf", 1), ("x", "spine", 2)] {
        text += &format!("[[fabric.node]]\nname = \"{n}\"\nkind = \"switch\"\ntier = \"{tier}\"\nlevel = {level}\n");
    }
    let link = |a: &str, b: &str, rate: &str, lat: &str| {
        format!("[[fabric.link]]\na = \"{a}\"\nb = \"{b}\"\nrate = \"{rate}\"\nlatency = \"{lat}\"\n")
    };
    for g in 0..8 {
        text += &link(&format!("g{g}"), if g < 4 { "la" } else { "lb" }, "400Gbps", "1us");
    }
    text += &link("la", "lb", "100Gbps", "1us");
    text += &link("la", "x", "100Gbps", "2ms");
    text += &link("x", "lb", "100Gbps", "2ms");
    text += "[transport]\nkind = \"roce\"\n";
    for (name, algo) in [("auto", ""), ("ring", "algorithm = \"ring\"\n"), ("tree", "algorithm = \"tree\"\n")] {
        text += &format!(
            "[[workload]]\nname = \"{name}\"\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"128MiB\"\n{algo}"
        );
    }
    text += "[[failure]]\nlink = \"la:lb\"\n";
    let r = run(&text, &Options::default());
    let t: Vec<u64> = r.workloads.iter().map(|w| w.time_ns.unwrap()).collect();
    assert!(t[2] * 5 < t[1] * 4, "tree {} ns, ring {} ns", t[2], t[1]);
    assert_eq!(r.workloads[0].algorithm.as_deref(), Some("double-binary-tree"));
    assert!(t[0] <= t[1] && t[0] <= t[2] * 101 / 100, "auto {} ns, ring {} ns, tree {} ns", t[0], t[1], t[2]);
}

/// Workloads that would write more messages than a run may hold are refused with the count
/// before they are written: the step-by-step model asked for (a 1 GiB ring on 1,024 GPUs
/// took 16 GB, on 16,384 it ran out of memory), uniform flows past 9 million, and an
/// all-to-all pattern on thousands of GPUs.
#[test]
fn workloads_past_the_message_limit_are_refused_with_their_count() {
    let big = |gpus: u32, workload: &str| {
        format!("[fabric]\nkind = \"leaf-spine\"\ngpus = {gpus}\ngpus-per-host = 1\n[[workload]]\n{workload}")
    };
    let err = |text: String| run_with(&text, &Options::default(), &[]).map(|_| ()).unwrap_err().to_string();
    let e = err(big(
        2048,
        "kind = \"collective\"\nop = \"all-reduce\"\nalgorithm = \"ring\"\nmodel = \"steps\"\nsize = \"1GiB\"\nchannels = 2\n",
    ));
    assert!(
        e.contains("all-reduce on 2048 GPUs written step by step")
            && e.contains("16769024 messages")
            && e.contains("leave `model` out"),
        "{e}"
    );
    let e = err(big(16, "kind = \"uniform\"\nsize = \"1MiB\"\nflows = 9000001\n"));
    assert!(e.contains("flows") && e.contains("expected 1 to 9000000 flows"), "{e}");
    let e = err(big(3072, "kind = \"all-to-all\"\nsize = \"1MiB\"\n").replace("leaf-spine", "fat-tree"));
    assert!(e.contains("all-to-all on 3072 GPUs writes 9434112 flows") && e.contains("`ranks`"), "{e}");
}

/// A workload's `start` only delays it: a sweep's sizes and a collective are timed from it,
/// a training step begins at it, and nothing adds an endpoint latency for it. A sweep size
/// that cannot complete says so (it printed 0 us at 0 GB/s).
#[test]
fn a_start_delays_a_workload_without_changing_its_time() {
    let sweep = |extra: &str| {
        let text = format!(
            "{ONE_LEAF}\n[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsweep-from = \"1MiB\"\nsweep-to = \"4MiB\"\n{extra}"
        );
        run(&text, &Options::default()).sweeps[0].rows.iter().map(|r| r.time_us.unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(sweep("start = \"100ms\"\n"), sweep(""));
    let cut = format!(
        "{ONE_LEAF}\n[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsweep-from = \"1MiB\"\nsweep-to = \"2MiB\"\n[[failure]]\nswitch = \"leaf-0\"\n"
    );
    let rows = run(&cut, &Options::default()).sweeps[0].rows.clone();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert!(r.time_us.is_none() && r.busbw_gbytes.is_none(), "{r:?}");
        assert!(r.failure.as_deref().is_some_and(|f| f.contains("no path")), "{r:?}");
    }
    let two = |start: &str| {
        let text = format!(
            "{}\n[[workload]]\nname = \"a\"\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"1KiB\"\n\
             [[workload]]\nname = \"b\"\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"1KiB\"\n{start}",
            ONE_LEAF.replace("kind = \"roce\"", "kind = \"tcp\"")
        );
        let r = run(&text, &Options::default());
        (r.workloads[0].time_ns.unwrap(), r.workloads[1].time_ns.unwrap(), r.workloads[1].start_ns)
    };
    let (a, b, _) = two("");
    let (a2, b2, at) = two("start = \"1ms\"\n");
    assert_eq!((a, b), (a2, b2), "a start added to the time");
    assert_eq!(at, 1_000_000);
    let train = format!(
        "{ONE_LEAF}\n[[workload]]\nname = \"first\"\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"64MiB\"\n\
         [[workload]]\nname = \"later\"\nkind = \"training\"\nparameters = 1e9\nlayers = 8\nhidden = 2048\nsequence = 1024\nmicro-batch = 1\nglobal-batch = 8\nstart = \"1s\"\n"
    );
    let r = run(&train, &Options::default());
    assert_eq!(r.workloads[1].start_ns, 1_000_000_000, "the step began at 0");
    assert!(r.workloads[1].end_ns.unwrap() > 1_000_000_000);
}

#[test]
fn training_step_reports_compute_bubble_and_mfu() {
    let text = r#"
[fabric]
kind = "rail-optimized"
gpus = 64
gpus-per-host = 8
[[workload]]
kind = "training"
parameters = 7e9
layers = 32
hidden = 4096
sequence = 4096
micro-batch = 1
global-batch = 64
tp = 8
pp = 4
"#;
    let r = run(text, &policy(Policy::Adaptive));
    let t = r.workloads[0].training.as_ref().unwrap();
    assert_eq!((t.tp, t.pp, t.dp), (8, 4, 2));
    assert_eq!(t.micro_batches, 32);
    // Forward FLOPs: 2 P t + 4 L s^2 h b, over tp x pp GPUs at 989 TFLOP/s x 0.5.
    let flops = 2.0 * 7e9 * 4096.0 + 4.0 * 32.0 * 4096f64.powi(2) * 4096.0;
    let tf = (flops / 32.0 / (989e12 * 0.5) * 1e9).round() as u64;
    assert_eq!(t.fwd_ns_per_microbatch, tf);
    assert_eq!(t.compute_only_ns, (32 + 3) * 3 * tf);
    assert!((t.bubble_fraction - 3.0 / 35.0).abs() < 1e-4);
    assert!(t.step_ns > t.compute_only_ns);
    assert!(t.mfu > 0.0 && t.mfu < 0.5, "MFU {} is below the 0.5 efficiency", t.mfu);
    assert!(t.slowdown_vs_ideal.unwrap() >= 0.999);
}

/// A training step's collectives are what a collective workload's `auto` picks for one group
/// alone: the TP all-reduce of b·s·h·2 bytes inside a host (NVLS on H100, at the same time
/// to the nanosecond) and the DP all-reduce of the shard's gradients; `dp-algorithm` names
/// the DP algorithm and the protocol stays the tuner's.
#[test]
fn training_collectives_are_the_tuners_picks() {
    const FABRIC: &str = "[fabric]\nkind = \"rail-optimized\"\ngpus = 64\ngpus-per-host = 8\n";
    let train = |dp: &str| {
        let text = format!(
            "{FABRIC}[[workload]]\nkind = \"training\"\nparameters = 7e9\nlayers = 32\nhidden = 4096\n\
             sequence = 4096\nmicro-batch = 1\nglobal-batch = 64\ntp = 8\npp = 4\n{dp}"
        );
        run(&text, &policy(Policy::Adaptive)).workloads[0].training.clone().unwrap().collectives
    };
    let alone = |size: u64, ranks: &str| {
        let text = format!(
            "{FABRIC}[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"{size}B\"\nranks = {ranks}\n"
        );
        let w = run(&text, &policy(Policy::Adaptive)).workloads.remove(0);
        (w.algorithm.unwrap(), w.protocol.unwrap(), w.time_ns.unwrap())
    };
    let picks = train("");
    assert_eq!(picks.len(), 2, "{picks:?}");
    let (tp, dp) = (&picks[0], &picks[1]);
    assert_eq!((tp.what, tp.ranks, tp.size_bytes), ("tensor-parallel all-reduce", 8, 4096 * 4096 * 2));
    let (algo, proto, t) = alone(tp.size_bytes, "[0, 1, 2, 3, 4, 5, 6, 7]");
    assert_eq!((tp.algorithm.as_str(), tp.protocol.as_str(), tp.alone_ns), (algo.as_str(), proto.as_str(), Some(t)));
    assert!(algo.starts_with("nvls"), "H100 hosts reduce in the NVSwitch: {algo}");
    // P / (tp pp) x 2 bytes over the two replicas of shard (0, 0): ranks 0 and 32.
    assert_eq!((dp.what, dp.ranks, dp.size_bytes), ("data-parallel all-reduce", 2, (7e9 / 32.0) as u64 * 2));
    let (algo, proto, t) = alone(dp.size_bytes, "[0, 32]");
    assert_eq!((dp.algorithm.as_str(), dp.protocol.as_str(), dp.alone_ns), (algo.as_str(), proto.as_str(), Some(t)));
    let tree = train("dp-algorithm = \"tree\"\n");
    assert_eq!(tree[1].algorithm, "double-binary-tree");
    assert!(!tree[1].protocol.is_empty());
    // A DP group of one GPU per host under RoCE: its ring pays NCCL's ring rules (the tree's
    // network step with one GPU per host) as the workload's does; without them the step's
    // ring/LL128 was 135 us cheaper and won where the workload picks the tree.
    const ROCE: &str = "[fabric]\nkind = \"rail-optimized\"\ngpus = 128\ngpus-per-host = 8\n\
                        [transport]\nkind = \"roce\"\nrouting = \"ecmp\"\n";
    let step = format!(
        "{ROCE}[[workload]]\nkind = \"training\"\nparameters = 1e8\nlayers = 4\nhidden = 1024\n\
         sequence = 512\nmicro-batch = 1\nglobal-batch = 64\ntp = 8\npp = 1\n"
    );
    let opts = Options { no_ideal: true, ..Options::default() };
    let dp = run(&step, &opts).workloads[0].training.clone().unwrap().collectives[1].clone();
    assert_eq!((dp.ranks, dp.size_bytes), (16, 25_000_000));
    let ranks: Vec<String> = (0..16).map(|k| (8 * k).to_string()).collect();
    let w = format!(
        "{ROCE}[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"25000000B\"\nranks = [{}]\n",
        ranks.join(", ")
    );
    let w = run(&w, &opts).workloads.remove(0);
    assert_eq!(
        (dp.algorithm.as_str(), dp.protocol.as_str(), dp.alone_ns),
        (w.algorithm.unwrap().as_str(), w.protocol.unwrap().as_str(), w.time_ns)
    );
}

#[test]
fn htsim_export_has_header_connections_and_triggers() {
    let text = format!(
        "{ONE_LEAF}\n[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nalgorithm = \"ring\"\nprotocol = \"simple\"\nsize = \"8MiB\"\nchannels = 1\nmodel = \"steps\"\n"
    );
    let r = run(&text, &Options::default());
    let (cm, notes) = htsim_connection_matrix(&r).unwrap();
    let lines: Vec<&str> = cm.lines().collect();
    assert_eq!(lines[0], "Nodes 8");
    // 14 steps of 8 messages; a trigger per message that starts one of the next step's.
    assert_eq!(lines[1], format!("Connections {}", 2 * 7 * 8));
    let triggers: u32 = lines[2].strip_prefix("Triggers ").unwrap().parse().unwrap();
    assert!((8..=13 * 8).contains(&triggers), "{}", lines[2]);
    // A step waits for two messages (the chunk it forwards, through the part of its step
    // latency that follows it, and its own previous send); htsim starts a flow from one
    // trigger: the later of the two, counted.
    assert_eq!(notes.fallback, 0);
    assert_eq!(notes.relaxed, 13 * 8);
    // The first step starts after the simple protocol's network step latency (14 us), and
    // carries its 1 MiB payload, not the 1 MiB / 0.96 meshway moves at line rate for the
    // NIC's achievable 48 of 50 GB/s (htsim models its links itself); it fires its trigger
    // when its sender is done (htsim's send_done_trigger).
    assert!(lines[3].starts_with("0->1 id 1 start 14000000 size 1048576 send_done_trigger "), "{}", lines[3]);
    assert_eq!(cm.matches(" size 1048576").count(), 2 * 7 * 8, "every message carries 8 MiB / 8 ranks");
    assert!(!cm.contains("recv_done_trigger"), "htsim's RoCE never fires recv_done_trigger");
    // Every trigger is fired by exactly one flow and starts at least one.
    for t in 1..=triggers {
        assert_eq!(cm.matches(&format!(" send_done_trigger {t}\n")).count(), 1, "trigger {t}");
        assert!(cm.contains(&format!(" trigger {t} size ")), "trigger {t} starts a flow");
        assert!(cm.contains(&format!("trigger id {t} oneshot\n")));
    }
    // The last step's flows start nothing.
    assert!(lines[3 + 13 * 8..3 + 14 * 8].iter().all(|l| !l.contains("send_done")));
}

fn err(text: &str) -> String {
    run_with(text, &Options::default(), &[]).unwrap_err().to_string()
}

#[test]
fn bad_workloads_name_file_line_and_key() {
    let e = err(&format!("{ONE_LEAF}\n[[workload]]\nkind = \"collectve\"\n"));
    assert!(
        e.starts_with("test.toml:10:8: `workload[1].kind`: unknown value \"collectve\": expected one of collective, "),
        "{e}"
    );
    assert!(e.ends_with("did you mean `collective`?"), "{e}");
    let e = err(&format!("{ONE_LEAF}\n[[workload]]\nkind = \"collective\"\nszie = \"1GiB\"\n"));
    assert!(e.contains("`workload[1].szie`") && e.contains("did you mean `size`?"), "{e}");
    let e = err(&format!("{ONE_LEAF}\n[[workload]]\nkind = \"collective\"\nsize = \"1GiBs\"\n"));
    assert!(e.contains("test.toml:11:8: `workload[1].size`: invalid size \"1GiBs\""), "{e}");
    let e = err(&format!("{ONE_LEAF}\n[[workload]]\nkind = \"permutation\"\nsize = \"1MiB\"\nsweep-to = \"1GiB\"\n"));
    assert!(
        e.contains("test.toml:12: `workload[1].sweep-to`: does not apply to a permutation workload (it is read by collective workloads)"),
        "{e}"
    );
    let e = err(&format!("{ONE_LEAF}\n[[workload]]\nkind = \"collective\"\nsize = \"1MiB\"\nchannels = -2\n"));
    assert!(e.contains("test.toml:12:12: `workload[1].channels`: expected a whole number of 0 or more, got -2"), "{e}");
    let e = err(&format!("{ONE_LEAF}\n[[workload]]\nkind = \"collective\"\nsize = \"1MiB\"\nranks = [0, 1.5]\n"));
    assert!(e.contains("`workload[1].ranks`: expected a GPU name such as \"gpu-3\" or a rank number, got 1.5"), "{e}");
    let e = err(&format!("{ONE_LEAF}\n[[workload]]\nkind = \"collective\"\nsize = \"1MiB\"\ngroup = \"leaf-O\"\n"));
    assert!(e.contains("`workload[1].group`: no group named \"leaf-O\""), "{e}");
    let e = err(&format!("{ONE_LEAF}\n[[workload]]\nkind = \"permutation\"\nsize = \"1MiB\"\n[[failure]]\nswitch = \"leaf-0\"\nwhen = \"1ms\"\n"));
    assert!(
        e.contains("`failure[1].when`: unknown key `when`: expected one of at, link, switch, until, duration"),
        "{e}"
    );
    let e = err(&format!(
        "{ONE_LEAF}\n[[workload]]\nkind = \"permutation\"\nsize = \"1MiB\"\n[[failure]]\nlink = \"gpu-0:spine-9\"\n"
    ));
    assert!(e.contains("`failure[1].link`: no node named \"spine-9\""), "{e}");
    let e = err(&format!(
        "{ONE_LEAF}\n[[workload]]\nkind = \"permutation\"\nsize = \"1MiB\"\n[[failure]]\nswitch = \"laef-0\"\n"
    ));
    assert!(e.contains("no node named \"laef-0\" in the fabric; did you mean \"leaf-0\"?"), "{e}");
    let e = err(&format!("{ONE_LEAF}\n[[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n"));
    assert!(e.contains("no file f.csv"), "{e}");
    let e = run_with(
        &format!("{ONE_LEAF}\n[[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n"),
        &Options::default(),
        &[("f.csv", "src,dst,bytes\ngpu-0,gpu-99,1MiB\n".into())],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("f.csv:2: \"gpu-99\" is not a GPU of this fabric"), "{e}");
    let e = err(&format!("{ONE_LEAF}\n[[workload]]\nkind = \"collective\"\nalgorithm = \"halving-doubling\"\nsize = \"1MiB\"\nranks = [0, 1, 2]\n"));
    assert!(e.contains("power-of-two"), "{e}");
    let e = err(ONE_LEAF);
    assert!(e.contains("no [[workload]] tables"), "{e}");
}

/// Values that would wrap 64-bit sums, run without end or build millions of messages are
/// refused naming the key.
#[test]
fn runaway_workloads_are_refused() {
    let coll = |extra: &str| format!("{ONE_LEAF}\n[[workload]]\nkind = \"collective\"\n{extra}");
    // A sweep to the top of the 64-bit range doubled without end.
    let e = err(&coll("sweep-from = \"1B\"\nsweep-to = \"18446744073709551615B\"\n"));
    assert!(e.contains("`workload[1].sweep-to`: expected at most 1PiB"), "{e}");
    let e = err(&format!("{ONE_LEAF}\n[[workload]]\nkind = \"incast\"\nsize = \"2PiB\"\n"));
    assert!(e.contains("`workload[1].size`: expected at most 1PiB, got 2PiB"), "{e}");
    let e = err(&coll("size = \"1MiB\"\nsweep-from = \"1KiB\"\nsweep-to = \"1MiB\"\n"));
    assert!(e.contains("`workload[1].size`: give either size or sweep-from and sweep-to, not both"), "{e}");
    // A sweep that ends exactly at its limit runs each power of two once.
    let r = run_with(&coll("sweep-from = \"1KiB\"\nsweep-to = \"4KiB\"\n"), &Options::default(), &[]).unwrap();
    let sizes: Vec<u64> = r.sweeps[0].rows.iter().map(|x| x.size_bytes).collect();
    assert_eq!(sizes, [1024, 2048, 4096]);
    let e = err(&coll("size = \"1MiB\"\nstart = \"400d\"\n"));
    assert!(e.contains("`workload[1].start`: expected at most 365d"), "{e}");
    let e = err(&format!(
        "{}[[failure]]\nswitch = \"leaf-0\"\nat = \"1ms\"\nduration = \"0ns\"\n",
        coll("size = \"1MiB\"\n")
    ));
    assert!(e.contains("`failure[1].duration`: expected a positive duration"), "{e}");
    let e = err(&format!("{}[[failure]]\nswitch = \"leaf-0\"\nat = \"400d\"\n", coll("size = \"1MiB\"\n")));
    assert!(e.contains("`failure[1].at`: expected at most 365d"), "{e}");
    // `simulate` holds the MTU to the range `plan` does.
    let e = err(&coll("size = \"1MiB\"\n").replace("kind = \"roce\"", "kind = \"roce\"\nmtu = \"1B\""));
    assert!(e.contains("`transport.mtu`: expected 256 to 65536 bytes, got 1"), "{e}");
    // A retransmission timeout of 0 resent without end.
    let packet = Options { fidelity: Some(meshway_sim::simulate::Fidelity::Packet), ..Options::default() };
    let e = run_with(&format!("{}[simulation.packet]\nrto = \"0ns\"\n", coll("size = \"1MiB\"\n")), &packet, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`simulation.packet.rto`: expected at least 1us, got 0ns"), "{e}");
    // 5,000 micro-batches a step (8 data-parallel GPUs at micro-batch 1).
    let e = err(&format!(
        "{ONE_LEAF}\n[[workload]]\nkind = \"training\"\nparameters = 1e9\nlayers = 8\nhidden = 2048\n\
         sequence = 2048\nglobal-batch = 40000\n"
    ));
    assert!(e.contains("`workload[1].global-batch`: 40000 / (micro-batch x dp = 8) = 5000 micro-batches a step, expected at most 4096"), "{e}");
    // Training keys past any model name the key (the clock overflowed without one).
    let train = |extra: &str| {
        err(&format!("{ONE_LEAF}\n[[workload]]\nkind = \"training\"\nlayers = 8\nsequence = 2048\n{extra}"))
    };
    let e = train("parameters = 1e30\nhidden = 2048\n");
    assert!(e.contains("`workload[1].parameters`: expected at most 1e15, got 1e30"), "{e}");
    let e = train("parameters = 1e9\nhidden = 2048\ntop-k = 2\n");
    assert!(e.contains("`workload[1].top-k`: top-k routes tokens to experts: give ep"), "{e}");
    let e = train("parameters = 1e9\nhidden = 0\n");
    assert!(e.contains("`workload[1].hidden`: expected a positive whole number, got 0"), "{e}");
    let e = train("parameters = 1e9\nhidden = 2048\npp = 0\n");
    assert!(e.contains("`workload[1].pp`: expected at least 1 pipeline stage"), "{e}");
    // Each key within its bound, their product not: 3 x 4.2e18 FLOPs a micro-batch, four a
    // step, at 0.1% of an H100's peak is about 1.6 years.
    let e = train("parameters = 1e15\nhidden = 1048576\nefficiency = 0.001\n");
    assert!(e.contains("`workload[1].parameters`: one step computes for") && e.contains("at most 365 days"), "{e}");
    // A flow file's lines hold the same bounds as workloads.
    let flows = format!("{ONE_LEAF}\n[[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n");
    let line = |row: &str| {
        run_with(&flows, &Options::default(), &[("f.csv", format!("src,dst,bytes,start\n{row}\n"))])
            .unwrap_err()
            .to_string()
    };
    let e = line("gpu-0,gpu-1,2PiB,0");
    assert!(e.contains("f.csv:2: bytes: expected 1B to 1PiB, got 2PiB"), "{e}");
    let e = line("gpu-0,gpu-1,1MiB,18446744073709551615ns");
    assert!(e.contains("f.csv:2: start: expected at most 365d"), "{e}");
    let e = train("parameters = 1e9\nhidden = 2048\nefficiency = 1e-300\n");
    assert!(e.contains("`workload[1].efficiency`: expected a share of peak from 0.001 to 1"), "{e}");
}

#[test]
fn csv_flow_lists_follow_rfc_4180() {
    // Quoted fields, a comma inside quotes, comments and blank lines (indented or not), and a
    // column the simulator does not read.
    let text = format!("{ONE_LEAF}\n[[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n");
    let csv = "# flows, with a comment that has \"quotes\"\n\
               note,src,dst,bytes,start,deps\n\
               \n   \n\
               \"first, of two\",\"gpu-0\",gpu-1,1MiB,0,\n\
               \x20 # an indented comment, too\n\
               \"second \"\"quoted\"\", with a comma\", gpu-2 ,\"gpu-3\",\"2MiB\",1us,\"0\"\n"
        .to_string();
    let opts = Options { flows: true, ..Options::default() };
    let r = run_with(&text, &opts, &[("f.csv", csv)]).unwrap_or_else(|e| panic!("{e}"));
    let flows: Vec<_> = r.flows.iter().flatten().map(|f| (f.src.as_str(), f.dst.as_str(), f.bytes)).collect();
    assert_eq!(flows, [("gpu-0", "gpu-1", 1 << 20), ("gpu-2", "gpu-3", 2 << 20)]);
}

#[test]
fn malformed_csv_flow_lists_name_file_and_line() {
    let text = format!("{ONE_LEAF}\n[[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n");
    let bad = |csv: &str| run_with(&text, &Options::default(), &[("f.csv", csv.into())]).unwrap_err().to_string();
    // Line numbers count the comment and blank lines before the record.
    let e = bad("# header next\nsrc,dst,bytes\n\ngpu-0,gpu-1,1MiB\ngpu-1,gpu-2\n");
    assert!(e.contains("f.csv:5: expected 3 fields"), "{e}");
    let e = bad("src,dst,size\ngpu-0,gpu-1,1MiB\n");
    assert!(e.contains("f.csv:1: expected a header with src,dst,bytes[,start][,deps], got \"src,dst,size\""), "{e}");
    let e = bad("src,dst,bytes,deps\ngpu-0,gpu-1,1MiB,\ngpu-1,gpu-2,1MiB,\"0;x\"\n");
    assert!(e.contains("f.csv:3: deps: \"x\" is not a flow index"), "{e}");
    let e = bad("src,dst,bytes\n\"gpu-0,gpu-1\",gpu-2,1MiB\n");
    assert!(e.contains("f.csv:2: \"gpu-0,gpu-1\" is not a GPU of this fabric"), "{e}");
    let e = bad("# only a comment\n\n");
    assert!(e.contains("f.csv: empty flow list"), "{e}");
}

#[test]
fn json_flow_lists_and_dependencies() {
    let text = format!("{ONE_LEAF}\n[[workload]]\nkind = \"flows\"\nfile = \"f.json\"\n");
    let json = r#"[{"src":"gpu-0","dst":"gpu-1","bytes":"1MiB"},{"src":"gpu-1","dst":"gpu-2","bytes":"1MiB","deps":[0]},{"src":"gpu-3","dst":"gpu-4","bytes":1000,"start":"10us"}]"#;
    let r = run_with(&text, &Options { flows: true, ..Options::default() }, &[("f.json", json.into())]).unwrap();
    let f = r.flows.unwrap();
    assert_eq!(f.len(), 3);
    assert!(f[1].start_ns.unwrap() >= f[0].end_ns.unwrap(), "the dependent flow starts after its dependency");
    assert_eq!(f[2].start_ns, Some(10_000 + 3_000), "start plus alpha");
    // JSON takes the CSV's keys and no others: a pinned path (a string or a list), deps that
    // fit a flow index; a byte-order mark is skipped; 0 bytes are refused, not sent as 1.
    let bad = |json: &str| run_with(&text, &Options::default(), &[("f.json", json.into())]).unwrap_err().to_string();
    let e = bad(r#"[{"src":"gpu-0","dst":"gpu-1","bytes":"1MiB","strt":"1us"}]"#);
    assert!(e.contains("f.json: flow 0: unknown key \"strt\""), "{e}");
    let e = bad(
        r#"[{"src":"gpu-0","dst":"gpu-1","bytes":"1MiB"},{"src":"gpu-0","dst":"gpu-1","bytes":"1MiB","deps":[4294967296]}]"#,
    );
    assert!(e.contains("flow 1: deps must be flow indexes, got 4294967296"), "{e}");
    let e = bad(r#"[{"src":"gpu-0","dst":"gpu-1","bytes":"1MiB","path":"spine-9"}]"#);
    assert!(e.contains("f.json: flow 0: path:"), "{e}");
    let e = bad(r#"[{"src":"gpu-0","dst":"gpu-1","bytes":0}]"#);
    assert!(e.contains("bytes: expected 1B to 1PiB, got 0B"), "{e}");
    let ok = "\u{feff}[{\"src\":\"gpu-0\",\"dst\":\"gpu-1\",\"bytes\":\"1MiB\",\"path\":[\"leaf-0\"]}]";
    assert!(run_with(&text, &Options::default(), &[("f.json", ok.into())]).is_ok());
    // The CSV: a column named twice, or a row longer than its header, is refused.
    let csv = format!("{ONE_LEAF}\n[[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n");
    let e = run_with(&csv, &Options::default(), &[("f.csv", "src,dst,bytes,bytes\n0,1,1MiB,2MiB\n".into())])
        .unwrap_err()
        .to_string();
    assert!(e.contains("f.csv:1: column \"bytes\" is given twice"), "{e}");
    let e = run_with(&csv, &Options::default(), &[("f.csv", "src,dst,bytes\n0,1,1MiB,5us\n".into())])
        .unwrap_err()
        .to_string();
    assert!(e.contains("f.csv:2: 4 fields, but the header names 3"), "{e}");
    // A misspelled column is named (its flows started at 0 without a word).
    let e = run_with(
        &csv,
        &Options::default(),
        &[(
            "f.csv",
            "src,dst,bytes,strat
0,1,1MiB,50ms
"
            .into(),
        )],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("f.csv:1: column 4 is \"strat\": did you mean \"start\"?"), "{e}");
    // A pinned path visits each switch once.
    let e = run_with(&csv, &Options::default(), &[("f.csv", "src,dst,bytes,path\n0,1,1MiB,leaf-0 leaf-0\n".into())])
        .unwrap_err()
        .to_string();
    assert!(e.contains("f.csv:2: path: leaf-0 comes twice"), "{e}");
    // "+1" is no rank number.
    let e =
        run_with(&csv, &Options::default(), &[("f.csv", "src,dst,bytes\n+1,2,1MiB\n".into())]).unwrap_err().to_string();
    assert!(e.contains("\"+1\" is not a GPU of this fabric"), "{e}");
}

#[test]
fn infiniband_uses_its_headers_alpha_and_switch_latency() {
    let text =
        format!("{}\n[[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n", ONE_LEAF.replace("roce", "infiniband"));
    let r = run_with(&text, &Options::default(), &[("f.csv", "src,dst,bytes\ngpu-0,gpu-1,1MiB\n".into())]).unwrap();
    assert_eq!(r.transport.routing, Policy::Adaptive, "InfiniBand routes adaptively by default");
    let cat = Catalog::builtin();
    let ib = cat.transport_profile("infiniband").unwrap();
    let prop = cat.cable_lengths.host_leaf.propagation(cat.constants.fiber_delay_per_km);
    let payload = 1u64 << 20;
    let wire = payload + payload.div_ceil(4096) * 26;
    let fluid = (wire * 8 * 1_000_000_000).div_ceil(400_000_000_000);
    let last_packet = ((4096 + 26) * 8 * 1_000_000_000u64).div_ceil(400_000_000_000);
    let expected = ib.alpha.0 + fluid + 2 * prop.0 + ib.hop_latency.unwrap().0 + last_packet;
    assert_eq!(r.workloads[0].time_ns, Some(expected));
}

#[test]
fn more_queue_pairs_per_connection_spread_ecmp_collisions() {
    let one = run(FAT_TREE_PERM, &policy(Policy::Ecmp));
    let text = FAT_TREE_PERM.replace("[[workload]]", "[transport]\nqps = 8\n[[workload]]");
    let eight = run(&text, &policy(Policy::Ecmp));
    let (t1, t8) = (one.workloads[0].time_ns.unwrap(), eight.workloads[0].time_ns.unwrap());
    assert!(t8 < t1, "8 QPs ({t8} ns) should beat 1 QP ({t1} ns) under ECMP");
    let e = run_with(
        &FAT_TREE_PERM.replace("[[workload]]", "[transport]\nqps = 0\n[[workload]]"),
        &Options::default(),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`transport.qps`: expected 1 to 64"), "{e}");
}

#[test]
fn all_reduce_busbw_never_beats_what_a_gpu_can_send() {
    // Every rank of an all-reduce must send at least (n-1)/n of the buffer (reduce-scatter
    // lower bound) on its NIC and NVLink together, at the protocol's efficiency, so
    // busbw = 2(n-1)/n x S / t <= 2 x (NIC + NVLink) x efficiency, for every algorithm,
    // protocol, size and fabric here.
    let cat = Catalog::builtin();
    let fabrics = [
        ("[fabric]\nkind = \"leaf-spine\"\ngpus = 8\ngpus-per-host = 1\nnic = \"400Gbps\"\n", 400e9, 0.0),
        (
            "[fabric]\nkind = \"leaf-spine\"\ngpus = 16\ngpus-per-host = 8\nnic = \"400Gbps\"\nnvlink = \"3.6Tbps\"\n",
            400e9,
            3.6e12,
        ),
        ("[fabric]\nkind = \"rail-optimized\"\ngpus = 32\nnic = \"200Gbps\"\nnvlink = \"2.4Tbps\"\n", 200e9, 2.4e12),
    ];
    for (fabric, nic, nvlink) in fabrics {
        for size in ["4KiB", "1MiB", "64MiB"] {
            for algo in ["ring", "tree", "hierarchical", "nvls", "nvls-tree"] {
                for proto in ["simple", "ll128", "ll"] {
                    if algo.starts_with("nvls") && proto != "simple" {
                        continue;
                    }
                    let text = format!(
                        "{fabric}[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nalgorithm = \"{algo}\"\nprotocol = \"{proto}\"\nsize = \"{size}\"\n"
                    );
                    let Ok(r) = run_with(&text, &Options { no_ideal: true, ..Options::default() }, &[]) else {
                        // Hierarchical and NVLS-tree need several hosts of several GPUs; NVLS
                        // across hosts needs SHARP switches.
                        assert!(
                            algo != "ring"
                                && algo != "tree"
                                && (fabric.contains("gpus-per-host = 1") || algo == "nvls"),
                            "{algo} {fabric}"
                        );
                        continue;
                    };
                    let busbw = r.workloads[0].busbw_gbps.unwrap() * 1e9;
                    let bound = 2.0 * (nic + nvlink) * cat.protocol(proto).unwrap().efficiency;
                    assert!(busbw <= bound, "{algo} {proto} {size}: busbw {busbw} above {bound} on {fabric}");
                }
            }
        }
    }
}

/// One 8-GPU H100 host (NVLink 3.6 Tbps each way, the H100 reaches 370.8 GB/s of it).
const ONE_HOST: &str = "[fabric]\nkind = \"rail-optimized\"\ngpus = 8\ngpus-per-host = 8\nnvlink = \"3.6Tbps\"\n";

#[test]
fn nvls_matches_its_closed_form() {
    // Every GPU moves its bytes into and out of the NVSwitch at the achievable NVLink rate
    // times NCCL's NVLS efficiency; the collective ends the protocol's NVLS latency later.
    // all-reduce: S + S/g each way; reduce-scatter: S in, S/g out; all-gather: S/g in, S out.
    // Bytes on the wire carry the transport's headers (RoCE by default), as every message.
    let cat = Catalog::builtin();
    let roce = cat.transport_profile("roce").unwrap();
    let wire = |b: f64| b + (b / 4096.0).ceil() * f64::from(roce.header_bytes);
    let h100 = cat.gpu_model("h100-sxm").unwrap();
    let share = h100.nvlink_achievable.unwrap().0 as f64 / 3.6e12 * h100.nvls_efficiency.unwrap();
    assert!((share - 370.8 / 450.0 * 0.85).abs() < 1e-9);
    let lat = cat.protocol("simple").unwrap().nvls_latency.unwrap().0 as f64;
    let s = (1u64 << 30) as f64;
    for (op, most) in [("all-reduce", s + s / 8.0), ("reduce-scatter", s), ("all-gather", s)] {
        let text = format!(
            "{ONE_HOST}[[workload]]\nkind = \"collective\"\nop = \"{op}\"\nalgorithm = \"nvls\"\nsize = \"1GiB\"\n"
        );
        let r = run(&text, &Options { no_ideal: true, ..Options::default() });
        let w = &r.workloads[0];
        assert_eq!((w.algorithm.as_deref(), w.protocol.as_deref()), (Some("nvls"), Some("simple")), "{op}");
        // NCCL's pipeline: 16 NVLS channels x 8 heads, 128 KiB chunks at 1 GiB, so each
        // channel runs 64 loops of 8 chunks; the fill is one loop per stage after the
        // first (all-reduce: 3 stages; reduce-scatter and all-gather: 2), at the busiest
        // port's pace.
        let stages = if op == "all-reduce" { 3.0 } else { 2.0 };
        let port = (most / share).ceil() * 8.0 / 3.6e12 * 1e9;
        let fill = (stages - 1.0) / 64.0 * port;
        let closed = wire((most / share).ceil()) * 8.0 / 3.6e12 * 1e9 + lat + fill;
        let got = w.time_ns.unwrap() as f64;
        assert!((got - closed).abs() / closed < 0.001, "{op}: {got} ns vs closed form {closed} ns");
    }
    // All-reduce busbw on 8 GPUs: 2(n-1)/(n+1) x 370.8 x 0.85 = 490 GB/s less the latency
    // and the pipeline's fill, well above what a ring can reach (370.8 GB/s): NVLS is why
    // NCCL measures 479-480 GB/s on 8 H100 at 8 GiB.
    let text = format!("{ONE_HOST}[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"8GiB\"\n");
    let r = run(&text, &Options { no_ideal: true, ..Options::default() });
    let w = &r.workloads[0];
    assert_eq!(w.algorithm.as_deref(), Some("nvls"), "the tuner takes NVLS at 8 GiB: {:?}", w.tuner);
    let busbw = w.busbw_gbps.unwrap() / 8.0;
    assert!(busbw > 470.0 && busbw <= 14.0 / 9.0 * 370.8 * 0.85, "{busbw}");
}

/// Two p4de-like hosts on AWS EFA: 8 GPUs each, a 50 Gb/s share of an EFA device per GPU.
fn efa_hosts(nic_model: &str, transport: &str) -> String {
    format!(
        "[fabric]\nkind = \"leaf-spine\"\ngpus = 16\ngpus-per-host = 8\nnic = \"50Gbps\"\nnic-model = \"{nic_model}\"\n\
         gpu = \"a100-sxm\"\n[transport]\nkind = \"{transport}\"\n"
    )
}

#[test]
fn efa_pays_its_latency_and_runs_the_protocols_its_nic_allows() {
    let cat = Catalog::builtin();
    // One 8-byte message between hosts: EFA's step is its 20 us alpha (aws-ofi-nccl's P5
    // tuner), where RoCE's is LL's 2.7 us table step raised to RoCE's 3 us alpha; the paths
    // and the base latency are the same, so the times differ by the alphas alone, less the
    // header: RoCE's 82 bytes against EFA's 64, 2.9 ns a link at 50 Gb/s.
    let send = "[[workload]]\nkind = \"collective\"\nop = \"send-recv\"\nranks = [0, 8]\nsize = \"8B\"\n\
                protocol = \"simple\"\n";
    let t = |text: String| {
        let r = run(&format!("{text}{send}"), &Options::default());
        r.workloads[0].time_ns.unwrap()
    };
    let efa = t(efa_hosts("aws-efa-p4d", "efa"));
    // RoCE on the same hosts (an EFA device runs only efa, so no NIC model: the line rate).
    let roce = t(efa_hosts("aws-efa-p4d", "roce").replace("nic-model = \"aws-efa-p4d\"\n", ""));
    let alpha = |k: &str| cat.transport_profile(k).unwrap().alpha.0 as i64;
    let simple_step = cat.protocol("simple").unwrap().ring_network_step.0 as i64;
    let want = alpha("efa").max(simple_step) - alpha("roce").max(simple_step);
    assert_eq!(alpha("efa"), 20_000);
    assert!((efa as i64 - roce as i64 - want).abs() <= 10, "efa {efa} ns, roce {roce} ns, want a gap of {want}");
    // An EFA device runs only efa, and efa only on one.
    let e = err(&format!("{}{send}", efa_hosts("aws-efa-p4d", "roce")));
    assert!(
        e.contains("\"aws-efa-p4d\" runs only efa (catalog [[nic]] transport), but [transport] kind is \"roce\""),
        "{e}"
    );
    let e = err(&format!("{}{send}", efa_hosts("aws-efa-p4d", "efa").replace("nic-model = \"aws-efa-p4d\"\n", "")));
    assert!(
        e.contains("`fabric.nic-model`: missing: [transport] kind = \"efa\" needs the NIC model of an EFA instance"),
        "{e}"
    );
    // The tuner weighs only Simple through a first-generation EFA; a NIC without a
    // restriction gets all three.
    let ar = "[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"64KiB\"\n";
    let r = run(&format!("{}{ar}", efa_hosts("aws-efa-p4d", "efa")), &Options::default());
    let protos: std::collections::BTreeSet<&str> = r.workloads[0].tuner.iter().map(|c| c.protocol.as_str()).collect();
    assert_eq!(protos.into_iter().collect::<Vec<_>>(), ["simple"]);
    // P5's EFA runs every protocol.
    let open = efa_hosts("aws-efa-p5", "efa").replace("\"50Gbps\"", "\"400Gbps\"\nplanes = 4");
    let r = run(&format!("{open}{ar}"), &Options::default());
    let protos: std::collections::BTreeSet<&str> = r.workloads[0].tuner.iter().map(|c| c.protocol.as_str()).collect();
    assert_eq!(protos.into_iter().collect::<Vec<_>>(), ["ll", "ll128", "simple"]);
    // Small all-to-all sends use LL in NCCL, but not through this NIC.
    let a2a = "[[workload]]\nkind = \"collective\"\nop = \"all-to-all\"\nsize = \"16KiB\"\n";
    let r = run(&format!("{}{a2a}", efa_hosts("aws-efa-p4d", "efa")), &Options::default());
    assert_eq!(r.workloads[0].protocol.as_deref(), Some("simple"));
    let r = run(&format!("{open}{a2a}"), &Options::default());
    assert_eq!(r.workloads[0].protocol.as_deref(), Some("ll"));
    // An explicit protocol the NIC cannot run is refused by name.
    let e = err(&format!("{}{ar}protocol = \"ll128\"\n", efa_hosts("aws-efa-p4d", "efa")));
    assert!(e.contains("`workload[1].protocol`: the fabric's NIC model \"aws-efa-p4d\" runs only simple"), "{e}");
    // No in-network reduction over EFA, whatever the switches.
    let sharp = efa_hosts("aws-efa-p4d", "efa").replace(
        "gpu = \"a100-sxm\"",
        "gpu = \"h100-sxm\"\nleaf-model = \"quantum2-qm9700\"\nspine-model = \"quantum2-qm9700\"",
    );
    for algo in ["collnet", "nvls"] {
        let e = err(&format!("{sharp}{ar}algorithm = \"{algo}\"\n"));
        assert!(
            e.contains("efa has no in-network reduction: SHARP (collnet, nvls across hosts) runs over InfiniBand"),
            "{e}"
        );
    }
    let r = run(&format!("{sharp}{ar}"), &Options::default());
    assert!(
        r.workloads[0].tuner.iter().all(|c| c.algorithm != "collnet" && c.algorithm != "nvls"),
        "{:?}",
        r.workloads[0].tuner
    );
    // EFA is not lossless, and runs at the flow level only.
    let e = err(&format!("{}lossless = true\n{ar}", efa_hosts("aws-efa-p4d", "efa")));
    assert!(e.contains("`transport.lossless`: efa is not lossless"), "{e}");
    let text = format!("{}{ar}", efa_hosts("aws-efa-p4d", "efa"));
    let e = run_with(
        &text,
        &Options { fidelity: Some(meshway_sim::simulate::Fidelity::Packet), ..Options::default() },
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("--fidelity: test.toml: ") && e.contains("efa runs at flow level"), "{e}");
    // Asked for by the file, the error names the file's key, not a flag it was not given.
    let e = err(&format!("{}[simulation]\nfidelity = \"packet\"\n{ar}", efa_hosts("aws-efa-p4d", "efa")));
    assert!(
        e.contains("`simulation.fidelity`: the packet level models") && e.contains("efa runs at flow level"),
        "{e}"
    );
}

/// Traffic that stays on NVLink does not depend on the network transport: a one-host
/// broadcast, and a training step whose TP all-reduces stay in the host, take the same time on
/// EFA (20 us per network message), InfiniBand (2 us) and RoCE (3 us). EFA made the broadcast
/// 10x and the training step 3.2x slower.
#[test]
fn nvlink_traffic_pays_no_network_transports_latency() {
    let host = |kind: &str| {
        let model = if kind == "efa" { "nic-model = \"aws-efa-p5\"\n" } else { "" };
        format!(
            "[fabric]\nkind = \"leaf-spine\"\ngpus = 8\ngpus-per-host = 8\nnic = \"400Gbps\"\nplanes = 4\n{model}\
             gpu = \"h100-sxm\"\n[transport]\nkind = \"{kind}\"\n"
        )
    };
    let bcast = "[[workload]]\nkind = \"collective\"\nop = \"broadcast\"\nsize = \"8B\"\n";
    let train = "[[workload]]\nkind = \"training\"\nparameters = 1.3e9\nlayers = 24\nhidden = 2048\nsequence = 2048\n\
                 micro-batch = 1\nglobal-batch = 16\ntp = 8\npp = 1\n";
    for w in [bcast, train] {
        let t = |kind: &str| {
            run(&format!("{}{w}", host(kind)), &Options { no_ideal: true, ..Options::default() }).workloads[0]
                .time_ns
                .unwrap() as f64
        };
        let (efa, ib, roce) = (t("efa"), t("infiniband"), t("roce"));
        for (k, x) in [("infiniband", ib), ("roce", roce)] {
            assert!((efa - x).abs() / x < 0.005, "{w}: efa {efa} ns against {k} {x} ns");
        }
    }
}

/// NCCL's choice through AWS's EFA plugin on two p5 hosts: the plugin reports 75 us of
/// network latency, which NCCL's model counts on every network step (twice with Simple). At
/// 64 KiB the NVLS-tree is the fastest meshway simulates, but NCCL's model prices it 300 us
/// higher and the LL tree 150 us higher, so the tree with LL runs, as in the published runs.
#[test]
fn the_tuner_ranks_as_nccls_model_with_the_net_plugins_latency() {
    let p5 = "[fabric]\nkind = \"leaf-spine\"\ngpus = 16\ngpus-per-host = 8\nnic = \"400Gbps\"\nplanes = 4\n\
              nic-model = \"aws-efa-p5\"\ngpu = \"h100-sxm\"\n[transport]\nkind = \"efa\"\n\
              [[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"64KiB\"\n";
    let r = run(p5, &Options { no_ideal: true, ..Options::default() });
    let w = &r.workloads[0];
    let term = |c: &meshway_sim::tuner::Candidate| {
        let steps = match c.algorithm.as_str() {
            "ring" | "double-binary-tree" | "nvls-tree" => 2, // 2 hosts: 2(2-1) and 2 log2(2)
            other => panic!("unexpected candidate {other}"),
        };
        steps * 75_000 * if c.protocol == "simple" { 2 } else { 1 }
    };
    for c in &w.tuner {
        assert_eq!(c.nccl_net_latency_ns, Some(term(c)), "{c:?}");
    }
    let done: Vec<_> = w.tuner.iter().filter(|c| c.time_ns.is_some()).collect();
    let ranked = done.iter().min_by_key(|c| c.time_ns.unwrap() + term(c)).unwrap();
    assert_eq!((ranked.algorithm.as_str(), ranked.protocol.as_str()), ("double-binary-tree", "ll"));
    let best = ranked.time_ns.unwrap() + term(ranked);
    // The NVLS-tree's bound alone is below the pick's time, but not with its term; every
    // candidate left unsimulated was bounded out with its term counted.
    let nvls = w.tuner.iter().find(|c| c.algorithm == "nvls-tree").unwrap();
    assert!(nvls.ideal_ns.unwrap() < ranked.time_ns.unwrap(), "{nvls:?}");
    for c in w.tuner.iter().filter(|c| c.time_ns.is_none()) {
        assert!(c.ideal_ns.unwrap() + term(c) >= best, "{c:?}");
    }
    assert_eq!((w.algorithm.as_deref(), w.protocol.as_deref()), (Some("double-binary-tree"), Some("ll")));
    // The reported time is the simulated one, without the term.
    assert!(w.time_ns.unwrap().abs_diff(ranked.time_ns.unwrap()) * 100 <= ranked.time_ns.unwrap());
    // The same hosts on InfiniBand ConnectX-7 (NCCL's IB transport reports no latency) keep
    // the fastest.
    let cx7 = p5
        .replace("nic-model = \"aws-efa-p5\"\n", "nic-model = \"connectx7-400g\"\n")
        .replace("kind = \"efa\"", "kind = \"infiniband\"");
    let r = run(&cx7, &Options { no_ideal: true, ..Options::default() });
    let w = &r.workloads[0];
    assert!(w.tuner.iter().all(|c| c.nccl_net_latency_ns.is_none()));
    let fastest = w.tuner.iter().filter(|c| c.time_ns.is_some()).min_by_key(|c| c.time_ns).unwrap();
    assert_eq!(w.algorithm.as_deref(), Some(fastest.algorithm.as_str()));
    assert_eq!(w.protocol.as_deref(), Some(fastest.protocol.as_str()));
}

/// AWS's tuner plugin comes with p5's EFA NIC model: on 3 hosts and more its region table
/// picks the all-reduce's algorithm and protocol, and nothing else is simulated for the
/// choice; on 2 hosts, for other operations, or with the protocol fixed outside the
/// region's, NCCL's model (meshway's tuner) picks.
#[test]
fn awss_tuner_plugin_picks_on_p5_from_four_hosts() {
    let p5 = |gpus: u32, w: &str| {
        format!(
            "[fabric]\nkind = \"leaf-spine\"\ngpus = {gpus}\ngpus-per-host = 8\nnic = \"400Gbps\"\nplanes = 4\n\
             nic-model = \"aws-efa-p5\"\ngpu = \"h100-sxm\"\n[transport]\nkind = \"efa\"\n\
             [[workload]]\nkind = \"collective\"\n{w}"
        )
    };
    let opts = Options { no_ideal: true, ..Options::default() };
    // 512 MiB on 32 ranks: the ring LL128 region (the third of aws-ofi-p5's).
    let r = run(&p5(32, "op = \"all-reduce\"\nsize = \"512MiB\"\n"), &opts);
    let w = &r.workloads[0];
    assert_eq!((w.algorithm.as_deref(), w.protocol.as_deref()), (Some("ring"), Some("ll128")));
    assert_eq!(w.tuner.len(), 1, "{:?}", w.tuner);
    assert_eq!(w.tuner[0].plugin_region.as_deref(), Some("aws-ofi-p5 region 3"));
    assert!(w.tuner[0].time_ns.is_none() && w.time_ns.is_some());
    // With the protocol fixed to Simple, the LL128 regions are skipped, and 512 MiB on 32
    // ranks is in no other: NCCL's model weighs the algorithms.
    let r = run(&p5(32, "op = \"all-reduce\"\nsize = \"512MiB\"\nprotocol = \"simple\"\n"), &opts);
    let w = &r.workloads[0];
    assert!(w.tuner.len() > 1 && w.tuner.iter().all(|c| c.plugin_region.is_none()), "{:?}", w.tuner);
    // One GPU of each of 4 hosts (a data-parallel group across hosts): the one-rank table.
    let r = run(&p5(32, "op = \"all-reduce\"\nsize = \"4MiB\"\nranks = [0, 8, 16, 24]\n"), &opts);
    let w = &r.workloads[0];
    assert_eq!((w.algorithm.as_deref(), w.protocol.as_deref()), (Some("ring"), Some("ll128")));
    assert_eq!(w.tuner[0].plugin_region.as_deref(), Some("aws-ofi-p5 region 15"));
    // Two hosts are left to NCCL, as is an all-gather on four.
    for (gpus, op) in [(16, "all-reduce"), (32, "all-gather")] {
        let r = run(&p5(gpus, &format!("op = \"{op}\"\nsize = \"512MiB\"\n")), &opts);
        assert!(
            r.workloads[0].tuner.iter().all(|c| c.plugin_region.is_none()),
            "{gpus} {op}: {:?}",
            r.workloads[0].tuner
        );
    }
}

/// A tuner plugin's pick that this fabric cannot build is skipped for the next region that
/// holds the collective, as NCCL skips a cost-table entry it marked unusable (it stopped the
/// run with the build's refusal).
#[test]
fn a_plugin_pick_the_fabric_cannot_run_falls_to_the_next_region() {
    let all = "vertices = [[0, 0], [1e12, 0], [1e12, 1e6], [0, 1e6]]\n";
    let region = |algo: &str, proto: &str| {
        format!(
            "[[tuner-plugin.region]]\nop = \"all-reduce\"\nranks-per-host = 1\nalgorithm = \"{algo}\"\nprotocol = \"{proto}\"\n{all}"
        )
    };
    let mine = Catalog::with_overlay(
        &format!(
            "[[nic]]\nname = \"plugged-400g\"\nports = 1\nrate = \"400Gbps\"\nnccl-tuner-plugin = \"t\"\npower-w = 20\n\
             price-usd = 900\nsource = \"test\"\n[[tuner-plugin]]\nname = \"t\"\nmin-nodes = 2\nassumption = \"test\"\n{}{}",
            region("nvls-tree", "ll128"),
            region("ring", "simple")
        ),
        "mine.toml",
    )
    .unwrap();
    let text = "[fabric]\nkind = \"rail-optimized\"\ngpus = 4\ngpus-per-host = 1\nnic = \"400Gbps\"\n\
                nic-model = \"plugged-400g\"\ngpu = \"h100-sxm\"\n[transport]\nkind = \"infiniband\"\n\
                [[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"64MiB\"\n";
    let s = Scenario::parse(text, "test.toml").unwrap();
    let f = s.build(&mine).unwrap();
    let read = |_: &str| -> Result<String, String> { Err("no files".into()) };
    let setup = Setup { scenario: &s, catalog: &mine, fabric: &f, read_file: &read };
    let r = simulate(&setup, &Options { no_ideal: true, ..Options::default() }, &mut |_, _| {}).unwrap();
    let w = &r.workloads[0];
    assert_eq!((w.algorithm.as_deref(), w.protocol.as_deref()), (Some("ring"), Some("simple")));
    assert_eq!(w.tuner[0].plugin_region.as_deref(), Some("t region 2"));
}

#[test]
fn in_network_reduction_needs_the_hardware() {
    let nvls = "[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nalgorithm = \"nvls\"\nsize = \"1GiB\"\n";
    // A100s have no NVLink SHARP.
    let e = err(&format!("{}gpu = \"a100-sxm\"\n{nvls}", ONE_HOST));
    assert!(e.contains("algorithm nvls cannot run here: GPU model \"a100-sxm\" has no NVLink SHARP"), "{e}");
    // NVLS runs with simple only.
    let e = err(&format!("{ONE_HOST}{nvls}protocol = \"ll\"\n"));
    assert!(e.contains("NCCL runs it with protocol simple only, not ll"), "{e}");
    // CollNet needs SHARP switches; the default switch model is generic Ethernet.
    let two = "[fabric]\nkind = \"rail-optimized\"\ngpus = 16\n";
    let e = err(&format!("{two}[[workload]]\nkind = \"collective\"\nalgorithm = \"collnet\"\nsize = \"1GiB\"\n"));
    assert!(e.contains("algorithm collnet cannot run here: the fabric's switches do not reduce"), "{e}");
    // NVLS across hosts is NVLS with SHARP: refused without it too.
    let e = err(&format!("{two}{nvls}"));
    assert!(e.contains("NVLS reduces in the network switches too") && e.contains("sharp = true"), "{e}");
    // An unknown GPU model is named with the catalog's.
    let e = err(&format!("{ONE_HOST}gpu = \"h100\"\n"));
    assert!(
        e.contains("`fabric.gpu`: unknown GPU model \"h100\", expected one of") && e.contains("did you mean"),
        "{e}"
    );
}

#[test]
fn sharp_switches_offer_collnet_and_nvls_across_hosts() {
    // 4 hosts of 8 H100s on Quantum-2 switches: the tuner weighs NVLS (with SHARP),
    // NVLS-tree and CollNet, and picks the fastest it evaluated.
    let text = "[fabric]\nkind = \"rail-optimized\"\ngpus = 32\nnic = \"400Gbps\"\nnvlink = \"3.6Tbps\"\nleaf-model = \"quantum2-qm9700\"\nspine-model = \"quantum2-qm9700\"\n[transport]\nkind = \"infiniband\"\n[[workload]]\nkind = \"collective\"\nsize = \"1GiB\"\n";
    let r = run(text, &Options { no_ideal: true, ..Options::default() });
    let w = &r.workloads[0];
    for a in ["nvls", "nvls-tree", "collnet"] {
        assert!(w.tuner.iter().any(|c| c.algorithm == a && c.protocol == "simple"), "{a}: {:?}", w.tuner);
    }
    let best = w.tuner.iter().filter(|c| c.time_ns.is_some()).min_by_key(|c| c.time_ns).unwrap();
    assert_eq!(w.algorithm.as_deref(), Some(best.algorithm.as_str()));
    // CollNet sends each GPU's shard (S/8) up its NIC once and gets the result back: it
    // beats the ring, whose NICs carry 2(n-1)/n of the buffer over 8 channels' rails.
    // Times on the fabric, or the ideal-fabric bound of a candidate the tuner did not need
    // to simulate there (a lower bound: enough for the comparisons below).
    let t =
        |a: &str| w.tuner.iter().filter(|c| c.algorithm == a).filter_map(|c| c.time_ns.or(c.ideal_ns)).min().unwrap();
    assert!(t("collnet") < t("ring"), "{:?}", w.tuner);
    // Its busbw stays under the NICs' bound: S/8 per NIC at 48 GB/s x 0.85 each way.
    let algbw_bound = 8.0 * 48e9 * 0.85;
    let collnet_algbw = (1u64 << 30) as f64 / (t("collnet") as f64 / 1e9);
    assert!(collnet_algbw <= algbw_bound, "{collnet_algbw} above {algbw_bound}");
}

#[test]
fn channels_spread_over_the_planes_of_a_multi_plane_nic() {
    // 800G NICs as 2 x 400G ports into two planes: a ring all-reduce runs a channel per port,
    // so every port carries the same bytes and the ring runs as on the ideal fabric.
    let text = "[fabric]\nkind = \"rail-optimized\"\ngpus = 32\ngpus-per-host = 8\nnic = \"800Gbps\"\nplanes = 2\n[[workload]]\nkind = \"collective\"\nalgorithm = \"ring\"\nprotocol = \"simple\"\nsize = \"1GiB\"\n";
    let r = run(text, &Options::default());
    let ports: Vec<u64> = r
        .links
        .iter()
        .filter(|l| l.link.starts_with("gpu-") && l.link.contains("leaf"))
        .map(|l| l.carried_bytes)
        .collect();
    assert_eq!(ports.len(), 2 * 32, "every GPU uses both of its ports");
    assert!(ports.iter().all(|&b| b == ports[0]), "{ports:?}");
    let w = &r.workloads[0];
    let (t, ideal) = (w.time_ns.unwrap(), w.ideal_time_ns.unwrap());
    assert!(t * 100 <= ideal * 101, "{t} ns vs ideal {ideal} ns");
}

/// Writers without a channel per port (all-to-all, send-recv, halving-doubling, and
/// NVLS-tree's trees over one GPU per host) sent everything by plane 0: on 2 planes the
/// all-to-all took twice as long and NVLS-tree 1.98x, and the tuner then passed NVLS-tree
/// over. Splitting a NIC's ports into planes must not change the time.
#[test]
fn every_algorithm_spreads_over_the_planes_of_a_multi_plane_nic() {
    let time = |planes: u32, op: &str, algo: &str| {
        let text = format!(
            "[fabric]\nkind = \"rail-optimized\"\ngpus = 32\ngpus-per-host = 8\nnic = \"400Gbps\"\nplanes = {planes}\n\
             [[workload]]\nkind = \"collective\"\nop = \"{op}\"\nalgorithm = \"{algo}\"\nsize = \"256MiB\"\n"
        );
        run(&text, &Options { no_ideal: true, ..Options::default() }).workloads[0].time_ns.unwrap()
    };
    for (op, algo) in [
        ("all-to-all", "direct"),
        ("send-recv", "direct"),
        ("all-reduce", "halving-doubling"),
        ("all-reduce", "nvls-tree"),
        ("all-reduce", "ring"),
    ] {
        let one = time(1, op, algo);
        for planes in [2, 4] {
            let t = time(planes, op, algo);
            assert!(t * 100 <= one * 102, "{op} {algo}: {t} ns on {planes} planes against {one} ns on one");
        }
    }
}

/// Two GPUs of a custom fabric share a `host` but no NVLink: their messages cross the NIC
/// links, so they run at the NIC's share as if they were on two hosts (they took NVLink's
/// share and ran at 392 of 400 Gb/s, above the 384 a 400G NIC achieves).
#[test]
fn a_shared_host_without_nvlink_runs_at_the_nics_share() {
    let fabric = |host: &str| {
        format!(
            "[fabric]\nkind = \"custom\"\n\
             [[fabric.node]]\nname = \"g0\"\nkind = \"gpu\"\n{host}\n\
             [[fabric.node]]\nname = \"g1\"\nkind = \"gpu\"\n{host}\n\
             [[fabric.node]]\nname = \"sw\"\nkind = \"switch\"\ntier = \"leaf\"\nlevel = 1\n\
             [[fabric.link]]\na = \"g0\"\nb = \"sw\"\nrate = \"400Gbps\"\nlength = \"3m\"\n\
             [[fabric.link]]\na = \"g1\"\nb = \"sw\"\nrate = \"400Gbps\"\nlength = \"3m\"\n\
             [[workload]]\nkind = \"collective\"\nop = \"send-recv\"\nsize = \"1GiB\"\n"
        )
    };
    let t = |host: &str| {
        run(&fabric(host), &Options { no_ideal: true, ..Options::default() }).workloads[0].time_ns.unwrap()
    };
    let (shared, apart) = (t("host = 0"), t(""));
    assert_eq!(shared, apart);
    // At most 384 Gb/s of payload.
    assert!((1u64 << 30) as f64 * 8.0 / (shared as f64 * 1e-9) <= 384e9, "{shared} ns");
}

/// `algorithm = "direct"` is all-to-all's and send-recv's: the other operations ran a ring
/// under the name "direct" (the same time to the nanosecond). They refuse it, naming what
/// they take.
#[test]
fn direct_is_refused_where_it_would_run_as_a_ring() {
    let scenario = |op: &str| {
        format!("{ONE_LEAF}\n[[workload]]\nkind = \"collective\"\nop = \"{op}\"\nalgorithm = \"direct\"\nsize = \"64MiB\"\n")
    };
    for (op, takes) in [
        ("all-reduce", "ring, tree, halving-doubling, hierarchical, site-hierarchical, nvls, nvls-tree or collnet"),
        ("all-gather", "ring or nvls"),
        ("reduce-scatter", "ring or nvls"),
        ("broadcast", "ring"),
    ] {
        let e = err(&scenario(op));
        assert!(
            e.ends_with(&format!(
                "algorithm direct sends every message straight to its receiver, which only all-to-all and send-recv do; \
                 {op} is not modeled that way (leave `algorithm` out, or name {takes})"
            )),
            "{e}"
        );
        assert!(e.starts_with("test.toml: workload[1] ("), "{e}");
    }
    for op in ["all-to-all", "send-recv"] {
        let r = run(&scenario(op), &Options { no_ideal: true, ..Options::default() });
        assert_eq!(r.workloads[0].algorithm.as_deref(), Some("direct"), "{op}");
    }
}

/// A collective that cannot complete (its GPU's only NIC link fails for good): no candidate
/// of the tuner has a time, and none reads u64::MAX (18446744073709551615 ns in the JSON);
/// the first one runs so that the report says why. A refusal names the algorithm's own
/// reason, not the last protocol's.
#[test]
fn the_tuner_gives_no_time_to_what_never_completes_and_the_first_refusal() {
    let text = "[fabric]\nkind = \"rail-optimized\"\ngpus = 16\ngpus-per-host = 8\nnic = \"400Gbps\"\n\
                [[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"64MiB\"\n\
                [[failure]]\nlink = \"gpu-0:leaf-g0-r0\"\nat = \"10us\"\n";
    let r = run(text, &Options { no_ideal: true, ..Options::default() });
    let w = &r.workloads[0];
    assert!(w.time_ns.is_none());
    assert!(!w.tuner.is_empty() && w.tuner.iter().all(|c| c.time_ns.is_none()), "{:?}", w.tuner);
    assert_eq!(w.algorithm.as_deref(), Some(w.tuner[0].algorithm.as_str()));
    let e = err("[fabric]\nkind = \"rail-optimized\"\ngpus = 8\ngpus-per-host = 8\nnic = \"400Gbps\"\n\
                 [[workload]]\nkind = \"collective\"\nalgorithm = \"nvls-tree\"\nsize = \"1GiB\"\n");
    assert!(e.contains("needs at least 2 hosts") && !e.contains("protocol simple only"), "{e}");
}

#[test]
fn all_to_all_relays_through_the_rail_local_nic() {
    // 8 hosts of 8 GPUs in one rail group: with PXN a message to another host leaves by the
    // NIC on the receiver's rail, so no byte crosses a spine, and every NIC carries the
    // same: its GPU's share for the 56 GPUs on other hosts, at 48 of 50 GB/s, with headers.
    let text = "[fabric]\nkind = \"rail-optimized\"\ngpus = 64\ngpus-per-host = 8\nnic = \"400Gbps\"\n[[workload]]\nkind = \"collective\"\nop = \"all-to-all\"\nsize = \"64MiB\"\n";
    let r = run(text, &Options::default());
    assert!(r.links.iter().all(|l| !l.link.contains("spine")), "no spine carries a byte");
    let nic: Vec<u64> = r
        .links
        .iter()
        .filter(|l| l.link.starts_with("gpu-") && l.link.contains("leaf"))
        .map(|l| l.carried_bytes)
        .collect();
    assert_eq!(nic.len(), 64);
    let cat = Catalog::builtin();
    let roce = cat.transport_profile("roce").unwrap();
    // 56 messages of 1 MiB each leave every NIC (8 per rail-mate host x 7 hosts).
    let msg = ((1u64 << 20) as f64 / 0.96).ceil() as u64;
    let wire = msg + msg.div_ceil(4096) * u64::from(roce.header_bytes);
    assert!(nic.iter().all(|&b| b == 56 * wire), "{} vs {}", nic[0], 56 * wire);
}

#[test]
fn hierarchical_all_reduce_matches_the_closed_form() {
    // 2 hosts of 2 H100s, 2 MiB, one channel, simple, step by step: one pipeline chunk
    // (1 MiB per rank). Reduce-scatter inside each host (1 step of the 1 MiB shard over
    // NVLink), a ring all-reduce of the shard across the 2 hosts on each rail (2 steps of
    // 512 KiB over the NIC), all-gather inside each host (1 step); each step pays the
    // protocol's NVLink or network step latency and its path; the collective ends the base
    // latency later. NVLink runs at 370.8 of 450 GB/s, the NIC at 48 of 50 GB/s.
    let text = "[fabric]\nkind = \"leaf-spine\"\ngpus = 4\ngpus-per-host = 2\nnic = \"400Gbps\"\nnvlink = \"3.6Tbps\"\n[[workload]]\nkind = \"collective\"\nalgorithm = \"hierarchical\"\nprotocol = \"simple\"\nsize = \"2MiB\"\nchannels = 1\nmodel = \"steps\"\n";
    let r = run(text, &Options { no_ideal: true, ..Options::default() });
    let cat = Catalog::builtin();
    let roce = cat.transport_profile("roce").unwrap();
    let p = cat.protocol("simple").unwrap();
    let s = Scenario::parse(text, "t").unwrap();
    let f = s.build(&cat).unwrap();
    let mut topo = FabricTopo::new(&f, &cat, 1);
    let packet = 4096 + u64::from(roce.header_bytes);
    let wire = |b: f64| b + (b / 4096.0).ceil() * f64::from(roce.header_bytes);
    let step = |bytes: f64, share: f64, rate: f64, alpha: u64, lat: meshway_units::Nanos| {
        alpha as f64 + lat.0 as f64 + wire((bytes / share).ceil()) * 8.0 / rate * 1e9
    };
    let nv =
        step((1u64 << 20) as f64, 370.8 / 450.0, 3.6e12, p.ring_nvlink_step.0, topo.edge_latency(0, 1, None, packet));
    let net = step(
        (512u64 << 10) as f64,
        0.96,
        400e9,
        p.ring_network_step.0.max(roce.alpha.0),
        topo.edge_latency(0, 2, None, packet),
    );
    let closed = 2.0 * nv + 2.0 * net + p.ring_base_latency.0 as f64;
    let got = r.workloads[0].time_ns.unwrap() as f64;
    assert_eq!(r.workloads[0].model.as_deref(), Some("steps"));
    assert!((got - closed).abs() / closed < 0.001, "simulated {got} ns vs closed form {closed} ns");
}

#[test]
fn nvls_tree_all_reduce_matches_the_closed_form() {
    // 2 hosts of 2 H100s, 2 MiB, in NCCL's steady state: every GPU moves the NVLS
    // reduce-scatter and all-gather through its NVSwitch at once (2 MiB + 1 MiB each way),
    // while a double binary tree reduces each 1 MiB shard between the hosts (on 2 ranks each
    // rank sends two 512 KiB halves over its NIC at once, one per tree, then the tree's one
    // network step); the slower of the two, then the NVLS latency and the pipeline's fill.
    // NVLink at 370.8/450 x 0.85 (NVLS efficiency), the NIC at 48 of 50 GB/s.
    use meshway_sim::program::Leg;
    let text = "[fabric]\nkind = \"leaf-spine\"\ngpus = 4\ngpus-per-host = 2\nnic = \"400Gbps\"\nnvlink = \"3.6Tbps\"\n[[workload]]\nkind = \"collective\"\nalgorithm = \"nvls-tree\"\nsize = \"2MiB\"\n";
    let r = run(text, &Options { no_ideal: true, ..Options::default() });
    assert_eq!(r.workloads[0].protocol.as_deref(), Some("simple"), "NVLS-tree runs simple only");
    let cat = Catalog::builtin();
    let roce = cat.transport_profile("roce").unwrap();
    let p = cat.protocol("simple").unwrap();
    let s = Scenario::parse(text, "t").unwrap();
    let f = s.build(&cat).unwrap();
    let mut topo = FabricTopo::new(&f, &cat, 1);
    let packet = 4096 + u64::from(roce.header_bytes);
    let wire = |b: f64| b + (b / 4096.0).ceil() * f64::from(roce.header_bytes);
    let tail = |leg| {
        let (rate, lat) = topo.arc_spec(topo.attach(0, leg, 0).unwrap());
        lat.0 as f64 + packet as f64 * 8.0 / rate.0 as f64 * 1e9
    };
    let nv = |bytes: u64| wire((bytes as f64 / (370.8 / 450.0 * 0.85)).ceil()) * 8.0 / 3.6e12 * 1e9;
    let legs = (nv(3 << 20) + tail(Leg::NvlinkUp)).max(nv(3 << 20) + tail(Leg::NvlinkDown));
    let step = p.nvls_tree_network_step.unwrap().0.max(roce.alpha.0) as f64;
    let edge = topo.edge_latency(0, 2, None, packet).0 as f64;
    let half = ((512u64 << 10) as f64 / 0.96).ceil();
    let b = step + 2.0 * wire(half) * 8.0 / 400e9 * 1e9 + edge + (step + edge);
    // Fill: 4 stages (NVLS in, up, down, NVLS out); 16 NVLS channels x 2 heads, NCCL's chunk
    // 64 KiB (2 MiB is below 4 x 32 x 128 KiB), so each channel's 128 KiB is one loop; the
    // busiest port is a NIC (two halves each way, headers aside), and a stage is half a loop.
    let nic = 2.0 * half * 8.0 / 400e9 * 1e9;
    let fill = 3.0 * nic / 2.0;
    // NCCL's NVLS-tree ceiling across 2 hosts: 57.7 GB/s of bus bandwidth per head (2 here),
    // bus bytes 2 MiB x 2 x 3/4; it does not bind at this size.
    let ceiling = (2u64 << 20) as f64 * 1.5 / (2.0 * 57.7e9) * 1e9;
    assert!(ceiling < b);
    let closed = legs.max(b).max(ceiling) + p.nvls_latency.unwrap().0 as f64 + fill;
    let got = r.workloads[0].time_ns.unwrap() as f64;
    assert!((got - closed).abs() / closed < 0.001, "simulated {got} ns vs closed form {closed} ns");
}

/// A NIC whose net plugin sets NCCL's NVLS chunks (aws-ofi-nccl's 512 KiB on p5) changes
/// NVLS-tree's chunk and so only its pipeline fill: 2 hosts of 2 H100s, 1 GiB, 16 NVLS
/// channels x 2 heads. NCCL's default chunk stays 128 KiB (1 GiB is not below 4 x 32 x 128
/// KiB); from 512 KiB it stays 512 KiB (not below 32 x 32 x 512 KiB = 512 MiB), so a channel's
/// 64 MiB takes 64 loops instead of 256. The busiest port is a NIC (each 512 MiB shard in two
/// halves each way at 48 of 50 GB/s), 4 stages, a stage half a loop.
#[test]
fn a_plugins_nvls_chunk_sets_nvls_trees_fill() {
    let text = |nic: &str| {
        format!(
            "[fabric]\nkind = \"leaf-spine\"\ngpus = 4\ngpus-per-host = 2\nnic = \"400Gbps\"\nnic-model = \"{nic}\"\n\
             nvlink = \"3.6Tbps\"\n[[workload]]\nkind = \"collective\"\nalgorithm = \"nvls-tree\"\nsize = \"1GiB\"\n"
        )
    };
    let overlay = "[[nic]]\nname = \"plugin-400g\"\nports = 1\nrate = \"400Gbps\"\nachievable = \"384Gbps\"\n\
                   nccl-nvls-chunk = \"512KiB\"\nnccl-nvls-tree-max-chunk = \"512KiB\"\npower-w = 25.0\nprice-usd = 2000\n\
                   assumption = \"a test NIC\"\n";
    let with = Catalog::with_overlay(overlay, "mine.toml").unwrap();
    let plain = first_time_with(&text("connectx7-400g"), &Catalog::builtin());
    let plugin = first_time_with(&text("plugin-400g"), &with);
    let half = ((256u64 << 20) as f64 / 0.96).ceil();
    let nic = 2.0 * half * 8.0 / 400e9 * 1e9;
    let fill = |loops: f64| 3.0 * nic / (2.0 * loops);
    let want = fill(64.0) - fill(256.0);
    assert!(((plugin - plain) - want).abs() < 2.0, "plugin {plugin} ns - plain {plain} ns vs {want} ns");
    // On 4 hosts NCCL's NVLS-tree chunk is at most 64 KiB by default, so a plugin's NVLS
    // chunk alone changes nothing; its tree maximum lifts that cap. At 1 GiB a channel's
    // 64 MiB takes 512 loops of 64 KiB, 256 of 128 KiB (a 128 KiB maximum) or 64 of 512 KiB
    // (both keys): the fill is the same number of stage gaps at 1/512, 1/256 and 1/64 of the
    // busiest port's time, so the 512 KiB run adds 7 times what the 128 KiB one adds.
    let four = |nic: &str| text(nic).replace("gpus = 4\n", "gpus = 8\n");
    let nic = |keys: &str| {
        format!(
            "[[nic]]\nname = \"plugin-400g\"\nports = 1\nrate = \"400Gbps\"\nachievable = \"384Gbps\"\n{keys}\
             power-w = 25.0\nprice-usd = 2000\nassumption = \"a test NIC\"\n"
        )
    };
    let time =
        |keys: &str| first_time_with(&four("plugin-400g"), &Catalog::with_overlay(&nic(keys), "mine.toml").unwrap());
    let plain = first_time_with(&four("connectx7-400g"), &Catalog::builtin());
    assert_eq!(time("nccl-nvls-chunk = \"512KiB\"\n"), plain);
    let d128 = time("nccl-nvls-tree-max-chunk = \"128KiB\"\n") - plain;
    let d512 = time("nccl-nvls-chunk = \"512KiB\"\nnccl-nvls-tree-max-chunk = \"512KiB\"\n") - plain;
    assert!(d128 > 1000.0, "a 128 KiB maximum adds {d128} ns");
    assert!((d512 - 7.0 * d128).abs() < 8.0, "512 KiB adds {d512} ns, 128 KiB {d128} ns");
}

#[test]
fn collnet_all_reduce_matches_the_closed_form() {
    // 2 hosts of 2 H100s on SHARP switches, 2 MiB, one channel, one pipeline chunk: ring
    // reduce-scatter inside each host (1 step of the 1 MiB shard over NVLink), each GPU's
    // shard up its NIC into the switch and the result back at once (48 of 50 GB/s x NCCL's
    // CollNet factor 0.85), ring all-gather inside each host, then the CollNet latency.
    use meshway_sim::program::Leg;
    let text = "[fabric]\nkind = \"leaf-spine\"\ngpus = 4\ngpus-per-host = 2\nnic = \"400Gbps\"\nnvlink = \"3.6Tbps\"\nleaf-model = \"quantum2-qm9700\"\nspine-model = \"quantum2-qm9700\"\n[[workload]]\nkind = \"collective\"\nalgorithm = \"collnet\"\nprotocol = \"simple\"\nsize = \"2MiB\"\nchannels = 1\nmodel = \"steps\"\n";
    let r = run(text, &Options { no_ideal: true, ..Options::default() });
    let cat = Catalog::builtin();
    let roce = cat.transport_profile("roce").unwrap();
    let p = cat.protocol("simple").unwrap();
    let s = Scenario::parse(text, "t").unwrap();
    let f = s.build(&cat).unwrap();
    let mut topo = FabricTopo::new(&f, &cat, 1);
    let packet = 4096 + u64::from(roce.header_bytes);
    let wire = |b: f64| b + (b / 4096.0).ceil() * f64::from(roce.header_bytes);
    let mib = (1u64 << 20) as f64;
    let nv = p.ring_nvlink_step.0 as f64
        + topo.edge_latency(0, 1, None, packet).0 as f64
        + wire((mib / (370.8 / 450.0)).ceil()) * 8.0 / 3.6e12 * 1e9;
    let (rate, lat) = topo.arc_spec(topo.attach(0, Leg::NicUp, 0).unwrap());
    assert_eq!(rate.0, 400_000_000_000);
    let up = lat.0 as f64 + packet as f64 * 8.0 / 400e9 * 1e9 + wire((mib / (0.96 * 0.85)).ceil()) * 8.0 / 400e9 * 1e9;
    let (_, lat_down) = topo.arc_spec(topo.attach(0, Leg::NicDown, 0).unwrap());
    let down = up - lat.0 as f64 + lat_down.0 as f64;
    let closed = 2.0 * nv + up.max(down) + p.collnet_latency.unwrap().0 as f64;
    let got = r.workloads[0].time_ns.unwrap() as f64;
    assert!((got - closed).abs() / closed < 0.001, "simulated {got} ns vs closed form {closed} ns");
}

#[test]
fn tree_all_reduce_matches_the_closed_form() {
    // 8 single-GPU hosts on one leaf, 8 MiB, each protocol: two heap trees (the second over
    // the reversed order) each carry half the buffer up and down at once. The busiest NICs
    // (interior with two children in one tree, a leaf in the other) send 4 halves, so the
    // data takes 4 x half / (48 of 50 GB/s x the protocol's efficiency); then 2 x depth - 1
    // = 5 more network steps of the tree table (the first is paid by the messages), and the
    // protocol's base latency. Then the pipeline's fill: 6 stages (2 x depth 3), so 5 chunk
    // times, a chunk time being the busiest port's time over the chunks per channel (the two
    // trees are NCCL's two channels here, 4 MiB each): Simple 512 KiB chunks (8 per
    // channel), LL 32 KiB (128), LL128 576,000 B halved to 36,000 B for 8 one-GPU nodes on 2
    // channels at this size (117).
    let cat = Catalog::builtin();
    let roce = cat.transport_profile("roce").unwrap();
    for (proto, chunks) in [("simple", 8.0), ("ll128", 117.0), ("ll", 128.0)] {
        let text = format!(
            "{ONE_LEAF}\n[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nalgorithm = \"tree\"\nprotocol = \"{proto}\"\nsize = \"8MiB\"\n"
        );
        let r = run(&text, &Options { no_ideal: true, ..Options::default() });
        let p = cat.protocol(proto).unwrap();
        let s = Scenario::parse(&text, "t").unwrap();
        let f = s.build(&cat).unwrap();
        let mut topo = FabricTopo::new(&f, &cat, 1);
        let lat = topo.edge_latency(0, 1, None, 4096 + u64::from(roce.header_bytes)).0 as f64;
        let on_wire = ((4u64 << 20) as f64 / 0.96).ceil();
        let on_wire = if p.efficiency < 1.0 { (on_wire / p.efficiency).ceil() } else { on_wire };
        let wire = on_wire + (on_wire / 4096.0).ceil() * f64::from(roce.header_bytes);
        let net = p.tree_network_step.0.max(roce.alpha.0) as f64 + lat;
        let fill = 5.0 / (2.0 * chunks) * 4.0 * on_wire * 8.0 / 400e9 * 1e9;
        let mut closed = net + 4.0 * wire * 8.0 / 400e9 * 1e9 + 5.0 * net + p.tree_base_latency.0 as f64 + fill;
        if proto == "ll" {
            // NCCL's LL ceiling across 3 or more hosts (catalog ll-max) binds: a tree's bus
            // bytes are twice its size, 16 MiB over 20.4 GB/s, 822 us against 769; the
            // latency and the pipeline's fill come after it.
            let ceiling = cat.simulation.ll_max[1].0 as f64 / 8.0;
            let bound = 2.0 * (8u64 << 20) as f64 / ceiling * 1e9 + p.tree_base_latency.0 as f64 + fill;
            assert!(bound > closed, "{bound} against {closed}");
            closed = bound;
        }
        let got = r.workloads[0].time_ns.unwrap() as f64;
        assert!((got - closed).abs() / closed < 0.001, "{proto}: simulated {got} ns vs closed form {closed} ns");
    }
}

#[test]
fn completion_and_forwarding_are_chosen_and_stated() {
    // One 1 MiB flow across one leaf (2 links of 400 Gbps): the acknowledgement adds the
    // path's latency again and its header-only packet; store-and-forward adds the last
    // packet once more at the second link.
    let flow = |transport: &str| {
        let text = format!(
            "[fabric]\nkind = \"leaf-spine\"\ngpus = 8\ngpus-per-host = 1\n[transport]\nkind = \"roce\"\n{transport}[[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n"
        );
        let csv = "src,dst,bytes\ngpu-0,gpu-1,1MiB\n".to_string();
        run_with(&text, &Options { no_ideal: true, ..Options::default() }, &[("f.csv", csv)]).unwrap()
    };
    let base = flow("");
    assert_eq!((base.transport.completion.as_str(), base.transport.forwarding.as_str()), ("data", "cut-through"));
    let ack = flow("completion = \"ack\"\n");
    assert_eq!(ack.transport.completion, "ack");
    let sf = flow("forwarding = \"store-and-forward\"\n");
    assert_eq!(sf.transport.forwarding, "store-and-forward");
    let cat = Catalog::builtin();
    let roce = cat.transport_profile("roce").unwrap();
    let sw = &cat.switch[cat.switch_index("generic-64x400g").unwrap() as usize];
    let prop = cat.cable_lengths.host_leaf.propagation(cat.constants.fiber_delay_per_km);
    let latency = 2 * prop.0 + sw.latency.0;
    let ns = |bytes: u64| (bytes * 8 * 1_000_000_000).div_ceil(400_000_000_000);
    let t = |r: &SimReport| r.workloads[0].time_ns.unwrap();
    assert_eq!(t(&ack) - t(&base), latency + ns(u64::from(roce.header_bytes)));
    // Equal rates: the bottleneck is the first link, so store-and-forward pays the second.
    assert_eq!(t(&sf), t(&base));
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = 8\n[transport]\nforwarding = \"wormhole\"\n");
    assert!(
        e.contains("`transport.forwarding`") && e.contains("cut-through") && e.contains("store-and-forward"),
        "{e}"
    );
}

#[test]
fn parallel_links_get_distinct_names() {
    // Four leaves of 32 GPUs and two spines at 1:1: 16 uplinks from each leaf to each spine.
    let text = "[fabric]\nkind = \"leaf-spine\"\ngpus = 128\ngpus-per-host = 8\nspines = 2\n\
                [[workload]]\nkind = \"permutation\"\nsize = \"4MiB\"\n";
    let cat = meshway_fabric::Catalog::builtin();
    let s = meshway_fabric::Scenario::parse(text, "t.toml").unwrap();
    let f = s.build(&cat).unwrap();
    let read = |_: &str| -> Result<String, String> { Err("no files".into()) };
    let setup = meshway_sim::simulate::Setup { scenario: &s, catalog: &cat, fabric: &f, read_file: &read };
    let opts = meshway_sim::simulate::Options { no_ideal: true, ..Default::default() };
    let r = meshway_sim::simulate::simulate(&setup, &opts, &mut |_, _| {}).unwrap();
    let mut names: Vec<&str> = r.links.iter().map(|l| l.link.as_str()).collect();
    let n = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), n, "every directed link has its own name");
    assert!(names.iter().any(|x| x.ends_with(" #16")) && !names.iter().any(|x| x.ends_with(" #17")), "{names:?}");
}

#[test]
fn traffic_inside_an_nvlink_domain_stays_on_nvlink() {
    // Two NVL72 racks: GPUs 0 and 71 sit on different compute trays of one domain, GPU 72
    // in the other rack.
    let text = "[fabric]\nkind = \"rail-optimized\"\ngpus = 144\ngpus-per-host = 4\nnvlink-domain = 72\n\
        nvlink = \"7.2Tbps\"\nnic = \"400Gbps\"\n[transport]\nkind = \"roce\"\n\
        [[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n";
    let time = |dst: &str| {
        let csv = format!("src,dst,bytes\ngpu-0,{dst},1GiB\n");
        run_with(text, &Options::default(), &[("f.csv", csv)]).unwrap().workloads[0].time_ns.unwrap()
    };
    let (inside, across) = (time("gpu-71"), time("gpu-72"));
    // 1 GiB at 7.2 Tbps is 1.19 ms; at 400 Gb/s, 21.5 ms.
    assert!((1_190_000..1_400_000).contains(&inside), "inside the domain: {inside} ns");
    assert!((21_400_000..23_500_000).contains(&across), "across domains: {across} ns");
}

#[test]
fn nvls_tree_never_beats_nccls_ceiling() {
    // 4 and 2 hosts of 8 H100 on InfiniBand, 8 GiB NVLS-tree: from 3 hosts up NCCL caps its
    // bus bandwidth at 8 heads x 45.5 GB/s = 364 GB/s, below the NICs' 8 x 48 GB/s; across 2
    // hosts at 8 x 57.7 = 461.6 GB/s, below NVLink's bound (S + S/8 each way at 370.8 x 0.85
    // GB/s gives 525). The fill and latencies are under 0.5% at this size.
    for (gpus, ceiling) in [(32, 364.0), (16, 461.6)] {
        let text = format!(
            "[fabric]\nkind = \"rail-optimized\"\ngpus = {gpus}\nnic = \"400Gbps\"\nnvlink = \"3.6Tbps\"\n[transport]\nkind = \"infiniband\"\n[[workload]]\nkind = \"collective\"\nalgorithm = \"nvls-tree\"\nsize = \"8GiB\"\n"
        );
        let r = run(&text, &Options { no_ideal: true, ..Options::default() });
        let busbw = r.workloads[0].busbw_gbps.unwrap() / 8.0;
        assert!(busbw <= ceiling && busbw > 0.99 * ceiling, "{gpus} GPUs: {busbw} GB/s against {ceiling}");
    }
}

/// A ring across hosts pays NCCL's network post overhead on its NVLink steps (tuning.cc:
/// "inter-node rings still have to launch nsteps * net overhead"): each NVLink step costs at
/// least `[simulation] net-overhead`, three times it with Simple. Two hosts of 8 GPUs, one
/// ring, steady state: the chain crosses 15 of the lap's 16 edges (2 network, 13 NVLink), less
/// the cheapest one the message pays itself, so 12 NVLink steps carry the difference.
#[test]
fn rings_across_hosts_pay_the_network_post_overhead() {
    let text = |proto: &str| {
        format!(
            "[fabric]\nkind = \"rail-optimized\"\ngpus = 16\ngpus-per-host = 8\nnic = \"400Gbps\"\nnvlink = \"3.6Tbps\"\n\
             [transport]\nkind = \"infiniband\"\n[[workload]]\nkind = \"collective\"\nop = \"all-gather\"\n\
             algorithm = \"ring\"\nprotocol = \"{proto}\"\nsize = \"16KiB\"\nchannels = 1\nmodel = \"steady\"\n"
        )
    };
    let time = |proto: &str, overhead: Option<u64>| {
        let mut cat = Catalog::builtin();
        cat.simulation.net_overhead = overhead.map(meshway_units::Nanos);
        // Enough steps in flight that no rank paces the ring: the chain of steps is what
        // is measured here (`the_steady_ring_is_paced_as_the_step_by_step_one` tests the rest).
        for p in &mut cat.protocol {
            p.ring_in_flight = Some(64);
        }
        let s = Scenario::parse(&text(proto), "t.toml").unwrap();
        let f = s.build(&cat).unwrap();
        let read = |_: &str| -> Result<String, String> { Err("no files".into()) };
        let setup = Setup { scenario: &s, catalog: &cat, fabric: &f, read_file: &read };
        simulate(&setup, &Options::default(), &mut |_, _| {}).unwrap().workloads[0].time_ns.unwrap()
    };
    let cat = Catalog::builtin();
    assert_eq!(cat.simulation.net_overhead, Some(meshway_units::Nanos(1_000)), "NCCL's figure for Intel x86 hosts");
    // LL's NVLink step is 0.6 us: 1 us of overhead adds 0.4 us to each of the 12 (12, not
    // NCCL's 14: the steady-state chain counts 3 network steps where NCCL counts 1).
    assert_eq!(time("ll", Some(1_000)) - time("ll", None), 12 * 400);
    // Simple's is 3.4 us, above 3 x 1 us: no change; at 2 us (AMD hosts) 6 us, 2.6 us more.
    assert_eq!(time("simple", Some(1_000)), time("simple", None));
    assert_eq!(time("simple", Some(2_000)) - time("simple", None), 12 * 2_600);
    // LL128's is 1.9 us: the overhead counts once (not x 3), 2 us adds 0.1 us each.
    assert_eq!(time("ll128", Some(2_000)) - time("ll128", None), 12 * 100);
}

/// On a custom fabric a GPU's links to its switch are its NICs, as the ideal fabric counts
/// them: a tree all-reduce pays its pipeline fill on both, and never beats the ideal (it came
/// out at 0.74x to 0.99x, from 1 MiB to 256 MiB).
#[test]
fn a_custom_fabric_tree_is_no_faster_than_the_ideal() {
    let mut t = String::from("[fabric]\nkind = \"custom\"\n");
    for g in 0..4 {
        t += &format!("[[fabric.node]]\nname = \"g{g}\"\nkind = \"gpu\"\nhost = {}\n", g / 2);
    }
    t += "[[fabric.node]]\nname = \"sa\"\nkind = \"switch\"\ntier = \"leaf\"\nlevel = 1\n";
    for g in 0..4 {
        t += &format!("[[fabric.link]]\na = \"g{g}\"\nb = \"sa\"\nrate = \"400Gbps\"\n");
    }
    for size in ["1MiB", "16MiB", "256MiB"] {
        let text = format!(
            "{t}[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nalgorithm = \"tree\"\nprotocol = \"simple\"\nsize = \"{size}\"\n"
        );
        let r = run(&text, &Options::default());
        let s = r.workloads[0].slowdown.unwrap();
        assert!(s >= 1.0, "{size}: slowdown {s}");
    }
}

/// A training step cut by a failed leaf names the messages that had no path first, before
/// the many that only waited on them.
#[test]
fn failures_name_their_cause_before_their_consequences() {
    let text =
        "[fabric]\nkind = \"fat-tree\"\nk = 4\ngpus-per-host = 2\nnic = \"400Gbps\"\n[transport]\nkind = \"roce\"\n\
                [[workload]]\nkind = \"training\"\nparameters = 1e9\nlayers = 16\nhidden = 2048\nsequence = 2048\n\
                micro-batch = 1\nglobal-batch = 32\ntp = 2\npp = 2\n[[failure]]\nat = \"20ms\"\nswitch = \"leaf-3\"\n";
    let r = run(text, &Options::default());
    let w = &r.workloads[0];
    assert!(w.failed_messages > 100, "{}", w.failed_messages);
    assert!(w.failures[0].starts_with("no path from"), "{:?}", w.failures);
    // The failed step still says which collectives it ran (TP 2 inside a host, DP 4).
    assert!(w.training.is_none());
    let whats: Vec<(&str, u32)> = w.step_collectives.iter().map(|c| (c.what, c.ranks)).collect();
    assert_eq!(whats, vec![("tensor-parallel all-reduce", 2), ("data-parallel all-reduce", 4)]);
    assert!(w.step_collectives.iter().all(|c| !c.algorithm.is_empty()), "{:?}", w.step_collectives);
    let json = serde_json::to_value(w).unwrap();
    assert_eq!(json["step_collectives"].as_array().map(Vec::len), Some(2));
    // A step that completes lists them under `training`, not here.
    let ok = run(&text.replace("at = \"20ms\"", "at = \"100s\""), &Options::default());
    assert!(ok.workloads[0].step_collectives.is_empty() && ok.workloads[0].training.is_some());
    // A step that did not run (it waited on a workload that failed) ran no collective.
    let after = text.replace(
        "[[workload]]\nkind = \"training\"",
        "[[workload]]\nname = \"ar\"\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"1GiB\"\n\
         [[workload]]\nkind = \"training\"",
    );
    let r = run(&after.replace("at = \"20ms\"", "at = \"0ns\""), &Options::default());
    let step = &r.workloads[1];
    assert_eq!(step.not_run_after.as_deref(), Some("ar"), "{:?}", step.failures);
    assert!(step.step_collectives.is_empty(), "{:?}", step.step_collectives);
    // Numbers in errors stay short (1e300 printed 301 digits).
    let e = meshway_fabric::Scenario::parse(&text.replace("layers = 16", "layers = 1e300"), "t.toml")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("`workload[1].layers`: expected a whole number, got 1e300"), "{e}");
}

/// A pinned flow whose path loses a switch says that its pinned path is cut (it does not
/// reroute), not that no other path exists.
#[test]
fn a_pinned_flow_on_a_cut_path_says_so() {
    let text =
        "[fabric]\nkind = \"fat-tree\"\nk = 4\ngpus-per-host = 2\nnic = \"400Gbps\"\n[transport]\nkind = \"roce\"\n\
                [[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n[[failure]]\nat = \"1ms\"\nswitch = \"core-2\"\n";
    let csv = "src,dst,bytes,path\ngpu-0,gpu-8,1GiB,leaf-0 pod-0/spine-1 core-2 pod-2/spine-1 leaf-4\n";
    let r = run_with(text, &Options::default(), &[("f.csv", csv.into())]).unwrap();
    let w = &r.workloads[0];
    assert_eq!(w.failed_messages, 1);
    assert!(
        w.failures[0].contains("its pinned path crosses link pod-0/spine-1 -> core-2, which is down"),
        "{:?}",
        w.failures
    );
}

/// The scenario's `nic-model` picks the NIC whose achievable rate the collectives reach,
/// over a catalog file's NIC of the same rate (which is otherwise the one used).
#[test]
fn the_named_nic_model_sets_the_achievable_nic_rate() {
    let mine = Catalog::with_overlay(
        "[[nic]]\nname = \"acme-400g\"\nports = 1\nrate = \"400Gbps\"\nachievable = \"300Gbps\"\npower-w = 20\nprice-usd = 900\nsource = \"test\"\n",
        "mine.toml",
    )
    .unwrap();
    let time = |nic: &str| {
        let text = format!(
            "[fabric]\nkind = \"rail-optimized\"\ngpus = 2\ngpus-per-host = 1\nnic = \"400Gbps\"\n{nic}\n[transport]\nkind = \"infiniband\"\n\
             [[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"8GiB\"\nalgorithm = \"ring\"\nprotocol = \"simple\"\n"
        );
        first_time_with(&text, &mine)
    };
    let (acme, cx7) = (time(""), time("nic-model = \"connectx7-400g\""));
    // Each GPU sends 8 GiB x 2(n-1)/n = 8 GiB over its NIC: the payload at 300 and 384 Gb/s.
    let payload = 8.0 * (1u64 << 30) as f64 * 8.0;
    for (t, rate) in [(acme, 300e9), (cx7, 384e9)] {
        let closed = payload / rate * 1e9;
        assert!(t >= closed && t < closed * 1.02, "{t} ns vs {closed} ns");
    }
    assert!((acme / cx7 - 384.0 / 300.0).abs() < 0.01, "{acme} / {cx7}");
}

/// On a custom fabric whose GPUs differ in NIC rate, the NIC every GPU is simulated with is
/// the most common rate's, not the first-listed GPU's: listing the 800G GPU (two 400G links)
/// first made every GPU's 400G port read at full line rate (a 1 GiB all-to-all in 21.93 ms,
/// 22.84 ms with the node listed last).
#[test]
fn the_order_of_custom_nodes_does_not_choose_the_nic() {
    let base = include_str!("../../../examples/custom-small.toml").replacen(
        "a = \"gpu-a0\"\nb = \"leaf-a\"\nrate = \"400Gbps\"\nlength = \"3m\"\n",
        "a = \"gpu-a0\"\nb = \"leaf-a\"\nrate = \"400Gbps\"\nlength = \"3m\"\ncount = 2\n",
        1,
    )
        + "[transport]\nkind = \"roce\"\n[[workload]]\nkind = \"collective\"\nop = \"all-to-all\"\nsize = \"1GiB\"\n";
    let a0 = "[[fabric.node]]\nname = \"gpu-a0\"\nkind = \"gpu\"\ngroup = \"left\"\n";
    assert!(base.contains(a0) && base.contains("count = 2"));
    let moved = base.replacen(a0, "", 1).replacen(
        "[[fabric.node]]\nname = \"leaf-a\"",
        &format!("{a0}[[fabric.node]]\nname = \"leaf-a\""),
        1,
    );
    assert_ne!(moved, base);
    let time = |t: &str| run(t, &Options::default()).workloads[0].time_ns.unwrap();
    assert_eq!(time(&base), time(&moved));
    // The 400G GPUs keep the 400G NIC's achievable share (0.96): each sends 3 x 256 MiB /
    // 0.96 in 4,178-byte frames of 4,096 at 400 Gb/s, 17.11 ms at least, ideal fabric or not
    // (it read 16.45 ms).
    let ideal = run(&base, &Options::default()).workloads[0].ideal_time_ns.unwrap();
    let bound = 3.0 * 268_435_456.0 / 0.96 * 4178.0 / 4096.0 * 8.0 / 400.0;
    assert!(ideal as f64 >= bound, "ideal {ideal} ns under {bound} ns");
}

/// The steady-state ring and the step-by-step one agree, within 10%, where a ring is
/// latency-bound: both pace a rank's steps by its slowest edge with the protocol's steps in
/// flight (Simple 2: half of a step's latency after the previous step; LL and LL128 1). On
/// EFA, whose 20 us latency is above NCCL's network step, a rank pays the 20 us once and
/// NCCL's network step (LL128 4 us, LL 2.7, Simple 14) on each later step; the rest of the
/// 20 us follows the chunk along the ring, as AWS's tuner model charges it on the network
/// steps of the ring's chain only (aws/aws-ofi-nccl src/tuner/nccl_ofi_model.cpp). Closed
/// form for 4 hosts of 8 GPUs, a 16 KiB all-gather: the base latency, then 31 steps.
#[test]
fn the_steady_ring_is_paced_as_the_step_by_step_one() {
    let time = |hosts: u32, proto: &str, model: &str| {
        let text = format!(
            "[fabric]\nkind = \"leaf-spine\"\ngpus = {}\ngpus-per-host = 8\nnic = \"400Gbps\"\nplanes = 4\nnic-model = \"aws-efa-p5\"\nnvlink = \"3.6Tbps\"\ngpu = \"h100-sxm\"\n\
             [transport]\nkind = \"efa\"\n[[workload]]\nkind = \"collective\"\nop = \"all-gather\"\n\
             algorithm = \"ring\"\nprotocol = \"{proto}\"\nsize = \"16KiB\"\nchannels = 1\nmodel = \"{model}\"\n",
            8 * hosts
        );
        run(&text, &Options { no_ideal: true, ..Options::default() }).workloads[0].time_ns.unwrap()
    };
    for hosts in [2, 4, 8] {
        for proto in ["simple", "ll128", "ll"] {
            let (steps, steady) = (time(hosts, proto, "steps"), time(hosts, proto, "steady"));
            assert!(
                steady.abs_diff(steps) * 10 <= steps,
                "{hosts} hosts, {proto}: steps {steps} ns, steady {steady} ns"
            );
        }
    }
    // The base latency, the first step at 20 us, then 30 steps at NCCL's network step (Simple
    // two at a time), each plus at most 2 us of path and payload.
    for (proto, base, step) in [("ll128", 14_000, 4_000), ("ll", 6_600, 2_700), ("simple", 8_400, 7_000)] {
        let t = time(4, proto, "steps");
        let least = base + 20_000 + 30 * step;
        assert!((least..=least + 31 * 2_000).contains(&t), "{proto}: {t} ns, from {least}");
    }
}

/// A NIC model's `tree-network-share` slows a tree's sends across hosts, and nothing else:
/// AWS's tuner model gives p5's tree half the ring's network bandwidth, so a 2 GiB tree
/// all-reduce across 4 p5 hosts takes longer with the catalog's aws-efa-p5 than with the
/// same NIC at the whole share, while a ring takes as long. (On 2 hosts, where a tree sends
/// half as much across hosts, the same share adds much less: the network binds it less.)
/// And p5's EFA runs at its measured rate: a ring or tree at the line rate is up to 1/0.9385
/// faster.
#[test]
fn the_nics_tree_share_slows_the_trees_network_sends() {
    let nic = |name: &str, achievable: &str| {
        format!("[[nic]]\nname = \"{name}\"\nports = 4\nrate = \"400Gbps\"\n{achievable}transport = \"efa\"\npower-w = 0\nprice-usd = 0\nsource = \"test\"\n")
    };
    let text = nic("efa-whole", "achievable = \"375.4Gbps\"\n") + &nic("efa-line", "");
    let mine = Catalog::with_overlay(&text, "mine.toml").unwrap();
    let time = |nic: &str, algo: &str| {
        let text = format!(
            "[fabric]\nkind = \"leaf-spine\"\ngpus = 32\ngpus-per-host = 8\nnic = \"400Gbps\"\nplanes = 4\nnic-model = \"{nic}\"\nnvlink = \"3.6Tbps\"\ngpu = \"h100-sxm\"\n\
             [transport]\nkind = \"efa\"\n[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"2GiB\"\nalgorithm = \"{algo}\"\nprotocol = \"simple\"\n"
        );
        first_time_with(&text, &mine)
    };
    let (half, whole) = (time("aws-efa-p5", "tree"), time("efa-whole", "tree"));
    assert!((1.8..=2.0).contains(&(half / whole)), "tree: {half} ns against {whole} ns");
    assert_eq!(time("aws-efa-p5", "ring"), time("efa-whole", "ring"));
    // p5's EFA runs at its measured 46.9 of 50 GB/s a GPU: the same ring or tree at the line
    // rate is at most 1/0.9385 = 1.066 times faster (the network binds them, NVLink less so).
    for algo in ["ring", "tree"] {
        let (measured, at_line) = (time("efa-whole", algo), time("efa-line", algo));
        let slower = measured / at_line;
        assert!((1.03..=1.066).contains(&slower), "{algo}: {measured} ns against {at_line} ns at the line rate");
    }
}

/// NCCL's ceiling on LL bus bandwidth across hosts (the catalog's `[simulation] ll-max`, its
/// llMaxBws for Intel hosts: 39 GB/s on 2 hosts, 20.4 on 3 or more) binds a large LL
/// all-reduce: it takes its bus bytes over the ceiling, where the fabric alone would carry it
/// about ten times faster. Inside one host, and with Simple, nothing changes.
#[test]
fn ll_across_hosts_is_held_to_nccls_ceiling() {
    let time_of = |gpus: u32, algo: &str, proto: &str| {
        let text = format!(
            "[fabric]\nkind = \"leaf-spine\"\ngpus = {gpus}\ngpus-per-host = 8\nnic = \"400Gbps\"\nnvlink = \"3.6Tbps\"\ngpu = \"h100-sxm\"\n\
             [transport]\nkind = \"infiniband\"\n[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"1GiB\"\n\
             algorithm = \"{algo}\"\nprotocol = \"{proto}\"\n"
        );
        run(&text, &Options { no_ideal: true, ..Options::default() }).workloads[0].time_ns.unwrap() as f64
    };
    let time = |gpus: u32, proto: &str| time_of(gpus, "ring", proto);
    let gib = (1u64 << 30) as f64;
    // A tree's algorithm bandwidth is half its bus bandwidth in NCCL's model: 2 x 1 GiB.
    let (tree, bound) = (time_of(24, "tree", "ll"), 2.0 * gib / 20.4e9 * 1e9);
    assert!(tree >= bound && tree < bound * 1.01, "tree: {tree} ns against {bound} ns");
    for (gpus, ceiling) in [(16u32, 39e9), (24, 20.4e9)] {
        let n = f64::from(gpus);
        let bus = gib * 2.0 * (n - 1.0) / n / ceiling * 1e9;
        let t = time(gpus, "ll");
        assert!(t >= bus && t < bus * 1.01, "{gpus} GPUs: {t} ns against {bus} ns");
        assert!(time(gpus, "simple") < bus / 5.0);
    }
    // One host: NVLink only, well above the ceiling.
    assert!(time(8, "ll") < gib * 2.0 * 7.0 / 8.0 / 39e9 * 1e9 / 2.0);
}
