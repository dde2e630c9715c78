//! The alarm engine: per-bed physiological limits and device (technical) conditions, with
//! condition delays, hysteresis, severe bands, latching, acknowledge, time-limited audio pause,
//! escalation and a self-watching dashboard watchdog.
//!
//! The engine is pure: no I/O, no clock reads, no locks, no tokio. Time comes in as a [`Now`].
//! It runs inline on the path that decoded each observation, so [`BedAlarms::observe`] writes
//! its events into a caller-provided `Vec` and allocates nothing per reading. A runner calls
//! [`BedAlarms::tick`] every ~100 ms for the timers (delays that elapse, stale data, NIBP
//! overdue, audio-pause expiry, re-notify and escalation).
//!
//! The rules are documented for people in `docs/alarms.md`.
//!
//! # Layout
//! The engine's inputs are plain data in [`crate::model`] (re-exported here): limit rules, the
//! baseline and the preset format ([`parse_limits`]); technical-condition priorities and
//! delays, escalation, audio pause ([`Policy`]); the bed's devices ([`BedSpec`]); and the
//! vocabulary of alarms ([`Condition`], [`Priority`]). It never sees the config.
//! - `engine`: [`BedAlarms`], the per-bed state machine; one file per concern in `engine/`
//!   (physiological judging, technical conditions, escalation, operator actions, snapshot).
//! - `watchdog`: [`Watchdog`], the "no dashboard alive" alarm, and [`Dashboards`], which
//!   pages can sound (their application heartbeats).
//! - `targets`: [`TargetAlarms`], the `notify_failed` alarm of each notification target.

mod engine;
mod targets;
mod watchdog;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod restore_tests;

pub use engine::{AlarmSnapshot, BedAlarms, BedSnapshot, RuleStatus};
pub use engine::{EscalationSnapshot, Restored};
// The engine's vocabulary and inputs live in `model` (config and alarm both use them without
// knowing each other); every stage names them through `alarm` as before.
pub use crate::model::{
    AlarmKind, Condition, Direction, Priority, TechCondition, fmt_duration, validate_rule,
};
pub use crate::model::{
    AudioPolicy, Breakthrough, EscalationPolicy, Policy, PriorityEscalation, TechRule,
    TechnicalPolicy,
};
pub use crate::model::{
    Baseline, BedLimits, LimitRule, LimitsError, MAX_DELAY, Severe, Threshold, parse_limits,
    parse_limits_json,
};
pub use crate::model::{BedSpec, DeviceSpec};
pub use targets::TargetAlarms;
pub use watchdog::{DashboardCounts, Dashboards, PageBeat, Watchdog};

use crate::model::{BedIdx, DeviceIdx, Mono};
use serde::{Serialize, Serializer};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The time of a call, passed in because the engine never reads a clock: monotonic time for
/// every timer, wall time only for the timestamps people read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time; all delays and timeouts are measured on it.
    pub mono: Mono,
    /// Wall-clock milliseconds since the Unix epoch, for `started_ms`/`updated_ms`.
    pub wall_ms: i64,
}

impl Now {
    /// `self` moved forward by `d` on both clocks; convenient for runners and tests.
    pub fn after(self, d: Duration) -> Now {
        Now {
            mono: self.mono.saturating_add(d),
            wall_ms: self
                .wall_ms
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

/// Identifies one alarm from raise to clear, so that an acknowledge names exactly it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AlarmId(pub u64);

impl fmt::Display for AlarmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Hands out alarm ids shared by every bed and the watchdog, so ids are unique in the process.
/// Seeded by the caller (wall ms at start * 1000) so ids do not repeat across restarts unless
/// more than 1000 alarms per millisecond of uptime were raised. Ids stay below 2^53 for
/// centuries, so JavaScript dashboards read them exactly. Cloning shares the counter; taking an
/// id is one atomic add (no lock, no allocation).
#[derive(Debug, Clone)]
pub struct AlarmIds {
    next: Arc<AtomicU64>,
}

impl AlarmIds {
    /// A generator whose first id is `seed`.
    pub fn new(seed: u64) -> AlarmIds {
        AlarmIds {
            next: Arc::new(AtomicU64::new(seed)),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> AlarmId {
        AlarmId(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Makes every later id larger than `id` (an alarm restored from the store keeps its id, so
    /// new alarms must not collide with it).
    pub fn advance_past(&self, id: AlarmId) {
        self.next
            .fetch_max(id.0.saturating_add(1), Ordering::Relaxed);
    }
}

/// Where an alarm is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    /// The condition holds and nobody has acknowledged it.
    Active,
    /// The condition holds; a nurse has acknowledged it (audio silenced, still visible).
    Acknowledged,
    /// A high-priority physiological condition ended unacknowledged: it stays until
    /// acknowledged so that a nurse sees that it happened.
    Latched,
    /// Gone. Only ever seen in a `cleared` event.
    Cleared,
}

/// What the alarm's sound should do at the dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audio {
    /// Sound it.
    Sounding,
    /// The bed's audio is paused (time-limited); it sounds again when the pause ends.
    Paused,
    /// Acknowledged: silent for good.
    Silenced,
}

fn ser_bed<S: Serializer>(b: &Option<BedIdx>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_some(&b.0),
        None => s.serialize_none(),
    }
}

fn ser_device<S: Serializer>(d: &Option<DeviceIdx>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.0),
        None => s.serialize_none(),
    }
}

fn ser_actor<S: Serializer>(a: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => s.serialize_some(&**a),
        None => s.serialize_none(),
    }
}

/// One alarm as the dashboard, the store and the notifier see it. `Copy`: raising one does not
/// allocate. `bed`/`device` are topology indices; the hub maps them to ids.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Alarm {
    pub id: AlarmId,
    /// `None` only for system alarms (`no_dashboard`).
    #[serde(serialize_with = "ser_bed")]
    pub bed: Option<BedIdx>,
    /// The device concerned (technical alarms; the device of the last reading for
    /// physiological ones).
    #[serde(serialize_with = "ser_device")]
    pub device: Option<DeviceIdx>,
    pub condition: Condition,
    pub kind: AlarmKind,
    pub priority: Priority,
    pub state: AlarmState,
    pub audio: Audio,
    /// The value that crossed the limit (latest while active, worst is not tracked).
    pub value: Option<f64>,
    /// The threshold in force when it was judged (effective value for relative limits).
    pub limit: Option<f64>,
    pub started_ms: i64,
    pub updated_ms: i64,
    /// `notify_failed` only: the index of the failing target in `Config::notify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<u8>,
}

/// What happened; serialized flat into [`AlarmEvent`] as `"event": "<name>"` plus fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A new alarm.
    Raised,
    /// Priority, value, state (latched back to active) or audio changed.
    Updated,
    /// A nurse acknowledged it.
    Acknowledged,
    /// A high-priority physiological condition ended unacknowledged; the alarm stays.
    Latched,
    /// The alarm is gone.
    Cleared,
    /// The bed's audio was paused until `until_ms` (wall) for `for_ms`.
    AudioPaused { until_ms: i64, for_ms: u64 },
    /// The bed's audio pause ended (expired or cancelled).
    AudioResumed,
    /// The bed's limit rules were replaced.
    LimitsChanged,
    /// The bed's baseline was set.
    BaselineSet { baseline: Baseline },
    /// The notifier should page staff for this alarm, at this escalation level (0 first).
    Notify { level: u8 },
}

/// One output of the engine. `alarm` is the alarm after the change (absent for bed-level
/// events such as audio pause); `actor` names who did it for API actions (audit trail).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmEvent {
    #[serde(flatten)]
    pub kind: EventKind,
    #[serde(serialize_with = "ser_bed")]
    pub bed: Option<BedIdx>,
    pub alarm: Option<Alarm>,
    #[serde(serialize_with = "ser_actor")]
    pub actor: Option<Arc<str>>,
    /// Wall-clock time of the event, ms since the Unix epoch.
    pub at_ms: i64,
}

/// Errors of the API actions (acknowledge, pause, baseline). Messages quote the bad value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlarmError {
    /// No current alarm of this bed has that id (cleared already, or another bed's).
    #[error("no current alarm with id {0} on this bed")]
    UnknownAlarm(AlarmId),
    /// A zero-length pause was asked for.
    #[error("expected an audio pause longer than zero, found {0:?}")]
    ZeroPause(Duration),
    /// Cancel was asked for while no pause is running.
    #[error("expected a running audio pause to cancel, found none")]
    NotPaused,
    /// A baseline value that is not a plausible positive number.
    #[error("expected baseline {field} to be a finite number above zero, found {value}")]
    BadBaseline { field: &'static str, value: f64 },
}
