//! One simulated patient: true vital signs, the pleth waveform and the device faults at any
//! scenario time, computed from a [`BedScript`]. Pure: no I/O, no clock; the caller passes
//! scenario time in. The protocol encoders turn these numbers (or, during a fault, the
//! protocol's "no value" codes) into bytes.
//!
//! Noise is a function of scenario time and seed (smooth value noise plus a per-second
//! jitter), not of how often or in which order the encoders ask, so the oximeter and the cuff
//! of one bed see one consistent patient and a seed always replays the same session.

use super::scenario::{BedScript, EventKind};
use std::f64::consts::PI;
use std::time::Duration;

pub use super::scenario::DeviceRole;

/// A patient's vital signs at one instant, clamped to physiological ranges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vitals {
    /// Functional oxygen saturation, %, 0..=100.
    pub spo2: f64,
    /// Pulse rate, /min, 20..=300.
    pub pulse_rate: f64,
    /// Perfusion index, %, 0.02..=20.
    pub perfusion_index: f64,
    /// Systolic pressure, mmHg, 40..=300.
    pub sys: f64,
    /// Diastolic pressure, mmHg, 20..=250 and at least 5 below systolic.
    pub dia: f64,
    /// Mean arterial pressure, mmHg: diastolic plus a third of the pulse pressure.
    pub map: f64,
}

/// Which faults a device of the bed shows at one instant. The encoder sends the protocol's
/// "no value" codes and status bits for them; the model only says which fault is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// Oximeter: the sensor is off the finger.
    pub finger_out: bool,
    /// Oximeter: the probe is unplugged from the device.
    pub probe_unplugged: bool,
    /// Oximeter: searching for a pulse.
    pub searching: bool,
    /// Motion artifact on this device.
    pub motion: bool,
    /// This device's battery is low.
    pub low_battery: bool,
    /// Cuff: measurements fail with this SunTech error code.
    pub cuff_error: Option<u8>,
    /// The device has vanished: send nothing, drop the connection.
    pub disconnected: bool,
    /// Send garbage bytes on this device's line.
    pub garbage: bool,
}

impl Faults {
    /// Whether no fault at all is on.
    pub fn is_clear(&self) -> bool {
        *self == Faults::default()
    }
}

/// Noise amplitudes at `noise = 1`: (slow wander, per-second jitter) for each vital.
const SPO2_NOISE: (f64, f64) = (0.8, 0.3);
const PR_NOISE: (f64, f64) = (3.0, 1.0);
const PI_NOISE: (f64, f64) = (0.4, 0.1);
const SYS_NOISE: (f64, f64) = (4.0, 2.0);
const DIA_NOISE: (f64, f64) = (3.0, 1.5);
/// Seconds between the knots of the slow wander.
const WANDER_PERIOD: f64 = 6.0;

/// Independent noise streams, one per vital (and two for motion artifact and pleth jitter).
#[derive(Clone, Copy)]
enum Stream {
    Spo2 = 1,
    PulseRate,
    Perfusion,
    Sys,
    Dia,
    MotionSpo2,
    MotionPr,
    Pleth,
}

/// A simulated patient in one bed.
#[derive(Debug, Clone)]
pub struct Patient {
    script: BedScript,
    seed: u64,
    /// Position within the current beat, 0..1, advanced by [`Patient::pleth`].
    phase: f64,
    /// Scenario time of the previous pleth sample.
    last_pleth: Option<Duration>,
}

impl Patient {
    /// A patient following `script`; `seed` is usually the scenario's seed. The bed id is
    /// mixed in, so two beds of one scenario get different noise.
    pub fn new(script: &BedScript, seed: u64) -> Patient {
        let bed_hash = script.bed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Patient {
            script: script.clone(),
            seed: splitmix64(seed ^ bed_hash),
            phase: 0.0,
            last_pleth: None,
        }
    }

    /// The bed id this patient lies in.
    pub fn bed(&self) -> &str {
        &self.script.bed
    }

    /// The patient's vital signs at scenario time `t`. With `noise = 0` and no motion, exactly
    /// the baseline plus the dose response and desaturations.
    pub fn vitals(&mut self, t: Duration) -> Vitals {
        self.vitals_at(t)
    }

    /// The oximeter's pleth sample (0..=127) at scenario time `t`: a pulse-shaped wave at the
    /// current pulse rate, amplitude following the perfusion index. Calls are expected in
    /// increasing `t` (75 Hz for Nonin); the beat phase is integrated between calls so the
    /// wave stays continuous when the pulse rate changes. Flat 0 while the sensor is off,
    /// unplugged or searching.
    pub fn pleth(&mut self, t: Duration) -> u8 {
        let v = self.vitals_at(t);
        let dt = match self.last_pleth {
            Some(prev) if t >= prev => t.saturating_sub(prev).as_secs_f64(),
            _ => 0.0,
        };
        self.last_pleth = Some(t);
        self.phase = (self.phase + dt * v.pulse_rate / 60.0).rem_euclid(1.0);
        let f = self.faults(t, DeviceRole::Oximeter);
        if f.finger_out || f.probe_unplugged || f.searching {
            return 0;
        }
        let amplitude = 30.0 + 80.0 * (v.perfusion_index / 5.0).min(1.0);
        let mut sample = 8.0 + amplitude * pulse_shape(self.phase);
        let secs = t.as_secs_f64();
        if f.motion {
            // Slow, irregular swings much larger than the pulse, as when the hand moves.
            sample += 35.0 * (2.0 * PI * 0.9 * secs).sin() + 20.0 * (2.0 * PI * 2.3 * secs).sin();
        }
        let tick = (secs * 75.0) as u64;
        sample += 2.0 * self.script.noise * self.uniform(Stream::Pleth, tick);
        sample.round().clamp(0.0, 127.0) as u8
    }

    /// Which faults `device` shows at scenario time `t`: every event whose window
    /// `[at, at + for)` contains `t` and that concerns that device.
    pub fn faults(&self, t: Duration, device: DeviceRole) -> Faults {
        let mut f = Faults::default();
        let oximeter = device == DeviceRole::Oximeter;
        for e in self.script.events.iter().filter(|e| e.is_on(t)) {
            match e.kind {
                EventKind::Desaturation { .. } => {}
                EventKind::FingerOut => f.finger_out |= oximeter,
                EventKind::ProbeUnplugged => f.probe_unplugged |= oximeter,
                EventKind::Searching => f.searching |= oximeter,
                EventKind::Motion { device: d } => f.motion |= d == device,
                EventKind::LowBattery { device: d } => f.low_battery |= d == device,
                EventKind::Disconnect { device: d } => f.disconnected |= d == device,
                EventKind::Garbage { device: d } => f.garbage |= d == device,
                EventKind::CuffError { code } => {
                    if device == DeviceRole::Bp && f.cuff_error.is_none() {
                        f.cuff_error = Some(code);
                    }
                }
            }
        }
        f
    }

    fn vitals_at(&self, t: Duration) -> Vitals {
        let s = &self.script;
        let b = s.baseline;
        let k = self.ketamine_fraction(t);
        let secs = t.as_secs_f64();
        let noise = |stream, (wander, jitter): (f64, f64)| {
            if s.noise == 0.0 {
                0.0
            } else {
                s.noise
                    * (wander * self.smooth(stream, secs)
                        + jitter * self.uniform(stream, secs as u64))
            }
        };
        let mut spo2 = b.spo2 - self.desaturation_depth(t) + noise(Stream::Spo2, SPO2_NOISE);
        let mut pulse_rate =
            b.pulse_rate + k * s.ketamine.pr_rise + noise(Stream::PulseRate, PR_NOISE);
        if self.faults(t, DeviceRole::Oximeter).motion {
            // Motion makes the oximeter read falsely low and the pulse rate jump around.
            let second = secs as u64;
            spo2 -= 3.0 + 3.0 * self.uniform(Stream::MotionSpo2, second);
            pulse_rate += 12.0 * self.uniform(Stream::MotionPr, second);
        }
        let perfusion_index = b.perfusion_index + noise(Stream::Perfusion, PI_NOISE);
        let sys =
            (b.sys + k * s.ketamine.sys_rise + noise(Stream::Sys, SYS_NOISE)).clamp(40.0, 300.0);
        let dia = (b.dia + k * s.ketamine.dia_rise + noise(Stream::Dia, DIA_NOISE))
            .clamp(20.0, 250.0)
            .min(sys - 5.0);
        Vitals {
            spo2: spo2.clamp(0.0, 100.0),
            pulse_rate: pulse_rate.clamp(20.0, 300.0),
            perfusion_index: perfusion_index.clamp(0.02, 20.0),
            sys,
            dia,
            map: dia + (sys - dia) / 3.0,
        }
    }

    /// The share (0..=1) of the full ketamine response at `t`: a raised-cosine rise from the
    /// dose to the peak, a raised-cosine fall back to 0 at the end of the response.
    fn ketamine_fraction(&self, t: Duration) -> f64 {
        let Some(dose) = self.script.dose_at else {
            return 0.0;
        };
        let Some(since) = t.checked_sub(dose) else {
            return 0.0;
        };
        let k = &self.script.ketamine;
        let (since, peak, end) = (
            since.as_secs_f64(),
            k.peak_after.as_secs_f64(),
            k.duration.as_secs_f64(),
        );
        if since >= end || peak <= 0.0 || end <= peak {
            0.0
        } else if since <= peak {
            0.5 * (1.0 - (PI * since / peak).cos())
        } else {
            0.5 * (1.0 + (PI * (since - peak) / (end - peak)).cos())
        }
    }

    /// How many SpO2 points below baseline the deepest desaturation event puts the patient
    /// at `t`: a linear ramp down over `ramp`, a hold until the event ends, a linear recovery
    /// over `ramp` from wherever the ramp had reached.
    fn desaturation_depth(&self, t: Duration) -> f64 {
        let base = self.script.baseline.spo2;
        self.script
            .events
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::Desaturation { spo2, ramp } => {
                    let full = (base - spo2).max(0.0);
                    let reached = |elapsed: Duration| {
                        if ramp.is_zero() {
                            1.0
                        } else {
                            (elapsed.as_secs_f64() / ramp.as_secs_f64()).min(1.0)
                        }
                    };
                    let share = if t < e.at {
                        0.0
                    } else if t < e.end() {
                        reached(t.saturating_sub(e.at))
                    } else {
                        let since_end = t.saturating_sub(e.end());
                        if since_end >= ramp {
                            0.0
                        } else {
                            reached(e.duration)
                                * (1.0 - since_end.as_secs_f64() / ramp.as_secs_f64())
                        }
                    };
                    Some(full * share)
                }
                _ => None,
            })
            .fold(0.0, f64::max)
    }

    /// A deterministic uniform value in -1..=1 for `stream` at integer `tick`.
    fn uniform(&self, stream: Stream, tick: u64) -> f64 {
        let h = splitmix64(
            self.seed ^ (stream as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ splitmix64(tick),
        );
        // 53 random bits to a float in 0..1, then to -1..=1.
        (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// Smooth value noise in -1..=1: random knots every [`WANDER_PERIOD`] seconds with a
    /// cosine interpolation between them.
    fn smooth(&self, stream: Stream, secs: f64) -> f64 {
        let x = secs / WANDER_PERIOD;
        let knot = x.floor();
        let frac = x - knot;
        let k = knot as u64;
        let (a, b) = (
            self.uniform(stream, k),
            self.uniform(stream, k.wrapping_add(1)),
        );
        let w = 0.5 * (1.0 - (PI * frac).cos());
        a + (b - a) * w
    }
}

/// One beat of a pleth wave, 0..=1 over phase 0..1: a fast systolic upstroke, a slower
/// decline, and a small dicrotic wave.
fn pulse_shape(phase: f64) -> f64 {
    let bump = |centre: f64, width: f64| (-((phase - centre) / width).powi(2)).exp();
    let v = bump(0.18, 0.08) + 0.55 * bump(0.32, 0.12) + 0.3 * bump(0.5, 0.07);
    (v / 1.1).clamp(0.0, 1.0)
}

/// SplitMix64's finaliser: a cheap, well-mixed hash of a 64-bit value.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::scenario::{Baseline, Event, Ketamine, Scenario};

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn mins(m: u64) -> Duration {
        secs(m * 60)
    }

    /// A noise-free script for `room1/A` with the given events.
    fn script(events: Vec<Event>) -> BedScript {
        let mut s = Scenario::steady(&["room1/A"]).beds.remove(0);
        s.events = events;
        s
    }

    fn event(at: Duration, duration: Duration, kind: EventKind) -> Event {
        Event { at, duration, kind }
    }

    fn baseline_vitals(b: Baseline) -> Vitals {
        Vitals {
            spo2: b.spo2,
            pulse_rate: b.pulse_rate,
            perfusion_index: b.perfusion_index,
            sys: b.sys,
            dia: b.dia,
            map: b.dia + (b.sys - b.dia) / 3.0,
        }
    }

    #[test]
    fn zero_noise_gives_exactly_the_baseline_before_the_dose() {
        let mut s = script(vec![]);
        s.dose_at = Some(mins(10));
        let mut p = Patient::new(&s, 42);
        let want = baseline_vitals(s.baseline);
        for t in (0..600).step_by(7).map(secs) {
            assert_eq!(p.vitals(t), want, "at {t:?}");
        }
    }

    #[test]
    fn the_ketamine_rise_peaks_near_peak_after_and_returns_to_baseline_after_duration() {
        let mut s = script(vec![]);
        s.dose_at = Some(mins(2));
        s.ketamine = Ketamine::default(); // +25/+15 mmHg, +15 /min, peak 35 min, 100 min
        let b = s.baseline;
        let mut p = Patient::new(&s, 1);
        let samples: Vec<(Duration, Vitals)> = (0..=150 * 2)
            .map(|half_min| secs(half_min * 30))
            .map(|t| (t, p.vitals(t)))
            .collect();
        let (peak_t, peak) = samples
            .iter()
            .max_by(|a, b| a.1.sys.total_cmp(&b.1.sys))
            .copied()
            .unwrap();
        assert_eq!(peak_t, mins(37), "peak 35 min after a dose at 2 min");
        assert!((peak.sys - (b.sys + 25.0)).abs() < 1e-9);
        assert!((peak.dia - (b.dia + 15.0)).abs() < 1e-9);
        assert!((peak.pulse_rate - (b.pulse_rate + 15.0)).abs() < 1e-9);
        for w in samples.windows(2) {
            let ((t0, v0), (t1, v1)) = (w[0], w[1]);
            if t1 <= mins(37) {
                assert!(v1.sys >= v0.sys, "rising until the peak, {t0:?}..{t1:?}");
            } else if t0 >= mins(37) {
                assert!(v1.sys <= v0.sys, "falling after the peak, {t0:?}..{t1:?}");
            }
        }
        for (t, v) in samples.iter().filter(|(t, _)| *t >= mins(102)) {
            assert_eq!(*v, baseline_vitals(b), "back at baseline at {t:?}");
        }
        let halfway = p.vitals(mins(20));
        assert!(halfway.sys > b.sys + 5.0 && halfway.sys < b.sys + 25.0);
    }

    #[test]
    fn the_desaturation_reaches_its_target_during_the_event_and_recovers_after() {
        let ramp = secs(20);
        let s = script(vec![event(
            mins(3),
            secs(90),
            EventKind::Desaturation { spo2: 84.0, ramp },
        )]);
        let mut p = Patient::new(&s, 1);
        let spo2 = |p: &mut Patient, t: Duration| p.vitals(t).spo2;
        assert_eq!(spo2(&mut p, mins(3) - secs(1)), 97.0);
        assert_eq!(
            spo2(&mut p, mins(3)),
            97.0,
            "the ramp starts at the baseline"
        );
        let mid_ramp = spo2(&mut p, mins(3) + secs(10));
        assert!((mid_ramp - 90.5).abs() < 1e-9, "half-way down: {mid_ramp}");
        for t in (200..270).map(secs) {
            assert_eq!(spo2(&mut p, t), 84.0, "held at the target at {t:?}");
        }
        let recovering = spo2(&mut p, secs(270 + 10));
        assert!(
            (recovering - 90.5).abs() < 1e-9,
            "half-way back: {recovering}"
        );
        for t in (290..400).map(secs) {
            assert_eq!(spo2(&mut p, t), 97.0, "recovered at {t:?}");
        }
        assert_eq!(p.vitals(secs(230)).pulse_rate, 72.0, "only SpO2 falls");
    }

    #[test]
    fn faults_are_on_exactly_during_their_windows() {
        use DeviceRole::{Bp, Oximeter};
        let on = |f: Faults| -> Vec<&str> {
            [
                (f.finger_out, "finger_out"),
                (f.probe_unplugged, "probe_unplugged"),
                (f.searching, "searching"),
                (f.motion, "motion"),
                (f.low_battery, "low_battery"),
                (f.cuff_error.is_some(), "cuff_error"),
                (f.disconnected, "disconnected"),
                (f.garbage, "garbage"),
            ]
            .into_iter()
            .filter_map(|(set, name)| set.then_some(name))
            .collect()
        };
        // (kind, device that shows it, the fault's name)
        let table = [
            (EventKind::FingerOut, Oximeter, "finger_out"),
            (EventKind::ProbeUnplugged, Oximeter, "probe_unplugged"),
            (EventKind::Searching, Oximeter, "searching"),
            (EventKind::Motion { device: Oximeter }, Oximeter, "motion"),
            (EventKind::Motion { device: Bp }, Bp, "motion"),
            (EventKind::LowBattery { device: Bp }, Bp, "low_battery"),
            (EventKind::CuffError { code: 87 }, Bp, "cuff_error"),
            (
                EventKind::Disconnect { device: Oximeter },
                Oximeter,
                "disconnected",
            ),
            (EventKind::Disconnect { device: Bp }, Bp, "disconnected"),
            (EventKind::Garbage { device: Oximeter }, Oximeter, "garbage"),
        ];
        let (at, end) = (mins(5), mins(5) + secs(30));
        let tick = Duration::from_nanos(1);
        for (kind, device, name) in table {
            let p = Patient::new(&script(vec![event(at, secs(30), kind)]), 3);
            let other = if device == Oximeter { Bp } else { Oximeter };
            for t in [Duration::ZERO, at - tick, end, end + mins(10)] {
                assert!(p.faults(t, device).is_clear(), "{name} off at {t:?}");
            }
            for t in [at, at + secs(15), end - tick] {
                assert_eq!(on(p.faults(t, device)), vec![name], "{name} on at {t:?}");
                assert!(p.faults(t, other).is_clear(), "{name} not on the {other}");
            }
        }
        let p = Patient::new(
            &script(vec![event(at, secs(30), EventKind::CuffError { code: 87 })]),
            3,
        );
        assert_eq!(
            p.faults(at, Bp).cuff_error,
            Some(87),
            "the SunTech code is passed on"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_another_seed_a_different_one() {
        let mut s = script(vec![event(
            mins(1),
            secs(30),
            EventKind::Motion {
                device: DeviceRole::Oximeter,
            },
        )]);
        s.noise = 1.0;
        s.dose_at = Some(mins(2));
        let run = |seed: u64| {
            let mut p = Patient::new(&s, seed);
            (0..2000u64)
                .map(|i| {
                    let t = Duration::from_millis(i * 1000 / 75 * 3);
                    (p.vitals(t), p.pleth(t))
                })
                .collect::<Vec<_>>()
        };
        let first = run(7);
        assert_eq!(first, run(7));
        assert_ne!(first, run(8));
        let spo2s: Vec<f64> = first.iter().map(|(v, _)| v.spo2).collect();
        assert!(
            spo2s.iter().any(|&x| x != spo2s[0]),
            "noise 1 varies the values"
        );
    }

    #[test]
    fn two_beds_with_one_seed_get_different_noise() {
        let mut a = script(vec![]);
        a.noise = 1.0;
        let mut b = a.clone();
        b.bed = "room1/B".to_owned();
        let (mut pa, mut pb) = (Patient::new(&a, 7), Patient::new(&b, 7));
        assert_ne!(pa.vitals(secs(10)), pb.vitals(secs(10)));
        assert_eq!(pb.bed(), "room1/B");
    }

    #[test]
    fn vitals_stay_in_physiological_ranges_under_extreme_noise_and_rises() {
        let mut s = script(vec![event(
            mins(1),
            mins(5),
            EventKind::Motion {
                device: DeviceRole::Oximeter,
            },
        )]);
        s.noise = 10.0;
        s.baseline = Baseline {
            spo2: 100.0,
            pulse_rate: 250.0,
            sys: 260.0,
            dia: 200.0,
            perfusion_index: 0.02,
        };
        s.dose_at = Some(Duration::ZERO);
        s.ketamine.sys_rise = 100.0;
        s.ketamine.dia_rise = 100.0;
        s.ketamine.pr_rise = 100.0;
        let mut p = Patient::new(&s, 9);
        for t in (0..7200).step_by(3).map(secs) {
            let v = p.vitals(t);
            assert!((0.0..=100.0).contains(&v.spo2), "{v:?}");
            assert!((20.0..=300.0).contains(&v.pulse_rate), "{v:?}");
            assert!((0.02..=20.0).contains(&v.perfusion_index), "{v:?}");
            assert!((40.0..=300.0).contains(&v.sys), "{v:?}");
            assert!(v.dia >= 20.0 && v.dia <= v.sys - 5.0, "{v:?}");
            assert!(v.map > v.dia && v.map < v.sys, "{v:?}");
        }
    }

    #[test]
    fn motion_disturbs_the_oximeter_readings_only_during_the_event() {
        let s = script(vec![event(
            mins(1),
            secs(30),
            EventKind::Motion {
                device: DeviceRole::Oximeter,
            },
        )]);
        let mut p = Patient::new(&s, 5);
        for t in (60..90).map(secs) {
            let v = p.vitals(t);
            assert!(
                v.spo2 < 97.0,
                "falsely low during motion at {t:?}: {}",
                v.spo2
            );
            assert_eq!((v.sys, v.dia), (122.0, 78.0), "the cuff is not an oximeter");
        }
        assert_eq!(p.vitals(secs(90)), baseline_vitals(s.baseline));
    }

    /// 75 Hz samples of the pleth over `seconds`, starting at `from`.
    fn pleth_run(p: &mut Patient, from: Duration, seconds: u64) -> Vec<u8> {
        (0..seconds * 75)
            .map(|i| p.pleth(from + Duration::from_nanos(i * 1_000_000_000 / 75)))
            .collect()
    }

    #[test]
    fn the_pleth_stays_in_range_and_is_periodic_at_the_pulse_rate() {
        let mut s = script(vec![]);
        s.baseline.pulse_rate = 75.0; // one beat per 0.8 s = 60 samples at 75 Hz
        let mut p = Patient::new(&s, 1);
        let wave = pleth_run(&mut p, Duration::ZERO, 8);
        assert!(wave.iter().all(|&x| x <= 127));
        let (lo, hi) = (*wave.iter().min().unwrap(), *wave.iter().max().unwrap());
        assert!(hi - lo > 50, "a visible pulse: {lo}..{hi}");
        for i in 0..wave.len() - 60 {
            assert!(
                wave[i].abs_diff(wave[i + 60]) <= 1,
                "sample {i} repeats one beat later"
            );
        }
        let mid = (u16::from(lo) + u16::from(hi)) / 2;
        let upstrokes = wave
            .windows(2)
            .filter(|w| u16::from(w[0]) < mid && u16::from(w[1]) >= mid)
            .count();
        assert_eq!(upstrokes, 10, "10 beats in 8 s at 75 /min");
    }

    #[test]
    fn the_pleth_follows_the_pulse_rate_as_it_changes() {
        let mut s = script(vec![]);
        s.baseline.pulse_rate = 60.0;
        s.dose_at = Some(Duration::ZERO);
        s.ketamine = Ketamine {
            pr_rise: 60.0,
            peak_after: mins(30),
            duration: mins(60),
            ..Ketamine::default()
        };
        let mut p = Patient::new(&s, 1);
        let count = |wave: &[u8]| wave.windows(2).filter(|w| w[0] < 60 && w[1] >= 60).count();
        let before = count(&pleth_run(&mut p, Duration::ZERO, 30));
        let at_peak = count(&pleth_run(&mut p, mins(30), 30));
        assert!(
            (29..=31).contains(&before),
            "~30 beats in 30 s at 60 /min: {before}"
        );
        assert!(
            (59..=61).contains(&at_peak),
            "~60 beats in 30 s at 120 /min: {at_peak}"
        );
    }

    #[test]
    fn the_pleth_is_flat_zero_while_the_sensor_is_off_and_stays_in_range_with_motion() {
        let s = script(vec![
            event(secs(10), secs(10), EventKind::FingerOut),
            event(secs(20), secs(5), EventKind::ProbeUnplugged),
            event(secs(25), secs(5), EventKind::Searching),
            event(
                secs(30),
                secs(20),
                EventKind::Motion {
                    device: DeviceRole::Oximeter,
                },
            ),
        ]);
        let mut p = Patient::new(&s, 1);
        let wave = pleth_run(&mut p, Duration::ZERO, 60);
        assert!(wave[..10 * 75].iter().any(|&x| x > 0));
        assert!(
            wave[10 * 75..30 * 75].iter().all(|&x| x == 0),
            "flat while off or searching"
        );
        assert!(
            wave[30 * 75..].iter().any(|&x| x > 0),
            "the pulse comes back"
        );
        assert!(wave.iter().all(|&x| x <= 127));
    }
}
