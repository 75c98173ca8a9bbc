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
    /// Routing of each request to a site: nearest | least-loaded | latency-aware.
    pub policy: Option<String>,
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
    /// fixed | exponential | uniform (uniform on 1 ..= 2 x mean - 1); applies to both lengths.
    pub length_dist: Option<String>,
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
    /// poisson | bursty (on/off Markov-modulated Poisson).
    pub arrivals: Option<String>,
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
