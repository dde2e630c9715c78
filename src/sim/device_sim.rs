//! [`DeviceSim`]: what one simulated device's player task holds (its bed's patient, the
//! scenario, its faults and its random source), shared by the serial/TCP players
//! ([`super::devices`]) and the BLE players ([`super::ble`]).

use super::physiology::{DeviceRole, Faults, Patient, Vitals};
use super::scenario::Scenario;
use rand::Rng;
use rand::rngs::SmallRng;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Shared per bed: both of a bed's devices see the same patient.
pub(super) type SharedPatient = Arc<Mutex<Patient>>;

/// Everything a device task needs.
pub(super) struct DeviceSim {
    pub(super) id: String,
    pub(super) protocol: String,
    /// The device profile's name: where a protocol has several layouts, the model's.
    pub(super) profile: String,
    pub(super) role: DeviceRole,
    pub(super) patient: SharedPatient,
    pub(super) scenario: Arc<Scenario>,
    pub(super) started: Instant,
    pub(super) cancel: CancellationToken,
    pub(super) rng: SmallRng,
}

impl DeviceSim {
    fn scenario_time(&self) -> Duration {
        self.scenario.scenario_time(self.started.elapsed())
    }

    /// The patient's vitals, this device's faults, and the scenario time, now.
    pub(super) fn now(&mut self) -> (Vitals, Faults, Duration) {
        let t = self.scenario_time();
        let mut p = self.patient.lock().unwrap_or_else(|e| e.into_inner());
        let v = p.vitals(t);
        let f = p.faults(t, self.role);
        (v, f, t)
    }

    /// 3 to 39 random bytes.
    pub(super) fn garbage(&mut self) -> Vec<u8> {
        let n = self.rng.random_range(3..40);
        (0..n).map(|_| self.rng.random::<u8>()).collect()
    }
}
