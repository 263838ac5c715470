/** Worker thread of the CPU engine: steps the simulations assigned to it, in shared memory. */
import { parentPort } from 'node:worker_threads';
import type { TickRecord } from '../types.js';
import type { CpuSimState } from './state.js';
import { runTicks } from './step.js';

export type WorkerRequest =
  | { type: 'add'; state: CpuSimState }
  | { type: 'remove'; id: number }
  /** `limits`: per-simulation tick caps as [id, ticks] pairs (Engine.advance). */
  | { type: 'advance'; ticks: number; limits?: Array<[number, number]> };

export type WorkerReply = { records: Array<[number, TickRecord[]]> };

const sims = new Map<number, CpuSimState>();

parentPort?.on('message', (msg: WorkerRequest) => {
  if (msg.type === 'add') sims.set(msg.state.id, msg.state);
  else if (msg.type === 'remove') sims.delete(msg.id);
  else {
    const out = new Map<number, TickRecord[]>();
    runTicks([...sims.values()], msg.ticks, out, msg.limits ? new Map(msg.limits) : undefined);
    const reply: WorkerReply = { records: [...out] };
    parentPort?.postMessage(reply);
  }
});
