//! Property tests: random small networks and flow sets.

use meshway_sim::{FlowId, FlowSpec, LinkId, Network, SimResult, Simulation};
use meshway_units::{BitsPerSec, Bytes, Nanos, SimTime};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    links: Vec<(u64, u64)>,
    /// Flows in generation order; deps refer to lower indices.
    flows: Vec<GenFlow>,
    /// Random keys that pick a dependency-respecting insertion order.
    keys: Vec<u32>,
}

#[derive(Debug, Clone)]
struct GenFlow {
    path: Vec<usize>,
    size: u64,
    start: u64,
    deps: Vec<usize>,
    delay: u64,
    last_packet: u64,
}

fn capacity() -> impl Strategy<Value = u64> {
    prop_oneof![(1u64..=100).prop_map(|g| g * 1_000_000_000), 1_000_000u64..20_000_000_000]
}

fn case() -> impl Strategy<Value = Case> {
    prop::collection::vec((capacity(), 0u64..2_000), 1..6)
        .prop_flat_map(|links| {
            let n_links = links.len();
            let flow = (
                prop::sample::subsequence((0..n_links).collect::<Vec<_>>(), 0..=n_links.min(3)).prop_shuffle(),
                0u64..2_000_000,
                0u64..50_000,
                prop::collection::vec(any::<prop::sample::Index>(), 0..3),
                0u64..1_000,
                0u64..4_096,
            );
            (Just(links), prop::collection::vec(flow, 1..14)).prop_flat_map(|(links, flows)| {
                let flows: Vec<GenFlow> = flows
                    .into_iter()
                    .enumerate()
                    .map(|(i, (path, size, start, deps, delay, last_packet))| {
                        let mut deps: Vec<usize> =
                            if i == 0 { vec![] } else { deps.iter().map(|d| d.index(i)).collect() };
                        deps.sort_unstable();
                        deps.dedup();
                        GenFlow { path, size, start, deps, delay, last_packet }
                    })
                    .collect();
                let n = flows.len();
                (Just(links), Just(flows), prop::collection::vec(any::<u32>(), n))
            })
        })
        .prop_map(|(links, flows, keys)| Case { links, flows, keys })
}

/// A dependency-respecting order: repeatedly the available flow with the smallest key.
fn insertion_order(case: &Case) -> Vec<usize> {
    let n = case.flows.len();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n)
            .filter(|&i| !placed[i] && case.flows[i].deps.iter().all(|&d| placed[d]))
            .min_by_key(|&i| (case.keys[i], i))
            .expect("deps point backwards, so some flow is always available");
        placed[next] = true;
        order.push(next);
    }
    order
}

/// Runs the case adding flows in `order`; returns the result and the id of each generated
/// flow. Checks the capacity and fairness invariants after every batch.
fn run(case: &Case, order: &[usize]) -> Result<(SimResult, Vec<FlowId>), TestCaseError> {
    let mut net = Network::new();
    for &(cap, lat) in &case.links {
        net.add_link(BitsPerSec(cap), Nanos(lat));
    }
    let mut sim = Simulation::new(net);
    let mut ids = vec![FlowId(u32::MAX); case.flows.len()];
    for &i in order {
        let g = &case.flows[i];
        let spec = FlowSpec::new(g.path.iter().map(|&l| LinkId(l as u32)).collect(), Bytes(g.size), SimTime(g.start))
            .after(g.deps.iter().map(|&d| ids[d]).collect(), Nanos(g.delay))
            .last_packet(Bytes(g.last_packet))
            .tag(i as u32);
        ids[i] = sim.add_flow(spec).unwrap();
    }
    while sim.advance().unwrap().is_some() {
        check_rates(&sim, case)?;
    }
    Ok((sim.run().unwrap(), ids))
}

/// No link over capacity, and max-min fairness: every active flow has a saturated link on its
/// path on which no flow gets more than it does (up to the 1 bit/s display rounding).
fn check_rates(sim: &Simulation, case: &Case) -> Result<(), TestCaseError> {
    for (l, &(cap, _)) in case.links.iter().enumerate() {
        let link = LinkId(l as u32);
        let sum: u64 = sim.flows_on_link(link).map(|f| sim.flow_rate(f).unwrap().0).sum();
        prop_assert!(sum <= cap, "link {l}: {sum} > {cap}");
        prop_assert!(sim.link_load(link).unwrap().0 <= cap);
    }
    for l in 0..case.links.len() {
        for f in sim.flows_on_link(LinkId(l as u32)) {
            let rate = sim.flow_rate(f).unwrap().0;
            let g = &case.flows[sim.result().flows[f.index()].tag as usize];
            let has_bottleneck = g.path.iter().any(|&m| {
                let m_id = LinkId(m as u32);
                let n = sim.flows_on_link(m_id).count() as u64;
                let load: u64 = sim.flows_on_link(m_id).map(|o| sim.flow_rate(o).unwrap().0).sum();
                let saturated = case.links[m].0 - load <= 2 * n + 1;
                let largest = sim.flows_on_link(m_id).all(|o| sim.flow_rate(o).unwrap().0 <= rate + 1);
                saturated && largest
            });
            prop_assert!(has_bottleneck, "flow {f} at {rate} bit/s has no bottleneck");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_byte_is_delivered_and_order_does_not_matter(case in case()) {
        let natural: Vec<usize> = (0..case.flows.len()).collect();
        let (r1, ids1) = run(&case, &natural)?;
        let (r2, ids2) = run(&case, &insertion_order(&case))?;

        for (i, g) in case.flows.iter().enumerate() {
            let (a, b) = (&r1.flows[ids1[i].index()], &r2.flows[ids2[i].index()]);
            prop_assert_eq!(a.start, b.start, "flow {} start", i);
            prop_assert_eq!(a.end, b.end, "flow {} end", i);
            prop_assert_eq!(a.delivered, Bytes(g.size));
            let (start, end) = (a.start.unwrap().0, a.end.unwrap().0);
            prop_assert!(start >= g.start);
            for &d in &g.deps {
                prop_assert!(start >= r1.flows[ids1[d].index()].end.unwrap().0 + g.delay);
            }
            // Never faster than alone on the path.
            if !g.path.is_empty() {
                let bottleneck = g.path.iter().map(|&l| case.links[l].0).min().unwrap();
                let fluid = BitsPerSec(bottleneck).transmit_time(Bytes(g.size)).0;
                let latency: u64 = g.path.iter().map(|&l| case.links[l].1).sum();
                prop_assert!(end - start >= fluid + latency);
            }
        }
        prop_assert_eq!(&r1.link_stats, &r2.link_stats);
        prop_assert_eq!(r1.end, r2.end);
        for (l, stats) in r1.link_stats.iter().enumerate() {
            let expect: u64 = case.flows.iter().filter(|g| g.path.contains(&l)).map(|g| g.size).sum();
            prop_assert_eq!(stats.bytes, Bytes(expect), "link {}", l);
            prop_assert!(stats.peak_utilization <= 1.0);
        }
    }
}
