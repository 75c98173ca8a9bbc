//! NCCL-style collectives written as programs of messages.
//!
//! Two granularities:
//! - **steps**: every algorithm step is a message per rank and channel, depending on the
//!   messages it forwards (exact pipelining of steps, stragglers propagate);
//! - **steady**: a pipelined ring or tree is modeled by its steady-state flows, one message
//!   per edge carrying everything that edge carries, plus its latency terms
//!   `(steps - 1) x (alpha + edge latency)` added as a wait. Used when steps would need more
//!   messages than the catalog's `steps-flow-limit`; the output says which model ran.
//!
//! Algorithms: ring (rail-aligned channels on multi-GPU hosts, with PXN relays), double
//! binary tree, recursive halving-doubling, and hierarchical (intra-host reduce-scatter,
//! inter-host all-reduce per rail, intra-host all-gather). Sizes follow nccl-tests: the
//! buffer size of all-reduce and broadcast, the total output of all-gather, the total input
//! of reduce-scatter, and each rank's send buffer of all-to-all.

use crate::engine::LinkId as Arc;
use crate::program::{Leg, Msg, MsgId, Program};
use crate::topo::Topology;
use crate::CollectiveError;
use meshway_units::{BitsPerSec, Nanos};
use serde::Serialize;

/// A collective operation: the scenario's type, with its name and busbw factor.
pub use meshway_fabric::workload_config::OpConfig as Op;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algo {
    Ring,
    Tree,
    HalvingDoubling,
    Hierarchical,
    /// By site on multi-site fabrics (see [`site_all_reduce`]).
    SiteHierarchical,
    /// All-to-all and send/recv: every message directly.
    Direct,
    /// NVLink SHARP: every GPU sends its buffer into the NVSwitch, which reduces and
    /// multicasts the result back (one host; across hosts the shards meet in SHARP switches).
    Nvls,
    /// NVLS inside each host, a double binary tree of shards across hosts.
    NvlsTree,
    /// CollNet: ring reduce-scatter inside each host, each GPU's shard reduced in the SHARP
    /// switches, ring all-gather inside each host.
    Collnet,
}

impl Algo {
    /// The algorithm a scenario names; `None` for `auto` (the tuner picks).
    pub fn from_config(c: meshway_fabric::workload_config::AlgorithmConfig) -> Option<Algo> {
        use meshway_fabric::workload_config::AlgorithmConfig as C;
        Some(match c {
            C::Auto => return None,
            C::Ring => Algo::Ring,
            C::Tree => Algo::Tree,
            C::HalvingDoubling => Algo::HalvingDoubling,
            C::Hierarchical => Algo::Hierarchical,
            C::SiteHierarchical => Algo::SiteHierarchical,
            C::Direct => Algo::Direct,
            C::Nvls => Algo::Nvls,
            C::NvlsTree => Algo::NvlsTree,
            C::Collnet => Algo::Collnet,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Algo::Ring => "ring",
            Algo::Tree => "double-binary-tree",
            Algo::HalvingDoubling => "halving-doubling",
            Algo::Hierarchical => "hierarchical",
            Algo::SiteHierarchical => "site-hierarchical",
            Algo::Direct => "direct",
            Algo::Nvls => "nvls",
            Algo::NvlsTree => "nvls-tree",
            Algo::Collnet => "collnet",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    Steps,
    Steady,
    Direct,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::Steps => "steps",
            Model::Steady => "steady-state",
            Model::Direct => "direct",
        }
    }
}

/// One collective to write into a program.
#[derive(Debug, Clone)]
pub struct CollSpec {
    pub op: Op,
    pub algo: Algo,
    /// Bytes, as nccl-tests counts them (see the module docs).
    pub size: u64,
    /// Participating ranks, in order.
    pub ranks: Vec<u32>,
    pub channels: u32,
    /// Force a granularity; `None` picks steps when they fit `steps_limit` messages.
    pub model: Option<Model>,
    pub steps_limit: u64,
    /// Per-message endpoint latency (for the steady-state latency terms).
    pub alpha: Nanos,
    /// Packet size on the wire (for the edge latency).
    pub packet: u64,
    /// How a hierarchical all-reduce cuts its buffer into overlapping chunks.
    pub pipeline: Pipeline,
    /// The protocol's bandwidth efficiency and latencies ([`Proto::TRANSPORT`]: every step
    /// pays `alpha`, payload only).
    pub proto: Proto,
    /// The rates NCCL reaches on this hardware and the reductions it offers.
    pub hw: Hardware,
    /// NCCL's network post overhead for a flat ring across hosts (`[simulation]
    /// net-overhead`, zero when the catalog has none): see [`CollSpec::ring_step_alpha`].
    /// None exempts the ring from NCCL's ring rules: rings inside another algorithm
    /// (hierarchical phases), which NCCL's tuning model does not describe.
    pub net_overhead: Option<Nanos>,
}

/// Where a collective's ranks sit: on how many hosts, and whether each host holds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostShape {
    pub hosts: usize,
    pub one_per_host: bool,
}

impl HostShape {
    pub fn of(topo: &dyn Topology, ranks: &[u32]) -> HostShape {
        let mut hosts: Vec<u32> = ranks.iter().map(|&r| topo.host_of(r)).collect();
        hosts.sort_unstable();
        hosts.dedup();
        HostShape { hosts: hosts.len(), one_per_host: hosts.len() == ranks.len() }
    }
}

/// What the hardware lets a collective reach: the achievable share of the NVLink and NIC
/// line rates (messages carry `bytes / share`), and the switches that reduce.
#[derive(Debug, Clone, PartialEq)]
pub struct Hardware {
    /// The GPU model's name, for messages.
    pub gpu: String,
    /// Achievable NVLink rate over the fabric's NVLink rate (at most 1).
    pub nvlink: f64,
    /// Achievable NIC payload rate over the NIC's line rate (at most 1).
    pub nic: f64,
    /// NVLS: the NVSwitch reduces, at this efficiency (None: it does not).
    pub nvls: Option<f64>,
    /// NCCL's NVLS channels in one NVLink domain (0: no NVLS pipeline fill).
    pub nvls_channels: u32,
    /// NCCL's NVLS-tree bus bandwidth ceiling per head, bytes/s, across 2 hosts and across 3
    /// or more (0: none).
    pub nvls_tree_max: [f64; 2],
    /// CollNet: every network switch is SHARP capable; NCCL's efficiency factor.
    pub collnet: Option<f64>,
    /// The NIC model's name, for messages (empty: none).
    pub nic_model: String,
    /// The protocols the NIC model runs (None: all of the catalog's).
    pub protocols: Option<Vec<String>>,
    /// The network latency the NIC's NCCL net plugin reports, which NCCL's tuning model adds
    /// to each network step when it picks (zero: none).
    pub net_latency: Nanos,
    /// The NCCL tuner plugin whose regions pick before the tuner weighs its candidates.
    pub tuner_plugin: Option<std::sync::Arc<crate::plugin::PluginTable>>,
    /// The share of the NIC's achievable rate a tree's messages across hosts reach (1: all).
    pub tree_net: f64,
    /// NCCL's ceiling on LL bus bandwidth across hosts, bytes/s: on 2 hosts and on 3 or more
    /// (0: none).
    pub ll_max: [f64; 2],
    /// NCCL's NVLS chunk before its cuts for smaller messages, bytes (NCCL_NVLS_CHUNKSIZE:
    /// 128 KiB unless the NIC's net plugin sets it).
    pub nvls_chunk: u64,
    /// NCCL_NVLSTREE_MAX_CHUNKSIZE when the NIC's net plugin sets it (None: NCCL's default
    /// before Blackwell, the NVLS chunk on 2 or 3 hosts and 64 KiB from 4; NCCL's own
    /// Blackwell multi-node tuning, which sets it otherwise, is not modelled).
    pub nvls_tree_max_chunk: Option<u64>,
}

/// NCCL's default NVLS chunk (NCCL_NVLS_CHUNKSIZE, 128 KiB: src/transport/nvls.cc).
pub const NVLS_CHUNK: u64 = 128 << 10;

/// The most NVLS inside one NVLink domain starts from: one step of NCCL's Simple buffer
/// (DEFAULT_BUFFSIZE 4 MiB / NCCL_STEPS 8; src/enqueue.cc calcCollChunking starts NVLS from
/// the step, then takes at most the NVLS chunk).
const NVLS_STEP: u64 = 512 << 10;

impl Hardware {
    /// The share of its port the NIC gives `algo`'s sends across hosts: its achievable
    /// share, times the tree's share for the double binary tree (not NVLS-tree's trees).
    pub fn nic_share(&self, algo: Algo) -> f64 {
        if algo == Algo::Tree {
            self.nic * self.tree_net
        } else {
            self.nic
        }
    }

    /// Whether the NIC runs protocol `name`.
    pub fn runs(&self, name: &str) -> bool {
        self.protocols.as_ref().is_none_or(|ps| ps.iter().any(|p| p == name))
    }
}

/// What NCCL reaches on this fabric's hardware: the GPU model's achievable NVLink rate
/// over the fabric's, the NIC's achievable rate over its line rate, NVLS when the GPU
/// model has it, CollNet when every network switch is SHARP capable.
pub fn hardware(fabric: &meshway_fabric::Fabric, cat: &meshway_fabric::Catalog) -> Hardware {
    let name = fabric.gpu.as_deref().unwrap_or(&cat.simulation.gpu_model);
    let gpu = cat.gpu_model(name);
    let mut nvlink_rate = None;
    if let Some(g) = fabric.gpus().next() {
        for &(_, l) in fabric.neighbors(g) {
            if fabric.link(l).class == meshway_fabric::LinkClass::Nvlink {
                nvlink_rate = Some(fabric.link(l).rate);
            }
        }
    }
    // Its network ports, as the planner counts them (a custom fabric's GPU-switch links).
    let nic_rate = Some(fabric.gpu_network_rate().0).filter(|&r| r > 0);
    let nvlink = match (gpu.and_then(|g| g.nvlink_achievable), nvlink_rate) {
        (Some(a), Some(r)) if r.0 > 0 => (a.0 as f64 / r.0 as f64).min(1.0),
        _ => 1.0,
    };
    // The NIC the planner bills: the scenario's `nic-model`, else of several at the rate the
    // last (a catalog file's own).
    let nic_model = match fabric.nic_model.as_deref() {
        Some(name) => cat.nic_named(name),
        None => nic_rate.and_then(|r| cat.nic.iter().rev().find(|n| n.rate.0 == r && n.transport.is_none())),
    };
    let nic = nic_model.map_or(1.0, |n| n.efficiency());
    let sharp = fabric.nodes.iter().enumerate().filter(|(i, n)| !n.is_gpu() && !fabric.is_nvswitch(meshway_fabric::NodeId(*i as u32))).all(
        |(_, n)| matches!(n.kind, meshway_fabric::NodeKind::Switch { model, .. } if cat.switch.get(model as usize).is_some_and(|m| m.sharp)),
    );
    Hardware {
        gpu: name.to_string(),
        nvlink,
        nic,
        nvls: gpu.and_then(|g| g.nvls_efficiency),
        nvls_channels: gpu.and_then(|g| g.nvls_channels).unwrap_or(0),
        nvls_tree_max: gpu.map_or([0.0; 2], |g| two_byte_rates(&g.nvls_tree_channel_max)),
        collnet: if sharp { gpu.map(|g| g.collnet_efficiency.unwrap_or(1.0)) } else { None },
        nic_model: nic_model.map_or(String::new(), |n| n.name.clone()),
        protocols: nic_model.and_then(|n| n.protocols.clone()),
        net_latency: nic_model.and_then(|n| n.nccl_net_latency).unwrap_or(Nanos::ZERO),
        tuner_plugin: nic_model.and_then(|n| tuner_plugin(n.nccl_tuner_plugin.as_deref(), cat)),
        tree_net: nic_model.and_then(|n| n.tree_network_share).unwrap_or(1.0),
        ll_max: two_byte_rates(&cat.simulation.ll_max),
        nvls_chunk: nic_model.and_then(|n| n.nccl_nvls_chunk).map_or(NVLS_CHUNK, |b| b.0),
        nvls_tree_max_chunk: nic_model.and_then(|n| n.nccl_nvls_tree_max_chunk).map(|b| b.0),
    }
}

/// A catalog pair of rates (2 hosts, 3 or more) in bytes/s; 0 where absent.
fn two_byte_rates(rates: &[BitsPerSec]) -> [f64; 2] {
    let r = |i: usize| rates.get(i).map_or(0.0, |b| b.0 as f64 / 8.0);
    [r(0), r(1)]
}

/// The catalog's tuner plugin named `name`, as the tuner consults it.
pub fn tuner_plugin(
    name: Option<&str>,
    cat: &meshway_fabric::Catalog,
) -> Option<std::sync::Arc<crate::plugin::PluginTable>> {
    name.and_then(|n| cat.tuner_plugin_named(n))
        .map(|p| std::sync::Arc::new(crate::plugin::PluginTable::from_catalog(p)))
}

impl Default for Hardware {
    /// Line rates, no in-network reduction.
    fn default() -> Hardware {
        Hardware {
            gpu: String::new(),
            nvlink: 1.0,
            nic: 1.0,
            nvls: None,
            nvls_channels: 0,
            nvls_tree_max: [0.0; 2],
            collnet: None,
            nic_model: String::new(),
            protocols: None,
            net_latency: Nanos::ZERO,
            tuner_plugin: None,
            tree_net: 1.0,
            ll_max: [0.0; 2],
            nvls_chunk: NVLS_CHUNK,
            nvls_tree_max_chunk: None,
        }
    }
}

/// The achievable share of the line rate a message from `src` to `dst` gets: NVLink's
/// inside a host, else the NIC's, raised by port / link where a link of its path is slower
/// than the NIC port (up to 1).
pub(crate) fn share_of(topo: &mut dyn Topology, hw: &Hardware, src: u32, dst: u32) -> f64 {
    if topo.local(src, dst) {
        return hw.nvlink;
    }
    if !topo.has_links_slower_than_ports() {
        return hw.nic;
    }
    raised_share(hw.nic, topo.slower_than_port(src, dst, None))
}

/// The NIC's achievable `share` of its port, raised by port / link where the path's slowest
/// link (`slower`: port and link rate) is slower than the port, up to 1.
fn raised_share(share: f64, slower: Option<(BitsPerSec, BitsPerSec)>) -> f64 {
    match slower {
        Some((port, slowest)) => (share * port.0 as f64 / slowest.0.max(1) as f64).min(1.0),
        None => share,
    }
}

/// `bytes` carried at `share` of the line rate: the bytes a line-rate link must move.
pub(crate) fn at_share(bytes: u64, share: f64) -> u64 {
    if share > 0.0 && share < 1.0 {
        (bytes as f64 / share).ceil() as u64
    } else {
        bytes
    }
}

/// What an NVLink message pays without a protocol model (training steps, multi-site jobs),
/// whatever the network transport: NCCL's NVLink ring step with Simple, 3.4 us (NVIDIA/nccl
/// src/graph/tuning.cc hwLatencies, NCCL 2.30.7).
pub const TRANSPORT_NVLINK_ALPHA: Nanos = Nanos(3_400);

/// An NCCL protocol as the simulator applies it: bytes on the wire are `payload /
/// efficiency`; each step pays the NVLink or network step latency of the algorithm's table
/// (ring, or tree for the double binary tree), a network step at least the transport's
/// alpha; the collective completes a base latency after its last message.
#[derive(Debug, Clone, PartialEq)]
pub struct Proto {
    pub name: String,
    pub efficiency: f64,
    pub ring: [Nanos; 3],
    pub tree: [Nanos; 3],
    /// NVLS intra-host latency, NVLS-tree network step, CollNet network latency (None: the
    /// protocol cannot run those algorithms).
    pub nvls: Option<Nanos>,
    pub nvls_tree_step: Option<Nanos>,
    pub collnet: Option<Nanos>,
    /// Payload of a tree's pipeline chunk before NCCL shrinks it (0: no pipeline fill).
    pub tree_chunk: u64,
    /// Payload one connection has in flight per round trip (its buffer x efficiency); 0:
    /// NCCL_BUFFSIZE, the executor's collective window.
    pub window: u64,
    /// Ring steps a rank may have in flight on one channel (NCCL's step slots per chunk):
    /// only 1 / this of a step's latency follows the rank's previous send, the rest the
    /// chunk it forwards. 1: all of it after the previous send.
    pub ring_in_flight: u32,
}

impl Default for Proto {
    fn default() -> Proto {
        Proto::TRANSPORT
    }
}

impl Proto {
    /// No protocol model: every message pays the transport's alpha, payload only, no base
    /// latency (training steps and multi-site jobs, and collectives before protocols).
    pub const TRANSPORT: Proto = Proto {
        name: String::new(),
        efficiency: 1.0,
        ring: [Nanos::ZERO; 3],
        tree: [Nanos::ZERO; 3],
        nvls: None,
        nvls_tree_step: None,
        collnet: None,
        tree_chunk: 0,
        window: 0,
        ring_in_flight: 1,
    };

    /// From a catalog entry.
    pub fn from_model(p: &meshway_fabric::catalog::ProtocolModel) -> Proto {
        Proto {
            name: p.name.clone(),
            efficiency: p.efficiency,
            ring: [p.ring_base_latency, p.ring_nvlink_step, p.ring_network_step],
            tree: [p.tree_base_latency, p.tree_nvlink_step, p.tree_network_step],
            nvls: p.nvls_latency,
            nvls_tree_step: p.nvls_tree_network_step,
            collnet: p.collnet_latency,
            tree_chunk: p.tree_chunk.map_or(0, |b| b.0),
            ring_in_flight: p.ring_in_flight.unwrap_or(1).max(1),
            window: p.buffer.map_or(0, |b| (b.0 as f64 * p.efficiency.clamp(0.0, 1.0)).floor() as u64),
        }
    }

    pub fn is_transport(&self) -> bool {
        self.name.is_empty()
    }

    /// Bytes on the wire for `payload`.
    pub fn wire_bytes(&self, payload: u64) -> u64 {
        if self.efficiency >= 1.0 || self.efficiency <= 0.0 {
            payload
        } else {
            (payload as f64 / self.efficiency).ceil() as u64
        }
    }
}

impl CollSpec {
    fn table(&self) -> &[Nanos; 3] {
        if matches!(self.algo, Algo::Tree | Algo::NvlsTree) {
            &self.proto.tree
        } else {
            &self.proto.ring
        }
    }

    /// Latency of one step over NVLink (`local`) or the network.
    pub fn step_alpha(&self, local: bool) -> Nanos {
        self.step_alpha_floor(local, self.alpha)
    }

    /// [`CollSpec::step_alpha`], a network step at least `floor` (the transport's latency).
    fn step_alpha_floor(&self, local: bool, floor: Nanos) -> Nanos {
        if self.proto.is_transport() {
            return self.alpha;
        }
        let t = self.table();
        if local {
            t[1]
        } else if self.algo == Algo::NvlsTree {
            self.proto.nvls_tree_step.unwrap_or(t[2]).max(floor)
        } else {
            t[2].max(floor)
        }
    }

    /// The step latency NCCL's tuning model gives a message of a flat ring all-reduce,
    /// all-gather or reduce-scatter across hosts (NVIDIA/nccl src/graph/tuning.cc, NCCL
    /// 2.30.7): an NVLink step at least the network post overhead (three times it with
    /// Simple), since "inter-node rings still have to launch nsteps * net overhead"; with one
    /// GPU per host a network step is the tree's ("with ppn=1 latencies are fully exposed").
    /// Any other message: [`CollSpec::step_alpha`].
    pub fn ring_step_alpha(&self, local: bool, shape: HostShape) -> Nanos {
        self.ring_step_floor(local, shape, self.alpha)
    }

    /// The part of a ring step's latency ([`CollSpec::ring_step_alpha`]) that paces its rank:
    /// the protocol's step without the transport's one-way latency, which follows the chunk
    /// along the ring instead. They differ only where the transport's latency is above
    /// NCCL's network step (EFA's 20 us): AWS's tuner model for p5 charges that latency on a
    /// ring's network steps only, twice per host (aws/aws-ofi-nccl
    /// src/tuner/nccl_ofi_model.cpp, v1.16.3), not on every step of a rank.
    pub fn ring_step_own(&self, local: bool, shape: HostShape) -> Nanos {
        self.ring_step_floor(local, shape, Nanos::ZERO)
    }

    fn ring_step_floor(&self, local: bool, shape: HostShape, floor: Nanos) -> Nanos {
        let base = self.step_alpha_floor(local, floor);
        let ring = self.algo == Algo::Ring && matches!(self.op, Op::AllReduce | Op::AllGather | Op::ReduceScatter);
        let Some(o) = self.net_overhead else { return base };
        if !ring || shape.hosts < 2 || self.proto.is_transport() {
            return base;
        }
        if local {
            // NCCL multiplies the overhead by 3 for its Simple protocol (matched by the
            // catalog's name for it).
            base.max(Nanos(o.0.saturating_mul(if self.proto.name == "simple" { 3 } else { 1 })))
        } else if shape.one_per_host {
            self.proto.tree[2].max(floor)
        } else {
            base
        }
    }

    /// The protocol's base latency per collective (none for NVLS, NVLS-tree and CollNet,
    /// whose latency is their own, as in NCCL's tuning model).
    pub fn base_latency(&self) -> Nanos {
        if self.proto.is_transport() || matches!(self.algo, Algo::Nvls | Algo::NvlsTree | Algo::Collnet) {
            Nanos::ZERO
        } else {
            self.table()[0]
        }
    }
}

/// Pipelining of a hierarchical all-reduce: at most `depth` chunks of at least `chunk`
/// bytes per rank (catalog `[simulation] pipeline-depth`, `pipeline-chunk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pipeline {
    pub depth: u32,
    pub chunk: u64,
}

impl Default for Pipeline {
    /// The built-in catalog's values.
    fn default() -> Pipeline {
        Pipeline { depth: 8, chunk: 1 << 20 }
    }
}

impl Pipeline {
    /// Chunks for a buffer of `size` bytes over `g` ranks per host: as many as fit
    /// `chunk` bytes per rank, between 1 and `depth`.
    pub fn chunks(self, size: u64, g: u64) -> u64 {
        (size / g.max(1) / self.chunk.max(1)).clamp(1, u64::from(self.depth.max(1)))
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Built {
    /// A wait that completes when the collective has.
    pub done: MsgId,
    pub model: Model,
    /// Algorithm steps along the critical path.
    pub steps: u32,
}

/// A ring: members in order, and the relay for the edge from member i to member i+1.
struct Ring {
    members: Vec<u32>,
    via: Vec<Option<u32>>,
}

/// Groups `ranks` by host, keeping order. Returns None unless every host has the same number
/// of ranks, at least two hosts and two ranks each.
fn host_groups(topo: &dyn Topology, ranks: &[u32]) -> Option<Vec<Vec<u32>>> {
    let groups = by_host(topo, ranks)?;
    (groups.len() >= 2 && groups[0].len() >= 2).then_some(groups)
}

/// Where each rank sits, for PXN relays: its host group and local index.
struct Layout {
    groups: Vec<Vec<u32>>,
    at: std::collections::HashMap<u32, (usize, usize)>,
}

impl Layout {
    /// On hosts of several GPUs each.
    fn of(topo: &dyn Topology, ranks: &[u32]) -> Option<Layout> {
        let groups = by_host(topo, ranks).filter(|g| g[0].len() > 1)?;
        let at = groups
            .iter()
            .enumerate()
            .flat_map(|(h, grp)| grp.iter().enumerate().map(move |(l, &r)| (r, (h, l))))
            .collect();
        Some(Layout { groups, at })
    }

    /// The host-mate of `a` at `b`'s local index, when `b` is on another host and another
    /// rail: its NIC is on `b`'s rail.
    fn pxn(&self, a: u32, b: u32) -> Option<u32> {
        let (&(ha, la), &(hb, lb)) = (self.at.get(&a)?, self.at.get(&b)?);
        (ha != hb && la != lb).then(|| self.groups[ha][lb])
    }
}

/// Groups `ranks` by host, keeping order, when every host holds the same number of them
/// and a host's ranks are contiguous.
fn by_host(topo: &dyn Topology, ranks: &[u32]) -> Option<Vec<Vec<u32>>> {
    let mut groups: Vec<Vec<u32>> = Vec::new();
    let mut host = u32::MAX;
    for &r in ranks {
        let h = topo.host_of(r);
        if h != host || groups.is_empty() {
            if groups.iter().any(|g| topo.host_of(g[0]) == h) {
                return None; // a host's ranks are not contiguous
            }
            groups.push(Vec::new());
            host = h;
        }
        groups.last_mut()?.push(r);
    }
    let g = groups.first()?.len();
    groups.iter().all(|x| x.len() == g).then_some(groups)
}

/// `c` rings over `ranks`. On multi-GPU hosts ring `j` enters each host at local GPU `j`,
/// walks the host over NVLink, and leaves through a PXN relay: the last GPU hands its data to
/// the host's GPU `j`, whose NIC is on the rail of the next host's entry GPU.
fn rings(topo: &dyn Topology, ranks: &[u32], c: u32) -> Vec<Ring> {
    let Some(groups) = host_groups(topo, ranks) else {
        return (0..c).map(|_| Ring { members: ranks.to_vec(), via: vec![None; ranks.len()] }).collect();
    };
    let g = groups[0].len();
    (0..c as usize)
        .map(|j| {
            let mut members = Vec::with_capacity(ranks.len());
            let mut via = Vec::with_capacity(ranks.len());
            let e = j % g;
            for grp in &groups {
                for t in 0..g {
                    members.push(grp[(e + t) % g]);
                    via.push(if t + 1 == g && grp[(e + t) % g] != grp[e] { Some(grp[e]) } else { None });
                }
            }
            Ring { members, via }
        })
        .collect()
}

/// The largest zero-load edge latency of a set of edges.
fn max_edge_latency(
    topo: &mut dyn Topology,
    edges: impl Iterator<Item = (u32, u32, Option<u32>)>,
    packet: u64,
) -> Nanos {
    let mut seen = std::collections::BTreeSet::new();
    let mut worst = Nanos::ZERO;
    for (a, b, v) in edges {
        // Many edges repeat the same pair of hosts and rails: measure each triple once.
        if seen.insert((a, b, v)) {
            worst = worst.max(topo.edge_latency(a, b, v, packet));
        }
    }
    worst
}

/// Rings whose members each send `chunk` bytes per step for `steps` steps.
#[allow(clippy::too_many_arguments)]
fn ring_phase(
    prog: &mut Program,
    topo: &mut dyn Topology,
    rings: &[Ring],
    chunk: u64,
    steps: u32,
    after: &[MsgId],
    model: Model,
    spec: &CollSpec,
) -> MsgId {
    let n = rings.first().map_or(0, |r| r.members.len());
    if n < 2 || steps == 0 {
        return prog.barrier(after.to_vec(), Nanos::ZERO);
    }
    let mut last = Vec::new();
    match model {
        Model::Steps => {
            // A rank sends its steps one after another, each after its step latency; with
            // `w` steps in flight only 1/w of that latency follows its own previous send,
            // the rest follows the chunk it forwards: a step costs latency / w + its
            // transfer at the rank, and the whole latency along the chain of chunks.
            let w = spec.proto.ring_in_flight.clamp(1, 255);
            let shape = HostShape::of(&*topo, &spec.ranks);
            // The part of the step latency that follows the chunk, NVLink and network: all
            // but the rank's own part of it (less the transport's latency), of which it pays
            // 1/w after its previous send.
            let lead = |local: bool| {
                if spec.proto.is_transport() {
                    return 0;
                }
                let a = spec.ring_step_alpha(local, shape).0;
                a.saturating_sub(spec.ring_step_own(local, shape).0 / u64::from(w))
            };
            let (lead_nvlink, lead_net) = (lead(true), lead(false));
            for (ch, ring) in rings.iter().enumerate() {
                let mut prev: Vec<MsgId> = Vec::new();
                for _ in 0..steps {
                    let mut cur = Vec::with_capacity(n);
                    for i in 0..n {
                        let mut m = Msg::send(ring.members[i], ring.members[(i + 1) % n], chunk);
                        m.via = ring.via[i];
                        m.channel = ch as u32;
                        if prev.is_empty() {
                            m.deps = after.to_vec();
                        } else {
                            let src = prev[(i + n - 1) % n];
                            let local = ring.via[i].is_none() && topo.local(m.src, m.dst);
                            let lead = if local { lead_nvlink } else { lead_net };
                            let chunk_in = if lead > 0 {
                                let mut lw = Msg::wait(vec![src], Nanos(lead));
                                lw.latency_wait = true;
                                prog.push(lw)
                            } else {
                                src
                            };
                            m.deps = vec![chunk_in, prev[i]];
                            if lead > 0 {
                                m.alpha_div = w as u8;
                            }
                        }
                        cur.push(prog.push(m));
                    }
                    prev = cur;
                }
                last.extend(prev);
            }
            prog.barrier(last, Nanos::ZERO)
        }
        Model::Steady | Model::Direct => {
            let mut worst = 0u64;
            let shape = HostShape::of(&*topo, &spec.ranks);
            for (ch, ring) in rings.iter().enumerate() {
                let mut lats = Vec::with_capacity(n);
                let mut own_lats = Vec::with_capacity(n);
                for i in 0..n {
                    let (a, b) = (ring.members[i], ring.members[(i + 1) % n]);
                    let mut m = Msg::send(a, b, chunk.saturating_mul(u64::from(steps)));
                    m.via = ring.via[i];
                    m.channel = ch as u32;
                    m.deps = after.to_vec();
                    last.push(prog.push(m));
                    let local = ring.via[i].is_none() && topo.local(a, b);
                    // A step's first packet is at most its chunk.
                    let edge = topo.edge_latency(a, b, ring.via[i], spec.packet.min(chunk.max(1))).0;
                    lats.push(edge + spec.ring_step_alpha(local, shape).0);
                    own_lats.push(edge + spec.ring_step_own(local, shape).0);
                }
                // The chain of chunks, or the slowest rank's steps paced one after another
                // (as step by step: its message pays the first step's whole latency, each
                // later step its own part of it), whichever is longer.
                let paced = paced_latency(&own_lats, steps.saturating_sub(1), spec.proto.ring_in_flight);
                worst = worst.max(chain_latency(&mut lats, steps)).max(paced);
            }
            // Each message already pays one step latency and its own path latency.
            prog.barrier(last, Nanos(worst))
        }
    }
}

/// Latency along the dependency chain of `steps` ring steps: step k at rank i waits for step
/// k-1 at rank i-1, so the chain walks consecutive edges: whole laps plus the slowest
/// remaining edges, less the one edge the message itself already pays (its cheapest).
fn chain_latency(lats: &mut [u64], steps: u32) -> u64 {
    let n = lats.len() as u64;
    if n == 0 || steps == 0 {
        return 0;
    }
    let lap: u64 = lats.iter().sum();
    let (laps, rest) = (u64::from(steps) / n, (u64::from(steps) % n) as usize);
    lats.sort_unstable_by(|a, b| b.cmp(a));
    let tail: u64 = lats[..rest].iter().sum();
    let min = *lats.last().unwrap_or(&0);
    (laps * lap + tail).saturating_sub(min)
}

/// Latency of a ring whose slowest rank paces it: the rank's steps one after another, each
/// after 1 / `in_flight` of its step latency (its transfers are the flows').
fn paced_latency(lats: &[u64], steps: u32, in_flight: u32) -> u64 {
    let Some(&slow) = lats.iter().max() else { return 0 };
    slow.saturating_mul(u64::from(steps)) / u64::from(in_flight.max(1))
}

fn pick_model(spec: &CollSpec, msgs_if_steps: u64) -> Result<Model, CollectiveError> {
    let model = spec.model.unwrap_or(if msgs_if_steps <= spec.steps_limit { Model::Steps } else { Model::Steady });
    // Step by step asked for where it writes more messages than a run may hold (1,024 GPUs
    // of a 1 GiB ring took 16 GB; 16,384 ran out of memory).
    if model == Model::Steps && msgs_if_steps > MAX_MESSAGES {
        return Err(CollectiveError::TooManySteps {
            op: spec.op.name(),
            ranks: spec.ranks.len(),
            messages: msgs_if_steps,
            max: MAX_MESSAGES,
        });
    }
    Ok(model)
}

/// The most messages one collective may write (an all-to-all on n GPUs writes n (n - 1)):
/// 9 million. A message and its flow take about 900 bytes while they run (an all-to-all of
/// 20 million on 4,472 GPUs peaked at 17-18.5 GB, 9 million on 3,000 at 7.7 GB), so this
/// keeps a run near 8 GB.
pub const MAX_MESSAGES: u64 = 9_000_000;

/// Writes `spec` into `prog`, starting after `after`, with its protocol: message bytes on
/// the wire, a step latency per message by link kind, and the base latency at the end.
pub fn build(
    prog: &mut Program,
    topo: &mut dyn Topology,
    spec: &CollSpec,
    after: &[MsgId],
) -> Result<Built, CollectiveError> {
    let first = prog.msgs.len();
    // A NIC with a port in each of several planes is that many NICs to NCCL: as many
    // channels per port, channel c leaving by plane c / g (g GPUs per host).
    let planes = topo.planes().max(1);
    let widened;
    let spec = if planes > 1 {
        widened = CollSpec { channels: spec.channels.max(1).saturating_mul(planes), ..spec.clone() };
        &widened
    } else {
        spec
    };
    // GPUs per host, for the plane of a channel (only multi-plane fabrics need it).
    let g = if planes > 1 { by_host(&*topo, &spec.ranks).map_or(1, |x| x[0].len().max(1)) as u32 } else { 1 };
    let mut built = build_steps(prog, topo, spec, after)?;
    let transport = spec.proto.is_transport();
    let shape = HostShape::of(&*topo, &spec.ranks);
    let slow_links = topo.has_links_slower_than_ports();
    let mut slow_paths: std::collections::HashMap<(u32, u32, u32), Option<(BitsPerSec, BitsPerSec)>> =
        std::collections::HashMap::new();
    for m in &mut prog.msgs[first..] {
        // Every send across the network is an NCCL connection's, with its buffer as window
        // (the executor bounds the rate where the path is long).
        if !m.is_wait() && m.leg == Leg::Path {
            m.window = match spec.proto.window {
                0 => crate::program::Window::Collective,
                w => crate::program::Window::Buffer(w),
            };
        }
        // Messages to and from a reducing switch were written with their own rates.
        if m.is_wait() || m.leg != Leg::Path || m.alpha().is_some() {
            continue;
        }
        let local = m.via.is_none() && topo.local(m.src, m.dst);
        let payload = m.bytes;
        // The NIC's achievable share is of its port: behind a slower link it binds only as
        // far as the port's share is below that link (a 384 of 400 Gb/s NIC behind a 100G
        // link runs at 100G, not 96G).
        // A tree's sends across hosts reach the NIC model's tree share of its port (not of
        // a slower link behind it). NVLS-tree's trees across hosts keep the NIC's share.
        let nic = spec.hw.nic_share(spec.algo);
        let share = if local {
            spec.hw.nvlink
        } else if !slow_links {
            nic
        } else {
            // Per pair, not per host pair: a host's GPUs leave by different NIC ports.
            let key = (m.src, m.dst, m.via.unwrap_or(u32::MAX));
            let slower = *slow_paths.entry(key).or_insert_with(|| topo.slower_than_port(m.src, m.dst, m.via));
            raised_share(nic, slower)
        };
        m.bytes = at_share(m.bytes, share);
        // A writer that split a message over the planes set each part's.
        if !local && planes > 1 && m.plane.is_none() {
            m.plane = Some(((m.channel / g) % planes) as u16);
        }
        if !transport {
            m.bytes = spec.proto.wire_bytes(m.bytes);
            m.set_alpha(match m.alpha_div {
                0 => spec.ring_step_alpha(local, shape),
                n => Nanos(spec.ring_step_own(local, shape).0 / u64::from(n)),
            });
        } else if local {
            // A network transport's alpha is for the network: an NVLink message of a training
            // step pays NCCL's NVLink step, whatever the transport (EFA's 20 us made a one-host
            // TP step 3x InfiniBand's).
            m.set_alpha(TRANSPORT_NVLINK_ALPHA);
        }
        // The window holds payload, and the per-message output gives it.
        m.payload = payload.max(1);
    }
    if !transport {
        let fill = if spec.algo == Algo::Tree && spec.op == Op::AllReduce {
            tree_fill(prog, first, &*topo, spec, built.steps)
        } else if spec.algo == Algo::NvlsTree && spec.hw.nvls_channels > 0 {
            nvls_tree_fill(prog, first, &*topo, spec)
        } else {
            Nanos::ZERO
        };
        let mut ends = vec![built.done];
        // NCCL's ceiling on LL across hosts: the collective takes at least its bus bytes over
        // it (its model's llMaxBw, on the ring's and the tree's bus bandwidth).
        let max = spec.hw.ll_max[usize::from(shape.hosts > 2)];
        if spec.proto.name == "ll" && shape.hosts > 1 && max > 0.0 && matches!(spec.algo, Algo::Ring | Algo::Tree) {
            // NCCL turns a tree's bus bandwidth into the algorithm's at half (tuning.cc), a
            // ring's at n / steps: the op's bus factor.
            let f = if spec.algo == Algo::Tree { 2.0 } else { spec.op.busbw_factor(spec.ranks.len()) };
            let bus = spec.size as f64 * f;
            ends.push(prog.barrier(after.to_vec(), Nanos((bus / max * 1e9).round() as u64)));
        }
        built.done = prog.barrier(ends, spec.base_latency() + fill);
    }
    Ok(built)
}

/// The chunk NCCL pipelines a tree all-reduce of `spec` in, on `channels` tree channels:
/// the protocol's step payload, which LL128 halves while the message gives each channel too
/// few chunks for the tree's steps (NVIDIA/nccl src/enqueue.cc calcCollChunking, NCCL
/// 2.30.7: `nstepsLL128 = 1 + log2(nodes) + 0.1 x ppn`; halved while `bytes / (channels x
/// chunk)` is below `64 x nstepsLL128 / ppn` and the chunk above 128 KiB, then below `16 x
/// nstepsLL128 / ppn` and above 32 KiB). Simple and LL keep their step payload.
pub fn tree_chunk(spec: &CollSpec, nodes: u64, channels: u64) -> u64 {
    let mut chunk = spec.proto.tree_chunk;
    if spec.proto.name == "ll128" && chunk > 0 {
        let nodes = nodes.max(1);
        let ppn = spec.ranks.len() as f64 / nodes as f64;
        let steps = 1.0 + f64::from(nodes.ilog2()) + 0.1 * ppn;
        let c = channels.max(1);
        let few = |chunk: u64, k: f64| ((spec.size / c.saturating_mul(chunk)) as f64) < k * steps / ppn;
        while chunk > 131_072 && few(chunk, 64.0) {
            chunk /= 2;
        }
        while chunk > 32_768 && few(chunk, 16.0) {
            chunk /= 2;
        }
    }
    chunk
}

/// A pipelined tree's fill: the first chunk of each channel crosses `steps` stages before
/// the pipeline streams, so the collective takes `steps - 1` stage times more than its
/// steady state. A stage moves one chunk one hop; the busiest GPU port (NVLink or NIC, each
/// direction, at zero load, from the messages just written) moves two per channel and
/// chunk of data (one up, one down), so a stage takes half the busiest port's steady-state
/// time over the chunks each channel carries (NCCL's chunks of [`tree_chunk`] bytes, at
/// least one). NCCL's tree channels are the trees [`tree`] writes: two per channel on
/// multi-GPU hosts (as NCCL doubles its channels, half on each tree), two in all otherwise.
fn tree_fill(prog: &Program, first: usize, topo: &dyn Topology, spec: &CollSpec, steps: u32) -> Nanos {
    let nodes = {
        let mut h: Vec<u32> = spec.ranks.iter().map(|&r| topo.host_of(r)).collect();
        h.sort_unstable();
        h.dedup();
        h.len() as u64
    };
    let channels = if host_groups(topo, &spec.ranks).is_some() { 2 * u64::from(spec.channels.max(1)) } else { 2 };
    let chunk = tree_chunk(spec, nodes, channels);
    if chunk == 0 || steps < 2 {
        return Nanos::ZERO;
    }
    let chunks = spec.size.div_ceil(channels).div_ceil(chunk).max(1);
    stage_fill(u64::from(steps), 2, port_seconds(prog, first, topo), chunks)
}

/// `stages - 1` stage times, a stage being `1 / per_loop` of a loop of the busiest port
/// (whose steady state, `busiest` seconds, is `loops` loops per channel).
fn stage_fill(stages: u64, per_loop: u64, busiest: f64, loops: u64) -> Nanos {
    let stage = busiest / (per_loop.max(1) * loops.max(1)) as f64;
    Nanos((stages.saturating_sub(1) as f64 * stage * 1e9).round() as u64)
}

/// Seconds the busiest GPU port (NVLink or NIC, out or in) needs at line rate for the
/// messages from `first` on, at zero load. Ports the topology cannot name are skipped.
fn port_seconds(prog: &Program, first: usize, topo: &dyn Topology) -> f64 {
    use std::collections::HashMap;
    // (rank, NIC?, in?, plane) -> bytes; a NIC message on no particular plane may use any.
    let mut load: HashMap<(u32, bool, bool, Option<u16>), u64> = HashMap::new();
    for m in &prog.msgs[first..] {
        if m.is_wait() {
            continue;
        }
        let mut add = |r: u32, nic: bool, inbound: bool| {
            *load.entry((r, nic, inbound, if nic { m.plane } else { None })).or_default() += m.bytes
        };
        match m.leg {
            Leg::Path => {
                let mut legs = Vec::with_capacity(2);
                match m.via {
                    Some(v) => legs.extend([(m.src, v), (v, m.dst)]),
                    None => legs.push((m.src, m.dst)),
                }
                for (a, b) in legs {
                    let nic = !topo.local(a, b);
                    add(a, nic, false);
                    add(b, nic, true);
                }
            }
            Leg::NvlinkUp => add(m.src, false, false),
            Leg::NvlinkDown => add(m.dst, false, true),
            Leg::NicUp => add(m.src, true, false),
            Leg::NicDown => add(m.dst, true, true),
        }
    }
    let planes = topo.planes().max(1);
    let mut worst = 0.0f64;
    for (&(r, nic, inbound, plane), &bytes) in &load {
        let leg = match (nic, inbound) {
            (false, false) => Leg::NvlinkUp,
            (false, true) => Leg::NvlinkDown,
            (true, false) => Leg::NicUp,
            (true, true) => Leg::NicDown,
        };
        // One plane's port for a message pinned to it; every port otherwise.
        let ports: Vec<u32> = match (nic, plane) {
            (true, Some(p)) => vec![u32::from(p)],
            (true, None) => (0..planes).collect(),
            (false, _) => vec![0],
        };
        let mut arcs: Vec<Arc> = ports.into_iter().filter_map(|c| topo.attach(r, leg, c)).collect();
        arcs.sort_unstable_by_key(|a| a.0);
        arcs.dedup();
        let bps: f64 = arcs.iter().map(|&a| topo.arc_spec(a).0 .0 as f64).sum();
        if bps > 0.0 {
            worst = worst.max(bytes as f64 * 8.0 / bps);
        }
    }
    worst
}

/// [`build`] without the protocol (the messages as the algorithm writes them).
fn build_steps(
    prog: &mut Program,
    topo: &mut dyn Topology,
    spec: &CollSpec,
    after: &[MsgId],
) -> Result<Built, CollectiveError> {
    let n = spec.ranks.len();
    if n < 2 {
        return Err(CollectiveError::TooFewRanks { ranks: n });
    }
    let c = spec.channels.max(1);
    let nn = n as u64;
    let chunk = spec.size.div_ceil(nn * u64::from(c)).max(1);
    match (spec.op, spec.algo) {
        (Op::AllToAll | Op::SendRecv, a) if a != Algo::Direct => {
            Err(CollectiveError::DirectOnly { op: spec.op.name(), algorithm: a.name() })
        }
        (Op::Broadcast, Algo::Direct) => Err(CollectiveError::NotDirect { op: "broadcast", algorithms: "ring" }),
        (Op::AllReduce, Algo::Direct) => Err(CollectiveError::NotDirect {
            op: "all-reduce",
            algorithms: "ring, tree, halving-doubling, hierarchical, site-hierarchical, nvls, nvls-tree or collnet",
        }),
        (Op::AllGather | Op::ReduceScatter, Algo::Direct) => {
            Err(CollectiveError::NotDirect { op: spec.op.name(), algorithms: "ring or nvls" })
        }
        (Op::Broadcast, a) if a != Algo::Ring => Err(CollectiveError::NotModeled {
            op: "broadcast",
            algorithm: a.name(),
            hint: "broadcast is modeled as a pipelined ring chain",
        }),
        (Op::AllToAll, _) => {
            let messages = nn * (nn - 1) * u64::from(topo.planes().max(1));
            if messages > MAX_MESSAGES {
                return Err(CollectiveError::TooManyMessages {
                    op: "all-to-all",
                    ranks: n,
                    messages,
                    max: MAX_MESSAGES,
                });
            }
            let bytes = spec.size.div_ceil(nn).max(1);
            // PXN, as NCCL does on multi-GPU hosts: a message to another host goes over
            // NVLink to the sender's host-mate at the receiver's local index, whose NIC is on
            // the receiver's rail, and leaves there; each message uses one NIC.
            let layout = Layout::of(&*topo, &spec.ranks);
            let relay = |a: u32, b: u32| layout.as_ref().and_then(|l| l.pxn(a, b));
            let mut all = Vec::with_capacity(n * (n - 1));
            for (i, &a) in spec.ranks.iter().enumerate() {
                for k in 1..n {
                    let b = spec.ranks[(i + k) % n];
                    let mut m = Msg::send(a, b, bytes);
                    m.via = relay(a, b);
                    m.deps = after.to_vec();
                    all.extend(push_on_planes(prog, &*topo, m));
                }
            }
            Ok(Built { done: prog.barrier(all, Nanos::ZERO), model: Model::Direct, steps: 1 })
        }
        (Op::SendRecv, _) => {
            let mut all = Vec::with_capacity(n);
            for i in 0..n {
                let mut m = Msg::send(spec.ranks[i], spec.ranks[(i + 1) % n], spec.size.max(1));
                m.deps = after.to_vec();
                all.extend(push_on_planes(prog, &*topo, m));
            }
            Ok(Built { done: prog.barrier(all, Nanos::ZERO), model: Model::Direct, steps: 1 })
        }
        (Op::Broadcast, _) => {
            // A pipelined chain from the first rank: steady-state flows along the ring.
            let rs = rings(topo, &spec.ranks, c);
            let chunk = spec.size.div_ceil(u64::from(c)).max(1);
            let mut last = Vec::new();
            let mut worst = 0u64;
            for (ch, ring) in rs.iter().enumerate() {
                let mut lats = Vec::with_capacity(n);
                for i in 0..n - 1 {
                    let (a, b) = (ring.members[i], ring.members[i + 1]);
                    let mut m = Msg::send(a, b, chunk);
                    m.via = ring.via[i];
                    m.channel = ch as u32;
                    m.deps = after.to_vec();
                    last.push(prog.push(m));
                    // Each hop pays its own step: NVLink's inside a host, the network's across
                    // (every hop paid the network's, so a one-host broadcast took EFA's 20 us
                    // per GPU).
                    let local = ring.via[i].is_none() && topo.local(a, b);
                    lats.push(topo.edge_latency(a, b, ring.via[i], spec.packet).0 + spec.step_alpha(local).0);
                }
                // The chain's last chunk crosses every edge once; one hop's latency is its
                // own message's.
                let sum: u64 = lats.iter().sum();
                worst = worst.max(sum.saturating_sub(lats.iter().copied().min().unwrap_or(0)));
            }
            let term = Nanos(worst);
            Ok(Built { done: prog.barrier(last, term), model: Model::Steady, steps: (n - 1) as u32 })
        }
        (Op::AllReduce | Op::AllGather | Op::ReduceScatter, Algo::Ring) => {
            let steps = if spec.op == Op::AllReduce { 2 * (n - 1) } else { n - 1 } as u32;
            let rs = rings(topo, &spec.ranks, c);
            let model = pick_model(spec, u64::from(steps) * nn * u64::from(c))?;
            let done = ring_phase(prog, topo, &rs, chunk, steps, after, model, spec);
            Ok(Built { done, model, steps })
        }
        (Op::AllReduce, Algo::Tree) => Ok(tree(prog, topo, spec, after)),
        (Op::AllReduce | Op::AllGather | Op::ReduceScatter, Algo::Nvls) => nvls(prog, topo, spec, after),
        (Op::AllReduce, Algo::NvlsTree | Algo::Collnet) => in_network(prog, topo, spec, after),
        (Op::AllReduce, Algo::HalvingDoubling) => halving_doubling(prog, &*topo, spec, after),
        (Op::AllReduce, Algo::Hierarchical) => hierarchical(prog, topo, spec, after),
        (Op::AllReduce, Algo::SiteHierarchical) => {
            let sites: Vec<u32> = (0..topo.ranks() as u32).map(|r| topo.site_of(r)).collect();
            let flat = CollSpec { algo: Algo::Ring, net_overhead: None, ..spec.clone() };
            site_all_reduce(prog, topo, &flat, &sites, after)
        }
        (op, algo) => Err(CollectiveError::NotModeled {
            op: op.name(),
            algorithm: algo.name(),
            hint: "all-gather and reduce-scatter use ring, or nvls inside one host",
        }),
    }
}

/// Double binary tree: NCCL's two binary trees ([`tree_edges`]), so a rank interior in one
/// is a leaf in the other; pipelined reduce up and broadcast down, written as
/// steady-state flows on every edge plus `2 x depth` latency terms. On multi-GPU hosts, as
/// NCCL does, the trees span hosts: channel `c` runs both trees over the hosts' GPU
/// `c mod g` (its NIC, so channels spread over the rails), half of its `1/c` of the data on
/// each, and a chain through the host's other GPUs over NVLink. Otherwise the trees span
/// the ranks and carry half the data each.
fn tree(prog: &mut Program, topo: &mut dyn Topology, spec: &CollSpec, after: &[MsgId]) -> Built {
    let mut last = Vec::new();
    let mut edges = Vec::new();
    // Trees over hosts of one GPU each write no channel per plane: their sends spread over
    // the planes (multi-GPU hosts' channels pick the plane, see [`build`]).
    let spread = host_groups(&*topo, &spec.ranks).is_none();
    let mut send =
        |prog: &mut Program, a: u32, b: u32, bytes: u64, ch: u32, edges: &mut Vec<(u32, u32, Option<u32>)>| {
            let mut m = Msg::send(a, b, bytes);
            m.channel = ch;
            m.deps = after.to_vec();
            if spread {
                last.extend(push_on_planes(prog, &*topo, m));
            } else {
                last.push(prog.push(m));
            }
            edges.push((a, b, None));
        };
    let ranks_of = |order: &[u32], t: u32| -> Vec<(u32, u32)> {
        tree_edges(order.len(), t).into_iter().map(|(c, p)| (order[c], order[p])).collect()
    };
    let (depth, chain) = match host_groups(&*topo, &spec.ranks) {
        Some(groups) => {
            let g = groups[0].len();
            let c = spec.channels.max(1);
            let bytes = spec.size.div_ceil(u64::from(c)).max(1);
            let half = bytes.div_ceil(2).max(1);
            for ch in 0..c {
                // Both trees, half of the channel's bytes each, as NCCL pairs channel c with
                // channel c + nChannels on the mirrored tree.
                let leaders: Vec<u32> = groups.iter().map(|grp| grp[ch as usize % g]).collect();
                for t in 0..2 {
                    for (child, parent) in ranks_of(&leaders, t) {
                        send(prog, child, parent, half, ch, &mut edges);
                        send(prog, parent, child, half, ch, &mut edges);
                    }
                }
                for grp in &groups {
                    let chain: Vec<u32> = (0..g).map(|k| grp[(ch as usize + k) % g]).collect();
                    for w in chain.windows(2) {
                        send(prog, w[1], w[0], bytes, ch, &mut edges);
                        send(prog, w[0], w[1], bytes, ch, &mut edges);
                    }
                }
            }
            (usize::BITS - groups.len().leading_zeros() - 1, (g - 1) as u32)
        }
        None => {
            let half = spec.size.div_ceil(2).max(1);
            for t in 0..2u32 {
                for (child, parent) in ranks_of(&spec.ranks, t) {
                    send(prog, child, parent, half, t, &mut edges);
                    send(prog, parent, child, half, t, &mut edges);
                }
            }
            (usize::BITS - spec.ranks.len().leading_zeros() - 1, 0)
        }
    };
    let steps = 2 * (depth + chain).max(1);
    let lat = max_edge_latency(topo, edges.into_iter(), spec.packet).0;
    // 2 x depth network steps and 2 x chain NVLink steps, less the one the message pays.
    let (net, nv) = (spec.step_alpha(false).0 + lat, spec.step_alpha(true).0 + lat);
    let term = Nanos(
        (net.saturating_mul(2 * u64::from(depth)) + nv.saturating_mul(2 * u64::from(chain)))
            .max(net.saturating_mul(2))
            .saturating_sub(net),
    );
    Built { done: prog.barrier(last, term), model: Model::Steady, steps }
}

/// The (child, parent) positions of tree `t` (0 or 1) of NCCL's double binary tree over
/// `n` positions in order. Tree 0: position 0 is the root; any other position's parent
/// clears its lowest set bit and sets the next one up (for example 5 -> 6, 6 -> 4), or only
/// clears it when that would leave the range, so most edges join near neighbours and the
/// depth is about log2(n) (the latency terms and the fill count floor(log2 n) levels, as
/// NCCL's tuning model and its tree depth do). Tree 1 is tree 0 mirrored (position p as
/// n - 1 - p) when n is even, shifted by one position when n is odd, so a position interior
/// in one tree is a leaf in the other (the structure of NVIDIA/nccl src/graph/trees.cc).
fn tree_edges(n: usize, t: u32) -> Vec<(usize, usize)> {
    let parent = |r: usize| {
        let bit = r & r.wrapping_neg();
        let up = (r ^ bit) | (bit << 1);
        if up >= n {
            r ^ bit
        } else {
            up
        }
    };
    let map = |p: usize| match t {
        0 => p,
        _ if n.is_multiple_of(2) => n - 1 - p,
        _ => (p + 1) % n,
    };
    (1..n).map(|r| (map(r), map(parent(r)))).collect()
}

fn unsupported(algo: Algo, why: impl Into<String>) -> CollectiveError {
    CollectiveError::Unsupported { algorithm: algo.name(), why: why.into() }
}

/// The NVLS efficiency of the hardware, or why it has none.
fn nvls_efficiency(spec: &CollSpec) -> Result<f64, CollectiveError> {
    spec.hw.nvls.ok_or_else(|| {
        let gpu =
            if spec.hw.gpu.is_empty() { "this GPU model".to_string() } else { format!("GPU model {:?}", spec.hw.gpu) };
        unsupported(
            spec.algo,
            format!("{gpu} has no NVLink SHARP (NVLS needs a catalog [[gpu]] with nvls-efficiency: H100, H200, B200)"),
        )
    })
}

/// The CollNet efficiency of the hardware, or why it has none.
fn collnet_efficiency(spec: &CollSpec) -> Result<f64, CollectiveError> {
    spec.hw.collnet.ok_or_else(|| {
        unsupported(
            spec.algo,
            if spec.algo == Algo::Nvls {
                "across hosts NVLS reduces in the network switches too, and the fabric's switches do not (it needs switch models with sharp = true, such as quantum2-qm9700); nvls-tree reduces in the NVSwitch and runs a tree across hosts"
            } else {
                "the fabric's switches do not reduce (CollNet needs switch models with sharp = true, such as quantum2-qm9700)"
            },
        )
    })
}

/// A latency the protocol gives for this algorithm, or why it cannot run it.
fn proto_latency(spec: &CollSpec, lat: Option<Nanos>) -> Result<Nanos, CollectiveError> {
    if spec.proto.is_transport() {
        return Ok(Nanos::ZERO);
    }
    lat.ok_or_else(|| {
        unsupported(spec.algo, format!("NCCL runs it with protocol simple only, not {}", spec.proto.name))
    })
}

/// Messages between every rank of `ranks` and its NVSwitch (`up` bytes in, `down` out) or
/// its leaf switch (`nic`), at `share` of the line rate, spread over `channels` ports.
#[allow(clippy::too_many_arguments)]
fn legs(
    prog: &mut Program,
    ranks: &[u32],
    nic: bool,
    up: u64,
    down: u64,
    share: f64,
    channels: u32,
    after: &[MsgId],
    out: &mut Vec<MsgId>,
) {
    let (lu, ld) = if nic { (Leg::NicUp, Leg::NicDown) } else { (Leg::NvlinkUp, Leg::NvlinkDown) };
    let c = u64::from(channels.max(1));
    for &r in ranks {
        for ch in 0..c {
            for (leg, bytes) in [(lu, up), (ld, down)] {
                let part = bytes / c + u64::from(ch < bytes % c);
                if part == 0 {
                    continue;
                }
                let mut m = Msg::leg(r, leg, at_share(part, share));
                m.channel = ch as u32;
                m.set_alpha(Nanos::ZERO);
                m.deps = after.to_vec();
                out.push(prog.push(m));
            }
        }
    }
}

/// Checks that every rank has the link a leg needs.
fn check_attach(topo: &dyn Topology, spec: &CollSpec, leg: Leg, what: &str) -> Result<(), CollectiveError> {
    match spec.ranks.iter().find(|&&r| topo.attach(r, leg, 0).is_none()) {
        Some(&r) => Err(unsupported(spec.algo, format!("{} has no {what}", topo.rank_name(r)))),
        None => Ok(()),
    }
}

/// NVLS inside one host: every GPU sends into the NVSwitch what the switch reduces (and
/// the share it multicasts) and receives the result: all-reduce `S + S/g` each way,
/// reduce-scatter `S` in and `S/g` out, all-gather `S/g` in and `S` out, at the achievable
/// NVLink rate times NCCL's NVLS efficiency; then the protocol's NVLS latency. Across
/// hosts NVLS runs with CollNet, as NCCL's does ([`in_network`]).
fn nvls(
    prog: &mut Program,
    topo: &mut dyn Topology,
    spec: &CollSpec,
    after: &[MsgId],
) -> Result<Built, CollectiveError> {
    let eff = nvls_efficiency(spec)?;
    let groups = by_host(&*topo, &spec.ranks)
        .ok_or_else(|| unsupported(spec.algo, "every host must hold the same number of the ranks, in a row"))?;
    if groups.len() > 1 {
        if spec.op != Op::AllReduce {
            return Err(unsupported(spec.algo, "across hosts NVLS runs all-reduce only"));
        }
        return in_network(prog, topo, spec, after);
    }
    let lat = proto_latency(spec, spec.proto.nvls)?;
    check_attach(&*topo, spec, Leg::NvlinkUp, "NVLink into an NVSwitch")?;
    let (s, g) = (spec.size, spec.ranks.len() as u64);
    let (up, down) = match spec.op {
        Op::AllReduce => (s + s / g, s + s / g),
        Op::ReduceScatter => (s, s / g),
        _ => (s / g, s),
    };
    let mut all = Vec::with_capacity(2 * spec.ranks.len());
    let first = prog.msgs.len();
    legs(prog, &spec.ranks, false, up, down, spec.hw.nvlink * eff, 1, after, &mut all);
    let fill = if spec.proto.is_transport() { Nanos::ZERO } else { nvls_fill(prog, first, &*topo, spec) };
    Ok(Built { done: prog.barrier(all, lat + fill), model: Model::Steady, steps: 1 })
}

/// NCCL's NVLS chunk inside one NVLink domain for a message of `size` bytes: its NVLS
/// chunk size (`start`: NCCL_NVLS_CHUNKSIZE, 128 KiB by default; at most one 512 KiB step of
/// the Simple buffer), cut to 64, 32 and 16 KiB as the message gives fewer chunks to each of
/// the `channels x heads` concurrent operations (NVIDIA/nccl src/enqueue.cc calcCollChunking
/// and src/transport/nvls.cc, NCCL 2.30.7).
pub fn nvls_chunk(size: u64, channels: u64, heads: u64, start: u64) -> u64 {
    let ops = channels.max(1) * heads.max(1);
    cut_chunk(size, ops, start.clamp(1, NVLS_STEP), &[(64, 64 << 10), (8, 32 << 10), (2, 16 << 10)])
}

/// NCCL's chunk cuts (src/enqueue.cc calcCollChunking): in order, a chunk above `cut` becomes
/// `cut` when the message is below `k` x `ops` concurrent operations x the chunk so far.
fn cut_chunk(size: u64, ops: u64, start: u64, cuts: &[(u64, u64)]) -> u64 {
    cuts.iter().fold(start, |chunk, &(k, cut)| if size < k * ops * chunk && chunk > cut { cut } else { chunk })
}

/// The NVLS pipeline's fill inside one NVLink domain: each channel moves loops of one chunk
/// per head (every GPU of the domain, at most NCCL's 32) through its stages (all-reduce:
/// scatter into the switch, reduce and multicast, gather out; reduce-scatter and
/// all-gather: two), so the collective takes `stages - 1` loop times more than its steady
/// state. A loop time is the busiest NVLink port's time over the loops per channel.
fn nvls_fill(prog: &Program, first: usize, topo: &dyn Topology, spec: &CollSpec) -> Nanos {
    let c = u64::from(spec.hw.nvls_channels);
    if c == 0 {
        return Nanos::ZERO;
    }
    let heads = (spec.ranks.len() as u64).min(32);
    let stages = if spec.op == Op::AllReduce { 3 } else { 2 };
    let chunk = nvls_chunk(spec.size, c, heads, spec.hw.nvls_chunk);
    let loops = spec.size.div_ceil(c).div_ceil(heads * chunk);
    stage_fill(stages, 1, port_seconds(prog, first, topo), loops)
}

/// All-reduce across hosts with a reduction in a switch, pipelined over chunks as the
/// hierarchical all-reduce is (NVLS-tree with a protocol and a GPU model with
/// `nvls-channels` runs in its steady state instead: [`nvls_tree_steady`]): inside each host
/// a reduce-scatter and an all-gather (NVLS for `nvls` and `nvls-tree`, a ring for
/// `collnet`); across hosts each GPU's shard is reduced in the SHARP switches (`nvls`,
/// `collnet`: the shard goes up the GPU's NIC and the result comes back, at the achievable
/// NIC rate times NCCL's CollNet factor) or by a double binary tree over the GPUs of one
/// local index (`nvls-tree`). The switches above the leaf carry one reduced stream per
/// leaf, never more than a NIC; they are not simulated. The collective ends the protocol's NVLS and CollNet latencies after its last
/// message.
fn in_network(
    prog: &mut Program,
    topo: &mut dyn Topology,
    spec: &CollSpec,
    after: &[MsgId],
) -> Result<Built, CollectiveError> {
    let nv = matches!(spec.algo, Algo::Nvls | Algo::NvlsTree);
    let sharp = matches!(spec.algo, Algo::Nvls | Algo::Collnet);
    let nv_eff = if nv { nvls_efficiency(spec)? } else { 1.0 };
    let cn_eff = if sharp { collnet_efficiency(spec)? } else { 1.0 };
    let mut lat = Nanos::ZERO;
    if nv {
        lat += proto_latency(spec, spec.proto.nvls)?;
    }
    if sharp {
        lat += proto_latency(spec, spec.proto.collnet)?;
    }
    let groups = host_groups(&*topo, &spec.ranks).ok_or_else(|| {
        unsupported(spec.algo, "needs at least 2 hosts with the same number (at least 2) of the ranks each")
    })?;
    if nv {
        check_attach(&*topo, spec, Leg::NvlinkUp, "NVLink into an NVSwitch")?;
    }
    if sharp {
        check_attach(&*topo, spec, Leg::NicUp, "NIC")?;
    }
    let g = groups[0].len();
    if spec.algo == Algo::NvlsTree && !spec.proto.is_transport() && spec.hw.nvls_channels > 0 {
        return nvls_tree_steady(prog, topo, spec, after, &groups, nv_eff, lat);
    }
    let k = spec.pipeline.chunks(spec.size, g as u64);
    let part = spec.size.div_ceil(k).max(1);
    let shard = part.div_ceil(g as u64).max(1);
    let intra: Vec<Ring> = groups.iter().map(|grp| Ring { members: grp.clone(), via: vec![None; g] }).collect();
    let model = pick_model(spec, k * 2 * (g as u64 - 1) * spec.ranks.len() as u64)?;
    let nv_share = spec.hw.nvlink * nv_eff;
    let mut steps = 1u32;
    let mut prev_a: Vec<MsgId> = after.to_vec();
    let mut dones = Vec::with_capacity(k as usize);
    for _ in 0..k {
        // Inside each host: reduce-scatter of the part.
        let a = if nv {
            let mut m = Vec::new();
            legs(prog, &spec.ranks, false, part, shard, nv_share, 1, &prev_a, &mut m);
            prog.barrier(m, Nanos::ZERO)
        } else {
            ring_phase(prog, topo, &intra, shard, (g - 1) as u32, &prev_a, model, spec)
        };
        // Across hosts: each shard reduced in the network or by a tree.
        let b = if sharp {
            let mut m = Vec::new();
            legs(prog, &spec.ranks, true, shard, shard, spec.hw.nic * cn_eff, spec.channels, &[a], &mut m);
            prog.barrier(m, Nanos::ZERO)
        } else {
            let mut trees = Vec::with_capacity(g);
            for j in 0..g {
                let ranks: Vec<u32> = groups.iter().map(|grp| grp[j]).collect();
                let sub = CollSpec { ranks, size: shard, ..spec.clone() };
                let t = tree(prog, topo, &sub, &[a]);
                steps = t.steps;
                trees.push(t.done);
            }
            prog.barrier(trees, Nanos::ZERO)
        };
        // Inside each host: all-gather of the part.
        let c = if nv {
            let mut m = Vec::new();
            legs(prog, &spec.ranks, false, shard, part, nv_share, 1, &[b], &mut m);
            prog.barrier(m, Nanos::ZERO)
        } else {
            ring_phase(prog, topo, &intra, shard, (g - 1) as u32, &[b], model, spec)
        };
        dones.push(c);
        prev_a = vec![a];
    }
    let intra_steps = if nv { 2 } else { 2 * (g - 1) as u32 };
    Ok(Built { done: prog.barrier(dones, lat), model: Model::Steady, steps: intra_steps + steps })
}

/// NVLS-tree as NCCL pipelines it, in its steady state: the NVLS reduce-scatter and
/// all-gather inside each host and each GPU's shard on a double binary tree across hosts
/// (one tree per local index), all at once, as NCCL's chunks keep every stage busy, and
/// never faster than NCCL's NVLS-tree ceiling; then the NVLS and tree latencies and the
/// pipeline's fill ([`nvls_tree_fill`], charged by [`build`]). NCCL's NVLS-tree stages:
/// NVLS in, up and down the tree across hosts (2 x log2 hosts), NVLS out; a channel's loop
/// is one chunk per head (a GPU with its NIC, at most 32) of [`nvls_tree_chunk`] bytes over
/// the GPU model's NVLS channels.
fn nvls_tree_steady(
    prog: &mut Program,
    topo: &mut dyn Topology,
    spec: &CollSpec,
    after: &[MsgId],
    groups: &[Vec<u32>],
    nv_eff: f64,
    lat: Nanos,
) -> Result<Built, CollectiveError> {
    let g = groups[0].len();
    let (s, shard) = (spec.size, spec.size.div_ceil(g as u64).max(1));
    let nv_share = spec.hw.nvlink * nv_eff;
    let mut all = Vec::new();
    // Inside each host: NVLS reduce-scatter (S in, S/g out) and all-gather (S/g in, S out).
    legs(prog, &spec.ranks, false, s + shard, shard + s, nv_share, 1, after, &mut all);
    // NCCL's ceiling on NVLS-tree bus bandwidth: heads x its per-channel figure, so the
    // collective lasts at least its bus bytes over that.
    let max = spec.hw.nvls_tree_max[usize::from(groups.len() > 2)] * (g as f64).min(32.0);
    if max > 0.0 {
        let n = spec.ranks.len() as f64;
        let bus = s as f64 * 2.0 * (n - 1.0) / n;
        all.push(prog.barrier(after.to_vec(), Nanos((bus / max * 1e9).round() as u64)));
    }
    let mut steps = 2u32;
    for j in 0..g {
        let ranks: Vec<u32> = groups.iter().map(|grp| grp[j]).collect();
        let sub = CollSpec { ranks, size: shard, ..spec.clone() };
        let t = tree(prog, topo, &sub, after);
        steps = 2 + t.steps;
        all.push(t.done);
    }
    Ok(Built { done: prog.barrier(all, lat), model: Model::Steady, steps })
}

/// NVLS-tree's pipeline fill ([`nvls_tree_steady`]), from the messages written from
/// `first` on with their final bytes: `stages - 1` stage times, a stage moving one chunk of
/// a channel one hop, and the busiest port moving two chunks per channel and loop each way
/// (a double binary tree's node is interior in one tree and a leaf in the other: three
/// chunks and one, two on average), so a stage takes half a loop of the busiest port.
fn nvls_tree_fill(prog: &Program, first: usize, topo: &dyn Topology, spec: &CollSpec) -> Nanos {
    let Some(groups) = host_groups(topo, &spec.ranks) else {
        return Nanos::ZERO;
    };
    let (g, hosts) = (groups[0].len() as u64, groups.len() as u64);
    let stages = 2 + 2 * u64::from(hosts.ilog2());
    let c = u64::from(spec.hw.nvls_channels);
    let heads = g.min(32);
    let chunk = nvls_tree_chunk(spec.size, c, heads, hosts, spec.hw.nvls_chunk, spec.hw.nvls_tree_max_chunk);
    let loops = spec.size.div_ceil(c).div_ceil(heads * chunk);
    stage_fill(stages, 2, port_seconds(prog, first, topo), loops)
}

/// NCCL's NVLS-tree chunk for a message of `size` bytes on `channels x heads` concurrent
/// operations across `hosts` hosts: its NVLS chunk (`nvls`), at most `tree_max`
/// (NCCL_NVLSTREE_MAX_CHUNKSIZE; by default, before Blackwell, the NVLS chunk on 2 or 3 hosts
/// and 64 KiB from 4), cut to 256, 128, 64 and 32 KiB as the message gives fewer chunks to each operation
/// (NVIDIA/nccl src/enqueue.cc calcCollChunking and src/transport/nvls.cc ncclNvlsTuning,
/// NCCL 2.30.7).
pub fn nvls_tree_chunk(size: u64, channels: u64, heads: u64, hosts: u64, nvls: u64, tree_max: Option<u64>) -> u64 {
    let ops = channels.max(1) * heads.max(1);
    let max = tree_max.unwrap_or(if hosts >= 4 { 64 << 10 } else { nvls });
    cut_chunk(size, ops, nvls.min(max).max(1), &[(32, 256 << 10), (16, 128 << 10), (4, 64 << 10), (1, 32 << 10)])
}

/// Pushes `m`, split into one part per network plane with its plane set when the fabric has
/// several and `m` crosses hosts (a NIC with a port in each plane is that many NICs to NCCL,
/// and a send to a peer spreads over its channels and so its ports); whole otherwise. The
/// parts' ids.
fn push_on_planes(prog: &mut Program, topo: &dyn Topology, m: Msg) -> Vec<MsgId> {
    let planes = topo.planes().max(1);
    if planes == 1 || topo.host_of(m.src) == topo.host_of(m.dst) {
        return vec![prog.push(m)];
    }
    let part = m.bytes.div_ceil(u64::from(planes)).max(1);
    (0..planes)
        .map(|p| {
            let mut x = m.clone();
            x.bytes = part;
            x.plane = Some(p as u16);
            prog.push(x)
        })
        .collect()
}

/// Recursive halving (reduce-scatter) then doubling (all-gather), step by step.
fn halving_doubling(
    prog: &mut Program,
    topo: &dyn Topology,
    spec: &CollSpec,
    after: &[MsgId],
) -> Result<Built, CollectiveError> {
    let n = spec.ranks.len();
    if !n.is_power_of_two() {
        return Err(CollectiveError::NotPowerOfTwo { ranks: n });
    }
    let log = n.trailing_zeros();
    // Per rank: the message it sent and the one it received in the previous step (its parts
    // on a multi-plane fabric).
    let mut sent: Vec<Vec<MsgId>> = vec![Vec::new(); n];
    let mut recv: Vec<Vec<MsgId>> = vec![Vec::new(); n];
    let mut step = |prog: &mut Program, d: usize, bytes: u64| {
        let mut ns = vec![Vec::new(); n];
        let mut nr = vec![Vec::new(); n];
        for i in 0..n {
            let j = i ^ d;
            let mut m = Msg::send(spec.ranks[i], spec.ranks[j], bytes.max(1));
            m.deps = if sent[i].is_empty() { after.to_vec() } else { [&sent[i][..], &recv[i][..]].concat() };
            let ids = push_on_planes(prog, topo, m);
            ns[i].clone_from(&ids);
            nr[j] = ids;
        }
        sent = ns;
        recv = nr;
    };
    for k in 0..log {
        step(prog, n >> (k + 1), spec.size >> (k + 1));
    }
    for k in 0..log {
        step(prog, 1 << k, (spec.size / n as u64) << k);
    }
    let last: Vec<MsgId> = sent.iter().chain(recv.iter()).flatten().copied().collect();
    Ok(Built { done: prog.barrier(last, Nanos::ZERO), model: Model::Steps, steps: 2 * log })
}

/// Intra-host reduce-scatter over NVLink, inter-host all-reduce of each GPU's shard across
/// its rail, intra-host all-gather.
fn hierarchical(
    prog: &mut Program,
    topo: &mut dyn Topology,
    spec: &CollSpec,
    after: &[MsgId],
) -> Result<Built, CollectiveError> {
    let groups = host_groups(&*topo, &spec.ranks).ok_or(CollectiveError::UnevenHosts)?;
    let g = groups[0].len();
    let h = groups.len();
    let c = spec.channels.max(1);
    // The buffer in pipeline chunks: chunk k's reduce-scatter follows chunk k-1's, and its
    // all-reduce and all-gather follow only its own previous phase, so the host-local
    // phases of one chunk overlap the inter-host phase of another.
    let k = spec.pipeline.chunks(spec.size, g as u64);
    let part = spec.size.div_ceil(k).max(1);
    let shard = part.div_ceil(g as u64).max(1);
    let intra: Vec<Ring> = groups.iter().map(|grp| Ring { members: grp.clone(), via: vec![None; g] }).collect();
    // Ring k of rail j is channel k x g + j: its NIC is GPU j's, its plane k.
    let mut inter = Vec::new();
    for _ in 0..c {
        for j in 0..g {
            let members: Vec<u32> = groups.iter().map(|grp| grp[j]).collect();
            inter.push(Ring { members, via: vec![None; h] });
        }
    }
    let steps2 = 2 * (h - 1) as u32;
    let chunk2 = shard.div_ceil(h as u64 * u64::from(c)).max(1);
    // One granularity for all phases, from the messages of the whole collective.
    let msgs = k * (2 * (g as u64 - 1) + u64::from(steps2) * u64::from(c)) * spec.ranks.len() as u64;
    let (m1, m2) = (pick_model(spec, msgs)?, pick_model(spec, msgs)?);
    let mut prev_rs: Vec<MsgId> = after.to_vec();
    let mut dones = Vec::with_capacity(k as usize);
    for _ in 0..k {
        // Phase 1: each host's ring reduce-scatter, g-1 steps of shard bytes.
        let p1 = ring_phase(prog, topo, &intra, shard, (g - 1) as u32, &prev_rs, m1, spec);
        // Phase 2: per rail, a ring all-reduce of the shard across hosts (c channels each).
        let p2 = ring_phase(prog, topo, &inter, chunk2, steps2, &[p1], m2, spec);
        // Phase 3: each host's ring all-gather.
        dones.push(ring_phase(prog, topo, &intra, shard, (g - 1) as u32, &[p2], m1, spec));
        prev_rs = vec![p1];
    }
    let done = if dones.len() == 1 { dones[0] } else { prog.barrier(dones, Nanos::ZERO) };
    let model = if m1 == Model::Steps && m2 == Model::Steps { Model::Steps } else { Model::Steady };
    Ok(Built { done, model, steps: 2 * (g - 1) as u32 + steps2 })
}

/// Groups `ranks` by their site (`site_of_rank[rank]`), sites in order of first appearance,
/// ranks in their given order.
pub fn site_groups(site_of_rank: &[u32], ranks: &[u32]) -> Vec<Vec<u32>> {
    let mut order: Vec<u32> = Vec::new();
    let mut groups: Vec<Vec<u32>> = Vec::new();
    for &r in ranks {
        let s = site_of_rank.get(r as usize).copied().unwrap_or(0);
        match order.iter().position(|&x| x == s) {
            Some(i) => groups[i].push(r),
            None => {
                order.push(s);
                groups.push(vec![r]);
            }
        }
    }
    groups
}

/// An all-reduce of `spec` (its op must be all-reduce), hierarchical by site: intra-site
/// reduce-scatter, cross-site all-reduce of each shard, intra-site all-gather (see [`crate::multisite`]'s module docs).
/// Ranks all at one site fall back to `spec` as given.
pub fn site_all_reduce(
    prog: &mut Program,
    topo: &mut dyn Topology,
    spec: &CollSpec,
    site_of_rank: &[u32],
    after: &[MsgId],
) -> Result<Built, CollectiveError> {
    if spec.op != Op::AllReduce {
        return Err(CollectiveError::SiteHierarchicalNeedsAllReduce { op: spec.op.name() });
    }
    let groups = site_groups(site_of_rank, &spec.ranks);
    if groups.len() < 2 {
        return build(prog, topo, spec, after);
    }
    let g = groups[0].len();
    if let Some(bad) = groups.iter().find(|x| x.len() != g) {
        return Err(CollectiveError::UnevenSites { first: g, other: bad.len() });
    }
    let sub = |op: Op, size: u64, ranks: Vec<u32>| CollSpec {
        op,
        algo: Algo::Ring,
        size,
        ranks,
        net_overhead: None,
        ..spec.clone()
    };
    let mut steady = false;
    let mut steps = 0u32;
    // Phase 1: every site reduce-scatters the whole buffer over its own fabric.
    let gate1 = if g > 1 {
        let mut dones = Vec::with_capacity(groups.len());
        for grp in &groups {
            let b = build(prog, topo, &sub(Op::ReduceScatter, spec.size, grp.clone()), after)?;
            steady |= b.model != Model::Steps;
            steps = b.steps;
            dones.push(b.done);
        }
        vec![prog.barrier(dones, Nanos::ZERO)]
    } else {
        after.to_vec()
    };
    // Phase 2: rank j of every site all-reduces shard j across the sites.
    let shard = spec.size.div_ceil(g as u64).max(1);
    let mut dones = Vec::with_capacity(g);
    let mut steps2 = 0;
    for j in 0..g {
        let members: Vec<u32> = groups.iter().map(|grp| grp[j]).collect();
        let b = build(prog, topo, &sub(Op::AllReduce, shard, members), &gate1)?;
        steady |= b.model != Model::Steps;
        steps2 = b.steps;
        dones.push(b.done);
    }
    let gate2 = prog.barrier(dones, Nanos::ZERO);
    // Phase 3: every site all-gathers the buffer.
    let done = if g > 1 {
        let mut dones = Vec::with_capacity(groups.len());
        for grp in &groups {
            let b = build(prog, topo, &sub(Op::AllGather, spec.size, grp.clone()), &[gate2])?;
            steady |= b.model != Model::Steps;
            dones.push(b.done);
        }
        prog.barrier(dones, Nanos::ZERO)
    } else {
        gate2
    };
    Ok(Built { done, model: if steady { Model::Steady } else { Model::Steps }, steps: 2 * steps + steps2 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree's share is of the NIC's port: behind a link slower than that share of the
    /// port, the link binds, as it does for the NIC's achievable share.
    #[test]
    fn a_trees_nic_share_is_of_the_port_not_of_a_slower_link() {
        let hw = Hardware { nic: 0.96, tree_net: 0.5, ..Hardware::default() };
        let port = BitsPerSec(400_000_000_000);
        assert_eq!(hw.nic_share(Algo::Tree), 0.48);
        assert_eq!((hw.nic_share(Algo::Ring), hw.nic_share(Algo::NvlsTree)), (0.96, 0.96));
        // 192 of 400 Gb/s: behind a 200G link the tree runs at 192G, behind a 100G link at
        // the link's 100G.
        let behind = |gbps: u64| raised_share(hw.nic_share(Algo::Tree), Some((port, BitsPerSec(gbps * 1_000_000_000))));
        assert!((behind(200) * 200.0 - 192.0).abs() < 1e-9, "{}", behind(200));
        assert_eq!(behind(100), 1.0);
        assert_eq!(raised_share(hw.nic_share(Algo::Tree), None), 0.48);
    }

    fn spec(proto: &str, chunk: u64, size: u64, ranks: u32, channels: u32) -> CollSpec {
        CollSpec {
            op: Op::AllReduce,
            algo: Algo::Tree,
            size,
            ranks: (0..ranks).collect(),
            channels,
            model: None,
            steps_limit: 0,
            alpha: Nanos::ZERO,
            packet: 4096,
            pipeline: Pipeline::default(),
            proto: Proto { name: proto.into(), tree_chunk: chunk, ..Proto::TRANSPORT },
            hw: Hardware::default(),
            net_overhead: None,
        }
    }

    #[test]
    fn tree_chunks_follow_nccls_rules() {
        // Simple and LL keep their step payload at any size.
        assert_eq!(tree_chunk(&spec("simple", 512 << 10, 1 << 20, 16, 8), 2, 8), 512 << 10);
        assert_eq!(tree_chunk(&spec("ll", 32 << 10, 8, 16, 8), 2, 8), 32 << 10);
        // LL128, 2 nodes of 8 (nsteps = 1 + 1 + 0.8 = 2.8; thresholds 22.4 and 5.6 chunks
        // per channel), 16 channels, 16 MiB: 576,000 -> 288,000 -> 144,000 -> 72,000 (the
        // first rule stops at 128 KiB); 16 MiB / (16 x 72,000) = 14 chunks, above 5.6.
        assert_eq!(tree_chunk(&spec("ll128", 576_000, 16 << 20, 16, 16), 2, 16), 72_000);
        // 1 MiB: 0 chunks per channel at 72,000, so on to 36,000 and 18,000 (the second rule
        // stops at 32 KiB).
        assert_eq!(tree_chunk(&spec("ll128", 576_000, 1 << 20, 16, 16), 2, 16), 18_000);
        // 8 GiB: 8 GiB / (16 x 576,000) = 932 chunks, above both thresholds.
        assert_eq!(tree_chunk(&spec("ll128", 576_000, 8 << 30, 16, 16), 2, 16), 576_000);
        // No chunk in the protocol: no pipeline.
        assert_eq!(tree_chunk(&spec("ll128", 0, 1 << 20, 16, 16), 2, 16), 0);
    }

    #[test]
    fn double_binary_trees_are_nccls() {
        // 8 positions: 0-4, 4-2, 4-6, 2-1, 2-3, 6-5, 6-7 (children of 2^k sit at +-2^(k-1)).
        let mut t0 = tree_edges(8, 0);
        t0.sort_unstable();
        assert_eq!(t0, vec![(1, 2), (2, 4), (3, 2), (4, 0), (5, 6), (6, 4), (7, 6)]);
        // Even n: tree 1 mirrors tree 0, so the root is 7 and 4 (interior in tree 0) a leaf.
        let t1 = tree_edges(8, 1);
        assert!(t1.contains(&(3, 7)) && !t1.iter().any(|&(_, p)| p == 4));
        // 13 positions: 8's parent would be 16, out of range, so it is 0; 12's is 8; tree 1
        // is shifted by one.
        assert!(tree_edges(13, 0).contains(&(8, 0)) && tree_edges(13, 0).contains(&(12, 8)));
        assert!(tree_edges(13, 1).contains(&(0, 9)));
        // Every position but the root has one parent, in both trees, for any n.
        for n in 2..70 {
            for t in 0..2 {
                let e = tree_edges(n, t);
                let mut kids: Vec<usize> = e.iter().map(|&(c, _)| c).collect();
                kids.sort_unstable();
                kids.dedup();
                assert_eq!(kids.len(), n - 1, "n {n} tree {t}");
                assert!(e.iter().all(|&(c, p)| c < n && p < n && c != p));
            }
        }
    }

    #[test]
    fn nvls_tree_chunks_follow_nccls_rules() {
        // 16 channels x 8 heads = 128 operations; NCCL's defaults: 128 KiB below 4 hosts, 64
        // KiB from 4 up.
        let d = |size: u64, hosts: u64| nvls_tree_chunk(size, 16, 8, hosts, NVLS_CHUNK, None);
        assert_eq!(d(1 << 30, 2), 128 << 10);
        assert_eq!(d(1 << 30, 4), 64 << 10);
        assert_eq!(d(32 << 20, 2), 64 << 10); // below 4 x 128 x 128 KiB
        assert_eq!(d(4 << 20, 8), 32 << 10); // below 1 x 128 x 64 KiB
        assert_eq!(d(8 << 20, 8), 64 << 10);
        // aws-ofi-nccl on p5: NCCL_NVLS_CHUNKSIZE and NCCL_NVLSTREE_MAX_CHUNKSIZE 512 KiB, on
        // any number of hosts.
        let p5 = |size: u64, hosts: u64| nvls_tree_chunk(size, 16, 8, hosts, 512 << 10, Some(512 << 10));
        assert_eq!(p5(4 << 30, 2), 512 << 10);
        assert_eq!(p5(2 << 30, 32), 512 << 10); // not below 32 x 128 x 512 KiB = 2 GiB
        assert_eq!(p5((2 << 30) - 1, 2), 256 << 10);
        assert_eq!(p5(512 << 20, 4), 256 << 10); // not below 16 x 128 x 256 KiB = 512 MiB
        assert_eq!(p5(256 << 20, 2), 128 << 10); // not below 4 x 128 x 128 KiB = 64 MiB
        assert_eq!(p5(32 << 20, 2), 64 << 10); // not below 1 x 128 x 64 KiB = 8 MiB
        assert_eq!(p5(4 << 20, 2), 32 << 10);
        // A plugin's NVLS chunk alone: NCCL's 64 KiB tree maximum still holds from 4 hosts.
        assert_eq!(nvls_tree_chunk(4 << 30, 16, 8, 2, 512 << 10, None), 512 << 10);
        assert_eq!(nvls_tree_chunk(4 << 30, 16, 8, 4, 512 << 10, None), 64 << 10);
        // A tree maximum above the NVLS chunk: the NVLS chunk.
        assert_eq!(nvls_tree_chunk(4 << 30, 16, 8, 4, NVLS_CHUNK, Some(512 << 10)), 128 << 10);
    }

    #[test]
    fn nvls_chunks_follow_nccls_rules() {
        // 16 channels x 8 heads = 128 concurrent operations.
        let c = |size: u64| nvls_chunk(size, 16, 8, NVLS_CHUNK);
        assert_eq!(c(8 << 30), 128 << 10);
        assert_eq!(c(1 << 30), 128 << 10); // 1 GiB is not below 64 x 128 x 128 KiB
        assert_eq!(c((1 << 30) - 1), 64 << 10);
        assert_eq!(c(256 << 20), 64 << 10); // not below 8 x 128 x 64 KiB = 64 MiB
        assert_eq!(c(16 << 20), 32 << 10); // below 64 MiB, not below 2 x 128 x 32 KiB = 8 MiB
        assert_eq!(c(1 << 20), 16 << 10);
        // From a plugin's 512 KiB: kept from 64 x 128 x 512 KiB = 4 GiB, else straight to 64.
        let p5 = |size: u64| nvls_chunk(size, 16, 8, 512 << 10);
        assert_eq!(p5(4 << 30), 512 << 10);
        assert_eq!(p5((4 << 30) - 1), 64 << 10);
        // Never above one step of the Simple buffer, where NCCL starts NVLS.
        assert_eq!(nvls_chunk(64 << 30, 16, 8, 4 << 20), 512 << 10);
        assert_eq!(c(8), 16 << 10);
    }
}
