//! Validation of the inference part of a scenario into a runnable [`InferSpec`].
//! Errors are [`FabricError::Invalid`] naming the file, line and key, like the planner's.

use meshway_fabric::catalog::InferenceDefaults;
use meshway_fabric::config::SiteConfig;
use meshway_fabric::error::closest;
use meshway_fabric::infer_config::{
    ArrivalsConfig, LengthDistConfig, ModelConfig, PolicyConfig, RegionConfig, SiteTier,
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
    /// Lowest estimated time to first token: round trip + prefill + estimated queueing.
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

#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub name: String,
    pub gpus_per_server: u32,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    /// One stream's decode ceiling (infinite when not given).
    #[serde(skip)]
    pub decode_cap: f64,
    pub max_batch: u32,
    pub prompt_tokens: u32,
    pub output_tokens: u32,
    pub length_dist: LengthDist,
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
    /// Prefill time of a prompt of `tokens` on an otherwise idle server.
    pub fn prefill_ns(&self, tokens: u32) -> u64 {
        token_time(f64::from(tokens), self.prefill_tokens_per_s)
    }
    /// Decode rate of each of `k` streams sharing a server: min(cap, D / k).
    pub fn stream_rate(&self, k: usize) -> f64 {
        (self.decode_tokens_per_s / k.max(1) as f64).min(self.decode_cap)
    }
    /// Requests per second one server completes with its batch full: one request costs its
    /// prefill (alone on the server) plus its output tokens at the server's full-batch decode
    /// rate, min(D, max-batch x cap).
    pub fn server_capacity(&self) -> f64 {
        let decode = self.decode_tokens_per_s.min(f64::from(self.max_batch) * self.decode_cap);
        let t = f64::from(self.prompt_tokens) / self.prefill_tokens_per_s
            + f64::from(self.output_tokens.saturating_sub(1)) / decode;
        1.0 / t
    }
    /// The prompt length at the 99th percentile of the length distribution.
    pub fn prompt_p99(&self) -> u32 {
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
    pub rate: f64,
    pub arrivals: Arrivals,
    pub profile: Option<Vec<f64>>,
    pub utc_offset_hours: i32,
    pub last_mile: Nanos,
    pub ttft_p99: Nanos,
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
                let h = (t_ns / 3_600_000_000_000) as i64 + i64::from(self.utc_offset_hours);
                p[h.rem_euclid(24) as usize]
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
}

impl InferSpec {
    /// Servers at each site as configured.
    pub fn servers(&self) -> Vec<u32> {
        self.sites.iter().map(|s| s.gpus / self.models[s.model].gpus_per_server).collect()
    }
}

fn pos(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// Where a table of the scenario is, for messages (`model[2]`, counted from 1).
fn at<'a>(sc: &'a Scenario, section: &str, i: usize) -> Ctx<'a> {
    Ctx::new(&sc.file, &sc.text, section, i, &format!("{section}[{}]", i + 1))
}

fn validate_model(m: &ModelConfig, ctx: &Ctx, d: &InferenceDefaults, earlier: &[Model]) -> Result<Model, FabricError> {
    if m.name.trim().is_empty() || earlier.iter().any(|x| x.name == m.name) {
        return Err(ctx.invalid("name", format!("expected a unique non-empty model name, got {:?}", m.name)));
    }
    for (k, v) in [("prefill-tokens-per-s", m.prefill_tokens_per_s), ("decode-tokens-per-s", m.decode_tokens_per_s)] {
        if !pos(v) {
            return Err(ctx.invalid(k, format!("expected a positive number, got {v}")));
        }
    }
    if let Some(c) = m.decode_tokens_per_s_per_request {
        if !pos(c) {
            return Err(ctx.invalid("decode-tokens-per-s-per-request", format!("expected a positive number, got {c}")));
        }
    }
    if m.max_batch == 0 || m.max_batch > 4096 {
        return Err(ctx.invalid("max-batch", format!("expected 1 to 4096, got {}", m.max_batch)));
    }
    for (k, v) in [("prompt-tokens", m.prompt_tokens), ("output-tokens", m.output_tokens)] {
        if v == 0 || v > 10_000_000 {
            return Err(ctx.invalid(k, format!("expected 1 to 10000000 tokens, got {v}")));
        }
    }
    let gps = m.gpus_per_server.unwrap_or(d.gpus_per_server);
    if gps == 0 {
        return Err(ctx.invalid("gpus-per-server", "expected at least 1"));
    }
    let length_dist = match m.length_dist {
        None | Some(LengthDistConfig::Fixed) => LengthDist::Fixed,
        Some(LengthDistConfig::Exponential) => LengthDist::Exponential,
        Some(LengthDistConfig::Uniform) => LengthDist::Uniform,
    };
    Ok(Model {
        name: m.name.clone(),
        gpus_per_server: gps,
        prefill_tokens_per_s: m.prefill_tokens_per_s,
        decode_tokens_per_s: m.decode_tokens_per_s,
        decode_cap: m.decode_tokens_per_s_per_request.unwrap_or(f64::INFINITY),
        max_batch: m.max_batch,
        prompt_tokens: m.prompt_tokens,
        output_tokens: m.output_tokens,
        length_dist,
    })
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
    let model = find_model(ctx, models, &s.model)?;
    let gps = models[model].gpus_per_server;
    let gpus = s.gpus.or(s.fabric.as_ref().and_then(|f| f.gpus)).unwrap_or(0);
    if !gpus.is_multiple_of(gps) {
        return Err(ctx.invalid(
            "gpus",
            format!("{gpus} GPUs is not a whole number of {gps}-GPU servers of model {:?}", models[model].name),
        ));
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
    if !(gpu_hour_usd.is_finite() && gpu_hour_usd >= 0.0) {
        return Err(ctx.invalid("gpu-hour-usd", format!("expected a non-negative price, got {gpu_hour_usd}")));
    }
    Ok(Site {
        name: s.name.clone(),
        tier,
        gpus,
        max_gpus,
        gpu_hour_usd,
        access_hops: s.access_hops.unwrap_or(d.access_hops),
        hop_latency: s.hop_latency.unwrap_or(d.hop_latency),
        model,
    })
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
            if on.0 == 0 || off.0 == 0 {
                return Err(ctx.invalid("burst-on", "expected positive on and off periods"));
            }
            let share = on.0 as f64 / (on.0 + off.0) as f64;
            if !(factor.is_finite() && factor >= 1.0 && factor * share <= 1.0 + 1e-12) {
                return Err(ctx.invalid(
                    "burst-factor",
                    format!(
                        "expected 1 to {:.3} (on-time share {:.3}: the on periods alone would exceed the mean rate), got {factor}",
                        1.0 / share,
                        share
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
    let site_names: Vec<&str> = sites.iter().map(|s| s.name.as_str()).collect();
    for (key, names) in [
        ("distance", r.distance.keys().collect::<Vec<_>>()),
        ("fiber", r.fiber.keys().collect()),
        ("hops", r.hops.keys().collect()),
    ] {
        for n in names {
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
            let fiber = match (r.fiber.get(&s.name), r.distance.get(&s.name)) {
                (Some(f), _) => Some(*f),
                (None, Some(g)) => Some(Meters((g.0 as f64 * d.route_factor).round() as u64)),
                (None, None) => None,
            };
            fiber.map(|fiber| {
                let hops = s.access_hops + r.hops.get(&s.name).copied().unwrap_or(0);
                let one_way = Nanos(last_mile.0 + fiber.propagation(per_km).0 + s.hop_latency.0 * u64::from(hops));
                Path { fiber, hops, one_way }
            })
        })
        .collect())
}

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
    if !(r.rate.is_finite() && r.rate >= 0.0 && r.rate <= 1e7) {
        return Err(ctx.invalid("rate", format!("expected 0 to 10000000 requests per second, got {}", r.rate)));
    }
    let model = find_model(ctx, models, &r.model)?;
    let arrivals = arrivals(r, ctx)?;
    if let Some(p) = &r.profile {
        if p.len() != 24 || p.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
            return Err(ctx.invalid("profile", format!("expected 24 non-negative hourly multipliers, got {}", p.len())));
        }
    }
    let off = r.utc_offset_hours.unwrap_or(0);
    if !(-12..=14).contains(&off) {
        return Err(ctx.invalid("utc-offset-hours", format!("expected -12 to 14, got {off}")));
    }
    let last_mile = r.last_mile.unwrap_or(d.last_mile);
    let paths = region_paths(r, ctx, d, sites, per_km, last_mile)?;
    if !sites.iter().zip(&paths).any(|(s, p)| p.is_some() && s.model == model) {
        return Err(ctx.invalid(
            "distance",
            format!("region {:?} has no distance or fiber to any site serving model {:?}", r.name, models[model].name),
        ));
    }
    Ok(Region {
        name: r.name.clone(),
        rate: r.rate,
        arrivals,
        profile: r.profile.clone(),
        utc_offset_hours: off,
        last_mile,
        ttft_p99: r.ttft_p99.unwrap_or(d.ttft_p99),
        model,
        paths,
    })
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
        return Err(catalog_error("target-utilization must be in (0, 1]"));
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
        return Err(ictx.invalid("duration", "expected a duration between 1ns and 366 days"));
    }
    let mut models = Vec::new();
    for (i, m) in cfg.model.iter().enumerate() {
        let model = validate_model(m, &at(sc, "model", i), d, &models)?;
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
    Ok(InferSpec {
        name: sc.name.clone(),
        policy,
        duration,
        seed: cfg.seed.unwrap_or(1),
        target_utilization: d.target_utilization,
        failover_detect: inf.failover_detect.unwrap_or(d.failover_detect),
        models,
        sites,
        regions,
    })
}
