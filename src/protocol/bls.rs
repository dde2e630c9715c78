//! Bluetooth SIG Blood Pressure Service 0x1810: Blood Pressure Measurement 0x2A35
//! (indications), Intermediate Cuff Pressure 0x2A36 (notifications) and Blood Pressure
//! Feature 0x2A49 (read). One [`Decoder::feed`] call is one characteristic value.
//!
//! Facts: ../shared/reference/devices.md §3 (SIG XML via oesmith/gatt-xml, BLS v1.1.1, Nordic
//! `BloodPressureMeasurementDataCallback`). Values in kPa (flags b0) are converted to mmHg
//! with Nordic's 1 mmHg = 0.133322387415 kPa and rounded to 0.1 mmHg. Reserved bits of the
//! flags and of the status are masked (a real A&D cuff sets them, devices.md warning 3).
//! Bytes after the last announced field are ignored.
//!
//! A measurement gives `nibp_sys`, `nibp_dia`, `nibp_mean` and, when present, `nibp_pulse`,
//! all with the device's timestamp. A NaN field is just that value invalid (real cuffs send
//! MAP as NaN in a good reading). An intermediate cuff pressure gives `cuff_pressure` with
//! `measurement_ongoing`; its diastolic and MAP slots are ignored whatever they hold (the SIG
//! says NaN, Nordic's tests send 0, devices.md warning 2), and so is its pulse rate.
//!
//! Status bits: b0 body movement -> `body_movement`, b1 cuff too loose -> `cuff_loose`, b2
//! irregular pulse -> `irregular_pulse`, b5 improper position -> `improper_position`. The
//! pulse-rate range (b3-b4: 0 in range, 1 above the device's upper limit, 2 below its lower
//! limit, 3 reserved) raises no flag: it describes the pulse number itself, which is reported
//! and checked against the bed's own limits; it is kept in [`BpMeasurement::pulse_rate_range`].
//! The user id (b3) is kept in the parsed value (255 = unknown user, read as `None`) but not
//! in measurements: each recliner has its own cuff, bound by address.

use super::sfloat::{Reader, encode_date_time, encode_sfloat};
use super::{Decoder, FeedReport, PduError, feed_message, measurement};
use crate::model::{DeviceTime, Flag, Flags, Measurement, Metric, Value};

/// Flags b0: values are in kPa (else mmHg).
const UNITS_KPA: u8 = 0x01;
/// Flags b1: time stamp present.
const TIMESTAMP: u8 = 0x02;
/// Flags b2: pulse rate present.
const PULSE_RATE: u8 = 0x04;
/// Flags b3: user id present.
const USER_ID: u8 = 0x08;
/// Flags b4: measurement status present.
const STATUS: u8 = 0x10;
/// Defined flags bits (b5-b7 RFU).
const FLAGS_MASK: u8 = 0x1F;
/// Defined status bits (b6-b15 RFU).
pub const STATUS_MASK: u16 = 0x003F;
/// The user id that means "unknown user".
pub const USER_UNKNOWN: u8 = 255;
/// kPa per mmHg (Nordic `BloodPressureTypes`).
pub const KPA_PER_MMHG: f64 = 0.133322387415;

/// Status bits and their flags.
const STATUS_FLAGS: [(u16, Flag); 4] = [
    (1 << 0, Flag::BodyMovement),
    (1 << 1, Flag::CuffLoose),
    (1 << 2, Flag::IrregularPulse),
    (1 << 5, Flag::ImproperPosition),
];

/// The flags of a measurement status.
pub fn status_flags(status: u16) -> Flags {
    let mut f = Flags::EMPTY;
    for (bit, flag) in STATUS_FLAGS {
        f.set_if(flag, status & bit != 0);
    }
    f
}

/// Status b3-b4: the pulse rate against the device's own range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PulseRateRange {
    /// 0: within range (also when no status was sent).
    InRange,
    /// 1: exceeds the upper limit.
    AboveUpperLimit,
    /// 2: below the lower limit.
    BelowLowerLimit,
    /// 3: reserved.
    Reserved,
}

/// A parsed Blood Pressure Measurement (0x2A35) or Intermediate Cuff Pressure (0x2A36);
/// pressures already in mmHg.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BpMeasurement {
    /// Systolic, mmHg (in an intermediate cuff pressure: the current cuff pressure).
    pub systolic: Value,
    /// Diastolic, mmHg (unused in an intermediate cuff pressure).
    pub diastolic: Value,
    /// Mean arterial pressure, mmHg (unused in an intermediate cuff pressure).
    pub mean: Value,
    /// Whether the device sent kPa (converted here).
    pub kpa: bool,
    /// The device's timestamp; `None` when absent or "not known".
    pub time: Option<DeviceTime>,
    /// Pulse rate, /min, when present.
    pub pulse_rate: Option<Value>,
    /// User id; `None` when absent or 255 (unknown user).
    pub user: Option<u8>,
    /// Measurement status, reserved bits masked; `None` when absent.
    pub status: Option<u16>,
}

/// Converts a kPa value to mmHg, rounded to 0.1 mmHg.
fn kpa_to_mmhg(v: Value) -> Value {
    match v {
        Value::Valid(kpa) => Value::Valid((kpa / KPA_PER_MMHG * 10.0).round() / 10.0),
        other => other,
    }
}

impl BpMeasurement {
    /// Parses one value laid out as 0x2A35 (0x2A36 has the same layout); `what` names the
    /// characteristic in errors.
    fn parse_as(bytes: &[u8], what: &'static str) -> Result<BpMeasurement, PduError> {
        let flags = bytes.first().copied().unwrap_or(0) & FLAGS_MASK;
        let need = 7
            + if flags & TIMESTAMP != 0 { 7 } else { 0 }
            + if flags & PULSE_RATE != 0 { 2 } else { 0 }
            + if flags & USER_ID != 0 { 1 } else { 0 }
            + if flags & STATUS != 0 { 2 } else { 0 };
        let short = || PduError::TooShort {
            what,
            len: bytes.len(),
            need,
            flags: bytes.first().copied().unwrap_or(0),
        };
        let mut r = Reader::new(bytes);
        r.u8().ok_or_else(short)?;
        let kpa = flags & UNITS_KPA != 0;
        let unit = |v: Value| if kpa { kpa_to_mmhg(v) } else { v };
        let systolic = unit(r.sfloat().ok_or_else(short)?);
        let diastolic = unit(r.sfloat().ok_or_else(short)?);
        let mean = unit(r.sfloat().ok_or_else(short)?);
        let time = if flags & TIMESTAMP != 0 {
            r.date_time().ok_or_else(short)?
        } else {
            None
        };
        let pulse_rate = if flags & PULSE_RATE != 0 {
            Some(r.sfloat().ok_or_else(short)?)
        } else {
            None
        };
        let user = if flags & USER_ID != 0 {
            Some(r.u8().ok_or_else(short)?).filter(|u| *u != USER_UNKNOWN)
        } else {
            None
        };
        let status = if flags & STATUS != 0 {
            Some(r.u16_le().ok_or_else(short)? & STATUS_MASK)
        } else {
            None
        };
        Ok(BpMeasurement {
            systolic,
            diastolic,
            mean,
            kpa,
            time,
            pulse_rate,
            user,
            status,
        })
    }

    /// Parses one Blood Pressure Measurement value.
    pub fn parse(bytes: &[u8]) -> Result<BpMeasurement, PduError> {
        Self::parse_as(bytes, "blood pressure measurement")
    }

    /// Parses one Intermediate Cuff Pressure value.
    pub fn parse_cuff_pressure(bytes: &[u8]) -> Result<BpMeasurement, PduError> {
        Self::parse_as(bytes, "intermediate cuff pressure")
    }

    /// The flags of the status (none when absent).
    pub fn flags(&self) -> Flags {
        status_flags(self.status.unwrap_or(0))
    }

    /// The pulse-rate range bits of the status.
    pub fn pulse_rate_range(&self) -> PulseRateRange {
        match (self.status.unwrap_or(0) >> 3) & 0x03 {
            0 => PulseRateRange::InRange,
            1 => PulseRateRange::AboveUpperLimit,
            2 => PulseRateRange::BelowLowerLimit,
            _ => PulseRateRange::Reserved,
        }
    }

    /// The measurements of a Blood Pressure Measurement.
    pub fn measurements(&self, out: &mut Vec<Measurement>) {
        let flags = self.flags();
        let mut push = |metric, value| {
            out.push(measurement(metric, value, flags).at(self.time));
        };
        push(Metric::NibpSys, self.systolic);
        push(Metric::NibpDia, self.diastolic);
        push(Metric::NibpMean, self.mean);
        if let Some(pr) = self.pulse_rate {
            push(Metric::NibpPulse, pr);
        }
    }

    /// The measurement of an Intermediate Cuff Pressure: the cuff pressure only.
    pub fn cuff_pressure_measurements(&self, out: &mut Vec<Measurement>) {
        let flags = self.flags().with(Flag::MeasurementOngoing);
        out.push(measurement(Metric::CuffPressure, self.systolic, flags).at(self.time));
    }
}

/// Feature b0: body movement detection.
pub const FEATURE_BODY_MOVEMENT: u16 = 1 << 0;
/// Feature b1: cuff fit detection.
pub const FEATURE_CUFF_FIT: u16 = 1 << 1;
/// Feature b2: irregular pulse detection.
pub const FEATURE_IRREGULAR_PULSE: u16 = 1 << 2;
/// Feature b3: pulse rate range detection.
pub const FEATURE_PULSE_RATE_RANGE: u16 = 1 << 3;
/// Feature b4: measurement position detection.
pub const FEATURE_POSITION: u16 = 1 << 4;
/// Feature b5: multiple bonds.
pub const FEATURE_MULTIPLE_BONDS: u16 = 1 << 5;
/// Feature b6 (BLS 1.1): E2E-CRC.
pub const FEATURE_E2E_CRC: u16 = 1 << 6;
/// Feature b7 (BLS 1.1): User Data Service.
pub const FEATURE_USER_DATA: u16 = 1 << 7;
/// Feature b8 (BLS 1.1): user facing time.
pub const FEATURE_USER_FACING_TIME: u16 = 1 << 8;
/// Defined feature bits.
const FEATURE_MASK: u16 = 0x01FF;

/// A parsed Blood Pressure Feature value (0x2A49). It produces no measurements; the
/// transport logs it and may check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// The feature bits, reserved ones masked (see the `FEATURE_*` constants).
    pub bits: u16,
}

impl Feature {
    /// Parses one characteristic value (a uint16; trailing bytes ignored).
    pub fn parse(bytes: &[u8]) -> Result<Feature, PduError> {
        let bits = Reader::new(bytes).u16_le().ok_or(PduError::TooShort {
            what: "blood pressure feature",
            len: bytes.len(),
            need: 2,
            flags: 0,
        })?;
        Ok(Feature {
            bits: bits & FEATURE_MASK,
        })
    }

    /// Whether a `FEATURE_*` bit is set.
    pub const fn supports(&self, feature: u16) -> bool {
        self.bits & feature != 0
    }
}

/// Decoder for `bls-measurement`: one indication value per feed.
#[derive(Debug, Default, Clone, Copy)]
pub struct MeasurementDecoder;

impl Decoder for MeasurementDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        feed_message(bytes, out, |b, out| {
            BpMeasurement::parse(b)?.measurements(out);
            Ok(())
        })
    }

    fn reset(&mut self) {}
}

/// Decoder for `bls-cuff-pressure`: one notification value per feed.
#[derive(Debug, Default, Clone, Copy)]
pub struct CuffPressureDecoder;

impl Decoder for CuffPressureDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        feed_message(bytes, out, |b, out| {
            BpMeasurement::parse_cuff_pressure(b)?.cuff_pressure_measurements(out);
            Ok(())
        })
    }

    fn reset(&mut self) {}
}

/// The status bits for the NIBP flags in `flags` (others have no BLS bit and are dropped).
fn encode_status(flags: Flags) -> u16 {
    STATUS_FLAGS
        .iter()
        .filter(|(_, f)| flags.contains(*f))
        .fold(0, |a, (bit, _)| a | bit)
}

/// A Blood Pressure Measurement value for the simulator, in mmHg with one decimal. `None`
/// pressures are sent as NaN; the pulse rate field is left out when `None`; the time stamp
/// when `None`. The status is always sent, with the bits for `body_movement`, `cuff_loose`,
/// `irregular_pulse` and `improper_position`.
pub fn encode_measurement(
    systolic: Option<f64>,
    diastolic: Option<f64>,
    mean: Option<f64>,
    pulse_rate: Option<f64>,
    time: Option<DeviceTime>,
    flags: Flags,
) -> Vec<u8> {
    let mut head = STATUS;
    head |= if time.is_some() { TIMESTAMP } else { 0 };
    head |= if pulse_rate.is_some() { PULSE_RATE } else { 0 };
    let mut out = Vec::with_capacity(19);
    out.push(head);
    for v in [systolic, diastolic, mean] {
        out.extend_from_slice(&encode_sfloat(v, 1).to_le_bytes());
    }
    if time.is_some() {
        out.extend_from_slice(&encode_date_time(time));
    }
    if pulse_rate.is_some() {
        out.extend_from_slice(&encode_sfloat(pulse_rate, 1).to_le_bytes());
    }
    out.extend_from_slice(&encode_status(flags).to_le_bytes());
    out
}

/// An Intermediate Cuff Pressure value for the simulator: the pressure in mmHg with one
/// decimal, the unused diastolic and MAP slots NaN as the SIG says, and the status.
pub fn encode_cuff_pressure(pressure: f64, flags: Flags) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(STATUS);
    out.extend_from_slice(&encode_sfloat(Some(pressure), 1).to_le_bytes());
    out.extend_from_slice(&encode_sfloat(None, 0).to_le_bytes());
    out.extend_from_slice(&encode_sfloat(None, 0).to_le_bytes());
    out.extend_from_slice(&encode_status(flags).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoder run on one value.
    type DecodeFn = fn(&[u8]) -> (Vec<Measurement>, FeedReport);
    /// Systolic, diastolic, mean, pulse, time and flags for the encoder.
    type BpCase = (
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<DeviceTime>,
        Flags,
    );
    use crate::model::Invalid;
    use crate::protocol::testutil::XorShift;

    fn decode<D: Decoder + Default>(bytes: &[u8]) -> (Vec<Measurement>, FeedReport) {
        let mut out = Vec::new();
        let r = D::default().feed(bytes, &mut out);
        (out, r)
    }

    fn ok() -> FeedReport {
        FeedReport {
            frames: 1,
            ..FeedReport::default()
        }
    }

    /// A real A&D/Omron-style capture (devices.md §3 and warning 3): 127/79 mmHg, MAP NaN,
    /// 2020-01-20 08:43:00, PR 69, user 1, flags RFU b6-b7 and status RFU b7 set.
    const AND_CAPTURE: &str = "de f6f4 16f3 ff07 e407 01 14 08 2b 00 b2f2 01 8000";

    fn and_capture() -> Vec<u8> {
        hex::decode(AND_CAPTURE.replace(' ', "")).unwrap()
    }

    #[test]
    fn the_real_and_capture_gives_127_over_79_pulse_69_and_an_invalid_map() {
        let bytes = and_capture();
        let p = BpMeasurement::parse(&bytes).unwrap();
        assert_eq!(p.user, Some(1));
        assert_eq!(p.status, Some(0));
        assert!(!p.kpa);
        let (ms, r) = decode::<MeasurementDecoder>(&bytes);
        assert_eq!(r, ok());
        let t = Some(DeviceTime {
            year: 2020,
            month: 1,
            day: 20,
            hour: 8,
            minute: 43,
            second: 0,
        });
        assert_eq!(
            ms,
            vec![
                Measurement::new(Metric::NibpSys, 127.0, Flags::EMPTY).at(t),
                Measurement::new(Metric::NibpDia, 79.0, Flags::EMPTY).at(t),
                Measurement::invalid(Metric::NibpMean, Invalid::NoValue, Flags::EMPTY).at(t),
                Measurement::new(Metric::NibpPulse, 69.0, Flags::EMPTY).at(t),
            ]
        );
    }

    #[test]
    fn every_status_bit_maps_to_its_flag_and_the_pulse_range_is_kept() {
        // Constructed from the BLS status table (devices.md §3); the A&D capture's status
        // field rewritten.
        let table: [(u16, Flags, PulseRateRange); 8] = [
            (
                0x0001,
                Flags::EMPTY.with(Flag::BodyMovement),
                PulseRateRange::InRange,
            ),
            (
                0x0002,
                Flags::EMPTY.with(Flag::CuffLoose),
                PulseRateRange::InRange,
            ),
            (
                0x0004,
                Flags::EMPTY.with(Flag::IrregularPulse),
                PulseRateRange::InRange,
            ),
            (0x0008, Flags::EMPTY, PulseRateRange::AboveUpperLimit),
            (0x0010, Flags::EMPTY, PulseRateRange::BelowLowerLimit),
            (0x0018, Flags::EMPTY, PulseRateRange::Reserved),
            (
                0x0020,
                Flags::EMPTY.with(Flag::ImproperPosition),
                PulseRateRange::InRange,
            ),
            (0xFFC0, Flags::EMPTY, PulseRateRange::InRange), // RFU only
        ];
        for (status, flags, range) in table {
            let mut bytes = and_capture();
            let n = bytes.len();
            bytes[n - 2..].copy_from_slice(&status.to_le_bytes());
            let p = BpMeasurement::parse(&bytes).unwrap();
            assert_eq!(p.pulse_rate_range(), range, "{status:#06x}");
            let (ms, _) = decode::<MeasurementDecoder>(&bytes);
            assert!(ms.iter().all(|m| m.flags == flags), "{status:#06x}");
            assert_eq!(ms[0].value, Value::Valid(127.0));
        }
    }

    #[test]
    fn user_255_is_unknown_and_an_absent_user_is_none() {
        let mut bytes = and_capture();
        bytes[16] = 255;
        assert_eq!(BpMeasurement::parse(&bytes).unwrap().user, None);
        // Constructed: no optional fields at all.
        let p = BpMeasurement::parse(&[0x00, 0x78, 0x00, 0x50, 0x00, 0x5D, 0x00]).unwrap();
        assert_eq!(p.user, None);
        assert_eq!(p.pulse_rate, None);
        assert_eq!(p.time, None);
        assert_eq!(p.mean, Value::Valid(93.0));
    }

    #[test]
    fn kpa_values_are_converted_to_mmhg() {
        // Constructed: 16.0 kPa / 10.7 kPa / NaN, pulse 72 (not converted).
        let bytes = [0x05, 0xA0, 0xF0, 0x6B, 0xF0, 0xFF, 0x07, 0x48, 0x00];
        let (ms, r) = decode::<MeasurementDecoder>(&bytes);
        assert_eq!(r, ok());
        assert_eq!(ms[0].value, Value::Valid(120.0)); // 120.0091 rounded
        assert_eq!(ms[1].value, Value::Valid(80.3)); // 80.2566
        assert_eq!(ms[2].value, Value::Invalid(Invalid::NoValue));
        assert_eq!(ms[3].value, Value::Valid(72.0));
        assert!(BpMeasurement::parse(&bytes).unwrap().kpa);
    }

    #[test]
    fn sfloat_specials_and_negative_pressures_are_invalid_values() {
        // Constructed: sys +INF, dia NRes, MAP -12.
        let bytes = [0x00, 0xFE, 0x07, 0x00, 0x08, 0xF4, 0x0F];
        let (ms, _) = decode::<MeasurementDecoder>(&bytes);
        assert_eq!(ms[0].value, Value::Invalid(Invalid::PositiveInfinity));
        assert_eq!(ms[1].value, Value::Invalid(Invalid::NotAtResolution));
        assert_eq!(ms[2].value, Value::Invalid(Invalid::OutOfRange));
    }

    #[test]
    fn pressures_and_rates_outside_the_plausible_range_are_out_of_range() {
        // Issue 9: `decode --protocol bls-measurement 68da050d1883fe999fdfdc` gave nibp_sys
        // 1498. Flags 0x68 (user id, RFU b5-b6), sys 0x05DA = 1498, dia 0x180D = -2035e1,
        // MAP 0xFE83 = -38.1, user 0x99, trailing bytes ignored. Ranges from
        // `Metric::plausible_range` (pressures 0-300 mmHg, rates 0-350 /min).
        let table: [(&str, [Value; 3]); 2] = [
            (
                "68da050d1883fe999fdfdc",
                [Value::Invalid(Invalid::OutOfRange); 3],
            ),
            // Constructed: 300 / 0 / 301 mmHg.
            (
                "002c010000 2d01",
                [
                    Value::Valid(300.0),
                    Value::Valid(0.0),
                    Value::Invalid(Invalid::OutOfRange),
                ],
            ),
        ];
        for (hex, want) in table {
            let bytes = hex::decode(hex.replace(' ', "")).unwrap();
            let (ms, r) = decode::<MeasurementDecoder>(&bytes);
            assert_eq!(r, ok(), "{hex}");
            let got: Vec<Value> = ms.iter().map(|m| m.value).collect();
            assert_eq!(got, want, "{hex}");
        }
        // Pulse rate 351 /min (constructed: flags b2, sys 120, dia 80, MAP 90, PR 0x015F).
        let (ms, _) =
            decode::<MeasurementDecoder>(&[0x04, 0x78, 0x00, 0x50, 0x00, 0x5A, 0x00, 0x5F, 0x01]);
        assert_eq!(ms[3].metric, Metric::NibpPulse);
        assert_eq!(ms[3].value, Value::Invalid(Invalid::OutOfRange));
        // Cuff pressure 301 mmHg (constructed).
        let (ms, _) = decode::<CuffPressureDecoder>(&[0x00, 0x2D, 0x01, 0xFF, 0x07, 0xFF, 0x07]);
        assert_eq!(ms[0].value, Value::Invalid(Invalid::OutOfRange));
    }

    #[test]
    fn cuff_pressure_ignores_the_unused_slots_whatever_they_hold() {
        // Nordic's ICP tests fill the slots with 0x0000, the SIG with NaN (warning 2); a
        // constructed third variant holds numbers. All give the same single measurement.
        for slots in [
            [0x00, 0x00, 0x00, 0x00],
            [0xFF, 0x07, 0xFF, 0x07],
            [0x50, 0x00, 0x5D, 0x00],
        ] {
            let mut bytes = vec![0x10, 0x96, 0x00];
            bytes.extend_from_slice(&slots);
            bytes.extend_from_slice(&[0x01, 0x00]);
            let (ms, r) = decode::<CuffPressureDecoder>(&bytes);
            assert_eq!(r, ok());
            assert_eq!(
                ms,
                vec![Measurement::new(
                    Metric::CuffPressure,
                    150.0,
                    Flags::EMPTY
                        .with(Flag::MeasurementOngoing)
                        .with(Flag::BodyMovement)
                )]
            );
        }
    }

    #[test]
    fn the_feature_value_parses_and_masks_reserved_bits() {
        // Constructed: every defined bit plus RFU b9-b15.
        let f = Feature::parse(&[0xFF, 0xFF]).unwrap();
        assert_eq!(f.bits, 0x01FF);
        assert!(f.supports(FEATURE_CUFF_FIT) && f.supports(FEATURE_USER_FACING_TIME));
        assert!(Feature::parse(&[0x01]).is_err());
    }

    #[test]
    fn every_truncated_value_is_one_bad_frame() {
        let capture = and_capture();
        let icp = encode_cuff_pressure(150.0, Flags::EMPTY);
        let cases: [(&[u8], DecodeFn); 2] = [
            (&capture, decode::<MeasurementDecoder>),
            (&icp, decode::<CuffPressureDecoder>),
        ];
        for (v, dec) in cases {
            for n in 0..v.len() {
                let (ms, r) = dec(&v[..n]);
                assert!(ms.is_empty(), "cut to {n}");
                assert_eq!(r.bad_frames, 1, "cut to {n}");
                assert_eq!(r.frames, 0, "cut to {n}");
            }
        }
        assert_eq!(
            BpMeasurement::parse(&capture[..18])
                .unwrap_err()
                .to_string(),
            "blood pressure measurement value of 18 bytes is too short: expected at least 19 bytes (flags 0xde)"
        );
    }

    #[test]
    fn encoded_measurements_and_cuff_pressures_round_trip() {
        let t = Some(DeviceTime {
            year: 2025,
            month: 3,
            day: 4,
            hour: 5,
            minute: 6,
            second: 7,
        });
        let table: [BpCase; 4] = [
            (
                Some(127.0),
                Some(79.0),
                Some(95.0),
                Some(69.0),
                t,
                Flags::EMPTY,
            ),
            (
                Some(182.5),
                Some(101.0),
                None,
                None,
                None,
                Flags::EMPTY.with(Flag::IrregularPulse),
            ),
            (
                None,
                None,
                None,
                Some(80.0),
                t,
                Flags::EMPTY.with(Flag::CuffLoose).with(Flag::BodyMovement),
            ),
            (
                Some(300.0),
                Some(20.0),
                Some(113.3),
                Some(40.0),
                None,
                Flags::EMPTY.with(Flag::ImproperPosition),
            ),
        ];
        for (sys, dia, map, pr, time, flags) in table {
            let bytes = encode_measurement(sys, dia, map, pr, time, flags);
            let (ms, r) = decode::<MeasurementDecoder>(&bytes);
            assert_eq!(r, ok());
            let value = |v: Option<f64>| v.map_or(Value::Invalid(Invalid::NoValue), Value::Valid);
            let got: Vec<Value> = ms.iter().map(|m| m.value).collect();
            let mut want = vec![value(sys), value(dia), value(map)];
            want.extend(pr.map(Value::Valid));
            assert_eq!(got, want);
            assert!(ms.iter().all(|m| m.flags == flags && m.device_time == time));
        }
        let (ms, _) = decode::<CuffPressureDecoder>(&encode_cuff_pressure(
            187.4,
            Flags::EMPTY.with(Flag::LowBattery),
        ));
        assert_eq!(
            ms,
            vec![Measurement::new(
                Metric::CuffPressure,
                187.4,
                Flags::EMPTY.with(Flag::MeasurementOngoing)
            )]
        );
    }

    #[test]
    fn random_values_never_panic_and_never_give_negative_pressures() {
        let mut rng = XorShift(0xB1_5EED);
        let mut out = Vec::new();
        for _ in 0..50_000 {
            let len = rng.below(22);
            let mut v: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            if let Some(f) = v.first_mut() {
                *f &= 0x3F;
            }
            out.clear();
            let mut r = MeasurementDecoder.feed(&v, &mut out);
            r.absorb(CuffPressureDecoder.feed(&v, &mut out));
            assert_eq!(r.frames + r.bad_frames, 2);
            let _ = Feature::parse(&v);
            for m in &out {
                if let Value::Valid(x) = m.value {
                    assert!(x.is_finite() && x >= 0.0, "{m:?} from {v:?}");
                }
            }
        }
    }
}
