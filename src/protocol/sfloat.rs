//! IEEE 11073-20601 numbers as Bluetooth SIG characteristics carry them: SFLOAT (16 bit),
//! FLOAT (32 bit) and the 7-byte Date Time, plus a little-endian field reader for the
//! message-oriented BLE decoders.
//!
//! Facts: ../shared/reference/devices.md §1 (HL7 PHD IG "MDER FLOATs and SFLOATs" table;
//! Nordic Android-BLE-Library `Data.getFloatValue`). The exponent is a 4-bit (SFLOAT) or
//! 8-bit (FLOAT) **two's complement** number; the special values exist only with exponent 0
//! and are matched on the whole raw word before any arithmetic.

use crate::model::{DeviceTime, Invalid, Value};

/// SFLOAT NaN (invalid result).
pub const SFLOAT_NAN: u16 = 0x07FF;
/// SFLOAT NRes (not at this resolution).
pub const SFLOAT_NRES: u16 = 0x0800;
/// SFLOAT +INFINITY.
pub const SFLOAT_POS_INF: u16 = 0x07FE;
/// SFLOAT -INFINITY.
pub const SFLOAT_NEG_INF: u16 = 0x0802;
/// SFLOAT reserved for future use.
pub const SFLOAT_RESERVED: u16 = 0x0801;

/// Largest ordinary SFLOAT mantissa (Nordic `SFLOAT_MANTISSA_MAX`); 0x7FE and 0x7FF are specials.
const SFLOAT_MANTISSA_MAX: i32 = 0x07FD;
/// Smallest ordinary SFLOAT mantissa; -2048 (0x800) and -2047 (0x801) and -2046 (0x802)
/// with exponent 0 are specials, so the encoder stays at or above -2045.
const SFLOAT_MANTISSA_MIN: i32 = -0x07FD;

/// Scales an integer mantissa by a power of ten. A negative exponent divides by an exact
/// power of ten, so `1270e-1` is exactly `127.0` and `87e-1` is the double nearest `8.7`.
fn scale(mantissa: i32, exponent: i32) -> f64 {
    let m = f64::from(mantissa);
    if exponent < 0 {
        m / 10f64.powi(-exponent)
    } else {
        m * 10f64.powi(exponent)
    }
}

/// Decodes a raw SFLOAT word (already assembled from its little-endian bytes).
pub fn sfloat(raw: u16) -> Value {
    match raw {
        SFLOAT_NAN => Value::Invalid(Invalid::NoValue),
        SFLOAT_NRES => Value::Invalid(Invalid::NotAtResolution),
        SFLOAT_POS_INF => Value::Invalid(Invalid::PositiveInfinity),
        SFLOAT_NEG_INF => Value::Invalid(Invalid::NegativeInfinity),
        SFLOAT_RESERVED => Value::Invalid(Invalid::Reserved),
        _ => {
            // Sign-extend the 12-bit mantissa and the 4-bit exponent.
            let mantissa = i32::from(((raw << 4) as i16) >> 4);
            let exponent = i32::from((raw as i16) >> 12);
            Value::Valid(scale(mantissa, exponent))
        }
    }
}

/// Decodes a raw FLOAT word (already assembled from its little-endian bytes).
pub fn float32(raw: u32) -> Value {
    match raw {
        0x007F_FFFF => Value::Invalid(Invalid::NoValue),
        0x0080_0000 => Value::Invalid(Invalid::NotAtResolution),
        0x007F_FFFE => Value::Invalid(Invalid::PositiveInfinity),
        0x0080_0002 => Value::Invalid(Invalid::NegativeInfinity),
        0x0080_0001 => Value::Invalid(Invalid::Reserved),
        _ => {
            let mantissa = ((raw << 8) as i32) >> 8;
            let exponent = i32::from((raw >> 24) as u8 as i8);
            Value::Valid(scale(mantissa, exponent))
        }
    }
}

/// Encodes `value` as an SFLOAT with `decimals` digits after the point (exponent
/// `-decimals`), rounding; `None` or a non-finite number gives NaN. When the mantissa does
/// not fit in 12 bits the encoder gives up precision (a larger exponent) until it does.
pub fn encode_sfloat(value: Option<f64>, decimals: u8) -> u16 {
    let Some(v) = value.filter(|v| v.is_finite()) else {
        return SFLOAT_NAN;
    };
    let mut exponent = -i32::from(decimals.min(8));
    while exponent <= 7 {
        let m = if exponent < 0 {
            (v * 10f64.powi(-exponent)).round()
        } else {
            (v / 10f64.powi(exponent)).round()
        };
        if (f64::from(SFLOAT_MANTISSA_MIN)..=f64::from(SFLOAT_MANTISSA_MAX)).contains(&m) {
            let m = m as i32;
            return (((exponent & 0x0F) as u16) << 12) | ((m & 0x0FFF) as u16);
        }
        exponent += 1;
    }
    SFLOAT_NAN
}

/// Decodes a 7-byte Date Time (year uint16 LE, month, day, hours, minutes, seconds).
/// `None` when the device says "not known" (year, month or day 0) or a field is out of range.
pub fn date_time(b: [u8; 7]) -> Option<DeviceTime> {
    let t = DeviceTime {
        year: u16::from_le_bytes([b[0], b[1]]),
        month: b[2],
        day: b[3],
        hour: b[4],
        minute: b[5],
        second: b[6],
    };
    let known = t.year != 0 && t.month != 0 && t.day != 0;
    let in_range = (1582..=9999).contains(&t.year)
        && t.month <= 12
        && t.day <= 31
        && t.hour <= 23
        && t.minute <= 59
        && t.second <= 59;
    (known && in_range).then_some(t)
}

/// Encodes a Date Time; `None` gives the all-zero "not known" value.
pub fn encode_date_time(t: Option<DeviceTime>) -> [u8; 7] {
    let Some(t) = t else { return [0; 7] };
    let [y0, y1] = t.year.to_le_bytes();
    [y0, y1, t.month, t.day, t.hour, t.minute, t.second]
}

/// Reads little-endian fields off the front of a notification value; every read returns
/// `None` past the end instead of panicking.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    /// What is left to read.
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// The next `N` bytes.
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.rest.split_first_chunk::<N>()?;
        self.rest = tail;
        Some(*head)
    }

    /// A uint8.
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    /// A uint16, little-endian.
    pub(crate) fn u16_le(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    /// A uint24, little-endian.
    pub(crate) fn u24_le(&mut self) -> Option<u32> {
        self.array::<3>()
            .map(|[a, b, c]| u32::from_le_bytes([a, b, c, 0]))
    }

    /// An SFLOAT, little-endian.
    pub(crate) fn sfloat(&mut self) -> Option<Value> {
        self.u16_le().map(sfloat)
    }

    /// A Date Time; the outer `None` means the bytes are missing, the inner one "not known".
    pub(crate) fn date_time(&mut self) -> Option<Option<DeviceTime>> {
        self.array().map(date_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testutil::XorShift;

    #[test]
    fn sfloat_vectors_from_nordic_and_the_hl7_table_decode() {
        let table: [(u16, f64, &str); 11] = [
            (0xF065, 10.1, "Nordic DataTest: `65 f0` = 10.1"),
            (0x0002, 2.0, "HL7 PHD table"),
            (0xF014, 2.0, "HL7 PHD table: 20e-1"),
            (0xE0C8, 2.0, "HL7 PHD table: 200e-2"),
            (0x1002, 20.0, "HL7 PHD table"),
            (0x2002, 200.0, "HL7 PHD table"),
            (0x00C8, 200.0, "HL7 PHD table"),
            (0x04D2, 1234.0, "HL7 PHD table"),
            (0x0B2E, -1234.0, "HL7 PHD table"),
            (0xF3E8, 100.0, "Spezi PLXTests: `e8 f3` = 100 %"),
            (
                0xF7FF,
                204.7,
                "devices.md §1 (constructed): exponent -1, mantissa 2047",
            ),
        ];
        for (raw, want, src) in table {
            assert_eq!(sfloat(raw), Value::Valid(want), "{raw:#06x} ({src})");
        }
    }

    #[test]
    fn offset_binary_exponents_are_not_used() {
        // devices.md warning 1: bluetooth-sig-python claims 0x700A = 1.0 and `62 80` = 98 %;
        // a two's complement decoder gives 1e8 and 98e-8.
        assert_eq!(sfloat(0x700A), Value::Valid(1e8));
        assert_eq!(sfloat(0x8062), Value::Valid(98e-8));
    }

    #[test]
    fn sfloat_specials_map_to_their_invalid_reasons() {
        let table = [
            (0x07FF, Invalid::NoValue),
            (0x0800, Invalid::NotAtResolution),
            (0x07FE, Invalid::PositiveInfinity),
            (0x0802, Invalid::NegativeInfinity),
            (0x0801, Invalid::Reserved),
        ];
        for (raw, reason) in table {
            assert_eq!(sfloat(raw), Value::Invalid(reason), "{raw:#06x}");
        }
    }

    #[test]
    fn float_vectors_from_nordic_and_the_hl7_table_decode() {
        let table: [(u32, f64, &str); 6] = [
            (
                u32::from_le_bytes([0x87, 0xD6, 0x12, 0xFE]),
                12345.67,
                "Nordic DataTest",
            ),
            (u32::from_le_bytes([1, 0, 0, 0]), 1.0, "Nordic DataTest"),
            (0xFF00_0014, 2.0, "HL7 PHD table"),
            (0xFE00_00C8, 2.0, "HL7 PHD table"),
            (0x0100_0002, 20.0, "HL7 PHD table (devices.md warning 7)"),
            (0x00FF_FB2E, -1234.0, "HL7 PHD table"),
        ];
        for (raw, want, src) in table {
            assert_eq!(float32(raw), Value::Valid(want), "{raw:#010x} ({src})");
        }
        let specials = [
            (0x007F_FFFF, Invalid::NoValue),
            (0x0080_0000, Invalid::NotAtResolution),
            (0x007F_FFFE, Invalid::PositiveInfinity),
            (0x0080_0002, Invalid::NegativeInfinity),
            (0x0080_0001, Invalid::Reserved),
        ];
        for (raw, reason) in specials {
            assert_eq!(float32(raw), Value::Invalid(reason), "{raw:#010x}");
        }
    }

    #[test]
    fn the_encoder_round_trips_and_gives_up_precision_to_fit() {
        let table: [(Option<f64>, u8, u16); 7] = [
            (Some(100.0), 1, 0xF3E8), // Spezi's encoding of 100 %
            (Some(90.0), 1, 0xF384),  // Spezi: `84 f3`
            (Some(8.7), 1, 0xF057),   // Spezi: PAI `57 f0`
            (Some(127.0), 0, 0x007F),
            (Some(300.0), 1, 0x012C), // 3000 does not fit: exponent 0
            (None, 0, SFLOAT_NAN),
            (Some(f64::NAN), 2, SFLOAT_NAN),
        ];
        for (v, decimals, raw) in table {
            assert_eq!(encode_sfloat(v, decimals), raw, "{v:?}");
        }
        let mut rng = XorShift(7);
        for _ in 0..10_000 {
            let v = (rng.below(400_000) as f64 - 200_000.0) / 100.0;
            let raw = encode_sfloat(Some(v), 2);
            let Value::Valid(back) = sfloat(raw) else {
                panic!("{v} encoded as special {raw:#06x}");
            };
            let step = 10f64.powi(i32::from((raw as i16) >> 12));
            assert!((back - v).abs() <= step / 2.0 + 1e-9, "{v} -> {back}");
        }
    }

    #[test]
    fn date_time_decodes_and_unknown_fields_give_none() {
        // Spezi PLXTests spot-check timestamp: 2024-11-29 23:08:57.
        let t = date_time([0xE8, 0x07, 11, 29, 23, 8, 57]).unwrap();
        assert_eq!(t.to_string(), "2024-11-29T23:08:57");
        assert_eq!(encode_date_time(Some(t)), [0xE8, 0x07, 11, 29, 23, 8, 57]);
        for bad in [
            [0, 0, 11, 29, 23, 8, 57],       // year not known
            [0xE8, 0x07, 0, 29, 23, 8, 57],  // month not known
            [0xE8, 0x07, 11, 0, 23, 8, 57],  // day not known
            [0xE8, 0x07, 13, 29, 23, 8, 57], // month 13
            [0xE8, 0x07, 11, 29, 24, 8, 57], // hour 24
        ] {
            assert_eq!(date_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_reader_returns_none_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16_le(), Some(0x0201));
        assert_eq!(r.u16_le(), None);
        assert_eq!(r.u8(), Some(3));
        assert_eq!(r.u8(), None);
        assert_eq!(r.date_time(), None);
    }
}
