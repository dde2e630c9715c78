//! Fairness at the source: a device that sends more readings than its profile can plausibly
//! send (`max_rate`, readings per second) is throttled by its own source task, so it costs the
//! rest of the daemon (the hub, the store, the other beds' alarms) no more than its budget.
//!
//! A token bucket of `max_rate` readings per second, [`Throttle::BURST`] deep, is charged with
//! every reading decoded from a read. Within the budget every reading passes. Over it:
//! - **What is dropped:** of the readings of that read, only the newest of each metric is
//!   passed on (with its flags), so the alarm engine still sees every metric's latest value
//!   and device condition at least at the budget's pace; the older ones of the same read are
//!   dropped and counted. Nothing of another device is touched.
//! - **Read less:** the source waits until the bucket is out of debt before reading again (at
//!   most [`Throttle::MAX_PAUSE`]), so the socket is not drained faster than the budget (a
//!   device server's own buffer, or TCP flow control, holds the rest back).
//! - **Said so:** the first excess raises the device's `device_flooding` technical alarm; it
//!   clears once no excess was seen for [`Throttle::CLEAR_AFTER`].
//!
//! Pure: time comes in as a [`Mono`].

use crate::clock::Mono;
use crate::model::{Measurement, Metric};
use std::time::Duration;

/// A device's reading budget.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// Readings per second.
    rate: f64,
    /// Bucket depth, in readings.
    burst: f64,
    /// Readings left in the bucket; negative while in debt.
    tokens: f64,
    last: Option<Mono>,
    /// When the latest excess was seen, while flooding.
    flooding_since_excess: Option<Mono>,
    /// Readings dropped since the throttle was made.
    dropped: u64,
}

/// What [`Throttle::admit`] did to one read's readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// Readings dropped from this read.
    pub dropped: usize,
    /// The device started flooding with this read.
    pub started_flooding: bool,
}

impl Throttle {
    /// Bursts up to this long at the budget's rate pass whole (a device server that buffered
    /// a second or two of data and sends it at once is not a flood).
    pub const BURST: Duration = Duration::from_secs(2);
    /// Without excess for this long, the flood is over.
    pub const CLEAR_AFTER: Duration = Duration::from_secs(5);
    /// The longest wait before the next read.
    pub const MAX_PAUSE: Duration = Duration::from_secs(1);

    /// A throttle of `max_rate` readings per second (at least 1), with a full bucket.
    pub fn new(max_rate: u32) -> Throttle {
        let rate = f64::from(max_rate.max(1));
        let burst = rate * Self::BURST.as_secs_f64();
        Throttle {
            rate,
            burst,
            tokens: burst,
            last: None,
            flooding_since_excess: None,
            dropped: 0,
        }
    }

    fn refill(&mut self, now: Mono) {
        if let Some(last) = self.last {
            let add = now.since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + add).min(self.burst);
        }
        self.last = Some(now);
    }

    /// Charges the readings of one read, taken at `now`. Within the budget they all stay in
    /// `out`; over it only the newest reading of each metric stays (order kept), and the rest
    /// are dropped and counted. Allocation-free.
    pub fn admit(&mut self, now: Mono, out: &mut Vec<Measurement>) -> Admitted {
        self.refill(now);
        let n = out.len();
        let within = self.tokens >= n as f64;
        // The debt is bounded, so a long flood does not stall the device for ever after.
        self.tokens = (self.tokens - n as f64).max(-self.rate * Self::MAX_PAUSE.as_secs_f64());
        if within || n == 0 {
            return Admitted {
                dropped: 0,
                started_flooding: false,
            };
        }
        let mut newest = [usize::MAX; Metric::COUNT];
        for (i, m) in out.iter().enumerate() {
            if let Some(slot) = newest.get_mut(m.metric.index()) {
                *slot = i;
            }
        }
        let mut i = 0;
        out.retain(|m| {
            let keep = newest.get(m.metric.index()) == Some(&i);
            i += 1;
            keep
        });
        let dropped = n - out.len();
        self.dropped += dropped as u64;
        let started = self.flooding_since_excess.is_none();
        self.flooding_since_excess = Some(now);
        Admitted {
            dropped,
            started_flooding: started,
        }
    }

    /// Charges the readings of one value pushed by a device that cannot be read less (a BLE
    /// notification: the radio delivers it whether read or not). Within the budget (or with a
    /// full bucket, so that a value larger than the bucket still passes at the budget's pace)
    /// they all stay in `out`; over it the whole value is dropped and counted, and the bucket
    /// is not charged for it, so values pass again at the budget's pace: the alarm engine still
    /// sees the device's latest values and conditions at least that often. Allocation-free.
    pub fn admit_whole(&mut self, now: Mono, out: &mut Vec<Measurement>) -> Admitted {
        self.refill(now);
        let n = out.len();
        if n == 0 || self.tokens >= n as f64 || self.tokens >= self.burst {
            self.tokens -= n as f64;
            return Admitted {
                dropped: 0,
                started_flooding: false,
            };
        }
        out.clear();
        self.dropped += n as u64;
        let started = self.flooding_since_excess.is_none();
        self.flooding_since_excess = Some(now);
        Admitted {
            dropped: n,
            started_flooding: started,
        }
    }

    /// How long to wait before the next read: zero within the budget; while in debt, until
    /// the bucket is back to zero.
    pub fn pause(&self) -> Duration {
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-self.tokens / self.rate).min(Self::MAX_PAUSE)
    }

    /// Whether the device is flooding (an excess within [`Throttle::CLEAR_AFTER`]).
    pub fn flooding(&self) -> bool {
        self.flooding_since_excess.is_some()
    }

    /// When the flood ends if no excess comes first.
    pub fn clears_at(&self) -> Option<Mono> {
        self.flooding_since_excess
            .map(|t| t.saturating_add(Self::CLEAR_AFTER))
    }

    /// Ends the flood if no excess was seen for [`Throttle::CLEAR_AFTER`] by `now`; `true`
    /// when it ended with this call.
    pub fn poll(&mut self, now: Mono) -> bool {
        match self.clears_at() {
            Some(at) if now >= at => {
                self.flooding_since_excess = None;
                true
            }
            _ => false,
        }
    }

    /// Readings dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Flags;

    fn t0() -> Mono {
        Mono(1_000_000_000_000)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A Masimo-like line: spo2, pulse rate, perfusion index.
    fn line(spo2: f64, out: &mut Vec<Measurement>) {
        for (metric, v) in [
            (Metric::Spo2, spo2),
            (Metric::PulseRate, 70.0),
            (Metric::PerfusionIndex, 2.0),
        ] {
            out.push(Measurement::new(metric, v, Flags::default()));
        }
    }

    #[test]
    fn a_device_within_its_budget_loses_nothing_and_is_never_paused() {
        // 3 readings a second against a budget of 30: a second of data at a time, for a minute.
        let mut t = Throttle::new(30);
        for s in 0..60 {
            let mut out = Vec::new();
            line(97.0, &mut out);
            let a = t.admit(t0().saturating_add(Duration::from_secs(s)), &mut out);
            assert_eq!(a.dropped, 0);
            assert_eq!(out.len(), 3);
            assert_eq!(t.pause(), Duration::ZERO);
        }
        assert!(!t.flooding());
        assert_eq!(t.dropped(), 0);
    }

    #[test]
    fn a_burst_within_two_seconds_of_budget_passes_whole() {
        let mut t = Throttle::new(30);
        let mut out = Vec::new();
        for _ in 0..20 {
            line(97.0, &mut out);
        }
        let a = t.admit(t0(), &mut out);
        assert_eq!((a.dropped, out.len()), (0, 60));
        assert!(!t.flooding());
    }

    #[test]
    fn over_budget_only_the_newest_reading_of_each_metric_passes_and_the_source_waits() {
        let mut t = Throttle::new(30);
        let mut out = Vec::new();
        for _ in 0..20 {
            line(97.0, &mut out);
        }
        t.admit(t0(), &mut out); // the burst allowance, spent
        out.clear();
        for i in 0..10 {
            line(90.0 + f64::from(i), &mut out);
        }
        let a = t.admit(t0().saturating_add(ms(10)), &mut out);
        assert!(a.started_flooding);
        assert_eq!(a.dropped, 27);
        let kept: Vec<(Metric, Option<f64>)> =
            out.iter().map(|m| (m.metric, m.value.number())).collect();
        assert_eq!(
            kept,
            [
                (Metric::Spo2, Some(99.0)),
                (Metric::PulseRate, Some(70.0)),
                (Metric::PerfusionIndex, Some(2.0)),
            ],
            "the newest of each metric, in order"
        );
        assert_eq!(t.dropped(), 27);
        // 30 readings over a budget of 30/s (less the 10 ms refill): about a second of debt,
        // capped at MAX_PAUSE.
        assert!(t.pause() > ms(900), "{:?}", t.pause());
        assert!(t.pause() <= Throttle::MAX_PAUSE);
    }

    #[test]
    fn the_flood_ends_five_seconds_after_the_last_excess() {
        let mut t = Throttle::new(10);
        let mut out = Vec::new();
        for _ in 0..30 {
            line(97.0, &mut out);
        }
        assert!(t.admit(t0(), &mut out).started_flooding);
        assert!(t.flooding());
        // Another excess a second later: still the same flood, not a new start.
        let mut out = Vec::new();
        for _ in 0..30 {
            line(97.0, &mut out);
        }
        let later = t0().saturating_add(Duration::from_secs(1));
        assert!(!t.admit(later, &mut out).started_flooding);
        assert_eq!(
            t.clears_at(),
            Some(later.saturating_add(Throttle::CLEAR_AFTER))
        );
        assert!(!t.poll(later.saturating_add(ms(4_999))));
        assert!(t.flooding());
        // Data at the normal pace meanwhile does not prolong it.
        let mut out = Vec::new();
        line(97.0, &mut out);
        let a = t.admit(later.saturating_add(Duration::from_secs(3)), &mut out);
        assert_eq!(a.dropped, 0);
        assert!(t.poll(later.saturating_add(Throttle::CLEAR_AFTER)));
        assert!(!t.flooding());
        assert!(
            !t.poll(later.saturating_add(Duration::from_secs(60))),
            "ends once"
        );
    }

    #[test]
    fn a_pushed_flood_passes_whole_values_at_the_budgets_pace_and_drops_the_rest() {
        // 30 readings/s budget; a BLE oximeter notifying 3 readings every 10 ms (300/s).
        let mut t = Throttle::new(30);
        let mut now = t0();
        let (mut passed, mut dropped, mut starts) = (0, 0, 0);
        for _ in 0..500 {
            let mut out = Vec::new();
            line(97.0, &mut out);
            let a = t.admit_whole(now, &mut out);
            assert!(
                out.len() == 3 || out.is_empty(),
                "a value passes whole or not at all"
            );
            passed += out.len();
            dropped += a.dropped;
            starts += usize::from(a.started_flooding);
            now = now.saturating_add(ms(10));
        }
        // 5 s: the 2 s burst plus 5 s at 30/s, give or take one value.
        assert!((200..=213).contains(&passed), "{passed}");
        assert_eq!(passed + dropped, 1500);
        assert_eq!(t.dropped(), dropped as u64);
        assert_eq!(starts, 1, "one flood, raised once");
        assert!(t.flooding());
        assert_eq!(
            t.pause(),
            Duration::ZERO,
            "a pushed value is never waited for"
        );
        // Back to the normal pace: nothing dropped, and the flood ends on time.
        let later = now.saturating_add(Duration::from_secs(1));
        let mut out = Vec::new();
        line(97.0, &mut out);
        assert_eq!(t.admit_whole(later, &mut out).dropped, 0);
        assert!(t.poll(now.saturating_add(Throttle::CLEAR_AFTER)));
    }

    #[test]
    fn a_long_flood_never_stalls_the_device_longer_than_the_longest_pause() {
        let mut t = Throttle::new(5);
        let mut now = t0();
        for _ in 0..100 {
            let mut out = Vec::new();
            for _ in 0..100 {
                line(97.0, &mut out);
            }
            t.admit(now, &mut out);
            assert_eq!(out.len(), 3);
            assert!(t.pause() <= Throttle::MAX_PAUSE);
            now = now.saturating_add(t.pause());
        }
        // Back to normal: after the longest pause the bucket is out of debt.
        let mut out = Vec::new();
        line(97.0, &mut out);
        let a = t.admit(now.saturating_add(Throttle::MAX_PAUSE), &mut out);
        assert_eq!(a.dropped, 0);
    }
}
