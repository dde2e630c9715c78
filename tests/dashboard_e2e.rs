//! "A live dashboard is one that can sound" (issue 9), against the real binary: only a page's
//! own heartbeat saying its audio is armed keeps `no_dashboard` away. A client that merely
//! answers pings, or says its audio is not armed, or sends garbage, does not.

use crate::util::{TestConfig, bin, write_scenario};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// The configured `dashboard_timeout` (the smallest the config accepts).
const TIMEOUT: Duration = Duration::from_secs(5);
/// Generous waits: the machine may be busy.
const SOON: Duration = Duration::from_secs(30);

/// `vitalsd demo` with the two-bed config and a 5 s dashboard timeout; killed on drop.
struct Daemon {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TestConfig::new(dir.path())
            .bp_interval("10m")
            .extra("[alarms]\ndashboard_timeout = \"5s\"\n")
            .write("dash.toml");
        let scen = write_scenario(dir.path(), "scenario.toml", "", "");
        let mut child = Command::new(bin())
            .args(["demo", "--config", cfg.to_str().unwrap()])
            .args(["--scenario", scen.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = crate::util::listening_on(&mut child).to_string();
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

/// A WebSocket client in its own task. It reads everything (so the library answers every
/// ping), counts the pings, hands the JSON messages over, sends `beat` every 2 s while it is
/// set, and sends whatever else it is told to.
struct Page {
    rx: mpsc::UnboundedReceiver<Value>,
    send: mpsc::UnboundedSender<Message>,
    beat: watch::Sender<Option<Value>>,
    pings: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl Page {
    async fn open(addr: &str) -> Page {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("websocket connects");
        let (tx, rx) = mpsc::unbounded_channel();
        let (send, mut outbox) = mpsc::unbounded_channel::<Message>();
        let (beat, mut beat_rx) = watch::channel::<Option<Value>>(None);
        let pings = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (p, c) = (pings.clone(), closed.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            let _ = tx.send(serde_json::from_str(&t).expect("the daemon sends JSON"));
                        }
                        Some(Ok(Message::Ping(_))) => {
                            p.fetch_add(1, Ordering::SeqCst);
                        }
                        Some(Ok(_)) => {}
                        _ => {
                            c.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    },
                    Some(m) = outbox.recv() => {
                        if ws.send(m).await.is_err() {
                            c.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    _ = beat_rx.changed() => {
                        // A new heartbeat goes out at once, like the page's on a change.
                        every.reset_immediately();
                    }
                    _ = every.tick() => {
                        let b = beat_rx.borrow().clone();
                        if let Some(b) = b
                            && ws.send(Message::text(b.to_string())).await.is_err()
                        {
                            c.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            }
        });
        Page {
            rx,
            send,
            beat,
            pings,
            closed,
        }
    }

    /// Reads until a message satisfies `pred` (None after `within`).
    async fn wait_for(
        &mut self,
        within: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(v)) if pred(&v) => return Some(v),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    /// The next `heartbeat` the daemon sends from now on (older queued messages skipped).
    async fn heartbeat(&mut self) -> Value {
        while self.rx.try_recv().is_ok() {}
        self.wait_for(SOON, |m| m["type"] == "heartbeat")
            .await
            .expect("a heartbeat every second")
    }

    fn beat(&self, armed: Option<bool>, visible: bool) {
        let b = armed.map(|a| json!({"type": "heartbeat", "audio_armed": a, "visible": visible}));
        self.beat.send_replace(b);
    }

    fn is_open(&self) -> bool {
        self.closed.load(Ordering::SeqCst) == 0
    }
}

fn no_dashboard(m: &Value, event: &str) -> bool {
    m["type"] == "alarm" && m["event"] == event && m["alarm"]["condition"] == "no_dashboard"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_page_whose_audio_is_armed_keeps_no_dashboard_away() {
    let d = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let started = Instant::now();

    // A client that answers every ping and never says anything: a script, a frozen tab.
    let mut pinger = Page::open(&d.addr).await;
    let raised = pinger
        .wait_for(SOON, |m| no_dashboard(m, "raised"))
        .await
        .expect("no_dashboard is raised although a client answers pings");
    // (The daemon's watchdog clock started a moment before it printed its address.)
    assert!(
        started.elapsed() >= TIMEOUT - Duration::from_millis(500),
        "raised after the 5 s timeout, not before"
    );
    assert_eq!(raised["alarm"]["priority"], "high", "{raised}");
    assert!(
        pinger.pings.load(Ordering::SeqCst) >= 3,
        "the client answered the daemon's pings all along"
    );
    let hb = pinger.heartbeat().await;
    assert_eq!(hb["counted"], false, "{hb}");
    assert_eq!(hb["dashboards"]["live"], 0, "{hb}");
    assert!(hb["dashboards"]["clients"].as_u64() >= Some(1), "{hb}");

    // A page whose audio is not armed, beating every 2 s, plus garbage: nothing clears it.
    let mut unarmed = Page::open(&d.addr).await;
    unarmed.beat(Some(false), true);
    for junk in [
        Message::text("alive?"),
        Message::text(r#"{"type":"heartbeat","audio_armed":"yes","visible":true}"#),
        Message::text(r#"{"type":"heartbeat"}"#),
        Message::text(format!(
            r#"{{"type":"heartbeat","audio_armed":true,"visible":true,"pad":"{}"}}"#,
            "x".repeat(4096)
        )),
        Message::binary(vec![0u8; 64]),
    ] {
        unarmed.send.send(junk).unwrap();
    }
    let cleared = pinger
        .wait_for(TIMEOUT * 2, |m| no_dashboard(m, "cleared"))
        .await;
    assert_eq!(cleared, None, "an unarmed page or garbage cleared it");
    let hb = unarmed.heartbeat().await;
    assert!(
        unarmed.is_open(),
        "bad messages do not close the connection"
    );
    assert_eq!(hb["counted"], false, "{hb}");
    assert_eq!(hb["dashboards"]["live"], 0, "{hb}");
    assert_eq!(hb["dashboards"]["not_armed"], 1, "{hb}");
    let (_, alarms) =
        crate::util::http(d.addr.parse().unwrap(), "GET", "/api/alarms", None, None).await;
    assert!(
        alarms["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["condition"] == "no_dashboard"),
        "{alarms}"
    );

    // A page whose audio is armed, in a background tab (hidden): its heartbeat clears it.
    let mut armed = Page::open(&d.addr).await;
    armed.beat(Some(true), false);
    pinger
        .wait_for(SOON, |m| no_dashboard(m, "cleared"))
        .await
        .expect("an armed page's heartbeat clears no_dashboard");
    let hb = armed
        .wait_for(SOON, |m| m["type"] == "heartbeat" && m["counted"] == true)
        .await
        .expect("the armed page is told it counts");
    assert_eq!(hb["dashboards"]["live"], 1, "{hb}");
    assert_eq!(hb["dashboards"]["hidden"], 1, "{hb}");
    // Clinic IT sees the same count.
    let (_, health) =
        crate::util::http(d.addr.parse().unwrap(), "GET", "/healthz", None, None).await;
    assert_eq!(
        health["dashboards"],
        json!({"live": 1, "hidden": 1, "not_armed": 1, "clients": 3}),
        "{health}"
    );
    // ... and keeps it away for well over the timeout while it beats.
    let again = pinger
        .wait_for(TIMEOUT * 2, |m| no_dashboard(m, "raised"))
        .await;
    assert_eq!(again, None, "raised again while an armed page beats");
    let unarmed_hb = unarmed.heartbeat().await;
    assert_eq!(unarmed_hb["counted"], false, "{unarmed_hb}");

    // The armed page freezes: still connected, still answering pings, no more heartbeats.
    armed.beat(None, false);
    let froze = Instant::now();
    let pings_before = armed.pings.load(Ordering::SeqCst);
    pinger
        .wait_for(SOON, |m| no_dashboard(m, "raised"))
        .await
        .expect("no_dashboard is raised again once the heartbeats stop");
    // It counts for 6 s after its last heartbeat (sent up to 2 s before it froze), then the
    // timeout runs.
    assert!(
        froze.elapsed() >= TIMEOUT + Duration::from_millis(3500),
        "raised {:?} after the heartbeats stopped",
        froze.elapsed()
    );
    assert!(armed.pings.load(Ordering::SeqCst) > pings_before);
    assert!(armed.is_open());
    let hb = armed.heartbeat().await;
    assert_eq!(hb["counted"], false, "{hb}");
}
