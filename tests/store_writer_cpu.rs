//! While the store's file cannot be written, its writer thread retries once a round and sleeps
//! between tries: readings and HL7 outbox changes waiting for a full disk cost next to no CPU,
//! and are all written once the disk has room. (A writer that retried at once spun a whole core:
//! 197 of 200 clock ticks over two seconds, where this one uses 2.)
//!
//! Its own binary: it measures the CPU time of the thread named `vitalsd-store`, so no other
//! test's store may run beside it.

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

/// User plus system clock ticks of the store's writer thread so far.
fn writer_ticks() -> u64 {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // a thread that ended meanwhile
        };
        if comm.trim() != "vitalsd-store" {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // After the `(comm)` field: state is field 3, utime 14 and stime 15 (proc(5)).
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        ticks += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    ticks
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
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data/vitalsd.sqlite")).unwrap();
    let h = store.handle();
    h.set_topology(vec!["room1/A".into()], vec!["room1-A-ox".into()]);
    h.reading(&obs(1));
    h.flush().await.unwrap();
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
