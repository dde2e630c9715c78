// Small helpers with no state: the DOM builder `h`, formatting, time parsing, and `Ring`,
// a fixed-size ring buffer of (time, value, min, max).
export const $ = (sel, root) => (root || document).querySelector(sel);

export function h(tag, attrs, ...children) {
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

export function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

export function toMs(t) {
  if (typeof t === 'number' && Number.isFinite(t)) return t;
  if (typeof t === 'string') {
    const ms = Date.parse(t);
    return Number.isFinite(ms) ? ms : null;
  }
  return null;
}
export function ageText(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min';
  return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
}

export function fmtNum(v, digits) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '--';
  return v.toFixed(digits || 0);
}

export function fmtPi(v) {
  return v < 1 ? fmtNum(v, 2) : fmtNum(v, 1);
}

export function clockText(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
}
// ---------------------------------------------------------------- ring buffers
// Each point has a value and a min/max: a live reading has min = max = value; a point of a
// downsampled history is a time bucket whose min and max keep a short dip visible.
export class Ring {
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
