// Form helpers shared by the session actions and the limits editor, and the bed's message line
// (each action is confirmed there only once the daemon answered that it committed it).
import { h, setText } from './util.js';

export function showMsg(bed, text, ok) {
  setText(bed.el.msg, text);
  bed.el.msg.classList.toggle('ok', !!ok);
  bed.el.msg.classList.toggle('err', !ok);
  clearTimeout(bed.msgTimer);
  bed.msgTimer = setTimeout(() => setText(bed.el.msg, ''), ok ? 6000 : 20000);
}

// A labelled input named `name`.
export function field(name, label, attrs) {
  return h('label', null, label, h('input', Object.assign({ name }, attrs || {})));
}

// Awaits the daemon's answer to an action and says on the bed's message line whether it was done.
export async function result(bed, what, p) {
  const r = await p;
  if (r.ok) showMsg(bed, what + ': done', true);
  else showMsg(bed, what + ' failed: ' + r.error, false);
  return r;
}

// A form field's number (undefined if empty or not a number) and trimmed text (undefined if empty).
export function num(form, name) {
  const v = form.elements[name] && form.elements[name].value.trim();
  if (!v) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

export function str(form, name) {
  const v = form.elements[name] && form.elements[name].value.trim();
  return v ? v : undefined;
}

// An onsubmit handler: no page reload, `fn(form)`.
export function submit(fn) {
  return (ev) => { ev.preventDefault(); fn(ev.target); };
}
