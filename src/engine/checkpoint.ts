/**
 * Checkpoints of a simulation (docs/engine.md, "Checkpoints and patches"): an exported state (SimState,
 * typed arrays) to and from the JSON that is stored (SimCheckpoint: floats as JSON values, arrays as
 * base64), and the checks every engine applies before it resumes one. No Node APIs, so browser bundles
 * can use it.
 */
import type { SimSpec } from '../model/spec.js';
import { checkSpaceParams, isSpace, spaceParamsOf } from './edits.js';
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, type FloatArray, type JsonFloat, type Precision, SIM_STATUSES, type SimCheckpoint, type SimState, type SpaceParams } from './types.js';

function encodeFloat(x: number): JsonFloat {
  if (Number.isFinite(x)) return x;
  return Number.isNaN(x) ? 'NaN' : x > 0 ? 'Infinity' : '-Infinity';
}

function decodeFloat(x: JsonFloat, what: string): number {
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
function encodeFloats(values: Float32Array | Float64Array): string {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (LITTLE_ENDIAN) return bytesBase64(bytes);
  const swapped = new Uint8Array(bytes.length);
  const w = values.BYTES_PER_ELEMENT;
  for (let i = 0; i < bytes.length; i++) swapped[i] = bytes[i - (i % w) + (w - 1 - (i % w))]!;
  return bytesBase64(swapped);
}

/** The inverse of encodeFloats for `length` values of `precision`. */
function decodeFloats(text: string, precision: Precision, length: number, what: string): FloatArray {
  if (typeof text !== 'string') throw new Error(`checkpoint: ${what} is missing`);
  const bytes = base64Bytes(text, what);
  const w = precision === 'f32' ? 4 : 8;
  if (bytes.length !== length * w) throw new Error(`checkpoint: ${what} holds ${bytes.length / w} ${precision} values, expected ${length}`);
  if (!LITTLE_ENDIAN) {
    for (let at = 0; at < bytes.length; at += w) bytes.subarray(at, at + w).reverse();
  }
  return precision === 'f32' ? new Float32Array(bytes.buffer) : new Float64Array(bytes.buffer);
}

function count(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) throw new Error(`checkpoint: ${what} must be a non-negative integer (got ${JSON.stringify(x)})`);
  return x;
}

/** The JSON form of an exported state, as it is stored. */
export function encodeCheckpoint(s: SimState): SimCheckpoint {
  return {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    backend: s.backend,
    precision: s.precision,
    k: s.k,
    status: s.status,
    n: s.n,
    restart: s.restart,
    step: s.step,
    gamma: encodeFloat(s.gamma),
    temperature: encodeFloat(s.temperature),
    lnNu: encodeFloat(s.lnNu),
    ebest: encodeFloat(s.ebest),
    plateauCount: s.plateauCount,
    convCount: s.convCount,
    extraSteps: s.extraSteps,
    snapshotAt: s.snapshotAt,
    revisit: s.revisit,
    phases: encodeFloats(s.phases),
    masses: encodeFloats(s.masses),
    learned: s.learned === null ? null : encodeFloats(s.learned),
    ...(s.space ? { space: s.space } : {}),
  };
}

/** A stored checkpoint back into the state it was exported as, every field checked (a clear Error otherwise). */
export function decodeCheckpoint(cp: SimCheckpoint): SimState {
  if (!cp || typeof cp !== 'object') throw new Error('checkpoint: not an object');
  if (cp.format !== CHECKPOINT_FORMAT || cp.version !== CHECKPOINT_VERSION) {
    throw new Error(`checkpoint: unknown format ${JSON.stringify(cp.format)} version ${JSON.stringify(cp.version)} (expected ${CHECKPOINT_FORMAT} version ${CHECKPOINT_VERSION})`);
  }
  if (cp.backend !== 'cpu' && cp.backend !== 'webgpu') throw new Error(`checkpoint: unknown backend ${JSON.stringify(cp.backend)}`);
  if (cp.precision !== 'f32' && cp.precision !== 'f64') throw new Error(`checkpoint: unknown precision ${JSON.stringify(cp.precision)}`);
  if (!(SIM_STATUSES as readonly string[]).includes(cp.status)) throw new Error(`checkpoint: unknown status ${JSON.stringify(cp.status)}`);
  const k = count(cp.k, 'k');
  const sp = cp.space;
  if (sp !== undefined && sp !== null && typeof sp !== 'object') throw new Error('checkpoint: space is not an object');
  return {
    backend: cp.backend,
    precision: cp.precision,
    k,
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
    snapshotAt: cp.snapshotAt === null || cp.snapshotAt === undefined ? null : count(cp.snapshotAt, 'snapshotAt'),
    revisit: cp.revisit === true,
    phases: decodeFloats(cp.phases, cp.precision, k, 'phases'),
    masses: decodeFloats(cp.masses, cp.precision, k, 'masses'),
    learned: cp.learned === null || cp.learned === undefined ? null : decodeFloats(cp.learned, cp.precision, k * k, 'learned'),
    space:
      sp === undefined || sp === null
        ? null
        : {
            plateauArmed: sp.plateauArmed !== false,
            plateauFalse: count(sp.plateauFalse ?? 0, 'space.plateauFalse'),
            collapseArmed: sp.collapseArmed !== false,
            collapseFalse: count(sp.collapseFalse ?? 0, 'space.collapseFalse'),
            params: completeSpaceParams(checkSpaceParams(sp.params ?? {}, 'checkpoint: space.params')),
          },
  };
}

/**
 * A state checked against the spec it is added with (both engines' add): k, the learned matrix, revisit,
 * and in space mode the event arming and the parameters in effect (the spec's, under those of the state).
 */
export function resumeState(state: SimState, spec: SimSpec): SimState {
  const k = spec.primes.length;
  if (state.k !== k) throw new Error(`checkpoint: k = ${state.k} does not match the spec's k = ${k}`);
  for (const [name, values] of [['phases', state.phases], ['masses', state.masses]] as const) {
    if (values.length !== k) throw new Error(`checkpoint: ${name} holds ${values.length} values, expected ${k}`);
  }
  const learned = spec.mixer === 'learned';
  if (learned !== (state.learned !== null)) {
    throw new Error(learned ? 'checkpoint: the spec has mixer learned but the checkpoint holds no learned matrix' : `checkpoint: holds a learned matrix but the spec has mixer ${spec.mixer}`);
  }
  if (state.learned !== null && state.learned.length !== k * k) throw new Error(`checkpoint: learned holds ${state.learned.length} values, expected ${k * k}`);
  if (state.revisit && state.status !== 'running') throw new Error('checkpoint: revisit is set on a simulation that is not running');
  if (!isSpace(spec)) return { ...state, space: null };
  const sp = state.space;
  return { ...state, space: sp ?? { plateauArmed: true, plateauFalse: 0, collapseArmed: true, collapseFalse: 0, params: spaceParamsOf(spec) } };
}

/** Every key of SpaceParams (the record makes the compiler check that none is missing). */
const SPACE_PARAM_KEYS = Object.keys({
  gamma0: true, gammaGrowth: true, gammaMax: true, temperature0: true, beta: true, target: true, lambda: true, localityBias: true, semantic: true,
} satisfies Record<keyof SpaceParams, true>) as Array<keyof SpaceParams>;

/** The parameters of a stored space state: every one of SpaceParams, as exportState writes them. */
function completeSpaceParams(params: Partial<SpaceParams>): SpaceParams {
  const missing = SPACE_PARAM_KEYS.filter((key) => params[key] === undefined);
  if (missing.length > 0) throw new Error(`checkpoint: space.params lacks ${missing.join(', ')}`);
  return params as SpaceParams;
}

/** The stored text of a state (what a store keeps). */
export function checkpointText(state: SimState): string {
  return JSON.stringify(encodeCheckpoint(state));
}

/** A state from its stored text. */
export function stateOfCheckpointText(text: string): SimState {
  return decodeCheckpoint(JSON.parse(text) as SimCheckpoint);
}
