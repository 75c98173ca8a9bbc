//! Identifiers of the engine's links and flows, shared by the engine, its errors and its
//! results (kept apart so those three depend on this and not on each other).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies a directed link of a [`Network`](crate::Network): its index in insertion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LinkId(pub u32);

/// Identifies a flow of a [`Simulation`](crate::Simulation): its index in insertion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FlowId(pub u32);

impl LinkId {
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}
impl FlowId {
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}
impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
