// The session and bed actions of a bed card (admit, baseline, dose, phase, note, readiness,
// discharge), acknowledging an alarm, pausing the audio.
import { updateAudio } from './audio.js';
import { api, bedPath } from './http.js';
import { applySession, refreshReadiness, renderSessionPanel } from './session.js';
import { S, newerOrSame, serverNow } from './state.js';
import { baselineText } from './text.js';
import { h, toMs } from './util.js';
import { field, num, result as confirmResult, showMsg, str, submit } from './forms.js';
import { buildLimitsEditor } from './limits.js';

export function buildActions(bed) {
  const result = (what, p) => confirmResult(bed, what, p);
  const limits = buildLimitsEditor(bed);

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

// ---------------------------------------------------------------- actions
export async function acknowledge(id, bed, btn) {
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

export async function togglePause(bed) {
  const paused = bed.pausedUntil && bed.pausedUntil > serverNow();
  const r = paused
    ? await api('DELETE', bedPath(bed) + '/audio-pause')
    : await api('POST', bedPath(bed) + '/audio-pause', { seconds: 120 });
  if (!r.ok) { showMsg(bed, (paused ? 'resume audio' : 'audio pause') + ' failed: ' + r.error, false); return; }
  if (!paused && r.json && r.json.until) bed.pausedUntil = toMs(r.json.until);
  if (paused) bed.pausedUntil = null;
  bed.dirty = true;
}

export function showAuthLike(text) {
  S.authError = text;
}

