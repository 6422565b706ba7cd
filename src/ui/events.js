// Live changes: GET /events as an EventSource (no polling). A state or
// health event shows at once; the others reload the list. The browser
// reconnects by itself; when exeio refused, the session is checked first.

import { $, safe } from './dom.js';
import { S } from './state.js';
import { call } from './api.js';
import { applyHealth } from './health.js';
import { applyState, dropRow, listSoon } from './table.js';

function setConn(live) {
  const c = $('conn');
  c.hidden = false;
  c.textContent = live ? 'live' : 'reconnecting…';
  c.className = 'conn' + (live ? ' live' : '');
  c.title = live ? 'Changes show as they happen' : 'The event stream is down; it reconnects by itself';
}

export function closeEvents() {
  if (S.es) S.es.close();
  S.es = null;
}

export function openEvents() {
  closeEvents();
  const es = new EventSource('/events');
  S.es = es;
  const on = (name, f) =>
    es.addEventListener(name, (ev) => {
      if (S.es !== es) return;
      let d = {};
      try {
        d = JSON.parse(ev.data || '{}');
      } catch (_) {
        return;
      }
      f(d);
    });
  es.addEventListener('open', () => S.es === es && setConn(true));
  es.addEventListener('error', () => {
    if (S.es !== es) return;
    setConn(false);
    // The browser reconnects by itself (with Last-Event-ID) unless the
    // server refused: then look at the session before trying again.
    if (es.readyState === EventSource.CLOSED) {
      es.close();
      S.es = null;
      safe(recheck)();
    }
  });
  on('state', applyState);
  on('health', applyHealth);
  on('added', () => listSoon(50));
  on('updated', () => listSoon(50));
  on('run', () => listSoon(50));
  on('deploy', () => listSoon(50));
  on('removed', (d) => dropRow(d.id));
  on('gap', () => listSoon(0));
  on('dropped', () => listSoon(0));
}

async function recheck() {
  try {
    await call('GET', '/session');
  } catch (e) {
    if (e.status === 401) return; // back at the log-in form
  }
  setTimeout(() => {
    if (S.user && !S.es) {
      openEvents();
      listSoon(0);
    }
  }, 3000);
}
