//! `meshway testbed`: a scenario's fabric built from Linux network namespaces, its
//! workloads run as real TCP, and the measurements compared with the simulator.
//!
//! Control goes through the `ip` and `tc` commands (iproute2), never a shell: every argument
//! is passed as its own `argv` entry, and many commands go to one `ip -batch` per namespace.
//! We chose the commands over a netlink crate to keep the build lean and because they are
//! what operators read and debug with; the exact commands are in the state file's log.
//!
//! Layout: one namespace per GPU (its host) and per switch, named `PREFIX-node`; one veth
//! pair per link (`PREFIXNa` / `PREFIXNb` for link N) with a /31 from 10.128.0.0/9; every GPU
//! also has a /32 from 10.64.0.0/10 on its first NIC. Switches forward, with one route per GPU
//! whose next hops are the fabric's equal-cost next hops (multipath, L4 hash:
//! `fib_multipath_hash_policy = 1`), so the kernel hashes flows onto paths as an ECMP switch
//! does. Each veth end has a `tbf` qdisc at the link's rate divided by the scale.

use anyhow::{anyhow, bail, Context, Result};
use meshway_fabric::routing::ShortestPaths;
use meshway_fabric::{Catalog, Fabric, NodeId, Scenario};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Largest fabric `up` builds: namespaces (GPUs + switches) and links.
pub const MAX_NAMESPACES: usize = 128;
pub const MAX_LINKS: usize = 512;

pub const HELP: &str = "Examples (as root):
  meshway testbed up examples/testbed-2x2.toml --scale 1:1000
  meshway testbed run examples/testbed-2x2.toml
  meshway testbed verify examples/testbed-2x2.toml --json
  meshway testbed down

Builds the scenario's fabric from network namespaces (one per GPU host and per switch, a veth
pair per link, multipath routes hashed on L4 like ECMP switches, tbf rate limits scaled down:
400Gbps at 1:1000 is 400Mbps), runs its workloads as real TCP between the host namespaces,
and compares each flow's measured completion time with the simulator's prediction for the
same scaled fabric on the paths the kernel chose. Traffic stays inside the namespaces.";

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Build the namespaces, links, addresses, routes and rate limits.
    Up {
        file: PathBuf,
        /// Rate scale, "1:1000" divides every link rate by 1,000.
        #[arg(long, default_value = "1:1000")]
        scale: String,
        #[command(flatten)]
        opts: Opts,
    },
    /// Run the scenario's workloads as TCP flows and print each flow's measurements.
    Run {
        file: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: Opts,
    },
    /// Run the workloads, simulate them on the scaled fabric, print measured vs predicted.
    Verify {
        file: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: Opts,
    },
    /// Remove everything `up` created (idempotent; also after a crash).
    Down {
        #[command(flatten)]
        opts: Opts,
    },
    /// Internal: one end of a measured TCP flow, run inside a namespace.
    #[command(hide = true)]
    Flow {
        #[arg(long)]
        recv: Option<u16>,
        #[arg(long)]
        send: Option<String>,
        #[arg(long, default_value_t = 0)]
        bytes: u64,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct Opts {
    /// Name prefix of everything created (namespaces, interfaces), 2 to 6 letters or digits.
    #[arg(long, default_value = "mw")]
    pub prefix: String,
    /// State file recording what was created.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

impl Opts {
    fn state_path(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("meshway-testbed-{}.json", self.prefix)))
    }
    fn check(&self) -> Result<()> {
        let ok = (2..=6).contains(&self.prefix.len()) && self.prefix.chars().all(|c| c.is_ascii_alphanumeric());
        if !ok {
            bail!("--prefix must be 2 to 6 ASCII letters or digits, got {:?}", self.prefix);
        }
        Ok(())
    }
}

/// What `up` created, written before the first command runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub prefix: String,
    pub scenario: String,
    pub scale: u64,
    pub namespaces: Vec<String>,
    /// GPU rank order -> (namespace, address).
    pub gpus: Vec<(String, Ipv4Addr)>,
}

/// The pure plan of a testbed.
#[derive(Debug, Clone)]
pub struct Plan {
    pub ns: Vec<String>,
    /// Per namespace, `ip -batch` lines.
    pub ip: BTreeMap<String, Vec<String>>,
    /// Per namespace, `tc -batch` lines.
    pub tc: BTreeMap<String, Vec<String>>,
    /// veth pairs: (link, name a, namespace a, name b, namespace b).
    pub veths: Vec<(u32, String, String, String, String)>,
    pub switches: Vec<String>,
    pub gpus: Vec<(String, Ipv4Addr)>,
}

fn ns_name(prefix: &str, f: &Fabric, n: NodeId) -> String {
    let raw: String =
        f.node(n).name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("{prefix}-{raw}")
}

fn link_ip(l: u32, side: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + 2 * l + side)
}

fn gpu_ip(rank: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 1)) + rank)
}

/// Parses "1:1000".
pub fn parse_scale(s: &str) -> Result<u64> {
    let (a, b) = s.split_once(':').ok_or_else(|| anyhow!("--scale: expected \"1:N\" such as \"1:1000\", got {s:?}"))?;
    match (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
        (Ok(1), Ok(n)) if n >= 1 => Ok(n),
        _ => bail!("--scale: expected \"1:N\" with N >= 1, got {s:?}"),
    }
}

/// Ranks in host order, as the simulator numbers them.
fn ranks(f: &Fabric, cat: &Catalog) -> Vec<NodeId> {
    let topo = meshway_sim::topo::FabricTopo::new(f, cat, 1);
    (0..meshway_sim::topo::Topology::ranks(&topo) as u32).map(|r| topo.node_of(r)).collect()
}

pub fn plan(f: &Fabric, cat: &Catalog, prefix: &str, scale: u64) -> Result<Plan> {
    let nodes = f.nodes.len();
    if nodes > MAX_NAMESPACES || f.links.len() > MAX_LINKS {
        bail!(
            "fabric too big for a testbed on this machine: {nodes} namespaces and {} links, the limit is {MAX_NAMESPACES} namespaces and {MAX_LINKS} links (see README: Testbed)",
            f.links.len()
        );
    }
    let rank_nodes = ranks(f, cat);
    let mut rank_of = vec![u32::MAX; nodes];
    for (r, n) in rank_nodes.iter().enumerate() {
        rank_of[n.idx()] = r as u32;
    }
    let name = |n: NodeId| ns_name(prefix, f, n);
    let mut ip: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut tc: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut veths = Vec::new();
    let ns: Vec<String> = (0..nodes as u32).map(|i| name(NodeId(i))).collect();
    for n in &ns {
        ip.entry(n.clone()).or_default().push("link set lo up".into());
    }
    for (i, l) in f.links.iter().enumerate() {
        let i = i as u32;
        let (va, vb) = (format!("{prefix}{i}a"), format!("{prefix}{i}b"));
        let (na, nb) = (name(l.a), name(l.b));
        let rate_kbit = (l.rate.0 / scale / 1000).max(8);
        // Burst: 2 ms at the rate or 64 KiB, whichever is more (tbf needs at least one MTU).
        let burst = (rate_kbit * 1000 / 8 / 500).max(65_536);
        for (ns_, v, me) in [(&na, &va, 0u32), (&nb, &vb, 1u32)] {
            let e = ip.entry(ns_.clone()).or_default();
            e.push(format!("addr add {}/31 dev {v}", link_ip(i, me)));
            e.push(format!("link set {v} up"));
            tc.entry(ns_.clone())
                .or_default()
                .push(format!("qdisc add dev {v} root tbf rate {rate_kbit}kbit burst {burst} latency 10ms"));
        }
        veths.push((i, va, na, vb, nb));
    }
    let mut gpus = Vec::new();
    for (r, &g) in rank_nodes.iter().enumerate() {
        let addr = gpu_ip(r as u32);
        let me = name(g);
        let nics: Vec<(u32, bool)> = f.neighbors(g).iter().map(|&(_, l)| (l.0, f.link(l).a == g)).collect();
        let Some(&(first, first_is_a)) = nics.first() else { bail!("{} has no links", f.node(g).name) };
        let dev = |l: u32, is_a: bool| format!("{prefix}{l}{}", if is_a { "a" } else { "b" });
        let e = ip.entry(me.clone()).or_default();
        e.push(format!("addr add {addr}/32 dev {}", dev(first, first_is_a)));
        let hops: Vec<String> = nics
            .iter()
            .map(|&(l, is_a)| format!("nexthop via {} dev {}", link_ip(l, u32::from(is_a)), dev(l, is_a)))
            .collect();
        e.push(format!("route add default src {addr} {}", hops.join(" ")));
        gpus.push((me, addr));
    }
    // Switch routes: per GPU, the equal-cost next hops toward it.
    let sw_lat = meshway_fabric::routing::switch_latencies(f, cat);
    let switches: Vec<NodeId> = f.switches().collect();
    for (r, &g) in rank_nodes.iter().enumerate() {
        let sp = ShortestPaths::from(f, g, &sw_lat, cat.constants.fiber_delay_per_km);
        for &s in &switches {
            let hops: Vec<String> = sp
                .next_hops_toward_source(f, s)
                .map(|(v, l)| {
                    let link = f.link(l);
                    let s_is_a = link.a == s;
                    let _ = v;
                    format!(
                        "nexthop via {} dev {prefix}{}{}",
                        link_ip(l.0, u32::from(s_is_a)),
                        l.0,
                        if s_is_a { "a" } else { "b" }
                    )
                })
                .collect();
            if hops.is_empty() {
                continue;
            }
            ip.entry(name(s)).or_default().push(format!("route add {}/32 {}", gpu_ip(r as u32), hops.join(" ")));
        }
    }
    Ok(Plan { ns, ip, tc, veths, switches: switches.iter().map(|&s| name(s)).collect(), gpus })
}

/// Runs a command with arguments (no shell); `input` goes to its stdin.
fn cmd(prog: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let mut c = Command::new(prog);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if input.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut child =
        c.spawn().with_context(|| format!("cannot run {prog} (is iproute2 installed and are you root?)"))?;
    if let Some(text) = input {
        if let Some(mut s) = child.stdin.take() {
            s.write_all(text.as_bytes())?;
        }
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{prog} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn load(file: &Path, cat: &Catalog) -> Result<(Scenario, Fabric)> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read scenario {}", file.display()))?;
    let s = Scenario::parse(&text, &file.display().to_string())?;
    let f = s.build(cat)?;
    Ok((s, f))
}

pub fn up(file: &Path, scale: &str, opts: &Opts, cat: &Catalog) -> Result<String> {
    opts.check()?;
    let scale = parse_scale(scale)?;
    let (_, f) = load(file, cat)?;
    let p = plan(&f, cat, &opts.prefix, scale)?;
    let state_path = opts.state_path();
    if state_path.exists() {
        bail!("a testbed is already up ({}); run `meshway testbed down` first", state_path.display());
    }
    let state = State {
        prefix: opts.prefix.clone(),
        scenario: file.display().to_string(),
        scale,
        namespaces: p.ns.clone(),
        gpus: p.gpus.clone(),
    };
    std::fs::write(&state_path, serde_json::to_string_pretty(&state)?)?;
    let r = apply(&p);
    if let Err(e) = r {
        let _ = down(opts);
        return Err(e.context("testbed up failed; everything created was removed"));
    }
    Ok(format!(
        "testbed up: {} namespaces ({} switches), {} links at 1:{scale} rates, state in {}\n",
        p.ns.len(),
        p.switches.len(),
        p.veths.len(),
        state_path.display()
    ))
}

fn apply(p: &Plan) -> Result<()> {
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
pub fn down(opts: &Opts) -> Result<String> {
    opts.check()?;
    let state_path = opts.state_path();
    let mut removed = 0;
    if let Ok(text) = std::fs::read_to_string(&state_path) {
        if let Ok(st) = serde_json::from_str::<State>(&text) {
            for n in &st.namespaces {
                if cmd("ip", &["netns", "del", n], None).is_ok() {
                    removed += 1;
                }
            }
        }
    }
    let mine = format!("{}-", opts.prefix);
    for line in cmd("ip", &["netns", "list"], None)?.lines() {
        let n = line.split_whitespace().next().unwrap_or("");
        if n.starts_with(&mine) && cmd("ip", &["netns", "del", n], None).is_ok() {
            removed += 1;
        }
    }
    // veths created in the root namespace by an interrupted `up` (names PREFIX<digits>a/b).
    for line in cmd("ip", &["-o", "link", "show"], None)?.lines() {
        let name = line.split(':').nth(1).unwrap_or("").trim().split('@').next().unwrap_or("");
        let rest = name.strip_prefix(&opts.prefix).unwrap_or("");
        if !rest.is_empty()
            && rest.len() >= 2
            && rest[..rest.len() - 1].chars().all(|c| c.is_ascii_digit())
            && (rest.ends_with('a') || rest.ends_with('b'))
        {
            let _ = cmd("ip", &["link", "del", name], None);
        }
    }
    let _ = std::fs::remove_file(&state_path);
    Ok(format!("testbed down: {removed} namespaces removed\n"))
}

// ----- measured flows -----

/// One flow to run: ranks, bytes, phase (phases run one after another).
#[derive(Debug, Clone, Serialize)]
pub struct FlowRun {
    pub src: u32,
    pub dst: u32,
    pub bytes: u64,
    pub phase: u32,
    pub workload: String,
    /// Measured: sender start and receiver's last byte (µs, realtime clock of this machine).
    pub start_us: u64,
    pub end_us: u64,
    pub sport: u16,
    pub dport: u16,
}

impl FlowRun {
    pub fn fct_us(&self) -> u64 {
        self.end_us.saturating_sub(self.start_us)
    }
}

#[allow(clippy::disallowed_methods)]
fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// The worker: `--recv PORT` accepts one connection and reads to the end; `--send
/// IP:PORT --bytes N` connects (retrying for up to 5 s while the receiver starts) and writes.
/// Each prints one JSON line.
pub fn flow_worker(recv: Option<u16>, send: Option<String>, bytes: u64) -> Result<String> {
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
    let to = send.ok_or_else(|| anyhow!("give --recv PORT or --send IP:PORT"))?;
    let mut tries = 0;
    let mut s = loop {
        match TcpStream::connect(&to) {
            Ok(s) => break s,
            Err(e) if tries < 500 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e).context(format!("connect {to}")),
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
fn run_phase(flows: &mut [FlowRun], st: &State, port_base: u16) -> Result<()> {
    let exe = std::env::current_exe()?;
    let exe = exe.to_str().ok_or_else(|| anyhow!("non-UTF-8 executable path"))?;
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
        let mut out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut b = [0u8; 6];
        out.read_exact(&mut b).context("receiver did not start")?;
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
            bail!("sender failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let line = String::from_utf8_lossy(&out.stdout);
        f.start_us = json_u64(&line, "start_us").ok_or_else(|| anyhow!("bad sender output {line:?}"))?;
        f.sport = json_u64(&line, "sport").unwrap_or(0) as u16;
    }
    for (f, (mut child, mut out)) in flows.iter_mut().zip(recvs) {
        let mut line = String::new();
        out.read_to_string(&mut line)?;
        let _ = child.wait();
        f.end_us = json_u64(&line, "end_us").ok_or_else(|| anyhow!("bad receiver output {line:?}"))?;
        let got = json_u64(&line, "bytes").unwrap_or(0);
        if got != f.bytes {
            bail!("flow {} -> {}: received {got} of {} bytes", f.src, f.dst, f.bytes);
        }
    }
    Ok(())
}

/// The scenario's workloads as phases of flows (sizes as given; the rates are scaled, not the
/// sizes). Kinds: permutation, incast, all-to-all, flows (without dependencies) and the ring
/// all-reduce collective (2(n-1) dependent phases of S/n).
fn workloads(file: &Path, s: &Scenario, f: &Fabric, cat: &Catalog) -> Result<Vec<FlowRun>> {
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let read = move |name: &str| -> Result<String, String> {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| format!("cannot read flow file {}: {e}", p.display()))
    };
    let setup = meshway_sim::simulate::Setup { scenario: s, catalog: cat, fabric: f, read_file: &read };
    // The simulator parses and validates the workloads; we take its program per workload.
    let progs = meshway_sim::simulate::workload_flows(&setup).map_err(|e| anyhow!("{e}"))?;
    let mut out = Vec::new();
    let mut phase = 0;
    for (name, phases) in progs {
        for p in phases {
            for (src, dst, bytes) in p {
                out.push(FlowRun {
                    src,
                    dst,
                    bytes,
                    phase,
                    workload: name.clone(),
                    start_us: 0,
                    end_us: 0,
                    sport: 0,
                    dport: 0,
                });
            }
            phase += 1;
        }
    }
    if out.is_empty() {
        bail!("no flows to run: add [[workload]] tables");
    }
    Ok(out)
}

fn read_state(opts: &Opts) -> Result<State> {
    let p = opts.state_path();
    let text = std::fs::read_to_string(&p)
        .with_context(|| format!("no testbed is up ({} missing): run `meshway testbed up FILE` first", p.display()))?;
    Ok(serde_json::from_str(&text)?)
}

pub fn run(file: &Path, opts: &Opts, cat: &Catalog) -> Result<(State, Vec<FlowRun>)> {
    opts.check()?;
    let st = read_state(opts)?;
    let (s, f) = load(file, cat)?;
    if f.gpu_count() != st.gpus.len() {
        bail!("the testbed that is up has {} GPUs but {} has {}", st.gpus.len(), file.display(), f.gpu_count());
    }
    let mut flows = workloads(file, &s, &f, cat)?;
    let phases = flows.iter().map(|x| x.phase).max().unwrap_or(0) + 1;
    for ph in 0..phases {
        let idx: Vec<usize> = (0..flows.len()).filter(|&i| flows[i].phase == ph).collect();
        let mut batch: Vec<FlowRun> = idx.iter().map(|&i| flows[i].clone()).collect();
        run_phase(&mut batch, &st, 20_000)?;
        for (k, &i) in idx.iter().enumerate() {
            flows[i] = batch[k].clone();
        }
    }
    Ok((st, flows))
}

/// The path the kernel takes for a flow's 5-tuple, as fabric link ids, found hop by hop with
/// `ip route get ... ipproto tcp sport S dport D` in each namespace.
fn kernel_path(st: &State, f: &Fabric, flow: &FlowRun) -> Result<Vec<(u32, bool)>> {
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
        let v: serde_json::Value = serde_json::from_str(&out)?;
        let dev = v[0]["dev"].as_str().ok_or_else(|| anyhow!("no route from {ns} to {daddr}"))?.to_string();
        // dev = PREFIX<link>(a|b): we leave on that link from side a or b.
        let rest = dev.strip_prefix(&st.prefix).unwrap_or("");
        let (num, side) = rest.split_at(rest.len().saturating_sub(1));
        let l: u32 = num.parse().map_err(|_| anyhow!("unexpected interface {dev} in {ns}"))?;
        let from_a = side == "a";
        path.push((l, from_a));
        let link = f.links.get(l as usize).ok_or_else(|| anyhow!("unknown link {l}"))?;
        let next = if from_a { link.b } else { link.a };
        ns = ns_name(&st.prefix, f, next);
        iif = Some(format!("{}{l}{}", st.prefix, if from_a { "b" } else { "a" }));
    }
    bail!("no path from {sns} to {daddr} within 16 hops")
}

/// Measured vs predicted for one flow.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub workload: String,
    pub phase: u32,
    pub src: String,
    pub dst: String,
    pub bytes: u64,
    pub path: Vec<String>,
    /// Start after the first flow of its phase started.
    pub start_offset_us: u64,
    pub measured_us: u64,
    pub predicted_us: u64,
    pub error: f64,
}

/// Measured vs predicted for a whole workload: the sum over its phases of the phase's span
/// (latest start offset + completion).
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadCompared {
    pub workload: String,
    pub flows: usize,
    pub measured_us: u64,
    pub predicted_us: u64,
    pub error: f64,
}

pub fn per_workload(rows: &[Compared]) -> Vec<WorkloadCompared> {
    let mut out: Vec<WorkloadCompared> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for r in rows {
        if !names.contains(&r.workload.as_str()) {
            names.push(&r.workload);
        }
    }
    for n in names {
        let mine: Vec<&Compared> = rows.iter().filter(|r| r.workload == n).collect();
        let mut phases: Vec<u32> = mine.iter().map(|r| r.phase).collect();
        phases.dedup();
        let span = |f: &dyn Fn(&Compared) -> u64| -> u64 {
            phases
                .iter()
                .map(|&p| mine.iter().filter(|r| r.phase == p).map(|r| r.start_offset_us + f(r)).max().unwrap_or(0))
                .sum()
        };
        let (m, p) = (span(&|r| r.measured_us), span(&|r| r.predicted_us));
        out.push(WorkloadCompared {
            workload: n.to_string(),
            flows: mine.len(),
            measured_us: m,
            predicted_us: p,
            error: if p == 0 { 0.0 } else { (m as f64 - p as f64) / p as f64 },
        });
    }
    out
}

pub fn verify(file: &Path, opts: &Opts, cat: &Catalog) -> Result<Vec<Compared>> {
    let (st, flows) = run(file, opts, cat)?;
    let (s, f) = load(file, cat)?;
    let paths: Vec<Vec<(u32, bool)>> = flows.iter().map(|fl| kernel_path(&st, &f, fl)).collect::<Result<_>>()?;
    // Flows of a phase start a few milliseconds apart (process start-up): the prediction uses
    // the measured start offsets.
    let phases = flows.iter().map(|x| x.phase).max().unwrap_or(0) as usize + 1;
    let mut phase_start = vec![u64::MAX; phases];
    for fl in &flows {
        phase_start[fl.phase as usize] = phase_start[fl.phase as usize].min(fl.start_us);
    }
    let mut scaled = f.clone();
    for l in &mut scaled.links {
        l.rate = meshway_units::BitsPerSec(l.rate.0 / st.scale);
    }
    let inputs: Vec<meshway_sim::simulate::FixedFlow> = flows
        .iter()
        .zip(&paths)
        .map(|(fl, p)| meshway_sim::simulate::FixedFlow {
            src: fl.src,
            dst: fl.dst,
            bytes: fl.bytes,
            phase: fl.phase,
            start: meshway_units::Nanos((fl.start_us - phase_start[fl.phase as usize]) * 1000),
            arcs: p.iter().map(|&(l, a)| 2 * l + u32::from(!a)).collect(),
        })
        .collect();
    let _ = s;
    let predicted = meshway_sim::simulate::simulate_fixed(&scaled, cat, &inputs, testbed_wire())?;
    let names = ranks(&f, cat);
    Ok(flows
        .iter()
        .zip(&paths)
        .zip(predicted)
        .map(|((fl, p), pred)| {
            let m = fl.fct_us();
            let pu = pred.div_ceil(1000);
            Compared {
                workload: fl.workload.clone(),
                phase: fl.phase,
                src: f.node(names[fl.src as usize]).name.clone(),
                dst: f.node(names[fl.dst as usize]).name.clone(),
                bytes: fl.bytes,
                path: p
                    .iter()
                    .map(|&(l, a)| {
                        let link = f.link(meshway_fabric::LinkId(l));
                        f.node(if a { link.a } else { link.b }).name.clone()
                    })
                    .chain(std::iter::once(f.node(names[fl.dst as usize]).name.clone()))
                    .collect(),
                start_offset_us: fl.start_us - phase_start[fl.phase as usize],
                measured_us: m,
                predicted_us: pu,
                error: if pu == 0 { 0.0 } else { (m as f64 - pu as f64) / pu as f64 },
            }
        })
        .collect())
}

/// The emulated medium: veth with a 1500-byte MTU, TCP with timestamps: 1448 payload bytes
/// in 1514 bytes counted by tbf (Ethernet 14 + IPv4 20 + TCP 32). Measured times start after
/// the connection is set up, so there is no per-message alpha.
pub fn testbed_wire() -> meshway_sim::exec::Wire {
    meshway_sim::exec::Wire { mtu: 1448, header: 66, alpha: meshway_units::Nanos(0) }
}

pub fn compared_text(rows: &[Compared]) -> String {
    let mut t =
        meshway_report::table::Table::new(&["workload", "flow", "bytes", "path", "measured", "predicted", "error"]);
    for r in rows {
        t.row(vec![
            format!("{} #{}", r.workload, r.phase),
            format!("{} -> {}", r.src, r.dst),
            format!("{}", meshway_units::Bytes(r.bytes)),
            r.path.join(" > "),
            meshway_report::sim::time(r.measured_us * 1000),
            meshway_report::sim::time(r.predicted_us * 1000),
            format!("{:+.1}%", r.error * 100.0),
        ]);
    }
    let mut w = meshway_report::table::Table::new(&["workload", "flows", "measured", "predicted", "error"]);
    for x in per_workload(rows) {
        w.row(vec![
            x.workload,
            x.flows.to_string(),
            meshway_report::sim::time(x.measured_us * 1000),
            meshway_report::sim::time(x.predicted_us * 1000),
            format!("{:+.1}%", x.error * 100.0),
        ]);
    }
    let worst = rows.iter().map(|r| r.error.abs()).fold(0.0, f64::max);
    let mean = rows.iter().map(|r| r.error.abs()).sum::<f64>() / rows.len().max(1) as f64;
    format!(
        "{}\nPer workload (sum over its phases of the phase's span)\n{}\n{} flows: mean |error| {:.1}%, worst {:.1}%\n",
        t.render(),
        w.render(),
        rows.len(),
        mean * 100.0,
        worst * 100.0
    )
}

pub fn flows_text(flows: &[FlowRun], st: &State) -> String {
    let mut t = meshway_report::table::Table::new(&["workload", "flow", "bytes", "time", "throughput"]);
    for f in flows {
        let us = f.fct_us().max(1);
        t.row(vec![
            format!("{} #{}", f.workload, f.phase),
            format!("{} -> {}", st.gpus[f.src as usize].0, st.gpus[f.dst as usize].0),
            format!("{}", meshway_units::Bytes(f.bytes)),
            meshway_report::sim::time(us * 1000),
            format!("{:.1} Mbps", f.bytes as f64 * 8.0 / us as f64),
        ]);
    }
    t.render()
}
