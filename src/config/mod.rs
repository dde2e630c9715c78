//! Configuration: the clinic's config file (rooms, recliners, device bindings, listen address,
//! data dir) and the device profiles in `devices/`, both TOML.
//!
//! Two stages, as in ripgrep's `LowArgs`/`HiArgs`: `raw` holds what serde read (with spans, and
//! `deny_unknown_fields` everywhere), `load` validates it into the types below, which the rest of
//! the daemon uses. Every error names the file, the line, the key and what was expected.
//!
//! The file formats are documented in `docs/configuration.md`.
//!
//! # Layout
//! - `raw`: the files as serde reads them; `error`: [`ConfigError`] and [`read_toml`], the one
//!   reader every TOML file goes through (the scenario loader's too), which names the line,
//!   column and key path of what it refuses.
//! - `load`: the clinic config's entry points ([`load_config`]) and the site-wide tables
//!   (`[[users]]`, `[alarms]`, `[[notify]]`, `[storage]`, `[api]`, `[tls]`, `[mqtt]`).
//! - `topology`: rooms, recliners and device bindings with their endpoints.
//! - `profiles`: device profiles (serial link, BLE GATT layout).
//! - `check`: checks the validators share (ids, text, bounded durations); `mqtt`: the broker
//!   URL and topics.

#[cfg(test)]
mod api_tests;
mod central;
mod check;
mod error;
mod hl7;
mod load;
mod mqtt;
mod profiles;
mod raw;
mod topology;
mod values;

// Shared vocabulary that moved to `crate::model`; re-exported so that `crate::config::X`
// paths keep working.
pub use crate::model::{DeviceKind, parse_duration};
pub use central::{CentralConfig, CentralMqtt, CentralSite, load_central, load_central_str};
pub use error::{ConfigError, TomlError, line_col, read_toml};
pub use hl7::{Hl7Endpoint, Hl7Kind, parse_endpoint as parse_hl7_endpoint};
pub use load::{BUILTIN_PRESETS, load_presets};
pub use load::{DEFAULT_LISTEN, load_config, load_config_str};
pub use mqtt::{
    MIN_COMMAND_SECRET, MqttSettings, MqttTls, is_mqtts, is_topic_level, parse_mqtt_url,
};
pub use profiles::{
    BUILTIN_PROFILES, MAX_EXPECTED_PERIOD, MIN_EXPECTED_PERIOD, load_profile, load_profiles,
};
pub use topology::{
    DEFAULT_BP_INTERVAL, DEFAULT_PRESET, MAX_BP_INTERVAL, MIN_BP_INTERVAL, absent_ports,
};
pub use values::{normalize_address, parse_ble_uuid};

use crate::model::{BedIdx, BedSpec, DeviceIdx, DeviceSpec, Metric};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The validated daemon configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages).
    pub source: PathBuf,
    /// Where the HTTP API, WebSocket and dashboard listen. Loopback unless configured otherwise.
    pub listen: SocketAddr,
    /// Directory for the SQLite store and other state; relative paths are resolved against the
    /// config file's directory.
    pub data_dir: PathBuf,
    /// Rooms in configuration order.
    pub rooms: Vec<Room>,
    /// Every bed (recliner) of every room, flattened; [`BedIdx`] indexes this.
    pub beds: Vec<Bed>,
    /// Every bound device, flattened; [`DeviceIdx`] indexes this.
    pub devices: Vec<Binding>,
    /// API users. Empty is allowed only when listening on loopback: then every request is
    /// treated as an admin's (quick local use, tests).
    pub users: Vec<User>,
    /// Alarm-system settings.
    pub alarms: AlarmSettings,
    /// Webhook notification targets, by escalation level.
    pub notify: Vec<NotifyTarget>,
    /// Alarm-limit presets by name (built-in `config/presets/*.toml` plus `presets_dir`).
    pub presets: std::collections::BTreeMap<String, crate::model::BedLimits>,
    /// How long discharged sessions are kept (`[storage] retention`); `None` keeps everything.
    /// Sessions never exported are not pruned (the log says which).
    pub retention: Option<Duration>,
    /// Readings the store holds in memory at most (`[storage] buffer_cap`), shared fairly
    /// between devices (docs/storage.md); `None`: the store's default.
    pub store_buffer_cap: Option<usize>,
    /// The `[api]` table: who may call (hosts, origins) and how much (connections, timeouts).
    pub api: ApiSettings,
    /// The `[tls]` table: HTTPS and WSS on the listener; `None` serves plain HTTP (loopback, or
    /// `[api] insecure_allow_plaintext`).
    pub tls: Option<TlsSettings>,
    /// The bridge to an MQTT broker (`[mqtt]`); `None` publishes nothing.
    pub mqtt: Option<MqttSettings>,
    /// `[report] time_zone`: the IANA name of the clinic's time zone for session reports
    /// (validated at load); `None` uses the system's (`TZ`, else `/etc/localtime`).
    pub report_time_zone: Option<String>,
    /// HL7 v2 endpoints over MLLP (`[[hl7]]`, src/hl7); empty sends nothing.
    pub hl7: Vec<Hl7Endpoint>,
}

/// The `[api]` table. See `docs/configuration.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// Host names and addresses (lowercase, no port) requests may name in `Host`, besides the
    /// listener's own address (and `localhost`, `127.0.0.1`, `[::1]` on loopback).
    pub allowed_hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`, lowercase) besides the daemon's own whose pages may
    /// change state or open a WebSocket.
    pub allowed_origins: Vec<String>,
    /// Open HTTP/WebSocket connections at most; at the cap, the connection idle the longest
    /// is closed to make room, or the new one is refused at once.
    pub max_connections: usize,
    /// A request's headers (and the TLS handshake) must arrive within this; it is also how
    /// long a kept-alive connection may sit idle between requests.
    pub header_timeout: Duration,
    /// A request must be answered within this (a slow body included); 408 otherwise.
    pub request_timeout: Duration,
    /// Largest request body, in bytes; 413 above it.
    pub max_body: usize,
    /// Lab use only: plain HTTP on a non-loopback address.
    pub insecure_allow_plaintext: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_body: 64 * 1024,
            insecure_allow_plaintext: false,
        }
    }
}

/// The `[tls]` table: PEM files, resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// What a token may do. Ordered: each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also acknowledges alarms, pauses audio, captures baselines, runs sessions.
    Nurse,
    /// Also changes alarm limits.
    Admin,
}

impl Role {
    /// The config name.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Nurse => "nurse",
            Role::Admin => "admin",
        }
    }
}

/// An API user.
#[derive(Debug, Clone)]
pub struct User {
    /// Shown in the audit trail (who acknowledged, who changed limits).
    pub name: String,
    pub role: Role,
    /// The bearer token (at least 16 characters), when the config holds it (`token`); `None`
    /// when it holds only its hash (`token_sha256`).
    pub token: Option<String>,
    /// The SHA-256 of the token: what a presented token is compared with.
    pub token_sha256: [u8; 32],
}

/// The SHA-256 of a token, as kept in [`User::token_sha256`].
pub fn token_sha256(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Whether a token is acceptable: at least 16 characters, no whitespace.
pub fn token_is_valid(token: &str) -> bool {
    token.chars().count() >= 16 && !token.chars().any(char::is_whitespace)
}

/// Alarm-system settings from the `[alarms]` table.
#[derive(Debug, Clone)]
pub struct AlarmSettings {
    /// Raise `no_dashboard` when no dashboard has been alive this long while beds are
    /// monitored (default 30 s).
    pub dashboard_timeout: Duration,
    /// Engine policy: technical priorities, escalation timing, audio-pause bounds.
    pub policy: crate::model::Policy,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings {
            dashboard_timeout: Duration::from_secs(30),
            policy: crate::model::Policy::default(),
        }
    }
}

/// A webhook that receives notifications of escalation level `level`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    pub name: String,
    /// `http://` or `https://` URL; notifications are POSTed as JSON.
    pub url: String,
    /// Escalation level this target serves (0 first).
    pub level: u8,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl Config {
    /// The bed at `idx`.
    pub fn bed(&self, idx: BedIdx) -> &Bed {
        &self.beds[usize::from(idx.0)]
    }

    /// The device at `idx`.
    pub fn device(&self, idx: DeviceIdx) -> &Binding {
        &self.devices[usize::from(idx.0)]
    }
}

/// The engine is built from plain data ([`BedSpec`]); this is where the config becomes it.
impl BedSpec {
    /// The spec of `bed` from a validated config (`None` if the index is out of range).
    pub fn from_config(cfg: &Config, bed: BedIdx) -> Option<BedSpec> {
        let b = cfg.beds.get(usize::from(bed.0))?;
        let devices = b
            .devices
            .iter()
            .filter_map(|d| {
                let binding = cfg.devices.get(usize::from(d.0))?;
                Some(DeviceSpec {
                    idx: *d,
                    kind: binding.profile.kind,
                    expected_period: binding.profile.expected_period,
                    metrics: binding.profile.metrics.clone(),
                })
            })
            .collect();
        Some(BedSpec {
            devices,
            bp_interval: b.bp_interval,
        })
    }
}

/// A room: one or more recliners watched together.
#[derive(Debug, Clone)]
pub struct Room {
    /// Stable id, e.g. `room1`.
    pub id: String,
    /// Display name, e.g. `Room 1`.
    pub name: String,
    /// The room's beds, in order.
    pub beds: Vec<BedIdx>,
}

/// A recliner (bed): one patient's place.
#[derive(Debug, Clone)]
pub struct Bed {
    /// Globally unique id, `<room id>/<recliner id>`, e.g. `room1/A`. Used in every message.
    pub id: String,
    /// The recliner's id within its room, e.g. `A`.
    pub recliner: String,
    /// The room it stands in (index into [`Config::rooms`]).
    pub room: usize,
    /// Display label (a bed label; never a patient's name in logs).
    pub label: String,
    /// How often the daemon starts an NIBP measurement on cuffs it can start (SunTech).
    pub bp_interval: Duration,
    /// The devices bound to this bed.
    pub devices: Vec<DeviceIdx>,
    /// The alarm-limit preset the bed starts with.
    pub preset: String,
}

/// A device bound to a bed.
#[derive(Debug, Clone)]
pub struct Binding {
    /// Unique id, e.g. `room1-A-oximeter`.
    pub id: String,
    /// The bed it belongs to.
    pub bed: BedIdx,
    /// Its model's profile.
    pub profile: Arc<Profile>,
    /// Where to reach it.
    pub endpoint: Endpoint,
    /// The device is the simulator (config key `simulated = true`): every reading from it is
    /// flagged simulated end to end, and `vitalsd simulate` only plays devices marked so.
    pub simulated: bool,
    /// Readings per second it may deliver before its source throttles it (the binding's
    /// `max_rate`, else its profile's).
    pub max_rate: u32,
}

/// How a bound device is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A serial port (`/dev/ttyUSB0`, a `/dev/serial/by-id/...` link, a pseudo-terminal).
    Serial { path: PathBuf },
    /// A serial device server's raw TCP port (`host:port`).
    Tcp { addr: String },
    /// A Bluetooth LE device, by address (`AA:BB:CC:DD:EE:FF`, upper case), and optionally a
    /// pattern its advertised name must match (`*` matches any run of characters).
    Ble {
        address: String,
        name: Option<String>,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Serial { path } => write!(f, "serial {}", path.display()),
            Endpoint::Tcp { addr } => write!(f, "tcp {addr}"),
            Endpoint::Ble { address, .. } => write!(f, "ble {address}"),
        }
    }
}

/// How a model is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// RS-232/USB serial, or the same bytes through a serial device server over TCP.
    Serial,
    /// Bluetooth Low Energy (GATT), through BlueZ.
    Ble,
}

/// How a BLE characteristic delivers its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BleMode {
    /// Subscribed; the device notifies each new value.
    Notify,
    /// Subscribed; the device indicates each new value (acknowledged notifications).
    Indicate,
    /// Read once after every connect (features, battery level).
    Read,
    /// Subscribed; the values answer the profile's `poll_command`, written every `poll_every`.
    Poll,
}

impl BleMode {
    /// Whether the daemon subscribes to the characteristic.
    pub const fn subscribes(self) -> bool {
        !matches!(self, BleMode::Read)
    }
}

/// A characteristic a BLE profile uses, with its decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BleCharacteristic {
    /// The characteristic's UUID.
    pub uuid: uuid::Uuid,
    /// Decoder name, one of [`crate::protocol::PROTOCOLS`]; each value is fed to it whole.
    pub protocol: String,
    /// How its values arrive.
    pub mode: BleMode,
}

/// A command written to the device on a schedule (Viatom's sensor request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlePoll {
    /// The characteristic written to.
    pub write: uuid::Uuid,
    /// The bytes.
    pub command: Vec<u8>,
    /// How often.
    pub every: Duration,
}

/// The GATT layout of a BLE model (`[ble]` of a profile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BleProfile {
    /// The primary service, as advertised: the scan filter.
    pub service: uuid::Uuid,
    /// Advertised-name prefixes that identify the model in `vitalsd scan`.
    pub names: Vec<String>,
    /// What to subscribe to or read, in profile order.
    pub characteristics: Vec<BleCharacteristic>,
    /// The scheduled command, if the model must be asked for data.
    pub poll: Option<BlePoll>,
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    None,
    Odd,
    Even,
}

/// Serial flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowControl {
    None,
    Software,
    Hardware,
}

/// Serial link settings of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSettings {
    pub baud: u32,
    /// 5..=8.
    pub data_bits: u8,
    pub parity: Parity,
    /// 1 or 2.
    pub stop_bits: u8,
    pub flow_control: FlowControl,
}

/// A device model's profile, read from `devices/<name>.toml`.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The file stem, e.g. `masimo-rad8`; what bindings name.
    pub name: String,
    pub vendor: String,
    pub model: String,
    pub kind: DeviceKind,
    pub transport: TransportKind,
    /// Decoder name, one of [`crate::protocol::PROTOCOLS`]. For a BLE profile: the decoder of
    /// its first subscribed characteristic (each characteristic has its own, in [`Profile::ble`]).
    pub protocol: String,
    /// Serial link settings. A BLE profile has none in its file and gets 8N1 at 9600 here,
    /// which nothing uses.
    pub link: LinkSettings,
    /// The GATT layout, for BLE profiles.
    pub ble: Option<BleProfile>,
    /// Metrics the model reports.
    pub metrics: Vec<Metric>,
    /// How often the device sends data when all is well (1 s for a 1 Hz oximeter). Data older
    /// than this plus the grace is stale.
    pub expected_period: Duration,
    /// Readings per second the model can plausibly send (`max_rate`, default per protocol:
    /// [`crate::protocol::default_max_rate`]); a device that sends more is throttled at its
    /// source and raises `device_flooding` (docs/alarms.md).
    pub max_rate: u32,
    /// How the model signals "no signal" / "no value", for people reading the profile.
    pub no_signal: String,
}
