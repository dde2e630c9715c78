//! The serial slice end to end: simulator -> pty/TCP -> daemon -> WebSocket.

use crate::util::{Rig, is_reading, scenario};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const SOON: Duration = Duration::from_secs(15);
/// A SunTech cycle: first start 2 s after connect, ~5 s inflation, ~20 s deflation.
const BP_CYCLE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_a_snapshot_then_readings_for_both_beds_with_the_simulated_values() {
    let rig = Rig::start(scenario("", ""), "10m").await;
    let mut c = rig.client().await;
    let snap = c.next(SOON).await.expect("a snapshot on connect");
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["v"], 2);
    assert_eq!(snap["simulated"], true);
    let beds: Vec<&str> = snap["rooms"][0]["beds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(beds, ["room1/A", "room1/B"]);

    // What the noise-free simulator sends for each bed, through three protocols.
    let want: BTreeMap<(&str, &str), f64> = [
        (("room1/A", "spo2"), 97.0),
        (("room1/A", "pulse_rate"), 72.0),
        (("room1/A", "perfusion_index"), 3.5),
        (("room1/B", "spo2"), 95.0),
        (("room1/B", "pulse_rate"), 64.0),
        (("room1/A", "nibp_sys"), 122.0),
        (("room1/A", "nibp_dia"), 78.0),
        (("room1/B", "nibp_sys"), 131.0),
        (("room1/B", "nibp_dia"), 84.0),
    ]
    .into_iter()
    .collect();
    let mut seen: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut pleth_b = 0;
    let mut last_seq = snap["seq"].as_u64().unwrap();
    let deadline = tokio::time::Instant::now() + BP_CYCLE;
    while seen.len() < want.len() && tokio::time::Instant::now() < deadline {
        let Some(m) = c.next(SOON).await else { break };
        if m["type"] == "heartbeat" {
            continue;
        }
        // Healthy devices raise no technical alarm: a cuff between measurements answers its
        // polls, so it is not `no_data`.
        assert!(
            !(m["type"] == "alarm" && m["event"] == "raised"),
            "no alarm for steady patients on healthy devices: {m}"
        );
        let seq = m["seq"].as_u64().unwrap();
        if m["batch_at"].as_u64().is_some_and(|i| i > 0) {
            // The next reading of the same `readings` message (one per device read).
            assert_eq!(seq, last_seq, "one seq per readings message: {m}");
        } else {
            assert!(
                seq > last_seq,
                "sequence numbers increase: {seq} after {last_seq}"
            );
        }
        last_seq = seq;
        assert_eq!(m["v"], 2, "every message is version 2: {m}");
        if m["type"] != "reading" {
            continue;
        }
        assert_eq!(
            m["simulated"], true,
            "every simulated value is flagged: {m}"
        );
        if is_reading(&m, "room1/B", "pleth") {
            pleth_b += 1;
        }
        let key = (m["bed"].as_str().unwrap(), m["metric"].as_str().unwrap());
        if want.contains_key(&key) && m["value"].is_number() {
            seen.insert((key.0.to_owned(), key.1.to_owned()), m.clone());
        }
    }
    for ((bed, metric), value) in &want {
        let got = seen
            .get(&(bed.to_string(), metric.to_string()))
            .unwrap_or_else(|| panic!("no {metric} reading for {bed}"));
        assert_eq!(got["value"].as_f64(), Some(*value), "{bed} {metric}: {got}");
        assert_eq!(got["invalid"], Value::Null);
        assert!(got["mdc"].as_u64().is_some());
    }
    assert!(pleth_b > 0, "the Nonin's waveform reaches the client");
    // One Masimo line is one `readings` message: SpO2, pulse rate and PI together.
    let a_spo2 = &seen[&("room1/A".to_owned(), "spo2".to_owned())];
    assert!(a_spo2["batch"].as_u64() >= Some(3), "{a_spo2}");
    c.close().await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplugging_a_device_shows_disconnected_and_replugging_resumes_readings() {
    // B's oximeter (pty) and A's cuff (TCP) vanish at 3 s for 3 s.
    let rig = Rig::start(
        scenario(
            r#"events = [{ at = "3s", for = "3s", kind = "disconnect", device = "bp" }]"#,
            r#"events = [{ at = "3s", for = "3s", kind = "disconnect", device = "oximeter" }]"#,
        ),
        "10m",
    )
    .await;
    let mut c = rig.client().await;
    // Both devices go away and come back; their messages interleave.
    let mut disconnected = std::collections::BTreeSet::new();
    let mut back = std::collections::BTreeSet::new();
    c.wait_for("both devices disconnected then connected", SOON, |m| {
        if m["type"] == "device_status" {
            let device = m["device"].as_str().unwrap().to_owned();
            if m["status"] == "disconnected" {
                assert!(m["detail"].is_string(), "a disconnect says why: {m}");
                disconnected.insert(device);
            } else if m["status"] == "connected" && disconnected.contains(&device) {
                back.insert(device);
            }
        }
        back.len() == 2
    })
    .await;
    assert_eq!(
        back.into_iter().collect::<Vec<_>>(),
        ["room1-A-nibp", "room1-B-oximeter"]
    );
    // Readings from the replugged oximeter resume.
    c.wait_for("B's SpO2 after the replug", SOON, |m| {
        is_reading(m, "room1/B", "spo2") && m["value"] == 95.0
    })
    .await;
    // The daemon's own view agrees.
    let rooms: Value = reqwest_get(&format!("http://{}/api/rooms", rig.addr())).await;
    let devices = rooms["rooms"][0]["beds"][1]["devices"].as_array().unwrap();
    assert_eq!(devices[0]["id"], "room1-B-oximeter");
    assert_eq!(devices[0]["status"], "connected");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_line_never_crashes_the_daemon_and_good_frames_still_decode() {
    let garbage = r#"events = [{ at = "0s", for = "1h", kind = "garbage", device = "oximeter" }, { at = "0s", for = "1h", kind = "garbage", device = "bp" }]"#;
    let rig = Rig::start(scenario(garbage, garbage), "5s").await;
    let mut c = rig.client().await;
    for (bed, metric, value) in [
        ("room1/A", "spo2", 97.0),
        ("room1/B", "spo2", 95.0),
        ("room1/A", "nibp_sys", 122.0),
    ] {
        c.wait_for(&format!("{bed} {metric} through garbage"), BP_CYCLE, |m| {
            is_reading(m, bed, metric) && m["value"].is_number()
        })
        .await;
        let got = c
            .wait_for(&format!("{bed} {metric} again"), BP_CYCLE, |m| {
                is_reading(m, bed, metric) && m["value"].is_number()
            })
            .await;
        assert_eq!(got["value"].as_f64(), Some(value), "{got}");
    }
    let health: Value = reqwest_get(&format!("http://{}/healthz", rig.addr())).await;
    assert_eq!(health["status"], "ok");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finger_out_shows_as_no_value_with_the_reason_never_a_number() {
    let rig = Rig::start(
        scenario(
            "",
            r#"events = [{ at = "0s", for = "1h", kind = "finger_out" }]"#,
        ),
        "10m",
    )
    .await;
    let mut c = rig.client().await;
    for metric in ["spo2", "pulse_rate"] {
        let m = c
            .wait_for(&format!("B {metric}"), SOON, |m| {
                is_reading(m, "room1/B", metric)
            })
            .await;
        assert_eq!(m["value"], Value::Null, "{m}");
        assert!(m["invalid"].is_string(), "{m}");
        let flags: Vec<&str> = m["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert!(flags.contains(&"no_finger"), "{m}");
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_resumes_with_since_gets_every_message_it_missed() {
    let rig = Rig::start(scenario("", ""), "10m").await;
    let mut c = rig.client().await;
    c.wait_for("a reading", SOON, |m| m["type"] == "reading")
        .await;
    let since = c.last_seq;
    let mut watcher = rig.client().await;
    c.close().await;
    // Away until 20 messages have gone by (a second client sees them).
    watcher
        .wait_for("20 messages the first client misses", SOON, |m| {
            m["seq"].as_u64().is_some_and(|s| s > since + 20)
        })
        .await;
    let mut c =
        crate::util::Client::connect(&format!("ws://{}/ws?since={since}", rig.addr())).await;
    let snap = c.next(SOON).await.unwrap();
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["resumed"], true);
    // Then the missed messages, in order, starting right after `since`.
    let mut expect = since + 1;
    let mut replayed = 0;
    while replayed < 20 {
        let m = c.next(SOON).await.unwrap();
        // Heartbeats, and the rest of a `readings` message (its first reading has its seq).
        if m["type"] == "heartbeat" || m["batch_at"].as_u64().is_some_and(|i| i > 0) {
            continue;
        }
        assert_eq!(m["seq"].as_u64(), Some(expect), "no gap after resume: {m}");
        expect += 1;
        replayed += 1;
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_slow_another() {
    let rig = Rig::start(scenario("", ""), "10m").await;
    // The stalled client connects and never reads again.
    let stalled = rig.client().await;
    let mut live = rig.client().await;
    let mut readings = 0;
    // ~75 pleth readings a second from B alone: 600 readings is several seconds of traffic,
    // far more than fits the stalled client's socket buffers.
    while readings < 600 {
        let m = live
            .next(SOON)
            .await
            .expect("the live client keeps receiving");
        if m["type"] == "reading" {
            readings += 1;
        }
    }
    drop(stalled);
    rig.stop().await;
}

/// GET a JSON document.
async fn reqwest_get(url: &str) -> Value {
    let url = url.strip_prefix("http://").unwrap();
    let (host, path) = url.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    let (head, json) = body.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    serde_json::from_str(json).unwrap()
}

/// Issue 9, "damaged lines become numbers": the real binary reads a Masimo over TCP from a
/// device server played by the test. A line cut inside a field (`BPM=07` + CR LF, real 072)
/// and two lines run together after a lost CR LF (the second's SpO2 80 hidden behind the
/// first's 98) give no value at all and are counted as bad frames in the log; the good line
/// after them gives its values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_masimo_line_gives_no_value_and_the_next_good_line_does() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    use tokio::io::AsyncWriteExt;

    let dir = tempfile::tempdir().unwrap();
    let device_server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = device_server.local_addr().unwrap().port();
    let cfg = dir.path().join("masimo.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
listen = "127.0.0.1:0"
data_dir = "{dir}/data"

[[rooms]]
id = "room1"
name = "Room 1"

[[rooms.recliners]]
id = "A"

[[rooms.recliners.devices]]
id = "room1-A-oximeter"
profile = "masimo-rad8"
tcp = "127.0.0.1:{port}"
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(crate::util::bin())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("VITALSD_LOG", "vitalsd=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    /// Kills the daemon if the test fails before it is stopped (disarmed once it is reaped).
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
    let reap = Reap(child.id());
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(SOON)
            .expect("the daemon prints where it listens");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim_end_matches('/').to_owned();
        }
    };
    let mut c = crate::util::Client::connect(&format!("ws://{addr}/ws")).await;
    let (mut device, _) = tokio::time::timeout(SOON, device_server.accept())
        .await
        .expect("the daemon connects to the device server")
        .unwrap();

    // Lines in the Rad-8 ASCII 1 layout (devices.md §6.1, yahnatan/pulseox README).
    let line = |time: &str, spo2: &str, bpm: &str| {
        format!(
            "02/22/16 {time} SN=0000056661 SPO2={spo2}% BPM={bpm} PI=03.60% SPCO=--.-% \
             SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
        )
    };
    let first = line("22:47:45", "097", "072");
    let cut = line("22:47:46", "096", "072");
    let cut = format!("{}\r\n", &cut[..cut.find("BPM=07").unwrap() + 6]);
    let merged = format!(
        "{}{}",
        line("22:47:47", "098", "072").trim_end(),
        line("22:47:48", "080", "072")
    );
    let last = line("22:47:49", "091", "072");
    for part in [&first, &cut, &merged, &last] {
        device.write_all(part.as_bytes()).await.unwrap();
        device.flush().await.unwrap();
    }
    let mut readings = Vec::new();
    c.wait_for("the last good line's SpO2", SOON, |m| {
        if crate::util::is_reading(m, "room1/A", "spo2")
            || crate::util::is_reading(m, "room1/A", "pulse_rate")
            || crate::util::is_reading(m, "room1/A", "perfusion_index")
        {
            readings.push((m["metric"].as_str().unwrap().to_owned(), m["value"].clone()));
        }
        crate::util::is_reading(m, "room1/A", "spo2") && m["value"] == 91.0
    })
    .await;
    // Then the perfusion index of that line, and nothing else.
    c.wait_for("the last good line's PI", SOON, |m| {
        if crate::util::is_reading(m, "room1/A", "spo2")
            || crate::util::is_reading(m, "room1/A", "pulse_rate")
            || crate::util::is_reading(m, "room1/A", "perfusion_index")
        {
            readings.push((m["metric"].as_str().unwrap().to_owned(), m["value"].clone()));
        }
        crate::util::is_reading(m, "room1/A", "perfusion_index")
    })
    .await;
    let want: Vec<(String, Value)> = [
        ("spo2", 97.0),
        ("pulse_rate", 72.0),
        ("perfusion_index", 3.6),
        ("spo2", 91.0),
        ("pulse_rate", 72.0),
        ("perfusion_index", 3.6),
    ]
    .into_iter()
    .map(|(m, v)| (m.to_owned(), Value::from(v)))
    .collect();
    assert_eq!(
        readings, want,
        "only the whole lines give values, never 7 or 80"
    );
    c.close().await;
    drop(device);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    std::mem::forget(reap);
    assert!(status.success(), "exit status {status}");
    let log = log.join().unwrap();
    // The decoder's count of bad frames, as the log reports it per read.
    let bad_frames: u32 = log
        .lines()
        .filter(|l| l.contains("room1-A-oximeter"))
        .filter_map(|l| l.split("bad_frames=").nth(1))
        .filter_map(|n| n.split_whitespace().next()?.parse::<u32>().ok())
        .sum();
    assert_eq!(bad_frames, 2, "the cut line and the merged lines: {log}");
}
