//! Per-bed limit rules and the pre-dose baseline, plus the preset file format.
//!
//! A preset is TOML with one `[[rule]]` table per limit (see
//! `config/presets/ketamine-session.toml`):
//!
//! ```toml
//! [[rule]]
//! metric = "spo2"
//! direction = "low"
//! threshold = 90            # or above_baseline = 40 / below_baseline = 20
//! priority = "medium"
//! delay = "10s"             # condition delay (sustained-for); default "0s"
//! hysteresis = 1            # default 0
//! severe = { threshold = 85, priority = "high" }
//! ```

use super::Metric;
use super::condition::{Condition, Direction, Priority};
use super::time::{fmt_duration, parse_duration};
use serde::{Deserialize, Serialize, Serializer};
use std::time::Duration;

/// The longest condition delay a rule may have: a longer one would hide a real event.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// Where the limit is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    /// A fixed value in the metric's unit.
    Absolute(f64),
    /// Baseline plus this much (direction `high`); inactive without a baseline.
    AboveBaseline(f64),
    /// Baseline minus this much (direction `low`); inactive without a baseline.
    BelowBaseline(f64),
}

/// The band beyond the limit that alarms at once (no delay) at its own priority.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Severe {
    /// Absolute value, beyond which (strictly) the severe priority applies.
    pub threshold: f64,
    pub priority: Priority,
}

/// One limit of one bed. Serializes (and reads back, for the saved alarm state) with the
/// delay in the config syntax (`"10s"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LimitRule {
    pub metric: Metric,
    pub direction: Direction,
    pub threshold: Threshold,
    pub priority: Priority,
    /// Condition delay: how long the value must stay beyond the limit before it alarms.
    #[serde(serialize_with = "ser_duration", deserialize_with = "de_duration")]
    pub delay: Duration,
    /// How far back inside the limit the value must come before the alarm clears.
    pub hysteresis: f64,
    pub severe: Option<Severe>,
}

impl LimitRule {
    /// The condition this rule raises (unique per bed).
    pub fn condition(&self) -> Condition {
        Condition::Limit {
            metric: self.metric,
            direction: self.direction,
            relative: !matches!(self.threshold, Threshold::Absolute(_)),
        }
    }

    /// The threshold in force, or `None` for a relative rule without a baseline value.
    pub fn effective(&self, baseline: &Baseline) -> Option<f64> {
        match self.threshold {
            Threshold::Absolute(t) => Some(t),
            Threshold::AboveBaseline(d) => baseline.get(self.metric).map(|b| b + d),
            Threshold::BelowBaseline(d) => baseline.get(self.metric).map(|b| b - d),
        }
    }

    /// Whether `v` is strictly beyond `limit` on this rule's side.
    pub fn beyond(&self, v: f64, limit: f64) -> bool {
        match self.direction {
            Direction::Low => v < limit,
            Direction::High => v > limit,
        }
    }

    /// Whether `v` is back inside `limit` by at least the hysteresis.
    pub fn clears(&self, v: f64, limit: f64) -> bool {
        match self.direction {
            Direction::Low => v >= limit + self.hysteresis,
            Direction::High => v <= limit - self.hysteresis,
        }
    }

    /// The severe priority if `v` is in the severe band.
    pub fn severe_priority(&self, v: f64) -> Option<Priority> {
        let s = self.severe?;
        self.beyond(v, s.threshold).then_some(s.priority)
    }
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{}", fmt_duration(*d)))
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Every limit rule of one bed. At most one rule per condition (metric, direction, relative).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BedLimits {
    pub rules: Vec<LimitRule>,
}

/// The patient's pre-dose values, which relative limits are measured from.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub sys: Option<f64>,
    pub dia: Option<f64>,
    pub pulse_rate: Option<f64>,
    pub spo2: Option<f64>,
}

impl BedLimits {
    /// The metrics every bed must guard: a limit set without a rule for one of them switches
    /// off that metric's physiological alarms, and is accepted only when an admin confirms it.
    pub const GUARDED: [Metric; 2] = [Metric::Spo2, Metric::PulseRate];

    /// The guarded metrics (`GUARDED`) this set has no rule for.
    pub fn unguarded(&self) -> Vec<Metric> {
        Self::GUARDED
            .into_iter()
            .filter(|m| !self.rules.iter().any(|r| r.metric == *m))
            .collect()
    }

    /// Checks every rule and that no two rules raise the same condition. Errors name the rule
    /// (1-based) and quote the bad value.
    pub fn validate(&self) -> Result<(), LimitsError> {
        for (i, rule) in self.rules.iter().enumerate() {
            let err = |message: String| LimitsError::Rule {
                rule: i + 1,
                metric: rule.metric.name().to_owned(),
                message,
            };
            validate_rule(rule).map_err(err)?;
            if self.rules[..i]
                .iter()
                .any(|o| o.condition() == rule.condition())
            {
                return Err(err(format!(
                    "expected one rule per condition, found a second {:?}",
                    rule.condition().to_string()
                )));
            }
        }
        Ok(())
    }
}

impl Baseline {
    /// The baseline value of `metric`, if the baseline has one for it.
    pub fn get(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::NibpSys => self.sys,
            Metric::NibpDia => self.dia,
            Metric::PulseRate => self.pulse_rate,
            Metric::Spo2 => self.spo2,
            _ => None,
        }
    }

    /// The fields with their names, for validation messages.
    pub fn fields(&self) -> [(&'static str, Option<f64>); 4] {
        [
            ("sys", self.sys),
            ("dia", self.dia),
            ("pulse_rate", self.pulse_rate),
            ("spo2", self.spo2),
        ]
    }
}

/// Why a preset was refused. Each message names the rule (1-based) and quotes the bad value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitsError {
    /// Not valid TOML or not the expected shape (unknown key, wrong type, unknown metric).
    #[error("limits file: {0}")]
    Syntax(String),
    /// A rule's value failed validation.
    #[error("rule {rule} ({metric}): {message}")]
    Rule {
        rule: usize,
        metric: String,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    metric: Metric,
    direction: Direction,
    threshold: Option<f64>,
    above_baseline: Option<f64>,
    below_baseline: Option<f64>,
    priority: Priority,
    delay: Option<String>,
    hysteresis: Option<f64>,
    severe: Option<Severe>,
}

/// Reads and validates a preset (TOML, `[[rule]]` tables). Errors say which rule, which key and
/// what was expected, quoting the bad value.
pub fn parse_limits(text: &str) -> Result<BedLimits, LimitsError> {
    let raw: RawLimits = toml::from_str(text).map_err(|e| LimitsError::Syntax(e.to_string()))?;
    from_raw(raw)
}

/// The same format as JSON (`{"rule": [{...}, ...]}`), for `PUT /api/beds/.../limits`.
pub fn parse_limits_json(json: &[u8]) -> Result<BedLimits, LimitsError> {
    let raw: RawLimits =
        serde_json::from_slice(json).map_err(|e| LimitsError::Syntax(e.to_string()))?;
    from_raw(raw)
}

fn from_raw(raw: RawLimits) -> Result<BedLimits, LimitsError> {
    let mut rules = Vec::with_capacity(raw.rule.len());
    for (i, r) in raw.rule.into_iter().enumerate() {
        let err = |message: String| LimitsError::Rule {
            rule: i + 1,
            metric: r.metric.name().to_owned(),
            message,
        };
        let threshold = match (r.threshold, r.above_baseline, r.below_baseline) {
            (Some(t), None, None) => Threshold::Absolute(t),
            (None, Some(d), None) => Threshold::AboveBaseline(d),
            (None, None, Some(d)) => Threshold::BelowBaseline(d),
            _ => {
                return Err(err(
                    "expected exactly one of threshold, above_baseline, below_baseline".into(),
                ));
            }
        };
        let delay = match &r.delay {
            Some(text) => parse_duration(text).map_err(|e| err(format!("delay: {e}")))?,
            None => Duration::ZERO,
        };
        let rule = LimitRule {
            metric: r.metric,
            direction: r.direction,
            threshold,
            priority: r.priority,
            delay,
            hysteresis: r.hysteresis.unwrap_or(0.0),
            severe: r.severe,
        };
        rules.push(rule);
    }
    let limits = BedLimits { rules };
    limits.validate()?;
    Ok(limits)
}

/// Checks one rule; the message quotes the bad value. Also used by `set_limits` callers.
pub fn validate_rule(r: &LimitRule) -> Result<(), String> {
    if r.metric.is_waveform() {
        return Err(format!(
            "expected a numeric metric, found waveform {:?}",
            r.metric.name()
        ));
    }
    let t = match r.threshold {
        Threshold::Absolute(t) => t,
        Threshold::AboveBaseline(d) | Threshold::BelowBaseline(d) => {
            if !matches!(
                r.metric,
                Metric::NibpSys | Metric::NibpDia | Metric::PulseRate | Metric::Spo2
            ) {
                return Err(format!(
                    "expected a baseline metric (nibp_sys, nibp_dia, pulse_rate, spo2) for a relative limit, found {:?}",
                    r.metric.name()
                ));
            }
            let dir_ok = matches!(
                (r.threshold, r.direction),
                (Threshold::AboveBaseline(_), Direction::High)
                    | (Threshold::BelowBaseline(_), Direction::Low)
            );
            if !dir_ok {
                return Err(
                    "expected above_baseline with direction high or below_baseline with direction low"
                        .into(),
                );
            }
            if !(d.is_finite() && d > 0.0) {
                return Err(format!("expected a baseline offset above zero, found {d}"));
            }
            d
        }
    };
    if !t.is_finite() {
        return Err(format!("expected a finite threshold, found {t}"));
    }
    let percent = matches!(r.metric, Metric::Spo2 | Metric::Battery);
    if percent && matches!(r.threshold, Threshold::Absolute(_)) && !(0.0..=100.0).contains(&t) {
        return Err(format!("expected a threshold in 0..=100 %, found {t}"));
    }
    if !(r.hysteresis.is_finite() && r.hysteresis >= 0.0) {
        return Err(format!(
            "expected a hysteresis of zero or more, found {}",
            r.hysteresis
        ));
    }
    if r.delay > MAX_DELAY {
        return Err(format!(
            "expected a delay of at most {}, found {}",
            fmt_duration(MAX_DELAY),
            fmt_duration(r.delay)
        ));
    }
    if let Some(s) = r.severe {
        if !s.threshold.is_finite() {
            return Err(format!(
                "expected a finite severe threshold, found {}",
                s.threshold
            ));
        }
        if let Threshold::Absolute(t) = r.threshold
            && !r.beyond(s.threshold, t)
            && s.threshold != t
        {
            return Err(format!(
                "expected the severe threshold beyond the limit {t}, found {}",
                s.threshold
            ));
        }
        if s.priority < r.priority {
            return Err(format!(
                "expected a severe priority at least {:?}, found {:?}",
                r.priority, s.priority
            ));
        }
    }
    Ok(())
}
