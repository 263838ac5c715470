/**
 * The CPU engine: docs/model.md in TypeScript, f64 by default, f32 for parity with the GPU. Simulations live in
 * shared memory; when there is enough work per call, worker threads (one per core) step their share of the
 * batch while the calling thread stays free.
 */
import type { Worker } from 'node:worker_threads';
import type { SimSpec } from '../../model/spec.js';
import { checkLimits, type Engine, type EngineInfo, type Precision, roundingOf, type SimPatch, type SimReport, type SimState, SIM_STATUSES, type TickRecord, ticksFor } from '../types.js';
import { resumeState } from '../checkpoint.js';
import { applyPhaseEdits, checkSpecMode, isSpace, type PatchPlan, planPatch, spaceParamsOf, withSpaceParams } from '../edits.js';
import { basisConstants } from '../../model/basis.js';
import { buildKernel, createSimState, type CpuSimState, kernelKey, releaseState, releaseVec, S, type Vec } from './state.js';
import { runTicks, type WasmThread } from './step.js';
import { compileWasm, type WasmModule, SharedArena, SIM_RECORD_BYTES, WasmLoops } from './wasm.js';
import type { WorkerReply, WorkerRequest } from './worker.js';

/** Simulations one dense call takes (a thread's call table); a larger group is passed in parts. */
const TABLE_SIMS = 256;
/** With fewer simulations than this per thread, the threads step them together as a gang (rows split). */
const GANG_BELOW = 2;

export interface CpuEngineOptions {
  precision?: Precision;
  /** Worker threads; default one per core, 0 runs everything on the calling thread. */
  threads?: number;
  /** Below this many kernel entries x ticks per advance, work stays on the calling thread. */
  inlineWork?: number;
  /**
   * Where the loops run (the dense pass and the per-prime work of a visit): `wasm`, WebAssembly SIMD over
   * one shared arena (wasm/engine.ts, loaded from dist/wasm: Node), a module compiled by the caller
   * (wasmModuleOf: a browser page, which needs cross-origin isolation for the shared memory), or `ts`,
   * the TypeScript loops. Default `ts`.
   */
  loops?: 'ts' | 'wasm' | WasmModule;
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
  /** The WebAssembly loops: the arena of kernels and simulations' vectors, and this thread's instance. */
  private readonly arena: SharedArena | undefined;
  private readonly wasm: WasmThread | undefined;
  private nextId = 1;

  constructor(options: CpuEngineOptions = {}) {
    this.precision = options.precision ?? 'f64';
    // Node modules are loaded only when threads are wanted, so a browser bundle (threads: 0) needs none.
    const threads = options.threads ?? process.getBuiltinModule('node:os').availableParallelism();
    this.inlineWork = options.inlineWork ?? 1 << 20;
    const module = options.loops === 'wasm' ? compileWasm() : options.loops === 'ts' ? undefined : options.loops;
    if (module) {
      this.arena = new SharedArena();
      this.wasm = { loops: new WasmLoops(module, this.arena.memory), table: this.callTable() };
    }
    const WorkerCtor = threads > 0 ? process.getBuiltinModule('node:worker_threads').Worker : null;
    // The gang's meeting point (step.ts, meet): [arrived, generation]. Only threads need it (a page that is
    // not cross-origin isolated has no SharedArrayBuffer).
    const barrier = threads > 0 ? new Int32Array(new SharedArrayBuffer(8)) : new Int32Array(2);
    for (let i = 0; i < threads; i++) {
      const worker = new WorkerCtor!(workerUrl());
      worker.unref();
      const lane = { worker, load: 0, ids: new Set<number>() };
      this.lanes.push(lane);
      if (module && this.arena) {
        const table = this.callTable();
        const gang = { index: i, parties: threads, barrier };
        this.post(lane, { type: 'wasm', module, memory: this.arena.memory, table: table.byteOffset, slots: table.length, gang });
      }
    }
    const where = threads === 0 ? 'calling thread' : `${threads} worker thread${threads > 1 ? 's' : ''}`;
    this.info = {
      backend: 'cpu',
      precision: this.precision,
      adapter: `cpu ${this.precision}, ${module ? `WebAssembly ${module.variant}` : 'TypeScript'}, ${where}`,
    };
  }

  add(spec: SimSpec, from?: SimState): number {
    checkSpecMode(spec);
    const restored = from === undefined ? null : resumeState(from, spec);
    // Space mode: the checkpoint carries the patched parameters in effect.
    if (restored?.space) spec = withSpaceParams(spec, restored.space.params);
    const id = this.nextId++;
    const key = kernelKey(spec, this.precision);
    const shared = spec.mixer === 'learned' ? undefined : this.kernels.get(key);
    const state = createSimState(id, spec, this.precision, shared?.vec ?? null, this.arena);
    if (restored) {
      // Typed-array stores round to f32 in f32 mode; the scalars are rounded the same way.
      const round = roundingOf(this.precision);
      state.theta.set(restored.phases);
      state.mass.set(restored.masses);
      if (restored.learned) state.learned.set(restored.learned);
      const sc = state.scalars;
      sc[S.N] = restored.n;
      sc[S.RESTART] = restored.restart;
      sc[S.STEP] = restored.step;
      sc[S.GAMMA] = round(restored.gamma);
      sc[S.TEMP] = round(restored.temperature);
      sc[S.LNNU] = round(restored.lnNu);
      sc[S.EBEST] = round(restored.ebest);
      sc[S.PLATEAU_COUNT] = restored.plateauCount;
      sc[S.CONV_COUNT] = restored.convCount;
      sc[S.STATUS] = SIM_STATUSES.indexOf(restored.status);
      sc[S.EXTRA_STEPS] = restored.extraSteps;
      sc[S.STEPS] = spec.steps + restored.extraSteps;
      sc[S.SNAP_AT] = restored.snapshotAt ?? -1;
      sc[S.REVISIT] = restored.revisit ? 1 : 0;
      if (restored.space) {
        sc[S.P_ARMED] = restored.space.plateauArmed ? 1 : 0;
        sc[S.P_FALSE] = restored.space.plateauFalse;
        sc[S.C_ARMED] = restored.space.collapseArmed ? 1 : 0;
        sc[S.C_FALSE] = restored.space.collapseFalse;
      }
    }
    if (shared) shared.refs++;
    else if (spec.mixer !== 'learned') this.kernels.set(key, { vec: state.kernel, refs: 1 });
    this.sims.set(id, state);
    const lane = this.lanes.reduce<Lane | undefined>((best, l) => (!best || l.load < best.load ? l : best), undefined);
    if (lane) {
      lane.load += state.k * state.k;
      lane.ids.add(id);
      this.laneOf.set(id, lane);
      this.send(state);
    }
    return id;
  }

  infoFor(): EngineInfo {
    return this.info;
  }

  remove(id: number): void {
    const state = this.sims.get(id);
    if (!state) return;
    this.sims.delete(id);
    this.dropKernel(state);
    if (this.arena) releaseState(this.arena, state);
    const lane = this.laneOf.get(id);
    if (lane) {
      lane.load -= state.k * state.k;
      lane.ids.delete(id);
      this.laneOf.delete(id);
      for (const l of this.gangLanes(lane)) this.post(l, { type: 'remove', id });
    }
  }

  async advance(ticks: number, limits?: ReadonlyMap<number, number>): Promise<Map<number, SimReport>> {
    checkLimits(limits);
    const records = new Map<number, TickRecord[]>();
    // Only the limits of resident simulations, and only those that cap below `ticks`.
    let caps: Map<number, number> | undefined;
    if (limits) {
      for (const [id, n] of limits) {
        if (!this.sims.has(id) || n >= ticks) continue;
        caps ??= new Map();
        caps.set(id, n);
      }
    }
    // The work: kernel entries x the ticks each simulation gets.
    let work = 0;
    for (const s of this.sims.values()) work += s.k * s.k * ticksFor(s.id, ticks, caps);
    if (work > 0) {
      const stepping = [...this.sims.values()].filter((s) => ticksFor(s.id, ticks, caps) > 0).length;
      if (this.lanes.length === 0 || work < this.inlineWork) {
        runTicks([...this.sims.values()], ticks, records, caps, this.wasm);
      } else if (this.wasm && this.lanes.length > 1 && stepping < GANG_BELOW * this.lanes.length) {
        // Too few simulations to give every thread its own: all threads on all of them, rows split.
        const replies = await Promise.all(this.lanes.map((l) => this.request(l, ticks, caps && [...caps], 'gang')));
        for (const reply of replies) for (const [id, list] of reply.records) records.set(id, list);
      } else {
        const busy = this.lanes.filter((l) => [...l.ids].some((id) => ticksFor(id, ticks, caps) > 0));
        const replies = await Promise.all(
          busy.map((l) => this.request(l, ticks, caps && [...caps].filter(([id]) => l.ids.has(id)))),
        );
        for (const reply of replies) for (const [id, list] of reply.records) records.set(id, list);
      }
    }
    const reports = new Map<number, SimReport>();
    for (const [id, s] of this.sims) {
      reports.set(id, {
        status: SIM_STATUSES[s.scalars[S.STATUS]!] ?? 'failed',
        step: s.scalars[S.STEP]!,
        restart: s.scalars[S.RESTART]!,
        records: records.get(id) ?? [],
      });
    }
    return reports;
  }

  async exportState(id: number): Promise<SimState> {
    const s = this.sim(id);
    const sc = s.scalars;
    return {
      backend: 'cpu',
      precision: this.precision,
      k: s.k,
      status: SIM_STATUSES[sc[S.STATUS]!] ?? 'failed',
      n: sc[S.N]!,
      restart: sc[S.RESTART]!,
      step: sc[S.STEP]!,
      gamma: sc[S.GAMMA]!,
      temperature: sc[S.TEMP]!,
      lnNu: sc[S.LNNU]!,
      ebest: sc[S.EBEST]!,
      plateauCount: sc[S.PLATEAU_COUNT]!,
      convCount: sc[S.CONV_COUNT]!,
      extraSteps: sc[S.EXTRA_STEPS]!,
      snapshotAt: sc[S.SNAP_AT]! < 0 ? null : sc[S.SNAP_AT]!,
      revisit: sc[S.REVISIT] === 1,
      // Copies in plain memory: the state's own arrays are shared with worker threads and the arena.
      phases: copyOf(s.theta),
      masses: copyOf(s.mass),
      learned: s.spec.mixer === 'learned' ? copyOf(s.learned) : null,
      space: isSpace(s.spec)
        ? {
            plateauArmed: sc[S.P_ARMED] === 1,
            plateauFalse: sc[S.P_FALSE]!,
            collapseArmed: sc[S.C_ARMED] === 1,
            collapseFalse: sc[S.C_FALSE]!,
            params: spaceParamsOf(s.spec),
          }
        : null,
    };
  }

  patch(id: number, change: SimPatch): void {
    const s = this.sim(id);
    const sc = s.scalars;
    const plan = planPatch(change, {
      spec: s.spec,
      k: s.k,
      status: SIM_STATUSES[sc[S.STATUS]!] ?? 'failed',
      step: sc[S.STEP]!,
      revisit: sc[S.REVISIT] === 1,
      extraSteps: sc[S.EXTRA_STEPS]!,
    });
    // The spec first: a new kernel may not fit the arena, and then nothing of the patch is applied.
    if (plan.spec) this.setSpec(s, plan.spec, plan.reset);
    applyPhaseEdits(s.theta, plan.sets, plan.shifts, this.precision);
    sc[S.EXTRA_STEPS] = plan.extraSteps;
    sc[S.STEPS] = plan.steps;
    if (plan.reopen) {
      sc[S.STATUS] = SIM_STATUSES.indexOf('running');
      sc[S.REVISIT] = 1;
    }
    if (plan.snapshotAt !== null) sc[S.SNAP_AT] = plan.snapshotAt;
  }

  /**
   * Space mode: put a patched spec in effect. A mixer change resets n, gamma and the temperature; a kernel
   * change (localityBias, semantic) moves the simulation to the kernel of its new key. Workers get the new
   * state (its arrays stay the same shared memory).
   */
  private setSpec(s: CpuSimState, spec: SimSpec, reset: PatchPlan['reset']): void {
    const key = kernelKey(spec, this.precision);
    if (key !== s.kernelKey) {
      // The new kernel before the old one is given up: building it may fail (a full arena).
      const shared = spec.mixer === 'learned' ? undefined : this.kernels.get(key);
      const kernel = shared ? shared.vec : buildKernel(spec, basisConstants(spec), this.precision, this.arena);
      this.dropKernel(s);
      if (shared) shared.refs++;
      else if (spec.mixer !== 'learned') this.kernels.set(key, { vec: kernel, refs: 1 });
      s.kernel = kernel;
      s.kernelKey = key;
    }
    s.spec = spec;
    if (reset) {
      const round = roundingOf(this.precision);
      const sc = s.scalars;
      sc[S.N] = 0;
      sc[S.GAMMA] = round(reset.gamma);
      sc[S.TEMP] = round(reset.temperature);
    }
    if (this.laneOf.has(s.id)) this.send(s);
  }

  /** The lanes that hold a simulation of `lane`: every lane when they can step it as a gang. */
  private gangLanes(lane: Lane): Lane[] {
    return this.wasm ? this.lanes : [lane];
  }

  /** (Re)sends a state to its lane, and to the other lanes of the gang (which only hold it). */
  private send(state: CpuSimState): void {
    const lane = this.laneOf.get(state.id);
    if (!lane) return;
    for (const l of this.gangLanes(lane)) this.post(l, { type: 'add', state, own: l === lane });
  }

  async destroy(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.worker.terminate()));
    this.lanes.length = 0;
    this.sims.clear();
  }

  private sim(id: number): CpuSimState {
    const s = this.sims.get(id);
    if (!s) throw new Error(`CPU engine: no simulation ${id}`);
    return s;
  }

  /** Bytes of the WebAssembly arena in use (kernels, simulations' vectors, call tables); 0 with the TypeScript loops. */
  get arenaBytes(): number {
    return this.arena?.used ?? 0;
  }

  /** Gives up `s`'s hold on its kernel; a kernel in the arena is released with its last holder. */
  private dropKernel(s: CpuSimState): void {
    const shared = this.kernels.get(s.kernelKey);
    if (shared && shared.vec === s.kernel) {
      if (--shared.refs > 0) return;
      this.kernels.delete(s.kernelKey);
    }
    if (this.arena && s.inArena) releaseVec(this.arena, s.kernel);
  }

  /** A thread's call table for the WebAssembly dense pass, in the arena. */
  private callTable(): Uint32Array {
    const arena = this.arena!;
    return arena.u32(arena.alloc(TABLE_SIMS * SIM_RECORD_BYTES), (TABLE_SIMS * SIM_RECORD_BYTES) / 4);
  }

  private post(lane: Lane, msg: WorkerRequest): void {
    lane.worker.postMessage(msg);
  }

  private request(lane: Lane, ticks: number, limits?: Array<[number, number]>, type: 'advance' | 'gang' = 'advance'): Promise<WorkerReply> {
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
      this.post(lane, { type, ticks, ...(limits && limits.length > 0 ? { limits } : {}) });
    }).finally(() => lane.worker.unref()) as Promise<WorkerReply>;
  }
}

function copyOf(v: Vec): Float32Array | Float64Array {
  return v instanceof Float32Array ? Float32Array.from(v) : Float64Array.from(v);
}
