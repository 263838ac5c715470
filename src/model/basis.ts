/**
 * Host constants of one simulation (docs/model.md sections 1–3), computed once in float64. Engines upload them
 * (the WebGPU engine rounds to f32 once).
 */
import type { SimSpec } from './spec.js';

const TWO_PI = 2 * Math.PI;
const PHI = (1 + Math.sqrt(5)) / 2;
const SILVER = 1 + Math.SQRT2;
export const GOLDEN_ANGLE = TWO_PI / (PHI * PHI);
export const SILVER_ANGLE = TWO_PI / (SILVER * SILVER);

export interface BasisConstants {
  k: number;
  primes: Uint32Array;
  /** l_i = ln p_i */
  logP: Float64Array;
  /**
   * Centred logs l_i - l_ref, l_ref = (lmin + lmax)/2 (docs/model.md section 9): every quantity that depends
   * only on differences of l_i (mu, Var_P, locality, the prime penalty) uses these, so a narrow band of
   * large primes keeps its digits in f32.
   */
  logC: Float64Array;
  /** w_i = 1 + s l_i */
  omega: Float64Array;
  /** Restart-0 phases: sigma_i + pi [A_i < 0], in [0, 2pi). */
  theta0: Float64Array;
  /** Initial mass, also the prior of `kl_to_prior`. */
  mass0: Float64Array;
  /** Weights of the `custom` resonance operator (zeros otherwise). */
  weights: Float64Array;
  vmax: number;
  /** Multiplier that turns the raw kernel into Kn (0 when k = 1). */
  kernelScale: number;
}

export function wrap2pi(x: number): number {
  const r = x % TWO_PI;
  return r < 0 ? r + TWO_PI : r;
}

export function scaffoldPhases(spec: Pick<SimSpec, 'primes' | 'golden' | 'silver' | 'customPhases'>): Float64Array {
  const k = spec.primes.length;
  const out = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    const s = (spec.golden ? i * GOLDEN_ANGLE : 0) + (spec.silver ? i * SILVER_ANGLE : 0) + (spec.customPhases?.[i] ?? 0);
    out[i] = wrap2pi(s);
  }
  return out;
}

/** Raw kernel entry K_ij (i != j) of docs/model.md section 2; `learned` uses the local kernel as its base. */
export function kernelEntry(spec: Pick<SimSpec, 'mixer' | 'localityBias' | 'semantic'>, pi: number, pj: number, li: number, lj: number): number {
  if (spec.mixer === 'flow') return 1;
  const g = (2 * Math.sqrt(li * lj)) / (li + lj);
  const b = spec.localityBias;
  const loc = 1 - b + (b * Math.min(pi, pj)) / Math.max(pi, pj);
  const sem = spec.semantic ? 1 / (1 + Math.abs(pi - pj)) : 1;
  return g * loc * sem;
}

/** Kn = scale * K; scale = 1/max row sum (1/(2 max row sum) for learned, so that A can only strengthen). */
export function kernelScale(spec: SimSpec, logP: Float64Array): number {
  const k = spec.primes.length;
  let maxRow = 0;
  for (let i = 0; i < k; i++) {
    let row = 0;
    for (let j = 0; j < k; j++) if (j !== i) row += kernelEntry(spec, spec.primes[i]!, spec.primes[j]!, logP[i]!, logP[j]!);
    maxRow = Math.max(maxRow, row);
  }
  if (maxRow === 0) return 0;
  return spec.mixer === 'learned' ? 1 / (2 * maxRow) : 1 / maxRow;
}

/** The normalised dense kernel Kn (row-major k x k, zero diagonal), in float64. */
export function kernelMatrix(spec: SimSpec, basis: BasisConstants): Float64Array {
  const { k, logP, kernelScale: scale } = basis;
  const out = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      if (i !== j) out[i * k + j] = scale * kernelEntry(spec, spec.primes[i]!, spec.primes[j]!, logP[i]!, logP[j]!);
    }
  }
  return out;
}

/** Vmax = ((lmax - lmin)/2)^2 of a basis, 1 when it is 0 (docs/model.md section 1). */
export function vmaxOf(primes: readonly number[]): number {
  let pmin = Infinity;
  let pmax = -Infinity;
  for (const p of primes) {
    pmin = Math.min(pmin, p);
    pmax = Math.max(pmax, p);
  }
  const half = (Math.log(pmax) - Math.log(pmin)) / 2;
  return half === 0 || !Number.isFinite(half) ? 1 : half * half;
}

export function basisConstants(spec: SimSpec): BasisConstants {
  const k = spec.primes.length;
  const logP = Float64Array.from(spec.primes, (p) => Math.log(p));
  const omega = logP.map((l) => 1 + spec.frequencyScale * l);
  let lmin = Infinity;
  let lmax = -Infinity;
  for (const l of logP) {
    lmin = Math.min(lmin, l);
    lmax = Math.max(lmax, l);
  }
  const half = (lmax - lmin) / 2;
  const vmax = half === 0 ? 1 : half * half;
  const lref = (lmin + lmax) / 2;
  const logC = logP.map((l) => l - lref);

  const amps = spec.initialAmplitudes;
  const theta0 = scaffoldPhases(spec);
  // Scaled by the largest magnitude first (docs/model.md section 9): amplitudes like 1e200 or 1e-200 would
  // overflow or underflow when squared.
  let amax = 0;
  for (let i = 0; i < k; i++) amax = Math.max(amax, Math.abs(amps?.[i] ?? 1));
  const mass0 = new Float64Array(k);
  let total = 0;
  for (let i = 0; i < k; i++) {
    const a = amps?.[i] ?? 1;
    if (a < 0) theta0[i] = wrap2pi(theta0[i]! + Math.PI);
    const x = amax > 0 ? Math.abs(a) / amax : 0;
    mass0[i] = spec.norm === 'L2' ? x * x : x;
    total += mass0[i]!;
  }
  for (let i = 0; i < k; i++) mass0[i] = mass0[i]! / total;

  const weights = new Float64Array(k);
  if (spec.target?.operator === 'custom' && spec.target.weights) weights.set(spec.target.weights);

  return {
    k,
    primes: Uint32Array.from(spec.primes),
    logP,
    logC,
    omega,
    theta0,
    mass0,
    weights,
    vmax,
    kernelScale: kernelScale(spec, logP),
  };
}

/** The unit roundoff of f32 (2^-24): the relative rounding error of a stored f32 value. */
const F32_UNIT_ROUNDOFF = 2 ** -24;

/** Neighbouring primes whose frequency difference f32 cannot resolve (unresolvedBand). */
export interface UnresolvedBand {
  /** The closest pair (ascending). */
  p: number;
  q: number;
  /** s*ln(q/p), in float64. */
  difference: number;
  /** 2^-24 * w_q: the rounding error of w_q in f32. */
  resolution: number;
}

/**
 * The pair of neighbouring primes (in ascending order) whose natural frequencies lie closest relative to
 * their f32 rounding, when their difference s*ln(q/p) falls below the rounding error of w_q in f32
 * (docs/model.md section 9); null when f32 resolves every difference (and when s = 0: there are none).
 * An f32 state cannot follow such a band: its phase differences drift by less than f32 rounds them.
 */
export function unresolvedBand(primes: readonly number[], frequencyScale: number): UnresolvedBand | null {
  if (!(frequencyScale > 0) || primes.length < 2) return null;
  const sorted = Float64Array.from(primes).sort();
  let worst: UnresolvedBand | null = null;
  let worstRatio = 1;
  for (let i = 1; i < sorted.length; i++) {
    const p = sorted[i - 1]!;
    const q = sorted[i]!;
    if (q === p) continue;
    const difference = frequencyScale * Math.log1p((q - p) / p);
    const resolution = F32_UNIT_ROUNDOFF * (1 + frequencyScale * Math.log(q));
    const ratio = difference / resolution;
    if (ratio < worstRatio) {
      worstRatio = ratio;
      worst = { p, q, difference, resolution };
    }
  }
  return worst;
}
