//! HTTPS: `meshway ping` against `openssl s_server` with a certificate from a CA the test makes
//! with `openssl req` (trusted with --ca, refused without), and the agent posting an alert to
//! an https webhook the test serves with rustls. Loopback only.

use std::io::{Read, Write};
use std::net::TcpListener;
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

struct Tmp(PathBuf);
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A CA and a leaf for localhost and 127.0.0.1 signed by it, made with the openssl CLI; `None`
/// (skip) where openssl is missing and this is not CI.
fn pki(tag: &str) -> Option<Tmp> {
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(std::env::var("CI").is_err(), "openssl is required under CI");
        eprintln!("skipped: no openssl");
        return None;
    }
    let d = Tmp(std::env::temp_dir().join(format!("meshway-https-{}-{tag}", std::process::id())));
    std::fs::create_dir_all(&d.0).unwrap();
    let run = |args: &[&str]| {
        let o = Command::new("openssl").args(args).current_dir(&d.0).output().unwrap();
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2"]
        .into_iter()
        .chain(["-subj", "/CN=meshway test CA"])
        .collect::<Vec<_>>());
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/CN=localhost"]);
    std::fs::write(
        d.0.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    Some(d)
}

fn wait_port(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

#[test]
fn https_ping_verifies_the_server_against_the_given_ca() {
    let Some(d) = pki("ping") else { return };
    let port = free_port();
    let _server = Proc(
        Command::new("timeout")
            .args(["60", "openssl", "s_server", "-accept", &format!("127.0.0.1:{port}"), "-www", "-quiet"])
            .args(["-cert", "cert.pem", "-key", "key.pem"])
            .current_dir(&d.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    let url = format!("https://localhost:{port}/");
    let ca = d.0.join("ca.pem");
    let o = Command::new(bin())
        .args(["ping", "--kind", "http", &url, "-c", "3", "-i", "50ms", "--json", "--ca"])
        .arg(&ca)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &v["report"];
    assert_eq!((r["sent"].as_u64(), r["received"].as_u64()), (Some(3), Some(3)), "{v}");
    assert_eq!(r["http"]["status"][0], serde_json::json!([200, 3]));
    let tls = r["http"]["tls"]["p50_ns"].as_u64().unwrap();
    let connect = r["http"]["connect"]["p50_ns"].as_u64().unwrap();
    assert!(tls > connect, "the handshake completes after the TCP connect: {tls} vs {connect}");
    // The system's store does not know this CA: every probe fails, and says why.
    let o = Command::new(bin()).args(["ping", "--kind", "http", &url, "-c", "2", "-i", "50ms"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("last error: invalid peer certificate: UnknownIssuer"), "{s}");
    // A CA file that is not one.
    let o = Command::new(bin())
        .args(["ping", "--kind", "http", &url, "-c", "1", "--ca", "/etc/hostname"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no certificates in the file"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A one-thread HTTPS server that answers 200 to every request and keeps the bodies.
fn serve_tls(d: &Path, listener: TcpListener, bodies: Arc<Mutex<Vec<String>>>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(d.join("cert.pem")).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(d.join("key.pem")).unwrap();
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    std::thread::spawn(move || {
        for tcp in listener.incoming().take(20) {
            let Ok(tcp) = tcp else { continue };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then the body by Content-Length.
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if req.len() >= i + 4 + len {
                        bodies.lock().unwrap().push(text[i + 4..].to_string());
                        break;
                    }
                }
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    });
}

#[test]
fn the_agent_posts_alerts_to_an_https_webhook() {
    let Some(d) = pki("hook") else { return };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    serve_tls(&d.0, listener, bodies.clone());
    // A target nothing answers: its loss objective fires at once.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = d.0.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nlisten = \"127.0.0.1:{}\"\ndatabase = \"{}\"\nevaluate-every = \"100ms\"\n\
             [alerts]\nwebhook = \"https://localhost:{hook_port}/hook\"\nca = \"{}\"\nfire-after = 1\n\
             [[target]]\nname = \"silent\"\nkind = \"udp\"\naddress = \"{}\"\ninterval = \"50ms\"\ntimeout = \"100ms\"\n\
             objectives = {{ window = \"5s\", loss = \"10%\" }}\n",
            free_port(),
            d.0.join("a.db").display(),
            d.0.join("ca.pem").display(),
            silent.local_addr().unwrap()
        ),
    )
    .unwrap();
    let _agent = Proc(Command::new(bin()).args(["agent", "--config"]).arg(&cfg).stderr(Stdio::null()).spawn().unwrap());
    let mut got = String::new();
    for _ in 0..100 {
        if let Some(b) = bodies.lock().unwrap().first() {
            got = b.clone();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let v: serde_json::Value = serde_json::from_str(&got).unwrap_or_else(|e| panic!("{e}: {got:?}"));
    assert_eq!((v["status"].as_str(), v["alerts"][0]["labels"]["target"].as_str()), (Some("firing"), Some("silent")));
}

#[test]
fn the_agent_serves_metrics_over_https() {
    let Some(d) = pki("serve") else { return };
    let port = free_port();
    let cfg = d.0.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nlisten = \"127.0.0.1:{port}\"\ndatabase = \"{}\"\ntls-cert = \"{}\"\ntls-key = \"{}\"\n",
            d.0.join("a.db").display(),
            d.0.join("cert.pem").display(),
            d.0.join("key.pem").display()
        ),
    )
    .unwrap();
    let _agent = Proc(Command::new(bin()).args(["agent", "--config"]).arg(&cfg).stderr(Stdio::null()).spawn().unwrap());
    wait_port(port);
    let url = meshway_agent::tls::parse_url(&format!("https://localhost:{port}/metrics")).unwrap();
    let client = meshway_agent::tls::client_config(Some(&d.0.join("ca.pem"))).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut c = meshway_agent::tls::wrap(tcp, &url, Some(&client)).unwrap();
    write!(c, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    c.flush().unwrap();
    let mut body = String::new();
    c.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200") && body.contains("meshway_up 1"), "{body}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut p = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    p.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(p, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut r = Vec::new();
    let _ = p.read_to_end(&mut r);
    assert!(!String::from_utf8_lossy(&r).contains("meshway_up"), "served in the clear");
    // A key without its certificate is refused at load, naming the keys.
    std::fs::write(&cfg, format!("[agent]\nlisten = \"127.0.0.1:{port}\"\ntls-key = \"x.pem\"\n")).unwrap();
    let o = Command::new(bin()).args(["agent", "--check", "--config"]).arg(&cfg).output().unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("tls-cert and tls-key go together"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
