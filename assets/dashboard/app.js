// vitalsd nurse-station dashboard. Plain JavaScript, no build step, served by the daemon.
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
'use strict';

(function () {
  // ---------------------------------------------------------------- constants
  const OXI_STALE_MS = 5000;          // oximeter metrics: grey after 5 s without a value
  const NIBP_GRACE_MS = 120000;       // NIBP: grey after the bed's interval + 2 min
  const NOT_MONITORING_MS = 5000;     // full-screen warning after 5 s without any message
  const LIVE_MS = 2500;               // the link shows LIVE if a message came within this
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 5000;
  const TREND_CAP = 8192;             // points per oximeter trend (1 per second: > 2 h)
  const NIBP_CAP = 512;
  const PLETH_CAP = 600;              // 8 s at 75 samples/s
  const PLETH_SHOW = 450;             // samples drawn (6 s at 75/s)
  const RECENT_CAP = 50;              // recent alarm events kept
  const DOSE_CAP = 50;

  const MARK = { high: '***', medium: '**', low: '*' };
  const PRIO_RANK = { high: 3, medium: 2, low: 1 };

  // Flags that explain a missing value, most specific first.
  const REASON_FLAGS = [
    ['probe_unplugged', 'PROBE UNPLUGGED'],
    ['sensor_off', 'SENSOR OFF'],
    ['no_finger', 'FINGER OUT'],
    ['sensor_fault', 'SENSOR FAULT'],
    ['searching_too_long', 'SEARCHING TOO LONG'],
    ['searching', 'SEARCHING'],
    ['cuff_loose', 'CUFF LOOSE'],
    ['body_movement', 'BODY MOVEMENT'],
    ['improper_position', 'IMPROPER POSITION'],
    ['measurement_ongoing', 'MEASURING'],
    ['low_perfusion', 'LOW PERFUSION'],
    ['low_signal', 'LOW SIGNAL'],
    ['artifact', 'ARTIFACT'],
    ['interference', 'INTERFERENCE'],
    ['questionable', 'QUESTIONABLE'],
  ];
  // Flags worth showing next to a valid number (quality hints).
  const QUALITY_FLAGS = {
    artifact: 'ARTIFACT', low_perfusion: 'LOW PERFUSION', low_signal: 'LOW SIGNAL',
    interference: 'INTERFERENCE', questionable: 'QUESTIONABLE', low_battery: 'LOW BATTERY',
    irregular_pulse: 'IRREGULAR PULSE',
  };
  const INVALID_TEXT = {
    no_value: 'NO VALUE', not_at_resolution: 'NO VALUE', positive_infinity: 'OUT OF RANGE',
    negative_infinity: 'OUT OF RANGE', reserved: 'INVALID', out_of_range: 'OUT OF RANGE',
    device_flagged: 'DEVICE FLAGGED', device_marked_invalid: 'MARKED INVALID',
  };
  // Physiological conditions: [what, comparison shown with value and limit].
  const PHYSIO = {
    spo2_low: ['SpO2', '<'], spo2_high: ['SpO2', '>'],
    pulse_rate_low: ['PR', '<'], pulse_rate_high: ['PR', '>'],
    perfusion_index_low: ['PI', '<'],
    nibp_sys_high: ['NIBP SYS', '>'], nibp_sys_low: ['NIBP SYS', '<'],
    nibp_dia_high: ['NIBP DIA', '>'], nibp_dia_low: ['NIBP DIA', '<'],
    nibp_mean_high: ['NIBP MEAN', '>'], nibp_mean_low: ['NIBP MEAN', '<'],
    nibp_sys_rise: ['SYS RISE', '>'], nibp_dia_rise: ['DIA RISE', '>'],
    nibp_sys_fall: ['SYS FALL', '<'], nibp_dia_fall: ['DIA FALL', '<'],
    pulse_rate_rise: ['PR RISE', '>'], pulse_rate_fall: ['PR FALL', '<'],
  };
  const TECHNICAL = {
    device_disconnected: 'DEVICE DISCONNECTED', no_data: 'NO DATA', nibp_overdue: 'NIBP OVERDUE',
    sensor_off: 'SENSOR OFF', no_finger: 'FINGER OUT', probe_unplugged: 'PROBE UNPLUGGED',
    sensor_fault: 'SENSOR FAULT', searching_too_long: 'SEARCHING TOO LONG',
    low_perfusion: 'LOW PERFUSION', low_signal: 'LOW SIGNAL', low_battery: 'LOW BATTERY',
    cuff_error: 'CUFF ERROR', no_dashboard: 'NO DASHBOARD ABLE TO SOUND',
    device_flooding: 'DEVICE FLOODING',
  };

  // ---------------------------------------------------------------- state
  const S = {
    token: null,
    ws: null,
    wsOpen: false,
    backoff: BACKOFF_MIN_MS,
    retryTimer: null,
    retryAt: 0,
    reconnects: 0,
    haveSnapshot: false,
    lastSeq: 0,        // highest seq processed
    snapSeq: 0,        // seq the latest snapshot covers
    gaps: 0,           // sequence gaps seen (coalesced or lost)
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
  };

  // ---------------------------------------------------------------- helpers
  const $ = (sel, root) => (root || document).querySelector(sel);

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = v;
        else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  function toMs(t) {
    if (typeof t === 'number' && Number.isFinite(t)) return t;
    if (typeof t === 'string') {
      const ms = Date.parse(t);
      return Number.isFinite(ms) ? ms : null;
    }
    return null;
  }

  function serverNow() {
    return Date.now() + S.clockOffset;
  }

  function ageText(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min';
    return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
  }

  function fmtNum(v, digits) {
    if (typeof v !== 'number' || !Number.isFinite(v)) return '--';
    return v.toFixed(digits || 0);
  }

  function fmtPi(v) {
    return v < 1 ? fmtNum(v, 2) : fmtNum(v, 1);
  }

  function clockText(ms) {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, '0');
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function reasonOf(r) {
    const flags = Array.isArray(r.flags) ? r.flags : [];
    for (const [flag, text] of REASON_FLAGS) {
      if (flags.includes(flag)) return text;
    }
    const cuff = flags.find((f) => typeof f === 'string' && f.startsWith('cuff_error:'));
    if (cuff) return 'CUFF ERROR ' + cuff.slice('cuff_error:'.length);
    if (r.invalid) return INVALID_TEXT[r.invalid] || String(r.invalid).replace(/_/g, ' ').toUpperCase();
    return 'NO VALUE';
  }

  function qualityOf(r) {
    const flags = Array.isArray(r.flags) ? r.flags : [];
    const out = [];
    for (const f of flags) if (QUALITY_FLAGS[f]) out.push(QUALITY_FLAGS[f]);
    return out.join(' · ');
  }

  function alarmText(a) {
    const mark = MARK[a.priority] || '?';
    const p = PHYSIO[a.condition];
    if (p) {
      if (typeof a.value === 'number' && typeof a.limit === 'number') {
        const d = a.condition.startsWith('perfusion') ? 1 : 0;
        return `${mark} ${p[0]} ${fmtNum(a.value, d)} ${p[1]} ${fmtNum(a.limit, d)}`;
      }
      return `${mark} ${p[0]} ${p[1] === '<' ? 'LOW' : 'HIGH'}`;
    }
    const what = TECHNICAL[a.condition] || String(a.condition || 'alarm').replace(/_/g, ' ').toUpperCase();
    let extra = '';
    if (a.condition === 'cuff_error' && typeof a.value === 'number') extra = ' ' + fmtNum(a.value);
    if (a.target) extra = ': ' + a.target; // notify_failed names the failing target
    let dev = '';
    if (a.device) {
      const bed = S.beds.get(a.bed);
      const d = bed && bed.devices.get(a.device);
      dev = ' (' + (d && d.kind ? d.kind.toUpperCase() : a.device) + ')';
    }
    return `${mark} ${what}${extra}${dev}`;
  }

  // System alarms that end only when their cause does: acknowledging them is refused (409).
  const NOT_ACKNOWLEDGEABLE = new Set(['no_dashboard', 'store_unwritable']);

  function alarmStateText(a) {
    const parts = [];
    if (a.condition === 'no_dashboard') parts.push('ENDS WHEN A DASHBOARD ARMS ITS SOUND');
    if (a.state === 'acknowledged') parts.push('ACKNOWLEDGED');
    else if (a.state === 'latched') parts.push('LATCHED');
    if (a.audio === 'paused') parts.push('AUDIO PAUSED');
    return parts.join(' · ');
  }

  function isSounding(a) {
    return a.audio === 'sounding' && (a.state === 'active' || a.state === 'latched');
  }

  function sortedAlarms(list) {
    return list.sort((x, y) =>
      (PRIO_RANK[y.priority] || 0) - (PRIO_RANK[x.priority] || 0) ||
      (x.state === 'acknowledged') - (y.state === 'acknowledged') ||
      (toMs(x.started) || 0) - (toMs(y.started) || 0));
  }

  // ---------------------------------------------------------------- ring buffers
  // Each point has a value and a min/max: a live reading has min = max = value; a point of a
  // downsampled history is a time bucket whose min and max keep a short dip visible.
  class Ring {
    constructor(cap) {
      this.cap = cap;
      this.t = new Float64Array(cap);
      this.v = new Float32Array(cap);
      this.lo = new Float32Array(cap);
      this.hi = new Float32Array(cap);
      this.len = 0;
      this.head = 0;
    }
    push(t, v, lo, hi) {
      this.t[this.head] = t;
      this.v[this.head] = v;
      this.lo[this.head] = lo === undefined ? v : lo;
      this.hi[this.head] = hi === undefined ? v : hi;
      this.head = (this.head + 1) % this.cap;
      if (this.len < this.cap) this.len++;
    }
    firstT() {
      return this.len ? this.t[(this.head - this.len + this.cap) % this.cap] : Infinity;
    }
    lastT() {
      return this.len ? this.t[(this.head - 1 + this.cap) % this.cap] : -Infinity;
    }
    lastV() {
      return this.len ? this.v[(this.head - 1 + this.cap) % this.cap] : NaN;
    }
    setLast(v) {
      if (!this.len) return;
      const i = (this.head - 1 + this.cap) % this.cap;
      this.v[i] = v; this.lo[i] = v; this.hi[i] = v;
    }
    forEach(fn) {
      let i = (this.head - this.len + this.cap) % this.cap;
      for (let k = 0; k < this.len; k++) {
        fn(this.t[i], this.v[i], this.lo[i], this.hi[i]);
        i = (i + 1) % this.cap;
      }
    }
  }

  // ---------------------------------------------------------------- token and HTTP
  // The token lives in sessionStorage: it survives a reload of this tab, and is gone when the
  // tab closes (a token left in localStorage would outlive the shift). An older page kept it in
  // localStorage: move it over once and delete it there.
  function loadToken() {
    try {
      const old = localStorage.getItem('vitalsd.token');
      if (old !== null) {
        localStorage.removeItem('vitalsd.token');
        if (sessionStorage.getItem('vitalsd.token') === null) sessionStorage.setItem('vitalsd.token', old);
      }
    } catch (e) { /* no storage */ }
    const m = /(?:^|[#&])token=([^&]*)/.exec(location.hash || '');
    if (m) {
      const t = decodeURIComponent(m[1]);
      try { sessionStorage.setItem('vitalsd.token', t); } catch (e) { /* private mode */ }
      // Keep the token out of the address bar (and out of screenshots of it).
      history.replaceState(null, '', location.pathname + location.search);
      return t || null;
    }
    try { return sessionStorage.getItem('vitalsd.token'); } catch (e) { return null; }
  }

  // Characters a WebSocket subprotocol may carry (RFC 6455: an HTTP token).
  const SUBPROTOCOL_SAFE = /^[A-Za-z0-9\-._~!#$&'*+^|]+$/;

  async function api(method, path, body) {
    const headers = {};
    if (S.token) headers.Authorization = 'Bearer ' + S.token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, {
        method, headers, cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      return { ok: false, status: 0, error: 'network error: ' + (e && e.message ? e.message : e) };
    }
    let text = '';
    try { text = await res.text(); } catch (e) { /* empty body */ }
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
    if (!res.ok) {
      const msg = (json && typeof json.error === 'string' && json.error) || text || res.statusText;
      return { ok: false, status: res.status, json, error: res.status + ' ' + msg };
    }
    return { ok: true, status: res.status, json };
  }

  // A bed's `limits_off` (spo2, pulse_rate without a limit rule in force), after its limits or
  // baseline changed.
  async function refreshLimitsOff(bed) {
    const r = await api('GET', '/api/rooms');
    if (!r.ok || !r.json || !Array.isArray(r.json.rooms)) return;
    for (const room of r.json.rooms) {
      for (const b of Array.isArray(room.beds) ? room.beds : []) {
        if (b.id === bed.id) {
          bed.limitsOff = Array.isArray(b.limits_off) ? b.limits_off : [];
          bed.dirty = true;
        }
      }
    }
  }

  function bedPath(bed) {
    return '/api/beds/' + encodeURIComponent(bed.roomId) + '/' + encodeURIComponent(bed.recliner);
  }

  async function checkAuth() {
    const r = await api('GET', '/api/rooms');
    if (r.status === 401 || r.status === 403) {
      S.authError = (S.token ? 'The daemon refused this page\'s token (' : 'The daemon needs a token (') +
        r.error + '). Open the dashboard as /#token=YOUR_TOKEN.';
    } else {
      S.authError = null;
    }
  }

  // ---------------------------------------------------------------- WebSocket
  function connect() {
    clearTimeout(S.retryTimer);
    S.retryTimer = null;
    const q = new URLSearchParams();
    // The token travels as a subprotocol (never in the URL, so never in a proxy's access log);
    // only a token with characters a subprotocol cannot carry falls back to the query.
    const protocols = [];
    if (S.token && SUBPROTOCOL_SAFE.test(S.token)) {
      protocols.push('vitalsd', 'vitalsd.token.' + S.token);
    } else if (S.token) {
      q.set('token', S.token);
    }
    if (S.haveSnapshot && S.lastSeq > 0) q.set('since', String(S.lastSeq));
    const qs = q.toString();
    const url = (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/ws' + (qs ? '?' + qs : '');
    let ws;
    try {
      ws = protocols.length ? new WebSocket(url, protocols) : new WebSocket(url);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    S.ws = ws;
    S.wsOpen = false;
    let opened = false;
    ws.onopen = () => {
      if (S.ws !== ws) return;
      opened = true;
      S.wsOpen = true;
      S.counted = false;
      sendBeat(true);
    };
    ws.onmessage = (ev) => {
      if (S.ws === ws) onMessage(ev.data);
    };
    ws.onclose = () => {
      if (S.ws !== ws) return;
      S.ws = null;
      S.wsOpen = false;
      if (!opened) checkAuth();
      scheduleReconnect();
    };
    ws.onerror = () => { /* a close event follows */ };
  }

  function scheduleReconnect() {
    if (S.retryTimer) return;
    const d = S.backoff;
    S.backoff = Math.min(S.backoff * 2, BACKOFF_MAX_MS);
    S.retryAt = performance.now() + d;
    S.reconnects++;
    S.retryTimer = setTimeout(connect, d);
  }

  // A socket that delivers nothing (not even heartbeats) is dead even if the browser has not
  // noticed: drop it and reconnect.
  function checkLink(now) {
    if (S.ws && now - S.lastMsgAt > NOT_MONITORING_MS && now - S.connectedAt > NOT_MONITORING_MS) {
      const ws = S.ws;
      S.ws = null;
      S.wsOpen = false;
      try { ws.close(); } catch (e) { /* already closed */ }
      scheduleReconnect();
    }
  }

  function onMessage(text) {
    let m;
    try { m = JSON.parse(text); } catch (e) { return; }
    if (!m || typeof m !== 'object') return;
    S.lastMsgAt = performance.now();
    S.messages++;
    const t = toMs(m.time);
    if (t !== null) S.clockOffset = t - Date.now();
    if (m.type === 'snapshot') onSnapshot(m);
    else if (m.type === 'heartbeat') onHeartbeat(m);
    else onSequenced(m);
    sendBeat(false);
  }

  function onHeartbeat(m) {
    S.coalesced = Number(m.coalesced) || 0;
    S.counted = m.counted === true;
    if (m.dashboards && typeof m.dashboards === 'object') S.dashboards = m.dashboards;
  }

  function onSequenced(m) {
    const seq = Number(m.seq);
    if (!Number.isFinite(seq)) return;
    if (seq <= S.lastSeq) return; // already processed
    if (seq !== S.lastSeq + 1) S.gaps++;
    S.lastSeq = seq;
    // Messages the latest snapshot already covers: their state is in it; only history is new.
    const covered = seq <= S.snapSeq;
    if (m.type === 'reading') onReading(m);
    else if (m.type === 'device_status') { if (!covered) onDeviceStatus(m); }
    else if (m.type === 'alarm') onAlarm(m, covered);
    else if (m.type === 'session') onSession(m);
  }

  function onSnapshot(m) {
    const seq = Number(m.seq) || 0;
    const resumed = m.resumed === true && S.haveSnapshot;
    // A restarted daemon counts from 1 again: its `started` differs (older daemons: seq went back).
    const restarted = resumed &&
      ((typeof m.started === 'string' && S.started !== null && m.started !== S.started) || seq < S.lastSeq);
    if (typeof m.started === 'string') S.started = m.started;
    const fresh = !resumed || restarted;
    if (restarted) S.restarts++;
    S.snapshots.push({ seq, resumed: m.resumed === true, after: S.lastSeq, restarted });
    if (S.snapshots.length > 5) S.snapshots.shift();
    if (fresh) S.lastSeq = seq;
    S.snapSeq = seq;
    S.haveSnapshot = true;
    S.backoff = BACKOFF_MIN_MS;
    S.connectedAt = performance.now();
    S.authError = null;
    S.simulated = m.simulated === true;
    if (m.dashboards && typeof m.dashboards === 'object') S.dashboards = m.dashboards;
    const rooms = Array.isArray(m.rooms) ? m.rooms : [];
    ensureLayout(rooms);
    const alarms = new Map();
    for (const a of Array.isArray(m.alarms) ? m.alarms : []) if (a && a.id !== undefined) alarms.set(a.id, a);
    for (const room of rooms) {
      for (const b of Array.isArray(room.beds) ? room.beds : []) {
        const bed = S.beds.get(b.id);
        if (!bed) continue;
        bed.label = b.label || b.id;
        bed.bpIntervalMs = (Number(b.bp_interval_s) || 300) * 1000;
        for (const d of Array.isArray(b.devices) ? b.devices : []) {
          bed.devices.set(d.id, {
            kind: d.kind, status: d.status, detail: d.detail, vendor: d.vendor, model: d.model,
            simulated: d.simulated === true,
          });
          if (d.simulated === true) S.simulatedReadings = true;
        }
        const latest = b.latest && typeof b.latest === 'object' ? b.latest : {};
        // On a resume, the missed readings follow: they go into the trends in order.
        for (const r of Object.values(latest)) applyReading(bed, r, fresh);
        for (const a of Array.isArray(b.alarms) ? b.alarms : []) if (a && a.id !== undefined) alarms.set(a.id, a);
        bed.pausedUntil = toMs(b.audio_paused_until);
        bed.limitsOff = Array.isArray(b.limits_off) ? b.limits_off : [];
        bed.dirty = true;
        if (fresh) { loadSession(bed); loadHistory(bed); }
      }
    }
    for (const [id, a] of S.alarms) {
      if (!alarms.has(id)) pushRecent({ at: serverNow(), bed: a.bed, text: alarmText(a), what: 'gone', priority: a.priority });
    }
    S.alarms = alarms;
    S.logDirty = true;
    if (fresh) loadAlarmLog();
    updateAudio('snapshot');
  }

  function applyReading(bed, r, toTrend) {
    if (!r || typeof r.metric !== 'string') return;
    const t = Number(r.received_ms);
    if (!Number.isFinite(t)) return;
    const value = typeof r.value === 'number' && Number.isFinite(r.value) ? r.value : null;
    if (r.simulated === true) S.simulatedReadings = true;
    if (r.metric === 'pleth') {
      if (t >= bed.plethLastT) {
        bed.pleth.push(t, value === null ? NaN : value);
        bed.plethLastT = t;
        bed.plethDirty = true;
      }
      return;
    }
    const cur = bed.latest[r.metric];
    if (!cur || t >= cur.received_ms) {
      bed.latest[r.metric] = {
        value, invalid: r.invalid || null, flags: Array.isArray(r.flags) ? r.flags : [],
        received_ms: t, device: r.device,
      };
      bed.dirty = true;
    }
    const ring = toTrend && bed.trends[r.metric];
    if (ring && t > ring.lastT()) {
      const v = value === null ? NaN : value;
      // At most one point a second; an invalid stretch always shows as a gap.
      if (t - ring.lastT() < 900 && Number.isNaN(v) === Number.isNaN(ring.lastV())) ring.setLast(v);
      else ring.push(t, v);
    }
  }

  // Readings the snapshot covers are older than its latest values: applyReading keeps the
  // newest for display, and puts every reading into the trends in order.
  function onReading(m) {
    const bed = S.beds.get(m.bed);
    if (bed) applyReading(bed, m, true);
  }

  function onDeviceStatus(m) {
    const bed = S.beds.get(m.bed);
    if (!bed) return;
    const d = bed.devices.get(m.device) || {};
    d.status = m.status;
    d.detail = m.detail;
    bed.devices.set(m.device, d);
    bed.dirty = true;
  }

  function newerOrSame(a, cur) {
    if (!cur) return true;
    const ta = toMs(a.updated);
    const tc = toMs(cur.updated);
    return ta === null || tc === null || ta >= tc;
  }

  function onAlarm(m, covered) {
    const a = m.alarm && typeof m.alarm === 'object' ? m.alarm : null;
    const bed = m.bed ? S.beds.get(m.bed) : null;
    const at = toMs(m.at) || serverNow();
    switch (m.event) {
      case 'raised': case 'updated': case 'acknowledged': case 'latched':
        if (a && !covered && newerOrSame(a, S.alarms.get(a.id))) S.alarms.set(a.id, a);
        break;
      case 'cleared':
        if (a && !covered) S.alarms.delete(a.id);
        break;
      case 'audio_paused':
        if (bed && !covered) bed.pausedUntil = toMs(m.until);
        break;
      case 'audio_resumed':
        if (bed && !covered) bed.pausedUntil = null;
        break;
      case 'limits_changed': case 'baseline_set':
        // Which guarded metrics have no limit in force comes with the bed in /api/rooms.
        if (bed && !covered) refreshLimitsOff(bed);
        break;
      default:
        break;
    }
    if (bed) bed.dirty = true;
    const e = recentOf(m, at);
    if (e) pushRecent(e);
    S.logDirty = true;
    // The sound starts (or stops) from this message, not from the next timer tick.
    if (!covered) updateAudio('event');
  }

  // The alarm log's entry for an `alarm` message (live or from the history), null for updates.
  function recentOf(m, at) {
    if (m.event === 'updated') return null;
    const a = m.alarm && typeof m.alarm === 'object' ? m.alarm : null;
    let text;
    if (a) text = alarmText(a);
    else if (m.event === 'audio_paused') text = 'audio paused until ' + (m.until ? clockText(toMs(m.until)) : '?');
    else text = String(m.event || '').replace(/_/g, ' ');
    return {
      at: at || toMs(m.at) || serverNow(), bed: m.bed, text, what: m.event, actor: m.actor,
      priority: a && a.priority, id: a ? a.id : undefined,
    };
  }

  function pushRecent(e) {
    if (S.recent.length && S.recent.some((x) => recentKey(x) === recentKey(e))) return;
    S.recent.unshift(e);
    if (S.recent.length > RECENT_CAP) S.recent.length = RECENT_CAP;
    S.logDirty = true;
  }

  // ---------------------------------------------------------------- history (storage)
  // On open, on a reconnect that is not a resume, and when the trend window changes, the
  // trends are filled from GET .../history (downsampled by the daemon to about one point per
  // pixel, each a min/max/mean bucket) and the alarm log from GET /api/alarms/history. The
  // history is authoritative up to its last point; live readings after it stay as they came,
  // so the chart continues without a seam.
  const HISTORY_METRICS = ['spo2', 'pulse_rate', 'nibp_sys', 'nibp_dia'];

  function trendPoints(bed) {
    const c = bed.el && bed.el.trend;
    const w = c && c.clientWidth ? c.clientWidth : 900;
    return Math.max(100, Math.min(2000, Math.round(w)));
  }

  async function loadHistory(bed) {
    const minutes = S.trendMinutes;
    const to = serverNow();
    const from = to - minutes * 60000;
    const points = trendPoints(bed);
    const gen = (bed.histGen = (bed.histGen || 0) + 1);
    const got = await Promise.all(HISTORY_METRICS.map((m) => api('GET', bedPath(bed) + '/history?metric=' + m +
      '&from=' + Math.floor(from) + '&to=' + Math.ceil(to) + '&points=' + points)));
    if (gen !== bed.histGen) return; // a newer request superseded this one
    got.forEach((r, i) => {
      if (!r.ok || !r.json || !Array.isArray(r.json.points)) return;
      const metric = HISTORY_METRICS[i];
      const old = bed.trends[metric];
      const fresh = new Ring(old.cap);
      let end = -Infinity;
      const pts = r.json.points;
      const bucket = pts.length > 1 ? Math.max(0, (to - from) / points) : 0;
      for (const p of pts) {
        const t = Number(p.t_ms);
        if (!Number.isFinite(t)) continue;
        const ok = typeof p.avg === 'number' && Number.isFinite(p.avg);
        fresh.push(t, ok ? p.avg : NaN, ok && typeof p.min === 'number' ? p.min : NaN, ok && typeof p.max === 'number' ? p.max : NaN);
        end = Math.max(end, t + (p.n > 1 || p.invalid > 1 ? bucket : 0));
      }
      old.forEach((t, v, lo, hi) => { if (t > end) fresh.push(t, v, lo, hi); });
      bed.trends[metric] = fresh;
    });
    bed.histFrom = from;
    bed.histBucketMs = (to - from) / points;
    bed.histLoads = (bed.histLoads || 0) + 1;
    lastTrendDraw = 0;
  }

  async function loadAlarmLog() {
    const r = await api('GET', '/api/alarms/history?limit=' + RECENT_CAP);
    if (!r.ok || !r.json || !Array.isArray(r.json.events)) return;
    const seen = new Set(S.recent.map(recentKey));
    for (const m of r.json.events) {
      if (!m || typeof m !== 'object') continue;
      const e = recentOf(m);
      if (!e || seen.has(recentKey(e))) continue;
      seen.add(recentKey(e));
      S.recent.push(e);
    }
    S.recent.sort((a, b) => b.at - a.at);
    if (S.recent.length > RECENT_CAP) S.recent.length = RECENT_CAP;
    S.alarmLogLoads = (S.alarmLogLoads || 0) + 1;
    S.logDirty = true;
  }

  function recentKey(e) {
    return e.at + '|' + e.what + '|' + (e.id === undefined ? e.text : e.id);
  }

  // ---------------------------------------------------------------- sessions (storage)
  async function loadSession(bed) {
    const r = await api('GET', bedPath(bed) + '/session');
    if (r.ok && r.json) applySession(bed, r.json.session !== undefined ? r.json.session : r.json);
    // 404: no session, or the storage endpoints are not there yet: nothing to show.
  }

  function applySession(bed, s) {
    if (!s || typeof s !== 'object' || s.discharged_ms || s.discharged === true) {
      bed.patient = null;
      bed.session = null;
      bed.phase = null;
      bed.doses = [];
      bed.dirty = true;
      renderSessionPanel(bed);
      return;
    }
    const label = s.label || s.display_label || null;
    bed.patient = typeof label === 'string' ? label : null;
    bed.session = { id: s.id, label: bed.patient, mrn: s.mrn || null, weight: s.weight_kg, admitted: toMs(s.admitted_ms) };
    for (const e of Array.isArray(s.events) ? s.events : []) addSessionEvent(bed, e);
    bed.dirty = true;
    renderSessionPanel(bed);
  }

  // A stored session event ({id, at_ms, kind, actor, event: {...as posted}}): doses and phase
  // changes become markers on the trends; a baseline is remembered for the panel.
  function addSessionEvent(bed, e) {
    if (!e || typeof e !== 'object') return;
    const kind = e.kind;
    const body = e.event && typeof e.event === 'object' ? e.event : e;
    const t = toMs(e.at_ms);
    if (t === null) return;
    if (kind === 'baseline') { bed.baseline = body; renderSessionPanel(bed); return; }
    if (kind === 'phase') { bed.phase = body.phase || null; renderSessionPanel(bed); }
    if (kind !== 'dose' && kind !== 'phase') return;
    if (bed.doses.some((d) => d.id === e.id)) return;
    const text = kind === 'dose'
      ? 'DOSE ' + [body.drug, body.dose, body.unit, body.route].filter((x) => x !== undefined && x !== null).join(' ')
      : 'PHASE ' + String(body.phase || '').toUpperCase();
    bed.doses.push({ id: e.id, t, kind, text });
    bed.doses.sort((a, b) => a.t - b.t);
    if (bed.doses.length > DOSE_CAP) bed.doses.shift();
    lastTrendDraw = 0;
  }

  function onSession(m) {
    const bed = S.beds.get(m.bed);
    if (!bed) return;
    const ev = m.event;
    if (ev === 'discharged') { applySession(bed, null); return; }
    if (m.session && typeof m.session === 'object') applySession(bed, m.session);
    const row = ev && typeof ev === 'object' ? ev : (m.kind && m.at_ms !== undefined ? m : null);
    if (row) addSessionEvent(bed, row);
    bed.dirty = true;
    if (bed.session) refreshReadiness(bed);
  }

  // ---------------------------------------------------------------- layout
  function ensureLayout(rooms) {
    const key = JSON.stringify(rooms.map((r) => [r.id, r.name,
      (Array.isArray(r.beds) ? r.beds : []).map((b) => [b.id, b.recliner, b.label])]));
    if (key === S.layoutKey) return;
    S.layoutKey = key;
    const old = S.beds;
    S.beds = new Map();
    const main = $('#rooms');
    main.replaceChildren();
    for (const r of rooms) {
      const grid = h('div', { class: 'beds' });
      main.append(h('section', { class: 'room', 'data-room': r.id },
        h('h2', { text: r.name || r.id }), grid));
      for (const b of Array.isArray(r.beds) ? r.beds : []) {
        const prev = old.get(b.id);
        const bed = prev || newBed(b, r);
        bed.roomId = r.id;
        bed.recliner = b.recliner;
        bed.label = b.label || b.id;
        bed.el = buildBed(bed);
        bed.dirty = true;
        grid.append(bed.el.root);
        S.beds.set(b.id, bed);
      }
    }
  }

  function newBed(b, r) {
    return {
      id: b.id, roomId: r.id, recliner: b.recliner, label: b.label || b.id,
      bpIntervalMs: (Number(b.bp_interval_s) || 300) * 1000,
      devices: new Map(), latest: {}, patient: null, doses: [], pausedUntil: null, limitsOff: [],
      trends: {
        spo2: new Ring(TREND_CAP), pulse_rate: new Ring(TREND_CAP),
        nibp_sys: new Ring(NIBP_CAP), nibp_dia: new Ring(NIBP_CAP),
      },
      pleth: new Ring(PLETH_CAP), plethLastT: -Infinity, plethDirty: true,
      dirty: true, el: null,
    };
  }

  function numeric(cls, metric, name, unit) {
    const value = h('div', { class: 'value', text: '--' });
    const note = h('div', { class: 'note' });
    const root = h('div', { class: 'num ' + cls, 'data-metric': metric },
      h('div', { class: 'name' }, name, ' ', h('small', { text: unit })), value, note);
    return { root, value, note };
  }

  function buildBed(bed) {
    const spo2 = numeric('spo2', 'spo2', 'SpO2', '%');
    const pr = numeric('pr', 'pulse_rate', 'PR', '/min');
    const pi = numeric('pi', 'perfusion_index', 'PI', '%');
    const nibp = numeric('nibp', 'nibp', 'NIBP', 'mmHg');
    const nibpMean = h('span', { class: 'mean' });
    nibp.root.querySelector('.name').append(nibpMean);
    const pleth = h('canvas', { class: 'pleth', width: 600, height: 80, role: 'img', 'aria-label': 'Pleth waveform of ' + bed.label });
    const trend = h('canvas', { class: 'trend', width: 900, height: 220, role: 'img', 'aria-label': 'Trends of ' + bed.label });
    const label = h('span', { class: 'bed-label', text: bed.label });
    const patient = h('span', { class: 'patient' });
    const headAlarm = h('span', { class: 'head-alarm' });
    const limitsOff = h('div', { class: 'limits-off', role: 'status', hidden: true });
    const pauseBtn = h('button', { class: 'pause', type: 'button', onclick: () => togglePause(bed) }, 'PAUSE AUDIO 2 min');
    const devices = h('div', { class: 'devices' });
    const alarms = h('ul', { class: 'bed-alarms' });
    const msg = h('div', { class: 'bed-msg', role: 'status' });
    const actions = buildActions(bed);
    const root = h('article', { class: 'bed', 'data-bed': bed.id },
      h('header', { class: 'bed-head' }, label, patient, headAlarm, h('span', { class: 'spacer' }), pauseBtn),
      limitsOff,
      alarms,
      h('div', { class: 'numerics' }, spo2.root, pr.root, nibp.root, pi.root),
      h('div', { class: 'wave' }, h('span', { class: 'wave-label', text: 'PLETH' }), pleth),
      h('div', { class: 'trend-box' }, trend),
      h('footer', { class: 'bed-foot' }, devices, actions),
      msg);
    return { root, spo2, pr, pi, nibp, nibpMean, pleth, trend, label, patient, headAlarm, limitsOff, pauseBtn, devices, alarms, msg, alarmEls: new Map(), deviceKey: '' };
  }

  function showMsg(bed, text, ok) {
    setText(bed.el.msg, text);
    bed.el.msg.classList.toggle('ok', !!ok);
    bed.el.msg.classList.toggle('err', !ok);
    clearTimeout(bed.msgTimer);
    bed.msgTimer = setTimeout(() => setText(bed.el.msg, ''), ok ? 6000 : 20000);
  }

  function buildActions(bed) {
    const field = (name, label, attrs) => h('label', null, label, h('input', Object.assign({ name }, attrs || {})));
    const result = async (what, p) => {
      const r = await p;
      if (r.ok) showMsg(bed, what + ': done', true);
      else showMsg(bed, what + ' failed: ' + r.error, false);
      return r;
    };
    const num = (form, name) => {
      const v = form.elements[name] && form.elements[name].value.trim();
      if (!v) return undefined;
      const n = Number(v);
      return Number.isFinite(n) ? n : undefined;
    };
    const str = (form, name) => {
      const v = form.elements[name] && form.elements[name].value.trim();
      return v ? v : undefined;
    };
    const submit = (fn) => (ev) => { ev.preventDefault(); fn(ev.target); };

    const limitsText = h('textarea', { name: 'limits', rows: 6, spellcheck: 'false', placeholder: 'limits JSON (load first)' });
    const limits = h('form', { class: 'act', onsubmit: submit(() => {
      let body;
      try { body = JSON.parse(limitsText.value); } catch (e) { showMsg(bed, 'limits: not JSON: ' + e.message, false); return; }
      result('limits', api('PUT', bedPath(bed) + '/limits', body));
    }) },
    h('h4', { text: 'Alarm limits' }), limitsText,
    h('div', { class: 'row' },
      h('button', { type: 'button', onclick: async () => {
        const r = await result('load limits', api('GET', bedPath(bed) + '/limits'));
        if (r.ok) limitsText.value = JSON.stringify(r.json, null, 1);
      } }, 'Load'),
      h('button', { type: 'submit' }, 'Save'),
      h('button', { type: 'button', onclick: () => result('preset', api('PUT', bedPath(bed) + '/limits', { preset: 'ketamine-session' })) }, 'Preset: ketamine-session')));

    // The session: each action is confirmed only once the daemon answered that it committed it.
    const baselineBody = (b) => ({ kind: 'baseline', sys: b.sys, dia: b.dia, pulse_rate: b.pulse_rate, spo2: b.spo2 });
    const baseline = h('form', { class: 'act', 'data-act': 'baseline', onsubmit: submit((f) => {
      result('pre-dose baseline', api('POST', bedPath(bed) + '/events', baselineBody({
        sys: num(f, 'sys'), dia: num(f, 'dia'), pulse_rate: num(f, 'pulse_rate'), spo2: num(f, 'spo2'),
      })));
    }) },
    h('h4', { text: 'Pre-dose baseline' }),
    h('div', { class: 'row' }, h('button', { type: 'button', 'data-action': 'capture-baseline', onclick: async () => {
      // The median of the recent valid readings: the alarm engine's baseline, which the daemon
      // also records in the open session before it answers.
      const r = await api('POST', bedPath(bed) + '/baseline', { from_recent: true });
      if (!r.ok) { showMsg(bed, 'capture baseline failed: ' + r.error, false); return; }
      const b = (r.json && r.json.baseline) || {};
      showMsg(bed, 'pre-dose baseline captured (' + baselineText(b) + ')', true);
      bed.baseline = b;
      renderSessionPanel(bed);
    } }, 'Capture from recent readings')),
    h('div', { class: 'row' }, field('sys', 'SYS', { inputmode: 'numeric', size: 4 }), field('dia', 'DIA', { inputmode: 'numeric', size: 4 }),
      field('pulse_rate', 'PR', { inputmode: 'numeric', size: 4 }), field('spo2', 'SpO2', { inputmode: 'numeric', size: 4 })),
    h('button', { type: 'submit' }, 'Set these values'));

    const admit = h('form', { class: 'act', 'data-act': 'admit', onsubmit: submit((f) => {
      result('admit', api('POST', bedPath(bed) + '/admit', {
        label: str(f, 'label'), mrn: str(f, 'mrn'), weight_kg: num(f, 'weight_kg'),
      })).then((r) => { if (r.ok) { f.reset(); applySession(bed, r.json.session); } });
    }) },
    h('h4', { text: 'Admit' }),
    h('div', { class: 'row' }, field('label', 'Label (initials)', { size: 8, required: true, maxlength: 32 }), field('mrn', 'MRN (optional)', { size: 10 }),
      field('weight_kg', 'Weight kg (optional)', { inputmode: 'decimal', size: 5 })),
    h('button', { type: 'submit' }, 'Admit'));

    const dose = h('form', { class: 'act', 'data-act': 'dose', onsubmit: submit((f) => {
      result('dose', api('POST', bedPath(bed) + '/events', {
        kind: 'dose', drug: str(f, 'drug'), dose: num(f, 'dose'), unit: str(f, 'unit'), route: str(f, 'route'),
      }));
    }) },
    h('h4', { text: 'Dose' }),
    h('div', { class: 'row' }, field('drug', 'Drug', { value: 'ketamine', size: 9, required: true }), field('dose', 'Dose', { inputmode: 'decimal', size: 4, required: true }),
      field('unit', 'Unit', { value: 'mg', size: 5, required: true }), field('route', 'Route', { value: 'IM', size: 4, required: true })),
    h('button', { type: 'submit' }, 'Record dose'));

    const phaseSel = h('select', { name: 'phase' }, ...['preparation', 'dosing', 'monitoring', 'recovery'].map((p) => h('option', { value: p }, p)));
    const phase = h('form', { class: 'act', 'data-act': 'phase', onsubmit: submit(() => {
      result('phase ' + phaseSel.value, api('POST', bedPath(bed) + '/events', { kind: 'phase', phase: phaseSel.value }));
    }) }, h('h4', { text: 'Phase' }), h('div', { class: 'row' }, h('label', null, 'Phase', phaseSel)), h('button', { type: 'submit' }, 'Set phase'));

    const note = h('form', { class: 'act', 'data-act': 'note', onsubmit: submit((f) => {
      result('note', api('POST', bedPath(bed) + '/events', { kind: 'note', text: str(f, 'text') })).then((r) => { if (r.ok) f.reset(); });
    }) }, h('h4', { text: 'Note' }), h('div', { class: 'row' }, field('text', 'Text', { size: 28, required: true, maxlength: 500 })), h('button', { type: 'submit' }, 'Add note'));

    const readyText = h('div', { class: 'readiness', role: 'status', 'aria-live': 'polite', text: 'readiness not checked' });
    const readiness = h('div', { class: 'act', 'data-act': 'readiness' }, h('h4', { text: 'Discharge readiness' }), readyText,
      h('button', { type: 'button', onclick: () => refreshReadiness(bed, true) }, 'Check readiness'));

    const discharge = h('form', { class: 'act', 'data-act': 'discharge', onsubmit: submit(async (f) => {
      const driver = str(f, 'driver');
      if (!f.elements.driver_ok.checked || !driver) {
        showMsg(bed, 'discharge: confirm the designated driver (name and checkbox) first', false);
        return;
      }
      // The designated driver goes into the record first, then the discharge.
      const n = await api('POST', bedPath(bed) + '/events', { kind: 'note', text: 'Designated driver confirmed: ' + driver });
      if (!n.ok) { showMsg(bed, 'discharge failed (driver note): ' + n.error, false); return; }
      const r = await result('discharge', api('POST', bedPath(bed) + '/discharge', {}));
      if (r.ok) { f.reset(); applySession(bed, null); }
    }) }, h('h4', { text: 'Discharge' }),
    h('div', { class: 'row' }, field('driver', 'Designated driver (name)', { size: 16 })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'driver_ok' }), 'Driver present and confirmed; patient leaves with them'),
    h('button', { type: 'submit' }, 'Discharge'));

    const status = h('div', { class: 'session-status', text: 'No patient admitted' });
    bed.act = { status, readyText };
    return h('details', { class: 'actions' }, h('summary', { text: 'Session and bed actions' }), status,
      h('div', { class: 'act-grid' }, admit, baseline, dose, phase, note, readiness, discharge, limits));
  }

  function baselineText(b) {
    const parts = [];
    if (b && typeof b.sys === 'number') parts.push('BP ' + fmtNum(b.sys) + '/' + fmtNum(b.dia));
    if (b && typeof b.pulse_rate === 'number') parts.push('PR ' + fmtNum(b.pulse_rate));
    if (b && typeof b.spo2 === 'number') parts.push('SpO2 ' + fmtNum(b.spo2));
    return parts.length ? parts.join(' ') : 'no values yet';
  }

  function renderSessionPanel(bed) {
    if (!bed.act) return;
    const s = bed.session;
    let text = 'No patient admitted';
    if (s) {
      text = 'Admitted: ' + s.label + (s.mrn ? ' · MRN ' + s.mrn : '') + (typeof s.weight === 'number' ? ' · ' + s.weight + ' kg' : '') +
        (s.admitted ? ' · since ' + clockText(s.admitted) : '') + ' · phase ' + (bed.phase || '-') +
        ' · baseline ' + (bed.baseline ? baselineText(bed.baseline) : 'not captured');
    }
    setText(bed.act.status, text);
    bed.act.status.dataset.admitted = String(!!s);
    if (!s) { setText(bed.act.readyText, 'no patient'); bed.act.readyText.dataset.ready = ''; }
  }

  // GET .../readiness: ready since when, or the reasons it is not.
  async function refreshReadiness(bed, asked) {
    if (!bed.act || (!bed.session && !asked)) return;
    const r = await api('GET', bedPath(bed) + '/readiness');
    if (!r.ok || !r.json) { setText(bed.act.readyText, 'readiness unavailable: ' + r.error); return; }
    const j = r.json;
    const reasons = Array.isArray(j.reasons) ? j.reasons : [];
    setText(bed.act.readyText, j.ready
      ? 'READY for discharge' + (j.since_ms ? ' since ' + clockText(j.since_ms) : '')
      : 'NOT READY: ' + (reasons.length ? reasons.join('; ') : 'no reason given'));
    bed.act.readyText.dataset.ready = String(j.ready === true);
  }

  // ---------------------------------------------------------------- actions
  async function acknowledge(id, bed, btn) {
    btn.disabled = true;
    const r = await api('POST', '/api/alarms/' + encodeURIComponent(id) + '/ack');
    btn.disabled = false;
    if (r.ok) {
      const a = r.json && r.json.alarm;
      if (a && a.id !== undefined && S.alarms.has(a.id) && newerOrSame(a, S.alarms.get(a.id))) S.alarms.set(a.id, a);
      if (bed) { bed.dirty = true; showMsg(bed, 'alarm acknowledged', true); }
      S.logDirty = true;
      updateAudio('ack');
    } else if (bed) {
      showMsg(bed, 'acknowledge failed: ' + r.error, false);
    } else {
      showAuthLike('acknowledge failed: ' + r.error);
    }
  }

  async function togglePause(bed) {
    const paused = bed.pausedUntil && bed.pausedUntil > serverNow();
    const r = paused
      ? await api('DELETE', bedPath(bed) + '/audio-pause')
      : await api('POST', bedPath(bed) + '/audio-pause', { seconds: 120 });
    if (!r.ok) { showMsg(bed, (paused ? 'resume audio' : 'audio pause') + ' failed: ' + r.error, false); return; }
    if (!paused && r.json && r.json.until) bed.pausedUntil = toMs(r.json.until);
    if (paused) bed.pausedUntil = null;
    bed.dirty = true;
  }

  function showAuthLike(text) {
    S.authError = text;
  }

  // ---------------------------------------------------------------- audio (Web Audio)
  // IEC 60601-1-8-like patterns: high 10 pulses (3+2, pause, 3+2) every 5 s; medium 3 pulses
  // every 7 s; low 1 pulse every 16 s. Each pulse is a tone with harmonics, soft edges.
  //
  // A pattern is rendered once into a buffer one period long and played by a looping source:
  // the browser's audio thread repeats it with no timer of ours. It starts from the `alarm`
  // message that makes an alarm sound (updateAudio('event')) and stops on acknowledge, clear or
  // pause, so a background tab (timers throttled to 1 Hz or less) sounds exactly like a
  // visible one. The 250 ms tick only re-checks (updateAudio('timer')), a backstop.
  const PATTERNS = {
    high: { f: 660, pulse: 0.15, at: [0, 0.2, 0.4, 0.8, 1.0, 2.0, 2.2, 2.4, 2.8, 3.0], every: 5 },
    medium: { f: 523, pulse: 0.2, at: [0, 0.3, 0.6], every: 7 },
    low: { f: 440, pulse: 0.25, at: [0], every: 16 },
  };
  const PATTERN_RATE = 22050;          // Hz: the 5th harmonic of 660 Hz is well below Nyquist
  const HARMONICS = [1, 0.5, 0.35, 0.25, 0.18]; // fundamental plus four (IEC 60601-1-8)
  const A = {
    ctx: null, source: null, playing: null, buffers: {},
    startedBy: null, starts: 0, startedAt: null,
  };

  function setArmed(armed) {
    if (S.audioArmed === armed) return;
    S.audioArmed = armed;
    document.body.dataset.audioArmed = String(armed);
    sendBeat(true); // tell the daemon at once whether this page can sound
    updateAudio('armed');
  }

  function armAudio() {
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

  function beep(f, dur, gain) {
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
  function patternBuffer(prio) {
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

  function stopAudio() {
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
  function topSounding() {
    let best = null;
    for (const a of S.alarms.values()) {
      if (isSounding(a) && (!best || (PRIO_RANK[a.priority] || 0) > (PRIO_RANK[best] || 0))) best = a.priority;
    }
    if (S.notMonitoring && S.haveSnapshot && (PRIO_RANK[best] || 0) < PRIO_RANK.medium) best = 'medium';
    return best && PATTERNS[best] ? best : null;
  }

  // Plays the pattern of the highest sounding priority, or nothing. `by` says what started it
  // (`event`: the alarm message itself; `timer`: the backstop tick), for the test hook.
  function updateAudio(by) {
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

  // ---------------------------------------------------------------- page heartbeat
  // Every 2 s and on every change, the page tells the daemon whether it can sound: only a page
  // whose audio is armed counts as a dashboard watching (docs/api.md). It is sent from the
  // messages the daemon pushes (at least one a second) as well as from the timer, so a
  // background tab whose timers are throttled keeps sending it; a frozen tab stops, and stops
  // counting.
  const BEAT_MS = 2000;
  function sendBeat(force) {
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

  // ---------------------------------------------------------------- rendering
  function isLive(now) {
    return S.wsOpen && now - S.lastMsgAt < LIVE_MS;
  }

  function deviceFor(bed, r) {
    return r && r.device ? bed.devices.get(r.device) : null;
  }

  function renderOxi(bed, n, metric, fmt, now) {
    const r = bed.latest[metric];
    let text = '--', note = '', cls = '';
    if (r) {
      const age = now - r.received_ms;
      const dev = deviceFor(bed, r);
      const gone = dev && dev.status === 'disconnected';
      if (r.value === null) {
        text = '---';
        note = reasonOf(r);
        cls = 'invalid';
        if (age > OXI_STALE_MS || gone) { cls = 'invalid stale'; note += ' · ' + ageText(age) + ' ago'; }
      } else {
        text = fmt(r.value);
        if (age > OXI_STALE_MS || gone) {
          // Never a big stale number: dashes, and the reason and age small (IntelliVue practice).
          text = '--';
          cls = 'stale';
          note = (gone ? 'DISCONNECTED' : 'NO DATA') + ' · ' + ageText(age) + ' ago';
        } else {
          note = qualityOf(r);
          if (note) cls = 'quality';
        }
      }
      if (gone && r.value === null) note = 'DISCONNECTED · ' + note;
    }
    setText(n.value, text);
    setText(n.note, note);
    if (n.root.dataset.state !== cls) {
      n.root.dataset.state = cls;
      n.root.classList.toggle('stale', cls.includes('stale'));
      n.root.classList.toggle('invalid', cls.includes('invalid'));
      n.root.classList.toggle('quality', cls === 'quality');
    }
  }

  function renderNibp(bed, now) {
    const n = bed.el.nibp;
    const sys = bed.latest.nibp_sys;
    const dia = bed.latest.nibp_dia;
    const mean = bed.latest.nibp_mean;
    const cuff = bed.latest.cuff_pressure;
    let text = '--/--', note = '', stale = false, invalid = false, meanText = '';
    if (sys) {
      const age = now - sys.received_ms;
      stale = age > bed.bpIntervalMs + NIBP_GRACE_MS;
      if (stale) {
        // Overdue: the last measurement is only a small note, never the big number.
        const d = dia && dia.value !== null ? fmtNum(dia.value) : '--';
        note = (sys.value === null ? reasonOf(sys) : 'last ' + fmtNum(sys.value) + '/' + d) + ' · ' + ageText(age) + ' ago';
      } else if (sys.value === null) {
        text = '---/---';
        invalid = true;
        note = reasonOf(sys) + ' · ' + ageText(age) + ' ago';
      } else {
        const d = dia && Math.abs(dia.received_ms - sys.received_ms) < 5000 && dia.value !== null ? fmtNum(dia.value) : '--';
        text = fmtNum(sys.value) + '/' + d;
        if (mean && mean.value !== null && Math.abs(mean.received_ms - sys.received_ms) < 5000) meanText = ' (' + fmtNum(mean.value) + ')';
        note = ageText(age) + ' ago';
      }
    }
    if (cuff && cuff.value !== null && cuff.value > 5 && now - cuff.received_ms < 3000) {
      note = 'MEASURING · cuff ' + fmtNum(cuff.value) + (note ? ' · last ' + note : '');
    }
    setText(n.value, text);
    setText(n.note, note);
    setText(bed.el.nibpMean, meanText);
    n.root.classList.toggle('stale', stale);
    n.root.classList.toggle('invalid', invalid);
  }

  function renderBed(bed, now) {
    const el = bed.el;
    setText(el.label, bed.label);
    setText(el.patient, bed.patient ? bed.patient : '');
    el.patient.hidden = !bed.patient;
    renderOxi(bed, el.spo2, 'spo2', (v) => fmtNum(v), now);
    renderOxi(bed, el.pr, 'pulse_rate', (v) => fmtNum(v), now);
    renderOxi(bed, el.pi, 'perfusion_index', fmtPi, now);
    renderNibp(bed, now);

    // Alarms of this bed, in place.
    const mine = sortedAlarms([...S.alarms.values()].filter((a) => a.bed === bed.id));
    let top = null;
    for (const a of mine) if (a.state !== 'acknowledged' && (!top || PRIO_RANK[a.priority] > PRIO_RANK[top])) top = a.priority;
    for (const p of ['high', 'medium', 'low']) el.root.classList.toggle('alarm-' + p, top === p);
    setText(el.headAlarm, top ? (MARK[top] + ' ALARM') : '');
    syncAlarmList(el.alarms, el.alarmEls, mine, bed);

    // A standing indicator while SpO2 or pulse-rate alarms are off (no limit rule in force).
    const off = bed.limitsOff.map((m) => (m === 'spo2' ? 'SpO2' : m === 'pulse_rate' ? 'PULSE RATE' : m));
    el.limitsOff.hidden = off.length === 0;
    setText(el.limitsOff, off.length ? 'ALARMS OFF: ' + off.join(', ') + ' (no limit in force)' : '');

    // Audio pause countdown.
    const left = bed.pausedUntil ? bed.pausedUntil - now : 0;
    // The button says what it does; only while paused does it show the time left, labelled.
    if (left > 0) {
      const s = Math.ceil(left / 1000);
      setText(el.pauseBtn, 'AUDIO PAUSED ' + Math.floor(s / 60) + ':' + String(s % 60).padStart(2, '0') + ' LEFT · RESUME');
      el.pauseBtn.setAttribute('aria-label', 'Audio paused, ' + s + ' seconds left. Resume audio now.');
      el.pauseBtn.classList.add('active');
    } else {
      setText(el.pauseBtn, 'PAUSE AUDIO 2 min');
      el.pauseBtn.setAttribute('aria-label', 'Pause alarm audio of ' + bed.label + ' for 2 minutes');
      el.pauseBtn.classList.remove('active');
    }

    // Devices.
    const devKey = [...bed.devices.entries()].map(([id, d]) => id + d.status + (d.detail || '')).join('|');
    if (devKey !== el.deviceKey) {
      el.deviceKey = devKey;
      el.devices.replaceChildren(...[...bed.devices.entries()].map(([id, d]) =>
        h('span', { class: 'dev ' + (d.status || ''), title: (d.detail || '') + ' ' + id },
          h('span', { class: 'dot' }), (d.kind || id) + ' ' + (d.status || '?').toUpperCase())));
    }
  }

  // Keeps a list of alarm rows keyed by id: nodes are reused and removed, never piled up.
  function syncAlarmList(ul, els, alarms, bed) {
    const seen = new Set();
    let prev = null;
    for (const a of alarms) {
      seen.add(a.id);
      let row = els.get(a.id);
      if (!row) {
        const text = h('span', { class: 'text' });
        const state = h('span', { class: 'state' });
        const where = h('span', { class: 'where' });
        const ack = h('button', { class: 'ack', type: 'button', 'data-alarm': a.id }, 'ACKNOWLEDGE');
        ack.addEventListener('click', () => acknowledge(a.id, bed || S.beds.get(a.bed), ack));
        row = { li: h('li', { class: 'alarm', 'data-alarm': a.id }, where, text, state, ack), text, state, where, ack };
        els.set(a.id, row);
      }
      row.li.className = 'alarm prio-' + a.priority + ' state-' + a.state + (isSounding(a) ? ' sounding' : '');
      setText(row.text, alarmText(a));
      setText(row.state, alarmStateText(a));
      if (!bed) {
        const b = S.beds.get(a.bed);
        setText(row.where, b ? b.label : (a.bed || 'ALL BEDS'));
      }
      row.ack.hidden = !(a.state === 'active' || a.state === 'latched') || NOT_ACKNOWLEDGEABLE.has(a.condition);
      const want = prev ? prev.nextSibling : ul.firstChild;
      if (want !== row.li) ul.insertBefore(row.li, want);
      prev = row.li;
    }
    for (const [id, row] of els) {
      if (!seen.has(id)) { row.li.remove(); els.delete(id); }
    }
  }

  const bannerEls = new Map();
  function renderBanner() {
    const list = sortedAlarms([...S.alarms.values()]);
    syncAlarmList($('#banner'), bannerEls, list, null);
    $('#banner').hidden = list.length === 0;
  }

  function renderLog() {
    if (!S.logDirty) return;
    S.logDirty = false;
    const rows = [];
    for (const a of sortedAlarms([...S.alarms.values()])) {
      const b = S.beds.get(a.bed);
      rows.push(h('tr', { class: 'prio-' + a.priority + ' active' },
        h('td', { text: clockText(toMs(a.started) || serverNow()) }),
        h('td', { text: b ? b.label : (a.bed || 'all') }),
        h('td', { text: alarmText(a) }),
        h('td', { text: a.state }),
        h('td', { text: a.audio })));
    }
    for (const e of S.recent) {
      const b = S.beds.get(e.bed);
      rows.push(h('tr', { class: 'recent' + (e.priority ? ' prio-' + e.priority : '') },
        h('td', { text: clockText(e.at) }),
        h('td', { text: b ? b.label : (e.bed || 'all') }),
        h('td', { text: e.text }),
        h('td', { text: String(e.what || '').replace(/_/g, ' ') + (e.actor ? ' by ' + e.actor : '') }),
        h('td', { text: '' })));
    }
    $('#alarm-log').replaceChildren(...rows);
  }

  function renderTop(now) {
    const live = isLive(now);
    const link = $('#link');
    link.classList.toggle('up', live);
    link.classList.toggle('down', !live);
    let linkText = 'LIVE';
    if (!live) {
      if (S.ws && S.wsOpen) linkText = 'NO DATA';
      else if (S.retryTimer) linkText = 'RECONNECTING IN ' + Math.max(0, Math.ceil((S.retryAt - now) / 1000)) + ' s';
      else linkText = 'CONNECTING';
    }
    setText($('#link-text'), linkText);
    setText($('#clock'), clockText(serverNow()));
    $('#demo').hidden = !(S.simulated || S.simulatedReadings);
    const bar = $('#audio-bar');
    bar.hidden = S.audioArmed;
    renderWatch();
    if (S.audioError) setText(bar.querySelector('.why'), S.audioError);
    const auth = $('#auth');
    auth.hidden = !S.authError;
    setText(auth, S.authError || '');
    S.notMonitoring = now - S.lastMsgAt > NOT_MONITORING_MS;
    $('#not-monitoring').hidden = !S.notMonitoring;
    document.body.classList.toggle('not-monitoring-on', S.notMonitoring);
    if (S.notMonitoring) {
      setText($('#nm-detail'), 'No data from the daemon for ' + ageText(now - S.lastMsgAt) + '. ' +
        (S.authError ? S.authError : linkText === 'LIVE' ? '' : linkText + '.') +
        ' The bedside monitors keep their own alarms.');
    }
  }

  // Whether this page counts as a dashboard watching (armed, and counted by the daemon), and
  // how many dashboards can sound in all.
  function renderWatch() {
    const el = $('#watch');
    let state, text;
    if (!S.audioArmed) { state = 'off'; text = 'NOT WATCHING (sound not armed)'; }
    else if (!S.counted) { state = 'wait'; text = 'ARMED, not yet counted'; }
    else { state = 'on'; text = 'WATCHING'; }
    if (el.dataset.state !== state) el.dataset.state = state;
    setText($('#watch-text'), text);
    const d = S.dashboards;
    let count = '';
    if (d && Number.isFinite(Number(d.live))) {
      count = 'able to sound: ' + Number(d.live);
      if (Number(d.hidden) > 0) count += ' (' + d.hidden + ' hidden)';
    }
    setText($('#watch-count'), count);
    $('#watch').classList.toggle('none-live', !!d && Number(d.live) === 0);
  }

  // ---------------------------------------------------------------- canvases
  function fitCanvas(c) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(50, Math.round(c.clientWidth * dpr));
    const hgt = Math.max(30, Math.round(c.clientHeight * dpr));
    if (c.width !== w || c.height !== hgt) { c.width = w; c.height = hgt; }
    return dpr;
  }

  function drawPleth(bed, now) {
    const c = bed.el.pleth;
    if (!c.clientWidth) return;
    fitCanvas(c);
    const ctx = c.getContext('2d');
    const w = c.width, hh = c.height;
    ctx.clearRect(0, 0, w, hh);
    const ring = bed.pleth;
    if (!ring.len || now - ring.lastT() > 3000) {
      ctx.fillStyle = '#5c6b7a';
      ctx.font = Math.round(hh * 0.3) + 'px sans-serif';
      ctx.textBaseline = 'middle';
      const text = ring.len ? 'NO WAVEFORM' : 'no waveform from this oximeter';
      ctx.fillText(text, 8, hh / 2);
      if (c.getAttribute('aria-label') !== text) c.setAttribute('aria-label', 'Pleth: ' + text);
      return;
    }
    if (c.getAttribute('aria-label') !== 'Pleth waveform, live') c.setAttribute('aria-label', 'Pleth waveform, live');
    const n = Math.min(ring.len, PLETH_SHOW);
    const vals = [];
    let k = 0;
    ring.forEach((t, v) => { if (k++ >= ring.len - n) vals.push(v); });
    let lo = Infinity, hi = -Infinity;
    for (const v of vals) if (!Number.isNaN(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (!(hi > lo)) { hi = lo + 1; }
    ctx.strokeStyle = '#35d0ff';
    ctx.lineWidth = Math.max(2, hh / 40);
    ctx.beginPath();
    let pen = false;
    for (let i = 0; i < vals.length; i++) {
      const v = vals[i];
      if (Number.isNaN(v)) { pen = false; continue; }
      const x = (i / (PLETH_SHOW - 1)) * w;
      const y = hh - 4 - ((v - lo) / (hi - lo)) * (hh - 8);
      if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      pen = true;
    }
    ctx.stroke();
  }

  function drawTrend(bed, now) {
    const c = bed.el.trend;
    if (!c.clientWidth) return;
    const dpr = fitCanvas(c);
    const ctx = c.getContext('2d');
    const w = c.width, hh = c.height;
    const span = S.trendMinutes * 60000;
    const t0 = now - span;
    const padL = 44 * dpr, padR = 44 * dpr, padT = 6 * dpr, padB = 18 * dpr;
    const pw = w - padL - padR;
    const split = padT + (hh - padT - padB) * 0.42;
    const x = (t) => padL + ((t - t0) / span) * pw;
    ctx.clearRect(0, 0, w, hh);
    ctx.font = Math.round(11 * dpr) + 'px sans-serif';
    ctx.lineWidth = 1;
    // Panel 1: SpO2 70-100 %. Panel 2: PR and NIBP 30-210. An axis extends (in steps of 10)
    // to hold any value in the window: a 60 is drawn as 60, never clamped to the axis.
    const sum = {
      spo2: rangeOf(bed.trends.spo2, t0), pr: rangeOf(bed.trends.pulse_rate, t0),
      sys: rangeOf(bed.trends.nibp_sys, t0), dia: rangeOf(bed.trends.nibp_dia, t0),
    };
    const lo1 = Math.max(0, Math.min(70, Math.floor(sum.spo2.lo / 10) * 10));
    const lo2 = Math.max(0, Math.min(30, Math.floor(Math.min(sum.pr.lo, sum.dia.lo, sum.sys.lo) / 10) * 10));
    const hi2 = Math.max(210, Math.ceil(Math.max(sum.pr.hi, sum.sys.hi, sum.dia.hi) / 10) * 10);
    c.dataset.spo2Floor = String(lo1);
    c.dataset.lowerRange = lo2 + '-' + hi2;
    const y1 = (v) => padT + (1 - (Math.max(lo1, Math.min(100, v)) - lo1) / (100 - lo1)) * (split - padT - 4 * dpr);
    const y2 = (v) => split + 4 * dpr + (1 - (Math.max(lo2, Math.min(hi2, v)) - lo2) / (hi2 - lo2)) * (hh - padB - split - 4 * dpr);
    ctx.strokeStyle = '#1e2a36';
    ctx.fillStyle = '#7d8fa1';
    ctx.textBaseline = 'middle';
    const step1 = 100 - lo1 > 40 ? 20 : 10;
    for (let v = 100; v > lo1; v -= step1) { line(ctx, padL, y1(v), w - padR, y1(v)); ctx.fillText(String(v), 6 * dpr, y1(v)); }
    const step2 = hi2 - lo2 > 240 ? 60 : 30;
    for (let v = Math.ceil((lo2 + 1) / step2) * step2; v < hi2; v += step2) {
      if (v % 60 !== 0 && step2 === 30) continue;
      line(ctx, padL, y2(v), w - padR, y2(v)); ctx.fillText(String(v), w - padR + 6 * dpr, y2(v));
    }
    c.setAttribute('aria-label', trendSummary(bed, sum));
    ctx.textBaseline = 'top';
    ctx.fillStyle = '#35d0ff'; ctx.fillText('SpO2 %', padL + 6 * dpr, padT + 2 * dpr);
    ctx.fillStyle = '#3dff6e'; ctx.fillText('PR /min', padL + 6 * dpr, split + 6 * dpr);
    ctx.fillStyle = '#ff8a8a'; ctx.fillText('NIBP mmHg', padL + 64 * dpr, split + 6 * dpr);
    // Time axis.
    ctx.fillStyle = '#7d8fa1';
    ctx.textBaseline = 'bottom';
    const step = S.trendMinutes <= 10 ? 2 : S.trendMinutes <= 30 ? 5 : S.trendMinutes <= 60 ? 10 : 30;
    for (let m = 0; m <= S.trendMinutes; m += step) {
      const xx = x(now - m * 60000);
      ctx.strokeStyle = '#1e2a36';
      line(ctx, xx, padT, xx, hh - padB);
      ctx.fillText(m === 0 ? 'now' : '-' + m + ' min', Math.min(xx - 12 * dpr, w - padR - 30 * dpr), hh - 2 * dpr);
    }
    // Series.
    series(ctx, bed.trends.spo2, t0, x, y1, '#35d0ff', 2 * dpr, bed.histBucketMs);
    series(ctx, bed.trends.pulse_rate, t0, x, y2, '#3dff6e', 2 * dpr, bed.histBucketMs);
    // NIBP: a bar from diastolic to systolic per measurement.
    ctx.strokeStyle = '#ff8a8a';
    ctx.lineWidth = 3 * dpr;
    const dias = [];
    bed.trends.nibp_dia.forEach((t, v) => { if (t >= t0 && !Number.isNaN(v)) dias.push([t, v]); });
    bed.trends.nibp_sys.forEach((t, v) => {
      if (t < t0 || Number.isNaN(v)) return;
      const d = dias.find((p) => Math.abs(p[0] - t) < 5000);
      const xx = x(t);
      line(ctx, xx - 5 * dpr, y2(v), xx + 5 * dpr, y2(v));
      if (d) { line(ctx, xx, y2(v), xx, y2(d[1])); line(ctx, xx - 5 * dpr, y2(d[1]), xx + 5 * dpr, y2(d[1])); }
    });
    // Dose (yellow) and phase (grey) markers, labelled.
    ctx.setLineDash([6 * dpr, 4 * dpr]);
    ctx.lineWidth = 2 * dpr;
    ctx.textBaseline = 'top';
    for (const d of bed.doses) {
      if (d.t < t0 || d.t > now) continue;
      const color = d.kind === 'phase' ? '#aab8c6' : '#ffd400';
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      const xx = x(d.t);
      line(ctx, xx, padT, xx, hh - padB);
      ctx.fillText(d.text, xx + 4 * dpr, padT + (d.kind === 'phase' ? 14 * dpr : 0));
    }
    ctx.setLineDash([]);
  }

  // The smallest and largest valid value (a bucket's min/max) of a ring since t0.
  function rangeOf(ring, t0) {
    let lo = Infinity, hi = -Infinity, n = 0;
    ring.forEach((t, v, l, u) => {
      if (t < t0 || Number.isNaN(v)) return;
      lo = Math.min(lo, Number.isNaN(l) ? v : l);
      hi = Math.max(hi, Number.isNaN(u) ? v : u);
      n++;
    });
    return { lo, hi, n };
  }

  // The trend canvas's text alternative: what a sighted nurse reads from it.
  function trendSummary(bed, sum) {
    const part = (name, r, unit, now) => r.n
      ? name + ' ' + fmtNum(r.lo) + ' to ' + fmtNum(r.hi) + ' ' + unit + (Number.isFinite(now) ? ', last ' + fmtNum(now) : '')
      : name + ' no data';
    const parts = [
      part('SpO2', sum.spo2, '%', bed.trends.spo2.lastV()),
      part('pulse rate', sum.pr, '/min', bed.trends.pulse_rate.lastV()),
      sum.sys.n ? 'NIBP ' + sum.sys.n + ' measurement' + (sum.sys.n > 1 ? 's' : '') + ', systolic ' + fmtNum(sum.sys.lo) + ' to ' + fmtNum(sum.sys.hi) + ' mmHg' : 'NIBP none',
    ];
    if (bed.doses.length) parts.push(bed.doses.length + ' dose marker' + (bed.doses.length > 1 ? 's' : ''));
    return 'Trends of ' + bed.label + ', last ' + S.trendMinutes + ' min: ' + parts.join('; ') + '.';
  }

  function line(ctx, x1, y1, x2, y2) {
    ctx.beginPath();
    ctx.moveTo(x1, y1);
    ctx.lineTo(x2, y2);
    ctx.stroke();
  }

  // The mean as a line, and each point's min..max as a vertical stroke (a history bucket
  // that held a dip shows the dip). A gap longer than 10 s, or than 3 buckets, is not bridged.
  function series(ctx, ring, t0, x, y, color, width, bucketMs) {
    const maxGap = Math.max(10000, 3 * (bucketMs || 0));
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    let pen = false, lastT = 0;
    ring.forEach((t, v, lo, hi) => {
      if (t < t0 || Number.isNaN(v)) { pen = false; return; }
      if (pen && t - lastT > maxGap) pen = false;
      if (pen) ctx.lineTo(x(t), y(v)); else ctx.moveTo(x(t), y(v));
      pen = true;
      lastT = t;
    });
    ctx.stroke();
    ctx.beginPath();
    ring.forEach((t, v, lo, hi) => {
      if (t < t0 || Number.isNaN(lo) || Number.isNaN(hi) || hi <= lo) return;
      ctx.moveTo(x(t), y(lo));
      ctx.lineTo(x(t), y(hi));
    });
    ctx.stroke();
  }

  // ---------------------------------------------------------------- loops
  let lastTrendDraw = 0;
  function tick() {
    const now = performance.now();
    const snow = serverNow();
    checkLink(now);
    renderTop(now);
    for (const bed of S.beds.values()) renderBed(bed, snow);
    renderBanner();
    renderLog();
    if (now - lastTrendDraw > 1000) {
      lastTrendDraw = now;
      for (const bed of S.beds.values()) drawTrend(bed, snow);
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
        // How this page's WebSocket carries its token: 'subprotocol', 'query' or 'none'.
        wsAuth: !S.token ? 'none' : (S.ws && S.ws.protocol === 'vitalsd' && !/[?&]token=/.test(S.ws.url) ? 'subprotocol' : 'query'),
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
      lastTrendDraw = 0;
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
})();
