//! Validation of the inference part of a scenario into a runnable [`InferSpec`].
//! Errors are [`FabricError::Invalid`] naming the file, line and key, like the planner's.

use meshway_fabric::catalog::{on_globe, InferenceDefaults, Place};
use meshway_fabric::config::SiteConfig;
use meshway_fabric::error::closest;
use meshway_fabric::infer_config::{
    ArrivalsConfig, Continent, LengthDistConfig, ModelConfig, PolicyConfig, PrecisionConfig, RegionConfig, SiteRole,
    SiteTier,
};
use meshway_fabric::scenario::Ctx;
use meshway_fabric::{Catalog, FabricError, Scenario};
use meshway_units::{Meters, Nanos};
use serde::Serialize;

/// How each request picks a site among the reachable, healthy sites serving its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Lowest network latency.
    Nearest,
    /// Fewest requests in the site per batch slot (global knowledge, no staleness).
    LeastLoaded,
    /// Lowest estimated time to first token (round trip + prefill + estimated queueing)
    /// among the sites whose estimates keep the region's objectives, TPOT included.
    LatencyAware,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Nearest => "nearest",
            Policy::LeastLoaded => "least-loaded",
            Policy::LatencyAware => "latency-aware",
        }
    }
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "nearest" => Some(Policy::Nearest),
            "least-loaded" => Some(Policy::LeastLoaded),
            "latency-aware" => Some(Policy::LatencyAware),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LengthDist {
    Fixed,
    Exponential,
    Uniform,
}

/// How long a server's steps take.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Cost {
    /// Measured rates of one server: a step prefills one prompt at `prefill` tokens/s, or
    /// decodes one token of each of its k streams in max(k / `decode`, 1 / `cap`).
    Rated {
        prefill: f64,
        decode: f64,
        #[serde(skip)]
        cap: f64,
    },
    /// From the model's shape on its GPUs (a roofline per step).
    Shape(Box<Shape>),
}

/// Time of work that needs `compute` seconds of FLOPs and `memory` seconds of reads: with a
/// knee p, (compute^p + memory^p)^(1/p) (kernels overlap the two imperfectly near the ridge
/// point; p = 1 is their sum, p = inf their max); without one, the sharp roofline's max.
pub fn roofline(compute: f64, memory: f64, knee: Option<f64>) -> f64 {
    match knee {
        Some(p) if compute > 0.0 && memory > 0.0 && compute.max(memory).is_finite() => {
            // Scaled by the larger term so the powers cannot overflow; p = inf gives the max.
            let big = compute.max(memory);
            big * ((compute / big).powf(p) + (memory / big).powf(p)).powf(1.0 / p)
        }
        _ => compute.max(memory),
    }
}

/// A step's time from the model's shape: fixed overhead + the matrix work's roofline
/// (FLOPs at the GPUs' measured matmul rate x efficiency against weight bytes at memory bandwidth x
/// efficiency) + attention's roofline (its FLOPs against the KV-cache bytes it reads) + two
/// tensor-parallel all-reduces per layer.
#[derive(Debug, Clone, Serialize)]
pub struct Shape {
    pub llm: String,
    pub gpu: String,
    pub precision: &'static str,
    pub kv_precision: &'static str,
    pub layers: u32,
    /// Query width (heads x head dim), for attention FLOPs.
    pub q_dim: f64,
    pub hidden: f64,
    pub params: f64,
    pub active_params: f64,
    pub weight_bytes: f64,
    pub kv_bytes_per_token: f64,
    /// KV-cache bytes a server holds per token over `kv_bytes_per_token`: 1, or more when
    /// tensor parallelism is wider than the KV heads and each GPU keeps a copy of the head
    /// it attends with (GPUs x ceil(KV heads / GPUs) / KV heads).
    pub kv_replication: f64,
    pub gpus: u32,
    /// FLOP/s of the server: GPUs x measured matmul rate (else datasheet peak) x efficiency.
    pub flops: f64,
    /// The same for attention: FP8 where the GPU has FP8 and both the weights (whose format
    /// the activations are quantized to) and the KV cache are FP8 or FP4 (an FP4 cache is
    /// widened to FP8 to attend), else BF16; so FP4 weights do not speed attention up.
    pub attn_flops: f64,
    /// Bytes/s of the server: GPUs x bandwidth x efficiency.
    pub bytes_per_s: f64,
    /// Bytes/s of one GPU's NVLink (all-reduce payload), 0 for one GPU.
    pub nvlink_bytes_per_s: f64,
    /// Ring all-reduce latency per log2 of the GPUs (`[serving] allreduce-latency`).
    pub allreduce_ns: u64,
    /// One-shot all-reduce latency (`[serving] allreduce-oneshot-latency`), if any.
    pub oneshot_ns: Option<u64>,
    pub step_overhead_ns: u64,
    /// Share of the matmul rate a mixture of experts' grouped expert GEMMs reach (1 for a dense
    /// model); its weight reads are not slowed.
    pub moe_efficiency: f64,
    /// The roofline's corner for the matrix work (`[serving] roofline-knee`): None is the max.
    pub knee: Option<f64>,
    /// KV-cache tokens a server holds: (GPUs x (memory - reserve) - weights) x utilization /
    /// bytes per token.
    pub kv_capacity_tokens: u64,
}

impl Shape {
    /// Weight bytes a step reads when it processes `tokens` tokens: a dense model reads all;
    /// a mixture of experts reads its active share for one token and, treating every expert
    /// parameter as routed independently, more of the rest as tokens grow.
    pub fn weight_read(&self, tokens: f64) -> f64 {
        if self.active_params >= self.params || tokens <= 0.0 {
            return self.weight_bytes * (self.active_params / self.params);
        }
        let a = self.active_params / self.params;
        self.weight_bytes * (1.0 - (1.0 - a).powf(tokens)).max(a)
    }

    /// One step: `decode` streams attending over `decode_ctx` tokens in all, `verify` tokens
    /// each (1, or draft + 1 with speculative decoding), and prefill chunks of (tokens,
    /// tokens already in the cache before the chunk).
    pub fn step_ns(&self, decode: u32, decode_ctx: f64, verify: u32, chunks: &[(u32, u32)]) -> u64 {
        let dec_tokens = f64::from(decode) * f64::from(verify);
        let pre_tokens: f64 = chunks.iter().map(|&(c, _)| f64::from(c)).sum();
        let tokens = dec_tokens + pre_tokens;
        if tokens <= 0.0 {
            return 0;
        }
        let l = f64::from(self.layers);
        // Matrix work: 2 FLOPs per multiply-add, 2 x active params per token, against the
        // weights it reads. Attention: 4 x layers x q_dim FLOPs per (query, key) pair against
        // the KV cache it reads. Each is its own roofline (they run as separate kernels). A
        // mixture of experts' grouped GEMMs reach `moe_efficiency` of the matmul rate; its
        // weight reads stream at the HBM rate like a dense model's.
        let compute = 2.0 * self.active_params * tokens / self.flops / self.moe_efficiency;
        let memory = self.weight_read(tokens) / self.bytes_per_s;
        let gemm = roofline(compute, memory, self.knee);
        let mut attn_flops = 4.0 * l * self.q_dim * decode_ctx * f64::from(verify);
        let mut kv_read = decode_ctx;
        for &(c, prior) in chunks {
            let (c, p) = (f64::from(c), f64::from(prior));
            attn_flops += 4.0 * l * self.q_dim * (c * p + c * c / 2.0);
            kv_read += p + c;
        }
        let attn = (attn_flops / self.attn_flops)
            .max(kv_read * self.kv_bytes_per_token * self.kv_replication / self.bytes_per_s);
        let roof = gemm + attn;
        let comm = if self.gpus > 1 {
            let (n, bytes) = (f64::from(self.gpus), tokens * self.hidden * 2.0);
            // Ring (NCCL's, or an engine's two-shot): each GPU sends 2 (n-1)/n of the
            // activations; its latency grows with the number of GPUs as log2 (a two-GPU
            // all-reduce is one exchange; eight take three rounds), a fitted figure.
            let ring =
                self.allreduce_ns as f64 * 1e-9 * n.log2() + 2.0 * bytes * (n - 1.0) / n / self.nvlink_bytes_per_s;
            // One-shot: each GPU reads all n-1 peers' activations at once, one latency.
            let once = self
                .oneshot_ns
                .map_or(f64::INFINITY, |a| a as f64 * 1e-9 + bytes * (n - 1.0) / self.nvlink_bytes_per_s);
            2.0 * l * ring.min(once)
        } else {
            0.0
        };
        self.step_overhead_ns.saturating_add(((roof + comm) * 1e9).ceil() as u64)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub name: String,
    pub gpus_per_server: u32,
    pub cost: Cost,
    pub max_batch: u32,
    /// Prompt chunks share steps with decoding (else a step prefills whole prompts alone).
    pub chunked_prefill: bool,
    /// Tokens one step may process; a rated model prefills one prompt per step.
    pub token_budget: u32,
    /// KV-cache tokens one server holds (u64::MAX: not modelled, rated).
    pub kv_capacity_tokens: u64,
    pub prefix_cache_hit: f64,
    /// Tokens one decode step yields per stream (1, or the speculative expectation).
    pub tokens_per_step: f64,
    /// Tokens one decode step processes per stream (1, or draft + 1).
    pub verify_tokens: u32,
    pub request_overhead_ns: u64,
    /// Mean prompt and output lengths (of `lengths` when given).
    pub prompt_tokens: u32,
    pub output_tokens: u32,
    pub length_dist: LengthDist,
    /// Empirical (prompt, output) samples; one is drawn per request.
    #[serde(skip)]
    pub lengths: Option<std::sync::Arc<Vec<(u32, u32)>>>,
    /// `prefill_ns(prompt_tokens)`, kept once computed: capacities ask for it in every
    /// subset `place` tries, and with a small token budget it is thousands of steps.
    #[serde(skip)]
    pub mean_prefill: std::sync::OnceLock<u64>,
    /// The model's context in tokens (prompt + output), from the catalog's `llm`; a request
    /// longer than it is refused, as serving engines refuse one.
    #[serde(skip)]
    pub context: Option<u32>,
}

/// `tokens` at `per_s` tokens per second, rounded up to the next nanosecond (with a
/// picosecond of tolerance for floating-point error, so exact ratios stay exact).
pub fn token_time(tokens: f64, per_s: f64) -> u64 {
    if tokens <= 0.0 {
        return 0;
    }
    let ns = tokens * 1e9 / per_s;
    (ns - 1e-3).ceil().max(0.0) as u64
}

impl Model {
    /// Prompt tokens a request must prefill (those not in the prefix cache; at least one).
    pub fn uncached(&self, prompt: u32) -> u32 {
        ((f64::from(prompt) * (1.0 - self.prefix_cache_hit)).ceil() as u32).clamp(1, prompt.max(1))
    }
    /// KV-cache tokens a request reserves when admitted (its uncached prompt and its output;
    /// cached prefixes are shared).
    pub fn kv_reserve(&self, prompt: u32, output: u32) -> u64 {
        u64::from(self.uncached(prompt)) + u64::from(output)
    }
    /// Whether no server can take a request of these lengths: longer than the model's
    /// context, or reserving more KV cache than an empty server holds.
    pub fn too_long(&self, prompt: u32, output: u32) -> bool {
        self.context.is_some_and(|c| u64::from(prompt) + u64::from(output) > u64::from(c))
            || self.kv_reserve(prompt, output) > self.kv_capacity_tokens
    }
    /// One step's time: `decode` streams over `decode_ctx` context tokens, prefill `chunks`.
    pub fn step_ns(&self, decode: u32, decode_ctx: f64, chunks: &[(u32, u32)]) -> u64 {
        match &self.cost {
            Cost::Rated { prefill, decode: d, cap } => {
                let pre: u32 = chunks.iter().map(|c| c.0).sum();
                let dec = if decode > 0 { token_time(f64::from(decode), *d).max(token_time(1.0, *cap)) } else { 0 };
                token_time(f64::from(pre), *prefill) + dec
            }
            Cost::Shape(s) => s.step_ns(decode, decode_ctx, self.verify_tokens, chunks),
        }
    }
    /// Prefill time of a prompt of `tokens` on an otherwise idle server (its chunks one after
    /// another), plus the request overhead.
    pub fn prefill_ns(&self, tokens: u32) -> u64 {
        if tokens == self.prompt_tokens {
            return *self.mean_prefill.get_or_init(|| self.prefill_uncached_ns(tokens));
        }
        self.prefill_uncached_ns(tokens)
    }
    fn prefill_uncached_ns(&self, tokens: u32) -> u64 {
        let left = self.uncached(tokens);
        match &self.cost {
            Cost::Rated { .. } => self.request_overhead_ns + self.step_ns(0, 0.0, &[(left, 0)]),
            Cost::Shape(_) => {
                let (mut done, mut t) = (tokens - left, self.request_overhead_ns);
                let budget = if self.chunked_prefill { self.token_budget } else { u32::MAX };
                while done < tokens {
                    let c = (tokens - done).min(budget);
                    t = t.saturating_add(self.step_ns(0, 0.0, &[(c, done)]));
                    done += c;
                }
                t
            }
        }
    }
    /// Time a lone request at the mean lengths spends on an idle server: its prefill (with
    /// the request overhead) and its decode after the first token, in ns.
    pub fn lone_ns(&self) -> f64 {
        let ctx = f64::from(self.prompt_tokens) + f64::from(self.output_tokens) / 2.0;
        let decode = f64::from(self.output_tokens.saturating_sub(1)) * 1e9 / self.stream_rate(1, ctx);
        self.prefill_ns(self.prompt_tokens) as f64 + decode
    }
    /// Decode rate of each of `k` streams sharing a server with mean context `ctx`.
    pub fn stream_rate(&self, k: u32, ctx: f64) -> f64 {
        let k = k.max(1);
        self.tokens_per_step * 1e9 / self.step_ns(k, f64::from(k) * ctx, &[]) as f64
    }
    /// Requests at once one server holds at mean lengths (batch and KV-cache limits).
    pub fn batch_at_mean(&self) -> u32 {
        let per = self.kv_reserve(self.prompt_tokens, self.output_tokens).max(1);
        let kv = (self.kv_capacity_tokens / per).min(u64::from(self.max_batch)) as u32;
        kv.max(1)
    }
    /// Requests per second one server completes at mean lengths with `batch` requests
    /// running: each step decodes one token for each and prefills as many prompt tokens as
    /// requests finish per step (a rated model prefills alone, then decodes).
    pub fn throughput_at(&self, batch: u32) -> f64 {
        let (p, o) = (self.prompt_tokens, self.output_tokens.max(1));
        let steps = (f64::from(o - 1) / self.tokens_per_step).max(1.0);
        match &self.cost {
            Cost::Rated { prefill, decode, cap } => {
                let decode = decode.min(f64::from(batch) * cap);
                1.0 / (f64::from(self.uncached(p)) / prefill + f64::from(o - 1) / decode)
            }
            Cost::Shape(_) => {
                let per_step = (f64::from(batch) * f64::from(self.uncached(p)) / steps).round() as u32;
                let ctx = f64::from(batch) * (f64::from(p) + f64::from(o) / 2.0);
                let t = self.step_ns(batch, ctx, &[(per_step, 0)]) as f64 * 1e-9;
                f64::from(batch) / (steps * t)
            }
        }
    }
    /// Requests per second one server completes with its batch full (the KV-cache limit at
    /// mean lengths), or the largest batch whose step time keeps `tpot` when given.
    pub fn server_capacity_within(&self, tpot: Option<u64>) -> f64 {
        let full = self.batch_at_mean();
        let Some(limit) = tpot else { return self.throughput_at(full) };
        let (p, o) = (f64::from(self.prompt_tokens), f64::from(self.output_tokens));
        let fits = |b: u32| {
            let per_tok = 1e9 / self.stream_rate(b, p + o / 2.0);
            per_tok <= limit as f64
        };
        let mut best = 1;
        let (mut lo, mut hi) = (1, full);
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                best = mid;
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        self.throughput_at(best)
    }
    /// Prompts per second a prefill-only server prefills at mean length (its steps one after
    /// another, without the request overhead, which is latency and not work).
    pub fn prefill_capacity(&self) -> f64 {
        let t = self.prefill_ns(self.prompt_tokens).saturating_sub(self.request_overhead_ns).max(1);
        1e9 / t as f64
    }
    /// Requests per second a decode-only server completes at mean lengths: the batch its KV
    /// cache holds (prompt and output), cut to the largest whose step keeps `tpot`.
    pub fn decode_capacity_within(&self, tpot: Option<u64>) -> f64 {
        let (p, o) = (self.prompt_tokens, self.output_tokens.max(2));
        let per = (u64::from(p) + u64::from(o)).max(1);
        let full = ((self.kv_capacity_tokens / per).min(u64::from(self.max_batch)) as u32).max(1);
        let ctx = f64::from(p) + f64::from(o) / 2.0;
        let mut best = 1;
        for b in 1..=full {
            if tpot.is_none_or(|t| 1e9 / self.stream_rate(b, ctx) <= t as f64) {
                best = b;
            } else {
                break;
            }
        }
        f64::from(best) * self.stream_rate(best, ctx) / f64::from(o - 1)
    }
    /// Requests per second one server completes with its batch full.
    pub fn server_capacity(&self) -> f64 {
        self.server_capacity_within(None)
    }
    /// The prompt length at the 99th percentile of the length distribution.
    pub fn prompt_p99(&self) -> u32 {
        if let Some(l) = &self.lengths {
            let mut p: Vec<u32> = l.iter().map(|x| x.0).collect();
            p.sort_unstable();
            return p[((0.99 * p.len() as f64).ceil() as usize).clamp(1, p.len()) - 1];
        }
        let m = f64::from(self.prompt_tokens);
        match self.length_dist {
            LengthDist::Fixed => self.prompt_tokens,
            LengthDist::Exponential => (m * 100f64.ln()).round().max(1.0) as u32,
            LengthDist::Uniform => (1.0 + 0.99 * (2.0 * m - 1.0)).floor() as u32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Arrivals {
    Poisson,
    /// On/off Markov-modulated Poisson: `factor` x rate while on, the rest while off, so the
    /// long-run mean stays `rate`.
    Bursty {
        factor: f64,
        on_ns: u64,
        off_ns: u64,
    },
}

/// A region's network path to one site.
#[derive(Debug, Clone, Serialize)]
pub struct Path {
    pub fiber: Meters,
    pub hops: u32,
    /// Last mile + fiber propagation + hops x per-hop latency, one way.
    pub one_way: Nanos,
}

#[derive(Debug, Clone, Serialize)]
pub struct Region {
    pub name: String,
    /// Mean requests per second (0 for a closed loop).
    pub rate: f64,
    /// Closed loop: users each sending again as soon as their last request has streamed back.
    pub concurrency: Option<u32>,
    /// Open loop: arrivals stop after this many requests.
    pub requests: Option<u64>,
    pub arrivals: Arrivals,
    pub profile: Option<Vec<f64>>,
    /// Local time minus UTC, minutes (whole quarter hours).
    pub utc_offset_minutes: i32,
    pub last_mile: Nanos,
    pub ttft_p99: Nanos,
    pub tpot_p99: Option<Nanos>,
    pub model: usize,
    /// Indexed by site; None when the region has no route to the site.
    pub paths: Vec<Option<Path>>,
}

impl Region {
    /// Arrival rate at simulated time `t_ns` before bursts (profile applied).
    pub fn profile_factor(&self, t_ns: u64) -> f64 {
        match &self.profile {
            None => 1.0,
            Some(p) => {
                let m = (t_ns / 60_000_000_000) as i64 + i64::from(self.utc_offset_minutes);
                p[m.div_euclid(60).rem_euclid(24) as usize]
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub name: String,
    pub tier: SiteTier,
    pub gpus: u32,
    pub max_gpus: u32,
    pub gpu_hour_usd: f64,
    pub access_hops: u32,
    pub hop_latency: Nanos,
    pub model: usize,
    pub role: SiteRole,
    /// Where it is (the wide-area route model's continent pairs).
    pub continent: Option<Continent>,
    /// Latitude and longitude in degrees, when given.
    pub location: Option<[f64; 2]>,
}

/// A link between two sites that carries KV caches from prefill to decode sites (each
/// direction its own capacity, shared equally by the transfers on it).
#[derive(Debug, Clone, Serialize)]
pub struct Dci {
    pub a: usize,
    pub b: usize,
    /// Capacity each way, bits per second, before background traffic.
    pub capacity_bps: f64,
    /// Share of the capacity other traffic uses.
    pub background: f64,
    pub distance: Meters,
    /// Propagation one way.
    pub one_way: Nanos,
}

impl Dci {
    /// Bytes per second left for KV transfers each way.
    pub fn usable_bytes_per_s(&self) -> f64 {
        self.capacity_bps * (1.0 - self.background) / 8.0
    }
}

/// The links of `dcis` from site `p` to decode-capable sites serving its model: (link, the
/// other site).
fn decode_links(dcis: &[Dci], sites: &[Site], p: usize) -> Vec<(usize, usize)> {
    dcis.iter()
        .enumerate()
        .filter_map(|(i, d)| match (d.a == p, d.b == p) {
            (true, _) => Some((i, d.b)),
            (_, true) => Some((i, d.a)),
            _ => None,
        })
        .filter(|&(_, d)| sites[d].role != SiteRole::Prefill && sites[d].model == sites[p].model)
        .collect()
}

/// Everything the simulator and the placement optimizer need.
#[derive(Debug, Clone, Serialize)]
pub struct InferSpec {
    pub name: String,
    pub policy: Policy,
    pub duration: Nanos,
    pub seed: u64,
    pub target_utilization: f64,
    pub failover_detect: Nanos,
    pub models: Vec<Model>,
    pub sites: Vec<Site>,
    pub regions: Vec<Region>,
    pub dcis: Vec<Dci>,
}

/// The most requests one run may send. Their latencies are kept for percentiles, 24 bytes
/// each (1.2 GB at this count); a run whose sites fall behind also holds every queued
/// request (about 80 bytes, and its events): one overloaded run at this count was measured
/// at 5.4 GB (session 23, on this workspace's 24 GiB build machine).
pub const MAX_REQUESTS: f64 = 5e7;

/// The longest run of arrivals: 10 years (an assumption, far beyond any capacity study; it
/// keeps the run and its drain inside the nanosecond clock).
pub const MAX_DURATION_NS: u64 = 10 * 365 * 86_400 * 1_000_000_000;

/// The most arrival candidates one run may draw (open loops draw them at the peak rate and
/// keep a share: bursty arrivals and daily profiles).
pub const MAX_CANDIDATES: f64 = 5e8;

impl Region {
    /// Requests this open-loop region is expected to send in the first `duration_ns` of a run:
    /// its rate over the daily profile of those hours (from its UTC offset), at most its
    /// `requests`. 0 for a closed loop.
    pub fn expected_requests(&self, duration_ns: u64) -> f64 {
        let secs = duration_ns as f64 * 1e-9;
        let n = match &self.profile {
            None => self.rate * secs,
            Some(p) => {
                // Local time runs `off` seconds ahead of the run's clock; each step runs to the
                // next local hour boundary.
                let off = f64::from(self.utc_offset_minutes) * 60.0;
                let mut t = 0.0;
                let mut sum = 0.0;
                while t < secs {
                    let local = t + off;
                    let h = (local / 3600.0).floor();
                    let len = (3600.0 * (h + 1.0) - off).min(secs) - t;
                    sum += p[(h as i64).rem_euclid(24) as usize] * len;
                    t += len;
                }
                self.rate * sum
            }
        };
        self.requests.map_or(n, |c| n.min(c as f64))
    }

    /// The largest profile multiplier (1 without a profile).
    fn top_multiplier(&self) -> f64 {
        self.profile.as_ref().map_or(1.0, |p| p.iter().copied().fold(0.0, f64::max))
    }

    /// Requests per second at the busiest hour of an "on" period: rate x largest profile
    /// multiplier x burst factor.
    pub fn peak_rate(&self) -> f64 {
        let burst = match self.arrivals {
            Arrivals::Bursty { factor, .. } => factor,
            Arrivals::Poisson => 1.0,
        };
        self.rate * self.top_multiplier() * burst
    }

    /// Arrival candidates an open-loop region draws in `duration_ns`: at its peak rate
    /// (largest profile multiplier x burst factor), or its `requests`.
    fn candidates(&self, duration_ns: u64) -> f64 {
        let draws = self.peak_rate() * duration_ns as f64 * 1e-9;
        self.requests.map_or(draws, |c| draws.min(c as f64))
    }
}

impl InferSpec {
    /// Requests the regions can send in `duration_ns`: open loops as expected
    /// ([`Region::expected_requests`]); a closed loop at most its users x (1 + duration / a
    /// lone request at the mean lengths, or failover-detect where that is shorter), and, when
    /// its requests are served, at most twice its sites' capacity at `max-gpus`.
    pub fn expected_requests(&self, duration_ns: u64) -> f64 {
        self.regions
            .iter()
            .map(|r| match r.concurrency {
                None => r.expected_requests(duration_ns),
                Some(users) => {
                    let m = &self.models[r.model];
                    let rtt = r.paths.iter().flatten().map(|p| 2 * p.one_way.0).min().unwrap_or(0) as f64;
                    // A user resends as soon as its request streams back, or after
                    // failover-detect when no site can take it.
                    let lone = (rtt + m.lone_ns()).max(1e3);
                    let least = lone.min(self.failover_detect.0 as f64);
                    let users = f64::from(users);
                    let by_users = users * (1.0 + duration_ns as f64 / least);
                    // Served requests cannot outrun the sites' capacity (at their largest,
                    // twice over for the queue's swings); only failed ones come faster.
                    let cap: f64 = self
                        .sites
                        .iter()
                        .filter(|s| s.model == r.model)
                        .map(|s| f64::from(s.max_gpus / m.gpus_per_server) * m.server_capacity())
                        .sum();
                    let by_capacity = users + 2.0 * cap * duration_ns as f64 * 1e-9;
                    if least < lone {
                        by_users
                    } else {
                        by_users.min(by_capacity)
                    }
                }
            })
            .sum()
    }

    /// An error when a run of `duration_ns` would send more than [`MAX_REQUESTS`] requests
    /// or draw more than [`MAX_CANDIDATES`] arrival candidates.
    pub fn check_run_size(&self, duration_ns: u64) -> Result<(), String> {
        let secs = duration_ns as f64 * 1e-9;
        if duration_ns > MAX_DURATION_NS {
            return Err(format!(
                "a run of {secs:.3e} s, expected at most 10 years ({:.3e} s)",
                MAX_DURATION_NS as f64 * 1e-9
            ));
        }
        // `requests = N` sends N requests over N / rate: a run that ends sooner would cut the
        // benchmark at a seed's luck (56 or 47 of 100), so it is refused.
        for r in self.regions.iter().filter(|r| r.rate > 0.0) {
            if let Some(n) = r.requests {
                let span = n as f64 / r.rate;
                if span * 1e9 > duration_ns as f64 * (1.0 + 1e-12) {
                    // Seconds to the nanosecond, without an exponent ("0.000000001", not "0").
                    let secs = |ns: f64| ns.ceil() / 1e9;
                    let fix = if span * 1e9 > MAX_DURATION_NS as f64 {
                        "longer than any run may be (10 years): lower `requests` or raise `rate`"
                    } else {
                        "lengthen the duration to at least that, or lower `requests`"
                    };
                    return Err(format!(
                        "region {:?} sends requests = {n} at {} per second over {} s, longer than the run's {} s: {fix}",
                        r.name,
                        r.rate,
                        secs(span * 1e9),
                        secs(duration_ns as f64),
                    ));
                }
            }
        }
        let n = self.expected_requests(duration_ns);
        if n > MAX_REQUESTS {
            return Err(format!(
                "the regions could send about {n:.3e} requests in {secs:.0} s (rates over the daily profile, closed loops at their shortest request time); expected at most {MAX_REQUESTS:.0e}: shorten the duration or lower the load"
            ));
        }
        let c: f64 = self.regions.iter().filter(|r| r.concurrency.is_none()).map(|r| r.candidates(duration_ns)).sum();
        if c > MAX_CANDIDATES {
            return Err(format!(
                "open-loop arrivals are drawn at the peak rate (rate x largest profile multiplier x burst factor): {c:.3e} draws in {secs:.0} s, expected at most {MAX_CANDIDATES:.0e}: shorten the duration or lower the peak"
            ));
        }
        Ok(())
    }

    /// The DCI links from site `p` to decode-capable sites serving its model: (link, the
    /// other site).
    pub fn decode_links(&self, p: usize) -> Vec<(usize, usize)> {
        decode_links(&self.dcis, &self.sites, p)
    }
    /// Servers at each site as configured.
    pub fn servers(&self) -> Vec<u32> {
        self.sites.iter().map(|s| s.gpus / self.models[s.model].gpus_per_server).collect()
    }
}

/// Where a table of the scenario is, for messages (`model[2]`, counted from 1).
fn at<'a>(sc: &'a Scenario, section: &str, i: usize) -> Ctx<'a> {
    Ctx::new(&sc.file, &sc.text, section, i, &format!("{section}[{}]", i + 1))
}

/// Reads a `lengths` CSV: a header naming `prompt` and `output` (and optionally `count`),
/// then one row per sample (or per histogram bin with its count).
fn read_lengths(path: &std::path::Path, ctx: &Ctx) -> Result<Vec<(u32, u32)>, FabricError> {
    let shown = path.display().to_string();
    let text = meshway_units::files::read_text(path)
        .map_err(|e| ctx.invalid("lengths", format!("cannot read {shown}: {e}")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((hi, header)) = lines.next() else {
        return Err(ctx.invalid("lengths", format!("{shown} is empty: expected a header `prompt,output`")));
    };
    // Spreadsheets and pandas may quote every field: `"prompt","output"`.
    let field = |c: &str| {
        let c = c.trim();
        c.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(c).trim().to_string()
    };
    let cols: Vec<String> = header.split(',').map(|c| field(c).to_ascii_lowercase()).collect();
    for (i, c) in cols.iter().enumerate() {
        if !["prompt", "output", "count"].contains(&c.as_str()) || cols[..i].contains(c) {
            let what = if cols[..i].contains(c) { "a second" } else { "an unknown" };
            return Err(ctx.invalid(
                "lengths",
                format!(
                    "{shown}:{}: {what} column {c:?}: expected `prompt`, `output` and optionally `count`, once each",
                    hi + 1
                ),
            ));
        }
    }
    let col = |n: &str| cols.iter().position(|c| c == n);
    let (Some(pi), Some(oi)) = (col("prompt"), col("output")) else {
        return Err(ctx.invalid(
            "lengths",
            format!("{shown}:{}: expected a header naming `prompt` and `output` columns, got {header:?}", hi + 1),
        ));
    };
    let ci = col("count");
    let mut out = Vec::new();
    let mut rows = 0usize;
    for (n, line) in lines {
        rows += 1;
        let f: Vec<String> = line.split(',').map(field).collect();
        if f.len() != cols.len() {
            return Err(ctx.invalid(
                "lengths",
                format!(
                    "{shown}:{}: expected {} fields ({}) as the header names, got {}: {:?}",
                    n + 1,
                    cols.len(),
                    cols.join(","),
                    f.len(),
                    line.trim()
                ),
            ));
        }
        let num = |i: usize, what: &str| -> Result<u64, FabricError> {
            let range = if what == "count" { "0 to 10000000" } else { "tokens 1 to 10000000" };
            f.get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|&v| v <= 10_000_000 && (what == "count" || v >= 1))
                .ok_or_else(|| {
                    ctx.invalid(
                        "lengths",
                        format!(
                            "{shown}:{}: expected {what} as a whole number ({range}), got {:?}",
                            n + 1,
                            f.get(i).map_or("", String::as_str)
                        ),
                    )
                })
        };
        let (p, o) = (num(pi, "prompt")? as u32, num(oi, "output")? as u32);
        let c = match ci {
            Some(i) => num(i, "count")?,
            None => 1,
        };
        if (out.len() as u64).saturating_add(c) > 10_000_000 {
            return Err(ctx.invalid("lengths", format!("{shown}: more than 10000000 samples")));
        }
        out.extend(std::iter::repeat_n((p, o), c as usize));
    }
    if out.is_empty() {
        let why = if rows == 0 {
            "has no rows".to_string()
        } else {
            format!("counts 0 samples in its {rows} row{}", if rows == 1 { "" } else { "s" })
        };
        return Err(ctx.invalid("lengths", format!("{shown} {why}: expected at least one (prompt, output) sample")));
    }
    Ok(out)
}

/// A model's step costs and KV-cache capacity from its `llm` shape on its `gpu`.
fn shape_cost(m: &ModelConfig, ctx: &Ctx, cat: &Catalog, gps: u32) -> Result<Shape, FabricError> {
    let names = |v: Vec<&str>| v.join(", ");
    let (Some(ln), Some(gn)) = (&m.llm, &m.gpu) else {
        return Err(ctx.invalid(
            if m.llm.is_none() { "llm" } else { "gpu" },
            "a model built from its shape needs both `llm` and `gpu` (or give rated `prefill-tokens-per-s` and `decode-tokens-per-s`)",
        ));
    };
    let llm_names: Vec<&str> = cat.llm.iter().map(|x| x.name.as_str()).collect();
    let llm = cat.llm(ln).ok_or_else(|| {
        let hint = closest(ln, &llm_names).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
        ctx.invalid("llm", format!("unknown llm {ln:?}, expected one of {}{hint}", names(llm_names.clone())))
    })?;
    let gpu_names: Vec<&str> = cat.gpu.iter().map(|x| x.name.as_str()).collect();
    let gpu = cat.gpu_model(gn).ok_or_else(|| {
        let hint = closest(gn, &gpu_names).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
        ctx.invalid("gpu", format!("unknown gpu {gn:?}, expected one of {}{hint}", names(gpu_names.clone())))
    })?;
    let (Some(mem), Some(bw)) = (gpu.memory, gpu.hbm_bandwidth) else {
        return Err(ctx.invalid("gpu", format!("catalog gpu {gn:?} has no `memory` and `hbm-bandwidth` for serving")));
    };
    let sv = cat.serving.as_ref().ok_or_else(|| ctx.invalid("llm", "the catalog has no [serving] section"))?;
    let precision =
        m.precision.unwrap_or(if gpu.fp8_flops.is_some() { PrecisionConfig::Fp8 } else { PrecisionConfig::Bf16 });
    // The rate matrix multiplies reach on this GPU (measured where the catalog has it, else
    // the datasheet peak); `flops-efficiency` is the share of it a serving engine's kernels get.
    let bf16 = gpu.matmul_achievable.unwrap_or(gpu.peak_flops);
    let fp8 = gpu.fp8_matmul_achievable.or(gpu.fp8_flops);
    let rate = match precision {
        PrecisionConfig::Fp8 => fp8.ok_or_else(|| {
            ctx.invalid("precision", format!("gpu {gn:?} has no FP8 (no `fp8-flops` in the catalog)"))
        })?,
        PrecisionConfig::Fp4 => gpu.fp4_matmul_achievable.or(gpu.fp4_flops).ok_or_else(|| {
            let with: Vec<&str> = cat.gpu.iter().filter(|g| g.fp4_flops.is_some()).map(|g| g.name.as_str()).collect();
            ctx.invalid(
                "precision",
                format!(
                    "gpu {gn:?} has no FP4 (no `fp4-flops` in the catalog): use fp8 or bf16, or a GPU with FP4 ({})",
                    if with.is_empty() { "none in this catalog".to_string() } else { with.join(", ") }
                ),
            )
        })?,
        PrecisionConfig::Bf16 | PrecisionConfig::Fp16 => bf16,
    };
    // The cache defaults to the weights' format, but FP4 weights (NVIDIA's NVFP4 checkpoints)
    // come with an FP8 cache where the GPU has FP8; an FP4 cache needs a GPU with FP4.
    let kv_precision = m.kv_precision.unwrap_or(match precision {
        PrecisionConfig::Fp4 if fp8.is_some() => PrecisionConfig::Fp8,
        p => p,
    });
    if kv_precision == PrecisionConfig::Fp4 && gpu.fp4_flops.is_none() {
        return Err(ctx.invalid(
            "kv-precision",
            format!("an FP4 KV cache needs a GPU with FP4, and gpu {gn:?} has none (no `fp4-flops` in the catalog)"),
        ));
    }
    // Attention in FP8 only where both the activations (FP8 or FP4 weights quantize them) and
    // the cache are 8 bits or less, as TensorRT-LLM's FP8 attention kernels run; otherwise
    // BF16 (an FP8 cache beside BF16 weights is widened to attend).
    let low = |p: PrecisionConfig| matches!(p, PrecisionConfig::Fp8 | PrecisionConfig::Fp4);
    let attn_rate = match fp8 {
        Some(f) if low(precision) && low(kv_precision) => f,
        _ => bf16,
    };
    let share = |key: &str, v: Option<f64>, d: f64| -> Result<f64, FabricError> {
        let from = if v.is_none() { format!(" (the catalog's [serving] {key})") } else { String::new() };
        let v = v.unwrap_or(d);
        // The floor, 0.001, is an assumption (as the simulator's compute-efficiency): no
        // serving engine runs at a thousandth of its GPU, and below it step times leave u64.
        if (0.001..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(ctx.invalid(key, format!("expected a share from 0.001 to 1, got {}{from}", meshway_units::shown(v))))
        }
    };
    let fe = share("flops-efficiency", m.flops_efficiency, sv.flops_efficiency)?;
    let be = share("bandwidth-efficiency", m.bandwidth_efficiency, sv.bandwidth_efficiency)?;
    let mu = share("memory-utilization", m.memory_utilization, sv.memory_utilization)?;
    let g = f64::from(gps);
    // Tensor parallelism splits the attention heads evenly over the server's GPUs (as
    // serving engines require); a GPU with fewer KV heads than its share keeps a copy.
    if gps > llm.heads || !llm.heads.is_multiple_of(gps) {
        return Err(ctx.invalid(
            "gpus-per-server",
            format!(
                "tensor parallelism splits llm {ln:?}'s {} attention heads evenly over a server's GPUs: expected a divisor of {} (at most {}), got {gps}",
                llm.heads, llm.heads, llm.heads
            ),
        ));
    }
    // Tensor parallelism's all-reduces are modelled over NVLink: a server wider than the
    // GPU's NVLink domain would cross the network at NVLink's rate (TP 64 on H100 read 6.6 ms
    // per token against TP 8's 9.3).
    if let Some(d) = gpu.nvlink_gpus.filter(|&d| gps > d) {
        return Err(ctx.invalid(
            "gpus-per-server",
            format!(
                "tensor parallelism runs its all-reduces over NVLink, and gpu {gn:?} joins at most {d} GPUs by NVLink (catalog `nvlink-gpus`); got {gps}: use at most {d} GPUs per server (and more servers), or a GPU of a larger NVLink domain"
            ),
        ));
    }
    let weight_bytes = llm.params * precision.bytes();
    let kv_bytes_per_token = llm.kv_elements_per_token() * kv_precision.bytes();
    let kv_replication = f64::from(gps * llm.kv_heads.div_ceil(gps)) / f64::from(llm.kv_heads);
    let reserve = m.memory_reserve.unwrap_or(sv.memory_reserve).0 as f64;
    // A reserve as large as the GPU's memory is the reserve's fault, not the server's width.
    if reserve >= mem.0 as f64 {
        return Err(ctx.invalid(
            "memory-reserve",
            format!(
                "{:.1} GB reserved per GPU leaves nothing of {gn}'s {:.0} MiB: expected less than the GPU's memory",
                reserve / 1e9,
                mem.0 as f64 / 1_048_576.0
            ),
        ));
    }
    let usable = g * (mem.0 as f64 - reserve);
    // What to do about too little memory: more GPUs only within the NVLink domain.
    let advice = match gpu.nvlink_gpus {
        Some(d) if gps >= d => format!(
            "use a smaller precision, or a GPU with more memory or a larger NVLink domain ({gn} joins at most {d} by NVLink)"
        ),
        Some(d) => format!("use more GPUs per server (up to {d}, {gn}'s NVLink domain) or a smaller precision"),
        None => "use more GPUs per server or a smaller precision".to_string(),
    };
    if weight_bytes > usable {
        return Err(ctx.invalid(
            "gpus-per-server",
            format!(
                "llm {ln:?} in {} needs {:.1} GB of weights, more than the {:.1} GB {gps} x {gn} hold ({:.0} MiB each, {:.1} GB reserved): {advice}",
                precision.name(),
                weight_bytes / 1e9,
                usable / 1e9,
                mem.0 as f64 / 1_048_576.0,
                reserve / 1e9
            ),
        ));
    }
    let room = (usable - weight_bytes) * mu;
    if room < kv_bytes_per_token * kv_replication * 1024.0 {
        return Err(ctx.invalid(
            "gpus-per-server",
            format!(
                "llm {ln:?} in {} needs {:.1} GB of weights; {gps} x {gn} ({:.0} MiB each, {:.1} GB reserved) leaves {:.1} GB, no room for a KV cache of 1024 tokens: {advice}",
                precision.name(),
                weight_bytes / 1e9,
                mem.0 as f64 / 1_048_576.0,
                reserve / 1e9,
                room.max(0.0) / 1e9
            ),
        ));
    }
    let nvlink = gpu.nvlink_achievable.map_or(0.0, |b| b.0 as f64 / 8.0);
    if gps > 1 && nvlink <= 0.0 {
        return Err(ctx.invalid(
            "gpu",
            format!("gpu {gn:?} has no `nvlink-achievable` for tensor parallelism across {gps} GPUs"),
        ));
    }
    Ok(Shape {
        llm: llm.name.clone(),
        gpu: gpu.name.clone(),
        precision: precision.name(),
        kv_precision: kv_precision.name(),
        layers: llm.layers,
        q_dim: f64::from(llm.heads) * f64::from(llm.head_dim),
        hidden: f64::from(llm.hidden),
        params: llm.params,
        active_params: llm.active(),
        weight_bytes,
        kv_bytes_per_token,
        kv_replication,
        gpus: gps,
        flops: g * rate * fe,
        attn_flops: g * attn_rate * fe,
        bytes_per_s: g * bw.0 as f64 / 8.0 * be,
        nvlink_bytes_per_s: nvlink,
        allreduce_ns: sv.allreduce_latency.0,
        oneshot_ns: sv.allreduce_oneshot_latency.map(|n| n.0),
        step_overhead_ns: m.step_overhead.unwrap_or(sv.step_overhead).0,
        moe_efficiency: if llm.active() < llm.params { sv.moe_efficiency } else { 1.0 },
        knee: sv.roofline_knee,
        kv_capacity_tokens: (room / (kv_bytes_per_token * kv_replication)).floor() as u64,
    })
}

fn validate_model(
    m: &ModelConfig,
    ctx: &Ctx,
    d: &InferenceDefaults,
    cat: &Catalog,
    dir: &std::path::Path,
    earlier: &[Model],
) -> Result<Model, FabricError> {
    if m.name.trim().is_empty() || earlier.iter().any(|x| x.name == m.name) {
        return Err(ctx.invalid("name", format!("expected a unique non-empty model name, got {:?}", m.name)));
    }
    if let Some(why) = meshway_units::unprintable(&m.name) {
        return Err(ctx.invalid("name", format!("expected printable text, got {why}")));
    }
    let gps = m.gpus_per_server.unwrap_or(d.gpus_per_server);
    if gps == 0 || gps > 1024 {
        let from = if m.gpus_per_server.is_none() { " (the catalog's [inference] gpus-per-server)" } else { "" };
        return Err(ctx.invalid("gpus-per-server", format!("expected 1 to 1024, got {gps}{from}")));
    }
    for (k, v) in [("step-overhead", m.step_overhead), ("request-overhead", m.request_overhead)] {
        if let Some(n) = v.filter(|n| n.0 > 3_600_000_000_000) {
            return Err(ctx.invalid(k, format!("expected at most 1h, got {n}")));
        }
    }
    let rated = m.prefill_tokens_per_s.is_some() || m.decode_tokens_per_s.is_some();
    let shaped = m.llm.is_some() || m.gpu.is_some();
    if rated && shaped {
        return Err(ctx.invalid(
            if m.llm.is_some() { "llm" } else { "gpu" },
            "give either rated `prefill-tokens-per-s` and `decode-tokens-per-s`, or a shape (`llm` and `gpu`), not both",
        ));
    }
    let sv = cat.serving.as_ref();
    let (cost, kv_capacity_tokens) = if rated {
        let (Some(p), Some(dd)) = (m.prefill_tokens_per_s, m.decode_tokens_per_s) else {
            let k = if m.prefill_tokens_per_s.is_none() { "prefill-tokens-per-s" } else { "decode-tokens-per-s" };
            return Err(ctx.invalid(k, "a rated model needs both `prefill-tokens-per-s` and `decode-tokens-per-s`"));
        };
        // Bounded so that a token's time fits the clock (a token at 0.001/s takes 1000 s).
        let rated_ok = |v: f64| (1e-3..=1e18).contains(&v);
        let shown = meshway_units::shown;
        for (k, v) in [("prefill-tokens-per-s", p), ("decode-tokens-per-s", dd)] {
            if !rated_ok(v) {
                return Err(ctx.invalid(k, format!("expected 0.001 to 1e18 tokens per second, got {}", shown(v))));
            }
        }
        if let Some(c) = m.decode_tokens_per_s_per_request {
            if !rated_ok(c) {
                return Err(ctx.invalid(
                    "decode-tokens-per-s-per-request",
                    format!("expected 0.001 to 1e18 tokens per second, got {}", shown(c)),
                ));
            }
        }
        for (k, set) in [
            ("chunked-prefill", m.chunked_prefill.is_some()),
            ("token-budget", m.token_budget.is_some()),
            ("speculative-draft-tokens", m.speculative_draft_tokens.is_some()),
            ("precision", m.precision.is_some()),
            ("kv-precision", m.kv_precision.is_some()),
            ("flops-efficiency", m.flops_efficiency.is_some()),
            ("bandwidth-efficiency", m.bandwidth_efficiency.is_some()),
            ("memory-utilization", m.memory_utilization.is_some()),
            ("memory-reserve", m.memory_reserve.is_some()),
            ("step-overhead", m.step_overhead.is_some()),
        ] {
            if set {
                return Err(
                    ctx.invalid(k, "applies to a model built from its shape (`llm` and `gpu`), not a rated one")
                );
            }
        }
        (
            Cost::Rated { prefill: p, decode: dd, cap: m.decode_tokens_per_s_per_request.unwrap_or(f64::INFINITY) },
            u64::MAX,
        )
    } else {
        if m.decode_tokens_per_s_per_request.is_some() {
            return Err(ctx.invalid("decode-tokens-per-s-per-request", "applies to a rated model only"));
        }
        let shape = shape_cost(m, ctx, cat, gps)?;
        let cap = shape.kv_capacity_tokens;
        (Cost::Shape(Box::new(shape)), cap)
    };
    let max_batch = match (m.max_batch, sv) {
        (Some(b), _) => b,
        (None, Some(sv)) if !rated => sv.max_batch,
        _ => {
            return Err(
                ctx.invalid("max-batch", "expected the requests one server holds at once (a rated model needs it)")
            )
        }
    };
    if max_batch == 0 || max_batch > 4096 {
        let from = if m.max_batch.is_none() { " (the catalog's [serving] max-batch)" } else { "" };
        return Err(ctx.invalid("max-batch", format!("expected 1 to 4096, got {max_batch}{from}")));
    }
    let token_budget = if rated { u32::MAX } else { m.token_budget.or(sv.map(|s| s.token_budget)).unwrap_or(8192) };
    if token_budget == 0 {
        return Err(ctx.invalid("token-budget", "expected at least 1 token"));
    }
    let prefix_cache_hit = m.prefix_cache_hit.unwrap_or(0.0);
    if !(0.0..1.0).contains(&prefix_cache_hit) {
        return Err(ctx.invalid(
            "prefix-cache-hit",
            format!("expected a share in [0, 1), got {}", meshway_units::shown(prefix_cache_hit)),
        ));
    }
    let (tokens_per_step, verify_tokens) = match (m.speculative_draft_tokens, m.speculative_acceptance) {
        (None, None) => (1.0, 1),
        (Some(k), Some(a)) if (1..=16).contains(&k) && (0.0..1.0).contains(&a) => {
            // Expected tokens per verification step with k drafts, each accepted with
            // probability a until the first rejection, plus the target's own token
            // (Leviathan et al., 'Fast Inference from Transformers via Speculative Decoding', 2023).
            ((1.0 - a.powi(k as i32 + 1)) / (1.0 - a), k + 1)
        }
        (Some(_), Some(a)) if !(0.0..1.0).contains(&a) => {
            return Err(ctx.invalid(
                "speculative-acceptance",
                format!("expected a probability in [0, 1), got {}", meshway_units::shown(a)),
            ))
        }
        (Some(k), Some(_)) => return Err(ctx.invalid("speculative-draft-tokens", format!("expected 1 to 16, got {k}"))),
        (None, Some(_)) => return Err(ctx.invalid("speculative-acceptance", "needs `speculative-draft-tokens`")),
        (Some(_), None) => return Err(ctx.invalid("speculative-draft-tokens", "needs `speculative-acceptance`")),
    };
    if rated && (tokens_per_step != 1.0 || prefix_cache_hit > 0.0) {
        return Err(ctx.invalid("prefix-cache-hit", "applies to a model built from its shape (`llm` and `gpu`)"));
    }
    let request_overhead_ns = match m.request_overhead {
        Some(n) => n.0,
        None if rated => 0,
        None => sv.map_or(0, |s| s.request_overhead.0),
    };
    let lengths = match &m.lengths {
        None => None,
        Some(f) => {
            if m.prompt_tokens.is_some() || m.output_tokens.is_some() || m.length_dist.is_some() {
                return Err(ctx.invalid(
                    "lengths",
                    "give either `lengths` or `prompt-tokens`/`output-tokens`/`length-dist`, not both",
                ));
            }
            Some(std::sync::Arc::new(read_lengths(&dir.join(f), ctx)?))
        }
    };
    let (prompt_tokens, output_tokens) = match &lengths {
        Some(l) => {
            let n = l.len() as f64;
            let mean = |f: fn(&(u32, u32)) -> u32| {
                (l.iter().map(|x| f64::from(f(x))).sum::<f64>() / n).round().max(1.0) as u32
            };
            (mean(|x| x.0), mean(|x| x.1))
        }
        None => {
            let (Some(p), Some(o)) = (m.prompt_tokens, m.output_tokens) else {
                let k = if m.prompt_tokens.is_none() { "prompt-tokens" } else { "output-tokens" };
                return Err(ctx.invalid(k, "expected mean prompt and output lengths in tokens (or a `lengths` file)"));
            };
            for (k, v) in [("prompt-tokens", p), ("output-tokens", o)] {
                if v == 0 || v > 10_000_000 {
                    return Err(ctx.invalid(k, format!("expected 1 to 10000000 tokens, got {v}")));
                }
            }
            (p, o)
        }
    };
    let length_dist = match m.length_dist {
        None | Some(LengthDistConfig::Fixed) => LengthDist::Fixed,
        Some(LengthDistConfig::Exponential) => LengthDist::Exponential,
        Some(LengthDistConfig::Uniform) => LengthDist::Uniform,
    };
    let model = Model {
        name: m.name.clone(),
        gpus_per_server: gps,
        cost,
        max_batch,
        chunked_prefill: !rated && m.chunked_prefill.unwrap_or(true),
        token_budget,
        kv_capacity_tokens,
        prefix_cache_hit,
        tokens_per_step,
        verify_tokens,
        request_overhead_ns,
        prompt_tokens,
        output_tokens,
        length_dist,
        lengths,
        mean_prefill: std::sync::OnceLock::new(),
        context: m.llm.as_ref().and_then(|n| cat.llm(n)).and_then(|l| l.context),
    };
    if let (Cost::Shape(sh), Some(llm)) = (&model.cost, m.llm.as_ref().and_then(|n| cat.llm(n))) {
        // The longest request the model takes: a fixed length, or the longest in a lengths file.
        let longest = match &model.lengths {
            Some(l) => l.iter().map(|x| u64::from(x.0) + u64::from(x.1)).max().unwrap_or(0),
            None => u64::from(prompt_tokens) + u64::from(output_tokens),
        };
        if let Some(c) = llm.context.filter(|c| longest > u64::from(*c)) {
            return Err(ctx.invalid(
                if model.lengths.is_some() { "lengths" } else { "prompt-tokens" },
                format!(
                    "a request of {longest} tokens (prompt + output) is longer than {}'s context of {c} tokens",
                    sh.llm
                ),
            ));
        }
    }
    if model.kv_reserve(prompt_tokens, output_tokens) > kv_capacity_tokens {
        return Err(ctx.invalid(
            "prompt-tokens",
            format!(
                "a mean request ({prompt_tokens} prompt + {output_tokens} output tokens) does not fit the server's KV cache of {kv_capacity_tokens} tokens"
            ),
        ));
    }
    Ok(model)
}

/// The model a site or region serves: its `model` key, or the only model.
fn find_model(ctx: &Ctx, models: &[Model], name: &Option<String>) -> Result<usize, FabricError> {
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    match name {
        None if models.len() == 1 => Ok(0),
        None => Err(ctx.invalid("model", format!("expected one of {} (there are several models)", names.join(", ")))),
        Some(n) => models.iter().position(|m| &m.name == n).ok_or_else(|| {
            let hint = closest(n, &names).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
            ctx.invalid("model", format!("unknown model {n:?}, expected one of {}{hint}", names.join(", ")))
        }),
    }
}

fn validate_site(
    s: &SiteConfig,
    ctx: &Ctx,
    d: &InferenceDefaults,
    models: &[Model],
    earlier: &[Site],
) -> Result<Site, FabricError> {
    if s.name.trim().is_empty() || earlier.iter().any(|x| x.name == s.name) {
        return Err(ctx.invalid("name", format!("expected a unique non-empty site name, got {:?}", s.name)));
    }
    if let Some(why) = meshway_units::unprintable(&s.name) {
        return Err(ctx.invalid("name", format!("expected printable text, got {why}")));
    }
    let model = find_model(ctx, models, &s.model)?;
    let gps = models[model].gpus_per_server;
    let gpus = s.gpus.or(s.fabric.as_ref().and_then(|f| f.gpus)).unwrap_or(0);
    // `max-gpus` too: 12 with 8-GPU servers was taken as one server.
    for (key, n) in [("gpus", Some(gpus)), ("max-gpus", s.max_gpus)] {
        if let Some(n) = n.filter(|n| !n.is_multiple_of(gps)) {
            return Err(ctx.invalid(
                key,
                format!(
                    "{n} GPU{} is not a whole number of {gps}-GPU servers of model {:?}",
                    if n == 1 { "" } else { "s" },
                    models[model].name
                ),
            ));
        }
    }
    // At most 2^20 GPUs a site (an assumption, several times the largest clusters built):
    // the simulator holds a record per server (4,294,967,295 GPUs asked for 756 GB).
    for (key, n) in [("gpus", Some(gpus)), ("max-gpus", s.max_gpus)] {
        if let Some(n) = n.filter(|&n| n > MAX_SITE_GPUS) {
            return Err(ctx.invalid(key, format!("expected at most {MAX_SITE_GPUS} GPUs a site, got {n}")));
        }
    }
    let max_gpus = s.max_gpus.unwrap_or(gpus);
    if max_gpus < gpus {
        return Err(ctx.invalid("max-gpus", format!("expected at least gpus ({gpus}), got {max_gpus}")));
    }
    let tier = s.tier.unwrap_or(SiteTier::Central);
    let gpu_hour_usd = s.gpu_hour_usd.unwrap_or(match tier {
        SiteTier::Central => d.gpu_hour_usd_central,
        SiteTier::Edge => d.gpu_hour_usd_edge,
    });
    // At most $1M per GPU-hour (an assumption, a thousand times past any list price), as the
    // catalog's prices: larger ones made the plan's cost infinite (and null in JSON).
    if !(0.0..=1e6).contains(&gpu_hour_usd) {
        let from = match (s.gpu_hour_usd, tier) {
            (Some(_), _) => "",
            (None, SiteTier::Central) => " (the catalog's [inference] gpu-hour-usd-central)",
            (None, SiteTier::Edge) => " (the catalog's [inference] gpu-hour-usd-edge)",
        };
        return Err(ctx.invalid(
            "gpu-hour-usd",
            format!(
                "expected a price from 0 to 1000000 (dollars per GPU-hour), got {}{from}",
                meshway_units::shown(gpu_hour_usd)
            ),
        ));
    }
    // At most 1,000 hops and 1 s a hop (assumptions far past any real path): a hop count
    // near 2^32 wrapped the path's sum to a shorter one.
    let access_hops = s.access_hops.unwrap_or(d.access_hops);
    if access_hops > MAX_HOPS {
        let from = if s.access_hops.is_none() { " (the catalog's [inference] access-hops)" } else { "" };
        return Err(ctx.invalid("access-hops", format!("expected at most {MAX_HOPS}, got {access_hops}{from}")));
    }
    let hop_latency = s.hop_latency.unwrap_or(d.hop_latency);
    if hop_latency.0 > MAX_PATH_PART_NS {
        return Err(ctx.invalid("hop-latency", format!("expected at most 1s, got {hop_latency}")));
    }
    Ok(Site {
        name: s.name.clone(),
        tier,
        gpus,
        max_gpus,
        gpu_hour_usd,
        access_hops,
        hop_latency,
        model,
        role: s.role.unwrap_or(SiteRole::Both),
        continent: s.continent,
        location: checked_location(s.location, s.continent, ctx, &d.wan_gateways)?,
    })
}

/// A location farther than this from every cable landing of its stated continent, and nearer
/// one of another continent's, is taken for a wrong `continent` (an assumption: 5,000 km
/// keeps border places such as Bogota, 3,600 km from South America's landings and nearer
/// North America's, and still catches Paris labelled asia-pacific, 7,000 km from Mumbai).
const CONTINENT_MISMATCH_KM: f64 = 5_000.0;

/// A `location` as given, or why it is not one. It needs a `continent` beside it: paths are
/// routed over the cable landings of their ends' continents, and one that fits it.
fn checked_location(
    l: Option<[f64; 2]>,
    continent: Option<Continent>,
    ctx: &Ctx,
    gateways: &[meshway_fabric::catalog::WanGateway],
) -> Result<Option<[f64; 2]>, FabricError> {
    // A location on another continent than its label routes over the label's cable landings:
    // Paris labelled asia-pacific reached Dublin in 249 ms instead of 24.
    if let (Some([lat, lon]), Some(c)) = (l, continent) {
        if on_globe(lat, lon) {
            let km = |g: &&meshway_fabric::catalog::WanGateway| {
                meshway_fabric::catalog::great_circle_km(lat, lon, g.location[0], g.location[1])
            };
            let nearest = gateways.iter().min_by(|a, b| km(a).total_cmp(&km(b)));
            let own = gateways.iter().filter(|g| g.continent == c).min_by(|a, b| km(a).total_cmp(&km(b)));
            if let (Some(n), Some(o)) = (nearest, own) {
                if n.continent != c && km(&o) > CONTINENT_MISMATCH_KM {
                    return Err(ctx.invalid(
                        "continent",
                        format!(
                            "{} does not fit location [{lat}, {lon}]: its nearest cable landing ({}) is {:.0} km away, while {} ({}) is {:.0} km away: is the continent {}?",
                            c.name(),
                            o.name,
                            km(&o),
                            n.name,
                            n.continent.name(),
                            km(&n),
                            n.continent.name()
                        ),
                    ));
                }
            }
        }
    }
    if l.is_some() && continent.is_none() {
        return Err(ctx.invalid(
            "continent",
            "a `location` needs a `continent` (north-america, south-america, europe, asia-pacific, middle-east or africa): paths between continents are routed over that continent's cable landings",
        ));
    }
    match l {
        Some([lat, lon]) if !on_globe(lat, lon) => Err(ctx.invalid(
            "location",
            format!("expected [latitude, longitude] in degrees (-90..90, -180..180), got [{lat}, {lon}]"),
        )),
        l => Ok(l),
    }
}

fn arrivals(r: &RegionConfig, ctx: &Ctx) -> Result<Arrivals, FabricError> {
    match r.arrivals {
        None | Some(ArrivalsConfig::Poisson) => {
            if r.burst_factor.is_some() || r.burst_on.is_some() || r.burst_off.is_some() {
                return Err(ctx.invalid("burst-factor", "burst keys need arrivals = \"bursty\""));
            }
            Ok(Arrivals::Poisson)
        }
        Some(ArrivalsConfig::Bursty) => {
            let factor = r.burst_factor.unwrap_or(3.0);
            let on = r.burst_on.unwrap_or(Nanos(30_000_000_000));
            let off = r.burst_off.unwrap_or(Nanos(90_000_000_000));
            if on.0 < 1_000_000 || off.0 < 1_000_000 {
                let key = if on.0 < 1_000_000 { "burst-on" } else { "burst-off" };
                return Err(ctx.invalid(key, "expected on and off periods of at least 1ms"));
            }
            let share = on.0 as f64 / (on.0 + off.0) as f64;
            if !(factor.is_finite() && factor >= 1.0 && factor * share <= 1.0 + 1e-12) {
                return Err(ctx.invalid(
                    "burst-factor",
                    format!(
                        "expected 1 to {:.3} (on-time share {:.3}: the on periods alone would exceed the mean rate), got {}",
                        1.0 / share,
                        share,
                        meshway_units::shown(factor)
                    ),
                ));
            }
            Ok(Arrivals::Bursty { factor, on_ns: on.0, off_ns: off.0 })
        }
    }
}

/// The region's path to each site (None where it gives no distance or fibre).
fn region_paths(
    r: &RegionConfig,
    ctx: &Ctx,
    d: &InferenceDefaults,
    sites: &[Site],
    per_km: Nanos,
    last_mile: Nanos,
) -> Result<Vec<Option<Path>>, FabricError> {
    checked_location(r.location, r.continent, ctx, &d.wan_gateways)?;
    let site_names: Vec<&str> = sites.iter().map(|s| s.name.as_str()).collect();
    for (key, names) in [
        ("distance", r.distance.keys().collect::<Vec<_>>()),
        ("fiber", r.fiber.keys().collect()),
        ("hops", r.hops.keys().collect()),
        ("wan-fixed", r.wan_fixed.keys().collect()),
    ] {
        for n in names {
            let too_far = |m: Option<&Meters>| m.is_some_and(|m| m.0 > MAX_PATH_MM);
            let bad = match key {
                "distance" => {
                    too_far(r.distance.get(n)).then(|| "at most 50000km (past any path on Earth)".to_string())
                }
                "fiber" => too_far(r.fiber.get(n)).then(|| "at most 50000km (past any path on Earth)".to_string()),
                "hops" => r.hops.get(n).is_some_and(|&h| h > MAX_HOPS).then(|| format!("at most {MAX_HOPS} hops")),
                "wan-fixed" => {
                    r.wan_fixed.get(n).filter(|t| t.0 > MAX_PATH_PART_NS).map(|t| format!("at most 1s, got {t}"))
                }
                _ => None,
            };
            if let Some(want) = bad {
                return Err(ctx.invalid(key, format!("{n}: expected {want}")));
            }
            if !site_names.contains(&n.as_str()) {
                let hint = closest(n, &site_names).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
                return Err(
                    ctx.invalid(key, format!("unknown site {n:?}, expected one of {}{hint}", site_names.join(", ")))
                );
            }
        }
    }
    Ok(sites
        .iter()
        .map(|s| {
            let (factor, mut default_fixed) = d.route(r.continent, s.continent);
            let fiber = match (r.fiber.get(&s.name), r.distance.get(&s.name), r.location, s.location) {
                (Some(f), ..) => Some(*f),
                (None, Some(g), ..) => Some(Meters((g.0 as f64 * factor).round() as u64)),
                (None, None, Some([lat, lon]), Some([slat, slon])) => {
                    let p = d.wan_path(
                        Place { lat, lon, continent: r.continent },
                        Place { lat: slat, lon: slon, continent: s.continent },
                    );
                    default_fixed = p.fixed;
                    Some(Meters((p.fiber_km * 1e6).round() as u64)) // km to mm
                }
                _ => None,
            };
            fiber.map(|fiber| {
                let hops = s.access_hops + r.hops.get(&s.name).copied().unwrap_or(0); // each at most MAX_HOPS
                let fixed = r.wan_fixed.get(&s.name).copied().unwrap_or(default_fixed);
                let one_way =
                    Nanos(last_mile.0 + fiber.propagation(per_km).0 + s.hop_latency.0 * u64::from(hops) + fixed.0);
                Path { fiber, hops, one_way }
            })
        })
        .collect())
}

/// The most GPUs a site may have (see [`validate_site`]).
const MAX_SITE_GPUS: u32 = 1 << 20;
/// The most hops a path may have (an assumption: far past any real route).
const MAX_HOPS: u32 = 1_000;
/// The longest a hop, a last mile or a path's fixed cost may take: 1 s (an assumption, far
/// past any real path), so a path's latency stays far inside the clock.
const MAX_PATH_PART_NS: u64 = 1_000_000_000;
/// The longest fibre or distance a region's path may have: 50,000 km, as a custom link's.
const MAX_PATH_MM: u64 = 50_000_000_000;

fn validate_region(
    r: &RegionConfig,
    ctx: &Ctx,
    d: &InferenceDefaults,
    models: &[Model],
    sites: &[Site],
    per_km: Nanos,
    earlier: &[Region],
) -> Result<Region, FabricError> {
    if r.name.trim().is_empty() || earlier.iter().any(|x| x.name == r.name) {
        return Err(ctx.invalid("name", format!("expected a unique non-empty region name, got {:?}", r.name)));
    }
    if let Some(why) = meshway_units::unprintable(&r.name) {
        return Err(ctx.invalid("name", format!("expected printable text, got {why}")));
    }
    let rate = match (r.rate, r.concurrency) {
        (Some(_), Some(_)) => {
            return Err(
                ctx.invalid("concurrency", "give either `rate` (open loop) or `concurrency` (closed loop), not both")
            )
        }
        (None, None) => {
            return Err(ctx.invalid("rate", "expected `rate` (requests per second) or `concurrency` (users)"))
        }
        (Some(rate), None) => {
            if !(rate.is_finite() && (0.0..=1e7).contains(&rate)) {
                return Err(ctx.invalid(
                    "rate",
                    format!("expected 0 to 10000000 requests per second, got {}", meshway_units::shown(rate)),
                ));
            }
            rate
        }
        (None, Some(c)) => {
            if c == 0 || c > 1_000_000 {
                return Err(ctx.invalid("concurrency", format!("expected 1 to 1000000 users, got {c}")));
            }
            if r.arrivals.is_some() || r.profile.is_some() {
                return Err(ctx.invalid("concurrency", "a closed loop has no arrival process or daily profile"));
            }
            0.0
        }
    };
    for (key, v) in [("ttft-p99", r.ttft_p99), ("tpot-p99", r.tpot_p99)] {
        if v.is_some_and(|t| t.0 == 0) {
            return Err(
                ctx.invalid(key, "expected an objective above 0 (such as \"500ms\"): at 0 every request misses")
            );
        }
    }
    if let Some(n) = r.requests {
        if r.concurrency.is_some() {
            return Err(ctx.invalid(
                "requests",
                "a closed loop (`concurrency`) runs for the duration; `requests` caps an open loop (`rate`)",
            ));
        }
        if !(1..=1_000_000_000).contains(&n) {
            return Err(ctx.invalid("requests", format!("expected 1 to 1000000000 requests, got {n}")));
        }
    }
    let model = find_model(ctx, models, &r.model)?;
    let arrivals = arrivals(r, ctx)?;
    if r.requests.is_some() && (rate <= 0.0 || !matches!(arrivals, Arrivals::Poisson) || r.profile.is_some()) {
        return Err(ctx.invalid(
            "requests",
            "a request count sends that many requests at Poisson times over requests / rate: it needs a positive `rate`, Poisson `arrivals` and no `profile`",
        ));
    }
    if let Some(p) = &r.profile {
        if p.len() != 24 {
            return Err(ctx.invalid("profile", format!("expected 24 hourly multipliers, got {}", p.len())));
        }
        if let Some(x) = p.iter().find(|x| !(x.is_finite() && **x >= 0.0)) {
            return Err(ctx.invalid(
                "profile",
                format!("expected non-negative hourly multipliers, got {}", meshway_units::shown(*x)),
            ));
        }
    }
    let off = r.utc_offset_hours.unwrap_or(0.0);
    if !(-12.0..=14.0).contains(&off) || (off * 4.0).fract() != 0.0 {
        return Err(ctx.invalid(
            "utc-offset-hours",
            format!(
                "expected whole quarter hours from -12 to 14 (5.5 for India, 5.75 for Nepal), got {}",
                meshway_units::shown(off)
            ),
        ));
    }
    let last_mile = r.last_mile.unwrap_or(d.last_mile);
    if last_mile.0 > MAX_PATH_PART_NS {
        return Err(ctx.invalid("last-mile", format!("expected at most 1s, got {last_mile}")));
    }
    let paths = region_paths(r, ctx, d, sites, per_km, last_mile)?;
    if !sites.iter().zip(&paths).any(|(s, p)| p.is_some() && s.model == model) {
        return Err(ctx.invalid(
            "distance",
            format!("region {:?} has no distance or fiber to any site serving model {:?} (or give `location` on the region and the site)", r.name, models[model].name),
        ));
    }
    let region = Region {
        name: r.name.clone(),
        rate,
        concurrency: r.concurrency,
        requests: r.requests,
        arrivals,
        profile: r.profile.clone(),
        utc_offset_minutes: (off * 60.0) as i32,
        last_mile,
        ttft_p99: r.ttft_p99.unwrap_or(d.ttft_p99),
        tpot_p99: r.tpot_p99,
        model,
        paths,
    };
    let peak = region.peak_rate();
    if peak > 1e7 {
        return Err(ctx.invalid(
            if region.top_multiplier() > 1.0 { "profile" } else { "burst-factor" },
            format!(
                "the peak arrival rate (rate x largest profile multiplier x burst factor) would be {peak:.3e} requests per second; expected at most 10000000"
            ),
        ));
    }
    Ok(region)
}

/// Validates the `[inference]`, `[[model]]`, `[[region]]` and inference `[[site]]` keys.
pub fn from_scenario(sc: &Scenario, cat: &Catalog) -> Result<InferSpec, FabricError> {
    let cfg = &sc.config;
    let file = sc.file.as_str();
    let top = Ctx::new(file, &sc.text, "", 0, "");
    let catalog_error = |message: &str| FabricError::Catalog {
        file: file.to_string(),
        entry: "inference".into(),
        message: message.into(),
    };
    let d: &InferenceDefaults =
        cat.inference.as_ref().ok_or_else(|| catalog_error("the catalog has no [inference] section of defaults"))?;
    if !(d.target_utilization > 0.0 && d.target_utilization <= 1.0) {
        return Err(catalog_error(&format!("target-utilization must be in (0, 1], got {}", d.target_utilization)));
    }
    if cfg.region.is_empty() {
        return Err(top.invalid("region", "no [[region]] tables: an inference scenario needs user regions"));
    }
    if cfg.model.is_empty() {
        return Err(top.invalid("model", "no [[model]] table: an inference scenario needs a model"));
    }
    if cfg.site.is_empty() {
        return Err(top.invalid("site", "no [[site]] tables: an inference scenario needs sites"));
    }
    let inf = cfg.inference.clone().unwrap_or_default();
    let policy = match inf.policy {
        None | Some(PolicyConfig::LatencyAware) => Policy::LatencyAware,
        Some(PolicyConfig::Nearest) => Policy::Nearest,
        Some(PolicyConfig::LeastLoaded) => Policy::LeastLoaded,
    };
    let duration = inf.duration.unwrap_or(d.duration);
    if duration.0 == 0 || duration.0 > 366 * 86_400 * 1_000_000_000 {
        let ictx = Ctx::new(file, &sc.text, "inference", 0, "inference");
        let from = if inf.duration.is_none() { " (the catalog's [inference] duration)" } else { "" };
        return Err(ictx.invalid("duration", format!("expected a duration between 1ns and 366 days{from}")));
    }
    let mut models = Vec::new();
    for (i, m) in cfg.model.iter().enumerate() {
        let dir = std::path::Path::new(&sc.file).parent().unwrap_or(std::path::Path::new("."));
        let model = validate_model(m, &at(sc, "model", i), d, cat, dir, &models)?;
        models.push(model);
    }
    let mut sites = Vec::new();
    for (i, s) in cfg.site.iter().enumerate() {
        let site = validate_site(s, &at(sc, "site", i), d, &models, &sites)?;
        sites.push(site);
    }
    let per_km = cat.constants.fiber_delay_per_km;
    let mut regions = Vec::new();
    for (i, r) in cfg.region.iter().enumerate() {
        let region = validate_region(r, &at(sc, "region", i), d, &models, &sites, per_km, &regions)?;
        regions.push(region);
    }
    let dcis = validate_dcis(sc, cat, &models, &sites, &regions)?;
    let failover_detect = inf.failover_detect.unwrap_or(d.failover_detect);
    if !(1_000_000..=3_600_000_000_000).contains(&failover_detect.0) {
        let ictx = Ctx::new(file, &sc.text, "inference", 0, "inference");
        let from = if inf.failover_detect.is_none() { " (the catalog's [inference] failover-detect)" } else { "" };
        return Err(ictx.invalid(
            "failover-detect",
            format!("expected 1ms to 1h (users resend after it), got {failover_detect}{from}"),
        ));
    }
    let spec = InferSpec {
        name: sc.name.clone(),
        policy,
        duration,
        seed: cfg.seed.unwrap_or(1),
        target_utilization: d.target_utilization,
        failover_detect,
        models,
        sites,
        regions,
        dcis,
    };
    Ok(spec)
}

/// The `[[dci]]` links between inference sites, and the checks of disaggregated serving:
/// a prefill site serves a shaped model (its KV bytes per token) and reaches, for every
/// region that can route to it, a decode site the region also reaches.
fn validate_dcis(
    sc: &Scenario,
    cat: &Catalog,
    models: &[Model],
    sites: &[Site],
    regions: &[Region],
) -> Result<Vec<Dci>, FabricError> {
    let per_km = cat.constants.fiber_delay_per_km;
    let names: Vec<&str> = sites.iter().map(|s| s.name.as_str()).collect();
    let mut out = Vec::new();
    for (i, d) in sc.config.dci.iter().enumerate() {
        let ctx = at(sc, "dci", i);
        let find = |key: &str, n: &str| {
            names.iter().position(|x| *x == n).ok_or_else(|| {
                let hint = closest(n, &names).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
                ctx.invalid(key, format!("unknown site {n:?}, expected one of {}{hint}", names.join(", ")))
            })
        };
        let (a, b) = (find("a", &d.a)?, find("b", &d.b)?);
        if a == b {
            return Err(ctx.invalid("b", "a dci link joins two different sites"));
        }
        // As a training fabric's: the second link between a pair was never used.
        if let Some(k) =
            sc.config.dci[..i].iter().position(|e| (e.a == d.a && e.b == d.b) || (e.a == d.b && e.b == d.a))
        {
            return Err(ctx.invalid(
                "b",
                format!(
                    "{} and {} are already joined by dci[{}]: give one link per pair of sites, with more capacity or wavelengths",
                    d.a,
                    d.b,
                    k + 1
                ),
            ));
        }
        if d.capacity.is_some() {
            for (key, set) in [("optic", d.optic.is_some()), ("wavelengths", d.wavelengths.is_some())] {
                if set {
                    return Err(ctx.invalid(
                        key,
                        "give either `capacity` (a routed path's rate) or `optic` and `wavelengths`, not both",
                    ));
                }
            }
        }
        if d.distance.0 > MAX_PATH_MM {
            return Err(ctx.invalid(
                "distance",
                format!(
                    "expected at most 50000km (past any path on Earth), got {}",
                    d.distance.shown_against(Meters(MAX_PATH_MM)).0
                ),
            ));
        }
        let capacity_bps = match d.capacity {
            Some(c) if c.0 > 0 => c.0 as f64,
            Some(_) => return Err(ctx.invalid("capacity", "expected a positive rate such as \"400Gbps\"")),
            None => {
                let optic = match &d.optic {
                    Some(n) => {
                        cat.optic_index(n).ok_or_else(|| ctx.invalid("optic", format!("unknown optic {n:?}")))?
                    }
                    None => cat.choose_coherent(d.distance).ok_or_else(|| {
                        let farthest = cat
                            .optic
                            .iter()
                            .filter(|o| o.class == meshway_fabric::catalog::OpticClass::Coherent)
                            .max_by_key(|o| o.reach);
                        let what = match farthest {
                            Some(o) => format!(
                                "{}: the farthest, {}, reaches {}",
                                d.distance.shown_against(o.reach).0,
                                o.name,
                                o.reach
                            ),
                            None => d.distance.to_string(),
                        };
                        ctx.invalid(
                            "distance",
                            format!(
                                "no coherent optic in the catalog reaches {what}; give `capacity` for a routed path"
                            ),
                        )
                    })?,
                };
                // A named optic must reach the span, as on a multi-site fabric (a 400ZR over
                // 5,000 km was taken at its full rate); a routed path (`capacity`) is not an
                // optic's span.
                if let Some(why) = cat.beyond_reach(optic, d.distance, "give `capacity` for a routed path") {
                    return Err(ctx.invalid("distance", why));
                }
                let w = d.wavelengths.unwrap_or(1);
                if w == 0 || w > 4096 {
                    return Err(ctx.invalid("wavelengths", format!("expected 1 to 4096, got {w}")));
                }
                cat.optic[optic as usize].rate.0 as f64 * f64::from(w)
            }
        };
        let background = d.background.unwrap_or(0.0);
        if !(0.0..1.0).contains(&background) {
            return Err(ctx.invalid(
                "background",
                format!("expected a share in [0, 1), got {}", meshway_units::shown(background)),
            ));
        }
        if capacity_bps * (1.0 - background) < 1e6 {
            // Blame the key the user gave: the capacity alone when there is no background.
            let key = if d.background.is_some() { "background" } else { "capacity" };
            return Err(ctx.invalid(
                key,
                format!(
                    "the capacity left for KV transfers ({:.0} b/s: capacity x (1 - background)) is below 1 Mb/s (1000000 b/s)",
                    (capacity_bps * (1.0 - background)).floor()
                ),
            ));
        }
        out.push(Dci { a, b, capacity_bps, background, distance: d.distance, one_way: d.distance.propagation(per_km) });
    }
    for (i, r) in regions.iter().enumerate() {
        if !sites.iter().zip(&r.paths).any(|(s, p)| p.is_some() && s.model == r.model && s.role != SiteRole::Decode) {
            return Err(at(sc, "region", i).invalid(
                "distance",
                format!(
                    "region {:?} reaches only decode sites; it needs a distance to a prefill (or both) site",
                    r.name
                ),
            ));
        }
    }
    for (p, site) in sites.iter().enumerate().filter(|(_, s)| s.role == SiteRole::Prefill) {
        let ctx = at(sc, "site", p);
        if matches!(models[site.model].cost, Cost::Rated { .. }) {
            return Err(ctx.invalid(
                "role",
                format!("a prefill site hands KV caches on, so its model {:?} needs a shape (`llm` and `gpu`) for their bytes", models[site.model].name),
            ));
        }
        let decode: Vec<usize> = decode_links(&out, sites, p).into_iter().map(|(_, d)| d).collect();
        if decode.is_empty() {
            return Err(ctx.invalid(
                "role",
                format!("prefill site {:?} has no [[dci]] link to a decode site serving its model", site.name),
            ));
        }
        for r in regions.iter().filter(|r| r.paths[p].is_some() && r.model == site.model) {
            if !decode.iter().any(|&d| r.paths[d].is_some()) {
                return Err(ctx.invalid(
                    "role",
                    format!(
                        "region {:?} can reach prefill site {:?} but none of its decode sites ({}): give the region a distance to one",
                        r.name,
                        site.name,
                        decode.iter().map(|&d| sites[d].name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }
    // A decode site only prefill sites feed: without a link from one it would sit idle and
    // still be billed.
    for (d, site) in sites.iter().enumerate().filter(|(_, s)| s.role == SiteRole::Decode) {
        let fed = out.iter().any(|l| {
            let other = if l.a == d {
                l.b
            } else if l.b == d {
                l.a
            } else {
                return false;
            };
            sites[other].role == SiteRole::Prefill && sites[other].model == site.model
        });
        if !fed {
            return Err(at(sc, "site", d).invalid(
                "role",
                format!("decode site {:?} has no [[dci]] link to a prefill site serving its model", site.name),
            ));
        }
    }
    Ok(out)
}
