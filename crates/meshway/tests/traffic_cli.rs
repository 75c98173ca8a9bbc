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

/// `--max-flows`: a table of 2 of the synthetic capture's 6 flows. The 4 flows beyond it
/// (4,000 packets) have no entry, yet the totals, scopes, shares and the leaf matrix are those
/// of the whole table, and the report says how many flows and bytes were beyond it.
#[test]
fn max_flows_keeps_the_totals_exact_and_says_what_was_beyond_the_table() {
    let d = tmp("maxflows");
    let cap = capture(&d.0);
    let json = |extra: &[&str]| {
        let mut args = vec!["traffic", cap.as_str(), "--scenario", "examples/testbed-2x2.toml", "--json"];
        args.extend_from_slice(extra);
        let o = meshway(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let (all, cut) = (json(&[]), json(&["--max-flows", "2"]));
    assert_eq!((all["flows"].as_u64(), all["max_flows"].as_u64()), (Some(6), Some(1_000_000)));
    assert_eq!(all["beyond_table"]["packets"].as_u64(), Some(0));
    assert_eq!((cut["flows"].as_u64(), cut["max_flows"].as_u64()), (Some(2), Some(2)));
    for k in ["packets", "bytes", "east_west_share", "matrices"] {
        assert_eq!(cut[k], all[k], "{k}");
    }
    assert_eq!((cut["packets"].as_u64(), cut["east_west_share"].as_f64()), (Some(6_000), Some(1.0)));
    let scope_bytes = |v: &serde_json::Value| -> Vec<(String, u64)> {
        v["scopes"].as_array().unwrap().iter().map(|s| (s["scope"].to_string(), s["bytes"].as_u64().unwrap())).collect()
    };
    assert_eq!(scope_bytes(&cut), scope_bytes(&all));
    // Each flow: 1,000 packets. The table's two flows hold 2,000; the 4 beyond, 4,000.
    let table: u64 = cut["top_flows"].as_array().unwrap().iter().map(|f| f["bytes"].as_u64().unwrap()).sum();
    let b = &cut["beyond_table"];
    assert_eq!(
        (b["flows"].as_u64(), b["flows_estimated"].as_bool(), b["packets"].as_u64()),
        (Some(4), Some(false), Some(4_000))
    );
    assert_eq!(b["bytes"].as_u64().unwrap() + table, all["bytes"].as_u64().unwrap());
    let o = meshway(&["traffic", &cap, "--scenario", "examples/testbed-2x2.toml", "--max-flows", "2"]);
    let s = stdout(&o);
    assert!(s.contains(", 2 flows + 4 beyond the flow table\n"), "{s}");
    assert!(s.contains("  flow table full at 2 flows (--max-flows): 4,000 packets, 16.6 MB of 4 more flows"), "{s}");
    let o = meshway(&["traffic", &cap, "--max-flows", "0"]);
    assert_eq!(o.status.code(), Some(2));
}

/// GPU rank r has --base-address + r: a plan past 255.255.255.255 is refused, not wrapped
/// to 0.0.0.0 (before the capture is read).
#[test]
fn a_base_address_whose_gpus_pass_the_top_of_ipv4_is_refused() {
    let o = meshway(&[
        "traffic",
        "/nonexistent.pcap",
        "--scenario",
        "examples/testbed-2x2.toml",
        "--base-address",
        "255.255.255.254",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: --base-address 255.255.255.254 + 4 GPUs passes 255.255.255.255 (GPU rank r has the base address + r): give at most 255.255.255.252\n"
    );
    let d = tmp("base");
    let cap = capture(&d.0);
    let o = meshway(&["traffic", &cap, "--scenario", "examples/testbed-2x2.toml", "--base-address", "255.255.255.252"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A flow's trouble tag counts RNR NAKs apart from NAKs, as the summary and the JSON do; an
/// IPv6 endpoint with a port is `[addr]:port` (RFC 5952, section 6), IPv4 `addr:port`.
#[test]
fn rnr_naks_are_tagged_apart_and_ipv6_endpoints_are_bracketed() {
    use meshway_traffic::synth::{pcap_header, pcap_record, udp_frame};
    let d = tmp("tags");
    let p = d.0.join("tags.pcap");
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    // RC Acknowledge (0x11) with AETH syndrome 0x60 (NAK) and 0x20 (RNR NAK), and a CNP (0x81).
    let bth = |op: u8, aeth: &[u8]| [&[op, 0, 0xff, 0xff, 0, 0, 4, 0x56, 0, 0, 0, 50][..], aeth, &[0; 4]].concat();
    let frames = [
        udp_frame(ip("10.0.0.2"), ip("10.0.0.1"), (49153, 4791), &bth(0x11, &[0x60, 0, 0, 5])),
        udp_frame(ip("10.0.0.2"), ip("10.0.0.1"), (49153, 4791), &bth(0x11, &[0x20, 0, 0, 5])),
        udp_frame(ip("10.0.0.2"), ip("10.0.0.1"), (49153, 4791), &bth(0x81, &[0; 16])),
        udp_frame(ip("fd00::1"), ip("fd00::2"), (9000, 9001), &[0x36; 300]),
    ];
    let mut out = pcap_header(65_535).to_vec();
    for (i, f) in frames.iter().enumerate() {
        pcap_record(&mut out, 1_780_000_000_000_000_000 + i as u64 * 1_000, f, 65_535).unwrap();
    }
    std::fs::write(&p, out).unwrap();
    let cap = p.to_str().unwrap();
    let o = meshway(&["traffic", cap, "--internal", "10.0.0.0/8,fd00::/8"]);
    let s = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(s.contains("  rocev2  10.0.0.2:49153 -> 10.0.0.1:4791  "), "{s}");
    assert!(s.contains("  east-west  [1 NAKs, 1 RNR NAKs, 1 CNPs]\n"), "{s}");
    assert!(!s.contains("2 NAKs"), "{s}");
    assert!(s.contains("RoCEv2: 1 flows, 1 NAKs, 1 RNR NAKs, 1 CNPs;"), "{s}");
    assert!(s.contains("  udp     [fd00::1]:9000 -> [fd00::2]:9001  "), "{s}");
    let o = meshway(&["traffic", cap, "--internal", "10.0.0.0/8,fd00::/8", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let roce = &v["troubled_flows"][0]["roce"];
    assert_eq!((roce["naks"].as_u64(), roce["rnr_naks"].as_u64(), roce["cnps"].as_u64()), (Some(1), Some(1), Some(1)));
}
