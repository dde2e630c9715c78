//! The HL7 outbox (src/hl7): messages built but not yet acknowledged by their endpoint, one row
//! per (message, endpoint), in the order they are to be sent. The HL7 sender records changes
//! with [`StoreHandle::hl7`](super::StoreHandle::hl7) (never waiting); the writer thread
//! commits the changes of one wake-up in one transaction (group commit), so messages survive
//! a restart, `kill -9` included, and are sent in order after it.
//!
//! The row id is the message control id (MSH-10). `hl7_counter` keeps the highest id ever
//! handed out, so an id is never used twice, even after the outbox emptied and the daemon
//! restarted.

use super::StoreError;
use rusqlite::{Connection, params};

/// One message waiting for its endpoint's ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Row {
    /// The message control id (MSH-10); increasing in the order messages were built.
    pub id: i64,
    /// The endpoint's name (`[[hl7]] name`).
    pub endpoint: String,
    /// The message (ER7 text, segments ended by CR), without MLLP framing.
    pub body: String,
    /// When it was built, wall ms.
    pub created_ms: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// A change to the HL7 outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hl7Op {
    /// Insert or replace the row with this id.
    Put(Hl7Row),
    /// Acknowledged, or given up.
    Remove(i64),
}

/// Applies `ops` in order in one transaction.
pub(crate) fn apply(conn: &mut Connection, ops: &[Hl7Op]) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut put = tx.prepare_cached(
            "INSERT OR REPLACE INTO hl7_outbox \
             (id, endpoint, body, created_ms, attempts, last_error) VALUES (?1,?2,?3,?4,?5,?6)",
        )?;
        let mut counter = tx.prepare_cached("UPDATE hl7_counter SET last = max(last, ?1)")?;
        let mut remove = tx.prepare_cached("DELETE FROM hl7_outbox WHERE id = ?1")?;
        for op in ops {
            match op {
                Hl7Op::Put(r) => {
                    put.execute(params![
                        r.id,
                        r.endpoint,
                        r.body,
                        r.created_ms,
                        r.attempts,
                        r.last_error
                    ])?;
                    counter.execute([r.id])?;
                }
                Hl7Op::Remove(id) => {
                    remove.execute([id])?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// Every waiting message, oldest first, and the highest control id ever handed out.
pub(crate) fn load(conn: &Connection) -> Result<(Vec<Hl7Row>, i64), StoreError> {
    let mut st = conn.prepare(
        "SELECT id, endpoint, body, created_ms, attempts, last_error FROM hl7_outbox ORDER BY id",
    )?;
    let rows = st
        .query_map([], |r| {
            Ok(Hl7Row {
                id: r.get(0)?,
                endpoint: r.get(1)?,
                body: r.get(2)?,
                created_ms: r.get(3)?,
                attempts: r.get(4)?,
                last_error: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let counter: i64 = conn
        .query_row("SELECT max(last) FROM hl7_counter", [], |r| {
            r.get::<_, Option<i64>>(0)
        })?
        .unwrap_or(0);
    let last = rows.iter().map(|r| r.id).max().unwrap_or(0).max(counter);
    Ok((rows, last))
}
