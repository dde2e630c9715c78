// The top bar (link, clock, demo, watching, audio bar, auth) and the NOT MONITORING screen.
import { announce } from './announce.js';
import { NOT_MONITORING_MS, S, isLive, serverNow } from './state.js';
import { $, ageText, clockText, setText } from './util.js';

export function renderTop(now) {
  const live = isLive(now);
  const link = $('#link');
  link.classList.toggle('up', live);
  link.classList.toggle('down', !live);
  let linkText = 'LIVE';
  if (!live) {
    if (S.ws && S.wsOpen) linkText = 'NO DATA';
    else if (S.retryTimer) linkText = 'RECONNECTING IN ' + Math.max(0, Math.ceil((S.retryAt - now) / 1000)) + ' s';
    else linkText = 'CONNECTING';
  }
  setText($('#link-text'), linkText);
  setText($('#clock'), clockText(serverNow()));
  $('#demo').hidden = !(S.simulated || S.simulatedReadings);
  const bar = $('#audio-bar');
  bar.hidden = S.audioArmed;
  renderWatch();
  if (S.audioError) setText(bar.querySelector('.why'), S.audioError);
  const auth = $('#auth');
  auth.hidden = !S.authError;
  setText(auth, S.authError || '');
  const was = S.notMonitoring;
  S.notMonitoring = now - S.lastMsgAt > NOT_MONITORING_MS;
  if (S.notMonitoring !== was && S.haveSnapshot) {
    announce(S.notMonitoring
      ? 'Not monitoring: no data from the daemon. The bedside monitors keep their own alarms.'
      : 'Monitoring again: the daemon is heard.');
  }
  $('#not-monitoring').hidden = !S.notMonitoring;
  document.body.classList.toggle('not-monitoring-on', S.notMonitoring);
  if (S.notMonitoring) {
    setText($('#nm-detail'), 'No data from the daemon for ' + ageText(now - S.lastMsgAt) + '. ' +
      (S.authError ? S.authError : linkText === 'LIVE' ? '' : linkText + '.') +
      ' The bedside monitors keep their own alarms.');
  }
}

// Whether this page counts as a dashboard watching (armed, and counted by the daemon), and
// how many dashboards can sound in all.
export function renderWatch() {
  const el = $('#watch');
  let state, text;
  if (!S.audioArmed) { state = 'off'; text = 'NOT WATCHING (sound not armed)'; }
  else if (!S.counted) { state = 'wait'; text = 'ARMED, not yet counted'; }
  else { state = 'on'; text = 'WATCHING'; }
  if (el.dataset.state !== state) el.dataset.state = state;
  setText($('#watch-text'), text);
  const d = S.dashboards;
  let count = '';
  if (d && Number.isFinite(Number(d.live))) {
    count = 'able to sound: ' + Number(d.live);
    if (Number(d.hidden) > 0) count += ' (' + d.hidden + ' hidden)';
  }
  setText($('#watch-count'), count);
  $('#watch').classList.toggle('none-live', !!d && Number(d.live) === 0);
}

