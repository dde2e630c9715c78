//! The central view end to end: simulated sites (the real binary, `vitalsd demo` with an
//! `[mqtt]` table) -> a real Mosquitto of the test's own -> `vitalsd central` -> a WebSocket
//! client and the HTTP API, as a user at central sees them (docs/mqtt.md, "Central view").

use crate::mqtt::Broker;
use crate::util::{Client, bin, free_port, http, scenario_text, two_bed_config_text, with_extra};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SOON: Duration = Duration::from_secs(30);
const NORTH_SECRET: &str = "north-command-secret-0123456789abcdef";
const NURSE: &str = "nurse-token-0123456789";
const DESAT: &str =
    r#"events = [{ at = "2s", for = "1h", kind = "desaturation", spo2 = 80, ramp = "1s" }]"#;

/// A process killed when the test ends, whatever happens.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One site of a [`Fixture`]: its `[mqtt] site`, its command secret (also the central's
/// `[[sites]] command_secret`), and bed A's and bed B's scenario events.
#[derive(Clone, Copy)]
struct Site<'a> {
    name: &'a str,
    secret: Option<&'a str>,
    a: &'a str,
    b: &'a str,
}

fn site<'a>(name: &'a str, a: &'a str, b: &'a str) -> Site<'a> {
    Site {
        name,
        secret: None,
        a,
        b,
    }
}

/// A running site: the process, where its API listens, its directory (data, config).
struct Running {
    proc: Proc,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// Everything of one central test: a broker of its own, the simulated sites (the real binary,
/// `vitalsd demo --config` with `[mqtt]`, keepalive 5 s), `vitalsd central` for all of them
/// (users of tests/util), and a dashboard's WebSocket on it.
struct Fixture {
    broker: Broker,
    sites: Vec<Running>,
    addr: SocketAddr,
    ws: Client,
    _central: Proc,
    _dirs: [tempfile::TempDir; 2],
}

impl Fixture {
    /// On a broker of the fixture's own (with persistence).
    async fn start(sites: &[Site<'_>]) -> Fixture {
        let bdir = tempfile::tempdir().unwrap();
        let broker = Broker::start(bdir.path(), free_port());
        let url = broker.url();
        Fixture::on(bdir, broker, &url, &url, "", sites).await
    }

    /// On `broker` (its directory `bdir`): the sites reach it at `site_url`, the central at
    /// `central_url`; `mqtt_extra` goes in every `[mqtt]` (TLS keys).
    async fn on(
        bdir: tempfile::TempDir,
        broker: Broker,
        site_url: &str,
        central_url: &str,
        mqtt_extra: &str,
        sites: &[Site<'_>],
    ) -> Fixture {
        let running = sites
            .iter()
            .map(|s| {
                let dir = tempfile::tempdir().unwrap();
                let secret = s
                    .secret
                    .map(|x| format!("command_secret = \"{x}\"\n"))
                    .unwrap_or_default();
                let (proc, addr) = start_site(
                    dir.path(),
                    site_url,
                    s.name,
                    &format!("{secret}{mqtt_extra}"),
                    s.a,
                    s.b,
                );
                Running { proc, addr, dir }
            })
            .collect();
        let cdir = tempfile::tempdir().unwrap();
        let list: Vec<(&str, Option<&str>)> = sites.iter().map(|s| (s.name, s.secret)).collect();
        let (central, addr) = start_central(cdir.path(), central_url, mqtt_extra, &list);
        let ws = Client::connect(&format!("ws://{addr}/ws?token=viewer-token-0123456789")).await;
        Fixture {
            broker,
            sites: running,
            addr,
            ws,
            _central: central,
            _dirs: [bdir, cdir],
        }
    }
}

/// A simulated site with `mqtt_extra` in its `[mqtt]`. Returns it and where it listens.
fn start_site(
    dir: &Path,
    broker: &str,
    name: &str,
    mqtt_extra: &str,
    events_a: &str,
    events_b: &str,
) -> (Proc, SocketAddr) {
    let config = dir.join("site.toml");
    let text = two_bed_config_text(dir, "5m", free_port());
    std::fs::write(
        &config,
        with_extra(
            &text,
            &format!(
                "[mqtt]\nurl = \"{broker}\"\nsite = \"{name}\"\nkeepalive = \"5s\"\ndown_after = \"5s\"\n{mqtt_extra}"
            ),
        ),
    )
    .unwrap();
    let scen = dir.join("scenario.toml");
    std::fs::write(&scen, scenario_text(events_a, events_b)).unwrap();
    let mut child = Command::new(bin())
        .args(["demo", "--config", config.to_str().unwrap()])
        .args(["--scenario", scen.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = crate::util::listening_on(&mut child);
    (Proc(child), addr)
}

/// `vitalsd central` for `sites` ((name, command secret)) with `mqtt_extra` in its `[mqtt]`.
fn start_central(
    dir: &Path,
    broker: &str,
    mqtt_extra: &str,
    sites: &[(&str, Option<&str>)],
) -> (Proc, SocketAddr) {
    let mut text = format!(
        "listen = \"127.0.0.1:0\"\n[mqtt]\nurl = \"{broker}\"\nclient_id = \"central-test\"\nkeepalive = \"5s\"\n{mqtt_extra}\n{}\n",
        crate::util::USERS
    );
    for (name, secret) in sites {
        text.push_str(&format!("[[sites]]\nname = \"{name}\"\n"));
        if let Some(s) = secret {
            text.push_str(&format!("command_secret = \"{s}\"\n"));
        }
    }
    let config = dir.join("central.toml");
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(bin())
        .args(["central", "--config", config.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = crate::util::listening_on(&mut child);
    (Proc(child), addr)
}

/// A GET of the central's API with the viewer's token.
async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    http(addr, "GET", path, Some("viewer-token-0123456789"), None).await
}

/// The bed ids of a snapshot.
fn beds(snap: &Value) -> Vec<String> {
    snap["rooms"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["beds"].as_array().into_iter().flatten())
        .filter_map(|b| b["id"].as_str().map(str::to_owned))
        .collect()
}

fn bed<'a>(snap: &'a Value, id: &str) -> &'a Value {
    snap["rooms"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["beds"].as_array().into_iter().flatten())
        .find(|b| b["id"] == id)
        .unwrap_or(&Value::Null)
}

fn raised(m: &Value, bed: &str, condition: &str) -> bool {
    m["type"] == "alarm"
        && m["event"] == "raised"
        && m["bed"] == bed
        && m["alarm"]["condition"] == condition
}

/// Publishes one raw payload to a topic (a forger, a replayer).
async fn publish_raw(port: u16, topic: &str, payload: Vec<u8>) {
    let mut o = MqttOptions::new(format!("test-pub-{}", free_port()), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = AsyncClient::new(o, 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        match tokio::time::timeout_at(deadline, el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("publishing to the test broker: {e}"),
            Err(_) => panic!("no PUBACK for {topic} within {SOON:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sites_show_at_central_grouped_by_site_and_a_site_alarm_reaches_its_dashboard() {
    let mut f = Fixture::start(&[site("north", DESAT, ""), site("south", "", "")]).await;
    let (addr, ws) = (f.addr, &mut f.ws);
    let snap = ws
        .wait_for("a snapshot with both sites' beds", SOON, |m| {
            m["type"] == "snapshot" && beds(m).len() == 4
        })
        .await;
    assert_eq!(
        beds(&snap),
        [
            "north/room1/A",
            "north/room1/B",
            "south/room1/A",
            "south/room1/B"
        ]
    );
    let rooms: Vec<&str> = snap["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(
        rooms,
        ["north · Room 1", "south · Room 1"],
        "grouped by site"
    );
    let r = ws
        .wait_for("a reading of south's bed B", SOON, |m| {
            crate::util::is_reading(m, "south/room1/B", "spo2")
        })
        .await;
    assert_eq!(r["value"], 95.0, "{r}");
    assert_eq!(r["site"], "south");
    // Each site's device read comes as one version-2 `readings` message: a Masimo line is
    // SpO2, pulse rate and PI together (the test client hands them out one by one, with the
    // message's `v` and size).
    for site in ["north", "south"] {
        let bed = format!("{site}/room1/A");
        let r = ws
            .wait_for(&format!("a read of {bed}'s Masimo"), SOON, |m| {
                crate::util::is_reading(m, &bed, "spo2")
            })
            .await;
        assert_eq!(
            (r["v"].as_u64(), r["batch"].as_u64()),
            (Some(2), Some(3)),
            "{r}"
        );
        assert_eq!(r["site"], site, "{r}");
        for metric in ["pulse_rate", "perfusion_index"] {
            let next = ws.next(SOON).await.unwrap();
            assert!(crate::util::is_reading(&next, &bed, metric), "{next}");
            assert_eq!(next["seq"], r["seq"], "the same message: {next}");
        }
    }
    let alarm = ws
        .wait_for("north's spo2_low", SOON, |m| {
            raised(m, "north/room1/A", "spo2_low")
        })
        .await;
    assert_eq!(
        alarm["alarm"]["priority"], "high",
        "as the site decided: {alarm}"
    );
    assert_eq!(alarm["site"], "north");
    // The read API: the same rooms and the alarm, with the central's token.
    let (status, rooms) = get(addr, "/api/rooms").await;
    assert_eq!(status, 200, "{rooms}");
    assert_eq!(beds(&rooms).len(), 4, "{rooms}");
    let (status, _) = http(addr, "GET", "/api/rooms", None, None).await;
    assert_eq!(status, 401, "the central asks for a token");
    let (_, alarms) = get(addr, "/api/alarms").await;
    assert!(
        alarms["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["bed"] == "north/room1/A" && a["condition"] == "spo2_low"),
        "{alarms}"
    );

    // What came before a dashboard opened at central: its trends and alarm log fill from the
    // central's history, in the site API's shapes.
    let history = |path: String| async move {
        let (status, v) = get(addr, &path).await;
        assert_eq!(status, 200, "{path}: {v}");
        v
    };
    let north_a = history("/api/beds/north%2Froom1/A/history?metric=spo2&points=2000".into()).await;
    assert_eq!(
        (north_a["bed"].as_str(), north_a["unit"].as_str()),
        (Some("north/room1/A"), Some("%"))
    );
    let values: Vec<f64> = north_a["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["avg"].as_f64())
        .collect();
    assert!(
        values.len() > 1 && values.iter().any(|v| *v < 90.0),
        "north A's SpO2 into its desaturation: {north_a}"
    );
    let south_b = history("/api/beds/south%2Froom1/B/history?metric=spo2".into()).await;
    let p = &south_b["points"][0];
    assert_eq!(
        (p["avg"].as_f64(), p["n"].as_u64(), p["invalid"].as_u64()),
        (Some(95.0), Some(1), Some(0)),
        "{south_b}"
    );
    // Asked for fewer points than readings: min/max/mean buckets, as at a site.
    let bucketed = history("/api/beds/north%2Froom1/A/history?metric=spo2&points=1".into()).await;
    let b = &bucketed["points"][0];
    let (min, avg, max) = (b["min"].as_f64(), b["avg"].as_f64(), b["max"].as_f64());
    assert!(
        b["n"].as_u64() > Some(1) && min < Some(90.0) && min <= avg && avg <= max,
        "{bucketed}"
    );
    let log = history("/api/alarms/history?limit=50".into()).await;
    assert!(
        log["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "raised"
                && e["alarm"]["id"] == alarm["alarm"]["id"]
                && e["bed"] == "north/room1/A"),
        "north's spo2_low in the central's alarm log, with its central id: {log}"
    );
    let (status, _) = get(addr, "/api/beds/east%2Froom1/A/history?metric=spo2").await;
    assert_eq!(status, 404, "no site east");
    f.ws.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_at_central_is_applied_and_audited_by_the_site_and_forged_or_replayed_commands_are_refused()
 {
    let north = Site {
        secret: Some(NORTH_SECRET),
        ..site("north", DESAT, "")
    };
    let mut f = Fixture::start(&[north]).await;
    let (addr, site_addr, broker, ws) = (f.addr, f.sites[0].addr, &f.broker, &mut f.ws);
    let alarm = ws
        .wait_for("north's spo2_low", SOON, |m| {
            raised(m, "north/room1/A", "spo2_low")
        })
        .await;
    let central_id = alarm["alarm"]["id"].as_u64().unwrap();
    let (_, site_alarms) = http(site_addr, "GET", "/api/alarms", None, None).await;
    let site_id = site_alarms["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["condition"] == "spo2_low")
        .and_then(|a| a["id"].as_u64())
        .unwrap_or_else(|| panic!("the site has spo2_low: {site_alarms}"));

    // A forger without the secret: refused, logged, published as command_refused.
    let forged = vitalsd::mqtt::command::sign(
        "not-the-north-secret-0123456789abcdef",
        &vitalsd::mqtt::command::Body {
            action: vitalsd::mqtt::command::Action::Acknowledge { alarm: site_id },
            site: "north".into(),
            actor: "mallory".into(),
            at_ms: vitalsd::clock::wall_ms(),
            nonce: "forged-1".into(),
        },
    );
    publish_raw(broker.port, "vitalsd/v1/north/command", forged).await;
    let refused = ws
        .wait_for("the site's command_refused", SOON, |m| {
            m["type"] == "command_refused"
        })
        .await;
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("bad signature"),
        "{refused}"
    );
    assert_eq!(refused["site"], "north");
    let (_, site_alarms) = http(site_addr, "GET", "/api/alarms", None, None).await;
    let state = site_alarms["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == site_id)
        .map(|a| a["state"].clone());
    assert_eq!(
        state,
        Some(Value::from("active")),
        "not acknowledged by a forgery"
    );

    // A viewer may not acknowledge; a nurse may: the command goes to the site.
    let (status, _) = http(
        addr,
        "POST",
        &format!("/api/alarms/{central_id}/ack"),
        Some("viewer-token-0123456789"),
        Some("{}"),
    )
    .await;
    assert_eq!(status, 403);
    let mut watch = crate::mqtt::Sub::connect(broker.port, "test-watch", "north", false).await;
    let (status, body) = http(
        addr,
        "POST",
        &format!("/api/alarms/{central_id}/ack"),
        Some(NURSE),
        Some("{}"),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let sent = watch
        .wait("the signed command", "vitalsd/v1/north/command", |_, _| {
            true
        })
        .await;
    // Acknowledged only when the site says so, with the central user as the actor.
    let acked = ws
        .wait_for("the site's acknowledgement", SOON, |m| {
            m["type"] == "alarm" && m["event"] == "acknowledged" && m["alarm"]["id"] == central_id
        })
        .await;
    assert_eq!(acked["actor"], "central/nurse1", "{acked}");
    assert_eq!(acked["alarm"]["state"], "acknowledged");
    let (_, history) = http(
        site_addr,
        "GET",
        "/api/alarms/history?bed=room1/A",
        None,
        None,
    )
    .await;
    assert!(
        history["events"].as_array().unwrap().iter().any(|e| {
            e["event"] == "acknowledged"
                && e["alarm"]["id"] == site_id
                && e["actor"] == "central/nurse1"
        }),
        "the site's audit trail names the central user: {history}"
    );

    // The same command again (captured off the broker): a replay, refused.
    publish_raw(broker.port, "vitalsd/v1/north/command", sent).await;
    let refused = ws
        .wait_for("the replay refused", SOON, |m| {
            m["type"] == "command_refused"
        })
        .await;
    assert!(
        refused["reason"].as_str().unwrap().contains("already used"),
        "{refused}"
    );
    f.ws.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_killed_with_kill_9_shows_not_monitoring_at_central_within_keepalive_x_1_5() {
    let mut f = Fixture::start(&[site("north", "", ""), site("south", "", "")]).await;
    let (addr, north, ws) = (f.addr, &mut f.sites[0].proc, &mut f.ws);
    ws.wait_for("both sites, monitoring", SOON, |m| {
        m["type"] == "snapshot"
            && beds(m).len() == 4
            && bed(m, "north/room1/A")["not_monitoring"].is_null()
    })
    .await;
    ws.wait_for("a live reading of north", SOON, |m| {
        crate::util::is_reading(m, "north/room1/A", "spo2")
    })
    .await;
    north.0.kill().unwrap(); // SIGKILL
    north.0.wait().unwrap();
    // keepalive 5 s x 1.5.
    let within = Duration::from_millis(7500);
    let offline = ws
        .wait_for("site_offline for north", within, |m| {
            m["type"] == "alarm"
                && m["event"] == "raised"
                && m["alarm"]["condition"] == "site_offline"
        })
        .await;
    assert_eq!(offline["site"], "north", "{offline}");
    let snap = ws
        .wait_for("north's beds not monitoring", within, |m| {
            m["type"] == "snapshot" && !bed(m, "north/room1/B")["not_monitoring"].is_null()
        })
        .await;
    for b in ["north/room1/A", "north/room1/B"] {
        let bed = bed(&snap, b);
        assert!(
            bed["not_monitoring"]
                .as_str()
                .unwrap()
                .contains("NOT MONITORING"),
            "{bed}"
        );
        assert!(
            bed["devices"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["status"] == "disconnected"),
            "{bed}"
        );
    }
    assert!(
        bed(&snap, "south/room1/A")["not_monitoring"].is_null(),
        "south goes on"
    );
    let (_, sites) = get(addr, "/api/sites").await;
    assert_eq!(sites["sites"][0]["online"], false, "{sites}");
    assert_eq!(sites["sites"][1]["online"], true, "{sites}");
    f.ws.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_for_20_s_loses_no_alarm_event_at_central_and_the_view_resynchronises() {
    let mut f = Fixture::start(&[site(
        "north",
        DESAT,
        r#"events = [{ at = "12s", for = "1h", kind = "finger_out" }]"#,
    )])
    .await;
    let (addr, site_addr, broker, ws) = (f.addr, f.sites[0].addr, &mut f.broker, &mut f.ws);
    let alarm = ws
        .wait_for("north's spo2_low", SOON, |m| {
            raised(m, "north/room1/A", "spo2_low")
        })
        .await;
    let central_id = alarm["alarm"]["id"].clone();
    let (_, site_alarms) = http(site_addr, "GET", "/api/alarms", None, None).await;
    let site_id = site_alarms["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["condition"] == "spo2_low")
        .and_then(|a| a["id"].as_u64())
        .unwrap();

    broker.stop();
    // While the broker is away the site goes on: an acknowledgement there, and bed B's
    // finger out (at 12 s).
    let (status, body) = http(
        site_addr,
        "POST",
        &format!("/api/alarms/{site_id}/ack"),
        None,
        Some("{}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_secs(20)).await;
    broker.restart();

    // Every event of the outage reaches the dashboard once; the view is whole again.
    let mut acks = 0;
    let mut b_raised = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    let mut resynced = false;
    let mut seen = Vec::new();
    while tokio::time::Instant::now() < deadline && !(resynced && acks > 0 && b_raised > 0) {
        let Some(m) = ws.next(Duration::from_secs(1)).await else {
            continue;
        };
        if m["type"] == "alarm" {
            seen.push(format!(
                "{} {} {} {}",
                m["event"], m["alarm"]["id"], m["alarm"]["condition"], m["bed"]
            ));
        }
        if m["type"] == "alarm" && m["event"] == "acknowledged" && m["alarm"]["id"] == central_id {
            acks += 1;
        }
        if m["type"] == "alarm" && m["event"] == "raised" && m["bed"] == "north/room1/B" {
            b_raised += 1;
        }
        if m["type"] == "alarm"
            && m["event"] == "cleared"
            && m["alarm"]["condition"] == "site_offline"
        {
            resynced = true;
        }
    }
    assert_eq!(
        acks, 1,
        "the acknowledgement of {central_id} made during the outage, once: {seen:?}"
    );
    assert!(
        b_raised >= 1,
        "bed B's alarm raised during the outage arrives"
    );
    assert!(resynced, "north is back online at central");
    // A little longer: nothing arrives twice.
    let more = {
        let mut v = Vec::new();
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Some(m) = ws
            .next(until.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            v.push(m);
        }
        v
    };
    assert!(
        !more.iter().any(|m| m["type"] == "alarm"
            && m["event"] == "acknowledged"
            && m["alarm"]["id"] == central_id),
        "the acknowledgement is not sent twice"
    );
    let (_, alarms) = get(addr, "/api/alarms").await;
    let list = alarms["alarms"].as_array().unwrap();
    assert!(
        list.iter()
            .any(|a| a["id"] == central_id && a["state"] == "acknowledged"),
        "{alarms}"
    );
    assert!(list.iter().any(|a| a["bed"] == "north/room1/B"), "{alarms}");
    assert!(
        !list.iter().any(|a| a["condition"] == "site_offline"),
        "{alarms}"
    );
    f.ws.close().await;
}

/// A TCP gate between the central and the broker: open, it forwards; closed, it drops its
/// connections and every new one at once (the central held back, as by a slow WAN link).
struct Gate {
    port: u16,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn start(to: u16) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (open, links) = (open.clone(), links.clone());
            async move {
                while let Ok((mut a, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let link = tokio::spawn(async move {
                        if let Ok(mut b) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Gate {
            port,
            open,
            links,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.close();
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_back_on_a_restarted_broker_before_central_gets_its_outage_alarm_to_central_once() {
    let bdir = tempfile::tempdir().unwrap();
    // No persistence: the restarted broker has no session of the central's to keep the
    // site's replay for.
    let broker = Broker::start_volatile(bdir.path(), free_port());
    let gate = Gate::start(broker.port).await;
    let url = broker.url();
    let north = site(
        "north",
        DESAT,
        r#"events = [{ at = "15s", for = "1h", kind = "finger_out" }]"#,
    );
    let mut f = Fixture::on(bdir, broker, &url, &gate.url(), "", &[north]).await;
    let (site_addr, ndir, broker, ws) = (
        f.sites[0].addr,
        f.sites[0].dir.path().to_owned(),
        &mut f.broker,
        &mut f.ws,
    );
    ws.wait_for("north's spo2_low", SOON, |m| {
        raised(m, "north/room1/A", "spo2_low")
    })
    .await;

    // The central is held back; the broker goes away, and bed B's alarm is raised meanwhile.
    gate.close();
    broker.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let b_alarms: Vec<Value> = loop {
        let (_, list) = http(site_addr, "GET", "/api/alarms", None, None).await;
        let b: Vec<Value> = list["alarms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["bed"] == "room1/B")
            .cloned()
            .collect();
        if !b.is_empty() {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bed B's alarm at the site: {list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let data = ndir.join("data");
    let db = data.join(vitalsd::store::FILE_NAME);
    let b_row = || -> Option<i64> {
        let c =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .ok()?;
        c.query_row(
            "SELECT MAX(id) FROM alarm_events WHERE kind = 'raised' AND json LIKE '%\"bed\":\"room1/B\"%'",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )
        .ok()
        .flatten()
    };
    let deadline = tokio::time::Instant::now() + SOON;
    let b_row = loop {
        if let Some(id) = b_row() {
            break id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bed B's raised event stored"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The broker is back; the site reconnects first and replays its outage to a broker that
    // has nobody for it: wait until the broker acknowledged it (the site's cursor).
    broker.restart();
    let cursor = data.join(vitalsd::mqtt::CURSOR_FILE);
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let at: i64 = std::fs::read_to_string(&cursor)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        if at >= b_row {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the site replayed its outage to the broker (cursor {at}, B's event {b_row})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Now the central: every alarm of bed B raised during the outage reaches its client, once.
    gate.open();
    let mut raised_b: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    while tokio::time::Instant::now() < deadline {
        let Some(m) = ws.next(Duration::from_secs(1)).await else {
            continue;
        };
        if m["type"] == "alarm" && m["event"] == "raised" && m["bed"] == "north/room1/B" {
            raised_b.push(m);
            if raised_b.len() >= b_alarms.len() {
                break;
            }
        }
    }
    // A little longer: nothing arrives twice.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Some(m) = ws
        .next(until.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        if m["type"] == "alarm" && m["event"] == "raised" && m["bed"] == "north/room1/B" {
            raised_b.push(m);
        }
    }
    let mut conditions: Vec<&str> = raised_b
        .iter()
        .filter_map(|m| m["alarm"]["condition"].as_str())
        .collect();
    conditions.sort_unstable();
    let mut expected: Vec<&str> = b_alarms
        .iter()
        .filter_map(|a| a["condition"].as_str())
        .collect();
    expected.sort_unstable();
    assert_eq!(
        conditions, expected,
        "each alarm of bed B raised during the outage reaches the central client once"
    );
    f.ws.close().await;
}

/// A test PKI in `dir`: a CA, the broker's certificate for 127.0.0.1, and a client
/// certificate. Returns the paths (ca, server cert, server key, client cert, client key).
fn pki(dir: &Path) -> [std::path::PathBuf; 5] {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "vitalsd test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server, server_key) = leaf(
        vec!["127.0.0.1".to_owned()],
        "broker",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client, client_key) = leaf(vec![], "vitalsd", ExtendedKeyUsagePurpose::ClientAuth);
    let paths = [
        "ca.pem",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
    ]
    .map(|n| dir.join(n));
    for (p, text) in paths
        .iter()
        .zip([ca_cert.pem(), server, server_key, client, client_key])
    {
        std::fs::write(p, text).unwrap();
    }
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_and_the_central_reach_a_broker_over_mqtts_with_client_certificates() {
    let bdir = tempfile::tempdir().unwrap();
    let [ca, server, server_key, client, client_key] = pki(bdir.path());
    // The broker wants TLS and a client certificate from our CA.
    let broker = Broker::start_with(
        bdir.path(),
        free_port(),
        &format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true",
            ca.display(),
            server.display(),
            server_key.display()
        ),
    );
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    let tls = format!(
        "ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        ca.display(),
        client.display(),
        client_key.display()
    );
    let mut f = Fixture::on(bdir, broker, &url, &url, &tls, &[site("north", DESAT, "")]).await;
    let ws = &mut f.ws;
    ws.wait_for("north's beds over mqtts", SOON, |m| {
        m["type"] == "snapshot" && beds(m).len() == 2
    })
    .await;
    ws.wait_for("north's spo2_low over mqtts", SOON, |m| {
        raised(m, "north/room1/A", "spo2_low")
    })
    .await;
    f.ws.close().await;
}

/// At central the beds of several sites share one page, and their own labels repeat
/// ("Room 1 / A" at every site): each bed card and each alarm row names its site first, so a
/// nurse never has to guess which site's Room 1 / A is desaturating. Real Chromium.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_central_dashboard_names_the_site_of_every_bed_card_and_alarm_row() {
    use crate::browser::{Browser, ONE_BROWSER, target_dir};
    let _one = ONE_BROWSER.lock().await;
    let f = Fixture::start(&[site("north", DESAT, ""), site("south", "", "")]).await;
    let b = Browser::start().await;
    b.client
        .goto(&format!("http://{}/#token=viewer-token-0123456789", f.addr))
        .await
        .expect("the central dashboard loads");
    let labels = b
        .wait(
            "the four bed cards of both sites",
            SOON,
            "const l = [...document.querySelectorAll('.bed-label')].map((e) => e.textContent);
             return l.length === 4 ? l.sort() : null;",
        )
        .await;
    assert_eq!(
        labels,
        serde_json::json!([
            "north · Room 1 / A",
            "north · Room 1 / B",
            "south · Room 1 / A",
            "south · Room 1 / B"
        ]),
        "every bed card names its site"
    );
    // North's bed A desaturates: its alarm row (the banner) says which site.
    let row = b
        .wait(
            "north's SpO2 alarm in the alarm banner",
            SOON,
            "const r = [...document.querySelectorAll('li.alarm')]
               .map((li) => li.querySelector('.where'))
               .find((w) => w && w.textContent && w.parentNode.textContent.includes('SpO2'));
             return r ? r.textContent : null;",
        )
        .await;
    assert_eq!(
        row,
        serde_json::json!("north · Room 1 / A"),
        "the alarm row names the site"
    );
    b.screenshot(&target_dir(), "central-dashboard.png").await;
    b.close().await;
}
