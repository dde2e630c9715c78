//! Security hardening (issue 11), against the real binary: cross-site and DNS-rebinding
//! requests, connection limits and timeouts, body and message size limits, TLS.

use crate::util::{bin, eventually_blocking, free_port};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `vitalsd run` with one bed whose NIBP device server is absent (so it raises
/// `device_disconnected`), and `extra` config before the rooms.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("vitalsd.toml");
        std::fs::write(&config, config_text(dir.path(), extra)).unwrap();
        let (child, addr, _) = spawn(&["run", "--config", config.to_str().unwrap()]);
        Daemon {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(dir: &Path, extra: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
data_dir = "{dir}/data"
{extra}

[[rooms]]
id = "room1"
name = "Room 1"

[[rooms.recliners]]
id = "A"

[[rooms.recliners.devices]]
id = "room1-A-nibp"
profile = "suntech-advantage"
tcp = "127.0.0.1:{port}"
"#,
        dir = dir.display(),
        port = free_port()
    )
}

/// Spawns the binary and reads its stdout until it says where it listens.
fn spawn(args: &[&str]) -> (Child, SocketAddr, Vec<String>) {
    spawn_until(args, &[])
}

/// Spawns the binary and reads its stdout until it says where it listens and every one of
/// `markers` has been printed (on any line, before or after); returns every other line read.
fn spawn_until(args: &[&str], markers: &[&str]) -> (Child, SocketAddr, Vec<String>) {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    spawn_command(cmd, markers)
}

/// [`spawn_until`] with a command of the caller's (a shell that sets limits first).
fn spawn_command(mut cmd: Command, markers: &[&str]) -> (Child, SocketAddr, Vec<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen: Vec<String> = Vec::new();
    let mut addr = None;
    while Instant::now() < deadline {
        if let Some(addr) = addr
            && markers.iter().all(|m| seen.iter().any(|l| l.contains(m)))
        {
            // Keep draining stdout so the daemon never blocks on a full pipe.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return (child, addr, seen);
        }
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if let Some(rest) = line.strip_prefix("vitalsd listening on ") {
            let authority = rest
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/');
            addr = Some(authority.parse().unwrap());
            continue;
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the daemon did not say where it listens; it printed: {seen:?}");
}

/// One raw HTTP/1.1 request (`Connection: close`): (status, headers lowercase, JSON body).
fn request(addr: SocketAddr, head: &str, body: &str) -> (u16, String, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "{head}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    parse_response(&resp)
}

fn parse_response(resp: &[u8]) -> (u16, String, Value) {
    let resp = String::from_utf8_lossy(resp);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn get(addr: SocketAddr, path: &str) -> Value {
    let (status, _, v) = request(addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}"), "");
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

/// Waits for the bed's `device_disconnected` alarm and returns its id.
fn wait_for_alarm(addr: SocketAddr) -> u64 {
    eventually_blocking(
        Duration::from_secs(60),
        || {
            get(addr, "/api/alarms")["alarms"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["condition"] == "device_disconnected"))
                .and_then(|a| a["id"].as_u64())
        },
        || "no device_disconnected alarm within 60 s".to_owned(),
    )
}

fn bed(addr: SocketAddr) -> Value {
    get(addr, "/api/rooms")["rooms"][0]["beds"][0].clone()
}

#[test]
fn a_cross_site_page_cannot_pause_audio_acknowledge_or_switch_alarms_off() {
    let d = Daemon::start("");
    let addr = d.addr;
    let id = wait_for_alarm(addr);
    // A "simple" cross-site POST, as any page open in the station's browser can send.
    let evil = |method: &str, path: &str, ct: &str, body: &str| {
        request(
            addr,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nContent-Type: {ct}"
            ),
            body,
        )
    };
    let (status, _, v) = evil(
        "POST",
        "/api/beds/room1/A/audio-pause",
        "text/plain",
        r#"{"seconds":600}"#,
    );
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("Origin"), "{v}");
    let (status, _, v) = evil("POST", &format!("/api/alarms/{id}/ack"), "text/plain", "");
    assert_eq!(status, 403, "{v}");
    // Even with the right Origin, text/plain is not JSON: 415.
    let (status, _, v) = request(
        addr,
        &format!(
            "POST /api/beds/room1/A/audio-pause HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nContent-Type: text/plain"
        ),
        r#"{"seconds":600}"#,
    );
    assert_eq!(status, 415, "{v}");
    // A DNS-rebinding page: Host and Origin evil.example.
    let (status, _, v) = request(
        addr,
        "PUT /api/beds/room1/A/limits HTTP/1.1\r\nHost: evil.example:8080\r\nOrigin: http://evil.example:8080\r\nContent-Type: application/json",
        r#"{"rule": []}"#,
    );
    assert_eq!(status, 421, "{v}");
    let (status, _, _) = request(addr, "GET /api/rooms HTTP/1.1\r\nHost: evil.example", "");
    assert_eq!(status, 421);
    // None of it had an effect.
    let b = bed(addr);
    assert_eq!(b["audio_paused_until"], Value::Null, "{b}");
    let alarm = &b["alarms"][0];
    assert_eq!(alarm["state"], "active", "{b}");
    let limits = get(addr, "/api/beds/room1/A/limits");
    assert!(
        limits.to_string().contains("spo2"),
        "the limits must be unchanged: {limits}"
    );
    // The dashboard itself (same origin, JSON) still works.
    let (status, _, v) = request(
        addr,
        &format!(
            "POST /api/beds/room1/A/audio-pause HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nContent-Type: application/json"
        ),
        r#"{"seconds":60}"#,
    );
    assert_eq!(status, 200, "{v}");
    let (status, _, v) = request(
        addr,
        &format!(
            "POST /api/alarms/{id}/ack HTTP/1.1\r\nHost: localhost:{}\r\nOrigin: http://localhost:{}",
            addr.port(),
            addr.port()
        ),
        "",
    );
    assert_eq!(status, 200, "{v}");
    let b = bed(addr);
    assert_ne!(b["audio_paused_until"], Value::Null, "{b}");
    assert_eq!(b["alarms"][0]["state"], "acknowledged", "{b}");
    // A WebSocket from another site is refused; the page's own is served.
    let (status, _, _) = request(
        addr,
        &format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
        ),
        "",
    );
    assert_eq!(status, 403);
}

#[test]
fn dashboard_pages_forbid_framing_and_foreign_scripts() {
    let d = Daemon::start("");
    let (status, head, _) = request(d.addr, &format!("GET / HTTP/1.1\r\nHost: {}", d.addr), "");
    assert_eq!(status, 200);
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(head.contains("script-src 'self'"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
}

#[test]
fn oversized_bodies_get_413_on_every_route() {
    let d = Daemon::start("");
    let big = "x".repeat(10 * 1024 * 1024);
    for path in [
        "/api/beds/room1/A/admit",
        "/api/beds/room1/A/events",
        "/api/beds/room1/A/audio-pause",
        "/api/beds/room1/A/limits",
    ] {
        let method = if path.ends_with("limits") {
            "PUT"
        } else {
            "POST"
        };
        // The answer comes before the body is read: send the head and the first megabyte.
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            d.addr,
            big.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        let _ = s.write_all(&big.as_bytes()[..1024 * 1024]);
        let mut resp = vec![0u8; 4096];
        let n = s.read(&mut resp).unwrap_or(0);
        let (status, _, v) = parse_response(&resp[..n]);
        assert_eq!(status, 413, "{path}: {v}");
    }
}

#[test]
fn idle_and_half_sent_connections_are_closed_and_healthz_answers_meanwhile() {
    let d = Daemon::start("[api]\nmax_connections = 20\nheader_timeout = \"2s\"\n");
    // Many more half-sent requests than the cap (slowloris).
    let mut idle: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).unwrap();
            s.write_all(b"GET /api/rooms HTTP/1.1\r\nHost: x").unwrap();
            s
        })
        .collect();
    // Once they have been silent for a second, a new request is served: the connection idle
    // the longest makes room. A fixed wait on purpose: the server evicts by idle time, so
    // real time must pass before the request that shows it.
    std::thread::sleep(Duration::from_millis(1500));
    let healthz = request(
        d.addr,
        &format!("GET /healthz HTTP/1.1\r\nHost: {}", d.addr),
        "",
    );
    assert_eq!(healthz.0, 200, "{healthz:?}");
    // Every half-sent connection is closed within the header timeout (plus slack).
    let deadline = Instant::now() + Duration::from_secs(20);
    for s in &mut idle {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = Vec::new();
        let r = s.read_to_end(&mut buf);
        assert!(
            !matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
            "a half-sent connection is still open after 20 s"
        );
    }
    // And the daemon still answers.
    assert_eq!(get(d.addr, "/healthz")["status"], "ok");
}

#[tokio::test]
async fn an_oversized_websocket_message_closes_with_1009() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let d = Daemon::start("");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", d.addr))
        .await
        .expect("websocket connects");
    ws.send(Message::text("x".repeat(100 * 1024)))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the daemon closes the WebSocket");
        match next {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1009, "{frame:?}");
                return;
            }
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                panic!("closed without code 1009: {next:?}")
            }
            Some(Ok(_)) => continue,
        }
    }
}

#[test]
fn a_non_loopback_listener_without_tls_is_refused_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vitalsd.toml");
    let users = "[[users]]\nname = \"nurse\"\nrole = \"nurse\"\ntoken = \"0123456789abcdef0123\"\n";
    let text = config_text(dir.path(), users).replace("127.0.0.1:0", "0.0.0.0:8443");
    std::fs::write(&config, &text).unwrap();
    let out = Command::new(bin())
        .args(["check-config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen") && err.contains("[tls]"), "{err}");
    // Lab use, said explicitly: accepted.
    let lab = text.replace(
        users,
        &format!("{users}\n[api]\ninsecure_allow_plaintext = true\n"),
    );
    std::fs::write(&config, lab).unwrap();
    let out = Command::new(bin())
        .args(["check-config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_tls_demo_serves_https_to_a_client_that_trusts_its_certificate_and_refuses_plaintext() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (child, addr, printed) = spawn_until(
        &[
            "demo",
            "--tls",
            "--listen",
            &listen,
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &["#token=", "curl --cacert"],
    );
    let _child = KillOnDrop(child);
    let token = printed
        .iter()
        .find_map(|l| l.split_once("#token=").map(|(_, t)| t.trim().to_owned()))
        .expect("the demo prints a dashboard link with a token");
    assert!(
        printed.iter().any(|l| l.contains("curl --cacert")),
        "the demo says how to trust its certificate: {printed:?}"
    );
    let cert = dir.path().join("demo-tls/cert.pem");
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        for c in CertificateDer::pem_file_iter(&cert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(
        format!(
            "GET /healthz HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            addr.port()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp).await;
    let (status, head, body) = parse_response(&resp);
    assert_eq!(status, 200, "{head}");
    assert_eq!(body["status"], "ok");
    // WSS on the same listener.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("wss://localhost:{}/ws?token={token}", addr.port()),
        tls,
    )
    .await
    .expect("WSS connects");
    let first = tokio::time::timeout(
        Duration::from_secs(20),
        futures_util::StreamExt::next(&mut ws),
    )
    .await
    .expect("a snapshot over WSS");
    assert!(format!("{first:?}").contains("snapshot"), "{first:?}");
    // Plain HTTP to the TLS listener gets no HTTP answer.
    let plain = tokio::task::spawn_blocking(move || {
        request(addr, &format!("GET /healthz HTTP/1.1\r\nHost: {addr}"), "")
    })
    .await
    .unwrap();
    assert_ne!(plain.0, 200, "{plain:?}");
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_websocket_may_carry_its_token_in_the_subprotocol_instead_of_the_url() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let token = "viewer-token-0123456789";
    let d = Daemon::start(&format!(
        "[[users]]\nname = \"station\"\nrole = \"viewer\"\ntoken = \"{token}\"\n"
    ));
    let url = format!("ws://{}/ws", d.addr);
    let with = |protocols: &str| {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
        req
    };
    let (mut ws, response) =
        tokio_tungstenite::connect_async(with(&format!("vitalsd, vitalsd.token.{token}")))
            .await
            .expect("a token in the subprotocol is accepted");
    assert_eq!(response.headers()["sec-websocket-protocol"], "vitalsd");
    let first = tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .expect("a snapshot");
    assert!(format!("{first:?}").contains("snapshot"), "{first:?}");
    // A wrong token (of another length) is refused.
    let refused = tokio_tungstenite::connect_async(with("vitalsd, vitalsd.token.short")).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401),
        "{refused:?}"
    );
}

/// A limits PUT from the dashboard's own origin (JSON), with an optional bearer token.
fn put_limits(addr: SocketAddr, token: Option<&str>, body: &str) -> (u16, Value) {
    let auth = token
        .map(|t| format!("\r\nAuthorization: Bearer {t}"))
        .unwrap_or_default();
    let (status, _, v) = request(
        addr,
        &format!(
            "PUT /api/beds/room1/A/limits HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nContent-Type: application/json{auth}"
        ),
        body,
    );
    (status, v)
}

#[test]
fn a_limit_set_that_switches_spo2_or_pulse_alarms_off_needs_an_admin_confirmation_and_shows() {
    let d = Daemon::start(
        "[[users]]\nname = \"ward-admin\"\nrole = \"admin\"\ntoken = \"admin-token-0123456789\"\n\
         [[users]]\nname = \"nurse1\"\nrole = \"nurse\"\ntoken = \"nurse-token-0123456789\"\n",
    );
    let addr = d.addr;
    let admin = Some("admin-token-0123456789");
    let rooms = |addr: SocketAddr| {
        let (status, _, v) = request(
            addr,
            &format!(
                "GET /api/rooms HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer admin-token-0123456789"
            ),
            "",
        );
        assert_eq!(status, 200, "{v}");
        v["rooms"][0]["beds"][0].clone()
    };
    assert_eq!(rooms(addr)["limits_off"], serde_json::json!([]));
    // An empty set, unconfirmed: refused, and the message says how to confirm.
    let (status, v) = put_limits(addr, admin, r#"{"rule": []}"#);
    assert_eq!(status, 409, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("spo2") && msg.contains("pulse_rate") && msg.contains("confirm_disable"),
        "{msg}"
    );
    // A set with spo2 but no pulse rate rule: refused, naming pulse_rate only.
    let spo2_only = r#"{"rule": [{"metric": "spo2", "direction": "low", "threshold": 90, "priority": "high"}]}"#;
    let (status, v) = put_limits(addr, admin, spo2_only);
    assert_eq!(status, 409, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("pulse_rate") && !msg.contains("spo2 and"),
        "{msg}"
    );
    // Nothing changed.
    assert_eq!(rooms(addr)["limits_off"], serde_json::json!([]));
    // A nurse cannot confirm (limits are an admin's), a bad flag is named.
    let (status, v) = put_limits(
        addr,
        Some("nurse-token-0123456789"),
        r#"{"rule": [], "confirm_disable": true}"#,
    );
    assert_eq!(status, 403, "{v}");
    let (status, v) = put_limits(addr, admin, r#"{"rule": [], "confirm_disable": "yes"}"#);
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("confirm_disable"),
        "{v}"
    );
    // Confirmed by the admin: accepted, and the bed shows it in /api/rooms.
    let (status, v) = put_limits(addr, admin, r#"{"confirm_disable": true, "rule": []}"#);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rules"], serde_json::json!([]), "{v}");
    assert_eq!(
        rooms(addr)["limits_off"],
        serde_json::json!(["spo2", "pulse_rate"])
    );
    // A full set again (no confirmation needed): the indicator is gone.
    let (status, v) = put_limits(
        addr,
        admin,
        r#"{"rule": [
            {"metric": "spo2", "direction": "low", "threshold": 90, "priority": "high"},
            {"metric": "pulse_rate", "direction": "high", "threshold": 130, "priority": "medium"}
        ]}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(rooms(addr)["limits_off"], serde_json::json!([]));
}

/// `vitalsd hash-token` with `input` on standard input: (success, stdout, stderr).
fn hash_token(input: &str) -> (bool, String, String) {
    let mut child = Command::new(bin())
        .arg("hash-token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_config_may_hold_only_the_hash_of_a_token_printed_by_hash_token() {
    let token = "station-token-0123456789";
    let (ok, line, err) = hash_token(&format!("{token}\n"));
    assert!(ok, "{err}");
    let line = line.trim_end();
    let hex = line
        .strip_prefix("token_sha256 = \"")
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not a config line: {line:?}"));
    assert_eq!(hex.len(), 64, "{line}");
    assert!(!line.contains(token));
    // A token too short for the config is refused, and nothing is printed.
    let (ok, out, err) = hash_token("short\n");
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("16 characters"), "{err}");

    // The printed line, as is, in a [[users]] table: the token is accepted, others are not.
    let d = Daemon::start(&format!(
        "[[users]]\nname = \"station\"\nrole = \"nurse\"\n{line}\n"
    ));
    let call = |t: &str| {
        request(
            d.addr,
            &format!(
                "GET /api/rooms HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {t}",
                d.addr
            ),
            "",
        )
    };
    let (status, _, v) = call(token);
    assert_eq!(status, 200, "{v}");
    assert!(v["rooms"].is_array(), "{v}");
    let (status, _, _) = call(hex);
    assert_eq!(status, 401, "the hash itself is not a token");
    let (status, _, _) = call("station-token-0123456780");
    assert_eq!(status, 401);

    // A malformed hash, or both forms, is named with file, line and key by check-config.
    let dir = tempfile::tempdir().unwrap();
    for (users, key, says) in [
        (
            "[[users]]\nname = \"station\"\nrole = \"nurse\"\ntoken_sha256 = \"abc\"\n",
            "users[0].token_sha256",
            "64 hex digits",
        ),
        (
            &*format!(
                "[[users]]\nname = \"station\"\nrole = \"nurse\"\ntoken = \"{token}\"\n{line}\n"
            ),
            "users[0].token",
            "one of them",
        ),
    ] {
        let config = dir.path().join("vitalsd.toml");
        std::fs::write(&config, config_text(dir.path(), users)).unwrap();
        let out = Command::new(bin())
            .args(["check-config", config.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("vitalsd.toml:6") && err.contains(key) && err.contains(says),
            "{err}"
        );
    }
}

/// A WebSocket handshake to `/ws` with these extra headers; the status of the answer (101 when
/// upgraded). Reads the answer's head only (an upgraded connection stays open).
fn ws_handshake(addr: SocketAddr, extra: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=={extra}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    parse_response(&head).0
}

#[test]
fn a_websocket_from_a_configured_origin_opens_and_one_from_another_site_does_not() {
    let d = Daemon::start("[api]\nallowed_origins = [\"https://portal.clinic.lan\"]\n");
    assert_eq!(
        ws_handshake(d.addr, "\r\nOrigin: https://portal.clinic.lan"),
        101,
        "an origin in [api] allowed_origins may open /ws"
    );
    assert_eq!(
        ws_handshake(d.addr, &format!("\r\nOrigin: http://{}", d.addr)),
        101,
        "the daemon's own origin may open /ws"
    );
    for evil in [
        "https://evil.example",
        "http://portal.clinic.lan",
        "https://portal.clinic.lan.evil.example",
        "null",
    ] {
        assert_eq!(
            ws_handshake(d.addr, &format!("\r\nOrigin: {evil}")),
            403,
            "{evil}"
        );
    }
}

/// Reads a WebSocket until it closes: (the messages before the close, the close frame's code
/// and reason).
async fn until_close(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> (Vec<String>, Option<(u16, String)>) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut before = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the daemon closes the WebSocket within 30 s");
        match next {
            Some(Ok(Message::Close(frame))) => {
                return (
                    before,
                    frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                );
            }
            Some(Ok(Message::Text(t))) => before.push(t.to_string()),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return (before, None),
        }
    }
}

#[tokio::test]
async fn a_websocket_authenticates_with_its_first_message_and_gets_nothing_before_it() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let token = "viewer-token-0123456789";
    let d = Daemon::start(&format!(
        "[api]\nheader_timeout = \"2s\"\n\n[[users]]\nname = \"station\"\nrole = \"viewer\"\ntoken = \"{token}\"\n"
    ));
    let url = format!("ws://{}/ws", d.addr);
    // The right token as the first message: the snapshot follows.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::text(format!(
        r#"{{"type":"auth","token":"{token}"}}"#
    )))
    .await
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .expect("a message after auth");
    assert!(format!("{first:?}").contains("snapshot"), "{first:?}");
    // A wrong token, a heartbeat instead of auth, and nothing at all: closed with 4401 and a
    // reason, and not one message before the close.
    for (first, says) in [
        (
            Some(r#"{"type":"auth","token":"station-token-wrong-0000"}"#),
            "unknown token",
        ),
        (
            Some(r#"{"type":"heartbeat","audio_armed":true,"visible":true}"#),
            r#"{"type":"auth""#,
        ),
        (None, "no auth message within 2s"),
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        if let Some(m) = first {
            ws.send(Message::text(m)).await.unwrap();
        }
        let (before, close) = until_close(&mut ws).await;
        assert!(before.is_empty(), "sent before auth: {before:?}");
        let (code, reason) = close.unwrap_or_else(|| panic!("{first:?}: no close frame"));
        assert_eq!(code, 4401, "{first:?}: {reason}");
        assert!(reason.contains(says), "{first:?}: {reason}");
    }
    // Without users, no auth message is needed (loopback mode).
    let open = Daemon::start("");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", open.addr))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .expect("a snapshot without auth in loopback mode");
    assert!(format!("{first:?}").contains("snapshot"), "{first:?}");
}

#[test]
fn a_request_whose_body_is_not_complete_within_the_request_timeout_gets_408() {
    let d = Daemon::start("[api]\nrequest_timeout = \"2s\"\n");
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // 100 bytes announced, 10 sent, then silence (the connection stays open).
    let head = format!(
        "POST /api/beds/room1/A/audio-pause HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"seconds\"",
        d.addr
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut resp = vec![0u8; 4096];
    let n = s.read(&mut resp).unwrap_or(0);
    let (status, _, v) = parse_response(&resp[..n]);
    assert_eq!(status, 408, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("request_timeout"),
        "{v}"
    );
    assert_eq!(bed(d.addr)["audio_paused_until"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_leave_healthz_a_dashboard_and_device_links_working() {
    use futures_util::StreamExt;
    // This process holds 2000 sockets too.
    vitalsd::api::serve::raise_fd_limit();
    // A device server the daemon's NIBP link connects to.
    let device = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vitalsd.toml");
    let text: String = config_text(
        dir.path(),
        // Idle connections are not timed out during the test: only the cap makes room.
        "[api]\nmax_connections = 5000\nheader_timeout = \"10m\"\n",
    )
    .lines()
    .map(|l| {
        if l.starts_with("tcp = ") {
            format!("tcp = \"{}\"\n", device.local_addr().unwrap())
        } else {
            format!("{l}\n")
        }
    })
    .collect();
    std::fs::write(&config, text).unwrap();
    // The daemon under a hard limit of 1024 open files, configured for 5000 connections:
    // without a reserve, the flood would take every descriptor.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -n 1024 && exec \"$0\" \"$@\"",
        bin().to_str().unwrap(),
        "run",
        "--config",
        config.to_str().unwrap(),
    ]);
    let (child, addr, _) = spawn_command(cmd, &[]);
    let _child = KillOnDrop(child);
    let accept = |l: &std::net::TcpListener| {
        l.set_nonblocking(false).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let l = l.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = tx.send(l.accept().map(|(s, _)| s));
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the daemon connects to its device within 60 s")
            .unwrap()
    };
    let link = accept(&device);
    // 2000 idle connections (bounded: each connect waits at most 5 s).
    let idle = tokio::task::spawn_blocking(move || {
        (0..2000)
            .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(idle.len() > 1000, "only {} connections made", idle.len());
    // Once they have been idle for a second, the longest idle make room. A fixed wait on
    // purpose: eviction goes by idle time, so real time must pass first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let healthz = tokio::task::spawn_blocking(move || {
        request(addr, &format!("GET /healthz HTTP/1.1\r\nHost: {addr}"), "")
    })
    .await
    .unwrap();
    assert_eq!(healthz.0, 200, "{healthz:?}");
    // Bounded: without the reserve the daemon sat at EMFILE until the idle connections timed
    // out (10 minutes here), and this connect waited that long.
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws")),
    )
    .await
    .expect("a dashboard's WebSocket connects within 30 s")
    .expect("a dashboard's WebSocket connects");
    let first = tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .expect("a snapshot");
    assert!(format!("{first:?}").contains("snapshot"), "{first:?}");
    // The device server drops the link: the daemon reconnects.
    drop(link);
    let again = tokio::task::spawn_blocking(move || accept(&device))
        .await
        .unwrap();
    drop(again);
    drop(idle);
}

#[test]
fn with_users_a_cross_site_or_rebinding_request_is_refused_even_with_a_valid_token() {
    let token = "nurse-token-0123456789";
    let d = Daemon::start(&format!(
        "[[users]]\nname = \"nurse1\"\nrole = \"nurse\"\ntoken = \"{token}\"\n"
    ));
    let addr = d.addr;
    let pause = |host: &str, origin: &str| {
        request(
            addr,
            &format!(
                "POST /api/beds/room1/A/audio-pause HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}"
            ),
            r#"{"seconds":600}"#,
        )
    };
    // A page on another site that got hold of the token: refused by Origin.
    let (status, _, v) = pause(&addr.to_string(), "http://evil.example");
    assert_eq!(status, 403, "{v}");
    // A rebinding page (Host and Origin its own name): refused by Host.
    let (status, _, v) = pause("evil.example:8080", "http://evil.example:8080");
    assert_eq!(status, 421, "{v}");
    // Nothing paused; the same request from the daemon's own page is served.
    let rooms = |addr: SocketAddr| {
        let (status, _, v) = request(
            addr,
            &format!("GET /api/rooms HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}"),
            "",
        );
        assert_eq!(status, 200, "{v}");
        v["rooms"][0]["beds"][0]["audio_paused_until"].clone()
    };
    assert_eq!(rooms(addr), Value::Null);
    let (status, _, v) = pause(&addr.to_string(), &format!("http://{addr}"));
    assert_eq!(status, 200, "{v}");
    assert_ne!(rooms(addr), Value::Null);
}
