//! Multi-site training: the site-hierarchical all-reduce, fibre distance in its latency, the
//! distance and capacity sweeps, the break-even search and bad input.

use meshway_fabric::{Catalog, Scenario};
use meshway_sim::collective::{Algo, CollSpec, Op};
use meshway_sim::exec::{execute, ExecConfig, Policy, Wire};
use meshway_sim::multisite::{analyze, site_all_reduce, site_groups, Options, Report};
use meshway_sim::program::Program;
use meshway_sim::topo::{FabricTopo, Topology};
use meshway_units::Meters;

/// Two leaf-spine sites of 8 single-GPU hosts, one DCI span of `w` 400ZR wavelengths.
fn two_sites(km: u64, w: u32, workload: &str) -> String {
    format!(
        r#"
name = "two"
[[site]]
name = "a"
[site.fabric]
kind = "leaf-spine"
gpus = 8
gpus-per-host = 1
[[site]]
name = "b"
[site.fabric]
kind = "leaf-spine"
gpus = 8
gpus-per-host = 1
[[dci]]
a = "a"
b = "b"
distance = "{km}km"
optic = "400ZR"
wavelengths = {w}
[transport]
kind = "roce"
{workload}
"#
    )
}

const ALL_REDUCE: &str = "[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"64MiB\"\nchannels = 2\n";

/// Runs an all-reduce of `size` over every GPU of `text`'s fabric, site-hierarchical or a
/// flat ring, exactly (no completion batching); returns its completion time.
fn all_reduce(text: &str, size: u64, hier: bool) -> u64 {
    let cat = Catalog::builtin();
    let s = Scenario::parse(text, "t.toml").unwrap();
    let f = s.build(&cat).unwrap();
    let mut topo = FabricTopo::new(&f, &cat, 1);
    let roce = cat.transport_profile("roce").unwrap();
    let wire = Wire { mtu: 4096, header: u64::from(roce.header_bytes), alpha: roce.alpha };
    let cfg = ExecConfig {
        policy: Policy::Ecmp,
        wire,
        qps: 1,
        spray_paths: 64,
        seed: 1,
        tolerance_ppm: 0,
        completion: Default::default(),
        link_history: false,
        window: 0,
        p2p_window: 0,
    };
    let n = topo.ranks() as u32;
    let sites: Vec<u32> = (0..n).map(|r| u32::from(f.node(topo.node_of(r)).site)).collect();
    let spec = CollSpec {
        op: Op::AllReduce,
        algo: Algo::Ring,
        size,
        ranks: (0..n).collect(),
        channels: 2,
        model: None,
        steps_limit: 300_000,
        alpha: wire.alpha,
        packet: wire.mtu + wire.header,
        pipeline: Default::default(),
        proto: Default::default(),
        hw: Default::default(),
        net_overhead: None,
    };
    let mut prog = Program::new();
    prog.tag("ar");
    let b = if hier {
        site_all_reduce(&mut prog, &mut topo, &spec, &sites, &[]).unwrap()
    } else {
        meshway_sim::collective::build(&mut prog, &mut topo, &spec, &[]).unwrap()
    };
    let ex = execute(&prog, &mut topo, &cfg, &[], &mut |_, _| {}).unwrap();
    ex.msgs[b.done as usize].end.unwrap().0
}

fn prop(km: u64) -> u64 {
    let cat = Catalog::builtin();
    Meters::from_km(km).propagation(cat.constants.fiber_delay_per_km).0
}

#[test]
fn fiber_distance_adds_exactly_one_round_trip_to_a_two_site_hierarchical_all_reduce() {
    // The cross-site phase is a ring of 2: two steps, each crossing the DCI once, so the
    // dependency chain crosses it twice: one round trip, 2 x 4.9 us/km x d.
    assert_eq!(prop(100), 490_000);
    let base = all_reduce(&two_sites(0, 4, ""), 64 << 20, true);
    for km in [1u64, 25, 100, 120] {
        let t = all_reduce(&two_sites(km, 4, ""), 64 << 20, true);
        assert_eq!(t - base, 2 * prop(km), "{km} km: {t} ns vs {base} ns at 0 km");
    }
    // 100 km adds 0.98 ms exactly.
    assert_eq!(all_reduce(&two_sites(100, 4, ""), 64 << 20, true) - base, 980_000);
}

#[test]
fn three_sites_in_a_triangle_cross_the_dci_four_times() {
    // k = 3 sites, each pair joined directly: the cross-site ring has 2(k-1) = 4 steps, every
    // one a DCI hop, so d km adds 4 one-way propagations.
    let text = |km: u64| {
        let mut t = String::from("name = \"tri\"\n");
        for s in ["a", "b", "c"] {
            t.push_str(&format!(
                "[[site]]\nname = \"{s}\"\n[site.fabric]\nkind = \"leaf-spine\"\ngpus = 4\ngpus-per-host = 1\n"
            ));
        }
        for (a, b) in [("a", "b"), ("b", "c"), ("a", "c")] {
            t.push_str(&format!(
                "[[dci]]\na = \"{a}\"\nb = \"{b}\"\ndistance = \"{km}km\"\noptic = \"400ZR\"\nwavelengths = 4\n"
            ));
        }
        t
    };
    let base = all_reduce(&text(0), 48 << 20, true);
    let t = all_reduce(&text(80), 48 << 20, true);
    assert_eq!(t - base, 4 * prop(80));
}

#[test]
fn site_groups_keep_rank_order_within_each_site() {
    let sites = [0, 0, 1, 1, 0, 1];
    assert_eq!(site_groups(&sites, &[0, 1, 2, 3, 4, 5]), vec![vec![0, 1, 4], vec![2, 3, 5]]);
    assert_eq!(site_groups(&sites, &[5, 0]), vec![vec![5], vec![0]]);
}

#[test]
fn hierarchical_moves_half_the_bytes_over_the_dci_and_beats_the_flat_ring_at_distance() {
    let hier = all_reduce(&two_sites(100, 1, ""), 64 << 20, true);
    let flat = all_reduce(&two_sites(100, 1, ""), 64 << 20, false);
    assert!(hier < flat, "hierarchical {hier} ns vs flat ring {flat} ns");
    // Cross-site bytes: each site sends S/2 of shards (8 shards of S/8, half each) one way.
    // On one 400G wavelength that alone takes S/2 x 8 / 400e9 = 0.67 ms for S = 64 MiB.
    let one_way = (32u64 << 20) * 8 * 1_000_000_000 / 400_000_000_000;
    assert!(hier > one_way + 2 * prop(100));
}

fn opts(distances: &[u64], wavelengths: &[u32]) -> Options {
    Options {
        distances: distances.iter().map(|&k| Meters::from_km(k)).collect(),
        wavelengths: wavelengths.to_vec(),
        budget: 0.10,
        resolution: Meters::from_km(1),
        max_distance: Meters::from_km(1000),
        seed: None,
        tolerance: Some(0.0),
    }
}

/// The built-in catalog with an NCCL buffer no span here binds (1 GiB per round trip of a
/// few milliseconds is terabits per second): distance adds latency alone, as these tests
/// check; `a_long_span_is_window_bound_and_more_wavelengths_do_not_help` checks the window.
fn unbounded() -> Catalog {
    Catalog::with_overlay("[simulation]\nnccl-buffer = \"1GiB\"\n", "unbounded.toml").unwrap()
}

fn report(text: &str, o: &Options) -> Report {
    report_in(&unbounded(), text, o)
}

fn report_in(cat: &Catalog, text: &str, o: &Options) -> Report {
    let s = Scenario::parse(text, "t.toml").unwrap();
    analyze(&s, cat, o).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn analysis_of_an_all_reduce_adds_the_round_trip_per_distance_and_checks_headroom() {
    let r = report(&two_sites(100, 4, ALL_REDUCE), &opts(&[0, 50, 100, 150, 200], &[1, 4, 16]));
    assert_eq!(r.kind, "all-reduce");
    assert_eq!(r.gpus, 16);
    let d = &r.by_distance;
    for row in d {
        assert_eq!(row.step_ns - d[0].step_ns, 2 * prop(row.distance_m / 1000), "at {} m", row.distance_m);
        assert_eq!(row.dci_rtt_ns, 2 * prop(row.distance_m / 1000));
        // The flat ring's chain crosses the DCI more often: it grows faster with distance.
        assert!(row.flat_step_ns - d[0].flat_step_ns >= row.step_ns - d[0].step_ns);
    }
    // The configured distance is the 100 km row.
    assert_eq!(r.step_ns, d[2].step_ns);
    // Beyond 400ZR's 120 km the span gets ZR+ (same 400G rate).
    assert_eq!(d[2].optics, vec!["400g-zr".to_string()]);
    assert_eq!(d[3].optics, vec!["400g-zr-plus".to_string()]);
    assert!(d.iter().all(|x| x.wavelengths == vec![4] && x.dci_bps == vec![1_600_000_000_000]));
    // 800ZR gives way to ZR+ at 400G beyond its reach: twice the wavelengths, the same
    // capacity, so the sweep shows distance and not a halved DCI.
    let r8 = report(&two_sites(100, 2, ALL_REDUCE).replace("400ZR", "800ZR"), &opts(&[100, 150], &[]));
    let d8 = &r8.by_distance;
    assert_eq!((d8[0].optics[0].as_str(), d8[0].wavelengths[0]), ("800g-zr", 2));
    assert_eq!((d8[1].optics[0].as_str(), d8[1].wavelengths[0]), ("400g-zr-plus", 4));
    assert_eq!(d8[0].dci_bps, d8[1].dci_bps);
    // 2,100 x 800ZR builds at 100 km but not as 4,200 ZR+ wavelengths beyond 120 km: the
    // break-even search ends at the farthest distance that builds instead of failing.
    let wide = include_str!("../../../examples/two-site-training.toml")
        .replace("optic = \"400ZR\"", "optic = \"800ZR\"")
        .replace("wavelengths = 16", "wavelengths = 2100");
    let w = report(&wide, &opts(&[100], &[]));
    assert_eq!((w.break_even.outcome.as_str(), w.break_even.below_m), ("beyond", Some(120_000)), "{:?}", w.break_even);
    // Lossless headroom: one span, feasible at 0 km only (the planner's numbers: a 400G port
    // needs 400e9/8 x (2 x 490 us + 1.16 us) + 2 x 4096 B at 100 km).
    assert!(d.iter().all(|x| x.headroom.len() == 1 && x.headroom[0].span == "a-b"));
    assert!(d[0].headroom[0].feasible);
    assert!(d[1..].iter().all(|x| !x.headroom[0].feasible));
    assert_eq!(d[2].headroom[0].per_port_bytes, 50_000_000_000 * 981_160 / 1_000_000_000 + 8192);
    // More wavelengths, faster step.
    let c = &r.by_capacity;
    assert_eq!(
        c.iter().map(|x| x.dci_bps).collect::<Vec<_>>(),
        vec![400_000_000_000, 1_600_000_000_000, 6_400_000_000_000]
    );
    assert!(c[0].step_ns > c[1].step_ns && c[1].step_ns >= c[2].step_ns);
}

const TRAINING: &str = r#"
[[workload]]
kind = "training"
parameters = 2e8
layers = 8
hidden = 1024
sequence = 1024
global-batch = 32
tp = 1
pp = 2
dp = 8
"#;

#[test]
fn training_step_grows_with_distance_and_the_break_even_matches_direct_runs() {
    let o = opts(&[0, 50, 100, 200, 400, 800], &[2, 8]);
    let r = report(&two_sites(100, 4, TRAINING), &o);
    assert_eq!(r.kind, "training");
    // Monotone in distance, hierarchical and flat.
    for w in r.by_distance.windows(2) {
        assert!(w[1].step_ns >= w[0].step_ns, "{} m: {} < {}", w[1].distance_m, w[1].step_ns, w[0].step_ns);
        assert!(w[1].flat_step_ns >= w[0].flat_step_ns);
        assert!(w[1].cross_site_share >= w[0].cross_site_share);
    }
    // The one-site baselines are faster than any two-site step of the same algorithm.
    assert!(r.by_distance.iter().all(|x| x.step_ns > r.one_site_step_ns));
    assert!(r.by_distance.iter().all(|x| x.flat_step_ns > r.one_site_flat_step_ns));
    // Both searches evaluated both ends, so they ran at least three simulations each.
    assert!(r.break_even.evaluations >= 3 && r.flat_break_even.evaluations >= 3);
    // The break-even is checked by direct runs one resolution step either side.
    for b in [&r.break_even, &r.flat_break_even] {
        if b.outcome != "within" {
            continue;
        }
        let (hi, lo) = (b.distance_m.unwrap(), b.below_m.unwrap());
        assert_eq!(hi - lo, 1000);
        let direct = |m: u64| {
            let o2 = Options { distances: vec![Meters::from_m(m)], wavelengths: vec![], ..o.clone() };
            let rr = report(&two_sites(100, 4, TRAINING), &o2);
            let row = &rr.by_distance[0];
            let (step, one) = if std::ptr::eq(b, &r.break_even) {
                (row.step_ns, rr.one_site_step_ns)
            } else {
                (row.flat_step_ns, rr.one_site_flat_step_ns)
            };
            (step - one) as f64 / step as f64
        };
        assert!(direct(lo) <= 0.10, "{lo} m within budget");
        assert!(direct(hi) > 0.10, "{hi} m over budget");
    }
    assert_eq!(r.flat_break_even.outcome, "within", "{:?}", r.flat_break_even);
}

#[test]
fn bad_input_names_file_and_key() {
    let cat = Catalog::builtin();
    let err = |text: &str| {
        let s = Scenario::parse(text, "bad.toml").unwrap();
        analyze(&s, &cat, &opts(&[0], &[1])).unwrap_err().to_string()
    };
    let single = "[fabric]\nkind = \"leaf-spine\"\ngpus = 8\n[[workload]]\nkind = \"training\"\n";
    let e = err(single);
    assert!(e.contains("bad.toml") && e.contains("site") && e.contains("one site"), "{e}");
    let e = err(&two_sites(100, 4, ""));
    assert!(e.contains("bad.toml") && e.contains("workload") && e.contains("training"), "{e}");
    let e = err(&two_sites(100, 4, "[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\n"));
    assert!(e.contains("size") && e.contains("missing"), "{e}");
    // Both algorithms are always compared: another one would be silently ignored.
    let e = err(&two_sites(100, 4, &ALL_REDUCE.replace("channels = 2", "channels = 2\nalgorithm = \"tree\"")));
    assert!(e.contains("algorithm") && e.contains("auto, ring or site-hierarchical, not \"tree\""), "{e}");
    let e = err(&two_sites(100, 4, &TRAINING.replace("dp = 8", "dp = 4")));
    assert!(e.contains("dp"), "{e}");
    // Unequal sites cannot be reduced hierarchically by site.
    let uneven = two_sites(100, 4, ALL_REDUCE).replacen("gpus = 8", "gpus = 4", 1);
    let e = err(&uneven);
    assert!(
        e.starts_with("bad.toml:")
            && e.contains("site[2].fabric")
            && e.contains("gpus")
            && e.contains("8 GPUs, but site[1] (a) has 4"),
        "{e}"
    );
    assert!(e.contains("same number of GPUs at every site"), "{e}");
    let s = Scenario::parse(&two_sites(100, 4, ALL_REDUCE), "bad.toml").unwrap();
    let e = analyze(&s, &cat, &Options { budget: 1.5, ..opts(&[0], &[1]) }).unwrap_err().to_string();
    assert!(e.contains("budget"), "{e}");
    // A search step coarser than the search's limit has no distance to try.
    let fine = Options { resolution: Meters(999), ..opts(&[0], &[1]) };
    let e = analyze(&s, &cat, &fine).unwrap_err().to_string();
    assert!(e.contains("--resolution") && e.contains("expected at least 1m, got 0.999m"), "{e}");
    let coarse = Options { resolution: Meters::from_km(1001), ..opts(&[0], &[1]) };
    let e = analyze(&s, &cat, &coarse).unwrap_err().to_string();
    assert!(
        e.contains("--resolution") && e.contains("1001km is above the search limit (1000km: --max-distance 1000km"),
        "{e}"
    );
    // The limit is the longest coherent reach when --max-distance is longer.
    let far = Options { resolution: Meters::from_km(2000), max_distance: Meters::from_km(5000), ..opts(&[0], &[1]) };
    let e = analyze(&s, &cat, &far).unwrap_err().to_string();
    assert!(e.contains("2000km is above the search limit") && e.contains("the longest coherent reach"), "{e}");
    let zero = Options { max_distance: Meters(0), ..opts(&[0], &[1]) };
    let e = analyze(&s, &cat, &zero).unwrap_err().to_string();
    assert!(e.contains("--max-distance") && e.contains("must be positive"), "{e}");
}

/// A lossy transport pauses nothing: its spans get no headroom check (TCP showed
/// "infeasible").
#[test]
fn a_lossy_transport_has_no_headroom_to_check() {
    let tcp = two_sites(100, 4, ALL_REDUCE).replace("kind = \"roce\"", "kind = \"tcp\"");
    let r = report(&tcp, &opts(&[0, 100], &[4]));
    assert!(r.by_distance.iter().all(|d| d.headroom.is_empty()), "{:?}", r.by_distance[0].headroom);
    let roce = report(&two_sites(100, 4, ALL_REDUCE), &opts(&[0, 100], &[4]));
    assert!(roce.by_distance.iter().all(|d| d.headroom.len() == 1));
}

#[test]
fn catalog_defaults_sweep_0_to_200_km_with_a_10_percent_budget() {
    let o = Options::from_catalog(&Catalog::builtin()).unwrap();
    assert_eq!(o.tolerance, Some(0.0), "exact: the break-even search needs steps monotonic in distance");
    assert_eq!(o.distances, (0..=8).map(|i| Meters::from_km(25 * i)).collect::<Vec<_>>());
    assert_eq!(o.wavelengths, vec![1, 2, 4, 8, 16, 32]);
    assert_eq!(o.budget, 0.10);
    assert_eq!(o.resolution, Meters::from_km(1));
    assert_eq!(o.max_distance, Meters::from_km(1000));
}

#[test]
fn simulate_runs_site_hierarchical_collectives_and_distance_adds_at_most_a_round_trip() {
    use meshway_sim::simulate::{simulate, Options as SimOptions, Setup};
    let run = |km: u64| {
        let text = two_sites(
            km,
            4,
            "[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nalgorithm = \"site-hierarchical\"\nprotocol = \"simple\"\nsize = \"64MiB\"\nchannels = 2\n",
        );
        let cat = unbounded();
        let s = Scenario::parse(&text, "t.toml").unwrap();
        let f = s.build(&cat).unwrap();
        let read = |_: &str| -> Result<String, String> { Err("no files".into()) };
        let setup = Setup { scenario: &s, catalog: &cat, fabric: &f, read_file: &read };
        let opts = SimOptions { tolerance: Some(0.0), ..SimOptions::default() };
        let r = simulate(&setup, &opts, &mut |_, _| {}).unwrap();
        let w = &r.workloads[0];
        assert_eq!(w.algorithm.as_deref(), Some("site-hierarchical"));
        w.time_ns.unwrap()
    };
    let (t0, t100) = (run(0), run(100));
    let lib = all_reduce(&two_sites(100, 4, ""), 64 << 20, true);
    let lib0 = all_reduce(&two_sites(0, 4, ""), 64 << 20, true);
    // The library call has no protocol model (every step pays the transport's alpha, one
    // step at a time): 100 km adds exactly one round trip. The simple protocol's steps and
    // base latency add time; its two steps in flight let the pipeline's chunks overlap part
    // of the round trip (0.84 of the 0.98 ms here), never more than all of it.
    assert_eq!(lib - lib0, 980_000);
    assert!(t0 > lib0 && t100 > lib, "simple {t0}, {t100} ns; library {lib0}, {lib} ns");
    assert!((800_000..=980_000).contains(&(t100 - t0)), "100 km adds {} ns", t100 - t0);
}

#[test]
fn simulate_training_with_dp_algorithm_site_hierarchical_matches_multisite() {
    use meshway_sim::simulate::{simulate, Options as SimOptions, Setup};
    let sim = |dp: &str| -> Result<u64, meshway_sim::simulate::SimulateError> {
        let text = two_sites(100, 4, &format!("{TRAINING}dp-algorithm = \"{dp}\"\n"));
        let cat = Catalog::builtin();
        let s = Scenario::parse(&text, "t.toml")?;
        let f = s.build(&cat).unwrap();
        let read = |_: &str| -> Result<String, String> { Err("no files".into()) };
        let setup = Setup { scenario: &s, catalog: &cat, fabric: &f, read_file: &read };
        let opts = SimOptions { tolerance: Some(0.0), no_ideal: true, ..SimOptions::default() };
        Ok(simulate(&setup, &opts, &mut |_, _| {})?.workloads[0].time_ns.unwrap())
    };
    // With NCCL's buffer as window in both.
    let r = report_in(&Catalog::builtin(), &two_sites(100, 4, TRAINING), &opts(&[], &[]));
    assert_eq!(sim("site-hierarchical").unwrap(), r.step_ns);
    assert_eq!(sim("ring").unwrap(), r.flat_step_ns);
    // NCCL's tree is a data-parallel algorithm too; the tuner's pick is the default.
    assert!(sim("tree").unwrap() > 0 && sim("auto").unwrap() > 0);
    let e = sim("halving-doubling").unwrap_err().to_string();
    assert!(e.contains("t.toml") && e.contains("dp-algorithm") && e.contains("site-hierarchical"), "{e}");
}

/// An NCCL connection has at most its buffer in flight per round trip: across 100 km (a
/// 0.98 ms round trip of fibre, plus the switches) a 4 MiB buffer carries about 34 Gb/s, far
/// below the wavelengths, so a 256 MiB send waits for credits 63 times: about 0.12 s instead
/// of 3 ms. A send that fits the buffer is all in flight at once and is not bound; inside the
/// site the window binds nothing (no window link is added).
/// Exact runs of ECMP over two queue pairs without headers, with NCCL's buffer `window`.
fn window_cfg(window: u64, link_history: bool) -> ExecConfig {
    ExecConfig {
        policy: Policy::Ecmp,
        wire: Wire { mtu: 4096, header: 0, alpha: meshway_units::Nanos::ZERO },
        qps: 2,
        spray_paths: 64,
        seed: 1,
        tolerance_ppm: 0,
        completion: Default::default(),
        link_history,
        window,
        p2p_window: 0,
    }
}

#[test]
fn a_connections_buffer_per_round_trip_bounds_its_rate_across_a_long_span() {
    let cat = Catalog::builtin();
    let window = cat.simulation.nccl_buffer.expect("the catalog gives NCCL's buffer").0;
    assert_eq!(window, 4 << 20);
    let run = |km: u64, window: u64, dst: u32, bytes: u64| {
        let s = Scenario::parse(&two_sites(km, 4, ""), "t.toml").unwrap();
        let f = s.build(&cat).unwrap();
        let mut topo = FabricTopo::new(&f, &cat, 1);
        let cfg = window_cfg(window, true);
        let mut prog = Program::new();
        prog.tag("send");
        let mut m = meshway_sim::program::Msg::send(0, dst, bytes);
        m.window = meshway_sim::program::Window::Collective;
        let id = prog.push(m);
        let one_way = topo.edge_latency(0, dst, None, 0).0;
        let fabric_arcs = topo.network().len();
        let ex = execute(&prog, &mut topo, &cfg, &[], &mut |_, _| {}).unwrap();
        assert_eq!(ex.sim.link_stats.len(), fabric_arcs, "no window link in the reports");
        assert_eq!(ex.sim.link_history.as_ref().unwrap().bytes.len(), fabric_arcs);
        (ex.msgs[id as usize].end.unwrap().0, one_way)
    };
    const S: u64 = 256 << 20;
    // (S / W - 1) round trips of credits, then the last window's one-way trip.
    for km in [100, 50] {
        let (t, one_way) = run(km, window, 8, S);
        let closed = one_way as f64 + (S as f64 / window as f64 - 1.0) * 2.0 * one_way as f64;
        assert!((t as f64 - closed).abs() / closed < 0.001, "{km} km: {t} ns vs {closed} ns");
    }
    let (bound, one_way) = run(100, window, 8, S);
    let rate = window as f64 * 8.0 / (2.0 * one_way as f64 * 1e-9);
    assert!((33e9..34.3e9).contains(&rate), "{rate} b/s");
    // Unbounded, the two queue pairs fill the wavelengths' ECMP paths.
    assert!(run(100, 0, 8, S).0 < bound / 10);
    // A send that fits the buffer goes as if unbounded.
    assert_eq!(run(100, window, 8, window).0, run(100, 0, 8, window).0);
    // Inside a site the round trip is microseconds: nothing binds.
    assert_eq!(run(100, window, 1, S).0, run(100, 0, 1, S).0);
}

/// LL and LL128 have their own buffers (NCCL's DEFAULT_LL_BUFFSIZE 512 KiB, half of it
/// payload; DEFAULT_LL128_BUFFSIZE 4,800 KiB, 15/16 payload): a ring's sends across the sites
/// carry them as their window, Simple's the catalog's nccl-buffer; and a send with its own
/// buffer is bound exactly as one under a collective window of that size.
#[test]
fn each_protocol_has_its_own_buffer_across_sites() {
    use meshway_sim::collective::{build, Proto};
    use meshway_sim::program::{Msg, Window};
    let cat = Catalog::builtin();
    let s = Scenario::parse(&two_sites(100, 4, ""), "t.toml").unwrap();
    let f = s.build(&cat).unwrap();
    let mut topo = FabricTopo::new(&f, &cat, 1);
    let windows = |proto: &str, topo: &mut FabricTopo<'_>| {
        let spec = CollSpec {
            op: Op::AllReduce,
            algo: Algo::Ring,
            size: 64 << 20,
            ranks: vec![0, 8],
            channels: 1,
            model: None,
            steps_limit: 100_000,
            alpha: meshway_units::Nanos(2000),
            packet: 4096,
            pipeline: Default::default(),
            proto: Proto::from_model(cat.protocol(proto).unwrap()),
            hw: Default::default(),
            net_overhead: None,
        };
        let mut prog = Program::new();
        prog.tag("ring");
        build(&mut prog, topo, &spec, &[]).unwrap();
        let mut w: Vec<Window> = prog.msgs.iter().filter(|m| !m.is_wait()).map(|m| m.window).collect();
        w.dedup();
        w
    };
    assert_eq!(windows("ll", &mut topo), [Window::Buffer(262_144)]);
    assert_eq!(windows("ll128", &mut topo), [Window::Buffer(4_608_000)]);
    assert_eq!(windows("simple", &mut topo), [Window::Collective]);
    let send = |window: Window, cfg_window: u64, topo: &mut FabricTopo<'_>| {
        let mut prog = Program::new();
        prog.tag("send");
        let mut m = Msg::send(0, 8, 64 << 20);
        m.window = window;
        let id = prog.push(m);
        let ex = execute(&prog, topo, &window_cfg(cfg_window, false), &[], &mut |_, _| {}).unwrap();
        ex.msgs[id as usize].end.unwrap().0
    };
    let ll = send(Window::Buffer(262_144), 4 << 20, &mut topo);
    assert_eq!(ll, send(Window::Collective, 262_144, &mut topo));
    // 255 round trips of credits against 15 with Simple's 4 MiB.
    let simple = send(Window::Collective, 4 << 20, &mut topo);
    assert!(ll > 15 * simple, "{ll} vs {simple}");
}

/// With NCCL's 4 MiB buffer, a 1 GiB all-reduce over 100 km is bound by its connections'
/// windows (about 34 Gb/s a connection), not by the DCI: 4 wavelengths or 16 give the same
/// step, where without the bound 16 are faster (its flows hash onto more of them). The flat
/// ring's steps, 32 MiB a connection each, wait for credits 7 times a step and slow most.
#[test]
fn a_long_span_is_window_bound_and_more_wavelengths_do_not_help() {
    let cat = Catalog::builtin();
    let run = |cat: &Catalog| {
        let s = Scenario::parse(&two_sites(100, 4, &ALL_REDUCE.replace("64MiB", "1GiB")), "t.toml").unwrap();
        analyze(&s, cat, &opts(&[100], &[4, 16])).unwrap_or_else(|e| panic!("{e}"))
    };
    let (bound, free) = (run(&cat), run(&unbounded()));
    let (b, f) = (&bound.by_capacity, &free.by_capacity);
    assert_eq!(b[0].step_ns, b[1].step_ns, "window-bound: {b:?}");
    assert!(f[1].step_ns < f[0].step_ns, "{f:?}");
    assert!(bound.step_ns > free.step_ns * 21 / 20, "{} vs {} ns", bound.step_ns, free.step_ns);
    assert!(bound.flat_step_ns > free.flat_step_ns * 3, "{} vs {} ns", bound.flat_step_ns, free.flat_step_ns);
}

/// Pipeline stages across the sites send activations and gradients as NCCL sends, whose
/// window is NCCL's p2p one (8 slots of 128 KiB): a 2 MiB activation over 100 km waits a
/// round trip for credits, so the step is slower than with a window that never binds (they
/// were not bound at all, which favoured putting stages across sites).
#[test]
fn pipeline_sends_across_sites_have_the_p2p_window() {
    use meshway_sim::simulate::{simulate, Options as SimOptions, Setup};
    let step = |cat: &Catalog| {
        let text = two_sites(100, 4, &format!("{TRAINING}order = \"tp,dp,pp\"\n"));
        let s = Scenario::parse(&text, "t.toml").unwrap();
        let f = s.build(cat).unwrap();
        let read = |_: &str| -> Result<String, String> { Err("no files".into()) };
        let setup = Setup { scenario: &s, catalog: cat, fabric: &f, read_file: &read };
        let opts = SimOptions { tolerance: Some(0.0), no_ideal: true, ..SimOptions::default() };
        let r = simulate(&setup, &opts, &mut |_, _| {}).unwrap();
        (r.workloads[0].time_ns.unwrap(), r.notes.iter().any(|n| n.contains("bound by NCCL's window")))
    };
    let cat = Catalog::builtin();
    assert_eq!(cat.simulation.nccl_p2p_window.map(|b| b.0), Some(1 << 20));
    let free = Catalog::with_overlay("[simulation]\nnccl-p2p-window = \"1GiB\"\n", "p2p.toml").unwrap();
    let ((bound, said), (unbound, _)) = (step(&cat), step(&free));
    assert!(bound > unbound + 2 * prop(100), "{bound} ns vs {unbound} ns");
    assert!(said, "the run notes the window");
}

/// NCCL's window follows the path a send is rerouted onto. Three sites: a and b 20 km apart,
/// c 1,000 km from each. With the a-b span down from the start, a 256 MiB send from a to b
/// goes by c, a 2,000 km path, and waits for credits at that path's round trip (before, it
/// kept the rate of the 20 km path it would have started on, 100 times too fast). Failing
/// the span halfway through, the rest goes at the long path's rate.
#[test]
fn a_rerouted_send_waits_for_credits_at_its_new_paths_round_trip() {
    let cat = Catalog::builtin();
    let window = cat.simulation.nccl_buffer.unwrap().0;
    let site = |n: &str| {
        format!("[[site]]\nname = \"{n}\"\n[site.fabric]\nkind = \"leaf-spine\"\ngpus = 2\ngpus-per-host = 1\n")
    };
    let dci = |a: &str, b: &str, km: u64| {
        let optic = if km > 120 { "400ZR+" } else { "400ZR" };
        format!("[[dci]]\na = \"{a}\"\nb = \"{b}\"\ndistance = \"{km}km\"\noptic = \"{optic}\"\nwavelengths = 1\n")
    };
    let text = format!(
        "name = \"tri\"\n{}{}{}{}{}{}",
        site("a"),
        site("b"),
        site("c"),
        dci("a", "b", 20),
        dci("a", "c", 1000),
        dci("c", "b", 1000)
    );
    let s = Scenario::parse(&text, "t.toml").unwrap();
    let f = s.build(&cat).unwrap();
    let short: Vec<u32> = f
        .links
        .iter()
        .enumerate()
        .filter(|(_, l)| l.class == meshway_fabric::LinkClass::Dci && l.length == Meters::from_km(20))
        .map(|(i, _)| i as u32)
        .collect();
    assert_eq!(short.len(), 1);
    const S: u64 = 256 << 20;
    // The send runs from GPU 0 (site a) to GPU 2 (site b).
    let run = |fail_at: Option<u64>| {
        let mut topo = FabricTopo::new(&f, &cat, 1);
        assert_ne!(topo.site_of(0), topo.site_of(2));
        let cfg = window_cfg(window, false);
        let mut prog = Program::new();
        prog.tag("send");
        let mut m = meshway_sim::program::Msg::send(0, 2, S);
        m.window = meshway_sim::program::Window::Collective;
        let id = prog.push(m);
        let failures: Vec<meshway_sim::exec::LinkEvent> = fail_at
            .map(|at| {
                (0..2)
                    .map(|k| meshway_sim::exec::LinkEvent {
                        at: meshway_units::SimTime(at),
                        arc: meshway_sim::LinkId(short[0] * 2 + k),
                        up: false,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ex = execute(&prog, &mut topo, &cfg, &failures, &mut |_, _| {}).unwrap();
        (ex.msgs[id as usize].end.unwrap().0, ex.window_bound)
    };
    // The one-way latency of each path: the short span's, and the long way round's.
    let one_way_short = {
        let mut topo = FabricTopo::new(&f, &cat, 1);
        topo.edge_latency(0, 2, None, 0).0
    };
    let one_way_long = one_way_short + 2 * prop(1000) - prop(20);
    let credits = |one_way: u64| (S as f64 / window as f64 - 1.0) * 2.0 * one_way as f64;
    // Intact: the short path's round trips.
    let (t, bound) = run(None);
    let closed = one_way_short as f64 + credits(one_way_short);
    assert!((t as f64 - closed).abs() / closed < 0.001, "intact: {t} ns vs {closed} ns");
    assert_eq!(bound, 1);
    // Down from the start: the long path's round trips.
    let (t, bound) = run(Some(0));
    let closed = one_way_long as f64 + credits(one_way_long);
    assert!((t as f64 - closed).abs() / closed < 0.001, "rerouted at start: {t} ns vs {closed} ns");
    assert_eq!(bound, 1);
    // Down halfway: half the credits at the short round trip, the rest at the long one.
    let (intact, _) = run(None);
    let (t, _) = run(Some(intact / 2));
    let closed = intact as f64 / 2.0 + credits(one_way_long) / 2.0 + one_way_long as f64;
    assert!((t as f64 - closed).abs() / closed < 0.01, "rerouted halfway: {t} ns vs {closed} ns");
}

/// The catalog's packet-level defaults for `transport`, without DCQCN, as the tests run them.
fn packet_params(
    cat: &Catalog,
    transport: meshway_sim::packet::Transport,
    policy: Policy,
) -> meshway_sim::packet::PacketParams {
    let d = cat.packet.clone().unwrap();
    meshway_sim::packet::PacketParams {
        transport,
        balance: meshway_sim::packet::Balance::of(policy),
        dcqcn: None,
        control_bytes: d.control_bytes,
        xoff: d.xoff.0,
        xon: d.xon.0,
        headroom: None,
        dci_headroom: None,
        pause_response: cat.constants.pfc_response,
        pause_response_100g: None,
        queue: d.queue.0,
        trim: 0,
        window: d.window_packets,
        window_covers_path: false,
        rto: d.lossless_rto,
        sample: d.sample,
        paths: 64,
        series_ports: 4,
        max_events: d.max_events,
    }
}

/// The packet level keeps NCCL's window too: at most the buffer sent and not yet
/// acknowledged, so a 64 MiB send over 100 km takes about 15 round trips, as the flow level
/// says (within 5%: the packet level's window slides with every acknowledgement, the flow
/// level's goes a whole window per round trip), where without the window it is a few
/// milliseconds. Inside a site nothing changes.
#[test]
fn the_packet_level_waits_for_credits_across_a_long_span_as_the_flow_level_does() {
    use meshway_sim::packet::{execute_packets, Transport};
    let cat = Catalog::builtin();
    let window = cat.simulation.nccl_buffer.unwrap().0;
    let s = Scenario::parse(&two_sites(100, 4, ""), "t.toml").unwrap();
    let f = s.build(&cat).unwrap();
    const S: u64 = 64 << 20;
    let run_share = |window: u64, dst: u32, packet: bool, share: f64| {
        let mut topo = FabricTopo::new(&f, &cat, 1);
        let cfg = window_cfg(window, false);
        let mut prog = Program::new();
        prog.tag("send");
        // A collective's message carries its NIC share: bytes per payload byte.
        let bytes = (S as f64 / share).ceil() as u64;
        let mut m = meshway_sim::program::Msg::send(0, dst, bytes);
        m.payload = S;
        m.window = meshway_sim::program::Window::Collective;
        let id = prog.push(m) as usize;
        if !packet {
            let ex = execute(&prog, &mut topo, &cfg, &[], &mut |_, _| {}).unwrap();
            return (ex.msgs[id].end.unwrap().0, ex.window_bound);
        }
        let p = packet_params(&cat, Transport::Infiniband, cfg.policy);
        let (ex, _) = execute_packets(&prog, &mut topo, &cfg, &p, &mut |_, _| {}).unwrap();
        (ex.msgs[id].end.unwrap().0, ex.window_bound)
    };
    let run = |window: u64, dst: u32, packet: bool| run_share(window, dst, packet, 1.0);
    let (flow, flow_bound) = run(window, 8, false);
    let (packet, packet_bound) = run(window, 8, true);
    assert!((packet as f64 / flow as f64 - 1.0).abs() < 0.05, "packet {packet} ns vs flow {flow} ns");
    assert_eq!((flow_bound, packet_bound), (1, 1));
    let (free, free_bound) = run(0, 8, true);
    assert!(free * 5 < packet, "unbounded {free} ns vs {packet} ns");
    assert_eq!(free_bound, 0);
    // Inside a site: the same with or without the window.
    assert_eq!(run(window, 1, true), run(0, 1, true));
    // At a NIC's 0.96 share, 64 MiB is still 16 windows of 4 MiB of payload, not 17: the
    // window in whole packets was rounded down (1,066 of 1,066.67), and the send paid one
    // more round trip (16.38 ms against 15.38 at the flow level).
    let (flow, _) = run_share(window, 8, false, 0.96);
    let (packet, _) = run_share(window, 8, true, 0.96);
    assert!((packet as f64 / flow as f64 - 1.0).abs() < 0.02, "packet {packet} ns vs flow {flow} ns");
}

/// Under selective acknowledgement (spraying) on a lossy fabric, the window counts lost
/// packets until they are resent and acknowledged: the resends must pass it, or a flow with
/// a window's worth of losses never sends again (the run went to the event limit, or ran out
/// of memory as every timeout queued its losses again).
#[test]
fn resends_pass_the_window_when_packets_are_lost() {
    use meshway_sim::packet::{execute_packets, PacketParams, Transport};
    let cat = Catalog::builtin();
    let d = cat.packet.clone().unwrap();
    let s = Scenario::parse(&two_sites(10, 1, ""), "t.toml").unwrap();
    let f = s.build(&cat).unwrap();
    let mut topo = FabricTopo::new(&f, &cat, 1);
    let cfg = ExecConfig { policy: Policy::Spray, ..window_cfg(16 << 10, false) };
    let mut prog = Program::new();
    prog.tag("incast");
    let ids: Vec<usize> = (0..8)
        .map(|src| {
            let mut m = meshway_sim::program::Msg::send(src, 8 + src % 2, 4 << 20);
            m.window = meshway_sim::program::Window::Collective;
            prog.push(m) as usize
        })
        .collect();
    let p = PacketParams {
        queue: 16 << 10,
        rto: d.rto,
        max_events: 5_000_000,
        ..packet_params(&cat, Transport::RoceLossy, cfg.policy)
    };
    let (ex, stats) = execute_packets(&prog, &mut topo, &cfg, &p, &mut |_, _| {}).unwrap();
    assert!(stats.drops > 0 && stats.retransmitted_packets > 0, "{} drops", stats.drops);
    assert!(!stats.truncated, "{} events", stats.events);
    for i in ids {
        assert!(ex.msgs[i].end.is_some(), "message {i}: {:?}", ex.msgs[i].stall);
    }
}

/// The one-site baseline is a fabric like every site's, so the sites must share one (a site of
/// another family made the answer depend on the order of the tables); the notes say what the
/// figures leave out: failures, the packet level, ECMP's seed.
#[test]
fn sites_share_one_fabric_and_the_notes_say_what_is_left_out() {
    let s = Scenario::parse(
        &two_sites(100, 4, ALL_REDUCE).replacen("kind = \"leaf-spine\"", "kind = \"fat-tree\"", 1),
        "t.toml",
    )
    .unwrap();
    let e = analyze(&s, &unbounded(), &opts(&[0], &[4])).unwrap_err().to_string();
    assert!(e.contains("t.toml:12: `site[2].fabric.kind`: differs from site[1] (a)'s"), "{e}");
    let nic = two_sites(100, 4, ALL_REDUCE)
        .replace("gpus = 8\ngpus-per-host = 1\n[[dci]]", "gpus = 8\ngpus-per-host = 1\nnic = \"100Gbps\"\n[[dci]]");
    let e = analyze(&Scenario::parse(&nic, "t.toml").unwrap(), &unbounded(), &opts(&[0], &[4])).unwrap_err();
    assert!(e.to_string().contains("`site[2].fabric.nic`: differs from site[1] (a)'s"), "{e}");
    // Healthy, with routing given: no notes.
    let quiet = two_sites(100, 4, ALL_REDUCE).replace("kind = \"roce\"", "kind = \"roce\"\nrouting = \"adaptive\"");
    assert!(report(&quiet, &opts(&[0], &[4])).notes.is_empty());
    let noisy = format!(
        "{}[[failure]]\nswitch = \"b/spine-0\"\n[simulation]\nfidelity = \"packet\"\n",
        quiet.replace("adaptive", "ecmp")
    );
    let notes = report(&noisy, &opts(&[0], &[4])).notes;
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(notes[0].starts_with("the scenario's 1 [[failure]] table is not modelled here"));
    assert!(notes[1].starts_with("multisite runs at the flow level"));
    assert!(notes[2].starts_with("ECMP: which flows share a link depends on the hash seed"));
}
