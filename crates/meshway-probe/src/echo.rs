//! The echo (ping) sender as a sans-IO state machine.
//!
//! The runtime calls [`EchoSession::poll`] with the current monotonic time; it answers
//! [`Action::Send`] (send probe `seq` now), [`Action::Wait`] (sleep until a deadline, reading
//! replies meanwhile) or [`Action::Done`]. Each reply is handed to [`EchoSession::on_reply`].
//! The session decides what counts as received, lost, late, duplicated or reordered:
//!
//! - a probe is **lost** when no answer arrived within `timeout` of sending it; an answer after
//!   that is **late** (still lost, and not in the delay statistics);
//! - a probe the target **refused** at once (a TCP reset) is lost right away, without waiting
//!   for its timeout, and counted as refused as well;
//! - an answer for a probe already answered is a **duplicate**;
//! - an in-time answer whose sequence number is below the highest already answered is
//!   **reordered** (RFC 4737's definition, applied to the returning stream).
//!
//! The wire carries 32-bit sequence numbers (STAMP's); the session counts in 64 bits and reads
//! a wire number as the latest probe sent with it, so a session that runs past 2^32 probes
//! (497 days at 10 ms) wraps around and goes on.

use crate::stats::{DelayStats, LossCounts, Summary};
use meshway_units::Nanos;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// How far below minus the round trip a one-way delay may read before the clocks count as
/// unsynchronized: the wall-clock stamps of the two ends and the monotonic round trip come
/// from different clocks and paths, a few microseconds apart under load, which on loopback
/// (round trips of 1-4 us on a fresh machine) flagged synchronized clocks (an assumption,
/// far below the error of any clock sync worth the name).
pub const STAMP_SLACK_NS: i64 = 50_000;

/// How many of the latest sequence numbers are remembered as answered, for duplicate
/// detection; a duplicate of an older probe is counted as late.
const ANSWERED_WINDOW: u32 = 4_096;
const ANSWERED_WORDS: usize = ANSWERED_WINDOW as usize / 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoConfig {
    /// Probes to send; `None` runs until [`EchoSession::stop`].
    pub count: Option<u64>,
    pub interval: Nanos,
    pub timeout: Nanos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send probe `seq` now.
    Send { seq: u32 },
    /// Nothing to do before this time (the same clock as `now`).
    Wait { until: Nanos },
    /// Every probe has been sent and answered or timed out.
    Done,
}

/// What became of one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplyKind {
    Ok,
    Reordered,
    Duplicate,
    Late,
    /// A sequence number this session never sent: ignored.
    Unknown,
}

/// Something the runtime may print, one line each.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EchoEvent {
    Reply {
        seq: u32,
        kind: ReplyKind,
        /// Round-trip time minus the reflector's hold time; absent for late and unknown replies.
        rtt_ns: Option<u64>,
        /// One-way delays, present only when both clocks say they are synchronized.
        forward_ns: Option<i64>,
        backward_ns: Option<i64>,
    },
    Lost {
        seq: u32,
    },
    /// The target refused probe `seq` at once (a TCP reset): lost, and known to be so without
    /// waiting for the timeout.
    Refused {
        seq: u32,
    },
}

/// A whole session's result. Field names carry their unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EchoReport {
    #[serde(flatten)]
    pub counts: LossCounts,
    pub loss_ratio: f64,
    pub rtt: Option<Summary>,
    /// One-way delays sender→reflector and back; only when both clocks were synchronized
    /// (`clock_synchronized`), otherwise absent.
    pub clock_synchronized: bool,
    pub forward: Option<Summary>,
    pub backward: Option<Summary>,
    /// Answers whose ends both claimed synchronized clocks but whose one-way delays cannot be
    /// right (one below minus the round trip, less [`STAMP_SLACK_NS`]): the clocks disagree,
    /// and no one-way delay is reported.
    pub one_way_implausible: u64,
}

#[derive(Debug, Clone)]
pub struct EchoSession {
    cfg: EchoConfig,
    sent: u64,
    next_send: Option<Nanos>,
    stopped: bool,
    /// Unanswered probes by 64-bit number (send order), with their send time.
    pending: BTreeMap<u64, Nanos>,
    /// One bit per sequence number of the latest [`ANSWERED_WINDOW`] sent (slot `seq %
    /// ANSWERED_WINDOW`, cleared when the slot's next sequence number is sent): a fixed
    /// 512 bytes however long the session runs.
    answered: Box<[u64; ANSWERED_WORDS]>,
    max_answered: Option<u64>,
    counts: LossCounts,
    rtt: DelayStats,
    forward: DelayStats,
    backward: DelayStats,
    all_synchronized: bool,
    one_way_implausible: u64,
    statistics: bool,
    events: VecDeque<EchoEvent>,
}

impl EchoSession {
    pub fn new(cfg: EchoConfig) -> EchoSession {
        EchoSession {
            cfg,
            sent: 0,
            next_send: None,
            stopped: false,
            pending: BTreeMap::new(),
            answered: Box::new([0; ANSWERED_WORDS]),
            max_answered: None,
            counts: LossCounts::default(),
            rtt: DelayStats::new(),
            forward: DelayStats::new(),
            backward: DelayStats::new(),
            all_synchronized: true,
            one_way_implausible: 0,
            statistics: true,
            events: VecDeque::new(),
        }
    }

    /// Counts only: no delay statistics are kept (the report's summaries are absent). For
    /// unbounded sessions whose samples are aggregated elsewhere, such as the agent's.
    pub fn counts_only(mut self) -> EchoSession {
        self.statistics = false;
        self
    }

    /// Sends nothing more; pending probes still get their timeout.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    fn more_to_send(&self) -> bool {
        !self.stopped && self.cfg.count.is_none_or(|c| self.sent < c)
    }

    /// The next thing to do at `now`. Expires timed-out probes first.
    pub fn poll(&mut self, now: Nanos) -> Action {
        let timeout = self.cfg.timeout;
        while let Some((&n, &at)) = self.pending.first_key_value() {
            if at + timeout > now {
                break;
            }
            self.pending.remove(&n);
            self.counts.lost += 1;
            self.events.push_back(EchoEvent::Lost { seq: n as u32 });
        }
        if self.more_to_send() {
            let due = self.next_send.unwrap_or(now);
            if now >= due {
                let n = self.sent;
                // The slot now belongs to `n`; the probe it held falls out of the window.
                self.set_answered(n, false);
                self.sent += 1;
                self.counts.sent += 1;
                self.pending.insert(n, now);
                // Schedule from the planned time, not from now, so a slow loop does not drift.
                let next = due + self.cfg.interval;
                self.next_send = Some(if next < now { now } else { next });
                return Action::Send { seq: n as u32 };
            }
        }
        let deadline = self.pending.values().map(|&t| t + timeout).min();
        let next = if self.more_to_send() { self.next_send } else { None };
        match (deadline, next) {
            (None, None) => Action::Done,
            (Some(a), Some(b)) => Action::Wait { until: a.min(b) },
            (Some(a), None) | (None, Some(a)) => Action::Wait { until: a },
        }
    }

    /// The latest probe sent with wire number `seq`, if any was.
    fn number(&self, seq: u32) -> Option<u64> {
        let last = self.sent.checked_sub(1)?;
        last.checked_sub(u64::from((last as u32).wrapping_sub(seq)))
    }

    fn set_answered(&mut self, n: u64, on: bool) {
        let slot = (n % u64::from(ANSWERED_WINDOW)) as u32;
        let (w, b) = ((slot / 64) as usize, slot % 64);
        if on {
            self.answered[w] |= 1 << b;
        } else {
            self.answered[w] &= !(1 << b);
        }
    }

    /// Probe `n` is among the latest [`ANSWERED_WINDOW`] sent and was answered in time.
    fn was_answered(&self, n: u64) -> bool {
        let floor = self.sent.saturating_sub(u64::from(ANSWERED_WINDOW));
        let slot = (n % u64::from(ANSWERED_WINDOW)) as u32;
        (floor..self.sent).contains(&n) && self.answered[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    /// The send time recorded for a pending probe (for runtimes that stamp packets).
    pub fn sent_at(&self, seq: u32) -> Option<Nanos> {
        self.pending.get(&self.number(seq)?).copied()
    }

    /// A reply for probe `seq` arrived at `now`. `hold_ns` is time the responder held it
    /// (subtracted from the RTT); `one_way` the forward and backward delays when both clocks
    /// are synchronized, `None` otherwise.
    pub fn on_reply(&mut self, now: Nanos, seq: u32, hold_ns: u64, one_way: Option<(i64, i64)>) -> ReplyKind {
        let Some(n) = self.number(seq) else {
            return ReplyKind::Unknown; // not sent yet
        };
        let kind = match self.pending.remove(&n) {
            Some(at) if now < at || hold_ns > now.saturating_sub(at).get() => {
                // Its times cannot be right; the probe stays pending for a true answer.
                self.pending.insert(n, at);
                self.counts.implausible += 1;
                ReplyKind::Unknown
            }
            Some(at) => {
                let rtt = now.saturating_sub(at).get().saturating_sub(hold_ns);
                if self.statistics {
                    self.rtt.record(rtt);
                }
                self.counts.received += 1;
                let reordered = self.max_answered.is_some_and(|m| n < m);
                if reordered {
                    self.counts.reordered += 1;
                }
                self.max_answered = Some(self.max_answered.map_or(n, |m| m.max(n)));
                self.set_answered(n, true);
                match one_way {
                    // The two one-way delays add up to the round trip when the clocks agree; one
                    // below minus the round trip (and the stamps' own slack) means they are off
                    // by more than it.
                    Some((f, b)) if f < -(rtt as i64) - STAMP_SLACK_NS || b < -(rtt as i64) - STAMP_SLACK_NS => {
                        self.all_synchronized = false;
                        self.one_way_implausible += 1;
                    }
                    Some((f, b)) if self.statistics => {
                        // Small negatives are the clocks' error within the round trip.
                        self.forward.record(f.max(0) as u64);
                        self.backward.record(b.max(0) as u64);
                    }
                    Some(_) => {}
                    None => self.all_synchronized = false,
                }
                self.events.push_back(EchoEvent::Reply {
                    seq,
                    kind: if reordered { ReplyKind::Reordered } else { ReplyKind::Ok },
                    rtt_ns: Some(rtt),
                    forward_ns: one_way.map(|o| o.0),
                    backward_ns: one_way.map(|o| o.1),
                });
                return if reordered { ReplyKind::Reordered } else { ReplyKind::Ok };
            }
            None if self.was_answered(n) => {
                self.counts.duplicates += 1;
                ReplyKind::Duplicate
            }
            None => {
                self.counts.late += 1;
                ReplyKind::Late
            }
        };
        if kind != ReplyKind::Unknown {
            self.events.push_back(EchoEvent::Reply { seq, kind, rtt_ns: None, forward_ns: None, backward_ns: None });
        }
        kind
    }

    /// Probe `seq` was refused by its target (a connection reset): it is lost now, not at its
    /// timeout, and counted as refused. A probe no longer pending (answered, or already
    /// expired) is left alone.
    pub fn on_refused(&mut self, seq: u32) {
        let Some(n) = self.number(seq) else { return };
        if self.pending.remove(&n).is_some() {
            self.counts.lost += 1;
            self.counts.refused += 1;
            self.events.push_back(EchoEvent::Refused { seq });
        }
    }

    /// Events since the last call, in order.
    pub fn drain_events(&mut self) -> impl Iterator<Item = EchoEvent> + '_ {
        self.events.drain(..)
    }

    pub fn counts(&self) -> LossCounts {
        self.counts
    }

    pub fn rtt_stats(&self) -> &DelayStats {
        &self.rtt
    }

    /// The report so far. Probes still pending are neither received nor lost yet.
    pub fn report(&self) -> EchoReport {
        let synced = self.all_synchronized && self.counts.received > 0;
        EchoReport {
            counts: self.counts,
            loss_ratio: self.counts.loss_ratio(),
            rtt: self.rtt.summary(),
            clock_synchronized: synced,
            forward: if synced { self.forward.summary() } else { None },
            backward: if synced { self.backward.summary() } else { None },
            one_way_implausible: self.one_way_implausible,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ms(v: u64) -> Nanos {
        Nanos(v * MS)
    }

    fn session(count: u64) -> EchoSession {
        EchoSession::new(EchoConfig { count: Some(count), interval: ms(10), timeout: ms(100) })
    }

    #[test]
    fn sends_on_schedule_and_finishes() {
        let mut s = session(3);
        assert_eq!(s.poll(ms(0)), Action::Send { seq: 0 });
        assert_eq!(s.poll(ms(0)), Action::Wait { until: ms(10) });
        assert_eq!(s.poll(ms(10)), Action::Send { seq: 1 });
        assert_eq!(s.on_reply(ms(12), 0, MS, None), ReplyKind::Ok); // rtt 12 − 1 = 11 ms
        assert_eq!(s.poll(ms(20)), Action::Send { seq: 2 });
        assert_eq!(s.on_reply(ms(25), 2, 0, None), ReplyKind::Ok);
        assert_eq!(s.on_reply(ms(26), 1, 0, None), ReplyKind::Reordered);
        assert_eq!(s.on_reply(ms(27), 1, 0, None), ReplyKind::Duplicate);
        assert_eq!(s.on_reply(ms(27), 7, 0, None), ReplyKind::Unknown);
        assert_eq!(s.poll(ms(30)), Action::Done);
        let r = s.report();
        assert_eq!(
            r.counts,
            LossCounts {
                sent: 3,
                received: 3,
                lost: 0,
                duplicates: 1,
                reordered: 1,
                late: 0,
                implausible: 0,
                refused: 0
            }
        );
        let rtt = r.rtt.unwrap();
        assert_eq!((rtt.min_ns, rtt.max_ns), (5 * MS, 16 * MS));
        assert!(!r.clock_synchronized && r.forward.is_none());
    }

    #[test]
    fn timeouts_count_as_lost_and_late_answers_do_not_revive() {
        let mut s = session(2);
        assert_eq!(s.poll(ms(0)), Action::Send { seq: 0 });
        assert_eq!(s.poll(ms(10)), Action::Send { seq: 1 });
        assert_eq!(s.poll(ms(50)), Action::Wait { until: ms(100) });
        assert_eq!(s.on_reply(ms(60), 1, 0, Some((20 * MS as i64, 30 * MS as i64))), ReplyKind::Ok);
        assert_eq!(s.poll(ms(100)), Action::Done);
        assert_eq!(s.on_reply(ms(150), 0, 0, None), ReplyKind::Late);
        let ev: Vec<_> = s.drain_events().collect();
        assert_eq!(ev[1], EchoEvent::Lost { seq: 0 });
        let r = s.report();
        assert_eq!((r.counts.sent, r.counts.received, r.counts.lost, r.counts.late), (2, 1, 1, 1));
        assert_eq!(r.loss_ratio, 0.5);
        assert!(r.clock_synchronized);
        assert_eq!(r.forward.unwrap().min_ns, 20 * MS);
    }

    /// An answer stamped before its probe was sent, or whose reflector claims to have held
    /// it longer than the whole round trip, is left out; the probe waits for a true answer. A
    /// one-way delay below minus the round trip means the clocks are not in step.
    #[test]
    fn implausible_answers_are_left_out() {
        let mut s = session(2);
        assert_eq!(s.poll(ms(10)), Action::Send { seq: 0 });
        assert_eq!(s.on_reply(ms(9), 0, 0, None), ReplyKind::Unknown);
        assert_eq!(s.on_reply(ms(12), 0, 3 * MS, None), ReplyKind::Unknown);
        // Clocks off by 5 s against a 2 ms round trip.
        assert_eq!(s.on_reply(ms(13), 0, MS, Some((-5_000_000_000, 5_002_000_000))), ReplyKind::Ok);
        assert_eq!(s.poll(ms(20)), Action::Send { seq: 1 });
        assert_eq!(s.on_reply(ms(21), 1, 0, Some((400, 600))), ReplyKind::Ok);
        assert_eq!(s.poll(ms(200)), Action::Done);
        let r = s.report();
        assert_eq!((r.counts.received, r.counts.lost, r.counts.implausible), (2, 0, 2));
        assert_eq!(r.rtt.unwrap().min_ns, MS);
        assert!(!r.clock_synchronized && r.forward.is_none());
        assert_eq!(r.one_way_implausible, 1, "the clocks claimed synchronized, and disagreed once");
    }

    #[test]
    fn every_kth_lost_is_counted_exactly() {
        let mut s = session(100);
        let mut now = ms(0);
        loop {
            match s.poll(now) {
                Action::Send { seq } => {
                    // A responder that drops every 7th packet it receives (1-based).
                    if (seq + 1) % 7 != 0 {
                        s.on_reply(now + ms(1), seq, 0, None);
                    }
                }
                Action::Wait { until } => now = until,
                Action::Done => break,
            }
        }
        let r = s.report();
        assert_eq!((r.counts.sent, r.counts.received, r.counts.lost), (100, 86, 14));
        assert_eq!(r.rtt.unwrap().p99_ns, MS);
    }

    #[test]
    fn memory_stays_bounded_in_long_sessions() {
        let mut s = EchoSession::new(EchoConfig { count: None, interval: Nanos(1), timeout: ms(1) }).counts_only();
        let mut now = Nanos(0);
        for _ in 0..20_000 {
            if let Action::Send { seq } = s.poll(now) {
                s.on_reply(now, seq, 0, None);
            }
            now += Nanos(1);
            s.drain_events().for_each(drop);
        }
        // Duplicates are told from late answers over the last 4,096 probes, in 512 bytes.
        assert_eq!(std::mem::size_of_val(&*s.answered), 512);
        let last = (s.counts().sent - 1) as u32;
        assert_eq!(s.on_reply(now, last, 0, None), ReplyKind::Duplicate);
        assert_eq!(s.on_reply(now, last + 1 - ANSWERED_WINDOW, 0, None), ReplyKind::Duplicate);
        assert_eq!(s.on_reply(now, last - ANSWERED_WINDOW, 0, None), ReplyKind::Late);
        assert_eq!(s.rtt_stats().count(), 0);
        assert_eq!(s.counts().received, s.counts().sent);
    }

    #[test]
    fn sequence_numbers_wrap_past_two_to_the_32() {
        let mut s = EchoSession::new(EchoConfig { count: None, interval: ms(1), timeout: ms(5) });
        // As if 2^32 - 2 probes had gone before (497 days at 10 ms), all answered.
        s.sent = (1 << 32) - 2;
        s.counts.sent = s.sent;
        let sent: Vec<u32> = (0..4)
            .map(|i| match s.poll(ms(i)) {
                Action::Send { seq } => seq,
                a => panic!("{a:?}"),
            })
            .collect();
        assert_eq!(sent, [u32::MAX - 1, u32::MAX, 0, 1]);
        assert_eq!(s.sent_at(0), Some(ms(2)));
        // Wire number 0 is the probe sent third, not probe 0 of 497 days ago.
        assert_eq!(s.on_reply(ms(4), 0, 0, None), ReplyKind::Ok);
        assert_eq!(s.on_reply(ms(4), u32::MAX, 0, None), ReplyKind::Reordered);
        assert_eq!(s.on_reply(ms(4), 0, 0, None), ReplyKind::Duplicate);
        // Wire number 2 now names the probe sent 2^32 before: long past its timeout.
        assert_eq!(s.on_reply(ms(4), 2, 0, None), ReplyKind::Late);
        assert_eq!(s.rtt_stats().summary().map(|r| (r.min_ns, r.max_ns)), Some((2 * MS, 3 * MS)));
        // Losses expire in send order across the wrap: u32::MAX - 1 first, then 1.
        s.stop();
        assert_eq!(s.poll(ms(5)), Action::Wait { until: ms(8) });
        assert_eq!(s.poll(ms(8)), Action::Done);
        let lost: Vec<EchoEvent> = s.drain_events().filter(|e| matches!(e, EchoEvent::Lost { .. })).collect();
        assert_eq!(lost, [EchoEvent::Lost { seq: u32::MAX - 1 }, EchoEvent::Lost { seq: 1 }]);
        assert_eq!(s.on_reply(ms(9), 1, 0, None), ReplyKind::Late);
        let c = s.counts();
        assert_eq!((c.sent, c.received, c.lost, c.late, c.reordered, c.duplicates), ((1 << 32) + 2, 2, 2, 2, 1, 1));
    }

    /// A refused probe is lost at once (no wait for its timeout) and counted as refused; a
    /// refusal of a probe already answered or expired changes nothing.
    #[test]
    fn a_refused_probe_is_lost_at_once() {
        let mut s = session(3);
        assert_eq!(s.poll(ms(0)), Action::Send { seq: 0 });
        s.on_refused(0);
        assert_eq!(s.poll(ms(1)), Action::Wait { until: ms(10) }, "nothing pending: wait only for the next send");
        assert_eq!(s.poll(ms(10)), Action::Send { seq: 1 });
        assert_eq!(s.on_reply(ms(11), 1, 0, None), ReplyKind::Ok);
        s.on_refused(1);
        s.on_refused(7);
        assert_eq!(s.poll(ms(20)), Action::Send { seq: 2 });
        s.on_refused(2);
        assert_eq!(s.poll(ms(21)), Action::Done, "done at 21 ms, not at the 120 ms timeout");
        let ev: Vec<_> = s.drain_events().collect();
        assert_eq!(ev[0], EchoEvent::Refused { seq: 0 });
        assert_eq!(ev[2], EchoEvent::Refused { seq: 2 });
        let c = s.counts();
        assert_eq!((c.sent, c.received, c.lost, c.refused), (3, 1, 2, 2));
    }

    #[test]
    fn stop_ends_an_unbounded_session() {
        let mut s = EchoSession::new(EchoConfig { count: None, interval: ms(1), timeout: ms(5) });
        assert_eq!(s.poll(ms(0)), Action::Send { seq: 0 });
        s.stop();
        assert_eq!(s.poll(ms(1)), Action::Wait { until: ms(5) });
        assert_eq!(s.poll(ms(5)), Action::Done);
        assert_eq!(s.counts().lost, 1);
    }
}
