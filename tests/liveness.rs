//! Honest device liveness, end to end against the `vitalsd` binary: fake serial device servers
//! on real TCP sockets that go silent without FIN/RST, accept and close at once, or hide a
//! SunTech cuff that never answers; a device server that comes up late; aliases of one
//! endpoint refused by `check-config`.

use crate::util::{
    Client, Webhook, bin, drain_reads, fake_device_server, free_port, is_reading, notify_target,
};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// The Masimo and SunTech profiles' expected period (1 s) plus the no-data grace (5 s).
const LIMIT: Duration = Duration::from_secs(6);
/// Slack for scheduling on a loaded machine, on top of a deadline under test.
const SLACK: Duration = Duration::from_secs(4);
/// Valid data must flow this long before a held `device_disconnected` clears.
const STABLE: Duration = Duration::from_secs(10);

/// A real Rad-8 ASCII 1 line: SpO2 98, pulse 72.
const MASIMO_LINE: &[u8] = b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=072 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000000\r\n";

const SPEAK: u8 = 0;
const SILENT: u8 = 1;
const ACCEPT_AND_CLOSE: u8 = 2;
/// Three good lines a second apart, then close (a flapping link that does deliver data).
const FLAP: u8 = 3;

/// A serial device server faked on a real TCP socket. In `SPEAK` mode every connection gets a
/// Masimo line a second; in `SILENT` mode connections stay open and nothing is written (no
/// FIN, no RST: a device server whose serial side went quiet); in `ACCEPT_AND_CLOSE` mode
/// each connection is closed at once. Whatever the daemon writes is read and dropped.
struct DeviceServer {
    port: u16,
    mode: Arc<AtomicU8>,
    accepts: Arc<AtomicUsize>,
}

impl DeviceServer {
    async fn start(mode: u8) -> DeviceServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        DeviceServer::serve(listener, mode)
    }

    fn serve(listener: tokio::net::TcpListener, mode: u8) -> DeviceServer {
        let mode = Arc::new(AtomicU8::new(mode));
        let m = mode.clone();
        let (port, accepts) = fake_device_server(listener, move |_, sock| {
            let m = m.clone();
            async move {
                if m.load(Ordering::SeqCst) == ACCEPT_AND_CLOSE {
                    drop(sock);
                    return;
                }
                let mut wr = drain_reads(sock);
                let mut sent = 0;
                loop {
                    if m.load(Ordering::SeqCst) == FLAP {
                        if sent == 3 || wr.write_all(MASIMO_LINE).await.is_err() {
                            return;
                        }
                        sent += 1;
                    }
                    if m.load(Ordering::SeqCst) == SPEAK && wr.write_all(MASIMO_LINE).await.is_err()
                    {
                        return;
                    }
                    // The device's own pace (a Masimo sends a line a second), not a wait.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        DeviceServer {
            port,
            mode,
            accepts,
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

/// A config with one bed whose one device is `profile` behind the device server at `tcp`;
/// `extra` goes before the rooms.
fn one_device_config(dir: &std::path::Path, profile: &str, tcp: &str, extra: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
data_dir = "{dir}/data"
{extra}

[[rooms]]
id = "room1"
name = "Room 1"

[[rooms.recliners]]
id = "A"
bp_interval = "10m"

[[rooms.recliners.devices]]
id = "dev"
profile = "{profile}"
tcp = "{tcp}"
"#,
        dir = dir.display()
    )
}

/// The `vitalsd run` process; killed when dropped.
struct Daemon {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(profile: &str, tcp: &str, extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liveness.toml");
        std::fs::write(&path, one_device_config(dir.path(), profile, tcp, extra)).unwrap();
        let mut child = Command::new(bin())
            .args(["run", "--config", path.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.trim_end_matches('/').to_owned();
                std::thread::spawn(move || while rx.recv().is_ok() {});
                return Daemon {
                    child,
                    addr,
                    _dir: dir,
                };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("vitalsd never said where it listens");
    }

    async fn client(&self) -> Client {
        Client::connect(&format!("ws://{}/ws", self.addr)).await
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_alarm(m: &Value, event: &str, condition: &str) -> bool {
    m["type"] == "alarm" && m["event"] == event && m["alarm"]["condition"] == condition
}

fn is_status(m: &Value, status: &str) -> bool {
    m["type"] == "device_status" && m["device"] == "dev" && m["status"] == status
}

/// Every message of `c` for `window`.
async fn collect(c: &mut Client, window: Duration) -> Vec<Value> {
    let end = Instant::now() + window;
    let mut seen = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match c.next(left).await {
            Some(m) => seen.push(m),
            None => break,
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_server_gone_silent_without_fin_is_declared_dead_and_reconnected_when_it_speaks() {
    let server = DeviceServer::start(SPEAK).await;
    let d = Daemon::start("masimo-rad8", &format!("127.0.0.1:{}", server.port), "");
    let mut c = d.client().await;
    c.wait_for("an SpO2 reading", LIMIT + SLACK, |m| {
        is_reading(m, "room1/A", "spo2") && m["value"] == 98.0
    })
    .await;

    // The socket stays open; the device server stops writing.
    server.set(SILENT);
    let silent_at = Instant::now();
    let mut no_data = false;
    let mut disconnected = false;
    let mut raised = false;
    c.wait_for(
        "disconnected and device_disconnected within the period plus grace",
        LIMIT + SLACK,
        |m| {
            no_data |= is_alarm(m, "raised", "no_data");
            disconnected |= is_status(m, "disconnected");
            raised |= is_alarm(m, "raised", "device_disconnected");
            disconnected && raised
        },
    )
    .await;
    assert!(!no_data, "the dead link shows as device_disconnected");
    assert!(silent_at.elapsed() <= LIMIT + SLACK);
    let accepts_when_dead = server.accepts();

    // The daemon closed the dead link and reconnects; the device server speaks again.
    server.set(SPEAK);
    c.wait_for("readings again", LIMIT * 3, |m| {
        is_reading(m, "room1/A", "spo2") && m["value"] == 98.0
    })
    .await;
    assert!(
        server.accepts() > accepts_when_dead,
        "readings came over a new connection"
    );
    let cleared = c
        .wait_for(
            "device_disconnected cleared after stable data",
            STABLE + SLACK * 2,
            |m| {
                assert!(
                    !is_alarm(m, "raised", "device_disconnected"),
                    "one alarm: {m}"
                );
                is_alarm(m, "cleared", "device_disconnected")
            },
        )
        .await;
    assert_eq!(cleared["alarm"]["device"], "dev");
    let (status, rooms) =
        crate::util::http(d.addr.parse().unwrap(), "GET", "/api/rooms", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        rooms["rooms"][0]["beds"][0]["devices"][0]["status"],
        "connected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_and_close_device_server_is_one_standing_alarm_and_bounded_reconnects() {
    let hook = Webhook::start(true).await;
    let server = DeviceServer::start(ACCEPT_AND_CLOSE).await;
    let d = Daemon::start(
        "masimo-rad8",
        &format!("127.0.0.1:{}", server.port),
        &notify_target("desk", &hook.url, ""),
    );
    let mut c = d.client().await;
    c.wait_for("device_disconnected", LIMIT + SLACK, |m| {
        assert!(!is_status(m, "connected"), "never connected: {m}");
        is_alarm(m, "raised", "device_disconnected")
    })
    .await;
    let accepts_then = server.accepts();
    let seen = collect(&mut c, Duration::from_secs(20)).await;
    for m in &seen {
        assert!(
            !is_alarm(m, "raised", "device_disconnected")
                && !is_alarm(m, "cleared", "device_disconnected"),
            "no raise/clear cycle: {m}"
        );
        assert!(!is_status(m, "connected"), "{m}");
    }
    // Backoff 250 ms doubling to 5 s, never reset by an accepted connect: 4 or 5 attempts
    // in 20 s (it was 80 when every accept reset it).
    let attempts = server.accepts() - accepts_then;
    assert!((1..=8).contains(&attempts), "{attempts} connects in 20 s");
    let pages = hook
        .received()
        .iter()
        .filter(|b| b.to_string().contains("device_disconnected"))
        .count();
    assert!(
        (1..=2).contains(&pages),
        "a bounded number of pages, not one per cycle: {pages}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_flaps_with_short_bursts_of_data_is_one_alarm_until_data_is_stable() {
    let server = DeviceServer::start(FLAP).await;
    let d = Daemon::start("masimo-rad8", &format!("127.0.0.1:{}", server.port), "");
    let mut c = d.client().await;
    c.wait_for("device_disconnected", LIMIT + SLACK * 2, |m| {
        is_alarm(m, "raised", "device_disconnected")
    })
    .await;
    let seen = collect(&mut c, Duration::from_secs(25)).await;
    let readings = seen
        .iter()
        .filter(|m| is_reading(m, "room1/A", "spo2"))
        .count();
    assert!(readings >= 3, "the bursts do deliver data: {readings}");
    for m in &seen {
        assert!(
            !is_alarm(m, "raised", "device_disconnected")
                && !is_alarm(m, "cleared", "device_disconnected"),
            "one alarm held through the flaps: {m}"
        );
    }
    // It settles: data for the stable time ends the alarm.
    server.set(SPEAK);
    c.wait_for(
        "device_disconnected cleared",
        STABLE + LIMIT + SLACK * 2,
        |m| is_alarm(m, "cleared", "device_disconnected"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_suntech_behind_a_device_server_is_one_standing_alarm() {
    // Accepts, reads the polls, never answers.
    let server = DeviceServer::start(SILENT).await;
    let d = Daemon::start(
        "suntech-advantage",
        &format!("127.0.0.1:{}", server.port),
        "",
    );
    let mut c = d.client().await;
    c.wait_for("device_disconnected", LIMIT + SLACK, |m| {
        is_alarm(m, "raised", "device_disconnected")
    })
    .await;
    let seen = collect(&mut c, Duration::from_secs(20)).await;
    for m in &seen {
        assert!(
            !is_alarm(m, "raised", "device_disconnected")
                && !is_alarm(m, "cleared", "device_disconnected"),
            "one standing alarm, no raise/clear every ~6 s: {m}"
        );
        assert!(
            !is_status(m, "connected"),
            "a silent cuff is not connected: {m}"
        );
    }
    assert!(server.accepts() >= 2, "the daemon keeps trying");
    let (_, alarms) =
        crate::util::http(d.addr.parse().unwrap(), "GET", "/api/alarms", None, None).await;
    let standing = alarms.to_string().matches("device_disconnected").count();
    assert!(standing >= 1, "{alarms}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_server_that_comes_up_within_the_first_grace_raises_no_alarm() {
    // The port is known but nothing listens for the first 2 s.
    let port = free_port();
    let d = Daemon::start("masimo-rad8", &format!("127.0.0.1:{port}"), "");
    let mut c = d.client().await;
    let snap = c.next(LIMIT).await.expect("a snapshot");
    assert_eq!(snap["type"], "snapshot");
    // A fixed wait on purpose: the device server is late by real time, and what is shown is
    // that being late within the grace raises nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _server = DeviceServer::serve(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
        SPEAK,
    );
    let mut statuses = Vec::new();
    c.wait_for("readings", LIMIT + SLACK, |m| {
        assert!(m["type"] != "alarm", "no alarm while first connecting: {m}");
        if m["type"] == "device_status" {
            statuses.push(m["status"].as_str().unwrap_or("").to_owned());
        }
        is_reading(m, "room1/A", "spo2")
    })
    .await;
    assert_eq!(statuses.last().map(String::as_str), Some("connected"));
    assert!(
        !statuses.iter().any(|s| s == "disconnected"),
        "connecting, then connected: {statuses:?}"
    );
    for m in collect(&mut c, Duration::from_secs(3)).await {
        assert!(m["type"] != "alarm", "{m}");
    }
}

#[test]
fn check_config_refuses_one_device_server_bound_twice_under_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    for alias in ["localhost", "127.1", "[::1]"] {
        let base = one_device_config(dir.path(), "masimo-rad8", &format!("127.0.0.1:{port}"), "");
        let text = format!(
            "{base}\n[[rooms.recliners]]\nid = \"B\"\n\n[[rooms.recliners.devices]]\nid = \"other\"\nprofile = \"nonin-oem3\"\ntcp = \"{alias}:{port}\"\n"
        );
        let path = dir.path().join("alias.toml");
        std::fs::write(&path, &text).unwrap();
        let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        let (first, second) = (
            line_of("tcp = \"127.0.0.1"),
            line_of(&format!("tcp = \"{alias}")),
        );
        let out = Command::new(bin())
            .args(["check-config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{alias} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("alias.toml:{second}:")),
            "{alias}: {err}"
        );
        assert!(
            err.contains(&format!("alias.toml:{first}")),
            "{alias}: {err}"
        );
        assert!(
            err.contains("\"other\"") && err.contains("\"dev\""),
            "{alias}: names both bindings: {err}"
        );
    }
}
