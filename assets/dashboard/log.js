// Alarm lists: rows kept by alarm id (the top banner and each bed), and the alarm log table.
import { acknowledge } from './actions.js';
import { S, serverNow } from './state.js';
import { NOT_ACKNOWLEDGEABLE, allBedsLabel, alarmStateText, alarmText, isSounding, sortedAlarms } from './text.js';
import { $, clockText, h, setText, toMs } from './util.js';

export function syncAlarmList(ul, els, alarms, bed) {
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
      setText(row.where, b ? b.label : (a.bed || allBedsLabel(a)));
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

export const bannerEls = new Map();
export function renderBanner() {
  const list = sortedAlarms([...S.alarms.values()]);
  syncAlarmList($('#banner'), bannerEls, list, null);
  $('#banner').hidden = list.length === 0;
}

export function renderLog() {
  if (!S.logDirty) return;
  S.logDirty = false;
  const rows = [];
  for (const a of sortedAlarms([...S.alarms.values()])) {
    const b = S.beds.get(a.bed);
    rows.push(h('tr', { class: 'prio-' + a.priority + ' active' },
      h('td', { text: clockText(toMs(a.started) || serverNow()) }),
      h('td', { text: b ? b.label : (a.bed || allBedsLabel(a, false)) }),
      h('td', { text: alarmText(a) }),
      h('td', { text: a.state }),
      h('td', { text: a.audio })));
  }
  for (const e of S.recent) {
    const b = S.beds.get(e.bed);
    rows.push(h('tr', { class: 'recent' + (e.priority ? ' prio-' + e.priority : '') },
      h('td', { text: clockText(e.at) }),
      h('td', { text: b ? b.label : (e.bed || allBedsLabel(e, false)) }),
      h('td', { text: e.text }),
      h('td', { text: String(e.what || '').replace(/_/g, ' ') + (e.actor ? ' by ' + e.actor : '') }),
      h('td', { text: '' })));
  }
  $('#alarm-log').replaceChildren(...rows);
}

