//! Operations interfaces against the real binary: Prometheus `/metrics`, the OpenAPI document,
//! and the built binary's `demo` run from an empty directory (as `cargo install` leaves it).

use crate::util::{
    TestConfig, USERS, bin, eventually, free_port, listening_on, notify_target, scenario_text,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VIEWER: &str = "viewer-token-0123456789";

/// A child process killed when dropped (a failed assertion leaves nothing running).
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` with an optional token: (status, headers, body as text).
async fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// One sample of an exposition: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text exposition format (0.0.4): `# HELP`/`# TYPE` lines and samples
/// `name{label="value",...} number`. Panics, naming the line, on anything else; checks that
/// every sample belongs to a family declared by a `# TYPE` line before it.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            match kw {
                "HELP" => {}
                "TYPE" => {
                    let t = parts.next().unwrap_or("");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "line {n}: bad type {t:?}: {line}"
                    );
                    types.insert(name.to_owned(), t.to_owned());
                }
                _ => panic!("line {n}: unknown comment {line:?}"),
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("line {n}: no value: {line:?}"));
        let name = &line[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "line {n}: bad metric name {name:?}"
        );
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let end;
            loop {
                // label name
                let start = match chars.peek() {
                    Some((_, '}')) => {
                        end = chars.next().unwrap().0;
                        break;
                    }
                    Some((i, _)) => *i,
                    None => panic!("line {n}: unterminated labels"),
                };
                let eq = r[start..]
                    .find('=')
                    .map(|i| start + i)
                    .unwrap_or_else(|| panic!("line {n}: label without ="));
                let key = &r[start..eq];
                assert!(
                    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "line {n}: bad label name {key:?}"
                );
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                assert_eq!(
                    chars.next().map(|c| c.1),
                    Some('"'),
                    "line {n}: label value not quoted"
                );
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            other => panic!("line {n}: bad escape {other:?}"),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => panic!("line {n}: unterminated label value"),
                    }
                }
                labels.insert(key.to_owned(), value);
                match chars.next() {
                    Some((_, ',')) => {}
                    Some((i, '}')) => {
                        end = i;
                        break;
                    }
                    other => panic!("line {n}: expected , or }} after a label, got {other:?}"),
                }
            }
            rest = &r[end + 1..];
        }
        let value_text = rest.trim();
        let value: f64 = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("line {n}: value {v:?} is not a number")),
        };
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "line {n}: sample {name} of no declared family"
        );
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    out
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// The config and scenario of the tests that run `vitalsd demo --config`: two beds, users,
/// and (with `desaturate`) bed A's SpO2 falling to 80 % after 1 s.
fn write_rig(
    dir: &Path,
    desaturate: bool,
    extra: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let cfg_path = TestConfig::new(dir)
        .bp_interval("1h")
        .extra(USERS)
        .extra(extra)
        .write("vitalsd.toml");
    let a = if desaturate {
        r#"events = [{ at = "1s", for = "1h", kind = "desaturation", spo2 = 80, ramp = "1s" }]"#
    } else {
        ""
    };
    let sc_path = dir.join("scenario.toml");
    std::fs::write(&sc_path, scenario_text(a, "")).unwrap();
    (cfg_path, sc_path)
}

fn demo(cfg: &Path, scenario: &Path) -> (Kid, std::net::SocketAddr) {
    let mut child = Command::new(bin())
        .args(["demo", "--config", cfg.to_str().unwrap()])
        .args(["--scenario", scenario.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = listening_on(&mut child);
    (Kid(child), addr)
}

async fn scrape(addr: std::net::SocketAddr) -> Vec<Sample> {
    let (status, head, body) = get(addr, "/metrics", Some(VIEWER)).await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    parse_exposition(&body)
}

/// Scrapes until `ok` holds for the parsed samples (or 60 s pass).
async fn scrape_until(
    addr: std::net::SocketAddr,
    what: &str,
    ok: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    eventually(
        Duration::from_secs(60),
        async || Some(scrape(addr).await).filter(|s| ok(s)),
        || format!("timed out waiting for {what}"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_readings_growing_an_alarm_raised_and_parse_as_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    // A webhook target where nothing listens: its pages fail.
    let desk = notify_target(
        "desk",
        &format!("http://127.0.0.1:{}/page", free_port()),
        "timeout = \"1s\"",
    );
    let (cfg, sc) = write_rig(dir.path(), true, &desk);
    let (_kid, addr) = demo(&cfg, &sc);

    // A viewer's token is needed, like every other read.
    let (status, _, _) = get(addr, "/metrics", None).await;
    assert_eq!(status, 401, "/metrics without a token");

    // A WebSocket client, so that delivery is measured and the client is counted.
    let mut ws = crate::util::Client::connect(&format!("ws://{addr}/ws?token={VIEWER}")).await;
    let oxi = [("device", "room1-A-oximeter"), ("bed", "room1/A")];
    let first = scrape_until(addr, "readings from room1-A-oximeter", |s| {
        value(s, "vitalsd_device_readings_total", &oxi).unwrap_or(0.0) > 0.0
    })
    .await;
    let n0 = value(&first, "vitalsd_device_readings_total", &oxi).unwrap();
    let later = scrape_until(addr, "the readings counter to grow", |s| {
        value(s, "vitalsd_device_readings_total", &oxi).unwrap_or(0.0) > n0
    })
    .await;
    assert_eq!(
        value(
            &later,
            "vitalsd_device_status",
            &[("device", "room1-A-oximeter"), ("status", "connected")]
        ),
        Some(1.0),
        "the oximeter shows as connected"
    );
    assert_eq!(
        value(
            &later,
            "vitalsd_device_status",
            &[("device", "room1-A-oximeter"), ("status", "disconnected")]
        ),
        Some(0.0)
    );
    assert_eq!(value(&later, "vitalsd_websocket_clients", &[]), Some(1.0));
    assert_eq!(value(&later, "vitalsd_store_writable", &[]), Some(1.0));

    // SpO2 at 80 % for longer than the rule's 10 s delay: spo2_low is raised.
    let raised = |s: &[Sample]| {
        s.iter()
            .find(|x| {
                x.name == "vitalsd_alarms_raised_total"
                    && x.labels.get("condition").map(String::as_str) == Some("spo2_low")
            })
            .cloned()
    };
    let after = scrape_until(addr, "spo2_low in alarms_raised_total", |s| {
        raised(s).is_some()
    })
    .await;
    let r = raised(&after).unwrap();
    assert!(r.value >= 1.0, "{r:?}");
    // The raise is in the record: group-committed (fsynced) by the store's writer.
    scrape_until(addr, "a group commit of the alarm's event", |s| {
        value(s, "vitalsd_store_group_commits_total", &[]).unwrap_or(0.0) >= 1.0
    })
    .await;
    // Every family the daemon declares is documented.
    let body = get(addr, "/metrics", Some(VIEWER)).await.2;
    let documented = documented_metrics();
    for line in body.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(
            documented.contains(name),
            "{name} is not in docs/metrics.md"
        );
    }
    let priority = r.labels.get("priority").cloned().unwrap_or_default();
    assert!(
        priority == "medium" || priority == "high",
        "spo2 at 80 % is raised medium (below 90) or high (below 85): {r:?}"
    );
    // It is current, so it shows among the active alarms too.
    assert!(
        after.iter().any(|x| x.name == "vitalsd_alarms_active"
            && x.labels.get("condition").map(String::as_str) == Some("spo2_low")
            && x.value >= 1.0),
        "spo2_low among vitalsd_alarms_active"
    );
    // Its page to the dead webhook target failed, and says so.
    let desk = [("target", "desk")];
    let failing = scrape_until(addr, "the desk target's failures", |s| {
        value(s, "vitalsd_notify_failures_total", &desk).unwrap_or(0.0) >= 1.0
    })
    .await;
    assert_eq!(
        value(&failing, "vitalsd_notify_delivered_total", &desk),
        Some(0.0)
    );
    assert!(value(&failing, "vitalsd_notify_queue_depth", &desk).is_some());
    // The latency histograms have counted: decisions, and deliveries to our client.
    let decisions = value(&after, "vitalsd_alarm_decision_seconds_count", &[]).unwrap();
    assert!(
        decisions >= n0,
        "every reading is a decision: {decisions} < {n0}"
    );
    assert_eq!(
        value(
            &after,
            "vitalsd_alarm_decision_seconds_bucket",
            &[("le", "+Inf")]
        ),
        Some(decisions)
    );
    ws.wait_for("a reading", Duration::from_secs(10), |m| {
        m["type"] == "reading"
    })
    .await;
    let delivered = scrape_until(addr, "deliveries measured", |s| {
        value(s, "vitalsd_websocket_delivery_seconds_count", &[]).unwrap_or(0.0) > 0.0
    })
    .await;
    assert!(value(&delivered, "vitalsd_websocket_delivery_seconds_sum", &[]).unwrap() >= 0.0);
    ws.close().await;
}

/// The router's routes, read from the source of the router and its route modules: every
/// `.route("PATH", get(..).post(..))` as (METHOD, PATH).
fn router_routes() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let mut rest = src.as_str();
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let Some(q) = rest.find('"') else { break };
            let after = &rest[q + 1..];
            let Some(end) = after.find('"') else { break };
            let route = after[..end].to_owned();
            // The handler expression: up to the `)` that closes `.route(`.
            let mut depth = 1;
            let mut stop = after.len();
            for (j, c) in after[end..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            stop = end + j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let handlers = &after[end..stop];
            for m in ["get", "post", "put", "delete", "patch"] {
                let call = format!("{m}(");
                if handlers.match_indices(&call).any(|(k, _)| {
                    k == 0
                        || !handlers.as_bytes()[k - 1].is_ascii_alphanumeric()
                            && handlers.as_bytes()[k - 1] != b'_'
                }) {
                    out.push((m.to_uppercase(), route.clone()));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The routes docs/api.md lists in its tables: `METHOD /path` in a row's first cell.
fn documented_routes() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md")).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(cell) = line.strip_prefix("| `") else {
            continue;
        };
        let Some(cell) = cell.split('`').next() else {
            continue;
        };
        for part in cell.split(", ") {
            let mut words = part.split_whitespace();
            if let (Some(m), Some(p)) = (words.next(), words.next())
                && ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&m)
                && p.starts_with('/')
                && !p.contains("...")
            {
                out.push((m.to_owned(), p.to_owned()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_covers_every_route_of_the_router_and_of_the_api_doc() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, sc) = write_rig(dir.path(), false, "");
    let (_kid, addr) = demo(&cfg, &sc);
    let (status, head, body) = get(addr, "/api/openapi.json", None).await;
    assert_eq!(
        status, 200,
        "the document is public (it holds no data): {head}"
    );
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    let in_doc = |m: &str, p: &str| {
        paths
            .get(p)
            .and_then(|item| item.get(m.to_lowercase()))
            .is_some()
    };
    let router = router_routes();
    assert!(router.len() >= 20, "routes found in src/api: {router:?}");
    // `/`, `/assets/{name}`, `/ws` are in the router too: the document covers them as well.
    let missing: Vec<_> = router.iter().filter(|(m, p)| !in_doc(m, p)).collect();
    assert!(
        missing.is_empty(),
        "routes of the router missing from /api/openapi.json: {missing:?}"
    );
    let documented = documented_routes();
    assert!(
        documented.len() >= 15,
        "routes found in docs/api.md: {documented:?}"
    );
    let missing: Vec<_> = documented.iter().filter(|(m, p)| !in_doc(m, p)).collect();
    assert!(
        missing.is_empty(),
        "routes of docs/api.md missing from /api/openapi.json: {missing:?}"
    );
    // And nothing in the document that the router does not serve.
    for (p, item) in paths {
        for m in item.as_object().unwrap().keys() {
            assert!(
                router.contains(&(m.to_uppercase(), p.clone())),
                "{} {p} is in the document but not in the router",
                m.to_uppercase()
            );
        }
    }
    // Operations say who may call them, and schemas resolve.
    let ack = &paths["/api/alarms/{id}/ack"]["post"];
    assert!(ack["responses"]["200"].is_object(), "{ack}");
    let schemas = doc["components"]["schemas"]
        .as_object()
        .expect("component schemas");
    for r in body.match_indices("#/components/schemas/") {
        let name: String = body[r.0 + r.1.len()..]
            .chars()
            .take_while(|c| *c != '"')
            .collect();
        assert!(
            schemas.contains_key(&name),
            "dangling schema reference {name}"
        );
    }
}

/// Runs the built binary's `demo` with no options from `cwd`, HOME set to `home`: (child,
/// address, the store path it printed).
fn bare_demo(cwd: &Path, home: &Path) -> (Kid, std::net::SocketAddr, std::path::PathBuf) {
    use std::io::BufRead;
    let mut child = Command::new(bin())
        .args(["demo", "--listen", "127.0.0.1:0"])
        .current_dir(cwd)
        .env("HOME", home)
        .env_remove("XDG_STATE_HOME")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let kid = Kid(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let (mut addr, mut store) = (None, None);
    while addr.is_none() || store.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the demo prints where it listens and where its store is");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = Some(rest.trim_end_matches('/').parse().unwrap());
        }
        if let Some(rest) = line.strip_prefix("store: ") {
            store = Some(std::path::PathBuf::from(rest.split(" (").next().unwrap()));
        }
    }
    std::thread::spawn(move || while rx.recv().is_ok() {});
    (kid, addr.unwrap(), store.unwrap())
}

fn terminate(mut kid: Kid) {
    let status = Command::new("kill")
        .args(["-TERM", &kid.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = kid.0.wait().unwrap();
    assert!(exit.success(), "SIGTERM is an orderly stop: {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_from_an_empty_directory_with_everything_built_in_and_a_fresh_store() {
    let cwd = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let (kid, addr, store) = bare_demo(cwd.path(), home.path());
    // The dashboard, from the binary.
    let (status, _, page) = get(addr, "/", None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<html") || page.contains("<!DOCTYPE"),
        "{page:.200}"
    );
    let (status, _, js) = get(addr, "/assets/app.js", None).await;
    assert_eq!(status, 200);
    assert!(!js.trim().is_empty(), "the dashboard's script is served");
    // Readings from the built-in config and scenario, on the WebSocket as a dashboard sees them.
    let mut ws =
        crate::util::Client::connect(&format!("ws://{addr}/ws?token=demo-viewer-token")).await;
    let snap = ws.next(Duration::from_secs(10)).await.expect("a snapshot");
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(
        snap["rooms"][0]["beds"].as_array().map(Vec::len),
        Some(2),
        "{snap}"
    );
    ws.wait_for("a reading from room1/A", Duration::from_secs(30), |m| {
        crate::util::is_reading(m, "room1/A", "spo2")
    })
    .await;
    ws.close().await;
    // Its store is a fresh directory of its own, outside the working directory.
    assert!(!store.starts_with(cwd.path()), "{}", store.display());
    assert!(store.exists(), "{}", store.display());
    terminate(kid);
    assert!(
        !store.exists(),
        "a fresh demo store is removed at exit: {}",
        store.display()
    );
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "the demo wrote into its working directory: {left:?}"
    );

    // A second run starts with no patient of the first.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (kid, addr, store2) = bare_demo(cwd.path(), home.path());
    assert_ne!(store, store2);
    let (status, _, body) = get(addr, "/api/sessions", Some("demo-viewer-token")).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    for s in v["sessions"].as_array().unwrap() {
        assert!(
            s["admitted_ms"].as_i64().unwrap() >= started,
            "a session of an earlier demo run: {s}"
        );
    }
    terminate(kid);
}

/// Every metric name docs/metrics.md lists (in backticks).
fn documented_metrics() -> std::collections::BTreeSet<String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md"))
            .unwrap();
    metric_names(&text)
}

/// The `vitalsd_...` names in a text, histogram series suffixes removed.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (i, _) in text.match_indices("vitalsd_") {
        if i > 0
            && (text.as_bytes()[i - 1].is_ascii_alphanumeric() || text.as_bytes()[i - 1] == b'_')
        {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| f.ends_with("_seconds")))
            .map(str::to_owned)
            .unwrap_or(name);
        out.insert(name);
    }
    out
}

#[test]
fn the_alert_rules_and_grafana_dashboard_parse_and_use_only_documented_metrics() {
    use yaml_rust2::{Yaml, YamlLoader};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let documented = documented_metrics();
    // Prometheus rules: groups -> rules, each an alert with expr, labels.severity, summary.
    let text = std::fs::read_to_string(root.join("prometheus/vitalsd-rules.yml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("the rules file is YAML");
    let groups = docs[0]["groups"].as_vec().expect("groups:");
    let mut alerts = Vec::new();
    for g in groups {
        assert!(g["name"].as_str().is_some(), "a group without a name");
        for r in g["rules"].as_vec().expect("rules:") {
            let alert = r["alert"]
                .as_str()
                .expect("every rule is an alert")
                .to_owned();
            let expr = r["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{alert}: no expr"));
            assert!(
                ["critical", "warning", "info"]
                    .contains(&r["labels"]["severity"].as_str().unwrap_or("")),
                "{alert}: severity"
            );
            assert!(
                r["annotations"]["summary"].as_str().is_some(),
                "{alert}: summary"
            );
            if let Yaml::String(f) = &r["for"] {
                assert!(
                    f.ends_with('s') || f.ends_with('m') || f.ends_with('h'),
                    "{alert}: for {f}"
                );
            }
            for m in metric_names(expr) {
                assert!(
                    documented.contains(&m),
                    "{alert} uses {m}, not in docs/metrics.md"
                );
            }
            alerts.push(alert);
        }
    }
    for want in [
        "VitalsdDeviceDown",
        "VitalsdStoreNotWritable",
        "VitalsdStoreDropping",
        "VitalsdNotifyFailing",
        "VitalsdNoDashboardCanSound",
        "VitalsdAlarmDecisionSlow",
        "VitalsdDeliverySlow",
    ] {
        assert!(
            alerts.iter().any(|a| a == want),
            "no alert {want}: {alerts:?}"
        );
    }
    // The Grafana dashboard: JSON, panels with Prometheus queries on documented metrics.
    let text = std::fs::read_to_string(root.join("grafana/vitalsd-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    let mut queries = 0;
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("a target's expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr}");
            for m in names {
                assert!(
                    documented.contains(&m),
                    "panel {} uses {m}, not in docs/metrics.md",
                    p["title"]
                );
            }
            queries += 1;
        }
    }
    assert!(queries >= 15, "{queries} queries");
    let used = metric_names(&text);
    for m in [
        "vitalsd_alarm_decision_seconds",
        "vitalsd_websocket_delivery_seconds",
        "vitalsd_device_connected",
        "vitalsd_store_writable",
    ] {
        assert!(used.contains(m), "the dashboard shows {m}");
    }
}

#[test]
fn the_systemd_unit_runs_as_its_own_user_with_a_state_directory_and_hardening() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/vitalsd.service"),
    )
    .unwrap();
    let keys: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let value = |k: &str| keys.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    assert_eq!(value("User"), Some("vitalsd"), "a dedicated user");
    assert_eq!(value("StateDirectory"), Some("vitalsd"));
    assert!(
        value("LimitNOFILE")
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|n| n >= 1024)
    );
    for (k, v) in [
        ("NoNewPrivileges", "true"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "true"),
        ("PrivateTmp", "true"),
        ("DevicePolicy", "closed"),
        ("CapabilityBoundingSet", ""),
        ("Restart", "always"),
    ] {
        assert_eq!(value(k), Some(v), "{k}");
    }
    assert!(
        keys.iter()
            .any(|(k, v)| *k == "DeviceAllow" && v.starts_with("char-ttyUSB")),
        "USB serial adapters stay reachable"
    );
    assert!(value("ExecStart").is_some_and(|v| v.contains("vitalsd run --config")));
}
