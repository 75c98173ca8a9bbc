//! What a simulation run reports.

use crate::ids::{FlowId, LinkId};
use meshway_units::{Bytes, Nanos, SimTime};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a flow did not complete by the end of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Stall {
    /// A link on the flow's path was down when the run ended.
    LinkDown { link: LinkId },
    /// A link on the flow's path has zero capacity.
    ZeroCapacity { link: LinkId },
    /// The flow's fair share on this link rounds down to zero (more flows than the link has
    /// rate units, 1/1024 bit per second each).
    ZeroShare { link: LinkId },
    /// The flow was waiting on a dependency that never completed.
    Dependency { flow: FlowId },
    /// The router found no path between the flow's endpoints.
    NoPath,
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stall::LinkDown { link } => write!(f, "link {link} is down"),
            Stall::ZeroCapacity { link } => write!(f, "link {link} has zero capacity"),
            Stall::ZeroShare { link } => write!(f, "fair share on link {link} rounds down to zero"),
            Stall::Dependency { flow } => write!(f, "waits on flow {flow}, which did not complete"),
            Stall::NoPath => write!(f, "no path between its endpoints"),
        }
    }
}

/// The outcome of one flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowResult {
    pub id: FlowId,
    /// The caller-defined group from the [`FlowSpec`](crate::FlowSpec).
    pub tag: u32,
    /// The flow's size.
    #[serde(rename = "size_bytes")]
    pub bytes: Bytes,
    /// Bytes that left the sender: `bytes` for a completed flow, less for a stalled one.
    #[serde(rename = "delivered_bytes")]
    pub delivered: Bytes,
    /// When the flow became active (start time and dependencies satisfied); `None` if it
    /// never did.
    #[serde(rename = "start_ns")]
    pub start: Option<SimTime>,
    /// When the flow completed, including path latency and last-packet serialization; `None`
    /// if it did not.
    #[serde(rename = "end_ns")]
    pub end: Option<SimTime>,
    /// Why the flow did not complete; set only once the run has no events left.
    pub stall: Option<Stall>,
}

impl FlowResult {
    /// Flow completion time, `end - start`, if the flow completed.
    pub fn duration(&self) -> Option<Nanos> {
        Some(self.end? - self.start?)
    }
}

/// Per-link totals over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkStats {
    pub id: LinkId,
    /// Bytes carried (integral of the link's allocated rate over time), rounded down.
    #[serde(rename = "carried_bytes")]
    pub bytes: Bytes,
    /// Highest allocated rate divided by capacity, in `0..=1` (0 for a zero-capacity link).
    pub peak_utilization: f64,
    /// Total time during which the link carried at least one flow at a non-zero rate.
    #[serde(rename = "busy_ns")]
    pub busy: Nanos,
}

/// Each link's carried bytes per interval of equal width from time 0 (the last interval may
/// be cut short by the end of the run). Indexed by [`LinkId`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkHistory {
    #[serde(rename = "interval_ns")]
    pub interval: Nanos,
    pub bytes: Vec<Vec<u64>>,
}

/// Everything a run reports. `flows` is indexed by [`FlowId`], `link_stats` by [`LinkId`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimResult {
    pub flows: Vec<FlowResult>,
    /// Carried bytes per link over time, when recorded
    /// ([`crate::engine::Simulation::record_link_history`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_history: Option<LinkHistory>,
    pub link_stats: Vec<LinkStats>,
    /// Events processed (flow activations, fluid finishes, link changes; stale rescheduled
    /// finish events are not counted).
    pub events: u64,
    /// Rate recomputes (one per batch of equal-time events that changed anything).
    pub recomputes: u64,
    /// The later of the last event and the last flow completion.
    #[serde(rename = "end_ns")]
    pub end: SimTime,
}

impl SimResult {
    /// Flows that did not complete.
    pub fn stalled(&self) -> impl Iterator<Item = &FlowResult> {
        self.flows.iter().filter(|f| f.end.is_none())
    }
}
