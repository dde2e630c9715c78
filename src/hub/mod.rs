//! The hub: per-bed state (latest value per metric, per-bed sequence numbers), device status,
//! and fan-out of every message to every subscriber under the policy in [`queue`].
//!
//! Order on the decode path, per device read: stamp each observation with the bed's next
//! sequence number and evaluate it (its alarm events are staged first), then publish the
//! read's observations as one `readings` message, serialized once, after those events.
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
//! A bounded replay ring (messages and bytes) keeps the latest messages so that a client that reconnects with
//! `?since=SEQ` gets what it missed without a gap, after a fresh snapshot.

mod actions;
pub mod dispatch;
mod fanout;
pub mod link;
pub mod queue;
mod record;
mod state;
#[cfg(test)]
mod tests;
mod view;
pub mod wire;

pub use actions::{ActionError, OpenSession, RestoreSummary};
pub use record::Recorder;
pub use view::reason_text;

use crate::alarm::{
    AlarmEvent, AlarmIds, BedAlarms, BedSpec, Dashboards, LimitsError, Now, PageBeat, Watchdog,
};
use crate::clock::{Mono, mono_now, rfc3339_ms, wall_ms};
use crate::config::Config;
use crate::model::{BedIdx, DeviceIdx, Measurement, Metric, Observation, StoredState};
use bytes::Bytes;
use fanout::{Emitter, Fanout};
use queue::{Class, ClientQueue, DeliveryStats, DeliverySummary, lock};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use wire::{DeviceStatus, VERSION};

/// How long the store may fail to write before `store_unwritable` is raised.
pub const STORE_ALARM_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Messages kept for clients that resume.
pub const REPLAY_CAP: usize = 8_192;
/// Bytes of messages kept for clients that resume, at most (at a high rate each `readings`
/// message carries many readings: without it the ring alone held tens of MiB).
pub const REPLAY_BYTES: usize = 4 << 20;

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
    /// The observations of the device read being ingested (a reused buffer).
    read: Vec<Observation>,
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
    /// A bed's alarm state changed: save it as it is when this is taken
    /// ([`Hub::saved_state`]; latest per bed, group-committed).
    State(BedIdx),
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
    /// Consumers of alarm events off the alarm path (store, notifier): bounded, coalescing.
    sink: Option<Arc<dispatch::DispatchQueue>>,
    /// Delivery counters of every client queue.
    stats: Arc<DeliveryStats>,
    /// Wall-clock ms when this hub was created: tells clients a restarted daemon apart.
    started_ms: i64,
    /// The durable record; every reading is handed to it (non-blocking) before it is published.
    recorder: std::sync::OnceLock<Box<dyn Recorder>>,
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
        sink: Option<Arc<dispatch::DispatchQueue>>,
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
                read: Vec::new(),
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
            replay_bytes: 0,
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
            recorder: std::sync::OnceLock::new(),
            actions,
            hl7_links,
        })
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

    /// Records every reading from now on in `recorder` (set once, at start), and watches
    /// whether it stays writable (`store_unwritable`).
    pub fn set_recorder(&self, recorder: impl Recorder + 'static) {
        if self.recorder.set(Box::new(recorder)).is_err() {
            tracing::warn!("the hub already has a recorder; keeping the first");
        }
    }

    /// The configuration the hub serves.
    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    /// Takes the measurements of one device read: stamps and evaluates each (its alarm events
    /// are staged first), then publishes them as one `readings` message, after those events.
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
        b.read.clear();
        // The metrics of this read: a slow client's backlog keeps the latest read per device
        // and set of metrics (a NIBP result does not supersede the cuff's pulse rate).
        let mut metrics = 0u32;
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
            // (and so sent) ahead of the readings that caused them.
            b.alarms.observe(&obs, stamp.as_now(), &mut b.em.events);
            b.em.stage(&self.cfg);
            metrics |= 1 << m.metric.index();
            b.read.push(obs);
        }
        if let Some(rec) = self.recorder.get() {
            // Never blocks: a push into the store's bounded buffer, one lock for the read.
            rec.readings(&b.read);
        }
        const _: () = assert!(
            Metric::COUNT <= 16,
            "a reading slot is a u16 device and a mask"
        );
        let slot = (u32::from(device.0) << Metric::COUNT) | metrics;
        let n = u32::try_from(b.read.len()).unwrap_or(u32::MAX);
        // `wire::ReadingsMsg`, written by hand (`wire::write_readings`): once per read,
        // shared by every client.
        let (bed_id, read) = (&self.cfg.bed(bed).id, &b.read);
        b.em.out.add_with(Class::Reading { slot, n }, |buf| {
            wire::write_readings(buf, &self.cfg, bed_id, &binding.id, read);
            Ok(())
        });
        self.publish_bed(b, true);
        drop(g);
        // One clock read and histogram observation per read, not per reading.
        crate::metrics::global().decided(stamp.mono);
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

    /// Bed `bed`'s alarm state as the store keeps it, now (`None` for an unknown bed).
    pub fn saved_state(&self, bed: BedIdx) -> Option<StoredState> {
        let now = Stamp::now().as_now();
        // The snapshot under the bed's lock, serialized after it.
        let snapshot = lock(self.beds.get(usize::from(bed.0))?)
            .alarms
            .snapshot(now);
        state::saved_snapshot(&self.cfg, bed, snapshot, now)
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
        if let Some(rec) = self.recorder.get() {
            // An alarm event that could not be queued for the store is missing from the
            // record: as unwritable as a failed write.
            let lost = self.sink.as_ref().is_some_and(|s| s.dropped_recently());
            if rec.writable() && !lost {
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

    /// The bed with this id (`room1/A`).
    pub fn bed_by_id(&self, id: &str) -> Option<BedIdx> {
        self.cfg
            .beds
            .iter()
            .position(|b| b.id == id)
            .and_then(|i| u16::try_from(i).ok())
            .map(BedIdx)
    }
}

/// Which bed a device feeds (convenience for sources).
pub fn bed_of(cfg: &Config, device: DeviceIdx) -> BedIdx {
    cfg.device(device).bed
}
