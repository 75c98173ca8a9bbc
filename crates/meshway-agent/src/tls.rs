//! HTTP and HTTPS URLs, and client connections over either: `rustls` (ring provider) with the
//! system's trust store (`rustls-native-certs`: /etc/ssl/certs and the usual bundles) plus an
//! optional PEM bundle of extra CAs (a private PKI, a test CA).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    /// The HTTP `Host` header's value: the host (IPv6 in brackets), with the port when it is
    /// not the scheme's default (RFC 9110 7.2).
    pub fn host_header(&self) -> String {
        if self.port == if self.tls { 443 } else { 80 } {
            if self.host.contains(':') {
                format!("[{}]", self.host)
            } else {
                self.host.clone()
            }
        } else {
            self.host_port()
        }
    }
    /// `host:port`, IPv6 hosts in brackets.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Splits `http[s]://host[:port]/path`; the default port is 80 or 443.
pub fn parse_url(url: &str) -> Result<Url, &'static str> {
    // Written into the request line: a space or line break would start another header.
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a URL cannot hold spaces or control characters (percent-encode them, as %20)");
    }
    let scheme = |p: &str| url.get(..p.len()).filter(|s| s.eq_ignore_ascii_case(p)).map(|_| &url[p.len()..]);
    let (tls, rest) = if let Some(r) = scheme("https://") {
        (true, r)
    } else if let Some(r) = scheme("http://") {
        (false, r)
    } else {
        return Err("expected http://host[:port]/path or https://...");
    };
    let default = if tls { 443 } else { 80 };
    // The fragment stays with the client (RFC 9110 4.2.4); the query follows the path.
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() {
        return Err("missing host");
    }
    if authority.contains('@') {
        return Err("user:password@ in a URL is not supported (meshway sends no credentials)");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or("unclosed '[' in host")?;
        let port = match &v6[end + 1..] {
            "" => default,
            p => p.strip_prefix(':').and_then(|p| p.parse().ok()).ok_or("invalid port")?,
        };
        (v6[..end].to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| "invalid port")?),
            None => (authority.to_string(), default),
        }
    };
    if host.is_empty() {
        return Err("missing host");
    }
    // Nothing answers on port 0.
    if port == 0 {
        return Err("port 0 cannot be probed: give a port from 1 to 65535");
    }
    Ok(Url { tls, host, port, path })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration trusting the system's CAs and those in `extra_ca` (PEM).
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(p) = extra_ca {
        let pem = crate::read_regular(p, crate::MAX_SMALL_FILE, true)
            .map_err(|e| format!("cannot read CA file {}: {e}", p.display()))?;
        let mut n = 0;
        for c in CertificateDer::pem_slice_iter(&pem) {
            let c = c.map_err(|e| format!("{}: not a PEM certificate bundle ({e})", p.display()))?;
            roots.add(c).map_err(|e| format!("{}: {e}", p.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!("{}: no certificates in the file", p.display()));
        }
    }
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The configuration with the system's CAs only, built once.
pub fn default_config() -> Result<Arc<ClientConfig>, String> {
    static CFG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CFG.get_or_init(|| client_config(None)).clone()
}

/// A connection, plain or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    /// Sets the socket's read and write timeouts.
    pub fn set_timeouts(&self, t: std::time::Duration) -> io::Result<()> {
        let sock = match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        };
        sock.set_read_timeout(Some(t))?;
        sock.set_write_timeout(Some(t))
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            // A peer that closes without close_notify has still sent a complete response
            // when it said `Connection: close`; treat it as the end.
            Conn::Tls(s) => match s.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Wraps a connected socket for `url`: as it is for http, after a complete TLS handshake
/// (certificate and name verified) for https. Timeouts are the socket's.
pub fn wrap(tcp: TcpStream, url: &Url, cfg: Option<&Arc<ClientConfig>>) -> io::Result<Conn> {
    wrap_by(tcp, url, cfg, None)
}

/// [`wrap`], with the whole handshake done by `deadline`: a server that trickles its
/// handshake a byte at a time would otherwise restart the socket's timeout with every byte.
pub fn wrap_by(
    tcp: TcpStream,
    url: &Url,
    cfg: Option<&Arc<ClientConfig>>,
    deadline: Option<meshway_units::Nanos>,
) -> io::Result<Conn> {
    if !url.tls {
        return Ok(Conn::Plain(tcp));
    }
    let cfg = match cfg {
        Some(c) => c.clone(),
        None => default_config().map_err(io::Error::other)?,
    };
    let name = ServerName::try_from(url.host.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: {e}", url.host)))?;
    let conn = ClientConnection::new(cfg, name).map_err(io::Error::other)?;
    let mut s = StreamOwned::new(conn, tcp);
    // One record at a time (rustls' complete_io keeps reading while bytes trickle in, so a
    // deadline between its calls would not be looked at).
    let late = || io::Error::new(io::ErrorKind::TimedOut, "TLS handshake not complete before the timeout");
    let timed_out = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => late(),
        _ => e,
    };
    while s.conn.is_handshaking() {
        if let Some(d) = deadline {
            let left = crate::clock::dur(d.saturating_sub(crate::clock::mono()));
            if left.is_zero() {
                return Err(late());
            }
            s.sock.set_read_timeout(Some(left))?;
            s.sock.set_write_timeout(Some(left))?;
        }
        if s.conn.wants_write() {
            s.conn.write_tls(&mut s.sock).map_err(timed_out)?;
            continue;
        }
        if s.conn.read_tls(&mut s.sock).map_err(timed_out)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed during the TLS handshake"));
        }
        s.conn.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
    while s.conn.wants_write() {
        s.conn.write_tls(&mut s.sock)?;
    }
    Ok(Conn::Tls(Box::new(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("https://a.b/v1").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port, u.path.as_str()), (true, "a.b", 443, "/v1"));
        let u = parse_url("http://[::1]:9").unwrap();
        assert_eq!((u.tls, u.host_port().as_str(), u.path.as_str()), (false, "[::1]:9", "/"));
        assert_eq!(parse_url("ftp://a"), Err("expected http://host[:port]/path or https://..."));
        assert_eq!(parse_url("https://a:x/"), Err("invalid port"));
        assert_eq!(parse_url("https:///x"), Err("missing host"));
        // An empty host before a port, and port 0, are no target (they read as failed probes).
        assert_eq!(parse_url("http://:80/"), Err("missing host"));
        assert_eq!(parse_url("http://127.0.0.1:0/"), Err("port 0 cannot be probed: give a port from 1 to 65535"));
        assert_eq!(parse_url("http://[::1]:0/").unwrap_err(), "port 0 cannot be probed: give a port from 1 to 65535");
        // Upper-case schemes, a query without a path, fragments kept back, the Host header's
        // port; spaces, line breaks and credentials refused.
        let u = parse_url("HTTP://h:8080?x=1#frag").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port, u.path.as_str()), (false, "h", 8080, "/?x=1"));
        assert_eq!(u.host_header(), "h:8080");
        assert_eq!(parse_url("https://h/a#b").unwrap().host_header(), "h");
        assert_eq!(parse_url("http://[::1]/").unwrap().host_header(), "[::1]");
        let e = parse_url("http://h/a b\r\nX-Injected: 1").unwrap_err();
        assert!(e.contains("spaces or control characters"), "{e}");
        assert!(parse_url("http://user:pw@h/").unwrap_err().contains("user:password@"));
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let e = client_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.contains("cannot read CA file /nonexistent/ca.pem"), "{e}");
        let p = std::env::temp_dir().join(format!("meshway-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = client_config(Some(&p)).unwrap_err();
        let _ = std::fs::remove_file(&p);
        assert!(e.contains("no certificates"), "{e}");
    }
}
