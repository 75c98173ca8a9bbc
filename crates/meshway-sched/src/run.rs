//! The event loop: arrivals, starts, finishes and link failures; a queue with optional EASY
//! backfill; each policy's placements co-simulated (see [`crate::cosim`]).

use crate::cosim::{self, Step, Summary, TierBytes};
use crate::hier::Hier;
use crate::jobs::Job;
use crate::place::{self, Ask, Free, Policy, Room};
use crate::SchedError;
use meshway_sim::exec::{ExecConfig, LinkEvent};
use meshway_sim::topo::{mix, FabricTopo};
use meshway_sim::training::{Dim, TrainSpec};
use meshway_units::SimTime;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A job ready to schedule: its step parsed and its iterations known.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub job: Job,
    pub spec: TrainSpec,
    pub iterations: u64,
    /// Step time alone on the reference placement (the lowest-numbered hosts).
    pub reference_ns: u64,
    /// Network bytes per second it sends alone (NIC links), for contention-aware placement.
    pub intensity: f64,
    /// Key of its training step (jobs with equal steps share it).
    pub spec_key: u32,
}

/// A link down over `[from, until)`.
#[derive(Debug, Clone, Copy)]
pub struct Outage {
    pub arcs: [u32; 2],
    pub from: u64,
    pub until: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobOutcome {
    pub name: String,
    pub gpus: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub priority: i64,
    pub iterations: u64,
    /// Step time alone on the reference placement (the lowest-numbered hosts).
    pub reference_ms: f64,
    pub arrival_s: f64,
    /// None: never started (it did not fit before the trace ended, or could not run).
    pub start_s: Option<f64>,
    pub finish_s: Option<f64>,
    pub queue_s: Option<f64>,
    /// Step time alone on its placement, and its mean while sharing.
    pub step_alone_ms: Option<f64>,
    pub step_shared_ms: Option<f64>,
    /// Shared over alone.
    pub slowdown: Option<f64>,
    /// Time it held its GPUs without running, every path of its cut by a failure (left
    /// out of its shared step and slowdown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalled_s: Option<f64>,
    /// Its hosts as a Slurm host list.
    pub hosts: String,
    /// Blocks (leaf or rail-group switches) and pods it spans.
    pub blocks: Vec<String>,
    pub pods: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl JobOutcome {
    /// A job before it starts.
    fn unstarted(p: &Prepared) -> JobOutcome {
        JobOutcome {
            name: p.job.name.clone(),
            gpus: p.job.gpus,
            profile: p.job.profile.clone(),
            priority: p.job.priority,
            iterations: p.iterations,
            reference_ms: p.reference_ns as f64 / 1e6,
            arrival_s: p.job.arrival as f64 / 1e9,
            start_s: None,
            finish_s: None,
            queue_s: None,
            step_alone_ms: None,
            step_shared_ms: None,
            slowdown: None,
            stalled_s: None,
            hosts: String::new(),
            blocks: Vec::new(),
            pods: 0,
            note: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TierTotals {
    pub nic_bytes: u64,
    pub leaf_spine_bytes: u64,
    pub spine_core_bytes: u64,
    pub dci_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyOutcome {
    pub policy: Policy,
    pub jobs: Vec<JobOutcome>,
    /// GPU-seconds held by jobs over GPUs x makespan (a slowed job holds its GPUs longer).
    pub utilization: f64,
    /// GPU-seconds of useful work (each job's iterations at its step time alone on the
    /// reference placement) over GPUs x makespan.
    pub goodput: f64,
    pub mean_jct_s: f64,
    pub p95_jct_s: f64,
    pub makespan_s: f64,
    pub mean_queue_s: f64,
    /// Mean slowdown of the jobs that started (shared step over alone step).
    pub mean_slowdown: f64,
    pub max_slowdown: f64,
    /// Share of the time a queued job waited although enough GPUs were free in total (the
    /// free GPUs were scattered over partly used hosts).
    pub fragmentation: f64,
    /// Bytes carried per tier, all jobs.
    pub bytes: TierTotals,
    /// Jobs that spanned more than one block.
    pub spanning_jobs: usize,
    pub unfinished: usize,
    /// Co-simulations run (components of co-running jobs simulated together), reused, and
    /// estimated instead (components over the simulation budget).
    pub cosims: u64,
    pub cosims_reused: u64,
    pub cosims_estimated: u64,
}

struct Running {
    idx: usize,
    ranks: Vec<u32>,
    sum: Arc<Summary>,
    /// Its program, written when a co-simulation first needs it.
    step: Option<Step>,
    spec: TrainSpec,
    start: u64,
    left: f64,
    shared: Option<u64>,
    blocks: Vec<u32>,
    id: u32,
    /// Time it has stood still, cut off by a failure (ns).
    stalled: u64,
}

/// Alone-run summaries by (step, placement, rank order), shared by the policies' threads.
pub type Summaries = Mutex<BTreeMap<(u32, Vec<u32>, u32), Arc<Summary>>>;

/// Everything one policy's run needs.
pub struct World<'a, 'f> {
    pub topo: &'a mut FabricTopo<'f>,
    pub cfg: &'a ExecConfig,
    pub hier: &'a Hier,
    pub jobs: &'a [Prepared],
    pub outages: &'a [Outage],
    pub backfill: bool,
    pub seed: u64,
    /// Alone-run summaries by (step, placement, rank order), shared by the policies.
    pub summaries: &'a Summaries,
}

/// When every link down at `t` is back (`u64::MAX`: never).
fn down_until(outages: &[Outage], t: u64) -> u64 {
    back_at(outages, t, |_| true)
}

/// When host `x` has every link of its back, from `t` (`u64::MAX`: never).
fn host_back(h: &Hier, outages: &[Outage], x: usize, t: u64) -> u64 {
    let links = &h.hosts[x].links;
    back_at(outages, t, |o| links.binary_search(&(o.arcs[0] / 2)).is_ok())
}

/// When no outage that `counts` holds any more, from `t`: outages that begin as others end
/// extend the wait.
fn back_at(outages: &[Outage], t: u64, counts: impl Fn(&Outage) -> bool) -> u64 {
    let mut end = t;
    loop {
        let next = outages.iter().filter(|o| o.from <= end && end < o.until && counts(o)).map(|o| o.until).max();
        match next {
            Some(u) if u > end => end = u,
            _ => return end,
        }
    }
}

/// Hosts with a link of theirs down at `t`, in order.
fn drained_hosts(h: &Hier, outages: &[Outage], t: u64) -> Vec<usize> {
    let down: std::collections::BTreeSet<u32> =
        outages.iter().filter(|o| o.from <= t && t < o.until).map(|o| o.arcs[0] / 2).collect();
    if down.is_empty() {
        return Vec::new();
    }
    (0..h.hosts.len()).filter(|&x| h.hosts[x].links.iter().any(|l| down.contains(l))).collect()
}

fn down_at(outages: &[Outage], t: u64) -> (Vec<LinkEvent>, u64) {
    let mut ev = Vec::new();
    let mut key = 0u64;
    for (i, o) in outages.iter().enumerate() {
        if o.from <= t && t < o.until {
            for a in o.arcs {
                ev.push(LinkEvent { at: SimTime(0), arc: meshway_sim::LinkId(a), up: false });
            }
            key = mix(key ^ i as u64);
        }
    }
    (ev, key)
}

/// Cross-block bytes per step of `spec` laid out on `hosts` (job rank r on host r / gph).
pub fn cross_block_bytes(h: &Hier, spec: &TrainSpec, hosts: &[u32], order: [Dim; 3]) -> f64 {
    let gph = h.gpus_per_host as usize;
    let (tp, pp, dp) = (spec.tp, spec.pp, spec.dp);
    let rank = |t: u32, p: u32, d: u32| -> usize {
        let c = |dim: Dim| match dim {
            Dim::Tp => (t, tp),
            Dim::Pp => (p, pp),
            Dim::Dp => (d, dp),
        };
        let (a, na) = c(order[0]);
        let (b, nb) = c(order[1]);
        let (x, _) = c(order[2]);
        (a + na * (b + nb * x)) as usize
    };
    let block = |r: usize| h.hosts[hosts[(r / gph).min(hosts.len() - 1)] as usize].block;
    let act = (spec.micro_batch * spec.sequence * spec.hidden * 2) as f64;
    let pp_edge = 2.0 * spec.micro_batches() as f64 * act / f64::from(tp);
    let grads = spec.parameters / f64::from(tp * pp) * spec.grad_bytes as f64;
    let dp_edge = 2.0 * f64::from(dp - 1) / f64::from(dp) * grads;
    let mut cross = 0.0;
    for t in 0..tp {
        for d in 0..dp {
            for p in 0..pp.saturating_sub(1) {
                if block(rank(t, p, d)) != block(rank(t, p + 1, d)) {
                    cross += pp_edge;
                }
            }
        }
        if dp > 1 {
            for p in 0..pp {
                for d in 0..dp {
                    if block(rank(t, p, d)) != block(rank(t, p, (d + 1) % dp)) {
                        cross += dp_edge;
                    }
                }
            }
        }
    }
    cross
}

/// The rank order network-aware placement uses: TP innermost, then whichever of PP and DP
/// sends fewer bytes across blocks on these hosts.
pub fn best_order(h: &Hier, spec: &TrainSpec, ranks: &[u32]) -> [Dim; 3] {
    let hosts: Vec<u32> = ranks.chunks(h.gpus_per_host as usize).map(|c| h.locate(c[0]).0).collect();
    let a = [Dim::Tp, Dim::Pp, Dim::Dp];
    let b = [Dim::Tp, Dim::Dp, Dim::Pp];
    if cross_block_bytes(h, spec, &hosts, b) < cross_block_bytes(h, spec, &hosts, a) {
        b
    } else {
        a
    }
}

/// The blocks a placement touches.
fn blocks_of(h: &Hier, ranks: &[u32]) -> Vec<u32> {
    let mut b: Vec<u32> = ranks.iter().map(|&r| h.hosts[h.locate(r).0 as usize].block).collect();
    b.sort_unstable();
    b.dedup();
    b
}

fn host_list(h: &Hier, ranks: &[u32]) -> String {
    let mut hosts: Vec<u32> = ranks.iter().map(|&r| h.locate(r).0).collect();
    hosts.dedup();
    let names: Vec<String> = hosts.iter().map(|&x| h.hosts[x as usize].name.clone()).collect();
    crate::hostlist::compress(&names)
}

/// The GPUs a job's named hosts give it now, or None when they are busy.
fn given(h: &Hier, free: &Free, job: &Job) -> Result<Option<Vec<u32>>, SchedError> {
    let names = job.hosts.as_ref().ok_or_else(|| SchedError::Job {
        origin: job.origin.clone(),
        key: "hosts",
        message: "missing: policy \"given\" needs every job's hosts".into(),
    })?;
    let gph = h.gpus_per_host;
    let want = if job.gpus <= gph { 1 } else { (job.gpus / gph) as usize };
    if names.len() != want {
        return Err(SchedError::Job {
            origin: job.origin.clone(),
            key: "hosts",
            message: format!("{} GPUs need {want} host(s) of {gph} GPUs, but {} are named", job.gpus, names.len()),
        });
    }
    let mut out = Vec::new();
    for n in names {
        let x = h.host_by_name(n).ok_or_else(|| SchedError::Job {
            origin: job.origin.clone(),
            key: "hosts",
            message: format!(
                "host {n:?} is not in this fabric (hosts are {} to {})",
                h.hosts[0].name,
                h.hosts[h.hosts.len() - 1].name
            ),
        })? as usize;
        if job.gpus <= gph {
            let s = free.slots[x];
            if s.count_ones() < job.gpus {
                return Ok(None);
            }
            out.extend(
                (0..h.hosts[x].ranks.len())
                    .filter(|i| s & (1 << i) != 0)
                    .take(job.gpus as usize)
                    .map(|i| h.hosts[x].ranks[i]),
            );
        } else {
            if !free.host_free(x) {
                return Ok(None);
            }
            out.extend_from_slice(&h.hosts[x].ranks);
        }
    }
    Ok(Some(out))
}

/// Whether `ranks` lie in one host (a job there never touches the scale-out network).
fn one_host(h: &Hier, ranks: &[u32]) -> bool {
    ranks.iter().all(|&r| h.locate(r).0 == h.locate(ranks[0]).0)
}

/// A job's step alone on a placement.
struct Alone {
    ranks: Vec<u32>,
    /// Its step, its rank order chosen for the placement where the policy does that.
    spec: TrainSpec,
    sum: Arc<Summary>,
    /// Its program, when it was written here (across hosts, not yet known).
    fresh: Option<Step>,
}

/// The step of job `p` alone on `ranks`, simulated once per (step, placement, order) and
/// shared by the policies.
fn alone_on(w: &mut World<'_, '_>, policy: Policy, p: &Prepared, ranks: Vec<u32>) -> Result<Alone, SchedError> {
    let h = w.hier;
    let mut spec = p.spec.clone();
    if matches!(policy, Policy::NetworkAware | Policy::ContentionAware)
        && !p.job.order_given
        && p.job.gpus > h.gpus_per_host
    {
        spec.order = best_order(h, &spec, &ranks);
    }
    let order_key = spec.order.iter().fold(0u32, |a, d| a * 3 + *d as u32);
    // A job inside one host never touches the scale-out network: its step is the same on
    // every host, so it is simulated once per slot pattern.
    let one_host = one_host(h, &ranks);
    let placement = if one_host {
        std::iter::once(u32::MAX).chain(ranks.iter().map(|&r| h.locate(r).1)).collect()
    } else {
        ranks.clone()
    };
    let key = (p.spec_key, placement, order_key);
    let lost = || SchedError::Option("a policy thread failed".into());
    let known = w.summaries.lock().map_err(|_| lost())?.get(&key).cloned();
    if let Some(sum) = known {
        return Ok(Alone { ranks, spec, sum, fresh: None });
    }
    let step = cosim::write_step(w.topo, w.cfg, &spec, &ranks, &p.job.name)?;
    let sum = Arc::new(cosim::alone(w.topo, w.cfg, &step, &[], &p.job.name)?);
    w.summaries.lock().map_err(|_| lost())?.insert(key, sum.clone());
    Ok(Alone { ranks, spec, sum, fresh: (!one_host).then_some(step) })
}

/// The step of a placed job with the links in `down` down (a job inside one host does not
/// use them).
fn alone_now(w: &mut World<'_, '_>, p: &Prepared, a: &Alone, down: &[LinkEvent]) -> Result<u64, SchedError> {
    if one_host(w.hier, &a.ranks) {
        return Ok(a.sum.alone);
    }
    let written;
    let step = match &a.fresh {
        Some(s) => s,
        None => {
            written = cosim::write_step(w.topo, w.cfg, &a.spec, &a.ranks, &p.job.name)?;
            &written
        }
    };
    Ok(cosim::alone(w.topo, w.cfg, step, down, &p.job.name)?.alone)
}

/// Runs one policy over the jobs. `progress(done, total)` after each finished job.
pub fn run(
    w: &mut World<'_, '_>,
    policy: Policy,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PolicyOutcome, SchedError> {
    let h = w.hier;
    let jobs = w.jobs;
    let n = jobs.len();
    let mut free = Free::new(h);
    let total_gpus = free.free_gpus();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (w.jobs[i].job.arrival, i));
    let mut next_arrival = 0usize;
    let mut queue: Vec<usize> = Vec::new();
    let mut running: Vec<Running> = Vec::new();
    let mut out: Vec<Option<JobOutcome>> = vec![None; n];
    let mut cache: BTreeMap<(Vec<u32>, u64), Vec<Option<u64>>> = BTreeMap::new();
    let (mut cosims, mut reused, mut estimated) = (0u64, 0u64, 0u64);
    let mut frag_time = 0u64;
    let mut frag_now = false;
    let mut now = 0u64;
    let mut next_id = 0u32;
    let mut done_count = 0usize;
    // An outage that never heals (`until` u64::MAX) has no end to wait for: the jobs it cuts
    // off stay unfinished.
    let mut change_points: Vec<u64> =
        w.outages.iter().flat_map(|o| [o.from, o.until]).filter(|&c| c != u64::MAX).collect();
    change_points.sort_unstable();
    change_points.dedup();
    let mut bytes = TierBytes::default();
    loop {
        // Next event: an arrival, a finish or a failure change.
        let t_arr = order.get(next_arrival).map(|&i| w.jobs[i].job.arrival);
        let t_fin = running
            .iter()
            .filter_map(|r| r.shared.map(|s| now.saturating_add((r.left * s as f64).ceil().max(0.0) as u64)))
            .min();
        let t_chg = change_points.iter().copied().find(|&c| c > now);
        let Some(t) = [t_arr, t_fin, t_chg].into_iter().flatten().min() else { break };
        // Nothing left that can change: queued jobs that can never start, or jobs cut off
        // by a failure that never heals. A link that comes back may free a drained host
        // for a queued job, or let a running job go on.
        if t_arr.is_none() && t_fin.is_none() && (t_chg.is_none() || running.is_empty() && queue.is_empty()) {
            break;
        }
        let dt = t - now;
        if frag_now {
            frag_time += dt;
        }
        for r in &mut running {
            match r.shared {
                Some(s) => r.left -= dt as f64 / s.max(1) as f64,
                None => r.stalled += dt,
            }
        }
        now = t;
        let failure_changed = change_points.binary_search(&now).is_ok();
        // Finishes.
        let mut changed = failure_changed;
        let mut k = 0;
        while k < running.len() {
            let r = &running[k];
            let due = r.shared.is_some_and(|s| r.left * s as f64 <= 0.5);
            if due {
                let r = running.swap_remove(k);
                free.give(h, &r.ranks);
                let p = &w.jobs[r.idx];
                bytes = bytes.plus(&r.sum.bytes.scaled(p.iterations as f64));
                let o = out[r.idx].as_mut().expect("started jobs have an outcome");
                o.finish_s = Some(now as f64 / 1e9);
                let shared = (now - r.start - r.stalled) as f64 / p.iterations.max(1) as f64;
                o.step_shared_ms = Some(shared / 1e6);
                if r.stalled > 0 {
                    let s = r.stalled as f64 / 1e9;
                    o.stalled_s = Some(s);
                    o.note = Some(format!(
                        "stood still {s:.3}s while a failure cut it off (its step and slowdown leave that out)"
                    ));
                }
                o.slowdown = Some((shared / r.sum.alone.max(1) as f64 * 1e4).round() / 1e4);
                changed = true;
                done_count += 1;
                progress(done_count, n);
            } else {
                k += 1;
            }
        }
        while let Some(&i) = order.get(next_arrival) {
            if w.jobs[i].job.arrival > now {
                break;
            }
            queue.push(i);
            next_arrival += 1;
            changed = true;
        }
        if !changed {
            continue;
        }
        // Scheduling pass: priority, then arrival.
        queue.sort_by_key(|&i| (std::cmp::Reverse(w.jobs[i].job.priority), w.jobs[i].job.arrival, i));
        let mut load = vec![0.0f64; h.blocks.len()];
        for r in &running {
            if r.blocks.len() > 1 {
                for &b in &r.blocks {
                    load[b as usize] += w.jobs[r.idx].intensity;
                }
            }
        }
        // EASY backfill: the head job's reservation, as the time it can start and the GPUs it
        // would take then (placed on the GPUs free at that time, as running jobs end as now
        // projected). A GPU count alone let a backfilled job take a host the head needed.
        let mut shadow: Option<(u64, Vec<u32>)> = None;
        // Hosts with a network link down take no job while it is down, as a node health
        // check drains them (a job placed there stalled until the link came back, or for
        // good). Their free GPUs are set aside for the pass.
        let drained = drained_hosts(h, w.outages, now);
        let (down, down_key) = down_at(w.outages, now);
        let set_aside: Vec<(usize, u64)> = drained.iter().map(|&x| (x, free.slots[x])).collect();
        for &(x, _) in &set_aside {
            free.slots[x] = 0;
        }
        // The room on the GPUs free now, and (once the head job has a reservation) on those
        // free and not reserved: a job that does not fit is passed over without asking the
        // policy (which would say no), which keeps a long queue's pass cheap.
        let mut room_free = Room::of(&free);
        let mut free_n = free.free_gpus();
        let mut open: Option<(Free, Room)> = None;
        let mut q = 0;
        frag_now = false;
        while q < queue.len() {
            let i = queue[q];
            let p = &jobs[i];
            let ask = Ask { gpus: p.job.gpus, intensity: p.intensity, seed: mix(w.seed ^ mix(i as u64) ^ now) };
            // Where the policy puts the job on `free` (under `given`, its own hosts if free).
            let place_on = |free: &Free| -> Result<Option<Vec<u32>>, SchedError> {
                if policy == Policy::Given {
                    given(h, free, &p.job)
                } else {
                    Ok(place::choose(policy, h, free, &ask, &load))
                }
            };
            let gpus = p.job.gpus;
            // Behind the head job's reservation a job may take the GPUs the head will take
            // only if it ends before the head starts, at its step time alone on those GPUs:
            // the reference step let a job placed across leaves run past it. A job that runs
            // past even at its reference step is placed off them at once, as EASY does
            // (`open` is the free GPUs less the reserved ones); one that ends in time there is
            // timed on the GPUs it gets.
            let ends_by = |step: u64| {
                shadow.as_ref().is_none_or(|(at, _)| now.saturating_add(p.iterations.saturating_mul(step)) <= *at)
            };
            let in_open = |ranks: &[u32], o: &Free| {
                ranks.iter().all(|&r| {
                    let (x, i) = h.locate(r);
                    o.slots[x as usize] & (1u64 << i) != 0
                })
            };
            let off_reservation = |w: &mut World<'_, '_>| -> Result<Option<Alone>, SchedError> {
                match &open {
                    Some((o, room)) if policy != Policy::Given && room.fits(h, gpus) => {
                        match place::choose(policy, h, o, &ask, &load) {
                            Some(r) => Ok(Some(alone_on(w, policy, p, r)?)),
                            None => Ok(None),
                        }
                    }
                    _ => Ok(None),
                }
            };
            // Whether the job fits the free GPUs, reservation aside (else it waits on
            // scattered GPUs: fragmentation).
            let picked;
            let chosen = if policy != Policy::Given && !ends_by(p.reference_ns) {
                picked = room_free.fits(h, gpus);
                off_reservation(w)?
            } else {
                let pick = if policy != Policy::Given && !room_free.fits(h, gpus) { None } else { place_on(&free)? };
                picked = pick.is_some();
                match pick {
                    None => None,
                    Some(ranks) => {
                        let a = alone_on(w, policy, p, ranks)?;
                        let kept_off = open.as_ref().is_some_and(|(o, _)| !in_open(&a.ranks, o));
                        // With links down now, timed as it would run now (a job judged on
                        // the whole fabric ran 5% slower on degraded uplinks and started the
                        // head 53 s late). A failure still to come is not foreseen.
                        if kept_off
                            && (!ends_by(a.sum.alone) || !down.is_empty() && !ends_by(alone_now(w, p, &a, &down)?))
                        {
                            off_reservation(w)?
                        } else {
                            Some(a)
                        }
                    }
                }
            };
            match chosen {
                Some(Alone { ranks, spec, sum, fresh }) => {
                    free.take(h, &ranks);
                    room_free = Room::of(&free);
                    free_n = free.free_gpus();
                    if let Some((o, room)) = &mut open {
                        o.take(h, &ranks);
                        *room = Room::of(o);
                    }
                    let blocks = blocks_of(h, &ranks);
                    for &b in &blocks {
                        if blocks.len() > 1 {
                            load[b as usize] += p.intensity;
                        }
                    }
                    let mut pods: Vec<u32> = blocks.iter().map(|&b| h.blocks[b as usize].pod).collect();
                    pods.dedup();
                    out[i] = Some(JobOutcome {
                        start_s: Some(now as f64 / 1e9),
                        queue_s: Some((now - p.job.arrival) as f64 / 1e9),
                        step_alone_ms: Some(sum.alone as f64 / 1e6),
                        hosts: host_list(h, &ranks),
                        blocks: blocks.iter().map(|&b| h.blocks[b as usize].name.clone()).collect(),
                        pods: pods.len(),
                        ..JobOutcome::unstarted(p)
                    });
                    running.push(Running {
                        idx: i,
                        ranks,
                        sum,
                        step: fresh,
                        spec,
                        start: now,
                        left: p.iterations as f64,
                        shared: None,
                        blocks,
                        id: next_id,
                        stalled: 0,
                    });
                    next_id += 1;
                    queue.remove(q);
                }
                _ => {
                    // Under `given` a job waits for the hosts it names, wherever GPUs are
                    // free: that is not fragmentation.
                    // A job kept off the head job's reservation is waiting for that job,
                    // not for scattered GPUs: it counts only if it would not fit the free
                    // GPUs without the reservation either.
                    if policy != Policy::Given && free_n >= u64::from(gpus) && !picked {
                        frag_now = true;
                    }
                    if !w.backfill {
                        break;
                    }
                    if shadow.is_none() {
                        // When can the head job be placed, running jobs ending as now
                        // projected and drained hosts back when their links return, and on
                        // which GPUs? (Without the hosts' return, a head that needed a
                        // drained host had no reservation, and a 10-hour job backfilled
                        // onto its hosts.) A job standing still goes on when every link
                        // down now is back.
                        let resume = down_until(w.outages, now);
                        let mut ends: Vec<(u64, usize, bool)> = running
                            .iter()
                            .enumerate()
                            .filter_map(|(k, r)| {
                                let (from, s) = match r.shared {
                                    Some(s) => (now, s),
                                    None if resume != u64::MAX => (resume, r.sum.alone),
                                    None => return None,
                                };
                                Some((from.saturating_add((r.left * s.max(1) as f64) as u64), k, true))
                            })
                            .collect();
                        let back: Vec<u64> = set_aside.iter().map(|&(x, _)| host_back(h, w.outages, x, now)).collect();
                        ends.extend(back.iter().enumerate().map(|(j, &t)| (t, j, false)));
                        ends.sort_unstable();
                        let mut then = free.clone();
                        let mut room = Room::of(&then);
                        let mut reserved = Vec::new();
                        let mut at = u64::MAX;
                        // GPUs of drained hosts that come free before their host is back.
                        let mut pending = vec![0u64; set_aside.len()];
                        for (e, k, is_job) in ends {
                            let freed: Vec<u32> = if is_job {
                                running[k]
                                    .ranks
                                    .iter()
                                    .copied()
                                    .filter(|&r| {
                                        let (x, i) = h.locate(r);
                                        match set_aside.iter().position(|&(y, _)| y == x as usize) {
                                            Some(j) if back[j] > e => {
                                                pending[j] |= 1u64 << i;
                                                false
                                            }
                                            _ => true,
                                        }
                                    })
                                    .collect()
                            } else {
                                let (x, bits) = set_aside[k];
                                let bits = bits | pending[k];
                                let ranks = &h.hosts[x].ranks;
                                (0..ranks.len()).filter(|&i| bits & (1u64 << i) != 0).map(|i| ranks[i]).collect()
                            };
                            if e == u64::MAX {
                                break;
                            }
                            room.give(h, &mut then, &freed);
                            if policy != Policy::Given && !room.fits(h, p.job.gpus) {
                                continue;
                            }
                            if let Some(r) = place_on(&then)? {
                                reserved = r;
                                at = e;
                                break;
                            }
                        }
                        let mut o = free.clone();
                        o.take(h, &reserved);
                        let room = Room::of(&o);
                        open = Some((o, room));
                        shadow = Some((at, reserved));
                    }
                    q += 1;
                }
            }
        }
        for &(x, bits) in &set_aside {
            free.slots[x] |= bits;
        }
        // Shared step times: components of running jobs linked by a shared arc.
        let m = running.len();
        let mut parent: Vec<usize> = (0..m).collect();
        fn root(p: &mut [usize], x: usize) -> usize {
            let mut r = x;
            while p[r] != r {
                r = p[r];
            }
            p[x] = r;
            r
        }
        let mut owner: BTreeMap<u32, usize> = BTreeMap::new();
        for (k, r) in running.iter().enumerate() {
            for &(a, _) in &r.sum.arcs {
                match owner.get(&a) {
                    None => {
                        owner.insert(a, k);
                    }
                    Some(&o) => {
                        let (x, y) = (root(&mut parent, o), root(&mut parent, k));
                        if x != y {
                            parent[x.max(y)] = x.min(y);
                        }
                    }
                }
            }
        }
        let mut comps: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for k in 0..m {
            let r = root(&mut parent, k);
            comps.entry(r).or_default().push(k);
        }
        for members in comps.values() {
            let key: Vec<u32> = members.iter().map(|&k| running[k].id).collect();
            let ck = (key, down_key);
            let times = if let Some(t) = cache.get(&ck) {
                reused += 1;
                t.clone()
            } else if members.len() == 1
                && (down.is_empty() || running[members[0]].ranks.len() <= h.gpus_per_host as usize)
            {
                let a = running[members[0]].sum.alone;
                vec![(a != u64::MAX).then_some(a)]
            } else {
                let sums: Vec<&Summary> = members.iter().map(|&k| running[k].sum.as_ref()).collect();
                let t = if cosim::within_budget(&sums) {
                    cosims += 1;
                    for &k in members {
                        if running[k].step.is_none() {
                            let r = &running[k];
                            let name = &w.jobs[r.idx].job.name;
                            let step = cosim::write_step(w.topo, w.cfg, &r.spec, &r.ranks, name)?;
                            running[k].step = Some(step);
                        }
                    }
                    let sums: Vec<&Summary> = members.iter().map(|&k| running[k].sum.as_ref()).collect();
                    let steps: Vec<&Step> = members.iter().filter_map(|&k| running[k].step.as_ref()).collect();
                    cosim::together(w.topo, w.cfg, &sums, &steps, &down)?
                } else {
                    estimated += 1;
                    cosim::estimate(&sums)
                };
                cache.insert(ck, t.clone());
                t
            };
            for (&k, t) in members.iter().zip(times) {
                running[k].shared = t;
            }
        }
        // Forget components that no longer exist (ids are never reused).
        if cache.len() > 4096 {
            let live: std::collections::BTreeSet<u32> = running.iter().map(|r| r.id).collect();
            cache.retain(|k, _| k.0.iter().all(|id| live.contains(id)));
        }
    }
    // Jobs still running (stalled) or never started. A stalled job moved the bytes of the
    // iterations it ran before the failure (a job that trained 30 minutes across leaves
    // read 0 B on every tier, which starred its policy as the lightest on the network).
    for r in &running {
        let p = &w.jobs[r.idx];
        let done = (p.iterations as f64 - r.left).clamp(0.0, p.iterations as f64);
        bytes = bytes.plus(&r.sum.bytes.scaled(done));
        if let Some(o) = out[r.idx].as_mut() {
            o.note = Some(format!(
                "did not finish: a failure cut it off after {} of {} iterations and nothing restored the link",
                done.floor() as u64,
                p.iterations
            ));
        }
    }
    let mut jobs_out = Vec::with_capacity(n);
    // Hosts a failure drained for good by the end of the run.
    let gone = drained_hosts(h, w.outages, now.min(u64::MAX - 1)).len();
    for (i, o) in out.into_iter().enumerate() {
        let p = &w.jobs[i];
        jobs_out.push(o.unwrap_or_else(|| JobOutcome {
            note: Some(format!(
                "never started: {} GPU{} {}",
                p.job.gpus,
                if p.job.gpus == 1 { "" } else { "s" },
                if u64::from(p.job.gpus) > total_gpus {
                    "is more than the fabric has".to_string()
                } else if gone > 0 {
                    format!(
                        "never came free in that shape ({gone} host{} stayed drained: a failure took a link of {} down for good)",
                        if gone == 1 { "" } else { "s" },
                        if gone == 1 { "its" } else { "theirs" }
                    )
                } else {
                    "never came free in that shape".to_string()
                }
            )),
            ..JobOutcome::unstarted(p)
        }));
    }
    Ok(summarize(policy, jobs_out, total_gpus, frag_time, bytes, [cosims, reused, estimated]))
}

fn summarize(
    policy: Policy,
    jobs: Vec<JobOutcome>,
    total_gpus: u64,
    frag_time: u64,
    bytes: TierBytes,
    [cosims, reused, estimated]: [u64; 3],
) -> PolicyOutcome {
    let finished: Vec<&JobOutcome> = jobs.iter().filter(|j| j.finish_s.is_some()).collect();
    // The schedule's span runs from the first arrival (a trace that starts at 300 days read
    // as 0% goodput) to the last finish.
    let first = jobs.iter().map(|j| j.arrival_s).fold(f64::INFINITY, f64::min);
    let first = if first.is_finite() { first } else { 0.0 };
    let last = finished.iter().filter_map(|j| j.finish_s).fold(first, f64::max);
    let makespan = if finished.is_empty() { 0.0 } else { last - first };
    // The run's last known time: jobs that never finish hold their GPUs, and jobs that
    // never start wait, at least until then.
    let end = jobs.iter().flat_map(|j| [Some(j.arrival_s), j.start_s, j.finish_s]).flatten().fold(last, f64::max);
    let mut jct: Vec<f64> = finished.iter().map(|j| j.finish_s.unwrap_or(0.0) - j.arrival_s).collect();
    jct.sort_by(f64::total_cmp);
    let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    let p95 =
        if jct.is_empty() { 0.0 } else { jct[((jct.len() as f64 * 0.95).ceil() as usize).clamp(1, jct.len()) - 1] };
    let useful: f64 = finished.iter().map(|j| f64::from(j.gpus) * j.iterations as f64 * j.reference_ms / 1e3).sum();
    // GPUs held within the span: finished jobs start to finish; jobs that started and never
    // finished, start to the end of the span.
    let gpu_s: f64 = jobs
        .iter()
        .filter_map(|j| j.start_s.map(|st| f64::from(j.gpus) * (j.finish_s.unwrap_or(last).min(last) - st).max(0.0)))
        .sum();
    // A job that never started waited at least until the run's end.
    let queue: Vec<f64> = jobs.iter().map(|j| j.queue_s.unwrap_or((end - j.arrival_s).max(0.0))).collect();
    let slow: Vec<f64> = finished.iter().filter_map(|j| j.slowdown).collect();
    let r4 = |x: f64| (x * 1e4).round() / 1e4;
    let r3 = |x: f64| (x * 1e3).round() / 1e3;
    PolicyOutcome {
        policy,
        utilization: if makespan > 0.0 { r4(gpu_s / (total_gpus as f64 * makespan)) } else { 0.0 },
        goodput: if makespan > 0.0 { r4(useful / (total_gpus as f64 * makespan)) } else { 0.0 },
        mean_jct_s: r3(mean(&jct)),
        p95_jct_s: r3(p95),
        makespan_s: r3(makespan),
        mean_queue_s: r3(mean(&queue)),
        mean_slowdown: r4(mean(&slow)),
        max_slowdown: r4(slow.iter().copied().fold(0.0, f64::max)),
        fragmentation: if makespan > 0.0 { r4(frag_time as f64 / 1e9 / makespan) } else { 0.0 },
        bytes: TierTotals {
            nic_bytes: bytes.nic,
            leaf_spine_bytes: bytes.leaf_spine,
            spine_core_bytes: bytes.spine_core,
            dci_bytes: bytes.dci,
        },
        spanning_jobs: jobs.iter().filter(|j| j.blocks.len() > 1).count(),
        unfinished: jobs.len() - finished.len(),
        cosims,
        cosims_reused: reused,
        cosims_estimated: estimated,
        jobs,
    }
}
