//! `algorithm = "auto"` and `protocol = "auto"`: what a collective runs with when the
//! scenario leaves it to meshway, as NCCL's tuner leaves it to NCCL. Protocols: simple,
//! ll128 and ll from the catalog. Each algorithm NCCL would weigh for the
//! operation (all-reduce: ring, double binary tree, and NVLS, NVLS-tree and CollNet where
//! the hardware has them; all-gather, reduce-scatter and broadcast: ring, and NVLS inside
//! one NVLink domain; all-to-all and send-recv: direct) is simulated alone on the fabric,
//! and the fastest wins; ties go to the earlier in that order. Unlike NCCL's tuner, which
//! predicts with a closed-form model, the choice comes from the same simulation that then
//! runs it, so it is the fastest of the candidates by construction. meshway's own
//! `hierarchical` and `halving-doubling` are not NCCL algorithms: they run when a scenario
//! names them, never by the tuner's choice.
//!
//! One term of NCCL's model is not a delay: the network latency a NIC's NCCL net plugin
//! reports (`[[nic]] nccl-net-latency`; AWS's EFA plugin reports 75 us on P4d and P5, NVIDIA's
//! InfiniBand transport none), which NCCL adds to every network step its latency formula
//! counts, twice with Simple (src/graph/tuning.cc: ring all-reduce 2(nodes-1) steps, other ring
//! operations nodes-1, tree and NVLS-tree 2 log2(nodes), NVLS and CollNet one). The tuner ranks
//! the candidates by their time plus that term, as NCCL's choice would, and reports the time.
//!
//! Branch and bound: given the ideal non-blocking counterpart of the fabric, every candidate
//! first runs there (no contention, no path latency: a lower bound, and cheap), and the
//! candidates run on the fabric in order of that bound; one whose bound is already no better
//! than the best time found is not simulated on the fabric, since it cannot win.

use crate::collective::{self, Algo, CollSpec, Hardware, Op, Proto};
use crate::exec::{execute, ExecConfig, LinkEvent};
use crate::program::Program;
use crate::topo::Topology;
use crate::CollectiveError;
use meshway_fabric::workload_config::AlgorithmConfig;
use serde::Serialize;

/// One algorithm and protocol the tuner evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub algorithm: String,
    pub protocol: String,
    /// Its completion time alone on the fabric; None when it was not simulated there
    /// because its ideal-fabric time already was no better than the best, or when it never
    /// completes (a link it needs is down for good).
    pub time_ns: Option<u64>,
    /// Its completion time alone on the ideal non-blocking fabric (the bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ideal_ns: Option<u64>,
    /// What NCCL's model adds for the net plugin's reported latency, ranked with the time
    /// (absent when the NIC reports none; 0 for a candidate whose formula counts no step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nccl_net_latency_ns: Option<u64>,
    /// The tuner plugin's region that set this pick ("aws-ofi-p5 region 3"): nothing else
    /// was weighed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_region: Option<String>,
}

/// The network steps NCCL's tuning model charges the net plugin's latency for, on `nodes`
/// hosts (NVIDIA/nccl src/graph/tuning.cc, NCCL 2.30.7: ring all-reduce 2(nodes-1); NCCL 2.12
/// to 2.22 counted 2 nodes); Simple pays it twice ("the flush extra latency").
pub fn net_latency_term(op: Op, algo: Algo, proto: &Proto, nodes: u64, latency: u64) -> u64 {
    if nodes < 2 || latency == 0 {
        return 0;
    }
    let log2 = u64::from(63 - nodes.leading_zeros());
    let steps = match (algo, op) {
        (Algo::Ring, Op::AllReduce) => 2 * (nodes - 1),
        (Algo::Ring, Op::AllGather | Op::ReduceScatter) => nodes - 1,
        (Algo::Tree | Algo::NvlsTree, Op::AllReduce) => 2 * log2,
        (Algo::Nvls | Algo::Collnet, _) => 1,
        // Broadcast's ring charges the NVLink or network step of its table only; point to
        // point is not priced by this model.
        _ => 0,
    };
    let per = if proto.name == "simple" { 2 } else { 1 };
    steps.saturating_mul(per).saturating_mul(latency)
}

/// The algorithms weighed for `op` on this hardware, in order of preference on ties: NVLS
/// where the GPUs' NVSwitch reduces (inside one host, or across hosts with SHARP
/// switches), NVLS-tree across hosts, CollNet where the switches reduce.
pub fn candidates(op: Op, hw: &Hardware, multi_host: bool) -> Vec<Algo> {
    let nvls = hw.nvls.is_some() && (!multi_host || hw.collnet.is_some());
    match op {
        Op::AllReduce => {
            let mut v = vec![Algo::Ring, Algo::Tree];
            if nvls {
                v.push(Algo::Nvls);
            }
            if hw.nvls.is_some() && multi_host {
                v.push(Algo::NvlsTree);
            }
            if hw.collnet.is_some() && multi_host {
                v.push(Algo::Collnet);
            }
            v
        }
        Op::AllToAll | Op::SendRecv => vec![Algo::Direct],
        Op::AllGather | Op::ReduceScatter if nvls && !multi_host => vec![Algo::Ring, Algo::Nvls],
        Op::AllGather | Op::ReduceScatter | Op::Broadcast => vec![Algo::Ring],
    }
}

/// NCCL's `NCCL_P2P_LL_THRESHOLD` default: the largest point-to-point transfer per channel
/// sent with LL (NVIDIA/nccl src/enqueue.cc).
pub const P2P_LL_THRESHOLD: u64 = 16384;

/// The protocols weighed for `op` of `size` bytes on `ranks` ranks, from `all` (the
/// catalog's, in its order): for point-to-point operations (all-to-all, send-recv) NCCL's
/// rule, LL when a peer gets at most [`P2P_LL_THRESHOLD`] (16 KiB) per channel, else Simple,
/// never LL128 (NVIDIA/nccl src/enqueue.cc, NCCL 2.30.7; small transfers use one channel);
/// for the others every protocol the NIC runs (AWS's plugin sets NCCL_PROTO=simple on
/// first-generation EFA).
pub fn protocols(op: Op, size: u64, ranks: usize, hw: &Hardware, all: &[Proto]) -> Vec<Proto> {
    let by_name = |n: &str| all.iter().find(|p| p.name == n).cloned();
    match op {
        Op::AllToAll | Op::SendRecv => {
            let peer = if op == Op::AllToAll { size / ranks.max(1) as u64 } else { size };
            let name = if peer <= P2P_LL_THRESHOLD && hw.runs("ll") { "ll" } else { "simple" };
            by_name(name).into_iter().collect()
        }
        _ => all.iter().filter(|p| hw.runs(&p.name)).cloned().collect(),
    }
}

/// The fastest of `algos` x `protos` for `spec` (its `algo` and `proto` are ignored) on
/// `topo`, with every candidate evaluated, or bounded out on `ideal` (see the module docs).
/// A candidate this fabric cannot run (NVLS-tree on hosts of one GPU) is left out; a single
/// candidate is taken without simulating it.
///
/// `failures` are the link changes as the collective would see them from its start: the
/// candidates run on `topo` with them (a failure that sends a ring round a long detour can
/// make a tree faster); the bounds on the ideal fabric, without them, stay lower bounds.
#[allow(clippy::too_many_arguments)]
pub fn pick(
    topo: &mut dyn Topology,
    ideal: Option<&mut dyn Topology>,
    cfg: &ExecConfig,
    spec: &CollSpec,
    algos: &[Algo],
    protos: &[Proto],
    failures: &[LinkEvent],
) -> Result<(Algo, Proto, Vec<Candidate>), CollectiveError> {
    if algos.len() == 1 && protos.len() <= 1 {
        return Ok((algos[0], protos.first().cloned().unwrap_or_default(), Vec::new()));
    }
    let nodes = {
        let mut hosts: Vec<u32> = spec.ranks.iter().map(|&r| topo.host_of(r)).collect();
        hosts.sort_unstable();
        hosts.dedup();
        hosts.len() as u64
    };
    if let Some(t) = &spec.hw.tuner_plugin {
        // A pick this fabric cannot build (NVLS-tree on ranks spread unevenly over their
        // hosts) is skipped for the next region that holds the point, as NCCL skips a cost
        // table entry it marked unusable.
        let mut refused: Vec<(Algo, String)> = Vec::new();
        loop {
            let allowed = |a: AlgorithmConfig, p: &str| {
                Algo::from_config(a)
                    .is_some_and(|a| algos.contains(&a) && !refused.iter().any(|r| r.0 == a && r.1 == p))
                    && protos.iter().any(|q| q.name == p)
            };
            let pick = t.pick(spec.op, spec.size, spec.ranks.len() as u64, nodes, allowed);
            let Some((i, a, p)) = pick.and_then(|(i, a, p)| Some((i, Algo::from_config(a)?, p))) else { break };
            let proto = protos.iter().find(|q| q.name == p).cloned().unwrap_or_default();
            let trial = CollSpec { algo: a, proto: proto.clone(), ..spec.clone() };
            if collective::build(&mut Program::new(), topo, &trial, &[]).is_err() {
                refused.push((a, p));
                continue;
            }
            let picked = Candidate {
                algorithm: a.name().to_string(),
                protocol: p,
                time_ns: None,
                ideal_ns: None,
                nccl_net_latency_ns: None,
                plugin_region: Some(format!("{} region {}", t.name, i + 1)),
            };
            return Ok((a, proto, vec![picked]));
        }
    }
    let jobs: Vec<(Algo, &Proto)> = algos.iter().flat_map(|&a| protos.iter().map(move |p| (a, p))).collect();
    let extra: Vec<u64> =
        jobs.iter().map(|&(a, p)| net_latency_term(spec.op, a, p, nodes, spec.hw.net_latency.0)).collect();
    let mut times: Vec<Option<Outcome>> = (0..jobs.len()).map(|_| None).collect();
    let bounds: Vec<Option<Outcome>> = match ideal {
        Some(it) => run_all(it, cfg, spec, &jobs, &[])?.into_iter().map(Some).collect(),
        None => (0..jobs.len()).map(|_| None).collect(),
    };
    // Candidates by bound (refusals first: they are refused on the fabric too, unsimulated).
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| match &bounds[i] {
        Some(Ok(b)) => (1, b.map_or(u64::MAX, |b| b.saturating_add(extra[i]))),
        Some(Err(_)) => (0, 0),
        None => (1, 0),
    });
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
    let mut best = u64::MAX;
    let mut k = 0;
    while k < order.len() {
        let mut batch = Vec::new();
        while k < order.len() && batch.len() < workers {
            let i = order[k];
            k += 1;
            match &bounds[i] {
                Some(Err(e)) => times[i] = Some(Err(e.clone())),
                // No better than the best found (or never done even on the ideal fabric,
                // once something is done).
                Some(Ok(b)) if b.map_or(u64::MAX, |b| b.saturating_add(extra[i])) >= best && best < u64::MAX => {}
                _ => batch.push(i),
            }
        }
        if batch.is_empty() {
            continue;
        }
        let sub: Vec<(Algo, &Proto)> = batch.iter().map(|&i| jobs[i]).collect();
        for (i, t) in batch.into_iter().zip(run_all(topo, cfg, spec, &sub, failures)?) {
            if let Ok(Some(t)) = &t {
                best = best.min(t.saturating_add(extra[i]));
            }
            times[i] = Some(t);
        }
    }
    let mut evaluated = Vec::new();
    let mut chosen: Option<(Algo, Proto, u64)> = None;
    // Run but never done (a link down for good): the first such, taken when nothing is done,
    // so that the run reports why.
    let mut stalled: Option<(Algo, Proto)> = None;
    let mut refused = None;
    for (i, &(a, p)) in jobs.iter().enumerate() {
        let ideal_ns = match &bounds[i] {
            Some(Ok(b)) => *b,
            _ => None,
        };
        let time_ns = match times[i].take() {
            Some(Ok(Some(t))) => Some(t),
            Some(Ok(None)) => {
                stalled.get_or_insert_with(|| (a, p.clone()));
                None
            }
            Some(Err(e)) => {
                // The first refusal: the simple protocol's, whose reason is the algorithm's
                // (the others' would say only that NCCL runs it with simple).
                refused.get_or_insert(e);
                continue;
            }
            None => None,
        };
        evaluated.push(Candidate {
            algorithm: a.name().to_string(),
            protocol: p.name.clone(),
            time_ns,
            ideal_ns,
            // Given whenever the NIC reports a latency, 0 where NCCL's formula counts no step.
            nccl_net_latency_ns: Some(extra[i]).filter(|_| spec.hw.net_latency.0 > 0),
            plugin_region: None,
        });
        if let Some(t) = time_ns.map(|t| t.saturating_add(extra[i])) {
            if chosen.as_ref().is_none_or(|(_, _, bt)| t < *bt) {
                chosen = Some((a, p.clone(), t));
            }
        }
    }
    match (chosen.map(|(a, p, _)| (a, p)).or(stalled), refused) {
        (Some((a, p)), _) => Ok((a, p, evaluated)),
        // No candidate runs here: why the last one could not.
        (None, Some(e)) => Err(e),
        (None, None) => Err(CollectiveError::TooFewRanks { ranks: spec.ranks.len() }),
    }
}

/// Completion time of each candidate alone (or why it cannot run here), in `jobs` order.
/// The candidates are independent, so they run on as many threads as the machine offers,
/// each on its own copy of the topology; the answers do not depend on how many.
/// `Ok(None)`: it ran and never completed.
type Outcome = Result<Option<u64>, CollectiveError>;

fn run_all(
    topo: &mut dyn Topology,
    cfg: &ExecConfig,
    spec: &CollSpec,
    jobs: &[(Algo, &Proto)],
    failures: &[LinkEvent],
) -> Result<Vec<Outcome>, CollectiveError> {
    let one = |topo: &mut dyn Topology, a: Algo, p: &Proto| -> Result<Outcome, CollectiveError> {
        let s = CollSpec { algo: a, proto: p.clone(), ..spec.clone() };
        let mut prog = Program::new();
        prog.tag("tuner");
        let built = match collective::build(&mut prog, topo, &s, &[]) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        let ex = execute(&prog, topo, cfg, failures, &mut |_, _| {})
            .map_err(|source| CollectiveError::Probe { what: "tuner candidate", source })?;
        Ok(Ok(ex.msgs[built.done as usize].end.map(|e| e.0)))
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len());
    if workers <= 1 || topo.fork().is_none() {
        return jobs.iter().map(|&(a, p)| one(topo, a, p)).collect();
    }
    let forks: Vec<Box<dyn Topology + Send + '_>> = (0..workers).filter_map(|_| topo.fork()).collect();
    let mut out: Vec<Option<Outcome>> = (0..jobs.len()).map(|_| None).collect();
    std::thread::scope(|sc| -> Result<(), CollectiveError> {
        let handles: Vec<_> = forks
            .into_iter()
            .enumerate()
            .map(|(w, mut t)| {
                let one = &one;
                sc.spawn(move || -> Result<Vec<(usize, Outcome)>, CollectiveError> {
                    let mut done = Vec::new();
                    for (i, &(a, p)) in jobs.iter().enumerate().skip(w).step_by(workers) {
                        done.push((i, one(t.as_mut(), a, p)?));
                    }
                    Ok(done)
                })
            })
            .collect();
        for h in handles {
            let done = h.join().map_err(|_| CollectiveError::ScheduleDeadlock)??;
            for (i, o) in done {
                out[i] = Some(o);
            }
        }
        Ok(())
    })?;
    Ok(out.into_iter().map(|o| o.unwrap_or(Err(CollectiveError::ScheduleDeadlock))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_net_plugins_latency_counts_the_network_steps_of_nccls_formulas() {
        let simple = Proto { name: "simple".into(), ..Proto::TRANSPORT };
        let ll = Proto { name: "ll".into(), ..Proto::TRANSPORT };
        let t = |op, a, p: &Proto, nodes| net_latency_term(op, a, p, nodes, 75_000);
        // Ring all-reduce: 2(nodes - 1) steps; all-gather and reduce-scatter nodes - 1.
        assert_eq!(t(Op::AllReduce, Algo::Ring, &ll, 4), 6 * 75_000);
        assert_eq!(t(Op::AllGather, Algo::Ring, &ll, 4), 3 * 75_000);
        assert_eq!(t(Op::ReduceScatter, Algo::Ring, &simple, 4), 2 * 3 * 75_000);
        // Trees: 2 log2(nodes), rounded down as NCCL's log2i.
        assert_eq!(t(Op::AllReduce, Algo::Tree, &ll, 2), 2 * 75_000);
        assert_eq!(t(Op::AllReduce, Algo::Tree, &ll, 7), 4 * 75_000);
        assert_eq!(t(Op::AllReduce, Algo::NvlsTree, &simple, 8), 2 * 6 * 75_000);
        // NVLS and CollNet: one.
        assert_eq!(t(Op::AllReduce, Algo::Nvls, &simple, 3), 2 * 75_000);
        assert_eq!(t(Op::AllReduce, Algo::Collnet, &simple, 16), 2 * 75_000);
        // Nothing on one host, without a reported latency, or for point to point.
        assert_eq!(t(Op::AllReduce, Algo::Ring, &ll, 1), 0);
        assert_eq!(net_latency_term(Op::AllReduce, Algo::Ring, &ll, 4, 0), 0);
        assert_eq!(t(Op::AllToAll, Algo::Direct, &ll, 4), 0);
        assert_eq!(t(Op::Broadcast, Algo::Ring, &ll, 4), 0);
    }
}
