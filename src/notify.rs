//! Notifications to staff: JSON webhooks with retries and backoff, off the alarm path.
//!
//! The alarm engine emits `notify { level }` events (raise, re-notify, escalation; see
//! docs/alarms.md). Each goes to every `[[notify]]` target of that level (an escalation past the
//! highest configured level goes to the highest one). A delivery is a `POST` of the event's JSON
//! (the `alarm` message with `"event": "notify"`) with the header `X-Vitalsd-Target`.
//!
//! Undelivered notifications are kept in `<data_dir>/notify-outbox.json`, rewritten atomically
//! on every change, so they survive a restart and are sent when the daemon comes back. A target
//! that fails is reported to every dashboard (`notification` message) and in the log; retries
//! back off from 1 s to 60 s and go on until delivered or older than [`GIVE_UP_AFTER`].

use crate::clock::{rfc3339_ms, wall_ms};
use crate::config::NotifyTarget;
use crate::hub::Hub;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A notification older than this is dropped from the outbox (and that is reported).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// One pending delivery, as kept in the outbox file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pending {
    /// Target name.
    pub target: String,
    /// The JSON body.
    pub body: String,
    /// When it was created (wall ms).
    pub created_ms: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before (wall ms).
    pub next_ms: i64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// Targets for a level: those configured at it, or those of the highest level below it.
pub fn targets_for(targets: &[NotifyTarget], level: u8) -> Vec<&NotifyTarget> {
    let best = targets
        .iter()
        .map(|t| t.level)
        .filter(|l| *l <= level)
        .max();
    match best {
        Some(l) => targets.iter().filter(|t| t.level == l).collect(),
        None => Vec::new(),
    }
}

/// Backoff after `attempts` failures: 1 s doubling to 60 s.
pub fn retry_delay(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    (FIRST_RETRY * (1u32 << shift)).min(MAX_RETRY)
}

/// The outbox file: a JSON array of [`Pending`], replaced atomically.
#[derive(Debug, Clone)]
pub struct Outbox {
    path: PathBuf,
}

impl Outbox {
    /// The outbox in `data_dir`.
    pub fn new(data_dir: &Path) -> Outbox {
        Outbox {
            path: data_dir.join("notify-outbox.json"),
        }
    }

    /// What was pending when the daemon last stopped. A damaged file is renamed aside (and
    /// reported) rather than silently ignored.
    pub fn load(&self) -> Vec<Pending> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot read the notification outbox");
                return Vec::new();
            }
        };
        match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                let aside = self.path.with_extension("json.damaged");
                let _ = std::fs::rename(&self.path, &aside);
                tracing::error!(path = %aside.display(), error = %e, "notification outbox is damaged; kept aside");
                Vec::new()
            }
        }
    }

    /// Replaces the file with `pending` (write, fsync, rename).
    pub fn save(&self, pending: &[Pending]) -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec(pending).map_err(std::io::Error::other)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// Runs the notifier until cancelled: takes notify bodies from `rx`, delivers them.
pub async fn run(
    targets: Vec<NotifyTarget>,
    outbox: Outbox,
    hub: Arc<Hub>,
    mut rx: mpsc::UnboundedReceiver<(u8, String)>,
    cancel: CancellationToken,
) {
    let client = match reqwest::Client::builder().build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client; notifications are disabled");
            return;
        }
    };
    let mut pending = outbox.load();
    if !pending.is_empty() {
        tracing::info!(
            count = pending.len(),
            "resending notifications left from before the restart"
        );
    }
    let mut failing: std::collections::BTreeSet<String> = Default::default();
    loop {
        // Deliver what is due, one at a time per round (each has its own timeout).
        let now = wall_ms();
        let mut changed = false;
        let mut i = 0;
        while i < pending.len() {
            if cancel.is_cancelled() {
                break;
            }
            if pending[i].next_ms > now {
                i += 1;
                continue;
            }
            let p = &mut pending[i];
            let Some(target) = targets.iter().find(|t| t.name == p.target) else {
                tracing::warn!(target = %p.target, "notification for a target no longer configured; dropped");
                pending.remove(i);
                changed = true;
                continue;
            };
            let sent = client
                .post(&target.url)
                .timeout(target.timeout)
                .header("content-type", "application/json")
                .header("x-vitalsd-target", &target.name)
                .body(p.body.clone())
                .send()
                .await;
            let result = match sent {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            };
            changed = true;
            match result {
                Ok(()) => {
                    if failing.remove(&target.name) {
                        report(&hub, &target.name, "recovered", p.attempts + 1, None);
                    }
                    pending.remove(i);
                }
                Err(err) => {
                    p.attempts += 1;
                    p.next_ms = now + retry_delay(p.attempts).as_millis() as i64;
                    p.last_error = Some(err.clone());
                    if failing.insert(target.name.clone()) || p.attempts.is_multiple_of(10) {
                        tracing::warn!(target = %target.name, attempts = p.attempts, error = %err, "notification delivery failed; retrying");
                        report(&hub, &target.name, "failed", p.attempts, Some(&err));
                    }
                    if now - p.created_ms > GIVE_UP_AFTER.as_millis() as i64 {
                        tracing::error!(target = %target.name, "notification undelivered for 24 h; dropped");
                        report(&hub, &target.name, "given_up", p.attempts, Some(&err));
                        pending.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
        }
        if changed && let Err(e) = outbox.save(&pending) {
            tracing::error!(error = %e, "cannot write the notification outbox");
        }
        let next_due = pending.iter().map(|p| p.next_ms).min();
        let wait = next_due
            .map(|t| Duration::from_millis(u64::try_from((t - wall_ms()).max(0)).unwrap_or(0)))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = cancel.cancelled() => {
                if let Err(e) = outbox.save(&pending) {
                    tracing::error!(error = %e, "cannot write the notification outbox");
                }
                return;
            }
            _ = tokio::time::sleep(wait) => {}
            msg = rx.recv() => {
                let Some((level, body)) = msg else { return };
                let now = wall_ms();
                let to = targets_for(&targets, level);
                if to.is_empty() && !targets.is_empty() {
                    tracing::warn!(level, "no notification target at or below this level");
                }
                for t in to {
                    pending.push(Pending {
                        target: t.name.clone(),
                        body: body.clone(),
                        created_ms: now,
                        attempts: 0,
                        next_ms: now,
                        last_error: None,
                    });
                }
                // Persist before trying, so a crash during delivery loses nothing.
                if let Err(e) = outbox.save(&pending) {
                    tracing::error!(error = %e, "cannot write the notification outbox");
                }
            }
        }
    }
}

fn report(hub: &Hub, target: &str, status: &str, attempts: u32, error: Option<&str>) {
    hub.publish_priority(serde_json::json!({
        "type": "notification",
        "target": target,
        "status": status,
        "attempts": attempts,
        "error": error,
        "at": rfc3339_ms(wall_ms()),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, level: u8) -> NotifyTarget {
        NotifyTarget {
            name: name.into(),
            url: "http://127.0.0.1:9/x".into(),
            level,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn an_escalation_past_the_last_level_goes_to_the_highest_targets() {
        let ts = [t("desk", 0), t("charge", 1), t("pager", 1)];
        let names = |l| {
            targets_for(&ts, l)
                .iter()
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(0), ["desk"]);
        assert_eq!(names(1), ["charge", "pager"]);
        assert_eq!(names(5), ["charge", "pager"]);
        let only_high = [t("pager", 2)];
        assert!(targets_for(&only_high, 0).is_empty());
    }

    #[test]
    fn retries_back_off_from_one_second_to_a_minute() {
        let got: Vec<u64> = (1..=9).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn the_outbox_survives_a_restart_and_a_damaged_one_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::new(dir.path());
        assert!(ob.load().is_empty());
        let p = Pending {
            target: "desk".into(),
            body: "{}".into(),
            created_ms: 1,
            attempts: 2,
            next_ms: 3,
            last_error: Some("refused".into()),
        };
        ob.save(std::slice::from_ref(&p)).unwrap();
        assert_eq!(Outbox::new(dir.path()).load(), vec![p]);
        std::fs::write(dir.path().join("notify-outbox.json"), "{not json").unwrap();
        assert!(ob.load().is_empty());
        assert!(dir.path().join("notify-outbox.json.damaged").exists());
    }
}
