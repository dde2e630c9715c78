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
    /// Its place among the states the hub has taken (higher is newer; one counter for all
    /// beds, taken under the bed's lock); 0 for a state read back from the store.
    pub rev: u64,
}

/// Saved states on their way to the store, the newest per bed. While the queues to the store
/// are backed up a bed's states coalesce here (the newest wins), so what waits is bounded by
/// the number of beds, not by the number of alarm events. A notice naming the bed is in flight
/// to the store whenever the bed has an entry.
#[derive(Debug, Default)]
pub struct PendingStates(std::sync::Mutex<std::collections::HashMap<String, StoredState>>);

impl PendingStates {
    /// Keeps `st` as its bed's newest pending state (an older one is replaced). True when the
    /// bed had none pending: the caller then sends the one notice for it.
    pub fn put(&self, st: StoredState) -> bool {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match m.get_mut(&st.bed) {
            Some(old) => {
                if st.rev >= old.rev {
                    *old = st;
                }
                false
            }
            None => {
                m.insert(st.bed.clone(), st);
                true
            }
        }
    }

    /// Takes the bed's newest pending state (the notice for it has arrived).
    pub fn take(&self, bed: &str) -> Option<StoredState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(bed)
    }

    /// Beds with a state pending.
    pub fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// No bed has a state pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
