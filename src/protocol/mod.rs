//! Pure decoders: bytes from a device in, [`Measurement`]s out. No I/O, no tokio, no clock.
//!
//! Every decoder is a framer state machine over a byte stream ([`Decoder::feed`]): it accepts
//! bytes in pieces of any size (a stream may start mid-frame, split a frame anywhere, or carry
//! garbage), resynchronises on the protocol's own markers, never panics on any input, masks
//! reserved bits, and turns every "no value" encoding into [`crate::model::Value::Invalid`] with
//! the reason, never into a number. Facts and sources: ../shared/reference/devices.md.
//!
//! Encoders for the same protocols live beside the decoders; the simulator speaks through them.

pub mod masimo;
pub mod nonin;
pub mod suntech;

use crate::model::Measurement;
use thiserror::Error;

/// Names accepted by [`decoder_for`], `vitalsd decode --protocol` and device profiles.
pub const PROTOCOLS: &[&str] = &["masimo-ascii", "nonin-format2", "suntech"];

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
        _ => None,
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
