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

export type SimStatus = 'running' | 'plateau' | 'converged' | 'failed' | 'completed';

/** Bits of TickRecord.flags (docs/engine.md, "Records"). */
export const Flag = {
  METRICS: 1,
  SNAPSHOT: 2,
  TERMINAL: 4,
  PLATEAU: 8,
  CONVERGED: 16,
  FAILED: 32,
  RESTART: 64,
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
}

export interface Engine {
  readonly info: EngineInfo;
  /**
   * Make a simulation resident; returns its id. Throws on a spec the engine cannot hold. With a
   * checkpoint (from exportState, possibly through JSON) the simulation resumes from it: bit-identical to
   * never having stopped when the checkpoint comes from the same backend and precision, converted (and
   * then equal within the parity bars of MODEL.md section 7) otherwise. Throws when the checkpoint does not
   * fit the spec (k, learned matrix) or is malformed.
   */
  add(spec: SimSpec, checkpoint?: SimCheckpoint): number;
  /** Drop a simulation (its slot is reused). */
  remove(id: number): void;
  /** Advance every running simulation by up to `ticks` ticks; terminal ones stay frozen. */
  advance(ticks: number): Promise<Map<number, SimReport>>;
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
}

const STATUSES: readonly SimStatus[] = ['running', 'plateau', 'converged', 'failed', 'completed'];

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
  if (!STATUSES.includes(cp.status)) throw new Error(`checkpoint: unknown status ${JSON.stringify(cp.status)}`);
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
  };
  if (out.revisit && out.status !== 'running') throw new Error('checkpoint: revisit is set on a simulation that is not running');
  return out;
}

/** Checks shared by both engines' patch(); returns the validated values. */
export function checkPatch(change: SimPatch, status: SimStatus, nextRecordedStep: number): { extraSteps: number; snapshotAt: number | null } {
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
