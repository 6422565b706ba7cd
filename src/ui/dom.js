// Page helpers: find an element, show a message in the notice bar or next
// to a field, and run an event handler without losing what it throws.

export const $ = (id) => document.getElementById(id);

let noticeTimer = 0;

// A short message at the top of the page (an error stays longer).
export function notify(msg, isError) {
  const n = $('notice');
  n.textContent = msg;
  n.className = 'notice' + (isError ? ' error' : '');
  n.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (n.hidden = true), isError ? 10000 : 4000);
}

// Show `msg` in an error box; hide the box when there is none.
export function setError(el, msg) {
  el.textContent = msg || '';
  el.hidden = !msg;
}

// Run an async handler; report what it throws instead of leaving it unhandled.
export const safe = (f) => (...a) => {
  Promise.resolve()
    .then(() => f(...a))
    .catch((e) => notify(String((e && e.message) || e), true));
};
