/**
 * Validation and normalisation of an HQE config (docs/model.md section 1 and 3). Every problem is reported with
 * the JSON pointer of the field at fault, or counted past the first MAX_FIELD_ERRORS of an array's
 * elements; nothing is dropped silently. A body of the largest size must validate in tens of milliseconds.
 */
import { z } from 'zod';
import { unresolvedBand, vmaxOf } from './basis.js';
import { F32_MAX, F32_MIN_NORMAL, HQEConfig, NOT_F32, type NormalizedConfig, PhaseSeeding, ResonanceTarget } from './config.js';
import { isPrime, MAX_PRIME } from './primes.js';

export const DEFAULT_MAX_BASIS = 2048;

export interface FieldError {
  /** RFC 6901 pointer into the request body. */
  pointer: string;
  code: string;
  message: string;
  /** The offending values, where listing them helps (composites, duplicates). */
  values?: number[];
  /**
   * How many errors this entry stands for, when more than one: past the first MAX_FIELD_ERRORS errors at
   * an array's elements, the others of each kind are only counted (ElementErrors). Never in a response.
   */
  count?: number;
}

export type NormalizeResult =
  | { ok: true; normalized: NormalizedConfig; warnings: string[] }
  | { ok: false; errors: FieldError[] };

export interface NormalizeOptions {
  /** Server limit on k (docs/model.md: default 2048). */
  maxBasis?: number;
  /** Seed to use when the config has none; default a random u32. */
  drawSeed?: () => number;
}

export function toPointer(path: ReadonlyArray<PropertyKey>): string {
  return path.map((p) => '/' + String(p).replace(/~/g, '~0').replace(/\//g, '~1')).join('');
}

/** An issue's code; a refinement names its own (params.code, e.g. not_f32). */
function issueCode(issue: z.core.$ZodIssue): string {
  const own = issue.code === 'custom' ? (issue.params as { code?: unknown } | undefined)?.code : undefined;
  return typeof own === 'string' ? own : issue.code;
}

export function zodErrors(error: z.ZodError): FieldError[] {
  return error.issues.flatMap((issue) => {
    // Each unknown field at its own pointer, so a client can highlight exactly what to remove.
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ pointer: toPointer([...issue.path, key]), code: 'unknown_field', message: `unknown field "${key}"` }));
    }
    return [{ pointer: toPointer(issue.path), code: issueCode(issue), message: issue.message }];
  });
}

/** A number array of a config, by its path in the document, and the schema of its elements. */
export interface NumberArrayField {
  path: readonly string[];
  element: z.ZodNumber;
}

/** The element schema of an array schema, through optional and default wrappers. */
export function elementOf(schema: z.ZodType): z.ZodNumber {
  let s: z.ZodType = schema;
  while (s instanceof z.ZodOptional || s instanceof z.ZodDefault) s = s.unwrap() as z.ZodType;
  if (!(s instanceof z.ZodArray) || !(s.element instanceof z.ZodNumber)) throw new Error('not an array of numbers');
  return s.element;
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const TYPE_CLASS: Record<string, number> = { string: 1, boolean: 2, object: 3, array: 4, null: 5, undefined: 6, bigint: 7, symbol: 8, function: 9 };

/**
 * What decides zod's verdict on a value for a number schema, as a small integer: its type; for a number,
 * whether it is finite (else which infinity, or NaN), whether it is an integer, and where it lies against
 * each bound (safe-integer bounds included). Values of one class get the same issues, with the same codes
 * and messages (no message quotes the value).
 */
function valueClass(v: unknown, lo: number, hi: number): number {
  if (typeof v !== 'number') return TYPE_CLASS[v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v] ?? 0;
  if (!Number.isFinite(v)) return Number.isNaN(v) ? 10 : v > 0 ? 11 : 12;
  const side = (b: number): number => Math.sign(v - b) + 1;
  // Below the smallest normal f32 (the f32 refinement of config.ts): a class of its own.
  const tiny = tinyNonZero(v) ? 1000 : 0;
  return tiny + (Number.isInteger(v) ? 100 : 200) + side(lo) * 27 + side(hi) * 9 + side(-MAX_SAFE) * 3 + side(MAX_SAFE);
}

/** Nonzero and below the smallest normal f32 in magnitude (config.ts, f32). */
const tinyNonZero = (v: number): boolean => v !== 0 && v > -F32_MIN_NORMAL && v < F32_MIN_NORMAL;

/**
 * Zod spends microseconds on every issue it reports, and a 1 MiB body holds 500 000 array elements: it
 * spent seconds of the event loop on a body of bad ones. The elements of the config's number arrays are
 * checked here instead, with zod's own issues parsed once per class of value (valueClass); zod then
 * validates the rest of the document with every refused element replaced by one it accepts. Returns the
 * document to give zod and the elements' errors, in document order.
 */
export function screenNumberArrays(input: unknown, fields: readonly NumberArrayField[]): { input: unknown; errors: FieldError[] } {
  const errors: FieldError[] = [];
  let out = input;
  for (const { path, element } of fields) {
    let node: unknown = out;
    for (const key of path) node = node !== null && typeof node === 'object' && !Array.isArray(node) ? (node as Record<string, unknown>)[key] : undefined;
    if (!Array.isArray(node)) continue;
    const values: unknown[] = node;
    const lo = element.minValue ?? -Infinity;
    const hi = element.maxValue ?? Infinity;
    const exact = element.isInt ? Number.isSafeInteger : Number.isFinite;
    // Made at the first element that is not plainly accepted: most arrays have none.
    let issues: Map<number, Array<{ code: string; message: string }>> | undefined;
    let found: ElementErrors | undefined;
    let refused: Uint8Array | null = null;
    let standIn: unknown;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      // Strictly inside the bounds: accepted, whether a bound is inclusive or not (unless f32 flushes it to 0,
      // which the schema may refuse: that one zod decides).
      if (typeof v === 'number' && v > lo && v < hi && exact(v) && !tinyNonZero(v)) {
        standIn ??= v;
        continue;
      }
      const key = valueClass(v, lo, hi);
      issues ??= new Map();
      let its = issues.get(key);
      if (!its) {
        const r = element.safeParse(v);
        its = r.success ? [] : r.error.issues.map((issue) => ({ code: issueCode(issue), message: issue.message }));
        issues.set(key, its);
      }
      if (its.length === 0) {
        standIn ??= v;
        continue;
      }
      found ??= new ElementErrors(toPointer(path));
      for (const issue of its) found.add(i, issue.code, () => issue.message, issue.message);
      (refused ??= new Uint8Array(values.length))[i] = 1;
    }
    if (!refused || !found) continue;
    standIn ??= [lo, hi, 0, 1, 2].find((c) => element.safeParse(c).success);
    // No value to stand in (a schema no such candidate passes): zod reports this array itself.
    if (standIn === undefined) continue;
    errors.push(...found.errors());
    out = withValue(out, path, values.map((v, i) => (refused[i] ? standIn : v)));
  }
  return { input: out, errors };
}

/** `doc` with the value at `path` replaced (copies along the path; the input is not changed). */
function withValue(doc: unknown, path: readonly string[], value: unknown): unknown {
  if (path.length === 0) return value;
  const obj = doc as Record<string, unknown>;
  return { ...obj, [path[0]!]: withValue(obj[path[0]!], path.slice(1), value) };
}

/**
 * At most this many field errors go into one response; `meta.errorCount` then says how many there were
 * (a 1 MiB body of composites is ~95 000 errors: listing them all made a 10 MB answer).
 */
export const MAX_FIELD_ERRORS = 100;

/** The field errors a response lists, and the meta that says what was left out (errorCount: all of them). */
export function capFieldErrors(errors: FieldError[]): { errors: FieldError[]; meta?: { errorCount: number; truncated: true } } {
  let errorCount = 0;
  for (const e of errors) errorCount += e.count ?? 1;
  const listed = errors.slice(0, MAX_FIELD_ERRORS).map(({ count: _count, ...e }) => e);
  return errorCount > listed.length ? { errors: listed, meta: { errorCount, truncated: true } } : { errors: listed };
}

/**
 * Errors at the elements of one array: the first MAX_FIELD_ERRORS one by one, later ones only counted,
 * into one entry per kind at the array's pointer (FieldError.count). No response lists those (more than
 * MAX_FIELD_ERRORS errors come before them) but meta.errorCount counts them, and a 1 MiB body of bad
 * elements costs no object or string per element.
 */
class ElementErrors {
  private readonly listed: FieldError[] = [];
  private readonly counted = new Map<string, FieldError & { count: number }>();

  constructor(private readonly at: string) {}

  /**
   * The error at element `index`; `message` is only called for a listed one; `kind` (one per code) names
   * the entry of the unlisted ones.
   */
  add(index: number, code: string, message: () => string, kind: string): void {
    if (this.listed.length < MAX_FIELD_ERRORS) {
      this.listed.push({ pointer: `${this.at}/${index}`, code, message: message() });
      return;
    }
    const entry = this.counted.get(kind);
    if (entry) entry.count++;
    else this.counted.set(kind, { pointer: this.at, code, message: kind, count: 1 });
  }

  errors(): FieldError[] {
    const counted = [...this.counted.values()].map((e) => ({ ...e, message: `${e.message}: ${e.count} more elements` }));
    return counted.length > 0 ? [...this.listed, ...counted] : this.listed;
  }
}

/** `label: v1, v2, ...` naming at most MAX_FIELD_ERRORS values, and how many more there are. */
function summary(at: string, code: string, label: string, values: number[]): FieldError {
  const listed = values.slice(0, MAX_FIELD_ERRORS);
  const more = values.length - listed.length;
  return { pointer: at, code, message: `${label}: ${listed.join(', ')}${more > 0 ? ` and ${more} more` : ''}`, values: listed };
}

/** Up to this many primes, basisErrors finds repeats by comparing pairs (at most 496 comparisons). */
const SMALL_BASIS = 32;

/**
 * Composites and duplicates: one summary entry per kind listing the values (the first MAX_FIELD_ERRORS of
 * them), then each at its own pointer (past MAX_FIELD_ERRORS, counted: ElementErrors). Values the schema
 * refuses (not an integer in 2..MAX_PRIME) are left to it.
 */
export function basisErrors(primes: unknown[], at = '/primes'): FieldError[] {
  const candidate = (p: unknown): p is number => typeof p === 'number' && Number.isInteger(p) && p >= 2 && p <= MAX_PRIME;
  // Values that occur more than once, found by a numeric sort (a small basis, the usual request, by
  // comparing pairs: no sort, no copy): only they need a map, so a body of distinct values costs one
  // primality test each. The map holds a repeated value's first index when it is prime, -1 when it is
  // composite, null until it is met.
  const repeated = new Map<number, number | null>();
  if (primes.length <= SMALL_BASIS) {
    for (let i = 1; i < primes.length; i++) {
      const p = primes[i];
      if (!candidate(p)) continue;
      for (let j = 0; j < i; j++) {
        if (primes[j] === p) {
          repeated.set(p, null);
          break;
        }
      }
    }
  } else {
    const sorted = new Float64Array(primes.length);
    let n = 0;
    for (const p of primes) if (candidate(p)) sorted[n++] = p;
    sorted.subarray(0, n).sort();
    for (let i = 1; i < n; i++) if (sorted[i] === sorted[i - 1]) repeated.set(sorted[i]!, null);
  }
  let found: ElementErrors | undefined;
  const composites: number[] = [];
  const duplicates: number[] = [];
  for (let i = 0; i < primes.length; i++) {
    const p = primes[i];
    if (!candidate(p)) continue;
    let first = repeated.size > 0 ? repeated.get(p) : undefined;
    if (first === null || first === undefined) {
      const prime = isPrime(p);
      if (first === null) repeated.set(p, prime ? i : -1);
      if (prime) continue;
      first = -1;
    }
    if (first < 0) {
      composites.push(p);
      (found ??= new ElementErrors(at)).add(i, 'not_prime', () => `${p} is not prime`, 'not prime');
    } else {
      duplicates.push(p);
      (found ??= new ElementErrors(at)).add(i, 'duplicate_prime', () => `${p} repeats ${at}/${first}`, 'repeats');
    }
  }
  const summaries: FieldError[] = [];
  if (composites.length > 0) summaries.push(summary(at, 'not_prime', 'not prime', composites));
  if (duplicates.length > 0) summaries.push(summary(at, 'duplicate_prime', 'duplicates', duplicates));
  return found ? [...summaries, ...found.errors()] : summaries;
}

const HQE_NUMBER_ARRAYS: readonly NumberArrayField[] = [
  { path: ['primes'], element: elementOf(HQEConfig.shape.primes) },
  { path: ['initialAmplitudes'], element: elementOf(HQEConfig.shape.initialAmplitudes) },
  { path: ['phaseSeeding', 'customPhases'], element: elementOf(PhaseSeeding.shape.customPhases) },
  { path: ['resonanceTarget', 'weights'], element: elementOf(ResonanceTarget.shape.weights) },
];

export function normalize(input: unknown, options: NormalizeOptions = {}): NormalizeResult {
  const maxBasis = options.maxBasis ?? DEFAULT_MAX_BASIS;
  const screened = screenNumberArrays(input, HQE_NUMBER_ARRAYS);
  const parsed = HQEConfig.safeParse(screened.input);
  const rawPrimes = (input as { primes?: unknown } | null)?.primes;
  const primeErrors = Array.isArray(rawPrimes) ? basisErrors(rawPrimes) : [];
  // A refused array element ends validation here, as a zod issue would: the stand-ins are not the config.
  if (!parsed.success || screened.errors.length > 0) {
    return { ok: false, errors: [...screened.errors, ...(parsed.success ? [] : zodErrors(parsed.error)), ...primeErrors] };
  }

  const cfg = parsed.data;
  const errors: FieldError[] = [...primeErrors];
  const warnings: string[] = [];
  const k = cfg.primes.length;

  if (k > maxBasis) {
    errors.push({ pointer: '/primes', code: 'basis_too_large', message: `k = ${k} primes exceeds maxBasis ${maxBasis}` });
  }
  const amps = cfg.initialAmplitudes;
  if (amps && amps.length > k) {
    errors.push({ pointer: '/initialAmplitudes', code: 'too_long', message: `${amps.length} amplitudes for ${k} primes` });
  } else if (amps && amps.length === k && amps.every((a) => a === 0)) {
    errors.push({ pointer: '/initialAmplitudes', code: 'all_zero', message: 'every initial amplitude is zero; the state has no mass' });
  }
  const custom = cfg.phaseSeeding.customPhases;
  if (custom && custom.length > k) {
    errors.push({ pointer: '/phaseSeeding/customPhases', code: 'too_long', message: `${custom.length} phases for ${k} primes` });
  }
  const target = cfg.resonanceTarget;
  if (target?.operator === 'custom') {
    if (!target.weights) {
      errors.push({ pointer: '/resonanceTarget/weights', code: 'required', message: 'operator custom needs one weight per prime' });
    } else if (target.weights.length !== k) {
      errors.push({ pointer: '/resonanceTarget/weights', code: 'wrong_length', message: `${target.weights.length} weights for ${k} primes` });
    } else if (target.weights.every((w) => w === 0)) {
      warnings.push('resonanceTarget.weights are all zero: the custom resonance is always 0');
    }
  } else if (target?.weights) {
    warnings.push(`resonanceTarget.weights are used only by operator custom; ignored for ${target.operator}`);
  }
  errors.push(...rateErrors(cfg));
  if (errors.length > 0) return { ok: false, errors };

  // Sort the basis ascending; every per-prime array follows its prime.
  const order = cfg.primes.map((_, i) => i);
  const sorted = cfg.primes.every((p, i) => i === 0 || cfg.primes[i - 1]! < p);
  if (!sorted) {
    order.sort((a, b) => cfg.primes[a]! - cfg.primes[b]!);
    warnings.push('primes were not in ascending order; sorted (per-prime arrays reordered with them)');
  }
  const permute = (values: number[], missing: number): number[] => order.map((i) => plainNumber(values[i] ?? missing));

  const gammaMax = cfg.mixer.gammaMax ?? Math.max(1, cfg.mixer.gamma0);
  if (gammaMax < cfg.mixer.gamma0) {
    warnings.push(`mixer.gamma0 ${cfg.mixer.gamma0} is above mixer.gammaMax ${gammaMax}; coupling starts at gammaMax`);
  }
  if (cfg.mixer.type === 'learned' && cfg.schedule.dt * cfg.mixer.learningRate > 1) {
    warnings.push('schedule.dt * mixer.learningRate > 1: the learned matrix overshoots each step');
  }
  const band = narrowBandWarning(cfg.primes, cfg.frequencyScale);
  if (band) warnings.push(band);
  if (!cfg.boundary.enforceUnitNorm && !target) {
    warnings.push('boundary.enforceUnitNorm is false but there is no resonanceTarget: the norm channel stays at 1');
  }

  // A deep copy (no object shared with zod's defaults or the input), then the resolved fields in place: the
  // keys keep the order of the parsed config, and those it lacked (seed, mixer.gammaMax) come last.
  const normalized = plainCopy(cfg) as NormalizedConfig;
  if (!sorted) normalized.primes = order.map((i) => cfg.primes[i]!);
  if (amps) normalized.initialAmplitudes = permute(amps, 1);
  if (custom) normalized.phaseSeeding.customPhases = permute(custom, 0);
  if (target && normalized.resonanceTarget) {
    if (target.operator === 'custom' && target.weights) normalized.resonanceTarget.weights = permute(target.weights, 0);
    else delete normalized.resonanceTarget.weights;
  }
  normalized.mixer.gammaMax = plainNumber(gammaMax);
  normalized.seed = plainNumber(cfg.seed ?? (options.drawSeed ?? drawSeed)());
  return { ok: true, normalized, warnings };
}

/**
 * The rates one step applies, which the f32 engines hold as f32 (docs/model.md section 9): each parameter
 * is an f32 value (the schema), and so must be what the step makes of them, or an f32 engine would
 * overflow where CPU f64 does not. ln P changes by at most dt*(lambda + 4*lambdaPrime) in a step (the
 * penalty's (l_i - mu)^2 is at most (lmax - lmin)^2 = 4 Vmax); the learned matrix contracts only
 * while dt*learningRate <= 2 (otherwise it grows geometrically until it overflows, in f32 long before f64).
 */
function rateErrors(cfg: z.output<typeof HQEConfig>): FieldError[] {
  const errors: FieldError[] = [];
  const dt = cfg.schedule.dt;
  const penalty = cfg.entropy.primePenalty.enabled ? cfg.entropy.primePenalty.lambdaPrime : 0;
  const logMassStep = dt * (cfg.entropy.lambda + 4 * penalty);
  if (!(logMassStep <= F32_MAX / 2)) {
    errors.push({
      pointer: penalty > 0 && 4 * penalty >= cfg.entropy.lambda ? '/entropy/primePenalty/lambdaPrime' : '/entropy/lambda',
      code: NOT_F32,
      message: `schedule.dt * (entropy.lambda + 4 * primePenalty.lambdaPrime) = ${logMassStep}: one step's change of ln P must stay below ${F32_MAX / 2} (f32)`,
    });
  }
  const vmax = vmaxOf(cfg.primes);
  const hPenalty = (dt * penalty) / vmax;
  if (!(hPenalty <= F32_MAX)) {
    errors.push({
      pointer: '/entropy/primePenalty/lambdaPrime',
      code: NOT_F32,
      message: `schedule.dt * primePenalty.lambdaPrime / Vmax = ${hPenalty} exceeds the f32 range (this basis has Vmax = ${vmax})`,
    });
  }
  if (cfg.mixer.type === 'learned' && dt * cfg.mixer.learningRate > 2) {
    errors.push({
      pointer: '/mixer/learningRate',
      code: 'diverges',
      message: `schedule.dt * mixer.learningRate = ${dt * cfg.mixer.learningRate} > 2: the learned matrix grows without bound`,
    });
  }
  return errors;
}

/**
 * The warning of a basis whose frequency differences f32 cannot resolve (docs/model.md section 9), or
 * null. Such a configuration runs on CPU f64 whatever the server's engine (the run reports which ran).
 */
export function narrowBandWarning(primes: readonly number[], frequencyScale: number): string | null {
  const band = unresolvedBand(primes, frequencyScale);
  if (!band) return null;
  return (
    `f32 cannot resolve this band of primes: the frequencies of ${band.p} and ${band.q} differ by ` +
    `${band.difference.toExponential(2)}, below the f32 rounding of w (${band.resolution.toExponential(2)}); ` +
    'it runs on the CPU engine in f64'
  );
}

/**
 * Seeds drawn ahead from the platform CSPRNG, SEED_BATCH at a time: one call into it cost more than the
 * rest of normalising a small config. Each seed is still a uniformly random u32 from the CSPRNG, used once,
 * so a seed says nothing about the next one; they are unpredictable, not secret (every response reports its seed).
 */
const SEED_BATCH = 256;
const seedPool = new Uint32Array(SEED_BATCH);
let seedsLeft = 0;

/** A uniformly random u32 from the platform CSPRNG (Node and browsers alike). */
export function drawSeed(): number {
  if (seedsLeft === 0) {
    globalThis.crypto.getRandomValues(seedPool);
    seedsLeft = SEED_BATCH;
  }
  return seedPool[--seedsLeft]!;
}

/** -0 as JSON writes it (0); every other number as it is. */
const plainNumber = (v: number): number => (v === 0 ? 0 : v);

/**
 * What JSON.parse(JSON.stringify(value)) gives for a parsed config, without the text in between (that
 * round trip was a quarter of normalising a small config): a deep copy with `"x": undefined` fields left out,
 * so a normalized config round-trips through normalize() and shares no object with zod's defaults; -0
 * becomes 0 as JSON writes it. Only plain objects, arrays, finite numbers, strings and booleans reach it.
 */
function plainCopy(value: unknown): unknown {
  if (typeof value === 'number') return plainNumber(value);
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    const items = value as unknown[];
    const out = new Array<unknown>(items.length);
    for (let i = 0; i < items.length; i++) out[i] = plainCopy(items[i]) ?? null;
    return out;
  }
  const out: Record<string, unknown> = {};
  const fields = value as Record<string, unknown>;
  for (const key in fields) {
    if (!Object.hasOwn(fields, key)) continue;
    const copy = plainCopy(fields[key]);
    if (copy !== undefined) out[key] = copy;
  }
  return out;
}
