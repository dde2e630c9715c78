//! Counters of an outbound link (an HL7 endpoint, src/hl7): plain atomics that its sender
//! writes and anyone reads without a lock: the hub's `hl7_down` watchdog, and a metrics
//! exporter (queue depth, failures).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One link's state and counters.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// The endpoint's name (`[[hl7]] name`).
    pub name: String,
    /// The link delivers: connected, and its last message (if any) was accepted.
    pub up: AtomicBool,
    /// Messages waiting for their ACK (queue depth), in the store's outbox.
    pub queued: AtomicU64,
    /// Messages accepted (AA/CA).
    pub sent: AtomicU64,
    /// Failed attempts: no connection, a connection lost, no ACK in time, an AR.
    pub failures: AtomicU64,
    /// Messages given up after repeated AE (application error) answers.
    pub rejected: AtomicU64,
}

impl LinkStats {
    /// A link, down until its sender says otherwise.
    pub fn new(name: &str) -> LinkStats {
        LinkStats {
            name: name.to_owned(),
            ..LinkStats::default()
        }
    }

    /// Whether it is up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}
