/**
 * bench/results/fanout.svg: propose-to-receive latency (p50, p99) against the number of subscribers, with
 * the 25 ms bar. Called by bench/fanout.ts after a run; `node dist/bench/fanout-plot.js FILE` redraws it
 * from a results file.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

export interface FanoutRun {
  started: number;
  latencyMs: { p50: number; p99: number };
}

const BAR_MS = 25;

export function fanoutSvg(runs: readonly FanoutRun[]): string {
  const W = 520;
  const H = 320;
  const left = 56;
  const right = W - 20;
  const top = 36;
  const bottom = H - 60;
  const xs = runs.map((r) => r.started);
  const xMax = Math.max(...xs) * 1.05;
  const yMax = Math.max(BAR_MS * 1.2, ...runs.map((r) => r.latencyMs.p99)) * 1.1;
  const x = (v: number): number => left + (v / xMax) * (right - left);
  const y = (v: number): number => bottom - (v / yMax) * (bottom - top);
  const step = yMax > 100 ? 25 : 10;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="13">propose-to-receive latency by WebSocket subscribers (one space)</text>`,
  ];
  for (let v = 0; v <= yMax; v += step) {
    parts.push(`<line x1="${left}" x2="${right}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`, `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v}</text>`);
  }
  for (const v of xs) parts.push(`<text x="${x(v)}" y="${bottom + 16}" text-anchor="middle">${v}</text>`);
  parts.push(
    `<line x1="${left}" x2="${right}" y1="${y(BAR_MS)}" y2="${y(BAR_MS)}" stroke="#c0392b" stroke-dasharray="5 4"/>`,
    `<text x="${right}" y="${y(BAR_MS) - 5}" text-anchor="end" fill="#c0392b">p99 bar ${BAR_MS} ms</text>`,
    `<text x="${(left + right) / 2}" y="${bottom + 34}" text-anchor="middle">subscribers</text>`,
    `<text x="16" y="${(top + bottom) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(top + bottom) / 2})">ms</text>`,
  );
  for (const [key, color] of [['p50', '#2e86c1'], ['p99', '#d35400']] as const) {
    const pts = runs.map((r) => `${x(r.started)},${y(r.latencyMs[key])}`).join(' ');
    parts.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const r of runs) parts.push(`<circle cx="${x(r.started)}" cy="${y(r.latencyMs[key])}" r="3" fill="${color}"/>`);
  }
  parts.push(
    `<rect x="${left + 8}" y="${H - 22}" width="12" height="3" fill="#2e86c1"/><text x="${left + 24}" y="${H - 17}">p50</text>`,
    `<rect x="${left + 64}" y="${H - 22}" width="12" height="3" fill="#d35400"/><text x="${left + 80}" y="${H - 17}">p99</text>`,
    '</svg>',
  );
  return parts.join('\n');
}

export async function writeFanoutSvg(runs: readonly FanoutRun[], path = 'bench/results/fanout.svg'): Promise<void> {
  await writeFile(path, fanoutSvg(runs) + '\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2] ?? 'bench/results/fanout-2026-11-22.json';
  const { runs } = JSON.parse(await readFile(file, 'utf8')) as { runs: FanoutRun[] };
  await writeFanoutSvg(runs);
}
