//! Sessions: a patient's stay in a recliner, from admission to discharge, with the events of
//! the session (doses, notes, phase changes, the pre-dose baseline). One open session per bed.
//!
//! The write functions run on the writer thread ([`super::StoreHandle::write`]) in fsynced
//! transactions; the API confirms only after they return.

use super::StoreError;
use super::writer::durable;
use crate::alarm::Baseline;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

/// An admission request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Admit {
    /// What the dashboard shows, e.g. initials. Not a full name: it appears on screens.
    pub label: String,
    /// Medical record number, if the clinic uses one (shown in exports only).
    #[serde(default)]
    pub mrn: Option<String>,
    /// Body weight, kg (weight-based dosing).
    #[serde(default)]
    pub weight_kg: Option<f64>,
}

impl Admit {
    /// Checks lengths and ranges; the error quotes the value.
    pub fn validate(&self) -> Result<(), StoreError> {
        let label = self.label.trim();
        if label.is_empty() || label.chars().count() > 32 {
            return Err(StoreError::Invalid {
                field: "label",
                value: self.label.clone(),
                expected: "1 to 32 characters (initials or a short label)",
            });
        }
        if let Some(mrn) = &self.mrn
            && (mrn.trim().is_empty() || mrn.chars().count() > 64)
        {
            return Err(StoreError::Invalid {
                field: "mrn",
                value: mrn.clone(),
                expected: "1 to 64 characters, or no mrn",
            });
        }
        if let Some(w) = self.weight_kg
            && !(w.is_finite() && (1.0..=400.0).contains(&w))
        {
            return Err(StoreError::Invalid {
                field: "weight_kg",
                value: w.to_string(),
                expected: "a weight from 1 to 400 kg",
            });
        }
        Ok(())
    }
}

/// A session phase, in the order a session normally goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Preparation,
    Dosing,
    Monitoring,
    Recovery,
}

/// An event recorded in a session (`POST .../events`), tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SessionEvent {
    /// A dose given.
    Dose {
        drug: String,
        dose: f64,
        /// e.g. `mg`, `mg/kg`, `mcg`.
        unit: String,
        /// e.g. `IM`, `IV`, `SL` (lozenge), `IN`.
        route: String,
    },
    /// A free-text note.
    Note { text: String },
    /// The session moves to a phase.
    Phase { phase: Phase },
    /// The pre-dose baseline (also set from `POST .../baseline` by the alarm API).
    Baseline {
        #[serde(default)]
        sys: Option<f64>,
        #[serde(default)]
        dia: Option<f64>,
        #[serde(default)]
        pulse_rate: Option<f64>,
        #[serde(default)]
        spo2: Option<f64>,
    },
}

impl SessionEvent {
    /// The `kind` name.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionEvent::Dose { .. } => "dose",
            SessionEvent::Note { .. } => "note",
            SessionEvent::Phase { .. } => "phase",
            SessionEvent::Baseline { .. } => "baseline",
        }
    }

    /// Checks text lengths and numbers; the error quotes the value.
    pub fn validate(&self) -> Result<(), StoreError> {
        let text = |field: &'static str, v: &str, max: usize| {
            if v.trim().is_empty() || v.chars().count() > max {
                Err(StoreError::Invalid {
                    field,
                    value: v.to_owned(),
                    expected: "a non-empty text of limited length",
                })
            } else {
                Ok(())
            }
        };
        match self {
            SessionEvent::Dose {
                drug,
                dose,
                unit,
                route,
            } => {
                text("drug", drug, 64)?;
                text("unit", unit, 16)?;
                text("route", route, 16)?;
                if !(dose.is_finite() && *dose > 0.0) {
                    return Err(StoreError::Invalid {
                        field: "dose",
                        value: dose.to_string(),
                        expected: "a positive number",
                    });
                }
            }
            SessionEvent::Note { text: t } => text("text", t, 4000)?,
            SessionEvent::Phase { .. } => {}
            SessionEvent::Baseline {
                sys,
                dia,
                pulse_rate,
                spo2,
            } => {
                for (field, v, lo, hi) in [
                    ("sys", sys, 40.0, 300.0),
                    ("dia", dia, 20.0, 200.0),
                    ("pulse_rate", pulse_rate, 20.0, 250.0),
                    ("spo2", spo2, 50.0, 100.0),
                ] {
                    if let Some(v) = v
                        && !(v.is_finite() && (lo..=hi).contains(v))
                    {
                        return Err(StoreError::Invalid {
                            field,
                            value: v.to_string(),
                            expected: "a physiological value (sys 40-300, dia 20-200, pulse 20-250, spo2 50-100)",
                        });
                    }
                }
                if sys.is_none() && dia.is_none() && pulse_rate.is_none() && spo2.is_none() {
                    return Err(StoreError::Invalid {
                        field: "baseline",
                        value: "{}".into(),
                        expected: "at least one of sys, dia, pulse_rate, spo2",
                    });
                }
            }
        }
        Ok(())
    }
}

/// A stored session event.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SessionEventRow {
    pub id: i64,
    pub session: i64,
    pub at_ms: i64,
    pub kind: String,
    pub actor: Option<String>,
    /// The event as posted (with `kind`).
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Session {
    pub id: i64,
    pub bed: String,
    pub label: String,
    pub mrn: Option<String>,
    pub weight_kg: Option<f64>,
    pub admitted_ms: i64,
    pub admitted_by: Option<String>,
    pub discharged_ms: Option<i64>,
    pub discharged_by: Option<String>,
    /// When it was last exported (retention refuses to prune sessions never exported).
    pub exported_ms: Option<i64>,
    /// Its events, oldest first.
    pub events: Vec<SessionEventRow>,
}

impl Session {
    /// The latest baseline event of the session, if any.
    pub fn baseline(&self) -> Option<Baseline> {
        self.events
            .iter()
            .rev()
            .find(|e| e.kind == "baseline")
            .and_then(|e| {
                let mut v = e.event.clone();
                if let Some(o) = v.as_object_mut() {
                    o.remove("kind");
                }
                serde_json::from_value(v).ok()
            })
    }

    /// The session's end for queries: discharge time, or `now_ms` if still open.
    pub fn end_ms(&self, now_ms: i64) -> i64 {
        self.discharged_ms.unwrap_or(now_ms)
    }
}

const SESSION_COLS: &str = "id, bed, label, mrn, weight_kg, admitted_ms, admitted_by, \
                            discharged_ms, discharged_by, exported_ms";

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: r.get(0)?,
        bed: r.get(1)?,
        label: r.get(2)?,
        mrn: r.get(3)?,
        weight_kg: r.get(4)?,
        admitted_ms: r.get(5)?,
        admitted_by: r.get(6)?,
        discharged_ms: r.get(7)?,
        discharged_by: r.get(8)?,
        exported_ms: r.get(9)?,
        events: Vec::new(),
    })
}

fn with_events(conn: &Connection, mut s: Session) -> Result<Session, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, session, at_ms, kind, actor, json FROM session_events WHERE session = ?1 \
         ORDER BY at_ms, id",
    )?;
    let rows = st.query_map([s.id], |r| {
        let json: String = r.get(5)?;
        Ok(SessionEventRow {
            id: r.get(0)?,
            session: r.get(1)?,
            at_ms: r.get(2)?,
            kind: r.get(3)?,
            actor: r.get(4)?,
            event: serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json)),
        })
    })?;
    s.events = rows.collect::<Result<_, _>>()?;
    Ok(s)
}

/// The open session of a bed.
pub fn current(conn: &Connection, bed: &str) -> Result<Option<Session>, StoreError> {
    let s = conn
        .query_row(
            &format!(
                "SELECT {SESSION_COLS} FROM sessions WHERE bed = ?1 AND discharged_ms IS NULL"
            ),
            [bed],
            session_from_row,
        )
        .optional()?;
    s.map(|s| with_events(conn, s)).transpose()
}

/// A session by id.
pub fn get(conn: &Connection, id: i64) -> Result<Session, StoreError> {
    let s = conn
        .query_row(
            &format!("SELECT {SESSION_COLS} FROM sessions WHERE id = ?1"),
            [id],
            session_from_row,
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            what: "session",
            key: id.to_string(),
        })?;
    with_events(conn, s)
}

/// Sessions, newest first, optionally of one bed (without their events).
pub fn list(
    conn: &Connection,
    bed: Option<&str>,
    limit: usize,
) -> Result<Vec<Session>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {SESSION_COLS} FROM sessions WHERE (?1 IS NULL OR bed = ?1) \
         ORDER BY admitted_ms DESC, id DESC LIMIT ?2"
    ))?;
    let limit = i64::try_from(limit.min(10_000)).unwrap_or(10_000);
    let rows = st.query_map(params![bed, limit], session_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Admits a patient to `bed`; a conflict if the bed has an open session.
pub fn admit(
    conn: &mut Connection,
    bed: &str,
    req: &Admit,
    actor: Option<&str>,
    at_ms: i64,
) -> Result<Session, StoreError> {
    req.validate()?;
    let id = durable(conn, |tx| {
        let open: Option<i64> = tx
            .query_row(
                "SELECT id FROM sessions WHERE bed = ?1 AND discharged_ms IS NULL",
                [bed],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(open) = open {
            return Err(StoreError::Conflict(format!(
                "bed {bed} already has an open session ({open}); discharge it first"
            )));
        }
        tx.execute(
            "INSERT INTO sessions (bed, label, mrn, weight_kg, admitted_ms, admitted_by) \
             VALUES (?1,?2,?3,?4,?5,?6)",
            params![bed, req.label.trim(), req.mrn, req.weight_kg, at_ms, actor],
        )?;
        Ok(tx.last_insert_rowid())
    })?;
    get(conn, id)
}

/// Discharges the open session of `bed`.
pub fn discharge(
    conn: &mut Connection,
    bed: &str,
    actor: Option<&str>,
    at_ms: i64,
) -> Result<Session, StoreError> {
    let id = durable(conn, |tx| {
        let open: Option<i64> = tx
            .query_row(
                "SELECT id FROM sessions WHERE bed = ?1 AND discharged_ms IS NULL",
                [bed],
                |r| r.get(0),
            )
            .optional()?;
        let id = open.ok_or_else(|| StoreError::NotFound {
            what: "open session for bed",
            key: bed.to_owned(),
        })?;
        tx.execute(
            "UPDATE sessions SET discharged_ms = ?2, discharged_by = ?3 WHERE id = ?1",
            params![id, at_ms, actor],
        )?;
        Ok(id)
    })?;
    get(conn, id)
}

/// Records an event in the open session of `bed`.
pub fn add_event(
    conn: &mut Connection,
    bed: &str,
    ev: &SessionEvent,
    actor: Option<&str>,
    at_ms: i64,
) -> Result<SessionEventRow, StoreError> {
    ev.validate()?;
    let json = serde_json::to_value(ev).map_err(|e| StoreError::Task(e.to_string()))?;
    let (id, session) = durable(conn, |tx| {
        let session: i64 = tx
            .query_row(
                "SELECT id FROM sessions WHERE bed = ?1 AND discharged_ms IS NULL",
                [bed],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound {
                what: "open session for bed",
                key: bed.to_owned(),
            })?;
        tx.execute(
            "INSERT INTO session_events (session, at_ms, kind, actor, json) VALUES (?1,?2,?3,?4,?5)",
            params![session, at_ms, ev.kind(), actor, json.to_string()],
        )?;
        Ok((tx.last_insert_rowid(), session))
    })?;
    Ok(SessionEventRow {
        id,
        session,
        at_ms,
        kind: ev.kind().to_owned(),
        actor: actor.map(str::to_owned),
        event: json,
    })
}

/// Marks a session exported now.
pub fn mark_exported(conn: &Connection, id: i64, at_ms: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sessions SET exported_ms = ?2 WHERE id = ?1",
        params![id, at_ms],
    )?;
    Ok(())
}

/// What [`prune`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub sessions: u64,
    pub readings: u64,
    pub alarm_events: u64,
}

/// Retention: removes sessions discharged before `older_than_ms` with their events, and
/// readings and alarm events older than that which no remaining session covers. Refuses (and
/// removes nothing) while such a session has never been exported, unless `force`.
pub fn prune(conn: &mut Connection, older_than_ms: i64, force: bool) -> Result<Pruned, StoreError> {
    durable(conn, |tx| {
        if !force {
            let unexported: Vec<i64> = tx
                .prepare(
                    "SELECT id FROM sessions WHERE discharged_ms IS NOT NULL AND discharged_ms < ?1 \
                     AND exported_ms IS NULL ORDER BY id",
                )?
                .query_map([older_than_ms], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if !unexported.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "sessions {unexported:?} were never exported; export them first or force the prune"
                )));
            }
        }
        // Remaining sessions that started before the cutoff keep their data.
        let keep_from: Option<i64> = tx.query_row(
            "SELECT MIN(admitted_ms) FROM sessions WHERE admitted_ms < ?1 \
             AND (discharged_ms IS NULL OR discharged_ms >= ?1)",
            [older_than_ms],
            |r| r.get(0),
        )?;
        let cutoff = keep_from.map_or(older_than_ms, |k| k.min(older_than_ms));
        tx.execute(
            "DELETE FROM session_events WHERE session IN (SELECT id FROM sessions \
             WHERE discharged_ms IS NOT NULL AND discharged_ms < ?1)",
            [older_than_ms],
        )?;
        let sessions = tx.execute(
            "DELETE FROM sessions WHERE discharged_ms IS NOT NULL AND discharged_ms < ?1",
            [older_than_ms],
        )?;
        // Readings are stored in groups (schema v7), each pruned whole once its last reading
        // is older than the cut: its readings were received less than `GROUP_SPAN_MS` after
        // its `received_ms`, so a group within that of the cut waits for the next pruning
        // (a reading is never pruned early, up to a second late).
        let groups_before = cutoff.saturating_sub(super::schema::GROUP_SPAN_MS - 1);
        let readings: i64 = tx.query_row(
            "SELECT COALESCE(SUM(json_array_length(readings)), 0) FROM reading_groups \
             WHERE received_ms < ?1",
            [groups_before],
            |r| r.get(0),
        )?;
        tx.execute(
            "DELETE FROM reading_groups WHERE received_ms < ?1",
            [groups_before],
        )?;
        let alarm_events = tx.execute("DELETE FROM alarm_events WHERE at_ms < ?1", [cutoff])?;
        Ok(Pruned {
            sessions: sessions as u64,
            readings: u64::try_from(readings).unwrap_or(0),
            alarm_events: alarm_events as u64,
        })
    })
}
