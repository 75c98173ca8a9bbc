//! `meshway multisite`: a training job spread over sites joined by DCI links, against
//! distance and DCI capacity, with the break-even distance of cross-site data parallelism.

use anyhow::{Context, Result};
use meshway_fabric::{Catalog, Scenario};
use meshway_report::rate;
use meshway_report::table::Table;
use meshway_sim::multisite::{analyze, BreakEven, Options, Report};
use meshway_units::{Bytes, Meters};
use std::path::PathBuf;

pub const HELP: &str = "Examples:
  meshway multisite examples/two-site-training.toml
  meshway multisite examples/two-site-training.toml --budget 5% --json
  meshway multisite examples/two-site-training.toml --distances 0km,50km,100km,500km --wavelengths 4,8,16

Takes a multi-site scenario ([[site]] tables joined by [[dci]] links) and its first training
workload (or all-reduce collective). Data-parallel gradients are all-reduced hierarchically
by site: reduce-scatter inside each site, all-reduce of each shard across the sites over the
DCI, all-gather inside each site; the flat ring across sites is shown for comparison.

Reports the step at the scenario's own DCI, the same job on one site holding every GPU (the
first site's family), the step against DCI distance (every span set to each distance; a
span beyond its optic's reach gets a coherent optic that reaches) with the planner's
lossless headroom check per span, the step against DCI wavelengths, and the distance beyond
which cross-site DP costs more than --budget of the step ((step - one-site step) / step),
found by bisection to --resolution. Distance only adds fibre latency in this model
(flow-level: no congestion-control window or loss effects).";

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

/// Runs the analysis on a scenario's text.
pub fn analyze_text(text: &str, file: &str, cat: &Catalog, opts: &Options) -> Result<Report> {
    let s = Scenario::parse(text, file)?;
    Ok(analyze(&s, cat, opts)?)
}

pub fn run(args: &Args, cat: &Catalog) -> Result<String> {
    let file = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("cannot read scenario {file}"))?;
    let d = Options::from_catalog(cat)?;
    let opts = Options {
        distances: args.distances.clone().unwrap_or(d.distances),
        wavelengths: args.wavelengths.clone().unwrap_or(d.wavelengths),
        budget: args.budget.unwrap_or(d.budget),
        resolution: args.resolution.unwrap_or(d.resolution),
        max_distance: args.max_distance.unwrap_or(d.max_distance),
        seed: args.seed,
        tolerance: None,
    };
    let r = analyze_text(&text, &file, cat, &opts)?;
    Ok(if args.json { crate::json(&r)? } else { text_report(&r) })
}

pub fn ms(ns: u64) -> String {
    format!("{:.3}ms", ns as f64 / 1e6)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

pub fn km(m: u64) -> String {
    if m.is_multiple_of(1000) {
        format!("{}km", m / 1000)
    } else {
        format!("{:.3}km", m as f64 / 1000.0)
    }
}

fn pct2(x: f64) -> String {
    format!("{:.4}%", x * 100.0)
}

/// The break-even sentence for `b` (`what` names the all-reduce).
pub fn break_even_text(b: &BreakEven, what: &str) -> String {
    let budget = pct(b.budget);
    let pct = pct2;
    match b.outcome.as_str() {
        "at-zero" => format!(
            "{what}: cross-site DP costs {} of the step even at 0 km (over the {budget} budget): add DCI capacity",
            pct(b.share_at_distance.unwrap_or(0.0))
        ),
        "beyond" => format!(
            "{what}: cross-site DP stays within {budget} of the step up to {} ({} there), the search limit",
            km(b.below_m.unwrap_or(0)),
            pct(b.share_below.unwrap_or(0.0))
        ),
        _ => format!(
            "{what}: cross-site DP exceeds {budget} of the step beyond {} ({} at {}, {} at {}; {} simulations)",
            km(b.below_m.unwrap_or(0)),
            pct(b.share_below.unwrap_or(0.0)),
            km(b.below_m.unwrap_or(0)),
            pct(b.share_at_distance.unwrap_or(0.0)),
            km(b.distance_m.unwrap_or(0)),
            b.evaluations
        ),
    }
}

pub fn text_report(r: &Report) -> String {
    let mut out = String::new();
    let sites: Vec<String> = r.sites.iter().map(|s| format!("{} ({} GPUs)", s.name, s.gpus)).collect();
    out.push_str(&format!("meshway multisite: {} - {}\n", r.scenario, sites.join(", ")));
    for s in &r.spans {
        out.push_str(&format!(
            "  dci {}-{}: {}, {} x {} = {}\n",
            s.a,
            s.b,
            km(s.distance_m),
            s.wavelengths,
            s.optic,
            rate(s.capacity_bps)
        ));
    }
    out.push_str(&format!(
        "workload {}: {} on {} GPUs, {} {}\n\n",
        r.workload,
        r.job,
        r.gpus,
        r.transport,
        r.routing.name()
    ));
    let mut t = Table::new(&["DP all-reduce", "two sites", "one site", "over one site"]);
    let over = |x: u64, base: u64| format!("{:+.1}%", (x as f64 / base.max(1) as f64 - 1.0) * 100.0);
    t.row(vec!["site-hierarchical".into(), ms(r.step_ns), ms(r.one_site_step_ns), over(r.step_ns, r.one_site_step_ns)]);
    t.row(vec![
        "flat ring".into(),
        ms(r.flat_step_ns),
        ms(r.one_site_flat_step_ns),
        over(r.flat_step_ns, r.one_site_flat_step_ns),
    ]);
    out.push_str(&t.render());
    out.push_str("one site: every GPU in one fabric of the first site's family; site-hierarchical there reduces over the same rank groups\n\n");
    let spans: Vec<String> =
        r.by_distance.first().map_or(Vec::new(), |d| d.headroom.iter().map(|h| h.span.clone()).collect());
    let mut head: Vec<String> = ["distance", "fibre rtt", "optic", "step", "cross-site", "flat ring", "cross-site"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for s in &spans {
        head.push(format!("headroom {s}"));
    }
    let head_refs: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut t = Table::new(&head_refs);
    for d in &r.by_distance {
        let mut optics = d.optics.clone();
        optics.dedup();
        let mut row = vec![
            km(d.distance_m),
            ms(d.dci_rtt_ns),
            optics.join("/"),
            ms(d.step_ns),
            pct(d.cross_site_share),
            ms(d.flat_step_ns),
            pct(d.flat_cross_site_share),
        ];
        for h in &d.headroom {
            row.push(format!(
                "{} / {} {}",
                Bytes(h.switch_total_bytes).display_si(),
                Bytes(h.buffer_bytes).display_si(),
                if h.feasible { "ok" } else { "infeasible" }
            ));
        }
        t.row(row);
    }
    out.push_str("Step against DCI distance (every span; cross-site = (step - one-site step) / step; headroom: worst border switch need / buffer)\n");
    out.push_str(&t.render());
    out.push('\n');

    let mut t = Table::new(&["wavelengths", "dci capacity", "step", "cross-site", "flat ring", "cross-site"]);
    for c in &r.by_capacity {
        t.row(vec![
            c.wavelengths.to_string(),
            rate(c.dci_bps),
            ms(c.step_ns),
            pct(c.cross_site_share),
            ms(c.flat_step_ns),
            pct(c.flat_cross_site_share),
        ]);
    }
    out.push_str("Step against DCI capacity (every span, at the scenario's distances)\n");
    out.push_str(&t.render());
    out.push('\n');
    out.push_str(&break_even_text(&r.break_even, "site-hierarchical"));
    out.push('\n');
    out.push_str(&break_even_text(&r.flat_break_even, "flat ring"));
    out.push('\n');
    out
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

pub fn demo_text(d: &meshway_sim::multisite::Summary) -> String {
    let at = |b: &BreakEven| match b.outcome.as_str() {
        "at-zero" => "even at 0 km".to_string(),
        "beyond" => format!("nowhere up to {}", km(b.below_m.unwrap_or(0))),
        _ => format!("beyond {}", km(b.below_m.unwrap_or(0))),
    };
    format!(
        "\nTwo-site training (meshway multisite examples/two-site-training.toml)\n  {}: a 3D-parallel step ({}) takes {}, {:+.1}% over one site; \
         cross-site DP exceeds {} of the step {} with a site-hierarchical all-reduce, {} with a flat ring.\n",
        d.scenario,
        d.job,
        ms(d.step_ns),
        (d.step_ns as f64 / d.one_site_step_ns.max(1) as f64 - 1.0) * 100.0,
        pct(d.break_even.budget),
        at(&d.break_even),
        at(&d.flat_break_even)
    )
}
