//! `BedAlarms::observe` allocates nothing for a reading, in range or crossing a limit (events go
//! into the caller's pre-sized Vec). A counting global allocator counts per thread, so the test
//! harness's own threads do not disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;
use vitalsd::alarm::{AlarmIds, BedAlarms, BedSpec, DeviceSpec, Now, parse_limits};
use vitalsd::clock::Mono;
use vitalsd::config::DeviceKind;
use vitalsd::model::{BedIdx, DeviceIdx, Flags, Measurement, Metric, Observation};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

#[test]
fn observe_allocates_nothing_for_in_range_or_alarming_readings() {
    let spec = BedSpec {
        devices: vec![DeviceSpec {
            idx: DeviceIdx(0),
            kind: DeviceKind::Oximeter,
            expected_period: Duration::from_secs(1),
            metrics: vec![Metric::Spo2, Metric::PulseRate],
        }],
        bp_interval: Duration::from_secs(600),
    };
    let limits = parse_limits(include_str!("../config/presets/ketamine-session.toml")).unwrap();
    let mut bed = BedAlarms::new(BedIdx(0), spec, limits, &AlarmIds::new(1)).unwrap();
    let mut out = Vec::with_capacity(64);
    let mut raised = 0;
    let before = allocs();
    for s in 0..40u64 {
        let now = Now {
            mono: Mono(s * 1_000_000_000),
            wall_ms: 1_700_000_000_000 + (s as i64) * 1000,
        };
        // In range for 20 s, then a desaturation that crosses into the severe band.
        let spo2 = if s < 20 { 97.0 } else { 80.0 };
        let obs = Observation {
            bed: BedIdx(0),
            device: DeviceIdx(0),
            m: Measurement::new(Metric::Spo2, spo2, Flags::EMPTY),
            received_ms: now.wall_ms,
            mono: now.mono,
            bed_seq: s,
            simulated: true,
        };
        bed.observe(&obs, now, &mut out);
        raised += out.len();
        out.clear();
    }
    let after = allocs();
    assert!(raised > 0, "the desaturation raised an alarm");
    assert_eq!(after - before, 0, "observe allocated");
    // The counter does count: one allocation here.
    let probe: Vec<u8> = Vec::with_capacity(16);
    assert_eq!(allocs() - after, 1, "{}", probe.capacity());
}

/// The hub's ingest of in-range readings with a client subscribed: serialized into reused
/// buffers and numbered into the bed's arena, a chunk shared by ~20 messages, so a batch of
/// three readings costs a fraction of an allocation (a chunk and its shared header now and
/// then), none per reading and none per message (issue 10: two per message before).
#[test]
fn hub_ingest_allocates_per_batch_not_per_reading() {
    use std::sync::Arc;
    use vitalsd::hub::{Hub, Stamp, queue::Next};
    let text = "listen = \"127.0.0.1:0\"\ndata_dir = \"/nonexistent/data\"\n\
        [[rooms]]\nid = \"room1\"\nname = \"Room 1\"\n\
        [[rooms.recliners]]\nid = \"A\"\n[[rooms.recliners.devices]]\n\
        id = \"ox\"\nprofile = \"masimo-rad8\"\ntcp = \"127.0.0.1:9\"\n";
    let cfg = vitalsd::config::load_config_str(text, std::path::Path::new("/nonexistent/t.toml"))
        .unwrap();
    let hub = Hub::new(Arc::new(cfg), None).unwrap();
    let sub = hub.subscribe(None);
    let batch = [
        Measurement::new(Metric::Spo2, 97.0, Flags::EMPTY),
        Measurement::new(Metric::PulseRate, 72.0, Flags::EMPTY),
        Measurement::new(Metric::PerfusionIndex, 3.5, Flags::EMPTY),
    ];
    let drain = || while let Next::Send(_) = sub.queue.pop() {};
    // Warm up: buffers, the replay ring and the client's queue reach their working size.
    for _ in 0..10_000 {
        hub.ingest(DeviceIdx(0), Stamp::now(), &batch);
        drain();
    }
    const N: u64 = 1000;
    let before = allocs();
    for _ in 0..N {
        hub.ingest(DeviceIdx(0), Stamp::now(), &batch);
        drain();
    }
    let per_batch = (allocs() - before) as f64 / N as f64;
    assert!(
        per_batch <= 0.5,
        "{per_batch} allocations per batch of 3 readings"
    );
}
