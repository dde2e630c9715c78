//! While the store's file cannot be written, its writer thread retries once a round and sleeps
//! between tries: readings and HL7 outbox changes waiting for a full disk cost next to no CPU,
//! and are all written once the disk has room. (A writer that retried at once spun a whole core:
//! 197 of 200 clock ticks over two seconds, where this one uses 2.)
//!
//! Its own binary: it measures the CPU time of the thread named `vitalsd-store`, so no other
//! test's store may run beside it (the tests here take [`ONE_STORE`] in turn).
//!
//! The writer also runs nicer than the alarm path (+10): its batches wait for a device read or
//! a client's write, never the other way round.

use std::time::Duration;
use vitalsd::clock::Mono;
use vitalsd::model::{BedIdx, DeviceIdx, Flags, Measurement, Metric, Observation};
use vitalsd::store::Store;
use vitalsd::store::hl7_outbox::{Hl7Op, Hl7Row};

fn obs(seq: u64) -> Observation {
    Observation {
        bed: BedIdx(0),
        device: DeviceIdx(0),
        m: Measurement::new(Metric::Pleth, seq as f64, Flags::EMPTY),
        received_ms: seq as i64,
        mono: Mono::ZERO.saturating_add(vitalsd::clock::MONO_ORIGIN + Duration::from_millis(seq)),
        bed_seq: seq,
        simulated: true,
    }
}

/// One store at a time in this binary: the tests find its writer by the thread's name.
static ONE_STORE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The fields of a thread's `stat` after its `(comm)` field: state is `[0]` (field 3 of
/// proc(5)), utime `[11]`, stime `[12]`, nice `[16]`.
fn stat_fields(stat: &str) -> Vec<String> {
    stat.rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The `stat` fields of each thread named `vitalsd-store`.
fn writer_stats() -> Vec<Vec<String>> {
    let mut stats = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // a thread that ended meanwhile
        };
        if comm.trim() != "vitalsd-store" {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        stats.push(stat_fields(&stat));
    }
    stats
}

/// User plus system clock ticks of the store's writer thread so far.
fn writer_ticks() -> u64 {
    writer_stats()
        .iter()
        .map(|f| f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap())
        .sum()
}

/// A store in a new directory, one bed and device, one reading written.
async fn opened_with_a_reading() -> (tempfile::TempDir, Store, vitalsd::store::StoreHandle) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data/vitalsd.sqlite")).unwrap();
    let h = store.handle();
    h.set_topology(vec!["room1/A".into()], vec!["room1-A-ox".into()]);
    h.reading(&obs(1));
    h.flush().await.unwrap();
    (dir, store, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_runs_ten_nicer_than_the_thread_that_opened_the_store() {
    let _one = ONE_STORE.lock().await;
    let own_nice = || {
        stat_fields(&std::fs::read_to_string("/proc/thread-self/stat").unwrap())[16]
            .parse::<i32>()
            .unwrap()
    };
    let own = own_nice();
    // Once a reading is written, the writer has long set its priority (its first act).
    let (_dir, store, _h) = opened_with_a_reading().await;
    // Only the writer: the thread that opened the store (as the daemon's workers) keeps its own.
    assert_eq!(own_nice(), own, "the opening thread's nice value changed");
    let nices: Vec<i32> = writer_stats()
        .iter()
        .map(|f| f[16].parse().unwrap())
        .collect();
    // Threads inherit their creator's nice value; the tokio worker that opened the store runs
    // at the test thread's.
    assert_eq!(
        nices,
        vec![(own + 10).min(19)],
        "the writer's nice value (this test's thread: {own})"
    );
    store.close().await.unwrap();
}

/// The writer's CPU over `over`, in clock ticks, and the ticks `over` has.
async fn writer_cpu(over: Duration) -> (u64, u64) {
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let before = writer_ticks();
    tokio::time::sleep(over).await;
    (writer_ticks() - before, hz * over.as_millis() as u64 / 1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_write_retries_once_a_round_without_spinning_and_loses_nothing() {
    let _one = ONE_STORE.lock().await;
    let (_dir, store, h) = opened_with_a_reading().await;
    // No room to grow: readings stay in the buffer, the store reports itself unwritable.
    h.set_size_limit(Some(0)).await.unwrap();
    let mut seq = 2;
    while h.health().writable {
        assert!(
            seq < 200_000,
            "the size limit never made the store unwritable"
        );
        for _ in 0..500 {
            h.reading(&obs(seq));
            seq += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (used, had) = writer_cpu(Duration::from_secs(2)).await;
    assert!(
        used * 4 < had,
        "with readings waiting for room the writer used {used} of {had} clock ticks"
    );
    // HL7 outbox changes that do not fit either.
    for id in 0..20 {
        h.hl7(Hl7Op::Put(Hl7Row {
            id: 1_000 + id,
            endpoint: "ehr".into(),
            body: "x".repeat(100_000),
            created_ms: 1,
            attempts: 0,
            last_error: None,
        }));
    }
    let (used, had) = writer_cpu(Duration::from_secs(2)).await;
    assert!(
        used * 4 < had,
        "with readings and HL7 changes waiting for room the writer used {used} of {had} clock ticks"
    );
    // Room again: everything is written.
    h.set_size_limit(None).await.unwrap();
    h.flush().await.unwrap();
    let health = h.health();
    assert_eq!(
        (health.writable, health.backlog, health.dropped),
        (true, 0, 0),
        "every reading written, none dropped: {health:?}"
    );
    let (rows, _) = h.hl7_load().await.unwrap();
    assert_eq!(
        rows.len(),
        20,
        "every HL7 change written once there is room"
    );
    store.close().await.unwrap();
}
