//! Notifications to staff: JSON webhooks with retries and backoff, off the alarm path.
//!
//! The alarm engine emits `notify { level }` events (raise, re-notify, escalation; see
//! docs/alarms.md). Each goes to every `[[notify]]` target of that level (an escalation past the
//! highest configured level goes to the highest one). A delivery is a `POST` of the event's JSON
//! (the `alarm` message with `"event": "notify"`) with the header `X-Vitalsd-Target`.
//!
//! - **Bounded.** The queue into the notifier and each target's queue hold at most one message
//!   per alarm ([`inbox`], [`QUEUE_CAP`] alarms): under overload a newer message of an alarm
//!   replaces its waiting one, never a higher-priority or higher-level page by a lower one.
//!   Without a `[[notify]]` target nothing is queued at all.
//! - **One queue per target.** Each target has its own task, so a dead or slow target never
//!   delays another target's pages.
//! - **Never stale.** When an alarm is acknowledged or cleared, its undelivered pages are
//!   dropped at every target; a target that already got an active page for it gets the
//!   `acknowledged` / `cleared` message instead. A newer page of an alarm replaces its older
//!   undelivered one. A page undelivered for [`GIVE_UP_AFTER`] is dropped (and reported): by
//!   then its alarm, if it still stands, has been paged again.
//! - **Durable.** Pending pages live in the store's `notify_outbox` table (written by the
//!   store's thread, group-committed), so they survive a restart, `kill -9` included, and are
//!   delivered once after it. A `notify-outbox.json` left by an older version is moved into the
//!   table at start and renamed `notify-outbox.json.migrated`.
//! - **A failing target is an alarm.** After [`FAILURES_TO_ALARM`] failed attempts in a row the
//!   hub raises `notify_failed` (medium, bed-less, naming the target); the next delivery that
//!   succeeds clears it. After a failure, while nothing is left to deliver, the target is probed
//!   with a `ping` message (`X-Vitalsd-Event: ping`) at the retry pace until it answers.

pub mod inbox;

use crate::clock::{rfc3339_ms, wall_ms};
use crate::config::NotifyTarget;
use crate::hub::Hub;
use crate::store::StoreHandle;
use crate::store::outbox::{OutboxOp, OutboxRow};
use inbox::{Coalesce, Inbox, Pushed};
use serde::Deserialize;
use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A page older than this is dropped from the outbox (and that is reported).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(600);
/// Failed attempts in a row that make a target's `notify_failed` alarm.
pub const FAILURES_TO_ALARM: u32 = 2;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// Alarms whose messages may wait in the notifier's queue, and in each target's.
pub const QUEUE_CAP: usize = 4_096;

/// What the notifier is told, in the order the alarm events happened.
#[derive(Debug, Clone)]
pub enum NotifyMsg {
    /// Page the targets of `level` with `body` (a `notify` alarm message).
    Page {
        level: u8,
        /// The alarm's priority (0 low, 1 medium, 2 high): with `level`, what a waiting page
        /// of the same alarm may not be replaced by less of ([`inbox`]).
        priority: u8,
        alarm_id: Option<u64>,
        /// Not to this target (index): a `notify_failed` page is not sent to the target that
        /// fails.
        except: Option<u8>,
        body: String,
    },
    /// The alarm was acknowledged or cleared (`body` is that message).
    Resolved { alarm_id: u64, body: String },
}

impl Coalesce for NotifyMsg {
    fn key(&self) -> Option<u64> {
        match self {
            NotifyMsg::Page { alarm_id, .. } => *alarm_id,
            NotifyMsg::Resolved { alarm_id, .. } => Some(*alarm_id),
        }
    }

    fn rank(&self) -> Option<(u8, u8)> {
        match self {
            NotifyMsg::Page {
                level, priority, ..
            } => Some((*priority, *level)),
            NotifyMsg::Resolved { .. } => None,
        }
    }
}

/// Targets for a level: those configured at it, or those of the highest level below it.
pub fn targets_for(targets: &[NotifyTarget], level: u8) -> Vec<usize> {
    let best = targets
        .iter()
        .map(|t| t.level)
        .filter(|l| *l <= level)
        .max();
    match best {
        Some(l) => (0..targets.len())
            .filter(|i| targets.get(*i).is_some_and(|t| t.level == l))
            .collect(),
        None => Vec::new(),
    }
}

/// Backoff after `attempts` failures: 1 s doubling to 60 s.
pub fn retry_delay(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    (FIRST_RETRY * (1u32 << shift)).min(MAX_RETRY)
}

/// What a target's queue does with a message: the pure part of a target task.
#[derive(Debug, Default)]
pub struct TargetQueue {
    /// Undelivered rows, in arrival order.
    pub rows: VecDeque<OutboxRow>,
    /// Alarms of which this target got an active page (it is told when they end).
    pub delivered: HashSet<u64>,
}

impl TargetQueue {
    /// A new page: replaces an undelivered older page of the same alarm. Returns the ids of
    /// rows it replaced.
    pub fn page(&mut self, row: OutboxRow) -> Vec<i64> {
        let mut gone = Vec::new();
        if let Some(alarm) = row.alarm_id {
            self.rows.retain(|r| {
                let same = r.alarm_id == Some(alarm);
                if same {
                    gone.push(r.id);
                }
                !same
            });
        }
        self.rows.push_back(row);
        gone
    }

    /// The alarm ended or was acknowledged: drops its undelivered rows (returned); `true` if
    /// the target had an active page for it and must be told.
    pub fn resolved(&mut self, alarm_id: u64) -> (Vec<i64>, bool) {
        let mut gone = Vec::new();
        self.rows.retain(|r| {
            let same = r.alarm_id == Some(alarm_id);
            if same {
                gone.push(r.id);
            }
            !same
        });
        (gone, self.delivered.remove(&alarm_id))
    }

    /// The row due first, if any is due at `now_ms`.
    pub fn due(&self, now_ms: i64) -> Option<usize> {
        let (i, r) = self
            .rows
            .iter()
            .enumerate()
            .min_by_key(|(_, r)| r.next_ms)?;
        (r.next_ms <= now_ms).then_some(i)
    }

    /// When the next row is due.
    pub fn next_ms(&self) -> Option<i64> {
        self.rows.iter().map(|r| r.next_ms).min()
    }
}

enum TargetCmd {
    Page(OutboxRow, (u8, u8)),
    Resolved { alarm_id: u64, body: String },
}

impl Coalesce for TargetCmd {
    fn key(&self) -> Option<u64> {
        match self {
            TargetCmd::Page(row, _) => row.alarm_id,
            TargetCmd::Resolved { alarm_id, .. } => Some(*alarm_id),
        }
    }

    fn rank(&self) -> Option<(u8, u8)> {
        match self {
            TargetCmd::Page(_, rank) => Some(*rank),
            TargetCmd::Resolved { .. } => None,
        }
    }
}

/// Hands out outbox row ids, shared by the manager and every target task.
#[derive(Clone)]
struct Ids(Arc<std::sync::atomic::AtomicI64>);

impl Ids {
    fn starting_after(last: i64) -> Ids {
        Ids(Arc::new(std::sync::atomic::AtomicI64::new(last)))
    }

    fn next(&self) -> i64 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }
}

/// Runs the notifier until cancelled: one task per target, pages from `inbox`. Without a
/// target it only clears what an older config left in the outbox and returns (nothing is
/// queued for it then: see `app::dispatch`).
pub async fn run(
    targets: Vec<NotifyTarget>,
    data_dir: std::path::PathBuf,
    store: StoreHandle,
    hub: Arc<Hub>,
    inbox: Arc<Inbox<NotifyMsg>>,
    cancel: CancellationToken,
) {
    let client = match reqwest::Client::builder().build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client; notifications are disabled");
            return;
        }
    };
    let mut rows = match store.outbox_load().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the notification outbox");
            Vec::new()
        }
    };
    let ids = Ids::starting_after(rows.iter().map(|r| r.id).max().unwrap_or(0));
    for r in migrate_json(&data_dir, &ids) {
        store.outbox(OutboxOp::Put(r.clone()));
        rows.push(r);
    }
    if !rows.is_empty() {
        tracing::info!(
            count = rows.len(),
            "resending notifications left from before the restart"
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    let mut senders = Vec::with_capacity(targets.len());
    for (idx, target) in targets.iter().enumerate() {
        let tx = Arc::new(Inbox::new(QUEUE_CAP, None));
        let trx = tx.clone();
        let mut queue = TargetQueue::default();
        for r in rows.iter().filter(|r| r.target == target.name) {
            queue.rows.push_back(r.clone());
        }
        let task = TargetTask {
            idx,
            target: target.clone(),
            client: client.clone(),
            store: store.clone(),
            hub: hub.clone(),
            queue,
            ids: ids.clone(),
            failures: 0,
            alarmed: false,
            probe_ms: None,
        };
        tasks.spawn(task.run(trx, cancel.clone()));
        senders.push(tx);
    }
    for r in rows
        .iter()
        .filter(|r| !targets.iter().any(|t| t.name == r.target))
    {
        tracing::warn!(target = %r.target, "notification for a target no longer configured; dropped");
        store.outbox(OutboxOp::Remove(r.id));
    }
    if targets.is_empty() {
        return;
    }
    loop {
        let msgs = tokio::select! {
            _ = cancel.cancelled() => break,
            m = inbox.recv_all() => m,
        };
        for msg in msgs {
            forward(&targets, &senders, &store, &ids, msg);
        }
    }
    drop(senders);
    while tasks.join_next().await.is_some() {}
}

/// Hands one message to the targets it is for: a page is recorded in the outbox first (so a
/// crash during delivery loses nothing), and a page that lost its place in a target's queue
/// (merged or dropped) is removed from it again.
fn forward(
    targets: &[NotifyTarget],
    senders: &[Arc<Inbox<TargetCmd>>],
    store: &StoreHandle,
    ids: &Ids,
    msg: NotifyMsg,
) {
    let undo = |pushed: Pushed<TargetCmd>| {
        if let Pushed::Coalesced(TargetCmd::Page(row, _))
        | Pushed::Dropped(TargetCmd::Page(row, _)) = pushed
        {
            store.outbox(OutboxOp::Remove(row.id));
        }
    };
    match msg {
        NotifyMsg::Page {
            level,
            priority,
            alarm_id,
            except,
            body,
        } => {
            let mut to = targets_for(targets, level);
            if to.is_empty() && !targets.is_empty() {
                tracing::warn!(level, "no notification target at or below this level");
            }
            to.retain(|i| except.is_none_or(|x| usize::from(x) != *i));
            let now = wall_ms();
            for i in to {
                let (Some(t), Some(tx)) = (targets.get(i), senders.get(i)) else {
                    continue;
                };
                let row = OutboxRow {
                    id: ids.next(),
                    target: t.name.clone(),
                    alarm_id,
                    body: body.clone(),
                    created_ms: now,
                    attempts: 0,
                    next_ms: now,
                    last_error: None,
                };
                store.outbox(OutboxOp::Put(row.clone()));
                undo(tx.push(TargetCmd::Page(row, (priority, level))));
            }
        }
        NotifyMsg::Resolved { alarm_id, body } => {
            for tx in senders {
                undo(tx.push(TargetCmd::Resolved {
                    alarm_id,
                    body: body.clone(),
                }));
            }
        }
    }
}

struct TargetTask {
    idx: usize,
    target: NotifyTarget,
    client: reqwest::Client,
    store: StoreHandle,
    hub: Arc<Hub>,
    queue: TargetQueue,
    ids: Ids,
    /// Failed attempts in a row.
    failures: u32,
    /// `notify_failed` is raised for this target.
    alarmed: bool,
    /// After a failure, while there is nothing to deliver: when to probe next (so that a
    /// failing target is noticed, and its recovery too, without a page to carry it).
    probe_ms: Option<i64>,
}

impl TargetTask {
    async fn run(mut self, rx: Arc<Inbox<TargetCmd>>, cancel: CancellationToken) {
        loop {
            // Take everything already told before the next attempt: an acknowledgement that
            // came in meanwhile cancels its page before it is tried again.
            for cmd in rx.take_all() {
                self.handle(cmd);
            }
            self.give_up_old();
            self.counters()
                .depth
                .store(self.queue.rows.len() as u64, Ordering::Relaxed);
            let now = wall_ms();
            if let Some(i) = self.queue.due(now) {
                self.attempt(i).await;
                continue;
            }
            if self.queue.rows.is_empty()
                && let Some(at) = self.probe_ms
                && at <= now
            {
                self.probe().await;
                continue;
            }
            let next = match self.queue.next_ms() {
                Some(a) => Some(a),
                None => self.probe_ms,
            };
            let wait = next
                .map(|t| Duration::from_millis(u64::try_from((t - now).max(0)).unwrap_or(0)))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                cmds = rx.recv_all() => {
                    for cmd in cmds {
                        self.handle(cmd);
                    }
                }
            }
        }
    }

    fn handle(&mut self, cmd: TargetCmd) {
        match cmd {
            TargetCmd::Page(row, _) => {
                for id in self.queue.page(row) {
                    self.store.outbox(OutboxOp::Remove(id));
                }
            }
            TargetCmd::Resolved { alarm_id, body } => {
                let (gone, tell) = self.queue.resolved(alarm_id);
                if !gone.is_empty() {
                    tracing::info!(target = %self.target.name, alarm = alarm_id, "undelivered page dropped: its alarm was acknowledged or cleared");
                }
                for id in gone {
                    self.store.outbox(OutboxOp::Remove(id));
                }
                if tell {
                    let now = wall_ms();
                    let row = OutboxRow {
                        id: self.ids.next(),
                        target: self.target.name.clone(),
                        // Not tied to the alarm: nothing cancels the "resolved" update.
                        alarm_id: None,
                        body,
                        created_ms: now,
                        attempts: 0,
                        next_ms: now,
                        last_error: None,
                    };
                    self.store.outbox(OutboxOp::Put(row.clone()));
                    self.queue.rows.push_back(row);
                }
            }
        }
    }

    fn give_up_old(&mut self) {
        let limit = i64::try_from(GIVE_UP_AFTER.as_millis()).unwrap_or(i64::MAX);
        let now = wall_ms();
        let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queue.rows)
            .into_iter()
            .partition(|r| now - r.created_ms > limit);
        self.queue.rows = keep.into();
        for r in old {
            tracing::error!(target = %self.target.name, attempts = r.attempts, "notification undelivered for 10 min; dropped");
            report(
                &self.hub,
                &self.target.name,
                "given_up",
                r.attempts,
                r.last_error.as_deref(),
            );
            self.store.outbox(OutboxOp::Remove(r.id));
        }
    }

    async fn post(&self, body: String, event: &str) -> Result<(), String> {
        let sent = self
            .client
            .post(&self.target.url)
            .timeout(self.target.timeout)
            .header("content-type", "application/json")
            .header("x-vitalsd-target", &self.target.name)
            .header("x-vitalsd-event", event)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn attempt(&mut self, i: usize) {
        let Some(row) = self.queue.rows.get(i).cloned() else {
            return;
        };
        let event = serde_json::from_str::<serde_json::Value>(&row.body)
            .ok()
            .and_then(|v| v["event"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "notify".to_owned());
        let result = self.post(row.body.clone(), &event).await;
        // The row may have been replaced meanwhile only by this task: it is still at `i`.
        match result {
            Ok(()) => {
                self.counters().delivered.fetch_add(1, Ordering::Relaxed);
                self.queue.rows.remove(i);
                self.store.outbox(OutboxOp::Remove(row.id));
                if event == "notify"
                    && let Some(a) = row.alarm_id
                {
                    self.queue.delivered.insert(a);
                }
                self.succeeded(row.attempts + 1);
            }
            Err(err) => {
                let attempts = row.attempts + 1;
                if let Some(r) = self.queue.rows.get_mut(i) {
                    r.attempts = attempts;
                    r.next_ms = wall_ms() + ms(retry_delay(attempts));
                    r.last_error = Some(err.clone());
                    self.store.outbox(OutboxOp::Put(r.clone()));
                }
                self.failed(attempts, &err);
            }
        }
    }

    async fn probe(&mut self) {
        let body = serde_json::json!({
            "v": crate::hub::wire::VERSION,
            "type": "ping",
            "target": self.target.name,
            "at": rfc3339_ms(wall_ms()),
        })
        .to_string();
        match self.post(body, "ping").await {
            Ok(()) => self.succeeded(self.failures + 1),
            Err(err) => self.failed(self.failures + 1, &err),
        }
    }

    /// This target's numbers for `/metrics`.
    fn counters(&self) -> Arc<crate::metrics::QueueCounters> {
        crate::metrics::global().queue(crate::metrics::QUEUE_NOTIFY, &self.target.name)
    }

    fn succeeded(&mut self, attempts: u32) {
        self.counters().failing.store(false, Ordering::Relaxed);
        if self.failures > 0 {
            tracing::info!(target = %self.target.name, "notification target delivers again");
            report(&self.hub, &self.target.name, "recovered", attempts, None);
        }
        self.failures = 0;
        self.probe_ms = None;
        if self.alarmed {
            self.alarmed = false;
            self.hub.notify_target(self.idx, false);
        }
    }

    fn failed(&mut self, attempts: u32, err: &str) {
        self.failures += 1;
        let c = self.counters();
        c.failures.fetch_add(1, Ordering::Relaxed);
        c.failing
            .store(self.failures >= FAILURES_TO_ALARM, Ordering::Relaxed);
        self.probe_ms = Some(wall_ms() + ms(retry_delay(self.failures)));
        if self.failures == 1 || self.failures.is_multiple_of(10) {
            tracing::warn!(target = %self.target.name, attempts, error = %err, "notification delivery failed; retrying");
            report(&self.hub, &self.target.name, "failed", attempts, Some(err));
        }
        if self.failures >= FAILURES_TO_ALARM && !self.alarmed {
            self.alarmed = true;
            self.hub.notify_target(self.idx, true);
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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

/// A pending delivery as versions before the SQLite outbox kept it in `notify-outbox.json`.
#[derive(Debug, Deserialize)]
struct JsonPending {
    target: String,
    body: String,
    created_ms: i64,
    attempts: u32,
    next_ms: i64,
    last_error: Option<String>,
}

/// Moves an old `notify-outbox.json` into outbox rows and renames the file
/// `notify-outbox.json.migrated` (a damaged one `.damaged`), so it is read once.
fn migrate_json(data_dir: &Path, ids: &Ids) -> Vec<OutboxRow> {
    let path = data_dir.join("notify-outbox.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read the old notification outbox");
            return Vec::new();
        }
    };
    let (rows, aside) = match serde_json::from_str::<Vec<JsonPending>>(&text) {
        Ok(old) => {
            let rows: Vec<OutboxRow> = old
                .into_iter()
                .map(|p| OutboxRow {
                    id: ids.next(),
                    alarm_id: serde_json::from_str::<serde_json::Value>(&p.body)
                        .ok()
                        .and_then(|v| v["alarm"]["id"].as_u64()),
                    target: p.target,
                    body: p.body,
                    created_ms: p.created_ms,
                    attempts: p.attempts,
                    next_ms: p.next_ms,
                    last_error: p.last_error,
                })
                .collect();
            tracing::info!(path = %path.display(), count = rows.len(), "old notification outbox moved into the store");
            (rows, path.with_extension("json.migrated"))
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "old notification outbox is damaged; kept aside");
            (Vec::new(), path.with_extension("json.damaged"))
        }
    };
    if let Err(e) = std::fs::rename(&path, &aside) {
        tracing::error!(path = %path.display(), error = %e, "cannot rename the old notification outbox");
    }
    rows
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

    fn row(id: i64, alarm: Option<u64>, next_ms: i64) -> OutboxRow {
        OutboxRow {
            id,
            target: "desk".into(),
            alarm_id: alarm,
            body: "{}".into(),
            created_ms: 0,
            attempts: 0,
            next_ms,
            last_error: None,
        }
    }

    #[test]
    fn an_escalation_past_the_last_level_goes_to_the_highest_targets() {
        let ts = [t("desk", 0), t("charge", 1), t("pager", 1)];
        let names = |l| {
            targets_for(&ts, l)
                .iter()
                .map(|i| ts[*i].name.clone())
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
    fn a_newer_page_of_an_alarm_replaces_its_undelivered_one() {
        let mut q = TargetQueue::default();
        assert!(q.page(row(1, Some(7), 0)).is_empty());
        assert!(q.page(row(2, Some(8), 0)).is_empty());
        assert_eq!(q.page(row(3, Some(7), 0)), [1]);
        let ids: Vec<i64> = q.rows.iter().map(|r| r.id).collect();
        assert_eq!(ids, [2, 3]);
    }

    #[test]
    fn an_acknowledged_alarms_pages_are_dropped_and_only_a_paged_target_is_told() {
        let mut q = TargetQueue::default();
        q.page(row(1, Some(7), 0));
        q.page(row(2, Some(8), 0));
        assert_eq!(q.resolved(7), (vec![1], false));
        q.delivered.insert(8);
        assert_eq!(q.resolved(8), (vec![2], true));
        assert!(q.rows.is_empty());
        assert_eq!(q.resolved(8), (vec![], false), "told once");
    }

    #[test]
    fn the_row_due_first_is_tried_first() {
        let mut q = TargetQueue::default();
        q.page(row(1, Some(1), 500));
        q.page(row(2, Some(2), 100));
        assert_eq!(q.due(50), None);
        assert_eq!(q.due(100), Some(1));
        assert_eq!(q.next_ms(), Some(100));
    }

    #[test]
    fn an_old_json_outbox_is_moved_into_rows_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("notify-outbox.json"),
            r#"[{"target":"desk","body":"{\"alarm\":{\"id\":42}}","created_ms":1,"attempts":2,"next_ms":3,"last_error":"refused"}]"#,
        )
        .unwrap();
        let ids = Ids::starting_after(10);
        let rows = migrate_json(dir.path(), &ids);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, 11);
        assert_eq!(rows[0].alarm_id, Some(42));
        assert_eq!(rows[0].attempts, 2);
        assert!(dir.path().join("notify-outbox.json.migrated").exists());
        assert!(migrate_json(dir.path(), &ids).is_empty());
        std::fs::write(dir.path().join("notify-outbox.json"), "{not json").unwrap();
        assert!(migrate_json(dir.path(), &ids).is_empty());
        assert!(dir.path().join("notify-outbox.json.damaged").exists());
    }
}
