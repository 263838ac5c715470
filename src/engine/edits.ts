/**
 * Space mode and patches (docs/engine.md, "Space mode", "Checkpoints and patches"): a space's parameters,
 * phase edits and the checks of a patch, computed here once so that every engine only applies them.
 */
import { DEFAULT_COLLAPSE_THRESHOLD, type SimSpec } from '../model/spec.js';
import { MIXER_PARAMS, type Precision, roundingOf, type SimPatch, type SimStatus, type SpaceParams } from './types.js';

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
function changesMixer(current: SpaceParams, params: Partial<SpaceParams>): boolean {
  return MIXER_PARAMS.some((key) => params[key] !== undefined && params[key] !== current[key]);
}

/** Validated phase edits: [index, radians] with an integer index in [0, k) and finite radians. */
function checkPhaseEdits(edits: Array<[number, number]> | undefined, k: number, what: string): Array<[number, number]> {
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
  return wrapRounded(x, roundingOf(precision));
}

/** wrap_2pi with every stored value rounded by `R` (Math.fround in f32, the identity in f64): the engines' one formula. */
export function wrapRounded(x: number, R: (x: number) => number): number {
  const w = R(x - R(TWO_PI * Math.floor(R(x / R(TWO_PI)))));
  return w >= R(TWO_PI) ? 0 : w;
}

const TWO_PI = 2 * Math.PI;

/** Apply set then shift edits to phases (in place), in the engine's precision. */
export function applyPhaseEdits(theta: { [i: number]: number }, sets: Array<[number, number]>, shifts: Array<[number, number]>, precision: Precision): void {
  const R = roundingOf(precision);
  for (const [i, x] of sets) theta[i] = wrapPhase(R(x), precision);
  for (const [i, x] of shifts) theta[i] = wrapPhase(R(theta[i]! + R(x)), precision);
}

/** Checks of a patch's step fields against a simulation's status; returns the validated values. */
function checkPatch(change: SimPatch, status: SimStatus, nextRecordedStep: number, spec?: SimSpec): { extraSteps: number; snapshotAt: number | null } {
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

/** What an engine knows of a simulation when it is patched. */
export interface PatchTarget {
  spec: SimSpec;
  k: number;
  status: SimStatus;
  /** The global step of the state the next tick visits (or, with `revisit`, updates). */
  step: number;
  /** The current state was already visited (a completed run given extra steps before). */
  revisit: boolean;
  /** Extra steps patched so far. */
  extraSteps: number;
}

/**
 * A patch, checked in full before anything changes, as what each engine applies (docs/engine.md,
 * "Checkpoints and patches"): the engines differ only in where they store it.
 */
export interface PatchPlan {
  /** The per-restart steps limit after the patch: spec.steps + every extra step patched so far. */
  steps: number;
  /** Extra steps patched so far, this patch's included. */
  extraSteps: number;
  /** A completed run given extra steps runs again; its last state, already visited, is only updated next. */
  reopen: boolean;
  /** A one-shot snapshot at this global step, or null. */
  snapshotAt: number | null;
  /** Space mode: phase edits, sets then shifts (applyPhaseEdits). */
  sets: Array<[number, number]>;
  shifts: Array<[number, number]>;
  /** Space mode: the spec with the patched parameters in effect, or null when none changes. */
  spec: SimSpec | null;
  /** The patched parameters change the mixer: n restarts at 0 with this gamma and temperature (unrounded). */
  reset: { gamma: number; temperature: number } | null;
}

export function planPatch(change: SimPatch, sim: PatchTarget): PatchPlan {
  const revisitNext = sim.status === 'completed' || sim.revisit;
  const { extraSteps, snapshotAt } = checkPatch(change, sim.status, sim.step + (revisitNext ? 1 : 0), sim.spec);
  let sets: Array<[number, number]> = [];
  let shifts: Array<[number, number]> = [];
  let spec: SimSpec | null = null;
  let reset: PatchPlan['reset'] = null;
  if (isSpace(sim.spec)) {
    sets = checkPhaseEdits(change.setPhases, sim.k, 'setPhases');
    shifts = checkPhaseEdits(change.shiftPhases, sim.k, 'shiftPhases');
    const params = change.params === undefined ? null : checkSpaceParams(change.params);
    if (params) {
      spec = withSpaceParams(sim.spec, params);
      if (changesMixer(spaceParamsOf(sim.spec), params)) reset = { gamma: Math.min(spec.gamma0, spec.gammaMax), temperature: spec.temperature0 };
    }
  }
  const total = sim.extraSteps + extraSteps;
  return {
    steps: sim.spec.steps + total,
    extraSteps: total,
    reopen: extraSteps > 0 && sim.status === 'completed',
    snapshotAt,
    sets,
    shifts,
    spec,
    reset,
  };
}
