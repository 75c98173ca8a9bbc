//! `meshway demo`: the embedded default scenarios planned, simulated and compared; the data
//! and its text (with the verdict drawn from the numbers) are meshway-report's.

use anyhow::Result;
use meshway_fabric::{plan_text, Catalog};
use meshway_report::compare_rows;
use meshway_report::demo::{verdict, Demo, DemoSim};

/// The embedded scenarios: (file name, text).
pub const SCENARIOS: [(&str, &str); 4] = [
    ("examples/three-tier-1024.toml", include_str!("../../../examples/three-tier-1024.toml")),
    ("examples/leaf-spine-1024.toml", include_str!("../../../examples/leaf-spine-1024.toml")),
    ("examples/rail-optimized-1024.toml", include_str!("../../../examples/rail-optimized-1024.toml")),
    ("examples/two-site-100km.toml", include_str!("../../../examples/two-site-100km.toml")),
];

/// The collectives every demo fabric runs: an NCCL-style all-reduce of 1 GiB over all
/// GPUs, and an all-to-all of 256 MiB per GPU among the first 256 GPUs (32 hosts, 1 MiB to
/// each peer), the size of an expert-parallel group.
const DEMO_WORKLOADS: &str = "
[[workload]]
name = \"all-reduce\"
kind = \"collective\"
op = \"all-reduce\"
size = \"1GiB\"

[[workload]]
name = \"all-to-all\"
kind = \"collective\"
op = \"all-to-all\"
size = \"256MiB\"
ranks = RANKS
";

fn simulate_demo(file: &str, text: &str, cat: &Catalog) -> Result<DemoSim> {
    let ranks: Vec<String> = (0..256).map(|r| r.to_string()).collect();
    let full = format!("{text}\n{}", DEMO_WORKLOADS.replace("RANKS", &format!("[{}]", ranks.join(", "))));
    let scenario = meshway_fabric::Scenario::parse(&full, file)?;
    let fabric = scenario.build(cat)?;
    let read = |_: &str| -> Result<String, String> { Err("the demo reads no files".into()) };
    let setup = meshway_sim::simulate::Setup { scenario: &scenario, catalog: cat, fabric: &fabric, read_file: &read };
    let opts = meshway_sim::simulate::Options { no_ideal: true, ..Default::default() };
    let r = meshway_sim::simulate::simulate(&setup, &opts, &mut |_, _| {})?;
    let w = |i: usize| r.workloads.get(i);
    Ok(DemoSim {
        name: scenario.name.clone(),
        routing: r.transport.routing.name().to_string(),
        all_reduce_ns: w(0).and_then(|w| w.time_ns),
        all_reduce_busbw_gbps: w(0).and_then(|w| w.busbw_gbps),
        all_reduce_algorithm: w(0).and_then(|w| {
            let a = w.algorithm.clone()?;
            Some(w.protocol.as_ref().map_or_else(|| a.clone(), |p| format!("{a}, {p}")))
        }),
        all_to_all_ns: w(1).and_then(|w| w.time_ns),
        all_to_all_busbw_gbps: w(1).and_then(|w| w.busbw_gbps),
    })
}

pub fn run(cat: &Catalog) -> Result<Demo> {
    let fabrics = SCENARIOS.iter().map(|(f, t)| plan_text(t, f, cat)).collect::<Result<Vec<_>, _>>()?;
    let rows = compare_rows(&fabrics);
    // The four simulations are independent: run them side by side (results in order).
    let simulated = std::thread::scope(|sc| {
        let handles: Vec<_> = SCENARIOS.iter().map(|(f, t)| sc.spawn(move || simulate_demo(f, t, cat))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a demo simulation panicked"))))
            .collect::<Result<Vec<_>>>()
    })?;
    let verdict = verdict(&fabrics, &simulated);
    Ok(Demo {
        fabrics,
        rows,
        simulated,
        verdict,
        inference: crate::infer::demo(cat)?,
        multisite_training: crate::multisite::demo(cat)?,
        scheduling: crate::schedule::demo(cat)?,
    })
}
