//! The notifier's outbox: pages not yet delivered, one row per (page, target). The notifier
//! records changes with [`StoreHandle::outbox`](super::StoreHandle::outbox) (never waiting:
//! a page is never held up by the store); the writer thread commits the changes of one
//! wake-up in its group commit (one fsynced transaction with the round's alarm events and
//! alarm states). Read back at start, so pending pages survive a restart, `kill -9` included.
//!
//! Unwritten changes wait beside the store's command queue, not in it, coalesced per row
//! ([`OutboxChanges`]): only a row's latest change is kept (a retry's update replaces the
//! page's insert; a delivery's removal replaces both), so while the store stalls they take
//! at most one entry per page (the bodies only of pages still pending, which the notifier's
//! own queues bound), never the command queue's room.

use super::StoreError;
use rusqlite::{Connection, params};

/// One pending delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Unique per delivery (the notifier hands them out).
    pub id: i64,
    /// Target name.
    pub target: String,
    /// The alarm the page is about, if any.
    pub alarm_id: Option<u64>,
    /// The JSON body.
    pub body: String,
    /// When it was queued, wall ms.
    pub created_ms: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before, wall ms.
    pub next_ms: i64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// A change to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxOp {
    /// Insert or replace the row with this id.
    Put(OutboxRow),
    /// Delivered, dropped or superseded.
    Remove(i64),
}

impl OutboxOp {
    fn id(&self) -> i64 {
        match self {
            OutboxOp::Put(r) => r.id,
            OutboxOp::Remove(id) => *id,
        }
    }
}

/// Outbox changes not yet written: the latest per row (ids are never reused, and a change
/// sets a row whole, so the latest is all that needs writing).
#[derive(Debug, Default)]
pub(crate) struct OutboxChanges(std::collections::BTreeMap<i64, OutboxOp>);

impl OutboxChanges {
    /// Records `op`, replacing any unwritten change of the same row.
    pub fn add(&mut self, op: OutboxOp) {
        self.0.insert(op.id(), op);
    }

    /// Adds every change of `later` (newer than those here).
    pub fn append(&mut self, later: &mut OutboxChanges) {
        self.0.append(&mut later.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Applies `ops` inside the caller's transaction (the writer's group commit).
pub(crate) fn apply_tx(
    tx: &rusqlite::Transaction<'_>,
    ops: &OutboxChanges,
) -> Result<(), StoreError> {
    if ops.is_empty() {
        return Ok(());
    }
    let mut put = tx.prepare_cached(
        "INSERT OR REPLACE INTO notify_outbox \
         (id, target, alarm_id, body, created_ms, attempts, next_ms, last_error) \
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
    )?;
    let mut remove = tx.prepare_cached("DELETE FROM notify_outbox WHERE id = ?1")?;
    for op in ops.0.values() {
        match op {
            OutboxOp::Put(r) => {
                put.execute(params![
                    r.id,
                    r.target,
                    r.alarm_id.map(|a| i64::try_from(a).unwrap_or(i64::MAX)),
                    r.body,
                    r.created_ms,
                    r.attempts,
                    r.next_ms,
                    r.last_error
                ])?;
            }
            OutboxOp::Remove(id) => {
                remove.execute([id])?;
            }
        }
    }
    Ok(())
}

/// Every pending row, oldest first.
pub(crate) fn load(conn: &Connection) -> Result<Vec<OutboxRow>, StoreError> {
    let mut st = conn.prepare(
        "SELECT id, target, alarm_id, body, created_ms, attempts, next_ms, last_error \
         FROM notify_outbox ORDER BY id",
    )?;
    let rows = st
        .query_map([], |r| {
            Ok(OutboxRow {
                id: r.get(0)?,
                target: r.get(1)?,
                alarm_id: r
                    .get::<_, Option<i64>>(2)?
                    .and_then(|a| u64::try_from(a).ok()),
                body: r.get(3)?,
                created_ms: r.get(4)?,
                attempts: r.get(5)?,
                next_ms: r.get(6)?,
                last_error: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
