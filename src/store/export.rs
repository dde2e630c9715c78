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
    /// The clinic's time zone (`[report] time_zone`, else the system's): the report's times
    /// are local, with the offset in force at each (a DST change mid-session included).
    pub zone: Zone,
}

/// A time zone for the report: its name and its rules (the IANA database, embedded).
#[derive(Debug, Clone)]
pub struct Zone {
    tz: jiff::tz::TimeZone,
    name: String,
}

impl Zone {
    /// The system's time zone: `TZ`, else `/etc/localtime`; UTC if neither says.
    pub fn system() -> Zone {
        let tz = jiff::tz::TimeZone::system();
        let name = tz
            .iana_name()
            .unwrap_or("the system's time zone")
            .to_owned();
        Zone { tz, name }
    }

    /// The zone `name` (an IANA name, validated when the config was loaded), else the system's.
    pub fn named(name: Option<&str>) -> Zone {
        match name.map(|n| (n, jiff::tz::TimeZone::get(n))) {
            Some((n, Ok(tz))) => Zone {
                tz,
                name: n.to_owned(),
            },
            _ => Zone::system(),
        }
    }

    /// The zone of a config's `[report] time_zone`.
    pub fn of(cfg: &crate::config::Config) -> Zone {
        Zone::named(cfg.report_time_zone.as_deref())
    }

    /// The offset from UTC in force at `ms`, seconds.
    pub fn offset_s(&self, ms: i64) -> i64 {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| i64::from(self.tz.to_offset(t).seconds()))
            .unwrap_or(0)
    }

    /// Its IANA name (`Europe/Berlin`).
    pub fn name(&self) -> &str {
        &self.name
    }
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
        zone: Zone::system(),
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

/// The clinic's offset from UTC at `ms`, seconds: the system's local time zone (the `TZ`
/// environment variable of the daemon, else `/etc/localtime`), as SQLite's `localtime` sees it.
pub fn local_offset_s(conn: &Connection, ms: i64) -> i64 {
    conn.query_row(
        "SELECT CAST(ROUND((julianday(?1 / 1000, 'unixepoch', 'localtime') \
         - julianday(?1 / 1000, 'unixepoch')) * 86400) AS INTEGER)",
        [ms],
        |r| r.get::<_, i64>(0),
    )
    .unwrap_or(0)
}

/// `+01:00` for 3600.
fn offset_text(off_s: i64) -> String {
    let sign = if off_s < 0 { '-' } else { '+' };
    let m = off_s.abs() / 60;
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// Local civil time of `ms`: (y, mo, d, h, mi, s).
fn civil(ms: i64, off_s: i64) -> (i64, i64, i64, i64, i64, i64) {
    let secs = ms.div_euclid(1000) + off_s;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil (public domain).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, sod / 3600, sod % 3600 / 60, sod % 60)
}

/// `14:05` (or `14:05:30` with seconds) in local time.
fn hm(ms: i64, z: &Zone, seconds: bool) -> String {
    let (_, _, _, h, mi, se) = civil(ms, z.offset_s(ms));
    if seconds {
        format!("{h:02}:{mi:02}:{se:02}")
    } else {
        format!("{h:02}:{mi:02}")
    }
}

/// `2026-12-01 14:05:30` in local time.
fn local_datetime(ms: i64, z: &Zone) -> String {
    let (y, mo, d, ..) = civil(ms, z.offset_s(ms));
    format!("{y:04}-{mo:02}-{d:02} {}", hm(ms, z, true))
}

/// Time ticks every 10 s .. 4 h, at round local times, at most 8 over the span; the labels
/// never repeat (seconds are shown when the step is under a minute).
fn time_ticks(t0: i64, t1: i64, z: &Zone) -> (Vec<i64>, bool) {
    const STEPS_S: [i64; 12] = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14_400];
    let span_s = ((t1 - t0) / 1000).max(1);
    let step = STEPS_S
        .iter()
        .copied()
        .find(|s| span_s / s <= 8)
        .unwrap_or(14_400);
    let step_ms = step * 1000;
    let off_ms = z.offset_s(t0) * 1000;
    let first = (t0 + off_ms).div_euclid(step_ms) * step_ms - off_ms;
    let first = if first < t0 { first + step_ms } else { first };
    let ticks = (0..)
        .map(|i| first + i * step_ms)
        .take_while(|t| *t <= t1)
        .collect();
    (ticks, step < 60)
}

/// Round y ticks over `[lo, hi]` with a step of 1, 2, 5 or 10 times a power of ten, 4 to 8 of them.
fn value_ticks(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    let raw = ((hi - lo) / 7.0).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let lo = (lo / step).floor() * step;
    let hi = (hi / step).ceil() * step;
    let n = ((hi - lo) / step).round() as i64;
    (lo, hi, (0..=n).map(|i| lo + step * i as f64).collect())
}

/// The range a plot shows: the default, extended in round steps to hold every value.
fn plot_range(default: (f64, f64), series: &[Series<'_>], max: Option<f64>) -> (f64, f64) {
    let (mut lo, mut hi) = default;
    for se in series {
        for (_, v) in &se.points {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
    }
    if let Some(m) = max {
        hi = hi.min(m);
    }
    (lo, hi)
}

/// How a series is drawn.
#[derive(Clone, Copy, PartialEq)]
enum Style {
    /// Continuous (oximeter): per pixel column the min..max as a band and the mean as a line,
    /// so a dip shorter than a column stays visible.
    Envelope,
    /// Intermittent measurements (NIBP): each one a marker, joined by a thin line.
    Points,
}

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    style: Style,
    points: Vec<(i64, f64)>,
}

struct Marker {
    t: i64,
    color: &'static str,
    /// Shown on the plot (short).
    tag: String,
    /// The tooltip (long).
    label: String,
    /// The label's row above the plot: 0 doses, 1 phases, 2 alarms.
    row: f64,
}

const W: f64 = 960.0;
const H: f64 = 210.0;
const PAD_L: f64 = 44.0;
const PAD_R: f64 = 24.0;
/// Room above the plot for three rows of marker labels: doses, phases, alarms.
const PAD_T: f64 = 36.0;
const PAD_B: f64 = 22.0;

struct Axes<'a> {
    t0: i64,
    t1: i64,
    zone: &'a Zone,
}

fn plot(
    title: &str,
    ax: &Axes<'_>,
    range: (f64, f64),
    series: &[Series<'_>],
    markers: &[Marker],
) -> String {
    let (t0, t1) = (ax.t0, ax.t1);
    let (lo, hi, yticks) = value_ticks(range.0, range.1);
    let span = (t1 - t0).max(1) as f64;
    let pw = W - PAD_L - PAD_R;
    let ph = H - PAD_T - PAD_B;
    let x = |t: i64| PAD_L + (t - t0) as f64 / span * pw;
    let y = |v: f64| PAD_T + (1.0 - ((v - lo) / (hi - lo)).clamp(0.0, 1.0)) * ph;
    let mut s = String::new();
    let _ = write!(s, r#"<figure><figcaption>{}"#, esc(title));
    for se in series {
        let _ = write!(
            s,
            r#" <span class="key"><svg width="22" height="10" aria-hidden="true">{}</svg>{}</span>"#,
            match se.style {
                Style::Envelope => format!(
                    r#"<rect x="0" y="1" width="22" height="8" fill="{c}" fill-opacity="0.25"/><line x1="0" x2="22" y1="5" y2="5" stroke="{c}" stroke-width="2"/>"#,
                    c = se.color
                ),
                Style::Points => format!(
                    r#"<line x1="0" x2="22" y1="5" y2="5" stroke="{c}" stroke-width="1"/><circle cx="11" cy="5" r="3.5" fill="{c}"/>"#,
                    c = se.color
                ),
            },
            esc(se.name)
        );
    }
    let _ = write!(
        s,
        r#"</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{}">"#,
        esc(title)
    );
    for v in &yticks {
        let yy = y(*v);
        let _ = write!(
            s,
            r##"<line x1="{PAD_L}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e4e4e4"/><text class="ytick" x="{}" y="{:.1}" font-size="10" text-anchor="end">{v}</text>"##,
            W - PAD_R,
            PAD_L - 4.0,
            yy + 3.0
        );
    }
    let (ticks, seconds) = time_ticks(t0, t1, ax.zone);
    for t in ticks {
        let xx = x(t);
        let _ = write!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{PAD_T}" y2="{}" stroke="#f0f0f0"/><text class="xtick" x="{xx:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"##,
            PAD_T + ph,
            H - 6.0,
            hm(t, ax.zone, seconds)
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    for m in markers.iter().filter(|m| m.t >= t0 && m.t <= t1) {
        let xx = x(m.t);
        let _ = write!(
            s,
            r#"<g class="marker"><title>{}</title><line x1="{xx:.1}" x2="{xx:.1}" y1="{}" y2="{}" stroke="{}" stroke-dasharray="3 2"/><text x="{:.1}" y="{}" font-size="9" fill="{}">{}</text></g>"#,
            esc(&m.label),
            m.row * 10.0 + 2.0,
            PAD_T + ph,
            m.color,
            xx + 2.0,
            m.row * 10.0 + 10.0,
            m.color,
            esc(&m.tag)
        );
    }
    for se in series {
        match se.style {
            Style::Envelope => {
                // Per pixel column: min, max, sum, n.
                let mut cols: BTreeMap<i64, (f64, f64, f64, u32)> = BTreeMap::new();
                for (t, v) in &se.points {
                    let e = cols.entry(x(*t) as i64).or_insert((
                        f64::INFINITY,
                        f64::NEG_INFINITY,
                        0.0,
                        0,
                    ));
                    e.0 = e.0.min(*v);
                    e.1 = e.1.max(*v);
                    e.2 += v;
                    e.3 += 1;
                }
                let mut band = String::new();
                let mut line = String::new();
                let mut prev: Option<i64> = None;
                for (c, (mn, mx, sum, n)) in &cols {
                    // A gap longer than 2 minutes breaks the line: nothing is drawn across it.
                    let jump = prev.is_none_or(|p| (*c - p) as f64 > 120_000.0 / span * pw);
                    let _ = write!(
                        line,
                        "{}{c},{:.1} ",
                        if jump { "M" } else { "L" },
                        y(sum / f64::from(*n))
                    );
                    let _ = write!(band, "M{c},{:.1}V{:.1} ", y(*mn), y(*mx) + 0.01);
                    prev = Some(*c);
                }
                let _ = write!(
                    s,
                    r#"<path class="band" d="{}" stroke="{}" stroke-opacity="0.45" stroke-width="1.2" fill="none"/><path class="line" d="{}" fill="none" stroke="{}" stroke-width="1.5"><title>{}</title></path>"#,
                    band.trim_end(),
                    se.color,
                    line.trim_end(),
                    se.color,
                    esc(se.name)
                );
            }
            Style::Points => {
                let mut d = String::new();
                for (i, (t, v)) in se.points.iter().enumerate() {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if i == 0 { "M" } else { "L" },
                        x(*t),
                        y(*v)
                    );
                }
                let _ = write!(
                    s,
                    r#"<path d="{}" fill="none" stroke="{}" stroke-width="0.8"/>"#,
                    d.trim_end(),
                    se.color
                );
                for (t, v) in &se.points {
                    let _ = write!(
                        s,
                        r#"<circle class="point" cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{} {v} at {}</title></circle>"#,
                        x(*t),
                        y(*v),
                        se.color,
                        esc(se.name),
                        hm(*t, ax.zone, false)
                    );
                }
            }
        }
    }
    s.push_str("</svg></figure>\n");
    s
}

const ALARM_COLOR: &str = "#c00000";

/// A condition's name for people: `SpO2 low`, `Systolic BP rise from baseline`,
/// `Device disconnected`.
pub fn condition_name(c: &str) -> String {
    const METRICS: [(&str, &str); 7] = [
        ("spo2", "SpO2"),
        ("pulse_rate", "Pulse rate"),
        ("perfusion_index", "Perfusion index"),
        ("nibp_sys", "Systolic BP"),
        ("nibp_dia", "Diastolic BP"),
        ("nibp_mean", "Mean BP"),
        ("resp_rate", "Respiratory rate"),
    ];
    for (id, name) in METRICS {
        if let Some(rest) = c.strip_prefix(id).and_then(|r| r.strip_prefix('_')) {
            let what = match rest {
                "low" => "low",
                "high" => "high",
                "rise" => "rise from baseline",
                "fall" => "fall from baseline",
                other => other,
            };
            return format!("{name} {what}");
        }
    }
    match c {
        "device_disconnected" => "Device disconnected".into(),
        "no_data" => "No data from device".into(),
        "nibp_overdue" => "NIBP measurement overdue".into(),
        "no_finger" => "Finger out of the sensor".into(),
        "no_dashboard" => "No dashboard able to sound".into(),
        "store_unwritable" => "Record cannot be written".into(),
        other => {
            let t = other.replace('_', " ");
            let mut ch = t.chars();
            ch.next()
                .map(|f| f.to_uppercase().chain(ch).collect())
                .unwrap_or_default()
        }
    }
}

fn unit_of(condition: &str) -> &'static str {
    if condition.starts_with("spo2") || condition.starts_with("perfusion") {
        " %"
    } else if condition.starts_with("pulse_rate") {
        " /min"
    } else if condition.starts_with("nibp") {
        " mmHg"
    } else {
        ""
    }
}

/// A number as people write it: `72`, `72.5`, `0.75` (at most two decimals, no trailing zeros).
fn num(v: f64) -> String {
    let t = format!("{v:.2}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    if t == "-0" { "0".into() } else { t.to_owned() }
}

/// A session event as a sentence: `Dose: ketamine 0.5 mg/kg IM`.
fn event_sentence(kind: &str, e: &Value) -> String {
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
fn alarm_sentence(a: &StoredAlarmEvent) -> Option<String> {
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

/// The summary table of the partner: per vital sign the pre-dose baseline, the peak (the
/// lowest SpO2, the highest of the others) and its time, how long its physiological alarms
/// were active (time outside limits), and the value at discharge (the last one while still
/// admitted) with its change from the baseline; then the alarms raised by priority.
fn summary(
    rec: &SessionRecord,
    spo2: &[(i64, f64)],
    pr: &[(i64, f64)],
    sys: &[(i64, f64)],
    dia: &[(i64, f64)],
    off: &Zone,
) -> String {
    let s = &rec.session;
    let base = s.baseline();
    let end = s
        .discharged_ms
        .unwrap_or_else(|| rec.readings.last().map_or(s.admitted_ms, |r| r.received_ms));
    // Alarms by priority, and per metric the time its physiological alarms were active
    // (raised to cleared or latched; still active at the end counts to the end).
    // An alarm counts once, by the highest priority it reached (raised medium, escalated to
    // high: one high).
    let mut by_prio: BTreeMap<&str, u32> = BTreeMap::new();
    let rank = |p: &str| match p {
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    };
    let mut highest: BTreeMap<u64, &str> = BTreeMap::new();
    let mut raised_at: BTreeMap<u64, (i64, &str)> = BTreeMap::new();
    let mut outside: BTreeMap<&str, i64> = BTreeMap::new();
    let metric_of = |c: &str| -> Option<&'static str> {
        if unit_of(c).is_empty() {
            return None;
        }
        [
            "spo2",
            "pulse_rate",
            "nibp_sys",
            "nibp_dia",
            "nibp_mean",
            "perfusion_index",
        ]
        .into_iter()
        .find(|m| c.starts_with(m))
    };
    for a in &rec.alarms {
        let e = &a.event;
        let metric = e.condition.as_deref().and_then(metric_of);
        match e.kind.as_str() {
            "raised" => {
                let p = e.priority.as_deref().unwrap_or("?");
                match e.alarm_id {
                    Some(id) => {
                        let h = highest.entry(id).or_insert(p);
                        if rank(p) > rank(h) {
                            *h = p;
                        }
                    }
                    None => *by_prio.entry(p).or_default() += 1,
                }
                if let (Some(m), Some(id)) = (metric, e.alarm_id) {
                    raised_at.insert(id, (e.at_ms, m));
                }
            }
            "updated" => {
                if let (Some(h), Some(p)) = (
                    e.alarm_id.and_then(|id| highest.get_mut(&id)),
                    e.priority.as_deref(),
                ) && rank(p) > rank(h)
                {
                    *h = p;
                }
            }
            "cleared" | "latched" => {
                if let Some((t, m)) = e.alarm_id.and_then(|id| raised_at.remove(&id)) {
                    *outside.entry(m).or_default() += e.at_ms - t;
                }
            }
            _ => {}
        }
    }
    for p in highest.values() {
        *by_prio.entry(p).or_default() += 1;
    }
    for (t, m) in raised_at.values() {
        *outside.entry(m).or_default() += (end - t).max(0);
    }
    // SpO2 and pulse rate come every second or so: their time outside limits is counted from
    // the readings against the limits their alarms named (so the alarm delay counts too). A
    // metric with no alarm keeps the alarm time (none).
    let limit_of = |condition: &str| -> Option<f64> {
        rec.alarms
            .iter()
            .filter(|a| a.event.kind == "raised" && a.event.condition.as_deref() == Some(condition))
            .find_map(|a| {
                serde_json::from_str::<Value>(&a.event.json)
                    .ok()
                    .and_then(|j| j["alarm"]["limit"].as_f64())
            })
    };
    for (metric, v) in [("spo2", spo2), ("pulse_rate", pr)] {
        let low = limit_of(&format!("{metric}_low"));
        let high = limit_of(&format!("{metric}_high"));
        if low.is_none() && high.is_none() {
            continue;
        }
        let out = |x: f64| low.is_some_and(|l| x < l) || high.is_some_and(|h| x > h);
        let ms: i64 = v
            .windows(2)
            .filter(|w| out(w[0].1))
            .map(|w| (w[1].0 - w[0].0).clamp(0, 5_000))
            .sum();
        outside.insert(metric, ms);
    }
    let mmss = |ms: i64| -> String {
        if ms <= 0 {
            "none".into()
        } else if ms < 60_000 {
            format!("{} s", ms / 1000)
        } else {
            format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000)
        }
    };
    let short = end - s.admitted_ms < 15 * 60_000;
    let peak = |v: &[(i64, f64)], low: bool| -> String {
        let best = if low {
            v.iter().min_by(|a, b| a.1.total_cmp(&b.1))
        } else {
            v.iter().max_by(|a, b| a.1.total_cmp(&b.1))
        };
        best.map(|(t, x)| {
            format!(
                "{} {} at {}",
                if low { "lowest" } else { "highest" },
                num(*x),
                hm(*t, off, short)
            )
        })
        .unwrap_or_else(|| "no value".into())
    };
    let at_end = |v: &[(i64, f64)], b: Option<f64>| -> String {
        match (v.last(), b) {
            (Some((_, x)), Some(b)) => {
                let d = (x - b).round();
                let change = if d == 0.0 {
                    "same as baseline".to_owned()
                } else {
                    format!("{:+} vs baseline", d as i64)
                };
                format!("{} ({change})", num(*x))
            }
            (Some((_, x)), None) => format!("{} (no baseline)", num(*x)),
            (None, _) => "no value".into(),
        }
    };
    let bl = |x: Option<f64>| x.map(num).unwrap_or_else(|| "not captured".into());
    let last_head = if s.discharged_ms.is_some() {
        "At discharge"
    } else {
        "Latest (still admitted)"
    };
    let mut h = format!(
        "<table class=summary><tr><th></th><th>Pre-dose baseline</th><th>Peak (time)</th>\
         <th>Time outside limits</th><th>{last_head}</th></tr>"
    );
    let b = base.as_ref();
    let rows = [
        ("SpO2 %", "spo2", b.and_then(|b| b.spo2), spo2, true),
        (
            "Pulse rate /min",
            "pulse_rate",
            b.and_then(|b| b.pulse_rate),
            pr,
            false,
        ),
        (
            "Systolic BP mmHg",
            "nibp_sys",
            b.and_then(|b| b.sys),
            sys,
            false,
        ),
        (
            "Diastolic BP mmHg",
            "nibp_dia",
            b.and_then(|b| b.dia),
            dia,
            false,
        ),
    ];
    for (name, metric, baseline, v, low) in rows {
        let _ = write!(
            h,
            "<tr><th>{name}</th><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            bl(baseline),
            peak(v, low),
            mmss(outside.get(metric).copied().unwrap_or(0)),
            at_end(v, baseline)
        );
    }
    let total: i64 = outside.values().sum();
    let any_reading_based = ["spo2", "pulse_rate"].iter().any(|m| {
        limit_of(&format!("{m}_low")).is_some() || limit_of(&format!("{m}_high")).is_some()
    });
    let prio: Vec<String> = ["high", "medium", "low"]
        .iter()
        .map(|p| format!("{} {p}", by_prio.get(p).copied().unwrap_or(0)))
        .collect();
    let _ = write!(
        h,
        "<tr><th>Alarms raised</th><td colspan=4>{} priority (each alarm once, by the highest \
         priority it reached)</td></tr>\
         <tr><th>Time outside limits</th><td colspan=4>{} in all{}</td></tr></table>",
        prio.join(", "),
        mmss(total),
        if any_reading_based {
            " (SpO2 and pulse rate: readings beyond the limits their alarms named; blood pressure: while its alarm was active)"
        } else {
            " (while a physiological alarm was active)"
        }
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SessionEventRow, StoredEvent};

    const T0: i64 = 1_796_126_400_000; // 2026-12-01T12:00:00Z

    fn reading(metric: Metric, t: i64, v: f64) -> StoredReading {
        StoredReading {
            id: t,
            bed: "room1/A".into(),
            device: "room1-A-oximeter".into(),
            metric: metric.name().into(),
            value: Some(v),
            invalid: None,
            flags: String::new(),
            device_time: None,
            received_ms: t,
            mono_ms: t - T0,
            bed_seq: 0,
            simulated: false,
        }
    }

    fn ev(id: i64, at: i64, kind: &str, event: Value) -> SessionEventRow {
        SessionEventRow {
            id,
            session: 1,
            at_ms: at,
            kind: kind.into(),
            actor: Some("nurse1".into()),
            event,
        }
    }

    fn alarm(at: i64, kind: &str, actor: Option<&str>) -> StoredAlarmEvent {
        let json = json!({"type":"alarm","event":kind,"bed":"room1/A","alarm":{
            "id":7,"condition":"spo2_low","priority":"medium","value":82.0,"limit":90.0}});
        StoredAlarmEvent {
            id: at,
            event: StoredEvent {
                at_ms: at,
                bed: Some("room1/A".into()),
                kind: kind.into(),
                alarm_id: Some(7),
                condition: Some("spo2_low".into()),
                priority: Some("medium".into()),
                actor: actor.map(str::to_owned),
                json: json.to_string(),
            },
        }
    }

    /// A 40-minute session: SpO2 and PR every second with a 20-second dip to 82 %, one NIBP
    /// measurement, a baseline, a dose, a phase, a note, and one alarm raised, acknowledged
    /// and cleared. The clinic is at UTC+01:00.
    fn record() -> SessionRecord {
        let mut readings = Vec::new();
        for s in 0..2400 {
            let t = T0 + s * 1000;
            let spo2 = if (1200..1220).contains(&s) {
                82.0
            } else {
                97.0
            };
            readings.push(reading(Metric::Spo2, t, spo2));
            readings.push(reading(Metric::PulseRate, t, 72.0));
        }
        let nibp = T0 + 600_000;
        readings.push(reading(Metric::NibpSys, nibp, 124.0));
        readings.push(reading(Metric::NibpDia, nibp, 79.0));
        readings.push(reading(Metric::NibpMean, nibp, 94.0));
        readings.sort_by_key(|r| r.received_ms);
        let session = Session {
            id: 1,
            bed: "room1/A".into(),
            label: "J.D.".into(),
            mrn: Some("12345".into()),
            weight_kg: Some(72.5),
            admitted_ms: T0,
            admitted_by: Some("nurse1".into()),
            discharged_ms: Some(T0 + 2_400_000),
            discharged_by: Some("nurse1".into()),
            exported_ms: None,
            events: vec![
                ev(
                    1,
                    T0 + 60_000,
                    "baseline",
                    json!({"kind":"baseline","sys":122.0,"dia":78.0,"pulse_rate":72.0,"spo2":97.0}),
                ),
                ev(
                    2,
                    T0 + 300_000,
                    "dose",
                    json!({"kind":"dose","drug":"ketamine","dose":0.5,"unit":"mg/kg","route":"IM"}),
                ),
                ev(
                    3,
                    T0 + 300_000,
                    "phase",
                    json!({"kind":"phase","phase":"monitoring"}),
                ),
                ev(
                    4,
                    T0 + 900_000,
                    "note",
                    json!({"kind":"note","text":"eyes closed, calm"}),
                ),
            ],
        };
        SessionRecord {
            session,
            readings,
            alarms: vec![
                alarm(T0 + 1_210_000, "raised", None),
                alarm(T0 + 1_215_000, "acknowledged", Some("nurse1")),
                alarm(T0 + 1_225_000, "cleared", None),
            ],
            devices: BTreeMap::new(),
            zone: Zone::named(Some("Europe/Berlin")),
        }
    }

    fn texts<'a>(html: &'a str, class: &str) -> Vec<&'a str> {
        let open = format!("class=\"{class}\"");
        html.match_indices(&open)
            .filter_map(|(i, _)| {
                let rest = &html[i..];
                let a = rest.find('>')? + 1;
                let b = rest[a..].find('<')?;
                Some(&rest[a..a + b])
            })
            .collect()
    }

    #[test]
    fn the_report_has_local_unique_ticks_round_values_sentences_and_keeps_a_dip_and_a_single_bp() {
        let html = html(&record());
        // Local time (UTC+01:00), said once at the top.
        assert!(
            html.contains("local time: Europe/Berlin (UTC+01:00)"),
            "{html}"
        );
        assert!(
            html.contains("2026-12-01 13:00:00 by nurse1"),
            "admission in local time"
        );
        assert!(!html.contains("T12:00:00"), "no UTC ISO times");
        // Time ticks: round local times, never the same label twice on a plot.
        let x = texts(&html, "xtick");
        let per_plot = x.len() / 3;
        let first: Vec<&str> = x[..per_plot].to_vec();
        let mut unique = first.clone();
        unique.dedup();
        assert_eq!(unique, first, "{x:?}");
        assert_eq!(
            first,
            [
                "13:00", "13:05", "13:10", "13:15", "13:20", "13:25", "13:30", "13:35", "13:40"
            ]
        );
        // Y ticks are round numbers.
        for v in texts(&html, "ytick") {
            let n: f64 = v.parse().unwrap();
            assert_eq!(n % 5.0, 0.0, "tick {v}");
        }
        // The 20-second dip to 82 % is drawn (the band reaches 82 on a 80..100 axis).
        let (lo, hi, _) = value_ticks(80.0, 100.0);
        let y82 = PAD_T + (1.0 - (82.0 - lo) / (hi - lo)) * (H - PAD_T - PAD_B);
        assert!(
            html.contains(&format!(",{y82:.1}V")),
            "dip in the band at y {y82:.1}"
        );
        assert!(
            html.contains("lowest 82 at 13:20"),
            "the summary names the dip and its time"
        );
        // One NIBP measurement: a point per value, with a legend.
        assert_eq!(html.matches("class=\"point\"").count(), 3);
        for key in ["Systolic", "Diastolic", "Mean"] {
            assert!(
                html.contains(&format!("</svg>{key}</span>")),
                "legend {key}"
            );
        }
        // Events and alarms as sentences, with condition names and who acted; no raw JSON.
        assert!(html.contains("Dose: ketamine 0.5 mg/kg IM"));
        assert!(html.contains("Pre-dose baseline: BP 122/78 mmHg, pulse 72 /min, SpO2 97 %"));
        assert!(html.contains("Note: eyes closed, calm"));
        assert!(html.contains("SpO2 low (82 % &lt; limit 90 %), medium priority: raised"));
        assert!(html.contains("SpO2 low, medium priority: acknowledged</td><td>nurse1"));
        assert!(
            !html.contains("{&quot;") && !html.contains("spo2_low"),
            "{html}"
        );
        // Summary: alarms by priority and time outside limits (15 s raised to cleared).
        assert!(html.contains("0 high, 1 medium, 0 low priority"));
        // The dip lasted 20 s below the 90 % the alarm named (the alarm itself 15 s).
        assert!(html.contains("20 s in all"));
        // Per vital sign: baseline, peak, time outside limits (SpO2 only), value at discharge
        // against the baseline.
        assert!(
            html.contains("<tr><th>SpO2 %</th><td class=n>97</td><td class=n>lowest 82 at 13:20</td><td class=n>20 s</td><td class=n>97 (same as baseline)</td></tr>"),
            "{html}"
        );
        assert!(
            html.contains("<tr><th>Systolic BP mmHg</th><td class=n>122</td><td class=n>highest 124 at 13:10</td><td class=n>none</td><td class=n>124 (+2 vs baseline)</td></tr>"),
            "{html}"
        );
        assert!(html.contains("<th>At discharge</th>"));
    }

    #[test]
    fn an_escalated_alarm_counts_once_by_its_highest_priority_and_the_hover_hint_is_not_printed() {
        let mut rec = record();
        // Alarm 7, raised medium, escalates to high before it is acknowledged (an update
        // with the new priority); alarm 8 is raised low and stays low.
        let mut up = alarm(T0 + 1_212_000, "updated", None);
        up.event.priority = Some("high".into());
        let mut low = alarm(T0 + 1_300_000, "raised", None);
        low.event.alarm_id = Some(8);
        low.event.priority = Some("low".into());
        rec.alarms.insert(1, up);
        rec.alarms.push(low);
        let html = html(&rec);
        assert!(
            html.contains(
                "1 high, 0 medium, 1 low priority (each alarm once, by the highest priority it reached)"
            ),
            "{html}"
        );
        // "Hover a marker" means nothing on paper: it is screen-only, hidden in print.
        let hover = html.find("hover a marker").expect("the hint on screen");
        assert!(html[..hover].ends_with("<span class=\"screen-only\"> On screen, "));
        assert!(html.contains(".screen-only{display:none}"));
    }

    #[test]
    fn ticks_are_round_and_short_sessions_show_seconds() {
        let (t, sec) = time_ticks(T0 + 7_000, T0 + 67_000, &Zone::named(Some("UTC")));
        assert!(sec);
        assert_eq!(t.first(), Some(&(T0 + 10_000)));
        assert_eq!(
            value_ticks(78.0, 100.0).2,
            [75.0, 80.0, 85.0, 90.0, 95.0, 100.0]
        );
        assert_eq!(
            value_ticks(40.0, 180.0).2,
            [40.0, 60.0, 80.0, 100.0, 120.0, 140.0, 160.0, 180.0]
        );
        assert_eq!(
            condition_name("nibp_sys_rise"),
            "Systolic BP rise from baseline"
        );
        assert_eq!(condition_name("device_disconnected"), "Device disconnected");
        assert_eq!(
            local_datetime(T0, &Zone::named(Some("America/New_York"))),
            "2026-12-01 07:00:00"
        );
        // Berlin: CET in winter, CEST in summer (the offset in force at each time).
        let berlin = Zone::named(Some("Europe/Berlin"));
        assert_eq!(local_datetime(T0, &berlin), "2026-12-01 13:00:00");
        assert_eq!(
            local_datetime(T0 - 183 * 86_400_000, &berlin),
            "2026-06-01 14:00:00"
        );
        assert_eq!(offset_text(-16_200), "-04:30");
    }
}
