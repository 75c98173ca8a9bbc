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
        threads.push(std::thread::spawn(move || {
            let mut b = [0u8; 44];
            let mut rx = [0u8; 64];
            let mut seq = 0u32;
            let mut outstanding = 0i64;
            while !stop.load(Ordering::Relaxed) {
                while outstanding < 32 {
                    SenderPacket { seq, timestamp: NtpTimestamp::default(), error: ErrorEstimate::UNSYNCHRONIZED }
                        .encode(&mut b, 44)
                        .unwrap();
                    if c.send(&b).is_ok() {
                        seq = seq.wrapping_add(1);
                        outstanding += 1;
                    }
                }
                match c.recv(&mut rx) {
                    Ok(_) => {
                        outstanding -= 1;
                        replies.fetch_add(1, Ordering::Relaxed);
                    }
                    // Lost in a full buffer: forget it so the window refills.
                    Err(_) => outstanding = 0,
                }
            }
        }));
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
