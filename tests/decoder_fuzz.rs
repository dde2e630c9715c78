//! A deterministic, bounded fuzz run of every decoder and framer in `src/protocol`, through the
//! public API only (`PROTOCOLS`, `decoder_for`, `Decoder::feed`): random bytes and mutated
//! valid frames, fed in random chunks. A decoder must never panic and never return a valid
//! number outside the metric's plausible range (issue 11).
//!
//! The run is seeded, so a failure is reproducible; it prints the protocol and the bytes. A
//! longer run: `VITALSD_FUZZ_CASES=200000 VITALSD_FUZZ_SEED=7 cargo test --release --test tests
//! decoder_fuzz::`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vitalsd::model::{Metric, Value};
use vitalsd::protocol::{Decoder, PROTOCOLS, decoder_for};

/// The plausible range of each metric: a decoder must mark anything outside it invalid.
fn plausible(metric: Metric) -> (f64, f64) {
    match metric {
        Metric::Spo2 | Metric::PerfusionIndex | Metric::Battery => (0.0, 100.0),
        Metric::PulseRate | Metric::NibpPulse | Metric::HeartRate => (0.0, 350.0),
        Metric::Pleth => (0.0, 65_535.0),
        Metric::NibpSys | Metric::NibpDia | Metric::NibpMean | Metric::CuffPressure => (0.0, 300.0),
    }
}

/// Hand-made valid frames (from the device references), the mutation seeds. Protocols without
/// one here get seeds from random inputs that decoded.
fn seeds(protocol: &str) -> Vec<Vec<u8>> {
    let nonin_packet = || {
        let mut packet = Vec::new();
        for i in 0..25u8 {
            let status = if i == 0 { 0x81 } else { 0x80 };
            let data = match i {
                1 => 72, // HR LSB
                2 => 97, // SpO2
                _ => 0,
            };
            let frame = [0x01, status, 50, data];
            let sum = frame.iter().fold(0u8, |a, b| a.wrapping_add(*b));
            packet.extend_from_slice(&frame);
            packet.push(sum);
        }
        packet
    };
    match protocol {
        "masimo-ascii" => vec![
            b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n".to_vec(),
        ],
        "nonin-format2" => vec![nonin_packet()],
        "hrs" => vec![vec![0x00, 72], vec![0x01, 72, 0x00]],
        "battery" => vec![vec![85]],
        // SFLOAT 120/80/93 mmHg, flags 0 (mmHg, nothing else).
        "bls-measurement" | "bls-cuff-pressure" => vec![vec![0x00, 0x78, 0x00, 0x50, 0x00, 0x5d, 0x00]],
        // SpO2 97 %, PR 72 /min.
        "plx-continuous" | "plx-spot-check" => vec![vec![0x00, 0x61, 0x00, 0x48, 0x00]],
        _ => Vec::new(),
    }
}

fn cases() -> usize {
    std::env::var("VITALSD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

fn seed() -> u64 {
    std::env::var("VITALSD_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11)
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let len = rng.random_range(0..=max);
    // Half of the time bias towards printable ASCII, CR and LF (the line protocols).
    if rng.random_bool(0.5) {
        (0..len)
            .map(|_| match rng.random_range(0..10) {
                0 => b'\r',
                1 => b'\n',
                2 => b'=',
                3 => b'%',
                _ => rng.random_range(0x20..0x7f),
            })
            .collect()
    } else {
        (0..len).map(|_| rng.random()).collect()
    }
}

fn mutate(rng: &mut StdRng, input: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = v.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] = *[0x00, 0xff, 0x7f, 0x80, b'0', b'9', b'-', b'\r', b'\n']
                    .get(rng.random_range(0..9))
                    .unwrap_or(&0);
            }
            2 => {
                let i = rng.random_range(0..=len);
                v.insert(i, rng.random());
            }
            3 if len > 0 => {
                v.remove(rng.random_range(0..len));
            }
            4 if len > 0 => v.truncate(rng.random_range(0..len)),
            5 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = rng.random_range(a..=len);
                let slice = v[a..b].to_vec();
                let at = rng.random_range(0..=v.len());
                v.splice(at..at, slice);
            }
            6 if !pool.is_empty() => {
                let other = &pool[rng.random_range(0..pool.len())];
                v.extend_from_slice(other);
            }
            _ => {
                let i = rng.random_range(0..=len);
                let junk = random_bytes(rng, 8);
                v.splice(i..i, junk);
            }
        }
    }
    v
}

/// Feeds `input` in random chunks; panics (with the bytes) on a panic or an implausible value.
/// Returns the number of frames decoded.
fn check(protocol: &str, decoder: &mut Box<dyn Decoder>, input: &[u8], rng: &mut StdRng) -> u32 {
    let mut frames = 0;
    let mut at = 0;
    loop {
        let n = rng.random_range(1..=(input.len() - at).max(1));
        let end = (at + n).min(input.len());
        let chunk = &input[at..end];
        let mut out = Vec::new();
        let fed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decoder.feed(chunk, &mut out)
        }));
        let report = match fed {
            Ok(r) => r,
            Err(panic) => {
                eprintln!(
                    "decoder {protocol} panicked on chunk {} of input {}",
                    hex(chunk),
                    hex(input)
                );
                std::panic::resume_unwind(panic);
            }
        };
        frames += report.frames;
        for m in &out {
            if let Value::Valid(v) = m.value {
                let (lo, hi) = plausible(m.metric);
                assert!(
                    v.is_finite() && (lo..=hi).contains(&v),
                    "decoder {protocol} returned {:?} = {v} (plausible {lo}..={hi}) from input {}",
                    m.metric,
                    hex(input)
                );
            }
        }
        at = end;
        if at >= input.len() {
            break;
        }
    }
    frames
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn every_decoder_survives_random_and_mutated_frames_without_panic_or_implausible_values() {
    let cases = cases();
    for (pi, protocol) in PROTOCOLS.iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(seed().wrapping_add(pi as u64));
        let mut pool = seeds(protocol);
        // The hand-made seeds are valid: each decodes to a frame on a fresh decoder.
        for s in &pool {
            let mut fresh = decoder_for(protocol).expect("a listed protocol has a decoder");
            let mut out = Vec::new();
            let report = fresh.feed(s, &mut out);
            assert!(
                report.frames > 0,
                "seed {} of {protocol} does not decode",
                hex(s)
            );
        }
        // One long-lived decoder (state carried across inputs, as on a link) and fresh ones.
        let mut long = decoder_for(protocol).expect("a listed protocol has a decoder");
        for case in 0..cases {
            let input = if pool.is_empty() || rng.random_bool(0.3) {
                random_bytes(&mut rng, 300)
            } else {
                let base = pool[rng.random_range(0..pool.len())].clone();
                mutate(&mut rng, &base, &pool)
            };
            check(protocol, &mut long, &input, &mut rng);
            if case % 4 == 0 {
                let mut fresh = decoder_for(protocol).expect("a listed protocol has a decoder");
                let fresh_frames = check(protocol, &mut fresh, &input, &mut rng);
                // Inputs that decode become seeds (bounded), so mutation explores near them.
                if fresh_frames > 0 && pool.len() < 64 {
                    pool.push(input);
                }
            } else if case % 97 == 0 {
                long.reset();
            }
        }
    }
}
