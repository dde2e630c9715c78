//! What survives a restart, against the real binary: run-time limits, baselines (API and
//! session), latched and acknowledged alarms with their ids, an audio pause with its remaining
//! time, after SIGTERM and after `kill -9`; `baseline_missing` for a dosed session without a
//! baseline, across a restart too; actions during an unwritable store answer 503 and change
//! nothing; one daemon per data dir.

use crate::util::{
    Client, Rig, TestConfig, bin, eventually, eventually_ok, http, scenario, write_scenario,
};
use serde_json::{Value, json};
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SOON: Duration = Duration::from_secs(30);

/// How the first daemon ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    Term,
    Kill9,
}

/// The real binary, `vitalsd demo` (daemon and simulator in one process).
struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Daemon {
    fn demo(config: &Path, scenario: &Path) -> Daemon {
        let mut child = Command::new(bin())
            .args(["demo", "--config", config.to_str().unwrap()])
            .args(["--scenario", scenario.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = crate::util::listening_on(&mut child);
        Daemon { child, addr }
    }

    fn stop(mut self, how: Stop) {
        match how {
            Stop::Term => {
                let status = Command::new("kill")
                    .args(["-TERM", &self.child.id().to_string()])
                    .status()
                    .unwrap();
                assert!(status.success());
                let exit = self.child.wait().unwrap();
                assert!(exit.success(), "SIGTERM is an orderly stop: {exit}");
            }
            Stop::Kill9 => {
                self.child.kill().unwrap(); // SIGKILL
                self.child.wait().unwrap();
            }
        }
    }

    async fn http(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        http(self.addr, method, path, None, body.as_deref()).await
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
        let (status, v) = self.http(method, path, body).await;
        assert_eq!(status, want, "{method} {path}: {v}");
        v
    }

    /// The first message a new WebSocket client gets.
    async fn snapshot(&self) -> Value {
        let mut c = Client::connect(&format!("ws://{}/ws", self.addr)).await;
        let snap = c.next(SOON).await.expect("a snapshot");
        assert_eq!(snap["type"], "snapshot");
        c.close().await;
        snap
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bed<'a>(snapshot: &'a Value, id: &str) -> &'a Value {
    snapshot["rooms"][0]["beds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .unwrap()
}

fn alarm<'a>(bed: &'a Value, condition: &str) -> Option<&'a Value> {
    bed["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["condition"] == condition)
}

fn rule<'a>(limits: &'a Value, condition: &str) -> &'a Value {
    limits["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["condition"] == condition)
        .unwrap_or_else(|| panic!("no rule {condition}: {limits}"))
}

/// The saved alarm state of `bed`, read from the store file as another process would.
fn saved_state(file: &Path, bed: &str) -> String {
    let conn = rusqlite::Connection::open(file).unwrap();
    conn.query_row("SELECT json FROM alarm_state WHERE bed = ?1", [bed], |r| {
        r.get(0)
    })
    .unwrap_or_default()
}

fn ms(rfc3339: &Value) -> i64 {
    vitalsd::api::records::parse_time(rfc3339.as_str().unwrap()).unwrap()
}

/// Polls `GET /api/alarms` until `pred` holds for the list.
async fn alarms_until(d: &Daemon, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    eventually_ok(SOON, async || {
        let v = d.ok("GET", "/api/alarms", None, 200).await;
        let list = v["alarms"].as_array().unwrap().clone();
        if pred(&list) {
            return Ok(list);
        }
        Err(format!("no {what} within {SOON:?}: {v}"))
    })
    .await
}

fn find<'a>(list: &'a [Value], bed: &str, condition: &str) -> Option<&'a Value> {
    list.iter()
        .find(|a| a["bed"] == bed && a["condition"] == condition)
}

/// Custom limits for room1/A: SpO2 low at 91 (not the preset's 90), the systolic rise.
fn run_time_limits() -> Value {
    json!({"rule": [
        {"metric": "spo2", "direction": "low", "threshold": 91, "priority": "medium",
         "delay": "10s", "hysteresis": 1, "severe": {"threshold": 85, "priority": "high"}},
        {"metric": "nibp_sys", "direction": "high", "above_baseline": 40, "priority": "medium"},
        {"metric": "pulse_rate", "direction": "high", "threshold": 125, "priority": "medium",
         "delay": "10s"}
    ]})
}

fn restart_restores_the_alarm_system(how: Stop) {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new(dir.path())
        .bp_interval("10m")
        .write("restart.toml");
    // A: a short severe desaturation (a high alarm that latches). B: desaturated throughout.
    let b_desat =
        r#"events = [{ at = "0s", for = "2h", kind = "desaturation", spo2 = 80, ramp = "0s" }]"#;
    let first = write_scenario(
        dir.path(),
        "first.toml",
        r#"events = [{ at = "2s", for = "3s", kind = "desaturation", spo2 = 80, ramp = "0s" }]"#,
        b_desat,
    );
    let second = write_scenario(dir.path(), "second.toml", "", b_desat);
    let rt = tokio::runtime::Runtime::new().unwrap();

    let d = Daemon::demo(&config, &first);
    let (latched, acked, until_ms) = rt.block_on(async {
        d.ok(
            "PUT",
            "/api/beds/room1/A/limits",
            Some(run_time_limits()),
            200,
        )
        .await;
        d.ok(
            "POST",
            "/api/beds/room1/A/baseline",
            Some(json!({"sys": 120, "dia": 80})),
            200,
        )
        .await;
        d.ok(
            "POST",
            "/api/beds/room1/B/admit",
            Some(json!({"label": "B.B."})),
            201,
        )
        .await;
        d.ok(
            "POST",
            "/api/beds/room1/B/events",
            Some(json!({"kind": "baseline", "sys": 125, "dia": 82})),
            201,
        )
        .await;
        let list = alarms_until(&d, "A latched and B active", |l| {
            find(l, "room1/A", "spo2_low").is_some_and(|a| a["state"] == "latched")
                && find(l, "room1/B", "spo2_low").is_some_and(|a| a["state"] == "active")
        })
        .await;
        let latched = find(&list, "room1/A", "spo2_low").unwrap().clone();
        let b_id = find(&list, "room1/B", "spo2_low").unwrap()["id"]
            .as_u64()
            .unwrap();
        let acked = d
            .ok("POST", &format!("/api/alarms/{b_id}/ack"), None, 200)
            .await["alarm"]
            .clone();
        assert_eq!(acked["state"], "acknowledged");
        let pause = d
            .ok(
                "POST",
                "/api/beds/room1/A/audio-pause",
                Some(json!({"seconds": 300})),
                200,
            )
            .await;
        (latched, acked, ms(&pause["until"]))
    });
    d.stop(how);

    let d = Daemon::demo(&config, &second);
    rt.block_on(async {
        // The very first snapshot already has everything.
        let snap = d.snapshot().await;
        let a = bed(&snap, "room1/A");
        let restored = alarm(a, "spo2_low").expect("A's latched alarm is back");
        assert_eq!(restored["id"], latched["id"], "same id");
        assert_eq!(restored["state"], "latched");
        assert_eq!(restored["priority"], "high");
        assert_eq!(restored["started_ms"], latched["started_ms"]);
        assert_eq!(restored["audio"], "paused", "the pause still holds it");
        let until = ms(&a["audio_paused_until"]);
        assert!(
            (until - until_ms).abs() <= 1000,
            "the pause ends when it did: {until} vs {until_ms}"
        );
        let b = bed(&snap, "room1/B");
        let restored = alarm(b, "spo2_low").expect("B's acknowledged alarm is back");
        assert_eq!(restored["id"], acked["id"]);
        assert_eq!(restored["state"], "acknowledged");
        assert_eq!(restored["audio"], "silenced");
        assert_eq!(b["audio_paused_until"], Value::Null);

        // Limits changed at run time, and both baselines: the systolic rise is armed.
        let limits = d.ok("GET", "/api/beds/room1/A/limits", None, 200).await;
        assert_eq!(rule(&limits, "spo2_low")["effective"], 91.0, "{limits}");
        assert_eq!(limits["rules"].as_array().unwrap().len(), 3, "{limits}");
        assert_eq!(limits["baseline"]["sys"], 120.0);
        let rise = rule(&limits, "nibp_sys_rise");
        assert_eq!(
            (&rise["active"], &rise["effective"]),
            (&json!(true), &json!(160.0))
        );
        let limits = d.ok("GET", "/api/beds/room1/B/limits", None, 200).await;
        assert_eq!(limits["baseline"]["sys"], 125.0, "{limits}");
        let rise = rule(&limits, "nibp_sys_rise");
        assert_eq!(
            (&rise["active"], &rise["effective"]),
            (&json!(true), &json!(165.0))
        );

        // /api agrees, and the latched alarm is acknowledged like any other.
        let list = alarms_until(&d, "the restored alarms", |l| l.len() >= 2).await;
        assert_eq!(
            find(&list, "room1/A", "spo2_low").unwrap()["id"],
            latched["id"]
        );
        let id = latched["id"].as_u64().unwrap();
        d.ok("POST", &format!("/api/alarms/{id}/ack"), None, 200)
            .await;
        alarms_until(&d, "A's latched alarm cleared", |l| {
            find(l, "room1/A", "spo2_low").is_none()
        })
        .await;
    });
    d.stop(Stop::Term);
}

#[test]
fn after_sigterm_the_restarted_daemon_has_limits_baselines_alarms_and_the_pause() {
    restart_restores_the_alarm_system(Stop::Term);
}

#[test]
fn after_kill_9_the_restarted_daemon_has_limits_baselines_alarms_and_the_pause() {
    restart_restores_the_alarm_system(Stop::Kill9);
}

#[test]
fn a_dosed_session_without_a_baseline_raises_baseline_missing_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new(dir.path())
        .bp_interval("10m")
        .write("dosed.toml");
    let scen = write_scenario(dir.path(), "steady.toml", "", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = Daemon::demo(&config, &scen);
    let id = rt.block_on(async {
        let mut c = Client::connect(&format!("ws://{}/ws", d.addr)).await;
        d.ok(
            "POST",
            "/api/beds/room1/A/admit",
            Some(json!({"label": "A.A."})),
            201,
        )
        .await;
        let limits = d.ok("GET", "/api/beds/room1/A/limits", None, 200).await;
        assert_eq!(rule(&limits, "nibp_sys_rise")["active"], false);
        d.ok(
            "POST",
            "/api/beds/room1/A/events",
            Some(json!({"kind": "dose", "drug": "ketamine", "dose": 0.5, "unit": "mg/kg", "route": "IM"})),
            201,
        )
        .await;
        let raised = c
            .wait_for("baseline_missing raised", SOON, |m| {
                m["type"] == "alarm"
                    && m["event"] == "raised"
                    && m["alarm"]["condition"] == "baseline_missing"
            })
            .await;
        assert_eq!(raised["alarm"]["bed"], "room1/A");
        assert_eq!(raised["alarm"]["kind"], "technical");
        assert_eq!(raised["alarm"]["priority"], "medium");
        let limits = d.ok("GET", "/api/beds/room1/A/limits", None, 200).await;
        let note = rule(&limits, "nibp_sys_rise")["note"].as_str().unwrap().to_owned();
        assert!(note.contains("baseline_missing"), "{note}");
        c.close().await;
        // An engine event's state is group-committed moments after it (not before anyone is
        // told, as an action's is): wait until it is in the file, then kill.
        let file = dir.path().join("data").join(vitalsd::store::FILE_NAME);
        eventually(
            SOON,
            async || saved_state(&file, "room1/A").contains("baseline_missing").then_some(()),
            || "the state was never saved".to_owned(),
        )
        .await;
        raised["alarm"]["id"].clone()
    });
    d.stop(Stop::Kill9);

    let d = Daemon::demo(&config, &scen);
    rt.block_on(async {
        let snap = d.snapshot().await;
        let a = alarm(bed(&snap, "room1/A"), "baseline_missing")
            .expect("still dosed without a baseline after the restart");
        assert_eq!(a["id"], id);
        assert!(alarm(bed(&snap, "room1/B"), "baseline_missing").is_none());
        let mut c = Client::connect(&format!("ws://{}/ws", d.addr)).await;
        d.ok(
            "POST",
            "/api/beds/room1/A/events",
            Some(json!({"kind": "baseline", "sys": 122, "dia": 78})),
            201,
        )
        .await;
        c.wait_for("baseline_missing cleared", SOON, |m| {
            m["type"] == "alarm"
                && m["event"] == "cleared"
                && m["alarm"]["condition"] == "baseline_missing"
        })
        .await;
        let limits = d.ok("GET", "/api/beds/room1/A/limits", None, 200).await;
        assert_eq!(rule(&limits, "nibp_sys_rise")["active"], true);
    });
    d.stop(Stop::Term);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_or_pause_the_store_cannot_record_answers_503_and_changes_nothing() {
    let rig = Rig::start(
        scenario(
            r#"events = [{ at = "0s", for = "1h", kind = "desaturation", spo2 = 80, ramp = "0s" }]"#,
            "",
        ),
        "10m",
    )
    .await;
    let mut c = rig.client().await;
    let id = eventually_ok(SOON, async || {
        let (_, v) = rig.http("GET", "/api/alarms", None, None).await;
        match v["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["condition"] == "spo2_low")
        {
            Some(a) => Ok(a["id"].as_u64().unwrap()),
            None => Err(format!("no spo2_low raised: {v}")),
        }
    })
    .await;
    let hub = rig.daemon.as_ref().unwrap().hub.clone();
    let store = rig.daemon.as_ref().unwrap().store().unwrap();
    // A full disk: the file may not grow, and what free room it has is used up.
    store.set_size_limit(Some(1)).await.unwrap();
    let filler = vitalsd::store::StoredEvent {
        at_ms: 0,
        bed: None,
        kind: "filler".into(),
        alarm_id: None,
        condition: None,
        priority: None,
        actor: None,
        json: "{}".into(),
    };
    let mut filled = false;
    for _ in 0..100_000 {
        if store.alarm_event(filler.clone()).await.is_err() {
            filled = true;
            break;
        }
    }
    assert!(filled, "the store never filled up");

    let (status, body) = rig
        .http("POST", &format!("/api/alarms/{id}/ack"), None, None)
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("not confirmed"), "{body}");
    let (status, body) = rig
        .http(
            "POST",
            "/api/beds/room1/A/audio-pause",
            None,
            Some(r#"{"seconds": 60}"#),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    // Nothing changed: not in the engine, not at any dashboard.
    let published_before_recovery = hub.last_seq();
    let (_, alarms) = rig.http("GET", "/api/alarms", None, None).await;
    let a = alarms["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .unwrap();
    assert_eq!(
        (&a["state"], &a["audio"]),
        (&json!("active"), &json!("sounding"))
    );
    let (_, rooms) = rig.http("GET", "/api/rooms", None, None).await;
    assert_eq!(bed(&rooms, "room1/A")["audio_paused_until"], Value::Null);

    // The disk has room again: the same requests now take effect, and the first
    // acknowledgement and pause any dashboard sees are those.
    store.set_size_limit(None).await.unwrap();
    eventually_ok(SOON, async || {
        let (status, body) = rig
            .http("POST", &format!("/api/alarms/{id}/ack"), None, None)
            .await;
        if status == 200 {
            return Ok(());
        }
        assert_eq!(status, 503, "{body}");
        Err(format!("the store did not recover: {body}"))
    })
    .await;
    let (status, body) = rig
        .http(
            "POST",
            "/api/beds/room1/A/audio-pause",
            None,
            Some(r#"{"seconds": 60}"#),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let acked = c
        .wait_for("acknowledged", SOON, |m| {
            m["type"] == "alarm" && m["event"] == "acknowledged"
        })
        .await;
    assert!(
        acked["seq"].as_u64().unwrap() > published_before_recovery,
        "an acknowledgement was published while the store could not record it: {acked}"
    );
    let paused = c
        .wait_for("audio_paused", SOON, |m| {
            m["type"] == "alarm" && m["event"] == "audio_paused"
        })
        .await;
    assert!(
        paused["seq"].as_u64().unwrap() > published_before_recovery,
        "{paused}"
    );
    rig.stop().await;
}

#[test]
fn a_second_daemon_on_the_same_data_dir_is_refused_naming_the_dir_and_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    // `run` with the devices absent: the daemon runs, its devices show disconnected.
    let config = TestConfig::new(dir.path())
        .bp_interval("10m")
        .write("one.toml");
    let mut first = Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::util::listening_on(&mut first);
    let second = Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = second.wait_with_output().unwrap();
    let mut err = String::new();
    out.stderr.as_slice().read_to_string(&mut err).unwrap();
    assert!(
        !out.status.success(),
        "the second daemon must not run: {err}"
    );
    let data = dir.path().join("data");
    assert!(err.contains(&data.display().to_string()), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    let _ = first.kill();
    first.wait().unwrap();
    // Once the first is gone, the data dir is free again.
    let mut third = Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::util::listening_on(&mut third);
    let _ = third.kill();
    third.wait().unwrap();
}
