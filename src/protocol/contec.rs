//! Contec CMS50D+ / CMS50E / CMS50EW serial pulse oximeters (USB-serial).
//!
//! `contec-legacy`: the 5-byte live-data frame of firmware before v4.6, 60 frames/s at 19200 8O1
//! with XON/XOFF. Facts: ../shared/reference/devices.md §6.3(a) (reference implementation and
//! unit tests: atbrask/CMS50Dplus `cms50dplus.py`, `unittests.py`); the bit layout is BerryMed
//! BCI's (§5.1), under other names:
//!
//! | byte | bits |
//! |---|---|
//! | 1 | b7 = 1 (sync); b6 beep; b5 "dropping SpO2" (atbrask) / "probe unplugged" (BerryMed); b4 "finger out" (atbrask) / "no signal" (BerryMed); b0-3 signal strength |
//! | 2 | b7 = 0; b0-6 pleth |
//! | 3 | b7 = 0; b6 PR bit 7; b5 searching; b4 "probe error" (atbrask) / "no finger" (BerryMed); b0-3 bargraph |
//! | 4 | b7 = 0; PR bits 0-6 (255 = no value) |
//! | 5 | b7 = 0; SpO2 (127 = no value) |
//!
//! Where the names differ, the mapping takes the reading that never shows a number the device
//! disowns, and never hides a real one: byte 1 b4 -> `no_finger` and byte 3 b4 -> `sensor_fault`
//! (both void the numbers: in either source's reading there is no usable value then); byte 1 b5
//! raises no flag (read as "dropping SpO2", a desaturation alert, voiding would hide the very
//! number that matters; read as "probe unplugged", the device sends its no-value codes anyway).
//! Pleth 0 is no value, as in BCI.
//!
//! `contec-v7`: the 9-byte protocol of firmware v4.6 and later (CMS50D+, CMS50EW), Contec's
//! "Communication protocol of pulse oximeter V7.0", 115200 8N1. Facts: devices.md §6.3(b) (the
//! protocol document in vats28/Contec-CMS50EW; a real capture in MarkMLl's
//! `cms50dplus4v6/consoleapp.pas`). A packet is a type byte (b7 = 0), a high byte (b7 = 1)
//! whose bits 0-6 are bit 7 of each following data byte in turn, then the data bytes sent with
//! b7 forced to 1; so every packet starts at the only byte with b7 clear. The device sends live
//! data only after the host's start command (0xA1) and stops after about 30 s without the
//! keep-alive (0xAF, about every 5 s): [`V7_DIALOGUE`], which the daemon's source sends.
//!
//! Real-time packet 0x01 (9 bytes; doc bytes 2-8 after restoring bit 7): byte 2 b0-3 signal,
//! b4 searching too long -> `searching_too_long`, b5 low SpO2 (the device's own alarm: no flag),
//! b6 beep, b7 probe error, "finger out" -> `no_finger` (voids the numbers); byte 3 b0-6
//! pleth, b7 searching -> `searching`; byte 4 b0-3 bargraph, b4 PI invalid; byte 5 PR (0xFF no
//! value); byte 6 SpO2 (0x7F no value); bytes 7-8 PI x 100, LE (0xFFFF no value). A 0x01
//! packet of another length is a bad frame; other packet types (device id, storage, notices)
//! are framed and not decoded.

use super::berrymed;
use super::framing::{SYNC_BIT, SyncBitFramer};
use super::{Decoder, FeedReport};
use crate::model::{Flag, Flags, Invalid, Measurement, Metric};
use std::time::Duration;

/// Bytes per legacy frame.
pub const LEGACY_LEN: usize = 5;
/// Byte 1 b4: finger out (atbrask).
const FINGER_OUT: u8 = 0x10;
/// Byte 3 b5: searching.
const SEARCHING: u8 = 0x20;
/// Byte 3 b4: probe error (atbrask).
const PROBE_ERROR: u8 = 0x10;

/// The flags of a legacy frame's first and third bytes.
pub fn legacy_flags(b1: u8, b3: u8) -> Flags {
    let mut f = Flags::EMPTY;
    f.set_if(Flag::NoFinger, b1 & FINGER_OUT != 0);
    f.set_if(Flag::SensorFault, b3 & PROBE_ERROR != 0);
    f.set_if(Flag::Searching, b3 & SEARCHING != 0);
    f
}

/// Stream decoder for `contec-legacy`: a frame is a byte with b7 set and the four bytes with b7
/// clear after it ([`SyncBitFramer`]), laid out as a BerryMed BCI packet
/// ([`berrymed::vitals`]).
#[derive(Debug, Default)]
pub struct LegacyDecoder {
    framer: SyncBitFramer<LEGACY_LEN>,
}

impl Decoder for LegacyDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        self.framer.feed(bytes, |p| {
            berrymed::vitals(p, legacy_flags(p[0], p[2]), out);
        })
    }

    fn reset(&mut self) {
        self.framer.reset();
    }
}

/// One legacy frame for the simulator. `None` vitals are sent as the no-value codes; pleth is
/// clamped to 1..=127 (0 means no value). `flags` set the bits for `no_finger`, `sensor_fault`
/// and `searching`; the signal strength is 8 and the bargraph follows the pleth.
pub fn encode_legacy(
    spo2: Option<f64>,
    pulse_rate: Option<f64>,
    pleth: u8,
    flags: Flags,
) -> [u8; LEGACY_LEN] {
    let pleth = pleth.clamp(1, 0x7F);
    let mut b1 = SYNC_BIT | 8;
    if flags.contains(Flag::NoFinger) {
        b1 |= FINGER_OUT;
    }
    let mut b3 = 0;
    if flags.contains(Flag::SensorFault) {
        b3 |= PROBE_ERROR;
    }
    if flags.contains(Flag::Searching) {
        b3 |= SEARCHING;
    }
    berrymed::encode_vitals(b1, b3, spo2, pulse_rate, pleth)
}

/// Uplink packet type: real-time data.
const V7_REALTIME: u8 = 0x01;
/// Bytes of a real-time packet (type, high byte, seven data bytes).
pub const V7_REALTIME_LEN: usize = 9;
/// Downlink packet type: command.
const V7_COMMAND: u8 = 0x7D;
/// Command: start sending real-time data.
pub const V7_START: u8 = 0xA1;
/// Command: stop sending real-time data.
pub const V7_STOP: u8 = 0xA2;
/// Command: "inform device connected", the keep-alive.
pub const V7_KEEP_ALIVE: u8 = 0xAF;
/// The longest packet the framer holds (storage packets are the longest Contec sends).
const V7_MAX_PACKET: usize = 32;
/// Byte 2 b4: searching too long.
const V7_SEARCH_TOO_LONG: u8 = 0x10;
/// Byte 2 b7: probe error, "finger out".
const V7_PROBE_ERROR: u8 = 0x80;
/// Byte 3 b7: searching for a pulse.
const V7_SEARCHING: u8 = 0x80;
/// Byte 4 b4: PI invalid.
const V7_PI_INVALID: u8 = 0x10;
/// PI "no value".
const V7_PI_NONE: u16 = 0xFFFF;

/// What the host sends to keep a `contec-v7` device talking: `start` once after connecting,
/// `keep_alive` every `every` (the device stops after about 30 s without it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialogue {
    pub start: [u8; 9],
    pub keep_alive: [u8; 9],
    pub every: Duration,
}

/// The `contec-v7` dialogue: start real-time data (`7D 81 A1 80 80 80 80 80 80`, as MarkMLl
/// and celiponcio send it), keep-alive 0xAF every 5 s (V7.0: "about once per 5 s").
pub const V7_DIALOGUE: Dialogue = Dialogue {
    start: command(V7_START),
    keep_alive: command(V7_KEEP_ALIVE),
    every: Duration::from_secs(5),
};

/// A 9-byte downlink command packet: type 0x7D, the code, padding.
pub const fn command(code: u8) -> [u8; 9] {
    let mut data = [0u8; 7];
    data[0] = code;
    encode_v7(V7_COMMAND, data)
}

/// Encodes a packet of type `kind` with seven data bytes: the high byte carries their bit 7s.
pub const fn encode_v7(kind: u8, data: [u8; 7]) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = kind & 0x7F;
    let mut hi = 0x80u8;
    let mut i = 0;
    while i < 7 {
        hi |= (data[i] >> 7) << i;
        out[i + 2] = data[i] | 0x80;
        i += 1;
    }
    out[1] = hi;
    out
}

/// The data bytes of a framed packet (after type and high byte), bit 7 restored.
fn restore(packet: &[u8]) -> Vec<u8> {
    let hi = packet.get(1).copied().unwrap_or(0);
    packet
        .iter()
        .skip(2)
        .enumerate()
        .map(|(i, b)| (b & 0x7F) | (((hi >> i) & 1) << 7))
        .collect()
}

/// Appends pleth, pulse_rate, spo2 and perfusion_index of a real-time packet's data bytes.
fn v7_realtime(d: [u8; 7], out: &mut Vec<Measurement>) {
    let [b2, b3, b4, pr, spo2, pi_lo, pi_hi] = d;
    let mut flags = Flags::EMPTY;
    flags.set_if(Flag::NoFinger, b2 & V7_PROBE_ERROR != 0);
    flags.set_if(Flag::SearchingTooLong, b2 & V7_SEARCH_TOO_LONG != 0);
    flags.set_if(Flag::Searching, b3 & V7_SEARCHING != 0);
    out.push(Measurement::new(Metric::Pleth, f64::from(b3 & 0x7F), flags));
    out.push(if pr == 0xFF {
        Measurement::invalid(Metric::PulseRate, Invalid::NoValue, flags)
    } else {
        Measurement::new(Metric::PulseRate, f64::from(pr), flags)
    });
    out.push(if spo2 == 0x7F {
        Measurement::invalid(Metric::Spo2, Invalid::NoValue, flags)
    } else {
        Measurement::new(Metric::Spo2, f64::from(spo2), flags)
    });
    let pi = u16::from_le_bytes([pi_lo, pi_hi]);
    out.push(if pi == V7_PI_NONE || b4 & V7_PI_INVALID != 0 {
        Measurement::invalid(Metric::PerfusionIndex, Invalid::NoValue, flags)
    } else {
        Measurement::new(Metric::PerfusionIndex, f64::from(pi) / 100.0, flags)
    });
}

/// The length of packet types whose length is fixed (real-time data and commands).
const fn v7_fixed_len(kind: u8) -> Option<usize> {
    match kind {
        V7_REALTIME | V7_COMMAND => Some(V7_REALTIME_LEN),
        _ => None,
    }
}

/// Frames `contec-v7` packets: each starts at a byte with b7 clear. Used by the decoder (device
/// to host) and by the simulator (host to device).
#[derive(Debug, Default)]
pub struct V7Framer {
    /// The packet being assembled: empty, or a type byte and what followed it.
    partial: Vec<u8>,
}

impl V7Framer {
    /// Feeds `bytes`; calls `packet` with every packet whose end is known (real-time and
    /// command packets end at their ninth byte, any other at the next type byte).
    pub fn feed(&mut self, bytes: &[u8], report: &mut FeedReport, mut packet: impl FnMut(&[u8])) {
        for &b in bytes {
            if b & 0x80 == 0 {
                if let Some(&kind) = self.partial.first() {
                    // A packet ended by the next one: a cut fixed-length one, or another type.
                    if v7_fixed_len(kind).is_some() {
                        report.bad_frames += 1;
                    } else {
                        packet(&self.partial);
                    }
                }
                self.partial.clear();
                self.partial.push(b);
                continue;
            }
            if self.partial.is_empty() {
                report.skipped_bytes += 1;
                continue;
            }
            if self.partial.len() >= V7_MAX_PACKET {
                report.skipped_bytes += self.partial.len() as u32 + 1;
                self.partial.clear();
                continue;
            }
            self.partial.push(b);
            if self
                .partial
                .first()
                .and_then(|k| v7_fixed_len(*k))
                .is_some_and(|n| n == self.partial.len())
            {
                packet(&self.partial);
                // Bytes with b7 set after a whole fixed-length packet belong to no packet.
                self.partial.clear();
            }
        }
    }

    /// Forgets a partial packet.
    pub fn reset(&mut self) {
        self.partial.clear();
    }
}

/// Stream decoder for `contec-v7`.
#[derive(Debug, Default)]
pub struct V7Decoder {
    framer: V7Framer,
}

impl Decoder for V7Decoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        let mut report = FeedReport::default();
        let mut frames = 0;
        self.framer.feed(bytes, &mut report, |p| {
            frames += 1;
            if p.first() == Some(&V7_REALTIME)
                && let Ok(d) = <[u8; 7]>::try_from(restore(p).as_slice())
            {
                v7_realtime(d, out);
            }
        });
        report.frames += frames;
        report
    }

    fn reset(&mut self) {
        self.framer.reset();
    }
}

/// The commands in host-to-device bytes (for the simulator): the code of every command packet.
pub fn v7_commands(framer: &mut V7Framer, bytes: &[u8], out: &mut Vec<u8>) {
    let mut report = FeedReport::default();
    let mut take = |p: &[u8]| {
        if p.first() == Some(&V7_COMMAND)
            && let Some(code) = restore(p).first()
        {
            out.push(*code);
        }
    };
    framer.feed(bytes, &mut report, &mut take);
}

/// One real-time packet for the simulator. `None` vitals are sent as the no-value codes; pleth
/// is 0..=127; `flags` set `no_finger` (probe error; pleth forced to 0x40, as the device does),
/// `searching` and `searching_too_long`; signal strength 8, bargraph from the pleth.
pub fn encode_v7_realtime(
    spo2: Option<f64>,
    pulse_rate: Option<f64>,
    pi: Option<f64>,
    pleth: u8,
    flags: Flags,
) -> [u8; V7_REALTIME_LEN] {
    let pr = pulse_rate.map_or(0xFF, |v| v.round().clamp(0.0, 254.0) as u8);
    let spo2 = spo2.map_or(0x7F, |v| v.round().clamp(0.0, 100.0) as u8);
    let pi = pi.map_or(V7_PI_NONE, |v| {
        (v * 100.0).round().clamp(0.0, 2200.0) as u16
    });
    let finger_out = flags.contains(Flag::NoFinger);
    let mut b2 = 8;
    if finger_out {
        b2 |= V7_PROBE_ERROR;
    }
    if flags.contains(Flag::SearchingTooLong) {
        b2 |= V7_SEARCH_TOO_LONG;
    }
    let mut b3 = if finger_out { 0x40 } else { pleth & 0x7F };
    if flags.contains(Flag::Searching) {
        b3 |= V7_SEARCHING;
    }
    let mut b4 = (b3 >> 3) & 0x0F;
    if pi == V7_PI_NONE {
        b4 |= V7_PI_INVALID;
    }
    let [lo, hi] = pi.to_le_bytes();
    encode_v7(V7_REALTIME, [b2, b3, b4, pr, spo2, lo, hi])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;
    use crate::protocol::testutil::{
        XorShift, assert_every_split_matches_whole, feed_random_chunks, feed_whole,
    };

    fn values(ms: &[Measurement]) -> Vec<Value> {
        ms.iter().map(|m| m.value).collect()
    }

    #[test]
    fn legacy_frames_decode_as_atbrask_reads_them() {
        // atbrask/CMS50Dplus unittests.py vectors (bit by bit), and constructed whole frames
        // read with atbrask's LiveDataPoint rules (devices.md §6.3(a)).
        let no = Value::Invalid(Invalid::NoValue);
        let flagged = Value::Invalid(Invalid::DeviceFlagged);
        let table: [([u8; 5], [Value; 3], Flags, &str); 8] = [
            (
                [0x85, 0x32, 0x0A, 0x48, 0x61],
                [Value::Valid(50.0), Value::Valid(72.0), Value::Valid(97.0)],
                Flags::EMPTY,
                "constructed: signal 5, pleth 50, bar 10, PR 72, SpO2 97",
            ),
            (
                [0x80, 0x10, 0x40, 0x3D, 0x60],
                [Value::Valid(16.0), Value::Valid(189.0), Value::Valid(96.0)],
                Flags::EMPTY,
                "test_LiveData_pulseRate: PR bit 7 in byte 3 (189, not 61)",
            ),
            (
                [0x90, 0x10, 0x00, 0x48, 0x61],
                [flagged, flagged, flagged],
                Flags::EMPTY.with(Flag::NoFinger),
                "test_LiveData_fingerOut: byte 1 0x10",
            ),
            (
                [0x80, 0x10, 0x10, 0x48, 0x61],
                [flagged, flagged, flagged],
                Flags::EMPTY.with(Flag::SensorFault),
                "test_LiveData_probeError: byte 3 0x10",
            ),
            (
                [0x80, 0x10, 0x20, 0x7F, 0x7F],
                [Value::Valid(16.0), Value::Valid(127.0), no],
                Flags::EMPTY.with(Flag::Searching),
                "test_LiveData_searching: byte 3 0x20; PR 127 is a rate, SpO2 127 none",
            ),
            (
                [0xA0, 0x10, 0x00, 0x48, 0x55],
                [Value::Valid(16.0), Value::Valid(72.0), Value::Valid(85.0)],
                Flags::EMPTY,
                "test_LiveData_droppingSpO2: byte 1 0x20 hides no number",
            ),
            (
                [0xC0, 0x00, 0x40, 0x7F, 0x7F],
                [no, no, no],
                Flags::EMPTY,
                "no-value codes: pleth 0, PR 255, SpO2 127 (as BCI, devices.md §5.1)",
            ),
            (
                [0x80, 0x10, 0x00, 0x48, 0x65],
                [
                    Value::Valid(16.0),
                    Value::Valid(72.0),
                    Value::Invalid(Invalid::OutOfRange),
                ],
                Flags::EMPTY,
                "constructed: SpO2 101 is out of range",
            ),
        ];
        for (bytes, want, flags, what) in table {
            let (ms, r) = feed_whole::<LegacyDecoder>(&bytes);
            assert_eq!(
                r,
                FeedReport {
                    frames: 1,
                    ..FeedReport::default()
                },
                "{what}"
            );
            let metrics: Vec<Metric> = ms.iter().map(|m| m.metric).collect();
            assert_eq!(
                metrics,
                [Metric::Pleth, Metric::PulseRate, Metric::Spo2],
                "{what}"
            );
            assert_eq!(values(&ms), want, "{what}");
            assert!(ms.iter().all(|m| m.flags == flags), "{what}");
        }
    }

    #[test]
    fn cut_frames_and_leading_garbage_are_counted_not_decoded() {
        // A frame cut after 3 bytes by the next sync byte, then a whole frame, then junk.
        let mut bytes = vec![0x12, 0x34]; // joined mid-frame
        bytes.extend_from_slice(&[0x85, 0x32, 0x0A]);
        bytes.extend_from_slice(&[0x85, 0x32, 0x0A, 0x48, 0x61]);
        bytes.extend_from_slice(&[0xDE, 0x2D]); // a sync byte and one more, incomplete
        let (ms, r) = feed_whole::<LegacyDecoder>(&bytes);
        assert_eq!(
            r,
            FeedReport {
                frames: 1,
                skipped_bytes: 2,
                bad_frames: 1
            }
        );
        assert_eq!(ms.len(), 3);
        assert_every_split_matches_whole::<LegacyDecoder>(&bytes);
    }

    #[test]
    fn encoded_frames_round_trip() {
        for (spo2, pr, pleth, flags) in [
            (Some(97.0), Some(72.0), 50, Flags::EMPTY),
            (
                Some(88.0),
                Some(189.0),
                127,
                Flags::EMPTY.with(Flag::Searching),
            ),
            (None, None, 1, Flags::EMPTY),
            (
                Some(97.0),
                Some(72.0),
                50,
                Flags::EMPTY.with(Flag::NoFinger),
            ),
        ] {
            let bytes = encode_legacy(spo2, pr, pleth, flags);
            let (ms, r) = feed_whole::<LegacyDecoder>(&bytes);
            assert_eq!(r.frames, 1);
            assert_eq!(ms[0].flags, flags);
            let want = |m: Metric, v: Option<f64>| match v {
                None => Measurement::invalid(m, Invalid::NoValue, flags),
                Some(v) => Measurement::new(m, v, flags),
            };
            assert_eq!(
                ms,
                [
                    want(Metric::Pleth, Some(f64::from(pleth))),
                    want(Metric::PulseRate, pr),
                    want(Metric::Spo2, spo2),
                ]
            );
        }
    }

    #[test]
    fn random_bytes_never_panic_and_frames_among_garbage_are_all_recovered() {
        let mut rng = XorShift(0xC0_4E_C5);
        let noise: Vec<u8> = (0..100_000).map(|_| rng.byte()).collect();
        let _ = feed_random_chunks::<LegacyDecoder>(&noise, &mut rng, 64);
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..2_000 {
            // Garbage without sync bits between frames is skipped.
            let n = rng.below(4);
            stream.extend((0..n).map(|_| rng.byte() & 0x7F));
            let spo2 = 50 + rng.below(51) as u8;
            stream.extend_from_slice(&encode_legacy(
                Some(f64::from(spo2)),
                Some(70.0),
                40,
                Flags::EMPTY,
            ));
            expected.push(f64::from(spo2));
        }
        let (ms, r) = feed_random_chunks::<LegacyDecoder>(&stream, &mut rng, 50);
        let got: Vec<f64> = ms
            .iter()
            .filter(|m| m.metric == Metric::Spo2)
            .filter_map(|m| m.value.number())
            .collect();
        assert_eq!(got, expected);
        assert_eq!(r.bad_frames, 0);
    }

    #[test]
    fn v7_packets_decode_as_the_v7_document_and_markmll_read_them() {
        // V7.0 bit table (devices.md §6.3(b)); the first vector is MarkMLl's real capture,
        // the rest constructed with `encode_v7` from the same table.
        let no = Value::Invalid(Invalid::NoValue);
        let flagged = Value::Invalid(Invalid::DeviceFlagged);
        let table: [(Vec<u8>, [Value; 4], Flags, &str); 5] = [
            (
                vec![0x01, 0xE0, 0x85, 0xD5, 0x9A, 0xBD, 0xE3, 0xFF, 0xFF],
                [
                    Value::Valid(85.0),
                    Value::Valid(61.0),
                    Value::Valid(99.0),
                    no,
                ],
                Flags::EMPTY,
                "MarkMLl capture: signal 5, pleth 85, PI invalid, PR 61 (not 0xBD), SpO2 99",
            ),
            (
                encode_v7(0x01, [0x08, 0x30, 0x06, 0xC8, 0x60, 0xFA, 0x00]).to_vec(),
                [
                    Value::Valid(48.0),
                    Value::Valid(200.0),
                    Value::Valid(96.0),
                    Value::Valid(2.5),
                ],
                Flags::EMPTY,
                "PR 200 needs bit 7 from the high byte; PI 250 = 2.50 %",
            ),
            (
                encode_v7(0x01, [0x88, 0x40, 0x08, 0x48, 0x61, 0x2C, 0x01]).to_vec(),
                [flagged; 4],
                Flags::EMPTY.with(Flag::NoFinger),
                "probe error (finger out) voids every number",
            ),
            (
                encode_v7(0x01, [0x18, 0x80, 0x10, 0xFF, 0x7F, 0xFF, 0xFF]).to_vec(),
                [Value::Valid(0.0), no, no, no],
                Flags::EMPTY
                    .with(Flag::Searching)
                    .with(Flag::SearchingTooLong),
                "searching (byte 3 b7), searching too long (byte 2 b4), no-value codes",
            ),
            (
                encode_v7(0x01, [0x08, 0x30, 0x06, 0x48, 0x65, 0x74, 0x27]).to_vec(),
                [
                    Value::Valid(48.0),
                    Value::Valid(72.0),
                    Value::Invalid(Invalid::OutOfRange),
                    Value::Invalid(Invalid::OutOfRange),
                ],
                Flags::EMPTY,
                "SpO2 101 and PI 0x2774 = 101.00 % are out of range",
            ),
        ];
        for (bytes, want, flags, what) in table {
            let (ms, r) = feed_whole::<V7Decoder>(&bytes);
            assert_eq!(
                r,
                FeedReport {
                    frames: 1,
                    ..FeedReport::default()
                },
                "{what}"
            );
            let metrics: Vec<Metric> = ms.iter().map(|m| m.metric).collect();
            assert_eq!(
                metrics,
                [
                    Metric::Pleth,
                    Metric::PulseRate,
                    Metric::Spo2,
                    Metric::PerfusionIndex
                ],
                "{what}"
            );
            assert_eq!(values(&ms), want, "{what}");
            assert!(ms.iter().all(|m| m.flags == flags), "{what}");
        }
    }

    #[test]
    fn v7_commands_are_what_markmll_sends() {
        // Start frame on the wire (MarkMLl, celiponcio; devices.md §6.3(b)).
        assert_eq!(
            V7_DIALOGUE.start,
            [0x7D, 0x81, 0xA1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80]
        );
        assert_eq!(
            V7_DIALOGUE.keep_alive,
            [0x7D, 0x81, 0xAF, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80]
        );
        let mut framer = V7Framer::default();
        let mut codes = Vec::new();
        let mut bytes = command(V7_START).to_vec();
        bytes.extend_from_slice(&command(V7_KEEP_ALIVE));
        bytes.extend_from_slice(&command(V7_STOP));
        v7_commands(&mut framer, &bytes, &mut codes);
        assert_eq!(codes, [V7_START, V7_KEEP_ALIVE, V7_STOP]);
    }

    #[test]
    fn cut_v7_packets_other_types_and_garbage_are_counted_not_decoded() {
        let good = [0x01, 0xE0, 0x85, 0xD5, 0x9A, 0xBD, 0xE3, 0xFF, 0xFF];
        let mut bytes = vec![0xE3, 0xFF, 0xFF]; // joined mid-packet
        bytes.extend_from_slice(&good[..6]); // cut by the next packet
        bytes.extend_from_slice(&[0x0D, 0x80, 0x80]); // a disconnect notice (type 0x0D)
        bytes.extend_from_slice(&good);
        bytes.extend_from_slice(&[0xDE, 0xAD]); // b7 set after a whole packet: no packet
        bytes.extend_from_slice(&good);
        let (ms, r) = feed_whole::<V7Decoder>(&bytes);
        assert_eq!(
            r,
            FeedReport {
                frames: 3,
                skipped_bytes: 5,
                bad_frames: 1
            }
        );
        assert_eq!(ms.len(), 8);
        assert_every_split_matches_whole::<V7Decoder>(&bytes);
    }

    #[test]
    fn encoded_v7_packets_round_trip() {
        for (spo2, pr, pi, pleth, flags) in [
            (Some(97.0), Some(72.0), Some(3.5), 50, Flags::EMPTY),
            (
                Some(88.0),
                Some(189.0),
                None,
                127,
                Flags::EMPTY.with(Flag::Searching),
            ),
            (
                None,
                None,
                None,
                0,
                Flags::EMPTY.with(Flag::SearchingTooLong),
            ),
        ] {
            let bytes = encode_v7_realtime(spo2, pr, pi, pleth, flags);
            let (ms, r) = feed_whole::<V7Decoder>(&bytes);
            assert_eq!(r.frames, 1);
            let want = |m: Metric, v: Option<f64>| match v {
                None => Measurement::invalid(m, Invalid::NoValue, flags),
                Some(v) => Measurement::new(m, v, flags),
            };
            assert_eq!(
                ms,
                [
                    want(Metric::Pleth, Some(f64::from(pleth))),
                    want(Metric::PulseRate, pr),
                    want(Metric::Spo2, spo2),
                    want(Metric::PerfusionIndex, pi),
                ]
            );
        }
    }

    #[test]
    fn random_bytes_never_panic_in_the_v7_decoder() {
        let mut rng = XorShift(0x7D81_A180);
        let noise: Vec<u8> = (0..100_000).map(|_| rng.byte()).collect();
        let _ = feed_random_chunks::<V7Decoder>(&noise, &mut rng, 64);
    }
}
