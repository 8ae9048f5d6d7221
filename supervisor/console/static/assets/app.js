// The opsvc console: a hash-routed page over the control API, kept current
// by the live event feed.
import { api, enc } from './api.js';
import { Live } from './live.js';
import { h, replace, toast } from './dom.js';
import * as unitsPage from './pages/units.js';
import * as unitPage from './pages/unit.js';
import * as chainsPage from './pages/chains.js';
import * as chainPage from './pages/chain.js';
import * as instancesPage from './pages/instances.js';
import * as settingsPage from './pages/settings.js';

const routes = [
  [/^#\/units\/([^/]+)$/, unitPage, 'units'],
  [/^#\/units\/?$/, unitsPage, 'units'],
  [/^#\/chains\/([^/]+)$/, chainPage, 'chains'],
  [/^#\/chains\/?$/, chainsPage, 'chains'],
  [/^#\/instances\/?$/, instancesPage, 'instances'],
  [/^#\/settings\/?$/, settingsPage, 'settings'],
];

// ctx is what every page gets.
const ctx = {
  role: 'none',
  get mayChange() { return this.role === 'admin' || this.role === 'local'; },
  live: null,
  // act sends a POST for a button and reports a failure; the page updates
  // from the events the change causes.
  async act(button, path, body, done) {
    if (button) button.disabled = true;
    try {
      const res = await api.post(path, body);
      if (done) done(res);
      return res;
    } catch (err) {
      toast(err.text || String(err));
      return null;
    } finally {
      if (button) button.disabled = false;
    }
  },
};

let current = null;

function route() {
  const hash = location.hash || '#/units';
  if (current && current.destroy) current.destroy();
  current = null;
  const main = document.getElementById('main');
  for (const [re, page, section] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('nav a[data-section]')) {
      if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const params = m.slice(1).map(decodeURIComponent);
    main.replaceChildren();
    current = page.mount(main, ctx, ...params) || {};
    return;
  }
  replace(main, h('div', { class: 'pad' }, h('h1', {}, 'Not found'),
    h('p', {}, 'No page at ', h('code', {}, hash), '. ', h('a', { href: '#/units' }, 'Back to the units'), '.')));
}

function setConn(state) {
  const el = document.getElementById('conn');
  el.dataset.state = state;
  el.textContent = { live: 'live', connecting: 'connecting', reconnecting: 'reconnecting…', ended: 'offline' }[state] || state;
  el.title = state === 'live' ? `Live events up to seq ${ctx.live ? ctx.live.seq : 0}` : 'Waiting for the event feed';
}

function sessionEnded() {
  if (ctx.live) ctx.live.stop();
  setConn('ended');
  const b = document.getElementById('banner');
  replace(b, h('strong', {}, 'Your session has ended. '),
    'The tokens may have been rotated. On the daemon\'s host, run ', h('code', {}, 'opsvc console'),
    ' and open the link it prints.');
  b.hidden = false;
}

async function boot() {
  window.addEventListener('opsvc:unauthorized', sessionEnded);
  window.addEventListener('opsvc:check-session', () => { api.get('/v1/whoami').catch(() => {}); });
  let who;
  try {
    who = await api.get('/v1/whoami');
  } catch (err) {
    if (err.status !== 401) {
      replace(document.getElementById('main'), h('p', { class: 'pad error' }, `Cannot reach the daemon: ${err.text || err}`));
    }
    return;
  }
  ctx.role = who.role;
  document.body.dataset.role = who.role;
  const role = document.getElementById('role');
  role.textContent = who.role;
  role.dataset.role = who.role;
  ctx.live = new Live(who.last_seq || 0, {
    onEvent: e => {
      if (current && current.onEvent) current.onEvent(e);
    },
    onState: setConn,
  });
  window.addEventListener('hashchange', route);
  route();
  ctx.live.start();
}

export { enc };
boot();
