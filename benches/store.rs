//! The store: sustained write throughput (readings per second through `StoreHandle::reading`,
//! committed, none dropped) and database growth per session-hour for two recliners at
//! realistic rates, with and without the pleth waveform.
//!
//! `cargo bench --bench store`
//!
//! Rates (one room as in the demo): recliner A has a Masimo (SpO2, PR, PI at 1 Hz) and a
//! SunTech cuff (sys, dia, mean, pulse every 5 min); recliner B has a Nonin (pleth at 75 Hz,
//! SpO2 and PR at 3 Hz) and a SunTech cuff.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};
use vitalsd::clock::Mono;
use vitalsd::model::{BedIdx, DeviceIdx, Flags, Measurement, Metric, Observation};
use vitalsd::store::{Store, StoreHandle};

fn obs(bed: u16, device: u16, metric: Metric, value: f64, t_ms: i64, seq: u64) -> Observation {
    Observation {
        bed: BedIdx(bed),
        device: DeviceIdx(device),
        m: Measurement::new(metric, value, Flags::EMPTY),
        received_ms: t_ms,
        mono: Mono(u64::try_from(t_ms).unwrap_or(0) * 1_000_000),
        bed_seq: seq,
        simulated: false,
    }
}

/// One hour of both recliners, in arrival order within each second.
fn session_hour(start_ms: i64, pleth: bool) -> Vec<Observation> {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut out = Vec::new();
    let (mut seq_a, mut seq_b) = (0u64, 0u64);
    for sec in 0..3600i64 {
        let t0 = start_ms + sec * 1000;
        // Recliner A: Masimo, 1 Hz.
        for (m, v) in [
            (Metric::Spo2, 97.0 + f64::from(rng.random_range(-1i8..=1))),
            (
                Metric::PulseRate,
                72.0 + f64::from(rng.random_range(-3i8..=3)),
            ),
            (
                Metric::PerfusionIndex,
                f64::from(rng.random_range(20u16..=50)) / 10.0,
            ),
        ] {
            seq_a += 1;
            out.push(obs(0, 0, m, v, t0, seq_a));
        }
        // Recliner B: Nonin, pleth at 75 Hz, SpO2 and PR at 3 Hz.
        for i in 0..75i64 {
            let t = t0 + i * 1000 / 75;
            if pleth {
                seq_b += 1;
                let v = f64::from(rng.random_range(0u8..=255));
                out.push(obs(1, 2, Metric::Pleth, v, t, seq_b));
            }
            if i % 25 == 0 {
                for (m, base) in [(Metric::Spo2, 96.0), (Metric::PulseRate, 70.0)] {
                    seq_b += 1;
                    let v = base + f64::from(rng.random_range(-2i8..=2));
                    out.push(obs(1, 2, m, v, t, seq_b));
                }
            }
        }
        // Both cuffs every 5 minutes.
        if sec % 300 == 0 {
            for (bed, dev) in [(0u16, 1u16), (1, 3)] {
                for (m, v) in [
                    (Metric::NibpSys, 125.0),
                    (Metric::NibpDia, 80.0),
                    (Metric::NibpMean, 95.0),
                    (Metric::NibpPulse, 72.0),
                ] {
                    let seq = if bed == 0 { &mut seq_a } else { &mut seq_b };
                    *seq += 1;
                    out.push(obs(bed, dev, m, v, t0, *seq));
                }
            }
        }
    }
    out
}

fn open(path: &Path) -> Store {
    let store = Store::open(path).expect("store opens");
    store.handle().set_topology(
        vec!["room1/A".into(), "room1/B".into()],
        vec![
            "room1-A-oximeter".into(),
            "room1-A-nibp".into(),
            "room1-B-oximeter".into(),
            "room1-B-nibp".into(),
        ],
    );
    store
}

/// Feeds `obs` as fast as the writer keeps up without overflowing the buffer.
fn feed(h: &StoreHandle, obs: &[Observation]) {
    for chunk in obs.chunks(10_000) {
        while h.health().backlog > 100_000 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for o in chunk {
            h.reading(o);
        }
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");

    // 1. Sustained throughput: three session-hours with pleth, back to back.
    let path = dir.path().join("throughput.sqlite");
    let store = open(&path);
    let h = store.handle();
    let hours: Vec<Vec<Observation>> = (0..3).map(|i| session_hour(i * 3_600_000, true)).collect();
    let total: usize = hours.iter().map(Vec::len).sum();
    let started = Instant::now();
    for hour in &hours {
        feed(&h, hour);
    }
    rt.block_on(h.flush()).expect("flush");
    let secs = started.elapsed().as_secs_f64();
    let health = h.health();
    println!(
        "sustained writes: {total} readings in {secs:.2} s = {:.0} readings/s committed (dropped {})",
        total as f64 / secs,
        health.dropped
    );
    rt.block_on(store.close()).expect("close");

    // 2. Growth per session-hour, with and without pleth (file size after a checkpoint).
    for pleth in [true, false] {
        let path = dir.path().join(format!("growth-{pleth}.sqlite"));
        let store = open(&path);
        let h = store.handle();
        let mut hour = session_hour(0, pleth);
        // As the daemon writes them: each `READINGS_INTERVAL` (100 ms) of arrivals in one
        // batch (schema v7 packs a device's readings of a batch into one row, so a batch of
        // an hour at once would pack them far tighter than real time does).
        hour.sort_by_key(|o| o.received_ms);
        for batch in hour.chunk_by(|a, b| a.received_ms / 100 == b.received_ms / 100) {
            for o in batch {
                h.reading(o);
            }
            rt.block_on(h.flush()).expect("flush");
        }
        rt.block_on(store.close()).expect("close");
        let conn = rusqlite::Connection::open(&path).expect("reopen");
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("checkpoint");
        let pleth_rows = hour.iter().filter(|o| o.m.metric == Metric::Pleth).count();
        println!(
            "growth per session-hour, two recliners, pleth {}: {} readings ({} pleth), {:.1} MB ({:.0} bytes/reading)",
            if pleth {
                "stored at full rate (75 Hz)"
            } else {
                "not stored"
            },
            hour.len(),
            pleth_rows,
            file_size(&path) as f64 / 1e6,
            file_size(&path) as f64 / hour.len() as f64
        );
    }
}
