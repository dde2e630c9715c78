//! The `[api]` and `[tls]` tables, and the rule that a non-loopback listener serves TLS.

use super::{ApiSettings, load_config_str};
use std::path::Path;
use std::time::Duration;

const ROOMS: &str = r#"
[[rooms]]
id = "room1"
name = "Room 1"

[[rooms.recliners]]
id = "A"

[[rooms.recliners.devices]]
id = "room1-A-nibp"
profile = "suntech-advantage"
tcp = "192.168.10.21:4001"
"#;

const USERS: &str =
    "[[users]]\nname = \"nurse\"\nrole = \"nurse\"\ntoken = \"0123456789abcdef0123\"\n";

fn config(top: &str) -> String {
    format!("data_dir = \"data\"\n{top}\n{ROOMS}")
}

fn origin() -> &'static Path {
    Path::new("config/test.toml")
}

#[test]
fn api_defaults_hold_when_the_table_is_absent() {
    let cfg = load_config_str(&config("listen = \"127.0.0.1:8080\""), origin()).unwrap();
    assert_eq!(cfg.api, ApiSettings::default());
    assert_eq!(cfg.tls, None);
}

#[test]
fn api_keys_are_read_and_normalised() {
    let cfg = load_config_str(
        &config(
            "[api]\nallowed_hosts = [\"Station.Clinic.LAN\"]\nallowed_origins = [\"https://Portal.clinic.lan/\"]\nmax_connections = 64\nheader_timeout = \"5s\"\nrequest_timeout = \"1m\"\nmax_body = 4096\n",
        ),
        origin(),
    )
    .unwrap();
    assert_eq!(cfg.api.allowed_hosts, ["station.clinic.lan"]);
    assert_eq!(cfg.api.allowed_origins, ["https://portal.clinic.lan"]);
    assert_eq!(cfg.api.max_connections, 64);
    assert_eq!(cfg.api.header_timeout, Duration::from_secs(5));
    assert_eq!(cfg.api.request_timeout, Duration::from_secs(60));
    assert_eq!(cfg.api.max_body, 4096);
}

#[test]
fn bad_api_values_name_the_key_and_line() {
    for (top, key, line) in [
        (
            "[api]\nallowed_hosts = [\"http://x\"]",
            "api.allowed_hosts[0]",
            3,
        ),
        (
            "[api]\nallowed_origins = [\"evil.example\"]",
            "api.allowed_origins[0]",
            3,
        ),
        ("[api]\nmax_connections = 1", "api.max_connections", 3),
        ("[api]\nheader_timeout = \"0s\"", "api.header_timeout", 3),
        ("[api]\nmax_body = 10", "api.max_body", 3),
        ("[api]\nmax_connection = 10", "api.max_connection", 3),
        (
            "[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"",
            "tls.cert",
            3,
        ),
    ] {
        let err = load_config_str(&config(top), origin()).unwrap_err();
        assert!(
            err.key().is_some_and(|k| k.starts_with(key)),
            "{top}: {err}"
        );
        assert_eq!(err.line(), Some(line), "{top}: {err}");
    }
}

#[test]
fn a_non_loopback_listener_needs_tls_or_an_explicit_lab_switch() {
    let plain = config(&format!("listen = \"0.0.0.0:8443\"\n{USERS}"));
    let err = load_config_str(&plain, origin()).unwrap_err();
    assert_eq!(err.key(), Some("listen"), "{err}");
    assert!(err.to_string().contains("[tls]"), "{err}");
    let lab = config(&format!(
        "listen = \"0.0.0.0:8443\"\n{USERS}\n[api]\ninsecure_allow_plaintext = true\n"
    ));
    assert!(
        load_config_str(&lab, origin())
            .unwrap()
            .api
            .insecure_allow_plaintext
    );
    let dir = tempfile::tempdir().unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::write(dir.path().join(f), "").unwrap();
    }
    let tls = config(&format!(
        "listen = \"0.0.0.0:8443\"\n{USERS}\n[tls]\ncert = \"{0}/cert.pem\"\nkey = \"{0}/key.pem\"\n",
        dir.path().display()
    ));
    let cfg = load_config_str(&tls, origin()).unwrap();
    assert_eq!(cfg.tls.unwrap().cert, dir.path().join("cert.pem"));
}
