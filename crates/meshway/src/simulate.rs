//! `meshway simulate`: loads the scenario, runs it, prints the report; progress on stderr.

use anyhow::{Context, Result};
use meshway_fabric::{Catalog, Scenario};
use meshway_sim::exec::Policy;
use meshway_sim::simulate::{htsim_connection_matrix, simulate, Fidelity, Options, Setup, SimReport};
use std::path::{Path, PathBuf};

pub const HELP: &str = "Examples:
  meshway simulate examples/simulate-rail-256.toml
  meshway simulate examples/simulate-rail-256.toml --routing spray --json
  meshway simulate examples/train-3d-1024.toml --csv > flows.csv
  meshway simulate examples/bench/a2a-fat-tree-1024.toml --htsim a2a.cm
  meshway simulate examples/simulate-rail-256.toml --seed 7 --tolerance 0
  meshway simulate examples/incast-pfc.toml --fidelity packet
  meshway simulate examples/incast-pfc.toml --fidelity both --json
  meshway simulate examples/simulate-rail-256.toml --html report.html

Runs the scenario's [[workload]] tables one after another on its fabric, with
its [[failure]] tables applied, and reports each workload's completion time,
nccl-tests algbw/busbw for collectives (busbw = algbw x 2(n-1)/n for
all-reduce, (n-1)/n for all-gather, reduce-scatter and all-to-all, 1 for
broadcast and send/recv), the same workload on an ideal non-blocking fabric,
and the ten most congested links.

Workload kinds: collective (op = all-reduce | all-gather | reduce-scatter |
all-to-all | broadcast | send-recv; algorithm, below; protocol = auto | simple
| ll128 | ll, auto, the default, picked with the algorithm; sweep-from/sweep-to
for an nccl-tests style size sweep), permutation, uniform, incast, all-to-all,
flows (file = CSV or JSON flow list) and training (parameters, layers, hidden,
sequence, micro-batch, global-batch, tp, pp, dp, ep, dp-algorithm).

Collective algorithms (algorithm = ...):
  auto               the default: simulates each candidate (with each protocol)
                     alone and keeps the fastest; the output says what it picked
  ring               all-reduce, all-gather, reduce-scatter, broadcast (a
                     pipelined chain)
  tree               all-reduce: NCCL's double binary tree
  halving-doubling   all-reduce on a power-of-two number of ranks
  hierarchical       all-reduce: reduce-scatter inside each host, each GPU's
                     shard all-reduced across hosts on its rail, all-gather
  site-hierarchical  all-reduce over sites: the same with sites for hosts
  nvls               all-reduce, all-gather, reduce-scatter reduced in the
                     NVSwitch (NVLink SHARP GPUs: H100, H200, B200)
  nvls-tree          all-reduce: NVLS inside each host, a tree across hosts
  collnet            all-reduce reduced in SHARP switches (sharp = true)
  direct             all-to-all and send-recv, the only algorithm they take:
                     every message straight to its receiver

Exit status: 0; 1 when a message failed (its [[failure]] tables cut the
fabric; the report is printed in full and names them); 2 on bad input.";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The scenario file (TOML) with [[workload]] tables.
    pub file: PathBuf,
    /// Print one JSON document instead of tables.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print one CSV line per message (flow) instead of tables.
    #[arg(long)]
    pub csv: bool,
    /// Include per-message records in --json output.
    #[arg(long, requires = "json")]
    pub flows: bool,
    /// Override the routing policy: ecmp, adaptive, adaptive-global or spray.
    #[arg(long, value_parser = parse_policy)]
    pub routing: Option<Policy>,
    /// Seed for ECMP hashing and traffic generators (default: the scenario's, else 1).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Batch flow completions within this share of a flow's duration ("1%", or 0 for exact;
    /// default: the catalog's completion-tolerance, 1%): far fewer rate recomputes on
    /// million-flow runs.
    #[arg(long, value_parser = parse_share)]
    pub tolerance: Option<f64>,
    /// Skip the comparison run on an ideal non-blocking fabric.
    #[arg(long)]
    pub no_ideal: bool,
    /// flow (default), packet (queues, PFC pauses or credits, drops, trims) or both
    /// (packet level with the flow level beside it); default: the scenario's [simulation].
    #[arg(long, value_parser = parse_fidelity)]
    pub fidelity: Option<Fidelity>,
    /// Also write a self-contained HTML report with charts (completion-time CDFs, sweeps,
    /// hottest links, the training step, packet-level queues and pauses) to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also write the flow list in htsim's connection-matrix format to this file: the
    /// messages across the network at their payload (htsim has no NVLink); refused when one
    /// is above 2,147,483,647 bytes, the most htsim reads.
    #[arg(long, value_name = "FILE")]
    pub htsim: Option<PathBuf>,
    /// A catalog file whose entries replace or add to the built-in catalog.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
}

fn parse_share(s: &str) -> Result<f64, String> {
    let (num, div) = match s.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (s, 1.0),
    };
    match num.trim().parse::<f64>() {
        // -0 is 0 (it printed as -0.0 in the JSON).
        Ok(v) if (0.0..=50.0).contains(&(v / div * 100.0)) => Ok((v / div).abs()),
        _ => Err(format!("expected a share such as \"1%\" or 0.01 (at most 50%), got {s:?}")),
    }
}

fn parse_fidelity(s: &str) -> Result<Fidelity, String> {
    match s {
        "flow" => Ok(Fidelity::Flow),
        "packet" => Ok(Fidelity::Packet),
        "both" => Ok(Fidelity::Both),
        _ => Err(format!("expected flow, packet or both, got {s:?}")),
    }
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    match s {
        "ecmp" => Ok(Policy::Ecmp),
        "adaptive" => Ok(Policy::Adaptive),
        "adaptive-global" => Ok(Policy::AdaptiveGlobal),
        "spray" => Ok(Policy::Spray),
        _ => Err(format!("expected ecmp, adaptive, adaptive-global or spray, got {s:?}")),
    }
}

pub fn run_file(path: &Path, cat: &Catalog, opts: &Options) -> Result<SimReport> {
    let text =
        meshway_units::files::read_text(path).with_context(|| format!("cannot read scenario {}", path.display()))?;
    let file = path.display().to_string();
    let scenario = Scenario::parse(&text, &file)?;
    let fabric = scenario.build(cat)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let read = move |name: &str| -> Result<String, String> {
        let p = dir.join(name);
        meshway_units::files::read_text(&p).map_err(|e| format!("cannot read flow file {}: {e}", p.display()))
    };
    let setup = Setup { scenario: &scenario, catalog: cat, fabric: &fabric, read_file: &read };
    let line = |done: u64, total: u64, _: &str, secs: f64| {
        if total == 0 {
            meshway_report::sim::setup_line(secs)
        } else {
            meshway_report::sim::progress_line(done, total, secs)
        }
    };
    let r = crate::progress::Progress::new(&line).run(|bar| simulate(&setup, opts, &mut |d, t| bar.update(d, t, "")));
    Ok(r?)
}

/// The flow files a scenario's workloads read (relative to it), as far as it parses.
fn flow_files(scenario: &Path) -> Vec<PathBuf> {
    let dir = scenario.parent().map(Path::to_path_buf).unwrap_or_default();
    let Ok(text) = meshway_units::files::read_text(scenario) else { return Vec::new() };
    let Ok(s) = Scenario::parse(&text, &scenario.display().to_string()) else { return Vec::new() };
    s.config.workload.iter().filter_map(|w| w.file.as_ref()).map(|f| dir.join(f)).collect()
}

/// The report as text, JSON or CSV, and how many messages failed in all workloads.
/// The report, and when messages failed, what to say about it on stderr (the count and the
/// first reason: no path left, the event or clock limit, a stall).
pub fn run(args: &Args, cat: &Catalog) -> Result<(String, Option<String>)> {
    let opts = Options {
        routing: args.routing,
        seed: args.seed,
        no_ideal: args.no_ideal,
        flows: args.flows || args.csv || args.html.is_some(),
        tolerance: args.tolerance,
        fidelity: args.fidelity,
        link_history: args.html.is_some(),
    };
    // What the run reads, for the files it writes to keep off: the scenario, the catalog and
    // its flow files (found only when a file is written). A page that cannot be written is
    // found before a long run, not after it.
    let writes = args.html.is_some() || args.htsim.is_some();
    let flow_files = if writes { flow_files(&args.file) } else { Vec::new() };
    let mut read: Vec<&Path> = vec![&args.file];
    read.extend(flow_files.iter().map(PathBuf::as_path));
    let read = crate::inputs(&read, &args.catalog);
    if let Some(p) = &args.html {
        crate::output::check_html(p, &read)?;
    }
    if let (Some(h), Some(c)) = (&args.html, &args.htsim) {
        crate::output::check_distinct(("--html", h), ("--htsim", c))?;
    }
    let mut r = run_file(&args.file, cat, &opts)?;
    // The matrix before the page: an export htsim could not read writes neither.
    let htsim = match &args.htsim {
        Some(p) => Some((p, htsim_connection_matrix(&r).with_context(|| format!("cannot write {}", p.display()))?)),
        None => None,
    };
    if let Some(p) = &args.html {
        crate::output::write_html(p, &meshway_report::sim::sim_html(&r), &read)?;
        eprintln!("wrote {}", p.display());
        if !(args.flows || args.csv) {
            r.flows = None;
        }
    }
    if let Some((p, (text, notes))) = &htsim {
        crate::output::write(p, text.as_bytes(), &read)?;
        if notes.nvlink > 0 {
            let through = match notes.through_nvlink {
                0 => String::new(),
                n => format!(
                    "; {n} flows that waited on them wait on what those waited on, so htsim starts them without the NVLink time"
                ),
            };
            eprintln!(
                "warning: {} messages over NVLink inside a host are left out of {} (htsim has no NVLink){through}",
                notes.nvlink,
                p.display(),
            );
        }
        if notes.sharp > 0 {
            eprintln!(
                "warning: {} messages into and out of SHARP switches are left out of {} (htsim has no in-network reduction)",
                notes.sharp,
                p.display()
            );
        }
        if notes.fallback > 0 {
            eprintln!(
                "warning: {} flows in {} keep their simulated start times: their dependencies (compute gaps, barriers of more than 64 flows, SHARP legs) have no htsim trigger form",
                notes.fallback,
                p.display()
            );
        }
        if notes.relaxed > 0 {
            eprintln!(
                "warning: {} flows in {} depend on several flows; htsim starts a flow from one trigger, so each waits for the one that finished last in meshway's run",
                notes.relaxed,
                p.display()
            );
        }
    }
    let n: usize = r.workloads.iter().map(|w| w.failed_messages).sum();
    let sizes: Vec<(&str, u64, &str)> = r
        .sweeps
        .iter()
        .flat_map(|s| s.rows.iter().filter_map(move |x| Some((s.name.as_str(), x.size_bytes, x.failure.as_deref()?))))
        .collect();
    let not_run: Vec<&str> =
        r.workloads.iter().filter(|w| w.not_run_after.is_some()).map(|w| w.name.as_str()).collect();
    let failed = if n > 0 {
        let why = r.workloads.iter().flat_map(|w| &w.failures).next().cloned().unwrap_or_default();
        let later = match not_run.len() {
            0 => String::new(),
            1 => format!("; {} did not run (it starts after a workload that failed)", not_run[0]),
            k => format!("; {k} workloads did not run (they start after one that failed)"),
        };
        Some(format!("{n} messages failed; the first: {why} (see the report){later}"))
    } else {
        sizes.first().map(|(name, size, why)| {
            format!("{} sweep sizes did not complete; the first: {name} at {size} bytes: {why}", sizes.len())
        })
    };
    let text = if args.json {
        crate::json(&r)?
    } else if args.csv {
        meshway_report::sim::flows_csv(&r)
    } else {
        meshway_report::sim::sim_text(&r)
    };
    Ok((text, failed))
}
