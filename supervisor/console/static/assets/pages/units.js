// Units: one row per unit, updated live.
import { api } from '../api.js';
import { h, replace, since, debounce, empty } from '../dom.js';
import { stateBadge, unitLink, unitActions } from './common.js';

export function mount(main, ctx) {
  document.title = 'Units · opsvc';
  const filter = h('input', { type: 'search', placeholder: 'Filter units', 'aria-label': 'Filter units', class: 'filter' });
  const count = h('span', { class: 'muted' });
  const tbody = h('tbody');
  const table = h('table', { class: 'grid', id: 'units' },
    h('caption', { class: 'sr-only' }, 'Units and their state'),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Unit'),
      h('th', { scope: 'col' }, 'State'),
      h('th', { scope: 'col', class: 'num' }, 'PID'),
      h('th', { scope: 'col', class: 'num' }, 'Uptime'),
      h('th', { scope: 'col', class: 'num' }, 'Restarts'),
      h('th', { scope: 'col' }, 'Status'),
      h('th', { scope: 'col' }, 'Error'),
      ctx.mayChange ? h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')) : null)),
    tbody);
  const body = h('div', { class: 'tablewrap' }, table);
  main.append(h('div', { class: 'pagehead' }, h('h1', {}, 'Units'), count, h('span', { class: 'spacer' }), filter), body);

  let units = [];
  const render = () => {
    const q = filter.value.trim().toLowerCase();
    const shown = units.filter(u => !q || u.name.toLowerCase().includes(q) || (u.description || '').toLowerCase().includes(q));
    const active = units.filter(u => u.state === 'active').length;
    const failed = units.filter(u => u.state === 'failed').length;
    count.textContent = `${units.length} units · ${active} active${failed ? ` · ${failed} failed` : ''}`;
    if (!units.length) {
      replace(tbody, h('tr', {}, h('td', { colspan: 8 }, empty('No units. Add NAME.toml files to the units directory.'))));
      return;
    }
    replace(tbody, shown.map(u => row(ctx, u)));
  };
  const load = async () => {
    try {
      const res = await api.get('/v1/units');
      units = res.units || [];
      render();
    } catch (err) {
      replace(tbody, h('tr', {}, h('td', { colspan: 8, class: 'error' }, err.text || String(err))));
    }
  };
  const reload = debounce(load, 100);
  filter.addEventListener('input', render);
  // Uptimes tick.
  const tick = setInterval(() => {
    for (const cell of tbody.querySelectorAll('td[data-since]')) cell.textContent = since(cell.dataset.since);
  }, 1000);
  load();
  return {
    onEvent(e) {
      if (e.unit || e.type.startsWith('config.') || e.type.startsWith('daemon.')) reload();
    },
    destroy() {
      clearInterval(tick);
      reload.cancel();
    },
  };
}

function row(ctx, u) {
  const up = u.pid > 0 && (u.state === 'active' || u.state === 'activating') ? u.since : '';
  const err = u.error || u.last_error || u.blocked || '';
  return h('tr', { 'data-unit': u.name, 'data-state': u.state, class: `s-${u.state}` },
    h('th', { scope: 'row' }, unitLink(u.name), u.description ? h('div', { class: 'desc' }, u.description) : null),
    h('td', {}, stateBadge(u)),
    h('td', { class: 'num mono' }, u.pid ? String(u.pid) : ''),
    h('td', { class: 'num', 'data-since': up || undefined, title: up ? `since ${new Date(up).toLocaleString()}` : '' }, since(up)),
    h('td', { class: 'num' }, u.restarts ? String(u.restarts) : '0'),
    h('td', { class: 'status' }, u.status_text || ''),
    h('td', { class: 'err' }, err ? h('span', { class: 'errtext', title: err }, err.split('\n')[0]) : ''),
    ctx.mayChange ? h('td', { class: 'act' }, unitActions(ctx, u)) : null);
}
