//! The inference part of the scenario file as written: `[inference]`, `[[model]]`,
//! `[[region]]` and the inference keys of `[[site]]` (in [`crate::config::SiteConfig`]).
//! Only syntax lives here; `meshway-infer` validates these into a runnable model.

use meshway_units::{Meters, Nanos};
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

/// `[[model]]`: serving characteristics of one model replica ("server").
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    /// GPUs one server (model replica) occupies.
    pub gpus_per_server: Option<u32>,
    /// Prompt tokens per second one server prefills.
    pub prefill_tokens_per_s: f64,
    /// Output tokens per second one server decodes, shared by its batch.
    pub decode_tokens_per_s: f64,
    /// Upper bound on one stream's decode rate (default: no bound beyond the share).
    pub decode_tokens_per_s_per_request: Option<f64>,
    /// Requests one server holds at once (continuous batching).
    pub max_batch: u32,
    /// Mean prompt and output lengths in tokens.
    pub prompt_tokens: u32,
    pub output_tokens: u32,
    /// Distribution of prompt and output lengths around their means (default fixed).
    pub length_dist: Option<LengthDistConfig>,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

/// `[[region]]`: a user population.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    /// Mean requests per second.
    pub rate: f64,
    /// Arrival process (default poisson).
    pub arrivals: Option<ArrivalsConfig>,
    /// Bursty: rate while "on" as a multiple of the mean rate.
    pub burst_factor: Option<f64>,
    /// Bursty: mean lengths of the on and off periods (exponential).
    pub burst_on: Option<Nanos>,
    pub burst_off: Option<Nanos>,
    /// Daily profile: 24 hourly multipliers of `rate` (local hour = UTC hour + utc-offset-hours).
    pub profile: Option<Vec<f64>>,
    pub utc_offset_hours: Option<i32>,
    /// Access latency from a user to the region's network edge, one way.
    pub last_mile: Option<Nanos>,
    /// Objective: p99 time to first token.
    pub ttft_p99: Option<Nanos>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SiteTier {
    Edge,
    Central,
}

/// How each request picks a site among the reachable, healthy sites serving its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyConfig {
    /// Lowest network latency.
    Nearest,
    /// Fewest requests in the site per batch slot.
    LeastLoaded,
    /// Lowest estimated time to first token.
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
