/**
 * One tick of the CPU engine (docs/engine.md): the dense pass of docs/model.md section 4 step 1 over a group of
 * simulations that share a kernel, then per simulation the metrics, the decision and the update.
 * Precision f32 rounds every stored value with Math.fround (the points where the GPU stores f32); dot
 * products accumulate in float64 within a row, summed in index order j = 0..k-1 (in TypeScript; the
 * WebAssembly dense pass sums in vector lanes in the mode's precision, wasm/dense.ts). With the WebAssembly
 * loops (WasmThread) the per-prime loops of a visit run in their twins of wasm/primes.ts; the decisions
 * stay here.
 */
import type { Metrics } from '../../model/config.js';
import { JITTER_STREAM, noise, uniform } from '../../model/rng.js';
import { Flag, roundingOf, SIM_STATUSES, statusOfFlags, type TickRecord } from '../types.js';
import { collapseThresholdOf, wrapRounded } from '../edits.js';
import { type CpuSimState, MEASURE_SLOT, type MeasureSlot, resetRestart, S, type Vec } from './state.js';
import { SIM_RECORD_BYTES, simsPerDenseCall, type WasmLoops } from './wasm.js';

/**
 * The WebAssembly loops of one thread (the dense pass and the per-prime loops of simulations in the arena),
 * and its dense call table (six addresses per simulation) in the arena.
 */
export interface WasmThread {
  loops: WasmLoops;
  table: Uint32Array;
}

const MIN_LOG_MASS = -80;
const TINY = 1e-30;
const RUNNING = SIM_STATUSES.indexOf('running');

function rounder(state: CpuSimState): (x: number) => number {
  return roundingOf(state.precision);
}

/**
 * Amplitudes a_j and a_j e^{i theta_j} of primes [j0, j1), and cos theta_j, sin theta_j kept for the visit
 * of the same state (measure and update read them instead of computing them again).
 */
function loadAmplitudes(state: CpuSimState, wasm: WasmThread | undefined, j0 = 0, j1 = state.k): void {
  if (wasm && state.inArena) {
    wasm.loops.loadAmplitudes(state.precision, state.primeRecord, j0, j1, state.spec.norm === 'L2');
    return;
  }
  const R = rounder(state);
  const l2 = state.spec.norm === 'L2';
  const { mass, theta, amp, ampCos, ampSin, cosT, sinT } = state;
  for (let j = j0; j < j1; j++) {
    const a = l2 ? R(Math.sqrt(mass[j]!)) : mass[j]!;
    const t = theta[j]!;
    const c = R(Math.cos(t));
    const sn = R(Math.sin(t));
    cosT[j] = c;
    sinT[j] = sn;
    amp[j] = a;
    ampCos[j] = R(a * c);
    ampSin[j] = R(a * sn);
  }
}

/** Columns per tile of the dense pass: a tile of a_j e^{i theta_j} for a whole group stays in L2. */
const TILE = 512;

/**
 * z_i = sum_j Kn_ij a_j e^{i theta_j}, q_i = sum_j Kn_ij a_j, summed in index order j = 0..k-1.
 * Loop order for V8 and caches: columns in tiles (a tile of every simulation's amplitudes stays in cache
 * while all rows pass over it), rows two at a time (each amplitude load serves two rows), and each kernel
 * row segment is read once for the whole group of simulations sharing the kernel. The running sums carry
 * across tiles, so the arithmetic is exactly the plain row loop's.
 */
export function densePass(group: CpuSimState[], wasm?: WasmThread): void {
  const first = group[0];
  if (!first) return;
  const k = first.k;
  for (const s of group) loadAmplitudes(s, wasm);
  if (first.spec.mixer === 'learned') {
    for (const s of group) denseLearned(s);
    return;
  }
  if (wasm && first.inArena) {
    wasmDense(group, wasm);
    return;
  }
  const K = first.kernel;
  for (const s of group) {
    s.zRe.fill(0);
    s.zIm.fill(0);
    s.q.fill(0);
  }
  for (let j0 = 0; j0 < k; j0 += TILE) {
    const j1 = Math.min(k, j0 + TILE);
    let i = 0;
    for (; i + 1 < k; i += 2) {
      const r0 = i * k;
      const r1 = r0 + k;
      for (const s of group) {
        const ac = s.ampCos;
        const as = s.ampSin;
        const a = s.amp;
        let zr0 = s.zRe[i]!;
        let zi0 = s.zIm[i]!;
        let q0 = s.q[i]!;
        let zr1 = s.zRe[i + 1]!;
        let zi1 = s.zIm[i + 1]!;
        let q1 = s.q[i + 1]!;
        for (let j = j0; j < j1; j++) {
          const k0 = K[r0 + j]!;
          const k1 = K[r1 + j]!;
          const c = ac[j]!;
          const sn = as[j]!;
          const aj = a[j]!;
          zr0 += k0 * c;
          zi0 += k0 * sn;
          q0 += k0 * aj;
          zr1 += k1 * c;
          zi1 += k1 * sn;
          q1 += k1 * aj;
        }
        s.zRe[i] = zr0;
        s.zIm[i] = zi0;
        s.q[i] = q0;
        s.zRe[i + 1] = zr1;
        s.zIm[i + 1] = zi1;
        s.q[i + 1] = q1;
      }
    }
    if (i < k) for (const s of group) denseRow(s, K, i, j0, j1);
  }
  if (first.precision === 'f32') for (const s of group) roundDense(s);
}

/**
 * The dense pass in WebAssembly (wasm/dense.ts), rows [i0, i1): the group's simulations in blocks whose
 * amplitudes stay in cache, each block's records in the call table. A row's sums do not depend on the
 * blocks, so neither do the results.
 */
function wasmDense(group: CpuSimState[], { loops, table }: WasmThread, i0 = 0, i1 = group[0]!.k): void {
  const first = group[0]!;
  const capacity = Math.floor(table.length / (SIM_RECORD_BYTES / 4));
  const block = Math.min(capacity, simsPerDenseCall(first.k, first.ampCos.BYTES_PER_ELEMENT));
  for (let from = 0; from < group.length; from += block) {
    const part = group.slice(from, from + block);
    part.forEach((s, n) => table.set([s.ampCos.byteOffset, s.ampSin.byteOffset, s.amp.byteOffset, s.zRe.byteOffset, s.zIm.byteOffset, s.q.byteOffset], n * 6));
    loops.dense(first.precision, first.kernel.byteOffset, first.k, i0, i1, table.byteOffset, part.length);
  }
}

function denseRow(s: CpuSimState, K: Vec, i: number, j0: number, j1: number): void {
  const { k, ampCos: ac, ampSin: as, amp: a } = s;
  const row = i * k;
  let zr = s.zRe[i]!;
  let zi = s.zIm[i]!;
  let q = s.q[i]!;
  for (let j = j0; j < j1; j++) {
    const kij = K[row + j]!;
    zr += kij * ac[j]!;
    zi += kij * as[j]!;
    q += kij * a[j]!;
  }
  s.zRe[i] = zr;
  s.zIm[i] = zi;
  s.q[i] = q;
}

/** f32 mode: z and q are stored as f32, as on the GPU. */
function roundDense(s: CpuSimState): void {
  for (let i = 0; i < s.k; i++) {
    s.zRe[i] = Math.fround(s.zRe[i]!);
    s.zIm[i] = Math.fround(s.zIm[i]!);
    s.q[i] = Math.fround(s.q[i]!);
  }
}

/** Learned mixer: Kn_ij (1 + A_ij), per simulation. */
function denseLearned(s: CpuSimState): void {
  const { k, kernel: K, learned: A, ampCos: ac, ampSin: as, amp: a } = s;
  const R = rounder(s);
  for (let i = 0; i < k; i++) {
    const row = i * k;
    let zr = 0;
    let zi = 0;
    let q = 0;
    for (let j = 0; j < k; j++) {
      const kij = R(K[row + j]! * (1 + A[row + j]!));
      zr += kij * ac[j]!;
      zi += kij * as[j]!;
      q += kij * a[j]!;
    }
    s.zRe[i] = zr;
    s.zIm[i] = zi;
    s.q[i] = q;
  }
  if (s.precision === 'f32') roundDense(s);
}

const clip01 = (x: number): number => Math.min(1, Math.max(0, x));

interface Measured {
  metrics: Metrics;
  controlled: number;
  /** Every metric finite, lnNu not NaN and e^lnNu finite in float64 (the reported amplitudes). */
  finite: boolean;
  /** Every phase increment of this state's step (in `dTheta`) finite and at most MAX_PHASE_STEP. */
  stepOk: boolean;
  mean: number;
}

/** Largest phase increment of a step, in radians (docs/model.md section 9): beyond it phases mean nothing. */
const MAX_PHASE_STEP = 2 ** 20;
/** ln of the largest float64: e^lnNu overflows above it. */
const LN_MAX = Math.log(Number.MAX_VALUE);

/** What the per-prime loop of measure sums (docs/model.md section 5), in float64, in index order. */
interface PrimeSums {
  pc: number;
  ps: number;
  num: number;
  den: number;
  ent: number;
  /** The mass-weighted mean of the centred logs, rounded as the mode stores it. */
  mean: number;
  dom: number;
  wc: number;
  ws: number;
  wsum: number;
  /** sum P_i (l_i - mean)^2. */
  variance: number;
  badMass: boolean;
  badPhase: boolean;
  stepOk: boolean;
}

/**
 * The per-prime loop of measure in TypeScript: the sums of the metrics, ln P_i (into `lnP`, for update)
 * and the phase increments of this state's step (section 4 step 4, into `dTheta`; the update applies
 * them), each checked (section 9). wasm/primes.ts (measure) is its twin.
 */
function sumPrimes(s: CpuSimState, noiseAmp: number): PrimeSums {
  const R = rounder(s);
  const { k, mass: P, theta, amp, zRe, zIm, q, logC, prior, weights, spec, omega, dTheta, cosT, sinT, lnP, scalars: sc } = s;
  const h = spec.dt;
  const gamma = sc[S.GAMMA]!;
  const n = sc[S.N]!;
  const rho = sc[S.RESTART]!;
  let pc = 0;
  let ps = 0;
  let num = 0;
  let den = 0;
  let ent = 0;
  let mean = 0;
  let dom = 0;
  let wc = 0;
  let ws = 0;
  let wsum = 0;
  let badMass = false;
  let badPhase = false;
  let stepOk = true;
  const kl = spec.entropyBase === 'kl_to_prior';
  for (let i = 0; i < k; i++) {
    const p = P[i]!;
    const t = theta[i]!;
    if (!Number.isFinite(p)) badMass = true;
    if (!Number.isFinite(t)) badPhase = true;
    const c = cosT[i]!;
    const sn = sinT[i]!;
    pc += p * c;
    ps += p * sn;
    num += amp[i]! * (c * zRe[i]! + sn * zIm[i]!);
    den += amp[i]! * q[i]!;
    // ln P_i serves the entropy here and the mass update of the same state (update, logMass).
    const lp = Math.log(p);
    lnP[i] = lp;
    if (p > 0) ent += p * (kl ? Math.log(p / prior[i]!) : lp);
    mean += p * logC[i]!;
    dom = Math.max(dom, p);
    const w = weights[i]!;
    wc += w * p * c;
    ws += w * p * sn;
    wsum += w * p;
    const qi = q[i]!;
    const torque = qi < TINY ? 0 : R((c * zIm[i]! - sn * zRe[i]!) / qi);
    let d = R(h * R(R(gamma * torque) - omega[i]!));
    if (noiseAmp > 0) d = R(d + R(noiseAmp * R(noise(spec.seed, rho, n, i))));
    dTheta[i] = d;
    if (!(Math.abs(d) <= MAX_PHASE_STEP)) stepOk = false;
  }
  mean = R(mean);
  let variance = 0;
  for (let i = 0; i < k; i++) {
    const d = logC[i]! - mean;
    variance += P[i]! * d * d;
  }
  return { pc, ps, num, den, ent, mean, dom, wc, ws, wsum, variance, badMass, badPhase, stepOk };
}

/** sumPrimes in WebAssembly (wasm/primes.ts), read back from the simulation's out block. */
function sumPrimesWasm(s: CpuSimState, noiseAmp: number, loops: WasmLoops): PrimeSums {
  const sc = s.scalars;
  loops.measure(s.precision, s.primeRecord, s.k, s.spec.dt, sc[S.GAMMA]!, noiseAmp, s.spec.seed, sc[S.RESTART]!, sc[S.N]!, s.spec.entropyBase === 'kl_to_prior');
  const o = s.measureOut;
  const at = (slot: MeasureSlot): number => o[MEASURE_SLOT[slot]]!;
  return {
    pc: at('pc'), ps: at('ps'), num: at('num'), den: at('den'), ent: at('ent'), mean: at('mean'), dom: at('dom'),
    wc: at('wc'), ws: at('ws'), wsum: at('wsum'), variance: at('variance'),
    badMass: at('badMass') === 1, badPhase: at('badPhase') === 1, stepOk: at('stepOk') === 1,
  };
}

/**
 * Metrics of the current state (docs/model.md section 5), the controlled resonance R_n, and the phase
 * increments of this state's step (section 4 step 4, into `dTheta`; the update applies them), so that a
 * step that cannot be represented fails the state it starts from (section 9).
 */
function measure(s: CpuSimState, wasm: WasmThread | undefined): Measured {
  const R = rounder(s);
  const { k, spec, scalars: sc } = s;
  const noiseAmp = R(Math.sqrt(2 * sc[S.TEMP]! * spec.dt));
  const sums = wasm && s.inArena ? sumPrimesWasm(s, noiseAmp, wasm.loops) : sumPrimes(s, noiseAmp);
  const { pc, ps, num, den, ent, dom, wc, ws, wsum, variance, badMass, badPhase, stepOk, mean } = sums;
  const kl = spec.entropyBase === 'kl_to_prior';
  const lnK = Math.log(k);
  // A non-finite mass makes every metric non-finite, a non-finite phase those that read phases
  // (docs/model.md section 9), whatever the sums above happened to give.
  const r = badMass || badPhase ? NaN : R(Math.hypot(pc, ps));
  const coherence = badMass || badPhase ? NaN : R(den < TINY ? 0 : num / den);
  const entropy = badMass ? NaN : R(k === 1 ? 0 : kl ? Math.max(0, 1 - ent / lnK) : -ent / lnK);
  const locality = badMass ? NaN : R(1 - Math.sqrt(variance / s.vmax));
  const dominance = badMass ? NaN : dom;
  // lnNu NaN, or e^lnNu (the reported amplitudes' scale) above float64: not finite. -Infinity is a norm
  // that underflowed to 0 (f32 gets there long before f64): zero amplitudes, not a failure.
  const finite = [r, coherence, entropy, locality, dominance].every(Number.isFinite) && sc[S.LNNU]! <= LN_MAX;
  const metrics: Metrics = {
    resonanceStrength: clip01(r),
    coherence: clip01(coherence),
    entropy: clip01(entropy),
    locality: clip01(locality),
    dominance: clip01(dominance),
    plateauDetected: false,
  };
  let controlled = metrics.resonanceStrength;
  if (spec.target?.operator === 'R_q') controlled = metrics.coherence;
  else if (spec.target?.operator === 'custom') controlled = R(wsum < TINY ? 0 : Math.hypot(wc, ws) / wsum);
  return { metrics, controlled, finite, stepOk, mean };
}

/** Re-seed the phases for restart `restart` (docs/model.md section 3) and reset its counters. */
function restart(s: CpuSimState, next: number): void {
  const R = rounder(s);
  const jitter = R(Math.PI * Math.min(1, s.spec.temperature0));
  for (let i = 0; i < s.k; i++) {
    const u = R(2 * uniform(s.spec.seed, next, JITTER_STREAM, i) - 1);
    s.theta[i] = wrapRounded(R(s.theta0[i]! + R(jitter * u)), R);
  }
  resetRestart(s, next);
}

/** The floor of a mass in the update: ln P never goes below MIN_LOG_MASS (docs/model.md section 4 step 5). */
const MIN_MASS = Math.exp(MIN_LOG_MASS);
const LN_MIN_MASS = Math.log(MIN_MASS);

/** ln max(p, MIN_MASS), from `lp` = ln p as measure formed it: exactly Math.log(Math.max(p, MIN_MASS)). */
function logMass(p: number, lp: number): number {
  if (p >= MIN_MASS) return lp;
  return p < MIN_MASS ? LN_MIN_MASS : NaN;
}

/** Section 4 steps 3–8 on a state whose dense pass and metrics are known. */
function update(s: CpuSimState, m: Measured, wasm: WasmThread | undefined): void {
  const R = rounder(s);
  const { spec, scalars: sc } = s;
  const h = spec.dt;
  const n = sc[S.N]!;
  const gamma = sc[S.GAMMA]!;
  const target = spec.target;
  const hLambda = R(h * spec.lambda);
  const hPenalty = R((h * spec.lambdaPrime) / s.vmax);
  if (wasm && s.inArena) wasm.loops.update(s.precision, s.primeRecord, s.k, m.mean, hLambda, hPenalty, spec.projectorSweeps, MIN_MASS, LN_MIN_MASS);
  else updatePrimes(s, m.mean, hLambda, hPenalty);

  if (target && !spec.enforceUnitNorm) sc[S.LNNU] = R(sc[S.LNNU]! - R(hLambda * R(m.controlled - target.value)));
  if (spec.mixer === 'learned') learn(s);

  sc[S.GAMMA] = !target || m.controlled < target.value ? R(Math.min(gamma + spec.gammaGrowth, spec.gammaMax)) : gamma;
  sc[S.TEMP] = R(sc[S.TEMP]! * spec.beta);
  sc[S.N] = n + 1;
  sc[S.STEP] = sc[S.STEP]! + 1;
}

/**
 * The per-prime loops of update in TypeScript: the phase update, the mass flow and its normalisation with
 * the projector sweeps. wasm/primes.ts (update) is its twin.
 */
function updatePrimes(s: CpuSimState, mean: number, hLambda: number, hPenalty: number): void {
  const R = rounder(s);
  const { k, spec, theta, mass: P, zRe, zIm, q, logC, dTheta, cosT, sinT, lnP } = s;
  let ymax = -Infinity;
  const y = s.amp; // the amplitudes are spent: reuse the buffer for y
  for (let i = 0; i < k; i++) {
    const c = cosT[i]!;
    const sn = sinT[i]!;
    const qi = q[i]!;
    const align = qi < TINY ? 0 : R((c * zRe[i]! + sn * zIm[i]!) / qi);
    theta[i] = wrapRounded(R(theta[i]! + dTheta[i]!), R);
    const d = R(logC[i]! - mean);
    const yi = R(logMass(P[i]!, lnP[i]!) + R(hLambda * align) - R(hPenalty * R(d * d)));
    y[i] = yi;
    if (yi > ymax) ymax = yi;
  }
  let total = 0;
  for (let i = 0; i < k; i++) {
    const e = R(Math.exp(y[i]! - ymax));
    P[i] = e;
    total += e;
  }
  total = R(total);
  for (let i = 0; i < k; i++) P[i] = R(P[i]! / total);
  for (let sweep = 0; sweep < spec.projectorSweeps; sweep++) {
    let sum = 0;
    for (let i = 0; i < k; i++) sum += P[i]!;
    sum = R(sum);
    for (let i = 0; i < k; i++) P[i] = R(P[i]! / sum);
  }
}

/** Section 4 step 7, on the phases after this step's phase update. */
function learn(s: CpuSimState): void {
  const R = rounder(s);
  const { k, learned: A, theta } = s;
  const rate = R(s.spec.dt * s.spec.learningRate);
  const keep = R(1 - rate);
  for (let i = 0; i < k; i++) {
    const row = i * k;
    for (let j = 0; j < k; j++) {
      if (i === j) continue;
      const pull = Math.max(0, R(Math.cos(R(theta[i]! - theta[j]!))));
      A[row + j] = R(R(keep * A[row + j]!) + R(rate * pull));
    }
  }
}

function copyOut(v: Vec, scale = 1): Float64Array {
  const out = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = scale * v[i]!;
  return out;
}

/**
 * Visit the current state after its dense pass: measure, decide (docs/engine.md), then update, restart or
 * end. Returns the record of the visited state when it carries metrics, a snapshot or an event.
 */
export function visit(s: CpuSimState, wasm?: WasmThread): TickRecord | null {
  const R = rounder(s);
  const { spec, scalars: sc } = s;
  const m = measure(s, wasm);
  const step = sc[S.STEP]!;
  let flags = 0;
  if (sc[S.REVISIT]) {
    // A completed run given extra steps: this state was visited (counters, decision, record) when the run
    // ended; now only its update is applied (docs/engine.md, "Checkpoints and patches"), unless that step
    // cannot be represented: then the run fails on this state after all, with its record.
    sc[S.REVISIT] = 0;
    if (m.stepOk) {
      update(s, m, wasm);
      return null;
    }
    m.metrics.plateauDetected = sc[S.PLATEAU_COUNT]! >= spec.plateauT;
    flags = Flag.FAILED | Flag.TERMINAL | Flag.SNAPSHOT | (step % spec.metricsInterval === 0 ? Flag.METRICS : 0);
    return end(s, m, flags, wasm);
  }
  const entropy = m.metrics.entropy;
  if (entropy < R(sc[S.EBEST]! - spec.plateauEps)) {
    sc[S.EBEST] = entropy;
    sc[S.PLATEAU_COUNT] = 0;
  } else sc[S.PLATEAU_COUNT] = sc[S.PLATEAU_COUNT]! + 1;
  const plateau = sc[S.PLATEAU_COUNT]! >= spec.plateauT;
  m.metrics.plateauDetected = plateau;
  const target = spec.target;
  if (target) sc[S.CONV_COUNT] = m.controlled >= R(target.value - 0.02) ? sc[S.CONV_COUNT]! + 1 : 0;
  const converged = target !== null && sc[S.CONV_COUNT]! >= Math.max(8, Math.ceil(spec.plateauT / 10));

  const n = sc[S.N]!;
  const canRestart = sc[S.RESTART]! < spec.restarts;
  // First match wins (docs/engine.md, "Ticks"); a step that cannot be represented fails the state only
  // where that step would be applied (docs/model.md section 9).
  if (!m.finite) flags = Flag.FAILED | Flag.TERMINAL;
  else if (spec.mode === 'space') flags = m.stepOk ? spaceEvents(s, plateau, m.metrics.dominance >= R(collapseThresholdOf(spec))) : Flag.FAILED | Flag.TERMINAL;
  else if (converged) flags = Flag.CONVERGED | Flag.TERMINAL;
  else if (plateau) flags = Flag.PLATEAU | (canRestart ? Flag.RESTART : Flag.TERMINAL);
  else if (n >= sc[S.STEPS]!) flags = canRestart ? Flag.RESTART : Flag.TERMINAL;
  else if (!m.stepOk) flags = Flag.FAILED | Flag.TERMINAL;
  if (step % spec.metricsInterval === 0) flags |= Flag.METRICS;
  if (step % spec.snapshotsInterval === 0 || flags & Flag.TERMINAL) flags |= Flag.SNAPSHOT;
  if (step === sc[S.SNAP_AT]) {
    flags |= Flag.SNAPSHOT;
    sc[S.SNAP_AT] = -1;
  }
  return end(s, m, flags, wasm);
}

/** The record of a visited state with `flags` (null when none), then its end, restart or update. */
function end(s: CpuSimState, m: Measured, flags: number, wasm: WasmThread | undefined): TickRecord | null {
  const { spec, scalars: sc } = s;
  const step = sc[S.STEP]!;
  const rho = sc[S.RESTART]!;
  let record: TickRecord | null = null;
  if (flags !== 0) {
    record = { step, restart: rho, n: sc[S.N]!, flags, metrics: m.metrics, gamma: sc[S.GAMMA]!, lnNu: sc[S.LNNU]!, controlled: m.controlled };
    if (flags & Flag.SNAPSHOT) {
      record.phases = copyOut(s.theta);
      const nu = Math.exp(sc[S.LNNU]!);
      const amps = copyOut(s.mass, nu);
      if (spec.norm === 'L2') for (let i = 0; i < amps.length; i++) amps[i] = nu * Math.sqrt(s.mass[i]!);
      record.amplitudes = amps;
    }
  }
  if (flags & Flag.TERMINAL) {
    sc[S.STATUS] = SIM_STATUSES.indexOf(statusOfFlags(flags, 'running'));
  } else if (flags & Flag.RESTART) {
    restart(s, rho + 1);
  } else {
    update(s, m, wasm);
  }
  return record;
}

/**
 * Space mode (docs/engine.md, "Space mode"): edge-triggered events that re-arm once their condition has
 * been false for plateauT consecutive visits. Returns the event flags of this visit.
 */
function spaceEvents(s: CpuSimState, plateau: boolean, collapse: boolean): number {
  const sc = s.scalars;
  const T = s.spec.plateauT;
  let flags = 0;
  const edge = (cond: boolean, armed: number, count: number, flag: number): void => {
    if (sc[armed]) {
      if (cond) {
        flags |= flag;
        sc[armed] = 0;
        sc[count] = 0;
      }
    } else if (cond) sc[count] = 0;
    else {
      sc[count] = sc[count]! + 1;
      if (sc[count]! >= T) sc[armed] = 1;
    }
  };
  edge(plateau, S.P_ARMED, S.P_FALSE, Flag.PLATEAU);
  edge(collapse, S.C_ARMED, S.C_FALSE, Flag.COLLAPSE);
  return flags;
}

export function isRunning(s: CpuSimState): boolean {
  return s.scalars[S.STATUS] === RUNNING;
}

/** The running simulations of tick `t`, grouped by the kernel they share (a learned mixer's is its own). */
function groupsOf(sims: CpuSimState[], t: number, limits?: ReadonlyMap<number, number>): Map<string, CpuSimState[]> {
  const groups = new Map<string, CpuSimState[]>();
  for (const s of sims) {
    if (!isRunning(s)) continue;
    // A per-simulation limit: this simulation's ticks are spent (0 holds it still).
    const limit = limits?.get(s.id);
    if (limit !== undefined && limit <= t) continue;
    const key = s.spec.mixer === 'learned' ? `learned#${s.id}` : s.kernelKey;
    const g = groups.get(key);
    if (g) g.push(s);
    else groups.set(key, [s]);
  }
  return groups;
}

function record(out: Map<number, TickRecord[]>, s: CpuSimState, wasm: WasmThread | undefined): void {
  const r = visit(s, wasm);
  if (!r) return;
  const list = out.get(s.id);
  if (list) list.push(r);
  else out.set(s.id, [r]);
}

/**
 * Run `ticks` ticks over a set of simulations, grouping those that share a kernel. A simulation listed in
 * `limits` runs only its first `limits.get(id)` of them (0: none).
 */
export function runTicks(sims: CpuSimState[], ticks: number, out: Map<number, TickRecord[]>, limits?: ReadonlyMap<number, number>, wasm?: WasmThread): void {
  for (let t = 0; t < ticks; t++) {
    const groups = groupsOf(sims, t, limits);
    if (groups.size === 0) return;
    for (const group of groups.values()) {
      densePass(group, wasm);
      for (const s of group) record(out, s, wasm);
    }
  }
}

/** One of `parties` worker threads stepping the same simulations together, and the barrier they meet at. */
export interface Gang {
  index: number;
  parties: number;
  /** [arrived, generation] in shared memory. */
  barrier: Int32Array;
}

/** Spins this long before sleeping at the barrier: a dense pass's halves end within microseconds of each other. */
const SPIN = 20_000;

/** Waits until every thread of the gang arrived (a generation barrier on Atomics). */
function meet({ parties, barrier }: Gang): void {
  const generation = Atomics.load(barrier, 1);
  if (Atomics.add(barrier, 0, 1) === parties - 1) {
    Atomics.store(barrier, 0, 0);
    Atomics.add(barrier, 1, 1);
    Atomics.notify(barrier, 1);
    return;
  }
  for (let i = 0; i < SPIN; i++) if (Atomics.load(barrier, 1) !== generation) return;
  while (Atomics.load(barrier, 1) === generation) Atomics.wait(barrier, 1, generation);
}

/** [from, to) of `n` items for thread `index` of `parties`, in even shares. */
const share = (n: number, index: number, parties: number): [number, number] => [Math.floor((n * index) / parties), Math.floor((n * (index + 1)) / parties)];

/**
 * runTicks by a gang of worker threads on the same simulations, every thread on every simulation: each
 * loads its share of the amplitudes and does its share of the kernel rows in WebAssembly, then each
 * simulation is measured and updated by one thread (by its place among the simulations). The threads meet
 * between the phases, so each phase reads what the last one wrote; the rows and the amplitudes are
 * computed as a single thread computes them, so the records are bit-identical to runTicks'. Each thread
 * returns the records of the simulations it updated.
 */
export function runTicksGang(sims: CpuSimState[], ticks: number, out: Map<number, TickRecord[]>, limits: ReadonlyMap<number, number> | undefined, wasm: WasmThread, gang: Gang): void {
  const ordered = [...sims].sort((a, b) => a.id - b.id);
  const mine = new Set(ordered.filter((_, n) => n % gang.parties === gang.index));
  for (let t = 0; t < ticks; t++) {
    // Every thread sees the same states here (the last meeting came after every update).
    const groups = [...groupsOf(ordered, t, limits).values()];
    if (groups.length === 0) return;
    for (const group of groups) {
      if (group[0]!.spec.mixer === 'learned' || !group[0]!.inArena) continue;
      const [j0, j1] = share(group[0]!.k, gang.index, gang.parties);
      for (const s of group) loadAmplitudes(s, wasm, j0, j1);
    }
    meet(gang);
    for (const group of groups) {
      const first = group[0]!;
      if (first.spec.mixer === 'learned' || !first.inArena) {
        // A learned mixer's kernel is its own: one thread does its whole pass.
        if (mine.has(first)) densePass(group, wasm);
        continue;
      }
      const [i0, i1] = share(first.k, gang.index, gang.parties);
      wasmDense(group, wasm, i0, i1);
    }
    meet(gang);
    for (const group of groups) for (const s of group) if (mine.has(s)) record(out, s, wasm);
    meet(gang);
  }
}
