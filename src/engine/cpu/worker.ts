/**
 * Worker thread of the CPU engine: steps the simulations assigned to it (its own), in shared memory; with
 * the WebAssembly dense pass it also holds every other thread's, to step them all together as one of a
 * gang when the batch is too small to give each thread its own (step.ts, runTicksGang).
 */
import { parentPort } from 'node:worker_threads';
import type { TickRecord } from '../types.js';
import type { CpuSimState } from './state.js';
import { type Gang, runTicks, runTicksGang, type WasmThread } from './step.js';
import { type WasmModule, WasmLoops } from './wasm.js';

export type WorkerRequest =
  /**
   * The WebAssembly loops: the module, the engine's arena memory, this thread's dense call table (address,
   * u32 slots), and its place in the gang with the gang's barrier.
   */
  | { type: 'wasm'; module: WasmModule; memory: WebAssembly.Memory; table: number; slots: number; gang: Gang }
  /** `own`: this thread steps it in an `advance`; otherwise it is held for a `gang` advance only. */
  | { type: 'add'; state: CpuSimState; own: boolean }
  | { type: 'remove'; id: number }
  /** `limits`: per-simulation tick caps as [id, ticks] pairs (Engine.advance). */
  | { type: 'advance'; ticks: number; limits?: Array<[number, number]> }
  /** Every thread steps every simulation together (runTicksGang). */
  | { type: 'gang'; ticks: number; limits?: Array<[number, number]> };

export type WorkerReply = { records: Array<[number, TickRecord[]]> };

const sims = new Map<number, CpuSimState>();
const own = new Set<number>();
let wasm: WasmThread | undefined;
let gang: Gang | undefined;

parentPort?.on('message', (msg: WorkerRequest) => {
  if (msg.type === 'wasm') {
    wasm = { loops: new WasmLoops(msg.module, msg.memory), table: new Uint32Array(msg.memory.buffer, msg.table, msg.slots) };
    gang = msg.gang;
  } else if (msg.type === 'add') {
    sims.set(msg.state.id, msg.state);
    if (msg.own) own.add(msg.state.id);
    else own.delete(msg.state.id);
  } else if (msg.type === 'remove') {
    sims.delete(msg.id);
    own.delete(msg.id);
  } else {
    const out = new Map<number, TickRecord[]>();
    const limits = msg.limits ? new Map(msg.limits) : undefined;
    if (msg.type === 'gang' && wasm && gang) runTicksGang([...sims.values()], msg.ticks, out, limits, wasm, gang);
    else runTicks([...own].map((id) => sims.get(id)!), msg.ticks, out, limits, wasm);
    const reply: WorkerReply = { records: [...out] };
    parentPort?.postMessage(reply);
  }
});
