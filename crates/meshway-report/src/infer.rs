//! Text of `meshway infer` (one inference simulation) and `meshway place` (GPU placement).

use crate::format::{ms1, pct, run_length, secs2, thousands, time};
use crate::table::Table;
use meshway_infer::place::{PlacementReport, RegionOutcome};
use meshway_infer::sim::InferReport;
use meshway_units::BitsPerSec;

/// The per-region and per-site tables of one simulation.
pub fn infer_text(r: &InferReport) -> String {
    let mut o = format!(
        "meshway infer: {} - {} regions, {} sites, policy {}, {} of arrivals, seed {}\n{} requests, {} events\n\n",
        r.scenario,
        r.regions.len(),
        r.sites.len(),
        r.policy.name(),
        run_length(r.duration_ns),
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
        "tpot p50",
        "p99",
        "e2e p50",
        "p99",
        "tokens/s",
    ]);
    for x in &r.regions {
        let main = x.main_site.as_deref().unwrap_or("");
        let site = match &x.main_site {
            Some(m) if x.main_site_share < 0.995 => format!("{m} {:.0}%", 100.0 * x.main_site_share),
            _ => main.to_string(),
        };
        // Disaggregated: the site that made the first tokens (whose round trip `rtt` is), then
        // the one that decoded.
        let site = match &x.prefill_site {
            Some(p) if p != main && !main.is_empty() => {
                if x.prefill_site_share < 0.995 {
                    format!("{p} {:.0}% > {site}", 100.0 * x.prefill_site_share)
                } else {
                    format!("{p} > {site}")
                }
            }
            _ => site,
        };
        // A region none of whose requests completed has no latencies to show.
        let none = x.served == 0;
        let ms = |ns: u64| if none { "-".to_string() } else { ms1(ns) };
        let s2 = |ns: u64| if none { "-".to_string() } else { secs2(ns) };
        t.row(vec![
            x.name.clone(),
            match (x.requests, x.unserved, x.retried, x.too_long) {
                (0, ..) => format!("{site} (no requests)"),
                (_, 0, 0, 0) => site,
                (_, 0, t, 0) => format!("{site} ({} retried)", thousands(t)),
                (_, 0, _, l) => format!("{site} ({} too long)", thousands(l)),
                (_, u, _, _) => format!("{site} ({} unserved)", thousands(u)),
            },
            x.rtt_ns.map_or_else(|| "-".into(), ms1),
            ms(x.ttft.p50_ns),
            ms(x.ttft.p90_ns),
            ms(x.ttft.p99_ns),
            match x.tpot_p99_objective_ns {
                Some(t) => format!("{}, tpot {}", ms1(x.ttft_p99_objective_ns), ms1(t)),
                None => ms1(x.ttft_p99_objective_ns),
            },
            if x.requests == 0 {
                "-".into()
            } else if x.met {
                "yes".into()
            } else {
                format!("no {}", pct(x.attainment))
            },
            // One output token has no time per output token: "-" as in JSON (null), not 0.0ms.
            if x.tpot.samples == 0 { "-".into() } else { ms(x.tpot.p50_ns) },
            if x.tpot.samples == 0 { "-".into() } else { ms(x.tpot.p99_ns) },
            s2(x.e2e.p50_ns),
            s2(x.e2e.p99_ns),
            // Below 10 tokens/s the tenths count (a region of 0.1 tokens/s read 0).
            if x.tokens_per_s < 10.0 { format!("{:.1}", x.tokens_per_s) } else { format!("{:.0}", x.tokens_per_s) },
        ]);
    }
    o.push_str(&t.render());
    o.push('\n');
    let mut t = Table::new(&[
        "site",
        "tier",
        "gpus",
        "servers",
        "requests",
        "gpu util",
        "batch fill",
        "kv cache",
        "max queue",
        "cost per hour",
    ]);
    for s in &r.sites {
        t.row(vec![
            s.name.clone(),
            format!("{:?}", s.tier).to_lowercase(),
            if s.down { "down".into() } else { thousands(u64::from(s.gpus)) },
            thousands(u64::from(s.servers)),
            thousands(s.requests),
            pct(s.gpu_utilization),
            pct(s.batch_fill),
            if s.kv_fill > 0.0 { pct(s.kv_fill) } else { "-".into() },
            thousands(s.max_queue),
            format!("${:.0}", f64::from(s.gpus) * s.gpu_hour_usd),
        ]);
    }
    o.push_str(&t.render());
    if !r.dci.is_empty() {
        let mut t = Table::new(&["kv transfers", "to", "capacity", "transfers", "GB", "busy", "load", "p50", "p99"]);
        for d in &r.dci {
            t.row(vec![
                d.from.clone(),
                d.to.clone(),
                format!(
                    "{}{}",
                    BitsPerSec(d.capacity_bps as u64),
                    if d.background > 0.0 { format!(" ({} other)", pct(d.background)) } else { String::new() }
                ),
                thousands(d.transfers),
                format!("{:.1}", d.bytes / 1e9),
                pct(d.busy),
                pct(d.utilization),
                ms1(d.transfer.p50_ns),
                ms1(d.transfer.p99_ns),
            ]);
        }
        o.push('\n');
        o.push_str(&t.render());
    }
    // Regions that sent nothing have nothing to meet or miss.
    let sending: Vec<_> = r.regions.iter().filter(|x| x.requests > 0).collect();
    let met = sending.iter().filter(|x| x.met).count();
    let idle = r.regions.len() - sending.len();
    o.push_str(&format!(
        "\n{met} of {} regions meet their p99 objectives (time to first token, and time per output token where set){}; GPUs cost ${:.0} per hour.\n",
        sending.len(),
        if idle > 0 { format!(" ({idle} sent no requests)") } else { String::new() },
        r.cost_usd_per_hour
    ));
    if r.unfinished > 0 {
        o.push_str(&format!(
            "The run stopped {:.1} years after its arrivals ended with {} requests unfinished (counted as unserved): the sites cannot serve this load.\n",
            meshway_infer::sim::DRAIN_HORIZON_NS as f64 * 1e-9 / (365.25 * 86_400.0),
            thousands(r.unfinished)
        ));
    }
    let long: Vec<_> = sending.iter().filter(|x| x.too_long > 0).collect();
    if !long.is_empty() {
        let shown: Vec<String> = long
            .iter()
            .map(|x| format!("{} of {} from {}", thousands(x.too_long), thousands(x.requests), x.name))
            .collect();
        o.push_str(&format!(
            "Refused as too long (prompt + output over the model's context, or over an empty server's KV cache; more GPUs do not change it): {}.\n",
            shown.join(", ")
        ));
    }
    let missed: Vec<String> = sending
        .iter()
        .filter(|x| !x.met)
        .map(|x| match x.tpot_p99_objective_ns {
            _ if x.served == 0 => format!("{} (no request served)", x.name),
            // Only the objectives missed are named (a TTFT that held is not a reason).
            Some(t) if x.tpot.p99_ns > t => {
                let mut why = Vec::new();
                if x.ttft.p99_ns > x.ttft_p99_objective_ns {
                    why.push(format!("p99 ttft {} vs {}", ms1(x.ttft.p99_ns), ms1(x.ttft_p99_objective_ns)));
                }
                why.push(format!("p99 tpot {} vs {}", ms1(x.tpot.p99_ns), ms1(t)));
                if x.unserved > 0 {
                    why.push(format!("{} of {} requests unserved", thousands(x.unserved), thousands(x.requests)));
                }
                format!("{} ({})", x.name, why.join(", "))
            }
            _ if x.ttft.p99_ns <= x.ttft_p99_objective_ns && x.unserved > 0 => format!(
                "{} ({} of {} requests unserved; p99 {} of those served)",
                x.name,
                thousands(x.unserved),
                thousands(x.requests),
                ms1(x.ttft.p99_ns)
            ),
            _ => format!("{} (p99 {} vs {})", x.name, ms1(x.ttft.p99_ns), ms1(x.ttft_p99_objective_ns)),
        })
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
    if !r.candidates.is_empty() {
        o.push_str(&plans_table(r));
    }
    for p in &r.plans {
        for v in &p.violations {
            o.push_str(&format!("  {}: {v}\n", p.name));
        }
    }
    if r.search_capped {
        o.push_str(&format!(
            "  optimized: none of the {} cheapest subsets simulated met every objective, and the search stopped there{}\n",
            r.subsets_simulated,
            if r.plans.iter().any(|p| p.name == "optimized" && p.all_met) {
                "; the optimized plan is the cheapest of all-central and all-edge that met"
            } else {
                ""
            }
        ));
    }
    if let Some(p) = r.plans.iter().find(|p| p.name == "optimized") {
        if p.simulated && !p.all_met && !r.search_capped {
            o.push_str(&format!(
                "  optimized: no plan simulated meets every objective (the search tried {} subsets and repaired their misses up to max-gpus); this is the one closest to them\n",
                r.subsets_simulated
            ));
        }
        if p.repaired_servers > 0 {
            o.push_str(&format!(
                "  optimized: simulation added {} server(s) where a region missed (sized ${:.0}/h, final ${:.0}/h)\n",
                p.repaired_servers, p.sized_cost_usd_per_hour, p.cost_usd_per_hour
            ));
        }
    } else if r.candidates.is_empty() {
        o.push_str(
            "No site may host: every site's max-gpus is below one server of its model (give max-gpus to the sites \
             that may).\n",
        );
    } else {
        o.push_str(if r.n_plus_1 {
            "\nNo placement passes the sizing rules with N+1: some region has no second site within its \
             objective, or a site would need more than max-gpus (see the reasons above).\n"
        } else {
            "\nNo placement passes the sizing rules: some region has no site within its objective, or a \
             site would need more than max-gpus (see the reasons above).\n"
        });
    }
    let mut idle: Vec<&str> = Vec::new();
    for p in r.plans.iter().filter(|p| p.simulated) {
        for x in p.regions.iter().filter(|x| x.requests == 0) {
            if !idle.contains(&x.name.as_str()) {
                idle.push(&x.name);
            }
        }
    }
    if !idle.is_empty() {
        o.push_str(&format!(
            "  {} sent no requests in the simulated run: {} objective is untested (raise the rate or --duration)\n",
            idle.join(", "),
            if idle.len() == 1 { "its" } else { "their" }
        ));
    }
    if !r.failures.is_empty() {
        o.push_str("\nOptimized plan under one failure (simulated)\n");
        // A TPOT column only when some worst region has a TPOT objective.
        let tpot = r.failures.iter().any(|f| f.worst_tpot_p99_ns.is_some());
        let mut head = vec!["failure", "holds", "worst region", "p99 ttft"];
        if tpot {
            head.push("p99 tpot");
        }
        head.extend(["miss", "unserved"]);
        let mut t = Table::new(&head);
        for f in &r.failures {
            let mut misses = Vec::new();
            if f.miss_ns > 0 {
                misses.push(format!("+{}", ms1(f.miss_ns)));
            }
            if f.tpot_miss_ns > 0 {
                misses.push(format!("tpot +{}", ms1(f.tpot_miss_ns)));
            }
            let mut row = vec![
                f.failure.clone(),
                if f.holds { "yes".into() } else { "no".into() },
                f.worst_region.clone(),
                match f.worst_ttft_p99_ns {
                    Some(v) if f.unserved == 0 => ms1(v),
                    _ => "-".into(),
                },
            ];
            if tpot {
                row.push(match f.worst_tpot_p99_ns {
                    Some(v) if f.unserved == 0 => ms1(v),
                    _ => "-".into(),
                });
            }
            row.push(if f.unserved > 0 {
                "unserved".into()
            } else if misses.is_empty() {
                "-".into()
            } else {
                misses.join(", ")
            });
            row.push(thousands(f.unserved));
            t.row(row);
        }
        o.push_str(&t.render());
        o.push_str(&format!(
            "N+1: {}\n",
            if r.n_plus_1_holds {
                let mut untested: Vec<&str> = Vec::new();
                for n in r.failures.iter().flat_map(|f| &f.untested) {
                    if !untested.contains(&n.as_str()) {
                        untested.push(n);
                    }
                }
                if untested.is_empty() {
                    "holds for every single site and route failure".to_string()
                } else {
                    format!(
                        "holds for every single site and route failure, but is untested for {}, which sent no requests in some of those runs",
                        untested.join(", ")
                    )
                }
            } else {
                let n = r.failures.iter().filter(|f| !f.holds).count();
                let advice = match r.n_plus_1_sizable {
                    Some(false) => " (no placement passes the sizing rules with --n-plus-1: some region has no second site within its objective, or a site would need more than max-gpus)",
                    _ => " (try meshway place --n-plus-1)",
                };
                format!("{n} of {} single failures miss an objective{advice}", r.failures.len())
            }
        ));
    }
    o
}

pub(crate) fn plans_table(r: &PlacementReport) -> String {
    let mut head: Vec<String> = vec!["".into()];
    head.extend(r.plans.iter().map(|p| p.name.clone()));
    let head_ref: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut t = Table::new(&head_ref);
    for (i, s) in r.site_names.iter().enumerate() {
        let mut row = vec![format!("{s} GPUs")];
        row.extend(r.plans.iter().map(|p| thousands(u64::from(p.gpus[i]))));
        t.row(row);
    }
    let mut row = vec!["cost per hour".to_string()];
    row.extend(r.plans.iter().map(|p| format!("${:.0}", p.cost_usd_per_hour)));
    t.row(row);
    if r.plans.iter().any(|p| p.simulated) {
        if let Some(first) = r.plans.iter().find(|p| p.simulated) {
            // A `!` marks the figure that missed: the TTFT row, or the TPOT row of a region
            // with a TPOT objective.
            type Figure = fn(&RegionOutcome) -> (Option<u64>, bool, &'static str);
            let ttft: Figure = |x| (x.ttft_p99_ns, x.ttft_missed(), "- (none served) !");
            let tpot: Figure = |x| (x.tpot_p99_ns, x.tpot_missed(), "-");
            for (i, reg) in first.regions.iter().enumerate() {
                // TPOT rows only where some plan misses it (the JSON has every figure).
                let tpot_missed = r.plans.iter().any(|p| p.regions.get(i).is_some_and(|x| x.tpot_missed()));
                for (name, figure) in std::iter::once(("ttft", ttft)).chain(tpot_missed.then_some(("tpot", tpot))) {
                    let mut row = vec![format!("{} p99 {name}", reg.name)];
                    row.extend(r.plans.iter().map(|p| match p.regions.get(i) {
                        Some(x) if x.requests == 0 => "- (no requests)".into(),
                        Some(x) => match figure(x) {
                            (Some(t), missed, _) => format!("{}{}", ms1(t), if missed { " !" } else { "" }),
                            (None, _, none) => none.into(),
                        },
                        None => "-".into(),
                    }));
                    t.row(row);
                }
            }
        }
        // Regions that sent nothing have nothing to meet or miss.
        let mut row = vec!["regions meeting objective".to_string()];
        row.extend(r.plans.iter().map(|p| {
            let sending = p.regions.iter().filter(|x| x.requests > 0);
            format!("{} of {}", sending.clone().filter(|x| x.met).count(), sending.count())
        }));
        t.row(row);
    }
    let mut out = t.render();
    let simulated = r.plans.iter().filter(|p| p.simulated);
    let with_tpot =
        simulated.clone().flat_map(|p| &p.regions).filter(|x| x.tpot_objective_ns.is_some() && x.requests > 0);
    if with_tpot.clone().next().is_some() && !with_tpot.clone().any(|x| x.tpot_missed()) {
        out.push_str("p99 tpot within its objective in every region and plan simulated (JSON: tpot_p99_ns)\n");
    }
    out
}

/// `meshway infer --html`: p99 time to first token per region against its objective (a tick
/// per bar, the bars that miss it coloured), the TTFT distribution per region and its tail
/// (p99 and p99.9 read off at 99% and 99.9%), the share of requests that met the objectives,
/// and the text report, in one self-contained page.
pub fn infer_html(r: &InferReport) -> String {
    use crate::svg::{esc, objective_bar_chart, page, share_bar_chart};
    let fmt_time = |v: f64| time(v.max(0.0).round() as u64);
    let mut body = String::new();
    // Regions none of whose requests completed have no latency to draw (the report below
    // lists them). Each bar has its objective's tick and is coloured by whether the p99 is
    // above it.
    let ttft: Vec<(String, f64, f64)> = r
        .regions
        .iter()
        .filter(|g| g.served > 0)
        .map(|g| {
            (
                format!("{} (objective {})", g.name, time(g.ttft_p99_objective_ns)),
                g.ttft.p99_ns as f64,
                g.ttft_p99_objective_ns as f64,
            )
        })
        .collect();
    if let Some(svg) = objective_bar_chart("p99 time to first token per region", &ttft, &fmt_time) {
        body.push_str("<h2>Time to first token</h2>\n");
        body.push_str(&svg);
    }
    let cdfs: Vec<crate::svg::Series> = r
        .regions
        .iter()
        .filter(|g| !g.ttft_cdf.is_empty())
        .map(|g| crate::svg::Series {
            name: g.name.clone(),
            points: g.ttft_cdf.iter().map(|&(t, q)| (t as f64, q)).collect(),
        })
        .collect();
    let chart = crate::svg::LineChart {
        title: "Time to first token: share of requests at or below",
        x_label: "time to first token",
        y_label: "share of requests",
        log_x: false,
        step: true,
        fmt_x: &fmt_time,
        fmt_y: &|v| format!("{:.0}%", v * 100.0),
    };
    if let Some(svg) = crate::svg::line_chart(&chart, &cdfs) {
        body.push_str(&svg);
    }
    // The tail the objectives are about, which the chart above squeezes into its top few
    // pixels: the same points from 50% on, with 90%, 99% and 99.9% evenly spaced (the axis is
    // the number of nines, -log10 of the share above); the maximum, at 100%, is off this
    // axis and in the report.
    let tails: Vec<crate::svg::Series> = r
        .regions
        .iter()
        .filter(|g| !g.ttft_cdf.is_empty())
        .map(|g| crate::svg::Series {
            name: g.name.clone(),
            points: g
                .ttft_cdf
                .iter()
                .filter(|p| p.1 >= 0.5 && p.1 < 1.0)
                .map(|&(t, q)| (t as f64, -(1.0 - q).log10()))
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let nines = |v: f64| {
        let share = (1.0 - 10f64.powf(-v)) * 100.0;
        format!("{share:.*}%", (v.ceil() as usize).saturating_sub(2))
    };
    let chart = crate::svg::LineChart {
        title: "The tail: share of requests at or below (90%, 99%, 99.9% evenly spaced)",
        x_label: "time to first token",
        y_label: "share of requests",
        log_x: false,
        step: true,
        fmt_x: &fmt_time,
        fmt_y: &nines,
    };
    if let Some(svg) = crate::svg::line_chart(&chart, &tails) {
        body.push_str(&svg);
    }
    let met: Vec<(String, f64)> =
        r.regions.iter().filter(|g| g.requests > 0).map(|g| (g.name.clone(), g.attainment)).collect();
    if let Some(svg) = share_bar_chart("Requests within their objectives", &met) {
        body.push_str(&svg);
    }
    body.push_str("<h2>Report</h2>\n<pre>");
    body.push_str(&esc(&infer_text(r)));
    body.push_str("</pre>\n");
    page(&format!("meshway infer: {}", r.scenario), &body)
}

/// `meshway place --html`: GPUs per site and hourly cost of each plan (all on one scale),
/// and the text report.
pub fn place_html(r: &PlacementReport) -> String {
    use crate::svg::{bar_chart_scaled, esc, page};
    let mut body = String::new();
    // One scale for every plan's chart: the charts are stacked to be compared, so equal
    // lengths must be equal GPU counts.
    let scale = r.plans.iter().flat_map(|p| p.gpus.iter()).map(|g| f64::from(*g)).fold(1.0, f64::max);
    for p in &r.plans {
        let rows: Vec<(String, f64)> = r
            .site_names
            .iter()
            .zip(&p.gpus)
            .filter(|(_, g)| **g > 0)
            .map(|(n, g)| (n.clone(), f64::from(*g)))
            .collect();
        let title = format!("{}: GPUs per site, {}/h", p.name, crate::dollars(p.cost_usd_per_hour));
        if let Some(svg) = bar_chart_scaled(&title, &rows, &|v| thousands(v.round() as u64), scale) {
            body.push_str(&format!("<h2>{}</h2>\n", esc(&p.name)));
            body.push_str(&svg);
        }
    }
    if let Some(svg) = placement_map(r) {
        body.push_str("<h2>Where each region is served</h2>\n");
        body.push_str(&svg);
    }
    body.push_str("<h2>Report</h2>\n<pre>");
    body.push_str(&esc(&place_text(r)));
    body.push_str("</pre>\n");
    page(&format!("meshway place: {}", r.scenario), &body)
}

/// The placement as a map-like table: regions down, sites across, each cell the zero-load
/// round trip, shaded by how much of the region's time-to-first-token objective it takes, and
/// the site that makes the region's first tokens in the chosen plan filled dark.
pub(crate) fn placement_map(r: &PlacementReport) -> Option<String> {
    use crate::svg::{grid, Cell, COLOURS};
    let plan = r.plans.iter().find(|p| p.name == "optimized").or_else(|| r.plans.first())?;
    let columns: Vec<String> = r
        .site_names
        .iter()
        .zip(&plan.gpus)
        .map(|(n, g)| if *g > 0 { format!("{n}\n{} GPUs", thousands(u64::from(*g))) } else { format!("{n}\nclosed") })
        .collect();
    let rows: Vec<(String, Vec<Cell>)> = r
        .routes
        .iter()
        .enumerate()
        .map(|(i, reg)| {
            let chosen = plan.first_token_site.get(i).cloned().flatten();
            let cells = reg
                .rtt_ns
                .iter()
                .zip(&r.site_names)
                .map(|(rtt, site)| match rtt {
                    None => Cell { text: "-".into(), fill: "#eeeeee", chosen: false },
                    Some(t) => {
                        let share = *t as f64 / reg.ttft_p99_objective_ns.max(1) as f64;
                        Cell {
                            text: ms1(*t),
                            fill: if share <= 0.25 {
                                "#c7e9c0"
                            } else if share <= 1.0 {
                                "#fee391"
                            } else {
                                "#fcae91"
                            },
                            chosen: chosen.as_deref() == Some(site.as_str()),
                        }
                    }
                })
                .collect();
            (format!("{} ({})", reg.name, ms1(reg.ttft_p99_objective_ns)), cells)
        })
        .collect();
    let title = format!("{}: round trip from each region (objective) to each site", plan.name);
    grid(
        &title,
        &columns,
        &rows,
        &[
            (COLOURS[0], "makes the region's first tokens"),
            ("#c7e9c0", "round trip ≤ 25% of objective"),
            ("#fee391", "≤ objective"),
            ("#fcae91", "> objective"),
        ],
    )
}
