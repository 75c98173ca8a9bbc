//! The agent's HTTP: a server for `/metrics`, `/probe` and `/healthz`, and a client that POSTs
//! JSON webhooks, both on `hyper` (HTTP/1.1) over a current-thread `tokio` runtime, with TLS
//! through `tokio-rustls`. Handlers stay synchronous (`Fn(&Request) -> Response`) and run on
//! tokio's blocking pool, so a probe that waits on a silent target holds a pool thread, never
//! the event loop.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Largest request head accepted (hyper's smallest read buffer); a larger one gets 431.
const MAX_HEAD: usize = 8192;
/// Connections served at once. When all are taken, a new connection takes the place of the
/// one that has waited longest without sending a complete request, among those of the source
/// with the most such connections (a scrape sends its request at once, so only silent
/// connections are taken, and a source churning connections loses its own first): connections
/// from many sources cannot keep a scrape out. Stalled clients are also dropped at
/// [`HEAD_DEADLINE`].
pub const MAX_CONNECTIONS: usize = 512;
/// Connections served at once from one source (an IPv4 address, or an IPv6 /64, the block
/// one host is usually given): more from it get 503, so one client cannot hold the slots
/// other sources' scrapes need. An assumption: twice the `/probe` pool (32), so one
/// Prometheus server probing many targets through the agent stays within it.
pub const MAX_PER_SOURCE: usize = 64;

/// The source a connection counts against: an IPv4 address (an IPv4-mapped IPv6 one taken
/// as IPv4), or the /64 of an IPv6 address.
pub fn source_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv6Addr};
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// Connections open per source; a [`SourceSlot`] gives its one back when dropped.
#[derive(Default)]
struct PerSource(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

struct SourceSlot {
    table: Arc<PerSource>,
    key: std::net::IpAddr,
}

impl PerSource {
    fn take(table: &Arc<PerSource>, ip: std::net::IpAddr, max: usize) -> Option<SourceSlot> {
        let key = source_key(ip);
        let mut m = table.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceSlot { table: table.clone(), key })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut m = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

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

/// A request as the handler sees it, from `method` and the request target (`/path?query`).
pub fn request(method: &str, target: &str, authorization: Option<&str>) -> Request {
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Request {
        method: method.to_string(),
        path: percent_decode(path),
        query,
        authorization: authorization.map(|v| v.trim().to_string()),
    }
}

/// The whole request head, TLS handshake included, must arrive within this: a client
/// dribbling bytes cannot hold a connection longer (hyper closes it, sending nothing).
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// A connection lives at most this long: the head, the handler (a probe waits up to 10 s)
/// and writing the response (a client that stops reading is dropped then).
const CONNECTION_DEADLINE: Duration = Duration::from_secs(20);

type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

fn reply(r: Response) -> hyper::Response<Full<Bytes>> {
    let mut b = hyper::Response::builder()
        .status(r.status)
        .header(hyper::header::CONTENT_TYPE, r.content_type)
        // Explicit, so a HEAD response carries the GET body's length (hyper sends no body).
        .header(hyper::header::CONTENT_LENGTH, r.body.len());
    if r.status == 401 {
        b = b.header(hyper::header::WWW_AUTHENTICATE, "Bearer");
    }
    b.body(Full::new(Bytes::from(r.body))).unwrap_or_else(|_| {
        let mut e = hyper::Response::new(Full::new(Bytes::from_static(b"bad response\n")));
        *e.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        e
    })
}

async fn answer(req: hyper::Request<Incoming>, handler: Handler) -> Result<hyper::Response<Full<Bytes>>, io::Error> {
    let m = req.method();
    if m != hyper::Method::GET && m != hyper::Method::HEAD {
        // RFC 9110 section 15.5.6: a 405 lists the methods the target supports.
        let mut r = reply(Response::text(405, "only GET and HEAD\n"));
        r.headers_mut().insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let target = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let auth = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let r = request(m.as_str(), target, auth);
    // The handler may block (a probe waits on its target): the blocking pool runs it.
    let resp = tokio::task::spawn_blocking(move || handler(&r))
        .await
        .unwrap_or_else(|_| Response::text(500, "handler failed\n"));
    Ok(reply(resp))
}

/// Serves one request on `io`; the head must arrive within `head` (what is left of
/// [`HEAD_DEADLINE`] after a TLS handshake).
/// Connections that have not yet sent a complete request, by accept order: the ones a new
/// connection may take the place of when every slot is taken.
#[derive(Default)]
struct Silent(std::sync::Mutex<std::collections::BTreeMap<u64, (std::net::IpAddr, tokio::task::AbortHandle)>>);

impl Silent {
    fn remove(&self, id: u64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// The connection to drop for a newcomer: the oldest silent one of the source holding
    /// the most silent connections. Taking the oldest of all let a churn of connections from
    /// a few sources (27,000 a second from 10 addresses) drop every scrape whose request came
    /// more than about 19 ms after its connection.
    fn evict(&self) -> Option<tokio::task::AbortHandle> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut count: std::collections::HashMap<std::net::IpAddr, usize> = std::collections::HashMap::new();
        for (src, _) in m.values() {
            *count.entry(*src).or_insert(0) += 1;
        }
        let most = count.values().copied().max()?;
        let id = m.iter().find(|(_, (src, _))| count.get(src) == Some(&most)).map(|(id, _)| *id)?;
        m.remove(&id).map(|(_, h)| h)
    }
}

/// Takes connection `id` off the [`Silent`] list when its task ends, however it ends.
struct Heard(Arc<Silent>, u64);

impl Drop for Heard {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

async fn serve_connection<S>(io: S, handler: Handler, head: Duration, heard: Heard)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        // A complete request: this connection is no longer one to drop for a newcomer.
        heard.0.remove(heard.1);
        answer(req, handler.clone())
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head)
        .keep_alive(false)
        // A client that half-closes after its request (`nc -N`, some health checkers) still
        // gets its answer.
        .half_close(true)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(io), svc);
    let _ = conn.await;
}

/// Serves `handler` on `listener` until `shutdown`: one thread with an event loop, handlers on
/// its blocking pool, at most [`MAX_CONNECTIONS`] connections at once and [`MAX_PER_SOURCE`]
/// from one source.
pub fn serve(
    listener: TcpListener,
    shutdown: Arc<AtomicBool>,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(MAX_CONNECTIONS)
        .thread_name("http-handler")
        .thread_stack_size(1 << 20)
        .build()?;
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let per_source = Arc::new(PerSource::default());
        let silent = Arc::new(Silent::default());
        let mut next_id = 0u64;
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        while !shutdown.load(Ordering::Relaxed) {
            let Ok(accepted) = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await else {
                continue;
            };
            let Ok((stream, peer)) = accepted else {
                // Out of descriptors and the like: back off rather than spin.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let mine = PerSource::take(&per_source, peer.ip(), MAX_PER_SOURCE);
            let mut slot = slots.clone().try_acquire_owned().ok();
            if mine.is_some() && slot.is_none() {
                // Every slot taken: the connection silent the longest, of the source with the
                // most silent connections, gives up its place.
                let oldest = silent.evict();
                if let Some(task) = oldest {
                    task.abort();
                    slot = tokio::time::timeout(Duration::from_millis(100), slots.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok);
                }
            }
            let (Some(mine), Some(slot)) = (mine, slot) else {
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut s = stream;
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        s.write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n",
                        ),
                    )
                    .await;
                });
                continue;
            };
            let (h, acc) = (handler.clone(), acceptor.clone());
            next_id += 1;
            let (id, heard) = (next_id, Heard(silent.clone(), next_id));
            let task = tokio::spawn(async move {
                let _slots = (slot, mine);
                let work = async move {
                    match acc {
                        None => serve_connection(stream, h, HEAD_DEADLINE, heard).await,
                        Some(a) => {
                            let t0 = tokio::time::Instant::now();
                            if let Ok(Ok(s)) = tokio::time::timeout(HEAD_DEADLINE, a.accept(stream)).await {
                                let left = HEAD_DEADLINE.saturating_sub(t0.elapsed()).max(Duration::from_millis(1));
                                serve_connection(s, h, left, heard).await;
                            }
                        }
                    }
                };
                let _ = tokio::time::timeout(CONNECTION_DEADLINE, work).await;
            });
            // The task has not run yet (one thread): it is listed before it can be heard.
            silent.0.lock().unwrap_or_else(|e| e.into_inner()).insert(id, (source_key(peer.ip()), task.abort_handle()));
        }
        Ok::<(), io::Error>(())
    });
    // Handlers still running (a probe waiting on its target) do not hold up the agent's exit.
    rt.shutdown_timeout(Duration::from_millis(500));
    served
}

/// POSTs `body` as JSON to an `http://` or `https://` URL (the system's CAs, or `tls` when the
/// caller built a configuration with its own CA); returns the status code. The whole exchange,
/// connection and handshake included, is bounded by `timeout`.
pub fn post_json(
    url: &str,
    body: &[u8],
    bearer: Option<&str>,
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> io::Result<u16> {
    let u = crate::ping::parse_http_url(url).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let hostport = u.host_port();
    // The system resolver keeps its own timeouts, not the exchange's: the lookup counts against it.
    let addr: SocketAddr =
        crate::ping::resolve_within(&hostport, u.port, meshway_units::Nanos(timeout.as_nanos() as u64)).map_err(
            |e| {
                let kind = match e {
                    crate::ping::PingError::ResolveTimeout { .. } => io::ErrorKind::TimedOut,
                    _ => io::ErrorKind::NotFound,
                };
                io::Error::new(kind, e.to_string())
            },
        )?;
    let mut req = hyper::Request::post(u.path.as_str())
        .header(hyper::header::HOST, hostport.as_str())
        .header(hyper::header::USER_AGENT, concat!("meshway/", env!("CARGO_PKG_VERSION")))
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(t) = bearer {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::copy_from_slice(body))).map_err(io::Error::other)?;
    let cfg = match (u.tls, tls) {
        (false, _) => None,
        (true, Some(c)) => Some(c.clone()),
        (true, None) => Some(crate::tls::default_config().map_err(io::Error::other)?),
    };
    let name = match &cfg {
        None => None,
        Some(_) => Some(
            rustls::pki_types::ServerName::try_from(u.host.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: {e}", u.host)))?,
        ),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
    rt.block_on(async move {
        let exchange = async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            match (cfg, name) {
                (Some(c), Some(name)) => send(tokio_rustls::TlsConnector::from(c).connect(name, tcp).await?, req).await,
                _ => send(tcp, req).await,
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no answer from {url} within {timeout:?}")))?
    })
}

async fn send<S>(io: S, req: hyper::Request<Full<Bytes>>) -> io::Result<u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(io::Error::other)?;
    let driver = tokio::spawn(conn);
    let status = sender.send_request(req).await.map_err(io::Error::other)?.status().as_u16();
    driver.abort();
    Ok(status)
}

/// A server TLS configuration from PEM files: the certificate chain and its private key.
pub fn server_tls(cert: &std::path::Path, key: &std::path::Path) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem = crate::read_regular(cert, crate::MAX_SMALL_FILE, true)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain ({e})", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificates in the file", cert.display()));
    }
    let kpem = crate::read_regular(key, crate::MAX_SMALL_FILE, true)
        .map_err(|e| format!("cannot read {}: {e}", key.display()))?;
    let k = PrivateKeyDer::from_pem_slice(&kpem).map_err(|e| format!("{}: no private key ({e})", key.display()))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, k)
        .map(Arc::new)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A newcomer takes the place of the oldest silent connection of the source holding the
    /// most of them, not the oldest of all: a scrape from one source survives a churn from
    /// another.
    #[test]
    fn the_source_with_the_most_silent_connections_gives_way_first() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let silent = Silent::default();
            let (scrape, churn): (std::net::IpAddr, std::net::IpAddr) =
                ("10.0.0.9".parse().unwrap(), "10.0.0.1".parse().unwrap());
            let idle = || tokio::spawn(tokio::time::sleep(Duration::from_secs(60))).abort_handle();
            // The scrape connected first (the oldest), then five from the churning source.
            silent.0.lock().unwrap().insert(1, (scrape, idle()));
            for id in 2..7 {
                silent.0.lock().unwrap().insert(id, (churn, idle()));
            }
            for _ in 0..4 {
                assert!(silent.evict().is_some());
                assert!(silent.0.lock().unwrap().contains_key(&1), "the scrape was dropped");
            }
            // One each: the oldest goes, then the other.
            assert!(silent.evict().is_some());
            assert!(!silent.0.lock().unwrap().contains_key(&1));
            assert!(silent.evict().is_some());
            assert!(silent.evict().is_none());
        });
    }

    #[test]
    fn sources_are_addresses_and_ipv6_blocks() {
        let k = |s: &str| source_key(s.parse().unwrap()).to_string();
        assert_eq!(k("192.0.2.7"), "192.0.2.7");
        assert_eq!(k("::ffff:192.0.2.7"), "192.0.2.7", "an IPv4-mapped address is its IPv4 source");
        assert_eq!(k("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"), "one /64 is one source");
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::1"), "::");
    }

    #[test]
    fn per_source_slots_are_bounded_and_given_back() {
        let t = Arc::new(PerSource::default());
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let b: std::net::IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<SourceSlot> = (0..3).map(|_| PerSource::take(&t, a, 3).expect("within the cap")).collect();
        assert!(PerSource::take(&t, a, 3).is_none(), "a fourth from one source is refused");
        assert!(PerSource::take(&t, b, 3).is_some(), "another source is not");
        drop(held);
        assert!(t.0.lock().unwrap().is_empty(), "every slot given back, no entry left behind");
        assert!(PerSource::take(&t, a, 3).is_some());
    }

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
        let r = request("GET", "/probe?target=127.0.0.1%3A862&module=udp", Some(" Bearer s3cret"));
        assert_eq!(r.path, "/probe");
        assert_eq!(r.param("target"), Some("127.0.0.1:862"));
        assert_eq!(r.param("module"), Some("udp"));
        assert_eq!(r.authorization.as_deref(), Some("Bearer s3cret"));
        assert_eq!(request("GET", "/a%20b?x", None).path, "/a b");
        assert_eq!(request("GET", "/a%20b?x", None).param("x"), Some(""));
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }

    #[test]
    fn a_webhook_that_never_answers_times_out_and_a_bad_url_is_named() {
        // The listener's backlog completes the connection; nobody ever reads or answers.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let t0 = crate::clock::mono();
        let e = post_json(&url, b"{}", None, Duration::from_millis(300), None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(crate::clock::mono().saturating_sub(t0).as_secs_f64() < 3.0);
        let e = post_json("ftp://x/hook", b"{}", None, Duration::from_millis(300), None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("ftp://x/hook"), "{e}");
    }
}
