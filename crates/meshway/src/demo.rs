//! `meshway demo`: the embedded default scenarios compared, with a verdict drawn from the
//! numbers.

use anyhow::Result;
use meshway_fabric::{plan::FabricReport, plan_text, Catalog};
use meshway_report::{compare_rows, compare_text, dollars, rate, CompareRow};
use meshway_units::Bytes;
use serde::Serialize;

/// The embedded scenarios: (file name, text).
pub const SCENARIOS: [(&str, &str); 4] = [
    ("examples/three-tier-1024.toml", include_str!("../../../examples/three-tier-1024.toml")),
    ("examples/leaf-spine-1024.toml", include_str!("../../../examples/leaf-spine-1024.toml")),
    ("examples/rail-optimized-1024.toml", include_str!("../../../examples/rail-optimized-1024.toml")),
    ("examples/two-site-100km.toml", include_str!("../../../examples/two-site-100km.toml")),
];

#[derive(Debug, Serialize)]
pub struct Demo {
    pub fabrics: Vec<FabricReport>,
    pub rows: Vec<CompareRow>,
    pub simulated: Vec<DemoSim>,
    pub verdict: Vec<String>,
    pub inference: crate::infer::DemoInference,
    pub multisite_training: meshway_sim::multisite::Summary,
}

/// Simulated collectives on one demo fabric.
#[derive(Debug, Serialize)]
pub struct DemoSim {
    pub name: String,
    pub routing: String,
    pub all_reduce_ns: Option<u64>,
    pub all_reduce_busbw_gbps: Option<f64>,
    pub all_to_all_ns: Option<u64>,
    pub all_to_all_busbw_gbps: Option<f64>,
}

/// The collectives every demo fabric runs: NCCL-style ring all-reduce of 1 GiB over all
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
        all_to_all_ns: w(1).and_then(|w| w.time_ns),
        all_to_all_busbw_gbps: w(1).and_then(|w| w.busbw_gbps),
    })
}

pub fn run(cat: &Catalog) -> Result<Demo> {
    let fabrics = SCENARIOS.iter().map(|(f, t)| plan_text(t, f, cat)).collect::<Result<Vec<_>, _>>()?;
    let rows = compare_rows(&fabrics);
    let simulated = SCENARIOS.iter().map(|(f, t)| simulate_demo(f, t, cat)).collect::<Result<Vec<_>>>()?;
    let mut verdict = verdict(&fabrics);
    if let (Some(fast), Some(slow)) = (
        simulated.iter().filter(|s| s.all_reduce_ns.is_some()).min_by_key(|s| s.all_reduce_ns),
        simulated.iter().filter(|s| s.all_reduce_ns.is_some()).max_by_key(|s| s.all_reduce_ns),
    ) {
        if let (Some(a), Some(b)) = (fast.all_reduce_ns, slow.all_reduce_ns) {
            verdict.push(format!(
                "Simulated 1 GiB ring all-reduce: {} is fastest at {}; {} takes {} ({:.1}x).",
                fast.name,
                meshway_report::sim::time(a),
                slow.name,
                meshway_report::sim::time(b),
                b as f64 / a.max(1) as f64
            ));
        }
    }
    Ok(Demo {
        fabrics,
        rows,
        simulated,
        verdict,
        inference: crate::infer::demo(cat)?,
        multisite_training: crate::multisite::demo(cat)?,
    })
}

/// Sentences drawn from the reports (never canned numbers).
fn verdict(rs: &[FabricReport]) -> Vec<String> {
    let mut v = Vec::new();
    let single: Vec<&FabricReport> = rs.iter().filter(|r| r.sites.is_empty()).collect();
    let full: Vec<&&FabricReport> = single.iter().filter(|r| r.bisection.full_ratio >= 0.999).collect();
    if let Some(best) = full.iter().min_by(|a, b| a.bom.total_cost_usd.total_cmp(&b.bom.total_cost_usd)) {
        v.push(format!(
            "{} gives full bisection ({}) for {}, {} per GPU, at most {} switch hops.",
            best.name,
            rate(best.bisection.maxflow_bps),
            dollars(best.bom.total_cost_usd),
            dollars(best.bom.cost_per_gpu_usd),
            best.paths.diameter_hops
        ));
        for r in single.iter().filter(|r| r.bisection.full_ratio < 0.999) {
            v.push(format!(
                "{} costs {} ({:+.0}%) but delivers {:.2}x full bisection ({}): collectives that cross its upper tiers run up to {:.1}x slower.",
                r.name,
                dollars(r.bom.total_cost_usd),
                100.0 * (r.bom.total_cost_usd / best.bom.total_cost_usd - 1.0),
                r.bisection.full_ratio,
                rate(r.bisection.maxflow_bps),
                1.0 / r.bisection.full_ratio.max(1e-9)
            ));
        }
    }
    for r in rs.iter().filter(|r| !r.sites.is_empty()) {
        let dci: u64 = r.links.iter().filter(|l| l.class == "dci").map(|l| l.capacity_bps).sum();
        let rows: Vec<_> = r.lossless.rows.iter().filter(|h| h.scope.starts_with("dci")).collect();
        let mut s = format!(
            "{} joins {} over {} of DCI: bisection {} ({:.3}x full).",
            r.name,
            r.sites.join(" and "),
            rate(dci),
            rate(r.bisection.maxflow_bps),
            r.bisection.full_ratio
        );
        for h in rows {
            s.push_str(&format!(
                " Lossless RoCE across it needs {} of headroom per port ({} per border switch) against {} of buffer: {}.",
                Bytes(h.per_port_bytes).display_si(),
                Bytes(h.switch_total_bytes).display_si(),
                Bytes(h.buffer_bytes).display_si(),
                if h.feasible { "feasible" } else { "infeasible, use lossy transport with end-to-end congestion control across the span" }
            ));
        }
        v.push(s);
    }
    v
}

pub fn text(d: &Demo) -> String {
    let mut o = String::from("meshway demo: 1,024 GPUs on 400 Gbps NICs, four designs (scenarios in examples/)\n\n");
    o.push_str(&compare_text(&d.fabrics));
    o.push_str("\nSimulated collectives (flow-level, the scenario's routing): ring all-reduce of 1 GiB over all GPUs; all-to-all of 256 MiB per GPU among the first 256\n");
    let mut t = meshway_report::table::Table::new(&["fabric", "routing", "all-reduce", "busbw", "all-to-all", "busbw"]);
    let gb = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |g| format!("{g:.0} Gbps"));
    let tm = |v: Option<u64>| v.map_or_else(|| "failed".to_string(), meshway_report::sim::time);
    for s in &d.simulated {
        t.row(vec![
            s.name.clone(),
            s.routing.clone(),
            tm(s.all_reduce_ns),
            gb(s.all_reduce_busbw_gbps),
            tm(s.all_to_all_ns),
            gb(s.all_to_all_busbw_gbps),
        ]);
    }
    o.push_str(&t.render());
    o.push_str("\nVerdict\n");
    for s in &d.verdict {
        o.push_str("  ");
        o.push_str(s);
        o.push('\n');
    }
    o.push_str(&crate::infer::demo_text(&d.inference));
    o.push_str(&crate::multisite::demo_text(&d.multisite_training));
    o.push_str("\nDetails: meshway plan examples/<name>.toml; machine-readable: meshway demo --json\n");
    o
}
