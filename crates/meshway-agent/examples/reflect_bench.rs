//! Reflector throughput: one reflector thread (one core) against a blaster that keeps a
//! bounded window of STAMP packets in flight from several sockets. Prints answered packets per
//! second. Loopback only; bounded in time.
//!
//! cargo run --release -p meshway-agent --example reflect_bench -- [seconds] [sockets] [reflector-addr]
//!
//! With a reflector address (`meshway reflect --listen 127.0.0.1:8620 --rate-limit 0` in
//! another process), it counts answers instead, so the reflector's CPU can be read from /proc.
#![allow(clippy::print_stdout, clippy::disallowed_methods)]

use meshway_agent::reflect::{ReflectConfig, ReflectorHandle};
use meshway_probe::stamp::{ErrorEstimate, NtpTimestamp, SenderPacket};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Packets per system call on the blaster's side (sendmmsg / recvmmsg), so that the blaster
/// costs far less per packet than the reflector it measures.
const BATCH: usize = 32;

fn blast(c: &UdpSocket, stop: &AtomicBool, replies: &AtomicU64) {
    use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;
    let fd = c.as_raw_fd();
    let pkts: Vec<[u8; 44]> = (0..BATCH as u32)
        .map(|seq| {
            let mut b = [0u8; 44];
            SenderPacket { seq, timestamp: NtpTimestamp::default(), error: ErrorEstimate::UNSYNCHRONIZED }
                .encode(&mut b, 44)
                .unwrap();
            b
        })
        .collect();
    let addrs: Vec<Option<SockaddrStorage>> = vec![None; BATCH];
    let mut bufs = vec![[0u8; 64]; BATCH];
    let mut outstanding = 0usize;
    while !stop.load(Ordering::Relaxed) {
        if outstanding < 2 * BATCH {
            let iovs: Vec<[IoSlice; 1]> = pkts.iter().map(|p| [IoSlice::new(p)]).collect();
            let mut hdrs = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
            if let Ok(r) = sendmmsg(fd, &mut hdrs, &iovs, &addrs, [], MsgFlags::empty()) {
                outstanding += r.count();
            }
        }
        let mut rx: Vec<[IoSliceMut; 1]> = bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
        let mut hdrs = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        match recvmmsg(fd, &mut hdrs, &mut rx, MsgFlags::MSG_WAITFORONE, None) {
            Ok(r) => {
                let n = r.count();
                outstanding = outstanding.saturating_sub(n);
                replies.fetch_add(n as u64, Ordering::Relaxed);
            }
            // Nothing within the socket's 1 ms timeout: the rest were dropped; refill.
            Err(_) => outstanding = 0,
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5).min(60);
    let sockets: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4).clamp(1, 64);
    let external: Option<std::net::SocketAddr> = args.next().and_then(|a| a.parse().ok());
    let r = match external {
        Some(_) => None,
        None => {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket2::SockRef::from(&sock).set_recv_buffer_size(8 << 20).unwrap();
            Some(ReflectorHandle::spawn(sock, ReflectConfig { rate_limit_pps: 0, ..Default::default() }).unwrap())
        }
    };
    let target = external.unwrap_or_else(|| r.as_ref().map(|r| r.addr).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let replies = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..sockets {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.connect(target).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let (stop, replies) = (stop.clone(), replies.clone());
        threads.push(std::thread::spawn(move || blast(&c, &stop, &replies)));
    }
    std::thread::sleep(Duration::from_secs(1)); // warm-up
    let (t0, a0) = (Instant::now(), replies.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs(secs));
    let (dt, a1) = (t0.elapsed().as_secs_f64(), replies.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    println!("answers received {:.0} packets/s over {:.1}s ({} sockets)", (a1 - a0) as f64 / dt, dt, sockets);
    if let Some(r) = r {
        let t = r.stop();
        println!("reflector totals: received {}, answered {}, malformed {}", t.received, t.answered, t.malformed);
    }
}
