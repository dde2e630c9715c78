// The alarm-limits editor of a bed: the limits as JSON, load, save, or apply the preset.
import { result as confirmResult, showMsg, submit } from './forms.js';
import { api, bedPath } from './http.js';
import { h } from './util.js';

export function buildLimitsEditor(bed) {
  const result = (what, p) => confirmResult(bed, what, p);
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
  return limits;
}
