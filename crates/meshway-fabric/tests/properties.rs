//! Property tests: every builder's output is connected and within radix, bisection by
//! max-flow equals the structural value, and arbitrary text never panics the parser.

use meshway_fabric::{analyze, Catalog, NodeKind, Scenario};
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("leaf-spine"), Just("rail-optimized"), Just("fat-tree"), Just("three-tier")]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn builders_are_connected_and_within_radix(
        kind in kind(),
        hosts in 1u32..40,
        gph in prop_oneof![Just(1u32), Just(2), Just(4), Just(8)],
        radix in prop_oneof![Just(8u32), Just(16), Just(32), Just(64)],
        over in prop_oneof![Just("1:1"), Just("2:1"), Just("3:1")],
        planes in 1u32..3,
    ) {
        let planes = if kind == "three-tier" { 1 } else { planes };
        let text = format!(
            "[fabric]\nkind = \"{kind}\"\ngpus = {}\ngpus-per-host = {gph}\nnic = \"{}Gbps\"\nplanes = {planes}\n\
             leaf-radix = {radix}\nspine-radix = {radix}\ncore-radix = {radix}\n{}",
            hosts * gph,
            400 * planes,
            if kind == "fat-tree" { String::new() } else { format!("oversubscription = \"{over}\"\n") },
        );
        let cat = Catalog::builtin();
        let sc = Scenario::parse(&text, "p.toml").unwrap();
        // Some shapes legitimately do not fit (they must say so, not panic).
        let Ok(f) = sc.build(&cat) else { return Ok(()) };
        for (i, n) in f.nodes.iter().enumerate() {
            if let NodeKind::Switch { radix, .. } = n.kind {
                let used = f.degree(meshway_fabric::NodeId(i as u32));
                prop_assert!(used as u32 <= radix, "{} uses {} of {} ports", n.name, used, radix);
            }
        }
        let tr = sc.transport(&cat).unwrap();
        let r = analyze(&f, &cat, &tr);
        prop_assert_eq!(r.resilience.components, 1, "connected");
        prop_assert_eq!(r.paths.unreachable_pairs, 0);
        prop_assert_eq!(r.gpus, u64::from(hosts * gph));
        if let Some(s) = r.bisection.structural_bps {
            prop_assert_eq!(s, r.bisection.maxflow_bps, "structural vs max-flow");
        }
        prop_assert!(r.bisection.full_ratio <= 1.0 + 1e-9);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let cat = Catalog::builtin();
        if let Ok(sc) = Scenario::parse(&text, "fuzz.toml") {
            let _ = sc.build(&cat);
        }
    }

    #[test]
    fn scenario_shaped_text_never_panics(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("[fabric]".to_string()),
                Just("[[site]]".to_string()),
                Just("[site.fabric]".to_string()),
                Just("[[dci]]".to_string()),
                Just("[[fabric.node]]".to_string()),
                Just("[[fabric.link]]".to_string()),
                (prop_oneof![Just("kind"), Just("gpus"), Just("k"), Just("nic"), Just("leaf-radix"), Just("spine-radix"),
                    Just("oversubscription"), Just("planes"), Just("gpus-per-host"), Just("name"), Just("a"), Just("b"),
                    Just("distance"), Just("optic"), Just("wavelengths"), Just("rate"), Just("split"), Just("tiers")],
                 prop_oneof![Just("\"leaf-spine\"".to_string()), Just("\"fat-tree\"".to_string()), Just("\"custom\"".to_string()),
                    Just("\"rail-optimized\"".to_string()), Just("\"three-tier\"".to_string()), Just("\"gpu\"".to_string()),
                    Just("\"400Gbps\"".to_string()), Just("\"3:1\"".to_string()), Just("\"100km\"".to_string()), Just("\"x\"".to_string()),
                    (0u32..5000).prop_map(|n| n.to_string()), Just("0".to_string()), Just("-1".to_string())])
                    .prop_map(|(k, v)| format!("{k} = {v}")),
            ],
            0..24,
        )
    ) {
        let text = lines.join("\n");
        let cat = Catalog::builtin();
        if let Ok(sc) = Scenario::parse(&text, "fuzz.toml") {
            if let Ok(f) = sc.build(&cat) {
                if f.gpu_count() <= 4096 {
                    if let Ok(tr) = sc.transport(&cat) {
                        let _ = analyze(&f, &cat, &tr);
                    }
                }
            }
        }
    }
}
