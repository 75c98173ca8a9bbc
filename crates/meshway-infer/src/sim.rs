//! The request-level inference simulator.
//!
//! Model (every number comes from the scenario or the catalog):
//! - Each region emits requests by a Poisson process at `rate` x its daily-profile multiplier,
//!   or, for `bursty`, an on/off Markov-modulated Poisson process with the same mean (thinning
//!   at the peak rate). Prompt and output lengths are drawn per request. Each region has its
//!   own random stream, so two runs of one scenario with different GPU placements see exactly
//!   the same requests (common random numbers).
//! - The routing policy picks a site among the healthy sites serving the region's model that
//!   the region has a route to, with global, instant knowledge of each site's load.
//! - The request reaches the site after the path's one-way latency (last mile + fiber km x
//!   fiber delay + hops x per-hop latency) and waits in the site's FIFO queue until a server
//!   can admit it (continuous batching: a request joins a running batch at the next step; the
//!   server with the fewest requests is chosen). A fixed per-request overhead is added on the
//!   way in.
//! - A server runs steps, as an inference engine does. A step decodes one token (with
//!   speculative decoding, the expected accepted tokens) for each decoding request and
//!   prefills prompt tokens; with chunked prefill a step adds prompt chunks up to the token
//!   budget beside its decode tokens, without it a step prefills whole prompts alone and
//!   decoding waits. A request enters a server when a batch slot and the KV cache for its
//!   prompt and output are free (reserved at admission, so nothing is evicted). A step's time
//!   comes from the model: rated models take tokens / rate; shaped models a roofline over
//!   FLOPs and weight and KV-cache bytes, plus tensor-parallel all-reduces and a fixed
//!   overhead ([`crate::spec::Shape::step_ns`]). The first output token exists at the end of
//!   the step that finishes the prompt; a request's time per output token (TPOT) is its
//!   decode time over its output tokens after the first.
//! - Tokens stream back over the same path: time to first token (TTFT) = first token + one-way
//!   latency - send time; end-to-end = last token + one-way latency - send time.
//! - Events are ordered by (time, sequence) at integer nanoseconds; same seed, same report.

use crate::rng::Rng;
use crate::spec::{Arrivals, Cost, InferSpec, LengthDist, Model, Policy};
use meshway_fabric::infer_config::{SiteRole, SiteTier};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// One run: a placement (servers per site), failures and run settings.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub servers: Vec<u32>,
    pub site_down: Vec<bool>,
    /// Sites that fail during the run, at this time: requests queued or running there, and
    /// those on their way to it, are sent again by their users after `failover_detect_ns`
    /// (start over at another site; their latency still counts from the first send).
    pub site_fail_at: Vec<Option<u64>>,
    pub failover_detect_ns: u64,
    /// (region, site) routes that are down.
    pub path_down: Vec<(usize, usize)>,
    pub duration_ns: u64,
    pub seed: u64,
    pub policy: Policy,
}

impl Run {
    /// The scenario as written: its GPUs, no failures.
    pub fn new(spec: &InferSpec) -> Run {
        Run {
            servers: spec.servers(),
            site_down: vec![false; spec.sites.len()],
            site_fail_at: vec![None; spec.sites.len()],
            failover_detect_ns: spec.failover_detect.0,
            path_down: Vec::new(),
            duration_ns: spec.duration.0,
            seed: spec.seed,
            policy: spec.policy,
        }
    }
}

/// Latency percentiles in nanoseconds (nearest rank). Of no samples, every figure is 0 in
/// Rust and the whole is `null` in JSON (a 0 there would read as a latency that meets any
/// objective).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub mean_ns: u64,
    pub max_ns: u64,
    /// Samples the figures come from.
    pub samples: u64,
}

impl Serialize for Percentiles {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Figures {
            p50_ns: u64,
            p90_ns: u64,
            p99_ns: u64,
            mean_ns: u64,
            max_ns: u64,
        }
        if self.samples == 0 {
            return ser.serialize_none();
        }
        Figures {
            p50_ns: self.p50_ns,
            p90_ns: self.p90_ns,
            p99_ns: self.p99_ns,
            mean_ns: self.mean_ns,
            max_ns: self.max_ns,
        }
        .serialize(ser)
    }
}

impl Percentiles {
    pub fn of(v: &mut [u64]) -> Percentiles {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_unstable();
        let n = v.len();
        let rank = |p: f64| v[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        let sum: u128 = v.iter().map(|&x| u128::from(x)).sum();
        Percentiles {
            p50_ns: rank(0.50),
            p90_ns: rank(0.90),
            p99_ns: rank(0.99),
            mean_ns: (sum / n as u128) as u64,
            max_ns: v[n - 1],
            samples: n as u64,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionResult {
    pub name: String,
    /// Requests the region's users sent (each counted once, however often it was resent).
    pub requests: u64,
    /// Requests that streamed their last token back.
    pub served: u64,
    /// Requests no healthy site could take (counted as misses).
    pub unserved: u64,
    /// Requests no server could take, however many: longer than the model's context or than
    /// an empty server's KV cache (engines refuse them). Misses for attainment, but not
    /// against `met`, which more GPUs cannot change, unless nothing else was served.
    pub too_long: u64,
    /// Requests sent again because their site failed under them.
    pub retried: u64,
    pub ttft: Percentiles,
    /// The TTFT distribution as (time, share of requests at or below it), for charts (left
    /// out of JSON, which has the percentiles): see [`cdf_points`].
    #[serde(skip)]
    pub ttft_cdf: Vec<(u64, f64)>,
    /// Time per output token after the first, per request (requests of two or more tokens).
    pub tpot: Percentiles,
    pub e2e: Percentiles,
    /// Output tokens delivered per second of the run (arrivals and drain).
    pub tokens_per_s: f64,
    /// Mean decode rate one user sees after the first token.
    pub stream_tokens_per_s: f64,
    pub ttft_p99_objective_ns: u64,
    pub tpot_p99_objective_ns: Option<u64>,
    /// Share of requests whose TTFT (and TPOT, when it has an objective) met the objective.
    pub attainment: f64,
    /// p99 TTFT (and p99 TPOT) within the objectives and every request served.
    pub met: bool,
    /// The site that served most of the region's requests (streamed their last token), and
    /// its share (None when no request was served).
    pub main_site: Option<String>,
    pub main_site_share: f64,
    /// The site that produced most of the region's first tokens (the main site unless a
    /// prefill site handed its requests on; None when none was made).
    pub prefill_site: Option<String>,
    /// The share of the region's first tokens `prefill_site` made.
    pub prefill_site_share: f64,
    /// Round trip, without queueing or compute, to the site that made most of the region's
    /// first tokens (`prefill_site`): the one its time to first token pays (None when no
    /// request was served). Under disaggregation that is the prefill site, not the decode
    /// site the requests end at.
    pub rtt_ns: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteResult {
    pub name: String,
    pub tier: SiteTier,
    pub down: bool,
    pub gpus: u32,
    pub servers: u32,
    pub requests: u64,
    /// Share of the servers' capacity used: (prefill time + decoded tokens / decode-tokens-per-s)
    /// over servers x run time.
    pub gpu_utilization: f64,
    /// Share of server time with any work (prefill or at least one decoding stream).
    pub busy: f64,
    /// Mean requests in a server's batch over its max batch.
    pub batch_fill: f64,
    /// Mean share of the servers' KV cache reserved (shaped models; 0 for rated ones).
    pub kv_fill: f64,
    pub max_queue: u64,
    pub gpu_hour_usd: f64,
}

/// One direction of a DCI link carrying KV caches.
#[derive(Debug, Clone, Serialize)]
pub struct DciResult {
    pub from: String,
    pub to: String,
    pub capacity_bps: f64,
    pub background: f64,
    pub transfers: u64,
    pub bytes: f64,
    /// Share of the run with at least one transfer on the link.
    pub busy: f64,
    /// Mean throughput over the run as a share of the capacity left by background traffic.
    pub utilization: f64,
    /// Transfer time, first byte sent to last byte received (with propagation).
    pub transfer: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct InferReport {
    pub scenario: String,
    pub policy: Policy,
    pub duration_ns: u64,
    pub seed: u64,
    pub requests: u64,
    pub events: u64,
    /// Time of the last event (the last token of the last request).
    pub end_ns: u64,
    pub regions: Vec<RegionResult>,
    pub sites: Vec<SiteResult>,
    /// KV-cache transfers per DCI direction (disaggregated serving; empty otherwise).
    pub dci: Vec<DciResult>,
    pub all_met: bool,
    pub cost_usd_per_hour: f64,
    /// Requests still queued or running when the clock passed [`DRAIN_HORIZON_NS`] after the
    /// arrivals ended (counted as unserved; 0 when the run drained).
    pub unfinished: u64,
}

/// How long after its arrivals end a run may take to drain before it stops and counts what
/// is left as unserved: 1e18 ns, about 31.7 years. An assumption: any scenario that can be
/// served at all drains within hours; this keeps the nanosecond clock (which saturates at
/// about 584 years) from wrapping on one that cannot, such as a rated model at 0.001
/// tokens/s.
pub const DRAIN_HORIZON_NS: u64 = 1_000_000_000_000_000_000;

impl InferReport {
    /// The worst miss: max over regions of p99 TTFT - objective (negative: slack).
    pub fn worst_margin_ns(&self) -> i64 {
        self.regions
            .iter()
            .map(|r| {
                // Unserved requests, or none served though some were sent: no latency to
                // compare, the worst margin there is.
                if r.unserved > 0 || (r.served == 0 && r.requests > 0) {
                    return i64::MAX;
                }
                let t = r.ttft.p99_ns as i64 - r.ttft_p99_objective_ns as i64;
                match r.tpot_p99_objective_ns {
                    // A TPOT miss counts as large as the share it misses by, in TTFT terms.
                    Some(o) if r.tpot.p99_ns > o => {
                        t.max(((r.tpot.p99_ns - o) as f64 / o as f64 * r.ttft_p99_objective_ns as f64) as i64)
                    }
                    _ => t,
                }
            })
            .max()
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrive(u32),
    Reach(u32),
    Wake(u32, u32, u32),
    Fail(u32),
    Retry(u32),
    /// A KV transfer on link direction `.0` may have finished (version `.1`).
    KvDone(u32, u32),
    /// A request's KV cache reaches its decode site.
    Handoff(u32),
}

#[derive(Debug, Clone, Copy, Default)]
struct Req {
    region: u32,
    site: u32,
    server: u32,
    prompt: u32,
    output: u32,
    /// Prompt tokens still to prefill.
    left: u32,
    /// KV-cache tokens reserved.
    kv: u64,
    /// Context at joining the decode set minus the server's decode counter then.
    ctx0: f64,
    send: u64,
    first: u64,
    /// When the user sees the first token.
    first_seen: u64,
    /// Disaggregated: the prefill site and server holding the KV cache during its transfer.
    psite: u32,
    pserver: u32,
    /// Times the request was sent again after a failure.
    tries: u32,
    /// Its KV cache moved from a prefill site (`psite`) to `site`.
    handed: bool,
}

/// Sends of one request before its user gives up.
pub const MAX_TRIES: u32 = 8;

/// One direction of a DCI link: KV transfers sharing its capacity equally (processor
/// sharing in bytes: `v` is what each transfer has received since the link was last idle).
#[derive(Debug, Default)]
struct LinkState {
    flows: BinaryHeap<Reverse<(u64, u32)>>,
    v: f64,
    last: u64,
    ver: u32,
    busy_ns: u64,
    bytes: f64,
    times: Vec<u64>,
    /// Per request in flight: when its transfer began.
    started: Vec<(u32, u64)>,
}

#[derive(Debug, Default)]
struct Server {
    active: u32,
    kv_used: u64,
    /// Admitted requests whose prompts are not fully prefilled, in order.
    pending: VecDeque<u32>,
    /// (target decode counter as f64 bits, request): non-negative f64 bits order like values.
    decoding: BinaryHeap<Reverse<(u64, u32)>>,
    /// Tokens each decoding stream has gained since the decode set was last empty.
    v: f64,
    /// Sum of ctx0 over the decode set: total context = ctx_base + decoding x v.
    ctx_base: f64,
    /// The step in flight: whether it decodes, and its prefill chunks (request, tokens).
    running: bool,
    step_decodes: bool,
    chunks: Vec<(u32, u32)>,
    ver: u32,
    busy_ns: u64,
    active_ns: u128,
    kv_ns: u128,
    last: u64,
}

#[derive(Debug, Default)]
struct SiteState {
    servers: Vec<Server>,
    queue: VecDeque<u32>,
    assigned: u64,
    /// Prompt tokens still to prefill of the requests routed here (queued or admitted),
    /// for the latency-aware router's estimate.
    prefill_left: u64,
    down: bool,
    requests: u64,
    max_queue: u64,
    one_way: Vec<u64>,
    /// Work done: prefill time and decoded tokens (for the capacity-weighted utilization).
    /// u128: many servers prefilling up to the drain horizon overflow a u64.
    prefill_ns: u128,
    decoded_tokens: u64,
    /// On a site of more than [`INDEXED_SERVERS`] servers, its servers by (requests held,
    /// index): admission takes the first with room, as a scan for the fewest would, without
    /// scanning every server (100,000 GPUs at a site took 16 s). Smaller sites scan: keeping
    /// the index costs more than it saves there (12% on the placement example).
    indexed: bool,
    by_load: std::collections::BTreeSet<(u32, u32)>,
}

/// Servers at a site beyond which admission keeps an index (see [`SiteState::by_load`]).
const INDEXED_SERVERS: u32 = 512;

impl SiteState {
    /// Sets server `v`'s requests held, keeping [`SiteState::by_load`] in step.
    fn set_active(&mut self, v: usize, active: u32) {
        let srv = &mut self.servers[v];
        if self.indexed {
            self.by_load.remove(&(srv.active, v as u32));
            self.by_load.insert((active, v as u32));
        }
        srv.active = active;
    }
}

struct Gen {
    rng: Rng,
    peak_per_ns: f64,
    t: f64,
    on: bool,
    next_toggle: f64,
    /// A region with a request count: requests still to send, and the last arrival as a
    /// share of the span `requests / rate`.
    left: u64,
    u: f64,
}

/// Requests in chunks of 65,536: a run that queues tens of millions grows a chunk at a time.
/// A `Vec` doubled: 40 million queued requests held 2.7 GB and asked for 5.4 GB more at once.
#[derive(Default)]
struct Slab {
    chunks: Vec<Vec<Req>>,
    len: usize,
}

const SLAB_CHUNK: usize = 1 << 16;

impl Slab {
    fn push(&mut self, r: Req) {
        if self.len.is_multiple_of(SLAB_CHUNK) {
            self.chunks.push(Vec::with_capacity(SLAB_CHUNK));
        }
        if let Some(c) = self.chunks.last_mut() {
            c.push(r);
            self.len += 1;
        }
    }
    fn len(&self) -> usize {
        self.len
    }
}

impl std::ops::Index<usize> for Slab {
    type Output = Req;
    fn index(&self, i: usize) -> &Req {
        &self.chunks[i / SLAB_CHUNK][i % SLAB_CHUNK]
    }
}

impl std::ops::IndexMut<usize> for Slab {
    fn index_mut(&mut self, i: usize) -> &mut Req {
        &mut self.chunks[i / SLAB_CHUNK][i % SLAB_CHUNK]
    }
}

struct Sim<'a> {
    spec: &'a InferSpec,
    run: &'a Run,
    heap: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    reqs: Slab,
    free: Vec<u32>,
    sites: Vec<SiteState>,
    gens: Vec<Gen>,
    ttft: Vec<Vec<u64>>,
    tpot: Vec<Vec<u64>>,
    e2e: Vec<Vec<u64>>,
    /// Per region: requests that met every objective.
    ok: Vec<u64>,
    links: Vec<LinkState>,
    /// Per site: (requests per second of a full server, mean prefill time, requests a
    /// server holds at mean lengths), for routing estimates. A prefill-only server prefills
    /// its prompts one after another: its rate is its prefill rate, and it holds one.
    est: Vec<(f64, u64, f64)>,
    /// Per site, for the latency-aware router (empty under the other policies): for each
    /// count d of requests decoding on a server, up to its batch slots, the tokens a step
    /// leaves to prefill and the step's time with no prefill and with a full prefill chunk.
    route_steps: Vec<Vec<RouteStep>>,
    scratch: Vec<(u32, u32)>,
    tokens: Vec<u64>,
    stream_rate_sum: Vec<f64>,
    served_by: Vec<Vec<u64>>,
    /// Per region and site: requests whose first token came from the site.
    prefilled_by: Vec<Vec<u64>>,
    unserved: Vec<u64>,
    /// Requests no server could take (see [`Model::too_long`]).
    too_long: Vec<u64>,
    arrivals: Vec<u64>,
    retried: Vec<u64>,
    /// Per region: candidate sites sorted by one-way latency.
    cands: Vec<Vec<(u32, u64)>>,
    events: u64,
}

fn sample_len(rng: &mut Rng, mean: u32, dist: LengthDist) -> u32 {
    let m = f64::from(mean);
    match dist {
        LengthDist::Fixed => mean,
        LengthDist::Exponential => rng.exp(m).round().clamp(1.0, 1e9) as u32,
        LengthDist::Uniform => 1 + (rng.uniform() * (2.0 * m - 1.0)).floor() as u32,
    }
}

/// A request's prompt and output lengths: a row of the model's `lengths`, or drawn around
/// its means.
fn sample_lengths(rng: &mut Rng, m: &Model) -> (u32, u32) {
    match &m.lengths {
        Some(l) => l[((rng.uniform() * l.len() as f64) as usize).min(l.len() - 1)],
        None => {
            let p = sample_len(rng, m.prompt_tokens, m.length_dist);
            (p, sample_len(rng, m.output_tokens, m.length_dist))
        }
    }
}

impl<'a> Sim<'a> {
    fn push(&mut self, t: u64, e: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((t, self.seq, e)));
    }

    fn next_arrival(&mut self, r: usize) -> Option<u64> {
        let region = &self.spec.regions[r];
        let g = &mut self.gens[r];
        if g.peak_per_ns <= 0.0 {
            return None;
        }
        let end = self.run.duration_ns as f64;
        if let Some(n) = region.requests {
            // Exactly n requests over the span n / rate: a Poisson process given its count,
            // whose arrivals are n sorted uniform points, drawn in order (each the next order
            // statistic of those left).
            if g.left == 0 {
                return None;
            }
            let v = 1.0 - g.rng.uniform();
            g.u = 1.0 - (1.0 - g.u) * v.powf(1.0 / g.left as f64);
            g.left -= 1;
            let t = g.u * n as f64 / (region.rate * 1e-9);
            return (t < end).then_some(t as u64);
        }
        loop {
            g.t += g.rng.exp(1.0 / g.peak_per_ns);
            if g.t >= end {
                return None;
            }
            let burst = match region.arrivals {
                Arrivals::Poisson => 1.0,
                Arrivals::Bursty { factor, on_ns, off_ns } => {
                    while g.next_toggle <= g.t {
                        g.on = !g.on;
                        g.next_toggle += g.rng.exp(if g.on { on_ns as f64 } else { off_ns as f64 });
                    }
                    let share = on_ns as f64 / (on_ns + off_ns) as f64;
                    if g.on {
                        factor
                    } else {
                        ((1.0 - factor * share) / (1.0 - share)).max(0.0)
                    }
                }
            };
            let rate = region.rate * 1e-9 * region.profile_factor(g.t as u64) * burst;
            if g.rng.uniform() * g.peak_per_ns < rate {
                return Some(g.t as u64);
            }
        }
    }

    /// A healthy decode site that prefill site `p` can hand region `r`'s requests to.
    fn decode_site_up(&self, r: usize, p: usize) -> bool {
        self.decode_site_for(r, p).is_some()
    }

    /// The decode site prefill site `p` hands region `r`'s requests to, and the DCI link: the
    /// healthy linked one with servers nearest the user.
    fn decode_site_for(&self, r: usize, p: usize) -> Option<(usize, usize)> {
        let reg = &self.spec.regions[r];
        self.spec
            .decode_links(p)
            .into_iter()
            .filter(|&(_, d)| !self.sites[d].down && self.run.servers[d] > 0 && !self.run.path_down.contains(&(r, d)))
            .filter_map(|(l, d)| reg.paths[d].as_ref().map(|path| (path.one_way.0, d, l)))
            .min()
            .map(|(_, d, l)| (d, l))
    }

    /// The latency-aware router's estimate of a new prompt's prefill at site `s` as loaded
    /// now: the prompt tokens routed there and not yet prefilled (spread over its servers)
    /// go first, at the tokens a step leaves to prefill beside the requests decoding (the
    /// token budget less their tokens, with chunked prefill), each step as long as the model
    /// says for that batch. An idle site gives the lone prompt's prefill.
    fn loaded_prefill_ns(&self, s: usize) -> f64 {
        let spec = self.spec;
        let m = &spec.models[spec.sites[s].model];
        let (_, idle, _) = self.est[s];
        let n = f64::from(self.run.servers[s]).max(1.0);
        let site = &self.sites[s];
        if site.prefill_left == 0 && site.assigned == 0 {
            return idle as f64;
        }
        let own = f64::from(m.uncached(m.prompt_tokens));
        let tokens = site.prefill_left as f64 / n + own;
        // Requests decoding on a server: those routed here beyond the prompts still to
        // prefill, within its batch slots (a prefill site decodes none).
        let table = &self.route_steps[s];
        let decoding = self.decoding_per_server(s);
        let row = table[(decoding.round() as usize).min(table.len().saturating_sub(1))];
        let per_step = f64::from(row.per_step);
        // Whole steps of a full chunk, then the last one's share of a chunk's time (the step
        // table is computed once per site: the model's step time per call made the router
        // half the run).
        let whole = (tokens / per_step).floor();
        let part = tokens - whole * per_step;
        let (d0, full) = (row.decode_only_ns as f64, row.full_ns as f64);
        let last = if part > 0.0 { d0 + (full - d0) * part / per_step } else { 0.0 };
        (whole * full + last + m.request_overhead_ns as f64).max(idle as f64)
    }

    /// Requests decoding on one of site `s`'s servers as loaded now: those routed there
    /// beyond the prompts still to prefill, within its batch slots.
    fn decoding_per_server(&self, s: usize) -> f64 {
        let m = &self.spec.models[self.spec.sites[s].model];
        let n = f64::from(self.run.servers[s]).max(1.0);
        let site = &self.sites[s];
        let own = f64::from(m.uncached(m.prompt_tokens));
        (site.assigned as f64 / n - site.prefill_left as f64 / n / own.max(1.0)).clamp(0.0, self.est[s].2)
    }

    /// The latency-aware router's estimate of the time per output token a new request of
    /// region `r` would see if routed to site `s` now: a decode step of the streams decoding
    /// there plus this one, and the share of its decode steps that also carry (or, without
    /// chunked prefill, wait for) a prefill step of the prompts queued ahead of it, over the
    /// tokens a step yields. A prefill site's requests decode at the site it hands them to.
    fn loaded_tpot_ns(&self, r: usize, s: usize) -> f64 {
        let spec = self.spec;
        let d = if spec.sites[s].role == SiteRole::Prefill {
            match self.decode_site_for(r, s) {
                Some((d, _)) => d,
                None => return f64::INFINITY,
            }
        } else {
            s
        };
        let m = &spec.models[spec.sites[d].model];
        let table = &self.route_steps[d];
        let Some(last) = table.len().checked_sub(1) else { return f64::INFINITY };
        let row = table[((self.decoding_per_server(d) + 1.0).round() as usize).min(last)];
        let n = f64::from(self.run.servers[d]).max(1.0);
        let prefill_steps = self.sites[d].prefill_left as f64 / n / f64::from(row.per_step.max(1));
        let decode_steps = (f64::from(m.output_tokens.saturating_sub(1)) / m.tokens_per_step).max(1.0);
        let share = (prefill_steps / decode_steps).min(1.0);
        let pause = row.full_ns.saturating_sub(row.decode_only_ns) as f64;
        (row.decode_ns as f64 + share * pause) / m.tokens_per_step
    }

    fn route(&self, r: usize) -> Option<(u32, u64)> {
        let spec = self.spec;
        let mut c = self.cands[r].iter().filter(|x| {
            let s = x.0 as usize;
            !self.sites[s].down && (spec.sites[s].role != SiteRole::Prefill || self.decode_site_up(r, s))
        });
        match self.run.policy {
            Policy::Nearest => c.next().copied(),
            Policy::LeastLoaded => c
                .min_by(|a, b| {
                    let load = |x: &(u32, u64)| {
                        let slots = f64::from(self.run.servers[x.0 as usize]) * self.est[x.0 as usize].2;
                        self.sites[x.0 as usize].assigned as f64 / slots
                    };
                    load(a).total_cmp(&load(b))
                })
                .copied(),
            Policy::LatencyAware => {
                // The sites whose estimates keep the region's objectives come first, by
                // estimated TTFT; when none does, the one least over either objective
                // (as a share of it). Without a TPOT objective this is the lowest TTFT.
                let reg = &spec.regions[r];
                let ttft_objective = reg.ttft_p99.0.max(1) as f64;
                c.map(|x| {
                    let s = x.0 as usize;
                    let (cap, _, per) = self.est[s];
                    let n = f64::from(self.run.servers[s]);
                    let site = &self.sites[s];
                    let waiting = (site.assigned as f64 - n * per).max(0.0);
                    let ttft = 2.0 * x.1 as f64 + self.loaded_prefill_ns(s) + waiting / (n * cap) * 1e9;
                    let tpot = reg.tpot_p99.map_or(0.0, |o| self.loaded_tpot_ns(r, s) / o.0.max(1) as f64);
                    let over = (ttft / ttft_objective).max(tpot);
                    (over > 1.0, if over > 1.0 { over } else { ttft }, *x)
                })
                .min_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
                .map(|x| x.2)
            }
        }
    }

    fn arrive(&mut self, r: usize, now: u64) {
        let m = &self.spec.models[self.spec.regions[r].model];
        let (prompt, output) = sample_lengths(&mut self.gens[r].rng, m);
        self.arrivals[r] += 1;
        let left = m.uncached(prompt);
        let kv = m.kv_reserve(prompt, output);
        if let Some(t) = self.next_arrival(r) {
            self.push(t, Ev::Arrive(r as u32));
        }
        let req = Req { region: r as u32, prompt, output, left, kv, send: now, ..Req::default() };
        // A decode site holds the whole prompt's KV cache (the prefix cache saves prefill,
        // not the transferred cache), so where every route splits, that must fit too.
        let split = !self.cands[r].is_empty()
            && self.cands[r].iter().all(|x| self.spec.sites[x.0 as usize].role == SiteRole::Prefill);
        if m.too_long(prompt, output) || (split && u64::from(prompt) + u64::from(output) > m.kv_capacity_tokens) {
            self.too_long[r] += 1;
            self.user_again(r, now + self.run.failover_detect_ns);
            return;
        }
        if self.cands[r].is_empty() {
            self.unserved[r] += 1;
            self.user_again(r, now + self.run.failover_detect_ns);
            return;
        }
        let id = match self.free.pop() {
            Some(i) => {
                self.reqs[i as usize] = req;
                i
            }
            None => {
                self.reqs.push(req);
                (self.reqs.len() - 1) as u32
            }
        };
        self.send(id, now);
    }

    /// Request `q` is refused as too long: counted, its slot freed, its user sends again.
    fn refuse_too_long(&mut self, q: u32, now: u64) {
        let r = self.reqs[q as usize].region as usize;
        self.too_long[r] += 1;
        self.free.push(q);
        self.user_again(r, now + self.run.failover_detect_ns);
    }

    /// A closed-loop region's user sends its next request at `t` (within the run).
    fn user_again(&mut self, r: usize, t: u64) {
        if self.spec.regions[r].concurrency.is_some() && t < self.run.duration_ns {
            self.push(t, Ev::Arrive(r as u32));
        }
    }

    /// Routes request `q` (new or sent again) and puts it on its way.
    fn send(&mut self, q: u32, now: u64) {
        let r = self.reqs[q as usize].region as usize;
        let Some((s, ow)) = self.route(r) else {
            self.unserved[r] += 1;
            self.free.push(q);
            self.user_again(r, now + self.run.failover_detect_ns);
            return;
        };
        let m = &self.spec.models[self.spec.sites[s as usize].model];
        let req = &self.reqs[q as usize];
        if self.spec.sites[s as usize].role == SiteRole::Prefill
            && u64::from(req.prompt) + u64::from(req.output) > m.kv_capacity_tokens
        {
            // Its decode site could never hold the whole prompt's cache: refused here rather
            // than prefilled and shipped first.
            self.refuse_too_long(q, now);
            return;
        }
        let req = &mut self.reqs[q as usize];
        req.site = s;
        req.left = m.uncached(req.prompt);
        req.kv = m.kv_reserve(req.prompt, req.output);
        req.handed = false;
        let left = u64::from(req.left);
        self.sites[s as usize].assigned += 1;
        self.sites[s as usize].prefill_left += left;
        self.push(now.saturating_add(ow + m.request_overhead_ns), Ev::Reach(q));
    }

    /// Site `s` fails: everything queued or running there is sent again after detection.
    fn fail(&mut self, s: usize, now: u64) {
        for v in 0..self.sites[s].servers.len() {
            self.advance(s, v, now);
        }
        let site = &mut self.sites[s];
        site.down = true;
        let mut lost: Vec<u32> = site.queue.drain(..).collect();
        for srv in &mut site.servers {
            lost.extend(srv.pending.drain(..));
            lost.extend(srv.decoding.drain().map(|Reverse((_, q))| q));
            srv.chunks.clear();
            srv.running = false;
            srv.active = 0;
            srv.kv_used = 0;
            srv.ver = srv.ver.wrapping_add(1);
        }
        if site.indexed {
            site.by_load = (0..site.servers.len() as u32).map(|v| (0, v)).collect();
        }
        site.assigned -= lost.len() as u64;
        site.prefill_left = 0;
        lost.sort_unstable();
        for q in lost {
            self.retry_later(q, now);
        }
        // KV caches still leaving the failed site stop with it: their users resend after the
        // failover delay, as for the requests above (they used to keep the link busy and
        // retry only once the transfer ended).
        for l in 0..self.spec.dcis.len() {
            let d = &self.spec.dcis[l];
            if d.a != s && d.b != s {
                continue;
            }
            let dir = 2 * l + usize::from(d.a != s);
            self.link_advance(dir, now);
            let link = &mut self.links[dir];
            // Bytes not sent yet come off the link's count: it carries what it delivered.
            let unsent: f64 =
                link.flows.iter().map(|Reverse((bits, _))| (f64::from_bits(*bits) - link.v).max(0.0)).sum();
            link.bytes = (link.bytes - unsent).max(0.0);
            let mut gone: Vec<u32> = link.flows.drain().map(|Reverse((_, q))| q).collect();
            link.started.clear();
            gone.sort_unstable();
            self.link_schedule(dir, now);
            for q in gone {
                self.release(q, now);
                self.retry_later(q, now);
            }
        }
    }

    /// Request `q` is sent again after the failover delay; after [`MAX_TRIES`] sends its user
    /// gives up and it counts as unserved.
    fn retry_later(&mut self, q: u32, now: u64) {
        let req = &mut self.reqs[q as usize];
        let r = req.region as usize;
        req.tries += 1;
        if req.tries >= MAX_TRIES {
            self.unserved[r] += 1;
            self.free.push(q);
            self.user_again(r, now + self.run.failover_detect_ns);
            return;
        }
        self.retried[r] += 1;
        self.push(now + self.run.failover_detect_ns, Ev::Retry(q));
    }

    fn advance(&mut self, s: usize, v: usize, now: u64) {
        let srv = &mut self.sites[s].servers[v];
        let dt = now.saturating_sub(srv.last);
        if dt > 0 {
            if srv.running {
                srv.busy_ns += dt;
            }
            srv.active_ns += u128::from(srv.active) * u128::from(dt);
            srv.kv_ns += u128::from(srv.kv_used) * u128::from(dt);
            srv.last = now;
        }
    }

    /// Starts the next step of server `v` if it is idle and has work.
    fn start_step(&mut self, s: usize, v: usize, now: u64) {
        let model = &self.spec.models[self.spec.sites[s].model];
        let rated = matches!(model.cost, Cost::Rated { .. });
        let site = &mut self.sites[s];
        let srv = &mut site.servers[v];
        if srv.running {
            return;
        }
        // Requests whose KV cache arrived from a prefill site decode from the next step.
        while let Some(i) = srv.pending.iter().position(|&q| self.reqs[q as usize].left == 0) {
            let q = srv.pending.remove(i).unwrap_or_default();
            let req = &mut self.reqs[q as usize];
            let ctx0 = f64::from(req.prompt) + 1.0 - srv.v;
            req.ctx0 = ctx0;
            srv.ctx_base += ctx0;
            srv.decoding.push(Reverse(((srv.v + f64::from(req.output - 1)).to_bits(), q)));
        }
        let d = srv.decoding.len() as u32;
        srv.chunks.clear();
        self.scratch.clear();
        let reqs = &self.reqs;
        let take = |q: u32, c: u32, chunks: &mut Vec<(u32, u32)>, scratch: &mut Vec<(u32, u32)>| {
            let r = &reqs[q as usize];
            chunks.push((q, c));
            scratch.push((c, r.prompt - r.left));
        };
        let decodes = if model.chunked_prefill {
            let mut budget = model.token_budget.saturating_sub(d * model.verify_tokens);
            for &q in &srv.pending {
                if budget == 0 {
                    break;
                }
                let c = reqs[q as usize].left.min(budget);
                take(q, c, &mut srv.chunks, &mut self.scratch);
                budget -= c;
            }
            d > 0
        } else if !srv.pending.is_empty() {
            // Whole prompts alone, within the budget (at least one; one for a rated model).
            let mut used = 0u32;
            for &q in &srv.pending {
                let l = reqs[q as usize].left;
                if !srv.chunks.is_empty() && (rated || used.saturating_add(l) > model.token_budget) {
                    break;
                }
                take(q, l, &mut srv.chunks, &mut self.scratch);
                used = used.saturating_add(l);
            }
            false
        } else {
            d > 0
        };
        if !decodes && srv.chunks.is_empty() {
            if srv.decoding.is_empty() {
                srv.v = 0.0;
                srv.ctx_base = 0.0;
            }
            return;
        }
        let dn = if decodes { d } else { 0 };
        let ctx = srv.ctx_base + f64::from(dn) * srv.v;
        let t = model.step_ns(dn, ctx, &self.scratch).max(1);
        if let Cost::Rated { prefill, .. } = model.cost {
            let pre: u32 = self.scratch.iter().map(|c| c.0).sum();
            site.prefill_ns += u128::from(crate::spec::token_time(f64::from(pre), prefill));
        }
        srv.running = true;
        srv.step_decodes = decodes;
        srv.ver = srv.ver.wrapping_add(1);
        let ver = srv.ver;
        self.push(now.saturating_add(t), Ev::Wake(s as u32, v as u32, ver));
    }

    /// Moves requests from the site's queue into servers with a free batch slot and KV cache
    /// for them (first come first served; the server with the fewest requests).
    fn admit(&mut self, s: usize, now: u64) {
        let model = &self.spec.models[self.spec.sites[s].model];
        while let Some(&q) = self.sites[s].queue.front() {
            let need = self.reqs[q as usize].kv;
            let site = &self.sites[s];
            let room = |x: &Server| x.active < model.max_batch && x.kv_used + need <= model.kv_capacity_tokens;
            // The fewest requests first, then the lowest index.
            let pick = if site.indexed {
                site.by_load
                    .iter()
                    .take_while(|(active, _)| *active < model.max_batch)
                    .find(|(_, v)| room(&site.servers[*v as usize]))
                    .map(|(_, v)| *v as usize)
            } else {
                site.servers
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| room(x))
                    .min_by_key(|(i, x)| (x.active, *i))
                    .map(|(i, _)| i)
            };
            let Some(v) = pick else { break };
            self.sites[s].queue.pop_front();
            self.advance(s, v, now);
            let active = self.sites[s].servers[v].active + 1;
            self.sites[s].set_active(v, active);
            let srv = &mut self.sites[s].servers[v];
            srv.kv_used += need;
            srv.pending.push_back(q);
            self.reqs[q as usize].server = v as u32;
            self.start_step(s, v, now);
        }
    }

    fn complete(&mut self, q: u32, now: u64) {
        let req = self.reqs[q as usize];
        let (r, s) = (req.region as usize, req.site as usize);
        let ow = self.sites[s].one_way[r];
        let ttft = req.first_seen - req.send;
        let e2e = now + ow - req.send;
        self.ttft[r].push(ttft);
        self.e2e[r].push(e2e);
        let reg = &self.spec.regions[r];
        let mut ok = ttft <= reg.ttft_p99.0;
        if req.output > 1 {
            let span = (now + ow).saturating_sub(req.first_seen);
            let tpot = span / u64::from(req.output - 1);
            self.tpot[r].push(tpot);
            ok &= reg.tpot_p99.is_none_or(|o| tpot <= o.0);
            if span > 0 {
                self.stream_rate_sum[r] += f64::from(req.output - 1) / (span as f64 * 1e-9);
            }
        }
        self.ok[r] += u64::from(ok);
        self.tokens[r] += u64::from(req.output);
        self.served_by[r][s] += 1;
        self.prefilled_by[r][if req.handed { req.psite as usize } else { s }] += 1;
        let site = &mut self.sites[s];
        site.assigned -= 1;
        site.requests += 1;
        site.decoded_tokens += u64::from(req.output.saturating_sub(1));
        let v = req.server as usize;
        site.set_active(v, site.servers[v].active - 1);
        site.servers[v].kv_used -= req.kv;
        self.free.push(q);
        self.user_again(r, now + ow);
    }

    /// Server `v`'s step ends: decode streams gain their tokens, prefill chunks land.
    fn wake(&mut self, s: usize, v: usize, now: u64) {
        self.advance(s, v, now);
        let model = &self.spec.models[self.spec.sites[s].model];
        let srv = &mut self.sites[s].servers[v];
        srv.running = false;
        if srv.step_decodes {
            srv.v += model.tokens_per_step;
            loop {
                let srv = &mut self.sites[s].servers[v];
                let Some(&Reverse((bits, q))) = srv.decoding.peek() else { break };
                let target = f64::from_bits(bits);
                if target - srv.v > 1e-6 + 1e-12 * target {
                    break;
                }
                srv.decoding.pop();
                srv.ctx_base -= self.reqs[q as usize].ctx0;
                if srv.decoding.is_empty() {
                    srv.v = 0.0;
                    srv.ctx_base = 0.0;
                }
                self.complete(q, now);
            }
        }
        let chunks = std::mem::take(&mut self.sites[s].servers[v].chunks);
        for &(q, c) in &chunks {
            let req = &mut self.reqs[q as usize];
            req.left -= c;
            self.sites[s].prefill_left = self.sites[s].prefill_left.saturating_sub(u64::from(c));
            if req.left > 0 {
                continue;
            }
            req.first = now;
            req.first_seen = now + self.sites[s].one_way[req.region as usize];
            let (out, prompt) = (req.output, req.prompt);
            let srv = &mut self.sites[s].servers[v];
            if srv.pending.front() == Some(&q) {
                srv.pending.pop_front();
            } else if let Some(i) = srv.pending.iter().position(|&x| x == q) {
                srv.pending.remove(i);
            }
            if out <= 1 {
                self.complete(q, now);
            } else if self.spec.sites[s].role == SiteRole::Prefill {
                self.hand_off(q, s, v, now);
            } else {
                let target = srv.v + f64::from(out - 1);
                let ctx0 = f64::from(prompt) + 1.0 - srv.v;
                srv.ctx_base += ctx0;
                srv.decoding.push(Reverse((target.to_bits(), q)));
                self.reqs[q as usize].ctx0 = ctx0;
            }
        }
        let mut chunks = chunks;
        chunks.clear();
        self.sites[s].servers[v].chunks = chunks;
        self.admit(s, now);
        self.start_step(s, v, now);
    }

    /// Prefill site `s` (server `v`) has produced request `q`'s first token: its KV cache
    /// goes over a DCI link to the decode site nearest the user; the prefill server keeps it
    /// until the transfer ends.
    fn hand_off(&mut self, q: u32, s: usize, v: usize, now: u64) {
        let r = self.reqs[q as usize].region as usize;
        let best = self.decode_site_for(r, s);
        let req = &mut self.reqs[q as usize];
        req.psite = s as u32;
        req.pserver = v as u32;
        let Some((d, l)) = best else {
            // No decode site left: release the prefill server and start over elsewhere.
            self.release(q, now);
            self.retry_later(q, now);
            return;
        };
        req.site = d as u32;
        req.handed = true;
        let dci = &self.spec.dcis[l];
        let dir = 2 * l + usize::from(dci.a != s);
        let Cost::Shape(shape) = &self.spec.models[self.spec.sites[s].model].cost else { return };
        let bytes = f64::from(req.prompt) * shape.kv_bytes_per_token;
        self.link_advance(dir, now);
        let link = &mut self.links[dir];
        if link.flows.is_empty() {
            link.v = 0.0;
        }
        link.flows.push(Reverse(((link.v + bytes).to_bits(), q)));
        link.started.push((q, now));
        link.bytes += bytes;
        self.link_schedule(dir, now);
    }

    /// Frees the prefill server's batch slot and KV cache held for request `q`.
    fn release(&mut self, q: u32, now: u64) {
        let req = self.reqs[q as usize];
        let (p, v) = (req.psite as usize, req.pserver as usize);
        let site = &mut self.sites[p];
        site.assigned = site.assigned.saturating_sub(1);
        if site.down {
            return;
        }
        site.requests += 1;
        self.advance(p, v, now);
        let active = self.sites[p].servers[v].active - 1;
        self.sites[p].set_active(v, active);
        self.sites[p].servers[v].kv_used -= req.kv;
        self.admit(p, now);
        self.start_step(p, v, now);
    }

    fn link_rate(&self, dir: usize) -> f64 {
        let n = self.links[dir].flows.len().max(1) as f64;
        self.spec.dcis[dir / 2].usable_bytes_per_s() / n
    }

    fn link_advance(&mut self, dir: usize, now: u64) {
        let rate = self.link_rate(dir);
        let link = &mut self.links[dir];
        let dt = now.saturating_sub(link.last);
        if dt > 0 && !link.flows.is_empty() {
            link.v += rate * dt as f64 * 1e-9;
            link.busy_ns += dt;
        }
        link.last = now;
    }

    fn link_schedule(&mut self, dir: usize, now: u64) {
        let rate = self.link_rate(dir);
        let link = &mut self.links[dir];
        link.ver = link.ver.wrapping_add(1);
        if let Some(&Reverse((bits, _))) = link.flows.peek() {
            let left = (f64::from_bits(bits) - link.v).max(0.0);
            let t = now.saturating_add(((left / rate * 1e9).ceil() as u64).max(1));
            let ver = link.ver;
            self.push(t, Ev::KvDone(dir as u32, ver));
        }
    }

    /// Transfers on link direction `dir` that have received all their bytes arrive after the
    /// link's propagation.
    fn kv_done(&mut self, dir: usize, now: u64) {
        self.link_advance(dir, now);
        let one_way = self.spec.dcis[dir / 2].one_way.0;
        loop {
            let link = &mut self.links[dir];
            let Some(&Reverse((bits, q))) = link.flows.peek() else { break };
            let target = f64::from_bits(bits);
            if target - link.v > 1e-3 + 1e-12 * target {
                break;
            }
            link.flows.pop();
            if let Some(i) = link.started.iter().position(|x| x.0 == q) {
                let (_, t0) = link.started.swap_remove(i);
                link.times.push(now + one_way - t0);
            }
            let failed = self.sites[self.reqs[q as usize].psite as usize].down;
            self.release(q, now);
            if failed {
                self.retry_later(q, now);
            } else {
                self.push(now + one_way, Ev::Handoff(q));
            }
        }
        self.link_schedule(dir, now);
    }

    /// Request `q`'s KV cache reaches its decode site: it queues there to decode.
    fn handoff(&mut self, q: u32, now: u64) {
        let d = self.reqs[q as usize].site as usize;
        if self.sites[d].down {
            self.retry_later(q, now);
            return;
        }
        let req = &mut self.reqs[q as usize];
        req.left = 0;
        req.kv = u64::from(req.prompt) + u64::from(req.output);
        if req.kv > self.spec.models[self.spec.sites[d].model].kv_capacity_tokens {
            // No server of the decode site could ever take it: counted, not left queued
            // ahead of (and blocking) everything behind it.
            self.refuse_too_long(q, now);
            return;
        }
        let site = &mut self.sites[d];
        site.assigned += 1;
        site.queue.push_back(q);
        site.max_queue = site.max_queue.max(site.queue.len() as u64);
        self.admit(d, now);
    }

    fn reach(&mut self, q: u32, now: u64) {
        let s = self.reqs[q as usize].site as usize;
        if self.sites[s].down {
            self.sites[s].assigned -= 1;
            let left = u64::from(self.reqs[q as usize].left);
            self.sites[s].prefill_left = self.sites[s].prefill_left.saturating_sub(left);
            self.retry_later(q, now);
            return;
        }
        let site = &mut self.sites[s];
        site.queue.push_back(q);
        site.max_queue = site.max_queue.max(site.queue.len() as u64);
        self.admit(s, now);
    }
}

/// Every site's servers, idle, as the run configures them.
fn initial_sites(spec: &InferSpec, run: &Run) -> Vec<SiteState> {
    let mut sites = Vec::with_capacity(spec.sites.len());
    for i in 0..spec.sites.len() {
        let n = if run.site_down[i] { 0 } else { run.servers[i] };
        let st = SiteState {
            servers: (0..n).map(|_| Server::default()).collect(),
            indexed: n > INDEXED_SERVERS,
            by_load: if n > INDEXED_SERVERS { (0..n).map(|v| (0, v)).collect() } else { Default::default() },
            one_way: spec.regions.iter().map(|r| r.paths[i].as_ref().map_or(0, |p| p.one_way.0)).collect(),
            down: run.site_down[i],
            ..SiteState::default()
        };
        sites.push(st);
    }
    sites
}

/// One row of [`Sim::route_steps`].
#[derive(Debug, Clone, Copy)]
struct RouteStep {
    per_step: u32,
    decode_only_ns: u64,
    full_ns: u64,
    /// A step of `d` decoding streams alone (with or without chunked prefill), for the
    /// router's TPOT estimate.
    decode_ns: u64,
}

/// The latency-aware router's step table of a site's model (see [`Sim::route_steps`]).
fn route_steps(m: &Model, role: SiteRole) -> Vec<RouteStep> {
    let slots = if role == SiteRole::Prefill { 0 } else { m.batch_at_mean() };
    let ctx = f64::from(m.prompt_tokens) + f64::from(m.output_tokens) / 2.0;
    (0..=slots)
        .map(|d| {
            let decode_ns = if d > 0 { m.step_ns(d, f64::from(d) * ctx, &[]) } else { 0 };
            // Without chunked prefill a step of prompts runs alone (decodes wait).
            let (d, per_step) = if m.chunked_prefill {
                (d, m.token_budget.saturating_sub(d.saturating_mul(m.verify_tokens)).max(1))
            } else {
                (0, m.token_budget.max(1))
            };
            let ctx = f64::from(d) * ctx;
            RouteStep {
                per_step,
                decode_only_ns: if d > 0 { m.step_ns(d, ctx, &[]) } else { 0 },
                full_ns: m.step_ns(d, ctx, &[(per_step, 0)]),
                decode_ns,
            }
        })
        .collect()
}

/// Per region, the sites that can serve it (up, with servers, its model, a path), nearest
/// first.
fn candidates(spec: &InferSpec, run: &Run) -> Vec<Vec<(u32, u64)>> {
    let ns = spec.sites.len();
    spec.regions
        .iter()
        .enumerate()
        .map(|(r, reg)| {
            let mut c: Vec<(u32, u64)> = (0..ns)
                .filter(|&s| {
                    !run.site_down[s]
                        && run.servers[s] > 0
                        && spec.sites[s].model == reg.model
                        && spec.sites[s].role != SiteRole::Decode
                        && !run.path_down.contains(&(r, s))
                })
                .filter_map(|s| reg.paths[s].as_ref().map(|p| (s as u32, p.one_way.0)))
                .collect();
            c.sort_by_key(|&(s, ow)| (ow, s));
            c
        })
        .collect()
}

/// Per region, its seeded arrival generator.
fn generators(spec: &InferSpec, run: &Run) -> Vec<Gen> {
    spec.regions
        .iter()
        .enumerate()
        .map(|(r, reg)| {
            let mut rng = Rng::new(run.seed, r as u64 + 1);
            let prof = reg.profile.as_ref().map_or(1.0, |p| p.iter().copied().fold(0.0, f64::max));
            let (burst, on, next_toggle) = match reg.arrivals {
                Arrivals::Poisson => (1.0, false, f64::INFINITY),
                Arrivals::Bursty { factor, on_ns, off_ns } => {
                    let share = on_ns as f64 / (on_ns + off_ns) as f64;
                    let on = rng.uniform() < share;
                    let first = rng.exp(if on { on_ns as f64 } else { off_ns as f64 });
                    (factor, on, first)
                }
            };
            let left = reg.requests.unwrap_or(0);
            Gen { rng, peak_per_ns: reg.rate * 1e-9 * prof * burst, t: 0.0, on, next_toggle, left, u: 0.0 }
        })
        .collect()
}

impl Sim<'_> {
    /// Runs events until none is left, or until the clock passes [`DRAIN_HORIZON_NS`] after
    /// the arrivals end; returns the time of the last event run and whether the horizon
    /// stopped the run.
    fn run_events(&mut self) -> (u64, bool) {
        let horizon = self.run.duration_ns.saturating_add(DRAIN_HORIZON_NS);
        let mut now = 0;
        while let Some(Reverse((t, _, ev))) = self.heap.pop() {
            if t > horizon {
                return (now, true);
            }
            now = t;
            self.events += 1;
            match ev {
                Ev::Arrive(r) => self.arrive(r as usize, t),
                Ev::Reach(q) => self.reach(q, t),
                Ev::Wake(s, v, ver) => {
                    if self.sites[s as usize].servers[v as usize].ver == ver {
                        self.wake(s as usize, v as usize, t);
                    }
                }
                Ev::Fail(s) => self.fail(s as usize, t),
                Ev::Retry(q) => self.send(q, t),
                Ev::KvDone(dir, ver) => {
                    if self.links[dir as usize].ver == ver {
                        self.kv_done(dir as usize, t);
                    }
                }
                Ev::Handoff(q) => self.handoff(q, t),
            }
        }
        (now, false)
    }

    /// Counts the requests still in the system as unserved (a run stopped at its horizon).
    fn unfinished_as_unserved(&mut self) -> u64 {
        let mut live = vec![true; self.reqs.len()];
        for &q in &self.free {
            live[q as usize] = false;
        }
        let mut n = 0;
        for (q, _) in live.iter().enumerate().filter(|(_, l)| **l) {
            self.unserved[self.reqs[q].region as usize] += 1;
            n += 1;
        }
        n
    }
}

/// Nearest-rank quantiles of sorted samples as (value, share at or below it), for a CDF
/// chart: every 2% up to 90%, then ten a decade of the tail (1 - share from 10% down to
/// 0.01%), the exact 99% and 99.9% (each the value [`Percentiles`] reports) and the maximum
/// at 100%. Quantiles that fall on the same sample keep only the highest, so a run of a few
/// hundred requests draws no more points than it has samples: a chart read at 99% gives the
/// p99, not the maximum as 2% steps did (98% held to the maximum).
pub fn cdf_points(sorted: &[u64]) -> Vec<(u64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    // Shares in hundred-thousandths, so 99% and 99.9% are the same f64 as 0.99 and 0.999.
    let mut shares: Vec<u32> = (0..=45).map(|i| i * 2_000).collect();
    shares.extend((1..=40).map(|k| 100_000 - (10_000.0 * 10f64.powf(-f64::from(k) / 10.0)).round() as u32));
    shares.extend([99_000, 99_900, 100_000]);
    shares.sort_unstable();
    shares.dedup();
    let index = |q: f64| ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
    let mut out: Vec<(usize, f64)> = Vec::with_capacity(shares.len());
    for s in shares {
        let q = f64::from(s) / 100_000.0;
        let i = index(q);
        match out.last_mut() {
            Some(last) if last.0 == i => last.1 = q,
            _ => out.push((i, q)),
        }
    }
    out.into_iter().map(|(i, q)| (sorted[i], q)).collect()
}

/// Per region: requests, latency percentiles, attainment of its objective, main site.
fn region_results(spec: &InferSpec, run: &Run, sim: &mut Sim<'_>, end: u64) -> Vec<RegionResult> {
    let nr = spec.regions.len();
    // Tokens over the whole run, drain included: over the arrival window alone an overloaded
    // run reported many times what its servers can produce.
    let secs = end.max(run.duration_ns).max(1) as f64 * 1e-9;
    let mut regions = Vec::with_capacity(nr);
    for (r, reg) in spec.regions.iter().enumerate() {
        let served = sim.ttft[r].len() as u64;
        let obj = reg.ttft_p99.0;
        let ok = sim.ok[r];
        let ttft = Percentiles::of(&mut sim.ttft[r]);
        // Percentiles::of sorted the samples: nearest-rank quantiles (as the percentiles).
        let ttft_cdf = cdf_points(&sim.ttft[r]);
        let tpot = Percentiles::of(&mut sim.tpot[r]);
        let tpot_obj = reg.tpot_p99.map(|t| t.0);
        let e2e = Percentiles::of(&mut sim.e2e[r]);
        let total = sim.arrivals[r];
        let (main, cnt) =
            sim.served_by[r].iter().enumerate().max_by_key(|&(s, c)| (*c, Reverse(s))).map_or((0, 0), |(s, c)| (s, *c));
        let (pre, pre_cnt) = sim.prefilled_by[r]
            .iter()
            .enumerate()
            .max_by_key(|&(s, c)| (*c, Reverse(s)))
            .map_or((0, 0), |(s, c)| (s, *c));
        let first = if pre_cnt > 0 { pre } else { main };
        let first_ow = reg.paths[first].as_ref().map_or(0, |p| p.one_way.0);
        regions.push(RegionResult {
            name: reg.name.clone(),
            requests: total,
            served,
            unserved: sim.unserved[r],
            too_long: sim.too_long[r],
            retried: sim.retried[r],
            ttft,
            ttft_cdf,
            tpot,
            e2e,
            tokens_per_s: sim.tokens[r] as f64 / secs,
            stream_tokens_per_s: if served > 0 { sim.stream_rate_sum[r] / served as f64 } else { 0.0 },
            ttft_p99_objective_ns: obj,
            tpot_p99_objective_ns: tpot_obj,
            attainment: if total > 0 { ok as f64 / total as f64 } else { 1.0 },
            met: sim.unserved[r] == 0
                && served + sim.too_long[r] == total
                && (served > 0 || total == 0)
                && ttft.p99_ns <= obj
                && tpot_obj.is_none_or(|o| tpot.p99_ns <= o),
            main_site: (cnt > 0).then(|| spec.sites[main].name.clone()),
            prefill_site: (pre_cnt > 0).then(|| spec.sites[pre].name.clone()),
            prefill_site_share: {
                let all: u64 = sim.prefilled_by[r].iter().sum();
                if all > 0 {
                    pre_cnt as f64 / all as f64
                } else {
                    0.0
                }
            },
            main_site_share: if served > 0 { cnt as f64 / served as f64 } else { 0.0 },
            rtt_ns: (cnt > 0).then_some(2 * first_ow),
        });
    }
    regions
}

/// Whether a site's servers ran (so shares of their time mean something).
fn denom_ok(servers: u32, end: u64, down: bool) -> bool {
    servers > 0 && end > 0 && !down
}

/// Per site: servers, load and cost; and the cost of the whole run per hour.
fn site_results(spec: &InferSpec, run: &Run, sim: &Sim<'_>, end: u64) -> (Vec<SiteResult>, f64) {
    let mut cost = 0.0;
    let sites = spec
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let st = &sim.sites[i];
            let m = &spec.models[s.model];
            let n = run.servers[i];
            // u128: servers each busy up to the drain horizon overflow a u64 sum.
            let busy: u128 = st.servers.iter().map(|v| u128::from(v.busy_ns)).sum();
            let act: u128 = st.servers.iter().map(|v| v.active_ns).sum();
            let kv: u128 = st.servers.iter().map(|v| v.kv_ns).sum();
            let up = denom_ok(n, end, run.site_down[i]);
            let denom = f64::from(n) * end as f64;
            cost += f64::from(n * m.gpus_per_server) * s.gpu_hour_usd;
            SiteResult {
                name: s.name.clone(),
                tier: s.tier,
                down: run.site_down[i] || run.site_fail_at[i].is_some(),
                gpus: n * m.gpus_per_server,
                servers: n,
                requests: st.requests,
                gpu_utilization: match (&m.cost, up) {
                    (_, false) => 0.0,
                    // Prefill time is counted when a prefill starts, so a run stopped at
                    // its horizon counts the ones in progress whole: capped at the run.
                    (Cost::Rated { decode, .. }, true) => {
                        ((st.prefill_ns as f64 + st.decoded_tokens as f64 / decode * 1e9) / denom).min(1.0)
                    }
                    (Cost::Shape(_), true) => busy as f64 / denom,
                },
                busy: if denom > 0.0 && !run.site_down[i] { busy as f64 / denom } else { 0.0 },
                batch_fill: if denom > 0.0 && !run.site_down[i] {
                    act as f64 / denom / f64::from(m.max_batch)
                } else {
                    0.0
                },
                kv_fill: match (&m.cost, up) {
                    (Cost::Shape(sh), true) => kv as f64 / denom / sh.kv_capacity_tokens as f64,
                    _ => 0.0,
                },
                max_queue: st.max_queue,
                gpu_hour_usd: s.gpu_hour_usd,
            }
        })
        .collect();
    (sites, cost)
}

/// Per DCI direction that carried KV caches: transfers, bytes, load and transfer times.
fn dci_results(spec: &InferSpec, sim: &mut Sim<'_>, end: u64) -> Vec<DciResult> {
    let mut out = Vec::new();
    for (dir, link) in sim.links.iter_mut().enumerate() {
        if link.times.is_empty() {
            continue;
        }
        let d = &spec.dcis[dir / 2];
        let (from, to) = if dir % 2 == 0 { (d.a, d.b) } else { (d.b, d.a) };
        let secs = end.max(1) as f64 * 1e-9;
        out.push(DciResult {
            from: spec.sites[from].name.clone(),
            to: spec.sites[to].name.clone(),
            capacity_bps: d.capacity_bps,
            background: d.background,
            transfers: link.times.len() as u64,
            bytes: link.bytes,
            busy: link.busy_ns as f64 / end.max(1) as f64,
            utilization: link.bytes / secs / d.usable_bytes_per_s(),
            transfer: Percentiles::of(&mut link.times),
        });
    }
    out
}

/// Runs one simulation. Pure and deterministic: the same spec and run give the same report.
pub fn simulate(spec: &InferSpec, run: &Run) -> InferReport {
    let ns = spec.sites.len();
    let nr = spec.regions.len();
    let sites = initial_sites(spec, run);
    let cands = candidates(spec, run);
    let gens = generators(spec, run);
    let mut sim = Sim {
        spec,
        run,
        heap: BinaryHeap::new(),
        seq: 0,
        reqs: Slab::default(),
        free: Vec::new(),
        sites,
        gens,
        ttft: spec
            .regions
            .iter()
            .map(|r| {
                Vec::with_capacity((r.expected_requests(run.duration_ns).min(crate::spec::MAX_REQUESTS) * 1.1) as usize)
            })
            .collect(),
        tpot: spec
            .regions
            .iter()
            .map(|r| {
                Vec::with_capacity((r.expected_requests(run.duration_ns).min(crate::spec::MAX_REQUESTS) * 1.1) as usize)
            })
            .collect(),
        e2e: spec
            .regions
            .iter()
            .map(|r| {
                Vec::with_capacity((r.expected_requests(run.duration_ns).min(crate::spec::MAX_REQUESTS) * 1.1) as usize)
            })
            .collect(),
        ok: vec![0; nr],
        est: spec
            .sites
            .iter()
            .map(|s| {
                let m = &spec.models[s.model];
                let prefill = m.prefill_ns(m.prompt_tokens);
                if s.role == SiteRole::Prefill {
                    (m.prefill_capacity(), prefill, 1.0)
                } else {
                    (m.server_capacity(), prefill, f64::from(m.batch_at_mean()))
                }
            })
            .collect(),
        scratch: Vec::new(),
        route_steps: if run.policy == Policy::LatencyAware {
            spec.sites.iter().map(|x| route_steps(&spec.models[x.model], x.role)).collect()
        } else {
            Vec::new()
        },
        links: (0..2 * spec.dcis.len()).map(|_| LinkState::default()).collect(),
        tokens: vec![0; nr],
        stream_rate_sum: vec![0.0; nr],
        served_by: vec![vec![0; ns]; nr],
        prefilled_by: vec![vec![0; ns]; nr],
        unserved: vec![0; nr],
        too_long: vec![0; nr],
        arrivals: vec![0; nr],
        retried: vec![0; nr],
        cands,
        events: 0,
    };
    for r in 0..nr {
        if let Some(t) = sim.next_arrival(r) {
            sim.push(t, Ev::Arrive(r as u32));
        }
        // Closed-loop users start spread over one request's time alone (as a benchmark's
        // users drift apart), so that they do not stay in lock step for the whole run.
        let users = spec.regions[r].concurrency.unwrap_or(0);
        if users > 0 {
            let m = &spec.models[spec.regions[r].model];
            let ctx = f64::from(m.prompt_tokens) + f64::from(m.output_tokens) / 2.0;
            let alone = m.prefill_ns(m.prompt_tokens) as f64
                + f64::from(m.output_tokens.saturating_sub(1)) * 1e9 / m.stream_rate(users.min(m.max_batch), ctx);
            let window = alone.min(run.duration_ns as f64);
            for _ in 0..users {
                let t = (sim.gens[r].rng.uniform() * window) as u64;
                sim.push(t.min(run.duration_ns.saturating_sub(1)), Ev::Arrive(r as u32));
            }
        }
    }
    for (s, at) in run.site_fail_at.iter().enumerate() {
        if let Some(t) = at {
            sim.push(*t, Ev::Fail(s as u32));
        }
    }
    let (last, horizon) = sim.run_events();
    // Requests still in the system count as unserved: those a run stopped at its horizon
    // left, and any that no event will move (none should be; counted rather than lost).
    let unfinished = sim.unfinished_as_unserved();
    // Only requests left unfinished make a stopped run (a site failure scheduled past the
    // horizon, with nothing left to serve, does not).
    let stopped = horizon && unfinished > 0;
    // A run stopped at its horizon ran until then.
    let now = if stopped { run.duration_ns.saturating_add(DRAIN_HORIZON_NS) } else { last };
    let end = now.max(run.duration_ns);
    for s in 0..ns {
        for v in 0..sim.sites[s].servers.len() {
            sim.advance(s, v, end);
        }
    }
    let regions = region_results(spec, run, &mut sim, end);
    let (sites, cost) = site_results(spec, run, &sim, end);
    let dci = dci_results(spec, &mut sim, end);
    let all_met = regions.iter().all(|r| r.met);
    InferReport {
        scenario: spec.name.clone(),
        policy: run.policy,
        duration_ns: run.duration_ns,
        seed: run.seed,
        requests: regions.iter().map(|r| r.requests).sum(),
        events: sim.events,
        end_ns: now,
        regions,
        sites,
        dci,
        all_met,
        cost_usd_per_hour: cost,
        unfinished,
    }
}

#[cfg(test)]
mod tests {
    use super::{Req, Slab, SLAB_CHUNK};

    /// Slots keep their request across chunk boundaries, and a chunk is allocated once.
    #[test]
    fn the_request_slab_indexes_across_chunks() {
        let mut s = Slab::default();
        let n = 2 * SLAB_CHUNK + 5;
        for i in 0..n {
            s.push(Req { prompt: i as u32, ..Req::default() });
        }
        assert_eq!(s.len(), n);
        assert_eq!(s.chunks.len(), 3);
        assert!(s.chunks.iter().all(|c| c.capacity() == SLAB_CHUNK));
        for i in [0, SLAB_CHUNK - 1, SLAB_CHUNK, 2 * SLAB_CHUNK, n - 1] {
            assert_eq!(s[i].prompt, i as u32);
        }
        s[SLAB_CHUNK].output = 7;
        assert_eq!((s[SLAB_CHUNK].output, s[SLAB_CHUNK - 1].output), (7, 0));
    }

    /// The CDF's points read back the percentiles: the first point at or above 50%, 90%, 99%
    /// and 99.9% is the value `Percentiles` reports (99% was the maximum with 2% steps), the
    /// last is the maximum at 100%, and a small run draws no more points than samples.
    #[test]
    fn cdf_points_read_back_p99_and_the_tail() {
        for n in [1usize, 5, 137, 1_000, 20_000] {
            // A long tail: the last 1% ten times slower.
            let mut v: Vec<u64> =
                (0..n as u64).map(|i| if i * 100 >= 99 * n as u64 { 10_000 + i } else { i }).collect();
            let p = super::Percentiles::of(&mut v);
            let c = super::cdf_points(&v);
            let read = |q: f64| c.iter().find(|x| x.1 >= q).unwrap().0;
            assert_eq!(read(0.5), p.p50_ns, "n {n}");
            assert_eq!(read(0.9), p.p90_ns, "n {n}");
            assert_eq!(read(0.99), p.p99_ns, "n {n}");
            let p999 = v[((0.999 * n as f64).ceil() as usize).clamp(1, n) - 1];
            assert_eq!(read(0.999), p999, "n {n}");
            assert_eq!(*c.last().unwrap(), (p.max_ns, 1.0));
            assert!(c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1), "n {n}");
            assert!(c.len() <= n.max(2) && c.len() <= 90, "n {n}: {}", c.len());
        }
        // 1,000 samples: p99 is sample 990, not the maximum, and 99% is a point of its own.
        let v: Vec<u64> = (1..=1_000).collect();
        let c = super::cdf_points(&v);
        assert!(c.contains(&(990, 0.99)) && c.contains(&(999, 0.999)), "{c:?}");
    }
}
