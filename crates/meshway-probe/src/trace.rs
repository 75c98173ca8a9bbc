//! Path tracing (`meshway trace`): per-hop aggregation of TTL-limited probes over rounds.
//!
//! The runtime sends, per round, one probe per TTL (per flow when several flows are used) and
//! reports each answer (ICMP time exceeded from a router, or the destination's answer) with
//! [`TraceTable::on_answer`] and each probe sent with [`TraceTable::on_sent`]. The table keeps
//! per (TTL, flow) the addresses that answered, RTT statistics and loss.
//!
//! Loss labelling, as mtr's documentation teaches: routers rate-limit the ICMP they generate,
//! so loss at one hop that does not persist to later hops is **not** forwarding loss. A hop's
//! loss is labelled [`LossKind::IcmpRateLimit`] when some later hop lost less than half as
//! much, and [`LossKind::Forwarding`] when every later hop that answered lost at least as much.

use crate::stats::{DelayStats, Summary};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    None,
    /// Loss here but not beyond: the router limits the ICMP it sends.
    IcmpRateLimit,
    /// Loss here that persists at every later hop (or this is the last hop).
    Forwarding,
}

#[derive(Debug, Clone, Default)]
struct Cell {
    sent: u64,
    answered: u64,
    addrs: BTreeMap<IpAddr, u64>,
    rtt: DelayStats,
    reached: bool,
}

/// Answers gathered over rounds, keyed by (TTL, flow).
#[derive(Debug, Clone, Default)]
pub struct TraceTable {
    cells: BTreeMap<(u8, u16), Cell>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HopReport {
    pub ttl: u8,
    pub flow: u16,
    /// Addresses that answered at this TTL, most frequent first, with their answer counts.
    pub addresses: Vec<(IpAddr, u64)>,
    pub sent: u64,
    pub answered: u64,
    pub loss_ratio: f64,
    pub loss_kind: LossKind,
    pub rtt: Option<Summary>,
    /// The destination itself answered at this TTL.
    pub destination: bool,
}

impl TraceTable {
    pub fn new() -> TraceTable {
        TraceTable::default()
    }

    pub fn on_sent(&mut self, ttl: u8, flow: u16) {
        self.cells.entry((ttl, flow)).or_default().sent += 1;
    }

    /// `from` answered the probe sent with `ttl` on `flow` after `rtt_ns`; `destination` when
    /// the answer came from the target (port unreachable or echo reply) rather than a router.
    pub fn on_answer(&mut self, ttl: u8, flow: u16, from: IpAddr, rtt_ns: u64, destination: bool) {
        let c = self.cells.entry((ttl, flow)).or_default();
        c.answered += 1;
        *c.addrs.entry(from).or_default() += 1;
        c.rtt.record(rtt_ns);
        c.reached |= destination;
    }

    /// The smallest TTL at which `flow` reached the destination.
    pub fn destination_ttl(&self, flow: u16) -> Option<u8> {
        self.cells.iter().filter(|((_, f), c)| *f == flow && c.reached).map(|((t, _), _)| *t).min()
    }

    /// Hops of every flow up to its destination (or every TTL probed when not reached).
    pub fn report(&self) -> Vec<HopReport> {
        let mut out: Vec<HopReport> = Vec::new();
        for (&(ttl, flow), c) in &self.cells {
            if self.destination_ttl(flow).is_some_and(|d| ttl > d) {
                continue;
            }
            let mut addresses: Vec<(IpAddr, u64)> = c.addrs.iter().map(|(a, n)| (*a, *n)).collect();
            addresses.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let loss = if c.sent == 0 { 0.0 } else { c.sent.saturating_sub(c.answered) as f64 / c.sent as f64 };
            out.push(HopReport {
                ttl,
                flow,
                addresses,
                sent: c.sent,
                answered: c.answered,
                loss_ratio: loss,
                loss_kind: LossKind::None,
                rtt: c.rtt.summary(),
                destination: c.reached,
            });
        }
        // Label loss by comparing with later hops of the same flow.
        let n = out.len();
        for i in 0..n {
            if out[i].loss_ratio == 0.0 {
                continue;
            }
            let flow = out[i].flow;
            let later: Vec<f64> =
                out[i + 1..n].iter().filter(|h| h.flow == flow && h.answered > 0).map(|h| h.loss_ratio).collect();
            let rate_limited = later.iter().any(|&l| l < out[i].loss_ratio / 2.0);
            out[i].loss_kind = if rate_limited { LossKind::IcmpRateLimit } else { LossKind::Forwarding };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loss_at_a_middle_hop_only_is_rate_limiting() {
        let mut t = TraceTable::new();
        for round in 0..10u64 {
            for ttl in 1..=3u8 {
                t.on_sent(ttl, 0);
                let answer = match ttl {
                    2 => round % 2 == 0, // hop 2 answers half the time
                    _ => true,
                };
                if answer {
                    let from = ip(&format!("10.0.0.{ttl}"));
                    t.on_answer(ttl, 0, from, 1000 * u64::from(ttl), ttl == 3);
                }
            }
        }
        let r = t.report();
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].loss_ratio, 0.5);
        assert_eq!(r[1].loss_kind, LossKind::IcmpRateLimit);
        assert_eq!(r[0].loss_kind, LossKind::None);
        assert!(r[2].destination);
        assert_eq!(r[2].addresses, vec![(ip("10.0.0.3"), 10)]);
        assert_eq!(t.destination_ttl(0), Some(3));
    }

    #[test]
    fn loss_that_persists_is_forwarding_loss_and_hops_past_destination_are_dropped() {
        let mut t = TraceTable::new();
        for round in 0..4u64 {
            for ttl in 1..=4u8 {
                t.on_sent(ttl, 0);
                if ttl == 1 || round < 2 {
                    t.on_answer(ttl, 0, ip(&format!("10.0.0.{}", ttl.min(3))), 10, ttl >= 3);
                }
            }
        }
        let r = t.report();
        assert_eq!(r.len(), 3, "ttl 4 is past the destination");
        assert_eq!(r[1].loss_kind, LossKind::Forwarding);
        assert_eq!(r[2].loss_kind, LossKind::Forwarding);
    }
}
