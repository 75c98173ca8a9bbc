//! `meshway agent`: continuous probing of configured targets, history in SQLite, Prometheus
//! `/metrics`, a blackbox-style `/probe`, objectives over sliding windows and webhook alerts.
//!
//! Threads: one for every udp target (`udp_core::UdpSockets`, a [`crate::monitor::Prober`]),
//! one per other target (tcp, icmp, http, perf, interface and optics probe loops, each started
//! at a splay offset within its interval so targets do not fire together), the HTTP server
//! (one event loop, handlers on its blocking pool), one webhook sender, and the core loop,
//! which alone owns the database: it batches samples into one transaction per second, has
//! the [`crate::monitor::Monitor`] judge the probe targets' objectives at the time it gives
//! it, writes rollups when a minute closes and applies retention. SIGHUP reloads the
//! configuration (targets, objectives, alerting, token; not the listen address or database);
//! SIGINT/SIGTERM stop probing, flush and exit.

use crate::config::{self, AgentSpec, Probe, TargetSpec};
use crate::iface::{self, Snapshot};
use crate::monitor::{base_units, AlertEvent, Kind as MonitorKind, Monitor};
use crate::netlink::LinkStats;
use crate::signals::Signals;
use crate::store::{Store, HOUR_NS, MINUTE_NS};
use crate::udp_core::{UdpProbes, UdpSockets, UdpTarget};
use crate::{clock, http, perf, ping};
use meshway_probe::echo::EchoEvent;
use meshway_probe::objective::{Metric, Objective, Sample, Transition, WindowStats};
use meshway_units::Nanos;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, RwLock};

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Where the agent writes its log lines: a level and a message (the caller adds time and
/// format).
pub type Log = Arc<dyn Fn(Level, String) + Send + Sync>;
use std::time::Duration;
use thiserror::Error;

/// How often a warning that keeps repeating is logged again, with its count.
pub const REPEAT_EVERY: Nanos = Nanos(60_000_000_000);

/// One target's warnings with repeats held back: the first of a run of identical messages is
/// logged, its repeats are counted, and the count is logged at most once per
/// [`REPEAT_EVERY`], when the message changes, or when the target recovers. Pure: the caller
/// gives the time. (A perf target whose server was down logged 198 identical lines in 4 s.)
#[derive(Debug, Default)]
pub struct Repeats {
    /// The message repeating, when it was last logged, and the repeats since.
    last: Option<(String, Nanos, u64)>,
}

impl Repeats {
    /// The lines to log for the warning `msg` at `now`.
    pub fn warn(&mut self, msg: String, now: Nanos) -> Vec<String> {
        match &mut self.last {
            Some((m, at, n)) if *m == msg => {
                *n += 1;
                if now.saturating_sub(*at) < REPEAT_EVERY {
                    return Vec::new();
                }
                let line = format!("{msg} (repeated {n} times in the last {})", now.saturating_sub(*at));
                (*at, *n) = (now, 0);
                vec![line]
            }
            _ => {
                let mut out = self.flush();
                out.push(msg.clone());
                self.last = Some((msg, now, 0));
                out
            }
        }
    }

    /// The target works again: the count of repeats not yet logged, if any.
    pub fn ok(&mut self) -> Vec<String> {
        let out = self.flush();
        self.last = None;
        out
    }

    fn flush(&mut self) -> Vec<String> {
        match &self.last {
            Some((m, _, n)) if *n > 0 => vec![format!("{m} (repeated {n} more times)")],
            _ => Vec::new(),
        }
    }

    /// [`Repeats::warn`] at the monotonic clock's now, to `log`.
    fn log(&mut self, log: &Log, msg: String) {
        for line in self.warn(msg, clock::mono()) {
            log(Level::Warn, line);
        }
    }

    /// [`Repeats::ok`], to `log`.
    fn log_ok(&mut self, log: &Log) {
        for line in self.ok() {
            log(Level::Warn, line);
        }
    }
}

/// `num / den` for an objective's ratio: +Inf over a zero denominator (a `loss = "0%"`
/// objective with any loss; dividing by the smallest float exported 4.49e307 as 309 digits),
/// 0 when both are 0.
fn objective_ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        num / den
    } else if num > 0.0 {
        f64::INFINITY
    } else {
        0.0
    }
}

/// RTT histogram bucket bounds in seconds (Prometheus `le`): 1 us to 5 s in 1-2.5-5 steps.
/// Fabric round trips are microseconds: with 100 us as the lowest bound, loopback's 6.3 us
/// median read 50 us through `histogram_quantile`, which interpolates inside a bucket.
pub const RTT_BUCKETS: [f64; 21] = [
    0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Samples written per transaction at most; a batch is also written every second.
const BATCH: usize = 5_000;

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("cannot read config {path}")]
    ReadConfig {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("database {path}")]
    Store {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Locked(#[from] crate::store::LockError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

pub fn load(path: &Path) -> Result<AgentSpec, AgentError> {
    let text = meshway_units::files::read_text(path)
        .map_err(|source| AgentError::ReadConfig { path: path.display().to_string(), source })?;
    Ok(config::parse(&text, &path.display().to_string())?)
}

// ---------------------------------------------------------------------------------------------
// metrics

#[derive(Debug, Clone, Default)]
struct TargetMetrics {
    kind: &'static str,
    sent: u64,
    lost: u64,
    buckets: [u64; RTT_BUCKETS.len()],
    rtt_sum_s: f64,
    rtt_count: u64,
    throughput_bps: Option<f64>,
    window: Option<WindowStats>,
    objectives: Vec<(Metric, Option<bool>, bool)>,
    /// Per objective: its limit and its window's current value, in base units (seconds,
    /// ratio, bytes per second).
    limits: Vec<(Metric, f64, Option<f64>)>,
}

/// One interface of an interface target: its last counters, the rates over the last poll
/// interval, and its objectives (as for probe targets).
#[derive(Debug, Clone, Default)]
struct IfaceMetrics {
    link: LinkStats,
    speed_bps: Option<f64>,
    utilization: Option<f64>,
    objectives: Vec<(Metric, Option<bool>, bool)>,
    limits: Vec<(Metric, f64, Option<f64>)>,
}

/// One optical module of an optics target.
#[derive(Debug, Clone, Default)]
struct OpticsMetrics {
    module: Option<meshway_probe::optics::Module>,
    read_errors: u64,
    objectives: Vec<(Metric, Option<bool>, bool)>,
    limits: Vec<(Metric, f64, Option<f64>)>,
}

#[derive(Debug, Default)]
struct Metrics {
    targets: BTreeMap<String, TargetMetrics>,
    /// (target, interface or file).
    optics: BTreeMap<(String, String), OpticsMetrics>,
    /// (target, interface).
    ifaces: BTreeMap<(String, String), IfaceMetrics>,
    samples_written: u64,
    store_errors: u64,
    webhook_ok: u64,
    webhook_err: u64,
    /// Alerts written to the outbox and not yet delivered.
    outbox_pending: u64,
    reload_ok: u64,
    reload_err: u64,
    fired: u64,
    resolved: u64,
    start_time_s: f64,
}

use crate::expo::Families;
use prometheus::proto::MetricType::{COUNTER, GAUGE, HISTOGRAM};

/// Objective rows: probe targets by name, then interfaces as `target/interface`.
struct ObjectiveRow<'a> {
    objectives: &'a [(Metric, Option<bool>, bool)],
    limits: &'a [(Metric, f64, Option<f64>)],
}

fn objective_rows(m: &Metrics) -> Vec<(String, ObjectiveRow<'_>)> {
    let mut rows: Vec<(String, ObjectiveRow<'_>)> = m
        .targets
        .iter()
        .map(|(t, v)| (t.clone(), ObjectiveRow { objectives: &v.objectives, limits: &v.limits }))
        .collect();
    rows.extend(
        m.ifaces
            .iter()
            .map(|((t, i), v)| (format!("{t}/{i}"), ObjectiveRow { objectives: &v.objectives, limits: &v.limits })),
    );
    rows.extend(
        m.optics
            .iter()
            .map(|((t, i), v)| (format!("{t}/{i}"), ObjectiveRow { objectives: &v.objectives, limits: &v.limits })),
    );
    rows
}

/// Interface families, named as node_exporter names them with the `meshway_interface_` prefix.
fn render_interfaces(f: &mut Families, m: &Metrics) {
    type Get = fn(&LinkStats) -> u64;
    let counters: [(&str, &str, Get); 11] = [
        ("receive_bytes_total", "Bytes received.", |l| l.rx_bytes),
        ("transmit_bytes_total", "Bytes sent.", |l| l.tx_bytes),
        ("receive_packets_total", "Packets received.", |l| l.rx_packets),
        ("transmit_packets_total", "Packets sent.", |l| l.tx_packets),
        ("receive_errors_total", "Receive errors.", |l| l.rx_errors),
        ("transmit_errors_total", "Transmit errors.", |l| l.tx_errors),
        ("receive_drops_total", "Received packets dropped.", |l| l.rx_dropped),
        ("transmit_drops_total", "Packets dropped before sending.", |l| l.tx_dropped),
        ("receive_crc_errors_total", "Frames received with a bad CRC/FCS.", |l| l.rx_crc_errors),
        ("receive_missed_total", "Frames the NIC missed for lack of buffers.", |l| l.rx_missed_errors),
        ("carrier_changes_total", "Carrier up/down transitions.", |l| u64::from(l.carrier_changes)),
    ];
    for (name, help, get) in counters {
        f.family(&format!("meshway_interface_{name}"), COUNTER, help);
        for ((t, i), v) in &m.ifaces {
            f.counter(&[("target", t), ("interface", i)], get(&v.link));
        }
    }
    f.family("meshway_interface_up", GAUGE, "1 when the interface's operational state is up.");
    for ((t, i), v) in &m.ifaces {
        f.gauge(&[("target", t), ("interface", i)], f64::from(u8::from(v.link.oper_up)));
    }
    f.family("meshway_interface_mtu_bytes", GAUGE, "Interface MTU.");
    for ((t, i), v) in &m.ifaces {
        f.gauge(&[("target", t), ("interface", i)], f64::from(v.link.mtu));
    }
    f.family("meshway_interface_speed_bytes_per_second", GAUGE, "Link speed (configured or from the driver).");
    for ((t, i), v) in &m.ifaces {
        if let Some(s) = v.speed_bps {
            f.gauge(&[("target", t), ("interface", i)], s / 8.0);
        }
    }
    f.family(
        "meshway_interface_utilization_ratio",
        GAUGE,
        "The busier direction's rate over the link speed, over the last poll interval.",
    );
    for ((t, i), v) in &m.ifaces {
        if let Some(u) = v.utilization {
            f.gauge(&[("target", t), ("interface", i)], u);
        }
    }
}

/// Optical module families: base units (celsius, volts, amperes, watts), the module's own
/// thresholds for receive power, its worst level, and the VDM observables as the module
/// reports them.
fn render_optics(f: &mut Families, m: &Metrics) {
    use meshway_probe::optics::{Level, Measure};
    let mods = || m.optics.iter().filter_map(|((t, i), v)| v.module.as_ref().map(|x| (t.as_str(), i.as_str(), x)));
    f.family("meshway_optics_info", GAUGE, "The module's identity; always 1.");
    for (t, i, x) in mods() {
        f.gauge(
            &[
                ("target", t),
                ("interface", i),
                ("standard", x.standard.name()),
                ("type", x.identifier_name),
                ("vendor", &x.vendor),
                ("part", &x.part_number),
                ("serial", &x.serial),
            ],
            1.0,
        );
    }
    f.family(
        "meshway_optics_status",
        GAUGE,
        "Worst level of the module's warnings and alarms: 0 ok, 1 warning, 2 alarm.",
    );
    for (t, i, x) in mods() {
        let v = match x.worst() {
            Level::Ok => 0.0,
            Level::Warning => 1.0,
            Level::Alarm => 2.0,
        };
        f.gauge(&[("target", t), ("interface", i)], v);
    }
    f.family("meshway_optics_temperature_celsius", GAUGE, "Module temperature.");
    for (t, i, x) in mods() {
        if let Some(c) = x.temperature_c {
            f.gauge(&[("target", t), ("interface", i)], c);
        }
    }
    f.family("meshway_optics_supply_volts", GAUGE, "Module supply voltage.");
    for (t, i, x) in mods() {
        if let Some(v) = x.supply_v {
            f.gauge(&[("target", t), ("interface", i)], v);
        }
    }
    type LaneGet = fn(&meshway_probe::optics::Lane) -> Option<f64>;
    let lanes: [(&str, &str, LaneGet); 3] = [
        ("tx_bias_amperes", "Laser bias current per lane.", |l| l.tx_bias_ma.map(|v| v / 1e3)),
        ("tx_power_watts", "Transmit optical power per lane.", |l| l.tx_power_mw.map(|v| v / 1e3)),
        ("rx_power_watts", "Receive optical power per lane.", |l| l.rx_power_mw.map(|v| v / 1e3)),
    ];
    for (name, help, get) in lanes {
        f.family(&format!("meshway_optics_{name}"), GAUGE, help);
        for (t, i, x) in mods() {
            for lane in &x.lanes {
                if let Some(v) = get(lane) {
                    f.gauge(&[("target", t), ("interface", i), ("lane", &lane.lane.to_string())], v);
                }
            }
        }
    }
    f.family("meshway_optics_rx_power_threshold_watts", GAUGE, "The module's own receive power limits.");
    for (t, i, x) in mods() {
        if let Some(th) = x.threshold(Measure::RxPower) {
            for (lv, v) in [
                ("high_alarm", th.high_alarm),
                ("high_warn", th.high_warn),
                ("low_warn", th.low_warn),
                ("low_alarm", th.low_alarm),
            ] {
                f.gauge(&[("target", t), ("interface", i), ("level", lv)], v / 1e3);
            }
        }
    }
    f.family(
        "meshway_optics_vdm",
        GAUGE,
        "VDM observables (coherent modules: pre-FEC BER, eSNR, OSNR, CD, ...) in the unit labelled.",
    );
    for (t, i, x) in mods() {
        // One series per observable and lane: a module that lists one twice (in two VDM
        // groups) would give Prometheus duplicate samples, and it keeps only one anyway.
        let mut seen = std::collections::BTreeSet::new();
        for v in x.vdm.iter().filter(|v| seen.insert((v.name.as_str(), v.lane))) {
            f.gauge(
                &[
                    ("target", t),
                    ("interface", i),
                    ("observable", &v.name),
                    ("lane", &v.lane.to_string()),
                    ("unit", v.unit),
                ],
                v.value,
            );
        }
    }
    f.family("meshway_optics_read_errors_total", COUNTER, "Polls that could not read or decode the module.");
    for ((t, i), v) in &m.optics {
        f.counter(&[("target", t), ("interface", i)], v.read_errors);
    }
}

/// The Prometheus text exposition (format 0.0.4) of the agent's state.
fn render(m: &Metrics) -> String {
    let mut f = Families::default();
    f.family("meshway_up", GAUGE, "1 while the agent runs.");
    f.gauge(&[], 1.0);
    f.family("meshway_build_info", GAUGE, "Build information; always 1.");
    f.gauge(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    f.family("meshway_start_time_seconds", GAUGE, "Agent start time, seconds since the Unix epoch.");
    f.gauge(&[], m.start_time_s);
    f.family("meshway_probes_sent_total", COUNTER, "Probes sent per target.");
    for (t, v) in &m.targets {
        f.counter(&[("target", t), ("kind", v.kind)], v.sent);
    }
    f.family("meshway_probes_lost_total", COUNTER, "Probes without an answer within the timeout.");
    for (t, v) in &m.targets {
        f.counter(&[("target", t), ("kind", v.kind)], v.lost);
    }
    f.family("meshway_probe_rtt_seconds", HISTOGRAM, "Round-trip time of answered probes.");
    for (t, v) in &m.targets {
        let b: Vec<(f64, u64)> = RTT_BUCKETS.iter().zip(v.buckets).map(|(&le, n)| (le, n)).collect();
        f.histogram(&[("target", t)], &b, v.rtt_count, v.rtt_sum_s);
    }
    f.family(
        "meshway_throughput_bytes_per_second",
        GAUGE,
        "Goodput of the last throughput test; absent after a failed one.",
    );
    for (t, v) in &m.targets {
        if let Some(b) = v.throughput_bps {
            f.gauge(&[("target", t)], b / 8.0);
        }
    }
    f.family("meshway_window_loss_ratio", GAUGE, "Loss ratio over the target's objective window.");
    for (t, v) in &m.targets {
        if let Some(w) = v.window.as_ref().filter(|w| w.sent > 0) {
            f.gauge(&[("target", t)], w.loss_ratio);
        }
    }
    f.family("meshway_window_rtt_seconds", GAUGE, "RTT percentiles over the objective window.");
    for (t, v) in &m.targets {
        if let Some(r) = v.window.as_ref().and_then(|w| w.rtt.as_ref()) {
            // `percentile`, not `quantile`: Prometheus reserves `quantile` for summaries.
            for (q, ns) in [("50", r.p50_ns), ("90", r.p90_ns), ("99", r.p99_ns)] {
                f.gauge(&[("target", t), ("percentile", q)], ns as f64 / 1e9);
            }
        }
    }
    f.family("meshway_window_jitter_seconds", GAUGE, "RFC 3550 interarrival jitter of RTT over the window.");
    for (t, v) in &m.targets {
        if let Some(r) = v.window.as_ref().and_then(|w| w.rtt.as_ref()) {
            f.gauge(&[("target", t)], r.jitter_rfc3550_ns / 1e9);
        }
    }
    render_interfaces(&mut f, m);
    render_optics(&mut f, m);
    f.family("meshway_objective_met", GAUGE, "1 when the objective is met over its window, 0 when violated.");
    for (t, v) in objective_rows(m) {
        for (metric, met, _) in v.objectives {
            if let Some(viol) = met {
                f.gauge(&[("target", &t), ("objective", metric.name())], f64::from(u8::from(!viol)));
            }
        }
    }
    f.family("meshway_objective_threshold", GAUGE, "The objective's limit, in base units.");
    for (t, v) in objective_rows(m) {
        for (metric, limit, _) in v.limits {
            f.gauge(&[("target", &t), ("objective", metric.name())], *limit);
        }
    }
    f.family(
        "meshway_objective_ratio",
        GAUGE,
        "The window's value over the objective's limit (the limit over the value for a throughput minimum): above 1 violates.",
    );
    for (t, v) in objective_rows(m) {
        for (metric, limit, value) in v.limits {
            let Some(x) = value else { continue };
            let r = if *metric == Metric::ThroughputMin {
                objective_ratio(*limit, *x)
            } else {
                objective_ratio(*x, *limit)
            };
            f.gauge(&[("target", &t), ("objective", metric.name())], r);
        }
    }
    f.family("meshway_alert_firing", GAUGE, "1 while the objective's alert fires.");
    for (t, v) in objective_rows(m) {
        for (metric, _, firing) in v.objectives {
            f.gauge(&[("target", &t), ("objective", metric.name())], f64::from(u8::from(*firing)));
        }
    }
    f.family("meshway_alert_transitions_total", COUNTER, "Alerts fired and resolved.");
    f.counter(&[("transition", "fired")], m.fired);
    f.counter(&[("transition", "resolved")], m.resolved);
    f.family("meshway_webhook_requests_total", COUNTER, "Webhook deliveries by result.");
    f.counter(&[("result", "ok")], m.webhook_ok);
    f.counter(&[("result", "error")], m.webhook_err);
    f.family("meshway_webhook_outbox_pending", GAUGE, "Alerts kept in the outbox until their webhook is delivered.");
    f.gauge(&[], m.outbox_pending as f64);
    f.family("meshway_store_samples_written_total", COUNTER, "Samples committed to the database.");
    f.counter(&[], m.samples_written);
    f.family("meshway_store_errors_total", COUNTER, "Failed database writes.");
    f.counter(&[], m.store_errors);
    f.family("meshway_config_reloads_total", COUNTER, "Configuration reloads by result.");
    f.counter(&[("result", "ok")], m.reload_ok);
    f.counter(&[("result", "error")], m.reload_err);
    f.encode()
}

// ---------------------------------------------------------------------------------------------
// alerts

/// RFC 3339 UTC time of a Unix time in nanoseconds (civil-from-days, H. Hinnant).
pub fn rfc3339(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ns % 1_000_000_000 / 1_000_000
    )
}

fn fingerprint(s: &str) -> String {
    // FNV-1a 64: stable across runs, like Alertmanager's label fingerprint in purpose.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016x}")
}

fn threshold_text(o: &Objective) -> String {
    match o.metric {
        Metric::Loss | Metric::Utilization | Metric::DropRatio => format!("{}%", o.threshold * 100.0),
        Metric::ErrorRatio => format!("{:e}", o.threshold),
        Metric::Anomaly => if o.threshold < 0.25 { "normal" } else { "anomalous" }.to_string(),
        // Thresholds 0.5 / 1.5, values 0 / 1 / 2.
        Metric::RxPower => format!("{:.2} dBm", o.threshold),
        Metric::OpticsLevel => match o.threshold {
            t if t < 0.25 => "ok",
            t if t < 1.25 => "warning",
            _ => "alarm",
        }
        .to_string(),
        Metric::ThroughputMin => meshway_units::BitsPerSec(o.threshold as u64).to_string(),
        _ => Nanos(o.threshold as u64).to_string(),
    }
}

fn value_text(m: Metric, v: f64) -> String {
    threshold_text(&Objective { metric: m, threshold: v, window_ns: 0 })
}

/// An Alertmanager webhook (version 4) payload for one alert transition.
#[allow(clippy::too_many_arguments)]
pub fn webhook_payload(
    target: &str,
    o: &Objective,
    value: Option<f64>,
    t: Transition,
    starts_ns: u64,
    now_ns: u64,
    external_url: &str,
) -> serde_json::Value {
    let status = match t {
        Transition::Fired => "firing",
        Transition::Resolved => "resolved",
    };
    let labels = json!({
        "alertname": "MeshwayObjectiveViolated",
        "target": target,
        "objective": o.metric.name(),
        "severity": "warning",
    });
    let cmp = if o.metric.is_floor() { "≥" } else { "≤" };
    let summary = format!(
        "{target}: {} {cmp} {} over {} {}",
        o.metric.name(),
        threshold_text(o),
        Nanos(o.window_ns),
        if t == Transition::Fired { "violated" } else { "met again" }
    );
    let annotations = json!({
        "summary": summary,
        "threshold": threshold_text(o),
        "value": value.map(|v| value_text(o.metric, v)).unwrap_or_default(),
        "window": Nanos(o.window_ns).to_string(),
    });
    let ends = if t == Transition::Resolved { rfc3339(now_ns) } else { "0001-01-01T00:00:00Z".into() };
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"MeshwayObjectiveViolated\", objective=\"{}\", target=\"{}\"}}", o.metric.name(), target),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "meshway",
        "groupLabels": { "alertname": "MeshwayObjectiveViolated", "target": target, "objective": o.metric.name() },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(starts_ns),
            "endsAt": ends,
            "generatorURL": format!("{external_url}/metrics"),
            "fingerprint": fingerprint(&format!("{target}\u{0}{}", o.metric.name())),
        }],
    })
}

// ---------------------------------------------------------------------------------------------
// target threads

enum Msg {
    Sample { target: Arc<str>, sample: Sample },
    Interfaces { target: Arc<str>, snaps: Vec<Snapshot> },
    Optics { target: Arc<str>, poll: crate::optics::OpticsPoll },
}

/// Deterministic start offset of a target within its interval (FNV of the name).
fn splay(name: &str, interval: Nanos) -> Nanos {
    let h = u64::from_str_radix(&fingerprint(name)[..12], 16).unwrap_or(0);
    Nanos(h % interval.get().max(1))
}

/// A udp echo target for the event-driven core, or None (another kind, or an address that
/// does not resolve now).
fn udp_target(t: &TargetSpec) -> Option<UdpTarget> {
    let Probe::Echo { kind: ping::PingKind::Udp, size, dscp, key, .. } = &t.probe else { return None };
    let addr = ping::resolve_within(&t.address, ping::STAMP_PORT, t.timeout).ok()?;
    Some(UdpTarget {
        addr,
        interval: t.interval,
        timeout: t.timeout,
        size: *size,
        dscp: *dscp,
        key: key.as_deref().map(|k| Arc::new(k.clone())),
        first: clock::mono() + splay(&t.name, t.interval),
    })
}

/// Runs every udp target in one thread until `stop`; each reply or loss is a sample.
fn spawn_udp_core(targets: Vec<(Arc<str>, UdpTarget)>, tx: SyncSender<Msg>, stop: Arc<AtomicBool>, log: Log) {
    let log2 = log.clone();
    let spawned = std::thread::Builder::new().name("udp-probes".into()).spawn(move || {
        let (names, specs): (Vec<Arc<str>>, Vec<UdpTarget>) = targets.into_iter().unzip();
        let (mut sockets, errors) = UdpSockets::open(UdpProbes::new(specs));
        for e in errors {
            log(Level::Error, e);
        }
        crate::monitor::run(&mut sockets, &stop, &mut |i, sample| {
            let _ = tx.send(Msg::Sample { target: names[i].clone(), sample });
        });
    });
    if let Err(e) = spawned {
        log2(Level::Error, format!("cannot start the udp probe thread: {e}"));
    }
}

fn spawn_target(t: &TargetSpec, tx: SyncSender<Msg>, stop: Arc<AtomicBool>, log: Log) {
    let t = t.clone();
    let name: Arc<str> = Arc::from(t.name.as_str());
    let log2 = log.clone();
    let spawned =
        std::thread::Builder::new().name(format!("target-{}", t.name)).stack_size(512 * 1024).spawn(move || {
            // Start splay: sleep in short steps so a stop is noticed.
            let start = clock::mono() + splay(&t.name, t.interval);
            while clock::mono() < start {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(clock::dur(start.saturating_sub(clock::mono()).min(Nanos(50_000_000))));
            }
            let mut repeats = Repeats::default();
            match &t.probe {
                Probe::Echo { kind, size, dscp, ca, key } => {
                    let cfg = ping::PingConfig {
                        kind: *kind,
                        target: t.address.clone(),
                        count: None,
                        interval: t.interval,
                        timeout: t.timeout,
                        size: *size,
                        dscp: *dscp,
                        clock_synchronized: false,
                        statistics: false,
                        ca: ca.clone(),
                        key: key.as_deref().cloned(),
                    };
                    // A probe that cannot even start (resolution, permissions) is retried each interval.
                    while !stop.load(Ordering::Relaxed) {
                        let r = ping::run(&cfg, &stop, &mut |e| {
                            let sample = match &e.echo {
                                EchoEvent::Reply { rtt_ns: Some(r), .. } => {
                                    Sample { at_ns: clock::unix_nanos(), rtt_ns: Some(*r), value: None }
                                }
                                // Declared lost one timeout after it was sent: stamp it with its
                                // send time, so it falls in the same window as its neighbours.
                                EchoEvent::Lost { .. } => Sample {
                                    at_ns: clock::unix_nanos().saturating_sub(t.timeout.0),
                                    rtt_ns: None,
                                    value: None,
                                },
                                // Refused as it was sent: stamped now.
                                EchoEvent::Refused { .. } => {
                                    Sample { at_ns: clock::unix_nanos(), rtt_ns: None, value: None }
                                }
                                _ => return,
                            };
                            let _ = tx.send(Msg::Sample { target: name.clone(), sample });
                        });
                        if let Err(e) = r {
                            repeats.log(&log, format!("target {}: {e}", t.name));
                            let _ = tx.send(Msg::Sample {
                                target: name.clone(),
                                sample: Sample { at_ns: clock::unix_nanos(), rtt_ns: None, value: None },
                            });
                            std::thread::sleep(clock::dur(t.interval));
                        }
                    }
                }
                Probe::Perf { duration, streams } => {
                    let mut next = clock::mono();
                    while !stop.load(Ordering::Relaxed) {
                        if clock::mono() < next {
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                        next += t.interval;
                        let server = match crate::ping::resolve_within(&t.address, 5301, t.timeout) {
                            Ok(a) => a,
                            Err(e) => {
                                repeats.log(&log, format!("target {}: {e}", t.name));
                                // A run that could not start is a failed run.
                                let sample = Sample { at_ns: clock::unix_nanos(), rtt_ns: None, value: None };
                                let _ = tx.send(Msg::Sample { target: name.clone(), sample });
                                continue;
                            }
                        };
                        let cfg = perf::PerfConfig {
                            server,
                            protocol: meshway_probe::perf::Protocol::Tcp,
                            direction: meshway_probe::perf::Direction::Forward,
                            streams: *streams,
                            duration: *duration,
                            bytes: None,
                            rate: None,
                            size: 128 * 1024,
                            interval: *duration,
                        };
                        let value = match perf::run(&cfg, &stop, &mut |_| {}) {
                            // A span too short to time (None) cannot happen in a run of a
                            // duration; were it to, it is no measurement.
                            Ok(r) => {
                                repeats.log_ok(&log);
                                r.forward.and_then(|f| f.throughput_bps).filter(|v| v.is_finite())
                            }
                            Err(e) => {
                                repeats.log(&log, format!("target {}: {e}", t.name));
                                None
                            }
                        };
                        let sample = match value {
                            Some(v) => Sample { at_ns: clock::unix_nanos(), rtt_ns: None, value: Some(v) },
                            None => Sample { at_ns: clock::unix_nanos(), rtt_ns: None, value: None },
                        };
                        let _ = tx.send(Msg::Sample { target: name.clone(), sample });
                    }
                }
                Probe::Optics => {
                    let mut next = clock::mono();
                    while !stop.load(Ordering::Relaxed) {
                        let now = clock::mono();
                        if now < next {
                            std::thread::sleep(clock::dur(next.saturating_sub(now).min(Nanos(50_000_000))));
                            continue;
                        }
                        next = if now.saturating_sub(next) > t.interval { now + t.interval } else { next + t.interval };
                        let poll = crate::optics::poll(&t.address);
                        let _ = tx.send(Msg::Optics { target: name.clone(), poll });
                    }
                }
                Probe::Interface { .. } => {
                    let mut next = clock::mono();
                    let mut warned = false;
                    while !stop.load(Ordering::Relaxed) {
                        let now = clock::mono();
                        if now < next {
                            std::thread::sleep(clock::dur(next.saturating_sub(now).min(Nanos(50_000_000))));
                            continue;
                        }
                        // Fixed cadence; after a stall, start again from now rather than catch up.
                        next = if now.saturating_sub(next) > t.interval { now + t.interval } else { next + t.interval };
                        match iface::snapshot(&t.address, clock::unix_nanos()) {
                            Ok(snaps) => {
                                repeats.log_ok(&log);
                                if snaps.is_empty() && !warned {
                                    log(
                                        Level::Warn,
                                        format!("target {}: no interface matches {:?}", t.name, t.address),
                                    );
                                }
                                warned = snaps.is_empty();
                                let _ = tx.send(Msg::Interfaces { target: name.clone(), snaps });
                            }
                            Err(e) => repeats.log(&log, format!("target {}: {e}", t.name)),
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        log2(Level::Error, format!("cannot start target thread: {e}"));
    }
}

// ---------------------------------------------------------------------------------------------
// the core loop

struct TargetState {
    spec: TargetSpec,
    id: i64,
    /// Interface targets: one state per matching interface.
    ifaces: BTreeMap<String, IfaceState>,
    /// Optics targets: per module, its alerts, worst level and last read error.
    optics: BTreeMap<String, OpticsState>,
}

/// What the runtime keeps of an optical module: where its series go and its last read error
/// (its alerts are the monitor's).
struct OpticsState {
    /// Store ids of the receive power series, per lane.
    rx_ids: BTreeMap<u8, i64>,
    error: Option<String>,
}

/// The series an interface stores, one value per poll interval (store names
/// `target/interface/series`).
pub const IFACE_SERIES: [&str; 3] = ["utilization", "error-ratio", "drop-ratio"];

/// What the runtime keeps of an interface: the store ids of [`IFACE_SERIES`] (its counters
/// and alerts are the monitor's).
struct IfaceState {
    ids: [i64; 3],
}

/// Where an objective's alert transitions go: the log and the webhook queue.
struct AlertSink<'a> {
    spec: &'a AgentSpec,
    log: &'a Log,
    webhook_tx: &'a SyncSender<serde_json::Value>,
}

impl AlertSink<'_> {
    /// Logs a transition and queues its webhook.
    fn emit(&self, e: &AlertEvent) {
        let (o, tr) = (&e.objective, e.transition);
        let payload = webhook_payload(&e.target, o, e.value, tr, e.since_ns, e.at_ns, &self.spec.external_url);
        let level = if tr == Transition::Fired { Level::Warn } else { Level::Info };
        let verb = if tr == Transition::Fired { "firing" } else { "resolved" };
        (self.log)(level, format!("alert {verb} {} {}", e.target, o.metric.name()));
        if self.spec.webhook.is_some() {
            let _ = self.webhook_tx.try_send(payload);
        }
    }
}

struct Core {
    spec: AgentSpec,
    config_path: PathBuf,
    store: Store,
    targets: HashMap<String, TargetState>,
    /// Probe targets' windows and alerts (interface and optics targets keep theirs here).
    monitor: Monitor,
    metrics: Arc<Mutex<Metrics>>,
    token: Arc<RwLock<Option<String>>>,
    batch: Vec<(i64, Sample)>,
    stop_targets: Arc<AtomicBool>,
    webhook_tx: SyncSender<serde_json::Value>,
    log: Log,
}

impl Core {
    fn install_targets(&mut self, tx: &SyncSender<Msg>) -> Result<(), rusqlite::Error> {
        let mut old = std::mem::take(&mut self.targets);
        let mut metrics = self.metrics.lock().map(|m| m.targets.clone()).unwrap_or_default();
        let keep: std::collections::HashSet<&str> =
            self.spec.targets.iter().filter(|t| t.kind_name == "interface").map(|t| t.name.as_str()).collect();
        let keep_optics: std::collections::HashSet<&str> =
            self.spec.targets.iter().filter(|t| t.kind_name == "optics").map(|t| t.name.as_str()).collect();
        if let Ok(mut m) = self.metrics.lock() {
            m.ifaces.retain(|(t, _), _| keep.contains(t.as_str()));
            m.optics.retain(|(t, _), _| keep_optics.contains(t.as_str()));
        }
        let mut new_metrics = BTreeMap::new();
        let probe_target = |t: &TargetSpec| t.kind_name != "interface" && t.kind_name != "optics";
        let named: std::collections::HashSet<String> = self.spec.targets.iter().map(|t| t.name.clone()).collect();
        let now = clock::unix_nanos();
        // Alerts of targets and objectives that are gone are resolved, so receivers hear of it.
        let mut gone = self.monitor.retain(|n| named.contains(n), now);
        self.monitor.set_hysteresis(self.spec.fire_after, self.spec.resolve_after);
        for t in &self.spec.targets {
            let id = self.store.target_id(&t.name, t.kind_name, &t.address)?;
            let (mut ifaces, mut optics) = match old.remove(&t.name) {
                Some(s) => (s.ifaces, s.optics),
                None => (BTreeMap::new(), BTreeMap::new()),
            };
            if t.kind_name != "interface" {
                ifaces.clear();
            }
            if t.kind_name != "optics" {
                optics.clear();
            }
            let kind = match t.kind_name {
                "interface" => MonitorKind::Interface,
                "optics" => MonitorKind::Optics,
                _ => MonitorKind::Probe,
            };
            gone.extend(self.monitor.watch_kind(&t.name, kind, &t.objectives, now));
            // A perf run's success and failure are known at once, at its end.
            if matches!(t.probe, Probe::Echo { .. }) {
                self.monitor.settle(&t.name, t.timeout.0);
            }
            let firing = self.monitor.firing(&t.name);
            let mut tm = metrics.remove(&t.name).unwrap_or_default();
            tm.kind = t.kind_name;
            tm.objectives = t
                .objectives
                .iter()
                .enumerate()
                .map(|(k, o)| (o.metric, None, firing.get(k).copied().unwrap_or(false)))
                .collect();
            tm.limits = t.objectives.iter().map(|o| (o.metric, base_units(o.metric, o.threshold), None)).collect();
            if probe_target(t) {
                new_metrics.insert(t.name.clone(), tm);
            }
            self.targets.insert(t.name.clone(), TargetState { spec: t.clone(), id, ifaces, optics });
        }
        if let Ok(mut m) = self.metrics.lock() {
            m.targets = new_metrics;
            m.resolved += gone.len() as u64;
        }
        let sink = AlertSink { spec: &self.spec, log: &self.log, webhook_tx: &self.webhook_tx };
        for e in &gone {
            sink.emit(e);
        }
        // Old threads stop; new ones start.
        self.stop_targets.store(true, Ordering::Relaxed);
        self.stop_targets = Arc::new(AtomicBool::new(false));
        // udp targets share one event-driven thread (crate::udp_core); the others, and a udp
        // target whose address does not resolve yet (its thread retries), a thread each.
        let mut udp: Vec<(Arc<str>, UdpTarget)> = Vec::new();
        for t in &self.spec.targets {
            match udp_target(t) {
                Some(u) => udp.push((Arc::from(t.name.as_str()), u)),
                None => spawn_target(t, tx.clone(), self.stop_targets.clone(), self.log.clone()),
            }
        }
        if !udp.is_empty() {
            spawn_udp_core(udp, tx.clone(), self.stop_targets.clone(), self.log.clone());
        }
        if let Ok(mut tok) = self.token.write() {
            tok.clone_from(&self.spec.bearer_token);
        }
        Ok(())
    }

    fn on_message(&mut self, m: Msg) {
        match m {
            Msg::Sample { target, sample } => self.on_sample(&target, sample),
            Msg::Interfaces { target, snaps } => self.on_interfaces(&target, snaps),
            Msg::Optics { target, poll } => self.on_optics(&target, poll),
        }
    }

    fn on_optics(&mut self, target: &str, poll: crate::optics::OpticsPoll) {
        use meshway_probe::optics::Level;
        let Some(t) = self.targets.get_mut(target) else { return };
        let present: std::collections::HashSet<&str> = poll.iter().map(|(n, _)| n.as_str()).collect();
        t.optics.retain(|n, _| present.contains(n.as_str()));
        let Ok(mut met) = self.metrics.lock() else { return };
        met.optics.retain(|(tn, n), _| tn != target || present.contains(n.as_str()));
        let names: Vec<&str> = poll.iter().map(|(n, _)| n.as_str()).collect();
        let levels: Vec<(&str, Option<f64>)> = poll
            .iter()
            .map(|(n, r)| {
                let level = r.as_ref().ok().map(|m| match m.worst() {
                    Level::Ok => 0.0,
                    Level::Warning => 1.0,
                    Level::Alarm => 2.0,
                });
                (n.as_str(), level)
            })
            .collect();
        self.monitor.on_modules(target, &names, &levels);
        for (name, r) in poll {
            let st =
                t.optics.entry(name.clone()).or_insert_with(|| OpticsState { rx_ids: BTreeMap::new(), error: None });
            let e = met.optics.entry((target.to_string(), name.clone())).or_default();
            match r {
                Ok(m) => {
                    // Receive power per lane, in dBm (no light stored as -40 dBm), as a series.
                    for l in &m.lanes {
                        let Some(mw) = l.rx_power_mw else { continue };
                        let id = match st.rx_ids.get(&l.lane) {
                            Some(id) => *id,
                            None => match self.store.target_id(
                                &format!("{target}/{name}/rx-power/lane{}", l.lane),
                                "optics",
                                &name,
                            ) {
                                Ok(id) => {
                                    st.rx_ids.insert(l.lane, id);
                                    id
                                }
                                Err(_) => continue,
                            },
                        };
                        let dbm = meshway_probe::optics::dbm(mw).unwrap_or(-40.0).max(-40.0);
                        self.batch.push((id, Sample { at_ns: clock::unix_nanos(), rtt_ns: None, value: Some(dbm) }));
                    }
                    if st.error.take().is_some() {
                        (self.log)(
                            crate::agent::Level::Info,
                            format!("target {target}: {name}: module readable again"),
                        );
                    }
                    e.module = Some(m);
                }
                Err(msg) => {
                    e.read_errors += 1;
                    if st.error.as_deref() != Some(msg.as_str()) {
                        (self.log)(crate::agent::Level::Warn, format!("target {target}: {msg}"));
                        st.error = Some(msg);
                    }
                }
            }
        }
    }

    fn on_interfaces(&mut self, target: &str, mut snaps: Vec<Snapshot>) {
        let Some(t) = self.targets.get_mut(target) else { return };
        let Probe::Interface { speed_bps } = t.spec.probe else { return };
        let present: std::collections::HashSet<String> = snaps.iter().map(|s| s.link.name.clone()).collect();
        t.ifaces.retain(|name, _| present.contains(name));
        for snap in &mut snaps {
            if speed_bps.is_some() {
                snap.speed_bps = speed_bps;
            }
            let name = &snap.link.name;
            if t.ifaces.contains_key(name) {
                continue;
            }
            let mut ids = [0i64; 3];
            let mut ok = true;
            for (k, series) in IFACE_SERIES.iter().enumerate() {
                match self.store.target_id(&format!("{target}/{name}/{series}"), "interface", name) {
                    Ok(id) => ids[k] = id,
                    Err(e) => {
                        (self.log)(Level::Error, format!("database: interface {name}: {e}"));
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                t.ifaces.insert(name.clone(), IfaceState { ids });
            }
        }
        // An interface the database could not register waits for the next poll; the others go on.
        snaps.retain(|s| t.ifaces.contains_key(&s.link.name));
        let mut updates = Vec::new();
        for (name, rates, snap) in self.monitor.on_interfaces(target, snaps) {
            let Some(st) = t.ifaces.get(&name) else { continue };
            if let Some(r) = &rates {
                for (k, v) in [r.utilization, r.error_ratio, r.drop_ratio].into_iter().enumerate() {
                    if let Some(v) = v {
                        self.batch.push((st.ids[k], Sample { at_ns: snap.at_ns, rtt_ns: None, value: Some(v) }));
                    }
                }
            }
            updates.push((name, snap.link, snap.speed_bps, rates.and_then(|r| r.utilization)));
        }
        if let Ok(mut met) = self.metrics.lock() {
            met.ifaces.retain(|(tn, i), _| tn != target || present.contains(i));
            for (name, link, speed_bps, utilization) in updates {
                let e = met.ifaces.entry((target.to_string(), name)).or_default();
                e.link = link;
                e.speed_bps = speed_bps;
                e.utilization = utilization;
            }
        }
    }

    fn on_sample(&mut self, target: &str, sample: Sample) {
        let Some(t) = self.targets.get(target) else { return };
        self.monitor.on_sample(target, sample);
        self.batch.push((t.id, sample));
        if let Ok(mut met) = self.metrics.lock() {
            if let Some(tm) = met.targets.get_mut(target) {
                tm.sent += 1;
                // The gauge holds the last run's goodput; a failed run removes it rather than
                // leave the last good value standing.
                tm.throughput_bps = sample.value;
                if sample.value.is_some() {
                    return;
                }
                match sample.rtt_ns {
                    None => tm.lost += 1,
                    Some(r) => {
                        let s = r as f64 / 1e9;
                        if let Some(k) = RTT_BUCKETS.iter().position(|le| s <= *le) {
                            tm.buckets[k] += 1;
                        }
                        tm.rtt_sum_s += s;
                        tm.rtt_count += 1;
                    }
                }
            }
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let r = self.store.insert(&self.batch);
        if let Ok(mut met) = self.metrics.lock() {
            match &r {
                Ok(n) => met.samples_written += *n as u64,
                Err(_) => met.store_errors += 1,
            }
        }
        match r {
            Ok(_) => self.batch.clear(),
            Err(e) => {
                (self.log)(Level::Error, format!("database write failed: {e}"));
                // Keep the batch for the next try, bounded.
                if self.batch.len() > 10 * BATCH {
                    let drop = self.batch.len() - 10 * BATCH;
                    self.batch.drain(..drop);
                }
            }
        }
    }

    /// Evaluates every objective at `now` (ns since the Unix epoch): the core is given the time,
    /// it does not read it.
    fn evaluate(&mut self, now: u64) {
        let ev = self.monitor.evaluate(now);
        let sink = AlertSink { spec: &self.spec, log: &self.log, webhook_tx: &self.webhook_tx };
        for e in &ev.events {
            sink.emit(e);
        }
        if let Ok(mut met) = self.metrics.lock() {
            for (name, v) in ev.targets {
                if let Some(tm) = met.targets.get_mut(&name) {
                    tm.window = Some(v.window);
                    tm.objectives = v.objectives;
                    tm.limits = v.limits;
                }
            }
            for (key, objs, limits) in ev.interfaces {
                if let Some(im) = met.ifaces.get_mut(&key) {
                    im.objectives = objs;
                    im.limits = limits;
                }
            }
            for (key, objs, limits) in ev.modules {
                if let Some(om) = met.optics.get_mut(&key) {
                    om.objectives = objs;
                    om.limits = limits;
                }
            }
            for e in &ev.events {
                match e.transition {
                    Transition::Fired => met.fired += 1,
                    Transition::Resolved => met.resolved += 1,
                }
            }
        }
    }

    /// Once a minute (and at start): each `anomaly` objective looks at the last two days of
    /// its target's 1-minute rollups (RTT median, throughput, or an interface's utilization)
    /// and decides whether the series has just turned worse; alerts advance with the same
    /// hysteresis as the other objectives.
    fn evaluate_anomalies(&mut self, now: u64) {
        let from = now.saturating_sub(2 * 86_400_000_000_000);
        let o = meshway_probe::anomaly::online_options();
        let mut fired = Vec::new();
        for (name, t) in &mut self.targets {
            if !t.spec.objectives.iter().any(|x| x.metric == Metric::Anomaly) {
                continue;
            }
            let series = |store: &Store, id: i64, f: &dyn Fn(&crate::store::Rollup) -> Option<f64>| {
                let rows = store.rollups(id, false, from, now).unwrap_or_default();
                rows.iter()
                    .filter_map(|r| f(r).map(|v| (r.start_ns as f64 / 1e9, v)))
                    .unzip::<f64, f64, Vec<_>, Vec<_>>()
            };
            let sink = AlertSink { spec: &self.spec, log: &self.log, webhook_tx: &self.webhook_tx };
            if t.spec.kind_name == "interface" {
                for (ifname, st) in &t.ifaces {
                    let (ts, ys) = series(&self.store, st.ids[0], &|r| r.value_mean);
                    let v = f64::from(u8::from(meshway_probe::anomaly::anomalous_now(&ts, &ys, &o, true)));
                    if let Some(e) = self.monitor.observe_interface_anomaly(name, ifname, v, now) {
                        sink.emit(&e);
                        fired.push(e.transition);
                    }
                }
                continue;
            }
            let perf = matches!(t.spec.probe, Probe::Perf { .. });
            let (ts, ys) = if perf {
                series(&self.store, t.id, &|r| r.value_mean)
            } else {
                series(&self.store, t.id, &|r| r.p50_ns.map(|v| v as f64))
            };
            let v = f64::from(u8::from(meshway_probe::anomaly::anomalous_now(&ts, &ys, &o, !perf)));
            if let Some(e) = self.monitor.observe_anomaly(name, v, now) {
                sink.emit(&e);
                fired.push(e.transition);
            }
        }
        if let Ok(mut met) = self.metrics.lock() {
            for tr in fired {
                match tr {
                    Transition::Fired => met.fired += 1,
                    Transition::Resolved => met.resolved += 1,
                }
            }
        }
    }

    fn reload(&mut self, tx: &SyncSender<Msg>) {
        match load(&self.config_path) {
            Ok(spec) => {
                let (listen, db) = (self.spec.listen, self.spec.database.clone());
                if spec.listen != listen || spec.database != db {
                    (self.log)(Level::Warn, "reload: listen and database changes take effect at restart".into());
                }
                self.spec = AgentSpec { listen, database: db, ..spec };
                let r = self.install_targets(tx);
                if let Ok(mut m) = self.metrics.lock() {
                    if r.is_ok() {
                        m.reload_ok += 1;
                    } else {
                        m.reload_err += 1;
                    }
                }
                (self.log)(Level::Info, format!("reloaded: {} targets", self.spec.targets.len()));
            }
            Err(e) => {
                if let Ok(mut m) = self.metrics.lock() {
                    m.reload_err += 1;
                }
                // The whole chain: "cannot read config F" alone does not say why.
                let mut why = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(c) = src {
                    why += &format!(": {c}");
                    src = c.source();
                }
                (self.log)(Level::Error, format!("reload failed, keeping the running configuration: {why}"));
            }
        }
    }
}

/// The webhook URL and the CA bundle trusted for it, shared with reloads.
type WebhookTarget = Arc<RwLock<Option<(String, Option<PathBuf>)>>>;

/// Webhook bodies kept at most in the outbox, and for how long (an alert older than a day is
/// no news).
const OUTBOX_MAX: usize = 10_000;
const OUTBOX_KEEP_NS: u64 = 86_400_000_000_000;

/// Delivers alerts through an outbox in the agent's database: every body is written there
/// first (its own connection; WAL lets it share the file with the core), posted, and deleted
/// once the receiver answers 2xx. Failures retry with exponential backoff (1 s doubling to
/// 5 min); what is pending survives a restart and is sent then. Returns when the core hangs
/// up, after one last round.
fn webhook_loop(
    rx: Receiver<serde_json::Value>,
    url: WebhookTarget,
    db: PathBuf,
    metrics: Arc<Mutex<Metrics>>,
    log: Log,
) {
    let mut store = match Store::open(&db) {
        Ok(s) => s,
        Err(e) => {
            log(Level::Error, format!("webhook outbox: cannot open {}: {e}", db.display()));
            return;
        }
    };
    let mut tls_for: Option<(PathBuf, Arc<rustls::ClientConfig>)> = None;
    let mut last_expire = 0u64;
    loop {
        let hung_up = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(payload) => {
                let now = clock::unix_nanos();
                if let Err(e) = store.outbox_add(&payload.to_string(), now, OUTBOX_MAX) {
                    log(Level::Error, format!("webhook outbox: {e}"));
                }
                // Take whatever else is queued before posting.
                while let Ok(p) = rx.try_recv() {
                    let _ = store.outbox_add(&p.to_string(), now, OUTBOX_MAX);
                }
                // Bodies go out in the order they were written; older ones waiting out a
                // backoff are tried again now, ahead of the new one.
                let _ = store.outbox_due_now(now);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let now = clock::unix_nanos();
        if now.saturating_sub(last_expire) > 60_000_000_000 {
            if let Ok(n) = store.outbox_expire(now.saturating_sub(OUTBOX_KEEP_NS)) {
                if n > 0 {
                    log(Level::Warn, format!("webhook outbox: dropped {n} alerts older than a day"));
                }
            }
            last_expire = now;
        }
        if let Some((u, ca)) = url.read().ok().and_then(|u| u.clone()) {
            // An https webhook with its own CA bundle: a client configuration trusting it too.
            let tls = match &ca {
                Some(p) => match &tls_for {
                    Some((q, c)) if q == p => Some(c.clone()),
                    _ => match crate::tls::client_config(Some(p)) {
                        Ok(c) => {
                            tls_for = Some((p.clone(), c.clone()));
                            Some(c)
                        }
                        Err(e) => {
                            log(Level::Error, format!("webhook {u}: {e}"));
                            None
                        }
                    },
                },
                None => None,
            };
            for (id, body, attempts) in store.outbox_due(now, 32).unwrap_or_default() {
                let r = http::post_json(&u, body.as_bytes(), None, Duration::from_secs(5), tls.as_ref());
                let ok = matches!(r, Ok(s) if (200..300).contains(&s));
                let mut retry = false;
                match r {
                    Ok(_) if ok => {
                        let _ = store.outbox_done(id);
                    }
                    // A receiver that refuses the body itself (4xx, but a timeout or too many
                    // requests) refuses it again: dropped, so it cannot hold the later ones.
                    Ok(s) if (400..500).contains(&s) && s != 408 && s != 429 => {
                        log(Level::Error, format!("webhook {u}: status {s}: the receiver refused the alert; dropped"));
                        let _ = store.outbox_done(id);
                    }
                    other => {
                        let why = match other {
                            Ok(s) => format!("status {s}"),
                            Err(e) => e.to_string(),
                        };
                        let n = attempts + 1;
                        let wait = retry_wait(n);
                        log(Level::Warn, format!("webhook {u}: {why} (attempt {n}; next in {wait})"));
                        let _ = store.outbox_retry(id, n, now + wait.get());
                        retry = true;
                    }
                }
                if let Ok(mut m) = metrics.lock() {
                    if ok {
                        m.webhook_ok += 1;
                    } else {
                        m.webhook_err += 1;
                    }
                }
                if retry {
                    break; // the receiver is down: the rest waits behind this one
                }
            }
        }
        if let Ok(mut m) = metrics.lock() {
            m.outbox_pending = store.outbox_len().unwrap_or(0);
        }
        if hung_up {
            return;
        }
    }
}

/// The wait after failed webhook attempt `n` (1, 2, ...): 1 s doubling to 5 min.
pub fn retry_wait(n: u32) -> Nanos {
    Nanos((1u64 << n.saturating_sub(1).min(9)).min(300) * 1_000_000_000)
}

/// `/probe`'s `timeout=`: a duration ("500ms") or seconds ("2.5", as Prometheus gives its
/// scrape timeout), from 1 ms to 10 s. Anything else is the client's error, said as such
/// rather than replaced by a default it did not ask for.
fn probe_timeout(t: &str) -> Result<Nanos, String> {
    let ns = match t.parse::<Nanos>() {
        Ok(n) => n,
        Err(e) => match t.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Nanos((s * 1e9).min(1e18) as u64),
            _ => return Err(format!("bad timeout: {e}, or seconds such as 2.5")),
        },
    };
    if !(crate::config::MIN_TIMEOUT..=Nanos(10_000_000_000)).contains(&ns) {
        return Err(format!("bad timeout {t:?}: must be from 1ms to 10s"));
    }
    Ok(ns)
}

fn probe_endpoint(r: &http::Request) -> http::Response {
    let Some(target) = r.param("target") else {
        return http::Response::text(400, "missing target parameter\n");
    };
    let kind = match r.param("module").unwrap_or("udp") {
        "udp" => ping::PingKind::Udp,
        "tcp" => ping::PingKind::Tcp,
        "icmp" => ping::PingKind::Icmp,
        "http" => ping::PingKind::Http,
        m => return http::Response::text(400, format!("unknown module {m:?}: expected udp, tcp, icmp or http\n")),
    };
    let timeout = match r.param("timeout").map(probe_timeout).transpose() {
        Ok(t) => t.unwrap_or(Nanos(1_000_000_000)),
        Err(m) => return http::Response::text(400, format!("{m}\n")),
    };
    // A target that cannot be probed is the request's fault (400, with the reason), not a
    // failed probe that reads as an outage.
    let bad = match kind {
        ping::PingKind::Http => ping::parse_http_url(target).err().map(|e| e.to_string()),
        k => crate::config::check_host(target, k != ping::PingKind::Icmp).err(),
    };
    if let Some(why) = bad {
        let why: String = why.chars().map(|c| if c.is_control() { '?' } else { c }).take(300).collect();
        return http::Response::text(400, format!("bad target: {why}\n"));
    }
    let cfg = ping::PingConfig {
        kind,
        target: target.to_string(),
        count: Some(1),
        interval: Nanos(1_000_000),
        timeout,
        size: 44,
        dscp: 0,
        clock_synchronized: false,
        statistics: true,
        ca: None,
        key: None,
    };
    let t0 = clock::mono();
    let res = ping::run(&cfg, &AtomicBool::new(false), &mut |_| {});
    let dur = clock::mono().saturating_sub(t0).as_secs_f64();
    let (ok, rtt) = match &res {
        Ok(rep) => (rep.echo.counts.received > 0, rep.echo.rtt.as_ref().map(|s| s.min_ns as f64 / 1e9)),
        Err(_) => (false, None),
    };
    let mut f = Families::default();
    f.family("meshway_probe_success", GAUGE, "1 when the probe was answered.");
    f.gauge(&[], f64::from(u8::from(ok)));
    f.family("meshway_probe_duration_seconds", GAUGE, "Time the probe took.");
    f.gauge(&[], dur);
    if let Some(r) = rtt {
        f.family("meshway_probe_round_trip_seconds", GAUGE, "Round-trip time of the probe.");
        f.gauge(&[], r);
    }
    http::Response { status: 200, content_type: crate::expo::CONTENT_TYPE, body: f.encode().into_bytes() }
}

/// How long after a moment samples stamped at it may still arrive: a lost probe is stamped
/// with its send time but known only when its timeout (or a perf run) ends, plus a second for
/// the batch to be written.
fn settle_ns(spec: &AgentSpec) -> u64 {
    let longest = spec
        .targets
        .iter()
        .map(|t| match t.probe {
            crate::config::Probe::Perf { duration, .. } => t.timeout.get().max(duration.get()),
            _ => t.timeout.get(),
        })
        .max()
        .unwrap_or(0);
    longest.saturating_add(1_000_000_000)
}

/// The span to roll up when the clock passes from minute `last` to minute `now` (minute
/// numbers since the epoch), as (from, to, whether hours too): the minutes just closed, and
/// again every minute in which samples could still land (`settle_ns` back), so a probe lost
/// near the end of a minute is counted in that minute's rollup. Hours are rolled up when the
/// span touches a closed hour.
pub fn rollup_window(last: u64, now: u64, settle_ns: u64) -> (u64, u64, bool) {
    let to = now * MINUTE_NS;
    let back = (last * MINUTE_NS).saturating_sub(settle_ns);
    let from = back - back % MINUTE_NS;
    let hours = from / HOUR_NS != to / HOUR_NS;
    (from, to, hours)
}

/// The span to roll up at shutdown, minutes and hours, as (from, to): the open minute and, as
/// each minute's rollup does, every minute in which samples could still have landed since
/// (`settle_ns` back), so a loss that came late to a closed minute is in its row and the hour
/// is the sum of its minutes.
pub fn shutdown_rollup_window(now_ns: u64, settle_ns: u64) -> (u64, u64) {
    let back = now_ns.saturating_sub(settle_ns);
    (back - back % MINUTE_NS, now_ns + 1)
}

/// `/probe` requests served at once; more get 503 (each may wait up to its timeout).
const MAX_PROBES: usize = 32;

/// Runs the agent until `signals.stop`. `log` receives one line per notable event.
pub fn run(config_path: &Path, signals: Signals, log: Log) -> Result<(), AgentError> {
    let spec = load(config_path)?;
    let store_err = |source| AgentError::Store { path: spec.database.display().to_string(), source };
    // One agent a database: two would mix their series. Held until the agent returns.
    let _lock = crate::store::DbLock::take(&spec.database)?;
    let mut store = Store::open(&spec.database).map_err(store_err)?;
    let now = clock::unix_nanos();
    // Rollups of the last two hours from raw samples: closes any gap a crash left.
    store.rollup(now.saturating_sub(2 * HOUR_NS), now).map_err(store_err)?;
    store.retain(now, spec.retention_raw.get(), spec.retention_1m.get(), spec.retention_1h.get()).map_err(store_err)?;
    let listener = TcpListener::bind(spec.listen)
        .map_err(|source| AgentError::Listen { addr: spec.listen.to_string(), source })?;
    let local = listener.local_addr().map_err(|source| AgentError::Listen { addr: spec.listen.to_string(), source })?;
    log(
        Level::Info,
        format!("agent: {} targets, http on {local}, database {}", spec.targets.len(), spec.database.display()),
    );

    let metrics = Arc::new(Mutex::new(Metrics { start_time_s: now as f64 / 1e9, ..Default::default() }));
    let token: Arc<RwLock<Option<String>>> = Arc::new(RwLock::new(spec.bearer_token.clone()));
    let webhook_url = Arc::new(RwLock::new(spec.webhook.clone().map(|u| (u, spec.webhook_ca.clone()))));
    let (webhook_tx, webhook_rx) = mpsc::sync_channel(1024);
    let webhook_thread;
    {
        let (u, m, l) = (webhook_url.clone(), metrics.clone(), log.clone());
        let db = spec.database.clone();
        webhook_thread = std::thread::Builder::new()
            .name("webhook".into())
            .spawn(move || webhook_loop(webhook_rx, u, db, m, l))
            .ok();
    }
    let http_stop = Arc::new(AtomicBool::new(false));
    let http_thread = {
        let (metrics, token, probe_on) = (metrics.clone(), token.clone(), spec.probe_endpoint);
        let probes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let handler: Arc<dyn Fn(&http::Request) -> http::Response + Send + Sync> =
            Arc::new(move |r: &http::Request| {
                // Liveness stays open so that a load balancer or orchestrator needs no secret.
                let want = token.read().ok().and_then(|t| t.clone());
                if let Some(t) = want {
                    if r.path != "/healthz" && !http::bearer_matches(r.authorization.as_deref(), &t) {
                        return http::Response::text(401, "unauthorized\n");
                    }
                }
                match r.path.as_str() {
                    "/metrics" => {
                        let body = metrics.lock().map(|m| render(&m)).unwrap_or_default();
                        http::Response { status: 200, content_type: crate::expo::CONTENT_TYPE, body: body.into_bytes() }
                    }
                    "/probe" if probe_on => {
                        // Probes wait on their targets: a pool of their own, so held probes
                        // cannot take the slots scrapes need.
                        if probes.fetch_add(1, Ordering::SeqCst) >= MAX_PROBES {
                            probes.fetch_sub(1, Ordering::SeqCst);
                            return http::Response::text(503, "too many probes in flight\n");
                        }
                        let resp = probe_endpoint(r);
                        probes.fetch_sub(1, Ordering::SeqCst);
                        resp
                    }
                    "/healthz" => http::Response::text(200, "ok\n"),
                    "/" => http::Response::text(200, "meshway agent: /metrics /probe?target=&module= /healthz\n"),
                    _ => http::Response::text(404, "not found\n"),
                }
            });
        let s = http_stop.clone();
        // Built at load (and checked there): a failure now would be a file changed since.
        let tls =
            match &spec.tls {
                None => None,
                Some((c, k)) => Some(http::server_tls(c, k).map_err(|e| AgentError::Listen {
                    addr: spec.listen.to_string(),
                    source: std::io::Error::other(e),
                })?),
            };
        std::thread::Builder::new().name("http-accept".into()).spawn(move || http::serve(listener, s, tls, handler))
    };

    let (tx, rx) = mpsc::sync_channel::<Msg>(100_000);
    let mut core = Core {
        monitor: Monitor::new(spec.fire_after, spec.resolve_after),
        spec,
        config_path: config_path.to_path_buf(),
        store,
        targets: HashMap::new(),
        metrics: metrics.clone(),
        token,
        batch: Vec::new(),
        stop_targets: Arc::new(AtomicBool::new(false)),
        webhook_tx,
        log: log.clone(),
    };
    core.install_targets(&tx).map_err(store_err_fn(&core.spec.database))?;
    core.evaluate_anomalies(clock::unix_nanos());
    let mut last_flush = clock::mono();
    let mut last_eval = clock::mono();
    let mut last_minute = clock::unix_nanos() / MINUTE_NS;
    let mut last_retain = clock::mono();
    while !signals.stop.load(Ordering::Relaxed) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => {
                core.on_message(m);
                // Drain what is queued without blocking.
                while let Ok(m) = rx.try_recv() {
                    core.on_message(m);
                    if core.batch.len() >= BATCH {
                        break;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = clock::mono();
        if core.batch.len() >= BATCH || now.saturating_sub(last_flush) >= Nanos(1_000_000_000) {
            core.flush();
            last_flush = now;
        }
        if now.saturating_sub(last_eval) >= core.spec.evaluate_every {
            core.evaluate(clock::unix_nanos());
            last_eval = now;
        }
        let minute = clock::unix_nanos() / MINUTE_NS;
        if minute != last_minute {
            // The previous minute closed: its rollup from raw samples; and when an hour closed,
            // the hour's (an open hour is rolled up at shutdown and, after a crash, at startup).
            core.flush();
            let (from, to, hours) = rollup_window(last_minute, minute, settle_ns(&core.spec));
            if let Err(e) = core.store.rollup_levels(from, to, true, false) {
                log(Level::Error, format!("rollup failed: {e}"));
            }
            // Closed hours only: the open one is rolled up at shutdown (and after a crash at
            // startup), not from its first minutes.
            let closed = to - to % HOUR_NS;
            if hours && from < closed {
                if let Err(e) = core.store.rollup_levels(from, closed, false, true) {
                    log(Level::Error, format!("hourly rollup failed: {e}"));
                }
            }
            core.evaluate_anomalies(clock::unix_nanos());
            last_minute = minute;
        }
        if now.saturating_sub(last_retain) >= Nanos(600_000_000_000) {
            let s = &core.spec;
            let (r, m, h) = (s.retention_raw.get(), s.retention_1m.get(), s.retention_1h.get());
            if let Err(e) = core.store.retain(clock::unix_nanos(), r, m, h) {
                log(Level::Error, format!("retention failed: {e}"));
            }
            last_retain = now;
        }
        if signals.reload.swap(false, Ordering::Relaxed) {
            core.reload(&tx);
            if let Ok(mut u) = webhook_url.write() {
                *u = core.spec.webhook.clone().map(|w| (w, core.spec.webhook_ca.clone()));
            }
        }
    }
    // Graceful shutdown: stop probing, take what is queued, write it, close the open buckets.
    log(Level::Info, "agent: stopping".into());
    core.stop_targets.store(true, Ordering::Relaxed);
    http_stop.store(true, Ordering::Relaxed);
    while let Ok(m) = rx.try_recv() {
        core.on_message(m);
    }
    core.flush();
    let now = clock::unix_nanos();
    // The open minute, the minutes late samples could still reach, and the open hour.
    let (from, to) = shutdown_rollup_window(now, settle_ns(&core.spec));
    if let Err(e) = core.store.rollup(from, to) {
        log(Level::Error, format!("rollup at shutdown failed: {e}"));
    }
    let _ = core.store.checkpoint();
    // The webhook thread writes what is queued to the outbox, tries once more, and ends; an
    // unreachable receiver cannot hold the exit for more than a few seconds (the outbox keeps
    // the rest for the next start).
    core.webhook_tx = mpsc::sync_channel(1).0;
    if let Some(t) = webhook_thread {
        let until = clock::mono() + Nanos(8_000_000_000);
        while !t.is_finished() && clock::mono() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if let Ok(Ok(t)) = http_thread.map(|t| t.join()) {
        let _ = t;
    }
    log(
        Level::Info,
        format!("agent: stopped, {} samples written", core.metrics.lock().map(|m| m.samples_written).unwrap_or(0)),
    );
    Ok(())
}

fn store_err_fn(path: &Path) -> impl FnOnce(rusqlite::Error) -> AgentError + '_ {
    move |source| AgentError::Store { path: path.display().to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_timeouts_are_durations_or_seconds_within_bounds() {
        assert_eq!(probe_timeout("500ms"), Ok(Nanos(500_000_000)));
        assert_eq!(probe_timeout("2.5"), Ok(Nanos(2_500_000_000)));
        assert_eq!(probe_timeout("10s"), Ok(Nanos(10_000_000_000)));
        assert_eq!(probe_timeout("1ms"), Ok(Nanos(1_000_000)));
        for (bad, says) in [
            ("3 seconds", "bad timeout: invalid duration \"3 seconds\""),
            ("-1", "bad timeout: invalid duration \"-1\": must not be negative"),
            ("NaN", "or seconds such as 2.5"),
            ("inf", "or seconds such as 2.5"),
            ("", "bad timeout"),
            ("0", "bad timeout \"0\": must be from 1ms to 10s"),
            ("11s", "must be from 1ms to 10s"),
            ("1e300", "must be from 1ms to 10s"),
        ] {
            let e = probe_timeout(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn rollups_are_redone_while_late_losses_can_land() {
        let m = MINUTE_NS;
        // Minute 100 closed (the clock is in 101), probes time out after 1 s: minute 99 may
        // still get losses stamped in its last second, so 99 and 100 are rolled up again.
        assert_eq!(rollup_window(100, 101, 2_000_000_000), (99 * m, 101 * m, false));
        // A 60 s timeout reaches two minutes back.
        assert_eq!(rollup_window(100, 101, 61_000_000_000), (98 * m, 101 * m, false));
        // Nothing late: only the closed minute.
        assert_eq!(rollup_window(100, 101, 0), (100 * m, 101 * m, false));
        // The first minute of an hour: the closed hour is rolled up; the second minute still
        // reaches into it (late losses of its last second), so it is rolled up once more.
        assert_eq!(rollup_window(59, 60, 2_000_000_000), (58 * m, 60 * m, true));
        assert_eq!(rollup_window(60, 61, 2_000_000_000), (59 * m, 61 * m, true));
        assert_eq!(rollup_window(61, 62, 2_000_000_000), (60 * m, 62 * m, false));
        // Minute 0 does not underflow.
        assert_eq!(rollup_window(0, 1, 5_000_000_000), (0, m, false));
    }

    /// Minute 100 gets 470 probes, 47 of them lost; its last two losses come late, after the
    /// rollup when minute 101 began. The rollup at shutdown (in minute 101) reaches back as
    /// far as losses can land: the minute's row has all 470 and 47 (it had 468 and 45), and
    /// the hour is the sum of its minutes.
    #[test]
    fn the_shutdown_rollup_takes_late_losses_and_the_hour_sums_its_minutes() {
        let p = std::env::temp_dir().join(format!("meshway-agent-shutdown-{}.db", std::process::id()));
        let files = |p: &Path| ["", "-wal", "-shm"].map(|e| PathBuf::from(format!("{}{e}", p.display())));
        for f in files(&p) {
            let _ = std::fs::remove_file(f);
        }
        let mut st = Store::open(&p).unwrap();
        let id = st.target_id("t", "udp", "127.0.0.1:862").unwrap();
        let m = 100 * MINUTE_NS;
        let sample = |k: u64| {
            let at = m + k * (MINUTE_NS / 470);
            Sample { at_ns: at, rtt_ns: (k % 10 != 9).then_some(1_000_000), value: None }
        };
        // Everything but the last two losses (k = 459, 469) is in when minute 101 begins.
        let (late, early): (Vec<u64>, Vec<u64>) = (0..470).partition(|k| *k == 459 || *k == 469);
        st.insert(&early.iter().map(|&k| (id, sample(k))).collect::<Vec<_>>()).unwrap();
        let settle = 2_000_000_000; // a 1 s timeout, and a second for the batch
        let (from, to, _) = rollup_window(100, 101, settle);
        st.rollup_levels(from, to, true, false).unwrap();
        assert_eq!(st.rollups(id, false, m, m + 1).unwrap()[0].lost, 45);
        st.insert(&late.iter().map(|&k| (id, sample(k))).collect::<Vec<_>>()).unwrap();
        // Shutdown 1.5 s into minute 101.
        let (from, to) = shutdown_rollup_window(101 * MINUTE_NS + 1_500_000_000, settle);
        assert_eq!(from, m);
        st.rollup(from, to).unwrap();
        let minutes = st.rollups(id, false, 0, HOUR_NS * 2).unwrap();
        let hours = st.rollups(id, true, 0, HOUR_NS * 2).unwrap();
        drop(st);
        for f in files(&p) {
            let _ = std::fs::remove_file(f);
        }
        assert_eq!((minutes[0].sent, minutes[0].lost), (470, 47));
        let (sent, lost) = minutes.iter().fold((0, 0), |a, r| (a.0 + r.sent, a.1 + r.lost));
        assert_eq!((hours[0].sent, hours[0].lost), (sent, lost));
    }

    /// 198 identical warnings in 4 s are one line; a minute on, one line with the count; a
    /// new message first says how often the old one repeated; recovery says it too.
    #[test]
    fn repeated_warnings_are_counted_not_logged() {
        let ms = |v: u64| Nanos(v * 1_000_000);
        let mut r = Repeats::default();
        let msg = || "target p: cannot connect to perf server 127.0.0.1:9".to_string();
        let mut lines = Vec::new();
        for k in 0..198 {
            lines.extend(r.warn(msg(), ms(k * 20)));
        }
        assert_eq!(lines, vec![msg()]);
        assert_eq!(r.warn(msg(), ms(60_000)), vec![format!("{} (repeated 198 times in the last 60s)", msg())]);
        assert!(r.warn(msg(), ms(60_100)).is_empty());
        assert_eq!(
            r.warn("target p: cannot resolve \"x\"".into(), ms(61_000)),
            vec![format!("{} (repeated 1 more times)", msg()), "target p: cannot resolve \"x\"".to_string()]
        );
        assert!(r.ok().is_empty(), "nothing repeated since it was said");
        assert_eq!(r.warn(msg(), ms(62_000)), vec![msg()]);
        assert!(r.warn(msg(), ms(62_010)).is_empty());
        assert_eq!(r.ok(), vec![format!("{} (repeated 1 more times)", msg())]);
    }

    #[test]
    fn webhook_retries_wait_1s_doubling_to_5min() {
        let waits: Vec<String> = (1..=11).map(|n| retry_wait(n).to_string()).collect();
        assert_eq!(waits, ["1s", "2s", "4s", "8s", "16s", "32s", "64s", "128s", "256s", "300s", "300s"]);
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123_000_000), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_000_000_000_000_000), "2026-11-18T11:06:40.000Z");
    }

    #[test]
    fn webhook_payload_has_alertmanager_fields() {
        let o = Objective { metric: Metric::Loss, threshold: 0.001, window_ns: 300_000_000_000 };
        let p = webhook_payload("edge", &o, Some(0.5), Transition::Fired, 0, 0, "http://127.0.0.1:9330");
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing");
        let a = &p["alerts"][0];
        assert_eq!(a["labels"]["alertname"], "MeshwayObjectiveViolated");
        assert_eq!(a["labels"]["target"], "edge");
        assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(a["annotations"]["value"], "50%");
        assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
        let r = webhook_payload("edge", &o, Some(0.0), Transition::Resolved, 0, 60_000_000_000, "x");
        assert_eq!(r["alerts"][0]["endsAt"], "1970-01-01T00:01:00.000Z");
    }

    #[test]
    fn rendered_metrics_name_units_and_counters() {
        let mut m = Metrics::default();
        let mut t = TargetMetrics { kind: "udp", sent: 10, lost: 1, ..Default::default() };
        t.buckets[9] = 9;
        t.rtt_count = 9;
        t.rtt_sum_s = 0.0072;
        m.targets.insert("a".into(), t);
        let s = render(&m);
        assert_eq!(
            (objective_ratio(0.1, 0.0), objective_ratio(0.0, 0.0), objective_ratio(0.1, 0.2)),
            (f64::INFINITY, 0.0, 0.5)
        );
        let mut inf = Families::default();
        inf.family("x", GAUGE, "x");
        inf.gauge(&[], objective_ratio(0.1, 0.0));
        let text = inf.encode();
        assert!(text.contains("x +Inf"), "{text}");
        assert!(s.contains("meshway_probes_sent_total{target=\"a\",kind=\"udp\"} 10"));
        assert!(s.contains("meshway_probe_rtt_seconds_bucket{target=\"a\",le=\"0.001\"} 9"));
        assert!(s.contains("meshway_probe_rtt_seconds_bucket{target=\"a\",le=\"0.000001\"} 0"), "{s}");
        assert!(s.contains("meshway_probe_rtt_seconds_bucket{target=\"a\",le=\"0.0000025\"} 0"), "{s}");
        assert!(s.contains("meshway_probe_rtt_seconds_bucket{target=\"a\",le=\"+Inf\"} 9"));
        assert!(s.contains("meshway_build_info{version="));
        m.targets.insert("q\"\n".into(), TargetMetrics { kind: "udp", ..Default::default() });
        assert!(render(&m).contains("meshway_probes_sent_total{target=\"q\\\"\\n\",kind=\"udp\"} 0"));
    }

    #[test]
    fn splay_is_within_the_interval_and_stable() {
        let i = Nanos(1_000_000_000);
        assert!(splay("x", i) < i);
        assert_eq!(splay("x", i), splay("x", i));
        assert_ne!(splay("x", i), splay("y", i));
    }
}
