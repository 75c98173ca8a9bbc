//! `meshway infer` and `meshway place` as a user runs them.

mod common;
use common::*;

const EXAMPLE: &str = "examples/inference-edge-vs-central.toml";

#[test]
fn infer_golden_table() {
    let o = meshway(&["infer", EXAMPLE, "--duration", "2min"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    golden("infer-edge-vs-central.txt", &String::from_utf8(o.stdout).unwrap());
}

#[test]
fn infer_json_is_valid_and_deterministic() {
    let args = ["infer", EXAMPLE, "--duration", "1min", "--json", "--seed", "3"];
    let (a, b) = (meshway(&args), meshway(&args));
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).expect("valid JSON");
    assert_eq!(v["regions"].as_array().unwrap().len(), 10);
    assert_eq!(v["sites"].as_array().unwrap().len(), 5);
    assert_eq!(v["seed"], 3);
    let other = meshway(&["infer", EXAMPLE, "--duration", "1min", "--json", "--seed", "4"]);
    assert_ne!(a.stdout, other.stdout);
}

#[test]
fn infer_with_a_failed_site_reroutes() {
    let o = meshway(&["infer", EXAMPLE, "--duration", "1min", "--json", "--fail-site", "eu-north"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["sites"][1]["down"], true);
    assert_eq!(v["sites"][1]["requests"], 0);
    for r in v["regions"].as_array().unwrap() {
        assert_ne!(r["main_site"], "eu-north", "{} fails over", r["name"]);
    }
    let o = meshway(&["infer", EXAMPLE, "--fail-site", "nowhere"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown site \"nowhere\""));
}

#[test]
fn place_compares_three_plans() {
    let o = meshway(&["place", EXAMPLE, "--no-sim", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let names: Vec<&str> = v["plans"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["all-central", "all-edge", "optimized"]);
    let o = meshway(&["place", EXAMPLE, "--duration", "1min"]);
    assert!(o.status.success());
    let s = String::from_utf8(o.stdout).unwrap();
    assert!(s.contains("Optimized plan under one failure"), "{s}");
}

#[test]
fn plan_on_an_inference_scenario_says_so() {
    let o = meshway(&["plan", EXAMPLE]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("no fabric to plan") && e.contains("meshway infer"), "{e}");
}

/// Disaggregated serving: `infer` shows the KV transfers per DCI link; `place` sizes the
/// prefill and decode sites and the plan it picks meets every objective in simulation.
#[test]
fn disaggregated_example_runs_and_places() {
    let file = "examples/inference-disaggregated.toml";
    let o = meshway(&["infer", file, "--duration", "30s"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.contains("kv transfers") && out.contains("edge-east") && out.contains("800Gbps (30.0% other)"),
        "{out}"
    );
    let o = meshway(&["place", file, "--duration", "1min", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let plans = v["plans"].as_array().unwrap();
    let opt = plans.iter().find(|p| p["name"] == "optimized").expect("an optimized plan");
    assert_eq!(opt["all_met"], true, "{opt}");
    // A prefill edge and the decode campus are used (the cheapest plan serves both regions
    // from one edge).
    let g: Vec<u64> = opt["gpus"].as_array().unwrap().iter().map(|g| g.as_u64().unwrap()).collect();
    assert!(g[0] + g[1] > 0 && g[2] > 0, "{opt}");
}
