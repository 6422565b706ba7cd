// The session: log in with POST /session (an HttpOnly cookie; the key is
// never kept), log out, and back to the log-in form when the session ends.

import { $, notify, setError } from './dom.js';
import { S, can } from './state.js';
import { call } from './api.js';
import { closeEvents, openEvents } from './events.js';
import { closeDialogs } from './forms.js';
import { closeDeploy } from './deploy.js';
import { closeLogs } from './logs.js';
import { clearTable, listSoon, updateCount } from './table.js';

export function showLogin(message) {
  teardown();
  for (const id of ['procs', 'logs', 'who', 'logout', 'conn']) $(id).hidden = true;
  $('login').hidden = false;
  setError($('login-error'), message);
  $('key').focus();
}

export function sessionLost() {
  if (S.user) showLogin('Your session has ended: log in again.');
}

function teardown() {
  S.user = null;
  closeEvents();
  closeLogs();
  clearTable();
  closeDialogs();
  closeDeploy();
}

export function begin(user) {
  S.user = { name: user.name, role: user.role };
  $('login').hidden = true;
  $('who').textContent = user.name + ' (' + user.role + ')';
  $('who').hidden = false;
  $('logout').hidden = false;
  $('add').hidden = !can('admin');
  $('procs').hidden = false;
  updateCount();
  openEvents();
  listSoon(0);
}

export async function login(ev) {
  ev.preventDefault();
  const input = $('key');
  const err = $('login-error');
  const button = ev.target.querySelector('button[type=submit]');
  if (!input.value.trim()) {
    setError(err, 'Enter an API key.');
    input.focus();
    return;
  }
  button.disabled = true;
  try {
    const s = await call('POST', '/session', { key: input.value.trim() }, { login: true });
    input.value = '';
    setError(err, '');
    begin(s);
    $('main').focus();
  } catch (e) {
    setError(err, e.status === 401 ? 'That key is not valid.' : e.message);
    input.select();
  } finally {
    button.disabled = false;
  }
}

export async function logout() {
  try {
    await call('POST', '/session/logout', {}, { login: true });
  } catch (_) {
    // The session is gone either way on this page.
  }
  showLogin('');
  notify('Logged out.');
}
