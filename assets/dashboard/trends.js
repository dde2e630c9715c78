// The canvases: the pleth waveform and the trend chart, with their text alternatives.
import { PLETH_SHOW, S } from './state.js';
import { fmtNum } from './util.js';

// ---------------------------------------------------------------- canvases
export function fitCanvas(c) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(50, Math.round(c.clientWidth * dpr));
  const hgt = Math.max(30, Math.round(c.clientHeight * dpr));
  if (c.width !== w || c.height !== hgt) { c.width = w; c.height = hgt; }
  return dpr;
}

export function drawPleth(bed, now) {
  const c = bed.el.pleth;
  if (!c.clientWidth) return;
  fitCanvas(c);
  const ctx = c.getContext('2d');
  const w = c.width, hh = c.height;
  ctx.clearRect(0, 0, w, hh);
  const ring = bed.pleth;
  if (!ring.len || now - ring.lastT() > 3000) {
    ctx.fillStyle = '#5c6b7a';
    ctx.font = Math.round(hh * 0.3) + 'px sans-serif';
    ctx.textBaseline = 'middle';
    const text = ring.len ? 'NO WAVEFORM' : 'no waveform from this oximeter';
    ctx.fillText(text, 8, hh / 2);
    if (c.getAttribute('aria-label') !== text) c.setAttribute('aria-label', 'Pleth: ' + text);
    return;
  }
  if (c.getAttribute('aria-label') !== 'Pleth waveform, live') c.setAttribute('aria-label', 'Pleth waveform, live');
  const n = Math.min(ring.len, PLETH_SHOW);
  const vals = [];
  let k = 0;
  ring.forEach((t, v) => { if (k++ >= ring.len - n) vals.push(v); });
  let lo = Infinity, hi = -Infinity;
  for (const v of vals) if (!Number.isNaN(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!(hi > lo)) { hi = lo + 1; }
  ctx.strokeStyle = '#35d0ff';
  ctx.lineWidth = Math.max(2, hh / 40);
  ctx.beginPath();
  let pen = false;
  for (let i = 0; i < vals.length; i++) {
    const v = vals[i];
    if (Number.isNaN(v)) { pen = false; continue; }
    const x = (i / (PLETH_SHOW - 1)) * w;
    const y = hh - 4 - ((v - lo) / (hi - lo)) * (hh - 8);
    if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    pen = true;
  }
  ctx.stroke();
}

export function drawTrend(bed, now) {
  const c = bed.el.trend;
  if (!c.clientWidth) return;
  const dpr = fitCanvas(c);
  const ctx = c.getContext('2d');
  const w = c.width, hh = c.height;
  const span = S.trendMinutes * 60000;
  const t0 = now - span;
  const padL = 44 * dpr, padR = 44 * dpr, padT = 6 * dpr, padB = 18 * dpr;
  const pw = w - padL - padR;
  const split = padT + (hh - padT - padB) * 0.42;
  const x = (t) => padL + ((t - t0) / span) * pw;
  ctx.clearRect(0, 0, w, hh);
  ctx.font = Math.round(11 * dpr) + 'px sans-serif';
  ctx.lineWidth = 1;
  // Panel 1: SpO2 70-100 %. Panel 2: PR and NIBP 30-210. An axis extends (in steps of 10)
  // to hold any value in the window: a 60 is drawn as 60, never clamped to the axis.
  const sum = {
    spo2: rangeOf(bed.trends.spo2, t0), pr: rangeOf(bed.trends.pulse_rate, t0),
    sys: rangeOf(bed.trends.nibp_sys, t0), dia: rangeOf(bed.trends.nibp_dia, t0),
  };
  const lo1 = Math.max(0, Math.min(70, Math.floor(sum.spo2.lo / 10) * 10));
  const lo2 = Math.max(0, Math.min(30, Math.floor(Math.min(sum.pr.lo, sum.dia.lo, sum.sys.lo) / 10) * 10));
  const hi2 = Math.max(210, Math.ceil(Math.max(sum.pr.hi, sum.sys.hi, sum.dia.hi) / 10) * 10);
  c.dataset.spo2Floor = String(lo1);
  c.dataset.lowerRange = lo2 + '-' + hi2;
  const y1 = (v) => padT + (1 - (Math.max(lo1, Math.min(100, v)) - lo1) / (100 - lo1)) * (split - padT - 4 * dpr);
  const y2 = (v) => split + 4 * dpr + (1 - (Math.max(lo2, Math.min(hi2, v)) - lo2) / (hi2 - lo2)) * (hh - padB - split - 4 * dpr);
  ctx.strokeStyle = '#1e2a36';
  ctx.fillStyle = '#7d8fa1';
  ctx.textBaseline = 'middle';
  const step1 = 100 - lo1 > 40 ? 20 : 10;
  for (let v = 100; v > lo1; v -= step1) { line(ctx, padL, y1(v), w - padR, y1(v)); ctx.fillText(String(v), 6 * dpr, y1(v)); }
  const step2 = hi2 - lo2 > 240 ? 60 : 30;
  for (let v = Math.ceil((lo2 + 1) / step2) * step2; v < hi2; v += step2) {
    if (v % 60 !== 0 && step2 === 30) continue;
    line(ctx, padL, y2(v), w - padR, y2(v)); ctx.fillText(String(v), w - padR + 6 * dpr, y2(v));
  }
  c.setAttribute('aria-label', trendSummary(bed, sum));
  ctx.textBaseline = 'top';
  ctx.fillStyle = '#35d0ff'; ctx.fillText('SpO2 %', padL + 6 * dpr, padT + 2 * dpr);
  ctx.fillStyle = '#3dff6e'; ctx.fillText('PR /min', padL + 6 * dpr, split + 6 * dpr);
  ctx.fillStyle = '#ff8a8a'; ctx.fillText('NIBP mmHg', padL + 64 * dpr, split + 6 * dpr);
  // Time axis.
  ctx.fillStyle = '#7d8fa1';
  ctx.textBaseline = 'bottom';
  const step = S.trendMinutes <= 10 ? 2 : S.trendMinutes <= 30 ? 5 : S.trendMinutes <= 60 ? 10 : 30;
  for (let m = 0; m <= S.trendMinutes; m += step) {
    const xx = x(now - m * 60000);
    ctx.strokeStyle = '#1e2a36';
    line(ctx, xx, padT, xx, hh - padB);
    ctx.fillText(m === 0 ? 'now' : '-' + m + ' min', Math.min(xx - 12 * dpr, w - padR - 30 * dpr), hh - 2 * dpr);
  }
  // Series.
  series(ctx, bed.trends.spo2, t0, x, y1, '#35d0ff', 2 * dpr, bed.histBucketMs);
  series(ctx, bed.trends.pulse_rate, t0, x, y2, '#3dff6e', 2 * dpr, bed.histBucketMs);
  // NIBP: a bar from diastolic to systolic per measurement.
  ctx.strokeStyle = '#ff8a8a';
  ctx.lineWidth = 3 * dpr;
  const dias = [];
  bed.trends.nibp_dia.forEach((t, v) => { if (t >= t0 && !Number.isNaN(v)) dias.push([t, v]); });
  bed.trends.nibp_sys.forEach((t, v) => {
    if (t < t0 || Number.isNaN(v)) return;
    const d = dias.find((p) => Math.abs(p[0] - t) < 5000);
    const xx = x(t);
    line(ctx, xx - 5 * dpr, y2(v), xx + 5 * dpr, y2(v));
    if (d) { line(ctx, xx, y2(v), xx, y2(d[1])); line(ctx, xx - 5 * dpr, y2(d[1]), xx + 5 * dpr, y2(d[1])); }
  });
  // Dose (yellow) and phase (grey) markers, labelled.
  ctx.setLineDash([6 * dpr, 4 * dpr]);
  ctx.lineWidth = 2 * dpr;
  ctx.textBaseline = 'top';
  let flipped = 0;
  for (const d of bed.doses) {
    if (d.t < t0 || d.t > now) continue;
    const color = d.kind === 'phase' ? '#aab8c6' : '#ffd400';
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    const xx = x(d.t);
    line(ctx, xx, padT, xx, hh - padB);
    // The label goes right of its line, or left of it where it would be cut at the chart's
    // right edge (a dose given a moment ago).
    const tw = ctx.measureText(d.text).width;
    const right = xx + 4 * dpr + tw <= w - padR;
    const lx = right ? xx + 4 * dpr : Math.max(2 * dpr, xx - 4 * dpr - tw);
    ctx.fillText(d.text, lx, padT + (d.kind === 'phase' ? 14 * dpr : 0));
    flipped += right ? 0 : 1;
  }
  ctx.setLineDash([]);
  c.dataset.markerLabelsLeft = String(flipped);
}

// The smallest and largest valid value (a bucket's min/max) of a ring since t0.
export function rangeOf(ring, t0) {
  let lo = Infinity, hi = -Infinity, n = 0;
  ring.forEach((t, v, l, u) => {
    if (t < t0 || Number.isNaN(v)) return;
    lo = Math.min(lo, Number.isNaN(l) ? v : l);
    hi = Math.max(hi, Number.isNaN(u) ? v : u);
    n++;
  });
  return { lo, hi, n };
}

// The trend canvas's text alternative: what a sighted nurse reads from it.
export function trendSummary(bed, sum) {
  const part = (name, r, unit, now) => r.n
    ? name + ' ' + fmtNum(r.lo) + ' to ' + fmtNum(r.hi) + ' ' + unit + (Number.isFinite(now) ? ', last ' + fmtNum(now) : '')
    : name + ' no data';
  const parts = [
    part('SpO2', sum.spo2, '%', bed.trends.spo2.lastV()),
    part('pulse rate', sum.pr, '/min', bed.trends.pulse_rate.lastV()),
    sum.sys.n ? 'NIBP ' + sum.sys.n + ' measurement' + (sum.sys.n > 1 ? 's' : '') + ', systolic ' + fmtNum(sum.sys.lo) + ' to ' + fmtNum(sum.sys.hi) + ' mmHg' : 'NIBP none',
  ];
  if (bed.doses.length) parts.push(bed.doses.length + ' dose marker' + (bed.doses.length > 1 ? 's' : ''));
  return 'Trends of ' + bed.label + ', last ' + S.trendMinutes + ' min: ' + parts.join('; ') + '.';
}

export function line(ctx, x1, y1, x2, y2) {
  ctx.beginPath();
  ctx.moveTo(x1, y1);
  ctx.lineTo(x2, y2);
  ctx.stroke();
}

// The mean as a line, and each point's min..max as a vertical stroke (a history bucket
// that held a dip shows the dip). A gap longer than 10 s, or than 3 buckets, is not bridged.
export function series(ctx, ring, t0, x, y, color, width, bucketMs) {
  const maxGap = Math.max(10000, 3 * (bucketMs || 0));
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.beginPath();
  let pen = false, lastT = 0;
  ring.forEach((t, v, lo, hi) => {
    if (t < t0 || Number.isNaN(v)) { pen = false; return; }
    if (pen && t - lastT > maxGap) pen = false;
    if (pen) ctx.lineTo(x(t), y(v)); else ctx.moveTo(x(t), y(v));
    pen = true;
    lastT = t;
  });
  ctx.stroke();
  ctx.beginPath();
  ring.forEach((t, v, lo, hi) => {
    if (t < t0 || Number.isNaN(lo) || Number.isNaN(hi) || hi <= lo) return;
    ctx.moveTo(x(t), y(lo));
    ctx.lineTo(x(t), y(hi));
  });
  ctx.stroke();
}

