//! The part of the testbed that touches the system: `ip` and `tc` (iproute2) to create and
//! remove namespaces, and the processes that run measured TCP flows inside them. Root only.
//!
//! Control goes through the `ip` and `tc` commands, never a shell: every argument is passed
//! as its own `argv` entry, and many commands go to one `ip -batch` per namespace. We chose
//! the commands over a netlink crate to keep the build lean and because they are what
//! operators read and debug with.

use crate::plan::*;
use crate::TestbedError;
use meshway_fabric::{Catalog, Fabric, Scenario};
use serde::Serialize;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs a command with arguments (no shell); `input` goes to its stdin.
fn cmd(prog: &str, args: &[&str], input: Option<&str>) -> Result<String, TestbedError> {
    let mut c = Command::new(prog);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if input.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut child = c.spawn().map_err(|source| TestbedError::Spawn { prog: prog.to_string(), source })?;
    if let Some(text) = input {
        if let Some(mut s) = child.stdin.take() {
            s.write_all(text.as_bytes())?;
        }
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(TestbedError::Command {
            prog: prog.to_string(),
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads, parses and builds a scenario file.
pub fn load(file: &Path, cat: &Catalog) -> Result<(Scenario, Fabric), TestbedError> {
    let text =
        std::fs::read_to_string(file).map_err(|source| TestbedError::Read { path: file.to_path_buf(), source })?;
    let s = Scenario::parse(&text, &file.display().to_string())?;
    let f = s.build(cat)?;
    Ok((s, f))
}

/// What `up` built.
#[derive(Debug, Clone, Serialize)]
pub struct UpSummary {
    pub namespaces: usize,
    pub switches: usize,
    pub links: usize,
    pub scale: u64,
    pub state: PathBuf,
}

/// Plans and creates the testbed of `file`, recording it in `state_path` first so that
/// [`down`] can remove it even after a crash. On failure everything created is removed.
pub fn up(file: &Path, scale: u64, prefix: &str, state_path: &Path, cat: &Catalog) -> Result<UpSummary, TestbedError> {
    check_prefix(prefix)?;
    let (_, f) = load(file, cat)?;
    let p = plan(&f, cat, prefix, scale)?;
    if state_path.exists() {
        return Err(TestbedError::AlreadyUp { state: state_path.to_path_buf() });
    }
    let state = State {
        prefix: prefix.to_string(),
        scenario: file.display().to_string(),
        scale,
        namespaces: p.ns.clone(),
        gpus: p.gpus.clone(),
    };
    let text = serde_json::to_string_pretty(&state)
        .map_err(|source| TestbedError::StateFile { state: state_path.to_path_buf(), source })?;
    std::fs::write(state_path, text)?;
    if let Err(e) = apply(&p) {
        let _ = down(prefix, state_path);
        return Err(e);
    }
    Ok(UpSummary {
        namespaces: p.ns.len(),
        switches: p.switches.len(),
        links: p.veths.len(),
        scale,
        state: state_path.to_path_buf(),
    })
}

/// Creates what `p` describes, with `ip` and `tc` (root only).
pub fn apply(p: &Plan) -> Result<(), TestbedError> {
    for n in &p.ns {
        cmd("ip", &["netns", "add", n], None)?;
    }
    for (_, va, na, vb, nb) in &p.veths {
        cmd("ip", &["link", "add", va, "netns", na, "type", "veth", "peer", "name", vb, "netns", nb], None)?;
    }
    for s in &p.switches {
        for (k, v) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.fib_multipath_hash_policy", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ] {
            cmd("ip", &["netns", "exec", s, "sysctl", "-q", "-w", &format!("{k}={v}")], None)?;
        }
    }
    for (n, lines) in &p.ip {
        cmd("ip", &["-n", n, "-batch", "-"], Some(&(lines.join("\n") + "\n")))?;
    }
    for (n, lines) in &p.tc {
        cmd("tc", &["-n", n, "-batch", "-"], Some(&(lines.join("\n") + "\n")))?;
    }
    Ok(())
}

/// Removes the namespaces in the state file, then any namespace or interface left with the
/// prefix (after a crash). Idempotent.
/// Returns how many namespaces were removed.
pub fn down(prefix: &str, state_path: &Path) -> Result<usize, TestbedError> {
    check_prefix(prefix)?;
    let mut removed = 0;
    if let Ok(text) = std::fs::read_to_string(state_path) {
        if let Ok(st) = serde_json::from_str::<State>(&text) {
            for n in &st.namespaces {
                if cmd("ip", &["netns", "del", n], None).is_ok() {
                    removed += 1;
                }
            }
        }
    }
    let mine = format!("{prefix}-");
    for line in cmd("ip", &["netns", "list"], None)?.lines() {
        let n = line.split_whitespace().next().unwrap_or("");
        if n.starts_with(&mine) && cmd("ip", &["netns", "del", n], None).is_ok() {
            removed += 1;
        }
    }
    // veths created in the root namespace by an interrupted `up` (names PREFIX<digits>a/b).
    for line in cmd("ip", &["-o", "link", "show"], None)?.lines() {
        let name = line.split(':').nth(1).unwrap_or("").trim().split('@').next().unwrap_or("");
        let rest = name.strip_prefix(prefix).unwrap_or("");
        if !rest.is_empty()
            && rest.len() >= 2
            && rest[..rest.len() - 1].chars().all(|c| c.is_ascii_digit())
            && (rest.ends_with('a') || rest.ends_with('b'))
        {
            let _ = cmd("ip", &["link", "del", name], None);
        }
    }
    let _ = std::fs::remove_file(state_path);
    Ok(removed)
}

#[allow(clippy::disallowed_methods)]
fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// The worker: `--recv PORT` accepts one connection and reads to the end; `--send
/// IP:PORT --bytes N` connects (retrying for up to 5 s while the receiver starts) and writes.
/// Each prints one JSON line.
pub fn flow_worker(recv: Option<u16>, send: Option<String>, bytes: u64) -> Result<String, TestbedError> {
    use std::net::{TcpListener, TcpStream};
    if let Some(port) = recv {
        let l = TcpListener::bind(("0.0.0.0", port))?;
        {
            let mut out = std::io::stdout().lock();
            out.write_all(b"ready\n")?;
            out.flush()?;
        }
        let (mut s, _) = l.accept()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        let mut first = 0u64;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if total == 0 {
                first = now_us();
            }
            total += n as u64;
        }
        return Ok(format!("{{\"bytes\":{total},\"first_us\":{first},\"end_us\":{}}}\n", now_us()));
    }
    let to = send.ok_or_else(|| TestbedError::Worker { what: "give --recv PORT or --send IP:PORT".into() })?;
    let mut tries = 0;
    let mut s = loop {
        match TcpStream::connect(&to) {
            Ok(s) => break s,
            Err(e) if tries < 500 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(TestbedError::Worker { what: format!("connect {to}: {e}") }),
        }
    };
    let sport = s.local_addr()?.port();
    let start = now_us();
    let buf = vec![0x5au8; 1 << 16];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..n])?;
        left -= n as u64;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    // Wait for the receiver to close, so the process ends after delivery.
    let mut sink = [0u8; 16];
    let _ = s.read(&mut sink);
    Ok(format!("{{\"start_us\":{start},\"sport\":{sport}}}\n"))
}

fn json_u64(line: &str, key: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    v.get(key)?.as_u64()
}

/// Runs one phase: all its flows at once; fills in the measurements.
fn run_phase(flows: &mut [FlowRun], st: &State, exe: &str, port_base: u16) -> Result<(), TestbedError> {
    let worker = |what: String| TestbedError::Worker { what };
    let mut recvs = Vec::new();
    for (i, f) in flows.iter_mut().enumerate() {
        let port = port_base + i as u16;
        f.dport = port;
        let (dns, _) = &st.gpus[f.dst as usize];
        let mut child = Command::new("ip")
            .args(["netns", "exec", dns, exe, "testbed", "flow", "--recv", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // Wait for "ready".
        let mut out = child.stdout.take().ok_or_else(|| worker("receiver has no stdout".into()))?;
        let mut b = [0u8; 6];
        out.read_exact(&mut b).map_err(|e| worker(format!("receiver did not start: {e}")))?;
        recvs.push((child, out));
    }
    let mut sends = Vec::new();
    for f in flows.iter() {
        let (sns, _) = &st.gpus[f.src as usize];
        let (_, daddr) = &st.gpus[f.dst as usize];
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                sns,
                exe,
                "testbed",
                "flow",
                "--send",
                &format!("{daddr}:{}", f.dport),
                "--bytes",
                &f.bytes.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        sends.push(child);
    }
    for (f, s) in flows.iter_mut().zip(sends) {
        let out = s.wait_with_output()?;
        if !out.status.success() {
            return Err(worker(format!("sender failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        let line = String::from_utf8_lossy(&out.stdout);
        f.start_us = json_u64(&line, "start_us").ok_or_else(|| worker(format!("bad sender output {line:?}")))?;
        f.sport = json_u64(&line, "sport").unwrap_or(0) as u16;
    }
    for (f, (mut child, mut out)) in flows.iter_mut().zip(recvs) {
        let mut line = String::new();
        out.read_to_string(&mut line)?;
        let _ = child.wait();
        f.end_us = json_u64(&line, "end_us").ok_or_else(|| worker(format!("bad receiver output {line:?}")))?;
        let got = json_u64(&line, "bytes").unwrap_or(0);
        if got != f.bytes {
            return Err(TestbedError::ShortFlow { src: f.src, dst: f.dst, got, bytes: f.bytes });
        }
    }
    Ok(())
}

fn read_state(state_path: &Path) -> Result<State, TestbedError> {
    let text =
        std::fs::read_to_string(state_path).map_err(|_| TestbedError::NotUp { state: state_path.to_path_buf() })?;
    serde_json::from_str(&text).map_err(|source| TestbedError::StateFile { state: state_path.to_path_buf(), source })
}

/// Runs the workloads of `file` on the testbed recorded in `state_path`, phase by phase.
/// `exe` is the meshway executable, run in each namespace as `testbed flow`.
pub fn run(file: &Path, state_path: &Path, exe: &str, cat: &Catalog) -> Result<(State, Vec<FlowRun>), TestbedError> {
    let st = read_state(state_path)?;
    let (s, f) = load(file, cat)?;
    if f.gpu_count() != st.gpus.len() {
        return Err(TestbedError::GpuMismatch {
            up: st.gpus.len(),
            scenario: file.display().to_string(),
            gpus: f.gpu_count(),
        });
    }
    let mut flows = workloads(file, &s, &f, cat)?;
    let phases = flows.iter().map(|x| x.phase).max().unwrap_or(0) + 1;
    for ph in 0..phases {
        let idx: Vec<usize> = (0..flows.len()).filter(|&i| flows[i].phase == ph).collect();
        let mut batch: Vec<FlowRun> = idx.iter().map(|&i| flows[i].clone()).collect();
        run_phase(&mut batch, &st, exe, 20_000)?;
        for (k, &i) in idx.iter().enumerate() {
            flows[i] = batch[k].clone();
        }
    }
    Ok((st, flows))
}

/// The path the kernel takes for a flow's 5-tuple, as fabric link ids, found hop by hop with
/// `ip route get ... ipproto tcp sport S dport D` in each namespace.
fn kernel_path(st: &State, f: &Fabric, flow: &FlowRun) -> Result<Vec<(u32, bool)>, TestbedError> {
    let (sns, saddr) = &st.gpus[flow.src as usize];
    let (_, daddr) = &st.gpus[flow.dst as usize];
    let mut ns = sns.clone();
    let mut iif: Option<String> = None;
    let mut path = Vec::new();
    for _ in 0..16 {
        if ns == st.gpus[flow.dst as usize].0 {
            return Ok(path);
        }
        let d = daddr.to_string();
        let s_ = saddr.to_string();
        let sp = flow.sport.to_string();
        let dp = flow.dport.to_string();
        let mut args = vec!["-n", ns.as_str(), "-j", "route", "get", d.as_str(), "from", s_.as_str()];
        if let Some(i) = &iif {
            args.extend(["iif", i.as_str()]);
        }
        args.extend(["ipproto", "tcp", "sport", sp.as_str(), "dport", dp.as_str()]);
        let out = cmd("ip", &args, None)?;
        let (l, from_a) = hop_from_route(&out, &st.prefix, &ns, &d)?;
        path.push((l, from_a));
        let link = f.links.get(l as usize).ok_or_else(|| TestbedError::UnexpectedInterface {
            dev: format!("{}{l}", st.prefix),
            namespace: ns.clone(),
        })?;
        let next = if from_a { link.b } else { link.a };
        ns = ns_name(&st.prefix, f, next);
        iif = Some(format!("{}{l}{}", st.prefix, if from_a { "b" } else { "a" }));
    }
    Err(TestbedError::NoPath { namespace: sns.clone(), dst: daddr.to_string(), hops: 16 })
}

/// Runs the workloads, finds each flow's path in the kernel, simulates the same flows on the
/// scaled fabric on those paths from their measured starts, and compares.
pub fn verify(file: &Path, state_path: &Path, exe: &str, cat: &Catalog) -> Result<Vec<Compared>, TestbedError> {
    let (st, flows) = run(file, state_path, exe, cat)?;
    let (_, f) = load(file, cat)?;
    let paths: Vec<Vec<(u32, bool)>> = flows.iter().map(|fl| kernel_path(&st, &f, fl)).collect::<Result<_, _>>()?;
    let inputs = fixed_flows(&flows, &paths);
    let predicted = meshway_sim::simulate::simulate_fixed(&scaled(&f, st.scale), cat, &inputs, testbed_wire())?;
    Ok(compare(&f, cat, &flows, &paths, &predicted))
}
