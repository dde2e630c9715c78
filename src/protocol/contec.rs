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

use super::{Decoder, FeedReport};
use crate::model::{Flag, Flags, Invalid, Measurement, Metric};

/// Bytes per legacy frame.
pub const LEGACY_LEN: usize = 5;
/// b7: set in the first byte of a legacy frame only.
const SYNC: u8 = 0x80;
/// Byte 1 b4: finger out (atbrask).
const FINGER_OUT: u8 = 0x10;
/// Byte 3 b6: bit 7 of the pulse rate.
const PR_BIT7: u8 = 0x40;
/// Byte 3 b5: searching.
const SEARCHING: u8 = 0x20;
/// Byte 3 b4: probe error (atbrask).
const PROBE_ERROR: u8 = 0x10;
/// Pulse rate "no value".
const PR_NONE: u16 = 0xFF;
/// SpO2 "no value".
const SPO2_NONE: u8 = 0x7F;

/// The flags of a legacy frame's first and third bytes.
pub fn legacy_flags(b1: u8, b3: u8) -> Flags {
    let mut f = Flags::EMPTY;
    f.set_if(Flag::NoFinger, b1 & FINGER_OUT != 0);
    f.set_if(Flag::SensorFault, b3 & PROBE_ERROR != 0);
    f.set_if(Flag::Searching, b3 & SEARCHING != 0);
    f
}

/// Appends pleth, pulse_rate and spo2 of one legacy frame.
fn legacy_frame(p: [u8; LEGACY_LEN], out: &mut Vec<Measurement>) {
    let [b1, pleth, b3, pr_low, spo2] = p;
    let flags = legacy_flags(b1, b3);
    let pleth = pleth & 0x7F;
    out.push(if pleth == 0 {
        Measurement::invalid(Metric::Pleth, Invalid::NoValue, flags)
    } else {
        Measurement::new(Metric::Pleth, f64::from(pleth), flags)
    });
    let pr = u16::from(pr_low & 0x7F) | (u16::from(b3 & PR_BIT7) << 1);
    out.push(if pr == PR_NONE {
        Measurement::invalid(Metric::PulseRate, Invalid::NoValue, flags)
    } else {
        Measurement::new(Metric::PulseRate, f64::from(pr), flags)
    });
    let spo2 = spo2 & 0x7F;
    out.push(if spo2 == SPO2_NONE {
        Measurement::invalid(Metric::Spo2, Invalid::NoValue, flags)
    } else {
        Measurement::new(Metric::Spo2, f64::from(spo2), flags)
    });
}

/// Stream decoder for `contec-legacy`: a frame is a byte with b7 set and the four bytes with b7
/// clear after it; a byte with b7 set inside a frame starts a new one, and the cut frame is a
/// bad frame; bytes before the first sync byte are skipped.
#[derive(Debug, Default)]
pub struct LegacyDecoder {
    /// The frame being assembled: empty, or a sync byte and up to three more.
    partial: Vec<u8>,
}

impl Decoder for LegacyDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        let mut report = FeedReport::default();
        for &b in bytes {
            if b & SYNC != 0 {
                if !self.partial.is_empty() {
                    report.bad_frames += 1;
                }
                self.partial.clear();
                self.partial.push(b);
                continue;
            }
            if self.partial.is_empty() {
                report.skipped_bytes += 1;
                continue;
            }
            self.partial.push(b);
            if let Ok(p) = <[u8; LEGACY_LEN]>::try_from(self.partial.as_slice()) {
                self.partial.clear();
                report.frames += 1;
                legacy_frame(p, out);
            }
        }
        report
    }

    fn reset(&mut self) {
        self.partial.clear();
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
    let pr = pulse_rate.map_or(PR_NONE, |v| v.round().clamp(0.0, 254.0) as u16);
    let spo2 = spo2.map_or(SPO2_NONE, |v| v.round().clamp(0.0, 100.0) as u8);
    let pleth = pleth.clamp(1, 0x7F);
    let mut b1 = SYNC | 8;
    if flags.contains(Flag::NoFinger) {
        b1 |= FINGER_OUT;
    }
    let mut b3 = (pleth >> 3) & 0x0F;
    if flags.contains(Flag::SensorFault) {
        b3 |= PROBE_ERROR;
    }
    if flags.contains(Flag::Searching) {
        b3 |= SEARCHING;
    }
    b3 |= ((pr >> 1) as u8) & PR_BIT7;
    [b1, pleth, b3, (pr & 0x7F) as u8, spo2]
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
}
