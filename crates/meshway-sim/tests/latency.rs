//! One source of truth for latency: `plan`'s zero-load latency and `simulate`'s lone flow agree
//! on every fabric family, with the scenario's latency keys and without.

use meshway_fabric::{Catalog, Scenario};
use meshway_sim::simulate::{simulate, Options, Setup};

/// Plan's largest zero-load latency, and simulate's latency of one lone packet between the
/// first and last GPU (completion - start - alpha - its own serialization at the bottleneck),
/// for one of the fabric's farthest pairs.
fn plan_and_lone_flow(fabric: &str, transport: &str) -> (u64, u64) {
    let cat = Catalog::builtin();
    let probe = format!("{fabric}\n[transport]\nkind = \"{transport}\"\n");
    let s = Scenario::parse(&probe, "t.toml").unwrap();
    let f = s.build(&cat).unwrap_or_else(|e| panic!("{e}"));
    let tr = s.transport(&cat).unwrap();
    let plan = meshway_fabric::plan::analyze(&f, &cat, &tr);
    let gpus = f.gpus().count();
    let last = f.node(f.gpus().last().unwrap()).name.clone();
    let first = f.node(f.gpus().next().unwrap()).name.clone();
    let text = format!("{probe}\n[[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n");
    let s = Scenario::parse(&text, "t.toml").unwrap();
    let f = s.build(&cat).unwrap();
    let p = cat.transport_profile(transport).unwrap();
    let packet = tr.mtu.0 + u64::from(p.header_bytes);
    // One payload of exactly one packet.
    let csv = format!("src,dst,bytes\n{first},{last},{}\n", tr.mtu.0);
    let read = |_: &str| -> Result<String, String> { Ok(csv.clone()) };
    let setup = Setup { scenario: &s, catalog: &cat, fabric: &f, read_file: &read };
    let r = simulate(&setup, &Options { no_ideal: true, ..Options::default() }, &mut |_, _| {}).unwrap();
    let time = r.workloads[0].time_ns.unwrap();
    let g = f.gpus().next().unwrap();
    let nic = f
        .neighbors(g)
        .iter()
        .map(|&(_, l)| f.link(l))
        .find(|l| matches!(l.class, meshway_fabric::LinkClass::Nic | meshway_fabric::LinkClass::Custom))
        .unwrap()
        .rate;
    let ser = nic.transmit_time(meshway_units::Bytes(packet)).0;
    assert!(gpus > 2);
    (plan.paths.latency_max_ns, time - p.alpha.0 - ser)
}

const KEYS: &str = "switch-latency = \"250ns\"\n[fabric.link-latency]\nhost-leaf = \"100ns\"\nleaf-spine = \"1us\"\nspine-core = \"2us\"\n";

#[test]
fn plan_zero_load_latency_is_simulate_lone_flow_latency_on_every_family() {
    let families = [
        "[fabric]\nkind = \"leaf-spine\"\ngpus = 64\ngpus-per-host = 8\n",
        "[fabric]\nkind = \"fat-tree\"\nk = 8\ngpus-per-host = 1\n",
        "[fabric]\nkind = \"three-tier\"\ngpus = 256\ngpus-per-host = 8\n",
        "[fabric]\nkind = \"rail-optimized\"\ngpus = 256\ngpus-per-host = 8\ntiers = 3\n",
        "[fabric]\nkind = \"rail-optimized\"\ngpus = 128\ngpus-per-host = 8\nplanes = 2\n",
    ];
    for fam in families {
        for transport in ["roce", "infiniband"] {
            let (plan, sim) = plan_and_lone_flow(fam, transport);
            assert_eq!(plan, sim, "{transport} on {fam}");
            let with_keys = fam.to_string() + KEYS;
            let (plan_k, sim_k) = plan_and_lone_flow(&with_keys, transport);
            assert_eq!(plan_k, sim_k, "{transport} with latency keys on {fam}");
            assert_ne!(plan_k, plan, "the keys change the latency on {fam}");
        }
    }
}

#[test]
fn latency_keys_give_closed_forms() {
    // Leaf-spine, 2 hosts on different leaves: GPU -> leaf -> spine -> leaf -> GPU is two
    // host links (100 ns), two leaf-spine links (1 us) and three switches (250 ns each),
    // whatever the transport's own hop latency; plus one 4096 + 82 B packet at 400 Gb/s
    // (83.56 -> 84 ns).
    let fam = format!("[fabric]\nkind = \"leaf-spine\"\ngpus = 64\ngpus-per-host = 8\nnic = \"400Gbps\"\n{KEYS}");
    let (plan, sim) = plan_and_lone_flow(&fam, "roce");
    assert_eq!(plan, 2 * 100 + 2 * 1000 + 3 * 250 + 84);
    assert_eq!(sim, plan);
    // Custom links take a `latency` too.
    let custom = "[fabric]\nkind = \"custom\"\nswitch-latency = \"0ns\"\n\
        [[fabric.node]]\nname = \"a\"\nkind = \"gpu\"\nhost = 0\n\
        [[fabric.node]]\nname = \"b\"\nkind = \"gpu\"\nhost = 1\n\
        [[fabric.node]]\nname = \"c\"\nkind = \"gpu\"\nhost = 2\n\
        [[fabric.node]]\nname = \"s\"\nkind = \"switch\"\n\
        [[fabric.link]]\na = \"a\"\nb = \"s\"\nrate = \"100Gbps\"\nlatency = \"1us\"\n\
        [[fabric.link]]\na = \"b\"\nb = \"s\"\nrate = \"100Gbps\"\nlatency = \"1us\"\n\
        [[fabric.link]]\na = \"c\"\nb = \"s\"\nrate = \"100Gbps\"\nlatency = \"3us\"\n";
    let (plan, sim) = plan_and_lone_flow(custom, "roce");
    // a -> s -> c: 1 us + 3 us, 4178 B at 100 Gb/s = 334.24 -> 335 ns.
    assert_eq!(plan, 4000 + 335);
    assert_eq!(sim, plan);
}

/// htsim's closed form for one lone RoCE flow (Broadcom/csg-htsim 841d9e7, derived from its
/// source in validation/htsim and checked against htsim runs to the picosecond there):
/// `(P - 1)·Td + h·Td + h·Ta + 2h·L + 2(h - 1)·S` for P full packets over h links, where Td
/// is one packet of payload + 64 B and Ta one 64 B acknowledgement at the link rate, L the
/// per-link and S the per-switch latency; the flow ends when the last ACK is back.
fn htsim_lone_flow_ps(packets: u64, hops: u64, payload: u64, bps: u64, l_ps: u64, s_ps: u64) -> u64 {
    let per_byte = 8_000_000_000_000 / bps; // ps per byte, as htsim floors it
    let td = (payload + 64) * per_byte;
    let ta = 64 * per_byte;
    (packets - 1) * td + hops * td + hops * ta + 2 * hops * l_ps + 2 * (hops - 1) * s_ps
}

/// meshway's lone flow between `src` and `dst` with the htsim-aligned overlay.
fn meshway_lone_flow(nic: &str, switch_latency: &str, src: &str, dst: &str, bytes: u64) -> u64 {
    let overlay = include_str!("../../../validation/htsim/htsim-aligned.catalog.toml");
    let cat = Catalog::with_overlay(overlay, "htsim-aligned.catalog.toml").unwrap();
    let text = format!(
        "[fabric]\nkind = \"fat-tree\"\nk = 8\ngpus-per-host = 1\nnic = \"{nic}\"\nswitch-latency = \"{switch_latency}\"\n\
         [fabric.link-latency]\nhost-leaf = \"1us\"\nleaf-spine = \"1us\"\nspine-core = \"1us\"\n\
         [transport]\nkind = \"roce\"\nmtu = \"4000B\"\ncompletion = \"ack\"\nforwarding = \"store-and-forward\"\n\
         [[workload]]\nkind = \"flows\"\nfile = \"f.csv\"\n"
    );
    let s = Scenario::parse(&text, "t.toml").unwrap();
    let f = s.build(&cat).unwrap_or_else(|e| panic!("{e}"));
    let csv = format!("src,dst,bytes\n{src},{dst},{bytes}\n");
    let read = |_: &str| -> Result<String, String> { Ok(csv.clone()) };
    let setup = Setup { scenario: &s, catalog: &cat, fabric: &f, read_file: &read };
    let r = simulate(&setup, &Options { no_ideal: true, ..Options::default() }, &mut |_, _| {}).unwrap();
    r.workloads[0].time_ns.unwrap()
}

#[test]
fn a_lone_flow_matches_htsims_closed_form() {
    // On a k = 8 fat-tree: gpu-0 to gpu-1 crosses one leaf (h = 2), to gpu-4 a pod's spine
    // (h = 4), to gpu-16 a core (h = 6).
    let pairs = [("gpu-1", 2), ("gpu-4", 4), ("gpu-16", 6)];
    // At 64 Gb/s every term is whole nanoseconds (125 ps a byte): exactly equal.
    for (dst, h) in pairs {
        for (packets, s_ns) in [(1u64, 0u64), (250, 0), (500, 500)] {
            let got = meshway_lone_flow("64Gbps", &format!("{s_ns}ns"), "gpu-0", dst, packets * 4000);
            let want = htsim_lone_flow_ps(packets, h, 4000, 64_000_000_000, 1_000_000, s_ns * 1000);
            assert_eq!(got * 1000, want, "{packets} packets over {h} links, S = {s_ns} ns");
        }
    }
    // At 100 Gb/s a packet is 325.12 ns: meshway rounds its fluid finish and its tail up to
    // whole nanoseconds, so it is at most 2 ns above (htsim's runs: 13,981.44 ns for one
    // packet across the core, 176,216.32 ns for 500).
    for (dst, h) in pairs {
        for packets in [1u64, 250, 500] {
            let got = meshway_lone_flow("100Gbps", "0ns", "gpu-0", dst, packets * 4000) * 1000;
            let want = htsim_lone_flow_ps(packets, h, 4000, 100_000_000_000, 1_000_000, 0);
            assert!(got >= want && got - want < 2000, "{packets} packets over {h} links: {got} ps vs {want} ps");
        }
    }
    assert_eq!(htsim_lone_flow_ps(1, 6, 4000, 100_000_000_000, 1_000_000, 0), 13_981_440);
    assert_eq!(htsim_lone_flow_ps(500, 6, 4000, 100_000_000_000, 1_000_000, 0), 176_216_320);
}
