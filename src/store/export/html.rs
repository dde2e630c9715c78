//! The printable HTML report of a session (docs/storage.md).

use super::SessionRecord;
use super::plot::{Axes, Marker, Series, Style, plot, plot_range};
use super::summary::summary;
use super::text::{condition_name, esc, hm, local_datetime, num, offset_text, unit_of};
use crate::model::Metric;
use crate::store::query::StoredAlarmEvent;
use serde_json::Value;
use std::fmt::Write as _;

pub(super) const ALARM_COLOR: &str = "#c00000";
/// A session event as a sentence: `Dose: ketamine 0.5 mg/kg IM`.
pub(super) fn event_sentence(kind: &str, e: &Value) -> String {
    let st = |k: &str| e[k].as_str().unwrap_or("").to_owned();
    let nv = |k: &str| e[k].as_f64().map(num);
    match kind {
        "dose" => format!(
            "Dose: {} {} {} {}",
            st("drug"),
            nv("dose").unwrap_or_default(),
            st("unit"),
            st("route")
        ),
        "phase" => format!("Phase: {}", st("phase")),
        "note" => format!("Note: {}", st("text")),
        "baseline" => {
            let mut parts = Vec::new();
            if let (Some(s), Some(d)) = (nv("sys"), nv("dia")) {
                parts.push(format!("BP {s}/{d} mmHg"));
            } else if let Some(s) = nv("sys") {
                parts.push(format!("systolic {s} mmHg"));
            }
            if let Some(p) = nv("pulse_rate") {
                parts.push(format!("pulse {p} /min"));
            }
            if let Some(o) = nv("spo2") {
                parts.push(format!("SpO2 {o} %"));
            }
            format!("Pre-dose baseline: {}", parts.join(", "))
        }
        other => {
            let mut v = e.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("kind");
            }
            let parts: Vec<String> = v
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            format!("{k} {}", v.as_str().map_or(v.to_string(), str::to_owned))
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!("{other}: {}", parts.join(", "))
        }
    }
}

/// An alarm event as a sentence: `SpO2 low (87 % < 90 %), medium priority: raised`.
pub(super) fn alarm_sentence(a: &StoredAlarmEvent) -> Option<String> {
    let e = &a.event;
    let msg: Value = serde_json::from_str(&e.json).unwrap_or(Value::Null);
    let alarm = &msg["alarm"];
    let cond = e.condition.as_deref().unwrap_or("");
    let name = condition_name(cond);
    let what = match e.kind.as_str() {
        "updated" => return None,
        "raised" => "raised",
        "acknowledged" => "acknowledged",
        "latched" => "latched (condition over, not yet acknowledged)",
        "cleared" => "cleared",
        "audio_paused" => return Some("Alarm audio paused".into()),
        "audio_resumed" => return Some("Alarm audio resumed".into()),
        "notify" => return Some(format!("Staff notified: {}", condition_name(cond))),
        "baseline_set" => return Some("Alarm baseline set".into()),
        other => return Some(other.replace('_', " ")),
    };
    let mut s = name;
    if e.kind == "raised"
        && let (Some(v), Some(l)) = (alarm["value"].as_f64(), alarm["limit"].as_f64())
    {
        let cmp = if cond.ends_with("_low") || cond.ends_with("_fall") {
            "<"
        } else {
            ">"
        };
        let u = unit_of(cond);
        let _ = write!(s, " ({}{u} {cmp} limit {}{u})", num(v), num(l));
    }
    if let Some(p) = e.priority.as_deref() {
        let _ = write!(s, ", {p} priority");
    }
    let _ = write!(s, ": {what}");
    Some(s)
}

/// A printable HTML report: patient label, local times, a summary (baseline, extremes, time
/// outside limits, alarms by priority, discharge values against baseline), trend plots with
/// legends, min/max envelopes and labelled dose, phase and alarm markers, and the session's
/// events and alarms as sentences.
pub fn html(rec: &SessionRecord) -> String {
    let s = &rec.session;
    let off = &rec.zone;
    let t0 = s.admitted_ms;
    let t1 = s
        .discharged_ms
        .or_else(|| rec.readings.last().map(|r| r.received_ms))
        .unwrap_or(t0)
        .max(t0 + 60_000);
    let ax = Axes { t0, t1, zone: off };
    let series = |m: Metric| -> Vec<(i64, f64)> {
        rec.readings
            .iter()
            .filter(|r| r.metric == m.name())
            .filter_map(|r| r.value.map(|v| (r.received_ms, v)))
            .collect()
    };
    let mut markers = Vec::new();
    for e in &s.events {
        let (color, tag, row) = match e.kind.as_str() {
            "dose" => (
                "#1f5fbf",
                format!(
                    "Dose {} {}",
                    e.event["dose"].as_f64().map(num).unwrap_or_default(),
                    e.event["unit"].as_str().unwrap_or("")
                ),
                0.0,
            ),
            "phase" => (
                "#555555",
                format!("phase: {}", e.event["phase"].as_str().unwrap_or("")),
                1.0,
            ),
            _ => continue,
        };
        markers.push(Marker {
            t: e.at_ms,
            color,
            row,
            tag,
            label: format!(
                "{} {}",
                hm(e.at_ms, off, false),
                event_sentence(&e.kind, &e.event)
            ),
        });
    }
    for a in rec.alarms.iter().filter(|a| a.event.kind == "raised") {
        let p = a.event.priority.as_deref().unwrap_or("");
        markers.push(Marker {
            t: a.event.at_ms,
            color: ALARM_COLOR,
            row: 2.0,
            tag: format!(
                "{}{}",
                match p {
                    "high" => "!!! ",
                    "medium" => "!! ",
                    _ => "! ",
                },
                condition_name(a.event.condition.as_deref().unwrap_or(""))
            ),
            label: format!(
                "{} {}",
                hm(a.event.at_ms, off, true),
                alarm_sentence(a).unwrap_or_default()
            ),
        });
    }
    let spo2 = series(Metric::Spo2);
    let pr = series(Metric::PulseRate);
    let sys = series(Metric::NibpSys);
    let dia = series(Metric::NibpDia);
    let mean = series(Metric::NibpMean);

    let mut h = String::new();
    h.push_str("<!doctype html>\n<html lang=en><meta charset=utf-8>\n");
    let _ = writeln!(
        h,
        "<title>Session {} report: {} ({})</title>",
        s.id,
        esc(&s.label),
        esc(&s.bed)
    );
    h.push_str(
        "<style>body{font:13px/1.35 system-ui,sans-serif;margin:1.5em 2em;color:#111}\
         h1{font-size:20px;margin:0 0 .4em}h2{font-size:15px;margin:1.2em 0 .4em;border-bottom:1px solid #ccc}\
         table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}\
         th{background:#f4f4f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}.summary td.n{white-space:nowrap}\
         figure{margin:.8em 0}figcaption{font-weight:600}.key{font-weight:400;margin-left:1.2em;white-space:nowrap}\
         .key svg{vertical-align:middle;margin-right:4px}.sim{color:#a00;font-weight:700}.tz{color:#555}\
         .grid{display:grid;grid-template-columns:auto auto;gap:1em 2em;align-items:start}\
         @media print{body{margin:0;font-size:11px}figure,table{break-inside:avoid}h2{break-after:avoid}.screen-only{display:none}}\
         @page{size:A4;margin:12mm}</style>\n",
    );
    let _ = writeln!(
        h,
        "<h1>Session report &middot; {} &middot; {}</h1>",
        esc(&s.label),
        esc(&s.bed)
    );
    let _ = writeln!(
        h,
        "<p class=tz>All times are the clinic's local time: {} (UTC{}{}).</p>",
        esc(off.name()),
        offset_text(off.offset_s(t0)),
        if off.offset_s(t0) != off.offset_s(t1) {
            format!(
                " at admission, UTC{} at the end",
                offset_text(off.offset_s(t1))
            )
        } else {
            String::new()
        }
    );
    h.push_str("<div class=grid><table>");
    let row = |h: &mut String, k: &str, v: &str| {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    };
    row(&mut h, "Recliner", &s.bed);
    row(&mut h, "Patient", &s.label);
    if let Some(m) = &s.mrn {
        row(&mut h, "MRN", m);
    }
    if let Some(w) = s.weight_kg {
        row(&mut h, "Weight", &format!("{} kg", num(w)));
    }
    let by = |who: &Option<String>| {
        who.as_deref()
            .map(|w| format!(" by {w}"))
            .unwrap_or_default()
    };
    row(
        &mut h,
        "Admitted",
        &format!(
            "{}{}",
            local_datetime(s.admitted_ms, off),
            by(&s.admitted_by)
        ),
    );
    row(
        &mut h,
        "Discharged",
        &s.discharged_ms
            .map(|d| format!("{}{}", local_datetime(d, off), by(&s.discharged_by)))
            .unwrap_or_else(|| "still admitted".into()),
    );
    row(&mut h, "Session", &format!("#{}", s.id));
    if rec.readings.iter().any(|r| r.simulated) {
        let _ = write!(
            h,
            "<tr><th>Data</th><td class=sim>SIMULATED (demo devices), not a patient</td></tr>"
        );
    }
    h.push_str("</table>\n");
    h.push_str(&summary(rec, &spo2, &pr, &sys, &dia, off));
    h.push_str("</div>\n<h2>Trends</h2>\n");
    let env = |name, color, points| Series {
        name,
        color,
        style: Style::Envelope,
        points,
    };
    let spo2_s = [env(
        "SpO2 (line: mean, band: min to max)",
        "#0a7d32",
        spo2.clone(),
    )];
    h.push_str(&plot(
        "SpO2 (%)",
        &ax,
        plot_range((80.0, 100.0), &spo2_s, Some(100.0)),
        &spo2_s,
        &markers,
    ));
    let pr_s = [env(
        "Pulse rate (line: mean, band: min to max)",
        "#b35900",
        pr.clone(),
    )];
    h.push_str(&plot(
        "Pulse rate (/min)",
        &ax,
        plot_range((50.0, 120.0), &pr_s, None),
        &pr_s,
        &markers,
    ));
    let pts = |name, color, points| Series {
        name,
        color,
        style: Style::Points,
        points,
    };
    let bp_s = [
        pts("Systolic", "#8a1538", sys.clone()),
        pts("Mean", "#888888", mean),
        pts("Diastolic", "#1f5fbf", dia.clone()),
    ];
    h.push_str(&plot(
        "Blood pressure, NIBP (mmHg)",
        &ax,
        plot_range((60.0, 160.0), &bp_s, None),
        &bp_s,
        &markers,
    ));
    h.push_str(
        "<p>Markers: blue dashed = dose, grey dashed = phase, red dashed = alarm raised \
         (!!! high, !! medium, ! low priority); each is listed, with its time, in the tables \
         below.<span class=\"screen-only\"> On screen, hover a marker for its details.</span></p>\n",
    );
    h.push_str("<h2>Session events</h2>\n");
    if s.events.is_empty() {
        h.push_str("<p>None recorded.</p>\n");
    } else {
        h.push_str("<table><tr><th>Time</th><th>Event</th><th>By</th></tr>");
        for e in &s.events {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                hm(e.at_ms, off, true),
                esc(&event_sentence(&e.kind, &e.event)),
                esc(e.actor.as_deref().unwrap_or("-"))
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("<h2>Alarms and acknowledgements</h2>\n");
    let rows: Vec<(i64, String, Option<&str>)> = rec
        .alarms
        .iter()
        .filter_map(|a| alarm_sentence(a).map(|t| (a.event.at_ms, t, a.event.actor.as_deref())))
        .collect();
    if rows.is_empty() {
        h.push_str("<p>No alarms.</p>\n");
    } else {
        h.push_str("<table><tr><th>Time</th><th>What happened</th><th>By</th></tr>");
        for (at, text, actor) in rows {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                hm(at, off, true),
                esc(&text),
                esc(actor.unwrap_or("-"))
            );
        }
        h.push_str("</table>\n");
    }
    let _ = writeln!(
        h,
        "<p>{} readings recorded. Generated by vitalsd {}.</p>",
        rec.readings.len(),
        env!("CARGO_PKG_VERSION")
    );
    h
}
