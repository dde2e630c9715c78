//! The BLE link end to end, through real btleplug: the simulator's fake BlueZ on its own
//! dbus-daemon -> the `vitalsd` binary (BlueZ over D-Bus, found through
//! `DBUS_SYSTEM_BUS_ADDRESS`) -> WebSocket.
//!
//! The daemon runs as a child process with `DBUS_SYSTEM_BUS_ADDRESS` set to the simulator's
//! bus in its own environment: the variable is process-wide, and setting it in this test
//! process would race with the other tests' threads, while a child per test lets every test
//! have a bus (and a fake BlueZ owning `org.bluez`) of its own.

use crate::util::{Client, bin, eventually, free_port, is_reading};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vitalsd::config::{Config, load_config_str};
use vitalsd::sim::bluez::Bus;
use vitalsd::sim::{self, SimHandle, scenario::Scenario};

/// Generous: connecting includes a scan, and this machine may be busy.
const SOON: Duration = Duration::from_secs(30);

const PLX_A: &str = "00:1C:05:00:0A:01";
const O2RING_B: &str = "00:1C:05:00:0B:02";
const BERRYMED_B: &str = "00:1C:05:00:0B:03";

/// Room 1: A has a Pulse Oximeter Service oximeter (bound with a name pattern), B a Wellue
/// O2Ring (polled), C a BerryMed (a byte stream split across notifications): one source per
/// bed and metric.
fn ble_config_text(dir: &Path, port: u16) -> String {
    format!(
        r#"
listen = "127.0.0.1:{port}"
data_dir = "{dir}/data"

[[rooms]]
id = "room1"
name = "Room 1"

[[rooms.recliners]]
id = "A"

[[rooms.recliners.devices]]
id = "room1-A-oximeter"
profile = "generic-plx"
address = "{PLX_A}"
name = "PLX*"
simulated = true

[[rooms.recliners]]
id = "B"

[[rooms.recliners.devices]]
id = "room1-B-oximeter"
profile = "wellue-o2ring"
address = "{O2RING_B}"
simulated = true

[[rooms.recliners]]
id = "C"

[[rooms.recliners.devices]]
id = "room1-C-oximeter"
profile = "berrymed-bm1000"
address = "{BERRYMED_B}"
simulated = true
"#,
        dir = dir.display()
    )
}

/// Steady, noise-free patients; bed C is like B. `extra_a` is TOML for bed A's table.
fn ble_scenario(extra_a: &str) -> Scenario {
    let text = crate::util::scenario_text(extra_a, "");
    let text = format!(
        "{text}\n[[beds]]\nbed = \"room1/C\"\nbaseline = {{ spo2 = 99, pulse_rate = 58, sys = 120, dia = 80, perfusion_index = 5.0 }}\nnoise = 0.0\n"
    );
    Scenario::parse(&text).expect("test scenario is valid")
}

/// The simulator in this process, the daemon as a child process on the simulator's bus.
struct BleRig {
    /// Holds the config, the daemon's log and data; removed when the rig is dropped.
    _dir: tempfile::TempDir,
    config_path: PathBuf,
    cfg: Config,
    sim: Option<SimHandle>,
    daemon: Option<Child>,
    log: PathBuf,
    port: u16,
}

impl BleRig {
    async fn start(scenario: Scenario) -> BleRig {
        BleRig::start_edited(scenario, |text| text).await
    }

    /// [`BleRig::start`] with the config text passed through `edit` first.
    async fn start_edited(scenario: Scenario, edit: impl FnOnce(String) -> String) -> BleRig {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let text = edit(ble_config_text(dir.path(), port));
        let config_path = dir.path().join("ble.toml");
        std::fs::write(&config_path, &text).unwrap();
        let cfg = load_config_str(&text, &config_path).expect("test config is valid");
        let sim = sim::start(&cfg, scenario).await.expect("simulator starts");
        let log = dir.path().join("daemon.log");
        let mut rig = BleRig {
            _dir: dir,
            config_path,
            cfg,
            sim: Some(sim),
            daemon: None,
            log,
            port,
        };
        rig.daemon = Some(rig.spawn(&["run", "--config", rig.config_path.to_str().unwrap()]));
        rig
    }

    fn bus(&self) -> String {
        self.sim
            .as_ref()
            .and_then(|s| s.dbus_address())
            .expect("the simulator has a D-Bus for its BLE devices")
            .to_owned()
    }

    /// The `vitalsd` binary on the simulator's bus, its stderr in the rig's log.
    fn spawn(&self, args: &[&str]) -> Child {
        let log = std::fs::File::create(&self.log).unwrap();
        Command::new(bin())
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.bus())
            .env("VITALSD_LOG", "info")
            // A panic in a library task must log one line, never a backtrace, even so.
            .env("RUST_BACKTRACE", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A WebSocket client, once the daemon listens.
    async fn client(&self) -> Client {
        let url = format!("ws://127.0.0.1:{}/ws", self.port);
        let ws = eventually(
            SOON,
            async || {
                let connect = tokio_tungstenite::connect_async(&url);
                match tokio::time::timeout(Duration::from_secs(5), connect).await {
                    Ok(Ok((ws, _))) => Some(ws),
                    _ => None,
                }
            },
            || {
                format!(
                    "the daemon never listened on {url}; its log:\n{}",
                    self.log_text()
                )
            },
        )
        .await;
        Client::new(ws)
    }

    /// Whether the daemon process is still running.
    fn daemon_alive(&mut self) -> bool {
        matches!(self.daemon.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    async fn stop(mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            // Exited, or killed below after 20 s.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                tokio::time::sleep(crate::util::POLL_EVERY).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
    }
}

impl Drop for BleRig {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn is_status(v: &Value, device: &str, status: &str) -> bool {
    v["type"] == "device_status" && v["device"] == device && v["status"] == status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_lists_the_simulated_devices_with_name_rssi_services_and_profile() {
    let rig = BleRig::start(ble_scenario("")).await;
    // Scan on the same bus as a second client while the daemon runs.
    let out = Command::new(bin())
        .args(["scan", "--seconds", "2"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", rig.bus())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line_of = |address: &str| {
        text.lines()
            .find(|l| l.starts_with(address))
            .unwrap_or_else(|| panic!("{address} not listed:\n{text}"))
            .to_owned()
    };
    let plx = line_of(PLX_A);
    assert!(plx.contains("generic-plx"), "{plx}");
    assert!(plx.contains("0x1822"), "{plx}");
    assert!(plx.contains("PLX"), "{plx}");
    assert!(plx.contains("-58"), "the RSSI: {plx}");
    let o2 = line_of(O2RING_B);
    assert!(o2.contains("wellue-o2ring"), "{o2}");
    assert!(o2.contains("14839ac4-7d7e-415c-9a42-167340cf2339"), "{o2}");
    let berry = line_of(BERRYMED_B);
    assert!(berry.contains("berrymed-bm1000"), "{berry}");
    assert!(text.contains("3 device(s)"), "{text}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ble_readings_reach_a_websocket_client_with_the_simulated_values() {
    let rig = BleRig::start(ble_scenario("")).await;
    let mut c = rig.client().await;
    // (bed, metric) -> value, through three BLE protocols: PLXS notifications, Viatom polled
    // answers over two notifications, the BerryMed stream.
    let want = [
        ("room1/A", "spo2", 97.0),
        ("room1/A", "pulse_rate", 72.0),
        ("room1/A", "perfusion_index", 3.5),
        ("room1/B", "spo2", 95.0),
        ("room1/B", "pulse_rate", 64.0),
        ("room1/C", "spo2", 99.0),
        ("room1/C", "pulse_rate", 58.0),
    ];
    let mut seen = vec![false; want.len()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while seen.iter().any(|s| !s) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(m) = c.next(left).await else {
            let missing: Vec<_> = want
                .iter()
                .zip(&seen)
                .filter(|(_, s)| !**s)
                .map(|(w, _)| w)
                .collect();
            panic!(
                "missing readings {missing:?}; the daemon's log:\n{}",
                rig.log_text()
            );
        };
        if m["type"] != "reading" {
            continue;
        }
        assert_eq!(
            m["simulated"], true,
            "every simulated value is flagged: {m}"
        );
        for (i, (bed, metric, value)) in want.iter().enumerate() {
            if is_reading(&m, bed, metric) && m["value"].as_f64() == Some(*value) {
                assert_eq!(m["invalid"], Value::Null, "{m}");
                seen[i] = true;
            }
        }
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_ble_link_shows_disconnected_then_reconnects_and_readings_resume() {
    // Bed A's oximeter goes out of range 8 s in, for 6 s.
    let rig = BleRig::start(ble_scenario(
        "[[beds.events]]\nat = \"8s\"\nfor = \"6s\"\nkind = \"disconnect\"\ndevice = \"oximeter\"\n",
    ))
    .await;
    let mut c = rig.client().await;
    let dev = "room1-A-oximeter";
    c.wait_for("a first SpO2 reading from A", SOON, |m| {
        is_reading(m, "room1/A", "spo2") && m["value"] == 97.0
    })
    .await;
    let lost = c
        .wait_for("A's oximeter disconnected", SOON, |m| {
            is_status(m, dev, "disconnected")
        })
        .await;
    assert!(
        lost["detail"].as_str().unwrap_or("").contains(PLX_A),
        "the reason names the device: {lost}"
    );
    c.wait_for("A's oximeter connected again", SOON, |m| {
        is_status(m, dev, "connected")
    })
    .await;
    c.wait_for("SpO2 readings from A again", SOON, |m| {
        is_reading(m, "room1/A", "spo2") && m["value"] == 97.0
    })
    .await;
    // The link's event streams were dropped and made anew while B's devices kept notifying on
    // the same adapter: no cleanup task panicked over it.
    let log = rig.log_text();
    assert!(!log.contains("panic at"), "{log}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_notifications_are_counted_and_flagged_and_the_daemon_keeps_serving() {
    // Bed A's oximeter: malformed notifications (truncated, random) between the good ones the
    // whole time, and the finger out from 6 s for 6 s.
    let mut rig = BleRig::start(ble_scenario(
        "[[beds.events]]\nat = \"0s\"\nfor = \"1h\"\nkind = \"garbage\"\ndevice = \"oximeter\"\n\n\
         [[beds.events]]\nat = \"6s\"\nfor = \"6s\"\nkind = \"finger_out\"\n",
    ))
    .await;
    let mut c = rig.client().await;
    // Good values still come through unchanged...
    c.wait_for("a valid SpO2 from A", SOON, |m| {
        is_reading(m, "room1/A", "spo2") && m["value"] == 97.0
    })
    .await;
    // ...the finger-out shows as no number, with the device's flags...
    let out = c
        .wait_for("A's SpO2 without a number (finger out)", SOON, |m| {
            is_reading(m, "room1/A", "spo2") && m["value"].is_null()
        })
        .await;
    assert!(
        !out["invalid"].is_null(),
        "an invalid reading says why: {out}"
    );
    // ...and never a number that was not sent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while let Some(m) = c
        .next(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        if is_reading(&m, "room1/A", "spo2")
            && let Some(v) = m["value"].as_f64()
        {
            assert_eq!(v, 97.0, "a malformed value never becomes a reading: {m}");
        }
    }
    assert!(rig.daemon_alive(), "the daemon survives malformed input");
    let api = reqwest_like_get(rig.port, "/healthz").await;
    assert!(api.starts_with("HTTP/1.1 200"), "{api}");
    let log = rig.log_text();
    assert!(
        log.contains("malformed BLE value discarded"),
        "bad values are counted in the log:\n{log}"
    );
    // No panic in vitalsd's code. (bluez-async unwraps the result of removing a D-Bus match
    // rule in a detached cleanup task; should the bus connection fail, that task panics
    // without affecting the daemon, which recreates its BlueZ session.)
    assert!(!log.contains("panic at src/"), "{log}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ble_device_over_its_max_rate_is_throttled_and_alarmed_and_its_readings_still_arrive() {
    // Bed A's PLX oximeter notifies 3 readings a second; its clinic set max_rate = 1.
    let rig = BleRig::start_edited(ble_scenario(""), |text| {
        text.replacen("name = \"PLX*\"\n", "name = \"PLX*\"\nmax_rate = 1\n", 1)
    })
    .await;
    let mut c = rig.client().await;
    c.wait_for("device_flooding raised for A's oximeter", SOON, |m| {
        is_raised(m, "room1-A-oximeter", "device_flooding")
    })
    .await;
    // Throttled, not cut off: whole values still pass at the budget's pace.
    c.wait_for("an SpO2 from A after the flood was raised", SOON, |m| {
        is_reading(m, "room1/A", "spo2") && m["value"] == 97.0
    })
    .await;
    // /healthz counts what was dropped, for that device only.
    let api = reqwest_like_get(rig.port, "/healthz").await;
    let body = api.split("\r\n\r\n").nth(1).unwrap_or_default();
    let health: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {api}"));
    let devices = &health["overload"]["devices"];
    assert!(
        devices["room1-A-oximeter"]["throttled"].as_u64() > Some(0),
        "{health}"
    );
    assert!(devices["room1-B-oximeter"].is_null(), "{health}");
    rig.stop().await;
}

const DEVICES: [&str; 3] = ["room1-A-oximeter", "room1-B-oximeter", "room1-C-oximeter"];

fn is_raised(m: &Value, device: &str, condition: &str) -> bool {
    m["type"] == "alarm"
        && m["event"] == "raised"
        && m["alarm"]["device"] == device
        && m["alarm"]["condition"] == condition
}

/// Waits until every bed has sent an SpO2 number.
async fn wait_for_readings_from_every_bed(c: &mut Client, rig: &BleRig, within: Duration) {
    let mut seen = [false; 3];
    let beds = ["room1/A", "room1/B", "room1/C"];
    let deadline = tokio::time::Instant::now() + within;
    while seen.iter().any(|s| !s) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(m) = c.next(left).await else {
            panic!(
                "no SpO2 from every bed (seen {seen:?}); the daemon's log:\n{}",
                rig.log_text()
            );
        };
        for (i, bed) in beds.iter().enumerate() {
            if is_reading(&m, bed, "spo2") && m["value"].is_number() {
                seen[i] = true;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_with_three_ble_devices_raises_no_device_disconnected() {
    // Three devices found by one shared scan at once: the scan race of issue 9 ("Operation
    // already in progress") made one of them `disconnected`, with an alarm and a page.
    let rig = BleRig::start(ble_scenario("")).await;
    let mut c = rig.client().await;
    let mut connected = [false; 3];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // Every message until all three are connected and have sent readings for a while.
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        if quiet_until.is_some_and(|q| now >= q) {
            break;
        }
        let left = deadline.saturating_duration_since(now);
        let Some(m) = c.next(left).await else {
            panic!(
                "not every BLE device connected (connected {connected:?}); the daemon's log:\n{}",
                rig.log_text()
            );
        };
        for (i, dev) in DEVICES.iter().enumerate() {
            assert!(
                !is_status(&m, dev, "disconnected"),
                "{dev} shown disconnected at start: {m}\nthe daemon's log:\n{}",
                rig.log_text()
            );
            assert!(
                !is_raised(&m, dev, "device_disconnected"),
                "a device_disconnected alarm at start: {m}\nthe daemon's log:\n{}",
                rig.log_text()
            );
            // Connected before this client came, or now.
            let bed = ["room1/A", "room1/B", "room1/C"][i];
            if is_status(&m, dev, "connected") || is_reading(&m, bed, "spo2") {
                connected[i] = true;
            }
        }
        if quiet_until.is_none() && connected.iter().all(|c| *c) {
            quiet_until = Some(now + Duration::from_secs(3));
        }
    }
    // Also what happened before this client connected: the daemon logs every disconnect.
    let log = rig.log_text();
    assert!(!log.contains("device disconnected"), "{log}");
    assert!(!log.contains("already in progress"), "{log}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ble_bus_killed_disconnects_every_device_with_alarms_and_readings_resume_when_it_is_back()
 {
    let mut rig = BleRig::start(ble_scenario("")).await;
    let mut c = rig.client().await;
    wait_for_readings_from_every_bed(&mut c, &rig, Duration::from_secs(90)).await;

    // The system bus dies under BlueZ and the daemon (kill -9 of the dbus-daemon).
    let (pid, dir, address) = {
        let bus = rig.sim.as_ref().and_then(SimHandle::bus).expect("a bus");
        (bus.pid(), bus.dir().to_path_buf(), bus.address().to_owned())
    };
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Every device: `disconnected` (naming the lost BlueZ connection) and its technical alarm,
    // at once: the watchdog sees its own bus connection close (its probe bounds this at 10 s).
    let mut down = [false; 3];
    let mut alarmed = [false; 3];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while down.iter().chain(&alarmed).any(|s| !s) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(m) = c.next(left).await else {
            panic!(
                "after the bus was killed: disconnected {down:?}, alarmed {alarmed:?}; the daemon's log:\n{}",
                rig.log_text()
            );
        };
        for (i, dev) in DEVICES.iter().enumerate() {
            if is_status(&m, dev, "disconnected") && !down[i] {
                let detail = m["detail"].as_str().unwrap_or("");
                assert!(detail.contains("BlueZ"), "the reason says why: {m}");
                down[i] = true;
            }
            if is_raised(&m, dev, "device_disconnected") {
                alarmed[i] = true;
            }
        }
    }
    // The bus comes back on the same socket (as a restarted system bus does), BlueZ with it.
    if let Some(sim) = rig.sim.take() {
        sim.shutdown().await;
    }
    let bus = tokio::task::spawn_blocking(move || Bus::spawn_in(&dir))
        .await
        .unwrap()
        .expect("the bus starts again");
    assert_eq!(bus.address(), address, "the same bus address");
    rig.sim = Some(
        sim::start_with(&rig.cfg, ble_scenario(""), Some(bus))
            .await
            .expect("the simulator starts again"),
    );
    // The daemon makes a new BlueZ session by itself: devices reconnect, readings flow again.
    wait_for_readings_from_every_bed(&mut c, &rig, Duration::from_secs(90)).await;
    assert!(rig.daemon_alive(), "the daemon survives the bus loss");
    let log = rig.log_text();
    assert!(log.contains("BlueZ session lost"), "{log}");
    // Nothing panics: before the patched bluez-async (vendor/bluez-async/PATCHED.md), each of
    // its event streams dropped with the dead connection panicked in its cleanup task (5-9
    // panics in this test).
    assert!(!log.contains("panic at"), "{log}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluez_restarting_disconnects_every_device_at_once_and_they_reconnect() {
    let rig = BleRig::start(ble_scenario("")).await;
    let mut c = rig.client().await;
    wait_for_readings_from_every_bed(&mut c, &rig, Duration::from_secs(90)).await;
    let fake = rig
        .sim
        .as_ref()
        .and_then(SimHandle::bluez)
        .expect("a fake BlueZ")
        .clone();
    let restart = tokio::spawn(async move { fake.restart(Duration::from_secs(3)).await });
    let mut down = [false; 3];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while down.iter().any(|s| !s) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(m) = c.next(left).await else {
            panic!(
                "after BlueZ left the bus: disconnected {down:?}; the daemon's log:\n{}",
                rig.log_text()
            );
        };
        for (i, dev) in DEVICES.iter().enumerate() {
            if is_status(&m, dev, "disconnected") && !down[i] {
                let detail = m["detail"].as_str().unwrap_or("");
                assert!(detail.contains("BlueZ"), "the reason says why: {m}");
                down[i] = true;
            }
        }
    }
    restart.await.unwrap().expect("the fake BlueZ restarts");
    wait_for_readings_from_every_bed(&mut c, &rig, Duration::from_secs(90)).await;
    let log = rig.log_text();
    assert!(log.contains("left the D-Bus system bus"), "{log}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ble_device_never_found_is_connecting_through_its_first_attempt_grace_then_alarms() {
    // Bed A's oximeter is bound to an address nobody serves.
    const ABSENT: &str = "00:1C:05:00:0A:99";
    let rig = BleRig::start_edited(ble_scenario(""), |text| {
        let bound = format!("address = \"{PLX_A}\"\nname = \"PLX*\"\nsimulated = true");
        assert!(text.contains(&bound));
        text.replace(&bound, &format!("address = \"{ABSENT}\""))
    })
    .await;
    let mut c = rig.client().await;
    let dev = "room1-A-oximeter";
    let started = tokio::time::Instant::now();
    // A failed first attempt (a 10 s scan) shows as `connecting` with the reason, no alarm...
    let mut saw_connecting = false;
    let deadline = started + Duration::from_secs(90);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(m) = c.next(left).await else {
            panic!(
                "{dev} never went disconnected (connecting seen: {saw_connecting}); the daemon's log:\n{}",
                rig.log_text()
            );
        };
        if is_status(&m, dev, "connecting")
            && m["detail"].as_str().is_some_and(|d| d.contains(ABSENT))
        {
            saw_connecting = true;
        }
        if is_raised(&m, dev, "device_disconnected") {
            // ...until the grace (30 s from start) has passed: then the alarm.
            assert!(
                saw_connecting,
                "no `connecting` with the reason before the alarm: {m}"
            );
            assert!(
                started.elapsed() >= Duration::from_secs(20),
                "alarmed within the first attempt's grace: {m}"
            );
            break;
        }
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulator_killed_with_sigkill_leaves_no_dbus_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let text = ble_config_text(dir.path(), free_port());
    let config = dir.path().join("ble.toml");
    std::fs::write(&config, &text).unwrap();
    let mut sim = Command::new(bin())
        .args(["simulate", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It prints its endpoints, then the bus address.
    let mut address = String::new();
    {
        use std::io::BufRead;
        let out = sim.stdout.take().unwrap();
        for line in std::io::BufReader::new(out).lines() {
            let line = line.unwrap();
            if let Some(a) = line.strip_prefix("DBUS_SYSTEM_BUS_ADDRESS=") {
                address = a.to_owned();
                break;
            }
        }
    }
    let socket = address
        .strip_prefix("unix:path=")
        .and_then(|a| a.split(',').next())
        .unwrap_or_else(|| panic!("a unix socket address: {address:?}"))
        .to_owned();
    let children = child_processes(sim.id(), "dbus-daemon");
    assert_eq!(children.len(), 1, "one dbus-daemon, the simulator's child");
    // The bus serves while the simulator runs (it is not killed when the thread that started
    // it goes idle). A fixed wait on purpose: what is shown is that nothing stops the bus in
    // those 12 s, which only real time passing can show.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        "the bus listens at {socket}"
    );
    sim.kill().unwrap(); // SIGKILL: no destructor runs.
    sim.wait().unwrap();
    eventually(
        SOON,
        async || (!process_alive(children[0])).then_some(()),
        || format!("the dbus-daemon {} outlived its simulator", children[0]),
    )
    .await;
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_err(),
        "nothing listens at {socket} any more"
    );
}

/// The pids of the processes named `name` whose parent is `parent`.
fn child_processes(parent: u32, name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        if field("Name:") == name && field("PPid:") == parent.to_string() {
            out.push(pid);
        }
    }
    out
}

/// Whether `pid` runs (a zombie waiting for a reaper does not).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => false,
        Ok(status) => !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
    }
}

/// A minimal HTTP GET over loopback; returns the raw response.
async fn reqwest_like_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(SOON, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}
