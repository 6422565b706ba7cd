// Releases (SPEC 4c): the row of a process that takes releases (its config
// uses `{release}`, or it has one) shows its live release (the process
// object's `release`) under its name; admins get Deploy (a .tar.gz, .tgz or .tar
// chosen here, sent as the body of POST /deploy/{id} with fetch, the file
// streamed by the browser) and Roll back (after a confirmation). Both wait
// for exeio's health gate and show its outcome: live, or rolled back and why.

import { $, notify, safe, setError } from './dom.js';
import { ApiError, call, enc } from './api.js';
import { listSoon } from './table.js';

// Whether a process takes releases: it has one, or its config uses {release}.
function takesReleases(p) {
  if (p.release) return true;
  const words = [p.command, p.working_dir].concat(p.args || [], Object.values(p.env || {}));
  return words.some((w) => typeof w === 'string' && w.includes('{release}'));
}

// The release line under a process's name (hidden for other processes).
export function releaseText(line, el, p) {
  line.hidden = !takesReleases(p);
  el.textContent = p.release ? 'release ' + p.release : 'no release yet';
  el.title = p.release ? 'the live release' : '';
}

// What exeio said of a deploy or rollback, as one line.
function outcome(id, status, data) {
  if (status === 200 && data && data.release) {
    return [
      id + ': release ' + data.release + ' is live' + (data.previous ? ' (was ' + data.previous + ')' : ''),
      false,
    ];
  }
  const msg = (data && data.message) || (status ? 'HTTP ' + status : 'exeio did not answer');
  return [id + ': ' + msg, true];
}

// POST the chosen file as the body, as it is.
async function upload(id, file) {
  const lower = file.name.toLowerCase();
  const type = lower.endsWith('.tar') ? 'application/x-tar' : 'application/gzip';
  let r;
  try {
    r = await fetch('/deploy/' + enc(id), {
      method: 'POST',
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json', 'Content-Type': type, 'X-Exeio-CSRF': '1' },
      body: file,
    });
  } catch (e) {
    return outcome(id, 0, { message: 'exeio did not answer (' + e.message + ')' });
  }
  let data = null;
  try {
    data = await r.json();
  } catch (_) {
    data = null;
  }
  if (r.status === 401) {
    // The session is gone: let the shared call path end it.
    await call('GET', '/session').catch(() => {});
  }
  return outcome(id, r.status, data);
}

let deploying = null; // the id the dialog is for

export function openDeploy(id) {
  deploying = id;
  const d = $('deploy');
  $('deploy-title').textContent = 'Deploy a release of ' + id;
  $('deploy-form').reset();
  $('deploy-result').className = '';
  setError($('deploy-result'), '');
  $('deploy-send').disabled = false;
  d.showModal();
  $('deploy-file').focus();
}

async function sendDeploy(ev) {
  ev.preventDefault();
  const id = deploying;
  const file = $('deploy-file').files[0];
  const result = $('deploy-result');
  if (!file) {
    result.className = 'field-error';
    return setError(result, 'Choose a .tar.gz, .tgz or .tar file first.');
  }
  if (!/\.(tar\.gz|tgz|tar)$/i.test(file.name)) {
    result.className = 'field-error';
    return setError(result, file.name + ' is not a .tar.gz, .tgz or .tar file.');
  }
  $('deploy-send').disabled = true;
  result.className = 'muted';
  setError(result, 'Uploading ' + file.name + ', then waiting until the release is healthy…');
  try {
    const [text, bad] = await upload(id, file);
    result.className = bad ? 'field-error' : 'ok';
    setError(result, text);
    notify(text, bad);
  } finally {
    $('deploy-send').disabled = false;
    listSoon(0);
  }
}

// Ask before a rollback; the confirmation dialog is shared with removal.
function confirmRollback(id, to) {
  return new Promise((resolve) => {
    const d = $('confirm');
    const yes = $('confirm-yes');
    const label = yes.textContent;
    $('confirm-text').textContent =
      'Roll ' + id + ' back to ' + (to ? 'release ' + to : 'the last good release') +
      '? It is restarted on it and must become healthy.';
    yes.textContent = 'Roll back';
    let settled = false;
    const done = (ok) => {
      if (settled) return;
      settled = true;
      yes.removeEventListener('click', onYes);
      $('confirm-no').removeEventListener('click', onNo);
      d.removeEventListener('close', onNo);
      if (d.open) d.close();
      yes.textContent = label;
      resolve(ok);
    };
    const onYes = () => done(true);
    const onNo = () => done(false);
    yes.addEventListener('click', onYes);
    $('confirm-no').addEventListener('click', onNo);
    d.addEventListener('close', onNo);
    d.showModal();
    $('confirm-no').focus();
  });
}

export async function rollback(id, b) {
  if (!(await confirmRollback(id, null))) return;
  const text = b.textContent;
  b.disabled = true;
  b.textContent = text + '…';
  try {
    const r = await call('POST', '/rollback/' + enc(id), {});
    notify(outcome(id, 200, r)[0]);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    notify(outcome(id, e.status, e.body)[0], true);
  } finally {
    b.disabled = false;
    b.textContent = text;
    listSoon(0);
  }
}

export function wireDeploy() {
  $('deploy-form').addEventListener('submit', safe(sendDeploy));
  $('deploy-cancel').addEventListener('click', () => $('deploy').close());
}

// Close the dialog (the session ended).
export function closeDeploy() {
  if ($('deploy').open) $('deploy').close();
  deploying = null;
}
