//! The MQTT bridge: publishes this site to a broker under `vitalsd/v1/{site}/...`
//! (docs/mqtt.md has the topic tree, payloads, QoS and retain per topic).
//!
//! Off the alarm path by construction: the bridge is one more hub subscriber, like a
//! WebSocket client ([`Hub::subscribe`]), with the same bounded queue (alarms and statuses
//! never dropped, readings coalesced to the latest per device and metric when it falls
//! behind). A broker that is down or slow only fills that queue; the alarm engine, the
//! store and every dashboard go on as before. While the broker is unreachable the bridge is
//! not subscribed at all.
//!
//! Alarm events are published from the store (`alarm_events`, in row order), not from the
//! live messages: the row id is the event's sequence number on the wire (`event_id`), and
//! the id of the last row the broker acknowledged is kept in `data_dir/mqtt_cursor`. On
//! every (re)connection the rows after it are sent first, marked `"replay": true`, so an
//! outage loses no event and a consumer can drop the rare duplicate (a row sent, acknowledged
//! by the broker, but killed before the cursor was written) by `event_id`.
//!
//! A link that stays down longer than `[mqtt] down_after` raises `mqtt_down` (medium,
//! bed-less) through [`Hub::set_mqtt_link`].

pub mod command;
pub mod tls;

use crate::config::MqttSettings;
use crate::hub::Hub;
use crate::hub::queue::Next;
use crate::store::StoreHandle;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The version level of every topic.
pub const TOPIC_VERSION: &str = "v1";
/// The file in `data_dir` that holds the last alarm-event row the broker acknowledged.
pub const CURSOR_FILE: &str = "mqtt_cursor";
/// Alarm-event rows read from the store at a time.
const ROWS_PER_READ: usize = 500;
/// Publications handed to the MQTT client at once (its request channel).
const CLIENT_CAP: usize = 512;
/// How often the site publishes `heartbeat` (QoS 0, not retained). A central view counts a
/// site silent for [`HEARTBEAT_MISSED`] of these as offline, even if no Last Will came (a
/// site whose process hangs with its TCP connection open, a broker that lost the will).
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Heartbeats missed before a central view counts the site offline.
pub const HEARTBEAT_MISSED: u32 = 3;
/// How often the store is looked at for alarm events: a live alarm message makes the bridge
/// look at once, but the row may be committed a moment after the message is sent.
const STORE_POLL: Duration = Duration::from_millis(200);

/// A bed-metric's retained latest-reading topic is published at most this often: the live
/// stream is the per-read `readings` batch; the retained topic is for late joiners (the latest
/// reading of the interval is published when it ends, so the retained value is never older
/// than this behind the last reading).
pub const RETAINED_READING_EVERY: Duration = Duration::from_secs(5);

/// Alarm events a site publishes again for one resync request, at most.
pub const RESYNC_MAX_ROWS: usize = 2000;
/// A site serves at most one resync request this often (others wait, merged).
const RESYNC_EVERY: Duration = Duration::from_secs(1);

/// A central view's request to a site: publish again the alarm events after `after`
/// (`event_id`), on `vitalsd/v1/{site}/resync`, QoS 1 (docs/mqtt.md, "Resync").
pub fn resync_request(after: i64, from: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "v": 1, "type": "resync", "after": after, "from": from,
    }))
    .unwrap_or_default()
}

/// The `after` of a resync request.
pub fn parse_resync(payload: &[u8]) -> Result<i64, String> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| {
        format!("resync request is not JSON ({e}), expected {{\"type\":\"resync\",\"after\":N}}")
    })?;
    if v["type"] != "resync" {
        return Err(format!(
            "resync request has type {}, expected \"resync\"",
            v["type"]
        ));
    }
    v["after"].as_i64().filter(|a| *a >= 0).ok_or_else(|| {
        format!(
            "resync request has after = {}, expected an event_id (0 or more)",
            v["after"]
        )
    })
}

/// The topics of one site.
#[derive(Debug, Clone)]
pub struct Topics {
    root: String,
}

impl Topics {
    /// `vitalsd/v1/{site}`.
    pub fn new(site: &str) -> Topics {
        Topics {
            root: format!("vitalsd/{TOPIC_VERSION}/{site}"),
        }
    }
    /// `online` / `offline`, retained (birth message and Last Will).
    pub fn status(&self) -> String {
        format!("{}/status", self.root)
    }
    /// The site's rooms, beds and devices, retained.
    pub fn config(&self) -> String {
        format!("{}/config", self.root)
    }
    /// Every alarm-system event, QoS 1, not retained, in order.
    pub fn alarm(&self) -> String {
        format!("{}/alarm", self.root)
    }
    /// Every current alarm of the site (bed-less ones included), retained.
    pub fn alarms(&self) -> String {
        format!("{}/alarms", self.root)
    }
    /// A bed's current alarms, retained. `bed` is `room/recliner` (two topic levels).
    pub fn bed_alarms(&self, bed: &str) -> String {
        format!("{}/bed/{bed}/alarms", self.root)
    }
    /// The latest reading of a bed's metric, retained.
    pub fn reading(&self, bed: &str, metric: &str) -> String {
        format!("{}/bed/{bed}/reading/{metric}", self.root)
    }
    /// Every reading of one device read (the WebSocket `readings` message, as sent), QoS 0,
    /// not retained.
    pub fn readings(&self, bed: &str) -> String {
        format!("{}/bed/{bed}/readings", self.root)
    }
    /// A device's connection state, retained.
    pub fn device_status(&self, bed: &str, device: &str) -> String {
        format!("{}/bed/{bed}/device/{device}/status", self.root)
    }
    /// Session events of a bed (admitted, discharged, dose, ...), QoS 1.
    pub fn session(&self, bed: &str) -> String {
        format!("{}/bed/{bed}/session", self.root)
    }
    /// `{"v":1,"type":"heartbeat",...}` every [`HEARTBEAT`], QoS 0, not retained.
    pub fn heartbeat(&self) -> String {
        format!("{}/heartbeat", self.root)
    }
    /// Signed commands from a central view to this site (src/mqtt/command.rs), QoS 1.
    pub fn command(&self) -> String {
        format!("{}/command", self.root)
    }
    /// A central view's request for the alarm events after an `event_id` (the site
    /// subscribes), QoS 1.
    pub fn resync(&self) -> String {
        format!("{}/resync", self.root)
    }
    /// Other site events (`notification`), QoS 1.
    pub fn event(&self, kind: &str) -> String {
        format!("{}/event/{kind}", self.root)
    }
}

/// One publication waiting for the client.
struct Pub {
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
    retain: bool,
    /// The alarm-event row it carries.
    row: Option<i64>,
}

impl Pub {
    fn new(topic: String, payload: Vec<u8>, qos: QoS, retain: bool) -> Pub {
        Pub {
            topic,
            payload,
            qos,
            retain,
            row: None,
        }
    }
}

/// Runs the bridge until `cancel`: connects, publishes, reconnects with backoff.
pub async fn run(
    settings: MqttSettings,
    hub: Arc<Hub>,
    store: StoreHandle,
    data_dir: PathBuf,
    cancel: CancellationToken,
) {
    let topics = Topics::new(&settings.site);
    let cursor_path = data_dir.join(CURSOR_FILE);
    let mut cursor = match read_cursor(&cursor_path, &store).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "mqtt: cannot read or start the alarm-event cursor; the bridge does not run");
            return;
        }
    };
    // The cursor file is written by its own task, latest value wins.
    let (cursor_tx, cursor_rx) = tokio::sync::watch::channel(cursor);
    let writer = tokio::spawn(write_cursor(cursor_path, cursor_rx));
    let mut backoff = Duration::from_millis(500);
    let mut down_logged = false;
    let mut nonces = command::Nonces::default();
    let tls = match tls::prepare(settings.tls.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            // The link stays down: mqtt_down after down_after says so at the site.
            tracing::error!(error = %format!("{e:#}"), "mqtt: cannot set up TLS to the broker; the bridge does not run");
            hub.set_mqtt_link(false);
            cancel.cancelled().await;
            return;
        }
    };
    loop {
        let (client, mut el) =
            AsyncClient::new(options(&settings, &topics, tls.as_ref()), CLIENT_CAP);
        el.set_network_options(network_options());
        let connected = tokio::select! {
            _ = cancel.cancelled() => break,
            c = tokio::time::timeout(Duration::from_secs(10), connack(&mut el)) => match c {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(_) => Err("no CONNACK within 10 s".to_owned()),
            },
        };
        match connected {
            Err(e) => {
                hub.set_mqtt_link(false);
                if !std::mem::replace(&mut down_logged, true) {
                    tracing::warn!(broker = %settings.url, error = %e, "mqtt: broker unreachable; retrying");
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Ok(()) => {
                down_logged = false;
                tracing::info!(broker = %settings.url, site = %settings.site, "mqtt: connected");
                hub.set_mqtt_link(true);
                backoff = Duration::from_millis(500);
            }
        }
        let mut s = Session {
            hub: &hub,
            store: &store,
            topics: &topics,
            client,
            out: VecDeque::new(),
            fifo: VecDeque::new(),
            inflight: HashMap::new(),
            sent_rows: VecDeque::new(),
            acked: BTreeSet::new(),
            cursor,
            last_row: cursor,
            site: &settings.site,
            secret: settings.command_secret.as_deref(),
            nonces: std::mem::take(&mut nonces),
            resync_pending: None,
            resync_served: None,
            retained: HashMap::new(),
        };
        // The event loop polls in its own task (its `poll` is not documented as cancel
        // safe, so it is never a `select!` branch that may lose); the session reads its events.
        let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
        let poller = tokio::spawn(async move {
            loop {
                let ev = el.poll().await.map_err(|e| e.to_string());
                let failed = ev.is_err();
                if ev_tx.send(ev).is_err() || failed {
                    return;
                }
            }
        });
        let end = s.serve(&mut ev_rx, &cancel, &cursor_tx).await;
        poller.abort();
        cursor = s.cursor;
        nonces = std::mem::take(&mut s.nonces);
        hub.set_mqtt_link(false);
        match end {
            End::Stopped => break,
            End::Lost(why) => {
                tracing::warn!(broker = %settings.url, reason = %why, "mqtt: link lost; reconnecting");
            }
        }
    }
    drop(cursor_tx);
    let _ = writer.await;
}

/// Connection options: keepalive, credentials, and the retained Last Will `offline`.
fn options(
    s: &MqttSettings,
    topics: &Topics,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> MqttOptions {
    let mut o = MqttOptions::new(&s.client_id, &s.host, s.port);
    tls::set_transport(&mut o, tls);
    o.set_keep_alive(s.keepalive);
    o.set_clean_session(true);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_last_will(LastWill::new(
        topics.status(),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(user) = &s.username {
        o.set_credentials(user, s.password.clone().unwrap_or_default());
    }
    o
}

/// Polls until the broker accepts the connection.
/// The broker link's socket options: TCP_NODELAY, so a small publish (an alarm event) leaves at
/// once instead of waiting up to 40 ms for Nagle's algorithm and the broker's delayed ACK;
/// rumqttc's 5 s connect timeout kept.
pub fn network_options() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

async fn connack(el: &mut EventLoop) -> Result<(), String> {
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(a))) => {
                return if a.code == rumqttc::ConnectReturnCode::Success {
                    Ok(())
                } else {
                    Err(format!("broker refused the connection: {:?}", a.code))
                };
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// What the event loop's task saw, in order.
type Events = tokio::sync::mpsc::UnboundedReceiver<Result<Event, String>>;

enum End {
    Stopped,
    Lost(String),
}

/// One connection's state.
struct Session<'a> {
    hub: &'a Arc<Hub>,
    store: &'a StoreHandle,
    topics: &'a Topics,
    client: AsyncClient,
    /// Waiting for room in the client's channel.
    out: VecDeque<Pub>,
    /// QoS 1 publications handed to the client, in order, until it says which packet id each
    /// got (its `Outgoing::Publish` events come in the same order).
    fifo: VecDeque<Option<i64>>,
    /// Packet id -> alarm-event row, until acknowledged.
    inflight: HashMap<u16, i64>,
    /// Alarm-event rows sent, in order, not yet all acknowledged.
    sent_rows: VecDeque<i64>,
    acked: BTreeSet<i64>,
    /// The last row acknowledged with every row before it.
    cursor: i64,
    /// The last row queued for publishing.
    last_row: i64,
    site: &'a str,
    /// `[mqtt] command_secret`: without it every command is refused.
    secret: Option<&'a str>,
    /// Command nonces seen (replay protection), kept across reconnections.
    nonces: command::Nonces,
    /// The smallest `after` of the resync requests not served yet.
    resync_pending: Option<i64>,
    /// When the last resync request was served.
    resync_served: Option<tokio::time::Instant>,
    /// Retained latest-reading topic -> when it was last published, and the reading that
    /// came since (published when [`RETAINED_READING_EVERY`] has passed).
    retained: HashMap<String, (tokio::time::Instant, Option<Vec<u8>>)>,
}

impl Session<'_> {
    async fn serve(
        &mut self,
        el: &mut Events,
        cancel: &CancellationToken,
        cursor_tx: &tokio::sync::watch::Sender<i64>,
    ) -> End {
        let sub = self.hub.subscribe(None);
        let end = self.serve_sub(el, cancel, cursor_tx, &sub).await;
        self.hub.unsubscribe(sub.id);
        end
    }

    async fn serve_sub(
        &mut self,
        el: &mut Events,
        cancel: &CancellationToken,
        cursor_tx: &tokio::sync::watch::Sender<i64>,
        sub: &crate::hub::Subscription,
    ) -> End {
        let t = self.topics;
        self.out.push_back(Pub::new(
            t.status(),
            b"online".to_vec(),
            QoS::AtLeastOnce,
            true,
        ));
        for m in &sub.preamble {
            self.on_snapshot(m);
        }
        // Commands from a central view (refused unless signed with command_secret).
        if let Err(e) = self.client.try_subscribe(t.command(), QoS::AtLeastOnce) {
            return End::Lost(format!("cannot subscribe to {}: {e}", t.command()));
        }
        // A central view's requests for the events it missed.
        if let Err(e) = self.client.try_subscribe(t.resync(), QoS::AtLeastOnce) {
            return End::Lost(format!("cannot subscribe to {}: {e}", t.resync()));
        }
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // What the broker missed, in order, before anything live.
        if let Err(e) = self.fetch_rows(true).await {
            return End::Lost(e);
        }
        self.alarm_lists();
        let mut poll = tokio::time::interval(STORE_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The hub queue has (or may have) messages not taken yet.
        let mut more = true;
        loop {
            let mut fetch = false;
            if more && self.out.len() < CLIENT_CAP {
                loop {
                    match sub.queue.pop() {
                        Next::Send(m) => fetch |= self.on_hub_message(&m),
                        Next::Empty => {
                            more = false;
                            break;
                        }
                        Next::Closed(why) => return End::Lost(format!("hub queue: {why}")),
                    }
                    // Come back for the rest when the client has room.
                    if self.out.len() >= CLIENT_CAP {
                        break;
                    }
                }
            }
            if fetch {
                if let Err(e) = self.fetch_rows(false).await {
                    return End::Lost(e);
                }
                self.alarm_lists();
            }
            self.flush();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    self.goodbye(el).await;
                    return End::Stopped;
                }
                ev = el.recv() => match ev {
                    None => return End::Lost("the MQTT event loop stopped".to_owned()),
                    Some(Err(e)) => return End::Lost(e),
                    Some(Ok(Event::Incoming(Packet::Publish(p)))) if p.topic == t.command() => {
                        self.on_command(&p.payload);
                    }
                    Some(Ok(Event::Incoming(Packet::Publish(p)))) if p.topic == t.resync() => {
                        match parse_resync(&p.payload) {
                            Ok(after) => {
                                self.resync_pending =
                                    Some(self.resync_pending.map_or(after, |a| a.min(after)));
                            }
                            Err(why) => tracing::warn!(site = %self.site, reason = %why, "mqtt: resync request ignored"),
                        }
                    }
                    Some(Ok(ev)) => {
                        if self.on_event(ev) {
                            let _ = cursor_tx.send(self.cursor);
                        }
                    }
                },
                _ = sub.queue.notified(), if !more => more = true,
                _ = heartbeat.tick() => {
                    let now = crate::clock::wall_ms();
                    let msg = serde_json::json!({
                        "v": 1, "type": "heartbeat", "at": crate::clock::rfc3339_ms(now),
                        "at_ms": now, "seq": self.hub.last_seq(), "interval_s": HEARTBEAT.as_secs(),
                    });
                    self.push_json(t.heartbeat(), &msg, QoS::AtMostOnce, false);
                }
                _ = poll.tick() => {
                    self.flush_retained(tokio::time::Instant::now());
                    // Alarm events the live messages did not announce yet (committed later).
                    let before = self.last_row;
                    if let Err(e) = self.fetch_rows(false).await {
                        return End::Lost(e);
                    }
                    if self.last_row != before {
                        self.alarm_lists();
                    }
                    if let Err(e) = self.serve_resync().await {
                        return End::Lost(e);
                    }
                }
            }
        }
    }

    /// A command from a central view: applied (in its own task, committed and audited by the
    /// hub with the actor `central/{user}`) when it verifies, refused and logged otherwise.
    fn on_command(&mut self, payload: &[u8]) {
        let now = crate::clock::wall_ms();
        let verified = match self.secret {
            None => {
                Err("this site has no [mqtt] command_secret, so it takes no commands".to_owned())
            }
            Some(secret) => command::verify(secret, self.site, payload, now, &mut self.nonces),
        };
        match verified {
            Err(why) => {
                tracing::warn!(site = %self.site, reason = %why, "mqtt: command refused");
                self.hub.publish_priority(serde_json::json!({
                    "type": "command_refused", "reason": why, "at": crate::clock::rfc3339_ms(now),
                }));
            }
            Ok(body) => {
                tokio::spawn(apply_command(self.hub.clone(), body));
            }
        }
    }

    /// Hands queued publications to the client while it has room.
    fn flush(&mut self) {
        while let Some(p) = self.out.pop_front() {
            let qos = p.qos;
            let row = p.row;
            match self
                .client
                .try_publish(p.topic.clone(), qos, p.retain, p.payload.clone())
            {
                Ok(()) => {
                    if qos != QoS::AtMostOnce {
                        self.fifo.push_back(row);
                    }
                    if let Some(r) = row {
                        self.sent_rows.push_back(r);
                    }
                }
                Err(_) => {
                    // Full: keep it first in line.
                    self.out.push_front(p);
                    return;
                }
            }
        }
    }

    /// Tracks packet ids and acknowledgements; true when the cursor moved.
    fn on_event(&mut self, ev: Event) -> bool {
        match ev {
            Event::Outgoing(Outgoing::Publish(pkid)) if pkid != 0 => {
                if let Some(Some(row)) = self.fifo.pop_front() {
                    self.inflight.insert(pkid, row);
                }
                false
            }
            Event::Incoming(Packet::PubAck(a)) => {
                let Some(row) = self.inflight.remove(&a.pkid) else {
                    return false;
                };
                self.acked.insert(row);
                let before = self.cursor;
                while let Some(front) = self.sent_rows.front().copied() {
                    if !self.acked.remove(&front) {
                        break;
                    }
                    self.cursor = front;
                    self.sent_rows.pop_front();
                }
                self.cursor != before
            }
            _ => false,
        }
    }

    /// Retained state from a snapshot: config, device states, latest readings.
    fn on_snapshot(&mut self, bytes: &[u8]) {
        let Ok(snap) = serde_json::from_slice::<Value>(bytes) else {
            return;
        };
        if snap["type"] != "snapshot" {
            // A resumed client's missed messages; the bridge never resumes.
            return;
        }
        let t = self.topics;
        let mut config = serde_json::json!({
            "v": 1, "type": "config", "started": snap["started"], "simulated": snap["simulated"],
        });
        let mut rooms = Vec::new();
        // Published after the config: (topic, message, QoS).
        let mut state: Vec<(String, Value, QoS)> = Vec::new();
        for room in snap["rooms"].as_array().into_iter().flatten() {
            let mut beds = Vec::new();
            for bed in room["beds"].as_array().into_iter().flatten() {
                let Some(bed_id) = bed["id"].as_str() else {
                    continue;
                };
                let mut devices = Vec::new();
                for d in bed["devices"].as_array().into_iter().flatten() {
                    let Some(dev) = d["id"].as_str() else {
                        continue;
                    };
                    let status = serde_json::json!({
                        "v": 1, "type": "device_status", "bed": bed_id, "device": dev,
                        "status": d["status"], "detail": d["detail"], "at": d["status_since"],
                        "simulated": d["simulated"],
                    });
                    state.push((t.device_status(bed_id, dev), status, QoS::AtLeastOnce));
                    let mut d = d.clone();
                    if let Some(o) = d.as_object_mut() {
                        for live in ["status", "status_since", "detail"] {
                            o.remove(live);
                        }
                    }
                    devices.push(d);
                }
                for (metric, r) in bed["latest"].as_object().into_iter().flatten() {
                    let mut r = r.clone();
                    if let Some(o) = r.as_object_mut() {
                        o.insert("v".into(), 1.into());
                        o.insert("type".into(), "reading".into());
                    }
                    state.push((t.reading(bed_id, metric), r, QoS::AtMostOnce));
                }
                beds.push(serde_json::json!({
                    "id": bed_id, "recliner": bed["recliner"], "label": bed["label"],
                    "bp_interval_s": bed["bp_interval_s"], "devices": devices,
                }));
            }
            rooms.push(serde_json::json!({ "id": room["id"], "name": room["name"], "beds": beds }));
        }
        config["rooms"] = Value::Array(rooms);
        self.push_json(t.config(), &config, QoS::AtLeastOnce, true);
        for (topic, msg, qos) in state {
            self.push_json(topic, &msg, qos, true);
        }
    }

    /// Routes a live hub message; true when it was an alarm event (look in the store).
    fn on_hub_message(&mut self, bytes: &bytes::Bytes) -> bool {
        if bytes.is_empty() {
            return false;
        }
        let Ok(m) = serde_json::from_slice::<Value>(bytes) else {
            return false;
        };
        let t = self.topics;
        let bed = m["bed"].as_str();
        match (m["type"].as_str(), bed) {
            (Some("readings"), Some(bed)) => {
                // The live stream: the whole read, as the dashboards get it (serialized once,
                // by the hub).
                self.out.push_back(Pub::new(
                    t.readings(bed),
                    bytes.to_vec(),
                    QoS::AtMostOnce,
                    false,
                ));
                // For late joiners, one retained message per metric, in the shape of topic
                // tree v1: a version-1 `reading` (the element, with the batch's `seq`), at
                // most every RETAINED_READING_EVERY.
                let now = tokio::time::Instant::now();
                for r in m["readings"].as_array().into_iter().flatten() {
                    let (Some(metric), Some(fields)) = (r["metric"].as_str(), r.as_object()) else {
                        continue;
                    };
                    let mut o = serde_json::Map::with_capacity(fields.len() + 3);
                    o.insert("v".into(), 1.into());
                    o.insert("type".into(), "reading".into());
                    o.insert("seq".into(), m["seq"].clone());
                    o.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                    if let Ok(payload) = serde_json::to_vec(&o) {
                        self.retain_reading(t.reading(bed, metric), payload, now);
                    }
                }
                false
            }
            (Some("device_status"), Some(bed)) => {
                if let Some(dev) = m["device"].as_str() {
                    self.out.push_back(Pub::new(
                        t.device_status(bed, dev),
                        bytes.to_vec(),
                        QoS::AtLeastOnce,
                        true,
                    ));
                }
                false
            }
            (Some("alarm"), _) => true,
            (Some("session"), Some(bed)) => {
                self.out.push_back(Pub::new(
                    t.session(bed),
                    bytes.to_vec(),
                    QoS::AtLeastOnce,
                    false,
                ));
                false
            }
            (Some(kind), _) if crate::config::is_topic_level(kind) => {
                self.out.push_back(Pub::new(
                    t.event(kind),
                    bytes.to_vec(),
                    QoS::AtLeastOnce,
                    false,
                ));
                false
            }
            _ => false,
        }
    }

    /// Publishes a bed-metric's retained latest reading now if its topic was not published
    /// within [`RETAINED_READING_EVERY`], else keeps it for [`Self::flush_retained`].
    fn retain_reading(&mut self, topic: String, payload: Vec<u8>, now: tokio::time::Instant) {
        match self.retained.get_mut(&topic) {
            Some((sent, pending)) if now.duration_since(*sent) < RETAINED_READING_EVERY => {
                *pending = Some(payload);
            }
            _ => {
                self.retained.insert(topic.clone(), (now, None));
                self.out
                    .push_back(Pub::new(topic, payload, QoS::AtMostOnce, true));
            }
        }
    }

    /// Publishes the retained latest readings kept back whose interval has passed.
    fn flush_retained(&mut self, now: tokio::time::Instant) {
        for (topic, (sent, pending)) in &mut self.retained {
            if now.duration_since(*sent) >= RETAINED_READING_EVERY
                && let Some(payload) = pending.take()
            {
                *sent = now;
                self.out
                    .push_back(Pub::new(topic.clone(), payload, QoS::AtMostOnce, true));
            }
        }
    }

    /// Queues the alarm events the store has after the last one queued (`notify` rows are the
    /// notifier's, not published).
    async fn fetch_rows(&mut self, replay: bool) -> Result<(), String> {
        loop {
            let after = self.last_row;
            let rows = self
                .store
                .read(move |c| {
                    let mut st = c.prepare_cached(
                        "SELECT id, kind, json FROM alarm_events WHERE id > ?1 ORDER BY id LIMIT ?2",
                    )?;
                    let rows = st.query_map(
                        rusqlite::params![after, i64::try_from(ROWS_PER_READ).unwrap_or(500)],
                        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
                    )?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?)
                })
                .await
                .map_err(|e| format!("cannot read alarm events from the store: {e}"))?;
            let n = rows.len();
            for (id, kind, json) in rows {
                self.last_row = id;
                if let Some(mut p) = self.alarm_pub(id, &kind, &json, replay) {
                    p.row = Some(id);
                    self.out.push_back(p);
                }
            }
            // Rows with nothing to send count as sent and acknowledged.
            if self.sent_rows.is_empty()
                && self.out.iter().all(|p| p.row.is_none())
                && self.fifo.iter().all(Option::is_none)
                && self.inflight.is_empty()
            {
                self.cursor = self.cursor.max(self.last_row);
            }
            if n < ROWS_PER_READ {
                return Ok(());
            }
        }
    }

    /// A pending resync request, if the last one was served [`RESYNC_EVERY`] ago: the stored
    /// alarm events after its `after` and up to the last one queued (the later ones go out
    /// anyway), at most [`RESYNC_MAX_ROWS`], `"replay": true`. They do not move the cursor.
    async fn serve_resync(&mut self) -> Result<(), String> {
        let Some(after) = self.resync_pending else {
            return Ok(());
        };
        if self
            .resync_served
            .is_some_and(|at| at.elapsed() < RESYNC_EVERY)
        {
            return Ok(());
        }
        self.resync_pending = None;
        self.resync_served = Some(tokio::time::Instant::now());
        let upto = self.last_row;
        if after >= upto {
            return Ok(());
        }
        let rows = self
            .store
            .read(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT id, kind, json FROM alarm_events WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3",
                )?;
                let rows = st.query_map(
                    rusqlite::params![after, upto, i64::try_from(RESYNC_MAX_ROWS).unwrap_or(2000)],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
                )?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .map_err(|e| format!("cannot read alarm events from the store: {e}"))?;
        tracing::info!(site = %self.site, after, events = rows.len(), "mqtt: resync for a central view");
        for (id, kind, json) in rows {
            if let Some(p) = self.alarm_pub(id, &kind, &json, true) {
                self.out.push_back(p);
            }
        }
        Ok(())
    }

    /// An alarm-event row as its publication (`None` for `notify` rows, not published).
    fn alarm_pub(&self, id: i64, kind: &str, json: &str, replay: bool) -> Option<Pub> {
        if kind == "notify" {
            return None;
        }
        let mut msg: Value = serde_json::from_str(json)
            .unwrap_or_else(|_| serde_json::json!({ "v": 1, "type": "alarm", "event": kind }));
        if let Some(o) = msg.as_object_mut() {
            o.insert("event_id".into(), id.into());
            o.insert("replay".into(), replay.into());
        }
        let payload = serde_json::to_vec(&msg).unwrap_or_default();
        Some(Pub::new(
            self.topics.alarm(),
            payload,
            QoS::AtLeastOnce,
            false,
        ))
    }

    /// The current alarms, retained: the whole site, and each bed.
    fn alarm_lists(&mut self) {
        let all = self.hub.alarms_json();
        let list = all["alarms"].as_array().cloned().unwrap_or_default();
        let beds: Vec<String> = self
            .hub
            .config()
            .beds
            .iter()
            .map(|b| b.id.clone())
            .collect();
        for bed in beds {
            let mine: Vec<Value> = list
                .iter()
                .filter(|a| a["bed"].as_str() == Some(bed.as_str()))
                .cloned()
                .collect();
            let msg = serde_json::json!({ "v": 1, "type": "alarms", "bed": bed, "alarms": mine });
            self.push_json(self.topics.bed_alarms(&bed), &msg, QoS::AtLeastOnce, true);
        }
        let msg = serde_json::json!({ "v": 1, "type": "alarms", "alarms": list });
        self.push_json(self.topics.alarms(), &msg, QoS::AtLeastOnce, true);
    }

    fn push_json(&mut self, topic: String, v: &Value, qos: QoS, retain: bool) {
        if let Ok(payload) = serde_json::to_vec(v) {
            // A retained topic needs only its latest value in line.
            if retain && qos == QoS::AtMostOnce {
                self.out.retain(|p| p.topic != topic);
            }
            self.out.push_back(Pub::new(topic, payload, qos, retain));
        }
    }

    /// At shutdown: `offline`, retained, then a clean disconnect (the Last Will is not sent).
    async fn goodbye(&mut self, el: &mut Events) {
        self.out.clear();
        let _ = self.client.try_publish(
            self.topics.status(),
            QoS::AtLeastOnce,
            true,
            b"offline".to_vec(),
        );
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match el.recv().await {
                    Some(Ok(Event::Outgoing(Outgoing::Disconnect))) | Some(Err(_)) | None => {
                        return;
                    }
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
    }
}

/// Applies a verified command through the hub (commit, then apply, as for the API).
async fn apply_command(hub: Arc<Hub>, body: command::Body) {
    let actor: String = format!("central/{}", body.actor).chars().take(80).collect();
    let what = format!("{:?}", body.action);
    let r = match body.action {
        command::Action::Acknowledge { alarm } => hub
            .acknowledge(alarm, &actor)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        command::Action::PauseAudio { bed, seconds } => match hub.bed_by_id(&bed) {
            Some(b) => hub
                .pause_audio(b, seconds.map(Duration::from_secs), &actor)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => Err(format!("no bed {bed:?} at this site")),
        },
    };
    match r {
        Ok(()) => tracing::info!(command = %what, %actor, "mqtt: command from central applied"),
        Err(e) => {
            tracing::warn!(command = %what, %actor, error = %e, "mqtt: command from central not applied")
        }
    }
}

/// The last alarm-event row the broker acknowledged. Without the file (first start with
/// `[mqtt]`), the store's latest row: history from before the bridge is not published.
async fn read_cursor(path: &Path, store: &StoreHandle) -> Result<i64, String> {
    let p = path.to_path_buf();
    let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(&p))
        .await
        .map_err(|e| e.to_string())?;
    match text {
        Ok(t) => t.trim().parse::<i64>().map_err(|_| {
            format!(
                "{} holds {:?}, expected an alarm-event row id (delete it to start from now)",
                path.display(),
                t.trim()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => store
            .read(|c| {
                Ok(
                    c.query_row("SELECT COALESCE(MAX(id), 0) FROM alarm_events", [], |r| {
                        r.get::<_, i64>(0)
                    })?,
                )
            })
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the cursor whenever it moves (write a temporary file, then rename).
async fn write_cursor(path: PathBuf, mut rx: tokio::sync::watch::Receiver<i64>) {
    let mut written: Option<i64> = None;
    loop {
        let v = *rx.borrow_and_update();
        if written != Some(v) {
            let p = path.clone();
            let r = tokio::task::spawn_blocking(move || {
                let tmp = p.with_extension("tmp");
                std::fs::write(&tmp, format!("{v}\n"))?;
                std::fs::rename(&tmp, &p)
            })
            .await;
            match r {
                Ok(Ok(())) => written = Some(v),
                Ok(Err(e)) => {
                    tracing::warn!(file = %path.display(), error = %e, "mqtt: cannot write the cursor")
                }
                Err(e) => tracing::warn!(error = %e, "mqtt: cursor writer failed"),
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_carry_the_version_and_the_site() {
        let t = Topics::new("north");
        assert_eq!(t.status(), "vitalsd/v1/north/status");
        assert_eq!(
            t.reading("room1/A", "spo2"),
            "vitalsd/v1/north/bed/room1/A/reading/spo2"
        );
        assert_eq!(
            t.device_status("room1/A", "room1-A-oximeter"),
            "vitalsd/v1/north/bed/room1/A/device/room1-A-oximeter/status"
        );
        assert_eq!(
            t.readings("room1/A"),
            "vitalsd/v1/north/bed/room1/A/readings"
        );
        assert_eq!(t.alarm(), "vitalsd/v1/north/alarm");
        assert_eq!(
            t.bed_alarms("room1/B"),
            "vitalsd/v1/north/bed/room1/B/alarms"
        );
    }
}
