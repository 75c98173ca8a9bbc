//! The htsim export run by htsim itself. htsim is built outside the repository from its
//! public source (validation/htsim/build-htsim.sh), so this test runs on request:
//!
//! ```sh
//! HTSIM_ROCE=$(validation/htsim/build-htsim.sh /path/to/csg-htsim) \
//!   cargo test -p meshway --test htsim -- --ignored
//! ```

mod common;

use common::{meshway, root, stderr, stdout};
use std::process::Command;

#[test]
#[ignore = "needs htsim built from source: set HTSIM_ROCE (validation/htsim/build-htsim.sh)"]
fn htsim_runs_every_flow_of_an_exported_chain() {
    let htsim = std::env::var("HTSIM_ROCE").expect("HTSIM_ROCE must name an htsim_roce binary");
    let o = Command::new("bash")
        .arg("validation/htsim/run-chain.sh")
        .arg(&htsim)
        .arg(env!("CARGO_BIN_EXE_meshway"))
        .current_dir(root())
        .output()
        .expect("run validation/htsim/run-chain.sh");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.starts_with("htsim finished 480 of 480 exported flows"), "{out}");
}

#[test]
fn the_export_warns_about_what_htsim_cannot_express() {
    // The chain's steps each wait on two messages; htsim starts a flow from one trigger.
    let dir = std::env::temp_dir().join(format!("meshway-htsim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cm = dir.join("chain.cm");
    let o = meshway(&["simulate", "validation/htsim/chain.toml", "--htsim", cm.to_str().unwrap()]);
    let text = std::fs::read_to_string(&cm).unwrap_or_default();
    std::fs::remove_dir_all(&dir).ok();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("flows in") && stderr(&o).contains("depend on several flows"), "{}", stderr(&o));
    assert!(text.starts_with("Nodes 16\nConnections 480\n"), "{text}");
    assert!(text.contains("send_done_trigger") && !text.contains("recv_done_trigger"));
}

/// Two GPUs per host: half of a ring's sends are NVLink hops inside a host. They were
/// exported as network connections, and every size was meshway's link bytes (the payload
/// over the NVLink or NIC share: 2,545,088 and 2,184,534 for a 2 MiB chunk), which htsim
/// scales again. Now the export holds the network sends alone, at their payload, and a send
/// that waited on an NVLink hop waits on what the hop waited on.
#[test]
fn the_export_leaves_nvlink_out_and_sizes_are_payloads() {
    let dir = std::env::temp_dir().join(format!("meshway-htsim-nv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (toml, cm) = (dir.join("nv.toml"), dir.join("nv.cm"));
    std::fs::write(
        &toml,
        "[fabric]\nkind = \"leaf-spine\"\ngpus = 4\ngpus-per-host = 2\nnic = \"400Gbps\"\ngpu = \"h100-sxm\"\n\
         [[workload]]\nname = \"ring\"\nkind = \"collective\"\nop = \"all-reduce\"\nalgorithm = \"ring\"\n\
         protocol = \"simple\"\nchannels = 8\nsize = \"64MiB\"\n",
    )
    .unwrap();
    let o = meshway(&["simulate", toml.to_str().unwrap(), "--csv", "--htsim", cm.to_str().unwrap()]);
    let text = std::fs::read_to_string(&cm).unwrap_or_default();
    std::fs::remove_dir_all(&dir).ok();
    assert!(o.status.success(), "{}", stderr(&o));
    // 6 steps x 8 channels x 4 sends: 96 cross hosts (gpu-1 -> gpu-2, gpu-3 -> gpu-0), 96 not.
    assert!(
        stderr(&o).contains("warning: 96 messages over NVLink inside a host are left out of")
            && stderr(&o).contains("80 flows that waited on them wait on what those waited on"),
        "{}",
        stderr(&o)
    );
    assert!(text.starts_with("Nodes 4\nConnections 96\nTriggers 80\n"), "{text}");
    let mut exported: Vec<(u32, u32, u64)> = Vec::new();
    let (mut starts, mut triggered) = (0, 0);
    let mut fired = std::collections::HashSet::new();
    let mut waited = Vec::new();
    for line in text.lines().filter(|l| l.contains("->")) {
        let w: Vec<&str> = line.split(' ').collect();
        let (s, d) = w[0].split_once("->").unwrap();
        let field = |k: &str| w.iter().position(|x| *x == k).map(|i| w[i + 1].parse::<u64>().unwrap());
        exported.push((s.parse().unwrap(), d.parse().unwrap(), field("size").unwrap()));
        match field("trigger") {
            Some(t) => {
                triggered += 1;
                waited.push(t);
            }
            None => starts += 1,
        }
        fired.extend(field("send_done_trigger"));
    }
    assert_eq!(exported.len(), 96);
    assert!(exported.iter().all(|&(s, d, _)| s / 2 != d / 2), "no connection inside a host");
    // The first step of each channel's two network sends starts; the rest are triggered by
    // a flow that is in the file.
    assert_eq!((starts, triggered), (16, 80));
    assert!(waited.iter().all(|t| fired.contains(t)));
    // The sizes are the payloads --csv prints: 64 MiB / 4 ranks / 8 channels.
    assert!(exported.iter().all(|&(_, _, b)| b == 2_097_152), "{exported:?}");
    let mut csv: Vec<(u32, u32, u64)> = stdout(&o)
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            let rank = |g: &str| g.trim_start_matches("gpu-").parse::<u32>().unwrap();
            (rank(c[1]), rank(c[2]), c[3].parse().unwrap())
        })
        .filter(|&(s, d, _)| s / 2 != d / 2)
        .collect();
    csv.sort_unstable();
    exported.sort_unstable();
    assert_eq!(exported, csv);
}

/// htsim reads a connection's size with std::stoi: a 3 GiB send was written as
/// `size 3221225472`, which htsim cannot load. The export is refused, and neither file of the
/// run is written.
#[test]
fn sizes_htsim_cannot_read_are_refused() {
    let dir = std::env::temp_dir().join(format!("meshway-htsim-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (toml, cm, html) = (dir.join("big.toml"), dir.join("big.cm"), dir.join("big.html"));
    let scenario = |size: &str| {
        format!(
            "[fabric]\nkind = \"leaf-spine\"\ngpus = 4\ngpus-per-host = 1\nnic = \"100Gbps\"\n\
             [[workload]]\nname = \"small\"\nkind = \"permutation\"\nsize = \"1MiB\"\n\
             [[workload]]\nname = \"sr\"\nkind = \"collective\"\nop = \"send-recv\"\nranks = [0, 3]\nsize = \"{size}\"\n"
        )
    };
    std::fs::write(&toml, scenario("3GiB")).unwrap();
    let args = ["simulate", toml.to_str().unwrap(), "--htsim", cm.to_str().unwrap(), "--html", html.to_str().unwrap()];
    let o = meshway(&args);
    let (cm_written, html_written) = (cm.exists(), html.exists());
    // 2,147,483,647 bytes is the most htsim reads.
    std::fs::write(&toml, scenario("2147483647B")).unwrap();
    let fits = meshway(&args);
    let text = std::fs::read_to_string(&cm).unwrap_or_default();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "htsim cannot read sizes above 2147483647 bytes (its connection matrix parses `size` with std::stoi, \
             a 32-bit int), and 2 messages are larger; the largest: connection 5, node 0 to node 3 of workload \"sr\", \
             3221225472 bytes"
        ),
        "{}",
        stderr(&o)
    );
    assert!(!cm_written && !html_written, "nothing is written");
    assert!(fits.status.success(), "{}", stderr(&fits));
    assert!(text.contains("0->3 id 5 ") && text.contains(" size 2147483647"), "{text}");
}
