//! The FHIR R4 Bundle of a session (docs/storage.md).

use super::SessionRecord;
use crate::clock::rfc3339_ms;
use crate::model::Metric;
use crate::store::query::StoredAlarmEvent;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;

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
pub(super) fn absent_reason(invalid: &str) -> &'static str {
    match invalid {
        "no_value" => "unknown",
        "positive_infinity" => "positive-infinity",
        "negative_infinity" => "negative-infinity",
        _ => "error",
    }
}

pub(super) fn uuid(session: i64, kind: u16, n: u64) -> String {
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

pub(super) fn alarm_detail(alarm: &Value, condition: &str) -> String {
    let mut d = condition.replace('_', " ");
    if let Some(v) = alarm["value"].as_f64() {
        let _ = write!(d, ": value {v}");
    }
    if let Some(l) = alarm["limit"].as_f64() {
        let _ = write!(d, ", limit {l}");
    }
    d
}

pub(super) fn alarms_by_id(events: &[StoredAlarmEvent]) -> BTreeMap<u64, Vec<&StoredAlarmEvent>> {
    let mut m: BTreeMap<u64, Vec<&StoredAlarmEvent>> = BTreeMap::new();
    for e in events {
        if let Some(id) = e.event.alarm_id {
            m.entry(id).or_default().push(e);
        }
    }
    m
}
