//! The pure part of the testbed: from a fabric, the namespaces, veth pairs, addresses,
//! routes and rate limits that emulate it ([`plan`]); from a scenario, the flows to run
//! ([`workloads`]); from measurements and predictions, the comparison ([`compare`],
//! [`per_workload`]). Nothing here touches the system, so all of it is tested without root.

use crate::TestbedError;
use meshway_fabric::routing::ShortestPaths;
use meshway_fabric::{Catalog, Fabric, NodeId, Scenario};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

/// Longest namespace name (a file under /run/netns): an assumption well inside NAME_MAX (255).
pub const MAX_NAME: usize = 200;
/// tc's smallest rate (kbit/s), which the scaled link rates must reach.
pub const MIN_TC_KBIT: u64 = 8;

/// Largest fabric `up` builds: namespaces (GPUs + switches) and links.
pub const MAX_NAMESPACES: usize = 128;
pub const MAX_LINKS: usize = 512;
/// Fastest scaled link: all emulated traffic is forwarded by this machine's cores, and a veth
/// pair moves on the order of 10 Gbit/s a core (an assumption; `--scale 1:1` asked tbf for
/// 400 Gbit/s and measured flows 140x slower than predicted).
pub const MAX_TC_BPS: u64 = 40_000_000_000;
/// Next hops in one route: `ip -batch` splits a line into at most 512 words (iproute2's
/// MAXARGS), and each next hop takes five ("nexthop via A dev D") besides the route's own.
pub const MAX_NEXT_HOPS: usize = 100;

/// What `up` created, written before the first command runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub prefix: String,
    pub scenario: String,
    pub scale: u64,
    pub namespaces: Vec<String>,
    /// GPU rank order -> (namespace, address).
    pub gpus: Vec<(String, Ipv4Addr)>,
    /// [`Plan::fingerprint`] of what was built, so `run` and `verify` refuse a scenario that
    /// plans a different fabric (empty in state files written before it was recorded).
    #[serde(default)]
    pub fabric: String,
    /// `false` until `up` has built everything: such a state file is an `up` that was
    /// interrupted (or is still running), whose testbed `run` and `verify` must not use.
    /// Absent in state files written before it was recorded, which are taken as finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
}

/// The pure plan of a testbed.
#[derive(Debug, Clone)]
pub struct Plan {
    pub ns: Vec<String>,
    /// Per namespace, `ip -batch` lines.
    pub ip: BTreeMap<String, Vec<String>>,
    /// Per namespace, `tc -batch` lines.
    pub tc: BTreeMap<String, Vec<String>>,
    /// veth pairs: (link, name a, namespace a, name b, namespace b).
    pub veths: Vec<(u32, String, String, String, String)>,
    pub switches: Vec<String>,
    pub gpus: Vec<(String, Ipv4Addr)>,
}

pub fn ns_name(prefix: &str, f: &Fabric, n: NodeId) -> String {
    let raw: String =
        f.node(n).name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("{prefix}-{raw}")
}

pub fn link_ip(l: u32, side: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + 2 * l + side)
}

pub fn gpu_ip(rank: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 1)) + rank)
}

/// Parses "1:1000".
pub fn parse_scale(s: &str) -> Result<u64, TestbedError> {
    let bad = || TestbedError::BadScale { given: s.to_string() };
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    match (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
        (Ok(1), Ok(n)) if n >= 1 => Ok(n),
        _ => Err(bad()),
    }
}

/// Checks a name prefix: 2 to 6 ASCII letters or digits, so every interface name
/// (`PREFIX<link>a`) fits the kernel's 15 characters.
pub fn check_prefix(prefix: &str) -> Result<(), TestbedError> {
    let ok = (2..=6).contains(&prefix.len()) && prefix.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(TestbedError::BadPrefix { given: prefix.to_string() })
    }
}

/// Ranks in host order, as the simulator numbers them.
pub fn ranks(f: &Fabric, cat: &Catalog) -> Vec<NodeId> {
    let topo = meshway_sim::topo::FabricTopo::new(f, cat, 1);
    (0..meshway_sim::topo::Topology::ranks(&topo) as u32).map(|r| topo.node_of(r)).collect()
}

/// The tbf burst of a link at `bps` (scaled): 2 ms at the rate or 64 KiB, whichever is more
/// (tbf needs at least one MTU). A flow no larger passes at the veth's own speed.
pub fn tbf_burst_bytes(bps: u64) -> u64 {
    (bps / 8 / 500).max(65_536)
}

/// The namespaces, links, addresses, routes and rate limits that emulate `f` with every
/// link rate divided by `scale`. Pure: nothing is created.
pub fn plan(f: &Fabric, cat: &Catalog, prefix: &str, scale: u64) -> Result<Plan, TestbedError> {
    check_prefix(prefix)?;
    let nodes = f.nodes.len();
    if nodes > MAX_NAMESPACES || f.links.len() > MAX_LINKS {
        return Err(TestbedError::TooBig {
            namespaces: nodes,
            links: f.links.len(),
            max_namespaces: MAX_NAMESPACES,
            max_links: MAX_LINKS,
        });
    }
    let rank_nodes = ranks(f, cat);
    let mut rank_of = vec![u32::MAX; nodes];
    for (r, n) in rank_nodes.iter().enumerate() {
        rank_of[n.idx()] = r as u32;
    }
    let name = |n: NodeId| ns_name(prefix, f, n);
    let mut ip: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut tc: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut veths = Vec::new();
    let ns: Vec<String> = (0..nodes as u32).map(|i| name(NodeId(i))).collect();
    let mut seen: BTreeMap<&str, NodeId> = BTreeMap::new();
    for (i, n) in ns.iter().enumerate() {
        if n.len() > MAX_NAME {
            return Err(TestbedError::LongName { node: f.node(NodeId(i as u32)).name.clone(), max: MAX_NAME });
        }
        if let Some(first) = seen.insert(n, NodeId(i as u32)) {
            return Err(TestbedError::NameClash {
                a: f.node(first).name.clone(),
                b: f.node(NodeId(i as u32)).name.clone(),
                namespace: n.clone(),
            });
        }
    }
    if let Some(l) = f.links.iter().find(|l| l.rate.0 / scale / 1000 < MIN_TC_KBIT) {
        return Err(TestbedError::TooSlow {
            link: format!("{} - {}", f.node(l.a).name, f.node(l.b).name),
            bps: l.rate.0 / scale,
            min_kbit: MIN_TC_KBIT,
        });
    }
    if let Some(l) = f.links.iter().find(|l| l.rate.0 / scale > MAX_TC_BPS) {
        return Err(TestbedError::TooFast {
            link: format!("{} - {}", f.node(l.a).name, f.node(l.b).name),
            bps: l.rate.0 / scale,
            max_bps: MAX_TC_BPS,
        });
    }
    for n in &ns {
        ip.entry(n.clone()).or_default().push("link set lo up".into());
    }
    for (i, l) in f.links.iter().enumerate() {
        let i = i as u32;
        let (va, vb) = (format!("{prefix}{i}a"), format!("{prefix}{i}b"));
        let (na, nb) = (name(l.a), name(l.b));
        let rate_kbit = l.rate.0 / scale / 1000;
        // Burst: 2 ms at the rate or 64 KiB, whichever is more (tbf needs at least one MTU).
        let burst = tbf_burst_bytes(rate_kbit * 1000);
        for (ns_, v, me) in [(&na, &va, 0u32), (&nb, &vb, 1u32)] {
            let e = ip.entry(ns_.clone()).or_default();
            e.push(format!("addr add {}/31 dev {v}", link_ip(i, me)));
            e.push(format!("link set {v} up"));
            tc.entry(ns_.clone())
                .or_default()
                .push(format!("qdisc add dev {v} root tbf rate {rate_kbit}kbit burst {burst} latency 10ms"));
        }
        veths.push((i, va, na, vb, nb));
    }
    let mut gpus = Vec::new();
    let mut nvlink_routes: Vec<BTreeMap<u32, Vec<String>>> = Vec::new();
    for (r, &g) in rank_nodes.iter().enumerate() {
        let addr = gpu_ip(r as u32);
        let me = name(g);
        let Some(&(_, first)) = f.neighbors(g).first() else {
            return Err(TestbedError::NoLinks { node: f.node(g).name.clone() });
        };
        let (first, first_is_a) = (first.0, f.link(first).a == g);
        let dev = |l: u32, is_a: bool| format!("{prefix}{l}{}", if is_a { "a" } else { "b" });
        let hop = |l: u32, is_a: bool| format!("nexthop via {} dev {}", link_ip(l, u32::from(is_a)), dev(l, is_a));
        let e = ip.entry(me.clone()).or_default();
        e.push(format!("addr add {addr}/32 dev {}", dev(first, first_is_a)));
        // A GPU of the same host is reached over the NVLink switch, as the simulator routes
        // it (never through the NIC); every other GPU by the links on the shortest paths to
        // it (below). GPUs do not forward.
        let host_of = |n: NodeId| match f.node(n).kind {
            meshway_fabric::NodeKind::Gpu { host, .. } => Some(host),
            _ => None,
        };
        let mut nvl: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for &(v, l) in f.neighbors(g) {
            if f.node(v).is_gpu() || f.link(l).class != meshway_fabric::LinkClass::Nvlink {
                continue;
            }
            let is_a = f.link(l).a == g;
            for &(w, l2) in f.neighbors(v) {
                let same_host = host_of(w).is_some() && host_of(w) == host_of(g);
                let nvlink = f.link(l2).class == meshway_fabric::LinkClass::Nvlink;
                if w != g && same_host && nvlink && rank_of[w.idx()] != u32::MAX {
                    nvl.entry(rank_of[w.idx()]).or_default().push(hop(l.0, is_a));
                }
            }
        }
        nvlink_routes.push(nvl);
        gpus.push((me, addr));
    }
    // Switch routes: per GPU, the equal-cost next hops toward it.
    let sw_lat = meshway_fabric::routing::switch_latencies(f, cat);
    let switches: Vec<NodeId> = f.switches().collect();
    for (r, &g) in rank_nodes.iter().enumerate() {
        let sp = ShortestPaths::from(f, g, &sw_lat, cat.constants.fiber_delay_per_km);
        // Every other GPU (from its own address) and every switch, toward `g`.
        let others = rank_nodes.iter().enumerate().filter(|&(r2, _)| r2 != r).map(|(r2, &g2)| (g2, Some(r2)));
        for (u, rank) in others.chain(switches.iter().map(|&s| (s, None))) {
            let mut hops: Vec<String> = match rank.and_then(|r2| nvlink_routes[r2].get(&(r as u32))) {
                Some(h) => h.clone(),
                None => sp
                    .next_hops_toward_source(f, u)
                    .map(|(_, l)| {
                        let is_a = f.link(l).a == u;
                        format!(
                            "nexthop via {} dev {prefix}{}{}",
                            link_ip(l.0, u32::from(is_a)),
                            l.0,
                            if is_a { "a" } else { "b" }
                        )
                    })
                    .collect(),
            };
            hops.sort();
            hops.dedup();
            if hops.is_empty() {
                continue;
            }
            if hops.len() > MAX_NEXT_HOPS {
                return Err(TestbedError::TooManyNextHops {
                    node: f.node(u).name.clone(),
                    gpu: f.node(g).name.clone(),
                    hops: hops.len(),
                    max: MAX_NEXT_HOPS,
                });
            }
            let src = rank.map(|r2| format!(" src {}", gpu_ip(r2 as u32))).unwrap_or_default();
            ip.entry(name(u)).or_default().push(format!("route add {}/32{src} {}", gpu_ip(r as u32), hops.join(" ")));
        }
    }
    Ok(Plan { ns, ip, tc, veths, switches: switches.iter().map(|&s| name(s)).collect(), gpus })
}

impl Plan {
    /// A digest of everything `up` builds from this plan (names, addresses, routes, rate
    /// limits): FNV-1a, 64 bits, as hex. Two scenarios with the same fingerprint build the
    /// same testbed.
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |t: &str| {
            for b in t.bytes().chain([0u8]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for n in &self.ns {
            eat(n);
        }
        for (n, lines) in self.ip.iter().chain(&self.tc) {
            eat(n);
            lines.iter().for_each(|l| eat(l));
        }
        for (n, a) in &self.gpus {
            eat(n);
            eat(&a.to_string());
        }
        format!("{h:016x}")
    }
}

/// One flow to run: ranks, bytes, phase (phases run one after another).
#[derive(Debug, Clone, Serialize)]
pub struct FlowRun {
    pub src: u32,
    pub dst: u32,
    pub bytes: u64,
    pub phase: u32,
    pub workload: String,
    /// Measured: sender start and receiver's last byte (µs, realtime clock of this machine).
    pub start_us: u64,
    pub end_us: u64,
    pub sport: u16,
    pub dport: u16,
}

impl FlowRun {
    /// Measured completion time: the receiver's last byte after the sender's start.
    pub fn fct_us(&self) -> u64 {
        self.end_us.saturating_sub(self.start_us)
    }
}

/// The scenario's workloads as phases of flows (sizes as given; the rates are scaled, not the
/// sizes). Kinds: permutation, incast, all-to-all, flows (without dependencies) and the ring
/// all-reduce collective (2(n-1) dependent phases of S/n).
pub fn workloads(file: &Path, s: &Scenario, f: &Fabric, cat: &Catalog) -> Result<Vec<FlowRun>, TestbedError> {
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let read = move |name: &str| -> Result<String, String> {
        let p = dir.join(name);
        meshway_units::files::read_text(&p).map_err(|e| format!("cannot read flow file {}: {e}", p.display()))
    };
    let setup = meshway_sim::simulate::Setup { scenario: s, catalog: cat, fabric: f, read_file: &read };
    // The simulator parses and validates the workloads; we take its program per workload.
    let progs = meshway_sim::simulate::workload_flows(&setup)?;
    let mut out = Vec::new();
    let mut phase = 0;
    for (name, phases) in progs {
        for p in phases {
            for (src, dst, bytes) in p {
                out.push(FlowRun {
                    src,
                    dst,
                    bytes,
                    phase,
                    workload: name.clone(),
                    start_us: 0,
                    end_us: 0,
                    sport: 0,
                    dport: 0,
                });
            }
            phase += 1;
        }
    }
    if out.is_empty() {
        return Err(TestbedError::NoFlows);
    }
    Ok(out)
}

/// Measured vs predicted for one flow.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub workload: String,
    pub phase: u32,
    pub src: String,
    pub dst: String,
    pub bytes: u64,
    pub path: Vec<String>,
    /// Start after the first flow of its phase started.
    pub start_offset_us: u64,
    pub measured_us: u64,
    pub predicted_us: u64,
    pub error: f64,
    /// No larger than tbf's burst on its path: it is not rate-limited, so its error says
    /// little about the model.
    pub within_burst: bool,
}

/// Measured vs predicted for a whole workload: the sum over its phases of the phase's span
/// (latest start offset + completion).
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadCompared {
    pub workload: String,
    pub flows: usize,
    pub measured_us: u64,
    pub predicted_us: u64,
    pub error: f64,
}

pub fn per_workload(rows: &[Compared]) -> Vec<WorkloadCompared> {
    let mut out: Vec<WorkloadCompared> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for r in rows {
        if !names.contains(&r.workload.as_str()) {
            names.push(&r.workload);
        }
    }
    for n in names {
        let mine: Vec<&Compared> = rows.iter().filter(|r| r.workload == n).collect();
        let mut phases: Vec<u32> = mine.iter().map(|r| r.phase).collect();
        phases.dedup();
        let span = |f: &dyn Fn(&Compared) -> u64| -> u64 {
            phases
                .iter()
                .map(|&p| mine.iter().filter(|r| r.phase == p).map(|r| r.start_offset_us + f(r)).max().unwrap_or(0))
                .sum()
        };
        let (m, p) = (span(&|r| r.measured_us), span(&|r| r.predicted_us));
        out.push(WorkloadCompared {
            workload: n.to_string(),
            flows: mine.len(),
            measured_us: m,
            predicted_us: p,
            error: if p == 0 { 0.0 } else { (m as f64 - p as f64) / p as f64 },
        });
    }
    out
}

/// Measured against predicted, flow by flow. `paths[i]` is flow i's path as (link, leaves
/// from side a); `predicted_ns[i]` its simulated completion time on those paths.
pub fn compare(
    f: &Fabric,
    cat: &Catalog,
    scale: u64,
    flows: &[FlowRun],
    paths: &[Vec<(u32, bool)>],
    predicted_ns: &[u64],
) -> Vec<Compared> {
    let phase_start = phase_starts(flows);
    let names = ranks(f, cat);
    flows
        .iter()
        .zip(paths)
        .zip(predicted_ns)
        .map(|((fl, p), &pred)| {
            let m = fl.fct_us();
            let pu = pred.div_ceil(1000);
            let slowest = p.iter().map(|&(l, _)| f.link(meshway_fabric::LinkId(l)).rate.0 / scale.max(1)).min();
            Compared {
                workload: fl.workload.clone(),
                phase: fl.phase,
                src: f.node(names[fl.src as usize]).name.clone(),
                dst: f.node(names[fl.dst as usize]).name.clone(),
                bytes: fl.bytes,
                path: p
                    .iter()
                    .map(|&(l, a)| {
                        let link = f.link(meshway_fabric::LinkId(l));
                        f.node(if a { link.a } else { link.b }).name.clone()
                    })
                    .chain(std::iter::once(f.node(names[fl.dst as usize]).name.clone()))
                    .collect(),
                start_offset_us: fl.start_us - phase_start[fl.phase as usize],
                measured_us: m,
                predicted_us: pu,
                error: if pu == 0 { 0.0 } else { (m as f64 - pu as f64) / pu as f64 },
                within_burst: slowest.is_some_and(|r| fl.bytes <= tbf_burst_bytes(r)),
            }
        })
        .collect()
}

/// The earliest measured start of each phase (flows of a phase start a few milliseconds
/// apart: process start-up).
pub fn phase_starts(flows: &[FlowRun]) -> Vec<u64> {
    let phases = flows.iter().map(|x| x.phase).max().unwrap_or(0) as usize + 1;
    let mut phase_start = vec![u64::MAX; phases];
    for fl in flows {
        phase_start[fl.phase as usize] = phase_start[fl.phase as usize].min(fl.start_us);
    }
    phase_start
}

/// The simulator's inputs for measured flows on the paths the kernel chose, each starting
/// at its measured offset within its phase.
pub fn fixed_flows(flows: &[FlowRun], paths: &[Vec<(u32, bool)>]) -> Vec<meshway_sim::simulate::FixedFlow> {
    let phase_start = phase_starts(flows);
    flows
        .iter()
        .zip(paths)
        .map(|(fl, p)| meshway_sim::simulate::FixedFlow {
            src: fl.src,
            dst: fl.dst,
            bytes: fl.bytes,
            phase: fl.phase,
            start: meshway_units::Nanos((fl.start_us - phase_start[fl.phase as usize]) * 1000),
            arcs: p.iter().map(|&(l, a)| 2 * l + u32::from(!a)).collect(),
        })
        .collect()
}

/// What the simulator expects each phase of a run to take (µs): its flows together at the
/// scaled rates, on the paths the simulator's ECMP hash picks (the kernel hashes its own,
/// so collisions may differ), with no time for starting the workers. A real run is slower:
/// TCP does not fill a link as the fluid model does, and each flow starts two processes.
pub fn expected_phase_us(f: &Fabric, cat: &Catalog, scale: u64, flows: &[FlowRun]) -> Result<Vec<u64>, TestbedError> {
    use meshway_sim::topo::{Choice, FabricTopo, Topology};
    let scaled = scaled(f, scale);
    let mut topo = FabricTopo::new(&scaled, cat, 1);
    let mut inputs = Vec::with_capacity(flows.len());
    for (i, fl) in flows.iter().enumerate() {
        let arcs =
            topo.path(fl.src, fl.dst, Choice::Hash(meshway_sim::topo::mix(i as u64)), None).ok_or_else(|| {
                TestbedError::NoPath {
                    namespace: format!("rank {}", fl.src),
                    dst: format!("rank {}", fl.dst),
                    hops: f.nodes.len(),
                }
            })?;
        inputs.push(meshway_sim::simulate::FixedFlow {
            src: fl.src,
            dst: fl.dst,
            bytes: fl.bytes,
            phase: fl.phase,
            start: meshway_units::Nanos::ZERO,
            arcs: arcs.iter().map(|a| a.0).collect(),
        });
    }
    let ns = meshway_sim::simulate::simulate_fixed(&scaled, cat, &inputs, testbed_wire())?;
    let phases = flows.iter().map(|x| x.phase).max().map_or(0, |p| p as usize + 1);
    let mut out = vec![0u64; phases];
    for (fl, d) in flows.iter().zip(ns) {
        let p = &mut out[fl.phase as usize];
        *p = (*p).max(d.div_ceil(1000));
    }
    Ok(out)
}

/// `f` with every link rate divided by `scale`, as the testbed runs it.
pub fn scaled(f: &Fabric, scale: u64) -> Fabric {
    let mut scaled = f.clone();
    for l in &mut scaled.links {
        l.rate = meshway_units::BitsPerSec(l.rate.0 / scale);
    }
    scaled
}

/// The hop the kernel takes out of one namespace, from `ip -j route get` output: the link
/// and whether it leaves from side a.
pub fn hop_from_route(json: &str, prefix: &str, namespace: &str, dst: &str) -> Result<(u32, bool), TestbedError> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| TestbedError::Worker { what: format!("ip route get in {namespace}: {e}") })?;
    let dev = v[0]["dev"]
        .as_str()
        .ok_or_else(|| TestbedError::NoRoute { namespace: namespace.to_string(), dst: dst.to_string() })?;
    // dev = PREFIX<link>(a|b): we leave on that link from side a or b.
    let rest = dev.strip_prefix(prefix).unwrap_or("");
    let (num, side) = rest.split_at(rest.len().saturating_sub(1));
    let l: u32 = num
        .parse()
        .map_err(|_| TestbedError::UnexpectedInterface { dev: dev.to_string(), namespace: namespace.to_string() })?;
    if side != "a" && side != "b" {
        return Err(TestbedError::UnexpectedInterface { dev: dev.to_string(), namespace: namespace.to_string() });
    }
    Ok((l, side == "a"))
}

/// The emulated medium: veth with a 1500-byte MTU, TCP with timestamps: 1448 payload bytes
/// in 1514 bytes counted by tbf (Ethernet 14 + IPv4 20 + TCP 32). Measured times start after
/// the connection is set up, so there is no per-message alpha.
pub fn testbed_wire() -> meshway_sim::exec::Wire {
    meshway_sim::exec::Wire { mtu: 1448, header: 66, alpha: meshway_units::Nanos(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_BY_TWO: &str = "[fabric]\nkind = \"leaf-spine\"\ngpus = 4\ngpus-per-host = 1\nleaf-radix = 4\nspine-radix = 4\nspines = 2\n[transport]\nkind = \"tcp\"\n";

    fn fabric(text: &str) -> (Fabric, Catalog) {
        let cat = Catalog::builtin();
        let s = Scenario::parse(text, "t.toml").unwrap();
        (s.build(&cat).unwrap(), cat)
    }

    #[test]
    fn names_that_clash_or_run_long_and_rates_below_tc_are_refused() {
        let custom = |a: &str, b: &str| {
            format!(
                "[fabric]\nkind = \"custom\"\n[[fabric.node]]\nname = \"{a}\"\nkind = \"gpu\"\n\
                 [[fabric.node]]\nname = \"{b}\"\nkind = \"gpu\"\n[[fabric.node]]\nname = \"sw\"\nkind = \"switch\"\n\
                 [[fabric.link]]\na = \"{a}\"\nb = \"sw\"\nrate = \"100Gbps\"\n\
                 [[fabric.link]]\na = \"{b}\"\nb = \"sw\"\nrate = \"100Gbps\"\n"
            )
        };
        // 101 parallel links: one route more than an `ip -batch` line can hold.
        let many = custom("a", "b").replace("kind = \"switch\"", "kind = \"switch\"\nradix = 256")
            + &"[[fabric.link]]\na = \"a\"\nb = \"sw\"\nrate = \"100Gbps\"\n".repeat(100);
        let (f, cat) = fabric(&many);
        let e = plan(&f, &cat, "tb", 1000).unwrap_err().to_string();
        assert!(e.contains("has 101 equal-cost next hops toward a") && e.contains("at most 100"), "{e}");
        let (f, cat) = fabric(&custom("gpu.0", "gpu_0"));
        let e = plan(&f, &cat, "tb", 1000).unwrap_err().to_string();
        assert!(e.contains("\"gpu.0\" and \"gpu_0\" both map to namespace \"tb-gpu_0\""), "{e}");
        let (f, cat) = fabric(&custom(&"g".repeat(250), "h"));
        let e = plan(&f, &cat, "tb", 1000).unwrap_err().to_string();
        assert!(e.contains("longer than 200 bytes"), "{e}");
        let (f, cat) = fabric(&custom("a", "b"));
        assert!(plan(&f, &cat, "tb", 1000).is_ok());
        // 100 Gbit/s at 1:20,000,000 is 5 kbit/s, below tc's 8.
        let e = plan(&f, &cat, "tb", 20_000_000).unwrap_err().to_string();
        assert!(e.contains("at 5000 bit/s, below tc's smallest rate (8 kbit/s)"), "{e}");
    }

    #[test]
    fn a_run_is_expected_to_take_its_phases_transfers_at_the_scaled_rates() {
        let (f, cat) = fabric(
            "[fabric]\nkind = \"custom\"\n[[fabric.node]]\nname = \"a\"\nkind = \"gpu\"\n\
             [[fabric.node]]\nname = \"b\"\nkind = \"gpu\"\n[[fabric.node]]\nname = \"c\"\nkind = \"gpu\"\n\
             [[fabric.node]]\nname = \"sw\"\nkind = \"switch\"\n\
             [[fabric.link]]\na = \"a\"\nb = \"sw\"\nrate = \"100Gbps\"\n\
             [[fabric.link]]\na = \"b\"\nb = \"sw\"\nrate = \"100Gbps\"\n\
             [[fabric.link]]\na = \"c\"\nb = \"sw\"\nrate = \"100Gbps\"\n",
        );
        let flow = |src, dst, phase| FlowRun {
            src,
            dst,
            bytes: 1 << 20,
            phase,
            workload: "w".into(),
            start_us: 0,
            end_us: 0,
            sport: 0,
            dport: 0,
        };
        // Phase 0: a -> b alone; phase 1: a -> c and b -> c share c's link.
        let flows = [flow(0, 1, 0), flow(0, 2, 1), flow(1, 2, 1)];
        let us = expected_phase_us(&f, &cat, 1000, &flows).unwrap();
        assert_eq!(us.len(), 2);
        // 1 MiB in 725 segments of 1448 bytes, 66 bytes of headers each, at 100 Mbit/s:
        // 87,714 us, and the last segment's 121 us on the second link.
        let alone = 8.0 * ((1u64 << 20) + 725 * 66) as f64 / 100.0;
        assert!((us[0] as f64 - alone - 121.0).abs() < 20.0, "{us:?} against {alone:.0} us + 121 us");
        let ratio = us[1] as f64 / us[0] as f64;
        assert!((ratio - 2.0).abs() < 0.01, "two flows on one link take twice as long: {us:?}");
        // Same input, same answer; a tenth of the scale, a tenth of the time.
        assert_eq!(us, expected_phase_us(&f, &cat, 1000, &flows).unwrap());
        let fast = expected_phase_us(&f, &cat, 100, &flows).unwrap();
        assert!((us[0] as f64 / fast[0] as f64 - 10.0).abs() < 0.1, "{us:?} {fast:?}");
    }

    #[test]
    fn the_fingerprint_follows_what_is_built() {
        let (f, cat) = fabric(TWO_BY_TWO);
        let a = plan(&f, &cat, "tb", 1000).unwrap().fingerprint();
        assert_eq!(a, plan(&f, &cat, "tb", 1000).unwrap().fingerprint(), "deterministic");
        assert_eq!(a.len(), 16);
        assert_ne!(a, plan(&f, &cat, "tb", 100).unwrap().fingerprint(), "another scale");
        let (g, cat) = fabric(&TWO_BY_TWO.replace("spines = 2", "spines = 1"));
        assert_ne!(a, plan(&g, &cat, "tb", 1000).unwrap().fingerprint(), "another fabric, same GPUs");
    }

    #[test]
    fn a_two_by_two_leaf_spine_becomes_eight_namespaces_and_eight_veth_pairs() {
        let (f, cat) = fabric(TWO_BY_TWO);
        let p = plan(&f, &cat, "tb", 1000).unwrap();
        // 4 GPUs + 2 leaves + 2 spines; 4 host links + 2 x 2 leaf-spine links.
        assert_eq!(p.ns.len(), 8);
        assert_eq!(p.veths.len(), 8);
        assert_eq!(p.switches.len(), 4);
        assert!(p.ns.iter().all(|n| n.starts_with("tb-")));
        // GPU r gets 10.64.0.(1 + r) on its first NIC.
        let addrs: Vec<String> = p.gpus.iter().map(|(_, a)| a.to_string()).collect();
        assert_eq!(addrs, ["10.64.0.1", "10.64.0.2", "10.64.0.3", "10.64.0.4"]);
        // Every veth end rate-limited at 400 Gbps / 1000 = 400,000 kbit.
        let tbf: Vec<&String> = p.tc.values().flatten().collect();
        assert_eq!(tbf.len(), 16);
        assert!(tbf.iter().all(|l| l.contains("tbf rate 400000kbit")), "{tbf:?}");
        // Link 0's ends take 10.128.0.0/31 and 10.128.0.1/31.
        let all_ip: Vec<&String> = p.ip.values().flatten().collect();
        assert!(all_ip.iter().any(|l| l.as_str() == "addr add 10.128.0.0/31 dev tb0a"));
        assert!(all_ip.iter().any(|l| l.as_str() == "addr add 10.128.0.1/31 dev tb0b"));
        // A leaf reaches a GPU of the other leaf over both spines (ECMP), and its own GPU
        // directly; a spine has one next hop to every GPU.
        for sw in &p.switches {
            let routes: Vec<&String> = p.ip[sw].iter().filter(|l| l.starts_with("route add 10.64.")).collect();
            assert_eq!(routes.len(), 4, "{sw}: one route per GPU");
            let hops: Vec<usize> = routes.iter().map(|r| r.matches("nexthop").count()).collect();
            if sw.contains("leaf") {
                let mut h = hops.clone();
                h.sort();
                assert_eq!(h, [1, 1, 2, 2], "{sw}: {routes:?}");
            } else {
                assert_eq!(hops, [1, 1, 1, 1], "{sw}: {routes:?}");
            }
        }
    }

    /// Two GPUs per host: each GPU reaches the other host's GPUs by its NIC only (an NVLink
    /// switch reaches no other host), and its host peer over NVLink. A
    /// hand-listed chain a - b - c gives a and c a direct route to b and nothing further.
    #[test]
    fn gpus_route_other_hosts_by_their_nics_and_their_host_peer_over_nvlink() {
        let (f, cat) = fabric(&TWO_BY_TWO.replace("gpus-per-host = 1", "gpus-per-host = 2"));
        let p = plan(&f, &cat, "tb", 1000).unwrap();
        let nvlink: Vec<String> = f
            .links
            .iter()
            .enumerate()
            .filter(|(_, l)| l.class == meshway_fabric::LinkClass::Nvlink)
            .map(|(i, _)| format!("tb{i}a"))
            .collect();
        assert_eq!(nvlink.len(), 4);
        for (r, (ns, addr)) in p.gpus.iter().enumerate() {
            let routes: Vec<&String> = p.ip[ns].iter().filter(|l| l.starts_with("route add")).collect();
            assert_eq!(routes.len(), 3, "{ns}: one route per other GPU: {routes:?}");
            for (r2, route) in (0..4).filter(|&x| x != r).zip(&routes) {
                assert!(route.starts_with(&format!("route add {}/32 src {addr} ", gpu_ip(r2 as u32))), "{route}");
                assert_eq!(route.matches("nexthop").count(), 1, "{route}");
                let over_nvlink = nvlink.iter().any(|d| route.ends_with(&format!("dev {d}")));
                assert_eq!(over_nvlink, r2 == (r ^ 1), "{route}");
            }
        }
        let chain = "[fabric]\nkind = \"custom\"\n\
            [[fabric.node]]\nname = \"a\"\nkind = \"gpu\"\n[[fabric.node]]\nname = \"b\"\nkind = \"gpu\"\n\
            [[fabric.node]]\nname = \"c\"\nkind = \"gpu\"\n\
            [[fabric.link]]\na = \"a\"\nb = \"b\"\nrate = \"10Gbps\"\n[[fabric.link]]\na = \"b\"\nb = \"c\"\nrate = \"10Gbps\"\n\
            [transport]\nkind = \"tcp\"\n";
        let (f, cat) = fabric(chain);
        let p = plan(&f, &cat, "tb", 1000).unwrap();
        let routes = |ns: &str| -> Vec<String> {
            p.ip[ns]
                .iter()
                .filter(|l| l.starts_with("route add"))
                .map(|l| l.split(" src ").next().unwrap().to_string())
                .collect()
        };
        let (a, b, c) = (&p.gpus[0].0, &p.gpus[1].0, &p.gpus[2].0);
        assert_eq!(routes(a), [format!("route add {}/32", gpu_ip(1))]);
        assert_eq!(routes(b), [format!("route add {}/32", gpu_ip(0)), format!("route add {}/32", gpu_ip(2))]);
        assert_eq!(routes(c), [format!("route add {}/32", gpu_ip(1))]);
    }

    #[test]
    fn too_big_fabrics_bad_scales_and_prefixes_are_refused() {
        let (f, cat) = fabric("[fabric]\nkind = \"fat-tree\"\nk = 16\n");
        let e = plan(&f, &cat, "tb", 1000).unwrap_err().to_string();
        assert!(e.starts_with("fabric too big for a testbed on this machine: "), "{e}");
        assert!(e.contains("the limit is 128 namespaces and 512 links"), "{e}");
        assert_eq!(parse_scale("1:1000").unwrap(), 1000);
        assert_eq!(parse_scale(" 1 : 50 ").unwrap(), 50);
        for bad in ["1000", "2:1000", "1:0", "1:x", ""] {
            let e = parse_scale(bad).unwrap_err().to_string();
            assert_eq!(e, format!("--scale: expected \"1:N\" with N >= 1 such as \"1:1000\", got {bad:?}"));
        }
        for bad in ["a", "toolong7", "ab-c", ""] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
        assert!(check_prefix("mw").is_ok() && check_prefix("abc123").is_ok());
        let (f, cat) = fabric(TWO_BY_TWO);
        assert!(plan(&f, &cat, "x", 1).is_err());
        // 400 Gbps at 1:1 or 1:5 is beyond the cores; 1:10 is 40 Gbps, the most.
        let e = plan(&f, &cat, "tb", 5).unwrap_err().to_string();
        assert!(
            e.contains("at 80Gbps, beyond what this machine's cores can forward") && e.contains("40Gbps at most"),
            "{e}"
        );
        assert!(plan(&f, &cat, "tb", 10).is_ok());
    }

    #[test]
    fn kernel_route_output_names_the_link_and_side() {
        let j = r#"[{"dst":"10.64.0.3","gateway":"10.128.0.5","dev":"tb12b","prefsrc":"10.64.0.1","flags":[],"uid":0,"cache":[]}]"#;
        assert_eq!(hop_from_route(j, "tb", "tb-gpu-0", "10.64.0.3").unwrap(), (12, false));
        let e = hop_from_route("[{}]", "tb", "tb-gpu-0", "10.64.0.3").unwrap_err().to_string();
        assert_eq!(e, "no route from tb-gpu-0 to 10.64.0.3");
        let e = hop_from_route(r#"[{"dev":"eth0"}]"#, "tb", "tb-gpu-0", "x").unwrap_err().to_string();
        assert_eq!(e, "unexpected interface eth0 in tb-gpu-0");
        assert!(hop_from_route("not json", "tb", "n", "x").is_err());
    }

    fn flow(src: u32, dst: u32, phase: u32, start_us: u64, end_us: u64) -> FlowRun {
        FlowRun { src, dst, bytes: 1 << 20, phase, workload: "w".into(), start_us, end_us, sport: 0, dport: 0 }
    }

    #[test]
    fn comparison_offsets_starts_within_a_phase_and_sums_phase_spans() {
        let (f, cat) = fabric(TWO_BY_TWO);
        let flows = [flow(0, 1, 0, 1_000, 3_000), flow(2, 3, 0, 1_500, 3_000), flow(0, 2, 1, 9_000, 10_000)];
        let paths = vec![vec![(0, true)], vec![(1, true)], vec![(2, true)]];
        let fixed = fixed_flows(&flows, &paths);
        assert_eq!(fixed.iter().map(|x| x.start.0).collect::<Vec<_>>(), [0, 500_000, 0]);
        assert_eq!(fixed[0].arcs, [0]);
        let rows = compare(&f, &cat, 1000, &flows, &paths, &[2_500_000, 1_000_000, 1_000_000]);
        assert_eq!(rows.iter().map(|r| r.measured_us).collect::<Vec<_>>(), [2_000, 1_500, 1_000]);
        assert_eq!(rows[0].predicted_us, 2_500);
        assert!((rows[0].error - (-0.2)).abs() < 1e-12);
        assert_eq!(rows[1].start_offset_us, 500);
        let w = per_workload(&rows);
        assert_eq!(w.len(), 1);
        // Phase 0 spans max(0 + 2000, 500 + 1500) = 2000 measured, max(2500, 500 + 1000) = 2500
        // predicted; phase 1 adds 1000 and 1000.
        assert_eq!((w[0].measured_us, w[0].predicted_us, w[0].flows), (3_000, 3_500, 3));
        // 1 MiB over 400 Mbit/s links (400 Gbps at 1:1000): the burst is 100 KB, so the flow is
        // rate-limited; at 1:10 (40 Gbit/s, a 10 MB burst) it is not.
        assert_eq!(tbf_burst_bytes(400_000_000), 100_000);
        assert!(rows.iter().all(|r| !r.within_burst));
        let rows = compare(&f, &cat, 10, &flows, &paths, &[2_500_000, 1_000_000, 1_000_000]);
        assert!(rows.iter().all(|r| r.within_burst));
    }

    #[test]
    fn scaling_divides_every_link_rate() {
        let (f, _) = fabric(TWO_BY_TWO);
        let s = scaled(&f, 1000);
        assert!(f.links.iter().zip(&s.links).all(|(a, b)| b.rate.0 * 1000 == a.rate.0));
    }
}
