//! A minimal HTTP/1.1 server (GET, one request per connection) and client (POST JSON), enough
//! for `/metrics`, `/probe` and Alertmanager-style webhooks without an HTTP library.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Largest request head accepted.
const MAX_HEAD: usize = 8192;
/// Connections served at once; more get 503.
/// Connections served at once (a thread each, 256 KiB of stack reserved, touched only as
/// used). Stalled clients are dropped at [`HEAD_DEADLINE`], so holding many open costs an
/// attacker a steady stream of new connections, and scrapes still find a slot.
const MAX_CONNECTIONS: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
}

impl Request {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.query.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into().into_bytes() }
    }
}

/// Whether an `Authorization` header value carries bearer `token`: the scheme matched without
/// regard to case (RFC 9110), the token compared in time independent of where it differs.
pub fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    let Some(h) = header else { return false };
    let Some((scheme, given)) = h.trim().split_once(' ') else { return false };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    // Every byte of the longer one is looked at; lengths and contents both decide.
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut k = 0;
    while k < b.len() {
        match b[k] {
            b'+' => out.push(b' '),
            b'%' if k + 2 < b.len() => match (hex(b[k + 1]), hex(b[k + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    k += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        k += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a request head; `None` when it is not HTTP.
pub fn parse_request(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?;
    if !first.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());
    Some(Request { method, path: percent_decode(path), query, authorization })
}

/// The whole request head must arrive within this (a client dribbling bytes cannot hold a
/// connection longer).
const HEAD_DEADLINE: Duration = Duration::from_secs(5);

/// A served connection: plain, or TLS over it (the handshake runs inside the first reads, under
/// the same head deadline).
enum ServerConn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl ServerConn {
    fn tcp(&self) -> &TcpStream {
        match self {
            ServerConn::Plain(s) => s,
            ServerConn::Tls(s) => &s.sock,
        }
    }
}

impl Read for ServerConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ServerConn::Plain(s) => s.read(buf),
            ServerConn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for ServerConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ServerConn::Plain(s) => s.write(buf),
            ServerConn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            ServerConn::Plain(s) => s.flush(),
            ServerConn::Tls(s) => {
                s.conn.send_close_notify();
                s.flush()
            }
        }
    }
}

/// A server TLS configuration from PEM files: the certificate chain and its private key.
pub fn server_tls(cert: &std::path::Path, key: &std::path::Path) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem = std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain ({e})", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificates in the file", cert.display()));
    }
    let kpem = std::fs::read(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
    let k = PrivateKeyDer::from_pem_slice(&kpem).map_err(|e| format!("{}: no private key ({e})", key.display()))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, k)
        .map(Arc::new)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))
}

fn serve_one(
    s: TcpStream,
    tls: Option<&Arc<rustls::ServerConfig>>,
    handler: &(dyn Fn(&Request) -> Response + Send + Sync),
) -> io::Result<()> {
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut s = match tls {
        None => ServerConn::Plain(s),
        Some(cfg) => {
            let conn = rustls::ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
            ServerConn::Tls(Box::new(rustls::StreamOwned::new(conn, s)))
        }
    };
    let deadline = crate::clock::mono().0 + HEAD_DEADLINE.as_nanos() as u64;
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = Duration::from_nanos(deadline.saturating_sub(crate::clock::mono().0));
        if left.is_zero() {
            return write_response(&mut s, &Response::text(408, "request head not received in time\n"), false);
        }
        s.tcp().set_read_timeout(Some(left))?;
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return write_response(&mut s, &Response::text(408, "request head not received in time\n"), false)
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return write_response(&mut s, &Response::text(400, "request head too large\n"), false);
        }
    }
    let text = String::from_utf8_lossy(&head);
    let (resp, head_only) = match parse_request(&text) {
        None => (Response::text(400, "bad request\n"), false),
        Some(r) if r.method != "GET" && r.method != "HEAD" => (Response::text(405, "only GET and HEAD\n"), false),
        Some(r) => (handler(&r), r.method == "HEAD"),
    };
    write_response(&mut s, &resp, head_only)
}

/// Writes `r`; a response to HEAD has the headers (with the body's length) and no body.
fn write_response(s: &mut impl Write, r: &Response, head_only: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len(),
        if r.status == 401 { "WWW-Authenticate: Bearer\r\n" } else { "" }
    );
    s.write_all(head.as_bytes())?;
    if !head_only {
        s.write_all(&r.body)?;
    }
    s.flush()
}

/// Serves `handler` on `listener` until `shutdown`; a thread per connection, at most 64.
pub fn serve(
    listener: TcpListener,
    shutdown: Arc<AtomicBool>,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Arc<dyn Fn(&Request) -> Response + Send + Sync>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let active = Arc::new(AtomicUsize::new(0));
    while !shutdown.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut s, _)) => {
                let _ = s.set_nonblocking(false);
                if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    let _ = write_response(&mut s, &Response::text(503, "busy\n"), false);
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let (h, a, t) = (handler.clone(), active.clone(), tls.clone());
                // A TLS handshake runs deeper than plain HTTP: a larger stack for it.
                let stack = if t.is_some() { 1 << 20 } else { 256 * 1024 };
                let spawned = std::thread::Builder::new().name("http".into()).stack_size(stack).spawn(move || {
                    let _ = serve_one(s, t.as_ref(), &*h);
                    a.fetch_sub(1, Ordering::Relaxed);
                });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    Ok(())
}

/// POSTs `body` as JSON to an `http://` URL; returns the status code.
pub fn post_json(
    url: &str,
    body: &[u8],
    bearer: Option<&str>,
    timeout: Duration,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
) -> io::Result<u16> {
    let u = crate::ping::parse_http_url(url).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let hostport = u.host_port();
    let path = &u.path;
    let addr: SocketAddr = hostport
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} resolved to no address", u.host)))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    // https webhooks: the system's CAs (and `ca` when the caller built a config with it).
    let mut s = crate::tls::wrap(tcp, &u, tls)?;
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: meshway/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    let _ = s.take(64 * 1024).read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an http response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_the_token_exact() {
        assert!(bearer_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(bearer_matches(Some("bearer s3cret"), "s3cret"));
        assert!(bearer_matches(Some("BEARER  s3cret "), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cretx"), "s3cret"));
        assert!(!bearer_matches(Some("Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer"), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }

    #[test]
    fn parses_query_and_authorization() {
        let r = parse_request(
            "GET /probe?target=127.0.0.1%3A862&module=udp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.path, "/probe");
        assert_eq!(r.param("target"), Some("127.0.0.1:862"));
        assert_eq!(r.param("module"), Some("udp"));
        assert_eq!(r.authorization.as_deref(), Some("Bearer s3cret"));
        assert!(parse_request("hello").is_none());
        assert!(parse_request("GET / SMTP\r\n\r\n").is_none());
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
