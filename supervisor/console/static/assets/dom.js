// Small DOM and formatting helpers. Text is always set as text, never as
// HTML: everything shown comes from units, workers and logs.

// h(tag, attrs, ...children) creates an element. attrs: class, text,
// dataset entries as data-*, on* listeners, boolean and string attributes.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// replace swaps the children of el.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

export function fmtDuration(ms) {
  if (ms === undefined || ms === null || isNaN(ms)) return '';
  if (ms < 0) ms = 0;
  const s = Math.floor(ms / 1000);
  if (s < 1) return `${Math.round(ms)}ms`;
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const hh = Math.floor(m / 60);
  if (hh < 48) return `${hh}h ${m % 60}m`;
  return `${Math.floor(hh / 24)}d ${hh % 24}h`;
}

const zeroTime = t => !t || t.startsWith('0001-01-01');

// uptime is how long since t, or '' for a zero time.
export function since(t, now = Date.now()) {
  if (zeroTime(t)) return '';
  return fmtDuration(now - Date.parse(t));
}

export function fmtTime(t) {
  if (zeroTime(t)) return '';
  const d = new Date(t);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

export function fmtUSD(v) {
  if (v === undefined || v === null) return '';
  return `$${Number(v).toFixed(Number(v) >= 100 ? 0 : 2)}`;
}

export function fmtInt(v) {
  if (v === undefined || v === null) return '';
  return Number(v).toLocaleString();
}

// badge is a state pill; kind picks its colour.
export function badge(text, kind = text) {
  return h('span', { class: `badge b-${String(kind).replace(/[^a-z_-]/gi, '')}` }, text);
}

// A toast for the outcome of an action.
export function toast(msg, kind = 'error') {
  const box = document.getElementById('toasts');
  const t = h('div', { class: `toast t-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, msg);
  box.appendChild(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 3000);
}

// debounce calls fn once, wait ms after the last call.
export function debounce(fn, wait = 120) {
  let timer = 0;
  const d = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
  d.cancel = () => clearTimeout(timer);
  return d;
}

export function empty(text) {
  return h('p', { class: 'empty' }, text);
}

// section is a titled panel.
export function section(title, ...children) {
  const id = 'sec-' + title.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  return h('section', { class: 'panel', 'aria-labelledby': id },
    h('h2', { id }, title), ...children);
}

// facts is a definition list of label/value pairs, skipping empty values.
export function facts(pairs) {
  const dl = h('dl', { class: 'facts' });
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === '') continue;
    dl.append(h('dt', {}, k), h('dd', {}, v));
  }
  return dl;
}
