//! Engine-wide policies: the priority and delay of each technical condition, escalation and
//! re-notification, audio pause bounds and the stale-data graces. All `Copy`, with documented
//! defaults (`docs/alarms.md`); the clinic may override them.

use super::{Priority, TechCondition};
use std::time::Duration;

/// Priority and condition delay of one technical condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TechRule {
    pub priority: Priority,
    /// How long the condition must hold before it alarms.
    pub delay: Duration,
}

const fn rule(priority: Priority, secs: u64) -> TechRule {
    TechRule {
        priority,
        delay: Duration::from_secs(secs),
    }
}

/// Priorities and delays of the technical conditions, indexed by [`TechCondition::index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TechnicalPolicy {
    pub rules: [TechRule; TechCondition::PER_DEVICE.len()],
}

impl TechnicalPolicy {
    /// The rule of `c`; `no_dashboard` (not per device) is always high, at once;
    /// `baseline_missing` (per bed) medium, at once.
    pub fn get(&self, c: TechCondition) -> TechRule {
        if c == TechCondition::BaselineMissing {
            return rule(Priority::Medium, 0);
        }
        self.rules
            .get(c.index())
            .copied()
            .unwrap_or(rule(Priority::High, 0))
    }
}

impl Default for TechnicalPolicy {
    /// device_disconnected medium at once; no_data medium (its own timeout is the delay);
    /// nibp_overdue low; sensor_off / no_finger / probe_unplugged / sensor_fault medium after
    /// 10 s; searching_too_long medium after 30 s of searching (at once when the device says
    /// so itself); low_perfusion / low_signal low after 30 s; low_battery low at once;
    /// cuff_error medium at once.
    fn default() -> Self {
        use Priority::{Low, Medium};
        TechnicalPolicy {
            rules: [
                rule(Medium, 0),  // device_disconnected
                rule(Medium, 0),  // no_data (after expected period + grace)
                rule(Low, 0),     // nibp_overdue (after bp interval + grace)
                rule(Medium, 10), // sensor_off
                rule(Medium, 10), // no_finger
                rule(Medium, 10), // probe_unplugged
                rule(Medium, 10), // sensor_fault
                rule(Medium, 30), // searching_too_long (searching for this long)
                rule(Low, 30),    // low_perfusion
                rule(Low, 30),    // low_signal
                rule(Low, 0),     // low_battery
                rule(Medium, 0),  // cuff_error
            ],
        }
    }
}

/// Who gets paged, how often, and when it escalates, for unacknowledged alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscalationPolicy {
    /// Re-notify an unacknowledged high alarm this often (default 2 min).
    pub renotify_every: Duration,
    /// Move to the next notification level this often while unacknowledged (default 5 min).
    pub escalate_after: Duration,
    /// Number of levels (0..levels); the last level repeats. Default 3; 0 is treated as 1.
    pub levels: u8,
    /// Notify medium alarms (level 0) when raised (default true).
    pub notify_medium: bool,
    /// Treat medium alarms like high ones: re-notify and escalate (default false).
    pub repeat_medium: bool,
}

impl Default for EscalationPolicy {
    fn default() -> Self {
        EscalationPolicy {
            renotify_every: Duration::from_secs(120),
            escalate_after: Duration::from_secs(300),
            levels: 3,
            notify_medium: true,
            repeat_medium: false,
        }
    }
}

/// Bounds of the per-bed audio pause: never unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioPolicy {
    /// Pause length when none is given (default 2 min).
    pub default_pause: Duration,
    /// Longest pause; longer requests are cut to it (default 10 min).
    pub max_pause: Duration,
}

impl Default for AudioPolicy {
    fn default() -> Self {
        AudioPolicy {
            default_pause: Duration::from_secs(120),
            max_pause: Duration::from_secs(600),
        }
    }
}

/// Everything the engine needs besides limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub technical: TechnicalPolicy,
    pub escalation: EscalationPolicy,
    pub audio: AudioPolicy,
    /// Grace added to a device's expected period before `no_data` (and before a reading is
    /// too old to fire a pending alarm). Default 5 s.
    pub no_data_grace: Duration,
    /// Grace added to the bed's BP interval before `nibp_overdue`. Default 2 min;
    /// `[alarms] nibp_overdue_grace` in the config.
    pub nibp_grace: Duration,
    /// How long valid data must flow without a break before a raised `device_disconnected`
    /// clears (and, in the sources, before the reconnect backoff starts again from its
    /// shortest delay). Default 10 s: a link that flaps faster than this is one standing
    /// alarm, not a raise/clear cycle per flap.
    pub link_stable: Duration,
}

impl Default for Policy {
    /// The documented defaults, with graces of 5 s (no data) and 2 min (NIBP), and a link
    /// stable after 10 s of valid data.
    fn default() -> Policy {
        Policy {
            technical: TechnicalPolicy::default(),
            escalation: EscalationPolicy::default(),
            audio: AudioPolicy::default(),
            no_data_grace: Duration::from_secs(5),
            nibp_grace: Duration::from_secs(120),
            link_stable: Duration::from_secs(10),
        }
    }
}
