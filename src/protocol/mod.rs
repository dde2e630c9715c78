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
