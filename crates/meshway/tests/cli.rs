//! The binary as a user runs it: exit codes, valid JSON, messages, and golden tables.

mod common;
use common::*;

use std::path::PathBuf;

#[test]
fn demo_runs_and_gives_a_verdict() {
    let dir = tempdir("demo");
    let html = dir.join("demo.html");
    let o = meshway(&["demo", "--html", html.to_str().unwrap()]);
    assert!(o.status.success());
    let s = stdout(&o);
    golden("demo.txt", &s);
    let page = std::fs::read_to_string(&html).unwrap();
    check_self_contained(&page, 5);
    render_in_chromium(&html);
    assert!(page.contains("All-reduce of 1 GiB") && page.contains("Verdict"));
    // The inference placement and the scheduling policies are drawn too.
    assert!(page.contains("GPU cost per hour of each placement") && page.contains("round trip from each region"));
    assert!(page.contains("mean job completion time per policy"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(s.contains("Verdict"));
    let o = meshway(&["demo", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["fabrics"].as_array().unwrap().len(), 4);
    assert!(!v["verdict"].as_array().unwrap().is_empty());
}

#[test]
fn plan_golden_tables() {
    for name in ["leaf-spine-1024", "three-tier-1024", "two-site-100km", "custom-small"] {
        let o = meshway(&["plan", &format!("examples/{name}.toml")]);
        assert!(o.status.success(), "{name}");
        golden(&format!("plan-{name}.txt"), &stdout(&o));
    }
}

#[test]
fn plan_json_is_valid_and_deterministic() {
    let a = meshway(&["plan", "examples/rail-optimized-1024.toml", "--json"]);
    let b = meshway(&["plan", "examples/rail-optimized-1024.toml", "--json"]);
    assert_eq!(a.stdout, b.stdout);
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).expect("valid JSON");
    assert_eq!(v["gpus"], 1024);
    assert_eq!(v["bisection"]["maxflow_bps"], 204_800_000_000_000u64);
}

#[test]
fn compare_marks_the_best() {
    let o = meshway(&["compare", "examples/three-tier-1024.toml", "examples/leaf-spine-1024.toml"]);
    assert!(o.status.success());
    let s = stdout(&o);
    let bis = s.lines().find(|l| l.starts_with("bisection")).unwrap();
    assert!(bis.contains("204.8Tbps *") && !bis.contains("25.6Tbps *"), "{bis}");
    let o = meshway(&["compare", "examples/three-tier-1024.toml", "examples/leaf-spine-1024.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["fabrics"].as_array().unwrap().len(), 2);
    // The same scenario twice: its columns are told apart by position.
    let o = meshway(&["compare", "examples/testbed-2x2.toml", "examples/testbed-2x2.toml"]);
    let head = stdout(&o).lines().next().unwrap_or_default().to_string();
    assert!(head.contains("testbed-2x2 (1)") && head.contains("testbed-2x2 (2)"), "{head}");
    // Fabrics of different sizes: totals are not ranked (4 GPUs' 4 switches are not better
    // than 1,024 GPUs' 48), ratios and per-GPU figures are.
    let o = meshway(&["compare", "examples/testbed-2x2.toml", "examples/leaf-spine-1024.toml"]);
    let s = stdout(&o);
    for total in ["switches ", "bisection", "optics and copper cables", "power", "cost "] {
        let line = s.lines().find(|l| l.starts_with(total)).unwrap_or_default();
        assert!(!line.is_empty() && !line.contains('*'), "{total}: {s}");
    }
    let per_gpu = s.lines().find(|l| l.starts_with("network cost per GPU")).unwrap_or_default();
    assert!(per_gpu.contains('*'), "{s}");
    assert!(s.contains("the fabrics differ in GPUs, so totals"), "{s}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("meshway-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[fabric]\nkind = \"leaf-spine\"\ngpus = 1024\nleaf-radx = 64\n").unwrap();
    let o = meshway(&["plan", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("bad.toml:4:1: `fabric.leaf-radx`: unknown key `leaf-radx`"), "{err}");
    assert!(err.contains("did you mean `leaf-radix`?"), "{err}");
    let o = meshway(&["plan", "no/such/file.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read scenario no/such/file.toml"));
}

#[test]
fn help_shows_examples() {
    let o = meshway(&["--help"]);
    assert!(stdout(&o).contains("Examples:"));
    let o = meshway(&["plan", "--help"]);
    assert!(stdout(&o).contains("meshway plan examples/leaf-spine-1024.toml"));
}

/// `simulate --help` names every algorithm a scenario may give (it left out direct, nvls,
/// nvls-tree and collnet), as the schema lists them.
#[test]
fn simulate_help_lists_every_algorithm() {
    let help = stdout(&meshway(&["simulate", "--help"]));
    let schema: serde_json::Value = serde_json::from_slice(&meshway(&["schema"]).stdout).unwrap();
    let algos: Vec<&str> = schema["$defs"]["AlgorithmConfig"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["enum"].as_array().into_iter().flatten().chain(v.get("const")))
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(algos.len(), 10, "{algos:?}");
    for a in algos {
        assert!(help.lines().any(|l| l.trim_start().starts_with(&format!("{a} "))), "{a} is not listed:\n{help}");
    }
    assert!(help.contains("direct             all-to-all and send-recv, the only algorithm they take"), "{help}");
}

/// `--tolerance -0` printed `"tolerance": -0.0` in the JSON.
#[test]
fn a_tolerance_of_minus_zero_is_zero() {
    let dir = tempdir("tolerance");
    let file = sim_scenario(&dir);
    for t in ["--tolerance=-0", "--tolerance=-0%"] {
        let o = meshway(&["simulate", file.to_str().unwrap(), t, "--json", "--no-ideal"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let s = stdout(&o);
        let line = s.lines().find(|l| l.contains("\"tolerance\":")).unwrap();
        assert_eq!(line.trim(), "\"tolerance\": 0.0,", "{t}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The text names the tuner plugin's region that picked a collective (AWS's on p5 EFA).
#[test]
fn the_text_names_the_tuner_plugins_region() {
    let dir = tempdir("plugin");
    let p = dir.join("p5.toml");
    std::fs::write(
        &p,
        "[fabric]\nkind = \"leaf-spine\"\ngpus = 32\ngpus-per-host = 8\nnic = \"400Gbps\"\nplanes = 4\n\
         nic-model = \"aws-efa-p5\"\ngpu = \"h100-sxm\"\n[transport]\nkind = \"efa\"\n\
         [[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"512MiB\"\n",
    )
    .unwrap();
    let o = meshway(&["simulate", p.to_str().unwrap(), "--no-ideal"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("all-reduce 512MiB (aws-ofi-p5 region 3: ring, ll128)"), "{text}");
    let o = meshway(&["simulate", p.to_str().unwrap(), "--no-ideal", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["workloads"][0]["tuner"][0]["plugin_region"], "aws-ofi-p5 region 3");
    // A sweep says it per size: 16 MiB is the tree's region, 64 MiB the ring's.
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("size = \"512MiB\"", "sweep-from = \"16MiB\"\nsweep-to = \"64MiB\"");
    std::fs::write(&p, text).unwrap();
    let o = meshway(&["simulate", p.to_str().unwrap(), "--no-ideal"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("double-binary-tree, ll128 (aws-ofi-p5 region 1)"), "{text}");
    assert!(text.contains("ring, ll128 (aws-ofi-p5 region 3)"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A small simulation scenario written to a temporary directory.
fn sim_scenario(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("sim.toml");
    std::fs::write(
        &p,
        "seed = 3\n[fabric]\nkind = \"leaf-spine\"\ngpus = 32\ngpus-per-host = 8\n\
         [[workload]]\nname = \"ar\"\nkind = \"collective\"\nop = \"all-reduce\"\nsize = \"64MiB\"\n\
         algorithm = \"ring\"\nprotocol = \"simple\"\n\
         [[workload]]\nname = \"flows\"\nkind = \"flows\"\nfile = \"f.csv\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("f.csv"), "src,dst,bytes,start,deps\ngpu-0,gpu-9,1MiB,0,\ngpu-9,gpu-17,1MiB,0,0\n")
        .unwrap();
    p
}

#[test]
fn simulate_prints_tables_json_csv_and_htsim() {
    let dir = tempdir("sim");
    let file = sim_scenario(&dir);
    let f = file.to_str().unwrap();
    let o = meshway(&["simulate", f]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = stdout(&o);
    assert!(s.contains("all-reduce 64MiB (ring, simple)") && s.contains("Most congested links"), "{s}");
    let a = meshway(&["simulate", f, "--json", "--flows"]);
    let b = meshway(&["simulate", f, "--json", "--flows"]);
    assert_eq!(a.stdout, b.stdout, "same seed, byte-identical JSON");
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).expect("valid JSON");
    assert_eq!(v["workloads"].as_array().unwrap().len(), 2);
    let msgs = v["workloads"][0]["messages"].as_u64().unwrap() as usize;
    assert_eq!(v["flows"].as_array().unwrap().len(), msgs + 2, "every message of both workloads");
    let csv = stdout(&meshway(&["simulate", f, "--csv"]));
    assert!(csv.starts_with("workload,src,dst,bytes,start_ns,end_ns,fct_ns,failed\n"));
    assert!(csv.contains("flows,gpu-0,gpu-9,1048576,"));
    let cm = dir.join("x.cm");
    let o = meshway(&["simulate", f, "--htsim", cm.to_str().unwrap()]);
    assert!(o.status.success());
    let text = std::fs::read_to_string(&cm).unwrap();
    assert!(text.starts_with("Nodes 32\nConnections "));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn simulate_errors_exit_2_with_the_key() {
    let dir = tempdir("simerr");
    let p = dir.join("bad.toml");
    std::fs::write(&p, "[fabric]\nkind = \"leaf-spine\"\ngpus = 16\n[[workload]]\nkind = \"collective\"\nop = \"all-reduse\"\nsize = \"1MiB\"\n").unwrap();
    let o = meshway(&["simulate", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("bad.toml:6:6: `workload[1].op`: unknown value \"all-reduse\": expected one of all-reduce, all-gather, reduce-scatter, all-to-all, broadcast, send-recv; did you mean `all-reduce`?"),
        "{e}"
    );
    let o = meshway(&["simulate", p.to_str().unwrap(), "--routing", "random"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected ecmp, adaptive, adaptive-global or spray"));
    // A bare number where a duration needs its unit is refused, not read as nanoseconds.
    std::fs::write(&p, "[fabric]\nkind = \"leaf-spine\"\ngpus = 16\n[[failure]]\nat = 5\nswitch = \"spine-0\"\n")
        .unwrap();
    let o = meshway(&["simulate", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("bad.toml:5:6: `failure[1].at`: invalid duration 5: a number needs a unit, as in \"5ms\""),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn place_refuses_more_candidates_than_it_searches() {
    let dir = tempdir("place17");
    let p = dir.join("many.toml");
    let mut t = String::from(
        "[[model]]\nname = \"m\"\ngpus-per-server = 1\nprefill-tokens-per-s = 100000\n\
         decode-tokens-per-s = 1000\nmax-batch = 8\nprompt-tokens = 100\noutput-tokens = 50\n",
    );
    for i in 0..17 {
        t.push_str(&format!("[[site]]\nname = \"s{i}\"\ngpus = 0\nmax-gpus = 8\n"));
    }
    t.push_str("[[region]]\nname = \"r\"\nrate = 1\ndistance = { s16 = \"10km\" }\n");
    std::fs::write(&p, t).unwrap();
    // 17 candidates: the 17th used to be dropped without a word.
    let o = meshway(&["place", p.to_str().unwrap(), "--no-sim"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("17 candidate sites (s0, s1,") && stderr(&o).contains("at most 16"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn simulate_exits_1_when_messages_fail() {
    let dir = tempdir("simfail");
    let p = dir.join("cut.toml");
    let base = "[fabric]\nkind = \"leaf-spine\"\ngpus = 16\ngpus-per-host = 1\n\
                [[workload]]\nkind = \"all-to-all\"\nsize = \"1MiB\"\ngroup = \"all\"\n";
    std::fs::write(&p, format!("{base}[[failure]]\nat = \"0s\"\nlink = \"gpu-0:leaf-0\"\n")).unwrap();
    for json in [false, true] {
        let o = meshway(&["simulate", p.to_str().unwrap(), if json { "--json" } else { "--seed=1" }]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("30 messages failed; the first: no path from gpu-0"), "{}", stderr(&o));
        if json {
            let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
            assert_eq!(v["workloads"][0]["failed_messages"], 30);
        } else {
            assert!(stdout(&o).contains("30 messages FAILED"), "{}", stdout(&o));
        }
    }
    // Both spines down: the ring fails and the permutation after it never starts. It is
    // reported as not run, not as 4 failed messages that "wait on a message that did not
    // complete" (counted into 180); the ring's reasons are listed once each.
    std::fs::write(
        &p,
        "[fabric]\nkind = \"leaf-spine\"\ngpus = 4\ngpus-per-host = 1\nleaf-radix = 4\nspine-radix = 4\nspines = 2\n\
         nic = \"400Gbps\"\n[[workload]]\nname = \"ar\"\nkind = \"collective\"\nop = \"all-reduce\"\n\
         algorithm = \"ring\"\nsize = \"64MiB\"\n[[workload]]\nname = \"perm\"\nkind = \"permutation\"\n\
         size = \"64MiB\"\n[[failure]]\nswitch = \"spine-0\"\n[[failure]]\nswitch = \"spine-1\"\n",
    )
    .unwrap();
    let o = meshway(&["simulate", p.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("176 messages failed; the first: no path from gpu-1 to gpu-2"), "{}", stderr(&o));
    assert!(stderr(&o).contains("; perm did not run (it starts after a workload that failed)"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let (ar, perm) = (&v["workloads"][0], &v["workloads"][1]);
    assert_eq!(ar["failed_messages"], 176);
    let reasons: Vec<&str> = ar["failures"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    let mut distinct = reasons.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), reasons.len(), "{reasons:?}");
    assert_eq!(reasons.len(), 5, "four links with no path around them, then a wait: {reasons:?}");
    assert_eq!(reasons[4], "gpu-0 to gpu-1: waits on a message that did not complete");
    assert_eq!(perm["failed_messages"], 0);
    assert_eq!(perm["not_run_after"], "ar");
    assert!(perm.get("failures").is_none(), "{perm}");
    let o = meshway(&["simulate", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("\nperm: NOT RUN: it starts after ar, which failed\n"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("perm: 4 messages FAILED"), "{}", stdout(&o));
    // Healed in time: every message arrives, exit 0.
    std::fs::write(&p, format!("{base}[[failure]]\nat = \"0s\"\nlink = \"gpu-0:leaf-0\"\nuntil = \"2ms\"\n")).unwrap();
    let o = meshway(&["simulate", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A packet-level run cut at its event limit says so, not that paths were lost.
    let incast = include_str!("../../../examples/incast-pfc.toml")
        .replace("[simulation.packet]", "[simulation.packet]\nmax-events = 10");
    std::fs::write(&p, incast).unwrap();
    let o = meshway(&["simulate", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("the run stopped at the event limit (10 events)"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn schema_prints_the_docs_schema() {
    let o = meshway(&["schema"]);
    assert_eq!(o.status.code(), Some(0));
    let on_disk =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/scenario.schema.json")).unwrap();
    assert!(String::from_utf8_lossy(&o.stdout) == on_disk, "meshway schema differs from docs/scenario.schema.json");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["title"], "meshway scenario");
}

#[test]
fn validate_needs_a_validation_set() {
    let o = meshway(&["validate", "no/such/dir"]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("cannot read no/such/dir/collectives/nccl-tests.csv (is no/such/dir a validation set?)"), "{e}");
}

#[test]
fn validate_plan_matches_the_published_reference_designs() {
    let set = root().join("validation");
    let o = meshway(&["validate", set.to_str().unwrap(), "--set", "plan", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v["plan"]["rows"].as_array().unwrap();
    assert!(rows.len() >= 80, "{} rows", rows.len());
    // Every row matches its published count exactly, except the rows that say why not.
    for r in rows {
        match r["status"].as_str().unwrap() {
            "match" if r["quantity"].as_str().unwrap().starts_with("oversubscription") => {
                let (p, q) = (r["planned"].as_f64().unwrap(), r["published"].as_f64().unwrap());
                assert!((p / q - 1.0).abs() <= 0.005, "{r}");
            }
            "match" => assert_eq!(r["planned"], r["published"], "{r}"),
            "differs" => assert!(r["differs"].as_str().is_some_and(|d| d.len() > 20), "{r}"),
            _ => panic!("a row that does not match: {r}"),
        }
    }
    assert_eq!(v["plan"]["mismatched"], 0);
    let planned = |design: &str, q: &str| {
        rows.iter()
            .find(|r| r["design"] == design && r["quantity"] == q)
            .map(|r| r["planned"].as_f64().unwrap())
            .unwrap()
    };
    // NVIDIA's XDR spines are not linear in the SU count (4, 18, 36, 72): a leaf's 72
    // uplinks go evenly to a number of spines that divides 72.
    assert_eq!(planned("dgx-b300-xdr-4su", "switches.spine"), 18.0);
    assert_eq!(planned("dgx-b300-xdr-8su", "switches.spine"), 36.0);
    assert_eq!(planned("dgx-h100-64su", "switches.core"), 256.0);
    assert_eq!(planned("dgx-gb200-1su", "scale-up.switch-trays"), 72.0);

    // A design whose published count is wrong fails the run with exit status 1.
    let dir = std::env::temp_dir().join(format!("meshway-validate-plan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("plan")).unwrap();
    let text = std::fs::read_to_string(set.join("plan/designs.toml")).unwrap();
    let one = &text[..text.find("[[design]]\nname = \"dgx-h100-2su\"").unwrap()];
    std::fs::write(
        dir.join("plan/designs.toml"),
        one.replace("\"switches.spine\", published = 4,", "\"switches.spine\", published = 5,"),
    )
    .unwrap();
    let o = meshway(&["validate", dir.to_str().unwrap(), "--set", "plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("1 mismatch"), "{}", stdout(&o));
    assert!(stderr(&o).contains("1 reference-design rows do not match"), "{}", stderr(&o));
    // An unknown quantity names the file, the design and what is expected.
    std::fs::write(dir.join("plan/designs.toml"), one.replace("\"switches.spine\"", "\"spine-count\"")).unwrap();
    let o = meshway(&["validate", dir.to_str().unwrap(), "--set", "plan"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("designs.toml") && e.contains("design \"dgx-h100-1su\": unknown quantity \"spine-count\""),
        "{e}"
    );
    // An empty set checks nothing: refused rather than passed.
    std::fs::write(dir.join("plan/designs.toml"), "# nothing\n").unwrap();
    let o = meshway(&["validate", dir.to_str().unwrap(), "--set", "plan"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("designs.toml:1: no [[design]] tables"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Checks a report as a file a person opens offline: one HTML document, charts with lines
/// in them, nothing fetched, no script.
fn check_self_contained(html: &str, min_charts: usize) {
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(html.matches("<svg ").count() >= min_charts, "{} charts", html.matches("<svg ").count());
    for banned in ["<script", " src=", " href=", "url(", "@import", "<link", "<iframe", "<img"] {
        assert!(!html.contains(banned), "a report must not contain {banned:?}");
    }
    // The only URI outside the report's text (whose citations are plain text) is the SVG
    // namespace, which is never fetched.
    let markup: String = html
        .split("<pre>")
        .enumerate()
        .map(|(i, p)| if i == 0 { p } else { p.split_once("</pre>").map_or("", |x| x.1) })
        .collect();
    assert_eq!(markup.matches("http").count(), markup.matches("xmlns=\"http://www.w3.org/2000/svg\"").count());
    // Every line has points.
    for d in html.split("<path d=\"").skip(1) {
        assert!(d.starts_with('M') && d.contains(" L"), "an empty line: {}", &d[..d.len().min(40)]);
    }
}

#[test]
fn simulate_writes_a_self_contained_html_report() {
    let dir = tempdir("html");
    let out = dir.join("incast.html");
    let o = meshway(&["simulate", "examples/incast-pfc.toml", "--html", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // --json stays the run's JSON, without per-message records unless asked for.
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert!(v.get("flows").is_none() && v["packet"]["stats"]["pauses"].as_u64().unwrap() > 0);
    let html = std::fs::read_to_string(&out).unwrap();
    check_self_contained(&html, 4);
    for chart in ["Message completion times (CDF)", "Most utilized links", "Deepest queues over time", "Time paused"] {
        assert!(html.contains(chart), "missing {chart}");
    }
    // A sweep draws busbw against size on a log axis; a flow-level run has no packet charts.
    let s = dir.join("sweep.toml");
    std::fs::write(
        &s,
        "[fabric]\nkind = \"leaf-spine\"\ngpus = 32\ngpus-per-host = 8\n[[workload]]\nkind = \"collective\"\nop = \"all-reduce\"\nsweep-from = \"1MiB\"\nsweep-to = \"64MiB\"\n",
    )
    .unwrap();
    let out2 = dir.join("sweep.html");
    let o = meshway(&["simulate", s.to_str().unwrap(), "--html", out2.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&out2).unwrap();
    check_self_contained(&html, 1);
    assert!(html.contains("bus bandwidth") && html.contains("64MiB") && !html.contains("Deepest queues"));
    // A run of sweeps alone prints its tables, not an engine line of 0 flows at 0 ns.
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("all-reduce (auto) over 32 ranks") && !text.contains("Engine:"), "{text}");
    render_in_chromium(&out);
    // A training step: one lane per pipeline stage with every forward and backward op of the
    // first replica and its gradient all-reduce; the hottest links over time.
    let out3 = dir.join("train.html");
    let o = meshway(&["simulate", "examples/train-3d-1024.toml", "--html", out3.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = &v["workloads"][0]["training"];
    assert!(t.get("timeline").is_none(), "the timeline stays out of JSON");
    let (pp, m) = (t["pp"].as_u64().unwrap(), t["micro_batches"].as_u64().unwrap());
    let html = std::fs::read_to_string(&out3).unwrap();
    check_self_contained(&html, 4);
    let lanes = html.split("<svg ").find(|c| c.contains("each pipeline stage")).expect("a step timeline");
    assert_eq!(lanes.matches(">stage ").count() as u64, pp);
    let segments = ["#0072B2", "#E69F00", "#009E73"]
        .iter()
        .map(|c| lanes.matches(&format!("height=\"14\" fill=\"{c}\"")).count() as u64)
        .collect::<Vec<_>>();
    assert_eq!(segments, vec![pp * m, pp * m, pp], "forward, backward and all-reduce per stage");
    assert!(html.contains("Hottest links over time"));
    render_in_chromium(&out3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plan_and_compare_write_self_contained_html_reports() {
    let dir = tempdir("planhtml");
    let out = dir.join("plan.html");
    let o = meshway(&["plan", "examples/rail-optimized-1024.toml", "--html", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&out).unwrap();
    check_self_contained(&html, 2);
    // The tiers top down with their switch counts, the links between them, the GPUs.
    let (spine, leaf, gpus) = (
        html.find("spine: 16 switches").unwrap(),
        html.find("leaf: 32 switches").unwrap(),
        html.find("1,024 GPUs in 128 hosts").unwrap(),
    );
    assert!(spine < leaf && leaf < gpus);
    assert!(html.contains("1,024 x 400Gbps (leaf-spine)") && html.contains("Bill of materials by cost"));
    let out2 = dir.join("cmp.html");
    let o = meshway(&[
        "compare",
        "examples/three-tier-1024.toml",
        "examples/leaf-spine-1024.toml",
        "--html",
        out2.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&out2).unwrap();
    check_self_contained(&html, 4);
    render_in_chromium(&out);
    render_in_chromium(&out2);
    // One file is not a comparison.
    let o = meshway(&["compare", "examples/three-tier-1024.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 values required"), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn infer_place_multisite_and_validate_write_html() {
    let dir = tempdir("morehtml");
    let out = dir.join("infer.html");
    let o = meshway(&[
        "infer",
        "examples/inference-edge-vs-central.toml",
        "--duration",
        "1min",
        "--html",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&out).unwrap();
    check_self_contained(&html, 3);
    assert!(html.contains("p99 time to first token per region") && html.contains("objective"));
    assert!(html.contains("Time to first token: share of requests at or below"), "a TTFT CDF per region");
    let out = dir.join("place.html");
    let o = meshway(&["place", "examples/inference-edge-vs-central.toml", "--no-sim", "--html", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&out).unwrap();
    check_self_contained(&html, 2);
    // The map: regions down, sites across, the serving site of each region dark.
    assert!(html.contains("optimized: round trip from each region (objective) to each site"), "a placement map");
    assert!(html.contains(">new-york (250.0ms)<") && html.contains("us-central</text>"));
    // One dark cell per region: each of the 10 regions is served by exactly one site.
    assert_eq!(html.matches(r##"fill="#fff" font-weight="bold""##).count(), 10);
    render_in_chromium(&dir.join("infer.html"));
    render_in_chromium(&out);
    let out = dir.join("ms.html");
    let o = meshway(&[
        "multisite",
        "examples/two-site-training.toml",
        "--distances",
        "0km,100km",
        "--wavelengths",
        "1,8",
        "--html",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&out).unwrap();
    check_self_contained(&html, 2);
    assert!(html.contains("Training step against DCI distance") && html.contains("100 km"));
    render_in_chromium(&out);
    // validate: a small set (the first rows of the collectives' published table).
    let set = dir.join("set");
    std::fs::create_dir_all(set.join("collectives")).unwrap();
    let rows = std::fs::read_to_string("../../validation/collectives/nccl-tests.csv")
        .or_else(|_| std::fs::read_to_string("validation/collectives/nccl-tests.csv"))
        .unwrap();
    // The header and three Azure ND H100 v5 rows with a published busbw of at least 1 GB/s.
    let mut lines = rows.lines().filter(|l| !l.starts_with('#'));
    let mut head: Vec<&str> = vec![lines.next().unwrap()];
    head.extend(
        lines
            .filter(|l| l.starts_with("az-ndh100v5-"))
            .filter(|l| l.split(',').nth(12).and_then(|b| b.parse::<f64>().ok()).is_some_and(|b| b >= 1.0))
            .take(3),
    );
    std::fs::write(set.join("collectives/nccl-tests.csv"), head.join("\n") + "\n").unwrap();
    let setups = std::fs::read_to_string("../../validation/collectives/setups.toml")
        .or_else(|_| std::fs::read_to_string("validation/collectives/setups.toml"))
        .unwrap();
    std::fs::write(set.join("collectives/setups.toml"), setups).unwrap();
    let out = dir.join("v.html");
    let o = meshway(&["validate", set.to_str().unwrap(), "--set", "collectives", "--html", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&out).unwrap();
    check_self_contained(&html, 1);
    assert!(html.contains("published nccl-tests rows") && html.contains("<circle"));
    render_in_chromium(&out);
    // The whole plan and inference sets: every published count, serving figure and round trip
    // is a point.
    for (set, charts, titles) in [
        ("plan", 1, &["published counts of"][..]),
        ("inference", 4, &["Serving: output tokens/s", "Serving: time to first token", "Inter-region round trips"][..]),
    ] {
        let out = dir.join(format!("v-{set}.html"));
        let o = meshway(&["validate", "validation", "--set", set, "--html", out.to_str().unwrap(), "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let html = std::fs::read_to_string(&out).unwrap();
        check_self_contained(&html, charts);
        for t in titles {
            assert!(html.contains(t), "{set}: {t}");
        }
        let points = match set {
            "plan" => v["plan"]["rows"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["planned"].as_f64().is_some_and(|p| p > 0.0) && r["published"].as_f64().unwrap() > 0.0)
                .count(),
            _ => {
                let figs: usize = v["inference"]["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["figures"].as_array().unwrap().len())
                    .sum();
                figs + v["inference"]["wan"].as_array().unwrap().len()
            }
        };
        assert_eq!(html.matches("<circle").count(), points, "{set}: one point per published figure");
        render_in_chromium(&out);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_examples_never_wrap_mid_command() {
    // clap wraps help at the terminal's width (COLUMNS when not a terminal). On an 80-column
    // terminal the examples and the prose after them must read exactly as on a wide one:
    // nothing re-wrapped, no command split across lines.
    let help = |verb: &[&str], cols: &str| {
        let mut args = verb.to_vec();
        args.push("--help");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_meshway"))
            .args(&args)
            .env("COLUMNS", cols)
            .output()
            .unwrap();
        assert!(o.status.success(), "{verb:?}");
        let s = stdout(&o);
        let at = s.find("\nExample").unwrap_or_else(|| panic!("{verb:?}: no examples in the help"));
        s[at..].to_string()
    };
    for verb in [
        &[][..],
        &["plan"],
        &["compare"],
        &["simulate"],
        &["demo"],
        &["infer"],
        &["place"],
        &["multisite"],
        &["schedule"],
        &["validate"],
        &["reflect"],
        &["ping"],
        &["perf"],
        &["trace"],
        &["agent"],
        &["history"],
        &["testbed"],
        &["optics"],
        &["traffic"],
    ] {
        let (narrow, wide) = (help(verb, "80"), help(verb, "1000"));
        assert_eq!(narrow, wide, "{verb:?}: the help after the options wraps at 80 columns");
        for l in narrow.lines() {
            assert!(l.chars().count() <= 80, "{verb:?}: {l}");
        }
    }
}

#[test]
fn surprising_plans_and_runs_explain_themselves() {
    let dir = tempdir("explain");
    // A 64-GPU leaf-spine with one spine: the plan warns.
    let f = dir.join("one-spine.toml");
    std::fs::write(
        &f,
        "[fabric]\nkind = \"leaf-spine\"\ngpus = 64\ngpus-per-host = 8\nnic = \"400Gbps\"\noversubscription = \"2:1\"\n",
    )
    .unwrap();
    let o = meshway(&["plan", f.to_str().unwrap()]);
    assert!(o.status.success());
    let s = stdout(&o);
    assert!(s.contains("the spine tier is a single switch: losing it cuts every path through that tier"), "{s}");
    // A permutation on a fat-tree under ECMP: the note names hash collisions and the fix;
    // sprayed, the note is gone.
    let f = dir.join("perm.toml");
    std::fs::write(
        &f,
        "seed = 3\n[fabric]\nkind = \"fat-tree\"\nk = 8\n[transport]\nkind = \"roce\"\nrouting = \"ecmp\"\n\
         [[workload]]\nkind = \"permutation\"\nsize = \"16MiB\"\n",
    )
    .unwrap();
    let o = meshway(&["simulate", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("note: ECMP hashing spread") && s.contains("--routing adaptive or --routing spray"), "{s}");
    let o = meshway(&["simulate", f.to_str().unwrap(), "--routing", "spray"]);
    assert!(!stdout(&o).contains("note: ECMP"), "{}", stdout(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A long scenario name is cut in compare's column header (it padded every row to its width).
#[test]
fn compare_cuts_long_names_in_its_header() {
    let dir = tempdir("compare-long");
    let p = dir.join("long.toml");
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/leaf-spine-1024.toml")).unwrap();
    let name = format!("{}-a", "x".repeat(5000));
    std::fs::write(&p, text.replacen("name = \"leaf-spine\"", &format!("name = \"{name}\""), 1)).unwrap();
    // A second long name that differs only at its end keeps its own header.
    let q = dir.join("long2.toml");
    std::fs::write(&q, text.replacen("name = \"leaf-spine\"", &format!("name = \"{}-b\"", "x".repeat(5000)), 1))
        .unwrap();
    let o = meshway(&["compare", p.to_str().unwrap(), q.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.lines().all(|l| l.chars().count() < 200), "{}", &out[..out.len().min(500)]);
    let x = |n: usize| "x".repeat(n);
    let head = out.lines().next().unwrap();
    assert!(head.contains(&format!("{}…{}-a", x(20), x(17))), "{head}");
    assert!(head.contains(&format!("{}…{}-b", x(20), x(17))), "{head}");
}

/// `--html` (and the other files meshway writes) never replaces an input of the run, standard
/// output, or a file that is not a page: a scenario turned into a web page is lost work.
#[test]
fn outputs_never_replace_inputs() {
    let dir = tempdir("outputs");
    let scenario = dir.join("in.toml");
    std::fs::copy(root().join("examples/custom-small.toml"), &scenario).unwrap();
    let before = std::fs::read(&scenario).unwrap();
    let s = scenario.to_str().unwrap();
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "mine\n").unwrap();
    let page = dir.join("plan.html");
    let sim = sim_scenario(&dir);
    let sim_before = std::fs::read(&sim).unwrap();
    let sim = sim.to_str().unwrap();
    let flows_path = dir.join("f.csv");
    let flows_before = std::fs::read(&flows_path).unwrap();
    let flows = flows_path.to_str().unwrap();
    let same = dir.join("same.out");
    let same_str = same.to_str().unwrap();
    for (args, needle) in [
        (vec!["plan", s, "--html", s], "is an input of this run"),
        (vec!["simulate", sim, "--html", sim], "is an input of this run"),
        (vec!["simulate", sim, "--htsim", sim], "is an input of this run"),
        (vec!["simulate", sim, "--htsim", flows], "is an input of this run"),
        (vec!["plan", s, "--html", notes.to_str().unwrap()], "is not an HTML page"),
        (vec!["plan", s, "--html", "-"], "cannot write -"),
        // Found before the run, not after it.
        (vec!["simulate", sim, "--html", "/nonexistent-dir/p.html"], "there is no directory /nonexistent-dir"),
        (vec!["simulate", sim, "--html", dir.to_str().unwrap()], "it is a directory"),
        // Two outputs of one run: the matrix replaced the page.
        (vec!["simulate", sim, "--html", same_str, "--htsim", same_str], "are the same file"),
    ] {
        let o = meshway(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(std::fs::read(&scenario).unwrap(), before);
    assert_eq!(std::fs::read(sim).unwrap(), sim_before);
    assert_eq!(std::fs::read(flows).unwrap(), flows_before);
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "mine\n");
    assert!(!same.exists(), "refused before the run");
    // A page is replaced by a page, twice over.
    for _ in 0..2 {
        let o = meshway(&["plan", s, "--html", page.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert!(std::fs::read_to_string(&page).unwrap().starts_with("<!DOCTYPE html>"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A training step's pipeline sends run at the NIC's achievable rate, as a send-recv of the
/// same size on the same pair does (they ran at the line rate: 21.61 ms against 22.51 for
/// 1 GiB over a 400G ConnectX-7, 48 of 50 GB/s).
#[test]
fn pipeline_sends_run_at_the_rate_of_a_send_recv() {
    let dir = tempdir("pp-send");
    let f = dir.join("pp.toml");
    std::fs::write(
        &f,
        "name = \"pp\"\nseed = 1\n[fabric]\nkind = \"leaf-spine\"\ngpus = 2\ngpus-per-host = 1\nnic = \"400Gbps\"\n\
         [transport]\nkind = \"infiniband\"\n\
         [[workload]]\nname = \"pp\"\nkind = \"training\"\nparameters = 1e6\nlayers = 2\nhidden = 65536\nsequence = 8192\n\
         micro-batch = 1\nglobal-batch = 1\ntp = 1\npp = 2\ndp = 1\n\
         [[workload]]\nname = \"sr\"\nkind = \"collective\"\nop = \"send-recv\"\nsize = \"1GiB\"\n",
    )
    .unwrap();
    let o = meshway(&["simulate", f.to_str().unwrap(), "--csv", "--tolerance", "0"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let fct = |w: &str| -> Vec<u64> {
        out.lines()
            .filter(|l| l.starts_with(&format!("{w},")))
            .map(|l| l.split(',').nth(6).unwrap().parse().unwrap())
            .collect()
    };
    let (pp, sr) = (fct("pp"), fct("sr"));
    assert_eq!(pp.len(), 2, "{out}");
    assert!(pp.iter().chain(&sr).all(|&t| t == sr[0]), "{pp:?} {sr:?}");
    // 1 GiB at 48 GB/s over InfiniBand's goodput is about 22.5 ms.
    assert!((22_400_000..22_600_000).contains(&sr[0]), "{sr:?}");
}
