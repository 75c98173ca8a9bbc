//! The `meshway` command line: parses flags, loads files, prints reports.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use meshway_fabric::{plan::FabricReport, Catalog};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

mod demo;
mod infer;
mod measure;
mod multisite;
mod output;
mod progress;
mod schedule;
mod simulate;
mod testbed;
mod traffic;

const EXAMPLES: &str = "\
Examples:
  meshway demo                           three fabrics for 1,024 GPUs, a verdict
  meshway plan examples/rail-optimized-1024.toml
  meshway plan examples/two-site-100km.toml --json
  meshway compare examples/three-tier-1024.toml examples/leaf-spine-1024.toml
  meshway plan my.toml --catalog mine.toml  your own switch models and prices
  # GPUs per site for inference latency
  meshway place examples/inference-edge-vs-central.toml
  # training over two sites against distance
  meshway multisite examples/two-site-training.toml";

#[derive(Parser, Debug)]
#[command(
    name = "meshway",
    version,
    about = "Plan, simulate, verify and operate network fabrics for AI training and inference",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug, Clone)]
struct Common {
    /// Print one JSON document instead of tables.
    #[arg(long)]
    json: bool,
    /// A catalog file whose entries replace or add to the built-in catalog.
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Also write a self-contained HTML report to this file: the command's charts (plan and
    /// compare: each fabric by tiers and its bill of materials; infer: p99 TTFT per region
    /// against its objective; place: GPUs per site of each plan; validate: published
    /// against simulated) and its text report.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Design analysis and bill of materials of one scenario.
    #[command(after_help = "Examples:
  meshway plan examples/leaf-spine-1024.toml
  meshway plan examples/fat-tree-100k.toml --json > report.json
  meshway plan examples/rail-optimized-1024.toml --html plan.html

Reports switch counts per tier, oversubscription, bisection bandwidth
(structural and max-flow), switch hops and equal-cost paths, zero-load
latency, a bill of materials with power and cost, lossless (PFC / credit)
headroom per port and switch, and single points of failure. Every default
number comes from catalog/default.toml with its source.")]
    Plan {
        /// The scenario file (TOML).
        file: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Compare scenarios side by side; the best value on each row is marked.
    #[command(after_help = "Example:
  meshway compare examples/three-tier-1024.toml examples/leaf-spine-1024.toml \\
      examples/rail-optimized-1024.toml")]
    Compare {
        /// Two or more scenario files.
        #[arg(required = true, num_args = 2..)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Emulate the fabric with network namespaces, run its workloads as TCP, compare with
    /// the simulator (root only).
    #[command(after_help = testbed::HELP)]
    Testbed {
        #[command(subcommand)]
        cmd: testbed::Cmd,
        /// A catalog file whose entries replace or add to the built-in catalog.
        #[arg(long, value_name = "FILE", global = true)]
        catalog: Option<PathBuf>,
    },
    /// Run the scenario's workloads (collectives, traffic, training steps) on its fabric.
    #[command(after_help = simulate::HELP)]
    Simulate(simulate::Args),
    /// The built-in comparison: a three-tier tree, a leaf-spine and a rail-optimized
    /// fat-tree for 1,024 GPUs on 400 Gbps NICs, plus a two-site variant 100 km apart.
    #[command(after_help = "Example:
  meshway demo
  meshway demo --json")]
    Demo {
        #[command(flatten)]
        common: Common,
    },
    /// Simulate inference requests from user regions to model servers at sites.
    #[command(after_help = infer::INFER_HELP)]
    Infer(infer::InferArgs),
    /// Choose GPUs per site so every region meets its latency objective at least cost.
    #[command(after_help = infer::PLACE_HELP)]
    Place(infer::PlaceArgs),
    /// A training job over sites joined by DCI: step against distance and DCI capacity,
    /// break-even distance of cross-site data parallelism, lossless headroom per span.
    #[command(after_help = multisite::HELP)]
    Multisite(multisite::Args),
    /// Many training jobs on one fabric: place them with each policy, co-simulate them on
    /// the shared links, compare; export the hierarchy for Slurm and Kueue.
    #[command(after_help = schedule::HELP)]
    Schedule(schedule::Args),
    /// Answer STAMP (RFC 8762) probes: the responder for `ping --kind udp` and the agent.
    Reflect(measure::ReflectArgs),
    /// Measure latency, jitter and loss to one target (udp to a reflector, tcp, icmp, http).
    Ping(measure::PingArgs),
    /// Throughput test: TCP parallel streams, reverse, bidir; UDP at a rate with loss and jitter.
    Perf(measure::PerfArgs),
    /// Hop-by-hop path, RTT and loss like mtr; flow-stable probes, parallel-path discovery.
    Trace(measure::TraceArgs),
    /// Continuous probing with history (SQLite), Prometheus /metrics, objectives and alerts.
    Agent(measure::AgentArgs),
    /// Query the agent's history: series, percentiles, trend forecast.
    History(measure::HistoryArgs),
    /// Optical module diagnostics (SFP, QSFP, QSFP-DD/OSFP with coherent ZR pages) from an
    /// interface or an EEPROM dump.
    Optics(measure::OpticsArgs),
    /// Analyse a capture (pcap, pcapng): flows, east-west and north-south, elephants, traffic
    /// matrices, TCP and RoCEv2 trouble, the links the largest flows cross.
    #[command(after_help = traffic::HELP)]
    Traffic(traffic::Args),
    /// Published measurements against the model: every row of a validation set run as a
    /// scenario, with the error per row and per group.
    #[command(after_help = "Examples:
  meshway validate                    the repository's validation/ set
  meshway validate validation --json
  meshway validate --set inference    serving throughput and latency only
  # published reference designs against meshway plan
  meshway validate --set plan

Reads DIR/collectives/nccl-tests.csv (published nccl-tests results, each row
citing its source) and DIR/collectives/setups.toml (their hardware as meshway
fabrics, and the rows meshway cannot model yet with the reason). Each row runs
as one collective on its fabric; the algorithm is NCCL's when the row names
one meshway has, else the fastest of meshway's. Prints published and simulated
bus bandwidth, the error, why a row is off by more than 25% (setups.toml's
[[known]] evidence where it has some, else the general pattern for its size),
and the median and max |error| per operation, size band and scale.

Reads DIR/inference/throughput.csv and latency-load.csv (published serving
benchmarks) and DIR/inference/setups.toml (their models, GPUs and engine
settings as meshway [[model]] keys). Each row runs as one server: offline rows
with every request sent at once, rate rows as their request count at Poisson
times over count / rate, concurrency rows as a closed loop of users. Prints
output tokens/s, time to first token and inter-token latency, published and
simulated, and per group the share within 15% (throughput) or 20% (latency);
then every figure outside its bound, with the reason setups.toml's [[known]]
entries give (or \"no reason known\").
DIR/inference/wan-rtt.csv (published inter-region round trips, Azure) is
compared with the path model: within a continent the great-circle distance x
its route factor, between continents routed over the catalog's cable landings
([[inference.wan-gateway]], [[inference.wan-cable]]), x fibre delay + the
fixed per-path cost of the row's pair of continents; DIR/inference/
wan-rtt-aws.csv (AWS, 2017) and wan-rtt-modern.csv (IBM Cloud, 2026), held
out of the model's fit, likewise.

Reads DIR/plan/designs.toml (published reference designs: DGX SuperPOD
generations, GB200 NVL72, Alibaba HPN) and plans each one: switches per tier,
links, hosts, NVLink trays and oversubscription against the published counts,
each row cited; a deliberate difference says why. The exit status is 1 when a
row that should match does not.")]
    Validate {
        /// The validation set (default: validation).
        #[arg(default_value = "validation")]
        dir: PathBuf,
        /// Which part: collectives, inference, plan or all.
        #[arg(long, default_value = "all", value_parser = ["all", "collectives", "inference", "plan"])]
        set: String,
        #[command(flatten)]
        common: Common,
    },
    /// Print the JSON Schema of scenario files (for editors that validate TOML).
    #[command(after_help = "Examples:
  meshway schema > scenario.schema.json
  # then, as the first line of a scenario, for Taplo / Even Better TOML:
  #:schema ./scenario.schema.json

The same schema is in docs/scenario.schema.json; it is generated from the
types the parser uses. It checks keys, types, the spelling of units (\"400Gbps\",
not \"400G\") and simple ranges; a value's own bounds (at most 100Tbps, whole
nanoseconds) and rules between keys are meshway's to check.")]
    Schema,
}

fn load_catalog(path: &Option<PathBuf>) -> Result<Catalog> {
    match path {
        None => Ok(Catalog::builtin()),
        Some(p) => {
            let text =
                meshway_units::files::read_text(p).with_context(|| format!("cannot read catalog {}", p.display()))?;
            Ok(Catalog::with_overlay(&text, &p.display().to_string())?)
        }
    }
}

/// A scenario planned, with the layout of its sites (for `--html`) when it has several.
fn plan_file(
    path: &std::path::Path,
    cat: &Catalog,
) -> Result<(FabricReport, Option<meshway_report::sites::SiteLayout>)> {
    let text =
        meshway_units::files::read_text(path).with_context(|| format!("cannot read scenario {}", path.display()))?;
    // As meshway_fabric::plan_text, keeping the fabric for its sites' layout.
    let sc = meshway_fabric::Scenario::parse(&text, &path.display().to_string())?;
    let fabric = sc.build(cat)?;
    let tr = sc.transport(cat)?;
    Ok((meshway_fabric::analyze(&fabric, cat, &tr), meshway_report::sites::site_layout(&fabric, cat)))
}

fn emit(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        // A closed pipe (| head) is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to standard output"),
    }
}

/// The files a run read, for the outputs to keep off: those named and the catalog.
fn inputs<'a>(named: &[&'a std::path::Path], catalog: &'a Option<PathBuf>) -> Vec<&'a std::path::Path> {
    named.iter().copied().chain(catalog.as_deref()).collect()
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    Ok(meshway_report::json(v)?)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Plan { file, common } => {
            let cat = load_catalog(&common.catalog)?;
            let (r, sites) = plan_file(&file, &cat)?;
            if let Some(p) = &common.html {
                output::write_html(
                    p,
                    &meshway_report::plan_html(&r, sites.as_ref()),
                    &inputs(&[&file], &common.catalog),
                )?;
                eprintln!("wrote {}", p.display());
            }
            emit(&if common.json { json(&r)? } else { meshway_report::plan_text(&r) })
        }
        Command::Compare { files, common } => {
            let cat = load_catalog(&common.catalog)?;
            let (mut rs, sites): (Vec<_>, Vec<_>) =
                files.iter().map(|f| plan_file(f, &cat)).collect::<Result<Vec<_>>>()?.into_iter().unzip();
            // Columns are headed by scenario name: a name given twice gets its position.
            let names: Vec<String> = rs.iter().map(|r| r.name.clone()).collect();
            for (i, r) in rs.iter_mut().enumerate() {
                if names.iter().filter(|n| **n == r.name).count() > 1 {
                    r.name = format!("{} ({})", r.name, i + 1);
                }
            }
            if let Some(p) = &common.html {
                let named: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
                output::write_html(p, &meshway_report::compare_html(&rs, &sites), &inputs(&named, &common.catalog))?;
                eprintln!("wrote {}", p.display());
            }
            emit(&if common.json { meshway_report::compare_json(&rs)? } else { meshway_report::compare_text(&rs) })
        }
        Command::Testbed { cmd, catalog } => {
            // `down` reads no catalog: a missing one must not keep it from cleaning up.
            let cat =
                if matches!(cmd, testbed::Cmd::Down { .. }) { load_catalog(&None)? } else { load_catalog(&catalog)? };
            emit(&testbed::run(cmd, &cat, &catalog)?)
        }
        Command::Simulate(args) => {
            let cat = load_catalog(&args.catalog)?;
            let (text, failed) = simulate::run(&args, &cat)?;
            emit(&text)?;
            if let Some(why) = failed {
                eprintln!("{why}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Demo { common } => {
            let cat = load_catalog(&common.catalog)?;
            let d = demo::run(&cat)?;
            if let Some(p) = &common.html {
                output::write_html(p, &meshway_report::demo::demo_html(&d), &inputs(&[], &common.catalog))?;
                eprintln!("wrote {}", p.display());
            }
            emit(&if common.json { json(&d)? } else { meshway_report::demo::demo_text(&d) })
        }
        Command::Infer(a) => infer::run_infer(a),
        Command::Place(a) => infer::run_place(a),
        Command::Multisite(a) => {
            let cat = load_catalog(&a.catalog)?;
            emit(&multisite::run(&a, &cat)?)
        }
        Command::Schedule(a) => {
            let cat = load_catalog(&a.catalog)?;
            emit(&schedule::run(&a, &cat)?)
        }
        Command::Reflect(a) => measure::reflect(a),
        Command::Ping(a) => measure::ping(a),
        Command::Perf(a) => measure::perf(a),
        Command::Trace(a) => measure::trace(a),
        Command::Agent(a) => measure::agent(a),
        Command::History(a) => measure::history(a),
        Command::Optics(a) => measure::optics(a),
        Command::Traffic(a) => {
            let cat = load_catalog(&a.catalog)?;
            emit(&traffic::run(&a, &cat)?)
        }
        Command::Validate { dir, set, common } => {
            let cat = load_catalog(&common.catalog)?;
            let read = |part: &str, name: &str| -> Result<(String, String)> {
                let p = dir.join(part).join(name);
                let text = meshway_units::files::read_text(&p)
                    .with_context(|| format!("cannot read {} (is {} a validation set?)", p.display(), dir.display()))?;
                Ok((text, p.display().to_string()))
            };
            let mut text = String::new();
            let mut out = serde_json::Map::new();
            let (mut coll, mut plan_set, mut infer_set) = (None, None, None);
            if set == "all" || set == "collectives" {
                let (rows, rows_file) = read("collectives", "nccl-tests.csv")?;
                let (setups, setups_file) = read("collectives", "setups.toml")?;
                // The set runs for minutes (its 256-GPU all-to-alls): a progress line on terminals.
                let r = crate::progress::Progress::new(&validate_line).run(|bar| {
                    meshway_validate::run(&rows, &rows_file, &setups, &setups_file, &cat, &mut |i, n| {
                        bar.update(i as u64, n as u64, "collectives")
                    })
                })?;
                let stale = meshway_validate::stale_entries(
                    &meshway_validate::parse_rows(&rows, &rows_file)?,
                    &meshway_validate::parse_setups(&setups, &setups_file)?,
                );
                // A subset of the rows leaves many entries unmatched: the first few say which.
                for w in stale.iter().take(5) {
                    eprintln!("warning: {setups_file}: {w}");
                }
                if stale.len() > 5 {
                    eprintln!("warning: {setups_file}: {} more entries match no row", stale.len() - 5);
                }
                text.push_str(&meshway_report::validate::validate_text(&r));
                out.insert("collectives".into(), serde_json::to_value(&r)?);
                coll = Some(r);
            }
            let mut plan_mismatch = 0;
            if set == "all" || set == "plan" {
                if !text.is_empty() {
                    text.push('\n');
                }
                let (designs, designs_file) = read("plan", "designs.toml")?;
                let r = meshway_validate::plan::run(&designs, &designs_file, &cat)?;
                text.push_str(&meshway_report::validate::plan_validate_text(&r));
                out.insert("plan".into(), serde_json::to_value(&r)?);
                plan_mismatch = r.mismatched;
                plan_set = Some(r);
            }
            if set == "all" || set == "inference" {
                let (setups, setups_file) = read("inference", "setups.toml")?;
                let files = vec![read("inference", "throughput.csv")?, read("inference", "latency-load.csv")?];
                let files: Vec<(String, String)> = files.into_iter().map(|(t, f)| (f, t)).collect();
                let mut r = crate::progress::Progress::new(&validate_line).run(|bar| {
                    meshway_validate::inference::run(&files, &setups, &setups_file, &cat, &mut |i, n| {
                        bar.update(i as u64, n as u64, "inference")
                    })
                })?;
                let (wan, wan_file) = read("inference", "wan-rtt.csv")?;
                (r.wan, r.wan_groups) = meshway_validate::inference::run_wan(&wan, &wan_file, &cat)?;
                // Tables held out of the route model's fit, when the set has them.
                for held in ["wan-rtt-aws.csv", "wan-rtt-modern.csv"] {
                    // Absent is fine (a set may hold none); present but unreadable is an error.
                    if !dir.join("inference").join(held).exists() {
                        continue;
                    }
                    let (held, held_file) = read("inference", held)?;
                    let (rows, groups) = meshway_validate::inference::run_wan(&held, &held_file, &cat)?;
                    r.wan.extend(rows);
                    r.wan_groups.extend(groups);
                }
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&meshway_report::validate::infer_validate_text(&r));
                out.insert("inference".into(), serde_json::to_value(&r)?);
                infer_set = Some(r);
            }
            if let Some(p) = &common.html {
                let page = meshway_report::validate::validate_html(
                    coll.as_ref(),
                    plan_set.as_ref(),
                    infer_set.as_ref(),
                    &text,
                );
                output::write_html(p, &page, &inputs(&[], &common.catalog))?;
                eprintln!("wrote {}", p.display());
            }
            emit(&if common.json { json(&out)? } else { text })?;
            if plan_mismatch > 0 {
                eprintln!("{plan_mismatch} reference-design rows do not match their published counts");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Schema => emit(&meshway_fabric::schema::scenario_schema()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // A cause the message above already quotes is not repeated.
            let mut shown = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !shown.contains(&c) {
                    eprintln!("  caused by: {c}");
                }
                shown = c;
            }
            ExitCode::from(2)
        }
    }
}

/// `meshway validate`'s progress line: the set and the row it is at.
fn validate_line(done: u64, total: u64, what: &str, secs: f64) -> String {
    format!("\r  validate {what}: row {} of {total}  {secs:.0}s", (done + 1).min(total.max(1)))
}
