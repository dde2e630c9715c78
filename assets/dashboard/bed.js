// The room/bed layout and the bed card: building it once, then updating it in place.
import { buildActions, togglePause } from './actions.js';
import { syncAlarmList } from './log.js';
import { NIBP_CAP, NIBP_GRACE_MS, OXI_STALE_MS, PLETH_CAP, S, TREND_CAP } from './state.js';
import { MARK, PRIO_RANK, qualityOf, reasonOf, sortedAlarms } from './text.js';
import { $, Ring, ageText, fmtNum, fmtPi, h, setText } from './util.js';

// ---------------------------------------------------------------- layout
export function ensureLayout(rooms) {
  const key = JSON.stringify(rooms.map((r) => [r.id, r.name,
    (Array.isArray(r.beds) ? r.beds : []).map((b) => [b.id, b.recliner, b.label])]));
  if (key === S.layoutKey) return;
  S.layoutKey = key;
  const old = S.beds;
  S.beds = new Map();
  const main = $('#rooms');
  main.replaceChildren();
  // More than two rooms: the dense layout (rooms side by side) so 10 rooms stay readable.
  main.classList.toggle('dense', rooms.length > 2);
  for (const r of rooms) {
    const grid = h('div', { class: 'beds' });
    main.append(h('section', { class: 'room', 'data-room': r.id },
      h('h2', { text: r.name || r.id }), grid));
    for (const b of Array.isArray(r.beds) ? r.beds : []) {
      const prev = old.get(b.id);
      const bed = prev || newBed(b, r);
      bed.roomId = r.id;
      bed.recliner = b.recliner;
      bed.label = bedLabelOf(b);
      bed.el = buildBed(bed);
      bed.dirty = true;
      grid.append(bed.el.root);
      S.beds.set(b.id, bed);
    }
  }
}

// A bed's label; at the central view (beds of several sites) it names the site first, so that an
// alarm row or banner ("north · Room 1 / B") never leaves the nurse guessing which site.
export function bedLabelOf(b) {
  const label = b.label || b.id;
  return typeof b.site === 'string' && b.site ? `${b.site} · ${label}` : label;
}

export function newBed(b, r) {
  return {
    id: b.id, roomId: r.id, recliner: b.recliner, label: bedLabelOf(b),
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

export function numeric(cls, metric, name, unit) {
  const value = h('div', { class: 'value', text: '--' });
  const note = h('div', { class: 'note' });
  const root = h('div', { class: 'num ' + cls, 'data-metric': metric },
    h('div', { class: 'name' }, name, ' ', h('small', { text: unit })), value, note);
  return { root, value, note };
}

export function buildBed(bed) {
  const spo2 = numeric('spo2', 'spo2', 'SpO2', '%');
  const pr = numeric('pr', 'pulse_rate', 'PR', '/min');
  const pi = numeric('pi', 'perfusion_index', 'PI', '%');
  const nibp = numeric('nibp', 'nibp', 'NIBP', 'mmHg');
  const pleth = h('canvas', { class: 'pleth', width: 600, height: 80, role: 'img', 'aria-label': 'Pleth waveform of ' + bed.label });
  const trend = h('canvas', { class: 'trend', width: 900, height: 220, role: 'img', 'aria-label': 'Trends of ' + bed.label });
  const label = h('span', { class: 'bed-label', text: bed.label });
  const patient = h('span', { class: 'patient' });
  const headAlarm = h('span', { class: 'head-alarm' });
  const limitsOff = h('div', { class: 'limits-off', role: 'status', hidden: true });
  const notMonitoring = h('div', { class: 'bed-not-monitoring', role: 'alert', hidden: true });
  const pauseBtn = h('button', { class: 'pause', type: 'button', onclick: () => togglePause(bed) }, 'PAUSE AUDIO 2 min');
  const devices = h('div', { class: 'devices' });
  const alarms = h('ul', { class: 'bed-alarms' });
  const msg = h('div', { class: 'bed-msg', role: 'status' });
  const actions = buildActions(bed);
  const root = h('article', { class: 'bed', 'data-bed': bed.id },
    h('header', { class: 'bed-head' }, label, patient, headAlarm, h('span', { class: 'spacer' }), pauseBtn),
    notMonitoring,
    limitsOff,
    alarms,
    h('div', { class: 'numerics' }, spo2.root, pr.root, nibp.root, pi.root),
    h('div', { class: 'wave' }, h('span', { class: 'wave-label', text: 'PLETH' }), pleth),
    h('div', { class: 'trend-box' }, trend),
    h('footer', { class: 'bed-foot' }, devices, actions),
    msg);
  return { root, spo2, pr, pi, nibp, pleth, trend, label, patient, headAlarm, limitsOff, notMonitoring, pauseBtn, devices, alarms, msg, alarmEls: new Map(), deviceKey: '' };
}

export function deviceFor(bed, r) {
  return r && r.device ? bed.devices.get(r.device) : null;
}

export function renderOxi(bed, n, metric, fmt, now) {
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

export function renderNibp(bed, now) {
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
      if (mean && mean.value !== null && Math.abs(mean.received_ms - sys.received_ms) < 5000) meanText = 'MAP ' + fmtNum(mean.value) + ' · ';
      note = meanText + ageText(age) + ' ago';
    }
  }
  if (cuff && cuff.value !== null && cuff.value > 5 && now - cuff.received_ms < 3000) {
    note = 'MEASURING · cuff ' + fmtNum(cuff.value) + (note ? ' · last ' + note : '');
  }
  setText(n.value, text);
  setText(n.note, note);
  n.root.classList.toggle('stale', stale);
  n.root.classList.toggle('invalid', invalid);
}

export function renderBed(bed, now) {
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
  el.notMonitoring.hidden = !bed.notMonitoring;
  setText(el.notMonitoring, bed.notMonitoring || '');
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
