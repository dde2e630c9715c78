//! The durable record as users meet it: a `kill -9` of the real daemon loses no reading a
//! dashboard saw more than 200 ms earlier; sessions, history and exports over the API; the
//! `export` command; exports hold exactly the stored readings.

use crate::util::{Client, Rig, TestConfig, bin, eventually, scenario, write_scenario};
use rusqlite::Connection;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vitalsd::store::{FILE_NAME, StoredEvent};

/// A plain HTTP/1.0 request; returns the status code and the body.
async fn http(method: &str, url: &str, body: Option<Value>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = url.strip_prefix("http://").unwrap();
    let (host, path) = url.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} /{path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

async fn json_ok(method: &str, url: &str, body: Option<Value>, want: u16) -> Value {
    let (status, text) = http(method, url, body).await;
    assert_eq!(status, want, "{method} {url}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
}

#[test]
fn after_kill_9_every_reading_a_client_saw_200_ms_earlier_is_in_a_file_that_opens_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = TestConfig::new(dir.path()).write("kill.toml");
    let scen_path = write_scenario(dir.path(), "scenario.toml", "", "");
    let mut child = Command::new(bin())
        .args(["demo", "--config", cfg_path.to_str().unwrap()])
        .args(["--scenario", scen_path.to_str().unwrap()])
        .arg("--data-dir")
        .arg(dir.path().join("killed"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
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
            break rest.trim_end_matches('/').to_owned();
        }
    };
    std::thread::spawn(move || while rx.recv().is_ok() {});
    let rt = tokio::runtime::Runtime::new().unwrap();
    // (bed, bed_seq) of every reading the client received, with when it received it.
    let seen: Vec<((String, u64), Instant)> = rt.block_on(async {
        let mut client = Client::connect(&format!("ws://{addr}/ws")).await;
        let mut seen = Vec::new();
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            if let Some(m) = client.next(Duration::from_secs(5)).await
                && m["type"] == "reading"
            {
                let key = (
                    m["bed"].as_str().unwrap().to_owned(),
                    m["bed_seq"].as_u64().unwrap(),
                );
                seen.push((key, Instant::now()));
            }
        }
        seen
    });
    child.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    child.wait().unwrap();
    let early: Vec<&(String, u64)> = seen
        .iter()
        .filter(|(_, at)| killed.duration_since(*at) > Duration::from_millis(200))
        .map(|(k, _)| k)
        .collect();
    assert!(
        early.len() > 20,
        "the client saw only {} readings",
        early.len()
    );
    let conn = Connection::open(dir.path().join("killed").join(FILE_NAME)).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mut st = conn
        .prepare("SELECT bed, bed_seq FROM readings_named")
        .unwrap();
    let stored: HashSet<(String, u64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let missing: Vec<_> = early.iter().filter(|k| !stored.contains(**k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} readings missing, e.g. {:?}",
        missing.len(),
        early.len(),
        &missing[..missing.len().min(5)]
    );
}

/// Admits room1/A, records events, lets readings flow, raises and acknowledges an alarm in the
/// store, discharges; returns the rig (still running) and the session id.
async fn recorded_session() -> (Rig, i64) {
    let rig = Rig::start(scenario("", ""), "5s").await;
    let base = format!("http://{}/api/beds/room1/A", rig.addr());
    let admitted = json_ok(
        "POST",
        &format!("{base}/admit"),
        Some(json!({"label": "J.D.", "mrn": "MRN-0042", "weight_kg": 72.5})),
        201,
    )
    .await;
    let id = admitted["session"]["id"].as_i64().unwrap();
    let (status, text) = http(
        "POST",
        &format!("{base}/admit"),
        Some(json!({"label": "X"})),
    )
    .await;
    assert_eq!(status, 409, "{text}");
    for ev in [
        json!({"kind": "baseline", "sys": 122, "dia": 78, "pulse_rate": 72, "spo2": 97}),
        json!({"kind": "phase", "phase": "dosing"}),
        json!({"kind": "dose", "drug": "ketamine", "dose": 0.5, "unit": "mg/kg", "route": "IM"}),
    ] {
        json_ok("POST", &format!("{base}/events"), Some(ev), 201).await;
    }
    let (status, text) = http(
        "POST",
        &format!("{base}/events"),
        Some(json!({"kind": "dose", "drug": "ketamine", "dose": "lots", "unit": "mg", "route": "IM"})),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let store = rig.daemon.as_ref().unwrap().store().unwrap();
    let now = vitalsd::clock::wall_ms();
    let alarm = json!({"v":1,"type":"alarm","event":"raised","alarm":{"id":9,"device":"room1-A-oximeter","condition":"spo2_low","value":88.0,"limit":90.0}});
    for (kind, actor) in [("raised", None), ("acknowledged", Some("nurse1"))] {
        store
            .alarm_event(StoredEvent {
                at_ms: now,
                bed: Some("room1/A".into()),
                kind: kind.into(),
                alarm_id: Some(9),
                condition: Some("spo2_low".into()),
                priority: Some("high".into()),
                actor: actor.map(Into::into),
                json: alarm.to_string(),
            })
            .await
            .unwrap();
    }
    // Wait until an NIBP and plenty of oximeter readings are stored.
    eventually(
        Duration::from_secs(30),
        async || {
            let h = store
                .history("room1/A", vitalsd::model::Metric::NibpSys, 0, i64::MAX, 10)
                .await
                .unwrap();
            let s = store
                .history("room1/A", vitalsd::model::Metric::Spo2, 0, i64::MAX, 1000)
                .await
                .unwrap();
            (!h.is_empty() && s.len() >= 3).then_some(())
        },
        || "no NIBP reading stored".to_owned(),
    )
    .await;
    json_ok("POST", &format!("{base}/discharge"), None, 200).await;
    (rig, id)
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_history_readiness_and_exports_work_over_the_api() {
    let (rig, id) = recorded_session().await;
    let api = format!("http://{}/api", rig.addr());
    let s = json_ok("GET", &format!("{api}/sessions/{id}"), None, 200).await;
    let kinds: Vec<&str> = s["session"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["baseline", "phase", "dose"]);
    assert_eq!(s["session"]["events"][2]["actor"], "local");
    assert!(s["session"]["discharged_ms"].is_i64());
    let list = json_ok("GET", &format!("{api}/sessions?bed=room1/A"), None, 200).await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    let cur = json_ok("GET", &format!("{api}/beds/room1/A/session"), None, 200).await;
    assert_eq!(cur["session"], Value::Null);
    let ready = json_ok("GET", &format!("{api}/beds/room1/A/readiness"), None, 200).await;
    assert_eq!(ready["ready"], false);
    assert!(
        ready["reasons"][0]
            .as_str()
            .unwrap()
            .contains("no patient admitted"),
        "{ready}"
    );

    let hist = json_ok(
        "GET",
        &format!("{api}/beds/room1/A/history?metric=spo2&from=0&points=2"),
        None,
        200,
    )
    .await;
    let points = hist["points"].as_array().unwrap();
    assert!(!points.is_empty() && points.len() <= 2, "{hist}");
    assert_eq!(points[0]["min"], 97.0);
    assert_eq!(hist["unit"], "%");
    let (status, text) = http(
        "GET",
        &format!("{api}/beds/room1/A/history?metric=sp02"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        text.contains("sp02") && text.contains("pulse_rate"),
        "{text}"
    );
    let (status, _) = http(
        "GET",
        &format!("{api}/beds/room9/Z/history?metric=spo2"),
        None,
    )
    .await;
    assert_eq!(status, 404);

    let (status, html) = http(
        "GET",
        &format!("{api}/sessions/{id}/export?format=html"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        html.matches("role=\"img\"").count(),
        3,
        "SpO2, pulse rate and BP plots"
    );
    assert!(html.contains("Dose: ketamine 0.5 mg/kg IM"), "dose event");
    assert!(html.contains(">Dose 0.5 mg/kg</text>"), "dose marker");
    assert!(html.contains(">!!! SpO2 low</text>"), "alarm marker");
    assert!(
        html.contains("SpO2 low, high priority: acknowledged</td><td>nurse1"),
        "ack log"
    );
    assert!(html.contains("J.D."));
    let (status, text) = http(
        "GET",
        &format!("{api}/sessions/{id}/export?format=pdf"),
        None,
    )
    .await;
    assert_eq!(status, 422, "{text}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_csv_and_fhir_exports_hold_exactly_the_stored_readings() {
    let (mut rig, id) = recorded_session().await;
    let dir = rig.dir.path().to_owned();
    // The rig's config file does not exist on disk: write an equivalent one for the CLI.
    let cfg_path = TestConfig::new(&dir).bp_interval("5s").write("export.toml");
    // Graceful stop (everything is flushed), keeping the rig's temporary directory.
    rig.daemon.take().unwrap().shutdown().await;
    rig.sim.take().unwrap().shutdown().await;
    let conn = Connection::open(dir.join("data").join(FILE_NAME)).unwrap();
    let (from, to): (i64, i64) = conn
        .query_row(
            "SELECT admitted_ms, discharged_ms FROM sessions WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut st = conn
        .prepare(
            "SELECT bed, device, metric, value, invalid, received_ms, bed_seq FROM readings_named \
             WHERE bed = 'room1/A' AND received_ms BETWEEN ?1 AND ?2 ORDER BY received_ms, id",
        )
        .unwrap();
    type Row = (
        String,
        String,
        String,
        Option<f64>,
        Option<String>,
        i64,
        i64,
    );
    let stored: Vec<Row> = st
        .query_map([from, to], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        stored.iter().any(|r| r.2 == "nibp_sys"),
        "an NIBP reading is in the session"
    );

    let export = |format: &str| {
        let out = dir.join(format!("session.{format}"));
        let status = Command::new(bin())
            .args(["export", "--config", cfg_path.to_str().unwrap()])
            .args(["--session", &id.to_string(), "--format", format, "--out"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read_to_string(out).unwrap()
    };

    // CSV: one row per stored reading, same values.
    let csv = export("csv");
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), vitalsd::store::export::CSV_HEADER);
    let rows: Vec<Row> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[2].into(),
                f[3].into(),
                f[4].into(),
                (!f[6].is_empty()).then(|| f[6].parse().unwrap()),
                (!f[8].is_empty()).then(|| f[8].to_owned()),
                f[1].parse().unwrap(),
                f[11].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, stored);

    // FHIR: one Observation per stored non-waveform reading, with codes and units.
    let bundle: Value = serde_json::from_str(&export("fhir")).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    let entries = bundle["entry"].as_array().unwrap();
    let by_url: HashMap<&str, &Value> = entries
        .iter()
        .map(|e| (e["fullUrl"].as_str().unwrap(), &e["resource"]))
        .collect();
    assert_eq!(by_url.len(), entries.len(), "fullUrls are unique");
    assert!(
        by_url
            .keys()
            .all(|u| u.starts_with("urn:uuid:") && u.len() == 45)
    );
    let of_type = |t: &'static str| {
        entries
            .iter()
            .map(|e| &e["resource"])
            .filter(move |r| r["resourceType"] == t)
    };
    let patient = of_type("Patient").next().expect("a Patient");
    assert_eq!(patient["identifier"][0]["value"], "MRN-0042");
    let devices: BTreeMap<&str, &Value> = of_type("Device")
        .map(|d| (d["identifier"][0]["value"].as_str().unwrap(), d))
        .collect();
    assert_eq!(
        devices.keys().copied().collect::<Vec<_>>(),
        ["room1-A-nibp", "room1-A-oximeter"]
    );
    assert_eq!(devices["room1-A-oximeter"]["manufacturer"], "Masimo");
    let loinc: HashMap<&str, &str> = [
        ("spo2", "59408-5"),
        ("pulse_rate", "8867-4"),
        ("nibp_sys", "8480-6"),
        ("nibp_dia", "8462-4"),
        ("nibp_mean", "8478-0"),
    ]
    .into();
    let mut fhir_rows: Vec<(String, Option<f64>, i64)> = Vec::new();
    for o in of_type("Observation") {
        assert_eq!(o["status"], "final");
        let metric = o["code"]["text"].as_str().unwrap();
        let m = vitalsd::model::Metric::from_name(metric).unwrap();
        let codings = o["code"]["coding"].as_array().unwrap();
        let mdc = codings
            .iter()
            .find(|c| c["system"] == "urn:iso:std:iso:11073:10101")
            .unwrap();
        assert_eq!(mdc["code"], m.mdc_code().to_string());
        if let Some(code) = loinc.get(metric) {
            let l = codings
                .iter()
                .find(|c| c["system"] == "http://loinc.org")
                .unwrap();
            assert_eq!(l["code"], *code, "{metric}");
            assert_eq!(o["category"][0]["coding"][0]["code"], "vital-signs");
        }
        let value = if o["valueQuantity"].is_object() {
            let q = &o["valueQuantity"];
            assert_eq!(q["system"], "http://unitsofmeasure.org");
            assert_eq!(q["code"], m.unit());
            assert!(o.get("dataAbsentReason").is_none());
            Some(q["value"].as_f64().unwrap())
        } else {
            assert!(
                o["dataAbsentReason"]["coding"][0]["code"].is_string(),
                "{o}"
            );
            None
        };
        let dev = o["device"]["reference"].as_str().unwrap();
        assert_eq!(by_url[dev]["resourceType"], "Device");
        assert_eq!(
            by_url[o["subject"]["reference"].as_str().unwrap()]["resourceType"],
            "Patient"
        );
        let t =
            vitalsd::api::records::parse_time(o["effectiveDateTime"].as_str().unwrap()).unwrap();
        fhir_rows.push((metric.to_owned(), value, t));
    }
    let want: Vec<(String, Option<f64>, i64)> = stored
        .iter()
        .filter(|r| r.2 != "pleth")
        .map(|r| (r.2.clone(), r.3, r.5))
        .collect();
    assert_eq!(fhir_rows, want);
    let issue = of_type("DetectedIssue").next().expect("the alarm");
    assert_eq!(issue["severity"], "high");
    assert_eq!(issue["code"]["coding"][0]["code"], "spo2_low");
    assert_eq!(issue["mitigation"][0]["action"]["text"], "acknowledged");
    assert_eq!(issue["mitigation"][0]["author"]["display"], "nurse1");
    assert_eq!(
        by_url[issue["implicated"][0]["reference"].as_str().unwrap()]["resourceType"],
        "Device"
    );
    // Exporting marks the session exported (retention relies on it).
    let exported: Option<i64> = conn
        .query_row(
            "SELECT exported_ms FROM sessions WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(exported.is_some());
}
