//! Rack layout: where hosts and switches stand in the hall, and so how long each cable is.
//!
//! Hosts (compute trays) fill racks in order, `hosts-per-rack` each, and racks fill rows of
//! `racks-per-row`. A leaf stands in the rack of the median host it serves: a top-of-rack
//! leaf is in its hosts' rack, a rail leaf gathering hosts from many racks in the middle of
//! them. Spines, cores and border leaves stand in the network racks at the middle of the
//! hall. A cable runs along the row (rack width per rack), across rows (row pitch per row)
//! and up and down (a fixed slack per cable): Manhattan distance plus slack. Each link's
//! optic or cable then follows from its own length.

use crate::config::LayoutConfig;
use crate::model::{Fabric, LinkClass, NodeId, NodeKind};
use meshway_units::Meters;

/// A resolved layout.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub hosts_per_rack: u32,
    pub racks_per_row: u32,
    pub rack_width: Meters,
    pub row_pitch: Meters,
    pub slack: Meters,
}

impl Layout {
    pub fn resolve(c: &LayoutConfig, d: &crate::catalog::CableLengths) -> Layout {
        Layout {
            hosts_per_rack: c.hosts_per_rack,
            racks_per_row: c.racks_per_row,
            rack_width: c.rack_width.or(d.rack_width).unwrap_or(Meters(600)),
            row_pitch: c.row_pitch.or(d.row_pitch).unwrap_or(Meters(2400)),
            slack: c.slack.or(d.slack).unwrap_or(Meters(2000)),
        }
    }

    /// (column, row) of a rack, in millimetres along and across rows.
    fn place(&self, rack: u64) -> (i64, i64) {
        let per_row = u64::from(self.racks_per_row.max(1));
        (
            (rack % per_row) as i64 * self.rack_width.as_mm() as i64,
            (rack / per_row) as i64 * self.row_pitch.as_mm() as i64,
        )
    }

    fn cable(&self, a: (i64, i64), b: (i64, i64)) -> Meters {
        Meters(a.0.abs_diff(b.0) + a.1.abs_diff(b.1) + self.slack.as_mm())
    }
}

/// Sets every network link's length from the layout (DCI links keep theirs).
pub fn apply(f: &mut Fabric, l: &Layout) {
    let hpr = u64::from(l.hosts_per_rack.max(1));
    // Rack of each GPU: its host (compute tray) over hosts per rack.
    let tray = |kind: &NodeKind| -> Option<u64> {
        match *kind {
            NodeKind::Gpu { host, local } => Some(match f.scale_up {
                Some(s) => {
                    let per = u64::from(s.gpus_per_host.max(1));
                    u64::from(host) * (u64::from(s.gpus) / per) + u64::from(local) / per
                }
                None => u64::from(host),
            }),
            NodeKind::Switch { .. } => None,
        }
    };
    let racks = f.nodes.iter().filter_map(|n| tray(&n.kind)).max().map_or(1, |t| t / hpr + 1);
    let per_row = u64::from(l.racks_per_row.max(1));
    let rows = racks.div_ceil(per_row);
    // The network racks: the middle of the middle row.
    let centre = l.place((rows / 2) * per_row + per_row / 2);
    let mut pos: Vec<(i64, i64)> = vec![centre; f.nodes.len()];
    for (i, n) in f.nodes.iter().enumerate() {
        if let Some(t) = tray(&n.kind) {
            pos[i] = l.place(t / hpr);
        }
    }
    // Leaves: the median rack of the GPUs they serve.
    for (i, p) in pos.iter_mut().enumerate() {
        let id = NodeId(i as u32);
        if f.node(id).is_gpu() || f.is_nvswitch(id) {
            continue;
        }
        let mut racks: Vec<u64> = f
            .neighbors(id)
            .iter()
            .filter(|(_, k)| f.link(*k).class == LinkClass::Nic)
            .filter_map(|(g, _)| tray(&f.node(*g).kind).map(|t| t / hpr))
            .collect();
        if !racks.is_empty() {
            racks.sort_unstable();
            *p = l.place(racks[racks.len() / 2]);
        }
    }
    for k in 0..f.links.len() {
        let link = &f.links[k];
        if matches!(link.class, LinkClass::Dci | LinkClass::Nvlink) {
            continue;
        }
        let (a, b) = (pos[link.a.idx()], pos[link.b.idx()]);
        // Spines and cores share the network racks: one row apart.
        let len = if link.class == LinkClass::SpineCore {
            Meters(l.row_pitch.as_mm() + l.slack.as_mm())
        } else {
            l.cable(a, b)
        };
        f.links[k].length = len;
    }
}
