// How figures from the API read in the table: durations, sizes, times,
// command lines and exits. Pure functions of their arguments.

const SIGNALS = {
  1: 'HUP', 2: 'INT', 3: 'QUIT', 4: 'ILL', 6: 'ABRT', 7: 'BUS', 8: 'FPE', 9: 'KILL', 10: 'USR1',
  11: 'SEGV', 12: 'USR2', 13: 'PIPE', 14: 'ALRM', 15: 'TERM', 24: 'XCPU', 25: 'XFSZ',
};

export function duration(s) {
  s = Math.max(0, Math.floor(s));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
}

export function when(iso) {
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

// One argument as a shell would need it.
export function quote(a) {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : "'" + a.replace(/'/g, "'\\''") + "'";
}

export function exitText(p) {
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
