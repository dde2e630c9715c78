//! The hub: per-bed state (latest value per metric, per-bed sequence numbers), device status,
//! and fan-out of every message to every subscriber under the policy in [`queue`].
//!
//! Order on the decode path, per observation: stamp it with the bed's next sequence number,
//! evaluate it (alarm events are published first), then publish the reading. One lock covers
//! sequence assignment, state and the push to each client's queue, so every client sees messages
//! in sequence order (except that priority messages overtake readings a slow client has not
//! taken yet). The lock is never held across an `.await`.
//!
//! A bounded replay ring keeps the latest messages so that a client that reconnects with
//! `?since=SEQ` gets what it missed without a gap, after a fresh snapshot.

pub mod queue;
pub mod wire;

use crate::clock::{Mono, rfc3339_ms, wall_ms};
use crate::config::Config;
use crate::model::{BedIdx, DeviceIdx, Measurement, Metric, Observation};
use bytes::Bytes;
use queue::{Class, ClientQueue, lock};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use wire::{DeviceStatus, VERSION};

/// Messages kept for clients that resume.
pub const REPLAY_CAP: usize = 8_192;

/// When bytes arrived: taken by the source as it reads, before decoding.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub wall_ms: i64,
    pub mono: Mono,
}

impl Stamp {
    /// Now.
    pub fn now() -> Stamp {
        Stamp {
            wall_ms: wall_ms(),
            mono: crate::clock::mono_now(),
        }
    }
}

#[derive(Debug)]
struct BedState {
    seq: u64,
    latest: [Option<Observation>; Metric::COUNT],
}

#[derive(Debug)]
struct DeviceState {
    status: DeviceStatus,
    since_ms: i64,
    detail: Option<String>,
    readings: u64,
}

struct Inner {
    next_seq: u64,
    beds: Vec<BedState>,
    devices: Vec<DeviceState>,
    replay: VecDeque<(u64, Class, Bytes)>,
    clients: Vec<(u64, Arc<ClientQueue>)>,
    next_client: u64,
    /// Serialization buffer, reused.
    buf: Vec<u8>,
}

/// A subscription: the queue to read from, and the id to unsubscribe with.
pub struct Subscription {
    pub id: u64,
    pub queue: Arc<ClientQueue>,
    /// The snapshot (and, when resuming, the missed messages) to send before anything queued.
    pub preamble: Vec<Bytes>,
}

/// Shared state and fan-out. Cheap to share behind an `Arc`.
pub struct Hub {
    cfg: Arc<Config>,
    inner: Mutex<Inner>,
    /// The durable record; every reading is handed to it (non-blocking) before it is published.
    store: std::sync::OnceLock<crate::store::StoreHandle>,
}

impl Hub {
    /// A hub for the configured beds and devices, all `connecting`.
    pub fn new(cfg: Arc<Config>) -> Hub {
        let now = wall_ms();
        let inner = Inner {
            next_seq: 1,
            beds: cfg
                .beds
                .iter()
                .map(|_| BedState {
                    seq: 0,
                    latest: [None; Metric::COUNT],
                })
                .collect(),
            devices: cfg
                .devices
                .iter()
                .map(|_| DeviceState {
                    status: DeviceStatus::Connecting,
                    since_ms: now,
                    detail: None,
                    readings: 0,
                })
                .collect(),
            replay: VecDeque::with_capacity(REPLAY_CAP),
            clients: Vec::new(),
            next_client: 1,
            buf: Vec::with_capacity(1024),
        };
        Hub {
            cfg,
            inner: Mutex::new(inner),
            store: std::sync::OnceLock::new(),
        }
    }

    /// Records every reading from now on in `store` (set once, at start).
    pub fn set_store(&self, store: crate::store::StoreHandle) {
        if self.store.set(store).is_err() {
            tracing::warn!("the hub already has a store; keeping the first");
        }
    }

    /// The configuration the hub serves.
    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    /// Takes a batch of measurements from one device: stamps, evaluates and publishes each.
    pub fn ingest(&self, device: DeviceIdx, stamp: Stamp, ms: &[Measurement]) {
        if ms.is_empty() {
            return;
        }
        let binding = self.cfg.device(device);
        let bed = binding.bed;
        let simulated = binding.simulated;
        let mut g = lock(&self.inner);
        let inner = &mut *g;
        for m in ms {
            let b = &mut inner.beds[usize::from(bed.0)];
            b.seq += 1;
            let obs = Observation {
                bed,
                device,
                m: *m,
                received_ms: stamp.wall_ms,
                mono: stamp.mono,
                bed_seq: b.seq,
                simulated,
            };
            b.latest[m.metric.index()] = Some(obs);
            inner.devices[usize::from(device.0)].readings += 1;
            let seq = inner.take_seq();
            inner.buf.clear();
            let msg = wire::ReadingMsg {
                v: VERSION,
                kind: "reading",
                seq,
                reading: wire::ReadingView::new(&self.cfg, &obs),
            };
            if serde_json::to_writer(&mut inner.buf, &msg).is_err() {
                // Serializing plain numbers and strings cannot fail; if it ever did, say so.
                tracing::error!(seq, "reading could not be serialized");
                continue;
            }
            if let Some(store) = self.store.get() {
                // Never blocks: a push into the store's bounded buffer.
                store.reading(&obs);
            }
            let slot = u32::from(device.0) * Metric::COUNT as u32 + m.metric.index() as u32;
            let bytes = Bytes::copy_from_slice(&inner.buf);
            inner.publish(seq, Class::Reading { slot }, bytes);
        }
    }

    /// Records a device's connection state and tells every client. Repeats are ignored.
    pub fn device_status(&self, device: DeviceIdx, status: DeviceStatus, detail: Option<String>) {
        let binding = self.cfg.device(device);
        let mut g = lock(&self.inner);
        let inner = &mut *g;
        let d = &mut inner.devices[usize::from(device.0)];
        if d.status == status && d.detail == detail {
            return;
        }
        let now = wall_ms();
        d.status = status;
        d.since_ms = now;
        d.detail = detail;
        let seq = inner.take_seq();
        let msg = wire::DeviceStatusMsg {
            v: VERSION,
            kind: "device_status",
            seq,
            bed: &self.cfg.bed(binding.bed).id,
            device: &binding.id,
            status,
            detail: inner.devices[usize::from(device.0)].detail.as_deref(),
            at: rfc3339_ms(now),
            simulated: binding.simulated,
        };
        match serde_json::to_vec(&msg) {
            Ok(v) => inner.publish(seq, Class::Priority, Bytes::from(v)),
            Err(e) => tracing::error!(seq, error = %e, "device status could not be serialized"),
        }
    }

    /// The current status of a device.
    pub fn status_of(&self, device: DeviceIdx) -> DeviceStatus {
        lock(&self.inner).devices[usize::from(device.0)].status
    }

    /// Subscribes a client. With `since`, the client resumes: it gets a snapshot and then every
    /// held message after `since`; if `since` is older than what is held, just the snapshot.
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        let mut g = lock(&self.inner);
        let inner = &mut *g;
        let mut preamble = vec![Bytes::from(self.snapshot_locked(inner, since.is_some()))];
        if let Some(since) = since {
            preamble.extend(
                inner
                    .replay
                    .iter()
                    .filter(|(seq, _, _)| *seq > since)
                    .map(|(_, _, b)| b.clone()),
            );
        }
        let id = inner.next_client;
        inner.next_client += 1;
        let queue = Arc::new(ClientQueue::default());
        inner.clients.push((id, queue.clone()));
        Subscription {
            id,
            queue,
            preamble,
        }
    }

    /// Removes a client.
    pub fn unsubscribe(&self, id: u64) {
        lock(&self.inner).clients.retain(|(c, _)| *c != id);
    }

    /// Connected clients.
    pub fn client_count(&self) -> usize {
        lock(&self.inner).clients.len()
    }

    /// The latest sequence number assigned.
    pub fn last_seq(&self) -> u64 {
        lock(&self.inner).next_seq - 1
    }

    /// The snapshot message as JSON (also the body of `GET /api/rooms`).
    pub fn snapshot_json(&self) -> Vec<u8> {
        let g = lock(&self.inner);
        self.snapshot_locked(&g, false)
    }

    /// A heartbeat for a client.
    pub fn heartbeat(&self, coalesced: u64) -> Bytes {
        let msg = wire::HeartbeatMsg {
            v: VERSION,
            kind: "heartbeat",
            seq: self.last_seq(),
            time: rfc3339_ms(wall_ms()),
            coalesced,
        };
        Bytes::from(serde_json::to_vec(&msg).unwrap_or_default())
    }

    /// One line per bed for the console: SpO2, PR, PI, last NIBP and its age.
    pub fn summary_lines(&self) -> Vec<String> {
        let g = lock(&self.inner);
        let now = wall_ms();
        self.cfg
            .beds
            .iter()
            .zip(&g.beds)
            .map(|(bed, st)| {
                let show = |metric: Metric, decimals: usize| -> String {
                    match &st.latest[metric.index()] {
                        None => "--".to_owned(),
                        Some(o) => match o.m.value.number() {
                            Some(v) => format!("{v:.decimals$}"),
                            None => reason_text(&o.m),
                        },
                    }
                };
                let nibp = match &st.latest[Metric::NibpSys.index()] {
                    None => "none yet".to_owned(),
                    Some(o) => {
                        let age = (now - o.received_ms).max(0) / 1000;
                        match o.m.value.number() {
                            Some(_) => format!(
                                "{}/{} ({}) {age}s ago",
                                show(Metric::NibpSys, 0),
                                show(Metric::NibpDia, 0),
                                show(Metric::NibpMean, 0)
                            ),
                            None => match o.m.flags.cuff_error() {
                                Some(code) => format!("failed (cuff error {code}) {age}s ago"),
                                None => format!("-- ({}) {age}s ago", reason_text(&o.m)),
                            },
                        }
                    }
                };
                let links: Vec<String> = bed
                    .devices
                    .iter()
                    .map(|d| {
                        let s = &g.devices[usize::from(d.0)];
                        format!("{}:{:?}", self.cfg.device(*d).profile.kind.name(), s.status)
                            .to_lowercase()
                    })
                    .collect();
                format!(
                    "{:<10} SpO2 {:>4} %  PR {:>4} /min  PI {:>5} %  NIBP {}  [{}]",
                    bed.id,
                    show(Metric::Spo2, 0),
                    show(Metric::PulseRate, 0),
                    show(Metric::PerfusionIndex, 1),
                    nibp,
                    links.join(" ")
                )
            })
            .collect()
    }

    fn snapshot_locked(&self, inner: &Inner, resumed: bool) -> Vec<u8> {
        let cfg = &self.cfg;
        let rooms = cfg
            .rooms
            .iter()
            .map(|room| wire::RoomView {
                id: &room.id,
                name: &room.name,
                beds: room
                    .beds
                    .iter()
                    .map(|bidx| {
                        let bed = cfg.bed(*bidx);
                        let st = &inner.beds[usize::from(bidx.0)];
                        let latest: BTreeMap<&'static str, wire::ReadingView<'_>> = st
                            .latest
                            .iter()
                            .flatten()
                            .filter(|o| wire::in_latest(o.m.metric))
                            .map(|o| (o.m.metric.name(), wire::ReadingView::new(cfg, o)))
                            .collect();
                        wire::BedView {
                            id: &bed.id,
                            recliner: &bed.recliner,
                            label: &bed.label,
                            bp_interval_s: bed.bp_interval.as_secs(),
                            devices: bed
                                .devices
                                .iter()
                                .map(|d| {
                                    let b = cfg.device(*d);
                                    let s = &inner.devices[usize::from(d.0)];
                                    wire::DeviceView {
                                        id: &b.id,
                                        profile: &b.profile.name,
                                        vendor: &b.profile.vendor,
                                        model: &b.profile.model,
                                        kind: b.profile.kind,
                                        protocol: &b.profile.protocol,
                                        endpoint: wire::endpoint_text(&b.endpoint),
                                        status: s.status,
                                        status_since: rfc3339_ms(s.since_ms),
                                        detail: s.detail.as_deref(),
                                        simulated: b.simulated,
                                    }
                                })
                                .collect(),
                            latest,
                        }
                    })
                    .collect(),
            })
            .collect();
        let msg = wire::SnapshotMsg {
            v: VERSION,
            kind: "snapshot",
            seq: inner.next_seq - 1,
            resumed,
            time: rfc3339_ms(wall_ms()),
            simulated: cfg.devices.iter().any(|d| d.simulated),
            rooms,
        };
        serde_json::to_vec(&msg).unwrap_or_default()
    }
}

impl Inner {
    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn publish(&mut self, seq: u64, class: Class, bytes: Bytes) {
        if self.replay.len() >= REPLAY_CAP {
            self.replay.pop_front();
        }
        self.replay.push_back((seq, class, bytes.clone()));
        for (_, q) in &self.clients {
            q.push(class, bytes.clone());
        }
    }
}

/// A short reason for a value without a number: the voiding flag if any, else the invalid kind.
pub fn reason_text(m: &Measurement) -> String {
    if let Some(f) = m.flags.voiding() {
        return f.describe().to_owned();
    }
    match m.value.invalid() {
        Some(r) => r.name().replace('_', " "),
        None => String::new(),
    }
}

/// Which bed a device feeds (convenience for sources).
pub fn bed_of(cfg: &Config, device: DeviceIdx) -> BedIdx {
    cfg.device(device).bed
}
