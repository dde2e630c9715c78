//! The summary table of the HTML report.

use super::text::{hm, num, unit_of};
use super::{SessionRecord, Zone};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The summary table of the partner: per vital sign the pre-dose baseline, the peak (the
/// lowest SpO2, the highest of the others) and its time, how long its physiological alarms
/// were active (time outside limits), and the value at discharge (the last one while still
/// admitted) with its change from the baseline; then the alarms raised by priority.
pub(super) fn summary(
    rec: &SessionRecord,
    spo2: &[(i64, f64)],
    pr: &[(i64, f64)],
    sys: &[(i64, f64)],
    dia: &[(i64, f64)],
    off: &Zone,
) -> String {
    let s = &rec.session;
    let base = s.baseline();
    let end = s
        .discharged_ms
        .unwrap_or_else(|| rec.readings.last().map_or(s.admitted_ms, |r| r.received_ms));
    // Alarms by priority, and per metric the time its physiological alarms were active
    // (raised to cleared or latched; still active at the end counts to the end).
    // An alarm counts once, by the highest priority it reached (raised medium, escalated to
    // high: one high).
    let mut by_prio: BTreeMap<&str, u32> = BTreeMap::new();
    let rank = |p: &str| match p {
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    };
    let mut highest: BTreeMap<u64, &str> = BTreeMap::new();
    let mut raised_at: BTreeMap<u64, (i64, &str)> = BTreeMap::new();
    let mut outside: BTreeMap<&str, i64> = BTreeMap::new();
    let metric_of = |c: &str| -> Option<&'static str> {
        if unit_of(c).is_empty() {
            return None;
        }
        [
            "spo2",
            "pulse_rate",
            "nibp_sys",
            "nibp_dia",
            "nibp_mean",
            "perfusion_index",
        ]
        .into_iter()
        .find(|m| c.starts_with(m))
    };
    for a in &rec.alarms {
        let e = &a.event;
        let metric = e.condition.as_deref().and_then(metric_of);
        match e.kind.as_str() {
            "raised" => {
                let p = e.priority.as_deref().unwrap_or("?");
                match e.alarm_id {
                    Some(id) => {
                        let h = highest.entry(id).or_insert(p);
                        if rank(p) > rank(h) {
                            *h = p;
                        }
                    }
                    None => *by_prio.entry(p).or_default() += 1,
                }
                if let (Some(m), Some(id)) = (metric, e.alarm_id) {
                    raised_at.insert(id, (e.at_ms, m));
                }
            }
            "updated" => {
                if let (Some(h), Some(p)) = (
                    e.alarm_id.and_then(|id| highest.get_mut(&id)),
                    e.priority.as_deref(),
                ) && rank(p) > rank(h)
                {
                    *h = p;
                }
            }
            "cleared" | "latched" => {
                if let Some((t, m)) = e.alarm_id.and_then(|id| raised_at.remove(&id)) {
                    *outside.entry(m).or_default() += e.at_ms - t;
                }
            }
            _ => {}
        }
    }
    for p in highest.values() {
        *by_prio.entry(p).or_default() += 1;
    }
    for (t, m) in raised_at.values() {
        *outside.entry(m).or_default() += (end - t).max(0);
    }
    // SpO2 and pulse rate come every second or so: their time outside limits is counted from
    // the readings against the limits their alarms named (so the alarm delay counts too). A
    // metric with no alarm keeps the alarm time (none).
    let limit_of = |condition: &str| -> Option<f64> {
        rec.alarms
            .iter()
            .filter(|a| a.event.kind == "raised" && a.event.condition.as_deref() == Some(condition))
            .find_map(|a| {
                serde_json::from_str::<Value>(&a.event.json)
                    .ok()
                    .and_then(|j| j["alarm"]["limit"].as_f64())
            })
    };
    for (metric, v) in [("spo2", spo2), ("pulse_rate", pr)] {
        let low = limit_of(&format!("{metric}_low"));
        let high = limit_of(&format!("{metric}_high"));
        if low.is_none() && high.is_none() {
            continue;
        }
        let out = |x: f64| low.is_some_and(|l| x < l) || high.is_some_and(|h| x > h);
        let ms: i64 = v
            .windows(2)
            .filter(|w| out(w[0].1))
            .map(|w| (w[1].0 - w[0].0).clamp(0, 5_000))
            .sum();
        outside.insert(metric, ms);
    }
    let mmss = |ms: i64| -> String {
        if ms <= 0 {
            "none".into()
        } else if ms < 60_000 {
            format!("{} s", ms / 1000)
        } else {
            format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000)
        }
    };
    let short = end - s.admitted_ms < 15 * 60_000;
    let peak = |v: &[(i64, f64)], low: bool| -> String {
        let best = if low {
            v.iter().min_by(|a, b| a.1.total_cmp(&b.1))
        } else {
            v.iter().max_by(|a, b| a.1.total_cmp(&b.1))
        };
        best.map(|(t, x)| {
            format!(
                "{} {} at {}",
                if low { "lowest" } else { "highest" },
                num(*x),
                hm(*t, off, short)
            )
        })
        .unwrap_or_else(|| "no value".into())
    };
    let at_end = |v: &[(i64, f64)], b: Option<f64>| -> String {
        match (v.last(), b) {
            (Some((_, x)), Some(b)) => {
                let d = (x - b).round();
                let change = if d == 0.0 {
                    "same as baseline".to_owned()
                } else {
                    format!("{:+} vs baseline", d as i64)
                };
                format!("{} ({change})", num(*x))
            }
            (Some((_, x)), None) => format!("{} (no baseline)", num(*x)),
            (None, _) => "no value".into(),
        }
    };
    let bl = |x: Option<f64>| x.map(num).unwrap_or_else(|| "not captured".into());
    let last_head = if s.discharged_ms.is_some() {
        "At discharge"
    } else {
        "Latest (still admitted)"
    };
    let mut h = format!(
        "<table class=summary><tr><th></th><th>Pre-dose baseline</th><th>Peak (time)</th>\
         <th>Time outside limits</th><th>{last_head}</th></tr>"
    );
    let b = base.as_ref();
    let rows = [
        ("SpO2 %", "spo2", b.and_then(|b| b.spo2), spo2, true),
        (
            "Pulse rate /min",
            "pulse_rate",
            b.and_then(|b| b.pulse_rate),
            pr,
            false,
        ),
        (
            "Systolic BP mmHg",
            "nibp_sys",
            b.and_then(|b| b.sys),
            sys,
            false,
        ),
        (
            "Diastolic BP mmHg",
            "nibp_dia",
            b.and_then(|b| b.dia),
            dia,
            false,
        ),
    ];
    for (name, metric, baseline, v, low) in rows {
        let _ = write!(
            h,
            "<tr><th>{name}</th><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            bl(baseline),
            peak(v, low),
            mmss(outside.get(metric).copied().unwrap_or(0)),
            at_end(v, baseline)
        );
    }
    let total: i64 = outside.values().sum();
    let any_reading_based = ["spo2", "pulse_rate"].iter().any(|m| {
        limit_of(&format!("{m}_low")).is_some() || limit_of(&format!("{m}_high")).is_some()
    });
    let prio: Vec<String> = ["high", "medium", "low"]
        .iter()
        .map(|p| format!("{} {p}", by_prio.get(p).copied().unwrap_or(0)))
        .collect();
    let _ = write!(
        h,
        "<tr><th>Alarms raised</th><td colspan=4>{} priority (each alarm once, by the highest \
         priority it reached)</td></tr>\
         <tr><th>Time outside limits</th><td colspan=4>{} in all{}</td></tr></table>",
        prio.join(", "),
        mmss(total),
        if any_reading_based {
            " (SpO2 and pulse rate: readings beyond the limits their alarms named; blood pressure: while its alarm was active)"
        } else {
            " (while a physiological alarm was active)"
        }
    );
    h
}
