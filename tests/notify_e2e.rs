//! Notifications end to end: re-notify and escalation of a medium alarm, no stale page after an
//! acknowledgement, one queue per target, a failing target as an alarm on the dashboard, pages
//! that survive `kill -9` of the real binary, and a new medium alarm sounding through an audio
//! pause.

use crate::util::{
    Client, Rig, TestConfig, Webhook, bin, eventually, eventually_blocking, free_port,
    notify_target, scenario, write_scenario,
};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SOON: Duration = Duration::from_secs(30);

fn is_alarm(m: &Value, event: &str, condition: &str) -> bool {
    m["type"] == "alarm" && m["event"] == event && m["alarm"]["condition"] == condition
}

fn is_page(b: &Value, condition: &str) -> bool {
    b["event"] == "notify" && b["alarm"]["condition"] == condition
}

/// Waits until `hook` holds a body satisfying `pred`; returns it.
async fn received(
    hook: &Webhook,
    what: &str,
    within: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    eventually(
        within,
        async || hook.received().into_iter().find(|b| pred(b)),
        || {
            format!(
                "{what} not received within {within:?}; got {:?}",
                hook.received()
            )
        },
    )
    .await
}

/// A port that nothing listens on (yet).
fn dead_port() -> u16 {
    free_port()
}

/// A desaturation of room1/A from 1 s: 87 % is medium (after 10 s), 80 % high at once.
fn desaturation(spo2: u32) -> String {
    format!(
        r#"events = [{{ at = "1s", for = "1h", kind = "desaturation", spo2 = {spo2}, ramp = "1s" }}]"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_medium_alarm_left_unacknowledged_is_renotified_and_escalated() {
    let desk = Webhook::start(true).await;
    let charge = Webhook::start(true).await;
    let extra = r#"
[alarms]
page_interval = "5s"

[alarms.escalation.medium]
renotify_every = "10s"
escalate_after = "25s"
levels = 2
"#
    .to_owned()
        + &notify_target("desk", &desk.url, "")
        + &notify_target("charge", &charge.url, "level = 1");
    let rig = Rig::start_with(scenario(&desaturation(87), ""), "10m", &extra).await;
    let mut c = rig.client().await;
    let raised = c
        .wait_for("spo2_low raised", SOON, |m| {
            is_alarm(m, "raised", "spo2_low")
        })
        .await;
    assert_eq!(raised["alarm"]["priority"], "medium");
    let id = raised["alarm"]["id"].as_u64().unwrap();
    let ours = |b: &Value| is_page(b, "spo2_low") && b["alarm"]["id"] == id;
    // Paged at once, re-notified after 10 s, both to level 0 (the desk).
    received(&desk, "the second page", SOON, |_| {
        desk.received().iter().filter(|b| ours(b)).count() >= 2
    })
    .await;
    // Escalated after 25 s to level 1 (the charge nurse).
    let up = received(&charge, "the escalation", SOON * 2, |b| ours(b)).await;
    assert_eq!(up["level"], 1);
    assert_eq!(up["alarm"]["state"], "active");
    let at_desk: Vec<i64> = desk
        .received()
        .iter()
        .filter(|b| ours(b))
        .map(|b| b["at_ms"].as_i64().unwrap())
        .collect();
    assert!(
        at_desk.windows(2).all(|w| w[1] - w[0] >= 9_900),
        "re-notified every 10 s, not faster: {at_desk:?}"
    );
    assert!(
        desk.received()
            .iter()
            .filter(|b| ours(b))
            .all(|b| b["level"] == 0)
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_alarms_failed_page_is_never_delivered_as_active() {
    let port = dead_port();
    let extra = notify_target(
        "desk",
        &format!("http://127.0.0.1:{port}/hook"),
        "timeout = \"2s\"",
    );
    let rig = Rig::start_with(scenario(&desaturation(80), ""), "10m", &extra).await;
    let mut c = rig.client().await;
    let raised = c
        .wait_for("spo2_low raised", SOON, |m| {
            is_alarm(m, "raised", "spo2_low")
        })
        .await;
    let id = raised["alarm"]["id"].as_u64().unwrap();
    c.wait_for("the page failing", SOON, |m| {
        m["type"] == "notification" && m["target"] == "desk" && m["status"] == "failed"
    })
    .await;
    let (status, body) = rig
        .http("POST", &format!("/api/alarms/{id}/ack"), None, None)
        .await;
    assert_eq!(status, 200, "{body}");
    // The target comes back.
    let hook = Webhook::serve(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
        true,
    );
    // It is reached again (probed, since nothing is left to deliver).
    received(
        &hook,
        "a delivery after the target came back",
        SOON * 2,
        |_| true,
    )
    .await;
    c.wait_for("the target recovered", SOON, |m| {
        m["type"] == "notification" && m["target"] == "desk" && m["status"] == "recovered"
    })
    .await;
    let stale: Vec<Value> = hook
        .received()
        .into_iter()
        .filter(|b| b["alarm"]["id"] == id && b["alarm"]["state"] == "active")
        .collect();
    assert!(stale.is_empty(), "stale pages delivered: {stale:?}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_is_an_alarm_on_the_dashboard_until_it_delivers_again() {
    let port = dead_port();
    let extra = notify_target(
        "pager",
        &format!("http://127.0.0.1:{port}/hook"),
        "timeout = \"2s\"",
    );
    let rig = Rig::start_with(scenario(&desaturation(80), ""), "10m", &extra).await;
    let mut c = rig.client().await;
    let raised = c
        .wait_for("notify_failed raised", SOON, |m| {
            is_alarm(m, "raised", "notify_failed")
        })
        .await;
    let a = &raised["alarm"];
    assert_eq!(a["target"], "pager", "{raised}");
    assert_eq!(a["priority"], "medium");
    assert_eq!(a["kind"], "technical");
    assert_eq!(a["bed"], Value::Null);
    assert_eq!(a["audio"], "sounding");
    let (_, alarms) = rig.http("GET", "/api/alarms", None, None).await;
    assert!(
        alarms["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["condition"] == "notify_failed" && a["target"] == "pager"),
        "{alarms}"
    );
    // A nurse may silence it; it stays shown until the target delivers again.
    let id = a["id"].as_u64().unwrap();
    let (status, body) = rig
        .http("POST", &format!("/api/alarms/{id}/ack"), None, None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alarm"]["audio"], "silenced", "{body}");
    let hook = Webhook::serve(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
        true,
    );
    c.wait_for("notify_failed cleared", SOON * 3, |m| {
        is_alarm(m, "cleared", "notify_failed")
    })
    .await;
    // What cleared it is the page it held for the alarm that is still up.
    let page = received(&hook, "the held page", SOON, |b| is_page(b, "spo2_low")).await;
    assert_eq!(page["alarm"]["state"], "active");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_does_not_delay_another_targets_pages() {
    let black_hole = Webhook::start(false).await;
    let live = Webhook::start(true).await;
    // The black hole is listed first and holds each attempt for a minute.
    let extra = notify_target("hole", &black_hole.url, "timeout = \"60s\"")
        + &notify_target("desk", &live.url, "");
    let rig = Rig::start_with(scenario(&desaturation(80), ""), "10m", &extra).await;
    let mut c = rig.client().await;
    let raised = c
        .wait_for("spo2_low raised", SOON, |m| {
            is_alarm(m, "raised", "spo2_low")
        })
        .await;
    let id = raised["alarm"]["id"].as_u64().unwrap();
    // Well before the black hole's attempt times out, the desk has the page.
    received(
        &live,
        "the page at the live target",
        Duration::from_secs(20),
        |b| is_page(b, "spo2_low") && b["alarm"]["id"] == id,
    )
    .await;
    // The black hole was tried too (its connection may be accepted a moment after the desk's
    // page: the two deliveries run side by side), well inside its 60 s attempt.
    eventually(
        Duration::from_secs(20),
        async || {
            (black_hole
                .connections
                .load(std::sync::atomic::Ordering::SeqCst)
                >= 1)
                .then_some(())
        },
        || "the black hole was tried too".to_owned(),
    )
    .await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_medium_alarm_sounds_through_an_audio_pause() {
    let rig = Rig::start(scenario(&desaturation(87), ""), "10m").await;
    let mut c = rig.client().await;
    let (status, body) = rig
        .http(
            "POST",
            "/api/beds/room1/A/audio-pause",
            None,
            Some(r#"{"seconds": 600}"#),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let raised = c
        .wait_for("spo2_low raised during the pause", SOON, |m| {
            is_alarm(m, "raised", "spo2_low")
        })
        .await;
    assert_eq!(raised["alarm"]["priority"], "medium");
    assert_eq!(raised["alarm"]["audio"], "sounding", "{raised}");
    let (_, rooms) = rig.http("GET", "/api/rooms", None, None).await;
    let bed = &rooms["rooms"][0]["beds"][0];
    assert!(bed["audio_paused_until"].is_string(), "still paused: {bed}");
    rig.stop().await;
}

/// The real binary (`vitalsd demo`) on `cfg`, with its address.
fn spawn_demo(cfg: &std::path::Path, scen: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(bin())
        .args(["demo", "--config", cfg.to_str().unwrap()])
        .args(["--scenario", scen.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = crate::util::listening_on(&mut child).to_string();
    (child, addr)
}

/// The outbox rows (id, alarm id, body) in the store file.
fn outbox(data: &std::path::Path) -> Vec<(i64, Option<i64>, String)> {
    let Ok(conn) = rusqlite::Connection::open(data.join(vitalsd::store::FILE_NAME)) else {
        return Vec::new();
    };
    let Ok(mut st) = conn.prepare("SELECT id, alarm_id, body FROM notify_outbox") else {
        return Vec::new();
    };
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

#[test]
fn pending_pages_survive_kill_9_and_are_delivered_once_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = dead_port();
    let cfg = TestConfig::new(dir.path())
        .bp_interval("10m")
        .extra("[alarms]\ndashboard_timeout = \"10m\"")
        .notify(
            "desk",
            &format!("http://127.0.0.1:{port}/hook"),
            "timeout = \"1s\"",
        )
        .write("notify.toml");
    let scen = write_scenario(dir.path(), "scenario.toml", &desaturation(80), "");
    let data = dir.path().join("data");
    let (mut child, _) = spawn_demo(&cfg, &scen);
    // The page of the high alarm is in the outbox, undelivered.
    let (row_id, alarm_id, body) = eventually_blocking(
        SOON,
        || outbox(&data).into_iter().find(|r| r.2.contains("spo2_low")),
        || "no page in the outbox".to_owned(),
    );
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["event"], "notify");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let hook = Webhook::serve(
            tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap(),
            true,
        );
        let (mut child, addr) = spawn_demo(&cfg, &scen);
        let same = |b: &Value| {
            b["event"] == "notify"
                && b["alarm"]["id"].as_i64() == alarm_id
                && b["at_ms"] == page["at_ms"]
        };
        received(&hook, "the page from before the kill", SOON, same).await;
        // Delivered and removed from the outbox: it cannot come again.
        eventually(
            SOON,
            async || (!outbox(&data).iter().any(|r| r.0 == row_id)).then_some(()),
            || "the row stays".to_owned(),
        )
        .await;
        // And the daemon is working: a dashboard connects.
        let mut c = Client::connect(&format!("ws://{addr}/ws")).await;
        c.next(SOON).await.expect("a snapshot");
        let copies = hook.received().iter().filter(|b| same(b)).count();
        assert_eq!(copies, 1, "delivered once");
        child.kill().unwrap();
        child.wait().unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_server_that_accepts_and_closes_pages_its_condition_at_most_once_a_minute() {
    // A serial device server that accepts every connection and closes it at once.
    let flapping = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = flapping.local_addr().unwrap().port();
    let accepts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = accepts.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = flapping.accept().await {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(sock);
        }
    });
    let hook = Webhook::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(dir.path())
        .bp_interval("10m")
        .tcp_by_hand(tcp)
        .notify("desk", &hook.url, "");
    let rig = Rig::start_config(dir, &cfg, scenario("", "")).await;
    let mut c = rig.client().await;
    let is_ours =
        |b: &Value| is_page(b, "device_disconnected") && b["alarm"]["device"] == "room1-A-nibp";
    received(&hook, "the page of the flapping cuff", SOON * 2, is_ours).await;
    // Watch the chatter for 20 s: the device keeps being accepted and closed, and the page
    // limit (60 s) lets no second page of the condition through.
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < until {
        c.next(Duration::from_secs(1)).await;
    }
    assert!(
        accepts.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the device server was reconnected to"
    );
    let pages = hook.received().iter().filter(|b| is_ours(b)).count();
    assert_eq!(pages, 1, "{:?}", hook.received());
    rig.stop().await;
}
