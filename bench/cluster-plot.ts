/**
 * bench/results/cluster.svg: left, propose-to-receive latency (p50, p99, max) of each fan-out topology with
 * the cluster bar (2x the single node's p99); right, the time from each owner kill to telemetry from the
 * new owner, with the lease TTL and the bar (TTL + 1 s). Called by bench/cluster.ts after a run;
 * `node dist/bench/cluster-plot.js FILE` redraws it from a results file.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

export interface PlotFanout {
  label: string;
  latencyMs: { p50: number; p99: number; max: number };
}

export interface PlotKill {
  round: number;
  /** Kill to the first telemetry frame of the new owner on any surviving node (null: none came). */
  firstMs: number | null;
  /** Kill to telemetry on every surviving node's reader. */
  allMs: number | null;
}

export interface PlotInput {
  subscribers: number;
  fanout: PlotFanout[];
  /** The cluster bar: 2x the single node's p99. */
  fanoutBarMs: number;
  kills: PlotKill[];
  ttlMs: number;
  failoverBarMs: number;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const niceStep = (max: number): number => [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000].find((s) => max / s <= 8) ?? 5000;

export function clusterSvg(p: PlotInput): string {
  const W = 900;
  const H = 360;
  const top = 52;
  const bottom = H - 86;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
  ];

  // Left: grouped bars per topology.
  {
    const left = 50;
    const right = 440;
    const yMax = Math.max(p.fanoutBarMs * 1.15, ...p.fanout.map((f) => f.latencyMs.max)) * 1.08;
    const y = (v: number): number => bottom - (v / yMax) * (bottom - top);
    const step = niceStep(yMax);
    parts.push(`<text x="${(left + right) / 2}" y="18" text-anchor="middle" font-size="13">fan-out: propose-to-receive latency, ${p.subscribers} subscribers</text>`);
    for (let v = 0; v <= yMax; v += step) {
      parts.push(`<line x1="${left}" x2="${right}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`, `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v}</text>`);
    }
    const keys = [['p50', '#2e86c1'], ['p99', '#d35400'], ['max', '#7f8c8d']] as const;
    const groupW = (right - left) / Math.max(1, p.fanout.length);
    const barW = Math.min(26, (groupW - 16) / keys.length);
    p.fanout.forEach((f, gi) => {
      const x0 = left + gi * groupW + (groupW - barW * keys.length) / 2;
      keys.forEach(([key, color], ki) => {
        const v = f.latencyMs[key];
        parts.push(`<rect x="${x0 + ki * barW}" y="${y(v)}" width="${barW - 2}" height="${bottom - y(v)}" fill="${color}"/>`);
        parts.push(`<text x="${x0 + ki * barW + (barW - 2) / 2}" y="${y(v) - 3}" text-anchor="middle" font-size="9">${Math.round(v)}</text>`);
      });
      const lines = f.label.split('\n');
      lines.forEach((line, li) => parts.push(`<text x="${left + gi * groupW + groupW / 2}" y="${bottom + 15 + li * 12}" text-anchor="middle">${esc(line)}</text>`));
    });
    parts.push(
      `<line x1="${left}" x2="${right}" y1="${y(p.fanoutBarMs)}" y2="${y(p.fanoutBarMs)}" stroke="#c0392b" stroke-dasharray="5 4"/>`,
      // Above the plot: at the line's height the label would run into the bars.
      `<text x="${right}" y="${top - 8}" text-anchor="end" fill="#c0392b">dashed: bar, 2 × single-node p99 = ${p.fanoutBarMs.toFixed(1)} ms</text>`,
      `<text x="14" y="${(top + bottom) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(top + bottom) / 2})">ms</text>`,
    );
    keys.forEach(([key, color], ki) => parts.push(`<rect x="${left + ki * 60}" y="${H - 18}" width="12" height="8" fill="${color}"/><text x="${left + ki * 60 + 16}" y="${H - 10}">${key}</text>`));
  }

  // Right: one pair of bars per kill.
  {
    const left = 510;
    const right = W - 20;
    const values = p.kills.flatMap((k) => [k.firstMs ?? 0, k.allMs ?? 0]);
    const yMax = Math.max(p.failoverBarMs * 1.15, ...values) * 1.08;
    const y = (v: number): number => bottom - (v / yMax) * (bottom - top);
    const step = niceStep(yMax);
    parts.push(`<text x="${(left + right) / 2}" y="18" text-anchor="middle" font-size="13">failover: owner SIGKILL to telemetry from the new owner</text>`);
    for (let v = 0; v <= yMax; v += step) {
      parts.push(`<line x1="${left}" x2="${right}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`, `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v}</text>`);
    }
    const groupW = (right - left) / Math.max(1, p.kills.length);
    const barW = Math.min(14, (groupW - 4) / 2);
    p.kills.forEach((k, i) => {
      const x0 = left + i * groupW + (groupW - 2 * barW) / 2;
      for (const [j, v, color] of [[0, k.firstMs, '#27ae60'], [1, k.allMs, '#8e44ad']] as const) {
        if (v === null) parts.push(`<text x="${x0 + j * barW + barW / 2}" y="${bottom - 4}" text-anchor="middle" fill="#c0392b">×</text>`);
        else parts.push(`<rect x="${x0 + j * barW}" y="${y(v)}" width="${barW - 1}" height="${bottom - y(v)}" fill="${color}"/>`);
      }
      parts.push(`<text x="${left + i * groupW + groupW / 2}" y="${bottom + 15}" text-anchor="middle">${k.round}</text>`);
    });
    parts.push(
      `<line x1="${left}" x2="${right}" y1="${y(p.ttlMs)}" y2="${y(p.ttlMs)}" stroke="#555" stroke-dasharray="2 3"/>`,
      `<text x="${left + 4}" y="${y(p.ttlMs) - 4}" fill="#555">lease TTL ${p.ttlMs} ms</text>`,
      `<line x1="${left}" x2="${right}" y1="${y(p.failoverBarMs)}" y2="${y(p.failoverBarMs)}" stroke="#c0392b" stroke-dasharray="5 4"/>`,
      `<text x="${right}" y="${y(p.failoverBarMs) - 5}" text-anchor="end" fill="#c0392b">bar: TTL + 1 s = ${p.failoverBarMs} ms</text>`,
      `<text x="${(left + right) / 2}" y="${bottom + 30}" text-anchor="middle">kill</text>`,
      `<text x="${left - 40}" y="${(top + bottom) / 2}" text-anchor="middle" transform="rotate(-90 ${left - 40} ${(top + bottom) / 2})">ms</text>`,
      `<rect x="${left}" y="${H - 18}" width="12" height="8" fill="#27ae60"/><text x="${left + 16}" y="${H - 10}">first surviving node</text>`,
      `<rect x="${left + 140}" y="${H - 18}" width="12" height="8" fill="#8e44ad"/><text x="${left + 156}" y="${H - 10}">every surviving node</text>`,
    );
  }
  parts.push('</svg>');
  return parts.join('\n');
}

export async function writeClusterSvg(input: PlotInput, path = 'bench/results/cluster.svg'): Promise<void> {
  await writeFile(path, clusterSvg(input) + '\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) throw new Error('usage: node dist/bench/cluster-plot.js bench/results/cluster-DATE.json');
  const { plot } = JSON.parse(await readFile(file, 'utf8')) as { plot: PlotInput };
  await writeClusterSvg(plot);
}
