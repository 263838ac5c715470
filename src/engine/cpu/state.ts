/**
 * One simulation's memory in the CPU engine: host constants, dynamic state and scratch, all in typed arrays
 * (SharedArrayBuffer-backed where available, so worker threads step them in place).
 */
import { basisConstants, type BasisConstants, kernelMatrix } from '../../model/basis.js';
import type { SimSpec } from '../../model/spec.js';
import { type Precision, roundingOf, SIM_STATUSES } from '../types.js';
import type { SharedArena } from './wasm.js';

export type Vec = Float64Array | Float32Array;

/** Slots of CpuSimState.scalars. */
export const S = {
  N: 0,
  RESTART: 1,
  STEP: 2,
  GAMMA: 3,
  TEMP: 4,
  LNNU: 5,
  EBEST: 6,
  PLATEAU_COUNT: 7,
  CONV_COUNT: 8,
  STATUS: 9,
  /** The per-restart steps limit: spec.steps + EXTRA_STEPS. */
  STEPS: 10,
  /** Sum of the patched extraSteps. */
  EXTRA_STEPS: 11,
  /** Pending one-shot snapshot step (patch snapshotAt), -1 when none. */
  SNAP_AT: 12,
  /** 1: the current state was already visited (a completed run given extra steps); the next tick updates it. */
  REVISIT: 13,
  /** Space mode: 1 while the plateau event is armed. */
  P_ARMED: 14,
  /** Space mode: consecutive visits with plateauDetected false since the plateau event fired. */
  P_FALSE: 15,
  /** Space mode: 1 while the collapse event is armed. */
  C_ARMED: 16,
  /** Space mode: consecutive visits with dominance < collapseThreshold since the collapse event fired. */
  C_FALSE: 17,
} as const;
const SCALARS = 18;

const shared = typeof SharedArrayBuffer !== 'undefined';

export function allocVec(length: number, precision: Precision): Vec {
  const bytes = length * (precision === 'f32' ? 4 : 8);
  const buffer = shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);
  return precision === 'f32' ? new Float32Array(buffer) : new Float64Array(buffer);
}

/** Everything a tick needs; plain data so it can be posted to a worker and rebuilt there. */
export interface CpuSimState {
  id: number;
  spec: SimSpec;
  precision: Precision;
  k: number;
  /** Simulations with equal keys share `kernel` and are stepped together. */
  kernelKey: string;
  /** Centred logs l_i - l_ref (docs/model.md section 9): mu, Var_P and the prime penalty use only differences. */
  logC: Vec;
  omega: Vec;
  theta0: Vec;
  prior: Vec;
  weights: Vec;
  vmax: number;
  /** Kn, row-major k x k; shared between simulations with the same kernel. */
  kernel: Vec;
  /** Learned matrix A (k x k) for mixer `learned`, else empty. */
  learned: Vec;
  theta: Vec;
  mass: Vec;
  /** The phase increments of the current state's step, formed when it is visited (step.ts, measure). */
  dTheta: Vec;
  scalars: Float64Array;
  /**
   * Scratch of the dense pass. In TypeScript: float64 always (f32 mode stores f32-rounded values), so the
   * hot loop converts only the kernel entries. With the WebAssembly dense pass (`inArena`): in the mode's
   * precision, in the engine's shared arena beside the kernel.
   */
  ampCos: Vec;
  ampSin: Vec;
  amp: Vec;
  zRe: Vec;
  zIm: Vec;
  q: Vec;
  /** True when the kernel and the per-prime vectors live in the WebAssembly arena (wasm.ts). */
  inArena: boolean;
  /**
   * cos theta_j and sin theta_j of the current state (rounded as the mode stores them), formed with the
   * amplitudes of its dense pass, and ln P_j, formed when it is measured: the visit reads them instead of
   * computing each transcendental again (step.ts). Float64; shared memory, as a gang's threads form them.
   */
  cosT: Float64Array;
  sinT: Float64Array;
  lnP: Float64Array;
  /**
   * In the arena only (`inArena`; else 0 and empty): the address of the record of PRIME_FIELDS that the
   * WebAssembly per-prime loops read (wasm/primes.ts), and the block where their measure writes its sums.
   */
  primeRecord: number;
  measureOut: Float64Array;
}

/**
 * The vectors of a simulation that the WebAssembly per-prime loops address, in the order of their record
 * (wasm/primes.ts keeps the same slots), then the measure out block.
 */
export const PRIME_FIELDS = ['theta', 'mass', 'logC', 'omega', 'prior', 'weights', 'dTheta', 'cosT', 'sinT', 'lnP', 'amp', 'ampCos', 'ampSin', 'zRe', 'zIm', 'q'] as const;
/** The float64 slots of the measure out block, in the order wasm/primes.ts writes them. */
export const MEASURE_SLOTS = ['pc', 'ps', 'num', 'den', 'ent', 'mean', 'dom', 'wc', 'ws', 'wsum', 'variance', 'badMass', 'badPhase', 'stepOk'] as const;
export type MeasureSlot = (typeof MEASURE_SLOTS)[number];
export const MEASURE_SLOT = Object.fromEntries(MEASURE_SLOTS.map((name, slot) => [name, slot])) as Record<MeasureSlot, number>;
const RECORD_BYTES = (PRIME_FIELDS.length + 1) * 4;

/** A vector of the arena, in `precision`. */
function arenaVec(arena: SharedArena, length: number, precision: Precision): Vec {
  const bytes = precision === 'f32' ? 4 : 8;
  const at = arena.alloc(length * bytes);
  const v = precision === 'f32' ? arena.f32(at, length) : arena.f64(at, length);
  v.fill(0);
  return v;
}

/** Gives a vector of the arena back. */
export function releaseVec(arena: SharedArena, v: Vec): void {
  arena.release(v.byteOffset, v.byteLength);
}

/** Gives back to the arena every block of a state there except its kernel (which may be shared). */
export function releaseState(arena: SharedArena, s: CpuSimState): void {
  if (!s.inArena) return;
  for (const field of PRIME_FIELDS) releaseVec(arena, s[field]);
  releaseVec(arena, s.measureOut);
  arena.release(s.primeRecord, RECORD_BYTES);
}

function toVec(values: Float64Array, precision: Precision): Vec {
  const v = allocVec(values.length, precision);
  v.set(values);
  return v;
}

/** Identity of the normalised kernel, so that simulations on the same basis share one matrix. */
export function kernelKey(spec: SimSpec, precision: Precision): string {
  return [precision, spec.mixer, spec.localityBias, spec.semantic, spec.primes.join(',')].join('|');
}

/** Kn in `precision`; in the arena when one is given (the WebAssembly dense pass reads it there). */
export function buildKernel(spec: SimSpec, basis: BasisConstants, precision: Precision, arena?: SharedArena): Vec {
  const values = kernelMatrix(spec, basis);
  if (!arena) return toVec(values, precision);
  const v = arenaVec(arena, values.length, precision);
  v.set(values);
  return v;
}

/** `arena`: the loops run in WebAssembly; the kernel (unless shared) and every per-prime vector are made there. */
export function createSimState(id: number, spec: SimSpec, precision: Precision, kernel: Vec | null, arena?: SharedArena): CpuSimState {
  const basis = basisConstants(spec);
  const k = basis.k;
  const round = roundingOf(precision);
  // With an arena, every vector the per-prime loops read lives there, in the mode's precision; what was
  // taken from it goes back if a later block does not fit (the arena is bounded).
  const taken: Vec[] = [];
  const vec = (values: Float64Array | number, p: Precision = precision): Vec => {
    const length = typeof values === 'number' ? values : values.length;
    const v = arena ? arenaVec(arena, length, p) : allocVec(length, p);
    if (arena) taken.push(v);
    if (typeof values !== 'number') v.set(values);
    return v;
  };
  // The TypeScript dense pass keeps its scratch in float64 (see ampCos).
  const scratch = (): Vec => vec(k, arena ? precision : 'f64');
  try {
    let ownKernel = kernel;
    if (!ownKernel) {
      ownKernel = buildKernel(spec, basis, precision, arena);
      if (arena) taken.push(ownKernel);
    }
    const state: CpuSimState = {
      id,
      spec,
      precision,
      k,
      kernelKey: kernelKey(spec, precision),
      logC: vec(basis.logC),
      omega: vec(basis.omega),
      theta0: toVec(basis.theta0, precision),
      prior: vec(basis.mass0),
      weights: vec(basis.weights),
      vmax: round(basis.vmax),
      kernel: ownKernel,
      learned: allocVec(spec.mixer === 'learned' ? k * k : 0, precision),
      theta: vec(basis.theta0),
      mass: vec(basis.mass0),
      dTheta: vec(k),
      scalars: new Float64Array(shared ? new SharedArrayBuffer(SCALARS * 8) : new ArrayBuffer(SCALARS * 8)),
      ampCos: scratch(),
      ampSin: scratch(),
      amp: scratch(),
      zRe: scratch(),
      zIm: scratch(),
      q: scratch(),
      inArena: arena !== undefined,
      cosT: vec(k, 'f64') as Float64Array,
      sinT: vec(k, 'f64') as Float64Array,
      lnP: vec(k, 'f64') as Float64Array,
      primeRecord: 0,
      measureOut: arena ? (vec(MEASURE_SLOTS.length, 'f64') as Float64Array) : new Float64Array(0),
    };
    if (arena) {
      state.primeRecord = arena.alloc(RECORD_BYTES);
      const slots = arena.u32(state.primeRecord, PRIME_FIELDS.length + 1);
      PRIME_FIELDS.forEach((field, slot) => (slots[slot] = state[field].byteOffset));
      slots[PRIME_FIELDS.length] = state.measureOut.byteOffset;
    }
    resetRestart(state, 0);
    const sc = state.scalars;
    sc[S.STEP] = 0;
    sc[S.LNNU] = 0;
    sc[S.STATUS] = SIM_STATUSES.indexOf('running');
    sc[S.STEPS] = spec.steps;
    sc[S.EXTRA_STEPS] = 0;
    sc[S.SNAP_AT] = -1;
    sc[S.REVISIT] = 0;
    sc[S.P_ARMED] = 1;
    sc[S.P_FALSE] = 0;
    sc[S.C_ARMED] = 1;
    sc[S.C_FALSE] = 0;
    return state;
  } catch (err) {
    if (arena) for (const v of taken) releaseVec(arena, v);
    throw err;
  }
}

/** Counters and schedules of a new restart (docs/engine.md); phases are re-seeded by the caller. */
export function resetRestart(state: CpuSimState, restart: number): void {
  const round = roundingOf(state.precision);
  const sc = state.scalars;
  sc[S.N] = 0;
  sc[S.RESTART] = restart;
  sc[S.GAMMA] = round(Math.min(state.spec.gamma0, state.spec.gammaMax));
  sc[S.TEMP] = round(state.spec.temperature0);
  sc[S.EBEST] = Infinity;
  sc[S.PLATEAU_COUNT] = 0;
  sc[S.CONV_COUNT] = 0;
}
