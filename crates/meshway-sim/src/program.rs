//! A program: the messages and waits a workload consists of, between ranks, with
//! dependencies. Collectives, training steps and traffic generators write programs;
//! [`crate::exec`] runs them on a topology under a routing policy and transport.

use meshway_units::Nanos;

/// Index of a message in [`Program::msgs`].
pub type MsgId = u32;

/// One message (or a wait).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Sending and receiving rank. A wait has `src == dst` and no bytes.
    pub src: u32,
    pub dst: u32,
    /// Bytes the message moves (headers are added by the transport): its payload, or more
    /// (see [`Msg::payload`]).
    pub bytes: u64,
    /// Relay rank: the message first goes over the NVLink domain to `via`, then on to `dst`
    /// (NCCL's PXN: a GPU hands data to the GPU whose NIC is on the receiver's rail).
    pub via: Option<u32>,
    /// Messages that must complete first.
    pub deps: Vec<MsgId>,
    /// Gap after the dependencies (compute, a kernel launch), or after `start` when there are
    /// none. Waits complete exactly this long after their dependencies.
    pub delay: Nanos,
    /// Earliest start, from time zero.
    pub start: Nanos,
    /// Which workload / collective / phase the message belongs to (an index into
    /// [`Program::tags`]).
    pub tag: u32,
    /// Connection (NCCL channel) number, part of the ECMP flow key.
    pub channel: u32,
    /// Endpoint latency this message pays before it starts, when not the transport's
    /// (a collective's protocol sets one per step, NVLink or network): see [`Msg::alpha`].
    alpha_ns: u64,
    /// Which links the message crosses: the path between two ranks, or one link between a
    /// GPU and the switch that reduces (NVLS in the NVSwitch, SHARP in the leaf).
    pub leg: Leg,
    /// On a multi-plane fabric, the plane (taken modulo the planes) whose NIC port the
    /// message leaves by, as NCCL spreads its channels over a NIC's ports; None: routing
    /// chooses among the planes as among any equal-cost paths.
    pub plane: Option<u16>,
    /// A path the message must take (an index into [`Program::routes`], given by a flow
    /// file's `path` column), or [`NO_ROUTE`]: routing chooses.
    pub route: u32,
    /// Which NCCL connection buffer bounds the message's bytes in flight per round trip
    /// across the network ([`crate::exec::ExecConfig::window`]).
    pub window: Window,
    /// The payload the message carries when `bytes` is more (a collective's sends move their
    /// payload scaled to the NIC's achievable share and the protocol's flags, so that the
    /// link's line rate times them gives NCCL's time); 0: `bytes` is the payload.
    pub payload: u64,
    /// 0: the message pays the protocol's whole step latency. n > 0: a ring step that pays
    /// its rank's own part of it ([`crate::collective::CollSpec::ring_step_own`]) divided by
    /// n, the steps its rank keeps in flight; the rest of the step latency it waits after the
    /// chunk it forwards, not after its own previous send.
    pub alpha_div: u8,
    /// A wait that stands for protocol latency (the part of a ring step's latency that
    /// follows the chunk it forwards), not compute: an export that cannot express a delay
    /// (htsim's triggers) passes through it, as it does the network's own latency.
    pub latency_wait: bool,
}

/// The NCCL buffer a message's connection has (see [`Msg::window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Window {
    /// Not an NCCL connection's (traffic, flow files): no window.
    #[default]
    None,
    /// A collective's connection: NCCL_BUFFSIZE.
    Collective,
    /// A point-to-point send (pipeline stages): NCCL_STEPS slots of NCCL's p2p chunk.
    P2p,
    /// A collective's connection under a protocol with its own buffer (LL, LL128): this
    /// many bytes of payload.
    Buffer(u64),
}

/// [`Msg::route`] of a message that routing places.
pub const NO_ROUTE: u32 = u32::MAX;

/// `alpha_ns` of a message that pays the transport's alpha (kept in 8 bytes, not 16).
const NO_ALPHA: u64 = u64::MAX;

/// The links a message crosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Leg {
    /// The routed path from `src` to `dst`.
    #[default]
    Path,
    /// `src`'s NVLink into its host's NVSwitch.
    NvlinkUp,
    /// The NVSwitch's NVLink into `dst`.
    NvlinkDown,
    /// `src`'s NIC port (plane `channel mod planes`) into its leaf switch.
    NicUp,
    /// The leaf switch's link into `dst`'s NIC port.
    NicDown,
}

impl Msg {
    pub fn send(src: u32, dst: u32, bytes: u64) -> Msg {
        Msg {
            src,
            dst,
            bytes,
            via: None,
            deps: Vec::new(),
            delay: Nanos::ZERO,
            start: Nanos::ZERO,
            tag: 0,
            channel: 0,
            alpha_ns: NO_ALPHA,
            leg: Leg::Path,
            plane: None,
            route: NO_ROUTE,
            window: Window::None,
            payload: 0,
            alpha_div: 0,
            latency_wait: false,
        }
    }

    /// `bytes` over one link between a GPU and the switch that reduces: from `rank` for the
    /// up legs, to `rank` for the down legs.
    pub fn leg(rank: u32, leg: Leg, bytes: u64) -> Msg {
        Msg { leg, ..Msg::send(rank, rank, bytes.max(1)) }
    }

    pub fn wait(deps: Vec<MsgId>, delay: Nanos) -> Msg {
        Msg { deps, delay, ..Msg::send(0, 0, 0) }
    }

    /// The endpoint latency the message pays, when not the transport's.
    pub fn alpha(&self) -> Option<Nanos> {
        (self.alpha_ns != NO_ALPHA).then_some(Nanos(self.alpha_ns))
    }

    /// Sets the endpoint latency the message pays instead of the transport's.
    pub fn set_alpha(&mut self, alpha: Nanos) {
        self.alpha_ns = alpha.0.min(NO_ALPHA - 1);
    }

    pub fn is_wait(&self) -> bool {
        self.src == self.dst && self.bytes == 0
    }
}

/// A named group of messages in the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
}

/// Messages in dependency order (every dependency comes earlier).
#[derive(Debug, Clone, Default)]
pub struct Program {
    pub msgs: Vec<Msg>,
    pub tags: Vec<Tag>,
    /// Pinned paths (arcs of the topology the program was written for).
    pub routes: Vec<Vec<crate::ids::LinkId>>,
    /// What a training step's first data-parallel replica does, stage by stage, for its
    /// timeline (see [`StepOp`]).
    pub step_ops: Vec<StepOp>,
    /// The collectives of each training step written into it, by the step's first message:
    /// what the tuner picked for each.
    pub step_collectives: Vec<(MsgId, Vec<StepCollective>)>,
}

/// One collective of a training step, as the tuner picked it for one group alone (NCCL
/// picks per communicator and size, knowing nothing of the other groups' traffic).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepCollective {
    /// "tensor-parallel all-reduce", "expert-parallel all-to-all" or "data-parallel all-reduce".
    pub what: &'static str,
    pub ranks: u32,
    pub size_bytes: u64,
    pub algorithm: String,
    /// Empty with no protocol model (a step at line rates).
    pub protocol: String,
    /// Its time alone on the fabric: a tensor- or expert-parallel collective's is added to
    /// every compute op; a data-parallel all-reduce runs on the fabric with the others, and
    /// this is given only when the tuner ran it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alone_ns: Option<u64>,
}

/// One piece of a training step on one pipeline stage (tensor rank 0, replica 0): a forward
/// or backward compute op (the wait `op`), or the gradient all-reduce that starts when `gate`
/// completes and ends with `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOp {
    pub stage: u32,
    pub kind: StepKind,
    pub gate: Option<MsgId>,
    pub op: MsgId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Forward,
    Backward,
    GradientAllReduce,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Forward => "forward",
            StepKind::Backward => "backward",
            StepKind::GradientAllReduce => "gradient all-reduce",
        }
    }
}

impl Program {
    pub fn new() -> Program {
        Program::default()
    }

    /// Opens a new tag; messages pushed with [`Program::push`] until the next call carry it.
    pub fn tag(&mut self, name: impl Into<String>) -> u32 {
        self.tags.push(Tag { name: name.into() });
        (self.tags.len() - 1) as u32
    }

    /// Appends a message under the current (last) tag and returns its id.
    pub fn push(&mut self, mut m: Msg) -> MsgId {
        debug_assert!(m.deps.iter().all(|&d| (d as usize) < self.msgs.len()));
        m.tag = self.tags.len().saturating_sub(1) as u32;
        self.msgs.push(m);
        (self.msgs.len() - 1) as MsgId
    }

    /// A wait that completes when all of `deps` have, plus `delay`.
    pub fn barrier(&mut self, deps: Vec<MsgId>, delay: Nanos) -> MsgId {
        self.push(Msg::wait(deps, delay))
    }
}
