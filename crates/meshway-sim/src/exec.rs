//! Runs a [`Program`] on a [`Topology`]: messages become engine flows (split into subflows by
//! the routing policy), headers are added by the transport, paths are chosen as flows start
//! and again when a link on them fails.

use crate::engine::{FlowId, FlowSpec, LinkId as Arc, LinkView, Route as EngineRoute, Router, Simulation};
use crate::program::{Leg, Program};
use crate::result::Stall;
use crate::topo::{mix, Choice, Topology};
use crate::SimError;
use meshway_units::{Bytes, Nanos, SimTime};
use serde::Serialize;

/// Path choice among equal-cost paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    Ecmp,
    Adaptive,
    /// The least-loaded whole path at flow start (a global view).
    AdaptiveGlobal,
    Spray,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Ecmp => "ecmp",
            Policy::Adaptive => "adaptive",
            Policy::AdaptiveGlobal => "adaptive-global",
            Policy::Spray => "spray",
        }
    }
}

/// The transport as the executor needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Wire {
    /// Payload bytes per packet.
    pub mtu: u64,
    /// Header and framing bytes per packet.
    pub header: u64,
    /// Endpoint latency per message.
    pub alpha: Nanos,
}

impl Wire {
    /// Bytes on the wire for `payload` bytes.
    pub fn wire_bytes(&self, payload: u64) -> u64 {
        payload + payload.div_ceil(self.mtu.max(1)) * self.header
    }

    /// Share of the line rate left for payload on full packets.
    pub fn goodput(&self) -> f64 {
        self.mtu as f64 / (self.mtu + self.header) as f64
    }
}

/// How to run a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecConfig {
    pub policy: Policy,
    pub wire: Wire,
    /// Subflows (queue pairs) per message under ECMP and adaptive routing.
    pub qps: u32,
    /// Subflows per message under spraying.
    pub spray_paths: u32,
    pub seed: u64,
    /// Completion batching tolerance in parts per million (0: exact; see
    /// `Simulation::set_tolerance`).
    pub tolerance_ppm: u64,
    /// When a message counts as complete, and how its last packet is forwarded.
    pub completion: crate::engine::Completion,
    /// Record every link's carried bytes over time (for the hottest links over time), up to
    /// [`MAX_HISTORY_LINKS`] links.
    pub link_history: bool,
    /// Payload bytes an NCCL collective's connection keeps in flight (its buffer,
    /// `[simulation] nccl-buffer`; 0: unbounded), and a point-to-point send's
    /// (`nccl-p2p-window`): a message between sites with a [`crate::program::Msg::window`]
    /// runs at most this per round trip of its path (see [`window_links`]).
    pub window: u64,
    pub p2p_window: u64,
}

/// Links beyond which no link history is recorded: 64 points of 8 bytes a link, 64 MiB.
pub const MAX_HISTORY_LINKS: usize = 131_072;

/// A scheduled link state change (both directions of a physical link are given as arcs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkEvent {
    pub at: SimTime,
    pub arc: Arc,
    pub up: bool,
}

/// What happened to each message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MsgResult {
    pub start: Option<SimTime>,
    pub end: Option<SimTime>,
    /// Why the message did not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall: Option<String>,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Execution {
    pub msgs: Vec<MsgResult>,
    pub sim: crate::SimResult,
    /// Engine flows (subflows and barriers) the program became.
    pub flows: usize,
    /// Messages whose rate NCCL's window bounds (see [`window_links`]).
    pub window_bound: usize,
}

struct Route {
    src: u32,
    dst: u32,
    via: u32,
    choice: Choice,
    leg: Leg,
    /// A leg's NIC port (its channel) or a path's plane; [`NO_PORT`] for none.
    port: u32,
    /// Paths the message's rate is spread over (spraying); 1 for one path.
    spread: u32,
    /// Pinned route (index into the program's routes) or NO_ROUTE.
    pin: u32,
    /// The message's window link (see [`ExecConfig::window`]) or [`NO_PORT`]: every path of
    /// the message crosses it, so its subflows share the window's rate.
    window: u32,
}

const NO_PORT: u32 = u32::MAX;

const NO_VIA: u32 = u32::MAX;

struct ProgramRouter<'t> {
    topo: &'t mut dyn Topology,
    pins: &'t [Vec<Arc>],
    /// Per engine flow: how to route it (None for waits and barriers).
    routes: Vec<Option<Route>>,
    /// Routes worked out ahead for a large batch of activations (see `Router::prepare`):
    /// per flow, which of `prepared` is its route, or [`NOT_PREPARED`].
    prepared_at: Vec<u32>,
    prepared: Vec<Option<EngineRoute>>,
    /// The flows of `prepared`, in order.
    prepared_flows: Vec<FlowId>,
    /// `LinkView::changes` when they were worked out: a link change voids them.
    prepared_changes: u64,
    /// The rest of the batch, worked out a chunk at a time as its flows are routed (a
    /// sprayed all-to-all's 1M routes of 64 paths, all at once, took 6 GB).
    pending: Vec<FlowId>,
    pending_pos: usize,
    /// The window links, by link id less `first_window`, when failures can move a message
    /// onto a path of another round trip; empty otherwise.
    windows: Vec<WindowLink>,
    first_window: u32,
    /// Capacity changes for the engine (see `Router::capacity_changes`).
    changed: Vec<(Arc, meshway_units::BitsPerSec)>,
}

/// An NCCL message's window link, whose rate follows the round trip of its subflows' paths.
struct WindowLink {
    /// The window and the message, in the message's bytes, and the message's wire bytes.
    window: u64,
    bytes: u64,
    wire: u64,
    /// Its capacity now (bits per second).
    cap: u64,
    /// Per subflow routed so far: its one-way fabric latency (ns) and slowest link.
    paths: Vec<(FlowId, u64, u64)>,
    /// Whether the window was below the slowest link of a path it ran on.
    bound: bool,
}

impl WindowLink {
    fn rate(&self, rtt: u64) -> u64 {
        window_rate(self.window, self.bytes, self.wire, rtt)
    }
}

/// The rate NCCL's window `window` allows a message of `bytes` (`wire` on the wire, more than
/// its window) over a round trip of `rtt` ns, in wire bits per second: `W / rtt x S / (S - W)`
/// (the last window goes without waiting for credits). Both levels count a message as bound
/// where this is below its path's slowest link.
pub(crate) fn window_rate(window: u64, bytes: u64, wire: u64, rtt: u64) -> u64 {
    let cap = u128::from(window) * 8 * 1_000_000_000 * u128::from(wire)
        / (u128::from(rtt.max(1)) * u128::from(bytes.saturating_sub(window).max(1)));
    u64::try_from(cap).unwrap_or(u64::MAX).max(1)
}

const NOT_PREPARED: u32 = u32::MAX;

/// Activations in one batch from which routes are worked out on two threads.
const PREPARE_MIN_FLOWS: usize = 4096;

/// Paths worked out ahead at most at once (a chunk of the batch): about 60 MB of routes.
/// Tests lower it to cut a batch into many chunks; the routes do not depend on it.
#[doc(hidden)]
pub static PREPARE_MAX_PATHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 20);

/// The route of a flow routed as `r`: one path, or its spread paths under spraying.
fn route_of(topo: &mut dyn Topology, pins: &[Vec<Arc>], r: &Route, live: Option<&LinkView<'_>>) -> Option<EngineRoute> {
    match (r.spread, r.choice) {
        (2.., Choice::Spread { key, .. }) => {
            let paths = (0..r.spread)
                .map(|index| path_of(topo, pins, r, Choice::Spread { key, index }, live))
                .collect::<Option<Vec<_>>>()?;
            Some(EngineRoute::Spread(paths))
        }
        (_, choice) => path_of(topo, pins, r, choice, live).map(EngineRoute::Path),
    }
}

fn path_of(
    topo: &mut dyn Topology,
    pins: &[Vec<Arc>],
    r: &Route,
    choice: Choice,
    live: Option<&LinkView<'_>>,
) -> Option<Vec<Arc>> {
    let mut p = fabric_path_of(topo, pins, r, choice, live)?;
    if r.window != NO_PORT {
        p.push(Arc(r.window));
    }
    Some(p)
}

fn fabric_path_of(
    topo: &mut dyn Topology,
    pins: &[Vec<Arc>],
    r: &Route,
    choice: Choice,
    live: Option<&LinkView<'_>>,
) -> Option<Vec<Arc>> {
    if let Some(p) = pins.get(r.pin as usize).and_then(|p| topo.pinned_path(p)) {
        return Some(p);
    }
    let (src, dst, via) = (r.src, r.dst, r.via);
    if r.leg != Leg::Path {
        let rank = if matches!(r.leg, Leg::NvlinkUp | Leg::NicUp) { src } else { dst };
        return topo.attach(rank, r.leg, r.port).map(|a| vec![a]);
    }
    let plane = r.port;
    let leg = |topo: &mut dyn Topology, a: u32, b: u32| match plane {
        NO_PORT => topo.path(a, b, choice, live),
        p => topo.path_on_plane(a, b, p, choice, live),
    };
    if via == NO_VIA {
        return leg(topo, src, dst);
    }
    let mut p = leg(topo, src, via)?;
    p.extend(leg(topo, via, dst)?);
    Some(p)
}

impl ProgramRouter<'_> {
    /// A windowed flow took `route`: its message's window link runs at the rate the round
    /// trip of its slowest-to-return subflow allows (a connection's credits come back over
    /// every path it uses).
    fn follow_window(&mut self, flow: FlowId, route: &EngineRoute) {
        let Some(r) = self.routes.get(flow.index()).and_then(Option::as_ref) else { return };
        let Some(w) = r.window.checked_sub(self.first_window).and_then(|i| self.windows.get_mut(i as usize)) else {
            return;
        };
        let paths: Vec<&[Arc]> = match route {
            EngineRoute::Path(p) => vec![p.as_slice()],
            EngineRoute::Spread(ps) => ps.iter().map(Vec::as_slice).collect(),
        };
        let (mut lat, mut slowest) = (0u64, u64::MAX);
        for p in paths {
            let specs: Vec<_> = p.iter().filter(|a| a.0 != r.window).map(|a| self.topo.arc_spec(*a)).collect();
            lat = lat.max(specs.iter().map(|s| s.1 .0).sum());
            slowest = slowest.min(specs.iter().map(|s| s.0 .0).min().unwrap_or(u64::MAX));
        }
        match w.paths.iter_mut().find(|p| p.0 == flow) {
            Some(p) => (p.1, p.2) = (lat, slowest),
            None => w.paths.push((flow, lat, slowest)),
        }
        let rtt = 2 * w.paths.iter().map(|p| p.1).max().unwrap_or(0);
        let cap = w.rate(rtt);
        w.bound |= cap < slowest;
        if cap != w.cap {
            w.cap = cap;
            self.changed.push((Arc(r.window), meshway_units::BitsPerSec(cap)));
        }
    }
}

impl Router for ProgramRouter<'_> {
    fn route(&mut self, flow: FlowId, links: &LinkView<'_>) -> Option<EngineRoute> {
        // The first flow of the next chunk: the batch routes its flows in order.
        if self.pending.get(self.pending_pos) == Some(&flow) {
            if links.changes() == self.prepared_changes {
                self.prepare_chunk(links);
            } else {
                self.pending.clear();
                self.pending_pos = 0;
            }
        }
        if let Some(at) = self.prepared_at.get_mut(flow.index()).filter(|at| **at != NOT_PREPARED) {
            let i = std::mem::replace(at, NOT_PREPARED) as usize;
            if links.changes() == self.prepared_changes {
                let route = self.prepared[i].take();
                if let Some(route) = &route {
                    self.follow_window(flow, route);
                }
                return route;
            }
        }
        let r = self.routes.get(flow.index())?.as_ref()?;
        let route = route_of(&mut *self.topo, self.pins, r, Some(links));
        if let Some(route) = &route {
            self.follow_window(flow, route);
        }
        route
    }

    fn capacity_changes(&mut self, out: &mut Vec<(Arc, meshway_units::BitsPerSec)>) {
        out.append(&mut self.changed);
    }

    /// Works out, on two threads, the routes that do not depend on the links' load (hashed
    /// and sprayed) while every link is up: a route depends then only on the flow, so
    /// `route` returns what it would have found itself.
    fn prepare(&mut self, flows: &[FlowId], links: &LinkView<'_>) {
        self.pending.clear();
        self.pending_pos = 0;
        if links.down_count() > 0 || flows.len() < PREPARE_MIN_FLOWS {
            return;
        }
        let routes = &self.routes;
        let todo: Vec<FlowId> = flows
            .iter()
            .copied()
            .filter(|f| {
                routes
                    .get(f.index())
                    .and_then(Option::as_ref)
                    .is_some_and(|r| matches!(r.choice, Choice::Hash(_) | Choice::Spread { .. }))
            })
            .collect();
        if todo.len() < PREPARE_MIN_FLOWS {
            return;
        }
        self.pending = todo;
        self.pending_pos = 0;
        self.prepared_changes = links.changes();
        self.prepare_chunk(links);
    }
}

impl ProgramRouter<'_> {
    /// Works out the routes of the next chunk of `pending` (at most [`PREPARE_MAX_PATHS`]
    /// paths) on two threads, in place of the last chunk's.
    fn prepare_chunk(&mut self, links: &LinkView<'_>) {
        for f in self.prepared_flows.drain(..) {
            if let Some(at) = self.prepared_at.get_mut(f.index()) {
                *at = NOT_PREPARED;
            }
        }
        self.prepared.clear();
        let from = self.pending_pos;
        let (mut paths, max) = (0u64, PREPARE_MAX_PATHS.load(std::sync::atomic::Ordering::Relaxed));
        let mut to = from;
        while to < self.pending.len() && (paths < max || to == from) {
            let spread = self.routes[self.pending[to].index()].as_ref().map_or(1, |r| u64::from(r.spread.max(1)));
            paths += spread;
            to += 1;
        }
        self.pending_pos = to;
        let todo = &self.pending[from..to];
        let (Some(mut a), Some(mut b)) = (self.topo.fork(), self.topo.fork()) else {
            self.pending.clear();
            self.pending_pos = 0;
            return;
        };
        let routes = &self.routes;
        let pins = self.pins;
        let (first, second) = todo.split_at(todo.len() / 2);
        let work = |topo: &mut dyn Topology, part: &[FlowId]| -> Vec<Option<EngineRoute>> {
            part.iter().map(|f| routes[f.index()].as_ref().and_then(|r| route_of(topo, pins, r, Some(links)))).collect()
        };
        let (mut done, rest) = std::thread::scope(|s| {
            let helper = s.spawn(|| work(&mut *b, second));
            let done = work(&mut *a, first);
            (done, helper.join())
        });
        // The helper runs the same code as this thread: if it panicked, so does this.
        done.extend(rest.unwrap_or_else(|e| std::panic::resume_unwind(e)));
        if self.prepared_at.len() < routes.len() {
            self.prepared_at.resize(routes.len(), NOT_PREPARED);
        }
        self.prepared = done;
        for (i, f) in todo.iter().enumerate() {
            self.prepared_at[f.index()] = i as u32;
        }
        self.prepared_flows.extend_from_slice(todo);
        if self.pending_pos == self.pending.len() {
            self.pending.clear();
            self.pending_pos = 0;
        }
    }
}

/// Runs `prog` on `topo`. `progress(done, total)` is called every few thousand events.
pub fn execute(
    prog: &Program,
    topo: &mut dyn Topology,
    cfg: &ExecConfig,
    failures: &[LinkEvent],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Execution, SimError> {
    let mut net = topo.network();
    let fabric_arcs = net.len();
    let (windows, followed) = window_links(prog, topo, cfg, &mut net, !failures.is_empty());
    let mut sim = Simulation::new(net);
    sim.set_tolerance(cfg.tolerance_ppm);
    sim.set_completion(cfg.completion);
    if cfg.link_history {
        // Window links are not shown: they do not count against the limit.
        sim.record_link_history(MAX_HISTORY_LINKS + (sim.network().len() - fabric_arcs));
    }
    let mut routes: Vec<Option<Route>> = Vec::with_capacity(prog.msgs.len());
    // Per message: the engine flow that completes with it, and its subflow range.
    let mut handle: Vec<FlowId> = Vec::with_capacity(prog.msgs.len());
    let mut subs: Vec<(u32, u32)> = Vec::with_capacity(prog.msgs.len());
    let mtu_packet = Bytes(cfg.wire.mtu + cfg.wire.header);
    let mut deps = Vec::new();
    for (mi, m) in prog.msgs.iter().enumerate() {
        deps.clear();
        deps.extend(m.deps.iter().map(|&d| handle[d as usize]));
        if m.is_wait() {
            let spec = if deps.is_empty() {
                FlowSpec::new(Vec::new(), Bytes(0), SimTime(m.start.0 + m.delay.0))
            } else {
                FlowSpec::new(Vec::new(), Bytes(0), SimTime(m.start.0)).after(deps.clone(), m.delay)
            };
            let id = sim.add_flow(spec.tag(m.tag))?;
            routes.push(None);
            handle.push(id);
            subs.push((id.0, id.0 + 1));
            continue;
        }
        let local = m.via.is_none() && topo.local(m.src, m.dst);
        // Queue pairs are separate flows; sprayed packets are one flow whose rate spreads
        // over up to `spray_paths` paths (no more than it has packets).
        let (k, spread) = match cfg.policy {
            _ if local => (1, 1),
            Policy::Spray => {
                (1, (cfg.spray_paths.max(1) as u64).min(m.bytes.div_ceil(cfg.wire.mtu.max(1)).max(1)) as u32)
            }
            Policy::Ecmp | Policy::Adaptive | Policy::AdaptiveGlobal => (cfg.qps.max(1), 1),
        };
        let k = (k as u64).min(m.bytes.max(1)) as u32;
        let alpha = m.alpha().unwrap_or(cfg.wire.alpha);
        let first = sim.flow_count() as u32;
        let key_base = mix(cfg.seed ^ mix((u64::from(m.src) << 32) | u64::from(m.dst)) ^ u64::from(m.channel) << 20);
        for i in 0..k {
            let share = m.bytes / u64::from(k) + u64::from(u64::from(i) < m.bytes % u64::from(k));
            let wire = cfg.wire.wire_bytes(share);
            let key = mix(key_base ^ u64::from(i));
            let choice = match cfg.policy {
                Policy::Ecmp => Choice::Hash(key),
                Policy::Adaptive => Choice::LeastLoaded(key),
                Policy::AdaptiveGlobal => Choice::LeastLoadedPath(key),
                Policy::Spray => Choice::Spread { key: key_base, index: i },
            };
            let spec = if deps.is_empty() {
                FlowSpec::new(Vec::new(), Bytes(wire), SimTime(m.start.0 + m.delay.0 + alpha.0))
            } else {
                FlowSpec::new(Vec::new(), Bytes(wire), SimTime(m.start.0)).after(deps.clone(), m.delay + alpha)
            };
            sim.add_flow(spec.tag(m.tag).last_packet(mtu_packet).routed())?;
            routes.push(Some(Route {
                src: m.src,
                dst: m.dst,
                via: m.via.unwrap_or(NO_VIA),
                choice,
                leg: m.leg,
                port: if m.leg == Leg::Path { m.plane.map_or(NO_PORT, u32::from) } else { m.channel },
                spread: if m.route == crate::program::NO_ROUTE { spread } else { 1 },
                pin: m.route,
                window: windows.get(mi).copied().unwrap_or(NO_PORT),
            }));
        }
        let last = first + k;
        if k == 1 {
            handle.push(FlowId(first));
        } else {
            let id = sim.add_flow(
                FlowSpec::new(Vec::new(), Bytes(0), SimTime(0)).after((first..last).map(FlowId).collect(), Nanos::ZERO),
            )?;
            routes.push(None);
            handle.push(id);
        }
        subs.push((first, last));
    }
    for e in failures {
        if e.up {
            sim.schedule_link_up(e.arc, e.at)?;
        } else {
            sim.schedule_link_down(e.arc, e.at)?;
        }
    }
    let total = sim.flow_count() as u64;
    let mut router = ProgramRouter {
        topo,
        pins: &prog.routes,
        routes,
        prepared_at: Vec::new(),
        prepared: Vec::new(),
        prepared_flows: Vec::new(),
        prepared_changes: 0,
        pending: Vec::new(),
        pending_pos: 0,
        first_window: windows.iter().copied().filter(|&w| w != NO_PORT).min().unwrap_or(0),
        windows: followed,
        changed: Vec::new(),
    };
    let mut n = 0u64;
    while sim.advance_with(&mut router)?.is_some() {
        n += 1;
        if n.is_multiple_of(4096) {
            progress(sim.completed_count(), total);
        }
    }
    progress(sim.completed_count(), total);
    let mut res = sim.result();
    // Window links are the model's, not the fabric's: no report shows them.
    res.link_stats.truncate(fabric_arcs);
    if let Some(h) = &mut res.link_history {
        h.bytes.truncate(fabric_arcs);
    }
    let topo = router.topo;
    let msgs = prog
        .msgs
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let (a, b) = subs[i];
            let fl = &res.flows[a as usize..b as usize];
            let start = fl.iter().filter_map(|f| f.start).min();
            let end = res.flows[handle[i].index()].end;
            let stall = if end.is_some() {
                None
            } else {
                let m = &prog.msgs[i];
                let pinned = prog.routes.get(m.route as usize).and_then(|p| topo.pinned_path(p)).is_some();
                fl.iter().find_map(|f| f.stall).map(|s| describe_stall(s, &*topo, m, pinned))
            };
            MsgResult { start, end, stall }
        })
        .collect();
    let window_bound = if router.windows.is_empty() {
        windows.iter().filter(|&&w| w != NO_PORT).count()
    } else {
        router.windows.iter().filter(|w| w.bound).count()
    };
    Ok(Execution { msgs, flows: res.flows.len(), sim: res, window_bound })
}

/// The window NCCL keeps `m` to, in the message's own bytes (its buffer x bytes / payload),
/// when it is a send between sites larger than that window; None for every other message
/// (a message that fits goes at once).
pub(crate) fn message_window(m: &crate::program::Msg, topo: &dyn Topology, cfg: &ExecConfig) -> Option<u64> {
    use crate::program::Window;
    let w = match m.window {
        Window::None => return None,
        Window::Collective => cfg.window,
        Window::P2p => cfg.p2p_window,
        Window::Buffer(b) => b,
    };
    if w == 0 || m.leg != Leg::Path || m.is_wait() || topo.site_of(m.src) == topo.site_of(m.dst) {
        return None;
    }
    // Message bytes per payload byte, in millionths (the buffer holds payload).
    let ppm = if m.payload == 0 {
        1_000_000
    } else {
        (m.bytes as f64 / m.payload.max(1) as f64 * 1e6).round().min(f64::from(u32::MAX)) as u32
    };
    let wm = (u128::from(w) * u128::from(ppm) / 1_000_000) as u64;
    (m.bytes > wm).then_some(wm)
}

/// Per message, the link that bounds an NCCL message's rate by its connection's window
/// (added to `net`), or [`NO_PORT`]; empty when no message needs one.
///
/// A connection has at most its window `W` of payload in flight per round trip (`rtt`, twice
/// the one-way latency of the path between the two hosts: links and switches, ECMP's first
/// choice, equal-cost paths having equal latency here). A message of `S <= W` is all in
/// flight at once and is not bound; a larger one waits for credits `S / W - 1` times, so its
/// fluid rate is `W / rtt x S / (S - W)` (the last window goes without waiting), in its own
/// bytes (the NIC's efficiency and the transport's headers written in). Only messages between
/// sites are checked: inside a data centre the round trip is a few microseconds and the window
/// (4 MiB per 10 us is 3.4 Tb/s) binds nothing, and skipping them keeps a million-message
/// all-to-all from working out a million extra paths. The rate is worked out on ECMP's first
/// path; with `follow` (a run with failures) every message over its window gets a link, and
/// the router sets its rate from the round trip of the paths its subflows take as they start
/// and as they reroute (`ProgramRouter::follow_window`).
fn window_links(
    prog: &Program,
    topo: &mut dyn Topology,
    cfg: &ExecConfig,
    net: &mut crate::engine::Network,
    follow: bool,
) -> (Vec<u32>, Vec<WindowLink>) {
    use crate::program::Window;
    let ranks = topo.ranks() as u32;
    if (cfg.window == 0 && cfg.p2p_window == 0)
        || (0..ranks).all(|r| topo.site_of(r) == topo.site_of(0))
        || !prog.msgs.iter().any(|m| m.window != Window::None)
    {
        return (Vec::new(), Vec::new());
    }
    let mut followed = Vec::new();
    // Per host pair: the round trip and the slowest link of the path.
    let mut seen: std::collections::HashMap<(u32, u32), Option<(u64, u64)>> = std::collections::HashMap::new();
    let mut out = vec![NO_PORT; prog.msgs.len()];
    for (i, m) in prog.msgs.iter().enumerate() {
        let Some(wm) = message_window(m, &*topo, cfg) else { continue };
        let key = (topo.host_of(m.src), topo.host_of(m.dst));
        let path = *seen.entry(key).or_insert_with(|| {
            topo.path_spec(m.src, m.dst, m.via).map(|(one_way, slowest)| (2 * one_way.0, slowest.0))
        });
        let Some((rtt, slowest)) = path.filter(|p| p.0 > 0) else { continue };
        // bits per second on the wire: W x 8 / rtt x S / (S - W) x wire / S.
        let wire = cfg.wire.wire_bytes(m.bytes);
        let link = WindowLink { window: wm, bytes: m.bytes, wire, cap: 0, paths: Vec::new(), bound: false };
        let cap = link.rate(rtt);
        // With failures a reroute can lengthen the round trip: every such message gets its
        // link, which the router keeps at the rate of the paths it runs on.
        if cap < slowest || follow {
            out[i] = net.add_link(meshway_units::BitsPerSec(cap), Nanos::ZERO).0;
            if follow {
                followed.push(WindowLink { cap, bound: cap < slowest, ..link });
            }
        }
    }
    if out.iter().all(|&w| w == NO_PORT) {
        out.clear();
    }
    (out, followed)
}

fn describe_stall(s: Stall, topo: &dyn Topology, m: &crate::program::Msg, pinned: bool) -> String {
    let who = format!("{} to {}", topo.rank_name(m.src), topo.rank_name(m.dst));
    match s {
        Stall::LinkDown { link } if pinned => {
            format!(
                "{who}: its pinned path crosses link {}, which is down (a pinned flow does not reroute)",
                topo.arc_name(link)
            )
        }
        Stall::LinkDown { link } => {
            format!(
                "no path from {who}: link {} is down and no equal-cost or longer path avoids it",
                topo.arc_name(link)
            )
        }
        Stall::ZeroCapacity { link } => format!("{who}: link {} has zero capacity", topo.arc_name(link)),
        Stall::ZeroShare { link } => format!("{who}: fair share on {} rounds to zero", topo.arc_name(link)),
        Stall::Dependency { .. } => format!("{who}: waits on a message that did not complete"),
        Stall::NoPath => format!("no path from {who}: the fabric does not connect them"),
    }
}
