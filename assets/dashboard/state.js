// The page's state: one object `S` every module reads and writes, the audio player's state `A`,
// and the timing constants. No DOM, no network.
import { toMs } from './util.js';

// ---------------------------------------------------------------- constants
export const OXI_STALE_MS = 5000;          // oximeter metrics: grey after 5 s without a value
export const NIBP_GRACE_MS = 120000;       // NIBP: grey after the bed's interval + 2 min
export const NOT_MONITORING_MS = 5000;     // full-screen warning after 5 s without any message
export const LIVE_MS = 2500;               // the link shows LIVE if a message came within this
export const BACKOFF_MIN_MS = 500;
export const BACKOFF_MAX_MS = 5000;
export const TREND_CAP = 8192;             // points per oximeter trend (1 per second: > 2 h)
export const NIBP_CAP = 512;
export const PLETH_CAP = 600;              // 8 s at 75 samples/s
export const PLETH_SHOW = 450;             // samples drawn (6 s at 75/s)
export const RECENT_CAP = 50;              // recent alarm events kept
export const DOSE_CAP = 50;
export const MISSING_CAP = 8192;          // a late message is waited for this many seqs

// ---------------------------------------------------------------- state
export const S = {
  token: null,
  ws: null,
  wsOpen: false,
  wsAuthSent: false, // this socket's first message was {"type":"auth","token":...}
  backoff: BACKOFF_MIN_MS,
  retryTimer: null,
  retryAt: 0,
  reconnects: 0,
  haveSnapshot: false,
  lastSeq: 0,        // highest seq processed
  snapSeq: 0,        // seq the latest snapshot covers
  gaps: 0,           // sequenced messages that never came (coalesced or lost)
  missing: new Set(), // seqs skipped by a jump ahead, that may still come (see live.js)
  restarts: 0,       // daemon restarts seen (its seq went back)
  coalesced: 0,
  messages: 0,
  lastMsgAt: performance.now(),
  clockOffset: 0,    // server time - local time, ms
  simulated: false,
  simulatedReadings: false,
  layoutKey: '',
  rooms: [],
  beds: new Map(),   // bed id -> bed state
  alarms: new Map(), // alarm id -> Alarm (current)
  recent: [],        // recent alarm events, newest first, capped
  logDirty: true,
  trendMinutes: 30,
  authError: null,
  audioArmed: false,
  audioError: null,
  beatAt: -Infinity, // when this page last sent its heartbeat
  beatKey: '',       // what it said (armed/visible/playing)
  beatsSent: 0,
  counted: false,    // the daemon counts this page as a live dashboard (its heartbeat)
  dashboards: null,  // {live, hidden, not_armed, clients} from the daemon
  notMonitoring: false,
  snapshots: [],
  started: null,     // the daemon's start time, from the snapshot
  connectedAt: 0,    // performance.now() of the latest snapshot (or of the page's start)
  trendDrawAt: 0,    // when the trends were last drawn; 0 redraws them at the next tick
  trendDraws: 0,     // how often the trends were drawn (test hook: wait for a redraw)
  alarmLogLoads: 0,  // how often the alarm log was filled from the history (test hook)
};

// The alarm sound's player (audio.js plays, beat.js reports what plays).
export const A = {
  ctx: null, source: null, playing: null, buffers: {},
  startedBy: null, starts: 0, startedAt: null,
};

export function serverNow() {
  return Date.now() + S.clockOffset;
}

// Whether alarm `a` is as new as or newer than `cur` (the copy held), by `updated`.
export function newerOrSame(a, cur) {
  if (!cur) return true;
  const ta = toMs(a.updated);
  const tc = toMs(cur.updated);
  return ta === null || tc === null || ta >= tc;
}

// The link is LIVE: open, and a message came within LIVE_MS.
export function isLive(now) {
  return S.wsOpen && now - S.lastMsgAt < LIVE_MS;
}

