//! Scenario files: what the simulator plays, bed by bed. A scenario gives each simulated bed a
//! baseline, a noise level, an optional ketamine dose and a timeline of events (desaturations
//! and device faults), all in scenario time; `acceleration` maps real time to scenario time so a
//! two-hour session can be demonstrated in minutes.
//!
//! Two stages, like the daemon's config: serde reads the TOML into `Raw*` structs
//! (`deny_unknown_fields`, spans kept), then [`Scenario::parse`] validates them into the public
//! types below. Every error names the key, quotes the bad value and says what was expected.
//! The format is documented in `docs/scenarios.md`.

use crate::config::{line_col, read_toml};
use crate::model::WrittenDuration;
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Slowest and fastest allowed time acceleration (scenario seconds per real second).
pub const ACCELERATION_RANGE: (f64, f64) = (0.1, 1000.0);

/// A validated scenario: what every simulated bed does over scenario time.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name shown in logs and by the dashboard's "simulated" banner.
    pub name: String,
    /// Scenario seconds per real second, within [`ACCELERATION_RANGE`].
    pub acceleration: f64,
    /// Seed of the noise, so a run can be repeated exactly.
    pub seed: u64,
    /// One script per simulated bed, in file order; bed ids are unique.
    pub beds: Vec<BedScript>,
}

/// What one bed (recliner) does: its patient's physiology and its devices' faults.
#[derive(Debug, Clone, PartialEq)]
pub struct BedScript {
    /// The `config::Bed.id` it drives, e.g. `room1/A`.
    pub bed: String,
    /// Resting values before any dose or event.
    pub baseline: Baseline,
    /// Noise multiplier; 0 gives exact values (what tests use).
    pub noise: f64,
    /// Scenario time of the ketamine dose, if the patient is dosed.
    pub dose_at: Option<Duration>,
    /// Shape of the ketamine response (used only when `dose_at` is set).
    pub ketamine: Ketamine,
    /// Desaturations and device faults, in file order.
    pub events: Vec<Event>,
}

/// A patient's resting vital signs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// Functional oxygen saturation, %.
    pub spo2: f64,
    /// Pulse rate, /min.
    pub pulse_rate: f64,
    /// Systolic pressure, mmHg.
    pub sys: f64,
    /// Diastolic pressure, mmHg.
    pub dia: f64,
    /// Perfusion index, %.
    pub perfusion_index: f64,
}

impl Default for Baseline {
    /// A healthy adult at rest, used when a bed gives no baseline.
    fn default() -> Self {
        Baseline {
            spo2: 97.0,
            pulse_rate: 72.0,
            sys: 122.0,
            dia: 78.0,
            perfusion_index: 3.5,
        }
    }
}

/// The ketamine-like haemodynamic response to a dose: pressures and pulse rise smoothly to a
/// peak `peak_after` the dose and are back at baseline `duration` after it (clinical.md §4:
/// biggest rise around 30-40 min, back to baseline by 90-120 min).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ketamine {
    /// Systolic rise at the peak, mmHg.
    pub sys_rise: f64,
    /// Diastolic rise at the peak, mmHg.
    pub dia_rise: f64,
    /// Pulse-rate rise at the peak, /min.
    pub pr_rise: f64,
    /// Time from dose to the peak.
    pub peak_after: Duration,
    /// Time from dose until the values are back at baseline; longer than `peak_after`.
    pub duration: Duration,
}

impl Default for Ketamine {
    /// A moderate response with the timing of the published series.
    fn default() -> Self {
        Ketamine {
            sys_rise: 25.0,
            dia_rise: 15.0,
            pr_rise: 15.0,
            peak_after: Duration::from_secs(35 * 60),
            duration: Duration::from_secs(100 * 60),
        }
    }
}

/// One scripted event: on during `[at, at + duration)` in scenario time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// Scenario time it starts.
    pub at: Duration,
    /// How long it lasts (`for` in the file); never zero.
    pub duration: Duration,
    /// What happens.
    pub kind: EventKind,
}

impl Event {
    /// Scenario time it ends (exclusive).
    pub fn end(&self) -> Duration {
        self.at.saturating_add(self.duration)
    }

    /// Whether the event is on at scenario time `t`; windows are half-open, `[at, end)`.
    pub fn is_on(&self, t: Duration) -> bool {
        self.at <= t && t < self.end()
    }

    /// Scenario time after which the event no longer affects anything (a desaturation also
    /// needs its recovery ramp).
    pub fn settled_at(&self) -> Duration {
        match self.kind {
            EventKind::Desaturation { ramp, .. } => self.end().saturating_add(ramp),
            _ => self.end(),
        }
    }
}

/// What an event does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventKind {
    /// SpO2 ramps down to `spo2` over `ramp`, holds until the event ends, then recovers over
    /// `ramp`.
    Desaturation {
        /// Target SpO2, %.
        spo2: f64,
        /// Ramp time down and back up.
        ramp: Duration,
    },
    /// The oximeter's sensor is off the finger.
    FingerOut,
    /// The oximeter's probe is unplugged from the device.
    ProbeUnplugged,
    /// The oximeter is searching for a pulse.
    Searching,
    /// Motion artifact on a device.
    Motion {
        /// The device that sees it.
        device: DeviceRole,
    },
    /// A device reports a low battery.
    LowBattery {
        /// The device whose battery is low.
        device: DeviceRole,
    },
    /// The cuff's measurements fail with a SunTech error code (87 = loose cuff).
    CuffError {
        /// The SunTech error code, never 0.
        code: u8,
    },
    /// The device vanishes: no bytes, closed connection.
    Disconnect {
        /// The device that vanishes.
        device: DeviceRole,
    },
    /// The device's line carries garbage bytes between (or instead of) frames.
    Garbage {
        /// The device whose line is noisy.
        device: DeviceRole,
    },
}

impl EventKind {
    /// The file's name for the kind.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Desaturation { .. } => "desaturation",
            EventKind::FingerOut => "finger_out",
            EventKind::ProbeUnplugged => "probe_unplugged",
            EventKind::Searching => "searching",
            EventKind::Motion { .. } => "motion",
            EventKind::LowBattery { .. } => "low_battery",
            EventKind::CuffError { .. } => "cuff_error",
            EventKind::Disconnect { .. } => "disconnect",
            EventKind::Garbage { .. } => "garbage",
        }
    }
}

/// Which of a bed's devices a fault concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceRole {
    /// The pulse oximeter (SpO2, pulse rate, perfusion index, pleth).
    Oximeter,
    /// The blood-pressure cuff.
    Bp,
}

impl fmt::Display for DeviceRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceRole::Oximeter => "oximeter",
            DeviceRole::Bp => "bp",
        })
    }
}

/// Why a scenario could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, a missing key or a value of the wrong type: the line, the
    /// key and serde's message, read by the config's reader ([`crate::config::read_toml`]).
    #[error("{0}")]
    Syntax(String),
    /// A value of the right type but outside what is allowed.
    #[error("{}{key} = {value}: expected {expected}", line_prefix(*line))]
    Invalid {
        /// 1-based line in the file, when known.
        line: Option<usize>,
        /// Path of the key, e.g. `beds[0].events[1].for`.
        key: String,
        /// The bad value as written.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// An error in a named file.
    #[error("{}: {inner}", path.display())]
    InFile {
        path: PathBuf,
        inner: Box<ScenarioError>,
    },
}

fn line_prefix(line: Option<usize>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

impl Scenario {
    /// Reads and validates a scenario from TOML text.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = read_toml(text).map_err(|e| {
            let key = if e.key.is_empty() {
                String::new()
            } else {
                format!("{}: ", e.key)
            };
            ScenarioError::Syntax(format!("line {}: {key}{}", e.line, e.message))
        })?;
        Validator { text }.scenario(raw)
    }

    /// Reads and validates a scenario file; errors name the file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Scenario::parse(&text).map_err(|e| ScenarioError::InFile {
            path: path.to_owned(),
            inner: Box::new(e),
        })
    }

    /// The built-in scenario used when no file is given: the named beds at the default
    /// baseline, no noise, no dose, no events, real time.
    pub fn steady(beds: &[&str]) -> Scenario {
        Scenario {
            name: "steady".to_owned(),
            acceleration: 1.0,
            seed: 0,
            beds: beds
                .iter()
                .map(|bed| BedScript {
                    bed: (*bed).to_owned(),
                    baseline: Baseline::default(),
                    noise: 0.0,
                    dose_at: None,
                    ketamine: Ketamine::default(),
                    events: Vec::new(),
                })
                .collect(),
        }
    }

    /// The script of bed `id`, if the scenario drives it.
    pub fn bed(&self, id: &str) -> Option<&BedScript> {
        self.beds.iter().find(|b| b.bed == id)
    }

    /// Scenario time reached after `real` time has passed since the start.
    pub fn scenario_time(&self, real: Duration) -> Duration {
        scale(real, self.acceleration)
    }

    /// Real time after the start at which scenario time `scenario` is reached (for scheduling).
    pub fn real_time(&self, scenario: Duration) -> Duration {
        scale(scenario, 1.0 / self.acceleration)
    }

    /// Scenario time after which nothing scripted changes any more on any bed.
    pub fn settled_at(&self) -> Duration {
        self.beds
            .iter()
            .map(BedScript::settled_at)
            .max()
            .unwrap_or_default()
    }
}

impl BedScript {
    /// Scenario time after which nothing scripted changes any more on this bed.
    pub fn settled_at(&self) -> Duration {
        let dose_end = self
            .dose_at
            .map(|d| d.saturating_add(self.ketamine.duration))
            .unwrap_or_default();
        self.events
            .iter()
            .map(Event::settled_at)
            .fold(dose_end, Duration::max)
    }
}

/// `d * factor`, saturating instead of panicking on overflow or a bad factor.
fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(if factor > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    })
}

// ---------------------------------------------------------------------------------------------
// Raw file structures.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Spanned<String>,
    acceleration: Option<Spanned<f64>>,
    seed: Option<u64>,
    #[serde(default)]
    beds: Vec<RawBed>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBed {
    bed: Spanned<String>,
    baseline: Option<RawBaseline>,
    noise: Option<Spanned<f64>>,
    dose_at: Option<Spanned<WrittenDuration>>,
    ketamine: Option<RawKetamine>,
    #[serde(default)]
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBaseline {
    spo2: Option<Spanned<f64>>,
    pulse_rate: Option<Spanned<f64>>,
    sys: Option<Spanned<f64>>,
    dia: Option<Spanned<f64>>,
    perfusion_index: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKetamine {
    sys_rise: Option<Spanned<f64>>,
    dia_rise: Option<Spanned<f64>>,
    pr_rise: Option<Spanned<f64>>,
    peak_after: Option<Spanned<WrittenDuration>>,
    duration: Option<Spanned<WrittenDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at: Spanned<WrittenDuration>,
    #[serde(rename = "for")]
    for_: Spanned<WrittenDuration>,
    kind: Spanned<RawKind>,
    spo2: Option<Spanned<f64>>,
    ramp: Option<Spanned<WrittenDuration>>,
    code: Option<Spanned<u8>>,
    device: Option<Spanned<DeviceRole>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawKind {
    Desaturation,
    FingerOut,
    ProbeUnplugged,
    Searching,
    Motion,
    LowBattery,
    CuffError,
    Disconnect,
    Garbage,
}

impl RawKind {
    fn name(self) -> &'static str {
        match self {
            RawKind::Desaturation => "desaturation",
            RawKind::FingerOut => "finger_out",
            RawKind::ProbeUnplugged => "probe_unplugged",
            RawKind::Searching => "searching",
            RawKind::Motion => "motion",
            RawKind::LowBattery => "low_battery",
            RawKind::CuffError => "cuff_error",
            RawKind::Disconnect => "disconnect",
            RawKind::Garbage => "garbage",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation.

const DEFAULT_RAMP: Duration = Duration::from_secs(20);

struct Validator<'a> {
    text: &'a str,
}

impl Validator<'_> {
    fn line(&self, span: Range<usize>) -> Option<usize> {
        Some(line_col(self.text, span.start).0)
    }

    fn invalid(
        &self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        value: impl fmt::Display,
        expected: impl Into<String>,
    ) -> ScenarioError {
        ScenarioError::Invalid {
            line: span.and_then(|s| self.line(s)),
            key: key.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// A number within `lo..=hi`, or `default` when absent.
    fn number(
        &self,
        value: Option<&Spanned<f64>>,
        key: &str,
        (lo, hi): (f64, f64),
        default: f64,
    ) -> Result<f64, ScenarioError> {
        let Some(v) = value else { return Ok(default) };
        let n = *v.get_ref();
        if n.is_finite() && (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(self.invalid(
                Some(v.span()),
                key,
                n,
                format!("a number from {lo} to {hi}"),
            ))
        }
    }

    fn scenario(&self, raw: RawScenario) -> Result<Scenario, ScenarioError> {
        let name = raw.name.get_ref().trim();
        if name.is_empty() {
            return Err(self.invalid(
                Some(raw.name.span()),
                "name",
                format!("{:?}", raw.name.get_ref()),
                "a non-empty name",
            ));
        }
        let acceleration = self.number(
            raw.acceleration.as_ref(),
            "acceleration",
            ACCELERATION_RANGE,
            1.0,
        )?;
        if raw.beds.is_empty() {
            return Err(self.invalid(None, "beds", "[]", "at least one [[beds]] table"));
        }
        let mut beds: Vec<BedScript> = Vec::with_capacity(raw.beds.len());
        for (i, rb) in raw.beds.into_iter().enumerate() {
            let key = format!("beds[{i}].bed");
            let id = rb.bed.get_ref();
            if beds.iter().any(|b| b.bed == *id) {
                return Err(self.invalid(
                    Some(rb.bed.span()),
                    key,
                    format!("{id:?}"),
                    "a bed id not used by another [[beds]] table",
                ));
            }
            beds.push(self.bed(i, rb)?);
        }
        Ok(Scenario {
            name: name.to_owned(),
            acceleration,
            seed: raw.seed.unwrap_or(0),
            beds,
        })
    }

    fn bed(&self, i: usize, raw: RawBed) -> Result<BedScript, ScenarioError> {
        let p = format!("beds[{i}]");
        let id = raw.bed.get_ref();
        let well_formed = id
            .split_once('/')
            .is_some_and(|(room, rec)| !room.is_empty() && !rec.is_empty() && !rec.contains('/'));
        if !well_formed || id.trim() != id {
            return Err(self.invalid(
                Some(raw.bed.span()),
                format!("{p}.bed"),
                format!("{id:?}"),
                "a bed id \"<room>/<recliner>\" such as \"room1/A\"",
            ));
        }
        let baseline = match raw.baseline {
            None => Baseline::default(),
            Some(b) => self.baseline(&p, &b)?,
        };
        let noise = self.number(raw.noise.as_ref(), &format!("{p}.noise"), (0.0, 10.0), 1.0)?;
        let dose_at = raw.dose_at.as_ref().map(|d| d.get_ref().value);
        let ketamine = match raw.ketamine {
            None => Ketamine::default(),
            Some(k) => self.ketamine(&p, &k)?,
        };
        let events = raw
            .events
            .iter()
            .enumerate()
            .map(|(j, e)| self.event(&format!("{p}.events[{j}]"), e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BedScript {
            bed: id.clone(),
            baseline,
            noise,
            dose_at,
            ketamine,
            events,
        })
    }

    fn baseline(&self, p: &str, raw: &RawBaseline) -> Result<Baseline, ScenarioError> {
        let d = Baseline::default();
        let key = |k: &str| format!("{p}.baseline.{k}");
        let b = Baseline {
            spo2: self.number(raw.spo2.as_ref(), &key("spo2"), (50.0, 100.0), d.spo2)?,
            pulse_rate: self.number(
                raw.pulse_rate.as_ref(),
                &key("pulse_rate"),
                (25.0, 250.0),
                d.pulse_rate,
            )?,
            sys: self.number(raw.sys.as_ref(), &key("sys"), (50.0, 260.0), d.sys)?,
            dia: self.number(raw.dia.as_ref(), &key("dia"), (20.0, 200.0), d.dia)?,
            perfusion_index: self.number(
                raw.perfusion_index.as_ref(),
                &key("perfusion_index"),
                (0.02, 20.0),
                d.perfusion_index,
            )?,
        };
        if b.dia >= b.sys {
            return Err(self.invalid(
                raw.dia.as_ref().or(raw.sys.as_ref()).map(Spanned::span),
                key("dia"),
                b.dia,
                format!("a diastolic pressure below the systolic {}", b.sys),
            ));
        }
        Ok(b)
    }

    fn ketamine(&self, p: &str, raw: &RawKetamine) -> Result<Ketamine, ScenarioError> {
        let d = Ketamine::default();
        let key = |k: &str| format!("{p}.ketamine.{k}");
        let rise = (0.0, 100.0);
        let opt_duration = |v: Option<&Spanned<WrittenDuration>>, default: Duration| {
            v.map_or(default, |s| s.get_ref().value)
        };
        let k = Ketamine {
            sys_rise: self.number(raw.sys_rise.as_ref(), &key("sys_rise"), rise, d.sys_rise)?,
            dia_rise: self.number(raw.dia_rise.as_ref(), &key("dia_rise"), rise, d.dia_rise)?,
            pr_rise: self.number(raw.pr_rise.as_ref(), &key("pr_rise"), rise, d.pr_rise)?,
            peak_after: opt_duration(raw.peak_after.as_ref(), d.peak_after),
            duration: opt_duration(raw.duration.as_ref(), d.duration),
        };
        if k.peak_after.is_zero() {
            return Err(self.invalid(
                raw.peak_after.as_ref().map(Spanned::span),
                key("peak_after"),
                format!("{:?}", k.peak_after),
                "a time after the dose, greater than zero",
            ));
        }
        if k.duration <= k.peak_after {
            return Err(self.invalid(
                raw.duration
                    .as_ref()
                    .or(raw.peak_after.as_ref())
                    .map(Spanned::span),
                key("duration"),
                format!("{:?}", k.duration),
                format!("a duration longer than peak_after ({:?})", k.peak_after),
            ));
        }
        Ok(k)
    }

    fn event(&self, p: &str, raw: &RawEvent) -> Result<Event, ScenarioError> {
        let key = |k: &str| format!("{p}.{k}");
        let at = raw.at.get_ref().value;
        let duration = raw.for_.get_ref().value;
        if duration.is_zero() {
            return Err(self.invalid(
                Some(raw.for_.span()),
                key("for"),
                format!("{:?}", raw.for_.get_ref()),
                "a duration greater than zero",
            ));
        }
        let kind = *raw.kind.get_ref();
        // Keys that only make sense for some kinds are errors elsewhere, so a typo'd kind or a
        // misplaced key is caught rather than silently ignored.
        let allowed =
            |k: &str, present: Option<Range<usize>>, ok: bool, for_kinds: &str| match present {
                Some(span) if !ok => Err(self.invalid(
                    Some(span),
                    key(k),
                    format!("(given with kind = {:?})", kind.name()),
                    format!("no {k} key except with kind = {for_kinds}"),
                )),
                _ => Ok(()),
            };
        let takes_device = matches!(
            kind,
            RawKind::Motion | RawKind::LowBattery | RawKind::Disconnect | RawKind::Garbage
        );
        allowed(
            "spo2",
            raw.spo2.as_ref().map(Spanned::span),
            kind == RawKind::Desaturation,
            "\"desaturation\"",
        )?;
        allowed(
            "ramp",
            raw.ramp.as_ref().map(Spanned::span),
            kind == RawKind::Desaturation,
            "\"desaturation\"",
        )?;
        allowed(
            "code",
            raw.code.as_ref().map(Spanned::span),
            kind == RawKind::CuffError,
            "\"cuff_error\"",
        )?;
        allowed(
            "device",
            raw.device.as_ref().map(Spanned::span),
            takes_device,
            "\"motion\", \"low_battery\", \"disconnect\" or \"garbage\"",
        )?;
        let device = raw
            .device
            .as_ref()
            .map_or(DeviceRole::Oximeter, |d| *d.get_ref());
        let kind = match kind {
            RawKind::Desaturation => {
                let Some(spo2) = raw.spo2.as_ref() else {
                    return Err(self.invalid(
                        Some(raw.kind.span()),
                        key("spo2"),
                        "(missing)",
                        "a target spo2 (50 to 99) for a desaturation",
                    ));
                };
                let target = self.number(Some(spo2), &key("spo2"), (50.0, 99.0), 0.0)?;
                let ramp = raw
                    .ramp
                    .as_ref()
                    .map_or(DEFAULT_RAMP, |r| r.get_ref().value);
                EventKind::Desaturation { spo2: target, ramp }
            }
            RawKind::FingerOut => EventKind::FingerOut,
            RawKind::ProbeUnplugged => EventKind::ProbeUnplugged,
            RawKind::Searching => EventKind::Searching,
            RawKind::Motion => EventKind::Motion { device },
            RawKind::LowBattery => EventKind::LowBattery { device },
            RawKind::Disconnect => EventKind::Disconnect { device },
            RawKind::Garbage => EventKind::Garbage { device },
            RawKind::CuffError => {
                let Some(code) = raw.code.as_ref() else {
                    return Err(self.invalid(
                        Some(raw.kind.span()),
                        key("code"),
                        "(missing)",
                        "a SunTech error code (1 to 255) for a cuff_error",
                    ));
                };
                if *code.get_ref() == 0 {
                    return Err(self.invalid(
                        Some(code.span()),
                        key("code"),
                        0,
                        "a SunTech error code from 1 to 255 (0 means no error)",
                    ));
                }
                EventKind::CuffError {
                    code: *code.get_ref(),
                }
            }
        };
        Ok(Event { at, duration, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = include_str!("../../config/scenarios/demo.toml");
    const STEADY: &str = include_str!("../../config/scenarios/steady.toml");

    fn mins(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    /// A one-bed scenario with one event whose body is `event`.
    fn with_event(event: &str) -> String {
        format!("name = \"t\"\n[[beds]]\nbed = \"room1/A\"\n[[beds.events]]\n{event}\n")
    }

    #[test]
    fn the_shipped_demo_scenario_has_every_promised_ingredient() {
        let s = Scenario::parse(DEMO).unwrap();
        assert_eq!(s.name, "demo");
        assert!(s.acceleration > 1.0, "the demo is accelerated");
        let a = s.bed("room1/A").unwrap();
        let b = s.bed("room1/B").unwrap();
        for bed in [a, b] {
            let dose = bed.dose_at.unwrap();
            assert!(
                dose >= mins(1) && dose <= mins(3),
                "{}: dosed at ~2 min",
                bed.bed
            );
        }
        let kinds = |bed: &BedScript| bed.events.iter().map(|e| e.kind).collect::<Vec<_>>();
        assert!(
            kinds(a)
                .iter()
                .any(|k| matches!(k, EventKind::Desaturation { spo2, .. } if *spo2 <= 85.0))
        );
        assert!(
            kinds(a)
                .iter()
                .any(|k| matches!(k, EventKind::Motion { .. }))
        );
        assert!(kinds(b).contains(&EventKind::FingerOut));
        assert!(kinds(b).contains(&EventKind::Disconnect {
            device: DeviceRole::Oximeter
        }));
        let all: Vec<EventKind> = [kinds(a), kinds(b)].concat();
        assert!(
            all.iter()
                .any(|k| matches!(k, EventKind::CuffError { code: 87 }))
        );
        assert!(all.iter().any(|k| matches!(k, EventKind::Garbage { .. })));
        assert!(
            s.real_time(s.settled_at()) < mins(15),
            "the demo plays out in minutes"
        );
    }

    #[test]
    fn the_shipped_steady_scenario_has_two_quiet_beds_with_distinct_values() {
        let s = Scenario::parse(STEADY).unwrap();
        assert_eq!(s.beds.len(), 2);
        for bed in &s.beds {
            assert_eq!(bed.noise, 0.0);
            assert!(bed.events.is_empty());
            assert_eq!(bed.dose_at, None);
        }
        assert_ne!(s.beds[0].baseline, s.beds[1].baseline);
        assert_eq!(s.settled_at(), Duration::ZERO);
    }

    #[test]
    fn a_minimal_file_gets_the_documented_defaults() {
        let s = Scenario::parse("name = \"m\"\n[[beds]]\nbed = \"r/A\"\n").unwrap();
        assert_eq!(s.acceleration, 1.0);
        assert_eq!(s.seed, 0);
        let bed = &s.beds[0];
        assert_eq!(bed.baseline, Baseline::default());
        assert_eq!(bed.noise, 1.0);
        assert_eq!(bed.ketamine, Ketamine::default());
        assert_eq!(bed.dose_at, None);
    }

    #[test]
    fn event_fields_are_read_with_their_defaults() {
        let text = format!(
            "{}\n[[beds.events]]\nat = \"1m\"\nfor = \"5s\"\nkind = \"garbage\"\n\
             [[beds.events]]\nat = \"2m\"\nfor = \"1m\"\nkind = \"cuff_error\"\ncode = 85\n",
            with_event("at = \"3m\"\nfor = \"90s\"\nkind = \"desaturation\"\nspo2 = 84")
        );
        let s = Scenario::parse(&text).unwrap();
        let events = &s.beds[0].events;
        assert_eq!(
            events[0],
            Event {
                at: mins(3),
                duration: Duration::from_secs(90),
                kind: EventKind::Desaturation {
                    spo2: 84.0,
                    ramp: Duration::from_secs(20)
                },
            }
        );
        assert_eq!(
            events[1].kind,
            EventKind::Garbage {
                device: DeviceRole::Oximeter
            }
        );
        assert_eq!(events[2].kind, EventKind::CuffError { code: 85 });
        assert!(events[0].is_on(mins(3)) && !events[0].is_on(Duration::from_secs(270)));
    }

    #[test]
    fn bad_scenario_files_give_errors_naming_the_key_and_value() {
        let bed = "name = \"t\"\n[[beds]]\nbed = \"room1/A\"\n";
        let table: Vec<(String, &[&str])> = vec![
            (format!("colour = 1\n{bed}"), &["colour", "line 1"]),
            (
                with_event("at = \"1m\"\nfor = \"1m\"\nkind = \"motion\"\nseverity = 3"),
                &["severity"],
            ),
            (
                with_event("at = \"1m\"\nfor = \"1m\"\nkind = \"fainting\""),
                &["kind", "fainting", "desaturation"],
            ),
            (
                with_event("at = \"soon\"\nfor = \"1m\"\nkind = \"motion\""),
                &["beds[0].events[0].at", "soon", "line 5"],
            ),
            (
                with_event("at = \"1m\"\nfor = \"0s\"\nkind = \"motion\""),
                &["beds[0].events[0].for", "greater than zero"],
            ),
            (
                format!("acceleration = 0.01\n{bed}"),
                &["acceleration", "0.01", "0.1"],
            ),
            (
                format!("acceleration = 5000\n{bed}"),
                &["acceleration", "5000", "1000"],
            ),
            (format!("{bed}noise = -1\n"), &["beds[0].noise", "-1"]),
            (
                format!("{bed}dose_at = \"2 minutes\"\n"),
                &["beds[0].dose_at", "2 minutes"],
            ),
            (
                with_event("at = \"1m\"\nfor = \"1m\"\nkind = \"desaturation\""),
                &["beds[0].events[0].spo2", "missing"],
            ),
            (
                with_event("at = \"1m\"\nfor = \"1m\"\nkind = \"desaturation\"\nspo2 = 30"),
                &["spo2", "30", "50 to 99"],
            ),
            (
                with_event("at = \"1m\"\nfor = \"1m\"\nkind = \"finger_out\"\ncode = 87"),
                &["beds[0].events[0].code", "finger_out"],
            ),
            (
                with_event("at = \"1m\"\nfor = \"1m\"\nkind = \"cuff_error\"\ncode = 0"),
                &["code", "0"],
            ),
            (
                with_event("at = \"1m\"\nfor = \"1m\"\nkind = \"cuff_error\"\ncode = 300"),
                &["code", "300"],
            ),
            (
                with_event("at = \"1m\"\nfor = \"1m\"\nkind = \"disconnect\"\ndevice = \"ecg\""),
                &["device", "ecg"],
            ),
            (
                with_event("at = \"1m\"\nfor = \"1m\"\nkind = \"searching\"\ndevice = \"bp\""),
                &["device", "searching"],
            ),
            (
                format!("{bed}baseline = {{ sys = 80, dia = 90 }}\n"),
                &["beds[0].baseline.dia", "90", "below the systolic"],
            ),
            (
                format!("{bed}baseline = {{ spo2 = 101 }}\n"),
                &["beds[0].baseline.spo2", "101"],
            ),
            (format!("{bed}baseline = {{ sbp = 120 }}\n"), &["sbp"]),
            (
                format!("{bed}ketamine = {{ peak_after = \"40m\", duration = \"30m\" }}\n"),
                &["beds[0].ketamine.duration", "peak_after"],
            ),
            (
                format!("{bed}ketamine = {{ sys_rise = 500 }}\n"),
                &["beds[0].ketamine.sys_rise", "500"],
            ),
            (
                format!("{bed}[[beds]]\nbed = \"room1/A\"\n"),
                &["beds[1].bed", "room1/A"],
            ),
            (
                "name = \"t\"\n[[beds]]\nbed = \"bedA\"\n".to_owned(),
                &["beds[0].bed", "bedA", "room1/A"],
            ),
            ("name = \"t\"\n".to_owned(), &["beds", "at least one"]),
            (
                "name = \"\"\n[[beds]]\nbed = \"r/A\"\n".to_owned(),
                &["name", "non-empty"],
            ),
            ("[[beds]]\nbed = \"r/A\"\n".to_owned(), &["name"]),
            ("name = [\n".to_owned(), &["line 1"]),
        ];
        for (text, wanted) in &table {
            let err = Scenario::parse(text).unwrap_err().to_string();
            for w in *wanted {
                assert!(err.contains(w), "error for\n{text}\nlacks {w:?}:\n{err}");
            }
        }
    }

    #[test]
    fn loading_a_file_names_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(
            &path,
            "name = \"t\"\nacceleration = 0\n[[beds]]\nbed = \"r/A\"\n",
        )
        .unwrap();
        let err = Scenario::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.toml") && err.contains("line 2: acceleration = 0"),
            "{err}"
        );

        let missing = Scenario::load(&dir.path().join("nope.toml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("cannot read scenario file") && missing.contains("nope.toml"));

        std::fs::write(&path, STEADY).unwrap();
        assert_eq!(
            Scenario::load(&path).unwrap(),
            Scenario::parse(STEADY).unwrap()
        );
    }

    #[test]
    fn acceleration_converts_real_time_to_scenario_time_and_back() {
        let mut s = Scenario::steady(&["r/A"]);
        s.acceleration = 10.0;
        assert_eq!(s.scenario_time(Duration::from_secs(6)), mins(1));
        assert_eq!(s.real_time(mins(1)), Duration::from_secs(6));
        assert_eq!(
            s.scenario_time(Duration::MAX),
            Duration::MAX,
            "saturates, never panics"
        );
    }

    #[test]
    fn the_built_in_steady_scenario_drives_the_named_beds_without_noise() {
        let s = Scenario::steady(&["room1/A", "room1/B"]);
        assert_eq!(s.beds.len(), 2);
        let b = s.bed("room1/B").unwrap();
        assert_eq!((b.noise, b.dose_at, b.events.len()), (0.0, None, 0));
        assert!(s.bed("room2/A").is_none());
    }

    #[test]
    fn settled_at_covers_the_dose_response_and_desaturation_recovery() {
        let dosed = Scenario::parse(
            "name = \"t\"\n[[beds]]\nbed = \"r/A\"\ndose_at = \"2m\"\n\
             ketamine = { peak_after = \"10m\", duration = \"20m\" }\n",
        )
        .unwrap();
        assert_eq!(dosed.settled_at(), mins(22));
        let desat = Scenario::parse(&with_event(
            "at = \"30m\"\nfor = \"1m\"\nkind = \"desaturation\"\nspo2 = 85\nramp = \"30s\"",
        ))
        .unwrap();
        assert_eq!(desat.settled_at(), Duration::from_secs(31 * 60 + 30));
    }
}
