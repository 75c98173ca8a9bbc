//! Many training jobs on one fabric (`meshway schedule`): jobs from a scenario, a trace file
//! or a seeded generator; placement policies from first-fit to contention-aware; the jobs
//! co-simulated on the shared links at flow level; results per job and per policy; the
//! fabric's hierarchy exported for Slurm and Kubernetes/Kueue.

pub mod cosim;
pub mod export;
pub mod hier;
pub mod hostlist;
pub mod jobs;
pub mod place;
pub mod run;

use meshway_fabric::scenario::Ctx;
use meshway_fabric::{Catalog, Fabric, FabricError, Scenario};
use meshway_sim::simulate::{self, Options as SimOptions, Setup};
use meshway_sim::topo::FabricTopo;
use place::Policy;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error("{origin}: {key}: {message}")]
    Job { origin: String, key: &'static str, message: String },
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error(transparent)]
    Fabric(#[from] FabricError),
    #[error("{0}")]
    Simulate(#[from] meshway_sim::SimulateError),
    #[error("simulating {job}: {message}")]
    Sim { job: String, message: String },
    #[error("{0}")]
    Option(String),
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub policies: Vec<Policy>,
    pub backfill: bool,
    pub seed: Option<u64>,
}

/// The outcome of `meshway schedule`.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleReport {
    pub scenario: String,
    pub fabric: String,
    pub gpus: u64,
    pub hosts: usize,
    pub gpus_per_host: u32,
    pub blocks: usize,
    pub pods: usize,
    pub jobs: usize,
    pub backfill: String,
    pub seed: u64,
    pub approximation: String,
    pub policies: Vec<run::PolicyOutcome>,
}

/// Jobs with their steps parsed and iterations fixed, ready for any policy.
pub fn prepare(
    scenario: &Scenario,
    cat: &Catalog,
    topo: &mut FabricTopo<'_>,
    cfg: &meshway_sim::exec::ExecConfig,
    hier: &hier::Hier,
    jobs: Vec<jobs::Job>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<run::Prepared>, SchedError> {
    let total = hier.hosts.iter().map(|h| h.ranks.len() as u64).sum::<u64>();
    let mut keys: BTreeMap<String, u32> = BTreeMap::new();
    let mut refs: BTreeMap<(u32, u32), (u64, f64)> = BTreeMap::new();
    let n = jobs.len();
    let mut out = Vec::with_capacity(n);
    for (i, job) in jobs.into_iter().enumerate() {
        if u64::from(job.gpus) > total {
            return Err(SchedError::Job {
                origin: job.origin.clone(),
                key: "gpus",
                message: format!("{} needs {} GPUs but the fabric has {total}", job.name, job.gpus),
            });
        }
        let nth = job
            .origin
            .strip_prefix(&format!("{}: job[", scenario.file))
            .and_then(|r| r.trim_end_matches(']').parse::<usize>().ok());
        let ctx = match nth {
            Some(k) => Ctx::new(&scenario.file, &scenario.text, "job", k - 1, &format!("job[{k}]")),
            None => Ctx::new(&job.origin, "", "", 0, ""),
        };
        let spec = cosim::spec_for(topo, &job.training, &ctx, job.gpus, cat)?;
        let mut unnamed = job.training.clone();
        unnamed.name = None;
        let key_text = format!("{unnamed:?}|{}", job.gpus);
        let next = keys.len() as u32;
        let spec_key = *keys.entry(key_text).or_insert(next);
        // The reference placement: the lowest-numbered hosts, alone on the fabric.
        let (reference_ns, intensity) = match refs.get(&(spec_key, job.gpus)) {
            Some(&r) => r,
            None => {
                let ranks: Vec<u32> = if job.gpus <= hier.gpus_per_host {
                    hier.hosts[0].ranks[..job.gpus as usize].to_vec()
                } else {
                    hier.hosts
                        .iter()
                        .take((job.gpus / hier.gpus_per_host) as usize)
                        .flat_map(|h| h.ranks.clone())
                        .collect()
                };
                let step = cosim::write_step(topo, cfg, &spec, &ranks, &job.name)?;
                let step = cosim::alone(topo, cfg, &step, &[], &job.name)?;
                if step.alone == u64::MAX {
                    return Err(SchedError::Sim {
                        job: job.name.clone(),
                        message: "its step does not complete alone".into(),
                    });
                }
                let r = (step.alone, step.bytes.nic as f64 / (step.alone.max(1) as f64 / 1e9));
                refs.insert((spec_key, job.gpus), r);
                r
            }
        };
        let iterations = match job.work {
            jobs::Work::Iterations(k) => k,
            jobs::Work::Duration(d) => (d as f64 / reference_ns.max(1) as f64).round().max(1.0) as u64,
        };
        // A duration is bounded where it is read (its iterations round to within a step of it).
        if matches!(job.work, jobs::Work::Iterations(_)) && iterations.saturating_mul(reference_ns) > jobs::MAX_RUN_NS {
            return Err(SchedError::Job {
                origin: job.origin.clone(),
                key: "iterations",
                message: format!(
                    "{} iterations of its {:.3} ms step run {:.0} days alone; expected at most 365 days of work",
                    iterations,
                    reference_ns as f64 / 1e6,
                    iterations as f64 * reference_ns as f64 / 86_400e9
                ),
            });
        }
        out.push(run::Prepared { job, spec, iterations, reference_ns, intensity, spec_key });
        progress(i + 1, n);
    }
    Ok(out)
}

/// The fabric's link outages from `[[failure]]`, as arc pairs.
pub fn outages(scenario: &Scenario, fabric: &Fabric) -> Result<Vec<run::Outage>, SchedError> {
    let (events, _) = simulate::parse_failures(scenario, fabric)?;
    // Pair each down with the next up of the same arc.
    let mut out: Vec<run::Outage> = Vec::new();
    let mut open: BTreeMap<u32, u64> = BTreeMap::new();
    let mut sorted = events;
    sorted.sort_by_key(|e| (e.at, e.arc.0, e.up));
    let mut closed: Vec<(u32, u64, u64)> = Vec::new();
    for e in sorted {
        if e.up {
            if let Some(from) = open.remove(&e.arc.0) {
                closed.push((e.arc.0, from, e.at.0));
            }
        } else {
            open.entry(e.arc.0).or_insert(e.at.0);
        }
    }
    closed.extend(open.into_iter().map(|(a, f)| (a, f, u64::MAX)));
    closed.sort_unstable();
    for (a, from, until) in closed {
        let pair = a & !1;
        if out.iter().any(|o| o.arcs[0] == pair && o.from == from && o.until == until) {
            continue;
        }
        out.push(run::Outage { arcs: [pair, pair + 1], from, until });
    }
    Ok(out)
}

/// The scenario's `[schedule] host-prefix` ("node" by default). It goes into Slurm,
/// Kubernetes and shell files, so only the start of a host name is accepted.
pub fn host_prefix(scenario: &Scenario) -> Result<String, SchedError> {
    let prefix =
        scenario.config.schedule.as_ref().and_then(|s| s.host_prefix.clone()).unwrap_or_else(|| "node".to_string());
    let mut chars = prefix.chars();
    if chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
        && prefix.len() <= 50
    {
        Ok(prefix)
    } else {
        Err(SchedError::Option(format!(
            "{}: `schedule.host-prefix`: expected a letter then letters, digits or '-' (at most 50, the start of a host name such as \"node\"), got {prefix:?}",
            scenario.file
        )))
    }
}

/// Runs every policy in `opts` on `jobs`.
#[allow(clippy::too_many_arguments)]
pub fn schedule(
    setup: &Setup<'_>,
    jobs: Vec<jobs::Job>,
    opts: &Options,
    progress: &(dyn Fn(&str, usize, usize) + Sync),
) -> Result<ScheduleReport, SchedError> {
    // Names key the job lists, `--detail` and the exports.
    let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for j in &jobs {
        if let Some(first) = seen.insert(&j.name, &j.origin) {
            return Err(SchedError::Job {
                origin: j.origin.clone(),
                key: "name",
                message: format!("job name {:?} is already used by {first}", j.name),
            });
        }
    }
    let sim_opts = SimOptions { seed: opts.seed, ..SimOptions::default() };
    let (cfg, _) = simulate::exec_config(setup, &sim_opts)?;
    let mut topo = FabricTopo::new(setup.fabric, setup.catalog, cfg.seed);
    let prefix = host_prefix(setup.scenario)?;
    let hier = hier::Hier::new(setup.fabric, &topo, &prefix);
    if let Some(h) = hier.hosts.iter().find(|h| h.ranks.len() as u32 != hier.gpus_per_host) {
        return Err(SchedError::Option(format!(
            "{}: host {} has {} GPUs where others have {}: meshway schedule needs hosts of one size",
            setup.scenario.file,
            h.name,
            h.ranks.len(),
            hier.gpus_per_host
        )));
    }
    // Free GPU slots are kept as one 64-bit mask per host.
    if hier.gpus_per_host > 64 {
        return Err(SchedError::Option(format!(
            "{}: hosts of {} GPUs: meshway schedule places jobs on hosts of at most 64 GPUs (an NVLink domain of more GPUs is not a scheduling tier yet)",
            setup.scenario.file, hier.gpus_per_host
        )));
    }
    let outages = outages(setup.scenario, setup.fabric)?;
    let n = jobs.len();
    let prepared =
        prepare(setup.scenario, setup.catalog, &mut topo, &cfg, &hier, jobs, &mut |d, t| progress("preparing", d, t))?;
    let summaries: run::Summaries = Mutex::new(BTreeMap::new());
    // The policies run on two threads (this machine class has two cores), each with its own
    // copy of the topology's route caches; results do not depend on the split.
    let threads = 2usize.min(opts.policies.len()).max(1);
    // Threads take the next policy as they become free; random placement, whose spread-out
    // jobs cost the most to simulate, goes first.
    let mut todo: Vec<(usize, Policy)> = opts.policies.iter().copied().enumerate().collect();
    todo.sort_by_key(|&(i, p)| (p != Policy::Random, i));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<run::PolicyOutcome, SchedError>>>> =
        Mutex::new((0..opts.policies.len()).map(|_| None).collect());
    std::thread::scope(|sc| {
        for _ in 0..threads {
            let mut topo = topo.clone();
            let (cfg, hier, prepared, outages, summaries, todo, next, results) =
                (&cfg, &hier, &prepared, &outages, &summaries, &todo, &next, &results);
            sc.spawn(move || loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(i, p)) = todo.get(k) else { break };
                let mut world = run::World {
                    topo: &mut topo,
                    cfg,
                    hier,
                    jobs: prepared,
                    outages,
                    backfill: opts.backfill,
                    seed: cfg.seed,
                    summaries,
                };
                let r = run::run(&mut world, p, &mut |d, t| progress(p.name(), d, t));
                if let Ok(mut v) = results.lock() {
                    v[i] = Some(r);
                }
            });
        }
    });
    let results = results.into_inner().map_err(|_| SchedError::Option("a policy thread failed".into()))?;
    let mut policies = Vec::new();
    for r in results {
        policies.push(r.ok_or_else(|| SchedError::Option("a policy thread failed".into()))??);
    }
    Ok(ScheduleReport {
        scenario: setup.scenario.name.clone(),
        fabric: setup.fabric.family.clone(),
        gpus: hier.hosts.iter().map(|h| h.ranks.len() as u64).sum(),
        hosts: hier.hosts.len(),
        gpus_per_host: hier.gpus_per_host,
        blocks: hier.blocks.len(),
        pods: hier.pods.len(),
        jobs: n,
        backfill: if opts.backfill { "easy".into() } else { "none".into() },
        seed: cfg.seed,
        approximation: format!(
            "co-running jobs that share a link are simulated together for the longest step among them (shorter steps repeat through it, at most {}x as the budget allows, spread over it when fewer); each job then runs at that step time until the set changes; a group of more than {} messages with {} repeats is estimated from each job's busy time on the links it shares",
            cosim::MAX_REPEAT,
            cosim::COSIM_BUDGET,
            cosim::MIN_REPEAT
        ),
        policies,
    })
}
