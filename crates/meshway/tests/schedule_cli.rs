//! `meshway schedule` as a user runs it: the example's table, JSON, exports, trace files and
//! messages for bad input.

mod common;
use common::*;

#[test]
fn schedule_example_golden_json_and_exports() {
    let o = meshway(&["schedule", "examples/schedule-rail-1024.toml"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    golden("schedule-rail-1024.txt", &stdout(&o));
    let dir = tempdir("schedule");
    let html = dir.join("s.html");
    let o = meshway(&[
        "schedule",
        "examples/schedule-rail-1024.toml",
        "--json",
        "--export",
        dir.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let policies = v["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 5);
    for p in policies {
        assert_eq!(p["unfinished"], 0);
        assert_eq!(p["jobs"].as_array().unwrap().len(), 12);
    }
    let tree = std::fs::read_to_string(dir.join("topology-tree.conf")).unwrap();
    assert!(tree.contains("\nSwitchName=rail-group-0 Nodes=node[001-032]\n"), "{tree}");
    assert!(tree.contains("\nSwitchName=fabric Switches=rail-group-0,rail-group-1,rail-group-2,rail-group-3\n"));
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<svg").count(), 4);
    assert!(page.contains("Jobs under contention-aware: waiting (grey)") && page.contains("late-65b (256 GPUs)"));
    assert!(page.contains("Mean slowdown from sharing links") && !page.contains("<script") && !page.contains("src="));
    render_in_chromium(&html);
    for f in ["topology-block.conf", "topology.yaml", "node-labels.sh", "kueue-topology.yaml"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn generated_traces_round_trip_through_a_file() {
    let dir = tempdir("schedule-trace");
    let trace = dir.join("trace.csv");
    let a = meshway(&[
        "schedule",
        "examples/schedule-rail-1024.toml",
        "--generate",
        "40",
        "--span",
        "1d",
        "--policy",
        "topology",
        "--json",
        "--write-trace",
        trace.to_str().unwrap(),
    ]);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = meshway(&[
        "schedule",
        "examples/schedule-rail-1024.toml",
        "--jobs",
        trace.to_str().unwrap(),
        "--policy",
        "topology",
        "--json",
    ]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let (va, vb): (serde_json::Value, serde_json::Value) =
        (serde_json::from_slice(&a.stdout).unwrap(), serde_json::from_slice(&b.stdout).unwrap());
    assert_eq!(va["policies"], vb["policies"], "the written trace schedules exactly as the generated one");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn schedule_bad_input_names_file_and_key() {
    let o = meshway(&["schedule", "examples/rail-optimized-1024.toml"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no jobs: add [[job]] tables, or give --jobs FILE or --generate N"), "{}", stderr(&o));
    let dir = tempdir("schedule-bad");
    let f = dir.join("jobs.csv");
    std::fs::write(&f, "name,gpus,profile,iterations\na,8,llama-7b,10\nb,8,llama-99b,10\n").unwrap();
    let o = meshway(&["schedule", "examples/rail-optimized-1024.toml", "--jobs", f.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("jobs.csv: line 3: profile: unknown profile \"llama-99b\""), "{}", stderr(&o));
    let o = meshway(&["schedule", "examples/rail-optimized-1024.toml", "--generate", "5", "--policy", "fastest"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("expected first-fit, random, topology, network-aware, contention-aware or given"));
    // Two jobs of one name, a host named twice, and a host prefix that is no host name (it is
    // written into a shell script by --export).
    let run = |csv: &str| {
        std::fs::write(&f, csv).unwrap();
        stderr(&meshway(&["schedule", "examples/rail-optimized-1024.toml", "--jobs", f.to_str().unwrap()]))
    };
    let e = run("name,gpus,profile,iterations,arrival\na,8,llama-7b,10,18446744073709551615ns\n");
    assert!(e.contains("jobs.csv: line 2: arrival: expected at most 365d"), "{e}");
    let o = meshway(&["schedule", "examples/rail-optimized-1024.toml", "--generate", "5", "--detail", "bogus"]);
    assert!(stderr(&o).contains("--detail: expected one of the policies run ("), "{}", stderr(&o));
    let o = meshway(&["schedule", "examples/rail-optimized-1024.toml", "--generate", "5", "--span", "400d"]);
    assert!(stderr(&o).contains("expected at most 365d"), "{}", stderr(&o));
    let e = run("name,gpus,profile,iterations\na,8,llama-7b,10\na,8,llama-7b,10\n");
    assert!(e.contains("jobs.csv: line 3: name: job name \"a\" is already used by"), "{e}");
    let e = run("name,gpus,profile,iterations,hosts\na,16,llama-7b,10,\"node[001-001],node001\"\n");
    assert!(e.contains("hosts: host \"node001\" is named twice (entries 1 and 2)"), "{e}");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/schedule-rail-1024.toml"))
        .unwrap();
    let bad = dir.join("prefix.toml");
    std::fs::write(&bad, text.replacen("host-prefix = \"node\"", "host-prefix = \"n$(touch x);\"", 1)).unwrap();
    let o = meshway(&["schedule", bad.to_str().unwrap(), "--export", dir.join("out").to_str().unwrap(), "--no-run"]);
    assert!(!o.status.success() && !dir.join("out").exists());
    assert!(
        stderr(&o).contains("`schedule.host-prefix`: expected a letter then letters, digits or '-'"),
        "{}",
        stderr(&o)
    );
    // An upper-case prefix schedules (Slurm takes it) but cannot be exported for Kubernetes.
    std::fs::write(&bad, text.replacen("host-prefix = \"node\"", "host-prefix = \"Node\"", 1)).unwrap();
    let o = meshway(&["schedule", bad.to_str().unwrap(), "--export", dir.join("out").to_str().unwrap(), "--no-run"]);
    assert!(!o.status.success() && !dir.join("out").exists());
    assert!(stderr(&o).contains("\"Node\" has upper-case letters"), "{}", stderr(&o));
    // Names that look like numbers stay names.
    std::fs::write(&f, "name,gpus,profile,iterations\n007,8,llama-7b,10\n123,8,llama-7b,10\n").unwrap();
    let o = meshway(&[
        "schedule",
        "examples/rail-optimized-1024.toml",
        "--jobs",
        f.to_str().unwrap(),
        "--policy",
        "first-fit",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).lines().any(|l| l.starts_with("007 ")) && stdout(&o).lines().any(|l| l.starts_with("123 ")));
    // Flags that would be ignored are refused: --generate with --jobs, --span without --generate.
    let o =
        meshway(&["schedule", "examples/rail-optimized-1024.toml", "--generate", "5", "--jobs", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    let o = meshway(&["schedule", "examples/schedule-rail-1024.toml", "--span", "1h"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--generate"), "{}", stderr(&o));
    // --backfill overrides the scenario's, either way; a policy given twice runs once.
    std::fs::write(&bad, text.replacen("[schedule]", "[schedule]\nbackfill = \"none\"", 1)).unwrap();
    let head = |extra: &[&str]| {
        let mut a = vec!["schedule", bad.to_str().unwrap(), "--policy", "first-fit", "--policy", "first-fit"];
        a.extend_from_slice(extra);
        stdout(&meshway(&a))
    };
    let (none, easy) = (head(&[]), head(&["--backfill", "easy"]));
    assert!(none.contains("; no backfill;"), "{none}");
    assert!(easy.contains("; EASY backfill;"), "{easy}");
    assert_eq!(easy.lines().filter(|l| l.starts_with("first-fit ")).count(), 1, "{easy}");
    let _ = std::fs::remove_dir_all(&dir);
}
