//! The fabric graph: nodes (GPUs and switches), physical links, adjacency.
//!
//! A physical link is full duplex: `rate` is the capacity of each direction. Directed arcs,
//! as the simulator needs them, are numbered `2 * link` (from `a` to `b`) and `2 * link + 1`
//! (from `b` to `a`).

use meshway_units::{BitsPerSec, Meters, Nanos};
use serde::Serialize;
use std::collections::BTreeMap;

/// Index of a node in [`Fabric::nodes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NodeId(pub u32);

/// Index of a physical link in [`Fabric::links`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct LinkId(pub u32);

impl NodeId {
    pub fn idx(self) -> usize {
        self.0 as usize
    }
}
impl LinkId {
    pub fn idx(self) -> usize {
        self.0 as usize
    }
}

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum NodeKind {
    /// A GPU with its own NIC port(s); `host` numbers the server it sits in.
    Gpu { host: u32, local: u32 },
    /// A switch at `tier` (an index into [`Fabric::tiers`]) of catalog model `model`, with
    /// `radix` ports at the rate its links run.
    Switch { tier: u8, model: u16, radix: u32 },
}

/// One node of the graph.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    /// Site index (multi-site fabrics), 0 otherwise.
    pub site: u16,
    /// Plane index (multi-plane fabrics), 0 otherwise.
    pub plane: u16,
}

impl Node {
    pub fn is_gpu(&self) -> bool {
        matches!(self.kind, NodeKind::Gpu { .. })
    }
    pub fn tier(&self) -> Option<u8> {
        match self.kind {
            NodeKind::Switch { tier, .. } => Some(tier),
            NodeKind::Gpu { .. } => None,
        }
    }
}

/// The role of a link, used for counting, lengths and optics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkClass {
    /// GPU NIC to its first switch.
    Nic,
    /// GPU to the intra-host NVLink switch.
    Nvlink,
    /// Leaf (access, edge, rail leaf, border leaf) to spine (aggregation).
    LeafSpine,
    /// Spine (aggregation) to core (super-spine).
    SpineCore,
    /// Between sites, over coherent optics.
    Dci,
    /// Listed by hand in a custom fabric.
    Custom,
}

impl LinkClass {
    pub fn name(self) -> &'static str {
        match self {
            LinkClass::Nic => "nic",
            LinkClass::Nvlink => "nvlink",
            LinkClass::LeafSpine => "leaf-spine",
            LinkClass::SpineCore => "spine-core",
            LinkClass::Dci => "dci",
            LinkClass::Custom => "custom",
        }
    }
}

/// A full-duplex physical link.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub a: NodeId,
    pub b: NodeId,
    pub rate: BitsPerSec,
    pub length: Meters,
    pub class: LinkClass,
    /// Explicit optic (catalog index) for DCI links; chosen by length otherwise.
    pub optic: Option<u16>,
    /// One-way latency given by the scenario, in place of the cable's propagation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Nanos>,
}

impl Link {
    /// The end that is not `n` (or `a` if `n` is neither).
    pub fn other(&self, n: NodeId) -> NodeId {
        if self.a == n {
            self.b
        } else {
            self.a
        }
    }
}

/// A tier of switches, lowest level first.
#[derive(Debug, Clone, Serialize)]
pub struct Tier {
    pub name: String,
    /// 0 for the NVLink domain, 1 for leaves, 2 for spines, 3 for cores.
    pub level: u8,
}

/// A named group of GPUs and switches that a structural bisection never splits
/// (a pod, a rail group, a site).
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub name: String,
    pub nodes: Vec<NodeId>,
}

/// An NVLink (scale-up) domain larger than one host, as an NVL72 rack: the GPUs of a domain
/// share one NVLink switch node (`host` of a GPU numbers its domain), which stands for the
/// domain's switch trays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScaleUp {
    /// GPUs per domain.
    pub gpus: u32,
    /// GPUs per host (compute tray); the scale-out rails are a tray's GPU positions.
    pub gpus_per_host: u32,
    /// Catalog switch model of the trays.
    pub model: u16,
    /// Switch trays per domain: the domain's NVLink ports over a tray's ports.
    pub trays: u32,
    /// NVLink links per GPU: its NVLink rate over the tray's port rate.
    pub links_per_gpu: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// A built fabric: the graph plus what the builder knows about its structure.
#[derive(Debug, Clone, Serialize)]
pub struct Fabric {
    pub name: String,
    /// The family that built it ("leaf-spine", "multi-site", ...).
    pub family: String,
    pub tiers: Vec<Tier>,
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    /// Site names, one per site (one unnamed site for single-site fabrics).
    pub sites: Vec<String>,
    /// Groups for the structural bisection split and how they are named ("pod", "rail group").
    pub groups: Vec<Group>,
    pub group_kind: String,
    pub planes: u16,
    /// Ports per leaf held for spare hosts (`backup-ports`): counted as used, not cabled here.
    #[serde(skip_serializing_if = "is_zero")]
    pub backup_ports: u32,
    /// Leaf ports cabled to management appliances (`management-ports`), in the whole fabric.
    #[serde(skip_serializing_if = "is_zero")]
    pub management_ports: u32,
    /// What one host cage carries (`host-cage-rate`), when the scenario sets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_cage_rate: Option<meshway_units::BitsPerSec>,
    /// NVLink domains larger than a host, when the scenario sets `nvlink-domain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScaleUp>,
    /// The GPU model the scenario names (a catalog [[gpu]]); None: the catalog's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// The NIC model the scenario names (a catalog [[nic]]); None: the catalog's last NIC of
    /// the GPUs' NIC rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nic_model: Option<String>,
    /// Switching latency of every switch of a site, by site index, where the scenario gives
    /// one (`switch-latency`, or its transport's `hop-latency`); the switch model's elsewhere.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub switch_latency: Vec<(u16, Nanos)>,
    #[serde(skip)]
    adj_start: Vec<u32>,
    #[serde(skip)]
    adj: Vec<(NodeId, LinkId)>,
}

impl Fabric {
    pub fn new(name: &str, family: &str) -> Fabric {
        Fabric {
            name: name.to_string(),
            family: family.to_string(),
            tiers: Vec::new(),
            nodes: Vec::new(),
            links: Vec::new(),
            sites: vec![String::new()],
            groups: Vec::new(),
            group_kind: String::new(),
            planes: 1,
            scale_up: None,
            host_cage_rate: None,
            backup_ports: 0,
            management_ports: 0,
            gpu: None,
            nic_model: None,
            switch_latency: Vec::new(),
            adj_start: Vec::new(),
            adj: Vec::new(),
        }
    }

    /// Adds a tier (or returns the existing one with this name).
    pub fn tier(&mut self, name: &str, level: u8) -> u8 {
        if let Some(i) = self.tiers.iter().position(|t| t.name == name) {
            return i as u8;
        }
        self.tiers.push(Tier { name: name.to_string(), level });
        (self.tiers.len() - 1) as u8
    }

    pub fn add_node(&mut self, name: String, kind: NodeKind) -> NodeId {
        self.nodes.push(Node { name, kind, site: 0, plane: 0 });
        NodeId((self.nodes.len() - 1) as u32)
    }

    pub fn add_link(&mut self, a: NodeId, b: NodeId, rate: BitsPerSec, length: Meters, class: LinkClass) -> LinkId {
        self.links.push(Link { a, b, rate, length, class, optic: None, latency: None });
        LinkId((self.links.len() - 1) as u32)
    }

    /// One-way latency of link `l`: the scenario's, or its cable's propagation at `per_km`.
    /// The one place plan, simulate, testbed and multi-site read a link's latency from.
    pub fn link_latency(&self, l: LinkId, per_km: Nanos) -> Nanos {
        let link = self.link(l);
        link.latency.unwrap_or_else(|| link.length.propagation(per_km))
    }

    /// The scenario's switching latency for switches of `site`, if it gives one.
    pub fn site_switch_latency(&self, site: u16) -> Option<Nanos> {
        self.switch_latency.iter().find(|&&(s, _)| s == site).map(|&(_, l)| l)
    }

    pub fn node(&self, n: NodeId) -> &Node {
        &self.nodes[n.idx()]
    }
    pub fn link(&self, l: LinkId) -> &Link {
        &self.links[l.idx()]
    }

    /// Builds the adjacency index; builders call it once the graph is complete.
    pub fn finish(&mut self) {
        let n = self.nodes.len();
        let mut deg = vec![0u32; n + 1];
        for l in &self.links {
            deg[l.a.idx()] += 1;
            deg[l.b.idx()] += 1;
        }
        let mut start = vec![0u32; n + 1];
        for i in 0..n {
            start[i + 1] = start[i] + deg[i];
        }
        let mut fill = start.clone();
        let mut adj = vec![(NodeId(0), LinkId(0)); self.links.len() * 2];
        for (i, l) in self.links.iter().enumerate() {
            let id = LinkId(i as u32);
            adj[fill[l.a.idx()] as usize] = (l.b, id);
            fill[l.a.idx()] += 1;
            adj[fill[l.b.idx()] as usize] = (l.a, id);
            fill[l.b.idx()] += 1;
        }
        self.adj_start = start;
        self.adj = adj;
    }

    /// Neighbours of `n` with the link to each. Empty before [`Fabric::finish`].
    pub fn neighbors(&self, n: NodeId) -> &[(NodeId, LinkId)] {
        match (self.adj_start.get(n.idx()), self.adj_start.get(n.idx() + 1)) {
            (Some(&s), Some(&e)) => &self.adj[s as usize..e as usize],
            _ => &[],
        }
    }

    pub fn gpus(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes.iter().enumerate().filter(|(_, n)| n.is_gpu()).map(|(i, _)| NodeId(i as u32))
    }

    /// Whether link `l` is a NIC port: a NIC link, or a custom link between a switch and
    /// an endpoint.
    pub fn is_network_port(&self, l: LinkId) -> bool {
        let k = self.link(l);
        k.class == LinkClass::Nic
            || (k.class == LinkClass::Custom
                && matches!(self.node(k.a).kind, NodeKind::Switch { .. })
                    != matches!(self.node(k.b).kind, NodeKind::Switch { .. }))
    }

    /// The NIC rate per GPU: the rate most GPUs have, the higher of equally common ones (0
    /// without GPUs). On a custom fabric whose GPUs differ it was the first GPU's, so the
    /// order of the node tables chose the NIC model every GPU was simulated with.
    pub fn gpu_network_rate(&self) -> BitsPerSec {
        let mut count: BTreeMap<u64, u64> = BTreeMap::new();
        for g in self.gpus() {
            *count.entry(self.network_rate(g).0).or_default() += 1;
        }
        let most = count.iter().max_by_key(|(rate, n)| (**n, **rate)).map_or(0, |(rate, _)| *rate);
        BitsPerSec(most)
    }

    /// The NIC rate of `gpu`: its network ports together.
    pub fn network_rate(&self, gpu: NodeId) -> BitsPerSec {
        BitsPerSec(
            self.neighbors(gpu)
                .iter()
                .filter(|(_, l)| self.is_network_port(*l))
                .map(|(_, l)| self.link(*l).rate.0)
                .sum(),
        )
    }

    pub fn gpu_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.is_gpu()).count()
    }

    pub fn switches(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes.iter().enumerate().filter(|(_, n)| !n.is_gpu()).map(|(i, _)| NodeId(i as u32))
    }

    /// The level of a node: 0 for GPUs, the tier's level for switches.
    pub fn level(&self, n: NodeId) -> u8 {
        match self.node(n).kind {
            NodeKind::Gpu { .. } => 0,
            NodeKind::Switch { tier, .. } => self.tiers[tier as usize].level,
        }
    }

    /// Whether this switch is an intra-host NVLink switch (level 0).
    pub fn is_nvswitch(&self, n: NodeId) -> bool {
        matches!(self.node(n).kind, NodeKind::Switch { tier, .. } if self.tiers[tier as usize].level == 0)
    }

    /// Looks a node up by name (linear; for tests and custom fabrics).
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name).map(|i| NodeId(i as u32))
    }

    /// Appends `other` (already finished or not), offsetting its ids; returns the id offset.
    pub fn absorb(&mut self, other: Fabric, site: u16) -> u32 {
        let off = self.nodes.len() as u32;
        let mut tier_map = Vec::new();
        for t in &other.tiers {
            tier_map.push(self.tier(&t.name, t.level));
        }
        for mut n in other.nodes {
            if let NodeKind::Switch { tier, model, radix } = n.kind {
                n.kind = NodeKind::Switch { tier: tier_map[tier as usize], model, radix };
            }
            n.site = site;
            self.nodes.push(n);
        }
        for mut l in other.links {
            l.a = NodeId(l.a.0 + off);
            l.b = NodeId(l.b.0 + off);
            self.links.push(l);
        }
        for mut g in other.groups {
            for n in &mut g.nodes {
                n.0 += off;
            }
            self.groups.push(g);
        }
        // Sites may differ; the report describes the first multi-host domain it meets.
        self.scale_up = self.scale_up.or(other.scale_up);
        self.host_cage_rate = self.host_cage_rate.or(other.host_cage_rate);
        self.backup_ports = self.backup_ports.max(other.backup_ports);
        self.management_ports += other.management_ports;
        off
    }

    /// Switch ports used on each node: (links counted once per end).
    pub fn degree(&self, n: NodeId) -> usize {
        self.neighbors(n).len()
    }
}
