// The control API, over the session cookie the login set.

export class APIError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `the daemon answered ${status}`);
    this.status = status;
    this.body = body || {};
    this.hint = this.body.hint || '';
  }
  get text() {
    return this.hint ? `${this.message} (${this.hint})` : this.message;
  }
}

async function request(method, path, body, signal) {
  const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin', signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  let data = null;
  const text = await resp.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: text.slice(0, 300) }; }
  }
  if (!resp.ok) {
    if (resp.status === 401) window.dispatchEvent(new CustomEvent('opsvc:unauthorized'));
    throw new APIError(resp.status, data);
  }
  return data;
}

export const api = {
  get: (path, signal) => request('GET', path, undefined, signal),
  post: (path, body) => request('POST', path, body),
  put: (path, body) => request('PUT', path, body),
};

export const enc = encodeURIComponent;

// ndjson streams the lines of a response (GET /v1/units/NAME/logs?follow=1)
// to onItem until signal aborts or the stream ends.
export async function ndjson(path, onItem, signal) {
  const resp = await fetch(path, { headers: { Accept: 'application/x-ndjson' }, credentials: 'same-origin', signal });
  if (!resp.ok) {
    let body = null;
    try { body = await resp.json(); } catch { /* not JSON */ }
    throw new APIError(resp.status, body);
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim()) {
        try { onItem(JSON.parse(line)); } catch { /* a torn line */ }
      }
    }
  }
}
