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
async fn a_file_of_the_previous_schema_is_migrated_and_keeps_its_readings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    {
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(
            schema::migrate(&mut conn, schema::VERSION - 1).unwrap(),
            schema::VERSION - 1
        );
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
