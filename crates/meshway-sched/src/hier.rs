//! The fabric as a scheduler sees it: hosts, the blocks of hosts that share their leaf
//! switches, and the pods of blocks that share their spines.
//!
//! - A **block** is a connected group of GPUs and switches up to the leaf tier (level 1):
//!   the hosts of one leaf in a leaf-spine, the hosts of a rail group (its rail leaves) in a
//!   rail-optimized fabric. Traffic between hosts of a block never leaves its leaves.
//! - A **pod** is the same up to the spine tier (level 2): a fat-tree pod, or the whole
//!   two-tier fabric. Traffic inside a pod never reaches the cores.
//! - DCI links join nothing: each site's pods stay apart.

use meshway_fabric::{Fabric, LinkClass, NodeId};
use meshway_sim::topo::{FabricTopo, Topology};

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// Global ranks of its GPUs, local index order.
    pub ranks: Vec<u32>,
    pub block: u32,
    pub pod: u32,
    pub site: u32,
    /// Links from its GPUs to the scale-out network (not to NVSwitches), sorted.
    pub links: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub hosts: Vec<u32>,
    /// Blocks of a pod (empty for a block).
    pub blocks: Vec<u32>,
    pub pod: u32,
}

#[derive(Debug, Clone)]
pub struct Hier {
    pub hosts: Vec<Host>,
    pub blocks: Vec<Group>,
    pub pods: Vec<Group>,
    /// GPUs of the largest host.
    pub gpus_per_host: u32,
    pub sites: Vec<String>,
    /// Per global rank: its host and its index in the host.
    rank_at: Vec<(u32, u32)>,
}

fn find(p: &mut [u32], x: u32) -> u32 {
    let mut r = x;
    while p[r as usize] != r {
        r = p[r as usize];
    }
    let mut y = x;
    while p[y as usize] != r {
        let n = p[y as usize];
        p[y as usize] = r;
        y = n;
    }
    r
}

/// Components of the fabric over links whose both ends sit at most at `level`.
fn components(f: &Fabric, level: u8) -> Vec<u32> {
    let mut p: Vec<u32> = (0..f.nodes.len() as u32).collect();
    for l in &f.links {
        if l.class == LinkClass::Dci || f.level(l.a) > level || f.level(l.b) > level {
            continue;
        }
        let (a, b) = (find(&mut p, l.a.0), find(&mut p, l.b.0));
        if a != b {
            p[a.max(b) as usize] = a.min(b);
        }
    }
    (0..f.nodes.len() as u32).map(|x| find(&mut p, x)).collect()
}

/// Host names: `prefix` and a number zero-padded to the width of the last (at least 3:
/// node001), or the fabric's own host names ("host-3") when `prefix` is "fabric".
pub fn host_name(prefix: &str, i: usize, n: usize) -> String {
    if prefix == "fabric" {
        return format!("host-{i}");
    }
    let width = n.saturating_sub(1).to_string().len().max(3);
    format!("{prefix}{:0width$}", i + 1)
}

impl Hier {
    pub fn new(f: &Fabric, topo: &FabricTopo<'_>, prefix: &str) -> Hier {
        let n = topo.ranks();
        let mut host_ranks: Vec<Vec<u32>> = Vec::new();
        for r in 0..n as u32 {
            let h = topo.host_of(r) as usize;
            if host_ranks.len() <= h {
                host_ranks.resize(h + 1, Vec::new());
            }
            host_ranks[h].push(r);
        }
        let c1 = components(f, 1);
        let c2 = components(f, 2);
        let mut block_of_root: std::collections::BTreeMap<u32, u32> = Default::default();
        let mut pod_of_root: std::collections::BTreeMap<u32, u32> = Default::default();
        let mut blocks: Vec<Group> = Vec::new();
        let mut pods: Vec<Group> = Vec::new();
        let nh = host_ranks.len();
        let mut hosts = Vec::with_capacity(nh);
        for (h, ranks) in host_ranks.into_iter().enumerate() {
            let node: NodeId = topo.node_of(ranks[0]);
            let pr = c2[node.idx()];
            let pod = *pod_of_root.entry(pr).or_insert_with(|| {
                pods.push(Group { name: String::new(), hosts: Vec::new(), blocks: Vec::new(), pod: pods.len() as u32 });
                (pods.len() - 1) as u32
            });
            let br = c1[node.idx()];
            let block = *block_of_root.entry(br).or_insert_with(|| {
                blocks.push(Group { name: String::new(), hosts: Vec::new(), blocks: Vec::new(), pod });
                pods[pod as usize].blocks.push((blocks.len() - 1) as u32);
                (blocks.len() - 1) as u32
            });
            blocks[block as usize].hosts.push(h as u32);
            pods[pod as usize].hosts.push(h as u32);
            let site = u32::from(f.node(node).site);
            let mut links: Vec<u32> = ranks
                .iter()
                .flat_map(|&r| f.neighbors(topo.node_of(r)))
                .filter(|&&(v, _)| !f.is_nvswitch(v) && !f.node(v).is_gpu())
                .map(|&(_, l)| l.0)
                .collect();
            links.sort_unstable();
            links.dedup();
            hosts.push(Host { name: host_name(prefix, h, nh), ranks, block, pod, site, links });
        }
        // Names: the one leaf of a block, else the fabric's group with exactly its GPUs,
        // else a number.
        let group_named = |gpus: &[NodeId]| -> Option<String> {
            let mut want: Vec<NodeId> = gpus.to_vec();
            want.sort_unstable();
            f.groups
                .iter()
                .find(|g| {
                    let mut have: Vec<NodeId> = g.nodes.iter().copied().filter(|x| f.node(*x).is_gpu()).collect();
                    have.sort_unstable();
                    have == want
                })
                .map(|g| g.name.clone())
        };
        let gpus_of = |hs: &[u32]| -> Vec<NodeId> {
            hs.iter().flat_map(|&h| hosts[h as usize].ranks.iter().map(|&r| topo.node_of(r))).collect()
        };
        for (i, b) in blocks.iter_mut().enumerate() {
            let mut leaves: Vec<NodeId> = gpus_of(&b.hosts)
                .iter()
                .flat_map(|&g| f.neighbors(g).iter().map(|&(v, _)| v))
                .filter(|&v| f.level(v) == 1 && !f.is_nvswitch(v))
                .collect();
            leaves.sort_unstable();
            leaves.dedup();
            b.name = match leaves.as_slice() {
                [one] => f.node(*one).name.clone(),
                _ => group_named(&gpus_of(&b.hosts)).unwrap_or_else(|| format!("block-{i}")),
            };
        }
        let single = pods.len() == 1;
        for (i, p) in pods.iter_mut().enumerate() {
            p.name = if single {
                "fabric".to_string()
            } else {
                group_named(&gpus_of(&p.hosts)).unwrap_or_else(|| format!("pod-{i}"))
            };
        }
        let gpus_per_host = hosts.iter().map(|h| h.ranks.len() as u32).max().unwrap_or(1);
        let sites = f.sites.clone();
        let mut rank_at = vec![(0, 0); n];
        for (i, h) in hosts.iter().enumerate() {
            for (k, &r) in h.ranks.iter().enumerate() {
                rank_at[r as usize] = (i as u32, k as u32);
            }
        }
        Hier { hosts, blocks, pods, gpus_per_host, sites, rank_at }
    }

    /// The host of a global rank and its index inside the host.
    pub fn locate(&self, rank: u32) -> (u32, u32) {
        self.rank_at[rank as usize]
    }

    /// The host with this name.
    pub fn host_by_name(&self, name: &str) -> Option<u32> {
        self.hosts.iter().position(|h| h.name == name).map(|i| i as u32)
    }
}
