//! The schema and its versioned migrations. `PRAGMA user_version` holds the number of
//! migrations applied; opening a file applies the missing ones in one transaction each, and a
//! file written by a newer daemon (a version above [`VERSION`]) is refused rather than guessed at.

use super::StoreError;
use rusqlite::Connection;

/// Migration `i` takes a file from version `i` to version `i + 1`. Append only: a released
/// migration is never edited.
pub const MIGRATIONS: &[&str] = &[
    // v1: readings and alarm events.
    r#"
CREATE TABLE beds (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE devices (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE readings (
    id INTEGER PRIMARY KEY,
    bed INTEGER NOT NULL REFERENCES beds(id),
    device INTEGER NOT NULL REFERENCES devices(id),
    metric TEXT NOT NULL,
    value REAL,
    invalid TEXT,
    flags TEXT,
    device_time TEXT,
    received_ms INTEGER NOT NULL,
    mono_ms INTEGER NOT NULL,
    bed_seq INTEGER NOT NULL,
    simulated INTEGER NOT NULL
);
CREATE INDEX readings_bed_metric_received ON readings(bed, metric, received_ms);
CREATE VIEW readings_named AS
    SELECT r.id, b.name AS bed, d.name AS device, r.metric, r.value, r.invalid, r.flags,
           r.device_time, r.received_ms, r.mono_ms, r.bed_seq, r.simulated
    FROM readings r JOIN beds b ON b.id = r.bed JOIN devices d ON d.id = r.device;
CREATE TABLE alarm_events (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    bed TEXT,
    kind TEXT NOT NULL,
    alarm_id INTEGER,
    condition TEXT,
    priority TEXT,
    actor TEXT,
    json TEXT NOT NULL
);
CREATE INDEX alarm_events_bed_at ON alarm_events(bed, at_ms);
"#,
    // v2: sessions (admission to discharge) and their events.
    r#"
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    bed TEXT NOT NULL,
    label TEXT NOT NULL,
    mrn TEXT,
    weight_kg REAL,
    admitted_ms INTEGER NOT NULL,
    admitted_by TEXT,
    discharged_ms INTEGER,
    discharged_by TEXT,
    exported_ms INTEGER
);
CREATE UNIQUE INDEX sessions_one_open_per_bed ON sessions(bed) WHERE discharged_ms IS NULL;
CREATE INDEX sessions_bed_admitted ON sessions(bed, admitted_ms);
CREATE TABLE session_events (
    id INTEGER PRIMARY KEY,
    session INTEGER NOT NULL REFERENCES sessions(id),
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    json TEXT NOT NULL
);
CREATE INDEX session_events_session ON session_events(session, at_ms);
"#,
    // v3: each bed's alarm state (limits, baseline, current alarms, audio pause, escalation),
    // restored at start.
    r#"
CREATE TABLE alarm_state (
    bed TEXT PRIMARY KEY,
    updated_ms INTEGER NOT NULL,
    json TEXT NOT NULL
);
"#,
    // v4: the notifier's outbox (pages not yet delivered), written by the writer thread.
    r#"
CREATE TABLE notify_outbox (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    alarm_id INTEGER,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    next_ms INTEGER NOT NULL,
    last_error TEXT
);
"#,
    // v5: the HL7 outbox (src/hl7): messages not yet acknowledged by their MLLP endpoint, and
    // the highest message control id ever handed out. Written by the writer thread.
    r#"
CREATE TABLE hl7_outbox (
    id INTEGER PRIMARY KEY,
    endpoint TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT
);
CREATE TABLE hl7_counter (last INTEGER NOT NULL);
INSERT INTO hl7_counter (last) VALUES (0);
"#,
    // v6: readings packed, one row per device read (issue 10: one SQLite row per reading was
    // ~22 % of the daemon's CPU at 25 000 lines/s). A group holds the readings of one device
    // that share bed, device, received and monotonic time and the simulated mark, as a JSON
    // array of `[metric, value, invalid, flags, device_time, bed_seq]` (value a JSON real or
    // null; invalid, flags and device time strings or null; bed_seq an integer), at most
    // [`GROUP_MAX`] of them. `readings` becomes a view with the old table's columns, each
    // reading's id `group id * 4096 + its index in the group` (unique, and in write order), so
    // every query of `readings` and `readings_named` keeps working. Waveform samples (pleth) are
    // in groups of their own (`wave` 1), and the index is on (bed, wave, received_ms): a query
    // for a vital sign (`wave = 0`) never reads a bed's waveform groups, which outnumber the
    // others 25 to 1 on a Nonin at 75 Hz. The view shows `wave` after the old columns.
    //
    // An existing file's readings are copied one group per reading, in id order. Each keeps its
    // id (a decision beyond the issue's design: the FHIR export names an Observation by its
    // reading's id, src/store/export/fhir.rs, so a session exported before the upgrade and
    // again after must name its readings the same): the group takes the old id as its own and
    // the reading carries it as a 7th element, which the view prefers to the formula. New
    // groups are numbered after the largest old id, so their readings' ids (at least
    // `(largest old id + 1) * 4096`) still come after every old one.
    r#"
CREATE TABLE reading_groups (
    id INTEGER PRIMARY KEY,
    bed INTEGER NOT NULL REFERENCES beds(id),
    device INTEGER NOT NULL REFERENCES devices(id),
    received_ms INTEGER NOT NULL,
    mono_ms INTEGER NOT NULL,
    simulated INTEGER NOT NULL,
    wave INTEGER NOT NULL,
    readings TEXT NOT NULL
);
INSERT INTO reading_groups (id, bed, device, received_ms, mono_ms, simulated, wave, readings)
    SELECT id, bed, device, received_ms, mono_ms, simulated, metric = 'pleth',
           json_array(json_array(metric, value, invalid, flags, device_time, bed_seq, id))
    FROM readings ORDER BY id;
CREATE INDEX reading_groups_bed_wave_received ON reading_groups(bed, wave, received_ms);
DROP VIEW readings_named;
DROP TABLE readings;
CREATE VIEW readings AS
    SELECT coalesce(j.value ->> 6, g.id * 4096 + j.key) AS id, g.bed AS bed, g.device AS device,
           j.value ->> 0 AS metric, j.value ->> 1 AS value, j.value ->> 2 AS invalid,
           j.value ->> 3 AS flags, j.value ->> 4 AS device_time,
           g.received_ms AS received_ms, g.mono_ms AS mono_ms, j.value ->> 5 AS bed_seq,
           g.simulated AS simulated, g.wave AS wave
    FROM reading_groups g, json_each(g.readings) j;
CREATE VIEW readings_named AS
    SELECT r.id, b.name AS bed, d.name AS device, r.metric, r.value, r.invalid, r.flags,
           r.device_time, r.received_ms, r.mono_ms, r.bed_seq, r.simulated
    FROM readings r JOIN beds b ON b.id = r.bed JOIN devices d ON d.id = r.device;
"#,
    // v7: a group holds a device's consecutive reads, not one read (issue 10: at 25 000 lines/s
    // a row per line was ~3.5 µs of the ~17 µs the daemon spends on a line, most of it
    // SQLite's per-row work, not the bytes). A reading received later than its group's
    // `received_ms` (or `mono_ms`) carries the difference as an 8th (9th) element of its array,
    // after a 7th that is null unless the reading kept an id from before v6; a group spans less
    // than [`GROUP_SPAN_MS`] of both clocks. The views add the differences, so they show each
    // reading's own times as before, and show the group's `received_ms` as `group_ms` (after
    // `wave`): a range filter on it uses the index, which a filter on the sum cannot. Only the
    // views change; the rows are as they were.
    r#"
DROP VIEW readings_named;
DROP VIEW readings;
CREATE VIEW readings AS
    SELECT coalesce(j.value ->> 6, g.id * 4096 + j.key) AS id, g.bed AS bed, g.device AS device,
           j.value ->> 0 AS metric, j.value ->> 1 AS value, j.value ->> 2 AS invalid,
           j.value ->> 3 AS flags, j.value ->> 4 AS device_time,
           g.received_ms + coalesce(j.value ->> 7, 0) AS received_ms,
           g.mono_ms + coalesce(j.value ->> 8, 0) AS mono_ms, j.value ->> 5 AS bed_seq,
           g.simulated AS simulated, g.wave AS wave, g.received_ms AS group_ms
    FROM reading_groups g, json_each(g.readings) j;
CREATE VIEW readings_named AS
    SELECT r.id, b.name AS bed, d.name AS device, r.metric, r.value, r.invalid, r.flags,
           r.device_time, r.received_ms, r.mono_ms, r.bed_seq, r.simulated
    FROM readings r JOIN beds b ON b.id = r.bed JOIN devices d ON d.id = r.device;
"#,
];

/// The most readings in one row of `reading_groups` (v6): a reading's id in the `readings` view
/// is `group id * GROUP_MAX + its index`, so a group never holds more.
pub const GROUP_MAX: usize = 4096;

/// A group's readings were received (by both clocks) less than this many ms after its first
/// (v7): a query for readings received from `t` finds their groups among those with
/// `group_ms > t - GROUP_SPAN_MS`, by the index.
pub const GROUP_SPAN_MS: i64 = 1000;

/// The schema version this build writes.
pub const VERSION: u32 = MIGRATIONS.len() as u32;

/// The file's schema version.
pub fn version(conn: &Connection) -> Result<u32, StoreError> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    u32::try_from(v).map_err(|_| StoreError::Schema {
        found: v,
        supported: VERSION,
    })
}

/// Brings the file up to [`VERSION`], one transaction per migration; `upto` stops earlier (tests
/// build files of older versions with it).
pub fn migrate(conn: &mut Connection, upto: u32) -> Result<u32, StoreError> {
    let found = version(conn)?;
    if found > VERSION {
        return Err(StoreError::Schema {
            found: i64::from(found),
            supported: VERSION,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(found as usize)
        .take(upto.saturating_sub(found) as usize)
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    version(conn)
}
