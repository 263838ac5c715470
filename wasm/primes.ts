/**
 * The per-prime loops of a visit (docs/model.md section 4 steps 2-5, section 5) in WebAssembly: the twins of
 * loadAmplitudes, measure and update in src/engine/cpu/step.ts, for one simulation at a time. T is the
 * mode's precision: every value the TypeScript loops round with Math.fround is rounded to T here (`<T>`),
 * at the same points; the rest is float64, summed in index order. The transcendentals are AssemblyScript's
 * (the musl algorithms in float64, then rounded to T), so this is a backend of its own for bit-identity.
 *
 * Inputs: a simulation's record (PRIME_RECORD_BYTES, u32 addresses of its vectors in the shared memory,
 * written once when the simulation is made: src/engine/cpu/state.ts, PRIME_FIELDS) and the step's scalars as
 * arguments. measure writes its sums to the simulation's out block (float64, in the order of MEASURE_SLOTS
 * in state.ts).
 * No workgroups or threads here: a caller may give a thread a range of primes (loadAmplitudes) or a whole
 * simulation (measure, update).
 */

// Slots of a simulation's record, in the order of PRIME_FIELDS in src/engine/cpu/state.ts.
const THETA = 0;
const MASS = 1;
const LOGC = 2;
const OMEGA = 3;
const PRIOR = 4;
const WEIGHTS = 5;
const DTHETA = 6;
const COS = 7;
const SIN = 8;
const LNP = 9;
const AMP = 10;
const AMP_COS = 11;
const AMP_SIN = 12;
const Z_RE = 13;
const Z_IM = 14;
const Q = 15;
const OUT = 16;

// Slots of measure's out block (float64): MEASURE_SLOTS in src/engine/cpu/state.ts, read by step.ts (sumPrimesWasm).
const PC = 0;
const PS = 1;
const NUM = 2;
const DEN = 3;
const ENT = 4;
const MEAN = 5;
const DOM = 6;
const WC = 7;
const WS = 8;
const WSUM = 9;
const VARIANCE = 10;
const BAD_MASS = 11;
const BAD_PHASE = 12;
const STEP_OK = 13;

const TINY: f64 = 1e-30;
const MAX_PHASE_STEP: f64 = 1048576; // 2^20 rad
const TWO_PI: f64 = 6.283185307179586;
const TWO_POW_M24: f64 = 5.9604644775390625e-8;
const XI_SCALE: f64 = 1.7320508;

// @ts-ignore: decorator
@inline
function at(record: usize, slot: i32): usize {
  return <usize>load<u32>(record + (<usize>slot << 2));
}

// @ts-ignore: decorator
@inline
function get<T>(record: usize, slot: i32, i: i32): f64 {
  return <f64>load<T>(at(record, slot) + (<usize>i << alignof<T>()));
}

// @ts-ignore: decorator
@inline
function put<T>(record: usize, slot: i32, i: i32, v: f64): void {
  store<T>(at(record, slot) + (<usize>i << alignof<T>()), <T>v);
}

// @ts-ignore: decorator
@inline
function round<T>(x: f64): f64 {
  return <f64>(<T>x);
}

/** wrap_2pi with every stored value rounded to T (edits.ts, wrapRounded). */
// @ts-ignore: decorator
@inline
function wrap<T>(x: f64): f64 {
  const twoPi = round<T>(TWO_PI);
  const w = round<T>(x - round<T>(TWO_PI * Math.floor(round<T>(x / twoPi))));
  return w >= twoPi ? 0 : w;
}

/** U(seed, rho, n, i) of src/model/rng.ts: pcg4d's first word, 24 bits, in (0, 1). */
function uniform(seed: u32, rho: u32, n: u32, i: u32): f64 {
  let x = seed * 1664525 + 1013904223;
  let y = rho * 1664525 + 1013904223;
  let z = n * 1664525 + 1013904223;
  let w = i * 1664525 + 1013904223;
  x += y * w;
  y += z * x;
  z += x * y;
  w += y * z;
  x ^= x >> 16;
  y ^= y >> 16;
  z ^= z >> 16;
  w ^= w >> 16;
  x += y * w;
  return (<f64>(x >> 8) + 0.5) * TWO_POW_M24;
}

/** a_j, a_j cos theta_j, a_j sin theta_j for j in [j0, j1), and cos, sin (float64 vectors) for the visit. */
function loadAmplitudes<T>(record: usize, j0: i32, j1: i32, l2: bool): void {
  for (let j = j0; j < j1; j++) {
    const m = get<T>(record, MASS, j);
    const a = l2 ? round<T>(Math.sqrt(m)) : m;
    NativeMath.sincos(get<T>(record, THETA, j));
    const c = round<T>(NativeMath.sincos_cos);
    const s = round<T>(NativeMath.sincos_sin);
    put<f64>(record, COS, j, c);
    put<f64>(record, SIN, j, s);
    put<T>(record, AMP, j, a);
    put<T>(record, AMP_COS, j, a * c);
    put<T>(record, AMP_SIN, j, a * s);
  }
}

/**
 * The sums of the metrics over the k primes, the mass-weighted mean of the centred logs (rounded to T) and
 * the variance about it, ln P_i (kept for update) and the phase increments of this state's step (into
 * dTheta), with their checks: step.ts, measure.
 */
function measure<T>(record: usize, k: i32, h: f64, gamma: f64, noiseAmp: f64, seed: u32, rho: u32, n: u32, kl: bool): void {
  let pc: f64 = 0, ps: f64 = 0, num: f64 = 0, den: f64 = 0, ent: f64 = 0, mean: f64 = 0, dom: f64 = 0;
  let wc: f64 = 0, ws: f64 = 0, wsum: f64 = 0;
  let badMass = false, badPhase = false, stepOk = true;
  for (let i = 0; i < k; i++) {
    const p = get<T>(record, MASS, i);
    if (!isFinite(p)) badMass = true;
    if (!isFinite(get<T>(record, THETA, i))) badPhase = true;
    const c = get<f64>(record, COS, i);
    const s = get<f64>(record, SIN, i);
    const zr = get<T>(record, Z_RE, i);
    const zi = get<T>(record, Z_IM, i);
    const qi = get<T>(record, Q, i);
    const a = get<T>(record, AMP, i);
    pc += p * c;
    ps += p * s;
    num += a * (c * zr + s * zi);
    den += a * qi;
    const lp = Math.log(p);
    put<f64>(record, LNP, i, lp);
    if (p > 0) ent += p * (kl ? Math.log(p / get<T>(record, PRIOR, i)) : lp);
    mean += p * get<T>(record, LOGC, i);
    dom = max(dom, p);
    const w = get<T>(record, WEIGHTS, i);
    wc += w * p * c;
    ws += w * p * s;
    wsum += w * p;
    const torque = qi < TINY ? 0 : round<T>((c * zi - s * zr) / qi);
    let d = round<T>(h * round<T>(round<T>(gamma * torque) - get<T>(record, OMEGA, i)));
    if (noiseAmp > 0) d = round<T>(d + round<T>(noiseAmp * round<T>(XI_SCALE * (2 * uniform(seed, rho, n, i) - 1))));
    put<T>(record, DTHETA, i, d);
    if (!(Math.abs(d) <= MAX_PHASE_STEP)) stepOk = false;
  }
  mean = round<T>(mean);
  let variance: f64 = 0;
  for (let i = 0; i < k; i++) {
    const d = get<T>(record, LOGC, i) - mean;
    variance += get<T>(record, MASS, i) * d * d;
  }
  const out = at(record, OUT);
  store<f64>(out + (PC << 3), pc);
  store<f64>(out + (PS << 3), ps);
  store<f64>(out + (NUM << 3), num);
  store<f64>(out + (DEN << 3), den);
  store<f64>(out + (ENT << 3), ent);
  store<f64>(out + (MEAN << 3), mean);
  store<f64>(out + (DOM << 3), dom);
  store<f64>(out + (WC << 3), wc);
  store<f64>(out + (WS << 3), ws);
  store<f64>(out + (WSUM << 3), wsum);
  store<f64>(out + (VARIANCE << 3), variance);
  store<f64>(out + (BAD_MASS << 3), badMass ? 1 : 0);
  store<f64>(out + (BAD_PHASE << 3), badPhase ? 1 : 0);
  store<f64>(out + (STEP_OK << 3), stepOk ? 1 : 0);
}

/**
 * The phase update, the mass flow and its normalisation (step.ts, update): theta += dTheta wrapped, y_i into
 * the amplitude vector (spent by now), P_i = e^{y_i - max y} / sum, then `sweeps` projector sweeps. The
 * mass floor e^-80 and its log come from the host, so that the threshold is the TypeScript loops' own.
 */
function update<T>(record: usize, k: i32, mean: f64, hLambda: f64, hPenalty: f64, sweeps: i32, minMass: f64, lnMinMass: f64): void {
  let ymax = -Infinity;
  for (let i = 0; i < k; i++) {
    const qi = get<T>(record, Q, i);
    const align = qi < TINY ? 0 : round<T>((get<f64>(record, COS, i) * get<T>(record, Z_RE, i) + get<f64>(record, SIN, i) * get<T>(record, Z_IM, i)) / qi);
    put<T>(record, THETA, i, wrap<T>(round<T>(get<T>(record, THETA, i) + get<T>(record, DTHETA, i))));
    const d = round<T>(get<T>(record, LOGC, i) - mean);
    const p = get<T>(record, MASS, i);
    // ln max(p, MIN_MASS) from ln p (step.ts, logMass); NaN stays NaN.
    const logMass = p >= minMass ? get<f64>(record, LNP, i) : p < minMass ? lnMinMass : NaN;
    const y = round<T>(logMass + round<T>(hLambda * align) - round<T>(hPenalty * round<T>(d * d)));
    put<T>(record, AMP, i, y);
    if (y > ymax) ymax = y;
  }
  let total: f64 = 0;
  for (let i = 0; i < k; i++) {
    const e = round<T>(Math.exp(get<T>(record, AMP, i) - ymax));
    put<T>(record, MASS, i, e);
    total += e;
  }
  total = round<T>(total);
  for (let i = 0; i < k; i++) put<T>(record, MASS, i, get<T>(record, MASS, i) / total);
  for (let sweep = 0; sweep < sweeps; sweep++) {
    let sum: f64 = 0;
    for (let i = 0; i < k; i++) sum += get<T>(record, MASS, i);
    sum = round<T>(sum);
    for (let i = 0; i < k; i++) put<T>(record, MASS, i, get<T>(record, MASS, i) / sum);
  }
}

export function loadAmplitudes32(record: usize, j0: i32, j1: i32, l2: bool): void {
  loadAmplitudes<f32>(record, j0, j1, l2);
}

export function loadAmplitudes64(record: usize, j0: i32, j1: i32, l2: bool): void {
  loadAmplitudes<f64>(record, j0, j1, l2);
}

export function measure32(record: usize, k: i32, h: f64, gamma: f64, noiseAmp: f64, seed: u32, rho: u32, n: u32, kl: bool): void {
  measure<f32>(record, k, h, gamma, noiseAmp, seed, rho, n, kl);
}

export function measure64(record: usize, k: i32, h: f64, gamma: f64, noiseAmp: f64, seed: u32, rho: u32, n: u32, kl: bool): void {
  measure<f64>(record, k, h, gamma, noiseAmp, seed, rho, n, kl);
}

export function update32(record: usize, k: i32, mean: f64, hLambda: f64, hPenalty: f64, sweeps: i32, minMass: f64, lnMinMass: f64): void {
  update<f32>(record, k, mean, hLambda, hPenalty, sweeps, minMass, lnMinMass);
}

export function update64(record: usize, k: i32, mean: f64, hLambda: f64, hPenalty: f64, sweeps: i32, minMass: f64, lnMinMass: f64): void {
  update<f64>(record, k, mean, hLambda, hPenalty, sweeps, minMass, lnMinMass);
}
