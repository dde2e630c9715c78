//! Reads: history (downsampled), alarm history, readings and events for exports. Plain functions
//! over a `&Connection` (the handle runs them on its read connection in a blocking task; the
//! `export` command runs them on its own connection).

use super::StoreError;
use crate::model::Metric;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

/// One point of a history: a reading, or a time bucket's min/max/avg when downsampled.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HistoryPoint {
    /// The reading's receive time, or the bucket's start, Unix ms.
    pub t_ms: i64,
    /// The value (a reading) or the bucket's mean of valid values; None if there were none.
    pub avg: Option<f64>,
    /// Smallest valid value in the bucket.
    pub min: Option<f64>,
    /// Largest valid value in the bucket.
    pub max: Option<f64>,
    /// Valid readings in the bucket (1 or 0 for a single reading).
    pub n: u32,
    /// Invalid readings in the bucket: a gap is shown as a gap, never as a number.
    pub invalid: u32,
    /// Why a single reading has no value (None in buckets).
    pub reason: Option<String>,
}

/// One stored reading, names resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredReading {
    /// Row id.
    pub id: i64,
    pub bed: String,
    pub device: String,
    /// Metric name ([`Metric::name`]).
    pub metric: String,
    /// None when the device marked the value invalid.
    pub value: Option<f64>,
    /// Why there is no value.
    pub invalid: Option<String>,
    /// Flag names, space separated (empty when none).
    pub flags: String,
    pub device_time: Option<String>,
    pub received_ms: i64,
    pub mono_ms: i64,
    pub bed_seq: i64,
    pub simulated: bool,
}

impl StoredReading {
    /// The metric, if this build knows its name.
    pub fn metric(&self) -> Option<Metric> {
        Metric::from_name(&self.metric)
    }

    fn from_row(r: &Row<'_>) -> rusqlite::Result<StoredReading> {
        Ok(StoredReading {
            id: r.get(0)?,
            bed: r.get(1)?,
            device: r.get(2)?,
            metric: r.get(3)?,
            value: r.get(4)?,
            invalid: r.get(5)?,
            flags: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
            device_time: r.get(7)?,
            received_ms: r.get(8)?,
            mono_ms: r.get(9)?,
            bed_seq: r.get(10)?,
            simulated: r.get(11)?,
        })
    }
}

/// One stored alarm event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAlarmEvent {
    /// Row id.
    pub id: i64,
    #[serde(flatten)]
    pub event: super::StoredEvent,
}

fn bed_id(conn: &Connection, bed: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row("SELECT id FROM beds WHERE name = ?1", [bed], |r| r.get(0))
        .optional()?)
}

/// The earliest `group_ms` of a group that may hold a reading received at or after `from_ms`
/// (schema v7: a group's readings were received less than `GROUP_SPAN_MS` after it). A query
/// filters on both: the groups' by the index, then the readings'.
fn groups_from(from_ms: i64) -> i64 {
    from_ms.saturating_sub(super::schema::GROUP_SPAN_MS - 1)
}

/// See [`super::StoreHandle::history`]. `max_points` of 0 is taken as 1.
pub fn history(
    conn: &Connection,
    bed: &str,
    metric: Metric,
    from_ms: i64,
    to_ms: i64,
    max_points: usize,
) -> Result<Vec<HistoryPoint>, StoreError> {
    let Some(bed) = bed_id(conn, bed)? else {
        return Ok(Vec::new());
    };
    let max_points = i64::try_from(max_points.max(1)).unwrap_or(i64::MAX);
    let (name, wave, groups_from) = (metric.name(), metric.is_waveform(), groups_from(from_ms));
    let args = params![bed, name, from_ms, to_ms, wave, groups_from];
    let count: i64 = conn.query_row(
        "SELECT COUNT(*) FROM readings WHERE bed = ?1 AND wave = ?5 AND metric = ?2 \
         AND group_ms BETWEEN ?6 AND ?4 AND received_ms BETWEEN ?3 AND ?4",
        args,
        |r| r.get(0),
    )?;
    if count <= max_points {
        let mut st = conn.prepare_cached(
            "SELECT received_ms, value, invalid FROM readings \
             WHERE bed = ?1 AND wave = ?5 AND metric = ?2 AND group_ms BETWEEN ?6 AND ?4 \
             AND received_ms BETWEEN ?3 AND ?4 ORDER BY received_ms, id",
        )?;
        let rows = st.query_map(args, |r| {
            let v: Option<f64> = r.get(1)?;
            Ok(HistoryPoint {
                t_ms: r.get(0)?,
                avg: v,
                min: v,
                max: v,
                n: u32::from(v.is_some()),
                invalid: u32::from(v.is_none()),
                reason: r.get(2)?,
            })
        })?;
        return Ok(rows.collect::<Result<_, _>>()?);
    }
    let span = to_ms.saturating_sub(from_ms).saturating_add(1).max(1);
    let bucket = (span + max_points - 1) / max_points;
    let mut st = conn.prepare_cached(
        "SELECT (received_ms - ?3) / ?5 AS b, AVG(value), MIN(value), MAX(value), COUNT(value), \
         COUNT(*) - COUNT(value) FROM readings \
         WHERE bed = ?1 AND wave = ?6 AND metric = ?2 AND group_ms BETWEEN ?7 AND ?4 \
         AND received_ms BETWEEN ?3 AND ?4 GROUP BY b ORDER BY b",
    )?;
    let rows = st.query_map(
        params![bed, name, from_ms, to_ms, bucket, wave, groups_from],
        |r| {
            let b: i64 = r.get(0)?;
            Ok(HistoryPoint {
                t_ms: from_ms + b * bucket,
                avg: r.get(1)?,
                min: r.get(2)?,
                max: r.get(3)?,
                n: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
                invalid: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(u32::MAX),
                reason: None,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Alarm events, newest first, optionally of one bed; `limit` capped at 10 000.
pub fn alarm_history(
    conn: &Connection,
    bed: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredAlarmEvent>, StoreError> {
    let limit = i64::try_from(limit.min(10_000)).unwrap_or(10_000);
    let mut st = conn.prepare_cached(
        "SELECT id, at_ms, bed, kind, alarm_id, condition, priority, actor, json FROM alarm_events \
         WHERE (?1 IS NULL OR bed = ?1) ORDER BY at_ms DESC, id DESC LIMIT ?2",
    )?;
    let rows = st.query_map(params![bed, limit], event_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Alarm events of one bed in `[from_ms, to_ms]`, oldest first.
pub fn alarm_events_between(
    conn: &Connection,
    bed: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<StoredAlarmEvent>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, at_ms, bed, kind, alarm_id, condition, priority, actor, json FROM alarm_events \
         WHERE bed = ?1 AND at_ms BETWEEN ?2 AND ?3 ORDER BY at_ms, id",
    )?;
    let rows = st.query_map(params![bed, from_ms, to_ms], event_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn event_from_row(r: &Row<'_>) -> rusqlite::Result<StoredAlarmEvent> {
    Ok(StoredAlarmEvent {
        id: r.get(0)?,
        event: super::StoredEvent {
            at_ms: r.get(1)?,
            bed: r.get(2)?,
            kind: r.get(3)?,
            alarm_id: r
                .get::<_, Option<i64>>(4)?
                .and_then(|a| u64::try_from(a).ok()),
            condition: r.get(5)?,
            priority: r.get(6)?,
            actor: r.get(7)?,
            json: r.get(8)?,
        },
    })
}

/// Readings of one bed in `[from_ms, to_ms]`, in arrival order; waveform samples only when
/// asked for.
pub fn readings_between(
    conn: &Connection,
    bed: &str,
    from_ms: i64,
    to_ms: i64,
    waveforms: bool,
) -> Result<Vec<StoredReading>, StoreError> {
    let Some(bed) = bed_id(conn, bed)? else {
        return Ok(Vec::new());
    };
    let mut st = conn.prepare_cached(
        "SELECT r.id, b.name, d.name, r.metric, r.value, r.invalid, r.flags, r.device_time, \
         r.received_ms, r.mono_ms, r.bed_seq, r.simulated \
         FROM readings r JOIN beds b ON b.id = r.bed JOIN devices d ON d.id = r.device \
         WHERE r.bed = ?1 AND r.group_ms BETWEEN ?5 AND ?3 AND r.received_ms BETWEEN ?2 AND ?3 \
         AND r.wave IN (0, ?4) ORDER BY r.received_ms, r.id",
    )?;
    let rows = st.query_map(
        params![bed, from_ms, to_ms, waveforms, groups_from(from_ms)],
        StoredReading::from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Valid readings of some metrics of one bed since `from_ms`, oldest first: the input of
/// [`super::readiness::readiness`].
pub fn recent_values(
    conn: &Connection,
    bed: &str,
    metrics: &[Metric],
    from_ms: i64,
) -> Result<Vec<super::readiness::Sample>, StoreError> {
    let Some(bed) = bed_id(conn, bed)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut st = conn.prepare_cached(
        "SELECT received_ms, value, invalid FROM readings \
         WHERE bed = ?1 AND wave = ?4 AND metric = ?2 AND group_ms >= ?5 AND received_ms >= ?3 \
         ORDER BY received_ms, id",
    )?;
    for m in metrics {
        let params = params![
            bed,
            m.name(),
            from_ms,
            m.is_waveform(),
            groups_from(from_ms)
        ];
        let rows = st.query_map(params, |r| {
            Ok(super::readiness::Sample {
                t_ms: r.get(0)?,
                metric: *m,
                value: r.get(1)?,
            })
        })?;
        for s in rows {
            out.push(s?);
        }
    }
    out.sort_by_key(|s| s.t_ms);
    Ok(out)
}
