//! Planner analyses: counts, oversubscription, bisection, hops and paths, zero-load latency,
//! bill of materials, lossless headroom and single points of failure.

use crate::catalog::{Catalog, OpticClass};
use crate::maxflow::FlowNet;
use crate::model::{Fabric, LinkClass, LinkId, NodeId, NodeKind};
use crate::routing::{is_network, switch_latencies, ShortestPaths};
use crate::scenario::Transport;
use meshway_units::{BitsPerSec, Bytes, Nanos};
use serde::Serialize;
use std::collections::BTreeMap;

/// Above this many GPUs, hop and latency statistics come from a sample of sources.
pub const FULL_PAIRS_LIMIT: usize = 512;
/// Number of sampled source GPUs on large fabrics.
pub const SAMPLE_SOURCES: usize = 64;

#[derive(Debug, Clone, Serialize)]
pub struct FabricReport {
    pub name: String,
    pub family: String,
    pub sites: Vec<String>,
    pub gpus: u64,
    pub hosts: u64,
    pub planes: u16,
    pub nic_bps: u64,
    /// Leaf ports cabled to management appliances (`management-ports`).
    pub management_ports: u64,
    /// NVLink domains larger than a host (NVL72 class), when the scenario sets them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScaleUpReport>,
    pub switches: u64,
    /// The fabric's groups (pods, rail groups, leaves, sites).
    pub groups: GroupsReport,
    pub tiers: Vec<TierReport>,
    pub links: Vec<LinkReport>,
    pub bisection: Bisection,
    pub paths: PathStats,
    pub bom: Bom,
    pub lossless: Lossless,
    pub resilience: Resilience,
    pub warnings: Vec<String>,
}

/// The groups a structural bisection never splits: pods, rail groups, leaves or sites.
#[derive(Debug, Clone, Serialize)]
pub struct GroupsReport {
    /// "pod", "rail-group", "leaf", "site" or "" when the fabric has none.
    pub kind: String,
    pub count: u64,
    /// GPUs in the largest group.
    pub gpus_max: u64,
}

/// The scale-up tier: NVLink domains spanning several hosts.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleUpReport {
    pub domains: u64,
    pub gpus_per_domain: u32,
    /// Hosts (compute trays) per domain.
    pub hosts_per_domain: u32,
    pub switch_model: String,
    pub switch_trays: u64,
    pub trays_per_domain: u32,
    pub links_per_gpu: u32,
    /// GPU-to-tray NVLink links in all domains.
    pub nvlink_links: u64,
    /// NVLink bandwidth per GPU, each direction.
    pub nvlink_per_gpu_bps: u64,
    /// A domain's GPUs' NVLink bandwidth, each direction (twice this both ways).
    pub domain_bps: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TierReport {
    pub name: String,
    pub level: u8,
    pub switches: u64,
    pub models: BTreeMap<String, u64>,
    pub ports_used: u64,
    pub ports_free: u64,
    pub down_bps: u64,
    pub up_bps: u64,
    /// Down capacity over up capacity; None for the top tier.
    pub oversubscription: Option<f64>,
    /// The largest down over up of one switch of the tier (a tier's total hides a fuller
    /// switch: 48 + 16 GPUs on two 3:1 leaves total 2:1); None for the top tier.
    pub worst_switch_oversubscription: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    pub class: String,
    pub count: u64,
    pub rate_bps: u64,
    pub capacity_bps: u64,
    pub length_mm_min: u64,
    pub length_mm_max: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bisection {
    /// How the GPUs were split, e.g. "by pod: pod-0..pod-7 | pod-8..pod-15".
    pub split: String,
    pub side_a_gpus: u64,
    pub side_b_gpus: u64,
    /// From the structure: the smallest tier boundary around either side (built-in families).
    pub structural_bps: Option<u64>,
    /// Max-flow min-cut between the two sides.
    pub maxflow_bps: u64,
    /// Bisection over what the smaller side's NICs could send (1.0 = full bisection).
    pub full_ratio: f64,
    pub per_gpu_bps: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PathStats {
    /// True when statistics come from a sample of source GPUs.
    pub sampled: bool,
    pub sources: u64,
    pub pairs: u64,
    /// GPU pairs in the same host (reached over NVLink, excluded below).
    pub same_host_pairs: u64,
    pub unreachable_pairs: u64,
    /// Switch hops between GPUs of different hosts: (hops, pairs).
    pub hop_histogram: Vec<(u16, u64)>,
    pub diameter_hops: u16,
    pub mean_hops: f64,
    /// Equal-cost shortest paths between GPUs of different hosts: (paths, pairs).
    pub path_count_histogram: Vec<(u64, u64)>,
    pub latency_min_ns: u64,
    pub latency_mean_ns: u64,
    pub latency_max_ns: u64,
    /// Packet size (payload and headers) serialized once in the zero-load latency.
    pub mtu_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BomLine {
    pub item: String,
    pub kind: String,
    pub count: u64,
    pub power_w: f64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bom {
    pub lines: Vec<BomLine>,
    /// Cable assemblies: one per optical link (its fibre), one per copper link or per
    /// breakout cable serving several.
    pub cables: u64,
    /// Optical modules in switch cages (a twin-port module serves two links).
    pub switch_modules: u64,
    /// Optical modules at the hosts (NICs, or shared host cages with `host-cage-rate`).
    pub host_modules: u64,
    pub fiber_m: f64,
    pub dci_fiber_km: f64,
    pub total_power_w: f64,
    pub total_cost_usd: f64,
    pub cost_per_gpu_usd: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeadroomRow {
    /// A tier name, or "dci a-b".
    pub scope: String,
    pub switches: u64,
    pub link_length_mm: u64,
    pub rate_bps: u64,
    /// Headroom one lossless port needs.
    pub per_port_bytes: u64,
    /// Sum over the worst switch's lossless ports.
    pub switch_total_bytes: u64,
    pub buffer_bytes: u64,
    pub feasible: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lossless {
    pub required: bool,
    pub transport: String,
    pub formula: String,
    pub rows: Vec<HeadroomRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpofRow {
    /// A tier name (for switches) or a link class.
    pub element: String,
    pub count: u64,
    pub max_gpus_isolated: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DegradationRow {
    pub element: String,
    pub removed: String,
    pub bisection_bps: u64,
    pub loss_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resilience {
    /// Switches whose loss disconnects GPUs, by tier.
    pub switch_spofs: Vec<SpofRow>,
    /// Links whose loss disconnects GPUs, by class.
    pub link_spofs: Vec<SpofRow>,
    /// Bisection after losing one element of each kind.
    pub degradation: Vec<DegradationRow>,
    pub components: u64,
}

/// Runs every analysis.
pub fn analyze(f: &Fabric, cat: &Catalog, tr: &Transport) -> FabricReport {
    let mut warnings = Vec::new();
    let gpus = f.gpu_count() as u64;
    let hosts = {
        let mut h: Vec<(u16, u32)> = f
            .nodes
            .iter()
            .filter_map(|n| match n.kind {
                NodeKind::Gpu { host, .. } => Some((n.site, host)),
                _ => None,
            })
            .collect();
        h.sort_unstable();
        h.dedup();
        // With multi-host NVLink domains a GPU's `host` numbers its domain.
        h.len() as u64 * f.scale_up.map_or(1, |s| u64::from(s.gpus / s.gpus_per_host.max(1)))
    };
    let scale_up = scale_up_report(f, cat);
    let nic_bps = f.gpu_network_rate().0;
    let mut tiers = tier_reports(f, cat);
    let mut links = link_reports(f);
    if let Some(su) = &scale_up {
        physical_scale_up(su, cat, &mut tiers, &mut links);
    }
    let (split, flow) = choose_split(f);
    let bisection = bisection(f, &split, flow);
    // One packet as the wire carries it (payload and the transport's headers), as the
    // simulator's last packet.
    let header = cat.transport_profile(tr.config.kind.name()).map_or(0, |p| u64::from(p.header_bytes));
    let paths = path_stats(f, cat, Bytes(tr.mtu.0 + header));
    if paths.unreachable_pairs > 0 {
        warnings.push(format!("{} GPU pairs have no path between them", paths.unreachable_pairs));
    }
    over_capacity(f, cat, &mut warnings);
    idle_by_port_count(f, cat, &mut warnings);
    one_leaf(f, &mut warnings);
    idle_top_tiers(f, &paths, &mut warnings);
    fat_tree_radix(f, cat, &mut warnings);
    if let Some(t) = tiers.iter().find(|t| t.name == "leaf" || t.name == "access") {
        let placed = t.ports_used.saturating_sub(
            f.switches()
                .filter(|&s| f.node(s).tier().is_some_and(|x| f.tiers[x as usize].name == t.name))
                .map(|s| f.degree(s) as u64)
                .sum::<u64>(),
        );
        if u64::from(f.management_ports) > placed && f.backup_ports == 0 {
            warnings.push(format!(
                "{} management ports do not fit: the {} switches have {} free ports; lower the oversubscription \
                 or add a leaf",
                f.management_ports, t.name, placed
            ));
        }
    }
    let bom = bom(f, cat, &mut warnings);
    if tr.config.kind == crate::config::TransportKind::Efa {
        // The cost model is for a fabric one buys; on AWS it is rented with the instances.
        warnings.push(
            "efa: AWS's network comes with the instances and is not bought; the switches, optics and fibre in the \
             bill price a fabric of the same shape at the catalog's prices, and the EFA devices are not priced"
                .into(),
        );
    }
    let lossless = lossless(f, cat, tr, &mut warnings);
    let resilience = resilience(f, &split, bisection.maxflow_bps);
    spof_warnings(&tiers, &resilience, &mut warnings);
    FabricReport {
        name: f.name.clone(),
        family: f.family.clone(),
        sites: f.sites.iter().filter(|s| !s.is_empty()).cloned().collect(),
        gpus,
        hosts,
        planes: f.planes,
        nic_bps,
        management_ports: u64::from(f.management_ports),
        scale_up,
        switches: f.switches().filter(|&s| !f.is_nvswitch(s)).count() as u64,
        groups: GroupsReport {
            kind: f.group_kind.clone(),
            count: f.groups.len() as u64,
            gpus_max: f
                .groups
                .iter()
                .map(|g| g.nodes.iter().filter(|n| f.node(**n).is_gpu()).count() as u64)
                .max()
                .unwrap_or(0),
        },
        tiers,
        links,
        bisection,
        paths,
        bom,
        lossless,
        resilience,
        warnings,
    }
}

fn scale_up_report(f: &Fabric, cat: &Catalog) -> Option<ScaleUpReport> {
    let s = f.scale_up?;
    let domains = f.switches().filter(|&n| f.is_nvswitch(n)).count() as u64;
    let nvlink = f
        .gpus()
        .next()
        .and_then(|g| f.neighbors(g).iter().find(|(_, l)| f.link(*l).class == LinkClass::Nvlink))
        .map_or(0, |(_, l)| f.link(*l).rate.0);
    Some(ScaleUpReport {
        domains,
        gpus_per_domain: s.gpus,
        hosts_per_domain: s.gpus / s.gpus_per_host.max(1),
        switch_model: model_name(cat, s.model),
        switch_trays: domains * u64::from(s.trays),
        trays_per_domain: s.trays,
        links_per_gpu: s.links_per_gpu,
        nvlink_links: domains * u64::from(s.gpus) * u64::from(s.links_per_gpu),
        nvlink_per_gpu_bps: nvlink,
        domain_bps: nvlink * u64::from(s.gpus),
    })
}

/// Warns when a tier above the leaves is one switch, or when losing one switch of such a
/// tier takes the whole bisection: the design has a single point of failure it need not have.
fn spof_warnings(tiers: &[TierReport], r: &Resilience, warnings: &mut Vec<String>) {
    for t in tiers.iter().filter(|t| t.level >= 2) {
        let cut = r
            .degradation
            .iter()
            .find(|d| d.element == format!("one {} switch", t.name))
            .filter(|d| d.loss_pct >= 99.99);
        if t.switches == 1 {
            warnings.push(format!(
                "the {} tier is a single switch: losing it cuts every path through that tier{}; plan at least two",
                t.name,
                cut.map_or(String::new(), |d| format!(" ({} down: bisection 0bps)", d.removed))
            ));
        } else if let Some(d) = cut {
            warnings.push(format!(
                "losing one {} switch ({}) cuts the bisection to 0bps: the {} tier is a single point of failure",
                t.name, d.removed, t.name
            ));
        }
    }
}

fn model_name(cat: &Catalog, model: u16) -> String {
    cat.switch.get(model as usize).map(|m| m.name.clone()).unwrap_or_else(|| format!("model-{model}"))
}

/// Warns about switches whose links add up to more than their model forwards (a hand-set
/// radix, or mixed port speeds), per tier and model.
fn over_capacity(f: &Fabric, cat: &Catalog, warnings: &mut Vec<String>) {
    // NVLink switches stand for a host's (or rack's) whole NVLink domain; say when the domain
    // has more GPUs than the catalog entry has ports, as an NVL72 rack on the 64-port entry.
    let mut nv: Option<(u64, u64, u16)> = None;
    for (i, n) in f.nodes.iter().enumerate() {
        let NodeKind::Switch { model, .. } = n.kind else { continue };
        let id = NodeId(i as u32);
        let Some(m) = cat.switch.get(model as usize).filter(|_| f.is_nvswitch(id) && f.scale_up.is_none()) else {
            continue;
        };
        let gpus = f.degree(id) as u64;
        if gpus > u64::from(m.ports) {
            let e = nv.get_or_insert((0, gpus, model));
            e.0 += 1;
            e.1 = e.1.max(gpus);
        }
    }
    if let Some((count, gpus, model)) = nv {
        warnings.push(format!(
            "{count} NVLink domains of {gpus} GPUs on the {}-port {} entry: meshway models each domain as one \
             switch of the GPUs' NVLink rate; for a rack-scale domain give the compute tray as gpus-per-host and \
             the domain as nvlink-domain (an NVL72 rack: gpus-per-host = 4, nvlink-domain = 72)",
            cat.switch[model as usize].ports,
            model_name(cat, model)
        ));
    }
    let mut over: BTreeMap<(u8, u16), (u64, u64, u64)> = BTreeMap::new();
    for (i, n) in f.nodes.iter().enumerate() {
        let NodeKind::Switch { tier, model, .. } = n.kind else { continue };
        let Some(m) = cat.switch.get(model as usize).filter(|_| !f.is_nvswitch(NodeId(i as u32))) else { continue };
        let cap = u64::from(m.ports) * m.port_rate.0;
        let links: u64 = f.neighbors(NodeId(i as u32)).iter().map(|&(_, l)| f.link(l).rate.0).sum();
        if links > cap {
            let e = over.entry((tier, model)).or_insert((0, 0, cap));
            e.0 += 1;
            e.1 = e.1.max(links);
        }
    }
    for ((tier, model), (count, links, cap)) in over {
        warnings.push(format!(
            "{count} {} switches have up to {} of links on a {} {}: more than the switch forwards",
            f.tiers[tier as usize].name,
            meshway_units::BitsPerSec(links),
            meshway_units::BitsPerSec(cap),
            model_name(cat, model)
        ));
    }
}

/// Says when a fat-tree's k leaves some of its switches' ports idle. A k-ary fat-tree gives
/// every switch k ports, and the smallest k that holds the GPUs is often far below the
/// model's: 4,000 GPUs took k = 26 on 64-port switches, 789 switches with 60% of their ports
/// free, where a 3-tier leaf-spine of the same switches needs 317.
fn fat_tree_radix(f: &Fabric, cat: &Catalog, warnings: &mut Vec<String>) {
    if f.family != "fat-tree" {
        return;
    }
    // The switches hold their radix (the model's ports at the link rate, or the scenario's
    // leaf-, spine- and core-radix); k is the most links a switch has (a spine's k/2 down and
    // k/2 up, in every pod).
    let mut by_model: BTreeMap<u16, (u64, u32, u64)> = BTreeMap::new();
    for s in f.switches().filter(|&s| !f.is_nvswitch(s)) {
        let NodeKind::Switch { model, radix, .. } = f.node(s).kind else { continue };
        let e = by_model.entry(model).or_insert((0, radix, 0));
        e.0 = e.0.max(f.degree(s) as u64);
        e.1 = e.1.min(radix);
        e.2 += 1;
    }
    for (model, (k, ports, count)) in by_model {
        let ports = u64::from(ports);
        if k == 0 || k >= ports {
            continue;
        }
        warnings.push(format!(
            "a k = {k} fat-tree gives each switch {k} ports: {} of the {}'s {ports} stand idle on each of {count} \
             switches; kind = \"leaf-spine\" fills the same switches' ports and needs fewer of them",
            ports - k,
            model_name(cat, model),
        ));
    }
}

/// Says when every GPU sits on one switch of a fabric with more: the tiers above it carry no
/// traffic between GPUs (16 GPUs on a leaf-spine got a spine, half the bill, for nothing).
fn one_leaf(f: &Fabric, warnings: &mut Vec<String>) {
    let mut leaves = std::collections::BTreeSet::new();
    for g in f.gpus() {
        for &(n, _) in f.neighbors(g) {
            if !f.node(n).is_gpu() && !f.is_nvswitch(n) {
                leaves.insert(n);
            }
        }
    }
    let others = f.switches().filter(|&s| !f.is_nvswitch(s) && !leaves.contains(&s)).count();
    // One leaf per plane is the same on every plane (AWS-like 4-plane hosts of 16 GPUs got 4
    // spines and 512 links for nothing, without a word).
    let planes: std::collections::BTreeSet<u16> = leaves.iter().map(|&n| f.node(n).plane).collect();
    if leaves.len() == planes.len() && others > 0 && f.sites.len() <= 1 {
        let names: Vec<String> = leaves.iter().map(|&n| f.node(n).name.clone()).collect();
        let above = match (names.len(), others) {
            (1, 1) => "switch above it carries",
            (1, _) => "switches above it carry",
            (_, 1) => "switch above them carries",
            _ => "switches above them carry",
        };
        warnings.push(if names.len() == 1 {
            format!(
                "every GPU is on one switch ({}): the {others} {above} no traffic between GPUs; \
                 a smaller leaf-radix spreads the GPUs over leaves, or one switch does",
                names[0]
            )
        } else {
            format!(
                "every GPU is on one switch in each of its {} planes ({}): the {others} {above} no traffic \
                 between GPUs; a smaller leaf-radix spreads the GPUs over leaves, or one switch per plane does",
                names.len(),
                names.join(", ")
            )
        });
    }
}

/// Says when the upper tiers of a built fabric carry no traffic between GPUs: every GPU fits
/// below them (512 GPUs in one pod of a 3-tier fabric got 32 core switches, $0.9M, that no
/// shortest path crosses). In a built family a path goes up and down once, so a path of h
/// switch hops reaches level (h + 1) / 2 at most. Custom fabrics may skip levels and are not
/// judged; a fabric whose GPUs share one leaf is `one_leaf`'s.
fn idle_top_tiers(f: &Fabric, paths: &PathStats, warnings: &mut Vec<String>) {
    if f.family == "custom" || f.sites.len() > 1 || paths.diameter_hops < 2 {
        return;
    }
    let reach = paths.diameter_hops.div_ceil(2);
    let mut idle: BTreeMap<u8, (String, u64)> = BTreeMap::new();
    for s in f.switches().filter(|&s| !f.is_nvswitch(s)) {
        let Some(t) = f.node(s).tier() else { continue };
        let tier = &f.tiers[t as usize];
        if u16::from(tier.level) > reach {
            idle.entry(tier.level).or_insert_with(|| (tier.name.clone(), 0)).1 += 1;
        }
    }
    if idle.is_empty() {
        return;
    }
    let n: u64 = idle.values().map(|x| x.1).sum();
    let names: Vec<String> = idle.values().map(|(name, c)| format!("{c} {name}")).collect();
    warnings.push(format!(
        "the {} switches carry no traffic between GPUs: the longest path between GPUs crosses {} switches and \
         never climbs to them (every GPU fits below them); fewer tiers give the same paths without these {n} \
         switches",
        names.join(" and "),
        paths.diameter_hops
    ));
}

/// Says when breakout reached a switch's port count before its bandwidth: slow ports leave
/// part of the switch idle (100G ports on a 51.2T switch of 256 logical ports use half of it).
fn idle_by_port_count(f: &Fabric, cat: &Catalog, warnings: &mut Vec<String>) {
    let mut seen = std::collections::BTreeSet::new();
    for s in f.switches().filter(|&s| !f.is_nvswitch(s)) {
        let NodeKind::Switch { tier, model, radix } = f.node(s).kind else { continue };
        let Some(m) = cat.switch.get(model as usize) else { continue };
        let Some(rate) = f.neighbors(s).iter().map(|(_, l)| f.link(*l).rate).min() else { continue };
        let (used, cap) = (u64::from(radix) * rate.0, u64::from(m.ports) * m.port_rate.0);
        if m.max_ports.is_some_and(|mp| radix >= mp) && used < cap && seen.insert((tier, model)) {
            warnings.push(format!(
                "{} switches: {radix} ports at {rate} (the {}'s most logical ports) use {} of its {}; faster ports \
                 would use the rest",
                f.tiers[tier as usize].name,
                m.name,
                BitsPerSec(used),
                BitsPerSec(cap)
            ));
        }
        // A model without a port-count limit is split as far as its rate divides; past 8 ways
        // (an OSFP's lanes: an assumption) no switch breaks a port out, and the counts are
        // not a real design (planes = 16 cabled 1,024 uplinks a leaf).
        let ways = m.port_rate.0.checked_div(rate.0).unwrap_or(0);
        if m.max_ports.is_none() && ways > 8 && seen.insert((tier, model)) {
            warnings.push(format!(
                "{} switches: each {} port of the {} is split {ways} ways into {rate} ports ({radix} in all); switches \
                 break a port out at most 8 ways: set the model's max-ports, or use faster links",
                f.tiers[tier as usize].name,
                m.port_rate,
                m.name,
            ));
        }
    }
}

fn tier_reports(f: &Fabric, cat: &Catalog) -> Vec<TierReport> {
    let mut rows: Vec<TierReport> = f
        .tiers
        .iter()
        .map(|t| TierReport {
            name: t.name.clone(),
            level: t.level,
            switches: 0,
            models: BTreeMap::new(),
            ports_used: 0,
            ports_free: 0,
            down_bps: 0,
            up_bps: 0,
            oversubscription: None,
            worst_switch_oversubscription: None,
        })
        .collect();
    for (i, n) in f.nodes.iter().enumerate() {
        if let NodeKind::Switch { tier, model, radix } = n.kind {
            let id = NodeId(i as u32);
            let r = &mut rows[tier as usize];
            r.switches += 1;
            *r.models.entry(model_name(cat, model)).or_default() += 1;
            // Ports in units of the switch's radix: a link faster than one radix port takes
            // several (a 400G uplink on a switch counted in 200G ports takes two).
            // NVLink switches are counted by link (their model is a port budget, not lanes).
            let unit = if f.is_nvswitch(id) {
                0
            } else {
                cat.switch.get(model as usize).map_or(0, |m| u64::from(m.ports) * m.port_rate.0)
                    / u64::from(radix.max(1))
            };
            // On a switch counted in its native ports, links slower than a port share one by
            // breakout (two 400G uplinks on one 800G port): its ports are its links' total
            // rate over a port's, rounded up (each 400G link counted as a whole 800G port read
            // 96 of 64 ports used). A radix the scenario sets counts a port per slower link.
            let native = cat.switch.get(model as usize).is_some_and(|m| m.port_rate.0 == unit);
            // A hand-set radix beyond the model's ports at its links' rate (a switch not in the
            // catalog yet) counts a port per link: its port unit, the model's capacity over the
            // radix, is below a link's rate, and 65 ports on a 64-port model read 130 used.
            let beyond = cat.switch.get(model as usize).is_some_and(|m| {
                f.neighbors(id).iter().map(|&(_, l)| f.link(l).rate).min().is_some_and(|r| radix > m.ports_at(r))
            });
            let used: u64 = if unit == 0 || beyond {
                f.neighbors(id).len() as u64
            } else if native {
                f.neighbors(id).iter().map(|&(_, l)| f.link(l).rate.0).sum::<u64>().div_ceil(unit)
            } else {
                f.neighbors(id).iter().map(|&(_, l)| f.link(l).rate.0.div_ceil(unit).max(1)).sum()
            };
            // Ports held for spare hosts on GPU leaves count as used.
            let used = used + if f.tiers[tier as usize].name == "leaf" { u64::from(f.backup_ports) } else { 0 };
            r.ports_used += used;
            r.ports_free += u64::from(radix).saturating_sub(used);
            let my = f.level(id);
            // A switch with DCI ports (a border leaf) faces its own site on every other port:
            // those are its down side and the DCI its up side, so its ratio is how much of the
            // site's capacity into it the DCI can carry on.
            let border = f.neighbors(id).iter().any(|&(_, l)| f.link(l).class == LinkClass::Dci);
            let (mut down, mut up) = (0u64, 0u64);
            for &(v, l) in f.neighbors(id) {
                let rate = f.link(l).rate.0;
                if border {
                    if f.link(l).class == LinkClass::Dci {
                        up += rate;
                    } else {
                        down += rate;
                    }
                    continue;
                }
                match f.level(v).cmp(&my) {
                    std::cmp::Ordering::Less => down += rate,
                    std::cmp::Ordering::Greater => up += rate,
                    std::cmp::Ordering::Equal => {}
                }
            }
            r.down_bps += down;
            r.up_bps += up;
            if up > 0 && down > 0 && r.level > 0 {
                let mine = down as f64 / up as f64;
                r.worst_switch_oversubscription = Some(r.worst_switch_oversubscription.map_or(mine, |w| w.max(mine)));
            }
        }
    }
    // Management ports take free ports on the GPU leaves (a warning says when they do not fit).
    if let Some(r) = rows.iter_mut().find(|r| r.name == "leaf" || r.name == "access") {
        let m = u64::from(f.management_ports).min(r.ports_free);
        r.ports_used += m;
        r.ports_free -= m;
    }
    for r in &mut rows {
        r.oversubscription =
            (r.up_bps > 0 && r.down_bps > 0 && r.level > 0).then(|| r.down_bps as f64 / r.up_bps as f64);
    }
    rows.sort_by_key(|r| r.level);
    rows
}

/// With NVLink domains larger than a host, the graph holds one switch per domain with one
/// link per GPU at its whole NVLink rate; the tables give the hardware instead, as the
/// scale-up line and the bill of materials do (an NVL72 plan read 8 trays and 576 NVLink
/// links in its tables, 72 trays and 10,368 links elsewhere).
fn physical_scale_up(su: &ScaleUpReport, cat: &Catalog, tiers: &mut [TierReport], links: &mut [LinkReport]) {
    if let Some(t) = tiers.iter_mut().find(|t| t.level == 0) {
        let ports = cat.switch.iter().find(|m| m.name == su.switch_model).map_or(0, |m| u64::from(m.ports));
        t.switches = su.switch_trays;
        t.models = BTreeMap::from([(su.switch_model.clone(), su.switch_trays)]);
        t.ports_used = su.nvlink_links;
        t.ports_free = (ports * su.switch_trays).saturating_sub(su.nvlink_links);
    }
    if let Some(l) = links.iter_mut().find(|l| l.class == LinkClass::Nvlink.name()) {
        l.count = su.nvlink_links;
        l.rate_bps = su.nvlink_per_gpu_bps / u64::from(su.links_per_gpu.max(1));
    }
}

fn link_reports(f: &Fabric) -> Vec<LinkReport> {
    let mut by: BTreeMap<LinkClass, LinkReport> = BTreeMap::new();
    for l in &f.links {
        let r = by.entry(l.class).or_insert_with(|| LinkReport {
            class: l.class.name().to_string(),
            count: 0,
            rate_bps: l.rate.0,
            capacity_bps: 0,
            length_mm_min: u64::MAX,
            length_mm_max: 0,
        });
        r.count += 1;
        r.capacity_bps += l.rate.0;
        r.rate_bps = r.rate_bps.max(l.rate.0);
        r.length_mm_min = r.length_mm_min.min(l.length.as_mm());
        r.length_mm_max = r.length_mm_max.max(l.length.as_mm());
    }
    by.into_values().collect()
}

/// A split of the GPUs into two sides for the bisection.
#[derive(Debug, Clone)]
pub struct Split {
    pub name: String,
    /// Per node: Some(true) side A, Some(false) side B, None shared (spines, cores).
    pub side: Vec<Option<bool>>,
    /// Whether a structural value can be computed (built-in families).
    pub structural: bool,
}

/// The bisection's split: of the balanced cuts tried, the one that passes the least (the
/// bisection is the worst balanced cut). Tried: along the fabric's groups (pods, rail groups,
/// sites) when that leaves each side at least a third of the GPUs (three sites: two | one);
/// halves in host order; and on hosts of several GPUs, halves by local index (rails: a
/// rail-optimized fabric's rail leaves hold GPUs of both host-order halves, so only a cut
/// between rails crosses its spines). On a tie the earlier wins. With several candidates,
/// the chosen one's max-flow comes too (each was computed to compare them).
pub fn choose_split(f: &Fabric) -> (Split, Option<u64>) {
    let total = f.gpu_count() as u64;
    let mut candidates: Vec<Split> = Vec::new();
    if let Some(g) = group_split(f) {
        let a = f.gpus().filter(|n| g.side[n.idx()] == Some(true)).count() as u64;
        if a.min(total - a) * 3 >= total {
            candidates.push(g);
        }
    }
    candidates.push(host_halves(f));
    candidates.extend(rail_halves(f));
    if candidates.len() == 1 {
        return (candidates.remove(0), None);
    }
    let mut best = (0, f64::INFINITY, 0);
    for (i, c) in candidates.iter().enumerate() {
        let (flow, inj) = (maxflow(f, c, None, None), injection(f, c));
        let r = if inj == 0 { f64::INFINITY } else { flow as f64 / inj as f64 };
        if r < best.1 - 1e-9 {
            best = (i, r, flow);
        }
    }
    (candidates.swap_remove(best.0), Some(best.2))
}

/// What the smaller side's NICs can send across a split.
fn injection(f: &Fabric, split: &Split) -> u64 {
    let nic = |side: bool| -> u64 {
        f.gpus().filter(|g| split.side[g.idx()] == Some(side)).map(|g| f.network_rate(g).0).sum()
    };
    nic(true).min(nic(false))
}

/// Halves by local index: GPUs `0..g/2` of every host on side A (on fabrics whose hosts hold
/// at least 2 GPUs, all the same count).
fn rail_halves(f: &Fabric) -> Option<Split> {
    let local = |n: NodeId| match f.node(n).kind {
        NodeKind::Gpu { local, .. } => local,
        NodeKind::Switch { .. } => 0,
    };
    let per_host = f.gpus().map(local).max()? + 1;
    if per_host < 2 {
        return None;
    }
    let half = per_host / 2;
    let mut side = vec![None; f.nodes.len()];
    for g in f.gpus() {
        side[g.idx()] = Some(local(g) < half);
    }
    Some(Split {
        name: format!("by rail: local GPUs 0..{} | {}..{}", half - 1, half, per_host - 1),
        side,
        structural: false,
    })
}

/// Along the fabric's groups (pods, rail groups, sites) so that side A holds at least half
/// the GPUs; None without two groups.
fn group_split(f: &Fabric) -> Option<Split> {
    let total = f.gpu_count();
    let mut side = vec![None; f.nodes.len()];
    if f.groups.len() >= 2 {
        let gpus_in = |g: &crate::model::Group| g.nodes.iter().filter(|n| f.node(**n).is_gpu()).count();
        let mut a_gpus = 0;
        let mut cut = 0;
        for (i, g) in f.groups.iter().enumerate() {
            if a_gpus * 2 >= total || i + 1 == f.groups.len() {
                break;
            }
            a_gpus += gpus_in(g);
            cut = i + 1;
        }
        for (i, g) in f.groups.iter().enumerate() {
            for n in &g.nodes {
                side[n.idx()] = Some(i < cut);
            }
        }
        let names = |r: &[crate::model::Group]| match r {
            [] => String::new(),
            [one] => one.name.clone(),
            [first, .., last] => format!("{}..{}", first.name, last.name),
        };
        let name = format!("by {}: {} | {}", f.group_kind, names(&f.groups[..cut]), names(&f.groups[cut..]));
        return Some(Split { name, side, structural: f.family != "custom" });
    }
    None
}

/// Halves in host order, never splitting a host.
fn host_halves(f: &Fabric) -> Split {
    let total = f.gpu_count();
    let mut side = vec![None; f.nodes.len()];
    let gpus: Vec<NodeId> = f.gpus().collect();
    let mut cut = total / 2;
    let host = |n: NodeId| match f.node(n).kind {
        NodeKind::Gpu { host, .. } => host,
        NodeKind::Switch { .. } => u32::MAX,
    };
    while cut > 0 && cut < total && host(gpus[cut]) == host(gpus[cut - 1]) {
        cut += 1;
    }
    if cut >= total {
        cut = total / 2;
    }
    for (i, g) in gpus.iter().enumerate() {
        side[g.idx()] = Some(i < cut);
    }
    // NVLink switches follow their GPUs.
    for v in f.switches().filter(|&v| f.is_nvswitch(v)) {
        side[v.idx()] = f.neighbors(v).first().and_then(|(g, _)| side[g.idx()]);
    }
    let name = format!(
        "halves: {}..{} | {}..{}",
        f.node(gpus[0]).name,
        f.node(gpus[cut.max(1) - 1]).name,
        f.node(gpus[cut.min(total - 1)]).name,
        f.node(gpus[total - 1]).name
    );
    Split { name, side, structural: false }
}

/// Max-flow from side A's GPUs to side B's over network links, skipping `removed`.
fn maxflow(f: &Fabric, split: &Split, removed_node: Option<NodeId>, removed_link: Option<LinkId>) -> u64 {
    let n = f.nodes.len();
    let mut net = FlowNet::new(n + 2);
    let (s, t) = (n, n + 1);
    const INF: u64 = u64::MAX / 4;
    for (i, l) in f.links.iter().enumerate() {
        if !is_network(l.class) || Some(LinkId(i as u32)) == removed_link {
            continue;
        }
        if Some(l.a) == removed_node || Some(l.b) == removed_node {
            continue;
        }
        net.add(l.a.idx(), l.b.idx(), l.rate.0, l.rate.0);
    }
    for g in f.gpus() {
        match split.side[g.idx()] {
            Some(true) => net.add(s, g.idx(), INF, 0),
            Some(false) => net.add(g.idx(), t, INF, 0),
            None => {}
        }
    }
    net.max_flow(s, t)
}

/// The structural bisection: for each side, each group (leaf, rail group, pod, site) can
/// pass at most the smaller of what its leaves can pass (each leaf: the smaller of its GPUs'
/// NIC capacity and its uplinks) and the capacity of the links leaving the group; a side
/// passes the sum over its groups, and the bisection is the smaller side's value.
fn structural(f: &Fabric, split: &Split) -> u64 {
    let mut in_group = vec![u32::MAX; f.nodes.len()];
    for (gi, g) in f.groups.iter().enumerate() {
        for n in &g.nodes {
            in_group[n.idx()] = gi as u32;
        }
    }
    let mut value = [0u64; 2];
    for (gi, g) in f.groups.iter().enumerate() {
        let Some(side) = g.nodes.first().and_then(|n| split.side[n.idx()]) else { continue };
        let mut leaves_sum = 0u64;
        let mut boundary = 0u64;
        for &v in &g.nodes {
            let (mut nic, mut up) = (0u64, 0u64);
            for &(w, l) in f.neighbors(v) {
                let link = f.link(l);
                if !is_network(link.class) {
                    continue;
                }
                if in_group[w.idx()] != gi as u32 {
                    boundary += link.rate.0;
                }
                if f.level(v) == 1 && !f.node(v).is_gpu() {
                    if f.node(w).is_gpu() {
                        nic += link.rate.0;
                    } else {
                        up += link.rate.0;
                    }
                }
            }
            if f.level(v) == 1 && !f.node(v).is_gpu() {
                leaves_sum += nic.min(up);
            }
        }
        value[usize::from(side)] += leaves_sum.min(boundary);
    }
    value[0].min(value[1])
}

/// The bisection across `split`, with its max-flow when already known.
fn bisection(f: &Fabric, split: &Split, flow: Option<u64>) -> Bisection {
    let count = |s: bool| f.gpus().filter(|g| split.side[g.idx()] == Some(s)).count() as u64;
    let (a, b) = (count(true), count(false));
    let flow = flow.unwrap_or_else(|| maxflow(f, split, None, None));
    let injection = injection(f, split);
    Bisection {
        split: split.name.clone(),
        side_a_gpus: a,
        side_b_gpus: b,
        structural_bps: split.structural.then(|| structural(f, split)),
        maxflow_bps: flow,
        full_ratio: if injection > 0 { flow as f64 / injection as f64 } else { 0.0 },
        per_gpu_bps: if a.min(b) > 0 { flow / a.min(b) } else { 0 },
    }
}

fn path_stats(f: &Fabric, cat: &Catalog, mtu: Bytes) -> PathStats {
    let gpus: Vec<NodeId> = f.gpus().collect();
    let sampled = gpus.len() > FULL_PAIRS_LIMIT;
    let sources: Vec<NodeId> = if sampled {
        let step = gpus.len() as f64 / SAMPLE_SOURCES as f64;
        (0..SAMPLE_SOURCES).map(|i| gpus[(i as f64 * step) as usize]).collect()
    } else {
        gpus.clone()
    };
    let sw_lat = switch_latencies(f, cat);
    let per_km = cat.constants.fiber_delay_per_km;
    let host_of = |n: NodeId| match f.node(n).kind {
        NodeKind::Gpu { host, .. } => (f.node(n).site, host),
        NodeKind::Switch { .. } => (u16::MAX, u32::MAX),
    };
    let mut hops: BTreeMap<u16, u64> = BTreeMap::new();
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut pairs, mut same, mut unreach) = (0u64, 0u64, 0u64);
    let (mut lat_min, mut lat_max, mut lat_sum) = (u64::MAX, 0u64, 0u128);
    for &s in &sources {
        let sp = ShortestPaths::from(f, s, &sw_lat, per_km);
        for &d in &gpus {
            if d == s {
                continue;
            }
            pairs += 1;
            if host_of(d) == host_of(s) {
                same += 1;
                continue;
            }
            match (sp.switch_hops(d), sp.zero_load_latency(d, mtu)) {
                (Some(h), Some(lat)) => {
                    *hops.entry(h).or_default() += 1;
                    *counts.entry(sp.count[d.idx()]).or_default() += 1;
                    lat_min = lat_min.min(lat.0);
                    lat_max = lat_max.max(lat.0);
                    lat_sum += u128::from(lat.0);
                }
                _ => unreach += 1,
            }
        }
    }
    let reached: u64 = hops.values().sum();
    let hop_sum: u64 = hops.iter().map(|(h, c)| u64::from(*h) * c).sum();
    PathStats {
        sampled,
        sources: sources.len() as u64,
        pairs,
        same_host_pairs: same,
        unreachable_pairs: unreach,
        diameter_hops: hops.keys().last().copied().unwrap_or(0),
        mean_hops: if reached > 0 { hop_sum as f64 / reached as f64 } else { 0.0 },
        hop_histogram: hops.into_iter().collect(),
        path_count_histogram: counts.into_iter().collect(),
        latency_min_ns: if reached > 0 { lat_min } else { 0 },
        latency_mean_ns: if reached > 0 { (lat_sum / u128::from(reached)) as u64 } else { 0 },
        latency_max_ns: lat_max,
        mtu_bytes: mtu.0,
    }
}

fn bom(f: &Fabric, cat: &Catalog, warnings: &mut Vec<String>) -> Bom {
    let mut lines: BTreeMap<(u8, String), BomLine> = BTreeMap::new();
    let mut add = |order: u8, item: &str, kind: &str, count: u64, power: f64, cost: f64| {
        let e = lines.entry((order, item.to_string())).or_insert_with(|| BomLine {
            item: item.to_string(),
            kind: kind.to_string(),
            count: 0,
            power_w: 0.0,
            cost_usd: 0.0,
        });
        e.count += count;
        e.power_w += power;
        e.cost_usd += cost;
    };
    // NVLink switches are part of the GPU servers, not the network: left out, except the
    // switch trays and links of a domain larger than a host, which are counted.
    if let Some(s) = scale_up_report(f, cat) {
        let m = &cat.switch[f.scale_up.map_or(0, |u| u.model) as usize];
        let t = s.switch_trays;
        add(0, &m.name, "nvlink switch tray", t, m.power_w * t as f64, m.price_usd * t as f64);
        add(1, "nvlink link", "nvlink (in rack)", s.nvlink_links, 0.0, 0.0);
    }
    for (i, n) in f.nodes.iter().enumerate() {
        if f.is_nvswitch(NodeId(i as u32)) {
            continue;
        }
        if let NodeKind::Switch { model, .. } = n.kind {
            if let Some(m) = cat.switch.get(model as usize) {
                add(0, &m.name, "switch", 1, m.power_w, m.price_usd);
            }
        }
    }
    let mut fiber_m = 0.0;
    let mut dci_km = 0.0;
    let mut missing: BTreeMap<String, u64> = BTreeMap::new();
    let mut long: BTreeMap<(String, u16), u64> = BTreeMap::new();
    let mut cable_cost: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    // Link ends that share a cage: (cage owner, module) -> ends. A switch's cage carries its
    // model's `cage-rate`; a host's, the scenario's `host-cage-rate` (keyed by its first GPU).
    let mut shared: BTreeMap<(u32, u16, bool), (u64, u64)> = BTreeMap::new();
    let (mut cables, mut switch_modules, mut host_modules) = (0u64, 0u64, 0u64);
    // A host (compute tray with NVLink domains), numbered within its site.
    let host_of = |g: NodeId| -> u32 {
        match f.node(g).kind {
            NodeKind::Gpu { host, local } => {
                let tray = match f.scale_up {
                    Some(s) => host * (s.gpus / s.gpus_per_host.max(1)) + local / s.gpus_per_host.max(1),
                    None => host,
                };
                (u32::from(f.node(g).site) << 24) ^ tray
            }
            _ => g.0,
        }
    };
    // Per end: (owner key, links per cage, the module of the cage's rate) when it shares.
    let cage = |n: NodeId, l: &crate::model::Link, class: OpticClass| -> Option<(u32, u64, u16)> {
        let cage_rate = match f.node(n).kind {
            NodeKind::Switch { model, .. } => cat.switch.get(model as usize).and_then(|m| m.cage_rate)?,
            NodeKind::Gpu { .. } => f.host_cage_rate?,
        };
        let per = cage_rate.0 / l.rate.0.max(1);
        if per < 2 {
            return None;
        }
        let o = cat
            .choose_optic_of(cage_rate, l.length, Some(class))
            .filter(|&o| cat.optic[o as usize].rate == cage_rate)?;
        let owner = if f.node(n).is_gpu() { host_of(n) } else { n.0 | (1 << 31) };
        Some((owner, per, o))
    };
    for l in &f.links {
        if !is_network(l.class) {
            continue;
        }
        // Beyond every pluggable's reach (a campus span of tens of km): a coherent optic.
        let coherent = || {
            let c = cat.choose_coherent_at(l.rate, l.length)?;
            *long.entry((format!("{} at {} over {}", l.class.name(), l.rate, l.length), c)).or_default() += 1;
            Some(c)
        };
        let Some(mut oi) = l.optic.or_else(|| cat.choose_optic(l.rate, l.length)).or_else(coherent) else {
            *missing.entry(format!("{} at {} over {}", l.class.name(), l.rate, l.length)).or_default() += 1;
            continue;
        };
        // A shared cage whose twin-port module is of another class (XDR cages take single-mode
        // 2 x 800G modules only) sets the class of the whole link, both ends alike.
        let first = cat.optic[oi as usize].class;
        if l.optic.is_none() && first != OpticClass::Copper && ![l.a, l.b].iter().any(|&n| cage(n, l, first).is_some())
        {
            let other = [OpticClass::SingleMode, OpticClass::Multimode]
                .into_iter()
                .filter(|&c| c != first && [l.a, l.b].iter().any(|&n| cage(n, l, c).is_some()))
                .find_map(|c| cat.choose_optic_of(l.rate, l.length, Some(c)));
            oi = other.unwrap_or(oi);
        }
        let o = &cat.optic[oi as usize];
        if o.class == OpticClass::Copper {
            // A copper link from a shared cage is one leg of a breakout cable.
            match [l.a, l.b].into_iter().find_map(|n| cage(n, l, o.class)) {
                Some((owner, per, bo)) => {
                    let e = shared.entry((owner, bo, true)).or_default();
                    e.0 += 1;
                    e.1 = per;
                }
                None => {
                    cables += 1;
                    add(1, &o.name, "copper cable", 1, 2.0 * o.power_w, o.price_usd);
                }
            }
            continue;
        }
        cables += 1;
        for n in [l.a, l.b] {
            match cage(n, l, o.class).filter(|_| l.class != LinkClass::Dci) {
                Some((owner, per, mo)) => {
                    let e = shared.entry((owner, mo, false)).or_default();
                    e.0 += 1;
                    e.1 = per;
                }
                None => {
                    if f.node(n).is_gpu() {
                        host_modules += 1;
                    } else {
                        switch_modules += 1;
                    }
                    add(1, &o.name, "optic", 1, o.power_w, o.price_usd);
                }
            }
        }
        if l.class == LinkClass::Dci {
            dci_km += l.length.as_km_f64();
            continue;
        }
        fiber_m += l.length.as_m_f64();
        if let Some(c) = cat.cable_for(o) {
            let e = cable_cost.entry(c.name.clone()).or_default();
            e.0 += l.length.as_m_f64();
            e.1 += l.length.as_m_f64() * c.price_usd_per_m;
        }
    }
    // Management appliances: one host-leaf cable each, at the NIC port rate.
    if f.management_ports > 0 {
        let host_link = f.links.iter().find(|l| l.class == LinkClass::Nic);
        if let Some(l) = host_link {
            let n = u64::from(f.management_ports);
            match cat.choose_optic(l.rate, l.length) {
                Some(oi) => {
                    let o = &cat.optic[oi as usize];
                    cables += n;
                    if o.class == OpticClass::Copper {
                        add(2, &o.name, "management cable", n, 2.0 * o.power_w * n as f64, o.price_usd * n as f64);
                    } else {
                        switch_modules += n;
                        host_modules += n;
                        add(
                            2,
                            &o.name,
                            "management optic",
                            2 * n,
                            2.0 * o.power_w * n as f64,
                            2.0 * o.price_usd * n as f64,
                        );
                    }
                }
                None => *missing.entry(format!("management at {} over {}", l.rate, l.length)).or_default() += n,
            }
        }
    }
    for ((owner, oi, breakout), (ends, per)) in shared {
        let o = &cat.optic[oi as usize];
        let n = ends.div_ceil(per.max(1));
        if breakout {
            cables += n;
            add(1, &o.name, "breakout cable", n, 2.0 * o.power_w * n as f64, o.price_usd * n as f64);
        } else {
            if owner & (1 << 31) != 0 {
                switch_modules += n;
            } else {
                host_modules += n;
            }
            add(1, &o.name, "optic (twin-port)", n, o.power_w * n as f64, o.price_usd * n as f64);
        }
    }
    for (name, (m, cost)) in cable_cost {
        add(2, &name, &format!("fiber ({:.0} m)", m), 0, 0.0, cost);
    }
    let nic_rate = f.gpu_network_rate();
    match cat.nic_of(f.nic_model.as_deref(), nic_rate) {
        Some(nic) => {
            let n = f.gpu_count() as u64;
            add(3, &nic.name, "nic", n, nic.power_w * n as f64, nic.price_usd * n as f64);
        }
        None if nic_rate.0 > 0 => warnings.push(format!(
            "no catalog NIC reaches {nic_rate} per GPU: NICs are left out of the bill of materials (add a [[nic]])"
        )),
        None => {}
    }
    for (what, count) in missing {
        warnings.push(format!(
            "no catalog optic or cable reaches {what} ({count} links left out of the bill of materials)"
        ));
    }
    for ((what, c), count) in long {
        warnings.push(format!(
            "no pluggable optic reaches {what}: its {count} links are billed with coherent {} optics",
            cat.optic[c as usize].name
        ));
    }
    if dci_km > 0.0 {
        warnings.push(format!("dci fiber ({dci_km:.0} wavelength-km) is leased or dark fiber and not priced"));
    }
    let lines: Vec<BomLine> = lines.into_values().collect();
    let total_power_w = lines.iter().map(|l| l.power_w).sum();
    let total_cost_usd: f64 = lines.iter().map(|l| l.cost_usd).sum();
    let gpus = f.gpu_count().max(1) as f64;
    Bom {
        lines,
        cables,
        switch_modules,
        host_modules,
        fiber_m,
        dci_fiber_km: dci_km,
        total_power_w,
        total_cost_usd,
        cost_per_gpu_usd: total_cost_usd / gpus,
    }
}

/// Headroom one lossless port needs to absorb what arrives after it asks its peer to stop:
/// the link's round trip at line rate, plus the peer's pause/credit response time at line
/// rate, plus one maximum packet in flight at each end.
pub fn headroom_bytes(rate: BitsPerSec, propagation: Nanos, response: Nanos, mtu: Bytes) -> Bytes {
    let in_flight = rate.bytes_in(propagation.times(2) + response);
    Bytes(in_flight.0 + 2 * mtu.0)
}

/// Credits one InfiniBand port needs to run at line rate: a round trip of data (the receiver
/// advertises only buffer it has) plus one packet.
pub fn credit_bytes(rate: BitsPerSec, propagation: Nanos, mtu: Bytes) -> Bytes {
    Bytes(rate.bytes_in(propagation.times(2)).0 + mtu.0)
}

/// InfiniBand: credit-based flow control per link, no pauses. Each port needs a round trip of
/// credits for line rate; a switch's buffer is split over its ports. Short credits do not
/// drop packets: they cap the link at buffer / round trip.
fn credits(f: &Fabric, cat: &Catalog, tr: &Transport, warnings: &mut Vec<String>) -> Lossless {
    let per_km = cat.constants.fiber_delay_per_km;
    let mut rows: BTreeMap<(u8, String), HeadroomRow> = BTreeMap::new();
    for s in f.switches().filter(|&s| !f.is_nvswitch(s)) {
        let NodeKind::Switch { tier, model, .. } = f.node(s).kind else { continue };
        let Some(m) = cat.switch.get(model as usize) else { continue };
        let per_port_buffer = m.buffer.0 / u64::from(m.ports.max(1));
        for &(_, l) in f.neighbors(s) {
            let link = f.link(l);
            if !is_network(link.class) {
                continue;
            }
            let prop = f.link_latency(l, per_km);
            let need = credit_bytes(link.rate, prop, tr.mtu).0;
            let scope = if link.class == LinkClass::Dci {
                format!("dci {}", span_name(f, l))
            } else {
                f.tiers[tier as usize].name.clone()
            };
            let level = if link.class == LinkClass::Dci { u8::MAX } else { f.tiers[tier as usize].level };
            let row = rows.entry((level, scope.clone())).or_insert_with(|| HeadroomRow {
                scope,
                switches: 0,
                link_length_mm: 0,
                rate_bps: 0,
                per_port_bytes: 0,
                switch_total_bytes: 0,
                buffer_bytes: per_port_buffer,
                feasible: true,
            });
            if need > row.per_port_bytes {
                row.per_port_bytes = need;
                row.switch_total_bytes = need;
                row.link_length_mm = link.length.as_mm();
                row.rate_bps = link.rate.0;
                row.buffer_bytes = per_port_buffer;
            }
        }
        // Count switches per tier once.
        let key = (f.tiers[tier as usize].level, f.tiers[tier as usize].name.clone());
        if let Some(r) = rows.get_mut(&key) {
            r.switches += 1;
        }
    }
    let mut rows: Vec<HeadroomRow> = rows.into_values().collect();
    for r in &mut rows {
        r.feasible = r.per_port_bytes <= r.buffer_bytes;
        if !r.feasible {
            let rtt_s = (r.per_port_bytes as f64 * 8.0 / r.rate_bps.max(1) as f64).max(1e-12);
            let cap = BitsPerSec((r.buffer_bytes as f64 * 8.0 / rtt_s) as u64);
            warnings.push(format!(
                "infiniband {} over {}: a port needs {} of credits for line rate but has {} of buffer; \
                 the link runs at most {cap} (long-haul InfiniBand needs deep-buffer range extenders)",
                r.scope,
                meshway_units::Meters(r.link_length_mm),
                Bytes(r.per_port_bytes).display_si(),
                Bytes(r.buffer_bytes).display_si(),
            ));
        }
    }
    // A span's switches: those with a DCI link of that span (every border switch was counted).
    for r in rows.iter_mut().filter(|r| r.scope.starts_with("dci")) {
        r.switches = f
            .switches()
            .filter(|&s| {
                f.neighbors(s)
                    .iter()
                    .any(|&(_, l)| f.link(l).class == LinkClass::Dci && r.scope == format!("dci {}", span_name(f, l)))
            })
            .count() as u64;
    }
    Lossless {
        required: true,
        transport: "infiniband".into(),
        formula: "credits per port: rate x 2 x propagation + MTU (a round trip of credits for line rate), vs the \
                  switch's buffer per port; short credits cap the link, nothing is dropped"
            .into(),
        rows,
    }
}

/// The pair of sites a DCI link joins, the lower first.
fn span_of(f: &Fabric, l: LinkId) -> (u16, u16) {
    let k = f.link(l);
    let (a, b) = (f.node(k.a).site, f.node(k.b).site);
    (a.min(b), a.max(b))
}

/// A DCI link's span by its sites' names ("a-b").
fn span_name(f: &Fabric, l: LinkId) -> String {
    let (a, b) = span_of(f, l);
    let site = |i: u16| f.sites.get(usize::from(i)).cloned().unwrap_or_default();
    format!("{}-{}", site(a), site(b))
}

fn lossless(f: &Fabric, cat: &Catalog, tr: &Transport, warnings: &mut Vec<String>) -> Lossless {
    if tr.config.kind == crate::config::TransportKind::Infiniband {
        return credits(f, cat, tr, warnings);
    }
    let per_km = cat.constants.fiber_delay_per_km;
    let mtu = tr.mtu;
    let port_need = |l: LinkId| {
        let link = f.link(l);
        headroom_bytes(link.rate, f.link_latency(l, per_km), cat.constants.pfc_response_at(link.rate), mtu)
    };
    // Worst switch per tier, and DCI spans per site pair.
    let mut by_tier: BTreeMap<(u8, String), HeadroomRow> = BTreeMap::new();
    let mut dci: BTreeMap<String, HeadroomRow> = BTreeMap::new();
    for s in f.switches() {
        if f.is_nvswitch(s) {
            continue;
        }
        let NodeKind::Switch { tier, model, .. } = f.node(s).kind else { continue };
        let buffer = cat.switch.get(model as usize).map(|m| m.buffer.0).unwrap_or(0);
        let mut total = 0u64;
        let mut worst_port = (0u64, 0u64, 0u64);
        let mut dci_links: Vec<LinkId> = Vec::new();
        for &(_, l) in f.neighbors(s) {
            if !is_network(f.link(l).class) {
                continue;
            }
            let need = port_need(l).0;
            if f.link(l).class != LinkClass::Dci {
                total += need;
            }
            if need > worst_port.0 && f.link(l).class != LinkClass::Dci {
                worst_port = (need, f.link(l).length.as_mm(), f.link(l).rate.0);
            }
            if f.link(l).class == LinkClass::Dci && !dci_links.iter().any(|&x| span_of(f, x) == span_of(f, l)) {
                dci_links.push(l);
            }
        }
        if dci_links.len() > 1 && tr.lossless {
            // A border switch of several spans holds all their headroom in one buffer.
            let all: u64 =
                f.neighbors(s).iter().filter(|(_, x)| is_network(f.link(*x).class)).map(|(_, x)| port_need(*x).0).sum();
            if all > buffer {
                let spans: Vec<String> = dci_links.iter().map(|&l| span_name(f, l)).collect();
                warnings.push(format!(
                    "lossless: {} carries spans {}, which together need {} of headroom against {} of buffer (each span alone is in its dci row)",
                    f.node(s).name,
                    spans.join(" and "),
                    Bytes(all).display_si(),
                    Bytes(buffer).display_si()
                ));
            }
        }
        for l in dci_links {
            let link = f.link(l);
            let name = format!("dci {}", span_name(f, l));
            // The switch's own ports and this span's, not another span's that lands on it.
            let all_ports: u64 = f
                .neighbors(s)
                .iter()
                .filter(|(_, x)| {
                    let k = f.link(*x);
                    is_network(k.class) && (k.class != LinkClass::Dci || span_of(f, *x) == span_of(f, l))
                })
                .map(|(_, x)| port_need(*x).0)
                .sum();
            let row = dci.entry(name.clone()).or_insert_with(|| HeadroomRow {
                scope: name,
                switches: 0,
                link_length_mm: link.length.as_mm(),
                rate_bps: link.rate.0,
                per_port_bytes: port_need(l).0,
                switch_total_bytes: 0,
                buffer_bytes: buffer,
                feasible: true,
            });
            row.switches += 1;
            row.switch_total_bytes = row.switch_total_bytes.max(all_ports);
        }
        let tier_level = f.tiers[tier as usize].level;
        let row = by_tier.entry((tier_level, f.tiers[tier as usize].name.clone())).or_insert_with(|| HeadroomRow {
            scope: f.tiers[tier as usize].name.clone(),
            switches: 0,
            link_length_mm: 0,
            rate_bps: 0,
            per_port_bytes: 0,
            switch_total_bytes: 0,
            buffer_bytes: buffer,
            feasible: true,
        });
        row.switches += 1;
        if worst_port.0 > row.per_port_bytes {
            row.per_port_bytes = worst_port.0;
            row.link_length_mm = worst_port.1;
            row.rate_bps = worst_port.2;
        }
        if total > row.switch_total_bytes {
            row.switch_total_bytes = total;
            row.buffer_bytes = buffer;
        }
    }
    let mut rows: Vec<HeadroomRow> = by_tier.into_values().chain(dci.into_values()).collect();
    for r in &mut rows {
        r.feasible = r.switch_total_bytes <= r.buffer_bytes;
        if tr.lossless && !r.feasible {
            warnings.push(format!(
                "lossless {}: the worst switch needs {} of headroom but has {} of buffer{}",
                r.scope,
                Bytes(r.switch_total_bytes).display_si(),
                Bytes(r.buffer_bytes).display_si(),
                if r.scope.starts_with("dci") { "; lossless RDMA over this span is infeasible" } else { "" }
            ));
        }
    }
    Lossless {
        required: tr.lossless,
        transport: format!("{:?}", tr.config.kind).to_lowercase(),
        formula: "per port: rate x (2 x propagation + pause response) + 2 x MTU; per switch: sum over its ports vs its buffer".into(),
        rows,
    }
}

/// Articulation points and bridges of the network graph (NVLink excluded), with the GPUs
/// each would cut off; iterative DFS.
fn spofs(f: &Fabric) -> (Vec<SpofRow>, Vec<SpofRow>, u64) {
    let n = f.nodes.len();
    let usable = |v: NodeId| !f.is_nvswitch(v);
    let mut disc = vec![u32::MAX; n];
    let mut low = vec![0u32; n];
    let mut gpus_below = vec![0u64; n];
    let mut parent_link = vec![u32::MAX; n];
    let mut timer = 0u32;
    // Per node: GPUs cut off if it fails (articulation); per link: GPUs cut off (bridge).
    let mut cut_node = vec![0u64; n];
    // Per node: the GPUs of the DFS subtrees its failure separates from the rest (their sum
    // and the largest), settled once the component's GPU count is known.
    let mut sep_sum = vec![0u64; n];
    let mut sep_max = vec![0u64; n];
    let mut cut_link: Vec<(LinkId, u64)> = Vec::new();
    let mut components = 0u64;
    let total_gpus = f.gpu_count() as u64;
    // Roots: highest-level switches first so subtrees hang below them.
    let mut order: Vec<NodeId> = (0..n as u32).map(NodeId).filter(|&v| usable(v)).collect();
    order.sort_by_key(|&v| std::cmp::Reverse(f.level(v)));
    for root in order {
        if disc[root.idx()] != u32::MAX {
            continue;
        }
        components += 1;
        let mut seen: Vec<NodeId> = vec![root];
        let mut stack: Vec<(NodeId, usize)> = vec![(root, 0)];
        disc[root.idx()] = timer;
        low[root.idx()] = timer;
        timer += 1;
        let mut root_children: Vec<u64> = Vec::new();
        while let Some(&mut (u, ref mut i)) = stack.last_mut() {
            let nb = f.neighbors(u);
            if *i < nb.len() {
                let (v, l) = nb[*i];
                *i += 1;
                if !usable(v) || !is_network(f.link(l).class) || l.0 == parent_link[u.idx()] {
                    continue;
                }
                if disc[v.idx()] == u32::MAX {
                    disc[v.idx()] = timer;
                    low[v.idx()] = timer;
                    timer += 1;
                    parent_link[v.idx()] = l.0;
                    seen.push(v);
                    stack.push((v, 0));
                } else {
                    low[u.idx()] = low[u.idx()].min(disc[v.idx()]);
                }
            } else {
                stack.pop();
                if f.node(u).is_gpu() {
                    gpus_below[u.idx()] += 1;
                }
                if let Some(&(p, _)) = stack.last() {
                    low[p.idx()] = low[p.idx()].min(low[u.idx()]);
                    gpus_below[p.idx()] += gpus_below[u.idx()];
                    if low[u.idx()] > disc[p.idx()] {
                        cut_link.push((LinkId(parent_link[u.idx()]), gpus_below[u.idx()]));
                    }
                    if p == root {
                        root_children.push(gpus_below[u.idx()]);
                    } else if low[u.idx()] >= disc[p.idx()] {
                        sep_sum[p.idx()] += gpus_below[u.idx()];
                        sep_max[p.idx()] = sep_max[p.idx()].max(gpus_below[u.idx()]);
                    }
                }
            }
        }
        if root_children.len() > 1 {
            let largest = root_children.iter().copied().max().unwrap_or(0);
            cut_node[root.idx()] = root_children.iter().sum::<u64>() - largest;
        }
        // A failed node leaves its separated subtrees and the rest of the component: the
        // largest piece stays the network, the others are cut off. (Counting the subtrees
        // alone said a plane's only leaf cut off every GPU when all it separated was its
        // plane's spine.)
        let total = gpus_below[root.idx()];
        for v in seen {
            if v != root && sep_sum[v.idx()] > 0 {
                let rest = total - sep_sum[v.idx()];
                cut_node[v.idx()] = sep_sum[v.idx()] + rest - sep_max[v.idx()].max(rest);
            }
        }
    }
    // Bridges cut off the smaller side.
    let mut by_tier: BTreeMap<(u8, String), SpofRow> = BTreeMap::new();
    for (i, &c) in cut_node.iter().enumerate() {
        let v = NodeId(i as u32);
        if c == 0 || f.node(v).is_gpu() {
            continue;
        }
        let tier =
            f.node(v).tier().map(|t| (f.tiers[t as usize].level, f.tiers[t as usize].name.clone())).unwrap_or_default();
        let r =
            by_tier.entry(tier.clone()).or_insert_with(|| SpofRow { element: tier.1, count: 0, max_gpus_isolated: 0 });
        r.count += 1;
        r.max_gpus_isolated = r.max_gpus_isolated.max(c);
    }
    let mut by_class: BTreeMap<LinkClass, SpofRow> = BTreeMap::new();
    for (l, below) in cut_link {
        let cut = below.min(total_gpus.saturating_sub(below));
        let cut = if cut == 0 { below } else { cut };
        if cut == 0 {
            continue;
        }
        let class = f.link(l).class;
        let r = by_class.entry(class).or_insert_with(|| SpofRow {
            element: class.name().into(),
            count: 0,
            max_gpus_isolated: 0,
        });
        r.count += 1;
        r.max_gpus_isolated = r.max_gpus_isolated.max(cut);
    }
    (by_tier.into_values().collect(), by_class.into_values().collect(), components)
}

fn resilience(f: &Fabric, split: &Split, base: u64) -> Resilience {
    let (switch_spofs, link_spofs, components) = spofs(f);
    let mut degradation = Vec::new();
    // One switch of each tier (the first on side A, else the first shared one).
    for (ti, t) in f.tiers.iter().enumerate() {
        if t.level == 0 {
            continue;
        }
        let in_tier = |v: &NodeId| f.node(*v).tier() == Some(ti as u8);
        let pick = f
            .switches()
            .filter(in_tier)
            .find(|v| split.side[v.idx()] == Some(true))
            .or_else(|| f.switches().find(|v| in_tier(v)));
        if let Some(v) = pick {
            let flow = maxflow(f, split, Some(v), None);
            degradation.push(DegradationRow {
                element: format!("one {} switch", t.name),
                removed: f.node(v).name.clone(),
                bisection_bps: flow,
                loss_pct: if base > 0 { 100.0 * (base - flow.min(base)) as f64 / base as f64 } else { 0.0 },
            });
        }
    }
    let mut seen = Vec::new();
    for (i, l) in f.links.iter().enumerate() {
        if matches!(l.class, LinkClass::Nic | LinkClass::Nvlink) || seen.contains(&l.class) {
            continue;
        }
        seen.push(l.class);
        let flow = maxflow(f, split, None, Some(LinkId(i as u32)));
        degradation.push(DegradationRow {
            element: format!("one {} link", l.class.name()),
            removed: format!("{} - {}", f.node(l.a).name, f.node(l.b).name),
            bisection_bps: flow,
            loss_pct: if base > 0 { 100.0 * (base - flow.min(base)) as f64 / base as f64 } else { 0.0 },
        });
    }
    Resilience { switch_spofs, link_spofs, degradation, components }
}
