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
const MAX_CONNECTIONS: usize = 64;

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

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
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

fn serve_one(mut s: TcpStream, handler: &(dyn Fn(&Request) -> Response + Send + Sync)) -> io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return write_response(&mut s, &Response::text(400, "request head too large\n"));
        }
    }
    let text = String::from_utf8_lossy(&head);
    let resp = match parse_request(&text) {
        None => Response::text(400, "bad request\n"),
        Some(r) if r.method != "GET" && r.method != "HEAD" => Response::text(405, "only GET\n"),
        Some(r) => handler(&r),
    };
    write_response(&mut s, &resp)
}

fn write_response(s: &mut TcpStream, r: &Response) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len(),
        if r.status == 401 { "WWW-Authenticate: Bearer\r\n" } else { "" }
    );
    s.write_all(head.as_bytes())?;
    s.write_all(&r.body)?;
    s.flush()
}

/// Serves `handler` on `listener` until `shutdown`; a thread per connection, at most 64.
pub fn serve(
    listener: TcpListener,
    shutdown: Arc<AtomicBool>,
    handler: Arc<dyn Fn(&Request) -> Response + Send + Sync>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let active = Arc::new(AtomicUsize::new(0));
    while !shutdown.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut s, _)) => {
                let _ = s.set_nonblocking(false);
                if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    let _ = write_response(&mut s, &Response::text(503, "busy\n"));
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let (h, a) = (handler.clone(), active.clone());
                let spawned = std::thread::Builder::new().name("http".into()).stack_size(256 * 1024).spawn(move || {
                    let _ = serve_one(s, &*h);
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
pub fn post_json(url: &str, body: &[u8], bearer: Option<&str>, timeout: Duration) -> io::Result<u16> {
    let (host, port, path) =
        crate::ping::parse_http_url(url).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let hostport = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let addr: SocketAddr = hostport
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host} resolved to no address")))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
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
