//! Equal-cost shortest paths. GPUs never forward traffic (only switches do), so paths between
//! hosts run up and down the switch tiers; GPUs of one host reach each other over their
//! NVLink switch. In a Clos every shortest path is an up-down path.
//!
//! Path counts are computed by dynamic programming over the BFS order, never by enumerating
//! paths, and saturate at `u64::MAX`.

use crate::catalog::Catalog;
use crate::model::{Fabric, LinkClass, LinkId, NodeId, NodeKind};
use meshway_units::{BitsPerSec, Bytes, Nanos};

const UNREACHED: u16 = u16::MAX;

/// Shortest-path facts from one source to every node.
#[derive(Debug, Clone)]
pub struct ShortestPaths {
    pub source: NodeId,
    /// Links on a shortest path (u16::MAX when unreachable).
    pub dist: Vec<u16>,
    /// Number of equal-cost shortest paths.
    pub count: Vec<u64>,
    /// Zero-load one-way latency along a fastest shortest path: switch latencies plus fibre
    /// propagation (without serialization).
    pub latency: Vec<Nanos>,
    /// Bottleneck link rate along that path.
    pub bottleneck: Vec<BitsPerSec>,
}

/// Per-node switch latency (zero for GPUs).
///
/// The one source of switch latency for plan, simulate and testbed: the scenario's (or its
/// transport's) for network switches where the fabric carries one, else the switch model's.
/// NVLink switches always keep their model's.
pub fn switch_latencies(f: &Fabric, cat: &Catalog) -> Vec<Nanos> {
    f.nodes
        .iter()
        .enumerate()
        .map(|(i, n)| match n.kind {
            NodeKind::Switch { model, .. } => {
                let given = if f.is_nvswitch(NodeId(i as u32)) { None } else { f.site_switch_latency(n.site) };
                given.unwrap_or_else(|| cat.switch.get(model as usize).map(|m| m.latency).unwrap_or_default())
            }
            NodeKind::Gpu { .. } => Nanos::ZERO,
        })
        .collect()
}

impl ShortestPaths {
    /// BFS from `src` over the fabric; `sw_lat` from [`switch_latencies`].
    pub fn from(f: &Fabric, src: NodeId, sw_lat: &[Nanos], per_km: Nanos) -> ShortestPaths {
        let n = f.nodes.len();
        let mut dist = vec![UNREACHED; n];
        let mut count = vec![0u64; n];
        let mut latency = vec![Nanos::MAX; n];
        let mut bottleneck = vec![BitsPerSec(0); n];
        let mut queue = Vec::with_capacity(n);
        dist[src.idx()] = 0;
        count[src.idx()] = 1;
        latency[src.idx()] = Nanos::ZERO;
        bottleneck[src.idx()] = BitsPerSec(u64::MAX);
        queue.push(src);
        let mut qi = 0;
        while qi < queue.len() {
            let u = queue[qi];
            qi += 1;
            // Only the source and switches forward.
            if u != src && f.node(u).is_gpu() {
                continue;
            }
            let du = dist[u.idx()];
            for &(v, l) in f.neighbors(u) {
                let link = f.link(l);
                let dv = &mut dist[v.idx()];
                if *dv == UNREACHED {
                    *dv = du + 1;
                    queue.push(v);
                }
                if *dv == du + 1 {
                    count[v.idx()] = count[v.idx()].saturating_add(count[u.idx()]);
                    let lat = latency[u.idx()] + f.link_latency(l, per_km) + sw_lat[v.idx()];
                    if lat < latency[v.idx()] {
                        latency[v.idx()] = lat;
                        bottleneck[v.idx()] = bottleneck[u.idx()].min(link.rate);
                    }
                }
            }
        }
        ShortestPaths { source: src, dist, count, latency, bottleneck }
    }

    pub fn reachable(&self, n: NodeId) -> bool {
        self.dist[n.idx()] != UNREACHED
    }

    /// Switches on a shortest path to `n` (links minus one).
    pub fn switch_hops(&self, n: NodeId) -> Option<u16> {
        self.reachable(n).then(|| self.dist[n.idx()].saturating_sub(1))
    }

    /// Zero-load one-way latency to `n`: switch latencies + propagation + serialization of one
    /// `mtu` packet at the path's bottleneck rate (cut-through switches serialize once).
    pub fn zero_load_latency(&self, n: NodeId, mtu: Bytes) -> Option<Nanos> {
        self.reachable(n).then(|| self.latency[n.idx()] + self.bottleneck[n.idx()].transmit_time(mtu))
    }

    /// Links out of `u` that lie on a shortest path towards this BFS's source, given `u`
    /// is a switch or the destination's peer (use a BFS rooted at the destination).
    pub fn next_hops_toward_source<'a>(
        &'a self,
        f: &'a Fabric,
        u: NodeId,
    ) -> impl Iterator<Item = (NodeId, LinkId)> + 'a {
        let du = self.dist[u.idx()];
        f.neighbors(u).iter().copied().filter(move |(v, _)| {
            let dv = self.dist[v.idx()];
            dv != UNREACHED && dv + 1 == du && (*v == self.source || !f.node(*v).is_gpu())
        })
    }
}

/// One shortest path from `src` to `dst` chosen by `pick(choices)` at each hop (for ECMP
/// hashing or tests). `to_dst` is a BFS rooted at `dst`.
pub fn pick_path(
    f: &Fabric,
    to_dst: &ShortestPaths,
    src: NodeId,
    mut pick: impl FnMut(usize) -> usize,
) -> Option<Vec<LinkId>> {
    if !to_dst.reachable(src) {
        return None;
    }
    let mut path = Vec::new();
    let mut u = src;
    let mut choices = Vec::new();
    while u != to_dst.source {
        choices.clear();
        choices.extend(to_dst.next_hops_toward_source(f, u));
        if choices.is_empty() {
            return None;
        }
        let (v, l) = choices[pick(choices.len()) % choices.len()];
        path.push(l);
        u = v;
    }
    Some(path)
}

/// Whether a link carries network traffic (not the intra-host NVLink domain).
pub fn is_network(class: LinkClass) -> bool {
    class != LinkClass::Nvlink
}
