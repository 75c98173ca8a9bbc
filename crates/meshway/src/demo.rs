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
    pub verdict: Vec<String>,
    pub inference: crate::infer::DemoInference,
}

pub fn run(cat: &Catalog) -> Result<Demo> {
    let fabrics = SCENARIOS.iter().map(|(f, t)| plan_text(t, f, cat)).collect::<Result<Vec<_>, _>>()?;
    let rows = compare_rows(&fabrics);
    let verdict = verdict(&fabrics);
    Ok(Demo { fabrics, rows, verdict, inference: crate::infer::demo(cat)? })
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
    o.push_str("\nVerdict\n");
    for s in &d.verdict {
        o.push_str("  ");
        o.push_str(s);
        o.push('\n');
    }
    o.push_str(&crate::infer::demo_text(&d.inference));
    o.push_str("\nDetails: meshway plan examples/<name>.toml; machine-readable: meshway demo --json\n");
    o
}
