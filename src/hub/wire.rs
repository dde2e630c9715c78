//! The JSON messages of the WebSocket `/ws` and of `GET /api/rooms`, version [`VERSION`].
//! Documented in `docs/api.md`. Each message is serialized once and shared by every client.

use crate::clock::rfc3339_ms;
use crate::config::{Config, Endpoint};
use crate::model::{Measurement, Metric, Observation};
use serde::Serialize;

/// The message format version, in every message as `"v"`.
pub const VERSION: u32 = 2;

/// Connection state of a device, as shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Not yet delivered valid data since the daemon started, within its first grace (the
    /// profile's expected period plus the no-data grace): no alarm yet.
    Connecting,
    /// Valid frames are flowing (or the device answers its polls).
    Connected,
    /// The port vanished, the connection dropped, the device stopped delivering valid frames
    /// for its expected period plus the grace (even with the socket open), or it never did
    /// within its first grace. Stays so across reconnect attempts until valid data flows.
    Disconnected,
}

/// Unix ms serialized as RFC 3339 with ms (as [`rfc3339_ms`]) without allocating: on the path
/// of every reading.
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339(pub i64);

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; crate::clock::RFC3339_MAX];
        let n = crate::clock::write_rfc3339_ms(self.0, &mut buf);
        s.serialize_str(std::str::from_utf8(&buf[..n]).unwrap_or(""))
    }
}

/// A reading as it appears in messages: the observation with names resolved.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReadingView<'a> {
    pub bed: &'a str,
    pub device: &'a str,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub m: &'a Measurement,
    #[schema(value_type = String, format = DateTime)]
    pub received: Rfc3339,
    pub received_ms: i64,
    pub mono_ms: u64,
    pub bed_seq: u64,
    pub simulated: bool,
}

impl<'a> ReadingView<'a> {
    /// Resolves an observation's indices against the config.
    pub fn new(cfg: &'a Config, o: &'a Observation) -> ReadingView<'a> {
        ReadingView {
            bed: &cfg.bed(o.bed).id,
            device: &cfg.device(o.device).id,
            m: &o.m,
            received: Rfc3339(o.received_ms),
            received_ms: o.received_ms,
            mono_ms: o.mono.as_millis(),
            bed_seq: o.bed_seq,
            simulated: o.simulated,
        }
    }
}

/// `{"v":2,"type":"readings","seq":N,"bed":..,"device":..,"readings":[reading...]}`: every
/// measurement one device read produced (a Masimo line: SpO2, pulse rate, PI), in the order
/// the device gave them; each element is a [`ReadingView`].
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReadingsMsg<'a> {
    pub v: u32,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub seq: u64,
    pub bed: &'a str,
    pub device: &'a str,
    #[schema(value_type = Vec<Object>)]
    pub readings: ReadingList<'a>,
}

/// A device read's observations, serialized as a list of [`ReadingView`]s without collecting
/// them first.
pub struct ReadingList<'a> {
    pub cfg: &'a Config,
    pub obs: &'a [Observation],
}

impl Serialize for ReadingList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.obs.len()))?;
        for o in self.obs {
            seq.serialize_element(&ReadingView::new(self.cfg, o))?;
        }
        seq.end()
    }
}

/// Writes `ReadingsMsg { v: VERSION, kind: "readings", seq: 0, bed, device, readings }`
/// byte for byte as its derived `Serialize` does (a test holds the two equal over every
/// metric, invalid reason, flag and odd id), without serde's per-field dispatch and
/// flattening: this runs for every device read. The receive time's text is made once per
/// run of readings sharing it (one device read shares one).
pub fn write_readings(
    out: &mut Vec<u8>,
    cfg: &Config,
    bed: &str,
    device: &str,
    obs: &[Observation],
) {
    out.extend_from_slice(b"{\"v\":");
    json_num(out, VERSION);
    out.extend_from_slice(b",\"type\":\"readings\",\"seq\":0,\"bed\":");
    json_str(out, bed);
    out.extend_from_slice(b",\"device\":");
    json_str(out, device);
    out.extend_from_slice(b",\"readings\":[");
    let mut received: Option<(i64, [u8; crate::clock::RFC3339_MAX], usize)> = None;
    for (i, o) in obs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"bed\":");
        json_str(out, &cfg.bed(o.bed).id);
        out.extend_from_slice(b",\"device\":");
        json_str(out, &cfg.device(o.device).id);
        let m = &o.m;
        out.extend_from_slice(b",\"metric\":");
        json_str(out, m.metric.name());
        out.extend_from_slice(b",\"mdc\":");
        json_num(out, m.metric.mdc_code());
        out.extend_from_slice(b",\"value\":");
        json_num(out, m.value.number());
        out.extend_from_slice(b",\"unit\":");
        json_str(out, m.metric.unit());
        out.extend_from_slice(b",\"invalid\":");
        match m.value.invalid() {
            Some(r) => json_str(out, r.name()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"flags\":[");
        let mut first = true;
        for f in m.flags.iter() {
            if !first {
                out.push(b',');
            }
            first = false;
            json_str(out, f.name());
        }
        if let Some(code) = m.flags.cuff_error() {
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(b"\"cuff_error:");
            json_num(out, code);
            out.push(b'"');
        }
        out.extend_from_slice(b"],\"device_time\":");
        match m.device_time {
            Some(t) => {
                // Digits, dashes, colons and a `T`: nothing to escape.
                out.push(b'"');
                t.write_text(out);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"received\":\"");
        let text = match &mut received {
            Some((ms, buf, n)) if *ms == o.received_ms => &buf[..*n],
            slot => {
                let mut buf = [0u8; crate::clock::RFC3339_MAX];
                let n = crate::clock::write_rfc3339_ms(o.received_ms, &mut buf);
                let (_, buf, n) = slot.insert((o.received_ms, buf, n));
                &buf[..*n]
            }
        };
        out.extend_from_slice(text);
        out.extend_from_slice(b"\",\"received_ms\":");
        json_num(out, o.received_ms);
        out.extend_from_slice(b",\"mono_ms\":");
        json_num(out, o.mono.as_millis());
        out.extend_from_slice(b",\"bed_seq\":");
        json_num(out, o.bed_seq);
        out.extend_from_slice(if o.simulated {
            b",\"simulated\":true}"
        } else {
            b",\"simulated\":false}"
        });
    }
    out.extend_from_slice(b"]}");
}

/// A JSON string: copied as is when nothing in it needs escaping (the ids, names and units
/// this carries), else escaped by serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// A number (or null) as serde_json writes it.
fn json_num(out: &mut Vec<u8>, n: impl Serialize) {
    // Writing a number into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &n);
}

/// `{"v":2,"type":"device_status", ...}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeviceStatusMsg<'a> {
    pub v: u32,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub seq: u64,
    pub bed: &'a str,
    pub device: &'a str,
    pub status: DeviceStatus,
    /// Why, for a disconnect (the transport error); null otherwise.
    pub detail: Option<&'a str>,
    pub at: String,
    pub simulated: bool,
}

/// `{"v":2,"type":"heartbeat", ...}`: sent every second on every connection.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HeartbeatMsg {
    pub v: u32,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The latest sequence number the hub has assigned.
    pub seq: u64,
    pub time: String,
    /// Readings coalesced away for this client so far (slow-client policy).
    pub coalesced: u64,
    /// Superseded `alarm` and `device_status` messages coalesced away for this client so far
    /// (never a new alarm or a rise in priority).
    pub coalesced_alarms: u64,
    /// How many dashboards can sound (armed, heartbeat recent), hidden, not armed, clients.
    #[schema(value_type = Object)]
    pub dashboards: crate::alarm::DashboardCounts,
    /// Whether this connection counts as a live dashboard (its latest heartbeat is recent
    /// and says audio armed).
    pub counted: bool,
}

/// One device in a snapshot.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeviceView<'a> {
    pub id: &'a str,
    pub profile: &'a str,
    pub vendor: &'a str,
    pub model: &'a str,
    #[schema(value_type = String)]
    pub kind: crate::config::DeviceKind,
    pub protocol: &'a str,
    pub endpoint: String,
    pub status: DeviceStatus,
    pub status_since: String,
    pub detail: Option<&'a str>,
    pub simulated: bool,
}

/// One bed in a snapshot, with its latest value per metric.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BedView<'a> {
    pub id: &'a str,
    pub recliner: &'a str,
    pub label: &'a str,
    pub bp_interval_s: u64,
    pub devices: Vec<DeviceView<'a>>,
    /// Latest reading per metric name (waveform samples excluded).
    pub latest: std::collections::BTreeMap<&'static str, ReadingView<'a>>,
    /// The bed's current alarms.
    pub alarms: Vec<AlarmView<'a>>,
    /// When the bed's audio pause ends, if one runs.
    pub audio_paused_until: Option<String>,
    /// The guarded metrics (spo2, pulse_rate) with no limit rule in force: their physiological
    /// alarms are off. Empty when every guarded metric has an active rule.
    pub limits_off: Vec<&'static str>,
}

/// One room in a snapshot.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RoomView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub beds: Vec<BedView<'a>>,
}

/// The state of everything, sent first on every WebSocket connection and by `GET /api/rooms`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SnapshotMsg<'a> {
    pub v: u32,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Every message after this one has a larger sequence number.
    pub seq: u64,
    /// True when sent to a client that asked to resume (`?since=`): messages it missed that are
    /// still held follow right after.
    pub resumed: bool,
    pub time: String,
    /// When this daemon started (RFC 3339, ms). A different value than before means the daemon
    /// restarted: its sequence numbers started again, so a `since` from before means nothing.
    pub started: String,
    /// True if any device is simulated: the dashboard shows a DEMO banner.
    pub simulated: bool,
    pub rooms: Vec<RoomView<'a>>,
    /// Alarms that belong to no bed (`no_dashboard`).
    pub alarms: Vec<AlarmView<'a>>,
    /// How many dashboards can sound (see [`HeartbeatMsg::dashboards`]).
    #[schema(value_type = Object)]
    pub dashboards: crate::alarm::DashboardCounts,
}

/// Text for an endpoint in messages.
pub fn endpoint_text(e: &Endpoint) -> String {
    match e {
        Endpoint::Serial { path } => path.display().to_string(),
        Endpoint::Tcp { addr } => format!("tcp://{addr}"),
        Endpoint::Ble { address, .. } => format!("ble://{address}"),
    }
}

/// Whether a metric belongs in `latest` (waveforms are streamed, not summarized).
pub fn in_latest(m: Metric) -> bool {
    !m.is_waveform()
}

/// An alarm as it appears in messages: indices resolved to ids, times as RFC 3339.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AlarmView<'a> {
    pub id: u64,
    pub bed: Option<&'a str>,
    pub device: Option<&'a str>,
    #[schema(value_type = String)]
    pub condition: crate::alarm::Condition,
    #[schema(value_type = String)]
    pub kind: crate::alarm::AlarmKind,
    #[schema(value_type = String)]
    pub priority: crate::alarm::Priority,
    #[schema(value_type = String)]
    pub state: crate::alarm::AlarmState,
    #[schema(value_type = String)]
    pub audio: crate::alarm::Audio,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    pub started: String,
    pub updated: String,
    pub started_ms: i64,
    pub updated_ms: i64,
    /// `notify_failed` only: the notification target that fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a str>,
}

impl<'a> AlarmView<'a> {
    /// Resolves an alarm's indices against the config.
    pub fn new(cfg: &'a Config, a: &crate::alarm::Alarm) -> AlarmView<'a> {
        AlarmView {
            id: a.id.0,
            bed: bed_id(cfg, a.bed),
            device: a
                .device
                .and_then(|d| cfg.devices.get(usize::from(d.0)))
                .map(|d| d.id.as_str()),
            condition: a.condition,
            kind: a.kind,
            priority: a.priority,
            state: a.state,
            audio: a.audio,
            value: a.value,
            limit: a.limit,
            started: rfc3339_ms(a.started_ms),
            updated: rfc3339_ms(a.updated_ms),
            started_ms: a.started_ms,
            updated_ms: a.updated_ms,
            target: a
                .target
                .and_then(|t| cfg.notify.get(usize::from(t)))
                .map(|t| t.name.as_str()),
        }
    }
}

/// `{"v":2,"type":"alarm","event":...}`: one alarm-system event (docs/api.md, docs/alarms.md).
#[derive(Serialize, utoipa::ToSchema)]
pub struct AlarmMsg<'a> {
    pub v: u32,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub seq: u64,
    pub event: &'static str,
    pub bed: Option<&'a str>,
    pub alarm: Option<AlarmView<'a>>,
    pub actor: Option<&'a str>,
    pub at: String,
    pub at_ms: i64,
    /// `audio_paused` only: when the pause ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// `audio_paused` only: its length in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// `baseline_set` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub baseline: Option<crate::alarm::Baseline>,
    /// `notify` only: the escalation level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
}

/// An event's name on the wire (`"event"` of an `alarm` message) and in the store.
pub fn event_name(kind: &crate::alarm::EventKind) -> &'static str {
    use crate::alarm::EventKind as K;
    match kind {
        K::Raised => "raised",
        K::Updated => "updated",
        K::Acknowledged => "acknowledged",
        K::Latched => "latched",
        K::Cleared => "cleared",
        K::AudioPaused { .. } => "audio_paused",
        K::AudioResumed => "audio_resumed",
        K::LimitsChanged => "limits_changed",
        K::BaselineSet { .. } => "baseline_set",
        K::Notify { .. } => "notify",
    }
}

/// The id of a bed an event or alarm names (none for a bed-less one, or an index the config
/// does not have).
pub fn bed_id(cfg: &Config, bed: Option<crate::model::BedIdx>) -> Option<&str> {
    bed.and_then(|b| cfg.beds.get(usize::from(b.0)))
        .map(|b| b.id.as_str())
}

impl<'a> AlarmMsg<'a> {
    /// The message for an engine event.
    pub fn new(cfg: &'a Config, seq: u64, e: &'a crate::alarm::AlarmEvent) -> AlarmMsg<'a> {
        use crate::alarm::EventKind as K;
        let (until, seconds, baseline, level) = match &e.kind {
            K::AudioPaused { until_ms, for_ms } => {
                (Some(rfc3339_ms(*until_ms)), Some(for_ms / 1000), None, None)
            }
            K::BaselineSet { baseline } => (None, None, Some(*baseline), None),
            K::Notify { level } => (None, None, None, Some(*level)),
            _ => (None, None, None, None),
        };
        AlarmMsg {
            v: VERSION,
            kind: "alarm",
            seq,
            event: event_name(&e.kind),
            bed: bed_id(cfg, e.bed),
            alarm: e.alarm.as_ref().map(|a| AlarmView::new(cfg, a)),
            actor: e.actor.as_deref(),
            at: rfc3339_ms(e.at_ms),
            at_ms: e.at_ms,
            until,
            seconds,
            baseline,
            level,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BedIdx, DeviceIdx, DeviceTime, Flag, Flags, Invalid, Mono};

    fn config() -> Config {
        crate::config::load_config_str(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"/nonexistent/data\"\n\
             [[rooms]]\nid = \"room1\"\nname = \"Room 1\"\n\
             [[rooms.recliners]]\nid = \"A\"\n[[rooms.recliners.devices]]\n\
             id = \"ox-1\"\nprofile = \"masimo-rad8\"\ntcp = \"127.0.0.1:9\"\n\
             [[rooms.recliners]]\nid = \"B\"\n[[rooms.recliners.devices]]\n\
             id = \"cuff_2\"\nprofile = \"masimo-rad8\"\ntcp = \"127.0.0.1:10\"\n",
            std::path::Path::new("/nonexistent/t.toml"),
        )
        .expect("test config")
    }

    #[test]
    fn the_hand_written_readings_message_is_byte_for_byte_the_derived_one() {
        let cfg = config();
        let time = DeviceTime {
            year: 2016,
            month: 2,
            day: 22,
            hour: 22,
            minute: 47,
            second: 5,
        };
        let mut obs = Vec::new();
        let mut push = |m: Measurement, i: usize| {
            obs.push(Observation {
                bed: BedIdx((i % 2) as u16),
                device: DeviceIdx((i % 2) as u16),
                m,
                // Runs of equal receive times, and changes between them.
                received_ms: 1_764_000_000_123 + (i / 3) as i64 * 997,
                mono: Mono(i as u64 * 1_234_567_891),
                bed_seq: i as u64 * 1_000_003,
                simulated: i.is_multiple_of(3),
            });
        };
        let mut i = 0;
        for metric in Metric::ALL {
            let (lo, hi) = metric.plausible_range();
            for v in [lo, hi, (lo + hi) / 3.0, 0.1 + 0.2, 97.0, 1e-7] {
                push(Measurement::new(metric, v, Flags::EMPTY), i);
                i += 1;
            }
            for r in Invalid::ALL {
                push(
                    Measurement::invalid(metric, r, Flags::EMPTY).at(Some(time)),
                    i,
                );
                i += 1;
            }
        }
        for f in Flag::ALL {
            push(
                Measurement::new(Metric::Spo2, 95.0, Flags::EMPTY.with(f)).at(Some(time)),
                i,
            );
            i += 1;
        }
        let mut many = Flags::EMPTY.with(Flag::LowBattery).with(Flag::NoFinger);
        many.set_cuff_error(87);
        push(Measurement::new(Metric::NibpSys, 120.0, many), i);
        let mut only_cuff = Flags::EMPTY;
        only_cuff.set_cuff_error(0);
        push(Measurement::new(Metric::NibpDia, 80.0, only_cuff), i + 1);
        for (bed, device) in [
            ("room1/A", "ox-1"),
            ("bed \"quoted\" \\ back", "dev\u{1}\n\tctl"),
            ("lit\u{e9} \u{1f600}", ""),
        ] {
            for part in [&obs[..], &obs[..1], &[]] {
                let derived = serde_json::to_vec(&ReadingsMsg {
                    v: VERSION,
                    kind: "readings",
                    seq: 0,
                    bed,
                    device,
                    readings: ReadingList {
                        cfg: &cfg,
                        obs: part,
                    },
                })
                .expect("serializes");
                let mut hand = b"left as it was".to_vec();
                write_readings(&mut hand, &cfg, bed, device, part);
                assert_eq!(
                    String::from_utf8_lossy(&hand[14..]),
                    String::from_utf8_lossy(&derived),
                    "{bed:?} {device:?}, {} readings",
                    part.len()
                );
            }
        }
    }
}
