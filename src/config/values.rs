//! Typed values of the config files, read by serde: each `Deserialize` impl checks its own
//! value and, when it is wrong, quotes it and says what was expected. [`super::read_toml`] puts
//! the file, line, column and key path in front of that message, so a bad id, role, listen
//! address, device server address, webhook address, MQTT URL, BLE address or UUID, protocol or
//! metric name is refused while the file is read, as a bad duration is
//! ([`crate::model::WrittenDuration`]).

use super::check::{ID_EXPECTED, is_valid_id, join_names};
use super::{Hl7Kind, Role};
use crate::model::Metric;
use crate::protocol::PROTOCOLS;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use std::net::SocketAddr;

/// The text of a string value, for the impls below.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    <String as Deserialize>::deserialize(d)
}

/// An id (of a room, recliner, device, user, notification target, HL7 endpoint): 1 to 64 of
/// `[A-Za-z0-9_-]`, since ids appear in URLs, topics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Id(String);

impl Id {
    /// The id.
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = text(d)?;
        if is_valid_id(&s) {
            Ok(Id(s))
        } else {
            Err(D::Error::custom(format!(
                "{s:?} is not a valid id, {ID_EXPECTED}"
            )))
        }
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match text(d)?.as_str() {
            "viewer" => Ok(Role::Viewer),
            "nurse" => Ok(Role::Nurse),
            "admin" => Ok(Role::Admin),
            other => Err(D::Error::custom(format!(
                "unknown role {other:?}, expected one of: viewer, nurse, admin"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Hl7Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match text(d)?.trim() {
            "pcd01" => Ok(Hl7Kind::Pcd01),
            "pcd04" => Ok(Hl7Kind::Pcd04),
            other => Err(D::Error::custom(format!(
                "{other:?} is not an HL7 endpoint kind, expected \"pcd01\" (observations, ORU^R01) or \"pcd04\" (alarms, ORU^R40)"
            ))),
        }
    }
}

/// The address the HTTP server listens on (`listen`): an IP address and port; white space
/// around it is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ListenAddr(pub(super) SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = text(d)?;
        s.trim().parse().map(ListenAddr).map_err(|_| {
            D::Error::custom(format!(
                "{s:?} is not a socket address, expected an IP address and port such as \"{}\"",
                super::DEFAULT_LISTEN
            ))
        })
    }
}

/// A serial device server's address (`tcp`): `host:port`, port 1..65535, IPv6 hosts in
/// brackets; white space around it is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TcpAddr(String);

impl TcpAddr {
    /// The address, trimmed.
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for TcpAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = text(d)?;
        if check_tcp(s.trim()) {
            Ok(TcpAddr(s.trim().to_owned()))
        } else {
            Err(D::Error::custom(format!(
                "{s:?} is not host:port, expected a host and a port 1..65535 such as \"192.168.10.21:4001\""
            )))
        }
    }
}

/// Checks a serial device server address: `host:port`, port 1..65535, IPv6 hosts in brackets.
pub(crate) fn check_tcp(addr: &str) -> bool {
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

/// A webhook's address (`[[notify]] url`): `http://` or `https://` and a host; white space
/// around it is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WebUrl(String);

impl WebUrl {
    /// The address, trimmed.
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for WebUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let url = text(d)?.trim().to_owned();
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        if scheme_ok && url.len() >= 10 {
            Ok(WebUrl(url))
        } else {
            Err(D::Error::custom(format!(
                "{url:?} is not a web address, expected http://host/path or https://host/path"
            )))
        }
    }
}

/// A broker's address (`[mqtt] url`): `mqtt://host[:port]` (1883) or `mqtts://host[:port]`
/// (TLS, 8883), read by [`super::parse_mqtt_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MqttUrl {
    /// The URL as written, for messages about it.
    written: String,
    /// The broker's host.
    pub(super) host: String,
    /// The broker's port.
    pub(super) port: u16,
}

impl MqttUrl {
    /// The URL as written.
    pub(super) fn written(&self) -> &str {
        &self.written
    }

    /// The URL without white space around it.
    pub(super) fn trimmed(&self) -> String {
        self.written.trim().to_owned()
    }

    /// Whether it asks for TLS (`mqtts://`).
    pub(super) fn is_tls(&self) -> bool {
        super::is_mqtts(&self.written)
    }
}

impl<'de> Deserialize<'de> for MqttUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let written = text(d)?;
        let (host, port) = super::parse_mqtt_url(&written).map_err(D::Error::custom)?;
        Ok(MqttUrl {
            written,
            host,
            port,
        })
    }
}

/// A GATT service or characteristic UUID in a device profile: a full UUID or a 16-bit SIG
/// number ([`parse_ble_uuid`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BleUuid {
    /// The UUID as written, for messages about it.
    pub(super) written: String,
    /// The full UUID.
    pub(super) uuid: uuid::Uuid,
}

impl<'de> Deserialize<'de> for BleUuid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let written = text(d)?;
        match parse_ble_uuid(&written) {
            Some(uuid) => Ok(BleUuid { written, uuid }),
            None => Err(D::Error::custom(format!(
                "{written:?} is not a UUID, {}",
                UUID_EXPECTED
            ))),
        }
    }
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

/// What a UUID must look like, for messages about a bad one.
const UUID_EXPECTED: &str = "expected a 16-bit SIG number such as \"2A5F\" or a full UUID such as \"49535343-fe7d-4ae5-8fa9-9fafd205e455\"";

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

/// A Bluetooth LE device address (`address`): six hex pairs separated by colons, kept in upper
/// case ([`normalize_address`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BleAddress(pub(super) String);

impl<'de> Deserialize<'de> for BleAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = text(d)?;
        normalize_address(&s).map(BleAddress).ok_or_else(|| {
            D::Error::custom(format!(
                "{s:?} is not a Bluetooth address, expected six hex pairs separated by colons such as \"00:1C:05:FF:4E:2A\""
            ))
        })
    }
}

/// A decoder's name in a device profile (`protocol`): one of [`PROTOCOLS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProtocolName(pub(super) String);

impl<'de> Deserialize<'de> for ProtocolName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = text(d)?;
        if PROTOCOLS.contains(&s.as_str()) {
            Ok(ProtocolName(s))
        } else {
            Err(D::Error::custom(format!(
                "unknown protocol {s:?}, expected one of: {}",
                join_names(PROTOCOLS.iter().copied())
            )))
        }
    }
}

/// A metric's name in a device profile (`metrics`): one of [`Metric::ALL`]'s names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MetricName(pub(super) Metric);

impl<'de> Deserialize<'de> for MetricName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = text(d)?;
        Metric::from_name(&s).map(MetricName).ok_or_else(|| {
            D::Error::custom(format!(
                "unknown metric {s:?}, expected one of: {}",
                join_names(Metric::ALL.iter().map(|m| m.name()))
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: serde::de::DeserializeOwned>(toml: &str) -> Result<T, String> {
        #[derive(Deserialize)]
        struct Doc<T> {
            v: T,
        }
        super::super::read_toml::<Doc<T>>(toml)
            .map(|d| d.v)
            .map_err(|e| format!("{}:{}: {}: {}", e.line, e.column, e.key, e.message))
    }

    #[test]
    fn each_value_reads_its_text_and_refuses_a_bad_one_quoting_it() {
        assert_eq!(read::<Id>("v = \"room-1_A\"").unwrap().as_str(), "room-1_A");
        assert_eq!(
            read::<Id>("v = \"room 1\"").unwrap_err(),
            format!("1:5: v: \"room 1\" is not a valid id, {ID_EXPECTED}")
        );
        assert_eq!(read::<Role>("v = \"nurse\"").unwrap(), Role::Nurse);
        assert!(
            read::<Role>("v = \"root\"")
                .unwrap_err()
                .ends_with("unknown role \"root\", expected one of: viewer, nurse, admin")
        );
        assert_eq!(read::<Hl7Kind>("v = \" pcd04\"").unwrap(), Hl7Kind::Pcd04);
        assert!(
            read::<Hl7Kind>("v = \"pcd02\"")
                .unwrap_err()
                .contains("\"pcd02\" is not an HL7 endpoint kind")
        );
        assert_eq!(
            read::<ListenAddr>("v = \" 0.0.0.0:80 \"").unwrap().0,
            SocketAddr::from(([0, 0, 0, 0], 80))
        );
        assert!(
            read::<ListenAddr>("v = \"localhost:80\"")
                .unwrap_err()
                .contains("\"localhost:80\" is not a socket address, expected an IP address")
        );
        assert_eq!(
            read::<TcpAddr>("v = \"[::1]:4001 \"").unwrap().as_str(),
            "[::1]:4001"
        );
        assert!(
            read::<TcpAddr>("v = \"host:0\"")
                .unwrap_err()
                .contains("\"host:0\" is not host:port, expected a host and a port 1..65535")
        );
        assert_eq!(
            read::<WebUrl>("v = \" https://pager/x\"").unwrap().as_str(),
            "https://pager/x"
        );
        assert!(
            read::<WebUrl>("v = \"ftp://pager/x\"")
                .unwrap_err()
                .contains("\"ftp://pager/x\" is not a web address, expected http://host/path")
        );
        let url = read::<MqttUrl>("v = \" mqtts://broker:8884\"").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.is_tls()),
            ("broker", 8884, true)
        );
        assert_eq!(url.trimmed(), "mqtts://broker:8884");
        assert_eq!(
            read::<MqttUrl>("v = \"http://b\"").unwrap_err(),
            "1:5: v: \"http://b\" is not an MQTT URL, expected mqtt://host:port"
        );
        assert_eq!(
            read::<BleUuid>("v = \"0x2A5F\"").unwrap().uuid,
            uuid::Uuid::parse_str("00002a5f-0000-1000-8000-00805f9b34fb").unwrap()
        );
        assert!(
            read::<BleUuid>("v = \"14839\"")
                .unwrap_err()
                .ends_with("\"14839\" is not a UUID, expected a 16-bit SIG number such as \"2A5F\" or a full UUID such as \"49535343-fe7d-4ae5-8fa9-9fafd205e455\"")
        );
        assert_eq!(
            read::<BleAddress>("v = \"00:1c:05:ff:4e:2a\"").unwrap().0,
            "00:1C:05:FF:4E:2A"
        );
        assert!(
            read::<BleAddress>("v = \"00:1C:05\"")
                .unwrap_err()
                .contains("\"00:1C:05\" is not a Bluetooth address, expected six hex pairs")
        );
        assert_eq!(read::<ProtocolName>("v = \"hrs\"").unwrap().0, "hrs");
        assert!(
            read::<ProtocolName>("v = \"viatom\"")
                .unwrap_err()
                .contains("unknown protocol \"viatom\", expected one of: masimo-ascii,")
        );
        assert_eq!(read::<MetricName>("v = \"spo2\"").unwrap().0, Metric::Spo2);
        assert!(
            read::<MetricName>("v = \"pulse\"")
                .unwrap_err()
                .contains("unknown metric \"pulse\", expected one of: spo2,")
        );
    }
}
