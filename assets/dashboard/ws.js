// The WebSocket to the daemon: connect, reconnect with backoff, drop a socket that went silent.
import { sendBeat } from './beat.js';
import { SUBPROTOCOL_SAFE, checkAuth } from './http.js';
import { onMessage } from './live.js';
import { BACKOFF_MAX_MS, NOT_MONITORING_MS, S } from './state.js';

// ---------------------------------------------------------------- WebSocket
export function connect() {
  clearTimeout(S.retryTimer);
  S.retryTimer = null;
  const q = new URLSearchParams();
  // The token travels as a subprotocol (never in the URL, so never in a proxy's access log);
  // only a token with characters a subprotocol cannot carry falls back to the query.
  const protocols = [];
  if (S.token && SUBPROTOCOL_SAFE.test(S.token)) {
    protocols.push('vitalsd', 'vitalsd.token.' + S.token);
  } else if (S.token) {
    q.set('token', S.token);
  }
  if (S.haveSnapshot && S.lastSeq > 0) q.set('since', String(S.lastSeq));
  const qs = q.toString();
  const url = (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/ws' + (qs ? '?' + qs : '');
  let ws;
  try {
    ws = protocols.length ? new WebSocket(url, protocols) : new WebSocket(url);
  } catch (e) {
    scheduleReconnect();
    return;
  }
  S.ws = ws;
  S.wsOpen = false;
  let opened = false;
  ws.onopen = () => {
    if (S.ws !== ws) return;
    opened = true;
    S.wsOpen = true;
    S.counted = false;
    sendBeat(true);
  };
  ws.onmessage = (ev) => {
    if (S.ws === ws) onMessage(ev.data);
  };
  ws.onclose = () => {
    if (S.ws !== ws) return;
    S.ws = null;
    S.wsOpen = false;
    if (!opened) checkAuth();
    scheduleReconnect();
  };
  ws.onerror = () => { /* a close event follows */ };
}

export function scheduleReconnect() {
  if (S.retryTimer) return;
  const d = S.backoff;
  S.backoff = Math.min(S.backoff * 2, BACKOFF_MAX_MS);
  S.retryAt = performance.now() + d;
  S.reconnects++;
  S.retryTimer = setTimeout(connect, d);
}

// A socket that delivers nothing (not even heartbeats) is dead even if the browser has not
// noticed: drop it and reconnect.
export function checkLink(now) {
  if (S.ws && now - S.lastMsgAt > NOT_MONITORING_MS && now - S.connectedAt > NOT_MONITORING_MS) {
    const ws = S.ws;
    S.ws = null;
    S.wsOpen = false;
    try { ws.close(); } catch (e) { /* already closed */ }
    scheduleReconnect();
  }
}

