//! Event-driven UDP (STAMP) probing: every udp target of the agent in one thread, on a few
//! shared sockets, with kernel receive timestamps.
//!
//! A thread per target measured its own scheduler: under a busy CPU the reply waited in the
//! socket until the thread ran, and that wait was counted as round trip. Here one loop sends
//! each probe when its [`EchoSession`] asks, sleeps in `poll(2)` until the next deadline or a
//! reply, and takes the reply's arrival time from the kernel (`SO_TIMESTAMPNS`, see
//! [`crate::kstamp`]), so the round trip ends when the datagram arrived, not when it was read.
//!
//! [`UdpProbes`] is the sans-IO part: it is given the time and the datagrams, and it answers
//! the datagrams to send and the samples measured. [`UdpSockets`] is the runtime around it, a
//! [`Prober`] that `monitor::run` drives.
//!
//! Sockets: a target's replies are told apart by their source address, so a socket never
//! carries two targets with the same address (or the same DSCP and family mismatch): targets
//! are spread over as many sockets as the most repeated address needs. 10,000 targets at
//! distinct addresses share one socket per family and DSCP.

use crate::kstamp;
use crate::monitor::{Now, Prober};
use meshway_probe::echo::{Action, EchoConfig, EchoEvent, EchoSession};
use meshway_probe::objective::Sample;
use meshway_probe::stamp::{ErrorEstimate, NtpTimestamp, ReflectorPacket, SenderPacket, BASE_LEN};
use meshway_probe::stamp_auth::{self, AUTH_LEN};
use meshway_units::Nanos;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;

/// One udp target as the core sees it.
#[derive(Clone)]
pub struct UdpTarget {
    pub addr: SocketAddr,
    pub interval: Nanos,
    pub timeout: Nanos,
    /// Probe size in bytes (at least STAMP's 44, or 112 authenticated).
    pub size: usize,
    pub dscp: u8,
    /// STAMP authenticated mode (RFC 8762 section 4.1.1).
    pub key: Option<std::sync::Arc<stamp_auth::Key>>,
    /// When its first probe goes (monotonic), to spread targets over their interval.
    pub first: Nanos,
}

/// Which socket each target uses, and what each socket is (family, DSCP): targets with the
/// same family and DSCP share a socket unless they share an address.
pub fn shard(targets: &[UdpTarget]) -> (Vec<usize>, Vec<(bool, u8)>) {
    let mut sockets: Vec<(bool, u8)> = Vec::new();
    let mut used: Vec<std::collections::HashSet<SocketAddr>> = Vec::new();
    let assign = targets
        .iter()
        .map(|t| {
            let kind = (t.addr.is_ipv4(), t.dscp);
            let found = (0..sockets.len()).find(|&s| sockets[s] == kind && !used[s].contains(&t.addr));
            let s = found.unwrap_or_else(|| {
                sockets.push(kind);
                used.push(Default::default());
                sockets.len() - 1
            });
            used[s].insert(t.addr);
            s
        })
        .collect();
    (assign, sockets)
}

/// Transmit delays kept per target (probes whose reply has not come yet).
const TX_KEPT: usize = 64;

/// A datagram to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub target: usize,
    pub seq: u32,
    pub socket: usize,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// The sans-IO probe core: sessions, deadlines and the map from (socket, source) to target.
pub struct UdpProbes {
    targets: Vec<UdpTarget>,
    socket_of: Vec<usize>,
    sessions: Vec<EchoSession>,
    /// Per target the deadline queued for it (a popped entry that differs is stale).
    due: Vec<Nanos>,
    heap: BinaryHeap<Reverse<(Nanos, usize)>>,
    by_source: HashMap<(usize, SocketAddr), usize>,
    events: Vec<(usize, EchoEvent)>,
    sockets: Vec<(bool, u8)>,
    /// Per target, how long after the session's send time the kernel sent recent probes
    /// (seq, delay), from transmit stamps; at most [`TX_KEPT`].
    tx_delay: Vec<std::collections::VecDeque<(u32, Nanos)>>,
    /// Datagrams that answered no target (unknown source, bad size or packet, failed HMAC).
    pub ignored: u64,
}

impl UdpProbes {
    pub fn new(targets: Vec<UdpTarget>) -> UdpProbes {
        let (socket_of, sockets) = shard(&targets);
        let by_source = targets.iter().enumerate().map(|(i, t)| ((socket_of[i], t.addr), i)).collect();
        let sessions = targets
            .iter()
            .map(|t| {
                EchoSession::new(EchoConfig { count: None, interval: t.interval, timeout: t.timeout }).counts_only()
            })
            .collect();
        let due: Vec<Nanos> = targets.iter().map(|t| t.first).collect();
        let heap = due.iter().enumerate().map(|(i, &d)| Reverse((d, i))).collect();
        let tx_delay = vec![Default::default(); targets.len()];
        UdpProbes {
            targets,
            socket_of,
            sessions,
            due,
            heap,
            by_source,
            events: Vec::new(),
            sockets,
            tx_delay,
            ignored: 0,
        }
    }

    /// The sockets to open: (IPv4, DSCP) each.
    pub fn sockets(&self) -> &[(bool, u8)] {
        &self.sockets
    }

    pub fn targets(&self) -> &[UdpTarget] {
        &self.targets
    }

    /// The next probe due at or before `now`, stamped `wall` (its STAMP timestamp); the
    /// session counts it as sent at `now`, so send it at once.
    pub fn next_send(&mut self, now: Nanos, wall: NtpTimestamp) -> Option<Outgoing> {
        while let Some(&Reverse((at, i))) = self.heap.peek() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if at != self.due[i] {
                continue; // replaced by a later deadline
            }
            loop {
                match self.sessions[i].poll(now) {
                    Action::Send { seq } => {
                        if let Some(o) = self.encode(i, seq, wall) {
                            self.reschedule(i, now);
                            return Some(o);
                        }
                    }
                    Action::Wait { until } => {
                        self.schedule(i, until);
                        break;
                    }
                    Action::Done => break,
                }
            }
            self.collect(i);
        }
        None
    }

    /// After a send, the target comes up again at once: what its session wants next (a wait,
    /// or another probe straight away when the loop has fallen an interval behind) is asked
    /// when this entry is popped, so every probe a session hands out is sent. (Asking here
    /// and keeping only a wait dropped the target for good the first time the loop ran late.)
    fn reschedule(&mut self, i: usize, now: Nanos) {
        self.schedule(i, now);
        self.collect(i);
    }

    fn schedule(&mut self, i: usize, until: Nanos) {
        self.due[i] = until;
        self.heap.push(Reverse((until, i)));
    }

    fn encode(&self, i: usize, seq: u32, wall: NtpTimestamp) -> Option<Outgoing> {
        let t = &self.targets[i];
        let p = SenderPacket { seq, timestamp: wall, error: ErrorEstimate::UNSYNCHRONIZED };
        let min = if t.key.is_some() { AUTH_LEN } else { BASE_LEN };
        let size = t.size.max(min);
        let mut bytes = vec![0u8; size];
        let r = match &t.key {
            Some(k) => stamp_auth::encode_sender(&p, k, &mut bytes, size),
            None => p.encode(&mut bytes, size),
        };
        r.ok()?;
        Some(Outgoing { target: i, seq, socket: self.socket_of[i], to: t.addr, bytes })
    }

    /// The earliest deadline of any target (to sleep until).
    pub fn next_deadline(&mut self) -> Option<Nanos> {
        while let Some(&Reverse((at, i))) = self.heap.peek() {
            if at == self.due[i] {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// The kernel sent probe `seq` of `target` at `at` (monotonic, from a transmit stamp): its
    /// round trip starts there rather than when [`UdpProbes::next_send`] handed it out.
    pub fn on_transmitted(&mut self, target: usize, seq: u32, at: Nanos) {
        let Some(sent) = self.sessions.get(target).and_then(|s| s.sent_at(seq)) else { return };
        let q = &mut self.tx_delay[target];
        if q.len() == TX_KEPT {
            q.pop_front();
        }
        q.push_back((seq, at.saturating_sub(sent)));
    }

    /// A datagram that arrived at `at` (monotonic) on `socket` from `from`.
    pub fn on_datagram(&mut self, socket: usize, from: SocketAddr, bytes: &[u8], at: Nanos) {
        let Some(&i) = self.by_source.get(&(socket, canonical(from))) else {
            self.ignored += 1;
            return;
        };
        let t = &self.targets[i];
        let size = t.size.max(if t.key.is_some() { AUTH_LEN } else { BASE_LEN });
        let decoded = match &t.key {
            _ if bytes.len() != size => None,
            Some(k) => stamp_auth::decode_reflector(bytes, k).ok(),
            None => ReflectorPacket::decode(bytes).ok(),
        };
        let Some(r) = decoded else {
            self.ignored += 1;
            return;
        };
        // The time between the session's send and the kernel's comes off the round trip.
        let q = &mut self.tx_delay[i];
        let delay = q.iter().position(|d| d.0 == r.sender_seq).and_then(|k| q.remove(k)).map_or(Nanos::ZERO, |d| d.1);
        self.sessions[i].on_reply(at.saturating_sub(delay), r.sender_seq, r.turnaround_nanos(), None);
        // A reply can move the next deadline later, never earlier: the queued one stays.
        self.collect(i);
    }

    fn collect(&mut self, i: usize) {
        let events = &mut self.events;
        events.extend(self.sessions[i].drain_events().map(|e| (i, e)));
    }

    /// Replies and losses since the last call: (target, event).
    pub fn drain(&mut self) -> std::vec::Drain<'_, (usize, EchoEvent)> {
        self.events.drain(..)
    }
}

/// IPv4-mapped IPv6 sources compare as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

/// The runtime around [`UdpProbes`]: its sockets, each with a 4 MiB receive buffer where the
/// system allows and kernel transmit and receive stamps. As a [`Prober`] it reads the transmit
/// stamps and every waiting reply, sends what is due (each send stamped when it goes, and
/// again by the kernel), and reports each reply and loss as a sample; `wait` sleeps in
/// `poll(2)` until a reply arrives or the deadline passes.
pub struct UdpSockets {
    core: UdpProbes,
    /// Each socket, and whether it gives transmit stamps.
    socks: Vec<Option<(UdpSocket, bool)>>,
    /// Per socket with transmit stamps: the probes sent and not yet stamped (target, seq).
    sent: Vec<Option<kstamp::TxQueue<(usize, u32)>>>,
    timeouts: Vec<Nanos>,
    buf: Vec<u8>,
    stamps: Vec<(u32, u64)>,
}

impl UdpSockets {
    /// Opens the sockets `core` needs; a socket that cannot be opened is reported, and its
    /// targets get no samples.
    pub fn open(core: UdpProbes) -> (UdpSockets, Vec<String>) {
        let mut errors = Vec::new();
        let mut socks = Vec::new();
        for &(v4, dscp) in core.sockets() {
            match open(v4, dscp) {
                Ok(s) => socks.push(Some(s)),
                Err(e) => {
                    errors.push(format!("cannot open a udp socket: {e}"));
                    socks.push(None);
                }
            }
        }
        let sent = socks.iter().map(|s| s.as_ref().filter(|s| s.1).map(|_| kstamp::TxQueue::new())).collect();
        let timeouts = core.targets().iter().map(|t| t.timeout).collect();
        (UdpSockets { core, socks, sent, timeouts, buf: vec![0u8; 65_536], stamps: Vec::new() }, errors)
    }
}

impl Prober for UdpSockets {
    fn poll(&mut self, now: Now, out: &mut dyn FnMut(usize, Sample)) {
        let core = &mut self.core;
        // Transmit stamps, then replies: one that arrived in time but waited in the socket
        // while this thread was not running must be seen before the session's timeout
        // declares it lost.
        for (k, s) in self.socks.iter().enumerate() {
            let (Some((s, _)), Some(q)) = (s, &mut self.sent[k]) else { continue };
            self.stamps.clear();
            kstamp::tx_stamps(s, &mut self.stamps);
            for &(id, ns) in &self.stamps {
                if let Some((target, seq)) = q.stamped(id) {
                    core.on_transmitted(target, seq, kstamp::to_mono(Some(ns)));
                }
            }
        }
        for (k, s) in self.socks.iter().enumerate() {
            let Some((s, _)) = s else { continue };
            // Every datagram carries its own arrival stamp; bounded per socket per pass.
            for _ in 0..4_096 {
                match kstamp::recv(s, &mut self.buf, true) {
                    Ok(r) => {
                        if let Some(from) = r.from {
                            core.on_datagram(k, from, &self.buf[..r.len], kstamp::to_mono(r.kernel_ns));
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        // Each send is stamped when it goes (the drains above take time), never before `now`.
        let mut at = crate::clock::mono().max(now.mono);
        while let Some(o) = core.next_send(at, crate::clock::ntp()) {
            // A send that fails is a probe lost; the session times it out.
            if let Some((s, _)) = &self.socks[o.socket] {
                if s.send_to(&o.bytes, o.to).is_ok() {
                    if let Some(q) = &mut self.sent[o.socket] {
                        q.sent((o.target, o.seq));
                    }
                }
            }
            at = crate::clock::mono().max(at);
        }
        for (i, e) in core.drain() {
            let sample = match e {
                EchoEvent::Reply { rtt_ns: Some(r), .. } => Sample { at_ns: now.unix_ns, rtt_ns: Some(r), value: None },
                // Stamped with its send time, so it falls in the same window as its neighbours.
                EchoEvent::Lost { .. } => {
                    Sample { at_ns: now.unix_ns.saturating_sub(self.timeouts[i].get()), rtt_ns: None, value: None }
                }
                _ => continue,
            };
            out(i, sample);
        }
    }

    fn poll_timeout(&mut self) -> Option<Nanos> {
        self.core.next_deadline()
    }

    fn wait(&mut self, until: Nanos) {
        let wait = until.saturating_sub(crate::clock::mono());
        let mut fds: Vec<nix::poll::PollFd<'_>> = self
            .socks
            .iter()
            .flatten()
            .map(|(s, _)| nix::poll::PollFd::new(s.as_fd(), nix::poll::PollFlags::POLLIN))
            .collect();
        if fds.is_empty() {
            std::thread::sleep(crate::clock::dur(wait));
            return;
        }
        // Round up to whole milliseconds: a probe goes at most 1 ms late, and its send time
        // is read when it goes.
        let ms = u16::try_from(wait.get().div_ceil(1_000_000)).unwrap_or(u16::MAX);
        let _ = nix::poll::poll(&mut fds, ms);
    }
}

fn open(v4: bool, dscp: u8) -> io::Result<(UdpSocket, bool)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(if v4 { Domain::IPV4 } else { Domain::IPV6 }, Type::DGRAM, Some(Protocol::UDP))?;
    if dscp != 0 {
        if v4 {
            s.set_tos_v4(u32::from(dscp) << 2)?;
        } else {
            s.set_tclass_v6(u32::from(dscp) << 2)?;
        }
    }
    let any: SocketAddr = if v4 { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
    s.bind(&any.into())?;
    let sock: UdpSocket = s.into();
    // Replies from thousands of targets can arrive together: a large buffer keeps them (past
    // rmem_max as root, as the reflector's).
    let _ = crate::reflect::set_recv_buffer(&sock, 4 << 20);
    // Transmit and receive stamps; failing that, receive stamps alone.
    let tx = kstamp::enable_tx(&sock);
    if !tx {
        kstamp::enable(&sock);
    }
    Ok((sock, tx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshway_probe::stamp::ReflectorPacket;

    fn target(addr: &str, first_ms: u64) -> UdpTarget {
        UdpTarget {
            addr: addr.parse().unwrap(),
            interval: Nanos(1_000_000_000),
            timeout: Nanos(500_000_000),
            size: 44,
            dscp: 0,
            key: None,
            first: Nanos(first_ms * 1_000_000),
        }
    }

    #[test]
    fn targets_share_a_socket_unless_they_share_an_address_family_or_dscp() {
        let mut t = vec![target("10.0.0.1:862", 0), target("10.0.0.2:862", 0), target("10.0.0.1:862", 0)];
        t.push(target("[2001:db8::1]:862", 0));
        let mut marked = target("10.0.0.3:862", 0);
        marked.dscp = 46;
        t.push(marked);
        let (assign, sockets) = shard(&t);
        assert_eq!(assign, vec![0, 0, 1, 2, 3]);
        assert_eq!(sockets, vec![(true, 0), (true, 0), (false, 0), (true, 46)]);
    }

    /// A fake network: the reflector answers each probe `delay` later, holding it 1 us.
    fn answer(o: &Outgoing, wall: NtpTimestamp) -> Vec<u8> {
        let s = SenderPacket::decode(&o.bytes).unwrap();
        let r = ReflectorPacket {
            seq: s.seq,
            tx_timestamp: wall,
            error: ErrorEstimate::UNSYNCHRONIZED,
            rx_timestamp: wall,
            sender_seq: s.seq,
            sender_timestamp: s.timestamp,
            sender_error: s.error,
            sender_ttl: 64,
            ssid: 0,
        };
        let mut b = vec![0u8; o.bytes.len()];
        r.encode(&mut b, o.bytes.len()).unwrap();
        b
    }

    #[test]
    fn each_target_gets_its_own_round_trips_and_losses_by_source_address() {
        // Two targets at one address (two sockets) and one elsewhere. Target 1's replies are
        // dropped; the others answer after 3 ms and 7 ms.
        let mut core =
            UdpProbes::new(vec![target("10.0.0.1:862", 0), target("10.0.0.1:862", 10), target("10.0.0.2:862", 20)]);
        let wall = NtpTimestamp::from_unix_nanos(1_700_000_000_000_000_000);
        let mut rtts: Vec<Vec<u64>> = vec![Vec::new(); 3];
        let mut lost = [0u32; 3];
        let mut pending: Vec<(Nanos, usize, SocketAddr, Vec<u8>)> = Vec::new();
        let mut now = Nanos::ZERO;
        while now < Nanos(5_100_000_000) {
            while let Some(o) = core.next_send(now, wall) {
                let delay = [3_000_000, 0, 7_000_000][o.target];
                if o.target != 1 {
                    pending.push((now + Nanos(delay), o.socket, o.to, answer(&o, wall)));
                }
            }
            pending.retain(|(at, s, from, b)| {
                if *at <= now {
                    core.on_datagram(*s, *from, b, *at);
                    false
                } else {
                    true
                }
            });
            for (i, e) in core.drain() {
                match e {
                    EchoEvent::Reply { rtt_ns: Some(r), .. } => rtts[i].push(r),
                    EchoEvent::Lost { .. } => lost[i] += 1,
                    _ => {}
                }
            }
            now += Nanos(1_000_000);
        }
        // Probes at 0-5 s plus each splay, six each; a loss is declared 500 ms after its probe,
        // so target 1 has five by 5.1 s.
        assert_eq!(rtts[0], vec![3_000_000; 6]);
        assert_eq!(rtts[2], vec![7_000_000; 6]);
        assert!(rtts[1].is_empty());
        assert_eq!(lost, [0, 5, 0]);
        // A datagram from an unknown source, or of the wrong size, answers nothing.
        core.on_datagram(0, "10.9.9.9:862".parse().unwrap(), &[0u8; 44], now);
        core.on_datagram(0, "10.0.0.1:862".parse().unwrap(), &[0u8; 12], now);
        assert_eq!(core.ignored, 2);
        assert_eq!(core.drain().count(), 0);
    }

    #[test]
    fn a_transmit_stamp_moves_the_start_of_the_round_trip() {
        // Handed out at 0, sent by the kernel 0.5 ms later, answered at 3 ms: 2.5 ms.
        let mut core = UdpProbes::new(vec![target("10.0.0.1:862", 0)]);
        let wall = NtpTimestamp::from_unix_nanos(1_700_000_000_000_000_000);
        let o = core.next_send(Nanos::ZERO, wall).unwrap();
        core.on_transmitted(o.target, o.seq, Nanos(500_000));
        core.on_datagram(o.socket, o.to, &answer(&o, wall), Nanos(3_000_000));
        let rtts: Vec<u64> = core
            .drain()
            .filter_map(|(_, e)| match e {
                EchoEvent::Reply { rtt_ns, .. } => rtt_ns,
                _ => None,
            })
            .collect();
        assert_eq!(rtts, vec![2_500_000]);
        // A stamp for a probe never sent changes nothing.
        core.on_transmitted(0, 99, Nanos(1));
        assert!(core.tx_delay[0].is_empty());
    }

    #[test]
    fn a_loop_that_runs_late_keeps_probing_every_target() {
        // Two targets at 10 ms; the loop stalls for 2 s at 1 s, then runs every 1 ms again.
        // After the stall each session sends its late probe and one more at once (the
        // session's catch-up), then keeps its interval from there.
        let mut t = vec![target("10.0.0.1:862", 0), target("10.0.0.2:862", 3)];
        for x in &mut t {
            x.interval = Nanos(10_000_000);
        }
        let mut core = UdpProbes::new(t);
        let wall = NtpTimestamp::from_unix_nanos(1_700_000_000_000_000_000);
        let mut sent = [0u32; 2];
        let mut now = Nanos::ZERO;
        while now < Nanos(5_000_000_000) {
            while let Some(o) = core.next_send(now, wall) {
                sent[o.target] += 1;
            }
            core.drain().for_each(drop);
            now += if now == Nanos(1_000_000_000) { Nanos(2_000_000_000) } else { Nanos(1_000_000) };
        }
        // 0-1 s: 101 probes (100 for the one starting at 3 ms); after the stall, two at 3 s
        // and then every 10 ms from 3.01 s to 4.99 s: 201 more.
        assert_eq!(sent, [101 + 201, 100 + 201]);
        assert!(core.next_deadline().is_some());
    }
}
