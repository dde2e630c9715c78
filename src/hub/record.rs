//! What the hub hands to the durable record, defined here so that the hub names no stage
//! below it: the store implements [`Recorder`] and `crate::app` wires it in
//! ([`super::Hub::set_recorder`]). Alarm events and bed states go the other way round too:
//! the hub publishes them on its [`super::Dispatch`] channel, which the store consumes.

use crate::model::Observation;

/// The durable record, as the hub sees it.
pub trait Recorder: Send + Sync {
    /// Takes the readings of one device read, in order. Never blocks: a push into the
    /// record's bounded buffer.
    fn readings(&self, obs: &[Observation]);
    /// The record can be written now (no failed write, nothing dropped): keeps
    /// `store_unwritable` away.
    fn writable(&self) -> bool;
}
