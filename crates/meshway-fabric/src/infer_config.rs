//! The inference part of the scenario file as written: `[inference]`, `[[model]]`,
//! `[[region]]` and the inference keys of `[[site]]` (in [`crate::config::SiteConfig`]).
//! Only syntax lives here; `meshway-infer` validates these into a runnable model.

use meshway_units::{Bytes, Meters, Nanos};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[inference]`: run settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InferenceConfig {
    /// Routing of each request to a site (default latency-aware).
    pub policy: Option<PolicyConfig>,
    /// Simulated time during which requests arrive (default 10min).
    pub duration: Option<Nanos>,
    /// Time for users to notice a failed site and resend elsewhere (default: catalog).
    pub failover_detect: Option<Nanos>,
}

/// `[[model]]`: one model replica ("server") and its requests. Either rated (`prefill-tokens-per-s`
/// and `decode-tokens-per-s`, measured figures for one server) or built from a shape (`llm` and
/// `gpu`, catalog entries: step times from FLOPs and memory traffic, KV-cache memory).
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    /// GPUs one server (model replica) occupies (tensor parallel).
    pub gpus_per_server: Option<u32>,
    /// Rated: prompt tokens per second one server prefills.
    pub prefill_tokens_per_s: Option<f64>,
    /// Rated: output tokens per second one server decodes, shared by its batch.
    pub decode_tokens_per_s: Option<f64>,
    /// Rated: upper bound on one stream's decode rate (default: no bound beyond the share).
    pub decode_tokens_per_s_per_request: Option<f64>,
    /// Shape: the catalog's `[[llm]]` entry (layers, widths, parameters).
    pub llm: Option<String>,
    /// Shape: the catalog's `[[gpu]]` entry (memory, bandwidth, FLOP/s).
    pub gpu: Option<String>,
    /// Shape: precision of weights and matrix work (default fp8 where the GPU has it, else bf16).
    pub precision: Option<PrecisionConfig>,
    /// Shape: precision of the KV cache (default: `precision`; fp8 for fp4 weights where the GPU
    /// has FP8).
    pub kv_precision: Option<PrecisionConfig>,
    /// Requests one server holds at once (default: catalog `[serving] max-batch`).
    pub max_batch: Option<u32>,
    /// Shape: split prompts into chunks that share steps with decoding (default true).
    pub chunked_prefill: Option<bool>,
    /// Shape: tokens one step may process (default: catalog `[serving] token-budget`).
    pub token_budget: Option<u32>,
    /// Shape: share of prompt tokens found in the prefix cache (not prefilled again).
    pub prefix_cache_hit: Option<f64>,
    /// Shape: speculative decoding, draft tokens per step.
    pub speculative_draft_tokens: Option<u32>,
    /// Shape: speculative decoding, probability that each draft token is accepted.
    pub speculative_acceptance: Option<f64>,
    /// Shape: overrides of the catalog's `[serving]` figures for this engine.
    pub flops_efficiency: Option<f64>,
    pub bandwidth_efficiency: Option<f64>,
    pub memory_utilization: Option<f64>,
    pub memory_reserve: Option<Bytes>,
    pub step_overhead: Option<Nanos>,
    pub request_overhead: Option<Nanos>,
    /// Mean prompt and output lengths in tokens (or `lengths`).
    pub prompt_tokens: Option<u32>,
    pub output_tokens: Option<u32>,
    /// Distribution of prompt and output lengths around their means (default fixed).
    pub length_dist: Option<LengthDistConfig>,
    /// A CSV of `prompt,output` lengths (optional `count` column), relative to the scenario
    /// file: each request draws one row.
    pub lengths: Option<String>,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

/// Number format of weights, matrix work or the KV cache. `fp4` is NVIDIA's NVFP4: 4-bit
/// E2M1 values with one 8-bit E4M3 scale per block of 16 (and one FP32 scale per tensor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PrecisionConfig {
    Bf16,
    Fp16,
    Fp8,
    Fp4,
}

impl PrecisionConfig {
    /// Bytes per value, block scales included (NVFP4: 4 bits + 8 / 16 = 4.5 bits; the format
    /// as Intel Neural Compressor's NVFP4 page tabulates it: E2M1 elements of 4 bits, blocks
    /// of 16, UE4M3 scales of 8 bits, one FP32 scale per tensor, not counted).
    pub fn bytes(self) -> f64 {
        match self {
            PrecisionConfig::Bf16 | PrecisionConfig::Fp16 => 2.0,
            PrecisionConfig::Fp8 => 1.0,
            PrecisionConfig::Fp4 => 4.5 / 8.0,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            PrecisionConfig::Bf16 => "bf16",
            PrecisionConfig::Fp16 => "fp16",
            PrecisionConfig::Fp8 => "fp8",
            PrecisionConfig::Fp4 => "fp4",
        }
    }
}

/// `[[region]]`: a user population.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    /// Mean requests per second (or `concurrency`).
    pub rate: Option<f64>,
    /// Closed loop: this many users, each sending its next request as soon as the last one
    /// has streamed back (as a benchmark client with a fixed concurrency does).
    pub concurrency: Option<u32>,
    /// Open loop: exactly this many requests at Poisson times over `requests / rate` (a
    /// Poisson process given its count, as a benchmark of N requests at a rate sends them);
    /// the run's duration still cuts them off if it is shorter.
    #[schemars(range(min = 1, max = 1_000_000_000))]
    pub requests: Option<u64>,
    /// Arrival process (default poisson).
    pub arrivals: Option<ArrivalsConfig>,
    /// Bursty: rate while "on" as a multiple of the mean rate.
    pub burst_factor: Option<f64>,
    /// Bursty: mean lengths of the on and off periods (exponential).
    pub burst_on: Option<Nanos>,
    pub burst_off: Option<Nanos>,
    /// Daily profile: 24 hourly multipliers of `rate` (local hour = UTC hour + utc-offset-hours).
    pub profile: Option<Vec<f64>>,
    /// The region's offset from UTC in hours, whole quarter hours from -12 to 14 (India is
    /// 5.5, Nepal 5.75).
    pub utc_offset_hours: Option<f64>,
    /// Access latency from a user to the region's network edge, one way.
    pub last_mile: Option<Nanos>,
    /// Where the region is: with the site's continent, picks the catalog's route factor and
    /// fixed cost for that pair of continents (`[[inference.wan-route]]`).
    pub continent: Option<Continent>,
    /// Latitude and longitude in degrees. With a site's `location`, the path to that site
    /// needs no `distance`: the great circle between them times the route factor, or,
    /// between two continents, routed over the catalog's cable landings
    /// (`[[inference.wan-gateway]]`, `[[inference.wan-cable]]`).
    pub location: Option<[f64; 2]>,
    /// Objective: p99 time to first token.
    pub ttft_p99: Option<Nanos>,
    /// Objective: p99 time per output token after the first (a request's mean).
    pub tpot_p99: Option<Nanos>,
    /// The model the region's users call (default: the only model).
    pub model: Option<String>,
    /// Great-circle distance to each site (fiber = distance x route factor).
    #[serde(default)]
    pub distance: BTreeMap<String, Meters>,
    /// Fiber route length to each site (overrides distance).
    #[serde(default)]
    pub fiber: BTreeMap<String, Meters>,
    /// Extra router hops on the way to each site (added to the site's access hops).
    #[serde(default)]
    pub hops: BTreeMap<String, u32>,
    /// Fixed one-way cost of the path to each site beyond fibre and hops (overrides the
    /// catalog's `wan-fixed`).
    #[serde(default)]
    pub wan_fixed: BTreeMap<String, Nanos>,
}

/// A continent, for the wide-area route model: paths between two continents detour from the
/// great circle by amounts that depend on the pair (Europe to East Asia far more than across
/// the Atlantic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Continent {
    NorthAmerica,
    SouthAmerica,
    Europe,
    AsiaPacific,
    MiddleEast,
    Africa,
}

impl Continent {
    /// The name a scenario spells it with (`north-america`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Continent::NorthAmerica => "north-america",
            Continent::SouthAmerica => "south-america",
            Continent::Europe => "europe",
            Continent::AsiaPacific => "asia-pacific",
            Continent::MiddleEast => "middle-east",
            Continent::Africa => "africa",
        }
    }

    /// The short code validation tables use (NA, SA, EU, APAC, ME, AF).
    pub fn code(self) -> &'static str {
        match self {
            Continent::NorthAmerica => "NA",
            Continent::SouthAmerica => "SA",
            Continent::Europe => "EU",
            Continent::AsiaPacific => "APAC",
            Continent::MiddleEast => "ME",
            Continent::Africa => "AF",
        }
    }

    /// The continent with this short code.
    pub fn from_code(code: &str) -> Option<Continent> {
        [
            Continent::NorthAmerica,
            Continent::SouthAmerica,
            Continent::Europe,
            Continent::AsiaPacific,
            Continent::MiddleEast,
            Continent::Africa,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SiteTier {
    Edge,
    Central,
}

/// What a site's servers do in disaggregated serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SiteRole {
    /// Prefill and decode (no KV transfer).
    Both,
    /// Prefill only: the first token, then the KV cache moves to a decode site.
    Prefill,
    /// Decode only: takes KV caches from prefill sites.
    Decode,
}

/// How each request picks a site among the reachable, healthy sites serving its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyConfig {
    /// Lowest network latency.
    Nearest,
    /// Fewest requests in the site per batch slot.
    LeastLoaded,
    /// Lowest estimated time to first token among the sites whose estimates keep the
    /// region's objectives (time to first token, and time per output token where set).
    LatencyAware,
}

/// Prompt and output lengths around their means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LengthDistConfig {
    /// Every request has the mean lengths.
    Fixed,
    /// Exponential with the mean.
    Exponential,
    /// Uniform on 1 ..= 2 x mean - 1.
    Uniform,
}

/// A region's arrival process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ArrivalsConfig {
    Poisson,
    /// On/off Markov-modulated Poisson (`burst-factor`, `burst-on`, `burst-off`).
    Bursty,
}
