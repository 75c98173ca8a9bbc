//! The flow-level simulation core of meshway (fidelity level 2 in `DESIGN.md`).
//!
//! A [`Network`] is a set of directed links, each with a capacity and a latency. A
//! [`Simulation`] runs [`FlowSpec`]s over it: each flow crosses a fixed path of links, becomes
//! active once its start time has come and its dependencies have completed, and then shares
//! every link on its path max-min fairly with the other active flows. The output is a
//! [`SimResult`]: per-flow start and end times, per-link statistics.
//!
//! # Model
//!
//! - **Events.** Discrete events at integer-nanosecond [`SimTime`](meshway_units::SimTime)s,
//!   ordered by `(time, sequence)` so equal-time events are first-in, first-out (a queue of
//!   time buckets, see `queue.rs`). All events with the same timestamp are applied as one
//!   batch, followed by a single rate recompute. Only the earliest finisher(s) of each
//!   connected component have a queued finish event, so the queue stays small.
//! - **Sharing.** While active, a flow's rate is its max-min fair share, computed by
//!   progressive filling (water-filling): repeatedly take the link with the smallest fair
//!   share `remaining capacity / unfrozen flows` (ties: lowest link id), freeze all its
//!   unfrozen flows at that share, and subtract it from the other links they cross. A down
//!   link has capacity zero, so its flows get rate zero.
//! - **Spread flows.** A flow may be spread evenly over several paths (packet spraying,
//!   [`FlowSpec::spread`]): it is still one flow with one rate, and a link that `m` of its `K`
//!   paths cross carries `m/K` of that rate. In the filling a flow counts on each link with
//!   that weight (`remaining / sum of unfrozen weights` is the share per unit of weight).
//!   Weights are kept in units of 2⁻²⁰, exact for `K` a power of two.
//! - **Incremental recompute.** When flows start or finish or a link changes state, only the
//!   *connected component* touched by the change is recomputed: the flows that share a link
//!   with a touched link, transitively. Max-min fair rates of separate components do not
//!   influence each other, so this gives exactly the rates a full recompute would. When the
//!   last recompute reached at least three quarters of the active flows (an all-to-all
//!   couples every link), the search for the component is skipped and every link with
//!   flows is refilled; the rates are the same. Flows whose rate did not change keep their
//!   scheduled finish event.
//! - **Exact fluid arithmetic.** Rates are integers in units of 1/1024 bit per second (the
//!   fair share is rounded *down* to that unit, so a link is never over its capacity), and a
//!   flow's remaining volume is an integer number of `rate unit × ns`. A flow of `S` bytes
//!   alone at `B` bit/s therefore finishes its fluid part at exactly `ceil(S·8·10⁹ / B)` ns
//!   after it starts: the fluid finish time is always rounded *up* to the next nanosecond.
//! - **Completion.** A flow completes at its fluid finish plus the sum of its path's link
//!   latencies plus the transmit time of its last packet (`min(last_packet, size)`) at the
//!   path's bottleneck (smallest nominal) capacity, rounded up. A flow with an empty path is a
//!   local copy and completes the moment it becomes active.
//! - **Dependencies.** A flow becomes active at `max(start, completion of each dependency +
//!   dep_delay)`.
//! - **Failures.** Links can be scheduled down and up. Flows crossing a down link stall at
//!   rate zero; they resume if the link comes back. The run ends when no event remains;
//!   flows that could never finish are reported with `end = None` and a [`Stall`] reason.
//!   Rerouting belongs to the routing layer: drive the run step-wise
//!   ([`Simulation::advance`]), find affected flows with [`Simulation::flows_on_link`] and
//!   move them with [`Simulation::set_path`].
//! - **Cost.** One recompute is `O(P log L)` for a component whose flows cross `P` links in
//!   total over `L` distinct links (breadth-first search, progressive filling with a lazy
//!   heap of link shares, one division per flow whose rate changed). Each link's list holds
//!   its flows' paths inline (up to six links), so the filling reads lists front to back
//!   rather than chasing each flow; flows that finished leave the lists at the next
//!   recompute that walks them. A run costs about the number of distinct event times times
//!   the size of the component they touch: a million equal flows all-to-all take two
//!   recomputes; a component of `n` flows that all finish at different times costs `O(n²)`.
//!   A batch that only finishes flows, none of whose links is the bottleneck of a flow still
//!   running, changes no rate: it skips the filling (exactly; see `Simulation::skip_fill`),
//!   which is every finish of an all-to-all of equal messages.
//! - **Determinism.** No hash maps, no wall clock, no floating point in the engine; results
//!   do not depend on the order in which flows were added (only ids do).

pub mod collective;
mod engine;
mod error;
pub mod exec;
mod ids;
pub mod limits;
pub mod multisite;
pub mod packet;
pub mod plugin;
pub mod program;
mod queue;
mod result;
pub mod simulate;
pub mod topo;
pub mod training;
pub mod tuner;

pub use engine::{Completion, FlowId, FlowSpec, LinkId, LinkSpec, LinkView, Network, Router, Simulation};
pub use error::{CollectiveError, SimError, SimulateError};
pub use result::{FlowResult, LinkStats, SimResult, Stall};
