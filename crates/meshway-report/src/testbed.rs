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
    let worst = rows.iter().map(|r| r.error.abs()).fold(0.0, f64::max);
    let mean = rows.iter().map(|r| r.error.abs()).sum::<f64>() / rows.len().max(1) as f64;
    let burst = rows.iter().filter(|r| r.within_burst).count();
    let note = if burst > 0 {
        format!(
            "* {burst} flows are no larger than tbf's burst on their path (64 KiB, or 2 ms at the scaled rate): \
             they pass at the veth's own speed, so their errors say little about the model\n"
        )
    } else {
        String::new()
    };
    format!(
        "{}\nPer workload (sum over its phases of the phase's span)\n{}\n{} flows: mean |error| {}, worst {}\n{note}",
        t.render(),
        w.render(),
        rows.len(),
        pct(mean),
        pct(worst)
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
