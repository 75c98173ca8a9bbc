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
    // A failure after the arrivals end would only stretch the run: refused.
    let o = meshway(&["infer", EXAMPLE, "--duration", "1min", "--fail-site", "eu-north@1h"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected a time within the run's 60s of arrivals, got 3600s"));
    // A site failed twice (for the whole run and from a time on) is ambiguous: refused.
    let o = meshway(&["infer", EXAMPLE, "--fail-site", "eu-north", "--fail-site", "eu-north@5min"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("site \"eu-north\" is already failed by an earlier --fail-site"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
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
    // The failure checks cut each region's route to the site that makes its first tokens as
    // well as the one to its decode site (they used to cut only the decode route).
    let failures: Vec<&str> =
        v["failures"].as_array().unwrap().iter().map(|f| f["failure"].as_str().unwrap()).collect();
    for r in opt["regions"].as_array().unwrap() {
        let (name, pre, dec) =
            (r["name"].as_str().unwrap(), r["prefill_site"].as_str().unwrap(), r["site"].as_str().unwrap());
        assert_ne!(pre, dec, "{r}");
        for site in [pre, dec] {
            assert!(failures.contains(&format!("route {name} -> {site}").as_str()), "{failures:?}");
        }
    }
}

/// The located example: every round trip `place` reports is 2 x (last mile + the routed
/// fibre x 4.9 us/km + 4 access hops x 50 us + the pair's fixed cost), with the path the
/// catalog routes; Los Angeles reaches Dublin across North America and the Atlantic, well
/// beyond the great circle at the Atlantic factor, and Sao Paulo is nearer Ashburn than Dublin.
#[test]
fn place_routes_the_located_example() {
    use meshway_fabric::catalog::Place;
    use meshway_fabric::infer_config::Continent;
    let o = meshway(&["place", "examples/inference-global.toml", "--no-sim", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let cat = meshway_fabric::Catalog::builtin();
    let i = cat.inference.as_ref().unwrap();
    let sites = [
        ("us-east", Continent::NorthAmerica, [39.04, -77.49]),
        ("eu-west", Continent::Europe, [53.35, -6.26]),
        ("ap-southeast", Continent::AsiaPacific, [1.35, 103.82]),
    ];
    let regions = [
        ("los-angeles", Continent::NorthAmerica, [34.05, -118.24]),
        ("sao-paulo", Continent::SouthAmerica, [-23.55, -46.63]),
        ("london", Continent::Europe, [51.51, -0.13]),
        ("frankfurt", Continent::Europe, [50.11, 8.68]),
        ("mumbai", Continent::AsiaPacific, [19.08, 72.88]),
        ("sydney", Continent::AsiaPacific, [-33.87, 151.21]),
    ];
    let names: Vec<&str> = v["site_names"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(names, ["us-east", "eu-west", "ap-southeast"]);
    let routes = v["routes"].as_array().unwrap();
    assert_eq!(routes.len(), regions.len());
    let rtt = |region: &str, site: usize| {
        let r = routes.iter().find(|r| r["name"] == region).unwrap();
        r["rtt_ns"][site].as_u64().unwrap()
    };
    for (name, rc, [lat, lon]) in regions {
        for (k, (_, sc, [slat, slon])) in sites.iter().enumerate() {
            let p = i.wan_path(
                Place { lat, lon, continent: Some(rc) },
                Place { lat: *slat, lon: *slon, continent: Some(*sc) },
            );
            let fiber_ns = ((p.fiber_km * 1e6).round() * 4.9 / 1e3).round() as u64;
            let want = 2 * (5_000_000 + fiber_ns + 4 * 50_000 + p.fixed.0);
            assert!(rtt(name, k).abs_diff(want) <= 2, "{name} -> site {k}: {} against {want}", rtt(name, k));
        }
    }
    let gc = meshway_fabric::catalog::great_circle_km(34.05, -118.24, 53.35, -6.26);
    assert!(rtt("los-angeles", 1) as f64 > 2.0 * (gc * 1.27 * 4_900.0 + 5e6) * 1.2);
    assert!(rtt("sao-paulo", 0) < rtt("sao-paulo", 1));
}

/// N+1 that holds only because a region sent nothing says so.
#[test]
fn n_plus_1_names_regions_it_did_not_test() {
    let dir = tempdir("place-idle-n1");
    let f = dir.join("s.toml");
    std::fs::write(
        &f,
        "name = \"idle\"\n[inference]\nduration = \"10s\"\n[[model]]\nname = \"m\"\nllm = \"llama-3.1-8b\"\n\
         gpu = \"h100-sxm\"\ngpus-per-server = 1\nprompt-tokens = 100\noutput-tokens = 10\n\
         [[site]]\nname = \"s\"\ngpus = 1\n[[site]]\nname = \"t\"\ngpus = 1\n\
         [[region]]\nname = \"quiet\"\nrate = 0\ndistance = { s = \"10km\", t = \"10km\" }\n\
         [[region]]\nname = \"busy\"\nrate = 1\ndistance = { t = \"10km\", s = \"20km\" }\n",
    )
    .unwrap();
    let o = meshway(&["place", f.to_str().unwrap(), "--n-plus-1"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    // The worst region of each failure is one that sent requests.
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("site ") || l.starts_with("route ")).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows.iter().all(|l| l.contains(" yes ") && l.contains(" busy ")), "{text}");
    assert!(
        text.contains(
            "N+1: holds for every single site and route failure, but is untested for quiet, which sent no requests"
        ),
        "{text}"
    );
}

/// A region that sends nothing shows no latencies and no verdict, not zeros that read as met.
#[test]
fn a_region_without_requests_shows_no_latencies() {
    let dir = tempdir("infer-rate0");
    let f = dir.join("s.toml");
    std::fs::write(
        &f,
        "name = \"idle\"\n[inference]\nduration = \"10s\"\n[[model]]\nname = \"m\"\nllm = \"llama-3.1-8b\"\n\
         gpu = \"h100-sxm\"\ngpus-per-server = 1\nprompt-tokens = 100\noutput-tokens = 10\n\
         [[site]]\nname = \"s\"\ngpus = 1\n[[region]]\nname = \"quiet\"\nrate = 0\ndistance = { s = \"10km\" }\n",
    )
    .unwrap();
    let html = dir.join("r.html");
    let o = meshway(&["infer", f.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap_or_default();
    let placed = meshway(&["place", f.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    // `place` neither shows its p99 as 0 nor counts it among the regions meeting theirs; with
    // no region sending, its plan is untested, which exits 1 (it exited 0 as if it held).
    assert_eq!(placed.status.code(), Some(1), "{}", stderr(&placed));
    assert!(stderr(&placed).contains("no region sent a request in the simulated run"), "{}", stderr(&placed));
    let text = stdout(&placed);
    let line = text.lines().find(|l| l.starts_with("quiet p99 ttft")).unwrap_or_default();
    assert!(line.contains("(no requests)") && !line.contains("0.0ms"), "{text}");
    let line = text.lines().find(|l| l.starts_with("regions meeting objective")).unwrap_or_default();
    assert!(line.contains("0 of 0") && !line.contains("1 of 1"), "{text}");
    assert!(text.contains("quiet sent no requests in the simulated run: its objective is untested"), "{text}");
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stdout(&o).lines().find(|l| l.starts_with("quiet")).unwrap_or_default().to_string();
    assert!(line.contains("(no requests)") && !line.contains(" 0.0ms") && !line.contains("yes"), "{line}");
    // The charts leave it out: it has no latency and no share of requests to draw.
    assert!(page.contains("quiet") && !page.contains("quiet (objective"), "the TTFT chart draws the idle region");
}

/// A request of one output token has no time per output token: the table shows "-" as the
/// JSON's null (it showed 0.0ms), and a slow region's tokens/s keeps its tenths (0.1 read 0).
#[test]
fn one_output_token_has_no_tpot() {
    let dir = tempdir("infer-out1");
    let f = dir.join("s.toml");
    std::fs::write(
        &f,
        "name = \"one\"\n[inference]\nduration = \"10s\"\n[[model]]\nname = \"m\"\nllm = \"llama-3.1-8b\"\n\
         gpu = \"h100-sxm\"\ngpus-per-server = 1\nprompt-tokens = 100\noutput-tokens = 1\nlength-dist = \"fixed\"\n\
         [[site]]\nname = \"s\"\ngpus = 1\n[[region]]\nname = \"r\"\nrate = 0.1\nrequests = 1\ndistance = { s = \"10km\" }\n",
    )
    .unwrap();
    let o = meshway(&["infer", f.to_str().unwrap()]);
    let j = meshway(&["infer", f.to_str().unwrap(), "--json"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stdout(&o).lines().find(|l| l.starts_with("r ")).unwrap_or_default().to_string();
    let cols: Vec<&str> = line.split_whitespace().collect();
    // region site rtt ttft-p50 p90 p99 objective met tpot-p50 p99 e2e-p50 p99 tokens/s
    assert_eq!(cols.len(), 13, "{line}");
    assert_eq!((cols[8], cols[9], cols[12]), ("-", "-", "0.1"), "{line}");
    let doc: serde_json::Value = serde_json::from_slice(&j.stdout).expect("valid JSON");
    assert!(doc["regions"][0]["tpot"].is_null(), "{}", doc["regions"][0]);
    assert_eq!(doc["regions"][0]["tokens_per_s"], 0.1);
}

/// With no site allowed to host, `place` says so instead of pointing at reasons it never
/// printed; an inference scenario without sites is named as one.
#[test]
fn place_without_a_candidate_site_and_infer_without_sites_say_why() {
    let dir = tempdir("infer-nocand");
    let f = dir.join("s.toml");
    let text = "name = \"c\"\n[inference]\nduration = \"10s\"\n[[model]]\nname = \"m\"\nllm = \"llama-3.1-8b\"\n\
         gpu = \"h100-sxm\"\ngpus-per-server = 1\nprompt-tokens = 100\noutput-tokens = 10\n\
         [[site]]\nname = \"s\"\ngpus = 0\nmax-gpus = 0\n[[region]]\nname = \"r\"\nrate = 1\ndistance = { s = \"10km\" }\n";
    std::fs::write(&f, text).unwrap();
    let placed = meshway(&["place", f.to_str().unwrap()]);
    let g = dir.join("nosite.toml");
    let cut = text.find("[[site]]").unwrap();
    let end = text.find("[[region]]").unwrap();
    std::fs::write(&g, format!("{}{}", &text[..cut], &text[end..]).replace("distance = { s = \"10km\" }\n", ""))
        .unwrap();
    let nosite = meshway(&["infer", g.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    // The report still prints; the exit status says nothing was placed.
    assert_eq!(placed.status.code(), Some(1), "{}", stderr(&placed));
    assert!(stderr(&placed).contains("no site may host"), "{}", stderr(&placed));
    let text = stdout(&placed);
    assert!(text.contains("0 subsets of 0 candidate sites"), "{text}");
    assert!(
        text.contains("No site may host: every site's max-gpus is below one server of its model")
            && !text.contains("see the reasons above"),
        "{text}"
    );
    assert!(!nosite.status.success());
    assert!(
        stderr(&nosite).contains(
            "`site`: no [[site]] tables: an inference scenario ([[model]], [[region]]) needs sites to serve from"
        ),
        "{}",
        stderr(&nosite)
    );
}

/// A region that meets its TTFT objective but misses its TPOT one: `place` flags the TPOT
/// row, not the TTFT one, gives both in JSON, says no plan met, and exits 1; `infer` names
/// only the objective missed. It used to flag a 45.5 ms TTFT against 500 ms, have no TPOT
/// in the plan's JSON, and exit 0.
#[test]
fn a_tpot_miss_is_named_as_one_and_place_exits_1_when_nothing_meets() {
    let dir = tempdir("infer-tpot-miss");
    let f = dir.join("t.toml");
    let text = "name = \"t\"\nseed = 1\n[inference]\npolicy = \"nearest\"\nduration = \"30s\"\n\
         [[model]]\nname = \"m\"\nllm = \"llama-3.1-8b\"\ngpu = \"h100-sxm\"\ngpus-per-server = 1\nprecision = \"fp8\"\n\
         prompt-tokens = 1000\noutput-tokens = 101\nlength-dist = \"fixed\"\n\
         [[site]]\nname = \"s\"\ntier = \"central\"\ngpus = 1\nmax-gpus = 8\n\
         [[region]]\nname = \"r\"\nrate = 5\nttft-p99 = \"500ms\"\ntpot-p99 = \"4.6ms\"\ndistance = { s = \"100km\" }\n";
    std::fs::write(&f, text).unwrap();
    let path = f.to_str().unwrap();
    let placed = meshway(&["place", path]);
    let json = meshway(&["place", path, "--json"]);
    let inferred = meshway(&["infer", path]);
    let loose = dir.join("loose.toml");
    std::fs::write(&loose, text.replace("4.6ms", "50ms")).unwrap();
    let met = meshway(&["place", loose.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(placed.status.code(), Some(1), "{}", stderr(&placed));
    assert!(
        stderr(&placed).contains("the optimized plan misses an objective in simulation (1 of 1 regions: r)"),
        "{}",
        stderr(&placed)
    );
    let out = stdout(&placed);
    let ttft = out.lines().find(|l| l.starts_with("r p99 ttft")).unwrap_or_default();
    let tpot = out.lines().find(|l| l.starts_with("r p99 tpot")).unwrap_or_default();
    assert!(!ttft.contains('!'), "{out}");
    assert_eq!(tpot.matches(" !").count(), 2, "{out}");
    assert!(out.contains("optimized: no plan simulated meets every objective"), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("valid JSON");
    let opt = v["plans"].as_array().unwrap().iter().find(|p| p["name"] == "optimized").unwrap();
    let r = &opt["regions"][0];
    assert_eq!(r["tpot_objective_ns"], 4_600_000);
    assert!(r["tpot_p99_ns"].as_u64().unwrap() > 4_600_000 && r["ttft_p99_ns"].as_u64().unwrap() < 500_000_000);
    assert_eq!(r["met"], false);
    let missed = stdout(&inferred).lines().find(|l| l.starts_with("Missed:")).unwrap_or_default().to_string();
    assert!(missed.starts_with("Missed: r (p99 tpot ") && !missed.contains("ttft"), "{missed}");
    // With an objective it can keep, the same scenario places and exits 0.
    assert!(met.status.success(), "{}", stderr(&met));
    assert!(stdout(&met).contains("p99 tpot within its objective in every region and plan simulated"));
}

/// A region nothing was served to has null latencies and round trip in `infer --json`,
/// not zeros that pass any objective (as `place`'s JSON already had).
#[test]
fn infer_json_gives_null_latencies_to_a_region_never_served() {
    let dir = tempdir("infer-null");
    let f = dir.join("z.toml");
    std::fs::write(
        &f,
        "name = \"z\"\n[inference]\nduration = \"10s\"\n[[model]]\nname = \"m\"\nllm = \"llama-3.1-8b\"\n\
         gpu = \"h100-sxm\"\ngpus-per-server = 1\nprompt-tokens = 100\noutput-tokens = 10\n\
         [[site]]\nname = \"s\"\ngpus = 0\n[[region]]\nname = \"r\"\nrate = 2\ndistance = { s = \"10km\" }\n",
    )
    .unwrap();
    let o = meshway(&["infer", f.to_str().unwrap(), "--json"]);
    std::fs::remove_dir_all(&dir).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let r = &v["regions"][0];
    assert!(r["requests"].as_u64().unwrap() > 0 && r["served"] == 0, "{r}");
    for k in ["ttft", "tpot", "e2e", "rtt_ns"] {
        assert!(r[k].is_null(), "{k}: {}", r[k]);
    }
}
