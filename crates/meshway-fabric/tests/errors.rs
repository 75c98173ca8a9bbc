//! Each class of invalid scenario file, with its message asserted.

use meshway_fabric::{Catalog, Scenario};

fn err(text: &str) -> String {
    let cat = Catalog::builtin();
    match Scenario::parse(text, "bad.toml")
        .and_then(|s| s.build(&cat).map(|_| s))
        .and_then(|s| s.transport(&cat).map(|_| ()))
    {
        Ok(()) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const LS: &str = "[fabric]\nkind = \"leaf-spine\"\ngpus = 1024\n";

#[test]
fn toml_syntax_error_has_line_and_column() {
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = = 3\n");
    assert!(e.starts_with("bad.toml:3:"), "{e}");
}

#[test]
fn unknown_key_suggests_the_closest() {
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = 1024\nleaf-radx = 64\n");
    assert!(
        e.starts_with("bad.toml:4:1: `fabric.leaf-radx`: unknown key `leaf-radx`: expected one of leaf-radix, "),
        "{e}"
    );
    assert!(e.contains("... (38 in all)"), "at most a handful of keys, closest first: {e}");
    assert!(e.ends_with("did you mean `leaf-radix`?"), "{e}");
    let e = err("[fabrc]\nkind = \"leaf-spine\"\n");
    assert!(e.contains("did you mean `fabric`?"), "{e}");
}

#[test]
fn unknown_kind_lists_the_choices() {
    let e = err("[fabric]\nkind = \"torus\"\ngpus = 8\n");
    assert_eq!(
        e,
        "bad.toml:2:8: `fabric.kind`: unknown value \"torus\": expected one of three-tier, leaf-spine, fat-tree, rail-optimized, custom"
    );
    let e = err("[fabric]\nkind = \"leafspine\"\ngpus = 8\n");
    assert!(e.starts_with("bad.toml:2:8: `fabric.kind`: unknown value \"leafspine\""), "{e}");
    assert!(e.ends_with("; did you mean `leaf-spine`?"), "{e}");
    let e = err(&format!("{LS}[transport]\nkind = \"rocev2\"\n"));
    assert!(e.starts_with("bad.toml:5:8: `transport.kind`: unknown value \"rocev2\""), "{e}");
    assert!(e.ends_with("; did you mean `roce`?"), "{e}");
}

#[test]
fn bad_unit_quotes_the_value() {
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = 1024\nnic = \"400Gbs\"\n");
    assert!(e.starts_with("bad.toml:4:7: `fabric.nic`: invalid rate \"400Gbs\": unknown unit \"Gbs\""), "{e}");
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = 1024\noversubscription = \"3-1\"\n");
    assert!(e.contains("invalid ratio \"3-1\": expected two positive numbers joined by a colon, such as 3:1"), "{e}");
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = -64\n");
    assert_eq!(e, "bad.toml:3:8: `fabric.gpus`: expected a whole number from 0 to 4294967295, got -64");
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = \"many\"\n");
    assert_eq!(e, "bad.toml:3:8: `fabric.gpus`: expected a whole number from 0 to 4294967295, got \"many\"");
    let e = err("[[site]]\nname = \"a\"\n[site.fabric]\nkind = \"leaf-spine\"\ngpus = 8\nnic = \"fast\"\n");
    assert!(e.starts_with("bad.toml:6:7: `site[1].fabric.nic`: invalid rate \"fast\""), "{e}");
    let e = err(&format!("{LS}[transport]\nlossless = \"yes\"\n"));
    assert_eq!(e, "bad.toml:5:12: `transport.lossless`: expected true or false, got \"yes\"");
}

#[test]
fn missing_fabric_and_missing_gpus() {
    assert_eq!(
        err("name = \"x\"\n"),
        "bad.toml: `fabric`: missing: expected a [fabric] table, or [[site]] tables joined by [[dci]] links"
    );
    assert_eq!(
        err("[fabric]\nkind = \"leaf-spine\"\n"),
        "bad.toml:1: `fabric.gpus`: missing: expected the number of GPUs, e.g. gpus = 1024"
    );
}

#[test]
fn gpus_must_fill_whole_hosts() {
    assert_eq!(
        err("[fabric]\nkind = \"leaf-spine\"\ngpus = 1020\ngpus-per-host = 8\n"),
        "bad.toml:3: `fabric.gpus`: 1020 GPUs is not a whole number of 8-GPU hosts (gpus-per-host)"
    );
}

#[test]
fn ports_exceeded_names_the_switch() {
    // 64-port switches: a 2-tier leaf-spine holds at most 64 leaves of 32 GPUs.
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = 4096\n");
    assert!(e.starts_with("bad.toml: spine-0 needs 128 ports but its radix is 64 (one port per leaf)"), "{e}");
    let e = err("[fabric]\nkind = \"three-tier\"\ngpus = 4096\n");
    assert!(e.starts_with("bad.toml: core-0 needs 240 ports but its radix is 64"), "{e}");
    let e = err("[fabric]\nkind = \"fat-tree\"\ngpus = 100000\n");
    assert_eq!(
        e,
        "bad.toml:1: `fabric.leaf-radix`: a fat-tree of 100000 GPUs needs k = 74 port switches, but the leaf-radix is 64"
    );
    let e = err("[fabric]\nkind = \"custom\"\n[[fabric.node]]\nname = \"a\"\nkind = \"gpu\"\n[[fabric.node]]\nname = \"b\"\nkind = \"gpu\"\n\
                 [[fabric.node]]\nname = \"s\"\nkind = \"switch\"\nradix = 1\n\
                 [[fabric.link]]\na = \"a\"\nb = \"s\"\nrate = \"1Gbps\"\n[[fabric.link]]\na = \"b\"\nb = \"s\"\nrate = \"1Gbps\"\n");
    assert_eq!(e, "bad.toml: s needs 2 ports but its radix is 1");
}

/// Cores must divide the aggregation uplinks, as spines must divide a leaf's: 3 cores of 16
/// uplinks left one idle and ran 3.20:1 where 3:1 was asked, without a word.
#[test]
fn core_switches_must_divide_the_aggregation_uplinks() {
    let e =
        err("[fabric]\nkind = \"three-tier\"\ngpus = 1024\ngpus-per-host = 8\nnic = \"400Gbps\"\ncore-switches = 3\n");
    assert!(
        e.contains("`fabric.core-switches`: 3 does not divide the 16 aggregation uplinks (15 would be used")
            && e.ends_with("give one of 1, 2, 4, 8, 16"),
        "{e}"
    );
}

#[test]
fn unknown_model_suggests() {
    let e = err(&format!("{LS}leaf-model = \"tomahawk5-64x800\"\n"));
    assert!(e.starts_with("bad.toml:4: `fabric.leaf-model`: unknown switch model \"tomahawk5-64x800\""), "{e}");
    assert!(e.ends_with("did you mean \"tomahawk5-64x800g\"?"), "{e}");
    // A scale-up switch is no network leaf (it built Ethernet leaves of NVSwitches at $0).
    for m in ["nvswitch", "nvlink5-switch-tray"] {
        let e = err(&format!("{LS}leaf-model = \"{m}\"\n"));
        assert!(
            e.contains("`fabric.leaf-model`") && e.contains("is an NVLink (scale-up) switch, not a network switch"),
            "{e}"
        );
    }
}

#[test]
fn multi_site_errors() {
    let site = |n: &str| format!("[[site]]\nname = \"{n}\"\n[site.fabric]\nkind = \"leaf-spine\"\ngpus = 64\n");
    let two = format!("{}{}", site("a"), site("b"));
    assert_eq!(err(&two), "bad.toml:1: `dci`: sites must be joined by at least one [[dci]] link");
    let e = err(&format!("{two}[[dci]]\na = \"a\"\nb = \"c\"\ndistance = \"10km\"\noptic = \"400ZR\"\n"));
    assert!(e.contains("`dci[1].b`: unknown site \"c\", expected one of a, b"), "{e}");
    let e = err(&format!("{two}[[dci]]\na = \"a\"\nb = \"b\"\ndistance = \"150km\"\noptic = \"400ZR\"\n"));
    assert!(
        e.contains("`dci[1].distance`: 150km exceeds the 400g-zr reach of 120km; choose an optic that reaches it, such as 400g-zr-plus"),
        "{e}"
    );
    // Just past the reach, both would round to 120km: metres show the difference.
    let e = err(&format!("{two}[[dci]]\na = \"a\"\nb = \"b\"\ndistance = \"120.0001km\"\noptic = \"400ZR\"\n"));
    assert!(e.contains("`dci[1].distance`: 120000.1m exceeds the 400g-zr reach of 120000m"), "{e}");
    let e = err(&format!("{two}[[dci]]\na = \"a\"\nb = \"b\"\ndistance = \"5000km\"\noptic = \"ZR+\"\n"));
    assert!(
        e.contains("5000km exceeds the 400g-zr-plus reach of 1000km; no coherent optic in the catalog reaches it (the farthest, 400g-zr-plus, reaches 1000km)"),
        "{e}"
    );
    let e = err(&format!("{two}[[dci]]\na = \"a\"\nb = \"b\"\ndistance = \"10km\"\noptic = \"laser\"\n"));
    assert!(e.contains("`dci[1].optic`: unknown optic \"laser\""), "{e}");
    let e = err(&format!("{}{}", site("a"), site("a")));
    assert!(e.contains("`site[2].name`: duplicate site name \"a\""), "{e}");
    let e = err(&format!("{LS}{}", site("a")));
    assert!(e.contains("give either one [fabric] or several [[site]] tables, not both"), "{e}");
    let dci = "[[dci]]\na = \"a\"\nb = \"b\"\ndistance = \"10km\"\noptic = \"400ZR\"\n";
    let e =
        err(&format!("{}[[site]]\nname = \"b\"\n[site.fabric]\nkind = \"leaf-spine\"\ngpus = 63\n{dci}", site("a")));
    assert!(e.starts_with("bad.toml:10: `site[2].fabric.gpus`: 63 GPUs is not a whole number"), "{e}");
    // A second link between the same sites would be merged silently: refused.
    let again = dci
        .replace("distance = \"10km\"", "distance = \"30km\"")
        .replace("a = \"a\"\nb = \"b\"", "a = \"b\"\nb = \"a\"");
    let e = err(&format!("{two}{dci}{again}"));
    assert!(e.contains("`dci[2].b`: b and a are already joined by dci[1]"), "{e}");
}

#[test]
fn custom_fabric_errors() {
    let e = err("[fabric]\nkind = \"custom\"\n[[fabric.node]]\nname = \"a\"\nkind = \"gpu\"\n[[fabric.link]]\na = \"a\"\nb = \"sw\"\nrate = \"1Gbps\"\n");
    assert!(e.contains("`fabric.link[1]`: unknown node \"sw\""), "{e}");
    let e = err("[fabric]\nkind = \"custom\"\n[[fabric.node]]\nname = \"a\"\nkind = \"gpu\"\n[[fabric.node]]\nname = \"a\"\nkind = \"gpu\"\n");
    assert!(e.contains("`fabric.node[2]`: duplicate node name \"a\""), "{e}");
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = 8\n[[fabric.node]]\nname = \"a\"\nkind = \"gpu\"\n");
    assert!(e.contains("only for kind = \"custom\""), "{e}");
    // A GPU with no link, and a link's rate and latency beyond any hardware.
    let nodes = "[fabric]\nkind = \"custom\"\n[[fabric.node]]\nname = \"g0\"\nkind = \"gpu\"\n\
                 [[fabric.node]]\nname = \"g1\"\nkind = \"gpu\"\n";
    let e = err(nodes);
    assert!(e.contains("`fabric.link`: GPU node \"g0\" has no link"), "{e}");
    let link = |extra: &str| format!("{nodes}[[fabric.link]]\na = \"g0\"\nb = \"g1\"\n{extra}");
    let e = err(&link("rate = \"200Tbps\"\n"));
    assert!(e.contains("`fabric.link[1]`: rate: expected a positive rate up to 100Tbps, got 200Tbps"), "{e}");
    let e = err(&link("rate = \"400Gbps\"\nlength = \"18000000000km\"\n"));
    assert!(e.contains("`fabric.link[1]`: length: expected at most 50000km"), "{e}");
    let e = err(&link("rate = \"400Gbps\"\nlatency = \"2s\"\n"));
    assert!(e.contains("`fabric.link[1]`: latency: expected at most 1s, got 2s"), "{e}");
}

#[test]
fn out_of_range_values() {
    let e = err(&format!("{LS}planes = 0\n"));
    assert!(e.contains("`fabric.planes`: expected 1 to 16, got 0"), "{e}");
    let e = err(&format!("{LS}nic = \"400Gbps\"\nplanes = 3\n"));
    assert!(e.contains("`fabric.nic`: expected a positive rate divisible by planes (3)"), "{e}");
    let e = err("[fabric]\nkind = \"fat-tree\"\nk = 7\ngpus-per-host = 1\n");
    assert!(e.contains("`fabric.k`: expected an even radix"), "{e}");
    // k = 0 names k, not the GPU count it would have given.
    let e = err("[fabric]\nkind = \"fat-tree\"\nk = 0\n");
    assert!(e.contains("`fabric.k`: expected an even radix of at least 2, got 0"), "{e}");
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = 3000000\ngpus-per-host = 1\n");
    assert!(e.contains("more than meshway builds in memory"), "{e}");
    let e = err(&format!("{LS}[transport]\nmtu = \"100B\"\n"));
    assert!(e.contains("`transport.mtu`: expected 256 to 65536 bytes, got 100"), "{e}");
    let e = err(&format!("{LS}management-ports = 4294967295\n"));
    assert!(e.contains("`fabric.management-ports`: expected 0 to 65536, got 4294967295"), "{e}");
    let e = err(&format!("{LS}nic = \"18446744073709551615bps\"\n"));
    assert!(e.contains("`fabric.nic`: expected at most 100Tbps"), "{e}");
    let e = err(&format!("name = \"a\\u001b[31mb\"\n{LS}"));
    assert!(e.contains("`name`: expected printable text, got the control character '\\u{1b}'"), "{e}");
    // A right-to-left override reverses the rest of a report's line.
    let e = err(&format!("name = \"a\\u202eb\"\n{LS}"));
    assert!(e.contains("`name`: expected printable text, got the bidirectional control U+202E"), "{e}");
    let e = err(&format!("{LS}[[workload]]\nname = \"w\\u202e\"\nkind = \"permutation\"\nsize = \"1MiB\"\n"));
    assert!(e.contains("`workload[1].name`: expected printable text, got the bidirectional control U+202E"), "{e}");
    let two = include_str!("../../../examples/two-site-100km.toml").replace("\"dc-b\"", "\"dc-\\u202eb\"");
    let e = err(&two);
    assert!(e.contains(":16: `site[2].name`: expected printable text, got the bidirectional control U+202E"), "{e}");
    let e = err("[fabric]\nkind = \"custom\"\n[[fabric.node]]\nname = \"3\"\nkind = \"gpu\"\n");
    assert!(e.contains("GPU name \"3\" is digits only, which flow files read as a rank number"), "{e}");
    let e = err("[fabric]\nkind = \"custom\"\n[[fabric.node]]\nname = \"s\"\nkind = \"switch\"\ntier = \"t\\u0001\"\n");
    assert!(e.contains("`fabric.node[1].tier`: expected printable text, got the control character '\\u{1}'"), "{e}");
    let e = err(&format!("{LS}nvlink = \"0bps\"\n"));
    assert!(e.contains("`fabric.nvlink`: expected a positive rate"), "{e}");
    // A radix derived from the switch at a slow NIC's rate names the NIC, and no overflowed
    // count (4294967295 was shown).
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = 16\ngpus-per-host = 1\nnic = \"1Kbps\"\n");
    assert!(
        e.contains("`fabric.nic`: 1kbps ports give the leaf model \"generic-64x400g\" more than 4096 ports, where a switch has 2 to 4096: set `nic` or `leaf-radix`"),
        "{e}"
    );
    // A 2-tier leaf-spine has no core: its radix is not the one blamed.
    let ok = "[fabric]\nkind = \"leaf-spine\"\ngpus = 16\ngpus-per-host = 1\nnic = \"400Mbps\"\nleaf-radix = 64\nspine-radix = 64\n";
    let built = Scenario::parse(ok, "ok.toml").and_then(|s| s.build(&Catalog::builtin()));
    assert!(built.is_ok(), "a 400Mbps NIC on given radixes builds: {:?}", built.err());

    let e = err(&format!("{LS}[fabric.link-latency]\nleaf-spine = \"5s\"\n"));
    assert!(e.contains("`fabric.link-latency.leaf-spine`: expected at most 1s, got 5s"), "{e}");
    let e = err(&format!("{LS}spines = 5\n"));
    assert!(e.contains("`fabric.spines`: expected a divisor of the 32 leaf uplinks, got 5"), "{e}");
}

/// A catalog NVLink switch whose port rate makes no sense is refused, not counted into
/// billions of trays (1 bit/s ports gave 1.7e19 dollars).
#[test]
fn an_nvlink_switch_port_rate_that_needs_absurd_links_is_refused() {
    let cat = Catalog::with_overlay("[[switch]]\nname = \"nvlink5-switch-tray\"\nport-rate = \"1bps\"\n", "mine.toml")
        .unwrap();
    let s = Scenario::parse(include_str!("../../../examples/nvl72-576.toml"), "nvl.toml").unwrap();
    let e = s.build(&cat).unwrap_err().to_string();
    assert!(e.contains("would take 7200000000000 links per GPU") && e.contains("expected at most 1024"), "{e}");
    assert!(Scenario::parse(include_str!("../../../examples/nvl72-576.toml"), "nvl.toml")
        .unwrap()
        .build(&Catalog::builtin())
        .is_ok());
}

#[test]
fn gpu_models_are_named_from_the_catalog() {
    let e = err(&format!("{LS}gpu = \"h100sxm\"\n"));
    assert!(e.contains("`fabric.gpu`: unknown GPU model \"h100sxm\", expected one of"), "{e}");
    assert!(e.ends_with("did you mean \"h100-sxm\"?"), "{e}");
    // Sites of one multi-site fabric share a GPU model.
    let site = |name: &str, gpu: &str| {
        format!("[[site]]\nname = \"{name}\"\n[site.fabric]\nkind = \"leaf-spine\"\ngpus = 64\ngpu = \"{gpu}\"\n")
    };
    let dci = "[[dci]]\na = \"a\"\nb = \"b\"\ndistance = \"10km\"\n";
    let e = err(&format!("{}{}{dci}", site("a", "h100-sxm"), site("b", "b200")));
    assert!(e.contains("`site[2].fabric.gpu`: \"b200\" differs from \"h100-sxm\" at an earlier site"), "{e}");
    let cat = Catalog::builtin();
    let s = Scenario::parse(&format!("{}{}{dci}", site("a", "b200"), site("b", "b200")), "ok.toml").unwrap();
    assert_eq!(s.build(&cat).unwrap().gpu.as_deref(), Some("b200"));
}

/// A custom fabric of two GPUs on one switch; `{}` is where a `[fabric]` key goes.
const CUSTOM: &str = "[fabric]\nkind = \"custom\"\n{}\n[[fabric.node]]\nname = \"a\"\nkind = \"gpu\"\nhost = 0\n\
    [[fabric.node]]\nname = \"b\"\nkind = \"gpu\"\nhost = 1\n[[fabric.node]]\nname = \"s\"\nkind = \"switch\"\n\
    [[fabric.link]]\na = \"a\"\nb = \"s\"\nrate = \"400Gbps\"\n[[fabric.link]]\na = \"b\"\nb = \"s\"\nrate = \"400Gbps\"\n";

#[test]
fn a_key_the_family_does_not_use_is_an_error_naming_the_families_that_do() {
    const FOUR: &str = "three-tier, leaf-spine, fat-tree, rail-optimized";
    let family = |kind: &str| match kind {
        "custom" => CUSTOM.to_string(),
        "fat-tree" => "[fabric]\nkind = \"fat-tree\"\nk = 8\ngpus-per-host = 1\n{}\n".to_string(),
        _ => format!("[fabric]\nkind = \"{kind}\"\ngpus = 256\n{{}}\n"),
    };
    // (key, a value, a family that does not read it, the families that do)
    let cases = [
        ("gpus", "64", "custom", FOUR),
        ("gpus-per-host", "8", "custom", FOUR),
        ("nvlink-domain", "72", "custom", FOUR),
        ("host-cage-rate", "\"800Gbps\"", "custom", FOUR),
        ("nvlink-switch-model", "\"nvlink5-switch-tray\"", "custom", FOUR),
        ("nic", "\"400Gbps\"", "custom", FOUR),
        ("nvlink", "\"3.6Tbps\"", "custom", FOUR),
        ("uplink", "\"400Gbps\"", "custom", FOUR),
        ("planes", "2", "custom", FOUR),
        ("leaf-model", "\"generic-64x400g\"", "custom", FOUR),
        ("spine-model", "\"generic-64x400g\"", "custom", FOUR),
        ("leaf-radix", "64", "custom", FOUR),
        ("spine-radix", "64", "custom", FOUR),
        ("core-model", "\"generic-64x400g\"", "custom", FOUR),
        ("core-radix", "64", "custom", FOUR),
        ("pod-size", "1024", "fat-tree", "leaf-spine, rail-optimized"),
        ("dual-homed", "true", "three-tier", "leaf-spine, rail-optimized"),
        ("backup-ports", "8", "fat-tree", "leaf-spine, rail-optimized"),
        ("oversubscription", "\"2:1\"", "fat-tree", "three-tier, leaf-spine, rail-optimized; a fat-tree takes `taper`"),
        ("aggregation-oversubscription", "\"2:1\"", "fat-tree", "three-tier, leaf-spine, rail-optimized"),
        ("gpus-per-leaf", "16", "three-tier", "leaf-spine, rail-optimized"),
        ("core-switches", "2", "leaf-spine", "three-tier"),
        ("spines", "4", "fat-tree", "leaf-spine, rail-optimized"),
        ("tiers", "3", "three-tier", "leaf-spine, rail-optimized"),
        ("k", "8", "leaf-spine", "fat-tree"),
        ("taper", "\"2:1\"", "rail-optimized", "fat-tree"),
        ("taper-at", "\"leaf\"", "leaf-spine", "fat-tree"),
        ("cable-lengths", "{ host-leaf = \"3m\" }", "custom", FOUR),
        ("layout", "{ hosts-per-rack = 4, racks-per-row = 8 }", "custom", FOUR),
        ("management-ports", "4", "custom", FOUR),
        (
            "link-latency",
            "{ host-leaf = \"1us\" }",
            "custom",
            "three-tier, leaf-spine, fat-tree, rail-optimized; give each [[fabric.link]] a `latency`",
        ),
        ("split", "\"halves\"", "leaf-spine", "custom"),
    ];
    for (key, value, kind, families) in cases {
        let text = family(kind).replace("{}", &format!("{key} = {value}"));
        let e = err(&text);
        let want = format!("`fabric.{key}`: a {kind} fabric does not use this key: it applies to {families}");
        assert!(e.contains(&want), "{key} on {kind}:\n{e}\nwanted: {want}");
        assert!(e.starts_with("bad.toml:"), "the message names the file and line: {e}");
    }
    // The same keys are accepted by a family that reads them.
    for (key, value, kind) in
        [("taper", "\"2:1\"", "fat-tree"), ("spines", "4", "leaf-spine"), ("split", "\"halves\"", "custom")]
    {
        let text = family(kind).replace("{}", &format!("{key} = {value}"));
        let s = Scenario::parse(&text, "ok.toml").unwrap();
        s.build(&Catalog::builtin()).unwrap_or_else(|e| panic!("{key} on {kind}: {e}"));
    }
}

#[test]
fn gpus_per_leaf_beyond_the_leaf_and_second_tier_keys_on_two_tiers() {
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = 1024\ngpus-per-leaf = 48\n");
    assert!(
        e.contains("`fabric.gpus-per-leaf`: 48 GPU ports and 48 uplinks need 38.4Tbps of leaf capacity; the leaf has 25.6Tbps (64 ports at 400Gbps)"),
        "{e}"
    );
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = 1024\naggregation-oversubscription = \"2:1\"\n");
    assert!(e.contains("a 2-tier fabric has no second-tier uplinks; set tiers = 3"), "{e}");
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = 1024\ncore-model = \"generic-64x400g\"\n");
    assert!(e.contains("`fabric.core-model`: a 2-tier leaf-spine has no core; set tiers = 3"), "{e}");
    let e = err("[fabric]\nkind = \"leaf-spine\"\ngpus = 1024\ntiers = 2\npod-size = 512\n");
    assert!(e.contains("`fabric.pod-size`: a 2-tier fabric has no pods; set tiers = 3"), "{e}");
}

#[test]
fn pod_size_sets_the_pods_and_refuses_what_does_not_fit() {
    // Meta-style: 16-GPU leaves at 1:1, pods of 3,072 GPUs (192 leaves), 7:1 to the core.
    let text = "[fabric]\nkind = \"leaf-spine\"\ngpus = 6144\ngpus-per-host = 8\ngpus-per-leaf = 16\ntiers = 3\n\
        pod-size = 3072\naggregation-oversubscription = \"7:1\"\nleaf-model = \"tomahawk5-128x400g\"\n\
        spine-model = \"modular-576x400g\"\ncore-model = \"modular-576x400g\"\n";
    let cat = Catalog::builtin();
    let s = Scenario::parse(text, "ok.toml").unwrap();
    let f = s.build(&cat).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.groups.len(), 2, "two pods");
    let gpus_in = |g: &meshway_fabric::model::Group| g.nodes.iter().filter(|n| f.node(**n).is_gpu()).count();
    assert_eq!(gpus_in(&f.groups[0]), 3072);
    // Each pod spine: one port to each of the 192 leaves, ceil(192 / 7) = 28 up.
    let tr = s.transport(&cat).unwrap();
    let r = meshway_fabric::analyze(&f, &cat, &tr);
    let spine = r.tiers.iter().find(|t| t.name == "spine").unwrap();
    assert_eq!(spine.switches, 2 * 16, "16 spines per pod (the leaves' uplinks)");
    assert_eq!(spine.down_bps / spine.switches, 192 * 400_000_000_000);
    assert_eq!(spine.up_bps / spine.switches, 28 * 400_000_000_000);
    // Not whole leaves, or more ports than the spine has.
    let e = err(&text.replace("pod-size = 3072", "pod-size = 3000"));
    assert!(e.contains("`fabric.pod-size`: expected a whole number of 16-GPU leaves, got 3000"), "{e}");
    let e = err(&text.replace("spine-model = \"modular-576x400g\"", "spine-model = \"tomahawk5-128x400g\""));
    assert!(
        e.contains("a pod of 3072 GPUs has 192 leaves: each pod spine needs 192 ports down and 28 up at 7:1, more than its 128 ports"),
        "{e}"
    );
}

#[test]
fn nic_models_are_named_from_the_catalog_at_the_fabrics_rate() {
    let e = err(&format!("{LS}nic-model = \"connectx7-40g\"\n"));
    assert!(e.contains("`fabric.nic-model`: unknown NIC model \"connectx7-40g\", expected one of"), "{e}");
    assert!(e.ends_with("did you mean \"connectx7-400g\"?"), "{e}");
    // The model's rate is the fabric's NIC rate per GPU, split over planes or not.
    let e = err(&format!("{LS}nic = \"400Gbps\"\nnic-model = \"connectx8-800g\"\n"));
    assert!(
        e.contains(
            "`fabric.nic-model`: \"connectx8-800g\" runs at 800Gbps, but the fabric's GPUs have 400Gbps of NIC each"
        ),
        "{e}"
    );
    let cat = Catalog::builtin();
    let ok = |text: &str| Scenario::parse(text, "ok.toml").unwrap().build(&cat).unwrap().nic_model;
    assert_eq!(
        ok(&format!("{LS}nic = \"400Gbps\"\nnic-model = \"connectx7-400g\"\n")).as_deref(),
        Some("connectx7-400g")
    );
    assert_eq!(
        ok(&format!("{LS}nic = \"800Gbps\"\nplanes = 2\nnic-model = \"connectx8-800g\"\n")).as_deref(),
        Some("connectx8-800g")
    );
    assert_eq!(ok(&CUSTOM.replace("{}", "nic-model = \"connectx7-400g\"")).as_deref(), Some("connectx7-400g"));
    assert_eq!(ok(LS), None);
    // Sites of one multi-site fabric share a NIC model.
    let site = |name: &str, nic: &str| {
        format!(
            "[[site]]\nname = \"{name}\"\n[site.fabric]\nkind = \"leaf-spine\"\ngpus = 64\nnic = \"800Gbps\"\n{nic}\n"
        )
    };
    let dci = "[[dci]]\na = \"a\"\nb = \"b\"\ndistance = \"10km\"\n";
    let cx8 = "nic-model = \"connectx8-800g\"";
    let mine = Catalog::with_overlay(
        "[[nic]]\nname = \"acme-800g\"\nports = 1\nrate = \"800Gbps\"\npower-w = 20\nprice-usd = 900\nsource = \"test\"\n",
        "mine.toml",
    )
    .unwrap();
    let two = format!("{}{}{dci}", site("a", cx8), site("b", "nic-model = \"acme-800g\""));
    let e = Scenario::parse(&two, "bad.toml").unwrap().build(&mine).unwrap_err().to_string();
    assert!(
        e.contains("`site[2].fabric.nic-model`: \"acme-800g\" differs from \"connectx8-800g\" at an earlier site"),
        "{e}"
    );
    let one = format!("{}{}{dci}", site("a", cx8), site("b", ""));
    assert_eq!(
        Scenario::parse(&one, "ok.toml").unwrap().build(&cat).unwrap().nic_model.as_deref(),
        Some("connectx8-800g")
    );
    // A site of another NIC rate cannot take the fabric's one model (it was billed as it).
    let mixed = format!("{}{}{dci}", site("a", "").replace("800Gbps", "400Gbps"), site("b", cx8));
    let e = Scenario::parse(&mixed, "bad.toml").unwrap().build(&cat).unwrap_err().to_string();
    assert!(
        e.contains("`site[1].fabric.nic`: this site's GPUs have 400Gbps of NIC each, but the fabric's NIC model \"connectx8-800g\" runs at 800Gbps"),
        "{e}"
    );
}

#[test]
fn a_catalog_key_in_a_scenario_says_where_it_goes() {
    let t = "[fabric]\nkind = \"leaf-spine\"\ngpus = 16\n[simulation]\nnccl-buffer = \"2GiB\"\n";
    let e = Scenario::parse(t, "s.toml").err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.ends_with(
            "unknown key `nccl-buffer`: expected one of fidelity, packet (`nccl-buffer` is a catalog key: give it \
             under [simulation] in a file passed with --catalog FILE)"
        ),
        "{e}"
    );
    let e = Scenario::parse(&t.replace("nccl-buffer", "nccl-bufer"), "s.toml").err().unwrap().to_string();
    assert!(!e.contains("catalog key"), "{e}");
}
