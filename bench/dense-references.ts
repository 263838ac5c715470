/**
 * The dense pass alone (3 k^2 multiply-adds per simulation-step), measured three ways in one run for
 * npm run bench:engine: the WebAssembly SIMD kernel of the CPU engine (src/engine/cpu/wasm.ts) on
 * worker threads splitting the rows, and a native C reference (bench/native/dense.c, built here with the
 * system's compiler; unavailable without one), both with every core. Their ratio is what the WebAssembly
 * kernel leaves on the table.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { compileWasm, type WasmModule, SharedArena, SIM_RECORD_BYTES } from '../src/engine/cpu/wasm.js';
import type { DenseWorkerData, DenseWorkerJob } from './dense-worker.js';
import { REPEATS, timeRepeats } from './harness.js';

export interface DenseReferenceRow {
  k: number;
  batch: number;
  precision: 'f32' | 'f64';
  threads: number;
  /** WebAssembly SIMD kernel, simulation-steps (dense passes x batch) per second. */
  wasm: number;
  /** The native C loop, or null when no C compiler is present. */
  native: number | null;
  nativeOrder: string | null;
  /** wasm / native. */
  ratio: number | null;
}

export interface DenseReferences {
  wasmVariant: WasmModule['variant'];
  compiler: string | null;
  rows: DenseReferenceRow[];
}

/** The native reference's binary, or null (with the reason) when it cannot be built here. */
function buildNative(): { binary: string; compiler: string } | { binary: null; reason: string } {
  const source = fileURLToPath(new URL('../../bench/native/dense.c', import.meta.url));
  const binary = join(mkdtempSync(join(tmpdir(), 'resonance-dense-')), 'dense');
  for (const cc of [process.env.CC, 'cc', 'gcc', 'clang'].filter((c): c is string => Boolean(c))) {
    try {
      execFileSync(cc, ['-O3', '-march=native', '-fopenmp', source, '-o', binary], { stdio: 'pipe' });
      const version = execFileSync(cc, ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? cc;
      return { binary, compiler: version };
    } catch {
      continue;
    }
  }
  return { binary: null, reason: 'no C compiler with OpenMP found (cc, gcc, clang)' };
}

/** A kernel and `batch` simulations' inputs and outputs in a fresh arena, with their call table. */
function layout(arena: SharedArena, precision: 'f32' | 'f64', k: number, batch: number): { K: number; table: number } {
  const bytes = precision === 'f32' ? 4 : 8;
  const fill = (at: number, n: number): void => {
    const v = precision === 'f32' ? arena.f32(at, n) : arena.f64(at, n);
    for (let i = 0; i < n; i++) v[i] = Math.random();
  };
  const K = arena.alloc(k * k * bytes);
  fill(K, k * k);
  const table = arena.alloc(batch * SIM_RECORD_BYTES);
  const record = arena.u32(table, batch * 6);
  for (let s = 0; s < batch; s++) {
    for (let f = 0; f < 6; f++) {
      const at = arena.alloc(k * bytes);
      if (f < 3) fill(at, k);
      record[s * 6 + f] = at;
    }
  }
  return { K, table };
}

async function timeWasm(workers: Worker[], job: Omit<DenseWorkerJob, 'i0' | 'i1' | 'passes'>, seconds: number): Promise<number> {
  const run = async (passes: number): Promise<number> => {
    const share = Math.ceil(job.k / workers.length);
    const times = await Promise.all(
      workers.map((w, n) => {
        const done = new Promise<number>((resolve) => w.once('message', resolve));
        w.postMessage({ ...job, i0: Math.min(job.k, n * share), i1: Math.min(job.k, (n + 1) * share), passes } satisfies DenseWorkerJob);
        return done;
      }),
    );
    return Math.max(...times) / 1000;
  };
  await run(2);
  const { n: passes, times } = await timeRepeats(run, seconds, 4, 1 << 20);
  return (passes * job.sims) / Math.min(...times);
}

export async function denseReferences(ks: number[], batches: number[], seconds: number, log: (line: string) => void): Promise<DenseReferences> {
  const threads = availableParallelism();
  const dense = compileWasm();
  const native = buildNative();
  const compiler = 'compiler' in native ? native.compiler : null;
  if ('reason' in native) log(`native reference unavailable: ${native.reason}`);
  const rows: DenseReferenceRow[] = [];
  for (const precision of ['f32', 'f64'] as const) {
    for (const k of ks) {
      for (const batch of batches) {
        const arena = new SharedArena();
        const { K, table } = layout(arena, precision, k, batch);
        const data: DenseWorkerData = { dense, memory: arena.memory };
        const workers = Array.from({ length: threads }, () => new Worker(new URL('./dense-worker.js', import.meta.url), { workerData: data }));
        let wasm: number;
        try {
          wasm = await timeWasm(workers, { precision, K, k, table, sims: batch }, seconds);
        } finally {
          await Promise.all(workers.map((w) => w.terminate()));
        }
        let nativeRate: number | null = null;
        let nativeOrder: string | null = null;
        if (native.binary) {
          const out = JSON.parse(execFileSync(native.binary, [String(k), String(batch), String(seconds), precision, String(REPEATS)], { encoding: 'utf8' })) as { simStepsPerSecond: number; order: string };
          nativeRate = out.simStepsPerSecond;
          nativeOrder = out.order;
        }
        const row: DenseReferenceRow = { k, batch, precision, threads, wasm, native: nativeRate, nativeOrder, ratio: nativeRate ? wasm / nativeRate : null };
        rows.push(row);
        log(
          `dense ${precision} k=${String(k).padEnd(5)} batch=${String(batch).padEnd(4)} wasm ${wasm.toFixed(0).padStart(9)}/s` +
            ` native ${nativeRate === null ? 'unavailable' : `${nativeRate.toFixed(0).padStart(9)}/s (${nativeOrder})`}` +
            (row.ratio === null ? '' : `  wasm/native ${(100 * row.ratio).toFixed(0)}%`),
        );
      }
    }
  }
  return { wasmVariant: dense.variant, compiler, rows };
}
