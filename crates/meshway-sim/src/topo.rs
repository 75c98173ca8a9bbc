//! The simulator's view of a fabric: ranks (GPUs in host order), the directed-link network the
//! engine runs on, and path choice by routing policy.
//!
//! Arcs follow the fabric's numbering: physical link `l` gives arc `2l` (from `a` to `b`) and
//! `2l + 1` (from `b` to `a`). An arc's latency is the fibre propagation of its link plus the
//! switching latency of the switch at its head (zero when the head is a GPU).
//!
//! Paths are shortest paths in which only switches forward. Distances are kept per
//! *attachment switch* (the switches a destination GPU hangs off), so a 16k-GPU fabric needs a
//! few hundred breadth-first searches rather than one per GPU. While any link is down, paths
//! follow distances over the links that are up, as routing does once it has converged.

use crate::engine::{LinkId as Arc, LinkView, Network};
use crate::program::Leg;
use meshway_fabric::catalog::Catalog;
use meshway_fabric::routing::switch_latencies;
use meshway_fabric::{Fabric, LinkClass, NodeId, NodeKind};
use meshway_units::{BitsPerSec, Nanos};
use std::sync::Arc as Shared;

const FAR: u16 = u16::MAX;

/// How one subflow picks among equal-cost next hops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// ECMP: a hash of the flow key and the switch, as switches hash the 5-tuple.
    Hash(u64),
    /// Adaptive: the next hop with the fewest active flows now; ties by the hash.
    LeastLoaded(u64),
    /// Global adaptive: the whole shortest path whose busiest link carries the fewest active
    /// flows now (as a central controller that sees every link would choose); ties by the
    /// hash, hop by hop.
    LeastLoadedPath(u64),
    /// Spraying: subflow `index` of a message takes the `index`-th path in a mixed-radix
    /// enumeration of next hops (rotated per switch by `key`), so subflows cover next hops
    /// evenly.
    Spread { key: u64, index: u32 },
}

/// The switch an arc leads into, as the packet engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArcHead {
    /// Node index of the switch.
    pub switch: u32,
    /// Its shared packet buffer, bytes.
    pub buffer: u64,
    /// Its switching latency, part of the arc's latency (the rest is the link's propagation).
    pub latency: Nanos,
}

/// splitmix64 finalizer: the hash used for ECMP and seeds.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Ranks, network and paths of something flows run on.
pub trait Topology {
    /// An independent copy for another thread (the same answers; caches are copied), when
    /// the topology supports it.
    fn fork(&self) -> Option<Box<dyn Topology + Send + '_>> {
        None
    }
    /// The GPUs, rank order.
    fn ranks(&self) -> usize;
    /// Host index of each rank (ranks of one host share the NVLink domain).
    fn host_of(&self, rank: u32) -> u32;
    /// Site index of each rank on a multi-site fabric (0 on one site).
    fn site_of(&self, _rank: u32) -> u32 {
        0
    }
    /// The rank of the whole fabric this rank is (a sub-topology's ranks are a subset).
    fn global_rank(&self, rank: u32) -> u32 {
        rank
    }
    /// What the tuner picked for a training step's collectives on this fabric, by everything
    /// the pick depends on (see `training::tuned`), so that a run writing many steps (a
    /// `schedule` of thousands of jobs) tunes each shape once; None where the topology keeps
    /// none.
    fn tune_cache(&mut self) -> Option<&mut TuneCache> {
        None
    }
    /// The engine network (arcs).
    fn network(&self) -> Network;
    /// A path from `src` to `dst` (ranks) by `choice`; `live` is the links' state during a
    /// run (None before). When no live path exists the path ignores failures, so the flow
    /// stalls on a down link and is reported. None only when the ranks are not connected.
    fn path(&mut self, src: u32, dst: u32, choice: Choice, live: Option<&LinkView<'_>>) -> Option<Vec<Arc>>;
    /// Independent network planes (each NIC has a port into each).
    fn planes(&self) -> u32 {
        1
    }
    /// A path as [`Topology::path`] that leaves `src` by its NIC port in network plane
    /// `plane` (modulo the planes) on a multi-plane fabric; the plain path elsewhere, or
    /// when that plane offers no path.
    fn path_on_plane(
        &mut self,
        src: u32,
        dst: u32,
        _plane: u32,
        choice: Choice,
        live: Option<&LinkView<'_>>,
    ) -> Option<Vec<Arc>> {
        self.path(src, dst, choice, live)
    }
    /// Whether a message between these ranks stays inside a host (one path, no subflows).
    fn local(&self, src: u32, dst: u32) -> bool {
        self.host_of(src) == self.host_of(dst)
    }
    /// A name for an arc in reports ("leaf-0 -> spine-3").
    fn arc_name(&self, arc: Arc) -> String;
    /// A name for a rank ("gpu-17").
    fn rank_name(&self, rank: u32) -> String;
    /// Whether an arc belongs to the scale-out network (not NVLink).
    fn is_network_arc(&self, arc: Arc) -> bool;
    /// The switch at an arc's head and its shared buffer (packet level); None when the head
    /// is a GPU or the topology does not model buffers.
    fn arc_head(&self, _arc: Arc) -> Option<ArcHead> {
        None
    }
    /// Whether an arc is a data-centre interconnect span.
    fn is_dci_arc(&self, _arc: Arc) -> bool {
        false
    }
    /// A pinned path (a flow file's `path`, in this fabric's arcs) as this topology runs it;
    /// None where it does not apply (the ideal fabric routes everything itself).
    fn pinned_path(&self, _path: &[Arc]) -> Option<Vec<Arc>> {
        None
    }
    /// Capacity and latency of an arc.
    fn arc_spec(&self, arc: Arc) -> (BitsPerSec, Nanos);
    /// The NIC port a message from `src` to `dst` (through `via`) leaves by and the slowest
    /// link of its path (ECMP's first choice), when that link is slower than the port: the
    /// NIC's achievable share of its port then binds less or not at all. None otherwise, or
    /// where the topology has no link slower than its ports.
    fn slower_than_port(&mut self, _src: u32, _dst: u32, _via: Option<u32>) -> Option<(BitsPerSec, BitsPerSec)> {
        None
    }
    /// Whether any link between network switches is slower than a NIC port (when not,
    /// [`Topology::slower_than_port`] is None for every message and need not be asked).
    fn has_links_slower_than_ports(&self) -> bool {
        false
    }
    /// The one link of a [`Leg`] other than a path: between `rank` and its NVSwitch or
    /// leaf, NIC port `channel mod ports`. None when the rank has no such link.
    fn attach(&self, _rank: u32, _leg: Leg, _channel: u32) -> Option<Arc> {
        None
    }

    /// Zero-load latency of one `packet` from `src` to `dst` (optionally relayed by `via`) on
    /// the path ECMP key 0 takes: arc latencies plus the packet's serialization at the
    /// bottleneck.
    fn edge_latency(&mut self, src: u32, dst: u32, via: Option<u32>, packet: u64) -> Nanos {
        match self.path_spec(src, dst, via) {
            None => Nanos::ZERO,
            Some((lat, rate)) if rate.0 == 0 => lat,
            Some((lat, rate)) => lat + rate.transmit_time(meshway_units::Bytes(packet)),
        }
    }
    /// The one-way latency of the path from `src` to `dst` (through `via`), ECMP's first
    /// choice, and its slowest link (0 for an empty path); None when they are not connected.
    fn path_spec(&mut self, src: u32, dst: u32, via: Option<u32>) -> Option<(Nanos, BitsPerSec)> {
        let mut path = self.path(src, via.unwrap_or(dst), Choice::Hash(0), None)?;
        if let Some(v) = via {
            path.extend(self.path(v, dst, Choice::Hash(0), None)?);
        }
        let specs: Vec<_> = path.iter().map(|a| self.arc_spec(*a)).collect();
        Some((specs.iter().map(|s| s.1).sum(), specs.iter().map(|s| s.0).min().unwrap_or(BitsPerSec(0))))
    }
}

/// What adaptive routing minimizes on a link: the inverse of the share a new flow would get,
/// (flows + 1) / rate, in fixed point. Between links of one rate it orders as the flow count
/// does; between rates, a 50G link with no flow loses to an idle 100G one.
fn share_cost(flows: usize, rate_bps: u64) -> u128 {
    (flows as u128 + 1) * (1u128 << 64) / u128::from(rate_bps.max(1))
}

/// Tuner picks by a key naming what decides them: (index of the algorithm and of the
/// protocol among the candidates, time alone).
pub type TuneCache = std::collections::HashMap<String, (usize, usize, Option<u64>)>;

/// A built fabric as the simulator sees it.
#[derive(Clone)]
pub struct FabricTopo<'f> {
    pub fabric: &'f Fabric,
    ranks: Vec<NodeId>,
    hosts: Vec<u32>,
    arc_latency: Vec<Nanos>,
    is_switch: Vec<bool>,
    /// Switching latency per node (zero for GPUs), from [`switch_latencies`].
    sw_lat: Vec<Nanos>,
    /// Static distances to each attachment switch, by node (shared with forks: a 16,384-GPU
    /// fabric has thousands of these tables of 40 KB).
    dist: Vec<Option<Shared<[u16]>>>,
    /// Distances over the links that are up, for one failure epoch.
    live_epoch: u64,
    live: Vec<Option<Shared<[u16]>>>,
    seed: u64,
    scratch: Vec<(NodeId, meshway_fabric::LinkId)>,
    /// Shared buffer of each node's switch model (0 for GPUs).
    buffers: Vec<u64>,
    /// Per link: its number (from 1) among the parallel links joining the same two nodes,
    /// or 0 when it is the only one.
    parallel: Vec<u32>,
    /// Whether a link between two network switches is slower than the fastest NIC port.
    slow_core: bool,
    tuned: TuneCache,
}

impl<'f> FabricTopo<'f> {
    pub fn new(fabric: &'f Fabric, catalog: &Catalog, seed: u64) -> FabricTopo<'f> {
        let mut ranks: Vec<NodeId> = fabric.gpus().collect();
        let key = |n: &NodeId| {
            let node = fabric.node(*n);
            match node.kind {
                NodeKind::Gpu { host, local } => (node.site, host, local, n.0),
                NodeKind::Switch { .. } => (node.site, u32::MAX, 0, n.0),
            }
        };
        ranks.sort_by_key(key);
        let mut hosts = Vec::with_capacity(ranks.len());
        let mut last = None;
        let mut h = 0u32;
        for r in &ranks {
            let node = fabric.node(*r);
            let id = match node.kind {
                NodeKind::Gpu { host, .. } => (node.site, host),
                NodeKind::Switch { .. } => (node.site, u32::MAX),
            };
            if last.is_some() && last != Some(id) {
                h += 1;
            }
            last = Some(id);
            hosts.push(h);
        }
        let sw_lat = switch_latencies(fabric, catalog);
        let per_km = catalog.constants.fiber_delay_per_km;
        let mut arc_latency = Vec::with_capacity(fabric.links.len() * 2);
        for (i, l) in fabric.links.iter().enumerate() {
            let prop = fabric.link_latency(meshway_fabric::LinkId(i as u32), per_km);
            arc_latency.push(prop + sw_lat[l.b.idx()]);
            arc_latency.push(prop + sw_lat[l.a.idx()]);
        }
        let is_switch = fabric.nodes.iter().map(|n| !n.is_gpu()).collect();
        let mut bundles: std::collections::BTreeMap<(u32, u32), Vec<usize>> = std::collections::BTreeMap::new();
        for (i, l) in fabric.links.iter().enumerate() {
            bundles.entry((l.a.0.min(l.b.0), l.a.0.max(l.b.0))).or_default().push(i);
        }
        let mut parallel = vec![0u32; fabric.links.len()];
        for links in bundles.values().filter(|v| v.len() > 1) {
            for (k, &i) in links.iter().enumerate() {
                parallel[i] = k as u32 + 1;
            }
        }
        let buffers = fabric
            .nodes
            .iter()
            .map(|n| match n.kind {
                NodeKind::Switch { model, .. } => catalog.switch.get(model as usize).map_or(0, |m| m.buffer.0),
                NodeKind::Gpu { .. } => 0,
            })
            .collect();
        FabricTopo {
            fabric,
            ranks,
            hosts,
            arc_latency,
            is_switch,
            sw_lat,
            dist: vec![None; fabric.nodes.len()],
            live_epoch: u64::MAX,
            live: vec![None; fabric.nodes.len()],
            seed,
            scratch: Vec::new(),
            buffers,
            parallel,
            slow_core: {
                let net_switch = |n: NodeId| !fabric.node(n).is_gpu() && !fabric.is_nvswitch(n);
                let (mut port, mut core) = (0u64, u64::MAX);
                for l in &fabric.links {
                    let (a, b) = (fabric.node(l.a).is_gpu(), fabric.node(l.b).is_gpu());
                    if (a && net_switch(l.b)) || (b && net_switch(l.a)) {
                        port = port.max(l.rate.0);
                    } else if net_switch(l.a) && net_switch(l.b) {
                        core = core.min(l.rate.0);
                    }
                }
                core < port
            },
            tuned: TuneCache::new(),
        }
    }

    /// The arcs from GPU `src` through the switches named in `via` to GPU `dst`: the route a
    /// flow file pins. Errors say which hop has no link.
    pub fn route_through(&self, src: u32, dst: u32, via: &[&str]) -> Result<Vec<Arc>, String> {
        let f = self.fabric;
        let mut nodes = vec![self.ranks[src as usize]];
        for name in via {
            let n = f
                .nodes
                .iter()
                .position(|n| n.name == *name && !n.is_gpu())
                .ok_or_else(|| format!("path: {name:?} is not a switch of this fabric"))?;
            nodes.push(NodeId(n as u32));
        }
        nodes.push(self.ranks[dst as usize]);
        // A path visits each node once: a loop would carry the flow over a switch (or a link)
        // twice.
        if let Some((i, n)) = nodes.iter().enumerate().find(|(i, n)| nodes[..*i].contains(n)) {
            return Err(format!(
                "path: {} comes twice (place {} of the path): a path visits each switch once",
                f.node(*n).name,
                i
            ));
        }
        let mut arcs = Vec::with_capacity(nodes.len() - 1);
        for w in nodes.windows(2) {
            let link = f
                .neighbors(w[0])
                .iter()
                .find(|(n, _)| *n == w[1])
                .map(|&(_, l)| l)
                .ok_or_else(|| format!("path: no link from {} to {}", f.node(w[0]).name, f.node(w[1]).name))?;
            arcs.push(self.arc(link, w[0]));
        }
        Ok(arcs)
    }

    pub fn node_of(&self, rank: u32) -> NodeId {
        self.ranks[rank as usize]
    }

    /// The rank of a GPU named `name` ("gpu-3"), or a rank number (digits only: "+1" is no
    /// number; no GPU may be named with digits only, see the custom fabric's build).
    pub fn rank_by_name(&self, name: &str) -> Option<u32> {
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
            let i: u32 = name.parse().ok()?;
            return ((i as usize) < self.ranks.len()).then_some(i);
        }
        self.ranks.iter().position(|n| self.fabric.node(*n).name == name).map(|i| i as u32)
    }

    fn arc(&self, link: meshway_fabric::LinkId, from: NodeId) -> Arc {
        let l = self.fabric.link(link);
        Arc(link.0 * 2 + u32::from(l.a != from))
    }

    fn link_up(live: Option<&LinkView<'_>>, link: meshway_fabric::LinkId) -> bool {
        live.is_none_or(|v| v.is_up(Arc(link.0 * 2)) && v.is_up(Arc(link.0 * 2 + 1)))
    }

    /// Breadth-first distances (in links) from every node to switch `x`, over links that are
    /// up in `live`; only switches forward.
    fn bfs(&self, x: NodeId, live: Option<&LinkView<'_>>) -> Shared<[u16]> {
        let f = self.fabric;
        let mut dist = vec![FAR; f.nodes.len()];
        let mut queue = vec![x];
        dist[x.idx()] = 0;
        let mut i = 0;
        while i < queue.len() {
            let u = queue[i];
            i += 1;
            if !self.is_switch[u.idx()] {
                continue;
            }
            let du = dist[u.idx()];
            for &(v, l) in f.neighbors(u) {
                if dist[v.idx()] == FAR && Self::link_up(live, l) {
                    dist[v.idx()] = du + 1;
                    queue.push(v);
                }
            }
        }
        dist.into()
    }

    fn ensure(&mut self, x: NodeId, live: Option<&LinkView<'_>>) {
        match live {
            Some(v) if v.down_count() > 0 => {
                if self.live_epoch != v.changes() {
                    self.live_epoch = v.changes();
                    self.live.iter_mut().for_each(|d| *d = None);
                }
                if self.live[x.idx()].is_none() {
                    self.live[x.idx()] = Some(self.bfs(x, live));
                }
            }
            _ => {
                if self.dist[x.idx()].is_none() {
                    self.dist[x.idx()] = Some(self.bfs(x, None));
                }
            }
        }
    }

    /// Walks from `s` to `d`, choosing among next hops that lower the distance to `d`.
    fn walk(
        &mut self,
        s: NodeId,
        d: NodeId,
        choice: Choice,
        live: Option<&LinkView<'_>>,
        plane: Option<u16>,
    ) -> Option<Vec<Arc>> {
        let f = self.fabric;
        let use_live = live.is_some_and(|v| v.down_count() > 0);
        // The switches `d` hangs off (a few: its NVLink switch and NIC leaves), kept on the
        // stack: this runs once per flow.
        const FEW: usize = 8;
        let mut attach = [NodeId(0); FEW];
        let mut more: Vec<NodeId> = Vec::new();
        let mut n = 0;
        for &(v, l) in f.neighbors(d) {
            if self.is_switch[v.idx()] && Self::link_up(if use_live { live } else { None }, l) {
                if n < FEW {
                    attach[n] = v;
                    n += 1;
                } else {
                    more.push(v);
                }
            }
        }
        for &x in attach[..n].iter().chain(&more) {
            self.ensure(x, if use_live { live } else { None });
        }
        let table = if use_live { &self.live } else { &self.dist };
        let mut dists: [&[u16]; FEW] = [&[]; FEW];
        let mut nd = 0;
        let mut dists_more: Vec<&[u16]> = Vec::new();
        for x in attach[..n].iter().chain(&more) {
            if let Some(dv) = table[x.idx()].as_deref() {
                if nd < FEW {
                    dists[nd] = dv;
                    nd += 1;
                } else {
                    dists_more.push(dv);
                }
            }
        }
        let dists = &dists[..nd];
        // Distance from node w to d: through its best attachment switch.
        let to_d = |w: NodeId| -> u16 {
            if w == d {
                return 0;
            }
            dists.iter().chain(&dists_more).map(|dv| dv[w.idx()]).min().map_or(FAR, |m| m.saturating_add(1))
        };
        let links_ok = |l| Self::link_up(if use_live { live } else { None }, l);
        let in_plane = |v: NodeId| plane.is_none_or(|p| f.node(v).plane == p);
        let mut path = Vec::with_capacity(8);
        let mut u = s;
        // Distance from s: over its own links (it forwards only as the source).
        let mut du = f
            .neighbors(s)
            .iter()
            .filter(|&&(v, l)| links_ok(l) && (v == d || self.is_switch[v.idx()]) && in_plane(v))
            .map(|&(v, _)| to_d(v).saturating_add(1))
            .min()
            .unwrap_or(FAR);
        if du == FAR {
            return None;
        }
        // Global adaptive: the busiest link's load on the best way from each node of the
        // shortest-path graph to `d`, computed layer by layer backwards from `d`.
        let mut best: Vec<(NodeId, u128)> = Vec::new();
        if let Choice::LeastLoadedPath(_) = choice {
            let load = |u: NodeId, l: meshway_fabric::LinkId| {
                let arc = Arc(l.0 * 2 + u32::from(f.link(l).a != u));
                share_cost(live.map_or(0, |w| w.flows(arc)), f.link(l).rate.0)
            };
            let mut layers: Vec<Vec<NodeId>> = vec![vec![s]];
            let mut dl = du;
            while dl > 0 && layers.len() <= 64 {
                let mut next: Vec<NodeId> = Vec::new();
                for &u in layers.last().into_iter().flatten() {
                    for &(v, l) in f.neighbors(u) {
                        let first = layers.len() == 1;
                        if (v == d || self.is_switch[v.idx()])
                            && links_ok(l)
                            && to_d(v) == dl - 1
                            && (!first || in_plane(v))
                        {
                            next.push(v);
                        }
                    }
                }
                next.sort_unstable();
                next.dedup();
                layers.push(next);
                dl -= 1;
            }
            best.push((d, 0));
            for (i, layer) in layers.iter().enumerate().rev().skip(1) {
                let (first, dv) = (i == 0, du - i as u16);
                let mut add = Vec::with_capacity(layer.len());
                for &u in layer {
                    let c = f
                        .neighbors(u)
                        .iter()
                        .filter(|&&(v, l)| {
                            (v == d || self.is_switch[v.idx()])
                                && links_ok(l)
                                && to_d(v) == dv - 1
                                && (!first || in_plane(v))
                        })
                        .filter_map(|&(v, l)| {
                            let i = best.binary_search_by_key(&v, |b| b.0).ok()?;
                            Some(load(u, l).max(best[i].1))
                        })
                        .min()
                        .unwrap_or(u128::MAX);
                    add.push((u, c));
                }
                best.extend(add);
                best.sort_unstable_by_key(|b| b.0);
            }
        }
        let mut hop = 0u32;
        let index = match choice {
            Choice::Spread { index, .. } => u64::from(index),
            _ => 0,
        };
        // Spraying: the part of the index already used to choose earlier hops (`prefix`, below
        // `prod`) and the rest.
        let mut prod = 1u64;
        let seed = self.seed;
        while u != d {
            self.scratch.clear();
            for &(v, l) in f.neighbors(u) {
                if (v == d || self.is_switch[v.idx()]) && links_ok(l) && to_d(v) == du - 1 && (hop > 0 || in_plane(v)) {
                    self.scratch.push((v, l));
                }
            }
            if self.scratch.is_empty() || hop > 64 {
                return None;
            }
            let c = self.scratch.len();
            let salt = mix(seed ^ mix(u64::from(u.0) ^ 0xA5A5_0000_0000));
            let pick = match choice {
                Choice::Hash(key) => (mix(key ^ salt) % c as u64) as usize,
                Choice::LeastLoaded(key) => {
                    let view = live;
                    let mut best = 0;
                    let mut best_key = (u128::MAX, u64::MAX);
                    for (i, &(v, l)) in self.scratch.iter().enumerate() {
                        let arc = Arc(l.0 * 2 + u32::from(f.link(l).a != u));
                        let _ = v;
                        let load = share_cost(view.map_or(0, |w| w.flows(arc)), f.link(l).rate.0);
                        let k = (load, mix(key ^ salt ^ u64::from(arc.0)));
                        if k < best_key {
                            best_key = k;
                            best = i;
                        }
                    }
                    best
                }
                Choice::LeastLoadedPath(key) => {
                    let mut pick = 0;
                    let mut best_key = (u128::MAX, u64::MAX);
                    for (i, &(v, l)) in self.scratch.iter().enumerate() {
                        let arc = Arc(l.0 * 2 + u32::from(f.link(l).a != u));
                        let here = share_cost(live.map_or(0, |w| w.flows(arc)), f.link(l).rate.0);
                        let beyond = best.binary_search_by_key(&v, |b| b.0).map_or(u128::MAX, |j| best[j].1);
                        let k = (here.max(beyond), mix(key ^ salt ^ u64::from(arc.0)));
                        if k < best_key {
                            best_key = k;
                            pick = i;
                        }
                    }
                    pick
                }
                Choice::Spread { key, .. } => {
                    // Subflows that reached this switch share `prefix` and differ in `rest`;
                    // adding the prefix staggers the subflows coming through different
                    // upstream links, so every next hop gets an equal share.
                    let (prefix, rest) = if prod == 0 { (0, index) } else { (index % prod, index / prod) };
                    prod = prod.saturating_mul(c as u64);
                    ((rest + prefix + mix(key ^ salt)) % c as u64) as usize
                }
            };
            let (v, l) = self.scratch[pick];
            path.push(self.arc(l, u));
            u = v;
            du -= 1;
            hop += 1;
        }
        Some(path)
    }

    /// GPU -> NVLink switch -> GPU, when both GPUs hang off the same NVLink switch by links
    /// that are up.
    fn nvlink_path(&self, s: NodeId, d: NodeId, live: Option<&LinkView<'_>>) -> Option<Vec<Arc>> {
        let f = self.fabric;
        for &(v, l) in f.neighbors(s) {
            if f.link(l).class != LinkClass::Nvlink || !Self::link_up(live, l) {
                continue;
            }
            if let Some(&(_, l2)) = f
                .neighbors(d)
                .iter()
                .find(|&&(w, l2)| w == v && f.link(l2).class == LinkClass::Nvlink && Self::link_up(live, l2))
            {
                return Some(vec![self.arc(l, s), self.arc(l2, v)]);
            }
        }
        None
    }

    /// A path from `src` to `dst`, leaving by a NIC port in `plane` when given.
    fn route(
        &mut self,
        src: u32,
        dst: u32,
        choice: Choice,
        live: Option<&LinkView<'_>>,
        plane: Option<u16>,
    ) -> Option<Vec<Arc>> {
        let (s, d) = (self.ranks[src as usize], self.ranks[dst as usize]);
        if s == d {
            return Some(Vec::new());
        }
        // Inside a host, GPUs talk over their NVLink switch, never through the NIC.
        if self.hosts[src as usize] == self.hosts[dst as usize] {
            if let Some(p) = self.nvlink_path(s, d, live) {
                return Some(p);
            }
        }
        if let Some(v) = live {
            if v.down_count() > 0 {
                if let Some(p) = self.walk(s, d, choice, live, plane) {
                    return Some(p);
                }
                // Cut off: take the nominal path and stall on its down link.
                return self.walk(s, d, choice, None, plane);
            }
        }
        self.walk(s, d, choice, live, plane)
    }

    /// Sum of arc latencies along `path`.
    pub fn latency(&self, path: &[Arc]) -> Nanos {
        path.iter().map(|a| self.arc_latency[a.0 as usize]).sum()
    }
}

impl Topology for FabricTopo<'_> {
    fn attach(&self, rank: u32, leg: Leg, channel: u32) -> Option<Arc> {
        let f = self.fabric;
        let gpu = *self.ranks.get(rank as usize)?;
        let class = match leg {
            Leg::Path => return None,
            Leg::NvlinkUp | Leg::NvlinkDown => LinkClass::Nvlink,
            Leg::NicUp | Leg::NicDown => LinkClass::Nic,
        };
        let mut ports: Vec<(u16, NodeId, meshway_fabric::LinkId)> = f
            .neighbors(gpu)
            .iter()
            // A custom fabric's GPU links are its NICs (the ideal fabric counts them so).
            .filter(|(_, l)| {
                let c = f.link(*l).class;
                c == class || (class == LinkClass::Nic && c == LinkClass::Custom)
            })
            .map(|&(n, l)| (f.node(n).plane, n, l))
            .collect();
        if ports.is_empty() {
            return None;
        }
        ports.sort_unstable_by_key(|p| (p.0, p.2 .0));
        let (_, other, link) = ports[channel as usize % ports.len()];
        Some(match leg {
            Leg::NvlinkUp | Leg::NicUp => self.arc(link, gpu),
            _ => self.arc(link, other),
        })
    }
    fn fork(&self) -> Option<Box<dyn Topology + Send + '_>> {
        Some(Box::new(self.clone()))
    }
    fn ranks(&self) -> usize {
        self.ranks.len()
    }
    fn tune_cache(&mut self) -> Option<&mut TuneCache> {
        Some(&mut self.tuned)
    }

    fn host_of(&self, rank: u32) -> u32 {
        self.hosts[rank as usize]
    }

    fn site_of(&self, rank: u32) -> u32 {
        u32::from(self.fabric.node(self.ranks[rank as usize]).site)
    }

    fn network(&self) -> Network {
        let mut net = Network::new();
        for (i, l) in self.fabric.links.iter().enumerate() {
            net.add_link(l.rate, self.arc_latency[2 * i]);
            net.add_link(l.rate, self.arc_latency[2 * i + 1]);
        }
        net
    }

    fn path(&mut self, src: u32, dst: u32, choice: Choice, live: Option<&LinkView<'_>>) -> Option<Vec<Arc>> {
        self.route(src, dst, choice, live, None)
    }

    fn planes(&self) -> u32 {
        u32::from(self.fabric.planes.max(1))
    }

    /// Inside a host over NVLink: a custom fabric's GPUs may share a `host` with no NVLink
    /// between them, and their messages then cross the NIC links (at the NIC's share, not
    /// NVLink's: a 1 GiB send ran at 392 Gb/s over 400G links).
    fn local(&self, src: u32, dst: u32) -> bool {
        self.host_of(src) == self.host_of(dst) && self.attach(src, Leg::NvlinkUp, 0).is_some()
    }

    fn path_on_plane(
        &mut self,
        src: u32,
        dst: u32,
        plane: u32,
        choice: Choice,
        live: Option<&LinkView<'_>>,
    ) -> Option<Vec<Arc>> {
        let planes = u32::from(self.fabric.planes.max(1));
        if planes == 1 {
            return self.route(src, dst, choice, live, None);
        }
        let p = (plane % planes) as u16;
        match self.route(src, dst, choice, live, Some(p)) {
            // The plane is cut off from dst: any plane, as routing would.
            Some(path) if live.is_none_or(|v| v.down_count() == 0 || path.iter().all(|a| v.is_up(*a))) => Some(path),
            pinned => self.route(src, dst, choice, live, None).or(pinned),
        }
    }

    fn arc_name(&self, arc: Arc) -> String {
        let l = self.fabric.link(meshway_fabric::LinkId(arc.0 / 2));
        let (from, to) = if arc.0.is_multiple_of(2) { (l.a, l.b) } else { (l.b, l.a) };
        match self.parallel.get((arc.0 / 2) as usize).copied().unwrap_or(0) {
            0 => format!("{} -> {}", self.fabric.node(from).name, self.fabric.node(to).name),
            k => format!("{} -> {} #{k}", self.fabric.node(from).name, self.fabric.node(to).name),
        }
    }

    fn rank_name(&self, rank: u32) -> String {
        self.fabric.node(self.ranks[rank as usize]).name.clone()
    }

    fn is_network_arc(&self, arc: Arc) -> bool {
        self.fabric.link(meshway_fabric::LinkId(arc.0 / 2)).class != LinkClass::Nvlink
    }

    fn has_links_slower_than_ports(&self) -> bool {
        self.slow_core
    }

    fn slower_than_port(&mut self, src: u32, dst: u32, via: Option<u32>) -> Option<(BitsPerSec, BitsPerSec)> {
        if !self.slow_core {
            return None;
        }
        let mut path = self.path(src, via.unwrap_or(dst), Choice::Hash(0), None)?;
        if let Some(v) = via {
            path.extend(self.path(v, dst, Choice::Hash(0), None)?);
        }
        let net: Vec<Arc> = path.into_iter().filter(|&a| self.is_network_arc(a)).collect();
        let port = self.arc_spec(*net.first()?).0;
        let slowest = net.iter().map(|&a| self.arc_spec(a).0).min()?;
        (slowest < port).then_some((port, slowest))
    }

    fn arc_head(&self, arc: Arc) -> Option<ArcHead> {
        let l = self.fabric.link(meshway_fabric::LinkId(arc.0 / 2));
        let head = if arc.0.is_multiple_of(2) { l.b } else { l.a };
        let buffer = *self.buffers.get(head.idx())?;
        (self.is_switch[head.idx()]).then_some(ArcHead { switch: head.0, buffer, latency: self.sw_lat[head.idx()] })
    }

    fn is_dci_arc(&self, arc: Arc) -> bool {
        self.fabric.link(meshway_fabric::LinkId(arc.0 / 2)).class == LinkClass::Dci
    }

    fn pinned_path(&self, path: &[Arc]) -> Option<Vec<Arc>> {
        Some(path.to_vec())
    }

    fn arc_spec(&self, arc: Arc) -> (BitsPerSec, Nanos) {
        (self.fabric.link(meshway_fabric::LinkId(arc.0 / 2)).rate, self.arc_latency[arc.0 as usize])
    }
}

/// The same GPUs on an ideal non-blocking fabric: every GPU has its NIC capacity (summed
/// over planes) into one infinitely fast switch, and its NVLink capacity inside its host.
/// Arc latencies are zero: the comparison isolates contention, and the transport's α and
/// last-packet serialization still apply.
#[derive(Clone)]
pub struct IdealTopo {
    hosts: Vec<u32>,
    sites: Vec<u32>,
    names: Vec<String>,
    nic: Vec<BitsPerSec>,
    nvlink: Vec<BitsPerSec>,
}

impl IdealTopo {
    /// The ideal counterpart of `topo`.
    pub fn of(topo: &FabricTopo<'_>) -> IdealTopo {
        let f = topo.fabric;
        let mut nic = Vec::new();
        let mut nvlink = Vec::new();
        for &r in &topo.ranks {
            let (mut n, mut v) = (0u64, 0u64);
            for &(_, l) in f.neighbors(r) {
                let link = f.link(l);
                if link.class == LinkClass::Nvlink {
                    v += link.rate.0;
                } else {
                    n += link.rate.0;
                }
            }
            nic.push(BitsPerSec(n));
            nvlink.push(BitsPerSec(v));
        }
        IdealTopo {
            hosts: topo.hosts.clone(),
            sites: (0..topo.ranks() as u32).map(|r| topo.site_of(r)).collect(),
            names: topo.ranks.iter().map(|r| f.node(*r).name.clone()).collect(),
            nic,
            nvlink,
        }
    }
}

impl Topology for IdealTopo {
    fn attach(&self, rank: u32, leg: Leg, _channel: u32) -> Option<Arc> {
        let r = rank as usize;
        let (base, rate) = match leg {
            Leg::Path => return None,
            Leg::NicUp | Leg::NicDown => (0, *self.nic.get(r)?),
            Leg::NvlinkUp | Leg::NvlinkDown => (2, *self.nvlink.get(r)?),
        };
        let down = u32::from(matches!(leg, Leg::NicDown | Leg::NvlinkDown));
        (rate.0 > 0).then_some(Arc(4 * rank + base + down))
    }
    fn fork(&self) -> Option<Box<dyn Topology + Send + '_>> {
        Some(Box::new(self.clone()))
    }
    fn ranks(&self) -> usize {
        self.hosts.len()
    }
    fn host_of(&self, rank: u32) -> u32 {
        self.hosts[rank as usize]
    }
    fn site_of(&self, rank: u32) -> u32 {
        self.sites[rank as usize]
    }
    /// Arcs per rank r: 4r NIC out, 4r+1 NIC in, 4r+2 NVLink out, 4r+3 NVLink in.
    fn network(&self) -> Network {
        let mut net = Network::new();
        for r in 0..self.hosts.len() {
            net.add_link(self.nic[r], Nanos::ZERO);
            net.add_link(self.nic[r], Nanos::ZERO);
            net.add_link(self.nvlink[r], Nanos::ZERO);
            net.add_link(self.nvlink[r], Nanos::ZERO);
        }
        net
    }
    fn path(&mut self, src: u32, dst: u32, _: Choice, _: Option<&LinkView<'_>>) -> Option<Vec<Arc>> {
        if src == dst {
            return Some(Vec::new());
        }
        let (s, d) = (src as usize, dst as usize);
        let nv = self.hosts[s] == self.hosts[d] && self.nvlink[s].0 > 0 && self.nvlink[d].0 > 0;
        Some(if nv { vec![Arc(4 * src + 2), Arc(4 * dst + 3)] } else { vec![Arc(4 * src), Arc(4 * dst + 1)] })
    }
    fn arc_name(&self, arc: Arc) -> String {
        let r = (arc.0 / 4) as usize;
        let what = ["nic out", "nic in", "nvlink out", "nvlink in"][(arc.0 % 4) as usize];
        format!("{} {what}", self.names[r])
    }
    fn rank_name(&self, rank: u32) -> String {
        self.names[rank as usize].clone()
    }
    fn is_network_arc(&self, arc: Arc) -> bool {
        arc.0 % 4 < 2
    }
    fn arc_spec(&self, arc: Arc) -> (BitsPerSec, Nanos) {
        let r = (arc.0 / 4) as usize;
        (if arc.0 % 4 < 2 { self.nic[r] } else { self.nvlink[r] }, Nanos::ZERO)
    }
}

/// Some GPUs of a topology seen as a topology of their own: local rank `i` is rank
/// `ranks[i]` of `inner`. Programs written on it (a job's training step) use local ranks;
/// [`SubTopo::globalize`] renumbers them for the whole fabric. Arcs, paths and names are
/// `inner`'s.
pub struct SubTopo<'a> {
    pub inner: &'a mut dyn Topology,
    pub ranks: &'a [u32],
}

impl SubTopo<'_> {
    fn g(&self, r: u32) -> u32 {
        self.ranks[r as usize]
    }

    /// Rewrites a program written on this sub-topology into `inner`'s ranks.
    pub fn globalize(&self, prog: &mut crate::program::Program) {
        for m in &mut prog.msgs {
            m.src = self.g(m.src);
            m.dst = self.g(m.dst);
            m.via = m.via.map(|v| self.g(v));
        }
    }
}

impl Topology for SubTopo<'_> {
    fn ranks(&self) -> usize {
        self.ranks.len()
    }
    fn host_of(&self, rank: u32) -> u32 {
        self.inner.host_of(self.g(rank))
    }
    fn site_of(&self, rank: u32) -> u32 {
        self.inner.site_of(self.g(rank))
    }
    fn global_rank(&self, rank: u32) -> u32 {
        self.inner.global_rank(self.g(rank))
    }
    fn tune_cache(&mut self) -> Option<&mut TuneCache> {
        self.inner.tune_cache()
    }
    fn network(&self) -> Network {
        self.inner.network()
    }
    fn path(&mut self, src: u32, dst: u32, choice: Choice, live: Option<&LinkView<'_>>) -> Option<Vec<Arc>> {
        let (s, d) = (self.g(src), self.g(dst));
        self.inner.path(s, d, choice, live)
    }
    fn planes(&self) -> u32 {
        self.inner.planes()
    }
    fn path_on_plane(
        &mut self,
        src: u32,
        dst: u32,
        plane: u32,
        choice: Choice,
        live: Option<&LinkView<'_>>,
    ) -> Option<Vec<Arc>> {
        let (s, d) = (self.g(src), self.g(dst));
        self.inner.path_on_plane(s, d, plane, choice, live)
    }
    fn local(&self, src: u32, dst: u32) -> bool {
        self.inner.local(self.g(src), self.g(dst))
    }
    fn arc_name(&self, arc: Arc) -> String {
        self.inner.arc_name(arc)
    }
    fn rank_name(&self, rank: u32) -> String {
        self.inner.rank_name(self.g(rank))
    }
    fn is_network_arc(&self, arc: Arc) -> bool {
        self.inner.is_network_arc(arc)
    }
    fn arc_head(&self, arc: Arc) -> Option<ArcHead> {
        self.inner.arc_head(arc)
    }
    fn is_dci_arc(&self, arc: Arc) -> bool {
        self.inner.is_dci_arc(arc)
    }
    fn pinned_path(&self, path: &[Arc]) -> Option<Vec<Arc>> {
        self.inner.pinned_path(path)
    }
    fn arc_spec(&self, arc: Arc) -> (BitsPerSec, Nanos) {
        self.inner.arc_spec(arc)
    }
    fn attach(&self, rank: u32, leg: Leg, channel: u32) -> Option<Arc> {
        self.inner.attach(self.g(rank), leg, channel)
    }
    fn edge_latency(&mut self, src: u32, dst: u32, via: Option<u32>, packet: u64) -> Nanos {
        let (s, d) = (self.g(src), self.g(dst));
        self.inner.edge_latency(s, d, via.map(|v| self.ranks[v as usize]), packet)
    }
    // A job's collectives on a core slower than its NICs: without these, `schedule` put the
    // NIC's achievable share on top of the slower link (4% slower than `simulate`).
    fn slower_than_port(&mut self, src: u32, dst: u32, via: Option<u32>) -> Option<(BitsPerSec, BitsPerSec)> {
        let (s, d) = (self.g(src), self.g(dst));
        self.inner.slower_than_port(s, d, via.map(|v| self.ranks[v as usize]))
    }
    fn has_links_slower_than_ports(&self) -> bool {
        self.inner.has_links_slower_than_ports()
    }
}
