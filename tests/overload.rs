//! Fairness under overload, end to end against the `vitalsd` binary: a serial device server
//! faked on a real TCP socket floods Masimo lines as fast as the socket takes them, next to a
//! normal bed whose device sends one line a second. The flooding device is throttled at its
//! source and raises `device_flooding`; the normal bed's alarm reaches the WebSocket client and
//! every one of its readings is stored. With a tiny store buffer and no throttle, the store has
//! to drop readings: that is the `store_unwritable` technical alarm and a 503 from `/healthz`,
//! and the readings dropped are the flooding device's, not the normal bed's. A polled SunTech
//! module that answers far more than it is asked is throttled and alarmed the same way.

use crate::util::{Client, Webhook, bin, drain_reads, fake_device_server, http, notify_target};
use rusqlite::Connection;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// A Rad-8 ASCII 1 line (spo2, pulse rate, perfusion index: three readings) with SpO2 `spo2`.
fn masimo_line(spo2: u8) -> Vec<u8> {
    format!(
        "02/22/16 22:47:45 SN=0000056661 SPO2={spo2:03}% BPM=072 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000000\r\n"
    )
    .into_bytes()
}

/// Generous: a debug build on a loaded 2-core machine.
const WITHIN: Duration = Duration::from_secs(30);

/// A device server on a real TCP socket. `flood` (a Masimo line, a SunTech answer): every
/// connection gets it over and over, as fast as it takes them. Otherwise: `lines` lines of
/// SpO2 80 (below the preset's severe band), one a second, on the first connection, then
/// silence with the connection open. Counts the lines (or flood frames) written.
struct DeviceServer {
    port: u16,
    written: Arc<AtomicUsize>,
}

impl DeviceServer {
    async fn start(flood: Option<Vec<u8>>, lines: usize) -> DeviceServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let written = Arc::new(AtomicUsize::new(0));
        let w = written.clone();
        let (port, _) = fake_device_server(listener, move |n, sock| {
            let w = w.clone();
            let flood = flood.clone();
            async move {
                let mut wr = drain_reads(sock);
                if let Some(frame) = &flood {
                    let chunk = frame.repeat(64);
                    while wr.write_all(&chunk).await.is_ok() {
                        w.fetch_add(64, Ordering::SeqCst);
                    }
                    return;
                }
                if n == 0 {
                    for _ in 0..lines {
                        if wr.write_all(&masimo_line(80)).await.is_err() {
                            return;
                        }
                        w.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                // Keep the connection open, silent.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(wr);
            }
        });
        DeviceServer { port, written }
    }

    fn written(&self) -> usize {
        self.written.load(Ordering::SeqCst)
    }
}

/// Room 1: bed A's oximeter `flood`, bed B's `normal`, both Masimo Rad-8 behind device
/// servers; `flood_extra` goes in the flooding device's table, `extra` before the rooms.
fn config(
    dir: &std::path::Path,
    flood: u16,
    normal: u16,
    flood_extra: &str,
    extra: &str,
) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
data_dir = "{dir}/data"
{extra}

[[rooms]]
id = "room1"
name = "Room 1"

[[rooms.recliners]]
id = "A"
bp_interval = "10m"

[[rooms.recliners.devices]]
id = "flood"
profile = "masimo-rad8"
tcp = "127.0.0.1:{flood}"
{flood_extra}

[[rooms.recliners]]
id = "B"
bp_interval = "10m"

[[rooms.recliners.devices]]
id = "normal"
profile = "masimo-rad8"
tcp = "127.0.0.1:{normal}"
"#,
        dir = dir.display()
    )
}

/// The `vitalsd run` process; killed when dropped.
struct Daemon {
    child: Child,
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start(text: impl FnOnce(&std::path::Path) -> String) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overload.toml");
        std::fs::write(&path, text(dir.path())).unwrap();
        let mut child = Command::new(bin())
            .args(["run", "--config", path.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + WITHIN;
        while std::time::Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.trim_end_matches('/').parse().unwrap();
                std::thread::spawn(move || while rx.recv().is_ok() {});
                return Daemon { child, addr, dir };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("vitalsd never said where it listens");
    }

    async fn client(&self) -> Client {
        Client::connect(&format!("ws://{}/ws", self.addr)).await
    }

    /// Readings of device `id` in the store file (read beside the running daemon: WAL).
    fn stored(&self, id: &str) -> i64 {
        let path = self.dir.path().join("data").join(vitalsd::store::FILE_NAME);
        let Ok(conn) = Connection::open(path) else {
            return -1;
        };
        conn.query_row(
            "SELECT COUNT(*) FROM readings_named WHERE device = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap_or(-1)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The alarms a message shows as raised: a `raised` event's, or every bed's current alarms in
/// a snapshot; with their bed.
fn current_alarms(m: &Value) -> Vec<(String, Value)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    if m["type"] == "alarm" && m["event"] == "raised" {
        return vec![(text(&m["bed"]), m["alarm"].clone())];
    }
    if m["type"] != "snapshot" {
        return Vec::new();
    }
    let beds = m["rooms"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["beds"].as_array().into_iter().flatten());
    beds.flat_map(|b| {
        let id = text(&b["id"]);
        b["alarms"]
            .as_array()
            .into_iter()
            .flatten()
            .map(move |a| (id.clone(), a.clone()))
    })
    .collect()
}

fn raised(m: &Value, condition: &str) -> bool {
    m["type"] == "alarm" && m["event"] == "raised" && m["alarm"]["condition"] == condition
}

/// Checks that `flooding` (a `device_flooding` alarm) names `device`, at medium priority, and
/// that `/healthz` counts what the throttle dropped for that device and no other (the
/// `normal` device); returns `/healthz`.
async fn throttled_alone(d: &Daemon, flooding: &Value, device: &str) -> Value {
    assert_eq!(flooding["device"], device, "{flooding}");
    assert_eq!(flooding["priority"], "medium", "{flooding}");
    let (status, health) = http(d.addr, "GET", "/healthz", None, None).await;
    assert_eq!(status, 200, "{health}");
    let devices = &health["overload"]["devices"];
    assert_eq!(devices[device]["flooding"], true, "{health}");
    assert!(devices[device]["throttled"].as_u64() > Some(0), "{health}");
    assert!(devices["normal"].is_null(), "{health}");
    health
}

/// Waits (generously) until `f` holds; panics naming `what`.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + WITHIN;
    while Instant::now() < end {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within {WITHIN:?}: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_device_is_throttled_and_alarmed_while_the_other_beds_alarm_and_readings_all_arrive()
 {
    const LINES: usize = 8;
    let flood = DeviceServer::start(Some(masimo_line(97)), 0).await;
    let normal = DeviceServer::start(None, LINES).await;
    let d = Daemon::start(|dir| config(dir, flood.port, normal.port, "", ""));
    let mut c = d.client().await;
    // The normal bed's severe SpO2 alarm reaches the client; so does the flood's alarm.
    let (mut flooding, mut spo2_low) = (None, None);
    let end = Instant::now() + WITHIN;
    while flooding.is_none() || spo2_low.is_none() {
        let left = end.saturating_duration_since(Instant::now());
        let Some(m) = c.next(left).await else {
            panic!("within {WITHIN:?}: device_flooding {flooding:?}, spo2_low {spo2_low:?}");
        };
        // An alarm raised before the client connected is in its snapshot.
        for (bed, a) in current_alarms(&m) {
            match a["condition"].as_str() {
                Some("device_flooding") => flooding = Some((bed, a)),
                Some("spo2_low") => spo2_low = Some((bed, a)),
                _ => {}
            }
        }
    }
    let (bed, flooding) = flooding.unwrap();
    assert_eq!(bed, "room1/A", "{flooding}");
    let (bed, spo2_low) = spo2_low.unwrap();
    assert_eq!(bed, "room1/B", "{spo2_low}");
    assert_eq!(spo2_low["priority"], "high", "{spo2_low}");

    let health = throttled_alone(&d, &flooding, "flood").await;
    assert_eq!(health["store"]["dropped"], 0, "{health}");
    // No [[notify]] target: nothing is queued for the notifier at all.
    let notify = &health["overload"]["notify"];
    assert_eq!(
        (notify["depth"].as_u64(), notify["coalesced"].as_u64()),
        (Some(0), Some(0)),
        "{health}"
    );
    assert!(health["overload"]["dispatch"]["peak"].is_u64(), "{health}");

    // Every line of the normal bed is stored: three readings each.
    eventually("the normal bed's lines all written", async || {
        normal.written() == LINES
    })
    .await;
    let want = i64::try_from(LINES * 3).unwrap();
    eventually("every reading of the normal bed stored", async || {
        d.stored("normal") == want
    })
    .await;
    // The flood was read far less than it was offered.
    let flood_stored = d.stored("flood");
    assert!(
        usize::try_from(flood_stored).unwrap() < flood.written() * 3,
        "stored {flood_stored} of {} lines",
        flood.written()
    );
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_must_drop_readings_raises_its_alarm_and_drops_the_floods_not_the_normal_beds()
{
    const LINES: usize = 6;
    let flood = DeviceServer::start(Some(masimo_line(97)), 0).await;
    let normal = DeviceServer::start(None, LINES).await;
    // No throttle for the flood, and a store buffer of 16 readings.
    let d = Daemon::start(|dir| {
        config(
            dir,
            flood.port,
            normal.port,
            "max_rate = 1000000",
            "[storage]\nbuffer_cap = 16",
        )
    });
    let mut c = d.client().await;
    // Raised as an event, or already in the snapshot (bed-less alarms) if it came first.
    let m = c
        .wait_for("store_unwritable raised", WITHIN, |m| {
            raised(m, "store_unwritable")
                || (m["type"] == "snapshot"
                    && m["alarms"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|a| a["condition"] == "store_unwritable")))
        })
        .await;
    assert!(m["bed"].is_null(), "{m}");
    let (status, health) = http(d.addr, "GET", "/healthz", None, None).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["store"]["writable"], false, "{health}");
    assert_eq!(health["store"]["dropping"], true, "{health}");
    assert!(
        health["store"]["dropped_by_device"]["flood"].as_u64() > Some(0),
        "{health}"
    );
    assert!(
        health["store"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("readings dropped")),
        "{health}"
    );
    eventually("the normal bed's lines all written", async || {
        normal.written() == LINES
    })
    .await;
    let want = i64::try_from(LINES * 3).unwrap();
    eventually("every reading of the normal bed stored", async || {
        d.stored("normal") == want
    })
    .await;
    let (_, health) = http(d.addr, "GET", "/healthz", None, None).await;
    assert!(
        health["store"]["dropped_by_device"]["normal"].is_null(),
        "the normal bed lost nothing: {health}"
    );
    c.close().await;
}

/// A preset whose SpO2 alarm latches (severe, high) and whose pulse-rate alarm is medium with
/// no delay: BPM 130 raises it, the next line's 72 clears it.
/// One line in this many has a pulse rate over its limit ([`toggle_line`]).
const PULSE_EVERY: usize = 10;

const TOGGLE_PRESET: &str = r#"
[[rule]]
metric = "spo2"
direction = "low"
threshold = 90
priority = "medium"
delay = "0s"
severe = { threshold = 85, priority = "high" }

[[rule]]
metric = "pulse_rate"
direction = "high"
threshold = 120
priority = "medium"
delay = "0s"
"#;

/// The config of one room whose recliner A (preset `toggle`, written into `dir`) has one
/// Masimo over TCP at `port`, unthrottled; a test appends what else it needs.
fn toggle_bed_a(dir: &std::path::Path, port: u16) -> String {
    std::fs::create_dir_all(dir.join("presets")).unwrap();
    std::fs::write(dir.join("presets/toggle.toml"), TOGGLE_PRESET).unwrap();
    format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{d}/data\"\npresets_dir = \"{d}/presets\"\n\
         [[rooms]]\nid = \"room1\"\nname = \"Room 1\"\n\
         [[rooms.recliners]]\nid = \"A\"\npreset = \"toggle\"\nbp_interval = \"10m\"\n\
         [[rooms.recliners.devices]]\nid = \"ox\"\nprofile = \"masimo-rad8\"\n\
         tcp = \"127.0.0.1:{port}\"\nmax_rate = 1000000\n",
        d = dir.display(),
    )
}

/// Line `i` of the backlog test's device: SpO2 80 and 97 alternating (the latched SpO2 alarm
/// is updated on every line), BPM 130 on every `PULSE_EVERY`th line (a pulse-rate alarm raised, and
/// cleared by the next line).
///
/// The pulse-rate transitions are what fills the store's command queue while it is stalled
/// (the SpO2 updates of one device read coalesce, and a bed's saved state is paced), so
/// they come often enough to fill it well within the writer's 5 s busy timeout.
fn toggle_line(i: usize) -> Vec<u8> {
    let spo2 = if i.is_multiple_of(2) { 80 } else { 97 };
    let bpm = if i.is_multiple_of(PULSE_EVERY) {
        130
    } else {
        72
    };
    format!(
        "02/22/16 22:47:45 SN=0000056661 SPO2={spo2:03}% BPM={bpm:03} PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000000\r\n"
    )
    .into_bytes()
}

/// The store's writer is held up (another process holds the file's write lock) while a device
/// sends 2 000 lines a second, each an alarm event: the store's command queue stops at its
/// bound, the backlog waits in the hub's queue where the SpO2 alarm's superseded updates
/// coalesce (counted), that queue stays short, and once the lock goes every pulse-rate raise
/// and clear is in the store, in order. Meanwhile the other partner desaturates, once the
/// command queue is full: the page reaches the webhook while the store is still stalled (a
/// page never waits behind the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_store_backlog_every_transition_is_stored_in_order_and_updates_coalesce() {
    const LINES: usize = 12_000;
    const PER_TICK: usize = 20;
    let go = Arc::new(tokio::sync::Notify::new());
    let written = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (port, _) = {
        let (go, written) = (go.clone(), written.clone());
        fake_device_server(listener, move |n, sock| {
            let (go, written) = (go.clone(), written.clone());
            async move {
                let mut wr = drain_reads(sock);
                if n == 0 {
                    go.notified().await;
                    let mut tick = tokio::time::interval(Duration::from_millis(10));
                    for chunk in (0..LINES).collect::<Vec<_>>().chunks(PER_TICK) {
                        tick.tick().await;
                        let bytes: Vec<u8> = chunk.iter().flat_map(|&i| toggle_line(i)).collect();
                        if wr.write_all(&bytes).await.is_err() {
                            return;
                        }
                        written.fetch_add(chunk.len(), Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(wr);
            }
        })
    };
    // Recliner B's oximeter: normal until `desat`, then SpO2 80 (a new alarm, paged at once).
    let desat = Arc::new(tokio::sync::Notify::new());
    let (port_b, _) = {
        let desat = desat.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        fake_device_server(listener, move |_, sock| {
            let desat = desat.clone();
            async move {
                let mut wr = drain_reads(sock);
                let mut low = std::pin::pin!(desat.notified());
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                let mut spo2 = 97;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = &mut low, if spo2 == 97 => spo2 = 80,
                    }
                    let line = format!(
                        "02/22/16 22:47:45 SN=0000056662 SPO2={spo2:03}% BPM=072 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000000\r\n"
                    );
                    if wr.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        })
    };
    let hook = Webhook::start(true).await;
    let d = Daemon::start(|dir| {
        format!(
            "{bed_a}[[rooms.recliners]]\nid = \"B\"\npreset = \"toggle\"\nbp_interval = \"10m\"\n\
             [[rooms.recliners.devices]]\nid = \"oxb\"\nprofile = \"masimo-rad8\"\n\
             tcp = \"127.0.0.1:{port_b}\"\n{notify}",
            bed_a = toggle_bed_a(dir, port),
            notify = notify_target("desk", &hook.url, ""),
        )
    });
    let mut c = d.client().await;
    // The device server starts sending once the oximeter's link is up (a permit waits).
    go.notify_one();
    c.wait_for("the SpO2 alarm raised", WITHIN, |m| raised(m, "spo2_low"))
        .await;

    // Hold the store's write lock until the writer's command queue has reached its bound,
    // and a little longer (past 5 s the writer's writes fail: it holds the events, in order,
    // and writes them once the lock goes).
    let path = d.dir.path().join("data").join(vitalsd::store::FILE_NAME);
    let lock = Connection::open(&path).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let held = Instant::now();
    let (mut max_commands, mut max_dispatch, mut cap) = (0u64, 0u64, u64::MAX);
    let mut full_since: Option<Instant> = None;
    let b_paged = || {
        hook.received().iter().any(|b| {
            b["event"] == "notify" && b["alarm"]["condition"] == "spo2_low" && b["bed"] == "room1/B"
        })
    };
    // Seen before the store's first failed write (the lock outlasts the writer's 5 s busy
    // timeout): the writer has not started another round, so the command queue has not
    // drained since it filled; a page that waited for room in it would come only after.
    let mut paged_while_held = false;
    let mut failed = false;
    while held.elapsed() < WITHIN
        && full_since.is_none_or(|t| t.elapsed() < Duration::from_millis(500) || !failed)
    {
        let paged = b_paged();
        let (_, h) = http(d.addr, "GET", "/healthz", None, None).await;
        failed |= h["store"]["writable"] == false;
        paged_while_held |= full_since.is_some() && paged && !failed;
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        cap = n(&h["store"]["command_cap"]);
        max_commands = max_commands.max(n(&h["store"]["pending_commands"]));
        max_dispatch = max_dispatch.max(n(&h["overload"]["dispatch"]["depth"]));
        if max_commands >= cap && full_since.is_none() {
            assert!(!b_paged(), "B's page came before B desaturated");
            full_since = Some(Instant::now());
            // The store is stalled with a full command queue: now B desaturates.
            desat.notify_one();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    assert_eq!(cap, vitalsd::store::COMMAND_CAP as u64);
    assert_eq!(
        max_commands, cap,
        "the store's command queue filled up to its bound and no further"
    );
    assert!(
        paged_while_held,
        "B's desaturation was paged while the store was stalled, before its first failed \
         write (lock held {:?}): {:?}",
        held.elapsed(),
        hook.received()
    );

    eventually("every line written", async || {
        written.load(Ordering::SeqCst) == LINES
    })
    .await;
    // Every pulse-rate alarm raised and cleared, in the store.
    let pulse = |conn: &Connection| -> Vec<(String, i64)> {
        let mut st = conn
            .prepare(
                "SELECT kind, alarm_id FROM alarm_events WHERE condition = 'pulse_rate_high' \
                 AND kind IN ('raised', 'cleared') ORDER BY id",
            )
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let want = 2 * LINES / PULSE_EVERY;
    eventually("every pulse-rate transition stored", async || {
        Connection::open(&path).is_ok_and(|c| pulse(&c).len() >= want)
    })
    .await;
    let conn = Connection::open(&path).unwrap();
    let got = pulse(&conn);
    assert_eq!(
        got.len(),
        want,
        "raised and cleared pulse-rate events stored"
    );
    let mut last_id = 0;
    for pair in got.chunks(2) {
        assert_eq!(pair[0].0, "raised", "{pair:?}");
        assert_eq!(pair[1].0, "cleared", "{pair:?}");
        assert_eq!(pair[0].1, pair[1].1, "raised and cleared: the same alarm");
        assert!(
            pair[0].1 > last_id,
            "alarms in the order they came: {pair:?}"
        );
        last_id = pair[0].1;
    }
    // A's SpO2 alarm: raised once, its updates coalesced under the backlog (and counted).
    let spo2: Vec<String> = {
        let mut st = conn
            .prepare(
                "SELECT kind FROM alarm_events WHERE condition = 'spo2_low' AND bed = 'room1/A' \
                 ORDER BY id",
            )
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(spo2.first().map(String::as_str), Some("raised"));
    assert_eq!(spo2.iter().filter(|k| *k == "raised").count(), 1);
    let (_, h) = http(d.addr, "GET", "/healthz", None, None).await;
    let dispatch = &h["overload"]["dispatch"];
    let coalesced = dispatch["coalesced"].as_u64().unwrap_or(0);
    assert!(coalesced > 0, "{h}");
    assert!(
        spo2.len() + usize::try_from(coalesced).unwrap() >= LINES - 1,
        "every SpO2 update stored or counted as coalesced: {} stored, {coalesced} coalesced",
        spo2.len()
    );
    assert_eq!(dispatch["dropped"], 0, "{h}");
    // Bounded: the transitions of the backlog, one update and one state at most.
    assert!(
        dispatch["peak"].as_u64() <= Some((2 * LINES / PULSE_EVERY) as u64 + 4),
        "dispatch depth peaked at {} (sampled {max_dispatch}): {h}",
        dispatch["peak"]
    );
    assert!(h["store"]["peak_commands"].as_u64() <= Some(cap), "{h}");
    c.close().await;
}

/// A bed whose alarm keeps changing (SpO2 80 and 97 alternating, 2 000 lines a second: the
/// severe SpO2 alarm active, latched, active...) has its saved state paced (at most every
/// 250 ms): after the flapping ends with a last change, that last state is what the store
/// holds once the pace has passed, and what a `kill -9` leaves on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_beds_last_alarm_state_is_on_disk_after_kill_9() {
    const TICKS: usize = 100;
    const PER_TICK: usize = 20;
    let go = Arc::new(tokio::sync::Notify::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (port, _) = {
        let go = go.clone();
        fake_device_server(listener, move |n, sock| {
            let go = go.clone();
            async move {
                let mut wr = drain_reads(sock);
                if n == 0 {
                    go.notified().await;
                    let line = |spo2: u32| {
                        format!(
                            "02/22/16 22:47:45 SN=0000056661 SPO2={spo2:03}% BPM=072 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000000\r\n"
                        )
                    };
                    let mut tick = tokio::time::interval(Duration::from_millis(10));
                    for _ in 0..TICKS {
                        tick.tick().await;
                        let bytes: String = (0..PER_TICK)
                            .map(|i| line(if i % 2 == 0 { 80 } else { 97 }))
                            .collect();
                        if wr.write_all(bytes.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    // The last change: the alarm active again, at 82 %.
                    if wr.write_all(line(82).as_bytes()).await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(wr);
            }
        })
    };
    let mut d = Daemon::start(|dir| toggle_bed_a(dir, port));
    let mut c = d.client().await;
    go.notify_one();
    c.wait_for("the SpO2 alarm raised", WITHIN, |m| raised(m, "spo2_low"))
        .await;
    c.wait_for("the last change: SpO2 82 active", WITHIN, |m| {
        m["type"] == "alarm"
            && m["alarm"]["condition"] == "spo2_low"
            && m["alarm"]["value"] == 82.0
            && m["alarm"]["state"] == "active"
    })
    .await;
    // Past the pace (250 ms) and a commit round, then kill -9.
    tokio::time::sleep(Duration::from_millis(700)).await;
    d.child.kill().unwrap();
    d.child.wait().unwrap();

    let path = d.dir.path().join("data").join(vitalsd::store::FILE_NAME);
    let conn = Connection::open(&path).unwrap();
    let json: String = conn
        .query_row(
            "SELECT json FROM alarm_state WHERE bed = 'room1/A'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let saved: Value = serde_json::from_str(&json).unwrap();
    let spo2 = saved["alarms"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["condition"] == "spo2_low")
        .unwrap_or_else(|| panic!("no spo2_low alarm saved: {saved}"));
    assert_eq!(spo2["value"], 82.0, "the last change saved: {saved}");
    assert_eq!(spo2["state"], "active", "the last change saved: {saved}");
}

/// A SunTech module (polled) that answers far more than it is asked: once the daemon starts a
/// measurement (2 s after connecting), its line carries cuff-pressure answers (150 mmHg, so
/// the measurement goes on) as fast as the socket takes them. Its answers' readings count
/// against its budget (`max_rate`, 200 readings/s for the profile) like a stream's
/// (docs/alarms.md, "Overload"): `device_flooding` is raised for it, `/healthz` counts what
/// was dropped, the module is read far less than it sends, and the other bed's readings are
/// all stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suntech_module_that_answers_far_more_than_it_is_asked_is_read_less_and_alarmed() {
    use vitalsd::protocol::suntech::Response;
    const LINES: usize = 8;
    let cuff = DeviceServer::start(Some(Response::CuffPressure(150).encode()), 0).await;
    let normal = DeviceServer::start(None, LINES).await;
    let d = Daemon::start(|dir| {
        config(dir, cuff.port, normal.port, "", "")
            .replace(
                "id = \"flood\"\nprofile = \"masimo-rad8\"",
                "id = \"cuff\"\nprofile = \"suntech-advantage\"",
            )
            .replace("bp_interval = \"10m\"", "bp_interval = \"5m\"")
    });
    let mut c = d.client().await;
    let end = Instant::now() + WITHIN;
    let flooding = loop {
        let left = end.saturating_duration_since(Instant::now());
        // (The cuff's readings keep coming: the deadline is checked on each, not only when
        // nothing comes.)
        let m = match c.next(left).await {
            Some(m) if !left.is_zero() => m,
            _ => panic!("no device_flooding within {WITHIN:?}"),
        };
        if let Some((bed, a)) = current_alarms(&m)
            .into_iter()
            .find(|(_, a)| a["condition"] == "device_flooding")
        {
            assert_eq!(bed, "room1/A", "{a}");
            break a;
        }
    };
    throttled_alone(&d, &flooding, "cuff").await;

    eventually("every reading of the normal bed stored", async || {
        d.stored("normal") == i64::try_from(LINES * 3).unwrap()
    })
    .await;
    // One reading (the cuff pressure) per answer: the module was read far less than it sent.
    let stored = usize::try_from(d.stored("cuff")).unwrap();
    let sent = cuff.written();
    assert!(
        stored > 0 && stored * 10 < sent,
        "stored {stored} of {sent} answers"
    );
    c.close().await;
}
