//! `central.toml`: the central view of several sites (`vitalsd central`, src/central,
//! docs/mqtt.md "Central view"). Users and `[tls]` as in a site's config; the broker; the
//! sites allowed, each with the secret its commands are signed with.

use super::load::{
    ConfigError, Source, check_duration, check_secret, check_text, mqtt_tls, resolve_file,
    validate_users,
};
use super::raw::{RawTls, RawUser};
use super::{ApiSettings, TlsSettings, User};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// The central's client id when `[mqtt] client_id` is not set.
pub const DEFAULT_CENTRAL_CLIENT_ID: &str = "vitalsd-central";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCentral {
    listen: Option<Spanned<super::values::ListenAddr>>,
    mqtt: Spanned<RawCentralMqtt>,
    #[serde(default)]
    users: Vec<Spanned<RawUser>>,
    tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    sites: Vec<Spanned<RawSite>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCentralMqtt {
    url: Spanned<super::values::MqttUrl>,
    client_id: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    keepalive: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    name: Spanned<String>,
    command_secret: Option<Spanned<String>>,
}

/// The broker, as the central connects to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentralMqtt {
    pub url: String,
    pub host: String,
    pub port: u16,
    /// Also the name of its persistent session at the broker: unique per central instance.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keepalive: Duration,
    /// `mqtts://`: TLS, with these files.
    pub tls: Option<super::MqttTls>,
}

/// One site the central shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentralSite {
    /// The site's `[mqtt] site`.
    pub name: String,
    /// Signs the commands sent to it (the site's `[mqtt] command_secret`); without it the
    /// central cannot acknowledge there.
    pub command_secret: Option<String>,
}

/// A validated `central.toml`.
#[derive(Debug, Clone)]
pub struct CentralConfig {
    pub listen: SocketAddr,
    pub mqtt: CentralMqtt,
    pub users: Vec<User>,
    pub tls: Option<TlsSettings>,
    /// In the order of the file: the order of the dashboard's groups.
    pub sites: Vec<CentralSite>,
    /// The listener's limits (the site's `[api]` defaults).
    pub api: ApiSettings,
}

impl CentralConfig {
    /// The site named `name`, if allowed.
    pub fn site(&self, name: &str) -> Option<&CentralSite> {
        self.sites.iter().find(|s| s.name == name)
    }
}

/// Reads and validates `central.toml`.
pub fn load_central(path: &Path) -> Result<CentralConfig, ConfigError> {
    load_central_str(&super::load::read_file(path, "central config file")?, path)
}

/// Validates central config text as if read from `origin`.
pub fn load_central_str(text: &str, origin: &Path) -> Result<CentralConfig, ConfigError> {
    let src = Source { origin, text };
    let raw: RawCentral = src.read()?;
    let base = super::load::base_dir(origin);
    let listen = raw.listen.as_ref().map_or_else(
        || SocketAddr::from(([127, 0, 0, 1], 8090)),
        |l| l.get_ref().0,
    );
    let m = raw.mqtt.get_ref();
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
        None => DEFAULT_CENTRAL_CLIENT_ID.to_owned(),
    };
    let username = m
        .username
        .as_ref()
        .map(|v| check_text(&src, v, "mqtt.username"))
        .transpose()?;
    let password = m
        .password
        .as_ref()
        .map(|v| check_text(&src, v, "mqtt.password"))
        .transpose()?;
    if let (Some(p), None) = (&m.password, &username) {
        return Err(src.err(
            p.span(),
            "mqtt.password",
            "a password without a username, expected mqtt.username too".to_owned(),
        ));
    }
    let keepalive = match &m.keepalive {
        Some(k) => check_duration(
            &src,
            k,
            "mqtt.keepalive",
            (
                Duration::from_secs(5),
                Duration::from_secs(600),
                "5s",
                "10m",
            ),
        )?,
        None => super::mqtt::DEFAULT_MQTT_KEEPALIVE,
    };
    let users = validate_users(&src, &raw.users)?;
    if users.is_empty() && !listen.ip().is_loopback() {
        let span = raw.listen.as_ref().map(|l| l.span()).unwrap_or(0..0);
        return Err(src.err(
            span,
            "listen",
            format!(
                "listening on {listen} without [[users]], expected at least one [[users]] table (tokens) when not on loopback"
            ),
        ));
    }
    let tls = match &raw.tls {
        Some(t) => {
            let t = t.get_ref();
            Some(TlsSettings {
                cert: resolve_file(&src, base, &t.cert, "tls.cert")?,
                key: resolve_file(&src, base, &t.key, "tls.key")?,
            })
        }
        None => None,
    };
    if tls.is_none() && !listen.ip().is_loopback() {
        let span = raw.listen.as_ref().map(|l| l.span()).unwrap_or(0..0);
        return Err(src.err(
            span,
            "listen",
            format!(
                "listening on {listen} without TLS, expected a [tls] table (cert and key) when not on loopback"
            ),
        ));
    }
    if raw.sites.is_empty() {
        return Err(src.err(
            0..0,
            "sites",
            "no [[sites]], expected at least one [[sites]] table (name = the site's [mqtt] site)"
                .to_owned(),
        ));
    }
    let mut sites: Vec<CentralSite> = Vec::new();
    for (i, s) in raw.sites.iter().enumerate() {
        let s = s.get_ref();
        let key = format!("sites[{i}]");
        let name = s.name.get_ref().trim().to_owned();
        if !super::is_topic_level(&name) {
            return Err(src.err(
                s.name.span(),
                format!("{key}.name"),
                format!(
                    "{name:?} is not a valid site name, expected 1 to 64 letters, digits, '-' or '_' (the site's [mqtt] site)"
                ),
            ));
        }
        if sites.iter().any(|x| x.name == name) {
            return Err(src.err(
                s.name.span(),
                format!("{key}.name"),
                format!("duplicate site {name:?}, expected each site once"),
            ));
        }
        let command_secret = s
            .command_secret
            .as_ref()
            .map(|c| check_secret(&src, c, &format!("{key}.command_secret")))
            .transpose()?;
        sites.push(CentralSite {
            name,
            command_secret,
        });
    }
    Ok(CentralConfig {
        listen,
        mqtt: CentralMqtt {
            url: m.url.get_ref().trimmed(),
            host: m.url.get_ref().host.clone(),
            port: m.url.get_ref().port,
            client_id,
            username,
            password,
            keepalive,
            tls: mqtt_tls(&src, base, &m.url, &m.ca, &m.cert, &m.key, "mqtt")?,
        },
        users,
        tls,
        sites,
        api: ApiSettings::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"listen = "127.0.0.1:8090"
[mqtt]
url = "mqtt://broker:1883"
keepalive = "10s"

[[users]]
name = "alice"
role = "nurse"
token = "alice-token-0123456789"

[[sites]]
name = "north"
command_secret = "0123456789abcdef0123456789abcdef"

[[sites]]
name = "south"
"#;

    #[test]
    fn a_central_config_reads_and_its_errors_name_the_file_line_and_key() {
        let c = load_central_str(OK, Path::new("central.toml")).unwrap();
        assert_eq!(c.mqtt.port, 1883);
        assert_eq!(c.mqtt.client_id, DEFAULT_CENTRAL_CLIENT_ID);
        assert_eq!(c.mqtt.keepalive, Duration::from_secs(10));
        assert_eq!(c.users[0].name, "alice");
        assert_eq!(
            c.sites.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["north", "south"]
        );
        assert!(c.site("north").unwrap().command_secret.is_some());
        assert_eq!(c.site("south").unwrap().command_secret, None);
        for (bad, key, line, says) in [
            (
                OK.replace("name = \"south\"", "name = \"so/uth\""),
                "sites[1].name",
                16,
                "not a valid site name",
            ),
            (
                OK.replace("0123456789abcdef0123456789abcdef", "short"),
                "sites[0].command_secret",
                13,
                "at least 32",
            ),
            (
                OK.replace("mqtt://broker:1883", "http://b"),
                "mqtt.url",
                3,
                "mqtt://",
            ),
            (
                OK.replace("keepalive", "keepalove"),
                "mqtt.keepalove",
                4,
                "unknown field",
            ),
            (
                OK.replace("name = \"south\"", "name = \"north\""),
                "sites[1].name",
                16,
                "duplicate site",
            ),
        ] {
            let e = load_central_str(&bad, Path::new("central.toml")).unwrap_err();
            let text = e.to_string();
            assert_eq!(e.key(), Some(key), "{text}");
            assert_eq!(e.line(), Some(line), "{text}");
            assert!(text.starts_with("central.toml:"), "{text}");
            assert!(text.contains(says), "{text}");
        }
    }
}
