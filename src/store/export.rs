//! Exports of one session: CSV (every stored reading), a FHIR R4 Bundle, and a printable HTML
//! report with SVG trend plots. Pure functions over a [`SessionRecord`] loaded by [`load`].
//! Formats documented in docs/storage.md.

use super::StoreError;
use super::query::{self, StoredAlarmEvent, StoredReading};
use super::session::{self, Session};
use crate::clock::rfc3339_ms;
use crate::model::Metric;
use rusqlite::Connection;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Fhir,
    Html,
}

impl Format {
    /// Parses `csv`, `fhir` or `html`.
    pub fn parse(s: &str) -> Result<Format, StoreError> {
        match s {
            "csv" => Ok(Format::Csv),
            "fhir" => Ok(Format::Fhir),
            "html" => Ok(Format::Html),
            _ => Err(StoreError::Invalid {
                field: "format",
                value: s.to_owned(),
                expected: "csv, fhir or html",
            }),
        }
    }

    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Fhir => "application/fhir+json",
            Format::Html => "text/html; charset=utf-8",
        }
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Fhir => "json",
            Format::Html => "html",
        }
    }
}

/// Everything recorded about a session.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub session: Session,
    /// Every reading of the bed from admission to discharge (or `now`), waveforms included.
    pub readings: Vec<StoredReading>,
    /// The bed's alarm events over the same span.
    pub alarms: Vec<StoredAlarmEvent>,
    /// Vendor and model per device id, when known (from the config).
    pub devices: BTreeMap<String, (String, String)>,
}

/// Loads a session's record; `now_ms` ends a session that is still open.
pub fn load(conn: &Connection, id: i64, now_ms: i64) -> Result<SessionRecord, StoreError> {
    let session = session::get(conn, id)?;
    let end = session.end_ms(now_ms);
    let readings = query::readings_between(conn, &session.bed, session.admitted_ms, end, true)?;
    let alarms = query::alarm_events_between(conn, &session.bed, session.admitted_ms, end)?;
    Ok(SessionRecord {
        session,
        readings,
        alarms,
        devices: BTreeMap::new(),
    })
}

/// Vendor and model per device id, from a config's bindings.
pub fn device_info(cfg: &crate::config::Config) -> BTreeMap<String, (String, String)> {
    cfg.devices
        .iter()
        .map(|d| {
            (
                d.id.clone(),
                (d.profile.vendor.clone(), d.profile.model.clone()),
            )
        })
        .collect()
}

/// Renders a record in a format.
pub fn render(rec: &SessionRecord, format: Format) -> String {
    match format {
        Format::Csv => csv(rec),
        Format::Fhir => serde_json::to_string_pretty(&fhir(rec)).unwrap_or_default(),
        Format::Html => html(rec),
    }
}

/// The CSV header; one row per reading follows, in arrival order.
pub const CSV_HEADER: &str = "received,received_ms,bed,device,metric,mdc,value,unit,invalid,flags,device_time,bed_seq,mono_ms,simulated";

fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// Every stored reading of the session (waveform samples included), one row each. Values are
/// written in the shortest form that reads back to the same number.
pub fn csv(rec: &SessionRecord) -> String {
    let mut out = String::with_capacity(rec.readings.len() * 96 + 128);
    out.push_str(CSV_HEADER);
    out.push('\n');
    for r in &rec.readings {
        let metric = r.metric();
        let fields = [
            rfc3339_ms(r.received_ms),
            r.received_ms.to_string(),
            r.bed.clone(),
            r.device.clone(),
            r.metric.clone(),
            metric.map(|m| m.mdc_code().to_string()).unwrap_or_default(),
            r.value.map(|v| v.to_string()).unwrap_or_default(),
            metric.map(|m| m.unit().to_owned()).unwrap_or_default(),
            r.invalid.clone().unwrap_or_default(),
            r.flags.clone(),
            r.device_time.clone().unwrap_or_default(),
            r.bed_seq.to_string(),
            r.mono_ms.to_string(),
            r.simulated.to_string(),
        ];
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(&mut out, f);
        }
        out.push('\n');
    }
    out
}

/// LOINC code and display of a metric, where one applies (clinical.md §3.4).
pub fn loinc(m: Metric) -> Option<(&'static str, &'static str)> {
    match m {
        Metric::Spo2 => Some((
            "59408-5",
            "Oxygen saturation in Arterial blood by Pulse oximetry",
        )),
        Metric::PulseRate | Metric::NibpPulse | Metric::HeartRate => Some(("8867-4", "Heart rate")),
        Metric::NibpSys => Some(("8480-6", "Systolic blood pressure")),
        Metric::NibpDia => Some(("8462-4", "Diastolic blood pressure")),
        Metric::NibpMean => Some(("8478-0", "Mean blood pressure")),
        _ => None,
    }
}

/// The FHIR data-absent-reason code for an invalid reason.
fn absent_reason(invalid: &str) -> &'static str {
    match invalid {
        "no_value" => "unknown",
        "positive_infinity" => "positive-infinity",
        "negative_infinity" => "negative-infinity",
        _ => "error",
    }
}

fn uuid(session: i64, kind: u16, n: u64) -> String {
    format!(
        "urn:uuid:{:08x}-{kind:04x}-4000-8000-{:012x}",
        session as u32,
        n & 0xFFFF_FFFF_FFFF
    )
}

/// The FHIR system of IEEE 11073-10101 codes.
pub const MDC_SYSTEM: &str = "urn:iso:std:iso:11073:10101";
/// The UCUM system.
pub const UCUM_SYSTEM: &str = "http://unitsofmeasure.org";

/// A FHIR R4 Bundle (type `collection`): a Patient (label, MRN), a Device per device, an
/// Observation per non-waveform reading (LOINC + MDC codes, UCUM `valueQuantity`, or
/// `dataAbsentReason` when the device marked it invalid), and a DetectedIssue per alarm with its
/// acknowledgements as `mitigation`. Waveform samples are not exported to FHIR (see the CSV).
pub fn fhir(rec: &SessionRecord) -> Value {
    let s = &rec.session;
    let patient_url = uuid(s.id, 1, 0);
    let mut entries = Vec::new();
    let mut patient = json!({
        "resourceType": "Patient",
        "name": [{"text": s.label}],
    });
    if let Some(mrn) = &s.mrn {
        patient["identifier"] = json!([{"type": {"text": "MRN"}, "value": mrn}]);
    }
    entries.push(json!({"fullUrl": patient_url, "resource": patient}));
    let mut device_urls: BTreeMap<&str, String> = BTreeMap::new();
    for r in &rec.readings {
        let n = device_urls.len() as u64;
        device_urls
            .entry(r.device.as_str())
            .or_insert_with(|| uuid(s.id, 2, n));
    }
    for (id, url) in &device_urls {
        let mut dev = json!({
            "resourceType": "Device",
            "identifier": [{"system": "urn:vitalsd:device", "value": id}],
            "deviceName": [{"name": id, "type": "user-friendly-name"}],
        });
        if let Some((vendor, model)) = rec.devices.get(*id) {
            dev["manufacturer"] = json!(vendor);
            dev["modelNumber"] = json!(model);
        }
        entries.push(json!({"fullUrl": url, "resource": dev}));
    }
    for r in &rec.readings {
        let Some(metric) = r.metric() else { continue };
        if metric.is_waveform() {
            continue;
        }
        let mut coding = Vec::new();
        if let Some((code, display)) = loinc(metric) {
            coding.push(json!({"system": "http://loinc.org", "code": code, "display": display}));
        }
        coding.push(json!({"system": MDC_SYSTEM, "code": metric.mdc_code().to_string(), "display": metric.mdc_ref()}));
        let mut obs = json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": coding, "text": metric.name()},
            "subject": {"reference": patient_url},
            "effectiveDateTime": rfc3339_ms(r.received_ms),
            "device": {"reference": device_urls.get(r.device.as_str()).cloned().unwrap_or_default()},
            "identifier": [{"system": "urn:vitalsd:reading", "value": r.id.to_string()}],
        });
        if loinc(metric).is_some() {
            obs["category"] = json!([{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs"}]}]);
        }
        match r.value {
            Some(v) => {
                obs["valueQuantity"] = json!({"value": v, "unit": metric.unit(), "system": UCUM_SYSTEM, "code": metric.unit()});
            }
            None => {
                let why = r.invalid.as_deref().unwrap_or("no_value");
                obs["dataAbsentReason"] = json!({
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": absent_reason(why)}],
                    "text": why,
                });
            }
        }
        if !r.flags.is_empty() {
            obs["note"] = json!([{"text": format!("device flags: {}", r.flags)}]);
        }
        entries.push(json!({"fullUrl": uuid(s.id, 3, r.id as u64), "resource": obs}));
    }
    for (alarm_id, events) in alarms_by_id(&rec.alarms) {
        let Some(first) = events.first() else {
            continue;
        };
        let e = &first.event;
        let wire: Value = serde_json::from_str(&e.json).unwrap_or(Value::Null);
        let alarm = &wire["alarm"];
        let severity = match e.priority.as_deref() {
            Some("high") => "high",
            Some("medium") => "moderate",
            _ => "low",
        };
        let condition = e.condition.clone().unwrap_or_else(|| "unknown".into());
        let mut issue = json!({
            "resourceType": "DetectedIssue",
            "identifier": [{"system": "urn:vitalsd:alarm", "value": alarm_id.to_string()}],
            "status": "final",
            "code": {"coding": [{"system": "urn:vitalsd:alarm-condition", "code": condition}], "text": condition},
            "severity": severity,
            "patient": {"reference": patient_url},
            "identifiedDateTime": rfc3339_ms(e.at_ms),
            "detail": alarm_detail(alarm, &condition),
        });
        if let Some(url) = alarm["device"].as_str().and_then(|d| device_urls.get(d)) {
            issue["implicated"] = json!([{"reference": url}]);
        }
        let mitigation: Vec<Value> = events
            .iter()
            .filter(|x| x.event.kind != "raised" && x.event.kind != "updated")
            .map(|x| {
                let mut m =
                    json!({"action": {"text": x.event.kind}, "date": rfc3339_ms(x.event.at_ms)});
                if let Some(a) = &x.event.actor {
                    m["author"] = json!({"display": a});
                }
                m
            })
            .collect();
        if !mitigation.is_empty() {
            issue["mitigation"] = Value::Array(mitigation);
        }
        entries.push(json!({"fullUrl": uuid(s.id, 4, alarm_id), "resource": issue}));
    }
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": rfc3339_ms(s.discharged_ms.unwrap_or(s.admitted_ms)),
        "identifier": {"system": "urn:vitalsd:session", "value": s.id.to_string()},
        "entry": entries,
    })
}

fn alarm_detail(alarm: &Value, condition: &str) -> String {
    let mut d = condition.replace('_', " ");
    if let Some(v) = alarm["value"].as_f64() {
        let _ = write!(d, ": value {v}");
    }
    if let Some(l) = alarm["limit"].as_f64() {
        let _ = write!(d, ", limit {l}");
    }
    d
}

fn alarms_by_id(events: &[StoredAlarmEvent]) -> BTreeMap<u64, Vec<&StoredAlarmEvent>> {
    let mut m: BTreeMap<u64, Vec<&StoredAlarmEvent>> = BTreeMap::new();
    for e in events {
        if let Some(id) = e.event.alarm_id {
            m.entry(id).or_default().push(e);
        }
    }
    m
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(i64, f64)>,
}

struct Marker {
    t: i64,
    color: &'static str,
    label: String,
}

const W: f64 = 960.0;
const H: f64 = 200.0;
const PAD_L: f64 = 44.0;
const PAD_T: f64 = 14.0;
const PAD_B: f64 = 22.0;

fn plot(
    title: &str,
    t0: i64,
    t1: i64,
    lo: f64,
    hi: f64,
    series: &[Series<'_>],
    markers: &[Marker],
) -> String {
    let span = (t1 - t0).max(1) as f64;
    let pw = W - PAD_L - 8.0;
    let ph = H - PAD_T - PAD_B;
    let x = |t: i64| PAD_L + (t - t0) as f64 / span * pw;
    let y = |v: f64| PAD_T + (1.0 - ((v - lo) / (hi - lo)).clamp(0.0, 1.0)) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{}">"#,
        esc(title),
        esc(title)
    );
    let _ = write!(
        s,
        r##"<rect x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    for i in 0..=4 {
        let v = lo + (hi - lo) * f64::from(i) / 4.0;
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line x1="{PAD_L}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{v:.0}</text>"##,
            W - 8.0,
            PAD_L - 4.0,
            yy + 3.0
        );
    }
    for i in 0..=6 {
        let t = t0 + ((t1 - t0) as f64 * f64::from(i) / 6.0) as i64;
        let label = rfc3339_ms(t);
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
            x(t),
            H - 6.0,
            esc(label.get(11..16).unwrap_or(""))
        );
    }
    for m in markers {
        let xx = x(m.t);
        let _ = write!(
            s,
            r#"<line class="marker" x1="{xx:.1}" x2="{xx:.1}" y1="{PAD_T}" y2="{}" stroke="{}" stroke-dasharray="3 2"><title>{}</title></line>"#,
            PAD_T + ph,
            m.color,
            esc(&m.label)
        );
    }
    for se in series {
        // At most one point per pixel column (mean), so a long session stays a small file.
        let mut cols: BTreeMap<i64, (f64, u32, i64)> = BTreeMap::new();
        for (t, v) in &se.points {
            let c = x(*t) as i64;
            let e = cols.entry(c).or_insert((0.0, 0, *t));
            e.0 += v;
            e.1 += 1;
        }
        let mut d = String::new();
        let mut prev: Option<i64> = None;
        for (c, (sum, n, _)) in &cols {
            let v = sum / f64::from(*n);
            // A gap longer than 2 minutes breaks the line: no value is drawn across it.
            let jump = prev.is_none_or(|p| (*c - p) as f64 > 120_000.0 / span * pw);
            let _ = write!(
                d,
                "{}{:.1},{:.1} ",
                if jump { "M" } else { "L" },
                *c as f64,
                y(v)
            );
            prev = Some(*c);
        }
        let _ = write!(
            s,
            r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.5"><title>{}</title></path>"#,
            d.trim_end(),
            se.color,
            esc(se.name)
        );
    }
    s.push_str("</svg></figure>\n");
    s
}

/// A printable HTML report: patient label, times, events, trend plots of SpO2, pulse rate and
/// BP with dose, phase and alarm markers, and the alarm and acknowledgement log.
pub fn html(rec: &SessionRecord) -> String {
    let s = &rec.session;
    let t0 = s.admitted_ms;
    let t1 = s
        .discharged_ms
        .or_else(|| rec.readings.last().map(|r| r.received_ms))
        .unwrap_or(t0)
        .max(t0 + 60_000);
    let series = |m: Metric| -> Vec<(i64, f64)> {
        rec.readings
            .iter()
            .filter(|r| r.metric == m.name())
            .filter_map(|r| r.value.map(|v| (r.received_ms, v)))
            .collect()
    };
    let mut markers = Vec::new();
    for e in &s.events {
        let (color, label) = match e.kind.as_str() {
            "dose" => (
                "#1f5fbf",
                format!(
                    "dose {} {} {} {}",
                    e.event["drug"].as_str().unwrap_or(""),
                    e.event["dose"],
                    e.event["unit"].as_str().unwrap_or(""),
                    e.event["route"].as_str().unwrap_or("")
                ),
            ),
            "phase" => (
                "#666",
                format!("phase: {}", e.event["phase"].as_str().unwrap_or("")),
            ),
            _ => continue,
        };
        markers.push(Marker {
            t: e.at_ms,
            color,
            label,
        });
    }
    for a in rec.alarms.iter().filter(|a| a.event.kind == "raised") {
        markers.push(Marker {
            t: a.event.at_ms,
            color: "#c00",
            label: format!(
                "alarm {} ({})",
                a.event.condition.as_deref().unwrap_or(""),
                a.event.priority.as_deref().unwrap_or("")
            ),
        });
    }
    let mut h = String::new();
    h.push_str("<!doctype html>\n<html lang=en><meta charset=utf-8>\n");
    let _ = writeln!(h, "<title>Session {} report</title>", s.id);
    h.push_str("<style>body{font:13px sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}figure{margin:1em 0}figcaption{font-weight:bold}@media print{figure{break-inside:avoid}}</style>\n");
    let _ = writeln!(
        h,
        "<h1>Session {} &middot; {} &middot; {}</h1>",
        s.id,
        esc(&s.bed),
        esc(&s.label)
    );
    h.push_str("<table>");
    let row = |h: &mut String, k: &str, v: &str| {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    };
    row(&mut h, "Recliner", &s.bed);
    row(&mut h, "Patient", &s.label);
    if let Some(m) = &s.mrn {
        row(&mut h, "MRN", m);
    }
    if let Some(w) = s.weight_kg {
        row(&mut h, "Weight", &format!("{w} kg"));
    }
    row(
        &mut h,
        "Admitted",
        &format!(
            "{} by {}",
            rfc3339_ms(s.admitted_ms),
            s.admitted_by.as_deref().unwrap_or("-")
        ),
    );
    row(
        &mut h,
        "Discharged",
        &s.discharged_ms
            .map(|d| {
                format!(
                    "{} by {}",
                    rfc3339_ms(d),
                    s.discharged_by.as_deref().unwrap_or("-")
                )
            })
            .unwrap_or_else(|| "still admitted".into()),
    );
    let simulated = rec.readings.iter().any(|r| r.simulated);
    if simulated {
        row(&mut h, "Data", "SIMULATED (demo devices)");
    }
    h.push_str("</table>\n<h2>Trends</h2>\n");
    h.push_str(&plot(
        "SpO2 (%)",
        t0,
        t1,
        70.0,
        100.0,
        &[Series {
            name: "SpO2",
            color: "#0a7d32",
            points: series(Metric::Spo2),
        }],
        &markers,
    ));
    h.push_str(&plot(
        "Pulse rate (/min)",
        t0,
        t1,
        30.0,
        180.0,
        &[Series {
            name: "pulse rate",
            color: "#b35900",
            points: series(Metric::PulseRate),
        }],
        &markers,
    ));
    h.push_str(&plot(
        "Blood pressure (mmHg)",
        t0,
        t1,
        30.0,
        220.0,
        &[
            Series {
                name: "systolic",
                color: "#8a1538",
                points: series(Metric::NibpSys),
            },
            Series {
                name: "mean",
                color: "#999",
                points: series(Metric::NibpMean),
            },
            Series {
                name: "diastolic",
                color: "#1f5fbf",
                points: series(Metric::NibpDia),
            },
        ],
        &markers,
    ));
    h.push_str("<p>Markers: blue dashed = dose, grey dashed = phase change, red dashed = alarm raised.</p>\n");
    h.push_str("<h2>Session events</h2>\n<table><tr><th>Time</th><th>Event</th><th>Details</th><th>By</th></tr>");
    for e in &s.events {
        let mut details = e.event.clone();
        if let Some(o) = details.as_object_mut() {
            o.remove("kind");
        }
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rfc3339_ms(e.at_ms),
            esc(&e.kind),
            esc(&details.to_string()),
            esc(e.actor.as_deref().unwrap_or("-"))
        );
    }
    h.push_str("</table>\n<h2>Alarms and acknowledgements</h2>\n<table><tr><th>Time</th><th>Event</th><th>Alarm</th><th>Condition</th><th>Priority</th><th>By</th></tr>");
    for a in &rec.alarms {
        let e = &a.event;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rfc3339_ms(e.at_ms),
            esc(&e.kind),
            e.alarm_id.map(|i| i.to_string()).unwrap_or_default(),
            esc(e.condition.as_deref().unwrap_or("")),
            esc(e.priority.as_deref().unwrap_or("")),
            esc(e.actor.as_deref().unwrap_or("-"))
        );
    }
    h.push_str("</table>\n");
    let _ = writeln!(
        h,
        "<p>{} readings recorded. Generated by vitalsd {}.</p>",
        rec.readings.len(),
        env!("CARGO_PKG_VERSION")
    );
    h
}
