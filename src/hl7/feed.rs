//! What the HL7 edge makes of the hub's messages (the same JSON a dashboard gets): the latest
//! value per bed and metric for the periodic PCD-01 reports, NIBP measurements gathered into
//! one report each, and alarm events turned into PCD-04 reports. No I/O: time is a parameter.

use super::pcd::{AlarmReport, Equipment, Location, Obs, Phase, Report, reported};
use crate::config::Config;
use crate::model::Metric;
use serde_json::Value;
use std::collections::HashMap;

/// How long the readings of one NIBP measurement are gathered (they arrive together; this only
/// bounds the wait for the last of them).
pub const NIBP_GATHER_MS: i64 = 1_000;

/// One reading as the feed keeps it.
#[derive(Debug, Clone, PartialEq)]
struct Latest {
    value: Result<f64, String>,
    at_ms: i64,
    device: String,
}

/// An NIBP measurement being gathered.
#[derive(Debug, Clone, PartialEq)]
struct PendingNibp {
    device: String,
    received_ms: i64,
    values: Vec<(Metric, Result<f64, String>)>,
    /// When the first of its readings came (wall ms of the feed's clock).
    since_ms: i64,
}

/// A report ready to be addressed: the bed, the devices and observations.
#[derive(Debug, Clone, PartialEq)]
pub struct BedReport {
    pub bed: String,
    pub location: Location,
    pub devices: Vec<Equipment>,
    pub obs: Vec<Obs>,
    pub at_ms: i64,
}

impl BedReport {
    /// The PCD-01 report, once the control id and patient are known.
    pub fn into_report(self, control_id: String, patient: Option<super::pcd::Patient>) -> Report {
        Report {
            control_id,
            at_ms: self.at_ms,
            patient,
            location: self.location,
            devices: self.devices,
            obs: self.obs,
        }
    }
}

/// The feed's state.
#[derive(Debug, Default)]
pub struct Feed {
    latest: HashMap<(String, Metric), Latest>,
    nibp: HashMap<String, PendingNibp>,
    /// The last priority seen per alarm id (to tell escalation from de-escalation).
    priorities: HashMap<u64, String>,
}

fn is_nibp(m: Metric) -> bool {
    matches!(
        m,
        Metric::NibpSys | Metric::NibpDia | Metric::NibpMean | Metric::NibpPulse
    )
}

fn location(cfg: &Config, bed: &str) -> Option<Location> {
    let b = cfg.beds.iter().find(|b| b.id == bed)?;
    Some(Location {
        room: cfg
            .rooms
            .get(b.room)
            .map(|r| r.id.clone())
            .unwrap_or_default(),
        recliner: b.recliner.clone(),
    })
}

fn equipment(cfg: &Config, device: &str) -> Equipment {
    let kind = cfg
        .devices
        .iter()
        .find(|d| d.id == device)
        .map(|d| d.profile.kind.name())
        .unwrap_or("device");
    Equipment {
        id: device.to_owned(),
        kind: kind.to_owned(),
    }
}

/// Observations of several devices: each device once in `devices`, `obs` pointing at it.
fn gather(
    cfg: &Config,
    items: impl Iterator<Item = (Metric, Result<f64, String>, i64, String)>,
) -> (Vec<Equipment>, Vec<Obs>) {
    let mut devices: Vec<Equipment> = Vec::new();
    let mut obs = Vec::new();
    for (metric, value, at_ms, device) in items {
        let d = match devices.iter().position(|e| e.id == device) {
            Some(d) => d,
            None => {
                devices.push(equipment(cfg, &device));
                devices.len() - 1
            }
        };
        obs.push(Obs {
            metric,
            value,
            at_ms,
            device: d,
        });
    }
    (devices, obs)
}

impl Feed {
    /// Takes one hub message. Returns the NIBP reports it completed (a measurement is complete
    /// when a reading of another measurement of the bed arrives, or by [`Feed::due_nibp`]) and
    /// the alarm report it makes, if any.
    /// The alarm report comes with its bed's id (None for a bed-less alarm).
    pub fn on_message(
        &mut self,
        cfg: &Config,
        msg: &Value,
        now_ms: i64,
    ) -> (Vec<BedReport>, Option<(Option<String>, AlarmReport)>) {
        match msg["type"].as_str() {
            Some("readings") => {
                let list = msg["readings"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                let done = list
                    .iter()
                    .flat_map(|r| self.on_reading(cfg, r, now_ms))
                    .collect();
                (done, None)
            }
            Some("alarm") => (Vec::new(), self.on_alarm(cfg, msg)),
            _ => (Vec::new(), None),
        }
    }

    fn on_reading(&mut self, cfg: &Config, msg: &Value, now_ms: i64) -> Vec<BedReport> {
        let (Some(bed), Some(device), Some(metric)) = (
            msg["bed"].as_str(),
            msg["device"].as_str(),
            msg["metric"].as_str().and_then(Metric::from_name),
        ) else {
            return Vec::new();
        };
        if !reported(metric) {
            return Vec::new();
        }
        let value = match msg["value"].as_f64() {
            Some(v) => Ok(v),
            None => Err(msg["invalid"].as_str().unwrap_or("no_value").to_owned()),
        };
        let received_ms = msg["received_ms"].as_i64().unwrap_or(now_ms);
        let mut done = Vec::new();
        if is_nibp(metric) {
            let same = self
                .nibp
                .get(bed)
                .is_some_and(|p| p.device == device && p.received_ms == received_ms);
            if !same
                && let Some(p) = self.nibp.remove(bed)
                && let Some(r) = self.nibp_report(cfg, bed, p)
            {
                done.push(r);
            }
            let p = self
                .nibp
                .entry(bed.to_owned())
                .or_insert_with(|| PendingNibp {
                    device: device.to_owned(),
                    received_ms,
                    values: Vec::new(),
                    since_ms: now_ms,
                });
            p.values.retain(|(m, _)| *m != metric);
            p.values.push((metric, value));
        } else {
            self.latest.insert(
                (bed.to_owned(), metric),
                Latest {
                    value,
                    at_ms: received_ms,
                    device: device.to_owned(),
                },
            );
        }
        done
    }

    fn nibp_report(&self, cfg: &Config, bed: &str, p: PendingNibp) -> Option<BedReport> {
        let location = location(cfg, bed)?;
        let at = p.received_ms;
        let device = p.device;
        let (devices, obs) = gather(
            cfg,
            p.values
                .into_iter()
                .map(|(m, v)| (m, v, at, device.clone())),
        );
        Some(BedReport {
            bed: bed.to_owned(),
            location,
            devices,
            obs,
            at_ms: at,
        })
    }

    /// NIBP measurements gathered for [`NIBP_GATHER_MS`] or longer: complete.
    pub fn due_nibp(&mut self, cfg: &Config, now_ms: i64) -> Vec<BedReport> {
        let due: Vec<String> = self
            .nibp
            .iter()
            .filter(|(_, p)| now_ms - p.since_ms >= NIBP_GATHER_MS)
            .map(|(b, _)| b.clone())
            .collect();
        let mut out = Vec::new();
        for bed in due {
            if let Some(p) = self.nibp.remove(&bed)
                && let Some(r) = self.nibp_report(cfg, &bed, p)
            {
                out.push(r);
            }
        }
        out
    }

    /// The periodic report of every bed: the latest value of each reported metric (NIBP
    /// apart: every measurement has its own report) received within `window_ms` before
    /// `now_ms`. A bed with nothing that recent has no report.
    pub fn periodic(&self, cfg: &Config, now_ms: i64, window_ms: i64) -> Vec<BedReport> {
        let mut out = Vec::new();
        for bed in &cfg.beds {
            let mut items: Vec<(Metric, Result<f64, String>, i64, String)> = Metric::ALL
                .into_iter()
                .filter(|m| reported(*m) && !is_nibp(*m))
                .filter_map(|m| self.latest.get(&(bed.id.clone(), m)).map(|l| (m, l)))
                .filter(|(_, l)| now_ms - l.at_ms <= window_ms)
                .map(|(m, l)| (m, l.value.clone(), l.at_ms, l.device.clone()))
                .collect();
            if items.is_empty() {
                continue;
            }
            items.sort_by(|a, b| a.3.cmp(&b.3).then(a.0.cmp(&b.0)));
            let Some(location) = location(cfg, &bed.id) else {
                continue;
            };
            let (devices, obs) = gather(cfg, items.into_iter());
            out.push(BedReport {
                bed: bed.id.clone(),
                location,
                devices,
                obs,
                at_ms: now_ms,
            });
        }
        out
    }

    fn on_alarm(&mut self, cfg: &Config, msg: &Value) -> Option<(Option<String>, AlarmReport)> {
        let a = &msg["alarm"];
        let id = a["id"].as_u64()?;
        let priority = a["priority"].as_str().unwrap_or("low").to_owned();
        let rank = |p: &str| match p {
            "high" => 3,
            "medium" => 2,
            _ => 1,
        };
        let phase = match msg["event"].as_str()? {
            "raised" => Phase::Start,
            "cleared" => Phase::End,
            "updated" => match self.priorities.get(&id) {
                Some(before) if rank(&priority) > rank(before) => Phase::Escalate,
                Some(before) if rank(&priority) < rank(before) => Phase::Deescalate,
                _ => Phase::Update,
            },
            "acknowledged" | "latched" => Phase::Update,
            _ => return None,
        };
        if phase == Phase::End {
            self.priorities.remove(&id);
        } else {
            self.priorities.insert(id, priority.clone());
        }
        let state = match (phase, a["state"].as_str()) {
            (Phase::End, _) | (_, Some("cleared")) => "inactive",
            (_, Some("latched")) => "latched",
            _ => "active",
        };
        let inactivation = match a["audio"].as_str() {
            _ if a["state"] == "acknowledged" => "alert-acknowledged",
            Some("silenced") => "alert-acknowledged",
            Some("paused") => "audio-paused",
            _ => "enabled",
        };
        let condition = a["condition"].as_str().unwrap_or("alarm").to_owned();
        let technical = a["kind"] != "physiological";
        let limit_of = if technical {
            None
        } else {
            let (name, low) = condition
                .rsplit_once('_')
                .map(|(n, s)| (n, matches!(s, "low" | "fall")))?;
            Metric::from_name(name).map(|m| (m, low))
        };
        let bed = a["bed"].as_str().or(msg["bed"].as_str());
        let report = AlarmReport {
            control_id: String::new(),
            at_ms: msg["at_ms"].as_i64().unwrap_or(0),
            patient: None,
            location: bed.and_then(|b| location(cfg, b)),
            alarm_id: id,
            condition,
            limit_of,
            priority,
            technical,
            phase,
            state,
            inactivation,
            value: a["value"].as_f64(),
            limit: a["limit"].as_f64(),
            started_ms: a["started_ms"].as_i64().unwrap_or(0),
            device: a["device"].as_str().map(|d| equipment(cfg, d)),
        };
        Some((bed.map(str::to_owned), report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> Config {
        crate::config::load_config_str(
            r#"listen = "127.0.0.1:8080"
data_dir = "data"

[[rooms]]
id = "room1"
name = "Room 1"

[[rooms.recliners]]
id = "A"

[[rooms.recliners.devices]]
id = "ox"
profile = "masimo-rad8"
tcp = "127.0.0.1:4001"

[[rooms.recliners.devices]]
id = "cuff"
profile = "suntech-advantage"
tcp = "127.0.0.1:4002"
"#,
            std::path::Path::new("config/test.toml"),
        )
        .unwrap()
    }

    fn reading(device: &str, metric: &str, value: Option<f64>, received_ms: i64) -> Value {
        let r = json!({"bed": "room1/A", "device": device, "metric": metric,
               "value": value, "invalid": if value.is_none() { json!("no_finger") } else { json!(null) },
               "received_ms": received_ms});
        json!({"type": "readings", "bed": "room1/A", "device": device, "readings": [r]})
    }

    #[test]
    fn one_nibp_measurement_is_one_report_completed_by_the_next_or_by_time() {
        let c = cfg();
        let mut f = Feed::default();
        for m in ["nibp_sys", "nibp_dia", "nibp_mean"] {
            let (done, _) = f.on_message(&c, &reading("cuff", m, Some(120.0), 1_000), 1_000);
            assert!(done.is_empty());
        }
        // The next measurement completes the first.
        let (done, _) = f.on_message(
            &c,
            &reading("cuff", "nibp_sys", Some(130.0), 60_000),
            60_000,
        );
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].obs.len(), 3);
        assert_eq!(done[0].at_ms, 1_000);
        assert_eq!(done[0].devices[0].id, "cuff");
        assert_eq!(done[0].devices[0].kind, "bp");
        assert!(f.due_nibp(&c, 60_500).is_empty(), "still gathering");
        let due = f.due_nibp(&c, 61_000);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].obs[0].value, Ok(130.0));
    }

    #[test]
    fn the_periodic_report_has_recent_numerics_invalid_ones_flagged_and_no_nibp() {
        let c = cfg();
        let mut f = Feed::default();
        f.on_message(&c, &reading("ox", "spo2", None, 10_000), 10_000);
        f.on_message(&c, &reading("ox", "pulse_rate", Some(72.0), 10_000), 10_000);
        f.on_message(
            &c,
            &reading("ox", "perfusion_index", Some(2.0), 1_000),
            1_000,
        );
        f.on_message(&c, &reading("ox", "pleth", Some(2000.0), 10_000), 10_000);
        f.on_message(
            &c,
            &reading("cuff", "nibp_sys", Some(120.0), 10_000),
            10_000,
        );
        let r = f.periodic(&c, 12_000, 5_000);
        assert_eq!(r.len(), 1);
        let got: Vec<(Metric, Result<f64, String>)> = r[0]
            .obs
            .iter()
            .map(|o| (o.metric, o.value.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (Metric::Spo2, Err("no_finger".to_owned())),
                (Metric::PulseRate, Ok(72.0))
            ],
            "stale PI, pleth and NIBP left out"
        );
        assert_eq!(r[0].location.recliner, "A");
        assert!(
            f.periodic(&c, 60_000, 5_000).is_empty(),
            "nothing recent: no report"
        );
    }

    fn alarm(event: &str, priority: &str, state: &str, audio: &str) -> Value {
        json!({"type": "alarm", "event": event, "bed": "room1/A", "at_ms": 5_000,
               "alarm": {"id": 9, "bed": "room1/A", "device": "ox", "condition": "spo2_low",
                         "kind": "physiological", "priority": priority, "state": state,
                         "audio": audio, "value": 85.0, "limit": 90.0, "started_ms": 4_000}})
    }

    #[test]
    fn alarm_events_become_acm_phases_and_states() {
        let c = cfg();
        let mut f = Feed::default();
        let mut step = |m: Value| {
            let (_, a) = f.on_message(&c, &m, 0);
            let (bed, a) = a.expect("an alarm report");
            assert_eq!(bed.as_deref(), Some("room1/A"));
            (a.phase, a.state, a.inactivation, a.limit_of)
        };
        assert_eq!(
            step(alarm("raised", "medium", "active", "sounding")),
            (
                Phase::Start,
                "active",
                "enabled",
                Some((Metric::Spo2, true))
            )
        );
        assert_eq!(
            step(alarm("updated", "high", "active", "sounding")).0,
            Phase::Escalate
        );
        assert_eq!(
            step(alarm("updated", "high", "active", "paused")).2,
            "audio-paused"
        );
        let (phase, state, inactivation, _) =
            step(alarm("acknowledged", "high", "acknowledged", "silenced"));
        assert_eq!(
            (phase, state, inactivation),
            (Phase::Update, "active", "alert-acknowledged")
        );
        assert_eq!(
            step(alarm("updated", "medium", "acknowledged", "silenced")).0,
            Phase::Deescalate
        );
        assert_eq!(
            step(alarm("latched", "high", "latched", "sounding")).1,
            "latched"
        );
        let (phase, state, _, _) = step(alarm("cleared", "high", "cleared", "silenced"));
        assert_eq!((phase, state), (Phase::End, "inactive"));
        let (_, none) = f.on_message(
            &c,
            &json!({"type": "alarm", "event": "audio_paused", "bed": "room1/A"}),
            0,
        );
        assert!(none.is_none());
    }
}
