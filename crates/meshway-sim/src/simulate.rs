//! `meshway simulate`: a scenario's `[[workload]]` and `[[failure]]` tables, run on its fabric.
//!
//! Workloads run one after another by default (each starts when the previous one has
//! completed); `start = "2ms"` places one at a fixed time instead, alongside the others.

use crate::collective::{self, Algo, CollSpec, Model, Op};
use crate::exec::{execute, ExecConfig, Execution, LinkEvent, Policy, Wire};
use crate::program::{Msg, MsgId, Program};
use crate::topo::{mix, FabricTopo, IdealTopo, Topology};
use crate::training::{self, TrainSpec};
use crate::tuner;
use crate::{CollectiveError, SimError};
use meshway_fabric::config::{CompletionConfig, FidelityConfig, ForwardingConfig, RoutingKind, TransportKind};
use meshway_fabric::error::closest;
use meshway_fabric::scenario::Ctx;
use meshway_fabric::workload_config::{CollModelConfig, ProtocolConfig, RankRef, WorkloadConfig, WorkloadKind};
use meshway_fabric::{Catalog, Fabric, FabricError, LinkClass, Scenario};
use meshway_units::{BitsPerSec, Bytes, Nanos, SimTime};
use serde::Serialize;

pub use crate::error::SimulateError;

/// Command-line overrides.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub routing: Option<Policy>,
    pub seed: Option<u64>,
    /// Skip the ideal-fabric comparison run.
    pub no_ideal: bool,
    /// Keep per-message records in the report.
    pub flows: bool,
    /// Completion batching tolerance as a share of a flow's duration (default: the
    /// catalog's `completion-tolerance`; 0 is exact).
    pub tolerance: Option<f64>,
    /// Which rung runs (default: the scenario's `[simulation] fidelity`, else flow level).
    pub fidelity: Option<Fidelity>,
    /// Record the hottest links' carried bytes over time (flow level; for the HTML report).
    pub link_history: bool,
}

/// Which rung of the fidelity ladder a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fidelity {
    Flow,
    Packet,
    /// Packet level, with the flow level run beside it for comparison.
    Both,
}

impl Fidelity {
    pub fn name(self) -> &'static str {
        match self {
            Fidelity::Flow => "flow",
            Fidelity::Packet => "packet",
            Fidelity::Both => "both",
        }
    }
}

/// Completion times of one workload's messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FctSummary {
    pub messages: usize,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Jain's fairness index of the completion times (1: all equal).
    pub fairness: f64,
}

/// One workload at both rungs (`--fidelity both`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RungRow {
    pub workload: String,
    pub flow_time_ns: Option<u64>,
    pub packet_time_ns: Option<u64>,
    /// Packet over flow time, less one.
    pub difference: Option<f64>,
    pub flow_fct: Option<FctSummary>,
    pub packet_fct: Option<FctSummary>,
}

/// What a packet-level run adds to the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PacketSection {
    pub params: crate::packet::PacketParams,
    /// Estimated memory of the run, bytes (checked against `memory_limit` before it starts).
    pub memory_estimate_bytes: u64,
    /// Per workload: completion times of its messages at packet level.
    pub fct: Vec<(String, Option<FctSummary>)>,
    pub stats: crate::packet::PacketStats,
    /// `--fidelity both`: each workload at flow and packet level.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rungs: Vec<RungRow>,
    /// What a completion time includes at packet level.
    pub completion: String,
}

/// What a workload is.
#[derive(Debug, Clone)]
enum Kind {
    /// `auto`: the tuner picks the algorithm when the workload is written (`spec.algo` is
    /// then only a placeholder).
    /// `protocol`: the catalog protocol; `None` when the tuner picks it.
    Collective {
        spec: Box<CollSpec>,
        sweep: Option<(u64, u64)>,
        auto: bool,
        protocol: Option<collective::Proto>,
    },
    Flows {
        flows: Vec<FlowLine>,
    },
    Training(Box<TrainSpec>),
}

/// One line of a flow list or generator: from, to, bytes, start, dependencies (indexes into
/// the same list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowLine {
    pub src: u32,
    pub dst: u32,
    pub bytes: u64,
    pub start: Nanos,
    pub deps: Vec<u32>,
    /// A pinned route (the flow file's `path`): arcs of the scenario's fabric; empty when
    /// routing chooses.
    pub path: Vec<crate::engine::LinkId>,
}

#[derive(Debug, Clone)]
struct Workload {
    /// Position among the [[workload]] tables, for messages.
    nth: usize,
    name: String,
    kind_name: String,
    start: Option<Nanos>,
    kind: Kind,
}

/// The transport a run uses.
#[derive(Debug, Clone, Serialize)]
pub struct TransportInfo {
    pub kind: String,
    pub routing: Policy,
    /// Completion batching tolerance (share of a flow's duration; 0 is exact).
    pub tolerance: f64,
    pub mtu_bytes: u64,
    pub header_bytes: u64,
    pub goodput: f64,
    pub alpha_ns: u64,
    pub lossless: String,
    /// When a message counts as complete: "data" (last byte at the receiver) or "ack" (its
    /// acknowledgement back at the sender).
    pub completion: String,
    /// "cut-through" or "store-and-forward".
    pub forwarding: String,
}

/// One workload's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadResult {
    pub name: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// `algorithm = "auto"`: every algorithm the tuner simulated, with its time alone (the
    /// one picked is the fastest), or the one a tuner plugin's region set (`plugin_region`,
    /// nothing else weighed). Empty when the scenario named the algorithm or there was only
    /// one candidate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tuner: Vec<tuner::Candidate>,
    /// The NCCL protocol of a collective (simple, ll128, ll).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Granularity: "steps", "steady-state" or "direct".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub ranks: usize,
    pub messages: usize,
    pub size_bytes: u64,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    pub time_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algbw_gbps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busbw_gbps: Option<f64>,
    /// The same workload on an ideal non-blocking fabric.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ideal_time_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slowdown: Option<f64>,
    /// Slowest message's completion time (from its start).
    pub slowest_message_ns: Option<u64>,
    /// Messages that did not complete, not counting those of a workload that did not run.
    pub failed_messages: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// Not run: it starts when the workload named here completes, and that one failed. Its
    /// messages are not counted in `failed_messages`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_run_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training: Option<training::StepReport>,
    /// A training step that did not complete: the collectives it was written with (what a
    /// completed step lists in `training.collectives`), so a failed step still says what ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub step_collectives: Vec<crate::program::StepCollective>,
}

/// One row of a size sweep, as nccl-tests prints it.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub size_bytes: u64,
    /// From the workload's start (its `start`, else 0) to its end; None when it did not
    /// complete (`failure` says why).
    pub time_us: Option<f64>,
    pub algbw_gbytes: Option<f64>,
    pub busbw_gbytes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    pub model: String,
    /// The algorithm and protocol of this size (the tuner's picks where left to it).
    pub algorithm: String,
    pub protocol: String,
    /// Left to the tuner: every candidate it weighed at this size, as a workload's `tuner`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tuner: Vec<tuner::Candidate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    pub name: String,
    pub op: String,
    pub algorithm: String,
    pub ranks: usize,
    pub rows: Vec<SweepRow>,
}

/// Use of one directed link over the run.
#[derive(Debug, Clone, Serialize)]
pub struct LinkUse {
    pub link: String,
    pub capacity_bps: u64,
    pub carried_bytes: u64,
    pub peak_utilization: f64,
    /// Carried bytes over capacity x run time.
    pub mean_utilization: f64,
    /// Bytes carried per interval of the run's link history (`link_history_interval_ns`), when
    /// recorded; not in JSON.
    #[serde(skip)]
    pub history: Vec<u64>,
}

/// One message in the per-flow output.
#[derive(Debug, Clone, Serialize)]
pub struct FlowRecord {
    pub workload: String,
    pub src: String,
    pub dst: String,
    /// The message's payload (a collective's send moves more on the simulated link, scaled
    /// to the NIC's achievable share; this is what it carries).
    pub bytes: u64,
    /// The bytes the simulated link moved for it (the payload, or more: see
    /// [`crate::program::Msg::payload`]); not in the JSON or CSV.
    #[serde(skip)]
    pub link_bytes: u64,
    pub start_ns: Option<u64>,
    pub end_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// The report of `meshway simulate`.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub scenario: String,
    pub gpus: usize,
    pub seed: u64,
    /// The rung that produced the workloads' times: "flow" or "packet" (also with `both`).
    pub fidelity: String,
    pub transport: TransportInfo,
    pub workloads: Vec<WorkloadResult>,
    /// The `[[failure]]` tables as applied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<FailureInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sweeps: Vec<Sweep>,
    /// The ten directed links with the highest mean utilization.
    pub congested_links: Vec<LinkUse>,
    /// Width of the intervals of the congested links' `history` (0: not recorded); not in JSON.
    #[serde(skip)]
    pub link_history_interval_ns: u64,
    /// Explanations of surprising results (e.g. ECMP hash collisions behind a slowdown).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Every directed network link that carried traffic.
    pub links: Vec<LinkUse>,
    pub engine_flows: usize,
    pub events: u64,
    pub recomputes: u64,
    pub end_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flows: Option<Vec<FlowRecord>>,
    /// Packet level: parameters, per-port pauses, drops, trims, queue time series.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet: Option<Box<PacketSection>>,
    /// The messages for export (htsim).
    #[serde(skip)]
    pub export: Export,
}

/// The run's messages as an export (htsim) takes them: the flows across the network, and
/// what was left out.
#[derive(Debug, Clone, Default)]
pub struct Export {
    /// Messages that cross the network, with dependencies as indexes into this list.
    pub flows: Vec<ExportFlow>,
    /// Left out: messages over NVLink inside a host, between two GPUs or into and out of
    /// the NVSwitch (NVLS).
    pub nvlink: usize,
    /// Left out: messages into and out of SHARP switches that reduce (CollNet).
    pub sharp: usize,
    /// Flows that waited on a left-out NVLink message and wait on what it waited on instead.
    pub through_nvlink: usize,
    /// Workload names, by [`ExportFlow::tag`].
    pub tags: Vec<String>,
}

/// A message as exported to htsim: ranks, payload bytes, simulated start, dependencies.
#[derive(Debug, Clone)]
pub struct ExportFlow {
    pub src: u32,
    pub dst: u32,
    /// The payload (as `--csv` gives it), not the bytes scaled to the achievable share that
    /// meshway moves: htsim models its links itself.
    pub bytes: u64,
    pub start: u64,
    /// Simulated completion (ns), or `u64::MAX` when it did not complete.
    pub end: u64,
    pub deps: Vec<u32>,
    /// The workload (an index into [`Export::tags`]).
    pub tag: u32,
}

/// Everything `simulate` needs besides the scenario.
pub struct Setup<'a> {
    pub scenario: &'a Scenario,
    pub catalog: &'a Catalog,
    pub fabric: &'a Fabric,
    /// Reads a flow file named in a workload (relative to the scenario).
    pub read_file: &'a dyn Fn(&str) -> Result<String, String>,
}

fn ctx<'a>(s: &'a Scenario, section: &str, nth: usize) -> Ctx<'a> {
    Ctx::new(&s.file, &s.text, section, nth, &format!("{section}[{}]", nth + 1))
}

/// A workload over fewer than 2 GPUs, named by the key that chose them: `ranks`, `group`,
/// or, when neither is given, the fabric (all its GPUs).
fn too_few_ranks(w: &WorkloadConfig, c: &Ctx<'_>, what: &str, n: usize) -> FabricError {
    if w.ranks.is_some() {
        c.invalid("ranks", format!("{what}, got {n}"))
    } else if w.group.is_some() {
        c.invalid("group", format!("{what}, the group has {n}"))
    } else {
        c.invalid(
            "kind",
            format!("{what} (all of the fabric's, as neither ranks nor group is given), the fabric has {n}"),
        )
    }
}

/// Resolves `group`/`ranks` keys into ranks.
fn resolve_ranks(
    w: &WorkloadConfig,
    c: &Ctx<'_>,
    topo: &FabricTopo<'_>,
    fabric: &Fabric,
) -> Result<Vec<u32>, FabricError> {
    let all: Vec<u32> = (0..topo.ranks() as u32).collect();
    if w.ranks.is_some() && w.group.is_some() {
        return Err(c.invalid("group", "give `group` or `ranks`, not both (the ranks would win without a word)"));
    }
    if let Some(list) = &w.ranks {
        let mut out = Vec::with_capacity(list.len());
        for x in list {
            let r = match x {
                RankRef::Name(s) => topo.rank_by_name(s),
                RankRef::Index(i) => u32::try_from(*i).ok().filter(|&i| (i as usize) < topo.ranks()),
            }
            .ok_or_else(|| {
                c.invalid("ranks", format!("{x} is not a GPU of this fabric (it has {} GPUs)", topo.ranks()))
            })?;
            out.push(r);
        }
        let mut sorted = out.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(c.invalid("ranks", format!("{} is listed twice", topo.rank_name(w[0]))));
        }
        return Ok(out);
    }
    match w.group.as_deref() {
        None | Some("all") => Ok(all),
        Some("hosts") => {
            // One GPU per host: the first of each.
            let mut out = Vec::new();
            let mut last = u32::MAX;
            for r in all {
                if topo.host_of(r) != last {
                    last = topo.host_of(r);
                    out.push(r);
                }
            }
            Ok(out)
        }
        Some(name) => {
            let g = fabric.groups.iter().find(|g| g.name == name).ok_or_else(|| {
                let names: Vec<&str> = fabric.groups.iter().map(|g| g.name.as_str()).collect();
                let hint = closest(name, &names).map(|n| format!("; did you mean {n:?}?")).unwrap_or_default();
                let few: Vec<&str> = names.iter().take(6).copied().collect();
                c.invalid(
                    "group",
                    format!(
                        "no group named {name:?}; expected \"all\", \"hosts\" or a group such as {}{hint}",
                        few.join(", ")
                    ),
                )
            })?;
            let mut out: Vec<u32> = all.into_iter().filter(|&r| g.nodes.contains(&topo.node_of(r))).collect();
            out.sort_unstable();
            Ok(out)
        }
    }
}

/// A seeded derangement of `n` (no rank sends to itself).
fn derangement(n: usize, seed: u64) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    if n < 2 {
        return p;
    }
    // Sattolo's algorithm gives a single cycle: a derangement.
    let mut s = seed;
    for i in (1..n).rev() {
        s = mix(s);
        let j = (s % i as u64) as usize;
        p.swap(i, j);
    }
    p
}

pub use crate::collective::hardware;

/// The collective a `kind = "collective"` table describes.
fn collective_kind(
    w: &WorkloadConfig,
    c: &Ctx<'_>,
    topo: &FabricTopo<'_>,
    setup: &Setup<'_>,
) -> Result<Kind, FabricError> {
    let cat = setup.catalog;
    let op = w.op.unwrap_or(Op::AllReduce);
    let chosen = w.algorithm.and_then(Algo::from_config);
    let auto = chosen.is_none();
    let algo = chosen.unwrap_or(Algo::Ring);
    let model = match w.model {
        None | Some(CollModelConfig::Auto) => None,
        Some(CollModelConfig::Steps) => Some(Model::Steps),
        Some(CollModelConfig::Steady) => Some(Model::Steady),
    };
    let sweep = match (w.sweep_from, w.sweep_to) {
        (Some(_), Some(b)) if b.0 > MAX_WORKLOAD_BYTES => {
            return Err(c.invalid("sweep-to", format!("expected at most 1PiB, got {b}")))
        }
        (Some(a), Some(b)) if a.0 > 0 && a.0 <= b.0 => Some((a.0, b.0)),
        (None, None) => None,
        _ => return Err(c.invalid("sweep-from", "give both sweep-from and sweep-to, with 0 < from <= to")),
    };
    if sweep.is_some() && w.size.is_some() {
        return Err(c.invalid("size", "give either size or sweep-from and sweep-to, not both"));
    }
    let size = if sweep.is_some() { 1 } else { required_size(w, c)? };
    let ranks = resolve_ranks(w, c, topo, setup.fabric)?;
    if ranks.len() < 2 {
        return Err(too_few_ranks(w, c, "a collective needs at least 2 GPUs", ranks.len()));
    }
    let channels = w.channels.map_or(u64::from(cat.simulation.channels), |c| c.0);
    if channels == 0 || channels > 64 {
        return Err(c.invalid("channels", "expected 1 to 64"));
    }
    let mut hw = hardware(setup.fabric, cat);
    // SHARP's in-network reduction (CollNet, NVLS across hosts) is NCCL's over InfiniBand: an
    // EFA or TCP fabric has none, whatever its switches (Quantum-2 under EFA ran CollNet).
    let kind = setup.scenario.config.transport.as_ref().map(|t| t.kind).unwrap_or_default();
    if matches!(kind, TransportKind::Efa | TransportKind::Tcp) && hw.collnet.is_some() {
        if matches!(algo, Algo::Collnet)
            || (matches!(algo, Algo::Nvls) && ranks.iter().any(|&r| topo.host_of(r) != topo.host_of(ranks[0])))
        {
            return Err(c.invalid(
                "algorithm",
                format!(
                    "{} has no in-network reduction: SHARP (collnet, nvls across hosts) runs over InfiniBand",
                    kind.name()
                ),
            ));
        }
        hw.collnet = None;
    }
    let spec = CollSpec {
        op,
        algo,
        size,
        ranks,
        channels: channels as u32,
        model,
        steps_limit: cat.simulation.steps_flow_limit,
        alpha: Nanos::ZERO,
        packet: 0,
        pipeline: collective::Pipeline { depth: cat.simulation.pipeline_depth, chunk: cat.simulation.pipeline_chunk.0 },
        // Set when the workload is written (the scenario's protocol or the tuner's).
        proto: collective::Proto::TRANSPORT,
        hw,
        net_overhead: Some(cat.simulation.net_overhead.unwrap_or(Nanos::ZERO)),
    };
    let protocol = match w.protocol.and_then(ProtocolConfig::name) {
        None => None,
        Some(name) => Some(collective::Proto::from_model(
            cat.protocol(name)
                .ok_or_else(|| c.invalid("protocol", format!("the catalog has no [[protocol]] named {name:?}")))?,
        )),
    };
    if let (Some(p), Some(ps)) = (&protocol, &spec.hw.protocols) {
        if !spec.hw.runs(&p.name) {
            return Err(c.invalid(
                "protocol",
                format!(
                    "the fabric's NIC model {:?} runs only {} (catalog [[nic]] protocols), not {:?}",
                    spec.hw.nic_model,
                    ps.join(", "),
                    p.name
                ),
            ));
        }
    }
    Ok(Kind::Collective { spec: Box::new(spec), sweep, auto, protocol })
}

fn required_size(w: &WorkloadConfig, c: &Ctx<'_>) -> Result<u64, FabricError> {
    let b = w.size.ok_or_else(|| c.invalid("size", "missing: expected a size like \"1GiB\""))?;
    if b.0 == 0 {
        return Err(c.invalid("size", "must be positive"));
    }
    if b.0 > MAX_WORKLOAD_BYTES {
        return Err(c.invalid("size", format!("expected at most 1PiB, got {b}")));
    }
    Ok(b.0)
}

use crate::limits::{MAX_SCENARIO_TIME_NS, MAX_WORKLOAD_BYTES};

/// The flows of a generated pattern (permutation, uniform, incast, all-to-all).
fn pattern_kind(
    w: &WorkloadConfig,
    c: &Ctx<'_>,
    topo: &FabricTopo<'_>,
    fabric: &Fabric,
    wl_seed: u64,
) -> Result<Kind, FabricError> {
    let bytes = required_size(w, c)?;
    let ranks = resolve_ranks(w, c, topo, fabric)?;
    let n = ranks.len();
    if n < 2 {
        return Err(too_few_ranks(w, c, "needs at least 2 GPUs", n));
    }
    let line =
        |a: u32, b: u32| FlowLine { src: a, dst: b, bytes, start: Nanos::ZERO, deps: Vec::new(), path: Vec::new() };
    let flows = match w.kind {
        WorkloadKind::Permutation => {
            let p = derangement(n, wl_seed);
            (0..n).map(|i| line(ranks[i], ranks[p[i] as usize])).collect()
        }
        WorkloadKind::Uniform => {
            let count = w.flows.map_or(n as u64, |f| f.0);
            if count == 0 || count > crate::collective::MAX_MESSAGES {
                return Err(c.invalid(
                    "flows",
                    format!(
                        "expected 1 to {} flows, the most one run may hold (about 900 bytes each while they run)",
                        crate::collective::MAX_MESSAGES
                    ),
                ));
            }
            let mut st = wl_seed;
            (0..count)
                .map(|_| {
                    st = mix(st);
                    let a = (st % n as u64) as usize;
                    st = mix(st);
                    let b = (a + 1 + (st % (n as u64 - 1)) as usize) % n;
                    line(ranks[a], ranks[b])
                })
                .collect()
        }
        WorkloadKind::Incast => {
            let recv = match &w.receiver {
                Some(name) => topo
                    .rank_by_name(name)
                    .ok_or_else(|| c.invalid("receiver", format!("{name:?} is not a GPU of this fabric")))?,
                None => ranks[0],
            };
            let others: Vec<u32> = ranks.iter().copied().filter(|&r| r != recv).collect();
            let senders = w.senders.map_or(others.len() as u64, |s| s.0);
            if senders == 0 || senders > others.len() as u64 {
                return Err(c.invalid("senders", format!("expected 1 to {}", others.len())));
            }
            others[..senders as usize].iter().map(|&a| line(a, recv)).collect()
        }
        _ => {
            let count = n as u64 * (n as u64 - 1);
            if count > crate::collective::MAX_MESSAGES {
                return Err(c.invalid(
                    "kind",
                    format!(
                        "all-to-all on {n} GPUs writes {count} flows, more than the {} one run may hold (about 900 bytes each while they run); give `ranks` or `group` for fewer GPUs",
                        crate::collective::MAX_MESSAGES
                    ),
                ));
            }
            let mut v = Vec::with_capacity(n * (n - 1));
            for i in 0..n {
                for k in 1..n {
                    v.push(line(ranks[i], ranks[(i + k) % n]));
                }
            }
            v
        }
    };
    Ok(Kind::Flows { flows })
}

fn parse_workloads(setup: &Setup<'_>, topo: &FabricTopo<'_>, seed: u64) -> Result<Vec<Workload>, FabricError> {
    let s = setup.scenario;
    let mut out = Vec::new();
    for (nth, w) in s.config.workload.iter().enumerate() {
        let c = ctx(s, "workload", nth);
        w.check_keys().map_err(|(k, m)| c.invalid(k, m))?;
        let wl_seed = mix(seed ^ (nth as u64 + 1));
        let kind = match w.kind {
            WorkloadKind::Collective => collective_kind(w, &c, topo, setup)?,
            WorkloadKind::Permutation | WorkloadKind::Uniform | WorkloadKind::Incast | WorkloadKind::AllToAll => {
                pattern_kind(w, &c, topo, setup.fabric, wl_seed)?
            }
            WorkloadKind::Flows => {
                let file =
                    w.file.as_deref().ok_or_else(|| c.invalid("file", "missing: expected a CSV or JSON flow list"))?;
                let text = (setup.read_file)(file).map_err(|e| c.invalid("file", e))?;
                let flows = parse_flow_file(file, &text, topo).map_err(|e| c.invalid("file", e))?;
                Kind::Flows { flows }
            }
            WorkloadKind::Training => {
                Kind::Training(Box::new(training::parse_on(w, &c, topo, setup.fabric, setup.catalog)?))
            }
        };
        if let Some(t) = w.start.filter(|t| t.0 > MAX_SCENARIO_TIME_NS) {
            return Err(c.invalid("start", format!("expected at most 365d, got {t}")));
        }
        out.push(Workload { nth, name: w.display_name(nth), kind_name: w.kind.to_string(), start: w.start, kind });
    }
    if out.is_empty() {
        return Err(FabricError::Invalid {
            file: s.file.clone(),
            line: None,
            key: "workload".into(),
            message:
                "no [[workload]] tables: add one, e.g. kind = \"collective\", op = \"all-reduce\", size = \"1GiB\""
                    .into(),
        });
    }
    Ok(out)
}

/// Parses a flow list: CSV with a header `src,dst,bytes[,start][,deps][,path]` (deps
/// separated by `;`, as 0-based line indexes of earlier flows; path: the switches a flow
/// must cross, by name, separated by spaces) or JSON (an array of objects with the same
/// keys, `path` a string or a list of names; other keys are refused). GPUs by name or rank
/// number; sizes and times in human units. The CSV is read by the
/// `csv` crate (RFC 4180 quoting; lines starting with `#` and blank lines skipped, columns
/// other than those five ignored); errors name `file:line`.
pub fn parse_flow_file(file: &str, text: &str, topo: &FabricTopo<'_>) -> Result<Vec<FlowLine>, String> {
    let rank = |s: &str, line: usize| {
        topo.rank_by_name(s.trim()).ok_or_else(|| format!("{file}:{line}: {:?} is not a GPU of this fabric", s.trim()))
    };
    let mut out = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("{file}: invalid JSON: {e}"))?;
        let arr =
            v.as_array().ok_or_else(|| format!("{file}: expected a JSON array of flows, [{{\"src\": ...}}, ...]"))?;
        for (i, f) in arr.iter().enumerate() {
            let obj = f.as_object().ok_or_else(|| format!("{file}: flow {i}: expected an object"))?;
            if let Some(k) =
                obj.keys().find(|k| !["src", "dst", "bytes", "start", "deps", "path"].contains(&k.as_str()))
            {
                return Err(format!(
                    "{file}: flow {i}: unknown key {k:?}: expected src, dst, bytes, start, deps, path"
                ));
            }
            let at = |k: &str| -> Result<String, String> {
                match f.get(k) {
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
                    Some(other) => Err(format!("{file}: flow {i}: `{k}` must be a string or number, got {other}")),
                    None => Err(format!("{file}: flow {i}: missing `{k}`")),
                }
            };
            let deps = match f.get("deps") {
                None => Vec::new(),
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|d| {
                        d.as_u64()
                            .and_then(|d| u32::try_from(d).ok())
                            .ok_or_else(|| format!("{file}: flow {i}: deps must be flow indexes, got {d}"))
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(format!("{file}: flow {i}: deps must be a list of flow indexes")),
            };
            let start = if f.get("start").is_some() { at("start")? } else { "0".into() };
            let here = format!("{file}: flow {i}");
            let mut line =
                flow_line(&here, i, &rank(&at("src")?, i)?, &rank(&at("dst")?, i)?, &at("bytes")?, &start, deps)?;
            match f.get("path") {
                None => {}
                Some(serde_json::Value::String(p)) if p.trim().is_empty() => {}
                Some(serde_json::Value::String(p)) => {
                    let via: Vec<&str> = p.split_whitespace().collect();
                    line.path = topo.route_through(line.src, line.dst, &via).map_err(|e| format!("{here}: {e}"))?;
                }
                Some(serde_json::Value::Array(a)) => {
                    let via: Vec<&str> = a.iter().filter_map(serde_json::Value::as_str).collect();
                    if via.len() != a.len() {
                        return Err(format!("{here}: path must list switch names"));
                    }
                    line.path = topo.route_through(line.src, line.dst, &via).map_err(|e| format!("{here}: {e}"))?;
                }
                Some(_) => return Err(format!("{here}: path must be switch names, as a string or a list")),
            }
            out.push(line);
        }
    } else {
        parse_flow_csv(file, text, &rank, &mut out, topo)?;
    }
    if out.is_empty() {
        return Err(format!("{file}: no flows"));
    }
    Ok(out)
}

/// The CSV branch of [`parse_flow_file`]: appends the flows of `text` to `out`.
fn parse_flow_csv(
    file: &str,
    text: &str,
    rank: &dyn Fn(&str, usize) -> Result<u32, String>,
    out: &mut Vec<FlowLine>,
    topo: &FabricTopo<'_>,
) -> Result<(), String> {
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let line_of = |p: Option<&csv::Position>| p.map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
    // Blank lines (spaces only) and comments indented past the first column are records of
    // the csv reader: skip them as it skips the others.
    let skip = |r: &csv::StringRecord| r.iter().all(str::is_empty) || r.get(0).is_some_and(|f| f.starts_with('#'));
    let mut records = rd
        .records()
        .map(|r| r.map_err(|e| format!("{file}:{}: invalid CSV: {e}", line_of(e.position()))))
        .filter(|r| !r.as_ref().is_ok_and(skip));
    let header = records.next().ok_or_else(|| format!("{file}: empty flow list"))??;
    let cols: Vec<String> = header.iter().map(str::to_ascii_lowercase).collect();
    if let Some((j, c)) = cols.iter().enumerate().find(|(j, c)| !c.is_empty() && cols[..*j].contains(c)) {
        return Err(format!(
            "{file}:{}: column {c:?} is given twice (columns {} and {})",
            line_of(header.position()),
            cols.iter().position(|x| x == c).map_or(0, |x| x + 1),
            j + 1
        ));
    }
    // Other columns (a note) are left for the reader, but one that is a misspelling of a
    // column not given (`strat`) would be dropped without a word: its flows started at 0.
    const COLUMNS: [&str; 6] = ["src", "dst", "bytes", "start", "deps", "path"];
    for (j, c) in cols.iter().enumerate().filter(|(_, c)| !c.is_empty() && !COLUMNS.contains(&c.as_str())) {
        if let Some(k) = meshway_fabric::error::closest(c, &COLUMNS).filter(|k| !cols.iter().any(|x| x == k)) {
            return Err(format!(
                "{file}:{}: column {} is {c:?}: did you mean {k:?}? (columns read: src, dst, bytes, start, deps, path)",
                line_of(header.position()),
                j + 1
            ));
        }
    }
    let col = |name: &str| cols.iter().position(|c| c == name);
    let (Some(cs), Some(cd), Some(cb)) = (col("src"), col("dst"), col("bytes")) else {
        return Err(format!(
            "{file}:{}: expected a header with src,dst,bytes[,start][,deps], got {:?}",
            line_of(header.position()),
            header.iter().collect::<Vec<_>>().join(",")
        ));
    };
    let (cst, cdeps, cpath) = (col("start"), col("deps"), col("path"));
    for rec in records {
        let rec = rec?;
        let lno = line_of(rec.position());
        if rec.len() > cols.len() {
            return Err(format!("{file}:{lno}: {} fields, but the header names {}", rec.len(), cols.len()));
        }
        let get = |i: usize| rec.get(i).ok_or_else(|| format!("{file}:{lno}: expected {} fields", cols.len()));
        let deps = match cdeps.and_then(|i| rec.get(i)) {
            Some(d) if !d.is_empty() => d
                .split(';')
                .map(|x| x.trim().parse::<u32>().map_err(|_| format!("{file}:{lno}: deps: {x:?} is not a flow index")))
                .collect::<Result<_, _>>()?,
            _ => Vec::new(),
        };
        let start = match cst {
            Some(i) => get(i)?,
            None => "0",
        };
        let idx = out.len();
        let mut line = flow_line(
            &format!("{file}:{lno}"),
            idx,
            &rank(get(cs)?, lno)?,
            &rank(get(cd)?, lno)?,
            get(cb)?,
            start,
            deps,
        )?;
        if let Some(p) = cpath.and_then(|i| rec.get(i)).filter(|p| !p.trim().is_empty()) {
            let via: Vec<&str> = p.split_whitespace().collect();
            line.path = topo.route_through(line.src, line.dst, &via).map_err(|e| format!("{file}:{lno}: {e}"))?;
        }
        out.push(line);
    }
    Ok(())
}

fn flow_line(
    at: &str,
    idx: usize,
    src: &u32,
    dst: &u32,
    bytes: &str,
    start: &str,
    deps: Vec<u32>,
) -> Result<FlowLine, String> {
    let b: Bytes = bytes.parse().map_err(|e| format!("{at}: bytes: {e}"))?;
    let s: Nanos = if start == "0" { Nanos::ZERO } else { start.parse().map_err(|e| format!("{at}: start: {e}"))? };
    if let Some(d) = deps.iter().find(|&&d| d as usize >= idx) {
        return Err(format!("{at}: dependency {d} is not an earlier flow"));
    }
    if src == dst {
        return Err(format!("{at}: src and dst are the same GPU"));
    }
    if b.0 == 0 || b.0 > MAX_WORKLOAD_BYTES {
        return Err(format!("{at}: bytes: expected 1B to 1PiB, got {b}"));
    }
    if s.0 > MAX_SCENARIO_TIME_NS {
        return Err(format!("{at}: start: expected at most 365d, got {s}"));
    }
    Ok(FlowLine { src: *src, dst: *dst, bytes: b.0, start: s, deps, path: Vec::new() })
}

/// Failures as arc events.
pub fn parse_failures(s: &Scenario, fabric: &Fabric) -> Result<(Vec<LinkEvent>, Vec<FailureInfo>), FabricError> {
    let mut ev = Vec::new();
    let mut info = Vec::new();
    // Each direction's outages (from, until; u64::MAX: for good).
    let mut down: std::collections::BTreeMap<u32, Vec<(u64, u64)>> = std::collections::BTreeMap::new();
    for (nth, f) in s.config.failure.iter().enumerate() {
        let c = ctx(s, "failure", nth);
        let at = f.at.unwrap_or(SimTime::ZERO);
        for (key, t) in
            [("at", f.at.map(|t| t.0)), ("until", f.until.map(|t| t.0)), ("duration", f.duration.map(|d| d.0))]
        {
            if let Some(t) = t.filter(|t| *t > MAX_SCENARIO_TIME_NS) {
                return Err(c.invalid(key, format!("expected at most 365d, got {}", Nanos(t))));
            }
        }
        let until = match (f.until, f.duration) {
            (Some(u), None) if u > at => Some(u),
            (Some(_), None) => return Err(c.invalid("until", "expected a time after `at`")),
            (None, Some(d)) if d.0 > 0 => Some(SimTime(at.0 + d.0)),
            (None, Some(_)) => return Err(c.invalid("duration", "expected a positive duration")),
            (None, None) => None,
            (Some(_), Some(_)) => return Err(c.invalid("until", "give `until` or `duration`, not both")),
        };
        let find = |name: &str, key: &str| {
            fabric.find(name).ok_or_else(|| {
                let names: Vec<&str> = fabric.nodes.iter().map(|n| n.name.as_str()).collect();
                let hint = closest(name, &names).map(|n| format!("; did you mean {n:?}?")).unwrap_or_default();
                c.invalid(key, format!("no node named {name:?} in the fabric{hint}"))
            })
        };
        let what = match (f.link.as_deref(), f.switch.as_deref()) {
            (Some(l), None) => format!("link {l}"),
            (None, Some(sw)) => format!("switch {sw}"),
            _ => String::new(),
        };
        let links: Vec<u32> = match (f.link.as_deref(), f.switch.as_deref()) {
            (Some(l), None) => {
                let (a, b) = l
                    .split_once(':')
                    .ok_or_else(|| c.invalid("link", format!("expected \"node-a:node-b\", got {l:?}")))?;
                let (na, nb) = (find(a.trim(), "link")?, find(b.trim(), "link")?);
                let ls: Vec<u32> = fabric.neighbors(na).iter().filter(|(v, _)| *v == nb).map(|(_, l)| l.0).collect();
                if ls.is_empty() {
                    return Err(c.invalid("link", format!("{a} and {b} are not linked")));
                }
                ls
            }
            (None, Some(sw)) => {
                let n = find(sw, "switch")?;
                if fabric.node(n).is_gpu() {
                    return Err(c.invalid("switch", format!("{sw} is a GPU, not a switch")));
                }
                fabric.neighbors(n).iter().map(|(_, l)| l.0).collect()
            }
            _ => return Err(c.invalid("link", "give exactly one of `link = \"a:b\"` or `switch = \"name\"`")),
        };
        info.push(FailureInfo { what, links: links.len(), down_ns: at.0, up_ns: until.map(|u| u.0) });
        for l in links {
            for arc in [2 * l, 2 * l + 1] {
                down.entry(arc).or_default().push((at.0, until.map_or(u64::MAX, |u| u.0)));
            }
        }
    }
    // A link is down while any of its failures holds (a switch's and a link's own may
    // overlap): the union of its outages, so the first to heal does not bring it back.
    for (arc, mut spans) in down {
        spans.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        for (a, b) in merged {
            ev.push(LinkEvent { at: SimTime(a), arc: crate::LinkId(arc), up: false });
            if b != u64::MAX {
                ev.push(LinkEvent { at: SimTime(b), arc: crate::LinkId(arc), up: true });
            }
        }
    }
    ev.sort_by_key(|e| (e.at, e.arc, e.up));
    Ok((ev, info))
}

/// A `[[failure]]` as applied.
#[derive(Debug, Clone, Serialize)]
pub struct FailureInfo {
    /// "switch spine-0" or "link gpu-0:leaf-0".
    pub what: String,
    /// Physical links taken down.
    pub links: usize,
    pub down_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_ns: Option<u64>,
}

fn transport_info(setup: &Setup<'_>, opts: &Options) -> Result<(TransportInfo, Wire), SimulateError> {
    let s = setup.scenario;
    let tc = s.config.transport.clone().unwrap_or_default();
    let kind = tc.kind.name();
    let p = setup
        .catalog
        .transport_profile(kind)
        .ok_or_else(|| SimulateError::NoTransportProfile { kind: kind.to_string() })?;
    let routing = opts.routing.unwrap_or(
        match (s.config.transport.as_ref().and_then(|t| t.routing), p.default_routing.as_str()) {
            (Some(RoutingKind::Adaptive), _) => Policy::Adaptive,
            (Some(RoutingKind::AdaptiveGlobal), _) => Policy::AdaptiveGlobal,
            (Some(RoutingKind::Spray), _) => Policy::Spray,
            (Some(RoutingKind::Ecmp), _) => Policy::Ecmp,
            (None, "adaptive") => Policy::Adaptive,
            (None, "adaptive-global") => Policy::AdaptiveGlobal,
            (None, "spray") => Policy::Spray,
            _ => Policy::Ecmp,
        },
    );
    // The scenario's MTU within the range `plan` accepts (256 B to 64 KiB).
    s.transport(setup.catalog)?;
    let mtu = tc.mtu.map_or(p.mtu.0, |m| m.0).max(1);
    let wire = Wire { mtu, header: u64::from(p.header_bytes), alpha: p.alpha };
    let info = TransportInfo {
        kind: kind.into(),
        routing,
        tolerance: opts.tolerance.unwrap_or(setup.catalog.simulation.completion_tolerance),
        mtu_bytes: mtu,
        header_bytes: wire.header,
        goodput: wire.goodput(),
        alpha_ns: p.alpha.0,
        // The catalog's profile describes the transport's lossless form; a scenario that
        // turns it off (RoCE without PFC) said "PFC pause frames" beside the drops.
        lossless: if tc.lossless == Some(false) && tc.kind == TransportKind::Roce {
            "lossless = false: no PFC; at the packet level queues tail-drop and go-back-N resends".into()
        } else {
            p.lossless.clone()
        },
        completion: if tc.completion == Some(CompletionConfig::Ack) { "ack" } else { "data" }.into(),
        forwarding: if tc.forwarding == Some(ForwardingConfig::StoreAndForward) {
            "store-and-forward"
        } else {
            "cut-through"
        }
        .into(),
    };
    Ok((info, wire))
}

/// `spec` with the transport's latency terms and, for sweeps, another size.
fn on_wire(spec: &CollSpec, wire: &Wire, size: Option<u64>) -> CollSpec {
    let mut spec = spec.clone();
    spec.alpha = wire.alpha;
    spec.packet = wire.mtu + wire.header;
    if let Some(s) = size {
        spec.size = s;
    }
    spec
}

/// A collective's algorithm and protocol, and what the tuner evaluated to pick them.
type Choice = (Algo, collective::Proto, Vec<tuner::Candidate>);

/// The algorithm and protocol of a collective of `size` bytes, the tuner's where the scenario
/// leaves them to it (None for other workloads).
#[allow(clippy::too_many_arguments)]
fn tune(
    topo: &mut dyn Topology,
    ideal: Option<&mut dyn Topology>,
    w: &Workload,
    cfg: &ExecConfig,
    cat: &Catalog,
    size: Option<u64>,
    scn_file: &str,
    failures: &[LinkEvent],
    start: Option<u64>,
) -> Result<Option<Choice>, SimulateError> {
    let Kind::Collective { spec, auto, protocol, .. } = &w.kind else { return Ok(None) };
    let spec = on_wire(spec, &cfg.wire, size);
    let multi_host = spec.ranks.iter().any(|&r| topo.host_of(r) != topo.host_of(spec.ranks[0]));
    let algos: Vec<Algo> = if *auto { tuner::candidates(spec.op, &spec.hw, multi_host) } else { vec![spec.algo] };
    let protos: Vec<collective::Proto> = match protocol {
        Some(p) => vec![p.clone()],
        None => {
            let all: Vec<collective::Proto> = cat.protocol.iter().map(collective::Proto::from_model).collect();
            tuner::protocols(spec.op, spec.size, spec.ranks.len(), &spec.hw, &all)
        }
    };
    let failures = failures_from(failures, start);
    tuner::pick(topo, ideal, cfg, &spec, &algos, &protos, &failures)
        .map(Some)
        .map_err(|e| workload_error(scn_file, w, e))
}

/// `failures` as a run that starts at `t0` sees them: changes before it happen at its start,
/// in their order, so the links begin as they are at `t0`. With the start unknown (a workload
/// that follows another starts when the run gets there), only the links down from the
/// beginning for good: they are down whenever it runs.
fn failures_from(failures: &[LinkEvent], t0: Option<u64>) -> Vec<LinkEvent> {
    let Some(t0) = t0 else {
        let healed: std::collections::HashSet<u32> = failures.iter().filter(|f| f.up).map(|f| f.arc.0).collect();
        return failures.iter().filter(|e| !e.up && e.at.0 == 0 && !healed.contains(&e.arc.0)).copied().collect();
    };
    let mut v: Vec<LinkEvent> =
        failures.iter().map(|e| LinkEvent { at: SimTime(e.at.0.saturating_sub(t0)), ..*e }).collect();
    v.sort_by_key(|e| e.at); // stable: same-time changes keep their order
    v
}

fn workload_error(file: &str, w: &Workload, source: CollectiveError) -> SimulateError {
    SimulateError::Workload { file: file.to_string(), nth: w.nth + 1, name: w.name.clone(), source }
}

/// Writes a workload into `prog` after `after`; returns its completion wait and the
/// messages it spans.
#[allow(clippy::too_many_arguments)]
fn write_workload(
    prog: &mut Program,
    topo: &mut dyn Topology,
    w: &Workload,
    after: &[MsgId],
    cfg: &ExecConfig,
    size_override: Option<u64>,
    choice: Option<(Algo, collective::Proto)>,
    scn_file: &str,
) -> Result<(MsgId, Option<collective::Built>), SimulateError> {
    let wire = &cfg.wire;
    prog.tag(w.name.clone());
    let after: Vec<MsgId> = match w.start {
        Some(_) => Vec::new(),
        None => after.to_vec(),
    };
    let start = w.start.unwrap_or(Nanos::ZERO);
    match &w.kind {
        Kind::Collective { spec, .. } => {
            let mut spec = on_wire(spec, wire, size_override);
            if let Some((a, p)) = choice {
                spec.algo = a;
                spec.proto = p;
            }
            let gate = start_gate(prog, &after, start);
            let built = collective::build(prog, topo, &spec, &gate).map_err(|e| workload_error(scn_file, w, e))?;
            Ok((built.done, Some(built)))
        }
        Kind::Flows { flows } => {
            let base = prog.msgs.len() as u32;
            let mut ids = Vec::with_capacity(flows.len());
            for f in flows {
                let mut m = Msg::send(f.src, f.dst, f.bytes);
                if !f.path.is_empty() {
                    prog.routes.push(f.path.clone());
                    m.route = (prog.routes.len() - 1) as u32;
                }
                m.start = Nanos(start.0.saturating_add(f.start.0));
                m.deps = if f.deps.is_empty() { after.clone() } else { f.deps.iter().map(|d| base + d).collect() };
                ids.push(prog.push(m));
            }
            Ok((prog.barrier(ids, Nanos::ZERO), None))
        }
        Kind::Training(spec) => {
            // A step with a `start` begins then (it began at 0, alongside what ran before).
            let gate = start_gate(prog, &after, start);
            let done = training::write(prog, topo, spec, &gate, cfg).map_err(|e| workload_error(scn_file, w, e))?;
            Ok((done, None))
        }
    }
}

/// What a workload's first messages wait for: a wait that ends at `start` when it is
/// after 0, else `after`.
fn start_gate(prog: &mut Program, after: &[MsgId], start: Nanos) -> Vec<MsgId> {
    if start.0 == 0 {
        return after.to_vec();
    }
    let mut m = Msg::wait(after.to_vec(), Nanos::ZERO);
    m.start = start;
    vec![prog.push(m)]
}

/// The seed, routing, transport and tolerances a run of this scenario uses, as `simulate`
/// sets them (shared with `meshway schedule`, so a job alone matches `simulate`).
pub fn exec_config(setup: &Setup<'_>, opts: &Options) -> Result<(ExecConfig, TransportInfo), SimulateError> {
    let seed = opts.seed.or(setup.scenario.config.seed).unwrap_or(1);
    let (tinfo, wire) = transport_info(setup, opts)?;
    if let Some(q) = setup.scenario.config.transport.as_ref().and_then(|t| t.qps) {
        if q == 0 || q > 64 {
            let c = Ctx::new(&setup.scenario.file, &setup.scenario.text, "transport", 0, "transport");
            return Err(c.invalid("qps", format!("expected 1 to 64 queue pairs per connection, got {q}")).into());
        }
    }
    let cat = setup.catalog;
    let cfg = ExecConfig {
        policy: tinfo.routing,
        wire,
        qps: setup.scenario.config.transport.as_ref().and_then(|t| t.qps).unwrap_or(cat.simulation.qps_per_connection),
        spray_paths: cat.simulation.spray_paths,
        seed,
        tolerance_ppm: (opts.tolerance.unwrap_or(cat.simulation.completion_tolerance).clamp(0.0, 0.5) * 1e6).round()
            as u64,
        // An acknowledgement is a header-only packet of the transport.
        completion: crate::engine::Completion {
            ack_bytes: (tinfo.completion == "ack").then_some(wire.header),
            store_and_forward: tinfo.forwarding == "store-and-forward",
        },
        link_history: opts.link_history,
        window: cat.simulation.nccl_buffer.map_or(0, |b| b.0),
        p2p_window: cat.simulation.nccl_p2p_window.map_or(0, |b| b.0),
    };
    Ok((cfg, tinfo))
}

/// Runs the scenario's workloads. `progress(done, total)` reports engine progress.
pub fn simulate(
    setup: &Setup<'_>,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SimReport, SimulateError> {
    let (cfg, mut tinfo) = exec_config(setup, opts)?;
    let seed = cfg.seed;
    // Switch and link latencies come with the fabric (`Scenario::build`), as for `plan`.
    let mut topo = FabricTopo::new(setup.fabric, setup.catalog, seed);
    let workloads = parse_workloads(setup, &topo, seed)?;
    let (failures, failure_info) = parse_failures(setup.scenario, setup.fabric)?;
    let cat = setup.catalog;
    let file_prefix = format!("{}: ", setup.scenario.file);

    // The tuner's lower bounds come from the ideal fabric.
    let mut bound = IdealTopo::of(&topo);
    // Sweeps run on their own, one size at a time.
    let mut sweeps = Vec::new();
    for w in &workloads {
        if let Kind::Collective { spec, sweep: Some((from, to)), auto, .. } = &w.kind {
            let mut rows = Vec::new();
            let mut size = *from;
            while size <= *to {
                let from = Some(w.start.map_or(0, |s| s.0));
                let tuned = tune(&mut topo, Some(&mut bound), w, &cfg, cat, Some(size), &file_prefix, &failures, from)?;
                let (algo, proto, candidates) = tuned.map_or((spec.algo, spec.proto.clone(), Vec::new()), |t| t);
                let protocol = proto.name.clone();
                let mut prog = Program::new();
                let (done, built) =
                    write_workload(&mut prog, &mut topo, w, &[], &cfg, Some(size), Some((algo, proto)), &file_prefix)?;
                let ex = execute(&prog, &mut topo, &cfg, &failures, &mut |_, _| {})?;
                // Timed from the workload's start, as a workload's time is.
                let t0 = origin(&prog, &ex, 0, prog.msgs.len(), cfg.wire.alpha.0);
                let t = ex.msgs[done as usize].end.map(|e| e.0.saturating_sub(t0));
                let algbw = t.filter(|&t| t > 0).map(|t| size as f64 / (t as f64 / 1e9) / 1e9);
                rows.push(SweepRow {
                    size_bytes: size,
                    time_us: t.map(|t| t as f64 / 1e3),
                    algbw_gbytes: algbw,
                    busbw_gbytes: algbw.map(|a| a * spec.op.busbw_factor(spec.ranks.len())),
                    failure: t.is_none().then(|| {
                        ex.msgs.iter().find_map(|m| m.stall.clone()).unwrap_or_else(|| "did not complete".into())
                    }),
                    model: built.map_or("direct", |b| b.model.name()).to_string(),
                    algorithm: algo.name().to_string(),
                    protocol,
                    tuner: candidates,
                });
                match size.checked_mul(2) {
                    Some(next) if size < *to => size = next,
                    _ => break,
                }
            }
            sweeps.push(Sweep {
                name: w.name.clone(),
                op: spec.op.name().into(),
                algorithm: if *auto { "auto".into() } else { spec.algo.name().into() },
                ranks: spec.ranks.len(),
                rows,
            });
        }
    }
    let main: Vec<&Workload> =
        workloads.iter().filter(|w| !matches!(w.kind, Kind::Collective { sweep: Some(_), .. })).collect();

    // The tuner decides on the scenario's fabric; the ideal-fabric run keeps its choices.
    let tuned: Vec<Option<Choice>> = main
        .iter()
        .enumerate()
        .map(|(k, w)| {
            // Where the workload starts is known for the first and for one with a `start`.
            let from = w.start.map(|s| s.0).or((k == 0).then_some(0));
            tune(&mut topo, Some(&mut bound), w, &cfg, cat, None, &file_prefix, &failures, from)
        })
        .collect::<Result<_, _>>()?;
    type Spans = Vec<(usize, usize, MsgId, Option<collective::Built>)>;
    let build = |topo: &mut dyn Topology| -> Result<(Program, Spans), SimulateError> {
        let mut prog = Program::new();
        let mut spans = Vec::new();
        let mut prev: Vec<MsgId> = Vec::new();
        for (k, w) in main.iter().enumerate() {
            let first = prog.msgs.len();
            let choice = tuned[k].as_ref().map(|t| (t.0, t.1.clone()));
            let (done, built) = write_workload(&mut prog, topo, w, &prev, &cfg, None, choice, &file_prefix)?;
            // Each collective is bounded on its own; so is the run (three all-to-alls of
            // 4 million messages each took 8.5 GB).
            if prog.msgs.len() as u64 > collective::MAX_MESSAGES {
                return Err(workload_error(
                    &file_prefix,
                    w,
                    CollectiveError::TooManyTogether {
                        messages: prog.msgs.len() as u64,
                        max: collective::MAX_MESSAGES,
                    },
                ));
            }
            spans.push((first, prog.msgs.len(), done, built));
            prev = vec![done];
        }
        Ok((prog, spans))
    };
    let (prog, spans) = build(&mut topo)?;
    let fidelity = opts.fidelity.unwrap_or(match setup.scenario.config.simulation.as_ref().and_then(|s| s.fidelity) {
        Some(FidelityConfig::Packet) => Fidelity::Packet,
        Some(FidelityConfig::Both) => Fidelity::Both,
        Some(FidelityConfig::Flow) | None => Fidelity::Flow,
    });
    let packet_run = if fidelity == Fidelity::Flow {
        None
    } else {
        if !failures.is_empty() {
            return Err(SimulateError::BadOption {
                option: "--fidelity",
                message: format!(
                    "{}: [[failure]] tables are not modelled at packet level yet; run this scenario at flow level",
                    setup.scenario.file
                ),
            });
        }
        let params = packet_params(setup, &cfg, opts.fidelity.is_none())?;
        let estimate = crate::packet::estimate_memory(&prog, &topo, &cfg, &params.0);
        if estimate > params.1 {
            return Err(SimulateError::PacketTooLarge {
                scenario: setup.scenario.file.clone(),
                estimate: Bytes(estimate).display_si(),
                limit: Bytes(params.1).display_si(),
                why: format!("{} messages on {} links", prog.msgs.len(), topo.network().len()),
            });
        }
        let (pex, stats) = crate::packet::execute_packets(&prog, &mut topo, &cfg, &params.0, progress)?;
        Some((pex, stats, params.0, estimate))
    };
    let flow_ex =
        if fidelity == Fidelity::Packet { None } else { Some(execute(&prog, &mut topo, &cfg, &failures, progress)?) };
    let (ex, packet_run, flow_ex) = match (packet_run, flow_ex) {
        (Some((pex, stats, params, est)), flow) => (pex, Some((stats, params, est)), flow),
        (None, Some(fex)) => (fex, None, None),
        (None, None) => unreachable!("one rung always runs"),
    };
    let ideal = if opts.no_ideal || main.is_empty() {
        None
    } else {
        let mut it = IdealTopo::of(&topo);
        let (iprog, ispans) = build(&mut it)?;
        // At the rung the times come from: the flow level's ideal is no bound on the packet
        // level's times (an uncontended ring read 0.965x), since the two rungs overlap a
        // collective's steps differently.
        let icfg = ExecConfig { link_history: false, ..cfg };
        let iex = match &packet_run {
            Some((_, params, _)) => crate::packet::execute_packets(&iprog, &mut it, &icfg, params, progress)?.0,
            None => execute(&iprog, &mut it, &icfg, &[], progress)?,
        };
        Some((iprog, iex, ispans))
    };

    let mut results: Vec<WorkloadResult> = Vec::new();
    for (k, w) in main.iter().enumerate() {
        let (a, b, done, built) = spans[k];
        let ideal_time = ideal.as_ref().and_then(|(iprog, iex, isp)| {
            let (ia, ib, idone, _) = isp[k];
            span_time(iprog, iex, ia, ib, idone, cfg.wire.alpha.0)
        });
        // The last workload before this one whose own messages failed.
        let earlier = results.iter().rev().find(|r| r.failed_messages > 0).map(|r| r.name.clone());
        let mut r = workload_result(
            w,
            &prog,
            &ex,
            &*topo_names(&topo),
            (a, b, done),
            built,
            ideal_time,
            &cfg,
            earlier.as_deref(),
        );
        if let Some((algo, proto, cands)) = &tuned[k] {
            r.algorithm = Some(algo.name().to_string());
            r.protocol = Some(proto.name.clone()).filter(|n| !n.is_empty());
            r.tuner = cands.clone();
        }
        results.push(r);
    }

    // Utilization averages over the traffic's span: from the first message's start (a
    // workload that starts at 1 s read a link busy throughout as 0.2% used) to the last
    // message's end when every message ended (a failure scheduled after it is no traffic),
    // else to where the run stopped.
    let last = ex.msgs.iter().map(|m| m.end).collect::<Option<Vec<_>>>().and_then(|v| v.into_iter().max());
    let first = (ex.msgs.iter().zip(&prog.msgs))
        .filter(|(_, m)| !m.is_wait() && m.bytes > 0)
        .filter_map(|(r, _)| r.start)
        .min()
        .map_or(0, |t| t.0);
    let dur = last.map_or(ex.sim.end.0, |e| e.0).saturating_sub(first).max(1);
    let net = topo.network();
    let used: Vec<(usize, LinkUse)> = ex
        .sim
        .link_stats
        .iter()
        .filter(|l| l.bytes.0 > 0)
        .map(|l| {
            let cap = net.links()[l.id.index()].capacity;
            let u = LinkUse {
                link: topo.arc_name(l.id),
                capacity_bps: cap.0,
                carried_bytes: l.bytes.0,
                peak_utilization: round6(l.peak_utilization),
                mean_utilization: round6(l.bytes.0 as f64 * 8.0 / (cap.0.max(1) as f64 * dur as f64 / 1e9)),
                history: Vec::new(),
            };
            (l.id.index(), u)
        })
        .collect();
    let mut congested = used.clone();
    congested.sort_by(|(_, x), (_, y)| {
        y.mean_utilization.total_cmp(&x.mean_utilization).then(y.peak_utilization.total_cmp(&x.peak_utilization))
    });
    congested.truncate(10);
    let history = ex.sim.link_history.as_ref();
    let congested: Vec<LinkUse> = congested
        .into_iter()
        .map(|(id, mut u)| {
            if let Some(h) = history {
                u.history = h.bytes[id].clone();
            }
            u
        })
        .collect();
    let mut links: Vec<LinkUse> = used.into_iter().map(|(_, u)| u).collect();
    links.sort_by(|x, y| x.link.cmp(&y.link));

    let losses =
        packet_run.as_ref().map_or((0, 0, 0, 0), |(st, _, _)| (st.drops, st.retransmitted_packets, st.pauses, st.cnps));
    let mut notes = if cfg.policy == Policy::Ecmp { ecmp_notes(&topo, &ex, &results, losses) } else { Vec::new() };
    // A headroom below a port's need is allowed (to show what PFC does then), and said.
    if let Some(sh) = packet_run.as_ref().and_then(|(st, _, _)| st.short_headroom) {
        notes.push(format!(
            "The headroom given ({}) is below what {} of the {} lossless ports need to hold what arrives after they pause their sender (their link's round trip and the pause response at line rate, plus two packets: up to {}, as meshway plan computes it){}.",
            Bytes(sh.headroom_bytes),
            sh.ports,
            sh.of,
            Bytes(sh.need_bytes),
            if losses.0 > 0 {
                format!(": PFC dropped {} packets, and lossless RoCE recovers them only by timeout", losses.0)
            } else {
                ": PFC may drop packets there".to_string()
            }
        ));
    }
    if ex.window_bound > 0 {
        notes.push(format!(
            "{} sends between sites are bound by NCCL's window (at most a connection's buffer in flight per round trip: the catalog's [simulation] nccl-buffer {} for collectives, nccl-p2p-window {} for pipeline sends): more DCI capacity or another routing does not speed them; a larger NCCL_BUFFSIZE (NCCL_P2P_NET_CHUNKSIZE) or more channels would.",
            ex.window_bound,
            meshway_units::Bytes(cfg.window),
            meshway_units::Bytes(cfg.p2p_window)
        ));
    }
    // The packet level stores and forwards whole packets whatever the scenario says; the
    // flow level beside it (`both`) keeps the scenario's forwarding.
    if fidelity != Fidelity::Flow {
        let given = setup.scenario.config.transport.as_ref().is_some_and(|t| t.forwarding.is_some());
        if tinfo.forwarding != "store-and-forward" && (given || fidelity == Fidelity::Both) {
            notes.push(format!(
                "The packet level stores and forwards whole packets at every hop; {} ({}) applies to the flow level{}.",
                if given { "the scenario's forwarding" } else { "the default forwarding" },
                tinfo.forwarding,
                if fidelity == Fidelity::Both { ", which ran it beside the packet level" } else { " only" }
            ));
        }
        tinfo.forwarding = "store-and-forward".into();
        if !sweeps.is_empty() {
            notes.push(format!(
                "Size sweeps ({}) run at the flow level, one size at a time; the packet level runs the other workloads.",
                sweeps.iter().map(|w| w.name.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    // Packet-level keys at the flow level: read by nothing (said, not refused, so one
    // scenario runs at either rung).
    if fidelity == Fidelity::Flow && setup.scenario.config.simulation.as_ref().and_then(|s| s.packet.as_ref()).is_some()
    {
        notes.push(
            "[simulation.packet] applies to the packet level (--fidelity packet or both); this run is at the flow level and reads none of it.".to_string(),
        );
    }
    // A failure after the last message ended changes nothing: likely a unit slip.
    let last = ex.msgs.iter().filter_map(|m| m.end).max().map_or(0, |e| e.0);
    for f in failure_info.iter().filter(|f| !main.is_empty() && f.down_ns > last) {
        notes.push(format!(
            "The failure of {} at {} comes after the run's last message ended ({}): it changes nothing.",
            f.what,
            Nanos(f.down_ns),
            Nanos(last)
        ));
    }
    let flows = opts.flows.then(|| flow_records(&prog, &ex, &topo));
    let export = export_flows(&prog, &ex, &topo);
    let packet = packet_run.map(|(stats, params, estimate)| {
        let fct: Vec<(String, Option<FctSummary>)> =
            main.iter().zip(&spans).map(|(w, &(a, b, _, _))| (w.name.clone(), fct_summary(&prog, &ex, a, b))).collect();
        let rungs = flow_ex
            .as_ref()
            .map(|fex| {
                main.iter()
                    .enumerate()
                    .map(|(k, w)| {
                        let (a, b, done, _) = spans[k];
                        let ft = span_time(&prog, fex, a, b, done, cfg.wire.alpha.0);
                        let pt = span_time(&prog, &ex, a, b, done, cfg.wire.alpha.0);
                        RungRow {
                            workload: w.name.clone(),
                            flow_time_ns: ft,
                            packet_time_ns: pt,
                            difference: match (ft, pt) {
                                (Some(f), Some(p)) if f > 0 => Some(round6(p as f64 / f as f64 - 1.0)),
                                _ => None,
                            },
                            flow_fct: fct_summary(&prog, fex, a, b),
                            packet_fct: fct_summary(&prog, &ex, a, b),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Box::new(PacketSection {
            params,
            memory_estimate_bytes: estimate,
            fct,
            stats,
            rungs,
            completion: format!(
                "a message completes when {}; every hop stores and forwards whole packets",
                if cfg.completion.ack_bytes.is_some() {
                    "its last acknowledgement is back at the sender (as htsim counts)"
                } else {
                    "its last data byte has reached the receiver"
                }
            ),
        })
    });
    Ok(SimReport {
        scenario: setup.scenario.name.clone(),
        gpus: topo.ranks(),
        seed,
        fidelity: if fidelity == Fidelity::Flow { "flow" } else { "packet" }.into(),
        transport: tinfo,
        workloads: results,
        failures: failure_info,
        sweeps,
        congested_links: congested,
        link_history_interval_ns: ex.sim.link_history.as_ref().map_or(0, |h| h.interval.0),
        notes,
        links,
        engine_flows: ex.flows,
        events: ex.sim.events,
        recomputes: ex.sim.recomputes,
        end_ns: ex.sim.end.0,
        flows,
        packet,
        export,
    })
}

/// Completion times (end less start) of the messages `a..b` that are not waits.
fn fct_summary(prog: &Program, ex: &Execution, a: usize, b: usize) -> Option<FctSummary> {
    let mut t: Vec<u64> = prog.msgs[a..b]
        .iter()
        .zip(&ex.msgs[a..b])
        .filter(|(m, _)| !m.is_wait())
        .filter_map(|(_, r)| Some(r.end?.0.saturating_sub(r.start?.0)))
        .collect();
    if t.is_empty() {
        return None;
    }
    t.sort_unstable();
    let n = t.len();
    let sum: f64 = t.iter().map(|&x| x as f64).sum();
    let sq: f64 = t.iter().map(|&x| (x as f64) * (x as f64)).sum();
    let pick = |q: f64| t[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Some(FctSummary {
        messages: n,
        mean_ns: (sum / n as f64).round() as u64,
        p50_ns: pick(0.5),
        p99_ns: pick(0.99),
        first_ns: t[0],
        last_ns: t[n - 1],
        fairness: if sq > 0.0 { round6(sum * sum / (n as f64 * sq)) } else { 1.0 },
    })
}

/// The packet engine's parameters: the catalog's `[packet]` with the scenario's
/// `[simulation.packet]` over it, and the memory limit.
/// `from_file`: the scenario's `[simulation] fidelity` asked for it, not `--fidelity`.
fn packet_params(
    setup: &Setup<'_>,
    cfg: &ExecConfig,
    from_file: bool,
) -> Result<(crate::packet::PacketParams, u64), SimulateError> {
    use crate::packet::{Balance, Dcqcn, PacketParams, Transport};
    let s = setup.scenario;
    let cat = setup.catalog;
    let d = cat.packet.as_ref().ok_or_else(|| SimulateError::BadOption {
        option: "--fidelity",
        message: "the catalog has no [packet] section (packet-level defaults)".into(),
    })?;
    let pc = s.config.simulation.as_ref().and_then(|x| x.packet.clone()).unwrap_or_default();
    let c = Ctx::new(&s.file, &s.text, "simulation", 0, "simulation.packet");
    let tr = s.transport(cat)?;
    let transport = match tr.config.kind {
        TransportKind::Roce if tr.lossless => Transport::RocePfc,
        TransportKind::Roce => Transport::RoceLossy,
        TransportKind::Infiniband => Transport::Infiniband,
        TransportKind::Ndp => Transport::Ndp,
        TransportKind::Tcp | TransportKind::Efa => {
            let why = format!(
                "the packet level models roce (with or without PFC), infiniband and ndp; {} runs at flow level",
                tr.config.kind.name()
            );
            if from_file {
                let c = Ctx::new(&s.file, &s.text, "simulation", 0, "simulation");
                return Err(c.invalid("fidelity", why).into());
            }
            return Err(SimulateError::BadOption { option: "--fidelity", message: format!("{}: {why}", s.file) });
        }
    };
    // A lossless flag the transport does not have at the packet level.
    match (tr.config.kind, tr.config.lossless) {
        (TransportKind::Infiniband, Some(false)) | (TransportKind::Ndp, Some(true)) => {
            let c = Ctx::new(&s.file, &s.text, "transport", 0, "transport");
            let why = if tr.config.kind == TransportKind::Infiniband {
                "InfiniBand is lossless by its link-level credits at the packet level; a lossy fabric is roce with lossless = false"
            } else {
                "ndp trims instead of pausing: it is not lossless; a lossless fabric is roce (PFC) or infiniband (credits)"
            };
            return Err(c.invalid("lossless", why).into());
        }
        _ => {}
    }
    // Keys of `[simulation.packet]` this transport has no use for are refused, not ignored.
    let (pfc, credits, lossy, ndp) = (
        transport == Transport::RocePfc,
        transport == Transport::Infiniband,
        transport == Transport::RoceLossy,
        transport == Transport::Ndp,
    );
    for (key, given, applies, what) in [
        (
            "xoff",
            pc.xoff.is_some(),
            pfc || credits,
            "PFC's pause threshold (roce) or the credits a port advertises (infiniband)",
        ),
        ("xon", pc.xon.is_some(), pfc, "PFC's resume threshold (roce with lossless)"),
        ("headroom", pc.headroom.is_some(), pfc || credits, "buffer above xoff (roce with lossless, infiniband)"),
        (
            "dci-headroom",
            pc.dci_headroom.is_some(),
            pfc || credits,
            "buffer above xoff on DCI ports (roce with lossless, infiniband)",
        ),
        ("queue", pc.queue.is_some(), lossy, "the tail-drop limit of a lossy fabric (roce with lossless = false)"),
        ("trim-packets", pc.trim_packets.is_some(), ndp, "where ndp trims packets"),
        ("window-packets", pc.window_packets.is_some(), ndp, "ndp's first window"),
        ("dcqcn", pc.dcqcn == Some(true), tr.config.kind == TransportKind::Roce, "RoCE's congestion control"),
    ] {
        if given && !applies {
            return Err(c
                .invalid(
                    key,
                    format!("`{key}` is {what}; this scenario's transport ({}) does not use it", transport.name()),
                )
                .into());
        }
    }
    let dcqcn_on = pc.dcqcn.unwrap_or(d.dcqcn && tr.config.kind == TransportKind::Roce);
    let xoff = pc.xoff.unwrap_or(d.xoff).0;
    let xon = pc.xon.unwrap_or(if pc.xoff.is_some() { Bytes(xoff * 4 / 5) } else { d.xon }).0;
    if xon > xoff {
        return Err(c.invalid("xon", format!("xon ({xon} B) must not exceed xoff ({xoff} B)")).into());
    }
    for (key, v) in [("trim-packets", pc.trim_packets), ("window-packets", pc.window_packets)] {
        if v == Some(0) {
            return Err(c.invalid(key, "expected a positive number of packets").into());
        }
    }
    if pc.sample.is_some_and(|x| x.0 == 0) {
        return Err(c.invalid("sample", "expected a positive interval such as \"10us\"").into());
    }
    // A retransmission timeout shorter than a packet's round trip resends without end (0 ns
    // livelocks); real ones are milliseconds (RoCE NICs: 4.096 us x 2^timeout).
    if let Some(r) = pc.rto.filter(|r| r.0 < 1_000) {
        return Err(c.invalid("rto", format!("expected at least 1us, got {r}")).into());
    }
    let packet = cfg.wire.mtu + cfg.wire.header;
    // A buffer that cannot hold one packet drops (or, under credits, never sends) every
    // packet: the run would resend until max-events, or stall.
    let queue = pc.queue.unwrap_or(d.queue).0;
    match transport {
        Transport::RoceLossy if queue < packet => {
            return Err(c
                .invalid(
                    "queue",
                    format!("a lossy queue of {queue} B cannot hold one packet ({packet} B with headers)"),
                )
                .into());
        }
        Transport::RocePfc | Transport::Infiniband => {
            // Thresholds past the smallest switch buffer: the shared buffer overflows (and
            // drops) before PFC pauses or credits stop a sender.
            let smallest = setup
                .fabric
                .switches()
                .filter_map(|n| match setup.fabric.node(n).kind {
                    meshway_fabric::model::NodeKind::Switch { model, .. } => cat.switch.get(model as usize),
                    _ => None,
                })
                .filter(|m| m.buffer.0 > 0)
                .min_by_key(|m| m.buffer.0);
            if let Some(m) = smallest {
                for (key, given, total) in [
                    ("xoff", pc.xoff.is_some(), xoff),
                    ("headroom", pc.headroom.is_some(), pc.headroom.map_or(xoff, |h| xoff.saturating_add(h.0))),
                    (
                        "dci-headroom",
                        pc.dci_headroom.is_some(),
                        pc.dci_headroom.map_or(xoff, |h| xoff.saturating_add(h.0)),
                    ),
                ] {
                    if given && total > m.buffer.0 {
                        return Err(c
                            .invalid(
                                key,
                                format!(
                                    "xoff{} ({}) is more than switch {}'s whole buffer ({}): the buffer would overflow before {}",
                                    if key == "xoff" { String::new() } else { format!(" + {key}") },
                                    Bytes(total),
                                    m.name,
                                    m.buffer,
                                    if credits { "credits stop a sender" } else { "PFC pauses a sender" }
                                ),
                            )
                            .into());
                    }
                }
            }
            for (key, h) in [("headroom", pc.headroom), ("dci-headroom", pc.dci_headroom)] {
                if let Some(h) = h.filter(|h| xoff.saturating_add(h.0) < packet) {
                    return Err(c
                        .invalid(
                            key,
                            format!(
                                "xoff + {key} ({xoff} B + {} B) cannot hold one packet ({packet} B with headers): {}",
                                h.0,
                                if transport == Transport::Infiniband {
                                    "the sender would never get credit for one"
                                } else {
                                    "every packet past the pause threshold would be dropped"
                                }
                            ),
                        )
                        .into());
                }
            }
            for (key, h) in [("headroom", pc.headroom), ("dci-headroom", pc.dci_headroom)] {
                if let Some(h) = h.filter(|h| pfc && h.0 < packet) {
                    return Err(c
                        .invalid(
                            key,
                            format!(
                                "a {key} of {} B holds no packet ({packet} B with headers): the packet that crosses xoff would be dropped instead of pausing the sender",
                                h.0
                            ),
                        )
                        .into());
                }
            }
        }
        _ => {}
    }
    // PFC reacts within a few microseconds (IEEE 802.1Qbb: 3,840 bit times at the port's
    // rate); 1 ms is an assumption of the most a model could want.
    if let Some(r) = pc.pause_response.filter(|r| r.0 > 1_000_000) {
        return Err(c.invalid("pause-response", format!("expected at most 1ms, got {r}")).into());
    }
    if pc.max_events == Some(0) {
        return Err(c.invalid("max-events", "expected at least 1 event").into());
    }
    let params = PacketParams {
        transport,
        balance: Balance::of(cfg.policy),
        dcqcn: dcqcn_on.then_some(Dcqcn {
            kmin: d.dcqcn_kmin.0,
            kmax: d.dcqcn_kmax.0,
            pmax: d.dcqcn_pmax,
            g: d.dcqcn_g,
            alpha_period: d.dcqcn_alpha_period,
            timer: d.dcqcn_timer,
            byte_counter: d.dcqcn_byte_counter.0,
            fast_recovery: d.dcqcn_fast_recovery,
            rai: d.dcqcn_rai.0,
            rhai: d.dcqcn_rhai.0,
            cnp_interval: d.dcqcn_cnp_interval,
            min_rate: d.dcqcn_min_rate.0,
        }),
        control_bytes: d.control_bytes,
        xoff,
        xon,
        headroom: pc.headroom.map(|b| b.0),
        dci_headroom: pc.dci_headroom.map(|b| b.0),
        // A scenario's figure holds at every rate; the catalog's scale with each port's rate.
        pause_response: pc.pause_response.unwrap_or(cat.constants.pfc_response),
        pause_response_100g: if pc.pause_response.is_some() { None } else { cat.constants.pfc_response_100g },
        queue,
        trim: u64::from(pc.trim_packets.unwrap_or(d.trim_packets)) * packet,
        window: pc.window_packets.unwrap_or(d.window_packets),
        window_covers_path: pc.window_packets.is_none(),
        rto: pc.rto.unwrap_or(if transport == Transport::RoceLossy { d.rto } else { d.lossless_rto }),
        sample: pc.sample.unwrap_or(d.sample),
        paths: cfg.spray_paths,
        series_ports: d.series_ports as usize,
        max_events: pc.max_events.unwrap_or(d.max_events),
    };
    Ok((params, pc.memory_limit.unwrap_or(d.memory_limit).0))
}

/// Flows for export: the messages that cross the network, with dependencies renumbered to
/// export indexes. Messages over NVLink (between GPUs of a host, or into and out of the
/// NVSwitch) and into and out of SHARP switches are left out: htsim has neither. A dependency
/// on a wait or a left-out NVLink message is replaced by what it waited on; a flow behind a
/// compute gap, a SHARP leg or a wide barrier (more than 64 flows) gets `u32::MAX`, which
/// makes exporters keep its simulated start.
fn export_flows(prog: &Program, ex: &Execution, topo: &dyn Topology) -> Export {
    use crate::program::Leg;
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Class {
        Wait,
        Network,
        Nvlink,
        Sharp,
    }
    let class: Vec<Class> = prog
        .msgs
        .iter()
        .map(|m| match m.leg {
            _ if m.is_wait() => Class::Wait,
            Leg::Path if topo.local(m.via.unwrap_or(m.src), m.dst) => Class::Nvlink,
            Leg::Path => Class::Network,
            Leg::NvlinkUp | Leg::NvlinkDown => Class::Nvlink,
            Leg::NicUp | Leg::NicDown => Class::Sharp,
        })
        .collect();
    let mut idx = vec![u32::MAX; prog.msgs.len()];
    let mut n = 0u32;
    for (i, c) in class.iter().enumerate() {
        if *c == Class::Network {
            idx[i] = n;
            n += 1;
        }
    }
    // Whether the dependencies are found (false: the flow keeps its simulated start) and
    // whether a left-out NVLink message was passed through on the way.
    fn flatten(
        prog: &Program,
        class: &[Class],
        idx: &[u32],
        deps: &[MsgId],
        out: &mut Vec<u32>,
        depth: u32,
        nvlink: &mut bool,
    ) -> bool {
        for &d in deps {
            let m = &prog.msgs[d as usize];
            match class[d as usize] {
                Class::Network => out.push(idx[d as usize]),
                // Through a SHARP switch: htsim has no in-network reduction.
                Class::Sharp => return false,
                c => {
                    *nvlink |= c == Class::Nvlink;
                    // A latency wait is part of the message after it, not a level.
                    let next = if m.latency_wait { depth } else { depth + 1 };
                    if (m.delay.0 > 0 && !m.latency_wait)
                        || depth > 4
                        || !flatten(prog, class, idx, &m.deps, out, next, nvlink)
                    {
                        return false;
                    }
                }
            }
            if out.len() > 64 {
                return false;
            }
        }
        true
    }
    let mut export = Export { tags: prog.tags.iter().map(|t| t.name.clone()).collect(), ..Export::default() };
    for (i, m) in prog.msgs.iter().enumerate() {
        match class[i] {
            Class::Wait => {}
            Class::Nvlink => export.nvlink += 1,
            Class::Sharp => export.sharp += 1,
            Class::Network => {
                let mut deps = Vec::new();
                let mut nvlink = false;
                if !flatten(prog, &class, &idx, &m.deps, &mut deps, 0, &mut nvlink) {
                    deps = vec![u32::MAX];
                } else if nvlink {
                    export.through_nvlink += 1;
                }
                deps.sort_unstable();
                deps.dedup();
                export.flows.push(ExportFlow {
                    src: m.src,
                    dst: m.dst,
                    bytes: if m.payload == 0 { m.bytes } else { m.payload },
                    start: ex.msgs[i].start.map_or(0, |s| s.0),
                    end: ex.msgs[i].end.map_or(u64::MAX, |e| e.0),
                    deps,
                    tag: m.tag,
                });
            }
        }
    }
    export
}

/// Under ECMP, when a workload is slower than on the ideal fabric and the links between two
/// switch tiers carry very uneven bytes, names the hash collisions and the routing that
/// avoids them.
/// Notes on uneven ECMP spreading, when the slowest workload ran 1.1x its ideal or slower.
/// `losses` (packet level: drops, packets sent again, PFC pauses, DCQCN's congestion
/// notifications) name a likelier cause when there are any.
fn ecmp_notes(
    topo: &FabricTopo<'_>,
    ex: &Execution,
    results: &[WorkloadResult],
    losses: (u64, u64, u64, u64),
) -> Vec<String> {
    let Some(worst) = results
        .iter()
        .filter_map(|w| w.slowdown.map(|s| (s, w)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .filter(|(s, _)| *s >= 1.1)
    else {
        return Vec::new();
    };
    let f = topo.fabric;
    let mut notes = Vec::new();
    for class in [LinkClass::LeafSpine, LinkClass::SpineCore] {
        let arcs: Vec<(usize, u64)> = ex
            .sim
            .link_stats
            .iter()
            .enumerate()
            .filter(|(i, _)| f.links.get(i / 2).is_some_and(|l| l.class == class))
            .map(|(i, l)| (i, l.bytes.0))
            .collect();
        let total: u64 = arcs.iter().map(|a| a.1).sum();
        if arcs.len() < 2 || total == 0 {
            continue;
        }
        let mean = total as f64 / arcs.len() as f64;
        let (busiest, max) = arcs.iter().copied().max_by_key(|a| (a.1, std::cmp::Reverse(a.0))).unwrap_or((0, 0));
        let idle = arcs.iter().filter(|a| a.1 == 0).count();
        if max as f64 >= 1.5 * mean {
            let cause = if losses.0 > 0 {
                format!(
                    "which may explain part of {}'s {:.2}x slowdown against the ideal fabric, though its {} drops and {} packets sent again (each after a timeout) likely explain more; --routing adaptive or --routing spray spreads them.",
                    worst.1.name, worst.0, losses.0, losses.1
                )
            } else if losses.2 > 0 || losses.3 > 0 {
                format!(
                    "which may explain part of {}'s {:.2}x slowdown against the ideal fabric, though its {} PFC pauses and {} congestion notifications (DCQCN cutting senders' rates) likely explain more; --routing adaptive or --routing spray spreads them.",
                    worst.1.name, worst.0, losses.2, losses.3
                )
            } else if ex.window_bound > 0 {
                format!(
                    "which may explain part of {}'s {:.2}x slowdown against the ideal fabric, though NCCL's window across the sites (below) bounds its sends whatever the routing; --routing adaptive or --routing spray spreads them.",
                    worst.1.name, worst.0
                )
            } else {
                format!(
                    "which likely explains much of {}'s {:.2}x slowdown against the ideal fabric; --routing adaptive or --routing spray spreads them.",
                    worst.1.name, worst.0
                )
            };
            notes.push(format!(
                "ECMP hashing spread {} traffic unevenly: the busiest link ({}) carried {:.1}x the mean of its {} links, {} of which carried nothing. Flows hashed onto one uplink share it, {cause}",
                class.name(),
                topo.arc_name(crate::LinkId(busiest as u32)),
                max as f64 / mean,
                arcs.len(),
                idle,
            ));
        }
    }
    notes
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn topo_names<'a>(t: &'a FabricTopo<'_>) -> Box<dyn Fn(u32) -> String + 'a> {
    Box::new(move |r| t.rank_name(r))
}

/// Completion time of messages `a..b` ending in `done`, from the first start.
/// Counted, like the main run's, from the first message's start less the endpoint latency it
/// paid before it (`alpha`).
fn span_time(prog: &Program, ex: &Execution, a: usize, b: usize, done: MsgId, alpha: u64) -> Option<u64> {
    let start = origin(prog, ex, a, b, alpha);
    ex.msgs[done as usize].end.map(|e| e.0.saturating_sub(start.min(e.0)))
}

/// When messages `a..b` may first have started: the earliest start less the endpoint
/// latency paid before it (the message's own, a protocol step's, or the transport's).
fn origin(prog: &Program, ex: &Execution, a: usize, b: usize, alpha: u64) -> u64 {
    prog.msgs[a..b]
        .iter()
        .zip(&ex.msgs[a..b])
        // A wait (a workload's start gate) pays no endpoint latency.
        .filter_map(|(m, r)| {
            let a = if m.is_wait() { 0 } else { m.alpha().map_or(alpha, |x| x.0) };
            Some(r.start?.0.saturating_sub(a))
        })
        .min()
        .unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
fn workload_result(
    w: &Workload,
    prog: &Program,
    ex: &Execution,
    name: &dyn Fn(u32) -> String,
    (a, b, done): (usize, usize, MsgId),
    built: Option<collective::Built>,
    ideal_time: Option<u64>,
    cfg: &ExecConfig,
    earlier_failure: Option<&str>,
) -> WorkloadResult {
    let msgs = &prog.msgs[a..b];
    let res = &ex.msgs[a..b];
    // A workload's clock starts when it may start: its first message's scheduled start or
    // the completion of what it waits for, whichever its messages saw first (with alpha).
    let start = origin(prog, ex, a, b, cfg.wire.alpha.0);
    let end = ex.msgs[done as usize].end.map(|e| e.0);
    let time = end.map(|e| e.saturating_sub(start));
    // The first five different reasons messages failed, those that failed themselves (no
    // path, a stall) before those that only waited on another: the cause before its
    // consequences.
    let mut failures: Vec<String> = Vec::new();
    let mut waiting: Vec<String> = Vec::new();
    let mut failed = 0;
    let mut own = 0;
    let mut started = false;
    for (m, r) in msgs.iter().zip(res) {
        started |= !m.is_wait() && r.start.is_some();
        if !m.is_wait() && r.end.is_none() {
            failed += 1;
            let why = r.stall.clone().unwrap_or_else(|| format!("{} to {} did not complete", name(m.src), name(m.dst)));
            let waits = why.ends_with("waits on a message that did not complete");
            own += usize::from(!waits);
            let list = if waits { &mut waiting } else { &mut failures };
            if list.len() < 5 && !list.contains(&why) {
                list.push(why);
            }
        }
    }
    failures.extend(waiting);
    failures.truncate(5);
    // Nothing ran and nothing failed on its own: it waited on an earlier workload that failed
    // (dependencies point back, so the cause is there).
    let not_run_after = match earlier_failure {
        Some(e) if failed > 0 && own == 0 && !started => {
            failed = 0;
            failures.clear();
            Some(e.to_string())
        }
        _ => None,
    };
    let slowest =
        msgs.iter().zip(res).filter(|(m, _)| !m.is_wait()).filter_map(|(_, r)| Some(r.end?.0 - r.start?.0)).max();
    let (op, algorithm, model, ranks, size, algbw, busbw) = match &w.kind {
        Kind::Collective { spec, .. } => {
            let secs = time.map(|t| t as f64 / 1e9).filter(|&s| s > 0.0);
            let algbw = secs.map(|s| spec.size as f64 * 8.0 / s / 1e9);
            (
                Some(spec.op.name().to_string()),
                Some(spec.algo.name().to_string()),
                built.map(|b| b.model.name().to_string()),
                spec.ranks.len(),
                spec.size,
                algbw.map(round6),
                algbw.map(|x| round6(x * spec.op.busbw_factor(spec.ranks.len()))),
            )
        }
        Kind::Flows { flows } => {
            let mut r: Vec<u32> = flows.iter().flat_map(|f| [f.src, f.dst]).collect();
            r.sort_unstable();
            r.dedup();
            (None, None, None, r.len(), flows.iter().fold(0u64, |a, f| a.saturating_add(f.bytes)), None, None)
        }
        Kind::Training(t) => (None, None, None, t.gpus(), 0, None, None),
    };
    let mut step_collectives: Vec<_> = prog
        .step_collectives
        .iter()
        .filter(|(m, _)| (a..b).contains(&(*m as usize)))
        .flat_map(|(_, c)| c.iter().cloned())
        .collect();
    let training = match &w.kind {
        Kind::Training(t) => time.map(|tt| {
            let mut r = training::report(t, tt, ideal_time);
            let ops: Vec<_> = prog.step_ops.iter().filter(|o| (a..b).contains(&(o.op as usize))).copied().collect();
            r.timeline = training::timeline(&ops, prog, ex);
            r.collectives = std::mem::take(&mut step_collectives);
            r
        }),
        _ => None,
    };
    WorkloadResult {
        name: w.name.clone(),
        kind: w.kind_name.clone(),
        op,
        algorithm,
        tuner: Vec::new(),
        protocol: None,
        model,
        ranks,
        messages: msgs.iter().filter(|m| !m.is_wait()).count(),
        size_bytes: size,
        start_ns: start,
        end_ns: end,
        time_ns: time,
        algbw_gbps: algbw,
        busbw_gbps: busbw,
        ideal_time_ns: ideal_time,
        slowdown: match (time, ideal_time) {
            (Some(t), Some(i)) if i > 0 => Some(round6(t as f64 / i as f64)),
            _ => None,
        },
        slowest_message_ns: slowest,
        failed_messages: failed,
        failures,
        // A step that did not run (an earlier workload failed) ran no collective.
        step_collectives: if not_run_after.is_some() { Vec::new() } else { step_collectives },
        not_run_after,
        training,
    }
}

fn flow_records(prog: &Program, ex: &Execution, topo: &FabricTopo<'_>) -> Vec<FlowRecord> {
    prog.msgs
        .iter()
        .zip(&ex.msgs)
        .filter(|(m, _)| !m.is_wait())
        .map(|(m, r)| FlowRecord {
            workload: prog.tags.get(m.tag as usize).map_or(String::new(), |t| t.name.clone()),
            src: topo.rank_name(m.src),
            dst: topo.rank_name(m.dst),
            bytes: if m.payload == 0 { m.bytes } else { m.payload },
            link_bytes: m.bytes,
            start_ns: r.start.map(|s| s.0),
            end_ns: r.end.map(|e| e.0),
            failed: r.stall.clone(),
        })
        .collect()
}

/// What [`htsim_connection_matrix`] could not say exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HtsimExportNotes {
    /// Flows that keep their simulated start time: their dependencies have no trigger form
    /// (a compute gap, a barrier of more than 64 flows, a flow through a SHARP switch, or one
    /// that did not complete).
    pub fallback: usize,
    /// Flows that depend on several flows and are triggered by the one that finished last in
    /// meshway's run (htsim starts a flow from one trigger, and a flow fires one).
    pub relaxed: usize,
    /// Messages left out: over NVLink inside a host (htsim has no NVLink).
    pub nvlink: usize,
    /// Messages left out: into and out of SHARP switches (htsim has no in-network reduction).
    pub sharp: usize,
    /// Flows that waited on a left-out NVLink message and wait on what it waited on: htsim
    /// starts them without the NVLink time.
    pub through_nvlink: usize,
}

/// The largest size htsim's connection matrix reads: it parses `size` with `std::stoi`
/// (`connection_matrix.cpp` at Broadcom/csg-htsim 841d9e7), a 32-bit int.
pub const HTSIM_MAX_SIZE: u64 = i32::MAX as u64;

/// The run's messages as an htsim connection matrix (`connection_matrix.cpp`: `Nodes`,
/// `Connections`, `Triggers`, one line per flow, then the triggers), as htsim's transports
/// execute it at Broadcom/csg-htsim commit 841d9e7: a flow fires a trigger when its sender is
/// done (`send_done_trigger`, the last byte acknowledged; main_roce never fires
/// `recv_done_trigger`), and a trigger starts every flow that waits on it. Every flow that
/// others wait on fires its own one-shot trigger; a flow with several dependencies waits on
/// the one that finished last in meshway's run (counted in [`HtsimExportNotes::relaxed`]).
/// Sizes are payloads. Messages that do not cross the network are left out (see [`Export`]).
/// A message above [`HTSIM_MAX_SIZE`] bytes is refused: htsim could not read the file.
pub fn htsim_connection_matrix(report: &SimReport) -> Result<(String, HtsimExportNotes), SimulateError> {
    use std::fmt::Write;
    let flows = &report.export.flows;
    let too_large = flows.iter().filter(|f| f.bytes > HTSIM_MAX_SIZE).count();
    // The largest (the first of equals), as a connection of the file.
    if let Some((i, f)) = flows.iter().enumerate().rev().max_by_key(|(_, f)| f.bytes).filter(|_| too_large > 0) {
        return Err(SimulateError::HtsimSizeTooLarge {
            count: too_large,
            id: i + 1,
            src: f.src,
            dst: f.dst,
            workload: report.export.tags.get(f.tag as usize).cloned().unwrap_or_default(),
            bytes: f.bytes,
            max: HTSIM_MAX_SIZE,
        });
    }
    let mut notes = HtsimExportNotes {
        nvlink: report.export.nvlink,
        sharp: report.export.sharp,
        through_nvlink: report.export.through_nvlink,
        ..HtsimExportNotes::default()
    };
    // Per flow: the flow whose send-done starts it.
    let mut waits_on: Vec<Option<u32>> = vec![None; flows.len()];
    // Per flow: the trigger it fires (1-based, in order of first use).
    let mut fires: Vec<u32> = vec![0; flows.len()];
    let mut triggers = 0u32;
    for (i, f) in flows.iter().enumerate() {
        if f.deps.is_empty() {
            continue;
        }
        let ok = f.deps.iter().all(|&d| (d as usize) < flows.len() && flows[d as usize].end != u64::MAX);
        if !ok {
            notes.fallback += 1;
            continue;
        }
        // The dependency that finished last (the lowest index among ties).
        let critical = f.deps.iter().copied().max_by_key(|&d| (flows[d as usize].end, std::cmp::Reverse(d)));
        let Some(c) = critical else { continue };
        if f.deps.iter().any(|&d| d != c) {
            notes.relaxed += 1;
        }
        if fires[c as usize] == 0 {
            triggers += 1;
            fires[c as usize] = triggers;
        }
        waits_on[i] = Some(c);
    }
    let mut out = String::new();
    let _ = writeln!(out, "Nodes {}", report.gpus);
    let _ = writeln!(out, "Connections {}", flows.len());
    let _ = writeln!(out, "Triggers {triggers}");
    for (i, f) in flows.iter().enumerate() {
        let _ = write!(out, "{}->{} id {}", f.src, f.dst, i + 1);
        match waits_on[i] {
            Some(c) => {
                let _ = write!(out, " trigger {}", fires[c as usize]);
            }
            None => {
                let _ = write!(out, " start {}", f.start.saturating_mul(1000));
            }
        }
        let _ = write!(out, " size {}", f.bytes);
        if fires[i] != 0 {
            let _ = write!(out, " send_done_trigger {}", fires[i]);
        }
        out.push('\n');
    }
    for t in 1..=triggers {
        let _ = writeln!(out, "trigger id {t} oneshot");
    }
    Ok((out, notes))
}

/// Bandwidth in the unit nccl-tests prints (GB/s) from Gbit/s.
pub fn gbytes(gbps: f64) -> f64 {
    gbps / 8.0
}

/// Re-export for callers formatting rates.
pub fn rate(bps: u64) -> BitsPerSec {
    BitsPerSec(bps)
}

/// The scenario's workloads as phases of (src rank, dst rank, bytes) flows, for running them
/// as real traffic: traffic patterns are one phase; a ring all-reduce collective is its
/// 2(n-1) steps of S/n each (one channel); other kinds are refused with a message.
pub type Phases = Vec<Vec<(u32, u32, u64)>>;

pub fn workload_flows(setup: &Setup<'_>) -> Result<Vec<(String, Phases)>, SimulateError> {
    let seed = setup.scenario.config.seed.unwrap_or(1);
    let topo = FabricTopo::new(setup.fabric, setup.catalog, seed);
    let mut out = Vec::new();
    for w in parse_workloads(setup, &topo, seed)? {
        let phases = match &w.kind {
            Kind::Flows { flows } => {
                if flows.iter().any(|f| !f.deps.is_empty() || f.start.0 > 0) {
                    return Err(SimulateError::NotRunnableOnTestbed {
                        file: setup.scenario.file.clone(),
                        workload: w.name.clone(),
                        reason: "flows with dependencies or start times are not run by the testbed",
                    });
                }
                // The kernel hashes each flow onto its own path: a pinned one would be
                // measured on another.
                if flows.iter().any(|f| !f.path.is_empty()) {
                    return Err(SimulateError::NotRunnableOnTestbed {
                        file: setup.scenario.file.clone(),
                        workload: w.name.clone(),
                        reason:
                            "flows with a `path` are not run by the testbed (the kernel's ECMP hash picks each path)",
                    });
                }
                vec![flows.iter().map(|f| (f.src, f.dst, f.bytes)).collect()]
            }
            // `auto` runs as a ring here: the testbed emulates rings.
            Kind::Collective { spec, sweep: None, auto, .. }
                if spec.op == Op::AllReduce && (*auto || spec.algo == Algo::Ring) =>
            {
                let n = spec.ranks.len();
                let chunk = spec.size.div_ceil(n as u64).max(1);
                (0..2 * (n - 1))
                    .map(|_| (0..n).map(|i| (spec.ranks[i], spec.ranks[(i + 1) % n], chunk)).collect())
                    .collect()
            }
            _ => {
                return Err(SimulateError::NotRunnableOnTestbed {
                    file: setup.scenario.file.clone(),
                    workload: format!("{} ({})", w.name, w.kind_name),
                    reason: "the testbed runs traffic patterns and ring all-reduce collectives",
                })
            }
        };
        out.push((w.name.clone(), phases));
    }
    Ok(out)
}

/// A flow on a given path (arcs), for replaying measured runs.
#[derive(Debug, Clone)]
pub struct FixedFlow {
    pub src: u32,
    pub dst: u32,
    pub bytes: u64,
    /// Phases run one after another; within a phase flows start at `start` after the phase
    /// begins.
    pub phase: u32,
    pub start: Nanos,
    pub arcs: Vec<u32>,
}

/// Predicted completion time (ns, from each flow's own start) of `flows` on `fabric` with
/// the given paths and wire. Each phase starts when the previous one has completed.
pub fn simulate_fixed(fabric: &Fabric, cat: &Catalog, flows: &[FixedFlow], wire: Wire) -> Result<Vec<u64>, SimError> {
    use crate::engine::{FlowId, FlowSpec, LinkId};
    let topo = FabricTopo::new(fabric, cat, 1);
    let mut sim = crate::Simulation::new(topo.network());
    let phases = flows.iter().map(|f| f.phase).max().map_or(0, |p| p + 1);
    let mut ids = vec![FlowId(0); flows.len()];
    let mut gate: Option<FlowId> = None;
    for ph in 0..phases {
        let mut this = Vec::new();
        for (i, f) in flows.iter().enumerate().filter(|(_, f)| f.phase == ph) {
            let path: Vec<LinkId> = f.arcs.iter().map(|&a| LinkId(a)).collect();
            let size = Bytes(wire.wire_bytes(f.bytes));
            let spec = match gate {
                None => FlowSpec::new(path, size, SimTime(f.start.0 + wire.alpha.0)),
                Some(g) => FlowSpec::new(path, size, SimTime(0)).after(vec![g], f.start + wire.alpha),
            };
            let id = sim.add_flow(spec.last_packet(Bytes(wire.mtu + wire.header)))?;
            ids[i] = id;
            this.push(id);
        }
        gate = Some(sim.add_flow(FlowSpec::new(Vec::new(), Bytes(0), SimTime(0)).after(this, Nanos::ZERO))?);
    }
    let r = sim.run()?;
    Ok(ids.iter().map(|id| r.flows[id.index()].duration().map_or(u64::MAX, |d| d.0)).collect())
}
