//! Observation -> alarm decision latency: the time of one `BedAlarms::observe` call, including
//! event emission, with a mix where about 5% of observations cross a limit (some into the
//! severe band), at 2 beds and at 500 beds. Prints p50/p99/p99.9/max.
//!
//! `cargo bench --bench alarm_latency`

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::{Duration, Instant};
use vitalsd::alarm::{AlarmIds, BedAlarms, BedSpec, DeviceSpec, Now, parse_limits};
use vitalsd::clock::Mono;
use vitalsd::config::DeviceKind;
use vitalsd::model::{BedIdx, DeviceIdx, Flag, Flags, Measurement, Metric, Observation};

const PRESET: &str = include_str!("../config/presets/ketamine-session.toml");

fn beds(n: u16) -> Vec<BedAlarms> {
    let ids = AlarmIds::new(1);
    let limits = parse_limits(PRESET).expect("preset parses");
    (0..n)
        .map(|b| {
            let spec = BedSpec {
                devices: vec![
                    DeviceSpec {
                        idx: DeviceIdx(b * 2),
                        kind: DeviceKind::Oximeter,
                        expected_period: Duration::from_secs(1),
                        metrics: vec![Metric::Spo2, Metric::PulseRate, Metric::PerfusionIndex],
                    },
                    DeviceSpec {
                        idx: DeviceIdx(b * 2 + 1),
                        kind: DeviceKind::Bp,
                        expected_period: Duration::from_secs(300),
                        metrics: vec![Metric::NibpSys, Metric::NibpDia, Metric::NibpMean],
                    },
                ],
                bp_interval: Duration::from_secs(300),
            };
            BedAlarms::new(BedIdx(b), spec, limits.clone(), &ids).expect("limits valid")
        })
        .collect()
}

fn run(n_beds: u16, n_obs: usize) {
    let mut beds = beds(n_beds);
    let mut rng = SmallRng::seed_from_u64(7);
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut out = Vec::with_capacity(64);
    let mut events = 0usize;
    let start_wall = 1_700_000_000_000i64;
    for i in 0..n_obs {
        // Each bed gets readings at ~1 Hz of simulated time.
        let t_ns = (i as u64) * 1_000_000_000 / u64::from(n_beds);
        let now = Now {
            mono: Mono(t_ns),
            wall_ms: start_wall + (t_ns / 1_000_000) as i64,
        };
        let b = i % beds.len();
        let roll: f64 = rng.random();
        let (metric, value, dev) = match i % 8 {
            0..=2 => {
                let v = if roll < 0.04 {
                    87.0
                } else if roll < 0.05 {
                    82.0
                } else {
                    97.0
                };
                (Metric::Spo2, v, b * 2)
            }
            3..=5 => {
                let v = if roll < 0.05 { 130.0 } else { 72.0 };
                (Metric::PulseRate, v, b * 2)
            }
            6 => (Metric::PerfusionIndex, 3.0, b * 2),
            _ => {
                let v = if roll < 0.05 { 185.0 } else { 125.0 };
                (Metric::NibpSys, v, b * 2 + 1)
            }
        };
        let mut flags = Flags::EMPTY;
        flags.set_if(Flag::LowPerfusion, roll > 0.99);
        let obs = Observation {
            bed: BedIdx(b as u16),
            device: DeviceIdx(dev as u16),
            m: Measurement::new(metric, value, flags),
            received_ms: now.wall_ms,
            mono: now.mono,
            bed_seq: i as u64,
            simulated: true,
        };
        let bed = &mut beds[b];
        let t0 = Instant::now();
        bed.observe(black_box(&obs), now, &mut out);
        let dt = t0.elapsed();
        events += out.len();
        out.clear();
        hist.record(dt.as_nanos() as u64).expect("record");
        if i % (usize::from(n_beds) * 10) == 0 {
            for bed in &mut beds {
                bed.tick(now, &mut out);
            }
            out.clear();
        }
    }
    println!(
        "{n_beds:>4} beds, {n_obs} observations, {events} events: p50 {} ns ({:.2} us), p99 {} ns ({:.2} us), p99.9 {} ns ({:.2} us), max {} ns ({:.2} us)",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.value_at_quantile(0.999),
        hist.value_at_quantile(0.999) as f64 / 1000.0,
        hist.max(),
        hist.max() as f64 / 1000.0,
    );
}

fn main() {
    // Warm up caches and the allocator of the events Vec.
    run(2, 20_000);
    println!("--- measured ---");
    run(2, 1_000_000);
    run(500, 1_000_000);
}
