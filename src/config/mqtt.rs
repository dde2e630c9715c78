//! The `[mqtt]` table: the bridge that publishes this site to an MQTT broker (src/mqtt,
//! docs/mqtt.md). Optional; without it nothing is published.

use std::time::Duration;

/// Default keepalive: the broker fires the Last Will after about 1.5 x this of silence.
pub const DEFAULT_MQTT_KEEPALIVE: Duration = Duration::from_secs(30);
/// Default grace before a broker link that is down raises `mqtt_down`.
pub const DEFAULT_MQTT_DOWN_AFTER: Duration = Duration::from_secs(30);

/// The shortest command-signing secret accepted (characters).
pub const MIN_COMMAND_SECRET: usize = 32;

/// Validated `[mqtt]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// The URL as configured (`mqtt://host:port`), for messages.
    pub url: String,
    /// The broker's host name or address.
    pub host: String,
    /// The broker's port (1883 when the URL has none).
    pub port: u16,
    /// This site's name: the `{site}` level of every topic.
    pub site: String,
    /// The MQTT client id (`vitalsd-{site}` by default). Unique per broker.
    pub client_id: String,
    /// Username and password, when the broker wants them.
    pub username: Option<String>,
    pub password: Option<String>,
    /// MQTT keepalive.
    pub keepalive: Duration,
    /// How long the link may be down before `mqtt_down` is raised.
    pub down_after: Duration,
    /// `mqtts://`: TLS, with these files.
    pub tls: Option<MqttTls>,
    /// The secret a central view signs its commands with (HMAC-SHA256, at least 32
    /// characters); `None` refuses every command.
    pub command_secret: Option<String>,
}

impl MqttSettings {
    /// Settings with defaults for everything but the URL and the site (`vitalsd demo --mqtt`).
    pub fn new(url: &str, site: &str) -> Result<MqttSettings, String> {
        let (host, port) = parse_mqtt_url(url)?;
        if !is_topic_level(site) {
            return Err(format!(
                "site {site:?} is not a valid site name, expected 1 to 64 letters, digits, '-' or '_'"
            ));
        }
        Ok(MqttSettings {
            url: url.trim().to_owned(),
            host,
            port,
            site: site.to_owned(),
            client_id: format!("vitalsd-{site}"),
            username: None,
            password: None,
            keepalive: DEFAULT_MQTT_KEEPALIVE,
            down_after: DEFAULT_MQTT_DOWN_AFTER,
            command_secret: None,
            tls: is_mqtts(url).then(MqttTls::default),
        })
    }
}

/// TLS to the broker (`mqtts://`): PEM files, resolved against the config file's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttTls {
    /// The CA certificates the broker's certificate must chain to; the system's when absent.
    pub ca: Option<std::path::PathBuf>,
    /// A client certificate (chain) and its key, for brokers that authenticate clients so.
    pub client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Whether an MQTT URL asks for TLS.
pub fn is_mqtts(url: &str) -> bool {
    url.trim().starts_with("mqtts://")
}

/// A site name (or client id) usable as one topic level: no `/`, `+`, `#`, no spaces.
pub fn is_topic_level(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `mqtt://host[:port]` (1883) or `mqtts://host[:port]` (TLS, 8883) into host and port.
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), String> {
    let url = url.trim();
    let default_port = if is_mqtts(url) { 8883 } else { 1883 };
    let rest = if let Some(r) = url.strip_prefix("mqtt://") {
        r
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        r
    } else {
        return Err(format!(
            "{url:?} is not an MQTT URL, expected mqtt://host:port"
        ));
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.contains('@') || rest.is_empty() {
        return Err(format!(
            "{url:?} is not an MQTT URL, expected mqtt://host:port (no path, no user in the URL: use username and password)"
        ));
    }
    // [v6]:port, host:port, or host.
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let Some((h, after)) = r.split_once(']') else {
            return Err(format!(
                "{url:?} has an unclosed '[', expected mqtt://[::1]:1883"
            ));
        };
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("{url:?}: expected ':port' after ']'")),
        };
        (h.to_owned(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host, expected mqtt://host:port"));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "{url:?}: port {p:?} is not a port, expected 1 to 65535"
                ));
            }
        },
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_urls_parse_and_bad_ones_say_what_was_expected() {
        assert_eq!(
            parse_mqtt_url("mqtt://broker.local:1884"),
            Ok(("broker.local".to_owned(), 1884))
        );
        assert_eq!(
            parse_mqtt_url("mqtt://10.0.0.5"),
            Ok(("10.0.0.5".to_owned(), 1883))
        );
        assert_eq!(
            parse_mqtt_url("mqtt://[::1]:1883"),
            Ok(("::1".to_owned(), 1883))
        );
        for bad in [
            "http://x:1",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:x",
            "mqtt://u@h",
            "mqtt://h/p",
        ] {
            let e = parse_mqtt_url(bad).expect_err(bad);
            assert!(e.contains("expected"), "{bad}: {e}");
        }
        assert_eq!(parse_mqtt_url("mqtts://h"), Ok(("h".to_owned(), 8883)));
        assert!(is_mqtts("mqtts://h:8884") && !is_mqtts("mqtt://h"));
        assert!(MqttSettings::new("mqtt://h", "clinic/north").is_err());
        let s = MqttSettings::new("mqtt://h", "north").expect("valid");
        assert_eq!(s.client_id, "vitalsd-north");
    }
}
