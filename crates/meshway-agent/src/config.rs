//! `agent.toml`: parsed into `*Config` structs, validated into [`AgentSpec`].
//!
//! ```toml
//! [agent]
//! listen = "127.0.0.1:9330"        # HTTP: /metrics, /probe, /healthz (loopback unless told)
//! database = "meshway-agent.db"
//! bearer-token = "s3cret"          # optional: required on every HTTP request but /healthz
//! allow-insecure = false           # true: listen beyond loopback with /probe on and no token
//! tls-cert = "/etc/meshway/cert.pem"   # optional: serve HTTPS (with tls-key)
//! tls-key = "/etc/meshway/key.pem"
//! evaluate-every = "10s"           # objective evaluation period
//! retention-raw = "48h"            # raw samples
//! retention-1m = "720h"            # 1-minute rollups
//! retention-1h = "8760h"           # 1-hour rollups
//!
//! [alerts]
//! webhook = "http://127.0.0.1:9093/hook"   # Alertmanager-compatible webhook JSON (http or https)
//! ca = "/etc/meshway/ca.pem"       # optional: CAs trusted besides the system's, for https
//! fire-after = 3                   # consecutive violated evaluations before firing
//! resolve-after = 3                # consecutive met evaluations before resolving
//!
//! [[target]]
//! name = "chatbot-edge"
//! kind = "udp"                     # udp | tcp | icmp | http | perf | interface
//! address = "127.0.0.1:862"
//! interval = "1s"
//! timeout = "1s"
//! [target.objectives]
//! window = "5min"
//! rtt-p99 = "50ms"
//! loss = "0.1%"
//!
//! [[target]]
//! name = "uplinks"
//! kind = "interface"               # kernel counters of the interfaces matching `address`
//! address = "eth*, swp*"           # names or globs (`*`, `?`), comma-separated
//! speed = "100Gbps"                # optional: when the driver reports none
//! [target.objectives]
//! window = "5min"
//! utilization = "80%"
//! error-ratio = "1e-6"
//! drop-ratio = "0.01%"
//!
//! [[target]]
//! name = "dci-optics"
//! kind = "optics"                  # module EEPROM: temperature, power, thresholds, VDM
//! address = "eth4, file:/sys/bus/i2c/devices/5-0050/eeprom"   # interfaces (globs) or files
//! interval = "10s"
//! objectives = { optics = "alarm" }   # alert on the module's alarms ("warning": also warnings)
//! ```

use crate::ping::PingKind;
use meshway_probe::objective::{Metric, Objective};
use meshway_units::{BitsPerSec, Bytes, Nanos};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use thiserror::Error;
use toml::Spanned;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: target {target:?}: {message}")]
    Target { file: String, target: String, message: String },
    #[error("{file}: {key}: {message}")]
    Key { file: String, key: &'static str, message: String },
    #[error("{file}:{line}: target {target:?}: {key}: {message}")]
    TargetKey { file: String, line: usize, target: String, key: &'static str, message: String },
}

/// A target key, where it was written (if it was), and the kinds it is for.
type KeyUse<'a> = (&'static str, Option<std::ops::Range<usize>>, &'a [&'a str]);

/// The 1-based line of byte `at` of `text`.
fn line_at(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AgentFileConfig {
    #[serde(default)]
    pub agent: AgentSection,
    #[serde(default)]
    pub alerts: AlertsSection,
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AgentSection {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_db")]
    pub database: PathBuf,
    pub bearer_token: Option<String>,
    #[serde(default = "default_eval")]
    pub evaluate_every: Nanos,
    #[serde(default = "default_raw")]
    pub retention_raw: Nanos,
    #[serde(default = "default_1m", rename = "retention-1m")]
    pub retention_1m: Nanos,
    #[serde(default = "default_1h", rename = "retention-1h")]
    pub retention_1h: Nanos,
    /// Serve the blackbox-style `/probe` endpoint.
    #[serde(default = "yes")]
    pub probe_endpoint: bool,
    /// Accept listening beyond loopback with `/probe` on and no bearer token (anyone who
    /// reaches the port can then make the agent send probes).
    #[serde(default)]
    pub allow_insecure: bool,
    /// Serve HTTPS: a PEM certificate chain and its private key (both or neither).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            listen: default_listen(),
            database: default_db(),
            bearer_token: None,
            tls_cert: None,
            tls_key: None,
            evaluate_every: default_eval(),
            retention_raw: default_raw(),
            retention_1m: default_1m(),
            retention_1h: default_1h(),
            probe_endpoint: true,
            allow_insecure: false,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_listen() -> String {
    "127.0.0.1:9330".into()
}
fn default_db() -> PathBuf {
    "meshway-agent.db".into()
}
fn default_eval() -> Nanos {
    Nanos(10_000_000_000)
}
fn default_raw() -> Nanos {
    Nanos(48 * 3_600_000_000_000)
}
fn default_1m() -> Nanos {
    Nanos(30 * 24 * 3_600_000_000_000)
}
fn default_1h() -> Nanos {
    Nanos(400 * 24 * 3_600_000_000_000)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AlertsSection {
    pub webhook: Option<String>,
    /// https webhooks: a PEM bundle of CAs trusted besides the system's.
    pub ca: Option<PathBuf>,
    pub fire_after: Option<u32>,
    pub resolve_after: Option<u32>,
    /// Sent as the webhook's `externalURL`.
    pub external_url: Option<String>,
}

/// A target's keys keep where they were written ([`Spanned`]), so a message names the line.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    pub kind: String,
    pub address: String,
    /// 1 s when not given.
    pub interval: Option<Spanned<Nanos>>,
    /// udp, tcp, icmp, http: 1 s when not given.
    pub timeout: Option<Spanned<Nanos>>,
    /// udp and icmp probes.
    pub size: Option<Spanned<Bytes>>,
    /// udp, tcp, icmp, http: 0 when not given.
    pub dscp: Option<Spanned<u8>>,
    /// perf targets: test length.
    pub duration: Option<Spanned<Nanos>>,
    /// perf targets: parallel streams.
    pub streams: Option<Spanned<u16>>,
    /// interface targets: the link speed when the driver reports none (or to override it).
    pub speed: Option<Spanned<BitsPerSec>>,
    /// https targets: a PEM bundle of CAs trusted besides the system's.
    pub ca: Option<Spanned<PathBuf>>,
    /// udp targets: STAMP authenticated mode with the key in this file (hex or raw bytes).
    pub key_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub objectives: Option<ObjectivesConfig>,
}

fn one_second() -> Nanos {
    Nanos(1_000_000_000)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ObjectivesConfig {
    #[serde(default = "five_minutes")]
    pub window: Nanos,
    pub rtt_p50: Option<Nanos>,
    pub rtt_p90: Option<Nanos>,
    pub rtt_p99: Option<Nanos>,
    pub rtt_mean: Option<Nanos>,
    pub jitter: Option<Nanos>,
    /// "0.1%" or a ratio such as 0.001.
    pub loss: Option<toml::Value>,
    pub throughput_min: Option<BitsPerSec>,
    /// interface targets: ratios like loss.
    pub utilization: Option<toml::Value>,
    pub error_ratio: Option<toml::Value>,
    pub drop_ratio: Option<toml::Value>,
    /// optics targets: "warning" or "alarm".
    pub optics: Option<String>,
    /// Alert when the stored series turns anomalous (a level change or an outlier for the
    /// worse, against its daily profile).
    #[serde(default)]
    pub anomaly: bool,
}

fn five_minutes() -> Nanos {
    Nanos(300_000_000_000)
}

/// What a target measures with.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Echo {
        kind: PingKind,
        size: usize,
        dscp: u8,
        /// https: extra trusted CAs.
        ca: Option<PathBuf>,
        /// udp: STAMP authenticated mode.
        key: Option<Box<meshway_probe::stamp_auth::Key>>,
    },
    Perf {
        duration: Nanos,
        streams: u16,
    },
    /// Interface counters of the names matching `address`; `speed_bps` overrides the driver's.
    Interface {
        speed_bps: Option<f64>,
    },
    /// Optical module EEPROM of the interfaces matching `address` and its `file:` entries.
    Optics,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    pub name: String,
    pub kind_name: &'static str,
    pub address: String,
    pub interval: Nanos,
    pub timeout: Nanos,
    pub probe: Probe,
    pub objectives: Vec<Objective>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    pub listen: SocketAddr,
    pub database: PathBuf,
    pub bearer_token: Option<String>,
    pub evaluate_every: Nanos,
    pub retention_raw: Nanos,
    pub retention_1m: Nanos,
    pub retention_1h: Nanos,
    pub probe_endpoint: bool,
    /// HTTPS for the agent's own server: (certificate chain, private key).
    pub tls: Option<(PathBuf, PathBuf)>,
    pub webhook: Option<String>,
    pub webhook_ca: Option<PathBuf>,
    pub fire_after: u32,
    pub resolve_after: u32,
    pub external_url: String,
    pub targets: Vec<TargetSpec>,
}

/// Parses "0.1%" or a bare ratio.
pub fn parse_ratio(v: &toml::Value) -> Result<f64, String> {
    let r = match v {
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i) => *i as f64,
        toml::Value::String(s) => match s.trim().strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().map_err(|_| format!("invalid percentage {s:?}"))? / 100.0,
            None => s.trim().parse::<f64>().map_err(|_| format!("invalid ratio {s:?}: use \"0.1%\" or 0.001"))?,
        },
        other => return Err(format!("invalid ratio {other}: use \"0.1%\" or 0.001")),
    };
    if !(0.0..=1.0).contains(&r) {
        return Err(format!("ratio {r} out of range 0..=1"));
    }
    Ok(r)
}

/// Longest probe timeout: an answer later than this is taken as lost. An assumption, six
/// times blackbox_exporter's default module timeout (10 s); unanswered probes are held this
/// long, and rollups wait this long before they are final.
pub const MAX_TIMEOUT: Nanos = Nanos(60_000_000_000);
/// Shortest probe timeout, as `/probe` takes it: below a millisecond a loopback answer already
/// comes late, and every probe would count as lost.
pub const MIN_TIMEOUT: Nanos = Nanos(1_000_000);
/// Longest target interval (an assumption: a daily test is the slowest a monitor runs).
pub const MAX_INTERVAL: Nanos = Nanos(86_400_000_000_000);
/// Longest `evaluate-every` (an assumption: an alert an hour late is no alert).
pub const MAX_EVALUATE_EVERY: Nanos = Nanos(3_600_000_000_000);
/// Longest objective window (an assumption: a week; longer trends are `history`'s).
pub const MAX_WINDOW: Nanos = Nanos(7 * 86_400_000_000_000);
/// Samples an objective window may hold at the target's interval: each takes 24 bytes, so a
/// target's window stays within 24 MB (an assumption).
pub const MAX_WINDOW_SAMPLES: u64 = 1_000_000;

/// Checks a probe address without resolving it: `host`, `host:port`, `[v6]:port` or an IP
/// address; a port, when given (`ports`), is 1-65535.
pub(crate) fn check_host(address: &str, ports: bool) -> Result<(), String> {
    // Not trimmed: the address is probed as given, and " 127.0.0.1:862 " never resolves
    // (it passed here and read 100% loss).
    let a = address;
    if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("{address:?}: expected a host, host:port or [v6]:port"));
    }
    // A DNS name is at most 253 characters (RFC 1035 2.3.4), with a port 6 more.
    if a.len() > 253 + 8 {
        return Err(format!("a host of {} characters: a name is at most 253", a.len()));
    }
    if a.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = match a.strip_prefix('[') {
        Some(rest) => match rest.split_once("]:") {
            Some((h, p)) => (h, Some(p)),
            None => (rest.strip_suffix(']').unwrap_or(""), None),
        },
        None => match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        },
    };
    if host.is_empty() {
        return Err(format!("{address:?}: no host"));
    }
    match port {
        Some(_) if !ports => Err(format!("{address:?}: icmp takes a host without a port")),
        Some(p) if p.parse::<u16>().map_or(true, |v| v == 0) => {
            Err(format!("{address:?}: port {p:?} out of range 1-65535"))
        }
        _ => Ok(()),
    }
}

/// Parses and validates an agent configuration; `file` names it in messages.
pub fn parse(text: &str, file: &str) -> Result<AgentSpec, ConfigError> {
    let c: AgentFileConfig = meshway_units::units_required(|| toml::from_str(text))
        .map_err(|e| ConfigError::Parse { file: file.into(), message: e.to_string().trim().to_string() })?;
    let key = |key: &'static str, message: String| ConfigError::Key { file: file.into(), key, message };
    let listen: SocketAddr =
        c.agent.listen.parse().map_err(|_| key("agent.listen", format!("invalid address {:?}", c.agent.listen)))?;
    if c.agent.evaluate_every == Nanos::ZERO || c.agent.evaluate_every > MAX_EVALUATE_EVERY {
        return Err(key(
            "agent.evaluate-every",
            format!("{} out of range: expected more than 0 and at most {MAX_EVALUATE_EVERY}", c.agent.evaluate_every),
        ));
    }
    // An Authorization header carries visible ASCII only (RFC 6750's token68): any other
    // token could never be sent, and would lock every client out.
    if c.agent.bearer_token.as_deref().is_some_and(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic())) {
        return Err(key(
            "agent.bearer-token",
            "must be non-empty visible ASCII (letters, digits, punctuation; no spaces or other characters)".into(),
        ));
    }
    let db = c.agent.database.to_string_lossy();
    if db.trim().is_empty() || db == ":memory:" || db.starts_with("file:") {
        return Err(key(
            "agent.database",
            format!(
                "{db:?}: expected a file path such as \"meshway-agent.db\" (an empty path or :memory: keeps nothing on disk; file: URIs are not taken)"
            ),
        ));
    }
    if !listen.ip().to_canonical().is_loopback()
        && c.agent.probe_endpoint
        && c.agent.bearer_token.is_none()
        && !c.agent.allow_insecure
    {
        return Err(key(
            "agent.listen",
            format!(
                "{listen} is reachable beyond this host and /probe would let anyone who reaches it make the agent send \
                 probes: set bearer-token, probe-endpoint = false, or allow-insecure = true"
            ),
        ));
    }
    if let Some(w) = &c.alerts.webhook {
        crate::ping::parse_http_url(w).map_err(|e| key("alerts.webhook", e.to_string()))?;
    }
    let tls = match (&c.agent.tls_cert, &c.agent.tls_key) {
        (None, None) => None,
        (Some(cert), Some(k)) => {
            crate::http::server_tls(cert, k).map_err(|e| key("agent.tls-cert", e))?;
            Some((cert.clone(), k.clone()))
        }
        _ => return Err(key("agent.tls-cert", "tls-cert and tls-key go together".into())),
    };
    if let Some(ca) = &c.alerts.ca {
        crate::tls::client_config(Some(ca)).map_err(|e| key("alerts.ca", e))?;
    }
    if c.targets.len() > 10_000 {
        return Err(key("target", format!("{} targets, at most 10000", c.targets.len())));
    }
    let mut targets = Vec::new();
    let mut names = std::collections::HashSet::new();
    for t in c.targets {
        let terr = |message: String| ConfigError::Target { file: file.into(), target: t.name.clone(), message };
        // A key's message names its line.
        let kerr = |span: std::ops::Range<usize>, key: &'static str, message: String| ConfigError::TargetKey {
            file: file.into(),
            line: line_at(text, span.start),
            target: t.name.clone(),
            key,
            message,
        };
        if t.name.is_empty()
            || t.name.len() > 64
            || !t.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.:".contains(ch))
        {
            return Err(terr("name must be 1-64 characters of letters, digits, '-', '_', '.', ':'".into()));
        }
        if !names.insert(t.name.clone()) {
            return Err(terr("duplicate target name".into()));
        }
        // A key the kind does not use is refused rather than ignored: it was meant to do
        // something.
        let echo = ["udp", "tcp", "icmp", "http"];
        let applies: [KeyUse; 8] = [
            ("timeout", t.timeout.as_ref().map(Spanned::span), &echo),
            ("dscp", t.dscp.as_ref().map(Spanned::span), &echo),
            ("size", t.size.as_ref().map(Spanned::span), &["udp", "icmp"]),
            ("duration", t.duration.as_ref().map(Spanned::span), &["perf"]),
            ("streams", t.streams.as_ref().map(Spanned::span), &["perf"]),
            ("speed", t.speed.as_ref().map(Spanned::span), &["interface"]),
            ("ca", t.ca.as_ref().map(Spanned::span), &["http"]),
            ("key-file", t.key_file.as_ref().map(Spanned::span), &["udp"]),
        ];
        let known = echo.contains(&t.kind.as_str()) || ["perf", "interface", "optics"].contains(&t.kind.as_str());
        for (k, span, kinds) in applies {
            if let Some(span) = span.filter(|_| known && !kinds.contains(&t.kind.as_str())) {
                let what = match k {
                    "size" if t.kind == "tcp" || t.kind == "http" => {
                        " (a tcp or http probe is a connection, its size the handshake's)"
                    }
                    "ca" => " (the CAs an https URL's certificate is checked against)",
                    "key-file" => " (STAMP authenticated mode)",
                    _ => "",
                };
                let to = kinds.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ");
                return Err(kerr(span, k, format!("does not apply to kind = {:?}: it is for {to}{what}", t.kind)));
            }
        }
        let interval = t.interval.as_ref().map_or(one_second(), |v| *v.get_ref());
        let timeout = t.timeout.as_ref().map_or(one_second(), |v| *v.get_ref());
        let dscp = t.dscp.as_ref().map_or(0, |v| *v.get_ref());
        if interval < Nanos(10_000_000) || interval > MAX_INTERVAL {
            let span = t.interval.as_ref().map_or(0..0, Spanned::span);
            return Err(kerr(
                span,
                "interval",
                format!("{interval} out of range: expected from the 10ms minimum to {MAX_INTERVAL}"),
            ));
        }
        if let Some(v) = &t.timeout {
            if timeout < MIN_TIMEOUT || timeout > MAX_TIMEOUT {
                return Err(kerr(
                    v.span(),
                    "timeout",
                    format!("{timeout} out of range: expected from {MIN_TIMEOUT} to {MAX_TIMEOUT}"),
                ));
            }
        }
        if let Some(v) = t.dscp.as_ref().filter(|_| dscp > 63) {
            return Err(kerr(v.span(), "dscp", format!("{dscp} out of range 0..=63")));
        }
        let (probe, kind_name) = match t.kind.as_str() {
            "udp" | "tcp" | "icmp" | "http" => {
                let (kind, name) = match t.kind.as_str() {
                    "udp" => (PingKind::Udp, "udp"),
                    "tcp" => (PingKind::Tcp, "tcp"),
                    "icmp" => (PingKind::Icmp, "icmp"),
                    _ => (PingKind::Http, "http"),
                };
                if let Some(v) = &t.size {
                    crate::ping::check_size(kind, Some(v.get_ref().get())).map_err(|e| kerr(v.span(), "size", e))?;
                }
                let size = t.size.as_ref().map_or(44, |b| b.get_ref().get() as usize);
                if kind == PingKind::Http {
                    crate::ping::parse_http_url(&t.address).map_err(|e| terr(e.to_string()))?;
                } else {
                    check_host(&t.address, kind != PingKind::Icmp).map_err(|e| terr(format!("address: {e}")))?;
                }
                if let Some(ca) = &t.ca {
                    crate::tls::client_config(Some(ca.get_ref())).map_err(|e| kerr(ca.span(), "ca", e))?;
                }
                let key = match &t.key_file {
                    None => None,
                    Some(sp) => {
                        let p = sp.get_ref();
                        let bad = |e: String| kerr(sp.span(), "key-file", format!("{}: {e}", p.display()));
                        let bytes =
                            crate::read_regular(p, crate::MAX_SMALL_FILE, true).map_err(|e| bad(e.to_string()))?;
                        Some(Box::new(meshway_probe::stamp_auth::parse_key(&bytes).map_err(|e| bad(e.to_string()))?))
                    }
                };
                (Probe::Echo { kind, size, dscp, ca: t.ca.as_ref().map(|c| c.get_ref().clone()), key }, name)
            }
            "perf" => {
                let duration = t.duration.as_ref().map_or(Nanos(2_000_000_000), |v| *v.get_ref());
                let dspan = || t.duration.as_ref().map_or(0..0, Spanned::span);
                if duration >= interval {
                    return Err(kerr(
                        dspan(),
                        "duration",
                        format!("duration {duration} must be shorter than the interval {interval}"),
                    ));
                }
                // What a perf server accepts (crate::perf::validate): else every run would be
                // refused, and counted as lost probes.
                if duration.get() == 0 || duration > crate::perf::MAX_DURATION {
                    return Err(kerr(
                        dspan(),
                        "duration",
                        format!("duration must be positive and at most 1h, got {duration}"),
                    ));
                }
                let streams = t.streams.as_ref().map_or(1, |v| *v.get_ref());
                if let Some(v) = t.streams.as_ref().filter(|_| !(1..=crate::perf::MAX_STREAMS).contains(&streams)) {
                    return Err(kerr(
                        v.span(),
                        "streams",
                        format!("streams must be 1 to {}, got {streams}", crate::perf::MAX_STREAMS),
                    ));
                }
                (Probe::Perf { duration, streams }, "perf")
            }
            "interface" => {
                if t.address.split([',', ' ']).all(|p| p.is_empty()) {
                    return Err(terr("address: expected interface names or globs such as \"eth*\"".into()));
                }
                if let Some(v) = t.speed.as_ref().filter(|s| s.get_ref().get() == 0) {
                    return Err(kerr(v.span(), "speed", "speed must be positive".into()));
                }
                (Probe::Interface { speed_bps: t.speed.as_ref().map(|s| s.get_ref().get() as f64) }, "interface")
            }
            "optics" => {
                if t.address.split([',', ' ']).all(|p| p.is_empty() || p == "file:") {
                    return Err(terr(
                        "address: expected interface names or globs, or file:PATH entries, comma-separated".into(),
                    ));
                }
                (Probe::Optics, "optics")
            }
            other => {
                return Err(terr(format!(
                    "unknown kind {other:?}: expected udp, tcp, icmp, http, perf, interface or optics"
                )))
            }
        };
        let mut objectives = Vec::new();
        if let Some(o) = &t.objectives {
            let w = o.window.get();
            if w == 0 {
                return Err(terr("objectives.window must be positive".into()));
            }
            if w < interval.get() {
                return Err(terr(format!(
                    "objectives.window {} is shorter than the interval {interval}: it would hold at most one probe",
                    o.window
                )));
            }
            // Evaluated less often than its window spans, an objective never judges the
            // samples between one window's end and the next evaluation's start.
            if o.window < c.agent.evaluate_every {
                return Err(terr(format!(
                    "objectives.window {} is shorter than agent.evaluate-every {}: the samples between evaluations \
                     would never be judged (make the window at least as long)",
                    o.window, c.agent.evaluate_every
                )));
            }
            if o.window > MAX_WINDOW || w / interval.get() > MAX_WINDOW_SAMPLES {
                return Err(terr(format!(
                    "objectives.window {} too long: at most {MAX_WINDOW}, and at most {MAX_WINDOW_SAMPLES} samples at \
                     the interval {interval} ({} here; each is 24 bytes held)",
                    o.window,
                    Nanos(interval.get().saturating_mul(MAX_WINDOW_SAMPLES)).min(MAX_WINDOW)
                )));
            }
            // A limit no value can meet (a 0s RTT) or none can break (a 0bps floor) says nothing.
            for (name, zero) in [
                ("rtt-p50", o.rtt_p50.is_some_and(|v| v == Nanos::ZERO)),
                ("rtt-p90", o.rtt_p90.is_some_and(|v| v == Nanos::ZERO)),
                ("rtt-p99", o.rtt_p99.is_some_and(|v| v == Nanos::ZERO)),
                ("rtt-mean", o.rtt_mean.is_some_and(|v| v == Nanos::ZERO)),
                ("jitter", o.jitter.is_some_and(|v| v == Nanos::ZERO)),
                ("throughput-min", o.throughput_min.is_some_and(|v| v.get() == 0)),
            ] {
                if zero {
                    let why =
                        if name == "throughput-min" { "no run can fall below it" } else { "no probe can meet it" };
                    return Err(terr(format!("objectives.{name} must be positive: {why}")));
                }
            }
            let ns = |v: Option<Nanos>| v.map(|n| n.get() as f64);
            let ratio = |key: &str, v: &Option<toml::Value>| {
                v.as_ref().map(parse_ratio).transpose().map_err(|m| terr(format!("objectives.{key}: {m}")))
            };
            for (metric, value) in [
                (Metric::RttP50, ns(o.rtt_p50)),
                (Metric::RttP90, ns(o.rtt_p90)),
                (Metric::RttP99, ns(o.rtt_p99)),
                (Metric::RttMean, ns(o.rtt_mean)),
                (Metric::JitterRfc3550, ns(o.jitter)),
                (Metric::Loss, ratio("loss", &o.loss)?),
                (Metric::ThroughputMin, o.throughput_min.map(|b| b.get() as f64)),
                (Metric::Utilization, ratio("utilization", &o.utilization)?),
                (Metric::ErrorRatio, ratio("error-ratio", &o.error_ratio)?),
                (Metric::DropRatio, ratio("drop-ratio", &o.drop_ratio)?),
                (
                    Metric::OpticsLevel,
                    match o.optics.as_deref() {
                        None => None,
                        Some("warning") => Some(0.5),
                        Some("alarm") => Some(1.5),
                        Some(other) => {
                            return Err(terr(format!(
                                "objectives.optics: expected \"warning\" or \"alarm\", got {other:?}"
                            )))
                        }
                    },
                ),
                (Metric::Anomaly, o.anomaly.then_some(0.5)),
            ] {
                if let Some(threshold) = value {
                    if metric == Metric::Anomaly {
                        if kind_name == "optics" {
                            return Err(terr(
                                "objectives.anomaly: optics targets alert on the module's thresholds".into(),
                            ));
                        }
                        objectives.push(Objective { metric, threshold, window_ns: w });
                        continue;
                    }
                    if metric == Metric::ThroughputMin && kind_name != "perf" {
                        return Err(terr("objectives.throughput-min needs kind = \"perf\"".into()));
                    }
                    // A perf run has a rate, not a round trip: the objective would never be
                    // judged, while its threshold was exported as if armed.
                    let round_trip = matches!(
                        metric,
                        Metric::RttP50 | Metric::RttP90 | Metric::RttP99 | Metric::RttMean | Metric::JitterRfc3550
                    );
                    if round_trip && kind_name == "perf" {
                        return Err(terr(format!(
                            "objectives.{}: perf targets take throughput-min and loss (a run has no round trip)",
                            metric.name()
                        )));
                    }
                    if (metric == Metric::OpticsLevel) != (kind_name == "optics") {
                        return Err(terr(if kind_name == "optics" {
                            format!(
                                "objectives.{}: optics targets take optics = \"warning\" or \"alarm\"",
                                metric.name()
                            )
                        } else {
                            "objectives.optics needs kind = \"optics\"".into()
                        }));
                    }
                    if metric.is_interface() != (kind_name == "interface") {
                        return Err(terr(if kind_name == "interface" {
                            format!(
                                "objectives.{}: interface targets take utilization, error-ratio and drop-ratio",
                                metric.name()
                            )
                        } else {
                            format!("objectives.{} needs kind = \"interface\"", metric.name())
                        }));
                    }
                    objectives.push(Objective { metric, threshold, window_ns: w });
                }
            }
        }
        targets.push(TargetSpec {
            name: t.name.clone(),
            kind_name,
            address: t.address.clone(),
            interval,
            timeout,
            probe,
            objectives,
        });
    }
    let a = &c.agent;
    if a.retention_raw.get() == 0 || a.retention_raw > a.retention_1m || a.retention_1m > a.retention_1h {
        return Err(key(
            "agent.retention-raw",
            format!(
                "expected 0 < retention-raw <= retention-1m <= retention-1h, got {}, {} and {}",
                a.retention_raw, a.retention_1m, a.retention_1h
            ),
        ));
    }
    for (k, v) in [("alerts.fire-after", c.alerts.fire_after), ("alerts.resolve-after", c.alerts.resolve_after)] {
        if v == Some(0) {
            return Err(key(k, "expected at least 1 evaluation".into()));
        }
    }
    Ok(AgentSpec {
        listen,
        database: c.agent.database,
        bearer_token: c.agent.bearer_token,
        evaluate_every: c.agent.evaluate_every,
        retention_raw: c.agent.retention_raw,
        retention_1m: c.agent.retention_1m,
        retention_1h: c.agent.retention_1h,
        probe_endpoint: c.agent.probe_endpoint,
        tls,
        webhook: c.alerts.webhook,
        webhook_ca: c.alerts.ca,
        fire_after: c.alerts.fire_after.unwrap_or(3).max(1),
        resolve_after: c.alerts.resolve_after.unwrap_or(3).max(1),
        external_url: c.alerts.external_url.unwrap_or_else(|| format!("http://{listen}")),
        targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_example_parses() {
        let s = parse(
            r#"
[agent]
listen = "127.0.0.1:0"
database = "x.db"
evaluate-every = "1s"
[alerts]
webhook = "http://127.0.0.1:9093/hook"
fire-after = 2
[[target]]
name = "edge"
kind = "udp"
address = "127.0.0.1:862"
interval = "500ms"
[target.objectives]
window = "5min"
rtt-p99 = "50ms"
loss = "0.1%"
[[target]]
name = "bulk"
kind = "perf"
address = "127.0.0.1:5301"
interval = "5min"
duration = "2s"
objectives = { throughput-min = "100Mbps" }
"#,
            "agent.toml",
        )
        .unwrap();
        assert_eq!(s.targets.len(), 2);
        assert_eq!(s.targets[0].objectives.len(), 2);
        assert_eq!(
            s.targets[0].objectives[1],
            Objective { metric: Metric::Loss, threshold: 0.001, window_ns: 300_000_000_000 }
        );
        assert_eq!(s.targets[1].objectives[0].threshold, 100e6);
        assert_eq!((s.fire_after, s.resolve_after), (2, 3));
        assert!(s.listen.ip().is_loopback());
    }

    #[test]
    fn interface_targets_take_globs_a_speed_and_ratio_objectives() {
        let s = parse(
            "[[target]]\nname = \"up\"\nkind = \"interface\"\naddress = \"eth*, swp?\"\nspeed = \"400Gbps\"\n\
             objectives = { window = \"1min\", utilization = \"80%\", error-ratio = 1e-6, drop-ratio = \"0.01%\" }",
            "agent.toml",
        )
        .unwrap();
        let t = &s.targets[0];
        assert_eq!((t.kind_name, &t.probe), ("interface", &Probe::Interface { speed_bps: Some(400e9) }));
        let got: Vec<(Metric, f64)> = t.objectives.iter().map(|o| (o.metric, o.threshold)).collect();
        assert_eq!(got, vec![(Metric::Utilization, 0.8), (Metric::ErrorRatio, 1e-6), (Metric::DropRatio, 1e-4)]);
    }

    #[test]
    fn listening_beyond_loopback_with_probe_needs_a_token_or_a_say_so() {
        for ok in [
            "[agent]\nlisten = \"0.0.0.0:9330\"\nbearer-token = \"t\"",
            "[agent]\nlisten = \"0.0.0.0:9330\"\nprobe-endpoint = false",
            "[agent]\nlisten = \"0.0.0.0:9330\"\nallow-insecure = true",
            "[agent]\nlisten = \"[::1]:9330\"",
        ] {
            parse(ok, "agent.toml").unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    /// Every kind with a size has its bound in the file (an icmp size of 100 GiB passed the
    /// check and then allocated 107 GB a probe), named with its line; a key the kind does not
    /// use is refused, named, not ignored.
    #[test]
    fn sizes_and_values_are_bounded_and_keys_that_do_not_apply_are_refused_at_their_line() {
        let head = "[agent]\nlisten = \"127.0.0.1:0\"\n\n[[target]]\nname = \"t\"\n";
        for (body, needle) in [
            (
                "kind = \"icmp\"\naddress = \"127.0.0.1\"\nsize = \"100GiB\"",
                "agent.toml:8: target \"t\": size: 107374182400 bytes: at most 65000 bytes of icmp payload",
            ),
            ("kind = \"icmp\"\naddress = \"127.0.0.1\"\nsize = \"65001B\"", "agent.toml:8: target \"t\": size: 65001 bytes"),
            (
                "kind = \"udp\"\naddress = \"127.0.0.1:862\"\nsize = \"43B\"",
                "agent.toml:8: target \"t\": size: 43 bytes: a STAMP probe is 44 to 65507 bytes",
            ),
            ("kind = \"tcp\"\naddress = \"127.0.0.1:80\"\nsize = \"1KiB\"", "agent.toml:8: target \"t\": size: does not apply to kind = \"tcp\": it is for \"udp\", \"icmp\" (a tcp or http probe is a connection"),
            ("kind = \"tcp\"\naddress = \"127.0.0.1:80\"\nduration = \"1s\"", "agent.toml:8: target \"t\": duration: does not apply to kind = \"tcp\": it is for \"perf\""),
            ("kind = \"tcp\"\naddress = \"127.0.0.1:80\"\n\nstreams = 2", "agent.toml:9: target \"t\": streams: does not apply to kind = \"tcp\""),
            ("kind = \"tcp\"\naddress = \"127.0.0.1:80\"\nspeed = \"1Gbps\"", "agent.toml:8: target \"t\": speed: does not apply to kind = \"tcp\": it is for \"interface\""),
            ("kind = \"interface\"\naddress = \"lo\"\ndscp = 46", "agent.toml:8: target \"t\": dscp: does not apply to kind = \"interface\""),
            ("kind = \"interface\"\naddress = \"lo\"\ntimeout = \"2s\"", "agent.toml:8: target \"t\": timeout: does not apply to kind = \"interface\""),
            ("kind = \"perf\"\naddress = \"127.0.0.1\"\ninterval = \"10s\"\nca = \"/nonexistent/ca.pem\"", "agent.toml:9: target \"t\": ca: does not apply to kind = \"perf\": it is for \"http\""),
            ("kind = \"http\"\naddress = \"https://127.0.0.1/\"\nca = \"/nonexistent/ca.pem\"", "agent.toml:8: target \"t\": ca: cannot read CA file /nonexistent/ca.pem"),
            ("kind = \"udp\"\naddress = \"127.0.0.1:862\"\ndscp = 64", "agent.toml:8: target \"t\": dscp: 64 out of range 0..=63"),
            // Values that pass a type check but make no sense.
            ("kind = \"udp\"\naddress = \"127.0.0.1:862\"\ntimeout = \"1ns\"", "agent.toml:8: target \"t\": timeout: 1ns out of range: expected from 1ms to 60s"),
            ("kind = \"tcp\"\naddress = \"127.0.0.1:80\"\ntimeout = \"999us\"", "timeout: 999us out of range: expected from 1ms"),
            ("kind = \"udp\"\naddress = \"127.0.0.1:862\"\ninterval = \"1000000h\"", "agent.toml:8: target \"t\": interval: 3600000000s out of range: expected from the 10ms minimum to 86400s"),
            ("kind = \"perf\"\naddress = \"127.0.0.1\"\ninterval = \"1s\"\nduration = \"5s\"", "agent.toml:9: target \"t\": duration: duration 5s must be shorter than the interval 1s"),
            ("kind = \"perf\"\naddress = \"127.0.0.1\"\ninterval = \"10s\"\nobjectives = { throughput-min = \"0bps\" }", "objectives.throughput-min must be positive: no run can fall below it"),
            ("kind = \"udp\"\naddress = \"127.0.0.1:862\"\nobjectives = { rtt-p99 = \"0s\" }", "objectives.rtt-p99 must be positive: no probe can meet it"),
            ("kind = \"udp\"\naddress = \"127.0.0.1:862\"\nobjectives = { jitter = \"0s\" }", "objectives.jitter must be positive"),
            // A perf run has no round trip: such an objective was exported and never judged.
            ("kind = \"perf\"\naddress = \"127.0.0.1\"\ninterval = \"10s\"\nobjectives = { rtt-p99 = \"50ms\" }", "objectives.rtt-p99: perf targets take throughput-min and loss (a run has no round trip)"),
            ("kind = \"perf\"\naddress = \"127.0.0.1\"\ninterval = \"10s\"\nobjectives = { jitter = \"1ms\" }", "objectives.jitter: perf targets take throughput-min and loss"),
            // An address is probed as given: whitespace around it never resolved.
            ("kind = \"udp\"\naddress = \" 127.0.0.1:862 \"", "\" 127.0.0.1:862 \": expected a host, host:port or [v6]:port"),
            ("kind = \"udp\"\naddress = \"127.0.0.1:862\"\nobjectives = { window = \"1000000h\", loss = \"1%\" }", "objectives.window 3600000000s too long: at most 604800s, and at most 1000000 samples at the interval 1s (604800s here"),
            ("kind = \"udp\"\naddress = \"127.0.0.1:862\"\ninterval = \"10ms\"\nobjectives = { window = \"24h\", loss = \"1%\" }", "at most 1000000 samples at the interval 10ms (10000s here; each is 24 bytes held)"),
        ] {
            let e = parse(&format!("{head}{body}\n"), "agent.toml").unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} not in {e}");
        }
        for (agent, needle) in [
            (
                "evaluate-every = \"1000h\"",
                "agent.evaluate-every: 3600000s out of range: expected more than 0 and at most 3600s",
            ),
            ("evaluate-every = \"0s\"", "agent.evaluate-every: 0ns out of range"),
        ] {
            let e = parse(&format!("[agent]\n{agent}\n"), "agent.toml").unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} not in {e}");
        }
        // Within bounds, each where it applies.
        for body in [
            "kind = \"icmp\"\naddress = \"127.0.0.1\"\nsize = \"65000B\"\ndscp = 46\ntimeout = \"2s\"",
            "kind = \"udp\"\naddress = \"127.0.0.1:862\"\nsize = \"65507B\"",
            "kind = \"perf\"\naddress = \"127.0.0.1\"\ninterval = \"10s\"\nduration = \"1s\"\nstreams = 2",
            "kind = \"interface\"\naddress = \"lo\"\nspeed = \"1Gbps\"\ninterval = \"5s\"",
        ] {
            parse(&format!("{head}{body}\n"), "agent.toml").unwrap_or_else(|e| panic!("{body}: {e}"));
        }
    }

    #[test]
    fn errors_name_the_target_and_key() {
        // An IPv4-mapped loopback listen address is loopback.
        assert!(parse("[agent]\nlisten = \"[::ffff:127.0.0.1]:9330\"", "agent.toml").is_ok());
        for (text, needle) in [
            ("[agent]\nlisten = \"nowhere\"", "agent.listen: invalid address"),
            ("[agent]\ndatabase = \"\"", "agent.database: \"\": expected a file path"),
            ("[agent]\ndatabase = \":memory:\"", "an empty path or :memory: keeps nothing on disk"),
            ("[agent]\nbearer-token = \"ключ\"", "agent.bearer-token: must be non-empty visible ASCII"),
            ("[agent]\nbearer-token = \"a\\u0001b\"", "agent.bearer-token: must be non-empty visible ASCII"),
            ("[[target]]\nname = \"a\"\nkind = \"udp\"\naddress = \"127.0.0.1:70000\"", "port \"70000\" out of range 1-65535"),
            ("[[target]]\nname = \"a\"\nkind = \"tcp\"\naddress = \"\"", "address: \"\": expected a host"),
            ("[[target]]\nname = \"a\"\nkind = \"icmp\"\naddress = \"h:80\"", "icmp takes a host without a port"),
            ("[[target]]\nname = \"a\"\nkind = \"udp\"\naddress = \"x\"\ntimeout = \"1h\"", "agent.toml:5: target \"a\": timeout: 3600s out of range: expected from 1ms to 60s"),
            ("[[target]]\nname = \"a\"\nkind = \"udp\"\naddress = \"x\"\ninterval = \"10s\"\nobjectives = { window = \"1s\", loss = \"1%\" }", "objectives.window 1s is shorter than the interval 10s"),
            (
                "[agent]\nevaluate-every = \"10min\"\n[[target]]\nname = \"a\"\nkind = \"udp\"\naddress = \"x\"\nobjectives = { window = \"5min\", loss = \"1%\" }",
                "target \"a\": objectives.window 300s is shorter than agent.evaluate-every 600s: the samples between evaluations would never be judged",
            ),
            ("[agent]\nlisten2 = \"x\"", "unknown field `listen2`"),
            ("[agent]\nlisten = \"0.0.0.0:9330\"", "agent.listen: 0.0.0.0:9330 is reachable beyond this host"),
            ("[[target]]\nname = \"a\"\nkind = \"smoke\"\naddress = \"x\"", "target \"a\": unknown kind \"smoke\""),
            ("[[target]]\nname = \"a b\"\nkind = \"udp\"\naddress = \"x\"", "name must be"),
            (
                "[[target]]\nname = \"a\"\nkind = \"udp\"\naddress = \"x\"\n[[target]]\nname = \"a\"\nkind = \"udp\"\naddress = \"y\"",
                "duplicate target name",
            ),
            ("[[target]]\nname = \"a\"\nkind = \"udp\"\naddress = \"x\"\nobjectives = { loss = \"150%\" }", "out of range"),
            ("[[target]]\nname = \"a\"\nkind = \"udp\"\naddress = \"x\"\ninterval = \"1ms\"", "interval: 1ms out of range: expected from the 10ms minimum"),
            ("[[target]]\nname = \"a\"\nkind = \"tcp\"\naddress = \"x\"\nobjectives = { throughput-min = \"1Gbps\" }", "needs kind"),
            ("[[target]]\nname = \"a\"\nkind = \"udp\"\naddress = \"x\"\nobjectives = { utilization = \"80%\" }", "objectives.utilization needs kind = \"interface\""),
            ("[[target]]\nname = \"i\"\nkind = \"interface\"\naddress = \"eth*\"\nobjectives = { rtt-p99 = \"5ms\" }", "interface targets take utilization, error-ratio and drop-ratio"),
            ("[[target]]\nname = \"i\"\nkind = \"interface\"\naddress = \" , \"", "expected interface names or globs"),
            ("[[target]]\nname = \"i\"\nkind = \"interface\"\naddress = \"eth0\"\nspeed = \"0bps\"", "speed must be positive"),
            ("[[target]]\nname = \"i\"\nkind = \"interface\"\naddress = \"eth0\"\nobjectives = { drop-ratio = \"2\" }", "objectives.drop-ratio: ratio 2 out of range"),
            // What a run would refuse every time, counting it as lost probes.
            ("[[target]]\nname = \"p\"\nkind = \"perf\"\naddress = \"x\"\nduration = \"0s\"\ninterval = \"2s\"", "duration must be positive and at most 1h"),
            ("[[target]]\nname = \"p\"\nkind = \"perf\"\naddress = \"x\"\nduration = \"2h\"\ninterval = \"3h\"", "duration must be positive and at most 1h"),
            ("[[target]]\nname = \"p\"\nkind = \"perf\"\naddress = \"x\"\nstreams = 500\ninterval = \"10s\"", "streams must be 1 to 128, got 500"),
            ("[agent]\nretention-raw = \"0s\"", "agent.retention-raw: expected 0 < retention-raw <= retention-1m"),
            ("[agent]\nretention-raw = \"2000h\"", "agent.retention-raw: expected 0 < retention-raw <= retention-1m"),
            ("[alerts]\nfire-after = 0", "alerts.fire-after: expected at least 1"),
        ] {
            let e = parse(text, "agent.toml").unwrap_err().to_string();
            assert!(e.starts_with("agent.toml"), "{e}");
            assert!(e.contains(needle), "{needle:?} not in {e}");
        }
    }
}
