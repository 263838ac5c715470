/**
 * A worker thread of the dense-pass reference in bench/dense-references.ts: the WebAssembly dense pass
 * (src/engine/cpu/wasm.ts) over its share of the rows, `passes` times, on the memory it is given.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SIM_RECORD_BYTES, simsPerDenseCall, type WasmModule, WasmLoops } from '../src/engine/cpu/wasm.js';

export interface DenseWorkerData {
  dense: WasmModule;
  memory: WebAssembly.Memory;
}

export interface DenseWorkerJob {
  precision: 'f32' | 'f64';
  K: number;
  k: number;
  i0: number;
  i1: number;
  table: number;
  sims: number;
  passes: number;
}

const { dense, memory } = workerData as DenseWorkerData;
const loops = new WasmLoops(dense, memory);
parentPort?.on('message', (job: DenseWorkerJob) => {
  const t0 = performance.now();
  // Simulations in the engine's blocks (step.ts, wasmDense): the same calls the engine makes.
  const block = simsPerDenseCall(job.k, job.precision === 'f32' ? 4 : 8);
  for (let p = 0; p < job.passes; p++) {
    for (let from = 0; from < job.sims; from += block) loops.dense(job.precision, job.K, job.k, job.i0, job.i1, job.table + from * SIM_RECORD_BYTES, Math.min(block, job.sims - from));
  }
  parentPort?.postMessage(performance.now() - t0);
});
