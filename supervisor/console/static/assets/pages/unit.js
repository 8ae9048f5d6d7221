// A unit: its state, effective definition with sources, logs and events,
// all live.
import { api, enc, ndjson } from '../api.js';
import { h, replace, since, fmtTime, debounce, empty, section, facts } from '../dom.js';
import { stateBadge, unitActions, exitText } from './common.js';

const maxLogLines = 500;
const maxEvents = 200;

export function mount(main, ctx, name) {
  document.title = `${name} · opsvc`;
  const head = h('div', { class: 'pagehead' });
  const info = h('div');
  const defBody = h('div', { class: 'tablewrap' });
  const logBox = h('ol', { class: 'log', 'aria-live': 'off', id: 'logs' });
  const evBody = h('tbody');
  main.append(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/units' }, 'Units'), ' / ', h('span', { class: 'mono' }, name)),
    head, info,
    h('div', { class: 'cols' },
      section('Logs', h('div', { class: 'logwrap' }, logBox)),
      section('Events', h('div', { class: 'tablewrap short' }, h('table', { class: 'grid compact', id: 'unit-events' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col', class: 'num' }, 'Seq'), h('th', { scope: 'col' }, 'Time'), h('th', { scope: 'col' }, 'Type'), h('th', { scope: 'col' }, 'Details'))),
        evBody)))),
    section('Definition', defBody));

  let unit = null;
  const loadUnit = async () => {
    try {
      unit = await api.get(`/v1/units/${enc(name)}`);
    } catch (err) {
      replace(head, h('h1', { class: 'mono' }, name));
      replace(info, h('p', { class: 'error' }, err.text || String(err)));
      return;
    }
    replace(head, h('h1', { class: 'mono' }, name), stateBadge(unit), h('span', { class: 'spacer' }), unitActions(ctx, unit));
    const up = unit.state === 'active' ? unit.since : '';
    replace(info, facts([
      ['Description', unit.description],
      ['Type', unit.type],
      ['PID', unit.pid ? String(unit.pid) : ''],
      [up ? 'Up for' : 'Since', up ? since(up) : fmtTime(unit.since)],
      ['Restarts', String(unit.restarts || 0)],
      ['Last exit', exitText(unit.exit)],
      ['Result', unit.result],
      ['Status', unit.status_text],
      ['Wanted', unit.wanted ? 'yes' : 'no'],
      ['Blocked', unit.blocked],
      ['Last error', unit.last_error],
      ['Load error', unit.error ? h('pre', { class: 'errtext' }, unit.error) : ''],
      ['Files', (unit.sources || []).length ? h('ul', { class: 'plain mono' }, unit.sources.map(s => h('li', {}, s))) : ''],
    ]));
  };
  const loadDefinition = async () => {
    try {
      const res = await api.get(`/v1/units/${enc(name)}/definition`);
      const rows = (res.definition || []).map(a => h('tr', {},
        h('td', { class: 'mono' }, a.table ? `[${a.table}]` : ''),
        h('th', { scope: 'row', class: 'mono' }, a.key),
        h('td', { class: 'mono value' }, a.value),
        h('td', { class: `mono source${a.source === '(default)' ? ' muted' : ''}`, title: a.source }, a.source.split('/').pop())));
      replace(defBody, h('table', { class: 'grid compact', id: 'definition' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Table'), h('th', { scope: 'col' }, 'Key'), h('th', { scope: 'col' }, 'Value'), h('th', { scope: 'col' }, 'Source'))),
        h('tbody', {}, rows)));
    } catch (err) {
      replace(defBody, h('p', { class: 'error' }, err.text || String(err)));
    }
  };

  // Logs: the recent lines, then live ones, from one streaming request.
  const abort = new AbortController();
  let stick = true;
  logBox.addEventListener('scroll', () => {
    stick = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 8;
  });
  const noneYet = h('li', { class: 'none' }, 'No output yet.');
  logBox.append(noneYet);
  const addLog = l => {
    noneYet.remove();
    const li = h('li', { class: `ll-${l.stream}` },
      h('time', { datetime: l.time }, fmtTime(l.time)), ' ',
      l.stream === 'stderr' ? h('span', { class: 'stream' }, 'err') : null,
      h('span', { class: 'text' }, l.text));
    logBox.append(li);
    while (logBox.childElementCount > maxLogLines) logBox.firstElementChild.remove();
    if (stick) logBox.scrollTop = logBox.scrollHeight;
  };
  ndjson(`/v1/units/${enc(name)}/logs?n=200&follow=1`, addLog, abort.signal).catch(err => {
    if (err.name !== 'AbortError') logBox.append(h('li', { class: 'error' }, `logs: ${err.text || err}`));
  });

  // Events: the recent ones of this unit, then live ones.
  const addEvent = (e, prepend = false) => {
    const details = Object.entries(e.data || {})
      .filter(([, v]) => v !== '' && v !== null && v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
    const tr = h('tr', { 'data-seq': e.seq },
      h('td', { class: 'num mono' }, String(e.seq)),
      h('td', {}, h('time', { datetime: e.time }, fmtTime(e.time))),
      h('td', { class: 'mono' }, e.type),
      h('td', { class: 'details' }, details));
    if (prepend) evBody.append(tr); else evBody.prepend(tr);
    while (evBody.childElementCount > maxEvents) evBody.lastElementChild.remove();
  };
  const loadEvents = async () => {
    const from = Math.max(0, (ctx.live ? ctx.live.seq : 0) - 5000);
    const upTo = ctx.live ? ctx.live.seq : 0;
    const got = [];
    try {
      await ndjson(`/v1/events?unit=${enc(name)}&since=${from}&follow=0`, e => { if (e.seq <= upTo) got.push(e); }, abort.signal);
    } catch (err) {
      if (err.name !== 'AbortError') evBody.append(h('tr', {}, h('td', { colspan: 4, class: 'error' }, err.text || String(err))));
      return;
    }
    for (const e of got.slice(-maxEvents).reverse()) addEvent(e, true);
    if (!evBody.childElementCount) evBody.append(h('tr', { class: 'none' }, h('td', { colspan: 4 }, empty('No recent events.'))));
  };

  const reload = debounce(loadUnit, 100);
  const tick = setInterval(() => {
    if (unit && unit.state === 'active') {
      const dd = [...info.querySelectorAll('dt')].find(dt => dt.textContent === 'Up for');
      if (dd) dd.nextElementSibling.textContent = since(unit.since);
    }
  }, 1000);
  loadUnit();
  loadDefinition();
  loadEvents();
  return {
    onEvent(e) {
      if (e.unit === name) {
        const none = evBody.querySelector('tr.none');
        if (none) none.remove();
        addEvent(e);
        reload();
      }
      if (e.type === 'config.loaded' && (e.unit === name || !e.unit)) loadDefinition();
    },
    destroy() {
      abort.abort();
      clearInterval(tick);
      reload.cancel();
    },
  };
}
