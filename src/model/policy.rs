//! Engine-wide policies: the priority and delay of each technical condition, escalation and
//! re-notification, audio pause bounds and the stale-data graces. All `Copy`, with documented
//! defaults (`docs/alarms.md`); the clinic may override them.

use super::condition::{Priority, TechCondition};
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
    /// cuff_error medium at once; device_flooding medium at once (its source has already seen
    /// the excess).
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
                rule(Medium, 0),  // device_flooding (the throttle's own judgement)
            ],
        }
    }
}

/// How one priority is paged while its alarm is unacknowledged (active or latched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityEscalation {
    /// Page at all (level 0 when raised). Default: high and medium yes, low no.
    pub notify: bool,
    /// Page again this often while unacknowledged; `None`: page once.
    pub renotify_every: Option<Duration>,
    /// Move one notification level up this often while unacknowledged; `None`: stay at 0.
    pub escalate_after: Option<Duration>,
    /// Number of levels (0..levels); the last level repeats. 0 is treated as 1.
    pub levels: u8,
}

impl PriorityEscalation {
    /// Pages nothing (low priority by default).
    pub const SILENT: PriorityEscalation = PriorityEscalation {
        notify: false,
        renotify_every: None,
        escalate_after: None,
        levels: 1,
    };

    /// The pages of an alarm raised at offset 0 and unacknowledged since, up to `until`
    /// after the raise, as `(offset, level)`: the schedule the engine follows (before the
    /// per-condition page limit).
    pub fn schedule(&self, until: Duration) -> Vec<(Duration, u8)> {
        let mut out = Vec::new();
        if !self.notify {
            return out;
        }
        let mut at = Duration::ZERO;
        loop {
            out.push((at, self.level_at(at)));
            match self.next_after(at) {
                Some(n) if n <= until => at = n,
                _ => return out,
            }
        }
    }

    /// The level of a page `elapsed` after the raise.
    pub fn level_at(&self, elapsed: Duration) -> u8 {
        let top = self.levels.max(1) - 1;
        match self.escalate_after {
            Some(step) if !step.is_zero() => {
                let n = elapsed.as_nanos() / step.as_nanos();
                u8::try_from(n).unwrap_or(u8::MAX).min(top)
            }
            _ => 0,
        }
    }

    /// When the next page is due (offset from the raise), given the offset of the last page:
    /// the next re-notify or the next level boundary, whichever is first; `None`: no more.
    pub fn next_after(&self, last: Duration) -> Option<Duration> {
        if !self.notify {
            return None;
        }
        let renotify = self
            .renotify_every
            .map(|r| last.saturating_add(r.max(Duration::from_secs(1))));
        let boundary = match self.escalate_after {
            Some(step) if self.level_at(last) + 1 < self.levels.max(1) => {
                let step = step.max(Duration::from_secs(1));
                let next = u32::from(self.level_at(last)) + 1;
                Some(step.saturating_mul(next))
            }
            _ => None,
        };
        match (renotify, boundary) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Who gets paged, how often, and when it escalates, per priority, for unacknowledged alarms.
/// Defaults follow central-station practice (shared reference `clinical.md` §2, Philips
/// "Alarm Reminder: re-alarm every 2 or 3 min", Masimo's three escalating levels; docs/alarms.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscalationPolicy {
    /// High: page at once, re-notify every 2 min, one level up every 5 min, 3 levels.
    pub high: PriorityEscalation,
    /// Medium: page at once, re-notify every 3 min, one level up every 10 min, 3 levels.
    pub medium: PriorityEscalation,
    /// Low: no pages.
    pub low: PriorityEscalation,
    /// At most one page per alarm condition per bed (or per system condition) in this
    /// window, so a flapping device cannot page every cycle; a page held back is sent when
    /// the window ends if its alarm is still unacknowledged. A page of a higher priority than
    /// the last one is not held. Default 60 s; zero: no limit.
    pub page_interval: Duration,
}

impl EscalationPolicy {
    /// The policy of `p`.
    pub fn of(&self, p: Priority) -> &PriorityEscalation {
        match p {
            Priority::High => &self.high,
            Priority::Medium => &self.medium,
            Priority::Low => &self.low,
        }
    }
}

impl Default for EscalationPolicy {
    fn default() -> Self {
        EscalationPolicy {
            high: PriorityEscalation {
                notify: true,
                renotify_every: Some(Duration::from_secs(120)),
                escalate_after: Some(Duration::from_secs(300)),
                levels: 3,
            },
            medium: PriorityEscalation {
                notify: true,
                renotify_every: Some(Duration::from_secs(180)),
                escalate_after: Some(Duration::from_secs(600)),
                levels: 3,
            },
            low: PriorityEscalation::SILENT,
            page_interval: Duration::from_secs(60),
        }
    }
}

/// Which new alarm conditions sound through a bed's audio pause: those of at least this
/// priority. Default medium (a new `nibp_sys_rise` is heard); `high` follows Dräger ("a
/// higher-priority new alarm breaks through"), `all` PatientNet ("new alarms break through").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breakthrough {
    /// High only.
    High,
    /// Medium and high.
    Medium,
    /// Every new condition.
    All,
}

impl Breakthrough {
    /// Whether a new condition (or one rising to) `p` sounds during a pause.
    pub fn sounds(self, p: Priority) -> bool {
        match self {
            Breakthrough::High => p >= Priority::High,
            Breakthrough::Medium => p >= Priority::Medium,
            Breakthrough::All => true,
        }
    }

    /// The config name.
    pub const fn name(self) -> &'static str {
        match self {
            Breakthrough::High => "high",
            Breakthrough::Medium => "medium",
            Breakthrough::All => "all",
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
    /// Which new conditions sound through a pause (default medium and high).
    pub breakthrough: Breakthrough,
}

impl Default for AudioPolicy {
    fn default() -> Self {
        AudioPolicy {
            default_pause: Duration::from_secs(120),
            max_pause: Duration::from_secs(600),
            breakthrough: Breakthrough::Medium,
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
