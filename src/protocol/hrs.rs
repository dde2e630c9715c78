//! Bluetooth SIG Heart Rate Service 0x180D, Heart Rate Measurement 0x2A37 (notifications).
//! One [`Decoder::feed`] call is one notification value.
//!
//! Facts: ../shared/reference/devices.md §4 (SIG XML via oesmith/gatt-xml, Nordic
//! `HeartRateMeasurementDataCallback`). Flags b0 selects a uint8 or uint16 heart rate; b1-b2
//! sensor contact (0/1 not supported, 2 supported but not detected, 3 detected); b3 energy
//! expended (uint16) present; b4 RR intervals present; b5-b7 reserved and masked.
//!
//! Emits `heart_rate`; "contact not detected" adds `sensor_off`, which voids the number. The
//! energy expended and the RR intervals are checked for length (at least one RR interval when
//! b4 is set) but not emitted: the dashboard shows rates, and the oximeters' pulse rate and
//! the cuff's pulse are the clinical numbers here.

use super::{Decoder, FeedReport, PduError, feed_message};
use crate::model::{Flag, Flags, Measurement, Metric};

/// Flags b0: heart rate is a uint16 (else uint8).
const HR_U16: u8 = 0x01;
/// Flags b1-b2: sensor contact status.
const CONTACT_MASK: u8 = 0x06;
/// Sensor contact "supported but not detected".
const CONTACT_NOT_DETECTED: u8 = 0x04;
/// Sensor contact "supported and detected".
const CONTACT_DETECTED: u8 = 0x06;
/// Flags b3: energy expended present.
const ENERGY: u8 = 0x08;
/// Flags b4: RR intervals present.
const RR: u8 = 0x10;

/// A parsed Heart Rate Measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartRate {
    /// Heart rate, /min.
    pub bpm: u16,
    /// Sensor contact: `None` when the sensor does not support detecting it.
    pub contact: Option<bool>,
}

impl HeartRate {
    /// Parses one notification value.
    pub fn parse(bytes: &[u8]) -> Result<HeartRate, PduError> {
        let flags = bytes.first().copied().unwrap_or(0);
        let hr_len = if flags & HR_U16 != 0 { 2 } else { 1 };
        let need = 1
            + hr_len
            + if flags & ENERGY != 0 { 2 } else { 0 }
            + if flags & RR != 0 { 2 } else { 0 };
        if bytes.len() < need {
            return Err(PduError::TooShort {
                what: "heart rate measurement",
                len: bytes.len(),
                need,
                flags,
            });
        }
        let bpm = match bytes {
            [_, lo, hi, ..] if hr_len == 2 => u16::from_le_bytes([*lo, *hi]),
            [_, b, ..] => u16::from(*b),
            _ => 0, // unreachable: the length was checked above
        };
        let contact = match flags & CONTACT_MASK {
            CONTACT_NOT_DETECTED => Some(false),
            CONTACT_DETECTED => Some(true),
            _ => None,
        };
        Ok(HeartRate { bpm, contact })
    }

    /// The measurement: `heart_rate`, voided with `sensor_off` when contact is not detected.
    pub fn measurement(&self) -> Measurement {
        let mut flags = Flags::EMPTY;
        flags.set_if(Flag::SensorOff, self.contact == Some(false));
        Measurement::new(Metric::HeartRate, f64::from(self.bpm), flags)
    }
}

/// Decoder for `hrs`: one notification value per feed.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeartRateDecoder;

impl Decoder for HeartRateDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        feed_message(bytes, out, |b, out| {
            out.push(HeartRate::parse(b)?.measurement());
            Ok(())
        })
    }

    fn reset(&mut self) {}
}

/// A Heart Rate Measurement value for the simulator: uint8 when the rate fits, else uint16
/// (rounded, clamped to 0..=65535); `contact` `None` sends "not supported".
pub fn encode(heart_rate: f64, contact: Option<bool>) -> Vec<u8> {
    let bpm = heart_rate.round().clamp(0.0, f64::from(u16::MAX)) as u16;
    let contact_bits = match contact {
        None => 0,
        Some(false) => CONTACT_NOT_DETECTED,
        Some(true) => CONTACT_DETECTED,
    };
    match u8::try_from(bpm) {
        Ok(b) => vec![contact_bits, b],
        Err(_) => {
            let [lo, hi] = bpm.to_le_bytes();
            vec![contact_bits | HR_U16, lo, hi]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Invalid, Value};
    use crate::protocol::testutil::XorShift;

    fn decode(bytes: &[u8]) -> (Vec<Measurement>, FeedReport) {
        let mut out = Vec::new();
        let r = HeartRateDecoder.feed(bytes, &mut out);
        (out, r)
    }

    #[test]
    fn heart_rate_vectors_decode_with_their_contact_status() {
        // Constructed from the SIG layout (devices.md §4).
        let table: [(&[u8], Value, Flags, &str); 8] = [
            (
                &[0x00, 72],
                Value::Valid(72.0),
                Flags::EMPTY,
                "uint8, contact not supported",
            ),
            (
                &[0x02, 72],
                Value::Valid(72.0),
                Flags::EMPTY,
                "contact value 1: not supported",
            ),
            (
                &[0x06, 80],
                Value::Valid(80.0),
                Flags::EMPTY,
                "contact detected",
            ),
            (
                &[0x04, 80],
                Value::Invalid(Invalid::DeviceFlagged),
                Flags::EMPTY.with(Flag::SensorOff),
                "contact 0b10: not detected",
            ),
            (
                &[0x01, 0x2C, 0x01],
                Value::Valid(300.0),
                Flags::EMPTY,
                "uint16 300",
            ),
            (
                &[0x08, 60, 0x10, 0x00],
                Value::Valid(60.0),
                Flags::EMPTY,
                "energy expended",
            ),
            (
                &[0x16, 64, 0x00, 0x04, 0x10, 0x04],
                Value::Valid(64.0),
                Flags::EMPTY,
                "RR intervals 1.0 s and 1.016 s, ignored",
            ),
            (
                &[0xE0, 55],
                Value::Valid(55.0),
                Flags::EMPTY,
                "RFU b5-b7 masked",
            ),
        ];
        for (bytes, value, flags, what) in table {
            let (ms, r) = decode(bytes);
            assert_eq!(r.frames, 1, "{what}");
            assert_eq!(ms.len(), 1, "{what}");
            assert_eq!(ms[0].metric, Metric::HeartRate);
            assert_eq!((ms[0].value, ms[0].flags), (value, flags), "{what}");
        }
    }

    #[test]
    fn heart_rates_outside_the_plausible_range_are_out_of_range_and_255_is_a_value() {
        // The SIG Heart Rate Measurement has no "no value" encoding (devices.md §4), so a uint8
        // 255 is a heart rate of 255 /min: inside the 0-350 /min range of
        // `Metric::plausible_range`, shown. A uint16 carries numbers no heart makes.
        let table: [(&[u8], Value, &str); 5] = [
            (&[0x00, 0xFF], Value::Valid(255.0), "uint8 255, constructed"),
            (
                &[0x01, 0x5E, 0x01],
                Value::Valid(350.0),
                "uint16 350, constructed",
            ),
            (
                &[0x01, 0x5F, 0x01],
                Value::Invalid(Invalid::OutOfRange),
                "uint16 351, constructed",
            ),
            (
                &[0x83, 0x74, 0xD9],
                Value::Invalid(Invalid::OutOfRange),
                "issue 9: `decode --protocol hrs 8374d9` gave heart_rate 55668",
            ),
            (
                &[0x01, 0xFF, 0xFF],
                Value::Invalid(Invalid::OutOfRange),
                "uint16 65535, constructed",
            ),
        ];
        for (bytes, value, what) in table {
            let (ms, r) = decode(bytes);
            assert_eq!((r.frames, r.bad_frames), (1, 0), "{what}");
            assert_eq!(ms.len(), 1, "{what}");
            assert_eq!(ms[0].value, value, "{what}");
        }
    }

    #[test]
    fn truncated_values_are_bad_frames() {
        // Each one byte short of what its flags announce.
        for bytes in [
            &[][..],
            &[0x00],
            &[0x01, 0x2C],
            &[0x08, 60, 0x10],
            &[0x10, 64, 0x00],
        ] {
            let (ms, r) = decode(bytes);
            assert!(ms.is_empty(), "{bytes:?}");
            assert_eq!((r.frames, r.bad_frames), (0, 1), "{bytes:?}");
        }
    }

    #[test]
    fn encoded_values_round_trip() {
        for (hr, contact) in [
            (72.0, None),
            (71.6, Some(true)),
            (300.0, Some(true)),
            (0.0, None),
        ] {
            let (ms, _) = decode(&encode(hr, contact));
            assert_eq!(
                ms,
                vec![Measurement::new(
                    Metric::HeartRate,
                    hr.round(),
                    Flags::EMPTY
                )]
            );
        }
        let (ms, _) = decode(&encode(72.0, Some(false)));
        assert!(ms[0].flags.contains(Flag::SensorOff));
        assert_eq!(ms[0].value, Value::Invalid(Invalid::DeviceFlagged));
    }

    #[test]
    fn random_values_never_panic() {
        let mut rng = XorShift(0x4852);
        let mut out = Vec::new();
        for _ in 0..50_000 {
            let v: Vec<u8> = (0..rng.below(12)).map(|_| rng.byte()).collect();
            let r = HeartRateDecoder.feed(&v, &mut out);
            assert_eq!(r.frames + r.bad_frames, 1);
        }
    }
}
