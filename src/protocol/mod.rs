//! Pure decoders: bytes from a device in, [`Measurement`]s out. No I/O, no tokio, no clock.
//!
//! Serial decoders are framer state machines over a byte stream ([`Decoder::feed`]): they
//! accept bytes in pieces of any size (a stream may start mid-frame, split a frame anywhere, or
//! carry garbage) and resynchronise on the protocol's own markers. Bluetooth LE is
//! message-oriented: most BLE decoders take one notification value per call (see
//! [`Decoder`]). Every decoder never panics on any input, masks reserved bits, and turns every
//! "no value" encoding into [`crate::model::Value::Invalid`] with the reason, never into a
//! number. Every number goes through [`Measurement::new`], which applies the metric's
//! plausible range ([`Metric::plausible_range`], one table for every decoder): outside it the
//! value is `out_of_range`, never a number. Facts and sources: ../shared/reference/devices.md.
//!
//! BLE: [`plx`] (Pulse Oximeter Service), [`bls`] (Blood Pressure Service), [`hrs`] (Heart
//! Rate), [`battery`] (Battery Service), [`berrymed`] (BerryMed BCI), [`nonin_ble`] (Nonin
//! Oximetry Service), [`viatom`] (Viatom/Wellue O2); IEEE 11073 numbers in [`sfloat`].
//!
//! Encoders for the same protocols live beside the decoders; the simulator speaks through them.

pub mod battery;
pub mod berrymed;
pub mod bls;
pub mod contec;
pub mod framing;
pub mod hrs;
pub mod masimo;
pub mod nonin;
pub mod nonin_ble;
pub mod plx;
pub mod sfloat;
pub mod suntech;
pub mod viatom;

use crate::model::{Flags, Invalid, Measurement, Metric, Value};
use thiserror::Error;

/// Names accepted by [`decoder_for`], `vitalsd decode --protocol` and device profiles.
pub const PROTOCOLS: &[&str] = &[
    "masimo-ascii",
    "nonin-format2",
    "suntech",
    "plx-spot-check",
    "plx-continuous",
    "plx-features",
    "bls-measurement",
    "bls-cuff-pressure",
    "hrs",
    "battery",
    "berrymed-bci",
    "nonin-ble",
    "viatom-o2",
    "contec-legacy",
    "contec-v7",
    "nonin-format7",
    "nonin-format8",
];

/// Readings per second a device speaking `protocol` can plausibly send, with room to spare
/// (the `max_rate` of a profile that names none; docs/configuration.md). Waveform protocols
/// send a pleth sample per frame (Nonin 75 frames/s, Contec 60, BerryMed 100), so up to a few
/// hundred readings a second; numeric ones (Masimo's 1 Hz line, a polled cuff, BLE spot checks)
/// a handful. A device that sends more than this is flooding: its source throttles it.
pub fn default_max_rate(protocol: &str) -> u32 {
    match protocol {
        "nonin-format2" | "nonin-format7" | "contec-legacy" | "contec-v7" | "berrymed-bci"
        | "plx-continuous" | "nonin-ble" | "viatom-o2" => 2_000,
        _ => 200,
    }
}

/// What a call to [`Decoder::feed`] saw, for device statistics and technical alarms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedReport {
    /// Complete, valid frames decoded.
    pub frames: u32,
    /// Bytes skipped while looking for the start of a frame (garbage, a stream joined mid-frame).
    pub skipped_bytes: u32,
    /// Frames that were complete but failed their checksum or structure and were discarded.
    pub bad_frames: u32,
}

impl FeedReport {
    /// Adds `other` into `self`.
    pub fn absorb(&mut self, other: FeedReport) {
        self.frames += other.frames;
        self.skipped_bytes += other.skipped_bytes;
        self.bad_frames += other.bad_frames;
    }
}

/// A stream decoder for one device connection.
///
/// Bluetooth LE is message-oriented: for every BLE protocol except `berrymed-bci` (a
/// transparent UART stream) and `viatom-o2` (whose responses span notifications), one call to
/// [`Decoder::feed`] is one notification (or read) value, parsed whole; a value that is too
/// short for what its flags announce is one bad frame and yields nothing.
pub trait Decoder: Send {
    /// Consumes `bytes` (any length, any split) and appends every measurement that they
    /// complete to `out`. Never panics; bad input shows in the report.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Measurement>) -> FeedReport;

    /// Forgets any partial frame, as after a reconnect.
    fn reset(&mut self);
}

/// A fresh decoder for a protocol name in [`PROTOCOLS`].
pub fn decoder_for(name: &str) -> Option<Box<dyn Decoder>> {
    match name {
        "masimo-ascii" => Some(Box::new(masimo::MasimoDecoder::default())),
        "nonin-format2" => Some(Box::new(nonin::NoninFormat2Decoder::default())),
        "suntech" => Some(Box::new(suntech::SuntechDecoder::default())),
        "plx-spot-check" => Some(Box::new(plx::SpotCheckDecoder)),
        "plx-continuous" => Some(Box::new(plx::ContinuousDecoder)),
        "plx-features" => Some(Box::new(plx::FeaturesDecoder)),
        "bls-measurement" => Some(Box::new(bls::MeasurementDecoder)),
        "bls-cuff-pressure" => Some(Box::new(bls::CuffPressureDecoder)),
        "hrs" => Some(Box::new(hrs::HeartRateDecoder)),
        "battery" => Some(Box::new(battery::BatteryDecoder)),
        "berrymed-bci" => Some(Box::new(berrymed::BciDecoder::default())),
        "nonin-ble" => Some(Box::new(nonin_ble::NoninBleDecoder)),
        "viatom-o2" => Some(Box::new(viatom::ViatomDecoder::default())),
        "contec-legacy" => Some(Box::new(contec::LegacyDecoder::default())),
        "contec-v7" => Some(Box::new(contec::V7Decoder::default())),
        "nonin-format7" => Some(Box::new(nonin::NoninFormat7Decoder::default())),
        "nonin-format8" => Some(Box::new(nonin::NoninFormat8Decoder::default())),
        _ => None,
    }
}

/// What the host must send to a serial device of `protocol` for it to keep streaming, if
/// anything (the SunTech module, which is polled, has its own dialogue in the source).
pub fn dialogue_for(protocol: &str) -> Option<contec::Dialogue> {
    (protocol == "contec-v7").then_some(contec::V7_DIALOGUE)
}

/// Why a BLE notification value could not be parsed. Each variant carries what was wrong.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PduError {
    /// The value is shorter than its flags (or its fixed layout) require.
    #[error(
        "{what} value of {len} bytes is too short: expected at least {need} bytes (flags {flags:#04x})"
    )]
    TooShort {
        /// Which characteristic, e.g. "plx continuous measurement".
        what: &'static str,
        /// The value's length.
        len: usize,
        /// The length its flags require.
        need: usize,
        /// The flags byte (0 when the value had none).
        flags: u8,
    },
    /// A length field inside the value disagrees with the value's length.
    #[error("{what} length byte says {declared} bytes but the value has {len}")]
    LengthMismatch {
        /// Which characteristic.
        what: &'static str,
        /// The length the value claims.
        declared: usize,
        /// The value's real length.
        len: usize,
    },
}

/// Runs a whole-notification parser for a message-oriented BLE decoder: one good value is
/// one frame, a value the parser rejects is one bad frame. Parsers push to `out` only after
/// the whole value has been checked.
pub(crate) fn feed_message(
    bytes: &[u8],
    out: &mut Vec<Measurement>,
    parse: impl FnOnce(&[u8], &mut Vec<Measurement>) -> Result<(), PduError>,
) -> FeedReport {
    match parse(bytes, out) {
        Ok(()) => FeedReport {
            frames: 1,
            ..FeedReport::default()
        },
        Err(_) => FeedReport {
            bad_frames: 1,
            ..FeedReport::default()
        },
    }
}

/// A measurement from a decoded value: a number through [`Measurement::new`] (which voids it
/// under a voiding flag and makes it `out_of_range` outside [`Metric::plausible_range`]), an
/// invalid value with its reason.
pub(crate) fn measurement(metric: Metric, value: Value, flags: Flags) -> Measurement {
    match value {
        Value::Valid(v) => Measurement::new(metric, v, flags),
        Value::Invalid(reason) => Measurement::invalid(metric, reason, flags),
    }
}

/// A measurement from a raw device number that has a "no value" code: `no_value` is
/// [`Invalid::NoValue`], any other number goes through [`Measurement::new`].
pub(crate) fn coded(metric: Metric, raw: u16, no_value: u16, flags: Flags) -> Measurement {
    if raw == no_value {
        Measurement::invalid(metric, Invalid::NoValue, flags)
    } else {
        Measurement::new(metric, f64::from(raw), flags)
    }
}

/// Why `vitalsd decode` could not decode what it was given. Each variant carries the bad input.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The protocol name is not one of [`PROTOCOLS`].
    #[error("unknown protocol {name:?}: expected one of {known}")]
    UnknownProtocol {
        /// The name as given.
        name: String,
        /// [`PROTOCOLS`], comma-separated.
        known: String,
    },
    /// A hex argument is not an even number of hex digits (spaces and colons allowed).
    #[error("argument {arg:?} is not hex bytes: {reason}")]
    BadHex {
        /// The argument as given.
        arg: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Decodes captured bytes given as hex arguments (for `vitalsd decode --protocol NAME HEX...`).
/// Arguments may separate bytes with spaces or colons (`3e:05:02:01:ba`, `"3E 05 02 01 BA"`);
/// all arguments form one stream, fed to a fresh decoder in one piece.
pub fn decode_hex(
    protocol: &str,
    hex: &[String],
) -> Result<(Vec<Measurement>, FeedReport), DecodeError> {
    let Some(mut decoder) = decoder_for(protocol) else {
        return Err(DecodeError::UnknownProtocol {
            name: protocol.to_owned(),
            known: PROTOCOLS.join(", "),
        });
    };
    let mut bytes = Vec::new();
    for arg in hex {
        let cleaned: String = arg
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect();
        let decoded = hex::decode(&cleaned).map_err(|e| DecodeError::BadHex {
            arg: arg.clone(),
            reason: e.to_string().to_lowercase(),
        })?;
        bytes.extend_from_slice(&decoded);
    }
    let mut out = Vec::new();
    let report = decoder.feed(&bytes, &mut out);
    Ok((out, report))
}

/// Helpers shared by the decoders' tests.
#[cfg(test)]
pub(crate) mod testutil {
    use super::{Decoder, FeedReport};
    use crate::model::Measurement;

    /// A tiny deterministic PRNG (xorshift64), so random tests repeat exactly.
    pub struct XorShift(pub u64);

    impl XorShift {
        /// The next 64 random bits.
        pub fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        /// A random number in `0..n` (n > 0).
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// A random byte.
        pub fn byte(&mut self) -> u8 {
            (self.next() >> 24) as u8
        }
    }

    /// Feeds `bytes` in one piece to a fresh decoder.
    pub fn feed_whole<D: Decoder + Default>(bytes: &[u8]) -> (Vec<Measurement>, FeedReport) {
        let mut d = D::default();
        let mut out = Vec::new();
        let r = d.feed(bytes, &mut out);
        (out, r)
    }

    /// Asserts that splitting `bytes` at every position gives what feeding it whole gives.
    pub fn assert_every_split_matches_whole<D: Decoder + Default>(bytes: &[u8]) {
        let whole = feed_whole::<D>(bytes);
        for k in 0..=bytes.len() {
            let mut d = D::default();
            let mut out = Vec::new();
            let mut r = d.feed(&bytes[..k], &mut out);
            r.absorb(d.feed(&bytes[k..], &mut out));
            assert_eq!((out, r), whole, "split at {k}");
        }
    }

    /// Feeds `bytes` in random chunk sizes (1..=max_chunk) and returns everything decoded.
    pub fn feed_random_chunks<D: Decoder + Default>(
        bytes: &[u8],
        rng: &mut XorShift,
        max_chunk: usize,
    ) -> (Vec<Measurement>, FeedReport) {
        let mut d = D::default();
        let mut out = Vec::new();
        let mut r = FeedReport::default();
        let mut i = 0;
        while i < bytes.len() {
            let n = (1 + rng.below(max_chunk)).min(bytes.len() - i);
            r.absorb(d.feed(&bytes[i..i + n], &mut out));
            i += n;
        }
        (out, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Metric, Value};

    #[test]
    fn an_unknown_protocol_is_named_with_the_known_ones() {
        let err = decode_hex("nonin", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"nonin\""), "{msg}");
        for p in PROTOCOLS {
            assert!(msg.contains(p), "{msg}");
        }
    }

    #[test]
    fn a_bad_hex_argument_is_named_in_the_error() {
        let args = vec!["3e 05".to_owned(), "0g".to_owned()];
        match decode_hex("suntech", &args).unwrap_err() {
            DecodeError::BadHex { arg, .. } => assert_eq!(arg, "0g"),
            other => panic!("unexpected {other:?}"),
        }
        let odd = vec!["3e0".to_owned()];
        assert!(matches!(
            decode_hex("suntech", &odd),
            Err(DecodeError::BadHex { .. })
        ));
    }

    #[test]
    fn every_protocol_name_has_a_decoder_and_the_ble_ones_decode_a_captured_value() {
        for p in PROTOCOLS {
            assert!(decoder_for(p).is_some(), "{p}");
        }
        // One value per protocol, as `vitalsd decode --protocol NAME HEX` takes it; sources
        // in each module's tests.
        let table: [(&str, &str, &[&str]); 10] = [
            (
                "bls-measurement",
                "de f6f4 16f3 ff07 e407 01 14 08 2b 00 b2f2 01 8000", // real A&D capture
                &["nibp_sys", "nibp_dia", "nibp_mean", "nibp_pulse"],
            ),
            (
                "bls-cuff-pressure",
                "10 9600 ff07 ff07 0000",
                &["cuff_pressure"],
            ),
            (
                "plx-continuous",
                "1c 5f00 5a00 2000 000000 57f0", // Spezi
                &["spo2", "pulse_rate", "perfusion_index"],
            ),
            (
                "plx-spot-check",
                "0f acf3 bef5 e8070b1d170839 2040 220000 66e3", // Spezi
                &["spo2", "pulse_rate", "perfusion_index"],
            ),
            ("plx-features", "a3 00 4010 800100", &[]), // Spezi
            ("hrs", "06 48", &["heart_rate"]),
            ("battery", "64", &["battery"]),
            (
                "berrymed-bci",
                "88 32 06 48 61",
                &["pleth", "pulse_rate", "spo2"],
            ),
            (
                "nonin-ble",
                "0a 11 1e 0125 012c 61 012c",
                &["spo2", "pulse_rate", "perfusion_index"],
            ),
            (
                "viatom-o2",
                "5500ff 0000 0d00 624200000000006100920a0100 2f", // o2r capture, CRC added
                &["spo2", "pulse_rate", "battery"],
            ),
        ];
        for (protocol, hex, metrics) in table {
            let (ms, report) = decode_hex(protocol, &[hex.to_owned()]).unwrap();
            assert_eq!(
                report,
                FeedReport {
                    frames: 1,
                    ..FeedReport::default()
                },
                "{protocol}"
            );
            let names: Vec<&str> = ms.iter().map(|m| m.metric.name()).collect();
            assert_eq!(names, *metrics, "{protocol}");
        }
    }

    #[test]
    fn hex_with_spaces_and_colons_across_arguments_decodes_as_one_stream() {
        // DesktopFX NIBPConverterTest: cuff pressure 258 mmHg, split over two arguments.
        let args = vec!["3e:05".to_owned(), "02 01 BA".to_owned()];
        let (ms, report) = decode_hex("suntech", &args).unwrap();
        assert_eq!(report.frames, 1);
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].metric, Metric::CuffPressure);
        assert_eq!(ms[0].value, Value::Valid(258.0));
    }
}
