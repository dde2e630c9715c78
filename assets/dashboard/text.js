// What the page says: reasons for a missing value, quality hints, condition names, alarm texts,
// alarm ordering, a baseline in words.
import { S } from './state.js';
import { fmtNum, toMs } from './util.js';

export const MARK = { high: '***', medium: '**', low: '*' };
export const PRIO_RANK = { high: 3, medium: 2, low: 1 };

// Flags that explain a missing value, most specific first.
export const REASON_FLAGS = [
  ['probe_unplugged', 'PROBE UNPLUGGED'],
  ['sensor_off', 'SENSOR OFF'],
  ['no_finger', 'FINGER OUT'],
  ['sensor_fault', 'SENSOR FAULT'],
  ['searching_too_long', 'SEARCHING TOO LONG'],
  ['searching', 'SEARCHING'],
  ['cuff_loose', 'CUFF LOOSE'],
  ['body_movement', 'BODY MOVEMENT'],
  ['improper_position', 'IMPROPER POSITION'],
  ['measurement_ongoing', 'MEASURING'],
  ['low_perfusion', 'LOW PERFUSION'],
  ['low_signal', 'LOW SIGNAL'],
  ['artifact', 'ARTIFACT'],
  ['interference', 'INTERFERENCE'],
  ['questionable', 'QUESTIONABLE'],
];
// Flags worth showing next to a valid number (quality hints).
export const QUALITY_FLAGS = {
  artifact: 'ARTIFACT', low_perfusion: 'LOW PERFUSION', low_signal: 'LOW SIGNAL',
  interference: 'INTERFERENCE', questionable: 'QUESTIONABLE', low_battery: 'LOW BATTERY',
  irregular_pulse: 'IRREGULAR PULSE',
};
export const INVALID_TEXT = {
  no_value: 'NO VALUE', not_at_resolution: 'NO VALUE', positive_infinity: 'OUT OF RANGE',
  negative_infinity: 'OUT OF RANGE', reserved: 'INVALID', out_of_range: 'OUT OF RANGE',
  device_flagged: 'DEVICE FLAGGED', device_marked_invalid: 'MARKED INVALID',
};
// Physiological conditions: [what, comparison shown with value and limit].
export const PHYSIO = {
  spo2_low: ['SpO2', '<'], spo2_high: ['SpO2', '>'],
  pulse_rate_low: ['PR', '<'], pulse_rate_high: ['PR', '>'],
  perfusion_index_low: ['PI', '<'],
  nibp_sys_high: ['NIBP SYS', '>'], nibp_sys_low: ['NIBP SYS', '<'],
  nibp_dia_high: ['NIBP DIA', '>'], nibp_dia_low: ['NIBP DIA', '<'],
  nibp_mean_high: ['NIBP MEAN', '>'], nibp_mean_low: ['NIBP MEAN', '<'],
  nibp_sys_rise: ['SYS RISE', '>'], nibp_dia_rise: ['DIA RISE', '>'],
  nibp_sys_fall: ['SYS FALL', '<'], nibp_dia_fall: ['DIA FALL', '<'],
  pulse_rate_rise: ['PR RISE', '>'], pulse_rate_fall: ['PR FALL', '<'],
};
export const TECHNICAL = {
  device_disconnected: 'DEVICE DISCONNECTED', no_data: 'NO DATA', nibp_overdue: 'NIBP OVERDUE',
  sensor_off: 'SENSOR OFF', no_finger: 'FINGER OUT', probe_unplugged: 'PROBE UNPLUGGED',
  sensor_fault: 'SENSOR FAULT', searching_too_long: 'SEARCHING TOO LONG',
  low_perfusion: 'LOW PERFUSION', low_signal: 'LOW SIGNAL', low_battery: 'LOW BATTERY',
  cuff_error: 'CUFF ERROR', no_dashboard: 'NO DASHBOARD ABLE TO SOUND',
  site_offline: 'SITE OFFLINE (central view)',
  device_flooding: 'DEVICE FLOODING',
};

export function reasonOf(r) {
  const flags = Array.isArray(r.flags) ? r.flags : [];
  for (const [flag, text] of REASON_FLAGS) {
    if (flags.includes(flag)) return text;
  }
  const cuff = flags.find((f) => typeof f === 'string' && f.startsWith('cuff_error:'));
  if (cuff) return 'CUFF ERROR ' + cuff.slice('cuff_error:'.length);
  if (r.invalid) return INVALID_TEXT[r.invalid] || String(r.invalid).replace(/_/g, ' ').toUpperCase();
  return 'NO VALUE';
}

export function qualityOf(r) {
  const flags = Array.isArray(r.flags) ? r.flags : [];
  const out = [];
  for (const f of flags) if (QUALITY_FLAGS[f]) out.push(QUALITY_FLAGS[f]);
  return out.join(' · ');
}

export function alarmText(a) {
  const mark = MARK[a.priority] || '?';
  const p = PHYSIO[a.condition];
  if (p) {
    if (typeof a.value === 'number' && typeof a.limit === 'number') {
      const d = a.condition.startsWith('perfusion') ? 1 : 0;
      return `${mark} ${p[0]} ${fmtNum(a.value, d)} ${p[1]} ${fmtNum(a.limit, d)}`;
    }
    return `${mark} ${p[0]} ${p[1] === '<' ? 'LOW' : 'HIGH'}`;
  }
  const what = TECHNICAL[a.condition] || String(a.condition || 'alarm').replace(/_/g, ' ').toUpperCase();
  let extra = '';
  if (a.condition === 'cuff_error' && typeof a.value === 'number') extra = ' ' + fmtNum(a.value);
  if (a.target) extra = ': ' + a.target; // notify_failed names the failing target
  let dev = '';
  if (a.device) {
    const bed = S.beds.get(a.bed);
    const d = bed && bed.devices.get(a.device);
    dev = ' (' + (d && d.kind ? d.kind.toUpperCase() : a.device) + ')';
  }
  return `${mark} ${what}${extra}${dev}`;
}

// An alarm as a sentence for a screen reader: priority, kind, where, what (no markers, words
// instead of < and >), e.g. "Medium priority alarm, Room 1 / A: SpO2 87, below the limit 90."
// Where an alarm of no bed applies: every bed, or at the central view (where each message
// names its `site`) every bed of that site, e.g. "NORTH · ALL BEDS".
export function allBedsLabel(a, upper = true) {
  const all = upper ? 'ALL BEDS' : 'all beds';
  return typeof a.site === 'string' && a.site ? `${upper ? a.site.toUpperCase() : a.site} · ${all}` : all;
}

export function spokenAlarm(a, bedLabel) {
  const prio = a.priority ? a.priority[0].toUpperCase() + a.priority.slice(1) + ' priority ' : '';
  const kind = a.kind === 'technical' || (!PHYSIO[a.condition] && TECHNICAL[a.condition]) ? 'technical alarm' : 'alarm';
  const where = bedLabel || (a.bed ? a.bed : allBedsLabel(a, false));
  let what;
  const p = PHYSIO[a.condition];
  if (p) {
    const d = a.condition.startsWith('perfusion') ? 1 : 0;
    const dir = p[1] === '<' ? 'below' : 'above';
    what = typeof a.value === 'number' && typeof a.limit === 'number'
      ? `${p[0]} ${fmtNum(a.value, d)}, ${dir} the limit ${fmtNum(a.limit, d)}`
      : `${p[0]} ${p[1] === '<' ? 'low' : 'high'}`;
  } else {
    what = alarmText(a).replace(/^\S+ /, '').toLowerCase();
  }
  return `${prio}${kind}, ${where}: ${what}.`;
}

// System alarms that end only when their cause does: acknowledging them is refused (409).
export const NOT_ACKNOWLEDGEABLE = new Set(['no_dashboard', 'store_unwritable']);

export function alarmStateText(a) {
  const parts = [];
  if (a.condition === 'no_dashboard') parts.push('ENDS WHEN A DASHBOARD ARMS ITS SOUND');
  if (a.state === 'acknowledged') parts.push('ACKNOWLEDGED');
  else if (a.state === 'latched') parts.push('LATCHED');
  if (a.audio === 'paused') parts.push('AUDIO PAUSED');
  return parts.join(' · ');
}

export function isSounding(a) {
  return a.audio === 'sounding' && (a.state === 'active' || a.state === 'latched');
}

export function sortedAlarms(list) {
  return list.sort((x, y) =>
    (PRIO_RANK[y.priority] || 0) - (PRIO_RANK[x.priority] || 0) ||
    (x.state === 'acknowledged') - (y.state === 'acknowledged') ||
    (toMs(x.started) || 0) - (toMs(y.started) || 0));
}

export function baselineText(b) {
  const parts = [];
  if (b && typeof b.sys === 'number') parts.push('BP ' + fmtNum(b.sys) + '/' + fmtNum(b.dia));
  if (b && typeof b.pulse_rate === 'number') parts.push('PR ' + fmtNum(b.pulse_rate));
  if (b && typeof b.spo2 === 'number') parts.push('SpO2 ' + fmtNum(b.spo2));
  return parts.length ? parts.join(' ') : 'no values yet';
}

