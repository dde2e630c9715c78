// The bed's session as the daemon holds it: admission, doses and phases (trend markers),
// baseline, readiness, and the session panel's status line.
import { api, bedPath } from './http.js';
import { DOSE_CAP, S } from './state.js';
import { baselineText } from './text.js';
import { clockText, setText, toMs } from './util.js';

// ---------------------------------------------------------------- sessions (storage)
export async function loadSession(bed) {
  const r = await api('GET', bedPath(bed) + '/session');
  if (r.ok && r.json) applySession(bed, r.json.session !== undefined ? r.json.session : r.json);
  // 404: no session, or the storage endpoints are not there yet: nothing to show.
}

export function applySession(bed, s) {
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
export function addSessionEvent(bed, e) {
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
  S.trendDrawAt = 0;
}

export function onSession(m) {
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

export function renderSessionPanel(bed) {
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
export async function refreshReadiness(bed, asked) {
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

