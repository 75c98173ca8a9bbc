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
use std::sync::atomic::{AtomicBool, Ordering};

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
    let text = meshway_units::files::read_text(file)
        .map_err(|source| TestbedError::Read { path: file.to_path_buf(), source })?;
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
/// Refuses when a namespace it would create already exists, so the state file only ever
/// lists namespaces this `up` made. `recorded` runs once the state file is written, before
/// anything is built (the CLI notes where the state file is). `stop` (SIGINT, SIGTERM) is
/// checked between the commands that build it: once set, what was built is removed, as on a
/// failure.
pub fn up(
    file: &Path,
    scale: u64,
    prefix: &str,
    state_path: &Path,
    cat: &Catalog,
    recorded: &mut dyn FnMut() -> Result<(), TestbedError>,
    stop: &AtomicBool,
) -> Result<UpSummary, TestbedError> {
    check_prefix(prefix)?;
    let (_, f) = load(file, cat)?;
    let p = plan(&f, cat, prefix, scale)?;
    match std::fs::symlink_metadata(state_path) {
        // An `up` killed half-way left its state file unfinished: say so, not "already up".
        Ok(m) if m.is_file() => {
            return Err(match read_state(state_path) {
                Ok(st) if st.complete == Some(false) => TestbedError::Unfinished { state: state_path.to_path_buf() },
                _ => TestbedError::AlreadyUp { state: state_path.to_path_buf() },
            })
        }
        Ok(m) => {
            let what = if m.is_dir() {
                "it is a directory"
            } else if m.file_type().is_symlink() {
                "it is a symbolic link"
            } else {
                "it is not a regular file"
            };
            return Err(TestbedError::Unsafe { path: state_path.to_path_buf(), why: what.into() });
        }
        Err(_) => {}
    }
    // Refused now rather than by `down` after the namespaces exist.
    check_dir(state_path)?;
    let existing = namespaces()?;
    if let Some(n) = p.ns.iter().find(|n| existing.contains(n)) {
        return Err(TestbedError::NamespaceExists { name: n.clone() });
    }
    let state = State {
        prefix: prefix.to_string(),
        scenario: file.display().to_string(),
        scale,
        namespaces: p.ns.clone(),
        gpus: p.gpus.clone(),
        fabric: p.fingerprint(),
        complete: Some(false),
    };
    let text = serde_json::to_string_pretty(&state)
        .map_err(|source| TestbedError::StateFile { state: state_path.to_path_buf(), source })?;
    write_private(state_path, &text)?;
    let built = recorded().and_then(|()| apply(&p, stop)).and_then(|()| {
        // Only now may `run` and `verify` use it: the finished state replaces the first.
        let done = State { complete: Some(true), ..state };
        let text = serde_json::to_string_pretty(&done)
            .map_err(|source| TestbedError::StateFile { state: state_path.to_path_buf(), source })?;
        replace_private(state_path, &text)
    });
    if let Err(e) = built {
        let cleanup = down(prefix, state_path).err().map(Box::new);
        return Err(TestbedError::UpFailed { error: Box::new(e), cleanup });
    }
    Ok(UpSummary {
        namespaces: p.ns.len(),
        switches: p.switches.len(),
        links: p.veths.len(),
        scale,
        state: state_path.to_path_buf(),
    })
}

/// The network namespaces that exist now (`ip netns list`).
fn namespaces() -> Result<Vec<String>, TestbedError> {
    Ok(cmd("ip", &["netns", "list"], None)?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// The effective user of this process (the owner of /proc/self).
fn euid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Refuses `path` unless it is what this user made: not a symbolic link, owned by this
/// process's user, writable by no one else; and the same of its directory, unless that is
/// sticky (like /tmp, where others cannot replace what is ours). So a state file or a
/// pointer to one that another local user planted is never acted on as root.
pub fn check_owned(path: &Path) -> Result<(), TestbedError> {
    use std::os::unix::fs::MetadataExt;
    let unsafe_ = |why: String| TestbedError::Unsafe { path: path.to_path_buf(), why };
    let me = euid().ok_or_else(|| unsafe_("cannot tell which user this is (/proc is not mounted)".into()))?;
    let m = std::fs::symlink_metadata(path).map_err(|e| unsafe_(e.to_string()))?;
    let t = m.file_type();
    if t.is_symlink() {
        return Err(unsafe_("it is a symbolic link".into()));
    }
    if !(t.is_file() || t.is_dir()) {
        return Err(unsafe_("it is not a regular file".into()));
    }
    if m.uid() != me {
        return Err(unsafe_(format!("it is owned by uid {}, not {me}", m.uid())));
    }
    if m.mode() & 0o022 != 0 {
        return Err(unsafe_(format!("others can write it (mode {:o})", m.mode() & 0o777)));
    }
    check_dir(path)
}

/// Refuses `path` when a directory above it lets another user replace what is below:
/// writable by group or others (unless sticky, like /tmp), or owned by a user other than this
/// one or root. Every directory up to `/` counts (a user who can rename a grandparent can
/// swap the whole subtree), along the path as given and where its links lead, and a link on
/// the way must be this user's or root's.
pub fn check_dir(path: &Path) -> Result<(), TestbedError> {
    use std::os::unix::fs::MetadataExt;
    let unsafe_ = |why: String| TestbedError::Unsafe { path: path.to_path_buf(), why };
    let me = euid().ok_or_else(|| unsafe_("cannot tell which user this is (/proc is not mounted)".into()))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let given = std::path::absolute(dir).map_err(|e| unsafe_(format!("its directory: {e}")))?;
    let real = std::fs::canonicalize(dir).map_err(|e| unsafe_(format!("its directory: {e}")))?;
    for d in given.ancestors() {
        let m = std::fs::symlink_metadata(d).map_err(|e| unsafe_(format!("{}: {e}", d.display())))?;
        if m.file_type().is_symlink() && m.uid() != me && m.uid() != 0 {
            return Err(unsafe_(format!(
                "{} is a link owned by uid {}, who could point it elsewhere",
                d.display(),
                m.uid()
            )));
        }
    }
    for d in given.ancestors().chain(real.ancestors()) {
        let m = std::fs::metadata(d).map_err(|e| unsafe_(format!("{}: {e}", d.display())))?;
        let sticky = m.mode() & 0o1000 != 0;
        if !sticky && m.mode() & 0o022 != 0 {
            return Err(unsafe_(format!("the directory {} is writable by other users", d.display())));
        }
        // Sticky keeps others from renaming what is not theirs, but not the owner.
        if m.uid() != me && m.uid() != 0 {
            return Err(unsafe_(format!(
                "the directory {} belongs to uid {}, who could replace the file; put the state file in a directory of yours or root's",
                d.display(),
                m.uid()
            )));
        }
    }
    Ok(())
}

/// Writes a new file only this user can read and write; never follows or replaces a link
/// or an existing file.
pub fn write_private(path: &Path, text: &str) -> Result<(), TestbedError> {
    use std::os::unix::fs::OpenOptionsExt;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        f.write_all(text.as_bytes())
    };
    write().map_err(|source| TestbedError::Write { path: path.to_path_buf(), source })
}

/// Replaces the private file at `path` by one holding `text`: written beside it (a new file
/// only this user can read) and renamed over it, so no reader sees half of it.
fn replace_private(path: &Path, text: &str) -> Result<(), TestbedError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if let Err(e) = write_private(&tmp, text) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TestbedError::from(e)
    })
}

/// Creates what `p` describes, with `ip` and `tc` (root only). Forwarding and hashing are
/// set before the veths exist, so `conf.default` reaches them.
pub fn apply(p: &Plan, stop: &AtomicBool) -> Result<(), TestbedError> {
    // Every command goes through here: a signal stops the build between two of them.
    let cmd = |prog: &str, args: &[&str], input: Option<&str>| {
        if stop.load(Ordering::Relaxed) {
            return Err(TestbedError::Interrupted);
        }
        // A Ctrl-C reaches the whole process group: the command it killed failed for that.
        cmd(prog, args, input).map_err(|e| if stop.load(Ordering::Relaxed) { TestbedError::Interrupted } else { e })
    };
    for n in &p.ns {
        cmd("ip", &["netns", "add", n], None)?;
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
    // Hosts with several NICs spread their flows over them by the same L4 hash.
    for (g, _) in &p.gpus {
        cmd("ip", &["netns", "exec", g, "sysctl", "-q", "-w", "net.ipv4.fib_multipath_hash_policy=1"], None)?;
    }
    for (_, va, na, vb, nb) in &p.veths {
        cmd("ip", &["link", "add", va, "netns", na, "type", "veth", "peer", "name", vb, "netns", nb], None)?;
    }
    for (n, lines) in &p.ip {
        cmd("ip", &["-n", n, "-batch", "-"], Some(&(lines.join("\n") + "\n")))?;
    }
    for (n, lines) in &p.tc {
        cmd("tc", &["-n", n, "-batch", "-"], Some(&(lines.join("\n") + "\n")))?;
    }
    Ok(())
}

/// What `down` did: namespaces removed, and namespaces with the prefix it left alone
/// because no state file of this user lists them.
#[derive(Debug, Clone, Default)]
pub struct Down {
    pub removed: usize,
    pub unclaimed: Vec<String>,
}

/// Removes the namespaces the state file lists (each named `PREFIX-...`), then the state
/// file. Idempotent: namespaces already gone are not an error. Nothing it cannot prove it
/// made is touched: a state file another user could have written is refused, and other
/// namespaces with the prefix are only reported.
pub fn down(prefix: &str, state_path: &Path) -> Result<Down, TestbedError> {
    check_prefix(prefix)?;
    let mine = format!("{prefix}-");
    let mut listed = Vec::new();
    let have_state = std::fs::symlink_metadata(state_path).is_ok();
    if have_state {
        let st = read_state(state_path)?;
        if st.prefix != prefix {
            return Err(TestbedError::PrefixMismatch {
                state: state_path.to_path_buf(),
                state_prefix: st.prefix,
                prefix: prefix.to_string(),
            });
        }
        listed = st.namespaces.into_iter().filter(|n| n.starts_with(&mine)).collect();
    }
    let before = namespaces()?;
    let (mut removed, mut names, mut errors) = (0, Vec::new(), Vec::new());
    for n in listed.iter().filter(|n| before.contains(n)) {
        match cmd("ip", &["netns", "del", n], None) {
            Ok(_) => removed += 1,
            Err(e) => {
                names.push(n.clone());
                errors.push(e.to_string());
            }
        }
    }
    if !names.is_empty() {
        return Err(TestbedError::DownFailed { names, errors, state: state_path.to_path_buf() });
    }
    if have_state {
        std::fs::remove_file(state_path)?;
    }
    let unclaimed = namespaces()?.into_iter().filter(|n| n.starts_with(&mine) && !listed.contains(n)).collect();
    Ok(Down { removed, unclaimed })
}

#[allow(clippy::disallowed_methods)]
fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// The clock for a worker's deadlines (the testbed runs in real time, unlike the simulator).
#[allow(clippy::disallowed_methods)]
fn mono() -> std::time::Instant {
    std::time::Instant::now()
}

/// How long a receiver waits for its sender to connect, a sender tries to connect, and any
/// one read or write may block: a worker whose peer is gone ends instead of waiting forever.
const ACCEPT_WAIT: std::time::Duration = std::time::Duration::from_secs(600);
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
const IO_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The worker: `--recv PORT` accepts one connection (within 600 s: the receivers of a large
/// phase all start before its first sender) and reads to the end;
/// `--send IP:PORT --bytes N` connects (retrying for up to 5 s while the receiver starts)
/// and writes. Each prints one JSON line; no read or write blocks for more than 120 s.
pub fn flow_worker(
    recv: Option<u16>,
    send: Option<String>,
    bytes: u64,
    parent: Option<u32>,
    until_us: u64,
) -> Result<String, TestbedError> {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    let worker = |what: String| TestbedError::Worker { what };
    // A worker outlives no `run`: killed or crashed, its workers are handed to init (or a
    // subreaper), and each then ends within 100 ms instead of at its own deadlines. The
    // `run` names itself, so a worker whose `run` died before it started ends at once.
    // It also ends when the run's time is up (`--until-us`), wherever it is waiting.
    let parent = parent.unwrap_or_else(std::os::unix::process::parent_id);
    std::thread::spawn(move || loop {
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(3);
        }
        if until_us > 0 && now_us() >= until_us {
            let _ = writeln!(std::io::stderr(), "the run's --timeout passed");
            std::process::exit(4);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    });
    if let Some(port) = recv {
        let l = TcpListener::bind(("0.0.0.0", port))?;
        l.set_nonblocking(true)?;
        {
            let mut out = std::io::stdout().lock();
            out.write_all(b"ready\n")?;
            out.flush()?;
        }
        let t0 = mono();
        let mut s = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && t0.elapsed() < ACCEPT_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(worker(format!("no sender connected to port {port} within {ACCEPT_WAIT:?}")));
                }
                Err(e) => return Err(e.into()),
            }
        };
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(IO_WAIT))?;
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
    let to = send.ok_or_else(|| worker("give --recv PORT or --send IP:PORT".into()))?;
    let addr: SocketAddr = to.parse().map_err(|_| worker(format!("--send {to:?}: expected IP:PORT")))?;
    let t0 = mono();
    let mut s = loop {
        match TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)) {
            Ok(s) => break s,
            Err(_) if t0.elapsed() < CONNECT_WAIT => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => return Err(worker(format!("connect {to} (for {CONNECT_WAIT:?}): {e}"))),
        }
    };
    s.set_write_timeout(Some(IO_WAIT))?;
    s.set_read_timeout(Some(IO_WAIT))?;
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

/// Descriptors one flow holds here while its phase runs: two pipes for each of its two
/// worker processes.
const FDS_PER_FLOW: u64 = 4;
/// Descriptors kept free for everything else this process has open.
const FDS_SPARE: u64 = 64;

/// Flows one phase may run at once: what this process's open-file limit (the soft
/// RLIMIT_NOFILE, from /proc/self/limits) leaves at four descriptors a flow, and never more
/// than distinct ports from 20,000 up; 240 where the limit cannot be read (1,024 descriptors).
pub fn max_flows_per_phase() -> usize {
    let soft =
        std::fs::read_to_string("/proc/self/limits").ok().and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| if v == "unlimited" { Some(u64::MAX) } else { v.parse().ok() })
        });
    let fds = soft.unwrap_or(1024);
    (fds.saturating_sub(FDS_SPARE) / FDS_PER_FLOW).min(u64::from(u16::MAX - 20_000)) as usize
}

/// Worker processes, killed and reaped when dropped: an error midway leaves none behind.
struct Workers(Vec<std::process::Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `exe testbed flow ARGS` inside namespace `ns`, its output piped.
fn spawn_worker(ns: &str, exe: &str, args: &[&str]) -> Result<std::process::Child, TestbedError> {
    Command::new("ip")
        .args(["netns", "exec", ns, exe, "testbed", "flow", "--parent", &std::process::id().to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| TestbedError::Spawn { prog: "ip netns exec".into(), source })
}

/// What a worker that failed said on its standard error (it has ended, or is killed first).
fn why_failed(c: &mut std::process::Child, fallback: String) -> String {
    let _ = c.kill();
    let mut why = String::new();
    if let Some(mut e) = c.stderr.take() {
        let _ = e.read_to_string(&mut why);
    }
    // The worker printed its own "error: flow worker: ..." line: its message alone.
    let why = why.trim();
    let why = why.strip_prefix("error: ").unwrap_or(why);
    let why = why.strip_prefix("flow worker: ").unwrap_or(why);
    if why.is_empty() {
        fallback
    } else {
        why.to_string()
    }
}

/// Runs one phase: all its flows at once; fills in the measurements.
fn run_phase(flows: &mut [FlowRun], st: &State, exe: &str, port_base: u16, until_us: u64) -> Result<(), TestbedError> {
    let until = until_us.to_string();
    // Past the run's time every worker ends (exit code 4), and the first failure seen may be
    // the broken connection of a peer that ended first: the timeout is said first, with what
    // the worker said, so a real failure behind it still shows.
    let worker = |what: String| TestbedError::Worker {
        what: if now_us() >= until_us && !what.contains("--timeout passed") {
            format!("the run's --timeout passed ({what})")
        } else {
            what
        },
    };
    let mut recvs = Workers(Vec::new());
    let mut outs = Vec::new();
    for (i, f) in flows.iter_mut().enumerate() {
        let port = port_base + i as u16;
        f.dport = port;
        let (dns, _) = &st.gpus[f.dst as usize];
        let mut child = spawn_worker(dns, exe, &["--recv", &port.to_string(), "--until-us", &until])?;
        let out = child.stdout.take();
        recvs.0.push(child);
        let mut out = out.ok_or_else(|| worker("receiver has no stdout".into()))?;
        // Wait for "ready".
        let mut b = [0u8; 6];
        if let Err(e) = out.read_exact(&mut b) {
            let c = recvs.0.last_mut().expect("just pushed");
            return Err(worker(format!(
                "receiver on port {port} in {dns} did not start: {}",
                why_failed(c, e.to_string())
            )));
        }
        outs.push(out);
    }
    let mut sends = Workers(Vec::new());
    for f in flows.iter() {
        let (sns, _) = &st.gpus[f.src as usize];
        let (_, daddr) = &st.gpus[f.dst as usize];
        let to = format!("{daddr}:{}", f.dport);
        sends.0.push(spawn_worker(sns, exe, &["--send", &to, "--bytes", &f.bytes.to_string(), "--until-us", &until])?);
    }
    for (f, c) in flows.iter_mut().zip(sends.0.iter_mut()) {
        let mut line = String::new();
        if let Some(mut o) = c.stdout.take() {
            o.read_to_string(&mut line)?;
        }
        if !c.wait()?.success() {
            return Err(worker(format!("sender failed: {}", why_failed(c, "no message".into()))));
        }
        f.start_us = json_u64(&line, "start_us").ok_or_else(|| worker(format!("bad sender output {line:?}")))?;
        f.sport = json_u64(&line, "sport").unwrap_or(0) as u16;
    }
    for ((f, c), mut out) in flows.iter_mut().zip(recvs.0.iter_mut()).zip(outs) {
        let mut line = String::new();
        out.read_to_string(&mut line)?;
        if !c.wait()?.success() {
            return Err(worker(format!("receiver failed: {}", why_failed(c, "no message".into()))));
        }
        f.end_us = json_u64(&line, "end_us").ok_or_else(|| worker(format!("bad receiver output {line:?}")))?;
        let got = json_u64(&line, "bytes").unwrap_or(0);
        if got != f.bytes {
            return Err(TestbedError::ShortFlow { src: f.src, dst: f.dst, got, bytes: f.bytes });
        }
    }
    Ok(())
}

pub fn read_state(state_path: &Path) -> Result<State, TestbedError> {
    if std::fs::symlink_metadata(state_path).is_err() {
        return Err(TestbedError::NotUp { state: state_path.to_path_buf() });
    }
    check_owned(state_path)?;
    let text = std::fs::read_to_string(state_path)
        .map_err(|source| TestbedError::Read { path: state_path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|source| TestbedError::StateFile { state: state_path.to_path_buf(), source })
}

/// How long a run may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Refused before it starts when the simulator expects it to take longer.
    Checked(std::time::Duration),
    /// Started whatever the simulator expects.
    Force(std::time::Duration),
}

/// What a run reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunProgress {
    /// Before the first phase: how many, and what the simulator expects the transfers to
    /// take at the scaled rates ([`expected_phase_us`]).
    Planned { phases: u32, flows: usize, expected_us: u64 },
    /// After each phase: phases done, time since the first started, and the time the
    /// phases left should take: the simulator's expectation for their transfers plus their
    /// workers' start-up at the cost per worker measured so far (what the phases done took
    /// beyond their transfers).
    Phase { done: u32, phases: u32, elapsed_us: u64, left_us: u64 },
}

/// Runs the workloads of `file` on the testbed recorded in `state_path`, phase by phase.
/// `exe` is the meshway executable, run in each namespace as `testbed flow`.
/// The run stops, failing, once `timeout` has passed (every worker is told when); a run the
/// simulator expects to take longer than `timeout` is refused before it starts.
pub fn run(
    file: &Path,
    state_path: &Path,
    exe: &str,
    cat: &Catalog,
    timeout: Timeout,
    progress: &mut dyn FnMut(RunProgress),
) -> Result<(State, Vec<FlowRun>), TestbedError> {
    let st = read_state(state_path)?;
    if st.complete == Some(false) {
        return Err(TestbedError::Unfinished { state: state_path.to_path_buf() });
    }
    let (s, f) = load(file, cat)?;
    if f.gpu_count() != st.gpus.len() {
        return Err(TestbedError::GpuMismatch {
            up: st.gpus.len(),
            scenario: file.display().to_string(),
            gpus: f.gpu_count(),
        });
    }
    let planned = plan(&f, cat, &st.prefix, st.scale)?;
    if !st.fabric.is_empty() && planned.fingerprint() != st.fabric {
        return Err(TestbedError::FabricMismatch { up: st.scenario.clone(), scenario: file.display().to_string() });
    }
    let mut flows = workloads(file, &s, &f, cat)?;
    let phases = flows.iter().map(|x| x.phase).max().unwrap_or(0) + 1;
    // Every phase is checked before the first runs.
    let max = max_flows_per_phase();
    for ph in 0..phases {
        let n = flows.iter().filter(|x| x.phase == ph).count();
        if n > max {
            return Err(TestbedError::TooManyFlows { flows: n, max });
        }
    }
    let expected = expected_phase_us(&f, cat, st.scale, &flows)?;
    let expected_us = expected.iter().fold(0u64, |a, &p| a.saturating_add(p));
    let (checked, timeout) = match timeout {
        Timeout::Checked(t) => (true, t),
        Timeout::Force(t) => (false, t),
    };
    let timeout_us = u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX);
    if checked && expected_us > timeout_us {
        return Err(TestbedError::TooLong { expected_us, timeout_us, scale: st.scale });
    }
    progress(RunProgress::Planned { phases, flows: flows.len(), expected_us });
    let started = now_us();
    let until_us = started.saturating_add(timeout_us);
    for ph in 0..phases {
        let idx: Vec<usize> = (0..flows.len()).filter(|&i| flows[i].phase == ph).collect();
        let mut batch: Vec<FlowRun> = idx.iter().map(|&i| flows[i].clone()).collect();
        if now_us() >= until_us {
            return Err(TestbedError::Worker {
                what: format!("the run's --timeout ({timeout:?}) passed before phase {ph}"),
            });
        }
        run_phase(&mut batch, &st, exe, 20_000, until_us)?;
        for (k, &i) in idx.iter().enumerate() {
            flows[i] = batch[k].clone();
        }
        let elapsed_us = now_us().saturating_sub(started);
        let sum = |p: &[u64]| p.iter().fold(0u64, |a, &x| a.saturating_add(x));
        let (done, left) = expected.split_at(ph as usize + 1);
        let workers_done = 2 * flows.iter().filter(|x| x.phase <= ph).count() as u64;
        let workers_left = 2 * flows.len() as u64 - workers_done;
        let per_worker = elapsed_us.saturating_sub(sum(done)) / workers_done.max(1);
        progress(RunProgress::Phase {
            done: ph + 1,
            phases,
            elapsed_us,
            left_us: sum(left).saturating_add(per_worker.saturating_mul(workers_left)),
        });
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
pub fn verify(
    file: &Path,
    state_path: &Path,
    exe: &str,
    cat: &Catalog,
    timeout: Timeout,
    progress: &mut dyn FnMut(RunProgress),
) -> Result<Vec<Compared>, TestbedError> {
    let (st, flows) = run(file, state_path, exe, cat, timeout, progress)?;
    let (_, f) = load(file, cat)?;
    let paths: Vec<Vec<(u32, bool)>> = flows.iter().map(|fl| kernel_path(&st, &f, fl)).collect::<Result<_, _>>()?;
    let inputs = fixed_flows(&flows, &paths);
    let predicted = meshway_sim::simulate::simulate_fixed(&scaled(&f, st.scale), cat, &inputs, testbed_wire())?;
    Ok(compare(&f, cat, st.scale, &flows, &paths, &predicted))
}
