//! Physiological judging: each valid value against the bed's limit rules (condition delay,
//! severe band, hysteresis, latching of high-priority alarms), the delayed onsets the timer
//! raises, and the recent values behind "capture the baseline from recent readings".

use super::{BedAlarms, Ctx, RECENT, Slot, clear, esc_start, raise};
use crate::alarm::{AlarmEvent, AlarmKind, AlarmState, Audio, EventKind, Now, Priority};
use crate::model::{Baseline, DeviceIdx, LimitRule, Metric, Mono};

impl BedAlarms {
    /// Judges a valid value of `metric` against every rule of that metric.
    pub(super) fn judge_limits(
        &mut self,
        metric: Metric,
        v: f64,
        device: DeviceIdx,
        now: Now,
        out: &mut Vec<AlarmEvent>,
    ) {
        self.record_valid(metric, v, now.mono);
        let ctx = ctx!(self, now);
        for (rule, slot) in self.limits.rules.iter().zip(self.phys.iter_mut()) {
            if rule.metric == metric {
                judge(&ctx, rule, &self.baseline, slot, v, device, out);
            }
        }
    }

    /// Physiological onsets whose delay has elapsed, on a reading that is still fresh.
    pub(super) fn physiological_onsets(&mut self, now: Now, out: &mut Vec<AlarmEvent>) {
        let ctx = ctx!(self, now);
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
    }

    pub(super) fn record_valid(&mut self, metric: Metric, v: f64, at: Mono) {
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

/// Judges one valid value against one rule.
pub(super) fn judge(
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
