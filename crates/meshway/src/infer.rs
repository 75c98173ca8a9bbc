//! `meshway infer` (simulate inference traffic), `meshway place` (GPU placement) and the
//! inference section of `meshway demo`.

use crate::{emit, json, load_catalog, Common};
use anyhow::{Context, Result};
use meshway_fabric::Catalog;
use meshway_infer::place::{place, PlaceOptions, PlacementReport};
use meshway_infer::sim::{simulate, InferReport, Run};
use meshway_infer::{spec_from_text, InferSpec, Policy};
use meshway_report::table::Table;
use meshway_report::thousands;
use meshway_units::Nanos;
use serde::Serialize;
use std::path::PathBuf;

pub const INFER_HELP: &str = "Examples:
  meshway infer examples/inference-edge-vs-central.toml
  meshway infer examples/inference-edge-vs-central.toml --policy nearest --duration 1h --seed 7
  meshway infer examples/inference-edge-vs-central.toml --fail-site us-central --json
  meshway infer examples/inference-edge-vs-central.toml --fail-site edge-ashburn@5min

Simulates every request: arrivals per region (Poisson, bursty or daily profile), routing to a
site, queueing and continuous batching on the site's servers, and the network both ways (fiber
km x 4.9 us/km, hops x per-hop latency, last mile). Reports time to first token and end-to-end
latency at p50/p90/p99 per region against its objective, tokens per second, and GPU
utilization per site. Same seed, same output.";

pub const PLACE_HELP: &str = "Examples:
  meshway place examples/inference-edge-vs-central.toml
  meshway place examples/inference-edge-vs-central.toml --n-plus-1 --json

Chooses how many GPUs go to each candidate site (max-gpus > 0) so every region meets its p99
time-to-first-token objective at least cost: every subset of sites is tried with each region
at its nearest open site, sized to the target utilization, then simulated (and repaired where
a region misses). Compares all-central, all-edge and optimized, and simulates the optimized
plan with each site and each region's route failed in turn.";

#[derive(clap::Args, Debug)]
pub struct InferArgs {
    /// The scenario file (TOML) with [[model]], [[site]] and [[region]] tables.
    file: PathBuf,
    /// Random seed (default: the scenario's `seed`, else 1).
    #[arg(long)]
    seed: Option<u64>,
    /// Simulated time of arrivals, e.g. 10min, 1h (default: [inference] duration).
    #[arg(long)]
    duration: Option<Nanos>,
    /// Routing policy: nearest, least-loaded or latency-aware (default: the scenario's).
    #[arg(long)]
    policy: Option<String>,
    /// Take a site out of service for the whole run, or from a time on with SITE@TIME
    /// (e.g. eu-north@5min: its requests are sent again elsewhere after the catalog's
    /// failover-detect time). Repeatable.
    #[arg(long, value_name = "SITE[@TIME]")]
    fail_site: Vec<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
pub struct PlaceArgs {
    /// The scenario file (TOML); sites with max-gpus are candidates.
    file: PathBuf,
    /// Size every site so the objectives hold when any one site fails.
    #[arg(long)]
    n_plus_1: bool,
    /// Simulated time for each check (default: [inference] duration).
    #[arg(long)]
    duration: Option<Nanos>,
    #[arg(long)]
    seed: Option<u64>,
    /// Sizing rules only: no simulation, repair or failure checks.
    #[arg(long)]
    no_sim: bool,
    #[command(flatten)]
    common: Common,
}

/// The longest run accepted, as in the scenario's `[inference] duration`.
const MAX_DURATION_NS: u64 = 366 * 86_400 * 1_000_000_000;

fn load(file: &PathBuf, cat: &Catalog) -> Result<InferSpec> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read scenario {}", file.display()))?;
    Ok(spec_from_text(&text, &file.display().to_string(), cat)?)
}

pub fn run_infer(a: InferArgs) -> Result<()> {
    let cat = load_catalog(&a.common.catalog)?;
    let spec = load(&a.file, &cat)?;
    let mut run = Run::new(&spec);
    if let Some(s) = a.seed {
        run.seed = s;
    }
    if let Some(d) = a.duration {
        anyhow::ensure!(d.0 > 0 && d.0 <= MAX_DURATION_NS, "--duration: expected more than 0 and at most 366 days");
        run.duration_ns = d.0;
    }
    if let Some(p) = &a.policy {
        run.policy = Policy::parse(p)
            .with_context(|| format!("--policy: expected nearest, least-loaded or latency-aware, got {p:?}"))?;
    }
    for f in &a.fail_site {
        let (name, at) = match f.split_once('@') {
            Some((n, t)) => {
                let at: Nanos = t
                    .parse()
                    .with_context(|| format!("--fail-site {f:?}: expected SITE@TIME such as eu-north@5min"))?;
                (n, Some(at.0))
            }
            None => (f.as_str(), None),
        };
        let i = spec.sites.iter().position(|s| s.name == name).with_context(|| {
            let names: Vec<&str> = spec.sites.iter().map(|s| s.name.as_str()).collect();
            format!("--fail-site: unknown site {name:?}, expected one of {}", names.join(", "))
        })?;
        match at {
            None => run.site_down[i] = true,
            Some(t) => run.site_fail_at[i] = Some(t),
        }
    }
    let rep = simulate(&spec, &run);
    emit(&if a.common.json { json(&rep)? } else { infer_text(&rep) })
}

pub fn run_place(a: PlaceArgs) -> Result<()> {
    let cat = load_catalog(&a.common.catalog)?;
    let spec = load(&a.file, &cat)?;
    let opt = PlaceOptions {
        n_plus_1: a.n_plus_1,
        duration_ns: a.duration.map_or(spec.duration.0, |d| d.0),
        seed: a.seed.unwrap_or(spec.seed),
        repair_rounds: if a.no_sim { 0 } else { 4 },
        failure_check: !a.no_sim,
    };
    anyhow::ensure!(
        opt.duration_ns > 0 && opt.duration_ns <= MAX_DURATION_NS,
        "--duration: expected more than 0 and at most 366 days"
    );
    let rep = place(&spec, &opt);
    emit(&if a.common.json { json(&rep)? } else { place_text(&rep) })
}

fn ms(ns: u64) -> String {
    format!("{:.1}ms", ns as f64 / 1e6)
}

fn dur(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    let whole = ns.is_multiple_of(1_000_000_000);
    if whole && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if whole && s.is_multiple_of(60) {
        format!("{}min", s / 60)
    } else {
        Nanos(ns).to_string()
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// The per-region and per-site tables of one simulation.
pub fn infer_text(r: &InferReport) -> String {
    let mut o = format!(
        "meshway infer: {} - {} regions, {} sites, policy {}, {} of arrivals, seed {}\n{} requests, {} events\n\n",
        r.scenario,
        r.regions.len(),
        r.sites.len(),
        r.policy.name(),
        dur(r.duration_ns),
        r.seed,
        thousands(r.requests),
        thousands(r.events)
    );
    let mut t = Table::new(&[
        "region",
        "site",
        "rtt",
        "ttft p50",
        "p90",
        "p99",
        "objective",
        "met",
        "e2e p50",
        "p99",
        "tokens/s",
        "per user",
    ]);
    for x in &r.regions {
        let site = if x.main_site_share < 0.995 && !x.main_site.is_empty() {
            format!("{} {:.0}%", x.main_site, 100.0 * x.main_site_share)
        } else {
            x.main_site.clone()
        };
        t.row(vec![
            x.name.clone(),
            match (x.unserved, x.retried) {
                (0, 0) => site,
                (0, t) => format!("{site} ({} retried)", thousands(t)),
                (u, _) => format!("{site} ({} unserved)", thousands(u)),
            },
            ms(x.rtt_ns),
            ms(x.ttft.p50_ns),
            ms(x.ttft.p90_ns),
            ms(x.ttft.p99_ns),
            ms(x.ttft_p99_objective_ns),
            if x.met { "yes".into() } else { format!("no {}", pct(x.attainment)) },
            format!("{:.2}s", x.e2e.p50_ns as f64 / 1e9),
            format!("{:.2}s", x.e2e.p99_ns as f64 / 1e9),
            format!("{:.0}", x.tokens_per_s),
            format!("{:.1}", x.stream_tokens_per_s),
        ]);
    }
    o.push_str(&t.render());
    o.push('\n');
    let mut t =
        Table::new(&["site", "tier", "gpus", "servers", "requests", "gpu util", "batch fill", "max queue", "$/hour"]);
    for s in &r.sites {
        t.row(vec![
            s.name.clone(),
            format!("{:?}", s.tier).to_lowercase(),
            if s.down { "down".into() } else { thousands(u64::from(s.gpus)) },
            thousands(u64::from(s.servers)),
            thousands(s.requests),
            pct(s.gpu_utilization),
            pct(s.batch_fill),
            thousands(s.max_queue),
            format!("{:.0}", f64::from(s.gpus) * s.gpu_hour_usd),
        ]);
    }
    o.push_str(&t.render());
    let met = r.regions.iter().filter(|x| x.met).count();
    o.push_str(&format!(
        "\n{met} of {} regions meet their p99 time-to-first-token objective; GPUs cost ${:.0} per hour.\n",
        r.regions.len(),
        r.cost_usd_per_hour
    ));
    let missed: Vec<String> = r
        .regions
        .iter()
        .filter(|x| !x.met)
        .map(|x| format!("{} (p99 {} vs {})", x.name, ms(x.ttft.p99_ns), ms(x.ttft_p99_objective_ns)))
        .collect();
    if !missed.is_empty() {
        o.push_str(&format!("Missed: {}.\n", missed.join(", ")));
    }
    o
}

/// The placement comparison as text.
pub fn place_text(r: &PlacementReport) -> String {
    let mut o = format!(
        "meshway place: {} - policy {}, target utilization {:.0}%{}\n{} subsets of {} candidate sites: {} pass the sizing rules, {} simulated\n\n",
        r.scenario,
        r.policy.name(),
        100.0 * r.target_utilization,
        if r.n_plus_1 { ", sized for N+1" } else { "" },
        r.subsets_evaluated,
        r.candidates.len(),
        r.subsets_feasible,
        r.subsets_simulated
    );
    o.push_str(&plans_table(r));
    for p in &r.plans {
        for v in &p.violations {
            o.push_str(&format!("  {}: {v}\n", p.name));
        }
    }
    if let Some(p) = r.plans.iter().find(|p| p.name == "optimized") {
        if p.repaired_servers > 0 {
            o.push_str(&format!(
                "  optimized: simulation added {} server(s) where a region missed (sized ${:.0}/h, final ${:.0}/h)\n",
                p.repaired_servers, p.sized_cost_usd_per_hour, p.cost_usd_per_hour
            ));
        }
    } else {
        o.push_str(if r.n_plus_1 {
            "\nNo placement passes the sizing rules with N+1: some region has no second site within its \
             objective, or a site would need more than max-gpus (see the reasons above).\n"
        } else {
            "\nNo placement passes the sizing rules: some region has no site within its objective, or a \
             site would need more than max-gpus (see the reasons above).\n"
        });
    }
    if !r.failures.is_empty() {
        o.push_str("\nOptimized plan under one failure (simulated)\n");
        let mut t = Table::new(&["failure", "holds", "worst region", "p99 ttft", "miss", "unserved"]);
        for f in &r.failures {
            t.row(vec![
                f.failure.clone(),
                if f.holds { "yes".into() } else { "no".into() },
                f.worst_region.clone(),
                if f.unserved > 0 { "-".into() } else { ms(f.worst_ttft_p99_ns) },
                if f.unserved > 0 {
                    "unserved".into()
                } else if f.miss_ns > 0 {
                    format!("+{}", ms(f.miss_ns))
                } else {
                    "-".into()
                },
                thousands(f.unserved),
            ]);
        }
        o.push_str(&t.render());
        o.push_str(&format!(
            "N+1: {}\n",
            if r.n_plus_1_holds {
                "holds for every single site and route failure".to_string()
            } else {
                let n = r.failures.iter().filter(|f| !f.holds).count();
                format!("{n} of {} single failures miss an objective (try meshway place --n-plus-1)", r.failures.len())
            }
        ));
    }
    o
}

fn plans_table(r: &PlacementReport) -> String {
    let mut head: Vec<String> = vec!["".into()];
    head.extend(r.plans.iter().map(|p| p.name.clone()));
    let head_ref: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut t = Table::new(&head_ref);
    for (i, s) in r.site_names.iter().enumerate() {
        let mut row = vec![format!("{s} GPUs")];
        row.extend(r.plans.iter().map(|p| thousands(u64::from(p.gpus[i]))));
        t.row(row);
    }
    let mut row = vec!["$/hour".to_string()];
    row.extend(r.plans.iter().map(|p| format!("{:.0}", p.cost_usd_per_hour)));
    t.row(row);
    if r.plans.iter().any(|p| p.simulated) {
        if let Some(first) = r.plans.iter().find(|p| p.simulated) {
            for (i, reg) in first.regions.iter().enumerate() {
                let mut row = vec![format!("{} p99 ttft", reg.name)];
                row.extend(r.plans.iter().map(|p| match p.regions.get(i) {
                    Some(x) => format!("{}{}", ms(x.ttft_p99_ns), if x.met { "" } else { " !" }),
                    None => "-".into(),
                }));
                t.row(row);
            }
        }
        let mut row = vec!["regions meeting objective".to_string()];
        row.extend(
            r.plans.iter().map(|p| format!("{} of {}", p.regions.iter().filter(|x| x.met).count(), p.regions.len())),
        );
        t.row(row);
    }
    t.render()
}

/// The demo's inference section: central versus edge placement for the embedded example.
#[derive(Debug, Serialize)]
pub struct DemoInference {
    pub scenario: String,
    pub placement: PlacementReport,
}

pub const DEMO_SCENARIO: (&str, &str) =
    ("examples/inference-edge-vs-central.toml", include_str!("../../../examples/inference-edge-vs-central.toml"));

pub fn demo(cat: &Catalog) -> Result<DemoInference> {
    let spec = spec_from_text(DEMO_SCENARIO.1, DEMO_SCENARIO.0, cat)?;
    // One simulated minute per plan keeps the demo quick; `meshway place` runs the full duration.
    let opt = PlaceOptions {
        n_plus_1: false,
        duration_ns: 60_000_000_000,
        seed: spec.seed,
        repair_rounds: 4,
        failure_check: false,
    };
    Ok(DemoInference { scenario: DEMO_SCENARIO.0.to_string(), placement: place(&spec, &opt) })
}

pub fn demo_text(d: &DemoInference) -> String {
    let r = &d.placement;
    let mut o = format!(
        "\nInference: {} regions, 1 simulated minute per plan ({}; meshway place for the full run)\n\n",
        r.plans.first().map_or(0, |p| p.regions.len()),
        d.scenario
    );
    o.push_str(&plans_table(r));
    let get = |n: &str| r.plans.iter().find(|p| p.name == n);
    if let (Some(c), Some(e)) = (get("all-central"), get("all-edge")) {
        let met = |p: &meshway_infer::place::Plan| p.regions.iter().filter(|x| x.met).count();
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
                " Optimized: ${:.0}/h ({:+.0}% vs all-central), {} of {} regions.",
                p.cost_usd_per_hour,
                100.0 * (p.cost_usd_per_hour / c.cost_usd_per_hour - 1.0),
                met(p),
                p.regions.len()
            ));
        }
        o.push('\n');
    }
    o
}
