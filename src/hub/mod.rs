//! The hub: per-bed state (latest value per metric, per-bed sequence numbers), device status,
//! and fan-out of every message to every subscriber under the policy in [`queue`].
//!
//! Order on the decode path, per observation: stamp it with the bed's next sequence number,
//! evaluate it (alarm events are published first), then publish the reading.
//!
//! Locks: each bed has its own (its engine, latest values, devices), so beds are ingested in
//! parallel; the bed-less alarms (dashboard watchdog, store, notification targets, MQTT) have
//! one; the fan-out has one, held only to number a batch of already serialized messages and
//! push it to each client's queue (messages are serialized with `"seq":0` under the bed's lock,
//! the number is spliced in under the fan-out lock). So every client sees messages in sequence
//! order (except that priority messages overtake readings a slow client has not taken yet).
//! Lock order: beds (by index), then the bed-less alarms, then the fan-out. No lock is held
//! across an `.await`.
//!
//! A bounded replay ring keeps the latest messages so that a client that reconnects with
//! `?since=SEQ` gets what it missed without a gap, after a fresh snapshot.

pub mod link;
pub mod queue;
#[cfg(test)]
mod tests;
pub mod wire;

use crate::alarm::{
    AlarmError, AlarmEvent, AlarmId, AlarmIds, Baseline, BedAlarms, BedLimits, BedSnapshot,
    BedSpec, Dashboards, EventKind, LimitsError, Now, PageBeat, RuleStatus, Watchdog,
};
use crate::clock::{Mono, mono_now, rfc3339_ms, wall_ms};
use crate::config::Config;
use crate::model::{BedIdx, DeviceIdx, Measurement, Metric, Observation};
use crate::store::StoredState;
use bytes::{Bytes, BytesMut};
use queue::{Class, ClientQueue, DeliveryStats, DeliverySummary, lock};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc::UnboundedSender;
use wire::{DeviceStatus, VERSION};

/// How long the store may fail to write before `store_unwritable` is raised.
pub const STORE_ALARM_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

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
            mono: mono_now(),
        }
    }

    /// The same instant for the alarm engine.
    pub fn as_now(self) -> Now {
        Now {
            mono: self.mono,
            wall_ms: self.wall_ms,
        }
    }
}

struct BedState {
    seq: u64,
    latest: [Option<Observation>; Metric::COUNT],
    alarms: BedAlarms,
    /// The bed's devices, in the order of its config.
    devices: Vec<(DeviceIdx, DeviceState)>,
    em: Emitter,
}

impl BedState {
    fn device(&mut self, d: DeviceIdx) -> &mut DeviceState {
        let i = self.devices.iter().position(|(x, _)| *x == d).unwrap_or(0);
        &mut self.devices[i].1
    }
}

/// The alarms that belong to no bed.
struct System {
    watchdog: Watchdog,
    /// The latest application heartbeat of each dashboard page: which ones can sound.
    dashboards: Dashboards,
    store_watch: Watchdog,
    /// `notify_failed`, one per notification target.
    targets: crate::alarm::TargetAlarms,
    /// With `[mqtt]`: raises `mqtt_down` when the broker link stays down (src/mqtt).
    mqtt_watch: Option<(Watchdog, bool)>,
    /// With `[[hl7]]`: raises `hl7_down` when an HL7 endpoint stays down (src/hl7).
    hl7_watch: Option<Watchdog>,
    em: Emitter,
}

/// Messages serialized with `"seq":0`, waiting for their sequence numbers.
#[derive(Default)]
struct Outbox {
    buf: Vec<u8>,
    /// Per message: its class, where it ends in `buf`, where its `0` is.
    items: Vec<(Class, usize, usize)>,
}

impl Outbox {
    /// Serializes `msg` (whose `seq` is 0) at the end; returns its index.
    fn add(&mut self, class: Class, msg: &impl serde::Serialize) -> Option<usize> {
        let start = self.buf.len();
        if let Err(e) = serde_json::to_writer(&mut self.buf, msg) {
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
struct Emitter {
    /// Engine output.
    events: Vec<AlarmEvent>,
    out: Outbox,
    /// Per event in `events` passed to [`Emitter::stage`]: its index in `out` (None for
    /// `notify`, which only the notifier sees).
    staged: Vec<(AlarmEvent, Option<usize>)>,
    /// The messages of the latest publish.
    published: Vec<Bytes>,
}

impl Emitter {
    /// Serializes the engine's pending events into the outbox (so they go out ahead of what
    /// is added after them).
    fn stage(&mut self, cfg: &Config) {
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
    fn publish(
        &mut self,
        cfg: &Config,
        fan: &Mutex<Fanout>,
        sink: Option<&UnboundedSender<Dispatch>>,
        to_sink: bool,
        bed: Option<&BedAlarms>,
    ) -> Vec<Dispatched> {
        self.stage(cfg);
        self.published.clear();
        let first = if self.out.items.is_empty() {
            0
        } else {
            let mut bytes = BytesMut::with_capacity(self.out.buf.len() + 20 * self.out.items.len());
            lock(fan).publish(&mut self.out, &mut bytes, &mut self.published)
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
            // The bed these events were about has a new state to save.
            if let Some(engine) = bed.filter(|_| out.iter().any(|d| d.event.bed.is_some()))
                && let Some(st) = saved_state(cfg, engine, Stamp::now().as_now())
                && sink.send(Dispatch::State(st)).is_err()
            {
                tracing::error!("alarm state consumer is gone; state not saved");
            }
            if to_sink {
                for d in &out {
                    if sink.send(Dispatch::Event(d.clone())).is_err() {
                        tracing::error!("alarm event consumer is gone; event not persisted");
                    }
                }
            }
        }
        out
    }
}

/// Sequence numbers, the replay ring and the clients.
struct Fanout {
    next_seq: u64,
    replay: VecDeque<(u64, Bytes)>,
    clients: Vec<(u64, Arc<ClientQueue>)>,
    next_client: u64,
}

impl Fanout {
    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Numbers the outbox's messages, splicing each number in (into `bytes`, one allocation
    /// for the batch), and pushes them to every client; `published` gets them in order.
    /// Returns the first number.
    fn publish(
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

    fn push(&mut self, seq: u64, class: Class, bytes: Bytes) {
        if self.replay.len() >= REPLAY_CAP {
            self.replay.pop_front();
        }
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

/// An alarm-system event for the consumers off the alarm path (store, notifier), with the
/// message dashboards got (`None` for `notify` events, which only the notifier sees).
#[derive(Debug, Clone)]
pub struct Dispatched {
    pub event: AlarmEvent,
    /// The `alarm` message as sent to clients, or (for `notify`) as the notifier sends it.
    pub json: Bytes,
    /// Its sequence number (0 for `notify`, which is not a client message).
    pub seq: u64,
}

/// What the hub hands to the consumers off the alarm path, in order.
#[derive(Debug)]
pub enum Dispatch {
    /// An engine event: persist it (without making anyone wait) and notify if it says so.
    Event(Dispatched),
    /// The events of an API action, computed on a copy of the bed's engine, and the bed's
    /// state after it: commit them (one transaction), then answer. The action takes effect
    /// only after that answer is a success.
    Commit(
        Vec<Dispatched>,
        Option<StoredState>,
        tokio::sync::oneshot::Sender<Result<(), String>>,
    ),
    /// A bed's alarm state after its events: save it (latest per bed, group-committed).
    State(StoredState),
}

/// A bed's saved alarm state, as stored in `alarm_state.json`: the engine's snapshot plus the
/// device ids its device indices stood for (so an edited config cannot misattribute an alarm).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SavedBed {
    devices: Vec<String>,
    #[serde(flatten)]
    snapshot: BedSnapshot,
}

/// What the store knows about a bed's open session, for [`Hub::restore`].
#[derive(Debug, Clone, PartialEq)]
pub struct OpenSession {
    /// The bed, e.g. `room1/A`.
    pub bed: String,
    /// The session has a `dose` event.
    pub dosed: bool,
    /// Its latest `baseline` event.
    pub baseline: Option<Baseline>,
}

/// What [`Hub::restore`] put back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreSummary {
    /// Beds whose saved state was restored.
    pub beds: usize,
    /// Alarms restored (with their ids).
    pub alarms: usize,
    /// Audio pauses restored (not yet expired).
    pub pauses: usize,
    /// Saved alarms or beds that could not be restored, with why.
    pub skipped: Vec<String>,
}

/// Why an alarm action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// No bed has a current alarm with this id.
    #[error("no current alarm with id {0}")]
    UnknownAlarm(u64),
    /// The alarm cannot be acknowledged (system alarms end when their cause does).
    #[error(
        "alarm {0} cannot be acknowledged: it ends when its cause does (a dashboard alive again, the store writable again)"
    )]
    NotAcknowledgeable(u64),
    /// The engine refused it.
    #[error(transparent)]
    Alarm(#[from] AlarmError),
    /// The limits are not valid.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// A baseline from recent readings was asked for, but there are none yet.
    #[error("no recent valid readings of {0} to take a baseline from, expected some first")]
    NoRecent(&'static str),
    /// The store did not commit the action's record, so the action did not take effect.
    #[error("not confirmed, nothing changed: {0}")]
    NotCommitted(String),
}

#[derive(Debug)]
struct DeviceState {
    status: DeviceStatus,
    since_ms: i64,
    detail: Option<String>,
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
    beds: Vec<Mutex<BedState>>,
    sys: Mutex<System>,
    fan: Mutex<Fanout>,
    /// Consumers of alarm events off the alarm path (store, notifier).
    sink: Option<UnboundedSender<Dispatch>>,
    /// Delivery counters of every client queue.
    stats: Arc<DeliveryStats>,
    /// Wall-clock ms when this hub was created: tells clients a restarted daemon apart.
    started_ms: i64,
    /// The durable record; every reading is handed to it (non-blocking) before it is published.
    store: std::sync::OnceLock<crate::store::StoreHandle>,
    /// One per bed: actions on a bed run one at a time, from dry run to commit to apply.
    actions: Vec<tokio::sync::Mutex<()>>,
    /// One per `[[hl7]]` endpoint, in config order: written by its sender (src/hl7).
    hl7_links: Vec<Arc<link::LinkStats>>,
}

impl Hub {
    /// A hub for the configured beds and devices, all `connecting`, each bed with its preset's
    /// limits. Alarm events also go to `sink` (store, notifier), never waited for.
    pub fn new(
        cfg: Arc<Config>,
        sink: Option<UnboundedSender<Dispatch>>,
    ) -> Result<Hub, LimitsError> {
        let now = wall_ms();
        // Ids seeded by the wall clock so they do not repeat across restarts.
        let ids = AlarmIds::new(u64::try_from(now).unwrap_or(0).saturating_mul(1000) % (1 << 52));
        let mut beds = Vec::with_capacity(cfg.beds.len());
        for (i, bed) in cfg.beds.iter().enumerate() {
            let idx = BedIdx(u16::try_from(i).unwrap_or(u16::MAX));
            let spec = BedSpec::from_config(&cfg, idx).unwrap_or_default();
            let limits = cfg.presets.get(&bed.preset).cloned().unwrap_or_default();
            let mut alarms = BedAlarms::with_policy(idx, spec, limits, &ids, cfg.alarms.policy)?;
            // Serial and TCP sources close a silent link themselves (crate::sources).
            for d in &bed.devices {
                if !matches!(
                    cfg.devices.get(usize::from(d.0)).map(|b| &b.endpoint),
                    Some(crate::config::Endpoint::Ble { .. }) | None
                ) {
                    alarms.watch_link(*d);
                }
            }
            beds.push(Mutex::new(BedState {
                seq: 0,
                latest: [None; Metric::COUNT],
                alarms,
                devices: bed
                    .devices
                    .iter()
                    .map(|d| {
                        let st = DeviceState {
                            status: DeviceStatus::Connecting,
                            since_ms: now,
                            detail: None,
                        };
                        (*d, st)
                    })
                    .collect(),
                em: Emitter::default(),
            }));
        }
        let watchdog = Watchdog::new(
            &ids,
            cfg.alarms.dashboard_timeout,
            cfg.alarms.policy.escalation,
        );
        // Raised as soon as a write fails (the timeout is one tick), cleared when one succeeds.
        let store_watch = Watchdog::new(&ids, STORE_ALARM_AFTER, cfg.alarms.policy.escalation)
            .for_condition(crate::alarm::TechCondition::StoreUnwritable);
        let sys = System {
            watchdog,
            dashboards: Dashboards::default(),
            store_watch,
            targets: crate::alarm::TargetAlarms::new(
                &ids,
                cfg.notify.len(),
                cfg.alarms.policy.escalation,
            ),
            mqtt_watch: cfg.mqtt.as_ref().map(|m| {
                let w = Watchdog::new(&ids, m.down_after, cfg.alarms.policy.escalation)
                    .for_condition(crate::alarm::TechCondition::MqttDown)
                    .with_priority(crate::alarm::Priority::Medium);
                (w, false)
            }),
            hl7_watch: cfg.hl7.iter().map(|e| e.down_after).min().map(|after| {
                Watchdog::new(&ids, after, cfg.alarms.policy.escalation)
                    .for_condition(crate::alarm::TechCondition::Hl7Down)
                    .with_priority(crate::alarm::Priority::Medium)
            }),
            em: Emitter::default(),
        };
        let fan = Fanout {
            next_seq: 1,
            replay: VecDeque::with_capacity(REPLAY_CAP),
            clients: Vec::new(),
            next_client: 1,
        };
        let actions = cfg
            .beds
            .iter()
            .map(|_| tokio::sync::Mutex::new(()))
            .collect();
        let hl7_links = cfg
            .hl7
            .iter()
            .map(|e| Arc::new(link::LinkStats::new(&e.name)))
            .collect();
        Ok(Hub {
            cfg,
            beds,
            sys: Mutex::new(sys),
            fan: Mutex::new(fan),
            sink,
            stats: Arc::new(DeliveryStats::default()),
            started_ms: now,
            store: std::sync::OnceLock::new(),
            actions,
            hl7_links,
        })
    }

    /// Hands the events of an API action and the bed's state after it to the store and waits
    /// until they are committed.
    async fn commit(
        &self,
        events: Vec<Dispatched>,
        state: Option<StoredState>,
    ) -> Result<(), String> {
        let Some(sink) = self.sink.clone() else {
            return Ok(());
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        sink.send(Dispatch::Commit(events, state, tx))
            .map_err(|_| "the event store is not running".to_owned())?;
        rx.await
            .map_err(|_| "the event store stopped before committing".to_owned())?
    }

    /// Commit, then apply: runs `action` on a copy of the bed's engine (a refusal changes
    /// nothing), commits the events and the resulting state, and only then runs it on the bed's
    /// engine at the same instant and publishes what it caused. Actions on one bed run one at a
    /// time. Returns the action's value and the published events.
    async fn act<T>(
        &self,
        bed: BedIdx,
        action: impl Fn(&mut BedAlarms, Now, &mut Vec<AlarmEvent>) -> Result<T, ActionError>,
    ) -> Result<(T, Vec<Dispatched>), ActionError> {
        let Some(serial) = self.actions.get(usize::from(bed.0)) else {
            return Err(ActionError::NotCommitted(format!("no bed #{}", bed.0)));
        };
        let _one_at_a_time = serial.lock().await;
        let now = Stamp::now().as_now();
        let (record, state) = {
            let mut copy = self.bed(bed).alarms.clone();
            let mut events = Vec::new();
            action(&mut copy, now, &mut events)?;
            let record: Vec<Dispatched> = events
                .into_iter()
                .filter_map(|e| {
                    // Committed before it is published, so it has no sequence number yet.
                    let json = serde_json::to_vec(&wire::AlarmMsg::new(&self.cfg, 0, &e)).ok()?;
                    Some(Dispatched {
                        event: e,
                        json: Bytes::from(json),
                        seq: 0,
                    })
                })
                .collect();
            (record, saved_state(&self.cfg, &copy, now))
        };
        self.commit(record, state)
            .await
            .map_err(ActionError::NotCommitted)?;
        let mut g = self.bed(bed);
        let b = &mut *g;
        match action(&mut b.alarms, now, &mut b.em.events) {
            Ok(v) => Ok((v, self.publish_bed(b, false))),
            Err(e) => {
                // The bed changed between the dry run and now (the alarm cleared meanwhile).
                b.em.events.clear();
                tracing::warn!(bed = %self.cfg.bed(bed).id, error = %e,
                    "action committed but no longer applicable");
                Err(e)
            }
        }
    }

    /// Puts back what the alarm system knew before a restart: each bed's saved state (limits,
    /// baseline, current alarms with their ids, audio pause, escalation progress), then what the
    /// open sessions say (dosed; the session baseline if the bed has none). Call once, before
    /// any device is read and before clients are served.
    pub fn restore(&self, saved: &[StoredState], open: &[OpenSession]) -> RestoreSummary {
        let now = Stamp::now().as_now();
        let mut sum = RestoreSummary::default();
        for st in saved {
            let Some(bed) = self.bed_by_id(&st.bed) else {
                sum.skipped
                    .push(format!("bed {:?}: not in the config any more", st.bed));
                continue;
            };
            let mut saved: SavedBed = match serde_json::from_str(&st.json) {
                Ok(s) => s,
                Err(e) => {
                    sum.skipped
                        .push(format!("bed {:?}: unreadable saved state: {e}", st.bed));
                    continue;
                }
            };
            for a in &mut saved.snapshot.alarms {
                a.device = a
                    .device
                    .and_then(|d| saved.devices.get(usize::from(d)))
                    .and_then(|id| self.cfg.devices.iter().position(|d| d.id == *id))
                    .and_then(|i| u16::try_from(i).ok());
            }
            match self.bed(bed).alarms.restore(&saved.snapshot, now) {
                Ok(r) => {
                    sum.beds += 1;
                    sum.alarms += r.alarms;
                    sum.pauses += usize::from(r.paused);
                    sum.skipped.extend(r.dropped.into_iter().map(|c| {
                        format!("bed {:?}: alarm {c}: its rule or device is gone", st.bed)
                    }));
                }
                Err(e) => sum
                    .skipped
                    .push(format!("bed {:?}: saved limits refused: {e}", st.bed)),
            }
        }
        for (i, bed) in self.beds.iter().enumerate() {
            let mut g = lock(bed);
            let b = &mut *g;
            let id = &self.cfg.beds[i].id;
            let session = open.iter().find(|o| o.bed == *id);
            let dosed = session.is_some_and(|s| s.dosed);
            if b.alarms.dosed() != dosed {
                b.alarms.set_dosed(dosed, now, &mut b.em.events);
            }
            let none = b
                .alarms
                .baseline()
                .fields()
                .iter()
                .all(|(_, v)| v.is_none());
            if let Some(base) = session.and_then(|s| s.baseline)
                && none
                && let Err(e) = b
                    .alarms
                    .set_baseline(base, "session record", now, &mut b.em.events)
            {
                sum.skipped
                    .push(format!("bed {id:?}: session baseline refused: {e}"));
            }
            self.publish_bed(b, true);
        }
        sum
    }

    /// Tells the bed's engine whether its session is dosed (a `dose` event recorded: true;
    /// admitted or discharged: false). Dosed with a relative rule lacking its baseline raises
    /// `baseline_missing`.
    pub fn set_dosed(&self, bed: BedIdx, dosed: bool) {
        let now = Stamp::now().as_now();
        let mut g = self.bed(bed);
        let b = &mut *g;
        b.alarms.set_dosed(dosed, now, &mut b.em.events);
        self.publish_bed(b, true);
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
        crate::metrics::global().readings(usize::from(device.0), ms.len());
        let mut g = self.bed(bed);
        let b = &mut *g;
        for m in ms {
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
            // The alarm decision, before the reading goes anywhere: its events are published
            // (and so sent) ahead of the reading that caused them.
            b.alarms.observe(&obs, stamp.as_now(), &mut b.em.events);
            b.em.stage(&self.cfg);
            crate::metrics::global().decided(stamp.mono);
            let msg = wire::ReadingMsg {
                v: VERSION,
                kind: "reading",
                seq: 0,
                reading: wire::ReadingView::new(&self.cfg, &obs),
            };
            let slot = u32::from(device.0) * Metric::COUNT as u32 + m.metric.index() as u32;
            if b.em.out.add(Class::Reading { slot }, &msg).is_none() {
                continue;
            }
            if let Some(store) = self.store.get() {
                // Never blocks: a push into the store's bounded buffer.
                store.reading(&obs);
            }
        }
        self.publish_bed(b, true);
    }

    /// A device answered without a measurement (a polled cuff between measurements): it is
    /// alive, which keeps its `no_data` alarm away.
    pub fn device_heard(&self, device: DeviceIdx) {
        let bed = self.cfg.device(device).bed;
        let now = Stamp::now().as_now();
        let mut g = self.bed(bed);
        let b = &mut *g;
        b.alarms.device_heard(device, now, &mut b.em.events);
        self.publish_bed(b, true);
    }

    /// A device's source throttles it (`flooding`) or no longer does: raises or clears its
    /// `device_flooding` alarm (crate::sources::throttle).
    pub fn device_flooding(&self, device: DeviceIdx, flooding: bool) {
        let bed = self.cfg.device(device).bed;
        let now = Stamp::now().as_now();
        let mut g = self.bed(bed);
        let b = &mut *g;
        b.alarms
            .device_flooding(device, flooding, now, &mut b.em.events);
        self.publish_bed(b, true);
    }

    /// Records a device's connection state and tells every client. Repeats are ignored.
    pub fn device_status(&self, device: DeviceIdx, status: DeviceStatus, detail: Option<String>) {
        let binding = self.cfg.device(device);
        let mut g = self.bed(binding.bed);
        let b = &mut *g;
        let d = b.device(device);
        if d.status == status && d.detail == detail {
            return;
        }
        let now = wall_ms();
        d.status = status;
        d.since_ms = now;
        d.detail = detail.clone();
        let msg = wire::DeviceStatusMsg {
            v: VERSION,
            kind: "device_status",
            seq: 0,
            bed: &self.cfg.bed(binding.bed).id,
            device: &binding.id,
            status,
            detail: detail.as_deref(),
            at: rfc3339_ms(now),
            simulated: binding.simulated,
        };
        // The status first, then what it caused (device_disconnected raised or cleared).
        b.em.out.add(Class::Status { device: device.0 }, &msg);
        if status != DeviceStatus::Connecting {
            let connected = status == DeviceStatus::Connected;
            let stamp = Stamp::now();
            b.alarms
                .device_link(device, connected, stamp.as_now(), &mut b.em.events);
        }
        self.publish_bed(b, true);
    }

    /// The current status of a device.
    pub fn status_of(&self, device: DeviceIdx) -> DeviceStatus {
        self.bed(self.cfg.device(device).bed).device(device).status
    }

    /// Subscribes a client. With `since`, the client resumes: it gets a snapshot and then every
    /// held message after `since`; if `since` is older than what is held, just the snapshot.
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        // Every bed, the bed-less alarms and the fan-out held: nothing is published between
        // the snapshot and the queue's first message.
        let beds = self.lock_beds();
        let sys = lock(&self.sys);
        let mut fan = lock(&self.fan);
        let mut preamble = vec![Bytes::from(self.snapshot_locked(
            &beds,
            &sys,
            &fan,
            since.is_some(),
        ))];
        drop(beds);
        drop(sys);
        if let Some(since) = since {
            preamble.extend(
                fan.replay
                    .iter()
                    .filter(|(seq, _)| *seq > since)
                    .map(|(_, b)| b.clone()),
            );
        }
        let id = fan.next_client;
        fan.next_client += 1;
        let queue = Arc::new(ClientQueue::with_stats(self.stats.clone()));
        fan.clients.push((id, queue.clone()));
        Subscription {
            id,
            queue,
            preamble,
        }
    }

    /// Removes a client (and its dashboard heartbeat: a page that left does not count).
    pub fn unsubscribe(&self, id: u64) {
        let mut sys = lock(&self.sys);
        lock(&self.fan).clients.retain(|(c, _)| *c != id);
        sys.dashboards.remove(id);
    }

    /// Connected clients.
    pub fn client_count(&self) -> usize {
        lock(&self.fan).clients.len()
    }

    /// The delivery state of every client queue: depths, bounds and what was coalesced.
    pub fn delivery(&self) -> DeliverySummary {
        let fan = lock(&self.fan);
        self.stats.summary(fan.clients.iter().map(|(_, q)| &**q))
    }

    /// The delivery counters themselves (plain atomics, for a metrics exporter).
    pub fn delivery_stats(&self) -> &Arc<DeliveryStats> {
        &self.stats
    }

    /// Every connected client's id and queue (for `/metrics`: queue depths, coalesced).
    pub fn client_queues(&self) -> Vec<(u64, Arc<ClientQueue>)> {
        lock(&self.fan).clients.clone()
    }

    /// The latest sequence number assigned.
    pub fn last_seq(&self) -> u64 {
        lock(&self.fan).next_seq - 1
    }

    /// The snapshot message as JSON (also the body of `GET /api/rooms`).
    pub fn snapshot_json(&self) -> Vec<u8> {
        let beds = self.lock_beds();
        let sys = lock(&self.sys);
        let fan = lock(&self.fan);
        self.snapshot_locked(&beds, &sys, &fan, false)
    }

    /// A heartbeat for client `client`: with the dashboard counts and whether this client
    /// counts as a live dashboard.
    pub fn heartbeat(&self, client: u64, coalesced: u64) -> Bytes {
        let now = mono_now();
        let sys = lock(&self.sys);
        let (seq, clients, coalesced_alarms) = {
            let fan = lock(&self.fan);
            let q = fan.clients.iter().find(|(c, _)| *c == client);
            (
                fan.next_seq - 1,
                fan.clients.len(),
                q.map_or(0, |(_, q)| q.coalesced_priority()),
            )
        };
        let msg = wire::HeartbeatMsg {
            v: VERSION,
            kind: "heartbeat",
            seq,
            time: rfc3339_ms(wall_ms()),
            coalesced,
            coalesced_alarms,
            dashboards: sys.dashboards.counts(now, clients),
            counted: sys.dashboards.is_live(client, now),
        };
        drop(sys);
        Bytes::from(serde_json::to_vec(&msg).unwrap_or_default())
    }

    fn bed(&self, bed: BedIdx) -> MutexGuard<'_, BedState> {
        lock(&self.beds[usize::from(bed.0)])
    }

    /// Every bed's lock, in index order (the lock order).
    fn lock_beds(&self) -> Vec<MutexGuard<'_, BedState>> {
        self.beds.iter().map(lock).collect()
    }

    /// Publishes what a bed staged (see [`Emitter::publish`]).
    fn publish_bed(&self, b: &mut BedState, to_sink: bool) -> Vec<Dispatched> {
        b.em.publish(
            &self.cfg,
            &self.fan,
            self.sink.as_ref(),
            to_sink,
            Some(&b.alarms),
        )
    }

    /// Publishes what the bed-less alarms staged.
    fn publish_sys(&self, sys: &mut System, to_sink: bool) -> Vec<Dispatched> {
        sys.em
            .publish(&self.cfg, &self.fan, self.sink.as_ref(), to_sink, None)
    }

    /// One line per bed for the console: SpO2, PR, PI, last NIBP and its age.
    pub fn summary_lines(&self) -> Vec<String> {
        let now = wall_ms();
        self.cfg
            .beds
            .iter()
            .zip(&self.beds)
            .map(|(bed, st)| {
                let st = lock(st);
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
                    .zip(&st.devices)
                    .map(|(d, (_, s))| {
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

    /// Publishes a priority message built elsewhere (session events, notification status):
    /// adds `"v"` and the next `"seq"`, and sends it ahead of readings like alarms.
    pub fn publish_priority(&self, mut msg: serde_json::Value) -> u64 {
        let mut fan = lock(&self.fan);
        let seq = fan.take_seq();
        if let Some(obj) = msg.as_object_mut() {
            obj.insert("v".into(), VERSION.into());
            obj.insert("seq".into(), seq.into());
        }
        match serde_json::to_vec(&msg) {
            Ok(v) => fan.push(seq, Class::Priority, Bytes::from(v)),
            Err(e) => tracing::error!(seq, error = %e, "message could not be serialized"),
        }
        seq
    }

    /// The alarm timers: condition delays, stale data, NIBP overdue, pause expiry,
    /// escalation, and the dashboard watchdog. Called every ~100 ms by a runner.
    pub fn tick(&self) {
        let now = Stamp::now().as_now();
        // Beds are monitored while any device is connected.
        let mut monitoring = false;
        for bed in &self.beds {
            let mut g = lock(bed);
            let b = &mut *g;
            b.alarms.tick(now, &mut b.em.events);
            monitoring |= b
                .devices
                .iter()
                .any(|(_, d)| d.status == DeviceStatus::Connected);
            self.publish_bed(b, true);
        }
        let mut g = lock(&self.sys);
        let sys = &mut *g;
        // A page counts as alive while its latest heartbeat is recent and armed.
        if sys.dashboards.any_live(now.mono) {
            sys.watchdog.dashboard_alive(now, &mut sys.em.events);
        }
        sys.watchdog.tick(now, monitoring, &mut sys.em.events);
        if let Some(store) = self.store.get() {
            if store.health().writable {
                sys.store_watch.dashboard_alive(now, &mut sys.em.events);
            }
            sys.store_watch.tick(now, true, &mut sys.em.events);
        }
        if let Some((w, up)) = sys.mqtt_watch.as_mut() {
            if *up {
                w.dashboard_alive(now, &mut sys.em.events);
            }
            w.tick(now, true, &mut sys.em.events);
        }
        if let Some(w) = sys.hl7_watch.as_mut() {
            if self.hl7_links.iter().all(|l| l.is_up()) {
                w.dashboard_alive(now, &mut sys.em.events);
            }
            w.tick(now, true, &mut sys.em.events);
        }
        self.publish_sys(sys, true);
    }

    /// The HL7 endpoints' state and counters (queue depth, failures), one per `[[hl7]]` in
    /// config order. Their senders (src/hl7) write them; `hl7_down` is raised when any stays
    /// down longer than its `down_after`.
    pub fn hl7_links(&self) -> &[Arc<link::LinkStats>] {
        &self.hl7_links
    }

    /// Notification target `target` (index in `Config::notify`) failed to take pages, or
    /// delivered again: raises or clears its `notify_failed` alarm.
    pub fn notify_target(&self, target: usize, failing: bool) {
        let now = Stamp::now().as_now();
        let mut g = lock(&self.sys);
        let sys = &mut *g;
        sys.targets.set(target, failing, now, &mut sys.em.events);
        self.publish_sys(sys, true);
    }

    /// Client `client`'s page sent its application heartbeat. Only a page whose audio is
    /// armed proves that a dashboard can sound: that, and nothing else (not a pong, not a
    /// connection), keeps `no_dashboard` away.
    pub fn page_beat(&self, client: u64, beat: PageBeat) {
        let now = Stamp::now().as_now();
        let mut g = lock(&self.sys);
        let sys = &mut *g;
        if sys.dashboards.beat(client, beat, now.mono) {
            sys.watchdog.dashboard_alive(now, &mut sys.em.events);
            self.publish_sys(sys, true);
        }
    }

    /// The MQTT bridge's link to its broker is up (or down): `mqtt_down` is raised when it
    /// stays down longer than `[mqtt] down_after`, cleared on the next tick once it is up.
    pub fn set_mqtt_link(&self, up: bool) {
        if let Some((_, u)) = lock(&self.sys).mqtt_watch.as_mut() {
            *u = up;
        }
    }

    /// How many dashboards can sound now (and how many cannot).
    pub fn dashboard_counts(&self) -> crate::alarm::DashboardCounts {
        let sys = lock(&self.sys);
        let clients = lock(&self.fan).clients.len();
        sys.dashboards.counts(mono_now(), clients)
    }

    /// Acknowledges an alarm once the acknowledgement is committed; returns the events it
    /// caused (sent to clients after the commit).
    pub async fn acknowledge(&self, id: u64, actor: &str) -> Result<Vec<Dispatched>, ActionError> {
        if lock(&self.sys).targets.owns(AlarmId(id)) {
            return self.acknowledge_target_alarm(id, actor).await;
        }
        let bed = {
            let g = lock(&self.sys);
            if g.watchdog.alarm().is_some_and(|a| a.id.0 == id)
                || g.store_watch.alarm().is_some_and(|a| a.id.0 == id)
                || g.mqtt_watch
                    .as_ref()
                    .and_then(|(w, _)| w.alarm())
                    .is_some_and(|a| a.id.0 == id)
                || g.hl7_watch
                    .as_ref()
                    .and_then(Watchdog::alarm)
                    .is_some_and(|a| a.id.0 == id)
            {
                return Err(ActionError::NotAcknowledgeable(id));
            }
            drop(g);
            self.beds
                .iter()
                .position(|b| lock(b).alarms.alarms().any(|a| a.id.0 == id))
                .and_then(|i| u16::try_from(i).ok())
                .map(BedIdx)
                .ok_or(ActionError::UnknownAlarm(id))?
        };
        let (_, events) = self
            .act(bed, |e, now, out| {
                Ok(e.acknowledge(AlarmId(id), actor, now, out)?)
            })
            .await?;
        Ok(events)
    }

    /// Acknowledges a `notify_failed` alarm: committed (the event), then applied.
    async fn acknowledge_target_alarm(
        &self,
        id: u64,
        actor: &str,
    ) -> Result<Vec<Dispatched>, ActionError> {
        let now = Stamp::now().as_now();
        let record = {
            let mut copy = lock(&self.sys).targets.clone();
            let mut events = Vec::new();
            copy.acknowledge(AlarmId(id), actor, now, &mut events)?;
            events
                .into_iter()
                .filter_map(|e| {
                    let json = serde_json::to_vec(&wire::AlarmMsg::new(&self.cfg, 0, &e)).ok()?;
                    Some(Dispatched {
                        event: e,
                        json: Bytes::from(json),
                        seq: 0,
                    })
                })
                .collect()
        };
        self.commit(record, None)
            .await
            .map_err(ActionError::NotCommitted)?;
        let mut g = lock(&self.sys);
        let sys = &mut *g;
        sys.targets
            .acknowledge(AlarmId(id), actor, now, &mut sys.em.events)?;
        Ok(self.publish_sys(sys, false))
    }

    /// Pauses a bed's alarm audio (time-limited) once committed; returns the granted length
    /// and the events.
    pub async fn pause_audio(
        &self,
        bed: BedIdx,
        for_: Option<std::time::Duration>,
        actor: &str,
    ) -> Result<(std::time::Duration, Vec<Dispatched>), ActionError> {
        self.act(bed, |e, now, out| Ok(e.pause_audio(for_, actor, now, out)?))
            .await
    }

    /// Ends a bed's audio pause early, once committed.
    pub async fn cancel_pause(
        &self,
        bed: BedIdx,
        actor: &str,
    ) -> Result<Vec<Dispatched>, ActionError> {
        let (_, events) = self
            .act(bed, |e, now, out| Ok(e.cancel_pause(actor, now, out)?))
            .await?;
        Ok(events)
    }

    /// Replaces a bed's limit rules, once committed.
    pub async fn set_limits(
        &self,
        bed: BedIdx,
        limits: BedLimits,
        actor: &str,
    ) -> Result<Vec<Dispatched>, ActionError> {
        let (_, events) = self
            .act(bed, |e, now, out| {
                Ok(e.set_limits(limits.clone(), actor, now, out)?)
            })
            .await?;
        Ok(events)
    }

    /// Sets a bed's pre-dose baseline, once committed: the given values, or (`from_recent`)
    /// the median of the bed's recent valid readings for every value not given.
    pub async fn set_baseline(
        &self,
        bed: BedIdx,
        given: Baseline,
        from_recent: bool,
        actor: &str,
    ) -> Result<(Baseline, Vec<Dispatched>), ActionError> {
        self.act(bed, |engine, now, out| {
            let mut b = given;
            if from_recent {
                let fill = |v: &mut Option<f64>, m: Metric| {
                    if v.is_none() {
                        *v = engine.recent_median(m);
                    }
                };
                fill(&mut b.sys, Metric::NibpSys);
                fill(&mut b.dia, Metric::NibpDia);
                fill(&mut b.pulse_rate, Metric::PulseRate);
                fill(&mut b.spo2, Metric::Spo2);
                if b.sys.is_none() && b.dia.is_none() && b.pulse_rate.is_none() && b.spo2.is_none()
                {
                    return Err(ActionError::NoRecent("sys, dia, pulse_rate or spo2"));
                }
            }
            engine.set_baseline(b, actor, now, out)?;
            Ok(engine.baseline())
        })
        .await
    }

    /// A bed's limit rules with what is in force, and its baseline.
    pub fn limits_of(&self, bed: BedIdx) -> (Vec<RuleStatus>, Baseline) {
        let g = self.bed(bed);
        (g.alarms.limits(), g.alarms.baseline())
    }

    /// Every current alarm, as JSON views.
    pub fn alarms_json(&self) -> serde_json::Value {
        let beds = self.lock_beds();
        let g = lock(&self.sys);
        let list: Vec<wire::AlarmView<'_>> = beds
            .iter()
            .flat_map(|b| b.alarms.alarms())
            .chain(g.watchdog.alarm())
            .chain(g.store_watch.alarm())
            .chain(g.targets.alarms())
            .chain(g.mqtt_watch.as_ref().and_then(|(w, _)| w.alarm()))
            .chain(g.hl7_watch.as_ref().and_then(Watchdog::alarm))
            .map(|a| wire::AlarmView::new(&self.cfg, a))
            .collect();
        serde_json::json!({ "alarms": list })
    }

    /// The bed with this id (`room1/A`).
    pub fn bed_by_id(&self, id: &str) -> Option<BedIdx> {
        self.cfg
            .beds
            .iter()
            .position(|b| b.id == id)
            .and_then(|i| u16::try_from(i).ok())
            .map(BedIdx)
    }

    fn snapshot_locked(
        &self,
        beds: &[MutexGuard<'_, BedState>],
        sys: &System,
        fan: &Fanout,
        resumed: bool,
    ) -> Vec<u8> {
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
                        let st = &beds[usize::from(bidx.0)];
                        let latest: BTreeMap<&'static str, wire::ReadingView<'_>> = st
                            .latest
                            .iter()
                            .flatten()
                            .filter(|o| wire::in_latest(o.m.metric))
                            .map(|o| (o.m.metric.name(), wire::ReadingView::new(cfg, o)))
                            .collect();
                        let Now {
                            mono: now_mono,
                            wall_ms: now_wall,
                        } = Stamp::now().as_now();
                        let audio_paused_until = st.alarms.audio_paused_until().map(|until| {
                            let left = until.since(now_mono).as_millis();
                            rfc3339_ms(now_wall + i64::try_from(left).unwrap_or(0))
                        });
                        wire::BedView {
                            alarms: st
                                .alarms
                                .alarms()
                                .map(|a| wire::AlarmView::new(cfg, a))
                                .collect(),
                            audio_paused_until,
                            limits_off: limits_off(&st.alarms.limits()),
                            id: &bed.id,
                            recliner: &bed.recliner,
                            label: &bed.label,
                            bp_interval_s: bed.bp_interval.as_secs(),
                            devices: bed
                                .devices
                                .iter()
                                .zip(&st.devices)
                                .map(|(d, (_, s))| {
                                    let b = cfg.device(*d);
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
            seq: fan.next_seq - 1,
            resumed,
            time: rfc3339_ms(wall_ms()),
            started: rfc3339_ms(self.started_ms),
            simulated: cfg.devices.iter().any(|d| d.simulated),
            rooms,
            alarms: sys
                .watchdog
                .alarm()
                .into_iter()
                .chain(sys.store_watch.alarm())
                .chain(sys.targets.alarms())
                .chain(sys.mqtt_watch.as_ref().and_then(|(w, _)| w.alarm()))
                .chain(sys.hl7_watch.as_ref().and_then(Watchdog::alarm))
                .map(|a| wire::AlarmView::new(cfg, a))
                .collect(),
            dashboards: sys.dashboards.counts(mono_now(), fan.clients.len()),
        };
        serde_json::to_vec(&msg).unwrap_or_default()
    }
}

/// A bed's state as the store keeps it (`None` only if it cannot be serialized, which plain
/// numbers and strings cannot fail).
fn saved_state(cfg: &Config, engine: &BedAlarms, now: Now) -> Option<StoredState> {
    let saved = SavedBed {
        devices: cfg.devices.iter().map(|d| d.id.clone()).collect(),
        snapshot: engine.snapshot(now),
    };
    match serde_json::to_string(&saved) {
        Ok(json) => Some(StoredState {
            bed: cfg.bed(engine.bed()).id.clone(),
            at_ms: now.wall_ms,
            json,
        }),
        Err(e) => {
            tracing::error!(error = %e, "alarm state could not be serialized");
            None
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

/// The guarded metrics (spo2, pulse_rate) without an active limit rule, by name.
fn limits_off(rules: &[crate::alarm::RuleStatus]) -> Vec<&'static str> {
    crate::alarm::BedLimits::GUARDED
        .into_iter()
        .filter(|m| !rules.iter().any(|r| r.active && r.rule.metric == *m))
        .map(|m| m.name())
        .collect()
}
