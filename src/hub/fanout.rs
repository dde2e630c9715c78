//! Publication: alarm events and readings serialized once (with `"seq":0`) into a bed's
//! outbox under the bed's lock, then numbered and pushed to every client's queue and the
//! replay ring under the fan-out lock; alarm events also go to the consumers off the alarm
//! path (store, notifier) through the hub's [`Dispatch`] channel.

use super::dispatch::DispatchQueue;
use super::queue::{Class, ClientQueue};
use super::{Dispatch, Dispatched, REPLAY_BYTES, REPLAY_CAP, lock, wire};
use crate::alarm::{AlarmEvent, BedAlarms, EventKind};
use crate::config::Config;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Messages serialized with `"seq":0`, waiting for their sequence numbers.
#[derive(Default)]
pub(super) struct Outbox {
    pub(super) buf: Vec<u8>,
    /// Per message: its class, where it ends in `buf`, where its `0` is.
    pub(super) items: Vec<(Class, usize, usize)>,
}

impl Outbox {
    /// Serializes `msg` (whose `seq` is 0) at the end; returns its index.
    pub(super) fn add(&mut self, class: Class, msg: &impl serde::Serialize) -> Option<usize> {
        self.add_with(class, |buf| serde_json::to_writer(buf, msg))
    }

    /// Appends a message (whose `seq` is 0) written by `write`; returns its index.
    pub(super) fn add_with(
        &mut self,
        class: Class,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>,
    ) -> Option<usize> {
        let start = self.buf.len();
        if let Err(e) = write(&mut self.buf) {
            // Serializing plain numbers and strings cannot fail; if it ever did, say so.
            tracing::error!(error = %e, "message could not be serialized");
            self.buf.truncate(start);
            return None;
        }
        const SEQ0: &[u8] = b"\"seq\":0";
        let head = &self.buf[start..self.buf.len().min(start + 64)];
        let Some(at) = head.windows(SEQ0.len()).position(|w| w == SEQ0) else {
            tracing::error!("message without a seq placeholder");
            self.buf.truncate(start);
            return None;
        };
        self.items
            .push((class, self.buf.len(), start + at + SEQ0.len() - 1));
        Some(self.items.len() - 1)
    }
}

/// An alarm-event source's pending events and serialized messages (reused buffers).
#[derive(Default)]
pub(super) struct Emitter {
    /// Engine output.
    pub(super) events: Vec<AlarmEvent>,
    pub(super) out: Outbox,
    /// Per event in `events` passed to [`Emitter::stage`]: its index in `out` (None for
    /// `notify`, which only the notifier sees).
    pub(super) staged: Vec<(AlarmEvent, Option<usize>)>,
    /// The messages of the latest publish.
    pub(super) published: Vec<Bytes>,
    /// Where the numbered messages are written: each message is a slice of one allocation
    /// shared with the messages around it (freed with the last of them), so a read costs no
    /// allocation of its own (issue 10: malloc and free were a quarter of publishing at
    /// 25 000 lines/s). A new chunk of [`ARENA_CHUNK`] bytes when the room left is too small.
    arena: BytesMut,
}

/// The size of an [`Emitter`]'s arena chunk: ~20 `readings` messages of a Masimo line. A
/// chunk lives as long as any of its messages (in a client's queue, the replay ring), so a
/// bed holds at most this much beyond the messages it still has.
const ARENA_CHUNK: usize = 8 << 10;

impl Emitter {
    /// Serializes the engine's pending events into the outbox (so they go out ahead of what
    /// is added after them).
    pub(super) fn stage(&mut self, cfg: &Config) {
        for e in self.events.drain(..) {
            let idx = match (&e.kind, &e.alarm) {
                (EventKind::Notify { .. }, _) => None,
                (kind, alarm) => {
                    let class = match alarm {
                        Some(a) => Class::Alarm {
                            id: a.id.0,
                            rank: a.priority as u8,
                            new: matches!(kind, EventKind::Raised),
                            last: matches!(kind, EventKind::Cleared),
                        },
                        None => Class::Priority,
                    };
                    match self.out.add(class, &wire::AlarmMsg::new(cfg, 0, &e)) {
                        Some(i) => Some(i),
                        None => continue,
                    }
                }
            };
            self.staged.push((e, idx));
        }
    }

    /// Numbers and publishes the outbox, then hands the staged events (and, for `bed`, its
    /// new state) to the sink (with `to_sink`) and returns them.
    pub(super) fn publish(
        &mut self,
        cfg: &Config,
        fan: &Mutex<Fanout>,
        sink: Option<&Arc<DispatchQueue>>,
        to_sink: bool,
        bed: Option<&BedAlarms>,
    ) -> Vec<Dispatched> {
        self.stage(cfg);
        self.published.clear();
        let first = if self.out.items.is_empty() {
            0
        } else {
            // The outbox's bytes with each `0` replaced by a number of up to 20 digits.
            let need = self.out.buf.len() + 20 * self.out.items.len();
            if self.arena.capacity() < need {
                self.arena = BytesMut::with_capacity(need.max(ARENA_CHUNK));
            }
            lock(fan).publish(&mut self.out, &mut self.arena, &mut self.published)
        };
        if self.staged.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.staged.len());
        for (event, idx) in self.staged.drain(..) {
            let (seq, json) = match idx {
                Some(i) => (first + i as u64, self.published[i].clone()),
                None => match serde_json::to_vec(&wire::AlarmMsg::new(cfg, 0, &event)) {
                    Ok(v) => (0, Bytes::from(v)),
                    Err(e) => {
                        tracing::error!(error = %e, "notify event could not be serialized");
                        continue;
                    }
                },
            };
            out.push(Dispatched { event, json, seq });
        }
        self.published.clear();
        if let Some(sink) = sink {
            // Never waits: a full queue coalesces or drops (counted, `store_unwritable`).
            if to_sink {
                for d in &out {
                    sink.push(Dispatch::Event(d.clone()));
                }
            }
            // The bed these events were about has a new state to save (serialized by the
            // consumer when it takes it: one per bed waits at most).
            if let Some(engine) = bed.filter(|_| out.iter().any(|d| d.event.bed.is_some())) {
                sink.push(Dispatch::State(engine.bed()));
            }
        }
        out
    }
}

/// Sequence numbers, the replay ring and the clients.
pub(super) struct Fanout {
    pub(super) next_seq: u64,
    pub(super) replay: VecDeque<(u64, Bytes)>,
    /// The bytes of the messages in `replay`.
    pub(super) replay_bytes: usize,
    pub(super) clients: Vec<(u64, Arc<ClientQueue>)>,
    pub(super) next_client: u64,
}

impl Fanout {
    pub(super) fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Numbers the outbox's messages, splicing each number in (into `bytes`, which has room
    /// for them all: no allocation), and pushes them to every client; `published` gets them
    /// in order.
    /// Returns the first number.
    pub(super) fn publish(
        &mut self,
        out: &mut Outbox,
        bytes: &mut BytesMut,
        published: &mut Vec<Bytes>,
    ) -> u64 {
        let first = self.next_seq;
        let mut start = 0;
        for &(class, end, at) in &out.items {
            let seq = self.take_seq();
            bytes.extend_from_slice(&out.buf[start..at]);
            put_u64(bytes, seq);
            bytes.extend_from_slice(&out.buf[at + 1..end]);
            let msg = bytes.split().freeze();
            self.push(seq, class, msg.clone());
            published.push(msg);
            start = end;
        }
        out.buf.clear();
        out.items.clear();
        first
    }

    pub(super) fn push(&mut self, seq: u64, class: Class, bytes: Bytes) {
        while self.replay.len() >= REPLAY_CAP
            || (!self.replay.is_empty() && self.replay_bytes + bytes.len() > REPLAY_BYTES)
        {
            if let Some((_, old)) = self.replay.pop_front() {
                self.replay_bytes -= old.len();
            }
        }
        self.replay_bytes += bytes.len();
        crate::metrics::global().published(seq);
        for (_, q) in &self.clients {
            q.push(class, bytes.clone());
        }
        self.replay.push_back((seq, bytes));
    }
}

/// Appends the decimal digits of `n`.
fn put_u64(out: &mut BytesMut, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}
