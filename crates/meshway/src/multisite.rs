//! `meshway multisite`: a training job spread over sites joined by DCI links, against
//! distance and DCI capacity, with the break-even distance of cross-site data parallelism.

use anyhow::{Context, Result};
use meshway_fabric::{Catalog, Scenario};
use meshway_report::multisite::multisite_text;
use meshway_sim::multisite::{analyze_with, Options, Report};
use meshway_units::Meters;
use std::path::PathBuf;

pub const HELP: &str = "Examples:
  meshway multisite examples/two-site-training.toml
  meshway multisite examples/two-site-training.toml --budget 5% --json
  meshway multisite examples/two-site-training.toml --distances \\
      0km,50km,100km,500km
  meshway multisite examples/two-site-training.toml --wavelengths 4,8,16

Takes a multi-site scenario ([[site]] tables joined by [[dci]] links) and its
first training workload (or all-reduce collective). Data-parallel gradients
are all-reduced hierarchically by site: reduce-scatter inside each site,
all-reduce of each shard across the sites over the DCI, all-gather inside each
site; the flat ring across sites is shown for comparison.

Reports the step at the scenario's own DCI, the same job on one site holding
every GPU (the sites' fabric, which every site shares), the step against DCI
distance (every span set to each distance; a span beyond its optic's reach
gets a coherent optic that reaches) with the planner's lossless headroom check
per span, the step against DCI wavelengths, and the distance beyond which
cross-site DP costs more than --budget of the step ((step - one-site step) /
step), found by bisection to --resolution. Distance adds fibre latency, and
NCCL's window: a connection has at most its buffer in flight per round trip
(catalog [simulation] nccl-buffer, 4 MiB; nccl-p2p-window for pipeline sends),
so a long span bounds each connection's rate (flow-level: no transport
congestion control, PFC pause or loss effects).";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The multi-site scenario file (TOML) with a training or all-reduce [[workload]].
    pub file: PathBuf,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    /// DCI distances of the sweep, comma separated (default: the catalog's [multisite],
    /// 0 to 200 km by 25 km).
    #[arg(long, value_delimiter = ',', value_parser = parse_meters)]
    pub distances: Option<Vec<Meters>>,
    /// Wavelengths per DCI span of the capacity sweep, comma separated (default: the
    /// catalog's, 1,2,4,8,16,32).
    #[arg(long = "wavelengths", alias = "dci-capacity", value_delimiter = ',', value_parser = parse_count)]
    pub wavelengths: Option<Vec<u32>>,
    /// Share of the step cross-site data parallelism may cost ("10%" or 0.1; default: the
    /// catalog's, 10%).
    #[arg(long, value_parser = parse_budget)]
    pub budget: Option<f64>,
    /// Resolution of the break-even distance search (default: the catalog's, 1km).
    #[arg(long, value_parser = parse_meters)]
    pub resolution: Option<Meters>,
    /// Farthest distance the break-even search tries (default: the catalog's, 1000km; also
    /// capped by the catalog's longest coherent optic reach).
    #[arg(long, value_parser = parse_meters)]
    pub max_distance: Option<Meters>,
    /// Seed for ECMP hashing (default: the scenario's, else 1).
    #[arg(long)]
    pub seed: Option<u64>,
    /// A catalog file whose entries replace or add to the built-in catalog.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Also write a self-contained HTML report (step time against distance and capacity).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

fn parse_meters(s: &str) -> Result<Meters, String> {
    s.trim().parse::<Meters>().map_err(|e| format!("expected a distance like \"100km\": {e}"))
}

fn parse_count(x: &str) -> Result<u32, String> {
    match x.trim().parse::<u32>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(n),
        _ => Err(format!("expected a wavelength count from 1 to 4096, got {x:?}")),
    }
}

fn parse_budget(s: &str) -> Result<f64, String> {
    let (num, div) = match s.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (s, 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v / div > 0.0 && v / div < 1.0 => Ok(v / div),
        _ => Err(format!("expected a share such as \"10%\" or 0.1, between 0 and 100%, got {s:?}")),
    }
}

/// Runs the analysis on a scenario's text, with a progress line on stderr (terminals, runs
/// over two seconds).
fn analyze_shown(text: &str, file: &str, cat: &Catalog, opts: &Options) -> Result<Report> {
    let s = Scenario::parse(text, file)?;
    let line = |done: u64, _: u64, what: &str, secs: f64| {
        format!("\r  multisite: simulation {} ({what})  {secs:.0}s", done + 1)
    };
    let r = crate::progress::Progress::new(&line)
        .run(|bar| analyze_with(&s, cat, opts, &|done, what| bar.update(done, 0, what)));
    Ok(r?)
}

pub fn run(args: &Args, cat: &Catalog) -> Result<String> {
    let file = args.file.display().to_string();
    let text = meshway_units::files::read_text(&args.file).with_context(|| format!("cannot read scenario {file}"))?;
    let d = Options::from_catalog(cat)?;
    let opts = Options {
        distances: args.distances.clone().unwrap_or(d.distances),
        wavelengths: args.wavelengths.clone().unwrap_or(d.wavelengths),
        budget: args.budget.unwrap_or(d.budget),
        resolution: args.resolution.unwrap_or(d.resolution),
        max_distance: args.max_distance.unwrap_or(d.max_distance),
        seed: args.seed,
        tolerance: d.tolerance,
    };
    let r = analyze_shown(&text, &file, cat, &opts)?;
    if let Some(p) = &args.html {
        crate::output::write_html(
            p,
            &meshway_report::multisite::multisite_html(&r),
            &crate::inputs(&[&args.file], &args.catalog),
        )?;
        eprintln!("wrote {}", p.display());
    }
    Ok(if args.json { crate::json(&r)? } else { multisite_text(&r) })
}

/// The demo's two-site training scenario.
pub const DEMO_SCENARIO: (&str, &str) =
    ("examples/two-site-training.toml", include_str!("../../../examples/two-site-training.toml"));

/// The demo's two-site training line: the step, its cost over one site and the break-even
/// distances at the catalog's budget.
pub fn demo(cat: &Catalog) -> Result<meshway_sim::multisite::Summary> {
    let (file, text) = DEMO_SCENARIO;
    let s = Scenario::parse(text, file)?;
    let opts = Options::from_catalog(cat)?;
    Ok(meshway_sim::multisite::summary(&s, cat, &opts)?)
}
