//! The catalog of parts and default constants. The built-in catalog is
//! `catalog/default.toml`; every entry names its source or says it is an assumption. Users can
//! pass their own file: its entries replace built-in ones of the same name and add new ones.

use crate::error::{locate_toml_error, FabricError};
use meshway_units::{BitsPerSec, Bytes, Meters, Nanos, Ratio};
use serde::{Deserialize, Serialize};

/// The built-in catalog text.
pub const DEFAULT_CATALOG: &str = include_str!("../../../catalog/default.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Constants {
    pub fiber_delay_per_km: Nanos,
    pub fiber_delay_source: String,
    /// The PFC response delay at 400 Gb/s (and, as an assumption, the same time above).
    pub pfc_response: Nanos,
    pub pfc_response_source: String,
    /// The same bound at 100 Gb/s, whose bit times are fewer but each four times longer.
    #[serde(default)]
    pub pfc_response_100g: Option<Nanos>,
    pub default_mtu_bytes: u32,
    pub mtu_source: String,
}

impl Constants {
    /// The PFC response delay of a port at `rate`: the catalog's 400G figure from 400 Gb/s
    /// up; its 100G figure at 100 Gb/s and below; between them, bit times interpolated in
    /// the rate (an assumption: IEEE tabulates 100G and 400G only).
    pub fn pfc_response_at(&self, rate: meshway_units::BitsPerSec) -> Nanos {
        pfc_response_between(self.pfc_response_100g, self.pfc_response, rate)
    }
}

/// The PFC response delay at `rate` from the figures at 400G (`at_400g`, also every rate
/// above) and at 100G (`at_100g`, also every rate below; None: `at_400g` everywhere), bit
/// times interpolated in the rate between them (see [`Constants::pfc_response_at`]).
pub fn pfc_response_between(at_100g: Option<Nanos>, at_400g: Nanos, rate: meshway_units::BitsPerSec) -> Nanos {
    const G100: f64 = 100e9;
    const G400: f64 = 400e9;
    let Some(r100) = at_100g else { return at_400g };
    let r = rate.0 as f64;
    if r >= G400 || r <= 0.0 {
        return at_400g;
    }
    let (bt100, bt400) = (r100.0 as f64 * 1e-9 * G100, at_400g.0 as f64 * 1e-9 * G400);
    let bits = if r <= G100 { bt100 } else { bt100 + (bt400 - bt100) * (r - G100) / (G400 - G100) };
    Nanos((bits / r * 1e9).round() as u64)
}

/// Inference defaults (`[inference]`) used when a scenario leaves a value out.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InferenceDefaults {
    /// Fiber route length over great-circle distance.
    pub route_factor: f64,
    pub route_factor_source: String,
    pub hop_latency: Nanos,
    pub access_hops: u32,
    pub last_mile: Nanos,
    pub ttft_p99: Nanos,
    pub gpus_per_server: u32,
    pub gpu_hour_usd_central: f64,
    pub gpu_hour_usd_edge: f64,
    pub duration: Nanos,
    /// Placement: most load a site may carry as a share of its full-batch capacity.
    pub target_utilization: f64,
    /// How long users take to notice a failed site and send again elsewhere.
    pub failover_detect: Nanos,
    /// Fixed one-way cost of a wide-area path beyond fibre and router hops (access, peering,
    /// detours); 0 when a catalog predates it.
    #[serde(default)]
    pub wan_fixed: Nanos,
    /// Route factor and fixed cost per pair of continents, used when a region and a site
    /// both say where they are; `route-factor` and `wan-fixed` otherwise.
    #[serde(default, rename = "wan-route")]
    pub wan_routes: Vec<WanRoute>,
    /// Where long-haul paths leave a continent (submarine cable landings); with
    /// `wan-cable`, paths between continents are routed through them.
    #[serde(default, rename = "wan-gateway")]
    pub wan_gateways: Vec<WanGateway>,
    /// Cables between gateways of two continents.
    #[serde(default, rename = "wan-cable")]
    pub wan_cables: Vec<WanCable>,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

/// `[[inference.wan-route]]`: the wide-area path model between two continents.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WanRoute {
    /// The two continents (either order; the same twice for paths within one).
    pub between: [crate::infer_config::Continent; 2],
    /// Fibre length over the great circle of a whole path given by `distance`.
    pub route_factor: f64,
    /// Fibre length over the great circle of a cable between the two continents' landings
    /// (a routed path, `wan_path`); `route-factor` when not given.
    #[serde(default)]
    pub cable_factor: Option<f64>,
    pub wan_fixed: Nanos,
    pub source: String,
}

/// `[[inference.wan-gateway]]`: a place where paths between continents leave one (a
/// submarine cable landing or the backbone city behind it).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WanGateway {
    pub name: String,
    pub continent: crate::infer_config::Continent,
    /// Latitude and longitude in degrees.
    pub location: [f64; 2],
    /// Where its place comes from; or `assumption` (as every catalog entry may).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumption: Option<String>,
}

/// `[[inference.wan-cable]]`: a long-haul link between gateways of two continents; its
/// length is the great circle between them times the pair's `cable-factor`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WanCable {
    pub name: String,
    /// The two gateways' names.
    pub between: [String; 2],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumption: Option<String>,
}

/// A place on the wide-area model: where it is and, when known, its continent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    pub lat: f64,
    pub lon: f64,
    pub continent: Option<crate::infer_config::Continent>,
}

/// A routed wide-area path: its fibre length (each leg's great circle times its route
/// factor), the fixed one-way cost of the pair of continents, and the gateways it passes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WanPath {
    pub fiber_km: f64,
    pub fixed: Nanos,
    pub via: Vec<String>,
}

/// Great-circle distance in km between two points in degrees (haversine, mean Earth
/// radius 6,371 km).
pub fn great_circle_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

/// Whether a latitude and longitude in degrees are on the globe (-90..=90, -180..=180);
/// NaN is not.
pub fn on_globe(lat: f64, lon: f64) -> bool {
    (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)
}

impl InferenceDefaults {
    /// The path between two places. Within a continent, or where a continent is unknown:
    /// the great circle times the pair's route factor. Between continents: the shortest
    /// route from `a` over land to a gateway of its continent, over cables (and across
    /// other continents' land between their gateways) to a gateway of `b`'s continent, and
    /// on to `b`, each land leg times its continent's route factor and each cable times its
    /// pair's `cable-factor`; the great circle times the pair's route factor when no
    /// gateways connect the two (continents without landings: the Middle East, Africa).
    /// The fixed cost is the pair of continents' (`route`).
    pub fn wan_path(&self, a: Place, b: Place) -> WanPath {
        let (factor, fixed) = self.route(a.continent, b.continent);
        let direct = great_circle_km(a.lat, a.lon, b.lat, b.lon) * factor;
        let (Some(ca), Some(cb)) = (a.continent, b.continent) else {
            return WanPath { fiber_km: direct, fixed, via: Vec::new() };
        };
        if ca == cb || self.wan_gateways.is_empty() {
            return WanPath { fiber_km: direct, fixed, via: Vec::new() };
        }
        // Dijkstra over a, b and the gateways (a few dozen nodes: the dense form).
        let mut nodes = vec![a, b];
        nodes.extend(self.wan_gateways.iter().map(|g| Place {
            lat: g.location[0],
            lon: g.location[1],
            continent: Some(g.continent),
        }));
        let gw = |name: &str| self.wan_gateways.iter().position(|g| g.name == name).map(|i| i + 2);
        let cables: Vec<(usize, usize)> =
            self.wan_cables.iter().filter_map(|c| Some((gw(&c.between[0])?, gw(&c.between[1])?))).collect();
        let edge = |u: usize, v: usize| -> Option<f64> {
            let (pu, pv) = (nodes[u], nodes[v]);
            let same = pu.continent == pv.continent;
            // Land within a continent, or a cable (the endpoints are on two continents, so
            // they reach each other only over gateways).
            if !(same || cables.contains(&(u, v)) || cables.contains(&(v, u))) {
                return None;
            }
            let f = if same {
                self.route(pu.continent, pv.continent).0
            } else {
                self.cable_factor(pu.continent, pv.continent)
            };
            Some(great_circle_km(pu.lat, pu.lon, pv.lat, pv.lon) * f)
        };
        let n = nodes.len();
        let (mut dist, mut prev, mut done) = (vec![f64::INFINITY; n], vec![usize::MAX; n], vec![false; n]);
        dist[0] = 0.0;
        while let Some(u) =
            (0..n).filter(|&i| !done[i] && dist[i].is_finite()).min_by(|&i, &j| dist[i].total_cmp(&dist[j]))
        {
            done[u] = true;
            if u == 1 {
                break;
            }
            for v in 0..n {
                if let Some(w) = (!done[v]).then(|| edge(u, v)).flatten() {
                    if dist[u] + w < dist[v] {
                        dist[v] = dist[u] + w;
                        prev[v] = u;
                    }
                }
            }
        }
        if !dist[1].is_finite() {
            return WanPath { fiber_km: direct, fixed, via: Vec::new() };
        }
        let mut via = Vec::new();
        let mut at = prev[1];
        while at >= 2 && at != usize::MAX {
            via.push(self.wan_gateways[at - 2].name.clone());
            at = prev[at];
        }
        via.reverse();
        WanPath { fiber_km: dist[1], fixed, via }
    }

    /// Fibre length over the great circle of a cable between landings of these continents:
    /// the pair's `cable-factor`, else its `route-factor`, else the default `route-factor`.
    pub fn cable_factor(
        &self,
        a: Option<crate::infer_config::Continent>,
        b: Option<crate::infer_config::Continent>,
    ) -> f64 {
        if let (Some(a), Some(b)) = (a, b) {
            if let Some(w) = self.wan_routes.iter().find(|w| w.between == [a, b] || w.between == [b, a]) {
                return w.cable_factor.unwrap_or(w.route_factor);
            }
        }
        self.route_factor
    }

    /// Route factor and fixed one-way cost of a path between two places: the
    /// `[[inference.wan-route]]` of their continents when both are known and the catalog
    /// has one, else `route-factor` and `wan-fixed`.
    pub fn route(
        &self,
        a: Option<crate::infer_config::Continent>,
        b: Option<crate::infer_config::Continent>,
    ) -> (f64, Nanos) {
        if let (Some(a), Some(b)) = (a, b) {
            if let Some(w) = self.wan_routes.iter().find(|w| w.between == [a, b] || w.between == [b, a]) {
                return (w.route_factor, w.wan_fixed);
            }
        }
        (self.route_factor, self.wan_fixed)
    }
}

/// Multi-site training defaults (`[multisite]`) of `meshway multisite`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MultisiteDefaults {
    /// DCI distances of the sweep.
    pub distances: Vec<Meters>,
    /// Wavelengths per span of the capacity sweep.
    pub wavelengths: Vec<u32>,
    /// Share of the step cross-site data parallelism may cost.
    pub budget: f64,
    /// Resolution of the break-even distance search.
    pub resolution: Meters,
    /// Farthest distance the break-even search tries.
    pub max_distance: Meters,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

/// Design defaults used when a scenario leaves a value out.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Defaults {
    pub switch_model: String,
    pub nic: BitsPerSec,
    pub gpus_per_host: u32,
    pub nvlink_per_gpu: BitsPerSec,
    /// Switch model of the trays of an NVLink domain larger than a host (`nvlink-domain`).
    #[serde(default)]
    pub nvlink_domain_switch: Option<String>,
    pub three_tier_access_oversubscription: Ratio,
    pub three_tier_aggregation_oversubscription: Ratio,
    pub three_tier_core_switches: u32,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SwitchModel {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub ports: u32,
    pub port_rate: BitsPerSec,
    pub latency: Nanos,
    pub buffer: Bytes,
    pub power_w: f64,
    pub price_usd: f64,
    /// In-network reduction (NVIDIA SHARP): NCCL's CollNet can reduce in these switches.
    #[serde(default)]
    pub sharp: bool,
    /// What one front-panel cage carries (an 800G twin-port OSFP cage holds two 400G links,
    /// served by one twin-port module or one breakout cable). Absent: one link per cage.
    #[serde(default)]
    pub cage_rate: Option<BitsPerSec>,
    /// The most logical ports breakout gives (the switch's port count limit): 64x800G splits
    /// to 128x400G and 256x200G, but no further when this is 256. Absent: no limit.
    #[serde(default)]
    pub max_ports: Option<u32>,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

impl SwitchModel {
    /// Ports available at `rate`: native ports, or native ports split by breakout when the
    /// native rate is a whole multiple of `rate` (a 64x800G box is 128x400G).
    pub fn ports_at(&self, rate: BitsPerSec) -> u32 {
        let n = if rate.0 > 0 && self.port_rate.0 > rate.0 && self.port_rate.0.is_multiple_of(rate.0) {
            self.ports.saturating_mul(u32::try_from(self.port_rate.0 / rate.0).unwrap_or(1))
        } else {
            self.ports
        };
        // Breakout ends at the switch's port (MAC) count: slower ports then leave bandwidth idle.
        self.max_ports.map_or(n, |m| n.min(m.max(self.ports)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpticClass {
    Copper,
    Multimode,
    SingleMode,
    Coherent,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Optic {
    pub name: String,
    pub class: OpticClass,
    pub rate: BitsPerSec,
    pub reach: Meters,
    pub power_w: f64,
    pub price_usd: f64,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Cable {
    pub name: String,
    pub class: String,
    pub price_usd_per_m: f64,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CableLengths {
    pub host_leaf: Meters,
    pub leaf_spine: Meters,
    pub spine_core: Meters,
    pub border: Meters,
    /// `[fabric.layout]` defaults: rack width along a row, row pitch, slack per cable.
    #[serde(default)]
    pub rack_width: Option<Meters>,
    #[serde(default)]
    pub row_pitch: Option<Meters>,
    #[serde(default)]
    pub slack: Option<Meters>,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Nic {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub ports: u32,
    pub rate: BitsPerSec,
    /// The payload rate NCCL reaches through this NIC (PCIe and NIC limits); collectives
    /// run their network messages at this share of the line rate. Absent: the line rate.
    pub achievable: Option<BitsPerSec>,
    /// The NCCL protocols collectives may run through this NIC (catalog [[protocol]] names);
    /// absent: all of them. AWS's first EFA runs only `simple` (its NCCL plugin sets
    /// NCCL_PROTO=simple without byte-ordered delivery).
    pub protocols: Option<Vec<String>>,
    /// The network latency the NIC's NCCL net plugin reports (`ncclNetProperties.latency`;
    /// NVIDIA's InfiniBand and socket transports report none). NCCL's tuning model adds it to
    /// every network step, twice with Simple, when it picks an algorithm; it is not a delay.
    pub nccl_net_latency: Option<meshway_units::Nanos>,
    /// The NCCL tuner plugin that comes with the NIC's net plugin (a catalog
    /// [[tuner-plugin]] name): NCCL 2.21 and later load a tuner from the net plugin's
    /// library, and aws-ofi-nccl bundles its own, so on AWS it picks for NCCL by default.
    pub nccl_tuner_plugin: Option<String>,
    /// The share of the achievable rate NCCL's tree reaches across hosts through this NIC
    /// (absent: all of it). AWS's tuner model for p5 gives the tree half the ring's network
    /// bandwidth.
    pub tree_network_share: Option<f64>,
    /// NCCL_NVLS_CHUNKSIZE as the NIC's net plugin sets it for NCCL (absent: NCCL's default,
    /// 128 KiB): the chunk NVLS and NVLS-tree start from before NCCL cuts it for smaller
    /// messages (NVLS inside one NVLink domain at most one 512 KiB step of the Simple
    /// buffer). aws-ofi-nccl sets 512 KiB on p5.
    pub nccl_nvls_chunk: Option<Bytes>,
    /// NCCL_NVLSTREE_MAX_CHUNKSIZE as the NIC's net plugin sets it (absent: NCCL's default
    /// before Blackwell, the NVLS chunk on 2 or 3 hosts and 64 KiB from 4; NCCL's Blackwell
    /// multi-node tuning is not modelled): NVLS-tree's chunk is at most this.
    pub nccl_nvls_tree_max_chunk: Option<Bytes>,
    /// The one transport this NIC runs (a catalog [[transport]] name), when it runs only one:
    /// AWS's EFA devices run `efa`, and `efa` runs only on them.
    pub transport: Option<String>,
    pub power_w: f64,
    pub price_usd: f64,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

impl Nic {
    /// Achievable payload rate over the line rate (1 when not given).
    pub fn efficiency(&self) -> f64 {
        match self.achievable {
            Some(a) if self.rate.0 > 0 => (a.0 as f64 / self.rate.0 as f64).min(1.0),
            _ => 1.0,
        }
    }
}

/// A transport profile for the simulator.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TransportProfile {
    pub name: String,
    /// Header and framing bytes per packet on the wire.
    pub header_bytes: u32,
    /// Payload bytes per packet.
    pub mtu: Bytes,
    /// Endpoint latency each message pays once.
    pub alpha: Nanos,
    /// Per-hop switching latency of this transport's switches; replaces the switch models'
    /// latency in simulations when set.
    pub hop_latency: Option<Nanos>,
    /// How the transport is made lossless (or why it is not).
    pub lossless: String,
    /// "ecmp", "adaptive" or "spray".
    pub default_routing: String,
    pub adaptive_routing: bool,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

/// Defaults of `meshway simulate`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SimDefaults {
    pub channels: u32,
    pub qps_per_connection: u32,
    pub spray_paths: u32,
    pub steps_flow_limit: u64,
    pub gpu_model: String,
    pub compute_efficiency: f64,
    /// Share of a flow's duration within which completions are batched (0: exact).
    pub completion_tolerance: f64,
    /// Hierarchical all-reduce: at most this many pipeline chunks, each at least
    /// `pipeline-chunk` per rank, so the intra-host and inter-host phases overlap.
    #[serde(default = "default_pipeline_depth")]
    pub pipeline_depth: u32,
    #[serde(default = "default_pipeline_chunk")]
    pub pipeline_chunk: meshway_units::Bytes,
    /// NCCL's network post overhead (its getNetOverhead: 1 us on Intel x86 hosts, 2 us on
    /// AMD): a ring across hosts pays at least this per NVLink step (three times it with
    /// Simple). Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_overhead: Option<Nanos>,
    /// NCCL's buffer per connection (NCCL_BUFFSIZE): the most a collective's connection
    /// across the network has in flight, so its rate is at most this per round trip (it
    /// binds on long spans). Absent: unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nccl_buffer: Option<meshway_units::Bytes>,
    /// The same for a point-to-point send (pipeline stages): NCCL_STEPS slots of its p2p
    /// chunk over the network. Absent: unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nccl_p2p_window: Option<meshway_units::Bytes>,
    /// NCCL's ceiling on the LL protocol's bus bandwidth across hosts (its llMaxBws): on 2
    /// hosts, and on 3 or more. Ring and tree collectives with LL across hosts take at least
    /// their bus bytes over it. Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ll_max: Vec<BitsPerSec>,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

fn default_pipeline_depth() -> u32 {
    8
}

fn default_pipeline_chunk() -> meshway_units::Bytes {
    meshway_units::Bytes(1 << 20)
}

/// An NCCL tuner plugin that picks from a table of regions (AWS's aws-ofi-nccl): for an
/// operation on hosts of a given number of ranks, the first region whose polygon in
/// (message bytes, ranks) holds the collective sets its algorithm and protocol; outside
/// every region, or on fewer hosts than `min-nodes`, NCCL's own tuner picks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TunerPlugin {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Communicators on fewer hosts are left to NCCL's tuner.
    pub min_nodes: u32,
    #[serde(default)]
    pub region: Vec<TunerRegion>,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

/// One region of a [`TunerPlugin`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TunerRegion {
    /// all-reduce, all-gather, reduce-scatter or broadcast.
    pub op: crate::workload_config::OpConfig,
    /// The table is for communicators of this many ranks on every host.
    pub ranks_per_host: u32,
    /// ring, tree, nvls, nvls-tree or collnet.
    pub algorithm: crate::workload_config::AlgorithmConfig,
    /// A catalog [[protocol]] name.
    pub protocol: String,
    /// The polygon's corners in order, each [message bytes, ranks]; a point on an edge is in.
    pub vertices: Vec<[f64; 2]>,
}

/// A collective protocol as NCCL's tuning model describes it: the share of the bytes on
/// the wire that is payload, a base latency per collective, and a latency per algorithm step
/// over NVLink and over the network, for rings and for trees.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ProtocolModel {
    pub name: String,
    pub efficiency: f64,
    pub ring_base_latency: meshway_units::Nanos,
    pub ring_nvlink_step: meshway_units::Nanos,
    pub ring_network_step: meshway_units::Nanos,
    pub tree_base_latency: meshway_units::Nanos,
    pub tree_nvlink_step: meshway_units::Nanos,
    pub tree_network_step: meshway_units::Nanos,
    /// NVLS (NVLink SHARP, reduction in the NVSwitch): latency of the intra-host stage;
    /// absent when the protocol cannot run NVLS (NCCL runs it with Simple only).
    pub nvls_latency: Option<meshway_units::Nanos>,
    /// NVLS-tree: latency per network step of the tree across hosts.
    pub nvls_tree_network_step: Option<meshway_units::Nanos>,
    /// CollNet (in-network reduction in SHARP switches): latency of the network stage;
    /// absent when the protocol cannot run CollNet (Simple only).
    pub collnet_latency: Option<meshway_units::Nanos>,
    /// The payload of one pipeline chunk of a tree all-reduce before NCCL shrinks it for
    /// the message size (its step buffer: buffer size / NCCL_STEPS, less the protocol's
    /// flags). Absent: the tree is not charged a pipeline fill.
    pub tree_chunk: Option<Bytes>,
    /// The buffer of one connection for this protocol (NCCL's LL and LL128 buffer sizes,
    /// flags included: a connection has `buffer x efficiency` of payload in flight per round
    /// trip). Absent: `[simulation] nccl-buffer` (NCCL_BUFFSIZE, Simple's).
    pub buffer: Option<Bytes>,
    /// Ring steps one rank may have in flight on a channel (NCCL's step slots per chunk:
    /// Simple keeps two chunks of NCCL_STEPS / 2 slots): only 1 / this of a step's latency
    /// follows the rank's previous send, the rest the chunk it forwards. Absent: 1, every
    /// step's latency after the previous one.
    pub ring_in_flight: Option<u32>,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

/// A GPU model for training-step compute.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GpuModel {
    pub name: String,
    /// Dense BF16 peak, FLOP/s.
    pub peak_flops: f64,
    /// NVLink bandwidth per GPU, each direction, that NCCL reaches (its topology model's
    /// per-link figure times the links); collectives run NVLink messages at this rate when
    /// it is below the fabric's `nvlink`. Absent: the fabric's rate.
    pub nvlink_achievable: Option<BitsPerSec>,
    /// The most GPUs one NVLink domain of this GPU's servers joins (8 on an HGX board, 72 in
    /// an NVL72 rack, 2 for bridged PCIe cards): serving's tensor parallelism, whose
    /// all-reduces run over NVLink, spans at most this many. Absent: not checked.
    pub nvlink_gpus: Option<u32>,
    /// NVLink SHARP (NVLS): the NVSwitch of this GPU's hosts reduces and multicasts; the
    /// value is NCCL's NVLS efficiency factor. Absent: no NVLS.
    pub nvls_efficiency: Option<f64>,
    /// NCCL's NVLS channels (thread blocks) on one NVLink domain for this GPU generation;
    /// with NCCL's NVLS chunk size it sets how many chunks a message fills the NVLS
    /// pipeline with. Absent: NVLS is not charged a pipeline fill.
    pub nvls_channels: Option<u32>,
    /// NCCL's ceiling on NVLS-tree bus bandwidth per NVLS channel (one per head: a GPU with
    /// its NIC), across 2 hosts and across 3 or more; the collective never beats `heads x`
    /// this. Applies with `nvls-channels` (NVLS-tree's steady-state model); absent: no
    /// ceiling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nvls_tree_channel_max: Vec<BitsPerSec>,
    /// CollNet (SHARP switches): NCCL's bandwidth factor for this GPU generation.
    pub collnet_efficiency: Option<f64>,
    /// Memory per GPU (serving: weights and KV cache).
    pub memory: Option<Bytes>,
    /// Memory bandwidth per GPU (serving: decode reads weights and KV cache).
    pub hbm_bandwidth: Option<BitsPerSec>,
    /// Dense FP8 peak, FLOP/s (serving FP8 models). Absent: no FP8.
    pub fp8_flops: Option<f64>,
    /// The highest BF16 matrix-multiply rate measured on this GPU, FLOP/s (its maximum
    /// achievable matmul FLOPS); the serving model's `flops-efficiency` is a share of it.
    /// Absent: the datasheet's `peak-flops`.
    pub matmul_achievable: Option<f64>,
    /// The same for FP8 inputs. Absent: `fp8-flops`.
    pub fp8_matmul_achievable: Option<f64>,
    /// Dense FP4 (NVFP4) peak, FLOP/s (serving FP4 models). Absent: no FP4.
    pub fp4_flops: Option<f64>,
    /// The matrix-multiply rate with FP4 inputs the serving model computes at. Absent:
    /// `fp4-flops`.
    pub fp4_matmul_achievable: Option<f64>,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

/// A language model's shape (`[[llm]]`), from which the serving model derives weight bytes,
/// KV-cache bytes per token and FLOPs per token.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LlmModel {
    pub name: String,
    pub layers: u32,
    /// Model (residual stream) width.
    pub hidden: u32,
    /// Attention (query) heads.
    pub heads: u32,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: u32,
    pub head_dim: u32,
    /// Parameters in all.
    pub params: f64,
    /// Parameters each token uses (mixture of experts). Absent: all (a dense model).
    pub active_params: Option<f64>,
    /// The longest sequence (prompt + output tokens) the model takes. Absent: not checked.
    pub context: Option<u32>,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

impl LlmModel {
    /// Parameters each token uses.
    pub fn active(&self) -> f64 {
        self.active_params.unwrap_or(self.params)
    }
    /// KV-cache elements per token: keys and values of every layer's KV heads.
    pub fn kv_elements_per_token(&self) -> f64 {
        2.0 * f64::from(self.layers) * f64::from(self.kv_heads) * f64::from(self.head_dim)
    }
}

fn one() -> f64 {
    1.0
}

/// Serving-engine defaults (`[serving]`) of the inference model built from `[[llm]]` shapes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServingDefaults {
    /// Share of the GPU's measured matmul rate (`matmul-achievable`, else its datasheet
    /// peak) a step's matrix work reaches (prefill is compute-bound).
    pub flops_efficiency: f64,
    /// Share of memory bandwidth a step's reads reach (decode is bandwidth-bound).
    pub bandwidth_efficiency: f64,
    /// Mixture-of-experts models: the share of the dense FLOP rate their grouped expert
    /// GEMMs reach (their weight reads stream at the full HBM rate). 1 when a catalog
    /// predates it.
    #[serde(default = "one")]
    pub moe_efficiency: f64,
    /// The roofline's corner: a step's matrix work takes (compute^p + memory^p)^(1/p) for
    /// this p, since its kernels overlap compute and weight reads imperfectly near the ridge
    /// point (1: no overlap, their sum; inf: perfect, their max). Absent: the max. An overlay
    /// that patches `[serving]` without it inherits the built-in catalog's 2; `inf` keeps the
    /// max.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roofline_knee: Option<f64>,
    /// Fixed time of every engine step (scheduling, kernel launches, sampling).
    pub step_overhead: Nanos,
    /// Fixed time of every request before it queues (HTTP, tokenization, detokenization).
    pub request_overhead: Nanos,
    /// Share of the memory left after weights and the reserve that holds the KV cache.
    pub memory_utilization: f64,
    /// Memory per GPU the engine cannot use for weights or KV cache (CUDA context,
    /// activations, workspaces).
    pub memory_reserve: Bytes,
    /// Tokens one step may process (decode tokens + prefill chunks).
    pub token_budget: u32,
    /// Requests one server runs at once.
    pub max_batch: u32,
    /// Latency of one tensor-parallel ring all-reduce between two GPUs (two per layer per
    /// step); x log2(GPUs) for more.
    pub allreduce_latency: Nanos,
    /// Latency of a one-shot all-reduce (each GPU reads every peer's buffer over NVLink and
    /// reduces locally, as engines' custom all-reduce kernels do for small messages). When
    /// set, an all-reduce takes the cheaper of it and the ring. Absent: the ring only. An
    /// overlay that patches `[serving]` without it inherits the built-in 28 us; a large
    /// value ("1s") turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allreduce_oneshot_latency: Option<Nanos>,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

/// Packet-level defaults (`[packet]`) of `meshway simulate --fidelity packet`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PacketDefaults {
    /// Wire bytes of an ACK, NACK, pull, CNP or trimmed header.
    pub control_bytes: u64,
    /// PFC XOFF and XON per ingress port and priority.
    pub xoff: Bytes,
    pub xon: Bytes,
    /// Lossy output queue limit.
    pub queue: Bytes,
    pub trim_packets: u32,
    pub window_packets: u32,
    /// Go-back-N timeout on lossy fabrics.
    pub rto: Nanos,
    /// Go-back-N timeout on lossless fabrics (PFC, credits): the NIC's transport timeout.
    pub lossless_rto: Nanos,
    pub sample: Nanos,
    pub series_ports: u32,
    pub max_events: u64,
    pub memory_limit: Bytes,
    /// DCQCN with RoCE unless a scenario says otherwise.
    pub dcqcn: bool,
    pub dcqcn_kmin: Bytes,
    pub dcqcn_kmax: Bytes,
    pub dcqcn_pmax: f64,
    pub dcqcn_g: f64,
    pub dcqcn_alpha_period: Nanos,
    pub dcqcn_timer: Nanos,
    pub dcqcn_byte_counter: Bytes,
    pub dcqcn_fast_recovery: u32,
    pub dcqcn_rai: BitsPerSec,
    pub dcqcn_rhai: BitsPerSec,
    pub dcqcn_cnp_interval: Nanos,
    pub dcqcn_min_rate: BitsPerSec,
    pub source: Option<String>,
    pub assumption: Option<String>,
}

/// A whole catalog.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Catalog {
    pub constants: Constants,
    pub defaults: Defaults,
    #[serde(default)]
    pub switch: Vec<SwitchModel>,
    #[serde(default)]
    pub optic: Vec<Optic>,
    #[serde(default)]
    pub cable: Vec<Cable>,
    pub cable_lengths: CableLengths,
    #[serde(default)]
    pub nic: Vec<Nic>,
    #[serde(default)]
    pub transport: Vec<TransportProfile>,
    pub simulation: SimDefaults,
    #[serde(default)]
    pub gpu: Vec<GpuModel>,
    /// NCCL protocols (Simple, LL, LL128) for collectives.
    #[serde(default)]
    pub protocol: Vec<ProtocolModel>,
    /// NCCL tuner plugins with region tables.
    #[serde(default)]
    pub tuner_plugin: Vec<TunerPlugin>,
    /// Language-model shapes for the serving model.
    #[serde(default)]
    pub llm: Vec<LlmModel>,
    /// Serving-engine defaults; absent only in user catalogs written before they existed.
    pub serving: Option<ServingDefaults>,
    /// Packet-level defaults; absent only in user catalogs written before they existed.
    pub packet: Option<PacketDefaults>,
    /// Inference defaults; absent only in user catalogs written before they existed.
    pub inference: Option<InferenceDefaults>,
    /// Multi-site training defaults; absent only in user catalogs written before they existed.
    pub multisite: Option<MultisiteDefaults>,
}

/// A user catalog: every section optional; entries merge by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct CatalogOverlay {
    constants: Option<toml::Table>,
    defaults: Option<toml::Table>,
    #[serde(default)]
    switch: Vec<toml::Table>,
    #[serde(default)]
    optic: Vec<toml::Table>,
    #[serde(default)]
    cable: Vec<toml::Table>,
    cable_lengths: Option<toml::Table>,
    #[serde(default)]
    nic: Vec<toml::Table>,
    #[serde(default)]
    transport: Vec<toml::Table>,
    simulation: Option<toml::Table>,
    #[serde(default)]
    gpu: Vec<toml::Table>,
    #[serde(default)]
    protocol: Vec<toml::Table>,
    #[serde(default)]
    tuner_plugin: Vec<toml::Table>,
    #[serde(default)]
    llm: Vec<toml::Table>,
    serving: Option<toml::Table>,
    packet: Option<toml::Table>,
    inference: Option<toml::Table>,
    multisite: Option<toml::Table>,
}

/// Route and cable factors a catalog may give: at least the great circle, at most 10 times
/// it (an assumption: published routes run 1.2 to 3 times it; 1e300 was taken and read a
/// 5.7-year round trip).
const ROUTE_FACTORS: std::ops::RangeInclusive<f64> = 1.0..=10.0;

/// `base` with the keys of `patch` replacing its own (a partial section or entry).
fn patched<T: Serialize + serde::de::DeserializeOwned>(
    base: Option<&T>,
    patch: toml::Table,
    file: &str,
    entry: &str,
) -> Result<T, FabricError> {
    let bad = |message: String| FabricError::Catalog { file: file.to_string(), entry: entry.to_string(), message };
    // Both ways inside `units_required`: the base is written with units, and the user's
    // patch may not give a duration, rate or length as a bare number.
    meshway_units::units_required(|| {
        let mut t = match base {
            Some(b) => toml::Table::try_from(b).map_err(|e| bad(e.to_string()))?,
            None => toml::Table::new(),
        };
        t.extend(patch);
        T::deserialize(toml::Value::Table(t)).map_err(|e| {
            // toml's "invalid type: ..., expected u32\nin `key`" as the scenario's errors read.
            let text = e.to_string();
            let text = text.trim();
            match text.rsplit_once("\nin `") {
                Some((msg, key)) => {
                    bad(format!("`{}`: {}", key.trim_end_matches('`'), crate::error::humanize(msg.trim())))
                }
                None => bad(crate::error::humanize(text)),
            }
        })
    })
}

/// A section of the overlay over the built-in one: only the keys it gives change.
fn patch_section<T: Serialize + serde::de::DeserializeOwned>(
    base: &mut T,
    patch: Option<toml::Table>,
    file: &str,
    entry: &str,
) -> Result<(), FabricError> {
    if let Some(p) = patch {
        *base = patched(Some(&*base), p, file, entry)?;
    }
    Ok(())
}

/// Entries of the overlay: one named like a built-in entry changes the keys it gives; a new
/// name adds a whole entry.
fn merge<T: Serialize + serde::de::DeserializeOwned>(
    base: &mut Vec<T>,
    add: Vec<toml::Table>,
    name: impl Fn(&T) -> &str,
    kind: &str,
    file: &str,
) -> Result<(), FabricError> {
    let mut seen: Vec<String> = Vec::new();
    for item in add {
        let n = item.get("name").and_then(|v| v.as_str()).unwrap_or("").to_string();
        let entry = format!("{kind} {n:?}");
        // Given twice in one file, the second would silently replace the first.
        if seen.contains(&n) {
            return Err(FabricError::Catalog {
                file: file.to_string(),
                entry,
                message: format!("is given twice in this file: give each {kind} once"),
            });
        }
        seen.push(n.clone());
        match base.iter().position(|b| name(b) == n) {
            Some(i) => base[i] = patched(Some(&base[i]), item, file, &entry)?,
            None => base.push(patched(None, item, file, &entry)?),
        }
    }
    Ok(())
}

impl Catalog {
    /// The built-in catalog.
    pub fn builtin() -> Catalog {
        // The embedded file is checked by a unit test; failing here is a build defect.
        Catalog::parse(DEFAULT_CATALOG, "catalog/default.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    /// Parses and checks a complete catalog.
    pub fn parse(text: &str, file: &str) -> Result<Catalog, FabricError> {
        let cat: Catalog =
            meshway_units::units_required(|| toml::from_str(text)).map_err(|e| locate_toml_error(file, text, &e))?;
        cat.check(file)?;
        Ok(cat)
    }

    /// The built-in catalog with a user file merged over it.
    pub fn with_overlay(text: &str, file: &str) -> Result<Catalog, FabricError> {
        let o: CatalogOverlay = toml::from_str(text).map_err(|e| locate_toml_error(file, text, &e))?;
        let mut c = Catalog::builtin();
        patch_section(&mut c.constants, o.constants, file, "constants")?;
        patch_section(&mut c.defaults, o.defaults, file, "defaults")?;
        patch_section(&mut c.cable_lengths, o.cable_lengths, file, "cable-lengths")?;
        patch_section(&mut c.simulation, o.simulation, file, "simulation")?;
        if let Some(p) = o.inference {
            c.inference = Some(patched(c.inference.as_ref(), p, file, "inference")?);
        }
        if let Some(p) = o.packet {
            c.packet = Some(patched(c.packet.as_ref(), p, file, "packet")?);
        }
        if let Some(p) = o.serving {
            c.serving = Some(patched(c.serving.as_ref(), p, file, "serving")?);
        }
        if let Some(p) = o.multisite {
            c.multisite = Some(patched(c.multisite.as_ref(), p, file, "multisite")?);
        }
        merge(&mut c.switch, o.switch, |s| &s.name, "switch", file)?;
        merge(&mut c.optic, o.optic, |s| &s.name, "optic", file)?;
        merge(&mut c.cable, o.cable, |s| &s.name, "cable", file)?;
        merge(&mut c.nic, o.nic, |s| &s.name, "nic", file)?;
        merge(&mut c.transport, o.transport, |s| &s.name, "transport", file)?;
        // A patched peak would be silently ignored by the serving model where the built-in
        // entry has a measured matmul rate (it computes at that rate): require both.
        for g in &o.gpu {
            let n = g.get("name").and_then(|v| v.as_str()).unwrap_or("");
            let Some(b) = c.gpu.iter().find(|b| b.name == n) else { continue };
            for (peak, rate, has) in [
                ("peak-flops", "matmul-achievable", b.matmul_achievable.is_some()),
                ("fp8-flops", "fp8-matmul-achievable", b.fp8_matmul_achievable.is_some()),
                ("fp4-flops", "fp4-matmul-achievable", b.fp4_matmul_achievable.is_some()),
            ] {
                if has && g.contains_key(peak) && !g.contains_key(rate) {
                    return Err(FabricError::Catalog {
                        file: file.to_string(),
                        entry: format!("gpu {n:?}"),
                        message: format!(
                            "sets {peak} but not {rate}: the serving model computes at {rate} x flops-efficiency, so give both ({rate} at most {peak})"
                        ),
                    });
                }
            }
        }
        merge(&mut c.gpu, o.gpu, |s| &s.name, "gpu", file)?;
        merge(&mut c.protocol, o.protocol, |s| &s.name, "protocol", file)?;
        merge(&mut c.tuner_plugin, o.tuner_plugin, |s| &s.name, "tuner-plugin", file)?;
        merge(&mut c.llm, o.llm, |s| &s.name, "llm", file)?;
        c.check(file).map_err(|e| match e {
            FabricError::Catalog { file, entry, message } => {
                let file = match entry_line(text, &entry) {
                    Some(l) => format!("{file}:{l}"),
                    None => file,
                };
                FabricError::Catalog { file, entry, message }
            }
            e => e,
        })?;
        Ok(c)
    }

    /// Every entry must say where its numbers come from, and values must be usable.
    fn check(&self, file: &str) -> Result<(), FabricError> {
        let bad =
            |entry: String, msg: &str| FabricError::Catalog { file: file.to_string(), entry, message: msg.to_string() };
        let provenance = |kind: &str, name: &str, s: &Option<String>, a: &Option<String>| {
            if s.as_deref().unwrap_or("").trim().is_empty() && a.as_deref().unwrap_or("").trim().is_empty() {
                Err(bad(format!("{kind} {name:?}"), "needs a `source` or an `assumption`"))
            } else {
                Ok(())
            }
        };
        // Prices and power: finite and not negative, and at most a figure no device reaches
        // (1e9 USD, 1e7 W), so that totals over a fabric stay printable.
        let amounts = |entry: String, items: &[(&str, f64, f64)]| {
            for &(key, v, max) in items {
                if !(v.is_finite() && (0.0..=max).contains(&v)) {
                    return Err(bad(
                        entry,
                        &format!("{key} must be a number from 0 to {max:e}, got {}", meshway_units::shown(v)),
                    ));
                }
            }
            Ok(())
        };
        for s in &self.switch {
            amounts(format!("switch {:?}", s.name), &[("power-w", s.power_w, 1e7), ("price-usd", s.price_usd, 1e9)])?;
            provenance("switch", &s.name, &s.source, &s.assumption)?;
            if s.ports < 2 || s.ports > 4096 || s.port_rate.0 == 0 {
                return Err(bad(format!("switch {:?}", s.name), "ports must be 2 to 4096 and port-rate positive"));
            }
            if s.buffer.0 == 0 {
                return Err(bad(format!("switch {:?}", s.name), "buffer must be positive"));
            }
            // A cage holds whole ports: its rate is a multiple of the port rate.
            if s.cage_rate.is_some_and(|c| c.0 == 0 || !c.0.is_multiple_of(s.port_rate.0)) {
                return Err(bad(
                    format!("switch {:?}", s.name),
                    &format!("cage-rate must be a whole number of ports ({})", s.port_rate),
                ));
            }
            if s.max_ports.is_some_and(|m| m < s.ports) {
                return Err(bad(format!("switch {:?}", s.name), "max-ports must be at least ports"));
            }
        }
        for o in &self.optic {
            amounts(format!("optic {:?}", o.name), &[("power-w", o.power_w, 1e7), ("price-usd", o.price_usd, 1e9)])?;
            provenance("optic", &o.name, &o.source, &o.assumption)?;
            if o.rate.0 == 0 {
                return Err(bad(format!("optic {:?}", o.name), "rate must be positive"));
            }
        }
        for c in &self.cable {
            amounts(format!("cable {:?}", c.name), &[("price-usd-per-m", c.price_usd_per_m, 1e9)])?;
            provenance("cable", &c.name, &c.source, &c.assumption)?;
        }
        for n in &self.nic {
            amounts(format!("nic {:?}", n.name), &[("power-w", n.power_w, 1e7), ("price-usd", n.price_usd, 1e9)])?;
            provenance("nic", &n.name, &n.source, &n.assumption)?;
            if n.ports == 0 || n.rate.0 == 0 {
                return Err(bad(format!("nic {:?}", n.name), "ports and rate must be positive"));
            }
            if n.achievable.is_some_and(|a| a.0 == 0 || a.0 > n.rate.0) {
                return Err(bad(format!("nic {:?}", n.name), "achievable must be positive and at most the rate"));
            }
            if n.tree_network_share.is_some_and(|f| !(f > 0.0 && f <= 1.0)) {
                return Err(bad(format!("nic {:?}", n.name), "tree-network-share must be above 0 and at most 1"));
            }
            for (key, v) in
                [("nccl-nvls-chunk", n.nccl_nvls_chunk), ("nccl-nvls-tree-max-chunk", n.nccl_nvls_tree_max_chunk)]
            {
                if v.is_some_and(|b| !(4096..=(64 << 20)).contains(&b.0)) {
                    return Err(bad(format!("nic {:?}", n.name), &format!("{key} must be from 4KiB to 64MiB")));
                }
            }
            if n.nccl_net_latency.is_some_and(|l| l.0 > 1_000_000_000) {
                return Err(bad(format!("nic {:?}", n.name), "nccl-net-latency must be at most 1s"));
            }
            if let Some(t) = n.transport.as_deref().filter(|t| self.transport_profile(t).is_none()) {
                return Err(bad(format!("nic {:?}", n.name), &format!("transport: no [[transport]] named {t:?}")));
            }
            if let Some(t) = n.nccl_tuner_plugin.as_deref().filter(|t| self.tuner_plugin_named(t).is_none()) {
                return Err(bad(
                    format!("nic {:?}", n.name),
                    &format!(
                        "nccl-tuner-plugin: no [[tuner-plugin]] named {t:?} (the catalog has {})",
                        self.tuner_plugin_names()
                    ),
                ));
            }
            if let Some(ps) = &n.protocols {
                if let Some(p) = ps.iter().enumerate().find(|(i, p)| ps[..*i].contains(p)).map(|(_, p)| p) {
                    return Err(bad(format!("nic {:?}", n.name), &format!("protocols: {p:?} is listed twice")));
                }
                if ps.is_empty() {
                    return Err(bad(format!("nic {:?}", n.name), "protocols must name at least one [[protocol]]"));
                }
                if let Some(p) = ps.iter().find(|p| self.protocol(p).is_none()) {
                    let names: Vec<&str> = self.protocol.iter().map(|q| q.name.as_str()).collect();
                    return Err(bad(
                        format!("nic {:?}", n.name),
                        &format!("protocols: no [[protocol]] named {p:?} (the catalog has {})", names.join(", ")),
                    ));
                }
            }
        }
        for t in &self.tuner_plugin {
            provenance("tuner-plugin", &t.name, &t.source, &t.assumption)?;
            let entry = || format!("tuner-plugin {:?}", t.name);
            if t.min_nodes == 0 {
                return Err(bad(entry(), "min-nodes must be at least 1"));
            }
            if t.region.is_empty() {
                return Err(bad(entry(), "needs at least one [[tuner-plugin.region]]"));
            }
            for (i, r) in t.region.iter().enumerate() {
                let at = |m: String| bad(entry(), &format!("region {}: {m}", i + 1));
                use crate::workload_config::{AlgorithmConfig as A, OpConfig as O};
                if !matches!(r.op, O::AllReduce | O::AllGather | O::ReduceScatter | O::Broadcast) {
                    return Err(at(format!(
                        "op must be all-reduce, all-gather, reduce-scatter or broadcast, got {:?}",
                        r.op.name()
                    )));
                }
                if !matches!(r.algorithm, A::Ring | A::Tree | A::Nvls | A::NvlsTree | A::Collnet) {
                    // Its name as the file gives it.
                    let name = toml::Value::try_from(r.algorithm).ok().and_then(|v| v.as_str().map(String::from));
                    return Err(at(format!(
                        "algorithm must be ring, tree, nvls, nvls-tree or collnet, got {:?}",
                        name.unwrap_or_default()
                    )));
                }
                if self.protocol(&r.protocol).is_none() {
                    let names: Vec<&str> = self.protocol.iter().map(|q| q.name.as_str()).collect();
                    return Err(at(format!(
                        "protocol: no [[protocol]] named {:?} (the catalog has {})",
                        r.protocol,
                        names.join(", ")
                    )));
                }
                if r.ranks_per_host == 0 {
                    return Err(at("ranks-per-host must be at least 1".into()));
                }
                if r.vertices.len() < 2 {
                    return Err(at("vertices must give at least 2 corners".into()));
                }
                if let Some(v) =
                    r.vertices.iter().find(|v| !v.iter().all(|x| x.is_finite() && (0.0..=1e15).contains(x)))
                {
                    return Err(at(format!(
                        "vertices: each corner is [bytes, ranks], both from 0 to 1e15, got [{}, {}]",
                        meshway_units::shown(v[0]),
                        meshway_units::shown(v[1])
                    )));
                }
            }
        }
        for t in &self.transport {
            provenance("transport", &t.name, &t.source, &t.assumption)?;
            if t.mtu.0 == 0 {
                return Err(bad(format!("transport {:?}", t.name), "mtu must be positive"));
            }
            if !["ecmp", "adaptive", "adaptive-global", "spray"].contains(&t.default_routing.as_str()) {
                return Err(bad(
                    format!("transport {:?}", t.name),
                    &format!(
                        "default-routing must be ecmp, adaptive, adaptive-global or spray, got {:?}",
                        t.default_routing
                    ),
                ));
            }
        }
        for g in &self.gpu {
            provenance("gpu", &g.name, &g.source, &g.assumption)?;
            if !(g.peak_flops.is_finite() && g.peak_flops > 0.0) {
                return Err(bad(format!("gpu {:?}", g.name), "peak-flops must be positive and finite"));
            }
            if g.nvls_channels.is_some_and(|c| c == 0 || c > 64) {
                return Err(bad(format!("gpu {:?}", g.name), "nvls-channels must be 1 to 64 (NCCL's MAXCHANNELS)"));
            }
            if !g.nvls_tree_channel_max.is_empty() && g.nvls_channels.is_none() {
                return Err(bad(
                    format!("gpu {:?}", g.name),
                    "nvls-tree-channel-max needs nvls-channels (the ceiling applies to NVLS-tree's channel model)",
                ));
            }
            if !g.nvls_tree_channel_max.is_empty()
                && (g.nvls_tree_channel_max.len() != 2 || g.nvls_tree_channel_max.iter().any(|r| r.0 == 0))
            {
                return Err(bad(
                    format!("gpu {:?}", g.name),
                    "nvls-tree-channel-max must give two positive rates: across 2 hosts, and across 3 or more",
                ));
            }
            for (key, v) in [("nvls-efficiency", g.nvls_efficiency), ("collnet-efficiency", g.collnet_efficiency)] {
                if v.is_some_and(|v| !(v > 0.0 && v <= 1.0)) {
                    return Err(bad(format!("gpu {:?}", g.name), &format!("{key} must be in (0, 1]")));
                }
            }
            if g.nvlink_achievable.is_some_and(|r| r.0 == 0) {
                return Err(bad(format!("gpu {:?}", g.name), "nvlink-achievable must be positive"));
            }
            if g.nvlink_gpus.is_some_and(|n| !(1..=100_000).contains(&n)) {
                return Err(bad(format!("gpu {:?}", g.name), "nvlink-gpus must be 1 to 100000 GPUs"));
            }
            if g.memory.is_some_and(|m| m.0 == 0)
                || g.hbm_bandwidth.is_some_and(|b| b.0 == 0)
                || g.fp8_flops.is_some_and(|f| !(f.is_finite() && f > 0.0))
                || g.fp4_flops.is_some_and(|f| !(f.is_finite() && f > 0.0))
            {
                return Err(bad(
                    format!("gpu {:?}", g.name),
                    "memory, hbm-bandwidth, fp8-flops and fp4-flops must be positive",
                ));
            }
            for (key, v, peak, peak_key) in [
                ("matmul-achievable", g.matmul_achievable, Some(g.peak_flops), "peak-flops"),
                ("fp8-matmul-achievable", g.fp8_matmul_achievable, g.fp8_flops, "fp8-flops"),
                ("fp4-matmul-achievable", g.fp4_matmul_achievable, g.fp4_flops, "fp4-flops"),
            ] {
                let Some(v) = v else { continue };
                let Some(peak) = peak else {
                    return Err(bad(format!("gpu {:?}", g.name), &format!("{key} needs {peak_key} (its peak)")));
                };
                if !(v.is_finite() && v > 0.0 && v <= peak) {
                    return Err(bad(
                        format!("gpu {:?}", g.name),
                        &format!("{key} must be positive and at most {peak_key} ({peak:e} FLOP/s), got {v:e}"),
                    ));
                }
            }
        }
        for m in &self.llm {
            provenance("llm", &m.name, &m.source, &m.assumption)?;
            let active = m.active_params.unwrap_or(m.params);
            if m.layers == 0
                || m.hidden == 0
                || m.heads == 0
                || m.kv_heads == 0
                || m.head_dim == 0
                || !(m.params.is_finite() && m.params > 0.0)
                || !(active > 0.0 && active <= m.params)
            {
                return Err(bad(
                    format!("llm {:?}", m.name),
                    "layers, hidden, heads, kv-heads, head-dim and params must be positive, active-params at most params",
                ));
            }
            // Grouped-query attention shares each KV head among a whole number of query heads.
            if !m.heads.is_multiple_of(m.kv_heads) {
                return Err(bad(
                    format!("llm {:?}", m.name),
                    &format!(
                        "kv-heads must divide heads (grouped-query attention), got {} KV heads for {} heads",
                        m.kv_heads, m.heads
                    ),
                ));
            }
            if m.context == Some(0) {
                return Err(bad(format!("llm {:?}", m.name), "context must be positive (tokens), or absent"));
            }
        }
        if let Some(pk) = &self.packet {
            provenance("packet", "", &pk.source, &pk.assumption)?;
            if pk.xon > pk.xoff {
                return Err(bad("packet".into(), "xon must not exceed xoff"));
            }
            if pk.rto.0 < 1_000 || pk.lossless_rto.0 < 1_000 {
                // Shorter than a packet's round trip, go-back-N resends without end.
                return Err(bad("packet".into(), "rto and lossless-rto must be at least 1us"));
            }
            if pk.dcqcn_timer.0 < 1_000 || pk.dcqcn_alpha_period.0 < 1_000 {
                // A timer that comes due at the instant it is armed re-arms without end.
                return Err(bad("packet".into(), "dcqcn-timer and dcqcn-alpha-period must be at least 1us"));
            }
            if pk.control_bytes == 0 {
                return Err(bad("packet".into(), "control-bytes must be at least 1 byte"));
            }
            if pk.trim_packets == 0 || pk.window_packets == 0 || pk.series_ports == 0 {
                return Err(bad("packet".into(), "trim-packets, window-packets and series-ports must be positive"));
            }
            if pk.dcqcn_kmin > pk.dcqcn_kmax
                || !(0.0..=1.0).contains(&pk.dcqcn_pmax)
                || !(0.0..=1.0).contains(&pk.dcqcn_g)
            {
                return Err(bad(
                    "packet".into(),
                    "dcqcn-kmin must not exceed dcqcn-kmax; dcqcn-pmax and dcqcn-g must be in [0, 1]",
                ));
            }
        }
        if let Some(sv) = &self.serving {
            provenance("serving", "", &sv.source, &sv.assumption)?;
            for (key, v) in [
                ("flops-efficiency", sv.flops_efficiency),
                ("bandwidth-efficiency", sv.bandwidth_efficiency),
                ("memory-utilization", sv.memory_utilization),
                ("moe-efficiency", sv.moe_efficiency),
            ] {
                // The floor, 0.001, is an assumption as the scenario's own shares have it: no
                // engine runs at a thousandth of its GPU, and below it step times leave u64.
                if !(0.001..=1.0).contains(&v) {
                    return Err(bad(
                        "serving".into(),
                        &format!("{key} must be from 0.001 to 1, got {}", meshway_units::shown(v)),
                    ));
                }
            }
            const HOUR: u64 = 3_600_000_000_000;
            for (key, v) in [
                ("step-overhead", Some(sv.step_overhead)),
                ("request-overhead", Some(sv.request_overhead)),
                ("allreduce-latency", Some(sv.allreduce_latency)),
                ("allreduce-oneshot-latency", sv.allreduce_oneshot_latency),
            ] {
                if let Some(n) = v.filter(|n| n.0 > HOUR) {
                    return Err(bad("serving".into(), &format!("{key} must be at most 1h, got {n}")));
                }
            }
            if sv.roofline_knee.is_some_and(|p| p.is_nan() || p < 1.0) {
                return Err(bad(
                    "serving".into(),
                    "roofline-knee must be at least 1 (1 adds compute and memory time; inf is their max)",
                ));
            }
            if sv.token_budget == 0 || sv.max_batch == 0 {
                return Err(bad("serving".into(), "token-budget and max-batch must be positive"));
            }
        }
        for p in &self.protocol {
            provenance("protocol", &p.name, &p.source, &p.assumption)?;
            if !(p.efficiency > 0.0 && p.efficiency <= 1.0) {
                return Err(bad(format!("protocol {:?}", p.name), "efficiency must be in (0, 1]"));
            }
            if p.ring_in_flight.is_some_and(|w| !(1..=64).contains(&w)) {
                return Err(bad(
                    format!("protocol {:?}", p.name),
                    "ring-in-flight must be a whole number from 1 to 64",
                ));
            }
            if p.tree_chunk.is_some_and(|b| b.0 == 0 || b.0 > 1 << 30) {
                return Err(bad(format!("protocol {:?}", p.name), "tree-chunk must be positive and at most 1GiB"));
            }
            if p.buffer.is_some_and(|b| b.0 == 0 || b.0 > 1 << 30) {
                return Err(bad(format!("protocol {:?}", p.name), "buffer must be positive and at most 1GiB"));
            }
        }
        let sim = &self.simulation;
        provenance("simulation", "", &sim.source, &sim.assumption)?;
        if sim.channels == 0 || sim.qps_per_connection == 0 || sim.spray_paths == 0 || sim.pipeline_depth == 0 {
            return Err(bad(
                "simulation".into(),
                "channels, qps-per-connection, spray-paths and pipeline-depth must be positive",
            ));
        }
        if sim.channels > 64 {
            // NCCL's MAXCHANNELS (src/include/device.h).
            return Err(bad("simulation".into(), &format!("channels must be at most 64, got {}", sim.channels)));
        }
        if !(256..=65_536).contains(&self.constants.default_mtu_bytes) {
            return Err(bad(
                "constants".into(),
                &format!("default-mtu-bytes must be 256 to 65536, got {}", self.constants.default_mtu_bytes),
            ));
        }
        if sim.qps_per_connection > 128 {
            // NCCL_IB_QPS_PER_CONNECTION is at most 128 (NCCL_IB_MAX_QPS, src/transport/net_ib/common.h).
            return Err(bad(
                "simulation".into(),
                &format!("qps-per-connection must be at most 128, got {}", sim.qps_per_connection),
            ));
        }
        if !(0.0..=0.5).contains(&sim.completion_tolerance) {
            return Err(bad(
                "simulation".into(),
                &format!("completion-tolerance must be in [0, 0.5], got {}", sim.completion_tolerance),
            ));
        }
        if let Some(n) = sim.net_overhead.filter(|n| n.0 > 1_000_000_000) {
            return Err(bad("simulation".into(), &format!("net-overhead must be at most 1s, got {n}")));
        }
        if !(sim.ll_max.is_empty() || sim.ll_max.len() == 2) || sim.ll_max.iter().any(|b| b.0 == 0) {
            return Err(bad(
                "simulation".into(),
                "ll-max must give two positive rates (2 hosts, 3 or more), or be left out",
            ));
        }
        for (key, b) in [("nccl-buffer", sim.nccl_buffer), ("nccl-p2p-window", sim.nccl_p2p_window)] {
            if let Some(b) = b.filter(|b| b.0 == 0 || b.0 > 1 << 30) {
                return Err(bad("simulation".into(), &format!("{key} must be from 1B to 1GiB, got {b}")));
            }
        }
        if !(0.001..=1.0).contains(&sim.compute_efficiency) {
            return Err(bad(
                "simulation".into(),
                "compute-efficiency must be from 0.001 to 1 (as a workload's efficiency)",
            ));
        }
        if !self.gpu.iter().any(|g| g.name == sim.gpu_model) {
            return Err(bad("simulation".into(), "gpu-model names no [[gpu]] entry"));
        }
        provenance("defaults", "", &self.defaults.source, &self.defaults.assumption)?;
        provenance("cable-lengths", "", &self.cable_lengths.source, &self.cable_lengths.assumption)?;
        if let Some(i) = &self.inference {
            provenance("inference", "", &i.source, &i.assumption)?;
            if !ROUTE_FACTORS.contains(&i.route_factor) {
                return Err(bad(
                    "inference".into(),
                    &format!("route-factor must be from 1 to 10, got {}", meshway_units::shown(i.route_factor)),
                ));
            }
            if i.ttft_p99.0 == 0 {
                return Err(bad("inference".into(), "ttft-p99 must be above 0 (at 0 every request misses)"));
            }
            // Checked here, so the error names the catalog file that set it (it named the
            // scenario).
            if !(i.target_utilization > 0.0 && i.target_utilization <= 1.0) {
                return Err(bad(
                    "inference".into(),
                    &format!(
                        "target-utilization must be in (0, 1], got {}",
                        meshway_units::shown(i.target_utilization)
                    ),
                ));
            }
            // As a scenario's own `gpus-per-server` and `access-hops` are bounded (the bounds
            // are assumptions far past real servers and paths).
            if !(1..=1024).contains(&i.gpus_per_server) {
                return Err(bad(
                    "inference".into(),
                    &format!("gpus-per-server must be 1 to 1024, got {}", i.gpus_per_server),
                ));
            }
            if i.access_hops > 1000 {
                return Err(bad(
                    "inference".into(),
                    &format!("access-hops must be at most 1000, got {}", i.access_hops),
                ));
            }
            // A path's parts, bounded by what no real path takes (an assumption), so a
            // path's latency stays far inside the clock.
            let path_times = [("hop-latency", i.hop_latency), ("last-mile", i.last_mile), ("wan-fixed", i.wan_fixed)]
                .into_iter()
                .map(|(k, v)| ("inference".to_string(), k, v))
                .chain(
                    i.wan_routes
                        .iter()
                        .enumerate()
                        .map(|(k, w)| (format!("inference.wan-route[{}]", k + 1), "wan-fixed", w.wan_fixed)),
                );
            for (entry, key, v) in path_times {
                if v.0 > 1_000_000_000 {
                    return Err(bad(entry, &format!("{key} must be at most 1s, got {v}")));
                }
            }
            for (k, w) in i.wan_routes.iter().enumerate() {
                if !ROUTE_FACTORS.contains(&w.route_factor)
                    || w.cable_factor.is_some_and(|c| !ROUTE_FACTORS.contains(&c))
                {
                    return Err(bad(
                        format!("inference.wan-route[{}]", k + 1),
                        "route-factor and cable-factor must be from 1 to 10 (as [inference] route-factor)",
                    ));
                }
                if w.cable_factor.is_some() && w.between[0] == w.between[1] {
                    return Err(bad(
                        format!("inference.wan-route[{}]", k + 1),
                        "cable-factor applies to cables between two continents, not within one",
                    ));
                }
                if i.wan_routes[..k].iter().any(|x| x.between == w.between || x.between == [w.between[1], w.between[0]])
                {
                    return Err(bad(format!("inference.wan-route[{}]", k + 1), "names a pair of continents twice"));
                }
            }
            for (k, g) in i.wan_gateways.iter().enumerate() {
                let entry = || format!("inference.wan-gateway[{}] {:?}", k + 1, g.name);
                if g.name.trim().is_empty() || i.wan_gateways[..k].iter().any(|x| x.name == g.name) {
                    return Err(bad(entry(), "needs a unique non-empty name"));
                }
                let [lat, lon] = g.location;
                if !on_globe(lat, lon) {
                    return Err(bad(
                        entry(),
                        &format!("location must be [latitude, longitude] in degrees (-90..90, -180..180), got [{lat}, {lon}]"),
                    ));
                }
                provenance("inference.wan-gateway", &g.name, &g.source, &g.assumption)?;
            }
            for (k, c) in i.wan_cables.iter().enumerate() {
                let entry = || format!("inference.wan-cable[{}] {:?}", k + 1, c.name);
                let ends: Vec<_> = c.between.iter().map(|n| i.wan_gateways.iter().find(|g| &g.name == n)).collect();
                let (Some(x), Some(y)) = (ends[0], ends[1]) else {
                    let names: Vec<&str> = i.wan_gateways.iter().map(|g| g.name.as_str()).collect();
                    return Err(bad(
                        entry(),
                        &format!(
                            "between must name two [[inference.wan-gateway]] entries ({}); a catalog overlay that gives [[inference.wan-gateway]] replaces the built-in list, so it must give [[inference.wan-cable]] too",
                            names.join(", ")
                        ),
                    ));
                };
                if x.continent == y.continent {
                    return Err(bad(entry(), "joins two gateways of one continent (paths within one need no cable)"));
                }
                if c.source.as_deref().unwrap_or("").trim().is_empty()
                    && c.assumption.as_deref().unwrap_or("").trim().is_empty()
                {
                    return Err(bad(entry(), "needs a `source` or an `assumption`"));
                }
            }
        }
        if let Some(m) = &self.multisite {
            provenance("multisite", "", &m.source, &m.assumption)?;
            if !(m.budget > 0.0 && m.budget < 1.0) {
                return Err(bad("multisite".into(), "budget must be a share in (0, 1)"));
            }
            if m.resolution.0 == 0 || m.wavelengths.contains(&0) {
                return Err(bad("multisite".into(), "resolution and wavelengths must be positive"));
            }
        }
        if self.switch_index(&self.defaults.switch_model).is_none() {
            return Err(bad("defaults".into(), "switch-model names no [[switch]] entry"));
        }
        // Defaults every scenario takes without writing them: checked here, so a bad one is
        // named in the catalog, not in the scenario that never wrote it.
        let d = &self.defaults;
        if d.nic.0 == 0 || d.nic.0 > 100_000_000_000_000 || d.nvlink_per_gpu.0 == 0 {
            return Err(bad("defaults".into(), "nic must be positive and at most 100Tbps, nvlink-per-gpu positive"));
        }
        if !(1..=1024).contains(&d.gpus_per_host) {
            return Err(bad("defaults".into(), &format!("gpus-per-host must be 1 to 1024, got {}", d.gpus_per_host)));
        }
        // Three-tier defaults: 1 to 64 core switches and ratios from 1:1 to 32:1, assumptions
        // far beyond any design (a bad one was reported against the scenario's keys).
        if !(1..=64).contains(&d.three_tier_core_switches) {
            return Err(bad(
                "defaults".into(),
                &format!("three-tier-core-switches must be 1 to 64, got {}", d.three_tier_core_switches),
            ));
        }
        for (key, r) in [
            ("three-tier-access-oversubscription", d.three_tier_access_oversubscription),
            ("three-tier-aggregation-oversubscription", d.three_tier_aggregation_oversubscription),
        ] {
            if !(1.0..=32.0).contains(&r.as_f64()) {
                return Err(bad("defaults".into(), &format!("{key} must be from 1:1 to 32:1, got {r}")));
            }
        }
        if let Some(n) = d.nvlink_domain_switch.as_deref().filter(|n| self.switch_index(n).is_none()) {
            return Err(bad("defaults".into(), &format!("nvlink-domain-switch {n:?} names no [[switch]] entry")));
        }
        // Times a device or a fibre takes, bounded by what none does (assumptions): every
        // figure built on them (a path's latency, a step) stays far inside the clock.
        const SECOND: u64 = 1_000_000_000;
        let times = [
            ("constants".to_string(), "fiber-delay-per-km", self.constants.fiber_delay_per_km.0, 1_000_000),
            ("constants".to_string(), "pfc-response", self.constants.pfc_response.0, SECOND),
            ("constants".to_string(), "pfc-response-100g", self.constants.pfc_response_100g.map_or(0, |n| n.0), SECOND),
        ]
        .into_iter()
        .chain(self.switch.iter().map(|s| (format!("switch {:?}", s.name), "latency", s.latency.0, SECOND)))
        .chain(self.transport.iter().map(|t| (format!("transport {:?}", t.name), "alpha", t.alpha.0, SECOND)))
        .chain(
            self.transport
                .iter()
                .filter_map(|t| t.hop_latency.map(|h| (format!("transport {:?}", t.name), "hop-latency", h.0, SECOND))),
        );
        for (entry, key, v, max) in times {
            if v > max {
                return Err(bad(entry, &format!("{key} must be at most {}, got {}", Nanos(max), Nanos(v))));
            }
        }
        for t in &self.transport {
            if t.header_bytes > 65_535 {
                return Err(bad(format!("transport {:?}", t.name), "header-bytes must be at most 65535"));
            }
        }
        for (kind, names) in [
            ("switch", self.switch.iter().map(|x| x.name.as_str()).collect::<Vec<_>>()),
            ("optic", self.optic.iter().map(|x| x.name.as_str()).collect()),
            ("nic", self.nic.iter().map(|x| x.name.as_str()).collect()),
            ("gpu", self.gpu.iter().map(|x| x.name.as_str()).collect()),
            ("transport", self.transport.iter().map(|x| x.name.as_str()).collect()),
        ] {
            if let Some(n) = names.iter().find(|n| n.trim().is_empty() || n.chars().any(char::is_control)) {
                return Err(bad(format!("{kind} {n:?}"), "a name must be printable text, not empty"));
            }
        }
        Ok(())
    }

    pub fn switch_index(&self, name: &str) -> Option<u16> {
        self.switch.iter().position(|s| s.name == name).map(|i| i as u16)
    }

    pub fn switch_names(&self) -> Vec<&str> {
        self.switch.iter().map(|s| s.name.as_str()).collect()
    }

    /// A collective protocol by name ("simple", "ll", "ll128").
    pub fn protocol(&self, name: &str) -> Option<&ProtocolModel> {
        self.protocol.iter().find(|p| p.name == name)
    }

    /// A tuner plugin by name.
    pub fn tuner_plugin_named(&self, name: &str) -> Option<&TunerPlugin> {
        self.tuner_plugin.iter().find(|p| p.name == name)
    }

    /// The tuner plugins' names, for messages ("none" when there are none).
    pub fn tuner_plugin_names(&self) -> String {
        let names: Vec<&str> = self.tuner_plugin.iter().map(|p| p.name.as_str()).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// Finds an optic by catalog name or by common alias ("400ZR", "ZR+", "800ZR").
    pub fn optic_index(&self, name: &str) -> Option<u16> {
        let canon = match name.to_ascii_lowercase().replace(['_', ' '], "-").as_str() {
            "400zr" | "zr" => "400g-zr".to_string(),
            "zr+" | "400zr+" | "openzr+" | "zr-plus" | "400g-zr+" => "400g-zr-plus".to_string(),
            "800zr" | "800g-zr" => "800g-zr".to_string(),
            other => other.to_string(),
        };
        self.optic.iter().position(|o| o.name.eq_ignore_ascii_case(&canon)).map(|i| i as u16)
    }

    /// The cheapest pluggable (non-coherent) optic of exactly `rate` reaching `length`;
    /// if none has that rate, the cheapest faster one. None when nothing reaches.
    pub fn choose_optic(&self, rate: BitsPerSec, length: Meters) -> Option<u16> {
        self.choose_optic_of(rate, length, None)
    }

    /// As [`Catalog::choose_optic`], among the optics of one class only (when given).
    pub fn choose_optic_of(&self, rate: BitsPerSec, length: Meters, class: Option<OpticClass>) -> Option<u16> {
        let fits =
            |o: &&Optic| o.reach >= length && o.class != OpticClass::Coherent && class.is_none_or(|c| o.class == c);
        // What one link costs: a copper cable is the whole link; an optic takes a module at
        // each end and its fibre (a module's price against a cable's picked a $100 module
        // pair and fibre over a $150 cable).
        let link_cost = |o: &Optic| match o.class {
            OpticClass::Copper => o.price_usd,
            _ => 2.0 * o.price_usd + self.cable_for(o).map_or(0.0, |c| c.price_usd_per_m * length.0 as f64 / 1000.0),
        };
        let best = |want_exact: bool| {
            self.optic
                .iter()
                .enumerate()
                .filter(|(_, o)| fits(o))
                .filter(|(_, o)| if want_exact { o.rate == rate } else { o.rate > rate })
                .min_by(|(_, a), (_, b)| {
                    (a.rate, link_cost(a)).partial_cmp(&(b.rate, link_cost(b))).unwrap_or(std::cmp::Ordering::Equal)
                })
                .map(|(i, _)| i as u16)
        };
        best(true).or_else(|| best(false))
    }

    /// The cheapest coherent optic of at least `rate` reaching `length` (the slowest such
    /// rate first), for a link no pluggable reaches.
    pub fn choose_coherent_at(&self, rate: BitsPerSec, length: Meters) -> Option<u16> {
        self.optic
            .iter()
            .enumerate()
            .filter(|(_, o)| o.class == OpticClass::Coherent && o.reach >= length && o.rate >= rate)
            .min_by(|(_, a), (_, b)| {
                (a.rate, a.price_usd).partial_cmp(&(b.rate, b.price_usd)).unwrap_or(std::cmp::Ordering::Equal)
            })
            .map(|(i, _)| i as u16)
    }

    /// Why `optic` cannot span `length`, naming an optic that reaches (of the same rate first:
    /// an 800ZR span wants an 800G optic, then any), or the farthest there is and then
    /// `otherwise`. None when it reaches.
    pub fn beyond_reach(&self, optic: u16, length: Meters, otherwise: &str) -> Option<String> {
        let o = &self.optic[optic as usize];
        if length <= o.reach {
            return None;
        }
        let same = self
            .optic
            .iter()
            .filter(|x| x.class == OpticClass::Coherent && x.reach >= length && x.rate == o.rate)
            .min_by(|a, b| a.price_usd.total_cmp(&b.price_usd))
            .map(|x| x.name.clone());
        let hint = match same.or_else(|| self.choose_coherent(length).map(|i| self.optic[i as usize].name.clone())) {
            Some(n) => format!("choose an optic that reaches it, such as {n}"),
            None => match self.optic.iter().filter(|x| x.class == OpticClass::Coherent).max_by_key(|x| x.reach) {
                Some(x) => format!(
                    "no coherent optic in the catalog reaches it (the farthest, {}, reaches {}): {otherwise}",
                    x.name, x.reach
                ),
                None => "the catalog has no coherent optic".to_string(),
            },
        };
        let (l, r) = length.shown_against(o.reach);
        Some(format!("{l} exceeds the {} reach of {r}; {hint}", o.name))
    }

    /// The cheapest coherent optic reaching `length` (400ZR up to its reach, ZR+ beyond).
    pub fn choose_coherent(&self, length: Meters) -> Option<u16> {
        self.optic
            .iter()
            .enumerate()
            .filter(|(_, o)| o.class == OpticClass::Coherent && o.reach >= length)
            .min_by(|(_, a), (_, b)| a.price_usd.total_cmp(&b.price_usd))
            .map(|(i, _)| i as u16)
    }

    /// The cable entry used for an optic's fibre plant.
    pub fn cable_for(&self, optic: &Optic) -> Option<&Cable> {
        let want = match optic.class {
            OpticClass::Copper => return None,
            OpticClass::Multimode => "mmf-om4-mpo",
            OpticClass::SingleMode if optic.name.contains("dr") => "smf-mpo",
            OpticClass::SingleMode | OpticClass::Coherent => "smf-patch",
        };
        self.cable.iter().find(|c| c.name == want)
    }

    /// The NIC of exactly `rate`, else the slowest one faster than it; None when every
    /// catalog NIC is slower.
    pub fn nic_for(&self, rate: BitsPerSec) -> Option<&Nic> {
        // Of several NICs of the rate, the last: a catalog file's own entries come after the
        // built-in ones, so a NIC it adds is the one used (the first was always taken). A NIC
        // of one transport (AWS's EFA devices) is taken only by name.
        let open = || self.nic.iter().rev().filter(|n| n.transport.is_none());
        open().find(|n| n.rate == rate).or_else(|| open().filter(|n| n.rate > rate).min_by_key(|n| n.rate))
    }

    /// The NIC named `name` when the scenario names one (its `nic-model`), else
    /// [`Catalog::nic_for`] `rate`.
    pub fn nic_of(&self, name: Option<&str>, rate: BitsPerSec) -> Option<&Nic> {
        match name {
            Some(name) => self.nic_named(name),
            None => self.nic_for(rate),
        }
    }

    /// The NIC named `name` (of two, a catalog file's own).
    pub fn nic_named(&self, name: &str) -> Option<&Nic> {
        self.nic.iter().rev().find(|n| n.name == name)
    }

    /// The transport profile named `name` ("infiniband", "roce", "tcp", "ndp", "efa").
    pub fn transport_profile(&self, name: &str) -> Option<&TransportProfile> {
        self.transport.iter().find(|t| t.name == name)
    }

    pub fn gpu_model(&self, name: &str) -> Option<&GpuModel> {
        self.gpu.iter().find(|g| g.name == name)
    }

    /// A language model's shape by name.
    pub fn llm(&self, name: &str) -> Option<&LlmModel> {
        self.llm.iter().find(|m| m.name == name)
    }

    pub fn mtu(&self) -> Bytes {
        Bytes(u64::from(self.constants.default_mtu_bytes))
    }
}

/// The line (from 1) of an overlay's table that a catalog error names: `switch "x"` is the
/// `[[switch]]` whose `name` is "x", `simulation` the `[simulation]` table. `None` when the
/// entry came from the built-in catalog.
fn entry_line(text: &str, entry: &str) -> Option<usize> {
    let (kind, name) = match entry.split_once(' ') {
        Some((k, n)) => (k, Some(n.trim_matches('"'))),
        None => (entry, None),
    };
    let lines: Vec<&str> = text.lines().collect();
    let header = |l: &str| l.trim().starts_with('[');
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        match name {
            None if t == format!("[{kind}]") => return Some(i + 1),
            Some(n) if t == format!("[[{kind}]]") => {
                let named = lines[i + 1..].iter().take_while(|x| !header(x)).any(|x| {
                    x.split_once('=').is_some_and(|(k, v)| k.trim() == "name" && v.trim().trim_matches('"') == n)
                });
                if named {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_every_entry_has_provenance() {
        let c = Catalog::parse(DEFAULT_CATALOG, "default.toml").unwrap();
        assert!(c.switch.len() >= 5);
        assert!(c.optic.len() >= 10);
        assert_eq!(c.constants.fiber_delay_per_km, Nanos(4_900));
        assert_eq!(c.inference.as_ref().map(|i| (i.route_factor, i.wan_fixed)), Some((1.26, Nanos(4_600_000))));
        assert!(c.llm.len() >= 4 && c.serving.is_some());
        let h100 = c.gpu_model("h100-sxm").unwrap();
        assert_eq!((h100.memory, h100.fp8_flops), (Some(Bytes(81_559 * 1024 * 1024)), Some(1979e12)));
        assert_eq!((h100.matmul_achievable, h100.fp8_matmul_achievable), (Some(794.5e12), Some(1402.6e12)));
        assert_eq!(h100.hbm_bandwidth, Some(BitsPerSec(3_350_000_000_000 * 8)));
    }

    #[test]
    fn optic_choice_by_length() {
        let c = Catalog::builtin();
        let name = |l: &str| {
            c.choose_optic(BitsPerSec::gbps(400), l.parse().unwrap()).map(|i| c.optic[i as usize].name.clone())
        };
        assert_eq!(name("3m").as_deref(), Some("400g-dac"));
        assert_eq!(name("30m").as_deref(), Some("400g-sr8"));
        assert_eq!(name("200m").as_deref(), Some("400g-dr4"));
        assert_eq!(name("1km").as_deref(), Some("400g-fr4"));
        assert_eq!(name("8km").as_deref(), Some("400g-lr4"));
        assert_eq!(name("80km"), None, "coherent optics are chosen explicitly for dci");
        assert_eq!(c.optic[c.optic_index("400ZR").unwrap() as usize].name, "400g-zr");
        assert_eq!(c.optic[c.optic_index("ZR+").unwrap() as usize].name, "400g-zr-plus");
        let coh = |l: &str| c.choose_coherent(l.parse().unwrap()).map(|i| c.optic[i as usize].name.clone());
        assert_eq!(coh("100km").as_deref(), Some("400g-zr"));
        assert_eq!(coh("300km").as_deref(), Some("400g-zr-plus"));
        assert_eq!(coh("5000km"), None);
        // A link's cost decides, not a module's against a cable's: $100 DR4 modules (two,
        // and 3 m of fibre: $209) lose to the $150 cable at 3 m and win over SR8 at 30 m.
        let cheap = Catalog::with_overlay("[[optic]]\nname = \"400g-dr4\"\nprice-usd = 100\n", "mine.toml").unwrap();
        let pick = |l: &str| {
            cheap.choose_optic(BitsPerSec::gbps(400), l.parse().unwrap()).map(|i| cheap.optic[i as usize].name.clone())
        };
        assert_eq!(pick("3m").as_deref(), Some("400g-dac"));
        assert_eq!(pick("30m").as_deref(), Some("400g-dr4"));
    }

    #[test]
    fn a_nic_a_catalog_file_adds_is_the_one_used() {
        let c = Catalog::builtin();
        assert_eq!(c.nic_for(BitsPerSec::gbps(400)).unwrap().name, "connectx7-400g");
        // The built-in entry's own text, renamed.
        let start = DEFAULT_CATALOG.find("name = \"connectx7-400g\"").unwrap();
        let end = start + DEFAULT_CATALOG[start..].find("\n[[").unwrap();
        let text = DEFAULT_CATALOG[start..end].replace("connectx7-400g", "acme-400g");
        let mine = Catalog::with_overlay(&format!("[[nic]]\n{text}"), "mine.toml").unwrap();
        assert_eq!(mine.nic_for(BitsPerSec::gbps(400)).unwrap().name, "acme-400g");
        assert_eq!(mine.nic_for(BitsPerSec::gbps(800)).unwrap().name, "connectx8-800g");
        // Unless the scenario names one (`nic-model`).
        assert_eq!(mine.nic_of(Some("connectx7-400g"), BitsPerSec::gbps(400)).unwrap().name, "connectx7-400g");
        assert_eq!(mine.nic_of(None, BitsPerSec::gbps(400)).unwrap().name, "acme-400g");
    }

    #[test]
    fn breakout_ports() {
        let c = Catalog::builtin();
        let th5 = &c.switch[c.switch_index("tomahawk5-64x800g").unwrap() as usize];
        assert_eq!(th5.ports_at(BitsPerSec::gbps(400)), 128);
        assert_eq!(th5.ports_at(BitsPerSec::gbps(800)), 64);
        // 256 x 200G is its most logical ports: 100G ports stop there (half its bandwidth).
        assert_eq!(th5.ports_at(BitsPerSec::gbps(200)), 256);
        assert_eq!(th5.ports_at(BitsPerSec::gbps(100)), 256);
    }

    #[test]
    fn overlay_replaces_by_name_and_requires_provenance() {
        let c = Catalog::with_overlay(
            "[[switch]]\nname = \"generic-64x400g\"\nports = 32\nport-rate = \"400Gbps\"\nlatency = \"1us\"\n\
             buffer = \"32MB\"\npower-w = 500\nprice-usd = 1\nassumption = \"test\"\n",
            "mine.toml",
        )
        .unwrap();
        assert_eq!(c.switch[c.switch_index("generic-64x400g").unwrap() as usize].ports, 32);
        // Three-tier defaults are checked in the catalog, not blamed on a scenario.
        for (overlay, needle) in [
            ("[defaults]\nthree-tier-core-switches = 0\n", "three-tier-core-switches must be 1 to 64, got 0"),
            (
                "[defaults]\nthree-tier-access-oversubscription = \"1000:1\"\n",
                "three-tier-access-oversubscription must be from 1:1 to 32:1, got 1000:1",
            ),
        ] {
            let e = Catalog::with_overlay(overlay, "mine.toml").unwrap_err().to_string();
            assert!(e.contains("mine.toml") && e.contains(needle), "{e}");
        }
        // One entry given twice in a file is refused, not the last one taken.
        let twice = "[[optic]]\nname = \"400g-sr8\"\nprice-usd = 500\n[[optic]]\nname = \"400g-sr8\"\nprice-usd = 5\n";
        let e = Catalog::with_overlay(twice, "mine.toml").unwrap_err().to_string();
        assert!(e.contains("optic \"400g-sr8\"") && e.contains("is given twice in this file"), "{e}");
        let e = Catalog::with_overlay(
            "[[switch]]\nname = \"x\"\nports = 32\nport-rate = \"400Gbps\"\nlatency = \"1us\"\n\
             buffer = \"32MB\"\npower-w = 500\nprice-usd = 1\n",
            "mine.toml",
        )
        .unwrap_err();
        // The message gives the overlay's line of the entry.
        assert_eq!(e.to_string(), "mine.toml:1: catalog entry switch \"x\": needs a `source` or an `assumption`");
        // Prices and power must be finite, not negative and plausible; retransmission
        // timeouts at least 1 us.
        let sw = |power: &str, price: &str| {
            Catalog::with_overlay(
                &format!(
                    "[[switch]]\nname = \"x\"\nports = 32\nport-rate = \"400Gbps\"\nlatency = \"1us\"\n\
                     buffer = \"32MB\"\npower-w = {power}\nprice-usd = {price}\nassumption = \"test\"\n"
                ),
                "mine.toml",
            )
            .map(|_| ())
            .unwrap_err()
            .to_string()
        };
        assert!(sw("500", "nan").contains("price-usd must be a number from 0 to 1e9, got NaN"));
        assert!(sw("500", "-30000").contains("price-usd must be a number from 0 to 1e9, got -30000"));
        assert!(sw("inf", "1").contains("power-w must be a number from 0 to 1e7, got inf"));
        let e = Catalog::with_overlay("# mine\n[packet]\nrto = \"0ns\"\n", "mine.toml")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("mine.toml:2: catalog entry packet: rto and lossless-rto must be at least 1us"), "{e}");
        // Catalog values that used to surface as errors about scenario keys.
        for (overlay, want) in [
            ("[simulation]\nchannels = 100000\n", "channels must be at most 64, got 100000"),
            // A DCQCN timer due at the instant it is armed re-armed without end.
            ("[packet]\ndcqcn-timer = \"0ns\"\n", "dcqcn-timer and dcqcn-alpha-period must be at least 1us"),
            ("[packet]\ndcqcn-alpha-period = \"10ns\"\n", "dcqcn-timer and dcqcn-alpha-period must be at least 1us"),
            ("[packet]\ncontrol-bytes = 0\n", "control-bytes must be at least 1 byte"),
            ("[constants]\ndefault-mtu-bytes = 0\n", "default-mtu-bytes must be 256 to 65536, got 0"),
            ("[simulation]\ncompute-efficiency = 0.0005\n", "compute-efficiency must be from 0.001 to 1"),
            // Defaults every scenario takes, and times no device takes (they saturated the
            // clock, or turned into errors about the scenario's keys).
            ("[defaults]\nnic = \"0bps\"\n", "defaults: nic must be positive"),
            ("[defaults]\ngpus-per-host = 0\n", "gpus-per-host must be 1 to 1024, got 0"),
            ("[defaults]\nnvlink-domain-switch = \"nope\"\n", "nvlink-domain-switch \"nope\" names no [[switch]]"),
            ("[constants]\nfiber-delay-per-km = \"1000000h\"\n", "fiber-delay-per-km must be at most 1ms"),
            ("[[transport]]\nname = \"roce\"\nalpha = \"1000000h\"\n", "transport \"roce\": alpha must be at most 1s"),
            ("[[switch]]\nname = \"generic-64x400g\"\nlatency = \"2h\"\n", "latency must be at most 1s"),
            ("[[transport]]\nname = \"roce\"\nheader-bytes = 4294967295\n", "header-bytes must be at most 65535"),
            ("[[transport]]\nname = \"roce\"\ndefault-routing = \"teleport\"\n", "default-routing must be ecmp"),
            (
                "[[switch]]\nname = \"generic-64x400g\"\ncage-rate = \"300Gbps\"\n",
                "cage-rate must be a whole number of ports",
            ),
            ("[[switch]]\nname = \"generic-64x400g\"\nbuffer = \"0B\"\n", "buffer must be positive"),
            ("[[gpu]]\nname = \"h100-sxm\"\nnvls-channels = 0\n", "nvls-channels must be 1 to 64"),
            ("[[gpu]]\nname = \"h100-sxm\"\nnvlink-gpus = 0\n", "nvlink-gpus must be 1 to 100000 GPUs"),
            (
                "[[llm]]\nname = \"llama-3.1-8b\"\nkv-heads = 128\n",
                "kv-heads must divide heads (grouped-query attention), got 128 KV heads for 32 heads",
            ),
            ("[[llm]]\nname = \"llama-3.1-8b\"\ncontext = 0\n", "context must be positive"),
            (
                "[inference]\ntarget-utilization = 0\n",
                "mine.toml:1: catalog entry inference: target-utilization must be in (0, 1], got 0",
            ),
            ("[[nic]]\nname = \"connectx7-400g\"\nports = 0\n", "ports and rate must be positive"),
            ("[[nic]]\nname = \"aws-efa-p4d\"\nprotocols = []\n", "protocols must name at least one [[protocol]]"),
            ("[[nic]]\nname = \"aws-efa-p4d\"\nprotocols = [\"simple\", \"simple\"]\n", "\"simple\" is listed twice"),
            ("[[nic]]\nname = \"aws-efa-p5\"\ntransport = \"srd\"\n", "transport: no [[transport]] named \"srd\""),
            (
                "[[nic]]\nname = \"aws-efa-p4d\"\nprotocols = [\"simpel\"]\n",
                "protocols: no [[protocol]] named \"simpel\" (the catalog has simple, ll128, ll)",
            ),
        ] {
            let e = Catalog::with_overlay(overlay, "mine.toml").map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(want), "{overlay}: {e}");
        }
        let e = Catalog::with_overlay(
            "[[switch]]\nname = \"x\"\nports = 1\nport-rate = \"400Gbps\"\nlatency = \"1us\"\n\
             buffer = \"32MB\"\npower-w = 500\nprice-usd = 1\nassumption = \"test\"\n",
            "mine.toml",
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(e.contains("ports must be 2 to 4096"), "{e}");
    }
}
#[cfg(test)]
mod overlay_tests {
    use super::Catalog;

    #[test]
    fn the_catalog_round_trips_through_toml() {
        let c = Catalog::builtin();
        let t = toml::to_string(&c).unwrap();
        let back: Catalog = toml::from_str(&t).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(toml::to_string(&back).unwrap(), t);
    }

    #[test]
    fn an_overlay_may_give_some_fields_of_a_section_or_an_entry() {
        let base = Catalog::builtin();
        let c = Catalog::with_overlay(
            "[constants]\nfiber-delay-per-km = \"1us\"\n[[transport]]\nname = \"roce\"\nalpha = \"1us\"\n",
            "mine.toml",
        )
        .unwrap();
        assert_eq!(c.constants.fiber_delay_per_km, meshway_units::Nanos(1_000));
        assert_eq!(c.constants.pfc_response, base.constants.pfc_response, "the rest of [constants] is the built-in's");
        let roce = c.transport_profile("roce").unwrap();
        assert_eq!(roce.alpha, meshway_units::Nanos(1_000));
        assert_eq!(roce.header_bytes, base.transport_profile("roce").unwrap().header_bytes);
        let e = Catalog::with_overlay("[constants]\nfiber-delay = \"1us\"\n", "mine.toml").unwrap_err().to_string();
        assert!(e.contains("mine.toml") && e.contains("constants") && e.contains("fiber-delay"), "{e}");
        let e = Catalog::with_overlay("[[switch]]\nname = \"new\"\nports = 8\n", "mine.toml").unwrap_err().to_string();
        assert!(e.contains("switch \"new\"") && e.contains("missing key `port-rate`"), "{e}");
    }

    #[test]
    fn wan_routes_are_looked_up_by_pair_and_checked() {
        use crate::infer_config::Continent::{AsiaPacific, Europe, SouthAmerica};
        use meshway_units::Nanos;
        let i = Catalog::builtin().inference.unwrap();
        assert_eq!(i.route(Some(Europe), Some(AsiaPacific)), (2.03, Nanos(2_250_000)));
        assert_eq!(i.route(Some(AsiaPacific), Some(Europe)), (2.03, Nanos(2_250_000)));
        // The cable between their landings: its own factor; a pair without one, the default.
        assert_eq!(i.cable_factor(Some(AsiaPacific), Some(Europe)), 1.78);
        assert_eq!(i.cable_factor(Some(SouthAmerica), Some(Europe)), 1.26);
        assert_eq!(i.route(Some(Europe), None), (1.26, Nanos(4_600_000)));
        assert_eq!(i.route(Some(SouthAmerica), Some(Europe)), (1.26, Nanos(4_600_000)));
        let route = |between: &str, factor: f64| {
            format!("[[inference.wan-route]]\nbetween = [{between}]\nroute-factor = {factor}\nwan-fixed = \"1ms\"\nsource = \"s\"\n")
        };
        let twice = route("\"europe\", \"africa\"", 1.5) + &route("\"africa\", \"europe\"", 1.6);
        let e = Catalog::with_overlay(&twice, "mine.toml").unwrap_err().to_string();
        assert!(e.contains("wan-route[2]") && e.contains("twice"), "{e}");
        let e = Catalog::with_overlay(&route("\"europe\", \"africa\"", 0.9), "mine.toml").unwrap_err().to_string();
        assert!(e.contains("wan-route[1]") && e.contains("from 1 to 10"), "{e}");
        let e = refused(&(route("\"europe\", \"africa\"", 1.5) + "cable-factor = 0.5\n"));
        assert!(e.contains("wan-route[1]") && e.contains("cable-factor"), "{e}");
    }

    /// Paths between continents go over the cable landings; within one, or where a continent
    /// is unknown, along the great circle times the factor.
    #[test]
    fn wan_paths_are_routed_over_cable_landings() {
        use super::{great_circle_km, Place};
        use crate::infer_config::Continent::{Africa, Europe, NorthAmerica, SouthAmerica};
        use meshway_units::Nanos;
        let i = Catalog::builtin().inference.unwrap();
        let gw = |n: &str| i.wan_gateways.iter().find(|g| g.name == n).unwrap().location;
        let at = |[lat, lon]: [f64; 2], c| Place { lat, lon, continent: Some(c) };
        let gc = |a: [f64; 2], b: [f64; 2]| great_circle_km(a[0], a[1], b[0], b[1]);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        // Within Europe: 1.20 x the great circle, no landings.
        let (paris, berlin) = ([48.86, 2.35], [52.52, 13.40]);
        let p = i.wan_path(at(paris, Europe), at(berlin, Europe));
        assert!(close(p.fiber_km, gc(paris, berlin) * 1.2) && p.via.is_empty(), "{p:?}");
        assert_eq!(p.fixed, Nanos(2_250_000));
        // From one landing to the other end of its cable: the cable alone, at its 1.26.
        let (vb, bilbao) = (gw("virginia-beach"), gw("bilbao"));
        let p = i.wan_path(at(vb, NorthAmerica), at(bilbao, Europe));
        assert!(close(p.fiber_km, gc(vb, bilbao) * 1.26), "{p:?}");
        assert_eq!(p.via, ["virginia-beach", "bilbao"]);
        // From the US West Coast to Bilbao: across North America (1.78) to the better of
        // the two Atlantic landings that reach Bilbao, then the cable; far longer than the
        // great circle at the pair's factor.
        let bandon = gw("bandon");
        let want = ["virginia-beach", "new-york"]
            .iter()
            .map(|x| gc(bandon, gw(x)) * 1.78 + gc(gw(x), bilbao) * 1.26)
            .fold(f64::INFINITY, f64::min);
        let p = i.wan_path(at(bandon, NorthAmerica), at(bilbao, Europe));
        assert!(close(p.fiber_km, want) && p.fiber_km > gc(bandon, bilbao) * 1.4, "{p:?}");
        assert_eq!(p.via.len(), 2, "{p:?}");
        // No landing in Africa, or an unknown continent: the great circle at the default
        // factor and fixed cost.
        let (rio, lagos) = ([-22.9, -43.2], [6.45, 3.39]);
        for p in [
            i.wan_path(at(rio, SouthAmerica), at(lagos, Africa)),
            i.wan_path(at(rio, SouthAmerica), Place { lat: lagos[0], lon: lagos[1], continent: None }),
        ] {
            assert!(close(p.fiber_km, gc(rio, lagos) * 1.26) && p.via.is_empty(), "{p:?}");
            assert_eq!(p.fixed, Nanos(4_600_000));
        }
        // Continents with a route but no cable between their landings: the great circle at
        // the pair's whole-path route factor (2.03 from Europe to Asia-Pacific), no landings.
        let only_marea = Catalog::with_overlay(
            "[[inference.wan-cable]]\nname = \"MAREA\"\nbetween = [\"virginia-beach\", \"bilbao\"]\nsource = \"s\"\n",
            "mine.toml",
        )
        .unwrap();
        let j = only_marea.inference.unwrap();
        assert_eq!(j.wan_cables.len(), 1, "an overlay's cables replace the built-in list");
        let (paris, tokyo) = ([48.86, 2.35], [35.68, 139.77]);
        let p = j.wan_path(at(paris, Europe), at(tokyo, crate::infer_config::Continent::AsiaPacific));
        assert!(close(p.fiber_km, gc(paris, tokyo) * 2.03) && p.via.is_empty(), "{p:?}");
        assert_eq!(p.fixed, Nanos(2_250_000));
        // A cable factor within one continent is refused.
        let e = refused("[[inference.wan-route]]\nbetween = [\"africa\", \"africa\"]\nroute-factor = 1.3\ncable-factor = 1.2\nwan-fixed = \"1ms\"\nsource = \"s\"\n");
        assert!(e.contains("wan-route[1]") && e.contains("not within one"), "{e}");
        // Bad entries are refused, naming the entry.
        let cable = |a: &str, b: &str| {
            format!("[[inference.wan-cable]]\nname = \"x\"\nbetween = [\"{a}\", \"{b}\"]\nsource = \"s\"\n")
        };
        let e = refused(&cable("nowhere", "bilbao"));
        assert!(e.contains("wan-cable[1]") && e.contains("two [[inference.wan-gateway]]"), "{e}");
        let e = refused(&cable("marseille", "bilbao"));
        assert!(e.contains("one continent"), "{e}");
        let e = refused(
            "[[inference.wan-gateway]]\nname = \"g\"\ncontinent = \"europe\"\nlocation = [95.0, 0.0]\nsource = \"s\"\n",
        );
        assert!(e.contains("wan-gateway[1]") && e.contains("latitude"), "{e}");
        // An `assumption` stands for a source, as on every catalog entry (it was refused as
        // an unknown field); neither is refused.
        let j = Catalog::with_overlay(
            "[[inference.wan-cable]]\nname = \"MAREA\"\nbetween = [\"virginia-beach\", \"bilbao\"]\nassumption = \"a\"\n",
            "mine.toml",
        );
        assert!(j.is_ok(), "{:?}", j.err());
        let e = refused("[[inference.wan-cable]]\nname = \"MAREA\"\nbetween = [\"virginia-beach\", \"bilbao\"]\n");
        assert!(e.contains("needs a `source` or an `assumption`"), "{e}");
        let e = refused("[[inference.wan-gateway]]\nname = \"g\"\ncontinent = \"europe\"\nlocation = [45.0, 0.0]\n");
        assert!(e.contains("needs a `source` or an `assumption`"), "{e}");
    }

    /// The error a `mine.toml` overlay is refused with.
    fn refused(text: &str) -> String {
        Catalog::with_overlay(text, "mine.toml").unwrap_err().to_string()
    }

    #[test]
    fn the_ll_ceiling_is_checked() {
        assert_eq!(Catalog::builtin().simulation.ll_max.len(), 2);
        for bad in ["[\"39GB/s\"]", "[\"39GB/s\", \"0GB/s\"]", "[\"1GB/s\", \"2GB/s\", \"3GB/s\"]"] {
            let e = refused(&format!("[simulation]\nll-max = {bad}\n"));
            assert!(
                e.contains("ll-max must give two positive rates (2 hosts, 3 or more), or be left out"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_nics_nvls_chunks_are_checked() {
        let c = Catalog::builtin();
        let p5 = c.nic_named("aws-efa-p5").unwrap();
        assert_eq!(
            (p5.nccl_nvls_chunk, p5.nccl_nvls_tree_max_chunk),
            (Some(meshway_units::Bytes(512 << 10)), Some(meshway_units::Bytes(512 << 10)))
        );
        assert_eq!(c.nic_named("connectx7-400g").unwrap().nccl_nvls_chunk, None);
        for key in ["nccl-nvls-chunk", "nccl-nvls-tree-max-chunk"] {
            for bad in ["\"0B\"", "\"4095B\"", "\"65MiB\""] {
                let e = refused(&format!("[[nic]]\nname = \"aws-efa-p4d\"\n{key} = {bad}\n"));
                assert!(e.contains(&format!("{key} must be from 4KiB to 64MiB")), "{key} {bad}: {e}");
            }
            let ok = format!("[[nic]]\nname = \"aws-efa-p4d\"\n{key} = \"4KiB\"\n");
            assert!(Catalog::with_overlay(&ok, "mine.toml").is_ok(), "{key}");
        }
    }

    /// EFA on p5 runs at UCCL's measured bidirectional rate, 43.7 GiB/s (46.9 GB/s) of a GPU's
    /// 50 GB/s (93.85%); p4d's EFA has no measured figure and keeps its line rate.
    #[test]
    fn efa_on_p5_runs_at_its_measured_rate() {
        let c = Catalog::builtin();
        let p5 = c.nic_named("aws-efa-p5").unwrap();
        assert_eq!(p5.achievable, Some(meshway_units::BitsPerSec(375_400_000_000)));
        assert!((p5.efficiency() - 0.9385).abs() < 1e-12, "{}", p5.efficiency());
        assert_eq!(c.nic_named("aws-efa-p4d").unwrap().efficiency(), 1.0);
    }

    #[test]
    fn tuner_plugins_are_checked() {
        let c = Catalog::builtin();
        let aws = c.tuner_plugin_named("aws-ofi-p5").unwrap();
        assert_eq!((aws.min_nodes, aws.region.len()), (3, 18));
        assert_eq!(c.nic_named("aws-efa-p5").unwrap().nccl_tuner_plugin.as_deref(), Some("aws-ofi-p5"));
        assert_eq!(c.nic_named("aws-efa-p4d").unwrap().nccl_tuner_plugin, None);
        let e = refused("[[nic]]\nname = \"aws-efa-p4d\"\nnccl-tuner-plugin = \"nope\"\n");
        assert!(
            e.contains("nccl-tuner-plugin: no [[tuner-plugin]] named \"nope\" (the catalog has aws-ofi-p5)"),
            "{e}"
        );
        assert_eq!(c.nic_named("aws-efa-p5").unwrap().tree_network_share, Some(0.5));
        for share in ["0", "1.5", "-0.5", "nan"] {
            let e = refused(&format!("[[nic]]\nname = \"aws-efa-p4d\"\ntree-network-share = {share}\n"));
            assert!(e.contains("tree-network-share must be above 0 and at most 1"), "{share}: {e}");
        }
        let plugin = |region: &str| {
            format!(
                "[[tuner-plugin]]\nname = \"t\"\nmin-nodes = 2\nassumption = \"a test\"\n\
                 [[tuner-plugin.region]]\nop = \"all-reduce\"\nranks-per-host = 8\nalgorithm = \"ring\"\n\
                 protocol = \"simple\"\nvertices = [[0, 1], [10, 1], [10, 10]]\n{region}"
            )
        };
        assert!(Catalog::with_overlay(&plugin(""), "mine.toml").is_ok());
        for (bad, want) in [
            ("op = \"all-to-all\"", "region 2: op must be all-reduce, all-gather, reduce-scatter or broadcast"),
            ("algorithm = \"direct\"", "region 2: algorithm must be ring, tree, nvls, nvls-tree or collnet"),
            ("protocol = \"fast\"", "region 2: protocol: no [[protocol]] named \"fast\""),
            ("vertices = [[0, 1]]", "region 2: vertices must give at least 2 corners"),
            ("vertices = [[0, 1], [-1, 2]]", "region 2: vertices: each corner is [bytes, ranks], both from 0 to 1e15"),
            ("ranks-per-host = 0", "region 2: ranks-per-host must be at least 1"),
        ] {
            let mut r = vec![
                "op = \"all-reduce\"",
                "ranks-per-host = 8",
                "algorithm = \"tree\"",
                "protocol = \"ll\"",
                "vertices = [[0, 1], [5, 5]]",
            ];
            let key = bad.split(' ').next().unwrap();
            r.retain(|k| !k.starts_with(key));
            r.push(bad);
            let e = refused(&plugin(&format!("[[tuner-plugin.region]]\n{}\n", r.join("\n"))));
            assert!(e.contains("tuner-plugin \"t\"") && e.contains(want), "{bad}: {e}");
        }
        let e = refused("[[tuner-plugin]]\nname = \"t\"\nmin-nodes = 0\nassumption = \"x\"\n");
        assert!(e.contains("min-nodes must be at least 1"), "{e}");
        let e = refused("[[tuner-plugin]]\nname = \"t\"\nmin-nodes = 3\nassumption = \"x\"\n");
        assert!(e.contains("needs at least one [[tuner-plugin.region]]"), "{e}");
        let e = refused(
            "[[tuner-plugin]]\nname = \"t\"\nmin-nodes = 3\n[[tuner-plugin.region]]\nop = \"all-reduce\"\n\
                         ranks-per-host = 8\nalgorithm = \"ring\"\nprotocol = \"ll\"\nvertices = [[0, 1], [5, 5]]\n",
        );
        assert!(e.contains("needs a `source` or an `assumption`"), "{e}");
    }

    #[test]
    fn pipeline_keys_are_checked() {
        let c = Catalog::builtin();
        let h100 = c.gpu_model("h100-sxm").unwrap();
        assert_eq!(h100.nvls_channels, Some(16));
        assert_eq!(
            h100.nvls_tree_channel_max.iter().map(|r| r.0).collect::<Vec<_>>(),
            [461_600_000_000, 364_000_000_000]
        );
        assert_eq!(c.protocol("ll128").unwrap().tree_chunk.map(|b| b.0), Some(576_000));
        assert_eq!(c.protocol("simple").unwrap().ring_in_flight, Some(2));
        assert_eq!(c.protocol("ll").unwrap().ring_in_flight, Some(1));
        for bad in ["0", "65"] {
            let e = refused(&format!("[[protocol]]\nname = \"simple\"\nring-in-flight = {bad}\n"));
            assert!(
                e.contains("protocol \"simple\"") && e.contains("ring-in-flight must be a whole number from 1 to 64"),
                "{e}"
            );
        }
        let e = refused("[[protocol]]\nname = \"simple\"\ntree-chunk = \"0B\"\n");
        assert!(
            e.contains("mine.toml")
                && e.contains("\"simple\"")
                && e.contains("tree-chunk must be positive and at most 1GiB"),
            "{e}"
        );
        assert_eq!(c.protocol("ll").unwrap().buffer.map(|b| b.0), Some(524_288));
        assert_eq!(c.protocol("ll128").unwrap().buffer.map(|b| b.0), Some(4_915_200));
        let e = refused("[[protocol]]\nname = \"ll\"\nbuffer = \"2GiB\"\n");
        assert!(e.contains("\"ll\"") && e.contains("buffer must be positive and at most 1GiB"), "{e}");
        let e = refused("[[gpu]]\nname = \"h100-sxm\"\nnvls-tree-channel-max = [\"400Gbps\"]\n");
        assert!(e.contains("\"h100-sxm\"") && e.contains("two positive rates"), "{e}");
    }

    /// Measured matmul rates: every built-in GPU with a serving memory has them, each at most
    /// its datasheet peak; a rate above the peak or an FP8 rate without an FP8 peak is refused.
    #[test]
    fn matmul_rates_are_checked() {
        let c = Catalog::builtin();
        for g in c.gpu.iter().filter(|g| g.memory.is_some()) {
            let bf = g.matmul_achievable.unwrap_or_else(|| panic!("{} has no matmul-achievable", g.name));
            assert!(bf > 0.6 * g.peak_flops && bf <= g.peak_flops, "{}: {bf:e}", g.name);
            if let Some(peak) = g.fp8_flops {
                let f8 = g.fp8_matmul_achievable.unwrap_or_else(|| panic!("{} has no fp8-matmul-achievable", g.name));
                assert!(f8 > 0.6 * peak && f8 <= peak, "{}: {f8:e}", g.name);
            }
            if let Some(peak) = g.fp4_flops {
                let f4 = g.fp4_matmul_achievable.unwrap_or_else(|| panic!("{} has no fp4-matmul-achievable", g.name));
                assert!(f4 > 0.5 * peak && f4 <= peak, "{}: {f4:e}", g.name);
            }
        }
        assert_eq!(c.gpu_model("a100-sxm").unwrap().matmul_achievable, Some(271.2e12));
        let gpu = |extra: &str| format!("[[gpu]]\nname = \"x\"\npeak-flops = 100e12\nsource = \"test\"\n{extra}");
        let e = refused(&gpu("matmul-achievable = 120e12"));
        assert!(
            e.contains("mine.toml")
                && e.contains("\"x\"")
                && e.contains("matmul-achievable must be positive and at most"),
            "{e}"
        );
        let e = refused(&gpu("fp8-matmul-achievable = 90e12"));
        assert!(e.contains("fp8-matmul-achievable needs fp8-flops"), "{e}");
        assert!(Catalog::with_overlay(&gpu("matmul-achievable = 80e12"), "mine.toml").is_ok());
        for bad in ["0", "nan", "-1e12"] {
            let e = refused(&gpu(&format!("matmul-achievable = {bad}")));
            assert!(e.contains("matmul-achievable must be positive and at most peak-flops"), "{bad}: {e}");
        }
        let e = refused(&gpu("fp8-flops = 200e12\nfp8-matmul-achievable = 250e12"));
        assert!(e.contains("fp8-matmul-achievable must be positive and at most fp8-flops"), "{e}");
        // FP4 likewise (B200's measured rate).
        let b200 = c.gpu_model("b200").unwrap();
        assert_eq!((b200.fp4_flops, b200.fp4_matmul_achievable), (Some(9000e12), Some(5500e12)));
        let e = refused(&gpu("fp4-matmul-achievable = 90e12"));
        assert!(e.contains("fp4-matmul-achievable needs fp4-flops (its peak)"), "{e}");
        let e = refused(&gpu("fp4-flops = 400e12\nfp4-matmul-achievable = 450e12"));
        assert!(e.contains("fp4-matmul-achievable must be positive and at most fp4-flops"), "{e}");
        let e = refused(&gpu("fp4-flops = -1"));
        assert!(e.contains("memory, hbm-bandwidth, fp8-flops and fp4-flops must be positive"), "{e}");
        let e = refused("[[gpu]]\nname = \"b200\"\nfp4-flops = 10000e12\n");
        assert!(e.contains("sets fp4-flops but not fp4-matmul-achievable"), "{e}");
        // A built-in GPU's peak patched without its measured rate would be ignored: refused.
        let e = refused("[[gpu]]\nname = \"h100-sxm\"\npeak-flops = 1000e12\n");
        assert!(
            e.contains("mine.toml")
                && e.contains("\"h100-sxm\"")
                && e.contains("sets peak-flops but not matmul-achievable"),
            "{e}"
        );
        let ok = "[[gpu]]\nname = \"h100-sxm\"\npeak-flops = 1000e12\nmatmul-achievable = 800e12\n";
        assert_eq!(
            Catalog::with_overlay(ok, "mine.toml").unwrap().gpu_model("h100-sxm").unwrap().matmul_achievable,
            Some(800e12)
        );
    }
    /// The serving roofline's knee: 2 built in; an overlay may set it from 1 to inf (the max),
    /// and one that patches other `[serving]` keys inherits it.
    #[test]
    fn roofline_knee_is_checked() {
        assert_eq!(Catalog::builtin().serving.as_ref().unwrap().roofline_knee, Some(2.0));
        for bad in ["0.5", "0", "-inf", "nan"] {
            let e = refused(&format!("[serving]\nroofline-knee = {bad}\n"));
            assert!(e.contains("mine.toml") && e.contains("roofline-knee must be at least 1"), "{bad}: {e}");
        }
        for (text, want) in
            [("roofline-knee = 4", 4.0), ("roofline-knee = inf", f64::INFINITY), ("step-overhead = \"2ms\"", 2.0)]
        {
            let c = Catalog::with_overlay(&format!("[serving]\n{text}\n"), "mine.toml").unwrap();
            assert_eq!(c.serving.unwrap().roofline_knee, Some(want), "{text}");
        }
    }
}
