//! The IHE PCD messages, built from plain data (no I/O, no clock):
//!
//! - [`observation_report`]: PCD-01 "Communicate PCD Data", `ORU^R01^ORU_R01` on HL7 v2.6
//!   (IHE PCD TF-2 3.1), one bed's observations, devices as MDS with their VMD and channel
//!   (OBX-4 containment `mds.vmd.channel.metric`, as the TF-2 example message does).
//! - [`alarm_report`]: PCD-04 "Report Alert", `ORU^R40^ORU_R40` (IHE PCD TF-2 3.4, ACM): one
//!   alarm event as the facets OBX 1..7 under an `MDC_EVT_ALARM` OBR, with the alarm's identity
//!   in OBR-3 so the alarm manager correlates start, updates and end.
//!
//! docs/hl7.md has the mapping table and the choices made here.

use super::writer::{
    ENCODING_CHARS, Segment, comp, comp_raw, dtm, esc, message, number, reps, sub,
};
use crate::model::Metric;

/// MSH-21 of PCD-01 messages (IHE PCD TF-2 3.1: `IHE_PCD_001`, OID of the DEC profile).
pub const PCD01_PROFILE: [&str; 4] = [
    "IHE_PCD_001",
    "IHE PCD",
    "1.3.6.1.4.1.19376.1.6.1.1.1",
    "ISO",
];
/// MSH-21 of PCD-04 messages (IHE PCD TF-2 3.4, the ACM profile).
pub const PCD04_PROFILE: [&str; 4] = [
    "IHE_PCD_ACM_001",
    "IHE PCD",
    "1.3.6.1.4.1.19376.1.6.4.4.1",
    "ISO",
];

/// Who sends to whom (MSH-3..6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
}

/// The patient of the bed's open session (PID), if one is admitted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patient {
    /// The session's label (PID-5, name type `U`, unspecified: a label, not a legal name).
    pub label: String,
    /// The medical record number (PID-3, identifier type `MR`), if the session has one.
    pub mrn: Option<String>,
}

/// Where (PV1-3): room and recliner (bed) in the sending facility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub room: String,
    pub recliner: String,
}

/// A device, an MDS in the containment tree (OBX-18 equipment instance identifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equipment {
    /// The device id from the config (`room1-A-oximeter`).
    pub id: String,
    /// Its kind (`oximeter`, `bp`, `heart_rate`), the EI namespace.
    pub kind: String,
}

/// One observation for OBX.
#[derive(Debug, Clone, PartialEq)]
pub struct Obs {
    pub metric: Metric,
    /// The value, or `Err(reason)` when the device gave none (sent with OBX-11 `X`).
    pub value: Result<f64, String>,
    /// When it was received (or measured), Unix ms (OBX-14).
    pub at_ms: i64,
    /// Index into [`Report::devices`].
    pub device: usize,
}

/// A PCD-01 report of one bed.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub control_id: String,
    /// Message time (MSH-7) and observation time of the OBR (OBR-7).
    pub at_ms: i64,
    pub patient: Option<Patient>,
    pub location: Location,
    pub devices: Vec<Equipment>,
    pub obs: Vec<Obs>,
}

/// A virtual medical device (VMD) and its one channel, by metric.
struct Vmd {
    code: u32,
    name: &'static str,
    chan_code: u32,
    chan_name: &'static str,
}

const VMD_SPO2: Vmd = Vmd {
    code: 69642,
    name: "MDC_DEV_ANALY_SAT_O2_VMD",
    chan_code: 69643,
    chan_name: "MDC_DEV_ANALY_SAT_O2_CHAN",
};
const VMD_NIBP: Vmd = Vmd {
    code: 69854,
    name: "MDC_DEV_METER_PRESS_BLD_VMD",
    chan_code: 69855,
    chan_name: "MDC_DEV_METER_PRESS_BLD_CHAN",
};
const VMD_ECG: Vmd = Vmd {
    code: 69798,
    name: "MDC_DEV_ECG_VMD",
    chan_code: 69799,
    chan_name: "MDC_DEV_ECG_CHAN",
};

/// The VMD a metric belongs to and its number in the channel (OBX-4's fourth level).
fn place(m: Metric) -> Option<(&'static Vmd, u32)> {
    Some(match m {
        Metric::Spo2 => (&VMD_SPO2, 1),
        Metric::PulseRate => (&VMD_SPO2, 2),
        Metric::PerfusionIndex => (&VMD_SPO2, 3),
        Metric::NibpSys => (&VMD_NIBP, 1),
        Metric::NibpDia => (&VMD_NIBP, 2),
        Metric::NibpMean => (&VMD_NIBP, 3),
        Metric::NibpPulse => (&VMD_NIBP, 4),
        Metric::HeartRate => (&VMD_ECG, 1),
        Metric::Pleth | Metric::CuffPressure | Metric::Battery => return None,
    })
}

/// Whether PCD-01 reports carry this metric (not waveforms, not the cuff's inflation
/// pressure, not the battery).
pub fn reported(m: Metric) -> bool {
    place(m).is_some()
}

/// The MDC unit code and reference id of a metric's unit (IEEE 11073-10101 dimensions).
pub fn mdc_unit(m: Metric) -> (u32, &'static str) {
    match m.unit() {
        "%" => (262_688, "MDC_DIM_PERCENT"),
        "/min" => (264_864, "MDC_DIM_BEAT_PER_MIN"),
        "mm[Hg]" => (266_016, "MDC_DIM_MMHG"),
        _ => (262_656, "MDC_DIM_DIMLESS"),
    }
}

/// OBX-6: the MDC unit, with the UCUM code as the alternate identifier
/// (`266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM`).
pub fn unit_field(m: Metric) -> String {
    let (code, name) = mdc_unit(m);
    comp(&[&code.to_string(), name, "MDC", m.unit(), m.unit(), "UCUM"])
}

fn msh(
    env: &Envelope,
    at_ms: i64,
    control_id: &str,
    kind: [&str; 3],
    profile: [&str; 4],
) -> Segment {
    Segment::new("MSH")
        .set(2, ENCODING_CHARS)
        .text(3, &env.sending_application)
        .text(4, &env.sending_facility)
        .text(5, &env.receiving_application)
        .text(6, &env.receiving_facility)
        .set(7, dtm(at_ms))
        .set(9, comp(&kind))
        .text(10, control_id)
        .set(11, "P")
        .set(12, "2.6")
        // Accept acknowledgment never, application acknowledgment always (TF-2 example).
        .set(15, "NE")
        .set(16, "AL")
        .set(18, "UNICODE UTF-8")
        .set(21, comp(&profile))
}

fn pid(p: Option<&Patient>, facility: &str) -> Segment {
    // PID-1 always: a receiver may not read a PID with no field at all (no patient admitted).
    let s = Segment::new("PID").set(1, "1");
    let Some(p) = p else { return s };
    let s = match &p.mrn {
        Some(mrn) => s.set(3, comp(&[mrn, "", "", facility, "MR"])),
        None => s,
    };
    s.set(5, comp(&[&p.label, "", "", "", "", "", "U"]))
}

fn pv1(l: Option<&Location>, facility: &str) -> Segment {
    let s = Segment::new("PV1").set(2, "O");
    match l {
        // PL: point of care ^ room ^ bed ^ facility.
        Some(l) => s.set(3, comp(&["", &l.room, &l.recliner, facility])),
        None => s,
    }
}

fn equipment(e: &Equipment) -> String {
    comp(&[&e.id, &e.kind])
}

/// The PCD-01 `ORU^R01` of a report.
pub fn observation_report(env: &Envelope, r: &Report) -> String {
    let app = &env.sending_application;
    let mut segs = vec![
        msh(
            env,
            r.at_ms,
            &r.control_id,
            ["ORU", "R01", "ORU_R01"],
            PCD01_PROFILE,
        ),
        pid(r.patient.as_ref(), &env.sending_facility),
        pv1(Some(&r.location), &env.sending_facility),
        Segment::new("OBR")
            .set(1, "1")
            .set(2, comp(&[&r.control_id, app]))
            .set(3, comp(&[&r.control_id, app]))
            .set(4, comp(&["182777000", "monitoring of patient", "SCT"]))
            .set(7, dtm(r.at_ms)),
    ];
    let mut n = 0u32;
    let mut next = || {
        n += 1;
        n.to_string()
    };
    for (d, dev) in r.devices.iter().enumerate() {
        let mut obs: Vec<&Obs> = r
            .obs
            .iter()
            .filter(|o| o.device == d && place(o.metric).is_some())
            .collect();
        if obs.is_empty() {
            continue;
        }
        obs.sort_by_key(|o| o.metric);
        let mds = d + 1;
        segs.push(
            Segment::new("OBX")
                .set(1, next())
                .set(
                    3,
                    comp(&["69965", "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", "MDC"]),
                )
                .set(4, format!("{mds}.0.0.0"))
                .set(11, "X")
                .set(18, equipment(dev)),
        );
        let mut vmds: Vec<&'static str> = Vec::new();
        for o in obs {
            let Some((vmd, k)) = place(o.metric) else {
                continue;
            };
            let v = match vmds.iter().position(|n| *n == vmd.name) {
                Some(i) => i + 1,
                None => {
                    vmds.push(vmd.name);
                    let v = vmds.len();
                    segs.push(
                        Segment::new("OBX")
                            .set(1, next())
                            .set(3, comp(&[&vmd.code.to_string(), vmd.name, "MDC"]))
                            .set(4, format!("{mds}.{v}.0.0"))
                            .set(11, "X"),
                    );
                    segs.push(
                        Segment::new("OBX")
                            .set(1, next())
                            .set(3, comp(&[&vmd.chan_code.to_string(), vmd.chan_name, "MDC"]))
                            .set(4, format!("{mds}.{v}.1.0"))
                            .set(11, "X"),
                    );
                    v
                }
            };
            let code = comp(&[&o.metric.mdc_code().to_string(), o.metric.mdc_ref(), "MDC"]);
            let obx = Segment::new("OBX")
                .set(1, next())
                .set(2, "NM")
                .set(3, code)
                .set(4, format!("{mds}.{v}.1.{k}"))
                .set(6, unit_field(o.metric))
                .set(14, dtm(o.at_ms))
                .set(18, equipment(dev));
            match &o.value {
                // R: results entered, not verified (device data, TF-2 OBX-11).
                Ok(x) => segs.push(obx.set(5, number(*x)).set(11, "R")),
                // X: results cannot be obtained for this observation (HL7 table 0085); why
                // in an NTE after it.
                Err(why) => {
                    segs.push(obx.set(11, "X"));
                    segs.push(Segment::new("NTE").set(1, "1").text(3, why));
                }
            }
        }
    }
    message(&segs)
}

/// ACM event phase (OBX facet 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Start,
    Update,
    Escalate,
    Deescalate,
    End,
}

impl Phase {
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::Update => "update",
            Phase::Escalate => "escalate",
            Phase::Deescalate => "deescalate",
            Phase::End => "end",
        }
    }
}

/// One alarm event for PCD-04.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmReport {
    pub control_id: String,
    pub at_ms: i64,
    pub patient: Option<Patient>,
    /// None for a bed-less (system) alarm.
    pub location: Option<Location>,
    /// The daemon's alarm id: OBR-3, the same in every message about this alarm.
    pub alarm_id: u64,
    /// The condition's stable name (`spo2_low`, `no_data`).
    pub condition: String,
    /// The metric of a physiological alarm and whether it is a low (`true`) or high limit.
    pub limit_of: Option<(Metric, bool)>,
    /// `high`, `medium` or `low`.
    pub priority: String,
    pub technical: bool,
    pub phase: Phase,
    /// ACM alarm state: `active`, `latched` or `inactive`.
    pub state: &'static str,
    /// ACM inactivation state: `enabled`, `audio-paused` or `alert-acknowledged`.
    pub inactivation: &'static str,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    /// When the alarm started, Unix ms.
    pub started_ms: i64,
    pub device: Option<Equipment>,
}

/// The PCD-04 `ORU^R40` of an alarm event.
pub fn alarm_report(env: &Envelope, a: &AlarmReport) -> String {
    let app = &env.sending_application;
    let (evt_code, evt_name, abnormal) = match a.limit_of {
        Some((_, true)) => ("196670", "MDC_EVT_LO", "L"),
        Some((_, false)) => ("196648", "MDC_EVT_HI", "H"),
        None => ("196616", "MDC_EVT_ALARM", ""),
    };
    let prio = match a.priority.as_str() {
        "high" => "PH",
        "medium" => "PM",
        "low" => "PL",
        _ => "PN",
    };
    let source = if a.technical { "ST" } else { "SP" };
    let sub_id = match a.limit_of {
        Some((m, _)) => format!("1.1.1.{}", m.mdc_code()),
        None => "1.0.0.0".to_owned(),
    };
    let facet = |k: u32| format!("{sub_id}.{k}");
    let flags: Vec<String> = [abnormal, prio, source]
        .iter()
        .filter(|f| !f.is_empty())
        .map(|f| (*f).to_owned())
        .collect();
    let equip = a.device.as_ref().map(equipment).unwrap_or_default();
    let mut text = a.condition.clone();
    if let (Some(v), Some((m, _))) = (a.value, a.limit_of) {
        text = format!("{text} {} {}", number(v), m.unit());
    }
    let mut segs = vec![
        msh(
            env,
            a.at_ms,
            &a.control_id,
            ["ORU", "R40", "ORU_R40"],
            PCD04_PROFILE,
        ),
        pid(a.patient.as_ref(), &env.sending_facility),
        pv1(a.location.as_ref(), &env.sending_facility),
        Segment::new("OBR")
            .set(1, "1")
            .set(2, comp(&[&a.control_id, app]))
            .set(3, comp(&[&a.alarm_id.to_string(), app]))
            .set(4, comp(&["196616", "MDC_EVT_ALARM", "MDC"]))
            .set(7, dtm(a.started_ms))
            // OBR-29 parent: the alarm's first report (same identity).
            .set(
                29,
                comp_raw(&[String::new(), sub(&[&a.alarm_id.to_string(), app])]),
            ),
        Segment::new("OBX")
            .set(1, "1")
            .set(2, "ST")
            .set(3, comp(&[evt_code, evt_name, "MDC"]))
            .set(4, facet(1))
            .set(5, esc(&text))
            .set(8, reps(&flags))
            .set(11, "F")
            .set(14, dtm(a.at_ms))
            .set(18, equip.clone()),
    ];
    match a.limit_of {
        Some((m, low)) => {
            let range = match (a.limit, low) {
                (Some(l), true) => format!(">{}", number(l)),
                (Some(l), false) => format!("<{}", number(l)),
                (None, _) => String::new(),
            };
            let mut obx = Segment::new("OBX")
                .set(1, "2")
                .set(2, "NM")
                .set(3, comp(&[&m.mdc_code().to_string(), m.mdc_ref(), "MDC"]))
                .set(4, facet(2))
                .set(6, unit_field(m))
                .set(7, esc(&range))
                .set(11, "F")
                .set(14, dtm(a.at_ms));
            if let Some(v) = a.value {
                obx = obx.set(5, number(v));
            }
            segs.push(obx);
        }
        None => {
            let src = a.device.as_ref().map_or(app.as_str(), |d| d.id.as_str());
            segs.push(
                Segment::new("OBX")
                    .set(1, "2")
                    .set(2, "ST")
                    .set(3, comp(&["68480", "MDC_ATTR_ALERT_SOURCE", "MDC"]))
                    .set(4, facet(2))
                    .text(5, src)
                    .set(11, "F"),
            );
        }
    }
    let attrs = [
        (3, "68481", "MDC_ATTR_EVENT_PHASE", a.phase.name()),
        (4, "68482", "MDC_ATTR_ALARM_STATE", a.state),
        (
            5,
            "68483",
            "MDC_ATTR_ALARM_INACTIVATION_STATE",
            a.inactivation,
        ),
        (6, "68484", "MDC_ATTR_ALARM_PRIORITY", prio),
        (7, "68485", "MDC_ATTR_ALERT_TYPE", source),
    ];
    for (k, code, name, value) in attrs {
        segs.push(
            Segment::new("OBX")
                .set(1, k.to_string())
                .set(2, "ST")
                .set(3, comp(&[code, name, "MDC"]))
                .set(4, facet(k))
                .text(5, value)
                .set(11, "F"),
        );
    }
    message(&segs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Envelope {
        Envelope {
            sending_application: "vitalsd".into(),
            sending_facility: "Clinic".into(),
            receiving_application: "EHR".into(),
            receiving_facility: "Hospital".into(),
        }
    }

    fn segs(m: &str) -> Vec<&str> {
        m.split('\r').filter(|s| !s.is_empty()).collect()
    }

    // 2009-08-13 09:57:15 UTC: the time of the IHE PCD TF-2 PCD-01 example message.
    const T: i64 = 1_250_157_435_000;

    #[test]
    fn a_nibp_report_reads_like_the_pcd01_example() {
        // IHE PCD TF-2 3.1 example (NIBP 120/80/93 as MDS 1.0.0.0, VMD 1.1.0.0, CHAN 1.1.1.0,
        // metrics 1.1.1.1..3 with 266016^MDC_DIM_MMHG^MDC), here with the UCUM alternate.
        let r = Report {
            control_id: "MSGID1234".into(),
            at_ms: T,
            patient: Some(Patient {
                label: "Partner A".into(),
                mrn: Some("010101".into()),
            }),
            location: Location {
                room: "room1".into(),
                recliner: "A".into(),
            },
            devices: vec![Equipment {
                id: "room1-A-nibp".into(),
                kind: "bp".into(),
            }],
            obs: [
                (Metric::NibpSys, 120.0),
                (Metric::NibpDia, 80.0),
                (Metric::NibpMean, 93.0),
            ]
            .into_iter()
            .map(|(metric, v)| Obs {
                metric,
                value: Ok(v),
                at_ms: T,
                device: 0,
            })
            .collect(),
        };
        let m = observation_report(&env(), &r);
        assert_eq!(
            segs(&m),
            [
                "MSH|^~\\&|vitalsd|Clinic|EHR|Hospital|20090813095715.000+0000||ORU^R01^ORU_R01|MSGID1234|P|2.6|||NE|AL||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
                "PID|1||010101^^^Clinic^MR||Partner A^^^^^^U",
                "PV1||O|^room1^A^Clinic",
                "OBR|1|MSGID1234^vitalsd|MSGID1234^vitalsd|182777000^monitoring of patient^SCT|||20090813095715.000+0000",
                "OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||room1-A-nibp^bp",
                "OBX|2||69854^MDC_DEV_METER_PRESS_BLD_VMD^MDC|1.1.0.0|||||||X",
                "OBX|3||69855^MDC_DEV_METER_PRESS_BLD_CHAN^MDC|1.1.1.0|||||||X",
                "OBX|4|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.1.1.1|120|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||R|||20090813095715.000+0000||||room1-A-nibp^bp",
                "OBX|5|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.1.1.2|80|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||R|||20090813095715.000+0000||||room1-A-nibp^bp",
                "OBX|6|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.1.1.3|93|266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM|||||R|||20090813095715.000+0000||||room1-A-nibp^bp",
            ]
        );
    }

    #[test]
    fn an_invalid_value_has_no_number_status_x_and_its_reason_in_a_note() {
        let r = Report {
            control_id: "7".into(),
            at_ms: T,
            patient: None,
            location: Location {
                room: "room1".into(),
                recliner: "B".into(),
            },
            devices: vec![Equipment {
                id: "ox".into(),
                kind: "oximeter".into(),
            }],
            obs: vec![
                Obs {
                    metric: Metric::Spo2,
                    value: Err("no_finger".into()),
                    at_ms: T,
                    device: 0,
                },
                Obs {
                    metric: Metric::PulseRate,
                    value: Ok(72.0),
                    at_ms: T,
                    device: 0,
                },
            ],
        };
        let m = observation_report(&env(), &r);
        let s = segs(&m);
        assert_eq!(s[1], "PID|1", "no session: a PID without patient");
        assert_eq!(
            s[7],
            "OBX|4|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1||262688^MDC_DIM_PERCENT^MDC^%^%^UCUM|||||X|||20090813095715.000+0000||||ox^oximeter"
        );
        assert_eq!(s[8], "NTE|1||no_finger");
        assert!(s[9].starts_with(
            "OBX|5|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.1.1.2|72|264864^MDC_DIM_BEAT_PER_MIN^MDC^/min^/min^UCUM|||||R|"
        ), "{}", s[9]);
    }

    #[test]
    fn free_text_with_delimiters_cannot_break_the_message() {
        let mut e = env();
        e.sending_facility = "A|B^C".into();
        let r = Report {
            control_id: "1".into(),
            at_ms: T,
            patient: Some(Patient {
                label: "O'Neil ^ Smith|x\rMSH".into(),
                mrn: None,
            }),
            location: Location {
                room: "r&1".into(),
                recliner: "A~".into(),
            },
            devices: vec![],
            obs: vec![],
        };
        let m = observation_report(&e, &r);
        let s = segs(&m);
        assert_eq!(s.len(), 4, "{m:?}");
        assert_eq!(s[1], r"PID|1||||O'Neil \S\ Smith\F\x\X0D\MSH^^^^^^U");
        assert_eq!(s[2], r"PV1||O|^r\T\1^A\R\^A\F\B\S\C");
    }

    #[test]
    fn an_alarm_reads_like_the_acm_example_and_keeps_its_identity() {
        // IHE PCD TF-2 3.4 (ACM) example: Low SpO2 88 %, facets 1.3.1.150456.1..5 with
        // L~PM~SP in OBX-8 of facet 1, phase start, state active, inactivation enabled.
        let a = AlarmReport {
            control_id: "55".into(),
            at_ms: T,
            patient: Some(Patient {
                label: "Partner A".into(),
                mrn: None,
            }),
            location: Some(Location {
                room: "room1".into(),
                recliner: "A".into(),
            }),
            alarm_id: 17,
            condition: "spo2_low".into(),
            limit_of: Some((Metric::Spo2, true)),
            priority: "medium".into(),
            technical: false,
            phase: Phase::Start,
            state: "active",
            inactivation: "enabled",
            value: Some(88.0),
            limit: Some(90.0),
            started_ms: T,
            device: Some(Equipment {
                id: "room1-A-oximeter".into(),
                kind: "oximeter".into(),
            }),
        };
        let m = alarm_report(&env(), &a);
        let s = segs(&m);
        assert!(s[0].contains("|ORU^R40^ORU_R40|55|P|2.6|||NE|AL||UNICODE UTF-8|||IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4.1^ISO"), "{}", s[0]);
        assert_eq!(
            s[3],
            "OBR|1|55^vitalsd|17^vitalsd|196616^MDC_EVT_ALARM^MDC|||20090813095715.000+0000||||||||||||||||||||||^17&vitalsd"
        );
        assert_eq!(
            s[4],
            "OBX|1|ST|196670^MDC_EVT_LO^MDC|1.1.1.150456.1|spo2_low 88 %|||L~PM~SP|||F|||20090813095715.000+0000||||room1-A-oximeter^oximeter"
        );
        assert_eq!(
            s[5],
            "OBX|2|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.150456.2|88|262688^MDC_DIM_PERCENT^MDC^%^%^UCUM|>90||||F|||20090813095715.000+0000"
        );
        assert_eq!(
            s[6],
            "OBX|3|ST|68481^MDC_ATTR_EVENT_PHASE^MDC|1.1.1.150456.3|start||||||F"
        );
        assert_eq!(
            s[7],
            "OBX|4|ST|68482^MDC_ATTR_ALARM_STATE^MDC|1.1.1.150456.4|active||||||F"
        );
        assert_eq!(
            s[8],
            "OBX|5|ST|68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC|1.1.1.150456.5|enabled||||||F"
        );
        assert_eq!(
            s[9],
            "OBX|6|ST|68484^MDC_ATTR_ALARM_PRIORITY^MDC|1.1.1.150456.6|PM||||||F"
        );
        assert_eq!(
            s[10],
            "OBX|7|ST|68485^MDC_ATTR_ALERT_TYPE^MDC|1.1.1.150456.7|SP||||||F"
        );

        let end = alarm_report(
            &env(),
            &AlarmReport {
                control_id: "56".into(),
                phase: Phase::End,
                state: "inactive",
                ..a
            },
        );
        assert!(
            end.contains("|17^vitalsd|196616^MDC_EVT_ALARM^MDC|"),
            "same identity: {end}"
        );
        assert!(end.contains("|1.1.1.150456.3|end|"), "{end}");
    }

    #[test]
    fn a_technical_alarm_names_its_source() {
        let a = AlarmReport {
            control_id: "9".into(),
            at_ms: T,
            patient: None,
            location: None,
            alarm_id: 3,
            condition: "no_dashboard".into(),
            limit_of: None,
            priority: "high".into(),
            technical: true,
            phase: Phase::Start,
            state: "active",
            inactivation: "enabled",
            value: None,
            limit: None,
            started_ms: T,
            device: None,
        };
        let m = alarm_report(&env(), &a);
        let s = segs(&m);
        assert_eq!(s[1], "PID|1");
        assert_eq!(s[2], "PV1||O");
        assert!(
            s[4].starts_with(
                "OBX|1|ST|196616^MDC_EVT_ALARM^MDC|1.0.0.0.1|no_dashboard|||PH~ST|||F|"
            ),
            "{}",
            s[4]
        );
        assert_eq!(
            s[5],
            "OBX|2|ST|68480^MDC_ATTR_ALERT_SOURCE^MDC|1.0.0.0.2|vitalsd||||||F"
        );
    }
}
