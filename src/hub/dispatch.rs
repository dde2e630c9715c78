//! The queue from the alarm path to the consumers off it (store, notifier): bounded, never
//! waiting, coalescing what a later message supersedes.
//!
//! The hub pushes under a bed's lock (a short mutex, never an await, never a wait for room):
//! the decode path is never blocked by a slow store. The consumer (`app::dispatch`) takes one
//! message at a time, and only while the store's command queue has room
//! ([`crate::store::StoreHandle::wait_room`]), so a backlog waits here, where it coalesces.
//! What must not wait for the store (pages, and the clear or acknowledgement that cancels
//! them) is handed on as it is pushed, through [`DispatchQueue::forward_events_to`]: a stalled
//! disk never delays a page. What is coalesced here:
//! - a bed's saved state: one [`Dispatch::State`] per bed at most is waiting (the consumer
//!   serializes the bed's state as it is when it takes it: only the newest matters);
//! - an alarm's superseded updates: an `updated` or `latched` event (no actor, priority not
//!   higher than the last event of that alarm) replaces the waiting one of the same alarm, in
//!   its place, as long as no transition of that alarm was queued after it.
//!
//! Never coalesced, kept in order: transitions (a new alarm, a rise of an alarm's priority, a
//! clear, an acknowledgement, every event with an actor, audio pauses, limits and baseline
//! changes, pages) and action commits. At most [`TRANSITION_CAP`] of them wait; one that
//! cannot be queued is dropped, counted ([`DispatchLoad::dropped`]) and logged, and for
//! [`DROPPED_FOR`] the hub reports the store not writable (`store_unwritable`): the record is
//! missing an event. Coalescible messages wait at most one per bed and per current alarm, so
//! the depth is bounded by `TRANSITION_CAP` + beds + current alarms.

use super::{Dispatch, Dispatched};
use crate::alarm::EventKind;
use crate::model::BedIdx;
use crate::overload::Overload;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Transitions (and commits) that may wait at most.
pub const TRANSITION_CAP: usize = 4_096;
/// After a transition was dropped, the store is reported not writable for this long.
pub const DROPPED_FOR: Duration = Duration::from_secs(5);

/// What a waiting message may be coalesced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Alarm(u64),
    Bed(u16),
}

/// What became of a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Waiting in its own place.
    Queued,
    /// Replaced the waiting message of the same alarm (or bed's state), in its place.
    Coalesced,
    /// A transition that found [`TRANSITION_CAP`] waiting: dropped (counted, logged).
    Dropped,
}

#[derive(Debug, Default)]
struct Inner {
    entries: VecDeque<(Option<Key>, Dispatch)>,
    /// The absolute index of `entries[0]`.
    first: u64,
    /// Per key, the absolute index of its waiting coalescible message (none once a barrier
    /// of that key was queued after it).
    open: HashMap<Key, u64>,
    /// The priority of the latest event of each current alarm (forgotten when it clears).
    rank: HashMap<u64, u8>,
    /// Waiting messages that are not coalescible.
    transitions: usize,
    last_drop: Option<Instant>,
}

/// A consumer that sees every engine event as it is pushed, before it waits in the queue
/// (the notifier's inbox: it must never wait for the store). It must not block.
pub type Forward = Box<dyn Fn(&Dispatched) + Send + Sync>;

/// The hub's queue to the consumers off the alarm path (see the module doc).
pub struct DispatchQueue {
    q: Mutex<Inner>,
    wake: tokio::sync::Notify,
    cap: usize,
    load: Arc<Overload>,
    forward: OnceLock<Forward>,
}

impl std::fmt::Debug for DispatchQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchQueue")
            .field("cap", &self.cap)
            .field("len", &self.len())
            .field("forwards", &self.forward.get().is_some())
            .finish()
    }
}

impl DispatchQueue {
    /// A queue of at most `cap` transitions, counted in `load.dispatch`.
    pub fn new(cap: usize, load: Arc<Overload>) -> DispatchQueue {
        load.dispatch.cap.store(cap, Relaxed);
        DispatchQueue {
            q: Mutex::new(Inner::default()),
            wake: tokio::sync::Notify::new(),
            cap: cap.max(1),
            load,
            forward: OnceLock::new(),
        }
    }

    /// Hands every engine event ([`Dispatch::Event`]) to `forward` as it is pushed, before it
    /// waits for the store (and whether or not it is later coalesced or dropped). Action
    /// commits are not forwarded here: their events take effect only once committed, and
    /// their consumer forwards them then. Set once, before anything is pushed; a second call
    /// is ignored (returns false).
    pub fn forward_events_to(&self, forward: Forward) -> bool {
        self.forward.set(forward).is_ok()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a message without waiting (see the module doc).
    pub fn push(&self, msg: Dispatch) -> Pushed {
        if let (Dispatch::Event(d), Some(f)) = (&msg, self.forward.get()) {
            f(d);
        }
        let mut q = self.lock();
        let r = q.push(msg, self.cap);
        let depth = q.entries.len();
        if r == Pushed::Dropped {
            q.last_drop = Some(Instant::now());
        }
        drop(q);
        let l = &self.load.dispatch;
        l.seen(depth);
        match r {
            Pushed::Queued => self.wake.notify_one(),
            Pushed::Coalesced => {
                l.coalesced.fetch_add(1, Relaxed);
            }
            Pushed::Dropped => {
                if l.dropped.fetch_add(1, Relaxed) == 0 {
                    tracing::error!(
                        cap = self.cap,
                        "alarm event dropped on its way to the store: the alarm-event queue is full"
                    );
                }
            }
        }
        r
    }

    /// Takes the oldest waiting message, if any.
    pub fn try_pop(&self) -> Option<Dispatch> {
        let mut q = self.lock();
        let m = q.pop();
        let depth = q.entries.len();
        drop(q);
        self.load.dispatch.depth.store(depth, Relaxed);
        m
    }

    /// Waits for a message and takes it.
    pub async fn pop(&self) -> Dispatch {
        loop {
            if let Some(m) = self.try_pop() {
                return m;
            }
            self.wake.notified().await;
        }
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A transition was dropped within the last [`DROPPED_FOR`].
    pub fn dropped_recently(&self) -> bool {
        self.lock()
            .last_drop
            .is_some_and(|t| t.elapsed() < DROPPED_FOR)
    }
}

/// The coalescing key of a superseded-update event (`None`: a transition) and the alarm's
/// priority it carries, given the priority of that alarm's latest event.
fn event_key(d: &Dispatched, rank: &HashMap<u64, u8>) -> Option<Key> {
    let a = d.event.alarm?;
    if d.event.actor.is_some() {
        return None;
    }
    if !matches!(d.event.kind, EventKind::Updated | EventKind::Latched) {
        return None;
    }
    // A rise of the priority (or an alarm not seen before) is a transition.
    let before = rank.get(&a.id.0)?;
    (a.priority as u8 <= *before).then_some(Key::Alarm(a.id.0))
}

impl Inner {
    fn push(&mut self, msg: Dispatch, cap: usize) -> Pushed {
        let key = match &msg {
            Dispatch::Event(d) => {
                let key = event_key(d, &self.rank);
                if let Some(a) = d.event.alarm {
                    if matches!(d.event.kind, EventKind::Cleared) {
                        self.rank.remove(&a.id.0);
                    } else {
                        self.rank.insert(a.id.0, a.priority as u8);
                    }
                    if key.is_none() {
                        // A transition: later updates go after it.
                        self.open.remove(&Key::Alarm(a.id.0));
                    }
                }
                key
            }
            Dispatch::State(bed) => Some(Key::Bed(bed.0)),
            Dispatch::Commit(..) => {
                // The action's state is written with it: later states go after it.
                self.open.retain(|k, _| !matches!(k, Key::Bed(_)));
                None
            }
        };
        if let Some(k) = key
            && let Some(&at) = self.open.get(&k)
            && let Some(slot) = at
                .checked_sub(self.first)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| self.entries.get_mut(i))
        {
            slot.1 = msg;
            return Pushed::Coalesced;
        }
        if key.is_none() {
            if self.transitions >= cap {
                return Pushed::Dropped;
            }
            self.transitions += 1;
        }
        let at = self.first + self.entries.len() as u64;
        self.entries.push_back((key, msg));
        if let Some(k) = key {
            self.open.insert(k, at);
        }
        Pushed::Queued
    }

    fn pop(&mut self) -> Option<Dispatch> {
        let (key, msg) = self.entries.pop_front()?;
        let at = self.first;
        self.first += 1;
        match key {
            Some(k) => {
                if self.open.get(&k) == Some(&at) {
                    self.open.remove(&k);
                }
            }
            None => self.transitions -= 1,
        }
        Some(msg)
    }
}

/// The bed a state message is about (for tests and the consumer).
pub fn state_bed(msg: &Dispatch) -> Option<BedIdx> {
    match msg {
        Dispatch::State(b) => Some(*b),
        _ => None,
    }
}

/// How often a bed's alarm state is saved at most while it keeps changing (see
/// [`StateSaves`]).
pub const STATE_SAVE_GAP: Duration = Duration::from_millis(250);

/// Paces the saving of beds' alarm states (the consumer's side of [`Dispatch::State`]): a bed's
/// first change after a quiet [`STATE_SAVE_GAP`] is saved at once (the next group commit, as
/// before); a bed that keeps changing (an alarm flapping between active and latched with every
/// other reading) is saved again [`STATE_SAVE_GAP`] after its last save, as it is then. So a
/// saved state is never more than `STATE_SAVE_GAP` (plus a commit round) older than the bed,
/// and a flapping bed costs at most four serialized states a second instead of one per reading
/// (each several hundred bytes of JSON, fsynced). The events themselves are not paced: each is
/// recorded with the next group commit. Time is a parameter (no clock here).
#[derive(Debug)]
pub struct StateSaves {
    /// Per bed: when its state was last saved.
    saved: Vec<Option<Instant>>,
    /// Per bed: when its deferred save is due.
    due: Vec<Option<Instant>>,
}

impl StateSaves {
    pub fn new(beds: usize) -> StateSaves {
        StateSaves {
            saved: vec![None; beds],
            due: vec![None; beds],
        }
    }

    /// Bed `bed`'s state changed at `now`: true if it is to be saved now (then it counts as
    /// saved), false if it waits for [`StateSaves::take_due`].
    pub fn changed(&mut self, bed: BedIdx, now: Instant) -> bool {
        let i = usize::from(bed.0);
        if i >= self.saved.len() {
            return true;
        }
        if self.due[i].is_some() {
            return false;
        }
        match self.saved[i] {
            Some(at) if now.saturating_duration_since(at) < STATE_SAVE_GAP => {
                self.due[i] = Some(at + STATE_SAVE_GAP);
                false
            }
            _ => {
                self.saved[i] = Some(now);
                true
            }
        }
    }

    /// When the earliest deferred save is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.iter().flatten().min().copied()
    }

    /// The beds whose deferred save is due at `now` (all of them with `now` = None, at
    /// shutdown); they count as saved at `now`.
    pub fn take_due(&mut self, now: Option<Instant>) -> Vec<BedIdx> {
        let mut beds = Vec::new();
        for (i, due) in self.due.iter_mut().enumerate() {
            if let Some(at) = *due
                && now.is_none_or(|n| at <= n)
            {
                *due = None;
                if let Some(n) = now {
                    self.saved[i] = Some(n);
                }
                beds.extend(u16::try_from(i).ok().map(BedIdx));
            }
        }
        beds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::{
        Alarm, AlarmEvent, AlarmId, AlarmKind, AlarmState, Audio, Condition, Priority,
        TechCondition,
    };
    use bytes::Bytes;

    fn ev(kind: EventKind, id: u64, priority: Priority, value: f64) -> Dispatch {
        let alarm = Alarm {
            id: AlarmId(id),
            bed: Some(BedIdx(0)),
            device: None,
            condition: Condition::Technical(TechCondition::NoData),
            kind: AlarmKind::Physiological,
            priority,
            state: AlarmState::Active,
            audio: Audio::Sounding,
            value: Some(value),
            limit: Some(85.0),
            started_ms: 0,
            updated_ms: 0,
            target: None,
        };
        Dispatch::Event(Dispatched {
            event: AlarmEvent {
                kind,
                bed: Some(BedIdx(0)),
                alarm: Some(alarm),
                actor: None,
                at_ms: value as i64,
            },
            json: Bytes::new(),
            seq: 0,
        })
    }

    /// (kind, alarm id, value) of each waiting message, in order; states as ("state", bed).
    fn drain(q: &DispatchQueue) -> Vec<(String, u64, f64)> {
        let mut out = Vec::new();
        while let Some(m) = q.try_pop() {
            out.push(match m {
                Dispatch::Event(d) => {
                    let a = d.event.alarm.expect("alarm");
                    (
                        serde_json::to_value(&d.event.kind).expect("kind")["event"]
                            .as_str()
                            .expect("event name")
                            .to_owned(),
                        a.id.0,
                        a.value.unwrap_or_default(),
                    )
                }
                Dispatch::State(b) => ("state".to_owned(), u64::from(b.0), 0.0),
                Dispatch::Commit(..) => ("commit".to_owned(), 0, 0.0),
            });
        }
        out
    }

    fn queue(cap: usize) -> (DispatchQueue, Arc<Overload>) {
        let load = Arc::new(Overload::new(0));
        (DispatchQueue::new(cap, load.clone()), load)
    }

    #[test]
    fn a_consumer_that_keeps_up_gets_every_event() {
        let (q, load) = queue(8);
        for (i, kind) in [EventKind::Raised, EventKind::Updated, EventKind::Latched]
            .into_iter()
            .enumerate()
        {
            assert_eq!(
                q.push(ev(kind, 1, Priority::High, i as f64)),
                Pushed::Queued
            );
            assert_eq!(drain(&q).len(), 1);
        }
        assert_eq!(load.dispatch.coalesced.load(Relaxed), 0);
    }

    #[test]
    fn under_a_backlog_superseded_updates_coalesce_and_transitions_stay_in_order() {
        let (q, load) = queue(64);
        q.push(ev(EventKind::Raised, 1, Priority::Medium, 1.0));
        q.push(Dispatch::State(BedIdx(0)));
        q.push(ev(EventKind::Raised, 2, Priority::High, 2.0));
        for v in 3..100 {
            q.push(ev(EventKind::Updated, 1, Priority::Medium, f64::from(v)));
            q.push(ev(EventKind::Latched, 2, Priority::High, f64::from(v)));
            q.push(Dispatch::State(BedIdx(0)));
        }
        // A rise of alarm 1's priority: a transition, after the waiting update.
        q.push(ev(EventKind::Updated, 1, Priority::High, 100.0));
        q.push(ev(EventKind::Updated, 1, Priority::High, 101.0));
        q.push(ev(EventKind::Cleared, 2, Priority::High, 102.0));
        q.push(ev(EventKind::Updated, 1, Priority::High, 103.0));
        assert_eq!(q.len(), 8, "bounded by transitions + one per alarm and bed");
        let got = drain(&q);
        let want: Vec<(String, u64, f64)> = [
            ("raised", 1, 1.0),
            ("state", 0, 0.0),
            ("raised", 2, 2.0),
            ("updated", 1, 99.0),
            ("latched", 2, 99.0),
            ("updated", 1, 100.0),
            ("updated", 1, 103.0),
            ("cleared", 2, 102.0),
        ]
        .into_iter()
        .map(|(k, i, v)| (k.to_owned(), i, v))
        .collect();
        assert_eq!(got[..3], want[..3]);
        assert_eq!(got[3..], want[3..]);
        assert_eq!(
            load.dispatch.coalesced.load(Relaxed),
            3 * 97 - 2 + 1,
            "every superseded update and state counted"
        );
        assert_eq!(load.dispatch.peak.load(Relaxed), 8);
    }

    #[test]
    fn every_engine_event_is_forwarded_as_pushed_even_when_it_waits_coalesces_or_is_dropped() {
        let (q, _) = queue(1);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        assert!(q.forward_events_to(Box::new(move |d: &Dispatched| {
            let a = d.event.alarm.expect("alarm");
            s.lock()
                .expect("seen")
                .push((a.id.0, a.value.unwrap_or_default()));
        })));
        assert!(!q.forward_events_to(Box::new(|_| {})), "set once");
        assert_eq!(
            q.push(ev(EventKind::Raised, 1, Priority::High, 1.0)),
            Pushed::Queued
        );
        assert_eq!(
            q.push(ev(EventKind::Updated, 1, Priority::High, 2.0)),
            Pushed::Queued
        );
        assert_eq!(
            q.push(ev(EventKind::Updated, 1, Priority::High, 3.0)),
            Pushed::Coalesced
        );
        assert_eq!(
            q.push(ev(EventKind::Raised, 2, Priority::High, 4.0)),
            Pushed::Dropped
        );
        // An action's events are the commit consumer's to forward, once committed.
        let (tx, _rx) = tokio::sync::oneshot::channel();
        q.push(Dispatch::Commit(Vec::new(), None, tx));
        q.push(Dispatch::State(BedIdx(0)));
        assert_eq!(
            *seen.lock().expect("seen"),
            [(1, 1.0), (1, 2.0), (1, 3.0), (2, 4.0)],
            "nothing waits, nothing is coalesced or dropped on the way to the forward"
        );
    }

    #[test]
    fn a_state_is_not_coalesced_across_an_action_commit() {
        let (q, _) = queue(8);
        q.push(Dispatch::State(BedIdx(0)));
        let (tx, _rx) = tokio::sync::oneshot::channel();
        q.push(Dispatch::Commit(Vec::new(), None, tx));
        q.push(Dispatch::State(BedIdx(0)));
        q.push(Dispatch::State(BedIdx(0)));
        let got: Vec<String> = drain(&q).into_iter().map(|(k, _, _)| k).collect();
        assert_eq!(got, ["state", "commit", "state"]);
    }

    #[test]
    fn transitions_past_the_cap_are_dropped_counted_and_reported() {
        let (q, load) = queue(3);
        for id in 1..=3 {
            assert_eq!(
                q.push(ev(EventKind::Raised, id, Priority::High, 1.0)),
                Pushed::Queued
            );
        }
        assert!(!q.dropped_recently());
        assert_eq!(
            q.push(ev(EventKind::Raised, 4, Priority::High, 1.0)),
            Pushed::Dropped
        );
        // Updates of a waiting alarm still coalesce; states still have their place.
        assert_eq!(
            q.push(ev(EventKind::Updated, 1, Priority::High, 2.0)),
            Pushed::Queued
        );
        assert_eq!(q.push(Dispatch::State(BedIdx(0))), Pushed::Queued);
        assert!(q.dropped_recently());
        assert_eq!(load.dispatch.dropped.load(Relaxed), 1);
        let ids: Vec<u64> = drain(&q).into_iter().map(|(_, i, _)| i).collect();
        assert_eq!(ids, [1, 2, 3, 1, 0]);
    }

    #[test]
    fn a_bed_that_keeps_changing_is_saved_at_once_then_every_gap_and_a_quiet_one_at_once() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let (a, b) = (BedIdx(0), BedIdx(1));
        let mut saves = StateSaves::new(2);
        assert_eq!(saves.next_due(), None);
        // The first change is saved at once.
        assert!(saves.changed(a, ms(0)));
        // More changes within the gap wait for one save at the gap's end.
        assert!(!saves.changed(a, ms(10)));
        assert!(!saves.changed(a, ms(200)));
        assert_eq!(saves.next_due(), Some(ms(250)));
        // Another bed is not held back by the first.
        assert!(saves.changed(b, ms(20)));
        assert_eq!(saves.take_due(Some(ms(249))), vec![]);
        assert_eq!(saves.take_due(Some(ms(250))), vec![a]);
        assert_eq!(saves.next_due(), None);
        // A change soon after that deferred save waits again, a gap after it.
        assert!(!saves.changed(a, ms(300)));
        assert_eq!(saves.next_due(), Some(ms(500)));
        // At shutdown every deferred save is due at once.
        assert_eq!(saves.take_due(None), vec![a]);
        // After a quiet gap, a change is saved at once.
        assert!(saves.changed(a, ms(800)));
        assert!(saves.changed(b, ms(800)));
        // A bed the pacer does not know (cannot happen with one config) is never held back.
        assert!(saves.changed(BedIdx(7), ms(801)));
        assert!(saves.changed(BedIdx(7), ms(802)));
    }
}
