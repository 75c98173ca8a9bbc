//! NCCL tuner plugins with region tables (a catalog `[[tuner-plugin]]`, AWS's aws-ofi-nccl
//! region tuner): which algorithm and protocol a plugin sets for a collective of a size on a
//! number of ranks. The tuner consults the table before weighing its own candidates.

use meshway_fabric::workload_config::{AlgorithmConfig, OpConfig as Op};

/// An NCCL tuner plugin's region table (a catalog `[[tuner-plugin]]`), as the tuner consults
/// it before weighing its own candidates: the first region that holds the collective's
/// (bytes, ranks), among those whose algorithm and protocol may run here, sets both, as
/// NCCL takes a plugin's pick (aws-ofi-nccl zeroes that entry of NCCL's cost table).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginTable {
    pub name: String,
    /// Communicators on fewer hosts are left to the tuner.
    pub min_nodes: u64,
    pub regions: Vec<PluginRegion>,
    /// Where a point's ray ends: past every corner of the table.
    pub far: (f64, f64),
}

/// One region of a [`PluginTable`].
#[derive(Debug, Clone, PartialEq)]
pub struct PluginRegion {
    pub op: Op,
    pub ranks_per_host: u64,
    pub algo: AlgorithmConfig,
    pub proto: String,
    /// Corners in order, (bytes, ranks).
    pub vertices: Vec<(f64, f64)>,
}

impl PluginTable {
    /// The catalog's entry as a table.
    pub fn from_catalog(p: &meshway_fabric::catalog::TunerPlugin) -> PluginTable {
        let regions: Vec<PluginRegion> = p
            .region
            .iter()
            .map(|r| PluginRegion {
                op: r.op,
                ranks_per_host: u64::from(r.ranks_per_host),
                algo: r.algorithm,
                proto: r.protocol.clone(),
                vertices: r.vertices.iter().map(|v| (v[0], v[1])).collect(),
            })
            .collect();
        // A point past every corner of the table, as the plugin's ray ends (twice its largest
        // size and rank count, which its regions reach).
        let far =
            regions.iter().flat_map(|r| &r.vertices).fold((1.0f64, 1.0f64), |m, &(x, y)| (m.0.max(x), m.1.max(y)));
        PluginTable {
            name: p.name.clone(),
            min_nodes: u64::from(p.min_nodes),
            regions,
            far: (2.0 * far.0, 2.0 * far.1),
        }
    }

    /// The region (its index), algorithm and protocol for `op` of `size` bytes on `ranks`
    /// ranks over `nodes` hosts, among those `allowed` lets run; `None`: NCCL's tuner picks.
    pub fn pick(
        &self,
        op: Op,
        size: u64,
        ranks: u64,
        nodes: u64,
        allowed: impl Fn(AlgorithmConfig, &str) -> bool,
    ) -> Option<(usize, AlgorithmConfig, String)> {
        if nodes < self.min_nodes {
            return None;
        }
        let p = (size as f64, ranks as f64);
        self.regions
            .iter()
            .enumerate()
            .filter(|(_, r)| r.op == op && r.ranks_per_host * nodes == ranks && allowed(r.algo, &r.proto))
            .find(|(_, r)| holds(&r.vertices, p, self.far))
            .map(|(i, r)| (i, r.algo, r.proto.clone()))
    }
}

/// Whether the polygon `v` holds `p`, decided as aws-ofi-nccl's `is_inside_region` decides
/// (v1.16.3, src/tuner/nccl_ofi_regions.cpp), so that points near an edge go where the
/// plugin sends them: on an edge when the foot of the perpendicular from `p` lies on it and
/// is within [`EPS`] of `p`; else inside when the segment from `p` to `far` (a point outside
/// every region) properly crosses an odd number of edges.
fn holds(v: &[(f64, f64)], p: (f64, f64), far: (f64, f64)) -> bool {
    let n = v.len();
    let edge = |i: usize| (v[i], v[(i + 1) % n]);
    let on_edge = (0..n).any(|i| {
        let (a, b) = edge(i);
        // The perpendicular from p, as long as the edge.
        let q = (p.0 + (b.1 - a.1), p.1 - (b.0 - a.0));
        match crossing(p, q, a, b) {
            Crossing::Proper(foot) | Crossing::NearEnd(Some(foot)) => {
                ((foot.0 - p.0).powi(2) + (foot.1 - p.1).powi(2)).sqrt() < EPS
            }
            Crossing::NearEnd(None) | Crossing::Apart => false,
        }
    });
    if on_edge {
        return true;
    }
    let (lo, hi) = v.iter().fold(((f64::MAX, f64::MAX), (f64::MIN, f64::MIN)), |(lo, hi), &(x, y)| {
        ((lo.0.min(x), lo.1.min(y)), (hi.0.max(x), hi.1.max(y)))
    });
    if p.0 < lo.0 || p.0 > hi.0 || p.1 < lo.1 || p.1 > hi.1 {
        return false;
    }
    (0..n).filter(|&i| matches!(crossing(p, far, v[i], v[(i + 1) % n]), Crossing::Proper(_))).count() % 2 == 1
}

/// How close counts as on a line, in (bytes, ranks): the plugin's own tolerance.
const EPS: f64 = 1e-10;

/// Where segment p->q meets the edge a->b.
enum Crossing {
    /// Inside both segments; the meeting point.
    Proper((f64, f64)),
    /// Within [`EPS`] of an end of the edge (its line's point), or parallel (none).
    NearEnd(Option<(f64, f64)>),
    /// They do not meet.
    Apart,
}

fn crossing(p: (f64, f64), q: (f64, f64), a: (f64, f64), b: (f64, f64)) -> Crossing {
    let cross = |u: (f64, f64), w: (f64, f64)| u.0 * w.1 - u.1 * w.0;
    let (d_pq, d_ab) = ((q.0 - p.0, q.1 - p.1), (b.0 - a.0, b.1 - a.1));
    let det = cross(d_ab, d_pq);
    if det.abs() < EPS {
        return Crossing::NearEnd(None);
    }
    // Along the edge, 0 at a and 1 at b.
    let t = (cross(p, d_pq) - cross(a, d_pq)) / det;
    let at = (a.0 + t * d_ab.0, a.1 + t * d_ab.1);
    if !(-EPS..=1.0 + EPS).contains(&t) {
        return Crossing::Apart;
    }
    if !(EPS..=1.0 - EPS).contains(&t) {
        return Crossing::NearEnd(Some(at));
    }
    // Along p->q.
    let u = (cross(p, d_ab) - cross(a, d_ab)) / det;
    if (0.0..=1.0).contains(&u) {
        Crossing::Proper(at)
    } else {
        Crossing::Apart
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awss_region_tuner_picks_as_its_table_says() {
        let cat = meshway_fabric::Catalog::builtin();
        let t = PluginTable::from_catalog(
            cat.tuner_plugin_named("aws-ofi-p5").expect("the built-in catalog has aws-ofi-p5"),
        );
        let all = |_: AlgorithmConfig, _: &str| true;
        let pick = |size: u64, ranks: u64| t.pick(Op::AllReduce, size, ranks, ranks / 8, all).map(|(_, a, p)| (a, p));
        let (tree, ring, nvls_tree) = (AlgorithmConfig::Tree, AlgorithmConfig::Ring, AlgorithmConfig::NvlsTree);
        let mib = 1u64 << 20;
        // (bytes, ranks, pick): the same points run through the plugin's own geometry
        // (aws/aws-ofi-nccl v1.16.3 src/tuner/nccl_ofi_regions.cpp, is_inside_region, ported
        // to Python outside the repository): a point on a vertex or an edge goes to the
        // first region whose edge the plugin finds it on.
        let golden: [(u64, u64, AlgorithmConfig, &str); 22] = [
            (32 * mib, 32, tree, "ll128"),
            (64 * mib, 32, ring, "ll128"),
            (512 * mib, 32, ring, "ll128"),
            (2048 * mib, 32, ring, "simple"),
            (64 * mib, 64, tree, "ll128"),
            (128 * mib, 64, ring, "ll128"),
            (2048 * mib, 64, ring, "ll128"),
            (4096 * mib, 64, ring, "simple"),
            (256 * mib, 128, tree, "ll128"),
            (512 * mib, 128, ring, "ll128"),
            (4096 * mib, 128, nvls_tree, "simple"),
            (8192 * mib, 128, ring, "simple"),
            (512 * mib, 256, nvls_tree, "simple"),
            (2048 * mib, 256, ring, "ll128"),
            (8192 * mib, 256, nvls_tree, "simple"),
            (301_989_888, 128, tree, "ll128"),
            (37_748_736, 32, tree, "ll128"),
            (1_000_000_000, 1024, nvls_tree, "simple"),
            (16384 * mib, 4096, nvls_tree, "simple"),
            (mib, 24, tree, "ll128"),
            (1024 * mib, 24, ring, "ll128"),
            (3072 * mib, 48, ring, "simple"),
        ];
        for (size, ranks, a, p) in golden {
            assert_eq!(pick(size, ranks), Some((a, p.to_string())), "{size} B on {ranks} ranks");
        }
        // Points a review found where a looser edge test (a millionth of a unit from the
        // line) disagreed with the plugin: tens of bytes beside an edge, and one exactly on
        // the edge regions 4 and 5 share, which the plugin's arithmetic puts in region 5.
        for (size, ranks, want) in [
            (1_964_719_104, 56, None),
            (3_131_746_944, 72, None),
            (1_233_660_832, 24, None),
            (6_442_450_976, 128, Some((ring, "simple"))),
            (37_748_737, 32, Some((ring, "ll128"))),
            (8_455_716_864, 168, Some((ring, "simple"))),
        ] {
            assert_eq!(pick(size, ranks), want.map(|(a, p)| (a, p.to_string())), "{size} B on {ranks} ranks");
        }
        // One and two ranks a host (a training job's data-parallel groups across hosts),
        // from the same function of the plugin: (op, bytes, ranks a host, hosts, pick).
        let (ag, rs, ar, simple, ll128) = (Op::AllGather, Op::ReduceScatter, Op::AllReduce, "simple", "ll128");
        type Row<'a> = (Op, u64, u64, u64, Option<(AlgorithmConfig, &'a str)>);
        let thin: [Row; 22] = [
            (ar, mib, 1, 16, Some((tree, ll128))),
            (ar, 64 * mib, 1, 16, Some((ring, simple))),
            (ar, 512 * mib, 1, 16, Some((ring, simple))),
            (ar, 4 * mib, 1, 64, None),
            (ar, 64 * mib, 1, 64, Some((tree, ll128))),
            (ar, 1024 * mib, 1, 64, Some((ring, simple))),
            (ar, 16 * mib, 1, 8, Some((ring, ll128))),
            (ag, 64 * mib, 1, 16, Some((ring, simple))),
            (ag, mib, 1, 16, None),
            (rs, 64 * mib, 1, 32, None),
            (rs, 4 * mib, 1, 32, None),
            (ar, 2 * mib, 1, 4, Some((ring, ll128))),
            (ar, 512 * mib, 1, 128, Some((ring, simple))),
            (ar, 8 * mib, 1, 3, Some((ring, simple))),
            (ar, mib, 2, 8, Some((tree, ll128))),
            (ar, 64 * mib, 2, 8, Some((ring, ll128))),
            (ar, 512 * mib, 2, 8, Some((ring, simple))),
            (ar, 4 * mib, 2, 32, Some((tree, ll128))),
            (ar, 400 * mib, 2, 32, Some((ring, simple))),
            (ar, 2048 * mib, 2, 64, Some((nvls_tree, simple))),
            (ar, 100 * mib, 2, 4, Some((nvls_tree, simple))),
            (ar, 300 * mib, 2, 128, Some((tree, simple))),
        ];
        for (op, size, per_host, nodes, want) in thin {
            assert_eq!(
                t.pick(op, size, per_host * nodes, nodes, all).map(|(_, a, p)| (a, p)),
                want.map(|(a, p)| (a, p.to_string())),
                "{} of {size} B on {nodes} hosts of {per_host}",
                op.name()
            );
        }
        // Two hosts or fewer, or hosts of other than 8, 2 or 1 ranks, are NCCL's to pick; so
        // is an operation a table leaves out.
        assert_eq!(pick(512 * mib, 16), None);
        assert_eq!(t.pick(Op::AllReduce, 512 * mib, 64, 16, all), None);
        assert_eq!(t.pick(Op::AllGather, 512 * mib, 64, 8, all), None);
        assert_eq!(t.pick(Op::AllReduce, mib, 2, 2, all), None);
        assert_eq!(t.pick(Op::Broadcast, 64 * mib, 16, 16, all), None);
        // A region NCCL may not run here is skipped for the next that holds the point:
        // without NVLS, 8 GiB on 256 ranks falls out of every region (the ring regions
        // end at 192 ranks there); with LL128 refused, 512 MiB on 32 ranks too.
        let no_nvls = |a: AlgorithmConfig, _: &str| a != AlgorithmConfig::NvlsTree;
        assert_eq!(t.pick(Op::AllReduce, 8192 * mib, 256, 32, no_nvls), None);
        let no_ll128 = |_: AlgorithmConfig, p: &str| p != "ll128";
        assert_eq!(t.pick(Op::AllReduce, 512 * mib, 32, 4, no_ll128), None);
        assert_eq!(t.pick(Op::AllReduce, 2048 * mib, 64, 8, no_ll128), None, "left of the ring Simple region");
        assert_eq!(
            t.pick(Op::AllReduce, 4096 * mib, 64, 8, no_ll128),
            Some((4, AlgorithmConfig::Ring, "simple".to_string()))
        );
    }

    /// A point outside the test polygons, the ray to it through none of their corners.
    const FAR: (f64, f64) = (1000.0, 700.0);

    #[test]
    fn a_polygon_holds_its_inside_and_its_edges() {
        let square = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)];
        assert!(holds(&square, (5.0, 5.0), FAR));
        assert!(holds(&square, (10.0, 5.0), FAR), "an edge");
        assert!(holds(&square, (0.0, 0.0), FAR), "a corner");
        assert!(!holds(&square, (10.5, 5.0), FAR));
        assert!(!holds(&square, (-1.0, 10.0), FAR), "beside a corner, on the line of an edge");
        // A triangle that folds back on itself holds only its line.
        let line = [(1.0, 16.0), (100.0, 16.0), (1.0, 16.0)];
        assert!(holds(&line, (50.0, 16.0), FAR));
        assert!(!holds(&line, (50.0, 17.0), FAR));
        // Edges that cross (a bow tie): the even-odd rule.
        let bow = [(0.0, 0.0), (10.0, 10.0), (10.0, 0.0), (0.0, 10.0)];
        assert!(holds(&bow, (2.0, 5.0), FAR));
        assert!(!holds(&bow, (5.0, 8.0), FAR));
    }
}
