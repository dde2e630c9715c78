//! The alarm system end to end: simulator -> daemon -> alarm engine -> WebSocket, API and
//! webhooks.

use crate::util::{Client, Rig, USERS, Webhook, eventually, is_reading, notify_target, scenario};
use serde_json::Value;
use std::time::Duration;

const SOON: Duration = Duration::from_secs(30);

fn is_alarm(m: &Value, event: &str, condition: &str) -> bool {
    m["type"] == "alarm" && m["event"] == event && m["alarm"]["condition"] == condition
}

/// Reads until the alarm is raised; returns it and the receive time of the first reading of
/// `metric` on `bed` that was below `limit` (server timestamps, so the bound is the daemon's).
async fn first_below_then_alarm(
    c: &mut Client,
    bed: &str,
    metric: &str,
    limit: f64,
    condition: &str,
) -> (i64, Value) {
    let mut first_below: Option<i64> = None;
    let alarm = c
        .wait_for(&format!("{condition} raised"), SOON * 2, |m| {
            if is_reading(m, bed, metric)
                && first_below.is_none()
                && m["value"].as_f64().is_some_and(|v| v < limit)
            {
                first_below = m["received_ms"].as_i64();
            }
            is_alarm(m, "raised", condition)
        })
        .await;
    let first = match first_below {
        Some(t) => t,
        // An alarm without delay goes out ahead of the reading that raised it.
        None => c
            .wait_for("the reading that raised it", SOON, |m| {
                is_reading(m, bed, metric)
            })
            .await["received_ms"]
            .as_i64()
            .unwrap(),
    };
    (first, alarm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desaturation_raises_the_spo2_alarm_within_its_condition_delay_plus_a_second() {
    // 87 % is below the 90 % limit (medium, 10 s delay) but above the 85 % severe band.
    let rig = Rig::start(
        scenario(
            r#"events = [{ at = "2s", for = "1h", kind = "desaturation", spo2 = 87, ramp = "1s" }]"#,
            "",
        ),
        "10m",
    )
    .await;
    let mut c = rig.client().await;
    let (first_below, alarm) =
        first_below_then_alarm(&mut c, "room1/A", "spo2", 90.0, "spo2_low").await;
    let a = &alarm["alarm"];
    assert_eq!(a["bed"], "room1/A");
    assert_eq!(a["kind"], "physiological");
    assert_eq!(a["priority"], "medium");
    assert_eq!(a["state"], "active");
    assert_eq!(a["audio"], "sounding");
    assert_eq!(a["limit"], 90.0);
    assert!(a["value"].as_f64().unwrap() < 90.0, "{a}");
    let took = a["started_ms"].as_i64().unwrap() - first_below;
    assert!(
        (10_000..=11_000).contains(&took),
        "raised {took} ms after the first reading below the limit; expected the 10 s delay plus at most 1 s"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_and_a_webhook_that_never_answers_do_not_delay_a_severe_alarm() {
    let black_hole = Webhook::start(false).await;
    let extra = notify_target("pager", &black_hole.url, "timeout = \"30s\"");
    // 80 % is in the severe band (< 85): high priority, no delay.
    let rig = Rig::start_with(
        scenario(
            r#"events = [{ at = "3s", for = "1h", kind = "desaturation", spo2 = 80, ramp = "1s" }]"#,
            "",
        ),
        "10m",
        &extra,
    )
    .await;
    let stalled = rig.client().await; // never read again
    let mut live = rig.client().await;
    let (first_below, alarm) =
        first_below_then_alarm(&mut live, "room1/A", "spo2", 85.0, "spo2_low").await;
    let a = &alarm["alarm"];
    assert_eq!(a["priority"], "high");
    let took = a["started_ms"].as_i64().unwrap() - first_below;
    assert!(took <= 1_000, "severe band alarms at once; took {took} ms");
    // The webhook was tried (and is hanging) while the alarm went out.
    eventually(
        SOON,
        async || {
            (black_hole
                .connections
                .load(std::sync::atomic::Ordering::SeqCst)
                != 0)
                .then_some(())
        },
        || "the notifier never called the webhook".to_owned(),
    )
    .await;
    drop(stalled);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finger_out_raises_the_technical_alarm_and_never_a_physiological_one() {
    let rig = Rig::start(
        scenario(
            "",
            r#"events = [{ at = "1s", for = "1h", kind = "finger_out" }]"#,
        ),
        "10m",
    )
    .await;
    let mut c = rig.client().await;
    let alarm = c
        .wait_for("no_finger raised for B", SOON, |m| {
            if m["type"] == "alarm" && m["alarm"]["kind"] == "physiological" {
                panic!("an invalid value raised a physiological alarm: {m}");
            }
            is_alarm(m, "raised", "no_finger")
        })
        .await;
    assert_eq!(alarm["alarm"]["bed"], "room1/B");
    assert_eq!(alarm["alarm"]["device"], "room1-B-oximeter");
    assert_eq!(alarm["alarm"]["kind"], "technical");
    assert_eq!(alarm["alarm"]["priority"], "medium");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nurse_acknowledges_and_pauses_audio_and_each_role_may_do_only_its_part() {
    let rig = Rig::start_with(
        scenario(
            r#"events = [{ at = "1s", for = "1h", kind = "desaturation", spo2 = 80, ramp = "1s" }]"#,
            "",
        ),
        "10m",
        USERS,
    )
    .await;
    // No token, no data.
    let (status, body) = rig.http("GET", "/api/rooms", None, None).await;
    assert_eq!(status, 401, "{body}");
    let mut c = rig.client_as("viewer-token-0123456789").await;
    let raised = c
        .wait_for("spo2_low raised", SOON, |m| {
            is_alarm(m, "raised", "spo2_low")
        })
        .await;
    let id = raised["alarm"]["id"].as_u64().unwrap();
    let ack = format!("/api/alarms/{id}/ack");

    let (status, body) = rig
        .http("POST", &ack, Some("viewer-token-0123456789"), None)
        .await;
    assert_eq!(status, 403, "a viewer may not acknowledge: {body}");
    let (status, body) = rig
        .http("POST", &ack, Some("nurse-token-0123456789"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alarm"]["state"], "acknowledged");
    assert_eq!(body["alarm"]["audio"], "silenced");
    let acked = c
        .wait_for("acknowledged event", SOON, |m| {
            is_alarm(m, "acknowledged", "spo2_low")
        })
        .await;
    assert_eq!(
        acked["actor"], "nurse1",
        "the audit trail names who: {acked}"
    );
    // Confirmed means committed: the acknowledgement is in the store's log already.
    let (status, log) = rig
        .http(
            "GET",
            "/api/alarms/history?bed=room1/A",
            Some("viewer-token-0123456789"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{log}");
    let events = log["events"].as_array().unwrap();
    assert_eq!(events[0]["event"], "acknowledged", "newest first: {log}");
    assert_eq!(events[0]["actor"], "nurse1");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "raised" && e["alarm"]["id"] == id)
    );

    let pause = "/api/beds/room1/B/audio-pause";
    let (status, body) = rig
        .http(
            "POST",
            pause,
            Some("nurse-token-0123456789"),
            Some(r#"{"seconds": 5000}"#),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["seconds"], 600,
        "an audio pause is never longer than the maximum"
    );
    let paused = c
        .wait_for("audio_paused", SOON, |m| {
            m["type"] == "alarm" && m["event"] == "audio_paused"
        })
        .await;
    assert_eq!(paused["bed"], "room1/B");
    assert!(paused["until"].is_string());

    // Limits: admins only; a bad rule is refused with the reason.
    let limits = "/api/beds/room1/A/limits";
    let (status, _) = rig
        .http(
            "PUT",
            limits,
            Some("nurse-token-0123456789"),
            Some(r#"{"preset":"ketamine-session"}"#),
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = rig
        .http(
            "PUT",
            limits,
            Some("admin-token-0123456789"),
            Some(r#"{"preset":"nope"}"#),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("ketamine-session"),
        "{body}"
    );
    let (status, body) = rig
        .http(
            "PUT",
            limits,
            Some("admin-token-0123456789"),
            Some(r#"{"preset":"ketamine-session"}"#),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["rules"].as_array().is_some_and(|r| !r.is_empty()));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baseline_from_recent_readings_arms_the_relative_limits() {
    let rig = Rig::start(scenario("", ""), "10m").await;
    let mut c = rig.client().await;
    c.wait_for("A's pulse rate", SOON, |m| {
        is_reading(m, "room1/A", "pulse_rate")
    })
    .await;
    let (status, body) = rig
        .http("GET", "/api/beds/room1/A/limits", None, None)
        .await;
    assert_eq!(status, 200);
    let rise_inactive = body["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["condition"] == "nibp_sys_rise" && r["active"] == false);
    assert!(
        rise_inactive,
        "without a baseline the relative limits are inactive: {body}"
    );
    let (status, body) = rig
        .http(
            "POST",
            "/api/beds/room1/A/baseline",
            None,
            Some(r#"{"from_recent": true, "sys": 120, "dia": 80}"#),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["baseline"]["pulse_rate"], 72.0);
    assert_eq!(body["baseline"]["sys"], 120.0);
    let (_, body) = rig
        .http("GET", "/api/beds/room1/A/limits", None, None)
        .await;
    let rise = body["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["condition"] == "nibp_sys_rise")
        .cloned()
        .unwrap();
    assert_eq!(rise["active"], true, "{rise}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_dashboard_alive_the_alarm_system_pages_staff() {
    let hook = Webhook::start(true).await;
    let extra =
        "[alarms]\ndashboard_timeout = \"5s\"\n".to_owned() + &notify_target("desk", &hook.url, "");
    let rig = Rig::start_with(scenario("", ""), "10m", &extra).await;
    // No WebSocket client connects.
    let n = eventually(
        SOON,
        async || {
            hook.received()
                .into_iter()
                .find(|b| b["alarm"]["condition"] == "no_dashboard")
        },
        || format!("no no_dashboard notification; got {:?}", hook.received()),
    )
    .await;
    assert_eq!(n["event"], "notify");
    assert_eq!(n["alarm"]["priority"], "high");
    assert_eq!(n["alarm"]["bed"], Value::Null);
    // A dashboard page whose audio is armed connects and says so: the alarm clears.
    let mut c = rig.client().await;
    let snap = c.next(SOON).await.unwrap();
    {
        use futures_util::SinkExt;
        c.ws.send(tokio_tungstenite::tungstenite::Message::text(
            r#"{"type":"heartbeat","audio_armed":true,"visible":true}"#,
        ))
        .await
        .unwrap();
    }
    let cleared_or_absent = snap["alarms"].as_array().is_some_and(|a| a.is_empty());
    if !cleared_or_absent {
        c.wait_for("no_dashboard cleared", SOON, |m| {
            is_alarm(m, "cleared", "no_dashboard")
        })
        .await;
    }
    let (_, alarms) = rig.http("GET", "/api/alarms", None, None).await;
    assert!(
        !alarms["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["condition"] == "no_dashboard"),
        "{alarms}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_notification_survives_a_restart_and_is_delivered_after() {
    // The target's port is reserved but nothing answers yet.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let extra = notify_target(
        "desk",
        &format!("http://127.0.0.1:{port}/hook"),
        "timeout = \"1s\"",
    );
    let sc = || {
        scenario(
            r#"events = [{ at = "1s", for = "1h", kind = "desaturation", spo2 = 80, ramp = "1s" }]"#,
            "",
        )
    };
    let rig = Rig::start_with(sc(), "10m", &extra).await;
    let mut c = rig.client().await;
    let raised = c
        .wait_for("spo2_low raised", SOON, |m| {
            is_alarm(m, "raised", "spo2_low")
        })
        .await;
    let id = raised["alarm"]["id"].as_u64().unwrap();
    // Queued in the store's outbox table.
    let store = rig.cfg.data_dir.join(vitalsd::store::FILE_NAME);
    let queued = || -> bool {
        let Ok(conn) = rusqlite::Connection::open(&store) else {
            return false;
        };
        conn.query_row(
            "SELECT count(*) FROM notify_outbox WHERE body LIKE '%spo2_low%'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .is_ok_and(|n| n > 0)
    };
    eventually(
        SOON,
        async || queued().then_some(()),
        || format!("nothing queued in {}", store.display()),
    )
    .await;
    // Stop the daemon with the notification undelivered; bring the target up; restart.
    let crate::util::Rig {
        dir,
        cfg,
        sim,
        daemon,
    } = rig;
    daemon.unwrap().shutdown().await;
    let hook = Webhook::serve(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
        true,
    );
    let daemon = vitalsd::app::start(cfg.clone(), vitalsd::app::Options::default())
        .await
        .unwrap();
    // The notification of the alarm raised before the restart (the new run raises its own,
    // with another id).
    eventually(
        SOON,
        async || {
            hook.received()
                .iter()
                .any(|b| b["alarm"]["id"] == id)
                .then_some(())
        },
        || "the queued notification was not delivered".to_owned(),
    )
    .await;
    daemon.shutdown().await;
    sim.unwrap().shutdown().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_write_raises_a_technical_alarm_until_it_recovers() {
    let rig = Rig::start(scenario("", ""), "10m").await;
    let mut c = rig.client().await;
    c.wait_for("a reading", SOON, |m| m["type"] == "reading")
        .await;
    let store = rig.daemon.as_ref().unwrap().store().unwrap();
    // A real SQLite size cap: the file cannot grow, so the next batch of readings fails.
    store.set_size_limit(Some(1)).await.unwrap();
    let raised = c
        .wait_for("store_unwritable raised", SOON, |m| {
            is_alarm(m, "raised", "store_unwritable")
        })
        .await;
    assert_eq!(raised["alarm"]["priority"], "high");
    assert_eq!(raised["alarm"]["bed"], Value::Null);
    // Readings keep flowing to the dashboard meanwhile, and monitoring sees the trouble.
    c.wait_for("a reading while the store is down", SOON, |m| {
        m["type"] == "reading"
    })
    .await;
    let (status, health) = rig.http("GET", "/healthz", None, None).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["store"]["writable"], false);
    store.set_size_limit(None).await.unwrap();
    c.wait_for("store_unwritable cleared", SOON, |m| {
        is_alarm(m, "cleared", "store_unwritable")
    })
    .await;
    assert_eq!(
        store.health().dropped,
        0,
        "nothing was lost while the store was down"
    );
    rig.stop().await;
}
