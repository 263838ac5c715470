/**
 * The HQE configuration of the HQE API, with the additions of docs/model.md (frequencyScale, mixer.localityBias,
 * mixer.learningRate, mixer.gammaMax, resonanceTarget.weights). Objects are closed: an unknown field is an
 * error, so a typo never silently falls back to a default.
 */
import { z } from 'zod';

export const U32_MAX = 0xffffffff;

/** The largest finite f32, and the smallest normal one (2^-126). */
export const F32_MAX = 3.4028234663852886e38;
export const F32_MIN_NORMAL = 2 ** -126;
/** The error code of a value f32 cannot hold (docs/errors.md). */
export const NOT_F32 = 'not_f32';

/** 0, or a magnitude f32 holds as a normal number (the upper end is the schemas' maximum). */
export function f32Normal(x: number): boolean {
  return x === 0 || Math.abs(x) >= F32_MIN_NORMAL;
}

/**
 * A parameter that every engine holds alike (docs/model.md section 9): at most F32_MAX, and 0 or at least
 * F32_MIN_NORMAL in magnitude. A value f32 cannot represent would run differently on the f32 engines
 * (overflow, or flushed to zero) than on CPU f64, so it is refused (code not_f32 below the range).
 */
export function f32(schema: z.ZodNumber = z.number()): z.ZodNumber {
  const bounded = (schema.maxValue ?? Infinity) > F32_MAX ? schema.max(F32_MAX) : schema;
  return bounded.refine(f32Normal, {
    message: 'must be 0 or at least 1.1754943508222875e-38 in magnitude (the smallest normal f32)',
    params: { code: NOT_F32 },
  });
}

const finite = () => z.number();
const nonNegative = () => f32(z.number().min(0));
const count = (min = 0) => z.number().int().min(min).max(1_000_000_000);

export const ResonanceOperator = z.enum(['R', 'R_q', 'custom']);
export const MixerType = z.enum(['local', 'flow', 'learned']);
export const EntropyBase = z.enum(['shannon', 'kl_to_prior']);
export const NormKind = z.enum(['L1', 'L2']);

export const PhaseSeeding = z.strictObject({
  golden: z.boolean().default(false),
  silver: z.boolean().default(false),
  customPhases: z.array(finite()).optional(),
}).meta({ id: 'PhaseSeeding' });

export const ResonanceTarget = z.strictObject({
  value: f32(z.number().min(0).max(1)),
  operator: ResonanceOperator.default('R'),
  notes: z.string().max(1000).optional(),
  /** Per-prime weights of the `custom` operator, aligned with `primes`; required for `custom`. */
  weights: z.array(nonNegative()).optional(),
}).meta({ id: 'ResonanceTarget' });

export const MixerConfig = z.strictObject({
  type: MixerType.default('local'),
  gamma0: nonNegative().default(0.2),
  gammaGrowth: nonNegative().default(0.001),
  /** Upper bound of the coupling; default max(1, gamma0). */
  gammaMax: nonNegative().optional(),
  temperature0: nonNegative().default(1.0),
  beta: f32(z.number().gt(0).max(1)).default(0.98),
  localityBias: f32(z.number().min(0).max(1)).default(0.3),
  learningRate: nonNegative().default(0.05),
}).meta({ id: 'MixerConfig' });

export const PrimePenalty = z.strictObject({
  enabled: z.boolean().default(true),
  lambdaPrime: nonNegative().default(0.1),
}).meta({ id: 'PrimePenalty' });

export const EntropyModel = z.strictObject({
  base: EntropyBase.default('shannon'),
  lambda: nonNegative().default(0.02),
  primePenalty: PrimePenalty.default({ enabled: true, lambdaPrime: 0.1 }),
}).meta({ id: 'EntropyModel' });

export const BoundaryConditions = z.strictObject({
  norm: NormKind.default('L2'),
  enforceUnitNorm: z.boolean().default(true),
  projectorSweeps: z.number().int().min(0).max(64).default(1),
}).meta({ id: 'BoundaryConditions' });

export const Observables = z.strictObject({
  recordAmplitudes: z.boolean().default(true),
  recordPhases: z.boolean().default(false),
  metricsInterval: count(1).default(10),
  snapshotsInterval: count(1).default(32),
}).meta({ id: 'Observables' });

export const EvolutionSchedule = z.strictObject({
  dt: f32(z.number().gt(0).max(10)).default(0.1),
  steps: count(0).default(256),
  restarts: z.number().int().min(0).max(1000).default(0),
  plateauEps: nonNegative().default(1e-6),
  plateauT: count(1).default(150),
}).meta({ id: 'EvolutionSchedule' });

export const HQEConfig = z.strictObject({
  primes: z.array(z.number().int().min(2).max(2 ** 31 - 1)).min(1),
  initialAmplitudes: z.array(finite()).optional(),
  phaseSeeding: PhaseSeeding.default({ golden: false, silver: false }),
  resonanceTarget: ResonanceTarget.optional(),
  mixer: MixerConfig.default({
    type: 'local', gamma0: 0.2, gammaGrowth: 0.001, temperature0: 1.0, beta: 0.98, localityBias: 0.3, learningRate: 0.05,
  }),
  entropy: EntropyModel.default({ base: 'shannon', lambda: 0.02, primePenalty: { enabled: true, lambdaPrime: 0.1 } }),
  boundary: BoundaryConditions.default({ norm: 'L2', enforceUnitNorm: true, projectorSweeps: 1 }),
  observables: Observables.default({ recordAmplitudes: true, recordPhases: false, metricsInterval: 10, snapshotsInterval: 32 }),
  schedule: EvolutionSchedule.default({ dt: 0.1, steps: 256, restarts: 0, plateauEps: 1e-6, plateauT: 150 }),
  /** Natural frequency scale s: w_i = 1 + s ln p_i. */
  frequencyScale: f32(z.number().min(0).max(100)).default(0.1),
  seed: z.number().int().min(0).max(U32_MAX).optional(),
}).meta({
  id: 'HQEConfig',
  description:
    'An HQE configuration (docs/model.md section 1). Unknown fields are rejected. Real parameters other than ' +
    'initialAmplitudes and customPhases must be 0 or between 1.1754943508222875e-38 and 3.4028234663852886e+38 in magnitude, ' +
    'the values f32 holds (docs/model.md section 9: code not_f32 below that range).',
});

/** What a client sends. */
export type HQEConfigInput = z.input<typeof HQEConfig>;
/** After parsing: every default filled in. */
export type HQEConfigParsed = z.output<typeof HQEConfig>;

/** A normalized config: sorted basis, per-prime arrays aligned with it, seed and gammaMax resolved. */
export type NormalizedConfig = Omit<HQEConfigParsed, 'seed' | 'mixer'> & {
  seed: number;
  mixer: HQEConfigParsed['mixer'] & { gammaMax: number };
};

export const Metrics = z.object({
  resonanceStrength: z.number(),
  coherence: z.number(),
  entropy: z.number(),
  locality: z.number(),
  dominance: z.number(),
  plateauDetected: z.boolean(),
});
export type Metrics = z.infer<typeof Metrics>;
