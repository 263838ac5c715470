/**
 * The Engine interface shared by the CPU and WebGPU engines. An engine owns resident simulations and
 * advances all of them by ticks (docs/engine.md); it returns only what the caller needs to see: records of
 * the visited states that carry metrics, snapshots or events.
 */
import type { Metrics } from '../model/config.js';
import type { SimSpec } from '../model/spec.js';

export type BackendKind = 'cpu' | 'webgpu';
export type BackendChoice = 'auto' | BackendKind;
export type Precision = 'f32' | 'f64';

const unrounded = (x: number): number => x;
/** How an engine of `precision` stores a number: Math.fround in f32, unchanged in f64 (one function each). */
export function roundingOf(precision: Precision): (x: number) => number {
  return precision === 'f32' ? Math.fround : unrounded;
}

/**
 * The statuses of a simulation, in the order of their numeric codes: the code an engine stores (the CPU
 * state's scalars, the GPU's SimHeader.status and the ST_* constants of shaders/layout.wgsl) is the index.
 */
export const SIM_STATUSES = ['running', 'plateau', 'converged', 'failed', 'completed'] as const;
export type SimStatus = (typeof SIM_STATUSES)[number];

/** Bits of TickRecord.flags (docs/engine.md, "Records"). */
export const Flag = {
  METRICS: 1,
  SNAPSHOT: 2,
  TERMINAL: 4,
  PLATEAU: 8,
  CONVERGED: 16,
  FAILED: 32,
  RESTART: 64,
  /** Space mode: the collapse event fired on this state (dominance >= collapseThreshold became true). */
  COLLAPSE: 128,
} as const;

export interface TickRecord {
  /** Global step (all restarts) of the visited state. */
  step: number;
  restart: number;
  /** Step within the restart. */
  n: number;
  flags: number;
  metrics: Metrics;
  gamma: number;
  lnNu: number;
  /** The controlled resonance R_n of resonanceTarget.operator (resonanceStrength when there is no target). */
  controlled: number;
  /** Present on SNAPSHOT records. */
  phases?: Float64Array;
  /** e^lnNu * a_i; present on SNAPSHOT records. */
  amplitudes?: Float64Array;
}

export interface SimReport {
  status: SimStatus;
  /** Global step of the current state. */
  step: number;
  restart: number;
  /** New records since the previous advance, in tick order. */
  records: TickRecord[];
}

export interface EngineInfo {
  backend: BackendKind;
  /** Human-readable: the adapter (WebGPU) or the CPU mode and threads. */
  adapter: string;
  precision: Precision;
}

/**
 * A float scalar as JSON keeps it: a finite number as itself, the non-finite ones as strings (`Ebest` is
 * +Infinity until the first state of a restart is visited).
 */
export type JsonFloat = number | 'Infinity' | '-Infinity' | 'NaN';

export const CHECKPOINT_FORMAT = 'resonance.sim-checkpoint';
export const CHECKPOINT_VERSION = 1;

/**
 * A simulation's state as it is stored (docs/engine.md, "Checkpoints and patches"): the JSON form of a
 * SimState (checkpoint.ts, encodeCheckpoint and decodeCheckpoint). Float arrays are base64 of their
 * little-endian bytes in the exporting engine's precision (f32 for the WebGPU engine and the CPU engine in
 * f32 mode, f64 for the CPU engine in f64 mode). The spec is not part of it: `add(spec, state)` takes
 * both, and the spec must be the one the state was taken from (only k and the learned matrix are checked).
 */
export interface SimCheckpoint {
  format: typeof CHECKPOINT_FORMAT;
  version: typeof CHECKPOINT_VERSION;
  /** The exporting engine: bit-identical continuation only on the same backend and precision. */
  backend: BackendKind;
  precision: Precision;
  k: number;
  status: SimStatus;
  /** Step within the restart. */
  n: number;
  restart: number;
  /** Global step of the current state. */
  step: number;
  gamma: JsonFloat;
  /** The running temperature product T_n. */
  temperature: JsonFloat;
  lnNu: JsonFloat;
  ebest: JsonFloat;
  plateauCount: number;
  convCount: number;
  /** Sum of the `extraSteps` patched so far: the per-restart steps limit is spec.steps + extraSteps. */
  extraSteps: number;
  /** Pending one-shot snapshot step (patch `snapshotAt`), or null. */
  snapshotAt: number | null;
  /**
   * True after a completed simulation was given extra steps and has not ticked since: its current state
   * was already visited and recorded (as terminal), so the next tick applies that state's update without
   * a record.
   */
  revisit: boolean;
  /** theta_i, k values (base64). */
  phases: string;
  /** P_i (normalised masses), k values (base64). */
  masses: string;
  /** Learned matrix A, k x k row-major (base64); null unless mixer `learned`. */
  learned: string | null;
  /** Space mode only (absent otherwise): event arming and the patched parameters in effect. */
  space?: SpaceCheckpoint;
}

export type FloatArray = Float32Array | Float64Array;

/**
 * A simulation's state as exportState returns it and add() resumes from it (docs/engine.md, "Checkpoints
 * and patches"): the fields of SimCheckpoint with numbers for its floats and typed arrays in the exporting
 * engine's precision. encodeCheckpoint (checkpoint.ts) makes the JSON that is stored.
 */
export interface SimState extends Omit<SimCheckpoint, 'format' | 'version' | 'gamma' | 'temperature' | 'lnNu' | 'ebest' | 'phases' | 'masses' | 'learned' | 'space'> {
  gamma: number;
  temperature: number;
  lnNu: number;
  ebest: number;
  phases: FloatArray;
  masses: FloatArray;
  learned: FloatArray | null;
  /** Space mode only (null otherwise). */
  space: SpaceCheckpoint | null;
}

/** The parameters a space can patch (SimPatch.params); `target` is the target value or null for none. */
export interface SpaceParams {
  gamma0: number;
  gammaGrowth: number;
  gammaMax: number;
  temperature0: number;
  beta: number;
  target: number | null;
  lambda: number;
  localityBias: number;
  semantic: boolean;
}

/** Parameters whose change resets n, gamma and the temperature (docs/model.md section 4). */
export const MIXER_PARAMS = ['gamma0', 'gammaGrowth', 'gammaMax', 'temperature0', 'beta', 'localityBias', 'semantic'] as const;

export interface SpaceCheckpoint {
  /** The plateau event fires when plateauDetected is true and it is armed. */
  plateauArmed: boolean;
  /** Consecutive visits with plateauDetected false since the plateau event fired (while disarmed). */
  plateauFalse: number;
  collapseArmed: boolean;
  collapseFalse: number;
  /** The parameters in effect (the spec's, with every patch applied). */
  params: SpaceParams;
}

/** A change to a resident simulation between advances (docs/engine.md, "Checkpoints and patches"). */
export interface SimPatch {
  /**
   * Raise the per-restart steps limit by this many (a non-negative integer). A simulation that ended
   * `completed` runs again from its final state; one that ended otherwise cannot be patched.
   */
  extraSteps?: number;
  /**
   * Give the next visit of a state at this global step the SNAPSHOT flag (one shot; replaces a pending
   * one). Must not lie before the next recorded visit.
   */
  snapshotAt?: number;
  /** Space mode only: set theta_i to the given radians (wrapped to [0, 2pi)); applied before shiftPhases. */
  setPhases?: Array<[number, number]>;
  /** Space mode only: add the given radians to theta_i (wrapped to [0, 2pi)), after setPhases. */
  shiftPhases?: Array<[number, number]>;
  /**
   * Space mode only: change parameters. A change of a mixer parameter (MIXER_PARAMS) resets n to 0, gamma
   * to min(gamma0, gammaMax) and the temperature to temperature0.
   */
  params?: Partial<SpaceParams>;
}

export interface Engine {
  readonly info: EngineInfo;
  /**
   * The engine that runs (or would run) a simulation of `spec`: `info`, except behind a router that runs
   * some on another engine (src/engine/routed.ts: a band f32 cannot resolve runs on CPU f64).
   */
  infoFor(spec: SimSpec): EngineInfo;
  /**
   * Make a simulation resident; returns its id. Throws on a spec the engine cannot hold. With a state
   * (from exportState, or a stored checkpoint through decodeCheckpoint) the simulation resumes from it:
   * bit-identical to never having stopped when the state comes from the same backend and precision,
   * converted (and then equal within the parity bars of docs/model.md section 7) otherwise. Throws when the
   * state does not fit the spec (k, learned matrix).
   */
  add(spec: SimSpec, state?: SimState): number;
  /** Drop a simulation (its slot is reused). */
  remove(id: number): void;
  /**
   * Advance every running simulation by up to `ticks` ticks; terminal ones stay frozen. `limits` caps
   * listed simulations at fewer ticks (0 holds one still for this advance: no tick, no record).
   */
  advance(ticks: number, limits?: ReadonlyMap<number, number>): Promise<Map<number, SimReport>>;
  /**
   * The state of a resident simulation (a copy; encodeCheckpoint makes the JSON that is stored). Call it
   * only between advances (not while an advance() is pending): it reads the state the last advance left.
   */
  exportState(id: number): Promise<SimState>;
  /**
   * Change a resident simulation; only between advances. Throws on an unknown id, a simulation that ended
   * other than `completed` (or ended `completed` and gets no extra steps), or bad values.
   */
  patch(id: number, change: SimPatch): void;
  /** Release threads and devices. The engine is unusable afterwards. */
  destroy(): Promise<void>;
}

/**
 * Checks the per-simulation tick limits of advance() (non-negative integers; ids that are not resident are
 * ignored) before anything runs; throws on a bad one.
 */
export function checkLimits(limits: ReadonlyMap<number, number> | undefined): void {
  if (limits === undefined) return;
  if (limits === null || typeof limits !== 'object' || typeof limits.get !== 'function' || typeof limits[Symbol.iterator] !== 'function') {
    throw new Error('advance: limits must be a Map of simulation id to ticks');
  }
  for (const [id, n] of limits) {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
      throw new Error(`advance: the tick limit of simulation ${id} must be a non-negative integer (got ${typeof n === 'number' ? String(n) : JSON.stringify(n)})`);
    }
  }
}

/** The ticks simulation `id` gets in an advance of `ticks` under `limits`. */
export function ticksFor(id: number, ticks: number, limits: ReadonlyMap<number, number> | undefined): number {
  const n = limits?.get(id);
  return n === undefined ? ticks : Math.min(ticks, n);
}

export function statusOfFlags(flags: number, fallback: SimStatus): SimStatus {
  if (!(flags & Flag.TERMINAL)) return fallback;
  if (flags & Flag.FAILED) return 'failed';
  if (flags & Flag.CONVERGED) return 'converged';
  if (flags & Flag.PLATEAU) return 'plateau';
  return 'completed';
}
