//! Jobs sharing the fabric at flow level.
//!
//! Each job's training step is written on its own GPUs (a [`SubTopo`]) and renumbered to the
//! fabric's ranks, so a job alone runs exactly the program `meshway simulate` runs for the same
//! training spec on those GPUs. Co-running jobs run together in one program on the same links.
//!
//! **The approximation.** A week of iterations cannot each be simulated. When the set of
//! running jobs changes, the jobs that share a link (transitively: a *component*) are
//! simulated together for a window: the longest step among them, during which each shorter
//! job repeats its step back to back until the window ends (up to [`MAX_REPEAT`] times, as
//! [`REPEAT_BUDGET`] allows, and at least [`MIN_REPEAT`]; spread over the window when they
//! cannot cover it). A job's shared step time is the mean of its repeats. Every job then advances at that rate until
//! the next change. Jobs that share no link cannot slow each other (max-min fair shares of
//! disjoint components are independent), so they are simulated apart, and a component's
//! result is reused until its membership changes. A component bigger than
//! [`COSIM_BUDGET`] messages is not simulated but estimated from each job's busy time on
//! the links it shares ([`estimate`]); the report counts both. [`exact`] simulates every iteration
//! instead, for checking the approximation on short traces.

use crate::SchedError;
use meshway_fabric::LinkClass;
use meshway_sim::exec::{execute, ExecConfig, LinkEvent};
use meshway_sim::program::{Msg, MsgId, Program};
use meshway_sim::topo::{FabricTopo, SubTopo};
use meshway_sim::training::{self, TrainSpec};
use meshway_units::Nanos;

/// With `MESHWAY_SCHED_TRACE` set, each simulation's wall time on stderr (for profiling).
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
fn timed<T>(what: &str, msgs: usize, f: impl FnOnce() -> T) -> T {
    if std::env::var_os("MESHWAY_SCHED_TRACE").is_none() {
        return f();
    }
    let t = std::time::Instant::now();
    let r = f();
    eprintln!("trace: {what} {msgs} msgs {:.3} s", t.elapsed().as_secs_f64());
    r
}

/// Longest run of a short job's steps inside a component's window: as many as cover the
/// window, up to this, as long as the component stays within [`COSIM_BUDGET`]; never fewer
/// than [`MIN_REPEAT`] (or than cover the window). A short job that stopped before the
/// window's end would miss the long job's traffic late in its step (its gradient all-reduce).
pub const MAX_REPEAT: u64 = 64;
/// Repeats a component is always given (up to covering the window); one that exceeds the
/// budget with them is estimated.
pub const MIN_REPEAT: u64 = 4;

/// Largest co-simulation once shorter jobs repeat to cover the window (messages): a
/// component within [`COSIM_BUDGET`] with [`MIN_REPEAT`] repeats may grow to this so its
/// short jobs run through the whole window. Our assumption: four times the budget, a few
/// seconds of the flow engine.
pub const REPEAT_BUDGET: u64 = 4 * COSIM_BUDGET;

/// Largest co-simulation (messages, repeats included); bigger components are estimated.
/// Our assumption, set so a 16,384-GPU week of jobs runs in about a minute.
pub const COSIM_BUDGET: u64 = 120_000;

/// Bytes per step by link class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierBytes {
    /// NIC to leaf and back.
    pub nic: u64,
    /// Leaf to spine and back.
    pub leaf_spine: u64,
    /// Spine to core and back.
    pub spine_core: u64,
    pub dci: u64,
    pub nvlink: u64,
}

impl TierBytes {
    pub fn add(&mut self, class: LinkClass, b: u64) {
        match class {
            LinkClass::Nic | LinkClass::Custom => self.nic += b,
            LinkClass::LeafSpine => self.leaf_spine += b,
            LinkClass::SpineCore => self.spine_core += b,
            LinkClass::Dci => self.dci += b,
            LinkClass::Nvlink => self.nvlink += b,
        }
    }
    pub fn scaled(&self, k: f64) -> TierBytes {
        let s = |x: u64| (x as f64 * k) as u64;
        TierBytes {
            nic: s(self.nic),
            leaf_spine: s(self.leaf_spine),
            spine_core: s(self.spine_core),
            dci: s(self.dci),
            nvlink: s(self.nvlink),
        }
    }
    pub fn plus(&self, o: &TierBytes) -> TierBytes {
        TierBytes {
            nic: self.nic + o.nic,
            leaf_spine: self.leaf_spine + o.leaf_spine,
            spine_core: self.spine_core + o.spine_core,
            dci: self.dci + o.dci,
            nvlink: self.nvlink + o.nvlink,
        }
    }
}

/// What a placed job's step does alone: kept for every placement, without its program.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Step time alone on the fabric (ns); `u64::MAX` if it cannot complete.
    pub alone: u64,
    /// Links between switches it uses, with how long each is busy with its traffic per
    /// step (ns), sorted by arc. Links to GPUs belong to one job and are left out.
    pub arcs: Vec<(u32, u64)>,
    pub bytes: TierBytes,
    /// Messages in its program.
    pub msgs: usize,
}

/// A placed job's step as a program on the fabric's ranks.
#[derive(Debug, Clone)]
pub struct Step {
    pub prog: Program,
    pub done: MsgId,
}

/// Writes one step of `spec` on `ranks` (job rank i is fabric rank `ranks[i]`).
pub fn write_step(
    topo: &mut FabricTopo<'_>,
    cfg: &ExecConfig,
    spec: &TrainSpec,
    ranks: &[u32],
    name: &str,
) -> Result<Step, SchedError> {
    let mut prog = Program::new();
    prog.tag(name);
    let mut sub = SubTopo { inner: topo, ranks };
    let done = timed("write", 0, || training::write(&mut prog, &mut sub, spec, &[], cfg))
        .map_err(|e| SchedError::Sim { job: name.to_string(), message: e.to_string() })?;
    sub.globalize(&mut prog);
    Ok(Step { prog, done })
}

/// Runs a step alone: its time, the links it uses and its bytes per tier.
pub fn alone(
    topo: &mut FabricTopo<'_>,
    cfg: &ExecConfig,
    step: &Step,
    down: &[LinkEvent],
    name: &str,
) -> Result<Summary, SchedError> {
    let ex = timed("alone", step.prog.msgs.len(), || execute(&step.prog, topo, cfg, down, &mut |_, _| {}))
        .map_err(|e| SchedError::Sim { job: name.to_string(), message: e.to_string() })?;
    let alone = ex.msgs[step.done as usize].end.map_or(u64::MAX, |e| e.0);
    let mut bytes = TierBytes::default();
    let mut arcs = Vec::new();
    for (i, l) in ex.sim.link_stats.iter().enumerate() {
        if l.bytes.0 > 0 {
            let link = &topo.fabric.links[i / 2];
            let between_switches = !topo.fabric.node(link.a).is_gpu() && !topo.fabric.node(link.b).is_gpu();
            // A hand-listed link between two switches is above the leaf as a spine's is.
            let class =
                if link.class == LinkClass::Custom && between_switches { LinkClass::LeafSpine } else { link.class };
            bytes.add(class, l.bytes.0);
            if between_switches {
                arcs.push((i as u32, l.busy.0));
            }
        }
    }
    Ok(Summary { alone, arcs, bytes, msgs: step.prog.msgs.len() })
}

/// Appends `src` to `dst`, its roots waiting on `after`; returns its `done` in `dst`.
pub fn append(dst: &mut Program, src: &Program, done: MsgId, after: &[MsgId]) -> MsgId {
    let off = dst.msgs.len() as u32;
    let tag_off = dst.tags.len() as u32;
    dst.tags.extend(src.tags.iter().cloned());
    for m in &src.msgs {
        let mut m = m.clone();
        if m.deps.is_empty() {
            m.deps = after.to_vec();
        } else {
            for d in &mut m.deps {
                *d += off;
            }
        }
        m.tag += tag_off;
        dst.msgs.push(m);
    }
    done + off
}

/// Repeats of each job's step in a component's window, each at most `cap`.
fn repeats_capped(sums: &[&Summary], cap: u64) -> Vec<u64> {
    let window = sums.iter().map(|s| s.alone).filter(|&a| a != u64::MAX).max().unwrap_or(1).max(1);
    sums.iter().map(|s| if s.alone == u64::MAX { 1 } else { window.div_ceil(s.alone.max(1)).clamp(1, cap) }).collect()
}

fn messages(sums: &[&Summary], reps: &[u64]) -> u64 {
    sums.iter().zip(reps).map(|(s, &r)| (s.msgs as u64).saturating_mul(r)).fold(0, u64::saturating_add)
}

/// Repeats of each job's step in a component's window (see the module notes): enough to
/// cover the window, capped by the largest cap from [`MIN_REPEAT`] to [`MAX_REPEAT`] that
/// keeps the component within [`COSIM_BUDGET`].
pub fn repeats(sums: &[&Summary]) -> Vec<u64> {
    repeats_within(sums, REPEAT_BUDGET)
}

/// [`repeats`] within a budget of `budget` messages.
pub fn repeats_within(sums: &[&Summary], budget: u64) -> Vec<u64> {
    let mut cap = MIN_REPEAT;
    while cap < MAX_REPEAT && messages(sums, &repeats_capped(sums, cap + 1)) <= budget {
        cap += 1;
    }
    repeats_capped(sums, cap)
}

/// Whether a component is small enough to co-simulate (at most [`COSIM_BUDGET`] messages
/// with [`MIN_REPEAT`] repeats); bigger ones are estimated by [`estimate`].
pub fn within_budget(sums: &[&Summary]) -> bool {
    messages(sums, &repeats_capped(sums, MIN_REPEAT)) <= COSIM_BUDGET
}

/// Shared step times of jobs that run together (None: a job that cannot finish a step,
/// e.g. cut off by a failure).
pub fn together(
    topo: &mut FabricTopo<'_>,
    cfg: &ExecConfig,
    sums: &[&Summary],
    steps: &[&Step],
    down: &[LinkEvent],
) -> Result<Vec<Option<u64>>, SchedError> {
    together_repeating(topo, cfg, sums, steps, down, &repeats(sums))
}

/// [`together`] with each job's step repeated `reps[i]` times in the window: back to back
/// when they cover it, spread evenly over it when they do not.
pub fn together_repeating(
    topo: &mut FabricTopo<'_>,
    cfg: &ExecConfig,
    sums: &[&Summary],
    steps: &[&Step],
    down: &[LinkEvent],
    reps: &[u64],
) -> Result<Vec<Option<u64>>, SchedError> {
    let window = sums.iter().map(|s| s.alone).filter(|&a| a != u64::MAX).max().unwrap_or(1).max(1);
    let mut prog = Program::new();
    // Per job, each repeat's (gate, done): it starts when its gate opens; and whether they
    // are spread.
    let mut parts: Vec<(Vec<(MsgId, MsgId)>, bool)> = Vec::with_capacity(steps.len());
    for ((s, &r), sum) in steps.iter().zip(reps).zip(sums) {
        // Repeats that cannot cover the window back to back (the budget) are spread over
        // it, so they meet the other jobs' traffic wherever it falls in their steps.
        let spacing = if sum.alone != u64::MAX && r.saturating_mul(sum.alone) < window { window / r } else { 0 };
        let mut after: Vec<MsgId> = Vec::new();
        let mut mine = Vec::with_capacity(r as usize);
        for k in 0..r {
            let mut gate = Msg::wait(after, Nanos::ZERO);
            gate.start = Nanos(k * spacing);
            prog.tag("gate");
            let g = prog.push(gate);
            let d = append(&mut prog, &s.prog, s.done, &[g]);
            mine.push((g, d));
            after = vec![d];
        }
        parts.push((mine, spacing > 0));
    }
    let ex = timed("together", prog.msgs.len(), || execute(&prog, topo, cfg, down, &mut |_, _| {}))
        .map_err(|e| SchedError::Sim { job: "co-running jobs".into(), message: e.to_string() })?;
    // A job's shared step, from each repeat's time from its gate to its end: back to back,
    // their mean (the time they took over their count). Spread, they sample the window at
    // evenly spaced times, and a step begun while another job's traffic is there takes longer
    // without the job doing more: the steps it does in the window are the window times the
    // mean of 1/duration, so the step is the harmonic mean. The arithmetic mean counted a
    // sample that met another job's all-reduce at its whole length: four spread repeats, two
    // of them 3.8x their step alone, read 2.4x where back to back over the window gave 1.46x.
    Ok(parts
        .iter()
        .map(|(mine, spread)| {
            let mut times = Vec::with_capacity(mine.len());
            for &(g, d) in mine {
                let (Some(open), Some(end)) = (ex.msgs[g as usize].end, ex.msgs[d as usize].end) else { return None };
                times.push(end.0.saturating_sub(open.0).max(1));
            }
            let n = times.len().max(1) as f64;
            Some(if *spread {
                (n / times.iter().map(|&t| 1.0 / t as f64).sum::<f64>()).round() as u64
            } else {
                times.iter().sum::<u64>() / n as u64
            })
        })
        .collect())
}

/// Shared step times of a component too big to co-simulate: on each link a job shares, its
/// traffic is slowed while another job's traffic is there, which happens for the share of
/// time that job keeps the link busy (`busy / step`); a job's step grows by the largest such
/// delay over its links: `alone + max over links (busy_j x sum over others of busy_k / step_k)`.
/// This treats the jobs' bursts as independent in time; it is stated in the report.
pub fn estimate(sums: &[&Summary]) -> Vec<Option<u64>> {
    sums.iter()
        .enumerate()
        .map(|(j, s)| {
            if s.alone == u64::MAX {
                return None;
            }
            let mut worst = 0.0f64;
            for &(arc, busy) in &s.arcs {
                let others: f64 = sums
                    .iter()
                    .enumerate()
                    .filter(|&(k, o)| k != j && o.alone != u64::MAX)
                    .filter_map(|(_, o)| {
                        o.arcs
                            .binary_search_by_key(&arc, |x| x.0)
                            .ok()
                            .map(|i| o.arcs[i].1 as f64 / o.alone.max(1) as f64)
                    })
                    .sum();
                worst = worst.max(busy as f64 * others.min(8.0));
            }
            Some(s.alone + worst.round() as u64)
        })
        .collect()
}

/// Every iteration of every job simulated: job `i` starts at `starts[i]` and runs
/// `iterations[i]` steps back to back. Returns each job's finish time.
pub fn exact(
    topo: &mut FabricTopo<'_>,
    cfg: &ExecConfig,
    steps: &[&Step],
    starts: &[u64],
    iterations: &[u64],
) -> Result<Vec<Option<u64>>, SchedError> {
    let mut prog = Program::new();
    let mut ends = Vec::new();
    for ((s, &t), &n) in steps.iter().zip(starts).zip(iterations) {
        let mut gate = Msg::wait(Vec::new(), Nanos::ZERO);
        gate.start = Nanos(t);
        prog.tag("gate");
        let g = prog.push(gate);
        let mut after = vec![g];
        for _ in 0..n {
            after = vec![append(&mut prog, &s.prog, s.done, &after)];
        }
        ends.push(after[0]);
    }
    let ex = execute(&prog, topo, cfg, &[], &mut |_, _| {})
        .map_err(|e| SchedError::Sim { job: "exact run".into(), message: e.to_string() })?;
    Ok(ends.iter().map(|&d| ex.msgs[d as usize].end.map(|e| e.0)).collect())
}

/// Parses a job's training step for `gpus` GPUs (errors name the job's table or row).
pub fn spec_for(
    topo: &mut FabricTopo<'_>,
    w: &meshway_fabric::workload_config::WorkloadConfig,
    ctx: &meshway_fabric::scenario::Ctx<'_>,
    gpus: u32,
    cat: &meshway_fabric::Catalog,
) -> Result<TrainSpec, SchedError> {
    let ranks: Vec<u32> = (0..gpus).collect();
    let fabric = topo.fabric;
    let sub = SubTopo { inner: topo, ranks: &ranks };
    // The fabric's GPU and its achievable rates, as `simulate` runs the step.
    training::parse_on(w, ctx, &sub, fabric, cat).map_err(SchedError::Fabric)
}
