//! Text output of `meshway testbed`.

use crate::format::{pct, pct_signed, time};
use crate::table::Table;
use meshway_testbed::{per_workload, Compared, FlowRun, State, UpSummary};

/// `meshway testbed verify`: measured against predicted per flow and per workload.
pub fn compared_text(rows: &[Compared]) -> String {
    let mut t = Table::new(&["workload", "flow", "bytes", "path", "measured", "predicted", "error"]);
    for r in rows {
        t.row(vec![
            format!("{} #{}", r.workload, r.phase),
            format!("{} -> {}", r.src, r.dst),
            format!("{}{}", meshway_units::Bytes(r.bytes), if r.within_burst { "*" } else { "" }),
            r.path.join(" > "),
            time(r.measured_us.saturating_mul(1000)),
            time(r.predicted_us.saturating_mul(1000)),
            pct_signed(r.error),
        ]);
    }
    let mut w = Table::new(&["workload", "flows", "measured", "predicted", "error"]);
    for x in per_workload(rows) {
        w.row(vec![
            x.workload,
            x.flows.to_string(),
            time(x.measured_us.saturating_mul(1000)),
            time(x.predicted_us.saturating_mul(1000)),
            pct_signed(x.error),
        ]);
    }
    // The headline leaves out the flows within tbf's burst, whose errors say nothing about
    // the model (a review's 2x2 run with 16 KiB flows read "mean |error| 2894%").
    let timed: Vec<&Compared> = rows.iter().filter(|r| !r.within_burst).collect();
    let worst = timed.iter().map(|r| r.error.abs()).fold(0.0, f64::max);
    let mean = timed.iter().map(|r| r.error.abs()).sum::<f64>() / timed.len().max(1) as f64;
    let burst = rows.len() - timed.len();
    let note = if burst > 0 {
        format!(
            "* {burst} flows are no larger than tbf's burst on their path (64 KiB, or 2 ms at the scaled rate): \
             they pass at the veth's own speed, so their errors say little about the model\n"
        )
    } else {
        String::new()
    };
    let headline = match (timed.len(), burst) {
        (0, _) => format!("{} flows, all within tbf's burst: no error to report", rows.len()),
        (n, 0) => format!("{n} flows: mean |error| {}, worst {}", pct(mean), pct(worst)),
        (n, _) => format!(
            "{n} flows beyond tbf's burst: mean |error| {}, worst {} (the {burst} within it left out)",
            pct(mean),
            pct(worst)
        ),
    };
    format!(
        "{}\nPer workload (sum over its phases of the phase's span)\n{}\n{headline}\n{note}",
        t.render(),
        w.render(),
    )
}

/// The `meshway testbed verify --json` document: each flow, then each workload.
pub fn compared_json(rows: &[Compared]) -> Result<String, serde_json::Error> {
    crate::json(&serde_json::json!({ "flows": rows, "workloads": per_workload(rows) }))
}

/// `meshway testbed run`: each flow's measured time and throughput.
pub fn flows_text(flows: &[FlowRun], st: &State) -> String {
    let mut t = Table::new(&["workload", "flow", "bytes", "time", "throughput"]);
    for f in flows {
        let us = f.fct_us().max(1);
        t.row(vec![
            format!("{} #{}", f.workload, f.phase),
            format!("{} -> {}", st.gpus[f.src as usize].0, st.gpus[f.dst as usize].0),
            format!("{}", meshway_units::Bytes(f.bytes)),
            time(us * 1000),
            format!("{:.1} Mbps", f.bytes as f64 * 8.0 / us as f64),
        ]);
    }
    t.render()
}

/// `meshway testbed up`.
pub fn up_text(u: &UpSummary) -> String {
    format!(
        "testbed up: {} namespaces ({} switches), {} links at 1:{} rates, state in {}\n",
        u.namespaces,
        u.switches,
        u.links,
        u.scale,
        u.state.display()
    )
}

/// `meshway testbed down`.
pub fn down_text(d: &meshway_testbed::apply::Down) -> String {
    let mut s = format!("testbed down: {} namespaces removed\n", d.removed);
    if !d.unclaimed.is_empty() {
        s += &format!(
            "left alone, as no state file of yours lists them (remove with `ip netns del NAME` if they are yours): {}\n",
            d.unclaimed.join(", ")
        );
    }
    s
}

/// `testbed verify --html`: each flow's measured time against the simulator's prediction on
/// log-log axes (one colour per workload, the line of agreement and ±25%), then the text.
pub fn compared_html(rows: &[Compared]) -> String {
    use crate::svg::{agreement_chart, esc, page, Series};
    let mut series: Vec<Series> = Vec::new();
    for r in rows {
        let pt = (r.predicted_us as f64 / 1e3, r.measured_us as f64 / 1e3);
        match series.iter_mut().find(|s| s.name == r.workload) {
            Some(s) => s.points.push(pt),
            None => series.push(Series { name: r.workload.clone(), points: vec![pt] }),
        }
    }
    let chart = agreement_chart(
        "Testbed: measured against predicted, per flow",
        "predicted completion (ms)",
        "measured completion (ms)",
        &series,
        0.25,
    )
    .unwrap_or_else(|| "<p>No flows completed.</p>".to_string());
    page("meshway testbed verify", &format!("{chart}\n<pre>{}</pre>", esc(&compared_text(rows))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(bytes: u64, error: f64, within_burst: bool) -> Compared {
        Compared {
            workload: "w".into(),
            phase: 0,
            src: "gpu-0".into(),
            dst: "gpu-1".into(),
            bytes,
            path: vec![],
            start_offset_us: 0,
            measured_us: 100,
            predicted_us: 100,
            error,
            within_burst,
        }
    }

    /// Flows within tbf's burst stay in the table but out of the headline: two flows at
    /// +10% and -20% and one tiny one at +9,800% read "mean |error| 15.0%, worst 20.0%".
    #[test]
    fn the_headline_leaves_out_flows_within_the_burst() {
        let rows = [flow(8 << 20, 0.10, false), flow(8 << 20, -0.20, false), flow(1024, 98.0, true)];
        let t = compared_text(&rows);
        assert!(
            t.contains("2 flows beyond tbf's burst: mean |error| 15.0%, worst 20.0% (the 1 within it left out)"),
            "{t}"
        );
        let t = compared_text(&rows[..2]);
        assert!(t.contains("2 flows: mean |error| 15.0%, worst 20.0%"), "{t}");
        let t = compared_text(&rows[2..]);
        assert!(t.contains("1 flows, all within tbf's burst: no error to report"), "{t}");
    }
}
