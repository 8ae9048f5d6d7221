// A chain: its sessions and its lineage as a tree.
import { api, enc } from '../api.js';
import { h, replace, fmtTime, fmtUSD, fmtInt, fmtDuration, debounce, empty, section, facts } from '../dom.js';
import { chainLink, unitLink, statusBadge } from './common.js';

export function mount(main, ctx, id) {
  document.title = `${id} · opsvc`;
  const head = h('div', { class: 'pagehead' }, h('h1', { class: 'mono' }, id));
  const info = h('div');
  const sessions = h('div', { class: 'tablewrap' });
  const lineage = h('div');
  main.append(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/chains' }, 'Chains'), ' / ', h('span', { class: 'mono' }, id)),
    head, info, section('Sessions', sessions), section('Lineage', lineage));

  const load = async () => {
    let c;
    try {
      c = await api.get(`/v1/chains/${enc(id)}`);
    } catch (err) {
      replace(info, h('p', { class: 'error' }, err.text || String(err)));
      return;
    }
    replace(head, h('h1', { class: 'mono' }, c.id), statusBadge(c.status));
    const cfg = c.config || {};
    replace(info, facts([
      ['Unit', unitLink(c.unit)],
      ['Task', c.task],
      ['Project', c.project_dir ? h('span', { class: 'mono' }, c.project_dir) : ''],
      ['Started', fmtTime(c.started_at)],
      ['Updated', fmtTime(c.updated_at)],
      ['Resumes', c.restarted_from ? chainLink(c.restarted_from) : ''],
      ['Model', cfg.model],
      ['Limits', `${cfg.max_turns ?? '?'} turns · ${cfg.max_continuations ?? '?'} continuations · ${fmtUSD(cfg.max_budget_usd)} budget`],
      ['Total', `${fmtUSD(c.total_cost_usd)} · ${fmtInt(c.total_turns)} turns · ${fmtDuration(c.total_duration_ms)}`],
      ['Errors in a row', c.consecutive_errors ? String(c.consecutive_errors) : ''],
    ]));
    const list = c.sessions || [];
    if (!list.length) {
      replace(sessions, empty('No session has finished yet.'));
    } else {
      replace(sessions, h('table', { class: 'grid', id: 'sessions' },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col', class: 'num' }, '#'), h('th', { scope: 'col' }, 'Status'),
          h('th', { scope: 'col', class: 'num' }, 'Turns'), h('th', { scope: 'col', class: 'num' }, 'Cost'),
          h('th', { scope: 'col', class: 'num' }, 'Tokens in / out'), h('th', { scope: 'col', class: 'num' }, 'Duration'),
          h('th', { scope: 'col' }, 'Handoff'), h('th', { scope: 'col' }, 'Error'))),
        h('tbody', {}, list.map(s => h('tr', { 'data-session': s.index, 'data-status': s.status },
          h('th', { scope: 'row', class: 'num' }, String(s.index)),
          h('td', {}, statusBadge(s.status), s.hit_max_turns ? h('span', { class: 'sub' }, 'max turns') : null),
          h('td', { class: 'num' }, fmtInt(s.turns)),
          h('td', { class: 'num' }, fmtUSD(s.cost_usd)),
          h('td', { class: 'num' }, `${fmtInt(s.input_tokens)} / ${fmtInt(s.output_tokens)}`),
          h('td', { class: 'num' }, fmtDuration(s.duration_ms)),
          h('td', {}, s.handoff_complete ? 'complete' : (s.handoff_file ? 'partial' : ''), s.handoff_file ? h('div', { class: 'desc mono', title: s.handoff_file }, s.handoff_file.split('/').slice(-2).join('/')) : null),
          h('td', { class: 'err' }, s.error ? h('span', { class: 'errtext', title: s.error }, s.error) : ''))))));
    }
  };
  const loadLineage = async () => {
    try {
      const res = await api.get(`/v1/chains/${enc(id)}/lineage`);
      replace(lineage, tree(res.lineage || [], id));
    } catch (err) {
      replace(lineage, h('p', { class: 'error' }, err.text || String(err)));
    }
  };
  const reload = debounce(() => { load(); loadLineage(); }, 150);
  load();
  loadLineage();
  return {
    onEvent(e) {
      if (e.type.startsWith('chain.') || e.type.startsWith('session.')) reload();
    },
    destroy() { reload.cancel(); },
  };
}

// tree nests the lineage entries by restarted_from (root first).
function tree(entries, current) {
  if (!entries.length) return empty('No lineage.');
  const kids = new Map();
  const ids = new Set(entries.map(e => e.id));
  const roots = [];
  for (const e of entries) {
    if (e.restarted_from && ids.has(e.restarted_from)) {
      if (!kids.has(e.restarted_from)) kids.set(e.restarted_from, []);
      kids.get(e.restarted_from).push(e);
    } else {
      roots.push(e);
    }
  }
  const node = (e, level) => {
    const children = kids.get(e.id) || [];
    const label = h('span', { class: `node${e.id === current ? ' current' : ''}` },
      e.id === current ? h('span', { class: 'mono', 'aria-current': 'true' }, e.id) : chainLink(e.id),
      statusBadge(e.status),
      h('span', { class: 'muted' }, `${fmtInt(e.sessions)} sessions · ${fmtUSD(e.total_cost_usd)} · ${fmtTime(e.updated_at)}`));
    return h('li', { role: 'treeitem', 'aria-level': level, 'aria-expanded': children.length ? 'true' : undefined, 'data-chain': e.id },
      label, children.length ? h('ul', { role: 'group' }, children.map(c => node(c, level + 1))) : null);
  };
  return h('ul', { class: 'tree', role: 'tree', id: 'lineage', 'aria-label': 'Lineage' }, roots.map(r => node(r, 1)));
}
