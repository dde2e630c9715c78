//! Technical conditions: what the device's flags say (sensor off, no finger, searching, low
//! perfusion, low battery, cuff error), its link going down and up (`device_disconnected`,
//! held until the link is stable), its silence (`no_data`, a backstop for a watched link), an
//! overdue NIBP result, a flooding device (`device_flooding`, judged by its source's
//! throttle), and the bed-level `baseline_missing`.

use super::{BedAlarms, Ctx, Slot, TECH_N, clear, raise};
use crate::alarm::{AlarmEvent, Condition, Now, Priority, TechCondition};
use crate::model::{DeviceIdx, DeviceKind, Flag, Metric, Mono, Observation};
use std::time::Duration;

/// For a watched link, how much later than the source's own deadline the engine's `no_data`
/// backstop fires, so that the source's `device_disconnected` always comes first.
const WATCHED_SLACK: Duration = Duration::from_secs(2);

/// The flag-driven technical conditions and their flags.
const FLAG_CONDITIONS: [(TechCondition, Flag); 6] = [
    (TechCondition::SensorOff, Flag::SensorOff),
    (TechCondition::NoFinger, Flag::NoFinger),
    (TechCondition::ProbeUnplugged, Flag::ProbeUnplugged),
    (TechCondition::SensorFault, Flag::SensorFault),
    (TechCondition::LowPerfusion, Flag::LowPerfusion),
    (TechCondition::LowSignal, Flag::LowSignal),
];

/// A technical condition holds (`present`) or not, as of now.
pub(super) fn set_present(
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

impl BedAlarms {
    /// The device answered without sending a measurement (a polled NIBP module between
    /// measurements): it is alive, so its `no_data` clock restarts and a `no_data` alarm clears.
    pub fn device_heard(&mut self, device: DeviceIdx, now: Now, out: &mut Vec<AlarmEvent>) {
        self.started.get_or_insert(now.mono);
        let Some(p) = self.devs.iter().position(|d| d.idx == device) else {
            return;
        };
        self.heard(p, now, out);
    }

    /// The device at position `p` sent something now: its `no_data` clock restarts, a
    /// `no_data` alarm clears, and its run of valid data goes on.
    pub(super) fn heard(&mut self, p: usize, now: Now, out: &mut Vec<AlarmEvent>) {
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

    pub(super) fn observe_flags(
        &mut self,
        p: usize,
        obs: &Observation,
        now: Now,
        out: &mut Vec<AlarmEvent>,
    ) {
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

    /// The per-device timers: `no_data` (a backstop on a watched link) and `nibp_overdue`.
    pub(super) fn device_timers(&mut self, started: Mono, now: Now, out: &mut Vec<AlarmEvent>) {
        let ctx = ctx!(self, now);
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
    }

    /// Technical onsets whose delay has elapsed.
    pub(super) fn technical_onsets(&mut self, now: Now, out: &mut Vec<AlarmEvent>) {
        let tp = self.policy.technical;
        let ctx = ctx!(self, now);
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
    pub(super) fn judge_baseline_missing(
        &mut self,
        now: Now,
        may_raise: bool,
        out: &mut Vec<AlarmEvent>,
    ) {
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
}
