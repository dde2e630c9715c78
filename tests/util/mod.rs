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

/// [`two_bed_config_text`], loaded.
pub fn two_bed_config(dir: &Path, bp_interval: &str) -> Config {
    let text = two_bed_config_text(dir, bp_interval, free_port());
    load_config_str(&text, &dir.join("test.toml")).expect("test config is valid")
}

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
        let dir = tempfile::tempdir().unwrap();
        let cfg = Arc::new(two_bed_config(dir.path(), bp_interval));
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

    pub async fn stop(mut self) {
        if let Some(d) = self.daemon.take() {
            d.shutdown().await;
        }
        if let Some(s) = self.sim.take() {
            s.shutdown().await;
        }
    }
}

/// A WebSocket client that reads JSON messages.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub last_seq: u64,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Client { ws, last_seq: 0 }
    }

    /// The next JSON message, or None at close or after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
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

/// The path of the built `vitalsd` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vitalsd"))
}
