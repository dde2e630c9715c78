//! The MQTT bridge against a real Mosquitto broker (Debian's `mosquitto`, which scripts/test
//! installs), started by each test on a free loopback port: birth message, retained config,
//! readings and alarm events on the documented topics (docs/mqtt.md), the Last Will after
//! `kill -9`, and a broker outage that touches neither alarms nor dashboards and loses no
//! alarm event.

use crate::util::{
    Rig, bin, free_port, http, scenario, scenario_text, two_bed_config_text, with_extra,
};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SOON: Duration = Duration::from_secs(20);

/// A Mosquitto broker of the test's own (no system service), with its persistence file in
/// `dir` so that a restart keeps retained messages and persistent sessions.
pub struct Broker {
    child: Child,
    pub port: u16,
    conf: PathBuf,
}

impl Broker {
    pub fn start(dir: &Path, port: u16) -> Broker {
        Broker::start_with(dir, port, "")
    }

    /// Without persistence (Mosquitto's default): a restart loses every session and
    /// retained message, as a broker that crashed or a fresh cluster node.
    pub fn start_volatile(dir: &Path, port: u16) -> Broker {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        Broker {
            child: Broker::spawn(&conf, port),
            port,
            conf,
        }
    }

    /// With `extra` lines for the listener (TLS: cafile, certfile, keyfile, ...).
    pub fn start_with(dir: &Path, port: u16, extra: &str) -> Broker {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n{extra}\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nautosave_interval 1\n",
                dir.display()
            ),
        )
        .unwrap();
        Broker {
            child: Broker::spawn(&conf, port),
            port,
            conf,
        }
    }

    fn spawn(conf: &Path, port: u16) -> Child {
        // Debian installs it in /usr/sbin, which a user's PATH may lack.
        let exe = if Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let child = Command::new(exe)
            .args(["-c", conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto runs (scripts/test installs Debian's mosquitto)");
        let deadline = std::time::Instant::now() + SOON;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto listens on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGTERM: it saves its persistence file, as a broker stopped for maintenance).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// The same broker again, on the same port.
    pub fn restart(&mut self) {
        self.child = Broker::spawn(&self.conf, self.port);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A subscriber to `vitalsd/v1/{site}/#`: (topic, payload, retained) per message.
pub struct Sub {
    _client: AsyncClient,
    rx: tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
    task: tokio::task::JoinHandle<()>,
}

impl Sub {
    /// `persistent`: a session the broker keeps (QoS 1 messages queued while we are away).
    pub async fn connect(port: u16, id: &str, site: &str, persistent: bool) -> Sub {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_clean_session(!persistent);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut el) = AsyncClient::new(o, 100);
        client
            .subscribe(format!("vitalsd/v1/{site}/#"), QoS::AtLeastOnce)
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // Subscribed (SUBACK) before the caller goes on, so nothing it causes next is missed;
        // what comes before the SUBACK (retained messages) is kept.
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            match tokio::time::timeout_at(deadline, el.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec(), p.retain));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("subscribing to the test broker: {e}"),
                Err(_) => panic!("no SUBACK from the test broker within {SOON:?}"),
            }
        }
        let task = tokio::spawn(pump(el, tx));
        Sub {
            _client: client,
            rx,
            task,
        }
    }

    /// Waits for a message on `topic` whose payload satisfies `pred`.
    pub async fn wait(
        &mut self,
        what: &str,
        topic: &str,
        pred: impl Fn(&[u8], bool) -> bool,
    ) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some((t, p, retain))) if t == topic && pred(&p, retain) => return p,
                Ok(Some(_)) => continue,
                _ => panic!("no {what} on {topic} within {SOON:?}"),
            }
        }
    }

    /// Every message until one on `topic` satisfies `pred` (included).
    async fn until(
        &mut self,
        what: &str,
        topic: &str,
        pred: impl Fn(&[u8]) -> bool,
    ) -> Vec<(String, Vec<u8>, bool)> {
        let deadline = tokio::time::Instant::now() + SOON;
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => {
                    let done = m.0 == topic && pred(&m.1);
                    out.push(m);
                    if done {
                        return out;
                    }
                }
                _ => panic!("no {what} on {topic} within {SOON:?}"),
            }
        }
    }

    /// Every message received within `d`.
    async fn drain(&mut self, d: Duration) -> Vec<(String, Vec<u8>, bool)> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            out.push(m);
        }
        out
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(mut el: EventLoop, tx: tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>, bool)>) {
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = tx.send((p.topic.clone(), p.payload.to_vec(), p.retain));
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn json(p: &[u8]) -> Value {
    serde_json::from_slice(p).unwrap_or(Value::Null)
}

/// The real binary, `vitalsd demo --mqtt URL --site NAME`; returns it and where it listens.
fn demo(dir: &Path, broker: &str, site: &str, events_a: &str) -> (Child, SocketAddr) {
    let config = dir.join("site.toml");
    let text = two_bed_config_text(dir, "5m", free_port());
    std::fs::write(
        &config,
        with_extra(
            &text,
            "[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\nsite = \"unused\"\nkeepalive = \"5s\"",
        ),
    )
    .unwrap();
    let scen = dir.join("scenario.toml");
    std::fs::write(&scen, scenario_text(events_a, "")).unwrap();
    let mut child = Command::new(bin())
        .args(["demo", "--config", config.to_str().unwrap()])
        .args(["--scenario", scen.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--mqtt", broker, "--site", site])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = crate::util::listening_on(&mut child);
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_publishes_birth_config_readings_and_alarms_and_its_last_will_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), free_port());
    let mut sub = Sub::connect(broker.port, "test-watcher", "north", false).await;
    let (mut daemon, _addr) = demo(
        dir.path(),
        &broker.url(),
        "north",
        r#"events = [{ at = "2s", for = "1h", kind = "desaturation", spo2 = 80, ramp = "1s" }]"#,
    );
    sub.wait("birth message", "vitalsd/v1/north/status", |p, _| {
        p == b"online"
    })
    .await;
    let config = json(
        &sub.wait("site config", "vitalsd/v1/north/config", |_, _| true)
            .await,
    );
    let beds: Vec<&str> = config["rooms"][0]["beds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert_eq!(beds, ["room1/A", "room1/B"], "{config}");
    sub.wait(
        "device status",
        "vitalsd/v1/north/bed/room1/A/device/room1-A-oximeter/status",
        |p, _| json(p)["status"] == "connected",
    )
    .await;
    let r = json(
        &sub.wait(
            "a reading",
            "vitalsd/v1/north/bed/room1/B/reading/spo2",
            |_, _| true,
        )
        .await,
    );
    assert_eq!(r["type"], "reading");
    assert_eq!(r["value"], 95.0, "{r}");
    let raised = json(
        &sub.wait("spo2_low raised", "vitalsd/v1/north/alarm", |p, _| {
            let m = json(p);
            m["event"] == "raised" && m["alarm"]["condition"] == "spo2_low"
        })
        .await,
    );
    assert_eq!(raised["bed"], "room1/A");
    assert!(raised["alarm"]["id"].as_u64().is_some(), "{raised}");
    assert!(raised["event_id"].as_i64().is_some(), "{raised}");
    assert_eq!(raised["replay"], false);
    let list = json(
        &sub.wait(
            "the bed's alarm list",
            "vitalsd/v1/north/bed/room1/A/alarms",
            |p, _| !json(p)["alarms"].as_array().is_none_or(Vec::is_empty),
        )
        .await,
    );
    assert_eq!(list["alarms"][0]["condition"], "spo2_low", "{list}");

    // What a late subscriber gets: the retained state.
    let mut late = Sub::connect(broker.port, "test-late", "north", false).await;
    late.wait(
        "retained online",
        "vitalsd/v1/north/status",
        |p, retained| p == b"online" && retained,
    )
    .await;
    late.wait(
        "retained config",
        "vitalsd/v1/north/config",
        |_, retained| retained,
    )
    .await;
    late.wait(
        "retained latest spo2",
        "vitalsd/v1/north/bed/room1/A/reading/spo2",
        |_, retained| retained,
    )
    .await;

    daemon.kill().unwrap(); // SIGKILL: no goodbye, the broker's Last Will speaks for it
    daemon.wait().unwrap();
    sub.wait("the Last Will", "vitalsd/v1/north/status", |p, _| {
        p == b"offline"
    })
    .await;
    let mut after = Sub::connect(broker.port, "test-after", "north", false).await;
    after
        .wait(
            "retained offline",
            "vitalsd/v1/north/status",
            |p, retained| p == b"offline" && retained,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_leaves_alarms_and_dashboards_alone_raises_mqtt_down_and_loses_no_alarm_event()
 {
    let bdir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(bdir.path(), free_port());
    // A persistent session: what the site publishes while the watcher reconnects is kept.
    let mut sub = Sub::connect(broker.port, "test-central", "east", true).await;
    let extra = format!(
        "[mqtt]\nurl = \"{}\"\nsite = \"east\"\nkeepalive = \"5s\"\ndown_after = \"5s\"",
        broker.url()
    );
    let rig = Rig::start_with(
        scenario(
            r#"events = [{ at = "1s", for = "1h", kind = "desaturation", spo2 = 80, ramp = "1s" }]"#,
            r#"events = [{ at = "12s", for = "1h", kind = "finger_out" }]"#,
        ),
        "5m",
        &extra,
    )
    .await;
    let mut ws = rig.client().await;
    let raised = json(
        &sub.wait("spo2_low raised", "vitalsd/v1/east/alarm", |p, _| {
            json(p)["event"] == "raised" && json(p)["alarm"]["condition"] == "spo2_low"
        })
        .await,
    );
    let alarm_id = raised["alarm"]["id"].as_u64().unwrap();
    let mut seen: Vec<i64> = vec![raised["event_id"].as_i64().unwrap()];
    // Let the broker's acknowledgement reach the cursor.
    tokio::time::sleep(Duration::from_secs(1)).await;
    seen.extend(
        sub.drain(Duration::from_millis(200))
            .await
            .iter()
            .filter(|(t, _, _)| t == "vitalsd/v1/east/alarm")
            .filter_map(|(_, p, _)| json(p)["event_id"].as_i64()),
    );

    broker.stop();
    drop(sub);
    // Meanwhile, the site goes on: an acknowledgement, an alarm raised, and mqtt_down, all on
    // the dashboard's WebSocket as usual.
    let (status, body) = http(
        rig.addr(),
        "POST",
        &format!("/api/alarms/{alarm_id}/ack"),
        None,
        Some("{}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    ws.wait_for("the acknowledgement", SOON, |m| {
        m["type"] == "alarm" && m["event"] == "acknowledged"
    })
    .await;
    ws.wait_for("mqtt_down raised", SOON, |m| {
        m["type"] == "alarm" && m["event"] == "raised" && m["alarm"]["condition"] == "mqtt_down"
    })
    .await;
    let finger = ws
        .wait_for("bed B's finger out", SOON, |m| {
            m["type"] == "alarm" && m["event"] == "raised" && m["bed"] == "room1/B"
        })
        .await;
    assert!(
        finger["alarm"]["priority"].is_string(),
        "an alarm as usual during the outage: {finger}"
    );
    let (_, alarms) = http(rig.addr(), "GET", "/api/alarms", None, None).await;
    let mqtt_down = alarms["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["condition"] == "mqtt_down")
        .cloned()
        .unwrap_or_else(|| panic!("mqtt_down is a current alarm: {alarms}"));
    assert_eq!(mqtt_down["priority"], "medium");
    assert_eq!(mqtt_down["bed"], Value::Null);

    broker.restart();
    let mut sub = Sub::connect(broker.port, "test-central", "east", true).await;
    ws.wait_for("mqtt_down cleared", SOON, |m| {
        m["type"] == "alarm" && m["event"] == "cleared" && m["alarm"]["condition"] == "mqtt_down"
    })
    .await;
    // The events of the outage, replayed from the store in order, then mqtt_down's clearing.
    let got = sub
        .until("mqtt_down cleared", "vitalsd/v1/east/alarm", |p| {
            json(p)["event"] == "cleared" && json(p)["alarm"]["condition"] == "mqtt_down"
        })
        .await;
    let events: Vec<Value> = got
        .iter()
        .filter(|(t, _, _)| t == "vitalsd/v1/east/alarm")
        .map(|(_, p, _)| json(p))
        .collect();
    let ids: Vec<i64> = events
        .iter()
        .filter_map(|e| e["event_id"].as_i64())
        .collect();
    assert_eq!(
        ids.len(),
        events.len(),
        "every event has its event_id: {events:?}"
    );
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in order, once each: {ids:?}"
    );
    assert!(
        ids.iter().all(|i| !seen.contains(i)),
        "nothing sent before the outage is sent again: {ids:?} after {seen:?}"
    );
    let replayed = |pred: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .filter(|e| pred(e))
            .map(|e| e["replay"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        replayed(&|e| e["event"] == "acknowledged" && e["alarm"]["id"] == alarm_id),
        [Value::Bool(true)],
        "the acknowledgement made during the outage, once: {events:?}"
    );
    assert_eq!(
        replayed(&|e| e["event"] == "raised" && e["alarm"]["condition"] == "mqtt_down"),
        [Value::Bool(true)],
        "mqtt_down's raising, once: {events:?}"
    );
    assert_eq!(
        replayed(&|e| e["event"] == "raised" && e["bed"] == "room1/B"),
        [Value::Bool(true)],
        "bed B's alarm raised during the outage, once: {events:?}"
    );
    ws.close().await;
    // An orderly stop says goodbye itself.
    rig.stop().await;
    sub.wait(
        "offline at an orderly stop",
        "vitalsd/v1/east/status",
        |p, _| p == b"offline",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_daemon_killed_during_an_outage_did_is_sent_after_its_restart_once() {
    let dir = tempfile::tempdir().unwrap();
    let bdir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(bdir.path(), free_port());
    let mut sub = Sub::connect(broker.port, "test-central", "west", true).await;
    let desat =
        r#"events = [{ at = "1s", for = "1h", kind = "desaturation", spo2 = 80, ramp = "1s" }]"#;
    let (mut daemon, addr) = demo(dir.path(), &broker.url(), "west", desat);
    let raised = json(
        &sub.wait("spo2_low raised", "vitalsd/v1/west/alarm", |p, _| {
            json(p)["event"] == "raised" && json(p)["alarm"]["condition"] == "spo2_low"
        })
        .await,
    );
    let first_id = raised["event_id"].as_i64().unwrap();
    let alarm_id = raised["alarm"]["id"].as_u64().unwrap();
    // The broker's acknowledgement reaches data_dir/mqtt_cursor.
    let cursor = dir.path().join("data").join("mqtt_cursor");
    let deadline = std::time::Instant::now() + SOON;
    while std::fs::read_to_string(&cursor)
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok())
        .is_none_or(|c| c < first_id)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the cursor reaches {first_id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broker.stop();
    drop(sub);
    let (status, body) = http(
        addr,
        "POST",
        &format!("/api/alarms/{alarm_id}/ack"),
        None,
        Some("{}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    daemon.kill().unwrap(); // SIGKILL, the broker still down
    daemon.wait().unwrap();

    broker.restart();
    let mut sub = Sub::connect(broker.port, "test-central", "west", true).await;
    let (mut again, _) = demo(dir.path(), &broker.url(), "west", desat);
    let got = sub
        .until("the acknowledgement", "vitalsd/v1/west/alarm", |p| {
            json(p)["event"] == "acknowledged" && json(p)["alarm"]["id"] == alarm_id
        })
        .await;
    let ack = json(&got.last().unwrap().1);
    assert_eq!(ack["replay"], true, "{ack}");
    let ids: Vec<i64> = got
        .iter()
        .filter(|(t, _, _)| t == "vitalsd/v1/west/alarm")
        .filter_map(|(_, p, _)| json(p)["event_id"].as_i64())
        .collect();
    assert!(
        ids.iter().all(|i| *i > first_id),
        "what the broker had acknowledged is not sent again: {ids:?}"
    );
    let more = sub.drain(Duration::from_secs(2)).await;
    assert!(
        !more.iter().any(|(t, p, _)| t == "vitalsd/v1/west/alarm"
            && json(p)["event_id"] == ack["event_id"]),
        "the acknowledgement is sent once"
    );
    let _ = again.kill();
    let _ = again.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_device_read_is_one_readings_batch_and_the_retained_latest_follows_at_most_every_5_s()
{
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), free_port());
    let mut sub = Sub::connect(broker.port, "test-batches", "north", false).await;
    let (mut daemon, _addr) = demo(dir.path(), &broker.url(), "north", "");
    let batches_topic = "vitalsd/v1/north/bed/room1/A/readings";
    let retained_topic = "vitalsd/v1/north/bed/room1/A/reading/spo2";
    // Eleven reads of bed A's Masimo (one line a second), and what else came meanwhile.
    let mut batches: Vec<Value> = Vec::new();
    let mut retained_spo2 = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while batches.len() < 11 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(Some((topic, payload, _))) = tokio::time::timeout(left, sub.rx.recv()).await else {
            panic!(
                "11 readings batches of bed A within 40 s; got {}",
                batches.len()
            );
        };
        let m = json(&payload);
        if topic == batches_topic && m["device"] == "room1-A-oximeter" {
            batches.push(m);
        } else if topic == retained_topic {
            retained_spo2 += 1;
        }
    }
    for b in &batches {
        // The WebSocket `readings` message as sent: one device read, every metric of the line.
        assert_eq!(
            (b["v"].as_u64(), b["type"].as_str()),
            (Some(2), Some("readings")),
            "{b}"
        );
        assert_eq!(b["bed"], "room1/A", "{b}");
        let list = b["readings"].as_array().unwrap();
        let metrics: Vec<&str> = list.iter().filter_map(|r| r["metric"].as_str()).collect();
        assert_eq!(metrics, ["spo2", "pulse_rate", "perfusion_index"], "{b}");
        assert!(
            list.iter().all(|r| r["device"] == "room1-A-oximeter"),
            "{b}"
        );
        let seqs: Vec<u64> = list.iter().filter_map(|r| r["bed_seq"].as_u64()).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "one read's readings are consecutive: {b}"
        );
        assert_eq!(list[0]["value"], 97.0, "{b}");
    }
    assert!(
        batches
            .windows(2)
            .all(|w| w[1]["seq"].as_u64() > w[0]["seq"].as_u64()),
        "in order"
    );
    // Ten seconds of reads: the retained spo2 went out at the first and then at most every 5 s
    // (a snapshot's at the connection may come on top).
    assert!(
        (1..=4).contains(&retained_spo2),
        "retained spo2 published {retained_spo2} times for 11 reads"
    );

    // A late joiner's retained spo2 is at most 5 s (and a poll) behind the live stream.
    let newest = batches
        .last()
        .and_then(|b| b["readings"][0]["received_ms"].as_i64())
        .unwrap();
    let mut late = Sub::connect(broker.port, "test-late-batches", "north", false).await;
    let r = json(
        &late
            .wait("retained spo2", retained_topic, |_, retained| retained)
            .await,
    );
    assert_eq!(
        (r["v"].as_u64(), r["type"].as_str()),
        (Some(1), Some("reading")),
        "{r}"
    );
    let behind = newest - r["received_ms"].as_i64().unwrap();
    assert!(
        behind <= 6_500,
        "the retained value is {behind} ms behind the newest read: {r}"
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}
