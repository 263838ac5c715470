/**
 * The Engine interface shared by the CPU and WebGPU engines. An engine owns resident simulations and
 * advances all of them by ticks (docs/engine.md); it returns only what the caller needs to see: records of
 * the visited states that carry metrics, snapshots or events.
 */
import type { Metrics } from '../model/config.js';
import { DEFAULT_COLLAPSE_THRESHOLD, type SimSpec } from '../model/spec.js';

export type BackendKind = 'cpu' | 'webgpu';
export type BackendChoice = 'auto' | BackendKind;
export type Precision = 'f32' | 'f64';

/**
 * The statuses of a simulation, in the order of their numeric codes: the code an engine stores (the CPU
 * state's scalars, the GPU's SimHeader.status and the ST_* constants of shaders/common.wgsl) is the index.
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
 * Everything an engine needs to continue one simulation exactly (docs/engine.md, "Checkpoints and patches").
 * Plain JSON data: float arrays are base64 of their little-endian bytes in the exporting engine's precision
 * (f32 for the WebGPU engine and the CPU engine in f32 mode, f64 for the CPU engine in f64 mode).
 * The spec is not part of it: `add(spec, checkpoint)` takes both, and the spec must be the one the
 * checkpoint was taken from (only k is checked).
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
   * Make a simulation resident; returns its id. Throws on a spec the engine cannot hold. With a
   * checkpoint (from exportState, possibly through JSON) the simulation resumes from it: bit-identical to
   * never having stopped when the checkpoint comes from the same backend and precision, converted (and
   * then equal within the parity bars of docs/model.md section 7) otherwise. Throws when the checkpoint does not
   * fit the spec (k, learned matrix) or is malformed.
   */
  add(spec: SimSpec, checkpoint?: SimCheckpoint): number;
  /** Drop a simulation (its slot is reused). */
  remove(id: number): void;
  /**
   * Advance every running simulation by up to `ticks` ticks; terminal ones stay frozen. `limits` caps
   * listed simulations at fewer ticks (0 holds one still for this advance: no tick, no record).
   */
  advance(ticks: number, limits?: ReadonlyMap<number, number>): Promise<Map<number, SimReport>>;
  /**
   * The state of a resident simulation as a JSON-serialisable checkpoint. Call it only between advances
   * (not while an advance() is pending): it reads the state the last advance left.
   */
  exportState(id: number): Promise<SimCheckpoint>;
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

// ---- checkpoint encoding (shared by the engines; no Node APIs, so browser bundles can use it) ----

export function encodeFloat(x: number): JsonFloat {
  if (Number.isFinite(x)) return x;
  return Number.isNaN(x) ? 'NaN' : x > 0 ? 'Infinity' : '-Infinity';
}

export function decodeFloat(x: JsonFloat, what: string): number {
  if (typeof x === 'number') return x;
  if (x === 'Infinity') return Infinity;
  if (x === '-Infinity') return -Infinity;
  if (x === 'NaN') return NaN;
  throw new Error(`checkpoint: ${what} is not a number (${JSON.stringify(x)})`);
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_INDEX = new Int16Array(128).fill(-1);
for (let i = 0; i < B64.length; i++) B64_INDEX[B64.charCodeAt(i)] = i;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function bytesBase64(bytes: Uint8Array): string {
  const parts: string[] = [];
  const CHUNK = 3 * 4096;
  for (let at = 0; at < bytes.length; at += CHUNK) {
    const end = Math.min(bytes.length, at + CHUNK);
    const codes: number[] = [];
    for (let i = at; i < end; i += 3) {
      const b0 = bytes[i]!;
      const b1 = i + 1 < end ? bytes[i + 1]! : 0;
      const b2 = i + 2 < end ? bytes[i + 2]! : 0;
      codes.push(B64.charCodeAt(b0 >> 2), B64.charCodeAt(((b0 & 3) << 4) | (b1 >> 4)));
      codes.push(i + 1 < end ? B64.charCodeAt(((b1 & 15) << 2) | (b2 >> 6)) : 61, i + 2 < end ? B64.charCodeAt(b2 & 63) : 61);
    }
    parts.push(String.fromCharCode(...codes));
  }
  return parts.join('');
}

function base64Bytes(text: string, what: string): Uint8Array {
  if (text.length % 4 !== 0) throw new Error(`checkpoint: ${what} is not base64 (length ${text.length})`);
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    let v = 0;
    for (let j = 0; j < 4; j++) {
      const c = text.charCodeAt(i + j);
      const d = c === 61 && i + 4 === text.length && j >= 4 - pad ? 0 : c < 128 ? B64_INDEX[c]! : -1;
      if (d < 0) throw new Error(`checkpoint: ${what} is not base64 (character ${i + j})`);
      v = (v << 6) | d;
    }
    if (o < out.length) out[o++] = (v >> 16) & 255;
    if (o < out.length) out[o++] = (v >> 8) & 255;
    if (o < out.length) out[o++] = v & 255;
  }
  return out;
}

/** Base64 of the little-endian bytes of a float array. */
export function encodeFloats(values: Float32Array | Float64Array): string {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (LITTLE_ENDIAN) return bytesBase64(bytes);
  const swapped = new Uint8Array(bytes.length);
  const w = values.BYTES_PER_ELEMENT;
  for (let i = 0; i < bytes.length; i++) swapped[i] = bytes[i - (i % w) + (w - 1 - (i % w))]!;
  return bytesBase64(swapped);
}

/** The inverse of encodeFloats for `length` values of `precision`, widened to float64 (exactly). */
export function decodeFloats(text: string, precision: Precision, length: number, what: string): Float64Array {
  if (typeof text !== 'string') throw new Error(`checkpoint: ${what} is missing`);
  const bytes = base64Bytes(text, what);
  const w = precision === 'f32' ? 4 : 8;
  if (bytes.length !== length * w) throw new Error(`checkpoint: ${what} holds ${bytes.length / w} ${precision} values, expected ${length}`);
  if (!LITTLE_ENDIAN) {
    for (let at = 0; at < bytes.length; at += w) bytes.subarray(at, at + w).reverse();
  }
  return Float64Array.from(precision === 'f32' ? new Float32Array(bytes.buffer) : new Float64Array(bytes.buffer));
}

/** A checkpoint's values decoded and checked against the spec it is added with (both engines use this). */
export interface DecodedCheckpoint {
  status: SimStatus;
  n: number;
  restart: number;
  step: number;
  gamma: number;
  temperature: number;
  lnNu: number;
  ebest: number;
  plateauCount: number;
  convCount: number;
  extraSteps: number;
  snapshotAt: number | null;
  revisit: boolean;
  phases: Float64Array;
  masses: Float64Array;
  learned: Float64Array | null;
  space: SpaceCheckpoint | null;
}

function count(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) throw new Error(`checkpoint: ${what} must be a non-negative integer (got ${JSON.stringify(x)})`);
  return x;
}

export function decodeCheckpoint(cp: SimCheckpoint, spec: SimSpec): DecodedCheckpoint {
  if (!cp || typeof cp !== 'object') throw new Error('checkpoint: not an object');
  if (cp.format !== CHECKPOINT_FORMAT || cp.version !== CHECKPOINT_VERSION) {
    throw new Error(`checkpoint: unknown format ${JSON.stringify(cp.format)} version ${JSON.stringify(cp.version)} (expected ${CHECKPOINT_FORMAT} version ${CHECKPOINT_VERSION})`);
  }
  const k = spec.primes.length;
  if (cp.k !== k) throw new Error(`checkpoint: k = ${cp.k} does not match the spec's k = ${k}`);
  if (cp.precision !== 'f32' && cp.precision !== 'f64') throw new Error(`checkpoint: unknown precision ${JSON.stringify(cp.precision)}`);
  if (!(SIM_STATUSES as readonly string[]).includes(cp.status)) throw new Error(`checkpoint: unknown status ${JSON.stringify(cp.status)}`);
  const learned = spec.mixer === 'learned';
  if (learned !== (cp.learned !== null && cp.learned !== undefined)) {
    throw new Error(learned ? 'checkpoint: the spec has mixer learned but the checkpoint holds no learned matrix' : `checkpoint: holds a learned matrix but the spec has mixer ${spec.mixer}`);
  }
  const snapshotAt = cp.snapshotAt === null || cp.snapshotAt === undefined ? null : count(cp.snapshotAt, 'snapshotAt');
  const out: DecodedCheckpoint = {
    status: cp.status,
    n: count(cp.n, 'n'),
    restart: count(cp.restart, 'restart'),
    step: count(cp.step, 'step'),
    gamma: decodeFloat(cp.gamma, 'gamma'),
    temperature: decodeFloat(cp.temperature, 'temperature'),
    lnNu: decodeFloat(cp.lnNu, 'lnNu'),
    ebest: decodeFloat(cp.ebest, 'ebest'),
    plateauCount: count(cp.plateauCount, 'plateauCount'),
    convCount: count(cp.convCount, 'convCount'),
    extraSteps: count(cp.extraSteps ?? 0, 'extraSteps'),
    snapshotAt,
    revisit: cp.revisit === true,
    phases: decodeFloats(cp.phases, cp.precision, k, 'phases'),
    masses: decodeFloats(cp.masses, cp.precision, k, 'masses'),
    learned: learned ? decodeFloats(cp.learned!, cp.precision, k * k, 'learned') : null,
    space: null,
  };
  if (isSpace(spec)) {
    const sp = cp.space;
    if (sp === undefined || sp === null) {
      out.space = { plateauArmed: true, plateauFalse: 0, collapseArmed: true, collapseFalse: 0, params: spaceParamsOf(spec) };
    } else {
      if (typeof sp !== 'object') throw new Error('checkpoint: space is not an object');
      out.space = {
        plateauArmed: sp.plateauArmed !== false,
        plateauFalse: count(sp.plateauFalse ?? 0, 'space.plateauFalse'),
        collapseArmed: sp.collapseArmed !== false,
        collapseFalse: count(sp.collapseFalse ?? 0, 'space.collapseFalse'),
        params: { ...spaceParamsOf(spec), ...checkSpaceParams(sp.params ?? {}, 'checkpoint: space.params') },
      };
    }
  }
  if (out.revisit && out.status !== 'running') throw new Error('checkpoint: revisit is set on a simulation that is not running');
  return out;
}

// ---- space mode (docs/engine.md, "Space mode") ----

export function isSpace(spec: SimSpec): boolean {
  return spec.mode === 'space';
}

/** Checks of the space-mode fields of a spec (both engines' add). */
export function checkSpecMode(spec: SimSpec): void {
  if (spec.mode !== undefined && spec.mode !== 'hqe' && spec.mode !== 'space') throw new Error(`spec: unknown mode ${JSON.stringify(spec.mode)}`);
  const t = spec.collapseThreshold;
  if (t !== undefined && (typeof t !== 'number' || !(t >= 0 && t <= 1))) throw new Error(`spec: collapseThreshold must be in [0, 1] (got ${JSON.stringify(t)})`);
}

export function collapseThresholdOf(spec: SimSpec): number {
  return spec.collapseThreshold ?? DEFAULT_COLLAPSE_THRESHOLD;
}

/** The patchable parameters of a spec. */
export function spaceParamsOf(spec: SimSpec): SpaceParams {
  return {
    gamma0: spec.gamma0,
    gammaGrowth: spec.gammaGrowth,
    gammaMax: spec.gammaMax,
    temperature0: spec.temperature0,
    beta: spec.beta,
    target: spec.target ? spec.target.value : null,
    lambda: spec.lambda,
    localityBias: spec.localityBias,
    semantic: spec.semantic,
  };
}

/** The spec with `params` in effect (a new target keeps the spec's operator, or uses `R`). */
export function withSpaceParams(spec: SimSpec, params: Partial<SpaceParams>): SimSpec {
  const out: SimSpec = { ...spec };
  for (const key of ['gamma0', 'gammaGrowth', 'gammaMax', 'temperature0', 'beta', 'lambda', 'localityBias'] as const) {
    const v = params[key];
    if (v !== undefined) out[key] = v;
  }
  if (params.semantic !== undefined) out.semantic = params.semantic;
  if (params.target !== undefined) {
    out.target = params.target === null ? null : spec.target ? { ...spec.target, value: params.target } : { value: params.target, operator: 'R' };
  }
  return out;
}

/** Validates a params change; returns it with only the known keys. */
export function checkSpaceParams(params: Partial<SpaceParams>, what = 'patch: params'): Partial<SpaceParams> {
  if (!params || typeof params !== 'object') throw new Error(`${what} must be an object`);
  const out: Partial<SpaceParams> = {};
  const num = (key: keyof SpaceParams, ok: (x: number) => boolean, rule: string): void => {
    const v = params[key];
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw new Error(`${what}.${key} must be ${rule} (got ${JSON.stringify(v)})`);
    (out as Record<string, unknown>)[key] = v;
  };
  num('gamma0', (x) => x >= 0, 'a finite number >= 0');
  num('gammaGrowth', (x) => x >= 0, 'a finite number >= 0');
  num('gammaMax', (x) => x >= 0, 'a finite number >= 0');
  num('temperature0', (x) => x >= 0, 'a finite number >= 0');
  num('beta', (x) => x > 0 && x <= 1, 'in (0, 1]');
  num('lambda', (x) => x >= 0, 'a finite number >= 0');
  num('localityBias', (x) => x >= 0 && x <= 1, 'in [0, 1]');
  if (params.target !== undefined) {
    const t = params.target;
    if (t !== null && (typeof t !== 'number' || !Number.isFinite(t) || t < 0 || t > 1)) throw new Error(`${what}.target must be null or in [0, 1] (got ${JSON.stringify(t)})`);
    out.target = t;
  }
  if (params.semantic !== undefined) {
    if (typeof params.semantic !== 'boolean') throw new Error(`${what}.semantic must be a boolean (got ${JSON.stringify(params.semantic)})`);
    out.semantic = params.semantic;
  }
  for (const key of Object.keys(params)) {
    if (!(key in out) && (params as Record<string, unknown>)[key] !== undefined) throw new Error(`${what}: unknown parameter ${JSON.stringify(key)}`);
  }
  return out;
}

/** True when `params` changes a mixer parameter of `current` (which then resets n, gamma, temperature). */
export function changesMixer(current: SpaceParams, params: Partial<SpaceParams>): boolean {
  return MIXER_PARAMS.some((key) => params[key] !== undefined && params[key] !== current[key]);
}

/** Validated phase edits: [index, radians] with an integer index in [0, k) and finite radians. */
export function checkPhaseEdits(edits: Array<[number, number]> | undefined, k: number, what: string): Array<[number, number]> {
  if (edits === undefined) return [];
  if (!Array.isArray(edits)) throw new Error(`patch: ${what} must be an array of [index, radians]`);
  return edits.map((e, at) => {
    if (!Array.isArray(e) || e.length !== 2) throw new Error(`patch: ${what}[${at}] must be [index, radians]`);
    const [i, x] = e;
    if (!Number.isSafeInteger(i) || i < 0 || i >= k) throw new Error(`patch: ${what}[${at}] index must be an integer in [0, ${k}) (got ${JSON.stringify(i)})`);
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new Error(`patch: ${what}[${at}] radians must be finite (got ${JSON.stringify(x)})`);
    return [i, x];
  });
}

/**
 * wrap_2pi as the engines compute it (src/engine/cpu/step.ts), in f64 or emulated f32; used for patched
 * phases, so that the CPU f32 engine and the WebGPU engine store the same f32 value.
 */
export function wrapPhase(x: number, precision: Precision): number {
  return wrapRounded(x, precision === 'f32' ? Math.fround : (v: number): number => v);
}

/** wrap_2pi with every stored value rounded by `R` (Math.fround in f32, the identity in f64): the engines' one formula. */
export function wrapRounded(x: number, R: (x: number) => number): number {
  const w = R(x - R(TWO_PI * Math.floor(R(x / R(TWO_PI)))));
  return w >= R(TWO_PI) ? 0 : w;
}

const TWO_PI = 2 * Math.PI;

/** Apply set then shift edits to phases (in place), in the engine's precision. */
export function applyPhaseEdits(theta: { [i: number]: number }, sets: Array<[number, number]>, shifts: Array<[number, number]>, precision: Precision): void {
  const R = precision === 'f32' ? Math.fround : (v: number): number => v;
  for (const [i, x] of sets) theta[i] = wrapPhase(R(x), precision);
  for (const [i, x] of shifts) theta[i] = wrapPhase(R(theta[i]! + R(x)), precision);
}

/** Checks shared by both engines' patch(); returns the validated values. */
export function checkPatch(change: SimPatch, status: SimStatus, nextRecordedStep: number, spec?: SimSpec): { extraSteps: number; snapshotAt: number | null } {
  if (spec && !isSpace(spec) && (change.setPhases !== undefined || change.shiftPhases !== undefined || change.params !== undefined)) {
    throw new Error('patch: setPhases, shiftPhases and params apply to space-mode simulations only');
  }
  if (spec && isSpace(spec) && change.extraSteps !== undefined && change.extraSteps !== 0) {
    throw new Error('patch: extraSteps does not apply to a space-mode simulation (it has no steps limit)');
  }
  const extraSteps = change.extraSteps === undefined ? 0 : change.extraSteps;
  if (!Number.isSafeInteger(extraSteps) || extraSteps < 0) throw new Error(`patch: extraSteps must be a non-negative integer (got ${JSON.stringify(change.extraSteps)})`);
  const snapshotAt = change.snapshotAt === undefined ? null : change.snapshotAt;
  if (snapshotAt !== null && (!Number.isSafeInteger(snapshotAt) || snapshotAt < 0)) {
    throw new Error(`patch: snapshotAt must be a non-negative integer (got ${JSON.stringify(change.snapshotAt)})`);
  }
  if (status !== 'running' && !(status === 'completed' && extraSteps > 0)) {
    throw new Error(
      status === 'completed'
        ? 'patch: the simulation has ended (completed); only extraSteps > 0 can continue it'
        : `patch: the simulation has ended (${status}); only a completed simulation can be continued`,
    );
  }
  if (snapshotAt !== null && snapshotAt < nextRecordedStep) {
    throw new Error(`patch: snapshotAt ${snapshotAt} lies before the next visited step ${nextRecordedStep}`);
  }
  return { extraSteps, snapshotAt };
}
