//! One training step of a TP x PP x DP (x EP) job, written as a program.
//!
//! - **Mapping.** Rank `r` has coordinates (tp, pp, dp) with the first dimension of `order`
//!   varying fastest (default `tp,pp,dp`: tensor parallelism inside a host first).
//! - **Compute.** Forward FLOPs of one micro-batch for the whole model are
//!   `2 P t + 4 L s^2 h b` (matmuls with `t = b s` tokens, plus attention scores), backward
//!   twice that; each GPU does `1 / (tp pp)` of it at `peak x efficiency`.
//! - **Tensor and expert parallelism.** Megatron-style TP does two all-reduces of the
//!   activations (`b s h` x 2 bytes) per layer forward and two backward; MoE layers do two
//!   all-to-alls of `b s h top_k` x 2 bytes each way. Both sit on the critical path of every
//!   micro-batch, so their time (one group's collective simulated alone on the fabric) is
//!   added to each compute op.
//! - **Pipeline.** 1F1B: stage `p` runs `pp - p - 1` warm-up forwards, then alternates
//!   forward and backward, then drains; activations (`b s h` x 2 / tp bytes) go to the next
//!   stage after each forward and their gradients back after each backward, as messages on
//!   the fabric.
//! - **Data parallelism.** Each (tp, pp) shard's gradients (`P / (tp pp)` x `grad-bytes`)
//!   are all-reduced across its DP group, starting when every member begins its last
//!   backward (so one backward overlaps the reduction).

use crate::collective::{self, Algo, CollSpec, Op};
use crate::exec::{execute, ExecConfig};
pub use crate::program::StepCollective;
use crate::program::{Msg, MsgId, Program, StepKind, StepOp};
use crate::topo::Topology;
use crate::tuner;
use crate::CollectiveError;
use meshway_fabric::error::closest;
use meshway_fabric::scenario::Ctx;
use meshway_fabric::workload_config::{DpAlgorithmConfig, Whole, WorkloadConfig};
use meshway_fabric::{Catalog, FabricError};
use meshway_units::Nanos;
use serde::Serialize;

/// The most micro-batches one training step may run (see the check on `global-batch`).
pub const MAX_MICRO_BATCHES: u64 = 4096;

#[derive(Debug, Clone)]
pub struct TrainSpec {
    pub parameters: f64,
    pub layers: u32,
    pub hidden: u64,
    pub sequence: u64,
    pub micro_batch: u64,
    pub global_batch: u64,
    pub tp: u32,
    pub pp: u32,
    pub dp: u32,
    pub ep: u32,
    pub top_k: u32,
    /// Dimension order, fastest first.
    pub order: [Dim; 3],
    pub peak_flops: f64,
    pub efficiency: f64,
    pub grad_bytes: u64,
    pub channels: u32,
    pub steps_limit: u64,
    /// Site of each rank: when set, a DP group spanning sites all-reduces hierarchically by
    /// site ([`collective::site_all_reduce`]) instead of with one flat ring.
    pub site_of_rank: Option<Vec<u32>>,
    /// The achievable NVLink and NIC rates its collectives run at: line rates from
    /// [`parse`], until the caller sets the fabric's ([`crate::simulate::hardware`]).
    pub hw: collective::Hardware,
    /// The catalog's protocols its collectives are tuned over, as a collective workload's
    /// `protocol = "auto"` is (set with the fabric's rates by [`parse_on`]). Empty: no
    /// protocol model and no tuner, every message paying the transport's alpha (rings,
    /// direct all-to-alls).
    pub protos: Vec<collective::Proto>,
    /// NCCL's network post overhead (`[simulation] net-overhead`) for its flat rings across
    /// hosts, as collective workloads have it (set with the protocols by [`parse_on`]).
    pub net_overhead: Option<Nanos>,
    /// The DP all-reduce's algorithm when the workload names one (`dp-algorithm` ring or
    /// tree); None: the tuner's pick (or a ring without protocols).
    pub dp_algo: Option<Algo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Tp,
    Pp,
    Dp,
}

impl TrainSpec {
    pub fn gpus(&self) -> usize {
        (self.tp * self.pp * self.dp) as usize
    }

    pub fn micro_batches(&self) -> u64 {
        self.global_batch / (self.micro_batch * u64::from(self.dp))
    }

    /// Forward FLOPs of one micro-batch, whole model.
    pub fn fwd_flops(&self) -> f64 {
        let tokens = (self.micro_batch * self.sequence) as f64;
        2.0 * self.parameters * tokens
            + 4.0
                * f64::from(self.layers)
                * (self.sequence as f64).powi(2)
                * self.hidden as f64
                * self.micro_batch as f64
    }

    /// Forward compute time of one micro-batch on one GPU.
    pub fn t_fwd(&self) -> Nanos {
        let per_gpu = self.fwd_flops() / f64::from(self.tp * self.pp);
        Nanos((per_gpu / (self.peak_flops * self.efficiency) * 1e9).round() as u64)
    }

    fn rank(&self, t: u32, p: u32, d: u32) -> u32 {
        let coord = |dim: Dim| match dim {
            Dim::Tp => (t, self.tp),
            Dim::Pp => (p, self.pp),
            Dim::Dp => (d, self.dp),
        };
        let (a, na) = coord(self.order[0]);
        let (b, nb) = coord(self.order[1]);
        let (c, _) = coord(self.order[2]);
        a + na * (b + nb * c)
    }

    fn activation_bytes(&self) -> u64 {
        // At most 1 PiB (checked by `parse`).
        self.micro_batch.saturating_mul(self.sequence).saturating_mul(self.hidden).saturating_mul(2)
    }
}

/// The training-step figures.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step_ns: u64,
    /// The step with free communication: `(m + pp - 1) x (fwd + bwd)` compute.
    pub compute_only_ns: u64,
    pub exposed_comm_ns: u64,
    pub bubble_fraction: f64,
    pub micro_batches: u64,
    pub tp: u32,
    pub pp: u32,
    pub dp: u32,
    pub ep: u32,
    pub fwd_ns_per_microbatch: u64,
    pub mfu: f64,
    pub tflops_per_gpu: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ideal_step_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slowdown_vs_ideal: Option<f64>,
    /// Its tensor-parallel, expert-parallel and data-parallel collectives: what the tuner
    /// picked for each.
    pub collectives: Vec<StepCollective>,
    /// The step as it ran on each pipeline stage of the first replica (for the HTML
    /// timeline); not in JSON.
    #[serde(skip)]
    pub timeline: Vec<StepSpan>,
}

/// One compute op or gradient all-reduce of a stage, as simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepSpan {
    pub stage: u32,
    pub kind: StepKind,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Validates a `kind = "training"` workload against the fabric (its GPU count) and the
/// catalog (its GPU models). Keys of other kinds were refused by the caller.
/// [`parse`] for a step on `fabric`: the fabric's GPU computes unless the workload names
/// one (a fabric of A100s computed at the catalog default's H100 speed, beside A100
/// NVLink), and its collectives run at the fabric's achievable rates.
pub fn parse_on(
    w: &WorkloadConfig,
    c: &Ctx<'_>,
    topo: &dyn Topology,
    fabric: &meshway_fabric::Fabric,
    cat: &Catalog,
) -> Result<TrainSpec, FabricError> {
    let mut t = parse_with(w, c, topo, cat, fabric.gpu.as_deref())?;
    t.hw = crate::collective::hardware(fabric, cat);
    t.protos = cat.protocol.iter().map(collective::Proto::from_model).collect();
    t.net_overhead = Some(cat.simulation.net_overhead.unwrap_or(Nanos::ZERO));
    Ok(t)
}

/// A step with the catalog's default GPU (unless the workload names one) at line rates.
pub fn parse(w: &WorkloadConfig, c: &Ctx<'_>, topo: &dyn Topology, cat: &Catalog) -> Result<TrainSpec, FabricError> {
    parse_with(w, c, topo, cat, None)
}

fn parse_with(
    w: &WorkloadConfig,
    c: &Ctx<'_>,
    topo: &dyn Topology,
    cat: &Catalog,
    fabric_gpu: Option<&str>,
) -> Result<TrainSpec, FabricError> {
    let whole = |v: Option<Whole>| v.map(|x| x.0);
    // Present, positive and at most `max`: each bound an assumption far above today's
    // models (Llama 3.1 405B: 126 layers, hidden 16,384, 131,072-token context), so that
    // FLOP and byte counts stay inside the clock.
    let need = |key: &str, v: Option<Whole>, max: u64| match v.map(|x| x.0) {
        None => Err(c.invalid(key, "missing: expected a positive whole number")),
        Some(0) => Err(c.invalid(key, "expected a positive whole number, got 0")),
        Some(x) if x > max => Err(c.invalid(key, format!("expected at most {max}, got {x}"))),
        Some(x) => Ok(x),
    };
    let parameters = w.parameters.ok_or_else(|| c.invalid("parameters", "missing: e.g. 70e9"))?.0;
    if parameters > 1e15 {
        return Err(c.invalid("parameters", format!("expected at most 1e15, got {parameters:e}")));
    }
    let layers = need("layers", w.layers, 100_000)? as u32;
    let hidden = need("hidden", w.hidden, 1 << 20)?;
    let sequence = need("sequence", w.sequence, 100_000_000)?;
    let micro_batch = whole(w.micro_batch).unwrap_or(1);
    if micro_batch == 0 {
        return Err(c.invalid("micro-batch", "expected at least 1"));
    }
    let degree = |key: &str, v: Option<Whole>| -> Result<u32, FabricError> {
        u32::try_from(whole(v).unwrap_or(1))
            .map_err(|_| c.invalid(key, "expected a parallel degree that fits the fabric"))
    };
    let tp = degree("tp", w.tp)?;
    let pp = degree("pp", w.pp)?;
    if pp == 0 {
        return Err(c.invalid("pp", "expected at least 1 pipeline stage"));
    }
    let n = topo.ranks() as u32;
    if tp == 0 || pp == 0 || u64::from(tp) * u64::from(pp) > u64::from(n) || !n.is_multiple_of(tp * pp) {
        return Err(c.invalid("tp", format!("tp x pp = {} must divide the {n} GPUs", u64::from(tp) * u64::from(pp))));
    }
    let dp = match w.dp {
        None => n / (tp * pp),
        Some(_) => degree("dp", w.dp)?,
    };
    if u64::from(tp) * u64::from(pp) * u64::from(dp) != u64::from(n) {
        return Err(c.invalid("dp", format!("tp x pp x dp = {} x {} x {} must equal the {n} GPUs", tp, pp, dp)));
    }
    let ep = degree("ep", w.ep)?;
    if ep == 0 || dp % ep != 0 {
        return Err(c.invalid("ep", format!("ep must divide dp = {dp}")));
    }
    let per_step = micro_batch
        .checked_mul(u64::from(dp))
        .ok_or_else(|| c.invalid("micro-batch", format!("micro-batch x dp = {micro_batch} x {dp} is too large")))?;
    let global_batch = whole(w.global_batch).unwrap_or(per_step.saturating_mul(u64::from(pp) * 4));
    if global_batch == 0 || global_batch % per_step != 0 {
        return Err(c.invalid("global-batch", format!("must be a positive multiple of micro-batch x dp = {per_step}")));
    }
    // Each micro-batch is written out as messages for every stage: at most 4,096 a step (an
    // assumption; pipeline schedules run tens to a few hundred, e.g. 192 for GPT-3 175B's
    // 1,536 sequences at micro-batch 1 over 8 data-parallel replicas).
    if global_batch / per_step > MAX_MICRO_BATCHES {
        return Err(c.invalid(
            "global-batch",
            format!(
                "{global_batch} / (micro-batch x dp = {per_step}) = {} micro-batches a step, expected at most {MAX_MICRO_BATCHES}",
                global_batch / per_step
            ),
        ));
    }
    if !layers.is_multiple_of(pp) {
        return Err(c.invalid("layers", format!("{layers} layers do not split evenly into pp = {pp} stages")));
    }
    let order = {
        let s = w.order.as_deref().unwrap_or("tp,pp,dp");
        let dims: Vec<Dim> = s
            .split(',')
            .map(|x| match x.trim() {
                "tp" => Some(Dim::Tp),
                "pp" => Some(Dim::Pp),
                "dp" => Some(Dim::Dp),
                _ => None,
            })
            .collect::<Option<_>>()
            .ok_or_else(|| c.invalid("order", format!("expected a permutation of tp,pp,dp, got {s:?}")))?;
        if dims.len() != 3 || dims.iter().any(|d| dims.iter().filter(|e| *e == d).count() != 1) {
            return Err(c.invalid("order", format!("expected a permutation of tp,pp,dp, got {s:?}")));
        }
        [dims[0], dims[1], dims[2]]
    };
    let gpu_name = w.gpu.as_deref().or(fabric_gpu).unwrap_or(&cat.simulation.gpu_model);
    let gpu = cat.gpu_model(gpu_name).ok_or_else(|| {
        let names: Vec<&str> = cat.gpu.iter().map(|g| g.name.as_str()).collect();
        let hint = closest(gpu_name, &names).map(|n| format!("; did you mean {n:?}?")).unwrap_or_default();
        c.invalid("gpu", format!("unknown GPU {gpu_name:?}: expected one of {}{hint}", names.join(", ")))
    })?;
    let efficiency = w.efficiency.map_or(cat.simulation.compute_efficiency, |e| e.0);
    if !(0.001..=1.0).contains(&efficiency) {
        return Err(c.invalid(
            "efficiency",
            format!("expected a share of peak from 0.001 to 1, got {}", meshway_units::shown(efficiency)),
        ));
    }
    // DP gradient all-reduce: flat rings (default) or hierarchical by site.
    let (site_of_rank, dp_algo) = match w.dp_algorithm {
        None | Some(DpAlgorithmConfig::Auto) => (None, None),
        Some(DpAlgorithmConfig::Ring) => (None, Some(Algo::Ring)),
        Some(DpAlgorithmConfig::Tree) => (None, Some(Algo::Tree)),
        Some(DpAlgorithmConfig::SiteHierarchical) => (Some((0..n).map(|r| topo.site_of(r)).collect()), None),
    };
    let channels = whole(w.channels).unwrap_or(u64::from(cat.simulation.channels));
    if channels == 0 || channels > 64 {
        return Err(c.invalid("channels", "expected 1 to 64"));
    }
    let grad_bytes = whole(w.grad_bytes).unwrap_or(2);
    if grad_bytes == 0 || grad_bytes > 16 {
        return Err(c.invalid("grad-bytes", "expected 1 to 16 bytes per gradient element"));
    }
    let top_k = whole(w.top_k).unwrap_or(2);
    if top_k == 0 || top_k > 64 {
        return Err(c.invalid("top-k", "expected 1 to 64 experts per token"));
    }
    // Experts are routed only across an expert-parallel group: a dense model (ep 1) has none.
    if w.top_k.is_some() && ep <= 1 {
        return Err(c.invalid(
            "top-k",
            "top-k routes tokens to experts: give ep (expert parallelism) above 1, or drop top-k for a dense model",
        ));
    }
    let spec = TrainSpec {
        parameters,
        layers,
        hidden,
        sequence,
        micro_batch,
        global_batch,
        tp,
        pp,
        dp,
        ep,
        top_k: top_k as u32,
        order,
        peak_flops: gpu.peak_flops,
        efficiency,
        grad_bytes,
        channels: channels as u32,
        steps_limit: cat.simulation.steps_flow_limit,
        site_of_rank,
        hw: Default::default(),
        protos: Vec::new(),
        net_overhead: None,
        dp_algo,
    };
    // Each key is bounded above; their product is held too: one step's compute and a
    // micro-batch's activations must fit the clock and 64-bit sizes.
    let acts = micro_batch as f64 * sequence as f64 * hidden as f64 * 2.0;
    if acts > crate::limits::MAX_WORKLOAD_BYTES as f64 {
        return Err(c.invalid(
            "micro-batch",
            format!("micro-batch x sequence x hidden x 2 B = {acts:.3e} B of activations, expected at most 1PiB"),
        ));
    }
    let fwd = spec.fwd_flops() / f64::from(tp * pp) / (spec.peak_flops * efficiency);
    let step = 3.0 * fwd * (spec.micro_batches() + u64::from(pp) - 1) as f64;
    if step > crate::limits::MAX_SCENARIO_TIME_NS as f64 * 1e-9 {
        return Err(c.invalid(
            "parameters",
            format!(
                "one step computes for {:.3e} s on each GPU (3 x forward FLOPs of parameters, sequence, micro-batch and layers, over peak x efficiency, for every micro-batch), expected at most 365 days",
                step
            ),
        ));
    }
    Ok(spec)
}

/// One collective of a step on `ranks`, as it runs: its spec (algorithm and protocol picked
/// by the tuner among NCCL's candidates when the step has protocols, else a ring or direct
/// all-to-all paying the transport's alpha) and, when `timed`, its time alone on the fabric.
#[allow(clippy::too_many_arguments)]
fn tuned(
    topo: &mut dyn Topology,
    cfg: &ExecConfig,
    s: &TrainSpec,
    what: &'static str,
    op: Op,
    ranks: Vec<u32>,
    size: u64,
    given: Option<Algo>,
    timed: bool,
) -> Result<(CollSpec, StepCollective), CollectiveError> {
    let plain = given.unwrap_or(if op == Op::AllToAll { Algo::Direct } else { Algo::Ring });
    let mut spec = base_spec(cfg, s, op, plain, ranks, size);
    let mut alone = None;
    let protos = tuner::protocols(op, spec.size, spec.ranks.len(), &spec.hw, &s.protos);
    if !protos.is_empty() {
        // NCCL's ring rules (an NVLink step at least the post overhead, one GPU per host
        // paying the tree's network step), as a collective workload's ring has them: without,
        // a DP ring of one GPU per host under LL128 was 4.5 us a step cheaper than the same
        // ring as a workload, and picked where the workload picked the tree.
        spec.net_overhead = s.net_overhead;
        let first = topo.host_of(spec.ranks[0]);
        let multi_host = spec.ranks.iter().any(|&r| topo.host_of(r) != first);
        let algos = match given {
            Some(a) => vec![a],
            None => tuner::candidates(op, &spec.hw, multi_host),
        };
        // Everything the pick depends on: the group's ranks on the whole fabric, the
        // collective, its hardware, protocols and channels, and how runs go (routing, seed).
        let key = format!(
            "{op:?} {} {} {timed} {:?} {algos:?} {:?} {:?} {cfg:?} {:?}",
            spec.size,
            spec.channels,
            spec.ranks.iter().map(|&r| topo.global_rank(r)).collect::<Vec<_>>(),
            protos.iter().map(|p| &p.name).collect::<Vec<_>>(),
            spec.hw,
            (spec.steps_limit, spec.alpha, spec.packet, spec.net_overhead)
        );
        let cached = topo.tune_cache().and_then(|c| c.get(&key).copied());
        let (a, p, mut t) = match cached {
            Some(hit) => hit,
            None => {
                let (algo, proto, cands) = tuner::pick(topo, None, cfg, &spec, &algos, &protos, &[])?;
                let t = cands
                    .iter()
                    .find(|c| c.algorithm == algo.name() && c.protocol == proto.name)
                    .and_then(|c| c.time_ns);
                let a = algos.iter().position(|&x| x == algo).unwrap_or(0);
                let p = protos.iter().position(|x| x.name == proto.name).unwrap_or(0);
                (a, p, t)
            }
        };
        spec.algo = algos[a];
        spec.proto = protos[p].clone();
        // A single candidate is taken without a run: timed alone here, and kept with the pick.
        if timed && t.is_none() {
            t = Some(lone(topo, cfg, &spec, what)?.0);
        }
        if cached.is_none() {
            if let Some(c) = topo.tune_cache() {
                c.insert(key, (a, p, t));
            }
        }
        alone = t;
    } else if op != Op::AllToAll {
        // Before protocols, a lone TP all-reduce ran on one channel.
        spec.channels = 1;
    }
    if timed && alone.is_none() {
        alone = Some(lone(topo, cfg, &spec, what)?.0);
    }
    let pick = StepCollective {
        what,
        ranks: spec.ranks.len() as u32,
        size_bytes: spec.size,
        algorithm: spec.algo.name().to_string(),
        protocol: spec.proto.name.clone(),
        alone_ns: alone,
    };
    Ok((spec, pick))
}

/// A collective of a step before the tuner: `algo` over `ranks`, on the step's channels and
/// hardware, with no protocol model.
fn base_spec(cfg: &ExecConfig, s: &TrainSpec, op: Op, algo: Algo, ranks: Vec<u32>, size: u64) -> CollSpec {
    CollSpec {
        op,
        algo,
        size: size.max(1),
        ranks,
        channels: s.channels.max(1),
        model: None,
        steps_limit: s.steps_limit,
        alpha: cfg.wire.alpha,
        packet: cfg.wire.mtu + cfg.wire.header,
        pipeline: Default::default(),
        proto: Default::default(),
        hw: s.hw.clone(),
        net_overhead: None,
    }
}

/// Time of one collective simulated alone.
fn lone(
    topo: &mut dyn Topology,
    cfg: &ExecConfig,
    spec: &CollSpec,
    what: &'static str,
) -> Result<Nanos, CollectiveError> {
    let mut prog = Program::new();
    prog.tag("probe");
    let b = collective::build(&mut prog, topo, spec, &[])?;
    let ex =
        execute(&prog, topo, cfg, &[], &mut |_, _| {}).map_err(|source| CollectiveError::Probe { what, source })?;
    Ok(Nanos(ex.msgs[b.done as usize].end.map_or(0, |e| e.0)))
}

/// Writes one step after `after`; returns the wait that completes with it.
pub fn write(
    prog: &mut Program,
    topo: &mut dyn Topology,
    s: &TrainSpec,
    after: &[MsgId],
    cfg: &ExecConfig,
) -> Result<MsgId, CollectiveError> {
    let m = s.micro_batches();
    let act = s.activation_bytes();
    // TP and EP collectives per micro-batch, simulated once for the first group.
    let layers_per_stage = u64::from(s.layers / s.pp);
    let start = prog.barrier(after.to_vec(), Nanos::ZERO);
    let mut picks = Vec::new();
    let mut tp_ar = Nanos::ZERO;
    if s.tp > 1 {
        let tp_group: Vec<u32> = (0..s.tp).map(|t| s.rank(t, 0, 0)).collect();
        let (_, pick) = tuned(topo, cfg, s, "tensor-parallel all-reduce", Op::AllReduce, tp_group, act, None, true)?;
        tp_ar = Nanos(pick.alone_ns.unwrap_or(0));
        picks.push(pick);
    }
    let mut ep_a2a = Nanos::ZERO;
    if s.ep > 1 {
        let ep_group: Vec<u32> = (0..s.ep).map(|d| s.rank(0, 0, d)).collect();
        let size = act * u64::from(s.top_k);
        let (_, pick) = tuned(topo, cfg, s, "expert-parallel all-to-all", Op::AllToAll, ep_group, size, None, true)?;
        ep_a2a = Nanos(pick.alone_ns.unwrap_or(0));
        picks.push(pick);
    }
    // Per micro-batch per stage, each direction: 2 TP all-reduces and 2 EP all-to-alls a layer.
    let comm = Nanos((tp_ar.0 * 2 + ep_a2a.0 * 2) * layers_per_stage);
    let tf = s.t_fwd() + comm;
    let tb = Nanos(s.t_fwd().0 * 2) + comm;
    let p2p = (act / u64::from(s.tp)).max(1);
    let pp = s.pp as usize;
    let mut step_ends = Vec::new();
    // ready[(t, p)][d]: the op before the last backward of that rank.
    let mut ready: Vec<Vec<MsgId>> = vec![Vec::with_capacity(s.dp as usize); (s.tp * s.pp) as usize];
    for d in 0..s.dp {
        for t in 0..s.tp {
            // Per stage, its 1F1B op list: (is_forward, micro-batch).
            let ops: Vec<Vec<(bool, u64)>> = (0..pp)
                .map(|p| {
                    let w = ((pp - p - 1) as u64).min(m);
                    let mut v: Vec<(bool, u64)> = (0..w).map(|j| (true, j)).collect();
                    for i in 0..m - w {
                        v.push((true, w + i));
                        v.push((false, i));
                    }
                    v.extend((m - w..m).map(|j| (false, j)));
                    v
                })
                .collect();
            let mut next = vec![0usize; pp];
            let mut last_op: Vec<MsgId> = vec![start; pp];
            // Sends arriving at stage p for micro-batch j: forward activations, backward grads.
            let mut act_in: Vec<Vec<Option<MsgId>>> = vec![vec![None; m as usize]; pp];
            let mut grad_in: Vec<Vec<Option<MsgId>>> = vec![vec![None; m as usize]; pp];
            let mut remaining: usize = ops.iter().map(Vec::len).sum();
            while remaining > 0 {
                let mut progressed = false;
                for p in 0..pp {
                    while let Some(&(fwd, j)) = ops[p].get(next[p]) {
                        let recv = if fwd {
                            if p == 0 {
                                Some(None)
                            } else {
                                act_in[p][j as usize].map(Some)
                            }
                        } else if p == pp - 1 {
                            Some(None)
                        } else {
                            grad_in[p][j as usize].map(Some)
                        };
                        let Some(recv) = recv else { break };
                        if !fwd && j == m - 1 {
                            ready[(t * s.pp) as usize + p].push(last_op[p]);
                        }
                        let mut deps = vec![last_op[p]];
                        deps.extend(recv);
                        let op = prog.push(Msg::wait(deps, if fwd { tf } else { tb }));
                        if d == 0 && t == 0 {
                            let kind = if fwd { StepKind::Forward } else { StepKind::Backward };
                            prog.step_ops.push(StepOp { stage: p as u32, kind, gate: None, op });
                        }
                        last_op[p] = op;
                        let me = s.rank(t, p as u32, d);
                        // Activations and gradients between stages are NCCL sends.
                        // At the achievable rate of their path, as a send-recv workload
                        // (a 1 GiB send ran at 50 GB/s, the send-recv at 48).
                        let mut send = |to: u32| {
                            let mut msg = Msg::send(me, to, p2p);
                            msg.bytes = collective::at_share(p2p, collective::share_of(topo, &s.hw, me, to));
                            msg.payload = p2p.max(1);
                            msg.window = crate::program::Window::P2p;
                            msg.deps = vec![op];
                            prog.push(msg)
                        };
                        if fwd && p + 1 < pp {
                            act_in[p + 1][j as usize] = Some(send(s.rank(t, p as u32 + 1, d)));
                        }
                        if !fwd && p > 0 {
                            grad_in[p - 1][j as usize] = Some(send(s.rank(t, p as u32 - 1, d)));
                        }
                        next[p] += 1;
                        remaining -= 1;
                        progressed = true;
                    }
                }
                if !progressed {
                    return Err(CollectiveError::ScheduleDeadlock);
                }
            }
            step_ends.extend(last_op);
        }
    }
    if s.dp > 1 {
        let grads = ((s.parameters / f64::from(s.tp * s.pp)) as u64 * s.grad_bytes).max(1);
        let group = |t: u32, p: u32| -> Vec<u32> { (0..s.dp).map(|d| s.rank(t, p, d)).collect() };
        let what = "data-parallel all-reduce";
        // The first group's pick, for every group (they have the same shape); by site, rings
        // with the large-message protocol (Simple) inside each site and across.
        let (mut spec, pick) = match &s.site_of_rank {
            None => tuned(topo, cfg, s, what, Op::AllReduce, group(0, 0), grads, s.dp_algo, false)?,
            Some(_) => {
                let mut spec = base_spec(cfg, s, Op::AllReduce, Algo::Ring, group(0, 0), grads);
                if let Some(p) = s.protos.iter().find(|p| p.name == "simple" && s.hw.runs("simple")) {
                    spec.proto = p.clone();
                }
                let pick = StepCollective {
                    what,
                    ranks: s.dp,
                    size_bytes: spec.size,
                    algorithm: "site-hierarchical".into(),
                    protocol: spec.proto.name.clone(),
                    alone_ns: None,
                };
                (spec, pick)
            }
        };
        picks.push(pick);
        spec.steps_limit = s.steps_limit / u64::from(s.tp * s.pp).max(1);
        for t in 0..s.tp {
            for p in 0..s.pp {
                let gate = prog.barrier(ready[(t * s.pp + p) as usize].clone(), Nanos::ZERO);
                spec.ranks = group(t, p);
                let b = match &s.site_of_rank {
                    Some(sites) => collective::site_all_reduce(prog, topo, &spec, sites, &[gate])?,
                    None => collective::build(prog, topo, &spec, &[gate])?,
                };
                if t == 0 {
                    let kind = StepKind::GradientAllReduce;
                    prog.step_ops.push(StepOp { stage: p, kind, gate: Some(gate), op: b.done });
                }
                step_ends.push(b.done);
            }
        }
    }
    prog.step_collectives.push((start, picks));
    Ok(prog.barrier(step_ends, Nanos::ZERO))
}

/// Figures for a step that took `step_ns` (and `ideal_ns` on the ideal fabric).
pub fn report(s: &TrainSpec, step_ns: u64, ideal_ns: Option<u64>) -> StepReport {
    let m = s.micro_batches();
    let tf = s.t_fwd().0;
    let compute_only = (m + u64::from(s.pp) - 1) * 3 * tf;
    let flops = 3.0 * s.fwd_flops() * m as f64 * f64::from(s.dp);
    let secs = step_ns.max(1) as f64 / 1e9;
    let per_gpu = flops / s.gpus() as f64 / secs;
    let r4 = |x: f64| (x * 1e4).round() / 1e4;
    StepReport {
        step_ns,
        compute_only_ns: compute_only,
        exposed_comm_ns: step_ns.saturating_sub(compute_only),
        bubble_fraction: r4((u64::from(s.pp) - 1) as f64 / (m + u64::from(s.pp) - 1) as f64),
        micro_batches: m,
        tp: s.tp,
        pp: s.pp,
        dp: s.dp,
        ep: s.ep,
        fwd_ns_per_microbatch: tf,
        mfu: r4(per_gpu / s.peak_flops),
        tflops_per_gpu: (per_gpu / 1e12 * 10.0).round() / 10.0,
        ideal_step_ns: ideal_ns,
        slowdown_vs_ideal: ideal_ns.filter(|&i| i > 0).map(|i| r4(step_ns as f64 / i as f64)),
        collectives: Vec::new(),
        timeline: Vec::new(),
    }
}

/// The step's timeline from a run of `prog`: `ops` (from [`Program::step_ops`]) with the times `ex` gave
/// them; ops that did not run are left out.
pub fn timeline(ops: &[StepOp], prog: &Program, ex: &crate::exec::Execution) -> Vec<StepSpan> {
    let end = |m: MsgId| ex.msgs.get(m as usize).and_then(|r| r.end).map(|t| t.0);
    ops.iter()
        .filter_map(|o| {
            // A compute op is a wait of its duration: it started that long before it ended.
            let start = match o.gate {
                Some(g) => end(g)?,
                None => end(o.op)?.saturating_sub(prog.msgs.get(o.op as usize)?.delay.0),
            };
            Some(StepSpan { stage: o.stage, kind: o.kind, start_ns: start, end_ns: end(o.op)? })
        })
        .collect()
}
