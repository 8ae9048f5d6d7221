// Chains: every chain in the registry, newest first, updated live.
import { api } from '../api.js';
import { h, replace, fmtTime, fmtUSD, fmtInt, debounce, empty } from '../dom.js';
import { chainLink, unitLink, statusBadge } from './common.js';

export function mount(main, ctx) {
  document.title = 'Chains · opsvc';
  const count = h('span', { class: 'muted' });
  const filter = h('select', { 'aria-label': 'Show chains with status', class: 'filter' },
    ['all', 'running', 'interrupted', 'complete', 'failed', 'exhausted', 'budget_exceeded'].map(s => h('option', { value: s }, s === 'all' ? 'All statuses' : s)));
  const tbody = h('tbody');
  main.append(
    h('div', { class: 'pagehead' }, h('h1', {}, 'Chains'), count, h('span', { class: 'spacer' }), filter),
    h('div', { class: 'tablewrap' }, h('table', { class: 'grid', id: 'chains' },
      h('caption', { class: 'sr-only' }, 'Orchestrator chains'),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Chain'), h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, 'Unit'),
        h('th', { scope: 'col' }, 'Task'), h('th', { scope: 'col', class: 'num' }, 'Sessions'),
        h('th', { scope: 'col', class: 'num' }, 'Cost'), h('th', { scope: 'col', class: 'num' }, 'Turns'),
        h('th', { scope: 'col' }, 'Updated'))),
      tbody)),
    archivePanel());

  let chains = [];
  const render = () => {
    const st = filter.value;
    const shown = chains.filter(c => st === 'all' || c.status === st);
    count.textContent = `${chains.length} chains · ${chains.filter(c => c.status === 'running').length} running`;
    if (!shown.length) {
      replace(tbody, h('tr', {}, h('td', { colspan: 8 }, empty(chains.length ? 'No chain has this status.' : 'No chains yet. Orchestrator units record theirs here.'))));
      return;
    }
    replace(tbody, shown.map(c => h('tr', { 'data-chain': c.id, 'data-status': c.status, 'data-sessions': c.sessions },
      h('th', { scope: 'row' }, chainLink(c.id), c.restarted_from ? h('div', { class: 'desc' }, 'resumes ', chainLink(c.restarted_from)) : null),
      h('td', {}, statusBadge(c.status)),
      h('td', {}, unitLink(c.unit)),
      h('td', { class: 'task', title: c.task }, c.task),
      h('td', { class: 'num' }, fmtInt(c.sessions)),
      h('td', { class: 'num' }, fmtUSD(c.total_cost_usd)),
      h('td', { class: 'num' }, fmtInt(c.total_turns)),
      h('td', {}, h('time', { datetime: c.updated_at, title: new Date(c.updated_at).toLocaleString() }, fmtTime(c.updated_at))))));
  };
  const load = async () => {
    try {
      const res = await api.get('/v1/chains');
      chains = (res.chains || []).slice().sort((a, b) => Date.parse(b.updated_at) - Date.parse(a.updated_at));
      render();
    } catch (err) {
      replace(tbody, h('tr', {}, h('td', { colspan: 8, class: 'error' }, err.text || String(err))));
    }
  };
  const reload = debounce(load, 150);
  filter.addEventListener('change', render);
  load();
  return {
    onEvent(e) {
      if (e.type.startsWith('chain.') || e.type.startsWith('session.')) reload();
    },
    destroy() { reload.cancel(); },
  };
}

// archivePanel lists archived chains when the daemon serves them
// (GET /v1/chains?archived=1 answering {"archived": true, "chains": […]}).
function archivePanel() {
  const body = h('div');
  const details = h('details', { class: 'panel archive', id: 'archive' },
    h('summary', {}, h('h2', {}, 'Archived chains')), body);
  let loaded = false;
  details.addEventListener('toggle', async () => {
    if (!details.open || loaded) return;
    loaded = true;
    try {
      const res = await api.get('/v1/chains?archived=1');
      if (!res || res.archived !== true) {
        replace(body, empty('This daemon does not serve archived chains yet; opsvc chains ls on the host lists what the registry keeps.'));
        return;
      }
      const list = res.chains || [];
      replace(body, list.length ? h('ul', { class: 'plain' }, list.map(c => h('li', {}, chainLink(c.id), ' ', statusBadge(c.status), ' ', c.task))) : empty('No archived chains.'));
    } catch (err) {
      replace(body, h('p', { class: 'error' }, err.text || String(err)));
    }
  });
  return details;
}
