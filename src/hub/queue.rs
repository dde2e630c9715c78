//! One subscriber's outgoing queue, with the delivery policy of docs/api.md ("Delivery policy"):
//! - priority messages (alarms, device status, session events) go out ahead of readings, in
//!   the order they were published;
//! - while a client keeps up, nothing is coalesced. Once its priority backlog reaches
//!   [`COALESCE_AT`], an `alarm` message that a later message about the same alarm supersedes
//!   is dropped (latest state wins), and likewise a `device_status` superseded by a later one
//!   for the same device. Never dropped: a new alarm (`raised`, or the first message this
//!   client sees about an alarm), a rise of an alarm's priority, and every message that is
//!   neither an alarm nor a device status (session events, audio pauses, limits). What stays
//!   keeps its order, so per-bed order and increasing `seq` hold;
//! - readings messages queue in order up to [`READING_CAP`] readings, or until the oldest has
//!   waited [`READING_MAX_AGE`]; past either the backlog is coalesced to the latest message per
//!   slot (the hub's: device and set of metrics of a read). The count absorbs a burst or a
//!   writer held up for tens of milliseconds at a high rate without losing a reading; the age
//!   keeps a client that takes less than it is sent at a low rate (a weak tablet) from showing
//!   numbers that grow ever older, as a count alone would let it (4096 readings are 40 s of a
//!   room's oximeters at 100 readings/s);
//! - a client is cut off only when [`PRIORITY_CAP`] messages that cannot be coalesced are
//!   pending (it reconnects and gets a fresh snapshot); one that takes nothing at all is closed
//!   by its connection task's send timeout (src/api).
//!
//! Messages are shared `Bytes`, serialized once for every client. The counters in
//! [`DeliveryStats`] are plain atomics shared by every queue of a hub, for `/healthz` and a
//! metrics exporter.

use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Priority messages that cannot be coalesced (new alarms, priority rises, session events)
/// a client may have pending before it is cut off.
pub const PRIORITY_CAP: usize = 20_000;
/// Priority backlog at which superseded alarm and status messages start being coalesced.
pub const COALESCE_AT: usize = 256;
/// Readings a client may have pending before its backlog is coalesced (counted as readings,
/// however many messages carry them). At 25 000 Masimo lines/s (three readings each: SpO2, PR,
/// PI) it is ~440 ms of readings, ~190 ms at seven readings a line: a writer task held up by the
/// scheduler for tens of milliseconds on a busy 2-core machine (63 ms was seen in the overload
/// bench) loses nothing. With 4096 (55 ms at that rate) such a stall coalesced readings away
/// although the client kept up. The messages are shared with every other client and the
/// replay ring, so the bound's memory is a client's share of pointers, or at most ~5 MB of
/// messages one slow client alone holds.
pub const READING_CAP: usize = 32_768;
/// How long the oldest readings message may wait before the backlog is coalesced, whatever its
/// size; at most once per this long (each time to the latest message per slot), so a client
/// behind at a low rate shows readings at most about twice this old.
pub const READING_MAX_AGE: Duration = Duration::from_millis(500);

/// Which policy a message falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// An alarm event about alarm `id`, at priority `rank` (0 low, 1 medium, 2 high). `new`
    /// for `raised`; `last` for `cleared` (the id is forgotten after it).
    Alarm {
        id: u64,
        rank: u8,
        new: bool,
        last: bool,
    },
    /// A device's connection status: a later one for the same device supersedes it.
    Status { device: u16 },
    /// Never coalesced, ahead of readings (session events, audio pauses, limits changes).
    Priority,
    /// Coalescable per slot (the hub's: device and the read's set of metrics) for a slow
    /// client; carries `n` readings (the cap counts readings, not messages).
    Reading { slot: u32, n: u32 },
}

impl Class {
    /// Whether the message goes in the priority lane (everything but readings).
    pub fn is_priority(self) -> bool {
        !matches!(self, Class::Reading { .. })
    }
}

/// Delivery counters of every client of a hub (monotonic, except the gauges).
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Readings coalesced away, all clients.
    pub coalesced_readings: AtomicU64,
    /// Superseded `alarm` messages coalesced away, all clients.
    pub coalesced_alarms: AtomicU64,
    /// Superseded `device_status` messages coalesced away, all clients.
    pub coalesced_status: AtomicU64,
    /// Clients cut off because [`PRIORITY_CAP`] messages were pending.
    pub clients_cut_off: AtomicU64,
    /// Messages handed to client queues, all clients.
    pub queued: AtomicU64,
}

/// A plain copy of a hub's delivery state (for `/healthz` and metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeliverySummary {
    pub clients: usize,
    /// Priority messages pending, summed over clients, and the largest one client has.
    pub pending_priority: usize,
    pub max_pending_priority: usize,
    /// Readings pending, summed over clients, and the largest one client has.
    pub pending_readings: usize,
    pub max_pending_readings: usize,
    pub coalesced_readings: u64,
    pub coalesced_alarms: u64,
    pub coalesced_status: u64,
    pub clients_cut_off: u64,
    pub queued: u64,
    /// The bounds of every queue.
    pub priority_cap: usize,
    pub reading_cap: usize,
    /// How long a readings message may wait before the backlog is coalesced, in ms.
    pub reading_max_age_ms: u64,
}

impl DeliveryStats {
    /// The counters, plus the depths of `queues`.
    pub fn summary<'a>(&self, queues: impl Iterator<Item = &'a ClientQueue>) -> DeliverySummary {
        let mut s = DeliverySummary {
            coalesced_readings: self.coalesced_readings.load(Ordering::Relaxed),
            coalesced_alarms: self.coalesced_alarms.load(Ordering::Relaxed),
            coalesced_status: self.coalesced_status.load(Ordering::Relaxed),
            clients_cut_off: self.clients_cut_off.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            priority_cap: PRIORITY_CAP,
            reading_cap: READING_CAP,
            reading_max_age_ms: READING_MAX_AGE.as_millis() as u64,
            ..DeliverySummary::default()
        };
        for q in queues {
            let (p, r) = q.pending();
            s.clients += 1;
            s.pending_priority += p;
            s.pending_readings += r;
            s.max_pending_priority = s.max_pending_priority.max(p);
            s.max_pending_readings = s.max_pending_readings.max(r);
        }
        s
    }
}

/// What a queued priority message may be coalesced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Alarm(u64),
    Status(u16),
}

#[derive(Debug)]
struct Entry {
    key: Option<Key>,
    /// Never coalesced away.
    keep: bool,
    /// `None` once coalesced away (skipped by `pop`, removed by compaction).
    msg: Option<Bytes>,
}

#[derive(Debug, Default)]
struct State {
    priority: VecDeque<Entry>,
    /// The position of `priority[0]` among every priority message ever queued.
    head: u64,
    /// Live (not coalesced) entries in `priority`.
    live: usize,
    /// The position of the latest queued message per key.
    latest: HashMap<Key, u64>,
    /// Readings messages: (slot, readings in it, message, when queued).
    readings: VecDeque<(u32, u32, Bytes, Instant)>,
    /// When the readings backlog was last coalesced for its age.
    aged_at: Option<Instant>,
    /// Readings pending: the sum of `n` over `readings`.
    reading_count: usize,
    /// The priority of the latest message queued for each alarm not yet cleared.
    ranks: HashMap<u64, u8>,
    /// Entries that cannot be coalesced, pending.
    kept: usize,
    coalesced: u64,
    coalesced_priority: u64,
    closed: Option<String>,
}

/// A client's queue. The hub pushes; the client's connection task pops.
#[derive(Debug, Default)]
pub struct ClientQueue {
    state: Mutex<State>,
    notify: Notify,
    stats: Arc<DeliveryStats>,
}

/// What the connection task should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Send this message.
    Send(Bytes),
    /// Nothing queued: wait for [`ClientQueue::notified`].
    Empty,
    /// The client was cut off; close the connection with this reason.
    Closed(String),
}

impl ClientQueue {
    /// A queue that counts into `stats` (shared by every client of a hub).
    pub fn with_stats(stats: Arc<DeliveryStats>) -> ClientQueue {
        ClientQueue {
            state: Mutex::default(),
            notify: Notify::new(),
            stats,
        }
    }

    /// Queues a message under its class's policy and wakes the connection task.
    pub fn push(&self, class: Class, msg: Bytes) {
        self.push_at(class, msg, None);
    }

    /// [`ClientQueue::push`] with the readings lane's clock given (`None`: read when a reading
    /// is queued; the other classes do not need it).
    pub fn push_at(&self, class: Class, msg: Bytes, now: Option<Instant>) {
        {
            let mut s = lock(&self.state);
            if s.closed.is_some() {
                return;
            }
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
            match class {
                Class::Reading { slot, n } => {
                    let now = now.unwrap_or_else(Instant::now);
                    let stale = s
                        .readings
                        .front()
                        .is_some_and(|f| now.saturating_duration_since(f.3) >= READING_MAX_AGE)
                        && s.aged_at
                            .is_none_or(|t| now.saturating_duration_since(t) >= READING_MAX_AGE);
                    if stale {
                        s.aged_at = Some(now);
                    }
                    if s.reading_count >= READING_CAP || stale {
                        let before = s.reading_count;
                        coalesce_readings(&mut s.readings);
                        s.reading_count = s.readings.iter().map(|r| r.1 as usize).sum();
                        let gone = (before - s.reading_count) as u64;
                        s.coalesced += gone;
                        self.stats
                            .coalesced_readings
                            .fetch_add(gone, Ordering::Relaxed);
                    }
                    s.reading_count += n as usize;
                    s.readings.push_back((slot, n, msg, now));
                }
                Class::Priority => {
                    s.push_priority(None, true, msg);
                }
                Class::Status { device } => {
                    if s.push_priority(Some(Key::Status(device)), false, msg) {
                        self.stats.coalesced_status.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Class::Alarm {
                    id,
                    rank,
                    new,
                    last,
                } => {
                    let rises = match s.ranks.get(&id) {
                        None => true,
                        Some(r) => rank > *r,
                    };
                    if last {
                        s.ranks.remove(&id);
                    } else {
                        s.ranks.insert(id, rank);
                    }
                    if s.push_priority(Some(Key::Alarm(id)), new || rises, msg) {
                        self.stats.coalesced_alarms.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if s.kept > PRIORITY_CAP {
                s.closed = Some(format!(
                    "client too slow: {PRIORITY_CAP} new alarms and other messages that cannot \
                     be coalesced pending; reconnect for a fresh snapshot"
                ));
                self.stats.clients_cut_off.fetch_add(1, Ordering::Relaxed);
                *s = State {
                    closed: s.closed.take(),
                    ..State::default()
                };
            }
        }
        self.notify.notify_one();
    }

    /// The next message to send: priority first.
    pub fn pop(&self) -> Next {
        let mut s = lock(&self.state);
        if let Some(reason) = &s.closed {
            return Next::Closed(reason.clone());
        }
        while let Some(e) = s.priority.pop_front() {
            s.head += 1;
            let Some(msg) = e.msg else { continue };
            s.live -= 1;
            if e.keep {
                s.kept -= 1;
            }
            if s.priority.is_empty() {
                s.latest.clear();
            }
            return Next::Send(msg);
        }
        match s.readings.pop_front() {
            Some((_, n, m, _)) => {
                s.reading_count -= n as usize;
                Next::Send(m)
            }
            None => Next::Empty,
        }
    }

    /// Waits until something is pushed (or was pushed since the last wait).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// How many readings were coalesced away for this client so far.
    pub fn coalesced(&self) -> u64 {
        lock(&self.state).coalesced
    }

    /// How many superseded alarm and status messages were coalesced away for this client.
    pub fn coalesced_priority(&self) -> u64 {
        lock(&self.state).coalesced_priority
    }

    /// Pending: priority messages, readings (in readings messages).
    pub fn pending(&self) -> (usize, usize) {
        let s = lock(&self.state);
        (s.live, s.reading_count)
    }
}

impl State {
    /// Queues a priority message; with a backlog, the pending message it supersedes (same
    /// key, not to be kept) is coalesced away. Returns whether one was.
    fn push_priority(&mut self, key: Option<Key>, keep: bool, msg: Bytes) -> bool {
        let keep = keep || key.is_none();
        let mut dropped = false;
        if let Some(k) = key {
            let pos = self.head + self.priority.len() as u64;
            if let Some(prev) = self.latest.insert(k, pos)
                && self.live >= COALESCE_AT
                && let Some(e) = prev
                    .checked_sub(self.head)
                    .and_then(|i| self.priority.get_mut(i as usize))
                && !e.keep
                && e.msg.is_some()
            {
                e.msg = None;
                self.live -= 1;
                self.coalesced_priority += 1;
                dropped = true;
            }
        }
        if keep {
            self.kept += 1;
        }
        self.live += 1;
        self.priority.push_back(Entry {
            key,
            keep,
            msg: Some(msg),
        });
        // Coalesced entries are removed once they outnumber the live ones.
        let dead = self.priority.len() - self.live;
        if dead > COALESCE_AT && dead > self.live {
            self.priority.retain(|e| e.msg.is_some());
            self.latest.clear();
            for (i, e) in self.priority.iter().enumerate() {
                if let Some(k) = e.key {
                    self.latest.insert(k, self.head + i as u64);
                }
            }
        }
        dropped
    }
}

/// Keeps only the latest message per slot, in the order of their latest arrival.
fn coalesce_readings(q: &mut VecDeque<(u32, u32, Bytes, Instant)>) {
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    while let Some(r) = q.pop_back() {
        if seen.insert(r.0) {
            kept.push(r);
        }
    }
    q.extend(kept.into_iter().rev());
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: a queue must keep
/// working for the other clients whatever happened in one task.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn drain(q: &ClientQueue) -> Vec<String> {
        let mut out = Vec::new();
        while let Next::Send(m) = q.pop() {
            out.push(String::from_utf8(m.to_vec()).unwrap());
        }
        out
    }

    fn alarm(id: u64, rank: u8, new: bool, last: bool) -> Class {
        Class::Alarm {
            id,
            rank,
            new,
            last,
        }
    }

    #[test]
    fn priority_messages_go_out_ahead_of_queued_readings() {
        let q = ClientQueue::default();
        q.push(Class::Reading { slot: 1, n: 1 }, b("r1"));
        q.push(Class::Reading { slot: 2, n: 1 }, b("r2"));
        q.push(Class::Priority, b("alarm"));
        assert_eq!(drain(&q), ["alarm", "r1", "r2"]);
    }

    #[test]
    fn a_client_that_keeps_up_gets_every_update() {
        let q = ClientQueue::default();
        q.push(alarm(1, 1, true, false), b("raised"));
        for i in 0..COALESCE_AT - 2 {
            q.push(alarm(1, 1, false, false), b(&format!("u{i}")));
        }
        assert_eq!(drain(&q).len(), COALESCE_AT - 1);
        assert_eq!(q.coalesced_priority(), 0);
    }

    #[test]
    fn a_slow_client_gets_the_latest_reading_per_slot_and_every_alarm() {
        let q = ClientQueue::default();
        for i in 0..READING_CAP + 10 {
            q.push(
                Class::Reading {
                    slot: (i % 3) as u32,
                    n: 1,
                },
                b(&format!("r{i}")),
            );
            if i % 1000 == 0 {
                q.push(alarm(i as u64, 2, true, false), b(&format!("a{i}")));
            }
        }
        let out = drain(&q);
        let alarms: Vec<String> = out.iter().filter(|m| m.starts_with('a')).cloned().collect();
        let every: Vec<String> = (0..READING_CAP + 10)
            .step_by(1000)
            .map(|i| format!("a{i}"))
            .collect();
        assert_eq!(alarms, every);
        let readings: Vec<_> = out.iter().filter(|m| m.starts_with('r')).collect();
        // After coalescing at the cap: the latest of each of the 3 slots, then the 10 newer ones.
        assert_eq!(readings.len(), 3 + 10);
        assert_eq!(
            readings.last().unwrap().as_str(),
            format!("r{}", READING_CAP + 9)
        );
        assert_eq!(q.coalesced(), (READING_CAP - 3) as u64);
    }

    /// A backlog of updates about one alarm shrinks to its latest state, but the raise and
    /// every rise of its priority stay, in order.
    /// A backlog that is not coalesced: a status message from each of `COALESCE_AT` devices.
    fn backlog(q: &ClientQueue) {
        for d in 0..COALESCE_AT as u16 {
            q.push(Class::Status { device: 1000 + d }, b("backlog"));
        }
    }

    #[test]
    fn coalescing_keeps_the_raise_every_priority_rise_and_the_latest_state() {
        let q = ClientQueue::default();
        backlog(&q);
        q.push(alarm(7, 1, true, false), b("raised medium"));
        for i in 0..1000 {
            q.push(alarm(7, 1, false, false), b(&format!("medium value {i}")));
        }
        q.push(alarm(7, 2, false, false), b("rose to high"));
        for i in 0..1000 {
            q.push(alarm(7, 2, false, false), b(&format!("high value {i}")));
        }
        // Falling back to medium and rising again to high: the second rise is kept too.
        q.push(alarm(7, 1, false, false), b("back to medium"));
        q.push(alarm(7, 2, false, false), b("high again"));
        q.push(alarm(7, 2, false, false), b("acknowledged"));
        let out: Vec<String> = drain(&q).into_iter().filter(|m| m != "backlog").collect();
        assert_eq!(
            out,
            [
                "raised medium",
                "rose to high",
                "high again",
                "acknowledged"
            ]
        );
        assert_eq!(q.coalesced_priority(), 2001);
    }

    /// A flood of updates about some alarms never costs another alarm's raise or clear, and
    /// what is delivered keeps the order it was published in.
    #[test]
    fn coalescing_never_drops_a_new_alarm_and_keeps_publication_order() {
        let q = ClientQueue::default();
        let mut expected_new = Vec::new();
        // Every message starts with its publication number.
        let mut n = 0u32;
        let mut push = |class: Class, what: String| {
            n += 1;
            let m = format!("{n:06} {what}");
            q.push(class, b(&m));
            m
        };
        for i in 0..5000u64 {
            // Alarms 1 and 2 get a value update every step.
            push(alarm(1, 1, i == 0, false), format!("a1 {i}"));
            push(alarm(2, 0, i == 0, false), format!("a2 {i}"));
            if i % 50 == 0 {
                let id = 100 + i;
                expected_new.push(push(alarm(id, 2, true, false), format!("raised {id}")));
                expected_new.push(push(alarm(id, 2, false, true), format!("cleared {id}")));
            }
            if i % 100 == 0 {
                push(Class::Status { device: 3 }, format!("status {i}"));
                push(Class::Priority, format!("session {i}"));
            }
        }
        let out = drain(&q);
        // In publication order.
        let mut sorted = out.clone();
        sorted.sort();
        assert_eq!(out, sorted);
        let new: Vec<_> = out
            .iter()
            .filter(|m| m.contains("raised") || m.contains("cleared"))
            .cloned()
            .collect();
        assert_eq!(new, expected_new);
        assert_eq!(out.iter().filter(|m| m.contains("session")).count(), 50);
        // The latest state of each alarm and device is there, and last of its kind.
        let last = |what: &str| out.iter().rfind(|m| m.contains(what)).unwrap().clone();
        assert!(last("a1 ").ends_with("a1 4999"));
        assert!(last("a2 ").ends_with("a2 4999"));
        assert!(last("status").ends_with("status 4900"));
        // Coalesced: bounded well below what was pushed.
        assert!(out.len() < 1000, "{} messages left", out.len());
        assert!(q.coalesced_priority() > 9000);
    }

    #[test]
    fn a_client_that_lets_new_alarms_pile_up_is_cut_off_not_skipped() {
        let stats = Arc::new(DeliveryStats::default());
        let q = ClientQueue::with_stats(stats.clone());
        for i in 0..=PRIORITY_CAP as u64 {
            q.push(alarm(i, 2, true, false), b("a"));
        }
        match q.pop() {
            Next::Closed(reason) => assert!(reason.contains("too slow"), "{reason}"),
            other => panic!("expected Closed, got {other:?}"),
        }
        assert_eq!(stats.clients_cut_off.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_summary_shows_depths_and_counts() {
        let stats = Arc::new(DeliveryStats::default());
        let q = ClientQueue::with_stats(stats.clone());
        for i in 0..READING_CAP + 1 {
            q.push(Class::Reading { slot: 0, n: 1 }, b(&format!("r{i}")));
        }
        q.push(Class::Status { device: 1 }, b("s"));
        let s = stats.summary([&q].into_iter());
        assert_eq!(s.clients, 1);
        assert_eq!(s.pending_priority, 1);
        assert_eq!(s.pending_readings, 2);
        assert_eq!(s.coalesced_readings, READING_CAP as u64 - 1);
        assert_eq!(s.queued, READING_CAP as u64 + 2);
    }

    /// A client that keeps up, held back for a moment at a high rate (its writer task not
    /// scheduled for tens of milliseconds): everything it is sent arrives, nothing coalesced.
    #[test]
    fn a_short_stall_at_a_high_rate_loses_no_reading() {
        let q = ClientQueue::default();
        let t0 = Instant::now();
        // 63 ms of 25 000 lines/s of seven readings (a line with more parameters than the
        // bench's three), a message per line, 100 devices.
        let lines = 25_000 * 63 / 1000;
        for i in 0..lines {
            let at = t0 + Duration::from_micros(40 * i as u64);
            let class = Class::Reading {
                slot: (i % 100) as u32,
                n: 7,
            };
            q.push_at(class, b(&format!("r{i}")), Some(at));
        }
        assert_eq!(drain(&q).len(), lines);
        assert_eq!(q.coalesced(), 0);
    }

    /// A client that takes fewer readings than it is sent, at a low rate, far below the count:
    /// once its oldest pending message is READING_MAX_AGE old the backlog is coalesced to the
    /// latest per slot, so what it is shown stays current; and at most once per that age.
    #[test]
    fn a_backlog_older_than_the_age_bound_is_coalesced_to_the_latest() {
        let q = ClientQueue::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let reading = |slot| Class::Reading { slot, n: 3 };
        // Two devices' reads, for a client that took nothing for 0.6 s.
        q.push_at(reading(1), b("a1"), Some(ms(0)));
        q.push_at(reading(2), b("b1"), Some(ms(10)));
        q.push_at(reading(1), b("a2"), Some(ms(300)));
        q.push_at(reading(2), b("b2"), Some(ms(310)));
        assert_eq!(q.coalesced(), 0, "younger than the bound: kept in order");
        q.push_at(reading(1), b("a3"), Some(ms(600)));
        assert_eq!(
            q.coalesced(),
            6,
            "a1 and b1 gave way to their slots' latest"
        );
        // Within the next 500 ms no second pass, however old the front is.
        q.push_at(reading(1), b("a4"), Some(ms(900)));
        assert_eq!(q.coalesced(), 6);
        assert_eq!(drain(&q), ["a2", "b2", "a3", "a4"]);
        // A message alone, however old, is not coalesced with anything later.
        q.push_at(reading(1), b("a5"), Some(ms(2000)));
        q.push_at(reading(2), b("b5"), Some(ms(2600)));
        assert_eq!(drain(&q), ["a5", "b5"]);
        assert_eq!(q.coalesced(), 6);
    }
}
