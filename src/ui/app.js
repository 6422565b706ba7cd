// exeio dashboard: plain JavaScript, no build step, no dependencies.
//
// It logs in with POST /session (an HttpOnly cookie; the key is never kept),
// lists processes with GET /list, keeps the table live from GET /events
// (EventSource; no polling), follows logs with a streamed fetch, and sends
// every change with `X-Exeio-CSRF: 1`. Text from processes and the API is
// only ever put in the page with textContent, never parsed as HTML.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const RANK = { read: 1, operate: 2, admin: 3 };
  const LOG_PAGE = 200; // lines per older page and of the live tail
  const LOG_CAP = 5000; // live lines kept in the page (older ones are dropped)
  const SIGNALS = {
    1: 'HUP', 2: 'INT', 3: 'QUIT', 4: 'ILL', 6: 'ABRT', 7: 'BUS', 8: 'FPE', 9: 'KILL', 10: 'USR1',
    11: 'SEGV', 12: 'USR2', 13: 'PIPE', 14: 'ALRM', 15: 'TERM', 24: 'XCPU', 25: 'XFSZ',
  };
  const LABELS = { manually_stopped: 'stopped by hand' };
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

  const S = {
    user: null, // {name, role}, in memory only
    procs: new Map(), // id -> process object, with _at: when it was rendered (performance.now())
    rows: new Map(), // id -> row parts
    es: null, // the EventSource
    log: null, // the open log view
    editing: null, // {id, base} while the edit dialog is open
    list: { timer: 0, busy: false, again: false },
  };

  const can = (role) => !!S.user && (RANK[S.user.role] || 0) >= RANK[role];
  const enc = encodeURIComponent;

  // Run an async handler; report what it throws instead of leaving it unhandled.
  const safe = (f) => (...a) => {
    Promise.resolve()
      .then(() => f(...a))
      .catch((e) => notify(String((e && e.message) || e), true));
  };

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || (status ? 'HTTP ' + status : 'exeio did not answer'));
      this.status = status;
      this.body = body || {};
    }
  }

  // One API call. Changes carry the CSRF header; 401 ends the session
  // (except for the log-in calls, which expect it).
  async function call(method, path, body, opts) {
    const init = {
      method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' },
    };
    if (method !== 'GET') {
      init.headers['Content-Type'] = 'application/json';
      init.headers['X-Exeio-CSRF'] = '1';
      init.body = JSON.stringify(body || {});
    }
    let r;
    try {
      r = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, { message: 'exeio did not answer (' + e.message + ')' });
    }
    let data = null;
    try {
      data = await r.json();
    } catch (_) {
      data = null;
    }
    if (r.status === 401 && !(opts && opts.login)) sessionLost();
    if (!r.ok || (data && data.success === false)) throw new ApiError(r.status, data);
    return data;
  }

  // ---- formatting -------------------------------------------------------

  function duration(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  }

  function bytes(n) {
    if (n === null || n === undefined) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
  }

  function when(iso) {
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString();
  }

  function quote(a) {
    return /^[\w@%+=:,./-]+$/.test(a) ? a : "'" + a.replace(/'/g, "'\\''") + "'";
  }

  function exitText(p) {
    const e = p.last_exit;
    if (!e) return '—';
    let t;
    if (e.signal !== undefined && e.signal !== null) {
      t = 'signal ' + e.signal + (SIGNALS[e.signal] ? ' (' + SIGNALS[e.signal] + ')' : '');
    } else {
      t = 'exit ' + e.code + (e.code === 0 ? ' (ok)' : ' (failure)');
    }
    if (p.last_result && p.last_result !== 'ok' && p.last_result !== 'failed') {
      t += ', ' + p.last_result.replace(/_/g, ' ');
    }
    return t;
  }

  // ---- notices ----------------------------------------------------------

  let noticeTimer = 0;
  function notify(msg, isError) {
    const n = $('notice');
    n.textContent = msg;
    n.className = 'notice' + (isError ? ' error' : '');
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => (n.hidden = true), isError ? 10000 : 4000);
  }

  function setError(el, msg) {
    el.textContent = msg || '';
    el.hidden = !msg;
  }

  // ---- session ----------------------------------------------------------

  function showLogin(message) {
    teardown();
    for (const id of ['procs', 'logs', 'who', 'logout', 'conn']) $(id).hidden = true;
    $('login').hidden = false;
    setError($('login-error'), message);
    $('key').focus();
  }

  function sessionLost() {
    if (S.user) showLogin('Your session has ended: log in again.');
  }

  function teardown() {
    S.user = null;
    closeEvents();
    closeLogs();
    clearTimeout(S.list.timer);
    S.list.timer = 0;
    S.list.again = false;
    S.procs.clear();
    S.rows.clear();
    $('rows').textContent = '';
    if ($('edit').open) $('edit').close();
    if ($('confirm').open) $('confirm').close();
  }

  function begin(user) {
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

  async function login(ev) {
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

  async function logout() {
    try {
      await call('POST', '/session/logout', {}, { login: true });
    } catch (_) {
      // The session is gone either way on this page.
    }
    showLogin('');
    notify('Logged out.');
  }

  // ---- the process table -------------------------------------------------

  function updateCount() {
    // The Health column only when a process has a probe.
    const probed = [...S.procs.values()].some((p) => p.health && p.health !== 'none');
    $('table').classList.toggle('no-health', !probed);
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
    th.append(name, cmd);
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
  }

  function upsert(p, at) {
    p._at = at;
    S.procs.set(p.id, p);
    fill(S.rows.get(p.id) || makeRow(p.id), p);
  }

  function dropRow(id) {
    const row = S.rows.get(id);
    if (row) row.tr.remove();
    S.rows.delete(id);
    S.procs.delete(id);
    updateCount();
    if (S.log && S.log.id === id) {
      S.log.removed = true;
      logInfo(S.log);
    }
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
  function listSoon(delay) {
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

  // The health of a process with a probe (text only), its last failure as the title.
  function healthCell(td, p) {
    const h = p.health && p.health !== 'none' ? p.health : '';
    td.textContent = h || '—';
    td.dataset.health = h;
    td.title = h && p.health_message ? 'last failure: ' + p.health_message : '';
  }

  // A health event: show it at once.
  function applyHealth(d) {
    const p = S.procs.get(d.id);
    const row = S.rows.get(d.id);
    if (!p || !row) return;
    p.health = d.to;
    if (d.message) p.health_message = d.message;
    healthCell(row.health, p);
    updateCount();
  }

  // A state event: show it at once, then fetch the details.
  function applyState(d) {
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

  async function act(what, id, b) {
    if (what === 'logs') return openLogs(id);
    if (what === 'edit') return openEdit(id);
    if (what === 'remove' && !(await confirmRemove(id))) return;
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

  // ---- live events -------------------------------------------------------

  function setConn(live) {
    const c = $('conn');
    c.hidden = false;
    c.textContent = live ? 'live' : 'reconnecting…';
    c.className = 'conn' + (live ? ' live' : '');
    c.title = live ? 'Changes show as they happen' : 'The event stream is down; it reconnects by itself';
  }

  function closeEvents() {
    if (S.es) S.es.close();
    S.es = null;
  }

  function openEvents() {
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

  // ---- logs --------------------------------------------------------------

  const LINE_KIND = /^\[[^\]]*\] (?:RUN#\d+ )?(STDERR|SYSTEM):/;

  function searchText() {
    return $('log-search').value.trim().toLowerCase();
  }

  function paint(el, text, q) {
    el.textContent = '';
    const low = text.toLowerCase();
    if (!q || low.length !== text.length) {
      el.textContent = text;
    } else {
      let i = 0;
      for (let j = low.indexOf(q); j !== -1; j = low.indexOf(q, i)) {
        if (j > i) el.append(text.slice(i, j));
        const m = document.createElement('mark');
        m.textContent = text.slice(j, j + q.length);
        el.append(m);
        i = j + q.length;
      }
      if (i < text.length) el.append(text.slice(i));
    }
    el.hidden = !!q && !low.includes(q);
  }

  function lineEl(text, q) {
    const el = document.createElement('div');
    const kind = LINE_KIND.exec(text);
    el.className = 'line' + (kind ? (kind[1] === 'STDERR' ? ' err' : ' sys') : '');
    paint(el, text, q);
    return el;
  }

  function logInfo(L, msg) {
    if (S.log !== L) return;
    if (msg !== undefined) L.msg = msg;
    const q = searchText();
    const parts = [L.lines.length + ' lines loaded'];
    if (q) parts.push(L.lines.filter((x) => !x.el.hidden).length + ' match “' + q + '”');
    if (L.paused) parts.push('paused, ' + L.pending.length + ' new lines waiting');
    if (L.atStart) parts.push('start of the log');
    if (L.removed) parts.push('the process was removed');
    else if (L.msg) parts.push(L.msg);
    $('log-info').textContent = parts.join(' · ');
    $('log-older').disabled = L.atStart || L.older;
  }

  function openLogs(id) {
    closeLogs();
    const L = {
      id,
      stream: $('log-stream').value,
      ctrl: new AbortController(),
      lines: [], // {t, el}, oldest first
      pending: [], // lines received while paused
      paused: false,
      atStart: false,
      older: false,
      removed: false,
      msg: '',
    };
    S.log = L;
    $('logs').hidden = false;
    $('logs-title').textContent = 'Logs: ' + id;
    $('log-lines').textContent = '';
    setPause(L, false);
    follow(L).catch((e) => logInfo(L, 'cannot follow the log: ' + e.message));
    $('logs').scrollIntoView({ block: 'nearest' });
    $('logs-title').focus({ preventScroll: true });
  }

  function closeLogs() {
    if (S.log) S.log.ctrl.abort();
    S.log = null;
    $('logs').hidden = true;
  }

  // The live tail: the last lines, then every new one, as streamed text.
  async function follow(L) {
    const q = new URLSearchParams({ follow: 'true', tail: String(LOG_PAGE) });
    if (L.stream) q.set('stream', L.stream);
    logInfo(L, 'connecting…');
    let r;
    try {
      r = await fetch('/logs/' + enc(L.id) + '?' + q, {
        credentials: 'same-origin',
        cache: 'no-store',
        signal: L.ctrl.signal,
      });
    } catch (e) {
      if (e.name !== 'AbortError') logInfo(L, 'cannot follow the log: ' + e.message);
      return;
    }
    if (r.status === 401) return sessionLost();
    if (!r.ok) {
      let m = 'HTTP ' + r.status;
      try {
        m = (await r.json()).message || m;
      } catch (_) {
        // not JSON
      }
      return logInfo(L, m);
    }
    logInfo(L, 'following');
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let rest = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        rest += dec.decode(value, { stream: true });
        const parts = rest.split('\n');
        rest = parts.pop();
        if (parts.length) received(L, parts);
      }
      rest += dec.decode();
      if (rest) received(L, [rest]);
      logInfo(L, 'the stream ended');
    } catch (e) {
      if (e.name !== 'AbortError') logInfo(L, 'the stream broke: ' + e.message);
    }
  }

  function received(L, lines) {
    if (S.log !== L) return;
    lines = lines.map((t) => (t.endsWith('\r') ? t.slice(0, -1) : t));
    if (L.paused) {
      L.pending.push(...lines);
      return logInfo(L);
    }
    append(L, lines);
  }

  function append(L, lines) {
    const view = $('log-view');
    const stick = view.scrollHeight - view.scrollTop - view.clientHeight < 40;
    const q = searchText();
    const frag = document.createDocumentFragment();
    for (const t of lines) {
      const el = lineEl(t, q);
      frag.append(el);
      L.lines.push({ t, el });
    }
    $('log-lines').append(frag);
    if (L.lines.length > LOG_CAP) {
      for (const x of L.lines.splice(0, L.lines.length - LOG_CAP)) x.el.remove();
      L.atStart = false;
    }
    if (stick) view.scrollTop = view.scrollHeight;
    logInfo(L);
  }

  function prepend(L, lines) {
    const view = $('log-view');
    const box = $('log-lines');
    const before = view.scrollHeight;
    const q = searchText();
    const frag = document.createDocumentFragment();
    const added = lines.map((t) => ({ t, el: lineEl(t, q) }));
    for (const x of added) frag.append(x.el);
    box.insertBefore(frag, box.firstChild);
    L.lines.unshift(...added);
    view.scrollTop += view.scrollHeight - before;
  }

  // The lines of `page` (oldest first) that are older than what is shown.
  // Pages are counted from the newest line, and lines keep arriving, so a
  // page may overlap what is loaded: find our oldest lines in it.
  function olderThanLoaded(page, loaded) {
    if (!loaded.length) return page;
    const first = loaded[0];
    for (let i = 0; i < page.length; i++) {
      if (page[i] !== first) continue;
      const n = Math.min(page.length - i, loaded.length, 20);
      let same = true;
      for (let k = 1; k < n && same; k++) same = page[i + k] === loaded[k];
      if (same) return page.slice(0, i);
    }
    // No overlap with our oldest line: either the page is wholly older
    // (the usual case) or wholly among the loaded lines (then skip it).
    return loaded.includes(page[page.length - 1]) ? [] : page;
  }

  async function loadOlder(L) {
    if (!L || L.older || L.atStart || S.log !== L) return;
    L.older = true;
    logInfo(L, 'loading older lines…');
    try {
      const have = L.lines.length + L.pending.length;
      const first = Math.floor(have / LOG_PAGE) + 1;
      for (let page = first; page < first + 3; page++) {
        const q = new URLSearchParams({ page: String(page), page_size: String(LOG_PAGE) });
        if (L.stream) q.set('stream', L.stream);
        const r = await call('GET', '/logs/' + enc(L.id) + '?' + q);
        if (S.log !== L) return;
        const got = (r.logs || []).slice().reverse();
        const fresh = olderThanLoaded(
          got,
          L.lines.map((x) => x.t),
        );
        if (page * LOG_PAGE >= r.total_lines) L.atStart = true;
        if (fresh.length) prepend(L, fresh);
        if (fresh.length || L.atStart || !got.length) break;
      }
      if (!L.lines.length) L.atStart = true;
      logInfo(L, 'following');
    } catch (e) {
      logInfo(L, 'cannot load older lines: ' + e.message);
    } finally {
      L.older = false;
      logInfo(L);
    }
  }

  function setPause(L, paused) {
    L.paused = paused;
    const b = $('log-pause');
    b.setAttribute('aria-pressed', paused ? 'true' : 'false');
    b.textContent = paused ? 'Resume' : 'Pause';
    if (!paused && L.pending.length) {
      const lines = L.pending;
      L.pending = [];
      append(L, lines);
      const view = $('log-view');
      view.scrollTop = view.scrollHeight;
    }
    logInfo(L);
  }

  let searchTimer = 0;
  function search() {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      const L = S.log;
      if (!L) return;
      const q = searchText();
      for (const x of L.lines) paint(x.el, x.t, q);
      logInfo(L);
    }, 120);
  }

  // ---- add and edit ------------------------------------------------------

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

  function openEdit(id) {
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

  function confirmRemove(id) {
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

  // ---- wiring ------------------------------------------------------------

  function wire() {
    $('login-form').addEventListener('submit', safe(login));
    $('logout').addEventListener('click', safe(logout));
    $('refresh').addEventListener('click', () => listSoon(0));
    $('add').addEventListener('click', () => openEdit(null));
    $('rows').addEventListener(
      'click',
      safe((ev) => {
        const b = ev.target.closest('button[data-act]');
        if (b && !b.disabled) return act(b.dataset.act, b.closest('tr').dataset.id, b);
      }),
    );
    $('log-close').addEventListener('click', closeLogs);
    $('log-stream').addEventListener('change', () => S.log && openLogs(S.log.id));
    $('log-search').addEventListener('input', search);
    $('log-pause').addEventListener('click', () => S.log && setPause(S.log, !S.log.paused));
    $('log-older').addEventListener('click', safe(() => loadOlder(S.log)));
    $('log-view').addEventListener('scroll', () => {
      if ($('log-view').scrollTop < 60) safe(loadOlder)(S.log);
    });
    $('edit-form').addEventListener('submit', safe(save));
    $('edit-cancel').addEventListener('click', () => $('edit').close());
    field('periodic').addEventListener('change', syncJobFields);
    setInterval(() => {
      if (!S.user) return;
      const now = performance.now();
      for (const [id, row] of S.rows) {
        const p = S.procs.get(id);
        if (p) timeCells(row, p, now);
      }
    }, 1000);
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
})();
