//! `meshway schedule`: many training jobs on one fabric, placed by each policy and
//! co-simulated; exports the fabric's hierarchy for Slurm and Kueue.

use anyhow::{bail, Context, Result};
use meshway_fabric::{Catalog, Scenario};
use meshway_sched::jobs::{self, TraceSpec};
use meshway_sched::place::Policy;
use meshway_sched::{hier::Hier, Options};
use meshway_sim::simulate::Setup;
use meshway_sim::topo::FabricTopo;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

pub const HELP: &str = "Examples:
  meshway schedule examples/schedule-rail-1024.toml
  meshway schedule examples/schedule-rail-1024.toml --policy topology \\
      --policy contention-aware
  meshway schedule examples/rail-optimized-1024.toml --generate 200 --span 1d \\
      --json
  meshway schedule examples/rail-optimized-1024.toml --jobs trace.csv \\
      --all-jobs
  meshway schedule examples/rail-optimized-1024.toml --jobs placed.csv \\
      --policy given
  meshway schedule examples/rail-optimized-1024.toml --export slurm/ --no-run
  meshway schedule examples/schedule-rail-1024.toml --html schedule.html

Places a stream of training jobs on the scenario's fabric with each policy,
runs the jobs that overlap in time together on the shared links at flow level,
and compares the policies: GPU utilization, job completion time (mean, p95),
makespan, queueing, each job's slowdown against running alone, fragmentation,
and bytes above the leaf tier.

Jobs come from --jobs FILE (CSV with a header row, or JSON), else the
scenario's [[job]] tables, else --generate N (sizes and run times from Acme's
Kalos trace, NSDI 2024; daily arrival shape from Helios, SC'21). A job has:
name, arrival (\"2h\"), gpus (at most one host, or whole hosts), priority,
iterations or duration (run time alone), and either a profile or the training
keys of a [[workload]] kind = \"training\" (parameters, layers, hidden,
sequence, micro-batch, global-batch, tp, pp, ep, order, gpu, efficiency, ...).
Profiles: bert-large, llama-7b, llama-13b, llama-65b, gpt3-175b.

Policies: first-fit, random, topology (Slurm tree: the smallest block or pod
that holds the job, best fit), network-aware (also lays ranks out so the
heavier of pipeline and data-parallel traffic stays in blocks),
contention-aware (also steers jobs that must span blocks away from uplinks
busy with communication-heavy jobs, weighted by intensity), and given (the
hosts each job names: score an existing placement; a Slurm host list such as
node[001-004] or a list of names).

--export DIR writes topology-tree.conf and topology-block.conf (Slurm
topology.conf), topology.yaml (Slurm 25.05+), node-labels.sh (kubectl label)
and kueue-topology.yaml (Kueue Topology and ResourceFlavor). Host names:
node001... or [schedule] host-prefix.";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The scenario file (TOML): its fabric, transport, [[failure]] and [[job]] tables.
    pub file: PathBuf,
    /// Jobs from a CSV or JSON file instead of the scenario's [[job]] tables.
    #[arg(long, value_name = "FILE")]
    pub jobs: Option<PathBuf>,
    /// Generate this many jobs (seeded) instead.
    #[arg(long, value_name = "N", conflicts_with = "jobs")]
    pub generate: Option<usize>,
    /// Span of generated arrivals ("7d", "12h"; with --generate).
    #[arg(long, default_value = "7d", value_parser = parse_span, requires = "generate")]
    pub span: u64,
    /// A placement policy to run (repeat for several; default: all but given).
    #[arg(long = "policy", value_parser = parse_policy)]
    pub policies: Vec<Policy>,
    /// Backfill: easy or none (default: the scenario's `schedule.backfill`, else easy).
    #[arg(long, value_parser = ["easy", "none"])]
    pub backfill: Option<String>,
    /// Seed for generated traces, random placement and ECMP (default: the scenario's, else 1).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    /// List every job (default: all when at most 25, else the 10 most slowed).
    #[arg(long)]
    pub all_jobs: bool,
    /// Whose jobs to list (default: the last policy run).
    #[arg(long, value_name = "POLICY")]
    pub detail: Option<String>,
    /// Also write a self-contained HTML report: the policies' completion time, slowdown and
    /// bytes above the leaf tier as bars, and the text report.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write Slurm and Kubernetes/Kueue topology files into this directory.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Only export; schedule nothing.
    #[arg(long, requires = "export")]
    pub no_run: bool,
    /// Write the generated trace as CSV to this file (with --generate).
    #[arg(long, value_name = "FILE", requires = "generate")]
    pub write_trace: Option<PathBuf>,
    /// A catalog file whose entries replace or add to the built-in catalog.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
}

fn parse_span(s: &str) -> Result<u64, String> {
    s.parse::<meshway_units::Nanos>().map(|n| n.0).map_err(|e| format!("{e} (e.g. \"7d\" or \"12h\")")).and_then(|n| {
        if n == 0 {
            Err("expected a positive span".into())
        } else if n > meshway_sched::jobs::MAX_ARRIVAL_NS {
            Err("expected at most 365d".into())
        } else {
            Ok(n)
        }
    })
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    Policy::parse(s).ok_or_else(|| {
        format!("expected first-fit, random, topology, network-aware, contention-aware or given, got {s:?}")
    })
}

/// The files a run reads: the scenario, the jobs file and the catalog.
fn schedule_inputs(args: &Args) -> Vec<&std::path::Path> {
    [Some(args.file.as_path()), args.jobs.as_deref(), args.catalog.as_deref()].into_iter().flatten().collect()
}

pub fn run(args: &Args, cat: &Catalog) -> Result<String> {
    let path = &args.file;
    let text =
        meshway_units::files::read_text(path).with_context(|| format!("cannot read scenario {}", path.display()))?;
    let file = path.display().to_string();
    let scenario = Scenario::parse(&text, &file)?;
    let fabric = scenario.build(cat)?;
    let no_files = |_: &str| -> Result<String, String> { Err("schedule reads no flow files".into()) };
    let setup = Setup { scenario: &scenario, catalog: cat, fabric: &fabric, read_file: &no_files };
    let sched_cfg = scenario.config.schedule.clone().unwrap_or_default();
    let prefix = meshway_sched::host_prefix(&scenario)?;
    let seed = args.seed.or(scenario.config.seed).unwrap_or(1);
    let topo = FabricTopo::new(&fabric, cat, seed);
    let hier = Hier::new(&fabric, &topo, &prefix);
    drop(topo);
    let mut wrote = Vec::new();
    if let Some(dir) = &args.export {
        // Kubernetes node names are lower-case DNS names (RFC 1123); Slurm takes any case.
        if prefix.chars().any(|c| c.is_ascii_uppercase()) {
            anyhow::bail!(
                "{file}: `schedule.host-prefix`: {prefix:?} has upper-case letters, which Kubernetes node names \
                 cannot have; --export writes node-labels.sh for Kubernetes: use a lower-case prefix"
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (name, body) in meshway_sched::export::all(&hier, &file) {
            let p = dir.join(name);
            crate::output::write(&p, body.as_bytes(), &schedule_inputs(args))?;
            wrote.push(p.display().to_string());
        }
        if args.no_run {
            return Ok(if args.json {
                crate::json(&serde_json::json!({ "exported": wrote }))?
            } else {
                format!("wrote {}\n", wrote.join(", "))
            });
        }
    }
    let gph = hier.gpus_per_host;
    let job_list = if let Some(jf) = &args.jobs {
        let t =
            meshway_units::files::read_text(jf).with_context(|| format!("cannot read jobs file {}", jf.display()))?;
        jobs::from_file(&jf.display().to_string(), &t, gph)?
    } else if let Some(n) = args.generate {
        if n == 0 || n > 1_000_000 {
            bail!("--generate: expected 1 to 1,000,000 jobs, got {n}");
        }
        let total: u32 = hier.hosts.iter().map(|h| h.ranks.len() as u32).sum();
        let spec = TraceSpec { jobs: n, span: args.span, seed, max_gpus: total };
        let configs = jobs::generate(&spec, gph);
        if let Some(p) = &args.write_trace {
            crate::output::write(p, jobs::trace_csv(&configs).as_bytes(), &schedule_inputs(args))?;
            eprintln!("wrote {}", p.display());
        }
        configs
            .iter()
            .enumerate()
            .map(|(i, c)| jobs::from_config(c, i, format!("generated job {}", i + 1), gph))
            .collect::<Result<_, _>>()?
    } else if !scenario.config.job.is_empty() {
        scenario
            .config
            .job
            .iter()
            .enumerate()
            .map(|(i, c)| jobs::from_config(c, i, format!("{file}: job[{}]", i + 1), gph))
            .collect::<Result<_, _>>()?
    } else {
        bail!("{file}: no jobs: add [[job]] tables, or give --jobs FILE or --generate N");
    };
    // A policy asked for twice runs once.
    let mut policies: Vec<Policy> = Vec::new();
    for p in &args.policies {
        if !policies.contains(p) {
            policies.push(*p);
        }
    }
    if policies.is_empty() {
        if let Some(names) = &sched_cfg.policies {
            for n in names {
                policies.push(Policy::parse(n).with_context(|| {
                    format!("{file}: schedule.policies: unknown policy {n:?}: expected first-fit, random, topology, network-aware, contention-aware or given")
                })?);
            }
        } else if job_list.iter().all(|j| j.hosts.is_some()) {
            policies.push(Policy::Given);
        } else {
            policies = Policy::ALL.to_vec();
        }
    }
    let backfill = match args.backfill.as_deref().or(sched_cfg.backfill.as_deref()) {
        Some("none") => false,
        Some("easy") | None => true,
        Some(other) => bail!("{file}: schedule.backfill: expected \"easy\" or \"none\", got {other:?}"),
    };
    if let Some(d) = &args.detail {
        if !policies.iter().any(|p| p.name() == d) {
            let names: Vec<&str> = policies.iter().map(|p| p.name()).collect();
            bail!("--detail: expected one of the policies run ({}), got {d:?}", names.join(", "));
        }
    }
    let opts = Options { policies, backfill, seed: Some(seed) };
    let tty = std::io::stderr().is_terminal();
    let shown = std::sync::atomic::AtomicBool::new(false);
    let r = meshway_sched::schedule(&setup, job_list, &opts, &|what, d, t| {
        if tty && (d == t || d % 20 == 0) {
            shown.store(true, std::sync::atomic::Ordering::Relaxed);
            eprint!("{}", crate::progress::one_row(&format!("\r{what}: {d}/{t} jobs          ")));
            let _ = std::io::stderr().flush();
        }
    });
    if shown.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!();
    }
    let r = r?;
    if let Some(p) = &args.html {
        let page = meshway_report::schedule::schedule_html(&r, args.detail.as_deref(), args.all_jobs);
        crate::output::write_html(p, &page, &schedule_inputs(args))?;
        eprintln!("wrote {}", p.display());
    }
    let mut out = if args.json {
        crate::json(&r)?
    } else {
        meshway_report::schedule::schedule_text(&r, args.detail.as_deref(), args.all_jobs)
    };
    if !wrote.is_empty() && !args.json {
        out += &format!("\nwrote {}\n", wrote.join(", "));
    }
    Ok(out)
}

/// The demo's scheduling run: examples/schedule-rail-1024.toml, every policy.
pub fn demo(cat: &Catalog) -> Result<meshway_sched::ScheduleReport> {
    let file = "examples/schedule-rail-1024.toml";
    let scenario = Scenario::parse(include_str!("../../../examples/schedule-rail-1024.toml"), file)?;
    let fabric = scenario.build(cat)?;
    let no_files = |_: &str| -> Result<String, String> { Err("the demo reads no files".into()) };
    let setup = Setup { scenario: &scenario, catalog: cat, fabric: &fabric, read_file: &no_files };
    let topo = FabricTopo::new(&fabric, cat, 1);
    let hier = Hier::new(&fabric, &topo, "node");
    drop(topo);
    let job_list = scenario
        .config
        .job
        .iter()
        .enumerate()
        .map(|(i, c)| jobs::from_config(c, i, format!("{file}: job[{}]", i + 1), hier.gpus_per_host))
        .collect::<Result<Vec<_>, _>>()?;
    let opts = Options { policies: Policy::ALL.to_vec(), backfill: true, seed: scenario.config.seed };
    Ok(meshway_sched::schedule(&setup, job_list, &opts, &|_, _, _| {})?)
}
