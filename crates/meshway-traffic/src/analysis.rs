//! From flows to answers: east-west against north-south, elephants and mice, the flow-size
//! distribution, top talkers, traffic matrices between racks and sites, TCP and RoCEv2
//! trouble, and the links the biggest flows cross on a planned fabric.
//!
//! Addresses map onto a fabric by its address plan: GPU rank `r` (meshway's rank order) has
//! `base + r`, where `base` defaults to the testbed's 10.64.0.1, so a capture of `meshway
//! testbed` traffic maps onto its scenario as it is.

use crate::capture::CaptureInfo;
use crate::flows::{Flow, FlowKey, Flows, Other};
pub use crate::places::{Cidr, Classifier, Place, Places, Scope};
use meshway_fabric::routing::{is_network, pick_path, switch_latencies, ShortestPaths};
use meshway_fabric::{Catalog, Fabric, LinkClass, NodeId};
use meshway_sim::topo::{FabricTopo, Topology};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// The highest IPv4 address.
const IPV4_MAX: Ipv4Addr = Ipv4Addr::BROADCAST;

/// An address plan whose GPUs would run past the top of the IPv4 space.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "base address {base} + {gpus} GPUs passes {IPV4_MAX} (GPU rank r has the base + r): the highest base for {gpus} GPUs is {highest}"
)]
pub struct BaseAddressError {
    pub base: Ipv4Addr,
    pub gpus: u32,
    /// The highest base address that fits them.
    pub highest: Ipv4Addr,
}

/// GPUs of a fabric by address.
pub struct AddressPlan<'f> {
    pub fabric: &'f Fabric,
    topo: FabricTopo<'f>,
    places: Arc<Places>,
    /// Per rank: the GPU's name.
    gpus: Vec<String>,
    sw_lat: Vec<meshway_units::Nanos>,
    per_km: meshway_units::Nanos,
}

impl<'f> AddressPlan<'f> {
    /// GPU rank r at `base` + r; refused when the last rank's address would pass
    /// 255.255.255.255.
    pub fn new(fabric: &'f Fabric, catalog: &Catalog, base: Ipv4Addr) -> Result<AddressPlan<'f>, BaseAddressError> {
        let topo = FabricTopo::new(fabric, catalog, 1);
        let n = topo.ranks() as u32;
        if n > 0 && u32::from(base).checked_add(n - 1).is_none() {
            return Err(BaseAddressError { base, gpus: n, highest: Ipv4Addr::from(u32::MAX - (n - 1)) });
        }
        let mut by_ip = HashMap::new();
        let mut gpus = Vec::new();
        // Per rank: host, leaf and site names.
        let mut names = Vec::new();
        for r in 0..n {
            by_ip.insert(IpAddr::V4(Ipv4Addr::from(u32::from(base) + r)), r);
            let g = topo.node_of(r);
            let mut host = fabric.node(g).name.clone();
            let mut leaf = String::from("-");
            for &(v, l) in fabric.neighbors(g) {
                match fabric.link(l).class {
                    LinkClass::Nvlink => host = fabric.node(v).name.clone(),
                    _ if leaf == "-" => leaf = fabric.node(v).name.clone(),
                    _ => {}
                }
            }
            let site = fabric.sites.get(fabric.node(g).site as usize).cloned().unwrap_or_default();
            gpus.push(fabric.node(g).name.clone());
            names.push((host, leaf, site));
        }
        let sorted = |pick: fn(&(String, String, String)) -> &String| {
            let mut v: Vec<String> = names.iter().map(|n| pick(n).clone()).collect();
            v.sort();
            v.dedup();
            v
        };
        let (leaves, sites) = (sorted(|n| &n.1), sorted(|n| &n.2));
        let mut hosts: HashMap<&str, u32> = HashMap::new();
        let mut at = Vec::with_capacity(names.len());
        for (host, leaf, site) in &names {
            let next = hosts.len() as u32;
            let find = |v: &[String], s: &str| v.binary_search_by(|x| x.as_str().cmp(s)).unwrap_or(0) as u32;
            at.push(Place {
                host: *hosts.entry(host.as_str()).or_insert(next),
                leaf: find(&leaves, leaf),
                site: find(&sites, site),
            });
        }
        Ok(AddressPlan {
            fabric,
            topo,
            places: Arc::new(Places { by_ip, at, leaves, sites }),
            gpus,
            sw_lat: switch_latencies(fabric, catalog),
            per_km: catalog.constants.fiber_delay_per_km,
        })
    }

    /// How many GPUs the plan addresses.
    pub fn gpus(&self) -> u32 {
        self.gpus.len() as u32
    }

    /// Its GPUs by address and where each sits, for a [`Classifier`].
    pub fn places(&self) -> Arc<Places> {
        self.places.clone()
    }

    pub fn rank(&self, ip: IpAddr) -> Option<u32> {
        self.places.by_ip.get(&ip).copied()
    }

    pub fn gpu_name(&self, r: u32) -> &str {
        &self.gpus[r as usize]
    }

    /// Shortest paths toward rank `b`.
    fn tree(&self, b: u32) -> ShortestPaths {
        let d: NodeId = self.topo.node_of(b);
        ShortestPaths::from(self.fabric, d, &self.sw_lat, self.per_km)
    }

    /// The network links of one path from rank `a` along `tree` (toward its root), the hop
    /// choices made by a hash of the 5-tuple as ECMP would.
    fn path(&self, a: u32, tree: &ShortestPaths, key: &FlowKey) -> Vec<meshway_fabric::LinkId> {
        let s: NodeId = self.topo.node_of(a);
        let mut h = fnv(key);
        let p = pick_path(self.fabric, tree, s, |n| {
            h = h.wrapping_mul(0x100_0000_01b3) ^ (h >> 29);
            (h % n as u64) as usize
        });
        p.unwrap_or_default().into_iter().filter(|&l| is_network(self.fabric.link(l).class)).collect()
    }
}

fn fnv(k: &FlowKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let s = format!("{}{}{}{}{}", k.src, k.dst, k.proto, k.sport, k.dport);
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Prefixes that are "inside" when no fabric is given (or for addresses outside its plan).
    pub internal: Vec<Cidr>,
    /// Flows at least this large are elephants.
    pub elephant_bytes: u64,
    /// Rows in the top lists.
    pub top: usize,
    /// How many of the largest flows are mapped onto the fabric.
    pub critical_flows: usize,
}

impl Default for Options {
    fn default() -> Options {
        // Assumption: 10 MB, the "large flow" bin of pFabric (SIGCOMM'13) and PIAS (NSDI'15),
        // whose bins are (0,100KB] short, (100KB,10MB] medium, over 10MB large.
        Options { internal: Vec::new(), elephant_bytes: 10_000_000, top: 10, critical_flows: 10_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScopeRow {
    pub scope: Scope,
    pub flows: u64,
    pub bytes: u64,
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SizeBin {
    pub label: &'static str,
    pub flows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowRow {
    #[serde(flatten)]
    pub flow: Flow,
    pub protocol: &'static str,
    pub scope: Scope,
    pub src_gpu: Option<String>,
    pub dst_gpu: Option<String>,
    /// Mean rate over the flow's life (0 for a single packet).
    pub rate_bps: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Talker {
    pub address: IpAddr,
    pub gpu: Option<String>,
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub flows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matrix {
    /// "leaf" or "site".
    pub level: &'static str,
    pub names: Vec<String>,
    /// bytes[from][to].
    pub bytes: Vec<Vec<u64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkLoad {
    pub from: String,
    pub to: String,
    pub class: LinkClass,
    pub rate_bps: u64,
    pub bytes: u64,
    /// Bytes over the capture's span at the link's rate; `None` when the capture spans no
    /// time (one packet, or all at one instant): there is no rate to speak of.
    pub utilization: Option<f64>,
    /// Ranks (0-based, largest first) of the flows mapped onto this link (at most 10).
    pub flows: Vec<usize>,
    pub flow_count: u64,
    pub tcp_retransmissions: u64,
    /// RoCE NAKs (and RNR NAKs) and CNPs sent back to the senders of the flows crossing the
    /// link, each host pair's once (the capture does not tie them to one queue pair).
    pub roce_naks: u64,
    pub roce_cnps: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Trouble {
    pub tcp_flows: u64,
    pub retransmissions: u64,
    pub dup_acks: u64,
    pub zero_windows: u64,
    pub rocev2_flows: u64,
    pub naks: u64,
    pub rnr_naks: u64,
    pub cnps: u64,
    pub psn_resent: u64,
    pub psn_gaps: u64,
    pub ecn_ce: u64,
}

/// Packets of flows the flow table had no room for.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BeyondTable {
    /// Distinct flows: exact up to 65,536, estimated past that (`flows_estimated`).
    pub flows: u64,
    pub flows_estimated: bool,
    pub packets: u64,
    pub bytes: u64,
    pub payload_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrafficReport {
    pub capture: CaptureInfo,
    pub packets: u64,
    pub bytes: u64,
    pub duration_ns: u64,
    /// Flows in the flow table (at most `max_flows`).
    pub flows: u64,
    /// The flow table's limit.
    pub max_flows: u64,
    /// Packets of flows past the limit: counted in the totals, the protocols' and scopes'
    /// bytes and shares, the GPUs' talker bytes, the matrices and the RoCEv2 ACK/NAK/CNP/CE
    /// counts; not in flow counts, sizes, top flows, critical links or the TCP and PSN
    /// analysis, which need a flow entry.
    pub beyond_table: BeyondTable,
    pub other: Other,
    /// (protocol, flows, bytes), most bytes first.
    pub protocols: Vec<(&'static str, u64, u64)>,
    pub scopes: Vec<ScopeRow>,
    pub east_west_share: f64,
    pub size_bins: Vec<SizeBin>,
    /// Flow size percentiles in bytes: p50, p90, p99, max.
    pub size_percentiles: [u64; 4],
    pub elephant_bytes: u64,
    pub elephants: u64,
    pub elephant_share: f64,
    /// The `top` largest flows.
    pub top_flows: Vec<FlowRow>,
    /// Rows in the top lists.
    pub top: usize,
    pub top_talkers: Vec<Talker>,
    pub matrices: Vec<Matrix>,
    pub critical_links: Vec<LinkLoad>,
    pub trouble: Trouble,
    /// Flows with TCP retransmissions or RoCE NAKs/CNPs, worst first.
    pub troubled_flows: Vec<FlowRow>,
    /// sFlow and IPFIX found in the capture (set by the caller).
    pub telemetry: Option<crate::export::ExportStats>,
    /// The report is of the flows that sFlow and IPFIX describe, not of the captured packets.
    pub from_exported: bool,
}

const BINS: [(&str, u64); 8] = [
    ("< 1 KB", 1_000),
    ("1-10 KB", 10_000),
    ("10-100 KB", 100_000),
    ("100 KB-1 MB", 1_000_000),
    ("1-10 MB", 10_000_000),
    ("10-100 MB", 100_000_000),
    ("100 MB-1 GB", 1_000_000_000),
    (">= 1 GB", u64::MAX),
];

/// Analyses a flow table.
pub fn analyse(info: CaptureInfo, flows: &Flows, plan: Option<&AddressPlan<'_>>, o: &Options) -> TrafficReport {
    let sorted = flows.sorted();
    let classifier = Classifier::new(&o.internal, plan.map(AddressPlan::places));
    let scope_of = |k: &FlowKey| classifier.scope(k.src, k.dst);
    let beyond = &flows.beyond;
    let gpu = |ip: IpAddr| plan.and_then(|p| p.rank(ip).map(|r| p.gpu_name(r).to_string()));
    let row = |f: &Flow| FlowRow {
        flow: f.clone(),
        protocol: f.key.protocol_name(),
        scope: scope_of(&f.key),
        src_gpu: gpu(f.key.src),
        dst_gpu: gpu(f.key.dst),
        rate_bps: if f.duration_ns() > 0 { f.bytes as f64 * 8e9 / f.duration_ns() as f64 } else { 0.0 },
    };
    let total: u64 = sorted.iter().map(|f| f.bytes).fold(beyond.bytes, u64::saturating_add);
    let share = |b: u64| if total > 0 { b as f64 / total as f64 } else { 0.0 };

    let mut protos: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    let mut scopes: BTreeMap<Scope, (u64, u64)> = BTreeMap::new();
    let mut bins: Vec<SizeBin> = BINS.iter().map(|(l, _)| SizeBin { label: l, flows: 0, bytes: 0 }).collect();
    let mut talkers: BTreeMap<IpAddr, (u64, u64, u64)> = BTreeMap::new();
    let mut trouble = Trouble::default();
    for f in &sorted {
        let p = protos.entry(f.key.protocol_name()).or_default();
        p.0 += 1;
        p.1 = p.1.saturating_add(f.bytes);
        let s = scopes.entry(scope_of(&f.key)).or_default();
        s.0 += 1;
        s.1 = s.1.saturating_add(f.bytes);
        let b = BINS.iter().position(|(_, hi)| f.bytes < *hi).unwrap_or(BINS.len() - 1);
        bins[b].flows += 1;
        bins[b].bytes = bins[b].bytes.saturating_add(f.bytes);
        let t = talkers.entry(f.key.src).or_default();
        t.0 = t.0.saturating_add(f.bytes);
        t.2 += 1;
        {
            let e = &mut talkers.entry(f.key.dst).or_default().1;
            *e = e.saturating_add(f.bytes);
        }
        if let Some(t) = &f.tcp {
            trouble.tcp_flows += 1;
            trouble.retransmissions += t.retransmissions;
            trouble.dup_acks += t.dup_acks;
            trouble.zero_windows += t.zero_windows;
        }
        if let Some(r) = &f.roce {
            trouble.rocev2_flows += 1;
            trouble.naks += r.naks;
            trouble.rnr_naks += r.rnr_naks;
            trouble.cnps += r.cnps;
            trouble.psn_resent += r.psn_resent;
            trouble.psn_gaps += r.psn_gaps;
            trouble.ecn_ce += r.ecn_ce;
        }
    }
    // Flows beyond the table: their bytes by protocol and scope, per GPU, and their RoCEv2
    // signals (flow counts are the table's).
    for (&(proto, scope), &bytes) in &beyond.by_class {
        let p = &mut protos.entry(proto).or_default().1;
        *p = p.saturating_add(bytes);
        let s = &mut scopes.entry(scope).or_default().1;
        *s = s.saturating_add(bytes);
    }
    for (&ip, &(sent, received)) in &beyond.gpus {
        let t = talkers.entry(ip).or_default();
        t.0 = t.0.saturating_add(sent);
        t.1 = t.1.saturating_add(received);
    }
    let r = &beyond.roce;
    trouble.naks += r.naks;
    trouble.rnr_naks += r.rnr_naks;
    trouble.cnps += r.cnps;
    trouble.ecn_ce += r.ecn_ce;
    let mut protocols: Vec<(&'static str, u64, u64)> = protos.into_iter().map(|(k, (n, b))| (k, n, b)).collect();
    protocols.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
    let scopes: Vec<ScopeRow> = scopes
        .into_iter()
        .map(|(scope, (flows, bytes))| ScopeRow { scope, flows, bytes, share: share(bytes) })
        .collect();
    // Folded from +0.0: an empty f64 sum is -0.0, printed "-0.0%".
    let east_west_share = scopes.iter().filter(|r| r.scope.is_east_west()).map(|r| r.share).fold(0.0, |a, b| a + b);

    let mut sizes: Vec<u64> = sorted.iter().map(|f| f.bytes).collect();
    sizes.sort_unstable();
    let pct = |q: f64| -> u64 {
        if sizes.is_empty() {
            0
        } else {
            sizes[((q * sizes.len() as f64).ceil() as usize).clamp(1, sizes.len()) - 1]
        }
    };
    let size_percentiles = [pct(0.5), pct(0.9), pct(0.99), sizes.last().copied().unwrap_or(0)];
    let elephants: Vec<&&Flow> = sorted.iter().filter(|f| f.bytes >= o.elephant_bytes).collect();
    let elephant_share = share(elephants.iter().map(|f| f.bytes).fold(0u64, u64::saturating_add));

    let top_flows: Vec<FlowRow> = sorted.iter().take(o.top).map(|f| row(f)).collect();
    let mut top_talkers: Vec<Talker> = talkers
        .into_iter()
        .map(|(address, (sent, received, n))| Talker {
            address,
            gpu: gpu(address),
            sent_bytes: sent,
            received_bytes: received,
            flows: n,
        })
        .collect();
    top_talkers.sort_by(|a, b| b.sent_bytes.cmp(&a.sent_bytes).then(a.address.cmp(&b.address)));
    top_talkers.truncate(o.top);

    let duration_ns = flows.first_ns.map_or(0, |f| flows.last_ns - f);
    let mut matrices = Vec::new();
    let mut critical_links = Vec::new();
    if let Some(p) = plan {
        let places = &p.places;
        for (level, names, beyond_cells) in
            [("leaf", &places.leaves, &beyond.leaves), ("site", &places.sites, &beyond.sites)]
        {
            if level == "site" && names.len() < 2 {
                continue;
            }
            let cell = |x: Place| if level == "leaf" { x.leaf as usize } else { x.site as usize };
            let mut bytes = vec![vec![0u64; names.len()]; names.len()];
            for f in &sorted {
                if let (Some(a), Some(b)) = (p.rank(f.key.src), p.rank(f.key.dst)) {
                    let (i, j) = (cell(places.at[a as usize]), cell(places.at[b as usize]));
                    bytes[i][j] = bytes[i][j].saturating_add(f.bytes);
                }
            }
            // Flows beyond the table, placed by the flow table's classifier (made from this
            // plan: a cell outside it is left out).
            for (&(i, j), &v) in beyond_cells {
                if let Some(c) = bytes.get_mut(i as usize).and_then(|row| row.get_mut(j as usize)) {
                    *c = c.saturating_add(v);
                }
            }
            matrices.push(Matrix { level, names: names.clone(), bytes });
        }
        // Critical paths: the largest flows between GPUs, routed as ECMP would hash them.
        // RoCE NAKs and CNPs travel back to the sender: those of the reverse address pair.
        // The capture does not say which of a host pair's queue pairs they answer (a NAK
        // names the requester's QP, which its data packets do not carry), so a link counts
        // each host pair's signals once, however many of its flows cross it.
        let mut back: HashMap<(IpAddr, IpAddr), (u64, u64)> = HashMap::new();
        for g in flows.table.values() {
            if let Some(x) = &g.roce {
                let e = back.entry((g.key.dst, g.key.src)).or_default();
                e.0 += x.naks + x.rnr_naks;
                e.1 += x.cnps;
            }
        }
        let mut load: HashMap<(u32, bool), LinkLoad> = HashMap::new();
        let mut signalled: std::collections::HashSet<(u32, bool, IpAddr, IpAddr)> = std::collections::HashSet::new();
        // The largest flows between GPUs: flows to or from elsewhere cross no fabric path
        // and do not use up the count. They are routed one destination at a time, so one
        // shortest-path tree is held at once (a tree per destination of a 100,000-GPU plan
        // is about 3 MB: kept for all, 2,000 flows took 6 GB).
        let mut critical: Vec<(u32, usize, &&Flow, u32)> = sorted
            .iter()
            .enumerate()
            .filter_map(|(i, f)| Some((p.rank(f.key.dst)?, i, f, p.rank(f.key.src)?)))
            .take(o.critical_flows)
            .collect();
        critical.sort_by_key(|c| (c.0, c.1));
        let mut tree: Option<(u32, ShortestPaths)> = None;
        for (b, i, f, a) in critical {
            let k = &f.key;
            let (naks, cnps) = back.get(&(k.src, k.dst)).copied().unwrap_or((0, 0));
            if tree.as_ref().is_none_or(|t| t.0 != b) {
                // The last destination's tree goes before the next is built.
                drop(tree.take());
                tree = Some((b, p.tree(b)));
            }
            let Some((_, tree)) = tree.as_ref() else { continue };
            let mut u = p.topo.node_of(a);
            for l in p.path(a, tree, k) {
                let link = p.fabric.link(l);
                let forward = link.a == u;
                let v = link.other(u);
                let e = load.entry((l.0, forward)).or_insert_with(|| LinkLoad {
                    from: p.fabric.node(u).name.clone(),
                    to: p.fabric.node(v).name.clone(),
                    class: link.class,
                    rate_bps: link.rate.get(),
                    bytes: 0,
                    utilization: None,
                    flows: Vec::new(),
                    flow_count: 0,
                    tcp_retransmissions: 0,
                    roce_naks: 0,
                    roce_cnps: 0,
                });
                e.bytes = e.bytes.saturating_add(f.bytes);
                e.flow_count += 1;
                e.flows.push(i);
                e.tcp_retransmissions += f.tcp.as_ref().map_or(0, |t| t.retransmissions);
                if (naks, cnps) != (0, 0) && signalled.insert((l.0, forward, k.src, k.dst)) {
                    e.roce_naks += naks;
                    e.roce_cnps += cnps;
                }
                u = v;
            }
        }
        // The largest flows on each link (as listed before routing by destination).
        for l in load.values_mut() {
            l.flows.sort_unstable();
            l.flows.truncate(10);
        }
        let secs = duration_ns as f64 / 1e9;
        critical_links = load
            .into_values()
            .map(|mut l| {
                l.utilization = (duration_ns > 0).then(|| l.bytes as f64 * 8.0 / secs / l.rate_bps.max(1) as f64);
                l
            })
            .collect();
        critical_links
            .sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.from.cmp(&b.from)).then_with(|| a.to.cmp(&b.to)));
        critical_links.truncate(o.top);
    }
    let mut troubled: Vec<&&Flow> = sorted
        .iter()
        .filter(|f| {
            f.tcp.as_ref().is_some_and(|t| t.retransmissions + t.zero_windows > 0)
                || f.roce
                    .as_ref()
                    .is_some_and(|r| r.naks + r.rnr_naks + r.cnps + r.psn_resent + r.psn_gaps + r.ecn_ce > 0)
        })
        .collect();
    let badness = |f: &Flow| {
        f.tcp.as_ref().map_or(0, |t| t.retransmissions + t.zero_windows)
            + f.roce.as_ref().map_or(0, |r| r.naks + r.rnr_naks + r.cnps + r.psn_resent + r.psn_gaps + r.ecn_ce)
    };
    troubled.sort_by(|a, b| badness(b).cmp(&badness(a)).then(a.key.cmp(&b.key)));
    let troubled_flows = troubled.iter().take(o.top).map(|f| row(f)).collect();
    let (beyond_flows, flows_estimated) = beyond.flows();
    TrafficReport {
        capture: info,
        packets: flows.packets,
        bytes: flows.bytes,
        duration_ns,
        flows: sorted.len() as u64,
        max_flows: flows.max_flows() as u64,
        beyond_table: BeyondTable {
            flows: beyond_flows,
            flows_estimated,
            packets: beyond.packets,
            bytes: beyond.bytes,
            payload_bytes: beyond.payload_bytes,
        },
        other: flows.other.clone(),
        protocols,
        scopes,
        east_west_share,
        size_bins: bins,
        size_percentiles,
        elephant_bytes: o.elephant_bytes,
        elephants: elephants.len() as u64,
        elephant_share,
        top_flows,
        top: o.top,
        top_talkers,
        matrices,
        critical_links,
        trouble,
        troubled_flows,
        telemetry: None,
        from_exported: false,
    }
}

/// The flows between GPUs as a `flows` workload file (CSV: src,dst,bytes,start), start
/// relative to the capture's first packet. Returns the text and how many flows it holds.
pub fn flows_csv(flows: &Flows, plan: &AddressPlan<'_>) -> (String, usize) {
    let t0 = flows.first_ns.unwrap_or(0);
    let mut rows: Vec<&Flow> =
        flows.table.values().filter(|f| plan.rank(f.key.src).is_some() && plan.rank(f.key.dst).is_some()).collect();
    rows.sort_by(|a, b| a.first_ns.cmp(&b.first_ns).then(a.key.cmp(&b.key)));
    let mut s =
        String::from("# flows captured on the wire, mapped onto the fabric by its address plan\nsrc,dst,bytes,start\n");
    let mut n = 0;
    for f in rows {
        let (a, b) = (plan.rank(f.key.src).unwrap_or(0), plan.rank(f.key.dst).unwrap_or(0));
        if a == b || f.payload_bytes == 0 {
            continue;
        }
        s.push_str(&format!("{},{},{},{}ns\n", plan.gpu_name(a), plan.gpu_name(b), f.payload_bytes, f.first_ns - t0));
        n += 1;
    }
    (s, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let c: Cidr = "10.64.0.0/16".parse().unwrap();
        assert!(c.contains("10.64.200.1".parse().unwrap()));
        assert!(!c.contains("10.65.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.len, 32);
        assert!("10.0.0.0/33".parse::<Cidr>().unwrap_err().contains("over 32"));
        assert!("ten/8".parse::<Cidr>().is_err());
    }
}
