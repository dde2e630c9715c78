//! Validation: turns what serde read ([`super::raw`]) into the types of [`super`], or into a
//! [`ConfigError`] that names the file, line, column and key, quotes the bad value and says what
//! was expected.
//!
//! Validation stops at the first error: a config that does not load keeps the daemon from
//! starting, and one precise message is easier to act on than a page of follow-on errors.

pub(super) use super::error::{ConfigError, Source, line_col};
use super::raw::{RawBle, RawConfig, RawDevice, RawLink, RawProfile, RawRecliner, RawRoom};
use super::{
    AlarmSettings, Bed, Binding, BleCharacteristic, BlePoll, BleProfile, Config, Endpoint,
    FlowControl, LinkSettings, NotifyTarget, Parity, Profile, Role, Room, TransportKind, User,
    parse_duration,
};
use crate::model::{BedIdx, DeviceIdx, Metric};
use crate::protocol::PROTOCOLS;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// The device profiles shipped in `devices/`, compiled into the binary so that a deployed daemon
/// works without the source tree. `(profile name, TOML text)`; the name is the file stem.
pub const BUILTIN_PROFILES: &[(&str, &str)] = &[
    (
        "berrymed-bm1000",
        include_str!("../../devices/berrymed-bm1000.toml"),
    ),
    (
        "contec-cms50d-legacy",
        include_str!("../../devices/contec-cms50d-legacy.toml"),
    ),
    (
        "contec-cms50d-v7",
        include_str!("../../devices/contec-cms50d-v7.toml"),
    ),
    (
        "generic-bls",
        include_str!("../../devices/generic-bls.toml"),
    ),
    (
        "generic-hrs",
        include_str!("../../devices/generic-hrs.toml"),
    ),
    (
        "generic-plx",
        include_str!("../../devices/generic-plx.toml"),
    ),
    (
        "masimo-rad8",
        include_str!("../../devices/masimo-rad8.toml"),
    ),
    (
        "masimo-radical7",
        include_str!("../../devices/masimo-radical7.toml"),
    ),
    (
        "nonin-3150-format8",
        include_str!("../../devices/nonin-3150-format8.toml"),
    ),
    ("nonin-3230", include_str!("../../devices/nonin-3230.toml")),
    ("nonin-oem3", include_str!("../../devices/nonin-oem3.toml")),
    (
        "nonin-oem3-format7",
        include_str!("../../devices/nonin-oem3-format7.toml"),
    ),
    (
        "suntech-advantage",
        include_str!("../../devices/suntech-advantage.toml"),
    ),
    (
        "wellue-o2ring",
        include_str!("../../devices/wellue-o2ring.toml"),
    ),
];

/// Where `listen` points when the config does not say: loopback only, so that the API is not
/// reachable from the network unless the clinic asks for it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The NIBP cycle when a recliner does not set `bp_interval`.
pub const DEFAULT_BP_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Shortest accepted `bp_interval`: a cuff cycled faster than this would hurt and never rest.
pub const MIN_BP_INTERVAL: Duration = Duration::from_secs(5);

/// Longest accepted `bp_interval`.
pub const MAX_BP_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Shortest accepted profile `expected_period`.
pub const MIN_EXPECTED_PERIOD: Duration = Duration::from_millis(100);

/// Longest accepted profile `expected_period`: a device silent for longer than this between
/// readings could not be told apart from a dead one in time.
pub const MAX_EXPECTED_PERIOD: Duration = Duration::from_secs(10 * 60);

/// Whether `s` is a valid id: 1 to 64 of `[A-Za-z0-9_-]`. Ids appear in URLs, topics and logs.
fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

const ID_EXPECTED: &str = "expected 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'";

fn check_id(src: &Source<'_>, id: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
    if is_valid_id(id.get_ref()) {
        Ok(id.get_ref().clone())
    } else {
        Err(src.err(
            id.span(),
            key,
            format!("{:?} is not a valid id, {ID_EXPECTED}", id.get_ref()),
        ))
    }
}

fn check_text(src: &Source<'_>, s: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
    let text = s.get_ref().trim();
    if text.is_empty() {
        Err(src.err(
            s.span(),
            key,
            format!("{:?} is empty, expected some text", s.get_ref()),
        ))
    } else {
        Ok(text.to_owned())
    }
}

fn check_duration(
    src: &Source<'_>,
    s: &Spanned<String>,
    key: &str,
    range: (Duration, Duration, &str, &str),
) -> Result<Duration, ConfigError> {
    let (min, max, min_text, max_text) = range;
    let d = parse_duration(s.get_ref()).map_err(|m| src.err(s.span(), key, m))?;
    if d < min || d > max {
        return Err(src.err(
            s.span(),
            key,
            format!(
                "{:?} is out of range, expected a duration between {min_text} and {max_text}",
                s.get_ref()
            ),
        ));
    }
    Ok(d)
}

/// The keys under which a device server address is taken, compared after resolution: every
/// address `addr` resolves to (std's resolver, at config load), with every loopback or
/// unspecified address as one host, so `127.0.0.1:P`, `localhost:P`, `127.1:P` and `[::1]:P`
/// are one endpoint. A name that does not resolve now is compared by its text.
fn tcp_keys(addr: &str) -> Vec<String> {
    use std::net::{IpAddr, ToSocketAddrs};
    let mut keys: Vec<String> = match addr.to_socket_addrs() {
        Ok(resolved) => resolved
            .map(|sa| {
                let ip = match sa.ip() {
                    IpAddr::V6(v6) => v6
                        .to_ipv4_mapped()
                        .map(IpAddr::V4)
                        .unwrap_or(IpAddr::V6(v6)),
                    v4 => v4,
                };
                if ip.is_loopback() || ip.is_unspecified() {
                    format!("tcp loopback:{}", sa.port())
                } else {
                    format!("tcp {}", std::net::SocketAddr::new(ip, sa.port()))
                }
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if keys.is_empty() {
        keys.push(format!("tcp {}", addr.to_ascii_lowercase()));
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Checks a serial device server address: `host:port`, port 1..65535, IPv6 hosts in brackets.
fn check_tcp(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    };
    let port_ok =
        port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p != 0);
    host_ok && port_ok
}

fn join_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().collect::<Vec<_>>().join(", ")
}

/// Validates one device profile. `name` is the profile name (the file stem), `origin` the file
/// it came from, for messages.
pub fn load_profile(name: &str, text: &str, origin: &Path) -> Result<Profile, ConfigError> {
    let src = Source { origin, text };
    let raw: RawProfile = src.read()?;
    validate_profile(&src, name, raw)
}

fn validate_profile(src: &Source<'_>, name: &str, raw: RawProfile) -> Result<Profile, ConfigError> {
    let vendor = check_text(src, &raw.vendor, "vendor")?;
    let model = check_text(src, &raw.model, "model")?;
    let transport = *raw.transport.get_ref();
    let (protocol, link, ble) = match transport {
        TransportKind::Serial => {
            let Some(protocol) = &raw.protocol else {
                return Err(src.err(
                    raw.transport.span(),
                    "protocol",
                    "a serial profile has no protocol, expected protocol = \"NAME\"".to_owned(),
                ));
            };
            check_protocol(src, protocol, "protocol")?;
            if let Some(ble) = &raw.ble {
                return Err(src.err(
                    ble.span(),
                    "ble",
                    "a serial profile has a [ble] table, expected transport = \"ble\" or no [ble] table".to_owned(),
                ));
            }
            let Some(link) = &raw.link else {
                return Err(src.err(
                    raw.transport.span(),
                    "link",
                    "a serial profile has no [link] table, expected baud, data_bits, parity, stop_bits and flow_control".to_owned(),
                ));
            };
            let link = validate_link(src, link.get_ref())?;
            (protocol.get_ref().clone(), link, None)
        }
        TransportKind::Ble => {
            if let Some(p) = &raw.protocol {
                return Err(src.err(
                    p.span(),
                    "protocol",
                    "a BLE profile names a protocol per characteristic, expected no top-level protocol but [[ble.characteristics]] tables".to_owned(),
                ));
            }
            if let Some(link) = &raw.link {
                return Err(src.err(
                    link.span(),
                    "link",
                    "a BLE profile has a [link] table, expected [link] only in serial profiles"
                        .to_owned(),
                ));
            }
            let Some(ble) = &raw.ble else {
                return Err(src.err(
                    raw.transport.span(),
                    "ble",
                    "a BLE profile has no [ble] table, expected service and [[ble.characteristics]]".to_owned(),
                ));
            };
            let ble = validate_ble(src, ble)?;
            let main = ble
                .characteristics
                .iter()
                .find(|c| c.mode.subscribes())
                .or(ble.characteristics.first())
                .map(|c| c.protocol.clone())
                .unwrap_or_default();
            let link = LinkSettings {
                baud: 9600,
                data_bits: 8,
                parity: Parity::None,
                stop_bits: 1,
                flow_control: FlowControl::None,
            };
            (main, link, Some(ble))
        }
    };
    if raw.metrics.get_ref().is_empty() {
        return Err(src.err(
            raw.metrics.span(),
            "metrics",
            "no metrics, expected at least one metric name".to_owned(),
        ));
    }
    let mut metrics = Vec::new();
    for (i, m) in raw.metrics.get_ref().iter().enumerate() {
        let key = format!("metrics[{i}]");
        let Some(metric) = Metric::from_name(m.get_ref()) else {
            return Err(src.err(
                m.span(),
                key,
                format!(
                    "unknown metric {:?}, expected one of: {}",
                    m.get_ref(),
                    join_names(Metric::ALL.iter().map(|m| m.name()))
                ),
            ));
        };
        if metrics.contains(&metric) {
            return Err(src.err(
                m.span(),
                key,
                format!(
                    "metric {:?} is listed twice, expected each metric once",
                    m.get_ref()
                ),
            ));
        }
        metrics.push(metric);
    }
    let expected_period = check_duration(
        src,
        &raw.expected_period,
        "expected_period",
        (MIN_EXPECTED_PERIOD, MAX_EXPECTED_PERIOD, "100ms", "10m"),
    )?;
    Ok(Profile {
        name: name.to_owned(),
        vendor,
        model,
        kind: raw.kind,
        transport,
        protocol,
        link,
        ble,
        metrics,
        expected_period,
        no_signal: raw.no_signal.trim().to_owned(),
    })
}

fn check_protocol(src: &Source<'_>, p: &Spanned<String>, key: &str) -> Result<(), ConfigError> {
    if PROTOCOLS.contains(&p.get_ref().as_str()) {
        return Ok(());
    }
    Err(src.err(
        p.span(),
        key,
        format!(
            "unknown protocol {:?}, expected one of: {}",
            p.get_ref(),
            join_names(PROTOCOLS.iter().copied())
        ),
    ))
}

/// The Bluetooth base UUID, `0000xxxx-0000-1000-8000-00805f9b34fb`.
const BLUETOOTH_BASE: u128 = 0x0000_0000_0000_1000_8000_0080_5f9b_34fb;

/// Parses a BLE UUID: the full form (`49535343-fe7d-4ae5-8fa9-9fafd205e455`) or a 16-bit SIG
/// number (`1822`, `0x2A5F`), which stands for the full UUID on the Bluetooth base.
pub fn parse_ble_uuid(s: &str) -> Option<uuid::Uuid> {
    let t = s.trim();
    let short = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if short.len() == 4 && short.bytes().all(|b| b.is_ascii_hexdigit()) {
        let n = u16::from_str_radix(short, 16).ok()?;
        return Some(uuid::Uuid::from_u128(
            BLUETOOTH_BASE | (u128::from(n) << 96),
        ));
    }
    if t.len() == 36 {
        return uuid::Uuid::parse_str(t).ok();
    }
    None
}

const UUID_EXPECTED: &str = "expected a 16-bit SIG number such as \"2A5F\" or a full UUID such as \"49535343-fe7d-4ae5-8fa9-9fafd205e455\"";

fn check_uuid(src: &Source<'_>, s: &Spanned<String>, key: &str) -> Result<uuid::Uuid, ConfigError> {
    parse_ble_uuid(s.get_ref()).ok_or_else(|| {
        src.err(
            s.span(),
            key,
            format!("{:?} is not a UUID, {UUID_EXPECTED}", s.get_ref()),
        )
    })
}

/// Shortest and longest accepted `poll_every`.
const MIN_POLL: Duration = Duration::from_millis(200);
const MAX_POLL: Duration = Duration::from_secs(60);

fn validate_ble(src: &Source<'_>, raw: &Spanned<RawBle>) -> Result<BleProfile, ConfigError> {
    let b = raw.get_ref();
    let service = check_uuid(src, &b.service, "ble.service")?;
    let mut names = Vec::new();
    for (i, n) in b.names.iter().enumerate() {
        names.push(check_text(src, n, &format!("ble.names[{i}]"))?);
    }
    if b.characteristics.is_empty() {
        return Err(src.err(
            raw.span(),
            "ble.characteristics",
            "no characteristics, expected at least one [[ble.characteristics]] table".to_owned(),
        ));
    }
    let mut characteristics: Vec<BleCharacteristic> = Vec::new();
    for (i, c) in b.characteristics.iter().enumerate() {
        let key = format!("ble.characteristics[{i}]");
        let c = c.get_ref();
        let uuid = check_uuid(src, &c.uuid, &format!("{key}.uuid"))?;
        if characteristics.iter().any(|other| other.uuid == uuid) {
            return Err(src.err(
                c.uuid.span(),
                format!("{key}.uuid"),
                format!(
                    "characteristic {:?} is listed twice, expected each characteristic once",
                    c.uuid.get_ref()
                ),
            ));
        }
        check_protocol(src, &c.protocol, &format!("{key}.protocol"))?;
        characteristics.push(BleCharacteristic {
            uuid,
            protocol: c.protocol.get_ref().clone(),
            mode: c.mode,
        });
    }
    let has_poll = characteristics
        .iter()
        .any(|c| c.mode == super::BleMode::Poll);
    let poll = match (&b.write, &b.poll_command, &b.poll_every) {
        (None, None, None) => None,
        (Some(write), Some(command), Some(every)) => {
            let write = check_uuid(src, write, "ble.write")?;
            let cleaned: String = command
                .get_ref()
                .chars()
                .filter(|c| !c.is_whitespace() && *c != ':')
                .collect();
            let bytes = match hex::decode(&cleaned) {
                Ok(b) if !b.is_empty() => b,
                _ => {
                    return Err(src.err(
                        command.span(),
                        "ble.poll_command",
                        format!(
                            "{:?} is not hex bytes, expected the command in hex such as \"aa17e8000000001b\"",
                            command.get_ref()
                        ),
                    ));
                }
            };
            let every = check_duration(
                src,
                every,
                "ble.poll_every",
                (MIN_POLL, MAX_POLL, "200ms", "60s"),
            )?;
            Some(BlePoll {
                write,
                command: bytes,
                every,
            })
        }
        _ => {
            return Err(src.err(
                raw.span(),
                "ble",
                "write, poll_command and poll_every go together, expected all three or none"
                    .to_owned(),
            ));
        }
    };
    if has_poll && poll.is_none() {
        return Err(src.err(
            raw.span(),
            "ble",
            "a characteristic has mode = \"poll\" but nothing polls it, expected write, poll_command and poll_every".to_owned(),
        ));
    }
    Ok(BleProfile {
        service,
        names,
        characteristics,
        poll,
    })
}

fn validate_link(src: &Source<'_>, raw: &RawLink) -> Result<LinkSettings, ConfigError> {
    if *raw.baud.get_ref() == 0 {
        return Err(src.err(
            raw.baud.span(),
            "link.baud",
            "0 is out of range, expected a baud rate above 0 such as 9600".to_owned(),
        ));
    }
    let data_bits = *raw.data_bits.get_ref();
    if !(5..=8).contains(&data_bits) {
        return Err(src.err(
            raw.data_bits.span(),
            "link.data_bits",
            format!("{data_bits} is out of range, expected 5 to 8"),
        ));
    }
    let stop_bits = *raw.stop_bits.get_ref();
    if !(1..=2).contains(&stop_bits) {
        return Err(src.err(
            raw.stop_bits.span(),
            "link.stop_bits",
            format!("{stop_bits} is out of range, expected 1 or 2"),
        ));
    }
    Ok(LinkSettings {
        baud: *raw.baud.get_ref(),
        data_bits,
        parity: raw.parity,
        stop_bits,
        flow_control: raw.flow_control,
    })
}

/// Loads the built-in profiles ([`BUILTIN_PROFILES`]), then every `*.toml` file of `dir` (the
/// config's `devices_dir`), which adds profiles or replaces built-in ones of the same name.
pub fn load_profiles(dir: Option<&Path>) -> Result<BTreeMap<String, Arc<Profile>>, ConfigError> {
    let mut profiles = BTreeMap::new();
    for (name, text) in BUILTIN_PROFILES {
        let origin = PathBuf::from(format!("devices/{name}.toml"));
        let profile = load_profile(name, text, &origin)?;
        profiles.insert((*name).to_owned(), Arc::new(profile));
    }
    let Some(dir) = dir else {
        return Ok(profiles);
    };
    let io = |path: &Path, what, source| ConfigError::Io {
        path: path.to_path_buf(),
        what,
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, "devices_dir", e))? {
        let path = entry.map_err(|e| io(dir, "devices_dir", e))?.path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            files.push(path);
        }
    }
    files.sort();
    for path in files {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if !is_valid_id(stem) {
            return Err(ConfigError::Invalid {
                path: path.clone(),
                line: 1,
                column: 1,
                key: String::new(),
                message: format!(
                    "file name {:?} is not a valid profile name, {ID_EXPECTED} before \".toml\"",
                    path.file_name().unwrap_or_default().to_string_lossy()
                ),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, "device profile", e))?;
        let profile = load_profile(stem, &text, &path)?;
        profiles.insert(stem.to_owned(), Arc::new(profile));
    }
    Ok(profiles)
}

/// Reads and validates the clinic config file, with the device profiles it refers to.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        what: "config file",
        source,
    })?;
    load_config_str(&text, path)
}

/// Validates config text as if read from `origin`: relative paths resolve against `origin`'s
/// directory, and messages name `origin`. Tests use it without writing files.
pub fn load_config_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let src = Source { origin, text };
    let raw: RawConfig = src.read()?;
    let base = origin
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let devices_dir = match &raw.devices_dir {
        Some(d) => Some(resolve_dir(&src, base, d, "devices_dir")?),
        None => None,
    };
    let profiles = load_profiles(devices_dir.as_deref())?;
    let presets_dir = match &raw.presets_dir {
        Some(d) => Some(resolve_dir(&src, base, d, "presets_dir")?),
        None => None,
    };
    let presets = load_presets(presets_dir.as_deref())?;
    let mut cfg = validate_config(&src, base, &raw, &profiles)?;
    validate_alarm_parts(&src, &raw, &mut cfg, presets)?;
    validate_api(&src, base, &raw, &mut cfg)?;
    Ok(cfg)
}

/// The alarm-limit presets shipped in `config/presets/`, embedded so a deployed binary needs no
/// repository.
pub const BUILTIN_PRESETS: &[(&str, &str)] = &[(
    "ketamine-session",
    include_str!("../../config/presets/ketamine-session.toml"),
)];

/// The preset a recliner gets when it names none.
pub const DEFAULT_PRESET: &str = "ketamine-session";

/// Loads the built-in presets, then every `*.toml` of `dir` (adding or replacing by file stem).
pub fn load_presets(
    dir: Option<&Path>,
) -> Result<BTreeMap<String, crate::model::BedLimits>, ConfigError> {
    let mut out = BTreeMap::new();
    let parse = |name: &str, text: &str, origin: &Path| {
        crate::model::parse_limits(text).map_err(|e| ConfigError::Invalid {
            path: origin.to_path_buf(),
            line: 1,
            column: 1,
            key: "rule".to_owned(),
            message: format!("preset {name:?}: {e}"),
        })
    };
    for (name, text) in BUILTIN_PRESETS {
        let origin = PathBuf::from(format!("config/presets/{name}.toml"));
        out.insert((*name).to_owned(), parse(name, text, &origin)?);
    }
    if let Some(dir) = dir {
        let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Io {
            path: dir.to_path_buf(),
            what: "presets directory",
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
                path: path.clone(),
                what: "preset file",
                source,
            })?;
            let limits = parse(&name, &text, &path)?;
            out.insert(name, limits);
        }
    }
    Ok(out)
}

/// Users, `[alarms]`, `[[notify]]` and each recliner's preset.
fn validate_alarm_parts(
    src: &Source<'_>,
    raw: &RawConfig,
    cfg: &mut Config,
    presets: BTreeMap<String, crate::model::BedLimits>,
) -> Result<(), ConfigError> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut tokens: HashMap<[u8; 32], usize> = HashMap::new();
    for (i, u) in raw.users.iter().enumerate() {
        let key = format!("users[{i}]");
        let u = u.get_ref();
        let name = check_id(src, &u.name, &format!("{key}.name"))?;
        let line = line_col(src.text, u.name.span().start).0;
        if let Some(first) = names.insert(name.clone(), line) {
            return Err(src.err(
                u.name.span(),
                format!("{key}.name"),
                format!("duplicate user {name:?} (first on line {first}), expected a unique name"),
            ));
        }
        let role = match u.role.get_ref().as_str() {
            "viewer" => Role::Viewer,
            "nurse" => Role::Nurse,
            "admin" => Role::Admin,
            other => {
                return Err(src.err(
                    u.role.span(),
                    format!("{key}.role"),
                    format!("unknown role {other:?}, expected one of: viewer, nurse, admin"),
                ));
            }
        };
        let (token, token_sha256, span, token_key) = match (&u.token, &u.token_sha256) {
            (Some(t), None) => {
                let token = t.get_ref().clone();
                if !super::token_is_valid(&token) {
                    return Err(src.err(
                        t.span(),
                        format!("{key}.token"),
                        "token too short or has spaces, expected at least 16 characters without spaces"
                            .to_owned(),
                    ));
                }
                let hash = super::token_sha256(&token);
                (Some(token), hash, t.span(), format!("{key}.token"))
            }
            (None, Some(h)) => {
                let text = h.get_ref();
                let hash = hex::decode(text)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        src.err(
                            h.span(),
                            format!("{key}.token_sha256"),
                            format!(
                                "token_sha256 {text:?} is not a SHA-256 in hex, expected 64 hex digits (as printed by `vitalsd hash-token`)"
                            ),
                        )
                    })?;
                (None, hash, h.span(), format!("{key}.token_sha256"))
            }
            (Some(t), Some(_)) => {
                return Err(src.err(
                    t.span(),
                    format!("{key}.token"),
                    "both token and token_sha256, expected one of them".to_owned(),
                ));
            }
            (None, None) => {
                return Err(src.err(
                    u.name.span(),
                    format!("{key}.token"),
                    "no token, expected token = \"...\" or token_sha256 = \"...\" (from `vitalsd hash-token`)"
                        .to_owned(),
                ));
            }
        };
        if let Some(first) = tokens.insert(token_sha256, line) {
            return Err(src.err(
                span,
                token_key,
                format!("the same token as the user on line {first}, expected a unique token"),
            ));
        }
        cfg.users.push(User {
            name,
            role,
            token,
            token_sha256,
        });
    }
    if cfg.users.is_empty() && !cfg.listen.ip().is_loopback() {
        let span = raw.listen.as_ref().map(|l| l.span()).unwrap_or(0..0);
        return Err(src.err(
            span,
            "listen",
            format!(
                "listening on {} without [[users]], expected at least one [[users]] table (tokens) when not on loopback",
                cfg.listen
            ),
        ));
    }
    if let Some(a) = &raw.alarms {
        let a = a.get_ref();
        let d = |v: &Option<Spanned<String>>,
                 key: &str,
                 min: (Duration, &str),
                 max: (Duration, &str),
                 dflt: Duration|
         -> Result<Duration, ConfigError> {
            match v {
                Some(v) => check_duration(
                    src,
                    v,
                    &format!("alarms.{key}"),
                    (min.0, max.0, min.1, max.1),
                ),
                None => Ok(dflt),
            }
        };
        let s = &mut cfg.alarms;
        s.dashboard_timeout = d(
            &a.dashboard_timeout,
            "dashboard_timeout",
            (Duration::from_secs(5), "5s"),
            (Duration::from_secs(600), "10m"),
            s.dashboard_timeout,
        )?;
        validate_escalation(src, a, &mut s.policy.escalation)?;
        if let Some(b) = &a.pause_breakthrough {
            s.policy.audio.breakthrough = match b.get_ref().as_str() {
                "high" => crate::model::Breakthrough::High,
                "medium" => crate::model::Breakthrough::Medium,
                "all" => crate::model::Breakthrough::All,
                other => {
                    return Err(src.err(
                        b.span(),
                        "alarms.pause_breakthrough",
                        format!("unknown value {other:?}, expected one of: high, medium, all"),
                    ));
                }
            };
        }
        let au = &mut s.policy.audio;
        au.max_pause = d(
            &a.audio_pause_max,
            "audio_pause_max",
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(600), "10m"),
            au.max_pause,
        )?;
        au.default_pause = d(
            &a.audio_pause,
            "audio_pause",
            (Duration::from_secs(10), "10s"),
            (au.max_pause, "audio_pause_max"),
            au.default_pause.min(au.max_pause),
        )?;
        // Added to the bed's bp_interval before `nibp_overdue`: long enough for a cuff's
        // own retry after an artifact, short enough that a cuff that stopped measuring shows.
        s.policy.nibp_grace = d(
            &a.nibp_overdue_grace,
            "nibp_overdue_grace",
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(1800), "30m"),
            s.policy.nibp_grace,
        )?;
    }
    let mut target_names: HashMap<String, usize> = HashMap::new();
    for (i, n) in raw.notify.iter().enumerate() {
        let key = format!("notify[{i}]");
        let n = n.get_ref();
        let name = check_id(src, &n.name, &format!("{key}.name"))?;
        let line = line_col(src.text, n.name.span().start).0;
        if let Some(first) = target_names.insert(name.clone(), line) {
            return Err(src.err(
                n.name.span(),
                format!("{key}.name"),
                format!(
                    "duplicate target {name:?} (first on line {first}), expected a unique name"
                ),
            ));
        }
        let url = n.url.get_ref().trim().to_owned();
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        if !scheme_ok || url.len() < 10 {
            return Err(src.err(
                n.url.span(),
                format!("{key}.url"),
                format!(
                    "{url:?} is not a web address, expected http://host/path or https://host/path"
                ),
            ));
        }
        let level = n.level.as_ref().map(|l| *l.get_ref()).unwrap_or(0);
        if level > 9 {
            let span = n.level.as_ref().map(|l| l.span()).unwrap_or(0..0);
            return Err(src.err(
                span,
                format!("{key}.level"),
                format!("{level} is out of range, expected 0 to 9"),
            ));
        }
        let timeout = match &n.timeout {
            Some(t) => check_duration(
                src,
                t,
                &format!("{key}.timeout"),
                (
                    Duration::from_millis(100),
                    Duration::from_secs(60),
                    "100ms",
                    "60s",
                ),
            )?,
            None => Duration::from_secs(5),
        };
        cfg.notify.push(NotifyTarget {
            name,
            url,
            level,
            timeout,
        });
    }
    // Each recliner's preset must exist.
    let mut bed = 0usize;
    for (ri, room) in raw.rooms.iter().enumerate() {
        for (ci, rec) in room.get_ref().recliners.iter().enumerate() {
            if let Some(p) = &rec.get_ref().preset {
                let name = p.get_ref();
                if !presets.contains_key(name) {
                    return Err(src.err(
                        p.span(),
                        format!("rooms[{ri}].recliners[{ci}].preset"),
                        format!(
                            "unknown preset {name:?}, expected one of: {}",
                            join_names(presets.keys().map(String::as_str))
                        ),
                    ));
                }
                if let Some(b) = cfg.beds.get_mut(bed) {
                    b.preset = name.clone();
                }
            }
            bed += 1;
        }
    }
    cfg.presets = presets;
    if let Some(st) = &raw.storage
        && let Some(r) = &st.get_ref().retention
    {
        cfg.retention = Some(check_duration(
            src,
            r,
            "storage.retention",
            (
                Duration::from_secs(86_400),
                Duration::from_secs(100 * 365 * 86_400),
                "1d",
                "100 years",
            ),
        )?);
    }
    validate_mqtt(src, raw, cfg)?;
    Ok(())
}

/// The `[mqtt]` table.
fn validate_mqtt(src: &Source<'_>, raw: &RawConfig, cfg: &mut Config) -> Result<(), ConfigError> {
    let Some(m) = &raw.mqtt else { return Ok(()) };
    let m = m.get_ref();
    let (host, port) =
        super::parse_mqtt_url(m.url.get_ref()).map_err(|e| src.err(m.url.span(), "mqtt.url", e))?;
    let site = m.site.get_ref().trim().to_owned();
    if !super::is_topic_level(&site) {
        return Err(src.err(
            m.site.span(),
            "mqtt.site",
            format!(
                "{site:?} is not a valid site name, expected 1 to 64 letters, digits, '-' or '_' (it is a topic level)"
            ),
        ));
    }
    let client_id = match &m.client_id {
        Some(c) if super::is_topic_level(c.get_ref()) => c.get_ref().clone(),
        Some(c) => {
            return Err(src.err(
                c.span(),
                "mqtt.client_id",
                format!(
                    "{:?} is not a valid client id, expected 1 to 64 letters, digits, '-' or '_'",
                    c.get_ref()
                ),
            ));
        }
        None => format!("vitalsd-{site}"),
    };
    let text = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<String>, ConfigError> {
        v.as_ref()
            .map(|v| check_text(src, v, &format!("mqtt.{key}")))
            .transpose()
    };
    let username = text(&m.username, "username")?;
    let password = text(&m.password, "password")?;
    if let (Some(p), None) = (&m.password, &username) {
        return Err(src.err(
            p.span(),
            "mqtt.password",
            "a password without a username, expected mqtt.username too".to_owned(),
        ));
    }
    let d =
        |v: &Option<Spanned<String>>, key: &str, dflt: Duration| -> Result<Duration, ConfigError> {
            match v {
                Some(v) => check_duration(
                    src,
                    v,
                    &format!("mqtt.{key}"),
                    (
                        Duration::from_secs(5),
                        Duration::from_secs(600),
                        "5s",
                        "10m",
                    ),
                ),
                None => Ok(dflt),
            }
        };
    cfg.mqtt = Some(super::MqttSettings {
        url: m.url.get_ref().trim().to_owned(),
        host,
        port,
        site,
        client_id,
        username,
        password,
        keepalive: d(
            &m.keepalive,
            "keepalive",
            super::mqtt::DEFAULT_MQTT_KEEPALIVE,
        )?,
        down_after: d(
            &m.down_after,
            "down_after",
            super::mqtt::DEFAULT_MQTT_DOWN_AFTER,
        )?,
    });
    Ok(())
}

/// The `[api]` and `[tls]` tables, and the rule that a non-loopback listener serves TLS.
fn validate_api(
    src: &Source<'_>,
    base: &Path,
    raw: &RawConfig,
    cfg: &mut Config,
) -> Result<(), ConfigError> {
    if let Some(a) = &raw.api {
        let a = a.get_ref();
        for (i, h) in a.allowed_hosts.iter().enumerate() {
            let host = h.get_ref().trim().to_ascii_lowercase();
            let ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
                && (host.starts_with('[') || !host.contains(':'));
            if !ok {
                return Err(src.err(
                    h.span(),
                    format!("api.allowed_hosts[{i}]"),
                    format!(
                        "{:?} is not a host name, expected a name or address without scheme or port such as \"station.clinic.lan\"",
                        h.get_ref()
                    ),
                ));
            }
            cfg.api.allowed_hosts.push(host);
        }
        for (i, o) in a.allowed_origins.iter().enumerate() {
            let origin = o
                .get_ref()
                .trim()
                .trim_end_matches('/')
                .to_ascii_lowercase();
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains('/')) {
                return Err(src.err(
                    o.span(),
                    format!("api.allowed_origins[{i}]"),
                    format!(
                        "{:?} is not an origin, expected scheme://host[:port] such as \"https://station.clinic.lan:8443\"",
                        o.get_ref()
                    ),
                ));
            }
            cfg.api.allowed_origins.push(origin);
        }
        let count = |v: &Option<Spanned<i64>>, key: &str, min: i64, max: i64| match v {
            None => Ok(None),
            Some(n) if (min..=max).contains(n.get_ref()) => Ok(usize::try_from(*n.get_ref()).ok()),
            Some(n) => Err(src.err(
                n.span(),
                key,
                format!("{} is out of range, expected {min} to {max}", n.get_ref()),
            )),
        };
        if let Some(n) = count(&a.max_connections, "api.max_connections", 8, 100_000)? {
            cfg.api.max_connections = n;
        }
        if let Some(n) = count(&a.max_body, "api.max_body", 1024, 64 * 1024 * 1024)? {
            cfg.api.max_body = n;
        }
        let secs = |min: u64, max: u64, min_t: &'static str, max_t: &'static str| {
            (
                Duration::from_secs(min),
                Duration::from_secs(max),
                min_t,
                max_t,
            )
        };
        if let Some(t) = &a.header_timeout {
            cfg.api.header_timeout =
                check_duration(src, t, "api.header_timeout", secs(1, 600, "1s", "10m"))?;
        }
        if let Some(t) = &a.request_timeout {
            cfg.api.request_timeout =
                check_duration(src, t, "api.request_timeout", secs(1, 3600, "1s", "1h"))?;
        }
        cfg.api.insecure_allow_plaintext = a.insecure_allow_plaintext.unwrap_or(false);
    }
    if let Some(t) = &raw.tls {
        let t = t.get_ref();
        cfg.tls = Some(crate::config::TlsSettings {
            cert: resolve_file(src, base, &t.cert, "tls.cert")?,
            key: resolve_file(src, base, &t.key, "tls.key")?,
        });
    }
    if cfg.tls.is_none() && !cfg.listen.ip().is_loopback() && !cfg.api.insecure_allow_plaintext {
        let span = raw.listen.as_ref().map(|l| l.span()).unwrap_or(0..0);
        return Err(src.err(
            span,
            "listen",
            format!(
                "listening on {} without TLS, expected a [tls] table (cert and key) when not on loopback, so tokens never travel in clear (or [api] insecure_allow_plaintext = true, for a lab only)",
                cfg.listen
            ),
        ));
    }
    Ok(())
}

/// `[alarms] page_interval`, the `renotify_every` / `escalate_after` shorthands and the
/// `[alarms.escalation.<priority>]` tables.
fn validate_escalation(
    src: &Source<'_>,
    a: &super::raw::RawAlarms,
    e: &mut crate::model::EscalationPolicy,
) -> Result<(), ConfigError> {
    const TEN_S: (Duration, &str) = (Duration::from_secs(10), "10s");
    const HOUR: (Duration, &str) = (Duration::from_secs(3600), "1h");
    // A duration in 10s..1h, or "never".
    let every = |v: &Spanned<String>, key: &str| -> Result<Option<Duration>, ConfigError> {
        if v.get_ref().trim() == "never" {
            return Ok(None);
        }
        check_duration(src, v, key, (TEN_S.0, HOUR.0, TEN_S.1, HOUR.1))
            .map(Some)
            .map_err(|err| match err {
                ConfigError::Invalid {
                    path,
                    line,
                    column,
                    key,
                    message,
                } => ConfigError::Invalid {
                    path,
                    line,
                    column,
                    key,
                    message: format!("{message} (or \"never\")"),
                },
                other => other,
            })
    };
    if let Some(v) = &a.page_interval {
        e.page_interval = check_duration(
            src,
            v,
            "alarms.page_interval",
            (Duration::ZERO, Duration::from_secs(600), "0s", "10m"),
        )?;
    }
    if let Some(v) = &a.renotify_every {
        e.high.renotify_every = every(v, "alarms.renotify_every")?;
    }
    if let Some(v) = &a.escalate_after {
        e.high.escalate_after = every(v, "alarms.escalate_after")?;
    }
    let Some(esc) = &a.escalation else {
        return Ok(());
    };
    let esc = esc.get_ref();
    let tables = [
        ("high", &esc.high, &mut e.high),
        ("medium", &esc.medium, &mut e.medium),
        ("low", &esc.low, &mut e.low),
    ];
    for (name, raw, p) in tables {
        let Some(raw) = raw else { continue };
        let raw = raw.get_ref();
        let key = format!("alarms.escalation.{name}");
        if let Some(n) = &raw.notify {
            p.notify = *n.get_ref();
        }
        if let Some(v) = &raw.renotify_every {
            if name == "high" && a.renotify_every.is_some() {
                return Err(src.err(
                    v.span(),
                    format!("{key}.renotify_every"),
                    "set twice (also as [alarms] renotify_every), expected it once".to_owned(),
                ));
            }
            p.renotify_every = every(v, &format!("{key}.renotify_every"))?;
        }
        if let Some(v) = &raw.escalate_after {
            if name == "high" && a.escalate_after.is_some() {
                return Err(src.err(
                    v.span(),
                    format!("{key}.escalate_after"),
                    "set twice (also as [alarms] escalate_after), expected it once".to_owned(),
                ));
            }
            p.escalate_after = every(v, &format!("{key}.escalate_after"))?;
        }
        if let Some(l) = &raw.levels {
            let levels = *l.get_ref();
            if !(1..=10).contains(&levels) {
                return Err(src.err(
                    l.span(),
                    format!("{key}.levels"),
                    format!("{levels} is out of range, expected 1 to 10"),
                ));
            }
            p.levels = levels;
        }
    }
    Ok(())
}

/// A PEM file path: resolved against the config's directory, and readable.
fn resolve_file(
    src: &Source<'_>,
    base: &Path,
    s: &Spanned<String>,
    key: &str,
) -> Result<PathBuf, ConfigError> {
    let path = resolve_dir(src, base, s, key)?;
    if let Err(e) = std::fs::metadata(&path) {
        return Err(src.err(
            s.span(),
            key,
            format!("cannot read {}: {e}, expected a PEM file", path.display()),
        ));
    }
    Ok(path)
}

fn resolve_dir(
    src: &Source<'_>,
    base: &Path,
    s: &Spanned<String>,
    key: &str,
) -> Result<PathBuf, ConfigError> {
    if s.get_ref().trim().is_empty() {
        return Err(src.err(
            s.span(),
            key,
            format!("{:?} is empty, expected a directory path", s.get_ref()),
        ));
    }
    Ok(resolve(base, s.get_ref()))
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Who already holds an id or endpoint, for "duplicate" messages.
struct Taken {
    what: String,
    line: usize,
}

fn validate_config(
    src: &Source<'_>,
    base: &Path,
    raw: &RawConfig,
    profiles: &BTreeMap<String, Arc<Profile>>,
) -> Result<Config, ConfigError> {
    let listen = match &raw.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        Some(l) => l.get_ref().trim().parse::<SocketAddr>().map_err(|_| {
            src.err(
                l.span(),
                "listen",
                format!(
                    "{:?} is not a socket address, expected an IP address and port such as \"{DEFAULT_LISTEN}\"",
                    l.get_ref()
                ),
            )
        })?,
    };
    let data_dir = resolve_dir(src, base, &raw.data_dir, "data_dir")?;
    if raw.rooms.is_empty() {
        return Err(src.err(
            0..0,
            "rooms",
            "no rooms, expected at least one [[rooms]] table".to_owned(),
        ));
    }
    let mut cfg = Config {
        source: src.origin.to_path_buf(),
        listen,
        data_dir,
        rooms: Vec::new(),
        beds: Vec::new(),
        devices: Vec::new(),
        users: Vec::new(),
        alarms: AlarmSettings::default(),
        notify: Vec::new(),
        presets: BTreeMap::new(),
        retention: None,
        api: crate::config::ApiSettings::default(),
        tls: None,
        mqtt: None,
    };
    let mut room_ids: HashMap<String, usize> = HashMap::new();
    let mut device_ids: HashMap<String, usize> = HashMap::new();
    let mut endpoints: HashMap<String, Taken> = HashMap::new();
    for (ri, room) in raw.rooms.iter().enumerate() {
        let key = format!("rooms[{ri}]");
        validate_room(
            src,
            base,
            &key,
            room,
            profiles,
            &mut cfg,
            &mut room_ids,
            &mut device_ids,
            &mut endpoints,
        )?;
    }
    Ok(cfg)
}

#[allow(clippy::too_many_arguments)]
fn validate_room(
    src: &Source<'_>,
    base: &Path,
    key: &str,
    room: &Spanned<RawRoom>,
    profiles: &BTreeMap<String, Arc<Profile>>,
    cfg: &mut Config,
    room_ids: &mut HashMap<String, usize>,
    device_ids: &mut HashMap<String, usize>,
    endpoints: &mut HashMap<String, Taken>,
) -> Result<(), ConfigError> {
    let raw = room.get_ref();
    let id_key = format!("{key}.id");
    let id = check_id(src, &raw.id, &id_key)?;
    let line = line_col(src.text, raw.id.span().start).0;
    if let Some(first) = room_ids.insert(id.clone(), line) {
        return Err(src.err(
            raw.id.span(),
            id_key,
            format!("duplicate room id {id:?} (first used on line {first}), expected a unique id"),
        ));
    }
    let name = check_text(src, &raw.name, &format!("{key}.name"))?;
    if raw.recliners.is_empty() {
        return Err(src.err(
            room.span(),
            format!("{key}.recliners"),
            format!(
                "room {id:?} has no recliners, expected at least one [[rooms.recliners]] table"
            ),
        ));
    }
    let room_idx = cfg.rooms.len();
    let mut beds = Vec::new();
    let mut recliner_ids: HashMap<String, usize> = HashMap::new();
    for (ci, rec) in raw.recliners.iter().enumerate() {
        let rkey = format!("{key}.recliners[{ci}]");
        let bed = validate_recliner(
            src,
            base,
            &rkey,
            rec,
            (room_idx, &id, &name),
            profiles,
            cfg,
            &mut recliner_ids,
            device_ids,
            endpoints,
        )?;
        beds.push(bed);
    }
    cfg.rooms.push(Room { id, name, beds });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn validate_recliner(
    src: &Source<'_>,
    base: &Path,
    key: &str,
    rec: &Spanned<RawRecliner>,
    (room_idx, room_id, room_name): (usize, &str, &str),
    profiles: &BTreeMap<String, Arc<Profile>>,
    cfg: &mut Config,
    recliner_ids: &mut HashMap<String, usize>,
    device_ids: &mut HashMap<String, usize>,
    endpoints: &mut HashMap<String, Taken>,
) -> Result<BedIdx, ConfigError> {
    let raw: &RawRecliner = rec.get_ref();
    let id_key = format!("{key}.id");
    let id = check_id(src, &raw.id, &id_key)?;
    let line = line_col(src.text, raw.id.span().start).0;
    if let Some(first) = recliner_ids.insert(id.clone(), line) {
        return Err(src.err(
            raw.id.span(),
            id_key,
            format!(
                "duplicate recliner id {id:?} in room {room_id:?} (first used on line {first}), expected a unique id within the room"
            ),
        ));
    }
    let label = match &raw.label {
        Some(l) => check_text(src, l, &format!("{key}.label"))?,
        None => format!("{room_name} / {id}"),
    };
    let bp_interval = match &raw.bp_interval {
        Some(b) => check_duration(
            src,
            b,
            &format!("{key}.bp_interval"),
            (MIN_BP_INTERVAL, MAX_BP_INTERVAL, "5s", "24h"),
        )?,
        None => DEFAULT_BP_INTERVAL,
    };
    if raw.devices.is_empty() {
        return Err(src.err(
            rec.span(),
            format!("{key}.devices"),
            format!(
                "recliner {id:?} has no devices, expected at least one [[rooms.recliners.devices]] table"
            ),
        ));
    }
    let bed_idx = BedIdx(u16::try_from(cfg.beds.len()).map_err(|_| {
        src.err(
            raw.id.span(),
            key,
            format!("too many recliners, expected at most {}", u16::MAX),
        )
    })?);
    let mut devices = Vec::new();
    for (di, dev) in raw.devices.iter().enumerate() {
        let dkey = format!("{key}.devices[{di}]");
        let binding = validate_device(
            src, base, &dkey, dev, bed_idx, profiles, device_ids, endpoints,
        )?;
        let dev_idx = DeviceIdx(u16::try_from(cfg.devices.len()).map_err(|_| {
            src.err(
                dev.span(),
                dkey.as_str(),
                format!("too many devices, expected at most {}", u16::MAX),
            )
        })?);
        cfg.devices.push(binding);
        devices.push(dev_idx);
    }
    cfg.beds.push(Bed {
        id: format!("{room_id}/{id}"),
        recliner: id,
        room: room_idx,
        label,
        bp_interval,
        devices,
        preset: DEFAULT_PRESET.to_owned(),
    });
    Ok(bed_idx)
}

#[allow(clippy::too_many_arguments)]
fn validate_device(
    src: &Source<'_>,
    base: &Path,
    key: &str,
    dev: &Spanned<RawDevice>,
    bed: BedIdx,
    profiles: &BTreeMap<String, Arc<Profile>>,
    device_ids: &mut HashMap<String, usize>,
    endpoints: &mut HashMap<String, Taken>,
) -> Result<Binding, ConfigError> {
    let raw: &RawDevice = dev.get_ref();
    let id_key = format!("{key}.id");
    let id = check_id(src, &raw.id, &id_key)?;
    let line = line_col(src.text, raw.id.span().start).0;
    if let Some(first) = device_ids.insert(id.clone(), line) {
        return Err(src.err(
            raw.id.span(),
            id_key,
            format!(
                "duplicate device id {id:?} (first used on line {first}), expected an id unique across all rooms"
            ),
        ));
    }
    let Some(profile) = profiles.get(raw.profile.get_ref()) else {
        return Err(src.err(
            raw.profile.span(),
            format!("{key}.profile"),
            format!(
                "unknown profile {:?}, expected one of: {}",
                raw.profile.get_ref(),
                join_names(profiles.keys().map(String::as_str))
            ),
        ));
    };
    let given: Vec<(&str, &Spanned<String>)> = [
        ("port", &raw.port),
        ("tcp", &raw.tcp),
        ("address", &raw.address),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    if given.len() > 1 {
        let (second, v) = given[1];
        return Err(src.err(
            v.span(),
            format!("{key}.{second}"),
            format!(
                "device {id:?} has both {} and {second}, expected exactly one of them (port, tcp or address)",
                given[0].0
            ),
        ));
    }
    if let Some(name) = &raw.name
        && raw.address.is_none()
    {
        return Err(src.err(
            name.span(),
            format!("{key}.name"),
            format!(
                "device {id:?} has a name pattern but no address, expected name only with a BLE address"
            ),
        ));
    }
    let is_ble = profile.transport == TransportKind::Ble;
    if let Some((k, v)) = given.first()
        && (*k == "address") != is_ble
    {
        let message = if is_ble {
            format!(
                "profile {:?} is a Bluetooth LE device, expected address = \"AA:BB:CC:DD:EE:FF\" instead of {k}",
                profile.name
            )
        } else {
            format!(
                "profile {:?} is a serial device, expected port = \"/dev/...\" or tcp = \"host:port\" instead of address",
                profile.name
            )
        };
        return Err(src.err(v.span(), format!("{key}.{k}"), message));
    }
    let (endpoint, span, ep_key, taken_key, shown) = match (&raw.port, &raw.tcp, &raw.address) {
        (_, _, Some(address)) => {
            let ep_key = format!("{key}.address");
            let Some(norm) = normalize_address(address.get_ref()) else {
                return Err(src.err(
                    address.span(),
                    ep_key,
                    format!(
                        "{:?} is not a Bluetooth address, expected six hex pairs separated by colons such as \"00:1C:05:FF:4E:2A\"",
                        address.get_ref()
                    ),
                ));
            };
            let name = match &raw.name {
                Some(n) => Some(check_text(src, n, &format!("{key}.name"))?),
                None => None,
            };
            let taken_key = vec![format!("ble {norm}")];
            let shown = format!("Bluetooth address {norm:?}");
            (
                Endpoint::Ble {
                    address: norm,
                    name,
                },
                address.span(),
                ep_key,
                taken_key,
                shown,
            )
        }
        (Some(_), Some(tcp), None) => {
            return Err(src.err(
                tcp.span(),
                format!("{key}.tcp"),
                format!("device {id:?} has both port and tcp, expected exactly one of them"),
            ));
        }
        (None, None, None) => {
            let message = if is_ble {
                format!(
                    "device {id:?} has no address, expected address = \"AA:BB:CC:DD:EE:FF\" (profile {:?} is Bluetooth LE)",
                    profile.name
                )
            } else {
                format!(
                    "device {id:?} has neither port nor tcp, expected exactly one of port = \"/dev/...\" or tcp = \"host:port\""
                )
            };
            return Err(src.err(dev.span(), key, message));
        }
        (Some(port), None, None) => {
            let ep_key = format!("{key}.port");
            if port.get_ref().trim().is_empty() {
                return Err(src.err(
                    port.span(),
                    ep_key,
                    format!(
                        "{:?} is empty, expected a serial port path such as \"/dev/ttyUSB0\"",
                        port.get_ref()
                    ),
                ));
            }
            let path = resolve(base, port.get_ref());
            // Two names for one port (a /dev/serial/by-id link and its /dev/ttyUSB target) are
            // the same port: compare the targets when they exist now.
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            let taken_key = vec![format!("serial {}", canonical.display())];
            let shown = format!("serial port {:?}", port.get_ref());
            (
                Endpoint::Serial { path },
                port.span(),
                ep_key,
                taken_key,
                shown,
            )
        }
        (None, Some(tcp), None) => {
            let ep_key = format!("{key}.tcp");
            let addr = tcp.get_ref().trim();
            if !check_tcp(addr) {
                return Err(src.err(
                    tcp.span(),
                    ep_key,
                    format!(
                        "{:?} is not host:port, expected a host and a port 1..65535 such as \"192.168.10.21:4001\"",
                        tcp.get_ref()
                    ),
                ));
            }
            let taken_key = tcp_keys(addr);
            let shown = format!("tcp address {addr:?}");
            (
                Endpoint::Tcp {
                    addr: addr.to_owned(),
                },
                tcp.span(),
                ep_key,
                taken_key,
                shown,
            )
        }
    };
    let line = line_col(src.text, span.start).0;
    if let Some(first) = taken_key.iter().find_map(|k| endpoints.get(k)) {
        return Err(src.err(
            span,
            ep_key,
            format!(
                "{shown} of device {id:?} is already bound to {} at {}:{}, expected each port or device server bound to one device (addresses are compared after resolving names, every loopback address is this host)",
                first.what,
                src.origin.display(),
                first.line
            ),
        ));
    }
    for k in taken_key {
        endpoints.insert(
            k,
            Taken {
                what: format!("device {id:?} ({key})"),
                line,
            },
        );
    }
    Ok(Binding {
        id,
        bed,
        profile: Arc::clone(profile),
        endpoint,
        simulated: dev.get_ref().simulated,
    })
}

/// `AA:BB:CC:DD:EE:FF` in upper case, or None if `s` is not six hex pairs joined by colons.
pub fn normalize_address(s: &str) -> Option<String> {
    let t = s.trim();
    let parts: Vec<&str> = t.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| t.to_ascii_uppercase())
}

/// One message per bound serial port that does not exist right now. `check-config` reports these
/// as errors; `run` only logs them as warnings and keeps retrying the port, so that one unplugged
/// adapter does not stop the monitoring of every other bed (docs/configuration.md).
pub fn absent_ports(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for dev in &cfg.devices {
        if let Endpoint::Serial { path } = &dev.endpoint
            && !path.exists()
        {
            let bed = cfg
                .beds
                .get(usize::from(dev.bed.0))
                .map_or("?", |b| b.id.as_str());
            out.push(format!(
                "{}: device {:?} of bed {bed}: serial port {} does not exist",
                cfg.source.display(),
                dev.id,
                path.display()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid config; the bad-config table edits one line of it. Line numbers matter.
    const BASE: &str = r#"listen = "127.0.0.1:8080"
data_dir = "data"

[[rooms]]
id = "room1"
name = "Room 1"

[[rooms.recliners]]
id = "A"
bp_interval = "5m"

[[rooms.recliners.devices]]
id = "room1-A-oximeter"
profile = "masimo-rad8"
port = "/dev/ttyUSB0"

[[rooms.recliners.devices]]
id = "room1-A-nibp"
profile = "suntech-advantage"
tcp = "192.168.10.21:4001"

[[rooms.recliners]]
id = "B"

[[rooms.recliners.devices]]
id = "room1-B-oximeter"
profile = "nonin-oem3"
port = "/dev/ttyUSB1"
"#;

    fn origin() -> &'static Path {
        Path::new("config/test.toml")
    }

    fn edited(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "{from}");
        BASE.replacen(from, to, 1)
    }

    #[test]
    fn the_shipped_profiles_and_configs_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let profiles = load_profiles(Some(&root.join("devices"))).unwrap();
        let names: Vec<&str> = profiles.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "berrymed-bm1000",
                "contec-cms50d-legacy",
                "contec-cms50d-v7",
                "generic-bls",
                "generic-hrs",
                "generic-plx",
                "masimo-rad8",
                "masimo-radical7",
                "nonin-3150-format8",
                "nonin-3230",
                "nonin-oem3",
                "nonin-oem3-format7",
                "suntech-advantage",
                "wellue-o2ring"
            ]
        );
        for p in profiles.values() {
            assert_eq!(
                p.ble.is_some(),
                p.transport == TransportKind::Ble,
                "{}",
                p.name
            );
        }
        let plx = profiles["generic-plx"].ble.as_ref().unwrap();
        assert_eq!(plx.service, parse_ble_uuid("1822").unwrap());
        assert_eq!(
            plx.characteristics[0],
            BleCharacteristic {
                uuid: parse_ble_uuid("00002a5f-0000-1000-8000-00805f9b34fb").unwrap(),
                protocol: "plx-continuous".to_owned(),
                mode: super::super::BleMode::Notify,
            }
        );
        assert_eq!(profiles["generic-plx"].protocol, "plx-continuous");
        let o2 = profiles["wellue-o2ring"].ble.as_ref().unwrap();
        let poll = o2.poll.as_ref().unwrap();
        assert_eq!(poll.command, [0xaa, 0x17, 0xe8, 0, 0, 0, 0, 0x1b]);
        assert_eq!(poll.every, Duration::from_secs(2));
        let rad8 = &profiles["masimo-rad8"];
        assert_eq!(rad8.protocol, "masimo-ascii");
        assert_eq!(rad8.expected_period, Duration::from_secs(1));
        assert_eq!(
            rad8.link,
            LinkSettings {
                baud: 9600,
                data_bits: 8,
                parity: super::super::Parity::None,
                stop_bits: 1,
                flow_control: super::super::FlowControl::None,
            }
        );
        assert_eq!(
            profiles["nonin-oem3"].metrics,
            [Metric::Spo2, Metric::PulseRate, Metric::Pleth]
        );
        let cuff = &profiles["suntech-advantage"];
        assert_eq!(cuff.kind, super::super::DeviceKind::Bp);
        assert_eq!(cuff.protocol, "suntech");
        assert_eq!(cuff.metrics.len(), 5);

        let real = load_config(&root.join("config/vitalsd.toml")).unwrap();
        assert_eq!(real.beds.len(), 2);
        assert_eq!(real.devices.len(), 4);
        assert!(
            real.devices
                .iter()
                .any(|d| matches!(d.endpoint, Endpoint::Tcp { .. }))
        );

        let demo = load_config(&root.join("config/demo.toml")).unwrap();
        assert_eq!(demo.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
        assert_eq!(demo.data_dir, root.join("config").join("../data/demo"));
        let ids: Vec<(&str, &str, String)> = demo
            .devices
            .iter()
            .map(|d| {
                (
                    d.id.as_str(),
                    d.profile.name.as_str(),
                    d.endpoint.to_string(),
                )
            })
            .collect();
        assert_eq!(
            ids,
            [
                (
                    "room1-A-oximeter",
                    "masimo-rad8",
                    "serial /tmp/vitalsd-demo/room1-A-oximeter".to_owned()
                ),
                (
                    "room1-A-nibp",
                    "suntech-advantage",
                    "tcp 127.0.0.1:4101".to_owned()
                ),
                (
                    "room1-A-hr",
                    "generic-hrs",
                    "ble 00:1C:05:A1:00:0A".to_owned()
                ),
                (
                    "room1-B-oximeter",
                    "generic-plx",
                    "ble 00:1C:05:B1:00:0B".to_owned()
                ),
                (
                    "room1-B-nibp",
                    "suntech-advantage",
                    "serial /tmp/vitalsd-demo/room1-B-nibp".to_owned()
                ),
            ]
        );
        assert!(
            demo.beds
                .iter()
                .all(|b| b.bp_interval == Duration::from_secs(60))
        );
    }

    #[test]
    fn every_file_in_devices_is_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("devices");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
            .collect();
        on_disk.sort();
        let built_in: Vec<String> = BUILTIN_PROFILES
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .collect();
        assert_eq!(on_disk, built_in);
        for (name, text) in BUILTIN_PROFILES {
            let on_disk = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("devices/{name}.toml")),
            )
            .unwrap();
            assert_eq!(&on_disk, text, "{name}");
        }
    }

    #[test]
    fn a_valid_config_is_flattened_in_config_order_with_defaults() {
        let cfg = load_config_str(BASE, origin()).unwrap();
        assert_eq!(cfg.source, origin());
        assert_eq!(cfg.data_dir, Path::new("config/data"));
        assert_eq!(cfg.rooms.len(), 1);
        assert_eq!(cfg.rooms[0].beds, [BedIdx(0), BedIdx(1)]);
        let a = cfg.bed(BedIdx(0));
        assert_eq!(
            (a.id.as_str(), a.recliner.as_str(), a.label.as_str(), a.room),
            ("room1/A", "A", "Room 1 / A", 0)
        );
        assert_eq!(a.devices, [DeviceIdx(0), DeviceIdx(1)]);
        let b = cfg.bed(BedIdx(1));
        assert_eq!(b.bp_interval, DEFAULT_BP_INTERVAL);
        assert_eq!(b.devices, [DeviceIdx(2)]);
        let nibp = cfg.device(DeviceIdx(1));
        assert_eq!(nibp.bed, BedIdx(0));
        assert_eq!(
            nibp.endpoint,
            Endpoint::Tcp {
                addr: "192.168.10.21:4001".to_owned()
            }
        );
        assert_eq!(cfg.device(DeviceIdx(2)).profile.name, "nonin-oem3");

        let no_listen = load_config_str(&edited("listen = \"127.0.0.1:8080\"\n", ""), origin());
        assert_eq!(
            no_listen.unwrap().listen,
            DEFAULT_LISTEN.parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn bad_configs_name_the_line_key_and_expectation() {
        // (what, replace, by, line, column, key, message fragments)
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a str,
            usize,
            usize,
            &'a str,
            &'a [&'a str],
        );
        let table: &[Case<'_>] = &[
            (
                "unknown key",
                "id = \"A\"\n",
                "id = \"A\"\nalarm = 1\n",
                10,
                1,
                "rooms[0].recliners[0].alarm",
                &["unknown field `alarm`", "expected one of `id`, `label`"],
            ),
            (
                "bad listen",
                "listen = \"127.0.0.1:8080\"",
                "listen = \"localhost:8080\"",
                1,
                10,
                "listen",
                &[
                    "\"localhost:8080\" is not a socket address",
                    "expected an IP address and port",
                ],
            ),
            (
                "bad id",
                "id = \"room1\"",
                "id = \"room 1\"",
                5,
                6,
                "rooms[0].id",
                &[
                    "\"room 1\" is not a valid id",
                    "expected 1 to 64 characters",
                ],
            ),
            (
                "duplicate device id",
                "id = \"room1-B-oximeter\"",
                "id = \"room1-A-oximeter\"",
                26,
                6,
                "rooms[0].recliners[1].devices[0].id",
                &[
                    "duplicate device id \"room1-A-oximeter\" (first used on line 13)",
                    "expected an id unique",
                ],
            ),
            (
                "both port and tcp",
                "port = \"/dev/ttyUSB0\"",
                "port = \"/dev/ttyUSB0\"\ntcp = \"10.0.0.1:4001\"",
                16,
                7,
                "rooms[0].recliners[0].devices[0].tcp",
                &["has both port and tcp", "expected exactly one of them"],
            ),
            (
                "neither port nor tcp",
                "tcp = \"192.168.10.21:4001\"",
                "",
                17,
                1,
                "rooms[0].recliners[0].devices[1]",
                &[
                    "\"room1-A-nibp\" has neither port nor tcp",
                    "expected exactly one of port",
                ],
            ),
            (
                "unknown profile",
                "profile = \"masimo-rad8\"",
                "profile = \"masimo-rad9\"",
                14,
                11,
                "rooms[0].recliners[0].devices[0].profile",
                &[
                    "unknown profile \"masimo-rad9\", expected one of: berrymed-bm1000, contec-cms50d-legacy, contec-cms50d-v7, generic-bls, generic-hrs, generic-plx, masimo-rad8, masimo-radical7, nonin-3150-format8, nonin-3230, nonin-oem3, nonin-oem3-format7, suntech-advantage, wellue-o2ring",
                ],
            ),
            (
                "bad duration",
                "bp_interval = \"5m\"",
                "bp_interval = \"5 minutes\"",
                10,
                15,
                "rooms[0].recliners[0].bp_interval",
                &["expected a duration such as", "\"5 minutes\""],
            ),
            (
                "duration out of range",
                "bp_interval = \"5m\"",
                "bp_interval = \"1s\"",
                10,
                15,
                "rooms[0].recliners[0].bp_interval",
                &["\"1s\" is out of range, expected a duration between 5s and 24h"],
            ),
            (
                "duplicate port",
                "port = \"/dev/ttyUSB1\"",
                "port = \"/dev/ttyUSB0\"",
                28,
                8,
                "rooms[0].recliners[1].devices[0].port",
                &[
                    "serial port \"/dev/ttyUSB0\" of device \"room1-B-oximeter\" is already bound to device \"room1-A-oximeter\" (rooms[0].recliners[0].devices[0]) at ",
                    ":15, expected each port or device server bound to one device",
                ],
            ),
            (
                "duplicate tcp address",
                "port = \"/dev/ttyUSB1\"",
                "tcp = \"192.168.10.21:4001\"",
                28,
                7,
                "rooms[0].recliners[1].devices[0].tcp",
                &[
                    "tcp address \"192.168.10.21:4001\" of device \"room1-B-oximeter\" is already bound to device \"room1-A-nibp\"",
                ],
            ),
            (
                "bad tcp",
                "tcp = \"192.168.10.21:4001\"",
                "tcp = \"192.168.10.21:0\"",
                20,
                7,
                "rooms[0].recliners[0].devices[1].tcp",
                &[
                    "\"192.168.10.21:0\" is not host:port",
                    "expected a host and a port 1..65535",
                ],
            ),
            (
                "tcp without a port",
                "tcp = \"192.168.10.21:4001\"",
                "tcp = \"192.168.10.21\"",
                20,
                7,
                "rooms[0].recliners[0].devices[1].tcp",
                &["is not host:port"],
            ),
            (
                "wrong type",
                "bp_interval = \"5m\"",
                "bp_interval = 300",
                10,
                15,
                "rooms[0].recliners[0].bp_interval",
                &["invalid type: integer `300`, expected a string"],
            ),
            (
                "missing key",
                "profile = \"nonin-oem3\"\n",
                "",
                25,
                1,
                "rooms[0].recliners[1].devices[0].profile",
                &["missing field `profile`", "expected this key to be set"],
            ),
            (
                "duplicate recliner",
                "id = \"B\"",
                "id = \"A\"",
                23,
                6,
                "rooms[0].recliners[1].id",
                &["duplicate recliner id \"A\" in room \"room1\" (first used on line 9)"],
            ),
            (
                "room without recliners",
                "[[rooms.recliners]]\nid = \"A\"",
                "[[rooms]]\nid = \"room2\"\nname = \"Room 2\"\n[[rooms.recliners]]\nid = \"A\"",
                4,
                1,
                "rooms[0].recliners",
                &["room \"room1\" has no recliners", "expected at least one"],
            ),
            (
                "recliner without devices",
                "[[rooms.recliners.devices]]\nid = \"room1-B-oximeter\"\nprofile = \"nonin-oem3\"\nport = \"/dev/ttyUSB1\"\n",
                "",
                22,
                1,
                "rooms[0].recliners[1].devices",
                &["recliner \"B\" has no devices", "expected at least one"],
            ),
            (
                "misspelt table",
                "[[rooms]]",
                "[[roms]]",
                4,
                3,
                "roms",
                &["unknown field `roms`"],
            ),
            (
                "syntax error",
                "name = \"Room 1\"",
                "name = \"Room 1",
                6,
                15,
                "",
                &["invalid basic string"],
            ),
        ];
        for (what, from, to, line, column, key, fragments) in table {
            let err = load_config_str(&edited(from, to), origin()).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("config/test.toml:{line}:{column}: ")),
                "{what}: {text}"
            );
            assert_eq!(err.key(), Some(*key), "{what}: {text}");
            for f in *fragments {
                assert!(text.contains(f), "{what}: {text:?} lacks {f:?}");
            }
        }
    }

    #[test]
    fn a_config_without_rooms_is_rejected() {
        let err = load_config_str("data_dir = \"d\"\n", origin()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config/test.toml:1:1: rooms: no rooms, expected at least one [[rooms]] table"
        );
    }

    #[test]
    fn the_error_display_has_file_line_column_key_and_message() {
        let err = load_config_str(
            &edited("profile = \"masimo-rad8\"", "profile = \"masimo-rad9\""),
            Path::new("config/vitalsd.toml"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "config/vitalsd.toml:14:11: rooms[0].recliners[0].devices[0].profile: unknown profile \"masimo-rad9\", expected one of: berrymed-bm1000, contec-cms50d-legacy, contec-cms50d-v7, generic-bls, generic-hrs, generic-plx, masimo-rad8, masimo-radical7, nonin-3150-format8, nonin-3230, nonin-oem3, nonin-oem3-format7, suntech-advantage, wellue-o2ring"
        );
    }

    const PROFILE: &str = r#"vendor = "Acme"
model = "Ox-1"
kind = "oximeter"
transport = "serial"
protocol = "masimo-ascii"
metrics = ["spo2", "pulse_rate"]
expected_period = "1s"
no_signal = "dashes"
[link]
baud = 9600
data_bits = 8
parity = "none"
stop_bits = 1
flow_control = "none"
"#;

    /// A valid BLE profile; the bad-BLE-profile table edits one line of it.
    const BLE_PROFILE: &str = r#"vendor = "Acme"
model = "Ring-1"
kind = "oximeter"
transport = "ble"
metrics = ["spo2", "pulse_rate"]
expected_period = "2s"
no_signal = "0xFF"
[ble]
service = "14839ac4-7d7e-415c-9a42-167340cf2339"
write = "8b00ace7-eb0b-49b0-bbe9-9aee0a26e1a3"
poll_command = "aa17e8000000001b"
poll_every = "2s"
[[ble.characteristics]]
uuid = "0734594a-a8e7-4b1a-a6b1-cd5243059a57"
protocol = "viatom-o2"
mode = "poll"
[[ble.characteristics]]
uuid = "2a19"
protocol = "battery"
mode = "read"
"#;

    #[test]
    fn ble_uuids_are_full_or_16_bit_sig_numbers() {
        let plx = uuid::Uuid::parse_str("00001822-0000-1000-8000-00805f9b34fb").unwrap();
        for s in [
            "1822",
            "0x1822",
            "0X1822",
            " 1822 ",
            "00001822-0000-1000-8000-00805F9B34FB",
        ] {
            assert_eq!(parse_ble_uuid(s), Some(plx), "{s:?}");
        }
        for s in [
            "",
            "182",
            "18220",
            "0x18g2",
            "49535343-fe7d-4ae5-8fa9",
            "hello",
        ] {
            assert_eq!(parse_ble_uuid(s), None, "{s:?}");
        }
    }

    #[test]
    fn bluetooth_addresses_are_six_hex_pairs_normalized_to_upper_case() {
        assert_eq!(
            normalize_address("00:1c:05:ff:4e:2a").as_deref(),
            Some("00:1C:05:FF:4E:2A")
        );
        for bad in [
            "00:1C:05:FF:4E",
            "00-1C-05-FF-4E-2A",
            "001C05FF4E2A",
            "00:1C:05:FF:4E:2G",
            "",
        ] {
            assert_eq!(normalize_address(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bad_ble_profiles_name_the_line_key_and_expectation() {
        let ok = load_profile("acme-ring1", BLE_PROFILE, Path::new("x.toml")).unwrap();
        assert_eq!(ok.protocol, "viatom-o2");
        assert_eq!(ok.ble.as_ref().unwrap().characteristics.len(), 2);
        let table: &[(&str, &str, usize, &str, &str)] = &[
            (
                "service = \"14839ac4-7d7e-415c-9a42-167340cf2339\"",
                "service = \"14839\"",
                9,
                "ble.service",
                "\"14839\" is not a UUID, expected a 16-bit SIG number",
            ),
            (
                "protocol = \"viatom-o2\"",
                "protocol = \"viatom\"",
                15,
                "ble.characteristics[0].protocol",
                "unknown protocol \"viatom\", expected one of:",
            ),
            (
                "mode = \"poll\"",
                "mode = \"stream\"",
                16,
                "ble.characteristics[0].mode",
                "unknown variant `stream`",
            ),
            (
                "poll_command = \"aa17e8000000001b\"",
                "poll_command = \"aa17e8zz\"",
                11,
                "ble.poll_command",
                "is not hex bytes",
            ),
            (
                "poll_every = \"2s\"",
                "poll_every = \"10ms\"",
                12,
                "ble.poll_every",
                "expected a duration between 200ms and 60s",
            ),
            (
                "write = \"8b00ace7-eb0b-49b0-bbe9-9aee0a26e1a3\"\n",
                "",
                8,
                "ble",
                "write, poll_command and poll_every go together",
            ),
            (
                "uuid = \"2a19\"",
                "uuid = \"0734594a-a8e7-4b1a-a6b1-cd5243059a57\"",
                18,
                "ble.characteristics[1].uuid",
                "is listed twice",
            ),
            (
                "transport = \"ble\"",
                "transport = \"ble\"\nprotocol = \"viatom-o2\"",
                5,
                "protocol",
                "a BLE profile names a protocol per characteristic",
            ),
            (
                "transport = \"ble\"",
                "transport = \"serial\"",
                4,
                "protocol",
                "a serial profile has no protocol",
            ),
        ];
        for (from, to, line, key, fragment) in table {
            assert!(BLE_PROFILE.contains(from), "{from}");
            let text = BLE_PROFILE.replacen(from, to, 1);
            let err = load_profile("acme-ring1", &text, Path::new("x.toml")).unwrap_err();
            let msg = err.to_string();
            assert_eq!(err.key(), Some(*key), "{msg}");
            assert_eq!(err.line(), Some(*line), "{msg}");
            assert!(msg.contains(fragment), "{msg:?} lacks {fragment:?}");
        }
        let no_ble = BLE_PROFILE.split("[ble]").next().unwrap().to_owned();
        let err = load_profile("acme-ring1", &no_ble, Path::new("x.toml")).unwrap_err();
        assert_eq!(err.key(), Some("ble"), "{err}");
        assert!(
            err.to_string().contains("a BLE profile has no [ble] table"),
            "{err}"
        );
    }

    #[test]
    fn ble_bindings_take_an_address_and_an_optional_name_pattern() {
        let ble = edited(
            "profile = \"nonin-oem3\"\nport = \"/dev/ttyUSB1\"",
            "profile = \"generic-plx\"\naddress = \"00:1c:05:ff:4e:2a\"\nname = \"PLX*\"",
        );
        let cfg = load_config_str(&ble, origin()).unwrap();
        assert_eq!(
            cfg.devices[2].endpoint,
            Endpoint::Ble {
                address: "00:1C:05:FF:4E:2A".to_owned(),
                name: Some("PLX*".to_owned()),
            }
        );
        assert_eq!(cfg.devices[2].endpoint.to_string(), "ble 00:1C:05:FF:4E:2A");
        let table: &[(&str, &str, usize, &str, &str)] = &[
            (
                "address = \"00:1c:05:ff:4e:2a\"",
                "address = \"00:1c:05:ff:4e\"",
                28,
                "rooms[0].recliners[1].devices[0].address",
                "is not a Bluetooth address, expected six hex pairs",
            ),
            (
                "address = \"00:1c:05:ff:4e:2a\"\nname = \"PLX*\"",
                "port = \"/dev/ttyUSB9\"",
                28,
                "rooms[0].recliners[1].devices[0].port",
                "is a Bluetooth LE device, expected address",
            ),
            (
                "profile = \"generic-plx\"",
                "profile = \"nonin-oem3\"",
                28,
                "rooms[0].recliners[1].devices[0].address",
                "is a serial device, expected port",
            ),
            (
                "address = \"00:1c:05:ff:4e:2a\"",
                "address = \"00:1c:05:ff:4e:2a\"\nport = \"/dev/ttyUSB9\"",
                28,
                "rooms[0].recliners[1].devices[0].address",
                "has both port and address, expected exactly one of them",
            ),
            (
                "address = \"00:1c:05:ff:4e:2a\"\n",
                "",
                28,
                "rooms[0].recliners[1].devices[0].name",
                "has a name pattern but no address",
            ),
        ];
        for (from, to, line, key, fragment) in table {
            assert!(ble.contains(from), "{from}");
            let text = ble.replacen(from, to, 1);
            let err = load_config_str(&text, origin()).unwrap_err();
            let msg = err.to_string();
            assert_eq!(err.key(), Some(*key), "{msg}");
            assert_eq!(err.line(), Some(*line), "{msg}");
            assert!(msg.contains(fragment), "{msg:?} lacks {fragment:?}");
        }
        // One device per address.
        let twice = ble.replace("/dev/ttyUSB0", "/dev/ttyUSB7").replacen(
            "profile = \"masimo-rad8\"\nport = \"/dev/ttyUSB7\"",
            "profile = \"generic-plx\"\naddress = \"00:1C:05:FF:4E:2A\"",
            1,
        );
        let err = load_config_str(&twice, origin()).unwrap_err();
        assert!(
            err.to_string()
                .contains("is already bound to device \"room1-A-oximeter\""),
            "{err}"
        );
    }

    #[test]
    fn bad_profiles_name_the_line_key_and_expectation() {
        let table: &[(&str, &str, usize, &str, &str)] = &[
            (
                "protocol = \"masimo-ascii\"",
                "protocol = \"masimo\"",
                5,
                "protocol",
                "unknown protocol \"masimo\", expected one of: masimo-ascii, nonin-format2, suntech",
            ),
            (
                "\"pulse_rate\"]",
                "\"pulse\"]",
                6,
                "metrics[1]",
                "unknown metric \"pulse\", expected one of: spo2, pulse_rate,",
            ),
            (
                "baud = 9600",
                "baud = 0",
                10,
                "link.baud",
                "expected a baud rate above 0",
            ),
            (
                "data_bits = 8",
                "data_bits = 9",
                11,
                "link.data_bits",
                "9 is out of range, expected 5 to 8",
            ),
            (
                "stop_bits = 1",
                "stop_bits = 3",
                13,
                "link.stop_bits",
                "3 is out of range, expected 1 or 2",
            ),
            (
                "parity = \"none\"",
                "parity = \"mark\"",
                12,
                "link.parity",
                "unknown variant `mark`, expected one of `none`, `odd`, `even`",
            ),
            (
                "kind = \"oximeter\"",
                "kind = \"ecg\"",
                3,
                "kind",
                "unknown variant `ecg`",
            ),
            (
                "expected_period = \"1s\"",
                "expected_period = \"1h\"",
                7,
                "expected_period",
                "expected a duration between 100ms and 10m",
            ),
            (
                "no_signal",
                "no_signal_text",
                8,
                "no_signal_text",
                "unknown field `no_signal_text`",
            ),
        ];
        for (from, to, line, key, fragment) in table {
            let text = PROFILE.replacen(from, to, 1);
            let err =
                load_profile("acme-ox1", &text, Path::new("devices/acme-ox1.toml")).unwrap_err();
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!("devices/acme-ox1.toml:{line}:")),
                "{to}: {shown}"
            );
            assert_eq!(err.key(), Some(*key), "{to}: {shown}");
            assert!(shown.contains(fragment), "{to}: {shown}");
        }
        let ok = load_profile("acme-ox1", PROFILE, Path::new("x.toml")).unwrap();
        assert_eq!(ok.name, "acme-ox1");
    }

    #[test]
    fn a_devices_dir_adds_and_replaces_profiles() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("devices");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("acme-ox1.toml"), PROFILE).unwrap();
        let slow = PROFILE.replace("expected_period = \"1s\"", "expected_period = \"2s\"");
        std::fs::write(dir.join("masimo-rad8.toml"), slow).unwrap();
        std::fs::write(dir.join("README.md"), "not a profile").unwrap();
        let profiles = load_profiles(Some(&dir)).unwrap();
        assert_eq!(profiles.len(), BUILTIN_PROFILES.len() + 1);
        assert_eq!(profiles["acme-ox1"].vendor, "Acme");
        assert_eq!(
            profiles["masimo-rad8"].expected_period,
            Duration::from_secs(2)
        );

        let cfg_path = root.path().join("vitalsd.toml");
        let text = format!(
            "devices_dir = \"devices\"\n{}",
            edited("\"masimo-rad8\"", "\"acme-ox1\"")
        );
        std::fs::write(&cfg_path, text).unwrap();
        let cfg = load_config(&cfg_path).unwrap();
        assert_eq!(cfg.device(DeviceIdx(0)).profile.model, "Ox-1");

        std::fs::write(dir.join("bad name.toml"), PROFILE).unwrap();
        let err = load_profiles(Some(&dir)).unwrap_err();
        assert!(
            err.to_string().contains("is not a valid profile name"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_devices_dir_or_config_file_is_an_io_error_naming_it() {
        let err = load_config_str(
            &format!("devices_dir = \"no-such-dir\"\n{BASE}"),
            Path::new("/nonexistent/vitalsd.toml"),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Io {
                    what: "devices_dir",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "/nonexistent/no-such-dir: cannot read devices_dir"
        );
        let err = load_config(Path::new("/nonexistent/vitalsd.toml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/vitalsd.toml: cannot read config file"
        );
    }

    #[test]
    fn absent_serial_ports_are_listed_and_present_ones_and_tcp_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("ttyFAKE0");
        std::fs::write(&present, "").unwrap();
        let text = edited("/dev/ttyUSB0", present.to_str().unwrap())
            .replace("/dev/ttyUSB1", "/nonexistent/ttyUSB1");
        let cfg = load_config_str(&text, origin()).unwrap();
        assert_eq!(
            absent_ports(&cfg),
            [
                "config/test.toml: device \"room1-B-oximeter\" of bed room1/B: serial port /nonexistent/ttyUSB1 does not exist"
            ]
        );
    }

    #[test]
    fn tcp_addresses_accept_host_names_and_bracketed_ipv6_only_with_a_port() {
        let table = [
            ("192.168.10.21:4001", true),
            ("moxa-1.clinic.lan:4001", true),
            ("[fe80::1]:4001", true),
            ("host:65535", true),
            ("host:65536", false),
            ("host:0", false),
            ("host:", false),
            (":4001", false),
            ("fe80::1:4001", false),
            ("host:+80", false),
            ("ho st:80", false),
            ("host", false),
        ];
        for (addr, ok) in table {
            assert_eq!(check_tcp(addr), ok, "{addr}");
        }
    }

    #[test]
    fn ids_allow_only_safe_characters_up_to_64() {
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        let table = [
            ("room1", true),
            ("room1-A_oximeter", true),
            (long.as_str(), true),
            (too_long.as_str(), false),
            ("", false),
            ("room/1", false),
            ("räum", false),
        ];
        for (id, ok) in table {
            assert_eq!(is_valid_id(id), ok, "{id}");
        }
    }

    #[test]
    fn line_and_column_count_characters_not_bytes() {
        assert_eq!(line_col("a = 1\nbé = 2", 10), (2, 4));
        assert_eq!(line_col("x", 99), (1, 2));
        assert_eq!(line_col("é", 1), (1, 1));
    }

    #[test]
    fn retention_is_optional_in_days_and_at_least_a_day() {
        assert_eq!(load_config_str(BASE, origin()).unwrap().retention, None);
        let with = BASE.replacen(
            "[[rooms]]",
            "[storage]\nretention = \"30d\"\n\n[[rooms]]",
            1,
        );
        assert_eq!(
            load_config_str(&with, origin()).unwrap().retention,
            Some(Duration::from_secs(30 * 86_400))
        );
        let short = BASE.replacen("[[rooms]]", "[storage]\nretention = \"1h\"\n\n[[rooms]]", 1);
        let err = load_config_str(&short, origin()).unwrap_err().to_string();
        assert!(
            err.contains("storage.retention") && err.contains("1d"),
            "{err}"
        );
    }

    fn with_alarms(alarms: &str) -> Result<Config, ConfigError> {
        let text = BASE.replacen("[[rooms]]", &format!("{alarms}\n\n[[rooms]]"), 1);
        load_config_str(&text, origin())
    }

    #[test]
    fn escalation_is_per_priority_with_documented_defaults_and_overrides() {
        use crate::model::{Breakthrough, PriorityEscalation};
        let d = load_config_str(BASE, origin()).unwrap().alarms.policy;
        assert_eq!(
            d.escalation.medium.renotify_every,
            Some(Duration::from_secs(180))
        );
        assert_eq!(
            d.escalation.medium.escalate_after,
            Some(Duration::from_secs(600))
        );
        assert!(!d.escalation.low.notify);
        assert_eq!(d.escalation.page_interval, Duration::from_secs(60));
        assert_eq!(d.audio.breakthrough, Breakthrough::Medium);
        let cfg = with_alarms(
            "[alarms]\nrenotify_every = \"1m\"\npage_interval = \"0s\"\npause_breakthrough = \"all\"\n\n\
             [alarms.escalation.medium]\nrenotify_every = \"never\"\nescalate_after = \"30s\"\nlevels = 2\n\n\
             [alarms.escalation.low]\nnotify = true\n",
        )
        .unwrap();
        let p = cfg.alarms.policy;
        assert_eq!(
            p.escalation.high.renotify_every,
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            p.escalation.medium,
            PriorityEscalation {
                notify: true,
                renotify_every: None,
                escalate_after: Some(Duration::from_secs(30)),
                levels: 2
            }
        );
        assert!(p.escalation.low.notify);
        assert_eq!(p.escalation.page_interval, Duration::ZERO);
        assert_eq!(p.audio.breakthrough, Breakthrough::All);
    }

    #[test]
    fn bad_escalation_keys_name_the_line_key_and_expectation() {
        let cases = [
            (
                "[alarms]\nrepeat_medium = true\n",
                "alarms.repeat_medium",
                "unknown field",
            ),
            (
                "[alarms.escalation.medium]\nrenotify_every = \"5s\"\n",
                "alarms.escalation.medium.renotify_every",
                "between 10s and 1h (or \"never\")",
            ),
            (
                "[alarms.escalation.high]\nlevels = 0\n",
                "alarms.escalation.high.levels",
                "expected 1 to 10",
            ),
            (
                "[alarms.escalation.urgent]\nlevels = 2\n",
                "alarms.escalation.urgent",
                "unknown field",
            ),
            (
                "[alarms]\nrenotify_every = \"1m\"\n\n[alarms.escalation.high]\nrenotify_every = \"2m\"\n",
                "alarms.escalation.high.renotify_every",
                "set twice",
            ),
            (
                "[alarms]\npause_breakthrough = \"low\"\n",
                "alarms.pause_breakthrough",
                "expected one of: high, medium, all",
            ),
            (
                "[alarms]\npage_interval = \"1h\"\n",
                "alarms.page_interval",
                "between 0s and 10m",
            ),
        ];
        for (alarms, key, want) in cases {
            let err = with_alarms(alarms).unwrap_err();
            let text = err.to_string();
            assert_eq!(err.key(), Some(key), "{text}");
            assert!(text.contains(want), "{text}");
            assert!(err.line().is_some_and(|l| l > 1), "{text}");
        }
    }

    #[test]
    fn one_device_server_written_as_aliases_of_loopback_cannot_be_bound_twice() {
        let first = edited("tcp = \"192.168.10.21:4001\"", "tcp = \"127.0.0.1:4001\"");
        for alias in [
            "localhost:4001",
            "127.1:4001",
            "[::1]:4001",
            "LOCALHOST:4001",
        ] {
            let text = first.replacen("port = \"/dev/ttyUSB1\"", &format!("tcp = \"{alias}\""), 1);
            let err = load_config_str(&text, origin()).unwrap_err();
            let msg = err.to_string();
            assert_eq!(err.line(), Some(28), "{msg}");
            assert_eq!(
                err.key(),
                Some("rooms[0].recliners[1].devices[0].tcp"),
                "{msg}"
            );
            assert!(
                msg.contains(
                    "of device \"room1-B-oximeter\" is already bound to device \"room1-A-nibp\""
                ) && msg.contains("config/test.toml:20"),
                "{alias}: {msg}"
            );
        }
        // Another port on the same host is another device server.
        let text = first.replacen("port = \"/dev/ttyUSB1\"", "tcp = \"localhost:4002\"", 1);
        assert!(load_config_str(&text, origin()).is_ok());
    }

    #[test]
    fn the_nibp_overdue_grace_is_configurable_and_bounded() {
        let text = BASE.replacen(
            "[[rooms]]",
            "[alarms]\nnibp_overdue_grace = \"5m\"\n\n[[rooms]]",
            1,
        );
        let cfg = load_config_str(&text, origin()).unwrap();
        assert_eq!(cfg.alarms.policy.nibp_grace, Duration::from_secs(300));
        let cfg = load_config_str(BASE, origin()).unwrap();
        assert_eq!(cfg.alarms.policy.nibp_grace, Duration::from_secs(120));
        for bad in ["\"5s\"", "\"2h\"", "\"soon\""] {
            let text = BASE.replacen(
                "[[rooms]]",
                &format!("[alarms]\nnibp_overdue_grace = {bad}\n\n[[rooms]]"),
                1,
            );
            let err = load_config_str(&text, origin()).unwrap_err();
            assert_eq!(err.key(), Some("alarms.nibp_overdue_grace"), "{err}");
            assert_eq!(err.line(), Some(5), "{err}");
        }
    }

    #[test]
    fn mqtt_is_optional_and_its_errors_name_the_file_line_and_key() {
        assert_eq!(load_config_str(BASE, origin()).unwrap().mqtt, None);
        let with = |table: &str| BASE.replacen("[[rooms]]", &format!("{table}\n\n[[rooms]]"), 1);
        let ok = load_config_str(
            &with("[mqtt]\nurl = \"mqtt://broker:1884\"\nsite = \"north\"\nkeepalive = \"10s\""),
            origin(),
        )
        .unwrap()
        .mqtt
        .expect("[mqtt] read");
        assert_eq!((ok.host.as_str(), ok.port), ("broker", 1884));
        assert_eq!(ok.client_id, "vitalsd-north");
        assert_eq!(ok.keepalive, Duration::from_secs(10));
        assert_eq!(ok.down_after, Duration::from_secs(30));
        for (table, key, line, says) in [
            (
                "[mqtt]\nurl = \"http://b\"\nsite = \"n\"",
                "mqtt.url",
                5,
                "mqtt://",
            ),
            (
                "[mqtt]\nurl = \"mqtts://b\"\nsite = \"n\"",
                "mqtt.url",
                5,
                "not supported",
            ),
            (
                "[mqtt]\nurl = \"mqtt://b\"\nsite = \"a/b\"",
                "mqtt.site",
                6,
                "topic level",
            ),
            (
                "[mqtt]\nurl = \"mqtt://b\"\nsite = \"n\"\nkeepalive = \"1s\"",
                "mqtt.keepalive",
                7,
                "5s",
            ),
            (
                "[mqtt]\nurl = \"mqtt://b\"\nsite = \"n\"\npassword = \"p\"",
                "mqtt.password",
                7,
                "username",
            ),
        ] {
            let err = load_config_str(&with(table), origin()).unwrap_err();
            assert_eq!(err.key(), Some(key), "{err}");
            assert_eq!(err.line(), Some(line), "{err}");
            assert!(err.to_string().contains(says), "{err}");
            assert!(err.to_string().contains("config/test.toml"), "{err}");
        }
        let unknown = load_config_str(
            &with("[mqtt]\nurl = \"mqtt://b\"\nsite = \"n\"\ncert = \"x\""),
            origin(),
        )
        .unwrap_err()
        .to_string();
        assert!(unknown.contains("cert"), "{unknown}");
    }
}
