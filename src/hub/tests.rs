//! The hub's ordering under concurrent ingest across beds, and the snapshot/queue hand-off.

use super::*;
use crate::alarm::EventKind;
use crate::model::Flags;
use queue::Next;
use serde_json::Value;

const BEDS: usize = 4;

fn hub() -> Hub {
    hub_with(None)
}

fn hub_with(sink: Option<Arc<dispatch::DispatchQueue>>) -> Hub {
    hub_of(sink, 0..BEDS)
}

/// A hub with beds `R<b>` (device `ox<b>`) in the order given.
fn hub_of(sink: Option<Arc<dispatch::DispatchQueue>>, beds: impl Iterator<Item = usize>) -> Hub {
    let mut text = String::from(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"/nonexistent/data\"\n[[rooms]]\nid = \"room1\"\nname = \"Room 1\"\n",
    );
    for b in beds {
        text.push_str(&format!(
            "[[rooms.recliners]]\nid = \"R{b}\"\n[[rooms.recliners.devices]]\n\
             id = \"ox{b}\"\nprofile = \"masimo-rad8\"\ntcp = \"127.0.0.1:{}\"\n",
            9 + b
        ));
    }
    let cfg = crate::config::load_config_str(&text, std::path::Path::new("/nonexistent/t.toml"))
        .expect("test config");
    Hub::new(Arc::new(cfg), sink).expect("hub")
}

fn batch(spo2: f64) -> [Measurement; 3] {
    [
        Measurement::new(Metric::Spo2, spo2, Flags::EMPTY),
        Measurement::new(Metric::PulseRate, 72.0, Flags::EMPTY),
        Measurement::new(Metric::PerfusionIndex, 3.5, Flags::EMPTY),
    ]
}

fn json(b: &Bytes) -> Value {
    serde_json::from_slice(b).expect("valid JSON")
}

/// The readings a `readings` message carries (none for any other message).
fn items(v: &Value) -> Vec<Value> {
    match v["readings"].as_array() {
        Some(list) if v["type"] == "readings" => list.clone(),
        _ => Vec::new(),
    }
}

/// Beds ingested from several threads at once: a client sees strictly increasing `seq`
/// (readings only here, so one lane), every bed's readings in its own order, one message per
/// device read, and nothing lost that was not counted as coalesced.
#[test]
fn concurrent_beds_reach_a_client_in_sequence_and_per_bed_order() {
    let hub = Arc::new(hub());
    let sub = hub.subscribe(None);
    const N: usize = 3000;
    let writers: Vec<_> = (0..BEDS)
        .map(|b| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for _ in 0..N {
                    hub.ingest(DeviceIdx(b as u16), Stamp::now(), &batch(97.0));
                }
            })
        })
        .collect();
    let mut got = Vec::new();
    let mut done = false;
    while !done {
        done = writers.iter().all(|w| w.is_finished());
        while let Next::Send(m) = sub.queue.pop() {
            got.push(json(&m));
        }
        std::thread::yield_now();
    }
    for w in writers {
        w.join().unwrap();
    }
    while let Next::Send(m) = sub.queue.pop() {
        got.push(json(&m));
    }
    let seqs: Vec<u64> = got.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq strictly increasing"
    );
    for b in 0..BEDS {
        let bed = format!("room1/R{b}");
        let bed_seqs: Vec<u64> = got
            .iter()
            .filter(|v| v["bed"] == bed.as_str())
            .flat_map(items)
            .map(|v| v["bed_seq"].as_u64().unwrap())
            .collect();
        assert!(
            bed_seqs.windows(2).all(|w| w[0] < w[1]),
            "bed {bed} in order"
        );
        assert_eq!(
            bed_seqs.last().copied(),
            Some((N * 3) as u64),
            "bed {bed}'s latest"
        );
    }
    assert!(
        got.iter().all(|v| items(v).len() == 3),
        "one message per read"
    );
    let readings: usize = got.iter().map(|v| items(v).len()).sum();
    assert_eq!(
        readings as u64 + sub.queue.coalesced(),
        (BEDS * N * 3) as u64,
        "every reading delivered or counted as coalesced"
    );
    assert_eq!(hub.last_seq(), (BEDS * N) as u64);
}

/// A client that subscribes while beds are being ingested gets a snapshot and then exactly
/// the messages after it: the first queued message is the snapshot's `seq` + 1.
#[test]
fn a_subscription_during_ingest_has_no_gap_after_its_snapshot() {
    let hub = Arc::new(hub());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..BEDS)
        .map(|b| {
            let (hub, stop) = (hub.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    hub.ingest(DeviceIdx(b as u16), Stamp::now(), &batch(97.0));
                }
            })
        })
        .collect();
    for _ in 0..20 {
        let sub = hub.subscribe(None);
        let snap = json(&sub.preamble[0]);
        assert_eq!(snap["type"], "snapshot");
        let first = loop {
            if let Next::Send(m) = sub.queue.pop() {
                break json(&m);
            }
            std::thread::yield_now();
        };
        assert_eq!(
            first["seq"].as_u64().unwrap(),
            snap["seq"].as_u64().unwrap() + 1
        );
        hub.unsubscribe(sub.id);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
}

/// An alarm goes out ahead of the readings message that raised it, numbered before it; the
/// readings and alarm JSON carry the spliced sequence numbers, and the store and notifier get
/// the very message clients got.
#[test]
fn an_alarm_is_numbered_and_sent_before_the_reading_that_raised_it() {
    let rx = Arc::new(dispatch::DispatchQueue::new(
        dispatch::TRANSITION_CAP,
        Arc::new(crate::overload::Overload::new(0)),
    ));
    let hub = hub_with(Some(rx.clone()));
    let sub = hub.subscribe(None);
    // Batches before it, with nothing to say, leave nothing behind.
    for _ in 0..3 {
        hub.ingest(DeviceIdx(1), Stamp::now(), &batch(97.0));
    }
    // SpO2 80 %: in the severe band of the default preset, raised at once.
    hub.ingest(DeviceIdx(1), Stamp::now(), &batch(80.0));
    let mut got = Vec::new();
    while let Next::Send(m) = sub.queue.pop() {
        got.push(json(&m));
    }
    let alarm = got
        .iter()
        .position(|v| v["type"] == "alarm" && v["event"] == "raised")
        .expect("raised");
    let reading = got
        .iter()
        .position(|v| {
            items(v)
                .iter()
                .any(|r| r["metric"] == "spo2" && r["value"] == 80.0)
        })
        .expect("the low reading");
    assert!(alarm < reading);
    assert_eq!(got[alarm]["alarm"]["condition"], "spo2_low");
    assert_eq!(got[alarm]["bed"], "room1/R1");
    assert!(got[alarm]["seq"].as_u64() < got[reading]["seq"].as_u64());
    assert_eq!(got[alarm]["v"], VERSION);
    let mut to_store = Vec::new();
    while let Some(d) = rx.try_pop() {
        if let Dispatch::Event(d) = d {
            to_store.push(d);
        }
    }
    let raised = to_store
        .iter()
        .find(|d| matches!(d.event.kind, EventKind::Raised))
        .expect("the raise goes to the store");
    assert_eq!(json(&raised.json), got[alarm]);
    assert_eq!(Some(raised.seq), got[alarm]["seq"].as_u64());
}

/// One device read is one `readings` message, in the device's order; a slow client's backlog
/// keeps the latest message per device and set of metrics, so a read of other metrics (a
/// lone pulse rate here, a NIBP result on a cuff) is not superseded by the device's next
/// full reads.
#[test]
fn a_slow_client_keeps_the_latest_read_per_device_and_set_of_metrics() {
    let hub = hub();
    let sub = hub.subscribe(None);
    let lone = [Measurement::new(Metric::PulseRate, 55.0, Flags::EMPTY)];
    hub.ingest(DeviceIdx(2), Stamp::now(), &lone);
    for i in 0..=queue::READING_CAP {
        hub.ingest(DeviceIdx(2), Stamp::now(), &batch(90.0 + (i % 8) as f64));
    }
    let mut got = Vec::new();
    while let Next::Send(m) = sub.queue.pop() {
        got.push(json(&m));
    }
    assert!(sub.queue.coalesced() > 0, "the backlog was coalesced");
    let metrics = |v: &Value| -> Vec<String> {
        items(v)
            .iter()
            .map(|r| r["metric"].as_str().unwrap().to_owned())
            .collect()
    };
    let lone_kept: Vec<&Value> = got
        .iter()
        .filter(|v| metrics(v) == ["pulse_rate"])
        .collect();
    assert_eq!(
        lone_kept.len(),
        1,
        "the lone pulse rate survives coalescing"
    );
    assert_eq!(items(lone_kept[0])[0]["value"], 55.0);
    let last = got.last().unwrap();
    assert_eq!(last["type"], "readings");
    assert_eq!(last["bed"], "room1/R2");
    assert_eq!(last["device"], "ox2");
    assert_eq!(metrics(last), ["spo2", "pulse_rate", "perfusion_index"]);
    let bed_seqs: Vec<u64> = items(last)
        .iter()
        .map(|r| r["bed_seq"].as_u64().unwrap())
        .collect();
    let n = 1 + 3 * (queue::READING_CAP as u64 + 1);
    assert_eq!(
        bed_seqs,
        [n - 2, n - 1, n],
        "the newest read, in the device's order"
    );
}

/// The replay ring for resuming clients is bounded in bytes as well as messages: at a high
/// rate each `readings` message carries many readings, and the ring keeps the newest.
#[test]
fn the_replay_ring_keeps_the_newest_messages_within_its_byte_bound() {
    let hub = hub();
    let read: Vec<Measurement> = (0..10).flat_map(|_| batch(95.0)).collect();
    for _ in 0..2_000 {
        hub.ingest(DeviceIdx(0), Stamp::now(), &read);
    }
    let last = hub.last_seq();
    let sub = hub.subscribe(Some(0));
    let held = &sub.preamble[1..];
    let bytes: usize = held.iter().map(Bytes::len).sum();
    assert!(bytes <= REPLAY_BYTES, "{bytes} bytes held");
    assert!(
        held.len() < 2_000 && held.len() > 100,
        "{} held",
        held.len()
    );
    let seqs: Vec<u64> = held
        .iter()
        .map(|m| json(m)["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.last(), Some(&last), "the newest is held");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no gap");
}

/// A saved state names only the devices its alarms are about (not the whole topology), and an
/// alarm is restored onto its device by id, wherever the device is in an edited config.
#[test]
fn a_saved_state_names_its_alarms_devices_and_restores_them_by_id_in_a_reordered_config() {
    let hub = hub();
    hub.device_flooding(DeviceIdx(2), true);
    let saved = hub.saved_state(BedIdx(2)).expect("a state");
    let v: Value = serde_json::from_str(&saved.json).expect("JSON");
    assert_eq!(v["devices"], serde_json::json!(["ox2"]), "{v}");
    assert_eq!(v["alarms"][0]["device"], 0, "{v}");
    // A quiet bed names no device.
    let quiet: Value =
        serde_json::from_str(&hub.saved_state(BedIdx(0)).expect("a state").json).expect("JSON");
    assert_eq!(quiet["devices"], serde_json::json!([]), "{quiet}");

    // The beds in reverse order: ox2 is now device 1.
    let edited = hub_of(None, (0..BEDS).rev());
    let sum = edited.restore(std::slice::from_ref(&saved), &[]);
    assert_eq!((sum.beds, sum.alarms), (1, 1), "{:?}", sum.skipped);
    let ox2 = edited
        .cfg
        .devices
        .iter()
        .position(|d| d.id == "ox2")
        .expect("ox2");
    assert_eq!(ox2, 1);
    let bed = edited.bed_by_id("room1/R2").expect("bed R2");
    let snap = lock(&edited.beds[usize::from(bed.0)])
        .alarms
        .snapshot(Stamp::now().as_now());
    assert_eq!(snap.alarms.len(), 1);
    assert_eq!(snap.alarms[0].device, Some(ox2 as u16));

    // A state saved before, with every device of the topology in order, reads the same way.
    let mut old: Value = v.clone();
    old["devices"] = serde_json::json!(["ox0", "ox1", "ox2", "ox3"]);
    old["alarms"][0]["device"] = serde_json::json!(2);
    let old = StoredState {
        json: old.to_string(),
        ..saved
    };
    let again = hub_of(None, (0..BEDS).rev());
    let sum = again.restore(&[old], &[]);
    assert_eq!((sum.beds, sum.alarms), (1, 1), "{:?}", sum.skipped);
    let snap = lock(&again.beds[usize::from(bed.0)])
        .alarms
        .snapshot(Stamp::now().as_now());
    assert_eq!(snap.alarms[0].device, Some(ox2 as u16));
}
