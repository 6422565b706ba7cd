// The process table: one row per process, in id order, filled from
// GET /list and kept live by events; the action buttons a role allows.

import { $, notify } from './dom.js';
import { S, can } from './state.js';
import { call, enc } from './api.js';
import { bytes, duration, exitText, quote, when } from './format.js';
import { healthCell, healthColumn } from './health.js';
import { processRemoved } from './logs.js';
import { releaseText } from './deploy.js';

const LABELS = { manually_stopped: 'stopped by hand' };

export function updateCount() {
  healthColumn();
  $('count').textContent = S.rows.size ? '(' + S.rows.size + ')' : '';
  $('empty').hidden = S.rows.size > 0;
}

function cell(tr, label, cls) {
  const td = document.createElement('td');
  if (label) td.dataset.label = label;
  if (cls) td.className = cls;
  tr.append(td);
  return td;
}

function button(act, text, id, cls) {
  const b = document.createElement('button');
  b.type = 'button';
  b.dataset.act = act;
  b.textContent = text;
  b.setAttribute('aria-label', text + ' ' + id);
  if (cls) b.className = cls;
  return b;
}

function makeRow(id) {
  const tr = document.createElement('tr');
  tr.dataset.id = id;
  const th = document.createElement('th');
  th.scope = 'row';
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = id;
  const cmd = document.createElement('span');
  cmd.className = 'cmd';
  // The release line (deploy.js): the live release, and for admins its buttons.
  const rel = document.createElement('div');
  rel.className = 'rel-line';
  rel.hidden = true;
  const relName = document.createElement('span');
  relName.className = 'rel';
  rel.append(relName);
  th.append(name, cmd, rel);
  tr.append(th);
  const status = cell(tr, 'Status', 'status');
  const badge = document.createElement('span');
  const dot = document.createElement('span');
  dot.className = 'dot';
  dot.setAttribute('aria-hidden', 'true');
  const label = document.createElement('span');
  label.className = 'label';
  badge.append(dot, label);
  status.append(badge);
  const row = {
    tr,
    cmd,
    rel,
    relName,
    status,
    badge,
    label,
    health: cell(tr, 'Health', 'health col-health'),
    pid: cell(tr, 'PID', 'num pid'),
    uptime: cell(tr, 'Uptime', 'num uptime'),
    restarts: cell(tr, 'Restarts', 'num restarts'),
    cpu: cell(tr, 'CPU', 'num cpu'),
    rss: cell(tr, 'RSS', 'num rss'),
    next: cell(tr, 'Next run', 'num next'),
    exit: cell(tr, 'Last exit', 'exit'),
    acts: cell(tr, '', 'acts-cell'),
    buttons: {},
    busy: false,
  };
  const acts = document.createElement('div');
  acts.className = 'acts';
  const add = (act, text, cls) => {
    const b = button(act, text, id, cls);
    row.buttons[act] = b;
    acts.append(b);
  };
  add('logs', 'Logs');
  if (can('operate')) {
    add('start', 'Start');
    add('stop', 'Stop');
    add('restart', 'Restart');
  }
  if (can('admin')) {
    add('edit', 'Edit');
    add('remove', 'Remove', 'danger-text');
    for (const [act, text] of [['deploy', 'Deploy'], ['rollback', 'Roll back']]) {
      const b = button(act, text, id);
      row.buttons[act] = b;
      rel.append(b);
    }
  }
  row.acts.append(acts);
  // Keep the rows in id order, as /list gives them.
  let before = null;
  for (const other of $('rows').children) {
    if (other.dataset.id > id) {
      before = other;
      break;
    }
  }
  $('rows').insertBefore(tr, before);
  S.rows.set(id, row);
  return row;
}

function timeCells(row, p, now) {
  const age = (now - p._at) / 1000;
  row.uptime.textContent =
    p.pid !== null && p.pid !== undefined && p.uptime_seconds !== null && p.uptime_seconds !== undefined
      ? duration(p.uptime_seconds + age)
      : '—';
  if (p.next_run_in_seconds !== null && p.next_run_in_seconds !== undefined) {
    const left = duration(p.next_run_in_seconds - age);
    row.next.textContent = (p.status === 'backoff' ? 'restart in ' : 'in ') + left;
    row.next.title = p.next_run_at ? 'at ' + when(p.next_run_at) : '';
  } else {
    row.next.textContent = '—';
    row.next.title = '';
  }
}

function fill(row, p) {
  const cmdline = [p.command].concat(p.args || []).map(quote).join(' ');
  row.cmd.textContent = cmdline;
  row.cmd.title = cmdline;
  releaseText(row.rel, row.relName, p);
  row.status.dataset.status = p.status;
  row.badge.className = 'badge s-' + p.status;
  row.label.textContent = LABELS[p.status] || p.status;
  healthCell(row.health, p);
  row.pid.textContent = p.pid === null || p.pid === undefined ? '—' : String(p.pid);
  row.restarts.textContent = String(p.restart_count || 0);
  row.restarts.title =
    p.restarts_total !== undefined ? p.restarts_total + ' in all, ' + (p.run_count || 0) + ' runs' : '';
  row.cpu.textContent =
    p.cpu_percent === null || p.cpu_percent === undefined ? '—' : p.cpu_percent.toFixed(1) + ' %';
  row.rss.textContent = bytes(p.rss_bytes);
  timeCells(row, p, performance.now());
  row.exit.textContent = exitText(p);
  row.exit.title = p.last_exit ? 'at ' + when(p.last_exit.at) : '';
  if (p.error) {
    const e = document.createElement('span');
    e.className = 'exit-error';
    e.textContent = p.error;
    row.exit.append(e);
  }
  const b = row.buttons;
  const s = p.status;
  if (b.start) b.start.disabled = row.busy || s === 'running' || s === 'stopping';
  if (b.stop) b.stop.disabled = row.busy || ['stopped', 'manually_stopped', 'failed', 'stopping'].includes(s);
  if (b.restart) b.restart.disabled = row.busy || s === 'stopping';
  if (b.remove) b.remove.disabled = row.busy;
  if (b.rollback) b.rollback.disabled = row.busy || !p.release;
}

function upsert(p, at) {
  p._at = at;
  S.procs.set(p.id, p);
  fill(S.rows.get(p.id) || makeRow(p.id), p);
}

export function dropRow(id) {
  const row = S.rows.get(id);
  if (row) row.tr.remove();
  S.rows.delete(id);
  S.procs.delete(id);
  updateCount();
  processRemoved(id);
}

// The whole list, reconciled with the table.
async function loadList() {
  const at = performance.now();
  const list = await call('GET', '/list');
  if (!S.user) return;
  const seen = new Set();
  for (const p of list) {
    seen.add(p.id);
    upsert(p, at);
  }
  for (const id of [...S.rows.keys()]) if (!seen.has(id)) dropRow(id);
  updateCount();
}

// Reload the list soon, once for a burst of events: one request in
// flight, one waiting at most (a steady stream of events cannot starve it).
export function listSoon(delay) {
  if (S.list.busy) {
    S.list.again = true;
    return;
  }
  if (S.list.timer) return;
  S.list.timer = setTimeout(async () => {
    S.list.timer = 0;
    S.list.busy = true;
    try {
      await loadList();
    } catch (e) {
      if (e.status !== 401) notify('Cannot load the processes: ' + e.message, true);
    } finally {
      S.list.busy = false;
      if (S.list.again && S.user) {
        S.list.again = false;
        listSoon(250);
      }
    }
  }, delay);
}


// A state event: show it at once, then fetch the details.
export function applyState(d) {
  const p = S.procs.get(d.id);
  const row = S.rows.get(d.id);
  if (p && row) {
    const now = performance.now();
    const age = (now - p._at) / 1000;
    p.status = d.to;
    p.pid = d.pid === undefined ? null : d.pid;
    p.is_running = d.to === 'running';
    if (d.to === 'running') {
      p.uptime_seconds = 0;
      p.next_run_in_seconds = null;
      p._at = now;
    } else {
      if (p.next_run_in_seconds != null) p.next_run_in_seconds -= age;
      if (p.uptime_seconds != null) p.uptime_seconds += age;
      p._at = now;
      if (p.pid === null) {
        p.uptime_seconds = null;
        p.cpu_percent = null;
        p.rss_bytes = null;
      }
    }
    if (d.exit) p.last_exit = Object.assign({}, d.exit, { at: d.at });
    fill(row, p);
  }
  listSoon(100);
}

// A row's button that asks exeio to start, stop, restart or remove.
export async function act(what, id, b) {
  const row = S.rows.get(id);
  if (!row) return;
  const text = b.textContent;
  row.busy = true;
  b.textContent = text + '…';
  fill(row, S.procs.get(id));
  try {
    const r = await call('POST', '/' + what + '/' + enc(id), {});
    notify(r.message || what + ' ' + id);
    if (what === 'remove') dropRow(id);
  } catch (e) {
    if (e.status !== 401) notify(what + ' ' + id + ': ' + e.message, true);
  } finally {
    row.busy = false;
    b.textContent = text;
    if (S.procs.has(id)) fill(row, S.procs.get(id));
  }
  listSoon(0);
}

// Forget every row (the session ended).
export function clearTable() {
  clearTimeout(S.list.timer);
  S.list.timer = 0;
  S.list.again = false;
  S.procs.clear();
  S.rows.clear();
  $('rows').textContent = '';
}

// Keep the uptime and next-run cells counting between updates.
export function tick() {
  if (!S.user) return;
  const now = performance.now();
  for (const [id, row] of S.rows) {
    const p = S.procs.get(id);
    if (p) timeCells(row, p, now);
  }
}
