//! [`BedAlarms`]: the per-bed alarm state machine. Pure; see the module doc of `alarm`.
//!
//! State lives in fixed slots allocated at construction: one per limit rule, and one per
//! (device, technical condition). `observe` only touches these slots and fixed per-metric
//! arrays, so it allocates nothing (events go into the caller's `Vec`).

use super::limits::{Baseline, BedLimits, LimitRule, LimitsError};
use super::policy::Policy;
use super::{
    Alarm, AlarmError, AlarmEvent, AlarmId, AlarmIds, AlarmKind, AlarmState, Audio, Condition,
    EventKind, Now, Priority, TechCondition,
};
use crate::clock::Mono;
use crate::config::{Config, DeviceKind};
use crate::model::{BedIdx, DeviceIdx, Flag, Metric, Observation};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

mod snapshot;
pub use snapshot::{AlarmSnapshot, BedSnapshot, EscalationSnapshot, Restored};

/// How many recent valid values per metric feed [`BedAlarms::recent_median`].
pub const RECENT: usize = 15;

/// One device bound to the bed, as the engine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    pub idx: DeviceIdx,
    pub kind: DeviceKind,
    /// How often it sends when all is well; silence beyond this plus the grace is `no_data`.
    pub expected_period: Duration,
    pub metrics: Vec<Metric>,
}

/// The bed's devices and BP interval, built from the config.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BedSpec {
    pub devices: Vec<DeviceSpec>,
    /// How often a BP result is expected; none for this plus the NIBP grace is `nibp_overdue`.
    pub bp_interval: Duration,
}

impl BedSpec {
    /// The spec of `bed` from a validated config (`None` if the index is out of range).
    pub fn from_config(cfg: &Config, bed: BedIdx) -> Option<BedSpec> {
        let b = cfg.beds.get(usize::from(bed.0))?;
        let devices = b
            .devices
            .iter()
            .filter_map(|d| {
                let binding = cfg.devices.get(usize::from(d.0))?;
                Some(DeviceSpec {
                    idx: *d,
                    kind: binding.profile.kind,
                    expected_period: binding.profile.expected_period,
                    metrics: binding.profile.metrics.clone(),
                })
            })
            .collect();
        Some(BedSpec {
            devices,
            bp_interval: b.bp_interval,
        })
    }
}

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

/// For a watched link, how much later than the source's own deadline the engine's `no_data`
/// backstop fires, so that the source's `device_disconnected` always comes first.
const WATCHED_SLACK: Duration = Duration::from_secs(2);

/// Builds a [`Ctx`] from disjoint fields, so slots can be borrowed mutably beside it.
macro_rules! ctx {
    ($s:ident, $now:expr) => {
        Ctx {
            bed: $s.bed,
            ids: &$s.ids,
            policy: &$s.policy,
            paused: $s.paused_until.is_some(),
            now: $now,
        }
    };
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

/// Starts notifications for a just-raised (or just-risen-in-priority) alarm: a page at level 0
/// now, unless the page limit holds it back (then when the window ends).
fn esc_start(ctx: &Ctx, slot: &mut Slot, out: &mut Vec<AlarmEvent>) {
    let Some(a) = slot.alarm else { return };
    slot.esc = Escalation {
        raised: ctx.now.mono,
        level: 0,
        last: ctx.now.mono,
        next: None,
    };
    if ctx.policy.escalation.of(a.priority).notify {
        esc_page(ctx, slot, a, out);
    }
}

/// A page is due for `a`: sends it (and schedules the next) or, within the page limit of the
/// slot's condition, holds it until the window ends.
fn esc_page(ctx: &Ctx, slot: &mut Slot, a: Alarm, out: &mut Vec<AlarmEvent>) {
    let e = &ctx.policy.escalation;
    let now = ctx.now.mono;
    if let Some((t, p)) = slot.last_page
        && p >= a.priority
    {
        let open = t.saturating_add(e.page_interval);
        if now < open {
            slot.esc.next = Some(open);
            return;
        }
    }
    let pe = e.of(a.priority);
    let elapsed = now.since(slot.esc.raised);
    // Never lower: an escalation restored after a restart keeps the level it had reached.
    slot.esc.level = pe.level_at(elapsed).max(slot.esc.level);
    slot.esc.last = now;
    slot.last_page = Some((now, a.priority));
    out.push(ctx.event(
        EventKind::Notify {
            level: slot.esc.level,
        },
        Some(a),
        None,
    ));
    let raised = slot.esc.raised;
    slot.esc.next = pe.next_after(elapsed).map(|d| raised.saturating_add(d));
}

fn esc_tick(ctx: &Ctx, slot: &mut Slot, out: &mut Vec<AlarmEvent>) {
    let (Some(a), Some(next)) = (slot.alarm, slot.esc.next) else {
        return;
    };
    if ctx.now.mono < next {
        return;
    }
    esc_page(ctx, slot, a, out);
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

/// The condition holds again (or still): re-activates a latched alarm, raises the priority
/// (never lowers it), records the latest value.
fn still_beyond(
    ctx: &Ctx,
    slot: &mut Slot,
    priority: Priority,
    value: f64,
    limit: f64,
    device: DeviceIdx,
    out: &mut Vec<AlarmEvent>,
) {
    let Some(mut a) = slot.alarm else { return };
    let mut changed = false;
    let mut restart_esc = false;
    if a.state == AlarmState::Latched {
        a.state = AlarmState::Active;
        changed = true;
    }
    if priority > a.priority {
        a.priority = priority;
        if a.state == AlarmState::Acknowledged {
            a.state = AlarmState::Active;
        }
        a.audio = if ctx.paused && !ctx.policy.audio.breakthrough.sounds(priority) {
            Audio::Paused
        } else {
            Audio::Sounding
        };
        changed = true;
        restart_esc = true;
    }
    if a.value != Some(value) || a.limit != Some(limit) {
        a.value = Some(value);
        a.limit = Some(limit);
        changed = true;
    }
    a.device = Some(device);
    if changed {
        a.updated_ms = ctx.now.wall_ms;
        slot.alarm = Some(a);
        out.push(ctx.event(EventKind::Updated, Some(a), None));
        if restart_esc {
            esc_start(ctx, slot, out);
        }
    }
}

/// The condition ended: high physiological alarms latch unless acknowledged; others clear.
fn condition_ended(ctx: &Ctx, slot: &mut Slot, out: &mut Vec<AlarmEvent>) {
    slot.pending = None;
    let Some(mut a) = slot.alarm else { return };
    match a.state {
        AlarmState::Latched => {}
        AlarmState::Active
            if a.kind == AlarmKind::Physiological && a.priority == Priority::High =>
        {
            a.state = AlarmState::Latched;
            a.updated_ms = ctx.now.wall_ms;
            slot.alarm = Some(a);
            out.push(ctx.event(EventKind::Latched, Some(a), None));
        }
        _ => clear(ctx, slot, None, out),
    }
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

/// A technical condition holds (`present`) or not, as of now.
fn set_present(
    ctx: &Ctx,
    slot: &mut Slot,
    present: bool,
    delay: Duration,
    priority: Priority,
    out: &mut Vec<AlarmEvent>,
) {
    if !present {
        slot.pending = None;
        if slot.alarm.is_some() {
            clear(ctx, slot, None, out);
        }
        return;
    }
    if slot.alarm.is_some() {
        return;
    }
    let since = *slot.pending.get_or_insert(ctx.now.mono);
    slot.delay = delay;
    if ctx.now.mono.since(since) >= delay {
        let device = slot.device;
        raise(ctx, slot, priority, None, None, device, out);
    }
}

/// The flag-driven technical conditions and their flags.
const FLAG_CONDITIONS: [(TechCondition, Flag); 6] = [
    (TechCondition::SensorOff, Flag::SensorOff),
    (TechCondition::NoFinger, Flag::NoFinger),
    (TechCondition::ProbeUnplugged, Flag::ProbeUnplugged),
    (TechCondition::SensorFault, Flag::SensorFault),
    (TechCondition::LowPerfusion, Flag::LowPerfusion),
    (TechCondition::LowSignal, Flag::LowSignal),
];

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

    /// The device answered without sending a measurement (a polled NIBP module between
    /// measurements): it is alive, so its `no_data` clock restarts and a `no_data` alarm clears.
    pub fn device_heard(&mut self, device: DeviceIdx, now: Now, out: &mut Vec<AlarmEvent>) {
        self.started.get_or_insert(now.mono);
        let Some(p) = self.devs.iter().position(|d| d.idx == device) else {
            return;
        };
        if let Some(d) = self.devs.get_mut(p) {
            d.last_rx = Some(now.mono);
        }
        let ctx = ctx!(self, now);
        if let Some(s) = self
            .tech
            .get_mut(p * TECH_N + TechCondition::NoData.index())
        {
            set_present(&ctx, s, false, Duration::ZERO, Priority::Low, out);
        }
        self.link_alive(p, now, out);
    }

    /// Marks `device`'s link as watched by its source (serial and TCP devices: the source
    /// closes a link that delivers no valid data for the expected period plus the grace and
    /// reports it down). For such a device `no_data` is a backstop that fires
    /// [`WATCHED_SLACK`] after the source should have, and never before its first data.
    pub fn watch_link(&mut self, device: DeviceIdx) {
        if let Some(d) = self.devs.iter_mut().find(|d| d.idx == device) {
            d.watched = true;
        }
    }

    /// Valid data from the device at position `p`: extends its run of valid data and, once
    /// the run is [`Policy::link_stable`] long on an up link, ends a held
    /// `device_disconnected`. Allocation-free.
    fn link_alive(&mut self, p: usize, now: Now, out: &mut Vec<AlarmEvent>) {
        let stable = self.policy.link_stable;
        let Some(d) = self.devs.get_mut(p) else {
            return;
        };
        if !d.connected {
            return;
        }
        let since = *d.alive_since.get_or_insert(now.mono);
        if now.mono.since(since) < stable {
            return;
        }
        let ctx = ctx!(self, now);
        if let Some(s) = self
            .tech
            .get_mut(p * TECH_N + TechCondition::DeviceDisconnected.index())
            && (s.alarm.is_some() || s.pending.is_some())
        {
            set_present(&ctx, s, false, Duration::ZERO, Priority::Low, out);
        }
    }

    /// Judges one observation of this bed: limits (valid values only) and flag-driven technical
    /// conditions. `now` is its receive time. Allocation-free; events go into `out`.
    pub fn observe(&mut self, obs: &Observation, now: Now, out: &mut Vec<AlarmEvent>) {
        if obs.bed != self.bed {
            return;
        }
        self.started.get_or_insert(now.mono);
        let metric = obs.m.metric;
        let dev_pos = self.devs.iter().position(|d| d.idx == obs.device);
        if let Some(d) = dev_pos.and_then(|p| self.devs.get_mut(p)) {
            d.last_rx = Some(now.mono);
        }
        if let Some(p) = dev_pos {
            let ctx = ctx!(self, now);
            if let Some(s) = self
                .tech
                .get_mut(p * TECH_N + TechCondition::NoData.index())
            {
                set_present(&ctx, s, false, Duration::ZERO, Priority::Low, out);
            }
            self.link_alive(p, now, out);
        }
        if metric.is_waveform() {
            return;
        }
        if let Some(v) = obs.m.value.number() {
            self.record_valid(metric, v, now.mono);
            let ctx = ctx!(self, now);
            for (rule, slot) in self.limits.rules.iter().zip(self.phys.iter_mut()) {
                if rule.metric == metric {
                    judge(&ctx, rule, &self.baseline, slot, v, obs.device, out);
                }
            }
        }
        if let Some(p) = dev_pos {
            self.observe_flags(p, obs, now, out);
        }
    }

    fn record_valid(&mut self, metric: Metric, v: f64, at: Mono) {
        let i = metric.index();
        if let Some(l) = self.last_valid.get_mut(i) {
            *l = Some((v, at));
        }
        if let (Some(ring), Some(len), Some(pos)) = (
            self.ring.get_mut(i),
            self.ring_len.get_mut(i),
            self.ring_pos.get_mut(i),
        ) {
            if let Some(cell) = ring.get_mut(usize::from(*pos)) {
                *cell = v;
            }
            *pos = (*pos + 1) % RECENT as u8;
            *len = (*len + 1).min(RECENT as u8);
        }
    }

    fn observe_flags(&mut self, p: usize, obs: &Observation, now: Now, out: &mut Vec<AlarmEvent>) {
        let Some(dev) = self.devs.get_mut(p) else {
            return;
        };
        let flags = obs.m.flags;
        let metric = obs.m.metric;
        let is_bp_result = metric == Metric::NibpSys && obs.m.value.number().is_some();
        if is_bp_result {
            dev.last_bp = Some(now.mono);
        }
        let battery_only = metric == Metric::Battery;
        let clears_battery = battery_only || !dev.has_battery_metric;
        let ctx = ctx!(self, now);
        let tp = &self.policy.technical;
        let Some(slots) = self.tech.get_mut(p * TECH_N..(p + 1) * TECH_N) else {
            return;
        };
        let mut set = |c: TechCondition, present: bool, delay: Option<Duration>| {
            let r = tp.get(c);
            if let Some(s) = slots.get_mut(c.index()) {
                set_present(&ctx, s, present, delay.unwrap_or(r.delay), r.priority, out);
            }
        };
        if !battery_only {
            for (c, f) in FLAG_CONDITIONS {
                set(c, flags.contains(f), None);
            }
            let too_long = flags.contains(Flag::SearchingTooLong);
            let searching = too_long || flags.contains(Flag::Searching);
            set(
                TechCondition::SearchingTooLong,
                searching,
                too_long.then_some(Duration::ZERO),
            );
        }
        if flags.contains(Flag::LowBattery) || clears_battery {
            set(
                TechCondition::LowBattery,
                flags.contains(Flag::LowBattery),
                None,
            );
        }
        if flags.cuff_error().is_some() {
            set(TechCondition::CuffError, true, None);
        } else if is_bp_result {
            set(TechCondition::CuffError, false, None);
        }
        if is_bp_result {
            set(TechCondition::NibpOverdue, false, None);
        }
    }

    /// The device's source throttles it (`flooding`: it sends more readings than its profile's
    /// `max_rate`) or no longer does: raises or clears `device_flooding` for it. Allocation-free.
    pub fn device_flooding(
        &mut self,
        device: DeviceIdx,
        flooding: bool,
        now: Now,
        out: &mut Vec<AlarmEvent>,
    ) {
        self.started.get_or_insert(now.mono);
        let Some(p) = self.devs.iter().position(|d| d.idx == device) else {
            return;
        };
        let ctx = ctx!(self, now);
        let r = ctx.policy.technical.get(TechCondition::DeviceFlooding);
        if let Some(s) = self
            .tech
            .get_mut(p * TECH_N + TechCondition::DeviceFlooding.index())
        {
            set_present(&ctx, s, flooding, r.delay, r.priority, out);
        }
    }

    /// A device's link went up or down. Down raises `device_disconnected` (and replaces
    /// `no_data`). Up (reported at the link's first valid data) restarts the device's no-data
    /// clock, but a raised `device_disconnected` is held: it clears only once valid data has
    /// flowed without a break for [`Policy::link_stable`], so a flapping link is one alarm,
    /// not a raise/clear cycle per flap. A condition still within its delay (never raised)
    /// ends at once.
    pub fn device_link(
        &mut self,
        device: DeviceIdx,
        connected: bool,
        now: Now,
        out: &mut Vec<AlarmEvent>,
    ) {
        self.started.get_or_insert(now.mono);
        let Some(p) = self.devs.iter().position(|d| d.idx == device) else {
            return;
        };
        if let Some(d) = self.devs.get_mut(p) {
            d.connected = connected;
            d.alive_since = None;
            if connected {
                d.last_rx = Some(now.mono);
            }
        }
        let ctx = ctx!(self, now);
        let r = ctx.policy.technical.get(TechCondition::DeviceDisconnected);
        let base = p * TECH_N;
        if let Some(s) = self
            .tech
            .get_mut(base + TechCondition::DeviceDisconnected.index())
        {
            if !connected {
                set_present(&ctx, s, true, r.delay, r.priority, out);
            } else if s.alarm.is_none() {
                set_present(&ctx, s, false, r.delay, r.priority, out);
            }
        }
        if !connected && let Some(s) = self.tech.get_mut(base + TechCondition::NoData.index()) {
            set_present(&ctx, s, false, Duration::ZERO, Priority::Low, out);
        }
        if connected {
            self.link_alive(p, now, out);
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
        let ctx = ctx!(self, now);
        // Physiological onsets whose delay has elapsed, on a reading that is still fresh.
        for (rule, slot) in self.limits.rules.iter().zip(self.phys.iter_mut()) {
            let Some(since) = slot.pending else { continue };
            if slot.alarm.is_some() || now.mono.since(since) < rule.delay {
                continue;
            }
            let i = rule.metric.index();
            let fresh = self.fresh_for.get(i).copied().unwrap_or_default();
            let latest = self.last_valid.get(i).copied().flatten();
            if let (Some((v, at)), Some(limit)) = (latest, rule.effective(&self.baseline))
                && now.mono.since(at) <= fresh
                && rule.beyond(v, limit)
            {
                let device = slot.device;
                raise(&ctx, slot, rule.priority, Some(v), Some(limit), device, out);
            }
        }
        // Per-device timers.
        let tp = self.policy.technical;
        for (p, d) in self.devs.iter_mut().enumerate() {
            let base = p * TECH_N;
            let limit = d.period + self.policy.no_data_grace;
            // A break in the data ends the run that would release a held disconnect.
            if d.last_rx.is_none_or(|last| now.mono.since(last) > limit) {
                d.alive_since = None;
            }
            // A watched link's silence is the source's to report (as device_disconnected);
            // no_data is its backstop, later, and only once the device has been heard.
            let backstop = d.watched.then_some(WATCHED_SLACK);
            if d.connected && !(d.watched && d.last_rx.is_none()) {
                let last = d.last_rx.unwrap_or(started);
                if now.mono.since(last) > limit + backstop.unwrap_or_default() {
                    let r = tp.get(TechCondition::NoData);
                    if let Some(s) = self.tech.get_mut(base + TechCondition::NoData.index()) {
                        set_present(&ctx, s, true, r.delay, r.priority, out);
                    }
                }
            }
            if d.kind == DeviceKind::Bp {
                let last = d.last_bp.unwrap_or(started);
                if now.mono.since(last) > self.bp_interval + self.policy.nibp_grace {
                    let r = tp.get(TechCondition::NibpOverdue);
                    if let Some(s) = self.tech.get_mut(base + TechCondition::NibpOverdue.index()) {
                        set_present(&ctx, s, true, r.delay, r.priority, out);
                    }
                }
            }
        }
        self.judge_baseline_missing(now, true, out);
        let ctx = ctx!(self, now);
        // Technical onsets whose delay has elapsed.
        for s in &mut self.tech {
            if let Some(since) = s.pending
                && s.alarm.is_none()
                && now.mono.since(since) >= s.delay
                && let Condition::Technical(c) = s.condition
            {
                let device = s.device;
                raise(&ctx, s, tp.get(c).priority, None, None, device, out);
            }
        }
        for s in self.phys.iter_mut().chain(self.tech.iter_mut()) {
            esc_tick(&ctx, s, out);
        }
    }

    /// Acknowledges one alarm: an active one is silenced (stays until its condition ends), a
    /// latched one is cleared. Acknowledging twice is not an error. Stops notifications.
    pub fn acknowledge(
        &mut self,
        id: AlarmId,
        actor: &str,
        now: Now,
        out: &mut Vec<AlarmEvent>,
    ) -> Result<(), AlarmError> {
        let actor: Arc<str> = Arc::from(actor);
        let ctx = ctx!(self, now);
        let slot = self
            .phys
            .iter_mut()
            .chain(self.tech.iter_mut())
            .find(|s| s.alarm.is_some_and(|a| a.id == id))
            .ok_or(AlarmError::UnknownAlarm(id))?;
        let Some(mut a) = slot.alarm else {
            return Err(AlarmError::UnknownAlarm(id));
        };
        match a.state {
            AlarmState::Acknowledged | AlarmState::Cleared => Ok(()),
            AlarmState::Active => {
                a.state = AlarmState::Acknowledged;
                a.audio = Audio::Silenced;
                a.updated_ms = now.wall_ms;
                slot.alarm = Some(a);
                slot.esc.next = None;
                out.push(ctx.event(EventKind::Acknowledged, Some(a), Some(&actor)));
                Ok(())
            }
            AlarmState::Latched => {
                a.state = AlarmState::Acknowledged;
                a.audio = Audio::Silenced;
                a.updated_ms = now.wall_ms;
                slot.alarm = Some(a);
                out.push(ctx.event(EventKind::Acknowledged, Some(a), Some(&actor)));
                clear(&ctx, slot, Some(&actor), out);
                Ok(())
            }
        }
    }

    /// Pauses the bed's audio for `for_` (default and maximum from the [`AudioPolicy`](super::AudioPolicy);
    /// longer requests are cut to the maximum). Returns the pause granted. A new high-priority
    /// alarm during the pause sounds anyway. A second pause restarts the countdown.
    pub fn pause_audio(
        &mut self,
        for_: Option<Duration>,
        actor: &str,
        now: Now,
        out: &mut Vec<AlarmEvent>,
    ) -> Result<Duration, AlarmError> {
        let ap = self.policy.audio;
        let d = for_.unwrap_or(ap.default_pause);
        if d.is_zero() {
            return Err(AlarmError::ZeroPause(d));
        }
        let d = d.min(ap.max_pause);
        let until = now.after(d);
        self.paused_until = Some((until.mono, until.wall_ms));
        let actor: Arc<str> = Arc::from(actor);
        let ctx = ctx!(self, now);
        out.push(ctx.event(
            EventKind::AudioPaused {
                until_ms: until.wall_ms,
                for_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            },
            None,
            Some(&actor),
        ));
        for s in self.phys.iter_mut().chain(self.tech.iter_mut()) {
            if let Some(mut a) = s.alarm
                && a.audio == Audio::Sounding
            {
                a.audio = Audio::Paused;
                a.updated_ms = now.wall_ms;
                s.alarm = Some(a);
                out.push(ctx.event(EventKind::Updated, Some(a), Some(&actor)));
            }
        }
        Ok(d)
    }

    /// Ends the audio pause now.
    pub fn cancel_pause(
        &mut self,
        actor: &str,
        now: Now,
        out: &mut Vec<AlarmEvent>,
    ) -> Result<(), AlarmError> {
        if self.paused_until.is_none() {
            return Err(AlarmError::NotPaused);
        }
        self.resume(Some(Arc::from(actor)), now, out);
        Ok(())
    }

    fn resume(&mut self, actor: Option<Arc<str>>, now: Now, out: &mut Vec<AlarmEvent>) {
        self.paused_until = None;
        let ctx = ctx!(self, now);
        out.push(ctx.event(EventKind::AudioResumed, None, actor.as_ref()));
        for s in self.phys.iter_mut().chain(self.tech.iter_mut()) {
            if let Some(mut a) = s.alarm
                && a.audio == Audio::Paused
            {
                a.audio = Audio::Sounding;
                a.updated_ms = now.wall_ms;
                s.alarm = Some(a);
                out.push(ctx.event(EventKind::Updated, Some(a), actor.as_ref()));
            }
        }
    }

    /// Replaces the bed's limit rules. Current alarms whose condition still has a rule are
    /// kept (judged again on the next reading); the others are cleared. Pending onsets restart.
    pub fn set_limits(
        &mut self,
        limits: BedLimits,
        actor: &str,
        now: Now,
        out: &mut Vec<AlarmEvent>,
    ) -> Result<(), LimitsError> {
        limits.validate()?;
        let actor: Arc<str> = Arc::from(actor);
        let mut old = std::mem::take(&mut self.phys);
        let ctx = ctx!(self, now);
        out.push(ctx.event(EventKind::LimitsChanged, None, Some(&actor)));
        let mut phys: Vec<Slot> = Vec::with_capacity(limits.rules.len());
        for r in &limits.rules {
            let c = r.condition();
            let mut slot = Slot::new(c, None);
            if let Some(o) = old.iter_mut().find(|s| s.condition == c) {
                slot.alarm = o.alarm.take();
                slot.esc = o.esc;
                slot.device = o.device;
                slot.last_page = o.last_page;
            }
            phys.push(slot);
        }
        for o in &mut old {
            clear(&ctx, o, Some(&actor), out);
        }
        self.phys = phys;
        self.limits = limits;
        self.judge_baseline_missing(now, false, out);
        Ok(())
    }

    /// Sets the pre-dose baseline that relative limits are measured from. Relative rules that
    /// lose their baseline value become inactive and their alarms clear; pending onsets of
    /// relative rules restart.
    pub fn set_baseline(
        &mut self,
        baseline: Baseline,
        actor: &str,
        now: Now,
        out: &mut Vec<AlarmEvent>,
    ) -> Result<(), AlarmError> {
        for (field, v) in baseline.fields() {
            if let Some(value) = v
                && !(value.is_finite() && value > 0.0)
            {
                return Err(AlarmError::BadBaseline { field, value });
            }
        }
        self.baseline = baseline;
        let actor: Arc<str> = Arc::from(actor);
        let ctx = ctx!(self, now);
        out.push(ctx.event(EventKind::BaselineSet { baseline }, None, Some(&actor)));
        for (rule, slot) in self.limits.rules.iter().zip(self.phys.iter_mut()) {
            if matches!(slot.condition, Condition::Limit { relative: true, .. }) {
                slot.pending = None;
                if rule.effective(&baseline).is_none() {
                    clear(&ctx, slot, Some(&actor), out);
                }
            }
        }
        self.judge_baseline_missing(now, false, out);
        Ok(())
    }

    /// Whether the bed's open session has a dose (set by the hub from the session record).
    /// While dosed, a relative rule without its baseline value raises `baseline_missing` at
    /// the next [`BedAlarms::tick`]; undosed (discharged, admitted afresh) it clears at once.
    pub fn set_dosed(&mut self, dosed: bool, now: Now, out: &mut Vec<AlarmEvent>) {
        self.dosed = dosed;
        self.judge_baseline_missing(now, false, out);
    }

    /// Whether the bed's session is dosed, as last set.
    pub fn dosed(&self) -> bool {
        self.dosed
    }

    /// The relative rules that are inactive for want of a baseline value.
    fn baseline_missing(&self) -> bool {
        self.limits
            .rules
            .iter()
            .any(|r| r.effective(&self.baseline).is_none())
    }

    /// Raises (only if `may_raise`: actions never raise, so their dry run takes no alarm id) or
    /// clears `baseline_missing`.
    fn judge_baseline_missing(&mut self, now: Now, may_raise: bool, out: &mut Vec<AlarmEvent>) {
        let present = self.dosed && self.baseline_missing();
        if present && !may_raise {
            return;
        }
        let r = self.policy.technical.get(TechCondition::BaselineMissing);
        let ctx = ctx!(self, now);
        if let Some(s) = self
            .tech
            .iter_mut()
            .rev()
            .find(|s| s.condition == Condition::Technical(TechCondition::BaselineMissing))
        {
            set_present(&ctx, s, present, r.delay, r.priority, out);
        }
    }

    /// Median of the last [`RECENT`] valid values of `metric` on this bed (for "capture the
    /// baseline from recent readings"); `None` before the first valid value.
    pub fn recent_median(&self, metric: Metric) -> Option<f64> {
        let i = metric.index();
        let len = usize::from(*self.ring_len.get(i)?);
        let ring = self.ring.get(i)?;
        let mut v = *ring;
        let vals = v.get_mut(..len)?;
        if vals.is_empty() {
            return None;
        }
        vals.sort_by(f64::total_cmp);
        let mid = len / 2;
        if len % 2 == 1 {
            vals.get(mid).copied()
        } else {
            Some((vals.get(mid - 1)? + vals.get(mid)?) / 2.0)
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

/// Judges one valid value against one rule.
fn judge(
    ctx: &Ctx,
    rule: &LimitRule,
    baseline: &Baseline,
    slot: &mut Slot,
    v: f64,
    device: DeviceIdx,
    out: &mut Vec<AlarmEvent>,
) {
    let Some(limit) = rule.effective(baseline) else {
        slot.pending = None;
        return;
    };
    if let Some(sp) = rule.severe_priority(v) {
        if slot.alarm.is_some() {
            still_beyond(ctx, slot, sp, v, limit, device, out);
        } else {
            raise(ctx, slot, sp, Some(v), Some(limit), Some(device), out);
        }
    } else if rule.beyond(v, limit) {
        if slot.alarm.is_some() {
            still_beyond(ctx, slot, rule.priority, v, limit, device, out);
        } else {
            slot.device = Some(device);
            let since = *slot.pending.get_or_insert(ctx.now.mono);
            if ctx.now.mono.since(since) >= rule.delay {
                raise(
                    ctx,
                    slot,
                    rule.priority,
                    Some(v),
                    Some(limit),
                    Some(device),
                    out,
                );
            }
        }
    } else {
        slot.pending = None;
        let Some(a) = slot.alarm else { return };
        if rule.clears(v, limit) {
            condition_ended(ctx, slot, out);
        } else if a.state != AlarmState::Latched {
            // Inside the limit but not by the hysteresis: the alarm stays; show the value.
            still_beyond(ctx, slot, a.priority, v, limit, device, out);
        }
    }
}
