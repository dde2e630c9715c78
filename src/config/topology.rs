//! The clinic's topology: rooms, recliners and the devices bound to each, with their
//! endpoints (serial port, device server, BLE address), each bound at most once; paths
//! resolved against the config file's directory.

use super::check::{check_duration, check_text, join_names};
use super::error::{ConfigError, Source, line_col};
use super::profiles::check_max_rate;
use super::raw::{RawDevice, RawRecliner, RawRoom};
use super::{Bed, Binding, Config, Endpoint, Profile, Room, TransportKind};
use crate::model::{BedIdx, DeviceIdx};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// The NIBP cycle when a recliner does not set `bp_interval`.
pub const DEFAULT_BP_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Shortest accepted `bp_interval`: a cuff cycled faster than this would hurt and never rest.
pub const MIN_BP_INTERVAL: Duration = Duration::from_secs(5);

/// Longest accepted `bp_interval`.
pub const MAX_BP_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The preset a recliner gets when it names none.
pub const DEFAULT_PRESET: &str = "ketamine-session";

/// The keys under which a device server address is taken, compared after resolution: every
/// address `addr` resolves to (std's resolver, at config load), with every loopback or
/// unspecified address as one host, so `127.0.0.1:P`, `localhost:P`, `127.1:P` and `[::1]:P`
/// are one endpoint. A name that does not resolve now is compared by its text.
pub(super) fn tcp_keys(addr: &str) -> Vec<String> {
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

/// A PEM file path: resolved against the config's directory, and readable.
pub(super) fn resolve_file(
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

pub(super) fn resolve_dir(
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

pub(super) fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Who already holds an id or endpoint, for "duplicate" messages.
pub(super) struct Taken {
    what: String,
    line: usize,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn validate_room(
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
    let id = raw.id.get_ref().as_str().to_owned();
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
pub(super) fn validate_recliner(
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
    let id = raw.id.get_ref().as_str().to_owned();
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
pub(super) fn validate_device(
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
    let id = raw.id.get_ref().as_str().to_owned();
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
    let given: Vec<(&str, std::ops::Range<usize>)> = [
        ("port", raw.port.as_ref().map(Spanned::span)),
        ("tcp", raw.tcp.as_ref().map(Spanned::span)),
        ("address", raw.address.as_ref().map(Spanned::span)),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    if given.len() > 1 {
        let (second, span) = given[1].clone();
        return Err(src.err(
            span,
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
        return Err(src.err(v.clone(), format!("{key}.{k}"), message));
    }
    let (endpoint, span, ep_key, taken_key, shown) = match (&raw.port, &raw.tcp, &raw.address) {
        (_, _, Some(address)) => {
            let ep_key = format!("{key}.address");
            let norm = address.get_ref().0.clone();
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
            let addr = tcp.get_ref().as_str();
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
        max_rate: match &dev.get_ref().max_rate {
            Some(r) => check_max_rate(src, r, &format!("{key}.max_rate"))?,
            None => profile.max_rate,
        },
    })
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
