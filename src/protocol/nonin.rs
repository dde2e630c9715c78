//! PLACEHOLDER: replaced by the protocol work.
use super::{Decoder, FeedReport};
use crate::model::Measurement;

#[derive(Debug, Default)]
pub struct NoninFormat2Decoder;

impl Decoder for NoninFormat2Decoder {
    fn feed(&mut self, _bytes: &[u8], _out: &mut Vec<Measurement>) -> FeedReport {
        FeedReport::default()
    }
    fn reset(&mut self) {}
}
