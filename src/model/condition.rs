//! The alarm vocabulary every stage shares: what an alarm is about ([`Condition`], with the
//! technical [`TechCondition`]s and the [`Direction`] of a limit), whether it concerns the
//! patient or the equipment ([`AlarmKind`]) and how urgent it is ([`Priority`]). Plain data;
//! the engine (`crate::alarm`) raises alarms of these, the hub, store, API and notifier carry
//! them.

use super::Metric;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// Alarm priority (IEC 60601-1-8): high needs an immediate response, medium a prompt one, low
/// only draws attention. Ordered `Low < Medium < High`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
}

/// Whether an alarm is about the patient or about the equipment; only physiological alarms
/// latch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    Physiological,
    Technical,
}

/// Which side of the threshold alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Alarm when the value is below the threshold.
    Low,
    /// Alarm when the value is above the threshold.
    High,
}

/// A device condition that raises a technical alarm. Index order is the slot order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TechCondition {
    DeviceDisconnected,
    NoData,
    NibpOverdue,
    SensorOff,
    NoFinger,
    ProbeUnplugged,
    SensorFault,
    SearchingTooLong,
    LowPerfusion,
    LowSignal,
    LowBattery,
    CuffError,
    /// The device sends more readings than its profile can plausibly send: its source
    /// throttles it (reads less, keeps the newest reading of each metric per read) until its
    /// rate is back within its `max_rate` (docs/alarms.md, "Flooding devices").
    DeviceFlooding,
    NoDashboard,
    /// The durable record cannot be written (disk full, read-only, file gone): readings are
    /// held in memory until it recovers.
    StoreUnwritable,
    /// The bridge to the MQTT broker (src/mqtt) has been down longer than its grace: the
    /// site is not visible centrally. Nothing local is affected.
    MqttDown,
    /// A relative limit is inactive for want of a baseline on a bed whose session is dosed:
    /// the ketamine hazard (`nibp_sys_rise`) would go unwatched. Bed-level, not per device.
    BaselineMissing,
    /// A notification target fails to take pages (the alarm names it in `target`).
    NotifyFailed,
    /// An HL7 endpoint (src/hl7: the EHR's interface engine or the alarm manager) has failed
    /// longer than its grace: messages queue in the store. Nothing local is affected.
    Hl7Down,
}

impl TechCondition {
    /// The per-device conditions (all but [`TechCondition::NoDashboard`]), in slot order.
    pub const PER_DEVICE: [TechCondition; 13] = [
        TechCondition::DeviceDisconnected,
        TechCondition::NoData,
        TechCondition::NibpOverdue,
        TechCondition::SensorOff,
        TechCondition::NoFinger,
        TechCondition::ProbeUnplugged,
        TechCondition::SensorFault,
        TechCondition::SearchingTooLong,
        TechCondition::LowPerfusion,
        TechCondition::LowSignal,
        TechCondition::LowBattery,
        TechCondition::CuffError,
        TechCondition::DeviceFlooding,
    ];

    /// Position in [`TechCondition::PER_DEVICE`] (and in [`TechnicalPolicy`]'s table).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The stable name on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            TechCondition::DeviceDisconnected => "device_disconnected",
            TechCondition::NoData => "no_data",
            TechCondition::NibpOverdue => "nibp_overdue",
            TechCondition::SensorOff => "sensor_off",
            TechCondition::NoFinger => "no_finger",
            TechCondition::ProbeUnplugged => "probe_unplugged",
            TechCondition::SensorFault => "sensor_fault",
            TechCondition::SearchingTooLong => "searching_too_long",
            TechCondition::LowPerfusion => "low_perfusion",
            TechCondition::LowSignal => "low_signal",
            TechCondition::LowBattery => "low_battery",
            TechCondition::CuffError => "cuff_error",
            TechCondition::DeviceFlooding => "device_flooding",
            TechCondition::NoDashboard => "no_dashboard",
            TechCondition::StoreUnwritable => "store_unwritable",
            TechCondition::MqttDown => "mqtt_down",
            TechCondition::BaselineMissing => "baseline_missing",
            TechCondition::NotifyFailed => "notify_failed",
            TechCondition::Hl7Down => "hl7_down",
        }
    }
}

/// What an alarm is about. Serialized as one stable snake_case name: `spo2_low`,
/// `pulse_rate_high`, `nibp_sys_rise` (relative to the baseline, upwards), `nibp_sys_fall`,
/// or a technical name such as `no_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    /// A limit rule: the metric went beyond a threshold.
    Limit {
        metric: Metric,
        direction: Direction,
        /// Whether the threshold is relative to the baseline.
        relative: bool,
    },
    /// A device or system condition.
    Technical(TechCondition),
}

impl Condition {
    /// Physiological or technical.
    pub const fn kind(self) -> AlarmKind {
        match self {
            Condition::Limit { .. } => AlarmKind::Physiological,
            Condition::Technical(_) => AlarmKind::Technical,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Condition::Limit {
                metric,
                direction,
                relative,
            } => {
                let suffix = match (direction, relative) {
                    (Direction::Low, false) => "low",
                    (Direction::High, false) => "high",
                    (Direction::Low, true) => "fall",
                    (Direction::High, true) => "rise",
                };
                write!(f, "{}_{suffix}", metric.name())
            }
            Condition::Technical(t) => f.write_str(t.name()),
        }
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
