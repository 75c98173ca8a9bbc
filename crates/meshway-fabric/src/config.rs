//! The scenario file as written: TOML, kebab-case keys, human units. These structs only
//! describe the syntax; [`crate::scenario`] validates them into a buildable scenario.

use meshway_units::{BitsPerSec, Bytes, Meters, Ratio};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScenarioConfig {
    pub name: Option<String>,
    pub description: Option<String>,
    pub seed: Option<u64>,
    pub fabric: Option<FabricConfig>,
    #[serde(default)]
    pub site: Vec<SiteConfig>,
    #[serde(default)]
    pub dci: Vec<DciConfig>,
    pub transport: Option<TransportConfig>,
    /// How `simulate` runs: flow level (the default) or packet by packet.
    pub simulation: Option<SimulationConfig>,
    /// Read by `simulate` and `testbed`; the planner ignores them.
    #[serde(default)]
    pub workload: Vec<crate::workload_config::WorkloadConfig>,
    #[serde(default)]
    pub failure: Vec<crate::workload_config::FailureConfig>,
    /// Inference (read by `meshway infer` and `meshway place`; the planner ignores them).
    pub inference: Option<crate::infer_config::InferenceConfig>,
    #[serde(default)]
    pub model: Vec<crate::infer_config::ModelConfig>,
    #[serde(default)]
    pub region: Vec<crate::infer_config::RegionConfig>,
    /// Jobs for `meshway schedule` (the planner and `simulate` ignore them).
    #[serde(default)]
    pub job: Vec<crate::job_config::JobConfig>,
    /// Defaults for `meshway schedule`.
    pub schedule: Option<crate::job_config::ScheduleConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FabricKind {
    ThreeTier,
    LeafSpine,
    FatTree,
    RailOptimized,
    Custom,
}

impl FabricKind {
    pub fn name(self) -> &'static str {
        match self {
            FabricKind::ThreeTier => "three-tier",
            FabricKind::LeafSpine => "leaf-spine",
            FabricKind::FatTree => "fat-tree",
            FabricKind::RailOptimized => "rail-optimized",
            FabricKind::Custom => "custom",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TaperAt {
    Leaf,
    Aggregation,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FabricConfig {
    pub kind: FabricKind,
    /// Number of GPUs; each has its own NIC.
    #[schemars(range(min = 1, max = 2_000_000))]
    pub gpus: Option<u32>,
    #[schemars(range(min = 1, max = 1024))]
    pub gpus_per_host: Option<u32>,
    /// NIC rate per GPU (split over planes when `planes` > 1).
    pub nic: Option<BitsPerSec>,
    /// Intra-host NVLink bandwidth per GPU, each direction.
    pub nvlink: Option<BitsPerSec>,
    /// GPUs per NVLink (scale-up) domain, when it spans several hosts (compute trays): an
    /// NVL72 rack is `gpus-per-host = 4` and `nvlink-domain = 72`. Default: one host.
    pub nvlink_domain: Option<u32>,
    /// The catalog switch model of a multi-host NVLink domain's switch trays (default:
    /// `[defaults] nvlink-domain-switch`).
    pub nvlink_switch_model: Option<String>,
    /// The GPU model (a catalog [[gpu]] name, such as "h100-sxm"): its achievable NVLink
    /// rate and whether its NVSwitch reduces (NVLS). Default: `[simulation] gpu-model`.
    pub gpu: Option<String>,
    /// The NIC model (a catalog [[nic]] name, such as "connectx7-400g"): the NIC the bill of
    /// materials prices and whose achievable rate the collectives reach. Its rate must be the
    /// fabric's NIC rate per GPU. Default: the catalog's last NIC of that rate.
    pub nic_model: Option<String>,
    /// Independent network planes; each NIC has one port into each plane.
    pub planes: Option<u32>,
    /// Leaf-spine and rail-optimized: each NIC port splits into two links of half its rate to
    /// a pair of leaves in the same plane (dual-ToR): one leaf lost halves a GPU's bandwidth
    /// instead of cutting it off.
    pub dual_homed: Option<bool>,
    /// Leaf-spine and rail-optimized: ports per leaf held for spare hosts (at the host link
    /// rate), cabled but carrying no planned traffic (Alibaba HPN: 8 per ToR).
    pub backup_ports: Option<u32>,
    /// Leaf ports cabled to fabric managers and management appliances (NVIDIA UFM: the DGX
    /// SuperPOD reference designs give 4), at the NIC port rate: counted as used leaf ports
    /// and billed as host-leaf cables.
    pub management_ports: Option<u32>,
    /// What one cage of a host carries (DGX H100/B200: "800Gbps", four twin-port OSFP cages
    /// for eight 400G ConnectX-7): a host's optical NIC links share modules by cage. Absent:
    /// one module per NIC link.
    pub host_cage_rate: Option<BitsPerSec>,
    /// Switch-to-switch link rate; defaults to the per-plane NIC rate.
    pub uplink: Option<BitsPerSec>,
    pub leaf_model: Option<String>,
    pub spine_model: Option<String>,
    pub core_model: Option<String>,
    #[schemars(range(min = 2, max = 4096))]
    pub leaf_radix: Option<u32>,
    #[schemars(range(min = 2, max = 4096))]
    pub spine_radix: Option<u32>,
    #[schemars(range(min = 2, max = 4096))]
    pub core_radix: Option<u32>,
    /// Leaf (access) down:up capacity ratio.
    pub oversubscription: Option<Ratio>,
    /// Down:up capacity ratio of the second switch tier (three-tier aggregation, or the
    /// spines of a 3-tier leaf-spine or rail-optimized fabric).
    pub aggregation_oversubscription: Option<Ratio>,
    /// Leaf-spine and rail-optimized: GPU ports per leaf (per plane), in place of filling
    /// the leaf's ports; the uplinks follow from `oversubscription`.
    pub gpus_per_leaf: Option<u32>,
    /// Leaf-spine and rail-optimized with 3 tiers: GPUs per pod (whole leaves, or whole rail
    /// groups); each pod spine takes one link from every leaf of its pod, and its uplinks
    /// follow from `aggregation-oversubscription`. Default: as many leaves as a spine's
    /// down ports hold.
    pub pod_size: Option<u32>,
    /// Leaf-spine: number of spines (derived when absent).
    pub spines: Option<u32>,
    /// Rail-optimized: 2 or 3 switch tiers (derived when absent).
    pub tiers: Option<u8>,
    /// Fat-tree: switch radix k (k³/4 hosts).
    pub k: Option<u32>,
    /// Fat-tree: down:up ratio at the tapered tier.
    pub taper: Option<Ratio>,
    pub taper_at: Option<TaperAt>,
    /// Three-tier: number of core switches.
    pub core_switches: Option<u32>,
    pub cable_lengths: Option<CableLengthsConfig>,
    /// Racks and rows: every cable's length from where its ends stand, in place of
    /// `cable-lengths` (leaf-spine, fat-tree, rail-optimized, three-tier).
    pub layout: Option<LayoutConfig>,
    /// One-way latency of every link of a tier, in place of its cable's propagation (to
    /// match another simulator's per-link delay, or a measured one).
    pub link_latency: Option<LinkLatencyConfig>,
    /// Switching latency of every switch, in place of the switch model's (and of the
    /// transport profile's `hop-latency`).
    pub switch_latency: Option<meshway_units::Nanos>,
    /// Custom fabrics: nodes and links listed by hand.
    #[serde(default)]
    pub node: Vec<CustomNode>,
    #[serde(default)]
    pub link: Vec<CustomLink>,
    /// Custom fabrics: how to split GPUs for the bisection (default halves).
    pub split: Option<SplitConfig>,
}

/// How a custom fabric's GPUs split in two for the bisection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SplitConfig {
    /// The first half of the GPUs against the second.
    Halves,
    /// By the nodes' `group` keys.
    Group,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CableLengthsConfig {
    pub host_leaf: Option<Meters>,
    pub leaf_spine: Option<Meters>,
    pub spine_core: Option<Meters>,
    pub border: Option<Meters>,
}

/// Where hosts stand: racks and rows, from which cable lengths follow (`[fabric.layout]`).
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LayoutConfig {
    /// Hosts (compute trays) per rack.
    pub hosts_per_rack: u32,
    /// Racks per row.
    pub racks_per_row: u32,
    /// Rack width along the row (default: the catalog's `[cable-lengths] rack-width`).
    pub rack_width: Option<Meters>,
    /// Distance between rows (default: `[cable-lengths] row-pitch`).
    pub row_pitch: Option<Meters>,
    /// Added to every cable for the runs up and down and slack (default: `[cable-lengths] slack`).
    pub slack: Option<Meters>,
}

/// One-way link latency per tier.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LinkLatencyConfig {
    /// GPU NIC to its leaf.
    pub host_leaf: Option<meshway_units::Nanos>,
    /// Leaf to spine, border leaves' links included.
    pub leaf_spine: Option<meshway_units::Nanos>,
    /// Spine to core.
    pub spine_core: Option<meshway_units::Nanos>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CustomNode {
    pub name: String,
    pub kind: CustomNodeKind,
    /// GPUs: the host they sit in (GPUs of one host are never split by bisection).
    pub host: Option<u32>,
    /// Switches: tier name ("leaf", "spine", ...) and level (1 = leaf).
    pub tier: Option<String>,
    pub level: Option<u8>,
    pub model: Option<String>,
    pub radix: Option<u32>,
    /// Bisection group when `split = "group"`.
    pub group: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CustomNodeKind {
    Gpu,
    Switch,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CustomLink {
    pub a: String,
    pub b: String,
    pub rate: BitsPerSec,
    pub length: Option<Meters>,
    /// One-way latency, in place of the cable's propagation.
    pub latency: Option<meshway_units::Nanos>,
    pub count: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SiteConfig {
    pub name: String,
    /// The site's fabric; needed by the planner, optional for inference-only sites.
    pub fabric: Option<FabricConfig>,
    /// Inference: edge or central.
    pub tier: Option<crate::infer_config::SiteTier>,
    /// Inference: GPUs serving the site's model.
    pub gpus: Option<u32>,
    /// Inference: most GPUs the placement optimizer may put here (default: `gpus`).
    pub max_gpus: Option<u32>,
    /// Inference: cost of one GPU for one hour, USD.
    pub gpu_hour_usd: Option<f64>,
    /// Inference: where the site is (see `[[region]] continent`).
    pub continent: Option<crate::infer_config::Continent>,
    /// Inference: latitude and longitude in degrees; with a region's, the path between
    /// them is routed (see `[[region]] location`).
    pub location: Option<[f64; 2]>,
    /// Inference: router hops between the metro network and the servers, and their latency.
    pub access_hops: Option<u32>,
    pub hop_latency: Option<meshway_units::Nanos>,
    /// Inference: the model served (default: the only `[[model]]`).
    pub model: Option<String>,
    /// Inference: what the site's servers do (default both): `prefill` sites hand each
    /// request's KV cache over a `[[dci]]` link to a `decode` (or `both`) site.
    pub role: Option<crate::infer_config::SiteRole>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DciConfig {
    pub a: String,
    pub b: String,
    /// Fiber route length.
    pub distance: Meters,
    /// Optic: a catalog name or "400ZR", "ZR+", "800ZR"; by default the cheapest coherent
    /// optic whose reach covers the distance.
    pub optic: Option<String>,
    /// Wavelengths (each one link at the optic's rate).
    pub wavelengths: Option<u32>,
    /// Inference: capacity of a routed path used for KV-cache transfers (instead of
    /// wavelengths x the optic's rate).
    pub capacity: Option<BitsPerSec>,
    /// Inference: share of the capacity other traffic uses (default 0).
    pub background: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    Infiniband,
    #[default]
    Roce,
    Tcp,
    /// Receiver-driven, trimming, sprayed (NDP/EQDS-like; the Ultra Ethernet lineage).
    Ndp,
    /// AWS Elastic Fabric Adapter: the Scalable Reliable Datagram protocol, sprayed over
    /// many paths, lossy with resends by the NIC (flow level only).
    Efa,
}

impl TransportKind {
    /// The catalog's name for it ([[transport]] name).
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Infiniband => "infiniband",
            TransportKind::Roce => "roce",
            TransportKind::Tcp => "tcp",
            TransportKind::Ndp => "ndp",
            TransportKind::Efa => "efa",
        }
    }
}

/// `[simulation]`: how `meshway simulate` runs the workloads.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SimulationConfig {
    /// `flow` (the default), `packet`, or `both` (packet level, with the flow level beside it).
    pub fidelity: Option<FidelityConfig>,
    /// Packet-level settings (`[simulation.packet]`); defaults come from the catalog's `[packet]`.
    pub packet: Option<PacketConfig>,
}

/// Which rung of the fidelity ladder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FidelityConfig {
    Flow,
    Packet,
    Both,
}

/// `[simulation.packet]`: what the packet level models, each key overriding the catalog.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PacketConfig {
    /// RoCE: DCQCN congestion control (ECN marking, CNPs, rate cuts).
    pub dcqcn: Option<bool>,
    /// PFC: an ingress port pauses its upstream above this many bytes.
    pub xoff: Option<Bytes>,
    /// PFC: and resumes it at or below this many.
    pub xon: Option<Bytes>,
    /// Lossless buffer per ingress port above `xoff` (default: each port's own need from its
    /// link's round trip, as `meshway plan` computes it).
    pub headroom: Option<Bytes>,
    /// Headroom of ports on DCI spans (default: `headroom`).
    pub dci_headroom: Option<Bytes>,
    /// How long an upstream transmitter takes to act on a pause.
    pub pause_response: Option<meshway_units::Nanos>,
    /// Lossy fabrics: output queue limit before tail drop.
    pub queue: Option<Bytes>,
    /// NDP: data packets an output queue holds before it trims.
    pub trim_packets: Option<u32>,
    /// NDP: packets a sender sends before its first pull.
    pub window_packets: Option<u32>,
    /// Go-back-N retransmission timeout (default: the catalog's `rto` on lossy fabrics,
    /// `lossless-rto` with PFC or credits).
    pub rto: Option<meshway_units::Nanos>,
    /// Interval of the queue-depth and pause time series.
    pub sample: Option<meshway_units::Nanos>,
    /// Bound on the run's events.
    pub max_events: Option<u64>,
    /// Refuse runs whose estimated memory exceeds this (default: the catalog's).
    pub memory_limit: Option<Bytes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingKind {
    /// Per-flow hashing over equal-cost next hops.
    #[default]
    Ecmp,
    /// Each switch sends a new flow to its least-loaded next hop (local view).
    Adaptive,
    /// A new flow takes the shortest path whose busiest link is least loaded (global view).
    AdaptiveGlobal,
    /// Packets sprayed evenly over all equal-cost paths.
    Spray,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TransportConfig {
    #[serde(default)]
    pub kind: TransportKind,
    /// Path choice; by default the transport's (adaptive for InfiniBand, spray for NDP and
    /// EFA, ECMP otherwise).
    pub routing: Option<RoutingKind>,
    pub mtu: Option<Bytes>,
    /// Whether the fabric must be lossless (default: yes for infiniband and roce).
    pub lossless: Option<bool>,
    /// Queue pairs (subflows, each hashed on its own) per connection, as
    /// NCCL_IB_QPS_PER_CONNECTION (default: the catalog's `qps-per-connection`).
    pub qps: Option<u32>,
    /// When a message counts as complete: its last byte at the receiver (`data`, the
    /// default) or its last acknowledgement back at the sender (`ack`, as htsim counts).
    pub completion: Option<CompletionConfig>,
    /// How switches forward the last packet: `cut-through` (the default: it serializes once,
    /// at the bottleneck) or `store-and-forward` (once per link, as htsim's queues do).
    pub forwarding: Option<ForwardingConfig>,
}

/// When a message counts as complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CompletionConfig {
    Data,
    Ack,
}

/// How switches forward a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardingConfig {
    CutThrough,
    StoreAndForward,
}
