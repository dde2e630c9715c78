// The token and HTTP: `api()` fetches with the bearer token and returns {ok, status, json, error}.
import { S } from './state.js';

// ---------------------------------------------------------------- token and HTTP
// The token lives in sessionStorage: it survives a reload of this tab, and is gone when the
// tab closes (a token left in localStorage would outlive the shift). An older page kept it in
// localStorage: move it over once and delete it there.
export function loadToken() {
  try {
    const old = localStorage.getItem('vitalsd.token');
    if (old !== null) {
      localStorage.removeItem('vitalsd.token');
      if (sessionStorage.getItem('vitalsd.token') === null) sessionStorage.setItem('vitalsd.token', old);
    }
  } catch (e) { /* no storage */ }
  const m = /(?:^|[#&])token=([^&]*)/.exec(location.hash || '');
  if (m) {
    const t = decodeURIComponent(m[1]);
    try { sessionStorage.setItem('vitalsd.token', t); } catch (e) { /* private mode */ }
    // Keep the token out of the address bar (and out of screenshots of it).
    history.replaceState(null, '', location.pathname + location.search);
    return t || null;
  }
  try { return sessionStorage.getItem('vitalsd.token'); } catch (e) { return null; }
}

export async function api(method, path, body) {
  const headers = {};
  if (S.token) headers.Authorization = 'Bearer ' + S.token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method, headers, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    return { ok: false, status: 0, error: 'network error: ' + (e && e.message ? e.message : e) };
  }
  let text = '';
  try { text = await res.text(); } catch (e) { /* empty body */ }
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
  if (!res.ok) {
    const msg = (json && typeof json.error === 'string' && json.error) || text || res.statusText;
    return { ok: false, status: res.status, json, error: res.status + ' ' + msg };
  }
  return { ok: true, status: res.status, json };
}

// A bed's `limits_off` (spo2, pulse_rate without a limit rule in force), after its limits or
// baseline changed.
export async function refreshLimitsOff(bed) {
  const r = await api('GET', '/api/rooms');
  if (!r.ok || !r.json || !Array.isArray(r.json.rooms)) return;
  for (const room of r.json.rooms) {
    for (const b of Array.isArray(room.beds) ? room.beds : []) {
      if (b.id === bed.id) {
        bed.limitsOff = Array.isArray(b.limits_off) ? b.limits_off : [];
        bed.dirty = true;
      }
    }
  }
}

export function bedPath(bed) {
  return '/api/beds/' + encodeURIComponent(bed.roomId) + '/' + encodeURIComponent(bed.recliner);
}

export async function checkAuth() {
  const r = await api('GET', '/api/rooms');
  if (r.status === 401 || r.status === 403) {
    S.authError = (S.token ? 'The daemon refused this page\'s token (' : 'The daemon needs a token (') +
      r.error + '). Open the dashboard as /#token=YOUR_TOKEN.';
  } else {
    S.authError = null;
  }
}

