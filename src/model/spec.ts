/**
 * SimSpec: the engine-level description of one simulation, whatever made it (an HQE config now, a space
 * later). Engines take only this; they never see request shapes.
 */
import type { NormalizedConfig } from './config.js';

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
