//! The testbed on a real kernel: 2 leaves, 2 spines, 4 hosts in network namespaces this test
//! creates and always removes. Needs root (CI runs as root); elsewhere the tests are skipped
//! with a message, unless CI=true, when a missing root is a failure.

mod common;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// Measurements must not overlap: one testbed at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_meshway")
}

fn run(args: &[&str]) -> Output {
    Command::new(exe()).args(args).output().expect("run meshway")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Whether to run: root here, or a failure when CI demands it.
fn need_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: CI must run the testbed tests as root");
    eprintln!("skipping {test}: needs root for network namespaces");
    false
}

const FABRIC: &str =
    "[fabric]\nkind = \"leaf-spine\"\ngpus = 4\ngpus-per-host = 1\nleaf-radix = 4\nspine-radix = 4\nspines = 2\n";

/// A testbed that is torn down when dropped, also when the test fails.
struct Bed {
    dir: PathBuf,
    prefix: String,
    state: PathBuf,
}

impl Bed {
    fn new(tag: &str, workloads: &str, files: &[(&str, &str)]) -> Bed {
        let prefix = format!("t{}{tag}", std::process::id() % 1000);
        let dir = std::env::temp_dir().join(format!("meshway-testbed-{prefix}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("s.toml"), format!("seed = 5\n{FABRIC}{workloads}")).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let state = dir.join("state.json");
        let bed = Bed { dir, prefix, state };
        let o =
            run(&["testbed", "up", bed.file(), "--scale", "1:1000", "--prefix", &bed.prefix, "--state", bed.state()]);
        assert!(o.status.success(), "up: {}", String::from_utf8_lossy(&o.stderr));
        bed
    }
    fn file(&self) -> &str {
        self.dir.join("s.toml").leak_str()
    }
    fn state(&self) -> &str {
        self.state.to_str().unwrap()
    }
    fn cmd(&self, verb: &str, json: bool) -> serde_json::Value {
        let mut args = vec!["testbed", verb, self.file(), "--prefix", &self.prefix, "--state", self.state()];
        if json {
            args.push("--json");
        }
        let o = run(&args);
        assert!(o.status.success(), "{verb}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("valid JSON")
    }
}

trait Leak {
    fn leak_str(self) -> &'static str;
}
impl Leak for PathBuf {
    fn leak_str(self) -> &'static str {
        Box::leak(self.into_os_string().into_string().unwrap().into_boxed_str())
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = run(&["testbed", "down", "--prefix", &self.prefix, "--state", self.state()]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn leftovers(prefix: &str) -> Vec<String> {
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let links = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&ns.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("{prefix}-")))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    v.extend(
        String::from_utf8_lossy(&links.stdout)
            .lines()
            .filter(|l| l.split(':').nth(1).is_some_and(|n| n.trim().starts_with(prefix)))
            .map(str::to_string),
    );
    v.sort();
    v
}

/// Payload rate of one TCP flow through a 400 Mbit/s tbf: 1448 of every 1514 bytes.
const PAYLOAD_MBPS: f64 = 400.0 * 1448.0 / 1514.0;

fn mbps(flow: &serde_json::Value) -> f64 {
    let bytes = flow["bytes"].as_f64().unwrap();
    let us = (flow["end_us"].as_u64().unwrap() - flow["start_us"].as_u64().unwrap()) as f64;
    bytes * 8.0 / us
}

#[test]
fn one_flow_reaches_the_scaled_rate_and_two_flows_share_a_link() {
    if !need_root("one_flow") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let w = "[[workload]]\nkind = \"flows\"\nfile = \"one.csv\"\n";
    let bed = Bed::new("a", w, &[("one.csv", "src,dst,bytes\ngpu-0,gpu-3,16MiB\n")]);
    // Noise on a shared 2-core machine: up to 5 runs, pauses of 1 to 4 s between (as in the
    // incast test), one of which must meet the bound.
    let ok = (0..5u64).any(|i| {
        std::thread::sleep(std::time::Duration::from_secs(i));
        let rate = mbps(&bed.cmd("run", true)[0]);
        eprintln!("one flow: {rate:.1} Mbit/s vs {PAYLOAD_MBPS:.1}");
        (rate - PAYLOAD_MBPS).abs() / PAYLOAD_MBPS < 0.05
    });
    assert!(ok, "one flow missed the scaled rate by 5% or more in 5 runs");
    drop(bed);
    // Two flows into gpu-1 share its leaf's downlink: half each.
    let w = "[[workload]]\nkind = \"flows\"\nfile = \"two.csv\"\n";
    let bed = Bed::new("b", w, &[("two.csv", "src,dst,bytes\ngpu-0,gpu-1,16MiB\ngpu-2,gpu-1,16MiB\n")]);
    let ok = (0..5u64).any(|i| {
        std::thread::sleep(std::time::Duration::from_secs(i));
        let flows = bed.cmd("run", true);
        let rates: Vec<f64> = flows.as_array().unwrap().iter().map(mbps).collect();
        eprintln!("shared: {rates:?} Mbit/s");
        rates.iter().all(|r| (r - PAYLOAD_MBPS / 2.0).abs() / (PAYLOAD_MBPS / 2.0) < 0.10)
    });
    assert!(ok, "two flows sharing a link missed half the rate by 10% or more in 5 runs");
}

/// `--timeout` bounds a run: a flow that would take about 20 s at the scaled rate is refused
/// before it starts (the simulator's expectation is past the timeout); with `--force` it is
/// stopped at 1 s, the run fails naming the timeout, and no worker is left.
#[test]
#[allow(clippy::disallowed_methods)] // a wall-clock bound on a real run
fn a_run_stops_at_its_timeout() {
    if !need_root("timeout") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let w = "[[workload]]\nkind = \"flows\"\nfile = \"big.csv\"\n";
    let bed = Bed::new("c", w, &[("big.csv", "src,dst,bytes\ngpu-0,gpu-3,1GiB\n")]);
    let t0 = std::time::Instant::now();
    let o = run(&["testbed", "run", bed.file(), "--timeout", "1s", "--prefix", &bed.prefix, "--state", bed.state()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    // 1 GiB and its headers at 400 Mbit/s: 22.5 s.
    assert!(e.contains("the simulator expects this run's transfers alone to take 22.454s at 1:1000"), "{e}");
    assert!(e.contains("past --timeout 1s") && e.contains("--force"), "{e}");
    assert!(!e.contains("running 1 flow"), "refused before it started: {e}");
    let o = run(&[
        "testbed",
        "run",
        bed.file(),
        "--timeout",
        "1s",
        "--force",
        "--prefix",
        &bed.prefix,
        "--state",
        bed.state(),
    ]);
    let took = t0.elapsed();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("running 1 flow in 1 phase; the simulator expects about 22.5 s"), "{e}");
    assert!(e.contains("the run's --timeout passed"), "{e}");
    assert!(took < std::time::Duration::from_secs(15), "took {took:?}");
    let o = run(&["testbed", "run", bed.file(), "--timeout", "0s", "--prefix", &bed.prefix, "--state", bed.state()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--timeout: expected more than 0"));
    let workers = Command::new("pgrep").args(["-f", "testbed flow --parent"]).output();
    if let Ok(w) = workers {
        assert!(w.stdout.is_empty(), "workers left: {}", String::from_utf8_lossy(&w.stdout));
    }
}

#[test]
fn an_incast_shares_fairly_and_a_permutation_matches_the_prediction() {
    if !need_root("incast") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let w = "[[workload]]\nname = \"incast\"\nkind = \"incast\"\nsize = \"8MiB\"\nsenders = 3\n\
             [[workload]]\nname = \"perm\"\nkind = \"permutation\"\nsize = \"16MiB\"\n";
    let bed = Bed::new("c", w, &[]);
    // Real traffic on a shared 2-core machine is noisy, and noise only slows a flow down (runs
    // were seen, in CI and here, where every flow came out 25-50% slow for seconds, in 3
    // back-to-back runs; the cause is not pinned down): a measurement is repeated (up to 5 runs, pauses of 1 to 4 s between) and each
    // check must hold in one of them: the incast's fairness in one run, and each permutation
    // flow's time in one run. A wrong prediction (a path or a share the model gets wrong)
    // misses in every run.
    let mut fair: Result<(), String> = Err("no run".into());
    let mut flows_ok: std::collections::BTreeMap<String, Result<(), String>> = Default::default();
    for attempt in 0..5u64 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_secs(attempt));
        }
        let doc = bed.cmd("verify", true);
        let (f, perm) = check_incast_and_permutation(&doc);
        eprintln!("run {attempt}: incast {f:?}, permutation {perm:?}");
        if fair.is_err() {
            fair = f;
        }
        for (flow, r) in perm {
            let e = flows_ok.entry(flow).or_insert_with(|| r.clone());
            if e.is_err() {
                *e = r;
            }
        }
        if fair.is_ok() && flows_ok.len() == 4 && flows_ok.values().all(Result::is_ok) {
            break;
        }
    }
    fair.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(flows_ok.len(), 4, "{flows_ok:?}");
    for r in flows_ok.values() {
        r.clone().unwrap_or_else(|e| panic!("{e}"));
    }
    // Without --state, verify finds the state file `up` was given; --html draws measured
    // against predicted in one offline page.
    let html = bed.dir.join("verify.html");
    let o = run(&["testbed", "verify", bed.file(), "--prefix", &bed.prefix, "--html", html.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("measured against predicted") && page.contains("incast"), "{page}");
    assert!(!page.contains("<script") && !page.contains("src="), "self-contained");
    common::render_in_chromium(&html);
}

/// The incast's fairness, and each permutation flow's error against its prediction (keyed by
/// source and destination).
type FlowChecks = Vec<(String, Result<(), String>)>;
fn check_incast_and_permutation(doc: &serde_json::Value) -> (Result<(), String>, FlowChecks) {
    let rows = doc["flows"].as_array().unwrap();
    assert_eq!(doc["workloads"].as_array().unwrap().len(), 2);
    let incast: Vec<&serde_json::Value> = rows.iter().filter(|r| r["workload"] == "incast").collect();
    assert_eq!(incast.len(), 3);
    // Jain's fairness index of the three throughputs (1 = perfectly fair, 1/3 = one takes all).
    let x: Vec<f64> =
        incast.iter().map(|r| r["bytes"].as_f64().unwrap() / r["measured_us"].as_f64().unwrap()).collect();
    let jain = x.iter().sum::<f64>().powi(2) / (3.0 * x.iter().map(|v| v * v).sum::<f64>());
    let fair = if jain > 0.95 { Ok(()) } else { Err(format!("incast throughputs {x:?}: Jain index {jain:.3}")) };
    let mut perm = Vec::new();
    for r in rows.iter().filter(|r| r["workload"] == "perm") {
        // The path is the kernel's ECMP choice: 2 links inside a leaf, 4 across the spines.
        let hops = r["path"].as_array().unwrap().len();
        assert!(hops == 3 || hops == 5, "{:?}", r["path"]);
        let e = r["error"].as_f64().unwrap();
        let flow = format!("{} -> {}", r["src"], r["dst"]);
        let ok = if e.abs() < 0.15 {
            Ok(())
        } else {
            Err(format!("permutation flow {flow}: {:+.1}% off the prediction", e * 100.0))
        };
        perm.push((flow, ok));
    }
    (fair, perm)
}

#[test]
fn teardown_removes_only_what_up_made_and_trusts_no_planted_state() {
    if !need_root("teardown") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bed = Bed::new("d", "[[workload]]\nkind = \"permutation\"\nsize = \"1MiB\"\n", &[]);
    let prefix = bed.prefix.clone();
    let made = leftovers(&prefix);
    assert!(!made.is_empty(), "up created namespaces");
    let down = |state: &str| run(&["testbed", "down", "--prefix", &prefix, "--state", state]);
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).to_string();
    // A second `up` on the same state fails and changes nothing.
    let o = run(&["testbed", "up", bed.file(), "--prefix", &prefix, "--state", bed.state()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already up"));
    // A state file `up` never marked finished (an `up` killed half-way) is refused by `run`.
    let finished = std::fs::read_to_string(&bed.state).unwrap();
    assert!(finished.contains("\"complete\": true"), "{finished}");
    std::fs::write(&bed.state, finished.replace("\"complete\": true", "\"complete\": false")).unwrap();
    let o = run(&["testbed", "run", bed.file(), "--prefix", &prefix, "--state", bed.state()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("was never finished"), "{}", stderr(&o));
    // And by another `up`, which says so rather than "already up".
    let o = run(&["testbed", "up", bed.file(), "--prefix", &prefix, "--state", bed.state()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("was never finished") && !stderr(&o).contains("already up"), "{}", stderr(&o));
    std::fs::write(&bed.state, &finished).unwrap();
    // Nor does an `up` with another state file whose namespaces exist: it must not tear down
    // the testbed that is up (its cleanup used to).
    let other = bed.dir.join("other.json");
    let o = run(&["testbed", "up", bed.file(), "--prefix", &prefix, "--state", other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(leftovers(&prefix), made, "the testbed that was up is untouched");
    // A state file in a directory another user owns is refused before anything is created
    // (`down` would refuse it afterwards and leave the namespaces behind).
    let theirs = bed.dir.join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
    let o = run(&["testbed", "up", bed.file(), "--prefix", "tbx", "--state", theirs.join("s.json").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("belongs to uid 65534"), "{}", stderr(&o));
    assert!(leftovers("tbx").is_empty() && !theirs.join("s.json").exists());
    // So is one in a directory of root's below theirs: they could rename it away.
    let below = theirs.join("mine");
    std::fs::create_dir_all(&below).unwrap();
    let o = run(&["testbed", "up", bed.file(), "--prefix", "tbx", "--state", below.join("s.json").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(&format!("the directory {} belongs to uid 65534", theirs.display())), "{}", stderr(&o));
    assert!(leftovers("tbx").is_empty() && !below.join("s.json").exists());
    // A state file others can write, one owned by another user, a symbolic link, or one of
    // another prefix is refused, and nothing is removed.
    let saved = std::fs::read_to_string(&bed.state).unwrap();
    let planted = bed.dir.join("planted.json");
    std::fs::write(&planted, &saved).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = down(planted.to_str().unwrap());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("others can write it"), "{}", stderr(&o));
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), None).unwrap();
    let o = down(planted.to_str().unwrap());
    assert!(stderr(&o).contains("owned by uid 65534"), "{}", stderr(&o));
    let link = bed.dir.join("link.json");
    std::os::unix::fs::symlink(&bed.state, &link).unwrap();
    let o = down(link.to_str().unwrap());
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    let o = run(&["testbed", "down", "--prefix", "zz", "--state", bed.state()]);
    assert!(stderr(&o).contains("written for --prefix"), "{}", stderr(&o));
    assert_eq!(leftovers(&prefix), made, "nothing removed on a refusal");
    // Without its state file, `down` removes nothing, names what it left, and fails: the
    // namespaces are still there.
    std::fs::remove_file(&bed.state).unwrap();
    let o = down(bed.state());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("{} namespaces with prefix {prefix} remain", made.len())), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("0 namespaces removed") && out.contains("left alone") && out.contains(&made[0]), "{out}");
    assert_eq!(leftovers(&prefix), made);
    // With it back, `down` removes everything; twice is fine.
    std::fs::write(&bed.state, &saved).unwrap();
    std::fs::set_permissions(&bed.state, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = down(bed.state());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("{} namespaces removed", made.len())));
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    let o = down(bed.state());
    assert!(o.status.success(), "{}", stderr(&o));
    drop(bed);
}

#[test]
fn too_big_fabrics_and_bad_scales_are_refused() {
    let dir = std::env::temp_dir().join(format!("meshway-testbed-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("big.toml");
    std::fs::write(&f, "[fabric]\nkind = \"leaf-spine\"\ngpus = 1024\ngpus-per-host = 8\n").unwrap();
    let st = dir.join("st.json");
    let o = run(&["testbed", "up", f.to_str().unwrap(), "--prefix", "tbig", "--state", st.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("fabric too big for a testbed") && e.contains("limit is 128 namespaces"), "{e}");
    let o = run(&[
        "testbed",
        "up",
        f.to_str().unwrap(),
        "--scale",
        "1000",
        "--prefix",
        "tbig",
        "--state",
        st.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--scale: expected \"1:N\""));
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

/// A Ctrl-C while `up` builds removes what it built, as a failure does: killed outright, it
/// left every namespace and an unfinished state file behind (a review interrupted it after
/// 50-130 ms of its 180).
#[test]
fn an_interrupted_up_removes_what_it_built() {
    if !need_root("interrupted up") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = format!("t{}i", std::process::id() % 1000);
    let dir = std::env::temp_dir().join(format!("meshway-testbed-{prefix}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("s.toml");
    // 16 hosts: long enough to build that the signal comes in the middle.
    std::fs::write(
        &file,
        "[fabric]\nkind = \"leaf-spine\"\ngpus = 16\ngpus-per-host = 1\nleaf-radix = 8\nspine-radix = 8\nspines = 4\n",
    )
    .unwrap();
    let state = dir.join("state.json");
    let (f, st) = (file.to_str().unwrap(), state.to_str().unwrap());
    let child = Command::new(exe())
        .args(["testbed", "up", f, "--prefix", &prefix, "--state", st])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once some namespace exists, interrupt.
    for _ in 0..400 {
        if !leftovers(&prefix).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    sigint(child.id());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.success() {
        // It finished first: nothing to check but that `down` removes it.
        run(&["testbed", "down", "--prefix", &prefix, "--state", st]);
    } else {
        assert!(err.contains("interrupted") && err.contains("everything created was removed"), "{err}");
        assert!(!state.exists(), "the state file is removed");
    }
    assert!(leftovers(&prefix).is_empty(), "{:?}", leftovers(&prefix));
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGINT to a child process, by `kill -INT` (no libc in the tests).
fn sigint(pid: u32) {
    let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
}
