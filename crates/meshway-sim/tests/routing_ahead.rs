//! Routes worked out ahead on two threads for a large batch of activations are the routes the
//! flows get one at a time: the same results, byte for byte, with and without.

use meshway_fabric::{Catalog, LinkId as FabricLink, Scenario};
use meshway_sim::exec::{execute, ExecConfig, LinkEvent, Policy, Wire};
use meshway_sim::program::{Leg, Msg, Program};
use meshway_sim::topo::{ArcHead, Choice, FabricTopo, Topology};
use meshway_sim::{LinkId as Arc, LinkView, Network};
use meshway_units::{BitsPerSec, Nanos, SimTime};

/// A topology that cannot be copied for another thread, so routes are found one at a time.
struct OneThread<'a>(FabricTopo<'a>);

impl Topology for OneThread<'_> {
    fn ranks(&self) -> usize {
        self.0.ranks()
    }
    fn host_of(&self, rank: u32) -> u32 {
        self.0.host_of(rank)
    }
    fn site_of(&self, rank: u32) -> u32 {
        self.0.site_of(rank)
    }
    fn network(&self) -> Network {
        self.0.network()
    }
    fn path(&mut self, src: u32, dst: u32, choice: Choice, live: Option<&LinkView<'_>>) -> Option<Vec<Arc>> {
        self.0.path(src, dst, choice, live)
    }
    fn planes(&self) -> u32 {
        self.0.planes()
    }
    fn path_on_plane(
        &mut self,
        src: u32,
        dst: u32,
        plane: u32,
        choice: Choice,
        live: Option<&LinkView<'_>>,
    ) -> Option<Vec<Arc>> {
        self.0.path_on_plane(src, dst, plane, choice, live)
    }
    fn local(&self, src: u32, dst: u32) -> bool {
        self.0.local(src, dst)
    }
    fn arc_name(&self, arc: Arc) -> String {
        self.0.arc_name(arc)
    }
    fn rank_name(&self, rank: u32) -> String {
        self.0.rank_name(rank)
    }
    fn is_network_arc(&self, arc: Arc) -> bool {
        self.0.is_network_arc(arc)
    }
    fn arc_head(&self, arc: Arc) -> Option<ArcHead> {
        self.0.arc_head(arc)
    }
    fn is_dci_arc(&self, arc: Arc) -> bool {
        self.0.is_dci_arc(arc)
    }
    fn pinned_path(&self, path: &[Arc]) -> Option<Vec<Arc>> {
        self.0.pinned_path(path)
    }
    fn arc_spec(&self, arc: Arc) -> (BitsPerSec, Nanos) {
        self.0.arc_spec(arc)
    }
    fn attach(&self, rank: u32, leg: Leg, channel: u32) -> Option<Arc> {
        self.0.attach(rank, leg, channel)
    }
    fn edge_latency(&mut self, src: u32, dst: u32, via: Option<u32>, packet: u64) -> Nanos {
        self.0.edge_latency(src, dst, via, packet)
    }
}

const FAT_TREE: &str = "name = \"k8\"\n[fabric]\nkind = \"fat-tree\"\nk = 8\ngpus-per-host = 1\nnic = \"100Gbps\"\n";

/// When the all-to-all starts: with the transport's alpha after time 0, or after a wait
/// that ends at `GATE_NS`, so that a link event queued for the same instant at the start
/// comes before the activations in their batch.
#[derive(Clone, Copy, Debug)]
enum Start {
    AtZero,
    AfterGate,
}

const GATE_NS: u64 = 50_000;

/// An all-to-all of 64 KiB among the 128 hosts (16,256 flows activated at once) under
/// `policy`, with a first core link going down at `down` when given; the results as text.
fn run(one_thread: bool, policy: Policy, down: Option<u64>) -> String {
    run_from(one_thread, policy, down, Start::AtZero)
}

fn run_from(one_thread: bool, policy: Policy, down: Option<u64>, start: Start) -> String {
    let cat = Catalog::builtin();
    let f = Scenario::parse(FAT_TREE, "k8.toml").unwrap().build(&cat).unwrap();
    let mut topo = FabricTopo::new(&f, &cat, 7);
    let roce = cat.transport_profile("roce").unwrap();
    let cfg = ExecConfig {
        policy,
        wire: Wire { mtu: 4096, header: u64::from(roce.header_bytes), alpha: roce.alpha },
        qps: 1,
        spray_paths: 64,
        seed: 7,
        tolerance_ppm: 0,
        completion: Default::default(),
        link_history: false,
        window: 0,
        p2p_window: 0,
    };
    let n = topo.ranks() as u32;
    let mut prog = Program::new();
    prog.tag("a2a");
    let gate = match start {
        Start::AtZero => Vec::new(),
        Start::AfterGate => vec![prog.push(Msg::wait(Vec::new(), Nanos(GATE_NS)))],
    };
    for s in 0..n {
        for d in (0..n).filter(|&d| d != s) {
            let mut m = Msg::send(s, d, 64 << 10);
            m.deps = gate.clone();
            prog.push(m);
        }
    }
    // The first link between two switches, both ways, at `down` ns.
    let failures: Vec<LinkEvent> = down
        .map(|at| {
            let l = (0..f.links.len() as u32)
                .map(FabricLink)
                .find(|&l| !f.node(f.link(l).a).is_gpu() && !f.node(f.link(l).b).is_gpu())
                .unwrap();
            (0..2).map(|k| LinkEvent { at: SimTime(at), arc: Arc(l.0 * 2 + k), up: false }).collect()
        })
        .unwrap_or_default();
    let ex = if one_thread {
        let mut one = OneThread(topo);
        assert!(one.fork().is_none());
        execute(&prog, &mut one, &cfg, &failures, &mut |_, _| {}).unwrap()
    } else {
        assert!(topo.fork().is_some());
        execute(&prog, &mut topo, &cfg, &failures, &mut |_, _| {}).unwrap()
    };
    assert_eq!(ex.msgs.len(), 128 * 127 + gate.len());
    assert!(ex.msgs.iter().all(|m| m.end.is_some()));
    format!("{:?}", (ex.msgs, ex.sim))
}

#[test]
fn hashed_and_sprayed_routes_worked_out_ahead_change_nothing() {
    for policy in [Policy::Ecmp, Policy::Spray, Policy::Adaptive] {
        assert_eq!(run(false, policy, None), run(true, policy, None), "{policy:?}");
    }
}

#[test]
fn a_link_down_just_before_the_activations_in_their_batch_voids_the_routes_found_ahead() {
    // The gate ends at GATE_NS; its dependents start an alpha later, in one batch whose
    // first event is the link going down (queued at the start, before them). The routes
    // were worked out with every link up; the flows must be routed around the dead link.
    let alpha = Catalog::builtin().transport_profile("roce").unwrap().alpha.0;
    let at = GATE_NS + alpha;
    assert_eq!(
        run_from(false, Policy::Ecmp, Some(at), Start::AfterGate),
        run_from(true, Policy::Ecmp, Some(at), Start::AfterGate)
    );
}

#[test]
fn a_link_down_in_the_batch_routes_as_without() {
    // Down at time 0, before the flows start (an alpha later: routes are then found one by
    // one), and at 20 us, while they run (rerouted).
    for down in [0, 20_000] {
        assert_eq!(run(false, Policy::Ecmp, Some(down)), run(true, Policy::Ecmp, Some(down)), "down at {down} ns");
    }
}

/// Routes worked out a chunk at a time (a sprayed all-to-all of 1,024 GPUs held 1M routes of
/// 64 paths at once: 6 GB) are the same routes: chunks of about 2,000 paths here, so the
/// batch of 16,256 sprayed flows is cut into more than a hundred.
#[test]
fn routes_worked_out_a_chunk_at_a_time_change_nothing() {
    use std::sync::atomic::Ordering;
    let whole = meshway_sim::exec::PREPARE_MAX_PATHS.swap(2_000, Ordering::Relaxed);
    for policy in [Policy::Spray, Policy::Ecmp] {
        assert_eq!(run(false, policy, None), run(true, policy, None), "{policy:?}");
    }
    meshway_sim::exec::PREPARE_MAX_PATHS.store(whole, Ordering::Relaxed);
}
