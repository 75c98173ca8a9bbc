//! `meshway traffic` on captures the test writes (meshway_traffic::synth): the report, JSON,
//! the flows workload replayed by `meshway simulate`, and bad input.

mod common;
use common::*;

struct Tmp(std::path::PathBuf);
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp(tag: &str) -> Tmp {
    let p = std::env::temp_dir().join(format!("meshway-traffic-cli-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    Tmp(p)
}

fn capture(dir: &std::path::Path) -> String {
    let p = dir.join("gpus.pcap");
    let mut f = std::fs::File::create(&p).unwrap();
    // 6 flows among the 4 GPUs of testbed-2x2, 6,000 packets of 4 KiB payload, 1 us apart.
    meshway_traffic::synth::gpu_traffic(&mut f, 4, 6, 6_000, 7, 65_535).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn report_json_and_replay_on_the_fabric() {
    let d = tmp("replay");
    let cap = capture(&d.0);
    let csv = d.0.join("captured.csv");
    let o = meshway(&[
        "traffic",
        &cap,
        "--scenario",
        "examples/testbed-2x2.toml",
        "--write-flows",
        csv.to_str().unwrap(),
        "--top",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    golden("traffic-synth-2x2.txt", &stdout(&o).replace(&cap, "gpus.pcap"));
    assert!(stderr(&o).contains("wrote 6 flows"), "{}", stderr(&o));
    let o = meshway(&["traffic", &cap, "--scenario", "examples/testbed-2x2.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["packets"].as_u64(), v["flows"].as_u64()), (Some(6_000), Some(6)));
    assert_eq!(v["east_west_share"].as_f64(), Some(1.0));
    let matrix_total: u64 = v["matrices"][0]["bytes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(matrix_total, v["bytes"].as_u64().unwrap());
    // Replay: the testbed scenario with the captured flows as its workload.
    let text = std::fs::read_to_string(root().join("examples/testbed-2x2.toml")).unwrap();
    let base = text.split("[[workload]]").next().unwrap();
    let scen = d.0.join("replay.toml");
    std::fs::write(
        &scen,
        format!("{base}[[workload]]\nname = \"captured\"\nkind = \"flows\"\nfile = \"captured.csv\"\n"),
    )
    .unwrap();
    let o = meshway(&["simulate", scen.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.to_string().contains("captured"), "{v}");
}

#[test]
fn prefixes_without_a_fabric_and_bad_input() {
    let d = tmp("bad");
    let cap = capture(&d.0);
    let o = meshway(&["traffic", &cap, "--internal", "10.64.0.0/30"]);
    let s = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    // .1-.3 inside, .4 outside: flows to or from 10.64.0.4 are north-south.
    assert!(s.contains("north-south") && s.contains("east-west"), "{s}");
    let o = meshway(&["traffic", &cap, "--internal", "10.64.0.0/40"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("prefix length 40 over 32"), "{}", stderr(&o));
    let o = meshway(&["traffic", "examples/testbed-2x2.toml"]);
    assert!(stderr(&o).contains("not a pcap or pcapng capture"), "{}", stderr(&o));
    let o = meshway(&["traffic", "/nonexistent.pcap"]);
    assert!(stderr(&o).contains("cannot read /nonexistent.pcap"));
    // Cut in the middle: a warning, the packets before it analysed.
    let full = std::fs::read(&cap).unwrap();
    let cut = d.0.join("cut.pcap");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let o = meshway(&["traffic", cut.to_str().unwrap(), "--json"]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("cut short"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let n = v["packets"].as_u64().unwrap();
    assert!((2_900..3_000).contains(&n), "{n}");
    // --exported needs sFlow or IPFIX in the capture.
    let o = meshway(&["traffic", &cap, "--exported"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("holds no sFlow (UDP 6343) or IPFIX (UDP 4739) datagrams"), "{}", stderr(&o));
    // --write-flows needs the fabric.
    let o = meshway(&["traffic", &cap, "--write-flows", "x.csv"]);
    assert_eq!(o.status.code(), Some(2));
    // A link type meshway does not decode (9999 in the file header) is warned of.
    let mut other = full.clone();
    other[20..24].copy_from_slice(&9999u32.to_le_bytes());
    let p = d.0.join("other.pcap");
    std::fs::write(&p, &other).unwrap();
    let o = meshway(&["traffic", p.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("6000 of 6000 packets are on link types meshway does not decode"), "{}", stderr(&o));
    // A season shorter than a minute has nothing to fit (checked before the database is read).
    let o = meshway(&["history", "--db", "/nonexistent.db", "--target", "x", "--season", "1ns"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--season: expected 0s (none) or at least 1min, got 1ns"), "{}", stderr(&o));
    // A negative threshold (an optical power) is read as a value, not as a flag.
    let o = meshway(&["history", "--db", "/nonexistent.db", "--target", "x", "--forecast", "--threshold", "-12dBm"]);
    assert!(!stderr(&o).contains("unexpected argument"), "{}", stderr(&o));
    assert!(stderr(&o).contains("invalid --threshold") && stderr(&o).contains("\"-12dBm\""), "{}", stderr(&o));
    // --threshold without --forecast would be ignored: it is refused.
    let o = meshway(&["history", "--db", "/nonexistent.db", "--target", "x", "--threshold", "20ms"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("the following required arguments were not provided:\n  --forecast"), "{}", stderr(&o));
}

/// A capture that spans no time (one packet) has no utilization to give its critical links:
/// "n/a" (JSON null), not a rate over a nanosecond.
#[test]
fn critical_links_of_a_capture_spanning_no_time_say_n_a() {
    let d = tmp("span0");
    let p = d.0.join("one.pcap");
    let mut f = std::fs::File::create(&p).unwrap();
    meshway_traffic::synth::gpu_traffic(&mut f, 4, 1, 1, 7, 65_535).unwrap();
    drop(f);
    let cap = p.to_str().unwrap();
    let o = meshway(&["traffic", cap, "--scenario", "examples/testbed-2x2.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    let links: Vec<&str> = s.lines().filter(|l| l.contains(" over the capture, flows ")).collect();
    assert!(!links.is_empty(), "{s}");
    assert!(links.iter().all(|l| l.contains("n/a busy (it spans no time) over the capture")), "{s}");
    assert!(!s.contains("% busy"), "{s}");
    let o = meshway(&["traffic", cap, "--scenario", "examples/testbed-2x2.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let links = v["critical_links"].as_array().unwrap();
    assert!(!links.is_empty() && links.iter().all(|l| l["utilization"].is_null()), "{v}");
}
