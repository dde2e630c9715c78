//! Bounded, coalescing queues for the notifier: one into the notifier (from the alarm path,
//! never waiting) and one into each target's task. Under overload a queue holds at most one
//! message per alarm: a newer message of the same alarm replaces the waiting one (the page for
//! the latest state), except that a page never replaces a waiting page of a higher rank
//! (priority, then escalation level), so a transition to a higher priority or level is never
//! lost. A new alarm always gets its own place; when [`Coalescer::cap`] alarms are waiting,
//! the least important waiting message goes (an end-of-alarm update before any page, then the
//! lowest-ranked, oldest page), and that is counted. While the consumer keeps up nothing
//! waits, so nothing is coalesced.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// How a message ranks against another of the same alarm.
pub trait Coalesce {
    /// The alarm it is about; `None`: never merged with another.
    fn key(&self) -> Option<u64>;
    /// A page's rank (priority, escalation level); `None` for an end-of-alarm update.
    fn rank(&self) -> Option<(u8, u8)>;
}

/// What became of a pushed message, and the message that lost its place, if any (for the
/// caller to undo what it recorded for it, e.g. an outbox row).
#[derive(Debug, PartialEq)]
pub enum Pushed<T> {
    /// Waiting in its own place.
    Queued,
    /// Merged with the waiting message of its alarm: the one returned is no longer waiting
    /// (it may be the new one, when the waiting page ranks higher).
    Coalesced(T),
    /// The queue was full: the returned message (the least important) was dropped.
    Dropped(T),
}

/// The pure queue.
#[derive(Debug)]
pub struct Coalescer<T> {
    order: VecDeque<u64>,
    msgs: HashMap<u64, T>,
    cap: usize,
    /// Keys for messages without an alarm, above every alarm id (ids stay below 2^53).
    next_anon: u64,
}

impl<T: Coalesce> Coalescer<T> {
    /// A queue holding messages of at most `cap` alarms (at least 1).
    pub fn new(cap: usize) -> Coalescer<T> {
        Coalescer {
            order: VecDeque::new(),
            msgs: HashMap::new(),
            cap: cap.max(1),
            next_anon: 1 << 63,
        }
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// The bound.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Adds a message (see the module doc).
    pub fn push(&mut self, msg: T) -> Pushed<T> {
        let key = match msg.key() {
            Some(k) => k,
            None => {
                self.next_anon = self.next_anon.wrapping_add(1) | (1 << 63);
                self.next_anon
            }
        };
        if let Some(old) = self.msgs.get_mut(&key) {
            let keep_old = matches!((old.rank(), msg.rank()), (Some(o), Some(n)) if n < o);
            if keep_old {
                return Pushed::Coalesced(msg);
            }
            return Pushed::Coalesced(std::mem::replace(old, msg));
        }
        let mut dropped = None;
        if self.msgs.len() >= self.cap {
            // The least important waiting message, oldest first: updates, then low pages.
            let importance = |m: &T| m.rank().map_or((0, 0, 0), |(p, l)| (1, p, l));
            let victim = self
                .order
                .iter()
                .enumerate()
                .filter_map(|(i, k)| self.msgs.get(k).map(|m| (i, importance(m))))
                .min_by_key(|(i, imp)| (*imp, *i));
            match victim {
                Some((i, imp)) if imp <= importance(&msg) => {
                    if let Some(k) = self.order.remove(i) {
                        dropped = self.msgs.remove(&k);
                    }
                }
                _ => return Pushed::Dropped(msg),
            }
        }
        self.order.push_back(key);
        self.msgs.insert(key, msg);
        match dropped {
            Some(d) => Pushed::Dropped(d),
            None => Pushed::Queued,
        }
    }

    /// Takes every waiting message, in the order their alarms first came.
    pub fn take_all(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.msgs.len());
        for k in self.order.drain(..) {
            if let Some(m) = self.msgs.remove(&k) {
                out.push(m);
            }
        }
        out
    }
}

/// A [`Coalescer`] shared between a producer that never waits and one async consumer, with
/// its depth and counts in [`crate::overload::NotifyLoad`] when given.
pub struct Inbox<T> {
    q: Mutex<Coalescer<T>>,
    wake: tokio::sync::Notify,
    load: Option<std::sync::Arc<crate::overload::Overload>>,
}

impl<T: Coalesce> Inbox<T> {
    /// An inbox of `cap` alarms; `load` counts its depth, merges and drops.
    pub fn new(cap: usize, load: Option<std::sync::Arc<crate::overload::Overload>>) -> Inbox<T> {
        Inbox {
            q: Mutex::new(Coalescer::new(cap)),
            wake: tokio::sync::Notify::new(),
            load,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Coalescer<T>> {
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a message without waiting.
    pub fn push(&self, msg: T) -> Pushed<T> {
        let mut q = self.lock();
        let r = q.push(msg);
        let depth = q.len();
        drop(q);
        if let Some(l) = &self.load {
            use std::sync::atomic::Ordering::Relaxed;
            l.notify.depth.store(depth, Relaxed);
            match &r {
                Pushed::Queued => {}
                Pushed::Coalesced(_) => {
                    l.notify.coalesced.fetch_add(1, Relaxed);
                }
                Pushed::Dropped(_) => {
                    l.notify.dropped.fetch_add(1, Relaxed);
                }
            }
        }
        if matches!(r, Pushed::Dropped(_)) {
            tracing::error!(
                "notification queue full: the least important waiting message was dropped"
            );
        }
        self.wake.notify_one();
        r
    }

    /// Takes every waiting message (none if there are none).
    pub fn take_all(&self) -> Vec<T> {
        let out = self.lock().take_all();
        if let Some(l) = &self.load {
            l.notify
                .depth
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
        out
    }

    /// Waits until a message is waiting, then takes them all.
    pub async fn recv_all(&self) -> Vec<T> {
        loop {
            let out = self.take_all();
            if !out.is_empty() {
                return out;
            }
            self.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (alarm, rank or None for an end-of-alarm update, label)
    #[derive(Debug, Clone, PartialEq)]
    struct M(Option<u64>, Option<(u8, u8)>, &'static str);

    impl Coalesce for M {
        fn key(&self) -> Option<u64> {
            self.0
        }
        fn rank(&self) -> Option<(u8, u8)> {
            self.1
        }
    }

    fn page(alarm: u64, prio: u8, level: u8, label: &'static str) -> M {
        M(Some(alarm), Some((prio, level)), label)
    }

    fn resolved(alarm: u64, label: &'static str) -> M {
        M(Some(alarm), None, label)
    }

    fn labels(q: &mut Coalescer<M>) -> Vec<&'static str> {
        q.take_all().into_iter().map(|m| m.2).collect()
    }

    #[test]
    fn a_consumer_that_keeps_up_gets_every_message() {
        let mut q = Coalescer::new(8);
        assert_eq!(q.push(page(1, 1, 0, "a")), Pushed::Queued);
        assert_eq!(labels(&mut q), ["a"]);
        assert_eq!(q.push(page(1, 1, 1, "b")), Pushed::Queued);
        assert_eq!(labels(&mut q), ["b"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_backlog_keeps_one_message_per_alarm_the_latest_state() {
        let mut q = Coalescer::new(8);
        q.push(page(1, 1, 0, "1 raised"));
        q.push(page(2, 2, 0, "2 raised"));
        assert_eq!(
            q.push(page(1, 1, 1, "1 escalated")),
            Pushed::Coalesced(page(1, 1, 0, "1 raised"))
        );
        q.push(resolved(2, "2 cleared"));
        assert_eq!(labels(&mut q), ["1 escalated", "2 cleared"]);
    }

    #[test]
    fn a_higher_priority_or_level_page_is_never_replaced_by_a_lower_one() {
        let mut q = Coalescer::new(8);
        q.push(page(1, 2, 1, "high level 1"));
        assert_eq!(
            q.push(page(1, 1, 2, "medium level 2")),
            Pushed::Coalesced(page(1, 1, 2, "medium level 2"))
        );
        q.push(page(1, 2, 1, "high level 1 again"));
        // An alarm acknowledged, then active again at a higher priority: its page stands.
        q.push(resolved(1, "acknowledged"));
        q.push(page(1, 2, 0, "high again"));
        assert_eq!(labels(&mut q), ["high again"]);
    }

    #[test]
    fn a_full_queue_drops_an_end_update_or_the_lowest_page_never_a_new_alarm_for_them() {
        let mut q = Coalescer::new(3);
        q.push(page(1, 2, 0, "high"));
        q.push(resolved(2, "2 cleared"));
        q.push(page(3, 1, 0, "medium"));
        assert_eq!(
            q.push(page(4, 1, 0, "new medium")),
            Pushed::Dropped(resolved(2, "2 cleared"))
        );
        assert_eq!(
            q.push(page(5, 2, 0, "new high")),
            Pushed::Dropped(page(3, 1, 0, "medium"))
        );
        // Nothing less important than an end update: a new one is the one dropped.
        assert_eq!(
            q.push(resolved(6, "6 cleared")),
            Pushed::Dropped(resolved(6, "6 cleared"))
        );
        assert_eq!(labels(&mut q), ["high", "new medium", "new high"]);
        assert_eq!(q.cap(), 3);
    }

    #[test]
    fn messages_without_an_alarm_are_never_merged() {
        let mut q = Coalescer::new(8);
        q.push(M(None, Some((1, 0)), "a"));
        q.push(M(None, Some((1, 0)), "b"));
        assert_eq!(labels(&mut q), ["a", "b"]);
    }
}
