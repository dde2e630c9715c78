//! Decode throughput and per-chunk latency of the serial decoders (`cargo bench --bench decode`).
//! Prints p50/p99/max nanoseconds per chunk and the overall bytes/s for each protocol; a
//! benchmark, never a test, so nothing here asserts on time.

use hdrhistogram::Histogram;
use std::time::Instant;
use vitalsd::model::DeviceTime;
use vitalsd::protocol::decoder_for;
use vitalsd::protocol::masimo::MasimoLine;
use vitalsd::protocol::nonin::NoninPacket;
use vitalsd::protocol::suntech::{BpData, Response};

/// Feeds `stream` in `chunk`-byte pieces, many rounds, and prints the latency histogram.
fn run(name: &str, stream: &[u8], chunk: usize) {
    let Some(mut decoder) = decoder_for(name) else {
        eprintln!("unknown protocol {name}");
        return;
    };
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut out = Vec::with_capacity(4096);
    let rounds = 200;
    let start = Instant::now();
    for _ in 0..rounds {
        for piece in stream.chunks(chunk) {
            let t = Instant::now();
            decoder.feed(piece, &mut out);
            hist.saturating_record(t.elapsed().as_nanos() as u64);
            out.clear();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = (stream.len() * rounds) as f64;
    println!(
        "{name:14} chunk {chunk:4} B: p50 {:6} ns  p99 {:6} ns  max {:8} ns  {:8.1} MB/s",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max(),
        bytes / secs / 1e6
    );
}

fn main() {
    let time = DeviceTime {
        year: 2026,
        month: 1,
        day: 2,
        hour: 3,
        minute: 4,
        second: 5,
    };
    let masimo: Vec<u8> = (0..1000u32)
        .flat_map(|i| {
            MasimoLine {
                device_time: time,
                serial: i,
                spo2: Some(90 + (i % 10) as u8),
                bpm: Some(60 + (i % 40) as u16),
                pi: Some(3.6),
                exc: 0x800,
            }
            .encode()
            .into_bytes()
        })
        .collect();
    let nonin: Vec<u8> = (0..1000u16)
        .flat_map(|i| {
            NoninPacket {
                pleth: [i as u8; 25],
                hr: Some(60 + i % 40),
                spo2: Some(97),
                status: 0,
                low_battery: false,
            }
            .encode()
        })
        .collect();
    let bp = BpData {
        sys: 120,
        dia: 80,
        beats: 30,
        status: 1,
        test_codes: [0; 8],
        hr: 70,
        map: 93,
        error_code: 0,
    };
    let suntech: Vec<u8> = (0..1000u16)
        .flat_map(|i| {
            let mut f = Response::CuffPressure(i % 250).encode();
            f.extend_from_slice(&Response::BpData(bp).encode());
            f
        })
        .collect();
    for chunk in [16, 256, 4096] {
        run("masimo-ascii", &masimo, chunk);
        run("nonin-format2", &nonin, chunk);
        run("suntech", &suntech, chunk);
    }
}
