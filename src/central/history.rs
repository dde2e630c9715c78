//! What the central keeps of what it received, for the dashboard's trends and alarm log
//! (docs/mqtt.md, "History at central"). A site's record is its store; the central has no
//! store, so it keeps a bounded window in memory and serves it in the site API's shapes:
//!
//! - per bed and metric, the readings received live (the `readings` batches) of the last
//!   [`WINDOW_MS`] by the site's receive time, at most [`MAX_SAMPLES`] (2 h at 1 Hz);
//!   waveform samples (`pleth`) are not kept, as at a site;
//! - the latest [`MAX_EVENTS`] alarm events, as the central's clients got them.
//!
//! A restarted central starts empty; what it missed is in each site's store.

use crate::model::Metric;
use crate::store::HistoryPoint;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};

/// How far back the readings of a bed go (by their `received_ms`).
pub const WINDOW_MS: i64 = 2 * 60 * 60 * 1000;
/// Readings kept per bed and metric, at most: 2 h of a 1 Hz oximeter.
pub const MAX_SAMPLES: usize = 7200;
/// Alarm events kept (every site's, and the central's `site_offline`).
pub const MAX_EVENTS: usize = 2000;

/// One reading: its receive time, its value (NaN when invalid) and why it has none.
#[derive(Debug)]
struct Sample {
    t_ms: i64,
    value: f64,
    reason: Option<Box<str>>,
}

/// One alarm event as sent: its bed (central id) and time, for the filter and the order.
#[derive(Debug)]
struct Event {
    bed: Option<String>,
    at_ms: i64,
    msg: Value,
}

/// The central's bounded history.
#[derive(Debug, Default)]
pub struct History {
    trends: HashMap<(String, Metric), VecDeque<Sample>>,
    events: VecDeque<Event>,
}

impl History {
    /// A reading of `bed` (central id) received at the site at `t_ms`; `value` None when
    /// invalid, with `reason` (the reading's `invalid`).
    pub fn reading(
        &mut self,
        bed: &str,
        metric: Metric,
        t_ms: i64,
        value: Option<f64>,
        reason: Option<&str>,
    ) {
        if metric == Metric::Pleth {
            return;
        }
        let ring = self.trends.entry((bed.to_owned(), metric)).or_default();
        let sample = Sample {
            t_ms,
            value: value.filter(|v| v.is_finite()).unwrap_or(f64::NAN),
            reason: match value {
                Some(v) if v.is_finite() => None,
                _ => Some(reason.unwrap_or("no_value").into()),
            },
        };
        // In order of receive time (a site's clock stepped back: put it in its place).
        match ring.back() {
            Some(last) if last.t_ms > t_ms => {
                let at = ring.partition_point(|s| s.t_ms <= t_ms);
                ring.insert(at, sample);
            }
            _ => ring.push_back(sample),
        }
        let newest = ring.back().map_or(t_ms, |s| s.t_ms);
        while ring.len() > MAX_SAMPLES
            || ring
                .front()
                .is_some_and(|s| s.t_ms < newest.saturating_sub(WINDOW_MS))
        {
            ring.pop_front();
        }
    }

    /// Drops the readings older than the window before `now_ms` (beds that went quiet).
    pub fn prune(&mut self, now_ms: i64) {
        let oldest = now_ms.saturating_sub(WINDOW_MS);
        self.trends.retain(|_, ring| {
            while ring.front().is_some_and(|s| s.t_ms < oldest) {
                ring.pop_front();
            }
            !ring.is_empty()
        });
    }

    /// The history of `bed`'s `metric` over `[from_ms, to_ms]`, as a site's
    /// `GET .../history` gives it: every reading, or with more than `max_points`, the range cut
    /// into `max_points` equal buckets, each with the min/max/mean of its valid values and how
    /// many valid and invalid readings it had (empty buckets left out).
    pub fn query(
        &self,
        bed: &str,
        metric: Metric,
        from_ms: i64,
        to_ms: i64,
        max_points: usize,
    ) -> Vec<HistoryPoint> {
        let Some(ring) = self.trends.get(&(bed.to_owned(), metric)) else {
            return Vec::new();
        };
        let start = ring.partition_point(|s| s.t_ms < from_ms);
        let end = ring.partition_point(|s| s.t_ms <= to_ms);
        let samples = ring.range(start..end.max(start));
        let max_points = i64::try_from(max_points.max(1)).unwrap_or(i64::MAX);
        let count = i64::try_from(samples.len()).unwrap_or(i64::MAX);
        if count <= max_points {
            return samples
                .map(|s| {
                    let v = (!s.value.is_nan()).then_some(s.value);
                    HistoryPoint {
                        t_ms: s.t_ms,
                        avg: v,
                        min: v,
                        max: v,
                        n: u32::from(v.is_some()),
                        invalid: u32::from(v.is_none()),
                        reason: s.reason.as_deref().map(str::to_owned),
                    }
                })
                .collect();
        }
        let span = to_ms.saturating_sub(from_ms).saturating_add(1).max(1);
        let bucket = (span + max_points - 1) / max_points;
        let mut out: Vec<HistoryPoint> = Vec::new();
        let mut sum = 0.0;
        for s in samples {
            let t_ms = from_ms + (s.t_ms - from_ms) / bucket * bucket;
            if out.last().is_none_or(|p| p.t_ms != t_ms) {
                sum = 0.0;
                out.push(HistoryPoint {
                    t_ms,
                    avg: None,
                    min: None,
                    max: None,
                    n: 0,
                    invalid: 0,
                    reason: None,
                });
            }
            let Some(p) = out.last_mut() else { continue };
            if s.value.is_nan() {
                p.invalid = p.invalid.saturating_add(1);
                continue;
            }
            p.n = p.n.saturating_add(1);
            sum += s.value;
            p.avg = Some(sum / f64::from(p.n));
            p.min = Some(p.min.map_or(s.value, |m| m.min(s.value)));
            p.max = Some(p.max.map_or(s.value, |m| m.max(s.value)));
        }
        out
    }

    /// An alarm event as the central's clients got it (`bed` a central id or null).
    pub fn event(&mut self, msg: &Value) {
        self.events.push_back(Event {
            bed: msg["bed"].as_str().map(str::to_owned),
            at_ms: msg["at_ms"].as_i64().unwrap_or(0),
            msg: msg.clone(),
        });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    /// The latest `limit` alarm events, of `bed` if given, newest first (by `at_ms`; a
    /// replayed event that came late takes its place).
    pub fn events(&self, bed: Option<&str>, limit: usize) -> Vec<Value> {
        let mut list: Vec<&Event> = self
            .events
            .iter()
            .rev()
            .filter(|e| bed.is_none_or(|b| e.bed.as_deref() == Some(b)))
            .collect();
        list.sort_by_key(|e| std::cmp::Reverse(e.at_ms));
        list.into_iter()
            .take(limit)
            .map(|e| e.msg.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readings_come_back_one_by_one_or_in_buckets_and_an_invalid_one_is_never_a_number() {
        let mut h = History::default();
        h.reading("n/r/A", Metric::Spo2, 1_000, Some(97.0), None);
        h.reading("n/r/A", Metric::Spo2, 2_000, None, Some("device_flagged"));
        h.reading("n/r/A", Metric::Spo2, 3_000, Some(91.0), None);
        h.reading("n/r/A", Metric::Pleth, 3_000, Some(10.0), None);
        let all = h.query("n/r/A", Metric::Spo2, 0, 10_000, 500);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].avg, Some(97.0));
        assert_eq!((all[1].avg, all[1].invalid), (None, 1));
        assert_eq!(all[1].reason.as_deref(), Some("device_flagged"));
        // Two buckets of 5 s: the first holds all three.
        let b = h.query("n/r/A", Metric::Spo2, 0, 9_999, 2);
        assert_eq!(b.len(), 1, "empty buckets are left out: {b:?}");
        assert_eq!(
            (
                b[0].t_ms,
                b[0].avg,
                b[0].min,
                b[0].max,
                b[0].n,
                b[0].invalid
            ),
            (0, Some(94.0), Some(91.0), Some(97.0), 2, 1)
        );
        assert!(h.query("n/r/A", Metric::Pleth, 0, 10_000, 500).is_empty());
        assert!(h.query("n/r/B", Metric::Spo2, 0, 10_000, 500).is_empty());
    }

    #[test]
    fn the_window_is_bounded_in_time_and_in_samples() {
        let mut h = History::default();
        for i in 0..(MAX_SAMPLES as i64 + 100) {
            h.reading("n/r/A", Metric::PulseRate, i * 500, Some(60.0), None);
        }
        let all = h.query("n/r/A", Metric::PulseRate, 0, i64::MAX, 100_000);
        assert_eq!(all.len(), MAX_SAMPLES);
        h.reading("n/r/A", Metric::PulseRate, 10 * WINDOW_MS, Some(61.0), None);
        let all = h.query("n/r/A", Metric::PulseRate, 0, i64::MAX, 100_000);
        assert_eq!(all.len(), 1, "older than the window before the newest");
        h.prune(12 * WINDOW_MS);
        assert!(h.trends.is_empty());
    }

    #[test]
    fn alarm_events_newest_first_by_bed_and_bounded() {
        let mut h = History::default();
        for i in 0..(MAX_EVENTS + 5) {
            let bed = if i % 2 == 0 { "n/r/A" } else { "n/r/B" };
            h.event(&json!({"type":"alarm","event":"raised","bed":bed,"at_ms":i}));
        }
        let all = h.events(None, 10_000);
        assert_eq!(all.len(), MAX_EVENTS);
        assert_eq!(all[0]["at_ms"], MAX_EVENTS + 4);
        let b = h.events(Some("n/r/B"), 3);
        assert_eq!(b.len(), 3);
        assert!(b.iter().all(|e| e["bed"] == "n/r/B"));
    }
}
