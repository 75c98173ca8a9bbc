//! Kernel receive timestamps for UDP probes (`SO_TIMESTAMPNS`): the time the kernel took the
//! datagram off the wire, so a round trip excludes the time the prober waited to be scheduled
//! before it read the reply. The timestamps are CLOCK_REALTIME; [`to_mono`] maps one onto the
//! monotonic clock the probe state machines use.

use crate::clock;
use meshway_units::Nanos;
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage};
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Asks the kernel to stamp every datagram `sock` receives. False where it refuses (the
/// prober then falls back to reading the clock after the receive).
pub fn enable(sock: &UdpSocket) -> bool {
    setsockopt(sock, sockopt::ReceiveTimestampns, &true).is_ok()
}

/// One datagram: its length, sender and kernel receive time (ns since the Unix epoch).
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    pub from: Option<SocketAddr>,
    pub kernel_ns: Option<u64>,
}

/// Reads one datagram into `buf`; `dont_wait` makes an empty socket answer `WouldBlock`.
pub fn recv(sock: &UdpSocket, buf: &mut [u8], dont_wait: bool) -> io::Result<Received> {
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut iov = [IoSliceMut::new(buf)];
    let flags = if dont_wait { MsgFlags::MSG_DONTWAIT } else { MsgFlags::empty() };
    let m = recvmsg::<SockaddrStorage>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    let mut kernel_ns = None;
    if let Ok(cmsgs) = m.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                let ns = i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec());
                kernel_ns = u64::try_from(ns).ok();
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
        a.send_to(b"hello", b.local_addr().unwrap()).unwrap();
        // Read it 20 ms after it arrived: the stamp still says when it arrived.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let before_read = clock::mono();
        let mut buf = [0u8; 16];
        let r = recv(&b, &mut buf, false).unwrap();
        assert_eq!((r.len, &buf[..5]), (5, &b"hello"[..]));
        assert_eq!(r.from, Some(a.local_addr().unwrap()));
        let at = to_mono(r.kernel_ns);
        assert!(
            before_read.saturating_sub(at) >= Nanos(15_000_000),
            "stamped {:?} before the read",
            before_read.saturating_sub(at)
        );
        // An empty socket does not block when asked not to.
        let e = recv(&b, &mut buf, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
