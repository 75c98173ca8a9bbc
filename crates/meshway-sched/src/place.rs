//! Placement policies: which GPUs a job gets, in the job's rank order.
//!
//! A job of at most one host's GPUs takes GPU slots of one host; a bigger job takes whole
//! hosts. Every policy sees the same free GPUs; they differ in which they choose.

use crate::hier::Hier;
use meshway_sim::topo::mix;
use serde::Serialize;

/// A named placement strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The lowest-numbered hosts with room.
    FirstFit,
    /// Hosts with room drawn at random (seeded).
    Random,
    /// Slurm's tree semantics: the lowest switch level (block, then pod, then the fabric)
    /// that holds the job, best fit among them, fewest blocks when it must span.
    Topology,
    /// Topology, plus a rank order that keeps the heavier of the pipeline and data-parallel
    /// traffic inside blocks.
    NetworkAware,
    /// Network-aware, plus: a job that must span blocks goes where running
    /// communication-heavy jobs load the uplinks least, weighted by its own intensity.
    ContentionAware,
    /// The hosts each job names (an existing placement, scored).
    Given,
}

impl Policy {
    pub const ALL: [Policy; 5] =
        [Policy::FirstFit, Policy::Random, Policy::Topology, Policy::NetworkAware, Policy::ContentionAware];

    pub fn name(self) -> &'static str {
        match self {
            Policy::FirstFit => "first-fit",
            Policy::Random => "random",
            Policy::Topology => "topology",
            Policy::NetworkAware => "network-aware",
            Policy::ContentionAware => "contention-aware",
            Policy::Given => "given",
        }
    }

    pub fn parse(s: &str) -> Option<Policy> {
        Policy::ALL.into_iter().chain([Policy::Given]).find(|p| p.name() == s)
    }
}

/// Free GPU slots per host.
#[derive(Debug, Clone)]
pub struct Free {
    /// Bit `i` set: local GPU `i` of the host is free.
    pub slots: Vec<u64>,
    pub full: Vec<u64>,
}

impl Free {
    pub fn new(h: &Hier) -> Free {
        let full: Vec<u64> =
            h.hosts.iter().map(|x| if x.ranks.len() >= 64 { u64::MAX } else { (1u64 << x.ranks.len()) - 1 }).collect();
        Free { slots: full.clone(), full }
    }
    pub fn host_free(&self, host: usize) -> bool {
        self.slots[host] == self.full[host]
    }
    pub fn free_gpus(&self) -> u64 {
        self.slots.iter().map(|s| u64::from(s.count_ones())).sum()
    }
    pub fn take(&mut self, h: &Hier, ranks: &[u32]) {
        for &r in ranks {
            let (host, i) = h.locate(r);
            self.slots[host as usize] &= !(1u64 << i);
        }
    }
    pub fn give(&mut self, h: &Hier, ranks: &[u32]) {
        for &r in ranks {
            let (host, i) = h.locate(r);
            self.slots[host as usize] |= 1u64 << i;
        }
    }
}

/// Room on a set of free GPUs as [`choose`] sees it: the whole free hosts and the most free
/// slots on one host. Every policy but `given` places a job exactly when it fits this room
/// (one host with enough free slots, or enough whole free hosts), so a scheduler can ask
/// whether a job would be placed without placing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    pub whole: usize,
    pub most: u32,
}

impl Room {
    pub fn of(free: &Free) -> Room {
        let whole = (0..free.slots.len()).filter(|&x| free.host_free(x)).count();
        Room { whole, most: free.slots.iter().map(|s| s.count_ones()).max().unwrap_or(0) }
    }
    /// Gives `ranks` (GPUs that are not free) back to `free`, keeping the room up to date:
    /// a host they are on was not whole before.
    pub fn give(&mut self, h: &Hier, free: &mut Free, ranks: &[u32]) {
        free.give(h, ranks);
        let mut hosts: Vec<usize> = ranks.iter().map(|&r| h.locate(r).0 as usize).collect();
        hosts.sort_unstable();
        hosts.dedup();
        for x in hosts {
            self.most = self.most.max(free.slots[x].count_ones());
            self.whole += usize::from(free.host_free(x));
        }
    }
    /// Whether [`choose`] places a job of `gpus` here (any policy but `given`).
    pub fn fits(&self, h: &Hier, gpus: u32) -> bool {
        let gph = h.gpus_per_host;
        if gpus <= gph {
            self.most >= gpus
        } else {
            self.whole >= (gpus / gph) as usize
        }
    }
}

/// What a policy knows about a job besides its size.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub gpus: u32,
    /// Bytes per second the job would send across blocks if spread (its communication
    /// intensity), for contention-aware placement.
    pub intensity: f64,
    pub seed: u64,
}

/// The uplink load of each block: the summed intensity of running jobs that span it.
pub type Load = Vec<f64>;

/// Chooses GPUs for a job, or None when it does not fit now. The result lists whole hosts'
/// GPUs host by host (or one host's slots), in the order the policy wants ranks laid out.
pub fn choose(policy: Policy, h: &Hier, free: &Free, ask: &Ask, load: &Load) -> Option<Vec<u32>> {
    let gph = h.gpus_per_host;
    if ask.gpus <= gph {
        return small(policy, h, free, ask);
    }
    let need = (ask.gpus / gph) as usize;
    let free_hosts: Vec<u32> = (0..h.hosts.len() as u32).filter(|&x| free.host_free(x as usize)).collect();
    if free_hosts.len() < need {
        return None;
    }
    let hosts: Vec<u32> = match policy {
        Policy::FirstFit | Policy::Given => free_hosts[..need].to_vec(),
        Policy::Random => {
            // A seeded partial Fisher-Yates shuffle.
            let mut v = free_hosts;
            let mut z = ask.seed;
            for i in 0..need {
                z = mix(z);
                let j = i + (z % (v.len() - i) as u64) as usize;
                v.swap(i, j);
            }
            let mut v = v[..need].to_vec();
            v.sort_unstable();
            v
        }
        Policy::Topology | Policy::NetworkAware | Policy::ContentionAware => tree(policy, h, free, need, ask, load)?,
    };
    Some(hosts.iter().flat_map(|&x| h.hosts[x as usize].ranks.iter().copied()).collect())
}

/// One host's slots: the first host with room (first-fit), a random one, or the fullest
/// host with room in the fullest block (best fit, the others).
fn small(policy: Policy, h: &Hier, free: &Free, ask: &Ask) -> Option<Vec<u32>> {
    let fits: Vec<usize> = (0..h.hosts.len()).filter(|&x| free.slots[x].count_ones() >= ask.gpus).collect();
    let host = match policy {
        Policy::FirstFit | Policy::Given => *fits.first()?,
        Policy::Random => {
            if fits.is_empty() {
                return None;
            }
            fits[(mix(ask.seed) % fits.len() as u64) as usize]
        }
        _ => {
            let block_free = block_free_gpus(h, free);
            *fits.iter().min_by_key(|&&x| (free.slots[x].count_ones(), block_free[h.hosts[x].block as usize], x))?
        }
    };
    let mut out = Vec::with_capacity(ask.gpus as usize);
    let s = free.slots[host];
    for i in 0..h.hosts[host].ranks.len() {
        if out.len() == ask.gpus as usize {
            break;
        }
        if s & (1u64 << i) != 0 {
            out.push(h.hosts[host].ranks[i]);
        }
    }
    Some(out)
}

fn block_free_gpus(h: &Hier, free: &Free) -> Vec<u64> {
    h.blocks.iter().map(|b| b.hosts.iter().map(|&x| u64::from(free.slots[x as usize].count_ones())).sum()).collect()
}

/// Slurm tree semantics: the smallest group that holds the job, best fit; when it spans
/// blocks, whole blocks' free hosts in descending count (fewest blocks). Contention-aware
/// weighs candidate blocks by their uplink load.
fn tree(policy: Policy, h: &Hier, free: &Free, need: usize, ask: &Ask, load: &Load) -> Option<Vec<u32>> {
    let free_in =
        |hosts: &[u32]| -> Vec<u32> { hosts.iter().copied().filter(|&x| free.host_free(x as usize)).collect() };
    // One block.
    let blocks: Vec<(usize, Vec<u32>)> =
        h.blocks.iter().enumerate().map(|(i, b)| (i, free_in(&b.hosts))).filter(|(_, f)| f.len() >= need).collect();
    if let Some((_, f)) = blocks.iter().min_by_key(|(i, f)| (f.len(), *i)) {
        return Some(f[..need].to_vec());
    }
    // One pod, else the whole fabric: blocks in an order, whole blocks' free hosts first.
    let contention = policy == Policy::ContentionAware;
    let pick = |block_ids: &[u32]| -> Option<(f64, usize, Vec<u32>)> {
        let mut bs: Vec<(u32, Vec<u32>)> = block_ids
            .iter()
            .map(|&b| (b, free_in(&h.blocks[b as usize].hosts)))
            .filter(|(_, f)| !f.is_empty())
            .collect();
        let total: usize = bs.iter().map(|b| b.1.len()).sum();
        if total < need {
            return None;
        }
        if contention {
            // The set of blocks with the least summed uplink load that holds the job (fewest
            // blocks among equals): a 0/1 knapsack over the blocks, capacity capped at `need`.
            let chosen = least_loaded_blocks(&bs, need, load);
            bs = chosen.into_iter().map(|k| bs[k].clone()).collect();
            bs.sort_by(|a, b| {
                load[a.0 as usize].total_cmp(&load[b.0 as usize]).then(b.1.len().cmp(&a.1.len())).then(a.0.cmp(&b.0))
            });
        } else {
            bs.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        }
        let mut out = Vec::with_capacity(need);
        let mut cost = 0.0;
        let mut used = 0;
        for (b, f) in &bs {
            if out.len() == need {
                break;
            }
            let k = (need - out.len()).min(f.len());
            out.extend_from_slice(&f[..k]);
            cost += load[*b as usize] * ask.intensity;
            used += 1;
        }
        Some((cost, used, out))
    };
    let pods: Vec<(f64, usize, usize, Vec<u32>)> = h
        .pods
        .iter()
        .filter_map(|p| {
            let spare = free_in(&p.hosts).len();
            pick(&p.blocks).map(|(c, used, v)| (c, used, spare, v))
        })
        .collect();
    let best = if contention {
        pods.into_iter().min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)))
    } else {
        pods.into_iter().min_by(|a, b| a.1.cmp(&b.1).then(a.2.cmp(&b.2)))
    };
    if let Some((_, _, _, v)) = best {
        return Some(v);
    }
    let all: Vec<u32> = (0..h.blocks.len() as u32).collect();
    pick(&all).map(|x| x.2)
}

/// Indices into `bs` (block, free hosts) of the blocks whose free hosts hold `need` at the
/// least summed `load`, fewest blocks among equal loads.
pub fn least_loaded_blocks(bs: &[(u32, Vec<u32>)], need: usize, load: &[f64]) -> Vec<usize> {
    let n = bs.len();
    let inf = (f64::INFINITY, usize::MAX);
    // table[i][c]: the least (load, blocks) over the first i blocks reaching capacity c
    // (capped at need).
    let mut chosen = Vec::new();
    let mut c = need;
    let mut table = vec![vec![inf; need + 1]; n + 1];
    table[0][0] = (0.0, 0);
    for (i, (b, f)) in bs.iter().enumerate() {
        let l = load[*b as usize];
        table[i + 1] = table[i].clone();
        for cap in 0..=need {
            if table[i][cap].0.is_infinite() {
                continue;
            }
            let to = (cap + f.len()).min(need);
            let cand = (table[i][cap].0 + l, table[i][cap].1 + 1);
            if cand.0 < table[i + 1][to].0 || (cand.0 == table[i + 1][to].0 && cand.1 < table[i + 1][to].1) {
                table[i + 1][to] = cand;
            }
        }
    }
    for i in (0..n).rev() {
        if table[i + 1][c] == table[i][c] {
            continue;
        }
        // Block i was taken: find the capacity it came from.
        let (b, f) = &bs[i];
        let l = load[*b as usize];
        let from = (0..=need).find(|&cap| {
            !table[i][cap].0.is_infinite()
                && (cap + f.len()).min(need) == c
                && (table[i][cap].0 + l, table[i][cap].1 + 1) == table[i + 1][c]
        });
        match from {
            Some(cap) => {
                chosen.push(i);
                c = cap;
            }
            None => break,
        }
    }
    chosen.reverse();
    chosen
}
