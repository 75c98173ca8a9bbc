//! `meshway schedule` as text: the policies side by side, then one policy's jobs.

use crate::table::Table;
use meshway_sched::run::{JobOutcome, PolicyOutcome};
use meshway_sched::ScheduleReport;
use meshway_units::Bytes;

/// A wall-clock span in the unit that reads best ("45s", "12.5min", "3.2h", "1.5d"). The
/// unit is chosen on the rounded value, so 7,199.8 s reads "2.0h", not "120.0min".
pub fn dur(s: f64) -> String {
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    match s {
        // Below 10 s, milliseconds count: a one-step job of 285 ms is not "0s".
        x if x > 0.0 && (x * 100.0).round() < 1000.0 => format!("{x:.2}s"),
        x if x.round() < 120.0 => format!("{x:.0}s"),
        x if r1(x / 60.0) < 120.0 => format!("{:.1}min", x / 60.0),
        x if r1(x / 3600.0) < 48.0 => format!("{:.1}h", x / 3600.0),
        x => format!("{:.1}d", x / 86_400.0),
    }
}

fn step(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(x) if x < 1000.0 => format!("{x:.1}ms"),
        Some(x) => format!("{:.2}s", x / 1e3),
    }
}

/// Marks the best value of a column with '*'.
/// The best of `values` among the `eligible` rows, and every eligible row shown the same as
/// it (`shown`: the values as the table prints them, so that two rows reading 1.000x are
/// both marked or neither).
fn mark(values: &[f64], shown: &[String], lower_is_better: bool, eligible: &[bool]) -> Vec<bool> {
    let mut best: Option<usize> = None;
    for (i, &v) in values.iter().enumerate() {
        if !eligible[i] {
            continue;
        }
        let better = match best {
            None => true,
            Some(b) if lower_is_better => v < values[b],
            Some(b) => v > values[b],
        };
        if better {
            best = Some(i);
        }
    }
    let Some(b) = best else { return vec![false; values.len()] };
    (0..values.len()).map(|i| values.len() > 1 && eligible[i] && shown[i] == shown[b]).collect()
}

pub fn policies_table(r: &ScheduleReport) -> String {
    let p = &r.policies;
    let col = |f: &dyn Fn(&PolicyOutcome) -> f64| p.iter().map(f).collect::<Vec<f64>>();
    let util = col(&|x| x.goodput);
    let jct = col(&|x| x.mean_jct_s);
    let p95 = col(&|x| x.p95_jct_s);
    let mk = col(&|x| x.makespan_s);
    let wait = col(&|x| x.mean_queue_s);
    let slow = col(&|x| x.mean_slowdown);
    let maxs = col(&|x| x.max_slowdown);
    let up = col(&|x| (x.bytes.leaf_spine_bytes + x.bytes.spine_core_bytes) as f64);
    // Only the policies that left the fewest jobs unfinished can be best: a job that never
    // ran moves no bytes and waits for nothing in the figures.
    let fewest = p.iter().map(|x| x.unfinished).min().unwrap_or(0);
    let eligible: Vec<bool> = p.iter().map(|x| x.unfinished == fewest).collect();
    let shown = |f: &dyn Fn(f64) -> String, v: &[f64]| v.iter().map(|&x| f(x)).collect::<Vec<String>>();
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let d = |x: f64| dur(x);
    let x3 = |x: f64| format!("{x:.3}x");
    let x2 = |x: f64| format!("{x:.2}x");
    let by = |x: f64| Bytes(x as u64).display_si();
    let marks = [
        mark(&util, &shown(&pct, &util), false, &eligible),
        mark(&jct, &shown(&d, &jct), true, &eligible),
        mark(&p95, &shown(&d, &p95), true, &eligible),
        mark(&mk, &shown(&d, &mk), true, &eligible),
        mark(&wait, &shown(&d, &wait), true, &eligible),
        mark(&slow, &shown(&x3, &slow), true, &eligible),
        mark(&maxs, &shown(&x2, &maxs), true, &eligible),
        mark(&up, &shown(&by, &up), true, &eligible),
    ];
    // Bytes between sites, on a multi-site fabric.
    let dci = p.iter().any(|x| x.bytes.dci_bytes > 0);
    let mut head = vec![
        "policy",
        "goodput",
        "GPUs held",
        "mean JCT",
        "p95 JCT",
        "makespan",
        "mean wait",
        "slowdown",
        "worst",
        "spanning",
        "fragmented",
        "above leaf",
    ];
    if dci {
        head.push("dci");
    }
    head.push("unfinished");
    let mut t = Table::new(&head);
    for (i, x) in p.iter().enumerate() {
        let m = |k: usize, s: String| if marks[k][i] { format!("{s}*") } else { s };
        let mut row = vec![
            x.policy.name().to_string(),
            m(0, format!("{:.1}%", x.goodput * 100.0)),
            format!("{:.1}%", x.utilization * 100.0),
            m(1, dur(x.mean_jct_s)),
            m(2, dur(x.p95_jct_s)),
            m(3, dur(x.makespan_s)),
            m(4, dur(x.mean_queue_s)),
            m(5, format!("{:.3}x", x.mean_slowdown)),
            m(6, format!("{:.2}x", x.max_slowdown)),
            x.spanning_jobs.to_string(),
            format!("{:.1}%", x.fragmentation * 100.0),
            m(7, Bytes(x.bytes.leaf_spine_bytes + x.bytes.spine_core_bytes).display_si()),
        ];
        if dci {
            row.push(Bytes(x.bytes.dci_bytes).display_si());
        }
        row.push(x.unfinished.to_string());
        t.row(row);
    }
    t.render()
}

pub fn jobs_table(jobs: &[&JobOutcome]) -> String {
    let mut t = Table::new(&[
        "job",
        "GPUs",
        "profile",
        "iters",
        "arrival",
        "wait",
        "runs",
        "step alone",
        "shared",
        "slowdown",
        "hosts",
        "blocks",
    ]);
    for j in jobs {
        let blocks = match j.blocks.len() {
            0 => "-".to_string(),
            1 => j.blocks[0].clone(),
            n => format!("{n} ({} pods)", j.pods),
        };
        t.row(vec![
            j.name.clone(),
            j.gpus.to_string(),
            j.profile.clone().unwrap_or_else(|| "custom".into()),
            j.iterations.to_string(),
            dur(j.arrival_s),
            j.queue_s.map_or("-".into(), dur),
            match (j.start_s, j.finish_s) {
                (Some(s), Some(f)) => dur(f - s),
                _ => "-".into(),
            },
            step(j.step_alone_ms),
            step(j.step_shared_ms),
            j.slowdown.map_or("-".into(), |s| format!("{s:.3}x")),
            if j.hosts.chars().count() > 28 {
                format!("{}...", j.hosts.chars().take(25).collect::<String>())
            } else {
                j.hosts.clone()
            },
            blocks,
        ]);
    }
    t.render()
}

/// The whole report; `detail` names the policy whose jobs are listed (default the last).
pub fn schedule_text(r: &ScheduleReport, detail: Option<&str>, all_jobs: bool) -> String {
    let mut s = format!(
        "schedule: {} ({}), {} GPUs in {} hosts of {}, {} blocks in {} pod{}; {} jobs; {} backfill; seed {}\n\n",
        r.scenario,
        r.fabric,
        crate::format::thousands(r.gpus),
        crate::format::thousands(r.hosts as u64),
        r.gpus_per_host,
        r.blocks,
        r.pods,
        if r.pods == 1 { "" } else { "s" },
        r.jobs,
        if r.backfill == "easy" { "EASY" } else { "no" },
        r.seed
    );
    s += &policies_table(r);
    s += "  (* best; goodput: useful GPU time (steps at their alone time) over GPUs x makespan; GPUs held:\n   the same for the time jobs held GPUs; JCT: job completion time from arrival; slowdown: mean step\n   time shared over alone; spanning: jobs over more than one block; fragmented: share of time a job\n   waited while enough GPUs were free in scattered hosts; above leaf: bytes on links between switches\n   of a site)\n";
    if r.policies.iter().any(|x| x.bytes.dci_bytes > 0) {
        s += "  (dci: bytes between sites)\n";
    }
    let pick = detail.and_then(|d| r.policies.iter().find(|p| p.policy.name() == d)).or(r.policies.last());
    if let Some(p) = pick {
        let mut jobs: Vec<&JobOutcome> = p.jobs.iter().collect();
        let title = if all_jobs || jobs.len() <= 25 {
            format!("\nJobs under {}:\n", p.policy.name())
        } else {
            jobs.sort_by(|a, b| {
                b.slowdown.unwrap_or(0.0).total_cmp(&a.slowdown.unwrap_or(0.0)).then(a.name.cmp(&b.name))
            });
            jobs.truncate(10);
            format!("\nThe 10 most slowed jobs under {} (--all-jobs lists every job):\n", p.policy.name())
        };
        s += &title;
        s += &jobs_table(&jobs);
        let notes: Vec<String> =
            p.jobs.iter().filter_map(|j| j.note.as_ref().map(|n| format!("  {}: {n}", j.name))).collect();
        if !notes.is_empty() {
            s += "\n";
            s += &notes.join("\n");
            s += "\n";
        }
    }
    s += &format!("\nApproximation: {}.\n", r.approximation);
    s
}

/// `schedule --html`: the policies' mean job completion time, mean slowdown and bytes above
/// the leaf tier as bars, then the text report.
pub fn schedule_html(r: &ScheduleReport, detail: Option<&str>, all_jobs: bool) -> String {
    use crate::svg::{bar_chart, esc, page};
    let rows = |f: &dyn Fn(&PolicyOutcome) -> f64| -> Vec<(String, f64)> {
        r.policies.iter().map(|p| (p.policy.name().to_string(), f(p))).collect()
    };
    let charts = [
        bar_chart("Mean job completion time (from arrival)", &rows(&|p| p.mean_jct_s), &dur),
        bar_chart("Mean slowdown from sharing links (step shared over alone)", &rows(&|p| p.mean_slowdown), &|v| {
            format!("{v:.3}x")
        }),
        bar_chart(
            "Bytes above the leaf tier",
            &rows(&|p| (p.bytes.leaf_spine_bytes + p.bytes.spine_core_bytes) as f64),
            &|v| Bytes(v as u64).display_si(),
        ),
    ];
    let mut body: String = charts.into_iter().flatten().collect::<Vec<_>>().join("\n");
    // The jobs of the detailed policy on a timeline: waiting grey, running shaded by slowdown
    // (light: none, dark: 1.5x or more).
    let pick = detail.and_then(|d| r.policies.iter().find(|p| p.policy.name() == d)).or(r.policies.last());
    if let Some(p) = pick {
        let spans: Vec<crate::svg::Span> = p
            .jobs
            .iter()
            .filter_map(|j| {
                Some(crate::svg::Span {
                    label: format!("{} ({} GPUs)", j.name, j.gpus),
                    from: j.arrival_s,
                    start: j.start_s?,
                    end: j.finish_s?,
                    shade: (j.slowdown.unwrap_or(1.0) - 1.0) / 0.5,
                })
            })
            .take(200)
            .collect();
        let title = format!("Jobs under {}: waiting (grey) and running (darker: slowed more)", p.policy.name());
        if let Some(svg) = crate::svg::timeline(&title, "time since the first arrival", &spans, &dur) {
            body.push('\n');
            body.push_str(&svg);
        }
    }
    body.push_str(&format!("\n<pre>{}</pre>", esc(&schedule_text(r, detail, all_jobs))));
    page(&format!("meshway schedule: {}", r.scenario), &body)
}

#[cfg(test)]
mod tests {
    /// Run times below 10 s keep their milliseconds (a 285 ms job is not "0s").
    #[test]
    fn short_durations_keep_milliseconds() {
        let cases = [(0.0, "0s"), (0.2851, "0.29s"), (9.994, "9.99s"), (60.0, "60s"), (150.0, "2.5min")];
        for (s, want) in cases {
            assert_eq!(super::dur(s), want);
        }
    }

    /// The unit follows the rounded value: no "10.00s", "120s", "120.0min" or "48.0h".
    #[test]
    fn a_unit_boundary_reads_in_the_next_unit() {
        let cases = [(9.996, "10s"), (119.6, "2.0min"), (7199.79, "2.0h"), (172_700.0, "2.0d"), (7100.0, "118.3min")];
        for (s, want) in cases {
            assert_eq!(super::dur(s), want);
        }
    }
}
