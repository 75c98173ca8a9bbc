//! The agent's judgement without its I/O: what probe targets measured, held in sliding
//! windows, and their objectives' alerts, advanced only by the time it is given
//! (`on_sample`, `evaluate(now)`). And the [`Prober`] trait between that judgement and the
//! network: the agent's udp probes implement it over sockets (`udp_core::UdpSockets`), and
//! tests implement it with scripted round trips, so a day of probing and alerting runs in
//! milliseconds with exact outcomes.
//!
//! The agent's runtime (`agent::run`) owns everything else: threads, the SQLite history, the
//! log, webhooks and `/metrics`.

use crate::iface::{CounterWindow, Rates, Snapshot};
use meshway_probe::objective::{AlertState, Metric, Objective, Sample, Transition, Window, WindowStats};
use meshway_units::Nanos;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// The time, as a prober is given it: monotonic (for schedules and round trips) and Unix
/// (for the samples' timestamps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Nanos,
    pub unix_ns: u64,
}

impl Now {
    /// The machine's clocks now.
    pub fn read() -> Now {
        Now { mono: crate::clock::mono(), unix_ns: crate::clock::unix_nanos() }
    }
}

/// Something that probes targets, told the time rather than reading it.
pub trait Prober {
    /// Does what is due at `now` (sends, takes what arrived, declares losses) and hands each
    /// measurement to `out`: the target's index and its sample (a round trip, or a loss with
    /// `rtt_ns: None`).
    fn poll(&mut self, now: Now, out: &mut dyn FnMut(usize, Sample));
    /// When `poll` next has something to do (monotonic); `None` when nothing is scheduled.
    fn poll_timeout(&mut self) -> Option<Nanos>;
    /// Blocks until `until` (monotonic) or until input arrives, whichever comes first. A
    /// prober over sockets waits on them; a fake returns at once.
    fn wait(&mut self, until: Nanos);
}

/// Runs `p` on the machine's clocks until `stop`, waking at least every 50 ms to notice it.
pub fn run(p: &mut dyn Prober, stop: &AtomicBool, out: &mut dyn FnMut(usize, Sample)) {
    while !stop.load(Ordering::Relaxed) {
        let now = Now::read();
        p.poll(now, out);
        let cap = now.mono + Nanos(50_000_000);
        let until = p.poll_timeout().map_or(cap, |d| d.min(cap));
        p.wait(until);
    }
}

/// An objective's limit or a window's value in base units (seconds, ratios, bytes per
/// second), as `/metrics` shows them.
pub fn base_units(m: Metric, v: f64) -> f64 {
    match m {
        Metric::OpticsLevel | Metric::Anomaly | Metric::RxPower => v,
        Metric::Loss | Metric::Utilization | Metric::ErrorRatio | Metric::DropRatio => v,
        Metric::ThroughputMin => v / 8.0,
        _ => v / 1e9,
    }
}

/// An alert that changed state.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    pub target: String,
    pub objective: Objective,
    pub transition: Transition,
    /// The window's value when it changed (the objective's units), if the window had one.
    pub value: Option<f64>,
    /// When the alert began firing (Unix ns).
    pub since_ns: u64,
    /// When it changed (Unix ns).
    pub at_ns: u64,
}

/// A target's state after an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The window over the longest objective's span.
    pub window: WindowStats,
    /// Per objective: whether it is violated (`None`: no samples to judge), and whether its
    /// alert fires.
    pub objectives: Vec<(Metric, Option<bool>, bool)>,
    /// Per objective: its limit and the window's value, in base units.
    pub limits: Vec<(Metric, f64, Option<f64>)>,
}

/// What a watched target is: probed (samples), interfaces (counter snapshots) or optical
/// modules (their worst warning level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Probe,
    Interface,
    Optics,
}

struct Watched {
    kind: Kind,
    objectives: Vec<Objective>,
    window: Window,
    /// How long a probe's fate takes to be known (its timeout): windows end this long before
    /// the evaluation, so a lost probe and its answered neighbours count together.
    settle_ns: u64,
    alerts: Vec<AlertState>,
    /// The last anomaly verdict of the stored series (1 anomalous, 0 not).
    anomaly: Option<f64>,
    /// Interface targets: each matching interface.
    ifaces: BTreeMap<String, Sub>,
    /// Optics targets: each module.
    modules: BTreeMap<String, Sub>,
}

/// One interface of an interface target, or one module of an optics target: its own alerts
/// on the target's objectives.
struct Sub {
    counters: CounterWindow,
    alerts: Vec<AlertState>,
    anomaly: Option<f64>,
    /// Optics: the module's worst level (0 ok, 1 warning, 2 alarm), `None` when unread.
    level: Option<f64>,
}

/// An objective's state: its metric, violated (`None`: not judged), firing.
pub type Judged = (Metric, Option<bool>, bool);
/// An objective's limit and its window's value.
pub type Limit = (Metric, f64, Option<f64>);

/// An interface's or a module's state after an evaluation: per objective, violated (or not
/// judged), firing, and its limit and value as the objective states them.
pub type SubVerdict = ((String, String), Vec<Judged>, Vec<Limit>);

/// Everything one evaluation says.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// Alerts that changed state, in target order.
    pub events: Vec<AlertEvent>,
    /// Probe targets.
    pub targets: Vec<(String, Verdict)>,
    /// Interfaces, keyed (target, interface).
    pub interfaces: Vec<SubVerdict>,
    /// Optical modules, keyed (target, module).
    pub modules: Vec<SubVerdict>,
}

/// Default window span when a target has no objective: 5 minutes.
const DEFAULT_SPAN_NS: u64 = 300_000_000_000;

fn span(objectives: &[Objective]) -> u64 {
    objectives.iter().map(|o| o.window_ns).max().unwrap_or(DEFAULT_SPAN_NS)
}

/// Probe targets' windows and alerts. Pure: no clock, no I/O.
pub struct Monitor {
    targets: BTreeMap<String, Watched>,
    /// Firing alerts of interfaces and modules that disappeared: resolved at the next
    /// evaluation.
    dropped: Vec<AlertEvent>,
    fire_after: u32,
    resolve_after: u32,
}

impl Monitor {
    /// Alerts fire after `fire_after` consecutive violated evaluations and resolve after
    /// `resolve_after` consecutive met ones.
    pub fn new(fire_after: u32, resolve_after: u32) -> Monitor {
        Monitor { targets: BTreeMap::new(), dropped: Vec::new(), fire_after, resolve_after }
    }

    /// The hysteresis of alerts created from now on (a reload); alerts already kept keep theirs.
    pub fn set_hysteresis(&mut self, fire_after: u32, resolve_after: u32) {
        self.fire_after = fire_after;
        self.resolve_after = resolve_after;
    }

    /// Watches probe target `name` with `objectives`. A target already watched (a reload)
    /// keeps its window and the states of the alerts it keeps.
    pub fn watch(&mut self, name: &str, objectives: &[Objective]) {
        self.watch_kind(name, Kind::Probe, objectives, 0);
    }

    /// Watches `name` as `kind`: probe samples, interface snapshots or module levels. On a
    /// reload each objective keeps the alert of the objective on the same metric it had (in
    /// whatever order the objectives now come); an alert that was firing and has no objective
    /// any more (or whose interfaces and modules go with a change of kind) is resolved at
    /// `now`, and returned, so its receiver hears of it.
    pub fn watch_kind(&mut self, name: &str, kind: Kind, objectives: &[Objective], now: u64) -> Vec<AlertEvent> {
        let new = AlertState::new(self.fire_after, self.resolve_after);
        let mut gone = Vec::new();
        let w = self.targets.entry(name.to_string()).or_insert_with(|| Watched {
            kind,
            objectives: Vec::new(),
            window: Window::new(span(objectives)),
            settle_ns: 0,
            alerts: Vec::new(),
            anomaly: None,
            ifaces: BTreeMap::new(),
            modules: BTreeMap::new(),
        });
        if w.kind != kind {
            for (sub, st) in w.ifaces.iter().chain(w.modules.iter()) {
                gone.extend(resolved(&format!("{name}/{sub}"), &w.objectives, &st.alerts, now));
            }
            w.ifaces.clear();
            w.modules.clear();
            w.kind = kind;
        }
        // Keep what was measured; a new span bounds it from the next eviction on.
        w.window.set_span(span(objectives) + w.settle_ns);
        let old = std::mem::take(&mut w.objectives);
        let (alerts, dropped) = carry(&old, std::mem::take(&mut w.alerts), objectives, new);
        gone.extend(resolved(name, &old, &dropped, now));
        w.alerts = alerts;
        for (sub, st) in w.ifaces.iter_mut().chain(w.modules.iter_mut()) {
            st.counters.set_span(span(objectives));
            let (alerts, dropped) = carry(&old, std::mem::take(&mut st.alerts), objectives, new);
            gone.extend(resolved(&format!("{name}/{sub}"), &old, &dropped, now));
            st.alerts = alerts;
        }
        w.objectives = objectives.to_vec();
        gone
    }

    /// Interface target `name`'s snapshots, one per matching interface: interfaces not among
    /// them are forgotten. Returns, per interface, the rates since its previous snapshot.
    pub fn on_interfaces(&mut self, name: &str, snaps: Vec<Snapshot>) -> Vec<(String, Option<Rates>, Snapshot)> {
        let Some(w) = self.targets.get_mut(name) else { return Vec::new() };
        let present: std::collections::HashSet<&str> = snaps.iter().map(|s| s.link.name.as_str()).collect();
        for (i, sub) in w.ifaces.iter().filter(|(i, _)| !present.contains(i.as_str())) {
            self.dropped.extend(resolved(&format!("{name}/{i}"), &w.objectives, &sub.alerts, 0));
        }
        w.ifaces.retain(|n, _| present.contains(n.as_str()));
        let (n, sp) = (w.objectives.len(), span(&w.objectives));
        let new = AlertState::new(self.fire_after, self.resolve_after);
        let mut out = Vec::with_capacity(snaps.len());
        for snap in snaps {
            let sub = w.ifaces.entry(snap.link.name.clone()).or_insert_with(|| Sub {
                counters: CounterWindow::new(sp),
                alerts: vec![new; n],
                anomaly: None,
                level: None,
            });
            let rates = sub.counters.latest().and_then(|prev| Rates::between(prev, &snap));
            sub.counters.push(snap.clone());
            out.push((snap.link.name.clone(), rates, snap));
        }
        out
    }

    /// Optics target `name`'s modules now present (others are forgotten) and, for each module
    /// read, its worst level.
    pub fn on_modules(&mut self, name: &str, present: &[&str], levels: &[(&str, Option<f64>)]) {
        let Some(w) = self.targets.get_mut(name) else { return };
        for (m, sub) in w.modules.iter().filter(|(m, _)| !present.contains(&m.as_str())) {
            self.dropped.extend(resolved(&format!("{name}/{m}"), &w.objectives, &sub.alerts, 0));
        }
        w.modules.retain(|n, _| present.contains(&n.as_str()));
        let new = AlertState::new(self.fire_after, self.resolve_after);
        let n = w.objectives.len();
        for m in present {
            w.modules.entry((*m).to_string()).or_insert_with(|| Sub {
                counters: CounterWindow::new(0),
                alerts: vec![new; n],
                anomaly: None,
                level: None,
            });
        }
        for (m, level) in levels {
            if let (Some(sub), Some(l)) = (w.modules.get_mut(*m), level) {
                sub.level = Some(*l);
            }
        }
    }

    /// Forgets every target for which `keep` is false; the alerts of those that were firing
    /// are resolved at `now` and returned.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool, now: u64) -> Vec<AlertEvent> {
        let mut gone = Vec::new();
        for (name, w) in self.targets.iter().filter(|(n, _)| !keep(n)) {
            gone.extend(resolved(name, &w.objectives, &w.alerts, now));
            for (sub, st) in w.ifaces.iter().chain(w.modules.iter()) {
                gone.extend(resolved(&format!("{name}/{sub}"), &w.objectives, &st.alerts, now));
            }
        }
        self.targets.retain(|n, _| keep(n));
        gone
    }

    /// Whether each objective's alert of `name` fires now.
    pub fn firing(&self, name: &str) -> Vec<bool> {
        self.targets.get(name).map(|w| w.alerts.iter().map(|a| a.firing).collect()).unwrap_or_default()
    }

    /// Probe target `name`'s probes are known lost `timeout_ns` after they were sent: its
    /// windows end that long before each evaluation. A lost probe is stamped with its send
    /// time but known only at its timeout, while its answered neighbours are in at once: a
    /// window to the evaluation held the last timeout's answers without their losses (10%
    /// loss with a 5 s timeout over 10 s read 5.3%, and a 9% objective held).
    pub fn settle(&mut self, name: &str, timeout_ns: u64) {
        if let Some(w) = self.targets.get_mut(name) {
            w.settle_ns = timeout_ns;
            w.window.set_span(span(&w.objectives) + timeout_ns);
        }
    }

    /// A measurement of `name` (ignored for a target not watched).
    pub fn on_sample(&mut self, name: &str, s: Sample) {
        if let Some(w) = self.targets.get_mut(name) {
            w.window.push(s);
        }
    }

    /// Judges every objective at `now` (Unix ns): the alerts that changed, and each target's,
    /// interface's and module's verdict. `anomaly` objectives are judged by
    /// [`Monitor::observe_anomaly`] instead.
    pub fn evaluate(&mut self, now: u64) -> Evaluation {
        let mut ev = Evaluation::default();
        ev.events.extend(self.dropped.drain(..).map(|e| AlertEvent { at_ns: now, ..e }));
        for (name, w) in &mut self.targets {
            match w.kind {
                Kind::Probe => {}
                Kind::Interface => {
                    for (ifname, sub) in &mut w.ifaces {
                        let (counters, anomaly) = (&sub.counters, sub.anomaly);
                        let value = |o: &Objective| {
                            let r = counters.over(o.window_ns);
                            match o.metric {
                                Metric::Anomaly => anomaly,
                                Metric::Utilization => r.and_then(|r| r.utilization),
                                Metric::ErrorRatio => r.and_then(|r| r.error_ratio),
                                Metric::DropRatio => r.and_then(|r| r.drop_ratio),
                                _ => None,
                            }
                        };
                        let label = format!("{name}/{ifname}");
                        let (objs, limits) =
                            judge(&label, &w.objectives, &mut sub.alerts, value, false, now, &mut ev.events);
                        ev.interfaces.push(((name.clone(), ifname.clone()), objs, limits));
                    }
                    continue;
                }
                Kind::Optics => {
                    for (module, sub) in &mut w.modules {
                        let level = sub.level;
                        let label = format!("{name}/{module}");
                        let (objs, limits) =
                            judge(&label, &w.objectives, &mut sub.alerts, |_| level, false, now, &mut ev.events);
                        ev.modules.push(((name.clone(), module.clone()), objs, limits));
                    }
                    continue;
                }
            }
            w.window.evict(now);
            let end = now.saturating_sub(w.settle_ns);
            let window = w.window.stats(end, span(&w.objectives));
            let (win, anomaly) = (&w.window, w.anomaly);
            let value = |o: &Objective| {
                if o.metric == Metric::Anomaly {
                    anomaly
                } else {
                    win.stats(end, o.window_ns).value(o.metric)
                }
            };
            let (objectives, limits) = judge(name, &w.objectives, &mut w.alerts, value, true, now, &mut ev.events);
            ev.targets.push((name.clone(), Verdict { window, objectives, limits }));
        }
        ev
    }

    /// The `anomaly` objective of `name`, given the verdict on its stored series (1
    /// anomalous, 0 not): advances its alert with the same hysteresis as the others.
    pub fn observe_anomaly(&mut self, name: &str, anomalous: f64, now: u64) -> Option<AlertEvent> {
        let w = self.targets.get_mut(name)?;
        w.anomaly = Some(anomalous);
        let k = w.objectives.iter().position(|o| o.metric == Metric::Anomaly)?;
        let o = w.objectives[k];
        let a = &mut w.alerts[k];
        let tr = a.observe(o.violated_by(Some(anomalous)), now)?;
        Some(event(name, &o, tr, Some(anomalous), a.since_ns, now))
    }

    /// The same for one interface of interface target `name`.
    pub fn observe_interface_anomaly(
        &mut self,
        name: &str,
        interface: &str,
        anomalous: f64,
        now: u64,
    ) -> Option<AlertEvent> {
        let w = self.targets.get_mut(name)?;
        let k = w.objectives.iter().position(|o| o.metric == Metric::Anomaly)?;
        let o = w.objectives[k];
        let sub = w.ifaces.get_mut(interface)?;
        sub.anomaly = Some(anomalous);
        let a = &mut sub.alerts[k];
        let tr = a.observe(o.violated_by(Some(anomalous)), now)?;
        Some(event(&format!("{name}/{interface}"), &o, tr, Some(anomalous), a.since_ns, now))
    }

    /// The interfaces interface target `name` watches now.
    pub fn interfaces(&self, name: &str) -> Vec<String> {
        self.targets.get(name).map(|w| w.ifaces.keys().cloned().collect()).unwrap_or_default()
    }
}

/// One evaluation of `objectives` (their alerts in `alerts`) with `value` giving each one's
/// current value: alert transitions go to `events` (an `anomaly` objective advances in
/// `observe_anomaly` instead, and only shows here); returns each objective's (violated,
/// firing) and (limit, value), in base units when `base` is set.
fn judge(
    label: &str,
    objectives: &[Objective],
    alerts: &mut [AlertState],
    value: impl Fn(&Objective) -> Option<f64>,
    base: bool,
    now: u64,
    events: &mut Vec<AlertEvent>,
) -> (Vec<Judged>, Vec<Limit>) {
    let unit = |m: Metric, v: f64| if base { base_units(m, v) } else { v };
    let mut objs = Vec::with_capacity(objectives.len());
    let mut limits = Vec::with_capacity(objectives.len());
    for (o, a) in objectives.iter().zip(alerts.iter_mut()) {
        let v = value(o);
        let violated = o.violated_by(v);
        if o.metric != Metric::Anomaly {
            if let Some(tr) = a.observe(violated, now) {
                events.push(event(label, o, tr, v, a.since_ns, now));
            }
        }
        objs.push((o.metric, violated, a.firing));
        limits.push((o.metric, unit(o.metric, o.threshold), v.map(|v| unit(o.metric, v))));
    }
    (objs, limits)
}

/// The new objectives' alerts: each takes the alert of an old objective on the same metric
/// (each old one used once), else `new`. Also returns the old alerts nobody took, in the old
/// objectives' order (a taken one is left as a fresh state there).
fn carry(
    old: &[Objective],
    mut alerts: Vec<AlertState>,
    objectives: &[Objective],
    new: AlertState,
) -> (Vec<AlertState>, Vec<AlertState>) {
    alerts.resize(old.len(), new);
    let mut taken = vec![false; old.len()];
    let kept = objectives
        .iter()
        .map(|o| match (0..old.len()).find(|&k| !taken[k] && old[k].metric == o.metric) {
            Some(k) => {
                taken[k] = true;
                std::mem::replace(&mut alerts[k], new)
            }
            None => new,
        })
        .collect();
    for (k, t) in taken.iter().enumerate() {
        if *t {
            alerts[k] = new; // not firing: nothing to resolve
        }
    }
    (kept, alerts)
}

/// Resolved events for the alerts of `label` that fire (`alerts[k]` belongs to `objectives[k]`).
fn resolved(label: &str, objectives: &[Objective], alerts: &[AlertState], now: u64) -> Vec<AlertEvent> {
    objectives
        .iter()
        .zip(alerts)
        .filter(|(_, a)| a.firing)
        .map(|(o, a)| event(label, o, Transition::Resolved, None, a.since_ns, now))
        .collect()
}

fn event(label: &str, o: &Objective, tr: Transition, value: Option<f64>, since_ns: u64, now: u64) -> AlertEvent {
    AlertEvent { target: label.to_string(), objective: *o, transition: tr, value, since_ns, at_ns: now }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    /// A fake prober: one probe per target per second, answered after the round trip the
    /// script gives for that target and second, or lost (`None`) one timeout later.
    struct Scripted {
        targets: usize,
        timeout: Nanos,
        script: fn(usize, u64) -> Option<u64>,
        next: Nanos,
        sent: u64,
        /// (due, target, sample): answers and losses waiting for their time.
        pending: Vec<(Nanos, usize, Sample)>,
    }

    impl Prober for Scripted {
        fn poll(&mut self, now: Now, out: &mut dyn FnMut(usize, Sample)) {
            while self.next <= now.mono {
                let (sec, at_mono) = (self.sent, self.next);
                let at_unix = now.unix_ns - now.mono.saturating_sub(at_mono).get();
                for t in 0..self.targets {
                    match (self.script)(t, sec) {
                        Some(rtt) => self.pending.push((
                            at_mono + Nanos(rtt),
                            t,
                            Sample { at_ns: at_unix + rtt, rtt_ns: Some(rtt), value: None },
                        )),
                        None => self.pending.push((
                            at_mono + self.timeout,
                            t,
                            Sample { at_ns: at_unix, rtt_ns: None, value: None },
                        )),
                    }
                }
                self.sent += 1;
                self.next += Nanos(S);
            }
            self.pending.sort_by_key(|p| (p.0, p.1));
            let due = self.pending.iter().take_while(|p| p.0 <= now.mono).count();
            for (_, t, s) in self.pending.drain(..due) {
                out(t, s);
            }
        }
        fn poll_timeout(&mut self) -> Option<Nanos> {
            Some(self.pending.iter().map(|p| p.0).min().map_or(self.next, |d| d.min(self.next)))
        }
        fn wait(&mut self, _until: Nanos) {}
    }

    /// Drives `p` and `m` on a virtual clock for `secs` seconds, evaluating every 10 s;
    /// returns the alert events.
    fn drive(p: &mut Scripted, m: &mut Monitor, names: &[&str], secs: u64) -> Vec<AlertEvent> {
        let (mono0, unix0) = (Nanos(5 * S), 1_800_000_000 * S);
        let mut events = Vec::new();
        let mut next_eval = mono0 + Nanos(10 * S);
        let mut now = mono0;
        while now <= mono0 + Nanos(secs * S) {
            let t = Now { mono: now, unix_ns: unix0 + now.saturating_sub(mono0).get() };
            p.poll(t, &mut |i, s| m.on_sample(names[i], s));
            if now >= next_eval {
                events.extend(m.evaluate(t.unix_ns).events);
                next_eval += Nanos(10 * S);
            }
            let wake = p.poll_timeout().unwrap_or(next_eval).min(next_eval);
            p.wait(wake);
            now = wake.max(now + Nanos(1));
        }
        events
    }

    fn objective(metric: Metric, threshold: f64, window_s: u64) -> Objective {
        Objective { metric, threshold, window_ns: window_s * S }
    }

    #[test]
    fn a_latency_step_fires_once_and_resolves_once_at_the_evaluations_hysteresis_gives() {
        // Target 0: 1 ms, then 80 ms from second 120 to 299, then 1 ms. Target 1: 1 ms
        // throughout. p99 over 60 s must stay under 50 ms; fire after 2, resolve after 3.
        fn script(t: usize, sec: u64) -> Option<u64> {
            Some(if t == 0 && (120..300).contains(&sec) { 80 * MS } else { MS })
        }
        let mut p = Scripted { targets: 2, timeout: Nanos(S), script, next: Nanos(5 * S), sent: 0, pending: vec![] };
        let mut m = Monitor::new(2, 3);
        let o = [objective(Metric::RttP99, 50e6, 60)];
        m.watch("edge", &o);
        m.watch("core", &o);
        let ev = drive(&mut p, &mut m, &["edge", "core"], 600);
        let unix0 = 1_800_000_000 * S;
        let at: Vec<(&str, Transition, u64)> =
            ev.iter().map(|e| (e.target.as_str(), e.transition, (e.at_ns - unix0) / S)).collect();
        // The step's first sample lands at 120.08 s: the window's p99 crosses 50 ms at the
        // evaluation at 130 s, the second violated one at 140 s fires. After the last slow
        // sample (299.08 s) leaves the 60 s window, evaluations at 360, 370, 380 s are met:
        // resolved at 380 s.
        assert_eq!(at, vec![("edge", Transition::Fired, 140), ("edge", Transition::Resolved, 380)]);
        assert_eq!(ev[0].since_ns, unix0 + 140 * S);
        assert!(ev[0].value.unwrap() > 50e6);
        assert_eq!(m.firing("edge"), vec![false]);
    }

    #[test]
    fn losses_count_in_the_window_they_were_sent_in_and_verdicts_are_in_base_units() {
        // Every 10th probe of target 0 is lost: 10% loss against a 5% objective.
        fn script(_t: usize, sec: u64) -> Option<u64> {
            (sec % 10 != 9).then_some(2 * MS)
        }
        let mut p = Scripted { targets: 1, timeout: Nanos(S), script, next: Nanos(5 * S), sent: 0, pending: vec![] };
        let mut m = Monitor::new(1, 1);
        m.watch("t", &[objective(Metric::Loss, 0.05, 100), objective(Metric::RttP50, 10e6, 100)]);
        let ev = drive(&mut p, &mut m, &["t"], 200);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!((ev[0].transition, ev[0].objective.metric), (Transition::Fired, Metric::Loss));
        let e = m.evaluate(1_800_000_000 * S + 200 * S);
        let v = &e.targets[0].1;
        assert_eq!(v.window.sent, 100);
        assert_eq!(v.window.lost, 10);
        assert_eq!(v.limits[0], (Metric::Loss, 0.05, Some(0.1)));
        assert_eq!(v.limits[1], (Metric::RttP50, 0.01, Some(0.002)));
        assert_eq!(v.objectives, vec![(Metric::Loss, Some(true), true), (Metric::RttP50, Some(false), false)]);
    }

    /// A lost probe is known a timeout after it was sent, its answered neighbours at once:
    /// windows end one timeout before the evaluation, so they hold both. 10% loss with a 5 s
    /// timeout over a 10 s window read about 5% and a 9% objective never fired.
    #[test]
    fn a_window_ends_one_timeout_back_so_losses_count_with_their_neighbours() {
        fn script(_t: usize, sec: u64) -> Option<u64> {
            (sec % 10 != 9).then_some(2 * MS)
        }
        let run = |settle: bool| {
            let mut p =
                Scripted { targets: 1, timeout: Nanos(5 * S), script, next: Nanos(5 * S), sent: 0, pending: vec![] };
            let mut m = Monitor::new(1, 1);
            m.watch("t", &[objective(Metric::Loss, 0.09, 10)]);
            if settle {
                m.settle("t", 5 * S);
            }
            let ev = drive(&mut p, &mut m, &["t"], 200);
            let w = m.evaluate(1_800_000_000 * S + 200 * S).targets[0].1.window.clone();
            (ev.len(), w.sent, w.lost)
        };
        assert_eq!(run(true), (1, 10, 1));
        let (fired, sent, lost) = run(false);
        assert_eq!((fired, lost * 10 < sent), (0, true), "the bias this removes");
    }

    #[test]
    fn a_reload_keeps_the_window_and_the_alerts_it_keeps() {
        let mut m = Monitor::new(1, 1);
        m.watch("t", &[objective(Metric::RttP50, 1e6, 60)]);
        for k in 0..10 {
            m.on_sample("t", Sample { at_ns: k * S, rtt_ns: Some(5 * MS), value: None });
        }
        assert_eq!(m.evaluate(10 * S).events.len(), 1);
        m.watch("t", &[objective(Metric::RttP50, 1e6, 60), objective(Metric::Loss, 0.5, 60)]);
        assert_eq!(m.firing("t"), vec![true, false]);
        let e = m.evaluate(11 * S);
        assert!(e.events.is_empty());
        assert_eq!(e.targets[0].1.window.sent, 10);
        let gone = m.retain(|n| n != "t", 12 * S);
        assert_eq!(gone.len(), 1, "the firing rtt-p50 alert is resolved as its target goes");
        assert_eq!(
            (gone[0].transition, gone[0].objective.metric, gone[0].at_ns),
            (Transition::Resolved, Metric::RttP50, 12 * S)
        );
        assert!(m.evaluate(12 * S).targets.is_empty());
        m.on_sample("t", Sample { at_ns: 12 * S, rtt_ns: None, value: None });
        assert!(m.firing("t").is_empty());
    }

    #[test]
    fn anomaly_objectives_advance_only_through_observe_anomaly() {
        let mut m = Monitor::new(2, 1);
        m.watch("t", &[objective(Metric::Anomaly, 0.5, 60)]);
        m.on_sample("t", Sample { at_ns: S, rtt_ns: Some(MS), value: None });
        assert!(m.evaluate(2 * S).events.is_empty());
        assert_eq!(m.observe_anomaly("t", 1.0, 60 * S), None);
        let e = m.observe_anomaly("t", 1.0, 120 * S).unwrap();
        assert_eq!((e.transition, e.since_ns), (Transition::Fired, 120 * S));
        // evaluate reports it but does not advance it.
        let e = m.evaluate(121 * S);
        assert!(e.events.is_empty());
        assert_eq!(e.targets[0].1.objectives, vec![(Metric::Anomaly, Some(true), true)]);
        assert_eq!(m.observe_anomaly("t", 0.0, 180 * S).unwrap().transition, Transition::Resolved);
        assert_eq!(m.observe_anomaly("nobody", 1.0, 180 * S), None);
    }

    #[test]
    fn a_reload_matches_alerts_by_metric_and_resolves_the_ones_it_drops() {
        let mut m = Monitor::new(1, 1);
        let (p50, loss, jit) = (
            objective(Metric::RttP50, 1e6, 60),
            objective(Metric::Loss, 0.5, 60),
            objective(Metric::JitterRfc3550, 1.0, 60),
        );
        m.watch("t", &[p50, loss, jit]);
        m.on_sample("t", Sample { at_ns: S, rtt_ns: Some(5 * MS), value: None });
        m.on_sample("t", Sample { at_ns: 2 * S, rtt_ns: Some(9 * MS), value: None });
        let e = m.evaluate(3 * S);
        // p50 (7 ms > 1 ms) and jitter fire; loss (0) does not.
        assert_eq!(e.events.len(), 2, "{:?}", e.events);
        assert_eq!(m.firing("t"), vec![true, false, true]);
        // Reordered, and jitter dropped: p50 keeps its firing state in its new place, and
        // jitter's alert is resolved now.
        let gone = m.watch_kind("t", Kind::Probe, &[loss, p50], 4 * S);
        assert_eq!(m.firing("t"), vec![false, true]);
        assert_eq!(gone.len(), 1);
        assert_eq!((gone[0].objective.metric, gone[0].transition), (Metric::JitterRfc3550, Transition::Resolved));
        // A change of kind keeps the target's own alerts and resolves nothing more here.
        assert!(m.watch_kind("t", Kind::Probe, &[loss, p50], 5 * S).is_empty());
    }

    #[test]
    fn a_firing_interface_that_disappears_is_resolved_at_the_next_evaluation() {
        use crate::netlink::LinkStats;
        let mut m = Monitor::new(1, 1);
        m.watch_kind("nics", Kind::Interface, &[objective(Metric::ErrorRatio, 0.01, 60)], 0);
        let snap = |at: u64, name: &str, errors: u64| Snapshot {
            at_ns: at,
            link: LinkStats { name: name.into(), rx_packets: 1_000 * at / S, rx_errors: errors, ..Default::default() },
            speed_bps: None,
        };
        m.on_interfaces("nics", vec![snap(S, "eth0", 0), snap(S, "eth1", 0)]);
        m.on_interfaces("nics", vec![snap(2 * S, "eth0", 500), snap(2 * S, "eth1", 0)]);
        let e = m.evaluate(2 * S);
        assert_eq!(e.events.len(), 1, "{:?}", e.events);
        assert_eq!((e.events[0].target.as_str(), e.events[0].transition), ("nics/eth0", Transition::Fired));
        // A reload that only lengthens the window keeps the firing alert (same metric).
        assert!(m.watch_kind("nics", Kind::Interface, &[objective(Metric::ErrorRatio, 0.01, 600)], 2 * S).is_empty());
        assert_eq!(m.interfaces("nics"), vec!["eth0".to_string(), "eth1".to_string()]);
        // eth0 goes away while firing: resolved at the next evaluation, once.
        m.on_interfaces("nics", vec![snap(3 * S, "eth1", 0)]);
        let e = m.evaluate(3 * S);
        let got: Vec<(&str, Transition, u64)> =
            e.events.iter().map(|x| (x.target.as_str(), x.transition, x.at_ns)).collect();
        assert_eq!(got, vec![("nics/eth0", Transition::Resolved, 3 * S)]);
        assert!(m.evaluate(4 * S).events.is_empty());
    }
}
