//! Bluetooth SIG Battery Service 0x180F, Battery Level 0x2A19 (read and notify): one uint8,
//! percent. One [`Decoder::feed`] call is one value; bytes after the first are ignored.
//!
//! Facts: ../shared/reference/devices.md §2.6 and §5.1 (BerryMed and PLX devices report
//! their battery here). A level above 100 is `out_of_range`, never shown. Low-battery
//! technical alarms come from the alarm engine's view of the `battery` metric.

use super::{Decoder, FeedReport, PduError, feed_message};
use crate::model::{Flags, Measurement, Metric};

/// Parses a Battery Level value into the percentage.
pub fn parse(bytes: &[u8]) -> Result<u8, PduError> {
    bytes.first().copied().ok_or(PduError::TooShort {
        what: "battery level",
        len: 0,
        need: 1,
        flags: 0,
    })
}

/// Decoder for `battery`: one value per feed, giving `battery`.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatteryDecoder;

impl Decoder for BatteryDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport {
        feed_message(bytes, out, |b, out| {
            let level = parse(b)?;
            out.push(Measurement::new(
                Metric::Battery,
                f64::from(level),
                Flags::EMPTY,
            ));
            Ok(())
        })
    }

    fn reset(&mut self) {}
}

/// A Battery Level value for the simulator (clamped to 100 %).
pub fn encode(percent: u8) -> [u8; 1] {
    [percent.min(100)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Invalid, Value};

    fn decode(bytes: &[u8]) -> (Vec<Measurement>, FeedReport) {
        let mut out = Vec::new();
        let r = BatteryDecoder.feed(bytes, &mut out);
        (out, r)
    }

    #[test]
    fn battery_levels_decode_and_impossible_ones_are_out_of_range() {
        // Constructed from the SIG definition (uint8, 0-100 %).
        let table: [(&[u8], Option<Value>); 6] = [
            (&[0x64], Some(Value::Valid(100.0))),
            (&[0x00], Some(Value::Valid(0.0))),
            (&[0x2A, 0xFF], Some(Value::Valid(42.0))),
            (&[0x65], Some(Value::Invalid(Invalid::OutOfRange))),
            (&[0xFF], Some(Value::Invalid(Invalid::OutOfRange))),
            (&[], None),
        ];
        for (bytes, want) in table {
            let (ms, r) = decode(bytes);
            assert_eq!(ms.first().map(|m| m.value), want, "{bytes:?}");
            assert_eq!(r.frames + r.bad_frames, 1);
            assert_eq!(r.bad_frames, u32::from(want.is_none()));
        }
    }

    #[test]
    fn encoded_levels_round_trip() {
        for p in [0u8, 1, 57, 100] {
            assert_eq!(decode(&encode(p)).0[0].value, Value::Valid(f64::from(p)));
        }
        assert_eq!(encode(150), [100]);
    }
}
