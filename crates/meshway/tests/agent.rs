//! `meshway agent` as it runs: SQLite history, `/metrics` checked by a strict Prometheus text
//! parser, bearer token, SIGHUP reload, alerts that fire once and resolve once, and a `kill -9`
//! that leaves every committed sample. Loopback only.

mod common;
use meshway_agent::store::Store;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_meshway")
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("meshway-agent-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// `kill(1)` for SIGHUP and SIGTERM (procps; /usr/bin or /bin).
fn kill_tool() -> &'static str {
    if Path::new("/usr/bin/kill").exists() {
        "/usr/bin/kill"
    } else {
        "/bin/kill"
    }
}

/// A reflector on `port`, returned once it says it is listening (at most 10 s), so a test
/// that counts losses does not count the probes sent before it was up.
fn reflector(port: u16) -> Proc {
    use std::io::BufRead;
    let listen = format!("127.0.0.1:{port}");
    let mut p = Proc(
        Command::new(bin())
            .args(["reflect", "--listen", &listen, "--duration", "60s"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let err = p.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads its stderr to the end, so it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("reflecting STAMP on udp") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("the reflector said it was listening");
    p
}

fn agent(config: &Path) -> Proc {
    Proc(
        Command::new(bin())
            .args(["agent", "--config", config.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// An agent whose log goes to `log`, for a failure message to show.
fn agent_logged(config: &Path, log: &Path) -> Proc {
    let f = std::fs::File::create(log).unwrap();
    Proc(Command::new(bin()).args(["agent", "--config", config.to_str().unwrap()]).stderr(f).spawn().unwrap())
}

/// GET over a raw socket: (status, body).
fn get(addr: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    let status = r.split(' ').nth(1)?.parse().ok()?;
    let body = r.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// A TCP connection to `to` from the loopback address `from` (any of 127.0.0.0/8).
fn connect_from(from: &str, to: &str) -> TcpStream {
    let to: std::net::SocketAddr = to.parse().unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    s.bind(&local.into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(5)).unwrap();
    s.into()
}

/// Polls `f` every 50 ms for at most `secs`.
fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 20 {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

// ---------------------------------------------------------------------------------------------
// a strict parser of the Prometheus text format 0.0.4

#[derive(Debug)]
struct PromSample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn valid_name(n: &str, first_colon_ok: bool) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || (first_colon_ok && f == ':'))
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || (first_colon_ok && x == ':'))
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse::<f64>().map_err(|_| format!("bad value {v:?}")),
    }
}

/// Parses an exposition, enforcing: valid names and labels, escapes, one TYPE per family
/// before its samples, samples belonging to a typed family, no duplicate series, counters
/// ending in `_total`, histogram buckets cumulative with `+Inf` equal to `_count`.
fn parse_prometheus(text: &str) -> Result<(HashMap<String, String>, Vec<PromSample>), String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (no, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", no + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut p = rest.splitn(3, ' ');
            match (p.next(), p.next(), p.next()) {
                (Some("HELP"), Some(n), _) if valid_name(n, true) => {}
                (Some("TYPE"), Some(n), Some(t)) if valid_name(n, true) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(err(format!("unknown type {t}")));
                    }
                    if types.insert(n.to_string(), t.to_string()).is_some() {
                        return Err(err("second TYPE for a family".into()));
                    }
                    if samples.iter().any(|s: &PromSample| s.name.starts_with(n)) {
                        return Err(err("TYPE after samples of its family".into()));
                    }
                }
                _ => return Err(err("malformed comment".into())),
            }
            continue;
        }
        // name{labels} value
        let (name_end, labels, rest) = match line.find('{') {
            Some(b) => {
                let mut labels = BTreeMap::new();
                let mut k = b + 1;
                let bytes = line.as_bytes();
                loop {
                    if bytes.get(k) == Some(&b'}') {
                        k += 1;
                        break;
                    }
                    let eq = line[k..].find('=').ok_or_else(|| err("label without '='".into()))? + k;
                    let lname = &line[k..eq];
                    if !valid_name(lname, false) {
                        return Err(err(format!("bad label name {lname:?}")));
                    }
                    if bytes.get(eq + 1) != Some(&b'"') {
                        return Err(err("label value not quoted".into()));
                    }
                    let mut v = String::new();
                    let mut j = eq + 2;
                    loop {
                        match bytes.get(j) {
                            None => return Err(err("unterminated label value".into())),
                            Some(b'"') => break,
                            Some(b'\\') => {
                                match bytes.get(j + 1) {
                                    Some(b'\\') => v.push('\\'),
                                    Some(b'"') => v.push('"'),
                                    Some(b'n') => v.push('\n'),
                                    _ => return Err(err("bad escape".into())),
                                }
                                j += 2;
                            }
                            Some(_) => {
                                let ch = line[j..].chars().next().unwrap();
                                v.push(ch);
                                j += ch.len_utf8();
                            }
                        }
                    }
                    if labels.insert(lname.to_string(), v).is_some() {
                        return Err(err("duplicate label".into()));
                    }
                    k = j + 1;
                    match bytes.get(k) {
                        Some(b',') => k += 1,
                        Some(b'}') => {}
                        _ => return Err(err("expected ',' or '}'".into())),
                    }
                }
                (b, labels, &line[k..])
            }
            None => {
                let sp = line.find(' ').ok_or_else(|| err("no value".into()))?;
                (sp, BTreeMap::new(), &line[sp..])
            }
        };
        let name = &line[..name_end];
        if !valid_name(name, true) {
            return Err(err("bad metric name".into()));
        }
        let mut parts = rest.split_whitespace();
        let value = parse_value(parts.next().ok_or_else(|| err("no value".into()))?).map_err(err)?;
        if let Some(ts) = parts.next() {
            ts.parse::<i64>().map_err(|_| err("bad timestamp".into()))?;
        }
        if parts.next().is_some() {
            return Err(err("trailing text".into()));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suf| name.strip_suffix(suf))
            .find(|f| types.get(*f).is_some_and(|t| t == "histogram" || t == "summary"))
            .unwrap_or(name);
        let typ = types.get(family).ok_or_else(|| err(format!("no TYPE for family {family}")))?;
        if typ == "counter" && !name.ends_with("_total") {
            return Err(err("counter without _total".into()));
        }
        if !seen.insert(format!("{name}{labels:?}")) {
            return Err(err("duplicate series".into()));
        }
        samples.push(PromSample { name: name.to_string(), labels, value });
    }
    // Histograms: cumulative buckets, +Inf == _count.
    for (fam, t) in &types {
        if t != "histogram" {
            continue;
        }
        let mut by_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts: BTreeMap<String, f64> = BTreeMap::new();
        for s in &samples {
            let mut l = s.labels.clone();
            if s.name == format!("{fam}_bucket") {
                let le = parse_value(&l.remove("le").ok_or("bucket without le")?)?;
                by_series.entry(format!("{l:?}")).or_default().push((le, s.value));
            } else if s.name == format!("{fam}_count") {
                counts.insert(format!("{l:?}"), s.value);
            }
        }
        for (k, b) in by_series {
            if !b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1) {
                return Err(format!("{fam}{k}: buckets not cumulative"));
            }
            let last = b.last().ok_or("no buckets")?;
            if !last.0.is_infinite() || Some(&last.1) != counts.get(&k) {
                return Err(format!("{fam}{k}: +Inf bucket differs from _count"));
            }
        }
    }
    Ok((types, samples))
}

#[test]
fn the_strict_parser_rejects_broken_expositions() {
    let good = "# TYPE a_total counter\na_total{x=\"1\"} 3\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
    assert!(parse_prometheus(good).is_ok());
    for bad in [
        "a 1\n",                                                                          // no TYPE
        "# TYPE a counter\na 1\n",                                                        // counter without _total
        "# TYPE a gauge\na{x=1} 1\n",                                                     // unquoted
        "# TYPE a gauge\na{x=\"1\"} one\n",                                               // value
        "# TYPE a gauge\na 1\na 2\n",                                                     // duplicate
        "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n", // not cumulative
        "# TYPE a gauge\n# TYPE a gauge\n",                                               // two TYPEs
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted: {bad}");
    }
}

fn value(samples: &[PromSample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
}

#[test]
fn agent_stores_samples_serves_metrics_and_reloads() {
    let dir = TempDir::new("metrics");
    let (rport, hport) = (free_port(), free_port());
    let _r = reflector(rport);
    let db = dir.0.join("a.db");
    let cfg = dir.0.join("agent.toml");
    let http = format!("127.0.0.1:{hport}");
    let text = format!(
        "[agent]\nlisten = \"{http}\"\ndatabase = \"{}\"\nbearer-token = \"t0ken\"\nevaluate-every = \"200ms\"\n\
         [[target]]\nname = \"local-udp\"\nkind = \"udp\"\naddress = \"127.0.0.1:{rport}\"\ninterval = \"50ms\"\n\
         objectives = {{ window = \"10s\", rtt-p99 = \"500ms\", loss = \"1%\" }}\n",
        db.display()
    );
    std::fs::write(&cfg, &text).unwrap();
    let mut a = agent(&cfg);
    assert!(wait_until(10, || get(&http, "/healthz", Some("t0ken")).is_some_and(|r| r.0 == 200)), "agent serves http");
    // The token is required.
    assert_eq!(get(&http, "/metrics", None).unwrap().0, 401);
    assert_eq!(get(&http, "/metrics", Some("wrong")).unwrap().0, 401);
    assert!(wait_until(10, || {
        let (_, body) = get(&http, "/metrics", Some("t0ken")).unwrap();
        let (_, s) = parse_prometheus(&body).unwrap();
        value(&s, "meshway_probes_sent_total", &[("target", "local-udp")]).unwrap_or(0.0) >= 20.0
            && value(&s, "meshway_objective_met", &[("objective", "loss")]).is_some()
    }));
    let (status, body) = get(&http, "/metrics", Some("t0ken")).unwrap();
    assert_eq!(status, 200);
    let (types, s) = parse_prometheus(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert!(s.iter().all(|x| x.name.starts_with("meshway_")), "namespace");
    assert_eq!(types["meshway_probe_rtt_seconds"], "histogram");
    assert_eq!(value(&s, "meshway_up", &[]), Some(1.0));
    assert_eq!(value(&s, "meshway_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    assert_eq!(value(&s, "meshway_probes_lost_total", &[("target", "local-udp")]), Some(0.0));
    assert_eq!(value(&s, "meshway_objective_met", &[("target", "local-udp"), ("objective", "rtt-p99")]), Some(1.0));
    assert_eq!(value(&s, "meshway_alert_firing", &[("objective", "loss")]), Some(0.0));
    // Blackbox-style probe.
    let (st, pb) = get(&http, &format!("/probe?target=127.0.0.1:{rport}&module=udp"), Some("t0ken")).unwrap();
    assert_eq!(st, 200);
    let (_, ps) = parse_prometheus(&pb).unwrap();
    assert_eq!(value(&ps, "meshway_probe_success", &[]), Some(1.0));
    let (st, _) = get(&http, "/probe?target=127.0.0.1:1&module=smtp", Some("t0ken")).unwrap();
    assert_eq!(st, 400);
    // A target that cannot be probed is the request's fault: 400 with the reason, not a
    // failed probe that reads as an outage.
    for (q, why) in [
        ("target=", "expected a host"),
        ("target=127.0.0.1:65536", "out of range 1-65535"),
        ("target=127.0.0.1:1&module=icmp", "icmp takes a host without a port"),
        ("target=127.0.0.1:1&module=http", "invalid url"),
        ("target=%00", "expected a host"),
        ("target=127.0.0.1:1%0a", "expected a host"),
    ] {
        let (st, body) = get(&http, &format!("/probe?{q}"), Some("t0ken")).unwrap();
        assert_eq!(st, 400, "{q}: {body}");
        assert!(body.contains("bad target") && body.contains(why), "{q}: {body}");
    }

    // SIGHUP: a second target appears.
    std::fs::write(
        &cfg,
        format!("{text}[[target]]\nname = \"second\"\nkind = \"udp\"\naddress = \"127.0.0.1:{rport}\"\ninterval = \"50ms\"\n"),
    )
    .unwrap();
    let pid = a.0.id().to_string();
    assert!(Command::new(kill_tool()).args(["-HUP", &pid]).status().unwrap().success());
    assert!(wait_until(10, || {
        let (_, body) = get(&http, "/metrics", Some("t0ken")).unwrap();
        let (_, s) = parse_prometheus(&body).unwrap();
        value(&s, "meshway_probes_sent_total", &[("target", "second")]).unwrap_or(0.0) >= 3.0
            && value(&s, "meshway_config_reloads_total", &[("result", "ok")]) == Some(1.0)
    }));

    // SIGTERM: a clean exit, and the database has the samples and their rollup.
    assert!(Command::new(kill_tool()).args(["-TERM", &pid]).status().unwrap().success());
    let status = a.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let st = Store::open_read_only(&db).unwrap();
    assert_eq!(st.integrity_check().unwrap(), "ok");
    assert_eq!(st.targets(), vec!["local-udp".to_string(), "second".to_string()]);
    let id = st.id("local-udp").unwrap();
    let n = st.samples(id, 0, u64::MAX / 2).unwrap().len();
    assert!(n >= 20, "{n} samples stored");
    let minutes = st.rollups(id, false, 0, u64::MAX / 2).unwrap();
    assert_eq!(minutes.iter().map(|r| r.sent as usize).sum::<usize>(), n, "rollups cover every sample");

    // history reads it back.
    let o = Command::new(bin())
        .args(["history", "--db", db.to_str().unwrap(), "--target", "local-udp", "--step", "raw", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["series"].as_array().unwrap().len(), n);
    assert_eq!(v["summary"]["sent"].as_u64(), Some(n as u64));
    // An interface metric of a probe target has no values: an error, not a column of "-".
    let o = Command::new(bin())
        .args(["history", "--db", db.to_str().unwrap(), "--target", "local-udp", "--metric", "utilization"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("target \"local-udp\" has samples but no utilization values"), "{e}");
    // And draws it as smokeping does, in one offline page.
    let html = dir.0.join("history.html");
    let o = Command::new(bin())
        .args(["history", "--db", db.to_str().unwrap(), "--target", "local-udp", "--step", "raw"])
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && page.contains("median to p90") && page.contains("round-trip time per raw interval")
    );
    common::render_in_chromium(&html);
    assert!(!page.contains("<script") && !page.contains("src="), "self-contained");
    assert_eq!(page.matches("fill=\"#9ecae1\"").count(), n + 1, "one median-to-p90 box per sample, and the legend");
}

#[test]
fn alert_fires_once_and_resolves_once() {
    let dir = TempDir::new("alert");
    let (rport, hport) = (free_port(), free_port());
    // The webhook receiver: records each POST body.
    let hook = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    {
        let bodies = bodies.clone();
        hook.set_nonblocking(false).unwrap();
        std::thread::spawn(move || {
            for s in hook.incoming().take(20) {
                let Ok(mut s) = s else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then Content-Length bytes of body.
                let body = loop {
                    let Ok(n) = s.read(&mut chunk) else { break None };
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let t = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = t.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_string))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            break Some(body[..len].to_string());
                        }
                    }
                };
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                if let Some(b) = body.and_then(|b| serde_json::from_str(&b).ok()) {
                    bodies.lock().unwrap().push(b);
                }
            }
        });
    }
    let db = dir.0.join("a.db");
    let cfg = dir.0.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nlisten = \"127.0.0.1:{hport}\"\ndatabase = \"{}\"\nevaluate-every = \"200ms\"\n\
             [alerts]\nwebhook = \"http://{hook_addr}/hook\"\nfire-after = 2\nresolve-after = 2\n\
             [[target]]\nname = \"flaky\"\nkind = \"udp\"\naddress = \"127.0.0.1:{rport}\"\ninterval = \"50ms\"\ntimeout = \"500ms\"\n\
             objectives = {{ window = \"1s\", loss = \"20%\" }}\n",
            db.display()
        ),
    )
    .unwrap();
    // No reflector yet: every probe is lost.
    let _a = agent(&cfg);
    let count = |status: &str| bodies.lock().unwrap().iter().filter(|b| b["status"] == status).count();
    assert!(wait_until(15, || count("firing") >= 1), "the alert fires");
    // The reflector comes up: loss falls to 0 and the alert resolves.
    let _r = reflector(rport);
    assert!(wait_until(15, || count("resolved") >= 1), "the alert resolves");
    // Stable afterwards: no flapping.
    std::thread::sleep(Duration::from_secs(2));
    let b = bodies.lock().unwrap().clone();
    assert_eq!(b.len(), 2, "{b:#?}");
    assert_eq!((b[0]["status"].as_str(), b[1]["status"].as_str()), (Some("firing"), Some("resolved")));
    for p in &b {
        assert_eq!(p["version"], "4");
        assert_eq!(p["receiver"], "meshway");
        let a = &p["alerts"][0];
        assert_eq!(a["labels"]["alertname"], "MeshwayObjectiveViolated");
        assert_eq!(a["labels"]["target"], "flaky");
        assert_eq!(a["labels"]["objective"], "loss");
        assert!(a["startsAt"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(b[0]["alerts"][0]["fingerprint"], b[1]["alerts"][0]["fingerprint"]);
    assert_eq!(b[0]["alerts"][0]["startsAt"], b[1]["alerts"][0]["startsAt"]);
    assert_ne!(b[1]["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
}

#[test]
fn kill_9_mid_write_keeps_every_committed_sample() {
    let dir = TempDir::new("kill9");
    let (rport, hport) = (free_port(), free_port());
    let mut refl = reflector(rport);
    let db = dir.0.join("a.db");
    let cfg = dir.0.join("agent.toml");
    let mut text = format!("[agent]\nlisten = \"127.0.0.1:{hport}\"\ndatabase = \"{}\"\n", db.display());
    // 20 targets at 10 ms: about 2,000 samples a second, a transaction each second.
    for k in 0..20 {
        text.push_str(&format!(
            "[[target]]\nname = \"t{k}\"\nkind = \"udp\"\naddress = \"127.0.0.1:{rport}\"\ninterval = \"10ms\"\n"
        ));
    }
    std::fs::write(&cfg, text).unwrap();
    let log = dir.0.join("agent.log");
    let mut a = agent_logged(&cfg, &log);
    let mut committed = 0;
    let got = wait_until(20, || {
        committed = Store::open_read_only(&db).and_then(|s| s.sample_count()).unwrap_or(0);
        committed >= 3_000
    });
    let status = a.0.try_wait();
    let metrics = get(&format!("127.0.0.1:{hport}"), "/metrics", None).map(|(_, b)| b).unwrap_or_default();
    let sent: Vec<&str> = metrics.lines().filter(|l| l.starts_with("meshway_probes_")).take(4).collect();
    assert!(
        got,
        "{committed} samples in 20 s; agent {status:?}; reflector alive: {:?}; metrics: {sent:?}; log:\n{}",
        refl.0.try_wait(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // What a reader sees now is committed; kill at once, mid-stream.
    committed = Store::open_read_only(&db).unwrap().sample_count().unwrap();
    a.0.kill().unwrap(); // SIGKILL
    let _ = a.0.wait();
    let st = Store::open_read_only(&db).unwrap();
    assert_eq!(st.integrity_check().unwrap(), "ok");
    let after = st.sample_count().unwrap();
    assert!(after >= committed, "{after} samples after kill -9, {committed} seen committed before");
    drop(st);
    // And the agent starts again on the same file.
    let _b = agent(&cfg);
    let http = format!("127.0.0.1:{hport}");
    assert!(wait_until(10, || get(&http, "/healthz", None).is_some_and(|r| r.0 == 200)));
}

/// An agent configuration with one perf target `bulk` at `server` (its `timing` keys, and
/// objectives of a 1 Mbit/s floor and `more`), evaluated every 200 ms: (its path, its HTTP
/// address).
fn perf_agent_config(
    dir: &TempDir,
    hport: u16,
    alerts: &str,
    server: &str,
    timing: &str,
    more: &str,
) -> (PathBuf, String) {
    let cfg = dir.0.join("agent.toml");
    let http = format!("127.0.0.1:{hport}");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nlisten = \"{http}\"\ndatabase = \"{}\"\nevaluate-every = \"200ms\"\n{alerts}\
             [[target]]\nname = \"bulk\"\nkind = \"perf\"\naddress = \"{server}\"\n{timing}\n\
             objectives = {{ window = \"1min\", throughput-min = \"1Mbps\"{more} }}\n",
            dir.0.join("a.db").display()
        ),
    )
    .unwrap();
    (cfg, http)
}

#[test]
fn agent_perf_target_records_throughput() {
    let dir = TempDir::new("perf");
    let (pport, hport) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{pport}");
    let _server = Proc(
        Command::new(bin()).args(["perf", "--server", "--listen", &listen]).stderr(Stdio::null()).spawn().unwrap(),
    );
    let (cfg, http) = perf_agent_config(&dir, hport, "", &listen, "interval = \"2s\"\nduration = \"300ms\"", "");
    let _a = agent(&cfg);
    assert!(wait_until(20, || {
        let Some((200, body)) = get(&http, "/metrics", None) else { return false };
        let (_, s) = parse_prometheus(&body).unwrap();
        value(&s, "meshway_throughput_bytes_per_second", &[("target", "bulk")]).unwrap_or(0.0) > 1e6
            && value(&s, "meshway_objective_met", &[("target", "bulk"), ("objective", "throughput-min")]) == Some(1.0)
            // Runs that passed are probes sent, not lost.
            && value(&s, "meshway_probes_sent_total", &[("target", "bulk")]).unwrap_or(0.0) >= 1.0
            && value(&s, "meshway_probes_lost_total", &[("target", "bulk")]) == Some(0.0)
            && value(&s, "meshway_window_loss_ratio", &[("target", "bulk")]) == Some(0.0)
    }));
}

/// A perf target whose server is not there: every run fails. Each is a probe sent and lost,
/// the throughput floor is violated and fires, no throughput gauge is shown, and the failure
/// is logged once, not once a run.
#[test]
fn agent_perf_target_whose_runs_fail_violates_its_floor() {
    let dir = TempDir::new("perf-fail");
    let hport = free_port();
    // A port nobody listens on (bound, then closed): connections are refused.
    let dead = free_port();
    let (cfg, http) = perf_agent_config(
        &dir,
        hport,
        "[alerts]\nfire-after = 1\n",
        &format!("127.0.0.1:{dead}"),
        "interval = \"200ms\"\nduration = \"100ms\"",
        ", loss = \"50%\"",
    );
    let log = dir.0.join("agent.log");
    let _a = agent_logged(&cfg, &log);
    let mut last = String::new();
    let ok = wait_until(20, || {
        let Some((200, body)) = get(&http, "/metrics", None) else { return false };
        let (_, s) = parse_prometheus(&body).unwrap();
        let sent = value(&s, "meshway_probes_sent_total", &[("target", "bulk")]).unwrap_or(0.0);
        let lost = value(&s, "meshway_probes_lost_total", &[("target", "bulk")]).unwrap_or(-1.0);
        let good = sent >= 3.0
            && lost == sent
            && value(&s, "meshway_window_loss_ratio", &[("target", "bulk")]) == Some(1.0)
            && value(&s, "meshway_objective_met", &[("target", "bulk"), ("objective", "throughput-min")]) == Some(0.0)
            && value(&s, "meshway_alert_firing", &[("target", "bulk"), ("objective", "throughput-min")]) == Some(1.0)
            && !body.contains("meshway_throughput_bytes_per_second{");
        last = body;
        good
    });
    assert!(ok, "{last}");
    // Every run failed the same way: said once, not once a run (no minute has passed).
    let text = std::fs::read_to_string(&log).unwrap();
    let said = text.lines().filter(|l| l.contains("cannot connect to perf server")).count();
    assert_eq!(said, 1, "{text}");
}

/// A raw request; the whole response as text.
fn raw(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    r
}

#[test]
fn http_holds_under_stalled_clients_and_held_probes() {
    let dir = TempDir::new("http-hold");
    let hport = free_port();
    // A UDP port nobody answers on: every /probe against it waits its whole timeout.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let http = format!("127.0.0.1:{hport}");
    let cfg = dir.0.join("agent.toml");
    let text = format!(
        "[agent]\nlisten = \"{http}\"\ndatabase = \"{}\"\nbearer-token = \"t0ken\"\n",
        dir.0.join("a.db").display()
    );
    std::fs::write(&cfg, text).unwrap();
    let _a = agent(&cfg);
    // /healthz needs no token; the scheme is case-insensitive; HEAD has headers and no body.
    assert!(wait_until(10, || get(&http, "/healthz", None).is_some_and(|r| r.0 == 200)), "agent serves http");
    let r = raw(&http, &format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nAuthorization: bearer t0ken\r\n\r\n"));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = raw(&http, &format!("HEAD /metrics HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer t0ken\r\n\r\n"));
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let len =
        head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()));
    assert!(len.is_some_and(|v| v.parse::<usize>().is_ok_and(|n| n > 100)), "HEAD gives the GET body's length: {head}");
    assert_eq!(body, "", "HEAD has no body");
    let r = raw(&http, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    assert!(r.to_ascii_lowercase().contains("\r\nallow: get, head\r\n"), "a 405 lists the methods (RFC 9110): {r}");
    let r = raw(&http, &format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000)));
    assert!(r.starts_with("HTTP/1.1 431"), "a head over 8 KiB is refused: {r}");
    let r = raw(&http, "BREW /metrics HTCPCP/1.0\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert_eq!(get(&http, "/metrics", Some("t0ke")).unwrap().0, 401, "a prefix of the token is not the token");

    // 600 clients from another source (127.0.0.2) that send half a request head and stall,
    // more than the server's 512 connections, and 40 probes held on the silent target for 3 s
    // each (more than the probe pool): scrapes still answer, each within 1 s. That source
    // holds at most 64 connections; the rest get 503 (or a reset) at once.
    let mut stalled: Vec<TcpStream> = (0..600)
        .map(|_| {
            let mut s = connect_from("127.0.0.2", &http);
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
            s
        })
        .collect();
    let probes: Vec<_> = (0..40)
        .map(|_| {
            let (h, t) = (http.clone(), format!("/probe?target={silent_addr}&module=udp&timeout=3s"));
            std::thread::spawn(move || get(&h, &t, Some("t0ken")).map(|r| r.0))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let t0 = meshway_agent::clock::mono();
        let (status, body) = get(&http, "/metrics", Some("t0ken")).expect("a scrape answers");
        assert_eq!(status, 200, "{body}");
        let took = meshway_agent::clock::mono().0 - t0.0;
        eprintln!("scrape under 600 stalled clients and 40 held probes: {:.2} ms", took as f64 / 1e6);
        // Milliseconds when quiet; 3 s leaves room for the other tests of this file beside it.
        assert!(took < 3_000_000_000, "scrape took {took} ns");
        std::thread::sleep(Duration::from_millis(200));
    }
    let statuses: Vec<u16> = probes.into_iter().filter_map(|p| p.join().unwrap()).collect();
    assert_eq!(statuses.len(), 40);
    assert!(statuses.iter().filter(|&&s| s == 503).count() >= 8, "the probe pool is bounded: {statuses:?}");
    assert!(statuses.contains(&200), "probes within the pool are served: {statuses:?}");
    // The stalled clients are dropped at the head deadline (5 s): the server closes them.
    let mut r = String::new();
    stalled[0].set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let closed = stalled[0].read_to_string(&mut r);
    assert!(closed.is_ok(), "a stalled client is still connected after 10 s: {closed:?}");
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 408"), "{r}");
    stalled.clear();
}

#[test]
fn metrics_pass_promtool_check_metrics() {
    // Prometheus's own linter on a live exposition (Debian's `prometheus` package; .ci/run
    // installs it). Skipped with a message where promtool is missing, a failure under CI.
    let Ok(out) = Command::new("promtool").arg("--version").output() else {
        assert!(std::env::var("CI").is_err(), "promtool is missing under CI");
        eprintln!("skipped: promtool not installed (apt-get install prometheus)");
        return;
    };
    assert!(out.status.success());
    let dir = TempDir::new("promtool");
    let (rport, hport) = (free_port(), free_port());
    let _r = reflector(rport);
    let http = format!("127.0.0.1:{hport}");
    let cfg = dir.0.join("agent.toml");
    let text = format!(
        "[agent]\nlisten = \"{http}\"\ndatabase = \"{}\"\nevaluate-every = \"200ms\"\n\
         [[target]]\nname = \"local-udp\"\nkind = \"udp\"\naddress = \"127.0.0.1:{rport}\"\ninterval = \"50ms\"\n\
         objectives = {{ window = \"10s\", rtt-p99 = \"50ms\", loss = \"1%\" }}\n\
         [[target]]\nname = \"ifs\"\nkind = \"interface\"\naddress = \"lo\"\ninterval = \"100ms\"\nspeed = \"10Gbps\"\n\
         objectives = {{ window = \"10s\", utilization = \"90%\" }}\n\
         [[target]]\nname = \"optics\"\nkind = \"optics\"\naddress = \"file:{}\"\ninterval = \"100ms\"\n\
         objectives = {{ optics = \"warning\" }}\n",
        dir.0.join("a.db").display(),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/optics/qsfp-dd-400zr.hex").display()
    );
    std::fs::write(&cfg, text).unwrap();
    let _a = agent(&cfg);
    // Wait until every family has samples (window percentiles included).
    let mut body = String::new();
    assert!(wait_until(15, || {
        body = get(&http, "/metrics", None).map(|r| r.1).unwrap_or_default();
        body.contains("meshway_window_rtt_seconds{")
            && body.contains("meshway_objective_met{")
            && body.contains("meshway_interface_utilization_ratio{")
            && body.contains("meshway_objective_met{target=\"ifs/lo\"")
            && body.contains("meshway_optics_vdm{")
            && body.contains("objective=\"optics\"")
    }));
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n{body}");
}

#[test]
fn structured_logs_as_json_lines_with_levels() {
    let dir = TempDir::new("logs");
    let hport = free_port();
    let cfg = dir.0.join("agent.toml");
    let text = format!(
        "[agent]\nlisten = \"127.0.0.1:{hport}\"\ndatabase = \"{}\"\n\
         [[target]]\nname = \"nobody\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\ninterval = \"100ms\"\n",
        dir.0.join("a.db").display()
    );
    std::fs::write(&cfg, text).unwrap();
    let run = |extra: &[&str]| -> String {
        let child = Command::new(bin())
            .args(["agent", "--config", cfg.to_str().unwrap()])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        let http = format!("127.0.0.1:{hport}");
        assert!(wait_until(10, || get(&http, "/healthz", None).is_some_and(|r| r.0 == 200)));
        Command::new(kill_tool()).args(["-TERM", &pid]).status().unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let json = run(&["--log-format", "json"]);
    let lines: Vec<serde_json::Value> =
        json.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(lines.len() >= 3, "{json}");
    for l in &lines {
        let ts = l["timestamp"].as_str().unwrap();
        assert!(ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "RFC 3339 UTC: {ts}");
        assert!(["INFO", "WARN", "ERROR"].contains(&l["level"].as_str().unwrap()), "{l}");
    }
    assert!(lines[0]["message"].as_str().unwrap().starts_with("agent: 1 targets, http on"), "{json}");
    assert!(lines.iter().any(|l| l["message"].as_str().unwrap().starts_with("agent: stopped")), "{json}");
    // At warn, a clean run says nothing.
    assert_eq!(run(&["--log-level", "warn"]), "");
}

/// Percent-encodes a query-string value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A body sent with `Transfer-Encoding: chunked`, joined; other bodies as they are.
fn dechunk(body: &str) -> String {
    if body.trim_start().starts_with('{') {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

#[test]
fn grafana_dashboard_queries_return_data_from_a_real_prometheus() {
    // deploy/grafana/meshway-agent.json: its structure, then every panel's PromQL against a real
    // Prometheus (Debian's `prometheus`; .ci/run installs it) scraping a running agent.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/meshway-agent.json"))
            .unwrap(),
    )
    .expect("the dashboard is valid JSON");
    assert_eq!(dash["uid"], "meshway-agent");
    let panels = dash["panels"].as_array().unwrap();
    let mut exprs = Vec::new();
    let mut ids = Vec::new();
    for p in panels {
        ids.push(p["id"].as_u64().unwrap());
        let g = &p["gridPos"];
        assert!(g["w"].as_u64().unwrap() + g["x"].as_u64().unwrap() <= 24, "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has queries", p["title"]);
        for t in targets {
            exprs.push((p["title"].as_str().unwrap().to_string(), t["expr"].as_str().unwrap().to_string()));
        }
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    let titles: Vec<&str> = panels.iter().map(|p| p["title"].as_str().unwrap()).collect();
    for want in ["RTT percentiles", "Loss", "Jitter", "Throughput", "Objective state", "Objective burn", "Probe errors"]
    {
        assert!(titles.iter().any(|t| t.starts_with(want)), "a panel for {want}");
    }
    let Ok(out) = Command::new("prometheus").arg("--version").output() else {
        assert!(std::env::var("CI").is_err(), "prometheus is missing under CI");
        eprintln!("skipped: prometheus not installed (apt-get install prometheus)");
        return;
    };
    assert!(out.status.success());
    let dir = TempDir::new("grafana");
    let (rport, pport, hport, prom_port) = (free_port(), free_port(), free_port(), free_port());
    let _r = reflector(rport);
    let perf = format!("127.0.0.1:{pport}");
    let _s =
        Proc(Command::new(bin()).args(["perf", "--server", "--listen", &perf]).stderr(Stdio::null()).spawn().unwrap());
    let http = format!("127.0.0.1:{hport}");
    let cfg = dir.0.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nlisten = \"{http}\"\ndatabase = \"{}\"\nevaluate-every = \"200ms\"\n\
             [[target]]\nname = \"edge\"\nkind = \"udp\"\naddress = \"127.0.0.1:{rport}\"\ninterval = \"50ms\"\n\
             objectives = {{ window = \"10s\", rtt-p99 = \"50ms\", loss = \"1%\", jitter = \"10ms\" }}\n\
             [[target]]\nname = \"bulk\"\nkind = \"perf\"\naddress = \"{perf}\"\ninterval = \"2s\"\nduration = \"200ms\"\n\
             objectives = {{ window = \"1min\", throughput-min = \"1Mbps\" }}\n",
            dir.0.join("a.db").display()
        ),
    )
    .unwrap();
    let _a = agent(&cfg);
    assert!(wait_until(20, || get(&http, "/metrics", None)
        .is_some_and(|(_, b)| b.contains("meshway_throughput_bytes_per_second{")
            && b.contains("meshway_objective_ratio{target=\"edge\""))));
    let prom_cfg = dir.0.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: meshway\n    static_configs:\n      - targets: [\"{http}\"]\n"
        ),
    )
    .unwrap();
    let prom = format!("127.0.0.1:{prom_port}");
    let _p = Proc(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("tsdb").display()))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let query = |expr: &str| -> Option<Vec<serde_json::Value>> {
        let (status, body) = get(&prom, &format!("/api/v1/query?query={}", urlencode(expr)), None)?;
        let v: serde_json::Value = serde_json::from_str(&dechunk(&body)).ok()?;
        (status == 200 && v["status"] == "success").then(|| v["data"]["result"].as_array().cloned().unwrap_or_default())
    };
    // Prometheus is up and has scraped the agent a few times.
    assert!(
        wait_until(30, || query("up{job=\"meshway\"} == 1").is_some_and(|r| !r.is_empty())),
        "prometheus scrapes the agent"
    );
    for (title, e) in &exprs {
        let e = e.replace("$target", ".*").replace("$__rate_interval", "30s");
        let mut last = None;
        let ok = wait_until(30, || {
            last = query(&e);
            last.as_ref().is_some_and(|r| {
                r.iter().any(|s| s["value"][1].as_str().is_some_and(|v| v.parse::<f64>().is_ok_and(f64::is_finite)))
            })
        });
        assert!(ok, "panel {title:?}: {e} returned no finite data: {last:?}");
    }
}

#[test]
fn optics_target_exports_the_module_and_alerts_on_its_alarms() {
    // A file source (as the optoe driver exposes a module): the 400ZR example, whose pre-FEC
    // BER is over its VDM alarm threshold; then a healthy SFP in its place.
    let dir = TempDir::new("optics");
    let hport = free_port();
    let http = format!("127.0.0.1:{hport}");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/optics");
    let module = dir.0.join("eeprom");
    std::fs::copy(root.join("qsfp-dd-400zr.hex"), &module).unwrap();
    let cfg = dir.0.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nlisten = \"{http}\"\ndatabase = \"{}\"\nevaluate-every = \"100ms\"\n\
             [alerts]\nfire-after = 1\nresolve-after = 1\n\
             [[target]]\nname = \"dci\"\nkind = \"optics\"\naddress = \"file:{}, nosuchif*\"\ninterval = \"100ms\"\n\
             objectives = {{ optics = \"alarm\" }}\n",
            dir.0.join("a.db").display(),
            module.display()
        ),
    )
    .unwrap();
    let _a = agent(&cfg);
    let src = module.display().to_string();
    let firing = format!("meshway_alert_firing{{target=\"dci/{src}\",objective=\"optics\"}} 1");
    let mut body = String::new();
    assert!(
        wait_until(10, || {
            body = get(&http, "/metrics", None).map(|r| r.1).unwrap_or_default();
            body.contains(&firing)
        }),
        "{body}"
    );
    let (_, s) = parse_prometheus(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let l = [("target", "dci"), ("interface", src.as_str())];
    assert_eq!(value(&s, "meshway_optics_status", &l), Some(2.0));
    assert_eq!(value(&s, "meshway_optics_temperature_celsius", &l), Some(45.5));
    let rx = value(&s, "meshway_optics_rx_power_watts", &[("interface", src.as_str()), ("lane", "1")]).unwrap();
    assert!((rx - 0.0501e-3).abs() < 1e-12, "{rx}");
    let ber = value(&s, "meshway_optics_vdm", &[("observable", "pre-FEC BER media input")]).unwrap();
    assert!((ber - 1.5e-3).abs() < 1e-12);
    assert_eq!(value(&s, "meshway_optics_info", &[("part", "QDD-400G-ZR")]), Some(1.0));
    // Receive power is kept as a series per lane, in dBm.
    let series = format!("dci/{src}/rx-power/lane1");
    let db = dir.0.join("a.db");
    let mut v = serde_json::Value::Null;
    assert!(wait_until(10, || {
        let o = Command::new(bin())
            .args(["history", "--db", db.to_str().unwrap(), "--target", &series, "--step", "raw", "--json"])
            .output()
            .unwrap();
        v = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["series"].as_array().is_some_and(|a| a.len() >= 2)
    }));
    assert_eq!(v["metric"], "rx-power");
    let dbm = v["series"][0]["value"].as_f64().unwrap();
    assert!((dbm + 13.0).abs() < 0.01, "{dbm} dBm");
    // The healthy module: the alert resolves.
    std::fs::copy(root.join("sfp-25g-sr.hex"), &module).unwrap();
    let resolved = format!("meshway_alert_firing{{target=\"dci/{src}\",objective=\"optics\"}} 0");
    assert!(wait_until(10, || get(&http, "/metrics", None).is_some_and(|r| r.1.contains(&resolved))));
    let body = get(&http, "/metrics", None).unwrap().1;
    let (_, s) = parse_prometheus(&body).unwrap();
    assert_eq!(value(&s, "meshway_optics_status", &l), Some(0.0));
    // A corrupt file is counted and the last good reading goes on being served.
    std::fs::write(&module, "not a module\n").unwrap();
    assert!(wait_until(10, || {
        let b = get(&http, "/metrics", None).map(|r| r.1).unwrap_or_default();
        let (_, s) = parse_prometheus(&b).unwrap();
        value(&s, "meshway_optics_read_errors_total", &l).unwrap_or(0.0) >= 2.0
    }));
}

#[test]
fn history_finds_a_step_and_forecasts_a_seasonal_peak() {
    use meshway_probe::objective::Sample;
    let dir = TempDir::new("anomaly");
    let db = dir.0.join("h.db");
    let now = meshway_agent::clock::unix_nanos();
    let day = 86_400_000_000_000u64;
    let start = now - now % 60_000_000_000 - 7 * day;
    {
        let mut st = Store::open(&db).unwrap();
        let rtt = st.target_id("edge", "udp", "x").unwrap();
        let util = st.target_id("up/eth0/utilization", "interface", "eth0").unwrap();
        let mut batch = Vec::new();
        let mut x: u64 = 99;
        for i in 0..(7 * 1440) {
            let at = start + i * 60_000_000_000;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = (x % 1000) as f64 / 1000.0 - 0.5; // uniform, sd 0.29
            let phase = 2.0 * std::f64::consts::PI * (at % day) as f64 / day as f64;
            // RTT: 10 ms with a ±2 ms daily swing, 0.3 ms noise, +3 ms from day 5 on.
            let step = if i >= 5 * 1440 { 3.0 } else { 0.0 };
            let ms = 10.0 + 2.0 * phase.sin() + noise + step;
            batch.push((rtt, Sample { at_ns: at, rtt_ns: Some((ms * 1e6) as u64), value: None }));
            // Utilization: 0.30 + 0.01/day with a ±0.10 daily swing: the peak reaches 0.80 at day 40.
            let u = 0.30 + 0.01 * (i as f64 / 1440.0) + 0.10 * phase.sin() + 0.01 * noise;
            batch.push((util, Sample { at_ns: at, rtt_ns: None, value: Some(u) }));
        }
        st.insert(&batch).unwrap();
        st.rollup(start, now).unwrap();
    }
    let o = Command::new(bin())
        .args(["history", "--db", db.to_str().unwrap(), "--target", "edge", "--metric", "rtt-p50", "--since", "170h"])
        .args(["--anomalies", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let changes = v["anomalies"]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{}", v["anomalies"]);
    let at = changes[0]["at_ns"].as_u64().unwrap();
    let want = start + 5 * day;
    assert!(at.abs_diff(want) <= 2 * 3_600_000_000_000, "step found {} h off", at.abs_diff(want) as f64 / 3.6e12);
    let size = changes[0]["after"].as_f64().unwrap() - changes[0]["before"].as_f64().unwrap();
    assert!((size / 1e6 - 3.0).abs() < 0.5, "step of {} ms", size / 1e6);
    // Text names it.
    let o = Command::new(bin())
        .args(["history", "--db", db.to_str().unwrap(), "--target", "edge", "--since", "170h", "--anomalies"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("1 level changes") && s.contains("  change  "), "{s}");

    let o = Command::new(bin())
        .args(["history", "--db", db.to_str().unwrap(), "--target", "up/eth0/utilization", "--since", "170h"])
        .args(["--step", "1h", "--forecast", "--threshold", "80%", "--horizon", "2000h", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = &v["forecast"];
    assert!(f["season_extreme"].as_f64().unwrap() > 0.08, "{f}");
    // The truth: the first minute the noise-free series reaches 0.80 (near day 40, at the
    // daily peak, 06:00 UTC, whatever the time of day the test runs).
    let truth = (0..60 * 1440u64)
        .map(|m| start + m * 60_000_000_000)
        .find(|&t| {
            let phase = 2.0 * std::f64::consts::PI * (t % day) as f64 / day as f64;
            0.30 + 0.01 * ((t - start) as f64 / day as f64) + 0.10 * phase.sin() >= 0.80
        })
        .unwrap();
    let days = (f["expected_ns"].as_u64().unwrap() as f64 - truth as f64) / day as f64;
    assert!(days.abs() < 2.0, "crossing {days:.1} days from the truth");
    let (lo, hi) = (f["earliest_ns"].as_u64().unwrap(), f["latest_ns"].as_u64().unwrap_or(u64::MAX));
    // The series crosses at a daily peak: the interval may sit on the neighbouring day's peak.
    assert!(
        lo.saturating_sub(day) <= truth && truth <= hi.saturating_add(day),
        "the interval, give or take one season, holds the truth ({lo} <= {truth} <= {hi})"
    );
    assert!(lo <= f["expected_ns"].as_u64().unwrap() && f["expected_ns"].as_u64().unwrap() <= hi);
}

#[test]
fn an_anomaly_objective_fires_on_a_fresh_step_in_the_stored_series() {
    use meshway_probe::objective::Sample;
    // Two days of 1-minute RTT history already in the database: "jumpy" stepped up by 3 ms
    // 20 minutes ago, "calm" did not. The agent judges both at start.
    let dir = TempDir::new("anomaly-alert");
    let db = dir.0.join("a.db");
    let rport = free_port();
    let _r = reflector(rport);
    let now = meshway_agent::clock::unix_nanos();
    let start = now - now % 60_000_000_000 - 2 * 86_400_000_000_000;
    {
        let mut st = Store::open(&db).unwrap();
        let addr = format!("127.0.0.1:{rport}");
        let ids = [st.target_id("jumpy", "udp", &addr).unwrap(), st.target_id("calm", "udp", &addr).unwrap()];
        let mut batch = Vec::new();
        let mut x: u64 = 7;
        let n = 2 * 1440;
        for i in 0..n {
            let at = start + i * 60_000_000_000;
            for (k, id) in ids.iter().enumerate() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let noise = (x % 1000) as f64 / 1000.0 - 0.5;
                let step = if k == 0 && i >= n - 20 { 3.0 } else { 0.0 };
                let ms = 10.0 + noise + step;
                batch.push((*id, Sample { at_ns: at, rtt_ns: Some((ms * 1e6) as u64), value: None }));
            }
        }
        st.insert(&batch).unwrap();
        st.rollup(start, now).unwrap();
    }
    let hport = free_port();
    let http = format!("127.0.0.1:{hport}");
    let cfg = dir.0.join("agent.toml");
    let mut text = format!(
        "[agent]\nlisten = \"{http}\"\ndatabase = \"{}\"\nevaluate-every = \"100ms\"\n[alerts]\nfire-after = 1\n",
        db.display()
    );
    for name in ["jumpy", "calm"] {
        text.push_str(&format!(
            "[[target]]\nname = \"{name}\"\nkind = \"udp\"\naddress = \"127.0.0.1:{rport}\"\ninterval = \"1s\"\n\
             objectives = {{ anomaly = true }}\n"
        ));
    }
    std::fs::write(&cfg, text).unwrap();
    let _a = agent(&cfg);
    let mut body = String::new();
    assert!(wait_until(10, || {
        body = get(&http, "/metrics", None).map(|r| r.1).unwrap_or_default();
        body.contains("meshway_objective_met{target=\"calm\",objective=\"anomaly\"}")
    }));
    let (_, s) = parse_prometheus(&body).unwrap();
    assert_eq!(
        value(&s, "meshway_alert_firing", &[("target", "jumpy"), ("objective", "anomaly")]),
        Some(1.0),
        "{body}"
    );
    assert_eq!(value(&s, "meshway_objective_met", &[("target", "jumpy"), ("objective", "anomaly")]), Some(0.0));
    assert_eq!(value(&s, "meshway_alert_firing", &[("target", "calm"), ("objective", "anomaly")]), Some(0.0));
    assert_eq!(value(&s, "meshway_objective_met", &[("target", "calm"), ("objective", "anomaly")]), Some(1.0));
}

#[test]
fn deploy_prometheus_config_and_rules_pass_promtool() {
    // deploy/prometheus: the scrape config and rules are what Prometheus itself accepts, and the
    // rules' unit tests (meshway-rules.test.yml) pass.
    let Ok(out) = Command::new("promtool").arg("--version").output() else {
        assert!(std::env::var("CI").is_err(), "promtool is missing under CI");
        eprintln!("skipped: promtool not installed (apt-get install prometheus)");
        return;
    };
    assert!(out.status.success());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "meshway-rules.yml"],
        vec!["test", "rules", "meshway-rules.test.yml"],
    ] {
        let o = Command::new("promtool").args(&args).current_dir(&dir).output().unwrap();
        assert!(
            o.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn an_alert_that_fired_while_the_receiver_was_down_is_delivered_after_a_restart() {
    let dir = TempDir::new("outbox");
    let db = dir.0.join("a.db");
    // The receiver's port, held (bound, not listening: connections are refused) until it
    // comes up, so no other test's process can take it meanwhile.
    let hook = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    hook.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let hook_port = hook.local_addr().unwrap().as_socket().unwrap().port();
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = dir.0.join("agent.toml");
    let http = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nlisten = \"{http}\"\ndatabase = \"{}\"\nevaluate-every = \"100ms\"\n\
             [alerts]\nwebhook = \"http://127.0.0.1:{hook_port}/hook\"\nfire-after = 1\nresolve-after = 1000\n\
             [[target]]\nname = \"silent\"\nkind = \"udp\"\naddress = \"{}\"\ninterval = \"50ms\"\ntimeout = \"100ms\"\n\
             objectives = {{ window = \"5s\", loss = \"10%\" }}\n",
            db.display(),
            silent.local_addr().unwrap()
        ),
    )
    .unwrap();
    // First run: the alert fires, delivery fails, the body waits in the outbox.
    let mut a = agent(&cfg);
    assert!(wait_until(15, || {
        get(&http, "/metrics", None).is_some_and(|r| {
            r.1.contains("meshway_webhook_outbox_pending 1")
                && r.1.contains("meshway_webhook_requests_total{result=\"error\"} 1")
        })
    }));
    let pid = a.0.id().to_string();
    assert!(Command::new(kill_tool()).args(["-TERM", &pid]).status().unwrap().success());
    assert!(a.0.wait().unwrap().success());
    let n: i64 = rusqlite_count(&db);
    assert_eq!(n, 1, "the undelivered alert is in the outbox");
    // The receiver comes up; the second run delivers what the first could not.
    hook.listen(16).unwrap();
    let listener: TcpListener = hook.into();
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let got = got.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().take(5) {
                let Ok(mut s) = s else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = vec![0u8; 65536];
                let mut req = Vec::new();
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let t = String::from_utf8_lossy(&req).to_string();
                    if let Some(i) = t.find("\r\n\r\n") {
                        let len: usize = t
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if req.len() >= i + 4 + len {
                            got.lock().unwrap().push(t[i + 4..].to_string());
                            break;
                        }
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
    }
    let log = dir.0.join("second.log");
    let _b = agent_logged(&cfg, &log);
    assert!(
        wait_until(15, || !got.lock().unwrap().is_empty()),
        "nothing delivered after the restart; the agent's log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let first: serde_json::Value = serde_json::from_str(&got.lock().unwrap()[0]).unwrap();
    assert_eq!(
        (first["status"].as_str(), first["alerts"][0]["labels"]["target"].as_str()),
        (Some("firing"), Some("silent"))
    );
    assert!(wait_until(10, || get(&http, "/metrics", None)
        .is_some_and(|r| r.1.contains("meshway_webhook_outbox_pending 0"))));
}

fn rusqlite_count(db: &Path) -> i64 {
    let st = Store::open_read_only(db).unwrap();
    i64::try_from(st.outbox_len().unwrap()).unwrap()
}

/// Threads of a process, from /proc.
fn threads(pid: u32) -> usize {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn many_udp_targets_share_one_probe_thread_and_all_get_round_trips() {
    // 300 udp targets against one reflector (so 300 sockets, one per target: replies are told
    // apart by source address) and two at distinct ports, all in one event-driven thread.
    let dir = TempDir::new("many-udp");
    let (rport, rport2, hport) = (free_port(), free_port(), free_port());
    let _r = reflector(rport);
    let _r2 = reflector(rport2);
    let http = format!("127.0.0.1:{hport}");
    let mut text = format!(
        "[agent]\nlisten = \"{http}\"\ndatabase = \"{}\"\nevaluate-every = \"200ms\"\n",
        dir.0.join("a.db").display()
    );
    for i in 0..300 {
        let _ = write!(
            text,
            "[[target]]\nname = \"t{i}\"\nkind = \"udp\"\naddress = \"127.0.0.1:{rport}\"\ninterval = \"200ms\"\ntimeout = \"3s\"\n"
        );
    }
    let _ = write!(
        text,
        "[[target]]\nname = \"other\"\nkind = \"udp\"\naddress = \"127.0.0.1:{rport2}\"\ninterval = \"200ms\"\ntimeout = \"3s\"\n"
    );
    let cfg = dir.0.join("agent.toml");
    std::fs::write(&cfg, &text).unwrap();
    let a = agent(&cfg);
    let answered = |min: f64| {
        let Some((200, body)) = get(&http, "/metrics", None) else { return None };
        let (_, s) = parse_prometheus(&body).ok()?;
        let n = (0..300)
            .filter(|i| value(&s, "meshway_probes_sent_total", &[("target", &format!("t{i}"))]).unwrap_or(0.0) >= min)
            .count();
        Some((n, s))
    };
    assert!(
        wait_until(20, || answered(3.0).is_some_and(|(n, _)| n == 300)),
        "every target answered: {:?}",
        answered(3.0).map(|x| x.0)
    );
    let (_, s) = answered(3.0).unwrap();
    assert!(value(&s, "meshway_probes_sent_total", &[("target", "other")]).unwrap_or(0.0) >= 3.0);
    assert_eq!(
        s.iter().filter(|x| x.name == "meshway_probes_lost_total" && x.value > 0.0).count(),
        0,
        "no loss on loopback"
    );
    // Round trips on loopback, from kernel receive stamps: well under a millisecond at the median.
    // The window ends one timeout (3 s) before each evaluation, so it fills 3 s in.
    let p50s = |s: &[PromSample]| -> Vec<f64> {
        s.iter()
            .filter(|x| {
                x.name == "meshway_window_rtt_seconds" && x.labels.get("percentile").map(String::as_str) == Some("50")
            })
            .map(|x| x.value)
            .collect()
    };
    assert!(wait_until(20, || answered(0.0).is_some_and(|(_, s)| p50s(&s).len() >= 300)), "every window filled");
    let (_, s) = answered(0.0).unwrap();
    let p50 = p50s(&s);
    assert!(p50.len() >= 300, "{}", p50.len());
    assert!(p50.iter().all(|&v| v > 0.0 && v < 0.01), "{:?}", p50.iter().fold(0f64, |a, &b| a.max(b)));
    // One probe thread, not one per target.
    let n = threads(a.0.id());
    assert!(n > 0 && n < 30, "{n} threads for 301 targets");
}

/// `--check` opens nothing for writing but says where the agent could not keep its database:
/// a directory, a kernel pseudo-filesystem, a missing directory, another program's database.
#[test]
fn check_refuses_a_database_the_agent_could_not_open() {
    let d = TempDir::new("check-db");
    let cfg = d.0.join("agent.toml");
    let other = d.0.join("other.db");
    {
        let c = rusqlite::Connection::open(&other).unwrap();
        c.execute_batch("CREATE TABLE invoices(id INTEGER);").unwrap();
    }
    let before = std::fs::read(&other).unwrap();
    let fresh = d.0.join("fresh.db");
    for (db, needle) in [
        (d.0.display().to_string(), "is a directory"),
        ("/proc/meshway-test.db".to_string(), "kernel pseudo-filesystem"),
        (d.0.join("no/such/dir/a.db").display().to_string(), "cannot be used"),
        (other.display().to_string(), "not a meshway agent database"),
        (fresh.display().to_string(), ""),
    ] {
        std::fs::write(&cfg, format!("[agent]\ndatabase = {db:?}\n")).unwrap();
        let o = Command::new(bin()).args(["agent", "--check", "--config"]).arg(&cfg).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        if needle.is_empty() {
            assert!(o.status.success(), "{db}: {e}");
        } else {
            assert_eq!(o.status.code(), Some(2), "{db}: {e}");
            assert!(e.contains("agent.database") && e.contains(needle), "{db}: {e}");
        }
    }
    assert_eq!(std::fs::read(&other).unwrap(), before, "--check wrote to another program's database");
    assert!(!fresh.exists(), "--check created the database");
}

/// An icmp size of 100 GiB passed `--check` and then aborted the agent allocating it: it is
/// refused with the file, the line and the key, as `ping -s` refuses it.
#[test]
fn check_refuses_an_icmp_size_ping_refuses() {
    let d = TempDir::new("check-size");
    let cfg = d.0.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\ndatabase = {:?}\n[[target]]\nname = \"big\"\nkind = \"icmp\"\naddress = \"127.0.0.1\"\nsize = \"100GiB\"\n",
            d.0.join("a.db").display().to_string()
        ),
    )
    .unwrap();
    let o = Command::new(bin()).args(["agent", "--check", "--config"]).arg(&cfg).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains(&format!("{}:7: target \"big\": size: 107374182400 bytes: at most 65000 bytes", cfg.display())),
        "{e}"
    );
    let o = Command::new(bin()).args(["ping", "--kind", "icmp", "127.0.0.1", "-s", "100GiB"]).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("invalid --size 107374182400 bytes: at most 65000 bytes of icmp payload"), "{e}");
}

/// `history` without `--target` lists the targets: `--json` as JSON, and the flags that read
/// one target's series are refused by name (they were ignored: `--html` wrote nothing). A perf
/// target's series defaults to its throughput.
#[test]
fn history_without_a_target_lists_as_json_and_refuses_what_needs_one() {
    use meshway_probe::objective::Sample;
    let d = TempDir::new("history-list");
    let db = d.0.join("a.db");
    let mut st = Store::open(&db).unwrap();
    let id = st.target_id("bulk", "perf", "127.0.0.1:5301").unwrap();
    #[allow(clippy::disallowed_methods)] // a sample within the default --since of 1h
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let at = now - 120_000_000_000;
    st.insert(&[(id, Sample { at_ns: at, rtt_ns: None, value: Some(8e8) })]).unwrap();
    st.rollup(at - 60_000_000_000, now).unwrap();
    drop(st);
    let dbs = db.to_str().unwrap();
    let html = d.0.join("x.html");
    for (flag, extra) in [
        ("--csv", vec![]),
        ("--html", vec![html.to_str().unwrap()]),
        ("--anomalies", vec![]),
        ("--metric", vec!["loss"]),
    ] {
        let mut args = vec!["history", "--db", dbs, flag];
        args.extend(extra);
        let o = Command::new(bin()).args(&args).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag}: {e}");
        assert!(e.contains(&format!("{flag} needs --target")), "{flag}: {e}");
    }
    assert!(!html.exists());
    let o = Command::new(bin()).args(["history", "--db", dbs, "--forecast", "--threshold", "1Gbps"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("--forecast needs --target"));
    let o = Command::new(bin()).args(["history", "--db", dbs, "--json"]).output().unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v, serde_json::json!([{ "target": "bulk", "kind": "perf", "samples": 1 }]));
    let o = Command::new(bin()).args(["history", "--db", dbs, "--target", "bulk", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["metric"], "throughput-min");
    assert_eq!(v["series"][0]["value"], 8e8);
}

/// Two agents on one database would mix their series: the second is refused, named with the
/// file and the first one's PID, and the first keeps running.
#[test]
fn a_second_agent_on_the_same_database_is_refused() {
    let d = TempDir::new("db-lock");
    let db = d.0.join("a.db");
    let (h1, h2) = (free_port(), free_port());
    let cfg = |name: &str, port: u16| {
        let p = d.0.join(name);
        std::fs::write(
            &p,
            format!("[agent]\nlisten = \"127.0.0.1:{port}\"\ndatabase = {:?}\n", db.display().to_string()),
        )
        .unwrap();
        p
    };
    let (c1, c2) = (cfg("one.toml", h1), cfg("two.toml", h2));
    let first = agent(&c1);
    let http = format!("127.0.0.1:{h1}");
    assert!(wait_until(10, || get(&http, "/healthz", None).is_some_and(|r| r.0 == 200)));
    let o = Command::new(bin()).args(["agent", "--config"]).arg(&c2).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    let want = format!(
        "database {} is in use by another agent (pid {}; lock {}.lock)",
        db.display(),
        first.0.id(),
        db.display()
    );
    assert!(e.contains(&want), "{e}");
    assert!(get(&http, "/healthz", None).is_some_and(|r| r.0 == 200), "the first agent still serves");
}
