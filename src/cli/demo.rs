//! What `vitalsd demo` does besides running: it admits both partners, records their baseline,
//! doses and phases when its scenario doses them, and prints alarms as they come and go.

use crate::clock::wall_ms;
use crate::store::export::condition_name;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One recliner's part: its bed and when (real time after start) its dose is given.
pub struct Story {
    beds: Vec<(String, Option<Duration>)>,
}

impl Story {
    pub fn of(s: &crate::sim::scenario::Scenario) -> Story {
        let accel = s.acceleration.max(0.01);
        Story {
            beds: s
                .beds
                .iter()
                .map(|b| (b.bed.clone(), b.dose_at.map(|d| d.div_f64(accel))))
                .collect(),
        }
    }

    /// Plays the nurse: admit everyone at once, then per bed just before its dose the
    /// baseline (from the recent readings) and phase `dosing`, the dose, phase `monitoring`.
    pub async fn tell(self, base: String, token: Option<String>, cancel: CancellationToken) {
        let http = client();
        let post = |path: String, body: Value| {
            let mut r = http.post(format!("{base}{path}")).json(&body);
            if let Some(t) = &token {
                r = r.bearer_auth(t);
            }
            async move {
                match r.send().await {
                    Ok(res) if res.status().is_success() => {
                        Ok(res.json::<Value>().await.unwrap_or(Value::Null))
                    }
                    Ok(res) => {
                        let code = res.status();
                        Err(format!("{code}: {}", res.text().await.unwrap_or_default()))
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let start = tokio::time::Instant::now();
        let mut steps: Vec<(Duration, String, &'static str, Value)> = Vec::new();
        for (n, (bed, dose)) in self.beds.iter().enumerate() {
            let base = format!("/api/beds/{bed}");
            // Leftovers of an earlier run (with --data-dir): discharged first.
            if post(format!("{base}/discharge"), json!({})).await.is_ok() {
                println!("demo: {bed}: discharged the previous run's patient");
            }
            let label = format!("Demo {}", bed.rsplit('/').next().unwrap_or(bed));
            match post(
                format!("{base}/admit"),
                json!({"label": label, "weight_kg": if n % 2 == 0 { 72.0 } else { 64.0 }}),
            )
            .await
            {
                Ok(v) => println!(
                    "demo: {bed}: admitted {label} (session {})",
                    v["session"]["id"]
                ),
                Err(e) => println!("demo: {bed}: admission failed: {e}"),
            }
            if let Some(at) = dose {
                let before = at.saturating_sub(Duration::from_secs(2));
                steps.push((
                    before,
                    bed.clone(),
                    "/baseline",
                    json!({"from_recent": true}),
                ));
                steps.push((
                    before,
                    bed.clone(),
                    "/events",
                    json!({"kind": "phase", "phase": "dosing"}),
                ));
                steps.push((*at, bed.clone(), "/events", json!({"kind": "dose", "drug": "ketamine", "dose": 0.75, "unit": "mg/kg", "route": "IM"})));
                steps.push((
                    *at,
                    bed.clone(),
                    "/events",
                    json!({"kind": "phase", "phase": "monitoring"}),
                ));
            }
        }
        // Whether the bed has a valid systolic yet (its `latest` in /api/rooms).
        let has_bp = |bed: String| {
            let mut r = http.get(format!("{base}/api/rooms"));
            if let Some(t) = &token {
                r = r.bearer_auth(t);
            }
            async move {
                let Ok(res) = r.send().await else {
                    return false;
                };
                let Ok(v) = res.json::<Value>().await else {
                    return false;
                };
                let rooms = v["rooms"].as_array().cloned().unwrap_or_default();
                rooms.iter().any(|room| {
                    room["beds"].as_array().is_some_and(|beds| {
                        beds.iter().any(|b| {
                            b["id"] == bed.as_str() && b["latest"]["nibp_sys"]["value"].is_number()
                        })
                    })
                })
            }
        };
        steps.sort_by_key(|s| s.0);
        for (at, bed, route, body) in steps {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(start + at) => {}
            }
            // A baseline without blood pressure would leave the BP-rise rules inactive
            // (baseline_missing once dosed): the first cuff result comes ~30 s after the
            // start, so the nurse waits for it, as a real one would (at most a minute).
            if route == "/baseline" && !has_bp(bed.clone()).await {
                println!("demo: {bed}: waiting for the first blood pressure before the baseline");
                let until = tokio::time::Instant::now() + Duration::from_secs(60);
                while tokio::time::Instant::now() < until && !has_bp(bed.clone()).await {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
            let what = match body["kind"].as_str() {
                Some("dose") => "dose ketamine 0.75 mg/kg IM".to_owned(),
                Some("phase") => format!("phase {}", body["phase"].as_str().unwrap_or("")),
                _ => "pre-dose baseline from the recent readings".to_owned(),
            };
            match post(format!("/api/beds/{bed}{route}"), body).await {
                Ok(_) => println!("demo: {bed}: {what}"),
                Err(e) => println!("demo: {bed}: {what} failed: {e}"),
            }
        }
    }
}

/// The demo's HTTP client for its own API on loopback. With `--tls` the daemon serves the
/// demo's self-signed certificate, which only this loopback client accepts unchecked.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap_or_default()
}

/// Prints every alarm raised, acknowledged, latched and cleared since the start, read from
/// the alarm history (`GET /api/alarms/history`, committed before it is published) twice a
/// second: an API reader, so it never counts as a connected client or dashboard. Times are
/// the clinic's (`[report] time_zone`, as in the session report; default the system's).
pub async fn print_alarms(
    base: String,
    token: Option<String>,
    zone: crate::store::export::Zone,
    cancel: CancellationToken,
) {
    let http = client();
    let since = wall_ms() - 1000;
    let mut printed: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let mut req = http.get(format!("{base}/api/alarms/history?limit=200"));
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let Ok(res) = req.send().await else { continue };
        let Ok(body) = res.json::<Value>().await else {
            continue;
        };
        let Some(events) = body["events"].as_array() else {
            continue;
        };
        // Newest first: printed oldest first.
        for v in events.iter().rev() {
            let at = v["at"].as_str().and_then(crate::api::records::parse_time);
            if at.is_none_or(|t| t < since) {
                continue;
            }
            let key = format!("{}|{}|{}", v["at"], v["alarm"]["id"], v["event"]);
            if printed.contains(&key) {
                continue;
            }
            let at = at.unwrap_or_else(wall_ms);
            if let Some(line) = alarm_line(v, at, zone.offset_s(at)) {
                println!("{line}");
            }
            printed.insert(key);
        }
    }
}

/// `14:05:03 ALARM RAISED  room1/A  ** SpO2 low 86 < 90 (medium)`.
pub fn alarm_line(v: &Value, at_ms: i64, off_s: i64) -> Option<String> {
    let event = v["event"].as_str()?;
    let verb = match event {
        "raised" => "RAISED ",
        "cleared" => "CLEARED",
        "acknowledged" => "ACKED  ",
        "latched" => "LATCHED",
        _ => return None,
    };
    let a = &v["alarm"];
    let cond = a["condition"].as_str().unwrap_or("?");
    let prio = a["priority"].as_str().unwrap_or("?");
    let mark = match prio {
        "high" => "***",
        "medium" => "**",
        _ => "*",
    };
    let mut what = condition_name(cond);
    if let (Some(x), Some(l)) = (a["value"].as_f64(), a["limit"].as_f64()) {
        let cmp = if cond.ends_with("_low") || cond.ends_with("_fall") {
            "<"
        } else {
            ">"
        };
        what = format!("{what} {x} {cmp} {l}");
    }
    let by = v["actor"]
        .as_str()
        .map(|a| format!(" by {a}"))
        .unwrap_or_default();
    let secs = (at_ms.div_euclid(1000) + off_s).rem_euclid(86_400);
    Some(format!(
        "{:02}:{:02}:{:02} ALARM {verb} {:<8} {mark} {what} ({prio}){by}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        v["bed"].as_str().unwrap_or("-"),
    ))
}
