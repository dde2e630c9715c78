//! [`BedAlarms`]: the per-bed alarm state machine. Pure; see the module doc of `alarm`.
//!
//! State lives in fixed slots allocated at construction: one per limit rule, and one per
//! (device, technical condition). `observe` only touches these slots and fixed per-metric
//! arrays, so it allocates nothing (events go into the caller's `Vec`).
//!
//! This file holds the state, its construction, the two entry points ([`BedAlarms::observe`],
//! [`BedAlarms::tick`]) and the slot life cycle shared by every concern (raise, clear); each
//! concern has a file of its own, adding methods to [`BedAlarms`]:
//! - `physiological`: judging valid values against the limit rules (delay, severe band,
//!   hysteresis, latching) and the recent values behind the baseline capture;
//! - `technical`: device conditions (flags, link up/down, no data, NIBP overdue,
//!   `baseline_missing`);
//! - `escalation`: notifications of a raised alarm, re-notify, escalation and the page limit;
//! - `actions`: what the operator does (acknowledge, audio pause, limits, baseline, dose);
//! - `snapshot`: the saved state that survives a restart.

use super::{
    Alarm, AlarmEvent, AlarmIds, AlarmState, Audio, Condition, EventKind, Now, Priority,
    TechCondition,
};
use crate::model::{
    Baseline, BedIdx, BedLimits, BedSpec, DeviceIdx, DeviceKind, LimitRule, LimitsError, Metric,
    Mono, Observation, Policy,
};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Builds a [`Ctx`] from disjoint fields, so slots can be borrowed mutably beside it.
macro_rules! ctx {
    ($s:ident, $now:expr) => {
        $crate::alarm::engine::Ctx {
            bed: $s.bed,
            ids: &$s.ids,
            policy: &$s.policy,
            paused: $s.paused_until.is_some(),
            now: $now,
        }
    };
}

mod actions;
mod escalation;
mod physiological;
mod snapshot;
mod technical;

use escalation::{esc_start, esc_tick};
pub use snapshot::{AlarmSnapshot, BedSnapshot, EscalationSnapshot, Restored};

/// How many recent valid values per metric feed [`BedAlarms::recent_median`].
pub const RECENT: usize = 15;

/// A limit rule with what is in force now, for the limits API (`active: false` with a note
/// when a relative rule has no baseline).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleStatus {
    pub rule: LimitRule,
    pub condition: Condition,
    /// The threshold in force (baseline + offset for relative rules).
    pub effective: Option<f64>,
    pub active: bool,
    pub note: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Escalation {
    raised: Mono,
    level: u8,
    last: Mono,
    /// When the next notify is due; `None`: no more notifications.
    next: Option<Mono>,
}

#[derive(Debug, Clone)]
struct Slot {
    condition: Condition,
    device: Option<DeviceIdx>,
    /// Onset of a condition that holds but has not alarmed yet (its delay is running).
    pending: Option<Mono>,
    /// Delay in force for a pending technical condition.
    delay: Duration,
    alarm: Option<Alarm>,
    esc: Escalation,
    /// The last page of this condition and its priority: the page limit
    /// ([`EscalationPolicy::page_interval`](super::EscalationPolicy)) outlives each alarm, so
    /// a condition that flaps does not page every cycle.
    last_page: Option<(Mono, Priority)>,
}

impl Slot {
    fn new(condition: Condition, device: Option<DeviceIdx>) -> Slot {
        Slot {
            condition,
            device,
            pending: None,
            delay: Duration::ZERO,
            alarm: None,
            esc: Escalation::default(),
            last_page: None,
        }
    }
}

#[derive(Debug, Clone)]
struct DevState {
    idx: DeviceIdx,
    kind: DeviceKind,
    period: Duration,
    has_battery_metric: bool,
    connected: bool,
    last_rx: Option<Mono>,
    last_bp: Option<Mono>,
    /// Its source closes the link itself after the expected period plus the grace without
    /// valid data ([`BedAlarms::watch_link`]), so silence shows as `device_disconnected`;
    /// `no_data` is then only a backstop.
    watched: bool,
    /// Start of the current unbroken run of valid data on an up link: `device_disconnected`
    /// clears only once this run is [`Policy::link_stable`] long.
    alive_since: Option<Mono>,
}

/// What every slot helper needs besides the slot.
struct Ctx<'a> {
    bed: BedIdx,
    ids: &'a AlarmIds,
    policy: &'a Policy,
    paused: bool,
    now: Now,
}

impl Ctx<'_> {
    fn event(&self, kind: EventKind, alarm: Option<Alarm>, actor: Option<&Arc<str>>) -> AlarmEvent {
        AlarmEvent {
            kind,
            bed: Some(self.bed),
            alarm,
            actor: actor.cloned(),
            at_ms: self.now.wall_ms,
        }
    }
}

fn raise(
    ctx: &Ctx,
    slot: &mut Slot,
    priority: Priority,
    value: Option<f64>,
    limit: Option<f64>,
    device: Option<DeviceIdx>,
    out: &mut Vec<AlarmEvent>,
) {
    let audio = if ctx.paused && !ctx.policy.audio.breakthrough.sounds(priority) {
        Audio::Paused
    } else {
        Audio::Sounding
    };
    let alarm = Alarm {
        id: ctx.ids.next_id(),
        bed: Some(ctx.bed),
        device,
        condition: slot.condition,
        kind: slot.condition.kind(),
        priority,
        state: AlarmState::Active,
        audio,
        value,
        limit,
        started_ms: ctx.now.wall_ms,
        updated_ms: ctx.now.wall_ms,
        target: None,
    };
    slot.alarm = Some(alarm);
    slot.pending = None;
    out.push(ctx.event(EventKind::Raised, Some(alarm), None));
    esc_start(ctx, slot, out);
}

fn clear(ctx: &Ctx, slot: &mut Slot, actor: Option<&Arc<str>>, out: &mut Vec<AlarmEvent>) {
    slot.pending = None;
    if let Some(mut a) = slot.alarm.take() {
        a.state = AlarmState::Cleared;
        a.updated_ms = ctx.now.wall_ms;
        slot.esc.next = None;
        out.push(ctx.event(EventKind::Cleared, Some(a), actor));
    }
}

const TECH_N: usize = TechCondition::PER_DEVICE.len();

/// The alarm state of one bed. See `docs/alarms.md` for the rules it implements.
#[derive(Debug, Clone)]
pub struct BedAlarms {
    bed: BedIdx,
    ids: AlarmIds,
    policy: Policy,
    limits: BedLimits,
    baseline: Baseline,
    bp_interval: Duration,
    /// One per limit rule, same order.
    phys: Vec<Slot>,
    /// `TECH_N` per device, device-major, then the bed-level conditions (`baseline_missing`).
    tech: Vec<Slot>,
    devs: Vec<DevState>,
    last_valid: [Option<(f64, Mono)>; Metric::COUNT],
    fresh_for: [Duration; Metric::COUNT],
    ring: [[f64; RECENT]; Metric::COUNT],
    ring_len: [u8; Metric::COUNT],
    ring_pos: [u8; Metric::COUNT],
    paused_until: Option<(Mono, i64)>,
    /// The first time the engine was called: the no-data and NIBP clocks start here.
    started: Option<Mono>,
    /// The bed's session has a dose: a relative rule without its baseline is then an alarm
    /// condition (`baseline_missing`), not just a note.
    dosed: bool,
}

impl BedAlarms {
    /// A bed's engine with the default [`Policy`]. Ids come from the shared `ids`. Fails if
    /// `limits` does not validate.
    pub fn new(
        bed: BedIdx,
        spec: BedSpec,
        limits: BedLimits,
        ids: &AlarmIds,
    ) -> Result<BedAlarms, LimitsError> {
        BedAlarms::with_policy(bed, spec, limits, ids, Policy::default())
    }

    /// As [`BedAlarms::new`] with an explicit policy.
    pub fn with_policy(
        bed: BedIdx,
        spec: BedSpec,
        limits: BedLimits,
        ids: &AlarmIds,
        policy: Policy,
    ) -> Result<BedAlarms, LimitsError> {
        limits.validate()?;
        let phys = limits
            .rules
            .iter()
            .map(|r| Slot::new(r.condition(), None))
            .collect();
        let mut tech = Vec::with_capacity(spec.devices.len() * TECH_N);
        let mut devs = Vec::with_capacity(spec.devices.len());
        let mut fresh_for = [Duration::ZERO; Metric::COUNT];
        for d in &spec.devices {
            for c in TechCondition::PER_DEVICE {
                tech.push(Slot::new(Condition::Technical(c), Some(d.idx)));
            }
            devs.push(DevState {
                idx: d.idx,
                kind: d.kind,
                period: d.expected_period,
                has_battery_metric: d.metrics.contains(&Metric::Battery),
                connected: true,
                last_rx: None,
                last_bp: None,
                watched: false,
                alive_since: None,
            });
            for m in &d.metrics {
                let mut period = d.expected_period;
                if matches!(
                    m,
                    Metric::NibpSys | Metric::NibpDia | Metric::NibpMean | Metric::NibpPulse
                ) {
                    period = period.max(spec.bp_interval) + policy.nibp_grace;
                } else {
                    period += policy.no_data_grace;
                }
                if let Some(f) = fresh_for.get_mut(m.index()) {
                    *f = (*f).max(period);
                }
            }
        }
        for f in &mut fresh_for {
            if f.is_zero() {
                *f = Duration::from_secs(1) + policy.no_data_grace;
            }
        }
        // Bed-level technical conditions follow the per-device slots.
        tech.push(Slot::new(
            Condition::Technical(TechCondition::BaselineMissing),
            None,
        ));
        Ok(BedAlarms {
            bed,
            ids: ids.clone(),
            policy,
            limits,
            baseline: Baseline::default(),
            bp_interval: spec.bp_interval,
            phys,
            tech,
            devs,
            last_valid: [None; Metric::COUNT],
            fresh_for,
            ring: [[0.0; RECENT]; Metric::COUNT],
            ring_len: [0; Metric::COUNT],
            ring_pos: [0; Metric::COUNT],
            paused_until: None,
            started: None,
            dosed: false,
        })
    }

    /// Judges one observation of this bed: limits (valid values only) and flag-driven technical
    /// conditions. `now` is its receive time. Allocation-free; events go into `out`.
    pub fn observe(&mut self, obs: &Observation, now: Now, out: &mut Vec<AlarmEvent>) {
        if obs.bed != self.bed {
            return;
        }
        self.started.get_or_insert(now.mono);
        let dev_pos = self.devs.iter().position(|d| d.idx == obs.device);
        if let Some(p) = dev_pos {
            self.heard(p, now, out);
        }
        if obs.m.metric.is_waveform() {
            return;
        }
        if let Some(v) = obs.m.value.number() {
            self.judge_limits(obs.m.metric, v, obs.device, now, out);
        }
        if let Some(p) = dev_pos {
            self.observe_flags(p, obs, now, out);
        }
    }

    /// The timers: condition delays that elapse, `no_data`, `nibp_overdue`, audio-pause expiry,
    /// re-notify and escalation. Call every ~100 ms.
    pub fn tick(&mut self, now: Now, out: &mut Vec<AlarmEvent>) {
        let started = *self.started.get_or_insert(now.mono);
        if let Some((until, _)) = self.paused_until
            && now.mono >= until
        {
            self.resume(None, now, out);
        }
        self.physiological_onsets(now, out);
        self.device_timers(started, now, out);
        self.judge_baseline_missing(now, true, out);
        self.technical_onsets(now, out);
        let ctx = ctx!(self, now);
        for s in self.phys.iter_mut().chain(self.tech.iter_mut()) {
            esc_tick(&ctx, s, out);
        }
    }

    /// The current alarms (active, acknowledged, latched), for snapshots.
    pub fn alarms(&self) -> impl Iterator<Item = &Alarm> + '_ {
        self.phys
            .iter()
            .chain(self.tech.iter())
            .filter_map(|s| s.alarm.as_ref())
    }

    /// Until when (monotonic) the bed's audio is paused, if it is.
    pub fn audio_paused_until(&self) -> Option<Mono> {
        self.paused_until.map(|(m, _)| m)
    }

    /// The rules with what is in force now; relative rules without a baseline say so.
    pub fn limits(&self) -> Vec<RuleStatus> {
        self.limits
            .rules
            .iter()
            .map(|r| {
                let effective = r.effective(&self.baseline);
                RuleStatus {
                    rule: *r,
                    condition: r.condition(),
                    effective,
                    active: effective.is_some(),
                    note: match (effective.is_none(), self.dosed) {
                        (false, _) => None,
                        (true, false) => Some("inactive: relative limit without a baseline value"),
                        (true, true) => Some(
                            "inactive: relative limit without a baseline value; the session is dosed, so baseline_missing is raised",
                        ),
                    },
                }
            })
            .collect()
    }

    /// The rules as configured.
    pub fn limit_rules(&self) -> &BedLimits {
        &self.limits
    }

    /// The current baseline.
    pub fn baseline(&self) -> Baseline {
        self.baseline
    }

    /// The bed this engine watches.
    pub fn bed(&self) -> BedIdx {
        self.bed
    }
}
