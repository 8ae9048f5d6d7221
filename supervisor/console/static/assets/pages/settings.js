// Settings: the [orchestrator] section of opsvc.toml, with each validation
// error next to its field, and the budgets.
import { api, APIError } from '../api.js';
import { h, replace, fmtUSD, section, toast } from '../dom.js';
import { field, setError, fieldProblems } from './form.js';

const fields = [
  ['model', 'Default model', { options: [] }],
  ['valid_models', 'Valid models', { type: 'text', help: 'Separated by commas.' }],
  ['max_turns', 'Max turns per session', { type: 'number', step: 1, help: '1 to 200.' }],
  ['max_continuations', 'Max continuations', { type: 'number', step: 1, help: 'Sessions after the first: 1 to 20.' }],
  ['max_budget_usd', 'Budget per chain (USD)', { type: 'number', step: 0.01, help: '0 to 100.' }],
  ['max_concurrent_sessions', 'Concurrent sessions', { type: 'number', step: 1, help: 'Across all orchestrators; 0 = unlimited.' }],
  ['max_sessions_per_minute', 'Sessions per minute', { type: 'number', step: 1, help: '0 = unlimited.' }],
  ['global_budget_usd', 'Global budget per day (USD)', { type: 'number', step: 0.01, help: 'All chains together.' }],
  ['per_worker_budget_usd', 'Budget per unit per day (USD)', { type: 'number', step: 0.01, help: 'One orchestrator unit.' }],
];
const numeric = new Set(fields.filter(([, , o]) => o.type === 'number').map(([k]) => k));

export function mount(main, ctx) {
  document.title = 'Settings · opsvc';
  const f = {};
  for (const [k, label, opts] of fields) f[k] = field(k, label, { ...opts, disabled: !ctx.mayChange });
  const submit = ctx.mayChange ? h('button', { type: 'submit', class: 'btn primary' }, 'Save') : null;
  const status = h('span', { class: 'muted', role: 'status' });
  const form = h('form', { class: 'form grid2', id: 'settings', novalidate: true },
    Object.values(f).map(x => x.wrap),
    h('div', { class: 'formactions' }, submit, status,
      ctx.mayChange ? null : h('span', { class: 'muted' }, 'The read-only token may not change settings.')));
  const budgets = h('div', { class: 'tablewrap' });
  main.append(h('div', { class: 'pagehead' }, h('h1', {}, 'Settings')),
    section('Orchestrator', h('p', { class: 'help' }, 'The defaults of every orchestrator unit and the limits across all of them; saved to opsvc.toml.'), form),
    section('Budgets today', budgets));

  let current = null;
  const fill = s => {
    current = s;
    const o = s.orchestrator;
    replace(f.model.input, (o.valid_models || []).map(m => h('option', { value: m }, m)));
    f.model.input.value = o.model;
    f.valid_models.input.value = (o.valid_models || []).join(', ');
    for (const k of numeric) f[k].input.value = o[k];
    renderBudgets(budgets, o);
  };
  const load = async () => {
    try {
      fill(await api.get('/v1/settings'));
    } catch (err) {
      replace(form, h('p', { class: 'error' }, err.text || String(err)));
    }
  };
  // The model list follows valid_models as it is typed.
  f.valid_models.input.addEventListener('input', () => {
    const keep = f.model.input.value;
    const list = f.valid_models.input.value.split(',').map(s => s.trim()).filter(Boolean);
    if (!list.includes(keep) && keep) list.push(keep);
    replace(f.model.input, list.map(m => h('option', { value: m }, m)));
    f.model.input.value = keep;
  });
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    if (!ctx.mayChange) return;
    for (const x of Object.values(f)) setError(x, '');
    const o = {
      model: f.model.input.value,
      valid_models: f.valid_models.input.value.split(',').map(s => s.trim()).filter(Boolean),
    };
    let bad = false;
    for (const k of numeric) {
      const v = f[k].input.value.trim();
      if (v === '' || isNaN(Number(v))) {
        setError(f[k], 'Give a number.');
        bad = true;
        continue;
      }
      o[k] = Number(v);
    }
    if (bad) return;
    submit.disabled = true;
    status.textContent = 'Saving…';
    try {
      fill(await api.put('/v1/settings', { orchestrator: o }));
      status.textContent = 'Saved.';
    } catch (err) {
      status.textContent = '';
      const probs = err instanceof APIError ? fieldProblems(err.body) : new Map();
      let first = null;
      for (const [k, msg] of probs) {
        if (f[k]) {
          setError(f[k], msg);
          first = first || f[k].input;
        }
      }
      if (first) first.focus();
      else toast(err.text || String(err));
    } finally {
      submit.disabled = false;
    }
  });
  load();
  return {
    onEvent(e) {
      // Another client saved: show it, unless this one is being edited.
      if (e.type === 'config.settings' && current && !form.contains(document.activeElement)) load();
    },
  };
}

// renderBudgets shows the daily limits; the amounts used come from
// GET /v1/budgets where the daemon serves it.
async function renderBudgets(el, o) {
  let used = null;
  try {
    used = await api.get('/v1/budgets');
  } catch { /* not served: limits only */ }
  const rows = [['Global, all chains', used ? used.global_used_usd : null, o.global_budget_usd]];
  if (used && Array.isArray(used.units)) {
    for (const u of used.units) rows.push([u.unit, u.used_usd, o.per_worker_budget_usd]);
  } else {
    rows.push(['Each orchestrator unit', null, o.per_worker_budget_usd]);
  }
  replace(el, h('table', { class: 'grid compact', id: 'budgets' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Budget'), h('th', { scope: 'col', class: 'num' }, 'Used today'),
      h('th', { scope: 'col', class: 'num' }, 'Limit'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Share used')))),
    h('tbody', {}, rows.map(([name, u, limit]) => h('tr', {},
      h('th', { scope: 'row' }, name),
      h('td', { class: 'num' }, u === null || u === undefined ? h('span', { class: 'muted', title: 'Not reported by this daemon' }, '—') : fmtUSD(u)),
      h('td', { class: 'num' }, fmtUSD(limit)),
      h('td', {}, u === null || u === undefined || !limit ? '' :
        h('meter', { min: 0, max: limit, value: Math.min(u, limit), high: limit * 0.8, 'aria-label': `${name}: ${fmtUSD(u)} of ${fmtUSD(limit)}` })))))));
}
