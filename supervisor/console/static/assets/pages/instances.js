// Instances of an orchestrator template: the list, a form that starts a new
// instance with its task and limits, and stop or drain for each.
import { api, enc, APIError } from '../api.js';
import { h, replace, since, fmtUSD, fmtInt, debounce, empty, section, toast } from '../dom.js';
import { chainLink, unitLink, statusBadge } from './common.js';
import { field, setError, fieldProblems } from './form.js';

export function mount(main, ctx) {
  document.title = 'Instances · opsvc';
  const template = h('input', { id: 'template', type: 'text', placeholder: 'orchestrator', class: 'filter', 'aria-describedby': 'template-help', pattern: '[A-Za-z0-9:_.\\-]+' });
  const notice = h('div', { class: 'notice', hidden: true, role: 'note' });
  const tbody = h('tbody');
  main.append(
    h('div', { class: 'pagehead' }, h('h1', {}, 'Instances'),
      h('span', { class: 'spacer' }),
      h('label', { for: 'template', class: 'inline' }, 'Template'), template,
      h('span', { id: 'template-help', class: 'sr-only' }, 'The orchestrator template, without its @; empty for the daemon\'s default')),
    notice,
    h('div', { class: 'tablewrap' }, h('table', { class: 'grid', id: 'instances' },
      h('caption', { class: 'sr-only' }, 'Orchestrator instances'),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Instance'), h('th', { scope: 'col' }, 'Unit'), h('th', { scope: 'col' }, 'State'),
        h('th', { scope: 'col', class: 'num' }, 'PID'), h('th', { scope: 'col', class: 'num' }, 'Uptime'),
        h('th', { scope: 'col' }, 'Chain'), h('th', { scope: 'col' }, 'Task'),
        h('th', { scope: 'col', class: 'num' }, 'Sessions'), h('th', { scope: 'col', class: 'num' }, 'Cost'),
        ctx.mayChange ? h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')) : null)),
      tbody)),
    ctx.mayChange ? startForm(ctx, () => template.value.trim(), () => reload()) : null);

  const query = () => (template.value.trim() ? `?template=${enc(template.value.trim())}` : '');
  const load = async () => {
    let list;
    notice.hidden = true;
    try {
      const res = await api.get(`/api/orchestrator/instances${query()}`);
      list = res.instances || [];
      if (res.template) template.placeholder = res.template;
    } catch (err) {
      if (!(err instanceof APIError) || err.status !== 404 || !/no route/.test(err.message)) {
        replace(tbody, h('tr', {}, h('td', { colspan: 10, class: 'error' }, err.text || String(err))));
        return;
      }
      // A daemon without the instance routes: its orchestrator units.
      replace(notice, 'This daemon does not serve the instance routes; the list shows its orchestrator units, without their chains.');
      notice.hidden = false;
      const units = (await api.get('/v1/units')).units || [];
      list = units.filter(u => u.type === 'orchestrator' && u.name.includes('@')).map(u => ({
        id: u.name.slice(u.name.indexOf('@') + 1), unit: u.name, state: u.state, pid: u.pid, since: u.since, chain: null, viaUnits: true,
      }));
    }
    if (!list.length) {
      replace(tbody, h('tr', {}, h('td', { colspan: 10 }, empty('No instances. Start one below.'))));
      return;
    }
    replace(tbody, list.map(i => row(ctx, i, query)));
  };
  const reload = debounce(load, 150);
  template.addEventListener('change', load);
  const tick = setInterval(() => {
    for (const cell of tbody.querySelectorAll('td[data-since]')) cell.textContent = since(cell.dataset.since);
  }, 1000);
  load();
  return {
    onEvent(e) {
      if ((e.unit && e.unit.includes('@')) || e.type.startsWith('chain.') || e.type.startsWith('config.')) reload();
    },
    destroy() { clearInterval(tick); reload.cancel(); },
  };
}

function row(ctx, i, query) {
  const running = i.state === 'active' || i.state === 'activating';
  const c = i.chain;
  // Without the instance routes, the unit's own routes (which cannot pass
  // a task) stand in.
  const base = i.viaUnits ? `/v1/units/${enc(i.unit)}` : `/api/orchestrator/${enc(i.id)}`;
  const q = i.viaUnits ? '' : query();
  const btn = (action, label, path) => h('button', {
    type: 'button', class: 'btn', 'data-action': action, 'aria-label': `${label} ${i.unit}`,
    onclick: ev => ctx.act(ev.currentTarget, path),
  }, label);
  return h('tr', { 'data-instance': i.id, 'data-state': i.state },
    h('th', { scope: 'row', class: 'mono' }, i.id),
    h('td', {}, unitLink(i.unit)),
    h('td', {}, statusBadge(i.state)),
    h('td', { class: 'num mono' }, i.pid ? String(i.pid) : ''),
    h('td', { class: 'num', 'data-since': running ? i.since : undefined }, running ? since(i.since) : ''),
    h('td', {}, c ? [chainLink(c.id), ' ', statusBadge(c.status)] : ''),
    h('td', { class: 'task', title: c ? c.task : '' }, c ? c.task : ''),
    h('td', { class: 'num' }, c ? fmtInt(c.sessions) : ''),
    h('td', { class: 'num' }, c ? fmtUSD(c.total_cost_usd) : ''),
    ctx.mayChange ? h('td', { class: 'act' }, h('span', { class: 'actions' },
      running ? btn('stop', 'Stop', `${base}/stop${q}`) : null,
      running ? btn('drain', 'Drain', `${base}/stop${q ? q + '&' : '?'}drain=1`) : null,
      running ? null : btn('start', 'Start', `${base}/start${q}`))) : null);
}

function startForm(ctx, template, done) {
  const f = {
    id: field('id', 'Instance id', { required: true, pattern: '[A-Za-z0-9:_.\\-]+', maxlength: 100, placeholder: 'e.g. roadmap', help: 'The unit will be TEMPLATE@ID.' }),
    task: field('task', 'Task', { placeholder: 'Work through ROADMAP.md' }),
    model: field('model', 'Model', { placeholder: 'default from settings', list: 'models' }),
    max_turns: field('max_turns', 'Max turns', { type: 'number', min: 1, max: 200, step: 1, inputmode: 'numeric' }),
    max_budget_usd: field('max_budget_usd', 'Budget (USD)', { type: 'number', min: 0, max: 100, step: 0.01, inputmode: 'decimal' }),
    project_dir: field('project_dir', 'Project directory', { placeholder: 'from the template' }),
  };
  const models = h('datalist', { id: 'models' });
  api.get('/v1/settings').then(s => {
    replace(models, (s.orchestrator.valid_models || []).map(m => h('option', { value: m })));
    f.model.input.placeholder = `default: ${s.orchestrator.model}`;
  }).catch(() => {});
  const submit = h('button', { type: 'submit', class: 'btn primary' }, 'Start instance');
  const form = h('form', { class: 'form grid2', id: 'start-instance', novalidate: true },
    Object.values(f).map(x => x.wrap), models, h('div', { class: 'formactions' }, submit));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    for (const x of Object.values(f)) setError(x, '');
    const id = f.id.input.value.trim();
    if (!id || !f.id.input.checkValidity()) {
      setError(f.id, 'Give an id of letters, digits and : _ . -');
      f.id.input.focus();
      return;
    }
    const body = {};
    for (const k of ['task', 'model', 'project_dir']) {
      const v = f[k].input.value.trim();
      if (v) body[k] = v;
    }
    for (const k of ['max_turns', 'max_budget_usd']) {
      const v = f[k].input.value.trim();
      if (v !== '') body[k] = Number(v);
    }
    const t = template();
    submit.disabled = true;
    try {
      const res = await api.post(`/api/orchestrator/${enc(id)}/start${t ? `?template=${enc(t)}` : ''}`, body);
      toast(`Started ${res && res.unit ? res.unit : `${t || 'orchestrator'}@${id}`}`, 'ok');
      form.reset();
      done();
    } catch (err) {
      const probs = err instanceof APIError ? fieldProblems(err.body) : new Map();
      let shown = false;
      for (const [k, msg] of probs) {
        if (f[k]) { setError(f[k], msg); shown = true; }
      }
      if (!shown) toast(err.text || String(err));
    } finally {
      submit.disabled = false;
    }
  });
  return section('Start a new instance', form);
}
