// vitalsd nurse-station dashboard: the entry module. Plain JavaScript ES modules, no build step,
// each file served by the daemon from the binary (src/api/dashboard.rs lists them).
// Protocol: docs/api.md. Safety rules this page keeps:
// - a reading with `value: null` shows dashes and the reason, never the previous number;
// - a value older than its expected period turns grey and shows its age;
// - 5 s without any message from the daemon shows a full-screen NOT MONITORING;
// - alarms show in the priority's colour, with a marker and an audible pattern (once armed),
//   started from the alarm message itself and looped by the audio thread (background tabs too);
//   NOT MONITORING sounds the medium pattern (once armed) until the daemon is heard again;
// - the page tells the daemon every 2 s whether its sound is armed: only an armed page counts
//   as a dashboard watching (the `no_dashboard` alarm), and the page says whether it counts.
// Memory stays flat for hours: ring buffers of fixed size, DOM nodes updated in place, capped lists.
//
// Module map (no import cycles; src/api/dashboard.rs serves each file):
//   app.js      this file: the 250 ms tick, the animation frame, the test hook
//               (window.vitalsdState), start-up.
//   ws.js       the WebSocket: connect with the token as a subprotocol, resume with `since`,
//               backoff, dropping a silent socket.
//   live.js     the daemon's messages -> state: snapshot, readings, device_status, alarm,
//               session, heartbeat; sequence gaps and restarts.
//   beat.js     the page heartbeat to the daemon (armed / visible / playing).
//   http.js     the token (sessionStorage) and `api()`: fetch with the bearer token.
//   history.js  the trends and the alarm log filled from the history APIs (min/max buckets).
//   session.js  the bed's session (admit, doses, phase, baseline) as the daemon holds it;
//               dose and phase markers; readiness; the session panel's status line.
//   actions.js  the session and bed action forms, acknowledge, audio pause.
//   limits.js   the alarm-limits editor.
//   forms.js    form helpers and the bed's message line (confirmed once committed).
//   bed.js      the room/bed layout and one bed card: numerics, dashes and reasons, pause button.
//   log.js      alarm lists: the top banner, each bed's rows, the alarm log table.
//   top.js      the top bar (link, clock, watching, audio bar) and NOT MONITORING.
//   announce.js the aria-live region: each new alarm said once, NOT MONITORING and back.
//   trends.js   the canvases: pleth waveform and the trend chart (with its text alternative).
//   audio.js    Web Audio alarm patterns (IEC 60601-1-8-like), arming.
//   text.js     what the page says: flag reasons, condition names, alarm texts and ordering.
//   state.js    the state `S`, the player state `A`, timing constants.
//   util.js     DOM helper `h`, formatting, time parsing, the `Ring` buffer.

import { armAudio, updateAudio } from './audio.js';
import { sendBeat } from './beat.js';
import { renderBed } from './bed.js';
import { loadHistory } from './history.js';
import { loadToken } from './http.js';
import { renderBanner, renderLog } from './log.js';
import { A, S, isLive, serverNow } from './state.js';
import { isSounding } from './text.js';
import { renderTop } from './top.js';
import { drawPleth, drawTrend } from './trends.js';
import { $ } from './util.js';
import { checkLink, connect } from './ws.js';

// ---------------------------------------------------------------- loops

function tick() {
  const now = performance.now();
  const snow = serverNow();
  checkLink(now);
  renderTop(now);
  for (const bed of S.beds.values()) renderBed(bed, snow);
  renderBanner();
  renderLog();
  if (now - S.trendDrawAt > 1000) {
    S.trendDrawAt = now;
    for (const bed of S.beds.values()) drawTrend(bed, snow);
    S.trendDraws++;
  }
  updateAudio('timer');
  sendBeat(false);
}

function frame() {
  const snow = serverNow();
  for (const bed of S.beds.values()) {
    if (bed.plethDirty || snow - bed.plethLastT < 4000) { bed.plethDirty = false; drawPleth(bed, snow); }
  }
  requestAnimationFrame(frame);
}

// ---------------------------------------------------------------- test hook
function soundingIds() {
  const ids = [];
  for (const a of S.alarms.values()) if (isSounding(a)) ids.push(a.id);
  return ids;
}

Object.defineProperty(window, 'vitalsdState', {
  configurable: false,
  enumerable: true,
  get() {
    const now = performance.now();
    return Object.freeze({
      connected: isLive(now) && S.haveSnapshot,
      lastSeq: S.lastSeq,
      // How this page's WebSocket carries its token: 'message' (its first), 'query' or 'none'.
      wsAuth: !S.token ? 'none' : (S.ws && /[?&]token=/.test(S.ws.url) ? 'query' : (S.wsAuthSent ? 'message' : 'none')),
      audioArmed: S.audioArmed,
      audioPlaying: A.playing,
      audioLoop: !!(A.source && A.source.loop),
      audioStartedBy: A.startedBy,
      audioStarts: A.starts,
      audioStartedAt: A.startedAt,
      audioTime: A.ctx ? A.ctx.currentTime : null, // the audio clock: it runs while the sound can play
      visible: document.visibilityState !== 'hidden',
      beatsSent: S.beatsSent,
      counted: S.counted,
      dashboards: S.dashboards ? Object.freeze(Object.assign({}, S.dashboards)) : null,
      activeAlarms: [...S.alarms.values()].map((a) => Object.freeze({
        id: a.id, bed: a.bed, condition: a.condition, priority: a.priority, state: a.state, audio: a.audio,
      })),
      sounding: soundingIds(),
      notMonitoring: S.notMonitoring,
      gaps: S.gaps,
      restarts: S.restarts,
      reconnects: S.reconnects,
      messages: S.messages,
      simulated: S.simulated || S.simulatedReadings,
      snapshots: S.snapshots.map((x) => Object.freeze(Object.assign({}, x))),
      trendMinutes: S.trendMinutes,
      alarmLogLoads: S.alarmLogLoads || 0,
      trendDraws: S.trendDraws,
      recent: S.recent.map((e) => Object.freeze({ at: e.at, bed: e.bed, text: e.text, what: e.what })),
      trends: Object.freeze(Object.fromEntries([...S.beds.values()].map((b) => [b.id, Object.freeze(
        Object.fromEntries(Object.entries(b.trends).map(([m, r]) => {
          let valid = 0, lo = Infinity;
          r.forEach((t, v, l) => { if (!Number.isNaN(v)) { valid++; lo = Math.min(lo, l); } });
          return [m, Object.freeze({ len: r.len, valid, first: r.len ? r.firstT() : null, last: r.len ? r.lastT() : null, min: valid ? lo : null })];
        }).concat([['histLoads', b.histLoads || 0], ['histFrom', b.histFrom || null]])))]))),
    });
  },
});

// ---------------------------------------------------------------- start
function start() {
  S.token = loadToken();
  S.connectedAt = performance.now();
  const sel = $('#trend-minutes');
  try {
    const saved = Number(localStorage.getItem('vitalsd.trendMinutes'));
    if ([10, 30, 60, 120].includes(saved)) sel.value = String(saved);
  } catch (e) { /* no storage */ }
  S.trendMinutes = Number(sel.value) || 30;
  sel.addEventListener('change', () => {
    S.trendMinutes = Number(sel.value) || 30;
    try { localStorage.setItem('vitalsd.trendMinutes', String(S.trendMinutes)); } catch (e) { /* no storage */ }
    for (const bed of S.beds.values()) loadHistory(bed);
    S.trendDrawAt = 0;
  });
  $('#audio-bar').addEventListener('click', armAudio);
  document.body.dataset.audioArmed = 'false';
  document.body.dataset.audioPlaying = '';
  document.addEventListener('visibilitychange', () => sendBeat(true));
  connect();
  setInterval(tick, 250);
  requestAnimationFrame(frame);
  tick();
}

start();
