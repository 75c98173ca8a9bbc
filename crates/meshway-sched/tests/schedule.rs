//! `meshway schedule`: closed forms, brute-force optima, exports parsed back, bad input,
//! determinism, and the co-simulation's approximation against every iteration simulated.

use meshway_fabric::{Catalog, Fabric, Scenario};
use meshway_sched::cosim::{self, Step};
use meshway_sched::hier::Hier;
use meshway_sched::hostlist::expand;
use meshway_sched::place::{self, Ask, Free, Policy};
use meshway_sched::{export, jobs, schedule, Options, ScheduleReport};
use meshway_sim::program::{Msg, Program};
use meshway_sim::simulate::{self, Setup};
use meshway_sim::topo::{mix, FabricTopo};

fn load(text: &str) -> (Scenario, Catalog, Fabric) {
    let cat = Catalog::builtin();
    let s = Scenario::parse(text, "test.toml").unwrap();
    let f = s.build(&cat).unwrap();
    (s, cat, f)
}

fn no_files(_: &str) -> Result<String, String> {
    Err("no files".into())
}

fn run(text: &str, policies: &[Policy]) -> Result<ScheduleReport, String> {
    let (s, cat, f) = load(text);
    let setup = Setup { scenario: &s, catalog: &cat, fabric: &f, read_file: &no_files };
    let topo = FabricTopo::new(&f, &cat, 1);
    let hier = Hier::new(&f, &topo, "node");
    let list = s
        .config
        .job
        .iter()
        .enumerate()
        .map(|(i, c)| jobs::from_config(c, i, format!("test.toml: job[{}]", i + 1), hier.gpus_per_host))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let opts = Options { policies: policies.to_vec(), backfill: true, seed: Some(1) };
    schedule(&setup, list, &opts, &|_, _, _| {}).map_err(|e| e.to_string())
}

/// 32 GPUs: 16 hosts of 2, 4 hosts per leaf, 4 leaves, uplinks 4:1 oversubscribed.
const SMALL: &str = r#"
seed = 1
[fabric]
kind = "leaf-spine"
gpus = 32
gpus-per-host = 2
gpus-per-leaf = 8
nic = "100Gbps"
oversubscription = "4:1"
[transport]
kind = "roce"
routing = "ecmp"
"#;

#[test]
fn two_jobs_forced_onto_one_uplink_each_get_half_its_rate() {
    let (s, cat, f) = load(include_str!("../../../examples/custom-small.toml"));
    let setup = Setup { scenario: &s, catalog: &cat, fabric: &f, read_file: &no_files };
    let (cfg, _) = simulate::exec_config(&setup, &simulate::Options::default()).unwrap();
    let mut topo = FabricTopo::new(&f, &cat, 1);
    let rank = |n: &str| topo.rank_by_name(n).unwrap();
    let size = 64 << 20;
    let one = |src: u32, dst: u32| {
        let mut prog = Program::new();
        prog.tag("x");
        let m = prog.push(Msg::send(src, dst, size));
        Step { done: m, prog }
    };
    let x = one(rank("gpu-a0"), rank("gpu-b0"));
    let y = one(rank("gpu-a1"), rank("gpu-b1"));
    let sx = cosim::alone(&mut topo, &cfg, &x, &[], "x").unwrap();
    let sy = cosim::alone(&mut topo, &cfg, &y, &[], "y").unwrap();
    assert_eq!(sx.alone, sy.alone);
    // Both cross leaf-a -> spine -> leaf-b, the only uplinks.
    assert_eq!(sx.arcs.iter().map(|a| a.0).collect::<Vec<_>>(), sy.arcs.iter().map(|a| a.0).collect::<Vec<_>>());
    let t = cosim::together(&mut topo, &cfg, &[&sx, &sy], &[&x, &y], &[]).unwrap();
    // Fluid time at the full 400 Gbps, in ns, rounded up as the engine does.
    let fluid = (cfg.wire.wire_bytes(size) as u128 * 8).div_ceil(400) as u64;
    let fixed = sx.alone - fluid;
    for v in t {
        let v = v.unwrap();
        // Each at half the rate: twice the fluid time, the same latencies.
        assert!(v.abs_diff(fixed + 2 * fluid) <= 2, "{v} vs {}", fixed + 2 * fluid);
    }
}

#[test]
fn a_job_alone_matches_simulate_exactly() {
    let keys = "parameters = 1.3e9\nlayers = 24\nhidden = 2048\nsequence = 2048\ntp = 2\npp = 2\nglobal-batch = 64\n";
    let text = format!(
        "{SMALL}\n[[workload]]\nname = \"step\"\nkind = \"training\"\n{keys}\n[[job]]\nname = \"alone\"\ngpus = 32\niterations = 3\n{keys}"
    );
    let (s, cat, f) = load(&text);
    let setup = Setup { scenario: &s, catalog: &cat, fabric: &f, read_file: &no_files };
    let opts = simulate::Options { no_ideal: true, ..Default::default() };
    let sim = simulate::simulate(&setup, &opts, &mut |_, _| {}).unwrap();
    let step = sim.workloads[0].training.as_ref().unwrap().step_ns;
    let r = run(&text, &[Policy::FirstFit]).unwrap();
    let j = &r.policies[0].jobs[0];
    let alone_ns = (j.step_alone_ms.unwrap() * 1e6).round() as u64;
    assert_eq!(alone_ns, step, "schedule's step alone equals simulate's training step");
    // Alone on the fabric its shared step is its alone step: 3 iterations take 3 steps.
    assert_eq!(j.slowdown, Some(1.0));
    assert!((j.finish_s.unwrap() - 3.0 * step as f64 / 1e9).abs() < 1e-6);
    // Also where the core is slower than the NICs (400G NICs, 100G uplinks: the NIC's
    // achievable share does not bind behind them), and on A100s, which compute at A100
    // speed whether or not the workload names them (schedule's step was 4% slower than
    // simulate's on the first; the second computed at the default H100's speed).
    let slow = SMALL.replace("nic = \"100Gbps\"", "nic = \"400Gbps\"\nuplink = \"100Gbps\"");
    let a100 = SMALL.replace("[fabric]\n", "[fabric]\ngpu = \"a100-sxm\"\n");
    let mut steps = Vec::new();
    for fabric in [slow, a100] {
        let keys =
            "parameters = 1.3e9\nlayers = 24\nhidden = 2048\nsequence = 2048\ntp = 2\npp = 1\nglobal-batch = 64\n";
        let text = format!(
            "{fabric}\n[[workload]]\nname = \"step\"\nkind = \"training\"\n{keys}\n[[job]]\nname = \"alone\"\ngpus = 32\niterations = 3\n{keys}"
        );
        let (s, cat, f) = load(&text);
        let setup = Setup { scenario: &s, catalog: &cat, fabric: &f, read_file: &no_files };
        let sim = simulate::simulate(&setup, &opts, &mut |_, _| {}).unwrap();
        let t = sim.workloads[0].training.as_ref().unwrap();
        let r = run(&text, &[Policy::FirstFit]).unwrap();
        let alone_ns = (r.policies[0].jobs[0].step_alone_ms.unwrap() * 1e6).round() as u64;
        assert_eq!(alone_ns, t.step_ns, "{fabric}");
        steps.push(t.clone());
    }
    // The same step computes at the A100's peak over the H100's (the default).
    let cat = Catalog::builtin();
    let peak = |g: &str| cat.gpu_model(g).unwrap().peak_flops;
    let ratio = steps[1].compute_only_ns as f64 / steps[0].compute_only_ns as f64;
    assert!((ratio - peak("h100-sxm") / peak("a100-sxm")).abs() < 0.01, "{ratio}");
    assert!(ratio > 2.0, "{ratio}");
}

#[test]
fn topology_spans_the_fewest_blocks_and_fits_best_like_brute_force() {
    let (_, cat, f) = load(SMALL);
    let topo = FabricTopo::new(&f, &cat, 1);
    let h = Hier::new(&f, &topo, "node");
    assert_eq!((h.hosts.len(), h.blocks.len(), h.pods.len()), (16, 4, 1));
    let load = vec![0.0; h.blocks.len()];
    let mut z = 7u64;
    for trial in 0..300 {
        // A random free state: each host busy with probability 0.4.
        let mut free = Free::new(&h);
        for x in 0..h.hosts.len() {
            z = mix(z ^ trial);
            if z % 10 < 4 {
                let r = h.hosts[x].ranks.clone();
                free.take(&h, &r);
            }
        }
        let free_hosts: Vec<usize> = (0..16).filter(|&x| free.host_free(x)).collect();
        for need in 2..=6usize {
            let ask = Ask { gpus: (need * 2) as u32, intensity: 1.0, seed: 1 };
            let got = place::choose(Policy::Topology, &h, &free, &ask, &load);
            if free_hosts.len() < need {
                assert!(got.is_none());
                continue;
            }
            let got = got.expect("fits");
            let blocks = |hosts: &[usize]| {
                let mut b: Vec<u32> = hosts.iter().map(|&x| h.hosts[x].block).collect();
                b.sort_unstable();
                b.dedup();
                b.len()
            };
            let got_hosts: Vec<usize> = got.chunks(2).map(|c| h.locate(c[0]).0 as usize).collect();
            assert!(got_hosts.iter().all(|&x| free.host_free(x)));
            // Brute force: the fewest blocks any choice of `need` free hosts touches.
            let mut best = usize::MAX;
            let n = free_hosts.len();
            for mask in 0u32..(1 << n) {
                if mask.count_ones() as usize == need {
                    let pick: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).map(|i| free_hosts[i]).collect();
                    best = best.min(blocks(&pick));
                }
            }
            assert_eq!(blocks(&got_hosts), best, "trial {trial} need {need}");
        }
    }
}

/// The EASY pass asks `Room` instead of the policy whether a job fits: the two must agree
/// for every policy but `given`, and the room kept while GPUs are given back must be the room
/// counted afresh.
#[test]
fn a_policy_places_a_job_exactly_when_it_fits_the_room() {
    let (_, cat, f) = load(SMALL);
    let topo = FabricTopo::new(&f, &cat, 1);
    let h = Hier::new(&f, &topo, "node");
    let load: Vec<f64> = (0..h.blocks.len()).map(|b| b as f64).collect();
    let policies = [Policy::FirstFit, Policy::Random, Policy::Topology, Policy::NetworkAware, Policy::ContentionAware];
    let mut z = 3u64;
    let (mut placed, mut refused) = (0, 0);
    for trial in 0..400u64 {
        // A random free state: each GPU busy with probability 0.3 to 0.7 by trial.
        let mut free = Free::new(&h);
        let mut busy = Vec::new();
        for r in 0..32u32 {
            z = mix(z ^ trial);
            if z % 10 < 3 + trial % 5 {
                free.take(&h, &[r]);
                busy.push(r);
            }
        }
        let room = place::Room::of(&free);
        for gpus in [1, 2, 4, 6, 8, 10, 16, 32] {
            for policy in policies {
                let ask = Ask { gpus, intensity: 1.0, seed: trial };
                let got = place::choose(policy, &h, &free, &ask, &load);
                assert_eq!(got.is_some(), room.fits(&h, gpus), "trial {trial}, {gpus} GPUs, {policy:?}");
                if got.is_some() {
                    placed += 1;
                } else {
                    refused += 1;
                }
            }
        }
        // Given back in pieces, the kept room stays the counted one.
        let mut kept = room;
        let mut then = free.clone();
        for piece in busy.chunks(3) {
            kept.give(&h, &mut then, piece);
            assert_eq!(kept, place::Room::of(&then), "trial {trial}");
        }
        assert_eq!(kept, place::Room { whole: 16, most: 2 });
    }
    // Both answers were exercised.
    assert!(placed > 1000 && refused > 1000, "{placed} placed, {refused} refused");
}

#[test]
fn contention_aware_takes_the_least_loaded_blocks_like_brute_force() {
    let mut z = 11u64;
    for trial in 0..200u64 {
        let n = 2 + (trial % 7) as usize;
        let mut bs = Vec::new();
        let mut load = Vec::new();
        for b in 0..n {
            z = mix(z ^ trial);
            let free = 1 + (z % 5) as usize;
            bs.push((b as u32, (0..free as u32).collect::<Vec<u32>>()));
            load.push(((z >> 8) % 4) as f64);
        }
        let total: usize = bs.iter().map(|b| b.1.len()).sum();
        let need = 1 + (trial as usize % total);
        let got = place::least_loaded_blocks(&bs, need, &load);
        let cost = |set: &[usize]| (set.iter().map(|&k| load[k]).sum::<f64>(), set.len());
        assert!(got.iter().map(|&k| bs[k].1.len()).sum::<usize>() >= need);
        let mut best = (f64::INFINITY, usize::MAX);
        for mask in 1u32..(1 << n) {
            let set: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
            if set.iter().map(|&k| bs[k].1.len()).sum::<usize>() >= need {
                let c = cost(&set);
                if c.0 < best.0 || (c.0 == best.0 && c.1 < best.1) {
                    best = c;
                }
            }
        }
        assert_eq!(cost(&got), best, "trial {trial}");
    }
}

#[test]
fn network_aware_order_sends_the_fewest_bytes_across_blocks() {
    let text = format!("{SMALL}\n[[job]]\ngpus = 16\niterations = 1\nparameters = 1.3e9\nlayers = 24\nhidden = 2048\nsequence = 2048\ntp = 2\npp = 4\n");
    let (s, cat, f) = load(&text);
    let mut topo = FabricTopo::new(&f, &cat, 1);
    let h = Hier::new(&f, &topo, "node");
    let job = jobs::from_config(&s.config.job[0], 0, "t".into(), 2).unwrap();
    let ctx = meshway_fabric::scenario::Ctx::new("t", "", "", 0, "");
    let spec = cosim::spec_for(&mut topo, &job.training, &ctx, 16, &cat).unwrap();
    use meshway_sim::training::Dim;
    // 8 hosts over two blocks (hosts 2..10: blocks 0, 1, 2).
    for start in 0..8u32 {
        let hosts: Vec<u32> = (start..start + 8).collect();
        let ranks: Vec<u32> = hosts.iter().flat_map(|&x| h.hosts[x as usize].ranks.clone()).collect();
        let best = meshway_sched::run::best_order(&h, &spec, &ranks);
        let a = meshway_sched::run::cross_block_bytes(&h, &spec, &hosts, [Dim::Tp, Dim::Pp, Dim::Dp]);
        let b = meshway_sched::run::cross_block_bytes(&h, &spec, &hosts, [Dim::Tp, Dim::Dp, Dim::Pp]);
        let chosen = meshway_sched::run::cross_block_bytes(&h, &spec, &hosts, best);
        assert_eq!(chosen, a.min(b));
    }
}

#[test]
fn exports_parse_back_with_every_host_once() {
    let (s, cat, f) =
        load("[fabric]\nkind = \"fat-tree\"\nk = 8\ngpus-per-host = 2\n[schedule]\nhost-prefix = \"gpu-node\"\n");
    let _ = s;
    let topo = FabricTopo::new(&f, &cat, 1);
    let h = Hier::new(&f, &topo, "gpu-node");
    assert!(h.pods.len() > 1 && h.blocks.len() > h.pods.len());
    let hosts: Vec<String> = h.hosts.iter().map(|x| x.name.clone()).collect();
    // topology/tree: leaf switches list nodes, parents list defined switches, one root.
    let tree = export::slurm_tree(&h, "t.toml");
    let mut seen = Vec::new();
    let mut switches = Vec::new();
    let mut children = Vec::new();
    for line in tree.lines().filter(|l| !l.starts_with('#')) {
        let kv: Vec<(&str, &str)> = line.split_whitespace().map(|t| t.split_once('=').unwrap()).collect();
        assert_eq!(kv[0].0, "SwitchName");
        assert!(kv[0].1.len() <= 64);
        switches.push(kv[0].1.to_string());
        match kv[1].0 {
            "Nodes" => seen.extend(expand(kv[1].1).unwrap()),
            "Switches" => children.extend(expand(kv[1].1).unwrap()),
            k => panic!("unexpected key {k}"),
        }
    }
    seen.sort();
    let mut want = hosts.clone();
    want.sort();
    assert_eq!(seen, want, "every host under exactly one leaf switch");
    for c in &children {
        assert!(switches.contains(c), "child switch {c} is defined");
    }
    assert_eq!(switches.len() - children.len(), 1, "exactly one root");
    // topology/block: every block at least BlockSizes' base.
    let block = export::slurm_block(&h, "t.toml");
    let sizes: Vec<usize> = block
        .lines()
        .find_map(|l| l.strip_prefix("BlockSizes="))
        .unwrap()
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    let base = sizes[0];
    let mut seen = Vec::new();
    let mut blocks = 0usize;
    for l in block.lines().filter(|l| l.starts_with("BlockName=")) {
        let nodes = expand(l.split_once(" Nodes=").unwrap().1).unwrap();
        assert!(nodes.len() >= base);
        seen.extend(nodes);
        blocks += 1;
    }
    // Slurm enables only the listed levels: each size twice the one before (its rule), up to
    // the first aggregate that holds every block, none beyond.
    for w in sizes.windows(2) {
        assert_eq!(w[1], 2 * w[0], "{sizes:?}");
    }
    let top = sizes.last().unwrap() / base;
    assert!(top >= blocks && (top == 1 || top / 2 < blocks), "{sizes:?} for {blocks} blocks");
    seen.sort();
    assert_eq!(seen, want);
    // topology.yaml: a tree (the default) and a block topology, names unique.
    let yaml = export::slurm_yaml(&h, "t.toml");
    assert!(yaml.contains("- topology: fabric-tree\n  cluster_default: true\n  tree:\n    switches:\n"));
    assert!(yaml.contains("- topology: fabric-block\n  cluster_default: false\n  block:\n    block_sizes: ["));
    let names: Vec<&str> = yaml.lines().filter_map(|l| l.trim().strip_prefix("- switch: ")).collect();
    let mut uniq = names.clone();
    uniq.dedup();
    assert_eq!(names.len(), uniq.len());
    // Node labels: one kubectl line per host; Kueue levels coarsest first, hostname last.
    let labels = export::k8s_labels(&h, "t.toml");
    assert_eq!(labels.lines().filter(|l| l.starts_with("kubectl label node ")).count(), hosts.len());
    let kueue = export::kueue_topology("t.toml");
    let levels: Vec<&str> = kueue.lines().filter_map(|l| l.trim().strip_prefix("- nodeLabel: ")).collect();
    assert_eq!(levels, ["\"topology.meshway.io/block\"", "\"topology.meshway.io/rack\"", "\"kubernetes.io/hostname\""]);
    assert!(kueue.contains("kind: Topology") && kueue.contains("topologyName: meshway-fabric"));
    // The ResourceFlavor selects nodes by a label every host is given (Kueue matches key and
    // value), not by a label whose value no host has.
    assert!(kueue.contains("  nodeLabels:\n    topology.meshway.io/fabric: \"meshway-fabric\"\n"), "{kueue}");
    assert!(labels
        .lines()
        .filter(|l| l.starts_with("kubectl label node "))
        .all(|l| l.contains(" topology.meshway.io/fabric=meshway-fabric ")));
    // A scenario path with a newline stays inside its comment in every file.
    for (name, text) in export::all(&h, "x\ntouch PWNED; echo injected\u{2028}#.toml") {
        assert!(!text.lines().any(|l| l.starts_with("touch")), "{name}: {text}");
        assert!(text.contains("from x?touch PWNED; echo injected?#.toml"), "{name}");
    }
}

#[test]
fn export_names_are_valid_label_values() {
    // At most 63, starting and ending with a letter or digit, also when cut or suffixed.
    let valid = |n: &str| {
        n.len() <= 63
            && n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.ends_with(|c: char| c.is_ascii_alphanumeric())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let long = format!("{}-x", "L".repeat(62));
    assert_eq!(export::safe(&long), "L".repeat(62), "cut at 63, then the '-' trimmed");
    for n in [long.as_str(), "--a--", "é", "", "a b/c", &"z".repeat(200)] {
        assert!(valid(&export::safe(n)), "{n:?} -> {:?}", export::safe(n));
    }
    // Blocks whose names agree once cut get suffixes that keep them within 63.
    let (_, cat, f) = load("[fabric]\nkind = \"fat-tree\"\nk = 4\ngpus-per-host = 2\n");
    let topo = FabricTopo::new(&f, &cat, 1);
    let mut h = Hier::new(&f, &topo, "node");
    for b in &mut h.blocks {
        b.name = format!("{}-{}", "b".repeat(62), b.name);
    }
    let tree = export::slurm_tree(&h, "t.toml");
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.strip_prefix("SwitchName="))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(names.len() > 2);
    let mut uniq = names.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), names.len(), "{names:?}");
    assert!(names.iter().all(|n| valid(n)), "{names:?}");
}

#[test]
fn bad_jobs_get_clear_errors() {
    let job = |extra: &str| format!("{SMALL}\n[[job]]\nname = \"big\"\niterations = 1\n{extra}\n");
    let e = run(&job("gpus = 64\nprofile = \"llama-7b\""), &[Policy::FirstFit]).unwrap_err();
    assert!(e.contains("big needs 64 GPUs but the fabric has 32"), "{e}");
    let e = run(&job("gpus = 8\nprofile = \"gpt-5\""), &[Policy::FirstFit]).unwrap_err();
    assert!(e.contains("test.toml: job[1]: profile: unknown profile \"gpt-5\": expected one of bert-large"), "{e}");
    let e = run(&job("gpus = 4\nprofile = \"llama-7b\"\nhosts = \"node[001-002]\""), &[Policy::Given]).unwrap();
    assert_eq!(e.policies[0].jobs[0].hosts, "node[001-002]");
    let e = run(&job("gpus = 4\nprofile = \"llama-7b\"\nhosts = \"node[016-017]\""), &[Policy::Given]).unwrap_err();
    assert!(e.contains("host \"node017\" is not in this fabric (hosts are node001 to node016)"), "{e}");
    let e = run(&job("gpus = 3\nprofile = \"llama-7b\""), &[Policy::FirstFit]).unwrap_err();
    assert!(e.contains("gpus: 3 GPUs: expected at most one host (2) or whole hosts (a multiple of 2)"), "{e}");
    let e = run(&job("gpus = 4"), &[Policy::FirstFit]).unwrap_err();
    assert!(e.contains("profile: missing"), "{e}");
    // A job's name reaches the terminal and the exports: no escape sequence, no bidirectional
    // control that would reverse the rest of its line.
    let e = run(&job("gpus = 2\nprofile = \"llama-7b\"").replace("\"big\"", "\"b\\u202eg\""), &[Policy::FirstFit]);
    assert!(e.unwrap_err().contains("job[1]: name: expected printable text, got the bidirectional control U+202E"));
    let e = jobs::from_file("jobs.csv", "name,gpus,iterations,profile\n\"a\u{1b}[2J\",8,1,llama-7b\n", 8).unwrap_err();
    assert!(
        e.to_string().contains("jobs.csv: line 2: name: expected printable text, got the control character '\\u{1b}'"),
        "{e}"
    );
    let big_hosts = "[fabric]\nkind = \"leaf-spine\"\ngpus = 144\ngpus-per-host = 72\nnic = \"400Gbps\"\n[[job]]\ngpus = 72\nprofile = \"llama-7b\"\niterations = 1\n";
    let e = run(big_hosts, &[Policy::FirstFit]).unwrap_err();
    assert!(e.contains("hosts of 72 GPUs: meshway schedule places jobs on hosts of at most 64 GPUs"), "{e}");
    let e = jobs::from_file("jobs.csv", "name,gpus,iterations\na,8,x\n", 8).unwrap_err().to_string();
    assert!(e.starts_with("jobs.csv: line 2:"), "{e}");
    // A jobs file is a person's, as a [[job]] table: a bare arrival is refused, not read as
    // nanoseconds; with its unit it reads.
    let csv = "name,arrival,gpus,profile,iterations\nj1,3600,8,bert-large,10\n";
    let e = jobs::from_file("jobs.csv", csv, 8).unwrap_err().to_string();
    assert!(e.contains("jobs.csv: line 2: arrival: invalid duration 3600: a number needs a unit"), "{e}");
    let e = jobs::from_file("jobs.json", r#"[{"name": "j1", "arrival": 60, "gpus": 8, "profile": "bert-large"}]"#, 8)
        .unwrap_err()
        .to_string();
    assert!(e.contains("jobs.json: job 1: arrival: invalid duration 60"), "{e}");
    let e = jobs::from_file("jobs.csv", "name,gpus,profile,iterations,tp\nj,8,bert-large,10,3.5\n", 8)
        .unwrap_err()
        .to_string();
    assert!(e.contains("jobs.csv: line 2: tp: expected a whole number, got 3.5"), "{e}");
    assert!(jobs::from_file("jobs.csv", &csv.replace("3600", "3600s"), 8).is_ok());
    // 365 days is the most, and a duration rounds to whole steps past it without complaint.
    let most = jobs::from_file("jobs.csv", "name,gpus,profile,duration\na,4,llama-7b,365d\n", 2).unwrap();
    let mut text = SMALL.to_string();
    text += "[[job]]\nname = \"year\"\ngpus = 4\nprofile = \"llama-7b\"\nduration = \"365d\"\n";
    assert_eq!(most.len(), 1);
    assert!(run(&text, &[Policy::FirstFit]).is_ok());
    // A spreadsheet's trailing commas are blank columns, not a column given twice.
    assert!(jobs::from_file("jobs.csv", "name,gpus,profile,iterations,,\nj1,8,bert-large,10,,\n", 8).is_ok());
    // A key given twice is refused, not read as its last value.
    let dup = "name,arrival,gpus,profile,iterations,gpus\nj1,0s,8,bert-large,10,4\n";
    let e = jobs::from_file("jobs.csv", dup, 8).unwrap_err().to_string();
    assert!(e.contains("jobs.csv: line 1: column \"gpus\" appears twice (columns 3 and 6)"), "{e}");
    let dup = r#"[{"name": "j1", "gpus": 8, "profile": "bert-large", "iterations": 10, "gpus": 4}]"#;
    let e = jobs::from_file("jobs.json", dup, 8).unwrap_err().to_string();
    assert!(e.contains("jobs.json: line 1: key \"gpus\" is given twice in one object"), "{e}");
    // Work is bounded so that the clock never wraps (a wrapped sum read as slowdown 0.000x).
    let e = run(
        &job("gpus = 4\nprofile = \"llama-7b\"").replace("iterations = 1\n", "iterations = 1000000000000\n"),
        &[Policy::FirstFit],
    )
    .unwrap_err();
    assert!(
        e.contains("test.toml: job[1]: iterations: 1000000000000 iterations of its")
            && e.contains("expected at most 365 days of work"),
        "{e}"
    );
    let e = run(
        &job("gpus = 4\nprofile = \"llama-7b\"").replace("iterations = 1\n", "duration = \"400d\"\n"),
        &[Policy::FirstFit],
    )
    .unwrap_err();
    assert!(e.contains("test.toml: job[1]: duration: expected at most 365d, got 400d"), "{e}");
}

/// On a hand-listed fabric the links between switches count as above the leaf: a job over
/// both leaves of custom-small moves bytes there (it read 0 B).
#[test]
fn hand_listed_links_between_switches_count_above_the_leaf() {
    let text = format!(
        "{}\n[[job]]\nname = \"wide\"\ngpus = 4\nprofile = \"bert-large\"\niterations = 2\n",
        include_str!("../../../examples/custom-small.toml")
    );
    let r = run(&text, &[Policy::FirstFit]).unwrap();
    let p = &r.policies[0];
    assert_eq!(p.spanning_jobs, 1);
    assert!(p.bytes.leaf_spine_bytes > 0, "{:?}", p.bytes);
}

/// A failure that never heals leaves the jobs it cuts off unfinished; the others finish as
/// if it had not happened.
#[test]
fn jobs_cut_off_for_good_never_finish() {
    let jobs = "[[job]]\nname = \"cut\"\ngpus = 8\nprofile = \"llama-7b\"\niterations = 20\n\
                [[job]]\nname = \"spared\"\ngpus = 8\nprofile = \"llama-7b\"\niterations = 20\n";
    let base = run(&format!("{SMALL}\n{jobs}"), &[Policy::FirstFit]).unwrap();
    let jb = &base.policies[0].jobs;
    let (cut_hosts, spared_finish) = (jb[0].hosts.clone(), jb[1].finish_s.unwrap());
    assert_eq!(cut_hosts, "node[001-004]", "first fit puts the first job on leaf-0's hosts");
    let failed =
        run(&format!("{SMALL}\n{jobs}\n[[failure]]\nat = \"1ms\"\nswitch = \"leaf-0\"\n"), &[Policy::FirstFit])
            .unwrap();
    let j = &failed.policies[0].jobs;
    assert_eq!(j[0].finish_s, None, "{:?}", j[0]);
    assert_eq!(j[0].slowdown, None, "{:?}", j[0]);
    assert_eq!(j[1].finish_s, Some(spared_finish), "{:?}", j[1]);
    assert_eq!(failed.policies[0].unfinished, 1);
    // Under `given` a job that waits for the busy hosts it names is not fragmentation, though
    // other hosts are free.
    let named = format!(
        "{SMALL}\n[[job]]\nname = \"a\"\ngpus = 4\nprofile = \"llama-7b\"\niterations = 5\nhosts = \"node[001-002]\"\n\
         [[job]]\nname = \"b\"\ngpus = 4\nprofile = \"llama-7b\"\niterations = 5\nhosts = \"node[001-002]\"\n"
    );
    let g = run(&named, &[Policy::Given]).unwrap();
    assert!(g.policies[0].jobs[1].queue_s.unwrap() > 0.0, "b waits for a's hosts");
    assert_eq!(g.policies[0].fragmentation, 0.0);
    // Healed after 10 s, the cut job finishes 10 s later than it would have.
    let healed = run(
        &format!("{SMALL}\n{jobs}\n[[failure]]\nat = \"1ms\"\nuntil = \"10s\"\nswitch = \"leaf-0\"\n"),
        &[Policy::FirstFit],
    )
    .unwrap();
    let h = &healed.policies[0].jobs;
    let delay = h[0].finish_s.unwrap() - jb[0].finish_s.unwrap();
    assert!((delay - 10.0).abs() < 0.01, "{delay}");
}

/// A job kept off the head job's EASY-backfill reservation waits for that job, not for
/// scattered GPUs: with a 1-GPU job running, a 32-GPU head job waiting and a long 2-GPU job
/// behind it on 15 idle whole hosts, nothing is fragmented. It read 12.5% of the span with
/// backfill and 0% without.
#[test]
fn waiting_behind_a_reservation_is_not_fragmentation() {
    let text = format!(
        "{SMALL}\n[[job]]\nname = \"small\"\ngpus = 1\nprofile = \"bert-large\"\nduration = \"10min\"\n\
         [[job]]\nname = \"big\"\ngpus = 32\nprofile = \"llama-7b\"\nduration = \"10min\"\n\
         [[job]]\nname = \"mid\"\ngpus = 2\nprofile = \"llama-7b\"\nduration = \"1h\"\n"
    );
    let r = run(&text, &[Policy::FirstFit, Policy::Topology]).unwrap();
    for p in &r.policies {
        assert!(p.jobs[2].queue_s.unwrap() > 0.0, "mid waits behind big's reservation: {:?}", p.jobs[2]);
        assert_eq!(p.fragmentation, 0.0, "{:?}", p.policy);
    }
}

fn mixed_jobs() -> String {
    let mut t = SMALL.to_string();
    for (i, (gpus, at, prof)) in [
        (8, 0, "llama-7b"),
        (8, 0, "bert-large"),
        (16, 1, "llama-7b"),
        (2, 2, "bert-large"),
        (12, 3, "bert-large"),
        (8, 3, "llama-7b"),
    ]
    .iter()
    .enumerate()
    {
        t += &format!(
            "[[job]]\nname = \"j{i}\"\ngpus = {gpus}\narrival = \"{at}s\"\nprofile = \"{prof}\"\niterations = {}\n",
            20 + i * 5
        );
    }
    t
}

#[test]
fn the_same_jobs_and_seed_give_the_same_report() {
    let a = serde_json::to_string(&run(&mixed_jobs(), &Policy::ALL).unwrap()).unwrap();
    let b = serde_json::to_string(&run(&mixed_jobs(), &Policy::ALL).unwrap()).unwrap();
    assert_eq!(a, b);
    // Every policy ran every job to the end.
    let r = run(&mixed_jobs(), &Policy::ALL).unwrap();
    for p in &r.policies {
        assert_eq!(p.unfinished, 0, "{:?}", p.policy);
        assert!(p.jobs.iter().all(|j| j.slowdown.unwrap() >= 0.999));
    }
}

#[test]
fn the_shared_step_approximation_is_close_to_every_iteration_simulated() {
    // Three data-parallel jobs, each over two leaves, on 4:1 uplinks: they contend.
    let mut text = SMALL.to_string();
    let hosts = ["node[001,005]", "node[002,006]", "node[003,007]"];
    for (i, h) in hosts.iter().enumerate() {
        text += &format!(
            "[[job]]\nname = \"dp{i}\"\ngpus = 4\narrival = \"{}ms\"\nprofile = \"bert-large\"\niterations = {}\nhosts = \"{h}\"\n",
            i * 150,
            12 + 4 * i
        );
    }
    let r = run(&text, &[Policy::Given]).unwrap();
    let p = &r.policies[0];
    assert!(
        p.jobs.iter().any(|j| j.slowdown.unwrap() > 1.05),
        "the jobs contend: {:?}",
        p.jobs.iter().map(|j| j.slowdown).collect::<Vec<_>>()
    );
    within_of_exact(&text, p, 0.10);
}

/// A job of short steps beside one of long steps: the short one repeats through the whole
/// window, so it meets the long one's all-reduce (with 4 repeats it finished before that
/// began, and both read 1.000x).
#[test]
fn a_short_step_job_meets_a_long_step_jobs_traffic() {
    let mut text = SMALL.to_string();
    text +=
        "[[job]]\nname = \"short\"\ngpus = 4\nprofile = \"bert-large\"\niterations = 400\nhosts = \"node[001,005]\"\n";
    text += "[[job]]\nname = \"long\"\ngpus = 4\nprofile = \"llama-7b\"\niterations = 4\nhosts = \"node[002,006]\"\n";
    let r = run(&text, &[Policy::Given]).unwrap();
    let p = &r.policies[0];
    let ratio = p.jobs[0].step_alone_ms.unwrap() / p.jobs[1].step_alone_ms.unwrap();
    assert!(ratio < 1.0 / 8.0, "the steps differ by more than 8x: {ratio}");
    assert!(
        p.jobs.iter().all(|j| j.slowdown.unwrap() > 1.01),
        "{:?}",
        p.jobs.iter().map(|j| j.slowdown).collect::<Vec<_>>()
    );
    within_of_exact(&text, p, 0.10);
}

/// Repeats the budget cuts short are spread over the window: they meet the long job's
/// traffic wherever it falls, where 4 back to back finished before it began. Four samples
/// are a sample: within 15% of repeats covering the whole window.
#[test]
fn repeats_the_budget_cuts_short_are_spread_over_the_window() {
    let mut text = SMALL.to_string();
    text +=
        "[[job]]\nname = \"short\"\ngpus = 4\nprofile = \"bert-large\"\niterations = 1\nhosts = \"node[001,005]\"\n";
    text += "[[job]]\nname = \"long\"\ngpus = 4\nprofile = \"llama-7b\"\niterations = 1\nhosts = \"node[002,006]\"\n";
    let (s, cat, f) = load(&text);
    let setup = Setup { scenario: &s, catalog: &cat, fabric: &f, read_file: &no_files };
    let (cfg, _) = simulate::exec_config(&setup, &simulate::Options { seed: Some(1), ..Default::default() }).unwrap();
    let mut topo = FabricTopo::new(&f, &cat, 1);
    let steps = given_steps(&s, &cat, &mut topo, &cfg);
    let sums: Vec<cosim::Summary> =
        steps.iter().map(|st| cosim::alone(&mut topo, &cfg, st, &[], "x").unwrap()).collect();
    let sums: Vec<&cosim::Summary> = sums.iter().collect();
    let steps: Vec<&Step> = steps.iter().collect();
    let full = cosim::repeats_within(&sums, u64::MAX);
    assert!(full[0] > 8 && full[1] == 1, "{full:?}");
    let covered = cosim::together_repeating(&mut topo, &cfg, &sums, &steps, &[], &full).unwrap();
    let spread = cosim::together_repeating(&mut topo, &cfg, &sums, &steps, &[], &[4, 1]).unwrap();
    let (c, sp) = (covered[0].unwrap() as f64, spread[0].unwrap() as f64);
    let alone = sums[0].alone as f64;
    assert!(c > 1.3 * alone, "covering the window, the short job meets the long one's traffic: {c} against {alone}");
    // Four samples of 28: the short job's step within 15% of the covered figure (measured
    // +8.1%: two of the four meet the long job's all-reduce and take 3.8x; their harmonic
    // mean is the step, their plain mean read +64%; back to back the four ran before that
    // all-reduce, at its time alone, -32%), and the long job, which meets the short one a
    // part of the time, within 20% (measured -7.0%).
    assert!((sp - c).abs() / c < 0.15 && sp > 1.3 * alone, "spread {sp} against covered {c} (alone {alone})");
    let (lc, ls) = (covered[1].unwrap() as f64, spread[1].unwrap() as f64);
    assert!((ls - lc).abs() / lc < 0.20, "long job: spread {ls} against covered {lc}");
}

/// Each `[[job]]`'s training step (4 GPUs) on the hosts it names, in table order.
fn given_steps(
    s: &Scenario,
    cat: &Catalog,
    topo: &mut FabricTopo<'_>,
    cfg: &meshway_sim::exec::ExecConfig,
) -> Vec<Step> {
    let h = Hier::new(topo.fabric, topo, "node");
    let mut steps = Vec::new();
    for (k, c) in s.config.job.iter().enumerate() {
        let job = jobs::from_config(c, k, "t".into(), 2).unwrap();
        let ctx = meshway_fabric::scenario::Ctx::new("t", "", "", 0, "");
        let spec = cosim::spec_for(topo, &job.training, &ctx, 4, cat).unwrap();
        let ranks: Vec<u32> = job
            .hosts
            .as_ref()
            .unwrap()
            .iter()
            .flat_map(|n| h.hosts[h.host_by_name(n).unwrap() as usize].ranks.clone())
            .collect();
        steps.push(cosim::write_step(topo, cfg, &spec, &ranks, &job.name).unwrap());
    }
    steps
}

/// Each job's finish under the schedule's approximation is within `bound` of its run time
/// of the exact run: every iteration of every job, started when the schedule started them.
fn within_of_exact(text: &str, p: &meshway_sched::run::PolicyOutcome, bound: f64) {
    let (s, cat, f) = load(text);
    let setup = Setup { scenario: &s, catalog: &cat, fabric: &f, read_file: &no_files };
    let (cfg, _) = simulate::exec_config(&setup, &simulate::Options { seed: Some(1), ..Default::default() }).unwrap();
    let mut topo = FabricTopo::new(&f, &cat, 1);
    let steps = given_steps(&s, &cat, &mut topo, &cfg);
    let starts: Vec<u64> = p.jobs.iter().map(|j| (j.start_s.unwrap() * 1e9).round() as u64).collect();
    let iters: Vec<u64> = p.jobs.iter().map(|j| j.iterations).collect();
    let refs: Vec<&Step> = steps.iter().collect();
    let exact = cosim::exact(&mut topo, &cfg, &refs, &starts, &iters).unwrap();
    for (k, e) in exact.iter().enumerate() {
        let e = e.unwrap() as f64 / 1e9;
        let approx = p.jobs[k].finish_s.unwrap();
        let err = (approx - e).abs() / (e - starts[k] as f64 / 1e9);
        eprintln!("job {k}: approx {approx:.6} exact {e:.6} err {:.2}% slowdown {:?}", err * 100.0, p.jobs[k].slowdown);
        assert!(
            err < bound,
            "job {k}: approximate finish {approx:.6} s vs exact {e:.6} s ({:.1}% of its run)",
            err * 100.0
        );
    }
}

/// The schedule's span runs from the first arrival: one job that fills every GPU for its whole
/// run reads 100% goodput and GPUs held and a makespan of its run, whether it arrives at 0 or an
/// hour in (it read 50% and 2 h at an hour, 0% at 300 days). A job behind a spine that fails
/// for good never finishes: it holds its GPUs to the end of the span, and one that never
/// starts waits until the run's last event instead of dropping out of the mean wait.
#[test]
fn the_span_runs_from_the_first_arrival_and_unfinished_jobs_count() {
    let base = |extra: &str| {
        format!(
            "seed = 1\n[fabric]\nkind = \"leaf-spine\"\ngpus = 8\ngpus-per-host = 2\nleaf-radix = 4\nspine-radix = 4\nspines = 2\n\
             [transport]\nkind = \"roce\"\n{extra}"
        )
    };
    for arrival in ["0s", "1h", "300d"] {
        let text = base(&format!(
            "[[job]]\nname = \"x\"\ngpus = 8\nprofile = \"bert-large\"\nduration = \"1h\"\narrival = \"{arrival}\"\n"
        ));
        let r = run(&text, &[Policy::FirstFit]).unwrap();
        let p = &r.policies[0];
        assert!((p.makespan_s - 3600.0).abs() < 1.0, "{arrival}: {}", p.makespan_s);
        assert!(p.goodput > 0.999 && p.utilization > 0.999, "{arrival}: {} {}", p.goodput, p.utilization);
    }
    // Both spines down for good from 0: a 4-GPU job on two leaves never finishes; an 8-GPU
    // job behind it never starts.
    let text = base(
        "[[job]]\nname = \"a\"\ngpus = 2\nprofile = \"bert-large\"\nduration = \"1h\"\nhosts = [\"node002\"]\n\
         [[job]]\nname = \"b\"\ngpus = 4\nprofile = \"bert-large\"\nduration = \"1h\"\nhosts = [\"node001\", \"node003\"]\n\
         [[job]]\nname = \"c\"\ngpus = 8\nprofile = \"bert-large\"\nduration = \"1h\"\narrival = \"10min\"\n\
         hosts = [\"node001\", \"node002\", \"node003\", \"node004\"]\n\
         [[failure]]\nswitch = \"spine-0\"\n[[failure]]\nswitch = \"spine-1\"\n",
    );
    let r = run(&text, &[Policy::Given]).unwrap();
    let p = &r.policies[0];
    assert_eq!(p.unfinished, 2, "{:?}", p.jobs);
    // a held 2 GPUs for 1 h, b 4 GPUs for the same span; c waited 50 min of it.
    assert!((p.utilization - 6.0 / 8.0).abs() < 0.01, "{}", p.utilization);
    assert!(p.mean_queue_s > 0.0, "{}", p.mean_queue_s);
}

/// EASY backfill reserves the head job's GPUs, not a count of them: a 1-GPU job that runs past
/// the 4-GPU head job's reservation took one of the two hosts the head needed (first-fit's
/// first free GPU), and the head started an hour late. Now it goes to the host the head will
/// not use, and the head starts at its reservation.
#[test]
fn easy_backfill_keeps_off_the_head_jobs_hosts() {
    let text = "seed = 1\n[fabric]\nkind = \"leaf-spine\"\ngpus = 6\ngpus-per-host = 2\nleaf-radix = 4\nspine-radix = 4\nspines = 2\n\
                [transport]\nkind = \"roce\"\n\
                [[job]]\nname = \"j1\"\ngpus = 2\nprofile = \"bert-large\"\nduration = \"1h\"\n\
                [[job]]\nname = \"jx\"\ngpus = 2\nprofile = \"bert-large\"\nduration = \"30min\"\n\
                [[job]]\nname = \"j2\"\ngpus = 1\nprofile = \"bert-large\"\nduration = \"2h\"\n\
                [[job]]\nname = \"H\"\ngpus = 4\nprofile = \"bert-large\"\nduration = \"1h\"\narrival = \"40min\"\n\
                [[job]]\nname = \"B\"\ngpus = 1\nprofile = \"bert-large\"\nduration = \"3h\"\narrival = \"41min\"\n";
    let r = run(text, &[Policy::FirstFit]).unwrap();
    let job = |n: &str| r.policies[0].jobs.iter().find(|j| j.name == n).unwrap();
    // j1 ends at 1 h: H starts then, on node001 and node002 (jx's, free since 30 min).
    assert!((job("H").queue_s.unwrap() - 1200.0).abs() < 1.0, "{:?}", job("H"));
    assert_eq!(job("H").hosts, "node[001-002]");
    // B runs 3 h, past the reservation: it starts at once beside j2 on node003.
    assert_eq!(job("B").queue_s, Some(0.0));
    assert_eq!(job("B").hosts, "node003");
}

/// A job that a failure cuts off for good moved the bytes of the iterations it ran: 5.5 of 20
/// steps before the failure carry 5.5/20 of what the whole job carries. It read 0 B on every
/// tier, which starred a policy that stranded a job as the lightest on the network.
#[test]
fn a_job_cut_off_counts_the_bytes_it_moved() {
    let jobs = "[[job]]\nname = \"wide\"\ngpus = 16\nprofile = \"llama-7b\"\niterations = 20\n";
    let base = run(&format!("{SMALL}\n{jobs}"), &[Policy::FirstFit]).unwrap();
    let p = &base.policies[0];
    let (whole, step_ms) = (p.bytes.leaf_spine_bytes, p.jobs[0].step_alone_ms.unwrap());
    assert!(whole > 0, "16 GPUs over two leaves cross the spine");
    let at_ns = (step_ms * 1e6 * 5.5).round() as u64;
    let cut =
        run(&format!("{SMALL}\n{jobs}\n[[failure]]\nat = \"{at_ns}ns\"\nswitch = \"leaf-0\"\n"), &[Policy::FirstFit])
            .unwrap();
    let c = &cut.policies[0];
    assert_eq!(c.unfinished, 1);
    let want = whole as f64 * 5.5 / 20.0;
    let got = c.bytes.leaf_spine_bytes as f64;
    assert!((got - want).abs() <= want * 1e-6, "{got} B, expected {want} B");
    let nic = p.bytes.nic_bytes as f64 * 5.5 / 20.0;
    assert!((c.bytes.nic_bytes as f64 - nic).abs() <= nic * 1e-6, "{} B, expected {nic} B", c.bytes.nic_bytes);
    let note = c.jobs[0].note.as_deref().unwrap();
    assert!(note.contains("after 5 of 20 iterations"), "{note}");
}

/// Blocks of unequal size: the base is the smallest and the file says so.
#[test]
fn unequal_blocks_are_named_in_the_block_export() {
    let (_, cat, f) = load(include_str!("../../../examples/three-tier-1024.toml"));
    let topo = FabricTopo::new(&f, &cat, 1);
    let h = Hier::new(&f, &topo, "node");
    let sizes: Vec<usize> = h.blocks.iter().map(|b| b.hosts.len()).collect();
    let (lo, hi) = (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap());
    assert!(lo < hi, "{sizes:?}");
    let block = export::slurm_block(&h, "t.toml");
    assert!(block.contains(&format!("# Blocks hold {lo} to {hi} hosts: the base size is the smallest")), "{block}");
    assert!(block.lines().any(|l| l.starts_with(&format!("BlockSizes={lo},{}", 2 * lo))), "{block}");
    let yaml = export::slurm_yaml(&h, "t.toml");
    assert!(yaml.contains(&format!("block_sizes: [{lo}, {}", 2 * lo)), "{yaml}");
}

/// EASY backfill lets a job take the head job's GPUs only if it ends before the head starts,
/// at its step time on the GPUs it would get: X's 50 minutes are measured on the reference
/// placement (two hosts of one leaf, 1.24 s a step), but its hosts straddle two leaves behind
/// one 100G uplink each (1.78 s a step, 72 minutes). Judged by the reference, it was
/// backfilled at 2 minutes and the 32-GPU head job, due at 60 minutes, started at 74.
#[test]
fn a_backfilled_job_is_timed_on_the_hosts_it_would_get() {
    let text = "seed = 1\n[fabric]\nkind = \"leaf-spine\"\ngpus = 32\ngpus-per-host = 2\ngpus-per-leaf = 8\n\
                nic = \"100Gbps\"\noversubscription = \"8:1\"\n[transport]\nkind = \"roce\"\nrouting = \"ecmp\"\n\
                [[job]]\nname = \"long\"\ngpus = 28\nprofile = \"llama-7b\"\nduration = \"1h\"\n\
                hosts = \"node[001-003,006-016]\"\n\
                [[job]]\nname = \"H\"\ngpus = 32\nprofile = \"llama-7b\"\nduration = \"1h\"\narrival = \"1min\"\n\
                hosts = \"node[001-016]\"\n\
                [[job]]\nname = \"X\"\ngpus = 4\nprofile = \"llama-7b\"\nduration = \"50min\"\narrival = \"2min\"\n\
                hosts = \"node[004-005]\"\n";
    let r = run(text, &[Policy::Given]).unwrap();
    let job = |n: &str| r.policies[0].jobs.iter().find(|j| j.name == n).unwrap();
    let (h, x) = (job("H"), job("X"));
    let x_runs = x.iterations as f64 * x.step_alone_ms.unwrap() / 1e3;
    assert!(x_runs > 58.0 * 60.0, "X alone on its hosts runs past the head's start: {x_runs} s");
    assert!(x.step_alone_ms.unwrap() > 1.3 * x.reference_ms, "{x:?}");
    assert!((h.start_s.unwrap() - 3600.0).abs() < 1.0, "the head starts when `long` ends: {h:?}");
    assert!(x.start_s.unwrap() >= h.finish_s.unwrap() - 1e-9, "X waits for the head: {x:?}");
    // A shorter X (43 minutes on its hosts) is backfilled at once and ends before the head
    // starts (which its traffic on `long`'s uplinks delays: the projection is of the jobs
    // as they run now).
    let short = text.replace("duration = \"50min\"", "duration = \"30min\"");
    let r = run(&short, &[Policy::Given]).unwrap();
    let job = |n: &str| r.policies[0].jobs.iter().find(|j| j.name == n).unwrap();
    assert_eq!(job("X").start_s, Some(120.0), "{:?}", job("X"));
    assert!(job("X").finish_s.unwrap() <= job("H").start_s.unwrap(), "{:?}", job("H"));
}

/// A host with a link down takes no job while the link is down (a node health check drains
/// it): a job arriving while leaf-0 is down runs on leaf-1's hosts, and one arriving after it
/// returns gets leaf-0's. Before, first fit put the first on leaf-0's hosts and it stood still
/// until the leaf came back. A job that stands still is charged the wait in its completion
/// time, not in its slowdown.
#[test]
fn hosts_behind_a_failed_link_take_no_job_until_it_returns() {
    let fail = "[[failure]]\nat = \"0s\"\nuntil = \"10s\"\nswitch = \"leaf-0\"\n";
    let jobs = "[[job]]\nname = \"during\"\ngpus = 8\nprofile = \"llama-7b\"\niterations = 20\narrival = \"1s\"\n\
                [[job]]\nname = \"after\"\ngpus = 8\nprofile = \"llama-7b\"\niterations = 20\narrival = \"11s\"\n";
    let r = run(&format!("{SMALL}\n{jobs}\n{fail}"), &[Policy::FirstFit, Policy::Topology]).unwrap();
    for p in &r.policies {
        let j = &p.jobs;
        assert_eq!(j[0].queue_s, Some(0.0), "{:?}", j[0]);
        assert!(!j[0].blocks.contains(&"leaf-0".to_string()), "{:?}: {:?}", p.policy, j[0]);
        assert_eq!(j[0].stalled_s, None, "{:?}", j[0]);
        assert_eq!(j[1].blocks, ["leaf-0"], "{:?}: {:?}", p.policy, j[1]);
    }
    // For good: leaf-0's 4 hosts are gone, a job of the whole fabric never starts and says why.
    let forever = fail.replace("until = \"10s\"\n", "");
    let whole = "[[job]]\nname = \"whole\"\ngpus = 32\nprofile = \"llama-7b\"\niterations = 2\n";
    let r = run(&format!("{SMALL}\n{jobs}{whole}\n{forever}"), &[Policy::FirstFit]).unwrap();
    let p = &r.policies[0];
    assert!(p.jobs[..2].iter().all(|j| j.finish_s.is_some()), "{:?}", p.jobs);
    assert_eq!(p.jobs[2].start_s, None);
    let note = p.jobs[2].note.as_deref().unwrap();
    assert!(note.contains("4 hosts stayed drained"), "{note}");
    // A job already running when its leaf fails stands still for the outage: 10 s less 1 ms
    // in its completion time, none in its slowdown.
    let once = "[[job]]\nname = \"cut\"\ngpus = 8\nprofile = \"llama-7b\"\niterations = 20\n";
    let r =
        run(&format!("{SMALL}\n{once}\n{}", fail.replace("at = \"0s\"", "at = \"1ms\"")), &[Policy::FirstFit]).unwrap();
    let j = &r.policies[0].jobs[0];
    assert_eq!(j.blocks, ["leaf-0"]);
    assert!((j.stalled_s.unwrap() - 9.999).abs() < 1e-6, "{j:?}");
    assert_eq!(j.slowdown, Some(1.0), "{j:?}");
    assert!(j.note.as_deref().unwrap().starts_with("stood still 9.999s"), "{j:?}");
}

/// From a hostile review of draining: a job that waits only for a drained host starts when
/// the link returns (the loop stopped once nothing ran, and it never started), and the head
/// job's reservation counts the drained hosts back at their link's return (without them the
/// head had none, and a 10-hour job backfilled onto its hosts: it started at 10 h, not 1 h).
#[test]
fn a_drained_host_comes_back_for_the_queue_and_the_head_job() {
    let fabric = "seed = 1\n[fabric]\nkind = \"leaf-spine\"\ngpus = 32\ngpus-per-host = 8\ngpus-per-leaf = 16\n\
                  nic = \"400Gbps\"\noversubscription = \"1:1\"\n[transport]\nkind = \"roce\"\n\
                  [[failure]]\nat = \"0s\"\nuntil = \"1h\"\nlink = \"gpu-0:leaf-0\"\n";
    let whole = "[[job]]\nname = \"whole\"\ngpus = 32\nprofile = \"llama-7b\"\nduration = \"1h\"\narrival = \"1min\"\n";
    let r = run(&format!("{fabric}{whole}"), &[Policy::FirstFit]).unwrap();
    assert_eq!(r.policies[0].jobs[0].start_s, Some(3600.0), "{:?}", r.policies[0].jobs[0]);
    let text = format!(
        "{fabric}[[job]]\nname = \"keep\"\ngpus = 8\nprofile = \"llama-7b\"\nduration = \"50min\"\n{whole}\
         [[job]]\nname = \"long\"\ngpus = 8\nprofile = \"llama-7b\"\nduration = \"10h\"\narrival = \"2min\"\n"
    );
    let r = run(&text, &[Policy::FirstFit, Policy::Topology, Policy::ContentionAware]).unwrap();
    for p in &r.policies {
        let job = |n: &str| p.jobs.iter().find(|j| j.name == n).unwrap();
        assert_eq!(job("whole").start_s, Some(3600.0), "{:?}: {:?}", p.policy, job("whole"));
        assert_eq!(job("long").start_s, job("whole").finish_s, "{:?}: {:?}", p.policy, job("long"));
    }
}
