/**
 * SimSpec: the engine-level description of one simulation, whatever made it (an HQE config now, a space
 * later). Engines take only this; they never see request shapes.
 */
import type { NormalizedConfig } from './config.js';
import type { NormalizedSpaceConfig } from './space.js';

export type MixerKind = 'local' | 'flow' | 'learned';
export type TargetOperator = 'R' | 'R_q' | 'custom';

/** How the engines run a simulation (docs/engine.md, "Space mode"). */
export type SimMode = 'hqe' | 'space';

/** Default of SimSpec.collapseThreshold (the spaces API default). */
export const DEFAULT_COLLAPSE_THRESHOLD = 0.97;

export interface SimSpec {
  /**
   * 'hqe' (default): a run with steps, restarts and terminal events. 'space': a live shared simulation that
   * never ends (except `failed`), with edge-triggered, re-arming plateau and collapse events.
   */
  mode?: SimMode;
  /** Space mode only: the collapse event fires when dominance >= this (default 0.97). */
  collapseThreshold?: number;
  /** The ordered basis (index i = position). */
  primes: number[];
  mixer: MixerKind;
  localityBias: number;
  learningRate: number;
  /** Semantic kernel `prime` (S_ij = 1/(1+|p_i-p_j|)). */
  semantic: boolean;
  frequencyScale: number;
  gamma0: number;
  gammaGrowth: number;
  gammaMax: number;
  temperature0: number;
  beta: number;
  norm: 'L1' | 'L2';
  entropyBase: 'shannon' | 'kl_to_prior';
  lambda: number;
  /** lambdaPrime of the prime penalty; 0 when the penalty is disabled. */
  lambdaPrime: number;
  projectorSweeps: number;
  enforceUnitNorm: boolean;
  target: { value: number; operator: TargetOperator; weights?: number[] } | null;
  dt: number;
  steps: number;
  restarts: number;
  plateauEps: number;
  plateauT: number;
  metricsInterval: number;
  snapshotsInterval: number;
  seed: number;
  /** Aligned with primes; missing entries already filled with 1. */
  initialAmplitudes: number[] | null;
  golden: boolean;
  silver: boolean;
  customPhases: number[] | null;
}

export function specFromConfig(c: NormalizedConfig): SimSpec {
  const t = c.resonanceTarget;
  return {
    primes: c.primes,
    mixer: c.mixer.type,
    localityBias: c.mixer.localityBias,
    learningRate: c.mixer.learningRate,
    semantic: false,
    frequencyScale: c.frequencyScale,
    gamma0: c.mixer.gamma0,
    gammaGrowth: c.mixer.gammaGrowth,
    gammaMax: c.mixer.gammaMax,
    temperature0: c.mixer.temperature0,
    beta: c.mixer.beta,
    norm: c.boundary.norm,
    entropyBase: c.entropy.base,
    lambda: c.entropy.lambda,
    lambdaPrime: c.entropy.primePenalty.enabled ? c.entropy.primePenalty.lambdaPrime : 0,
    projectorSweeps: c.boundary.projectorSweeps,
    enforceUnitNorm: c.boundary.enforceUnitNorm,
    target: t ? { value: t.value, operator: t.operator, ...(t.weights ? { weights: t.weights } : {}) } : null,
    dt: c.schedule.dt,
    steps: c.schedule.steps,
    restarts: c.schedule.restarts,
    plateauEps: c.schedule.plateauEps,
    plateauT: c.schedule.plateauT,
    metricsInterval: c.observables.metricsInterval,
    snapshotsInterval: c.observables.snapshotsInterval,
    seed: c.seed,
    initialAmplitudes: c.initialAmplitudes ?? null,
    golden: c.phaseSeeding.golden,
    silver: c.phaseSeeding.silver,
    customPhases: c.phaseSeeding.customPhases ?? null,
  };
}

/**
 * A live space as an engine simulation (docs/spaces.md): mixer `local` with the space's localityBias and
 * optional semantic kernel, target operator R, no prime penalty, metrics and phases read back every tick.
 * `primes` keeps the space's order (ascending or learned). `masses` (sum 1) seeds the state of a new epoch.
 */
export function specFromSpace(c: NormalizedSpaceConfig, masses?: readonly number[]): SimSpec {
  const o = c.operators;
  const m = o.mixer;
  return {
    mode: 'space',
    collapseThreshold: c.entropy.collapseThreshold,
    primes: c.basis.primes,
    mixer: 'local',
    localityBias: o.localityBias,
    learningRate: 0,
    semantic: o.semantic.enabled,
    frequencyScale: o.frequencyScale,
    gamma0: m.gamma0,
    gammaGrowth: m.gammaGrowth,
    gammaMax: m.gammaMax ?? Math.max(1, m.gamma0),
    temperature0: m.temperature0,
    beta: m.beta,
    norm: 'L2',
    entropyBase: 'shannon',
    lambda: c.entropy.lambda,
    lambdaPrime: 0,
    projectorSweeps: 1,
    enforceUnitNorm: true,
    target: { value: o.resonanceTarget, operator: 'R' },
    dt: 0.1,
    steps: 1,
    restarts: 0,
    plateauEps: c.entropy.plateauEps,
    plateauT: c.entropy.plateauT,
    metricsInterval: 1,
    snapshotsInterval: 1,
    seed: c.seed,
    // norm L2: P_i is proportional to A_i^2
    initialAmplitudes: masses ? masses.map((p) => Math.sqrt(p)) : null,
    golden: c.phases.golden,
    silver: c.phases.silver,
    customPhases: c.phases.custom ?? null,
  };
}
