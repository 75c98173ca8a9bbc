//! Jobs: from `[[job]]` tables, a `--jobs` CSV or JSON file, or a seeded generator of
//! traces shaped like a published cluster trace.

use crate::SchedError;
use meshway_fabric::job_config::{HostsConfig, JobConfig};
use meshway_fabric::workload_config::{Positive, Whole, WorkloadConfig};
use meshway_sim::topo::mix;

/// How much a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Iterations(u64),
    /// Run time alone on a compact placement (iterations follow from its step time there).
    Duration(u64),
}

/// A job as the scheduler uses it.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub arrival: u64,
    pub gpus: u32,
    pub priority: i64,
    pub work: Work,
    pub profile: Option<String>,
    /// The training step, with the profile's values filled in.
    pub training: WorkloadConfig,
    /// Whether the job fixes its rank order (else `network-aware` may choose it).
    pub order_given: bool,
    /// An existing placement: host names.
    pub hosts: Option<Vec<String>>,
    /// Where the job was written, for errors ("jobs.csv: row 3", "scenario.toml: job[2]").
    pub origin: String,
}

/// A built-in communication profile: a model shape and its parallelism.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub name: &'static str,
    pub parameters: f64,
    pub layers: u64,
    pub hidden: u64,
    pub sequence: u64,
    pub tp: u64,
    pub pp: u64,
    pub what: &'static str,
}

/// Model shapes from the papers that describe them; the parallelism (tp, pp) is our
/// assumption of a usual Megatron-style layout, shrunk to fit smaller jobs.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "bert-large",
        parameters: 340e6,
        layers: 24,
        hidden: 1024,
        sequence: 512,
        tp: 1,
        pp: 1,
        what: "BERT-large, 340M (Devlin et al., NAACL 2019, section 3): pure data parallelism",
    },
    Profile {
        name: "llama-7b",
        parameters: 6.7e9,
        layers: 32,
        hidden: 4096,
        sequence: 4096,
        tp: 8,
        pp: 1,
        what: "LLaMA 7B shape (Touvron et al., arXiv:2302.13971, table 2; 4k context as Llama 2): TP 8",
    },
    Profile {
        name: "llama-13b",
        parameters: 13.0e9,
        layers: 40,
        hidden: 5120,
        sequence: 4096,
        tp: 8,
        pp: 2,
        what: "LLaMA 13B shape (arXiv:2302.13971, table 2): TP 8, PP 2",
    },
    Profile {
        name: "llama-65b",
        parameters: 65.2e9,
        layers: 80,
        hidden: 8192,
        sequence: 4096,
        tp: 8,
        pp: 4,
        what: "LLaMA 65B shape (arXiv:2302.13971, table 2): TP 8, PP 4",
    },
    Profile {
        name: "gpt3-175b",
        parameters: 175e9,
        layers: 96,
        hidden: 12288,
        sequence: 2048,
        tp: 8,
        pp: 8,
        what: "GPT-3 175B (Brown et al., arXiv:2005.14165, table 2.1): TP 8, PP 8",
    },
];

pub fn profile(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

fn largest_divisor_at_most(n: u64, cap: u64, also: impl Fn(u64) -> bool) -> u64 {
    (1..=cap.min(n)).rev().find(|d| n.is_multiple_of(*d) && also(*d)).unwrap_or(1)
}

impl Job {
    /// Fills the training keys the job does not give from its profile, shrinking the
    /// profile's TP (to one host) and PP (to what divides the job) to fit.
    fn apply_profile(&mut self, gpus_per_host: u32) -> Result<(), SchedError> {
        let Some(name) = self.profile.clone() else { return Ok(()) };
        let p = profile(&name).ok_or_else(|| {
            let names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
            SchedError::Job {
                origin: self.origin.clone(),
                key: "profile",
                message: format!("unknown profile {name:?}: expected one of {}", names.join(", ")),
            }
        })?;
        let g = u64::from(self.gpus);
        let w = &mut self.training;
        w.parameters.get_or_insert(Positive(p.parameters));
        w.layers.get_or_insert(Whole(p.layers));
        w.hidden.get_or_insert(Whole(p.hidden));
        w.sequence.get_or_insert(Whole(p.sequence));
        let tp = w.tp.map_or_else(|| largest_divisor_at_most(g, p.tp.min(u64::from(gpus_per_host)), |_| true), |t| t.0);
        w.tp.get_or_insert(Whole(tp));
        let layers = w.layers.map_or(p.layers, |l| l.0);
        let pp =
            w.pp.map_or_else(|| largest_divisor_at_most(g / tp.max(1), p.pp, |d| layers.is_multiple_of(d)), |x| x.0);
        w.pp.get_or_insert(Whole(pp));
        Ok(())
    }
}

fn job_error(origin: &str, key: &'static str, message: impl Into<String>) -> SchedError {
    SchedError::Job { origin: origin.to_string(), key, message: message.into() }
}

/// The latest arrival a job (or a generated trace's span) may give: 365 days, an assumption
/// far beyond any trace, so that arrival plus run time stays inside the clock.
pub const MAX_ARRIVAL_NS: u64 = meshway_sim::limits::MAX_SCENARIO_TIME_NS;

/// The longest a job may run alone (`duration`, or `iterations` at its step time): 365 days,
/// an assumption far beyond any training run, so that the clock never overflows.
pub const MAX_RUN_NS: u64 = meshway_sim::limits::MAX_SCENARIO_TIME_NS;

/// A job from its table; `origin` names it in errors.
pub fn from_config(c: &JobConfig, nth: usize, origin: String, gpus_per_host: u32) -> Result<Job, SchedError> {
    let gpus = c.gpus.ok_or_else(|| job_error(&origin, "gpus", "missing: expected the GPUs the job needs, e.g. 64"))?.0;
    if gpus == 0 || gpus > u64::from(u32::MAX) {
        return Err(job_error(&origin, "gpus", format!("expected at least 1 GPU, got {gpus}")));
    }
    let gph = u64::from(gpus_per_host);
    if gpus > gph && !gpus.is_multiple_of(gph) {
        return Err(job_error(
            &origin,
            "gpus",
            format!("{gpus} GPUs: expected at most one host ({gph}) or whole hosts (a multiple of {gph})"),
        ));
    }
    let work = match (c.iterations, c.duration) {
        (Some(_), Some(_)) => return Err(job_error(&origin, "duration", "give iterations or duration, not both")),
        (Some(Whole(0)), None) => return Err(job_error(&origin, "iterations", "expected at least 1")),
        (Some(Whole(i)), None) => Work::Iterations(i),
        (None, Some(d)) if d.0 == 0 => return Err(job_error(&origin, "duration", "expected a positive time")),
        (None, Some(d)) if d.0 > MAX_RUN_NS => {
            let days = d.0 as f64 / 86_400e9;
            let days = if days.fract() == 0.0 { format!("{days:.0}") } else { format!("{days:.2}") };
            return Err(job_error(&origin, "duration", format!("expected at most 365d, got {days}d")));
        }
        (None, Some(d)) => Work::Duration(d.0),
        (None, None) => {
            return Err(job_error(
                &origin,
                "iterations",
                "missing: give iterations (training steps) or duration (\"3h\")",
            ))
        }
    };
    if c.profile.is_none() && c.parameters.is_none() {
        return Err(job_error(
            &origin,
            "profile",
            "missing: give a profile (e.g. \"llama-7b\") or the training keys (parameters, layers, hidden, ...)",
        ));
    }
    let hosts = match &c.hosts {
        None => None,
        Some(HostsConfig::Names(v)) => Some(v.clone()),
        Some(HostsConfig::List(s)) => {
            // Counted before it is built: `n[0-999999][0-999999]` would be 10^12 names.
            let need = if gpus <= gph { 1 } else { gpus / gph };
            let n = crate::hostlist::count(s).map_err(|m| job_error(&origin, "hosts", m))?;
            let shown: String =
                if s.chars().count() > 60 { s.chars().take(57).chain("...".chars()).collect() } else { s.clone() };
            let max = crate::hostlist::MAX_NAMES;
            if n > u128::from(need) {
                return Err(job_error(
                    &origin,
                    "hosts",
                    format!("{gpus} GPUs need {need} host(s) of {gph} GPUs, but {shown:?} names {n}"),
                ));
            }
            if n > max as u128 {
                return Err(job_error(
                    &origin,
                    "hosts",
                    format!("{shown:?} names {n} hosts, more than a list may ({max})"),
                ));
            }
            Some(crate::hostlist::expand_at_most(s, n as usize).map_err(|m| job_error(&origin, "hosts", m))?)
        }
    };
    if let Some(h) = &hosts {
        let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::with_capacity(h.len());
        let twice = h.iter().enumerate().find_map(|(j, x)| first.insert(x.as_str(), j).map(|i| (i, j, x)));
        if let Some((i, j, dup)) = twice {
            return Err(job_error(
                &origin,
                "hosts",
                format!("host {dup:?} is named twice (entries {} and {})", i + 1, j + 1),
            ));
        }
    }
    if let Some(a) = c.arrival.filter(|a| a.0 > MAX_ARRIVAL_NS) {
        return Err(job_error(&origin, "arrival", format!("expected at most 365d, got {a}")));
    }
    if c.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(job_error(&origin, "name", "expected a non-empty name"));
    }
    // Names reach the terminal, the exports and the pages: an escape sequence would act there.
    if let Some(why) = c.name.as_deref().and_then(meshway_units::unprintable) {
        return Err(job_error(&origin, "name", format!("expected printable text, got {why}")));
    }
    let mut job = Job {
        name: c.name.clone().unwrap_or_else(|| format!("job-{}", nth + 1)),
        arrival: c.arrival.map_or(0, |a| a.0),
        gpus: gpus as u32,
        priority: c.priority.unwrap_or(0),
        work,
        profile: c.profile.clone(),
        training: c.training(),
        order_given: c.order.is_some(),
        hosts,
        origin,
    };
    job.apply_profile(gpus_per_host)?;
    Ok(job)
}

/// Jobs from a CSV (a header row naming `[[job]]` keys) or JSON file (an array of job
/// objects, or `{"jobs": [...]}`).
pub fn from_file(file: &str, text: &str, gpus_per_host: u32) -> Result<Vec<Job>, SchedError> {
    let trimmed = text.trim_start();
    let configs: Vec<(JobConfig, String)> = if trimmed.starts_with('[') || trimmed.starts_with('{') {
        // A key given twice in one job would silently take the last value.
        serde_json::from_str::<NoDuplicateKeys>(text)
            .map_err(|e| SchedError::File { file: file.into(), message: format!("line {}: {e}", e.line()) })?;
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| SchedError::File { file: file.into(), message: format!("line {}: {e}", e.line()) })?;
        let arr = match v {
            serde_json::Value::Array(a) => a,
            serde_json::Value::Object(mut o) => match o.remove("jobs") {
                Some(serde_json::Value::Array(a)) => a,
                _ => {
                    return Err(SchedError::File {
                        file: file.into(),
                        message: "expected an array of jobs, or an object with a \"jobs\" array".into(),
                    })
                }
            },
            _ => return Err(SchedError::File { file: file.into(), message: "expected an array of jobs".into() }),
        };
        arr.into_iter()
            .enumerate()
            .map(|(i, v)| {
                let origin = format!("{file}: job {}", i + 1);
                // A person's file, as a [[job]] table: durations need their unit.
                config_from(v)
                    .map(|c| (c, origin.clone()))
                    .map_err(|e| SchedError::File { file: file.into(), message: format!("job {}: {e}", i + 1) })
            })
            .collect::<Result<_, _>>()?
    } else {
        let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).comment(Some(b'#')).from_reader(text.as_bytes());
        let headers = rdr
            .headers()
            .map_err(|e| SchedError::File { file: file.into(), message: e.to_string() })?
            .iter()
            .map(str::to_string)
            .collect::<Vec<_>>();
        // Blank columns (a spreadsheet's trailing commas) are skipped as their cells are.
        if let Some((j, h)) = headers.iter().enumerate().find(|(j, h)| !h.is_empty() && headers[..*j].contains(h)) {
            let first = headers.iter().position(|x| x == h).unwrap_or(0);
            return Err(SchedError::File {
                file: file.into(),
                message: format!("line 1: column {h:?} appears twice (columns {} and {})", first + 1, j + 1),
            });
        }
        let mut out = Vec::new();
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| SchedError::File { file: file.into(), message: e.to_string() })?;
            let line = rec.position().map_or(i + 2, |p| p.line() as usize);
            let mut obj = serde_json::Map::new();
            for (h, cell) in headers.iter().zip(rec.iter()) {
                if cell.is_empty() {
                    continue;
                }
                // Names stay text ("007" is not 7); counts stay whole (u64::MAX is not a float).
                let text = ["name", "profile", "hosts", "order", "gpu"].contains(&h.as_str());
                let v = match (cell.parse::<u64>(), cell.parse::<i64>()) {
                    _ if text => serde_json::Value::from(cell),
                    (Ok(n), _) => serde_json::Value::from(n),
                    (_, Ok(n)) => serde_json::Value::from(n),
                    _ => serde_json::Value::from(cell),
                };
                obj.insert(h.clone(), v);
            }
            let origin = format!("{file}: line {line}");
            let c = config_from(serde_json::Value::Object(obj))
                .map_err(|e| SchedError::File { file: file.into(), message: format!("line {line}: {e}") })?;
            out.push((c, origin));
        }
        out
    };
    if configs.is_empty() {
        return Err(SchedError::File { file: file.into(), message: "no jobs in the file".into() });
    }
    configs.iter().enumerate().map(|(i, (c, o))| from_config(c, i, o.clone(), gpus_per_host)).collect()
}

/// A job from one object of a jobs file, as a person wrote it (durations need their unit).
/// An error names the key it is about: the first key that fails alone.
fn config_from(v: serde_json::Value) -> Result<JobConfig, String> {
    use serde::Deserialize;
    let parse = |v: &serde_json::Value| meshway_units::units_required(|| JobConfig::deserialize(v));
    match parse(&v) {
        Ok(c) => Ok(c),
        Err(e) => {
            let e = e.to_string();
            let serde_json::Value::Object(obj) = v else { return Err(e) };
            for (k, x) in obj {
                let alone = serde_json::Value::Object(std::iter::once((k.clone(), x)).collect());
                if parse(&alone).is_err() {
                    return Err(if e.contains(&format!("`{k}`")) { e } else { format!("{k}: {e}") });
                }
            }
            Err(e)
        }
    }
}

/// Any JSON document in which no object gives a key twice (serde_json keeps the last).
struct NoDuplicateKeys;

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut keys = std::collections::BTreeSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !keys.insert(k.clone()) {
                return Err(serde::de::Error::custom(format!("key {k:?} is given twice in one object")));
            }
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(self)
    }
}

/// Parameters of a generated trace.
#[derive(Debug, Clone, Copy)]
pub struct TraceSpec {
    pub jobs: usize,
    /// Arrivals spread over this span (ns).
    pub span: u64,
    pub seed: u64,
    /// Largest job (GPUs); larger draws are capped.
    pub max_gpus: u32,
}

/// GPUs per job in Acme's Kalos trace (Hu et al., "Characterization of Large Language Model
/// Development in the Datacenter", NSDI 2024, figure 3; read from the plotted points of
/// `figure/cdf_job_gpunum.pdf` in github.com/InternLM/AcmeTrace). Each bucket sits at its
/// upper power of two; shares in parts per thousand.
pub const KALOS_GPUS: &[(u32, u32)] =
    &[(1, 863), (2, 21), (8, 55), (16, 4), (32, 4), (64, 6), (128, 4), (256, 12), (512, 12), (1024, 19)];

/// Run time of Kalos GPU jobs as a CDF (seconds, share): the same source,
/// `figure/cdf_job_jobtime.pdf` (median 124 s, mean 1,260 s in `data/cluster_summary.csv`).
pub const KALOS_RUNTIME: &[(f64, f64)] = &[
    (8.0, 0.0),
    (16.0, 0.015),
    (32.0, 0.187),
    (64.0, 0.382),
    (128.0, 0.505),
    (256.0, 0.691),
    (512.0, 0.794),
    (1024.0, 0.859),
    (2048.0, 0.928),
    (4096.0, 0.971),
    (8192.0, 0.987),
    (16384.0, 0.991),
    (65536.0, 0.997),
    (524288.0, 1.0),
];

/// Run time of Kalos pretraining jobs (the 256+ GPU jobs): median about 12 minutes, 28%
/// beyond 4,096 s, 6.7% beyond 18 h (AcmeTrace `figure/cdf_job_duration_queue.pdf`, NSDI
/// 2024 figure 6). The 60 s floor and 7-day ceiling are our assumptions.
pub const KALOS_PRETRAIN_RUNTIME: &[(f64, f64)] =
    &[(60.0, 0.0), (720.0, 0.5), (4096.0, 0.72), (64800.0, 0.933), (604800.0, 1.0)];

/// Submissions per hour of day relative to the daily mean, Helios' Saturn cluster (Hu et
/// al., SC'21; `analysis/2_cluster characterization/cluster_diurnal.pdf` in
/// github.com/S-Lab-System-Group/HeliosArtifact): a trough near 0.53x at 07:00 and a peak
/// near 1.5x at 16:00. The hours between are interpolated linearly (our assumption).
pub fn diurnal(hour: f64) -> f64 {
    let (lo_h, hi_h, lo, hi) = (7.0, 16.0, 0.53, 1.5);
    let h = hour.rem_euclid(24.0);
    if (lo_h..=hi_h).contains(&h) {
        lo + (hi - lo) * (h - lo_h) / (hi_h - lo_h)
    } else {
        let d = if h > hi_h { h - hi_h } else { h + 24.0 - hi_h };
        hi + (lo - hi) * d / (24.0 - (hi_h - lo_h))
    }
}

/// A deterministic uniform draw in [0, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = mix(self.0);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn from_cdf(cdf: &[(f64, f64)], u: f64) -> f64 {
    for w in cdf.windows(2) {
        let ((x0, p0), (x1, p1)) = (w[0], w[1]);
        if u <= p1 {
            let t = if p1 > p0 { (u - p0) / (p1 - p0) } else { 0.0 };
            return (x0.ln() + t * (x1.ln() - x0.ln())).exp();
        }
    }
    cdf.last().map_or(1.0, |l| l.0)
}

/// The profile a generated job of `gpus` runs (our assumption: bigger jobs train bigger
/// models).
pub fn profile_for(gpus: u32) -> &'static str {
    match gpus {
        0..=4 => "bert-large",
        5..=64 => "llama-7b",
        65..=256 => "llama-13b",
        257..=1024 => "llama-65b",
        _ => "gpt3-175b",
    }
}

/// A trace of `spec.jobs` jobs: sizes and run times drawn from Kalos, arrivals a Poisson
/// process over `spec.span` whose rate follows Saturn's hours of the day.
pub fn generate(spec: &TraceSpec, gpus_per_host: u32) -> Vec<JobConfig> {
    let mut rng = Rng(mix(spec.seed ^ 0x5C4E_D01E));
    // Arrivals: thinning of a Poisson process at the peak rate.
    let mean_gap = spec.span as f64 / spec.jobs.max(1) as f64;
    let peak = 1.5;
    let mut t = 0.0f64;
    let mut arrivals = Vec::with_capacity(spec.jobs);
    while arrivals.len() < spec.jobs {
        t += -(1.0 - rng.next()).ln() * mean_gap / peak;
        let hour = t / 3.6e12;
        if rng.next() * peak <= diurnal(hour) {
            arrivals.push(t);
        }
    }
    // Scale the arrival times to the span.
    let last = arrivals.last().copied().unwrap_or(1.0).max(1.0);
    let scale = (spec.span as f64 / last).min(1.0);
    let total: u32 = KALOS_GPUS.iter().map(|x| x.1).sum();
    arrivals
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let mut u = (rng.next() * f64::from(total)) as u32;
            let mut gpus = KALOS_GPUS[KALOS_GPUS.len() - 1].0;
            for &(g, share) in KALOS_GPUS {
                if u < share {
                    gpus = g;
                    break;
                }
                u -= share;
            }
            let mut gpus = gpus.min(spec.max_gpus.max(1));
            if gpus > gpus_per_host {
                gpus = gpus / gpus_per_host * gpus_per_host;
            }
            let cdf = if gpus >= 256 { KALOS_PRETRAIN_RUNTIME } else { KALOS_RUNTIME };
            let secs = from_cdf(cdf, rng.next()).round().max(1.0);
            JobConfig {
                name: Some(format!("job-{:04}", i + 1)),
                arrival: Some(meshway_units::SimTime((a * scale) as u64 / 1_000_000_000 * 1_000_000_000)),
                gpus: Some(Whole(u64::from(gpus))),
                profile: Some(profile_for(gpus).to_string()),
                duration: Some(meshway_units::Nanos(secs as u64 * 1_000_000_000)),
                ..JobConfig::default()
            }
        })
        .collect()
}

/// A generated trace as a `--jobs` CSV file (whole seconds).
pub fn trace_csv(jobs: &[JobConfig]) -> String {
    let mut s = String::from("name,arrival,gpus,profile,duration\n");
    for j in jobs {
        s += &format!(
            "{},{}s,{},{},{}s\n",
            j.name.clone().unwrap_or_default(),
            j.arrival.map_or(0, |a| a.0 / 1_000_000_000),
            j.gpus.map_or(0, |g| g.0),
            j.profile.clone().unwrap_or_default(),
            j.duration.map_or(0, |d| d.0 / 1_000_000_000)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_sizes_follow_the_trace() {
        let spec = TraceSpec { jobs: 20_000, span: 7 * 86_400_000_000_000, seed: 3, max_gpus: 1024 };
        let jobs = generate(&spec, 8);
        assert_eq!(jobs.len(), 20_000);
        let single = jobs.iter().filter(|j| j.gpus == Some(Whole(1))).count() as f64 / 20_000.0;
        assert!((single - 0.863).abs() < 0.01, "{single}");
        let big = jobs.iter().filter(|j| j.gpus.is_some_and(|g| g.0 >= 256)).count() as f64 / 20_000.0;
        assert!((big - 0.043).abs() < 0.006, "{big}");
        // Median run time of the small jobs near Kalos' 124 s.
        let mut small: Vec<u64> =
            jobs.iter().filter(|j| j.gpus.is_some_and(|g| g.0 < 256)).map(|j| j.duration.unwrap().0).collect();
        small.sort_unstable();
        let med = small[small.len() / 2] as f64 / 1e9;
        assert!((110.0..140.0).contains(&med), "{med}");
        // Arrivals sorted, inside the span, and the same for the same seed.
        assert!(jobs.windows(2).all(|w| w[0].arrival <= w[1].arrival));
        assert!(jobs.last().unwrap().arrival.unwrap().0 <= spec.span);
        let again = generate(&spec, 8);
        assert_eq!(format!("{:?}", again[..50].to_vec()), format!("{:?}", jobs[..50].to_vec()));
    }

    /// A job's host list longer than its hosts is refused before it is built, and a name
    /// given twice is found among 100,000 at once (the check was quadratic).
    #[test]
    fn host_lists_are_checked_in_proportion_to_their_size() {
        let job = |hosts: HostsConfig| JobConfig {
            gpus: Some(Whole(16)),
            profile: Some("llama-7b".into()),
            iterations: Some(Whole(1)),
            hosts: Some(hosts),
            ..JobConfig::default()
        };
        let e = from_config(&job(HostsConfig::List("n[0-999999][0-999999]".into())), 0, "j".into(), 8)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("16 GPUs need 2 host(s) of 8 GPUs, but \"n[0-999999][0-999999]\" names 1000000000000"),
            "{e}"
        );
        // A job large enough to take 480 million hosts is still held to the list limit.
        let mut big = job(HostsConfig::List("n[00000-59999]-[000-999]".into()));
        big.gpus = Some(Whole(480_000_000));
        let e = from_config(&big, 0, "j".into(), 1).unwrap_err().to_string();
        assert!(e.contains("names 60000000 hosts, more than a list may (10000000)"), "{e}");
        let mut many: Vec<String> = (0..100_000).map(|i| format!("n{i}")).collect();
        many.push("n5".into());
        let e = from_config(&job(HostsConfig::Names(many)), 0, "j".into(), 8).unwrap_err().to_string();
        assert!(e.contains("host \"n5\" is named twice (entries 6 and 100001)"), "{e}");
    }

    #[test]
    fn diurnal_shape_has_its_trough_and_peak() {
        assert!((diurnal(7.0) - 0.53).abs() < 1e-9);
        assert!((diurnal(16.0) - 1.5).abs() < 1e-9);
        let mean: f64 = (0..2400).map(|i| diurnal(i as f64 / 100.0)).sum::<f64>() / 2400.0;
        assert!((0.9..1.1).contains(&mean), "{mean}");
    }

    #[test]
    fn profiles_shrink_to_fit() {
        let c = JobConfig {
            gpus: Some(Whole(4)),
            profile: Some("llama-13b".into()),
            iterations: Some(Whole(1)),
            ..Default::default()
        };
        let j = from_config(&c, 0, "t".into(), 8).unwrap();
        assert_eq!(j.training.tp, Some(Whole(4)));
        assert_eq!(j.training.pp, Some(Whole(1)));
        let c = JobConfig {
            gpus: Some(Whole(12)),
            profile: Some("llama-7b".into()),
            iterations: Some(Whole(1)),
            ..Default::default()
        };
        let e = from_config(&c, 0, "t".into(), 8).unwrap_err().to_string();
        assert!(e.contains("expected at most one host (8) or whole hosts"), "{e}");
        let c = JobConfig {
            gpus: Some(Whole(8)),
            profile: Some("llama-8b".into()),
            iterations: Some(Whole(1)),
            ..Default::default()
        };
        let e = from_config(&c, 0, "t".into(), 8).unwrap_err().to_string();
        assert!(e.contains("unknown profile \"llama-8b\""), "{e}");
    }
}
