//! The `[[hl7]]` tables: HL7 v2 endpoints over MLLP (src/hl7, docs/hl7.md). Each is either an
//! EHR interface engine that takes IHE PCD-01 observation reports (`kind = "pcd01"`) or an
//! alarm manager that takes IHE PCD-04 alert reports (`kind = "pcd04"`).

use std::path::PathBuf;
use std::time::Duration;

/// Default report interval of PCD-01 periodic numerics (IHE PCD DEC: typically once a minute).
pub const DEFAULT_HL7_INTERVAL: Duration = Duration::from_secs(60);
/// Default time to wait for an ACK before the message is sent again.
pub const DEFAULT_HL7_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default grace before an endpoint that fails raises `hl7_down`.
pub const DEFAULT_HL7_DOWN_AFTER: Duration = Duration::from_secs(30);

/// What an endpoint is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hl7Kind {
    /// IHE PCD-01 `ORU^R01`: periodic numerics per bed and every NIBP measurement.
    Pcd01,
    /// IHE PCD-04 `ORU^R40`: every alarm event (raised, priority changes, acknowledged,
    /// latched, ended).
    Pcd04,
}

impl Hl7Kind {
    /// The config name.
    pub const fn name(self) -> &'static str {
        match self {
            Hl7Kind::Pcd01 => "pcd01",
            Hl7Kind::Pcd04 => "pcd04",
        }
    }
}

/// One validated `[[hl7]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Endpoint {
    /// Unique name (logs, the outbox, the `hl7` status message); default `hl7-<kind>-<n>`.
    pub name: String,
    pub kind: Hl7Kind,
    /// Host name or address of the MLLP listener.
    pub host: String,
    pub port: u16,
    /// MLLP over TLS (rustls).
    pub tls: bool,
    /// With `tls`: PEM file of the certificate authorities to trust; `None` trusts the
    /// system's roots.
    pub ca: Option<PathBuf>,
    /// MSH-3..6.
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    /// PCD-01: how often each bed's numerics are reported.
    pub interval: Duration,
    /// How long to wait for the ACK of a message before sending it again.
    pub ack_timeout: Duration,
    /// How long the endpoint may fail before `hl7_down` is raised.
    pub down_after: Duration,
}

impl Hl7Endpoint {
    /// An endpoint with defaults for everything but its kind and address (`vitalsd demo
    /// --hl7`). `url` is `mllp://host:port` or `host:port`.
    pub fn new(kind: Hl7Kind, url: &str) -> Result<Hl7Endpoint, String> {
        let (host, port) = parse_endpoint(url)?;
        Ok(Hl7Endpoint {
            name: format!("hl7-{}", kind.name()),
            kind,
            host,
            port,
            tls: false,
            ca: None,
            sending_application: "vitalsd".to_owned(),
            sending_facility: "vitalsd".to_owned(),
            receiving_application: String::new(),
            receiving_facility: String::new(),
            interval: DEFAULT_HL7_INTERVAL,
            ack_timeout: DEFAULT_HL7_ACK_TIMEOUT,
            down_after: DEFAULT_HL7_DOWN_AFTER,
        })
    }

    /// `host:port` for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `host:port`, `[v6]:port`, optionally with `mllp://` (or `mllps://`, which the caller
/// turns into `tls`) in front. The port is required: MLLP has no well-known port.
pub fn parse_endpoint(s: &str) -> Result<(String, u16), String> {
    let t = s.trim();
    let rest = t
        .strip_prefix("mllp://")
        .or_else(|| t.strip_prefix("mllps://"))
        .unwrap_or(t)
        .trim_end_matches('/');
    let expected = "expected host:port (or mllp://host:port)";
    if rest.is_empty() || rest.contains('/') || rest.contains('@') || rest.contains("://") {
        return Err(format!("{s:?} is not an MLLP endpoint, {expected}"));
    }
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let Some((h, after)) = r.split_once(']') else {
            return Err(format!("{s:?} has an unclosed '[', {expected}"));
        };
        match after.strip_prefix(':') {
            Some(p) => (h.to_owned(), p),
            None => return Err(format!("{s:?} has no port, {expected}")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p),
            None => return Err(format!("{s:?} has no port, {expected}")),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?} has no host, {expected}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host, p)),
        _ => Err(format!(
            "{s:?}: port {port:?} is not a port, expected 1 to 65535"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_host_and_port_with_or_without_the_scheme() {
        assert_eq!(parse_endpoint("ehr:2575"), Ok(("ehr".into(), 2575)));
        assert_eq!(
            parse_endpoint("mllp://10.0.0.5:6661/"),
            Ok(("10.0.0.5".into(), 6661))
        );
        assert_eq!(parse_endpoint("[::1]:7000"), Ok(("::1".into(), 7000)));
        for bad in [
            "ehr",
            "http://ehr:80",
            "ehr:0",
            "ehr:x",
            ":2575",
            "",
            "mllp://a/b:1",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
        assert!(parse_endpoint("ehr").unwrap_err().contains("no port"));
    }
}
