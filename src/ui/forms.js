// The add/edit dialog and the confirmation before a removal. The form
// shows the common fields; what it does not show is kept from the process
// as it was. exeio's refusals are shown next to the field they name.

import { $, notify, safe, setError } from './dom.js';
import { S } from './state.js';
import { call, enc } from './api.js';
import { listSoon } from './table.js';

// Config fields kept as they are when a process is edited (the form shows the others).
const KEEP = [
  'log_max_bytes', 'log_backups', 'backoff_seconds', 'backoff_reset_seconds',
  'rapid_exit_penalty_seconds', 'user', 'group', 'overlap', 'timeout_seconds', 'history',
  'schedule', 'timezone', 'catch_up', 'catch_up_window_seconds', 'auto_restart',
  'env_file',
];
const SHOWN = [
  'command', 'args', 'working_dir', 'env', 'restart_policy', 'max_restarts', 'periodic',
  'period_seconds', 'stop_signal', 'stop_timeout_seconds', 'save_for_next_run',
];
const JOB_ONLY = ['overlap', 'timeout_seconds', 'history'];

const form = () => $('edit-form');
const field = (name) => form().elements.namedItem(name);

class FieldError extends Error {
  constructor(name, message) {
    super(message);
    this.field = name;
  }
}

function clearErrors() {
  for (const el of form().querySelectorAll('.field-error')) setError(el, '');
  for (const el of form().querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

function showFieldError(name, message) {
  name = String(name || '')
    .replace(/^processes\[\d+\]\./, '')
    .split(/[.[]/)[0];
  const input = name ? field(name) : null;
  const box = input && $('err-' + name) ? $('err-' + name) : $('err-form');
  setError(box, message);
  if (input && box !== $('err-form')) {
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  }
}

function syncJobFields() {
  const periodic = field('periodic').checked;
  field('period_seconds').disabled = !periodic;
  field('restart_policy').disabled = periodic;
  field('max_restarts').disabled = periodic;
}

export function openEdit(id) {
  const p = id ? S.procs.get(id) : null;
  const base = {};
  if (p) {
    for (const k of SHOWN.concat(KEEP)) {
      if (p[k] !== null && p[k] !== undefined) base[k] = p[k];
    }
  }
  S.editing = { id: p ? id : null, base };
  form().reset();
  clearErrors();
  $('edit-title').textContent = p ? 'Edit ' + id : 'Add a process';
  $('edit-save').textContent = p ? 'Save' : 'Add';
  field('id').value = p ? id : '';
  field('id').readOnly = !!p;
  field('command').value = base.command || '';
  const args = base.args || [];
  field('args').value = args.some((a) => a === '' || a.includes('\n'))
    ? JSON.stringify(args)
    : args.join('\n');
  field('working_dir').value = base.working_dir || '';
  field('env').value = Object.entries(base.env || {})
    .map(([k, v]) => k + '=' + v)
    .join('\n');
  field('restart_policy').value = base.restart_policy || 'never';
  field('max_restarts').value = base.max_restarts !== undefined ? String(base.max_restarts) : '';
  field('periodic').checked = !!base.periodic;
  field('period_seconds').value = base.period_seconds !== undefined ? String(base.period_seconds) : '';
  field('stop_signal').value = base.stop_signal && base.stop_signal !== 'TERM' ? base.stop_signal : '';
  field('stop_timeout_seconds').value =
    base.stop_timeout_seconds !== undefined && base.stop_timeout_seconds !== 10
      ? String(base.stop_timeout_seconds)
      : '';
  field('save_for_next_run').checked = !!base.save_for_next_run;
  syncJobFields();
  $('edit').showModal();
  (p ? field('command') : field('id')).focus();
}

function number(name, c) {
  const el = field(name);
  if (el.validity.badInput) throw new FieldError(name, name + ' must be a number');
  const v = el.value.trim();
  if (v === '' || el.disabled) delete c[name];
  else c[name] = Number(v);
}

function text(name, c) {
  const v = field(name).value.trim();
  if (v) c[name] = v;
  else delete c[name];
}

// The full configuration the form describes (what it does not show is
// kept from the process as it was).
function formConfig() {
  const c = Object.assign({}, S.editing.base);
  c.id = field('id').value.trim();
  c.command = field('command').value.trim();
  const raw = field('args').value;
  if (raw.trim().startsWith('[')) {
    let a;
    try {
      a = JSON.parse(raw);
    } catch (e) {
      throw new FieldError('args', 'args: not a JSON array (' + e.message + ')');
    }
    if (!Array.isArray(a) || a.some((x) => typeof x !== 'string')) {
      throw new FieldError('args', 'args: a JSON array must hold strings only');
    }
    c.args = a;
  } else {
    c.args = raw.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l !== '');
  }
  text('working_dir', c);
  const env = {};
  for (const line of field('env').value.split('\n')) {
    if (!line.trim()) continue;
    const i = line.indexOf('=');
    if (i <= 0) throw new FieldError('env', 'env: write each variable as NAME=value (line “' + line + '”)');
    env[line.slice(0, i).trim()] = line.slice(i + 1);
  }
  if (Object.keys(env).length) c.env = env;
  else delete c.env;
  c.periodic = field('periodic').checked;
  if (!c.periodic) {
    c.restart_policy = field('restart_policy').value;
    c.auto_restart = c.restart_policy !== 'never';
    number('max_restarts', c);
    delete c.period_seconds;
    if (!c.schedule) for (const k of JOB_ONLY) delete c[k];
  }
  number('period_seconds', c);
  text('stop_signal', c);
  number('stop_timeout_seconds', c);
  c.save_for_next_run = field('save_for_next_run').checked;
  return c;
}

async function save(ev) {
  ev.preventDefault();
  clearErrors();
  let c;
  try {
    c = formConfig();
  } catch (e) {
    return showFieldError(e.field, e.message);
  }
  const id = S.editing && S.editing.id;
  const b = $('edit-save');
  b.disabled = true;
  try {
    const r = id ? await call('POST', '/update/' + enc(id), c) : await call('POST', '/add', c);
    $('edit').close();
    notify(r.message || 'saved');
    listSoon(0);
  } catch (e) {
    if (e.status !== 401) showFieldError(e.body.field, e.message);
  } finally {
    b.disabled = false;
  }
}

export function confirmRemove(id) {
  return new Promise((resolve) => {
    const d = $('confirm');
    $('confirm-text').textContent =
      'Remove ' + id + '? It is stopped and forgotten; its log file is kept.';
    let settled = false;
    const done = (yes) => {
      if (settled) return;
      settled = true;
      $('confirm-yes').removeEventListener('click', onYes);
      $('confirm-no').removeEventListener('click', onNo);
      d.removeEventListener('close', onNo);
      if (d.open) d.close();
      resolve(yes);
    };
    const onYes = () => done(true);
    const onNo = () => done(false);
    $('confirm-yes').addEventListener('click', onYes);
    $('confirm-no').addEventListener('click', onNo);
    d.addEventListener('close', onNo);
    d.showModal();
    $('confirm-no').focus();
  });
}

// Close what is open (the session ended).
export function closeDialogs() {
  if ($('edit').open) $('edit').close();
  if ($('confirm').open) $('confirm').close();
}

// The dialog's controls.
export function wireForms() {
  $('edit-form').addEventListener('submit', safe(save));
  $('edit-cancel').addEventListener('click', () => $('edit').close());
  field('periodic').addEventListener('change', syncJobFields);
}
