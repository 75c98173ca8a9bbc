//! `meshway demo`: the plain data the binary gathers (plans, simulated collectives, the
//! inference placement, the two-site training summary) and its text, with a verdict drawn
//! from the numbers.

use crate::format::{dollars, gbps0, km, ms3, pct, pct_signed, pct_signed0, rate, time};
use crate::table::Table;
use crate::{compare_text, CompareRow};
use meshway_fabric::plan::FabricReport;
use meshway_infer::place::{PlacementReport, Plan};
use meshway_sim::multisite::{BreakEven, Summary};
use meshway_units::Bytes;
use serde::Serialize;

/// Everything `meshway demo` shows (and `meshway demo --json` prints).
#[derive(Debug, Serialize)]
pub struct Demo {
    pub fabrics: Vec<FabricReport>,
    pub rows: Vec<CompareRow>,
    pub simulated: Vec<DemoSim>,
    pub verdict: Vec<String>,
    pub inference: DemoInference,
    pub multisite_training: Summary,
    /// The placement policies on one trace of jobs.
    pub scheduling: meshway_sched::ScheduleReport,
}

/// Simulated collectives on one demo fabric.
#[derive(Debug, Serialize)]
pub struct DemoSim {
    pub name: String,
    pub routing: String,
    pub all_reduce_ns: Option<u64>,
    pub all_reduce_busbw_gbps: Option<f64>,
    /// The algorithm and protocol the tuner picked ("double-binary-tree, simple").
    pub all_reduce_algorithm: Option<String>,
    pub all_to_all_ns: Option<u64>,
    pub all_to_all_busbw_gbps: Option<f64>,
}

/// The demo's inference section: central versus edge placement for the embedded example.
#[derive(Debug, Serialize)]
pub struct DemoInference {
    pub scenario: String,
    pub placement: PlacementReport,
}

/// Sentences drawn from the reports (never canned numbers): the cheapest full-bisection
/// design against the others, then each multi-site design's DCI; then, when any ran, the
/// fastest and slowest simulated all-reduce.
pub fn verdict(rs: &[FabricReport], simulated: &[DemoSim]) -> Vec<String> {
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
                "{} costs {} ({}) but delivers {:.2}x full bisection ({}): traffic across its upper tiers can get as little as 1/{:.1} of the bandwidth (the simulated collectives above show what they lose).",
                r.name,
                dollars(r.bom.total_cost_usd),
                pct_signed0(r.bom.total_cost_usd / best.bom.total_cost_usd - 1.0),
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
    let ran = || simulated.iter().filter(|s| s.all_reduce_ns.is_some());
    if let (Some(fast), Some(slow)) = (ran().min_by_key(|s| s.all_reduce_ns), ran().max_by_key(|s| s.all_reduce_ns)) {
        if let (Some(a), Some(b)) = (fast.all_reduce_ns, slow.all_reduce_ns) {
            v.push(format!(
                "Simulated 1 GiB all-reduce: {} is fastest at {}; {} takes {} ({:.1}x).",
                fast.name,
                time(a),
                slow.name,
                time(b),
                b as f64 / a.max(1) as f64
            ));
        }
    }
    v
}

/// The `meshway demo` text.
pub fn demo_text(d: &Demo) -> String {
    let mut o = String::from("meshway demo: 1,024 GPUs on 400 Gbps NICs, four designs (scenarios in examples/)\n\n");
    o.push_str(&compare_text(&d.fabrics));
    o.push_str("\nSimulated collectives (flow-level, the scenario's routing): all-reduce of 1 GiB over all GPUs, algorithm and protocol picked by the tuner; all-to-all of 256 MiB per GPU among the first 256\n");
    let mut t = Table::new(&["fabric", "routing", "all-reduce", "busbw", "picked", "all-to-all", "busbw"]);
    let gb = |v: Option<f64>| v.map_or_else(|| "-".to_string(), gbps0);
    let tm = |v: Option<u64>| v.map_or_else(|| "failed".to_string(), time);
    for s in &d.simulated {
        t.row(vec![
            s.name.clone(),
            s.routing.clone(),
            tm(s.all_reduce_ns),
            gb(s.all_reduce_busbw_gbps),
            s.all_reduce_algorithm.clone().unwrap_or_else(|| "-".into()),
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
    o.push_str(&inference_text(&d.inference));
    o.push_str(&multisite_training_text(&d.multisite_training));
    o.push_str(&scheduling_line(&d.scheduling));
    o.push_str("\nDetails: meshway plan examples/<name>.toml; machine-readable: meshway demo --json\n");
    o
}

/// The demo's inference section: the plans side by side and one sentence comparing them.
pub fn inference_text(d: &DemoInference) -> String {
    let r = &d.placement;
    let mut o = format!(
        "\nInference: {} regions, 1 simulated minute per plan ({}; meshway place for the full run)\n\n",
        r.plans.first().map_or(0, |p| p.regions.len()),
        d.scenario
    );
    o.push_str(&crate::infer::plans_table(r));
    let get = |n: &str| r.plans.iter().find(|p| p.name == n);
    if let (Some(c), Some(e)) = (get("all-central"), get("all-edge")) {
        let met = |p: &Plan| p.regions.iter().filter(|x| x.met).count();
        o.push_str(&format!(
            "  all-central costs ${:.0}/h and meets {} of {} regions; all-edge ${:.0}/h and meets {}.",
            c.cost_usd_per_hour,
            met(c),
            c.regions.len(),
            e.cost_usd_per_hour,
            met(e)
        ));
        if let Some(p) = get("optimized") {
            o.push_str(&format!(
                " Optimized: ${:.0}/h ({} vs all-central), {} of {} regions.",
                p.cost_usd_per_hour,
                pct_signed0(p.cost_usd_per_hour / c.cost_usd_per_hour - 1.0),
                met(p),
                p.regions.len()
            ));
        }
        o.push('\n');
    }
    o
}

/// The demo's two-site training line: the step, its cost over one site and the break-even
/// distances at the catalog's budget.
pub fn multisite_training_text(d: &Summary) -> String {
    let at = |b: &BreakEven| match b.outcome.as_str() {
        "at-zero" => "even at 0 km".to_string(),
        "beyond" => format!("nowhere up to {}", km(b.below_m.unwrap_or(0))),
        _ => format!("beyond {}", km(b.below_m.unwrap_or(0))),
    };
    format!(
        "\nTwo-site training (meshway multisite examples/two-site-training.toml)\n  {}: a 3D-parallel step ({}) takes {}, {} over one site; \
         cross-site DP exceeds {} of the step {} with a site-hierarchical all-reduce, {} with a flat ring.\n",
        d.scenario,
        d.job,
        ms3(d.step_ns),
        pct_signed(d.step_ns as f64 / d.one_site_step_ns.max(1) as f64 - 1.0),
        pct(d.break_even.budget),
        at(&d.break_even),
        at(&d.flat_break_even)
    )
}

/// `meshway demo --html`: the four designs drawn by tiers, the simulated all-reduce and
/// all-to-all times side by side, and the text report with its verdict.
pub fn demo_html(d: &Demo) -> String {
    use crate::svg::{bar_chart, esc, page};
    let fmt_time = |v: f64| crate::format::time(v.max(0.0).round() as u64);
    let mut body = String::new();
    let ar: Vec<(String, f64)> =
        d.simulated.iter().filter_map(|s| Some((s.name.clone(), s.all_reduce_ns? as f64))).collect();
    if let Some(svg) = bar_chart("All-reduce of 1 GiB over all GPUs (simulated)", &ar, &fmt_time) {
        body.push_str("<h2>Simulated collectives</h2>\n");
        body.push_str(&svg);
    }
    // The designs' bills of materials on one cost scale, as they are compared.
    let scale = d.fabrics.iter().flat_map(|f| f.bom.lines.iter()).map(|l| l.cost_usd).fold(f64::MIN_POSITIVE, f64::max);
    for f in &d.fabrics {
        body.push_str(&format!("<h2>{}</h2>\n", esc(&f.name)));
        body.push_str(&crate::plan_charts(f, None, scale));
    }
    let r = &d.inference.placement;
    let cost: Vec<(String, f64)> = r.plans.iter().map(|p| (p.name.clone(), p.cost_usd_per_hour)).collect();
    let title = format!("Inference ({}): GPU cost per hour of each placement", d.inference.scenario);
    if let Some(svg) = bar_chart(&title, &cost, &|v| crate::dollars(v)) {
        body.push_str("<h2>Inference placement</h2>\n");
        body.push_str(&svg);
    }
    if let Some(svg) = crate::infer::placement_map(r) {
        body.push_str(&svg);
    }
    let jct: Vec<(String, f64)> =
        d.scheduling.policies.iter().map(|p| (p.policy.name().to_string(), p.mean_jct_s * 1e9)).collect();
    let title = format!("Scheduling {} jobs: mean job completion time per policy", d.scheduling.jobs);
    if let Some(svg) = bar_chart(&title, &jct, &fmt_time) {
        body.push_str("<h2>Scheduling</h2>\n");
        body.push_str(&svg);
    }
    body.push_str("<h2>Report</h2>\n<pre>");
    body.push_str(&esc(&demo_text(d)));
    body.push_str("</pre>\n");
    page("meshway demo", &body)
}

/// The demo's scheduling line: each policy's mean job completion time and slowdown on the
/// same jobs, and which does best.
pub fn scheduling_line(r: &meshway_sched::ScheduleReport) -> String {
    let parts: Vec<String> = r
        .policies
        .iter()
        .map(|p| format!("{} {} ({:.2}x)", p.policy.name(), crate::schedule::dur(p.mean_jct_s), p.mean_slowdown))
        .collect();
    let best = r
        .policies
        .iter()
        .min_by(|a, b| a.mean_jct_s.total_cmp(&b.mean_jct_s).then(a.mean_slowdown.total_cmp(&b.mean_slowdown)));
    format!(
        "\nScheduling: {} jobs on {} GPUs (meshway schedule examples/{}.toml), mean job completion time (mean slowdown from sharing links): {}{}\n",
        r.jobs,
        crate::format::thousands(r.gpus),
        r.scenario,
        parts.join(", "),
        best.map_or(String::new(), |b| format!("; best: {}", b.policy.name()))
    )
}
