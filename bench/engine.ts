/**
 * Engine benchmark: simulation-steps per second and dense-pass GFLOP/s for k in {64, 512, 2048} and batch
 * sizes {1, 16, 128}, on the CPU engine (f64 and f32; the dense pass in TypeScript and in WebAssembly SIMD)
 * and the WebGPU engine, in one run.
 * Then the dense pass alone: the CPU engine's WebAssembly SIMD kernel beside a native C reference of the
 * same loop (bench/dense-references.ts), with their ratio. Writes bench/results/engine-<backend>-<date>.json
 * per backend, bench/results/dense-<date>.json, and the tables in bench/README.md.
 *
 *   npm run bench:engine [-- --backends cpu-f64,cpu-f32,cpu-wasm-f64,cpu-wasm-f32,webgpu --k 64,512,2048 --batch 1,16,128 --seconds 1.5
 *                           --dense-k 512,2048 --dense-batch 1,16,128]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { CpuEngine } from '../src/engine/cpu/engine.js';
import type { Engine } from '../src/engine/types.js';
import { firstPrimes } from '../src/model/primes.js';
import { normalize } from '../src/model/normalize.js';
import { specFromConfig, type SimSpec } from '../src/model/spec.js';
import { type DenseReferences, denseReferences } from './dense-references.js';
import { replaceResultsSection, timeRepeats } from './harness.js';
import { barChart, updateReadme } from './report.js';

/** Dense-pass work counted as 3 multiply-adds per kernel entry (z real, z imaginary, q): 3 k^2 per simulation-step. */
export const denseFlops = (k: number): number => 3 * k * k;

export interface EngineBenchRow {
  k: number;
  batch: number;
  ticks: number;
  seconds: number;
  simStepsPerSecond: number;
  denseGflops: number;
  /** Sim-steps/s of each timed repeat, in order; the row reports the fastest. */
  repeats?: number[];
}

export interface EngineBenchFile {
  kind: 'engine';
  backend: string;
  adapter: string;
  precision: string;
  date: string;
  host: { cpus: string; cores: number; node: string };
  rows: EngineBenchRow[];
}

function benchSpec(k: number, seed: number): SimSpec {
  const r = normalize({
    primes: firstPrimes(k),
    // Noise, coupling growth and mass flow all on; the run never ends and records nothing while timed.
    mixer: { type: 'local', temperature0: 0.5, beta: 0.999 },
    schedule: { steps: 1_000_000_000, plateauT: 1_000_000_000 },
    observables: { metricsInterval: 1_000_000_000, snapshotsInterval: 1_000_000_000 },
    seed,
  });
  if (!r.ok) throw new Error('bench config invalid');
  return specFromConfig(r.normalized);
}

async function measure(engine: Engine, k: number, batch: number, seconds: number): Promise<EngineBenchRow> {
  const ids = Array.from({ length: batch }, (_, i) => engine.add(benchSpec(k, i + 1)));
  const timed = async (ticks: number): Promise<number> => {
    const t0 = performance.now();
    await engine.advance(ticks);
    return (performance.now() - t0) / 1000;
  };
  try {
    await engine.advance(1); // warm-up: pipelines, kernels, worker start-up
    const { n: ticks, times } = await timeRepeats(timed, seconds, 1, 1 << 16);
    const best = Math.min(...times);
    const simSteps = ticks * batch;
    return {
      k,
      batch,
      ticks,
      seconds: best,
      simStepsPerSecond: simSteps / best,
      denseGflops: (simSteps * denseFlops(k)) / best / 1e9,
      repeats: times.map((t) => simSteps / t),
    };
  } finally {
    for (const id of ids) engine.remove(id);
  }
}

async function makeEngine(name: string): Promise<Engine> {
  if (name === 'cpu-f64') return new CpuEngine({ precision: 'f64', loops: 'ts' });
  if (name === 'cpu-f32') return new CpuEngine({ precision: 'f32', loops: 'ts' });
  if (name === 'cpu-wasm-f64') return new CpuEngine({ precision: 'f64', loops: 'wasm' });
  if (name === 'cpu-wasm-f32') return new CpuEngine({ precision: 'f32', loops: 'wasm' });
  if (name === 'webgpu') {
    const { WebGpuEngine } = await import('../src/engine/webgpu/engine.js');
    return WebGpuEngine.create({ allowSoftware: true });
  }
  throw new Error(`unknown backend ${name}`);
}

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      backends: { type: 'string', default: 'cpu-f64,cpu-f32,cpu-wasm-f64,cpu-wasm-f32,webgpu' },
      k: { type: 'string', default: '64,512,2048' },
      batch: { type: 'string', default: '1,16,128' },
      seconds: { type: 'string', default: '1.5' },
      out: { type: 'string', default: 'bench/results' },
      'dense-k': { type: 'string', default: '512,2048' },
      'dense-batch': { type: 'string', default: '1,16,128' },
    },
  });
  const ks = values.k.split(',').map(Number);
  const batches = values.batch.split(',').map(Number);
  const seconds = Number(values.seconds);
  const date = new Date().toISOString().slice(0, 10);
  const host: EngineBenchFile['host'] = { cpus: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), node: process.version };
  await mkdir(values.out, { recursive: true });
  const files: EngineBenchFile[] = [];
  for (const backend of values.backends.split(',')) {
    const engine = await makeEngine(backend);
    const file: EngineBenchFile = {
      kind: 'engine',
      backend,
      adapter: engine.info.adapter,
      precision: engine.info.precision,
      date,
      host,
      rows: [],
    };
    try {
      for (const k of ks) {
        for (const batch of batches) {
          const row = await measure(engine, k, batch, seconds);
          file.rows.push(row);
          process.stderr.write(
            `${backend.padEnd(8)} k=${String(k).padEnd(5)} batch=${String(batch).padEnd(4)} ` +
              `${row.simStepsPerSecond.toFixed(1).padStart(10)} sim-steps/s ${row.denseGflops.toFixed(2).padStart(8)} GFLOP/s\n`,
          );
        }
      }
    } finally {
      await engine.destroy();
    }
    const label = backend === 'webgpu' ? `webgpu-${slug(engine.info.adapter).split('-')[0]}` : backend;
    const path = `${values.out}/engine-${label}-${date}.json`;
    await writeFile(path, JSON.stringify(file, null, 2) + '\n');
    process.stderr.write(`wrote ${path}\n`);
    files.push(file);
  }
  await updateReadme(values.out);

  const dense = await denseReferences(values['dense-k'].split(',').map(Number), values['dense-batch'].split(',').map(Number), seconds, (line) => process.stderr.write(line + '\n'));
  const densePath = `${values.out}/dense-${date}.json`;
  await writeFile(densePath, JSON.stringify({ kind: 'dense', date, host, ...dense }, null, 2) + '\n');
  process.stderr.write(`wrote ${densePath}\n`);
  const fmt = (v: number | null): string => (v === null ? 'unavailable' : v.toFixed(0));
  const table = [
    `WebAssembly build: ${dense.wasmVariant}; native: ${dense.compiler ?? 'unavailable'}; ${host.cores} threads each; ${date}, ${host.cpus}, Node ${host.node}.`,
    '',
    '| precision | k | batch | WebAssembly SIMD, sim-steps/s | native C, sim-steps/s | WebAssembly / native |',
    '|---|---:|---:|---:|---:|---:|',
    ...dense.rows.map((r) => `| ${r.precision} | ${r.k} | ${r.batch} | ${fmt(r.wasm)} | ${fmt(r.native)} | ${r.ratio === null ? '-' : `${(100 * r.ratio).toFixed(0)}%`} |`),
  ].join('\n');
  // The dense pass beside native code, plotted: one group per (precision, k, batch), the ratio above it.
  const key = (r: (typeof dense.rows)[number]): string => `${r.precision} k=${r.k}|B=${r.batch}`;
  const plot = barChart(
    'dense pass alone: simulation-steps per second (log scale)',
    [
      { label: 'WebAssembly SIMD', values: new Map(dense.rows.map((r) => [key(r), r.wasm])) },
      { label: 'native C', values: new Map(dense.rows.filter((r) => r.native !== null).map((r) => [key(r), r.native!])) },
    ],
    new Map(dense.rows.filter((r) => r.ratio !== null).map((r) => [key(r), `${(100 * r.ratio!).toFixed(0)}%`])),
  );
  await writeFile(`${values.out}/dense.svg`, plot + '\n');
  const denseSection = `${table}\n\n![the dense pass alone, WebAssembly SIMD beside native C](results/dense.svg)`;
  if (!(await replaceResultsSection(`${values.out}/../README.md`, 'dense', denseSection))) process.stderr.write(`${values.out}/../README.md has no dense-results markers\n`);

  const bars = barsOf(files, dense);
  if (bars.length > 0) {
    const barsPath = `${values.out}/engine-bars-${date}.json`;
    await writeFile(barsPath, JSON.stringify({ kind: 'engine-bars', date, host, bars }, null, 2) + '\n');
    const cell = (v: number | null, unit: EngineBar['unit']): string => (v === null ? 'unavailable' : unit === 'x' ? `${v.toFixed(2)}x` : unit === '%' ? `${(100 * v).toFixed(0)}%` : v.toFixed(0));
    const threshold = (b: EngineBar): string => (b.unit === '%' ? `${100 * b.bar}%` : b.unit === 'x' ? `${b.bar}x` : `${b.bar}`);
    const barsTable = [
      `The CPU engine's WebAssembly backend against its bars, from the engine and dense-pass rows of the same run (${date}; file \`results/engine-bars-${date}.json\`).`,
      '',
      '| measure | value | bar | met |',
      '|---|---:|---:|---|',
      ...bars.map((b) => `| ${b.measure} | ${cell(b.value, b.unit)} | >= ${threshold(b)} | ${b.met === null ? '-' : b.met ? 'yes' : 'no'} |`),
    ].join('\n');
    for (const b of bars) process.stderr.write(`bar: ${b.measure}: ${cell(b.value, b.unit)} (bar ${threshold(b)}) ${b.met === null ? 'unavailable' : b.met ? 'met' : 'NOT met'}\n`);
    if (!(await replaceResultsSection(`${values.out}/../README.md`, 'engine-bars', barsTable))) process.stderr.write(`${values.out}/../README.md has no engine-bars-results markers\n`);
  }
}

export interface EngineBar {
  measure: string;
  value: number | null;
  unit: 'sim-steps/s' | '%' | 'x';
  bar: number;
  met: boolean | null;
}

/**
 * The bars of the WebAssembly backend at k = 2048, each from rows of this run: f32 sim-steps/s at batch 1
 * and 16, the engine's share of the native dense pass at batch 16, and f64 against the TypeScript f64
 * engine at every batch. A bar whose rows this run did not measure is left out.
 */
function barsOf(files: EngineBenchFile[], dense: DenseReferences): EngineBar[] {
  const rate = (backend: string, batch: number): number | null => files.find((f) => f.backend === backend)?.rows.find((r) => r.k === 2048 && r.batch === batch)?.simStepsPerSecond ?? null;
  const bars: EngineBar[] = [];
  const add = (measure: string, value: number | null, unit: EngineBar['unit'], bar: number): void => {
    bars.push({ measure, value, unit, bar, met: value === null ? null : value >= bar });
  };
  const f32 = (batch: number): number | null => rate('cpu-wasm-f32', batch);
  if (f32(1) !== null) add('WebAssembly f32, k = 2048, batch 1, sim-steps/s', f32(1), 'sim-steps/s', 1500);
  if (f32(16) !== null) {
    add('WebAssembly f32, k = 2048, batch 16, sim-steps/s', f32(16), 'sim-steps/s', 2500);
    const native = dense.rows.find((r) => r.precision === 'f32' && r.k === 2048 && r.batch === 16)?.native;
    if (native !== undefined) add('... of the native dense pass at k = 2048, batch 16 (same run)', native === null ? null : f32(16)! / native, '%', 0.25);
  }
  for (const batch of [1, 16, 128]) {
    const wasm = rate('cpu-wasm-f64', batch);
    const ts = rate('cpu-f64', batch);
    if (wasm !== null && ts !== null) add(`WebAssembly f64 / TypeScript f64, k = 2048, batch ${batch}`, wasm / ts, 'x', 4);
  }
  return bars;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
