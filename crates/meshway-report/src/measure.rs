//! Text of the measurement commands: `reflect`, `ping` (per reply and summary, plain or JSON
//! lines), `perf`, `trace`, `agent --check` and `history` (table, CSV, forecast).

use crate::format::{pct3, rate_f64, span, span_f64};
use meshway_agent::agent::rfc3339;
use meshway_agent::history::HistoryReport;
use meshway_agent::perf::{IntervalReport, PerfReport};
use meshway_agent::ping::{PingEvent, PingKind, PingReport};
use meshway_agent::reflect::ReflectTotals;
use meshway_agent::trace::TraceReport;
use meshway_probe::echo::{EchoEvent, ReplyKind};
use meshway_probe::objective::Metric;
use meshway_probe::stats::Summary;
use meshway_units::{Bytes, Nanos};
use std::fmt::Write as _;

// ---------------------------------------------------------------------------------------------
// reflect

/// The reflector's counters when it stops.
pub fn reflect_text(t: &ReflectTotals) -> String {
    format!(
        "received {}, answered {}, malformed {}, failed authentication {}, looping {}, rate-limited {}, test-dropped {}, send errors {}, ptp-format senders {}\n",
        t.received,
        t.answered,
        t.malformed,
        t.auth_failures,
        t.looped,
        t.rate_limited,
        t.test_dropped,
        t.send_errors,
        t.ptp_format
    )
}

// ---------------------------------------------------------------------------------------------
// ping

/// What each reply line of `meshway ping` names: the kind of probe, the target as given and
/// the probe size.
#[derive(Debug, Clone)]
pub struct LineCtx {
    pub kind: PingKind,
    pub target: String,
    pub size_bytes: usize,
}

/// One line per reply or loss, as ping prints it.
pub fn reply_line(r: &LineCtx, e: &PingEvent) -> String {
    match &e.echo {
        EchoEvent::Lost { seq } => format!("seq={seq} lost\n"),
        EchoEvent::Refused { seq } => format!("seq={seq} refused (counted as lost)\n"),
        EchoEvent::Reply { seq, kind, rtt_ns, forward_ns, backward_ns } => {
            let mut s = match r.kind {
                PingKind::Udp | PingKind::Icmp => format!("{} bytes from {}: seq={seq}", r.size_bytes, r.target),
                PingKind::Tcp => format!("connected to {}: seq={seq}", r.target),
                PingKind::Http => format!("{}: seq={seq}", r.target),
            };
            if let Some(h) = e.http {
                let _ = write!(
                    s,
                    " status={} connect={}{} first-byte={} total={} body={}",
                    h.status,
                    span(h.connect_ns),
                    h.tls_ns.map_or(String::new(), |t| format!(" tls={}", span(t))),
                    span(h.first_byte_ns),
                    span(h.total_ns),
                    Bytes(h.body_bytes)
                );
            } else if let Some(rtt) = rtt_ns {
                let _ = write!(s, " rtt={}", span(*rtt));
            }
            if let (Some(f), Some(b)) = (forward_ns, backward_ns) {
                let _ = write!(s, " forward={} backward={}", signed_span(*f), signed_span(*b));
            }
            match kind {
                ReplyKind::Ok => {}
                ReplyKind::Reordered => s.push_str(" (reordered)"),
                ReplyKind::Duplicate => s.push_str(" (duplicate)"),
                ReplyKind::Late => s.push_str(" (late: counted as lost)"),
                ReplyKind::Unknown => s.push_str(" (unknown)"),
            }
            s.push('\n');
            s
        }
    }
}

/// A signed span with its unit, as [`span`] writes it ("-1.5ms"): a one-way delay, which the
/// clocks' error can make negative.
fn signed_span(ns: i64) -> String {
    if ns < 0 {
        format!("-{}", span(ns.unsigned_abs()))
    } else {
        span(ns.unsigned_abs())
    }
}

/// The statistics of a set of delays (`label` names them: "rtt").
pub fn summary_lines(label: &str, m: &Summary) -> String {
    format!(
        "{label} min/mean/max/stddev = {}/{}/{}/{}\n\
         {label} p50/p90/p99/p99.9 = {}/{}/{}/{} (histogram precision ±{:.1}%)\n\
         jitter rfc3550 = {}, mean|Δ| = {}, p95−p50 = {}\n",
        span(m.min_ns),
        span_f64(m.mean_ns),
        span(m.max_ns),
        span_f64(m.stddev_ns),
        span(m.p50_ns),
        span(m.p90_ns),
        span(m.p99_ns),
        span(m.p999_ns),
        m.percentile_relative_error * 100.0,
        span_f64(m.jitter_rfc3550_ns),
        span_f64(m.jitter_mean_abs_diff_ns),
        span(m.jitter_p95_p50_ns),
    )
}

/// The closing lines of `meshway ping`: counts, delay statistics, HTTP phases, one-way delay.
pub fn ping_summary(r: &PingReport) -> String {
    let c = &r.echo.counts;
    let mut s = format!(
        "--- {} {} ping ({}) ---\n{} sent, {} received, {} lost ({} loss), {} duplicates, {} reordered, {} late\n",
        r.target,
        format!("{:?}", r.kind).to_lowercase(),
        r.address,
        c.sent,
        c.received,
        c.lost,
        pct3(r.echo.loss_ratio),
        c.duplicates,
        c.reordered,
        c.late
    );
    if c.refused > 0 {
        let _ = writeln!(s, "{} refused by the target at once (a TCP reset), counted as lost", c.refused);
    }
    // Only a stopped session (Ctrl-C) ends with probes still waiting for an answer.
    let pending = c.sent.saturating_sub(c.received + c.lost);
    if pending > 0 {
        let _ = writeln!(s, "{pending} unanswered when stopped (neither received nor lost)");
    }
    if c.implausible > 0 {
        let _ = writeln!(
            s,
            "{} answers left out as implausible (received before their probe was sent, or a stated hold longer than the round trip)",
            c.implausible
        );
    }
    if let Some(m) = &r.echo.rtt {
        s.push_str(&summary_lines("rtt", m));
    }
    if let Some(h) = &r.http {
        for (label, m) in [("connect", &h.connect), ("tls", &h.tls), ("first-byte", &h.first_byte)] {
            if let Some(m) = m {
                let _ = writeln!(
                    s,
                    "{label} min/p50/p99/max = {}/{}/{}/{}",
                    span(m.min_ns),
                    span(m.p50_ns),
                    span(m.p99_ns),
                    span(m.max_ns)
                );
            }
        }
        let st: Vec<String> = h.status.iter().map(|(c, n)| format!("{c}×{n}")).collect();
        if !st.is_empty() {
            // An error status is an answer, timed as any other, but not a healthy service:
            // say how many (a probe exporter would fail them).
            let answers: u64 = h.status.iter().map(|(_, n)| n).sum();
            let errors: u64 = h.status.iter().filter(|(c, _)| *c >= 400).map(|(_, n)| n).sum();
            let note = if errors > 0 {
                format!(" ({errors} of {answers} answers are errors, 4xx or 5xx)")
            } else {
                String::new()
            };
            let _ = writeln!(s, "status {}{note}", st.join(" "));
        }
        if let Some(e) = &h.last_error {
            let _ = writeln!(s, "last error: {e}");
        }
    }
    if let Some(e) = &r.last_error {
        let _ = writeln!(s, "last error: {e}");
    }
    if r.kind == PingKind::Udp {
        match (&r.echo.forward, &r.echo.backward) {
            (Some(f), Some(b)) => {
                let _ = writeln!(
                    s,
                    "one-way forward p50/p99 = {}/{}, backward p50/p99 = {}/{} (clocks synchronized)",
                    span(f.p50_ns),
                    span(f.p99_ns),
                    span(b.p50_ns),
                    span(b.p99_ns)
                );
            }
            _ if r.echo.one_way_implausible > 0 => {
                let _ = writeln!(
                    s,
                    "one-way delay: not reported, both ends claim synchronized clocks but {} answer(s) had implausible \
                     one-way delays (one below minus the round trip by more than {}): discarded",
                    r.echo.one_way_implausible,
                    span(meshway_probe::echo::STAMP_SLACK_NS.unsigned_abs())
                );
            }
            _ => s.push_str("one-way delay: not reported, clocks not synchronized (--clock-synced on both ends)\n"),
        }
    }
    s
}

/// `meshway ping --json`: the report and every reply.
pub fn ping_json(report: &PingReport, replies: &[PingEvent]) -> Result<String, serde_json::Error> {
    crate::json(&serde_json::json!({ "report": report, "replies": replies }))
}

/// The closing line of `meshway ping --ndjson`.
pub fn ping_ndjson_summary(report: &PingReport) -> Result<String, serde_json::Error> {
    crate::json_line(&serde_json::json!({ "event": "summary", "report": report }))
}

// ---------------------------------------------------------------------------------------------
// perf

/// One interval line of `meshway perf` (the client's view).
pub fn perf_interval_line(iv: &IntervalReport) -> String {
    format!(
        "{:6.2}-{:6.2}s  sent {:>10} {:>14}  received {:>10} {:>14}\n",
        iv.start_secs,
        iv.end_secs,
        Bytes(iv.sent_bytes).to_string(),
        rate_f64(iv.sent_bps),
        Bytes(iv.received_bytes).to_string(),
        rate_f64(iv.received_bps)
    )
}

/// The closing lines of `meshway perf`.
pub fn perf_text(r: &PerfReport) -> String {
    let mut s = format!(
        "--- {} {}, {} stream(s), {} per write ---\n",
        r.server,
        format!("{:?} {:?}", r.protocol, r.direction).to_lowercase(),
        r.streams,
        Bytes(r.size_bytes as u64)
    );
    for (label, f) in [("forward (client→server)", &r.forward), ("reverse (server→client)", &r.reverse)] {
        if let Some(f) = f {
            let _ = writeln!(
                s,
                "{label}: sent {}, received {} in {}, throughput {}",
                Bytes(f.sent_bytes),
                Bytes(f.received_bytes),
                // A short transfer's span is microseconds: "0.000s" read as a division by 0.
                span_f64(f.receive_secs * 1e9),
                // None: bytes came in one read, so the span is too short to time.
                f.throughput_bps.map_or_else(|| "n/a (too short to time)".to_string(), rate_f64)
            );
        }
    }
    if let Some(u) = &r.udp {
        let _ = writeln!(
            s,
            "udp: target {}, {} sent, {} received, {} lost ({}), {} duplicates, {} reordered, jitter rfc3550 {}, queueing p99 {}",
            rate_f64(r.udp_target_rate_bps.unwrap_or(0) as f64),
            u.sent,
            u.received,
            u.lost,
            pct3(u.loss_ratio),
            u.duplicates,
            u.reordered,
            span_f64(u.jitter_rfc3550_ns),
            span(u.queueing_p99_ns)
        );
    }
    let _ = writeln!(s, "cpu: client {:.1}%, server {:.1}% of one core", r.client_cpu_percent, r.server_cpu_percent);
    s
}

// ---------------------------------------------------------------------------------------------
// trace

/// The `meshway trace` table: one line per hop and flow.
pub fn trace_text(r: &TraceReport) -> String {
    use meshway_probe::trace::LossKind;
    let mut s = format!(
        "trace to {} ({}, {} rounds, {} flow{})\n{:>3} {:>4}  {:<16} {:>6} {:>5}  {:>10} {:>10} {:>10} {:>10}  note\n",
        r.target,
        r.protocol,
        r.rounds,
        r.flows,
        if r.flows == 1 { "" } else { "s" },
        "hop",
        "flow",
        "address",
        "loss",
        "sent",
        "min",
        "p50",
        "p99",
        "max"
    );
    for h in &r.hops {
        let addr = h.addresses.first().map_or("*".to_string(), |a| a.0.to_string());
        let (min, p50, p99, max) = h.rtt.as_ref().map_or(("-".into(), "-".into(), "-".into(), "-".into()), |m| {
            (span(m.min_ns), span(m.p50_ns), span(m.p99_ns), span(m.max_ns))
        });
        let mut note = match h.loss_kind {
            LossKind::None => String::new(),
            LossKind::IcmpRateLimit => "icmp rate limit (not forwarding loss)".into(),
            LossKind::Forwarding => "loss persists to later hops".into(),
        };
        if h.destination {
            note = if note.is_empty() { "destination".into() } else { format!("destination; {note}") };
        }
        if h.addresses.len() > 1 {
            let others: Vec<String> = h.addresses[1..].iter().map(|a| a.0.to_string()).collect();
            note.push_str(&format!(" also {}", others.join(", ")));
        }
        let _ = writeln!(
            s,
            "{:>3} {:>4}  {:<16} {:>5.1}% {:>5}  {:>10} {:>10} {:>10} {:>10}  {}",
            h.ttl,
            h.flow,
            addr,
            h.loss_ratio * 100.0,
            h.sent,
            min,
            p50,
            p99,
            max,
            note.trim()
        );
    }
    if r.flows > 1 {
        let _ = writeln!(s, "{} distinct path(s) across {} flows", r.paths.len(), r.flows);
    }
    s
}

// ---------------------------------------------------------------------------------------------
// agent and history

/// `meshway agent --check` on a valid file.
pub fn agent_check_text(config: &std::path::Path, targets: usize) -> String {
    format!("{}: ok, {} targets\n", config.display(), targets)
}

/// A value of `m` as history shows it: a percent for loss, a rate for throughput, a span
/// otherwise.
pub fn metric_text(m: Metric, v: f64) -> String {
    match m {
        Metric::ErrorRatio => format!("{v:.3e}"),
        Metric::OpticsLevel | Metric::Anomaly => format!("{v}"),
        Metric::RxPower => format!("{v:.2}dBm"),
        m if m.is_ratio() => pct3(v),
        Metric::ThroughputMin => rate_f64(v),
        _ => span_f64(v),
    }
}

/// `meshway history` without a target: the targets in the database and their sample counts.
pub fn history_targets_text(targets: &[(String, u64)]) -> String {
    let mut s = String::from("target                           samples\n");
    for (t, n) in targets {
        let _ = writeln!(s, "{t:<32} {n:>7}");
    }
    s
}

/// `meshway history --csv`: one row per point of the series.
pub fn history_csv(r: &HistoryReport) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let o = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    let f = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    // Writing into a Vec cannot fail, and every record has the header's eleven fields.
    let _ = w.write_record([
        "start",
        "value",
        "sent",
        "lost",
        "min_ns",
        "p50_ns",
        "p90_ns",
        "p99_ns",
        "max_ns",
        "jitter_ns",
        "value_min",
    ]);
    for p in &r.series {
        let x = &p.rollup;
        let _ = w.write_record([
            rfc3339(p.start_ns),
            f(p.value),
            x.sent.to_string(),
            x.lost.to_string(),
            o(x.min_ns),
            o(x.p50_ns),
            o(x.p90_ns),
            o(x.p99_ns),
            o(x.max_ns),
            f(x.jitter_ns),
            f(x.value_min),
        ]);
    }
    crate::csv_text(w)
}

/// `meshway history --target T`: the window's statistics, the series and the forecast.
pub fn history_text(r: &HistoryReport) -> String {
    let metric = r.metric;
    let mut s = format!(
        "{} {} from {} to {} ({} points)\n",
        r.target,
        metric.name(),
        rfc3339(r.from_ns),
        rfc3339(r.to_ns),
        r.series.len()
    );
    let w = &r.summary;
    let _ = writeln!(s, "window: {} probes, {} lost ({})", w.sent, w.lost, pct3(w.loss_ratio));
    if r.implausible_rows > 0 {
        let _ = writeln!(
            s,
            "note: {} rows left out as impossible (negative counts or delays, more lost than sent, minimum above maximum, percentiles out of order, values beyond 1e18): the database was edited or damaged",
            r.implausible_rows
        );
    }
    if let Some(m) = &w.rtt {
        s.push_str(&summary_lines("rtt", m));
    }
    let _ = writeln!(s, "{:<26} {:>14} {:>7} {:>6}", "start", metric.name(), "sent", "lost");
    for p in &r.series {
        let v = p.value.map_or("-".to_string(), |v| metric_text(metric, v));
        let _ = writeln!(s, "{:<26} {:>14} {:>7} {:>6}", rfc3339(p.start_ns), v, p.rollup.sent, p.rollup.lost);
    }
    if let Some(f) = &r.forecast {
        let per_day = f.fit.slope_per_s * 86_400.0;
        let _ = writeln!(
            s,
            "forecast: trend {} per day (r² {}, {} points), threshold {}",
            if per_day >= 0.0 {
                format!("+{}", metric_text(metric, per_day))
            } else {
                format!("-{}", metric_text(metric, -per_day))
            },
            f.fit.r_squared.map_or_else(|| "n/a, a constant series".to_string(), |r| format!("{r:.3}")),
            f.fit.n,
            metric_text(metric, f.threshold)
        );
        if f.already_past {
            s.push_str("forecast: the trend is already past the threshold\n");
        } else {
            if let Some(e) = f.season_extreme {
                let _ = writeln!(
                    s,
                    "forecast: seasonal: the line through the deseasonalised series, plus the season's {} ({}{})",
                    if metric.is_floor() { "trough" } else { "peak" },
                    if e >= 0.0 { "+" } else { "-" },
                    metric_text(metric, e.abs())
                );
            }
            match f.expected_ns {
                Some(t) => {
                    let days = t.saturating_sub(r.to_ns) as f64 / 86_400e9;
                    let _ = writeln!(
                        s,
                        "forecast: crosses at {} (in about {} days; 95% interval {} .. {})",
                        rfc3339(t),
                        if days >= 10.0 { format!("{days:.0}") } else { format!("{days:.1}") },
                        f.earliest_ns.map_or("-".into(), rfc3339),
                        f.latest_ns.map_or("beyond the horizon".into(), rfc3339)
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "forecast: the trend does not reach the threshold within {}{}",
                        Nanos(f.horizon_ns),
                        f.earliest_ns.map_or(String::new(), |t| format!(" (the 95% interval does at {})", rfc3339(t)))
                    );
                }
            }
        }
    }
    if let Some(a) = &r.anomalies {
        let _ = writeln!(
            s,
            "anomalies: {} points off by more than 5 sigma, {} level changes (noise sigma {}, windows of {} points{})",
            a.points.len(),
            a.changes.len(),
            metric_text(metric, a.sigma),
            a.window_points,
            a.season_s.map_or(String::new(), |p| format!(", season {}", Nanos((p * 1e9) as u64)))
        );
        for c in &a.changes {
            let _ = writeln!(
                s,
                "  change  {}  {} -> {} ({:+.1} standard errors)",
                rfc3339(c.at_ns),
                metric_text(metric, c.before),
                metric_text(metric, c.after),
                c.score
            );
        }
        for p in &a.points {
            let _ = writeln!(
                s,
                "  point   {}  {} where {} was expected ({:+.1} sigma)",
                rfc3339(p.at_ns),
                metric_text(metric, p.value),
                metric_text(metric, p.expected),
                p.z
            );
        }
    }
    s
}

/// `history --html`: the RTT of each interval as smokeping draws it (min to max, median to
/// p90, the median line, loss marks), then the text report.
pub fn history_html(r: &HistoryReport) -> String {
    use crate::svg;
    let t0 = r.series.first().map_or(r.from_ns, |p| p.start_ns);
    let pts: Vec<svg::BandPoint> = r
        .series
        .iter()
        .filter_map(|p| {
            let ro = &p.rollup;
            let ms = |v: u64| v as f64 / 1e6;
            Some(svg::BandPoint {
                x: (p.start_ns.saturating_sub(t0)) as f64 / 1e9,
                min: ms(ro.min_ns?),
                p50: ms(ro.p50_ns?),
                p90: ms(ro.p90_ns.or(ro.p50_ns)?),
                max: ms(ro.max_ns?),
                loss: if ro.sent > 0 { ro.lost as f64 / ro.sent as f64 } else { 0.0 },
            })
        })
        .collect();
    let secs = |x: f64| {
        if x >= 7200.0 {
            format!("{:.1}h", x / 3600.0)
        } else if x >= 120.0 {
            format!("{:.0}min", x / 60.0)
        } else {
            format!("{x:.0}s")
        }
    };
    let title = format!("{}: round-trip time per {} interval", r.target, format!("{:?}", r.step).to_lowercase());
    let chart = svg::band_chart(&title, &format!("time since {}", rfc3339(t0)), "RTT (ms)", &pts, &secs, &|v| {
        format!("{v:.2}")
    })
    .unwrap_or_else(|| "<p>No answered probes in this window.</p>".to_string());
    let body = format!("{chart}\n<pre>{}</pre>", svg::esc(&history_text(r)));
    svg::page(&format!("meshway history: {}", r.target), &body)
}

// ---------------------------------------------------------------------------------------------
// optics

/// A limit at the reading's precision (tenths), without a trailing ".0": a 74.6 °C limit
/// printed as 75 sat above a 74.7 °C reading flagged as over it.
fn tenths(v: f64) -> String {
    let t = format!("{v:.1}");
    match t.strip_suffix(".0") {
        Some("-0") => "0".into(),
        Some(whole) => whole.to_string(),
        None => t,
    }
}

fn level_word(l: meshway_probe::optics::Level) -> &'static str {
    use meshway_probe::optics::Level;
    match l {
        Level::Ok => "ok",
        Level::Warning => "WARNING",
        Level::Alarm => "ALARM",
    }
}

/// A power in mW and dBm ("0.501 mW  -3.00 dBm", or "no light").
fn power_text(mw: f64) -> String {
    match meshway_probe::optics::dbm(mw) {
        Some(d) => format!("{mw:.4} mW {d:>6.2} dBm"),
        None => "no light".into(),
    }
}

/// `meshway optics`: identity, monitors against the module's own thresholds, lanes, coherent
/// (VDM) observables, flags and checksums.
pub fn optics_text(source: &str, m: &meshway_probe::optics::Module) -> String {
    use meshway_probe::optics::{Measure, Thresholds};
    let mut s = format!(
        "{source}: {} ({} {}){}\n",
        m.identifier_name,
        m.standard.name(),
        m.revision,
        m.module_state.map(|st| format!(", module state {st}")).unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "  vendor {}  part {}  rev {}  serial {}  date {}  OUI {}",
        m.vendor, m.part_number, m.vendor_revision, m.serial, m.date_code, m.vendor_oui
    );
    let lim = |t: Option<&Thresholds>, f: &dyn Fn(f64) -> String| {
        t.map(|t| {
            format!("  (warn {} .. {}, alarm {} .. {})", f(t.low_warn), f(t.high_warn), f(t.low_alarm), f(t.high_alarm))
        })
        .unwrap_or_default()
    };
    if let Some(t) = m.temperature_c {
        let _ = writeln!(s, "  temperature {t:.1} °C{}", lim(m.threshold(Measure::Temperature), &|v| tenths(v)));
    }
    if let Some(v) = m.supply_v {
        let _ =
            writeln!(s, "  supply      {v:.3} V{}", lim(m.threshold(Measure::SupplyVoltage), &|v| format!("{v:.2}")));
    }
    if !m.lanes.is_empty() {
        let _ = writeln!(
            s,
            "  lane  tx bias      tx power                rx power{}",
            match m.rx_power_average {
                Some(false) => " (OMA)",
                _ => "",
            }
        );
        for l in &m.lanes {
            let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map(f).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "  {:<4}  {:<11}  {:<22}  {}",
                l.lane,
                opt(l.tx_bias_ma, &|v| format!("{v:.2} mA")),
                opt(l.tx_power_mw, &power_text),
                opt(l.rx_power_mw, &power_text)
            );
        }
        // Limits in dBm to the readings' two decimals: a -8.155 dBm limit printed as -8.2 beside
        // a -8.16 dBm reading read as a reading within it. A 0 mW limit (a low bound a module
        // leaves unset) is "no light", as a reading of 0 is.
        let dbm = |v: f64| meshway_probe::optics::dbm(v).map_or("no light".into(), |d| format!("{d:.2}"));
        for (m_, name) in [(Measure::TxPower, "tx power dBm"), (Measure::RxPower, "rx power dBm")] {
            if let Some(t) = m.threshold(m_) {
                let _ = writeln!(s, "  {name}{}", lim(Some(t), &dbm));
            }
        }
        if let Some(t) = m.threshold(Measure::TxBias) {
            let _ = writeln!(s, "  tx bias mA{}", lim(Some(t), &|v| format!("{v:.1}")));
        }
    }
    if !m.vdm.is_empty() {
        s.push_str("  diagnostics (VDM)\n");
        for v in &m.vdm {
            let val = if v.unit.is_empty() { format!("{:.3e}", v.value) } else { format!("{:.2} {}", v.value, v.unit) };
            let status = match (v.level, v.thresholds) {
                (Some(l), Some(t)) => format!(
                    "{} (warn {} .. {}, alarm {} .. {})",
                    level_word(l),
                    short(t.low_warn),
                    short(t.high_warn),
                    short(t.low_alarm),
                    short(t.high_alarm)
                ),
                _ => String::new(),
            };
            let line = format!("    {:<36} lane {:<2} {:<16} {status}", v.name, v.lane, val);
            let _ = writeln!(s, "{}", line.trim_end());
        }
    }
    if m.worst() == meshway_probe::optics::Level::Ok {
        // Pages the image lacks were not read: no claim for them.
        s.push_str(if m.notes.is_empty() {
            "  no warnings or alarms\n"
        } else {
            "  no warnings or alarms in the pages read (see the notes)\n"
        });
    } else {
        for v in m.vdm.iter().filter(|v| v.level.is_some_and(|l| l != meshway_probe::optics::Level::Ok)) {
            let _ = writeln!(
                s,
                "  {} {} lane {} (the module's VDM threshold)",
                level_word(v.level.unwrap_or(meshway_probe::optics::Level::Ok)),
                v.name,
                v.lane
            );
        }
        for f in &m.findings {
            let status = f.measure.status_level().is_some();
            let _ = writeln!(
                s,
                "  {} {}{}{} ({})",
                level_word(f.level),
                f.measure.name(),
                if status { String::new() } else { format!(" {}", f.side) },
                f.lane.map(|l| format!(" lane {l}")).unwrap_or_default(),
                match (status, f.latched_flag) {
                    (true, _) if f.measure == meshway_probe::optics::Measure::ModuleFault => "the module state",
                    (true, _) => "the module's status flag",
                    (false, true) => "the module's latched flag",
                    (false, false) => "value against the module's threshold",
                }
            );
        }
    }
    let bad: Vec<String> = m
        .checksums
        .iter()
        .filter(|c| !c.ok())
        .map(|c| {
            format!(
                "{} at byte {} is 0x{:02x}, bytes {}-{} sum to 0x{:02x}",
                c.name, c.at, c.stored, c.range.0, c.range.1, c.computed
            )
        })
        .collect();
    if bad.is_empty() {
        let _ = writeln!(s, "  checksums ok ({})", m.checksums.iter().map(|c| c.name).collect::<Vec<_>>().join(", "));
    } else {
        for b in bad {
            let _ = writeln!(s, "  CHECKSUM MISMATCH: {b}: the image is corrupt or was misread");
        }
    }
    s
}

fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() < 0.01 || v.abs() >= 1e5) {
        format!("{v:.2e}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_carry_their_unit() {
        assert_eq!(metric_text(Metric::Loss, 0.00125), "0.125%");
        assert_eq!(metric_text(Metric::ThroughputMin, 99.6), rate_f64(100.0));
        assert_eq!(metric_text(Metric::RttP99, 1_500_000.4), span(1_500_000));
    }

    /// Temperature limits at the reading's tenths: a 74.6 °C limit printed as 75 sat above
    /// a 74.7 °C reading flagged as over it.
    #[test]
    fn temperature_limits_keep_their_tenths() {
        let t: Vec<String> = [74.59765625, 75.0, -5.5, 0.4, -0.02].into_iter().map(tenths).collect();
        assert_eq!(t, ["74.6", "75", "-5.5", "0.4", "0"]);
    }

    fn udp_report(echo: meshway_probe::echo::EchoReport) -> PingReport {
        PingReport {
            target: "t".into(),
            address: "127.0.0.1:862".into(),
            kind: PingKind::Udp,
            size_bytes: 44,
            dscp: 0,
            echo,
            http: None,
            last_error: None,
        }
    }

    /// One-way delays carry units, signed; a refused probe says so.
    #[test]
    fn reply_lines_give_one_way_delays_with_units() {
        let ctx = LineCtx { kind: PingKind::Udp, target: "t".into(), size_bytes: 112 };
        let ev = PingEvent {
            echo: EchoEvent::Reply {
                seq: 0,
                kind: ReplyKind::Ok,
                rtt_ns: Some(303_712),
                forward_ns: Some(1_500_000),
                backward_ns: Some(-250_000),
            },
            http: None,
        };
        assert_eq!(reply_line(&ctx, &ev), "112 bytes from t: seq=0 rtt=303.712us forward=1.5ms backward=-250us\n");
        let ev = PingEvent { echo: EchoEvent::Refused { seq: 4 }, http: None };
        assert_eq!(reply_line(&ctx, &ev), "seq=4 refused (counted as lost)\n");
    }

    /// Synchronized clocks that disagree are named as such, not as unsynchronized.
    #[test]
    fn implausible_one_way_delays_are_named() {
        let echo = meshway_probe::echo::EchoReport {
            counts: Default::default(),
            loss_ratio: 0.0,
            rtt: None,
            clock_synchronized: false,
            forward: None,
            backward: None,
            one_way_implausible: 3,
        };
        let s = ping_summary(&udp_report(echo.clone()));
        assert!(
            s.contains(
                "one-way delay: not reported, both ends claim synchronized clocks but 3 answer(s) had implausible \
                 one-way delays (one below minus the round trip by more than 50us): discarded"
            ),
            "{s}"
        );
        assert!(!s.contains("--clock-synced"), "{s}");
        let s = ping_summary(&udp_report(meshway_probe::echo::EchoReport { one_way_implausible: 0, ..echo }));
        assert!(s.contains("clocks not synchronized (--clock-synced on both ends)"), "{s}");
    }

    #[test]
    fn target_list_is_aligned() {
        let t = history_targets_text(&[("edge".into(), 12), ("a-much-longer-target-name".into(), 1234567)]);
        assert_eq!(
            t,
            "target                           samples\n\
             edge                                  12\n\
             a-much-longer-target-name        1234567\n"
        );
    }
}
