//! Discharge readiness: whether a bed's vitals have been back within a margin of the pre-dose
//! baseline for long enough. Pure: no clock, no I/O; the API feeds it the bed's recent readings.
//!
//! The defaults ([`ReadinessMargins::default`]) are clinic-owned starting points, not clinical
//! advice: SpO2 at least 94 % or within 2 points of baseline; systolic within 20 and diastolic
//! within 10 mmHg of baseline; pulse rate within 20 /min of baseline; all of it sustained for
//! 15 minutes. Rules (docs/storage.md):
//! - SpO2 and pulse rate come from the oximeter, which reports continuously: an out-of-margin
//!   value or an invalid one (no finger, sensor off) restarts the clock, because the patient was
//!   not observed then.
//! - Blood pressure comes every few minutes: an out-of-margin value restarts the clock; a failed
//!   measurement (invalid) does not, but a valid sys and dia are needed within the sustain window.
//! - Pulse rate and BP need a baseline; without one the bed is not ready and the reason says so.

use crate::alarm::Baseline;
use crate::clock::rfc3339_ms;
use crate::model::Metric;
use serde::{Deserialize, Serialize};

/// The metrics readiness looks at.
pub const METRICS: [Metric; 4] = [
    Metric::Spo2,
    Metric::PulseRate,
    Metric::NibpSys,
    Metric::NibpDia,
];

/// One reading as readiness sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Receive time, Unix ms.
    pub t_ms: i64,
    pub metric: Metric,
    /// None when the device marked it invalid.
    pub value: Option<f64>,
}

/// The margins (clinic-owned; see the module doc for the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadinessMargins {
    /// SpO2 at or above this is fine whatever the baseline, %.
    pub spo2_floor: f64,
    /// Or SpO2 at most this far below the baseline, points.
    pub spo2_below_baseline: f64,
    /// Systolic within this of baseline, mmHg.
    pub sys: f64,
    /// Diastolic within this of baseline, mmHg.
    pub dia: f64,
    /// Pulse rate within this of baseline, /min.
    pub pulse_rate: f64,
    /// How long everything must have been within margin, ms.
    pub sustain_ms: i64,
    /// The latest SpO2 must be at most this old, ms.
    pub spo2_max_age_ms: i64,
}

impl Default for ReadinessMargins {
    fn default() -> Self {
        ReadinessMargins {
            spo2_floor: 94.0,
            spo2_below_baseline: 2.0,
            sys: 20.0,
            dia: 10.0,
            pulse_rate: 20.0,
            sustain_ms: 15 * 60 * 1000,
            spo2_max_age_ms: 60 * 1000,
        }
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// Every rule holds.
    pub ready: bool,
    /// Since when everything has been within margin (None: not within margin now).
    pub since_ms: Option<i64>,
    /// Why not ready (empty when ready).
    pub reasons: Vec<String>,
}

enum Verdict {
    In,
    Out(String),
    Neutral,
}

fn judge(s: &Sample, b: Option<&Baseline>, m: &ReadinessMargins) -> Verdict {
    let at = rfc3339_ms(s.t_ms);
    let within = |v: f64, base: Option<f64>, margin: f64, what: &str| match base {
        Some(base) if (v - base).abs() <= margin => Verdict::In,
        Some(base) => Verdict::Out(format!(
            "{what} {v} at {at} is more than {margin} from baseline {base}"
        )),
        None => Verdict::Neutral,
    };
    match (s.metric, s.value) {
        (Metric::Spo2, None) => Verdict::Out(format!("spo2 had no valid value at {at}")),
        (Metric::PulseRate, None) => Verdict::Out(format!("pulse rate had no valid value at {at}")),
        (_, None) => Verdict::Neutral,
        (Metric::Spo2, Some(v)) => {
            let base = b.and_then(|b| b.spo2);
            if v >= m.spo2_floor || base.is_some_and(|base| v >= base - m.spo2_below_baseline) {
                Verdict::In
            } else {
                Verdict::Out(format!(
                    "spo2 {v} at {at} is below {} and more than {} under baseline{}",
                    m.spo2_floor,
                    m.spo2_below_baseline,
                    base.map(|b| format!(" {b}"))
                        .unwrap_or_else(|| " (none)".into())
                ))
            }
        }
        (Metric::PulseRate, Some(v)) => {
            within(v, b.and_then(|b| b.pulse_rate), m.pulse_rate, "pulse rate")
        }
        (Metric::NibpSys, Some(v)) => within(v, b.and_then(|b| b.sys), m.sys, "systolic"),
        (Metric::NibpDia, Some(v)) => within(v, b.and_then(|b| b.dia), m.dia, "diastolic"),
        _ => Verdict::Neutral,
    }
}

/// Whether the bed is ready for discharge at `now_ms`, given its baseline and its readings
/// (any order; metrics other than [`METRICS`] are ignored).
pub fn readiness(
    baseline: Option<&Baseline>,
    samples: &[Sample],
    margins: &ReadinessMargins,
    now_ms: i64,
) -> Readiness {
    let mut reasons = Vec::new();
    match baseline {
        None => reasons.push("no baseline captured".to_owned()),
        Some(b) => {
            for (name, v) in [
                ("pulse rate", b.pulse_rate),
                ("systolic", b.sys),
                ("diastolic", b.dia),
            ] {
                if v.is_none() {
                    reasons.push(format!("baseline has no {name}"));
                }
            }
        }
    }
    let mut sorted: Vec<&Sample> = samples
        .iter()
        .filter(|s| METRICS.contains(&s.metric) && s.t_ms <= now_ms)
        .collect();
    sorted.sort_by_key(|s| s.t_ms);
    // Each metric on its own: it is out of margin from an out-of-margin reading until its next
    // in-margin one (a systolic stays out until the next cuff reading, whatever the oximeter
    // says meanwhile), and its in-margin streak starts at its first in-margin reading after
    // that. The bed is within margins once every metric is, since the latest streak start.
    let mut streak: [Option<i64>; METRICS.len()] = [None; METRICS.len()];
    let mut out_now: [Option<String>; METRICS.len()] = Default::default();
    for s in &sorted {
        let Some(i) = METRICS.iter().position(|m| *m == s.metric) else {
            continue;
        };
        match judge(s, baseline, margins) {
            Verdict::In => {
                out_now[i] = None;
                streak[i].get_or_insert(s.t_ms);
            }
            Verdict::Out(why) => {
                streak[i] = None;
                out_now[i] = Some(why);
            }
            Verdict::Neutral => {}
        }
    }
    // Every metric out of margin now is named, in METRICS order.
    reasons.extend(out_now.iter().flatten().cloned());
    let since = if out_now.iter().any(Option::is_some) {
        None
    } else {
        streak.iter().flatten().copied().max()
    };
    let window_start = now_ms - margins.sustain_ms;
    let last_spo2 = sorted
        .iter()
        .rev()
        .find(|s| s.metric == Metric::Spo2 && s.value.is_some());
    match last_spo2 {
        None => reasons.push("no valid spo2 reading".to_owned()),
        Some(s) if now_ms - s.t_ms > margins.spo2_max_age_ms => reasons.push(format!(
            "latest spo2 is from {}, older than {} s",
            rfc3339_ms(s.t_ms),
            margins.spo2_max_age_ms / 1000
        )),
        Some(_) => {}
    }
    for (metric, name) in [
        (Metric::NibpSys, "systolic"),
        (Metric::NibpDia, "diastolic"),
    ] {
        if !sorted
            .iter()
            .any(|s| s.metric == metric && s.value.is_some() && s.t_ms >= window_start)
        {
            reasons.push(format!(
                "no valid {name} pressure in the last {} min",
                margins.sustain_ms / 60_000
            ));
        }
    }
    if let Some(t) = since
        && t > window_start
    {
        reasons.push(format!(
            "within margins since {} ({} of {} min)",
            rfc3339_ms(t),
            (now_ms - t).max(0) / 60_000,
            margins.sustain_ms / 60_000
        ));
    }
    Readiness {
        ready: reasons.is_empty(),
        since_ms: since,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn baseline() -> Baseline {
        Baseline {
            sys: Some(120.0),
            dia: Some(80.0),
            pulse_rate: Some(70.0),
            spo2: Some(97.0),
        }
    }

    /// 20 minutes of readings every 30 s ending at `now`: SpO2/PR each time, BP every 5 min;
    /// `tweak` edits each sample.
    fn session(now: i64, mut tweak: impl FnMut(&mut Sample)) -> Vec<Sample> {
        let mut v = Vec::new();
        let mut t = now - 20 * MIN;
        while t <= now {
            let mut push = |metric, value: f64| {
                let mut s = Sample {
                    t_ms: t,
                    metric,
                    value: Some(value),
                };
                tweak(&mut s);
                v.push(s);
            };
            push(Metric::Spo2, 96.0);
            push(Metric::PulseRate, 78.0);
            if (t - (now - 20 * MIN)) % (5 * MIN) == 0 {
                push(Metric::NibpSys, 130.0);
                push(Metric::NibpDia, 85.0);
            }
            t += 30_000;
        }
        v
    }

    #[test]
    fn vitals_within_margins_for_fifteen_minutes_make_the_bed_ready() {
        let now = 100 * MIN;
        let r = readiness(
            Some(&baseline()),
            &session(now, |_| {}),
            &ReadinessMargins::default(),
            now,
        );
        assert!(r.ready, "{:?}", r.reasons);
        assert_eq!(r.since_ms, Some(now - 20 * MIN));
    }

    #[test]
    fn each_rule_that_fails_is_named_in_the_reasons() {
        let now = 100 * MIN;
        let m = ReadinessMargins::default();
        // (what to change 10 minutes ago, expected words in a reason)
        type Change = fn(&mut Sample);
        let cases: [(Change, &str); 5] = [
            (
                |s| {
                    if s.metric == Metric::Spo2 {
                        s.value = Some(91.0)
                    }
                },
                "spo2 91",
            ),
            (
                |s| {
                    if s.metric == Metric::PulseRate {
                        s.value = Some(95.0)
                    }
                },
                "pulse rate 95",
            ),
            (
                |s| {
                    if s.metric == Metric::NibpSys {
                        s.value = Some(145.0)
                    }
                },
                "systolic 145",
            ),
            (
                |s| {
                    if s.metric == Metric::NibpDia {
                        s.value = Some(95.0)
                    }
                },
                "diastolic 95",
            ),
            (
                |s| {
                    if s.metric == Metric::Spo2 {
                        s.value = None
                    }
                },
                "spo2 had no valid value",
            ),
        ];
        for (change, words) in cases {
            let samples = session(now, |s| {
                if s.t_ms == now - 10 * MIN {
                    change(s)
                }
            });
            let r = readiness(Some(&baseline()), &samples, &m, now);
            assert!(!r.ready, "{words}");
            // The clock restarted after the bad value.
            assert!(
                r.since_ms.is_some_and(|t| t > now - 10 * MIN),
                "{words}: {r:?}"
            );
            assert!(
                r.reasons.iter().any(|x| x.contains("within margins since")),
                "{words}: {r:?}"
            );
            // And a bad value right now is named.
            let samples = session(now, |s| {
                if s.t_ms == now {
                    change(s)
                }
            });
            let r = readiness(Some(&baseline()), &samples, &m, now);
            assert!(!r.ready && r.since_ms.is_none(), "{words}: {r:?}");
            assert!(
                r.reasons.iter().any(|x| x.contains(words)),
                "{words}: {r:?}"
            );
        }
    }

    #[test]
    fn a_systolic_out_of_margin_stays_named_while_later_spo2_readings_are_fine() {
        // Issue 9: BP every 15 min; the last systolic (10 min ago) is 150, baseline 120; SpO2
        // and pulse rate in margin every 30 s since. The reason must stay the systolic.
        let now = 100 * MIN;
        let samples: Vec<Sample> = session(now, |_| {})
            .into_iter()
            .filter(|s| {
                !matches!(s.metric, Metric::NibpSys | Metric::NibpDia) || s.t_ms == now - 20 * MIN
            })
            .chain([
                Sample {
                    t_ms: now - 10 * MIN,
                    metric: Metric::NibpSys,
                    value: Some(150.0),
                },
                Sample {
                    t_ms: now - 10 * MIN,
                    metric: Metric::NibpDia,
                    value: Some(85.0),
                },
            ])
            .collect();
        let r = readiness(
            Some(&baseline()),
            &samples,
            &ReadinessMargins::default(),
            now,
        );
        assert!(!r.ready);
        assert_eq!(r.since_ms, None, "{r:?}");
        assert!(
            r.reasons.iter().any(|x| x.contains("systolic 150")),
            "{r:?}"
        );
        assert!(
            !r.reasons.iter().any(|x| x.contains("within margins since")),
            "{r:?}"
        );
    }

    #[test]
    fn every_metric_out_of_margin_is_named_for_as_long_as_it_is() {
        // Constructed: at now-10 min the systolic goes to 150 and the pulse rate to 95; the
        // pulse rate comes back at now-5 min, the systolic only with the next cuff reading.
        let now = 100 * MIN;
        let m = ReadinessMargins::default();
        let with = |pr_back_at: i64, sys_back_at: Option<i64>| {
            let mut v: Vec<Sample> = session(now, |s| {
                if s.metric == Metric::PulseRate && s.t_ms >= now - 10 * MIN && s.t_ms < pr_back_at
                {
                    s.value = Some(95.0);
                }
            })
            .into_iter()
            .filter(|s| s.metric != Metric::NibpSys || s.t_ms < now - 10 * MIN)
            .collect();
            v.push(Sample {
                t_ms: now - 10 * MIN,
                metric: Metric::NibpSys,
                value: Some(150.0),
            });
            if let Some(t) = sys_back_at {
                v.push(Sample {
                    t_ms: t,
                    metric: Metric::NibpSys,
                    value: Some(125.0),
                });
            }
            v
        };
        // Both out now: both named.
        let r = readiness(Some(&baseline()), &with(now + 1, None), &m, now);
        assert!(
            r.reasons.iter().any(|x| x.contains("systolic 150")),
            "{r:?}"
        );
        assert!(
            r.reasons.iter().any(|x| x.contains("pulse rate 95")),
            "{r:?}"
        );
        assert_eq!(r.since_ms, None);
        // Pulse rate back in margin: the systolic is still named, the pulse rate no longer.
        let r = readiness(Some(&baseline()), &with(now - 5 * MIN, None), &m, now);
        assert!(
            r.reasons.iter().any(|x| x.contains("systolic 150")),
            "{r:?}"
        );
        assert!(!r.reasons.iter().any(|x| x.contains("pulse rate")), "{r:?}");
        assert_eq!(r.since_ms, None);
        // The systolic back at now-2 min: within margins since then, not since the pulse rate.
        let r = readiness(
            Some(&baseline()),
            &with(now - 5 * MIN, Some(now - 2 * MIN)),
            &m,
            now,
        );
        assert!(
            !r.reasons.iter().any(|x| x.contains("systolic 150")),
            "{r:?}"
        );
        assert_eq!(r.since_ms, Some(now - 2 * MIN), "{r:?}");
        assert!(
            r.reasons.iter().any(|x| x.contains("within margins since")),
            "{r:?}"
        );
    }

    #[test]
    fn spo2_below_the_floor_but_near_a_low_baseline_is_within_margin() {
        let now = 100 * MIN;
        let b = Baseline {
            spo2: Some(93.0),
            ..baseline()
        };
        let samples = session(now, |s| {
            if s.metric == Metric::Spo2 {
                s.value = Some(91.0)
            }
        });
        let r = readiness(Some(&b), &samples, &ReadinessMargins::default(), now);
        assert!(r.ready, "{:?}", r.reasons);
    }

    #[test]
    fn without_a_baseline_or_recent_data_the_bed_is_not_ready() {
        let now = 100 * MIN;
        let r = readiness(
            None,
            &session(now, |_| {}),
            &ReadinessMargins::default(),
            now,
        );
        assert!(!r.ready);
        assert!(
            r.reasons.contains(&"no baseline captured".to_owned()),
            "{r:?}"
        );
        let r = readiness(Some(&baseline()), &[], &ReadinessMargins::default(), now);
        assert!(!r.ready);
        assert!(
            r.reasons.iter().any(|x| x.contains("no valid spo2")),
            "{r:?}"
        );
        assert!(
            r.reasons.iter().any(|x| x.contains("no valid systolic")),
            "{r:?}"
        );
        let stale = session(now - 10 * MIN, |_| {});
        let r = readiness(Some(&baseline()), &stale, &ReadinessMargins::default(), now);
        assert!(r.reasons.iter().any(|x| x.contains("latest spo2")), "{r:?}");
    }

    #[test]
    fn a_failed_cuff_measurement_does_not_restart_the_clock() {
        let now = 100 * MIN;
        let samples = session(now, |s| {
            if s.metric == Metric::NibpSys && s.t_ms == now - 5 * MIN {
                s.value = None;
            }
        });
        let r = readiness(
            Some(&baseline()),
            &samples,
            &ReadinessMargins::default(),
            now,
        );
        assert!(r.ready, "{:?}", r.reasons);
    }
}
