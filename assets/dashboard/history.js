// History from storage: the trends and the alarm log filled from the history APIs, and the
// alarm log's entries.
import { api, bedPath } from './http.js';
import { RECENT_CAP, S, serverNow } from './state.js';
import { alarmText } from './text.js';
import { Ring, clockText, toMs } from './util.js';

// ---------------------------------------------------------------- history (storage)
// On open, on a reconnect that is not a resume, and when the trend window changes, the
// trends are filled from GET .../history (downsampled by the daemon to about one point per
// pixel, each a min/max/mean bucket) and the alarm log from GET /api/alarms/history. The
// history is authoritative up to its last point; live readings after it stay as they came,
// so the chart continues without a seam.
export const HISTORY_METRICS = ['spo2', 'pulse_rate', 'nibp_sys', 'nibp_dia'];

export function trendPoints(bed) {
  const c = bed.el && bed.el.trend;
  const w = c && c.clientWidth ? c.clientWidth : 900;
  return Math.max(100, Math.min(2000, Math.round(w)));
}

export async function loadHistory(bed) {
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
  S.trendDrawAt = 0;
}

export async function loadAlarmLog() {
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

export function recentKey(e) {
  return e.at + '|' + e.what + '|' + (e.id === undefined ? e.text : e.id);
}

export function recentOf(m, at) {
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

export function pushRecent(e) {
  if (S.recent.length && S.recent.some((x) => recentKey(x) === recentKey(e))) return;
  S.recent.unshift(e);
  if (S.recent.length > RECENT_CAP) S.recent.length = RECENT_CAP;
  S.logDirty = true;
}

