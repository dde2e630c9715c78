//! What a bed's alarm state looks like on disk: [`BedSnapshot`], plain serde data produced by
//! [`BedAlarms::snapshot`] and read back by [`BedAlarms::restore`] after a restart.
//!
//! Monotonic times mean nothing to another process, so every deadline is saved as wall-clock
//! ms and turned back into monotonic time against the `Now` of the restore. What is not saved
//! is judged again: pending onsets restart, device clocks restart at the first call, and a
//! restored alarm stays as it was until its condition is judged (a reading, a link event, a
//! timer), so a latched alarm stays latched until acknowledged.

use super::{BedAlarms, Escalation, Slot};
use crate::alarm::{Alarm, AlarmId, AlarmState, Audio, Now, Priority};
use crate::model::DeviceIdx;
use crate::model::Mono;
use crate::model::{Baseline, BedLimits, LimitsError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Everything one bed's alarm system knows that must survive a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BedSnapshot {
    /// Wall-clock ms when it was taken.
    pub taken_ms: i64,
    /// The limit rules in force (the preset, or what was set at run time).
    pub limits: BedLimits,
    pub baseline: Baseline,
    /// The session has a dose (the hub sets it again from the session record at start).
    #[serde(default)]
    pub dosed: bool,
    /// When the bed's audio pause ends (wall ms), if one runs.
    pub audio_paused_until_ms: Option<i64>,
    /// The current alarms: active, acknowledged, latched.
    pub alarms: Vec<AlarmSnapshot>,
}

/// One current alarm of the bed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmSnapshot {
    pub id: u64,
    /// The wire name (`spo2_low`, `nibp_sys_rise`, `no_data`, `baseline_missing`).
    pub condition: String,
    /// Topology index of the device (the hub maps it to and from device ids).
    pub device: Option<u16>,
    pub priority: Priority,
    pub state: AlarmState,
    pub audio: Audio,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub escalation: EscalationSnapshot,
}

/// Notification progress of one alarm, in wall-clock ms. Kept in one struct (mirroring the
/// engine's `Escalation`) so that a change of the escalation policy changes one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EscalationSnapshot {
    /// When notification started (raise, or rise to a notifying priority).
    pub raised_ms: i64,
    /// The notification level reached (0 first).
    pub level: u8,
    /// When the last notification went out.
    pub last_ms: i64,
    /// When the next one is due; `None`: no more (acknowledged, or a once-only priority).
    pub next_ms: Option<i64>,
}

impl EscalationSnapshot {
    fn from_engine(e: &Escalation, now: Now) -> EscalationSnapshot {
        EscalationSnapshot {
            raised_ms: to_wall(e.raised, now),
            level: e.level,
            last_ms: to_wall(e.last, now),
            next_ms: e.next.map(|m| to_wall(m, now)),
        }
    }

    fn to_engine(self, now: Now) -> Escalation {
        Escalation {
            raised: to_mono(self.raised_ms, now),
            level: self.level,
            last: to_mono(self.last_ms, now),
            next: self.next_ms.map(|w| to_mono(w, now)),
        }
    }
}

/// What [`BedAlarms::restore`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    /// Alarms put back.
    pub alarms: usize,
    /// Saved alarms that no longer have a place (their rule or device is gone from the config),
    /// by condition name.
    pub dropped: Vec<String>,
    /// The audio pause was put back (it had not expired).
    pub paused: bool,
}

/// A monotonic instant as wall ms, against `now`.
fn to_wall(m: Mono, now: Now) -> i64 {
    if m >= now.mono {
        now.wall_ms
            .saturating_add(i64::try_from(m.since(now.mono).as_millis()).unwrap_or(i64::MAX))
    } else {
        now.wall_ms
            .saturating_sub(i64::try_from(now.mono.since(m).as_millis()).unwrap_or(i64::MAX))
    }
}

/// Wall ms as a monotonic instant, against `now`. Instants before this process's clock began
/// are clamped to its start.
fn to_mono(w: i64, now: Now) -> Mono {
    let delta = w.saturating_sub(now.wall_ms);
    let d = Duration::from_millis(delta.unsigned_abs());
    if delta >= 0 {
        now.mono.saturating_add(d)
    } else {
        Mono(
            now.mono
                .0
                .saturating_sub(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

impl BedAlarms {
    /// The bed's durable state as of `now` (see [`BedSnapshot`]).
    pub fn snapshot(&self, now: Now) -> BedSnapshot {
        let alarms = self
            .phys
            .iter()
            .chain(self.tech.iter())
            .filter_map(|s| {
                let a = s.alarm?;
                Some(AlarmSnapshot {
                    id: a.id.0,
                    condition: a.condition.to_string(),
                    device: a.device.map(|d| d.0),
                    priority: a.priority,
                    state: a.state,
                    audio: a.audio,
                    value: a.value,
                    limit: a.limit,
                    started_ms: a.started_ms,
                    updated_ms: a.updated_ms,
                    escalation: EscalationSnapshot::from_engine(&s.esc, now),
                })
            })
            .collect();
        BedSnapshot {
            taken_ms: now.wall_ms,
            limits: self.limits.clone(),
            baseline: self.baseline,
            dosed: self.dosed,
            audio_paused_until_ms: self.paused_until.map(|(_, w)| w),
            alarms,
        }
    }

    /// Puts a saved state back into a freshly built engine, before its first reading: limits,
    /// baseline, dosed, the audio pause if it has not expired (with its remaining time), and
    /// every saved alarm with its id, times, priority, state and escalation progress. Later
    /// alarm ids are larger than every restored id. Emits nothing: the restored alarms are
    /// already in the record. Fails (changing nothing) if the saved limits do not validate.
    pub fn restore(&mut self, snap: &BedSnapshot, now: Now) -> Result<Restored, LimitsError> {
        snap.limits.validate()?;
        self.limits = snap.limits.clone();
        self.phys = self
            .limits
            .rules
            .iter()
            .map(|r| Slot::new(r.condition(), None))
            .collect();
        for s in &mut self.tech {
            s.alarm = None;
            s.pending = None;
            s.esc = Escalation::default();
        }
        let plausible = |v: Option<f64>| v.filter(|x| x.is_finite() && *x > 0.0);
        self.baseline = Baseline {
            sys: plausible(snap.baseline.sys),
            dia: plausible(snap.baseline.dia),
            pulse_rate: plausible(snap.baseline.pulse_rate),
            spo2: plausible(snap.baseline.spo2),
        };
        self.dosed = snap.dosed;
        let mut done = Restored::default();
        self.paused_until = snap
            .audio_paused_until_ms
            .filter(|until| *until > now.wall_ms)
            .map(|until| (to_mono(until, now), until));
        done.paused = self.paused_until.is_some();
        for a in &snap.alarms {
            let device = a.device.map(DeviceIdx);
            let slot = self
                .phys
                .iter_mut()
                .find(|s| s.condition.to_string() == a.condition)
                .or_else(|| {
                    self.tech
                        .iter_mut()
                        .find(|s| s.device == device && s.condition.to_string() == a.condition)
                });
            let Some(slot) = slot else {
                done.dropped.push(a.condition.clone());
                continue;
            };
            if a.state == AlarmState::Cleared {
                continue;
            }
            // A pause that ended while the daemon was down no longer holds the sound.
            let audio = match (a.state, a.audio) {
                (AlarmState::Acknowledged, _) => Audio::Silenced,
                (_, Audio::Paused) if !done.paused => Audio::Sounding,
                (_, audio) => audio,
            };
            slot.alarm = Some(Alarm {
                id: AlarmId(a.id),
                bed: Some(self.bed),
                device: device.or(slot.device),
                condition: slot.condition,
                kind: slot.condition.kind(),
                priority: a.priority,
                state: a.state,
                audio,
                value: a.value,
                limit: a.limit,
                started_ms: a.started_ms,
                updated_ms: a.updated_ms,
                target: None,
            });
            slot.device = device.or(slot.device);
            slot.esc = a.escalation.to_engine(now);
            if a.state == AlarmState::Acknowledged {
                slot.esc.next = None;
            }
            self.ids.advance_past(AlarmId(a.id));
            done.alarms += 1;
        }
        Ok(done)
    }
}
