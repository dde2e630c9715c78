//! The `vitalsd` binary as a user runs it.

use crate::util::{TestConfig, bin, free_port};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn decode_prints_one_json_object_per_observation() {
    // A real Rad-8 line (yahnatan/pulseox README), as captured from the wire.
    let line = b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n";
    let out = Command::new(bin())
        .args(["decode", "--protocol", "masimo-ascii", &hex(line)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let objs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let get = |metric: &str| {
        objs.iter()
            .find(|o| o["metric"] == metric)
            .unwrap_or_else(|| panic!("no {metric} in {stdout}"))
    };
    assert_eq!(get("spo2")["value"], 98.0);
    assert_eq!(get("pulse_rate")["value"], 97.0);
    assert_eq!(get("perfusion_index")["value"], 3.6);
    assert_eq!(get("spo2")["device_time"], "2016-02-22T22:47:45");
}

#[test]
fn decode_of_an_unknown_protocol_names_the_known_ones() {
    let out = Command::new(bin())
        .args(["decode", "--protocol", "masimo", "00"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("masimo-ascii") && err.contains("nonin-format2"),
        "{err}"
    );
}

#[test]
fn decode_help_lists_every_protocol() {
    let out = Command::new(bin())
        .args(["decode", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for p in vitalsd::protocol::PROTOCOLS {
        assert!(help.contains(p), "{p} missing from {help}");
    }
}

#[test]
fn decode_exits_non_zero_when_nothing_decodes_and_says_why() {
    // Issue 9's damaged Masimo line: cut inside BPM. And a line without its line end.
    let cut = b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=07\r\n";
    let whole = b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800";
    for (bytes, what) in [(&cut[..], "cut line"), (&whole[..], "no line end")] {
        let out = Command::new(bin())
            .args(["decode", "--protocol", "masimo-ascii", &hex(bytes)])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{what}");
        assert!(out.stdout.is_empty(), "{what}: no observation printed");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("nothing decoded"), "{what}: {err}");
    }
}

#[test]
fn check_config_names_file_line_and_key_of_a_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = TestConfig::new(dir.path())
        .text()
        .replace("profile = \"nonin-oem3\"", "profile = \"nonin-oem9\"");
    std::fs::write(&path, &text).unwrap();
    let line = text.lines().position(|l| l.contains("nonin-oem9")).unwrap() + 1;
    let out = Command::new(bin())
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("bad.toml:{line}:")), "{err}");
    assert!(
        err.contains("profile") && err.contains("nonin-oem9"),
        "{err}"
    );
    assert!(err.contains("nonin-oem3"), "lists what is expected: {err}");
}

/// Starts the binary and returns it with the first stdout line that contains `marker`.
fn spawn_until(args: &[&str], marker: &str) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            let done = l.contains(marker);
            lines.push(l);
            if done {
                // Keep draining in the background so the child never blocks on stdout.
                std::thread::spawn(move || while rx.recv().is_ok() {});
                return (child, lines);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("never printed {marker:?}; printed {lines:?}");
}

fn terminate_and_wait(mut child: std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("did not exit on SIGTERM");
        }
        std::thread::sleep(crate::util::POLL_EVERY);
    }
}

#[test]
fn run_serves_the_api_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // Devices that are absent: the daemon warns and keeps serving.
    let path = TestConfig::new(dir.path()).write("run.toml");
    let (child, lines) = spawn_until(&["run", "--config", path.to_str().unwrap()], "listening on");
    assert!(
        lines.iter().any(|l| l.contains("http://127.0.0.1:")),
        "{lines:?}"
    );
    let status = terminate_and_wait(child);
    assert!(status.success(), "exit status {status}");
}

#[test]
fn the_demo_prints_its_devices_endpoints_and_a_live_summary_per_recliner() {
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let (child, lines) = spawn_until(&["demo", "--listen", &listen], "room1/B");
    let text = lines.join("\n");
    assert!(text.contains(&format!("http://{listen}/")), "{text}");
    assert!(text.contains("room1-A-oximeter"), "{text}");
    let status = terminate_and_wait(child);
    assert!(status.success(), "exit status {status}");
}

/// Runs `vitalsd demo` with `args` and collects its stdout lines until every marker has been
/// seen (in any order); then stops it with SIGTERM. Panics after 90 s with what it printed.
fn demo_until(args: &[&str], markers: &[&str]) -> Vec<String> {
    let mut child = Command::new(bin())
        .arg("demo")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
        if markers.iter().all(|m| lines.iter().any(|l| l.contains(m))) {
            std::thread::spawn(move || while rx.recv().is_ok() {});
            let status = terminate_and_wait(child);
            assert!(status.success(), "exit status {status}");
            return lines;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("never printed all of {markers:?}; printed {lines:#?}");
}

#[test]
fn the_demo_admits_both_partners_doses_them_prints_alarms_and_tokens_and_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("short.toml");
    // A is dosed at 4 s and desaturates to 87 % (medium, 10 s delay) from 2 s to 18 s.
    std::fs::write(
        &scenario,
        r#"
name = "short"
acceleration = 1.0
seed = 1

[[beds]]
bed = "room1/A"
baseline = { spo2 = 97, pulse_rate = 72, sys = 122, dia = 78, perfusion_index = 3.5 }
noise = 0.0
dose_at = "4s"
events = [{ at = "2s", for = "16s", kind = "desaturation", spo2 = 87, ramp = "1s" }]

[[beds]]
bed = "room1/B"
baseline = { spo2 = 98, pulse_rate = 66, sys = 116, dia = 74, perfusion_index = 4.2 }
noise = 0.0
dose_at = "5s"
"#,
    )
    .unwrap();
    // The demo config with its own TCP port and serial paths, so that it runs beside another
    // demo; the clinic is in a zone that is not the machine's (Chatham: UTC+12:45/+13:45).
    let config = dir.path().join("demo.toml");
    let text = std::fs::read_to_string("config/demo.toml")
        .unwrap()
        .replace("127.0.0.1:4101", &format!("127.0.0.1:{}", free_port()))
        .replace("/tmp/vitalsd-demo/", &format!("{}/", dir.path().display()))
        + "\n[report]\ntime_zone = \"Pacific/Chatham\"\n";
    std::fs::write(&config, text).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--story",
        "--listen",
        listen.as_str(),
        "--scenario",
        scenario.to_str().unwrap(),
    ];
    let lines = demo_until(
        &args,
        &[
            "demo: room1/A: admitted Demo A",
            "demo: room1/B: admitted Demo B",
            "demo: room1/A: dose ketamine 0.75 mg/kg IM",
            "demo: room1/B: dose ketamine 0.75 mg/kg IM",
            "ALARM RAISED  room1/A  ** SpO2 low 87 < 90 (medium)",
            "ALARM CLEARED room1/A  ** SpO2 low",
        ],
    );
    let text = lines.join("\n");
    // The alarm's time is the clinic's (the config's zone), not the machine's.
    let raised = lines
        .iter()
        .find(|l| l.contains("ALARM RAISED  room1/A"))
        .unwrap();
    let secs = |hms: &str| -> i64 {
        hms.split(':')
            .map(|p| p.parse::<i64>().unwrap())
            .fold(0, |acc, n| acc * 60 + n)
    };
    let now = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("Pacific/Chatham").unwrap())
        .strftime("%H:%M:%S")
        .to_string();
    let behind = (secs(&now) - secs(&raised[..8])).rem_euclid(86_400);
    assert!(
        behind < 180,
        "raised at {} in Chatham, printed {raised:?}",
        &now
    );
    for token in [
        "#token=demo-viewer-token",
        "#token=demo-nurse-token-1",
        "#token=demo-admin-token-1",
    ] {
        assert!(text.contains(token), "every role's token: {text}");
    }
    let store = text
        .lines()
        .find_map(|l| l.strip_prefix("store: "))
        .and_then(|l| l.split(" (fresh for this run").next())
        .unwrap_or_else(|| panic!("the store's directory is printed: {text}"));
    assert!(
        !std::path::Path::new(store).exists(),
        "the fresh store {store} is removed at exit"
    );
    assert!(text.contains("admitted Demo A (session 1)"), "{text}");
    // The second run starts from a fresh store: its patients are session 1 and 2 again.
    let again = demo_until(&args, &["demo: room1/B: admitted Demo B"]).join("\n");
    assert!(again.contains("admitted Demo A (session 1)"), "{again}");
    assert!(!again.contains("previous run"), "{again}");
}

/// Runs the built-in demo with no options, its log to `log`, until its summary shows every
/// device of both recliners connected: (child, what it printed).
fn built_in_demo_connected(log: &std::path::Path) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(bin())
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let connected = |lines: &[String], bed: &str, devices: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(bed) && l.ends_with(devices))
    };
    let mut lines: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
        if connected(
            &lines,
            "room1/A",
            "[oximeter:connected bp:connected heart_rate:connected]",
        ) && connected(&lines, "room1/B", "[oximeter:connected bp:connected]")
        {
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return (child, lines);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the demo's devices never all connected; printed {lines:#?}");
}

/// The address a demo printed it listens on.
fn listening_on(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("vitalsd listening on "))
        .unwrap_or_else(|| panic!("no listen address printed: {lines:#?}"))
        .to_owned()
}

#[test]
fn two_built_in_demos_run_side_by_side_the_second_on_free_ports_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (first, one) = built_in_demo_connected(&dir.path().join("first.log"));
    // The second finds the first's listen port, cuff port and serial links taken, takes free
    // ones and says so; all its devices connect to its own simulator.
    let (second, two) = built_in_demo_connected(&dir.path().join("second.log"));
    assert_ne!(listening_on(&one), listening_on(&two));
    let text = two.join("\n");
    assert!(
        text.contains("is taken; room1-A-nibp serves on 127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("is in use by another demo; serial ports under "),
        "{text}"
    );
    for child in [second, first] {
        let status = terminate_and_wait(child);
        assert!(status.success(), "exit status {status}");
    }
}

#[test]
fn the_demo_stopped_with_sigterm_stops_in_order_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("demo.log");
    // Every device connected, BLE ones included (their BlueZ is the simulator's).
    let (child, _) = built_in_demo_connected(&log);
    let status = terminate_and_wait(child);
    assert!(status.success(), "exit status {status}");
    let log = std::fs::read_to_string(&log).unwrap();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(bad.is_empty(), "a clean stop logs no warning: {bad:#?}");
}
