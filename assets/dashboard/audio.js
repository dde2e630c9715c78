// The alarm sound (Web Audio): arming, and the looping pattern of the highest sounding priority.
import { sendBeat } from './beat.js';
import { A, S } from './state.js';
import { PRIO_RANK, isSounding } from './text.js';

// ---------------------------------------------------------------- audio (Web Audio)
// IEC 60601-1-8-like patterns: high 10 pulses (3+2, pause, 3+2) every 5 s; medium 3 pulses
// every 7 s; low 1 pulse every 16 s. Each pulse is a tone with harmonics, soft edges.
//
// A pattern is rendered once into a buffer one period long and played by a looping source:
// the browser's audio thread repeats it with no timer of ours. It starts from the `alarm`
// message that makes an alarm sound (updateAudio('event')) and stops on acknowledge, clear or
// pause, so a background tab (timers throttled to 1 Hz or less) sounds exactly like a
// visible one. The 250 ms tick only re-checks (updateAudio('timer')), a backstop.
export const PATTERNS = {
  high: { f: 660, pulse: 0.15, at: [0, 0.2, 0.4, 0.8, 1.0, 2.0, 2.2, 2.4, 2.8, 3.0], every: 5 },
  medium: { f: 523, pulse: 0.2, at: [0, 0.3, 0.6], every: 7 },
  low: { f: 440, pulse: 0.25, at: [0], every: 16 },
};
export const PATTERN_RATE = 22050;          // Hz: the 5th harmonic of 660 Hz is well below Nyquist
export const HARMONICS = [1, 0.5, 0.35, 0.25, 0.18]; // fundamental plus four (IEC 60601-1-8)

export function setArmed(armed) {
  if (S.audioArmed === armed) return;
  S.audioArmed = armed;
  document.body.dataset.audioArmed = String(armed);
  sendBeat(true); // tell the daemon at once whether this page can sound
  updateAudio('armed');
}

export function armAudio() {
  try {
    if (!A.ctx) {
      const AC = window.AudioContext || window.webkitAudioContext;
      if (!AC) { S.audioError = 'this browser has no Web Audio: alarms cannot sound here'; return; }
      A.ctx = new AC();
      A.ctx.onstatechange = () => setArmed(A.ctx.state === 'running');
    }
    A.ctx.resume().then(() => {
      S.audioError = null;
      setArmed(A.ctx.state === 'running');
      if (S.audioArmed && !A.playing) beep(880, 0.08, 0.15); // confirms the sound works
    }, (e) => { S.audioError = 'audio could not start: ' + e; });
    setArmed(A.ctx.state === 'running');
  } catch (e) {
    S.audioError = 'audio could not start: ' + (e && e.message ? e.message : e);
  }
}

export function beep(f, dur, gain) {
  const ctx = A.ctx;
  const t0 = ctx.currentTime + 0.01;
  const env = ctx.createGain();
  env.gain.setValueAtTime(0, t0);
  env.gain.linearRampToValueAtTime(gain, t0 + 0.015);
  env.gain.setValueAtTime(gain, t0 + dur - 0.03);
  env.gain.linearRampToValueAtTime(0, t0 + dur);
  env.connect(ctx.destination);
  const o = ctx.createOscillator();
  o.frequency.value = f;
  o.connect(env);
  o.start(t0);
  o.stop(t0 + dur + 0.02);
}

// One period of a priority's pattern, rendered once and kept (a few hundred KB each).
export function patternBuffer(prio) {
  if (A.buffers[prio]) return A.buffers[prio];
  const p = PATTERNS[prio];
  const len = Math.round(p.every * PATTERN_RATE);
  const buf = A.ctx.createBuffer(1, len, PATTERN_RATE);
  const d = buf.getChannelData(0);
  const n = Math.round(p.pulse * PATTERN_RATE);
  for (const at of p.at) {
    const i0 = Math.round(at * PATTERN_RATE);
    for (let k = 0; k < n && i0 + k < len; k++) {
      const t = k / PATTERN_RATE;
      const env = t < 0.015 ? t / 0.015 : t > p.pulse - 0.03 ? Math.max(0, (p.pulse - t) / 0.03) : 1;
      let v = 0;
      for (let i = 0; i < HARMONICS.length; i++) v += HARMONICS[i] * Math.sin(2 * Math.PI * p.f * (i + 1) * t);
      d[i0 + k] += 0.5 * env * v / 2.3;
    }
  }
  A.buffers[prio] = buf;
  return buf;
}

export function stopAudio() {
  if (A.source) {
    try { A.source.stop(); A.source.disconnect(); } catch (e) { /* already stopped */ }
  }
  A.source = null;
  A.playing = null;
  document.body.dataset.audioPlaying = '';
}

// The highest priority to sound: the sounding alarms', and medium while the page is NOT
// MONITORING (the daemon silent for 5 s: its alarms cannot reach this page, and a nurse away
// from the screen must hear that too).
export function topSounding() {
  let best = null;
  for (const a of S.alarms.values()) {
    if (isSounding(a) && (!best || (PRIO_RANK[a.priority] || 0) > (PRIO_RANK[best] || 0))) best = a.priority;
  }
  if (S.notMonitoring && S.haveSnapshot && (PRIO_RANK[best] || 0) < PRIO_RANK.medium) best = 'medium';
  return best && PATTERNS[best] ? best : null;
}

// Plays the pattern of the highest sounding priority, or nothing. `by` says what started it
// (`event`: the alarm message itself; `timer`: the backstop tick), for the test hook.
export function updateAudio(by) {
  try {
    const ready = S.audioArmed && A.ctx && A.ctx.state === 'running';
    const want = ready ? topSounding() : null;
    if (want === A.playing) return;
    stopAudio();
    if (!want) return;
    const src = A.ctx.createBufferSource();
    src.buffer = patternBuffer(want);
    src.loop = true;
    src.connect(A.ctx.destination);
    src.start(A.ctx.currentTime + 0.02);
    A.source = src;
    A.playing = want;
    A.startedBy = by;
    A.starts++;
    A.startedAt = Date.now();
    document.body.dataset.audioPlaying = want;
    document.body.dataset.audioStartedBy = by;
    sendBeat(true);
  } catch (e) {
    S.audioError = 'alarm sound failed: ' + (e && e.message ? e.message : e);
  }
}

