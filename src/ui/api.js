// Talking to exeio: every request goes through here. Calls carry the
// session cookie; changes carry `X-Exeio-CSRF: 1`; a 401 ends the session
// (except for the log-in calls, which expect it).

export const enc = encodeURIComponent;

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || (status ? 'HTTP ' + status : 'exeio did not answer'));
    this.status = status;
    this.body = body || {};
  }
}

let lost = () => {};

// What to do when exeio says the session is gone (set once by the page).
export function onSessionLost(f) {
  lost = f;
}

// One API call, answered with JSON.
export async function call(method, path, body, opts) {
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
  if (r.status === 401 && !(opts && opts.login)) lost();
  if (!r.ok || (data && data.success === false)) throw new ApiError(r.status, data);
  return data;
}

// A streamed GET (the body is read as it comes): the response when it is a
// success, else an ApiError. Aborting `signal` rejects with an AbortError.
export async function stream(path, signal) {
  const r = await fetch(path, { credentials: 'same-origin', cache: 'no-store', signal });
  if (r.ok) return r;
  if (r.status === 401) lost();
  let data = null;
  try {
    data = await r.json();
  } catch (_) {
    // not JSON
  }
  throw new ApiError(r.status, data);
}
