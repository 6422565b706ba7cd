// Health probes in the table: the Health column shows only when a process
// has a probe, and a health event shows at once.

import { $ } from './dom.js';
import { S } from './state.js';

// The health of a process with a probe (text only), its last failure as the title.
export function healthCell(td, p) {
  const h = p.health && p.health !== 'none' ? p.health : '';
  td.textContent = h || '—';
  td.dataset.health = h;
  td.title = h && p.health_message ? 'last failure: ' + p.health_message : '';
}

// The Health column only when a process has a probe.
export function healthColumn() {
  const probed = [...S.procs.values()].some((p) => p.health && p.health !== 'none');
  $('table').classList.toggle('no-health', !probed);
}

// A health event: show it at once.
export function applyHealth(d) {
  const p = S.procs.get(d.id);
  const row = S.rows.get(d.id);
  if (!p || !row) return;
  p.health = d.to;
  if (d.message) p.health_message = d.message;
  healthCell(row.health, p);
  healthColumn();
}
