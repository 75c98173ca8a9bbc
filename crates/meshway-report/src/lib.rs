//! Every output of meshway: aligned text tables for people, JSON (documents and lines) and CSV
//! for programs, for plan, compare, simulate, infer, place, multisite, demo, ping, perf, trace,
//! history and testbed. Numbers are formatted by [`format`](mod@format) only. Library code returns strings;
//! the binary prints them.

use meshway_fabric::plan::FabricReport;
use meshway_units::{Bytes, Meters, Nanos};
use serde::Serialize;
use std::fmt::Write;

pub mod demo;
pub mod format;
pub mod infer;
pub mod measure;
pub mod multisite;
pub mod schedule;
pub mod sim;
pub mod sites;
pub mod svg;
pub mod table;
pub mod testbed;
pub mod traffic;
pub mod validate;
pub use format::{dollars, rate, thousands, watts};
use format::{gpus, share};
use table::Table;

/// A JSON document, pretty-printed, with a final newline (every `--json`).
pub fn json<T: Serialize + ?Sized>(v: &T) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    Ok(s)
}

/// One JSON object on one line, with its newline (`--ndjson`).
pub fn json_line<T: Serialize + ?Sized>(v: &T) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string(v)?;
    s.push('\n');
    Ok(s)
}

/// The text a CSV writer over a `Vec` wrote. Writing into memory cannot fail, and the writer
/// was given `&str` fields, so the bytes are UTF-8.
pub(crate) fn csv_text(w: csv::Writer<Vec<u8>>) -> String {
    let bytes = w.into_inner().map_err(|e| e.into_error()).unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// The first line: family, GPUs, hosts, NIC rate, planes, sites.
fn plan_header(o: &mut String, r: &FabricReport) {
    let _ = writeln!(
        o,
        "{} ({}): {} GPUs in {} hosts, {} NIC per GPU{}{}",
        r.name,
        r.family,
        thousands(r.gpus),
        thousands(r.hosts),
        rate(r.nic_bps),
        if r.planes > 1 { format!(", {} planes", r.planes) } else { String::new() },
        if r.sites.is_empty() { String::new() } else { format!(", sites {}", r.sites.join(", ")) }
    );
    if let Some(s) = &r.scale_up {
        let _ = writeln!(
            o,
            "Scale-up: {} NVLink domains of {} GPUs ({} hosts each), {} per GPU each way, {} per domain \
             both ways; {} {} ({} per domain), {} NVLink links ({} per GPU). Traffic inside a domain stays on \
             NVLink; \"hosts\" below means domains.",
            thousands(s.domains),
            s.gpus_per_domain,
            s.hosts_per_domain,
            rate(s.nvlink_per_gpu_bps),
            rate(s.domain_bps.saturating_mul(2)),
            thousands(s.switch_trays),
            s.switch_model,
            s.trays_per_domain,
            thousands(s.nvlink_links),
            s.links_per_gpu
        );
    }
    o.push('\n');
}

/// Switches per tier, then links per class.
fn plan_switches(o: &mut String, r: &FabricReport) {
    let mut t =
        Table::new(&["tier", "switches", "models", "ports used", "ports free", "down", "up", "oversubscription"]);
    for tier in &r.tiers {
        let models: Vec<String> = tier
            .models
            .iter()
            .map(|(m, c)| if tier.models.len() > 1 { format!("{m} x{c}") } else { m.clone() })
            .collect();
        t.row(vec![
            tier.name.clone(),
            thousands(tier.switches),
            models.join(", "),
            thousands(tier.ports_used),
            thousands(tier.ports_free),
            if tier.down_bps > 0 { rate(tier.down_bps) } else { "-".into() },
            if tier.up_bps > 0 { rate(tier.up_bps) } else { "-".into() },
            oversub_cell(tier),
        ]);
    }
    let _ = writeln!(o, "Switches ({} excluding NVLink switches)", thousands(r.switches));
    o.push_str(&t.render());
    o.push('\n');
    let mut t = Table::new(&["links", "count", "rate", "capacity", "length"]);
    for l in &r.links {
        let len = if l.length_mm_min == l.length_mm_max {
            Meters(l.length_mm_min).to_string()
        } else {
            format!("{}-{}", Meters(l.length_mm_min), Meters(l.length_mm_max))
        };
        t.row(vec![l.class.clone(), thousands(l.count), rate(l.rate_bps), rate(l.capacity_bps), len]);
    }
    o.push_str(&t.render());
    o.push('\n');
}

/// Bisection bandwidth, structural and by max-flow.
fn plan_bisection(o: &mut String, r: &FabricReport) {
    let b = &r.bisection;
    if b.side_a_gpus.min(b.side_b_gpus) == 0 {
        let _ = writeln!(o, "Bisection: none, the fabric has one GPU\n");
        return;
    }
    let _ =
        writeln!(o, "Bisection, split {} ({} | {} GPUs)", b.split, thousands(b.side_a_gpus), thousands(b.side_b_gpus));
    if let Some(s) = b.structural_bps {
        let agree = if s == b.maxflow_bps { "confirmed by max-flow" } else { "max-flow differs" };
        let _ = writeln!(o, "  structural  {}  ({agree})", rate(s));
    }
    let _ = writeln!(
        o,
        "  max-flow    {}  = {:.2} x full bisection, {} per GPU of the smaller side",
        rate(b.maxflow_bps),
        b.full_ratio,
        rate(b.per_gpu_bps)
    );
    o.push('\n');
}

/// Hops, equal-cost paths and zero-load latency between hosts.
fn plan_paths(o: &mut String, r: &FabricReport) {
    let p = &r.paths;
    let reached: u64 = p.hop_histogram.iter().map(|(_, c)| c).sum();
    let _ = writeln!(
        o,
        "Paths between GPUs of different hosts ({})",
        if p.sampled {
            format!(
                "sampled: {} source GPUs x all destinations, {} pairs",
                p.sources,
                thousands(p.pairs.saturating_sub(p.same_host_pairs))
            )
        } else {
            format!("all {} ordered pairs", thousands(p.pairs.saturating_sub(p.same_host_pairs)))
        }
    );
    let hops: Vec<String> = p.hop_histogram.iter().map(|(h, c)| format!("{h}: {}", share(*c, reached))).collect();
    let _ =
        writeln!(o, "  switch hops     {}  (diameter {}, mean {:.2})", hops.join("  "), p.diameter_hops, p.mean_hops);
    let paths: Vec<String> =
        p.path_count_histogram.iter().map(|(n, c)| format!("{}: {}", thousands(*n), share(*c, reached))).collect();
    let _ = writeln!(o, "  equal-cost paths {}", paths.join("  "));
    let _ = writeln!(
        o,
        "  zero-load latency min {}  mean {}  max {}  (switch latency + fibre + one {} packet)",
        Nanos(p.latency_min_ns),
        Nanos(p.latency_mean_ns),
        Nanos(p.latency_max_ns),
        Bytes(p.mtu_bytes)
    );
    if p.same_host_pairs > 0 {
        let _ = writeln!(o, "  same-host pairs (NVLink): {}", thousands(p.same_host_pairs));
    }
    o.push('\n');
}

/// The bill of materials with power and cost.
fn plan_bom(o: &mut String, r: &FabricReport) {
    let mut t = Table::new(&["bill of materials", "kind", "count", "power", "cost"]);
    for l in &r.bom.lines {
        t.row(vec![l.item.clone(), l.kind.clone(), thousands(l.count), watts(l.power_w), dollars(l.cost_usd)]);
    }
    t.row(vec![
        "total".into(),
        String::new(),
        String::new(),
        watts(r.bom.total_power_w),
        format!("{} ({} per GPU)", dollars(r.bom.total_cost_usd), dollars(r.bom.cost_per_gpu_usd)),
    ]);
    o.push_str(&t.render());
    let _ = writeln!(
        o,
        "{} cables; {} optical modules in switch cages, {} at hosts (a twin-port module serves two links)",
        thousands(r.bom.cables),
        thousands(r.bom.switch_modules),
        thousands(r.bom.host_modules)
    );
    o.push('\n');
}

/// Lossless headroom per tier.
fn plan_headroom(o: &mut String, r: &FabricReport) {
    let ll = &r.lossless;
    let _ = writeln!(
        o,
        "Lossless headroom ({}, {}): {}",
        ll.transport,
        if ll.required { "lossless required" } else { "lossy transport, for information" },
        ll.formula
    );
    let mut t = Table::new(&["scope", "switches", "worst link", "per port", "worst switch", "buffer", "verdict"]);
    for h in &ll.rows {
        t.row(vec![
            h.scope.clone(),
            thousands(h.switches),
            format!("{} {}", rate(h.rate_bps), Meters(h.link_length_mm)),
            Bytes(h.per_port_bytes).display_si(),
            Bytes(h.switch_total_bytes).display_si(),
            Bytes(h.buffer_bytes).display_si(),
            if h.feasible { "ok".into() } else { "INFEASIBLE".into() },
        ]);
    }
    o.push_str(&t.render());
    o.push('\n');
}

/// Single points of failure and degraded bisection.
fn plan_resilience(o: &mut String, r: &FabricReport) {
    let rs = &r.resilience;
    let _ = writeln!(o, "Single points of failure (network graph, NVLink excluded; {} component(s))", rs.components);
    if rs.switch_spofs.is_empty() && rs.link_spofs.is_empty() {
        let _ = writeln!(o, "  none: no single switch or link cuts any GPU off");
    }
    for s in &rs.switch_spofs {
        let _ = writeln!(
            o,
            "  {} {} switches: each cuts off up to {}",
            thousands(s.count),
            s.element,
            gpus(s.max_gpus_isolated)
        );
    }
    for s in &rs.link_spofs {
        let _ = writeln!(
            o,
            "  {} {} links: each cuts off up to {}",
            thousands(s.count),
            s.element,
            gpus(s.max_gpus_isolated)
        );
    }
    for d in &rs.degradation {
        let _ = writeln!(
            o,
            "  losing {} ({}): bisection {} (-{:.2}%)",
            d.element,
            d.removed,
            rate(d.bisection_bps),
            d.loss_pct
        );
    }
}

/// Warnings, when there are any.
fn plan_warnings(o: &mut String, r: &FabricReport) {
    if !r.warnings.is_empty() {
        o.push('\n');
        let _ = writeln!(o, "Warnings");
        for w in &r.warnings {
            let _ = writeln!(o, "  ! {w}");
        }
    }
}

/// The `meshway plan` text report, section by section.
pub fn plan_text(r: &FabricReport) -> String {
    let mut o = String::new();
    for section in [
        plan_header,
        plan_switches,
        plan_bisection,
        plan_paths,
        plan_bom,
        plan_headroom,
        plan_resilience,
        plan_warnings,
    ] {
        section(&mut o, r);
    }
    o
}

/// Which way is better for a compared row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Better {
    Higher,
    Lower,
    None,
}

/// One row of a side-by-side comparison.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    pub metric: String,
    pub better: Better,
    pub values: Vec<f64>,
    pub shown: Vec<String>,
    /// Indices of the best fabric(s) on this row.
    pub best: Vec<usize>,
}

/// A row; a NaN value (a figure the fabric does not have) is never ranked (`null` in JSON).
fn row(metric: &str, better: Better, values: Vec<f64>, shown: Vec<String>) -> CompareRow {
    let best = match better {
        Better::None => Vec::new(),
        _ => {
            let pick = values.iter().copied().filter(|v| !v.is_nan()).fold(None, |acc: Option<f64>, v| match acc {
                None => Some(v),
                Some(a) => Some(if (better == Better::Higher) == (v > a) { v } else { a }),
            });
            match pick {
                Some(b) if values.iter().any(|v| !v.is_nan() && (v - b).abs() > 1e-9 * b.abs().max(1.0)) => values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| (*v - b).abs() <= 1e-9 * b.abs().max(1.0))
                    .map(|(i, _)| i)
                    .collect(),
                _ => Vec::new(),
            }
        }
    };
    CompareRow { metric: metric.to_string(), better, values, shown, best }
}

/// The rows of `meshway compare`.
/// `meshway plan --html`: the fabric drawn by tiers (switches, models, capacity down and
/// up, oversubscription, the links between tiers), or for several sites (`sites`, from
/// [`sites::site_layout`]) each site's own tiers with the DCI spans between them, the bill of
/// materials by cost, and the text report, in one self-contained page.
pub fn plan_html(r: &FabricReport, sites: Option<&crate::sites::SiteLayout>) -> String {
    let mut body = plan_charts(r, sites, f64::MIN_POSITIVE);
    body.push_str("<h2>Report</h2>\n<pre>");
    body.push_str(&svg::esc(&plan_text(r)));
    body.push_str("</pre>\n");
    svg::page(&format!("meshway plan: {}", r.name), &body)
}

/// `meshway compare --html`: each fabric drawn by tiers with its bill of materials (every
/// fabric's on one cost scale, so equal lengths are equal costs), then the comparison table.
/// `sites`: each fabric's site layout (as [`plan_html`]), in the order of `rs`.
pub fn compare_html(rs: &[FabricReport], sites: &[Option<crate::sites::SiteLayout>]) -> String {
    let mut body = String::new();
    let scale = rs.iter().flat_map(|r| r.bom.lines.iter()).map(|l| l.cost_usd).fold(f64::MIN_POSITIVE, f64::max);
    for (i, r) in rs.iter().enumerate() {
        body.push_str(&format!("<h2>{}</h2>\n", svg::esc(&r.name)));
        body.push_str(&plan_charts(r, sites.get(i).and_then(Option::as_ref), scale));
    }
    body.push_str("<h2>Comparison</h2>\n<pre>");
    body.push_str(&svg::esc(&compare_text(rs)));
    body.push_str("</pre>\n");
    let names: Vec<&str> = rs.iter().map(|r| r.name.as_str()).collect();
    svg::page(&format!("meshway compare: {}", names.join(", ")), &body)
}

/// The tier diagram (per site with its DCI when `sites` is given) and the bill of materials
/// of one fabric, its bars scaled to at least `bom_scale` dollars at full width.
pub(crate) fn plan_charts(r: &FabricReport, sites: Option<&crate::sites::SiteLayout>, bom_scale: f64) -> String {
    use svg::{bar_chart_scaled, tier_diagram};
    // NVLink switches stay inside hosts: the GPU box says so rather than drawing a tier.
    let nvlink = r.tiers.iter().any(|t| t.level == 0 && t.switches > 0);
    let mut tiers: Vec<&meshway_fabric::plan::TierReport> =
        r.tiers.iter().filter(|t| t.switches > 0 && t.level > 0).collect();
    tiers.sort_by_key(|t| std::cmp::Reverse(t.level));
    let boxes: Vec<(String, String)> = tiers
        .iter()
        .map(|t| {
            let models: Vec<String> = t.models.iter().map(|(m, n)| format!("{n} x {m}")).collect();
            let over = t.oversubscription.map_or_else(String::new, |o| format!(", {o:.2}:1"));
            (
                format!("{}: {} switches", t.name, thousands(t.switches)),
                format!(
                    "{}; down {}{}{over}",
                    models.join(", "),
                    rate(t.down_bps),
                    if t.up_bps > 0 { format!(" up {}", rate(t.up_bps)) } else { String::new() }
                ),
            )
        })
        .chain(std::iter::once((
            format!("{} GPUs in {} hosts", thousands(r.gpus), thousands(r.hosts)),
            format!(
                "NIC {}{}{}",
                rate(r.nic_bps),
                if r.planes > 1 { format!(", {} planes", r.planes) } else { String::new() },
                match (&r.scale_up, nvlink) {
                    // NVL72: the trays serve a rack of hosts, not each host.
                    (Some(su), _) => format!(
                        ", NVLink domains of {} GPUs ({} hosts, {} switch trays each)",
                        su.gpus_per_domain, su.hosts_per_domain, su.trays_per_domain
                    ),
                    (None, true) => ", NVLink switches inside each host".to_string(),
                    (None, false) => String::new(),
                }
            ),
        )))
        .collect();
    // Links between tier i and the one below: the network link classes, top down.
    let mut classes: Vec<&meshway_fabric::plan::LinkReport> =
        r.links.iter().filter(|l| l.class != "nvlink" && l.class != "dci").collect();
    classes.reverse();
    let links: Vec<String> =
        classes.iter().map(|l| format!("{} x {} ({})", thousands(l.count), rate(l.rate_bps), l.class)).collect();
    // A built-in single-site family stacks its tiers one on another, one link class between
    // each two: the connectors can carry them. Sites (each with its own tiers and border
    // leaves beside the leaves) and hand-listed fabrics (links between any nodes) cannot be
    // drawn that way: their tiers are boxes and their links listed under them.
    let stacked = r.sites.is_empty() && r.family != "custom" && links.len() + 1 == boxes.len();
    let mut body = String::new();
    let title = format!("{}: {} fabric", r.name, r.family);
    if let Some(svg) = sites.filter(|_| !r.sites.is_empty()).and_then(|l| {
        let names: Vec<&str> = l.sites.iter().map(|s| s.name.as_str()).collect();
        crate::sites::site_diagram(&format!("{}: sites {} joined by DCI", r.name, names.join(", ")), l)
    }) {
        // Each site's own tiers and the DCI between them: the merged tiers would stack
        // border leaves over the GPUs and chain one site's family onto another's.
        body.push_str(&svg);
    } else if let Some(svg) =
        // Sites without their layout are not drawn: their merged tiers are no one structure.
        tier_diagram(&title, &boxes, if stacked { &links } else { &[] }).filter(|_| r.sites.is_empty())
    {
        body.push_str(&svg);
        if !stacked && !links.is_empty() {
            body.push_str(&format!("<p class=\"note\">Links: {}</p>\n", svg::esc(&links.join(", "))));
        }
    }
    let mut bom: Vec<(String, f64)> = r
        .bom
        .lines
        .iter()
        .map(|l| {
            (if l.count > 0 { format!("{} x {}", thousands(l.count), l.item) } else { l.item.clone() }, l.cost_usd)
        })
        .collect();
    bom.sort_by(|a, b| b.1.total_cmp(&a.1));
    bom.truncate(12);
    if let Some(svg) = bar_chart_scaled("Bill of materials by cost", &bom, &|v| dollars(v), bom_scale) {
        body.push_str(&svg);
    }
    body
}

pub fn compare_rows(rs: &[FabricReport]) -> Vec<CompareRow> {
    let col = |f: &dyn Fn(&FabricReport) -> f64, show: &dyn Fn(&FabricReport) -> String| -> (Vec<f64>, Vec<String>) {
        (rs.iter().map(f).collect(), rs.iter().map(show).collect())
    };
    let mut rows = Vec::new();
    let mut add = |m: &str, b: Better, f: &dyn Fn(&FabricReport) -> f64, s: &dyn Fn(&FabricReport) -> String| {
        let (v, sh) = col(f, s);
        rows.push(row(m, b, v, sh));
    };
    // Totals that grow with the fabric (switches, bisection, optics, power, cost, switches
    // that cut GPUs off) are ranked only between fabrics of as many GPUs: a smaller fabric
    // is not better for having fewer switches. Ratios and per-GPU rows are ranked always.
    let same_size = same_size(rs);
    let total = |b: Better| if same_size { b } else { Better::None };
    add("GPUs", Better::None, &|r| r.gpus as f64, &|r| thousands(r.gpus));
    add(
        "switch tiers",
        Better::Lower,
        &|r| r.tiers.iter().filter(|t| t.level > 0).map(|t| t.level).max().unwrap_or(0) as f64,
        &|r| r.tiers.iter().filter(|t| t.level > 0).map(|t| t.name.as_str()).collect::<Vec<_>>().join("/"),
    );
    add("switches", total(Better::Lower), &|r| r.switches as f64, &|r| thousands(r.switches));
    add("bisection", total(Better::Higher), &|r| r.bisection.maxflow_bps as f64, &|r| rate(r.bisection.maxflow_bps));
    add("x full bisection", Better::Higher, &|r| (r.bisection.full_ratio * 1000.0).round() / 1000.0, &|r| {
        format!("{:.2}", r.bisection.full_ratio)
    });
    add("worst oversubscription", Better::Lower, &|r| worst_oversub(r), &|r| format!("{:.2}:1", worst_oversub(r)));
    // Paths between GPUs: a fabric of one GPU has none, and its zeros are not the best.
    let paired = |r: &FabricReport, v: f64| if r.gpus >= 2 { v } else { f64::NAN };
    add("diameter (switch hops)", Better::Lower, &|r| paired(r, f64::from(r.paths.diameter_hops)), &|r| {
        r.paths.diameter_hops.to_string()
    });
    add("mean switch hops", Better::Lower, &|r| paired(r, (r.paths.mean_hops * 100.0).round() / 100.0), &|r| {
        format!("{:.2}", r.paths.mean_hops)
    });
    // Not ranked: parallel links multiply the count (a 3:1 three-tier tree or two sites over
    // a thin DCI had more than a non-blocking leaf-spine).
    add("max equal-cost paths", Better::None, &|r| paired(r, max_paths(r) as f64), &|r| thousands(max_paths(r)));
    add("zero-load latency max", Better::Lower, &|r| paired(r, r.paths.latency_max_ns as f64), &|r| {
        Nanos(r.paths.latency_max_ns).to_string()
    });
    // Optical modules and copper cables (the bill's pluggables; fibre runs are not counted).
    add("optics and copper cables", total(Better::Lower), &|r| optics(r) as f64, &|r| thousands(optics(r)));
    add("power", total(Better::Lower), &|r| r.bom.total_power_w.round(), &|r| watts(r.bom.total_power_w));
    add("cost", total(Better::Lower), &|r| r.bom.total_cost_usd.round(), &|r| dollars(r.bom.total_cost_usd));
    add("network cost per GPU", Better::Lower, &|r| r.bom.cost_per_gpu_usd.round(), &|r| {
        dollars(r.bom.cost_per_gpu_usd)
    });
    add("switches that cut GPUs off", total(Better::Lower), &|r| spof_switches(r) as f64, &|r| {
        thousands(spof_switches(r))
    });
    add(
        "lossless headroom",
        Better::Higher,
        &|r| f64::from(u8::from(r.lossless.rows.iter().all(|h| h.feasible))),
        &|r| {
            if r.lossless.rows.iter().all(|h| h.feasible) {
                "ok".into()
            } else {
                "infeasible".into()
            }
        },
    );
    rows
}

/// The fabrics all have as many GPUs (their totals compare).
fn same_size(rs: &[FabricReport]) -> bool {
    rs.windows(2).all(|w| w[0].gpus == w[1].gpus)
}

/// The worst switch's oversubscription (below 1:1 counts as 1:1, non-blocking).
fn worst_oversub(r: &FabricReport) -> f64 {
    r.tiers.iter().filter_map(|t| t.worst_switch_oversubscription.or(t.oversubscription)).fold(1.0, f64::max)
}

/// A tier's oversubscription, and its worst switch's when that differs ("2.00:1, worst 3.00:1").
fn oversub_cell(t: &meshway_fabric::plan::TierReport) -> String {
    match (t.oversubscription, t.worst_switch_oversubscription) {
        (None, _) => "-".into(),
        (Some(x), Some(w)) if format!("{w:.2}") != format!("{x:.2}") => format!("{x:.2}:1, worst {w:.2}:1"),
        (Some(x), _) => format!("{x:.2}:1"),
    }
}
fn max_paths(r: &FabricReport) -> u64 {
    r.paths.path_count_histogram.iter().map(|(n, _)| *n).max().unwrap_or(0)
}
/// Optical modules and copper cable assemblies (a twin-port module or a breakout counts once).
fn optics(r: &FabricReport) -> u64 {
    let copper: u64 = r
        .bom
        .lines
        .iter()
        .filter(|l| matches!(l.kind.as_str(), "copper cable" | "breakout cable" | "management cable"))
        .map(|l| l.count)
        .sum();
    r.bom.switch_modules + r.bom.host_modules + copper
}
fn spof_switches(r: &FabricReport) -> u64 {
    r.resilience.switch_spofs.iter().map(|s| s.count).sum()
}

/// The `meshway compare --json` document: the reports and the compared rows.
pub fn compare_json(rs: &[FabricReport]) -> Result<String, serde_json::Error> {
    json(&serde_json::json!({ "fabrics": rs, "rows": compare_rows(rs) }))
}

/// The `meshway compare` text: one column per fabric, the best value per row marked `*`.
pub fn compare_text(rs: &[FabricReport]) -> String {
    let mut head = vec!["".to_string()];
    // A column is as wide as its header: a long name is cut in the middle, keeping its start
    // and its end (names that differ only past 40 characters read the same cut at the end;
    // the JSON keeps them whole).
    head.extend(rs.iter().map(|r| {
        let n = r.name.chars().count();
        if n > 40 {
            r.name.chars().take(20).chain(['…']).chain(r.name.chars().skip(n - 19)).collect()
        } else {
            r.name.clone()
        }
    }));
    let head_refs: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut t = Table::new(&head_refs);
    for r in compare_rows(rs) {
        let mut cells = vec![r.metric.clone()];
        for (i, s) in r.shown.iter().enumerate() {
            cells.push(if r.best.contains(&i) { format!("{s} *") } else { s.clone() });
        }
        t.row(cells);
    }
    let mut o = t.render();
    o.push_str(if same_size(rs) {
        "(* best on the row)\n"
    } else {
        "(* best on the row; the fabrics differ in GPUs, so totals (switches, bisection, optics, power, cost, \
         switches that cut GPUs off) are not ranked: see the ratios and per-GPU rows)\n"
    });
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_marking() {
        let r = row("x", Better::Lower, vec![3.0, 1.0, 1.0], vec![]);
        assert_eq!(r.best, vec![1, 2]);
        let r = row("x", Better::Higher, vec![3.0, 1.0], vec![]);
        assert_eq!(r.best, vec![0]);
        let r = row("x", Better::Higher, vec![2.0, 2.0], vec![]);
        assert!(r.best.is_empty(), "a tie everywhere marks nothing");
        // A figure a fabric lacks (NaN) is never the best, nor does it break a tie.
        let r = row("x", Better::Lower, vec![f64::NAN, 3.0, 5.0], vec![]);
        assert_eq!(r.best, vec![1]);
        let r = row("x", Better::Lower, vec![f64::NAN, 3.0, 3.0], vec![]);
        assert!(r.best.is_empty());
    }
}
