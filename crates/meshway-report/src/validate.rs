//! Text output of `meshway validate`.

use crate::format::{pct, pct_signed, thousands};
use crate::table::Table;
use meshway_units::Bytes;
use meshway_validate::ValidationReport;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `meshway validate`: each row (published, meshway, error, why when outside), the groups
/// by operation, size band and scale, and the rows not run with the reason.
pub fn validate_text(r: &ValidationReport) -> String {
    let mut o = String::new();
    let mut t = Table::new(&["row", "op", "GPUs", "size", "algorithm (NCCL)", "published", "meshway", "error"]);
    for x in &r.rows {
        let mut algo = match &x.protocol {
            Some(p) => format!("{}/{p}", x.algorithm),
            None => x.algorithm.clone(),
        };
        if let Some(n) = &x.nccl_algorithm {
            let _ = write!(algo, " ({n})");
        }
        t.row(vec![
            x.id.clone(),
            x.op.clone(),
            x.gpus.to_string(),
            Bytes(x.size_bytes).to_string(),
            algo,
            match x.busbw_from_time {
                Some(b) => format!("{b:.2} GB/s*"),
                None => format!("{:.2} GB/s", x.published_busbw_gbytes_per_s),
            },
            format!("{:.2} GB/s", x.meshway_busbw_gbytes_per_s),
            pct_signed(x.error),
        ]);
    }
    let _ = writeln!(o, "Bus bandwidth, published (nccl-tests) against meshway");
    o.push_str(&t.render());
    let from_time: Vec<_> = r.rows.iter().filter_map(|x| x.busbw_from_time.map(|b| (x, b))).collect();
    if !from_time.is_empty() {
        let _ = writeln!(
            o,
            "* the row's published busbw disagrees with its published time by more than 2%: shown, and compared, from the time"
        );
        for (x, b) in from_time {
            let _ = writeln!(
                o,
                "  {}: published {:.2} GB/s, its time ({:.1} us) gives {b:.2} GB/s",
                x.id,
                x.published_busbw_gbytes_per_s,
                x.published_time_us.unwrap_or(0.0)
            );
        }
    }
    let outside: Vec<_> = r.rows.iter().filter(|x| x.why.is_some()).collect();
    if !outside.is_empty() {
        let _ = writeln!(o, "\nOutside {}: why", pct(meshway_validate::OUTSIDE));
        for x in outside {
            let _ = writeln!(o, "  {} ({}): {}", x.id, pct_signed(x.error), x.why.as_deref().unwrap_or(""));
        }
    }
    let mut g = Table::new(&["group", "size", "scale", "rows", "median |error|", "max |error|"]);
    for x in &r.groups {
        g.row(vec![
            x.op.clone(),
            x.size_band.to_string(),
            x.scale.to_string(),
            x.rows.to_string(),
            pct(x.median_abs_error),
            pct(x.max_abs_error),
        ]);
    }
    let _ = writeln!(o, "\nBy group");
    o.push_str(&g.render());
    if r.rows.is_empty() {
        let _ = writeln!(o, "no row ran: there is no error to report");
    } else {
        let _ = writeln!(
            o,
            "all {} rows: median |error| {}, max {}",
            r.rows.len(),
            pct(r.median_abs_error.unwrap_or(0.0)),
            pct(r.max_abs_error.unwrap_or(0.0))
        );
    }
    not_run(&mut o, r.skipped.iter().map(|s| s.why.as_str()));
    o
}

/// `meshway validate`, inference set: each row's published and simulated figures with the
/// error, the groups by setup, model and metric against the bound, and rows not run.
pub fn infer_validate_text(r: &meshway_validate::inference::InferValidation) -> String {
    let mut o = String::new();
    let mut t = Table::new(&["row", "model", "GPUs", "in/out", "load", "metric", "published", "meshway", "error"]);
    for x in &r.rows {
        for (i, f) in x.figures.iter().enumerate() {
            let first = i == 0;
            let cell = |s: String| if first { s } else { String::new() };
            t.row(vec![
                cell(format!("{}:{}", x.file, x.line)),
                cell(x.model.clone()),
                cell(format!("{} x {}", x.gpus, x.gpu)),
                cell(format!("{}/{}", x.input_tokens, x.output_tokens)),
                cell(x.load.clone()),
                f.metric.to_string(),
                format!("{:.1}", f.published),
                format!("{:.1}", f.meshway),
                pct_signed(f.error),
            ]);
        }
    }
    let _ = writeln!(o, "Serving, published against meshway");
    o.push_str(&t.render());
    let mut g = Table::new(&["setup", "model", "metric", "rows", "median |error|", "max |error|", "within bound"]);
    for x in &r.groups {
        g.row(vec![
            x.setup.clone(),
            x.model.clone(),
            x.metric.to_string(),
            x.rows.to_string(),
            pct(x.median_abs_error),
            pct(x.max_abs_error),
            format!("{} (bound {})", pct(x.within_bound), pct(meshway_validate::inference::bound(x.metric))),
        ]);
    }
    let _ = writeln!(o, "\nBy group");
    o.push_str(&g.render());
    outside_bound(&mut o, r);
    let _ = writeln!(o, "\nWhat each setup aligned");
    for s in &r.setups {
        let _ = writeln!(o, "  {}: {}", s.name, s.description);
        let _ = writeln!(o, "    model keys: {}", s.model);
        if let Some(src) = &s.source {
            let _ = writeln!(o, "    source: {src}");
        }
        if let Some(a) = &s.assumption {
            let _ = writeln!(o, "    assumed: {a}");
        }
    }
    not_run(&mut o, r.skipped.iter().map(|s| s.why.as_str()));
    if !r.wan.is_empty() {
        let mut t =
            Table::new(&["row", "from", "to", "great circle", "routed", "via", "published", "meshway", "error"]);
        for w in &r.wan {
            t.row(vec![
                format!("{}:{}", w.file, w.line),
                w.from.clone(),
                w.to.clone(),
                format!("{:.0} km", w.great_circle_km),
                format!("{:.0} km", w.routed_km),
                if w.via.is_empty() { "-".to_string() } else { w.via.join(" > ") },
                format!("{:.1} ms", w.published_ms),
                format!("{:.1} ms", w.meshway_ms),
                pct_signed(w.error),
            ]);
        }
        let _ = writeln!(
            o,
            "\nInter-region round trips, published against the path model (data centre to data centre: no last mile or access hops)"
        );
        o.push_str(&t.render());
        let mut g = Table::new(&["table", "pairs", "rows", "median |error|", "max |error|", "within 15%"]);
        for x in &r.wan_groups {
            g.row(vec![
                if x.setup == "wan-rtt" { "wan-rtt (fitted)".to_string() } else { format!("{} (held out)", x.setup) },
                x.model.clone(),
                x.rows.to_string(),
                pct(x.median_abs_error),
                pct(x.max_abs_error),
                pct(x.within_bound),
            ]);
        }
        o.push_str(&g.render());
    }
    o
}

/// The figures outside their bound, grouped by the reason `setups.toml` gives (those
/// without one last).
fn outside_bound(o: &mut String, r: &meshway_validate::inference::InferValidation) {
    use meshway_validate::inference::bound;
    let total: usize = r.rows.iter().map(|x| x.figures.len()).sum();
    let mut by_why: BTreeMap<(bool, &str), Vec<String>> = BTreeMap::new();
    for x in &r.rows {
        for f in x.figures.iter().filter(|f| f.error.abs() > bound(f.metric)) {
            let key = f.why.as_deref().map_or((true, "no reason known"), |w| (false, w));
            by_why.entry(key).or_default().push(format!("{}:{} {} {}", x.file, x.line, f.metric, pct_signed(f.error)));
        }
    }
    let n: usize = by_why.values().map(Vec::len).sum();
    if n == 0 {
        return;
    }
    let _ = writeln!(o, "\nOutside the bound ({n} of {total} figures)");
    for ((_, why), refs) in by_why {
        let _ = writeln!(o, "  {:>3}  {why}", refs.len());
        let mut line = String::new();
        for r in refs {
            if !line.is_empty() && line.len() + r.len() > 96 {
                let _ = writeln!(o, "       {}", line.trim_end_matches([',', ' ']));
                line.clear();
            }
            line.push_str(&r);
            line.push_str(", ");
        }
        let _ = writeln!(o, "       {}", line.trim_end_matches([',', ' ']));
    }
}

/// The rows not run, counted by reason.
fn not_run<'a>(o: &mut String, whys: impl Iterator<Item = &'a str>) {
    let mut by_why: BTreeMap<&str, usize> = BTreeMap::new();
    let mut total = 0;
    for w in whys {
        *by_why.entry(w).or_default() += 1;
        total += 1;
    }
    if total > 0 {
        let _ = writeln!(o, "\nNot run ({total} rows)");
        for (why, n) in by_why {
            let _ = writeln!(o, "  {n:>3}  {why}");
        }
    }
}

/// `meshway validate --html`: every collective row's published bus bandwidth against
/// meshway's on log-log axes (one colour per operation, the ±25% band dashed), then the
/// text of every set that ran.
pub fn validate_html(
    collectives: Option<&meshway_validate::ValidationReport>,
    plan: Option<&meshway_validate::plan::PlanValidation>,
    inference: Option<&meshway_validate::inference::InferValidation>,
    text: &str,
) -> String {
    use crate::svg::{agreement_chart, esc, page, Series};
    let mut body = String::new();
    if let Some(r) = collectives {
        let mut ops: Vec<&str> = r.rows.iter().map(|o| o.op.as_str()).collect();
        ops.sort_unstable();
        ops.dedup();
        let series: Vec<Series> = ops
            .iter()
            .map(|op| Series {
                name: (*op).to_string(),
                points: r
                    .rows
                    .iter()
                    .filter(|o| o.op == *op)
                    .map(|o| (collective_x(o), o.meshway_busbw_gbytes_per_s))
                    .collect(),
            })
            .collect();
        let title = format!(
            "meshway against {} published nccl-tests rows (median error {:.1}%)",
            r.rows.len(),
            r.median_abs_error.unwrap_or(0.0) * 100.0
        );
        if let Some(svg) = agreement_chart(
            &title,
            "published busbw (GB/s)",
            "meshway busbw (GB/s)",
            &series,
            meshway_validate::OUTSIDE,
        ) {
            body.push_str("<h2>Collectives</h2>\n");
            body.push_str(&svg);
            let from_time = r
                .rows
                .iter()
                .filter(|o| {
                    o.busbw_from_time.is_none() && o.published_busbw_gbytes_per_s <= 0.0 && plottable(collective_x(o))
                })
                .count();
            let mut notes = Vec::new();
            if from_time > 0 {
                notes.push(format!(
                    "{from_time} {} published at 0 GB/s (busbw rounded to 0.00) {} drawn at the bus bandwidth {} published time gives.",
                    rows_word(from_time),
                    if from_time == 1 { "is" } else { "are" },
                    if from_time == 1 { "its" } else { "their" }
                ));
            }
            let zero = r
                .rows
                .iter()
                .filter(|o| !plottable(collective_x(o)) || !plottable(o.meshway_busbw_gbytes_per_s))
                .count();
            notes.extend(left_out(r.rows.len(), &[(zero, "a bus bandwidth of 0 GB/s and no published time")]));
            note(&mut body, notes);
        }
    }
    if let Some(r) = plan {
        // Counts: by status, as the designs are too many for a colour each.
        let series: Vec<Series> = ["match", "differs", "mismatch"]
            .iter()
            .map(|st| Series {
                name: format!("{st} ({})", r.rows.iter().filter(|x| x.status == *st).count()),
                points: r
                    .rows
                    .iter()
                    .filter(|x| x.status == *st)
                    .filter_map(|x| Some((x.published, x.planned?)))
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        let title =
            format!("meshway plan against {} published counts of {} reference designs", r.rows.len(), r.designs.len());
        if let Some(svg) = agreement_chart(&title, "published count", "meshway count", &series, 0.0) {
            body.push_str("<h2>Reference designs</h2>\n");
            body.push_str(&svg);
            let none = r.rows.iter().filter(|x| x.planned.is_none()).count();
            let zero =
                r.rows.iter().filter(|x| x.planned.is_some_and(|p| !plottable(p) || !plottable(x.published))).count();
            note(
                &mut body,
                left_out(r.rows.len(), &[(zero, "a count of 0 (on log axes)"), (none, "no meshway count")]),
            );
        }
    }
    if let Some(r) = inference {
        let mut drawn = false;
        for (metric, label) in [
            ("output tokens/s", "output tokens/s"),
            ("ttft ms", "time to first token (ms)"),
            ("itl ms", "inter-token latency (ms)"),
        ] {
            let mut models: Vec<&str> = r.rows.iter().map(|o| o.model.as_str()).collect();
            models.sort_unstable();
            models.dedup();
            let series: Vec<Series> = models
                .iter()
                .map(|m| Series {
                    name: (*m).to_string(),
                    points: r
                        .rows
                        .iter()
                        .filter(|o| o.model == *m)
                        .flat_map(|o| o.figures.iter().filter(|f| f.metric == metric).map(|f| (f.published, f.meshway)))
                        .collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect();
            let n: usize = series.iter().map(|s| s.points.len()).sum();
            let bound = meshway_validate::inference::bound(metric);
            let title = format!("Serving: {label}, {n} published rows (band ±{:.0}%)", bound * 100.0);
            if let Some(svg) =
                agreement_chart(&title, &format!("published {label}"), &format!("meshway {label}"), &series, bound)
            {
                if !drawn {
                    body.push_str("<h2>Inference</h2>\n");
                    drawn = true;
                }
                body.push_str(&svg);
                let zero = series.iter().flat_map(|s| &s.points).filter(|p| !plottable(p.0) || !plottable(p.1)).count();
                note(&mut body, left_out(n, &[(zero, "a figure of 0 (on log axes)")]));
            }
        }
        let mut classes: Vec<&str> = r.wan.iter().map(|w| w.class.as_str()).collect();
        classes.sort_unstable();
        classes.dedup();
        let series: Vec<Series> = classes
            .iter()
            .map(|c| Series {
                name: (*c).to_string(),
                points: r.wan.iter().filter(|w| w.class == *c).map(|w| (w.published_ms, w.meshway_ms)).collect(),
            })
            .collect();
        let bound = meshway_validate::inference::bound("rtt ms");
        let title = format!("Inter-region round trips, {} published pairs (band ±{:.0}%)", r.wan.len(), bound * 100.0);
        if let Some(svg) =
            agreement_chart(&title, "published round trip (ms)", "meshway round trip (ms)", &series, bound)
        {
            body.push_str(&svg);
            let zero = r.wan.iter().filter(|w| !plottable(w.published_ms) || !plottable(w.meshway_ms)).count();
            note(&mut body, left_out(r.wan.len(), &[(zero, "a round trip of 0 ms (on log axes)")]));
        }
    }
    body.push_str("<h2>Report</h2>\n<pre>");
    body.push_str(&esc(text));
    body.push_str("</pre>\n");
    page("meshway validate", &body)
}

/// A value a log axis can show.
fn plottable(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// "row" or "rows".
fn rows_word(n: usize) -> &'static str {
    if n == 1 {
        "row"
    } else {
        "rows"
    }
}

/// A collectives row's published bus bandwidth as the chart draws it: from its published
/// time where that disagrees with the busbw (as the table), and where the busbw was published
/// as 0 (rounded to 0.00 GB/s at a few bytes) the time gives one: meshway's busbw scaled by
/// meshway's time over the published time, the size and bus factor being the same.
fn collective_x(o: &meshway_validate::Outcome) -> f64 {
    if let Some(b) = o.busbw_from_time {
        return b;
    }
    match o.published_time_us {
        Some(t) if o.published_busbw_gbytes_per_s <= 0.0 && t > 0.0 && o.meshway_time_us > 0.0 => {
            o.meshway_busbw_gbytes_per_s * o.meshway_time_us / t
        }
        _ => o.published_busbw_gbytes_per_s,
    }
}

/// The sentence saying how many of a chart's `total` rows are not drawn and why (reasons of
/// no row left out); None when every row is drawn.
fn left_out(total: usize, reasons: &[(usize, &str)]) -> Option<String> {
    let n: usize = reasons.iter().map(|r| r.0).sum();
    if n == 0 {
        return None;
    }
    let why: Vec<String> = reasons.iter().filter(|r| r.0 > 0).map(|(k, w)| format!("{k} with {w}")).collect();
    Some(format!("{n} of {total} {} not shown: {}.", rows_word(total), why.join(", ")))
}

/// The notes under a chart, as one paragraph.
fn note(body: &mut String, notes: impl IntoIterator<Item = String>) {
    let notes: Vec<String> = notes.into_iter().collect();
    if !notes.is_empty() {
        body.push_str(&format!("<p class=\"note\">{}</p>\n", crate::svg::esc(&notes.join(" "))));
    }
}

/// Published reference designs against meshway's plans.
pub fn plan_validate_text(r: &meshway_validate::plan::PlanValidation) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Reference designs, published counts against meshway plan");
    let mut t = Table::new(&["design", "quantity", "published", "meshway", "status"]);
    let num = |x: f64| if x.fract() == 0.0 { thousands(x as u64) } else { format!("{x:.3}") };
    for x in &r.rows {
        t.row(vec![
            x.design.clone(),
            x.quantity.clone(),
            num(x.published),
            x.planned.map_or_else(|| "-".to_string(), num),
            x.status.clone(),
        ]);
    }
    o.push_str(&t.render());
    let differs: Vec<_> = r.rows.iter().filter(|x| x.differs.is_some() && x.status != "match").collect();
    if !differs.is_empty() {
        let _ = writeln!(o, "\nDeliberate differences");
        for x in differs {
            let _ = writeln!(o, "  {} {}: {}", x.design, x.quantity, x.differs.as_deref().unwrap_or(""));
        }
    }
    let _ = writeln!(o, "\nSources");
    for d in &r.designs {
        let _ = writeln!(o, "  {} ({}/{} match): {}", d.name, d.matched, d.rows, d.source);
    }
    let _ = writeln!(
        o,
        "\n{} rows: {} match, {} differ deliberately, {} mismatch",
        r.rows.len(),
        r.matched,
        r.differs,
        r.mismatched
    );
    o
}
