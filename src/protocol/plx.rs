//! Bluetooth SIG Pulse Oximeter Service 0x1822: PLX Spot-Check Measurement 0x2A5E
//! (indications), PLX Continuous Measurement 0x2A5F (notifications) and PLX Features 0x2A60
//! (read). One [`Decoder::feed`] call is one characteristic value.
//!
//! Facts: ../shared/reference/devices.md §2 (SIG XML via oesmith/gatt-xml, PLXS v1.0.1,
//! RivieraWaves `plxp_common.h` masks, Spezi's PLX types). Reserved bits are masked, never
//! rejected (real devices set them). Values are emitted as `spo2`, `pulse_rate` and, when
//! present, `perfusion_index` (the pulse amplitude index). The continuous measurement's
//! optional SpO2PR-Fast and SpO2PR-Slow pairs are parsed but not emitted: the Normal pair is
//! the one every device sends, and alarms apply their own delays. Bytes after the last field
//! the flags announce are ignored (later spec versions may append fields).
//!
//! Status bits to flags (Measurement Status "MS", Device and Sensor Status "D&S"):
//!
//! | bit | meaning | flag |
//! |---|---|---|
//! | MS b5 | measurement ongoing | `searching` |
//! | MS b6-b9 | early estimate, validated, fully qualified, from storage | none |
//! | MS b10 / b11 | data for demonstration / testing | `demo_data` |
//! | MS b12 | calibration ongoing | `questionable` |
//! | MS b13 / b15 | measurement unavailable / invalid | every value `device_marked_invalid` |
//! | MS b14 | questionable measurement | `questionable` |
//! | D&S b0 | extended display update ongoing | none |
//! | D&S b1 | equipment malfunction | `sensor_fault` (voids values) |
//! | D&S b2 | signal processing irregularity | `questionable` |
//! | D&S b3 / b4 | inadequate / poor signal | `low_signal` |
//! | D&S b5 | low perfusion | `low_perfusion` |
//! | D&S b6 / b7 | erratic / non-pulsatile signal | `artifact` |
//! | D&S b8 | questionable pulse | `questionable` |
//! | D&S b9 | signal analysis ongoing | `searching` |
//! | D&S b10 | sensor interference | `interference` |
//! | D&S b11 / b13 | sensor unconnected to user / displaced | `sensor_off` (voids values) |
//! | D&S b12 / b14 | unknown sensor / sensor malfunctioning | `sensor_fault` (voids values) |
//! | D&S b15 | sensor disconnected | `probe_unplugged` (voids values) |
//! | spot-check flags b4 | device clock not set | `clock_not_set`, no device time |

use super::sfloat::{Reader, encode_sfloat};
use super::{Decoder, FeedReport, PduError, feed_message, measurement};
use crate::model::{DeviceTime, Flag, Flags, Invalid, Measurement, Metric, Value};

/// Spot-check flags: timestamp present.
const SC_TIMESTAMP: u8 = 0x01;
/// Spot-check flags: measurement status present.
const SC_MEAS_STATUS: u8 = 0x02;
/// Spot-check flags: device and sensor status present.
const SC_DEVICE_STATUS: u8 = 0x04;
/// Spot-check flags: pulse amplitude index present.
const SC_PAI: u8 = 0x08;
/// Spot-check flags: device clock is not set.
const SC_CLOCK_NOT_SET: u8 = 0x10;

/// Continuous flags: SpO2PR-Fast present.
const CM_FAST: u8 = 0x01;
/// Continuous flags: SpO2PR-Slow present.
const CM_SLOW: u8 = 0x02;
/// Continuous flags: measurement status present.
const CM_MEAS_STATUS: u8 = 0x04;
/// Continuous flags: device and sensor status present.
const CM_DEVICE_STATUS: u8 = 0x08;
/// Continuous flags: pulse amplitude index present.
const CM_PAI: u8 = 0x10;

/// Defined bits of both flags bytes (b5-b7 RFU).
const FLAGS_MASK: u8 = 0x1F;
/// Defined Measurement Status bits (b0-b4 RFU; RivieraWaves `PLXP_MEAS_STATUS_VALID_MASK`).
pub const MEASUREMENT_STATUS_MASK: u16 = 0xFFE0;
/// Defined Device and Sensor Status bits (b16-b23 RFU).
pub const DEVICE_STATUS_MASK: u32 = 0x00_FFFF;

/// Measurement Status b13 measurement unavailable, b15 invalid measurement detected.
const MS_VOIDS_VALUES: u16 = (1 << 13) | (1 << 15);

/// Measurement Status bits and their flags (b13/b15 void the values instead; b6-b9 unmapped).
const MEASUREMENT_STATUS_FLAGS: [(u16, Flag); 5] = [
    (1 << 5, Flag::Searching),     // measurement ongoing
    (1 << 10, Flag::DemoData),     // data for demonstration
    (1 << 11, Flag::DemoData),     // data for testing
    (1 << 12, Flag::Questionable), // calibration ongoing
    (1 << 14, Flag::Questionable), // questionable measurement detected
];

/// Device and Sensor Status bits and their flags (b0 extended display update: unmapped).
const DEVICE_STATUS_FLAGS: [(u32, Flag); 15] = [
    (1 << 1, Flag::SensorFault),     // equipment malfunction detected
    (1 << 2, Flag::Questionable),    // signal processing irregularity
    (1 << 3, Flag::LowSignal),       // inadequate signal
    (1 << 4, Flag::LowSignal),       // poor signal
    (1 << 5, Flag::LowPerfusion),    // low perfusion
    (1 << 6, Flag::Artifact),        // erratic signal
    (1 << 7, Flag::Artifact),        // non-pulsatile signal
    (1 << 8, Flag::Questionable),    // questionable pulse
    (1 << 9, Flag::Searching),       // signal analysis ongoing
    (1 << 10, Flag::Interference),   // sensor interference
    (1 << 11, Flag::SensorOff),      // sensor unconnected to user
    (1 << 12, Flag::SensorFault),    // unknown sensor connected
    (1 << 13, Flag::SensorOff),      // sensor displaced
    (1 << 14, Flag::SensorFault),    // sensor malfunctioning
    (1 << 15, Flag::ProbeUnplugged), // sensor disconnected
];

/// The flags of a Measurement Status and a Device and Sensor Status (0 when absent).
pub fn status_flags(measurement_status: u16, device_status: u32) -> Flags {
    let mut f = Flags::EMPTY;
    for (bit, flag) in MEASUREMENT_STATUS_FLAGS {
        f.set_if(flag, measurement_status & bit != 0);
    }
    for (bit, flag) in DEVICE_STATUS_FLAGS {
        f.set_if(flag, device_status & bit != 0);
    }
    f
}

/// Appends spo2, pulse_rate and (if present) perfusion_index with the status flags.
fn emit(
    spo2: Value,
    pulse_rate: Value,
    pai: Option<Value>,
    measurement_status: u16,
    flags: Flags,
    time: Option<DeviceTime>,
    out: &mut Vec<Measurement>,
) {
    let marked_invalid = measurement_status & MS_VOIDS_VALUES != 0;
    let mut push = |metric, value| {
        let m = if marked_invalid {
            Measurement::invalid(metric, Invalid::DeviceMarkedInvalid, flags)
        } else {
            measurement(metric, value, flags)
        };
        out.push(m.at(time));
    };
    push(Metric::Spo2, spo2);
    push(Metric::PulseRate, pulse_rate);
    if let Some(pai) = pai {
        push(Metric::PerfusionIndex, pai);
    }
}

/// A too-short error for `what`.
fn too_short(what: &'static str, bytes: &[u8], need: usize) -> PduError {
    PduError::TooShort {
        what,
        len: bytes.len(),
        need,
        flags: bytes.first().copied().unwrap_or(0),
    }
}

/// A parsed PLX Spot-Check Measurement (0x2A5E).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpotCheck {
    /// SpO2, %.
    pub spo2: Value,
    /// Pulse rate, /min.
    pub pulse_rate: Value,
    /// The device's timestamp: `None` when absent, "not known", or the clock is not set.
    pub time: Option<DeviceTime>,
    /// Flags b4: the device clock is not set.
    pub clock_not_set: bool,
    /// Measurement Status, reserved bits masked; `None` when absent.
    pub measurement_status: Option<u16>,
    /// Device and Sensor Status, reserved bits masked; `None` when absent.
    pub device_status: Option<u32>,
    /// Pulse amplitude index, %; `None` when absent.
    pub pulse_amplitude_index: Option<Value>,
}

impl SpotCheck {
    /// Parses one characteristic value.
    pub fn parse(bytes: &[u8]) -> Result<SpotCheck, PduError> {
        const WHAT: &str = "plx spot-check measurement";
        let flags = bytes.first().copied().unwrap_or(0) & FLAGS_MASK;
        let need = 5
            + if flags & SC_TIMESTAMP != 0 { 7 } else { 0 }
            + if flags & SC_MEAS_STATUS != 0 { 2 } else { 0 }
            + if flags & SC_DEVICE_STATUS != 0 { 3 } else { 0 }
            + if flags & SC_PAI != 0 { 2 } else { 0 };
        let short = || too_short(WHAT, bytes, need);
        let mut r = Reader::new(bytes);
        r.u8().ok_or_else(short)?;
        let spo2 = r.sfloat().ok_or_else(short)?;
        let pulse_rate = r.sfloat().ok_or_else(short)?;
        let time = if flags & SC_TIMESTAMP != 0 {
            r.date_time().ok_or_else(short)?
        } else {
            None
        };
        let measurement_status = if flags & SC_MEAS_STATUS != 0 {
            Some(r.u16_le().ok_or_else(short)? & MEASUREMENT_STATUS_MASK)
        } else {
            None
        };
        let device_status = if flags & SC_DEVICE_STATUS != 0 {
            Some(r.u24_le().ok_or_else(short)? & DEVICE_STATUS_MASK)
        } else {
            None
        };
        let pulse_amplitude_index = if flags & SC_PAI != 0 {
            Some(r.sfloat().ok_or_else(short)?)
        } else {
            None
        };
        let clock_not_set = flags & SC_CLOCK_NOT_SET != 0;
        Ok(SpotCheck {
            spo2,
            pulse_rate,
            time: if clock_not_set { None } else { time },
            clock_not_set,
            measurement_status,
            device_status,
            pulse_amplitude_index,
        })
    }

    /// The measurements this value stands for.
    pub fn measurements(&self, out: &mut Vec<Measurement>) {
        let ms = self.measurement_status.unwrap_or(0);
        let mut flags = status_flags(ms, self.device_status.unwrap_or(0));
        flags.set_if(Flag::ClockNotSet, self.clock_not_set);
        emit(
            self.spo2,
            self.pulse_rate,
            self.pulse_amplitude_index,
            ms,
            flags,
            self.time,
            out,
        );
    }
}

/// A parsed PLX Continuous Measurement (0x2A5F).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Continuous {
    /// SpO2PR-Normal SpO2, %.
    pub spo2: Value,
    /// SpO2PR-Normal pulse rate, /min.
    pub pulse_rate: Value,
    /// SpO2PR-Fast (SpO2, pulse rate), when present. Not emitted.
    pub fast: Option<(Value, Value)>,
    /// SpO2PR-Slow (SpO2, pulse rate), when present. Not emitted.
    pub slow: Option<(Value, Value)>,
    /// Measurement Status, reserved bits masked; `None` when absent.
    pub measurement_status: Option<u16>,
    /// Device and Sensor Status, reserved bits masked; `None` when absent.
    pub device_status: Option<u32>,
    /// Pulse amplitude index, %; `None` when absent.
    pub pulse_amplitude_index: Option<Value>,
}

impl Continuous {
    /// Parses one characteristic value.
    pub fn parse(bytes: &[u8]) -> Result<Continuous, PduError> {
        const WHAT: &str = "plx continuous measurement";
        let flags = bytes.first().copied().unwrap_or(0) & FLAGS_MASK;
        let need = 5
            + if flags & CM_FAST != 0 { 4 } else { 0 }
            + if flags & CM_SLOW != 0 { 4 } else { 0 }
            + if flags & CM_MEAS_STATUS != 0 { 2 } else { 0 }
            + if flags & CM_DEVICE_STATUS != 0 { 3 } else { 0 }
            + if flags & CM_PAI != 0 { 2 } else { 0 };
        let short = || too_short(WHAT, bytes, need);
        let mut r = Reader::new(bytes);
        r.u8().ok_or_else(short)?;
        let spo2 = r.sfloat().ok_or_else(short)?;
        let pulse_rate = r.sfloat().ok_or_else(short)?;
        let mut pair = |present: bool| -> Result<Option<(Value, Value)>, PduError> {
            if !present {
                return Ok(None);
            }
            let s = r.sfloat().ok_or_else(short)?;
            let p = r.sfloat().ok_or_else(short)?;
            Ok(Some((s, p)))
        };
        let fast = pair(flags & CM_FAST != 0)?;
        let slow = pair(flags & CM_SLOW != 0)?;
        let measurement_status = if flags & CM_MEAS_STATUS != 0 {
            Some(r.u16_le().ok_or_else(short)? & MEASUREMENT_STATUS_MASK)
        } else {
            None
        };
        let device_status = if flags & CM_DEVICE_STATUS != 0 {
            Some(r.u24_le().ok_or_else(short)? & DEVICE_STATUS_MASK)
        } else {
            None
        };
        let pulse_amplitude_index = if flags & CM_PAI != 0 {
            Some(r.sfloat().ok_or_else(short)?)
        } else {
            None
        };
        Ok(Continuous {
            spo2,
            pulse_rate,
            fast,
            slow,
            measurement_status,
            device_status,
            pulse_amplitude_index,
        })
    }

    /// The measurements this value stands for (the Normal pair and the PAI).
    pub fn measurements(&self, out: &mut Vec<Measurement>) {
        let ms = self.measurement_status.unwrap_or(0);
        let flags = status_flags(ms, self.device_status.unwrap_or(0));
        emit(
            self.spo2,
            self.pulse_rate,
            self.pulse_amplitude_index,
            ms,
            flags,
            None,
            out,
        );
    }
}

/// Supported Features b0: a Measurement Status Support field follows.
pub const FEATURE_MEASUREMENT_STATUS: u16 = 1 << 0;
/// Supported Features b1: a Device and Sensor Status Support field follows.
pub const FEATURE_DEVICE_STATUS: u16 = 1 << 1;
/// Supported Features b2: spot-check measurement storage.
pub const FEATURE_STORAGE: u16 = 1 << 2;
/// Supported Features b3: spot-check timestamp.
pub const FEATURE_TIMESTAMP: u16 = 1 << 3;
/// Supported Features b4: SpO2PR-Fast.
pub const FEATURE_FAST: u16 = 1 << 4;
/// Supported Features b5: SpO2PR-Slow.
pub const FEATURE_SLOW: u16 = 1 << 5;
/// Supported Features b6: pulse amplitude index.
pub const FEATURE_PAI: u16 = 1 << 6;
/// Supported Features b7: multiple bonds.
pub const FEATURE_MULTIPLE_BONDS: u16 = 1 << 7;
/// Defined Supported Features bits (b8-b15 RFU).
const FEATURES_MASK: u16 = 0x00FF;

/// A parsed PLX Features value (0x2A60): what the device can report. It produces no
/// measurements; the transport logs it and may check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Supported Features, reserved bits masked (see the `FEATURE_*` constants).
    pub supported: u16,
    /// Measurement Status bits the device can set (same positions as the status), when sent.
    pub measurement_status_support: Option<u16>,
    /// Device and Sensor Status bits the device can set, when sent.
    pub device_status_support: Option<u32>,
}

impl Features {
    /// Parses one characteristic value (2, 4, 5 or 7 bytes, by its own bits b0 and b1).
    pub fn parse(bytes: &[u8]) -> Result<Features, PduError> {
        const WHAT: &str = "plx features";
        let first = bytes.first().copied().unwrap_or(0);
        let has_ms = first & FEATURE_MEASUREMENT_STATUS as u8 != 0;
        let has_ds = first & FEATURE_DEVICE_STATUS as u8 != 0;
        let need = 2 + if has_ms { 2 } else { 0 } + if has_ds { 3 } else { 0 };
        let short = || too_short(WHAT, bytes, need);
        let mut r = Reader::new(bytes);
        let supported = r.u16_le().ok_or_else(short)? & FEATURES_MASK;
        let measurement_status_support = if has_ms {
            Some(r.u16_le().ok_or_else(short)? & MEASUREMENT_STATUS_MASK)
        } else {
            None
        };
        let device_status_support = if has_ds {
            Some(r.u24_le().ok_or_else(short)? & DEVICE_STATUS_MASK)
        } else {
            None
        };
        Ok(Features {
            supported,
            measurement_status_support,
            device_status_support,
        })
    }

    /// Whether a `FEATURE_*` bit is set.
    pub const fn supports(&self, feature: u16) -> bool {
        self.supported & feature != 0
    }
}

/// Decoder for `plx-spot-check`: one indication value per feed.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpotCheckDecoder;

impl Decoder for SpotCheckDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        feed_message(bytes, out, |b, out| {
            SpotCheck::parse(b)?.measurements(out);
            Ok(())
        })
    }

    fn reset(&mut self) {}
}

/// Decoder for `plx-continuous`: one notification value per feed.
#[derive(Debug, Default, Clone, Copy)]
pub struct ContinuousDecoder;

impl Decoder for ContinuousDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        feed_message(bytes, out, |b, out| {
            Continuous::parse(b)?.measurements(out);
            Ok(())
        })
    }

    fn reset(&mut self) {}
}

/// Decoder for `plx-features`: checks the value (a good one is a frame, a short one a bad
/// frame) and produces no measurements; use [`Features::parse`] to read it.
#[derive(Debug, Default, Clone, Copy)]
pub struct FeaturesDecoder;

impl Decoder for FeaturesDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        feed_message(bytes, out, |b, _| Features::parse(b).map(|_| ()))
    }

    fn reset(&mut self) {}
}

/// The flags the continuous encoder can express, and the bits it sets for them. `no_finger`
/// has no PLX bit of its own and is sent as "sensor unconnected to user" (decoded as
/// `sensor_off`); `searching_too_long` as "signal analysis ongoing".
const ENCODE_DEVICE_STATUS: [(Flag, u32); 11] = [
    (Flag::SensorOff, 1 << 11),
    (Flag::NoFinger, 1 << 11),
    (Flag::ProbeUnplugged, 1 << 15),
    (Flag::SensorFault, 1 << 14),
    (Flag::Searching, 1 << 9),
    (Flag::SearchingTooLong, 1 << 9),
    (Flag::LowSignal, 1 << 4),
    (Flag::LowPerfusion, 1 << 5),
    (Flag::Artifact, 1 << 6),
    (Flag::Interference, 1 << 10),
    (Flag::Questionable, 1 << 8),
];

/// A PLX Continuous Measurement value for the simulator: SpO2 and pulse rate as whole
/// numbers, the perfusion index with two decimals (omitted when `None`); `None` vitals are
/// sent as SFLOAT NaN. Measurement Status (with b10 for `demo_data`) and Device and Sensor
/// Status are always sent, carrying the `flags` PLX can express (see the table above);
/// others (`low_battery`, NIBP flags) have no PLX bit and are dropped.
pub fn encode_continuous(
    spo2: Option<f64>,
    pulse_rate: Option<f64>,
    perfusion_index: Option<f64>,
    flags: Flags,
) -> Vec<u8> {
    let mut head = CM_MEAS_STATUS | CM_DEVICE_STATUS;
    if perfusion_index.is_some() {
        head |= CM_PAI;
    }
    let mut out = Vec::with_capacity(12);
    out.push(head);
    out.extend_from_slice(&encode_sfloat(spo2, 0).to_le_bytes());
    out.extend_from_slice(&encode_sfloat(pulse_rate, 0).to_le_bytes());
    let ms: u16 = if flags.contains(Flag::DemoData) {
        1 << 10
    } else {
        0
    };
    out.extend_from_slice(&ms.to_le_bytes());
    let ds = ENCODE_DEVICE_STATUS
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .fold(0u32, |a, (_, bit)| a | bit);
    out.extend_from_slice(&ds.to_le_bytes()[..3]);
    if perfusion_index.is_some() {
        out.extend_from_slice(&encode_sfloat(perfusion_index, 2).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SpO2, pulse rate, perfusion index and flags for the encoder.
    type Vitals = (Option<f64>, Option<f64>, Option<f64>, Flags);
    /// A decoder run on one value.
    type DecodeFn = fn(&[u8]) -> (Vec<Measurement>, FeedReport);
    use crate::protocol::testutil::XorShift;

    fn decode<D: Decoder + Default>(bytes: &[u8]) -> (Vec<Measurement>, FeedReport) {
        let mut out = Vec::new();
        let r = D::default().feed(bytes, &mut out);
        (out, r)
    }

    fn ok(frames: u32) -> FeedReport {
        FeedReport {
            frames,
            ..FeedReport::default()
        }
    }

    fn bad() -> FeedReport {
        FeedReport {
            bad_frames: 1,
            ..FeedReport::default()
        }
    }

    /// Spezi PLXTests.testVerySimpleMeasurementCoding (two encodings of 100 % / 90).
    const SPEZI_VERY_SIMPLE: [u8; 5] = [0, 232, 243, 132, 243];
    /// Spezi PLXTests.testSimpleMeasurementCoding: 95 %, 90 /min, measurement ongoing, PAI 8.7.
    const SPEZI_SIMPLE: [u8; 12] = [28, 95, 0, 90, 0, 32, 0, 0, 0, 0, 87, 240];
    /// Spezi PLXTests.testFullMeasurementCoding: 99/97, fast 97/137, slow 98/69,
    /// ongoing + fully qualified, PAI 8.9.
    const SPEZI_FULL: [u8; 20] = [
        31, 222, 243, 202, 243, 202, 243, 90, 245, 212, 243, 178, 242, 32, 1, 0, 0, 0, 122, 227,
    ];
    /// Spezi PLXTests.testSpotCheckMeasurementCoding: 94 %, 147 /min, 2024-11-29 23:08:57,
    /// ongoing + questionable, equipment malfunction + low perfusion, PAI 8.7.
    const SPEZI_SPOT: [u8; 19] = [
        15, 172, 243, 190, 245, 232, 7, 11, 29, 23, 8, 57, 32, 64, 34, 0, 0, 102, 227,
    ];
    /// Spezi PLXTests.testPLXFeaturesCoding.
    const SPEZI_FEATURES: [u8; 7] = [163, 0, 64, 16, 128, 1, 0];

    #[test]
    fn spezi_continuous_vectors_decode() {
        let (ms, r) = decode::<ContinuousDecoder>(&SPEZI_VERY_SIMPLE);
        assert_eq!(r, ok(1));
        assert_eq!(
            ms,
            vec![
                Measurement::new(Metric::Spo2, 100.0, Flags::EMPTY),
                Measurement::new(Metric::PulseRate, 90.0, Flags::EMPTY),
            ]
        );
        let (ms, _) = decode::<ContinuousDecoder>(&[0, 100, 0, 90, 0]);
        assert_eq!(ms[0].value, Value::Valid(100.0));

        let searching = Flags::EMPTY.with(Flag::Searching);
        let (ms, r) = decode::<ContinuousDecoder>(&SPEZI_SIMPLE);
        assert_eq!(r, ok(1));
        assert_eq!(
            ms,
            vec![
                Measurement::new(Metric::Spo2, 95.0, searching),
                Measurement::new(Metric::PulseRate, 90.0, searching),
                Measurement::new(Metric::PerfusionIndex, 8.7, searching),
            ]
        );

        let c = Continuous::parse(&SPEZI_FULL).unwrap();
        assert_eq!(c.fast, Some((Value::Valid(97.0), Value::Valid(137.0))));
        assert_eq!(c.slow, Some((Value::Valid(98.0), Value::Valid(69.0))));
        assert_eq!(c.measurement_status, Some(0x0120));
        let (ms, r) = decode::<ContinuousDecoder>(&SPEZI_FULL);
        assert_eq!(r, ok(1));
        assert_eq!(
            ms,
            vec![
                Measurement::new(Metric::Spo2, 99.0, searching),
                Measurement::new(Metric::PulseRate, 97.0, searching),
                Measurement::new(Metric::PerfusionIndex, 8.9, searching),
            ]
        );
    }

    #[test]
    fn the_spezi_spot_check_decodes_with_its_timestamp_and_voids_on_equipment_malfunction() {
        let s = SpotCheck::parse(&SPEZI_SPOT).unwrap();
        assert_eq!(s.spo2, Value::Valid(94.0));
        assert_eq!(s.pulse_rate, Value::Valid(147.0));
        assert_eq!(s.pulse_amplitude_index, Some(Value::Valid(8.7)));
        assert_eq!(s.measurement_status, Some(0x4020));
        assert_eq!(s.device_status, Some(0x000022));
        let (ms, r) = decode::<SpotCheckDecoder>(&SPEZI_SPOT);
        assert_eq!(r, ok(1));
        let flags = Flags::EMPTY
            .with(Flag::Searching)
            .with(Flag::Questionable)
            .with(Flag::SensorFault)
            .with(Flag::LowPerfusion);
        let t = Some(DeviceTime {
            year: 2024,
            month: 11,
            day: 29,
            hour: 23,
            minute: 8,
            second: 57,
        });
        // Equipment malfunction is a sensor fault: the numbers are not shown.
        let want: Vec<Measurement> = [Metric::Spo2, Metric::PulseRate, Metric::PerfusionIndex]
            .into_iter()
            .map(|m| Measurement::invalid(m, Invalid::DeviceFlagged, flags).at(t))
            .collect();
        assert_eq!(ms, want);
    }

    #[test]
    fn a_spot_check_with_clock_not_set_has_no_device_time() {
        // Constructed from SPEZI_SPOT: flags b4 set, D&S cleared.
        let mut v = SPEZI_SPOT;
        v[0] |= SC_CLOCK_NOT_SET;
        v[14] = 0;
        let (ms, _) = decode::<SpotCheckDecoder>(&v);
        let flags = Flags::EMPTY
            .with(Flag::Searching)
            .with(Flag::Questionable)
            .with(Flag::ClockNotSet);
        assert_eq!(ms[0], Measurement::new(Metric::Spo2, 94.0, flags));
        assert!(ms.iter().all(|m| m.device_time.is_none()));
    }

    #[test]
    fn the_spezi_features_vector_parses_and_produces_nothing() {
        let f = Features::parse(&SPEZI_FEATURES).unwrap();
        assert_eq!(
            f.supported,
            FEATURE_MEASUREMENT_STATUS
                | FEATURE_DEVICE_STATUS
                | FEATURE_SLOW
                | FEATURE_MULTIPLE_BONDS
        );
        assert!(f.supports(FEATURE_SLOW) && !f.supports(FEATURE_PAI));
        // Early estimated data (b6) and calibration ongoing (b12).
        assert_eq!(f.measurement_status_support, Some((1 << 6) | (1 << 12)));
        // Non-pulsatile signal (b7) and questionable pulse (b8).
        assert_eq!(f.device_status_support, Some((1 << 7) | (1 << 8)));
        let (ms, r) = decode::<FeaturesDecoder>(&SPEZI_FEATURES);
        assert!(ms.is_empty());
        assert_eq!(r, ok(1));
        // Constructed: the 2-byte form, and RFU bits set everywhere.
        let f = Features::parse(&[0x40, 0xFF]).unwrap();
        assert_eq!(f.supported, FEATURE_PAI);
        assert_eq!(f.measurement_status_support, None);
        let f = Features::parse(&[0xFF; 7]).unwrap();
        assert_eq!(f.supported, 0xFF);
        assert_eq!(f.measurement_status_support, Some(0xFFE0));
        assert_eq!(f.device_status_support, Some(0xFFFF));
    }

    #[test]
    fn every_status_bit_maps_to_its_flag() {
        // Constructed from the PLXS bit tables (devices.md §2.3, §2.4).
        let ms_table: [(u8, Option<Flag>); 11] = [
            (5, Some(Flag::Searching)),
            (6, None),
            (7, None),
            (8, None),
            (9, None),
            (10, Some(Flag::DemoData)),
            (11, Some(Flag::DemoData)),
            (12, Some(Flag::Questionable)),
            (13, None),
            (14, Some(Flag::Questionable)),
            (15, None),
        ];
        for (bit, flag) in ms_table {
            let want = flag.map_or(Flags::EMPTY, |f| Flags::EMPTY.with(f));
            assert_eq!(status_flags(1 << bit, 0), want, "MS b{bit}");
        }
        let ds_table: [(u8, Option<Flag>); 16] = [
            (0, None),
            (1, Some(Flag::SensorFault)),
            (2, Some(Flag::Questionable)),
            (3, Some(Flag::LowSignal)),
            (4, Some(Flag::LowSignal)),
            (5, Some(Flag::LowPerfusion)),
            (6, Some(Flag::Artifact)),
            (7, Some(Flag::Artifact)),
            (8, Some(Flag::Questionable)),
            (9, Some(Flag::Searching)),
            (10, Some(Flag::Interference)),
            (11, Some(Flag::SensorOff)),
            (12, Some(Flag::SensorFault)),
            (13, Some(Flag::SensorOff)),
            (14, Some(Flag::SensorFault)),
            (15, Some(Flag::ProbeUnplugged)),
        ];
        for (bit, flag) in ds_table {
            let want = flag.map_or(Flags::EMPTY, |f| Flags::EMPTY.with(f));
            assert_eq!(status_flags(0, 1 << bit), want, "D&S b{bit}");
        }
    }

    #[test]
    fn unavailable_or_invalid_measurements_never_show_their_numbers() {
        // Constructed: 97 % / 72 /min sent with MS b13 (unavailable) or b15 (invalid).
        for status in [1u16 << 13, 1 << 15] {
            let [s0, s1] = status.to_le_bytes();
            let v = [CM_MEAS_STATUS | CM_PAI, 97, 0, 72, 0, s0, s1, 50, 0];
            let (ms, r) = decode::<ContinuousDecoder>(&v);
            assert_eq!(r, ok(1));
            assert_eq!(ms.len(), 3);
            for m in ms {
                assert_eq!(
                    m.value,
                    Value::Invalid(Invalid::DeviceMarkedInvalid),
                    "{status:#x}"
                );
            }
        }
    }

    #[test]
    fn a_finger_out_notification_from_the_spec_gives_no_numbers_and_says_why() {
        // Constructed per devices.md §2.6: NaN values, MS b13, D&S b11 + b9.
        let v = [
            CM_MEAS_STATUS | CM_DEVICE_STATUS,
            0xFF,
            0x07,
            0xFF,
            0x07,
            0x00,
            0x20,
            0x00,
            0x0A,
            0x00,
        ];
        let (ms, r) = decode::<ContinuousDecoder>(&v);
        assert_eq!(r, ok(1));
        let flags = Flags::EMPTY.with(Flag::SensorOff).with(Flag::Searching);
        assert_eq!(
            ms,
            vec![
                Measurement::invalid(Metric::Spo2, Invalid::DeviceMarkedInvalid, flags),
                Measurement::invalid(Metric::PulseRate, Invalid::DeviceMarkedInvalid, flags),
            ]
        );
        // Without MS b13 the NaN reason shows.
        let v = [CM_DEVICE_STATUS, 0xFF, 0x07, 0x00, 0x08, 0x00, 0x80, 0x00];
        let (ms, _) = decode::<ContinuousDecoder>(&v);
        let flags = Flags::EMPTY.with(Flag::ProbeUnplugged);
        assert_eq!(
            ms,
            vec![
                Measurement::invalid(Metric::Spo2, Invalid::NoValue, flags),
                Measurement::invalid(Metric::PulseRate, Invalid::NotAtResolution, flags),
            ]
        );
    }

    #[test]
    fn sfloat_specials_and_impossible_numbers_become_invalid_values() {
        // Constructed: every special in the SpO2 slot; SpO2 101 and PR -1 out of range.
        let table: [(u16, Invalid); 5] = [
            (0x07FF, Invalid::NoValue),
            (0x0800, Invalid::NotAtResolution),
            (0x07FE, Invalid::PositiveInfinity),
            (0x0802, Invalid::NegativeInfinity),
            (0x0801, Invalid::Reserved),
        ];
        for (raw, reason) in table {
            let [a, b] = raw.to_le_bytes();
            let (ms, _) = decode::<ContinuousDecoder>(&[0, a, b, 60, 0]);
            assert_eq!(ms[0].value, Value::Invalid(reason), "{raw:#06x}");
            assert_eq!(ms[1].value, Value::Valid(60.0));
        }
        let (ms, _) = decode::<ContinuousDecoder>(&[0, 101, 0, 0xFF, 0x0F]);
        assert_eq!(ms[0].value, Value::Invalid(Invalid::OutOfRange));
        assert_eq!(ms[1].value, Value::Invalid(Invalid::OutOfRange));
    }

    #[test]
    fn numbers_outside_the_plausible_range_are_out_of_range() {
        // Constructed; ranges from `Metric::plausible_range` (SpO2 0-100 %, rates 0-350 /min,
        // PI 0-100 %). Flags b4: PAI present.
        let table: [([u8; 7], [Value; 3]); 3] = [
            (
                [0x10, 100, 0, 0x5E, 0x01, 0xE8, 0x03], // 100 %, 350 /min, PAI 1000 %
                [
                    Value::Valid(100.0),
                    Value::Valid(350.0),
                    Value::Invalid(Invalid::OutOfRange),
                ],
            ),
            (
                [0x10, 98, 0, 0x5F, 0x01, 0x64, 0x00], // 98 %, 351 /min, PAI 100 %
                [
                    Value::Valid(98.0),
                    Value::Invalid(Invalid::OutOfRange),
                    Value::Valid(100.0),
                ],
            ),
            (
                [0x10, 0xE8, 0x13, 0x48, 0x00, 0x23, 0x00], // 1000e1 %, 72 /min, PAI 35 %
                [
                    Value::Invalid(Invalid::OutOfRange),
                    Value::Valid(72.0),
                    Value::Valid(35.0),
                ],
            ),
        ];
        for (bytes, want) in table {
            let (ms, r) = decode::<ContinuousDecoder>(&bytes);
            assert_eq!(r, ok(1), "{bytes:02x?}");
            let got: Vec<Value> = ms.iter().map(|m| m.value).collect();
            assert_eq!(got, want, "{bytes:02x?}");
        }
    }

    #[test]
    fn reserved_bits_are_masked_not_rejected() {
        // Constructed: SPEZI_SIMPLE with flags b5-b7, MS b0-b4 and D&S b16-b23 set.
        let mut v = SPEZI_SIMPLE;
        v[0] |= 0xE0;
        v[5] |= 0x1F;
        v[9] = 0xFF;
        let (ms, r) = decode::<ContinuousDecoder>(&v);
        assert_eq!(r, ok(1));
        assert_eq!(ms, decode::<ContinuousDecoder>(&SPEZI_SIMPLE).0);
        let mut v = SPEZI_SPOT;
        v[0] |= 0xE0;
        v[12] |= 0x1F;
        v[16] = 0xFF;
        assert_eq!(
            decode::<SpotCheckDecoder>(&v).0,
            decode::<SpotCheckDecoder>(&SPEZI_SPOT).0
        );
    }

    #[test]
    fn every_truncated_value_is_one_bad_frame_and_trailing_bytes_are_ignored() {
        let cases: [(&[u8], DecodeFn); 5] = [
            (&SPEZI_VERY_SIMPLE, decode::<ContinuousDecoder>),
            (&SPEZI_SIMPLE, decode::<ContinuousDecoder>),
            (&SPEZI_FULL, decode::<ContinuousDecoder>),
            (&SPEZI_SPOT, decode::<SpotCheckDecoder>),
            (&SPEZI_FEATURES, decode::<FeaturesDecoder>),
        ];
        for (v, dec) in cases {
            for n in 0..v.len() {
                let (ms, r) = dec(&v[..n]);
                assert!(ms.is_empty(), "{v:?} cut to {n}");
                assert_eq!(r, bad(), "{v:?} cut to {n}");
            }
            let mut longer = v.to_vec();
            longer.extend_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]);
            assert_eq!(dec(&longer), dec(v));
        }
        assert!(matches!(
            Continuous::parse(&SPEZI_FULL[..19]),
            Err(PduError::TooShort {
                len: 19,
                need: 20,
                flags: 31,
                ..
            })
        ));
    }

    #[test]
    fn encoded_continuous_values_round_trip_with_their_flags() {
        let table: [Vitals; 5] = [
            (Some(97.0), Some(72.0), Some(3.25), Flags::EMPTY),
            (
                Some(88.0),
                Some(130.0),
                None,
                Flags::EMPTY.with(Flag::Artifact),
            ),
            (
                Some(95.0),
                Some(60.0),
                Some(0.5),
                Flags::EMPTY.with(Flag::LowPerfusion).with(Flag::DemoData),
            ),
            (
                None,
                None,
                None,
                Flags::EMPTY.with(Flag::SensorOff).with(Flag::Searching),
            ),
            (
                None,
                Some(61.0),
                None,
                Flags::EMPTY.with(Flag::Interference),
            ),
        ];
        for (spo2, pr, pi, flags) in table {
            let bytes = encode_continuous(spo2, pr, pi, flags);
            let (ms, r) = decode::<ContinuousDecoder>(&bytes);
            assert_eq!(r, ok(1));
            let value = |v: Option<f64>| v.map_or(Value::Invalid(Invalid::NoValue), Value::Valid);
            assert_eq!(ms[0].value, value(spo2));
            assert_eq!(ms[1].value, value(pr));
            assert_eq!(ms.get(2).map(|m| m.value), pi.map(Value::Valid));
            assert!(ms.iter().all(|m| m.flags == flags));
        }
        // no_finger has no PLX bit: it travels as sensor_off.
        let bytes = encode_continuous(None, None, None, Flags::EMPTY.with(Flag::NoFinger));
        let (ms, _) = decode::<ContinuousDecoder>(&bytes);
        assert_eq!(ms[0].flags, Flags::EMPTY.with(Flag::SensorOff));
    }

    #[test]
    fn random_notifications_never_panic_and_never_give_impossible_numbers() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut out = Vec::new();
        for _ in 0..50_000 {
            let len = rng.below(24);
            let mut v: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            if let Some(f) = v.first_mut() {
                *f &= 0x3F; // mostly plausible flags, so deep fields get exercised
            }
            out.clear();
            let mut r = SpotCheckDecoder.feed(&v, &mut out);
            r.absorb(ContinuousDecoder.feed(&v, &mut out));
            r.absorb(FeaturesDecoder.feed(&v, &mut out));
            assert_eq!(r.frames + r.bad_frames, 3);
            for m in &out {
                if let Value::Valid(x) = m.value {
                    assert!(x.is_finite() && x >= 0.0, "{m:?} from {v:?}");
                    if m.metric == Metric::Spo2 {
                        assert!(x <= 100.0);
                    }
                }
            }
        }
    }
}
