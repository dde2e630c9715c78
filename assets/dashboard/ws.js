// The WebSocket to the daemon: connect, reconnect with backoff, drop a socket that went silent.
import { sendBeat } from './beat.js';
import { checkAuth } from './http.js';
import { onMessage } from './live.js';
import { BACKOFF_MAX_MS, NOT_MONITORING_MS, S } from './state.js';

// ---------------------------------------------------------------- WebSocket
export function connect() {
  clearTimeout(S.retryTimer);
  S.retryTimer = null;
  const q = new URLSearchParams();
  // The token travels in the first message (never in the URL, so never in a proxy's access
  // log); the daemon sends nothing before it, and closes with 4401 if it is refused.
  if (S.haveSnapshot && S.lastSeq > 0) q.set('since', String(S.lastSeq));
  const qs = q.toString();
  const url = (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/ws' + (qs ? '?' + qs : '');
  let ws;
  try {
    ws = new WebSocket(url);
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
    S.wsAuthSent = false;
    if (S.token) {
      ws.send(JSON.stringify({ type: 'auth', token: S.token }));
      S.wsAuthSent = true;
    }
    sendBeat(true);
  };
  ws.onmessage = (ev) => {
    if (S.ws === ws) onMessage(ev.data);
  };
  ws.onclose = (ev) => {
    if (S.ws !== ws) return;
    S.ws = null;
    S.wsOpen = false;
    // 4401: the daemon refused the token (or needs one); the HTTP check says which.
    if (!opened || ev.code === 4401) checkAuth();
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

