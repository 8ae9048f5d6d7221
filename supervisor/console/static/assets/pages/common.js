// Pieces shared by the pages.
import { h, badge } from '../dom.js';
import { enc } from '../api.js';

// stateBadge shows a unit's state and sub-state.
export function stateBadge(u) {
  const wrap = h('span', { class: 'state' }, badge(u.state, u.state));
  if (u.sub && u.sub !== u.state) wrap.append(h('span', { class: 'sub' }, u.sub));
  return wrap;
}

export function unitLink(name) {
  return h('a', { href: `#/units/${enc(name)}`, class: 'mono' }, name);
}

export function chainLink(id, text = id) {
  return h('a', { href: `#/chains/${enc(id)}`, class: 'mono' }, text);
}

export const isOrchestrator = u => u.type === 'orchestrator';

// unitActions are the buttons that change what a unit does; none for the
// read-only token.
export function unitActions(ctx, u) {
  if (!ctx.mayChange) return null;
  const name = u.name;
  const running = u.state === 'active' || u.state === 'activating' || u.state === 'reloading';
  const stopping = u.state === 'deactivating';
  const btn = (action, label, path, cls = '') => h('button', {
    type: 'button', class: `btn ${cls}`, 'data-action': action,
    'aria-label': `${label} ${name}`, title: `${label} ${name}`,
    onclick: ev => ctx.act(ev.currentTarget, path),
  }, label);
  const base = `/v1/units/${enc(name)}`;
  const out = h('span', { class: 'actions' });
  if (!running && !stopping) out.append(btn('start', 'Start', `${base}/start`, 'primary'));
  if (running || stopping) out.append(btn('stop', 'Stop', `${base}/stop`));
  if (running) out.append(btn('restart', 'Restart', `${base}/restart`));
  if (running && isOrchestrator(u)) out.append(btn('drain', 'Drain', `${base}/stop?drain=1`));
  return out;
}

export function exitText(exit) {
  if (!exit) return '';
  if (exit.signal) return `signal ${exit.signal}`;
  return `code ${exit.code}`;
}

// chainStatus colours a chain or session status.
export function statusBadge(s) {
  return badge(s || 'unknown', s);
}
