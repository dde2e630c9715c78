//! A bed's saved alarm state, as the hub publishes it after a bed's events and the store keeps
//! it (a row of `alarm_state`), restored at start before the first device byte is read.

/// One bed's saved alarm state: what the alarm system knows about the bed, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredState {
    /// The bed, e.g. `room1/A`.
    pub bed: String,
    /// When the state was taken, wall ms.
    pub at_ms: i64,
    /// The state (the hub's format; see `docs/storage.md`).
    pub json: String,
}
