//! [`TargetAlarms`]: a notification target that fails to take pages is a technical alarm
//! condition of its own (`notify_failed`, bed-less, naming the target), so that the dashboards
//! show that staff may not be reached. Pure, like the rest of the engine.

use super::{
    Alarm, AlarmError, AlarmEvent, AlarmId, AlarmIds, AlarmKind, AlarmState, Audio, Condition,
    EventKind, Now, Priority, TechCondition,
};
use crate::model::EscalationPolicy;
use crate::model::Mono;
use std::sync::Arc;

/// The priority of `notify_failed`: medium (prompt response: pages may not reach anyone).
pub const NOTIFY_FAILED_PRIORITY: Priority = Priority::Medium;

/// One `notify_failed` alarm slot per configured target.
#[derive(Debug, Clone)]
pub struct TargetAlarms {
    ids: AlarmIds,
    escalation: EscalationPolicy,
    slots: Vec<TargetSlot>,
}

#[derive(Debug, Clone, Copy, Default)]
struct TargetSlot {
    alarm: Option<Alarm>,
    /// The last page about this target (the page limit outlives each alarm).
    last_page: Option<Mono>,
}

impl TargetAlarms {
    /// Slots for `targets` targets.
    pub fn new(ids: &AlarmIds, targets: usize, escalation: EscalationPolicy) -> TargetAlarms {
        TargetAlarms {
            ids: ids.clone(),
            escalation,
            slots: vec![TargetSlot::default(); targets],
        }
    }

    /// Target `target` failed (`failing`) or delivered again. Failing raises `notify_failed`
    /// (once; paged to level 0 unless a page about this target went out within the page
    /// limit); delivering clears it.
    pub fn set(&mut self, target: usize, failing: bool, now: Now, out: &mut Vec<AlarmEvent>) {
        let ids = &self.ids;
        let Some(slot) = self.slots.get_mut(target) else {
            return;
        };
        match (failing, slot.alarm) {
            (true, None) => {
                let a = Alarm {
                    id: ids.next_id(),
                    bed: None,
                    device: None,
                    condition: Condition::Technical(TechCondition::NotifyFailed),
                    kind: AlarmKind::Technical,
                    priority: NOTIFY_FAILED_PRIORITY,
                    state: AlarmState::Active,
                    audio: Audio::Sounding,
                    value: None,
                    limit: None,
                    started_ms: now.wall_ms,
                    updated_ms: now.wall_ms,
                    target: u8::try_from(target).ok(),
                };
                slot.alarm = Some(a);
                out.push(event(EventKind::Raised, a, now, None));
                let limited = slot
                    .last_page
                    .is_some_and(|t| now.mono < t.saturating_add(self.escalation.page_interval));
                if self.escalation.of(a.priority).notify && !limited {
                    slot.last_page = Some(now.mono);
                    out.push(event(EventKind::Notify { level: 0 }, a, now, None));
                }
            }
            (false, Some(mut a)) => {
                slot.alarm = None;
                a.state = AlarmState::Cleared;
                a.updated_ms = now.wall_ms;
                out.push(event(EventKind::Cleared, a, now, None));
            }
            _ => {}
        }
    }

    /// Whether `id` is one of these alarms.
    pub fn owns(&self, id: AlarmId) -> bool {
        self.alarms().any(|a| a.id == id)
    }

    /// Acknowledges a `notify_failed` alarm: silenced, still shown until the target delivers
    /// again.
    pub fn acknowledge(
        &mut self,
        id: AlarmId,
        actor: &str,
        now: Now,
        out: &mut Vec<AlarmEvent>,
    ) -> Result<(), AlarmError> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.alarm.is_some_and(|a| a.id == id))
            .ok_or(AlarmError::UnknownAlarm(id))?;
        let Some(mut a) = slot.alarm else {
            return Err(AlarmError::UnknownAlarm(id));
        };
        if a.state == AlarmState::Active {
            a.state = AlarmState::Acknowledged;
            a.audio = Audio::Silenced;
            a.updated_ms = now.wall_ms;
            slot.alarm = Some(a);
            out.push(event(
                EventKind::Acknowledged,
                a,
                now,
                Some(Arc::from(actor)),
            ));
        }
        Ok(())
    }

    /// The current `notify_failed` alarms.
    pub fn alarms(&self) -> impl Iterator<Item = &Alarm> + '_ {
        self.slots.iter().filter_map(|s| s.alarm.as_ref())
    }
}

fn event(kind: EventKind, a: Alarm, now: Now, actor: Option<Arc<str>>) -> AlarmEvent {
    AlarmEvent {
        kind,
        bed: None,
        alarm: Some(a),
        actor,
        at_ms: now.wall_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn now(s: u64) -> Now {
        Now {
            mono: Mono::ZERO.saturating_add(Duration::from_secs(s)),
            wall_ms: 1_700_000_000_000 + i64::try_from(s * 1000).unwrap(),
        }
    }

    fn kinds(out: &[AlarmEvent]) -> Vec<String> {
        out.iter()
            .map(|e| {
                serde_json::to_value(e).unwrap()["event"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn a_failing_target_raises_one_medium_alarm_naming_it_until_it_delivers_again() {
        let mut t = TargetAlarms::new(&AlarmIds::new(1), 2, EscalationPolicy::default());
        let mut out = Vec::new();
        t.set(1, true, now(0), &mut out);
        t.set(1, true, now(5), &mut out);
        assert_eq!(kinds(&out), ["raised", "notify"]);
        let a = out[0].alarm.unwrap();
        assert_eq!(a.target, Some(1));
        assert_eq!(a.priority, Priority::Medium);
        assert_eq!(a.condition.to_string(), "notify_failed");
        out.clear();
        t.acknowledge(a.id, "nurse", now(6), &mut out).unwrap();
        assert_eq!(t.alarms().next().unwrap().audio, Audio::Silenced);
        t.set(1, false, now(7), &mut out);
        assert_eq!(kinds(&out), ["acknowledged", "cleared"]);
        assert!(t.alarms().next().is_none());
    }

    #[test]
    fn a_flapping_target_is_paged_at_most_once_per_page_interval() {
        let mut t = TargetAlarms::new(&AlarmIds::new(1), 1, EscalationPolicy::default());
        let mut out = Vec::new();
        for s in 0..30 {
            t.set(0, s % 2 == 0, now(s), &mut out);
        }
        t.set(0, true, now(61), &mut out);
        let pages = kinds(&out).iter().filter(|k| *k == "notify").count();
        assert_eq!(pages, 2, "one page at 0 s, the next after the 60 s window");
    }
}
