//! Helpers for the integration tests: a temporary config with simulated devices on fresh
//! ptys and TCP ports, the simulator and daemon in this process, and a WebSocket client.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vitalsd::app::{self, Options, Running};
use vitalsd::config::{Config, load_config_str};
use vitalsd::sim::{self, SimHandle, scenario::Scenario};

/// How often [`eventually`] and [`eventually_blocking`] look again.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

/// Waits for something to happen: calls `check` until it gives `Some`, every [`POLL_EVERY`],
/// and returns what it gave. After `within` it panics with `failure()` (say what was awaited
/// and what was seen instead) and how long it waited. Tests wait with this, not with fixed
/// sleeps: a fast run is not slowed down, and a slow one fails with a message, not a flake.
pub async fn eventually<T>(
    within: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
    failure: impl FnOnce() -> String,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{} (waited {within:?})", failure());
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// [`eventually`] for a check that says what it saw: `Err(why)` is "not yet", and the last
/// `why` is the failure message after `within`.
pub async fn eventually_ok<T>(
    within: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(why) if tokio::time::Instant::now() >= deadline => {
                panic!("{why} (waited {within:?})")
            }
            Err(_) => tokio::time::sleep(POLL_EVERY).await,
        }
    }
}

/// [`eventually`] for a test on a plain thread: polls `check` with `std::thread::sleep`.
pub fn eventually_blocking<T>(
    within: Duration,
    mut check: impl FnMut() -> Option<T>,
    failure: impl FnOnce() -> String,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if std::time::Instant::now() >= deadline {
            panic!("{} (waited {within:?})", failure());
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// A free TCP port on loopback (bind, read, release).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The config text of room1: A = Masimo on a pty + SunTech over TCP; B = Nonin on a pty +
/// SunTech on a pty. Every device simulated. Ports live in `dir`.
pub fn two_bed_config_text(dir: &Path, bp_interval: &str, tcp: u16) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
data_dir = "{dir}/data"

[[rooms]]
id = "room1"
name = "Room 1"

[[rooms.recliners]]
id = "A"
bp_interval = "{bp_interval}"

[[rooms.recliners.devices]]
id = "room1-A-oximeter"
profile = "masimo-rad8"
port = "{dir}/room1-A-oximeter"
simulated = true

[[rooms.recliners.devices]]
id = "room1-A-nibp"
profile = "suntech-advantage"
tcp = "127.0.0.1:{tcp}"
simulated = true

[[rooms.recliners]]
id = "B"
bp_interval = "{bp_interval}"

[[rooms.recliners.devices]]
id = "room1-B-oximeter"
profile = "nonin-oem3"
port = "{dir}/room1-B-oximeter"
simulated = true

[[rooms.recliners.devices]]
id = "room1-B-nibp"
profile = "suntech-advantage"
port = "{dir}/room1-B-nibp"
simulated = true
"#,
        dir = dir.display()
    )
}

/// [`two_bed_config_text`] plus `extra` (top-level tables such as `[[users]]`, `[alarms]`,
/// `[[notify]]`, placed before the rooms), loaded.
pub fn two_bed_config(dir: &Path, bp_interval: &str, extra: &str) -> Config {
    TestConfig::new(dir)
        .bp_interval(bp_interval)
        .extra(extra)
        .load()
}

/// The test config, built: room1's two beds of [`two_bed_config_text`] (ports and data in
/// `dir`, the TCP cuff on a free port, BP every 5 min unless set), plus top-level tables.
/// One place for the setup most tests share:
///
/// ```ignore
/// let cfg = TestConfig::new(dir.path()).bp_interval("10m").extra(USERS).write("site.toml");
/// ```
#[derive(Debug, Clone)]
pub struct TestConfig {
    dir: PathBuf,
    bp_interval: String,
    tcp: u16,
    extra: String,
    /// room1/A's TCP cuff is played by the test, not the simulator.
    tcp_by_hand: bool,
}

impl TestConfig {
    /// The two beds in `dir`, BP every 5 min, the TCP cuff on a free port.
    pub fn new(dir: &Path) -> TestConfig {
        TestConfig {
            dir: dir.to_owned(),
            bp_interval: "5m".to_owned(),
            tcp: free_port(),
            extra: String::new(),
            tcp_by_hand: false,
        }
    }

    /// Each bed's `bp_interval` (`"10m"`, `"5s"`).
    pub fn bp_interval(mut self, every: &str) -> TestConfig {
        every.clone_into(&mut self.bp_interval);
        self
    }

    /// The port of room1/A's TCP cuff (to play it by hand instead of the simulator).
    pub fn tcp(mut self, port: u16) -> TestConfig {
        self.tcp = port;
        self
    }

    /// room1/A's TCP cuff at `port`, played by the test (a fake device server): the simulator
    /// leaves it alone.
    pub fn tcp_by_hand(mut self, port: u16) -> TestConfig {
        self.tcp = port;
        self.tcp_by_hand = true;
        self
    }

    /// Adds a webhook notification target ([`notify_target`]).
    pub fn notify(self, name: &str, url: &str, keys: &str) -> TestConfig {
        self.extra(&notify_target(name, url, keys))
    }

    /// Adds top-level keys or tables (`[alarms]`, `[[users]]`, `[mqtt]`), placed before the
    /// rooms; may be called again.
    pub fn extra(mut self, toml: &str) -> TestConfig {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    /// The config text.
    pub fn text(&self) -> String {
        let mut rooms = two_bed_config_text(&self.dir, &self.bp_interval, self.tcp);
        if self.tcp_by_hand {
            let simulated = format!("tcp = \"127.0.0.1:{}\"\nsimulated = true", self.tcp);
            rooms = rooms.replace(&simulated, &format!("tcp = \"127.0.0.1:{}\"", self.tcp));
        }
        if self.extra.trim().is_empty() {
            rooms
        } else {
            with_extra(&rooms, &self.extra)
        }
    }

    /// The config, loaded as the daemon loads it (as if from `dir/test.toml`).
    pub fn load(&self) -> Config {
        load_config_str(&self.text(), &self.dir.join("test.toml")).expect("test config is valid")
    }

    /// Writes the config to `dir/name` for a daemon run as a process; returns the path.
    pub fn write(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, self.text()).expect("the test config is written");
        path
    }
}

/// A `[[notify]]` table: the webhook target `name` at `url`, plus `keys` (`timeout = "2s"`,
/// `level = 1`, one per line) when not empty.
pub fn notify_target(name: &str, url: &str, keys: &str) -> String {
    let mut t = format!("\n[[notify]]\nname = \"{name}\"\nurl = \"{url}\"\n");
    if !keys.trim().is_empty() {
        t.push_str(keys.trim());
        t.push('\n');
    }
    t
}

/// Writes [`scenario_text`] to `dir/name` for a daemon run as a process; returns the path.
pub fn write_scenario(dir: &Path, name: &str, extra_a: &str, extra_b: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, scenario_text(extra_a, extra_b)).expect("the scenario is written");
    path
}

/// Inserts top-level keys/tables before the first `[[rooms]]`.
pub fn with_extra(config: &str, extra: &str) -> String {
    match config.find("[[rooms]]") {
        Some(i) => format!("{}{extra}\n\n{}", &config[..i], &config[i..]),
        None => format!("{config}\n{extra}"),
    }
}

/// Users for tests that check roles.
pub const USERS: &str = r#"
[[users]]
name = "viewer1"
role = "viewer"
token = "viewer-token-0123456789"

[[users]]
name = "nurse1"
role = "nurse"
token = "nurse-token-0123456789"

[[users]]
name = "admin1"
role = "admin"
token = "admin-token-0123456789"
"#;

/// Steady, noise-free patients with distinct values per bed; `extra_a` / `extra_b` are TOML
/// appended to each bed's table (events, a dose).
pub fn scenario(extra_a: &str, extra_b: &str) -> Scenario {
    Scenario::parse(&scenario_text(extra_a, extra_b)).expect("test scenario is valid")
}

/// The text of [`scenario`].
pub fn scenario_text(extra_a: &str, extra_b: &str) -> String {
    format!(
        r#"
name = "test"
acceleration = 1.0
seed = 1

[[beds]]
bed = "room1/A"
baseline = {{ spo2 = 97, pulse_rate = 72, sys = 122, dia = 78, perfusion_index = 3.5 }}
noise = 0.0
{extra_a}

[[beds]]
bed = "room1/B"
baseline = {{ spo2 = 95, pulse_rate = 64, sys = 131, dia = 84, perfusion_index = 2.0 }}
noise = 0.0
{extra_b}
"#
    )
}

/// The simulator and the daemon, both in this process.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub cfg: Arc<Config>,
    pub sim: Option<SimHandle>,
    pub daemon: Option<Running>,
}

impl Rig {
    /// Starts the simulator for `scenario`, then the daemon on an ephemeral port.
    pub async fn start(scenario: Scenario, bp_interval: &str) -> Rig {
        Rig::start_with(scenario, bp_interval, "").await
    }

    /// [`Rig::start`] with extra config (users, alarms, notify targets).
    pub async fn start_with(scenario: Scenario, bp_interval: &str, extra: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let cfg = two_bed_config(dir.path(), bp_interval, extra);
        Rig::start_loaded(dir, cfg, scenario).await
    }

    /// [`Rig::start`] with the config `cfg` built for `dir`.
    pub async fn start_config(dir: tempfile::TempDir, cfg: &TestConfig, scenario: Scenario) -> Rig {
        Rig::start_loaded(dir, cfg.load(), scenario).await
    }

    /// [`Rig::start`] with a config of its own (its ports and data in `dir`).
    pub async fn start_loaded(dir: tempfile::TempDir, cfg: Config, scenario: Scenario) -> Rig {
        let cfg = Arc::new(cfg);
        let sim = sim::start(&cfg, scenario).await.expect("simulator starts");
        let daemon = app::start(cfg.clone(), Options::default())
            .await
            .expect("daemon starts");
        Rig {
            dir,
            cfg,
            sim: Some(sim),
            daemon: Some(daemon),
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.daemon.as_ref().unwrap().addr
    }

    pub async fn client(&self) -> Client {
        Client::connect(&format!("ws://{}/ws", self.addr())).await
    }

    /// A client with a token.
    pub async fn client_as(&self, token: &str) -> Client {
        Client::connect(&format!("ws://{}/ws?token={token}", self.addr())).await
    }

    /// An HTTP request to the daemon: (status, JSON body).
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        http(self.addr(), method, path, token, body).await
    }

    pub async fn stop(mut self) {
        if let Some(d) = self.daemon.take() {
            d.shutdown().await;
        }
        if let Some(s) = self.sim.take() {
            s.shutdown().await;
        }
    }
}

/// A WebSocket client that reads JSON messages. A `readings` message (every measurement of
/// one device read, docs/api.md) comes out of [`Client::next`] as one `reading` value per
/// element, in order, as a dashboard applies them: the element with the message's `v`,
/// `seq` and `"type":"reading"`, plus `"batch"` (how many readings the message held) and
/// `"batch_at"` (this one's index in it).
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub last_seq: u64,
    /// The rest of the latest `readings` message.
    pending: std::collections::VecDeque<Value>,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Client::new(ws)
    }

    /// A client on an open WebSocket.
    pub fn new(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client {
            ws,
            last_seq: 0,
            pending: Default::default(),
        }
    }

    /// The next JSON message, or None at close or after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        if let Some(v) = self.pending.pop_front() {
            return Some(v);
        }
        loop {
            let msg = tokio::time::timeout(within, self.ws.next()).await.ok()??;
            match msg.ok()? {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("server sends JSON");
                    if let Some(s) = v["seq"].as_u64()
                        && v["type"] != "heartbeat"
                    {
                        self.last_seq = self.last_seq.max(s);
                    }
                    if v["type"] == "readings" {
                        let list = v["readings"].as_array().expect("readings carries a list");
                        assert!(!list.is_empty(), "an empty readings message: {v}");
                        for (i, r) in list.iter().enumerate() {
                            let mut r = r.clone();
                            let o = r.as_object_mut().expect("each reading is an object");
                            o.insert("v".into(), v["v"].clone());
                            o.insert("type".into(), "reading".into());
                            o.insert("seq".into(), v["seq"].clone());
                            o.insert("batch".into(), list.len().into());
                            o.insert("batch_at".into(), i.into());
                            self.pending.push_back(r);
                        }
                        return self.pending.pop_front();
                    }
                    return Some(v);
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads until a message satisfies `pred`; panics with `what` after `within`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(v) if pred(&v) => return v,
                Some(_) => continue,
                None => panic!("did not see {what} within {within:?}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.send(Message::Close(None)).await;
    }
}

/// Predicate: a reading of `metric` for `bed`.
pub fn is_reading(v: &Value, bed: &str, metric: &str) -> bool {
    v["type"] == "reading" && v["bed"] == bed && v["metric"] == metric
}

/// A minimal HTTP/1.0 client: (status, JSON body or Null).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let (head, json) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

/// A webhook receiver: records every POST body; `respond: false` accepts connections and
/// never answers (a black hole).
pub struct Webhook {
    pub url: String,
    pub bodies: Arc<std::sync::Mutex<Vec<Value>>>,
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Webhook {
    pub async fn start(respond: bool) -> Webhook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Webhook::serve(listener, respond)
    }

    pub fn serve(listener: tokio::net::TcpListener, respond: bool) -> Webhook {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (b, c) = (bodies.clone(), connections.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if !respond {
                    held.push(sock);
                    continue;
                }
                let b = b.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if body.len() >= len {
                                if let Ok(v) = serde_json::from_str(&body[..len]) {
                                    b.lock().unwrap().push(v);
                                }
                                let _ = sock
                                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                    .await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        Webhook {
            url,
            bodies,
            connections,
        }
    }

    pub fn received(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// A serial device server faked on a real TCP socket: counts the connections it accepts (the
/// count is returned with its port) and hands each to `speak` with its number (0 for the
/// first), in a task of its own; see [`drain_reads`] for a device that talks.
pub fn fake_device_server<F, Fut>(
    listener: tokio::net::TcpListener,
    speak: F,
) -> (u16, Arc<std::sync::atomic::AtomicUsize>)
where
    F: Fn(usize, TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let port = listener.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let a = accepts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let n = a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(speak(n, sock));
        }
    });
    (port, accepts)
}

/// Reads and drops whatever the daemon writes to `sock`, in a task of its own, and returns the
/// side to write the device's data to.
pub fn drain_reads(sock: TcpStream) -> tokio::net::tcp::OwnedWriteHalf {
    use tokio::io::AsyncReadExt;
    let (mut rd, wr) = sock.into_split();
    tokio::spawn(async move {
        let mut sink = [0u8; 256];
        while rd.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    wr
}

/// The path of the built `vitalsd` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vitalsd"))
}

/// Reads a spawned daemon's stdout (piped) until it says where it listens, and keeps draining
/// it afterwards so that the daemon never blocks on a full pipe. Shared by every test that runs
/// the real binary as a child process.
pub fn listening_on(child: &mut std::process::Child) -> std::net::SocketAddr {
    use std::io::BufRead;
    let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout is piped"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the daemon prints where it listens");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest
                .trim_end_matches('/')
                .parse()
                .expect("a socket address after 'listening on http://'");
        }
    };
    std::thread::spawn(move || while rx.recv().is_ok() {});
    addr
}
