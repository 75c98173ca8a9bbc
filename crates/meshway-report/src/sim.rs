//! Text rendering of `meshway simulate` reports.

use crate::format::{gbps, pct, rate, thousands, time};
use crate::table::Table;
use meshway_sim::simulate::{FctSummary, PacketSection, SimReport, Sweep};

fn opt_time(ns: Option<u64>) -> String {
    ns.map_or_else(|| "-".into(), time)
}

fn opt_gbps(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), gbps)
}

/// The summary of a run: transport, workloads, training figures, congested links.
pub fn sim_text(r: &SimReport) -> String {
    let mut out = String::new();
    let t = &r.transport;
    out.push_str(&format!(
        "Simulation of {} ({} GPUs), seed {}\n  transport {} ({}), routing {}, MTU {} B + {} B headers (goodput {:.2}%), alpha {}\n  a message completes {}, {}\n\n",
        r.scenario,
        thousands(r.gpus as u64),
        r.seed,
        t.kind,
        t.lossless,
        t.routing.name(),
        t.mtu_bytes,
        t.header_bytes,
        t.goodput * 100.0,
        time(t.alpha_ns),
        if t.completion == "ack" {
            "when its acknowledgement is back at the sender"
        } else {
            "when its last byte is at the receiver"
        },
        if t.forwarding == "store-and-forward" || r.packet.is_some() {
            "store-and-forward (every link serializes the last packet)"
        } else {
            "cut-through (the last packet serializes once, at the bottleneck)"
        }
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
                (Some(op), Some(a)) => {
                    let how = match &w.protocol {
                        Some(p) => format!("{a}, {p}"),
                        None => a.clone(),
                    };
                    // What the tuner chose: both, or only the protocol when every candidate
                    // had the scenario's algorithm.
                    let one_algo = w.tuner.iter().all(|c| Some(&c.algorithm) == w.algorithm.as_ref());
                    let plugin = w.tuner.iter().find_map(|c| c.plugin_region.as_ref());
                    let what = match (&w.protocol, w.tuner.is_empty(), one_algo) {
                        // A tuner plugin's region picked it: say which.
                        _ if plugin.is_some() => format!("{}: {how}", plugin.map_or("", |p| p.as_str())),
                        (_, true, _) => how,
                        (Some(p), false, true) => format!("{a}, auto: {p}"),
                        (_, false, _) => format!("auto: {how}"),
                    };
                    format!("{op} {} ({what})", meshway_units::Bytes(w.size_bytes))
                }
                _ => format!("{} ({} msgs)", w.kind, thousands(w.messages as u64)),
            };
            tab.row(vec![
                w.name.clone(),
                what,
                thousands(w.ranks as u64),
                opt_time(w.time_ns),
                opt_gbps(w.algbw_gbps),
                opt_gbps(w.busbw_gbps),
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
                for c in &s.collectives {
                    out.push_str(&step_collective(c));
                }
            }
            if w.failed_messages > 0 {
                out.push_str(&format!("\n{}: {} messages FAILED\n", w.name, thousands(w.failed_messages as u64)));
                for f in &w.failures {
                    out.push_str(&format!("  - {f}\n"));
                }
                if !w.step_collectives.is_empty() {
                    out.push_str("  the step's collectives:\n");
                    for c in &w.step_collectives {
                        out.push_str(&format!("  {}", step_collective(c)));
                    }
                }
            }
            if let Some(e) = &w.not_run_after {
                out.push_str(&format!("\n{}: NOT RUN: it starts after {e}, which failed\n", w.name));
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
                rate(l.capacity_bps),
                format!("{}", meshway_units::Bytes(l.carried_bytes)),
                pct(l.peak_utilization),
                pct(l.mean_utilization),
            ]);
        }
        out.push_str(&tab.render());
    }
    for n in &r.notes {
        out.push_str("\nnote: ");
        out.push_str(n);
        out.push('\n');
    }
    if let Some(p) = &r.packet {
        out.push_str(&packet_text(p));
    }
    if r.packet.is_some() {
        out.push_str(&format!(
            "\nEngine (packet level): {} flows, {} events, simulated time {}\n",
            thousands(r.engine_flows as u64),
            thousands(r.events),
            time(r.end_ns)
        ));
        return out;
    }
    // Sweeps run on their own: with nothing else, the main run has nothing to say.
    if r.workloads.is_empty() {
        return out;
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

fn fct_cells(f: Option<&FctSummary>) -> Vec<String> {
    match f {
        Some(f) => vec![
            thousands(f.messages as u64),
            time(f.mean_ns),
            time(f.p99_ns),
            time(f.first_ns),
            time(f.last_ns),
            format!("{:.3}", f.fairness),
        ],
        None => vec!["-".into(); 6],
    }
}

/// The packet level's own tables: completion times per workload, the two rungs side by
/// side (`--fidelity both`), pauses, drops and trims per port, and the deepest queues.
pub fn packet_text(p: &PacketSection) -> String {
    let s = &p.stats;
    let mut out = format!(
        "\nPacket level: {}, {} per packet{}; {}\n",
        s.transport.name(),
        match s.balance {
            meshway_sim::packet::Balance::Ecmp => "ECMP hash per flow, one path",
            meshway_sim::packet::Balance::Spray => "sprayed over equal-cost paths",
            meshway_sim::packet::Balance::Adaptive => "adaptive routing to the shortest queue",
        },
        if p.params.dcqcn.is_some() { ", DCQCN" } else { "" },
        p.completion
    );
    out.push_str(&format!(
        "  {} data packets ({} sent again), {} control packets; {} pauses ({} of port time paused), {} drops, {} trims, {} ECN marks, {} CNPs{}\n",
        thousands(s.data_packets),
        thousands(s.retransmitted_packets),
        thousands(s.control_packets),
        thousands(s.pauses),
        time(s.paused_ns),
        thousands(s.drops),
        thousands(s.trims),
        thousands(s.ecn_marks),
        thousands(s.cnps),
        if s.truncated {
            "; STOPPED at the event limit"
        } else if s.clock_limit {
            "; STOPPED at 100 days of simulated time"
        } else if s.deadlock {
            "; STOPPED: nothing was sent for a retransmission timeout while ports stayed paused or out of credits"
        } else {
            ""
        }
    ));
    let mut tab = Table::new(&["workload", "messages", "mean FCT", "p99", "first", "last", "fairness"]);
    for (name, f) in &p.fct {
        let mut row = vec![name.clone()];
        row.extend(fct_cells(f.as_ref()));
        tab.row(row);
    }
    out.push('\n');
    out.push_str(&tab.render());
    if !p.rungs.is_empty() {
        out.push_str("\nFlow level beside packet level (--fidelity both)\n");
        let mut tab =
            Table::new(&["workload", "flow level", "packet level", "difference", "flow last FCT", "packet last FCT"]);
        for r in &p.rungs {
            tab.row(vec![
                r.workload.clone(),
                opt_time(r.flow_time_ns),
                opt_time(r.packet_time_ns),
                r.difference.map_or_else(|| "-".into(), |d| format!("{:+.1}%", d * 100.0)),
                opt_time(r.flow_fct.as_ref().map(|f| f.last_ns)),
                opt_time(r.packet_fct.as_ref().map(|f| f.last_ns)),
            ]);
        }
        out.push_str(&tab.render());
    }
    let mut ports: Vec<_> =
        s.ports.iter().filter(|x| x.pauses_sent > 0 || x.drops > 0 || x.trims > 0 || x.paused_ns > 0).collect();
    if !ports.is_empty() {
        ports.sort_by(|a, b| {
            b.paused_ns
                .cmp(&a.paused_ns)
                .then(b.drops.cmp(&a.drops))
                .then(b.trims.cmp(&a.trims))
                .then(a.link.cmp(&b.link))
        });
        let most = if ports.len() > 15 { "; the 15 most paused" } else { "" };
        out.push_str(&format!("\nPorts with pauses, drops or trims ({} of them{most})\n", ports.len()));
        let mut tab = Table::new(&["link", "pauses sent up it", "paused", "deepest queue", "drops", "trims"]);
        for x in ports.iter().take(15) {
            tab.row(vec![
                x.link.clone(),
                thousands(x.pauses_sent),
                time(x.paused_ns),
                format!("{}", meshway_units::Bytes(x.max_queue_bytes)),
                thousands(x.drops),
                thousands(x.trims),
            ]);
        }
        out.push_str(&tab.render());
    }
    if !s.series.is_empty() {
        out.push_str(&format!("\nDeepest queues (time series per {} in the JSON)\n", time(s.series[0].interval_ns)));
        let mut tab = Table::new(&["link", "deepest queue", "paused", "sent"]);
        // Deepest first (ties in the simulator's order).
        let mut rows: Vec<&meshway_sim::packet::PortSeries> = s.series.iter().collect();
        rows.sort_by_key(|x| std::cmp::Reverse(x.queue_bytes.iter().copied().max().unwrap_or(0)));
        for x in rows {
            tab.row(vec![
                x.link.clone(),
                format!("{}", meshway_units::Bytes(x.queue_bytes.iter().copied().max().unwrap_or(0))),
                time(x.paused_ns.iter().sum()),
                format!("{}", meshway_units::Bytes(x.tx_bytes.iter().sum())),
            ]);
        }
        out.push_str(&tab.render());
    }
    out
}

/// `meshway simulate --html`: one self-contained page with the text report and charts:
/// completion-time CDFs per workload (from the per-message records), busbw against message
/// size for sweeps, the most utilized links, a training step split into compute and exposed
/// communication, and at packet level the deepest queues and paused time over time.
pub fn sim_html(r: &SimReport) -> String {
    use crate::svg::{esc, line_chart, page, share_bar_chart, stacked_bar, LineChart, Series};
    let fmt_time = |v: f64| time(v.max(0.0).round() as u64);
    let fmt_share = |v: f64| format!("{:.0}%", v * 100.0);
    let mut body = String::new();
    body.push_str(&format!(
        "<p class=\"note\">{} GPUs, seed {}, {} level. Every chart is drawn from the same run as the text below.</p>\n",
        thousands(r.gpus as u64),
        r.seed,
        r.fidelity
    ));
    // Completion-time CDFs, one line per workload.
    if let Some(flows) = &r.flows {
        let mut series = Vec::new();
        for w in &r.workloads {
            let mut t: Vec<f64> = flows
                .iter()
                .filter(|f| f.workload == w.name)
                .filter_map(|f| Some((f.end_ns? - f.start_ns?) as f64))
                .collect();
            if t.is_empty() {
                continue;
            }
            t.sort_by(f64::total_cmp);
            let n = t.len();
            // At most about 400 points per line: every k-th message, and the last.
            let k = n.div_ceil(400).max(1);
            let points =
                (0..n).filter(|i| i % k == k - 1 || i + 1 == n).map(|i| (t[i], (i + 1) as f64 / n as f64)).collect();
            series.push(Series { name: w.name.clone(), points });
        }
        let c = LineChart {
            title: "Message completion times (CDF)",
            x_label: "completion time",
            y_label: "share of messages",
            log_x: false,
            step: true,
            fmt_x: &fmt_time,
            fmt_y: &fmt_share,
        };
        if let Some(svg) = line_chart(&c, &series) {
            body.push_str("<h2>Completion times</h2>\n");
            body.push_str(&svg);
        }
    }
    for s in &r.sweeps {
        let series = vec![Series {
            name: s.name.clone(),
            points: s.rows.iter().filter_map(|x| Some((x.size_bytes as f64, x.busbw_gbytes?))).collect(),
        }];
        let fmt_size = |v: f64| format!("{}", meshway_units::Bytes(v.round() as u64));
        let fmt_gb = crate::format::tick;
        let title = format!("{} {} over {} ranks: bus bandwidth", s.op, s.algorithm, s.ranks);
        let c = LineChart {
            title: &title,
            x_label: "message size",
            y_label: "busbw (GB/s)",
            log_x: true,
            step: false,
            fmt_x: &fmt_size,
            fmt_y: &fmt_gb,
        };
        if let Some(svg) = line_chart(&c, &series) {
            body.push_str(&format!("<h2>Sweep {}</h2>\n", esc(&s.name)));
            body.push_str(&svg);
        }
    }
    for w in &r.workloads {
        if let Some(t) = &w.training {
            let parts = vec![
                ("compute".to_string(), t.compute_only_ns as f64),
                ("exposed communication".to_string(), t.exposed_comm_ns as f64),
            ];
            let title = format!(
                "{}: one step of {} ({:.1}% pipeline bubble, MFU {:.1}%)",
                w.name,
                time(t.step_ns),
                t.bubble_fraction * 100.0,
                t.mfu * 100.0
            );
            if let Some(svg) = stacked_bar(&title, &parts, &fmt_time) {
                body.push_str(&format!("<h2>Training step {}</h2>\n", esc(&w.name)));
                body.push_str(&svg);
            }
            // The step per pipeline stage: forward and backward compute, the gradient
            // all-reduce; the white gaps are the pipeline bubble and communication waited for.
            use meshway_sim::program::StepKind;
            let kinds = [StepKind::Forward, StepKind::Backward, StepKind::GradientAllReduce];
            let stages = t.timeline.iter().map(|x| x.stage + 1).max().unwrap_or(0);
            let lanes: Vec<crate::svg::Lane> = (0..stages.min(32))
                .map(|p| {
                    let segs = t
                        .timeline
                        .iter()
                        .filter(|x| x.stage == p)
                        .map(|x| {
                            let k = kinds.iter().position(|k| *k == x.kind).unwrap_or(0);
                            (x.start_ns as f64, x.end_ns as f64, k)
                        })
                        .collect();
                    (format!("stage {p}"), segs)
                })
                .collect();
            let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
            let title = format!("{}: each pipeline stage (white: bubble and waiting)", w.name);
            if let Some(svg) = crate::svg::lanes(&title, "simulated time", &lanes, &names, &fmt_time) {
                body.push_str(&svg);
            }
        }
    }
    let rows: Vec<(String, f64)> = r.congested_links.iter().map(|l| (l.link.clone(), l.mean_utilization)).collect();
    if let Some(svg) = share_bar_chart("Most utilized links (mean over the run)", &rows) {
        body.push_str("<h2>Hottest links</h2>\n");
        body.push_str(&svg);
    }
    // The five hottest links over time: utilization per interval of the link history.
    let w = r.link_history_interval_ns;
    let series: Vec<Series> = r
        .congested_links
        .iter()
        .filter(|l| !l.history.is_empty() && w > 0)
        .take(5)
        .map(|l| {
            let n = l.history.len();
            Series {
                name: l.link.clone(),
                points: l
                    .history
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| {
                        // The last interval ends with the run.
                        let span = if i + 1 == n { r.end_ns.saturating_sub(w * i as u64).clamp(1, w) } else { w };
                        ((w * i as u64) as f64, b as f64 * 8.0 / (l.capacity_bps.max(1) as f64 * span as f64 / 1e9))
                    })
                    .collect(),
            }
        })
        .collect();
    let c = LineChart {
        title: "Hottest links over time (utilization per interval)",
        x_label: "simulated time",
        y_label: "utilization",
        log_x: false,
        step: true,
        fmt_x: &fmt_time,
        fmt_y: &|v| format!("{:.0}%", v * 100.0),
    };
    if let Some(svg) = line_chart(&c, &series) {
        body.push_str(&svg);
    }
    if let Some(p) = &r.packet {
        let mk = |f: &dyn Fn(&meshway_sim::packet::PortSeries) -> Vec<u64>| -> Vec<Series> {
            // The four deepest queues (the JSON and the table have all of them).
            let mut top: Vec<&meshway_sim::packet::PortSeries> = p.stats.series.iter().collect();
            top.sort_by_key(|x| std::cmp::Reverse(x.queue_bytes.iter().copied().max().unwrap_or(0)));
            top.truncate(4);
            top.into_iter()
                .map(|x| Series {
                    name: x.link.clone(),
                    points: f(x)
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| ((i as u64 * x.interval_ns) as f64, v as f64))
                        .collect(),
                })
                .collect()
        };
        // Each axis in one unit, picked from its largest value, with ticks at round numbers of
        // that unit (decimal steps of bytes labelled in KiB read 97.66KiB).
        let queues = mk(&|x| x.queue_bytes.clone());
        let (per, unit) = axis_unit(&queues, &[(1_073_741_824.0, "GiB"), (1_048_576.0, "MiB"), (1024.0, "KiB")], "B");
        let fmt_queue = |v: f64| format!("{} {unit}", round_label(v));
        let c = LineChart {
            title: &format!("Deepest queues over time ({unit})"),
            x_label: "simulated time",
            y_label: "queue",
            log_x: false,
            step: true,
            fmt_x: &fmt_time,
            fmt_y: &fmt_queue,
        };
        if let Some(svg) = line_chart(&c, &scaled(queues, per)) {
            body.push_str("<h2>Packet level: queues</h2>\n");
            body.push_str(&svg);
        }
        if p.stats.paused_ns > 0 {
            let paused = mk(&|x| x.paused_ns.clone());
            let (per, unit) = axis_unit(&paused, &[(1e9, "s"), (1e6, "ms"), (1e3, "us")], "ns");
            let fmt_paused = |v: f64| format!("{} {unit}", round_label(v));
            let c = LineChart {
                title: &format!("Time paused per interval (PFC, {unit})"),
                x_label: "simulated time",
                y_label: "paused",
                log_x: false,
                step: true,
                fmt_x: &fmt_time,
                fmt_y: &fmt_paused,
            };
            if let Some(svg) = line_chart(&c, &scaled(paused, per)) {
                body.push_str("<h2>Packet level: pauses</h2>\n");
                body.push_str(&svg);
            }
        }
    }
    body.push_str("<h2>Report</h2>\n<pre>");
    body.push_str(&esc(&sim_text(r)));
    body.push_str("</pre>\n");
    page(&format!("meshway simulate: {}", r.scenario), &body)
}

/// The unit of a chart's y axis: the largest of `units` (size, name; largest first) at or
/// below the series' largest value, else `base`.
fn axis_unit(series: &[crate::svg::Series], units: &[(f64, &'static str)], base: &'static str) -> (f64, &'static str) {
    let max = series.iter().flat_map(|s| &s.points).map(|p| p.1).filter(|v| v.is_finite()).fold(0f64, f64::max);
    units.iter().copied().find(|u| max >= u.0).unwrap_or((1.0, base))
}

/// The series with every y value divided by `per`.
fn scaled(series: Vec<crate::svg::Series>, per: f64) -> Vec<crate::svg::Series> {
    series
        .into_iter()
        .map(|s| crate::svg::Series { name: s.name, points: s.points.into_iter().map(|(x, y)| (x, y / per)).collect() })
        .collect()
}

/// An axis tick's number: at most three decimals, trailing zeros dropped ("2.5", "100").
fn round_label(v: f64) -> String {
    let r = (v * 1000.0).round() / 1000.0;
    format!("{}", if r == 0.0 { 0.0 } else { r })
}

/// A size sweep printed as nccl-tests prints it (time in us, bandwidths in GB/s).
pub fn sweep_text(s: &Sweep) -> String {
    let mut out = format!("# {}: {} ({}) over {} ranks\n", s.name, s.op, s.algorithm, s.ranks);
    let auto = s.algorithm == "auto";
    let mut head = vec!["#       size", "count", "type", "time(us)", "algbw(GB/s)", "busbw(GB/s)", "model"];
    if auto {
        head.push("algorithm");
    }
    let mut tab = Table::new(&head);
    for r in &s.rows {
        let mut row = vec![
            format!("{:>13}", r.size_bytes),
            (r.size_bytes / 4).to_string(),
            "float".into(),
            r.time_us.map_or("-".into(), |t| format!("{t:.1}")),
            r.algbw_gbytes.map_or("-".into(), |b| format!("{b:.2}")),
            r.busbw_gbytes.map_or("-".into(), |b| format!("{b:.2}")),
            r.model.clone(),
        ];
        if auto {
            let how =
                if r.protocol.is_empty() { r.algorithm.clone() } else { format!("{}, {}", r.algorithm, r.protocol) };
            // A tuner plugin's region that set it, as the workload table says.
            row.push(match r.tuner.iter().find_map(|c| c.plugin_region.as_ref()) {
                Some(region) => format!("{how} ({region})"),
                None => how,
            });
        }
        tab.row(row);
    }
    out.push_str(&tab.render());
    for r in s.rows.iter().filter(|r| r.failure.is_some()) {
        out.push_str(&format!("# {} bytes did not complete: {}\n", r.size_bytes, r.failure.as_deref().unwrap_or("")));
    }
    out
}

/// Per-flow CSV: workload, src, dst, bytes, start_ns, end_ns, fct_ns, failed. Fields are
/// written by the `csv` crate: one with a comma, a quote or a line break is quoted (RFC 4180).
pub fn flows_csv(r: &SimReport) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut write = |rec: [&str; 8]| w.write_record(rec);
    let opt = |v: Option<u64>| v.map_or(String::new(), |x| x.to_string());
    // Writing into a Vec cannot fail, and every record has the header's eight fields.
    let _ = write(["workload", "src", "dst", "bytes", "start_ns", "end_ns", "fct_ns", "failed"]);
    for f in r.flows.iter().flatten() {
        let fct = match (f.start_ns, f.end_ns) {
            (Some(s), Some(e)) => (e - s).to_string(),
            _ => String::new(),
        };
        let _ = write([
            &f.workload,
            &f.src,
            &f.dst,
            &f.bytes.to_string(),
            &opt(f.start_ns),
            &opt(f.end_ns),
            &fct,
            f.failed.as_deref().unwrap_or(""),
        ]);
    }
    crate::csv_text(w)
}

/// The progress bar `meshway simulate` shows on a terminal: `done` of `total` flows after
/// `elapsed_s` seconds (no newline: the line is redrawn after a carriage return).
/// The progress line before the engine starts: programs written, the tuner's candidates run.
pub fn setup_line(elapsed_s: f64) -> String {
    format!("\r  setting up (workloads, the tuner's candidates)  {elapsed_s:.0}s")
}

pub fn progress_line(done: u64, total: u64, elapsed_s: f64) -> String {
    let frac = if total == 0 { 1.0 } else { done as f64 / total as f64 };
    let width = 30;
    let filled = ((frac * width as f64) as usize).min(width);
    format!(
        "\r  simulating [{}{}] {:5.1}%  {}/{} flows  {:.0}s",
        "#".repeat(filled),
        " ".repeat(width - filled),
        frac * 100.0,
        done,
        total,
        elapsed_s
    )
}

/// One of a training step's collectives, as a line: what, size, group, algorithm, protocol
/// and its time alone.
fn step_collective(c: &meshway_sim::program::StepCollective) -> String {
    let proto = if c.protocol.is_empty() { String::new() } else { format!(", {}", c.protocol) };
    let alone = c.alone_ns.map(|t| format!(", {} alone", time(t))).unwrap_or_default();
    format!(
        "  {} {} over {} GPUs: {}{proto}{alone}\n",
        c.what,
        meshway_units::Bytes(c.size_bytes),
        thousands(u64::from(c.ranks)),
        c.algorithm
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshway_fabric::{Catalog, Scenario};
    use meshway_sim::simulate::{simulate, Options, Setup};

    fn report(scenario: &str) -> SimReport {
        let cat = Catalog::builtin();
        let s = Scenario::parse(scenario, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        let f = s.build(&cat).unwrap_or_else(|e| panic!("{e}"));
        let read = |_: &str| -> Result<String, String> { Err("no files".into()) };
        let setup = Setup { scenario: &s, catalog: &cat, fabric: &f, read_file: &read };
        let opts = Options { flows: true, no_ideal: true, ..Options::default() };
        simulate(&setup, &opts, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn flows_csv_round_trips_commas_and_quotes() {
        let r = report(
            r#"
[fabric]
kind = "leaf-spine"
gpus = 8
gpus-per-host = 1
[[workload]]
name = "shuffle, \"phase\" 1"
kind = "permutation"
size = "1MiB"
"#,
        );
        let text = flows_csv(&r);
        assert!(text.starts_with("workload,src,dst,bytes,start_ns,end_ns,fct_ns,failed\n"), "{text}");
        assert!(text.contains("\"shuffle, \"\"phase\"\" 1\",gpu-"), "{text}");
        let mut rd = csv::Reader::from_reader(text.as_bytes());
        let read: Vec<csv::StringRecord> = rd.records().collect::<Result<_, _>>().unwrap();
        let flows: Vec<_> = r.flows.iter().flatten().collect();
        assert_eq!(read.len(), flows.len());
        assert!(!flows.is_empty());
        for (rec, f) in read.iter().zip(flows) {
            let opt = |v: Option<u64>| v.map_or(String::new(), |x| x.to_string());
            let fct = f.start_ns.zip(f.end_ns).map(|(s, e)| e - s);
            let want = [
                f.workload.clone(),
                f.src.clone(),
                f.dst.clone(),
                f.bytes.to_string(),
                opt(f.start_ns),
                opt(f.end_ns),
                opt(fct),
                f.failed.clone().unwrap_or_default(),
            ];
            assert_eq!(rec.iter().collect::<Vec<_>>(), want.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(&rec[0], "shuffle, \"phase\" 1");
        }
    }

    /// A small sweep (busbw below 0.2 GB/s) labelled its y axis "0" alone: every tick
    /// printed as "0" and the repeats were dropped.
    #[test]
    fn a_slow_sweeps_axis_labels_every_tick() {
        let r = report(
            r#"
[fabric]
kind = "leaf-spine"
gpus = 4
gpus-per-host = 1
nic = "100Gbps"
[[workload]]
name = "c"
kind = "collective"
op = "all-reduce"
sweep-from = "1KiB"
sweep-to = "4KiB"
"#,
        );
        let top = r.sweeps[0].rows.iter().filter_map(|x| x.busbw_gbytes).fold(0.0, f64::max);
        assert!(top > 0.05 && top < 2.5, "{top} GB/s");
        let page = sim_html(&r);
        let chart = &page[page.find("bus bandwidth</text>").unwrap()..];
        let chart = &chart[..chart.find("</svg>").unwrap()];
        let labels: Vec<&str> =
            chart.split(r#"text-anchor="end">"#).skip(1).map(|t| &t[..t.find('<').unwrap()]).collect();
        assert!(labels.len() >= 3, "{labels:?}");
        assert_eq!(labels[0], "0");
        let mut seen = labels.clone();
        seen.dedup();
        assert_eq!(seen, labels, "no label repeats");
        // Each label is the value of its tick: 0, then steps of one size.
        let values: Vec<f64> = labels.iter().map(|l| l.parse().unwrap()).collect();
        let step = values[1];
        assert!(step > 0.0 && step < 1.0, "{labels:?}");
        for (i, v) in values.iter().enumerate() {
            assert!((v - step * i as f64).abs() < 1e-9, "{labels:?}");
        }
    }

    #[test]
    fn progress_bar() {
        assert_eq!(
            progress_line(1, 4, 2.4),
            format!("\r  simulating [{}{}]  25.0%  1/4 flows  2s", "#".repeat(7), " ".repeat(23))
        );
        assert!(progress_line(0, 0, 0.0).contains("[##############################] 100.0%"));
    }
}
