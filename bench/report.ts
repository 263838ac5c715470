/**
 * bench/README.md's engine table and bench/results/engine.svg, from the newest results file of each
 * backend in bench/results.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import type { EngineBenchFile } from './engine.js';
import { replaceResultsSection } from './harness.js';

async function latestPerBackend(dir: string): Promise<Array<{ name: string; file: EngineBenchFile }>> {
  const names = (await readdir(dir)).filter((n) => /^engine-.*\d{4}-\d{2}-\d{2}\.json$/.test(n)).sort();
  const latest = new Map<string, string>();
  for (const n of names) latest.set(n.replace(/-\d{4}-\d{2}-\d{2}\.json$/, ''), n);
  const files = await Promise.all([...latest.values()].map(async (name) => ({ name, file: JSON.parse(await readFile(`${dir}/${name}`, 'utf8')) as EngineBenchFile })));
  // Only the engines' rows (engine-bars-*.json, say, sits beside them).
  return files.filter(({ file }) => file.kind === 'engine');
}

function markdown(results: Array<{ name: string; file: EngineBenchFile }>): string {
  const lines: string[] = [];
  for (const { name, file } of results) {
    lines.push(`### ${file.backend} — ${file.adapter} (${file.date})`, '');
    lines.push(`Host: ${file.host.cpus}, ${file.host.cores} cores, Node ${file.host.node}. File: \`results/${name}\`.`, '');
    lines.push('| k | batch | sim-steps/s | dense GFLOP/s | ticks timed | seconds | slowest repeat |', '|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of file.rows) {
      const slowest = r.repeats ? Math.min(...r.repeats).toFixed(1) : '-';
      lines.push(`| ${r.k} | ${r.batch} | ${r.simStepsPerSecond.toFixed(1)} | ${r.denseGflops.toFixed(3)} | ${r.ticks} | ${r.seconds.toFixed(2)} | ${slowest} |`);
    }
    lines.push('');
  }
  lines.push('![simulation-steps per second by k and batch](results/engine.svg)');
  return lines.join('\n');
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd'];

/** One series of a grouped bar chart: a value per group (a group is a pair of label lines). */
export interface Series {
  label: string;
  values: Map<string, number>;
}

/**
 * Grouped bars on a log scale, one group per key (its two label lines joined by '|'), one colour per
 * series; `notes` writes a line of text above a group (a ratio, say).
 */
export function barChart(title: string, series: Series[], notes: Map<string, string> = new Map()): string {
  const groups = [...new Set(series.flatMap((s) => [...s.values.keys()]))];
  const values = series.flatMap((s) => [...s.values.values()]).filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...values)));
  const hi = Math.ceil(Math.log10(Math.max(...values)));
  // A group is as wide as its bars, or its longest label line (about 6.5 px a character at 11 px).
  const gw = Math.max(series.length * 14 + 16, Math.ceil(6.5 * Math.max(...groups.flatMap((g) => g.split('|').map((l) => l.length)))) + 8);
  const W = Math.max(80 + groups.length * gw, 80 + series.length * 170);
  const H = 340;
  const plotTop = 30;
  const plotBottom = H - 70;
  const y = (v: number): number => plotBottom - ((Math.log10(v) - lo) / Math.max(1, hi - lo)) * (plotBottom - plotTop);
  const esc = (t: string): string => t.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="16" text-anchor="middle" font-size="13">${esc(title)}</text>`,
  ];
  for (let e = lo; e <= hi; e++) {
    parts.push(`<line x1="60" x2="${W - 10}" y1="${y(10 ** e)}" y2="${y(10 ** e)}" stroke="#ddd"/>`);
    parts.push(`<text x="55" y="${y(10 ** e) + 4}" text-anchor="end">1e${e}</text>`);
  }
  groups.forEach((g, gi) => {
    const [line1, line2] = g.split('|');
    const x0 = 70 + gi * gw + (gw - series.length * 14 - 16) / 2;
    const mid = x0 + (series.length * 14) / 2;
    let top = plotBottom;
    series.forEach((s, si) => {
      const v = s.values.get(g);
      if (v === undefined || v <= 0) return;
      top = Math.min(top, y(v));
      parts.push(`<rect x="${x0 + si * 14}" y="${y(v)}" width="12" height="${plotBottom - y(v)}" fill="${COLORS[si % COLORS.length]}"/>`);
    });
    const note = notes.get(g);
    if (note) parts.push(`<text x="${mid}" y="${top - 4}" text-anchor="middle" font-size="10">${esc(note)}</text>`);
    parts.push(`<text x="${mid}" y="${plotBottom + 14}" text-anchor="middle">${esc(line1 ?? '')}</text>`);
    parts.push(`<text x="${mid}" y="${plotBottom + 27}" text-anchor="middle">${esc(line2 ?? '')}</text>`);
  });
  series.forEach((s, si) => {
    const x = 70 + si * 170;
    parts.push(`<rect x="${x}" y="${H - 24}" width="12" height="12" fill="${COLORS[si % COLORS.length]}"/>`);
    parts.push(`<text x="${x + 16}" y="${H - 14}">${esc(s.label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Sim-steps/s of every engine, one group per (k, batch), one colour per backend. */
function svg(results: Array<{ name: string; file: EngineBenchFile }>): string {
  return barChart(
    'simulation-steps per second (log scale)',
    results.map(({ file }) => ({
      label: file.backend === 'webgpu' ? `webgpu (${file.adapter.split(/[\s/(-]/)[0]})` : file.backend,
      values: new Map(file.rows.map((row) => [`k=${row.k}|B=${row.batch}`, row.simStepsPerSecond])),
    })),
  );
}

export async function updateReadme(resultsDir: string): Promise<void> {
  const results = await latestPerBackend(resultsDir);
  if (results.length === 0) return;
  await writeFile(`${resultsDir}/engine.svg`, svg(results) + '\n');
  const readmePath = `${resultsDir}/../README.md`;
  if (!(await replaceResultsSection(readmePath, 'engine', markdown(results)))) throw new Error(`${readmePath} lacks the engine-results markers`);
}
