//! Device profiles (`devices/<name>.toml`, built in and from `devices_dir`): the model's kind,
//! transport, decoder, metrics and expected period; the serial link settings; the GATT layout
//! of a BLE model.

use super::check::{ID_EXPECTED, check_duration, check_text, is_valid_id};
use super::error::{ConfigError, Source};
use super::raw::{RawBle, RawLink, RawProfile};
use super::{
    BleCharacteristic, BlePoll, BleProfile, FlowControl, LinkSettings, Parity, Profile,
    TransportKind,
};
use std::collections::BTreeMap;
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

/// Shortest accepted profile `expected_period`.
pub const MIN_EXPECTED_PERIOD: Duration = Duration::from_millis(100);

/// Longest accepted profile `expected_period`: a device silent for longer than this between
/// readings could not be told apart from a dead one in time.
pub const MAX_EXPECTED_PERIOD: Duration = Duration::from_secs(10 * 60);

/// Validates one device profile. `name` is the profile name (the file stem), `origin` the file
/// it came from, for messages.
pub fn load_profile(name: &str, text: &str, origin: &Path) -> Result<Profile, ConfigError> {
    let src = Source { origin, text };
    let raw: RawProfile = src.read()?;
    validate_profile(&src, name, raw)
}

pub(super) fn validate_profile(
    src: &Source<'_>,
    name: &str,
    raw: RawProfile,
) -> Result<Profile, ConfigError> {
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
            (protocol.get_ref().0.clone(), link, None)
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
        let metric = m.get_ref().0;
        if metrics.contains(&metric) {
            return Err(src.err(
                m.span(),
                format!("metrics[{i}]"),
                format!(
                    "metric {:?} is listed twice, expected each metric once",
                    metric.name()
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
    let max_rate = match &raw.max_rate {
        Some(r) => check_max_rate(src, r, "max_rate")?,
        None => crate::protocol::default_max_rate(&protocol),
    };
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
        max_rate,
        no_signal: raw.no_signal.trim().to_owned(),
    })
}

/// Readings per second a device may deliver before it is throttled.
pub const MAX_RATE_RANGE: (i64, i64) = (1, 1_000_000);

pub(super) fn check_max_rate(
    src: &Source<'_>,
    r: &Spanned<i64>,
    key: &str,
) -> Result<u32, ConfigError> {
    let (min, max) = MAX_RATE_RANGE;
    match u32::try_from(*r.get_ref()) {
        Ok(v) if (min..=max).contains(r.get_ref()) => Ok(v),
        _ => Err(src.err(
            r.span(),
            key,
            format!(
                "max_rate {} is out of range, expected {min} to {max} readings per second",
                r.get_ref()
            ),
        )),
    }
}

/// Shortest and longest accepted `poll_every`.
pub(super) const MIN_POLL: Duration = Duration::from_millis(200);

pub(super) const MAX_POLL: Duration = Duration::from_secs(60);

pub(super) fn validate_ble(
    src: &Source<'_>,
    raw: &Spanned<RawBle>,
) -> Result<BleProfile, ConfigError> {
    let b = raw.get_ref();
    let service = b.service.get_ref().uuid;
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
        let uuid = c.uuid.get_ref().uuid;
        if characteristics.iter().any(|other| other.uuid == uuid) {
            return Err(src.err(
                c.uuid.span(),
                format!("{key}.uuid"),
                format!(
                    "characteristic {:?} is listed twice, expected each characteristic once",
                    c.uuid.get_ref().written
                ),
            ));
        }
        characteristics.push(BleCharacteristic {
            uuid,
            protocol: c.protocol.get_ref().0.clone(),
            mode: c.mode,
        });
    }
    let has_poll = characteristics
        .iter()
        .any(|c| c.mode == super::BleMode::Poll);
    let poll = match (&b.write, &b.poll_command, &b.poll_every) {
        (None, None, None) => None,
        (Some(write), Some(command), Some(every)) => {
            let write = write.get_ref().uuid;
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

pub(super) fn validate_link(src: &Source<'_>, raw: &RawLink) -> Result<LinkSettings, ConfigError> {
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
