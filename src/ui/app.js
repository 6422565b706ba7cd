// exeio dashboard: plain JavaScript modules, no build step, no dependencies.
//
// It logs in with POST /session (an HttpOnly cookie; the key is never kept),
// lists processes with GET /list, keeps the table live from GET /events
// (EventSource; no polling), follows logs with a streamed fetch, and sends
// every change with `X-Exeio-CSRF: 1`. Text from processes and the API is
// only ever put in the page with textContent, never parsed as HTML.
//
// This module starts the page and wires what spans modules; each concept
// is a module of its own: api.js (requests, CSRF, 401), state.js (what the
// page knows), dom.js (notices, errors), format.js (figures as text),
// session.js (log in and out), table.js (the process table), health.js
// (probes), events.js (live changes), logs.js (the log viewer) and
// forms.js (the add/edit dialog, the removal confirmation), deploy.js
// (releases: the live one, deploy and rollback).

import { $, safe } from './dom.js';
import { call, onSessionLost } from './api.js';
import { confirmRemove, openEdit, wireForms } from './forms.js';
import { openLogs, wireLogs } from './logs.js';
import { openDeploy, rollback, wireDeploy } from './deploy.js';
import { begin, login, logout, sessionLost, showLogin } from './session.js';
import { act, listSoon, tick } from './table.js';

// A button in a row of the table.
async function rowButton(what, id, b) {
  if (what === 'logs') return openLogs(id);
  if (what === 'edit') return openEdit(id);
  if (what === 'deploy') return openDeploy(id);
  if (what === 'rollback') return rollback(id, b);
  if (what === 'remove' && !(await confirmRemove(id))) return;
  return act(what, id, b);
}

function wire() {
  onSessionLost(sessionLost);
  $('login-form').addEventListener('submit', safe(login));
  $('logout').addEventListener('click', safe(logout));
  $('refresh').addEventListener('click', () => listSoon(0));
  $('add').addEventListener('click', () => openEdit(null));
  $('rows').addEventListener(
    'click',
    safe((ev) => {
      const b = ev.target.closest('button[data-act]');
      if (b && !b.disabled) return rowButton(b.dataset.act, b.closest('tr').dataset.id, b);
    }),
  );
  wireLogs();
  wireForms();
  wireDeploy();
  setInterval(tick, 1000);
}

async function boot() {
  wire();
  let who;
  try {
    who = await call('GET', '/session', null, { login: true });
  } catch (e) {
    return showLogin(e.status && e.status !== 401 ? e.message : '');
  }
  begin(who);
}

safe(boot)();
