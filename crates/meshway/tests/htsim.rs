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
