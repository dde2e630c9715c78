//! Plain data shared by every stage of the pipeline: metrics, device flags, measurements and
//! observations. Nothing here does I/O, and nothing here allocates per reading: a
//! [`Measurement`] and an [`Observation`] are `Copy`, flags are a bit set.
//!
//! The stable names used on the wire (metric names, flag names, invalid reasons) are documented
//! in `docs/observations.md`; change them only with a new message version.
//!
//! The vocabulary the other stages share lives here too, so that none of them reaches into
//! another for it:
//! - [`time`]: the monotonic instant [`Mono`] and durations in the config syntax.
//! - [`condition`]: what an alarm is about and how urgent it is.
//! - [`limits`]: per-bed limit rules, the baseline and the preset format ([`parse_limits`]).
//! - [`policy`]: the engine's technical priorities, escalation and audio-pause bounds.
//! - [`bed`]: a bed's devices as the alarm engine needs them ([`BedSpec`]).
//! - [`saved`]: a bed's saved alarm state, published by the hub, kept by the store.

pub mod bed;
pub mod condition;
pub mod limits;
pub mod policy;
pub mod saved;
pub mod time;

pub use bed::{BedSpec, DeviceKind, DeviceSpec};
pub use condition::{AlarmKind, Condition, Direction, Priority, TechCondition};
pub use limits::{
    Baseline, BedLimits, LimitRule, LimitsError, MAX_DELAY, Severe, Threshold, parse_limits,
    parse_limits_json, validate_rule,
};
pub use policy::{
    AudioPolicy, Breakthrough, EscalationPolicy, Policy, PriorityEscalation, TechRule,
    TechnicalPolicy,
};
pub use saved::StoredState;
pub use time::{MONO_ORIGIN, Mono, WrittenDuration, fmt_duration, parse_duration};

use serde::{Deserialize, Serialize, Serializer, ser::SerializeSeq};
use std::fmt;

/// A measured quantity, with its IEEE 11073-10101 (MDC) code and UCUM unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Functional oxygen saturation from a pulse oximeter, %.
    Spo2,
    /// Pulse rate from a pulse oximeter, /min.
    PulseRate,
    /// Perfusion index (Masimo PI, PLX pulse amplitude index), %.
    PerfusionIndex,
    /// Plethysmogram sample, device units (dimensionless).
    Pleth,
    /// Non-invasive systolic pressure, mmHg.
    NibpSys,
    /// Non-invasive diastolic pressure, mmHg.
    NibpDia,
    /// Non-invasive mean arterial pressure, mmHg.
    NibpMean,
    /// Pulse rate measured by the NIBP cuff, /min. Kept apart from the oximeter's pulse rate so
    /// that a cuff reading never clears or raises an oximeter pulse-rate alarm.
    NibpPulse,
    /// Cuff pressure while a measurement is in progress, mmHg.
    CuffPressure,
    /// Heart rate from a heart-rate sensor (BLE Heart Rate Service), /min.
    HeartRate,
    /// Device battery charge, %.
    Battery,
}

impl Metric {
    /// Every metric, in a stable order (the order of the dashboard and of exports).
    pub const ALL: [Metric; 11] = [
        Metric::Spo2,
        Metric::PulseRate,
        Metric::PerfusionIndex,
        Metric::Pleth,
        Metric::NibpSys,
        Metric::NibpDia,
        Metric::NibpMean,
        Metric::NibpPulse,
        Metric::CuffPressure,
        Metric::HeartRate,
        Metric::Battery,
    ];

    /// The number of metrics; per-bed tables are arrays of this size, indexed by [`Metric::index`].
    pub const COUNT: usize = Self::ALL.len();

    /// Position in [`Metric::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The short, stable name used in config files, JSON and exports.
    pub const fn name(self) -> &'static str {
        match self {
            Metric::Spo2 => "spo2",
            Metric::PulseRate => "pulse_rate",
            Metric::PerfusionIndex => "perfusion_index",
            Metric::Pleth => "pleth",
            Metric::NibpSys => "nibp_sys",
            Metric::NibpDia => "nibp_dia",
            Metric::NibpMean => "nibp_mean",
            Metric::NibpPulse => "nibp_pulse",
            Metric::CuffPressure => "cuff_pressure",
            Metric::HeartRate => "heart_rate",
            Metric::Battery => "battery",
        }
    }

    /// Looks a metric up by its [`Metric::name`].
    pub fn from_name(name: &str) -> Option<Metric> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// IEEE 11073-10101 nomenclature code (partition << 16 | term code).
    /// Sources: ../shared/reference/clinical.md §3.4; MDC_PRESS_CUFF and MDC_ATTR_VAL_BATT_CHARGE
    /// from public PCD-01 samples and the PHD IG.
    pub const fn mdc_code(self) -> u32 {
        match self {
            Metric::Spo2 => 150_456,
            Metric::PulseRate => 149_530,
            Metric::PerfusionIndex => 150_448,
            Metric::Pleth => 150_452,
            Metric::NibpSys => 150_021,
            Metric::NibpDia => 150_022,
            Metric::NibpMean => 150_023,
            Metric::NibpPulse => 149_546,
            Metric::CuffPressure => 150_300,
            Metric::HeartRate => 147_842,
            Metric::Battery => 67_996,
        }
    }

    /// The MDC reference id that goes with [`Metric::mdc_code`].
    pub const fn mdc_ref(self) -> &'static str {
        match self {
            Metric::Spo2 => "MDC_PULS_OXIM_SAT_O2",
            Metric::PulseRate => "MDC_PULS_OXIM_PULS_RATE",
            Metric::PerfusionIndex => "MDC_PULS_OXIM_PERF_REL",
            Metric::Pleth => "MDC_PULS_OXIM_PLETH",
            Metric::NibpSys => "MDC_PRESS_BLD_NONINV_SYS",
            Metric::NibpDia => "MDC_PRESS_BLD_NONINV_DIA",
            Metric::NibpMean => "MDC_PRESS_BLD_NONINV_MEAN",
            Metric::NibpPulse => "MDC_PULS_RATE_NON_INV",
            Metric::CuffPressure => "MDC_PRESS_CUFF",
            Metric::HeartRate => "MDC_ECG_HEART_RATE",
            Metric::Battery => "MDC_ATTR_VAL_BATT_CHARGE",
        }
    }

    /// UCUM unit code.
    pub const fn unit(self) -> &'static str {
        match self {
            Metric::Spo2 | Metric::PerfusionIndex | Metric::Battery => "%",
            Metric::PulseRate | Metric::NibpPulse | Metric::HeartRate => "/min",
            Metric::NibpSys | Metric::NibpDia | Metric::NibpMean | Metric::CuffPressure => "mm[Hg]",
            Metric::Pleth => "1",
        }
    }

    /// True for high-rate waveform samples, which the alarm engine and the summary skip.
    pub const fn is_waveform(self) -> bool {
        matches!(self, Metric::Pleth)
    }

    /// The numbers this metric can physically mean, whatever the device: a decoded number
    /// outside it is [`Invalid::OutOfRange`], never shown (see [`Measurement::new`], the one
    /// place every decoder's numbers pass through). Wider than any device's display range, so
    /// that no real reading is refused; narrow enough that a misparsed field is.
    ///
    /// | metric | range | why |
    /// |---|---|---|
    /// | spo2 | 0-100 % | a saturation is a fraction; Contec V7 "SpO2 0..100" (devices.md §6.3) |
    /// | pulse_rate, nibp_pulse, heart_rate | 0-350 /min | the widest rate a monitor measures (Mindray BeneVision N22 manual A.14.4: 25-350 bpm; SpO2 PR 20-300); Contec V7 PR 0..254, BerryMed 25-250, Rad-8 25-240 (devices.md §5.1, §6.3) |
    /// | perfusion_index | 0-100 % | PI is AC/DC x 100; Masimo 0.02-20, Contec V7 0-22.00 (§6.3) |
    /// | pleth | 0-65535 | device units; the widest is Nonin format 7's 16-bit pleth (§6.2) |
    /// | nibp_sys, nibp_dia, nibp_mean, cuff_pressure | 0-300 mmHg | an automated adult cuff is not inflated above 300 mmHg (IEC 80601-2-30), and no pressure it measures exceeds its own |
    /// | battery | 0-100 % | a charge level; BAS Battery Level 0-100 (devices.md §2.6) |
    pub const fn plausible_range(self) -> (f64, f64) {
        match self {
            Metric::Spo2 | Metric::PerfusionIndex | Metric::Battery => (0.0, 100.0),
            Metric::PulseRate | Metric::NibpPulse | Metric::HeartRate => (0.0, 350.0),
            Metric::Pleth => (0.0, 65_535.0),
            Metric::NibpSys | Metric::NibpDia | Metric::NibpMean | Metric::CuffPressure => {
                (0.0, 300.0)
            }
        }
    }

    /// Whether `v` is within [`Metric::plausible_range`].
    pub fn is_plausible(self, v: f64) -> bool {
        let (lo, hi) = self.plausible_range();
        (lo..=hi).contains(&v)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A device condition reported alongside a value. Stable names in [`Flag::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Flag {
    /// The sensor is off the patient (Masimo EXC 0x020, PLX "sensor unconnected to user").
    SensorOff = 0,
    /// No finger in the probe (BerryMed/Contec "no finger", Nonin SNSA, Nonin BLE CorrectCheck = 0).
    NoFinger,
    /// The probe/sensor cable is unplugged from the device (Masimo EXC 0x001, Nonin SNSD).
    ProbeUnplugged,
    /// The sensor is defective, unrecognised or malfunctioning.
    SensorFault,
    /// The device is searching for a pulse.
    Searching,
    /// The device has searched for a pulse for too long (Contec V7 byte2 b4).
    SearchingTooLong,
    /// Low perfusion.
    LowPerfusion,
    /// Low or weak signal (Masimo low signal IQ, Nonin weak signal, PLX poor/inadequate signal).
    LowSignal,
    /// Artifact or motion detected (Nonin ARTF, Nonin OOT out of track, PLX erratic signal).
    Artifact,
    /// Interference or ambient light.
    Interference,
    /// The device's battery is low.
    LowBattery,
    /// The device flagged the measurement as questionable.
    Questionable,
    /// A measurement is in progress (NIBP inflating, PLX "measurement ongoing").
    MeasurementOngoing,
    /// The cuff is too loose (BLS status b1).
    CuffLoose,
    /// Body movement during the measurement (BLS status b0).
    BodyMovement,
    /// Irregular pulse detected (BLS status b2).
    IrregularPulse,
    /// Improper measurement position (BLS status b5).
    ImproperPosition,
    /// The device's clock is not set; its timestamps are not to be trusted.
    ClockNotSet,
    /// The device says the data is for demonstration or testing (PLX status b10/b11).
    DemoData,
}

impl Flag {
    /// Every flag, in bit order.
    pub const ALL: [Flag; 19] = [
        Flag::SensorOff,
        Flag::NoFinger,
        Flag::ProbeUnplugged,
        Flag::SensorFault,
        Flag::Searching,
        Flag::SearchingTooLong,
        Flag::LowPerfusion,
        Flag::LowSignal,
        Flag::Artifact,
        Flag::Interference,
        Flag::LowBattery,
        Flag::Questionable,
        Flag::MeasurementOngoing,
        Flag::CuffLoose,
        Flag::BodyMovement,
        Flag::IrregularPulse,
        Flag::ImproperPosition,
        Flag::ClockNotSet,
        Flag::DemoData,
    ];

    /// The stable name on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            Flag::SensorOff => "sensor_off",
            Flag::NoFinger => "no_finger",
            Flag::ProbeUnplugged => "probe_unplugged",
            Flag::SensorFault => "sensor_fault",
            Flag::Searching => "searching",
            Flag::SearchingTooLong => "searching_too_long",
            Flag::LowPerfusion => "low_perfusion",
            Flag::LowSignal => "low_signal",
            Flag::Artifact => "artifact",
            Flag::Interference => "interference",
            Flag::LowBattery => "low_battery",
            Flag::Questionable => "questionable",
            Flag::MeasurementOngoing => "measurement_ongoing",
            Flag::CuffLoose => "cuff_loose",
            Flag::BodyMovement => "body_movement",
            Flag::IrregularPulse => "irregular_pulse",
            Flag::ImproperPosition => "improper_position",
            Flag::ClockNotSet => "clock_not_set",
            Flag::DemoData => "demo_data",
        }
    }

    /// A short phrase for people (dashboard, summary line).
    pub const fn describe(self) -> &'static str {
        match self {
            Flag::SensorOff => "sensor off",
            Flag::NoFinger => "finger out",
            Flag::ProbeUnplugged => "probe unplugged",
            Flag::SensorFault => "sensor fault",
            Flag::Searching => "searching",
            Flag::SearchingTooLong => "searching too long",
            Flag::LowPerfusion => "low perfusion",
            Flag::LowSignal => "low signal",
            Flag::Artifact => "artifact",
            Flag::Interference => "interference",
            Flag::LowBattery => "low battery",
            Flag::Questionable => "questionable",
            Flag::MeasurementOngoing => "measuring",
            Flag::CuffLoose => "cuff loose",
            Flag::BodyMovement => "movement",
            Flag::IrregularPulse => "irregular pulse",
            Flag::ImproperPosition => "position",
            Flag::ClockNotSet => "device clock not set",
            Flag::DemoData => "demo data",
        }
    }

    /// True for conditions under which the device's numbers for the patient cannot be trusted:
    /// a decoder reports the value as invalid ([`Invalid::DeviceFlagged`]) when one is set.
    pub const fn voids_value(self) -> bool {
        matches!(
            self,
            Flag::SensorOff | Flag::NoFinger | Flag::ProbeUnplugged | Flag::SensorFault
        )
    }
}

/// A set of [`Flag`]s plus at most one cuff error code, `Copy` and allocation-free.
/// Serialized as a list of names; the cuff error as `cuff_error:<code>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    bits: u32,
    cuff_error: Option<u16>,
}

impl Flags {
    /// No flags.
    pub const EMPTY: Flags = Flags {
        bits: 0,
        cuff_error: None,
    };

    /// Adds a flag.
    pub fn insert(&mut self, flag: Flag) {
        self.bits |= 1 << flag as u8;
    }

    /// Adds a flag when `cond` holds; convenient in decoders.
    pub fn set_if(&mut self, flag: Flag, cond: bool) {
        if cond {
            self.insert(flag);
        }
    }

    /// Builder form of [`Flags::insert`].
    pub fn with(mut self, flag: Flag) -> Flags {
        self.insert(flag);
        self
    }

    /// Whether `flag` is set.
    pub const fn contains(&self, flag: Flag) -> bool {
        self.bits & (1 << flag as u8) != 0
    }

    /// Records a device's cuff error code (SunTech error codes, etc.).
    pub fn set_cuff_error(&mut self, code: u16) {
        self.cuff_error = Some(code);
    }

    /// The cuff error code, if any.
    pub const fn cuff_error(&self) -> Option<u16> {
        self.cuff_error
    }

    /// Whether no flag and no cuff error is set.
    pub const fn is_empty(&self) -> bool {
        self.bits == 0 && self.cuff_error.is_none()
    }

    /// The set flags, in bit order (without the cuff error).
    pub fn iter(&self) -> impl Iterator<Item = Flag> + '_ {
        Flag::ALL.into_iter().filter(|f| self.contains(*f))
    }

    /// The first flag that voids a value, if any (see [`Flag::voids_value`]).
    pub fn voiding(&self) -> Option<Flag> {
        self.iter().find(|f| f.voids_value())
    }

    /// Union of two sets; the cuff error of `other` wins when both have one.
    pub fn union(self, other: Flags) -> Flags {
        Flags {
            bits: self.bits | other.bits,
            cuff_error: other.cuff_error.or(self.cuff_error),
        }
    }

    /// The stable names, `cuff_error:<code>` last.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.iter().map(|f| f.name().to_owned()).collect();
        if let Some(code) = self.cuff_error {
            v.push(format!("cuff_error:{code}"));
        }
        v
    }
}

impl Serialize for Flags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.iter().count() + usize::from(self.cuff_error.is_some());
        let mut seq = s.serialize_seq(Some(n))?;
        for f in self.iter() {
            seq.serialize_element(f.name())?;
        }
        if let Some(code) = self.cuff_error {
            seq.serialize_element(&format_args!("cuff_error:{code}").to_string())?;
        }
        seq.end()
    }
}

/// Why a measurement carries no number. Stable names in [`Invalid::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Invalid {
    /// The device sent its "no value" encoding (SFLOAT NaN, 127, 511, 0xFF, dashes).
    NoValue,
    /// SFLOAT/FLOAT NRes: not at this resolution.
    NotAtResolution,
    /// SFLOAT/FLOAT +INFINITY.
    PositiveInfinity,
    /// SFLOAT/FLOAT -INFINITY.
    NegativeInfinity,
    /// A reserved encoding.
    Reserved,
    /// A number outside what the protocol allows for this metric.
    OutOfRange,
    /// The device sent a number but flagged the sensor as off, unplugged or faulty at the same
    /// time; the number is not shown. The flag says which.
    DeviceFlagged,
    /// The device marked the measurement itself invalid or unavailable (PLX measurement status).
    DeviceMarkedInvalid,
}

impl Invalid {
    /// Every reason, in declaration order (a new one must be added here: `Invalid::index`'s
    /// exhaustive match and the test below hold the two together).
    pub const ALL: [Invalid; 8] = [
        Invalid::NoValue,
        Invalid::NotAtResolution,
        Invalid::PositiveInfinity,
        Invalid::NegativeInfinity,
        Invalid::Reserved,
        Invalid::OutOfRange,
        Invalid::DeviceFlagged,
        Invalid::DeviceMarkedInvalid,
    ];

    /// Its place in [`Invalid::ALL`]: a match, so a new reason fails to compile until it
    /// has one.
    pub const fn index(self) -> usize {
        match self {
            Invalid::NoValue => 0,
            Invalid::NotAtResolution => 1,
            Invalid::PositiveInfinity => 2,
            Invalid::NegativeInfinity => 3,
            Invalid::Reserved => 4,
            Invalid::OutOfRange => 5,
            Invalid::DeviceFlagged => 6,
            Invalid::DeviceMarkedInvalid => 7,
        }
    }

    /// The stable name on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            Invalid::NoValue => "no_value",
            Invalid::NotAtResolution => "not_at_resolution",
            Invalid::PositiveInfinity => "positive_infinity",
            Invalid::NegativeInfinity => "negative_infinity",
            Invalid::Reserved => "reserved",
            Invalid::OutOfRange => "out_of_range",
            Invalid::DeviceFlagged => "device_flagged",
            Invalid::DeviceMarkedInvalid => "device_marked_invalid",
        }
    }
}

/// A number, or the reason there is none. There is no way to hold both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A number the device reported as valid.
    Valid(f64),
    /// No number, and why.
    Invalid(Invalid),
}

impl Value {
    /// The number, if valid.
    pub const fn number(self) -> Option<f64> {
        match self {
            Value::Valid(v) => Some(v),
            Value::Invalid(_) => None,
        }
    }

    /// The reason, if invalid.
    pub const fn invalid(self) -> Option<Invalid> {
        match self {
            Value::Valid(_) => None,
            Value::Invalid(r) => Some(r),
        }
    }
}

/// A calendar time as the device reported it (no time zone; devices keep local time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl fmt::Display for DeviceTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

impl DeviceTime {
    /// Appends the [`Display`](fmt::Display) text (`YYYY-MM-DDTHH:MM:SS`) without the
    /// formatter's padding machinery: this runs for every reading sent and stored. A field
    /// too wide for its digits (a device's year past 9999) goes through `Display`.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        let two = [self.month, self.day, self.hour, self.minute, self.second];
        if self.year > 9999 || two.iter().any(|&v| v > 99) {
            use std::io::Write as _;
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{self}");
            return;
        }
        let digit = |v: u16| b'0' + (v % 10) as u8;
        let y = self.year;
        out.extend_from_slice(&[digit(y / 1000), digit(y / 100), digit(y / 10), digit(y)]);
        for (v, sep) in two.into_iter().zip([b'-', b'-', b'T', b':', b':']) {
            let v = u16::from(v);
            out.extend_from_slice(&[sep, digit(v / 10), digit(v)]);
        }
    }
}

impl Serialize for DeviceTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a decoder produces: one metric's value from one device, before it is bound to a bed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    pub metric: Metric,
    pub value: Value,
    /// Device conditions reported with this value.
    pub flags: Flags,
    /// The device's own timestamp, when the protocol carries one.
    pub device_time: Option<DeviceTime>,
}

impl Measurement {
    /// A measurement with a number; every decoder's numbers come through here. If `flags`
    /// holds a condition that voids values ([`Flag::voids_value`]) the number is dropped and
    /// the value is [`Invalid::DeviceFlagged`]: a number the device itself disowns is never
    /// shown. A number outside the metric's [`Metric::plausible_range`] is
    /// [`Invalid::OutOfRange`]; a non-finite one is [`Invalid::NoValue`].
    pub fn new(metric: Metric, value: f64, flags: Flags) -> Measurement {
        let value = if flags.voiding().is_some() && metric != Metric::Battery {
            Value::Invalid(Invalid::DeviceFlagged)
        } else if !value.is_finite() {
            Value::Invalid(Invalid::NoValue)
        } else if !metric.is_plausible(value) {
            Value::Invalid(Invalid::OutOfRange)
        } else {
            Value::Valid(value)
        };
        Measurement {
            metric,
            value,
            flags,
            device_time: None,
        }
    }

    /// A measurement without a number.
    pub fn invalid(metric: Metric, reason: Invalid, flags: Flags) -> Measurement {
        Measurement {
            metric,
            value: Value::Invalid(reason),
            flags,
            device_time: None,
        }
    }

    /// Builder: attaches the device's timestamp.
    pub fn at(mut self, t: Option<DeviceTime>) -> Measurement {
        self.device_time = t;
        self
    }
}

/// JSON form of a measurement, shared by `vitalsd decode` and the WebSocket `reading` message.
impl Serialize for Measurement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(8))?;
        m.serialize_entry("metric", self.metric.name())?;
        m.serialize_entry("mdc", &self.metric.mdc_code())?;
        m.serialize_entry("value", &self.value.number())?;
        m.serialize_entry("unit", self.metric.unit())?;
        m.serialize_entry("invalid", &self.value.invalid())?;
        m.serialize_entry("flags", &self.flags)?;
        m.serialize_entry("device_time", &self.device_time)?;
        m.end()
    }
}

/// Index of a bed (recliner) in the configured topology; names live in [`crate::config::Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BedIdx(pub u16);

/// Index of a bound device in the configured topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceIdx(pub u16);

/// A measurement bound to a bed, stamped on arrival. `Copy`: no allocation per reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub bed: BedIdx,
    pub device: DeviceIdx,
    pub m: Measurement,
    /// Wall-clock receive time, milliseconds since the Unix epoch.
    pub received_ms: i64,
    /// Monotonic receive time (see [`crate::clock`]).
    pub mono: Mono,
    /// Per-bed sequence number, gap-free and increasing.
    pub bed_seq: u64,
    /// Whether the data comes from the simulator.
    pub simulated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_round_trip_and_indices_follow_all() {
        for (i, m) in Metric::ALL.into_iter().enumerate() {
            assert_eq!(Metric::from_name(m.name()), Some(m));
            assert_eq!(m.index(), i);
        }
        assert_eq!(Metric::from_name("spO2"), None);
    }

    #[test]
    fn every_invalid_reason_is_listed_once_at_its_index() {
        for (i, r) in Invalid::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
    }

    #[test]
    fn flags_serialize_as_names_with_cuff_error_last() {
        let mut f = Flags::EMPTY.with(Flag::LowBattery).with(Flag::NoFinger);
        f.set_cuff_error(87);
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, r#"["no_finger","low_battery","cuff_error:87"]"#);
    }

    #[test]
    fn a_number_with_a_voiding_flag_becomes_invalid() {
        let m = Measurement::new(Metric::Spo2, 97.0, Flags::EMPTY.with(Flag::SensorOff));
        assert_eq!(m.value, Value::Invalid(Invalid::DeviceFlagged));
        let m = Measurement::new(Metric::Spo2, 97.0, Flags::EMPTY.with(Flag::LowPerfusion));
        assert_eq!(m.value, Value::Valid(97.0));
        let m = Measurement::new(Metric::Spo2, f64::NAN, Flags::EMPTY);
        assert_eq!(m.value, Value::Invalid(Invalid::NoValue));
    }

    #[test]
    fn numbers_outside_the_metric_range_are_out_of_range_and_its_bounds_are_values() {
        // The range table on `Metric::plausible_range` (sources there).
        let table: [(Metric, f64, f64); 11] = [
            (Metric::Spo2, 0.0, 100.0),
            (Metric::PulseRate, 0.0, 350.0),
            (Metric::PerfusionIndex, 0.0, 100.0),
            (Metric::Pleth, 0.0, 65_535.0),
            (Metric::NibpSys, 0.0, 300.0),
            (Metric::NibpDia, 0.0, 300.0),
            (Metric::NibpMean, 0.0, 300.0),
            (Metric::NibpPulse, 0.0, 350.0),
            (Metric::CuffPressure, 0.0, 300.0),
            (Metric::HeartRate, 0.0, 350.0),
            (Metric::Battery, 0.0, 100.0),
        ];
        for (metric, lo, hi) in table {
            for v in [lo, hi] {
                let m = Measurement::new(metric, v, Flags::EMPTY);
                assert_eq!(m.value, Value::Valid(v), "{metric} {v}");
            }
            for v in [lo - 0.1, hi + 0.1, -1.0, 55_668.0 * 2.0] {
                let m = Measurement::new(metric, v, Flags::EMPTY);
                assert_eq!(m.value, Value::Invalid(Invalid::OutOfRange), "{metric} {v}");
            }
        }
        // A voiding flag still wins: the reason a user needs is the sensor, not the number.
        let m = Measurement::new(Metric::Spo2, 140.0, Flags::EMPTY.with(Flag::NoFinger));
        assert_eq!(m.value, Value::Invalid(Invalid::DeviceFlagged));
    }

    #[test]
    fn measurement_json_has_null_value_and_reason_when_invalid() {
        let m = Measurement::invalid(Metric::PulseRate, Invalid::NoValue, Flags::EMPTY);
        let v = serde_json::to_value(m).unwrap();
        assert_eq!(v["value"], serde_json::Value::Null);
        assert_eq!(v["invalid"], "no_value");
        assert_eq!(v["unit"], "/min");
        assert_eq!(v["mdc"], 149_530);
    }

    #[test]
    fn a_device_time_written_fast_is_its_display_text() {
        let t = |year, month, day, hour, minute, second| DeviceTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        };
        for time in [
            t(2026, 11, 22, 4, 0, 0),
            t(0, 0, 0, 0, 0, 0),
            t(7, 1, 9, 23, 59, 59),
            t(9999, 12, 31, 23, 59, 60),
            t(10000, 1, 1, 0, 0, 0),
            t(u16::MAX, u8::MAX, 100, 99, 255, 7),
            t(2026, 99, 99, 99, 99, 99),
        ] {
            let mut out = b"x".to_vec();
            time.write_text(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), format!("x{time}"));
        }
    }
}
