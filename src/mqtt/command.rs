//! Commands from a central view to a site (docs/mqtt.md, "Commands"): signed with HMAC-SHA256
//! under a secret shared by the site's `[mqtt] command_secret` and the central's `[[sites]]
//! command_secret`, with a timestamp and a nonce against replay. Pure: the caller gives the
//! time and keeps the nonces ([`Nonces`]).
//!
//! On the wire (`vitalsd/v1/{site}/command`, QoS 1, not retained):
//! `{"v":1,"type":"command","body":"<JSON text>","mac":"<hex>"}`, where `mac` is the
//! HMAC-SHA256 of the bytes of `body` exactly as sent (no canonical form to agree on).

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How far a command's `at_ms` may be from the site's clock (either way).
pub const WINDOW_MS: i64 = 30_000;
/// The shortest secret accepted (characters).
pub const MIN_SECRET: usize = crate::config::MIN_COMMAND_SECRET;
/// Largest command payload a site reads.
pub const MAX_COMMAND: usize = 4096;

/// What a central asks of a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Action {
    /// Acknowledge the site's alarm `alarm` (the site's own id).
    Acknowledge { alarm: u64 },
    /// Pause a bed's alarm audio (`seconds`: the site's default when absent).
    PauseAudio { bed: String, seconds: Option<u64> },
}

/// The signed body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Body {
    #[serde(flatten)]
    pub action: Action,
    /// The site it is meant for: a command signed for one site is refused by another.
    pub site: String,
    /// The central user who asked (the audit trail's actor is `central/{actor}`).
    pub actor: String,
    /// When it was signed (wall clock, ms since the epoch).
    pub at_ms: i64,
    /// Random, once per command.
    pub nonce: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    v: u32,
    #[serde(rename = "type")]
    kind: String,
    body: String,
    mac: String,
}

fn key(secret: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
}

/// The payload to publish for `body`, signed with `secret`.
pub fn sign(secret: &str, body: &Body) -> Vec<u8> {
    let text = serde_json::to_string(body).unwrap_or_default();
    let mac = hex::encode(hmac::sign(&key(secret), text.as_bytes()).as_ref());
    serde_json::to_vec(&Envelope {
        v: 1,
        kind: "command".to_owned(),
        body: text,
        mac,
    })
    .unwrap_or_default()
}

/// A fresh nonce (64 random bits, hex).
pub fn nonce() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The nonces seen within the window, so that a command is applied once.
#[derive(Debug, Default)]
pub struct Nonces {
    seen: HashMap<String, i64>,
}

/// Checks a command payload for `site` at `now_ms`: the MAC, the site, the time window and
/// the nonce. The error says why it was refused (for the site's log).
pub fn verify(
    secret: &str,
    site: &str,
    payload: &[u8],
    now_ms: i64,
    nonces: &mut Nonces,
) -> Result<Body, String> {
    if payload.len() > MAX_COMMAND {
        return Err(format!(
            "{} bytes, longer than a command ({MAX_COMMAND})",
            payload.len()
        ));
    }
    let env: Envelope = serde_json::from_slice(payload).map_err(|e| {
        format!(r#"not a command envelope ({e}), expected {{"v":1,"type":"command","body":"...","mac":"..."}}"#)
    })?;
    if env.v != 1 || env.kind != "command" {
        return Err(format!(
            "v {} type {:?}, expected v 1 type \"command\"",
            env.v, env.kind
        ));
    }
    let mac = hex::decode(&env.mac)
        .map_err(|_| format!("mac {:?} is not hex, expected 64 hex digits", env.mac))?;
    hmac::verify(&key(secret), env.body.as_bytes(), &mac)
        .map_err(|_| "bad signature (not signed with this site's command_secret)".to_owned())?;
    let body: Body = serde_json::from_str(&env.body)
        .map_err(|e| format!("signed body is not a command ({e})"))?;
    if body.site != site {
        return Err(format!("meant for site {:?}, expected {site:?}", body.site));
    }
    let skew = now_ms - body.at_ms;
    if skew.abs() > WINDOW_MS {
        return Err(format!(
            "signed at {} ms, {skew} ms from now, expected within {WINDOW_MS} ms (replayed, or the clocks differ)",
            body.at_ms
        ));
    }
    nonces.seen.retain(|_, at| now_ms - *at <= 2 * WINDOW_MS);
    if nonces.seen.contains_key(&body.nonce) {
        return Err(format!("nonce {:?} already used (replayed)", body.nonce));
    }
    nonces.seen.insert(body.nonce.clone(), now_ms);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn ack(at_ms: i64, nonce: &str) -> Body {
        Body {
            action: Action::Acknowledge { alarm: 7 },
            site: "north".to_owned(),
            actor: "alice".to_owned(),
            at_ms,
            nonce: nonce.to_owned(),
        }
    }

    #[test]
    fn a_signed_command_is_accepted_once_and_forgeries_and_replays_are_refused() {
        let mut n = Nonces::default();
        let p = sign(SECRET, &ack(1_000_000, "a1"));
        assert_eq!(
            verify(SECRET, "north", &p, 1_000_500, &mut n),
            Ok(ack(1_000_000, "a1"))
        );
        let again = verify(SECRET, "north", &p, 1_000_600, &mut n).unwrap_err();
        assert!(again.contains("already used"), "{again}");
        let other_key = sign("another secret of thirty-two chars!", &ack(1_000_000, "a2"));
        let e = verify(SECRET, "north", &other_key, 1_000_000, &mut n).unwrap_err();
        assert!(e.contains("bad signature"), "{e}");
        let e = verify(
            SECRET,
            "south",
            &sign(SECRET, &ack(1_000_000, "a3")),
            1_000_000,
            &mut n,
        )
        .unwrap_err();
        assert!(e.contains("expected \"south\""), "{e}");
        let e = verify(
            SECRET,
            "north",
            &sign(SECRET, &ack(1_000_000, "a4")),
            1_040_000,
            &mut n,
        )
        .unwrap_err();
        assert!(e.contains("expected within"), "{e}");
        // The body changed after signing.
        let tampered = String::from_utf8(sign(SECRET, &ack(1_000_000, "a5")))
            .unwrap()
            .replace("\\\"alarm\\\":7", "\\\"alarm\\\":8");
        let e = verify(SECRET, "north", tampered.as_bytes(), 1_000_000, &mut n).unwrap_err();
        assert!(e.contains("bad signature"), "{e}");
        let e = verify(SECRET, "north", b"{}", 1_000_000, &mut n).unwrap_err();
        assert!(e.contains("expected"), "{e}");
    }

    #[test]
    fn a_pause_command_round_trips() {
        let b = Body {
            action: Action::PauseAudio {
                bed: "room1/A".to_owned(),
                seconds: Some(60),
            },
            ..ack(5, "p")
        };
        assert_eq!(
            verify(
                SECRET,
                "north",
                &sign(SECRET, &b),
                5,
                &mut Nonces::default()
            ),
            Ok(b)
        );
    }
}
