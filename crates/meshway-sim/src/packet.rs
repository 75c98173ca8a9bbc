//! The packet-level engine (fidelity level 3 in `DESIGN.md`): the same [`Program`]s as the
//! flow engine, run packet by packet.
//!
//! # Model
//!
//! - **Time** is kept in picoseconds, so a 4,064-byte packet at 100 Gb/s serializes in exactly
//!   325,120 ps (whole nanoseconds would add 0.3% per hop). Reported times are nanoseconds,
//!   rounded up.
//! - **Ports.** Every directed link (arc) has one output port at its tail: a control queue
//!   (acknowledgements, pulls, trimmed headers, congestion notifications; strict priority,
//!   never paused, never dropped) and a FIFO data queue. A port serializes one whole packet at
//!   a time at the link rate; the packet then propagates for the link's latency to the head.
//!   A network switch counts it at the ingress on arrival and hands it to an output port after
//!   the switch's latency (an NVLink switch's latency is part of its link's): store-and-forward
//!   at every hop.
//! - **Hosts** generate data packets when their NIC port is free, round-robin over the flows
//!   that may send, so a host's flows share its NIC packet by packet.
//! - **Switch buffers.** A switch counts the bytes it holds per ingress port (the arc they
//!   arrived on) and in total against its model's shared buffer. A packet is released when
//!   its last bit has left the output port.
//! - **RoCEv2 with PFC** ([`Transport::RocePfc`]): when an ingress holds more than `xoff`
//!   bytes the switch sends a pause back up the ingress link; it takes effect at the upstream
//!   transmitter after the link's latency, a 64-byte pause frame and the response time, and
//!   the packet in serialization finishes. Below `xon` a resume follows the same way, with
//!   the same delays, so the upstream acts on pauses and resumes in the order sent. A
//!   packet that arrives at an ingress already holding `xoff + headroom` bytes, or at a full
//!   shared buffer, is dropped: lossless has failed. Senders run at line rate (or DCQCN's
//!   rate), with go-back-N: the receiver acknowledges every packet cumulatively, discards out
//!   of order packets with one NACK per gap, the sender rewinds on a NACK or a timeout.
//! - **DCQCN** (with RoCE): switches mark ECN on a data packet with the RED probability of
//!   the output queue it joins (`kmin`..`kmax`, up to `pmax`); the receiver sends at most
//!   one CNP per flow per `cnp_interval`; the sender cuts and recovers its rate as the DCQCN
//!   paper's reaction point does (see [`Dcqcn`]).
//! - **InfiniBand** ([`Transport::Infiniband`]): credit-based link-level flow control. A port
//!   into a switch transmits a data packet only when the switch has advertised room for it
//!   (`xoff + headroom` bytes per port and virtual lane); the room returns when the packet
//!   leaves that switch, one link latency later. Nothing is dropped. Transport as RoCE's.
//! - **Lossy RoCE** ([`Transport::RoceLossy`], `lossless = false`): output queues tail-drop
//!   above `queue` bytes; go-back-N recovers.
//! - **Receiver-driven spraying** ([`Transport::Ndp`], NDP/EQDS-like): a sender starts with
//!   `window` packets, then sends one packet (a retransmission first) per pull. A switch whose
//!   data queue would exceed `trim` bytes cuts the packet to its header, which goes on at
//!   control priority; the receiver answers a header with a NACK and a data packet with an
//!   ACK, and for each queues a pull. A receiver's pulls leave one per data-packet time of its
//!   link, round-robin over its senders.
//! - **Load balancing**: per-flow ECMP (a flow's path is its hash's; queue pairs are
//!   subflows as at flow level), per-packet spraying (each packet a seeded random path of the
//!   message's equal-cost set), or adaptive (at each switch, the next hop whose output queue
//!   holds the fewest bytes). Control packets take the reverse of their data packet's path.
//! - **NCCL's window**: a message between sites with an NCCL buffer
//!   ([`crate::program::Msg::window`]) has at most that much payload sent and not yet
//!   acknowledged, split evenly over its queue pairs (go-back-N transports; NDP paces by
//!   pulls), as the flow level bounds it per round trip.
//! - **Completion**: a message completes when its last data byte has arrived (`data`) or its
//!   last acknowledgement is back at the sender (`ack`, as htsim counts).
//! - **Determinism**: events are ordered by (time, sequence); random choices come from a
//!   seeded hash; the same program, topology and parameters give the same bytes.

use crate::engine::LinkId as Arc;
use crate::exec::{ExecConfig, Execution, MsgResult, Policy};
use crate::ids::FlowId;
use crate::program::{Leg, Msg, Program};
use crate::result::{FlowResult, LinkStats, SimResult};
use crate::topo::{mix, Choice, Topology};
use crate::SimError;
use meshway_units::{BitsPerSec, Bytes, Nanos, SimTime};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

const NONE: u32 = u32::MAX;
const PS: u64 = 1000;
/// The packet level's clock counts picoseconds in 64 bits (213 days); runs stop at 100 days of
/// simulated time, an assumption that leaves room for the timers armed past it.
pub const CLOCK_LIMIT_PS: u64 = 100 * 86_400 * 1_000_000_000_000;
/// Bytes of a PFC pause frame on the wire (a minimum Ethernet frame with preamble and gap).
const PAUSE_FRAME: u64 = 84;

/// How packets are carried and protected from loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// RoCEv2 over a PFC-lossless fabric, go-back-N.
    RocePfc,
    /// RoCEv2 over a lossy fabric (tail drop), go-back-N.
    RoceLossy,
    /// InfiniBand: credit-based link-level flow control, go-back-N.
    Infiniband,
    /// Receiver-driven, trimming switches, per-packet spraying (NDP/EQDS-like).
    Ndp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::RocePfc => "roce-pfc",
            Transport::RoceLossy => "roce-lossy",
            Transport::Infiniband => "infiniband-credits",
            Transport::Ndp => "ndp",
        }
    }
}

/// Path choice for packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Per-flow hash: every packet of a (sub)flow takes one path.
    Ecmp,
    /// Per-packet: a seeded random path of the equal-cost set.
    Spray,
    /// Per-packet, per switch: the next hop with the shortest output queue.
    Adaptive,
}

impl Balance {
    pub fn of(policy: Policy) -> Balance {
        match policy {
            Policy::Ecmp => Balance::Ecmp,
            Policy::Spray => Balance::Spray,
            Policy::Adaptive | Policy::AdaptiveGlobal => Balance::Adaptive,
        }
    }
}

/// DCQCN's parameters (switch marking, notification point, reaction point).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Dcqcn {
    /// RED marking: no marks below `kmin` queued bytes, probability rising linearly to `pmax`
    /// at `kmax`, every packet above.
    pub kmin: u64,
    pub kmax: u64,
    pub pmax: f64,
    /// Gain of the congestion estimate alpha.
    pub g: f64,
    /// Alpha decays by `1 - g` every `alpha_period` without a CNP.
    pub alpha_period: Nanos,
    /// Rate increase: one step per `timer` and per `byte_counter` bytes sent.
    pub timer: Nanos,
    pub byte_counter: u64,
    /// Steps of fast recovery before additive increase.
    pub fast_recovery: u32,
    /// Additive and hyper increase of the target rate, bit/s.
    pub rai: u64,
    pub rhai: u64,
    /// Notification point: at most one CNP per flow per this interval.
    pub cnp_interval: Nanos,
    /// Floor of the sending rate, bit/s.
    pub min_rate: u64,
}

/// What the packet engine needs besides the program and topology.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PacketParams {
    pub transport: Transport,
    pub balance: Balance,
    pub dcqcn: Option<Dcqcn>,
    /// Bytes on the wire of an ACK, NACK, pull, CNP or trimmed header.
    pub control_bytes: u64,
    /// PFC: pause an ingress above this many bytes; resume at or below `xon`.
    pub xoff: u64,
    pub xon: u64,
    /// Buffer per ingress port above `xoff` (PFC headroom; with credits, the room a port
    /// advertises is `xoff + headroom`). None: each port's own need, as the planner computes
    /// it (`meshway_fabric::plan::headroom_bytes` of its link).
    pub headroom: Option<u64>,
    /// Headroom of ports on DCI links only (overrides `headroom` there).
    pub dci_headroom: Option<u64>,
    /// Upstream transmitter's reaction time to a pause or a resume frame: at 400 Gb/s and
    /// above, and at every rate when `pause_response_100g` is None (a scenario's
    /// `pause-response`).
    pub pause_response: Nanos,
    /// The reaction time at 100 Gb/s and below; between 100 and 400 Gb/s the bit times are
    /// interpolated, as the planner's headroom does (the catalog's `pfc-response-100g`).
    pub pause_response_100g: Option<Nanos>,
    /// Lossy output queue limit, bytes.
    pub queue: u64,
    /// Receiver-driven: a data queue above this many bytes trims arriving packets.
    pub trim: u64,
    /// Receiver-driven: packets a sender may send before its first pull.
    pub window: u32,
    /// Receiver-driven: the first window is at least the flow's path's bandwidth-delay
    /// product (when the scenario does not set `window-packets`). A fixed 30 packets, the NDP
    /// paper's first window at 10 Gb/s, held a lone flow to 172 Gb/s on a 400G path.
    pub window_covers_path: bool,
    /// Go-back-N retransmission timeout.
    pub rto: Nanos,
    /// Interval of the queue and pause time series.
    pub sample: Nanos,
    /// Most equal-cost paths a message sprays over (and adaptive routing chooses among).
    pub paths: u32,
    /// Time series kept for this many ports (those with the deepest queues).
    pub series_ports: usize,
    /// Stop after this many events (a bound, not a result).
    pub max_events: u64,
}

/// One port's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PortStats {
    pub link: String,
    pub capacity_bps: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    /// Deepest data queue, bytes.
    pub max_queue_bytes: u64,
    /// Pause frames the switch at this link's head sent up it (PFC XOFF).
    pub pauses_sent: u64,
    /// Time this port's transmitter was paused.
    pub paused_ns: u64,
    pub drops: u64,
    pub trims: u64,
    pub ecn_marks: u64,
}

/// A port's queue depth and paused time per sample interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSeries {
    pub link: String,
    pub interval_ns: u64,
    /// Deepest data queue in each interval, bytes.
    pub queue_bytes: Vec<u64>,
    /// Time paused in each interval.
    pub paused_ns: Vec<u64>,
    /// Bytes sent in each interval.
    pub tx_bytes: Vec<u64>,
}

/// What the packet engine measured besides completion times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PacketStats {
    pub transport: Transport,
    pub balance: Balance,
    pub events: u64,
    pub data_packets: u64,
    pub retransmitted_packets: u64,
    pub control_packets: u64,
    pub drops: u64,
    pub trims: u64,
    pub pauses: u64,
    pub paused_ns: u64,
    pub ecn_marks: u64,
    pub cnps: u64,
    /// Whether the run stopped at `max_events`.
    pub truncated: bool,
    /// Whether the run stopped at [`CLOCK_LIMIT_PS`], 100 days of simulated time.
    pub clock_limit: bool,
    /// Whether the run stopped because nothing could move: no port sent a packet for a
    /// whole retransmission timeout while a port stayed paused (a PFC pause cycle) or
    /// waited for credits that never came (a credit loop).
    pub deadlock: bool,
    /// Ports with traffic, pauses, drops or trims, in link order.
    pub ports: Vec<PortStats>,
    /// Time series of the ports with the deepest queues.
    pub series: Vec<PortSeries>,
    /// Engine flows (messages and their queue-pair subflows).
    pub flows: usize,
    /// PFC: lossless ports given less headroom than their own need (the planner's figure
    /// for their link), where a pause can come too late and packets drop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_headroom: Option<ShortHeadroom>,
}

/// Lossless ports whose headroom is below what arrives after they pause their sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShortHeadroom {
    pub ports: u64,
    /// Of all lossless ports.
    pub of: u64,
    /// The smallest headroom given to one of them, and the largest need among them, bytes.
    pub headroom_bytes: u64,
    pub need_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
enum Kind {
    #[default]
    Data,
    Header,
    Ack,
    Nack,
    Pull,
    Cnp,
}

impl Kind {
    /// Whether the packet goes from receiver to sender.
    fn reverse(self) -> bool {
        matches!(self, Kind::Ack | Kind::Nack | Kind::Pull | Kind::Cnp)
    }
}

/// A packet in flight: 24 bytes, so an event carrying one is 24 bytes too (its tag lives in
/// `kind`'s unused values) and the calendar moves little memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
struct Pkt {
    flow: u32,
    seq: u32,
    /// Where its path starts in `Engine::arena`.
    off: u32,
    /// The arc it is on (the route's arc at `hop`).
    arc: u32,
    /// Bytes on the wire (at most [`MAX_WIRE`]).
    wire: u16,
    /// Path within the flow's path set.
    path: u16,
    /// Index of the arc the packet is on along its route.
    hop: u8,
    /// Links on its route (at most [`MAX_HOPS`]).
    len: u8,
    kind: Kind,
    /// [`ECN`] and [`HELD`].
    flags: u8,
}

/// Flag: the packet carries an ECN congestion mark.
const ECN: u8 = 1;
/// Flag: the head switch of the arc before this one holds the packet in its buffer (counted
/// against that arc's ingress until the packet leaves).
const HELD: u8 = 2;
/// Flag (NDP): the control packet carries a pull, a credit of one packet for the sender.
const PULL: u8 = 4;
/// Flag: the packet has crossed the head switch's pipeline (its latency) and goes to an
/// output port.
const CROSSED: u8 = 8;
/// The largest packet the engine carries, bytes on the wire.
const MAX_WIRE: u64 = u16::MAX as u64;
/// The longest route the engine carries, links.
const MAX_HOPS: usize = u8::MAX as usize;

const _: () = assert!(std::mem::size_of::<Pkt>() == 24 && std::mem::size_of::<Ev>() == 24);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    TxDone(u32),
    /// A packet arrives at the head of its arc, or (with [`CROSSED`]) leaves the head
    /// switch's pipeline for its output port.
    Arrive(Pkt),
    Pause(u32, bool),
    Credit(u32, u32),
    Wake(u32),
    PullTick(u32),
    Rto(u32),
    Ready(u32),
    Dcqcn(u32),
}

#[derive(Default)]
struct Port {
    rate: u64,
    /// Picoseconds per byte at `rate` when that is a whole number (then a packet's
    /// serialization is one multiplication, the same value [`ser_ps`] gives), else 0.
    ps_per_byte: u64,
    /// The arc's latency, ps: the link's propagation where the head is a network switch
    /// (whose latency is `sw_ps`), else the whole arc's.
    lat_ps: u64,
    /// The head network switch's latency, ps, from a packet's arrival at its ingress until it
    /// joins an output queue; 0 for a host or an NVLink switch.
    sw_ps: u64,
    /// Index of the switch at the head in `Engine::bufs`, or NONE for a host/GPU.
    head: u32,
    lossless: bool,
    ctrl: VecDeque<Pkt>,
    data: VecDeque<Pkt>,
    qbytes: u64,
    busy: bool,
    cur: Pkt,
    paused: bool,
    paused_at: u64,
    paused_ps: u64,
    credits: u64,
    credit_limited: bool,
    /// Flows that source at this port (a NIC), round-robin.
    ready: VecDeque<u32>,
    /// Bytes held by the head switch that arrived on this arc.
    in_bytes: u64,
    /// Room above `xoff` (PFC) at the head's ingress for this arc.
    headroom: u64,
    /// The upstream transmitter's response to a pause at this port's rate, ps.
    response_ps: u64,
    xoff: bool,
    /// Pull pacer of the receiver at this arc's head (a host).
    pulls: VecDeque<u32>,
    pull_armed: bool,
    /// When the pacer may send its next pull, ps.
    pull_at: u64,
    /// Bytes and packets sent, deepest data queue.
    tx_bytes: u64,
    tx_packets: u64,
    max_queue: u64,
    /// The sample interval being filled: its index, deepest queue and bytes sent.
    sb: u64,
    sq: u64,
    stx: u64,
    /// What is touched rarely (counters of drops and pauses, the series).
    cold: Box<Cold>,
}

#[derive(Default)]
struct Cold {
    st: PortStats,
    /// (interval, deepest queue, bytes sent) per sample interval with anything in it.
    series: Vec<(u64, u64, u64)>,
    /// Pauses that cross a sample interval's edge, (from, to) in ps; at most one per edge.
    pause_spans: Vec<(u64, u64)>,
    /// Paused ps per sample interval of the pauses that begin and end within it.
    pause_within: Vec<(u64, u64)>,
    /// When the last pause ended.
    pause_end: u64,
}

impl Cold {
    /// Records a pause from `a` to `b` (ps) for the time series, exactly and in memory that
    /// grows with the sample intervals that hold pauses, not with the pauses.
    fn add_pause(&mut self, a: u64, b: u64, sample: u64) {
        if b <= a {
            return;
        }
        self.pause_end = self.pause_end.max(b);
        let k = a / sample;
        if k != (b - 1) / sample {
            self.pause_spans.push((a, b));
            return;
        }
        match self.pause_within.last_mut() {
            Some((last, ps)) if *last == k => *ps += b - a,
            _ => self.pause_within.push((k, b - a)),
        }
    }
}

impl Port {
    /// From a switch's decision to pause or resume the transmitter of this arc until the
    /// transmitter acts on it, ps: the frame's serialization, the link's latency and the
    /// transmitter's response time, the same for both frames so they act in the order sent.
    /// A pause (or resume) sent up this arc takes effect: the frame's serialization and
    /// propagation, and the upstream transmitter's response at this port's rate.
    fn pause_delay(&self) -> u64 {
        self.lat_ps + self.ser(PAUSE_FRAME) + self.response_ps
    }

    /// Time to serialize `bytes` on this port, ps: [`ser_ps`] at the port's rate.
    fn ser(&self, bytes: u64) -> u64 {
        if self.ps_per_byte > 0 {
            bytes * self.ps_per_byte
        } else {
            ser_ps(bytes, self.rate)
        }
    }

    /// Closes the sample interval being filled.
    fn flush(&mut self) {
        if self.sq > 0 || self.stx > 0 {
            self.cold.series.push((self.sb, self.sq, self.stx));
        }
        self.sq = self.qbytes;
        self.stx = 0;
    }
}

#[derive(Default)]
struct Flow {
    msg: u32,
    /// First arc (the NIC port it sources at) and last arc (into the receiver).
    nic: u32,
    /// Range of the flow's path set in `Engine::sets`.
    set: u32,
    pick: u16,
    pkts: u32,
    payload: u64,
    start: u64,
    end: Option<u64>,
    data_end: Option<u64>,
    queued: bool,
    // Sender.
    /// NCCL's window in packets: at most this many sent and not yet acknowledged (0: none).
    win: u32,
    snd_nxt: u32,
    snd_una: u32,
    /// Highest sequence sent so far (go-back-N: lower ones sent again are retransmissions).
    high: u32,
    last_progress: u64,
    rto_armed: bool,
    wake_armed: bool,
    // Go-back-N receiver.
    rcv_nxt: u32,
    nacked: bool,
    // Receiver-driven.
    allowance: u32,
    /// Packets sent before the first pull (see [`PacketParams::window_covers_path`]).
    first_window: u32,
    rtx: VecDeque<u32>,
    got: Vec<u64>,
    got_n: u32,
    acked: Vec<u64>,
    acked_n: u32,
    pulls_owed: u32,
    // DCQCN.
    /// Line rate of the NIC port.
    line: u64,
    rate: u64,
    target: u64,
    alpha: f64,
    next_tx: u64,
    last_cnp_sent: Option<u64>,
    alpha_due: u64,
    timer_due: u64,
    timer_steps: u32,
    byte_steps: u32,
    bytes_since: u64,
    dcqcn_armed: bool,
}

struct MsgState {
    deps_left: u32,
    ready_at: u64,
    flows: (u32, u32),
    left: u32,
    start: Option<u64>,
    end: Option<u64>,
}

struct Engine<'p> {
    p: &'p PacketParams,
    now: u64,
    seq: u64,
    heap: Queue,
    ports: Vec<Port>,
    /// Shared buffer per switch: (used, capacity).
    bufs: Vec<(u64, u64)>,
    flows: Vec<Flow>,
    /// Path sets: (start, count) into `paths`.
    sets: Vec<(u32, u16)>,
    paths: Vec<Vec<u32>>,
    /// Every path's arcs end to end (`offsets[i]` is where path `i` starts): a packet keeps
    /// its offset, so finding its next arc is one read.
    arena: Vec<u32>,
    offsets: Vec<u32>,
    msgs: Vec<MsgState>,
    dependents: Vec<Vec<u32>>,
    mtu: u64,
    header: u64,
    seed: u64,
    draws: u64,
    events: u64,
    ack_completion: bool,
    /// The sample interval, ps.
    sample_ps: u64,
    /// The sample interval `now` is in, and where it ends (ps): kept by the run loop, so
    /// the per-packet counters need no division.
    sample: u64,
    sample_end: u64,
    /// When a port last finished sending a packet (ps).
    last_tx: u64,
    /// Selective acknowledgement (per-packet paths reorder packets; NDP).
    sel: bool,
    /// Receiver-driven (NDP): senders need pulls.
    ndp: bool,
    /// Per message: delay (and alpha) after its dependencies, ps.
    gaps: Vec<u64>,
    stats: PacketStats,
}

type Entry = Reverse<(u64, u64, Ev)>;

/// The event queue: a calendar of time buckets (2^12 ps wide, 2^12 of them, about 16.8 us
/// ahead), a sorted list for the bucket being run, and a binary heap for events beyond the
/// calendar. Events come out in (time, sequence) order, as from one binary heap.
///
/// A bucket holds a few events (one per 4 ns at most ports' rates), so the bucket being run
/// is sorted once when it is reached, latest first, and popped from its end; an event pushed
/// into it is inserted in order. The buckets are lists threaded through one pool of nodes
/// whose free nodes are reused last-freed first: a push writes to a node that was freed a
/// moment ago and is still in cache, where a vector per bucket would write to memory last
/// touched a whole turn of the calendar ago (the packet level's main cost before).
struct Calendar {
    /// Absolute index of the current bucket (time >> SHIFT).
    at: u64,
    /// The current bucket's events, latest (time, sequence) first.
    cur: Vec<(u64, u64, Ev)>,
    /// Per bucket: its first node in `nodes`, or [`NIL`].
    heads: Vec<u32>,
    nodes: Vec<Node>,
    /// First free node, or [`NIL`].
    free: u32,
    /// Events in the buckets.
    in_ring: usize,
    far: BinaryHeap<Entry>,
}

struct Node {
    event: (u64, u64, Ev),
    next: u32,
}

const NIL: u32 = u32::MAX;
const SHIFT: u32 = 12;
const SLOTS: u64 = 1 << 12;

impl Calendar {
    fn new() -> Calendar {
        Calendar {
            at: 0,
            cur: Vec::new(),
            heads: vec![NIL; SLOTS as usize],
            nodes: Vec::new(),
            free: NIL,
            in_ring: 0,
            far: BinaryHeap::new(),
        }
    }

    /// Puts an event into the current bucket, keeping it sorted latest first.
    fn insert_cur(&mut self, t: u64, seq: u64, ev: Ev) {
        let i = self.cur.partition_point(|&(u, s, _)| (u, s) > (t, seq));
        self.cur.insert(i, (t, seq, ev));
    }

    /// Puts an event into bucket `b` of the calendar.
    fn insert_ring(&mut self, b: u64, event: (u64, u64, Ev)) {
        let slot = (b % SLOTS) as usize;
        let next = self.heads[slot];
        let i = if self.free != NIL {
            let i = self.free;
            let node = &mut self.nodes[i as usize];
            self.free = node.next;
            *node = Node { event, next };
            i
        } else {
            self.nodes.push(Node { event, next });
            self.nodes.len() as u32 - 1
        };
        self.heads[slot] = i;
        self.in_ring += 1;
    }

    fn push(&mut self, t: u64, seq: u64, ev: Ev) {
        let b = t >> SHIFT;
        if b <= self.at {
            self.insert_cur(t, seq, ev);
        } else if b < self.at + SLOTS {
            self.insert_ring(b, (t, seq, ev));
        } else {
            self.far.push(Reverse((t, seq, ev)));
        }
    }

    /// With the current bucket run out: moves to the next bucket (or, with nothing in the
    /// calendar's window, towards the first far event's bucket, but no further than bucket
    /// `limit`), sorts its events into `cur` and brings the far events it now reaches into
    /// the window. `at` so never passes the bucket of the next event run, from here or from
    /// the FIFOs, and a push for the current bucket is rare.
    fn advance(&mut self, limit: u64) {
        if self.in_ring == 0 {
            let Some(&Reverse((t, _, _))) = self.far.peek() else { return };
            self.at = (t >> SHIFT).min(limit).max(self.at + 1);
        } else {
            self.at += 1;
        }
        // The bucket now current, sorted; its nodes go back to the free list.
        let slot = (self.at % SLOTS) as usize;
        let mut i = std::mem::replace(&mut self.heads[slot], NIL);
        while i != NIL {
            let node = &mut self.nodes[i as usize];
            self.cur.push(node.event);
            let next = std::mem::replace(&mut node.next, self.free);
            self.free = i;
            self.in_ring -= 1;
            i = next;
        }
        self.cur.sort_unstable_by_key(|&(t, seq, _)| std::cmp::Reverse((t, seq)));
        // Far events that the calendar now reaches move into it.
        while let Some(&Reverse((t, seq, ev))) = self.far.peek() {
            if (t >> SHIFT) >= self.at + SLOTS {
                break;
            }
            self.far.pop();
            let b = t >> SHIFT;
            if b <= self.at {
                self.insert_cur(t, seq, ev);
            } else {
                self.insert_ring(b, (t, seq, ev));
            }
        }
    }
}

/// Most to least of the packet level's events: the end of a packet's serialization, its
/// arrival a link's latency later, the pull pacer's next tick. Each comes a fixed delay after
/// the event that queues it (for a given port and packet size), and events due the same
/// delay after now are queued in time order, since now never goes back. So each delay gets
/// its own first-in first-out queue, already sorted by (time, sequence), and a scan of the
/// queues' first events picks the earliest: a push appends, a pop takes a queue's front, and
/// nothing is sorted or chased through memory. Other events (timeouts, pacing, message
/// starts) and delays beyond the first [`FIXED_QUEUES`] go to the [`Calendar`]. Events come
/// out in (time, sequence) order, as from one binary heap.
struct Queue {
    cal: Calendar,
    /// No calendar event comes before this (time << 64 | sequence): the current bucket's
    /// last when it has one, the first far event when that is all there is (both exact),
    /// else the next bucket's start; `u128::MAX` when the calendar is empty. Kept up to date on every calendar change, so a pop from a FIFO
    /// compares one number.
    cal_key: u128,
    /// Delay (ps) → its FIFO, open addressing; `u64::MAX` marks a free entry.
    delays: Vec<(u64, u32)>,
    fifos: Vec<VecDeque<(u64, u64, Ev)>>,
    /// Per FIFO: its first event's (time << 64 | sequence), or `u128::MAX` when it is empty.
    fronts: Vec<u128>,
}

/// FIFOs at most. The delays a run uses are a few per link type and packet size, and a pop
/// scans every FIFO's front, so a fabric with many distinct link latencies sends the delays
/// beyond these to the calendar rather than lengthening the scan.
const FIXED_QUEUES: usize = 16;
const DELAY_TABLE: usize = 256;

fn key(t: u64, seq: u64) -> u128 {
    u128::from(t) << 64 | u128::from(seq)
}

impl Queue {
    fn new() -> Queue {
        Queue {
            cal: Calendar::new(),
            cal_key: u128::MAX,
            delays: vec![(u64::MAX, 0); DELAY_TABLE],
            fifos: Vec::new(),
            fronts: Vec::new(),
        }
    }

    fn push(&mut self, t: u64, seq: u64, ev: Ev) {
        self.cal.push(t, seq, ev);
        self.refresh();
    }

    fn refresh(&mut self) {
        self.cal_key = match self.cal.cur.last() {
            Some(&(t, seq, _)) => key(t, seq),
            // Only far events: the earliest of them, exactly.
            None if self.cal.in_ring == 0 => self.cal.far.peek().map_or(u128::MAX, |&Reverse((t, seq, _))| key(t, seq)),
            None => key((self.cal.at + 1) << SHIFT, 0),
        };
    }

    /// Queues an event due `delay` after now (`t` = now + `delay`).
    fn push_fixed(&mut self, delay: u64, t: u64, seq: u64, ev: Ev) {
        let mut h = (delay.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize % DELAY_TABLE;
        let q = loop {
            match self.delays[h] {
                (d, q) if d == delay => break q as usize,
                (u64::MAX, _) if self.fifos.len() < FIXED_QUEUES => {
                    let q = self.fifos.len();
                    self.fifos.push(VecDeque::new());
                    self.fronts.push(u128::MAX);
                    self.delays[h] = (delay, q as u32);
                    break q;
                }
                (u64::MAX, _) => return self.push(t, seq, ev),
                _ => h = (h + 1) % DELAY_TABLE,
            }
        };
        let fifo = &mut self.fifos[q];
        if fifo.is_empty() {
            self.fronts[q] = key(t, seq);
        }
        fifo.push_back((t, seq, ev));
    }

    fn pop(&mut self) -> Option<(u64, Ev)> {
        let (mut best, mut q) = (u128::MAX, usize::MAX);
        for (i, &f) in self.fronts.iter().enumerate() {
            if f < best {
                best = f;
                q = i;
            }
        }
        while best >= self.cal_key && self.cal_key != u128::MAX {
            if !self.cal.cur.is_empty() {
                let got = self.cal.cur.pop().map(|(t, _, ev)| (t, ev));
                self.refresh();
                return got;
            }
            // The current bucket has run out and the FIFOs' earliest is not before the next
            // bucket: move on, no further than that earliest's bucket.
            let limit = if q == usize::MAX { u64::MAX } else { ((best >> 64) as u64) >> SHIFT };
            self.cal.advance(limit);
            self.refresh();
        }
        if q == usize::MAX {
            return None;
        }
        let fifo = &mut self.fifos[q];
        let (t, _, ev) = fifo.pop_front()?;
        self.fronts[q] = fifo.front().map_or(u128::MAX, |&(t, seq, _)| key(t, seq));
        Some((t, ev))
    }
}

fn ser_ps(bytes: u64, rate: u64) -> u64 {
    if rate == 0 {
        return u64::MAX / 4;
    }
    u64::try_from((u128::from(bytes) * 8 * 1_000_000_000_000).div_ceil(u128::from(rate))).unwrap_or(u64::MAX / 4)
}

fn ps_to_ns(ps: u64) -> u64 {
    ps.div_ceil(PS)
}

/// Memory a packet run needs, estimated before it starts: flows and their path sets, ports,
/// and the packets the buffers, links and windows can hold at once.
pub fn estimate_memory(prog: &Program, topo: &dyn Topology, cfg: &ExecConfig, p: &PacketParams) -> u64 {
    let net = topo.network();
    let flows = prog.msgs.iter().filter(|m| !m.is_wait()).count() as u64 * u64::from(cfg.qps.max(1));
    let paths = u64::from(p.paths.max(1)).min(64);
    let packet = cfg.wire.mtu + cfg.wire.header;
    let mut in_flight = 0u64;
    for l in net.links() {
        let per_port = match p.transport {
            Transport::RocePfc | Transport::Infiniband => {
                p.xoff.saturating_add(p.headroom.unwrap_or(0)).saturating_add(4 * packet)
            }
            Transport::RoceLossy => p.queue,
            Transport::Ndp => p.trim + packet,
        };
        in_flight += per_port / packet.max(1) + l.capacity.bytes_in(l.latency).0 / packet.max(1) + 2;
    }
    let window = if p.transport == Transport::Ndp { flows * u64::from(p.window) } else { 0 };
    // Per flow ~400 B of state and bitmaps; per path 8 hops of 4 B plus a vector header;
    // per packet 24 B in a port queue plus a 40 B event; per port ~600 B plus its series.
    flows * 400 + flows.min(1 << 20) * paths * 56 + (in_flight + window) * 64 + net.len() as u64 * 2048
}

impl<'p> Engine<'p> {
    fn push(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(t, self.seq, ev);
    }

    /// Queues an event due a fixed delay after now that recurs (a hop's serialization or
    /// latency, a pause or credit's return, the pull pacer): see [`Queue`].
    fn push_fixed(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push_fixed(t - self.now, t, self.seq, ev);
    }

    fn draw(&mut self) -> u64 {
        self.draws += 1;
        mix(self.seed ^ mix(self.draws))
    }

    fn path_of(&self, f: u32, path: u16) -> &[u32] {
        let (start, _) = self.sets[self.flows[f as usize].set as usize];
        &self.paths[(start + u32::from(path)) as usize]
    }

    /// Where path `path` of flow `f` starts in the arena.
    fn off_of(&self, f: u32, path: u16) -> u32 {
        let (start, _) = self.sets[self.flows[f as usize].set as usize];
        self.offsets[(start + u32::from(path)) as usize]
    }

    /// The arc a packet is on at `hop` of its route.
    fn arc_at(&self, pkt: &Pkt, hop: u8) -> u32 {
        let o = pkt.off as usize;
        if pkt.kind.reverse() {
            self.arena[o + (pkt.len - 1 - hop) as usize] ^ 1
        } else {
            self.arena[o + hop as usize]
        }
    }

    fn note_queue(&mut self, a: u32) {
        let bucket = self.sample;
        let port = &mut self.ports[a as usize];
        port.max_queue = port.max_queue.max(port.qbytes);
        if bucket != port.sb {
            port.flush();
            port.sb = bucket;
        }
        port.sq = port.sq.max(port.qbytes);
    }

    fn note_tx(&mut self, a: u32, bytes: u64) {
        let bucket = self.sample;
        let port = &mut self.ports[a as usize];
        if bucket != port.sb {
            port.flush();
            port.sb = bucket;
        }
        port.stx += bytes;
    }

    /// Starts the next packet on port `a` if it is idle and has one it may send.
    fn try_start(&mut self, a: u32) {
        let ai = a as usize;
        if self.ports[ai].busy {
            return;
        }
        let pkt = if let Some(pkt) = self.ports[ai].ctrl.pop_front() {
            pkt
        } else if self.ports[ai].paused {
            return;
        } else if let Some(&pkt) = self.ports[ai].data.front() {
            let wire = u64::from(pkt.wire);
            let port = &mut self.ports[ai];
            if port.credit_limited {
                if port.credits < wire {
                    return;
                }
                port.credits -= wire;
            }
            port.data.pop_front();
            port.qbytes -= wire;
            self.note_queue(a);
            pkt
        } else {
            match self.generate(a) {
                Some(pkt) => pkt,
                None => return,
            }
        };
        let wire = u64::from(pkt.wire);
        let port = &mut self.ports[ai];
        port.busy = true;
        port.cur = pkt;
        let done = self.now + port.ser(wire);
        self.push_fixed(done, Ev::TxDone(a));
    }

    /// A data packet from one of the flows sourcing at NIC port `a`, round-robin.
    fn generate(&mut self, a: u32) -> Option<Pkt> {
        let ai = a as usize;
        let n = self.ports[ai].ready.len();
        for _ in 0..n {
            let f = self.ports[ai].ready.pop_front()?;
            self.flows[f as usize].queued = false;
            if !self.can_send(f) {
                self.pace(f);
                continue;
            }
            let (seq, retx) = self.next_seq(f);
            let fl = &self.flows[f as usize];
            let payload = if seq + 1 == fl.pkts { fl.payload - u64::from(seq) * self.mtu } else { self.mtu };
            let wire = payload + self.header;
            let port = &mut self.ports[ai];
            if port.credit_limited {
                if port.credits < wire {
                    // Undo: no room downstream; this flow waits for credits.
                    self.unsend(f, seq, retx);
                    self.ports[ai].ready.push_front(f);
                    self.flows[f as usize].queued = true;
                    return None;
                }
                port.credits -= wire;
            }
            let path = self.pick_path(f);
            let len = self.path_of(f, path).len() as u8;
            let off = self.off_of(f, path);
            let pkt =
                Pkt { flow: f, seq, wire: wire as u16, hop: 0, len, off, arc: a, path, kind: Kind::Data, flags: 0 };
            self.stats.data_packets += 1;
            if retx {
                self.stats.retransmitted_packets += 1;
            }
            self.after_send(f, wire);
            if self.can_send(f) {
                self.ports[ai].ready.push_back(f);
                self.flows[f as usize].queued = true;
            } else {
                self.pace(f);
            }
            return Some(pkt);
        }
        None
    }

    fn can_send(&self, f: u32) -> bool {
        let fl = &self.flows[f as usize];
        if fl.end.is_some() {
            return false;
        }
        let has = !fl.rtx.is_empty() || fl.snd_nxt < fl.pkts;
        if self.ndp {
            fl.allowance > 0 && has
        } else {
            // The window holds back new packets; a retransmission replaces one it counts.
            has && fl.next_tx <= self.now && (fl.win == 0 || !fl.rtx.is_empty() || self.in_flight(fl) < fl.win)
        }
    }

    /// Packets sent and not yet acknowledged (new ones: a retransmission resends one of them).
    fn in_flight(&self, fl: &Flow) -> u32 {
        fl.snd_nxt.saturating_sub(if self.sel { fl.acked_n } else { fl.snd_una })
    }

    /// Schedules a wake-up for a rate-paced flow.
    fn pace(&mut self, f: u32) {
        let fl = &self.flows[f as usize];
        if !self.ndp
            && fl.end.is_none()
            && (fl.snd_nxt < fl.pkts || !fl.rtx.is_empty())
            && fl.next_tx > self.now
            && !fl.wake_armed
        {
            let t = fl.next_tx;
            self.flows[f as usize].wake_armed = true;
            self.push(t, Ev::Wake(f));
        }
    }

    /// The next sequence number to send and whether it is a retransmission.
    fn next_seq(&mut self, f: u32) -> (u32, bool) {
        let fl = &mut self.flows[f as usize];
        if !self.sel {
            let s = fl.snd_nxt;
            fl.snd_nxt += 1;
            (s, s < fl.high)
        } else {
            if self.ndp {
                fl.allowance -= 1;
            }
            while let Some(s) = fl.rtx.pop_front() {
                if !bit(&fl.acked, s) {
                    return (s, true);
                }
            }
            let s = fl.snd_nxt;
            fl.snd_nxt += 1;
            (s, false)
        }
    }

    fn unsend(&mut self, f: u32, seq: u32, retx: bool) {
        let fl = &mut self.flows[f as usize];
        if !self.sel {
            fl.snd_nxt = seq;
        } else {
            if self.ndp {
                fl.allowance += 1;
            }
            if retx {
                fl.rtx.push_front(seq);
            } else {
                fl.snd_nxt = seq;
            }
        }
    }

    fn after_send(&mut self, f: u32, wire: u64) {
        let now = self.now;
        let rto = self.p.rto.0 * PS;
        let fl = &mut self.flows[f as usize];
        fl.high = fl.high.max(fl.snd_nxt);
        if let Some(d) = self.p.dcqcn {
            if fl.rate > 0 {
                fl.next_tx = now.max(fl.next_tx) + ser_ps(wire, fl.rate);
                fl.bytes_since += wire;
                if fl.rate < fl.line && fl.bytes_since >= d.byte_counter {
                    fl.bytes_since = 0;
                    fl.byte_steps += 1;
                    dcqcn_increase(fl, &d);
                }
            }
        }
        if !self.ndp && !fl.rto_armed {
            fl.rto_armed = true;
            fl.last_progress = now;
            self.push(now + rto, Ev::Rto(f));
        }
    }

    fn pick_path(&mut self, f: u32) -> u16 {
        let (_, count) = self.sets[self.flows[f as usize].set as usize];
        match self.p.balance {
            Balance::Ecmp | Balance::Adaptive => self.flows[f as usize].pick,
            Balance::Spray => (self.draw() % u64::from(count.max(1))) as u16,
        }
    }

    fn make_ready(&mut self, f: u32) {
        let fl = &self.flows[f as usize];
        if fl.queued || fl.end.is_some() {
            return;
        }
        if !self.can_send(f) {
            self.pace(f);
            return;
        }
        let nic = fl.nic;
        self.flows[f as usize].queued = true;
        self.ports[nic as usize].ready.push_back(f);
        self.try_start(nic);
    }

    fn on_tx_done(&mut self, a: u32) {
        let ai = a as usize;
        let mut pkt = self.ports[ai].cur;
        self.ports[ai].busy = false;
        let wire = u64::from(pkt.wire);
        {
            self.last_tx = self.now;
            let port = &mut self.ports[ai];
            port.tx_bytes += wire;
            port.tx_packets += 1;
        }
        self.note_tx(a, wire);
        if pkt.flags & HELD != 0 {
            let ingress = self.arc_at(&pkt, pkt.hop - 1);
            self.release(ingress, wire);
            pkt.flags &= !HELD;
        }
        let port = &self.ports[ai];
        // Only a lossless switch counts data at its ingress: anything else crosses the link
        // and the switch in one event.
        let lat = if port.sw_ps > 0 && pkt.kind != Kind::Data {
            pkt.flags |= CROSSED;
            port.lat_ps + port.sw_ps
        } else {
            port.lat_ps
        };
        self.push_fixed(self.now + lat, Ev::Arrive(pkt));
        self.try_start(a);
    }

    /// The head switch of `ingress` no longer holds `wire` bytes that came in on it.
    fn release(&mut self, ingress: u32, wire: u64) {
        let ii = ingress as usize;
        let head = self.ports[ii].head;
        if head != NONE {
            let b = &mut self.bufs[head as usize];
            b.0 = b.0.saturating_sub(wire);
        }
        let port = &mut self.ports[ii];
        port.in_bytes = port.in_bytes.saturating_sub(wire);
        match self.p.transport {
            Transport::RocePfc if port.xoff && port.in_bytes <= self.p.xon => {
                port.xoff = false;
                // The same delay as the pause's (a resume that overtook its pause left the
                // port paused for good).
                let t = self.now + port.pause_delay();
                self.push_fixed(t, Ev::Pause(ingress, false));
            }
            Transport::Infiniband => {
                let t = self.now + port.lat_ps;
                self.push_fixed(t, Ev::Credit(ingress, wire as u32));
            }
            _ => {}
        }
    }

    /// A packet has arrived at the head of its arc. Under PFC or credits a network switch
    /// with a latency (`sw_ps`) counts a data packet at the ingress now (it holds the packet
    /// while it crosses) and forwards it after the latency; a control packet arrives with
    /// the latency already crossed ([`CROSSED`]).
    fn on_arrive(&mut self, pkt: Pkt) {
        let len = pkt.len;
        let a = pkt.arc;
        if pkt.hop + 1 >= len {
            self.deliver(pkt);
            return;
        }
        let mut pkt = pkt;
        if pkt.flags & CROSSED != 0 {
            pkt.flags &= !CROSSED;
        } else if self.ports[a as usize].sw_ps > 0 {
            self.enter(pkt);
            return;
        }

        pkt.hop += 1;
        if self.p.balance == Balance::Adaptive && !pkt.kind.reverse() {
            pkt.path = self.adapt(&pkt, a);
            pkt.off = self.off_of(pkt.flow, pkt.path);
        }
        let out = self.arc_at(&pkt, pkt.hop);
        pkt.arc = out;
        let oi = out as usize;
        if pkt.kind != Kind::Data || self.ports[a as usize].head == NONE {
            if pkt.kind == Kind::Data {
                // Not a network switch (an NVLink switch): no buffer limit.
                self.ports[oi].data.push_back(pkt);
                self.ports[oi].qbytes += u64::from(pkt.wire);
                self.note_queue(out);
            } else {
                self.ports[oi].ctrl.push_back(pkt);
            }
            self.try_start(out);
            return;
        }
        let wire = u64::from(pkt.wire);
        let head = self.ports[a as usize].head;
        match self.p.transport {
            Transport::RocePfc | Transport::Infiniband => {
                // Counted at arrival when the switch has a latency.
                if pkt.flags & HELD == 0 && !self.admit(&mut pkt, a) {
                    return;
                }
            }
            Transport::RoceLossy => {
                let (used, cap) = self.bufs[head as usize];
                if self.ports[oi].qbytes + wire > self.p.queue || used + wire > cap {
                    self.ports[oi].cold.st.drops += 1;
                    self.stats.drops += 1;
                    return;
                }
                self.bufs[head as usize].0 += wire;
                pkt.flags |= HELD;
                self.ports[a as usize].in_bytes += wire;
            }
            Transport::Ndp => {
                if self.ports[oi].qbytes + wire > self.p.trim {
                    pkt.kind = Kind::Header;
                    pkt.wire = self.p.control_bytes as u16;
                    self.ports[oi].cold.st.trims += 1;
                    self.stats.trims += 1;
                    self.ports[oi].ctrl.push_back(pkt);
                    self.try_start(out);
                    return;
                }
            }
        }
        if let Some(d) = self.p.dcqcn {
            let q = self.ports[oi].qbytes;
            let mark = if q <= d.kmin {
                false
            } else if q >= d.kmax {
                true
            } else {
                let prob = d.pmax * (q - d.kmin) as f64 / (d.kmax - d.kmin).max(1) as f64;
                ((self.draw() >> 11) as f64 / (1u64 << 53) as f64) < prob
            };
            if mark {
                pkt.flags |= ECN;
                self.ports[oi].cold.st.ecn_marks += 1;
                self.stats.ecn_marks += 1;
            }
        }
        let port = &mut self.ports[oi];
        port.data.push_back(pkt);
        port.qbytes += wire;
        self.note_queue(out);
        self.try_start(out);
    }

    /// A data packet enters a lossless network switch with a latency: the ingress counts it
    /// now, and it goes on to an output port after the latency. Off the hot path (the htsim
    /// comparisons and every switch without a latency never come here).
    #[inline(never)]
    fn enter(&mut self, mut pkt: Pkt) {
        let a = pkt.arc;
        if self.admit(&mut pkt, a) {
            pkt.flags |= CROSSED;
            let t = self.now + self.ports[a as usize].sw_ps;
            self.push_fixed(t, Ev::Arrive(pkt));
        }
    }

    /// Counts a lossless transport's data packet at the ingress of the switch it arrived at
    /// (the head of arc `ingress`), pausing the ingress above `xoff`; false when it is dropped
    /// (PFC with the ingress's headroom or the shared buffer full).
    #[inline]
    fn admit(&mut self, pkt: &mut Pkt, ingress: u32) -> bool {
        let a = ingress as usize;
        let wire = u64::from(pkt.wire);
        let head = self.ports[a].head;
        let (used, cap) = self.bufs[head as usize];
        let ingress = &self.ports[a];
        let limit = self.p.xoff.saturating_add(ingress.headroom);
        let pfc = self.p.transport == Transport::RocePfc && ingress.lossless;
        if pfc && (ingress.in_bytes + wire > limit || used + wire > cap) {
            self.ports[a].cold.st.drops += 1;
            self.stats.drops += 1;
            return false;
        }
        self.bufs[head as usize].0 += wire;
        pkt.flags |= HELD;
        let port = &mut self.ports[a];
        port.in_bytes += wire;
        if pfc && !port.xoff && port.in_bytes > self.p.xoff {
            port.xoff = true;
            port.cold.st.pauses_sent += 1;
            self.stats.pauses += 1;
            let t = self.now + port.pause_delay();
            self.push_fixed(t, Ev::Pause(a as u32, true));
        }
        true
    }

    /// Adaptive routing at the head of `a`: among the flow's paths that reach this switch by
    /// the same arc, the one whose next output queue is shortest (ties rotate by a hash).
    fn adapt(&mut self, pkt: &Pkt, a: u32) -> u16 {
        let hop = pkt.hop as usize;
        let (start, count) = self.sets[self.flows[pkt.flow as usize].set as usize];
        let mut best = pkt.path;
        let mut best_q = u64::MAX;
        let rot = (mix(u64::from(pkt.seq) ^ (u64::from(pkt.flow) << 32) ^ self.seed) % u64::from(count.max(1))) as u16;
        for k in 0..count {
            let q = (k + rot) % count;
            let path = &self.paths[(start + u32::from(q)) as usize];
            if path.len() <= hop || path[hop - 1] != a {
                continue;
            }
            let depth = self.ports[path[hop] as usize].qbytes + u64::from(self.ports[path[hop] as usize].busy);
            if depth < best_q {
                best_q = depth;
                best = q;
            }
        }
        best
    }

    fn send_control(&mut self, f: u32, kind: Kind, seq: u32, path: u16, flags: u8) {
        let len = self.path_of(f, path).len() as u8;
        let off = self.off_of(f, path);
        let mut pkt =
            Pkt { flow: f, seq, wire: self.p.control_bytes as u16, hop: 0, len, off, arc: NONE, path, kind, flags };
        let first = self.arc_at(&pkt, 0);
        pkt.arc = first;
        self.stats.control_packets += 1;
        self.ports[first as usize].ctrl.push_back(pkt);
        self.try_start(first);
    }

    fn deliver(&mut self, pkt: Pkt) {
        let f = pkt.flow;
        let fi = f as usize;
        if self.flows[fi].end.is_some() && pkt.kind.reverse() {
            return;
        }
        if pkt.flags & PULL != 0 {
            self.flows[fi].allowance += 1;
        }
        match pkt.kind {
            Kind::Data | Kind::Header if self.sel => {
                let fl = &mut self.flows[fi];
                let reply = if pkt.kind == Kind::Data {
                    if !bit(&fl.got, pkt.seq) {
                        set_bit(&mut fl.got, pkt.seq);
                        fl.got_n += 1;
                        if fl.got_n == fl.pkts {
                            fl.data_end = Some(self.now);
                        }
                    }
                    Kind::Ack
                } else {
                    Kind::Nack
                };
                let flags = if self.ndp && fl.got_n < fl.pkts { self.pull(f) } else { 0 };
                self.send_control(f, reply, pkt.seq, pkt.path, flags);
                if pkt.flags & ECN != 0 {
                    self.notify(f, pkt.path);
                }
                self.check_done(f);
            }
            Kind::Data => {
                let fl = &mut self.flows[fi];
                if pkt.seq == fl.rcv_nxt {
                    fl.rcv_nxt += 1;
                    fl.nacked = false;
                    if fl.rcv_nxt == fl.pkts {
                        fl.data_end = Some(self.now);
                    }
                    let n = fl.rcv_nxt;
                    self.send_control(f, Kind::Ack, n, pkt.path, 0);
                } else if pkt.seq > fl.rcv_nxt {
                    if !fl.nacked {
                        fl.nacked = true;
                        let n = fl.rcv_nxt;
                        self.send_control(f, Kind::Nack, n, pkt.path, 0);
                    }
                } else {
                    let n = fl.rcv_nxt;
                    self.send_control(f, Kind::Ack, n, pkt.path, 0);
                }
                if pkt.flags & ECN != 0 {
                    self.notify(f, pkt.path);
                }
                self.check_done(f);
            }
            Kind::Header => {}
            Kind::Ack => {
                let now = self.now;
                let fl = &mut self.flows[fi];
                if !self.sel {
                    if pkt.seq > fl.snd_una {
                        fl.snd_una = pkt.seq;
                        fl.last_progress = now;
                    }
                } else if !bit(&fl.acked, pkt.seq) {
                    set_bit(&mut fl.acked, pkt.seq);
                    fl.acked_n += 1;
                    fl.last_progress = now;
                }
                let windowed = fl.win != 0;
                self.check_done(f);
                // A pull, or room in NCCL's window, lets the flow send again.
                if pkt.flags & PULL != 0 || windowed {
                    self.make_ready(f);
                }
            }
            Kind::Nack => {
                let fl = &mut self.flows[fi];
                if !self.sel {
                    if pkt.seq >= fl.snd_una && pkt.seq < fl.snd_nxt {
                        fl.snd_una = pkt.seq;
                        fl.snd_nxt = pkt.seq;
                    }
                } else if !bit(&fl.acked, pkt.seq) {
                    fl.rtx.push_back(pkt.seq);
                }
                self.make_ready(f);
            }
            Kind::Pull => self.make_ready(f),
            Kind::Cnp => {
                if let Some(d) = self.p.dcqcn {
                    let now = self.now;
                    let fl = &mut self.flows[fi];
                    fl.target = fl.rate;
                    fl.rate = ((fl.rate as f64 * (1.0 - fl.alpha / 2.0)) as u64).max(d.min_rate);
                    fl.alpha = (1.0 - d.g) * fl.alpha + d.g;
                    fl.alpha_due = now + d.alpha_period.0 * PS;
                    fl.timer_due = now + d.timer.0 * PS;
                    fl.timer_steps = 0;
                    fl.byte_steps = 0;
                    fl.bytes_since = 0;
                    if !fl.dcqcn_armed {
                        fl.dcqcn_armed = true;
                        let t = fl.alpha_due.min(fl.timer_due);
                        self.push(t, Ev::Dcqcn(f));
                    }
                }
            }
        }
    }

    /// The DCQCN notification point: a CNP for an ECN-marked packet, at most one per flow
    /// per interval.
    fn notify(&mut self, f: u32, path: u16) {
        let Some(d) = self.p.dcqcn else { return };
        let now = self.now;
        let fl = &mut self.flows[f as usize];
        if fl.last_cnp_sent.is_none_or(|t| now >= t + d.cnp_interval.0 * PS) {
            fl.last_cnp_sent = Some(now);
            self.stats.cnps += 1;
            self.send_control(f, Kind::Cnp, 0, path, 0);
        }
    }

    fn last_arc(&self, f: u32) -> u32 {
        let path = self.path_of(f, self.flows[f as usize].pick);
        path[path.len() - 1]
    }

    fn check_done(&mut self, f: u32) {
        let fi = f as usize;
        let ack = self.ack_completion;
        let fl = &self.flows[fi];
        if fl.end.is_some() {
            return;
        }
        let done = if ack {
            if !self.sel {
                fl.snd_una >= fl.pkts
            } else {
                fl.acked_n >= fl.pkts
            }
        } else {
            fl.data_end.is_some()
        };
        if !done {
            return;
        }
        let end = if ack { self.now } else { fl.data_end.unwrap_or(self.now) };
        self.flows[fi].end = Some(end);
        let m = self.flows[fi].msg as usize;
        let ms = &mut self.msgs[m];
        ms.left -= 1;
        let e = ms.end.map_or(end, |e| e.max(end));
        ms.end = Some(e);
        if ms.left == 0 {
            self.msg_done(m as u32, e);
        }
    }

    fn msg_done(&mut self, m: u32, end: u64) {
        let deps = std::mem::take(&mut self.dependents[m as usize]);
        for &d in &deps {
            let gap = self.gaps[d as usize];
            let ms = &mut self.msgs[d as usize];
            ms.ready_at = ms.ready_at.max(end.saturating_add(gap));
            ms.deps_left -= 1;
            if ms.deps_left == 0 {
                let t = ms.ready_at.max(self.now);
                self.push(t, Ev::Ready(d));
            }
        }
        self.dependents[m as usize] = deps;
    }
}

fn bit(v: &[u64], i: u32) -> bool {
    v.get((i / 64) as usize).is_some_and(|w| w >> (i % 64) & 1 == 1)
}

fn set_bit(v: &mut [u64], i: u32) {
    if let Some(w) = v.get_mut((i / 64) as usize) {
        *w |= 1 << (i % 64);
    }
}

/// One DCQCN rate-increase event: fast recovery while neither the timer nor the byte
/// counter has fired more than `fast_recovery` times since the last cut, hyper increase once
/// both have, additive increase between; the rate then goes halfway to the target.
fn dcqcn_increase(fl: &mut Flow, d: &Dcqcn) {
    let (t, b) = (fl.timer_steps, fl.byte_steps);
    if t.max(b) <= d.fast_recovery {
        // Fast recovery: halfway back to the target.
    } else if t.min(b) > d.fast_recovery {
        let i = u64::from(t.min(b) - d.fast_recovery);
        fl.target = (fl.target + i * d.rhai).min(fl.line);
    } else {
        fl.target = (fl.target + d.rai).min(fl.line);
    }
    fl.rate = ((fl.rate + fl.target) / 2).min(fl.line);
}

impl Engine<'_> {
    fn on_pause(&mut self, a: u32, on: bool) {
        let now = self.now;
        let port = &mut self.ports[a as usize];
        if on == port.paused {
            return;
        }
        port.paused = on;
        if on {
            port.paused_at = now;
        } else {
            port.paused_ps += now - port.paused_at;
            let sample = self.p.sample.0.max(1) * PS;
            port.cold.add_pause(port.paused_at, now, sample);
            self.try_start(a);
        }
    }

    /// The receiver of flow `f` owes its sender a pull (NDP, as htsim's pull pacer): the
    /// acknowledgement being sent carries it when the receiver's pacer has nothing queued and
    /// a packet time of its link has passed since the last pull (returns [`PULL`] for the
    /// reply's flags); otherwise the pull is queued for the pacer, which sends one pull per
    /// packet time, round-robin over its senders.
    fn pull(&mut self, f: u32) -> u8 {
        let last = self.last_arc(f) as usize;
        let now = self.now;
        let port = &mut self.ports[last];
        if !port.pull_armed && now >= port.pull_at {
            port.pull_at = now + port.ser(self.mtu + self.header);
            return PULL;
        }
        let fl = &mut self.flows[f as usize];
        fl.pulls_owed += 1;
        if fl.pulls_owed == 1 {
            port.pulls.push_back(f);
        }
        if !port.pull_armed {
            port.pull_armed = true;
            let t = port.pull_at;
            self.push(t, Ev::PullTick(last as u32));
        }
        0
    }

    fn on_pull_tick(&mut self, a: u32) {
        let ai = a as usize;
        while let Some(f) = self.ports[ai].pulls.pop_front() {
            let fl = &mut self.flows[f as usize];
            fl.pulls_owed -= 1;
            let (live, pick) = (fl.end.is_none() && fl.got_n < fl.pkts, fl.pick);
            if fl.pulls_owed > 0 {
                self.ports[ai].pulls.push_back(f);
            }
            if live {
                self.send_control(f, Kind::Pull, 0, pick, PULL);
                // One pull per full data packet at the receiver's link rate.
                let port = &mut self.ports[ai];
                port.pull_at = self.now + port.ser(self.mtu + self.header);
                if port.pulls.is_empty() {
                    break;
                }
                let t = port.pull_at;
                self.push_fixed(t, Ev::PullTick(a));
                return;
            }
        }
        self.ports[ai].pull_armed = false;
    }

    fn on_rto(&mut self, f: u32) {
        let now = self.now;
        let rto = self.p.rto.0 * PS;
        let fl = &mut self.flows[f as usize];
        fl.rto_armed = false;
        let outstanding = if self.sel { fl.acked_n < fl.high } else { fl.snd_una < fl.high };
        if fl.end.is_some() || !outstanding {
            return;
        }
        if now < fl.last_progress + rto {
            fl.rto_armed = true;
            let t = fl.last_progress + rto;
            self.push(t, Ev::Rto(f));
            return;
        }
        // Nothing sent anywhere for a timeout while a port holds back what it has (paused,
        // or out of credits): no event but timeouts is left, and they cannot free it.
        if now >= self.last_tx + rto
            && self.ports.iter().any(|p| p.paused || (p.credit_limited && (!p.data.is_empty() || !p.ready.is_empty())))
        {
            self.stats.deadlock = true;
            return;
        }
        let fl = &mut self.flows[f as usize];
        // Nothing acknowledged for a timeout: send again from the first unacknowledged
        // (go-back-N), or every packet not acknowledged (selective).
        if self.sel {
            // Every packet not acknowledged, once (what was queued is in it).
            fl.rtx.clear();
            for s in 0..fl.high {
                if !bit(&fl.acked, s) {
                    fl.rtx.push_back(s);
                }
            }
        } else {
            fl.snd_nxt = fl.snd_una;
        }
        fl.last_progress = now;
        fl.rto_armed = true;
        self.push(now + rto, Ev::Rto(f));
        self.make_ready(f);
    }

    fn on_dcqcn(&mut self, f: u32) {
        let Some(d) = self.p.dcqcn else { return };
        let now = self.now;
        let fl = &mut self.flows[f as usize];
        fl.dcqcn_armed = false;
        if fl.end.is_some() {
            return;
        }
        if now >= fl.alpha_due {
            fl.alpha *= 1.0 - d.g;
            fl.alpha_due = now + d.alpha_period.0 * PS;
        }
        if now >= fl.timer_due {
            fl.timer_steps += 1;
            dcqcn_increase(fl, &d);
            fl.timer_due = now + d.timer.0 * PS;
        }
        if fl.rate < fl.line || fl.alpha > 1e-6 {
            fl.dcqcn_armed = true;
            // Never at this instant again (the catalog refuses timers below 1 us).
            let t = fl.alpha_due.min(fl.timer_due).max(now + 1);
            self.push(t, Ev::Dcqcn(f));
        }
        self.make_ready(f);
    }

    fn on_ready(&mut self, m: u32) {
        let now = self.now;
        let ms = &mut self.msgs[m as usize];
        ms.start = Some(now);
        let (a, b) = ms.flows;
        if a == b {
            ms.end = Some(now);
            self.msg_done(m, now);
            return;
        }
        for f in a..b {
            let fl = &mut self.flows[f as usize];
            fl.start = now;
            fl.last_progress = now;
            fl.allowance = fl.first_window.max(1);
            fl.next_tx = now;
            self.make_ready(f);
        }
    }
}

/// Packets of `wire` bytes in flight on `path` at its slowest link's rate over a round trip:
/// each link's latency both ways and a packet's serialization at each hop (store and forward,
/// the longer of the two forwardings; the pull or ACK back is a header).
fn bdp_packets(ports: &[Port], path: &[u32], wire: u64) -> u32 {
    let slowest = path.iter().map(|&a| ports[a as usize].rate).min().unwrap_or(0);
    let rtt_ps: u64 = path
        .iter()
        .map(|&a| {
            let p = &ports[a as usize];
            2 * (p.lat_ps + p.sw_ps) + ser_ps(wire, p.rate)
        })
        .sum();
    let bits = u128::from(slowest) * u128::from(rtt_ps) / 1_000_000_000_000;
    u32::try_from(bits.div_ceil(u128::from(wire.max(1)) * 8)).unwrap_or(u32::MAX)
}

/// The links a message crosses by `choice` (as the flow engine routes it).
fn msg_path(topo: &mut dyn Topology, m: &Msg, choice: Choice) -> Option<Vec<Arc>> {
    if m.leg != Leg::Path {
        let rank = if matches!(m.leg, Leg::NvlinkUp | Leg::NicUp) { m.src } else { m.dst };
        return topo.attach(rank, m.leg, m.channel).map(|a| vec![a]);
    }
    let leg = |topo: &mut dyn Topology, a: u32, b: u32| match m.plane {
        None => topo.path(a, b, choice, None),
        Some(p) => topo.path_on_plane(a, b, u32::from(p), choice, None),
    };
    match m.via {
        None => leg(topo, m.src, m.dst),
        Some(v) => {
            let mut p = leg(topo, m.src, v)?;
            p.extend(leg(topo, v, m.dst)?);
            Some(p)
        }
    }
}

/// Runs `prog` on `topo` packet by packet. `progress(done, total)` is called every 65,536
/// events with messages completed and in all.
pub fn execute_packets(
    prog: &Program,
    topo: &mut dyn Topology,
    cfg: &ExecConfig,
    p: &PacketParams,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Execution, PacketStats), SimError> {
    let net = topo.network();
    let packet = cfg.wire.mtu + cfg.wire.header;
    if packet > MAX_WIRE || p.control_bytes > MAX_WIRE {
        return Err(SimError::Packet(format!(
            "packets of {} bytes (MTU {} + header {}) and control packets of {} bytes: the packet level carries packets of at most {MAX_WIRE} bytes; use a smaller mtu or the flow level",
            packet, cfg.wire.mtu, cfg.wire.header, p.control_bytes
        )));
    }
    let mut bufs: Vec<(u64, u64)> = Vec::new();
    let mut buf_index: BTreeMap<u32, u32> = BTreeMap::new();
    let mut ports: Vec<Port> = Vec::with_capacity(net.len());
    let mut short: Option<ShortHeadroom> = None;
    for (i, l) in net.links().iter().enumerate() {
        let arc = Arc(i as u32);
        let net_arc = topo.is_network_arc(arc);
        // A network switch's latency is kept apart from the link's propagation: it counts a
        // packet at its ingress when the packet arrives, and so a port's headroom covers the
        // link's round trip, as the planner's does.
        let (head, sw) = match topo.arc_head(arc) {
            Some(h) if net_arc => {
                let next = bufs.len() as u32;
                let idx = *buf_index.entry(h.switch).or_insert(next);
                if idx == next {
                    bufs.push((0, h.buffer));
                }
                (idx, h.latency.min(l.latency))
            }
            _ => (NONE, Nanos::ZERO),
        };
        // Only lossless transports count a packet at the ingress (PFC, credits); the others
        // decide at the output queue, after the switch's latency, in one event per hop.
        let sw = if matches!(p.transport, Transport::RocePfc | Transport::Infiniband) { sw } else { Nanos::ZERO };
        let prop = Nanos(l.latency.0 - sw.0);
        let response =
            meshway_fabric::catalog::pfc_response_between(p.pause_response_100g, p.pause_response, l.capacity);
        let own = meshway_fabric::plan::headroom_bytes(l.capacity, prop, response, Bytes(packet)).0;
        let headroom = if topo.is_dci_arc(arc) { p.dci_headroom.or(p.headroom) } else { p.headroom }.unwrap_or(own);
        if p.transport == Transport::RocePfc && head != NONE {
            let sh = short.get_or_insert(ShortHeadroom { ports: 0, of: 0, headroom_bytes: u64::MAX, need_bytes: 0 });
            sh.of += 1;
            if headroom < own {
                sh.ports += 1;
                sh.headroom_bytes = sh.headroom_bytes.min(headroom);
                sh.need_bytes = sh.need_bytes.max(own);
            }
        }
        let credit_limited = p.transport == Transport::Infiniband && head != NONE;
        const PS_PER_BYTE_AT_1BPS: u64 = 8 * 1_000_000_000_000;
        let rate = l.capacity.0;
        ports.push(Port {
            rate,
            ps_per_byte: if rate > 0 && PS_PER_BYTE_AT_1BPS.is_multiple_of(rate) {
                PS_PER_BYTE_AT_1BPS / rate
            } else {
                0
            },
            lat_ps: prop.0.saturating_mul(PS),
            sw_ps: sw.0.saturating_mul(PS),
            head,
            lossless: head != NONE,
            credits: if credit_limited { p.xoff.saturating_add(headroom) } else { 0 },
            credit_limited,
            headroom,
            response_ps: response.0 * PS,
            cold: Box::new(Cold {
                st: PortStats { link: String::new(), capacity_bps: l.capacity.0, ..PortStats::default() },
                ..Cold::default()
            }),
            ..Port::default()
        });
    }
    let balance = p.balance;
    let mut flows: Vec<Flow> = Vec::new();
    let mut sets: Vec<(u32, u16)> = Vec::new();
    let mut paths: Vec<Vec<u32>> = Vec::new();
    // Path sets of sprayed or adaptive messages by (src, dst, via, leg, channel, plane).
    type SetKey = (u32, u32, u32, u8, u32, Option<u16>);
    let mut set_cache: BTreeMap<SetKey, u32> = BTreeMap::new();
    let mut msgs: Vec<MsgState> = Vec::with_capacity(prog.msgs.len());
    let mut dependents: Vec<Vec<u32>> = vec![Vec::new(); prog.msgs.len()];
    let mut initial: Vec<(u64, u32)> = Vec::new();
    let mut gaps: Vec<u64> = Vec::with_capacity(prog.msgs.len());
    // Per host pair, the one-way latency and slowest link of the path NCCL's window is
    // measured against; and the messages it binds.
    let mut window_paths: BTreeMap<(u32, u32), Option<(Nanos, BitsPerSec)>> = BTreeMap::new();
    let mut window_bound = 0usize;
    for (i, m) in prog.msgs.iter().enumerate() {
        for &d in &m.deps {
            dependents[d as usize].push(i as u32);
        }
        let gap = if m.is_wait() { m.delay.0 } else { m.delay.0 + m.alpha().unwrap_or(cfg.wire.alpha).0 };
        gaps.push(gap.saturating_mul(PS).min(CLOCK_LIMIT_PS));
        if m.start.0 > CLOCK_LIMIT_PS / PS {
            return Err(SimError::Packet(format!(
                "a message starts at {:.1} days: the packet level's clock runs to 100 days of simulated time",
                m.start.0 as f64 / 86_400e9
            )));
        }
        let first = flows.len() as u32;
        if !m.is_wait() {
            let key_base =
                mix(cfg.seed ^ mix((u64::from(m.src) << 32) | u64::from(m.dst)) ^ u64::from(m.channel) << 20);
            let local = m.via.is_none() && topo.local(m.src, m.dst);
            let k = if balance == Balance::Ecmp && !local { cfg.qps.max(1) } else { 1 };
            let k = (k as u64).min(m.bytes.max(1)) as u32;
            // NCCL's window, split evenly over the queue pairs (receiver-driven transports
            // pace by pulls instead). Counted as binding where it is below the path's
            // bandwidth-delay product, as the flow level counts it.
            let wm = if p.transport == Transport::Ndp { None } else { crate::exec::message_window(m, &*topo, cfg) };
            // In whole packets, rounded up: rounded down, a message of exactly n buffers (a
            // 64 MiB send of 4 MiB buffers) lost 0.67 packet a window and paid an (n+1)th
            // round trip, so 64 MiB over 100 km ended after 65 MiB.
            let win = wm.map_or(0, |wm| {
                u32::try_from(wm.div_ceil(u64::from(k) * cfg.wire.mtu.max(1)).max(1)).unwrap_or(u32::MAX)
            });
            if let Some(wm) = wm {
                let key = (topo.host_of(m.src), topo.host_of(m.dst));
                let spec = *window_paths.entry(key).or_insert_with(|| topo.path_spec(m.src, m.dst, m.via));
                let wire = cfg.wire.wire_bytes(m.bytes);
                if spec.is_some_and(|(one_way, slowest)| {
                    crate::exec::window_rate(wm, m.bytes, wire, 2 * one_way.0) < slowest.0
                }) {
                    window_bound += 1;
                }
            }
            for j in 0..k {
                let share = m.bytes / u64::from(k) + u64::from(u64::from(j) < m.bytes % u64::from(k));
                let key = mix(key_base ^ u64::from(j));
                let pinned = prog.routes.get(m.route as usize).and_then(|p| topo.pinned_path(p));
                let set = if let Some(path) = pinned {
                    paths.push(path.iter().map(|a| a.0).collect());
                    sets.push(((paths.len() - 1) as u32, 1));
                    (sets.len() - 1) as u32
                } else if balance == Balance::Ecmp || local {
                    let Some(path) = msg_path(topo, m, Choice::Hash(key)) else {
                        return Err(SimError::Packet(format!(
                            "no path from {} to {}",
                            topo.rank_name(m.src),
                            topo.rank_name(m.dst)
                        )));
                    };
                    if path.is_empty() {
                        continue;
                    }
                    paths.push(path.iter().map(|a| a.0).collect());
                    sets.push(((paths.len() - 1) as u32, 1));
                    (sets.len() - 1) as u32
                } else {
                    let ck = (m.src, m.dst, m.via.unwrap_or(NONE), m.leg as u8, m.channel, m.plane);
                    if let Some(&s) = set_cache.get(&ck) {
                        s
                    } else {
                        let start = paths.len() as u32;
                        let want = p.paths.clamp(1, 64);
                        let mut got: Vec<Vec<u32>> = Vec::new();
                        for index in 0..want {
                            let Some(path) = msg_path(topo, m, Choice::Spread { key: key_base, index }) else {
                                return Err(SimError::Packet(format!(
                                    "no path from {} to {}",
                                    topo.rank_name(m.src),
                                    topo.rank_name(m.dst)
                                )));
                            };
                            let path: Vec<u32> = path.iter().map(|a| a.0).collect();
                            if !got.contains(&path) {
                                got.push(path);
                            }
                        }
                        if got.iter().any(Vec::is_empty) {
                            continue;
                        }
                        // A sender sprays from one NIC port: paths that leave by another
                        // (another plane) are left out.
                        let first_arc = got[0][0];
                        got.retain(|p| p[0] == first_arc);
                        let n = got.len() as u16;
                        paths.extend(got);
                        sets.push((start, n));
                        let s = (sets.len() - 1) as u32;
                        set_cache.insert(ck, s);
                        s
                    }
                };
                let pkts = share.div_ceil(cfg.wire.mtu.max(1)).max(1);
                let pkts = u32::try_from(pkts)
                    .map_err(|_| SimError::Packet(format!("a message of {} bytes is too many packets", m.bytes)))?;
                let nic = paths[sets[set as usize].0 as usize][0];
                let line = ports[nic as usize].rate;
                let first_window = if p.transport == Transport::Ndp && p.window_covers_path {
                    p.window.max(bdp_packets(
                        &ports,
                        &paths[sets[set as usize].0 as usize],
                        cfg.wire.wire_bytes(cfg.wire.mtu),
                    ))
                } else {
                    p.window
                };
                let selective = p.transport == Transport::Ndp || balance != Balance::Ecmp;
                let words = if selective { pkts.div_ceil(64) as usize } else { 0 };
                flows.push(Flow {
                    msg: i as u32,
                    nic,
                    set,
                    pick: (key % u64::from(sets[set as usize].1.max(1))) as u16,
                    pkts,
                    payload: share.max(1),
                    line,
                    rate: line,
                    target: line,
                    alpha: 1.0,
                    got: vec![0; words],
                    acked: vec![0; words],
                    win,
                    first_window,
                    ..Flow::default()
                });
            }
        }
        let last = flows.len() as u32;
        msgs.push(MsgState {
            deps_left: m.deps.len() as u32,
            ready_at: m.start.0 * PS,
            flows: (first, last),
            left: last - first,
            start: None,
            end: None,
        });
        if m.deps.is_empty() {
            initial.push((m.start.0 * PS + gaps[i], i as u32));
        }
    }
    let total = msgs.len() as u64;
    if let Some(long) = paths.iter().find(|p| p.len() > MAX_HOPS) {
        return Err(SimError::Packet(format!(
            "a route of {} links: the packet level carries routes of at most {MAX_HOPS} links",
            long.len()
        )));
    }
    let mut e = Engine {
        p,
        now: 0,
        seq: 0,
        heap: Queue::new(),
        ports,
        bufs,
        flows,
        sets,
        arena: paths.iter().flatten().copied().collect(),
        offsets: paths
            .iter()
            .scan(0u32, |at, p| {
                let o = *at;
                *at += p.len() as u32;
                Some(o)
            })
            .collect(),
        paths,
        msgs,
        dependents,
        mtu: cfg.wire.mtu.max(1),
        header: cfg.wire.header,
        seed: mix(cfg.seed ^ 0x7061_636b_6574),
        draws: 0,
        events: 0,
        ack_completion: cfg.completion.ack_bytes.is_some(),
        sample_ps: p.sample.0.max(1) * PS,
        sample: 0,
        sample_end: p.sample.0.max(1) * PS,
        last_tx: 0,
        sel: p.transport == Transport::Ndp || balance != Balance::Ecmp,
        ndp: p.transport == Transport::Ndp,
        gaps: Vec::new(),
        stats: PacketStats {
            transport: p.transport,
            balance: p.balance,
            events: 0,
            data_packets: 0,
            retransmitted_packets: 0,
            control_packets: 0,
            drops: 0,
            trims: 0,
            pauses: 0,
            paused_ns: 0,
            ecn_marks: 0,
            cnps: 0,
            truncated: false,
            clock_limit: false,
            deadlock: false,
            ports: Vec::new(),
            series: Vec::new(),
            flows: 0,
            short_headroom: None,
        },
    };
    e.gaps = gaps;
    for (t, m) in initial {
        e.push(t, Ev::Ready(m));
    }
    while let Some((t, ev)) = e.heap.pop() {
        if e.events >= p.max_events {
            e.stats.truncated = true;
            break;
        }
        if t > CLOCK_LIMIT_PS {
            e.stats.clock_limit = true;
            break;
        }
        if e.stats.deadlock {
            break;
        }
        e.now = t;
        if t >= e.sample_end {
            e.sample = t / e.sample_ps;
            e.sample_end = (e.sample + 1).saturating_mul(e.sample_ps);
        }
        e.events += 1;
        match ev {
            Ev::TxDone(a) => e.on_tx_done(a),
            Ev::Arrive(pkt) => e.on_arrive(pkt),
            Ev::Pause(a, on) => e.on_pause(a, on),
            Ev::Credit(a, bytes) => {
                e.ports[a as usize].credits += u64::from(bytes);
                e.try_start(a);
            }
            Ev::Wake(f) => {
                e.flows[f as usize].wake_armed = false;
                e.make_ready(f);
            }
            Ev::PullTick(a) => e.on_pull_tick(a),
            Ev::Rto(f) => e.on_rto(f),
            Ev::Ready(m) => e.on_ready(m),
            Ev::Dcqcn(f) => e.on_dcqcn(f),
        }
        if e.events.is_multiple_of(1 << 16) {
            progress(e.msgs.iter().filter(|m| m.end.is_some()).count() as u64, total);
        }
    }
    progress(e.msgs.iter().filter(|m| m.end.is_some()).count() as u64, total);
    let (mut ex, mut stats) = e.finish(prog, &*topo);
    ex.window_bound = window_bound;
    stats.short_headroom = short.filter(|s| s.ports > 0);
    Ok((ex, stats))
}

impl Engine<'_> {
    fn finish(mut self, prog: &Program, topo: &dyn Topology) -> (Execution, PacketStats) {
        // The run ends with its last completion; timers still queued after it (a timeout
        // armed for a flow that has since completed) do not stretch it.
        let end_ps = if self.msgs.iter().all(|m| m.end.is_some()) {
            self.msgs
                .iter()
                .filter_map(|m| m.end)
                .max()
                .unwrap_or(0)
                .max(self.ports.iter().map(|p| p.cold.pause_end).max().unwrap_or(0))
        } else {
            self.now
        };
        for port in &mut self.ports {
            port.flush();
            port.cold.st.tx_bytes = port.tx_bytes;
            port.cold.st.tx_packets = port.tx_packets;
            port.cold.st.max_queue_bytes = port.max_queue;
            if port.paused {
                port.paused_ps += end_ps.saturating_sub(port.paused_at);
                let sample = self.p.sample.0.max(1) * PS;
                port.cold.add_pause(port.paused_at, end_ps, sample);
            }
        }
        let why = |e: &Engine<'_>| -> String {
            if e.stats.deadlock && e.ports.iter().any(|p| p.paused) {
                format!(
                    "paused for good: no port sent a packet for a retransmission timeout ({}) while {} port(s) stayed paused (a PFC pause cycle); the run stopped there",
                    e.p.rto,
                    e.ports.iter().filter(|p| p.paused).count()
                )
            } else if e.stats.deadlock {
                format!(
                    "no port sent a packet for a retransmission timeout ({}) while ports waited for credits (a credit loop); the run stopped there",
                    e.p.rto
                )
            } else if e.stats.truncated {
                format!("the run stopped at the event limit ({} events)", e.p.max_events)
            } else if e.stats.clock_limit {
                "the run stopped at the packet level's clock limit (100 days of simulated time)".into()
            } else if e.ports.iter().any(|p| p.paused) {
                "paused for good: a PFC pause was never released (a pause cycle, or a pause toward a failed path)"
                    .into()
            } else {
                "did not complete".into()
            }
        };
        let msgs: Vec<MsgResult> = prog
            .msgs
            .iter()
            .zip(&self.msgs)
            .map(|(m, s)| MsgResult {
                start: s.start.map(|t| SimTime(ps_to_ns(t))),
                end: s.end.map(|t| SimTime(ps_to_ns(t))),
                stall: if s.end.is_none() {
                    Some(format!("{} to {}: {}", topo.rank_name(m.src), topo.rank_name(m.dst), why(&self)))
                } else {
                    None
                },
            })
            .collect();
        let flows: Vec<FlowResult> = self
            .flows
            .iter()
            .enumerate()
            .map(|(i, f)| FlowResult {
                id: FlowId(i as u32),
                tag: prog.msgs[f.msg as usize].tag,
                bytes: Bytes(f.payload),
                delivered: Bytes(if f.end.is_some() { f.payload } else { 0 }),
                start: self.msgs[f.msg as usize].start.map(|_| SimTime(ps_to_ns(f.start))),
                end: f.end.map(|t| SimTime(ps_to_ns(t))),
                stall: None,
            })
            .collect();
        let sample = self.p.sample.0.max(1) * PS;
        let buckets = end_ps / sample + 1;
        let factor = buckets.div_ceil(1000).max(1);
        let interval = sample * factor;
        let nb = (end_ps / interval + 1) as usize;
        let link_stats: Vec<LinkStats> = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let peak = port.cold.series.iter().map(|s| s.2).max().unwrap_or(0);
                let cap_bytes = BitsPerSec(port.rate).bytes_in(Nanos(sample / PS)).0.max(1);
                LinkStats {
                    id: Arc(i as u32),
                    bytes: Bytes(port.tx_bytes),
                    peak_utilization: (peak as f64 / cap_bytes as f64).min(1.0),
                    busy: Nanos(0),
                }
            })
            .collect();
        let mut order: Vec<usize> = (0..self.ports.len()).filter(|&i| self.ports[i].max_queue > 0).collect();
        order.sort_by_key(|&i| (Reverse(self.ports[i].max_queue), i));
        order.truncate(self.p.series_ports);
        order.sort_unstable();
        let mut series = Vec::new();
        for &i in &order {
            let port = &self.ports[i];
            let mut q = vec![0u64; nb];
            let mut tx = vec![0u64; nb];
            let mut paused = vec![0u64; nb];
            for &(b, depth, bytes) in &port.cold.series {
                let k = ((b * sample) / interval) as usize;
                if k < nb {
                    q[k] = q[k].max(depth);
                    tx[k] += bytes;
                }
            }
            for &(a, b) in &port.cold.pause_spans {
                let mut t = a;
                while t < b {
                    let k = (t / interval) as usize;
                    let edge = ((k as u64) + 1) * interval;
                    let upto = edge.min(b);
                    if k < nb {
                        paused[k] += upto - t;
                    }
                    t = upto;
                }
            }
            for &(b, ps) in &port.cold.pause_within {
                let k = ((b * sample) / interval) as usize;
                if k < nb {
                    paused[k] += ps;
                }
            }
            series.push(PortSeries {
                link: topo.arc_name(Arc(i as u32)),
                interval_ns: interval / PS,
                queue_bytes: q,
                // Rounded as running totals, so the intervals add up to the port's paused time.
                paused_ns: paused
                    .into_iter()
                    .scan((0u64, 0u64), |(cum, shown), p| {
                        *cum += p;
                        let ns = ps_to_ns(*cum);
                        let d = ns - *shown;
                        *shown = ns;
                        Some(d)
                    })
                    .collect(),
                tx_bytes: tx,
            });
        }
        let mut ports = Vec::new();
        for (i, port) in self.ports.iter_mut().enumerate() {
            let st = &mut port.cold.st;
            st.paused_ns = ps_to_ns(port.paused_ps);
            if st.tx_bytes > 0 || st.pauses_sent > 0 || st.drops > 0 || st.trims > 0 || st.paused_ns > 0 {
                st.link = topo.arc_name(Arc(i as u32));
                ports.push(std::mem::take(st));
            }
        }
        let mut stats = self.stats;
        stats.events = self.events;
        stats.paused_ns = ports.iter().map(|p| p.paused_ns).sum();
        stats.ports = ports;
        stats.series = series;
        stats.flows = flows.len();
        let sim = SimResult {
            link_history: None,
            end: SimTime(ps_to_ns(end_ps).max(self.msgs.iter().filter_map(|m| m.end).map(ps_to_ns).max().unwrap_or(0))),
            flows,
            link_stats,
            events: self.events,
            recomputes: 0,
        };
        let n = sim.flows.len();
        (Execution { msgs, sim, flows: n, window_bound: 0 }, stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A port's pauses are kept per sample interval in full however many there are (the
    /// series stopped at 100,000 pauses and read zero after, while the port stayed paused),
    /// in entries that grow with the intervals, not the pauses.
    #[test]
    fn every_pause_reaches_the_series_in_bounded_memory() {
        let sample = 1_000u64;
        let mut cold = Cold::default();
        let mut want = vec![0u64; 3_000];
        let (mut t, mut k, mut last) = (0u64, 0u64, 0u64);
        // 300,000 pauses of 3-9 ps with gaps of 1-6 ps, some across an interval's edge.
        while k < 300_000 {
            let (a, b) = (t, t + 3 + k % 7);
            for p in a..b {
                want[(p / sample) as usize] += 1;
            }
            cold.add_pause(a, b, sample);
            last = b;
            t = b + 1 + k % 6;
            k += 1;
        }
        let mut got = vec![0u64; 3_000];
        for &(a, b) in &cold.pause_spans {
            for p in a..b {
                got[(p / sample) as usize] += 1;
            }
        }
        for &(i, ps) in &cold.pause_within {
            got[i as usize] += ps;
        }
        assert_eq!(got, want);
        assert_eq!(cold.pause_end, last);
        let intervals = t / sample + 1;
        assert!(cold.pause_spans.len() as u64 <= intervals && cold.pause_within.len() as u64 <= intervals);
    }

    proptest! {
        /// The event queue gives events in (time, sequence) order, as one binary heap would:
        /// fixed-delay pushes (more distinct delays than it has FIFOs, so some go to the
        /// calendar), calendar pushes, and pushes while popping, with ties in time.
        #[test]
        fn the_queue_pops_in_time_then_sequence_order(
            steps in proptest::collection::vec((0u64..200, 0u64..100_000_000, any::<bool>(), 0u8..3), 1..400)
        ) {
            let mut q = Queue::new();
            let mut reference: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
            let (mut now, mut seq) = (0u64, 0u64);
            for (delay_class, far, fixed, pops) in steps {
                // Delays: 200 distinct small values (ties likely) or one up to 100 us, beyond
                // the calendar's window.
                let delay = if far % 7 == 0 { far } else { delay_class * 1_000 };
                seq += 1;
                let t = now + delay;
                let ev = Ev::Wake(seq as u32);
                if fixed {
                    q.push_fixed(delay, t, seq, ev);
                } else {
                    q.push(t, seq, ev);
                }
                reference.push(Reverse((t, seq)));
                for _ in 0..pops {
                    let Some(Reverse((t, s))) = reference.pop() else { break };
                    let got = q.pop();
                    prop_assert_eq!(got, Some((t, Ev::Wake(s as u32))));
                    now = t;
                }
            }
            while let Some(Reverse((t, s))) = reference.pop() {
                prop_assert_eq!(q.pop(), Some((t, Ev::Wake(s as u32))));
            }
            prop_assert_eq!(q.pop(), None);
            prop_assert!(q.fifos.len() <= FIXED_QUEUES);
        }
    }
}
