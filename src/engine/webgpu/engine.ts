/**
 * The WebGPU engine: docs/model.md in WGSL (shaders/), f32 state, many simulations per dispatch.
 *
 * Batches. Simulations are grouped by size class: the padded basis PAD_K = 64, 128, ..., 2048 (each
 * simulation keeps its own k <= PAD_K). All simulations of a class share one set of buffers, slot-major
 * (slot s owns elements [s * PAD_K, s * PAD_K + k)); a full class grows by reallocating at twice the
 * capacity and copying. Buffers of a class:
 *   params   SimParams per slot (host-written)          headers  SimHeader per slot (GPU state + ring counts)
 *   elemF    vec4 (sqrt l, l, w, theta0) per element    elemG    vec4 (prior, custom weight, l - l_ref, -) per element
 *   primes   u32 per element                            state    vec2 (theta, P) per element
 *   zq       vec4 (Re z, Im z, q, -) per element        records  REC_CAP GpuRecord per slot (ring)
 *   snaps    SNAP_CAP x 2 PAD_K f32 per slot (ring)     learned  PAD_K^2 f32 per learned simulation (pool)
 *   learnedSlots  u32 per pool entry: the slot using it
 * Bind groups (one group each, at most 8 storage buffers per stage for compatibility mode):
 *   dense  params, headers, elemF, primes, state, learned, zq                     (7)
 *   visit  params, headers, elemF, elemG, state, zq, records, snaps               (8)
 *   learn  params, headers, state, learnedSlots, learned                          (5)
 * One tick of a class = dense (PAD_K / WG_D x slots workgroups), visit (slots workgroups), learn
 * (PAD_K / WG_L x PAD_K x pool workgroups, only while a learned simulation is resident). advance() encodes
 * up to `ticksPerSubmit` ticks of every class in one compute pass and one submit; nothing is read back
 * per tick. After a submit the host copies the headers into a reused MAP_READ staging buffer and, for the
 * simulations that wrote any, only the new records and snapshots into a second reused staging buffer.
 *
 * Rings and budgets. advance(ticks, limits) gives every running simulation a budget of `ticks` ticks, or
 * its limit when that is lower (in its header; 0 for a held simulation, whose slot then stays inactive).
 * A tick runs only for a slot that is running, has budget left and has room for one record and one
 * snapshot; otherwise it does nothing. The host empties the rings after each submit and submits again
 * until every budget is spent or its simulation has ended, so results never depend on how ticks are
 * chunked into submits: a simulation visits exactly the states the CPU engine visits, in the same order.
 *
 * Checkpoints and patches (docs/engine.md). Between advances only: add(spec, state) uploads the
 * state's header, phases, masses and learned matrix; patch() writes params.steps and header fields
 * (status, revisit, snapAt) with queue.writeBuffer; exportState() reads one slot back through a staging
 * buffer of its own. Nothing of this runs per tick.
 *
 * Space mode (docs/engine.md, "Space mode"): OPT.SPACE in params.opts; the visit pass keeps the event
 * arming in the header (pArmed, pFalse, cArmed, cFalse). A params patch rewrites the slot's SimParams
 * (kernelScale recomputed on the host) and, for a mixer change, the header's n, gamma and temp. Phase
 * edits are queued on the host and applied before the next advance or export: the slot's phases are read
 * back, edited in emulated f32 (the CPU f32 engine's arithmetic) and written back.
 *
 * No Node imports here: a browser bundle passes `device` (from navigator.gpu) and `shaderSource`.
 */
import { d, readFromArrayBuffer, writeToArrayBuffer } from 'typegpu';
import { bindGroupLayoutOf, bindGroupOf, F32_MAX, GpuRecord, H_BUDGET, H_GAMMA, H_N, H_REC, H_RESTART, H_REVISIT, H_SNAP, H_SNAPAT, H_STATUS, H_STEP, HEADER_SIZE, MIXER_CODE, NONE, OPT, P_K, P_STEPS, PARAMS_SIZE, type Pass, RECORD_SIZE, SimHeader, SimParams, TARGET_CODE, bindingDeclarations } from './layout.js';
import { type BasisConstants, basisConstants } from '../../model/basis.js';
import type { SimSpec } from '../../model/spec.js';
import { checkLimits, type Engine, type EngineInfo, type SimPatch, type SimReport, type SimState, SIM_STATUSES, type SimStatus, type TickRecord, ticksFor } from '../types.js';
import { resumeState } from '../checkpoint.js';
import { applyPhaseEdits, checkSpecMode, collapseThresholdOf, isSpace, planPatch, spaceParamsOf, withSpaceParams } from '../edits.js';

// ---- WebGPU constants (numeric, so that nothing depends on Dawn's globals being installed) ----
const USAGE_MAP_READ = 0x1;
const USAGE_COPY_SRC = 0x4;
const USAGE_COPY_DST = 0x8;
const USAGE_STORAGE = 0x80;
const MAP_READ = 0x1;

const MIN_CLASS = 64;
const MAX_K = 2048;

export interface WebGpuEngineOptions {
  /** Accept a software adapter (llvmpipe, SwiftShader): a correctness path, not a speed path. */
  allowSoftware: boolean;
  /** Use this device (not destroyed by destroy()); default: acquire one (Node: ./device.ts). */
  device?: GPUDevice;
  /** WGSL source of shaders/<name>.wgsl; default: read from the package (Node). */
  shaderSource?: (name: string) => string;
  /** Description of an injected device's adapter for info.adapter. */
  adapterLabel?: string;
  /** Ticks encoded per submit (and records per simulation ring). Default 64. */
  ticksPerSubmit?: number;
  /** Bytes of snapshot ring per simulation (at least 2 snapshots). Default 256 KiB. */
  snapshotRingBytes?: number;
  /** Preferred workgroup sizes (clamped to the device limits, rounded down to powers of two). */
  workgroupSizes?: { dense?: number; visit?: number; learn?: number };
}

interface Sim {
  id: number;
  spec: SimSpec;
  k: number;
  cls: SizeClass;
  slot: number;
  learnedIndex: number;
  l2: boolean;
  status: SimStatus;
  step: number;
  restart: number;
  remaining: number;
  /** Sum of the patched extraSteps (the steps limit in params is spec.steps + extraSteps). */
  extraSteps: number;
  /** Mirrors SimHeader.revisit as of the last readback or host write. */
  revisit: boolean;
  /**
   * Space mode: patched phase edits not yet on the GPU (set then shift, per patch, in order); applied on
   * the host in emulated f32 (the CPU f32 engine's arithmetic) at the start of the next advance or export.
   */
  phaseEdits: { sets: Array<[number, number]>; shifts: Array<[number, number]> }[];
}

interface ClassBuffers {
  params: GPUBuffer;
  headers: GPUBuffer;
  elemF: GPUBuffer;
  elemG: GPUBuffer;
  primes: GPUBuffer;
  state: GPUBuffer;
  zq: GPUBuffer;
  records: GPUBuffer;
  snaps: GPUBuffer;
  learned: GPUBuffer;
  learnedSlots: GPUBuffer;
}

interface Pipelines {
  dense: GPUComputePipeline;
  visit: GPUComputePipeline;
  learn: GPUComputePipeline;
}

interface SizeClass {
  K: number;
  recCap: number;
  snapCap: number;
  wgDense: number;
  wgVisit: number;
  wgLearn: number;
  capacity: number;
  slots: (Sim | null)[];
  learnedCapacity: number;
  learnedUsers: (Sim | null)[];
  buffers: ClassBuffers;
  bindGroups: { dense: GPUBindGroup; visit: GPUBindGroup; learn: GPUBindGroup } | null;
  pipelines: Pipelines | null;
}

function pow2Floor(n: number): number {
  return 2 ** Math.floor(Math.log2(Math.max(1, n)));
}

function classOf(k: number): number {
  let K = MIN_CLASS;
  while (K < k) K *= 2;
  return K;
}

export class WebGpuEngine implements Engine {
  readonly info: EngineInfo;
  private readonly device: GPUDevice;
  private readonly ownsDevice: boolean;
  private readonly sources: { dense: string; visit: string; learn: string };
  private readonly ticksPerSubmit: number;
  private readonly snapshotRingBytes: number;
  private readonly wgPref: { dense: number; visit: number; learn: number };
  private readonly layouts: { dense: GPUBindGroupLayout; visit: GPUBindGroupLayout; learn: GPUBindGroupLayout };
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly classes = new Map<number, SizeClass>();
  private readonly sims = new Map<number, Sim>();
  private headerStaging: GPUBuffer | null = null;
  private payloadStaging: GPUBuffer | null = null;
  private nextId = 1;
  private destroyed = false;

  private constructor(device: GPUDevice, ownsDevice: boolean, adapter: string, shaderSource: (name: string) => string, opts: WebGpuEngineOptions) {
    this.device = device;
    this.ownsDevice = ownsDevice;
    this.info = { backend: 'webgpu', adapter, precision: 'f32' };
    const storagePerStage = device.limits.maxStorageBuffersPerShaderStage;
    if (storagePerStage < 8) {
      throw new Error(`WebGPU engine: the visit pass binds 8 storage buffers; this device allows ${storagePerStage} per shader stage (maxStorageBuffersPerShaderStage)`);
    }
    // Every pass after the generated structs and constants, its bindings and the shared helpers.
    const shared = `${shaderSource('layout')}\n`;
    const common = shaderSource('common');
    const source = (pass: Pass): string => `${shared}${bindingDeclarations(pass)}\n${common}\n${shaderSource(pass)}`;
    this.sources = { dense: source('dense'), visit: source('visit'), learn: source('learn') };
    this.ticksPerSubmit = Math.max(1, Math.floor(opts.ticksPerSubmit ?? 64));
    this.snapshotRingBytes = opts.snapshotRingBytes ?? 256 * 1024;
    this.wgPref = {
      dense: opts.workgroupSizes?.dense ?? 128,
      visit: opts.workgroupSizes?.visit ?? 128,
      learn: opts.workgroupSizes?.learn ?? 128,
    };
    this.layouts = { dense: bindGroupLayoutOf(device, 'dense'), visit: bindGroupLayoutOf(device, 'visit'), learn: bindGroupLayoutOf(device, 'learn') };
  }

  /**
   * An engine on the given device, or on one acquired here (Node: hardware first, then llvmpipe when
   * allowSoftware). Throws an Error naming the missing piece when no adapter can be had.
   */
  static async create(opts: WebGpuEngineOptions): Promise<WebGpuEngine> {
    let device = opts.device;
    let label = opts.adapterLabel;
    let shaderSource = opts.shaderSource;
    const owns = !device;
    if (!device || !shaderSource) {
      // Node only; a browser passes both. The specifier is not a literal so that bundlers leave it alone.
      const nodeModule = './device.js';
      const node = (await import(/* @vite-ignore */ nodeModule)) as typeof import('./device.js');
      if (!device) {
        const acquired = await node.acquireDevice({ allowSoftware: opts.allowSoftware });
        device = acquired.device;
        label = acquired.label;
      }
      shaderSource ??= node.nodeShaderSource;
    }
    const adapter = label ?? describeDevice(device);
    try {
      return new WebGpuEngine(device, owns, adapter, shaderSource, opts);
    } catch (err) {
      if (owns) device.destroy();
      throw err;
    }
  }

  add(spec: SimSpec, from?: SimState): number {
    this.assertAlive();
    const k = spec.primes.length;
    if (k < 1) throw new Error('WebGPU engine: a simulation needs at least one prime');
    if (k > MAX_K) throw new Error(`WebGPU engine: k = ${k} exceeds the maximum basis ${MAX_K}`);
    checkSpecMode(spec);
    const restored = from === undefined ? null : resumeState(from, spec);
    // Space mode: the checkpoint carries the patched parameters in effect.
    if (restored?.space) spec = withSpaceParams(spec, restored.space.params);
    const extraSteps = restored?.extraSteps ?? 0;
    checkStepRange(isSpace(spec) ? 0 : spec.steps + extraSteps, spec.restarts, restored?.step ?? 0, restored?.snapshotAt ?? null);
    const cls = this.classFor(classOf(k));
    let slot = cls.slots.indexOf(null);
    if (slot < 0) {
      this.growClass(cls, cls.capacity * 2);
      slot = cls.slots.indexOf(null);
    }
    let learnedIndex = NONE;
    if (spec.mixer === 'learned') {
      learnedIndex = cls.learnedUsers.indexOf(null);
      if (learnedIndex < 0) {
        this.growLearned(cls, Math.max(1, cls.learnedCapacity * 2));
        learnedIndex = cls.learnedUsers.indexOf(null);
      }
    }
    const sim: Sim = {
      id: this.nextId++,
      spec,
      k,
      cls,
      slot,
      learnedIndex,
      l2: spec.norm === 'L2',
      status: 'running',
      step: 0,
      restart: 0,
      remaining: 0,
      extraSteps,
      revisit: false,
      phaseEdits: [],
    };
    if (restored) {
      sim.status = restored.status;
      sim.step = restored.step;
      sim.restart = restored.restart;
      sim.revisit = restored.revisit;
    }
    cls.slots[slot] = sim;
    if (learnedIndex !== NONE) cls.learnedUsers[learnedIndex] = sim;
    this.upload(sim, restored);
    this.sims.set(sim.id, sim);
    return sim.id;
  }

  infoFor(): EngineInfo {
    return this.info;
  }

  remove(id: number): void {
    const sim = this.sims.get(id);
    if (!sim) return;
    this.sims.delete(id);
    const { cls } = sim;
    cls.slots[sim.slot] = null;
    this.device.queue.writeBuffer(cls.buffers.params, sim.slot * PARAMS_SIZE + P_K, new Uint32Array([0]));
    if (sim.learnedIndex !== NONE) {
      cls.learnedUsers[sim.learnedIndex] = null;
      this.device.queue.writeBuffer(cls.buffers.learnedSlots, sim.learnedIndex * 4, new Uint32Array([NONE]));
    }
  }

  async advance(ticks: number, limits?: ReadonlyMap<number, number>): Promise<Map<number, SimReport>> {
    this.assertAlive();
    checkLimits(limits);
    const records = new Map<number, TickRecord[]>();
    const budget = Math.max(0, Math.floor(ticks));
    // Held simulations (limit 0) take no part: their slots get budget 0 below, so the shaders skip them.
    const running = [...this.sims.values()].filter((s) => s.status === 'running');
    const ticking = running.filter((s) => ticksFor(s.id, budget, limits) > 0);
    if (budget > 0 && ticking.length > 0) {
      if (budget > 0xffffffff) throw new Error('WebGPU engine: at most 2^32 - 1 ticks per advance');
      for (const cls of new Set(ticking.map((s) => s.cls))) await this.ensurePipelines(cls);
      await this.flushPhaseEdits(ticking);
      for (const s of running) {
        s.remaining = ticksFor(s.id, budget, limits);
        this.device.queue.writeBuffer(s.cls.buffers.headers, s.slot * HEADER_SIZE + H_BUDGET, new Uint32Array([s.remaining, 0, 0]));
      }
      for (;;) {
        const active = running.filter((s) => s.status === 'running' && s.remaining > 0);
        if (active.length === 0) break;
        const ticksNow = Math.min(this.ticksPerSubmit, Math.max(...active.map((s) => s.remaining)));
        await this.submitTicks(active, ticksNow, records);
      }
    }
    const reports = new Map<number, SimReport>();
    for (const [id, s] of this.sims) {
      reports.set(id, { status: s.status, step: s.step, restart: s.restart, records: records.get(id) ?? [] });
    }
    return reports;
  }

  /**
   * One slot's header, state and learned matrix, read back through a staging buffer of its own. Between
   * advances only: the GPU state is what the last advance left.
   */
  async exportState(id: number): Promise<SimState> {
    this.assertAlive();
    const sim = this.simOf(id);
    await this.flushPhaseEdits([sim]);
    const { cls, slot, k } = sim;
    const K = cls.K;
    const b = cls.buffers;
    const stateBytes = 2 * k * 4;
    const learnedBytes = sim.learnedIndex !== NONE ? K * K * 4 : 0;
    const total = HEADER_SIZE + stateBytes + learnedBytes;
    const stage = this.device.createBuffer({ label: 'export staging', size: align(total, 16), usage: USAGE_MAP_READ | USAGE_COPY_DST });
    try {
      const encoder = this.device.createCommandEncoder({ label: 'export' });
      encoder.copyBufferToBuffer(b.headers, slot * HEADER_SIZE, stage, 0, HEADER_SIZE);
      encoder.copyBufferToBuffer(b.state, slot * K * 8, stage, HEADER_SIZE, stateBytes);
      if (learnedBytes > 0) encoder.copyBufferToBuffer(b.learned, sim.learnedIndex * K * K * 4, stage, HEADER_SIZE + stateBytes, learnedBytes);
      this.device.queue.submit([encoder.finish()]);
      await stage.mapAsync(MAP_READ, 0, align(total, 16));
      const bytes = stage.getMappedRange(0, align(total, 16)).slice(0);
      stage.unmap();
      const h = readFromArrayBuffer(bytes.slice(0, HEADER_SIZE), SimHeader);
      const interleaved = new Float32Array(bytes, HEADER_SIZE, 2 * k);
      const phases = new Float32Array(k);
      const masses = new Float32Array(k);
      for (let i = 0; i < k; i++) {
        phases[i] = interleaved[2 * i]!;
        masses[i] = interleaved[2 * i + 1]!;
      }
      let learned: Float32Array | null = null;
      if (learnedBytes > 0) {
        const pool = new Float32Array(bytes, HEADER_SIZE + stateBytes, K * K);
        learned = new Float32Array(k * k);
        for (let i = 0; i < k; i++) learned.set(pool.subarray(i * K, i * K + k), i * k);
      }
      return {
        backend: 'webgpu',
        precision: 'f32',
        k,
        status: SIM_STATUSES[h.status] ?? 'failed',
        n: h.n,
        restart: h.restart,
        step: h.step,
        gamma: h.gamma,
        temperature: h.temp,
        lnNu: h.lnNu,
        // BIG stands for +infinity on the GPU (no entropy comes near it)
        ebest: h.ebest >= F32_MAX ? Infinity : h.ebest,
        plateauCount: h.plateauCount,
        convCount: h.convCount,
        extraSteps: sim.extraSteps,
        snapshotAt: h.snapAt === NONE ? null : h.snapAt,
        revisit: h.revisit !== 0,
        phases,
        masses,
        learned,
        space: isSpace(sim.spec)
          ? {
              plateauArmed: h.pArmed !== 0,
              plateauFalse: h.pFalse,
              collapseArmed: h.cArmed !== 0,
              collapseFalse: h.cFalse,
              params: spaceParamsOf(sim.spec),
            }
          : null,
      };
    } finally {
      stage.destroy();
    }
  }

  /** Host writes of params.steps and header fields (queue.writeBuffer), between advances. */
  patch(id: number, change: SimPatch): void {
    this.assertAlive();
    const sim = this.simOf(id);
    const plan = planPatch(change, sim);
    checkStepRange(isSpace(sim.spec) ? 0 : plan.steps, sim.spec.restarts, sim.step, plan.snapshotAt);
    const q = this.device.queue;
    const { headers, params } = sim.cls.buffers;
    const at = sim.slot * HEADER_SIZE;
    if (plan.sets.length > 0 || plan.shifts.length > 0) sim.phaseEdits.push({ sets: plan.sets, shifts: plan.shifts });
    if (plan.spec) {
      sim.spec = plan.spec;
      this.writeParams(sim);
    }
    if (plan.reset) {
      q.writeBuffer(headers, at + H_N, new Uint32Array([0]));
      q.writeBuffer(headers, at + H_GAMMA, new Float32Array([plan.reset.gamma, plan.reset.temperature]));
    }
    if (plan.extraSteps !== sim.extraSteps) {
      sim.extraSteps = plan.extraSteps;
      q.writeBuffer(params, sim.slot * PARAMS_SIZE + P_STEPS, new Uint32Array([plan.steps]));
    }
    if (plan.reopen) {
      sim.status = 'running';
      sim.revisit = true;
      q.writeBuffer(headers, at + H_STATUS, new Uint32Array([0]));
      q.writeBuffer(headers, at + H_REVISIT, new Uint32Array([1]));
    }
    if (plan.snapshotAt !== null) q.writeBuffer(headers, at + H_SNAPAT, new Uint32Array([plan.snapshotAt]));
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const cls of this.classes.values()) for (const b of Object.values(cls.buffers)) b.destroy();
    this.headerStaging?.destroy();
    this.payloadStaging?.destroy();
    this.classes.clear();
    this.sims.clear();
    if (this.ownsDevice) this.device.destroy();
  }

  /**
   * Space mode: apply the pending phase edits of `sims` (readback of their phases, edits on the host in the
   * CPU engine's f32 arithmetic, write back). Runs before any tick or export that could see them.
   */
  private async flushPhaseEdits(sims: Sim[]): Promise<void> {
    const todo = sims.filter((s) => s.phaseEdits.length > 0);
    if (todo.length === 0) return;
    let bytes = 0;
    const offsets = todo.map((s) => {
      const at = bytes;
      bytes += align(2 * s.k * 4, 16);
      return at;
    });
    const stage = this.device.createBuffer({ label: 'phase edits staging', size: Math.max(16, bytes), usage: USAGE_MAP_READ | USAGE_COPY_DST });
    try {
      const encoder = this.device.createCommandEncoder({ label: 'phase edits' });
      todo.forEach((s, n) => encoder.copyBufferToBuffer(s.cls.buffers.state, s.slot * s.cls.K * 8, stage, offsets[n]!, 2 * s.k * 4));
      this.device.queue.submit([encoder.finish()]);
      await stage.mapAsync(MAP_READ, 0, Math.max(16, bytes));
      const data = stage.getMappedRange(0, Math.max(16, bytes)).slice(0);
      stage.unmap();
      todo.forEach((s, n) => {
        const interleaved = new Float32Array(data, offsets[n]!, 2 * s.k);
        const theta = new Float32Array(s.k);
        for (let i = 0; i < s.k; i++) theta[i] = interleaved[2 * i]!;
        for (const e of s.phaseEdits) applyPhaseEdits(theta, e.sets, e.shifts, 'f32');
        s.phaseEdits = [];
        for (let i = 0; i < s.k; i++) interleaved[2 * i] = theta[i]!;
        this.device.queue.writeBuffer(s.cls.buffers.state, s.slot * s.cls.K * 8, interleaved);
      });
    } finally {
      stage.destroy();
    }
  }

  // ---- ticks and readback ----

  /**
   * Encode `ticks` ticks of every class holding one of `sims`, submit, and collect what `sims` recorded.
   * Only `sims` (captured now) are read back, so an add() or remove() while this awaits cannot shift them.
   */
  private async submitTicks(sims: Sim[], ticks: number, out: Map<number, TickRecord[]>): Promise<void> {
    const device = this.device;
    const classes = [...new Set(sims.map((s) => s.cls))];
    const encoder = device.createCommandEncoder({ label: 'ticks' });
    const pass = encoder.beginComputePass({ label: `${ticks} ticks` });
    const learning = new Set(classes.filter((cls) => cls.learnedUsers.some((u) => u !== null)));
    for (let t = 0; t < ticks; t++) {
      for (const cls of classes) {
        const bg = this.bindGroups(cls);
        const pipes = cls.pipelines!;
        pass.setPipeline(pipes.dense);
        pass.setBindGroup(0, bg.dense);
        pass.dispatchWorkgroups(cls.K / cls.wgDense, cls.capacity);
        pass.setPipeline(pipes.visit);
        pass.setBindGroup(0, bg.visit);
        pass.dispatchWorkgroups(cls.capacity);
        if (learning.has(cls)) {
          pass.setPipeline(pipes.learn);
          pass.setBindGroup(0, bg.learn);
          pass.dispatchWorkgroups(cls.K / cls.wgLearn, cls.K, cls.learnedCapacity);
        }
      }
    }
    pass.end();
    // Phase 1: every header of the classes involved, into one staging buffer.
    let headerBytes = 0;
    const headerOffsets = new Map<SizeClass, number>();
    for (const cls of classes) {
      headerOffsets.set(cls, headerBytes);
      headerBytes += cls.capacity * HEADER_SIZE;
    }
    const hStage = this.staging('header', headerBytes);
    for (const cls of classes) encoder.copyBufferToBuffer(cls.buffers.headers, 0, hStage, headerOffsets.get(cls)!, cls.capacity * HEADER_SIZE);
    const headerAt = new Map(sims.map((sim) => [sim, headerOffsets.get(sim.cls)! + sim.slot * HEADER_SIZE]));
    device.queue.submit([encoder.finish()]);
    await hStage.mapAsync(MAP_READ, 0, headerBytes);
    const headers = hStage.getMappedRange(0, headerBytes).slice(0);
    hStage.unmap();
    const hv = new DataView(headers);

    interface Pending {
      sim: Sim;
      recCount: number;
      snapCount: number;
      recAt: number;
      snapAt: number;
    }
    const pending: Pending[] = [];
    let payloadBytes = 0;
    for (const sim of sims) {
      const at = headerAt.get(sim)!;
      sim.status = SIM_STATUSES[hv.getUint32(at + H_STATUS, true)] ?? 'failed';
      sim.step = hv.getUint32(at + H_STEP, true);
      sim.restart = hv.getUint32(at + H_RESTART, true);
      sim.remaining = sim.status === 'running' ? hv.getUint32(at + H_BUDGET, true) : 0;
      sim.revisit = hv.getUint32(at + H_REVISIT, true) !== 0;
      const recCount = hv.getUint32(at + H_REC, true);
      const snapCount = hv.getUint32(at + H_SNAP, true);
      if (recCount === 0 && snapCount === 0) continue;
      const p: Pending = { sim, recCount, snapCount, recAt: payloadBytes, snapAt: 0 };
      payloadBytes += recCount * RECORD_SIZE;
      p.snapAt = payloadBytes;
      if (snapCount > 0) payloadBytes += this.snapshotSpan(sim, snapCount);
      pending.push(p);
    }
    if (pending.length === 0) return;

    // Phase 2: only the new records and snapshots.
    const pStage = this.staging('payload', payloadBytes);
    const copy = device.createCommandEncoder({ label: 'payload' });
    for (const p of pending) {
      const { sim } = p;
      const b = sim.cls.buffers;
      if (p.recCount > 0) copy.copyBufferToBuffer(b.records, sim.slot * sim.cls.recCap * RECORD_SIZE, pStage, p.recAt, p.recCount * RECORD_SIZE);
      if (p.snapCount > 0) {
        copy.copyBufferToBuffer(b.snaps, sim.slot * sim.cls.snapCap * 2 * sim.cls.K * 4, pStage, p.snapAt, this.snapshotSpan(sim, p.snapCount));
      }
    }
    device.queue.submit([copy.finish()]);
    await pStage.mapAsync(MAP_READ, 0, payloadBytes);
    const payload = pStage.getMappedRange(0, payloadBytes).slice(0);
    pStage.unmap();
    // The rings are consumed: reset their counts before the next submit.
    for (const p of pending) {
      this.device.queue.writeBuffer(p.sim.cls.buffers.headers, p.sim.slot * HEADER_SIZE + H_REC, new Uint32Array([0, 0]));
    }
    for (const p of pending) {
      const list = out.get(p.sim.id) ?? [];
      out.set(p.sim.id, list);
      if (p.recCount === 0) continue;
      const raw = readFromArrayBuffer(payload.slice(p.recAt, p.recAt + p.recCount * RECORD_SIZE), d.arrayOf(GpuRecord, p.recCount));
      for (const r of raw) list.push(this.toRecord(p.sim, r, payload, p.snapAt));
    }
  }

  /** Bytes of `count` consecutive snapshot entries of a simulation (the last one cut after its 2k floats). */
  private snapshotSpan(sim: Sim, count: number): number {
    return ((count - 1) * 2 * sim.cls.K + 2 * sim.k) * 4;
  }

  private toRecord(sim: Sim, r: d.Infer<typeof GpuRecord>, payload: ArrayBuffer, snapAt: number): TickRecord {
    // A metric the visit found not finite is NaN here, as on the CPU (its clamped value is meaningless).
    const metric = (value: number, bit: number): number => (r.nonFinite & bit ? NaN : value);
    const record: TickRecord = {
      step: r.step,
      restart: r.restart,
      n: r.n,
      flags: r.flags,
      metrics: {
        resonanceStrength: metric(r.resonance, 1),
        coherence: metric(r.coherence, 2),
        entropy: metric(r.entropy, 4),
        locality: metric(r.locality, 8),
        dominance: metric(r.dominance, 16),
        plateauDetected: r.plateau !== 0,
      },
      gamma: r.gamma,
      lnNu: r.lnNu,
      controlled: r.controlled,
    };
    if (r.snap !== NONE) {
      const k = sim.k;
      const at = snapAt + r.snap * 2 * sim.cls.K * 4;
      const theta = new Float32Array(payload, at, k);
      const mass = new Float32Array(payload, at + k * 4, k);
      const nu = Math.exp(r.lnNu);
      const phases = new Float64Array(k);
      const amplitudes = new Float64Array(k);
      for (let i = 0; i < k; i++) {
        phases[i] = theta[i]!;
        amplitudes[i] = sim.l2 ? nu * Math.sqrt(mass[i]!) : nu * mass[i]!;
      }
      record.phases = phases;
      record.amplitudes = amplitudes;
    }
    return record;
  }

  private staging(which: 'header' | 'payload', bytes: number): GPUBuffer {
    const current = which === 'header' ? this.headerStaging : this.payloadStaging;
    if (current && current.size >= bytes) return current;
    current?.destroy();
    const size = Math.max(bytes, (current?.size ?? 0) * 2, 4096);
    const buffer = this.device.createBuffer({ label: `${which} staging`, size: align(size, 4), usage: USAGE_MAP_READ | USAGE_COPY_DST });
    if (which === 'header') this.headerStaging = buffer;
    else this.payloadStaging = buffer;
    return buffer;
  }

  // ---- classes, buffers, uploads ----

  private classFor(K: number): SizeClass {
    const existing = this.classes.get(K);
    if (existing) return existing;
    const lim = this.device.limits;
    const inv = Math.min(lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX);
    const mem = lim.maxComputeWorkgroupStorageSize;
    let wgDense = pow2Floor(Math.min(inv, K, this.wgPref.dense));
    while (wgDense > 1 && wgDense * 24 > mem) wgDense /= 2;
    let wgVisit = pow2Floor(Math.min(inv, K, this.wgPref.visit));
    while (wgVisit > 1 && wgVisit * 52 + HEADER_SIZE > mem) wgVisit /= 2;
    const wgLearn = pow2Floor(Math.min(inv, K, this.wgPref.learn));
    const recCap = this.ticksPerSubmit;
    const snapCap = Math.max(2, Math.min(this.ticksPerSubmit, Math.floor(this.snapshotRingBytes / (2 * K * 4))));
    const cls: SizeClass = {
      K,
      recCap,
      snapCap,
      wgDense,
      wgVisit,
      wgLearn,
      capacity: 0,
      slots: [],
      learnedCapacity: 0,
      learnedUsers: [],
      buffers: this.allocate(K, recCap, snapCap, 4, 0),
      bindGroups: null,
      pipelines: null,
    };
    cls.capacity = 4;
    cls.slots = new Array<Sim | null>(4).fill(null);
    this.device.queue.writeBuffer(cls.buffers.learnedSlots, 0, new Uint32Array([NONE]));
    this.classes.set(K, cls);
    return cls;
  }

  private allocate(K: number, recCap: number, snapCap: number, capacity: number, learnedCapacity: number): ClassBuffers {
    const lim = this.device.limits;
    const max = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
    const make = (name: string, bytes: number, extra = 0): GPUBuffer => {
      const size = align(Math.max(bytes, 16), 16);
      if (size > max) {
        throw new Error(
          `WebGPU engine: size class k <= ${K} needs ${size} bytes for its ${name} buffer (${capacity} slots), above this device's ` +
            `maxStorageBufferBindingSize/maxBufferSize ${max}`,
        );
      }
      return this.device.createBuffer({ label: `${name} k${K}`, size, usage: USAGE_STORAGE | USAGE_COPY_DST | USAGE_COPY_SRC | extra });
    };
    const elems = capacity * K;
    return {
      params: make('params', capacity * PARAMS_SIZE),
      headers: make('headers', capacity * HEADER_SIZE),
      elemF: make('elemF', elems * 16),
      elemG: make('elemG', elems * 16),
      primes: make('primes', elems * 4),
      state: make('state', elems * 8),
      zq: make('zq', elems * 16),
      records: make('records', capacity * recCap * RECORD_SIZE),
      snaps: make('snapshots', capacity * snapCap * 2 * K * 4),
      learned: make('learned', learnedCapacity * K * K * 4),
      learnedSlots: make('learnedSlots', Math.max(1, learnedCapacity) * 4),
    };
  }

  private growClass(cls: SizeClass, capacity: number): void {
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (capacity > maxGroups) {
      throw new Error(`WebGPU engine: more than ${maxGroups} simulations of size class k <= ${cls.K} (maxComputeWorkgroupsPerDimension)`);
    }
    const old = cls.buffers;
    const next = this.allocate(cls.K, cls.recCap, cls.snapCap, capacity, cls.learnedCapacity);
    const encoder = this.device.createCommandEncoder({ label: 'grow' });
    const keep: (keyof ClassBuffers)[] = ['params', 'headers', 'elemF', 'elemG', 'primes', 'state', 'learned', 'learnedSlots'];
    for (const name of keep) encoder.copyBufferToBuffer(old[name], 0, next[name], 0, Math.min(old[name].size, next[name].size));
    this.device.queue.submit([encoder.finish()]);
    for (const b of Object.values(old)) b.destroy();
    cls.buffers = next;
    cls.slots.length = capacity;
    cls.slots.fill(null, cls.capacity);
    cls.capacity = capacity;
    cls.bindGroups = null;
  }

  private growLearned(cls: SizeClass, learnedCapacity: number): void {
    const { K } = cls;
    const lim = this.device.limits;
    const max = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
    const entry = K * K * 4;
    if (entry * (cls.learnedCapacity + 1) > max) {
      throw new Error(
        `WebGPU engine: no room for another learned simulation of size class k <= ${K}: ${cls.learnedCapacity} learned matrices of ` +
          `${entry} bytes fill this device's maxStorageBufferBindingSize ${max}`,
      );
    }
    learnedCapacity = Math.min(learnedCapacity, Math.floor(max / entry));
    const old = cls.buffers;
    const make = (name: string, bytes: number): GPUBuffer =>
      this.device.createBuffer({ label: `${name} k${K}`, size: align(Math.max(bytes, 16), 16), usage: USAGE_STORAGE | USAGE_COPY_DST | USAGE_COPY_SRC });
    const learned = make('learned', learnedCapacity * entry);
    const learnedSlots = make('learnedSlots', learnedCapacity * 4);
    const encoder = this.device.createCommandEncoder({ label: 'grow learned' });
    if (cls.learnedCapacity > 0) {
      encoder.copyBufferToBuffer(old.learned, 0, learned, 0, cls.learnedCapacity * entry);
      encoder.copyBufferToBuffer(old.learnedSlots, 0, learnedSlots, 0, cls.learnedCapacity * 4);
    }
    this.device.queue.submit([encoder.finish()]);
    const free = new Uint32Array(learnedCapacity - cls.learnedCapacity).fill(NONE);
    this.device.queue.writeBuffer(learnedSlots, cls.learnedCapacity * 4, free);
    old.learned.destroy();
    old.learnedSlots.destroy();
    cls.buffers = { ...old, learned, learnedSlots };
    cls.learnedUsers.length = learnedCapacity;
    cls.learnedUsers.fill(null, cls.learnedCapacity);
    cls.learnedCapacity = learnedCapacity;
    cls.bindGroups = null;
  }

  /** SimParams of one simulation from its (effective) spec: at add, and when a space patches params. */
  private writeParams(sim: Sim, basis: BasisConstants = basisConstants(sim.spec)): void {
    const { spec, k, cls, slot } = sim;
    const q = this.device.queue;
    const b = cls.buffers;
    const f = Math.fround;
    const vmax = f(basis.vmax);
    const target = spec.target;
    let opts = 0;
    if (spec.semantic) opts |= OPT.SEMANTIC;
    if (spec.norm === 'L2') opts |= OPT.L2;
    if (spec.entropyBase === 'kl_to_prior') opts |= OPT.KL;
    if (target) opts |= OPT.TARGET;
    if (target && !spec.enforceUnitNorm) opts |= OPT.NORM_CHANNEL;
    if (isSpace(spec)) opts |= OPT.SPACE;
    const learnRate = f(spec.dt * spec.learningRate);
    const params = new ArrayBuffer(PARAMS_SIZE);
    writeToArrayBuffer(params, SimParams, {
      k,
      seed: spec.seed >>> 0,
      mixer: MIXER_CODE[spec.mixer],
      opts,
      targetOp: target ? TARGET_CODE[target.operator] : 0,
      steps: spec.steps + sim.extraSteps,
      restarts: spec.restarts,
      plateauT: spec.plateauT,
      convNeed: Math.max(8, Math.ceil(spec.plateauT / 10)),
      metricsInterval: spec.metricsInterval,
      snapshotsInterval: spec.snapshotsInterval,
      sweeps: spec.projectorSweeps,
      learnedIndex: sim.learnedIndex,
      dt: spec.dt,
      hLambda: spec.dt * spec.lambda,
      hPenalty: (spec.dt * spec.lambdaPrime) / vmax,
      gammaInit: Math.min(spec.gamma0, spec.gammaMax),
      gammaGrowth: spec.gammaGrowth,
      gammaMax: spec.gammaMax,
      temp0: spec.temperature0,
      beta: spec.beta,
      targetValue: target ? target.value : 0,
      convThreshold: target ? target.value - 0.02 : 0,
      plateauEps: spec.plateauEps,
      vmax,
      kernelScale: basis.kernelScale,
      bias: spec.localityBias,
      lnK: Math.log(k),
      jitter: Math.PI * Math.min(1, spec.temperature0),
      learnRate,
      learnKeep: 1 - learnRate,
      collapseThreshold: collapseThresholdOf(spec),
    });
    q.writeBuffer(b.params, slot * PARAMS_SIZE, params);
  }

  /**
   * Host constants (f64, rounded to f32 once by the upload) and the initial state of one simulation, or
   * the state of a checkpoint (rounded to f32 when it comes from the f64 CPU engine).
   */
  private upload(sim: Sim, restored: SimState | null): void {
    const { spec, k, cls, slot } = sim;
    const { K } = cls;
    const q = this.device.queue;
    const b = cls.buffers;
    const basis = basisConstants(spec);
    this.writeParams(sim, basis);

    const header = new ArrayBuffer(HEADER_SIZE);
    const r = restored;
    writeToArrayBuffer(header, SimHeader, {
      status: r ? SIM_STATUSES.indexOf(r.status) : 0,
      n: r?.n ?? 0,
      restart: r?.restart ?? 0,
      step: r?.step ?? 0,
      budget: 0,
      recCount: 0,
      snapCount: 0,
      didUpdate: 0,
      gamma: r ? r.gamma : Math.min(spec.gamma0, spec.gammaMax),
      temp: r ? r.temperature : spec.temperature0,
      lnNu: r?.lnNu ?? 0,
      ebest: r && !(r.ebest >= F32_MAX) ? r.ebest : F32_MAX,
      plateauCount: r?.plateauCount ?? 0,
      convCount: r?.convCount ?? 0,
      revisit: r?.revisit ? 1 : 0,
      snapAt: r?.snapshotAt ?? NONE,
      pArmed: r?.space && !r.space.plateauArmed ? 0 : 1,
      pFalse: r?.space?.plateauFalse ?? 0,
      cArmed: r?.space && !r.space.collapseArmed ? 0 : 1,
      cFalse: r?.space?.collapseFalse ?? 0,
    });
    q.writeBuffer(b.headers, slot * HEADER_SIZE, header);

    const elemF = new Float32Array(4 * k);
    const elemG = new Float32Array(4 * k);
    const state = new Float32Array(2 * k);
    for (let i = 0; i < k; i++) {
      elemF[4 * i] = Math.sqrt(basis.logP[i]!);
      elemF[4 * i + 1] = basis.logP[i]!;
      elemF[4 * i + 2] = basis.omega[i]!;
      elemF[4 * i + 3] = basis.theta0[i]!;
      elemG[4 * i] = basis.mass0[i]!;
      elemG[4 * i + 1] = basis.weights[i]!;
      // centred logs, from f64 (docs/model.md section 9): mu, Var_P and the prime penalty read only these
      elemG[4 * i + 2] = basis.logC[i]!;
      state[2 * i] = r ? r.phases[i]! : basis.theta0[i]!;
      state[2 * i + 1] = r ? r.masses[i]! : basis.mass0[i]!;
    }
    const e0 = slot * K;
    q.writeBuffer(b.elemF, e0 * 16, elemF);
    q.writeBuffer(b.elemG, e0 * 16, elemG);
    q.writeBuffer(b.primes, e0 * 4, Uint32Array.from(basis.primes));
    q.writeBuffer(b.state, e0 * 8, state);
    if (sim.learnedIndex !== NONE) {
      const encoder = this.device.createCommandEncoder({ label: 'clear learned' });
      encoder.clearBuffer(b.learned, sim.learnedIndex * K * K * 4, K * K * 4);
      this.device.queue.submit([encoder.finish()]);
      if (r?.learned) {
        // rows of k at the pool's PAD_K stride; the padding stays 0
        const A = new Float32Array(k * K);
        for (let i = 0; i < k; i++) A.set(r.learned.subarray(i * k, i * k + k), i * K);
        q.writeBuffer(b.learned, sim.learnedIndex * K * K * 4, A);
      }
      q.writeBuffer(b.learnedSlots, sim.learnedIndex * 4, new Uint32Array([slot]));
    }
  }

  private bindGroups(cls: SizeClass): NonNullable<SizeClass['bindGroups']> {
    if (cls.bindGroups) return cls.bindGroups;
    const { params, headers, elemF, elemG, primes, state, learned, learnedSlots, zq, records, snaps } = cls.buffers;
    cls.bindGroups = {
      dense: bindGroupOf(this.device, 'dense', this.layouts.dense, { params, headers, elemF, primes, state, learned, zq }, `dense k${cls.K}`),
      visit: bindGroupOf(this.device, 'visit', this.layouts.visit, { params, headers, elemF, elemG, state, zq, records, snaps }, `visit k${cls.K}`),
      learn: bindGroupOf(this.device, 'learn', this.layouts.learn, { params, headers, state, learnedSlots, learned }, `learn k${cls.K}`),
    };
    return cls.bindGroups;
  }

  private async ensurePipelines(cls: SizeClass): Promise<void> {
    if (cls.pipelines) return;
    const base = { PAD_K: cls.K, REC_CAP: cls.recCap, SNAP_CAP: cls.snapCap };
    // One at a time: Dawn's event processing does not take overlapping pipeline compilations well.
    const dense = await this.pipeline('dense', this.layouts.dense, { ...base, WG_D: cls.wgDense });
    const visit = await this.pipeline('visit', this.layouts.visit, { ...base, WG_V: cls.wgVisit });
    const learn = await this.pipeline('learn', this.layouts.learn, { ...base, WG_L: cls.wgLearn });
    cls.pipelines = { dense, visit, learn };
  }

  private async pipeline(name: 'dense' | 'visit' | 'learn', layout: GPUBindGroupLayout, constants: Record<string, number>): Promise<GPUComputePipeline> {
    let module = this.modules.get(name);
    if (!module) {
      module = this.device.createShaderModule({ label: name, code: this.sources[name] });
      const info = await module.getCompilationInfo();
      const errors = info.messages.filter((m) => m.type === 'error');
      if (errors.length > 0) {
        throw new Error(`WebGPU engine: ${name}.wgsl does not compile: ${errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('; ')}`);
      }
      this.modules.set(name, module);
    }
    return this.device.createComputePipelineAsync({
      label: `${name} ${JSON.stringify(constants)}`,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: name, constants },
    });
  }

  private simOf(id: number): Sim {
    const sim = this.sims.get(id);
    if (!sim) throw new Error(`WebGPU engine: no simulation ${id}`);
    return sim;
  }

  private assertAlive(): void {
    if (this.destroyed) throw new Error('WebGPU engine: used after destroy()');
  }
}

/**
 * The GPU counts global steps in u32: the longest run (every restart to its last step) must fit, and so
 * must a restored step and a snapshot step (NONE = 2^32 - 1 marks "no snapshot step").
 */
function checkStepRange(steps: number, restarts: number, step: number, snapshotAt: number | null): void {
  if (steps * (restarts + 1) >= 0xffffffff) {
    throw new Error(`WebGPU engine: steps x (restarts + 1) = ${steps * (restarts + 1)} global steps do not fit the GPU's u32 step counter`);
  }
  if (step >= 0xffffffff || (snapshotAt !== null && snapshotAt >= 0xffffffff)) {
    throw new Error(`WebGPU engine: step ${Math.max(step, snapshotAt ?? 0)} does not fit the GPU's u32 step counter`);
  }
}

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

function describeDevice(device: GPUDevice): string {
  const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const name = info ? [info.vendor, info.architecture, info.device, info.description].filter((s) => s).join(' / ') : '';
  const level = device.features.has('core-features-and-limits') ? 'core' : 'compatibility';
  return `${name || 'WebGPU adapter'} (${level})`;
}
