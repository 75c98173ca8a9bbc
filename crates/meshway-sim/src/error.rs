//! The error type of the simulation engine.

use crate::ids::{FlowId, LinkId};
use meshway_fabric::FabricError;
use meshway_units::SimTime;

/// Everything that can go wrong when building or running a [`Simulation`](crate::Simulation).
/// Each variant names the offending flow or link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// A flow's path names a link the network does not have.
    #[error("flow {flow} uses unknown link {link} (the network has {links} links)")]
    UnknownPathLink { flow: FlowId, link: LinkId, links: usize },
    /// A link id given to a scheduling call does not exist.
    #[error("unknown link {link} (the network has {links} links)")]
    UnknownLink { link: LinkId, links: usize },
    /// A flow's path crosses the same directed link twice.
    #[error("flow {flow} crosses link {link} more than once")]
    RepeatedLink { flow: FlowId, link: LinkId },
    /// A flow depends on a flow that has not been added (dependencies must be added first,
    /// which also rules out cycles).
    #[error("flow {flow} depends on unknown flow {dep}")]
    UnknownDependency { flow: FlowId, dep: FlowId },
    /// A flow id given to a call does not exist.
    #[error("unknown flow {flow}")]
    UnknownFlow { flow: FlowId },
    /// A flow was added with a start time before the current simulation time.
    #[error("flow {flow} starts at {start}, before the current simulation time {now}")]
    StartInPast { flow: FlowId, start: SimTime, now: SimTime },
    /// A link event was scheduled before the current simulation time.
    #[error("link {link} event at {at} is before the current simulation time {now}")]
    LinkEventInPast { link: LinkId, at: SimTime, now: SimTime },
    /// A finished flow cannot be given a new path.
    #[error("flow {flow} has already finished and cannot be rerouted")]
    FlowFinished { flow: FlowId },
    /// More flows than ids (`u32::MAX - 1`).
    #[error("too many flows: at most {max} are supported")]
    TooManyFlows { max: u32 },
    /// A flow's finish time does not fit in 64-bit nanoseconds (about 584 years).
    #[error("flow {flow} would finish beyond the largest representable time")]
    TimeOverflow { flow: FlowId },
    /// The packet-level engine cannot run the program as given (the message says why).
    #[error("packet level: {0}")]
    Packet(String),
}

/// Why a collective (or a training step made of them) cannot be written as a program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectiveError {
    #[error("a collective needs at least 2 ranks, got {ranks}")]
    TooFewRanks { ranks: usize },
    /// More messages than a run may hold in memory.
    #[error("{op} on {ranks} GPUs sends {messages} messages, more than the {max} one run may hold (about 900 bytes each while they run); simulate a smaller group")]
    TooManyMessages { op: &'static str, ranks: usize, messages: u64, max: u64 },
    /// The steps model asked for where it writes more messages than a run may hold.
    #[error("{op} on {ranks} GPUs written step by step (model = \"steps\") sends {messages} messages, more than the {max} one run may hold (about 900 bytes each while they run); leave `model` out (the steady-state model) or simulate a smaller group")]
    TooManySteps { op: &'static str, ranks: usize, messages: u64, max: u64 },
    /// The workloads of one run together past the limit.
    #[error("with the workloads before it the run holds {messages} messages, more than the {max} one run may hold (about 900 bytes each while they run); simulate the workloads in separate runs or on fewer GPUs")]
    TooManyTogether { messages: u64, max: u64 },
    /// All-to-all and send-recv only send directly.
    #[error("{op} sends every message directly; algorithm {algorithm} does not apply (leave `algorithm` out)")]
    DirectOnly { op: &'static str, algorithm: &'static str },
    /// The other collectives do not send directly: `direct` would run as something else.
    #[error("algorithm direct sends every message straight to its receiver, which only all-to-all and send-recv do; {op} is not modeled that way (leave `algorithm` out, or name {algorithms})")]
    NotDirect { op: &'static str, algorithms: &'static str },
    #[error("{op} with algorithm {algorithm} is not modeled ({hint})")]
    NotModeled { op: &'static str, algorithm: &'static str, hint: &'static str },
    #[error("halving-doubling needs a power-of-two number of ranks, got {ranks}")]
    NotPowerOfTwo { ranks: usize },
    #[error("a site-hierarchical collective must be an all-reduce, got {op}")]
    SiteHierarchicalNeedsAllReduce { op: &'static str },
    #[error("a site-hierarchical all-reduce needs the same number of ranks at every site, got {first} and {other}")]
    UnevenSites { first: usize, other: usize },
    /// The hardware or the protocol cannot run the algorithm.
    #[error("algorithm {algorithm} cannot run here: {why}")]
    Unsupported { algorithm: &'static str, why: String },
    #[error("hierarchical all-reduce needs at least 2 hosts with the same number (at least 2) of ranks each")]
    UnevenHosts,
    /// A collective simulated alone (a training step's TP or EP group) failed in the engine.
    #[error("simulating a {what} group alone: {source}")]
    Probe { what: &'static str, source: SimError },
    /// The pipeline schedule could not be written (a bug, never a user's mistake).
    #[error("internal: the 1F1B schedule deadlocked")]
    ScheduleDeadlock,
}

/// Everything that can stop a simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Scenario(#[from] FabricError),
    #[error(transparent)]
    Engine(#[from] SimError),
    /// A workload's collectives or training step cannot be written (`nth` counts from 1).
    #[error("{file}workload[{nth}] ({name:?}): {source}")]
    Workload { file: String, nth: usize, name: String, source: CollectiveError },
    /// A collective outside any workload table (multisite's job).
    #[error(transparent)]
    Collective(#[from] CollectiveError),
    #[error("the catalog has no [[transport]] named {kind:?}")]
    NoTransportProfile { kind: String },
    #[error("the catalog has no [multisite] section (sweep defaults)")]
    NoMultisiteDefaults,
    #[error("{scenario}: the job did not complete")]
    Incomplete { scenario: String },
    /// A fabric derived from the scenario (a baseline, a swept distance) does not build.
    #[error("{what}: {source}")]
    Derived { what: String, source: FabricError },
    /// A packet-level run would not fit in memory.
    #[error("{scenario}: a packet-level run needs about {estimate} of memory, above the limit of {limit} ({why}); run it at flow level (--fidelity flow), on a smaller fabric or with fewer or smaller messages, or raise [simulation.packet] memory-limit")]
    PacketTooLarge { scenario: String, estimate: String, limit: String, why: String },
    /// A command-line option out of range.
    #[error("{option}: {message}")]
    BadOption { option: &'static str, message: String },
    /// htsim's connection matrix reads a size as a 32-bit int.
    #[error("htsim cannot read sizes above {max} bytes (its connection matrix parses `size` with std::stoi, a 32-bit int), and {count} messages are larger; the largest: connection {id}, node {src} to node {dst} of workload {workload:?}, {bytes} bytes; export a run with smaller messages")]
    HtsimSizeTooLarge { count: usize, id: usize, src: u32, dst: u32, workload: String, bytes: u64, max: u64 },
    /// The testbed runs traffic patterns and ring all-reduces only.
    #[error("{file}: workload {workload:?}: {reason}")]
    NotRunnableOnTestbed { file: String, workload: String, reason: &'static str },
}
