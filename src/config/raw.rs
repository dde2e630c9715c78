//! What serde reads from the TOML files, before validation.
//!
//! Every struct denies unknown keys, so a misspelt key is an error instead of a silently ignored
//! setting. Durations ([`WrittenDuration`]), ids, roles, addresses, URLs, UUIDs, HL7 kinds,
//! protocol and metric names (`super::values`) are typed: a bad one is refused while the file is read, naming its line
//! and key. Fields that [`super::load`] validates itself are wrapped in [`Spanned`] so that its
//! errors can point at the line and column of the bad value.

use super::values::{
    BleAddress, BleUuid, Id, ListenAddr, MetricName, MqttUrl, ProtocolName, TcpAddr, WebUrl,
};
use super::{BleMode, DeviceKind, FlowControl, Hl7Kind, Parity, Role, TransportKind};
use crate::model::WrittenDuration;
use serde::Deserialize;
use toml::Spanned;

/// The clinic config file as written (`config/vitalsd.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// Socket address of the HTTP API; `127.0.0.1:8080` when absent.
    pub listen: Option<Spanned<ListenAddr>>,
    /// State directory, relative to the config file's directory unless absolute.
    pub data_dir: Spanned<String>,
    /// Directory of extra or replacement device profiles.
    pub devices_dir: Option<Spanned<String>>,
    /// The rooms; `[[rooms]]` tables. Absent means none, which validation rejects with a
    /// clearer message than serde's "missing field".
    #[serde(default)]
    pub rooms: Vec<Spanned<RawRoom>>,
    /// Directory of extra or replacement alarm-limit presets.
    pub presets_dir: Option<Spanned<String>>,
    /// API users and their tokens; `[[users]]` tables.
    #[serde(default)]
    pub users: Vec<Spanned<RawUser>>,
    /// Alarm-system settings; the `[alarms]` table.
    pub alarms: Option<Spanned<RawAlarms>>,
    /// Notification targets (webhooks); `[[notify]]` tables.
    #[serde(default)]
    pub notify: Vec<Spanned<RawNotify>>,
    /// The `[storage]` table.
    pub storage: Option<Spanned<RawStorage>>,
    /// The `[api]` table: allowed hosts and origins, connection limits and timeouts.
    pub api: Option<Spanned<RawApi>>,
    /// The `[tls]` table: certificate and key (PEM) of the HTTPS/WSS listener.
    pub tls: Option<Spanned<RawTls>>,
    /// The `[mqtt]` table: publish this site to a broker.
    pub mqtt: Option<Spanned<RawMqtt>>,
    /// The `[report]` table: the session report's time zone.
    pub report: Option<Spanned<RawReport>>,
    /// HL7 v2 endpoints over MLLP; `[[hl7]]` tables.
    #[serde(default)]
    pub hl7: Vec<Spanned<RawHl7>>,
}

/// The `[report]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReport {
    /// IANA time zone name (`Europe/Berlin`); absent = the system's.
    pub time_zone: Option<Spanned<String>>,
}

/// One `[[hl7]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHl7 {
    pub name: Option<Spanned<Id>>,
    pub kind: Spanned<Hl7Kind>,
    pub endpoint: Spanned<String>,
    pub tls: Option<bool>,
    pub ca: Option<Spanned<String>>,
    pub sending_application: Option<Spanned<String>>,
    pub sending_facility: Option<Spanned<String>>,
    pub receiving_application: Option<Spanned<String>>,
    pub receiving_facility: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub ack_timeout: Option<Spanned<String>>,
    pub down_after: Option<Spanned<String>>,
}

/// The `[api]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    /// Extra host names (or addresses) the daemon answers to, besides the listener's own.
    #[serde(default)]
    pub allowed_hosts: Vec<Spanned<String>>,
    /// Extra origins (`https://name:port`) whose pages may change state and open WebSockets.
    #[serde(default)]
    pub allowed_origins: Vec<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
    pub header_timeout: Option<Spanned<WrittenDuration>>,
    pub request_timeout: Option<Spanned<WrittenDuration>>,
    pub max_body: Option<Spanned<i64>>,
    /// Lab use only: serve plain HTTP on a non-loopback address.
    pub insecure_allow_plaintext: Option<bool>,
}

/// The `[tls]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

/// The `[mqtt]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMqtt {
    pub url: Spanned<MqttUrl>,
    pub site: Spanned<String>,
    pub client_id: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub keepalive: Option<Spanned<WrittenDuration>>,
    pub down_after: Option<Spanned<WrittenDuration>>,
    pub command_secret: Option<Spanned<String>>,
    /// `mqtts://` only: CA certificates (PEM), a client certificate and its key.
    pub ca: Option<Spanned<String>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
}

/// The `[storage]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    /// Keep discharged sessions (and their readings) this long; absent = keep everything.
    pub retention: Option<Spanned<WrittenDuration>>,
    /// Readings the store holds in memory at most (shared fairly between devices).
    pub buffer_cap: Option<Spanned<i64>>,
}

/// One `[[users]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub name: Spanned<Id>,
    pub role: Spanned<Role>,
    /// The token itself, or (`token_sha256`) only its SHA-256, in hex.
    pub token: Option<Spanned<String>>,
    pub token_sha256: Option<Spanned<String>>,
}

/// The `[alarms]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlarms {
    pub dashboard_timeout: Option<Spanned<WrittenDuration>>,
    /// Shorthand for `escalation.high.renotify_every`.
    pub renotify_every: Option<Spanned<String>>,
    /// Shorthand for `escalation.high.escalate_after`.
    pub escalate_after: Option<Spanned<String>>,
    pub audio_pause: Option<Spanned<WrittenDuration>>,
    pub audio_pause_max: Option<Spanned<WrittenDuration>>,
    /// At most one page per alarm condition per bed in this window.
    pub page_interval: Option<Spanned<WrittenDuration>>,
    /// `high`, `medium` or `all`: which new conditions sound through an audio pause.
    pub pause_breakthrough: Option<Spanned<String>>,
    /// `[alarms.escalation.high]` / `.medium` / `.low`.
    pub escalation: Option<Spanned<RawEscalation>>,
    pub nibp_overdue_grace: Option<Spanned<WrittenDuration>>,
}

/// The `[alarms.escalation]` table: one table per priority.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEscalation {
    pub high: Option<Spanned<RawPriorityEscalation>>,
    pub medium: Option<Spanned<RawPriorityEscalation>>,
    pub low: Option<Spanned<RawPriorityEscalation>>,
}

/// `[alarms.escalation.<priority>]`: how that priority is paged while unacknowledged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPriorityEscalation {
    pub notify: Option<Spanned<bool>>,
    /// A duration, or `"never"` (page once).
    pub renotify_every: Option<Spanned<String>>,
    /// A duration, or `"never"` (stay at level 0).
    pub escalate_after: Option<Spanned<String>>,
    pub levels: Option<Spanned<u8>>,
}

/// One `[[notify]]` table: a webhook target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub name: Spanned<Id>,
    pub url: Spanned<WebUrl>,
    pub level: Option<Spanned<u8>>,
    pub timeout: Option<Spanned<WrittenDuration>>,
}

/// One `[[rooms]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoom {
    pub id: Spanned<Id>,
    pub name: Spanned<String>,
    #[serde(default)]
    pub recliners: Vec<Spanned<RawRecliner>>,
}

/// One `[[rooms.recliners]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecliner {
    pub id: Spanned<Id>,
    pub label: Option<Spanned<String>>,
    pub bp_interval: Option<Spanned<WrittenDuration>>,
    /// Alarm-limit preset name; `ketamine-session` when absent.
    pub preset: Option<Spanned<String>>,
    #[serde(default)]
    pub devices: Vec<Spanned<RawDevice>>,
}

/// One `[[rooms.recliners.devices]]` table: a device bound to the recliner.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevice {
    pub id: Spanned<Id>,
    pub profile: Spanned<String>,
    /// Serial port path; exactly one of `port`, `tcp` and `address`.
    pub port: Option<Spanned<String>>,
    /// `host:port` of a serial device server; exactly one of `port`, `tcp` and `address`.
    pub tcp: Option<Spanned<TcpAddr>>,
    /// Bluetooth LE device address `AA:BB:CC:DD:EE:FF`; exactly one of `port`, `tcp` and
    /// `address`.
    pub address: Option<Spanned<BleAddress>>,
    /// Bluetooth LE only: a pattern (`*` matches any run of characters) the device's advertised
    /// name must match, so that a mistyped address never binds another patient's device.
    pub name: Option<Spanned<String>>,
    /// The device is played by `vitalsd simulate`/`demo`; its data is flagged simulated.
    #[serde(default)]
    pub simulated: bool,
    /// Readings per second this device may deliver before it is throttled (overrides its
    /// profile's `max_rate`).
    pub max_rate: Option<Spanned<i64>>,
}

/// A device profile as written (`devices/<name>.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub vendor: Spanned<String>,
    pub model: Spanned<String>,
    pub kind: DeviceKind,
    pub transport: Spanned<TransportKind>,
    /// The decoder of a serial profile; BLE profiles name one per characteristic instead.
    pub protocol: Option<Spanned<ProtocolName>>,
    pub metrics: Spanned<Vec<Spanned<MetricName>>>,
    pub expected_period: Spanned<WrittenDuration>,
    /// Readings per second the model can plausibly send; more is a flood (throttled).
    pub max_rate: Option<Spanned<i64>>,
    pub no_signal: String,
    /// Serial link settings; serial profiles only.
    pub link: Option<Spanned<RawLink>>,
    /// GATT layout; BLE profiles only.
    pub ble: Option<Spanned<RawBle>>,
}

/// The `[ble]` table of a profile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBle {
    /// The primary service, as advertised: the scan filter and how `vitalsd scan` recognises
    /// the model.
    pub service: Spanned<BleUuid>,
    /// Advertised-name prefixes that also identify the model in `vitalsd scan`.
    #[serde(default)]
    pub names: Vec<Spanned<String>>,
    /// The characteristic commands are written to.
    pub write: Option<Spanned<BleUuid>>,
    /// The command written to `write` every `poll_every`, in hex.
    pub poll_command: Option<Spanned<String>>,
    /// How often `poll_command` is written.
    pub poll_every: Option<Spanned<WrittenDuration>>,
    /// `[[ble.characteristics]]`: what to subscribe to or read, and how to decode it.
    #[serde(default)]
    pub characteristics: Vec<Spanned<RawBleCharacteristic>>,
}

/// One `[[ble.characteristics]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBleCharacteristic {
    pub uuid: Spanned<BleUuid>,
    pub protocol: Spanned<ProtocolName>,
    pub mode: BleMode,
}

/// The `[link]` table of a profile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLink {
    pub baud: Spanned<u32>,
    pub data_bits: Spanned<u8>,
    pub parity: Parity,
    pub stop_bits: Spanned<u8>,
    pub flow_control: FlowControl,
}
