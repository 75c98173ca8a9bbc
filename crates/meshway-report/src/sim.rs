//! Text rendering of `meshway simulate` reports.

use crate::table::Table;
use crate::thousands;
use meshway_sim::simulate::{SimReport, Sweep};
use meshway_units::Nanos;

/// A duration in the largest unit that keeps it readable ("1.234 ms").
pub fn time(ns: u64) -> String {
    let (v, unit) = match ns {
        0..=9_999 => return format!("{ns} ns"),
        10_000..=999_999 => (ns as f64 / 1e3, "us"),
        1_000_000..=999_999_999 => (ns as f64 / 1e6, "ms"),
        _ => (ns as f64 / 1e9, "s"),
    };
    format!("{v:.3} {unit}")
}

fn opt_time(ns: Option<u64>) -> String {
    ns.map_or_else(|| "-".into(), time)
}

fn gbps(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |g| format!("{g:.1} Gbps"))
}

/// The summary of a run: transport, workloads, training figures, congested links.
pub fn sim_text(r: &SimReport) -> String {
    let mut out = String::new();
    let t = &r.transport;
    out.push_str(&format!(
        "Simulation of {} ({} GPUs), seed {}\n  transport {} ({}), routing {}, MTU {} B + {} B headers (goodput {:.2}%), alpha {}\n\n",
        r.scenario,
        thousands(r.gpus as u64),
        r.seed,
        t.kind,
        t.lossless,
        t.routing.name(),
        t.mtu_bytes,
        t.header_bytes,
        t.goodput * 100.0,
        time(t.alpha_ns)
    ));
    for f in &r.failures {
        out.push_str(&format!(
            "  failure: {} ({} link{}) down at {}{}\n",
            f.what,
            f.links,
            if f.links == 1 { "" } else { "s" },
            time(f.down_ns),
            f.up_ns.map_or_else(|| ", not restored".to_string(), |u| format!(", up again at {}", time(u)))
        ));
    }
    if !r.failures.is_empty() {
        out.push('\n');
    }
    if !r.workloads.is_empty() {
        let mut tab = Table::new(&["workload", "what", "GPUs", "time", "algbw", "busbw", "ideal", "slowdown", "model"]);
        for w in &r.workloads {
            let what = match (&w.op, &w.algorithm) {
                (Some(op), Some(a)) => format!("{op} {} ({a})", meshway_units::Bytes(w.size_bytes)),
                _ => format!("{} ({} msgs)", w.kind, thousands(w.messages as u64)),
            };
            tab.row(vec![
                w.name.clone(),
                what,
                thousands(w.ranks as u64),
                opt_time(w.time_ns),
                gbps(w.algbw_gbps),
                gbps(w.busbw_gbps),
                opt_time(w.ideal_time_ns),
                w.slowdown.map_or_else(|| "-".into(), |s| format!("{s:.3}x")),
                w.model.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&tab.render());
        for w in &r.workloads {
            if let Some(s) = &w.training {
                out.push_str(&format!(
                    "\n{}: step {} (compute-only {}, exposed communication {}, pipeline bubble {:.1}%)\n  TP {} x PP {} x DP {} x EP {}, {} micro-batches, forward {} per micro-batch\n  MFU {:.1}% ({:.1} TFLOP/s per GPU){}\n",
                    w.name,
                    time(s.step_ns),
                    time(s.compute_only_ns),
                    time(s.exposed_comm_ns),
                    s.bubble_fraction * 100.0,
                    s.tp,
                    s.pp,
                    s.dp,
                    s.ep,
                    s.micro_batches,
                    time(s.fwd_ns_per_microbatch),
                    s.mfu * 100.0,
                    s.tflops_per_gpu,
                    match (s.ideal_step_ns, s.slowdown_vs_ideal) {
                        (Some(i), Some(x)) => format!(", {x:.3}x the ideal non-blocking fabric's {}", time(i)),
                        _ => String::new(),
                    }
                ));
            }
            if w.failed_messages > 0 {
                out.push_str(&format!("\n{}: {} messages FAILED\n", w.name, thousands(w.failed_messages as u64)));
                for f in &w.failures {
                    out.push_str(&format!("  - {f}\n"));
                }
            }
        }
    }
    for s in &r.sweeps {
        out.push('\n');
        out.push_str(&sweep_text(s));
    }
    if !r.congested_links.is_empty() {
        out.push_str("\nMost congested links (mean utilization over the run)\n");
        let mut tab = Table::new(&["link", "capacity", "carried", "peak", "mean"]);
        for l in &r.congested_links {
            tab.row(vec![
                l.link.clone(),
                crate::rate(l.capacity_bps),
                format!("{}", meshway_units::Bytes(l.carried_bytes)),
                format!("{:.1}%", l.peak_utilization * 100.0),
                format!("{:.1}%", l.mean_utilization * 100.0),
            ]);
        }
        out.push_str(&tab.render());
    }
    out.push_str(&format!(
        "\nEngine: {} flows, {} events, {} rate recomputes, simulated time {}\n",
        thousands(r.engine_flows as u64),
        thousands(r.events),
        thousands(r.recomputes),
        time(r.end_ns)
    ));
    out
}

/// A size sweep printed as nccl-tests prints it (time in us, bandwidths in GB/s).
pub fn sweep_text(s: &Sweep) -> String {
    let mut out = format!("# {}: {} ({}) over {} ranks\n", s.name, s.op, s.algorithm, s.ranks);
    let mut tab = Table::new(&["#       size", "count", "type", "time(us)", "algbw(GB/s)", "busbw(GB/s)", "model"]);
    for r in &s.rows {
        tab.row(vec![
            format!("{:>13}", r.size_bytes),
            (r.size_bytes / 4).to_string(),
            "float".into(),
            format!("{:.1}", r.time_us),
            format!("{:.2}", r.algbw_gbytes),
            format!("{:.2}", r.busbw_gbytes),
            r.model.clone(),
        ]);
    }
    out.push_str(&tab.render());
    out
}

/// Per-flow CSV: workload, src, dst, bytes, start_ns, end_ns, fct_ns, failed.
pub fn flows_csv(r: &SimReport) -> String {
    let mut out = String::from("workload,src,dst,bytes,start_ns,end_ns,fct_ns,failed\n");
    for f in r.flows.iter().flatten() {
        let fct = match (f.start_ns, f.end_ns) {
            (Some(s), Some(e)) => (e - s).to_string(),
            _ => String::new(),
        };
        let opt = |v: Option<u64>| v.map_or(String::new(), |x| x.to_string());
        let failed = f.failed.as_deref().unwrap_or("").replace(['"', ','], ";");
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            f.workload.replace(',', ";"),
            f.src,
            f.dst,
            f.bytes,
            opt(f.start_ns),
            opt(f.end_ns),
            fct,
            failed
        ));
    }
    out
}

pub fn nanos(n: Nanos) -> String {
    time(n.0)
}
