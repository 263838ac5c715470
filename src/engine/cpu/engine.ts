/**
 * The CPU engine: MODEL.md in TypeScript, f64 by default, f32 for parity with the GPU. Simulations live in
 * shared memory; when there is enough work per call, worker threads (one per core) step their share of the
 * batch while the calling thread stays free.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { SimSpec } from '../../model/spec.js';
import { type Engine, type EngineInfo, type Precision, type SimReport, type TickRecord } from '../types.js';
import { createSimState, type CpuSimState, kernelKey, S, STATUS_CODES, type Vec } from './state.js';
import { runTicks } from './step.js';
import type { WorkerReply, WorkerRequest } from './worker.js';

export interface CpuEngineOptions {
  precision?: Precision;
  /** Worker threads; default one per core, 0 runs everything on the calling thread. */
  threads?: number;
  /** Below this many kernel entries x ticks per advance, work stays on the calling thread. */
  inlineWork?: number;
}

interface Lane {
  worker: Worker;
  load: number;
  ids: Set<number>;
}

function workerUrl(): URL {
  // Tests import the TypeScript sources; workers always run the compiled JavaScript.
  return import.meta.url.endsWith('.ts')
    ? new URL('../../../dist/src/engine/cpu/worker.js', import.meta.url)
    : new URL('./worker.js', import.meta.url);
}

export class CpuEngine implements Engine {
  readonly info: EngineInfo;
  private readonly precision: Precision;
  private readonly sims = new Map<number, CpuSimState>();
  private readonly kernels = new Map<string, { vec: Vec; refs: number }>();
  private readonly lanes: Lane[] = [];
  private readonly laneOf = new Map<number, Lane>();
  private readonly inlineWork: number;
  private nextId = 1;

  constructor(options: CpuEngineOptions = {}) {
    this.precision = options.precision ?? 'f64';
    const threads = options.threads ?? availableParallelism();
    this.inlineWork = options.inlineWork ?? 1 << 20;
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(workerUrl());
      worker.unref();
      this.lanes.push({ worker, load: 0, ids: new Set() });
    }
    this.info = {
      backend: 'cpu',
      precision: this.precision,
      adapter: `cpu ${this.precision}, ${threads === 0 ? 'calling thread' : `${threads} worker thread${threads > 1 ? 's' : ''}`}`,
    };
  }

  add(spec: SimSpec): number {
    const id = this.nextId++;
    const key = kernelKey(spec, this.precision);
    const shared = spec.mixer === 'learned' ? undefined : this.kernels.get(key);
    const state = createSimState(id, spec, this.precision, shared?.vec ?? null);
    if (shared) shared.refs++;
    else if (spec.mixer !== 'learned') this.kernels.set(key, { vec: state.kernel, refs: 1 });
    this.sims.set(id, state);
    const lane = this.lanes.reduce<Lane | undefined>((best, l) => (!best || l.load < best.load ? l : best), undefined);
    if (lane) {
      lane.load += state.k * state.k;
      lane.ids.add(id);
      this.laneOf.set(id, lane);
      this.post(lane, { type: 'add', state });
    }
    return id;
  }

  remove(id: number): void {
    const state = this.sims.get(id);
    if (!state) return;
    this.sims.delete(id);
    const shared = this.kernels.get(state.kernelKey);
    if (shared && shared.vec === state.kernel && --shared.refs === 0) this.kernels.delete(state.kernelKey);
    const lane = this.laneOf.get(id);
    if (lane) {
      lane.load -= state.k * state.k;
      lane.ids.delete(id);
      this.laneOf.delete(id);
      this.post(lane, { type: 'remove', id });
    }
  }

  async advance(ticks: number): Promise<Map<number, SimReport>> {
    const records = new Map<number, TickRecord[]>();
    let work = 0;
    for (const s of this.sims.values()) work += s.k * s.k;
    if (this.lanes.length === 0 || work * ticks < this.inlineWork) {
      runTicks([...this.sims.values()], ticks, records);
    } else {
      const replies = await Promise.all(this.lanes.filter((l) => l.ids.size > 0).map((l) => this.request(l, ticks)));
      for (const reply of replies) for (const [id, list] of reply.records) records.set(id, list);
    }
    const reports = new Map<number, SimReport>();
    for (const [id, s] of this.sims) {
      reports.set(id, {
        status: STATUS_CODES[s.scalars[S.STATUS]!] ?? 'failed',
        step: s.scalars[S.STEP]!,
        restart: s.scalars[S.RESTART]!,
        records: records.get(id) ?? [],
      });
    }
    return reports;
  }

  async destroy(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.worker.terminate()));
    this.lanes.length = 0;
    this.sims.clear();
  }

  private post(lane: Lane, msg: WorkerRequest): void {
    lane.worker.postMessage(msg);
  }

  private request(lane: Lane, ticks: number): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      const onMessage = (reply: WorkerReply): void => {
        lane.worker.off('error', onError);
        resolve(reply);
      };
      const onError = (err: Error): void => {
        lane.worker.off('message', onMessage);
        reject(err);
      };
      lane.worker.once('message', onMessage);
      lane.worker.once('error', onError);
      lane.worker.ref();
      this.post(lane, { type: 'advance', ticks });
    }).finally(() => lane.worker.unref()) as Promise<WorkerReply>;
  }
}

