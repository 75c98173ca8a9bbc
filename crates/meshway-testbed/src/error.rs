//! The error type of the testbed.

use meshway_fabric::FabricError;
use meshway_sim::simulate::SimulateError;
use meshway_sim::SimError;
use std::path::PathBuf;

/// Everything that can stop a testbed step. Each variant names what it was working on.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error("--scale: expected \"1:N\" with N >= 1 such as \"1:1000\", got {given:?}")]
    BadScale { given: String },
    #[error("--prefix must be 2 to 6 ASCII letters or digits, got {given:?}")]
    BadPrefix { given: String },
    #[error(
        "fabric too big for a testbed on this machine: {namespaces} namespaces and {links} links, the limit is {max_namespaces} namespaces and {max_links} links (see docs/testbed.md)"
    )]
    TooBig { namespaces: usize, links: usize, max_namespaces: usize, max_links: usize },
    #[error("{node} has {hops} equal-cost next hops toward {gpu}; a testbed route takes at most {max} (iproute2 reads at most 512 words a line)")]
    TooManyNextHops { node: String, gpu: String, hops: usize, max: usize },
    #[error("nodes {a:?} and {b:?} both map to namespace {namespace:?} (letters, digits and '-' are kept, anything else becomes '_'): rename one")]
    NameClash { a: String, b: String, namespace: String },
    #[error("node {node:?} makes a namespace name longer than {max} bytes: shorten it")]
    LongName { node: String, max: usize },
    #[error(
        "--scale leaves link {link} at {bps} bit/s, below tc's smallest rate ({min_kbit} kbit/s): use a smaller scale"
    )]
    TooSlow { link: String, bps: u64, min_kbit: u64 },
    #[error("--scale leaves link {link} at {}, beyond what this machine's cores can forward through a veth pair ({} at most): use a larger scale such as 1:1000", meshway_units::BitsPerSec(*bps), meshway_units::BitsPerSec(*max_bps))]
    TooFast { link: String, bps: u64, max_bps: u64 },
    #[error("namespace {name:?} already exists (another testbed with this prefix, or not meshway's): choose another --prefix, or run `meshway testbed down` for the testbed that made it")]
    NamespaceExists { name: String },
    #[error("refusing {}: {why}; testbed state must be a regular file (in a directory) owned by the user running meshway and writable by no one else", path.display())]
    Unsafe { path: PathBuf, why: String },
    #[error("state file {} was written for --prefix {state_prefix}, not {prefix}", state.display())]
    PrefixMismatch { state: PathBuf, state_prefix: String, prefix: String },
    #[error("the testbed that is up was built from {up}; {scenario} plans a different fabric (nodes, links, addresses or rates differ): run `meshway testbed down`, then `up` with this file")]
    FabricMismatch { up: String, scenario: String },
    #[error("could not remove {}: {}; the state file {} is kept (are you root?)", names.join(", "), errors.join("; "), state.display())]
    DownFailed { names: Vec<String>, errors: Vec<String>, state: PathBuf },
    #[error("the simulator expects this run's transfers alone to take {} at 1:{scale}, past --timeout {} (TCP and starting the workers only add to it): raise --timeout, bring the testbed up with faster links (a smaller N in --scale 1:N: 1:{} runs them 10 times faster), or start anyway with --force", meshway_units::Nanos(expected_us.div_ceil(1000).saturating_mul(1_000_000)), meshway_units::Nanos(timeout_us.saturating_mul(1000)), (scale / 10).max(1))]
    TooLong { expected_us: u64, timeout_us: u64, scale: u64 },
    #[error("a phase of {flows} flows at once: this process's open-file limit lets the testbed run at most {max} (two processes and four descriptors each); raise it (ulimit -n) or split the workload")]
    TooManyFlows { flows: usize, max: usize },
    #[error("testbed up failed; {}: {error}", match cleanup { None => "everything created was removed".to_string(), Some(c) => format!("and removing what was created failed too ({c})") })]
    UpFailed { error: Box<TestbedError>, cleanup: Option<Box<TestbedError>> },
    #[error("interrupted (SIGINT or SIGTERM)")]
    Interrupted,
    #[error("{node} has no links")]
    NoLinks { node: String },
    #[error("a testbed is already up ({}); run `meshway testbed down` first", state.display())]
    AlreadyUp { state: PathBuf },
    #[error("no testbed is up ({} missing): run `meshway testbed up FILE` first", state.display())]
    NotUp { state: PathBuf },
    #[error("the testbed in {} was never finished (its `up` was interrupted, or is still running): run `meshway testbed down`, then `up` again", state.display())]
    Unfinished { state: PathBuf },
    #[error("state file {}: {source}", state.display())]
    StateFile { state: PathBuf, source: serde_json::Error },
    #[error("the testbed that is up has {up} GPUs but {scenario} has {gpus}")]
    GpuMismatch { up: usize, scenario: String, gpus: usize },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot run {prog} (is iproute2 installed and are you root?): {source}")]
    Spawn { prog: String, source: std::io::Error },
    #[error("{prog} {args}: {stderr}")]
    Command { prog: String, args: String, stderr: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A flow's sender or receiver process misbehaved.
    #[error("flow worker: {what}")]
    Worker { what: String },
    #[error("flow {src} -> {dst}: received {got} of {bytes} bytes")]
    ShortFlow { src: u32, dst: u32, got: u64, bytes: u64 },
    #[error("no route from {namespace} to {dst}")]
    NoRoute { namespace: String, dst: String },
    #[error("unexpected interface {dev} in {namespace}")]
    UnexpectedInterface { dev: String, namespace: String },
    #[error("no path from {namespace} to {dst} within {hops} hops")]
    NoPath { namespace: String, dst: String, hops: usize },
    #[error("no flows to run: add [[workload]] tables")]
    NoFlows,
    #[error(transparent)]
    Scenario(#[from] FabricError),
    #[error(transparent)]
    Simulate(#[from] SimulateError),
    #[error(transparent)]
    Engine(#[from] SimError),
}
