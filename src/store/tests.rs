use super::*;
use crate::clock::Mono;
use crate::model::{BedIdx, DeviceIdx, Flag, Flags, Invalid, Measurement};
use std::time::Instant;

fn obs(bed: u16, metric: Metric, value: Option<f64>, t: i64, seq: u64) -> Observation {
    let m = match value {
        Some(v) => Measurement::new(metric, v, Flags::EMPTY),
        None => Measurement::invalid(metric, Invalid::NoValue, Flags::EMPTY.with(Flag::NoFinger)),
    };
    Observation {
        bed: BedIdx(bed),
        device: DeviceIdx(bed * 2),
        m,
        received_ms: t,
        mono: Mono::ZERO
            .saturating_add(crate::clock::MONO_ORIGIN + std::time::Duration::from_millis(t as u64)),
        bed_seq: seq,
        simulated: true,
    }
}

fn open(dir: &tempfile::TempDir) -> Store {
    let store = Store::open(&dir.path().join("data/vitalsd.sqlite")).unwrap();
    store.handle().set_topology(
        vec!["room1/A".into(), "room1/B".into()],
        vec![
            "room1-A-ox".into(),
            "room1-A-bp".into(),
            "room1-B-ox".into(),
            "room1-B-bp".into(),
        ],
    );
    store
}

fn count(h: &StoreHandle, sql: &'static str) -> i64 {
    let conn = Connection::open(h.path()).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The integers of a one-column query, in its order.
fn column(conn: &Connection, sql: &str) -> Vec<i64> {
    conn.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Polls `cond` every 20 ms for up to 10 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn event(kind: &str, alarm: u64) -> StoredEvent {
    StoredEvent {
        at_ms: 1_000 + alarm as i64,
        bed: Some("room1/A".into()),
        kind: kind.into(),
        alarm_id: Some(alarm),
        condition: Some("spo2_low".into()),
        priority: Some("high".into()),
        actor: None,
        json: format!(r#"{{"v":1,"type":"alarm","event":"{kind}"}}"#),
    }
}

#[tokio::test]
async fn opening_a_new_path_creates_the_data_dir_and_the_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    assert!(h.path().exists());
    assert_eq!(count(&h, "PRAGMA user_version"), i64::from(schema::VERSION));
    let conn = Connection::open(h.path()).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_file_of_an_older_schema_is_migrated_and_keeps_its_readings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    {
        // v5, the last with a row per reading: every migration since runs on it.
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(schema::migrate(&mut conn, 5).unwrap(), 5);
        conn.execute_batch(
            "INSERT INTO beds (name) VALUES ('room1/A'); INSERT INTO devices (name) VALUES ('ox');
             INSERT INTO readings (bed, device, metric, value, received_ms, mono_ms, bed_seq, simulated)
             VALUES (1, 1, 'spo2', 97, 5000, 5, 1, 0);",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let h = store.handle();
    assert_eq!(count(&h, "PRAGMA user_version"), i64::from(schema::VERSION));
    let hist = h
        .history("room1/A", Metric::Spo2, 0, 10_000, 100)
        .await
        .unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].avg, Some(97.0));
    // The new tables work.
    h.admit(
        "room1/A",
        Admit {
            label: "JD".into(),
            mrn: None,
            weight_kg: None,
        },
        None,
    )
    .await
    .unwrap();
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_file_from_a_newer_daemon_is_refused_with_both_versions_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.sqlite");
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = Store::open(&path).err().unwrap().to_string();
    assert!(
        err.contains("99") && err.contains(&schema::VERSION.to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn readings_sharing_a_device_time_and_readings_changing_it_each_keep_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    for (i, secs) in [7_000, 7_000, 8_000, 7_000].into_iter().enumerate() {
        let mut o = obs(0, Metric::PulseRate, Some(72.0), 7_000 + i as i64, i as u64);
        o.m.device_time = Some(crate::clock::calendar_utc(secs));
        h.reading(&o);
    }
    let mut none = obs(0, Metric::PulseRate, Some(72.0), 7_010, 10);
    none.m.device_time = None;
    h.reading(&none);
    h.flush().await.unwrap();
    let conn = Connection::open(h.path()).unwrap();
    let rows = query::readings_between(&conn, "room1/A", 0, 100_000, true).unwrap();
    let times: Vec<Option<&str>> = rows.iter().map(|r| r.device_time.as_deref()).collect();
    assert_eq!(
        times,
        [
            Some("1970-01-01T00:00:07"),
            Some("1970-01-01T00:00:07"),
            Some("1970-01-01T00:00:08"),
            Some("1970-01-01T00:00:07"),
            None
        ]
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn readings_are_committed_without_a_flush_and_keep_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    let mut o = obs(1, Metric::Spo2, None, 7_000, 3);
    o.m.device_time = Some(crate::clock::calendar_utc(7_000));
    o.m.flags.set_cuff_error(87);
    h.reading(&o);
    h.reading(&obs(0, Metric::PulseRate, Some(72.5), 7_001, 4));
    eventually("both readings committed", || {
        count(&h, "SELECT COUNT(*) FROM readings") == 2
    })
    .await;
    let conn = Connection::open(h.path()).unwrap();
    let rows = query::readings_between(&conn, "room1/B", 0, 10_000, true).unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        (r.bed.as_str(), r.device.as_str(), r.metric.as_str()),
        ("room1/B", "room1-B-ox", "spo2")
    );
    assert_eq!(r.value, None);
    assert_eq!(r.invalid.as_deref(), Some("no_value"));
    assert_eq!(r.flags, "no_finger cuff_error:87");
    assert_eq!(r.device_time.as_deref(), Some("1970-01-01T00:00:07"));
    assert_eq!(
        (r.received_ms, r.mono_ms, r.bed_seq, r.simulated),
        (7_000, 7_000, 3, true)
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn an_alarm_event_is_in_the_file_when_its_call_returns_and_events_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    h.alarm_event_nowait(event("raised", 1));
    h.alarm_event_nowait(event("updated", 1));
    let id = h.alarm_event(event("acknowledged", 1)).await.unwrap();
    assert_eq!(count(&h, "SELECT COUNT(*) FROM alarm_events"), 3);
    let hist = h.alarm_history(Some("room1/A"), 10).await.unwrap();
    let kinds: Vec<&str> = hist.iter().map(|e| e.event.kind.as_str()).collect();
    assert_eq!(kinds, ["acknowledged", "updated", "raised"]);
    assert_eq!(hist[0].id, id);
    assert!(
        h.alarm_history(Some("room1/B"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_full_store_holds_readings_and_events_and_writes_them_when_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    h.reading(&obs(0, Metric::Spo2, Some(97.0), 1, 1));
    h.flush().await.unwrap();
    h.set_size_limit(Some(0)).await.unwrap();
    // Fill the last free pages, then some more: the store reports itself unwritable.
    let mut seq = 2;
    let mut held = 0;
    for _ in 0..200 {
        for _ in 0..500 {
            h.reading(&obs(0, Metric::Pleth, Some(seq as f64), seq as i64, seq));
            seq += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        if !h.health().writable {
            held = h.health().backlog;
            break;
        }
    }
    assert!(held > 0, "the size limit never made the store unwritable");
    let health = h.health();
    assert!(
        health
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("full")),
        "{health:?}"
    );
    h.alarm_event_nowait(event("raised", 7));
    // A single event may still fit where a batch does not; if it does not, the caller is told.
    let acked = match h.alarm_event(event("acknowledged", 7)).await {
        Ok(_) => 1,
        Err(e) => {
            assert!(matches!(e, StoreError::Unwritable(_)), "{e}");
            0
        }
    };
    assert!(
        h.flush().await.is_err(),
        "a flush does not claim what it did not write"
    );
    assert!(!h.health().writable);
    h.set_size_limit(None).await.unwrap();
    h.flush().await.unwrap();
    let health = h.health();
    assert!(
        health.writable && health.backlog == 0 && health.dropped == 0,
        "{health:?}"
    );
    assert_eq!(count(&h, "SELECT COUNT(*) FROM readings") as u64, seq - 1);
    assert_eq!(
        count(
            &h,
            "SELECT COUNT(*) FROM alarm_events WHERE kind = 'raised'"
        ),
        1
    );
    assert_eq!(
        count(
            &h,
            "SELECT COUNT(*) FROM alarm_events WHERE kind = 'acknowledged'"
        ),
        acked
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn past_the_buffer_bound_the_oldest_readings_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        &dir.path().join("s.sqlite"),
        StoreOptions { buffer_cap: 100 },
    )
    .unwrap();
    let h = store.handle();
    h.reading(&obs(0, Metric::Spo2, Some(97.0), 0, 0));
    h.flush().await.unwrap();
    h.set_size_limit(Some(0)).await.unwrap();
    let mut seq = 1;
    eventually("store unwritable", || {
        for _ in 0..1000 {
            h.reading(&obs(0, Metric::Pleth, Some(1.0), seq, seq as u64));
            seq += 1;
        }
        !h.health().writable
    })
    .await;
    for _ in 0..150 {
        h.reading(&obs(0, Metric::Pleth, Some(1.0), seq, seq as u64));
        seq += 1;
    }
    let health = h.health();
    assert!(health.backlog <= 100, "{health:?}");
    assert!(health.dropped >= 50, "{health:?}");
    h.set_size_limit(None).await.unwrap();
    h.flush().await.unwrap();
    let stored = count(&h, "SELECT COUNT(*) FROM readings") as u64;
    // Everything is either in the file or counted as dropped.
    assert_eq!(stored + h.health().dropped, seq as u64);
    // The newest survived.
    assert_eq!(count(&h, "SELECT MAX(received_ms) FROM readings"), seq - 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_removed_store_file_is_reported_and_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    h.reading(&obs(0, Metric::Spo2, Some(97.0), 1, 1));
    h.flush().await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", h.path().display()));
    }
    eventually("the removal is noticed", || {
        h.reading(&obs(0, Metric::Spo2, Some(96.0), 2, 2));
        h.health()
            .last_incident
            .is_some_and(|e| e.contains("removed"))
    })
    .await;
    h.flush().await.unwrap();
    assert!(h.path().exists());
    assert!(count(&h, "SELECT COUNT(*) FROM readings") >= 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn history_returns_readings_or_min_max_avg_buckets_and_never_averages_invalid_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    // 0..100 s, one reading per second: value = second; second 50 invalid.
    for s in 0..100i64 {
        let v = (s != 50).then_some(s as f64);
        h.reading(&obs(0, Metric::PulseRate, v, s * 1000, s as u64));
    }
    h.flush().await.unwrap();
    let raw = h
        .history("room1/A", Metric::PulseRate, 0, 99_000, 500)
        .await
        .unwrap();
    assert_eq!(raw.len(), 100);
    assert_eq!(raw[50].avg, None);
    assert_eq!(raw[50].reason.as_deref(), Some("no_value"));
    let buckets = h
        .history("room1/A", Metric::PulseRate, 0, 99_999, 10)
        .await
        .unwrap();
    assert_eq!(buckets.len(), 10);
    assert_eq!(
        (buckets[0].min, buckets[0].max, buckets[0].avg, buckets[0].n),
        (Some(0.0), Some(9.0), Some(4.5), 10)
    );
    assert_eq!(
        (buckets[5].n, buckets[5].invalid, buckets[5].min),
        (9, 1, Some(51.0))
    );
    assert_eq!(buckets[9].t_ms, 90_000);
    assert!(
        h.history("room9/Z", Metric::PulseRate, 0, 99_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_bed_has_one_open_session_with_its_events_until_discharge() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    let admit = Admit {
        label: "AB".into(),
        mrn: Some("MRN-1".into()),
        weight_kg: Some(70.0),
    };
    let s = h
        .admit("room1/A", admit.clone(), Some("nurse1".into()))
        .await
        .unwrap();
    assert_eq!(
        (s.label.as_str(), s.admitted_by.as_deref()),
        ("AB", Some("nurse1"))
    );
    let again = h.admit("room1/A", admit.clone(), None).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again}");
    h.session_event(
        "room1/A",
        SessionEvent::Phase {
            phase: Phase::Dosing,
        },
        None,
    )
    .await
    .unwrap();
    h.session_event(
        "room1/A",
        SessionEvent::Dose {
            drug: "ketamine".into(),
            dose: 0.5,
            unit: "mg/kg".into(),
            route: "IM".into(),
        },
        Some("nurse1".into()),
    )
    .await
    .unwrap();
    let bad = h
        .session_event(
            "room1/A",
            SessionEvent::Dose {
                drug: "ketamine".into(),
                dose: -1.0,
                unit: "mg".into(),
                route: "IM".into(),
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(
        bad.to_string().contains("dose") && bad.to_string().contains("-1"),
        "{bad}"
    );
    let cur = h.current_session("room1/A").await.unwrap().unwrap();
    assert_eq!(cur.events.len(), 2);
    assert_eq!(cur.events[1].event["drug"], "ketamine");
    let done = h.discharge("room1/A", Some("nurse2".into())).await.unwrap();
    assert!(done.discharged_ms.is_some());
    assert!(h.current_session("room1/A").await.unwrap().is_none());
    let none = h
        .session_event("room1/A", SessionEvent::Note { text: "x".into() }, None)
        .await
        .unwrap_err();
    assert!(matches!(none, StoreError::NotFound { .. }), "{none}");
    // A new admission is allowed after discharge.
    h.admit("room1/A", admit, None).await.unwrap();
    assert_eq!(h.sessions(Some("room1/A"), 10).await.unwrap().len(), 2);
    let label = Admit {
        label: " ".into(),
        mrn: None,
        weight_kg: None,
    };
    assert!(
        h.admit("room1/B", label, None)
            .await
            .unwrap_err()
            .to_string()
            .contains("label")
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn prune_refuses_sessions_never_exported_unless_forced_and_keeps_open_sessions_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    let admit = || Admit {
        label: "AB".into(),
        mrn: None,
        weight_kg: None,
    };
    let old = h.admit("room1/A", admit(), None).await.unwrap();
    h.discharge("room1/A", None).await.unwrap();
    let open_b = h.admit("room1/B", admit(), None).await.unwrap();
    h.reading(&obs(0, Metric::Spo2, Some(97.0), 1_000, 1));
    h.reading(&obs(1, Metric::Spo2, Some(95.0), open_b.admitted_ms, 1));
    h.flush().await.unwrap();
    let cutoff = crate::clock::wall_ms() + 1_000;
    let err = h.prune(cutoff, false).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("[{}]", old.id)) && err.contains("export"),
        "{err}"
    );
    assert_eq!(
        count(&h, "SELECT COUNT(*) FROM readings"),
        2,
        "nothing removed"
    );
    h.export(
        old.id,
        export::Format::Csv,
        Default::default(),
        export::Zone::system(),
    )
    .await
    .unwrap();
    let pruned = h.prune(cutoff, false).await.unwrap();
    assert_eq!(pruned.sessions, 1);
    assert_eq!(
        pruned.readings, 1,
        "only the reading before the open session"
    );
    assert!(h.session(old.id).await.is_err());
    h.session(open_b.id).await.unwrap();
    // Forced: an unexported discharged session goes.
    h.discharge("room1/B", None).await.unwrap();
    let forced = h
        .prune(crate::clock::wall_ms() + 1_000, true)
        .await
        .unwrap();
    assert_eq!(forced.sessions, 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn outbox_changes_are_committed_in_order_and_read_back_after_a_reopen() {
    use outbox::{OutboxOp, OutboxRow};
    let dir = tempfile::tempdir().unwrap();
    let row = |id: i64, attempts: u32| OutboxRow {
        id,
        target: "desk".into(),
        alarm_id: Some(7),
        body: format!("{{\"n\":{id}}}"),
        created_ms: 1,
        attempts,
        next_ms: 2,
        last_error: (attempts > 0).then(|| "refused".to_owned()),
    };
    {
        let store = open(&dir);
        let h = store.handle();
        h.outbox(OutboxOp::Put(row(1, 0)));
        h.outbox(OutboxOp::Put(row(2, 0)));
        h.outbox(OutboxOp::Put(row(1, 3)));
        h.outbox(OutboxOp::Remove(2));
        h.flush().await.unwrap();
        store.close().await.unwrap();
    }
    let store = open(&dir);
    assert_eq!(store.handle().outbox_load().await.unwrap(), vec![row(1, 3)]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn hl7_messages_survive_a_reopen_in_order_and_control_ids_are_never_reused() {
    use hl7_outbox::{Hl7Op, Hl7Row};
    let dir = tempfile::tempdir().unwrap();
    let row = |id: i64, attempts: u32| Hl7Row {
        id,
        endpoint: "ehr".into(),
        body: format!("MSH|^~\\&|||||||ORU^R01^ORU_R01|{id}\r"),
        created_ms: 1,
        attempts,
        last_error: (attempts > 0).then(|| "no ACK within 10s".to_owned()),
    };
    {
        let store = open(&dir);
        let h = store.handle();
        assert_eq!(h.hl7_load().await.unwrap(), (vec![], 0));
        for id in 1..=3 {
            h.hl7(Hl7Op::Put(row(id, 0)));
        }
        h.hl7(Hl7Op::Remove(1));
        h.hl7(Hl7Op::Put(row(2, 1)));
        store.close().await.unwrap();
    }
    let store = open(&dir);
    let h = store.handle();
    assert_eq!(h.hl7_load().await.unwrap(), (vec![row(2, 1), row(3, 0)], 3));
    // Every message delivered: the outbox is empty, the highest id is still known.
    h.hl7(Hl7Op::Remove(2));
    h.hl7(Hl7Op::Remove(3));
    store.close().await.unwrap();
    let store = open(&dir);
    assert_eq!(store.handle().hl7_load().await.unwrap(), (vec![], 3));
    store.close().await.unwrap();
}

fn state(bed: &str, at_ms: i64, json: &str) -> StoredState {
    StoredState {
        bed: bed.into(),
        at_ms,
        json: json.into(),
    }
}

#[tokio::test]
async fn alarm_state_keeps_the_latest_per_bed_and_an_action_commits_events_and_state_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    h.save_state_nowait(state("room1/A", 1, r#"{"v":1}"#));
    h.save_state_nowait(state("room1/A", 2, r#"{"v":2}"#));
    h.save_state_nowait(state("room1/B", 3, r#"{"v":3}"#));
    h.commit(
        vec![event("acknowledged", 7)],
        Some(state("room1/A", 4, r#"{"v":4}"#)),
    )
    .await
    .unwrap();
    h.flush().await.unwrap();
    let rows = |states: Vec<StoredState>| -> Vec<(String, i64, String)> {
        states
            .into_iter()
            .map(|s| (s.bed, s.at_ms, s.json))
            .collect()
    };
    let want = vec![
        ("room1/A".to_owned(), 4, r#"{"v":4}"#.to_owned()),
        ("room1/B".to_owned(), 3, r#"{"v":3}"#.to_owned()),
    ];
    assert_eq!(rows(h.alarm_states().await.unwrap()), want);
    assert_eq!(
        count(&h, "SELECT COUNT(*) FROM alarm_events WHERE alarm_id = 7"),
        1
    );
    // A full store: the action's event and state are refused together.
    h.set_size_limit(Some(0)).await.unwrap();
    let mut full = false;
    for _ in 0..100_000 {
        if h.alarm_event(event("filler", 1)).await.is_err() {
            full = true;
            break;
        }
    }
    assert!(full, "the size limit never filled the store");
    let r = h
        .commit(
            vec![event("acknowledged", 8)],
            Some(state("room1/A", 5, r#"{"v":5}"#)),
        )
        .await;
    assert!(
        r.as_ref().is_err_and(|e| e.to_string().contains("full")),
        "{r:?}"
    );
    h.set_size_limit(None).await.unwrap();
    assert_eq!(rows(h.alarm_states().await.unwrap()), want);
    assert_eq!(
        count(&h, "SELECT COUNT(*) FROM alarm_events WHERE alarm_id = 8"),
        0
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn flush_answers_only_once_the_hl7_outbox_changes_recorded_before_it_are_written() {
    use hl7_outbox::{Hl7Op, Hl7Row};
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    let queued = |n: usize| {
        let h = h.clone();
        async move { eventually("commands queued", || h.shared.queue().cmds.len() == n).await }
    };
    // A job holds the writer, so that the HL7 change, the flush and a job after it are taken
    // in one round, in that order.
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let hold = tokio::spawn({
        let h = h.clone();
        async move {
            h.write(move |_| {
                let _ = started_tx.send(());
                let _ = go_rx.recv_timeout(Duration::from_secs(30));
                Ok(())
            })
            .await
        }
    });
    eventually("the holding job runs", || started_rx.try_recv().is_ok()).await;
    h.hl7(Hl7Op::Put(Hl7Row {
        id: 7,
        endpoint: "ehr".into(),
        body: "MSH|^~\\&|||||||ORU^R01^ORU_R01|7\r".into(),
        created_ms: 1,
        attempts: 0,
        last_error: None,
    }));
    let flush = tokio::spawn({
        let h = h.clone();
        async move { h.flush().await }
    });
    queued(2).await;
    // The job after the flush keeps the writer until the outbox has been looked at.
    let (checked_tx, checked_rx) = std::sync::mpsc::channel::<()>();
    let after = tokio::spawn({
        let h = h.clone();
        async move {
            h.write(move |_| {
                let _ = checked_rx.recv_timeout(Duration::from_secs(30));
                Ok(())
            })
            .await
        }
    });
    queued(3).await;
    go_tx.send(()).unwrap();
    flush.await.unwrap().expect("the store is writable");
    assert_eq!(
        count(&h, "SELECT count(*) FROM hl7_outbox"),
        1,
        "the message queued before the flush is in the file when flush answers"
    );
    checked_tx.send(()).unwrap();
    after.await.unwrap().unwrap();
    hold.await.unwrap().unwrap();
    store.close().await.unwrap();
}

/// The alarm path's consumer waits while [`COMMAND_CAP`] commands wait for a held-up writer,
/// and goes on once the writer takes them; the depth and its high-water mark are reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alarm_path_waits_for_room_in_the_command_queue_and_its_peak_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    // A job that holds the writer until released.
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let (started, writer_held) = tokio::sync::oneshot::channel::<()>();
    let job = {
        let h = h.clone();
        tokio::spawn(async move {
            h.write(move |_| {
                let _ = started.send(());
                let _ = hold.recv();
                Ok(())
            })
            .await
        })
    };
    writer_held.await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), h.wait_room())
        .await
        .expect("room while the queue is short");
    for i in 0..COMMAND_CAP {
        h.alarm_event_nowait(event("updated", i as u64));
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), h.wait_room())
            .await
            .is_err(),
        "a full command queue makes the alarm path wait"
    );
    let health = h.health();
    assert_eq!(
        (health.pending_commands, health.command_cap),
        (COMMAND_CAP, COMMAND_CAP)
    );
    release.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), h.wait_room())
        .await
        .expect("room once the writer takes the commands");
    job.await.unwrap().unwrap();
    h.flush().await.unwrap();
    assert_eq!(
        count(&h, "SELECT COUNT(*) FROM alarm_events"),
        COMMAND_CAP as i64
    );
    let health = h.health();
    assert_eq!(health.pending_commands, 0);
    assert_eq!(health.peak_commands, COMMAND_CAP);
    store.close().await.unwrap();
}

/// Every column of every reading through `readings_named` (and the value's SQL type).
fn all_readings(conn: &Connection, order: &str) -> Vec<Vec<rusqlite::types::Value>> {
    let mut st = conn
        .prepare(&format!(
            "SELECT id, bed, device, metric, value, typeof(value), invalid, flags, device_time, \
             received_ms, mono_ms, bed_seq, simulated FROM readings_named ORDER BY {order}"
        ))
        .unwrap();
    st.query_map([], |r| {
        (0..13)
            .map(|i| r.get::<_, rusqlite::types::Value>(i))
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

#[test]
fn packing_the_readings_of_a_v5_file_keeps_every_field_and_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("v5.sqlite")).unwrap();
    assert_eq!(schema::migrate(&mut conn, 5).unwrap(), 5);
    conn.execute_batch(
        "INSERT INTO beds (name) VALUES ('room1/A'), ('room1/B');
         INSERT INTO devices (name) VALUES ('ox'), ('bp \"quoted\" \\ one');",
    )
    .unwrap();
    // Ids out of received order, a gap, values that need all 17 digits, every kind of NULL.
    // id, bed, device, metric, value, invalid, flags, device_time, received_ms
    type Old = (
        i64,
        i64,
        i64,
        &'static str,
        Option<f64>,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        i64,
    );
    let rows: &[Old] = &[
        (
            10,
            1,
            1,
            "spo2",
            Some(97.0),
            None,
            None,
            Some("2026-01-02T03:04:05"),
            5_000,
        ),
        (
            11,
            1,
            1,
            "pulse_rate",
            Some(0.1 + 0.2),
            None,
            Some("low_signal"),
            None,
            5_000,
        ),
        (
            12,
            2,
            2,
            "nibp_sys",
            None,
            Some("device_flagged"),
            Some("cuff_loose cuff_error:87"),
            None,
            4_000,
        ),
        (
            20,
            1,
            1,
            "perfusion_index",
            Some(1.0 / 3.0),
            None,
            None,
            None,
            3_000,
        ),
        (21, 2, 1, "pleth", Some(-0.0), None, None, None, 6_000),
        (
            22,
            2,
            1,
            "spo2",
            Some(1e300),
            Some("weird \"text\" \\ \u{1}"),
            Some("a\nb"),
            Some("x"),
            6_000,
        ),
        (
            30,
            1,
            2,
            "battery",
            Some(123_456_789.125),
            None,
            None,
            None,
            7_000,
        ),
    ];
    for (i, r) in rows.iter().enumerate() {
        conn.execute(
            "INSERT INTO readings (id, bed, device, metric, value, invalid, flags, device_time, \
             received_ms, mono_ms, bed_seq, simulated) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
            rusqlite::params![
                r.0,
                r.1,
                r.2,
                r.3,
                r.4,
                r.5,
                r.6,
                r.7,
                r.8,
                r.8 + 17,
                i64::MAX - i as i64,
                (i % 2) as i64
            ],
        )
        .unwrap();
    }
    let by_id = all_readings(&conn, "id");
    let by_time = all_readings(&conn, "received_ms, id");
    assert_eq!(by_id.len(), rows.len());
    assert_eq!(
        schema::migrate(&mut conn, schema::VERSION).unwrap(),
        schema::VERSION
    );
    assert_eq!(all_readings(&conn, "id"), by_id);
    assert_eq!(all_readings(&conn, "received_ms, id"), by_time);
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'readings'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "readings is a view now");
    let groups: i64 = conn
        .query_row("SELECT COUNT(*) FROM reading_groups", [], |r| r.get(0))
        .unwrap();
    assert_eq!(groups, rows.len() as i64);
    // A reading written after the migration comes after every old one.
    conn.execute(
        "INSERT INTO reading_groups (bed, device, received_ms, mono_ms, simulated, wave, readings) \
         VALUES (1, 1, 1, 1, 0, 0, '[[\"spo2\",90.0,null,null,null,1],[\"pulse_rate\",60.0,null,null,null,2]]')",
        [],
    )
    .unwrap();
    let ids = column(&conn, "SELECT id FROM readings ORDER BY id");
    assert_eq!(ids, [10, 11, 12, 20, 21, 22, 30, 31 * 4096, 31 * 4096 + 1]);
}

#[test]
fn a_v6_files_groups_read_back_the_same_after_v7() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("v6.sqlite")).unwrap();
    assert_eq!(schema::migrate(&mut conn, 6).unwrap(), 6);
    // As v6 wrote them: a read of two readings, a reading kept from v5 with its id (7th
    // element), a waveform sample, another bed's read.
    conn.execute_batch(
        r#"INSERT INTO beds (name) VALUES ('room1/A'), ('room1/B');
         INSERT INTO devices (name) VALUES ('ox'), ('bp');
         INSERT INTO reading_groups (id, bed, device, received_ms, mono_ms, simulated, wave, readings)
         VALUES (3, 1, 1, 5000, 17, 0, 0, '[["spo2",97.0,null,null,"2026-01-02T03:04:05",1],["pulse_rate",null,"no_value","low_signal",null,2]]'),
                (4, 1, 1, 5004, 21, 0, 0, '[["spo2",96.0,null,null,null,3,42]]'),
                (5, 1, 1, 5004, 21, 0, 1, '[["pleth",0.5,null,null,null,4]]'),
                (6, 2, 2, 4000, 9, 1, 0, '[["nibp_sys",120.0,null,null,null,1]]');"#,
    )
    .unwrap();
    let by_id = all_readings(&conn, "id");
    let by_time = all_readings(&conn, "received_ms, id");
    assert_eq!(by_id.len(), 5);
    assert_eq!(
        schema::migrate(&mut conn, schema::VERSION).unwrap(),
        schema::VERSION
    );
    assert_eq!(all_readings(&conn, "id"), by_id);
    assert_eq!(all_readings(&conn, "received_ms, id"), by_time);
    assert_eq!(
        column(&conn, "SELECT id FROM readings ORDER BY id"),
        [42, 3 * 4096, 3 * 4096 + 1, 5 * 4096, 6 * 4096]
    );
}

/// Schema v7: a device's reads in one batch are one group however their times differ (within
/// a second, by both clocks); each reading keeps its own received and monotonic ms, and the
/// store's queries and retention see each reading at its own time.
#[tokio::test]
async fn a_devices_reads_within_a_second_are_one_group_each_reading_at_its_own_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    // Bed A's oximeter: reads at 10 000, 10 004, 10 999 ms (one group), 11 000 (a second
    // after the first: the next group), then the wall clock steps back to 10 500 (another).
    // Bed B's between them: its own group.
    // All under one lock, so that one batch takes them (the writer may wake between two
    // pushes, and a batch ends a group).
    let times = [10_000, 10_004, 10_999, 11_000];
    let mut all: Vec<Observation> = times
        .into_iter()
        .enumerate()
        .map(|(i, t)| obs(0, Metric::Spo2, Some(90.0 + i as f64), t, i as u64 + 1))
        .collect();
    all.insert(2, obs(1, Metric::Spo2, Some(80.0), 10_002, 1));
    let mut back = obs(0, Metric::Spo2, Some(99.0), 10_500, 5);
    back.mono = obs(0, Metric::Spo2, None, 11_500, 0).mono;
    all.push(back);
    h.readings(&all);
    h.flush().await.unwrap();
    let conn = Connection::open(h.path()).unwrap();
    let groups: Vec<(i64, i64, i64, i64)> = conn
        .prepare(
            "SELECT bed, received_ms, mono_ms, json_array_length(readings) FROM reading_groups \
             ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mono0 = writer::mono_ms(&obs(0, Metric::Spo2, None, 10_000, 0));
    let beds = |name: &str| -> i64 {
        conn.query_row("SELECT id FROM beds WHERE name = ?1", [name], |r| r.get(0))
            .unwrap()
    };
    let (a, b) = (beds("room1/A"), beds("room1/B"));
    assert_eq!(
        groups,
        [
            (a, 10_000, mono0, 3),
            (a, 11_000, mono0 + 1_000, 1),
            (a, 10_500, mono0 + 1_500, 1),
            (b, 10_002, mono0 + 2, 1),
        ]
    );
    // Every reading at its own time, through the view.
    let rows: Vec<(i64, i64, f64)> = conn
        .prepare(
            "SELECT received_ms, mono_ms, value FROM readings_named WHERE bed = 'room1/A' \
             ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        rows,
        [
            (10_000, mono0, 90.0),
            (10_004, mono0 + 4, 91.0),
            (10_999, mono0 + 999, 92.0),
            (11_000, mono0 + 1_000, 93.0),
            (10_500, mono0 + 1_500, 99.0),
        ]
    );
    // A query from the middle of a group gets the readings from then on, not its first.
    let hist = h
        .history("room1/A", Metric::Spo2, 10_003, 10_999, 100)
        .await
        .unwrap();
    let seen: Vec<(i64, Option<f64>)> = hist.iter().map(|p| (p.t_ms, p.avg)).collect();
    assert_eq!(
        seen,
        [
            (10_004, Some(91.0)),
            (10_500, Some(99.0)),
            (10_999, Some(92.0))
        ]
    );
    let between = query::readings_between(&conn, "room1/A", 10_004, 10_004, false).unwrap();
    assert_eq!(between.len(), 1);
    assert_eq!(between[0].value, Some(91.0));
    // Retention never takes a reading newer than the cut with its group's older ones: a cut
    // at 10 999 keeps the whole first group (its last reading is not older); a cut after it
    // takes it.
    let pruned = h.prune(10_999, true).await.unwrap();
    assert_eq!(pruned.readings, 0);
    assert_eq!(count(&h, "SELECT COUNT(*) FROM readings WHERE bed = 1"), 5);
    let pruned = h.prune(11_000, true).await.unwrap();
    assert_eq!(pruned.readings, 3);
    store.close().await.unwrap();
}

#[test]
fn the_history_queries_use_the_reading_groups_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("plan.sqlite")).unwrap();
    schema::migrate(&mut conn, schema::VERSION).unwrap();
    // The shapes of src/store/query.rs's queries: a vital sign's (`wave = 0`) and a whole
    // record's (`wave IN (0, waveforms)`).
    for sql in [
        "SELECT COUNT(*) FROM readings WHERE bed = ?1 AND wave = 0 AND metric = ?2 \
         AND group_ms BETWEEN ?3 - 999 AND ?4 AND received_ms BETWEEN ?3 AND ?4",
        "SELECT received_ms, value, invalid FROM readings \
         WHERE bed = ?1 AND wave = 0 AND metric = ?2 AND group_ms BETWEEN ?3 - 999 AND ?4 \
         AND received_ms BETWEEN ?3 AND ?4 ORDER BY received_ms, id",
        "SELECT (received_ms - ?3) / 7 AS b, AVG(value) FROM readings \
         WHERE bed = ?1 AND wave = 0 AND metric = ?2 AND group_ms BETWEEN ?3 - 999 AND ?4 \
         AND received_ms BETWEEN ?3 AND ?4 GROUP BY b ORDER BY b",
        "SELECT r.id, b.name, d.name FROM readings r JOIN beds b ON b.id = r.bed \
         JOIN devices d ON d.id = r.device WHERE r.bed = ?1 \
         AND r.group_ms BETWEEN ?3 - 999 AND ?4 AND r.received_ms BETWEEN ?3 AND ?4 \
         AND r.wave IN (0, ?2 IS NOT NULL)",
        "SELECT received_ms FROM readings WHERE bed = ?1 AND wave = 0 AND metric = ?2 \
         AND group_ms >= ?3 - 999 AND received_ms >= ?3 AND ?4 IS NOT NULL",
    ] {
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let plan: Vec<String> = st
            .query_map(rusqlite::params![1, "spo2", 0, 10], |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains(
                "USING INDEX reading_groups_bed_wave_received (bed=? AND wave=? AND received_ms>"
            )),
            "{sql}: {plan:?}"
        );
    }
}

#[test]
fn values_and_strings_written_as_json_read_back_exactly() {
    let conn = Connection::open_in_memory().unwrap();
    let mut st = conn
        .prepare("SELECT ('[' || ?1 || ']') ->> 0, typeof(('[' || ?1 || ']') ->> 0)")
        .unwrap();
    let mut text = String::new();
    let mut check = |v: f64| {
        text.clear();
        writer::push_number(&mut text, Some(v));
        let (back, ty): (f64, String) = st
            .query_row([&text], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!(
            (back.to_bits(), ty.as_str()),
            (v.to_bits(), "real"),
            "{v:?} as {text}"
        );
    };
    for k in -3000..=3000 {
        check(f64::from(k) / 10.0);
        check(f64::from(k) / 100.0);
        check(f64::from(k) / 3.0);
    }
    for v in [
        0.0,
        1e21,
        1e-7,
        1e300,
        -1e-300,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        0.1 + 0.2,
    ] {
        check(v);
    }
    // Bits from a fixed LCG: finite doubles of every magnitude.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..20_000 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let v = f64::from_bits(x);
        if v.is_finite() {
            check(v);
        }
    }
    let mut s = String::new();
    for raw in ["plain", "q\"uote", "back\\slash", "ctl\u{1}\n\t", "ünï"] {
        s.clear();
        s.push('"');
        writer::push_str_body(&mut s, raw);
        s.push('"');
        let back: String = conn
            .query_row("SELECT ('[' || ?1 || ']') ->> 0", [&s], |r| r.get(0))
            .unwrap();
        assert_eq!(back, raw);
    }
}

#[tokio::test]
async fn readings_of_several_reads_are_packed_per_device_and_read_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    let time = Some(crate::clock::calendar_utc(1_234_000));
    let mk =
        |bed: u16, device: u16, m: Measurement, t: i64, seq: u64, simulated: bool| Observation {
            bed: BedIdx(bed),
            device: DeviceIdx(device),
            m,
            received_ms: t,
            mono: Mono::ZERO.saturating_add(
                crate::clock::MONO_ORIGIN + std::time::Duration::from_millis(t as u64 + 3),
            ),
            bed_seq: seq,
            simulated,
        };
    let mut all = Flags::EMPTY;
    for f in Flag::ALL {
        all = all.with(f);
    }
    let mut cuff = Flags::EMPTY.with(Flag::CuffLoose);
    cuff.set_cuff_error(87);
    let mut obs = vec![
        // One Masimo line: three readings, one read.
        mk(
            0,
            0,
            Measurement::new(Metric::Spo2, 97.0, Flags::EMPTY).at(time),
            1_000,
            1,
            false,
        ),
        mk(
            0,
            0,
            Measurement::new(Metric::PulseRate, 72.5, Flags::EMPTY).at(time),
            1_000,
            2,
            false,
        ),
        mk(
            0,
            0,
            Measurement::new(
                Metric::PerfusionIndex,
                0.1 + 0.2,
                Flags::EMPTY.with(Flag::LowSignal),
            )
            .at(time),
            1_000,
            3,
            false,
        ),
        // The cuff of the same bed at the same ms: another device, another group.
        mk(
            0,
            1,
            Measurement::invalid(Metric::NibpSys, Invalid::DeviceFlagged, cuff),
            1_000,
            4,
            false,
        ),
        mk(
            0,
            1,
            Measurement::new(Metric::NibpDia, 80.0, Flags::EMPTY),
            1_000,
            5,
            false,
        ),
        // Another bed, simulated, then the same device one ms later.
        mk(
            1,
            2,
            Measurement::new(Metric::Spo2, 96.0, Flags::EMPTY),
            1_000,
            1,
            true,
        ),
        mk(
            1,
            2,
            Measurement::new(Metric::Spo2, 95.0, Flags::EMPTY),
            1_001,
            2,
            true,
        ),
        // Same read but not simulated.
        mk(
            1,
            2,
            Measurement::new(Metric::PulseRate, 70.0, Flags::EMPTY),
            1_001,
            3,
            false,
        ),
    ];
    // Every invalid reason, every flag, in one read.
    let reasons = Invalid::ALL;
    for (i, r) in reasons.into_iter().enumerate() {
        obs.push(mk(
            1,
            3,
            Measurement::invalid(Metric::Spo2, r, all).at(time),
            2_000,
            10 + i as u64,
            false,
        ));
    }
    // All under one lock, so that one batch takes them (the writer may wake between two
    // pushes, and a batch ends a group).
    h.readings(&obs[..16]);
    h.flush().await.unwrap();
    // 5 000 readings of one read: more than one group holds.
    let big: Vec<Observation> = (0..5_000u64)
        .map(|i| {
            mk(
                0,
                0,
                Measurement::new(Metric::Pleth, (i % 200) as f64, Flags::EMPTY),
                3_000,
                100 + i,
                false,
            )
        })
        .collect();
    h.readings(&big);
    h.flush().await.unwrap();
    obs.extend(big);

    let names = |bed: u16, device: u16| {
        (
            ["room1/A", "room1/B"][usize::from(bed)].to_owned(),
            ["room1-A-ox", "room1-A-bp", "room1-B-ox", "room1-B-bp"][usize::from(device)]
                .to_owned(),
        )
    };
    let want: Vec<_> = obs
        .iter()
        .map(|o| {
            let (bed, device) = names(o.bed.0, o.device.0);
            let flags = o.m.flags.names().join(" ");
            (
                bed,
                device,
                o.m.metric.name().to_owned(),
                o.m.value.number(),
                o.m.value.invalid().map(|r| r.name().to_owned()),
                (!flags.is_empty()).then_some(flags),
                o.m.device_time.map(|t| t.to_string()),
                o.received_ms,
                o.received_ms + 3,
                o.bed_seq as i64,
                o.simulated,
            )
        })
        .collect();
    let conn = Connection::open(h.path()).unwrap();
    let mut st = conn
        .prepare(
            "SELECT bed, device, metric, value, invalid, flags, device_time, received_ms, \
             mono_ms, bed_seq, simulated FROM readings_named ORDER BY id",
        )
        .unwrap();
    let got: Vec<_> = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<f64>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, i64>(9)?,
                r.get::<_, bool>(10)?,
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    // Masimo line, cuff, bed B simulated with its next ms (v7: a device's reads within a
    // second are one group), not simulated, the invalid read, and the 5 000 readings in two
    // groups.
    let sizes: Vec<i64> = conn
        .prepare("SELECT json_array_length(readings) FROM reading_groups ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(sizes, [3, 2, 2, 1, 8, 4096, 904]);
    // The store's own queries see the same.
    let rows = query::readings_between(&conn, "room1/A", 0, 2_500, true).unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[2].value, Some(0.1 + 0.2));
    assert_eq!(rows[3].flags, "cuff_loose cuff_error:87");
    let hist = h
        .history("room1/A", Metric::PulseRate, 0, 2_500, 100)
        .await
        .unwrap();
    assert_eq!((hist.len(), hist[0].avg), (1, Some(72.5)));
    store.close().await.unwrap();
}

/// A BCI packet gives pleth, pulse rate and SpO2 together: one read's vital signs are one
/// row, its waveform samples another (`wave` 1), and a vital-sign query reads only the first.
#[tokio::test]
async fn a_reads_waveform_samples_are_a_row_of_their_own_that_vital_sign_queries_skip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    let mut read = Vec::new();
    for i in 0..3u64 {
        read.push(obs(
            0,
            Metric::Pleth,
            Some(100.0 + i as f64),
            5_000,
            3 * i + 1,
        ));
        read.push(obs(
            0,
            Metric::PulseRate,
            Some(70.0 + i as f64),
            5_000,
            3 * i + 2,
        ));
        read.push(obs(
            0,
            Metric::Spo2,
            Some(95.0 + i as f64),
            5_000,
            3 * i + 3,
        ));
    }
    h.readings(&read);
    h.flush().await.unwrap();
    let conn = Connection::open(h.path()).unwrap();
    let rows: Vec<(i64, i64)> = conn
        .prepare("SELECT wave, json_array_length(readings) FROM reading_groups ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(rows, [(0, 6), (1, 3)]);
    let spo2 = h
        .history("room1/A", Metric::Spo2, 0, 10_000, 100)
        .await
        .unwrap();
    let values: Vec<Option<f64>> = spo2.iter().map(|p| p.avg).collect();
    assert_eq!(values, [Some(95.0), Some(96.0), Some(97.0)]);
    let pleth = h
        .history("room1/A", Metric::Pleth, 0, 10_000, 100)
        .await
        .unwrap();
    assert_eq!(pleth.len(), 3);
    let without = query::readings_between(&conn, "room1/A", 0, 10_000, false).unwrap();
    assert_eq!(without.len(), 6);
    assert!(without.iter().all(|r| r.metric != "pleth"));
    let with = query::readings_between(&conn, "room1/A", 0, 10_000, true).unwrap();
    assert_eq!(with.len(), 9);
    let recent = query::recent_values(&conn, "room1/A", &[Metric::Spo2, Metric::Pleth], 0).unwrap();
    assert_eq!(recent.len(), 6);
}

/// `durable` commits with `synchronous=FULL` (2) and leaves the connection at NORMAL (1), also
/// the second time, when its pragma statements come from the connection's statement cache.
#[test]
fn a_durable_transaction_runs_fully_synchronous_and_the_connection_returns_to_normal() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_connection(&dir.path().join("s.sqlite")).unwrap();
    let sync =
        |c: &Connection| -> i64 { c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap() };
    for round in 0..2 {
        let inside = writer::durable(&mut conn, |tx| {
            Ok(tx.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?)
        })
        .unwrap();
        assert_eq!(inside, 2, "round {round}: FULL inside the transaction");
        assert_eq!(sync(&conn), 1, "round {round}: NORMAL after it");
    }
}

/// Alarm events recorded without a waiter, one every 2 ms, are group-committed at most once per
/// round (`BATCH_INTERVAL`): however fast the disk, the commits stay within one per round of
/// the time the events took to record, plus the first (at once) and the last. Before, the writer
/// committed as soon as anything came, up to one fsync per event. Every event is in the file,
/// in order, without a flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_events_without_a_waiter_are_group_committed_at_most_once_a_round() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let h = store.handle();
    let before = h.health().group_commits;
    const EVENTS: u64 = 60;
    let started = Instant::now();
    for i in 0..EVENTS {
        h.alarm_event_nowait(event("updated", i));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed();
    eventually("every event in the file", || {
        count(&h, "SELECT COUNT(*) FROM alarm_events") == EVENTS as i64
    })
    .await;
    let commits = h.health().group_commits - before;
    let rounds = (took.as_millis() / BATCH_INTERVAL.as_millis()) as u64;
    assert!(
        (1..=rounds + 2).contains(&commits),
        "{commits} group commits for {EVENTS} events recorded over {took:?} ({rounds} rounds)"
    );
    let conn = Connection::open(h.path()).unwrap();
    let ids = column(&conn, "SELECT alarm_id FROM alarm_events ORDER BY id");
    assert_eq!(ids, (0..EVENTS as i64).collect::<Vec<_>>());
    store.close().await.unwrap();
}
