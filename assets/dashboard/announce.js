// The screen-reader announcements: a visually hidden aria-live region (#announcer) that says each
// new alarm once, physiological and technical, with the bed and the value, and says when the page
// stops (NOT MONITORING) and resumes monitoring. The visible banner is not a live region: its
// rows change state in place (acknowledged, paused), which would be read out again and again.
import { S } from './state.js';
import { spokenAlarm } from './text.js';
import { $, h } from './util.js';

const KEEP = 6;                   // announcements kept in the region (older ones are removed)
const announced = new Set();      // alarm ids already said

// Says `text` (appended, so the same words twice are read twice).
export function announce(text) {
  const region = $('#announcer');
  if (!region) return;
  region.append(h('p', { text }));
  while (region.childElementCount > KEEP) region.firstElementChild.remove();
  S.announcements = (S.announcements || 0) + 1;
}

// A new alarm (from its `raised` message or from a snapshot): said once per alarm id.
export function announceAlarm(a) {
  if (!a || a.id === undefined || announced.has(a.id)) return;
  announced.add(a.id);
  const bed = a.bed ? S.beds.get(a.bed) : null;
  announce(spokenAlarm(a, bed ? bed.label : null));
}

// Alarms no longer current are forgotten (an id is never reused, so this only bounds memory).
export function forgetAlarmsExcept(current) {
  for (const id of announced) if (!current.has(id)) announced.delete(id);
}
