// The log viewer: the live tail of one process's log as streamed text, older
// lines page by page as the view scrolls up, a stream filter, a search that
// marks what it finds, and a pause. Lines are only ever put in the page as
// text, never parsed as HTML.

import { $, safe } from './dom.js';
import { S } from './state.js';
import { ApiError, call, enc, stream } from './api.js';

const LOG_PAGE = 200; // lines per older page and of the live tail
const LOG_CAP = 5000; // live lines kept in the page (older ones are dropped)

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

export function openLogs(id) {
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

export function closeLogs() {
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
    r = await stream('/logs/' + enc(L.id) + '?' + q, L.ctrl.signal);
  } catch (e) {
    if (e instanceof ApiError) {
      if (e.status !== 401) logInfo(L, e.message);
    } else if (e.name !== 'AbortError') {
      logInfo(L, 'cannot follow the log: ' + e.message);
    }
    return;
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


// The process of the open view was removed: say so (its lines stay).
export function processRemoved(id) {
  if (S.log && S.log.id === id) {
    S.log.removed = true;
    logInfo(S.log);
  }
}

// The viewer's controls.
export function wireLogs() {
  $('log-close').addEventListener('click', closeLogs);
  $('log-stream').addEventListener('change', () => S.log && openLogs(S.log.id));
  $('log-search').addEventListener('input', search);
  $('log-pause').addEventListener('click', () => S.log && setPause(S.log, !S.log.paused));
  $('log-older').addEventListener('click', safe(() => loadOlder(S.log)));
  $('log-view').addEventListener('scroll', () => {
    if ($('log-view').scrollTop < 60) safe(loadOlder)(S.log);
  });
}
