/**
 * Validation and normalisation of an HQE config (MODEL.md section 1 and 3). Every problem is reported with
 * the JSON pointer of the field at fault; nothing is dropped silently.
 */
import { z } from 'zod';
import { HQEConfig, type NormalizedConfig } from './config.js';
import { isPrime } from './primes.js';

export const DEFAULT_MAX_BASIS = 2048;

export interface FieldError {
  /** RFC 6901 pointer into the request body. */
  pointer: string;
  code: string;
  message: string;
  /** The offending values, where listing them helps (composites, duplicates). */
  values?: number[];
}

export type NormalizeResult =
  | { ok: true; normalized: NormalizedConfig; warnings: string[] }
  | { ok: false; errors: FieldError[] };

export interface NormalizeOptions {
  /** Server limit on k (MODEL.md: default 2048). */
  maxBasis?: number;
  /** Seed to use when the config has none; default a random u32. */
  drawSeed?: () => number;
}

export function toPointer(path: ReadonlyArray<PropertyKey>): string {
  return path.map((p) => '/' + String(p).replace(/~/g, '~0').replace(/\//g, '~1')).join('');
}

export function zodErrors(error: z.ZodError): FieldError[] {
  return error.issues.flatMap((issue) => {
    // Each unknown field at its own pointer, so a client can highlight exactly what to remove.
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ pointer: toPointer([...issue.path, key]), code: 'unknown_field', message: `unknown field "${key}"` }));
    }
    return [{ pointer: toPointer(issue.path), code: issue.code, message: issue.message }];
  });
}

/** Composites and duplicates, each at its own pointer, plus one summary entry listing every value. */
export function basisErrors(primes: unknown[], at = '/primes'): FieldError[] {
  const errors: FieldError[] = [];
  const composites: number[] = [];
  const duplicates: number[] = [];
  const firstIndex = new Map<number, number>();
  primes.forEach((p, i) => {
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 2) return; // the schema reports these
    if (!isPrime(p)) {
      composites.push(p);
      errors.push({ pointer: `${at}/${i}`, code: 'not_prime', message: `${p} is not prime` });
      return;
    }
    const first = firstIndex.get(p);
    if (first !== undefined) {
      duplicates.push(p);
      errors.push({ pointer: `${at}/${i}`, code: 'duplicate_prime', message: `${p} repeats ${at}/${first}` });
    } else firstIndex.set(p, i);
  });
  if (composites.length > 0) {
    errors.push({ pointer: at, code: 'not_prime', message: `not prime: ${composites.join(', ')}`, values: composites });
  }
  if (duplicates.length > 0) {
    errors.push({ pointer: at, code: 'duplicate_prime', message: `duplicates: ${duplicates.join(', ')}`, values: duplicates });
  }
  return errors;
}

export function normalize(input: unknown, options: NormalizeOptions = {}): NormalizeResult {
  const maxBasis = options.maxBasis ?? DEFAULT_MAX_BASIS;
  const parsed = HQEConfig.safeParse(input);
  const rawPrimes = (input as { primes?: unknown } | null)?.primes;
  const primeErrors = Array.isArray(rawPrimes) ? basisErrors(rawPrimes) : [];
  if (!parsed.success) return { ok: false, errors: [...zodErrors(parsed.error), ...primeErrors] };

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
  if (errors.length > 0) return { ok: false, errors };

  // Sort the basis ascending; every per-prime array follows its prime.
  const order = cfg.primes.map((_, i) => i);
  const sorted = cfg.primes.every((p, i) => i === 0 || cfg.primes[i - 1]! < p);
  if (!sorted) {
    order.sort((a, b) => cfg.primes[a]! - cfg.primes[b]!);
    warnings.push('primes were not in ascending order; sorted (per-prime arrays reordered with them)');
  }
  const permute = (values: number[] | undefined, missing: number): number[] | undefined =>
    values && order.map((i) => values[i] ?? missing);

  const mixer = { ...cfg.mixer, gammaMax: cfg.mixer.gammaMax ?? Math.max(1, cfg.mixer.gamma0) };
  if (mixer.gammaMax < mixer.gamma0) {
    warnings.push(`mixer.gamma0 ${mixer.gamma0} is above mixer.gammaMax ${mixer.gammaMax}; coupling starts at gammaMax`);
  }
  if (mixer.type === 'learned' && cfg.schedule.dt * mixer.learningRate > 1) {
    warnings.push('schedule.dt * mixer.learningRate > 1: the learned matrix overshoots each step');
  }
  if (!cfg.boundary.enforceUnitNorm && !target) {
    warnings.push('boundary.enforceUnitNorm is false but there is no resonanceTarget: the norm channel stays at 1');
  }

  const normalized: NormalizedConfig = {
    ...cfg,
    primes: order.map((i) => cfg.primes[i]!),
    initialAmplitudes: permute(amps, 1),
    phaseSeeding: { ...cfg.phaseSeeding, customPhases: permute(custom, 0) },
    resonanceTarget: target && { ...target, weights: target.operator === 'custom' ? permute(target.weights, 0) : undefined },
    mixer,
    seed: cfg.seed ?? (options.drawSeed ?? drawSeed)(),
  };
  return { ok: true, normalized: stripUndefined(normalized), warnings };
}

/** A uniformly random u32 from the platform CSPRNG (Node and browsers alike). */
export function drawSeed(): number {
  return globalThis.crypto.getRandomValues(new Uint32Array(1))[0]!;
}

/** JSON output without `"x": undefined` noise, so a normalized config round-trips through normalize(). */
function stripUndefined<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}
