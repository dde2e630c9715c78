//! Nonin Oximetry Service 46A970E0-0D5F-11E2-8B5E-0002A5D5C51B (3230, 3150 BLE, WristOx2),
//! Continuous Oximetry characteristic 0AAD7EA0-0D60-11E2-8E3C-0002A5D5C51B: one 10-byte
//! notification about once a second, **big-endian**. One [`Decoder::feed`] call is one value.
//!
//! Facts: ../shared/reference/devices.md §5.3 (Nonin's iOS sample `parseData`; Nonin doc
//! 113142-000-02 Rev B as cited by Mauricio Villarroel's `ble_nco_spec_decoder.swift`;
//! andreasdri/nonin-3230-ble reads counter and PR with `readInt16BE` at 5 and 8, SpO2 at 7).
//!
//! | byte | field |
//! |---|---|
//! | 0 | length, must equal the value's length (at least 10) |
//! | 1 | status: b1 weak signal, b3 searching, b4 sensor correctly on finger, b5 low battery |
//! | 2 | battery voltage, 0.1 V (not emitted: the `battery` metric is a percentage) |
//! | 3-4 | pulse amplitude index, 0.01 % |
//! | 5-6 | counter, seconds since run mode |
//! | 7 | SpO2, % (127 = missing) |
//! | 8-9 | pulse rate, /min (511 = missing) |
//!
//! Flags: b1 -> `low_signal`, b3 -> `searching`, b4 clear -> `no_finger` (voids the numbers),
//! b5 -> `low_battery`; b0 display synced, b2 SmartPoint, b6 encrypted and b7 are not
//! conditions. Emits `spo2`, `pulse_rate` and `perfusion_index`. The PAI has no documented
//! "missing" code: it is reported invalid (`no_value`) when SpO2 is missing or it reads
//! 0xFFFF (constructed convention, matching the encoder).

use super::{Decoder, FeedReport, PduError, feed_message};
use crate::model::{Flag, Flags, Invalid, Measurement, Metric};

/// The value's length.
pub const LEN: usize = 10;
/// Status b1: weak signal (0.3 % modulation or less).
const WEAK_SIGNAL: u8 = 0x02;
/// Status b3: searching for consecutive pulse signals.
const SEARCHING: u8 = 0x08;
/// Status b4: sensor correctly on the finger (CorrectCheck).
const ON_FINGER: u8 = 0x10;
/// Status b5: low battery.
const LOW_BATTERY: u8 = 0x20;
/// Missing SpO2.
const SPO2_MISSING: u8 = 127;
/// Missing pulse rate.
const PR_MISSING: u16 = 511;
/// PAI the encoder sends when it has none.
const PAI_NONE: u16 = 0xFFFF;

/// The flags of a status byte.
pub fn status_flags(status: u8) -> Flags {
    let mut f = Flags::EMPTY;
    f.set_if(Flag::LowSignal, status & WEAK_SIGNAL != 0);
    f.set_if(Flag::Searching, status & SEARCHING != 0);
    f.set_if(Flag::NoFinger, status & ON_FINGER == 0);
    f.set_if(Flag::LowBattery, status & LOW_BATTERY != 0);
    f
}

/// A parsed Continuous Oximetry value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oximetry {
    /// The status byte.
    pub status: u8,
    /// Battery voltage, 0.1 V.
    pub battery_decivolts: u8,
    /// Pulse amplitude index, 0.01 %.
    pub pai_centipercent: u16,
    /// Seconds since the device entered run mode.
    pub counter: u16,
    /// SpO2, % (127 = missing).
    pub spo2: u8,
    /// Pulse rate, /min (511 = missing).
    pub pulse_rate: u16,
}

impl Oximetry {
    /// Parses one notification value.
    pub fn parse(bytes: &[u8]) -> Result<Oximetry, PduError> {
        const WHAT: &str = "nonin continuous oximetry";
        let Some(b) = bytes.first_chunk::<LEN>() else {
            return Err(PduError::TooShort {
                what: WHAT,
                len: bytes.len(),
                need: LEN,
                flags: 0,
            });
        };
        if usize::from(b[0]) != bytes.len() {
            return Err(PduError::LengthMismatch {
                what: WHAT,
                declared: usize::from(b[0]),
                len: bytes.len(),
            });
        }
        Ok(Oximetry {
            status: b[1],
            battery_decivolts: b[2],
            pai_centipercent: u16::from_be_bytes([b[3], b[4]]),
            counter: u16::from_be_bytes([b[5], b[6]]),
            spo2: b[7],
            pulse_rate: u16::from_be_bytes([b[8], b[9]]),
        })
    }

    /// The measurements: spo2, pulse_rate, perfusion_index.
    pub fn measurements(&self, out: &mut Vec<Measurement>) {
        let flags = status_flags(self.status);
        out.push(match self.spo2 {
            SPO2_MISSING => Measurement::invalid(Metric::Spo2, Invalid::NoValue, flags),
            v => Measurement::new(Metric::Spo2, f64::from(v), flags),
        });
        out.push(match self.pulse_rate {
            PR_MISSING => Measurement::invalid(Metric::PulseRate, Invalid::NoValue, flags),
            v => Measurement::new(Metric::PulseRate, f64::from(v), flags),
        });
        out.push(
            if self.spo2 == SPO2_MISSING || self.pai_centipercent == PAI_NONE {
                Measurement::invalid(Metric::PerfusionIndex, Invalid::NoValue, flags)
            } else {
                Measurement::new(
                    Metric::PerfusionIndex,
                    f64::from(self.pai_centipercent) / 100.0,
                    flags,
                )
            },
        );
    }
}

/// Decoder for `nonin-ble`: one notification value per feed.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoninBleDecoder;

impl Decoder for NoninBleDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        feed_message(bytes, out, |b, out| {
            Oximetry::parse(b)?.measurements(out);
            Ok(())
        })
    }

    fn reset(&mut self) {}
}

/// A Continuous Oximetry value for the simulator. `None` vitals are sent as missing (127,
/// 511, PAI 0xFFFF); the perfusion index is rounded to 0.01 %; `battery_volts` to 0.1 V.
/// `flags`: `low_signal` sets weak signal, `searching` (or `searching_too_long`) searching,
/// `low_battery` low battery, and `no_finger`, `sensor_off`, `probe_unplugged` or
/// `sensor_fault` clear "correctly on finger".
pub fn encode(
    spo2: Option<f64>,
    pulse_rate: Option<f64>,
    perfusion_index: Option<f64>,
    battery_volts: f64,
    counter: u16,
    flags: Flags,
) -> [u8; LEN] {
    let mut status = 0x01; // display synced
    status |= if flags.contains(Flag::LowSignal) {
        WEAK_SIGNAL
    } else {
        0
    };
    let searching = flags.contains(Flag::Searching) || flags.contains(Flag::SearchingTooLong);
    status |= if searching { SEARCHING } else { 0 };
    status |= if flags.voiding().is_some() {
        0
    } else {
        ON_FINGER
    };
    status |= if flags.contains(Flag::LowBattery) {
        LOW_BATTERY
    } else {
        0
    };
    let volts = (battery_volts * 10.0).round().clamp(0.0, 255.0) as u8;
    let pai = perfusion_index.map_or(PAI_NONE, |v| {
        (v * 100.0).round().clamp(0.0, 10_000.0) as u16
    });
    let spo2 = spo2.map_or(SPO2_MISSING, |v| v.round().clamp(0.0, 100.0) as u8);
    let pr = pulse_rate.map_or(PR_MISSING, |v| v.round().clamp(0.0, 510.0) as u16);
    let [p0, p1] = pai.to_be_bytes();
    let [c0, c1] = counter.to_be_bytes();
    let [r0, r1] = pr.to_be_bytes();
    [LEN as u8, status, volts, p0, p1, c0, c1, spo2, r0, r1]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SpO2, pulse rate, perfusion index and flags for the encoder.
    type Vitals = (Option<f64>, Option<f64>, Option<f64>, Flags);
    use crate::model::Value;
    use crate::protocol::testutil::XorShift;

    fn decode(bytes: &[u8]) -> (Vec<Measurement>, FeedReport) {
        let mut out = Vec::new();
        let r = NoninBleDecoder.feed(bytes, &mut out);
        (out, r)
    }

    fn values(ms: &[Measurement]) -> Vec<Value> {
        ms.iter().map(|m| m.value).collect()
    }

    #[test]
    fn big_endian_fields_decode_as_the_nonin_layout_says() {
        // Constructed per andreasdri/nonin-3230-ble (readInt16BE at 5 and 8, int8 at 7) and
        // Villarroel's decoder (PAI BE at 3, gain 0.01): status 0x11 (synced, on finger),
        // 3.0 V, PAI 2.93 %, counter 300, SpO2 97, PR 300 (needs the high byte).
        let v = [0x0A, 0x11, 0x1E, 0x01, 0x25, 0x01, 0x2C, 0x61, 0x01, 0x2C];
        let o = Oximetry::parse(&v).unwrap();
        assert_eq!(o.counter, 300);
        assert_eq!(o.battery_decivolts, 30);
        let (ms, r) = decode(&v);
        assert_eq!(r.frames, 1);
        assert_eq!(
            ms,
            vec![
                Measurement::new(Metric::Spo2, 97.0, Flags::EMPTY),
                Measurement::new(Metric::PulseRate, 300.0, Flags::EMPTY),
                Measurement::new(Metric::PerfusionIndex, 2.93, Flags::EMPTY),
            ]
        );
    }

    #[test]
    fn status_bits_map_to_flags() {
        // Constructed from the status table (devices.md §5.3).
        let table: [(u8, Flags); 7] = [
            (0x10, Flags::EMPTY),
            (0x55, Flags::EMPTY), // synced, SmartPoint, encrypted: not conditions
            (0x12, Flags::EMPTY.with(Flag::LowSignal)),
            (0x18, Flags::EMPTY.with(Flag::Searching)),
            (0x30, Flags::EMPTY.with(Flag::LowBattery)),
            (0x00, Flags::EMPTY.with(Flag::NoFinger)),
            (
                0x8A,
                Flags::EMPTY
                    .with(Flag::NoFinger)
                    .with(Flag::LowSignal)
                    .with(Flag::Searching),
            ),
        ];
        for (status, flags) in table {
            assert_eq!(status_flags(status), flags, "{status:#04x}");
        }
    }

    #[test]
    fn missing_codes_and_finger_out_never_show_numbers() {
        // Constructed: SpO2 127 / PR 511 (missing); finger out with held numbers.
        let missing = [0x0A, 0x18, 0x1E, 0x00, 0x00, 0x00, 0x05, 0x7F, 0x01, 0xFF];
        let f = Flags::EMPTY.with(Flag::Searching);
        assert_eq!(
            values(&decode(&missing).0),
            vec![Value::Invalid(Invalid::NoValue); 3]
        );
        assert!(decode(&missing).0.iter().all(|m| m.flags == f));
        let out = [0x0A, 0x01, 0x1E, 0x01, 0x25, 0x00, 0x06, 0x61, 0x00, 0x48];
        assert_eq!(
            values(&decode(&out).0),
            vec![Value::Invalid(Invalid::DeviceFlagged); 3]
        );
        // Impossible numbers.
        let odd = [0x0A, 0x10, 0x1E, 0x27, 0x11, 0x00, 0x06, 0x65, 0x02, 0x00];
        assert_eq!(
            values(&decode(&odd).0),
            vec![Value::Invalid(Invalid::OutOfRange); 3]
        );
    }

    #[test]
    fn short_values_and_wrong_length_bytes_are_bad_frames() {
        let v = encode(Some(97.0), Some(72.0), Some(1.0), 3.0, 1, Flags::EMPTY);
        for n in 0..LEN {
            let (ms, r) = decode(&v[..n]);
            assert!(ms.is_empty());
            assert_eq!((r.frames, r.bad_frames), (0, 1), "cut to {n}");
        }
        let mut longer = v.to_vec();
        longer.push(0);
        assert_eq!(decode(&longer).1.bad_frames, 1);
        assert_eq!(
            Oximetry::parse(&longer).unwrap_err(),
            PduError::LengthMismatch {
                what: "nonin continuous oximetry",
                declared: 10,
                len: 11
            }
        );
        // A longer value that says so is read for its first 10 bytes.
        longer[0] = 11;
        assert_eq!(decode(&longer).0, decode(&v).0);
    }

    #[test]
    fn encoded_values_round_trip_with_their_flags() {
        let table: [Vitals; 5] = [
            (Some(97.0), Some(72.0), Some(4.56), Flags::EMPTY),
            (
                Some(88.0),
                Some(140.0),
                Some(0.2),
                Flags::EMPTY.with(Flag::LowSignal),
            ),
            (
                Some(95.0),
                Some(61.0),
                Some(1.0),
                Flags::EMPTY.with(Flag::LowBattery).with(Flag::Searching),
            ),
            (None, None, None, Flags::EMPTY.with(Flag::Searching)),
            (None, None, None, Flags::EMPTY.with(Flag::NoFinger)),
        ];
        for (spo2, pr, pi, flags) in table {
            let (ms, r) = decode(&encode(spo2, pr, pi, 2.9, 7, flags));
            assert_eq!(r.frames, 1);
            let voided = flags.voiding().is_some();
            let v = |x: Option<f64>| match x {
                None => Value::Invalid(Invalid::NoValue),
                Some(_) if voided => Value::Invalid(Invalid::DeviceFlagged),
                Some(x) => Value::Valid(x),
            };
            assert_eq!(values(&ms), vec![v(spo2), v(pr), v(pi)]);
            assert!(ms.iter().all(|m| m.flags == flags));
        }
    }

    #[test]
    fn random_values_never_panic() {
        let mut rng = XorShift(0x3230);
        let mut out = Vec::new();
        for _ in 0..50_000 {
            let len = rng.below(14);
            let mut v: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            if let Some(b) = v.first_mut() {
                *b = len as u8; // mostly well-formed lengths
            }
            out.clear();
            let r = NoninBleDecoder.feed(&v, &mut out);
            assert_eq!(r.frames + r.bad_frames, 1);
            for m in &out {
                if let (Metric::Spo2, Value::Valid(x)) = (m.metric, m.value) {
                    assert!(x <= 100.0);
                }
            }
        }
    }
}
