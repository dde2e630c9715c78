//! What the operator does through the API: acknowledge an alarm, pause and resume the bed's
//! audio, replace the limit rules, set the baseline, mark the session dosed.

use super::{BedAlarms, Slot, clear};
use crate::alarm::{AlarmError, AlarmEvent, AlarmId, AlarmState, Audio, Condition, EventKind, Now};
use crate::model::{Baseline, BedLimits, LimitsError};
use std::sync::Arc;
use std::time::Duration;

impl BedAlarms {
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

    pub(super) fn resume(&mut self, actor: Option<Arc<str>>, now: Now, out: &mut Vec<AlarmEvent>) {
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
}
