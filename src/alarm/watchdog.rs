//! [`Watchdog`]: the alarm system watches itself. If no dashboard has been connected and alive
//! for a while as beds are monitored, nobody would hear an alarm: that is a high-priority
//! technical alarm of its own (`no_dashboard`, bed-less), which the notifier pages.

use super::policy::EscalationPolicy;
use super::{
    Alarm, AlarmEvent, AlarmIds, AlarmKind, AlarmState, Audio, Condition, EventKind, Now, Priority,
    TechCondition,
};
use crate::clock::Mono;
use std::time::Duration;

/// Raises `no_dashboard` when no dashboard was alive for `timeout` (default 30 s) while beds
/// are monitored; clears it when one is alive again. Re-notifies every
/// the high priority's `renotify_every` while it lasts (it cannot be acknowledged: only a
/// living dashboard ends it).
#[derive(Debug, Clone)]
pub struct Watchdog {
    ids: AlarmIds,
    timeout: Duration,
    renotify_every: Duration,
    last_alive: Option<Mono>,
    alarm: Option<Alarm>,
    next_notify: Option<Mono>,
    /// What it raises: `no_dashboard` by default; the same machinery watches the store
    /// (`store_unwritable`, "alive" = the last write succeeded).
    condition: TechCondition,
}

impl Watchdog {
    /// The default timeout before `no_dashboard`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// A watchdog; its clock starts at the first call.
    pub fn new(ids: &AlarmIds, timeout: Duration, escalation: EscalationPolicy) -> Watchdog {
        Watchdog {
            ids: ids.clone(),
            timeout,
            renotify_every: escalation
                .high
                .renotify_every
                .unwrap_or(Duration::from_secs(120))
                .max(Duration::from_secs(1)),
            last_alive: None,
            alarm: None,
            next_notify: None,
            condition: TechCondition::NoDashboard,
        }
    }

    /// The same watchdog for another system condition.
    pub fn for_condition(mut self, condition: TechCondition) -> Watchdog {
        self.condition = condition;
        self
    }

    /// A dashboard is connected and answered a heartbeat: clears `no_dashboard`.
    pub fn dashboard_alive(&mut self, now: Now, out: &mut Vec<AlarmEvent>) {
        self.last_alive = Some(now.mono);
        self.next_notify = None;
        if let Some(mut a) = self.alarm.take() {
            a.state = AlarmState::Cleared;
            a.updated_ms = now.wall_ms;
            out.push(event(EventKind::Cleared, a, now));
        }
    }

    /// Checks the timeout. `monitoring`: whether any bed is being monitored; without one, no
    /// dashboard is needed (and the clock restarts).
    pub fn tick(&mut self, now: Now, monitoring: bool, out: &mut Vec<AlarmEvent>) {
        let last = *self.last_alive.get_or_insert(now.mono);
        if !monitoring {
            self.last_alive = Some(now.mono);
            if let Some(mut a) = self.alarm.take() {
                a.state = AlarmState::Cleared;
                a.updated_ms = now.wall_ms;
                out.push(event(EventKind::Cleared, a, now));
            }
            return;
        }
        if self.alarm.is_none() && now.mono.since(last) > self.timeout {
            let a = Alarm {
                id: self.ids.next_id(),
                bed: None,
                device: None,
                condition: Condition::Technical(self.condition),
                kind: AlarmKind::Technical,
                priority: Priority::High,
                state: AlarmState::Active,
                audio: Audio::Sounding,
                value: None,
                limit: None,
                started_ms: now.wall_ms,
                updated_ms: now.wall_ms,
                target: None,
            };
            self.alarm = Some(a);
            out.push(event(EventKind::Raised, a, now));
            out.push(event(EventKind::Notify { level: 0 }, a, now));
            self.next_notify = Some(now.mono.saturating_add(self.renotify_every));
        } else if let (Some(a), Some(next)) = (self.alarm, self.next_notify)
            && now.mono >= next
        {
            out.push(event(EventKind::Notify { level: 0 }, a, now));
            self.next_notify = Some(now.mono.saturating_add(self.renotify_every));
        }
    }

    /// The `no_dashboard` alarm, while it lasts.
    pub fn alarm(&self) -> Option<&Alarm> {
        self.alarm.as_ref()
    }
}

fn event(kind: EventKind, a: Alarm, now: Now) -> AlarmEvent {
    AlarmEvent {
        kind,
        bed: None,
        alarm: Some(a),
        actor: None,
        at_ms: now.wall_ms,
    }
}
