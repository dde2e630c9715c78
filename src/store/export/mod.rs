//! Exports of one session: CSV (every stored reading), a FHIR R4 Bundle, and a printable HTML
//! report with SVG trend plots. Pure functions over a [`SessionRecord`] loaded by [`load`].
//! Formats documented in docs/storage.md.
//!
//! The record and CSV are here; the FHIR Bundle in `fhir`, the HTML report in `html` (its
//! summary table in `summary`, its SVG plots in `plot`), local times and wording shared by the
//! report in `text`.

mod fhir;
mod html;
mod plot;
mod summary;
mod text;

pub use fhir::{MDC_SYSTEM, UCUM_SYSTEM, fhir, loinc};
pub use html::html;
pub use text::{condition_name, local_offset_s};

use super::StoreError;
use super::query::{self, StoredAlarmEvent, StoredReading};
use super::session::{self, Session};
use crate::clock::rfc3339_ms;
use rusqlite::Connection;
use std::collections::BTreeMap;

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

#[cfg(test)]
mod tests {
    use super::plot::{H, PAD_B, PAD_T, time_ticks, value_ticks};
    use super::text::{local_datetime, offset_text};
    use super::*;
    use crate::model::Metric;
    use crate::store::{SessionEventRow, StoredEvent};
    use serde_json::{Value, json};

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
