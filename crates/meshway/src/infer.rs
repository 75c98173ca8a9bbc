//! `meshway infer` (simulate inference traffic), `meshway place` (GPU placement) and the
//! inference section of `meshway demo`: flags and glue; the text is meshway-report's.

use crate::{emit, json, load_catalog, Common};
use anyhow::{Context, Result};
use meshway_fabric::Catalog;
use meshway_infer::place::{place, PlaceOptions};
use meshway_infer::sim::{simulate, Run};
use meshway_infer::{spec_from_text, InferSpec, Policy};
use meshway_report::demo::DemoInference;
use meshway_report::infer::{infer_text, place_text};
use meshway_units::Nanos;
use std::path::PathBuf;

pub const INFER_HELP: &str = "Examples:
  meshway infer examples/inference-edge-vs-central.toml
  meshway infer examples/inference-edge-vs-central.toml --policy nearest \\
      --duration 1h --seed 7
  meshway infer examples/inference-edge-vs-central.toml --fail-site \\
      us-central --json
  meshway infer examples/inference-edge-vs-central.toml --fail-site \\
      edge-ashburn@5min
  # prefill at the edge, decode central
  meshway infer examples/inference-disaggregated.toml
  # paths from each region's and site's location, routed over cable landings
  meshway infer examples/inference-global.toml

Simulates every request: arrivals per region (Poisson, bursty, daily profile
or a closed loop of users), routing to a site, queueing, and the site's
servers running engine steps (continuous batching, KV-cache admission, chunked
prefill; step times from the model's shape on its GPUs, see
docs/inference.md), KV caches moving over DCI links from prefill to decode
sites, and the network both ways (fiber km x 4.9 us/km, hops, a fixed per-path
cost, last mile; fiber from a `distance` x the route factor, or, given
`location` on both ends, routed over the catalog's cable landings). Reports
time to first token, time per output token and end-to-end latency at
p50/p90/p99 per region against its objectives, tokens per second, GPU, batch
and KV-cache use per site, and the KV transfers per DCI link. Same seed, same
output.";

pub const PLACE_HELP: &str = "Examples:
  meshway place examples/inference-edge-vs-central.toml
  meshway place examples/inference-global.toml --n-plus-1 --json

Chooses how many GPUs go to each candidate site (one whose max-gpus holds at
least one server) so every region meets its p99 time-to-first-token (and
time-per-output-token) objectives at least cost (a server's capacity comes from
its KV cache and the strictest TPOT objective it serves): every subset of sites
is sized with each region at its nearest open site and the target utilization;
the subsets that pass are simulated cheapest first (and repaired where a region
misses) until no cheaper one is left. Compares all-central, all-edge and
optimized, and simulates the optimized plan with each site and each region's
route failed in turn.

Exit status: 0 when the optimized plan meets every objective (with --n-plus-1,
also under each single failure simulated); 1 when no site may host, no subset
passes the sizing rules, the best plan found still misses, or no region sent a
request in its simulation (untested: too short a --duration) (the report is
printed all the same, and stderr says why); 2 on bad input.";

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
    /// Random seed (default: the scenario's `seed`, else 1).
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

fn load(file: &std::path::Path, cat: &Catalog) -> Result<InferSpec> {
    let text =
        meshway_units::files::read_text(file).with_context(|| format!("cannot read scenario {}", file.display()))?;
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
    spec.check_run_size(run.duration_ns).map_err(|m| match a.duration {
        Some(_) => anyhow::anyhow!("--duration: {m}"),
        None => anyhow::anyhow!("{}: inference.duration: {m}", a.file.display()),
    })?;
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
                if at.0 >= run.duration_ns {
                    anyhow::bail!(
                        "--fail-site {f:?}: expected a time within the run's {} of arrivals, got {at}",
                        meshway_units::Nanos(run.duration_ns)
                    );
                }
                (n, Some(at.0))
            }
            None => (f.as_str(), None),
        };
        let i = spec.sites.iter().position(|s| s.name == name).with_context(|| {
            let names: Vec<&str> = spec.sites.iter().map(|s| s.name.as_str()).collect();
            format!("--fail-site: unknown site {name:?}, expected one of {}", names.join(", "))
        })?;
        if run.site_down[i] || run.site_fail_at[i].is_some() {
            anyhow::bail!("--fail-site {f:?}: site {name:?} is already failed by an earlier --fail-site");
        }
        match at {
            None => run.site_down[i] = true,
            Some(t) => run.site_fail_at[i] = Some(t),
        }
    }
    let rep = simulate(&spec, &run);
    if let Some(p) = &a.common.html {
        crate::output::write_html(
            p,
            &meshway_report::infer::infer_html(&rep),
            &crate::inputs(&[&a.file], &a.common.catalog),
        )?;
        eprintln!("wrote {}", p.display());
    }
    emit(&if a.common.json { json(&rep)? } else { infer_text(&rep) })
}

/// Simulations per plan in `place`: the sized plan, then up to five repairs, each adding a
/// server where a region missed (at its prefill site for a late first token, at its decode
/// site for slow tokens: up to two per missing region).
const SIMULATIONS_PER_PLAN: u32 = 6;

pub fn run_place(a: PlaceArgs) -> Result<()> {
    let cat = load_catalog(&a.common.catalog)?;
    let spec = load(&a.file, &cat)?;
    let opt = PlaceOptions {
        n_plus_1: a.n_plus_1,
        duration_ns: a.duration.map_or(spec.duration.0, |d| d.0),
        seed: a.seed.unwrap_or(spec.seed),
        repair_rounds: if a.no_sim { 0 } else { SIMULATIONS_PER_PLAN },
        failure_check: !a.no_sim,
    };
    anyhow::ensure!(
        opt.duration_ns > 0 && opt.duration_ns <= MAX_DURATION_NS,
        "--duration: expected more than 0 and at most 366 days"
    );
    if !a.no_sim {
        spec.check_run_size(opt.duration_ns).map_err(|m| match a.duration {
            Some(_) => anyhow::anyhow!("--duration: {m}"),
            None => anyhow::anyhow!("{}: inference.duration: {m}", a.file.display()),
        })?;
    }
    let cand = meshway_infer::place::candidates(&spec);
    if cand.len() > meshway_infer::place::MAX_CANDIDATES {
        let names: Vec<&str> = cand.iter().map(|&s| spec.sites[s].name.as_str()).collect();
        anyhow::bail!(
            "{}: {} candidate sites ({}); place searches every subset of at most {}: give gpus = 0 and max-gpus = 0 to the sites that may not host",
            a.file.display(),
            cand.len(),
            names.join(", "),
            meshway_infer::place::MAX_CANDIDATES
        );
    }
    // Each plan is minutes of simulated requests (the example: 21 runs of 600,000, about
    // 30 s): a progress line on terminals.
    let line = |_: u64, _: u64, what: &str, secs: f64| format!("\r  place: simulating {what}  {secs:.0}s");
    let rep = crate::progress::Progress::new(&line)
        .run(|bar| meshway_infer::place::place_with(&spec, &opt, &|what| bar.update(0, 0, what)));
    if let Some(p) = &a.common.html {
        crate::output::write_html(
            p,
            &meshway_report::infer::place_html(&rep),
            &crate::inputs(&[&a.file], &a.common.catalog),
        )?;
        eprintln!("wrote {}", p.display());
    }
    emit(&if a.common.json { json(&rep)? } else { place_text(&rep) })?;
    if let Some(why) = rep.unmet() {
        eprintln!("{}: {why}", a.file.display());
        std::process::exit(1);
    }
    Ok(())
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
        repair_rounds: SIMULATIONS_PER_PLAN,
        failure_check: false,
    };
    Ok(DemoInference { scenario: DEMO_SCENARIO.0.to_string(), placement: place(&spec, &opt) })
}
