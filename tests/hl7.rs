//! HL7 over MLLP against an independent receiver: Python's `hl7` package (python-hl7) runs
//! tests/support/hl7_receiver.py, which parses every message with `hl7.parse`, checks its
//! structure, ACKs it (AA, or AE/AR on demand) and writes what it parsed as JSON lines that
//! these tests read. scripts/test installs the package when it is missing.
//!
//! Everything runs for real: the `vitalsd` binary (`demo --config`, simulated devices), real
//! TCP, the store's SQLite file, `kill -9`.

use crate::util::{TestConfig, bin, eventually, free_port, http, listening_on, scenario_text};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SOON: Duration = Duration::from_secs(30);

/// The receiver script, run with `python3` (or `$VITALSD_PYTHON`).
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
    ack_file: PathBuf,
}

fn python() -> String {
    std::env::var("VITALSD_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

impl Receiver {
    fn start(dir: &Path, name: &str, port: u16) -> Receiver {
        Receiver::start_with(dir, name, port, &[])
    }

    /// With extra arguments (`--tls-cert`, `--tls-key`).
    fn start_with(dir: &Path, name: &str, port: u16, extra: &[&str]) -> Receiver {
        let out = dir.join(format!("{name}.jsonl"));
        let ack_file = dir.join(format!("{name}.ack"));
        let child = Receiver::spawn(port, &out, &ack_file, extra);
        Receiver {
            child,
            port,
            out,
            ack_file,
        }
    }

    fn spawn(port: u16, out: &Path, ack_file: &Path, extra: &[&str]) -> Child {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/hl7_receiver.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--port", &port.to_string()])
            .args(["--out", out.to_str().unwrap()])
            .args(["--ack-file", ack_file.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): the HL7 tests need python3 with the `hl7` package \
                     (scripts/test installs it: python3 -m pip install hl7)",
                    python()
                )
            });
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("listening on"),
            "the HL7 receiver did not start (is the python `hl7` package installed? \
             scripts/test installs it): {line:?}"
        );
        child
    }

    /// Makes it answer `code` (AA, AE, AR) from now on.
    fn answer(&self, code: &str) {
        std::fs::write(&self.ack_file, code).unwrap();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.child = Receiver::spawn(self.port, &self.out, &self.ack_file, &[]);
    }

    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until the messages received satisfy `pred`.
    async fn wait(
        &self,
        what: &str,
        within: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        eventually(
            within,
            async || Some(self.messages()).filter(|m| pred(m)),
            || {
                format!(
                    "no {what} within {within:?}; received: {}",
                    serde_json::to_string_pretty(&self.messages()).unwrap_or_default()
                )
            },
        )
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The real binary on a config with `extra` tables; a steady scenario plus `events_a`.
struct Daemon {
    child: Child,
    addr: SocketAddr,
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("site.toml");
    if path.exists() {
        return path;
    }
    TestConfig::new(dir)
        .bp_interval("1m")
        .extra(extra)
        .write("site.toml")
}

impl Daemon {
    fn start(dir: &Path, config: &Path, events_a: &str) -> Daemon {
        let scen = dir.join("scenario.toml");
        std::fs::write(&scen, scenario_text(events_a, "")).unwrap();
        let mut child = Command::new(bin())
            .args(["demo", "--config", config.to_str().unwrap()])
            .args(["--scenario", scen.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = listening_on(&mut child);
        Daemon { child, addr }
    }

    fn kill_9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    async fn alarms(&self) -> Vec<Value> {
        let (status, body) = http(self.addr, "GET", "/api/alarms", None, None).await;
        assert_eq!(status, 200, "{body}");
        body["alarms"].as_array().cloned().unwrap_or_default()
    }

    async fn wait_alarm(&self, condition: &str, present: bool) {
        eventually(
            Duration::from_secs(60),
            async || {
                let has = self
                    .alarms()
                    .await
                    .iter()
                    .any(|a| a["condition"] == condition);
                (has == present).then_some(())
            },
            || {
                format!(
                    "{condition} never {}",
                    if present { "raised" } else { "cleared" }
                )
            },
        )
        .await;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn endpoint(kind: &str, port: u16, extra: &str) -> String {
    format!(
        "[[hl7]]\nname = \"{kind}\"\nkind = \"{kind}\"\nendpoint = \"127.0.0.1:{port}\"\n\
         sending_application = \"vitalsd\"\nsending_facility = \"Clinic\"\n\
         receiving_application = \"EHR\"\nreceiving_facility = \"Hospital\"\n{extra}\n"
    )
}

fn obx<'a>(m: &'a Value, code: &str) -> Option<&'a Value> {
    m["obx"].as_array()?.iter().find(|o| o["code"] == code)
}

fn ids(ms: &[Value]) -> Vec<i64> {
    ms.iter()
        .filter_map(|m| m["control_id"].as_str()?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observations_reach_the_ehr_as_pcd01_and_alarms_the_alarm_manager_as_pcd04() {
    let dir = tempfile::tempdir().unwrap();
    let ehr = Receiver::start(dir.path(), "ehr", free_port());
    let acm = Receiver::start(dir.path(), "acm", free_port());
    let extra = format!(
        "{}\n{}",
        endpoint("pcd01", ehr.port, "interval = \"5s\""),
        endpoint("pcd04", acm.port, "")
    );
    let cfg = config(dir.path(), &extra);
    let d = Daemon::start(
        dir.path(),
        &cfg,
        r#"events = [{ at = "15s", for = "1h", kind = "desaturation", spo2 = 80, ramp = "1s" }]"#,
    );
    let (status, body) = http(
        d.addr,
        "POST",
        "/api/beds/room1/A/admit",
        None,
        Some(r#"{"label":"Partner A","mrn":"MRN-0042"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Periodic numerics of bed A, with the patient admitted.
    let got = ehr
        .wait(
            "a periodic report of room1/A with its patient",
            SOON,
            |ms| {
                ms.iter().any(|m| {
                    m["location"] == "^room1^A^Clinic"
                        && m["pid"]["label"] == "Partner A"
                        && obx(m, "150456").is_some()
                })
            },
        )
        .await;
    for m in &got {
        assert_eq!(m["errors"], serde_json::json!([]), "{m}");
        assert_eq!(m["type"], "ORU^R01^ORU_R01");
        assert_eq!(
            m["profile"],
            "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
        );
        assert_eq!(m["sending"], serde_json::json!(["vitalsd", "Clinic"]));
    }
    let a = got
        .iter()
        .find(|m| m["pid"]["label"] == "Partner A" && obx(m, "150456").is_some())
        .unwrap();
    assert_eq!(a["pid"]["id"], "MRN-0042^^^Clinic^MR");
    let spo2 = obx(a, "150456").unwrap();
    assert_eq!(spo2["name"], "MDC_PULS_OXIM_SAT_O2");
    assert_eq!(spo2["value"], "97", "{spo2}");
    assert_eq!(spo2["unit_code"], "262688");
    assert_eq!(spo2["ucum"], "%");
    assert_eq!(spo2["ucum_system"], "UCUM");
    assert_eq!(spo2["status"], "R");
    assert_eq!(spo2["equipment"], "room1-A-oximeter^oximeter");
    let pr = obx(a, "149530").unwrap();
    assert_eq!(
        (pr["value"].as_str(), pr["ucum"].as_str()),
        (Some("72"), Some("/min"))
    );

    // Every NIBP measurement: its own report.
    let got = ehr
        .wait("an NIBP report of room1/A", Duration::from_secs(60), |ms| {
            ms.iter()
                .any(|m| m["location"] == "^room1^A^Clinic" && obx(m, "150021").is_some())
        })
        .await;
    let nibp = got
        .iter()
        .find(|m| m["location"] == "^room1^A^Clinic" && obx(m, "150021").is_some())
        .unwrap();
    let sys = obx(nibp, "150021").unwrap();
    assert_eq!(
        (sys["value"].as_str(), sys["ucum"].as_str()),
        (Some("122"), Some("mm[Hg]"))
    );
    assert_eq!(sys["unit_code"], "266016");
    assert_eq!(obx(nibp, "150022").unwrap()["value"], "78");
    assert_eq!(sys["equipment"], "room1-A-nibp^bp");
    // Control ids: unique, increasing in the order sent.
    let all = ids(&ehr.messages());
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");

    // The desaturation: ORU^R40 to the alarm manager, with the alarm's identity.
    let got = acm
        .wait("spo2_low as ORU^R40", Duration::from_secs(60), |ms| {
            ms.iter().any(|m| {
                obx(m, "196670").is_some_and(|o| {
                    o["value"]
                        .as_str()
                        .is_some_and(|v| v.starts_with("spo2_low"))
                })
            })
        })
        .await;
    let raised = got.iter().find(|m| obx(m, "196670").is_some()).unwrap();
    assert_eq!(raised["errors"], serde_json::json!([]), "{raised}");
    assert_eq!(raised["type"], "ORU^R40^ORU_R40");
    assert_eq!(
        raised["profile"],
        "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4.1^ISO"
    );
    assert_eq!(raised["obr"]["service"], "196616^MDC_EVT_ALARM^MDC");
    assert_eq!(raised["pid"]["label"], "Partner A");
    let evt = obx(raised, "196670").unwrap();
    assert!(evt["flags"].as_str().unwrap().starts_with("L~P"), "{evt}");
    assert!(evt["flags"].as_str().unwrap().ends_with("~SP"), "{evt}");
    assert_eq!(obx(raised, "68481").unwrap()["value"], "start");
    assert_eq!(obx(raised, "68482").unwrap()["value"], "active");
    let value = obx(raised, "150456").unwrap();
    assert!(value["range"].as_str().unwrap().starts_with('>'), "{value}");
    let alarm_id = d
        .alarms()
        .await
        .iter()
        .find(|a| a["condition"] == "spo2_low")
        .and_then(|a| a["id"].as_u64())
        .expect("spo2_low is current");
    assert_eq!(raised["obr"]["filler"], format!("{alarm_id}^vitalsd"));

    // Acknowledged: the same alarm, inactivation state alert-acknowledged.
    let (status, body) = http(
        d.addr,
        "POST",
        &format!("/api/alarms/{alarm_id}/ack"),
        None,
        Some("{}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    acm.wait("the acknowledgement as ORU^R40", SOON, |ms| {
        ms.iter().any(|m| {
            m["obr"]["filler"] == format!("{alarm_id}^vitalsd")
                && obx(m, "68483").is_some_and(|o| o["value"] == "alert-acknowledged")
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ehr_outage_of_20_s_loses_nothing_keeps_the_order_and_raises_then_clears_hl7_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut ehr = Receiver::start(dir.path(), "ehr", free_port());
    let cfg = config(
        dir.path(),
        &endpoint(
            "pcd01",
            ehr.port,
            "interval = \"5s\"\nack_timeout = \"2s\"\ndown_after = \"5s\"",
        ),
    );
    let d = Daemon::start(dir.path(), &cfg, "");
    ehr.wait("a first report", SOON, |ms| !ms.is_empty()).await;
    ehr.stop();
    let down_at = tokio::time::Instant::now();
    d.wait_alarm("hl7_down", true).await;
    // The outage lasts 20 s; reports keep being made meanwhile. A fixed wait on purpose: the
    // outage's length is the scenario (reports pile up while real time passes).
    tokio::time::sleep_until(down_at + Duration::from_secs(20)).await;
    let before = ehr.messages().len();
    ehr.restart();
    d.wait_alarm("hl7_down", false).await;
    // At least the three reports made during the outage arrive, then new ones.
    let got = ehr
        .wait("the reports queued during the outage", SOON, |ms| {
            ms.len() >= before + 4
        })
        .await;
    let all = ids(&got);
    let mut unique = all.clone();
    unique.dedup(); // a message may be received twice: once before a lost ACK, once again
    assert!(unique.windows(2).all(|w| w[0] < w[1]), "in order: {all:?}");
    assert!(
        unique.windows(2).all(|w| w[1] == w[0] + 1),
        "no control id missing: {unique:?}"
    );
    for m in &got {
        assert_eq!(m["errors"], serde_json::json!([]), "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_when_the_daemon_is_killed_are_sent_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(
        dir.path(),
        &endpoint("pcd01", port, "interval = \"5s\"\nack_timeout = \"2s\""),
    );
    // No receiver yet: every report stays queued.
    let mut d = Daemon::start(dir.path(), &cfg, "");
    let db = dir.path().join("data/vitalsd.sqlite");
    let queued = |db: &Path| -> Vec<i64> {
        let Ok(c) =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        else {
            return Vec::new();
        };
        let Ok(mut st) = c.prepare("SELECT id FROM hl7_outbox ORDER BY id") else {
            return Vec::new();
        };
        st.query_map([], |r| r.get(0))
            .map(|rows| rows.filter_map(Result::ok).collect())
            .unwrap_or_default()
    };
    eventually(
        Duration::from_secs(60),
        async || (queued(&db).len() >= 3).then_some(()),
        || "reports are queued in hl7_outbox".to_owned(),
    )
    .await;
    d.kill_9();
    let left = queued(&db);
    assert!(left.len() >= 3, "{left:?}");
    let ehr = Receiver::start(dir.path(), "ehr", port);
    let d2 = Daemon::start(dir.path(), &cfg, "");
    let got = ehr
        .wait("the queued reports after the restart", SOON, |ms| {
            let got = ids(ms);
            left.iter().all(|id| got.contains(id)) && got.iter().any(|id| id > left.last().unwrap())
        })
        .await;
    let all = ids(&got);
    // The ones left first, in order; then new ones with higher ids (never reused).
    assert_eq!(&all[..left.len()], &left[..], "{all:?}");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    drop(d2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_receiver_keeps_answering_ae_is_given_up_after_three_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let ehr = Receiver::start(dir.path(), "ehr", free_port());
    ehr.answer("AE");
    let cfg = config(
        dir.path(),
        &endpoint("pcd01", ehr.port, "interval = \"5s\""),
    );
    let _d = Daemon::start(dir.path(), &cfg, "");
    let got = ehr
        .wait("three AE answers for one message", SOON, |ms| {
            let all = ids(ms);
            all.first()
                .is_some_and(|f| all.iter().filter(|i| *i == f).count() >= 3)
        })
        .await;
    let first = ids(&got)[0];
    ehr.answer("AA");
    let got = ehr
        .wait("the next message", SOON, |ms| {
            ids(ms).iter().any(|i| *i > first)
        })
        .await;
    let all = ids(&got);
    assert_eq!(
        all.iter().filter(|i| **i == first).count(),
        3,
        "given up after 3: {all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_hl7_sends_every_nibp_measurement_to_the_given_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ehr = Receiver::start(dir.path(), "ehr", free_port());
    let cfg = config(dir.path(), "");
    let scen = dir.path().join("scenario.toml");
    std::fs::write(&scen, scenario_text("", "")).unwrap();
    let mut child = Command::new(bin())
        .args(["demo", "--config", cfg.to_str().unwrap()])
        .args(["--scenario", scen.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .args(["--hl7", &format!("mllp://127.0.0.1:{}", ehr.port)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _addr = listening_on(&mut child);
    let d = Daemon { child, addr: _addr };
    let got = ehr
        .wait("an NIBP report of room1/B", Duration::from_secs(60), |ms| {
            ms.iter()
                .any(|m| m["location"] == "^room1^B^vitalsd" && obx(m, "150021").is_some())
        })
        .await;
    let m = got
        .iter()
        .find(|m| m["location"] == "^room1^B^vitalsd" && obx(m, "150021").is_some())
        .unwrap();
    assert_eq!(m["errors"], serde_json::json!([]), "{m}");
    assert_eq!(m["sending"], serde_json::json!(["vitalsd", "vitalsd"]));
    assert_eq!(obx(m, "150021").unwrap()["value"], "131");
    assert_eq!(obx(m, "150022").unwrap()["value"], "84");
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_go_over_tls_to_an_endpoint_whose_certificate_the_ca_file_vouches_for() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("ehr.pem"), dir.path().join("ehr.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    let ehr = Receiver::start_with(
        dir.path(),
        "ehr",
        free_port(),
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    let cfg = config(
        dir.path(),
        &format!(
            "[[hl7]]\nkind = \"pcd01\"\nendpoint = \"mllps://localhost:{}\"\nca = \"{}\"\ninterval = \"5s\"\n",
            ehr.port,
            cert_path.display()
        ),
    );
    let _d = Daemon::start(dir.path(), &cfg, "");
    let got = ehr
        .wait("a report over TLS", SOON, |ms| {
            ms.iter().any(|m| obx(m, "150456").is_some())
        })
        .await;
    assert_eq!(got[0]["errors"], serde_json::json!([]), "{}", got[0]);
}
