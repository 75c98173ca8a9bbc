//! Multi-site training: a job spread over sites joined by DCI links.
//!
//! - **Site-hierarchical all-reduce** ([`crate::collective::site_all_reduce`], written with
//!   the other collectives because it is one of them): with `g` ranks at each of `k`
//!   sites, (1) each site reduce-scatters the buffer over its own fabric (NCCL ring, `g - 1`
//!   steps of `S / g`); (2) rank `j` of every site all-reduces shard `j` (`S / g` bytes)
//!   with rank `j` of the other sites over the DCI (ring of `k`, `2 (k - 1)` steps); (3) each
//!   site all-gathers the buffer. Only phase 2 crosses the DCI: `S (k - 1) / k` bytes leave
//!   each site each way instead of a flat ring's `2 S (n - 1) / n` per ring crossing, and the
//!   dependency chain crosses the DCI `2 (k - 1)` times. With two sites the chain crosses it
//!   exactly twice, so a site pair `d` km apart adds exactly one round trip
//!   (`2 x d x fiber-delay-per-km`) to the all-reduce.
//! - **Analysis** ([`analyze`]): the scenario's training (or all-reduce) workload is run
//!   with the DCI spans set to each distance of a sweep and to each wavelength count of a
//!   capacity sweep (the fabric is rebuilt each time; a span longer than its optic reaches
//!   gets the cheapest coherent optic of the same rate that reaches, else the cheapest that
//!   reaches), against the same job on one site of the same family holding every GPU. The
//!   break-even distance, where the cross-site cost `(step - one-site step) / step` first
//!   exceeds a budget, is found by bisection over distance (the cost only grows with
//!   distance). The planner's lossless headroom check is reported for every span at every
//!   distance of the sweep.

use crate::collective::{self, Algo, CollSpec, Op};
pub use crate::collective::{site_all_reduce, site_groups};
use crate::error::SimulateError;
use crate::exec::{execute, ExecConfig, Policy, Wire};
use crate::program::Program;
use crate::topo::{FabricTopo, Topology};
use crate::training::{self, TrainSpec};
use meshway_fabric::catalog::OpticClass;
use meshway_fabric::config::RoutingKind;
use meshway_fabric::scenario::Ctx;
use meshway_fabric::workload_config::{OpConfig, Whole, WorkloadKind};
use meshway_fabric::{Catalog, Fabric, FabricError, LinkClass, Scenario};
use meshway_units::{Bytes, Meters};
use serde::Serialize;
use std::collections::BTreeMap;

/// What `analyze` sweeps and searches.
#[derive(Debug, Clone)]
pub struct Options {
    /// DCI distances of the sweep (every span is set to each).
    pub distances: Vec<Meters>,
    /// Wavelength counts of the capacity sweep (every span is set to each).
    pub wavelengths: Vec<u32>,
    /// Share of the step cross-site DP may cost (0.1 = 10%).
    pub budget: f64,
    /// Resolution of the break-even search.
    pub resolution: Meters,
    /// Farthest distance the break-even search tries (capped by the catalog's longest
    /// coherent reach).
    pub max_distance: Meters,
    pub seed: Option<u64>,
    /// Completion batching tolerance (None: the catalog's). [`Options::from_catalog`] gives
    /// 0, exact: the break-even search bisects, and with a tolerance a step was not
    /// monotonic in distance (116.869 ms at 59.75 km, 116.647 ms at 60 km), which moved the
    /// flat ring's break-even from 57 km to 60 km.
    pub tolerance: Option<f64>,
}

impl Options {
    /// The catalog's `[multisite]` defaults.
    pub fn from_catalog(cat: &Catalog) -> Result<Options, SimulateError> {
        let m = cat.multisite.as_ref().ok_or(SimulateError::NoMultisiteDefaults)?;
        Ok(Options {
            distances: m.distances.clone(),
            wavelengths: m.wavelengths.clone(),
            budget: m.budget,
            resolution: m.resolution,
            max_distance: m.max_distance,
            seed: None,
            tolerance: Some(0.0),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteInfo {
    pub name: String,
    pub gpus: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpanInfo {
    pub a: String,
    pub b: String,
    pub distance_m: u64,
    pub optic: String,
    pub wavelengths: u32,
    pub capacity_bps: u64,
}

/// The planner's lossless headroom check of one DCI span.
#[derive(Debug, Clone, Serialize)]
pub struct SpanHeadroom {
    pub span: String,
    pub per_port_bytes: u64,
    pub switch_total_bytes: u64,
    pub buffer_bytes: u64,
    pub feasible: bool,
}

/// The job at one DCI distance.
#[derive(Debug, Clone, Serialize)]
pub struct DistanceRow {
    pub distance_m: u64,
    /// Optic per span (changes when a span outgrows the configured optic's reach).
    pub optics: Vec<String>,
    /// Wavelengths per span (more when a slower optic takes over, to keep the capacity).
    pub wavelengths: Vec<u32>,
    /// Capacity per span, bit/s.
    pub dci_bps: Vec<u64>,
    /// Fibre round trip of one span at this distance.
    pub dci_rtt_ns: u64,
    /// Site-hierarchical DP all-reduce.
    pub step_ns: u64,
    /// Flat ring DP all-reduce across sites.
    pub flat_step_ns: u64,
    /// (step - one-site step) / step, site-hierarchical against its one-site baseline.
    pub cross_site_share: f64,
    /// The same for the flat ring against a flat ring on one site.
    pub flat_cross_site_share: f64,
    pub headroom: Vec<SpanHeadroom>,
}

/// The job at one DCI capacity (at the scenario's distances).
#[derive(Debug, Clone, Serialize)]
pub struct CapacityRow {
    pub wavelengths: u32,
    /// Capacity of one span.
    pub dci_bps: u64,
    pub step_ns: u64,
    pub flat_step_ns: u64,
    pub cross_site_share: f64,
    pub flat_cross_site_share: f64,
}

/// Where cross-site DP first costs more than the budget.
#[derive(Debug, Clone, Serialize)]
pub struct BreakEven {
    pub budget: f64,
    /// "within": between `below_m` and `distance_m`; "at-zero": over budget even at 0 km;
    /// "beyond": within budget up to `below_m` (the search limit).
    pub outcome: String,
    /// First distance (at the search resolution) over budget.
    pub distance_m: Option<u64>,
    pub share_at_distance: Option<f64>,
    /// Last distance within budget.
    pub below_m: Option<u64>,
    pub share_below: Option<f64>,
    pub resolution_m: u64,
    pub evaluations: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub sites: Vec<SiteInfo>,
    pub spans: Vec<SpanInfo>,
    pub workload: String,
    pub kind: String,
    /// What the job is ("training tp 8 x pp 2 x dp 8, 8 micro-batches", "all-reduce 1GiB").
    pub job: String,
    pub gpus: usize,
    pub transport: String,
    pub routing: Policy,
    /// The same job on one site of the sites' fabric (every site has the same) holding every GPU, DP
    /// all-reduced hierarchically over the same rank groups as the sites (only the network
    /// differs from the multi-site step).
    pub one_site_step_ns: u64,
    /// The same with flat DP rings.
    pub one_site_flat_step_ns: u64,
    /// At the scenario's own distances and capacities.
    pub step_ns: u64,
    pub flat_step_ns: u64,
    pub cross_site_share: f64,
    pub flat_cross_site_share: f64,
    pub by_distance: Vec<DistanceRow>,
    pub by_capacity: Vec<CapacityRow>,
    /// Sweep points left out because their fabric does not build, with the reason.
    pub not_built: Vec<String>,
    /// Break-even with the site-hierarchical DP all-reduce.
    pub break_even: BreakEven,
    /// Break-even with a flat ring across sites.
    pub flat_break_even: BreakEven,
    /// When either all-reduce is over budget even at 0 km: the job at 0 km with the most
    /// wavelengths a span of the capacity sweep that built (when more than the scenario's), which says whether more DCI capacity would
    /// bring it within budget (the capacity sweep itself runs at the scenario's distances).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero_km_capacity: Option<CapacityRow>,
    /// What the figures leave out or depend on: the scenario's failures (not modelled here),
    /// the packet level (not run here), ECMP's hash seed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The job to run, from the scenario's workload table.
#[derive(Debug, Clone)]
enum Job {
    Training(Box<TrainSpec>),
    AllReduce { size: u64, channels: u32 },
}

struct Runner<'a> {
    scenario: &'a Scenario,
    catalog: &'a Catalog,
    /// Index of the workload table.
    nth: usize,
    cfg: ExecConfig,
    seed: u64,
    /// Told before each simulation: how many ran before it, and what it is for.
    progress: &'a dyn Fn(u64, &str),
    runs: std::cell::Cell<u64>,
    phase: std::cell::RefCell<String>,
}

/// No progress.
fn quiet(_: u64, _: &str) {}

fn ctx<'a>(s: &'a Scenario, nth: usize) -> Ctx<'a> {
    Ctx::new(&s.file, &s.text, "workload", nth, &format!("workload[{}]", nth + 1))
}

impl<'a> Runner<'a> {
    /// The runner of `s`'s multisite workload, and its transport's description.
    fn new(
        s: &'a Scenario,
        cat: &'a Catalog,
        opts: &Options,
        progress: &'a dyn Fn(u64, &str),
    ) -> Result<(Runner<'a>, String), SimulateError> {
        let nth = check(s)?;
        check_opts(opts, cat)?;
        let seed = opts.seed.or(s.config.seed).unwrap_or(1);
        let (cfg, transport) = exec_config(s, cat, seed, opts.tolerance)?;
        let runner = Runner {
            scenario: s,
            catalog: cat,
            nth,
            cfg,
            seed,
            progress,
            runs: Default::default(),
            phase: Default::default(),
        };
        Ok((runner, transport))
    }

    /// Parses the workload against `topo` (its GPU count).
    fn job(&self, s: &Scenario, topo: &FabricTopo<'_>) -> Result<Job, FabricError> {
        let w = &s.config.workload[self.nth];
        let c = ctx(s, self.nth);
        if w.kind == WorkloadKind::Training {
            w.check_keys().map_err(|(k, m)| c.invalid(k, m))?;
            return Ok(Job::Training(Box::new(training::parse_on(w, &c, topo, topo.fabric, self.catalog)?)));
        }
        if let Some(k) = w.given_keys().into_iter().find(|k| !["op", "algorithm", "size", "channels"].contains(k)) {
            return Err(c.invalid(k, "multisite reads kind, name, op, algorithm, size and channels of an all-reduce"));
        }
        // Both are always run and compared; another algorithm would be silently ignored.
        use meshway_fabric::workload_config::AlgorithmConfig as A;
        if let Some(a) = w.algorithm.filter(|a| !matches!(a, A::Auto | A::Ring | A::SiteHierarchical)) {
            let name = serde_json::to_value(a).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            return Err(c.invalid(
                "algorithm",
                format!("multisite compares the site-hierarchical all-reduce with a flat ring, so it takes auto, ring or site-hierarchical, not {name:?}"),
            ));
        }
        let size = w.size.ok_or_else(|| c.invalid("size", "missing: expected a size like \"1GiB\""))?;
        if size.0 == 0 {
            return Err(c.invalid("size", "must be positive"));
        }
        let channels = match w.channels {
            None => self.catalog.simulation.channels,
            Some(Whole(i)) if (1..=64).contains(&i) => i as u32,
            Some(Whole(v)) => return Err(c.invalid("channels", format!("expected 1 to 64, got {v}"))),
        };
        Ok(Job::AllReduce { size: size.0, channels })
    }

    /// What the next simulations are for.
    fn phase(&self, what: impl Into<String>) {
        *self.phase.borrow_mut() = what.into();
    }

    fn describe(&self) -> Result<(String, String), SimulateError> {
        let f = self.scenario.build(self.catalog)?;
        let topo = FabricTopo::new(&f, self.catalog, self.seed);
        Ok(match self.job(self.scenario, &topo)? {
            Job::Training(t) => (
                "training".into(),
                format!(
                    "training tp {} x pp {} x dp {}, {} micro-batches of {} x {} tokens",
                    t.tp,
                    t.pp,
                    t.dp,
                    t.micro_batches(),
                    t.micro_batch,
                    t.sequence
                ),
            ),
            Job::AllReduce { size, .. } => ("all-reduce".into(), format!("all-reduce {} over every GPU", Bytes(size))),
        })
    }

    /// Runs the job on `s`'s fabric: with `sites` (a site per rank), DP all-reduces are
    /// hierarchical by those sites; without, flat rings.
    fn run_built(&self, s: &Scenario, f: &Fabric, sites: Option<&[u32]>) -> Result<u64, SimulateError> {
        (self.progress)(self.runs.get(), &self.phase.borrow());
        self.runs.set(self.runs.get() + 1);
        let mut topo = FabricTopo::new(f, self.catalog, self.seed);
        let job = self.job(s, &topo)?;
        let mut prog = Program::new();
        prog.tag(s.name.clone());
        let done = match job {
            Job::Training(mut t) => {
                t.site_of_rank = sites.map(<[u32]>::to_vec);
                // The comparison is with a flat ring (at the protocol NCCL would pick for it).
                if sites.is_none() {
                    t.dp_algo = Some(Algo::Ring);
                }
                training::write(&mut prog, &mut topo, &t, &[], &self.cfg)?
            }
            Job::AllReduce { size, channels } => {
                let spec = CollSpec {
                    op: Op::AllReduce,
                    algo: Algo::Ring,
                    size,
                    ranks: (0..topo.ranks() as u32).collect(),
                    channels,
                    model: None,
                    steps_limit: self.catalog.simulation.steps_flow_limit,
                    alpha: self.cfg.wire.alpha,
                    packet: self.cfg.wire.mtu + self.cfg.wire.header,
                    pipeline: Default::default(),
                    proto: Default::default(),
                    hw: crate::collective::hardware(f, self.catalog),
                    net_overhead: None,
                };
                let b = if let Some(sites) = sites {
                    site_all_reduce(&mut prog, &mut topo, &spec, sites, &[])
                } else {
                    collective::build(&mut prog, &mut topo, &spec, &[])
                }?;
                b.done
            }
        };
        let ex = execute(&prog, &mut topo, &self.cfg, &[], &mut |_, _| {})?;
        ex.msgs[done as usize].end.map(|e| e.0).ok_or_else(|| SimulateError::Incomplete { scenario: s.name.clone() })
    }
}

/// The site of each rank of `f`, in the simulator's rank order.
fn sites_of(f: &Fabric, cat: &Catalog) -> Vec<u32> {
    let topo = FabricTopo::new(f, cat, 0);
    (0..topo.ranks() as u32).map(|r| u32::from(f.node(topo.node_of(r)).site)).collect()
}

/// The one-site baselines: the same job on one fabric holding every GPU, with DP
/// all-reduced hierarchically over the same rank groups as the sites (`hier`, so only the
/// network differs) and with flat rings (`flat`).
#[derive(Debug, Clone, Copy)]
struct Base {
    hier: u64,
    flat: u64,
}

impl Base {
    fn of(&self, hier: bool) -> u64 {
        if hier {
            self.hier
        } else {
            self.flat
        }
    }
}

/// The job at one multi-site variant: (site-hierarchical, flat ring) step.
fn both(runner: &Runner<'_>, v: &Scenario, f: &Fabric, cat: &Catalog) -> Result<(u64, u64), SimulateError> {
    let sites = sites_of(f, cat);
    Ok((runner.run_built(v, f, Some(&sites))?, runner.run_built(v, f, None)?))
}

/// The job on variant `v` (built as `f`) with `w` wavelengths a span.
fn capacity_row(
    runner: &Runner<'_>,
    v: &Scenario,
    f: &Fabric,
    w: u32,
    base: Base,
) -> Result<CapacityRow, SimulateError> {
    let cat = runner.catalog;
    let (step, flat) = both(runner, v, f, cat)?;
    Ok(CapacityRow {
        wavelengths: w,
        dci_bps: dci_spans(f, cat).first().map_or(0, |x| x.capacity_bps),
        step_ns: step,
        flat_step_ns: flat,
        cross_site_share: share(step, base.hier),
        flat_cross_site_share: share(flat, base.flat),
    })
}

fn baseline(s: &Scenario, cat: &Catalog, runner: &Runner<'_>, multi: &Fabric) -> Result<Base, SimulateError> {
    let single = one_site(s);
    let f = single.build(cat).map_err(|source| SimulateError::Derived {
        what: "cannot build the one-site baseline (every GPU in one fabric like each site's)".into(),
        source,
    })?;
    let groups = sites_of(multi, cat);
    Ok(Base { hier: runner.run_built(&single, &f, Some(&groups))?, flat: runner.run_built(&single, &f, None)? })
}

/// The scenario with every DCI span at `distance` and/or `wavelengths`; a span beyond its
/// optic's reach gets a coherent optic that reaches (same rate preferred, then cheapest),
/// and as many more wavelengths as keep its capacity (800ZR to ZR+ doubles them; past the
/// 4,096 a span may have, the build refuses), so the distance sweep measures distance, not a
/// halved DCI.
fn variant(s: &Scenario, cat: &Catalog, distance: Option<Meters>, wavelengths: Option<u32>) -> Scenario {
    let mut v = s.clone();
    for d in &mut v.config.dci {
        if let Some(w) = wavelengths {
            d.wavelengths = Some(w);
        }
        if let Some(m) = distance {
            d.distance = m;
            let current = d.optic.as_deref().and_then(|o| cat.optic_index(o)).map(|i| &cat.optic[i as usize]);
            if let Some(o) = current {
                if o.reach < m {
                    let rate = o.rate;
                    let pick =
                        cat.optic.iter().filter(|x| x.class == OpticClass::Coherent && x.reach >= m).min_by(|a, b| {
                            (a.rate != rate).cmp(&(b.rate != rate)).then(a.price_usd.total_cmp(&b.price_usd))
                        });
                    if let Some(x) = pick {
                        if x.rate.0 > 0 && x.rate.0 < rate.0 {
                            let w = u128::from(d.wavelengths.unwrap_or(1));
                            let keep = (w * u128::from(rate.0)).div_ceil(u128::from(x.rate.0));
                            // Past a span's 4,096 wavelengths the build refuses the
                            // distance, naming it, rather than halving the capacity.
                            d.wavelengths = Some(u32::try_from(keep).unwrap_or(u32::MAX));
                        }
                    }
                    d.optic = pick.map(|x| x.name.clone());
                }
            }
        }
    }
    v
}

/// The job on one site: the first site's fabric with every GPU.
fn one_site(s: &Scenario) -> Scenario {
    let mut v = s.clone();
    let total: u32 = s.config.site.iter().filter_map(|x| x.fabric.as_ref()).filter_map(|f| f.gpus).sum();
    let mut fc = s.config.site[0].fabric.clone().expect("checked: every site has a fabric");
    fc.gpus = Some(total);
    v.config.fabric = Some(fc);
    v.config.site.clear();
    v.config.dci.clear();
    v.name = format!("{} (one site)", s.name);
    v
}

fn dci_spans(f: &Fabric, cat: &Catalog) -> Vec<SpanInfo> {
    let mut spans: BTreeMap<(u16, u16), SpanInfo> = BTreeMap::new();
    for l in &f.links {
        if l.class != LinkClass::Dci {
            continue;
        }
        let (a, b) = (f.node(l.a).site, f.node(l.b).site);
        let key = (a.min(b), a.max(b));
        let e = spans.entry(key).or_insert_with(|| SpanInfo {
            a: f.sites.get(key.0 as usize).cloned().unwrap_or_default(),
            b: f.sites.get(key.1 as usize).cloned().unwrap_or_default(),
            distance_m: l.length.0 / 1000,
            optic: l.optic.and_then(|o| cat.optic.get(o as usize)).map_or_else(String::new, |o| o.name.clone()),
            wavelengths: 0,
            capacity_bps: 0,
        });
        e.wavelengths += 1;
        e.capacity_bps += l.rate.0;
    }
    spans.into_values().collect()
}

fn headroom(s: &Scenario, f: &Fabric, cat: &Catalog) -> Result<Vec<SpanHeadroom>, SimulateError> {
    let tr = s.transport(cat)?;
    // A lossy transport (TCP, RoCE without PFC) pauses nothing: no headroom to need.
    if !tr.lossless {
        return Ok(Vec::new());
    }
    let r = meshway_fabric::plan::analyze(f, cat, &tr);
    Ok(r.lossless
        .rows
        .iter()
        .filter(|x| x.scope.starts_with("dci"))
        .map(|x| SpanHeadroom {
            span: x.scope.trim_start_matches("dci ").to_string(),
            per_port_bytes: x.per_port_bytes,
            switch_total_bytes: x.switch_total_bytes,
            buffer_bytes: x.buffer_bytes,
            feasible: x.feasible,
        })
        .collect())
}

fn exec_config(
    s: &Scenario,
    cat: &Catalog,
    seed: u64,
    tolerance: Option<f64>,
) -> Result<(ExecConfig, String), SimulateError> {
    let tc = s.config.transport.clone().unwrap_or_default();
    let kind = tc.kind.name();
    let p = cat.transport_profile(kind).ok_or_else(|| SimulateError::NoTransportProfile { kind: kind.to_string() })?;
    // As `meshway simulate` chooses: the scenario's routing, else the transport's default.
    let policy = match (s.config.transport.as_ref().and_then(|t| t.routing), p.default_routing.as_str()) {
        (Some(RoutingKind::Adaptive), _) | (None, "adaptive") => Policy::Adaptive,
        (Some(RoutingKind::AdaptiveGlobal), _) | (None, "adaptive-global") => Policy::AdaptiveGlobal,
        (Some(RoutingKind::Spray), _) | (None, "spray") => Policy::Spray,
        (Some(RoutingKind::Ecmp), _) | (None, _) => Policy::Ecmp,
    };
    s.transport(cat)?;
    let mtu = tc.mtu.map_or(p.mtu.0, |m| m.0).max(1);
    let cfg = ExecConfig {
        policy,
        wire: Wire { mtu, header: u64::from(p.header_bytes), alpha: p.alpha },
        qps: cat.simulation.qps_per_connection,
        spray_paths: cat.simulation.spray_paths,
        seed,
        tolerance_ppm: (tolerance.unwrap_or(cat.simulation.completion_tolerance).clamp(0.0, 0.5) * 1e6).round() as u64,
        // Multi-site jobs count a message complete at the receiver, cut-through.
        completion: Default::default(),
        link_history: false,
        window: cat.simulation.nccl_buffer.map_or(0, |b| b.0),
        p2p_window: cat.simulation.nccl_p2p_window.map_or(0, |b| b.0),
    };
    Ok((cfg, kind.to_string()))
}

/// (step - base) / step, negative when the sites' step is the faster (an ECMP hash can
/// place the sites' flows better than the one site's).
fn share(step: u64, base: u64) -> f64 {
    let x = (step as f64 - base as f64) / step.max(1) as f64;
    (x * 1e6).round() / 1e6
}

fn check_opts(opts: &Options, cat: &Catalog) -> Result<(), SimulateError> {
    if !(opts.budget > 0.0 && opts.budget < 1.0) {
        return Err(SimulateError::BadOption {
            option: "--budget",
            message: format!("expected a share in (0, 1), got {}", opts.budget),
        });
    }
    // Distances print to the metre (and a metre of fibre is 4.9 ns): a finer step would
    // print both sides of the break-even alike.
    if opts.resolution < Meters::from_m(1) {
        return Err(SimulateError::BadOption {
            option: "--resolution",
            message: format!("expected at least 1m, got {}", opts.resolution),
        });
    }
    if opts.max_distance.0 == 0 {
        return Err(SimulateError::BadOption {
            option: "--max-distance",
            message: "must be positive (the break-even search needs a distance to try)".into(),
        });
    }
    // The search steps in units of the resolution up to its limit (--max-distance, at most
    // the longest coherent reach): a coarser step has no distance to try.
    let limit = opts.max_distance.min(coherent_reach(cat));
    if opts.resolution > limit {
        return Err(SimulateError::BadOption {
            option: "--resolution",
            message: format!(
                "{} is above the search limit ({}: --max-distance {}, the longest coherent reach {})",
                opts.resolution,
                limit,
                opts.max_distance,
                coherent_reach(cat)
            ),
        });
    }
    Ok(())
}

/// Checks that `s` is a multi-site scenario with a workload multisite can run; returns the
/// workload's index.
fn check(s: &Scenario) -> Result<usize, FabricError> {
    let top = Ctx::new(&s.file, &s.text, "", 0, "");
    if s.config.fabric.is_some() || s.config.site.len() < 2 {
        return Err(top.invalid(
            "site",
            "multisite needs two or more [[site]] tables (each with a [site.fabric]) joined by [[dci]] links; \
             this scenario has one site",
        ));
    }
    if let Some((i, _)) = s.config.site.iter().enumerate().find(|(_, x)| x.fabric.is_none()) {
        let c = Ctx::new(&s.file, &s.text, "site", i, &format!("site[{}]", i + 1));
        return Err(c.invalid("fabric", "missing: multisite needs a [site.fabric] for every site"));
    }
    if let Some((i, _)) =
        s.config.site.iter().enumerate().find(|(_, x)| x.fabric.as_ref().is_some_and(|f| f.gpus.is_none()))
    {
        let c = Ctx::new(&s.file, &s.text, "site.fabric", i, &format!("site[{}].fabric", i + 1));
        return Err(c.invalid("gpus", "missing: multisite needs each site's GPU count"));
    }
    let gpus = |i: usize| s.config.site[i].fabric.as_ref().and_then(|f| f.gpus).unwrap_or(0);
    if let Some(i) = (1..s.config.site.len()).find(|&i| gpus(i) != gpus(0)) {
        let c = Ctx::new(&s.file, &s.text, "site.fabric", i, &format!("site[{}].fabric", i + 1));
        return Err(c.invalid(
            "gpus",
            format!(
                "{} GPUs, but site[1] ({}) has {}: multisite reduces data parallelism by site, which needs \
                 the same number of GPUs at every site",
                gpus(i),
                s.config.site[0].name,
                gpus(0)
            ),
        ));
    }
    // The job is weighed against one site of the same fabric holding every GPU: that needs one
    // fabric, whichever site is listed first (a site of another family or slower NICs made
    // the answer depend on the order of the tables: break-even 47 km one way, 985 the other).
    let shape = |i: usize| -> serde_json::Map<String, serde_json::Value> {
        let mut v = s.config.site[i].fabric.as_ref().and_then(|f| serde_json::to_value(f).ok());
        match v.as_mut().and_then(|v| v.as_object_mut()) {
            Some(m) => {
                m.remove("gpus");
                m.retain(|_, x| !x.is_null());
                std::mem::take(m)
            }
            None => serde_json::Map::new(),
        }
    };
    let first = shape(0);
    for i in 1..s.config.site.len() {
        let other = shape(i);
        let keys: std::collections::BTreeSet<String> = first.keys().chain(other.keys()).cloned().collect();
        let differs = keys.into_iter().find(|k| first.get(k) != other.get(k));
        if let Some(k) = differs.as_deref() {
            let c = Ctx::new(&s.file, &s.text, "site.fabric", i, &format!("site[{}].fabric", i + 1));
            return Err(c.invalid(
                k,
                format!(
                    "differs from site[1] ({})'s: multisite weighs the job against one site of the same fabric \
                     holding every GPU, which needs every site's [site.fabric] the same apart from `gpus`",
                    s.config.site[0].name
                ),
            ));
        }
    }
    for (nth, w) in s.config.workload.iter().enumerate() {
        let all_reduce = w.op.unwrap_or(OpConfig::AllReduce) == OpConfig::AllReduce;
        if w.kind == WorkloadKind::Training || (w.kind == WorkloadKind::Collective && all_reduce) {
            return Ok(nth);
        }
    }
    Err(FabricError::Invalid {
        file: s.file.clone(),
        line: None,
        key: "workload".into(),
        message: "multisite needs a [[workload]] of kind \"training\" or a collective with op = \"all-reduce\"".into(),
    })
}

/// The demo's figures: the one-site step, the step at the scenario's own DCI and the
/// break-even distances (site-hierarchical and flat ring DP all-reduce).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub job: String,
    pub one_site_step_ns: u64,
    pub step_ns: u64,
    pub break_even: BreakEven,
    /// With a flat ring across sites instead.
    pub flat_break_even: BreakEven,
}

/// The longest reach of the catalog's coherent optics (the break-even search's ceiling).
fn coherent_reach(cat: &Catalog) -> Meters {
    cat.optic.iter().filter(|o| o.class == OpticClass::Coherent).map(|o| o.reach).max().unwrap_or(Meters(0))
}

/// [`Summary`] of `s` (only `budget`, `resolution`, `max_distance`, `seed` and `tolerance`
/// of `opts` are used).
pub fn summary(s: &Scenario, cat: &Catalog, opts: &Options) -> Result<Summary, SimulateError> {
    let (runner, _) = Runner::new(s, cat, opts, &quiet)?;
    let (_, job) = runner.describe()?;
    let f = s.build(cat)?;
    let base = baseline(s, cat, &runner, &f)?;
    let step = runner.run_built(s, &f, Some(&sites_of(&f, cat)))?;
    Ok(Summary {
        scenario: s.name.clone(),
        job,
        one_site_step_ns: base.hier,
        step_ns: step,
        break_even: search(s, cat, &runner, opts, base, true)?,
        flat_break_even: search(s, cat, &runner, opts, base, false)?,
    })
}

/// Multi-site analysis of `s` (module docs).
pub fn analyze(s: &Scenario, cat: &Catalog, opts: &Options) -> Result<Report, SimulateError> {
    analyze_with(s, cat, opts, &quiet)
}

/// [`analyze`], telling `progress` before each simulation how many ran before it and what
/// it is for ("one-site baseline", "distance 100 km", ...). The distances and wavelength
/// counts of the sweeps are taken in increasing order, each once.
pub fn analyze_with(
    s: &Scenario,
    cat: &Catalog,
    opts: &Options,
    progress: &dyn Fn(u64, &str),
) -> Result<Report, SimulateError> {
    let (runner, transport) = Runner::new(s, cat, opts, progress)?;
    let mut distances = opts.distances.clone();
    distances.sort_unstable();
    distances.dedup();
    let mut wavelengths = opts.wavelengths.clone();
    wavelengths.sort_unstable();
    wavelengths.dedup();
    let (kind, job) = runner.describe()?;
    let base_fabric = s.build(cat)?;
    let sites: Vec<SiteInfo> = base_fabric
        .sites
        .iter()
        .enumerate()
        .map(|(i, name)| SiteInfo {
            name: name.clone(),
            gpus: base_fabric.gpus().filter(|g| usize::from(base_fabric.node(*g).site) == i).count(),
        })
        .collect();
    let spans = dci_spans(&base_fabric, cat);

    runner.phase("the one-site baseline");
    let base = baseline(s, cat, &runner, &base_fabric)?;
    runner.phase("the scenario as written");
    let (step, flat) = both(&runner, s, &base_fabric, cat)?;

    let per_km = cat.constants.fiber_delay_per_km;
    let mut by_distance = Vec::new();
    // A sweep point whose fabric does not build (a core too small for 16 wavelengths) is
    // left out and said, not the end of the report.
    let mut not_built = Vec::new();
    for &d in &distances {
        runner.phase(format!("the distance sweep at {d}"));
        let v = variant(s, cat, Some(d), None);
        let f = match v.build(cat) {
            Ok(f) => f,
            Err(e) => {
                not_built.push(format!("--distances {d}: every DCI span set to {d} does not build: {e}"));
                continue;
            }
        };
        let (step, flat) = both(&runner, &v, &f, cat)?;
        let spans = dci_spans(&f, cat);
        by_distance.push(DistanceRow {
            distance_m: d.0 / 1000,
            optics: spans.iter().map(|x| x.optic.clone()).collect(),
            wavelengths: spans.iter().map(|x| x.wavelengths).collect(),
            dci_bps: spans.iter().map(|x| x.capacity_bps).collect(),
            dci_rtt_ns: d.propagation(per_km).0 * 2,
            step_ns: step,
            flat_step_ns: flat,
            cross_site_share: share(step, base.hier),
            flat_cross_site_share: share(flat, base.flat),
            headroom: headroom(&v, &f, cat)?,
        });
    }
    let mut by_capacity = Vec::new();
    for &w in &wavelengths {
        runner.phase(format!("the capacity sweep at {w} wavelengths"));
        let v = variant(s, cat, None, Some(w));
        let f = match v.build(cat) {
            Ok(f) => f,
            Err(e) => {
                not_built.push(format!("--wavelengths {w}: every DCI span with {w} wavelengths does not build: {e}"));
                continue;
            }
        };
        by_capacity.push(capacity_row(&runner, &v, &f, w, base)?);
    }

    runner.phase("the break-even search, site-hierarchical");
    let break_even = search(s, cat, &runner, opts, base, true)?;
    runner.phase("the break-even search, flat ring");
    let flat_break_even = search(s, cat, &runner, opts, base, false)?;
    let mut zero_km_capacity = None;
    // The most wavelengths of the capacity sweep that built, if more than the scenario's.
    let now_most = spans.iter().map(|x| x.wavelengths).max().unwrap_or(0);
    let most = by_capacity.iter().map(|c| c.wavelengths).max().filter(|&w| w > now_most);
    if let Some(w) = most.filter(|_| [&break_even, &flat_break_even].iter().any(|b| b.outcome == "at-zero")) {
        runner.phase(format!("0 km with {w} wavelengths"));
        let v = variant(s, cat, Some(Meters(0)), Some(w));
        match v.build(cat) {
            Ok(f) => zero_km_capacity = Some(capacity_row(&runner, &v, &f, w, base)?),
            Err(e) => not_built.push(format!("0 km with {w} wavelengths a span does not build: {e}")),
        }
    }
    Ok(Report {
        scenario: s.name.clone(),
        sites,
        spans,
        workload: s.config.workload[runner.nth].name.clone().unwrap_or_else(|| format!("{kind}-{}", runner.nth + 1)),
        kind,
        job,
        gpus: base_fabric.gpu_count(),
        transport,
        routing: runner.cfg.policy,
        one_site_step_ns: base.hier,
        one_site_flat_step_ns: base.flat,
        step_ns: step,
        flat_step_ns: flat,
        cross_site_share: share(step, base.hier),
        flat_cross_site_share: share(flat, base.flat),
        by_distance,
        by_capacity,
        not_built,
        break_even,
        flat_break_even,
        zero_km_capacity,
        notes: notes(s, runner.cfg.policy),
    })
}

/// The report's notes (see [`Report::notes`]).
fn notes(s: &Scenario, routing: Policy) -> Vec<String> {
    let mut v = Vec::new();
    let failures = s.config.failure.len();
    if failures > 0 {
        v.push(format!(
            "the scenario's {failures} [[failure]] table{} not modelled here: every figure is for a healthy \
             fabric (`meshway simulate` runs them)",
            if failures == 1 { " is" } else { "s are" }
        ));
    }
    if s.config
        .simulation
        .as_ref()
        .and_then(|x| x.fidelity)
        .is_some_and(|f| f != meshway_fabric::config::FidelityConfig::Flow)
    {
        v.push("multisite runs at the flow level; `simulation.fidelity` applies to `meshway simulate`".into());
    }
    if routing == Policy::Ecmp {
        v.push(
            "ECMP: which flows share a link depends on the hash seed (`--seed`), so the steps and break-even \
             distances move with it (the two-site example's step at 100 km: 114.5 to 117.2 ms over seeds 1 to 12); \
             adaptive routing and spraying do not depend on it"
                .into(),
        );
    }
    v
}

/// Search over distance, in units of the resolution, for the smallest distance at which the
/// cross-site share exceeds the budget (the share grows with distance): bisection
/// interleaved with linear interpolation.
fn search(
    s: &Scenario,
    cat: &Catalog,
    runner: &Runner<'_>,
    opts: &Options,
    base: Base,
    hier: bool,
) -> Result<BreakEven, SimulateError> {
    let one = base.of(hier);
    let limit = opts.max_distance.min(coherent_reach(cat));
    let res = opts.resolution.0;
    let mut memo: BTreeMap<u64, f64> = BTreeMap::new();
    let mut eval = |k: u64| -> Result<f64, SimulateError> {
        if let Some(x) = memo.get(&k) {
            return Ok(*x);
        }
        let v = variant(s, cat, Some(Meters(k * res)), None);
        let f = v.build(cat)?;
        let sites = sites_of(&f, cat);
        let x = share(runner.run_built(&v, &f, hier.then_some(&sites[..]))?, one);
        memo.insert(k, x);
        Ok(x)
    };
    let m = |k: u64| k * res / 1000;
    let mut hi_k = limit.0 / res;
    // The search ends where the fabric still builds: a span whose optic gives way to a slower
    // one past its reach needs more wavelengths, and past a span's 4,096 it does not build
    // (2,100 x 800ZR beyond 120 km). Found by bisection on building alone (no simulation).
    let builds = |k: u64| variant(s, cat, Some(Meters(k * res)), None).build(cat).is_ok();
    if hi_k > 0 && !builds(hi_k) && builds(0) {
        let (mut lo, mut hi) = (0u64, hi_k);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if builds(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi_k = lo;
    }
    let mut b = BreakEven {
        budget: opts.budget,
        outcome: String::new(),
        distance_m: None,
        share_at_distance: None,
        below_m: None,
        share_below: None,
        resolution_m: res / 1000,
        evaluations: 0,
    };
    let at0 = eval(0)?;
    if at0 > opts.budget {
        b.outcome = "at-zero".into();
        b.distance_m = Some(0);
        b.share_at_distance = Some(at0);
    } else {
        let top = eval(hi_k)?;
        if top <= opts.budget {
            b.outcome = "beyond".into();
            b.below_m = Some(m(hi_k));
            b.share_below = Some(top);
        } else {
            // Bracket [lo, hi] with share(lo) <= budget < share(hi). Rounds alternate a
            // linear interpolation (the share is nearly linear in distance) followed by a
            // probe of the neighbouring point, and a plain bisection (so the bracket at
            // least halves every two rounds whatever the shape).
            let (mut lo, mut hi) = (0u64, hi_k);
            let (mut f_lo, mut f_hi) = (at0, top);
            let mut round = 0u32;
            while hi - lo > 1 {
                let guess = if round.is_multiple_of(2) && f_hi > f_lo {
                    let t = (opts.budget - f_lo) / (f_hi - f_lo);
                    (lo + (t * (hi - lo) as f64).round() as u64).clamp(lo + 1, hi - 1)
                } else {
                    lo + (hi - lo) / 2
                };
                let f = eval(guess)?;
                if f > opts.budget {
                    hi = guess;
                    f_hi = f;
                    if round.is_multiple_of(2) && hi - lo > 1 {
                        let g = eval(hi - 1)?;
                        if g <= opts.budget {
                            lo = hi - 1;
                            f_lo = g;
                        } else {
                            hi -= 1;
                            f_hi = g;
                        }
                    }
                } else {
                    lo = guess;
                    f_lo = f;
                    if round.is_multiple_of(2) && hi - lo > 1 {
                        let g = eval(lo + 1)?;
                        if g > opts.budget {
                            hi = lo + 1;
                            f_hi = g;
                        } else {
                            lo += 1;
                            f_lo = g;
                        }
                    }
                }
                round += 1;
            }
            b.outcome = "within".into();
            b.distance_m = Some(m(hi));
            b.share_at_distance = Some(eval(hi)?);
            b.below_m = Some(m(lo));
            b.share_below = Some(eval(lo)?);
        }
    }
    b.evaluations = memo.len();
    Ok(b)
}
