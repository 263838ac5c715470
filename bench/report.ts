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
  return Promise.all(
    [...latest.values()].map(async (name) => ({ name, file: JSON.parse(await readFile(`${dir}/${name}`, 'utf8')) as EngineBenchFile })),
  );
}

function markdown(results: Array<{ name: string; file: EngineBenchFile }>): string {
  const lines: string[] = [];
  for (const { name, file } of results) {
    lines.push(`### ${file.backend} — ${file.adapter} (${file.date})`, '');
    lines.push(`Host: ${file.host.cpus}, ${file.host.cores} cores, Node ${file.host.node}. File: \`results/${name}\`.`, '');
    lines.push('| k | batch | sim-steps/s | dense GFLOP/s | ticks timed | seconds |', '|---:|---:|---:|---:|---:|---:|');
    for (const r of file.rows) {
      lines.push(`| ${r.k} | ${r.batch} | ${r.simStepsPerSecond.toFixed(1)} | ${r.denseGflops.toFixed(3)} | ${r.ticks} | ${r.seconds.toFixed(2)} |`);
    }
    lines.push('');
  }
  lines.push('![simulation-steps per second by k and batch](results/engine.svg)');
  return lines.join('\n');
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd'];

/** Grouped bars of sim-steps/s (log scale), one group per (k, batch), one colour per backend. */
function svg(results: Array<{ name: string; file: EngineBenchFile }>): string {
  const groups = [...new Set(results.flatMap((r) => r.file.rows.map((row) => `${row.k}|${row.batch}`)))];
  const values = results.flatMap((r) => r.file.rows.map((row) => row.simStepsPerSecond)).filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...values)));
  const hi = Math.ceil(Math.log10(Math.max(...values)));
  const W = 80 + groups.length * (results.length * 14 + 16);
  const H = 340;
  const plotTop = 30;
  const plotBottom = H - 70;
  const y = (v: number): number => plotBottom - ((Math.log10(v) - lo) / Math.max(1, hi - lo)) * (plotBottom - plotTop);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="16" text-anchor="middle" font-size="13">simulation-steps per second (log scale)</text>`,
  ];
  for (let e = lo; e <= hi; e++) {
    parts.push(`<line x1="60" x2="${W - 10}" y1="${y(10 ** e)}" y2="${y(10 ** e)}" stroke="#ddd"/>`);
    parts.push(`<text x="55" y="${y(10 ** e) + 4}" text-anchor="end">1e${e}</text>`);
  }
  groups.forEach((g, gi) => {
    const [k, batch] = g.split('|');
    const x0 = 70 + gi * (results.length * 14 + 16);
    results.forEach((r, ri) => {
      const row = r.file.rows.find((row) => `${row.k}|${row.batch}` === g);
      if (!row || row.simStepsPerSecond <= 0) return;
      const top = y(row.simStepsPerSecond);
      parts.push(`<rect x="${x0 + ri * 14}" y="${top}" width="12" height="${plotBottom - top}" fill="${COLORS[ri % COLORS.length]}"/>`);
    });
    parts.push(`<text x="${x0 + (results.length * 14) / 2}" y="${plotBottom + 14}" text-anchor="middle">k=${k}</text>`);
    parts.push(`<text x="${x0 + (results.length * 14) / 2}" y="${plotBottom + 27}" text-anchor="middle">B=${batch}</text>`);
  });
  results.forEach((r, ri) => {
    const x = 70 + ri * 160;
    const label = r.file.backend === 'webgpu' ? `webgpu (${r.file.adapter.split(/[\s/(-]/)[0]})` : r.file.backend;
    parts.push(`<rect x="${x}" y="${H - 24}" width="12" height="12" fill="${COLORS[ri % COLORS.length]}"/>`);
    parts.push(`<text x="${x + 16}" y="${H - 14}">${label.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export async function updateReadme(resultsDir: string): Promise<void> {
  const results = await latestPerBackend(resultsDir);
  if (results.length === 0) return;
  await writeFile(`${resultsDir}/engine.svg`, svg(results) + '\n');
  const readmePath = `${resultsDir}/../README.md`;
  if (!(await replaceResultsSection(readmePath, 'engine', markdown(results)))) throw new Error(`${readmePath} lacks the engine-results markers`);
}
