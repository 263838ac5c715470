/** Plain-text rendering of a run result for terminals. */
import type { HqeRunResult } from '../sim/run.js';

const METRICS = ['resonanceStrength', 'coherence', 'entropy', 'locality', 'dominance'] as const;

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('   ')).join('\n');
}

export function formatRun(r: HqeRunResult): string {
  const lines: string[] = [];
  lines.push(`status     ${r.status}`);
  lines.push(`steps      ${r.steps}${r.restarts > 0 ? ` (${r.restarts} restart${r.restarts > 1 ? 's' : ''})` : ''}`);
  lines.push(`seed       ${r.seed}`);
  lines.push(`backend    ${r.adapter}`);
  lines.push(`elapsed    ${(r.elapsedMs / 1000).toFixed(2)} s`);
  for (const w of r.warnings) lines.push(`warning    ${w}`);
  lines.push('');
  const sampled = r.snapshots.length > 6 ? [...r.snapshots.slice(0, 3), ...r.snapshots.slice(-3)] : r.snapshots;
  const rows = [['metric', 'final', ...sampled.map((s) => `step ${s.step}`)]];
  for (const m of METRICS) rows.push([m, r.finalMetrics[m].toFixed(4), ...sampled.map((s) => s.metrics[m].toFixed(4))]);
  rows.push(['plateauDetected', String(r.finalMetrics.plateauDetected), ...sampled.map((s) => String(s.metrics.plateauDetected))]);
  lines.push(table(rows));
  if (r.events.length > 0) {
    lines.push('');
    lines.push('events     ' + r.events.map((e) => `${e.type}@${e.step}`).join(', '));
  }
  return lines.join('\n') + '\n';
}
