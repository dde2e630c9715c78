//! Counters of the overload defences, in plain atomics: what each device's throttle dropped
//! and whether it is flooding (`sources::throttle`), and the notification queue's depth and
//! what it coalesced or dropped (`notify::inbox`), and the depth of the alarm-event queue from the
//! hub to the store and the notifier (`hub::dispatch`). Written on the hot path without a lock; read by
//! `/healthz` (and by a metrics exporter later). The store keeps its own counters
//! (`store::StoreHealth`).

use crate::config::Config;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// One device's throttle.
#[derive(Debug, Default)]
pub struct DeviceLoad {
    /// Readings decoded from this device and not passed on (its throttle kept only the newest
    /// reading of each metric of a read while it was over its `max_rate`).
    pub throttled: AtomicU64,
    /// The device is flooding now (`device_flooding` stands).
    pub flooding: AtomicBool,
}

/// The notifier's input queue (`notify::inbox::Inbox`).
#[derive(Debug, Default)]
pub struct NotifyLoad {
    /// Messages waiting for the notifier (one per alarm at most).
    pub depth: AtomicUsize,
    /// Messages merged into a waiting one of the same alarm (the page for the latest state).
    pub coalesced: AtomicU64,
    /// Messages dropped because the queue was full of other alarms' messages.
    pub dropped: AtomicU64,
}

/// The queue of alarm-system events from the hub to the store and the notifier
/// (`hub::dispatch`): bounded, coalescing superseded updates and saved states under a backlog.
#[derive(Debug, Default)]
pub struct DispatchLoad {
    /// Messages waiting now.
    pub depth: AtomicUsize,
    /// The most ever seen waiting (high-water mark).
    pub peak: AtomicUsize,
    /// Transitions (and action commits) that may wait at most.
    pub cap: AtomicUsize,
    /// Superseded messages replaced by a newer one of the same alarm (or bed's state).
    pub coalesced: AtomicU64,
    /// Transitions dropped because `cap` were waiting (`store_unwritable` raised).
    pub dropped: AtomicU64,
}

impl DispatchLoad {
    /// Records the depth seen now.
    pub fn seen(&self, depth: usize) {
        self.depth.store(depth, Ordering::Relaxed);
        self.peak.fetch_max(depth, Ordering::Relaxed);
    }
}

/// Every overload counter of the daemon.
#[derive(Debug, Default)]
pub struct Overload {
    /// By device index.
    pub devices: Vec<DeviceLoad>,
    pub notify: NotifyLoad,
    pub dispatch: DispatchLoad,
}

impl Overload {
    /// Counters for `devices` devices, all zero.
    pub fn new(devices: usize) -> Overload {
        Overload {
            devices: (0..devices).map(|_| DeviceLoad::default()).collect(),
            notify: NotifyLoad::default(),
            dispatch: DispatchLoad::default(),
        }
    }

    /// The counters as JSON for `/healthz`: the devices that were ever throttled (by id), and
    /// the notification queue.
    pub fn json(&self, cfg: &Config) -> serde_json::Value {
        let devices: serde_json::Map<String, serde_json::Value> = self
            .devices
            .iter()
            .zip(&cfg.devices)
            .filter(|(l, _)| {
                l.throttled.load(Ordering::Relaxed) > 0 || l.flooding.load(Ordering::Relaxed)
            })
            .map(|(l, b)| {
                (
                    b.id.clone(),
                    serde_json::json!({
                        "flooding": l.flooding.load(Ordering::Relaxed),
                        "throttled": l.throttled.load(Ordering::Relaxed),
                        "max_rate": b.max_rate,
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "devices": devices,
            "notify": {
                "depth": self.notify.depth.load(Ordering::Relaxed),
                "coalesced": self.notify.coalesced.load(Ordering::Relaxed),
                "dropped": self.notify.dropped.load(Ordering::Relaxed),
            },
            "dispatch": {
                "depth": self.dispatch.depth.load(Ordering::Relaxed),
                "peak": self.dispatch.peak.load(Ordering::Relaxed),
                "cap": self.dispatch.cap.load(Ordering::Relaxed),
                "coalesced": self.dispatch.coalesced.load(Ordering::Relaxed),
                "dropped": self.dispatch.dropped.load(Ordering::Relaxed),
            },
        })
    }
}
