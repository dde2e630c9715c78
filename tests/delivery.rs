//! Delivery under overload, against the real binary: a WebSocket client that stops reading
//! while one device floods stays connected and, once it reads again, gets every alarm raised
//! meanwhile (docs/api.md, Delivery policy).

use crate::util::{Client, bin, http, listening_on};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn config(dir: &std::path::Path, a: u16, b: u16) -> String {
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
tcp = "127.0.0.1:{a}"
# This test floods on purpose to back up the client's queue: the source's flood throttle
# (`device_flooding`, tests/overload.rs) must not stop the flood before it reaches the hub.
max_rate = 1000000

[[rooms.recliners]]
id = "B"
[[rooms.recliners.devices]]
id = "room1-B-oximeter"
profile = "masimo-rad8"
tcp = "127.0.0.1:{b}"
"#,
        dir = dir.display()
    )
}

fn line(spo2: u32, pi: f64) -> String {
    format!(
        "11/22/26 04:00:00 SN=0000056661 SPO2={spo2:03}% BPM=072 PI={pi:05.2}% SPCO=--.-% \
         SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000000\r\n"
    )
}

/// Stops the daemon however the test ends.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `burst` lines every `period`, every `desat_every`th of them desaturated, and on
/// request one more desaturated line. A desaturated line (SpO2 80 %, in the severe band)
/// raises a high-priority `spo2_low` at once, latched when the next line is normal, active
/// again (`updated`) at the next desaturated one.
fn device(
    mut link: tokio::net::TcpStream,
    period: Duration,
    burst: usize,
    desat_every: u64,
) -> mpsc::UnboundedSender<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        let mut n = 0u64;
        loop {
            tick.tick().await;
            let mut out = String::new();
            if rx.try_recv().is_ok() {
                out.push_str(&line(80, 1.0));
            }
            for _ in 0..burst {
                n += 1;
                let spo2 = if n.is_multiple_of(desat_every) {
                    80
                } else {
                    97
                };
                out.push_str(&line(spo2, (n % 2000) as f64 / 100.0));
            }
            if link.write_all(out.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    tx
}

async fn current_spo2_alarm(addr: std::net::SocketAddr, bed: &str) -> Option<Value> {
    let (_, body) = http(addr, "GET", "/api/alarms", None, None).await;
    body["alarms"]
        .as_array()?
        .iter()
        .find(|a| a["bed"] == bed && a["condition"] == "spo2_low")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_under_a_flood_stays_connected_and_gets_every_new_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let path = dir.path().join("vitalsd.toml");
    std::fs::write(
        &path,
        config(
            dir.path(),
            la.local_addr().unwrap().port(),
            lb.local_addr().unwrap().port(),
        ),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--config", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = listening_on(&mut child);
    let _daemon = Daemon(child);
    let (a, _) = tokio::time::timeout(Duration::from_secs(30), la.accept())
        .await
        .expect("the daemon connects to device A")
        .unwrap();
    let (b, _) = tokio::time::timeout(Duration::from_secs(30), lb.accept())
        .await
        .expect("the daemon connects to device B")
        .unwrap();
    // Bed A floods: 20 lines every 5 ms (about 4 000 lines and 12 000 readings a second),
    // every third line desaturated: some 2 700 alarm messages a second about its one alarm,
    // more in a few seconds than the 10 000 that once cut a client off.
    let _flood = device(a, Duration::from_millis(5), 20, 3);
    // Bed B: a line every 100 ms, desaturated only when the test says so.
    let desat_b = device(b, Duration::from_millis(100), 1, u64::MAX);

    let mut client = Client::connect(&format!("ws://{addr}/ws")).await;
    let snapshot = client
        .next(Duration::from_secs(10))
        .await
        .expect("a snapshot");
    assert_eq!(snapshot["type"], "snapshot");
    client
        .wait_for("bed B's first reading", Duration::from_secs(30), |v| {
            crate::util::is_reading(v, "room1/B", "spo2")
        })
        .await;

    // The client stops reading. Meanwhile bed B desaturates three times, a nurse
    // acknowledging each latched alarm so that the next one is a new alarm.
    let mut raised: BTreeSet<u64> = BTreeSet::new();
    for _ in 0..3 {
        desat_b.send(()).unwrap();
        let mut found = None;
        for _ in 0..100 {
            if let Some(a) = current_spo2_alarm(addr, "room1/B").await
                && !raised.contains(&a["id"].as_u64().unwrap())
            {
                found = Some(a);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let alarm = found.expect("bed B raises spo2_low");
        let id = alarm["id"].as_u64().unwrap();
        raised.insert(id);
        // Wait until it has latched (the next normal line), then acknowledge it.
        let (mut acked, mut gone) = (false, false);
        for _ in 0..100 {
            if !acked {
                let ack = format!("/api/alarms/{id}/ack");
                acked = http(addr, "POST", &ack, None, Some("{}")).await.0 == 200;
            }
            gone = current_spo2_alarm(addr, "room1/B")
                .await
                .is_none_or(|s| s["id"].as_u64() != Some(id));
            if acked && gone {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(acked && gone, "alarm {id} acknowledged and gone");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A little longer without reading (still within the 10 s a client may take nothing).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, health) = http(addr, "GET", "/healthz", None, None).await;
    let delivery = &health["delivery"];
    assert_eq!(delivery["clients"], 1, "{health}");
    eprintln!("delivery while the client does not read: {delivery}");

    // Reading again: every alarm raised meanwhile arrives (raised, then cleared after the
    // acknowledgement), the connection stays open, and readings were coalesced for it.
    let mut seen_raised = BTreeSet::new();
    let mut seen_cleared = BTreeSet::new();
    let (mut coalesced, mut coalesced_alarms) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (seen_raised != raised
        || seen_cleared != raised
        || coalesced == 0
        || coalesced_alarms == 0)
        && tokio::time::Instant::now() < deadline
    {
        let v = client
            .next(Duration::from_secs(15))
            .await
            .expect("the connection stays open and keeps delivering");
        match v["type"].as_str() {
            Some("alarm") if v["bed"] == "room1/B" && v["alarm"]["condition"] == "spo2_low" => {
                let id = v["alarm"]["id"].as_u64().unwrap();
                match v["event"].as_str() {
                    Some("raised") => {
                        seen_raised.insert(id);
                    }
                    Some("cleared") => {
                        assert!(seen_raised.contains(&id), "cleared {id} before its raise");
                        seen_cleared.insert(id);
                    }
                    _ => {}
                }
            }
            Some("heartbeat") => {
                coalesced = v["coalesced"].as_u64().unwrap_or(0);
                coalesced_alarms = v["coalesced_alarms"].as_u64().unwrap_or(0);
            }
            _ => {}
        }
    }
    assert_eq!(
        seen_raised, raised,
        "every new alarm reaches the slow client"
    );
    assert_eq!(seen_cleared, raised, "and every clear");
    assert!(
        coalesced > 0,
        "the flood backed up: readings were coalesced"
    );
    assert!(coalesced_alarms > 0, "and bed A's alarm updates");
    let (_, health) = http(addr, "GET", "/healthz", None, None).await;
    assert_eq!(health["delivery"]["clients"], 1, "{health}");
    assert_eq!(health["delivery"]["clients_cut_off"], 0, "{health}");
    client.close().await;
}
