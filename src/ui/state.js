// What the page knows, shared by every module: who is logged in (in memory
// only), the processes shown and what is open.

const RANK = { read: 1, operate: 2, admin: 3 };

export const S = {
  user: null, // {name, role}, in memory only
  procs: new Map(), // id -> process object, with _at: when it was rendered (performance.now())
  rows: new Map(), // id -> row parts
  es: null, // the EventSource
  log: null, // the open log view
  editing: null, // {id, base} while the edit dialog is open
  list: { timer: 0, busy: false, again: false },
};

// Whether the logged-in user holds `role` (or a stronger one).
export const can = (role) => !!S.user && (RANK[S.user.role] || 0) >= RANK[role];
