//! The fabric's hierarchy for the schedulers people run:
//!
//! - Slurm `topology.conf` for `TopologyPlugin=topology/tree`: one `SwitchName` per block
//!   with its `Nodes`, one per pod with its `Switches`, and a root above several pods
//!   (slurm.conf(5) and topology.conf(5), SchedMD/slurm `doc/man/man5/topology.conf.5`);
//! - the same for `topology/block`: one `BlockName` per block, `BlockSizes` with the smallest
//!   block as the base size (every block must hold at least that many nodes);
//! - Slurm 25.05's `topology.yaml` with both, the tree as the cluster default
//!   (`doc/man/man5/topology.yaml.5`);
//! - Kubernetes node labels for the levels, and a Kueue `Topology` (apiVersion
//!   `kueue.x-k8s.io/v1beta2`, Kueue 0.15 and later; `v1beta1` for 0.14) with a
//!   `ResourceFlavor` that names it (kubernetes-sigs/kueue,
//!   `site/content/en/docs/concepts/topology_aware_scheduling.md`).
//!
//! Host names follow the scenario's `[schedule] host-prefix`.

use crate::hier::Hier;
use crate::hostlist::compress;

/// Label keys for Kueue's levels, coarsest first (the host level is Kubernetes' own).
pub const BLOCK_LABEL: &str = "topology.meshway.io/block";
pub const RACK_LABEL: &str = "topology.meshway.io/rack";
pub const HOST_LABEL: &str = "kubernetes.io/hostname";
/// A label every host of the fabric carries, which the ResourceFlavor selects nodes by
/// (Kueue matches `nodeLabels` key and value against the nodes' labels).
pub const FABRIC_LABEL: &str = "topology.meshway.io/fabric";
/// The value of [`FABRIC_LABEL`], and the name of the Topology and ResourceFlavor.
pub const FABRIC: &str = "meshway-fabric";

/// Longest Kubernetes label value and DNS label (RFC 1123).
const MAX_NAME: usize = 63;

/// A name Slurm and Kubernetes accept as a label value: letters, digits, '-', '_' and '.'
/// (others become '-'), at most 63, starting and ending with a letter or digit.
pub fn safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' })
        .take(MAX_NAME)
        .collect();
    let s = s.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    if s.is_empty() {
        "x".into()
    } else {
        s
    }
}

/// `name` with `-k` appended, cut so the whole stays within 63 and still ends in a letter
/// or digit.
fn suffixed(name: &str, k: usize) -> String {
    let tail = format!("-{k}");
    let head: String = name.chars().take(MAX_NAME - tail.len()).collect();
    format!("{}{tail}", head.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
}

/// The scenario's path as it may appear in a comment line of a generated file: control
/// characters (a newline would end the comment and start a command in node-labels.sh, or
/// break the YAML) become '?'.
pub fn comment_safe(source: &str) -> String {
    // U+2028 and U+2029 are line breaks to YAML parsers too.
    source.chars().map(|c| if c.is_control() || c == '\u{2028}' || c == '\u{2029}' { '?' } else { c }).collect()
}

fn block_hosts(h: &Hier, b: usize) -> String {
    let names: Vec<String> = h.blocks[b].hosts.iter().map(|&x| h.hosts[x as usize].name.clone()).collect();
    compress(&names)
}

/// Switch names for blocks, pods and the root, unique.
fn switch_names(h: &Hier) -> (Vec<String>, Vec<String>, String) {
    let mut seen: Vec<String> = Vec::new();
    let mut uniq = |n: String| {
        let mut m = n.clone();
        let mut k = 2;
        while seen.contains(&m) {
            m = suffixed(&n, k);
            k += 1;
        }
        seen.push(m.clone());
        m
    };
    let blocks: Vec<String> = h.blocks.iter().map(|b| uniq(safe(&b.name))).collect();
    let pods: Vec<String> = h.pods.iter().map(|p| uniq(safe(&p.name))).collect();
    let root = uniq("root".into());
    (blocks, pods, root)
}

pub fn slurm_tree(h: &Hier, source: &str) -> String {
    let (bn, pn, root) = switch_names(h);
    let mut s = format!(
        "# Slurm topology.conf for TopologyPlugin=topology/tree, written by meshway from {source}.\n\
         # Leaf switches are the fabric's blocks (hosts that share their leaf or rail switches);\n\
         # their parents are its pods (blocks that share spines).\n"
    );
    for (i, name) in bn.iter().enumerate() {
        s += &format!("SwitchName={name} Nodes={}\n", block_hosts(h, i));
    }
    for (i, p) in h.pods.iter().enumerate() {
        let children: Vec<String> = p.blocks.iter().map(|&b| bn[b as usize].clone()).collect();
        s += &format!("SwitchName={} Switches={}\n", pn[i], children.join(","));
    }
    if h.pods.len() > 1 {
        s += &format!("SwitchName={root} Switches={}\n", pn.join(","));
    }
    s
}

/// The base block size: the smallest block's hosts.
pub fn base_block(h: &Hier) -> usize {
    h.blocks.iter().map(|b| b.hosts.len()).min().unwrap_or(1)
}

/// `BlockSizes`: the base block and every power-of-two aggregate of it up to the first that
/// holds all blocks (at most 2^15 blocks, Slurm's limit). Slurm enables only the levels
/// listed: `BlockSizes=32` alone let no job take two neighbouring blocks (SchedMD/slurm
/// `src/plugins/topology/block/block_record.c`: a listed size sets its level; without the key
/// levels 0-4 are set).
pub fn block_sizes(h: &Hier) -> Vec<usize> {
    let base = base_block(h);
    let mut sizes = vec![base];
    let mut level = 0u32;
    while (1usize << level) < h.blocks.len() && level < 15 {
        level += 1;
        sizes.push(base << level);
    }
    sizes
}

/// A comment line when blocks differ in size: Slurm plans every block as the base size.
fn unequal_blocks(h: &Hier) -> String {
    let (lo, hi) = (base_block(h), h.blocks.iter().map(|b| b.hosts.len()).max().unwrap_or(0));
    if lo == hi {
        return String::new();
    }
    format!(
        "# Blocks hold {lo} to {hi} hosts: the base size is the smallest, since Slurm requires every\n\
         # block to hold at least the base size, and it counts its aggregates in base blocks.\n"
    )
}

fn join(sizes: &[usize], sep: &str) -> String {
    sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(sep)
}

pub fn slurm_block(h: &Hier, source: &str) -> String {
    let (bn, _, _) = switch_names(h);
    let mut s = format!(
        "# Slurm topology.conf for TopologyPlugin=topology/block, written by meshway from {source}.\n\
         # One block per group of hosts that share their leaf or rail switches, in fabric order;\n\
         # BlockSizes lists the base block and its power-of-two aggregates, the sizes Slurm builds\n\
         # from neighbouring blocks.\n{}",
        unequal_blocks(h)
    );
    for (i, name) in bn.iter().enumerate() {
        s += &format!("BlockName={name} Nodes={}\n", block_hosts(h, i));
    }
    s += &format!("BlockSizes={}\n", join(&block_sizes(h), ","));
    s
}

pub fn slurm_yaml(h: &Hier, source: &str) -> String {
    let (bn, pn, root) = switch_names(h);
    let mut s = format!("# Slurm topology.yaml (Slurm 25.05 and later), written by meshway from {source}.\n");
    s += "- topology: fabric-tree\n  cluster_default: true\n  tree:\n    switches:\n";
    for (i, name) in bn.iter().enumerate() {
        s += &format!("      - switch: {name}\n        nodes: \"{}\"\n", block_hosts(h, i));
    }
    for (i, p) in h.pods.iter().enumerate() {
        let children: Vec<String> = p.blocks.iter().map(|&b| bn[b as usize].clone()).collect();
        s += &format!("      - switch: {}\n        children: \"{}\"\n", pn[i], children.join(","));
    }
    if h.pods.len() > 1 {
        s += &format!("      - switch: {root}\n        children: \"{}\"\n", pn.join(","));
    }
    s += &format!(
        "- topology: fabric-block\n  cluster_default: false\n  block:\n    block_sizes: [{}]\n    blocks:\n",
        join(&block_sizes(h), ", ")
    );
    for (i, name) in bn.iter().enumerate() {
        s += &format!("      - block: {name}\n        nodes: \"{}\"\n", block_hosts(h, i));
    }
    s
}

/// `kubectl label` commands, one per host: the pod as the block level, the block as the
/// rack level, and the fabric label the ResourceFlavor selects by.
pub fn k8s_labels(h: &Hier, source: &str) -> String {
    let (bn, pn, _) = switch_names(h);
    let mut s = format!(
        "#!/bin/sh\n# Kubernetes node labels for Kueue topology-aware scheduling, written by meshway from {source}.\n\
         # {BLOCK_LABEL}: the pod (blocks that share spines); {RACK_LABEL}: the block (hosts that\n\
         # share leaf or rail switches); {FABRIC_LABEL}: every host, for the ResourceFlavor.\nset -e\n"
    );
    for x in &h.hosts {
        s += &format!(
            "kubectl label node {} {FABRIC_LABEL}={FABRIC} {BLOCK_LABEL}={} {RACK_LABEL}={} --overwrite\n",
            x.name, pn[x.pod as usize], bn[x.block as usize]
        );
    }
    s
}

pub fn kueue_topology(source: &str) -> String {
    format!(
        "# Kueue Topology for topology-aware scheduling, written by meshway from {source}.\n\
         # apiVersion v1beta2 is Kueue 0.15 and later; write v1beta1 for Kueue 0.14.\n\
         apiVersion: kueue.x-k8s.io/v1beta2\n\
         kind: Topology\n\
         metadata:\n  name: {FABRIC}\n\
         spec:\n  levels:\n  - nodeLabel: \"{BLOCK_LABEL}\"\n  - nodeLabel: \"{RACK_LABEL}\"\n  - nodeLabel: \"{HOST_LABEL}\"\n\
         ---\n\
         apiVersion: kueue.x-k8s.io/v1beta2\n\
         kind: ResourceFlavor\n\
         metadata:\n  name: {FABRIC}\n\
         spec:\n  nodeLabels:\n    {FABRIC_LABEL}: \"{FABRIC}\"\n  topologyName: {FABRIC}\n"
    )
}

/// Every export as (file name, contents).
pub fn all(h: &Hier, source: &str) -> Vec<(&'static str, String)> {
    let source = &comment_safe(source);
    vec![
        ("topology-tree.conf", slurm_tree(h, source)),
        ("topology-block.conf", slurm_block(h, source)),
        ("topology.yaml", slurm_yaml(h, source)),
        ("node-labels.sh", k8s_labels(h, source)),
        ("kueue-topology.yaml", kueue_topology(source)),
    ]
}
