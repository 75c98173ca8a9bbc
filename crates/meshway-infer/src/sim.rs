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
//!   has a free batch slot (continuous batching: a request joins a running batch at once; the
//!   server with the fewest requests is chosen).
//! - A server prefills one prompt at a time at `prefill-tokens-per-s`; while it prefills, its
//!   decoding streams pause (prefill has priority, as in an engine without chunked prefill).
//!   The first output token exists when the prompt's prefill ends. The remaining tokens are
//!   decoded with the server's `decode-tokens-per-s` shared equally by its decoding streams,
//!   each stream capped at `decode-tokens-per-s-per-request` (processor sharing; KV-cache
//!   memory is not modelled beyond max-batch).
//! - Tokens stream back over the same path: time to first token (TTFT) = first token + one-way
//!   latency - send time; end-to-end = last token + one-way latency - send time.
//! - Events are ordered by (time, sequence) at integer nanoseconds; same seed, same report.

use crate::rng::Rng;
use crate::spec::{token_time, Arrivals, InferSpec, LengthDist, Policy};
use meshway_fabric::infer_config::SiteTier;
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

/// Latency percentiles in nanoseconds (nearest rank).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub mean_ns: u64,
    pub max_ns: u64,
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
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionResult {
    pub name: String,
    pub requests: u64,
    /// Requests no healthy site could take (counted as misses).
    pub unserved: u64,
    /// Requests sent again because their site failed under them.
    pub retried: u64,
    pub ttft: Percentiles,
    pub e2e: Percentiles,
    /// Output tokens delivered per second of the run.
    pub tokens_per_s: f64,
    /// Mean decode rate one user sees after the first token.
    pub stream_tokens_per_s: f64,
    pub ttft_p99_objective_ns: u64,
    /// Share of requests whose TTFT met the objective.
    pub attainment: f64,
    /// p99 TTFT within the objective and every request served.
    pub met: bool,
    /// The site that served most of the region's requests, and its share.
    pub main_site: String,
    pub main_site_share: f64,
    /// Round trip to the main site without queueing or compute.
    pub rtt_ns: u64,
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
    pub max_queue: u64,
    pub gpu_hour_usd: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InferReport {
    pub scenario: String,
    pub policy: Policy,
    pub duration_ns: u64,
    pub seed: u64,
    pub requests: u64,
    pub events: u64,
    pub regions: Vec<RegionResult>,
    pub sites: Vec<SiteResult>,
    pub all_met: bool,
    pub cost_usd_per_hour: f64,
}

impl InferReport {
    /// The worst miss: max over regions of p99 TTFT - objective (negative: slack).
    pub fn worst_margin_ns(&self) -> i64 {
        self.regions
            .iter()
            .map(|r| if r.unserved > 0 { i64::MAX } else { r.ttft.p99_ns as i64 - r.ttft_p99_objective_ns as i64 })
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
}

#[derive(Debug, Clone, Copy, Default)]
struct Req {
    region: u32,
    site: u32,
    server: u32,
    prompt: u32,
    output: u32,
    send: u64,
    first: u64,
}

#[derive(Debug, Default)]
struct Server {
    active: u32,
    pending: VecDeque<u32>,
    prefill: Option<(u32, u64)>,
    /// (virtual finish as f64 bits, request): non-negative f64 bits order like the values.
    decoding: BinaryHeap<Reverse<(u64, u32)>>,
    v: f64,
    last: u64,
    ver: u32,
    busy_ns: u64,
    active_ns: u128,
}

#[derive(Debug, Default)]
struct SiteState {
    servers: Vec<Server>,
    buckets: Vec<Vec<u32>>,
    slot: Vec<u32>,
    queue: VecDeque<u32>,
    assigned: u64,
    down: bool,
    requests: u64,
    max_queue: u64,
    one_way: Vec<u64>,
    /// Work done: prefill time and decoded tokens (for the capacity-weighted utilization).
    prefill_ns: u64,
    decoded_tokens: u64,
}

impl SiteState {
    fn pick(&self) -> Option<u32> {
        self.buckets.iter().find_map(|b| b.last().copied())
    }
    fn set_active(&mut self, v: u32, to: u32) {
        let from = self.servers[v as usize].active;
        let i = self.slot[v as usize] as usize;
        if let Some(b) = self.buckets.get_mut(from as usize) {
            b.swap_remove(i);
            if let Some(&moved) = b.get(i) {
                self.slot[moved as usize] = i as u32;
            }
        }
        self.servers[v as usize].active = to;
        // A full server (active = max batch) sits in no bucket.
        if let Some(b) = self.buckets.get_mut(to as usize) {
            self.slot[v as usize] = b.len() as u32;
            b.push(v);
        } else {
            self.slot[v as usize] = u32::MAX;
        }
    }
}

struct Gen {
    rng: Rng,
    peak_per_ns: f64,
    t: f64,
    on: bool,
    next_toggle: f64,
}

struct Sim<'a> {
    spec: &'a InferSpec,
    run: &'a Run,
    heap: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    reqs: Vec<Req>,
    free: Vec<u32>,
    sites: Vec<SiteState>,
    gens: Vec<Gen>,
    ttft: Vec<Vec<u64>>,
    e2e: Vec<Vec<u64>>,
    tokens: Vec<u64>,
    stream_rate_sum: Vec<f64>,
    served_by: Vec<Vec<u64>>,
    unserved: Vec<u64>,
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

    fn route(&self, r: usize) -> Option<(u32, u64)> {
        let spec = self.spec;
        let mut c = self.cands[r].iter().filter(|x| !self.sites[x.0 as usize].down);
        match self.run.policy {
            Policy::Nearest => c.next().copied(),
            Policy::LeastLoaded => c
                .min_by(|a, b| {
                    let load = |x: &(u32, u64)| {
                        let s = &spec.sites[x.0 as usize];
                        let slots =
                            f64::from(self.run.servers[x.0 as usize]) * f64::from(spec.models[s.model].max_batch);
                        self.sites[x.0 as usize].assigned as f64 / slots
                    };
                    load(a).total_cmp(&load(b))
                })
                .copied(),
            Policy::LatencyAware => c
                .min_by(|a, b| {
                    let est = |x: &(u32, u64)| {
                        let s = &spec.sites[x.0 as usize];
                        let m = &spec.models[s.model];
                        let n = f64::from(self.run.servers[x.0 as usize]);
                        let slots = n * f64::from(m.max_batch);
                        let waiting = (self.sites[x.0 as usize].assigned as f64 - slots).max(0.0);
                        2.0 * x.1 as f64
                            + m.prefill_ns(m.prompt_tokens) as f64
                            + waiting / (n * m.server_capacity()) * 1e9
                    };
                    est(a).total_cmp(&est(b))
                })
                .copied(),
        }
    }

    fn arrive(&mut self, r: usize, now: u64) {
        let m = &self.spec.models[self.spec.regions[r].model];
        let (pm, om, dist) = (m.prompt_tokens, m.output_tokens, m.length_dist);
        let g = &mut self.gens[r];
        let prompt = sample_len(&mut g.rng, pm, dist);
        let output = sample_len(&mut g.rng, om, dist);
        if let Some(t) = self.next_arrival(r) {
            self.push(t, Ev::Arrive(r as u32));
        }
        if self.cands[r].is_empty() {
            self.unserved[r] += 1;
            return;
        }
        let req = Req { region: r as u32, site: 0, server: 0, prompt, output, send: now, first: 0 };
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

    /// Routes request `q` (new or sent again) and puts it on its way.
    fn send(&mut self, q: u32, now: u64) {
        let r = self.reqs[q as usize].region as usize;
        let Some((s, ow)) = self.route(r) else {
            self.unserved[r] += 1;
            self.free.push(q);
            return;
        };
        self.reqs[q as usize].site = s;
        self.sites[s as usize].assigned += 1;
        self.push(now + ow, Ev::Reach(q));
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
            lost.extend(srv.prefill.take().map(|(q, _)| q));
            lost.extend(srv.decoding.drain().map(|Reverse((_, q))| q));
            srv.active = 0;
            srv.ver = srv.ver.wrapping_add(1);
        }
        for b in &mut site.buckets {
            b.clear();
        }
        site.assigned -= lost.len() as u64;
        lost.sort_unstable();
        for q in lost {
            self.retry_later(q, now);
        }
    }

    fn retry_later(&mut self, q: u32, now: u64) {
        self.retried[self.reqs[q as usize].region as usize] += 1;
        self.push(now + self.run.failover_detect_ns, Ev::Retry(q));
    }

    fn advance(&mut self, s: usize, v: usize, now: u64) {
        let model = &self.spec.models[self.spec.sites[s].model];
        let srv = &mut self.sites[s].servers[v];
        let dt = now.saturating_sub(srv.last);
        if dt > 0 {
            let decoding = srv.prefill.is_none() && !srv.decoding.is_empty();
            if decoding {
                srv.v += model.stream_rate(srv.decoding.len()) * dt as f64 * 1e-9;
            }
            if srv.prefill.is_some() || decoding {
                srv.busy_ns += dt;
            }
            srv.active_ns += u128::from(srv.active) * u128::from(dt);
            srv.last = now;
        }
    }

    fn schedule(&mut self, s: usize, v: usize, now: u64) {
        let model = &self.spec.models[self.spec.sites[s].model];
        let site = &mut self.sites[s];
        let srv = &mut site.servers[v];
        srv.ver = srv.ver.wrapping_add(1);
        if srv.prefill.is_none() {
            if let Some(q) = srv.pending.pop_front() {
                let p = model.prefill_ns(self.reqs[q as usize].prompt);
                srv.prefill = Some((q, now + p));
                site.prefill_ns += p;
            }
        }
        let next = if let Some((_, end)) = srv.prefill {
            Some(end)
        } else {
            srv.decoding.peek().map(|Reverse((bits, _))| {
                let left = f64::from_bits(*bits) - srv.v;
                now + token_time(left, model.stream_rate(srv.decoding.len())).max(1)
            })
        };
        let ver = srv.ver;
        if let Some(t) = next {
            self.push(t, Ev::Wake(s as u32, v as u32, ver));
        }
    }

    fn admit(&mut self, s: usize, now: u64) {
        while !self.sites[s].queue.is_empty() {
            let Some(v) = self.sites[s].pick() else { break };
            let q = self.sites[s].queue.pop_front().unwrap_or_default();
            self.advance(s, v as usize, now);
            let site = &mut self.sites[s];
            let a = site.servers[v as usize].active;
            site.set_active(v, a + 1);
            site.servers[v as usize].pending.push_back(q);
            self.reqs[q as usize].server = v;
            if site.servers[v as usize].prefill.is_none() {
                self.schedule(s, v as usize, now);
            }
        }
    }

    fn complete(&mut self, q: u32, now: u64) {
        let req = self.reqs[q as usize];
        let (r, s) = (req.region as usize, req.site as usize);
        let ow = self.sites[s].one_way[r];
        let ttft = req.first + ow - req.send;
        let e2e = now + ow - req.send;
        self.ttft[r].push(ttft);
        self.e2e[r].push(e2e);
        self.tokens[r] += u64::from(req.output);
        if req.output > 1 && e2e > ttft {
            self.stream_rate_sum[r] += f64::from(req.output - 1) / ((e2e - ttft) as f64 * 1e-9);
        }
        self.served_by[r][s] += 1;
        let site = &mut self.sites[s];
        site.assigned -= 1;
        site.requests += 1;
        site.decoded_tokens += u64::from(req.output.saturating_sub(1));
        let a = site.servers[req.server as usize].active;
        site.set_active(req.server, a - 1);
        self.free.push(q);
    }

    fn wake(&mut self, s: usize, v: usize, now: u64) {
        self.advance(s, v, now);
        if let Some((q, end)) = self.sites[s].servers[v].prefill {
            if end <= now {
                self.sites[s].servers[v].prefill = None;
                self.reqs[q as usize].first = now;
                let out = self.reqs[q as usize].output;
                if out <= 1 {
                    self.complete(q, now);
                } else {
                    let srv = &mut self.sites[s].servers[v];
                    if srv.decoding.is_empty() {
                        srv.v = 0.0;
                    }
                    let vf = srv.v + f64::from(out - 1);
                    srv.decoding.push(Reverse((vf.to_bits(), q)));
                }
            }
        }
        loop {
            let srv = &mut self.sites[s].servers[v];
            let Some(&Reverse((bits, q))) = srv.decoding.peek() else { break };
            let vf = f64::from_bits(bits);
            if vf - srv.v > 1e-6 + 1e-12 * vf {
                break;
            }
            srv.decoding.pop();
            self.complete(q, now);
        }
        self.schedule(s, v, now);
        self.admit(s, now);
    }

    fn reach(&mut self, q: u32, now: u64) {
        let s = self.reqs[q as usize].site as usize;
        if self.sites[s].down {
            self.sites[s].assigned -= 1;
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
    for (i, s) in spec.sites.iter().enumerate() {
        let b = spec.models[s.model].max_batch as usize;
        let n = if run.site_down[i] { 0 } else { run.servers[i] };
        let mut st = SiteState {
            servers: (0..n).map(|_| Server::default()).collect(),
            buckets: vec![Vec::new(); b],
            slot: vec![0; n as usize],
            one_way: spec.regions.iter().map(|r| r.paths[i].as_ref().map_or(0, |p| p.one_way.0)).collect(),
            ..SiteState::default()
        };
        for v in 0..n {
            st.slot[v as usize] = st.buckets[0].len() as u32;
            st.buckets[0].push(v);
        }
        sites.push(st);
    }
    sites
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
            Gen { rng, peak_per_ns: reg.rate * 1e-9 * prof * burst, t: 0.0, on, next_toggle }
        })
        .collect()
}

impl Sim<'_> {
    /// Runs events until none is left; returns the time of the last.
    fn run_events(&mut self) -> u64 {
        let mut now = 0;
        while let Some(Reverse((t, _, ev))) = self.heap.pop() {
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
            }
        }
        now
    }
}

/// Per region: requests, latency percentiles, attainment of its objective, main site.
fn region_results(spec: &InferSpec, run: &Run, sim: &mut Sim<'_>) -> Vec<RegionResult> {
    let nr = spec.regions.len();
    let secs = run.duration_ns as f64 * 1e-9;
    let mut regions = Vec::with_capacity(nr);
    for (r, reg) in spec.regions.iter().enumerate() {
        let served = sim.ttft[r].len() as u64;
        let obj = reg.ttft_p99.0;
        let ok = sim.ttft[r].iter().filter(|&&x| x <= obj).count() as u64;
        let ttft = Percentiles::of(&mut sim.ttft[r]);
        let e2e = Percentiles::of(&mut sim.e2e[r]);
        let total = served + sim.unserved[r];
        let (main, cnt) =
            sim.served_by[r].iter().enumerate().max_by_key(|&(s, c)| (*c, Reverse(s))).map_or((0, 0), |(s, c)| (s, *c));
        let main_ow = reg.paths[main].as_ref().map_or(0, |p| p.one_way.0);
        regions.push(RegionResult {
            name: reg.name.clone(),
            requests: total,
            unserved: sim.unserved[r],
            retried: sim.retried[r],
            ttft,
            e2e,
            tokens_per_s: sim.tokens[r] as f64 / secs,
            stream_tokens_per_s: if served > 0 { sim.stream_rate_sum[r] / served as f64 } else { 0.0 },
            ttft_p99_objective_ns: obj,
            attainment: if total > 0 { ok as f64 / total as f64 } else { 1.0 },
            met: sim.unserved[r] == 0 && ttft.p99_ns <= obj,
            main_site: if cnt > 0 { spec.sites[main].name.clone() } else { String::new() },
            main_site_share: if served > 0 { cnt as f64 / served as f64 } else { 0.0 },
            rtt_ns: if cnt > 0 { 2 * main_ow } else { 0 },
        });
    }
    regions
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
            let busy: u64 = st.servers.iter().map(|v| v.busy_ns).sum();
            let act: u128 = st.servers.iter().map(|v| v.active_ns).sum();
            let denom = f64::from(n) * end as f64;
            cost += f64::from(n * m.gpus_per_server) * s.gpu_hour_usd;
            SiteResult {
                name: s.name.clone(),
                tier: s.tier,
                down: run.site_down[i] || run.site_fail_at[i].is_some(),
                gpus: n * m.gpus_per_server,
                servers: n,
                requests: st.requests,
                gpu_utilization: if denom > 0.0 && !run.site_down[i] {
                    (st.prefill_ns as f64 + st.decoded_tokens as f64 / m.decode_tokens_per_s * 1e9) / denom
                } else {
                    0.0
                },
                busy: if denom > 0.0 && !run.site_down[i] { busy as f64 / denom } else { 0.0 },
                batch_fill: if denom > 0.0 && !run.site_down[i] {
                    act as f64 / denom / f64::from(m.max_batch)
                } else {
                    0.0
                },
                max_queue: st.max_queue,
                gpu_hour_usd: s.gpu_hour_usd,
            }
        })
        .collect();
    (sites, cost)
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
        reqs: Vec::new(),
        free: Vec::new(),
        sites,
        gens,
        ttft: spec
            .regions
            .iter()
            .map(|r| Vec::with_capacity((r.rate * run.duration_ns as f64 * 1.1e-9) as usize))
            .collect(),
        e2e: spec
            .regions
            .iter()
            .map(|r| Vec::with_capacity((r.rate * run.duration_ns as f64 * 1.1e-9) as usize))
            .collect(),
        tokens: vec![0; nr],
        stream_rate_sum: vec![0.0; nr],
        served_by: vec![vec![0; ns]; nr],
        unserved: vec![0; nr],
        retried: vec![0; nr],
        cands,
        events: 0,
    };
    for r in 0..nr {
        if let Some(t) = sim.next_arrival(r) {
            sim.push(t, Ev::Arrive(r as u32));
        }
    }
    for (s, at) in run.site_fail_at.iter().enumerate() {
        if let Some(t) = at {
            sim.push(*t, Ev::Fail(s as u32));
        }
    }
    let now = sim.run_events();
    let end = now.max(run.duration_ns);
    for s in 0..ns {
        for v in 0..sim.sites[s].servers.len() {
            sim.advance(s, v, end);
        }
    }
    let regions = region_results(spec, run, &mut sim);
    let (sites, cost) = site_results(spec, run, &sim, end);
    let all_met = regions.iter().all(|r| r.met);
    InferReport {
        scenario: spec.name.clone(),
        policy: run.policy,
        duration_ns: run.duration_ns,
        seed: run.seed,
        requests: regions.iter().map(|r| r.requests).sum(),
        events: sim.events,
        regions,
        sites,
        all_met,
        cost_usd_per_hour: cost,
    }
}
