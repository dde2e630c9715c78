//! Property tests (proptest) of every state-changing API route's request body, against the
//! daemon's real listener (in this process, over loopback TCP, through the guard and the auth
//! extractors): random bytes, random JSON, and structure-aware JSON built from the routes' own
//! field names and values (limit rules, presets, session events, baselines, pauses), some
//! valid. For every request (issue 11):
//!
//! - the daemon answers, and never with a 5xx (a panic in a handler would drop the connection);
//! - a refused request (4xx) changed nothing: limits, baseline, session, audio pause and
//!   acknowledgements are as before;
//! - the daemon stays up (`/healthz` answers 200 after every case).
//!
//! The run is seeded (a failure prints the route and the body, bytes and text). A longer run:
//! `VITALSD_FUZZ_CASES=5000 VITALSD_FUZZ_SEED=7 cargo test --release --test tests api_fuzz::`.

use crate::util::{eventually_blocking, free_port};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;
use vitalsd::app::{self, Options};
use vitalsd::config::load_config_str;

const ADMIN: &str = "admin-token-fuzz-0123456789";

fn cases() -> u32 {
    std::env::var("VITALSD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn seed() -> u64 {
    std::env::var("VITALSD_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11)
}

/// The state-changing routes: (method, path). `{id}` is an alarm id or a fuzzed path segment.
const ROUTES: &[(&str, &str)] = &[
    ("PUT", "/api/beds/room1/A/limits"),
    ("POST", "/api/beds/room1/A/audio-pause"),
    ("DELETE", "/api/beds/room1/A/audio-pause"),
    ("POST", "/api/beds/room1/A/baseline"),
    ("POST", "/api/beds/room1/A/admit"),
    ("POST", "/api/beds/room1/A/events"),
    ("POST", "/api/beds/room1/A/discharge"),
    ("POST", "/api/alarms/{id}/ack"),
];

/// Every field name the routes know, and some they do not.
const KEYS: &[&str] = &[
    "rule",
    "preset",
    "confirm_disable",
    "metric",
    "direction",
    "threshold",
    "above_baseline",
    "below_baseline",
    "priority",
    "delay",
    "hysteresis",
    "severe",
    "seconds",
    "sys",
    "dia",
    "pulse_rate",
    "spo2",
    "from_recent",
    "label",
    "mrn",
    "weight_kg",
    "kind",
    "drug",
    "dose",
    "unit",
    "route",
    "text",
    "phase",
    "type",
    "token",
    "__proto__",
    "",
];

/// Values the routes know (metrics, directions, priorities, presets, kinds, phases,
/// durations), and near misses.
const WORDS: &[&str] = &[
    "spo2",
    "pulse_rate",
    "nibp_sys",
    "nibp_dia",
    "heart_rate",
    "low",
    "high",
    "medium",
    "ketamine-session",
    "standard",
    "dose",
    "note",
    "phase",
    "baseline",
    "preparation",
    "dosing",
    "monitoring",
    "recovery",
    "ketamine",
    "mg",
    "IM",
    "5s",
    "0s",
    "-1s",
    "1e9h",
    "10 m",
    "AB",
    "",
    "\u{0}",
    "\u{202e}evil",
];

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        prop::sample::select(vec![
            0.0, -0.0, -1.0, 1.0, 30.0, 60.0, 90.0, 130.0, 600.0, 601.0, 86_400.0, 1e308, -1e308,
            5e-324,
        ])
        .prop_map(|f| json!(f)),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        prop::sample::select(WORDS).prop_map(|w| json!(w)),
        "\\PC{0,40}".prop_map(Value::String),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-z_]{0,12}",
    ]
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object of the routes' own keys with plausible or odd values.
fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), leaf(), 0..7)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// A limits body: rules made of rule keys, with or without a preset and a confirmation.
fn limits_body() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(object(), 0..4),
        prop::option::of(leaf()),
        prop::option::of(leaf()),
    )
        .prop_map(|(rules, preset, confirm)| {
            let mut m = serde_json::Map::new();
            m.insert("rule".into(), Value::Array(rules));
            if let Some(p) = preset {
                m.insert("preset".into(), p);
            }
            if let Some(c) = confirm {
                m.insert("confirm_disable".into(), c);
            }
            Value::Object(m)
        })
}

/// A session event: a kind (known or not) and some fields.
fn event_body() -> impl Strategy<Value = Value> {
    (prop::sample::select(WORDS), object()).prop_map(|(kind, mut v)| {
        if let Value::Object(m) = &mut v {
            m.insert("kind".into(), json!(kind));
        }
        v
    })
}

/// Valid bodies of a route (by its index in [`ROUTES`]), the seeds of the mutated ones.
fn valid(route: usize) -> Vec<Value> {
    match route {
        0 => vec![
            json!({"preset": "ketamine-session"}),
            json!({"rule": [
                {"metric": "spo2", "direction": "low", "threshold": 90, "priority": "high", "delay": "10s"},
                {"metric": "pulse_rate", "direction": "high", "threshold": 130, "priority": "medium"},
                {"metric": "nibp_sys", "direction": "high", "above_baseline": 40, "priority": "medium"}
            ]}),
            json!({"rule": [], "confirm_disable": true}),
        ],
        1 => vec![json!({"seconds": 60}), json!({})],
        3 => vec![
            json!({"sys": 120, "dia": 80, "pulse_rate": 70, "spo2": 98}),
            json!({"from_recent": true}),
        ],
        4 => vec![json!({"label": "AB", "mrn": "123", "weight_kg": 70})],
        5 => vec![
            json!({"kind": "note", "text": "calm"}),
            json!({"kind": "dose", "drug": "ketamine", "dose": 0.5, "unit": "mg/kg", "route": "IM"}),
            json!({"kind": "phase", "phase": "dosing"}),
            json!({"kind": "baseline", "sys": 120, "dia": 80}),
        ],
        _ => vec![json!({})],
    }
}

/// A valid body of the route, as is or with one key removed, changed or added.
fn mutated(route: usize) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(valid(route)),
        0..4u8,
        any::<prop::sample::Index>(),
        leaf(),
        key(),
    )
        .prop_map(|(mut v, op, at, value, new_key)| {
            if let Value::Object(m) = &mut v {
                let keys: Vec<String> = m.keys().cloned().collect();
                let pick = (!keys.is_empty()).then(|| keys[at.index(keys.len())].clone());
                match (op, pick) {
                    (1, Some(k)) => {
                        m.remove(&k);
                    }
                    (2, Some(k)) => {
                        m.insert(k, value);
                    }
                    (3, _) => {
                        m.insert(new_key, value);
                    }
                    _ => {}
                }
            }
            v
        })
}

/// A request body for the route: raw bytes, or JSON of any shape, or structure-aware JSON
/// (the routes' keys and values, valid bodies mutated).
fn body(route: usize) -> impl Strategy<Value = Vec<u8>> {
    let json = |s: BoxedStrategy<Value>| s.prop_map(|v| v.to_string().into_bytes()).boxed();
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => Just(Vec::new()),
        2 => json(json_value().boxed()),
        2 => json(object().boxed()),
        2 => json(limits_body().boxed()),
        2 => json(event_body().boxed()),
        4 => json(mutated(route).boxed()),
    ]
}

/// An ack path segment: the alarm's real id (filled in later), or something else.
fn ack_id() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        1 => "[0-9]{1,25}".prop_map(Some),
        1 => "-?[0-9a-zA-Z%._~-]{0,20}".prop_map(Some),
    ]
}

/// One HTTP/1.1 request as the dashboard sends it (same origin, JSON, the admin's token):
/// (status, body). Status 0 when the daemon did not answer.
fn send(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, "cannot connect".into());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    if s.write_all(&req).is_err() {
        return (0, "write failed".into());
    }
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn get(addr: SocketAddr, path: &str) -> Result<Value, TestCaseError> {
    let (status, body) = send(addr, "GET", path, b"");
    prop_assert_eq!(status, 200, "GET {} answered {}: {}", path, status, body);
    serde_json::from_str(&body).map_err(|e| TestCaseError::fail(format!("GET {path}: {e}")))
}

/// What only the API changes: the bed's limits and baseline, its session (with its events),
/// its audio pause, and which alarms are acknowledged. Also checks `/healthz`.
#[derive(Debug, PartialEq)]
struct State {
    limits: Value,
    session: Value,
    /// Milliseconds since the epoch, to within [`PAUSE_JITTER_MS`]: the daemon derives the
    /// wall-clock end of a pause from its monotonic clock at every look.
    paused_until: Option<i64>,
    acknowledged: Vec<u64>,
}

const PAUSE_JITTER_MS: i64 = 50;

/// `2026-12-01T04:43:34.202Z` in milliseconds since the epoch.
fn parse_ms(t: &str) -> Option<i64> {
    let n = |r: std::ops::Range<usize>| t.get(r).and_then(|s| s.parse::<i64>().ok());
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss, ms) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((((days * 24 + hh) * 60 + mm) * 60 + ss) * 1000 + ms)
}

impl State {
    /// The same, but for a pause that ran out in between (no change a request made) and the
    /// pause end's jitter.
    fn same_as(&self, later: &State) -> bool {
        let now = vitalsd::clock::wall_ms();
        let pause_same = match (self.paused_until, later.paused_until) {
            (Some(a), Some(b)) => (a - b).abs() <= PAUSE_JITTER_MS,
            (Some(a), None) => a <= now + PAUSE_JITTER_MS,
            (None, None) => true,
            (None, Some(_)) => false,
        };
        pause_same
            && self.limits == later.limits
            && self.session == later.session
            && self.acknowledged == later.acknowledged
    }
}

fn state(addr: SocketAddr) -> Result<State, TestCaseError> {
    prop_assert_eq!(get(addr, "/healthz")?["status"].clone(), json!("ok"));
    let bed = get(addr, "/api/rooms")?["rooms"][0]["beds"][0].clone();
    let alarms = get(addr, "/api/alarms")?;
    let mut acknowledged: Vec<u64> = alarms["alarms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "acknowledged")
        .filter_map(|a| a["id"].as_u64())
        .collect();
    acknowledged.sort_unstable();
    Ok(State {
        limits: get(addr, "/api/beds/room1/A/limits")?,
        session: get(addr, "/api/beds/room1/A/session")?,
        paused_until: bed["audio_paused_until"].as_str().and_then(parse_ms),
        acknowledged,
    })
}

/// The daemon with one bed whose NIBP device server is absent (it raises
/// `device_disconnected`, an alarm to acknowledge) and an admin user.
async fn start(dir: &std::path::Path) -> (app::Running, SocketAddr) {
    let text = format!(
        r#"listen = "127.0.0.1:0"
data_dir = "{dir}/data"

[[users]]
name = "fuzz-admin"
role = "admin"
token = "{ADMIN}"

[[rooms]]
id = "room1"
name = "Room 1"

[[rooms.recliners]]
id = "A"

[[rooms.recliners.devices]]
id = "room1-A-nibp"
profile = "suntech-advantage"
tcp = "127.0.0.1:{port}"
"#,
        dir = dir.display(),
        port = free_port()
    );
    let cfg = Arc::new(load_config_str(&text, &dir.join("fuzz.toml")).unwrap());
    let daemon = app::start(cfg, Options::default())
        .await
        .expect("daemon starts");
    let addr = daemon.addr;
    (daemon, addr)
}

/// Regression (found by the run below): a baseline event for a bed without an open session was
/// refused (404) after it had already set the alarm engine's baseline.
#[tokio::test]
async fn a_refused_baseline_event_leaves_the_alarm_baseline_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = start(dir.path()).await;
    let body = br#"{"dia":80,"kind":"baseline","sys":120}"#;
    let (status, answer) = tokio::task::spawn_blocking(move || {
        let answer = send(addr, "POST", "/api/beds/room1/A/events", body);
        let limits = send(addr, "GET", "/api/beds/room1/A/limits", b"");
        (answer, limits)
    })
    .await
    .unwrap();
    assert_eq!(status.0, 404, "{}", status.1);
    let limits: Value = serde_json::from_str(&answer.1).unwrap();
    assert_eq!(limits["baseline"], Value::Null, "{limits}");
    daemon.shutdown().await;
}

#[test]
fn timestamps_read_as_epoch_milliseconds() {
    assert_eq!(parse_ms("1970-01-01T00:00:00.000Z"), Some(0));
    assert_eq!(
        parse_ms(&vitalsd::clock::rfc3339_ms(1_796_100_085_329)),
        Some(1_796_100_085_329)
    );
    assert_eq!(parse_ms("not a time"), None);
}

#[test]
fn no_request_body_makes_a_route_fail_or_changes_state_when_refused() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = rt.block_on(start(dir.path()));
    // Wait for the alarm, so that acknowledging has something to act on.
    let alarm_id = eventually_blocking(
        Duration::from_secs(60),
        || {
            let (_, body) = send(addr, "GET", "/api/alarms", b"");
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            v["alarms"][0]["id"].as_u64()
        },
        || "no alarm within 60 s".to_owned(),
    );

    let config = Config {
        cases: cases(),
        rng_seed: RngSeed::Fixed(seed()),
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    // (route, status) -> count, printed at the end: which answers the bodies reached.
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<(usize, u16), u32>::new());
    let strategy = (0..ROUTES.len()).prop_flat_map(|route| (Just(route), body(route), ack_id()));
    let result = runner.run(&strategy, |(route, body, id)| {
        let (method, path) = ROUTES[route];
        let path = path.replace("{id}", &id.clone().unwrap_or_else(|| alarm_id.to_string()));
        let before = state(addr)?;
        let (status, answer) = send(addr, method, &path, &body);
        if let Ok(mut seen) = seen.lock() {
            *seen.entry((route, status)).or_default() += 1;
        }
        let shown = String::from_utf8_lossy(&body);
        prop_assert!(
            (200..500).contains(&status),
            "{} {} with {:?} answered {}: {}",
            method,
            path,
            shown,
            status,
            answer
        );
        let after = state(addr)?;
        prop_assert!(
            status < 400 || before.same_as(&after),
            "{} {} with {:?} was refused ({}: {}) but changed state:\n{:?}\n{:?}",
            method,
            path,
            shown,
            status,
            answer,
            before,
            after
        );
        Ok(())
    });
    rt.block_on(daemon.shutdown());
    for ((route, status), n) in seen.into_inner().unwrap_or_default() {
        eprintln!("{} {}: {status} x{n}", ROUTES[route].0, ROUTES[route].1);
    }
    if let Err(e) = result {
        panic!("{e}");
    }
}
