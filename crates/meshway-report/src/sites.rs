//! The plan diagram of a fabric of several sites: one column per site with that site's own
//! tiers (border leaves beside its leaves, under the tier they cable to) and its GPUs, and the
//! DCI spans between sites drawn under the columns, each labelled with its wavelengths, rate
//! and distance. The merged tiers of [`meshway_fabric::FabricReport`] cannot draw this: a
//! tier there is the sum over sites (and families), so the layout is read from the fabric.

use crate::format::{rate, thousands};
use crate::svg::fit_width;
use crate::svg::{esc, COLOURS};
use meshway_fabric::model::{LinkClass, NodeKind};
use meshway_fabric::{Catalog, Fabric};
use meshway_units::Meters;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A multi-site fabric as its plan diagram draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteLayout {
    pub sites: Vec<SiteBoxes>,
    pub dci: Vec<DciSpan>,
}

/// One site: its tiers (top level first) and the links between them.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteBoxes {
    pub name: String,
    pub gpus: u64,
    pub hosts: u64,
    pub tiers: Vec<SiteTier>,
    /// Links inside the site: (upper tier index, lower tier index or None for the GPUs,
    /// count, rate of the first such link).
    pub links: Vec<(usize, Option<usize>, u64, u64)>,
}

/// One tier of one site.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteTier {
    pub name: String,
    pub level: u8,
    pub switches: u64,
    /// Switch model name and count.
    pub models: BTreeMap<String, u64>,
    /// The tier ends DCI spans (border leaves).
    pub dci: bool,
}

/// The DCI links between two sites.
#[derive(Debug, Clone, PartialEq)]
pub struct DciSpan {
    /// Site indices, a < b.
    pub a: usize,
    pub b: usize,
    pub count: u64,
    pub rate_bps: u64,
    pub length_min: Meters,
    pub length_max: Meters,
    /// The optic the scenario names, if it names one.
    pub optic: Option<String>,
}

/// The ends of links inside a site: upper tier, lower tier (None: the GPUs).
type LinkKey = (usize, Option<usize>);

/// The layout of a fabric of two or more sites; None for one site.
pub fn site_layout(f: &Fabric, cat: &Catalog) -> Option<SiteLayout> {
    let named: Vec<usize> = (0..f.sites.len()).filter(|&i| !f.sites[i].is_empty()).collect();
    if named.len() < 2 {
        return None;
    }
    let col = |site: u16| named.iter().position(|&i| i == site as usize);
    let per_host = f.scale_up.map_or(1, |s| u64::from(s.gpus / s.gpus_per_host.max(1)));
    let mut sites: Vec<SiteBoxes> = named
        .iter()
        .map(|&i| SiteBoxes { name: f.sites[i].clone(), gpus: 0, hosts: 0, tiers: Vec::new(), links: Vec::new() })
        .collect();
    // Per site: fabric tier index -> index in its tiers.
    let mut tier_at: Vec<BTreeMap<u8, usize>> = vec![BTreeMap::new(); sites.len()];
    let mut hosts: Vec<Vec<u32>> = vec![Vec::new(); sites.len()];
    for n in &f.nodes {
        let Some(c) = col(n.site) else { continue };
        match n.kind {
            NodeKind::Gpu { host, .. } => {
                sites[c].gpus += 1;
                hosts[c].push(host);
            }
            NodeKind::Switch { tier, model, .. } => {
                let t = &f.tiers[tier as usize];
                // NVLink switches stay inside hosts (or racks): not a tier of the network.
                if t.level == 0 {
                    continue;
                }
                let k = *tier_at[c].entry(tier).or_insert_with(|| {
                    sites[c].tiers.push(SiteTier {
                        name: t.name.clone(),
                        level: t.level,
                        switches: 0,
                        models: BTreeMap::new(),
                        dci: false,
                    });
                    sites[c].tiers.len() - 1
                });
                let st = &mut sites[c].tiers[k];
                st.switches += 1;
                let m = cat.switch.get(model as usize).map_or_else(|| format!("model-{model}"), |m| m.name.clone());
                *st.models.entry(m).or_insert(0) += 1;
            }
        }
    }
    for (s, h) in sites.iter_mut().zip(&mut hosts) {
        h.sort_unstable();
        h.dedup();
        s.hosts = h.len() as u64 * per_host;
    }
    // Links: inside a site between tiers (or a tier and its GPUs), DCI between sites.
    let mut inside: Vec<BTreeMap<LinkKey, (u64, u64)>> = vec![BTreeMap::new(); sites.len()];
    let mut dci: BTreeMap<(usize, usize), DciSpan> = BTreeMap::new();
    let mut dci_tiers: Vec<(usize, usize)> = Vec::new();
    for l in &f.links {
        if l.class == LinkClass::Nvlink {
            continue;
        }
        let (na, nb) = (f.node(l.a), f.node(l.b));
        let (Some(ca), Some(cb)) = (col(na.site), col(nb.site)) else { continue };
        let tier_of = |c: usize, n: &meshway_fabric::model::Node| n.tier().and_then(|t| tier_at[c].get(&t).copied());
        if ca != cb || l.class == LinkClass::Dci {
            for (c, n) in [(ca, na), (cb, nb)] {
                if let Some(t) = tier_of(c, n) {
                    dci_tiers.push((c, t));
                }
            }
            let key = (ca.min(cb), ca.max(cb));
            let optic = l.optic.and_then(|o| cat.optic.get(o as usize)).map(|o| o.name.clone());
            let e = dci.entry(key).or_insert(DciSpan {
                a: key.0,
                b: key.1,
                count: 0,
                rate_bps: l.rate.0,
                length_min: l.length,
                length_max: l.length,
                optic: optic.clone(),
            });
            e.count += 1;
            e.length_min = e.length_min.min(l.length);
            e.length_max = e.length_max.max(l.length);
            if e.optic != optic {
                e.optic = None;
            }
            continue;
        }
        let (ta, tb) = (tier_of(ca, na), tier_of(ca, nb));
        let level = |t: Option<usize>| t.map_or(0, |t| sites[ca].tiers[t].level);
        // Upper end first; the GPUs (no tier) are below every tier.
        let key = match (ta, tb) {
            (Some(a), None) | (None, Some(a)) => (a, None),
            (Some(a), Some(b)) if level(Some(a)) >= level(Some(b)) => (a, Some(b)),
            (Some(a), Some(b)) => (b, Some(a)),
            (None, None) => continue,
        };
        let e = inside[ca].entry(key).or_insert((0, l.rate.0));
        e.0 += 1;
    }
    for (c, t) in dci_tiers {
        sites[c].tiers[t].dci = true;
    }
    for (s, links) in sites.iter_mut().zip(inside) {
        s.links = links.into_iter().map(|((a, b), (n, r))| (a, b, n, r)).collect();
    }
    Some(SiteLayout { sites, dci: dci.into_values().collect() })
}

/// Width of one site's column, its boxes' height and the gap between rows.
const COL_W: f64 = 320.0;
const BOX_H: f64 = 40.0;
const ROW_GAP: f64 = 58.0;
const TOP: f64 = 40.0;

/// A box of the diagram: its column's rectangle.
#[derive(Clone, Copy)]
struct Rect {
    x: f64,
    y: f64,
    w: f64,
}

impl Rect {
    fn cx(self) -> f64 {
        self.x + self.w / 2.0
    }
}

/// The diagram: a column per site, its tiers in rows by level (its DCI tier at the right of
/// its row), its GPUs under the tier cabled to them, links labelled with count and rate, and
/// under the columns each DCI span from one site's DCI tier to the other's.
pub fn site_diagram(title: &str, l: &SiteLayout) -> Option<String> {
    if l.sites.is_empty() {
        return None;
    }
    let width = (COL_W * l.sites.len() as f64 + 16.0).max(720.0);
    let col_w = (width - 16.0) / l.sites.len() as f64;
    // Rows: every level any site has, top first, then the GPUs.
    let mut levels: Vec<u8> = l.sites.iter().flat_map(|s| s.tiers.iter().map(|t| t.level)).collect();
    levels.sort_unstable_by(|a, b| b.cmp(a));
    levels.dedup();
    let row_y = |r: usize| TOP + 22.0 + r as f64 * (BOX_H + ROW_GAP);
    let gpu_row = levels.len();
    let band = row_y(gpu_row) + BOX_H + 24.0;
    let h = band + 30.0 * l.dci.len() as f64 + 16.0;
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {h}" width="{width}" height="{h}" role="img" class="chart"><title>{t}</title><rect width="{width}" height="{h}" fill="#fff"/><text x="8" y="20" font-size="14" font-weight="bold">{shown}</text>"##,
        t = esc(title),
        shown = esc(&fit_width(title, width - 16.0, 14.0 * 1.07)),
    );
    // Where each site's DCI tier is, for the spans.
    let mut dci_at: Vec<Option<Rect>> = vec![None; l.sites.len()];
    for (c, s) in l.sites.iter().enumerate() {
        let x0 = 8.0 + c as f64 * col_w + 10.0;
        let inner = col_w - 20.0;
        let _ = write!(
            out,
            r##"<rect x="{x:.1}" y="{TOP}" width="{w:.1}" height="{hh:.1}" rx="8" fill="#fafafa" stroke="#bbb" stroke-dasharray="4 3"/><text x="{tx:.1}" y="{ty}" font-size="13" font-weight="bold" text-anchor="middle">{n}</text>"##,
            x = x0 - 6.0,
            w = inner + 12.0,
            hh = row_y(gpu_row) + BOX_H + 8.0 - TOP,
            tx = x0 + inner / 2.0,
            ty = TOP + 15.0,
            n = esc(&fit_width(&format!("site {}", s.name), inner, 13.0))
        );
        // Boxes: per row the site's tiers of that level, the DCI tier narrower at the right.
        let mut rects: Vec<Option<Rect>> = vec![None; s.tiers.len()];
        for (r, lv) in levels.iter().enumerate() {
            let mut row: Vec<usize> = (0..s.tiers.len()).filter(|&t| s.tiers[t].level == *lv).collect();
            row.sort_by_key(|&t| s.tiers[t].dci);
            if row.is_empty() {
                continue;
            }
            let dci_w = if row.len() > 1 && s.tiers[*row.last().unwrap()].dci { inner * 0.4 } else { 0.0 };
            let plain = row.len() - usize::from(dci_w > 0.0);
            let gap = 10.0;
            let plain_w = (inner - dci_w - gap * (row.len() - 1) as f64) / plain as f64;
            let mut x = x0;
            for &t in &row {
                let w = if s.tiers[t].dci && dci_w > 0.0 { dci_w } else { plain_w };
                rects[t] = Some(Rect { x, y: row_y(r), w });
                x += w + gap;
            }
        }
        // The GPUs under the tiers cabled to them (the plain part of the lowest row).
        let under: Vec<Rect> = s.links.iter().filter(|k| k.1.is_none()).filter_map(|k| rects[k.0]).collect::<Vec<_>>();
        let gx0 = under.iter().map(|r| r.x).fold(f64::MAX, f64::min);
        let gx1 = under.iter().map(|r| r.x + r.w).fold(f64::MIN, f64::max);
        let gpus = if under.is_empty() {
            Rect { x: x0, y: row_y(gpu_row), w: inner }
        } else {
            Rect { x: gx0, y: row_y(gpu_row), w: gx1 - gx0 }
        };
        // Links first, boxes over them.
        for &(a, b, n, rt) in &s.links {
            let Some(ra) = rects[a] else { continue };
            let rb = match b {
                Some(b) => match rects[b] {
                    Some(r) => r,
                    None => continue,
                },
                None => gpus,
            };
            let (top, bottom) = if ra.y <= rb.y { (ra, rb) } else { (rb, ra) };
            // Straight down from the lower box's centre when the upper box spans it.
            let xb = bottom.cx();
            let xt = if xb >= top.x && xb <= top.x + top.w { xb } else { top.cx() };
            let (y0, y1) = (top.y + BOX_H, bottom.y);
            // The DCI tier sits at the column's right edge: its label goes left of its line.
            let left = b.is_some_and(|b| s.tiers[b].dci) || s.tiers[a].dci;
            let _ = write!(
                out,
                r##"<line x1="{xt:.1}" y1="{y0:.1}" x2="{xb:.1}" y2="{y1:.1}" stroke="#888" stroke-width="2"/><text x="{lx:.1}" y="{ly:.1}" font-size="10"{anchor}>{lab}</text>"##,
                lx = (xt + xb) / 2.0 + if left { -5.0 } else { 5.0 },
                ly = (y0 + y1) / 2.0 + if left { 16.0 } else { -4.0 },
                anchor = if left { r#" text-anchor="end""# } else { "" },
                lab = esc(&format!("{} x {}", thousands(n), rate(rt)))
            );
        }
        for (t, r) in s.tiers.iter().zip(&rects) {
            let Some(r) = *r else { continue };
            let c = if t.dci { "#D55E00" } else { COLOURS[(t.level as usize).saturating_sub(1) % COLOURS.len()] };
            let models: Vec<String> = t.models.iter().map(|(m, n)| format!("{} x {m}", thousands(*n))).collect();
            boxed(&mut out, r, c, &format!("{}: {}", t.name, thousands(t.switches)), &models.join(", "));
        }
        boxed(&mut out, gpus, "#444", &format!("{} GPUs", thousands(s.gpus)), &format!("{} hosts", thousands(s.hosts)));
        dci_at[c] = s.tiers.iter().zip(&rects).filter(|(t, _)| t.dci).find_map(|(_, r)| *r);
    }
    // The DCI spans: down from each end's DCI tier into the band, across, labelled.
    for (k, d) in l.dci.iter().enumerate() {
        let (Some(ra), Some(rb)) = (dci_at[d.a], dci_at[d.b]) else { continue };
        let y = band + 14.0 + 30.0 * k as f64;
        let (xa, xb) = (ra.cx() + 4.0 * k as f64, rb.cx() - 4.0 * k as f64);
        let dist = if d.length_min == d.length_max {
            d.length_min.to_string()
        } else {
            format!("{}-{}", d.length_min, d.length_max)
        };
        let optic = d.optic.as_deref().map_or_else(String::new, |o| format!(" ({o})"));
        let label = format!(
            "DCI {} – {}: {} x {}{optic}, {dist}",
            l.sites[d.a].name,
            l.sites[d.b].name,
            thousands(d.count),
            rate(d.rate_bps)
        );
        let _ = write!(
            out,
            r##"<path d="M{xa:.1},{ya:.1} V{y:.1} H{xb:.1} V{yb:.1}" fill="none" stroke="#D55E00" stroke-width="3"/><text x="{lx:.1}" y="{ly:.1}" font-size="11" text-anchor="middle">{lab}</text>"##,
            ya = ra.y + BOX_H,
            yb = rb.y + BOX_H,
            lx = (xa + xb) / 2.0,
            ly = y - 5.0,
            lab = esc(&fit_width(&label, (xb - xa).abs().max(200.0), 11.0))
        );
    }
    out.push_str("</svg>");
    Some(out)
}

/// A tier's box: a name line and a detail line, shortened to the box.
fn boxed(out: &mut String, r: Rect, colour: &str, name: &str, detail: &str) {
    let _ = write!(
        out,
        r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{BOX_H}" rx="5" fill="#f4f8fc" stroke="{colour}" stroke-width="2"/><text x="{tx:.1}" y="{ty1:.1}" font-size="12" font-weight="bold" text-anchor="middle">{n}</text><text x="{tx:.1}" y="{ty2:.1}" font-size="10" text-anchor="middle">{d}</text>"##,
        x = r.x,
        y = r.y,
        w = r.w,
        tx = r.cx(),
        ty1 = r.y + 17.0,
        ty2 = r.y + 32.0,
        n = esc(&fit_width(name, r.w - 8.0, 12.0 * 1.05)),
        d = esc(&fit_width(detail, r.w - 8.0, 10.0))
    );
}
