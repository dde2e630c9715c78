//! What the alarm engine knows of a bed: its devices (kind, expected period, metrics) and its
//! BP interval, as plain data. `crate::config` builds it from the clinic's config
//! ([`BedSpec::from_config`]); tests and benchmarks build it by hand.

use super::{DeviceIdx, Metric};
use std::time::Duration;

/// What kind of device a profile describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Oximeter,
    Bp,
    HeartRate,
}

impl DeviceKind {
    /// The config name.
    pub const fn name(self) -> &'static str {
        match self {
            DeviceKind::Oximeter => "oximeter",
            DeviceKind::Bp => "bp",
            DeviceKind::HeartRate => "heart_rate",
        }
    }
}

/// One device bound to the bed, as the engine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    pub idx: DeviceIdx,
    pub kind: DeviceKind,
    /// How often it sends when all is well; silence beyond this plus the grace is `no_data`.
    pub expected_period: Duration,
    pub metrics: Vec<Metric>,
}

/// The bed's devices and BP interval, built from the config by [`crate::config`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BedSpec {
    pub devices: Vec<DeviceSpec>,
    /// How often a BP result is expected; none for this plus the NIBP grace is `nibp_overdue`.
    pub bp_interval: Duration,
}
