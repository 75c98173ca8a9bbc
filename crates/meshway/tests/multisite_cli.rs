//! `meshway multisite` as a user runs it: golden table, JSON, the demo line, bad input.

mod common;
use common::*;

#[test]
fn multisite_golden_table() {
    let o = meshway(&["multisite", "examples/two-site-training.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    golden("multisite-two-site-training.txt", &s);
    assert!(s.contains("Step against DCI distance"));
    assert!(s.contains("site-hierarchical: cross-site DP exceeds 10.0% of the step beyond"));
}

#[test]
fn multisite_json_is_valid_deterministic_and_consistent() {
    let args = [
        "multisite",
        "examples/two-site-training.toml",
        "--json",
        "--distances",
        "0km,100km,200km",
        "--wavelengths",
        "4,16",
    ];
    let a = meshway(&args);
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(a.stdout, meshway(&args).stdout, "same input, same bytes");
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).expect("valid JSON");
    let rows = v["by_distance"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["distance_m"], 100_000);
    assert_eq!(rows[1]["dci_rtt_ns"], 980_000);
    assert_eq!(rows[0]["headroom"][0]["feasible"], true);
    assert_eq!(rows[1]["headroom"][0]["feasible"], false);
    // The scenario's own DCI is 16 x 400ZR at 100 km: the 100 km row and the 16-wavelength row.
    assert_eq!(v["step_ns"], rows[1]["step_ns"]);
    assert_eq!(v["by_capacity"][1]["step_ns"], v["step_ns"]);
    assert_eq!(v["by_capacity"][0]["dci_bps"], 1_600_000_000_000u64);
    let b = &v["break_even"];
    assert_eq!(b["outcome"], "within");
    assert!(b["share_below"].as_f64().unwrap() <= 0.10 && b["share_at_distance"].as_f64().unwrap() > 0.10);
    assert_eq!(b["distance_m"].as_u64().unwrap() - b["below_m"].as_u64().unwrap(), 1000);
}

/// The break-even search bisects, so the step must not shrink as the distance grows: the
/// runs are exact (no completion batching), and the flat ring's break-even is where a sweep
/// finds it.
#[test]
fn steps_grow_with_distance_and_the_break_even_is_where_the_sweep_crosses() {
    let km: Vec<String> = (0..=20).map(|i| format!("{}m", 44_000 + 250 * i)).collect();
    let a = meshway(&["multisite", "examples/two-site-training.toml", "--json", "--distances", &km.join(",")]);
    assert!(a.status.success(), "{}", stderr(&a));
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let rows = v["by_distance"].as_array().unwrap();
    for key in ["step_ns", "flat_step_ns"] {
        let steps: Vec<u64> = rows.iter().map(|r| r[key].as_u64().unwrap()).collect();
        assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{key}: {steps:?}");
    }
    let first_over = rows.iter().find(|r| r["flat_cross_site_share"].as_f64().unwrap() > 0.10).unwrap();
    let b = &v["flat_break_even"];
    let over = first_over["distance_m"].as_u64().unwrap();
    // The search's resolution is 1 km: its crossing is within the 250 m step of the sweep's.
    assert!(b["distance_m"].as_u64().unwrap().abs_diff(over) <= 1000, "{b} against {over} m");
}

#[test]
fn budget_moves_the_break_even() {
    let at = |budget: &str| {
        let o = meshway(&[
            "multisite",
            "examples/two-site-training.toml",
            "--json",
            "--distances",
            "0km",
            "--wavelengths",
            "16",
            "--budget",
            budget,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["flat_break_even"]["distance_m"].as_u64().unwrap()
    };
    assert!(at("8%") < at("10%"));
}

/// A sweep point whose fabric does not build is left out and named; the rest of the report
/// stands (it ended the run with only that error).
#[test]
fn a_sweep_point_that_does_not_build_is_left_out() {
    // Two three-tier sites: 4,096 wavelengths need more core ports than the cores have.
    let site = |n: &str| {
        format!("[[site]]\nname = \"{n}\"\n[site.fabric]\nkind = \"three-tier\"\ngpus = 32\ngpus-per-host = 8\nnic = \"400Gbps\"\n")
    };
    let text = format!(
        "name = \"t\"\n{}{}[[dci]]\na = \"a\"\nb = \"b\"\ndistance = \"10km\"\noptic = \"400ZR\"\nwavelengths = 2\n\
         [transport]\nkind = \"roce\"\n[[workload]]\nname = \"step\"\nkind = \"training\"\nparameters = 1.3e9\nlayers = 24\nhidden = 2048\n\
         sequence = 2048\nmicro-batch = 1\nglobal-batch = 64\ntp = 8\npp = 1\ndp = 8\n",
        site("a"),
        site("b")
    );
    let dir = tempdir("multisite-notbuilt");
    let f = dir.join("t.toml");
    std::fs::write(&f, text).unwrap();
    let o = meshway(&["multisite", f.to_str().unwrap(), "--json", "--distances", "0km", "--wavelengths", "2,4096"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["by_capacity"].as_array().unwrap().len(), 1);
    let left = v["not_built"].as_array().unwrap();
    assert_eq!(left.len(), 1);
    assert!(
        left[0]
            .as_str()
            .unwrap()
            .starts_with("--wavelengths 4096: every DCI span with 4096 wavelengths does not build"),
        "{left:?}"
    );
}

#[test]
fn demo_has_the_two_site_training_line() {
    let o = meshway(&["demo"]);
    let s = stdout(&o);
    assert!(s.contains("Two-site training (meshway multisite examples/two-site-training.toml)"), "{s}");
    assert!(s.contains("two-site-training: a 3D-parallel step"), "{s}");
}

#[test]
fn multisite_bad_input_is_a_clear_error() {
    // One site.
    let o = meshway(&["multisite", "examples/leaf-spine-1024.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("examples/leaf-spine-1024.toml"), "{}", stderr(&o));
    assert!(stderr(&o).contains("one site"), "{}", stderr(&o));
    // Two sites, no workload.
    let o = meshway(&["multisite", "examples/two-site-100km.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("workload") && stderr(&o).contains("training"), "{}", stderr(&o));
    // Bad flags.
    for (flag, value) in [("--budget", "150%"), ("--distances", "10 parsecs"), ("--wavelengths", "0")] {
        let o = meshway(&["multisite", "examples/two-site-training.toml", flag, value]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}");
        assert!(stderr(&o).contains(flag), "{flag}: {}", stderr(&o));
    }
}

/// Sweeps run in increasing order, each point once; over budget even at 0 km, the advice
/// on capacity comes from a run at 0 km with the sweep's most wavelengths (it read the
/// capacity sweep taken at the file's 100 km, 77% where 0 km gives 23%), and only when
/// that is more than the scenario's own.
#[test]
fn sweeps_are_sorted_once_and_capacity_advice_is_at_zero_km() {
    let run = |w: &str| {
        let o = meshway(&[
            "multisite",
            "examples/two-site-training.toml",
            "--json",
            "--budget",
            "1%",
            "--distances",
            "100km,0km,100km",
            "--wavelengths",
            w,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let v = run("32,2,32");
    let d: Vec<u64> = v["by_distance"].as_array().unwrap().iter().map(|r| r["distance_m"].as_u64().unwrap()).collect();
    assert_eq!(d, [0, 100_000]);
    let w: Vec<u64> = v["by_capacity"].as_array().unwrap().iter().map(|r| r["wavelengths"].as_u64().unwrap()).collect();
    assert_eq!(w, [2, 32]);
    assert_eq!(v["break_even"]["outcome"], "at-zero");
    let z = &v["zero_km_capacity"];
    assert_eq!(z["wavelengths"], 32, "{v}");
    // 32 wavelengths at 0 km against the scenario's 16 at 0 km: no slower.
    assert!(z["step_ns"].as_u64().unwrap() <= v["by_distance"][0]["step_ns"].as_u64().unwrap() + 1_000, "{v}");
    // The scenario has 16 wavelengths a span: a sweep up to 8 says nothing about more.
    let v = run("2,8");
    assert!(v.get("zero_km_capacity").is_none(), "{v}");
}
