/**
 * The WebGPU engine's GPU contract, written once: the structs the host and the shaders share (typegpu
 * schemas), the constants both sides use, and each pass's named bindings. The WGSL structs and constants
 * are generated from them (shaders/layout.wgsl, by wgslLayout in wgsl-layout.ts: tgpu.resolve of the
 * schemas and constants; a test keeps the file current), and so are each pass's binding declarations,
 * bind group layout and bind groups (by binding name, never by position); the shaders only use the
 * names. No Node imports: browser bundles use it too.
 */
import { d } from 'typegpu';
import { F32_MAX } from '../../model/config.js';
import { JITTER_STREAM, XI_SCALE } from '../../model/rng.js';
import { Flag, SIM_STATUSES } from '../types.js';

// ---- structs ----

/** Per-simulation constants, written by the host (f64 on the host, rounded to f32 once). */
export const SimParams = d
  .struct({
    /** 0: an empty slot. */
    k: d.u32,
    seed: d.u32,
    mixer: d.u32,
    opts: d.u32,
    targetOp: d.u32,
    /** Per-restart steps limit: spec steps + patched extra steps. */
    steps: d.u32,
    restarts: d.u32,
    plateauT: d.u32,
    /** max(8, ceil(plateauT / 10)). */
    convNeed: d.u32,
    metricsInterval: d.u32,
    snapshotsInterval: d.u32,
    /** projectorSweeps. */
    sweeps: d.u32,
    /** Index into the learned-matrix pool, NONE unless mixer learned. */
    learnedIndex: d.u32,
    dt: d.f32,
    /** f32(dt * lambda). */
    hLambda: d.f32,
    /** f32(dt * lambdaPrime / vmax). */
    hPenalty: d.f32,
    /** f32(min(gamma0, gammaMax)). */
    gammaInit: d.f32,
    gammaGrowth: d.f32,
    gammaMax: d.f32,
    temp0: d.f32,
    beta: d.f32,
    targetValue: d.f32,
    /** f32(target - 0.02). */
    convThreshold: d.f32,
    plateauEps: d.f32,
    vmax: d.f32,
    /** Kn = kernelScale * K (host f64, docs/model.md section 2). */
    kernelScale: d.f32,
    /** localityBias b. */
    bias: d.f32,
    lnK: d.f32,
    /** f32(pi * min(1, temperature0)). */
    jitter: d.f32,
    /** f32(dt * learningRate). */
    learnRate: d.f32,
    /** f32(1 - learnRate). */
    learnKeep: d.f32,
    /** Space mode: the collapse event's dominance threshold. */
    collapseThreshold: d.f32,
  })
  .$name('SimParams');

/**
 * Per-simulation dynamic scalars; owned by the GPU except budget, recCount and snapCount, which the host
 * sets between submits, and the whole header, which the host writes between advances (add with a
 * state, patch).
 */
export const SimHeader = d
  .struct({
    status: d.u32,
    /** Step within the restart. */
    n: d.u32,
    restart: d.u32,
    /** Global step. */
    step: d.u32,
    /** Ticks left in the current advance(). */
    budget: d.u32,
    /** Records written since the host last consumed the ring. */
    recCount: d.u32,
    /** Snapshots written since the host last consumed the ring. */
    snapCount: d.u32,
    /** 1 when this tick applied the update (the learn pass runs only then). */
    didUpdate: d.u32,
    gamma: d.f32,
    /** Running product temperature0 * beta^n. */
    temp: d.f32,
    lnNu: d.f32,
    ebest: d.f32,
    plateauCount: d.u32,
    convCount: d.u32,
    /**
     * 1: the current state was visited when a completed run ended and the host has since given it extra
     * steps; the next tick applies its update without a record (host-set).
     */
    revisit: d.u32,
    /** Pending one-shot snapshot step (host-set), NONE when none. */
    snapAt: d.u32,
    /** Space mode: 1 while the plateau event is armed. */
    pArmed: d.u32,
    /** Space mode: consecutive visits with plateauDetected false since it fired. */
    pFalse: d.u32,
    /** Space mode: 1 while the collapse event is armed. */
    cArmed: d.u32,
    /** Space mode: consecutive visits with dominance < collapseThreshold since it fired. */
    cFalse: d.u32,
  })
  .$name('SimHeader');

/** One record of a visited state (docs/engine.md, "Records"). */
export const GpuRecord = d
  .struct({
    step: d.u32,
    restart: d.u32,
    n: d.u32,
    flags: d.u32,
    resonance: d.f32,
    coherence: d.f32,
    entropy: d.f32,
    locality: d.f32,
    dominance: d.f32,
    plateau: d.u32,
    gamma: d.f32,
    lnNu: d.f32,
    controlled: d.f32,
    /** Snapshot ring index, NONE without a snapshot. */
    snap: d.u32,
    /**
     * Bit m set: metric m (resonance, coherence, entropy, locality, dominance) is not finite; the host
     * reports it as NaN (a clamp would have made it a number).
     */
    nonFinite: d.u32,
    pad1: d.u32,
  })
  .$name('GpuRecord');

export const PARAMS_SIZE = d.sizeOf(SimParams);
export const HEADER_SIZE = d.sizeOf(SimHeader);
export const RECORD_SIZE = d.sizeOf(GpuRecord);
const headerAt = (field: keyof d.Infer<typeof SimHeader>): number => d.memoryLayoutOf(SimHeader, (h) => h[field]).offset;
export const H_STATUS = headerAt('status');
export const H_STEP = headerAt('step');
export const H_RESTART = headerAt('restart');
export const H_BUDGET = headerAt('budget');
export const H_REC = headerAt('recCount');
export const H_SNAP = headerAt('snapCount');
export const H_REVISIT = headerAt('revisit');
export const H_SNAPAT = headerAt('snapAt');
export const H_N = headerAt('n');
export const H_GAMMA = headerAt('gamma');
export const P_K = d.memoryLayoutOf(SimParams, (p) => p.k).offset;
export const P_STEPS = d.memoryLayoutOf(SimParams, (p) => p.steps).offset;
// The host writes these fields with one writeBuffer each.
if (headerAt('temp') !== H_GAMMA + 4) throw new Error('SimHeader: gamma, temp must be adjacent');
if (H_REC !== H_BUDGET + 4 || H_SNAP !== H_REC + 4) throw new Error('SimHeader: budget, recCount, snapCount must be adjacent');

// ---- constants ----

/** "None" in a u32 field (learnedIndex, snapAt, snap, a free learned-pool entry). */
export const NONE = 0xffffffff;
/** f32 max: the GPU's stand-in for +infinity (Ebest before the first state). */
export { F32_MAX };
export const MIXER_CODE = { local: 0, flow: 1, learned: 2 } as const;
export const TARGET_CODE = { R: 0, R_q: 1, custom: 2 } as const;
/** SimParams.opts bits. */
export const OPT = {
  SEMANTIC: 1,
  L2: 2,
  KL: 4,
  TARGET: 8,
  /** A target exists and enforceUnitNorm is false: lnNu moves. */
  NORM_CHANNEL: 16,
  /** Space mode: never ends (but failed), re-arming plateau and collapse events. */
  SPACE: 32,
} as const;

const u32 = (value: number): { type: 'u32'; value: number } => ({ type: 'u32', value });
const f32 = (value: number): { type: 'f32'; value: number } => ({ type: 'f32', value });

/** Every constant the shaders use, by its WGSL name. */
export const WGSL_CONSTANTS: Record<string, { type: 'u32' | 'f32'; value: number }> = {
  NONE: u32(NONE),
  /** f32(2 pi) and f32(pi), the values the CPU f32 engine rounds to. */
  TWO_PI_F: f32(Math.fround(2 * Math.PI)),
  PI_F: f32(Math.fround(Math.PI)),
  TINY: f32(1e-30),
  BIG: f32(F32_MAX),
  /** f32(e^-80): the floor of the mass in ln P. */
  EXP_M80: f32(Math.fround(Math.exp(-80))),
  /** 2^20 rad: a larger phase increment fails the step (docs/model.md section 9). */
  MAX_PHASE_STEP: f32(2 ** 20),
  /** The largest f32 x with e^x finite in f64: the reported amplitudes are e^lnNu a_i. */
  LN_F64_MAX: f32(709.7826538085938),
  /** sqrt(3) as docs/model.md writes it. */
  XI_SCALE: f32(XI_SCALE),
  /** The step index of the restart jitter draw. */
  JITTER_STREAM: u32(JITTER_STREAM),
  ...Object.fromEntries(Object.entries(MIXER_CODE).map(([name, code]) => [`MIXER_${name.toUpperCase()}`, u32(code)])),
  ...Object.fromEntries(Object.entries(OPT).map(([name, bit]) => [`OPT_${name}`, u32(bit)])),
  OP_R: u32(TARGET_CODE.R),
  OP_RQ: u32(TARGET_CODE.R_q),
  OP_CUSTOM: u32(TARGET_CODE.custom),
  // Record flags (docs/engine.md, "Records").
  ...Object.fromEntries(Object.entries(Flag).map(([name, bit]) => [`F_${name}`, u32(bit)])),
  // SimHeader.status: the index of the status in SIM_STATUSES.
  ...Object.fromEntries(SIM_STATUSES.map((status, code) => [`ST_${status.toUpperCase()}`, u32(code)])),
};

// ---- bindings ----

/** The structs the shaders share with the host, by their WGSL name. */
export const STRUCTS = { SimParams, SimHeader, GpuRecord };

type Element = keyof typeof STRUCTS | 'f32' | 'u32' | 'vec2<f32>' | 'vec4<f32>';
interface Binding {
  access: 'read' | 'read_write';
  /** The element type of the binding's runtime-sized array. */
  of: Element;
}
const read = (of: Element): Binding => ({ access: 'read', of });
const readWrite = (of: Element): Binding => ({ access: 'read_write', of });

/** Each pass's storage bindings of group 0, in binding order (the order of the keys). */
export const PASS_BINDINGS = {
  dense: {
    params: read('SimParams'),
    headers: read('SimHeader'),
    /** Per element (sqrt l_i, l_i, w_i, theta0_i). */
    elemF: read('vec4<f32>'),
    /** Per element p_i. */
    primes: read('u32'),
    /** Per element (theta_i, P_i). */
    state: read('vec2<f32>'),
    /** Learned matrices A (PAD_K x PAD_K each). */
    learned: read('f32'),
    /** Per element (Re z_i, Im z_i, q_i, the phase increment of the visit). */
    zq: readWrite('vec4<f32>'),
  },
  visit: {
    params: read('SimParams'),
    headers: readWrite('SimHeader'),
    elemF: read('vec4<f32>'),
    /** Per element (prior_i, custom weight_i, centred log, -). */
    elemG: read('vec4<f32>'),
    state: readWrite('vec2<f32>'),
    // read-write in the visit: it keeps each element's phase increment in zq.w
    zq: readWrite('vec4<f32>'),
    records: readWrite('GpuRecord'),
    snaps: readWrite('f32'),
  },
  learn: {
    params: read('SimParams'),
    headers: read('SimHeader'),
    state: read('vec2<f32>'),
    /** Learned-pool index -> simulation slot (NONE: free). */
    learnedSlots: read('u32'),
    learned: readWrite('f32'),
  },
} as const satisfies Record<string, Record<string, Binding>>;

export type Pass = keyof typeof PASS_BINDINGS;
/** The buffers of a pass's bind group, by binding name. */
export type PassBuffers<P extends Pass> = Record<keyof (typeof PASS_BINDINGS)[P], GPUBuffer>;

const STAGE_COMPUTE = 0x4;

/**
 * The binding declarations of a pass, from PASS_BINDINGS: what its WGSL is compiled after, with
 * shaders/layout.wgsl (generated by wgslLayout, src/engine/webgpu/wgsl-layout.ts) and common.wgsl.
 */
export function bindingDeclarations(pass: Pass): string {
  return Object.entries(PASS_BINDINGS[pass] as Record<string, Binding>)
    .map(([name, b], binding) => `@group(0) @binding(${binding}) var<storage, ${b.access}> ${name}: array<${b.of}>;`)
    .join('\n');
}

export function bindGroupLayoutOf(device: GPUDevice, pass: Pass): GPUBindGroupLayout {
  return device.createBindGroupLayout({
    label: pass,
    entries: Object.values(PASS_BINDINGS[pass] as Record<string, Binding>).map((b, binding) => ({
      binding,
      visibility: STAGE_COMPUTE,
      buffer: { type: b.access === 'read' ? 'read-only-storage' : 'storage' },
    })),
  });
}

export function bindGroupOf<P extends Pass>(device: GPUDevice, pass: P, layout: GPUBindGroupLayout, buffers: PassBuffers<P>, label: string): GPUBindGroup {
  const byName = buffers as Record<string, GPUBuffer>;
  return device.createBindGroup({
    label,
    layout,
    entries: Object.keys(PASS_BINDINGS[pass]).map((name, binding) => ({ binding, resource: { buffer: byName[name]! } })),
  });
}
