//! One subscriber's outgoing queue, with the delivery policy of DESIGN.md:
//! - priority messages (alarms, device status, session events) are never dropped and go out
//!   ahead of readings; if a client lets more than [`PRIORITY_CAP`] of them pile up it is
//!   disconnected (it reconnects and gets a fresh snapshot), never silently skipped;
//! - readings queue in order up to [`READING_CAP`]; past that the client is slow and its
//!   backlog is coalesced to the latest reading per (device, metric).
//!
//! Messages are shared `Bytes`, serialized once for every client.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// Priority messages a client may have pending before it is cut off.
pub const PRIORITY_CAP: usize = 10_000;
/// Readings a client may have pending before its backlog is coalesced.
pub const READING_CAP: usize = 4_096;

/// Which policy a message falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Never dropped, ahead of readings.
    Priority,
    /// Coalescable per slot (device, metric) for a slow client.
    Reading { slot: u32 },
}

#[derive(Debug, Default)]
struct State {
    priority: VecDeque<Bytes>,
    readings: VecDeque<(u32, Bytes)>,
    coalesced: u64,
    closed: Option<String>,
}

/// A client's queue. The hub pushes; the client's connection task pops.
#[derive(Debug, Default)]
pub struct ClientQueue {
    state: Mutex<State>,
    notify: Notify,
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
    /// Queues a message under its class's policy and wakes the connection task.
    pub fn push(&self, class: Class, msg: Bytes) {
        {
            let mut s = lock(&self.state);
            if s.closed.is_some() {
                return;
            }
            match class {
                Class::Priority => {
                    if s.priority.len() >= PRIORITY_CAP {
                        s.closed = Some(format!(
                            "client too slow: {PRIORITY_CAP} alarm/status messages pending; \
                             reconnect for a fresh snapshot"
                        ));
                        s.priority.clear();
                        s.readings.clear();
                    } else {
                        s.priority.push_back(msg);
                    }
                }
                Class::Reading { slot } => {
                    if s.readings.len() >= READING_CAP {
                        let before = s.readings.len();
                        coalesce(&mut s.readings);
                        s.coalesced += (before - s.readings.len()) as u64;
                    }
                    s.readings.push_back((slot, msg));
                }
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
        if let Some(m) = s.priority.pop_front() {
            return Next::Send(m);
        }
        match s.readings.pop_front() {
            Some((_, m)) => Next::Send(m),
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

    /// Messages pending (priority, readings).
    pub fn pending(&self) -> (usize, usize) {
        let s = lock(&self.state);
        (s.priority.len(), s.readings.len())
    }
}

/// Keeps only the latest message per slot, in the order of their latest arrival.
fn coalesce(q: &mut VecDeque<(u32, Bytes)>) {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<(u32, Bytes)> = Vec::new();
    while let Some((slot, m)) = q.pop_back() {
        if seen.insert(slot) {
            kept.push((slot, m));
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

    #[test]
    fn priority_messages_go_out_ahead_of_queued_readings() {
        let q = ClientQueue::default();
        q.push(Class::Reading { slot: 1 }, b("r1"));
        q.push(Class::Reading { slot: 2 }, b("r2"));
        q.push(Class::Priority, b("alarm"));
        assert_eq!(drain(&q), ["alarm", "r1", "r2"]);
    }

    #[test]
    fn a_slow_client_gets_the_latest_reading_per_slot_and_every_alarm() {
        let q = ClientQueue::default();
        for i in 0..READING_CAP + 10 {
            q.push(
                Class::Reading {
                    slot: (i % 3) as u32,
                },
                b(&format!("r{i}")),
            );
            if i % 1000 == 0 {
                q.push(Class::Priority, b(&format!("a{i}")));
            }
        }
        let out = drain(&q);
        let alarms: Vec<_> = out.iter().filter(|m| m.starts_with('a')).collect();
        assert_eq!(alarms, ["a0", "a1000", "a2000", "a3000", "a4000"]);
        let readings: Vec<_> = out.iter().filter(|m| m.starts_with('r')).collect();
        // After coalescing at the cap: the latest of each of the 3 slots, then the 10 newer ones.
        assert_eq!(readings.len(), 3 + 10);
        assert_eq!(
            readings.last().unwrap().as_str(),
            format!("r{}", READING_CAP + 9)
        );
        assert_eq!(q.coalesced(), (READING_CAP - 3) as u64);
    }

    #[test]
    fn a_client_that_lets_alarms_pile_up_is_cut_off_not_skipped() {
        let q = ClientQueue::default();
        for _ in 0..=PRIORITY_CAP {
            q.push(Class::Priority, b("a"));
        }
        match q.pop() {
            Next::Closed(reason) => assert!(reason.contains("too slow"), "{reason}"),
            other => panic!("expected Closed, got {other:?}"),
        }
    }
}
