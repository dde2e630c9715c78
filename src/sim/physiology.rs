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
