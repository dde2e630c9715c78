//! [`Watchdog`]: the alarm system watches itself. If no dashboard has been connected and alive
//! for a while as beds are monitored, nobody would hear an alarm: that is a high-priority
//! technical alarm of its own (`no_dashboard`, bed-less), which the notifier pages.
//!
//! "Alive" means able to sound: a page proves it with its own application heartbeat saying its
//! audio is armed ([`Dashboards`]). A client that only answers WebSocket pings (a script, a
//! frozen tab, a page whose audio was never armed) proves nothing and keeps nothing away.

use super::{
    Alarm, AlarmEvent, AlarmIds, AlarmKind, AlarmState, Audio, Condition, EventKind, Now, Priority,
    TechCondition,
};
use crate::model::EscalationPolicy;
use crate::model::Mono;
use std::time::Duration;

/// Raises `no_dashboard` when no dashboard was alive for `timeout` (default 30 s) while beds
/// are monitored; clears it when one is alive again. The hub calls
/// [`Watchdog::dashboard_alive`] on every armed page heartbeat and on every tick while
/// [`Dashboards::any_live`]. Re-notifies every
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
    /// The priority it raises with: high, except for a condition that leaves the local alarms
    /// intact (`mqtt_down`).
    priority: Priority,
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
            priority: Priority::High,
        }
    }

    /// The same watchdog for another system condition.
    pub fn for_condition(mut self, condition: TechCondition) -> Watchdog {
        self.condition = condition;
        self
    }

    /// The same watchdog raising with another priority.
    pub fn with_priority(mut self, priority: Priority) -> Watchdog {
        self.priority = priority;
        self
    }

    /// A dashboard that can sound proved it is alive (an armed heartbeat; for the store
    /// watch, a successful write): clears the alarm and restarts the timeout.
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
                priority: self.priority,
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

/// What a dashboard page says about itself in its application heartbeat (docs/api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageBeat {
    /// The page's alarm sound is armed (its audio output runs): it can sound an alarm.
    pub audio_armed: bool,
    /// The page is visible (not a background tab or a minimised window). A hidden but armed
    /// page still sounds, so it still counts; the count tells the two apart.
    pub visible: bool,
}

/// How many dashboards there are, and how many of them can sound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DashboardCounts {
    /// Pages whose latest heartbeat is recent and says audio armed: these keep `no_dashboard`
    /// away.
    pub live: usize,
    /// Of the `live` ones, how many are hidden (background tab, minimised).
    pub hidden: usize,
    /// Pages whose latest heartbeat is recent but says audio not armed: they show, but cannot
    /// sound, so they do not count.
    pub not_armed: usize,
    /// Every WebSocket client, including those that send no heartbeat (scripts, frozen tabs).
    pub clients: usize,
}

/// The latest heartbeat of every page, by client id. Pure: time comes in as a parameter.
///
/// A page counts as a live dashboard while its latest heartbeat is at most
/// [`Dashboards::LIVE_WINDOW`] old and says `audio_armed`. A client that never sends one
/// (a script that only answers pings, a frozen tab) never counts.
#[derive(Debug, Clone, Default)]
pub struct Dashboards {
    beats: Vec<(u64, Mono, PageBeat)>,
}

impl Dashboards {
    /// How old the latest heartbeat of a live page may be: three of the page's 2 s periods.
    pub const LIVE_WINDOW: Duration = Duration::from_secs(6);

    /// Records `client`'s heartbeat. Returns whether it counts as a live dashboard now
    /// (armed), so the caller can tell the [`Watchdog`].
    pub fn beat(&mut self, client: u64, beat: PageBeat, now: Mono) -> bool {
        match self.beats.iter_mut().find(|(c, _, _)| *c == client) {
            Some(slot) => *slot = (client, now, beat),
            None => self.beats.push((client, now, beat)),
        }
        beat.audio_armed
    }

    /// Forgets a client that went away.
    pub fn remove(&mut self, client: u64) {
        self.beats.retain(|(c, _, _)| *c != client);
    }

    /// Whether any page counts as a live dashboard at `now`.
    pub fn any_live(&self, now: Mono) -> bool {
        self.beats
            .iter()
            .any(|(_, at, b)| b.audio_armed && Self::recent(*at, now))
    }

    /// Whether `client` counts as a live dashboard at `now`.
    pub fn is_live(&self, client: u64, now: Mono) -> bool {
        self.beats
            .iter()
            .any(|(c, at, b)| *c == client && b.audio_armed && Self::recent(*at, now))
    }

    /// The counts at `now`; `clients` is the number of WebSocket clients connected.
    pub fn counts(&self, now: Mono, clients: usize) -> DashboardCounts {
        let mut n = DashboardCounts {
            clients,
            ..DashboardCounts::default()
        };
        for (_, at, b) in &self.beats {
            if !Self::recent(*at, now) {
                continue;
            }
            if b.audio_armed {
                n.live += 1;
                n.hidden += usize::from(!b.visible);
            } else {
                n.not_armed += 1;
            }
        }
        n
    }

    fn recent(at: Mono, now: Mono) -> bool {
        now.since(at) <= Self::LIVE_WINDOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> Now {
        Now {
            mono: Mono((secs * 1e9) as u64),
            wall_ms: 1_700_000_000_000 + (secs * 1000.0) as i64,
        }
    }

    const ARMED: PageBeat = PageBeat {
        audio_armed: true,
        visible: true,
    };
    const ARMED_HIDDEN: PageBeat = PageBeat {
        audio_armed: true,
        visible: false,
    };
    const NOT_ARMED: PageBeat = PageBeat {
        audio_armed: false,
        visible: true,
    };

    #[test]
    fn only_a_recent_armed_heartbeat_makes_a_live_dashboard() {
        let mut d = Dashboards::default();
        assert!(!d.beat(1, NOT_ARMED, at(0.0).mono));
        assert!(d.beat(2, ARMED, at(0.0).mono));
        assert!(d.beat(3, ARMED_HIDDEN, at(1.0).mono));
        // Client 4 never sends a heartbeat (a script that answers pings): only in `clients`.
        let n = d.counts(at(2.0).mono, 4);
        assert_eq!(
            n,
            DashboardCounts {
                live: 2,
                hidden: 1,
                not_armed: 1,
                clients: 4
            }
        );
        assert!(d.is_live(2, at(2.0).mono));
        assert!(d.is_live(3, at(2.0).mono), "hidden but armed still sounds");
        assert!(!d.is_live(1, at(2.0).mono));
        assert!(!d.is_live(4, at(2.0).mono));
        // Heartbeats stop (a frozen tab): it stops counting after the window.
        assert!(d.is_live(2, at(6.0).mono));
        assert!(!d.is_live(2, at(6.1).mono));
        assert_eq!(d.counts(at(7.1).mono, 4).live, 0);
        // An armed page whose audio stops: its next heartbeat says so, and it no longer counts.
        d.beat(3, ARMED, at(8.0).mono);
        d.beat(3, NOT_ARMED, at(9.0).mono);
        assert!(!d.is_live(3, at(9.0).mono));
        // A page that left is forgotten.
        d.beat(2, ARMED, at(9.0).mono);
        d.remove(2);
        assert_eq!(d.counts(at(9.0).mono, 2).live, 0);
    }

    #[test]
    fn armed_heartbeats_keep_no_dashboard_away_and_end_it() {
        let ids = AlarmIds::new(1);
        let mut w = Watchdog::new(&ids, Duration::from_secs(5), EscalationPolicy::default());
        let mut d = Dashboards::default();
        let mut out = Vec::new();
        w.tick(at(0.0), true, &mut out);
        // What the hub does: an armed heartbeat, and every tick with a live page, is alive.
        let run = |w: &mut Watchdog, d: &Dashboards, s: f64, out: &mut Vec<AlarmEvent>| {
            if d.any_live(at(s).mono) {
                w.dashboard_alive(at(s), out);
            }
            w.tick(at(s), true, out);
        };
        // Unarmed heartbeats every 2 s do not count: raised after the timeout.
        for s in [1.0, 3.0, 5.0] {
            d.beat(1, NOT_ARMED, at(s).mono);
            run(&mut w, &d, s, &mut out);
        }
        run(&mut w, &d, 5.1, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].kind, EventKind::Raised);
        out.clear();
        // The page is armed: its next heartbeat clears the alarm, and later ones keep it away.
        for s in [7.0, 9.0, 11.0, 13.0] {
            d.beat(1, ARMED_HIDDEN, at(s).mono);
            run(&mut w, &d, s, &mut out);
            run(&mut w, &d, s + 1.9, &mut out);
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].kind, EventKind::Cleared);
        out.clear();
        // It freezes after its beat at 13 s: it counts until 19 s, and the alarm follows once
        // no page has counted for the timeout (24 s).
        let mut s = 13.0;
        while s < 23.8 {
            s += 0.1;
            run(&mut w, &d, s, &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        run(&mut w, &d, 24.2, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].kind, EventKind::Raised);
        assert!(!d.any_live(at(24.2).mono));
    }
}
