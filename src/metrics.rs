//! The counters and latency histograms behind `GET /metrics` (Prometheus; every metric, its
//! labels and meaning: docs/metrics.md).
//!
//! A leaf module: the components count into it with one call where something happens (a
//! reading ingested, a bad frame, a reconnect, an alarm raised, a store commit, a notification
//! attempt), and the `/metrics` handler ([`crate::api::metrics`]) reads these counters together
//! with the state other components already keep (device status, current alarms, WebSocket
//! queues, the store's health) at each scrape. Nothing here blocks or allocates on the
//! alarm path: per-device counters are atomics found by index, histograms are fixed buckets.
//!
//! One registry per process ([`global`]): a process runs one daemon (tests that start several
//! in one process share the counts, which only makes them larger).
//!
//! Webhook targets register by name with [`Metrics::queue`] and keep their numbers in the
//! returned [`QueueCounters`]; the HL7 sender keeps its own in the hub's link counters, which
//! `/metrics` reads.

use crate::clock::{Mono, mono_now};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Counts kept per device (by its index in the config).
#[derive(Debug, Default)]
pub struct DeviceCounters {
    /// Measurements decoded and handed to the hub.
    pub readings: AtomicU64,
    /// Frames the decoder rejected (bad checksum, bad length, garbage it skipped).
    pub bad_frames: AtomicU64,
    /// Links lost (or attempts failed) after which the source connects again.
    pub reconnects: AtomicU64,
}

/// The numbers of one outbound queue (a webhook target, an HL7 endpoint). Its owner keeps
/// them up to date; `/metrics` reads them.
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Messages waiting to be delivered.
    pub depth: AtomicU64,
    /// Delivery attempts that failed.
    pub failures: AtomicU64,
    /// Messages delivered.
    pub delivered: AtomicU64,
    /// The endpoint is failing (its technical alarm is raised).
    pub failing: AtomicBool,
}

/// Kinds of outbound queue, the `kind` of [`Metrics::queue`].
pub const QUEUE_NOTIFY: &str = "notify";

/// Messages whose publish time is remembered for the delivery histogram: a message still
/// unsent after this many newer ones is not measured (its slot was reused).
const PROBE_SLOTS: usize = 4096;

/// Every counter and histogram; see the module docs.
#[derive(Debug)]
pub struct Metrics {
    devices: RwLock<Vec<Arc<DeviceCounters>>>,
    /// Alarms raised, by (condition, priority).
    alarms_raised: Mutex<BTreeMap<(String, &'static str), u64>>,
    queues: Mutex<BTreeMap<(&'static str, String), Arc<QueueCounters>>>,
    /// Readings coalesced away for WebSocket clients that have since disconnected (the
    /// connected ones' are read from their queues).
    pub coalesced_gone: AtomicU64,
    /// Device bytes read -> alarm decision made and its events queued to every client.
    pub decision: Histogram,
    /// Message published by the hub -> written (flushed) to a WebSocket client.
    pub delivery: Histogram,
    /// One store transaction (readings and events), begin to fsynced commit.
    pub store_commit: Histogram,
    probe: Vec<(AtomicU64, AtomicU64)>,
    /// When this registry was made (the daemon's start, near enough), wall ms.
    pub started_ms: i64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Metrics {
        Metrics {
            devices: RwLock::new(Vec::new()),
            alarms_raised: Mutex::new(BTreeMap::new()),
            queues: Mutex::new(BTreeMap::new()),
            coalesced_gone: AtomicU64::new(0),
            // 25 µs .. ~0.8 s
            decision: Histogram::new(exponential_buckets(0.000_025, 2.0, 16)),
            // 100 µs .. ~6.5 s
            delivery: Histogram::new(exponential_buckets(0.000_1, 2.0, 17)),
            // 250 µs .. ~8 s
            store_commit: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            probe: (0..PROBE_SLOTS)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
            started_ms: crate::clock::wall_ms(),
        }
    }

    /// The counters of device `idx` (its index in the config's device list).
    pub fn device(&self, idx: usize) -> Arc<DeviceCounters> {
        {
            let d = self.devices.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = d.get(idx) {
                return c.clone();
            }
        }
        let mut d = self.devices.write().unwrap_or_else(|e| e.into_inner());
        while d.len() <= idx {
            d.push(Arc::default());
        }
        d[idx].clone()
    }

    /// Every device's counters, by index (devices never counted are absent at the end).
    pub fn devices(&self) -> Vec<Arc<DeviceCounters>> {
        self.devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts `n` readings of device `idx`.
    pub fn readings(&self, idx: usize, n: usize) {
        self.device(idx)
            .readings
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts `n` bad frames of device `idx`.
    pub fn bad_frames(&self, idx: usize, n: u64) {
        if n > 0 {
            self.device(idx).bad_frames.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts a lost link (or failed attempt) of device `idx` that the source retries.
    pub fn reconnect(&self, idx: usize) {
        self.device(idx).reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an alarm raised.
    pub fn alarm_raised(&self, condition: String, priority: &'static str) {
        let mut m = self.alarms_raised.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((condition, priority)).or_insert(0) += 1;
    }

    /// Counts an alarm-system event if it raised an alarm.
    pub fn event(&self, e: &crate::alarm::AlarmEvent) {
        if let (crate::alarm::EventKind::Raised, Some(a)) = (&e.kind, e.alarm) {
            self.alarm_raised(a.condition.to_string(), priority_label(a.priority));
        }
    }

    /// Alarms raised so far, by (condition, priority).
    pub fn alarms_raised(&self) -> Vec<((String, &'static str), u64)> {
        let m = self.alarms_raised.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// The counters of outbound queue `name` of `kind` ([`QUEUE_NOTIFY`]; HL7 endpoints keep
    /// theirs in the hub's [`crate::hub::link::LinkStats`]),
    /// created on first use. Its owner keeps the returned handle and updates it.
    pub fn queue(&self, kind: &'static str, name: &str) -> Arc<QueueCounters> {
        let mut m = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((kind, name.to_owned())).or_default().clone()
    }

    /// Every registered queue: (kind, name, counters).
    pub fn queues(&self) -> Vec<(&'static str, String, Arc<QueueCounters>)> {
        let m = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .map(|((k, n), c)| (*k, n.clone(), c.clone()))
            .collect()
    }

    /// Records the alarm decision for bytes read at `read`.
    pub fn decided(&self, read: Mono) {
        self.decision.observe(mono_now().since(read).as_secs_f64());
    }

    /// Remembers when message `seq` was published (for [`Metrics::delivered`]).
    pub fn published(&self, seq: u64) {
        let (s, at) = &self.probe[slot(seq)];
        at.store(mono_now().0, Ordering::Relaxed);
        s.store(seq, Ordering::Release);
    }

    /// Records the delivery of the messages `seqs` to one WebSocket client (just flushed);
    /// returns how many were measured.
    pub fn delivered(&self, seqs: &[u64]) -> usize {
        if seqs.is_empty() {
            return 0;
        }
        let now = mono_now();
        let mut n = 0;
        for &seq in seqs {
            let (s, at) = &self.probe[slot(seq)];
            if seq != 0 && s.load(Ordering::Acquire) == seq {
                let at = Mono(at.load(Ordering::Relaxed));
                self.delivery.observe(now.since(at).as_secs_f64());
                n += 1;
            }
        }
        n
    }
}

/// A priority as its label value (as on the wire: `high`, `medium`, `low`).
pub fn priority_label(p: crate::alarm::Priority) -> &'static str {
    match p {
        crate::alarm::Priority::High => "high",
        crate::alarm::Priority::Medium => "medium",
        crate::alarm::Priority::Low => "low",
    }
}

fn slot(seq: u64) -> usize {
    (seq % PROBE_SLOTS as u64) as usize
}

/// The `seq` of a hub message (`{"v":1,"type":"...","seq":N,...}`), read from its first bytes
/// without parsing it; 0 if it has none (sequence numbers start at 1).
pub fn seq_of(msg: &[u8]) -> u64 {
    const KEY: &[u8] = b"\"seq\":";
    let head = &msg[..msg.len().min(64)];
    let Some(at) = head.windows(KEY.len()).position(|w| w == KEY) else {
        return 0;
    };
    let mut n: u64 = 0;
    for &b in &msg[at + KEY.len()..] {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seq_of_a_hub_message_is_read_from_its_head() {
        assert_eq!(
            seq_of(br#"{"v":1,"type":"reading","seq":1042,"bed":"x"}"#),
            1042
        );
        assert_eq!(seq_of(br#"{"v":1,"type":"heartbeat","time":"x"}"#), 0);
        assert_eq!(seq_of(b""), 0);
    }

    #[test]
    fn a_message_is_measured_once_published_and_not_after_its_slot_is_reused() {
        let m = Metrics::new();
        m.published(7);
        assert_eq!(m.delivered(&[7]), 1);
        m.published(7 + PROBE_SLOTS as u64);
        assert_eq!(m.delivered(&[7]), 0);
        assert_eq!(m.delivered(&[0]), 0);
    }

    #[test]
    fn device_counters_grow_on_demand_and_keep_counting() {
        let m = Metrics::new();
        m.readings(3, 2);
        m.readings(3, 1);
        m.bad_frames(0, 4);
        m.reconnect(3);
        let d = m.devices();
        assert_eq!(d.len(), 4);
        assert_eq!(d[3].readings.load(Ordering::Relaxed), 3);
        assert_eq!(d[3].reconnects.load(Ordering::Relaxed), 1);
        assert_eq!(d[0].bad_frames.load(Ordering::Relaxed), 4);
    }
}
