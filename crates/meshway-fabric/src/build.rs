//! Fabric builders: three-tier tree, leaf-spine, fat-tree, rail-optimized (each optionally
//! multi-plane), multi-site joined by DCI links, and custom.
//!
//! Every GPU has its own NIC. With `planes` > 1 each NIC has one port of `nic / planes` into
//! each plane, and each plane is a full copy of the switch fabric. GPUs of one host share an
//! NVLink switch (`gpus-per-host` > 1) with `nvlink` bandwidth per GPU.

use crate::catalog::Catalog;
use crate::config::{CustomNodeKind, FabricConfig, FabricKind, SplitConfig, TaperAt};
use crate::error::{closest, FabricError};
use crate::model::{Fabric, Group, LinkClass, NodeId, NodeKind, ScaleUp};
use crate::scenario::{Ctx, Scenario};
use meshway_units::{BitsPerSec, Meters, Ratio};
use std::collections::{BTreeMap, BTreeSet};

impl Scenario {
    /// Validates and builds the fabric against `catalog`. (Written here, beside the builders,
    /// so that the scenario module does not depend on them.)
    pub fn build(&self, catalog: &Catalog) -> Result<Fabric, FabricError> {
        let mut f = build_scenario(self, catalog)?;
        f.name = self.name.clone();
        // A transport profile with its own hop latency (InfiniBand's) sets the switches'
        // where the scenario does not: for plan and simulate alike.
        let kind = self.config.transport.as_ref().map(|t| t.kind).unwrap_or_default();
        if let Some(hop) = catalog.transport_profile(kind.name()).and_then(|p| p.hop_latency) {
            for site in 0..f.sites.len().max(1) as u16 {
                if f.site_switch_latency(site).is_none() {
                    f.switch_latency.push((site, hop));
                }
            }
        }
        Ok(f)
    }
}

/// The largest fabric meshway builds in memory.
pub const MAX_GPUS: u32 = 2_000_000;

/// Cable lengths per link role.
#[derive(Debug, Clone, Copy)]
struct Lengths {
    host_leaf: Meters,
    leaf_spine: Meters,
    spine_core: Meters,
    border: Meters,
}

/// Values common to the built-in families, resolved against defaults and the catalog.
#[derive(Debug, Clone)]
struct Params {
    kind: FabricKind,
    gpus: u32,
    gph: u32,
    planes: u32,
    /// NIC rate per plane.
    port_rate: BitsPerSec,
    uplink: BitsPerSec,
    nvlink: BitsPerSec,
    /// NVLink domains larger than a host (`nvlink-domain`).
    scale_up: Option<ScaleUp>,
    host_cage_rate: Option<BitsPerSec>,
    /// Leaves each NIC port reaches (2: dual-homed to a leaf pair, at half rate each).
    homes: u32,
    /// Leaf ports held for spare hosts.
    backup: u32,
    /// Leaf ports cabled to management appliances, in the whole fabric.
    management: u32,
    models: [u16; 3],
    radix: [u32; 3],
    lengths: Lengths,
}

/// A leaf, spine or core model: any [[switch]] but the scale-up switches the builder puts
/// inside hosts and NVLink domains (one built Ethernet leaves of NVSwitches and billed them
/// at $0).
fn network_model(cat: &Catalog, ctx: &Ctx, key: &str, name: &Option<String>) -> Result<u16, FabricError> {
    let n = name.as_deref().unwrap_or(&cat.defaults.switch_model);
    if n == "nvswitch" || cat.defaults.nvlink_domain_switch.as_deref() == Some(n) {
        return Err(ctx.invalid(
            key,
            format!("{n:?} is an NVLink (scale-up) switch, not a network switch: name an Ethernet or InfiniBand [[switch]] model"),
        ));
    }
    model(cat, ctx, key, name)
}

fn model(cat: &Catalog, ctx: &Ctx, key: &str, name: &Option<String>) -> Result<u16, FabricError> {
    let name = name.as_deref().unwrap_or(&cat.defaults.switch_model);
    cat.switch_index(name).ok_or_else(|| {
        let names = cat.switch_names();
        let hint = closest(name, &names).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
        ctx.invalid(key, format!("unknown switch model {name:?}, expected one of {}{hint}", names.join(", ")))
    })
}

fn resolve(fc: &FabricConfig, cat: &Catalog, ctx: &Ctx) -> Result<Params, FabricError> {
    let gph = fc.gpus_per_host.unwrap_or(cat.defaults.gpus_per_host);
    if gph == 0 || gph > 1024 {
        return Err(ctx.invalid("gpus-per-host", format!("expected 1 to 1024, got {gph}")));
    }
    let planes = fc.planes.unwrap_or(1);
    if planes == 0 || planes > 16 {
        return Err(ctx.invalid("planes", format!("expected 1 to 16, got {planes}")));
    }
    let nic = fc.nic.unwrap_or(cat.defaults.nic);
    if nic.0 > MAX_RATE_BPS {
        return Err(ctx.invalid("nic", format!("expected at most 100Tbps, got {nic}")));
    }
    if nic.0 == 0 || !nic.0.is_multiple_of(u64::from(planes)) {
        return Err(ctx.invalid("nic", format!("expected a positive rate divisible by planes ({planes}), got {nic}")));
    }
    let port_rate = BitsPerSec(nic.0 / u64::from(planes));
    let homes = if fc.dual_homed == Some(true) { 2 } else { 1 };
    if homes == 2 && !port_rate.0.is_multiple_of(2) {
        return Err(ctx.invalid("dual-homed", format!("the NIC port rate {port_rate} does not split in two")));
    }
    let host_rate = BitsPerSec(port_rate.0 / u64::from(homes));
    let backup = fc.backup_ports.unwrap_or(0);
    let uplink = fc.uplink.unwrap_or(port_rate);
    if uplink.0 == 0 {
        return Err(ctx.invalid("uplink", "expected a positive rate"));
    }
    // Ports on leaves for management appliances, fabric-wide: at most 65,536 (an assumption
    // far above any fabric; 4e9 planned 859 MW of appliances with only a warning).
    if let Some(m) = fc.management_ports.filter(|m| *m > 65_536) {
        return Err(ctx.invalid("management-ports", format!("expected 0 to 65536, got {m}")));
    }
    let nvlink = fc.nvlink.unwrap_or(cat.defaults.nvlink_per_gpu);
    if nvlink.0 == 0 || nvlink.0 > MAX_RATE_BPS {
        return Err(ctx.invalid("nvlink", format!("expected a positive rate of at most 100Tbps, got {nvlink}")));
    }
    let gpus = match (fc.gpus, fc.kind, fc.k) {
        (Some(g), _, _) => g,
        (None, FabricKind::FatTree, Some(k)) if k < 2 || k % 2 != 0 => {
            return Err(ctx.invalid("k", format!("expected an even radix of at least 2, got {k}")))
        }
        (None, FabricKind::FatTree, Some(k)) => {
            let h = u64::from(k).pow(3) / 4;
            u32::try_from(h).ok().filter(|h| *h <= MAX_GPUS).ok_or_else(|| FabricError::TooLarge {
                file: ctx.file.into(),
                message: format!("k = {k} gives {h} GPUs; meshway builds at most {MAX_GPUS}"),
            })?
        }
        (None, FabricKind::FatTree, None) => return Err(ctx.invalid("gpus", "missing: a fat-tree needs `gpus` or `k`")),
        (None, _, _) => return Err(ctx.invalid("gpus", "missing: expected the number of GPUs, e.g. gpus = 1024")),
    };
    if gpus == 0 {
        return Err(ctx.invalid("gpus", "expected at least 1 GPU"));
    }
    if gpus > MAX_GPUS {
        return Err(FabricError::TooLarge {
            file: ctx.file.into(),
            message: format!("{gpus} GPUs is more than meshway builds in memory ({MAX_GPUS})"),
        });
    }
    if gpus % gph != 0 {
        return Err(
            ctx.invalid("gpus", format!("{gpus} GPUs is not a whole number of {gph}-GPU hosts (gpus-per-host)"))
        );
    }
    let scale_up = scale_up(fc, cat, ctx, gpus, gph, nvlink)?;
    let host_cage_rate = fc.host_cage_rate;
    if let Some(c) = host_cage_rate {
        if c.0 == 0 || !c.0.is_multiple_of(port_rate.0) {
            return Err(ctx.invalid(
                "host-cage-rate",
                format!("expected a whole number of NIC ports ({port_rate}) per cage, got {c}"),
            ));
        }
    }
    let models = [
        network_model(cat, ctx, "leaf-model", &fc.leaf_model)?,
        network_model(cat, ctx, "spine-model", &fc.spine_model)?,
        network_model(cat, ctx, "core-model", &fc.core_model)?,
    ];
    let ports = |m: u16, rate: BitsPerSec| cat.switch[m as usize].ports_at(rate);
    let radix = [
        fc.leaf_radix.unwrap_or(ports(models[0], host_rate)),
        fc.spine_radix.unwrap_or(ports(models[1], uplink)),
        fc.core_radix.unwrap_or(ports(models[2], uplink)),
    ];
    let given = [fc.leaf_radix.is_some(), fc.spine_radix.is_some(), fc.core_radix.is_some()];
    let rates = [host_rate, uplink, uplink];
    // A 2-tier leaf-spine has no core: its radix is not checked (a slow NIC was blamed on
    // `core-radix` there).
    let has_core = !(fc.kind == FabricKind::LeafSpine && fc.tiers != Some(3));
    for (i, (r, key)) in radix.iter().zip(["leaf-radix", "spine-radix", "core-radix"]).enumerate() {
        if i == 2 && !has_core {
            continue;
        }
        let tier = ["leaf", "spine", "core"][i];
        let name = &cat.switch[models[i] as usize].name;
        if given[i] {
            // A radix beyond the model's ports is allowed (a switch not in the catalog yet):
            // the plan warns that its links exceed what the model forwards.
            if *r < 2 || *r > 4096 {
                return Err(ctx.invalid(key, format!("expected 2 to 4096 ports, got {r}")));
            }
        } else if *r < 2 || *r > 4096 {
            // A radix derived from the switch model at the port rate: the rate is what to set.
            let rate_key = if i > 0 && fc.uplink.is_some() { "uplink" } else { "nic" };
            let got = if *r > 4096 { "more than 4096".to_string() } else { r.to_string() };
            return Err(ctx.invalid(
                rate_key,
                format!(
                    "{} ports give the {tier} model {name:?} {got} ports, where a switch has 2 to 4096: set `{rate_key}` \
                     or `{key}`",
                    rates[i]
                ),
            ));
        }
    }
    if let Some(l) = &fc.layout {
        if fc.cable_lengths.is_some() {
            return Err(ctx.invalid("layout", "give either `layout` or `cable-lengths`: the layout sets every length"));
        }
        if l.hosts_per_rack == 0 || l.racks_per_row == 0 {
            return Err(ctx.invalid("layout", "expected at least 1 host per rack and 1 rack per row"));
        }
    }
    let cl = fc.cable_lengths.clone().unwrap_or_default();
    let d = &cat.cable_lengths;
    let lengths = Lengths {
        host_leaf: cl.host_leaf.unwrap_or(d.host_leaf),
        leaf_spine: cl.leaf_spine.unwrap_or(d.leaf_spine),
        spine_core: cl.spine_core.unwrap_or(d.spine_core),
        border: cl.border.unwrap_or(d.border),
    };
    Ok(Params {
        kind: fc.kind,
        gpus,
        gph,
        planes,
        port_rate,
        uplink,
        nvlink,
        scale_up,
        host_cage_rate,
        homes,
        backup,
        management: fc.management_ports.unwrap_or(0),
        models,
        radix,
        lengths,
    })
}

impl Params {
    /// The rate of one host link: the NIC port rate, halved when dual-homed.
    fn host_rate(&self) -> BitsPerSec {
        BitsPerSec(self.port_rate.0 / u64::from(self.homes))
    }
}

/// The NVLink domain of `nvlink-domain` GPUs, when it is larger than a host: whole hosts
/// per domain, whole domains, and the switch trays its NVLink ports need.
fn scale_up(
    fc: &FabricConfig,
    cat: &Catalog,
    ctx: &Ctx,
    gpus: u32,
    gph: u32,
    nvlink: BitsPerSec,
) -> Result<Option<ScaleUp>, FabricError> {
    let Some(dom) = fc.nvlink_domain else {
        if fc.nvlink_switch_model.is_some() {
            return Err(
                ctx.invalid("nvlink-switch-model", "applies only with `nvlink-domain` (GPUs per NVLink domain)")
            );
        }
        return Ok(None);
    };
    if dom == 0 || dom > 1024 || !dom.is_multiple_of(gph) {
        return Err(ctx.invalid(
            "nvlink-domain",
            format!("expected a whole number of {gph}-GPU hosts (gpus-per-host), at most 1024 GPUs, got {dom}"),
        ));
    }
    if !gpus.is_multiple_of(dom) {
        return Err(ctx.invalid("gpus", format!("{gpus} GPUs is not a whole number of {dom}-GPU NVLink domains")));
    }
    if dom == gph {
        return Ok(None);
    }
    let name = fc.nvlink_switch_model.as_ref().or(cat.defaults.nvlink_domain_switch.as_ref()).ok_or_else(|| {
        ctx.invalid(
            "nvlink-switch-model",
            "missing: the catalog has no [defaults] nvlink-domain-switch; name a switch model",
        )
    })?;
    let model = model(cat, ctx, "nvlink-switch-model", &Some(name.clone()))?;
    let m = &cat.switch[model as usize];
    if nvlink.0 == 0 {
        return Err(ctx.invalid("nvlink", "expected a positive NVLink rate per GPU"));
    }
    // A GPU has 18 NVLink 5 links; 1,024 (an assumption) leaves room for any design and
    // catches a port rate that makes no sense (1 bit/s gave 4e9 links and 1.7e19 dollars).
    let links = nvlink.0.div_ceil(m.port_rate.0.max(1));
    if links > 1024 {
        return Err(ctx.invalid(
            "nvlink-switch-model",
            format!(
                "{} ports of {} would take {links} links per GPU for {} of NVLink; expected at most 1024 (check the switch model's port-rate in the catalog)",
                m.name, m.port_rate, nvlink
            ),
        ));
    }
    let links_per_gpu = links as u32;
    let ports = u64::from(dom) * u64::from(links_per_gpu);
    let trays = u32::try_from(ports.div_ceil(u64::from(m.ports.max(1)))).unwrap_or(u32::MAX);
    Ok(Some(ScaleUp { gpus: dom, gpus_per_host: gph, model, trays, links_per_gpu }))
}

/// Splits `radix` ports into (down, up) so that down capacity : up capacity is at most `o`.
///
/// `radix` counts ports at the down rate. With mixed rates an up port takes `up / down` of
/// them (a 400G uplink is two 200G lanes of a 51.2T switch), so the split is by bandwidth:
/// the up ports get `1 / (1 + o)` of the switch's capacity, the down ports the rest up to `o`
/// times the up capacity.
fn split(radix: u32, o: Ratio, down_rate: BitsPerSec, up_rate: BitsPerSec) -> (u32, u32) {
    if down_rate == up_rate {
        return o.split_ports(radix);
    }
    let (rd, ru, o) = (down_rate.0 as f64, up_rate.0 as f64, o.as_f64());
    let cap = f64::from(radix) * rd;
    let u = (cap / ((1.0 + o) * ru) + 1e-9).floor().max(1.0);
    let d = ((o * u * ru).min(cap - u * ru) / rd + 1e-9).floor().max(1.0);
    (d as u32, u as u32)
}

/// Largest `p` dividing `u` with `count * p <= radix` (links per pair), if any.
fn links_per_pair(u: u32, count: u64, radix: u32) -> Option<u32> {
    (1..=u).rev().find(|p| u.is_multiple_of(*p) && count * u64::from(*p) <= u64::from(radix))
}

struct SiteOut {
    fabric: Fabric,
    borders: Vec<NodeId>,
    /// DCI wavelengths per border leaf.
    border_ports: u32,
}

/// A site's DCI ends: wavelengths, and the fastest of their optics.
#[derive(Debug, Clone, Copy, Default)]
struct DciEnds {
    wavelengths: u32,
    rate: BitsPerSec,
}

impl DciEnds {
    /// Wavelengths one border leaf of `ports` down ports at `port_rate` takes, and how many
    /// border leaves that makes: a wavelength faster than a port takes several (an 800ZR on
    /// 400G ports takes two; counting one put 96 ports on a 64-port leaf).
    fn borders(&self, ports: u32, port_rate: BitsPerSec, ctx: &Ctx, key: &str) -> Result<(u32, u32), FabricError> {
        if self.wavelengths == 0 {
            return Ok((ports, 0));
        }
        let per = u32::try_from(self.rate.0.div_ceil(port_rate.0.max(1)).max(1)).unwrap_or(u32::MAX);
        let each = ports / per;
        if each == 0 {
            return Err(ctx.invalid(
                key,
                format!(
                    "a {} DCI wavelength takes {per} ports at {port_rate}, more than a border leaf's {ports} down ports",
                    self.rate
                ),
            ));
        }
        Ok((each, self.wavelengths.div_ceil(each)))
    }
}

/// Builds GPUs (and their NVLink switches) for `p`; returns GPU ids in order. With an
/// NVLink domain larger than a host, the GPUs of a domain share one NVLink switch (standing
/// for its trays) and its number is their `host`: collectives see the domain as NVLink.
fn add_hosts(f: &mut Fabric, p: &Params, cat: &Catalog) -> Vec<NodeId> {
    let mut gpus = Vec::with_capacity(p.gpus as usize);
    f.scale_up = p.scale_up;
    f.management_ports = p.management;
    f.host_cage_rate = p.host_cage_rate;
    f.backup_ports = p.backup;
    let dom = p.scale_up.map_or(p.gph, |s| s.gpus);
    let nv_tier = if dom > 1 { Some(f.tier("nvswitch", 0)) } else { None };
    let nv_model = match p.scale_up {
        Some(s) => s.model,
        None => cat.switch_index("nvswitch").unwrap_or(p.models[0]),
    };
    for h in 0..p.gpus / dom {
        let nvs = nv_tier.map(|tier| {
            let name = if p.scale_up.is_some() { format!("nvl-{h}/nvlink") } else { format!("host-{h}/nvswitch") };
            f.add_node(name, NodeKind::Switch { tier, model: nv_model, radix: dom })
        });
        for i in 0..dom {
            let g = f.add_node(format!("gpu-{}", h * dom + i), NodeKind::Gpu { host: h, local: i });
            if let Some(s) = nvs {
                f.add_link(g, s, p.nvlink, Meters(0), LinkClass::Nvlink);
            }
            gpus.push(g);
        }
    }
    gpus
}

fn sw(f: &mut Fabric, name: String, tier: u8, model: u16, radix: u32, plane: u32) -> NodeId {
    let name = if plane > 0 { format!("p{plane}/{name}") } else { name };
    let id = f.add_node(name, NodeKind::Switch { tier, model, radix });
    f.nodes[id.idx()].plane = plane as u16;
    id
}

/// Builds one site (or a single-site fabric) of a built-in family, with `borders` extra
/// border leaves for DCI ports.
/// How a leaf's ports split and how many switch tiers the family gets.
struct PortPlan {
    /// Leaf down and up ports.
    leaf_d: u32,
    leaf_u: u32,
    /// Spine (aggregation) down and up ports for 3 tiers.
    spine_split: (u32, u32),
    core_radix: u32,
    /// 2 or 3; 0 = decide from whether 2 tiers fit.
    tiers: u8,
}

fn fat_tree_ports(fc: &FabricConfig, p: &Params, ctx: &Ctx) -> Result<PortPlan, FabricError> {
    let k = match fc.k {
        Some(k) => k,
        None => {
            let mut k = 2u32;
            while u64::from(k).pow(3) / 4 < u64::from(p.gpus) {
                k += 2;
            }
            k
        }
    };
    if k < 2 || k % 2 != 0 {
        return Err(ctx.invalid("k", format!("expected an even radix of at least 2, got {k}")));
    }
    if u64::from(k).pow(3) / 4 < u64::from(p.gpus) {
        return Err(ctx.invalid(
            "k",
            format!("a k = {k} fat-tree holds {} GPUs, fewer than gpus = {}", u64::from(k).pow(3) / 4, p.gpus),
        ));
    }
    for (i, key) in ["leaf-radix", "spine-radix", "core-radix"].iter().enumerate() {
        if k > p.radix[i] {
            return Err(ctx.invalid(
                key,
                format!("a fat-tree of {} GPUs needs k = {k} port switches, but the {key} is {}", p.gpus, p.radix[i]),
            ));
        }
    }
    let taper = fc.taper.unwrap_or(Ratio::ONE);
    let at = fc.taper_at.unwrap_or(TaperAt::Leaf);
    let leaf = if at == TaperAt::Leaf { split(k, taper, p.port_rate, p.uplink) } else { (k / 2, k / 2) };
    let spine = if at == TaperAt::Aggregation { split(k, taper, p.uplink, p.uplink) } else { (k / 2, k / 2) };
    Ok(PortPlan { leaf_d: leaf.0, leaf_u: leaf.1, spine_split: spine, core_radix: k, tiers: 3 })
}

fn port_plan(fc: &FabricConfig, p: &Params, ctx: &Ctx) -> Result<PortPlan, FabricError> {
    if p.kind == FabricKind::FatTree {
        return fat_tree_ports(fc, p, ctx);
    }
    let o = fc.oversubscription.unwrap_or(Ratio::ONE);
    if p.backup >= p.radix[0] {
        return Err(ctx.invalid("backup-ports", format!("expected fewer than the leaf's {} ports", p.radix[0])));
    }
    let (d, u) = match fc.gpus_per_leaf {
        None => split(p.radix[0] - p.backup, o, p.host_rate(), p.uplink),
        Some(g) => leaf_ports(g, o, p, ctx)?,
    };
    let tiers = match (p.kind, fc.tiers) {
        (FabricKind::LeafSpine, None) => 2,
        (_, Some(t @ (2 | 3))) => t,
        (_, Some(t)) => return Err(ctx.invalid("tiers", format!("expected 2 or 3, got {t}"))),
        (_, None) => 0, // decided once the leaf count is known
    };
    if p.kind == FabricKind::LeafSpine && tiers == 2 {
        for (key, given) in [("core-model", fc.core_model.is_some()), ("core-radix", fc.core_radix.is_some())] {
            if given {
                return Err(ctx.invalid(key, "a 2-tier leaf-spine has no core; set tiers = 3"));
            }
        }
    }
    if let (Some(_), 2) = (fc.aggregation_oversubscription, tiers) {
        return Err(
            ctx.invalid("aggregation-oversubscription", "a 2-tier fabric has no second-tier uplinks; set tiers = 3")
        );
    }
    let o2 = fc.aggregation_oversubscription.unwrap_or(Ratio::ONE);
    let (spine_split, tiers) = match fc.pod_size {
        None => (o2.split_ports(p.radix[1]), tiers),
        Some(_) if tiers == 2 => {
            return Err(ctx.invalid("pod-size", "a 2-tier fabric has no pods; set tiers = 3"));
        }
        Some(ps) => (pod_spine_ports(ps, d, o2, p, ctx)?, 3),
    };
    let two_tier_family = match p.kind {
        FabricKind::LeafSpine => tiers == 2,
        // Decided from whether 2 tiers fit: the search keeps to splits that fit them.
        FabricKind::RailOptimized => tiers != 3 && fc.pod_size.is_none(),
        _ => false,
    };
    // Non-blocking designs keep the split that fills the leaf (as the reference designs do).
    let (d, u) = if two_tier_family && o.as_f64() > 1.0 && fc.gpus_per_leaf.is_none() && fc.spines.is_none() {
        fewest_switches(d, u, o, p)
    } else {
        (d, u)
    };
    Ok(PortPlan { leaf_d: d, leaf_u: u, spine_split, core_radix: p.radix[2], tiers })
}

/// An oversubscribed 2-tier leaf-spine's (or rail-optimized fabric's) leaf split with the
/// fewest switches: from the split that fills the leaf (`d0` down, `u0` up), a leaf may
/// serve fewer GPUs (down to three quarters) with as few uplinks as keep down over up within
/// `o`, when that needs fewer leaves and spines in all. Every leaf reaches every spine with as many links each, so a prime uplink count
/// forces a spine per uplink: 4:1 on 64 ports filled is 51 down and 13 up, 21 leaves and 13
/// spines for 1,024 GPUs, where 48 and 12 give 22 leaves and 6 spines (3:1 gave 22 and 8, so
/// asking for more oversubscription cost more). Ties keep the fuller leaf.
fn fewest_switches(d0: u32, u0: u32, o: Ratio, p: &Params) -> (u32, u32) {
    let (rd, ru) = (u128::from(p.host_rate().0), u128::from(p.uplink.0));
    let cap = u128::from(p.radix[0].saturating_sub(p.backup)) * rd;
    let (num, den) = o.parts();
    // Leaves as the build counts them: a rail-optimized fabric has a leaf per rail for each
    // group of `d` hosts.
    let leaves = |d: u32| -> u64 {
        let per_home = if p.kind == FabricKind::RailOptimized {
            u64::from((p.gpus / p.gph).div_ceil(d)) * u64::from(p.gph)
        } else {
            u64::from(p.gpus.div_ceil(d))
        };
        per_home * u64::from(p.homes)
    };
    let switches = |d: u32, u: u32| -> Option<u64> {
        let per = links_per_pair(u, leaves(d), p.radix[1])?;
        Some(leaves(d) + u64::from(u / per))
    };
    let mut best = (switches(d0, u0), d0, u0);
    // A split that needs 3 tiers is left as it is (the search counts 2-tier fabrics only).
    if best.0.is_none() {
        return (d0, u0);
    }
    for d in (d0 - d0 / 4).max(1)..d0 {
        let u = (u128::from(d) * rd * u128::from(den)).div_ceil(u128::from(num).max(1) * ru).max(1);
        if u128::from(d) * rd + u * ru > cap {
            continue;
        }
        let u = u as u32;
        if let Some(n) = switches(d, u) {
            // Smaller leaves first win only with strictly fewer switches.
            if best.0.is_none_or(|b| n < b || (n == b && d > best.1)) {
                best = (Some(n), d, u);
            }
        }
    }
    (best.1, best.2)
}

/// A pod spine's (down, up) ports for pods of `pod_gpus` GPUs: one down port per leaf of the
/// pod, and as many uplinks as `o` asks (down over up at most `o`), within the spine's radix.
fn pod_spine_ports(pod_gpus: u32, leaf_d: u32, o: Ratio, p: &Params, ctx: &Ctx) -> Result<(u32, u32), FabricError> {
    // The unit a pod holds whole: a leaf, or a rail group (leaf_d hosts on gph rail leaves).
    let h = u64::from(p.homes);
    let (unit_gpus, unit_leaves, what) = if p.kind == FabricKind::RailOptimized {
        (u64::from(leaf_d) * u64::from(p.gph), u64::from(p.gph) * h, "rail groups")
    } else {
        (u64::from(leaf_d), h, if h == 2 { "leaf pairs" } else { "leaves" })
    };
    let ps = u64::from(pod_gpus);
    if ps == 0 || !ps.is_multiple_of(unit_gpus) {
        return Err(
            ctx.invalid("pod-size", format!("expected a whole number of {unit_gpus}-GPU {what}, got {pod_gpus}"))
        );
    }
    let down = ps / unit_gpus * unit_leaves;
    let (num, den) = o.parts();
    let up = (u128::from(down) * u128::from(den)).div_ceil(u128::from(num).max(1)) as u64;
    if down + up > u64::from(p.radix[1]) {
        return Err(ctx.invalid(
            "pod-size",
            format!(
                "a pod of {pod_gpus} GPUs has {down} leaves: each pod spine needs {down} ports down and {up} up \
                 at {o}, more than its {} ports (spine-model or spine-radix)",
                p.radix[1]
            ),
        ));
    }
    Ok((down as u32, up.max(1) as u32))
}

/// A leaf with `gpus` GPU ports: as many uplinks as `o` asks (down capacity over up at most
/// `o`), checked against the leaf's capacity.
fn leaf_ports(gpus: u32, o: Ratio, p: &Params, ctx: &Ctx) -> Result<(u32, u32), FabricError> {
    if gpus == 0 {
        return Err(ctx.invalid("gpus-per-leaf", "expected at least 1"));
    }
    let (rd, ru) = (u128::from(p.host_rate().0), u128::from(p.uplink.0));
    // Up capacity >= down capacity / o, in whole uplinks (o = num/den as kept by Ratio).
    let (num, den) = o.parts();
    let up = (u128::from(gpus) * rd * u128::from(den)).div_ceil(u128::from(num) * ru).max(1);
    let need = (u128::from(gpus) + u128::from(p.backup)) * rd + up * ru;
    let have = u128::from(p.radix[0]) * rd;
    if need > have {
        return Err(ctx.invalid(
            "gpus-per-leaf",
            format!(
                "{gpus} GPU ports{} and {up} uplinks need {} of leaf capacity; the leaf has {} ({} ports at {})",
                if p.backup > 0 { format!(", {} backup ports", p.backup) } else { String::new() },
                BitsPerSec(need as u64),
                BitsPerSec(have as u64),
                p.radix[0],
                p.host_rate()
            ),
        ));
    }
    Ok((gpus, up as u32))
}

/// The leaves of one plane, in order: GPU leaves, then (plane 0) border leaves.
struct PlaneLeaves {
    nodes: Vec<NodeId>,
    /// Per leaf: the unit (rail group or leaf) it belongs to; `u32::MAX` for a border leaf.
    unit: Vec<u32>,
    /// Units of GPU leaves.
    units: u32,
}

impl PlaneLeaves {
    fn is_border(&self, li: usize) -> bool {
        self.unit[li] == u32::MAX
    }
}

/// Adds one plane's GPU leaves (cabled to their GPUs) and, on plane 0, the border leaves.
fn add_leaves(
    f: &mut Fabric,
    p: &Params,
    gpus: &[NodeId],
    plane: u32,
    leaf_d: u32,
    leaves_needed: u32,
    n_borders: u32,
) -> PlaneLeaves {
    let t_leaf = f.tier("leaf", 1);
    let mut nodes = Vec::new();
    let mut unit = Vec::new();
    let hosts = p.gpus / p.gph;
    // Dual-homed: each leaf becomes a pair ("a" and "b") serving the same GPUs at half rate.
    let suffix = |k: u32| {
        if p.homes == 1 {
            ""
        } else if k == 0 {
            "a"
        } else {
            "b"
        }
    };
    if p.kind == FabricKind::RailOptimized {
        for g in 0..hosts.div_ceil(leaf_d) {
            for r in 0..p.gph {
                for k in 0..p.homes {
                    let leaf = sw(f, format!("leaf-g{g}-r{r}{}", suffix(k)), t_leaf, p.models[0], p.radix[0], plane);
                    for h in g * leaf_d..((g + 1) * leaf_d).min(hosts) {
                        let gpu = gpus[(h * p.gph + r) as usize];
                        f.add_link(gpu, leaf, p.host_rate(), p.lengths.host_leaf, LinkClass::Nic);
                    }
                    nodes.push(leaf);
                    unit.push(g);
                }
            }
        }
    } else {
        for l in 0..leaves_needed / p.homes {
            for k in 0..p.homes {
                let leaf = sw(f, format!("leaf-{l}{}", suffix(k)), t_leaf, p.models[0], p.radix[0], plane);
                for g in l * leaf_d..((l + 1) * leaf_d).min(p.gpus) {
                    f.add_link(gpus[g as usize], leaf, p.host_rate(), p.lengths.host_leaf, LinkClass::Nic);
                }
                nodes.push(leaf);
                unit.push(l);
            }
        }
    }
    let units = unit.last().map(|u| u + 1).unwrap_or(0);
    if plane == 0 && n_borders > 0 {
        let t_border = f.tier("border", 1);
        for b in 0..n_borders {
            nodes.push(sw(f, format!("border-{b}"), t_border, p.models[0], p.radix[0], plane));
            unit.push(u32::MAX);
        }
    }
    PlaneLeaves { nodes, unit, units }
}

/// Spines over one plane's leaves (2 tiers): every leaf to every spine, `leaf_u / spines`
/// links each. Returns the switches of each group (one group per unit; leaves added later).
fn add_spines(
    f: &mut Fabric,
    fc: &FabricConfig,
    p: &Params,
    ctx: &Ctx,
    leaves: &PlaneLeaves,
    leaf_u: u32,
    plane: u32,
) -> Result<Vec<Vec<NodeId>>, FabricError> {
    let t_spine = f.tier("spine", 2);
    let l_count = leaves.nodes.len() as u64;
    let p_links = match fc.spines {
        Some(s) if s == 0 || !leaf_u.is_multiple_of(s) => {
            return Err(ctx.invalid("spines", format!("expected a divisor of the {leaf_u} leaf uplinks, got {s}")))
        }
        Some(s) => {
            let pl = leaf_u / s;
            if l_count * u64::from(pl) > u64::from(p.radix[1]) {
                return Err(ctx.ports_exceeded("spine-0".into(), l_count * u64::from(pl), p.radix[1], ""));
            }
            pl
        }
        None => links_per_pair(leaf_u, l_count, p.radix[1]).ok_or_else(|| {
            ctx.ports_exceeded(
                "spine-0".into(),
                l_count,
                p.radix[1],
                " (one port per leaf); a 2-tier fabric holds at most spine-radix leaves: use kind = \"fat-tree\", tiers = 3, or a larger spine-radix",
            )
        })?,
    };
    let s_count = leaf_u / p_links;
    let spines: Vec<NodeId> =
        (0..s_count).map(|s| sw(f, format!("spine-{s}"), t_spine, p.models[1], p.radix[1], plane)).collect();
    for (li, &leaf) in leaves.nodes.iter().enumerate() {
        let len = if leaves.is_border(li) { p.lengths.border } else { p.lengths.leaf_spine };
        for &s in &spines {
            for _ in 0..p_links {
                f.add_link(leaf, s, p.uplink, len, LinkClass::LeafSpine);
            }
        }
    }
    Ok(vec![Vec::new(); leaves.units as usize])
}

/// Pods of spines over one plane's leaves and a core above them (3 tiers). Sets each GPU
/// leaf's group to its pod; returns the switches of each pod (leaves added later).
#[allow(clippy::too_many_arguments)]
fn add_pods(
    f: &mut Fabric,
    p: &Params,
    ctx: &Ctx,
    leaves: &PlaneLeaves,
    leaf_group: &mut [usize],
    plan: &PortPlan,
    unit: u32,
    n_borders: usize,
    plane: u32,
) -> Result<Vec<Vec<NodeId>>, FabricError> {
    let (t_spine, t_core) = (f.tier("spine", 2), f.tier("core", 3));
    let (sd, su) = plan.spine_split;
    let core_radix = plan.core_radix;
    let pod_leaves = (sd / unit) * unit;
    if pod_leaves == 0 {
        return Err(ctx.invalid(
            "spine-radix",
            format!("a pod must hold a whole rail group of {unit} leaves; the spine has {sd} down ports"),
        ));
    }
    let gpu_leaves = leaves.nodes.len() - n_borders;
    let pods = (gpu_leaves as u32).div_ceil(pod_leaves).max(1) + (n_borders as u32).div_ceil(pod_leaves);
    let q = links_per_pair(su, u64::from(pods), core_radix).ok_or_else(|| {
        ctx.ports_exceeded(
            "core-0".into(),
            u64::from(pods),
            core_radix,
            " (one port per pod): a 3-tier fabric holds at most core-radix pods",
        )
    })?;
    let per_group = su / q;
    let cores: Vec<Vec<NodeId>> = (0..plan.leaf_u)
        .map(|j| {
            (0..per_group)
                .map(|c| {
                    sw(f, format!("core-{}", j * per_group + c), t_core, p.models[2], p.radix[2].max(core_radix), plane)
                })
                .collect()
        })
        .collect();
    let mut group_switches = Vec::new();
    for pod in 0..pods {
        // Border leaves fill pods after the GPU leaves.
        let members: Vec<usize> = if (pod as usize) * (pod_leaves as usize) < gpu_leaves {
            let s = pod as usize * pod_leaves as usize;
            (s..(s + pod_leaves as usize).min(gpu_leaves)).collect()
        } else {
            let bpod = pod as usize - gpu_leaves.div_ceil(pod_leaves as usize);
            let s = gpu_leaves + bpod * pod_leaves as usize;
            (s..(s + pod_leaves as usize).min(leaves.nodes.len())).collect()
        };
        let mut pod_sw = Vec::new();
        for j in 0..plan.leaf_u {
            let s = sw(f, format!("pod-{pod}/spine-{j}"), t_spine, p.models[1], p.radix[1].max(sd + su), plane);
            for &li in &members {
                let len = if leaves.is_border(li) { p.lengths.border } else { p.lengths.leaf_spine };
                f.add_link(leaves.nodes[li], s, p.uplink, len, LinkClass::LeafSpine);
            }
            for &c in &cores[j as usize] {
                for _ in 0..q {
                    f.add_link(s, c, p.uplink, p.lengths.spine_core, LinkClass::SpineCore);
                }
            }
            pod_sw.push(s);
        }
        let is_gpu_pod = members.first().is_some_and(|&li| leaf_group[li] != usize::MAX);
        if is_gpu_pod {
            for &li in &members {
                leaf_group[li] = pod as usize;
            }
            group_switches.push(pod_sw);
        }
    }
    Ok(group_switches)
}

/// GPUs (and their NVLink switches) join the group of their plane-0 leaf.
fn add_gpus_to_groups(f: &Fabric, groups: &mut [Group], gpus: &[NodeId]) {
    let mut node_group: Vec<Option<usize>> = vec![None; f.nodes.len()];
    for (gi, g) in groups.iter().enumerate() {
        for n in &g.nodes {
            node_group[n.idx()] = Some(gi);
        }
    }
    for &gpu in gpus {
        let leaf = f.neighbors(gpu).iter().find(|(n, l)| f.link(*l).class == LinkClass::Nic && f.node(*n).plane == 0);
        if let Some(gi) = leaf.and_then(|(n, _)| node_group[n.idx()]) {
            groups[gi].nodes.push(gpu);
            if let Some((nv, _)) = f.neighbors(gpu).iter().find(|(_, l)| f.link(*l).class == LinkClass::Nvlink) {
                if node_group[nv.idx()].is_none() {
                    node_group[nv.idx()] = Some(gi);
                    groups[gi].nodes.push(*nv);
                }
            }
        }
    }
}

/// Leaf-spine, fat-tree and rail-optimized fabrics: hosts, then per plane the leaves and
/// the spine (2 tiers) or pods and core (3 tiers), then the groups (leaf, rail group, pod).
fn build_family(fc: &FabricConfig, cat: &Catalog, ctx: &Ctx, dci: DciEnds) -> Result<SiteOut, FabricError> {
    let p = resolve(fc, cat, ctx)?;
    if fc.kind == FabricKind::ThreeTier {
        return build_three_tier(fc, &p, cat, ctx, dci);
    }
    let mut f = Fabric::new("", p.kind.name());
    f.planes = p.planes as u16;
    let gpus = add_hosts(&mut f, &p, cat);
    // Tier ids in the order the fabric has always numbered them.
    let _ = (f.tier("leaf", 1), f.tier("spine", 2));
    let plan = port_plan(fc, &p, ctx)?;
    let (leaf_d, leaf_u) = (plan.leaf_d, plan.leaf_u);
    if leaf_u == 0 {
        return Err(ctx.invalid("oversubscription", "leaves need at least one uplink"));
    }
    let hosts = p.gpus / p.gph;
    // Leaves per "unit" that must stay in one pod (a rail group), and leaf count.
    let (unit, leaves_needed) = if p.kind == FabricKind::RailOptimized {
        (p.gph * p.homes, hosts.div_ceil(leaf_d) * p.gph * p.homes)
    } else {
        (p.homes, p.gpus.div_ceil(leaf_d) * p.homes)
    };
    let (border_ports, n_borders) = dci.borders(leaf_d, p.host_rate(), ctx, "leaf-radix")?;
    let total_leaves = u64::from(leaves_needed + n_borders);
    let tiers = match plan.tiers {
        0 if links_per_pair(leaf_u, total_leaves, p.radix[1]).is_some() => 2,
        0 => 3,
        t => t,
    };
    let mut groups: Vec<Group> = Vec::new();
    let mut borders = Vec::new();
    for plane in 0..p.planes {
        let leaves = add_leaves(&mut f, &p, &gpus, plane, leaf_d, leaves_needed, n_borders);
        let plane_borders = if plane == 0 { n_borders as usize } else { 0 };
        borders.extend(leaves.nodes[leaves.nodes.len() - plane_borders..].iter().copied());
        // Group index of each leaf (pod for 3 tiers, unit for 2 tiers); usize::MAX = shared.
        let mut leaf_group: Vec<usize> =
            leaves.unit.iter().map(|u| if *u == u32::MAX { usize::MAX } else { *u as usize }).collect();
        let mut group_switches = if tiers == 2 {
            add_spines(&mut f, fc, &p, ctx, &leaves, leaf_u, plane)?
        } else {
            add_pods(&mut f, &p, ctx, &leaves, &mut leaf_group, &plan, unit, plane_borders, plane)?
        };
        for (li, &leaf) in leaves.nodes.iter().enumerate() {
            if leaf_group[li] != usize::MAX {
                group_switches[leaf_group[li]].push(leaf);
            }
        }
        // Merge into the fabric's groups (same index across planes).
        if groups.len() < group_switches.len() {
            let kind = if tiers == 3 {
                "pod"
            } else if p.kind == FabricKind::RailOptimized {
                "rail-group"
            } else {
                "leaf"
            };
            groups.resize_with(group_switches.len(), || Group { name: String::new(), nodes: Vec::new() });
            for (i, g) in groups.iter_mut().enumerate() {
                g.name = format!("{kind}-{i}");
            }
            f.group_kind = kind.to_string();
        }
        for (i, sws) in group_switches.into_iter().enumerate() {
            groups[i].nodes.extend(sws);
        }
    }
    f.finish();
    if let Some(l) = &fc.layout {
        crate::layout::apply(&mut f, &crate::layout::Layout::resolve(l, &cat.cable_lengths));
    }
    add_gpus_to_groups(&f, &mut groups, &gpus);
    f.groups = groups;
    Ok(SiteOut { fabric: f, borders, border_ports })
}

fn build_three_tier(
    fc: &FabricConfig,
    p: &Params,
    cat: &Catalog,
    ctx: &Ctx,
    dci: DciEnds,
) -> Result<SiteOut, FabricError> {
    if p.planes > 1 {
        return Err(ctx.invalid("planes", "multi-plane applies to leaf-spine, fat-tree and rail-optimized fabrics"));
    }
    let mut f = Fabric::new("", "three-tier");
    let gpus = add_hosts(&mut f, p, cat);
    let (t_acc, t_agg, t_core) = (f.tier("access", 1), f.tier("aggregation", 2), f.tier("core", 3));
    let t_border = if dci.wavelengths > 0 { f.tier("border", 1) } else { t_acc };
    let o_acc = fc.oversubscription.unwrap_or(cat.defaults.three_tier_access_oversubscription);
    let o_agg = fc.aggregation_oversubscription.unwrap_or(cat.defaults.three_tier_aggregation_oversubscription);
    let (ad, au) = split(p.radix[0], o_acc, p.port_rate, p.uplink);
    let au = au - au % 2;
    if au < 2 {
        return Err(ctx.invalid(
            "leaf-radix",
            "an access switch needs at least 2 uplinks (one to each aggregation switch of its pair)",
        ));
    }
    let (gd, gu) = split(p.radix[1], o_agg, p.uplink, p.uplink);
    let per_agg = au / 2;
    let acc_per_pair = gd / per_agg;
    if acc_per_pair == 0 {
        return Err(ctx.ports_exceeded("agg-0".into(), u64::from(per_agg), gd, " down ports for one access switch"));
    }
    let cores = fc.core_switches.unwrap_or(cat.defaults.three_tier_core_switches);
    if cores == 0 || cores > gu {
        return Err(ctx.invalid("core-switches", format!("expected 1 to {gu} (the aggregation uplinks), got {cores}")));
    }
    // Each aggregation switch splits its uplinks evenly over the cores, as `spines` must
    // divide a leaf's: 3 cores of 16 uplinks left one idle and ran 3.20:1 for a 3:1 asked.
    if gu % cores != 0 {
        let divisors: Vec<String> = (1..=gu).filter(|d| gu % d == 0).map(|d| d.to_string()).collect();
        return Err(ctx.invalid(
            "core-switches",
            format!(
                "{cores} does not divide the {gu} aggregation uplinks ({} would be used and the rest left idle); give one of {}",
                gu / cores * cores,
                divisors.join(", ")
            ),
        ));
    }
    let q = gu / cores;
    let n_acc = p.gpus.div_ceil(ad);
    let (border_ports, n_border) = dci.borders(ad, p.port_rate, ctx, "leaf-radix")?;
    let total_acc = n_acc + n_border;
    let pairs = total_acc.div_ceil(acc_per_pair);
    let core_ports = u64::from(pairs) * 2 * u64::from(q);
    if core_ports > u64::from(p.radix[2]) {
        return Err(ctx.ports_exceeded(
            "core-0".into(),
            core_ports,
            p.radix[2],
            " (aggregation uplinks); add core-switches, raise core-radix, or use a Clos fabric",
        ));
    }
    let core_ids: Vec<NodeId> =
        (0..cores).map(|c| sw(&mut f, format!("core-{c}"), t_core, p.models[2], p.radix[2], 0)).collect();
    let mut groups = Vec::new();
    let mut borders = Vec::new();
    for pair in 0..pairs {
        let aggs: Vec<NodeId> =
            (0..2).map(|i| sw(&mut f, format!("agg-{}", pair * 2 + i), t_agg, p.models[1], p.radix[1], 0)).collect();
        for &a in &aggs {
            for &c in &core_ids {
                for _ in 0..q {
                    f.add_link(a, c, p.uplink, p.lengths.spine_core, LinkClass::SpineCore);
                }
            }
        }
        let mut members = aggs.clone();
        for ai in pair * acc_per_pair..((pair + 1) * acc_per_pair).min(total_acc) {
            let border = ai >= n_acc;
            let name = if border { format!("border-{}", ai - n_acc) } else { format!("access-{ai}") };
            let acc = sw(&mut f, name, if border { t_border } else { t_acc }, p.models[0], p.radix[0], 0);
            let len = if border { p.lengths.border } else { p.lengths.leaf_spine };
            for &a in &aggs {
                for _ in 0..per_agg {
                    f.add_link(acc, a, p.uplink, len, LinkClass::LeafSpine);
                }
            }
            if border {
                borders.push(acc);
                continue;
            }
            members.push(acc);
            for g in ai * ad..((ai + 1) * ad).min(p.gpus) {
                f.add_link(gpus[g as usize], acc, p.port_rate, p.lengths.host_leaf, LinkClass::Nic);
                members.push(gpus[g as usize]);
            }
        }
        groups.push(Group { name: format!("aggregation-block-{pair}"), nodes: members });
    }
    f.finish();
    if let Some(l) = &fc.layout {
        crate::layout::apply(&mut f, &crate::layout::Layout::resolve(l, &cat.cable_lengths));
    }
    // NVLink switches join their GPUs' block.
    for g in &mut groups {
        let mut extra = BTreeSet::new();
        for &n in &g.nodes {
            if f.node(n).is_gpu() {
                for (nb, l) in f.neighbors(n) {
                    if f.link(*l).class == LinkClass::Nvlink {
                        extra.insert(*nb);
                    }
                }
            }
        }
        g.nodes.extend(extra);
    }
    f.groups = groups;
    f.group_kind = "aggregation-block".into();
    Ok(SiteOut { fabric: f, borders, border_ports })
}

fn build_custom(fc: &FabricConfig, cat: &Catalog, ctx: &Ctx) -> Result<Fabric, FabricError> {
    if fc.node.is_empty() {
        return Err(ctx.invalid("node", "a custom fabric lists its nodes as [[fabric.node]] tables"));
    }
    let mut f = Fabric::new("", "custom");
    let mut by_name = BTreeMap::new();
    let mut group_of: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    let mut radix_of = Vec::new();
    let mut next_host = 0u32;
    for (i, n) in fc.node.iter().enumerate() {
        let key = format!("node[{}]", i + 1);
        if n.name.trim().is_empty() {
            return Err(ctx.invalid(&key, "node name must not be empty"));
        }
        if by_name.contains_key(&n.name) {
            return Err(ctx.invalid(&key, format!("duplicate node name {:?}", n.name)));
        }
        // Names reach the terminal and the pages: an escape sequence or a NUL would act there.
        for (what, v) in [("name", Some(&n.name)), ("tier", n.tier.as_ref()), ("group", n.group.as_ref())] {
            if let Some(why) = v.and_then(|v| meshway_units::unprintable(v)) {
                return Err(ctx.invalid(&format!("{key}.{what}"), format!("expected printable text, got {why}")));
            }
        }
        let kind = match n.kind {
            // Flow files name GPUs by name or by rank number: "3" would be both.
            CustomNodeKind::Gpu if n.name.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(ctx.invalid(
                    &key,
                    format!("GPU name {:?} is digits only, which flow files read as a rank number: add a letter, as in \"gpu-{}\"", n.name, n.name),
                ));
            }
            CustomNodeKind::Gpu => {
                let host = n.host.unwrap_or_else(|| {
                    next_host += 1;
                    1_000_000 + next_host
                });
                radix_of.push(u32::MAX);
                NodeKind::Gpu { host, local: 0 }
            }
            CustomNodeKind::Switch => {
                let m = model(cat, ctx, &format!("{key}.model"), &n.model)?;
                let tier = f.tier(n.tier.as_deref().unwrap_or("switch"), n.level.unwrap_or(1).max(1));
                let radix = n.radix.unwrap_or(cat.switch[m as usize].ports);
                radix_of.push(radix);
                NodeKind::Switch { tier, model: m, radix }
            }
        };
        let id = f.add_node(n.name.clone(), kind);
        by_name.insert(n.name.clone(), id);
        if let Some(g) = &n.group {
            group_of.entry(g.clone()).or_default().push(id);
        }
    }
    let mut used = vec![0u64; f.nodes.len()];
    for (i, l) in fc.link.iter().enumerate() {
        let key = format!("link[{}]", i + 1);
        let end = |name: &str| {
            by_name.get(name).copied().ok_or_else(|| {
                let names: Vec<&str> = by_name.keys().map(String::as_str).collect();
                let hint = closest(name, &names).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
                ctx.invalid(&key, format!("unknown node {name:?}{hint}"))
            })
        };
        let (a, b) = (end(&l.a)?, end(&l.b)?);
        if a == b {
            return Err(ctx.invalid(&key, format!("a link needs two different nodes, got {:?} twice", l.a)));
        }
        if l.rate.0 == 0 || l.rate.0 > MAX_RATE_BPS {
            return Err(ctx.invalid(&key, format!("rate: expected a positive rate up to 100Tbps, got {}", l.rate)));
        }
        if let Some(lat) = l.latency.filter(|l| l.0 > MAX_LATENCY_NS) {
            return Err(ctx.invalid(&key, format!("latency: expected at most 1s, got {lat}")));
        }
        // The longest cable on Earth (SEA-ME-WE 3) is about 39,000 km.
        if let Some(len) = l.length.filter(|m| *m > Meters::from_km(50_000)) {
            return Err(ctx.invalid(&key, format!("length: expected at most 50000km, got {len}")));
        }
        let count = l.count.unwrap_or(1);
        if count == 0 || count > 4096 {
            return Err(ctx.invalid(&key, format!("count: expected 1 to 4096, got {count}")));
        }
        for _ in 0..count {
            let id = f.add_link(a, b, l.rate, l.length.unwrap_or(cat.cable_lengths.leaf_spine), LinkClass::Custom);
            f.links[id.idx()].latency = l.latency;
        }
        used[a.idx()] += u64::from(count);
        used[b.idx()] += u64::from(count);
    }
    for (i, n) in f.nodes.iter().enumerate() {
        if radix_of[i] != u32::MAX && used[i] > u64::from(radix_of[i]) {
            return Err(ctx.ports_exceeded(n.name.clone(), used[i], radix_of[i], ""));
        }
    }
    if f.gpu_count() < 2 {
        return Err(ctx.invalid("node", "a custom fabric needs at least 2 GPU nodes"));
    }
    if let Some(n) = f.nodes.iter().enumerate().find(|(i, n)| matches!(n.kind, NodeKind::Gpu { .. }) && used[*i] == 0) {
        return Err(ctx.invalid("link", format!("GPU node {:?} has no link: give it a [[fabric.link]]", n.1.name)));
    }
    match fc.split.unwrap_or(SplitConfig::Halves) {
        SplitConfig::Halves => {}
        SplitConfig::Group => {
            if group_of.len() < 2 {
                return Err(
                    ctx.invalid("split", "split = \"group\" needs nodes in at least 2 groups (node `group` keys)")
                );
            }
            f.groups = group_of.into_iter().map(|(name, nodes)| Group { name, nodes }).collect();
            f.group_kind = "group".into();
        }
    }
    f.finish();
    Ok(f)
}

/// Checks that the fabric's `gpu` names a catalog [[gpu]].
fn check_gpu(fc: &FabricConfig, cat: &Catalog, ctx: &Ctx) -> Result<(), FabricError> {
    if let Some(g) = &fc.gpu {
        if cat.gpu_model(g).is_none() {
            let names: Vec<&str> = cat.gpu.iter().map(|m| m.name.as_str()).collect();
            let hint = closest(g, &names).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
            return Err(
                ctx.invalid("gpu", format!("unknown GPU model {g:?}, expected one of {}{hint}", names.join(", ")))
            );
        }
    }
    Ok(())
}

/// Checks that the fabric's `nic-model` names a catalog [[nic]] of the NIC rate per GPU
/// the built fabric `f` has, and records it on `f`.
fn set_nic_model(
    f: &mut Fabric,
    fc: &FabricConfig,
    cat: &Catalog,
    ctx: &Ctx,
    transport: crate::config::TransportKind,
) -> Result<(), FabricError> {
    let kind = transport.name();
    let Some(name) = &fc.nic_model else {
        // EFA runs on AWS's own devices, which a rate alone does not pick (a 400G fabric
        // would take ConnectX-7, without EFA's plugin latency or protocols).
        if transport == crate::config::TransportKind::Efa {
            let efa: Vec<&str> =
                cat.nic.iter().filter(|n| n.transport.as_deref() == Some(kind)).map(|n| n.name.as_str()).collect();
            return Err(ctx.invalid(
                "nic-model",
                format!(
                    "missing: [transport] kind = \"efa\" needs the NIC model of an EFA instance ({})",
                    efa.join(", ")
                ),
            ));
        }
        return Ok(());
    };
    let Some(nic) = cat.nic_named(name) else {
        let names: Vec<&str> = cat.nic.iter().map(|m| m.name.as_str()).collect();
        let hint = closest(name, &names).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
        return Err(
            ctx.invalid("nic-model", format!("unknown NIC model {name:?}, expected one of {}{hint}", names.join(", ")))
        );
    };
    match nic.transport.as_deref() {
        Some(t) if t != kind => {
            return Err(ctx.invalid(
                "nic-model",
                format!("{name:?} runs only {t} (catalog [[nic]] transport), but [transport] kind is {kind:?}"),
            ))
        }
        None if transport == crate::config::TransportKind::Efa => {
            return Err(
                ctx.invalid("nic-model", format!("{name:?} is not an EFA device, but [transport] kind is \"efa\""))
            )
        }
        _ => {}
    }
    let rate = f.gpu_network_rate().0;
    if rate != nic.rate.0 {
        let key = if fc.kind == FabricKind::Custom { "the GPU links' `rate`" } else { "`nic`" };
        return Err(ctx.invalid(
            "nic-model",
            format!(
                "{name:?} runs at {}, but the fabric's GPUs have {} of NIC each ({key}); give a NIC model of that rate or set {key} to its rate",
                nic.rate,
                BitsPerSec(rate)
            ),
        ));
    }
    f.nic_model = Some(name.clone());
    Ok(())
}

fn transport_kind(sc: &Scenario) -> crate::config::TransportKind {
    sc.config.transport.as_ref().map(|t| t.kind).unwrap_or_default()
}

/// Builds the fabric of a parsed scenario.
/// Keys of `[fabric]` that only some families read, with those families. A key given to a
/// family that does not read it is an error rather than silently doing nothing.
const FAMILY_KEYS: &[(&str, &[FabricKind])] = {
    use FabricKind::*;
    const FOUR: &[FabricKind] = &[ThreeTier, LeafSpine, FatTree, RailOptimized];
    &[
        ("gpus", FOUR),
        ("gpus-per-host", FOUR),
        ("nvlink-domain", FOUR),
        ("nvlink-switch-model", FOUR),
        ("host-cage-rate", FOUR),
        ("dual-homed", &[LeafSpine, RailOptimized]),
        ("backup-ports", &[LeafSpine, RailOptimized]),
        ("nic", FOUR),
        ("nvlink", FOUR),
        ("uplink", FOUR),
        ("planes", FOUR),
        ("leaf-model", FOUR),
        ("spine-model", FOUR),
        ("leaf-radix", FOUR),
        ("spine-radix", FOUR),
        ("core-model", FOUR),
        ("core-radix", FOUR),
        ("oversubscription", &[ThreeTier, LeafSpine, RailOptimized]),
        ("aggregation-oversubscription", &[ThreeTier, LeafSpine, RailOptimized]),
        ("gpus-per-leaf", &[LeafSpine, RailOptimized]),
        ("core-switches", &[ThreeTier]),
        ("spines", &[LeafSpine, RailOptimized]),
        ("tiers", &[LeafSpine, RailOptimized]),
        ("pod-size", &[LeafSpine, RailOptimized]),
        ("k", &[FatTree]),
        ("taper", &[FatTree]),
        ("taper-at", &[FatTree]),
        ("cable-lengths", FOUR),
        ("layout", FOUR),
        ("management-ports", FOUR),
        ("link-latency", FOUR),
        ("split", &[Custom]),
    ]
};

/// Whether `fc` gives `key`.
fn gives(fc: &FabricConfig, key: &str) -> bool {
    match key {
        "gpus" => fc.gpus.is_some(),
        "gpus-per-host" => fc.gpus_per_host.is_some(),
        "nvlink-domain" => fc.nvlink_domain.is_some(),
        "nvlink-switch-model" => fc.nvlink_switch_model.is_some(),
        "host-cage-rate" => fc.host_cage_rate.is_some(),
        "dual-homed" => fc.dual_homed.is_some(),
        "backup-ports" => fc.backup_ports.is_some(),
        "nic" => fc.nic.is_some(),
        "nvlink" => fc.nvlink.is_some(),
        "uplink" => fc.uplink.is_some(),
        "planes" => fc.planes.is_some(),
        "leaf-model" => fc.leaf_model.is_some(),
        "spine-model" => fc.spine_model.is_some(),
        "core-model" => fc.core_model.is_some(),
        "leaf-radix" => fc.leaf_radix.is_some(),
        "spine-radix" => fc.spine_radix.is_some(),
        "core-radix" => fc.core_radix.is_some(),
        "oversubscription" => fc.oversubscription.is_some(),
        "aggregation-oversubscription" => fc.aggregation_oversubscription.is_some(),
        "gpus-per-leaf" => fc.gpus_per_leaf.is_some(),
        "core-switches" => fc.core_switches.is_some(),
        "spines" => fc.spines.is_some(),
        "tiers" => fc.tiers.is_some(),
        "pod-size" => fc.pod_size.is_some(),
        "k" => fc.k.is_some(),
        "taper" => fc.taper.is_some(),
        "taper-at" => fc.taper_at.is_some(),
        "cable-lengths" => fc.cable_lengths.is_some(),
        "layout" => fc.layout.is_some(),
        "management-ports" => fc.management_ports.is_some(),
        "link-latency" => fc.link_latency.is_some(),
        "split" => fc.split.is_some(),
        _ => false,
    }
}

/// Refuses a key the fabric's family does not read, naming the families that do.
fn check_family_keys(fc: &FabricConfig, ctx: &Ctx) -> Result<(), FabricError> {
    for &(key, families) in FAMILY_KEYS {
        if gives(fc, key) && !families.contains(&fc.kind) {
            let names: Vec<&str> = families.iter().map(|k| k.name()).collect();
            let hint = match (fc.kind, key) {
                (FabricKind::FatTree, "oversubscription") => "; a fat-tree takes `taper` and `taper-at`",
                (FabricKind::Custom, "link-latency") => "; give each [[fabric.link]] a `latency`",
                (FabricKind::Custom, "cable-lengths") => "; give each [[fabric.link]] a `length`",
                _ => "",
            };
            return Err(ctx.invalid(
                key,
                format!("a {} fabric does not use this key: it applies to {}{hint}", fc.kind.name(), names.join(", ")),
            ));
        }
    }
    Ok(())
}

/// The fastest link or NIC a scenario may give: 100 Tb/s (an assumption, 60 times today's
/// 1.6 Tb/s NICs), so that port counts and capacities stay meaningful.
const MAX_RATE_BPS: u64 = 100_000_000_000_000;
/// The longest latency a scenario may give a link or a switch: 1 s (an assumption; a
/// fibre span around the globe is about 0.2 s).
const MAX_LATENCY_NS: u64 = 1_000_000_000;

/// The scenario's latency keys on a site's fabric: per-tier link latency in place of the
/// cables' propagation, and the switches' latency.
fn set_latencies(f: &mut Fabric, fc: &FabricConfig, site: u16, ctx: &Ctx<'_>) -> Result<(), FabricError> {
    let ll = fc.link_latency.as_ref();
    for (key, v) in [
        ("link-latency.host-leaf", ll.and_then(|l| l.host_leaf)),
        ("link-latency.leaf-spine", ll.and_then(|l| l.leaf_spine)),
        ("link-latency.spine-core", ll.and_then(|l| l.spine_core)),
        ("switch-latency", fc.switch_latency),
    ] {
        if let Some(v) = v.filter(|v| v.0 > MAX_LATENCY_NS) {
            return Err(ctx.invalid(key, format!("expected at most 1s, got {v}")));
        }
    }
    if let Some(ll) = &fc.link_latency {
        for link in &mut f.links {
            let given = match link.class {
                LinkClass::Nic => ll.host_leaf,
                LinkClass::LeafSpine => ll.leaf_spine,
                LinkClass::SpineCore => ll.spine_core,
                LinkClass::Nvlink | LinkClass::Dci | LinkClass::Custom => None,
            };
            if given.is_some() {
                link.latency = given;
            }
        }
    }
    if let Some(lat) = fc.switch_latency {
        f.switch_latency.retain(|&(s, _)| s != site);
        f.switch_latency.push((site, lat));
    }
    Ok(())
}

pub fn build_scenario(sc: &Scenario, cat: &Catalog) -> Result<Fabric, FabricError> {
    if let Some(fc) = &sc.config.fabric {
        let ctx = Ctx::new(&sc.file, &sc.text, "fabric", 0, "fabric");
        check_family_keys(fc, &ctx)?;
        check_gpu(fc, cat, &ctx)?;
        let mut f = if fc.kind == FabricKind::Custom {
            build_custom(fc, cat, &ctx)?
        } else {
            if !fc.node.is_empty() || !fc.link.is_empty() {
                return Err(ctx.invalid("node", "[[fabric.node]] and [[fabric.link]] are only for kind = \"custom\""));
            }
            build_family(fc, cat, &ctx, DciEnds::default())?.fabric
        };
        f.gpu = fc.gpu.clone();
        set_nic_model(&mut f, fc, cat, &ctx, transport_kind(sc))?;
        set_latencies(&mut f, fc, 0, &ctx)?;
        return Ok(f);
    }
    if sc.config.site.iter().all(|s| s.fabric.is_none()) {
        let top = Ctx::new(&sc.file, &sc.text, "site", 0, "site[1]");
        return Err(top.invalid(
            "fabric",
            "no fabric to plan: no [fabric] table and no [[site]] has a [site.fabric]; \
             for an inference scenario use `meshway infer` or `meshway place`",
        ));
    }
    build_multisite(sc, cat)
}

fn build_multisite(sc: &Scenario, cat: &Catalog) -> Result<Fabric, FabricError> {
    let top = Ctx::new(&sc.file, &sc.text, "site", 0, "");
    let sites = &sc.config.site;
    if sites.len() < 2 {
        return Err(
            top.invalid("site", "a multi-site fabric needs at least 2 [[site]] tables; use [fabric] for one site")
        );
    }
    let mut index = BTreeMap::new();
    for (i, s) in sites.iter().enumerate() {
        let ctx = Ctx::new(&sc.file, &sc.text, "site", i, &format!("site[{}]", i + 1));
        if s.name.trim().is_empty() || s.name.contains('/') {
            return Err(ctx.invalid("name", "expected a non-empty site name without '/'"));
        }
        if let Some(why) = meshway_units::unprintable(&s.name) {
            return Err(ctx.invalid("name", format!("expected printable text, got {why}")));
        }
        if index.insert(s.name.clone(), i).is_some() {
            return Err(ctx.invalid("name", format!("duplicate site name {:?}", s.name)));
        }
    }
    // Validate DCI links first: they decide each site's border ports.
    let mut dci_ends = vec![DciEnds::default(); sites.len()];
    let mut spans: Vec<(usize, usize, u32, u16, Meters)> = Vec::new();
    for (i, d) in sc.config.dci.iter().enumerate() {
        let ctx = Ctx::new(&sc.file, &sc.text, "dci", i, &format!("dci[{}]", i + 1));
        let names: Vec<&str> = index.keys().map(String::as_str).collect();
        let site = |key: &str, n: &str| {
            index.get(n).copied().ok_or_else(|| {
                let hint = closest(n, &names).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
                ctx.invalid(key, format!("unknown site {n:?}, expected one of {}{hint}", names.join(", ")))
            })
        };
        let (a, b) = (site("a", &d.a)?, site("b", &d.b)?);
        if a == b {
            return Err(ctx.invalid("b", "a dci link joins two different sites"));
        }
        if let Some(k) = spans.iter().position(|&(x, y, ..)| (x, y) == (a, b) || (x, y) == (b, a)) {
            return Err(ctx.invalid(
                "b",
                format!(
                    "{} and {} are already joined by dci[{}]: give one link per pair of sites, with more wavelengths for more capacity",
                    d.a,
                    d.b,
                    k + 1
                ),
            ));
        }
        let optic = match &d.optic {
            Some(name) => cat.optic_index(name).ok_or_else(|| {
                let names: Vec<&str> = cat.optic.iter().map(|o| o.name.as_str()).collect();
                ctx.invalid(
                    "optic",
                    format!("unknown optic {name:?}, expected 400ZR, ZR+, 800ZR or one of {}", names.join(", ")),
                )
            })?,
            None => cat.choose_coherent(d.distance).ok_or_else(|| {
                ctx.invalid("distance", format!("no coherent optic in the catalog reaches {}", d.distance))
            })?,
        };
        if let Some(why) = cat.beyond_reach(optic, d.distance, "add sites between, or a catalog optic") {
            return Err(ctx.invalid("distance", why));
        }
        if d.capacity.is_some() || d.background.is_some() {
            return Err(ctx.invalid(
                "capacity",
                "`capacity` and `background` apply to inference KV-cache transfers; a multi-site fabric's DCI is wavelengths x the optic's rate",
            ));
        }
        let w = d.wavelengths.unwrap_or(1);
        if w == 0 || w > 4096 {
            return Err(ctx.invalid("wavelengths", format!("expected 1 to 4096, got {w}")));
        }
        for e in [a, b] {
            dci_ends[e].wavelengths += w;
            dci_ends[e].rate = dci_ends[e].rate.max(cat.optic[optic as usize].rate);
        }
        spans.push((a, b, w, optic, d.distance));
    }
    if spans.is_empty() {
        return Err(top.invalid("dci", "sites must be joined by at least one [[dci]] link"));
    }
    // Every site reachable from the first.
    let mut reach = vec![false; sites.len()];
    reach[0] = true;
    for _ in 0..sites.len() {
        for &(a, b, ..) in &spans {
            if reach[a] || reach[b] {
                reach[a] = true;
                reach[b] = true;
            }
        }
    }
    if let Some(i) = reach.iter().position(|r| !r) {
        return Err(top.invalid("dci", format!("site {:?} is not joined to the others by any dci link", sites[i].name)));
    }
    let mut f = Fabric::new("", "multi-site");
    f.sites.clear();
    let mut port_pools: Vec<Vec<NodeId>> = Vec::new();
    let mut groups = Vec::new();
    // Each site's NIC rate per GPU: a NIC model one site names is every site's.
    let mut site_nic_rates: Vec<(usize, u64)> = Vec::new();
    for (i, s) in sites.iter().enumerate() {
        let Some(fabric) = &s.fabric else {
            let ctx = Ctx::new(&sc.file, &sc.text, "site", i, &format!("site[{}]", i + 1));
            return Err(ctx.invalid(
                "fabric",
                format!("site {:?} has no [site.fabric] table: a multi-site fabric needs one for every site", s.name),
            ));
        };
        let ctx = Ctx::new(&sc.file, &sc.text, "site.fabric", i, &format!("site[{}].fabric", i + 1));
        if fabric.kind == FabricKind::Custom {
            return Err(ctx.invalid("kind", "a site must be one of three-tier, leaf-spine, fat-tree, rail-optimized"));
        }
        if fabric.planes.unwrap_or(1) > 1 {
            return Err(ctx.invalid("planes", "multi-plane sites are not supported in multi-site fabrics yet"));
        }
        check_family_keys(fabric, &ctx)?;
        check_gpu(fabric, cat, &ctx)?;
        if let Some(g) = &fabric.gpu {
            if let Some(first) = f.gpu.as_ref().filter(|first| *first != g) {
                let why = format!("{g:?} differs from {first:?} at an earlier site");
                return Err(ctx.invalid("gpu", format!("{why}: meshway simulates one GPU model per fabric")));
            }
            f.gpu = Some(g.clone());
        }
        let out = build_family(fabric, cat, &ctx, dci_ends[i])?;
        let mut sf = out.fabric;
        set_nic_model(&mut sf, fabric, cat, &ctx, transport_kind(sc))?;
        site_nic_rates.push((i, sf.gpu_network_rate().0));
        if sf.nic_model.is_some() {
            if let Some(first) = f.nic_model.as_ref().filter(|first| Some(*first) != sf.nic_model.as_ref()) {
                let why = format!(
                    "{:?} differs from {first:?} at an earlier site",
                    fabric.nic_model.as_deref().unwrap_or("")
                );
                return Err(ctx.invalid("nic-model", format!("{why}: meshway simulates one NIC model per fabric")));
            }
            f.nic_model = sf.nic_model.clone();
        }
        set_latencies(&mut sf, fabric, 0, &ctx)?;
        if let Some(lat) = fabric.switch_latency {
            f.switch_latency.push((i as u16, lat));
        }
        for n in &mut sf.nodes {
            n.name = format!("{}/{}", s.name, n.name);
        }
        let all: Vec<NodeId> = (0..sf.nodes.len() as u32).map(NodeId).collect();
        sf.groups.clear();
        let off = f.absorb(sf, i as u16);
        groups.push(Group { name: s.name.clone(), nodes: all.into_iter().map(|n| NodeId(n.0 + off)).collect() });
        // DCI ports taken round-robin over the border leaves, so the spans spread evenly
        // (17 and 16 wavelengths, not 32 and 1: ECMP splits cross-site flows evenly over the
        // border leaves, and a leaf with one wavelength would carry half of them) and each span
        // over all of them.
        let mut pool = Vec::new();
        for _ in 0..out.border_ports {
            pool.extend(out.borders.iter().map(|b| NodeId(b.0 + off)));
        }
        pool.reverse();
        port_pools.push(pool);
        f.sites.push(s.name.clone());
    }
    if let Some(nic) = f.nic_model.as_deref().and_then(|n| cat.nic_named(n)) {
        if let Some(&(i, rate)) = site_nic_rates.iter().find(|(_, r)| *r != nic.rate.0) {
            let ctx = Ctx::new(&sc.file, &sc.text, "site.fabric", i, &format!("site[{}].fabric", i + 1));
            return Err(ctx.invalid(
                "nic",
                format!(
                    "this site's GPUs have {} of NIC each, but the fabric's NIC model {:?} runs at {}: meshway simulates one NIC model per fabric, so every site needs NICs of its rate",
                    BitsPerSec(rate),
                    nic.name,
                    nic.rate
                ),
            ));
        }
    }
    for (a, b, w, optic, distance) in spans {
        for _ in 0..w {
            let (pa, pb) = (port_pools[a].pop(), port_pools[b].pop());
            if let (Some(x), Some(y)) = (pa, pb) {
                let rate = cat.optic[optic as usize].rate;
                let l = f.add_link(x, y, rate, distance, LinkClass::Dci);
                f.links[l.idx()].optic = Some(optic);
            }
        }
    }
    f.groups = groups;
    f.group_kind = "site".into();
    f.finish();
    Ok(f)
}
