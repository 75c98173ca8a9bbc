//! Kernel timestamps for UDP probes: receive (`SO_TIMESTAMPNS`, or `SO_TIMESTAMPING` software
//! stamps) and, where [`enable_tx`] succeeds, transmit (`SO_TIMESTAMPING` with
//! `SOF_TIMESTAMPING_TX_SOFTWARE`: the time the datagram was handed to the device, read back
//! from the socket's error queue with an id counting the datagrams sent). A round trip then
//! runs from the kernel's send to the kernel's receive, excluding the time the prober took
//! to get a probe out and to be scheduled to read the reply. The stamps are CLOCK_REALTIME;
//! [`to_mono`] maps one onto the monotonic clock the probe state machines use.

use crate::clock;
use meshway_units::Nanos;
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage, TimestampingFlag,
};
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Asks the kernel to stamp every datagram `sock` receives. False where it refuses (the
/// prober then falls back to reading the clock after the receive).
pub fn enable(sock: &impl std::os::fd::AsFd) -> bool {
    setsockopt(sock, sockopt::ReceiveTimestampns, &true).is_ok()
}

/// Asks for software receive and transmit stamps (`SO_TIMESTAMPING`), transmit stamps carrying
/// an id that counts the datagrams sent from 0; replaces [`enable`]'s receive stamps. False
/// where the kernel refuses (then call [`enable`]).
pub fn enable_tx(sock: &UdpSocket) -> bool {
    let flags = TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE
        | TimestampingFlag::SOF_TIMESTAMPING_RX_SOFTWARE
        | TimestampingFlag::SOF_TIMESTAMPING_TX_SOFTWARE
        | TimestampingFlag::SOF_TIMESTAMPING_OPT_ID
        | TimestampingFlag::SOF_TIMESTAMPING_OPT_TSONLY;
    setsockopt(sock, sockopt::Timestamping, &flags).is_ok()
}

/// Transmit stamps waiting on `sock`'s error queue, as (datagram id, ns since the Unix epoch).
/// Never blocks; reads at most 4,096.
pub fn tx_stamps(sock: &UdpSocket, out: &mut Vec<(u32, u64)>) {
    let mut buf = [0u8; 64];
    for _ in 0..4_096 {
        let mut cmsg =
            nix::cmsg_space!(nix::sys::socket::Timestamps, nix::libc::sock_extended_err, nix::libc::sockaddr_in6);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
        let Ok(m) = recvmsg::<SockaddrStorage>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) else { return };
        let (mut id, mut ns) = (None, None);
        if let Ok(cmsgs) = m.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::ScmTimestampsns(t) => ns = nanos(&t.system),
                    ControlMessageOwned::Ipv4RecvErr(e, _) | ControlMessageOwned::Ipv6RecvErr(e, _)
                        if e.ee_origin == nix::libc::SO_EE_ORIGIN_TIMESTAMPING =>
                    {
                        id = Some(e.ee_data)
                    }
                    _ => {}
                }
            }
        }
        if let (Some(id), Some(ns)) = (id, ns) {
            out.push((id, ns));
        }
    }
}

/// The datagrams a socket with transmit stamps sent and that have no stamp yet: the kernel
/// numbers them from 0 in the order sent, and gives the number back with the stamp.
#[derive(Debug)]
pub struct TxQueue<T> {
    unstamped: std::collections::VecDeque<(u32, T)>,
    next: u32,
}

impl<T: Copy> TxQueue<T> {
    /// At most this many datagrams wait for their stamp; older ones are forgotten.
    const KEPT: usize = 65_536;

    pub fn new() -> TxQueue<T> {
        TxQueue { unstamped: Default::default(), next: 0 }
    }

    /// A datagram tagged `tag` was sent (call only for sends that succeeded).
    pub fn sent(&mut self, tag: T) {
        if self.unstamped.len() == Self::KEPT {
            self.unstamped.pop_front();
        }
        self.unstamped.push_back((self.next, tag));
        self.next = self.next.wrapping_add(1);
    }

    /// The tag of the datagram stamp `id` belongs to; datagrams before it that never got a
    /// stamp are dropped on the way.
    pub fn stamped(&mut self, id: u32) -> Option<T> {
        while let Some(&(qid, tag)) = self.unstamped.front() {
            if qid.wrapping_sub(id) as i32 > 0 {
                return None;
            }
            self.unstamped.pop_front();
            if qid == id {
                return Some(tag);
            }
        }
        None
    }
}

impl<T: Copy> Default for TxQueue<T> {
    fn default() -> Self {
        TxQueue::new()
    }
}

fn nanos(ts: &nix::sys::time::TimeSpec) -> Option<u64> {
    u64::try_from(i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec())).ok().filter(|&n| n > 0)
}

/// One datagram: its length, sender and kernel receive time (ns since the Unix epoch).
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    pub from: Option<SocketAddr>,
    pub kernel_ns: Option<u64>,
}

/// Reads one datagram into `buf`; `dont_wait` makes an empty socket answer `WouldBlock`.
pub fn recv(sock: &impl AsRawFd, buf: &mut [u8], dont_wait: bool) -> io::Result<Received> {
    // Room for both kinds of stamp, should both be on.
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec, nix::sys::socket::Timestamps);
    let mut iov = [IoSliceMut::new(buf)];
    let flags = if dont_wait { MsgFlags::MSG_DONTWAIT } else { MsgFlags::empty() };
    let m = recvmsg::<SockaddrStorage>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    let mut kernel_ns = None;
    if let Ok(cmsgs) = m.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::ScmTimestampns(ts) => kernel_ns = nanos(&ts),
                ControlMessageOwned::ScmTimestampsns(t) => kernel_ns = nanos(&t.system),
                _ => {}
            }
        }
    }
    let from = m.address.and_then(|a: SockaddrStorage| {
        if let Some(v4) = a.as_sockaddr_in() {
            Some(SocketAddr::V4((*v4).into()))
        } else {
            a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
        }
    });
    Ok(Received { len: m.bytes, from, kernel_ns })
}

/// The monotonic time of a kernel receive stamp: now on the monotonic clock, less how long
/// ago the stamp is on the wall clock (never later than now).
pub fn to_mono(kernel_ns: Option<u64>) -> Nanos {
    let (mono, wall) = (clock::mono(), clock::unix_nanos());
    match kernel_ns {
        Some(k) => mono.saturating_sub(Nanos(wall.saturating_sub(k))),
        None => mono,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_carries_a_kernel_stamp_taken_before_it_is_read() {
        // The monotonic clock counts from its first reading in the process.
        let _ = clock::mono();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(enable(&b));
        // The first socket in the system to ask for stamps turns them on through a deferred
        // kernel work item (net_enable_timestamp); until it has run, a datagram is stamped
        // when it is read. On a busy host that can take a while: up to 100 tries, 50 ms apart.
        let mut buf = [0u8; 16];
        let mut gap = Nanos::ZERO;
        for _ in 0..100 {
            a.send_to(b"hello", b.local_addr().unwrap()).unwrap();
            // Read it 20 ms after it arrived: the stamp still says when it arrived.
            std::thread::sleep(std::time::Duration::from_millis(20));
            let before_read = clock::mono();
            let r = recv(&b, &mut buf, false).unwrap();
            assert_eq!((r.len, &buf[..5]), (5, &b"hello"[..]));
            assert_eq!(r.from, Some(a.local_addr().unwrap()));
            gap = before_read.saturating_sub(to_mono(r.kernel_ns));
            if gap >= Nanos(15_000_000) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(gap >= Nanos(15_000_000), "stamped {gap:?} before the read");
        // Transmit stamps: one per datagram sent, ids from 0, in the order sent, each before
        // the datagram could be read.
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(enable_tx(&c));
        assert!(enable_tx(&b));
        let t0 = clock::unix_nanos();
        for _ in 0..3 {
            c.send_to(b"x", b.local_addr().unwrap()).unwrap();
        }
        let mut stamps = Vec::new();
        tx_stamps(&c, &mut stamps);
        assert_eq!(stamps.iter().map(|s| s.0).collect::<Vec<_>>(), vec![0, 1, 2]);
        // A queue of what was sent finds each stamp's datagram, skipping any never stamped.
        let mut q = TxQueue::new();
        for tag in ['a', 'b', 'c'] {
            q.sent(tag);
        }
        assert_eq!((q.stamped(1), q.stamped(0), q.stamped(2), q.stamped(3)), (Some('b'), None, Some('c'), None));
        for (id, tx) in stamps {
            let r = recv(&b, &mut buf, false).unwrap();
            let rx = r.kernel_ns.expect("an SO_TIMESTAMPING receive stamp");
            assert!(tx >= t0 && tx <= rx, "datagram {id}: sent {tx}, received {rx}");
        }
        // An empty socket does not block when asked not to.
        let e = recv(&b, &mut buf, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
