// The daemon's messages applied to the state: snapshot, heartbeat, and the sequenced messages
// (readings, reading, device_status, alarm, session).
import { announceAlarm, forgetAlarmsExcept } from './announce.js';
import { updateAudio } from './audio.js';
import { sendBeat } from './beat.js';
import { bedLabelOf, ensureLayout } from './bed.js';
import { loadAlarmLog, loadHistory, pushRecent, recentOf } from './history.js';
import { refreshLimitsOff } from './http.js';
import { loadSession, onSession } from './session.js';
import { BACKOFF_MIN_MS, MISSING_CAP, S, newerOrSame, serverNow } from './state.js';
import { alarmText, sortedAlarms } from './text.js';
import { toMs } from './util.js';

export function onMessage(text) {
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

export function onHeartbeat(m) {
  S.coalesced = Number(m.coalesced) || 0;
  S.counted = m.counted === true;
  if (m.dashboards && typeof m.dashboards === 'object') S.dashboards = m.dashboards;
}

export function onSequenced(m) {
  const seq = Number(m.seq);
  if (!Number.isFinite(seq)) return;
  // The daemon sends alarms, device status and session events ahead of the readings queued
  // before them (docs/api.md): a reading may come after a message with a higher seq. The seqs
  // skipped by a jump are kept as `missing`, and a late one is applied when it comes; one
  // that never comes (coalesced for a slow page, or lost) counts as a gap once far behind.
  if (seq <= S.lastSeq) {
    if (!S.missing.delete(seq)) return; // already processed
  } else {
    if (seq - S.lastSeq - 1 > MISSING_CAP) S.gaps++; // too many to wait for
    else for (let k = S.lastSeq + 1; k < seq; k++) S.missing.add(k);
    S.lastSeq = seq;
    if (S.missing.size && (seq & 255) === 0) pruneMissing();
  }
  // Messages the latest snapshot already covers: their state is in it; only history is new.
  const covered = seq <= S.snapSeq;
  if (m.type === 'readings') onReadings(m);
  else if (m.type === 'reading') onReading(m);
  else if (m.type === 'device_status') { if (!covered) onDeviceStatus(m); }
  else if (m.type === 'alarm') onAlarm(m, covered);
  else if (m.type === 'session') onSession(m);
}

// Missing seqs far behind the newest will not come any more: each is a gap.
function pruneMissing() {
  for (const k of S.missing) {
    if (k < S.lastSeq - MISSING_CAP) { S.missing.delete(k); S.gaps++; }
  }
}

export function onSnapshot(m) {
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
  if (fresh) { S.lastSeq = seq; S.missing.clear(); }
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
      bed.label = bedLabelOf(b);
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
      // Central view only: the bed's site is offline (its Last Will, or its heartbeats stopped).
      bed.notMonitoring = typeof b.not_monitoring === 'string' ? b.not_monitoring : null;
      bed.dirty = true;
      if (fresh) { loadSession(bed); loadHistory(bed); }
    }
  }
  for (const [id, a] of S.alarms) {
    if (!alarms.has(id)) pushRecent({ at: serverNow(), bed: a.bed, text: alarmText(a), what: 'gone', priority: a.priority });
  }
  S.alarms = alarms;
  // Alarms this page had not heard of (all of them when it opens) are said once.
  for (const a of sortedAlarms([...alarms.values()])) announceAlarm(a);
  forgetAlarmsExcept(alarms);
  S.logDirty = true;
  if (fresh) loadAlarmLog();
  updateAudio('snapshot');
}

export function applyReading(bed, r, toTrend) {
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
export function onReading(m) {
  const bed = S.beds.get(m.bed);
  if (bed) applyReading(bed, m, true);
}

// Message version 2: one `readings` message per device read, its readings in order. (A
// central view still sends one `reading` per metric.)
export function onReadings(m) {
  const bed = S.beds.get(m.bed);
  if (!bed || !Array.isArray(m.readings)) return;
  for (const r of m.readings) {
    if (r && typeof r === 'object') applyReading(bed, r, true);
  }
}

export function onDeviceStatus(m) {
  const bed = S.beds.get(m.bed);
  if (!bed) return;
  const d = bed.devices.get(m.device) || {};
  d.status = m.status;
  d.detail = m.detail;
  bed.devices.set(m.device, d);
  bed.dirty = true;
}

export function onAlarm(m, covered) {
  const a = m.alarm && typeof m.alarm === 'object' ? m.alarm : null;
  const bed = m.bed ? S.beds.get(m.bed) : null;
  const at = toMs(m.at) || serverNow();
  switch (m.event) {
    case 'raised': case 'updated': case 'acknowledged': case 'latched':
      if (a && !covered && newerOrSame(a, S.alarms.get(a.id))) S.alarms.set(a.id, a);
      if (a && !covered && m.event === 'raised') announceAlarm(a);
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
