//! The event engine and the max-min fair flow model. See the crate docs for the model.
//!
//! Data layout: everything lives in flat `Vec`s indexed by flow or link id. Paths of all flows
//! are one `Vec<u32>`; each link keeps the list of its active flows (with each flow
//! remembering its position in that list, so removal is `O(1)` by swap-remove); dependency
//! edges are an intrusive singly linked list in one `Vec`. Scratch buffers for the recompute
//! are kept in the [`Simulation`] and reused, so steady-state events allocate nothing.

use crate::error::SimError;
use crate::queue::{Event, EventQueue};
use crate::result::{FlowResult, LinkStats, SimResult, Stall};
use meshway_units::{BitsPerSec, Bytes, Nanos, SimTime};
use serde::{Deserialize, Serialize};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Rates are kept in units of `1 / RATE_SCALE` bit per second.
pub(crate) const RATE_SCALE: u64 = 1 << 10;
/// Largest link capacity represented exactly; larger capacities are clamped to it (18 Pbit/s).
const MAX_CAPACITY_BPS: u64 = u64::MAX / RATE_SCALE;
/// Remaining volume of one byte, in rate units × nanoseconds: a flow at rate `r` (in rate
/// units) drains `r` of these per nanosecond.
const UNITS_PER_BYTE: u128 = 8 * 1_000_000_000 * RATE_SCALE as u128;
/// "No finish event scheduled".
const NEVER: u64 = u64::MAX;
/// "No entry" in the intrusive lists.
const NONE: u32 = u32::MAX;

pub use crate::ids::{FlowId, LinkId};

/// One directed link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSpec {
    /// Line rate. Capacities above 2⁶⁴/1024 bit/s (about 18 Pbit/s) are clamped to it.
    pub capacity: BitsPerSec,
    /// One-way latency added to every flow crossing the link: propagation plus the switching
    /// latency of the device at its head.
    pub latency: Nanos,
}

/// A set of directed links. Topology (which link joins which nodes) belongs to the fabric
/// layer; the engine only needs capacities, latencies and the paths flows take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    links: Vec<LinkSpec>,
}

impl Network {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directed link and returns its id (ids count up from 0).
    ///
    /// # Panics
    /// Only past `u32::MAX` links, which would not fit in memory anyway.
    pub fn add_link(&mut self, capacity: BitsPerSec, latency: Nanos) -> LinkId {
        let id = u32::try_from(self.links.len()).ok().filter(|&i| i != NONE).expect("fewer than 2^32 - 1 links");
        self.links.push(LinkSpec { capacity, latency });
        LinkId(id)
    }

    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    pub fn link(&self, id: LinkId) -> Option<&LinkSpec> {
        self.links.get(id.index())
    }

    pub fn links(&self) -> &[LinkSpec] {
        &self.links
    }
}

/// A flow to simulate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowSpec {
    /// The directed links the flow crosses, in order, each at most once. Empty means a local
    /// copy, which completes the moment the flow becomes active.
    pub path: Vec<LinkId>,
    pub size: Bytes,
    /// Earliest time the flow may become active.
    pub start: SimTime,
    /// Flows that must complete first. They must already have been added.
    pub deps: Vec<FlowId>,
    /// Gap between a dependency's completion and this flow becoming eligible (e.g. a kernel
    /// launch or reduction).
    pub dep_delay: Nanos,
    /// Caller-defined group (collective step, job, request), copied to the result.
    pub tag: u32,
    /// Size of the last packet, whose serialization at the path's bottleneck is added at
    /// completion (typically one MTU; clamped to `size`).
    pub last_packet: Bytes,
    /// Ask the [`Router`] for the path when the flow becomes active (adaptive routing, or
    /// hashing over the links that are up at that moment); `path` is the fallback.
    pub routed: bool,
}

impl FlowSpec {
    /// A flow of `size` over `path` from `start`, with no dependencies, tag 0 and no
    /// last-packet term.
    pub fn new(path: Vec<LinkId>, size: Bytes, start: SimTime) -> Self {
        FlowSpec { path, size, start, ..Self::default() }
    }

    /// Sets the dependencies and the delay after them.
    pub fn after(mut self, deps: Vec<FlowId>, dep_delay: Nanos) -> Self {
        self.deps = deps;
        self.dep_delay = dep_delay;
        self
    }

    pub fn tag(mut self, tag: u32) -> Self {
        self.tag = tag;
        self
    }

    pub fn last_packet(mut self, last_packet: Bytes) -> Self {
        self.last_packet = last_packet;
        self
    }

    /// Routes the flow when it becomes active (see [`Router`]).
    pub fn routed(mut self) -> Self {
        self.routed = true;
        self
    }
}

/// When a flow counts as complete: its last byte at the receiver (the default) or, with
/// `ack_bytes`, its acknowledgement of that many bytes back at the sender; and whether the
/// last packet is store-and-forwarded at every link or cut through (serialized once, at the
/// bottleneck).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Completion {
    pub ack_bytes: Option<u64>,
    pub store_and_forward: bool,
}

/// Chooses paths while the simulation runs: for flows added with [`FlowSpec::routed`] at the
/// moment they become active, and for active flows whose path loses a link. Drive the run with
/// [`Simulation::run_with`] or [`Simulation::advance_with`] to use one.
pub trait Router {
    /// The path for `flow`, which becomes active now, given the links' current state; `None`
    /// keeps the path it was added with.
    fn route(&mut self, flow: FlowId, links: &LinkView<'_>) -> Option<Vec<LinkId>>;

    /// A link on `flow`'s path just went down: a new path, or `None` to stay (the flow stalls
    /// until the link comes back up).
    fn reroute(&mut self, flow: FlowId, links: &LinkView<'_>) -> Option<Vec<LinkId>> {
        self.route(flow, links)
    }
}

/// The router that never changes a path.
struct FixedPaths;

impl Router for FixedPaths {
    fn route(&mut self, _: FlowId, _: &LinkView<'_>) -> Option<Vec<LinkId>> {
        None
    }
    fn reroute(&mut self, _: FlowId, _: &LinkView<'_>) -> Option<Vec<LinkId>> {
        None
    }
}

/// What a [`Router`] may look at: each link's state and load at this instant.
pub struct LinkView<'a> {
    links: &'a [Link],
    down: u64,
    changes: u64,
}

impl LinkView<'_> {
    /// Whether the link is up (false for unknown links).
    pub fn is_up(&self, link: LinkId) -> bool {
        self.links.get(link.index()).is_some_and(|l| l.up)
    }

    /// Active flows crossing the link now (the flows that became active earlier in the same
    /// instant included), a proxy for its queue depth.
    pub fn flows(&self, link: LinkId) -> usize {
        self.links.get(link.index()).map_or(0, |l| l.flows.len())
    }

    /// How many links are down now.
    pub fn down_count(&self) -> u64 {
        self.down
    }

    /// Link state changes so far: equal values mean the same set of links is up.
    pub fn changes(&self) -> u64 {
        self.changes
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for its start time or dependencies.
    Pending,
    /// Transferring (possibly at rate zero).
    Active,
    /// Fluid part finished; `completed` is its completion time.
    Done,
}

/// Per-flow state. Rates are in rate units (1/[`RATE_SCALE`] bit/s), times in ns.
#[derive(Debug, Clone)]
struct Flow {
    dep_start: u32,
    dep_len: u32,
    size: Bytes,
    dep_delay: u64,
    tag: u32,
    last_packet: Bytes,
    routed: bool,
    /// Latency plus last-packet serialization, added to the fluid finish.
    tail: u64,
    state: State,
    /// Dependencies not yet completed.
    waiting: u32,
    /// Earliest activation time known so far.
    ready: u64,
    activated: u64,
    completed: u64,
    /// Remaining volume as of `last` (rate units × ns).
    remaining: u128,
    rate: u64,
    last: u64,
    /// Fluid finish time at the current rate, or [`NEVER`].
    finish_at: u64,
    /// Time of this flow's queued finish event, or [`NEVER`]; a queued event for another time
    /// is stale.
    queued_at: u64,
    /// Head of this flow's list of dependents in `dep_edges`.
    dependents: u32,
}

/// The per-flow fields the rate recompute touches for every flow of a component, kept apart
/// from [`Flow`] so a million-flow component walks a compact array.
#[derive(Debug, Clone, Copy)]
struct Hot {
    path_start: u32,
    path_len: u32,
    /// Recompute scratch: component epoch, frozen epoch, new rate.
    seen: u32,
    frozen: u32,
    new_rate: u64,
}

/// Per-link state.
#[derive(Debug, Clone)]
struct Link {
    cap_units: u64,
    up: bool,
    /// Active flows crossing the link, as (flow, hop index in its path).
    flows: Vec<(u32, u32)>,
    /// Sum of the rates of `flows`, as of the last recompute touching the link.
    load: u64,
    peak: u64,
    /// Carried volume (rate units × ns) integrated up to `last`.
    carried: i128,
    busy: u64,
    last: u64,
    /// Recompute scratch.
    seen: u32,
    rem: u64,
    unfrozen: u32,
}

impl Link {
    fn available(&self) -> u64 {
        if self.up {
            self.cap_units
        } else {
            0
        }
    }

    /// Accounts the current load up to `t`.
    fn integrate(&mut self, t: u64) {
        let dt = t.saturating_sub(self.last);
        self.carried = self.carried.saturating_add(i128::from(self.load) * i128::from(dt));
        if self.load > 0 {
            self.busy = self.busy.saturating_add(dt);
        }
        self.last = t;
    }
}

/// A link's fair share `rem / unfrozen` in the progressive-filling heap; ordered by the exact
/// rational value, ties by link id. An entry is out of date once the link's `(rem, unfrozen)`
/// differ.
#[derive(Debug, Clone, Copy)]
struct Share {
    rem: u64,
    unfrozen: u32,
    link: u32,
}

impl Ord for Share {
    fn cmp(&self, o: &Self) -> Ordering {
        let a = u128::from(self.rem) * u128::from(o.unfrozen);
        let b = u128::from(o.rem) * u128::from(self.unfrozen);
        a.cmp(&b).then(self.link.cmp(&o.link))
    }
}
impl PartialOrd for Share {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Share {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Share {}

/// A flow-level simulation over a [`Network`].
///
/// Build it with [`Simulation::new`], add flows with [`Simulation::add_flow`] and link events
/// with [`Simulation::schedule_link_down`] / [`Simulation::schedule_link_up`], then either
/// [`Simulation::run`] to the end or drive it with [`Simulation::advance`]. Flows and link
/// events may also be added between steps, at or after [`Simulation::now`].
///
/// After a method returns an error the simulation's state is unspecified: discard it.
#[derive(Debug, Clone)]
pub struct Simulation {
    completion: Completion,
    net: Network,
    links: Vec<Link>,
    flows: Vec<Flow>,
    hot: Vec<Hot>,
    path_links: Vec<u32>,
    /// Parallel to `path_links`: position of the flow in that link's `flows` list.
    path_pos: Vec<u32>,
    deps: Vec<u32>,
    /// Dependency edges: (dependent flow, next edge of the same dependency).
    dep_edges: Vec<(u32, u32)>,
    queue: EventQueue,
    now: u64,
    events: u64,
    recomputes: u64,
    last_completion: u64,
    drained: bool,
    epoch: u32,
    /// Links down now, and link state changes so far (for routers' caches).
    down: u64,
    changes: u64,
    /// Flows completed so far.
    completed: u64,
    /// Completion batching tolerance, parts per million of a flow's duration.
    tolerance_ppm: u64,
    /// Scratch buffers reused by every recompute.
    seeds: Vec<u32>,
    comp_links: Vec<u32>,
    comp_flows: Vec<u32>,
    /// Ranges of `comp_flows` forming one connected component each.
    comps: Vec<(u32, u32)>,
    fill: BinaryHeap<Reverse<Share>>,
}

impl Simulation {
    pub fn new(net: Network) -> Self {
        let links = net
            .links
            .iter()
            .map(|s| Link {
                cap_units: s.capacity.0.min(MAX_CAPACITY_BPS) * RATE_SCALE,
                up: true,
                flows: Vec::new(),
                load: 0,
                peak: 0,
                carried: 0,
                busy: 0,
                last: 0,
                seen: 0,
                rem: 0,
                unfrozen: 0,
            })
            .collect();
        Simulation {
            completion: Completion::default(),
            net,
            links,
            flows: Vec::new(),
            hot: Vec::new(),
            path_links: Vec::new(),
            path_pos: Vec::new(),
            deps: Vec::new(),
            dep_edges: Vec::new(),
            queue: EventQueue::default(),
            now: 0,
            events: 0,
            recomputes: 0,
            last_completion: 0,
            drained: false,
            epoch: 0,
            down: 0,
            changes: 0,
            completed: 0,
            tolerance_ppm: 0,
            seeds: Vec::new(),
            comp_links: Vec::new(),
            comp_flows: Vec::new(),
            comps: Vec::new(),
            fill: BinaryHeap::new(),
        }
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The time of the last processed batch of events.
    pub fn now(&self) -> SimTime {
        SimTime(self.now)
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Batches completions: when the earliest flow of a component finishes, every flow of
    /// that component due to finish within `ppm` millionths of its own duration later is
    /// finished in the same batch, so the rates are recomputed once for all of them. Each
    /// flow still completes at its own finish time under the current rates; the capacity it
    /// frees reaches the others up to that tolerance early, so they may finish up to about
    /// that share earlier than exact max-min sharing gives. 0 (the default) is exact.
    /// When a flow counts as complete and how its last packet is forwarded (see [`Completion`]).
    pub fn set_completion(&mut self, c: Completion) {
        self.completion = c;
    }

    pub fn set_tolerance(&mut self, ppm: u64) {
        self.tolerance_ppm = ppm;
    }

    /// Flows that have completed so far (for progress reports).
    pub fn completed_count(&self) -> u64 {
        self.completed
    }

    /// Adds a flow. Its dependencies must already exist (so dependency graphs are acyclic by
    /// construction), its path links must exist and be distinct, and its start must not be
    /// before [`Simulation::now`].
    pub fn add_flow(&mut self, spec: FlowSpec) -> Result<FlowId, SimError> {
        let idx = self.flows.len();
        let id = u32::try_from(idx)
            .ok()
            .filter(|&i| i != NONE)
            .map(FlowId)
            .ok_or(SimError::TooManyFlows { max: NONE - 1 })?;
        self.check_path(id, &spec.path)?;
        if let Some(&dep) = spec.deps.iter().find(|d| d.index() >= idx) {
            return Err(SimError::UnknownDependency { flow: id, dep });
        }
        if spec.start.0 < self.now {
            return Err(SimError::StartInPast { flow: id, start: spec.start, now: self.now() });
        }
        let path_start = self.push_path(&spec.path);
        let dep_start = self.deps.len() as u32;
        self.deps.extend(spec.deps.iter().map(|d| d.0));
        let mut flow = Flow {
            dep_start,
            dep_len: spec.deps.len() as u32,
            size: spec.size,
            dep_delay: spec.dep_delay.0,
            tag: spec.tag,
            last_packet: spec.last_packet,
            routed: spec.routed,
            tail: 0,
            state: State::Pending,
            waiting: 0,
            ready: spec.start.0,
            activated: 0,
            completed: 0,
            remaining: u128::from(spec.size.0) * UNITS_PER_BYTE,
            rate: 0,
            last: 0,
            finish_at: NEVER,
            queued_at: NEVER,
            dependents: NONE,
        };
        flow.tail = self.tail(&spec.path, spec.size, spec.last_packet);
        for d in &spec.deps {
            let dep = &mut self.flows[d.index()];
            if dep.state == State::Done {
                flow.ready = flow.ready.max(dep.completed.saturating_add(flow.dep_delay));
            } else {
                flow.waiting += 1;
                self.dep_edges.push((id.0, dep.dependents));
                dep.dependents = (self.dep_edges.len() - 1) as u32;
            }
        }
        let (waiting, ready) = (flow.waiting, flow.ready);
        self.flows.push(flow);
        self.hot.push(Hot { path_start, path_len: spec.path.len() as u32, seen: 0, frozen: 0, new_rate: 0 });
        if waiting == 0 {
            self.push(ready, Event::Activate(id.0));
        }
        Ok(id)
    }

    /// Schedules `link` to go down at `at`: its flows stall at rate zero until it comes up.
    pub fn schedule_link_down(&mut self, link: LinkId, at: SimTime) -> Result<(), SimError> {
        self.schedule_link(link, at, Event::LinkDown(link.0))
    }

    /// Schedules `link` to come (back) up at `at`.
    pub fn schedule_link_up(&mut self, link: LinkId, at: SimTime) -> Result<(), SimError> {
        self.schedule_link(link, at, Event::LinkUp(link.0))
    }

    fn schedule_link(&mut self, link: LinkId, at: SimTime, event: Event) -> Result<(), SimError> {
        if link.index() >= self.links.len() {
            return Err(SimError::UnknownLink { link, links: self.links.len() });
        }
        if at.0 < self.now {
            return Err(SimError::LinkEventInPast { link, at, now: self.now() });
        }
        self.push(at.0, event);
        Ok(())
    }

    /// Moves a pending or active flow onto a new path, keeping the bytes it has already sent.
    /// This is the rerouting hook for the routing layer; rates are recomputed at
    /// [`Simulation::now`]. The flow's completion latency is that of the new path.
    pub fn set_path(&mut self, flow: FlowId, path: Vec<LinkId>) -> Result<(), SimError> {
        let f = flow.index();
        let Some(state) = self.flows.get(f).map(|fl| fl.state) else {
            return Err(SimError::UnknownFlow { flow });
        };
        if state == State::Done {
            return Err(SimError::FlowFinished { flow });
        }
        self.check_path(flow, &path)?;
        self.move_flow(f, &path, self.now);
        self.recompute(self.now)
    }

    /// Puts flow `f` (pending or active) on `path`, which has been checked, at time `t`.
    fn move_flow(&mut self, f: usize, path: &[LinkId], t: u64) {
        let state = self.flows[f].state;
        if state == State::Active {
            self.settle(f, t);
            self.detach(f);
            let fl = &mut self.flows[f];
            fl.rate = 0;
            fl.finish_at = NEVER;
            fl.queued_at = NEVER;
        }
        let start = self.push_path(path);
        let fl = &self.flows[f];
        let tail = self.tail(path, fl.size, fl.last_packet);
        let fl = &mut self.flows[f];
        fl.tail = tail;
        self.hot[f].path_start = start;
        self.hot[f].path_len = path.len() as u32;
        let fl = &mut self.flows[f];
        if state == State::Active {
            if path.is_empty() || fl.remaining == 0 {
                self.flows[f].state = State::Done;
                self.complete(f, t);
            } else {
                self.attach(f);
            }
        }
    }

    /// The active flows currently crossing `link`, in no particular order (empty for an
    /// unknown link).
    pub fn flows_on_link(&self, link: LinkId) -> impl Iterator<Item = FlowId> + '_ {
        self.links.get(link.index()).into_iter().flat_map(|l| l.flows.iter().map(|&(f, _)| FlowId(f)))
    }

    /// A flow's current rate, rounded down to whole bit/s (zero unless active).
    pub fn flow_rate(&self, flow: FlowId) -> Option<BitsPerSec> {
        self.flows.get(flow.index()).map(|f| {
            let r = if f.state == State::Active { f.rate } else { 0 };
            BitsPerSec(r / RATE_SCALE)
        })
    }

    /// The sum of the current rates of the flows on `link`, rounded down to whole bit/s.
    pub fn link_load(&self, link: LinkId) -> Option<BitsPerSec> {
        self.links.get(link.index()).map(|l| BitsPerSec(l.load / RATE_SCALE))
    }

    /// The time of the next batch of events, after dropping stale ones.
    pub fn next_event_time(&mut self) -> Option<SimTime> {
        while let Some((t, mut batch)) = self.queue.pop_batch() {
            batch.retain(|ev| !self.is_stale(t, *ev));
            if batch.is_empty() {
                self.queue.recycle(batch);
            } else {
                self.queue.push_front_batch(t, batch);
                return Some(SimTime(t));
            }
        }
        None
    }

    /// Processes every event at the next event time as one batch (including events that
    /// batch schedules for the same time), then recomputes the rates of the affected
    /// components. Returns the batch's time, or `None` when no event remains.
    pub fn advance(&mut self) -> Result<Option<SimTime>, SimError> {
        self.advance_with(&mut FixedPaths)
    }

    /// [`Simulation::advance`], asking `router` for the paths of routed flows as they become
    /// active and of flows whose path loses a link.
    pub fn advance_with(&mut self, router: &mut dyn Router) -> Result<Option<SimTime>, SimError> {
        let Some(SimTime(t)) = self.next_event_time() else {
            self.drained = true;
            return Ok(None);
        };
        self.now = t;
        while self.queue.first_time() == Some(t) {
            let Some((_, batch)) = self.queue.pop_batch() else { break };
            for &ev in &batch {
                self.handle(t, ev, router)?;
            }
            self.queue.recycle(batch);
        }
        self.recompute(t)?;
        Ok(Some(SimTime(t)))
    }

    /// Runs until no event remains and returns the result.
    pub fn run(&mut self) -> Result<SimResult, SimError> {
        self.run_with(&mut FixedPaths)
    }

    /// Runs to the end with `router` choosing paths (see [`Router`]).
    pub fn run_with(&mut self, router: &mut dyn Router) -> Result<SimResult, SimError> {
        while self.advance_with(router)?.is_some() {}
        Ok(self.result())
    }

    /// The result as of [`Simulation::now`]. Stall reasons are only filled in once the run
    /// has drained (no event left); before that, unfinished flows are simply in progress.
    pub fn result(&self) -> SimResult {
        let t = self.now;
        let flows = self
            .flows
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let delivered = match f.state {
                    State::Done => f.size,
                    State::Pending => Bytes(0),
                    State::Active => {
                        let sent = u128::from(f.rate) * u128::from(t - f.last);
                        let left = f.remaining.saturating_sub(sent).div_ceil(UNITS_PER_BYTE);
                        Bytes(f.size.0 - left.min(u128::from(f.size.0)) as u64)
                    }
                };
                FlowResult {
                    id: FlowId(i as u32),
                    tag: f.tag,
                    bytes: f.size,
                    delivered,
                    start: (f.state != State::Pending).then_some(SimTime(f.activated)),
                    end: (f.state == State::Done).then_some(SimTime(f.completed)),
                    stall: if self.drained { self.stall_reason(i) } else { None },
                }
            })
            .collect();
        let link_stats = self
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| {
                // The load since the link's last recompute, as `integrate` would add it.
                let dt = t.saturating_sub(l.last);
                let carried = l.carried.saturating_add(i128::from(l.load) * i128::from(dt));
                let busy = if l.load > 0 { l.busy.saturating_add(dt) } else { l.busy };
                let bytes = (carried.max(0) as u128 / UNITS_PER_BYTE).min(u128::from(u64::MAX)) as u64;
                LinkStats {
                    id: LinkId(i as u32),
                    bytes: Bytes(bytes),
                    peak_utilization: if l.cap_units == 0 { 0.0 } else { l.peak as f64 / l.cap_units as f64 },
                    busy: Nanos(busy),
                }
            })
            .collect();
        SimResult {
            flows,
            link_stats,
            events: self.events,
            recomputes: self.recomputes,
            end: SimTime(self.now.max(self.last_completion)),
        }
    }

    // ----- internals -----

    fn check_path(&self, flow: FlowId, path: &[LinkId]) -> Result<(), SimError> {
        let links = self.links.len();
        if let Some(&link) = path.iter().find(|l| l.index() >= links) {
            return Err(SimError::UnknownPathLink { flow, link, links });
        }
        let repeated = if path.len() <= 16 {
            path.iter().enumerate().find(|&(i, l)| path[..i].contains(l)).map(|(_, &l)| l)
        } else {
            let mut sorted = path.to_vec();
            sorted.sort_unstable();
            sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
        };
        match repeated {
            Some(link) => Err(SimError::RepeatedLink { flow, link }),
            None => Ok(()),
        }
    }

    fn push_path(&mut self, path: &[LinkId]) -> u32 {
        let start = self.path_links.len() as u32;
        self.path_links.extend(path.iter().map(|l| l.0));
        self.path_pos.resize(self.path_links.len(), NONE);
        start
    }

    /// Latency of `path` plus the last packet's serialization at its bottleneck, in ns.
    /// What a flow takes beyond its fluid transfer: the path's latency and the last packet's
    /// serialization (once at the bottleneck when cut-through; at every link but the one the
    /// fluid transfer already paid when store-and-forward), and with `ack` completion the
    /// acknowledgement's way back (the same latency, its own serialization likewise).
    fn tail(&self, path: &[LinkId], size: Bytes, last_packet: Bytes) -> u64 {
        if path.is_empty() {
            return 0;
        }
        let specs = path.iter().map(|l| self.net.links[l.index()]);
        let latency: Nanos = specs.clone().map(|s| s.latency).sum();
        let bottleneck = specs.clone().map(|s| s.capacity).min().unwrap_or_default();
        let serialize = |bytes: Bytes| -> Nanos {
            if bytes.0 == 0 {
                Nanos::ZERO
            } else if self.completion.store_and_forward {
                let all: Nanos = specs.clone().map(|s| s.capacity.transmit_time(bytes)).sum();
                all.saturating_sub(bottleneck.transmit_time(bytes))
            } else {
                bottleneck.transmit_time(bytes)
            }
        };
        let mut t = latency + serialize(last_packet.min(size));
        if let Some(ack) = self.completion.ack_bytes {
            t += latency + serialize(Bytes(ack));
            if self.completion.store_and_forward && ack > 0 {
                // The acknowledgement is its own packet: every link serializes it.
                t += bottleneck.transmit_time(Bytes(ack));
            }
        }
        t.0
    }

    fn push(&mut self, time: u64, event: Event) {
        self.drained = false;
        self.queue.push(time, event);
    }

    /// A finish event is stale once its flow finished or was rescheduled to another time.
    fn is_stale(&self, t: u64, ev: Event) -> bool {
        match ev {
            Event::Finish(f) => {
                let f = &self.flows[f as usize];
                f.state != State::Active || f.queued_at != t
            }
            _ => false,
        }
    }

    fn handle(&mut self, t: u64, ev: Event, router: &mut dyn Router) -> Result<(), SimError> {
        if self.is_stale(t, ev) {
            return Ok(());
        }
        self.events += 1;
        match ev {
            Event::Activate(f) => {
                if self.flows[f as usize].routed {
                    let path = router
                        .route(FlowId(f), &LinkView { links: &self.links, down: self.down, changes: self.changes });
                    if let Some(path) = path {
                        self.check_path(FlowId(f), &path)?;
                        self.move_flow(f as usize, &path, t);
                    }
                }
                self.activate(f as usize, t)
            }
            Event::Finish(f) => self.finish(f as usize, t),
            Event::LinkDown(l) | Event::LinkUp(l) => {
                let up = matches!(ev, Event::LinkUp(_));
                if self.links[l as usize].up != up {
                    self.down = if up { self.down - 1 } else { self.down + 1 };
                    self.changes += 1;
                }
                self.links[l as usize].up = up;
                self.seeds.push(l);
                if !up {
                    self.reroute_off(l as usize, t, router)?;
                }
            }
        }
        Ok(())
    }

    /// Offers every active flow on down link `l` to the router for a new path.
    fn reroute_off(&mut self, l: usize, t: u64, router: &mut dyn Router) -> Result<(), SimError> {
        let mut affected: Vec<u32> = self.links[l].flows.iter().map(|&(f, _)| f).collect();
        affected.sort_unstable();
        for f in affected {
            let fl = &self.flows[f as usize];
            // A flow whose fluid part ends at this very instant keeps its path and finishes.
            if fl.state != State::Active || u128::from(fl.rate) * u128::from(t - fl.last) >= fl.remaining {
                continue;
            }
            if let Some(path) =
                router.reroute(FlowId(f), &LinkView { links: &self.links, down: self.down, changes: self.changes })
            {
                self.check_path(FlowId(f), &path)?;
                self.move_flow(f as usize, &path, t);
            }
        }
        Ok(())
    }

    fn activate(&mut self, f: usize, t: u64) {
        let fl = &mut self.flows[f];
        debug_assert_eq!(fl.state, State::Pending);
        fl.state = State::Active;
        fl.activated = t;
        fl.last = t;
        fl.rate = 0;
        fl.finish_at = NEVER;
        fl.queued_at = NEVER;
        let path_len = self.hot[f].path_len;
        if fl.routed && path_len == 0 && fl.remaining > 0 {
            // The router found no path: the flow stays active at rate zero (reported as
            // `Stall::NoPath`).
            return;
        }
        if path_len == 0 || fl.remaining == 0 {
            fl.remaining = 0;
            fl.state = State::Done;
            self.complete(f, t);
        } else {
            self.attach(f);
        }
    }

    /// Puts an active flow on its path's link lists and marks those links for recompute.
    fn attach(&mut self, f: usize) {
        let h = self.hot[f];
        let start = h.path_start as usize;
        for k in start..start + h.path_len as usize {
            let l = self.path_links[k];
            let list = &mut self.links[l as usize].flows;
            self.path_pos[k] = list.len() as u32;
            list.push((f as u32, (k - start) as u32));
            self.seeds.push(l);
        }
    }

    /// Takes an active flow off its links' lists and marks those links for recompute.
    fn detach(&mut self, f: usize) {
        let h = self.hot[f];
        let start = h.path_start as usize;
        for k in start..start + h.path_len as usize {
            let l = self.path_links[k];
            let pos = self.path_pos[k] as usize;
            let list = &mut self.links[l as usize].flows;
            list.swap_remove(pos);
            if let Some(&(moved, hop)) = list.get(pos) {
                let mk = self.hot[moved as usize].path_start as usize + hop as usize;
                self.path_pos[mk] = pos as u32;
            }
            self.path_pos[k] = NONE;
            self.seeds.push(l);
        }
    }

    /// Brings a flow's remaining volume up to `t` at its current rate.
    fn settle(&mut self, f: usize, t: u64) {
        let fl = &mut self.flows[f];
        let sent = u128::from(fl.rate) * u128::from(t - fl.last);
        debug_assert!(sent <= fl.remaining, "flow {f} overran its size before its finish event");
        fl.remaining = fl.remaining.saturating_sub(sent);
        fl.last = t;
    }

    /// The fluid part of flow `f` ends at `t` (its scheduled finish event).
    fn finish(&mut self, f: usize, t: u64) {
        let fl = &mut self.flows[f];
        let sent = u128::from(fl.rate) * u128::from(t - fl.last);
        // Batched early (see `set_tolerance`): the flow completes at its own finish time, and
        // the volume it still had counts as carried by its links.
        let own = fl.finish_at;
        // The finish time was rounded up to the next ns: the flow drained within the last ns.
        debug_assert!(own > t || (sent >= fl.remaining && sent - fl.remaining < u128::from(fl.rate)));
        let overshoot = sent as i128 - fl.remaining as i128;
        fl.remaining = 0;
        fl.rate = 0;
        fl.last = t;
        fl.state = State::Done;
        // Links integrate their load up to `t` in this batch's recompute; take back the part
        // of the last nanosecond this flow did not need, so carried bytes are exact.
        let h = self.hot[f];
        for k in h.path_start as usize..(h.path_start + h.path_len) as usize {
            let l = &mut self.links[self.path_links[k] as usize];
            l.carried -= overshoot;
        }
        self.detach(f);
        self.complete(f, own.max(t));
    }

    /// Flow `f` finished its fluid part at `t`: record its completion and release dependents.
    fn complete(&mut self, f: usize, t: u64) {
        self.completed += 1;
        let fl = &mut self.flows[f];
        fl.completed = t.saturating_add(fl.tail);
        let done = fl.completed;
        self.last_completion = self.last_completion.max(done);
        let mut e = fl.dependents;
        while e != NONE {
            let (g, next) = self.dep_edges[e as usize];
            let dep = &mut self.flows[g as usize];
            dep.ready = dep.ready.max(done.saturating_add(dep.dep_delay));
            dep.waiting -= 1;
            if dep.waiting == 0 {
                let ready = dep.ready;
                self.push(ready, Event::Activate(g));
            }
            e = next;
        }
    }

    /// Recomputes max-min fair rates of the component(s) reachable from the seed links and
    /// reschedules the finish events of flows whose rate changed.
    fn recompute(&mut self, t: u64) -> Result<(), SimError> {
        if self.seeds.is_empty() {
            return Ok(());
        }
        self.recomputes += 1;
        self.drained = false;
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Wrapped: clear all marks once every 2^32 recomputes.
            self.hot.iter_mut().for_each(|f| (f.seen, f.frozen) = (0, 0));
            self.links.iter_mut().for_each(|l| l.seen = 0);
            self.epoch = 1;
        }
        let epoch = self.epoch;
        let Self {
            links,
            flows,
            hot,
            path_links,
            seeds,
            comp_links,
            comp_flows,
            comps,
            fill,
            queue,
            tolerance_ppm,
            ..
        } = self;
        let mut comp = Component { links: comp_links, flows: comp_flows, spans: comps };
        find_components(links, hot, path_links, seeds, &mut comp, epoch);
        seeds.clear();
        progressive_fill(links, hot, path_links, comp.links, fill, epoch, t);
        reschedule(flows, hot, &comp, queue, *tolerance_ppm, t)
    }

    fn stall_reason(&self, f: usize) -> Option<Stall> {
        let fl = &self.flows[f];
        match fl.state {
            State::Done => None,
            State::Pending => {
                let deps = &self.deps[fl.dep_start as usize..(fl.dep_start + fl.dep_len) as usize];
                let dep = deps.iter().find(|&&d| self.flows[d as usize].state != State::Done)?;
                Some(Stall::Dependency { flow: FlowId(*dep) })
            }
            State::Active => {
                let h = self.hot[f];
                let path = &self.path_links[h.path_start as usize..(h.path_start + h.path_len) as usize];
                if path.is_empty() {
                    return Some(Stall::NoPath);
                }
                let link = |l: u32| LinkId(l);
                if let Some(&l) = path.iter().find(|&&l| !self.links[l as usize].up) {
                    return Some(Stall::LinkDown { link: link(l) });
                }
                if let Some(&l) = path.iter().find(|&&l| self.links[l as usize].cap_units == 0) {
                    return Some(Stall::ZeroCapacity { link: link(l) });
                }
                let l = path
                    .iter()
                    .copied()
                    .find(|&l| {
                        let k = &self.links[l as usize];
                        k.cap_units / (k.flows.len().max(1) as u64) == 0
                    })
                    .or_else(|| path.first().copied())?;
                Some(Stall::ZeroShare { link: link(l) })
            }
        }
    }
}

/// The links and flows of the components a recompute touches; `spans[c]` is component c's
/// range in `flows`. Buffers reused across recomputes.
struct Component<'a> {
    links: &'a mut Vec<u32>,
    flows: &'a mut Vec<u32>,
    spans: &'a mut Vec<(u32, u32)>,
}

/// Phase 1 of a recompute: the components, breadth-first over link -> flows -> links from
/// each seed link.
#[inline]
fn find_components(
    links: &mut [Link],
    hot: &mut [Hot],
    path_links: &[u32],
    seeds: &[u32],
    comp: &mut Component<'_>,
    epoch: u32,
) {
    // 1. The components: breadth-first over link -> flows -> links from each seed link,
    //    remembering where each component's flows start in `comp.flows`.
    comp.links.clear();
    comp.flows.clear();
    comp.spans.clear();
    let mut i = 0;
    for &seed in seeds.iter() {
        let link = &mut links[seed as usize];
        if link.seen == epoch {
            continue;
        }
        link.seen = epoch;
        comp.links.push(seed);
        let first_flow = comp.flows.len() as u32;
        while i < comp.links.len() {
            let l = comp.links[i] as usize;
            for j in 0..links[l].flows.len() {
                let f = links[l].flows[j].0 as usize;
                let fl = &mut hot[f];
                if fl.seen == epoch {
                    continue;
                }
                fl.seen = epoch;
                comp.flows.push(f as u32);
                let start = fl.path_start as usize;
                for &m in &path_links[start..start + fl.path_len as usize] {
                    let link = &mut links[m as usize];
                    if link.seen != epoch {
                        link.seen = epoch;
                        comp.links.push(m);
                    }
                }
            }
            i += 1;
        }
        comp.spans.push((first_flow, comp.flows.len() as u32));
    }
}

/// Phase 2 of a recompute: max-min fair rates by progressive filling over the component's
/// links, smallest share first; sets each flow's `new_rate` and each link's load.
#[inline]
fn progressive_fill(
    links: &mut [Link],
    hot: &mut [Hot],
    path_links: &[u32],
    comp_links: &[u32],
    fill: &mut BinaryHeap<Reverse<Share>>,
    epoch: u32,
    t: u64,
) {
    // 2. Progressive filling over the component.
    fill.clear();
    for &l in comp_links.iter() {
        let link = &mut links[l as usize];
        link.integrate(t);
        link.rem = link.available();
        link.unfrozen = link.flows.len() as u32;
        if link.unfrozen > 0 {
            fill.push(Reverse(Share { rem: link.rem, unfrozen: link.unfrozen, link: l }));
        }
    }
    // Lazy keys: freezing flows at the smallest share never lowers another link's share
    // (`(rem - s) / (n - 1) >= rem / n` when `s <= rem / n`), so a link's queued key is a
    // lower bound of its true share. A popped entry whose key is out of date is pushed
    // back with the current one; each link has one entry, and links are processed in the
    // same (share, id) order as with eager updates.
    while let Some(Reverse(s)) = fill.pop() {
        let l = s.link as usize;
        let (rem, unfrozen) = (links[l].rem, links[l].unfrozen);
        if unfrozen == 0 {
            continue;
        }
        if (rem, unfrozen) != (s.rem, s.unfrozen) {
            fill.push(Reverse(Share { rem, unfrozen, link: s.link }));
            continue;
        }
        let share = rem / u64::from(unfrozen);
        for j in 0..links[l].flows.len() {
            let f = links[l].flows[j].0 as usize;
            let fl = &mut hot[f];
            if fl.frozen == epoch {
                continue;
            }
            fl.frozen = epoch;
            fl.new_rate = share;
            let start = fl.path_start as usize;
            for &m in &path_links[start..start + fl.path_len as usize] {
                let link = &mut links[m as usize];
                // `l` has the smallest share, so every link can afford it.
                link.rem -= share;
                link.unfrozen -= 1;
            }
        }
    }
    for &l in comp_links.iter() {
        let link = &mut links[l as usize];
        debug_assert_eq!(link.unfrozen, 0);
        link.load = link.available() - link.rem;
        debug_assert!(link.load <= link.cap_units);
        link.peak = link.peak.max(link.load);
    }
}

/// Phase 3 of a recompute: new finish times for the flows whose rate changed, and finish
/// events for each component's earliest finisher(s).
#[inline]
fn reschedule(
    flows: &mut [Flow],
    hot: &[Hot],
    comp: &Component<'_>,
    queue: &mut EventQueue,
    tolerance_ppm: u64,
    t: u64,
) -> Result<(), SimError> {
    // 3. New rates for flows whose rate changed (a flow whose rate is unchanged keeps its
    //    finish time). Only the earliest finisher(s) of each component get a queued finish
    //    event: any change to a component recomputes it, and its earliest finish is the
    //    next change if nothing else happens first. This keeps the queue small.
    for &(first, end) in comp.spans.iter() {
        let mut earliest = NEVER;
        for &f in &comp.flows[first as usize..end as usize] {
            let new_rate = hot[f as usize].new_rate;
            let fl = &mut flows[f as usize];
            if new_rate != fl.rate {
                let sent = u128::from(fl.rate) * u128::from(t - fl.last);
                debug_assert!(sent <= fl.remaining);
                fl.remaining = fl.remaining.saturating_sub(sent);
                fl.last = t;
                fl.rate = new_rate;
                fl.finish_at = if fl.rate == 0 {
                    NEVER
                } else {
                    let dt = fl.remaining.div_ceil(u128::from(fl.rate));
                    u64::try_from(dt)
                        .ok()
                        .and_then(|dt| t.checked_add(dt))
                        .filter(|&at| at != NEVER)
                        .ok_or(SimError::TimeOverflow { flow: FlowId(f) })?
                };
            }
            earliest = earliest.min(fl.finish_at);
        }
        let tol = tolerance_ppm;
        for &f in &comp.flows[first as usize..end as usize] {
            let fl = &mut flows[f as usize];
            // Within the tolerance, a flow finishing a little after the earliest one is
            // finished in the same batch (it still completes at its own time).
            let early = tol > 0
                && fl.finish_at != NEVER
                && earliest != NEVER
                && u128::from(fl.finish_at - earliest) * 1_000_000
                    <= u128::from(fl.finish_at - fl.activated) * u128::from(tol);
            if early && fl.queued_at != earliest {
                fl.queued_at = earliest;
                queue.push(earliest, Event::Finish(f));
                continue;
            }
            if early {
                continue;
            }
            if fl.finish_at != earliest || earliest == NEVER {
                fl.queued_at = NEVER; // any queued event for it is now stale
            } else if fl.queued_at != earliest {
                fl.queued_at = earliest;
                queue.push(earliest, Event::Finish(f));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    impl Simulation {
        /// Current rates of all flows (zero unless active), in rate units.
        fn rates(&self) -> Vec<u64> {
            self.flows.iter().map(|f| if f.state == State::Active { f.rate } else { 0 }).collect()
        }

        /// The rates a from-scratch recompute of every link would give now.
        fn rates_after_full_recompute(&self) -> Vec<u64> {
            let mut full = self.clone();
            full.seeds.extend(0..full.links.len() as u32);
            full.recompute(full.now).unwrap();
            full.rates()
        }
    }

    #[test]
    fn shares_order_by_exact_value_then_link() {
        let s = |rem, unfrozen, link| Share { rem, unfrozen, link };
        assert!(s(1, 3, 5) < s(1, 2, 0)); // 1/3 < 1/2
        assert!(s(2, 4, 0) < s(1, 2, 1)); // equal value: lower link first
        assert_eq!(s(2, 4, 7), s(1, 2, 7));
        assert!(s(u64::MAX, u32::MAX, 0) < s(u64::MAX, u32::MAX - 1, 0));
    }

    #[test]
    fn tail_is_latency_plus_last_packet_at_the_bottleneck() {
        let mut net = Network::new();
        let a = net.add_link(BitsPerSec::gbps(400), Nanos(100));
        let b = net.add_link(BitsPerSec::gbps(100), Nanos(250));
        let sim = Simulation::new(net);
        // 4096 B at 100 Gbps = 327.68 ns -> 328.
        assert_eq!(sim.tail(&[a, b], Bytes(1 << 20), Bytes(4096)), 350 + 328);
        // The last packet is clamped to the flow's size: 1000 B at 100 Gbps = 80 ns.
        assert_eq!(sim.tail(&[a, b], Bytes(1000), Bytes(4096)), 350 + 80);
        assert_eq!(sim.tail(&[], Bytes(1000), Bytes(4096)), 0);
    }

    #[test]
    fn tail_by_completion_and_forwarding() {
        // 400 Gbps then 100 Gbps, 100 + 250 ns; a 4096 B last packet: 82 ns at 400G, 328 ns
        // at 100G (the bottleneck); a 64 B acknowledgement: 2 ns and 6 ns.
        let mut net = Network::new();
        let a = net.add_link(BitsPerSec::gbps(400), Nanos(100));
        let b = net.add_link(BitsPerSec::gbps(100), Nanos(250));
        let mut sim = Simulation::new(net);
        let t = |sim: &Simulation| sim.tail(&[a, b], Bytes(1 << 20), Bytes(4096));
        assert_eq!(t(&sim), 350 + 328, "data at the receiver, cut-through");
        // Store-and-forward: the fluid transfer paid the bottleneck; the other link
        // serializes the last packet once more.
        sim.set_completion(Completion { ack_bytes: None, store_and_forward: true });
        assert_eq!(t(&sim), 350 + 82);
        // The acknowledgement comes back over the same latency, serialized at the bottleneck...
        sim.set_completion(Completion { ack_bytes: Some(64), store_and_forward: false });
        assert_eq!(t(&sim), 350 + 328 + 350 + 6);
        // ... or at every link.
        sim.set_completion(Completion { ack_bytes: Some(64), store_and_forward: true });
        assert_eq!(t(&sim), 350 + 82 + 350 + 2 + 6);
    }

    #[test]
    fn stale_finish_events_are_skipped_and_not_counted() {
        let mut net = Network::new();
        let l = net.add_link(BitsPerSec::gbps(10), Nanos::ZERO);
        let mut sim = Simulation::new(net);
        sim.add_flow(FlowSpec::new(vec![l], Bytes(1_000_000), SimTime::ZERO)).unwrap();
        // A second flow halves the first one's rate at 0.4 ms, moving its finish from 0.8 ms.
        sim.add_flow(FlowSpec::new(vec![l], Bytes(1_000_000), SimTime(400_000))).unwrap();
        let r = sim.run().unwrap();
        assert_eq!(r.flows[0].end, Some(SimTime(1_200_000)));
        assert_eq!(r.flows[1].end, Some(SimTime(1_600_000)));
        assert_eq!(r.events, 4, "two activations, two finishes");
    }

    /// Link capacities in Gbps, and flows as (path, size, start).
    type Scenario = (Vec<u64>, Vec<(Vec<usize>, u64, u64)>);

    fn scenario() -> impl Strategy<Value = Scenario> {
        prop::collection::vec(1u64..50, 2..7).prop_flat_map(|caps| {
            let n = caps.len();
            let flow =
                (prop::sample::subsequence((0..n).collect::<Vec<_>>(), 1..=n.min(3)), 1u64..500_000, 0u64..200_000);
            (Just(caps), prop::collection::vec(flow, 1..25))
        })
    }

    proptest! {
        /// Recomputing only the touched component gives exactly the rates of a recompute of
        /// everything, after every batch.
        #[test]
        fn incremental_recompute_matches_full_recompute((caps, flows) in scenario()) {
            let mut net = Network::new();
            for &c in &caps {
                net.add_link(BitsPerSec(c * 1_000_000_000), Nanos(10));
            }
            let mut sim = Simulation::new(net);
            for (path, size, start) in flows {
                let path = path.into_iter().map(|l| LinkId(l as u32)).collect();
                sim.add_flow(FlowSpec::new(path, Bytes(size), SimTime(start))).unwrap();
            }
            sim.schedule_link_down(LinkId(0), SimTime(50_000)).unwrap();
            sim.schedule_link_up(LinkId(0), SimTime(90_000)).unwrap();
            while sim.advance().unwrap().is_some() {
                prop_assert_eq!(sim.rates(), sim.rates_after_full_recompute());
            }
        }
    }
}
