//! The placement optimizer: how many GPUs at each candidate site so that every region meets
//! its p99 time-to-first-token objective at least cost.
//!
//! Method (exact for its sizing rule, then checked by simulation):
//! 1. Every subset of candidate sites (a site is a candidate when `max-gpus` allows one
//!    server) is tried as the set of open sites; each region is served by its nearest open
//!    site serving its model.
//! 2. Latency rule: round trip + prefill of the p99 prompt + prefill of one mean prompt ahead
//!    of it must fit the region's objective (queueing is kept small by the next rule, and
//!    checked by simulation).
//! 3. Sizing rule: a site gets the fewest servers that keep its peak load (rate x the largest
//!    daily-profile multiplier) at most `target-utilization` of its full-batch capacity, at
//!    least one server where any region's requests go (none where none go: an open site no
//!    region reaches stays empty), and no more than `max-gpus`. A region that sends nothing
//!    (a zero rate) loads no site and holds no objective. A server's capacity comes from the
//!    model: the batch its KV cache holds at mean lengths (shaped models), cut to the largest
//!    batch whose decode step keeps the strictest TPOT objective of the regions it serves.
//!    A region whose TPOT objective even a lone request misses is a latency violation.
//!    Disaggregated: a prefill-only site is sized for the prompts it prefills alone, the
//!    decode site it hands them to (the linked open decode site nearest the user) for the
//!    requests it decodes, and each DCI link's KV-cache traffic must stay within
//!    `target-utilization` of the capacity other traffic leaves.
//! 4. With N+1, steps 1-3 are repeated with each open site failed (its regions move to their
//!    next nearest open site) and each site keeps the largest size any case needs. A single
//!    failed route moves one region to the place a failure of its site would move it, so
//!    sizing for site failures also covers single route failures.
//! 5. Subsets that pass are simulated cheapest first (ties: fewer GPUs); a region that still
//!    misses gets one more server at the site that made its first tokens (a TTFT miss) or
//!    decoded them (a TPOT miss or anything else), up to a few rounds. Repairs only
//!    add cost, so the search stops when the next subset's sized cost reaches the cheapest
//!    simulated plan that met every objective (or after a few subsets); that plan wins.
//!
//! All-central and all-edge are sized by the same rules (latency misses are reported, not
//! fixed) and simulated for comparison; the optimized plan is checked against every single
//! site and route failure by simulation.

use crate::sim::{simulate, InferReport, Run};
use crate::spec::{Cost, InferSpec};
use meshway_fabric::infer_config::SiteRole;
use meshway_fabric::infer_config::SiteTier;
use serde::Serialize;

/// Candidate sites beyond which exhaustive search stops (2^16 subsets).
pub const MAX_CANDIDATES: usize = 16;

#[derive(Debug, Clone)]
pub struct PlaceOptions {
    /// Size every site for the failure of any one open site.
    pub n_plus_1: bool,
    pub duration_ns: u64,
    pub seed: u64,
    /// Simulate and repair at most this many rounds (0: sizing rule only, no simulation).
    pub repair_rounds: u32,
    /// Check the optimized plan by simulation against each single site and route failure.
    pub failure_check: bool,
}

/// A sized placement.
#[derive(Debug, Clone, Serialize)]
pub struct Sizing {
    /// Servers per site (0: closed).
    pub servers: Vec<u32>,
    /// Region -> serving site without failures.
    pub assignment: Vec<Option<usize>>,
    /// Why the sizing rules are not met (latency beyond the objective, site over max-gpus).
    pub violations: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionOutcome {
    pub name: String,
    /// The site that served most of its requests (None when none was served).
    pub site: Option<String>,
    /// Requests the region sent in the simulated run (0: its objective was not tested).
    pub requests: u64,
    /// None when no request was served (no open site reached it).
    pub ttft_p99_ns: Option<u64>,
    pub objective_ns: u64,
    /// The site that made most of the region's first tokens (its prefill site under
    /// disaggregation; else `site`; None when none was made).
    pub prefill_site: Option<String>,
    /// p99 time per output token (None when no request was served).
    pub tpot_p99_ns: Option<u64>,
    /// The region's TPOT objective, when it has one.
    pub tpot_objective_ns: Option<u64>,
    /// The objectives held (vacuously for a region that sent no requests).
    pub met: bool,
}

impl RegionOutcome {
    /// The p99 TPOT is over its objective.
    pub fn tpot_missed(&self) -> bool {
        matches!((self.tpot_p99_ns, self.tpot_objective_ns), (Some(t), Some(o)) if t > o)
    }
    /// The p99 TTFT is over its objective, or the region missed for a reason other than
    /// its TPOT (requests unserved).
    pub fn ttft_missed(&self) -> bool {
        self.ttft_p99_ns.is_none_or(|t| t > self.objective_ns) || (!self.met && !self.tpot_missed())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteOutcome {
    pub name: String,
    pub tier: SiteTier,
    pub gpus: u32,
    pub gpu_utilization: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    /// GPUs per site from the sizing rules.
    pub sized_gpus: Vec<u32>,
    pub sized_cost_usd_per_hour: f64,
    pub violations: Vec<String>,
    /// GPUs per site after simulation repairs.
    pub gpus: Vec<u32>,
    pub cost_usd_per_hour: f64,
    pub repaired_servers: u32,
    pub simulated: bool,
    pub all_met: bool,
    /// max over regions of p99 TTFT - objective (negative: slack).
    pub worst_margin_ns: i64,
    pub regions: Vec<RegionOutcome>,
    pub sites: Vec<SiteOutcome>,
    /// Region -> the site that makes its first tokens, by the sizing rules, without failures
    /// (the nearest open site that prefills).
    pub first_token_site: Vec<Option<String>>,
}

impl PlacementReport {
    /// Why the placement did not answer what was asked, for the exit status: no site may
    /// host, no subset passes the sizing rules, the optimized plan misses an objective in its
    /// simulation, or (when N+1 was asked and the failures were simulated) a single failure
    /// makes a region miss. None when the optimized plan holds.
    pub fn unmet(&self) -> Option<String> {
        if self.candidates.is_empty() {
            return Some("no site may host: every site's max-gpus is below one server of its model".to_string());
        }
        let Some(p) = self.plans.iter().find(|p| p.name == "optimized") else {
            return Some(format!(
                "no placement passes the sizing rules{}",
                if self.n_plus_1 { " with N+1" } else { "" }
            ));
        };
        // A simulation in which no region sent a request tested nothing ("0 of 0 regions
        // meet" exited 0 as if the plan held).
        if p.simulated && p.all_met && p.regions.iter().all(|r| r.requests == 0) {
            return Some(
                "no region sent a request in the simulated run, so the optimized plan is untested: give a longer --duration (or a rate above 0)"
                    .to_string(),
            );
        }
        if !p.all_met {
            let missed: Vec<&str> = p.regions.iter().filter(|r| !r.met).map(|r| r.name.as_str()).collect();
            return Some(if p.simulated {
                format!(
                    "the optimized plan misses an objective in simulation ({} of {} regions: {})",
                    missed.len(),
                    p.regions.len(),
                    missed.join(", ")
                )
            } else {
                format!("the optimized plan breaks the sizing rules: {}", p.violations.join("; "))
            });
        }
        if self.n_plus_1 && !self.failures.is_empty() && !self.n_plus_1_holds {
            let n = self.failures.iter().filter(|f| !f.holds).count();
            return Some(format!(
                "N+1 does not hold: {n} of {} single failures simulated make a region miss",
                self.failures.len()
            ));
        }
        None
    }
}

/// A region's network round trip to each site, for the placement map.
#[derive(Debug, Clone, Serialize)]
pub struct RegionRoutes {
    pub name: String,
    pub ttft_p99_objective_ns: u64,
    /// Zero-load round trip to each site (in `site_names` order); `None` where the site serves
    /// another model or no path is given.
    pub rtt_ns: Vec<Option<u64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureCheck {
    /// "site NAME" or "route REGION -> SITE".
    pub failure: String,
    pub holds: bool,
    pub worst_region: String,
    /// The worst region's p99 time to first token (None: it had no request served).
    pub worst_ttft_p99_ns: Option<u64>,
    /// p99 TTFT beyond the objective in the worst region (0 when it holds).
    pub miss_ns: u64,
    /// The worst region's p99 time per output token, when it has a TPOT objective (None
    /// too when it had no request served).
    pub worst_tpot_p99_ns: Option<u64>,
    /// p99 TPOT beyond its objective in the worst region (0 when it holds or has none).
    pub tpot_miss_ns: u64,
    pub unserved: u64,
    /// Regions that sent no request in this run: the failure is untested for them.
    pub untested: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlacementReport {
    pub scenario: String,
    pub policy: crate::Policy,
    pub n_plus_1: bool,
    pub target_utilization: f64,
    pub candidates: Vec<String>,
    pub subsets_evaluated: u64,
    /// Subsets that pass the sizing rules.
    pub subsets_feasible: u64,
    /// Of those, how many were simulated (cheapest first).
    pub subsets_simulated: u64,
    /// The search stopped at its cap ([`MAX_SIMULATED_UNMET`]) with subsets left and no
    /// simulated subset meeting every objective.
    pub search_capped: bool,
    pub site_names: Vec<String>,
    /// Each region's round trip to each site.
    pub routes: Vec<RegionRoutes>,
    pub plans: Vec<Plan>,
    /// The optimized plan under each single failure.
    pub failures: Vec<FailureCheck>,
    pub n_plus_1_holds: bool,
    /// Without `--n-plus-1`, when a failure misses: whether any subset passes the sizing rules
    /// with N+1 (so `--n-plus-1` has a plan to offer). None otherwise.
    pub n_plus_1_sizable: Option<bool>,
}

fn gps(spec: &InferSpec, s: usize) -> u32 {
    spec.models[spec.sites[s].model].gpus_per_server
}

fn cost(spec: &InferSpec, servers: &[u32]) -> f64 {
    servers.iter().enumerate().map(|(s, &n)| f64::from(n) * f64::from(gps(spec, s)) * spec.sites[s].gpu_hour_usd).sum()
}

/// Peak request rate of a region (largest daily-profile multiplier).
fn peak_rate(spec: &InferSpec, r: usize) -> f64 {
    let reg = &spec.regions[r];
    reg.rate * reg.profile.as_ref().map_or(1.0, |p| p.iter().copied().fold(0.0, f64::max))
}

/// A region that sends nothing: an open loop at a zero rate (or a profile of zeros).
fn idle(spec: &InferSpec, r: usize) -> bool {
    spec.regions[r].concurrency.is_none() && peak_rate(spec, r) <= 0.0
}

/// Where region `r`'s requests go with `open` sites and `failed` down: the first-token site
/// (nearest open site that prefills) and, when that site only prefills, the decode site it
/// hands to (nearest the user among its linked open decode sites) with the link.
fn assign(spec: &InferSpec, r: usize, open: &[bool], failed: Option<usize>) -> Option<(usize, Option<(usize, usize)>)> {
    let reg = &spec.regions[r];
    let usable = |s: usize| open[s] && Some(s) != failed && spec.sites[s].model == reg.model;
    let decode_for = |p: usize| {
        spec.decode_links(p)
            .into_iter()
            .filter(|&(_, d)| usable(d))
            .filter_map(|(l, d)| reg.paths[d].as_ref().map(|x| (x.one_way.0, d, l)))
            .min()
            .map(|(_, d, l)| (d, l))
    };
    (0..spec.sites.len())
        .filter(|&s| usable(s) && spec.sites[s].role != SiteRole::Decode)
        .filter(|&s| spec.sites[s].role != SiteRole::Prefill || decode_for(s).is_some())
        .filter_map(|s| reg.paths[s].as_ref().map(|p| (p.one_way.0, s)))
        .min()
        .map(|(_, s)| (s, if spec.sites[s].role == SiteRole::Prefill { decode_for(s) } else { None }))
}

/// Sizes the open sites by the latency and utilization rules (see the module docs).
/// Per model, the prefill part of the sizing rule's TTFT estimate: its p99 prompt and one
/// mean prompt ahead. Computed once per search, not per subset (with a small token budget a
/// prefill is thousands of steps).
pub fn prefill_estimates(spec: &InferSpec) -> Vec<u64> {
    spec.models.iter().map(|m| m.prefill_ns(m.prompt_p99()).saturating_add(m.prefill_ns(m.prompt_tokens))).collect()
}

pub fn size(spec: &InferSpec, open: &[bool], n_plus_1: bool, prefill: &[u64]) -> Sizing {
    let ns = spec.sites.len();
    let mut servers = vec![0u32; ns];
    let mut violations = Vec::new();
    let mut cases: Vec<Option<usize>> = vec![None];
    if n_plus_1 {
        cases.extend((0..ns).filter(|&s| open[s]).map(Some));
    }
    let mut assignment = vec![None; spec.regions.len()];
    for &failed in &cases {
        // Requests per second each site prefills alone, decodes alone, or serves whole.
        let (mut pre, mut dec, mut both) = (vec![0.0f64; ns], vec![0.0f64; ns], vec![0.0f64; ns]);
        let mut dci = vec![0.0f64; spec.dcis.len()];
        let mut tpot: Vec<Option<u64>> = vec![None; ns];
        for (r, reg) in spec.regions.iter().enumerate() {
            let when = failed.map(|f| format!(" when {} fails", spec.sites[f].name)).unwrap_or_default();
            let idle = idle(spec, r);
            let Some((s, handoff)) = assign(spec, r, open, failed) else {
                if !idle {
                    violations.push(format!("{}: no open site{when}", reg.name));
                }
                continue;
            };
            if failed.is_none() {
                assignment[r] = Some(s);
            }
            // A region that sends nothing (a zero rate, or a profile of zeros) loads no site
            // and holds no objective: it neither sizes a site nor makes a plan fail.
            if idle {
                continue;
            }
            let m = &spec.models[reg.model];
            let ow = reg.paths[s].as_ref().map_or(0, |p| p.one_way.0);
            let est = ow.saturating_mul(2).saturating_add(prefill[reg.model]);
            if est > reg.ttft_p99.0 {
                violations.push(format!(
                    "{}: {}{when} is {:.1}ms away (round trip + p99 prefill + one prefill ahead), objective {:.1}ms",
                    reg.name,
                    spec.sites[s].name,
                    est as f64 / 1e6,
                    reg.ttft_p99.0 as f64 / 1e6
                ));
            }
            let rate = match reg.concurrency {
                // A closed loop's users each wait for their request, so they send at most
                // users / (round trip + a lone request at the mean lengths): Little's law
                // at the shortest response time, an upper bound on its throughput.
                Some(users) => f64::from(users) * 1e9 / (2.0 * ow as f64 + m.lone_ns()).max(1e3),
                None => peak_rate(spec, r),
            };
            let decoder = match handoff {
                Some((d, l)) => {
                    pre[s] += rate;
                    dec[d] += rate;
                    if let Cost::Shape(sh) = &m.cost {
                        dci[l] += rate * f64::from(m.prompt_tokens) * sh.kv_bytes_per_token;
                    }
                    d
                }
                None => {
                    both[s] += rate;
                    s
                }
            };
            if let Some(t) = reg.tpot_p99 {
                tpot[decoder] = Some(tpot[decoder].map_or(t.0, |x| x.min(t.0)));
                let ctx = f64::from(m.prompt_tokens) + f64::from(m.output_tokens) / 2.0;
                let lone = 1e9 / m.stream_rate(1, ctx);
                if lone > t.0 as f64 {
                    violations.push(format!(
                        "{}: a lone request decodes at {:.1}ms per token on model {:?}, objective {:.1}ms",
                        reg.name,
                        lone / 1e6,
                        m.name,
                        t.0 as f64 / 1e6
                    ));
                }
            }
        }
        let u = spec.target_utilization;
        for s in 0..ns {
            if open[s] {
                let m = &spec.models[spec.sites[s].model];
                // Servers busy prefilling alone, decoding alone, or doing both, as shares.
                let busy = pre[s] / (u * m.prefill_capacity())
                    + dec[s] / (u * m.decode_capacity_within(tpot[s]))
                    + both[s] / (u * m.server_capacity_within(tpot[s]));
                // A site no region's requests reach in this case needs no server: all-edge
                // bought one at every edge site, reached or not.
                let loaded = pre[s] + dec[s] + both[s] > 0.0;
                let need = if loaded { (busy - 1e-9).ceil().max(1.0) as u32 } else { 0 };
                servers[s] = servers[s].max(need);
            }
        }
        for (l, bytes) in dci.iter().enumerate() {
            let d = &spec.dcis[l];
            if *bytes > u * d.usable_bytes_per_s() {
                violations.push(format!(
                    "dci {} - {} carries {:.1} Gb/s of KV caches, more than {:.0}% of the {:.1} Gb/s left by other traffic",
                    spec.sites[d.a].name,
                    spec.sites[d.b].name,
                    bytes * 8.0 / 1e9,
                    u * 100.0,
                    d.usable_bytes_per_s() * 8.0 / 1e9
                ));
            }
        }
    }
    for (s, n) in servers.iter_mut().enumerate() {
        let max = spec.sites[s].max_gpus / gps(spec, s);
        if *n > max {
            violations.push(format!(
                "{} needs {}{} GPUs, max-gpus is {}",
                spec.sites[s].name,
                // `need` saturates at u32::MAX servers.
                if *n == u32::MAX { "more than " } else { "" },
                u64::from(*n) * u64::from(gps(spec, s)),
                spec.sites[s].max_gpus
            ));
            *n = max;
        }
    }
    violations.dedup();
    Sizing { servers, assignment, violations }
}

/// The candidate sites: those where max-gpus allows at least one server.
pub fn candidates(spec: &InferSpec) -> Vec<usize> {
    (0..spec.sites.len()).filter(|&s| spec.sites[s].max_gpus >= gps(spec, s)).collect()
}

/// Every subset of candidates that passes the sizing rules, cheapest first (ties: fewer
/// GPUs, then subset order), and how many subsets were tried.
pub fn ranked(spec: &InferSpec, n_plus_1: bool) -> (Vec<(f64, Sizing)>, u64) {
    let cand = candidates(spec);
    let k = cand.len().min(MAX_CANDIDATES);
    let mut ok: Vec<(f64, u64, u32, Sizing)> = Vec::new();
    let mut tried = 0;
    let prefill = prefill_estimates(spec);
    for mask in 1u32..(1u32 << k) {
        let mut open = vec![false; spec.sites.len()];
        for (i, &s) in cand.iter().take(k).enumerate() {
            open[s] = mask & (1 << i) != 0;
        }
        tried += 1;
        let sz = size(spec, &open, n_plus_1, &prefill);
        if sz.violations.is_empty() {
            let g: u64 = sz.servers.iter().enumerate().map(|(s, &n)| u64::from(n) * u64::from(gps(spec, s))).sum();
            ok.push((cost(spec, &sz.servers), g, mask, sz));
        }
    }
    ok.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    (ok.into_iter().map(|(c, _, _, sz)| (c, sz)).collect(), tried)
}

/// The cheapest sizing over all subsets of candidates that passes the sizing rules, and how
/// many subsets were tried.
pub fn optimize(spec: &InferSpec, n_plus_1: bool) -> (Option<Sizing>, u64) {
    let (r, tried) = ranked(spec, n_plus_1);
    (r.into_iter().next().map(|(_, sz)| sz), tried)
}

/// Subsets simulated at most when looking for the cheapest plan that meets every objective,
/// once one has met (an assumption: the sizing rules rank subsets well enough that a cheaper
/// met plan rarely lies further down).
pub const MAX_SIMULATED_SUBSETS: usize = 8;

/// Subsets simulated at most while none has met every objective: subsets the sizing rules
/// pass can all miss in simulation (far cheap sites whose estimate is just inside the
/// objective, a `max-gpus` that stops the repair), and a met plan may lie further down.
pub const MAX_SIMULATED_UNMET: usize = 64;

fn run_for(spec: &InferSpec, servers: &[u32], opt: &PlaceOptions) -> Run {
    let mut run = Run::new(spec);
    run.servers = servers.to_vec();
    run.duration_ns = opt.duration_ns;
    run.seed = opt.seed;
    run
}

fn plan(spec: &InferSpec, name: &str, sz: &Sizing, opt: &PlaceOptions, repair: bool) -> Plan {
    let g = |v: &[u32]| v.iter().enumerate().map(|(s, &n)| n * gps(spec, s)).collect::<Vec<_>>();
    let mut servers = sz.servers.clone();
    let mut repaired = 0;
    let mut rep: Option<InferReport> = None;
    if opt.repair_rounds > 0 {
        let rounds = if repair { opt.repair_rounds } else { 1 };
        for round in 0..rounds {
            let r = simulate(spec, &run_for(spec, &servers, opt));
            let mut grew = false;
            if round + 1 < rounds {
                for reg in r.regions.iter().filter(|x| !x.met) {
                    // A late first token needs the site that made it; a slow stream (or
                    // anything unserved) the site that decoded it.
                    let ttft_late = reg.ttft.p99_ns > reg.ttft_p99_objective_ns;
                    let tpot_late = reg.tpot_p99_objective_ns.is_some_and(|o| reg.tpot.p99_ns > o) || reg.unserved > 0;
                    let mut grow: Vec<&str> = Vec::new();
                    if ttft_late {
                        grow.extend(reg.prefill_site.as_deref());
                    }
                    if tpot_late || !ttft_late {
                        grow.extend(reg.main_site.as_deref());
                    }
                    grow.dedup();
                    for name in grow {
                        if let Some(s) = spec.sites.iter().position(|x| x.name == name) {
                            if (servers[s] + 1) * gps(spec, s) <= spec.sites[s].max_gpus {
                                servers[s] += 1;
                                repaired += 1;
                                grew = true;
                            }
                        }
                    }
                }
            }
            rep = Some(r);
            if !grew {
                break;
            }
        }
    }
    let (all_met, worst, regions, sites) = match &rep {
        Some(r) => (
            r.all_met,
            r.worst_margin_ns(),
            r.regions
                .iter()
                .map(|x| RegionOutcome {
                    name: x.name.clone(),
                    site: x.main_site.clone(),
                    requests: x.requests,
                    ttft_p99_ns: (x.served > 0).then_some(x.ttft.p99_ns),
                    objective_ns: x.ttft_p99_objective_ns,
                    prefill_site: x.prefill_site.clone(),
                    tpot_p99_ns: (x.served > 0).then_some(x.tpot.p99_ns),
                    tpot_objective_ns: x.tpot_p99_objective_ns,
                    met: x.met,
                })
                .collect(),
            r.sites
                .iter()
                .map(|x| SiteOutcome {
                    name: x.name.clone(),
                    tier: x.tier,
                    gpus: x.gpus,
                    gpu_utilization: x.gpu_utilization,
                })
                .collect(),
        ),
        None => (sz.violations.is_empty(), 0, Vec::new(), Vec::new()),
    };
    Plan {
        name: name.to_string(),
        sized_gpus: g(&sz.servers),
        sized_cost_usd_per_hour: cost(spec, &sz.servers),
        violations: sz.violations.clone(),
        gpus: g(&servers),
        cost_usd_per_hour: cost(spec, &servers),
        repaired_servers: repaired,
        simulated: rep.is_some(),
        all_met,
        worst_margin_ns: worst,
        regions,
        sites,
        // A region that sends nothing makes no first token anywhere (its `site` is null too).
        first_token_site: sz
            .assignment
            .iter()
            .enumerate()
            .map(|(r, a)| a.filter(|_| !idle(spec, r)).map(|s| spec.sites[s].name.clone()))
            .collect(),
    }
}

/// Simulates `servers` under each single site failure and each failure of a region's route to
/// the site that served most of its requests (`main_site`, by region, from a run without
/// failures).
pub fn failure_checks(
    spec: &InferSpec,
    servers: &[u32],
    routes: &[Vec<String>],
    opt: &PlaceOptions,
) -> Vec<FailureCheck> {
    let mut runs = Vec::new();
    for s in (0..spec.sites.len()).filter(|&s| servers[s] > 0) {
        let mut run = run_for(spec, servers, opt);
        run.site_down[s] = true;
        runs.push((format!("site {}", spec.sites[s].name), run));
    }
    for (r, sites) in routes.iter().enumerate() {
        for site in sites {
            if let Some(s) = spec.sites.iter().position(|x| &x.name == site) {
                let mut run = run_for(spec, servers, opt);
                run.path_down.push((r, s));
                runs.push((format!("route {} -> {site}", spec.regions[r].name), run));
            }
        }
    }
    let (names, runs): (Vec<String>, Vec<Run>) = runs.into_iter().unzip();
    names
        .into_iter()
        .zip(simulate_all(spec, &runs))
        .map(|(failure, rep)| {
            // The worst region: unserved requests first, then the largest p99 over its
            // objective, time to first token or time per output token alike.
            let over = |x: &crate::sim::RegionResult| {
                let ttft = x.ttft.p99_ns as f64 / x.ttft_p99_objective_ns.max(1) as f64;
                let tpot = x.tpot_p99_objective_ns.map_or(0.0, |o| x.tpot.p99_ns as f64 / o.max(1) as f64);
                ttft.max(tpot)
            };
            let worst = rep
                .regions
                .iter()
                .max_by(|a, b| {
                    (a.requests > 0, a.unserved).cmp(&(b.requests > 0, b.unserved)).then(over(a).total_cmp(&over(b)))
                })
                .expect("at least one region");
            FailureCheck {
                failure,
                holds: rep.all_met,
                worst_region: worst.name.clone(),
                worst_ttft_p99_ns: (worst.served > 0).then_some(worst.ttft.p99_ns),
                miss_ns: worst.ttft.p99_ns.saturating_sub(worst.ttft_p99_objective_ns),
                worst_tpot_p99_ns: worst.tpot_p99_objective_ns.filter(|_| worst.served > 0).map(|_| worst.tpot.p99_ns),
                tpot_miss_ns: worst.tpot_p99_objective_ns.map_or(0, |o| worst.tpot.p99_ns.saturating_sub(o)),
                unserved: worst.unserved,
                untested: rep.regions.iter().filter(|x| x.requests == 0).map(|x| x.name.clone()).collect(),
            }
        })
        .collect()
}

/// Simulates independent runs on the machine's cores; the reports come back in the order of
/// `runs` (each simulation is pure, so the result does not depend on the thread count).
pub fn simulate_all(spec: &InferSpec, runs: &[Run]) -> Vec<InferReport> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, runs.len().max(1));
    let chunk = runs.len().div_ceil(threads).max(1);
    std::thread::scope(|sc| {
        let handles: Vec<_> = runs
            .chunks(chunk)
            .map(|c| sc.spawn(move || c.iter().map(|r| simulate(spec, r)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// Compares all-central, all-edge and the optimized placement, and checks N+1.
pub fn place(spec: &InferSpec, opt: &PlaceOptions) -> PlacementReport {
    place_with(spec, opt, &|_| {})
}

/// [`place`], telling `note` what it simulates next ("all-central", "candidate plan 2 of
/// 12", "the optimized plan under each single failure"), for a progress line.
pub fn place_with(spec: &InferSpec, opt: &PlaceOptions, note: &dyn Fn(&str)) -> PlacementReport {
    let cand = candidates(spec);
    let open_tier = |t: SiteTier| {
        let mut o = vec![false; spec.sites.len()];
        for &s in &cand {
            o[s] = spec.sites[s].tier == t;
        }
        o
    };
    let mut plans = Vec::new();
    for (name, tier) in [("all-central", SiteTier::Central), ("all-edge", SiteTier::Edge)] {
        let open = open_tier(tier);
        if open.iter().any(|&o| o) {
            note(name);
            plans.push(plan(spec, name, &size(spec, &open, opt.n_plus_1, &prefill_estimates(spec)), opt, false));
        }
    }
    // Simulate subsets cheapest first; repairs only add cost, so stop once the next subset's
    // sized cost reaches the cheapest plan that met every objective.
    let (ranked, tried) = ranked(spec, opt.n_plus_1);
    let mut best: Option<Plan> = None;
    let mut simulated = 0;
    let mut search_capped = false;
    for (sized_cost, sz) in &ranked {
        if opt.repair_rounds == 0 {
            best = Some(plan(spec, "optimized", sz, opt, false));
            break;
        }
        let met = best.as_ref().is_some_and(|b| b.all_met);
        if met
            && (simulated >= MAX_SIMULATED_SUBSETS
                || best.as_ref().is_some_and(|b| *sized_cost >= b.cost_usd_per_hour - 1e-9))
        {
            break;
        }
        if simulated >= MAX_SIMULATED_UNMET {
            search_capped = true;
            break;
        }
        simulated += 1;
        note(&format!("candidate plan {simulated} of {}", ranked.len()));
        let p = plan(spec, "optimized", sz, opt, true);
        let better = match &best {
            None => true,
            Some(b) if p.all_met => !b.all_met || p.cost_usd_per_hour < b.cost_usd_per_hour - 1e-9,
            Some(b) => !b.all_met && p.worst_margin_ns < b.worst_margin_ns,
        };
        if better {
            best = Some(p);
        }
    }
    // All-central or all-edge is a subset too: where the search stopped before reaching it
    // and it met every objective, it is the cheapest met plan found.
    if best.as_ref().is_some_and(|b| !b.all_met) {
        if let Some(p) = plans
            .iter()
            .filter(|p| p.all_met && p.violations.is_empty())
            .min_by(|a, b| a.cost_usd_per_hour.total_cmp(&b.cost_usd_per_hour))
        {
            best = Some(Plan { name: "optimized".to_string(), ..p.clone() });
        }
    }
    let mut failures = Vec::new();
    if let Some(p) = best {
        if opt.failure_check && opt.repair_rounds > 0 {
            let servers: Vec<u32> = p.gpus.iter().enumerate().map(|(s, &g)| g / gps(spec, s)).collect();
            // Each region's routes in use: to the site that makes its first tokens and, under
            // disaggregation, to the decode site it streams the rest from.
            let routes: Vec<Vec<String>> = p
                .regions
                .iter()
                .map(|x| {
                    let mut v: Vec<String> = x.prefill_site.iter().cloned().collect();
                    if x.site != x.prefill_site {
                        v.extend(x.site.iter().cloned());
                    }
                    v
                })
                .collect();
            note("the optimized plan under each single failure");
            failures = failure_checks(spec, &servers, &routes, opt);
        }
        plans.push(p);
    }
    let n_plus_1_holds = !failures.is_empty() && failures.iter().all(|f| f.holds);
    // Advice to size for N+1 is only given where N+1 sizing has a plan (on the edge-vs-central
    // example no subset passes it, and following the advice gave none).
    let n_plus_1_sizable =
        (!opt.n_plus_1 && failures.iter().any(|f| !f.holds)).then(|| !self::ranked(spec, true).0.is_empty());
    PlacementReport {
        scenario: spec.name.clone(),
        policy: spec.policy,
        n_plus_1: opt.n_plus_1,
        target_utilization: spec.target_utilization,
        candidates: cand.iter().map(|&s| spec.sites[s].name.clone()).collect(),
        subsets_evaluated: tried,
        subsets_feasible: ranked.len() as u64,
        subsets_simulated: simulated as u64,
        search_capped,
        site_names: spec.sites.iter().map(|s| s.name.clone()).collect(),
        routes: spec
            .regions
            .iter()
            .map(|reg| RegionRoutes {
                name: reg.name.clone(),
                ttft_p99_objective_ns: reg.ttft_p99.0,
                rtt_ns: (0..spec.sites.len())
                    .map(|s| {
                        let same_model = spec.sites[s].model == reg.model;
                        reg.paths[s].as_ref().filter(|_| same_model).map(|p| 2 * p.one_way.0)
                    })
                    .collect(),
            })
            .collect(),
        plans,
        failures,
        n_plus_1_holds,
        n_plus_1_sizable,
    }
}
