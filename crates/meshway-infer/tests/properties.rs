//! Invariants of the simulator on random small scenarios.

use meshway_fabric::Catalog;
use meshway_infer::{simulate, spec_from_text, Run};
use proptest::prelude::*;

/// Region `r` with `load` (a rate or a concurrency), `km + 7 r` from each site.
fn region(r: usize, load: &str, sites: &[(u32, u32)]) -> String {
    let d: Vec<String> =
        sites.iter().enumerate().map(|(i, (_, km))| format!("s{i} = \"{}km\"", km + 7 * r as u32)).collect();
    format!("\n[[region]]\nname = \"r{r}\"\n{load}\ndistance = {{ {} }}\n", d.join(", "))
}

/// The scenario's run with `seed`, and site `fail` (when it exists) failing 5 s in.
fn run_with(spec: &meshway_infer::InferSpec, seed: u64, fail: Option<usize>) -> Run {
    let mut run = Run::new(spec);
    run.seed = seed;
    if let Some(f) = fail.filter(|&f| f < spec.sites.len()) {
        run.site_fail_at[f] = Some(5_000_000_000);
    }
    run
}

fn scenario(sites: &[(u32, u32)], rates: &[f64], batch: u32, dist: &str, policy: &str, bursty: bool) -> String {
    let mut t = format!(
        "[inference]\nduration = \"20s\"\npolicy = \"{policy}\"\n\n[[model]]\nname = \"m\"\ngpus-per-server = 1\n\
         prefill-tokens-per-s = 20000\ndecode-tokens-per-s = 2000\ndecode-tokens-per-s-per-request = 100\n\
         max-batch = {batch}\nprompt-tokens = 200\noutput-tokens = 40\nlength-dist = \"{dist}\"\n"
    );
    for (i, (gpus, _)) in sites.iter().enumerate() {
        t.push_str(&format!("\n[[site]]\nname = \"s{i}\"\ngpus = {gpus}\n"));
    }
    for (r, rate) in rates.iter().enumerate() {
        t.push_str(&region(r, &format!("rate = {rate}"), sites));
        if bursty && r == 0 {
            t.push_str("arrivals = \"bursty\"\nburst-factor = 3\nburst-on = \"2s\"\nburst-off = \"6s\"\n");
        }
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Every request is counted once (served at one site or unserved); nobody gets a first
    /// token faster than the round trip to the nearest site plus the shortest possible prefill;
    /// end-to-end is never below TTFT; capacity-weighted utilization never exceeds 1; and the
    /// same seed gives the same report.
    #[test]
    fn conservation_and_bounds(
        sites in proptest::collection::vec((0u32..6, 1u32..3000), 1..4),
        rates in proptest::collection::vec(0.0f64..80.0, 1..4),
        batch in 1u32..16,
        dist in prop_oneof![Just("fixed"), Just("exponential"), Just("uniform")],
        policy in prop_oneof![Just("nearest"), Just("least-loaded"), Just("latency-aware")],
        bursty in any::<bool>(),
        seed in 0u64..1000,
        fail in proptest::option::of(0usize..4),
    ) {
        let text = scenario(&sites, &rates, batch, dist, policy, bursty);
        let spec = spec_from_text(&text, "p.toml", &Catalog::builtin()).unwrap();
        let run = run_with(&spec, seed, fail);
        let rep = simulate(&spec, &run);
        let served: u64 = rep.sites.iter().map(|s| s.requests).sum();
        let unserved: u64 = rep.regions.iter().map(|r| r.unserved).sum();
        prop_assert_eq!(served + unserved, rep.requests);
        for (r, reg) in rep.regions.iter().enumerate() {
            let nearest = spec.regions[r]
                .paths
                .iter()
                .enumerate()
                .filter(|(s, _)| sites[*s].0 > 0)
                .filter_map(|(_, p)| p.as_ref().map(|p| p.one_way.0))
                .min();
            if reg.requests > reg.unserved {
                let floor = 2 * nearest.unwrap() + spec.models[0].prefill_ns(1);
                prop_assert!(reg.ttft.p50_ns >= floor && reg.e2e.p50_ns >= reg.ttft.p50_ns);
                prop_assert!(reg.e2e.max_ns >= reg.ttft.max_ns);
            }
        }
        for s in &rep.sites {
            prop_assert!(s.gpu_utilization <= 1.0 + 1e-9, "{}", s.gpu_utilization);
            prop_assert!(s.busy <= 1.0 + 1e-9 && s.batch_fill <= 1.0 + 1e-9);
        }
        let again = simulate(&spec, &run);
        prop_assert_eq!(format!("{:?}", again.regions), format!("{:?}", rep.regions));
    }
}

/// A shaped model on random sites, some prefill-only with DCI links to a decode site.
#[allow(clippy::too_many_arguments)]
fn shaped(
    sites: &[(u32, u32)],
    rates: &[f64],
    closed: bool,
    chunked: bool,
    reserve_gb: u32,
    disaggregate: bool,
    dci_gbps: u32,
) -> String {
    let mut t = format!(
        "[inference]\nduration = \"20s\"\npolicy = \"latency-aware\"\n\n[[model]]\nname = \"m\"\n\
         llm = \"llama-3.1-8b\"\ngpu = \"h100-sxm\"\ngpus-per-server = 1\nprecision = \"bf16\"\n\
         memory-reserve = \"{reserve_gb}GB\"\nchunked-prefill = {chunked}\ntoken-budget = 1024\nmax-batch = 32\n\
         prompt-tokens = 1500\noutput-tokens = 60\nlength-dist = \"uniform\"\n"
    );
    let n = sites.len();
    for (i, (gpus, _)) in sites.iter().enumerate() {
        // With disaggregation the first site prefills for the last one (which decodes).
        let role = match (disaggregate && n > 1, i) {
            (true, 0) => "prefill",
            (true, x) if x == n - 1 => "decode",
            _ => "both",
        };
        t.push_str(&format!("\n[[site]]\nname = \"s{i}\"\ngpus = {}\nrole = \"{role}\"\n", gpus.max(&1)));
    }
    if disaggregate && n > 1 {
        t.push_str(&format!(
            "\n[[dci]]\na = \"s0\"\nb = \"s{}\"\ndistance = \"300km\"\ncapacity = \"{dci_gbps}Gbps\"\n",
            n - 1
        ));
    }
    for (r, rate) in rates.iter().enumerate() {
        let load = if closed { format!("concurrency = {}", 1 + (*rate as u32) % 40) } else { format!("rate = {rate}") };
        t.push_str(&region(r, &load, sites));
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// With the shaped engine (KV-cache admission, chunked or whole prefill, closed or open
    /// loops, disaggregation over a DCI link, a site failing): every request sent is served
    /// exactly once or counted unserved; TTFT is at least the shortest round trip plus one
    /// prefill; end-to-end is at least TTFT; KV cache, batch and busy shares stay within 1;
    /// and the same seed gives the same report.
    #[test]
    fn shaped_engine_conservation(
        sites in proptest::collection::vec((1u32..4, 1u32..2000), 1..4),
        rates in proptest::collection::vec(0.0f64..30.0, 1..3),
        closed in any::<bool>(),
        chunked in any::<bool>(),
        reserve_gb in prop_oneof![Just(1u32), Just(58u32)],
        disaggregate in any::<bool>(),
        dci_gbps in 1u32..400,
        seed in 0u64..1000,
        fail in proptest::option::of(0usize..4),
    ) {
        let text = shaped(&sites, &rates, closed, chunked, reserve_gb, disaggregate, dci_gbps);
        let spec = spec_from_text(&text, "p.toml", &Catalog::builtin()).unwrap();
        let run = run_with(&spec, seed, fail);
        let rep = simulate(&spec, &run);
        for (r, reg) in rep.regions.iter().enumerate() {
            prop_assert_eq!(reg.served + reg.unserved, reg.requests, "region {}", r);
            if reg.served > 0 {
                let nearest = spec.regions[r].paths.iter().filter_map(|p| p.as_ref().map(|p| p.one_way.0)).min().unwrap();
                prop_assert!(reg.ttft.p50_ns >= 2 * nearest + spec.models[0].prefill_ns(1));
                prop_assert!(reg.e2e.p50_ns >= reg.ttft.p50_ns && reg.e2e.max_ns >= reg.ttft.max_ns);
            }
        }
        for s in &rep.sites {
            prop_assert!(s.kv_fill <= 1.0 + 1e-9 && s.batch_fill <= 1.0 + 1e-9 && s.busy <= 1.0 + 1e-9, "{:?}", s);
        }
        for d in &rep.dci {
            prop_assert!(d.busy <= 1.0 + 1e-9 && d.utilization <= d.busy + 1e-6, "{:?}", d);
        }
        let again = simulate(&spec, &run);
        prop_assert_eq!(format!("{:?}", again.regions), format!("{:?}", rep.regions));
    }
}
