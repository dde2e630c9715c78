// The alarm-limits editor of a bed: the limits as JSON, load, save, or apply the preset. A set
// that would switch the bed's SpO2 or pulse-rate alarms off is answered 409 by the daemon: the
// editor then shows the daemon's reason and asks before sending it again confirmed (admin only).
import { result as confirmResult, showMsg, submit } from './forms.js';
import { api, bedPath } from './http.js';
import { h, setText } from './util.js';

export function buildLimitsEditor(bed) {
  const result = (what, p) => confirmResult(bed, what, p);
  const limitsText = h('textarea', { name: 'limits', rows: 6, spellcheck: 'false', placeholder: 'limits JSON (load first)' });
  const confirmText = h('p', { class: 'confirm-text' });
  let pending = null; // [body, what] waiting for a confirmation
  const confirmBox = h('div', { class: 'confirm-off', role: 'alertdialog', hidden: true }, confirmText,
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'danger', 'data-action': 'confirm-disable', onclick: () => {
        if (!pending) return;
        const [body, what] = pending;
        put(Object.assign({}, body, { confirm_disable: true }), what);
      } }, 'Switch these alarms off'),
      h('button', { type: 'button', 'data-action': 'cancel-disable', onclick: () => {
        pending = null;
        confirmBox.hidden = true;
        showMsg(bed, 'limits: not changed', true);
      } }, 'Cancel')));
  // PUTs a limits body; a 409 for a set that would switch alarms off asks first.
  async function put(body, what) {
    const r = await api('PUT', bedPath(bed) + '/limits', body);
    const plain = body !== null && typeof body === 'object' && !Array.isArray(body);
    if (r.status === 409 && plain && body.confirm_disable !== true) {
      pending = [body, what];
      setText(confirmText, r.error + ' Switch them off anyway?');
      confirmBox.hidden = false;
      showMsg(bed, what + ': not saved, needs your confirmation', false);
      return r;
    }
    pending = null;
    confirmBox.hidden = true;
    return result(what, Promise.resolve(r));
  }
  const limits = h('form', { class: 'act', 'data-act': 'limits', onsubmit: submit(() => {
    let body;
    try { body = JSON.parse(limitsText.value); } catch (e) { showMsg(bed, 'limits: not JSON: ' + e.message, false); return; }
    put(body, 'limits');
  }) },
  h('h4', { text: 'Alarm limits' }), limitsText,
  h('div', { class: 'row' },
    h('button', { type: 'button', onclick: async () => {
      const r = await result('load limits', api('GET', bedPath(bed) + '/limits'));
      if (r.ok) limitsText.value = JSON.stringify(r.json, null, 1);
    } }, 'Load'),
    h('button', { type: 'submit' }, 'Save'),
    h('button', { type: 'button', onclick: () => put({ preset: 'ketamine-session' }, 'preset') }, 'Preset: ketamine-session')),
  confirmBox);
  return limits;
}
