//! PLACEHOLDER: replaced by the protocol work.
use super::{Decoder, FeedReport};
use crate::model::Measurement;

#[derive(Debug, Default)]
pub struct MasimoDecoder;

impl Decoder for MasimoDecoder {
    fn feed(&mut self, _bytes: &[u8], _out: &mut Vec<Measurement>) -> FeedReport {
        FeedReport::default()
    }
    fn reset(&mut self) {}
}
