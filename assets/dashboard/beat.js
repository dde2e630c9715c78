// The page heartbeat: tells the daemon whether this page can sound.
import { A, S } from './state.js';

// ---------------------------------------------------------------- page heartbeat
// Every 2 s and on every change, the page tells the daemon whether it can sound: only a page
// whose audio is armed counts as a dashboard watching (docs/api.md). It is sent from the
// messages the daemon pushes (at least one a second) as well as from the timer, so a
// background tab whose timers are throttled keeps sending it; a frozen tab stops, and stops
// counting.
export const BEAT_MS = 2000;
export function sendBeat(force) {
  const ws = S.ws;
  if (!ws || !S.wsOpen || ws.readyState !== 1) return;
  const visible = document.visibilityState !== 'hidden';
  const key = S.audioArmed + '/' + visible + '/' + A.playing;
  const now = performance.now();
  if (!force && key === S.beatKey && now - S.beatAt < BEAT_MS) return;
  try {
    ws.send(JSON.stringify({
      type: 'heartbeat', audio_armed: S.audioArmed, visible, playing: A.playing, seq: S.lastSeq,
    }));
    S.beatAt = now;
    S.beatKey = key;
    S.beatsSent++;
  } catch (e) { /* the close event follows */ }
}

