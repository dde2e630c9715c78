//! The central view's state, rebuilt from what the sites publish (docs/mqtt.md). Pure: MQTT
//! messages and the time come in, the messages for the dashboards' WebSockets (the formats of
//! docs/api.md, with ids made unique across sites) come out. No alarm decision is made here:
//! a site's alarms are shown as the site published them; the one alarm of the central's own
//! is `site_offline`.
//!
//! Ids at central: a bed `room1/A` of site `north` is `north/room1/A`, its room
//! `north/room1` (named `north · Room 1`, so the rooms are grouped by site); a site's alarm
//! gets a central id of its own (ids of two sites may collide), mapped back when a user
//! acknowledges it.

use super::history::History;
use crate::hub::queue::Class;
use crate::model::Metric;
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Alarm `event_id`s remembered per site to drop duplicates (a replay, a resync, the
/// broker's queue for the persistent session): an event older than all of them is dropped.
const SEEN_EVENTS: usize = 4096;

/// One site as the central knows it.
#[derive(Debug, Default)]
struct Site {
    name: String,
    /// The retained `status` (`online`/`offline`), if any came.
    status: Option<String>,
    /// Wall-clock ms of the last live (not retained) message from the site.
    heard_ms: i64,
    /// Why the site counts as offline, and since when; `None` while it is up.
    offline: Option<(String, i64)>,
    /// Whether the site was up at the last evaluation (`None` before the first).
    up: Option<bool>,
    config: Option<Value>,
    /// (bed, device) -> the latest `device_status` message (site ids).
    devices: BTreeMap<(String, String), Value>,
    /// bed -> metric -> the latest `reading` message (site ids).
    latest: BTreeMap<String, BTreeMap<String, Value>>,
    /// The site's current alarms (its retained `alarms` list, site ids).
    alarms: Vec<Value>,
    /// bed -> when its audio pause ends (from `audio_paused` events).
    paused: BTreeMap<String, String>,
    /// The newest alarm event taken, by `event_id`: where a resync asks the site to start.
    last_event: i64,
    /// The latest `event_id`s taken (at most [`SEEN_EVENTS`]): a duplicate is dropped, an
    /// event that arrives late (a resync's, after a newer live one) is taken.
    seen: BTreeSet<i64>,
    /// The central's `site_offline` alarm while it stands.
    offline_alarm: Option<Value>,
}

/// What the central shows: every allowed site, in the order of `central.toml`.
#[derive(Debug)]
pub struct State {
    started: String,
    seq: u64,
    sites: Vec<Site>,
    /// (site, site's alarm id) <-> central alarm id.
    ids: HashMap<(usize, u64), u64>,
    back: HashMap<u64, (usize, u64)>,
    next_id: u64,
    /// Reading slots (site, bed, device, metric) for the slow-client coalescing.
    slots: HashMap<String, u32>,
    /// A site silent this long counts as offline.
    timeout_ms: i64,
    /// The readings and alarm events received, bounded (`/api/.../history`).
    pub history: History,
}

/// What an alarm id at central stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlarmRef {
    /// A site's alarm: the site's name and its own id.
    Site(String, u64),
    /// The central's `site_offline` for this site (cleared when the site is heard again).
    Central(String),
}

/// Messages for every client: (class, JSON), and whether they should all get a new snapshot
/// (a site went offline or came back, a site's layout changed).
#[derive(Debug, Default)]
pub struct Out {
    pub msgs: Vec<(Class, Bytes)>,
    pub resnapshot: bool,
    /// Sites to ask for the alarm events after the `event_id` given (a site came online
    /// live: docs/mqtt.md, "Resync").
    pub resync: Vec<(String, i64)>,
}

fn ms_text(ms: i64) -> String {
    crate::clock::rfc3339_ms(ms)
}

impl State {
    /// A state for these sites; `now_ms` counts as when each was last heard (a grace of one
    /// timeout before a site never heard is shown offline).
    pub fn new(sites: &[String], timeout_ms: i64, now_ms: i64) -> State {
        State {
            started: ms_text(now_ms),
            seq: 0,
            sites: sites
                .iter()
                .map(|n| Site {
                    name: n.clone(),
                    heard_ms: now_ms,
                    ..Site::default()
                })
                .collect(),
            ids: HashMap::new(),
            back: HashMap::new(),
            next_id: 1,
            slots: HashMap::new(),
            timeout_ms,
            history: History::default(),
        }
    }

    /// The latest sequence number given.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Per site, the newest alarm `event_id` taken, for the sites that sent any: a resync
    /// asks each for the events after it.
    pub fn resync_points(&self) -> Vec<(String, i64)> {
        self.sites
            .iter()
            .filter(|s| s.last_event > 0)
            .map(|s| (s.name.clone(), s.last_event))
            .collect()
    }

    /// The connection to the broker is (re)established: every site gets a new grace.
    pub fn reconnected(&mut self, now_ms: i64) {
        for s in &mut self.sites {
            s.heard_ms = s.heard_ms.max(now_ms);
        }
    }

    fn central_id(&mut self, site: usize, id: u64) -> u64 {
        if let Some(c) = self.ids.get(&(site, id)) {
            return *c;
        }
        let c = self.next_id;
        self.next_id += 1;
        self.ids.insert((site, id), c);
        self.back.insert(c, (site, id));
        c
    }

    fn new_central_alarm_id(&mut self, site: usize) -> u64 {
        let c = self.next_id;
        self.next_id += 1;
        self.back.insert(c, (site, u64::MAX));
        c
    }

    /// What a central alarm id stands for.
    pub fn alarm_ref(&self, id: u64) -> Option<AlarmRef> {
        let (site, sid) = *self.back.get(&id)?;
        let name = self.sites.get(site)?.name.clone();
        Some(if sid == u64::MAX {
            AlarmRef::Central(name)
        } else {
            AlarmRef::Site(name, sid)
        })
    }

    /// Splits a central bed id `site/room/recliner` into the site and the site's bed id.
    pub fn site_bed(&self, bed: &str) -> Option<(String, String)> {
        let (site, rest) = bed.split_once('/')?;
        self.sites
            .iter()
            .any(|s| s.name == site)
            .then(|| (site.to_owned(), rest.to_owned()))
    }

    /// Whether `bed` (a central id, `site/room/recliner`) is a bed of a site's config.
    pub fn has_bed(&self, bed: &str) -> bool {
        let Some((site, rest)) = bed.split_once('/') else {
            return false;
        };
        self.sites
            .iter()
            .filter(|s| s.name == site)
            .filter_map(|s| s.config.as_ref())
            .flat_map(|c| c["rooms"].as_array().into_iter().flatten())
            .flat_map(|r| r["beds"].as_array().into_iter().flatten())
            .any(|b| b["id"] == rest)
    }

    /// A site's alarm with central ids.
    fn alarm(&mut self, site: usize, a: &Value) -> Value {
        let mut a = a.clone();
        let name = self.sites[site].name.clone();
        if let Some(o) = a.as_object_mut() {
            if let Some(id) = o.get("id").and_then(Value::as_u64) {
                let c = self.central_id(site, id);
                o.insert("id".into(), c.into());
            }
            if let Some(b) = o.get("bed").and_then(Value::as_str) {
                o.insert("bed".into(), format!("{name}/{b}").into());
            }
            o.insert("site".into(), name.into());
        }
        a
    }

    /// A site's message with central ids and the central's next sequence number.
    fn rewrite(&mut self, site: usize, mut m: Value) -> Value {
        self.seq += 1;
        let seq = self.seq;
        let name = self.sites[site].name.clone();
        let alarm = m.get("alarm").filter(|a| a.is_object()).cloned();
        let alarm = alarm.map(|a| self.alarm(site, &a));
        if let Some(o) = m.as_object_mut() {
            o.insert("seq".into(), seq.into());
            if let Some(b) = o.get("bed").and_then(Value::as_str) {
                o.insert("bed".into(), format!("{name}/{b}").into());
            }
            if let Some(a) = alarm {
                o.insert("alarm".into(), a);
            }
            o.insert("site".into(), name.into());
            o.remove("event_id");
            o.remove("replay");
        }
        m
    }

    fn slot(&mut self, key: String) -> u32 {
        let n = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        *self.slots.entry(key).or_insert(n)
    }

    /// One MQTT message on `topic` (`retained`: from the broker's store, not live).
    pub fn on_message(&mut self, topic: &str, payload: &[u8], retained: bool, now_ms: i64) -> Out {
        let mut out = Out::default();
        let Some(rest) = topic.strip_prefix("vitalsd/v1/") else {
            return out;
        };
        let Some((site_name, sub)) = rest.split_once('/') else {
            return out;
        };
        let Some(site) = self.sites.iter().position(|s| s.name == site_name) else {
            return out;
        };
        if !retained && sub != "command" {
            self.sites[site].heard_ms = now_ms;
        }
        if sub == "status" {
            let text = String::from_utf8_lossy(payload).trim().to_owned();
            // A site that comes online (its birth, live) replays what its broker missed from
            // its own cursor, but not what the broker had and the central missed: ask.
            if !retained && text == "online" && self.sites[site].last_event > 0 {
                out.resync
                    .push((site_name.to_owned(), self.sites[site].last_event));
            }
            self.sites[site].status = Some(text);
            out.resnapshot |= self.evaluate(site, now_ms, &mut out.msgs);
            return out;
        }
        let Ok(m) = serde_json::from_slice::<Value>(payload) else {
            return out;
        };
        let parts: Vec<&str> = sub.split('/').collect();
        match parts.as_slice() {
            ["config"] => {
                let changed = self.sites[site].config.as_ref() != Some(&m);
                self.sites[site].config = Some(m);
                out.resnapshot |= changed;
            }
            ["heartbeat"] => {
                out.resnapshot |= self.evaluate(site, now_ms, &mut out.msgs);
            }
            ["alarms"] => {
                self.sites[site].alarms = m["alarms"].as_array().cloned().unwrap_or_default();
            }
            ["alarm"] => {
                if let Some(id) = m["event_id"].as_i64() {
                    let s = &mut self.sites[site];
                    let too_old = s.seen.len() >= SEEN_EVENTS
                        && s.seen.first().is_some_and(|first| id < *first);
                    if too_old || !s.seen.insert(id) {
                        return out; // a duplicate (replay, resync, the broker's queue)
                    }
                    if s.seen.len() > SEEN_EVENTS {
                        s.seen.pop_first();
                    }
                    s.last_event = s.last_event.max(id);
                }
                self.apply_event(site, &m);
                let msg = self.rewrite(site, m);
                self.history.event(&msg);
                push(&mut out.msgs, Class::Priority, &msg);
            }
            ["bed", _, _, "readings"] => {
                if let Some((class, msg)) = self.on_readings(site, m) {
                    push(&mut out.msgs, class, &msg);
                }
            }
            ["bed", _, _, "reading", metric] => {
                // The retained latest value, for a central that (re)subscribes: kept unless
                // a batch brought a newer one. The live stream is the `readings` batches, so
                // nothing is sent for it (clients get a new snapshot after a reconnection).
                let Some(bed) = m["bed"].as_str() else {
                    return out;
                };
                if *metric == Metric::Pleth.name() {
                    return out;
                }
                let latest = self.sites[site].latest.entry(bed.to_owned()).or_default();
                let newer = latest
                    .get(*metric)
                    .is_none_or(|old| old["received_ms"].as_i64() <= m["received_ms"].as_i64());
                if newer {
                    latest.insert((*metric).to_owned(), m);
                }
            }
            ["bed", _, _, "device", _, "status"] => {
                let (Some(bed), Some(dev)) = (m["bed"].as_str(), m["device"].as_str()) else {
                    return out;
                };
                let key = (bed.to_owned(), dev.to_owned());
                self.sites[site].devices.insert(key, m.clone());
                if self.sites[site].offline.is_none() {
                    let msg = self.rewrite(site, m);
                    push(&mut out.msgs, Class::Priority, &msg);
                }
            }
            ["bed", _, _, "session"] | ["event", _] => {
                let msg = self.rewrite(site, m);
                push(&mut out.msgs, Class::Priority, &msg);
            }
            _ => {}
        }
        out
    }

    /// A site's `readings` batch (one device read): the bed's latest values and history, and
    /// the message for the clients, a version-2 `readings` with central ids (`bed` and
    /// `site` on the message and on each reading), coalescable per device and set of metrics
    /// as at a site.
    fn on_readings(&mut self, site: usize, mut m: Value) -> Option<(Class, Value)> {
        let bed = m["bed"].as_str()?.to_owned();
        let dev = m["device"].as_str()?.to_owned();
        let name = self.sites[site].name.clone();
        let central_bed = format!("{name}/{bed}");
        let list = m["readings"].as_array_mut().filter(|l| !l.is_empty())?;
        let mut metrics: Vec<String> = Vec::with_capacity(list.len());
        for r in list.iter() {
            let Some(metric) = r["metric"].as_str() else {
                continue;
            };
            metrics.push(metric.to_owned());
            // Waveform samples: not in `latest` nor in the history, as at a site.
            let Some(mt) = Metric::from_name(metric).filter(|m| *m != Metric::Pleth) else {
                continue;
            };
            self.sites[site]
                .latest
                .entry(bed.clone())
                .or_default()
                .insert(metric.to_owned(), r.clone());
            if let Some(t) = r["received_ms"].as_i64() {
                self.history.reading(
                    &central_bed,
                    mt,
                    t,
                    r["value"].as_f64(),
                    r["invalid"].as_str(),
                );
            }
        }
        let n = u32::try_from(list.len()).unwrap_or(u32::MAX);
        for r in list.iter_mut() {
            if let Some(o) = r.as_object_mut() {
                o.insert("bed".into(), central_bed.clone().into());
                o.insert("site".into(), name.clone().into());
            }
        }
        metrics.sort_unstable();
        metrics.dedup();
        let slot = self.slot(format!("{name}/{bed}/{dev}/{}", metrics.join(",")));
        Some((Class::Reading { slot, n }, self.rewrite(site, m)))
    }

    /// What an alarm event changes in what the central keeps (the audio pause of a bed).
    fn apply_event(&mut self, site: usize, m: &Value) {
        let Some(bed) = m["bed"].as_str() else { return };
        match m["event"].as_str() {
            Some("audio_paused") => {
                if let Some(until) = m["until"].as_str() {
                    self.sites[site]
                        .paused
                        .insert(bed.to_owned(), until.to_owned());
                }
            }
            Some("audio_resumed") => {
                self.sites[site].paused.remove(bed);
            }
            _ => {}
        }
    }

    /// Every second: sites whose heartbeats stopped go offline.
    pub fn tick(&mut self, now_ms: i64) -> Out {
        let mut out = Out::default();
        for i in 0..self.sites.len() {
            out.resnapshot |= self.evaluate(i, now_ms, &mut out.msgs);
        }
        self.history.prune(now_ms);
        out
    }

    /// Decides whether a site is up; on a change, raises or clears `site_offline`. True when
    /// the change needs a new snapshot.
    fn evaluate(&mut self, site: usize, now_ms: i64, msgs: &mut Vec<(Class, Bytes)>) -> bool {
        let s = &self.sites[site];
        let silent = now_ms - s.heard_ms > self.timeout_ms;
        let reason = match s.status.as_deref() {
            Some("offline") => Some(format!(
                "site {} offline (its Last Will, or it stopped)",
                s.name
            )),
            _ if silent => Some(format!(
                "site {} silent for more than {} s (no heartbeat)",
                s.name,
                self.timeout_ms / 1000
            )),
            Some("online") => None,
            // Never heard of, within the grace: wait.
            _ => return false,
        };
        let up = reason.is_none();
        if self.sites[site].up == Some(up) {
            return false;
        }
        self.sites[site].up = Some(up);
        let name = self.sites[site].name.clone();
        match reason {
            Some(why) => {
                let id = self.new_central_alarm_id(site);
                let alarm = json!({
                    "id": id, "bed": null, "device": null, "condition": "site_offline",
                    "kind": "technical", "priority": "medium", "state": "active",
                    "audio": "sounding", "value": null, "limit": null,
                    "started": ms_text(now_ms), "updated": ms_text(now_ms),
                    "started_ms": now_ms, "updated_ms": now_ms, "site": name,
                    "detail": why,
                });
                self.sites[site].offline = Some((why, now_ms));
                self.sites[site].offline_alarm = Some(alarm.clone());
                self.seq += 1;
                let msg = json!({
                    "v": 1, "type": "alarm", "seq": self.seq, "event": "raised", "bed": null,
                    "alarm": alarm, "actor": null, "at": ms_text(now_ms), "at_ms": now_ms,
                    "site": name,
                });
                self.history.event(&msg);
                push(msgs, Class::Priority, &msg);
            }
            None => {
                self.sites[site].offline = None;
                if let Some(mut alarm) = self.sites[site].offline_alarm.take() {
                    alarm["state"] = "cleared".into();
                    alarm["audio"] = "silenced".into();
                    alarm["updated"] = ms_text(now_ms).into();
                    alarm["updated_ms"] = now_ms.into();
                    self.seq += 1;
                    let msg = json!({
                        "v": 1, "type": "alarm", "seq": self.seq, "event": "cleared",
                        "bed": null, "alarm": alarm, "actor": null, "at": ms_text(now_ms),
                        "at_ms": now_ms, "site": name,
                    });
                    self.history.event(&msg);
                    push(msgs, Class::Priority, &msg);
                }
            }
        }
        true
    }

    /// Every current alarm (`GET /api/alarms`): the sites' as published, and `site_offline`.
    pub fn alarms(&mut self) -> Vec<Value> {
        let mut list = Vec::new();
        for i in 0..self.sites.len() {
            let site_alarms = self.sites[i].alarms.clone();
            for a in &site_alarms {
                list.push(self.alarm(i, a));
            }
            if let Some(a) = &self.sites[i].offline_alarm {
                list.push(a.clone());
            }
        }
        list
    }

    /// Whether each site is up, for `/healthz` and `/api/sites`.
    pub fn sites_json(&self) -> Value {
        Value::Array(
            self.sites
                .iter()
                .map(|s| {
                    json!({
                        "name": s.name,
                        "status": s.status,
                        "online": s.offline.is_none() && s.up == Some(true),
                        "offline_reason": s.offline.as_ref().map(|(w, _)| w),
                        "offline_since": s.offline.as_ref().map(|(_, at)| ms_text(*at)),
                        "last_heard": ms_text(s.heard_ms),
                    })
                })
                .collect(),
        )
    }

    /// The snapshot every client gets first (and all of them again with `resumed` after
    /// a site's change): the docs/api.md format, rooms grouped by site.
    pub fn snapshot(&mut self, resumed: bool, now_ms: i64) -> Value {
        let mut rooms = Vec::new();
        let mut loose = Vec::new();
        let mut simulated = false;
        for i in 0..self.sites.len() {
            let name = self.sites[i].name.clone();
            let site_alarms = self.sites[i].alarms.clone();
            let alarms: Vec<Value> = site_alarms.iter().map(|a| self.alarm(i, a)).collect();
            let s = &self.sites[i];
            if let Some(a) = &s.offline_alarm {
                loose.push(a.clone());
            }
            loose.extend(alarms.iter().filter(|a| a["bed"].is_null()).cloned());
            let Some(config) = &s.config else { continue };
            simulated |= config["simulated"] == true;
            let not_monitoring = s
                .offline
                .as_ref()
                .map(|(why, since)| format!("{why}, since {}: NOT MONITORING", ms_text(*since)));
            for room in config["rooms"].as_array().into_iter().flatten() {
                let room_id = room["id"].as_str().unwrap_or("?");
                let room_name = room["name"].as_str().unwrap_or(room_id);
                let mut beds = Vec::new();
                for bed in room["beds"].as_array().into_iter().flatten() {
                    let Some(bed_id) = bed["id"].as_str() else {
                        continue;
                    };
                    let central_bed = format!("{name}/{bed_id}");
                    let devices: Vec<Value> = bed["devices"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|d| {
                            let mut d = d.clone();
                            let dev = d["id"].as_str().unwrap_or("").to_owned();
                            let st = s.devices.get(&(bed_id.to_owned(), dev));
                            let (status, since, detail) = match (&s.offline, st) {
                                (Some((why, at)), _) => (
                                    "disconnected".into(),
                                    ms_text(*at).into(),
                                    why.clone().into(),
                                ),
                                (None, Some(st)) => {
                                    (st["status"].clone(), st["at"].clone(), st["detail"].clone())
                                }
                                (None, None) => ("connecting".into(), Value::Null, Value::Null),
                            };
                            d["status"] = status;
                            d["status_since"] = since;
                            d["detail"] = detail;
                            d
                        })
                        .collect();
                    let latest: serde_json::Map<String, Value> = s
                        .latest
                        .get(bed_id)
                        .into_iter()
                        .flatten()
                        .map(|(metric, r)| {
                            let mut r = r.clone();
                            if let Some(o) = r.as_object_mut() {
                                o.insert("bed".into(), central_bed.clone().into());
                                for k in ["v", "type", "seq"] {
                                    o.remove(k);
                                }
                            }
                            (metric.clone(), r)
                        })
                        .collect();
                    let bed_alarms: Vec<Value> = alarms
                        .iter()
                        .filter(|a| a["bed"].as_str() == Some(central_bed.as_str()))
                        .cloned()
                        .collect();
                    beds.push(json!({
                        "id": central_bed, "recliner": bed["recliner"], "label": bed["label"],
                        "bp_interval_s": bed["bp_interval_s"], "devices": devices,
                        "latest": latest, "alarms": bed_alarms,
                        "audio_paused_until": s.paused.get(bed_id),
                        "limits_off": [], "site": name, "not_monitoring": not_monitoring,
                    }));
                }
                rooms.push(json!({
                    "id": format!("{name}/{room_id}"),
                    "name": format!("{name} · {room_name}"),
                    "site": name, "beds": beds,
                }));
            }
        }
        json!({
            "v": 1, "type": "snapshot", "seq": self.seq, "resumed": resumed,
            "time": ms_text(now_ms), "started": self.started, "simulated": simulated,
            "rooms": rooms, "alarms": loose,
            "dashboards": { "live": 0, "hidden": 0, "not_armed": 0, "clients": 0 },
            "sites": self.sites_json(),
        })
    }
}

fn push(msgs: &mut Vec<(Class, Bytes)>, class: Class, v: &Value) {
    if let Ok(b) = serde_json::to_vec(v) {
        msgs.push((class, Bytes::from(b)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Vec<u8> {
        serde_json::to_vec(
            &json!({"v":1,"type":"config","started":"x","simulated":true,
            "rooms":[{"id":"room1","name":"Room 1","beds":[{"id":"room1/A","recliner":"A",
            "label":"A","bp_interval_s":300,"devices":[{"id":"ox","kind":"oximeter"}]}]}]}),
        )
        .unwrap()
    }

    fn msgs(out: &Out) -> Vec<Value> {
        out.msgs
            .iter()
            .map(|(_, b)| serde_json::from_slice(b).unwrap())
            .collect()
    }

    #[test]
    fn two_sites_beds_are_grouped_by_site_with_their_own_ids() {
        let mut s = State::new(&["north".into(), "south".into()], 15_000, 0);
        for site in ["north", "south"] {
            s.on_message(&format!("vitalsd/v1/{site}/status"), b"online", true, 0);
            s.on_message(&format!("vitalsd/v1/{site}/config"), &config(), true, 0);
        }
        let alarm = |seq: u64| {
            serde_json::to_vec(&json!({"v":1,"type":"alarm","seq":seq,"event":"raised",
                "bed":"room1/A","alarm":{"id":7,"bed":"room1/A","condition":"spo2_low"},
                "event_id":3,"replay":false}))
            .unwrap()
        };
        let n = msgs(&s.on_message("vitalsd/v1/north/alarm", &alarm(1), false, 10));
        let m = msgs(&s.on_message("vitalsd/v1/south/alarm", &alarm(1), false, 10));
        assert_eq!(n[0]["bed"], "north/room1/A");
        assert_eq!(m[0]["bed"], "south/room1/A");
        assert_ne!(
            n[0]["alarm"]["id"], m[0]["alarm"]["id"],
            "ids unique at central"
        );
        let id = m[0]["alarm"]["id"].as_u64().unwrap();
        assert_eq!(s.alarm_ref(id), Some(AlarmRef::Site("south".into(), 7)));
        // A replayed duplicate (same event_id) is dropped.
        assert!(
            s.on_message("vitalsd/v1/south/alarm", &alarm(1), false, 11)
                .msgs
                .is_empty()
        );
        let snap = s.snapshot(false, 20);
        let rooms: Vec<&str> = snap["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(rooms, ["north · Room 1", "south · Room 1"]);
        assert_eq!(snap["rooms"][1]["beds"][0]["id"], "south/room1/A");
        assert_eq!(
            s.site_bed("south/room1/A"),
            Some(("south".into(), "room1/A".into()))
        );
    }

    #[test]
    fn a_readings_batch_goes_out_as_one_v2_message_and_fills_latest_and_history() {
        let mut s = State::new(&["north".into()], 15_000, 0);
        s.on_message("vitalsd/v1/north/config", &config(), true, 0);
        let reading = |metric: &str, value: Value, t: i64| {
            json!({"bed":"room1/A","device":"ox","metric":metric,"value":value,
                "invalid": if value.is_null() { json!("device_flagged") } else { Value::Null },
                "received_ms":t})
        };
        let batch = serde_json::to_vec(&json!({"v":2,"type":"readings","seq":9,"bed":"room1/A",
            "device":"ox","readings":[reading("spo2", json!(97.0), 1_000),
            reading("pulse_rate", Value::Null, 1_000)]}))
        .unwrap();
        let out = s.on_message(
            "vitalsd/v1/north/bed/room1/A/readings",
            &batch,
            false,
            1_000,
        );
        assert_eq!(out.msgs.len(), 1, "one message for the read");
        assert!(matches!(out.msgs[0].0, Class::Reading { n: 2, .. }));
        let m = &msgs(&out)[0];
        assert_eq!(
            (m["v"].as_u64(), m["type"].as_str()),
            (Some(2), Some("readings"))
        );
        assert_eq!(
            (m["bed"].as_str(), m["site"].as_str()),
            (Some("north/room1/A"), Some("north"))
        );
        assert_eq!(m["readings"][1]["bed"], "north/room1/A");
        assert_eq!(m["seq"], s.seq());
        let snap = s.snapshot(false, 1_000);
        assert_eq!(snap["rooms"][0]["beds"][0]["latest"]["spo2"]["value"], 97.0);
        let h = s
            .history
            .query("north/room1/A", Metric::PulseRate, 0, 2_000, 10);
        assert_eq!(
            (h[0].avg, h[0].reason.as_deref()),
            (None, Some("device_flagged"))
        );
        // An older retained value changes nothing and is not sent; a newer one is kept.
        let old = serde_json::to_vec(&reading("spo2", json!(90.0), 500)).unwrap();
        let topic = "vitalsd/v1/north/bed/room1/A/reading/spo2";
        assert!(s.on_message(topic, &old, true, 1_100).msgs.is_empty());
        assert_eq!(
            s.snapshot(false, 1_100)["rooms"][0]["beds"][0]["latest"]["spo2"]["value"],
            97.0
        );
        let new = serde_json::to_vec(&reading("spo2", json!(93.0), 2_000)).unwrap();
        assert!(s.on_message(topic, &new, true, 2_100).msgs.is_empty());
        assert_eq!(
            s.snapshot(false, 2_100)["rooms"][0]["beds"][0]["latest"]["spo2"]["value"],
            93.0
        );
    }

    #[test]
    fn a_site_whose_will_fires_or_whose_heartbeats_stop_is_not_monitoring() {
        let mut s = State::new(&["north".into()], 15_000, 0);
        s.on_message("vitalsd/v1/north/config", &config(), true, 0);
        s.on_message("vitalsd/v1/north/status", b"online", false, 0);
        assert!(s.tick(10_000).msgs.is_empty());
        let out = s.tick(15_001);
        assert!(out.resnapshot);
        let raised = msgs(&out);
        assert_eq!(raised[0]["alarm"]["condition"], "site_offline");
        let snap = s.snapshot(true, 15_001);
        let bed = &snap["rooms"][0]["beds"][0];
        assert!(
            bed["not_monitoring"]
                .as_str()
                .unwrap()
                .contains("NOT MONITORING"),
            "{bed}"
        );
        assert_eq!(bed["devices"][0]["status"], "disconnected");
        assert_eq!(snap["alarms"][0]["condition"], "site_offline");
        // A heartbeat: up again, the alarm cleared.
        let out = s.on_message("vitalsd/v1/north/heartbeat", b"{}", false, 16_000);
        assert_eq!(msgs(&out)[0]["event"], "cleared");
        assert!(s.snapshot(true, 16_000)["rooms"][0]["beds"][0]["not_monitoring"].is_null());
        // The Last Will: offline at once.
        let out = s.on_message("vitalsd/v1/north/status", b"offline", true, 17_000);
        assert_eq!(msgs(&out)[0]["alarm"]["condition"], "site_offline");
    }
}
