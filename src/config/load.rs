//! Validation: turns what serde read ([`super::raw`]) into the types of [`super`], or into a
//! [`ConfigError`] that names the file, line, column and key, quotes the bad value and says what
//! was expected.
//!
//! Validation stops at the first error: a config that does not load keeps the daemon from
//! starting, and one precise message is easier to act on than a page of follow-on errors.

// Named here by validators in other files of the folder.
pub(super) use super::check::{check_duration, check_text, join_names};
pub(super) use super::error::{ConfigError, Source, line_col};
use super::profiles::load_profiles;
use super::raw::RawConfig;
pub(super) use super::topology::resolve_file;
use super::topology::{Taken, resolve_dir, validate_room};
use super::values::MqttUrl;
use super::{AlarmSettings, Config, NotifyTarget, Profile, User};
use crate::model::WrittenDuration;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// Where `listen` points when the config does not say: loopback only, so that the API is not
/// reachable from the network unless the clinic asks for it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Reads and validates the clinic config file, with the device profiles it refers to.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    load_config_str(&read_file(path, "config file")?, path)
}

/// Reads a TOML file's text; the error names the file and what it is (`what`).
pub(crate) fn read_file(path: &Path, what: &'static str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        what,
        source,
    })
}

/// The directory relative paths in a file read from `origin` resolve against.
pub(crate) fn base_dir(origin: &Path) -> &Path {
    origin
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Validates config text as if read from `origin`: relative paths resolve against `origin`'s
/// directory, and messages name `origin`. Tests use it without writing files.
pub fn load_config_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let src = Source { origin, text };
    let raw: RawConfig = src.read()?;
    let base = base_dir(origin);
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
    validate_mqtt(&src, base, &raw, &mut cfg)?;
    validate_hl7(&src, base, &raw, &mut cfg)?;
    Ok(cfg)
}

/// The alarm-limit presets shipped in `config/presets/`, embedded so a deployed binary needs no
/// repository.
pub const BUILTIN_PRESETS: &[(&str, &str)] = &[(
    "ketamine-session",
    include_str!("../../config/presets/ketamine-session.toml"),
)];

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

/// `[[users]]` tables: unique names and tokens, a known role.
pub(super) fn validate_users(
    src: &Source<'_>,
    raw: &[Spanned<super::raw::RawUser>],
) -> Result<Vec<User>, ConfigError> {
    let mut users = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut tokens: HashMap<[u8; 32], usize> = HashMap::new();
    for (i, u) in raw.iter().enumerate() {
        let key = format!("users[{i}]");
        let u = u.get_ref();
        let name = u.name.get_ref().as_str().to_owned();
        let line = line_col(src.text, u.name.span().start).0;
        if let Some(first) = names.insert(name.clone(), line) {
            return Err(src.err(
                u.name.span(),
                format!("{key}.name"),
                format!("duplicate user {name:?} (first on line {first}), expected a unique name"),
            ));
        }
        let role = *u.role.get_ref();
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
        users.push(User {
            name,
            role,
            token,
            token_sha256,
        });
    }
    Ok(users)
}

/// Users, `[alarms]`, `[[notify]]` and each recliner's preset.
fn validate_alarm_parts(
    src: &Source<'_>,
    raw: &RawConfig,
    cfg: &mut Config,
    presets: BTreeMap<String, crate::alarm::BedLimits>,
) -> Result<(), ConfigError> {
    cfg.users = validate_users(src, &raw.users)?;
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
        let d = |v: &Option<Spanned<WrittenDuration>>,
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
        let name = n.name.get_ref().as_str().to_owned();
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
        let url = n.url.get_ref().as_str().to_owned();
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
    if let Some(r) = &raw.report
        && let Some(tz) = &r.get_ref().time_zone
    {
        // The embedded IANA database knows every name, whatever the system has installed.
        if let Err(e) = jiff::tz::TimeZone::get(tz.get_ref()) {
            return Err(src.err(
                tz.span(),
                "report.time_zone",
                format!(
                    "unknown time zone {:?} ({e}), expected an IANA name such as \"Europe/Berlin\"",
                    tz.get_ref()
                ),
            ));
        }
        cfg.report_time_zone = Some(tz.get_ref().clone());
    }
    if let Some(st) = &raw.storage
        && let Some(n) = &st.get_ref().buffer_cap
    {
        cfg.store_buffer_cap = match usize::try_from(*n.get_ref()) {
            Ok(v) if (16..=100_000_000).contains(&v) => Some(v),
            _ => {
                return Err(src.err(
                    n.span(),
                    "storage.buffer_cap",
                    format!(
                        "{} is out of range, expected 16 to 100000000 readings",
                        n.get_ref()
                    ),
                ));
            }
        };
    }
    Ok(())
}

/// The `[mqtt]` table.
fn validate_mqtt(
    src: &Source<'_>,
    base: &Path,
    raw: &RawConfig,
    cfg: &mut Config,
) -> Result<(), ConfigError> {
    let Some(m) = &raw.mqtt else { return Ok(()) };
    let m = m.get_ref();
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
    let d = |v: &Option<Spanned<WrittenDuration>>,
             key: &str,
             dflt: Duration|
     -> Result<Duration, ConfigError> {
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
    let command_secret = m
        .command_secret
        .as_ref()
        .map(|s| check_secret(src, s, "mqtt.command_secret"))
        .transpose()?;
    cfg.mqtt = Some(super::MqttSettings {
        url: m.url.get_ref().trimmed(),
        host: m.url.get_ref().host.clone(),
        port: m.url.get_ref().port,
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
        command_secret,
        tls: mqtt_tls(src, base, &m.url, &m.ca, &m.cert, &m.key, "mqtt")?,
    });
    Ok(())
}

/// `[mqtt] ca`, `cert`, `key`: only with `mqtts://`; cert and key together.
pub(super) fn mqtt_tls(
    src: &Source<'_>,
    base: &Path,
    url: &Spanned<MqttUrl>,
    ca: &Option<Spanned<String>>,
    cert: &Option<Spanned<String>>,
    key: &Option<Spanned<String>>,
    table: &str,
) -> Result<Option<super::MqttTls>, ConfigError> {
    if !url.get_ref().is_tls() {
        if let Some((name, v)) = [("ca", ca), ("cert", cert), ("key", key)]
            .into_iter()
            .find_map(|(n, v)| v.as_ref().map(|v| (n, v)))
        {
            return Err(src.err(
                v.span(),
                format!("{table}.{name}"),
                format!(
                    "a TLS file for the plain {:?}, expected an mqtts:// url",
                    url.get_ref().written()
                ),
            ));
        }
        return Ok(None);
    }
    let file = |v: &Option<Spanned<String>>, name: &str| {
        v.as_ref()
            .map(|v| resolve_file(src, base, v, &format!("{table}.{name}")))
            .transpose()
    };
    let client = match (cert, key) {
        (Some(_), Some(_)) => Some((
            file(cert, "cert")?.unwrap_or_default(),
            file(key, "key")?.unwrap_or_default(),
        )),
        (None, None) => None,
        (Some(v), None) | (None, Some(v)) => {
            let name = if cert.is_some() { "cert" } else { "key" };
            return Err(src.err(
                v.span(),
                format!("{table}.{name}"),
                "a client certificate needs its key, expected both cert and key (or neither)"
                    .to_owned(),
            ));
        }
    };
    Ok(Some(super::MqttTls {
        ca: file(ca, "ca")?,
        client,
    }))
}

/// A command-signing secret (`[mqtt] command_secret`, a central's `[[sites]] command_secret`).
pub(super) fn check_secret(
    src: &Source<'_>,
    s: &Spanned<String>,
    key: &str,
) -> Result<String, ConfigError> {
    let min = super::MIN_COMMAND_SECRET;
    let text = s.get_ref();
    if text.chars().count() < min || text.chars().any(char::is_whitespace) {
        return Err(src.err(
            s.span(),
            key,
            format!(
                "a secret of {} characters, expected at least {min} characters without spaces (e.g. `openssl rand -hex 32`)",
                text.chars().count()
            ),
        ));
    }
    Ok(text.clone())
}

/// The `[[hl7]]` tables (docs/configuration.md, docs/hl7.md).
fn validate_hl7(
    src: &Source<'_>,
    base: &Path,
    raw: &RawConfig,
    cfg: &mut Config,
) -> Result<(), ConfigError> {
    use super::{Hl7Endpoint, Hl7Kind};
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, h) in raw.hl7.iter().enumerate() {
        let key = format!("hl7[{i}]");
        let h = h.get_ref();
        let kind = *h.kind.get_ref();
        let mut ep = Hl7Endpoint::new(kind, h.endpoint.get_ref())
            .map_err(|e| src.err(h.endpoint.span(), format!("{key}.endpoint"), e))?;
        ep.name = match &h.name {
            Some(n) => n.get_ref().as_str().to_owned(),
            None => format!("hl7-{}-{}", kind.name(), i + 1),
        };
        let span = h.name.as_ref().map_or(h.kind.span(), Spanned::span);
        let line = line_col(src.text, span.start).0;
        if let Some(first) = names.insert(ep.name.clone(), line) {
            return Err(src.err(
                span,
                format!("{key}.name"),
                format!(
                    "duplicate HL7 endpoint {:?} (first on line {first}), expected a unique name",
                    ep.name
                ),
            ));
        }
        ep.tls = h.tls.unwrap_or(false) || h.endpoint.get_ref().trim().starts_with("mllps://");
        if let Some(ca) = &h.ca {
            if !ep.tls {
                return Err(src.err(
                    ca.span(),
                    format!("{key}.ca"),
                    "a CA file without TLS, expected tls = true too".to_owned(),
                ));
            }
            ep.ca = Some(resolve_file(src, base, ca, &format!("{key}.ca"))?);
        }
        let text = |v: &Option<Spanned<String>>, k: &str| -> Result<Option<String>, ConfigError> {
            v.as_ref()
                .map(|v| check_text(src, v, &format!("{key}.{k}")))
                .transpose()
        };
        if let Some(v) = text(&h.sending_application, "sending_application")? {
            ep.sending_application = v;
        }
        if let Some(v) = text(&h.sending_facility, "sending_facility")? {
            ep.sending_facility = v;
        }
        if let Some(v) = text(&h.receiving_application, "receiving_application")? {
            ep.receiving_application = v;
        }
        if let Some(v) = text(&h.receiving_facility, "receiving_facility")? {
            ep.receiving_facility = v;
        }
        let d = |v: &Option<Spanned<String>>,
                 k: &str,
                 range: (Duration, Duration, &str, &str),
                 dflt: Duration|
         -> Result<Duration, ConfigError> {
            match v {
                Some(v) => check_duration(src, v, &format!("{key}.{k}"), range),
                None => Ok(dflt),
            }
        };
        if let (Hl7Kind::Pcd04, Some(v)) = (kind, &h.interval) {
            return Err(src.err(
                v.span(),
                format!("{key}.interval"),
                "an interval on a pcd04 endpoint (alarms are sent as they happen), expected it only with kind = \"pcd01\"".to_owned(),
            ));
        }
        ep.interval = d(
            &h.interval,
            "interval",
            (
                Duration::from_secs(5),
                Duration::from_secs(86_400),
                "5s",
                "24h",
            ),
            super::hl7::DEFAULT_HL7_INTERVAL,
        )?;
        ep.ack_timeout = d(
            &h.ack_timeout,
            "ack_timeout",
            (Duration::from_secs(1), Duration::from_secs(300), "1s", "5m"),
            super::hl7::DEFAULT_HL7_ACK_TIMEOUT,
        )?;
        ep.down_after = d(
            &h.down_after,
            "down_after",
            (
                Duration::from_secs(5),
                Duration::from_secs(3600),
                "5s",
                "1h",
            ),
            super::hl7::DEFAULT_HL7_DOWN_AFTER,
        )?;
        cfg.hl7.push(ep);
    }
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

fn validate_config(
    src: &Source<'_>,
    base: &Path,
    raw: &RawConfig,
    profiles: &BTreeMap<String, Arc<Profile>>,
) -> Result<Config, ConfigError> {
    let listen = raw.listen.as_ref().map_or_else(
        || SocketAddr::from(([127, 0, 0, 1], 8080)),
        |l| l.get_ref().0,
    );
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
        store_buffer_cap: None,
        api: crate::config::ApiSettings::default(),
        tls: None,
        mqtt: None,
        report_time_zone: None,
        hl7: Vec::new(),
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

#[cfg(test)]
mod tests;
