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
  golden: z.boolean().default(false).meta({ description: 'Add i x the golden angle 2pi/phi^2 to the phase of prime i.' }),
  silver: z.boolean().default(false).meta({ description: 'Add i x the silver angle 2pi/(1 + sqrt 2)^2 to the phase of prime i.' }),
  customPhases: z.array(finite()).optional().meta({ description: 'Radians added to each prime\'s phase, aligned with `primes` as sent; missing entries are 0, more than k is a 400.' }),
}).meta({
  id: 'PhaseSeeding',
  description: 'The initial phases (docs/model.md section 3): a golden and/or silver angle scaffold plus custom offsets. All off: every phase starts at 0.',
});

export const ResonanceTarget = z.strictObject({
  value: f32(z.number().min(0).max(1)).meta({ description: 'The target r*: the run converges once the controlled resonance holds at or above r* - 0.02.' }),
  operator: ResonanceOperator.default('R').meta({
    description: 'What is controlled: `R` resonanceStrength, `R_q` coherence, `custom` the weighted order parameter |sum w_i P_i e^{i theta_i}| / sum w_i P_i.',
  }),
  notes: z.string().max(1000).optional().meta({ description: 'Free text, kept with the config.' }),
  /** Per-prime weights of the `custom` operator, aligned with `primes`; required for `custom`. */
  weights: z.array(nonNegative()).optional().meta({ description: 'Per-prime weights w_i >= 0 of the `custom` operator, one per prime, aligned with `primes` as sent; required for `custom`.' }),
}).meta({
  id: 'ResonanceTarget',
  description: 'The resonance lock: the coupling grows while the controlled resonance is below `value`. Without a target the coupling grows every step and the run never converges.',
});

export const MixerConfig = z.strictObject({
  type: MixerType.default('local').meta({
    description: '`local`: prime-log similarity x locality kernel; `flow`: uniform all-to-all (classic mean field); `learned`: the local kernel strengthened by a matrix learned from phase agreement.',
  }),
  gamma0: nonNegative().default(0.2).meta({ description: 'Initial coupling strength (at most gammaMax).' }),
  gammaGrowth: nonNegative().default(0.001).meta({ description: 'Added to the coupling each step while the resonance is below target (every step without a target), up to gammaMax.' }),
  /** Upper bound of the coupling; default max(1, gamma0). */
  gammaMax: nonNegative().optional().meta({ description: 'Upper bound of the coupling (addition); default max(1, gamma0).' }),
  temperature0: nonNegative().default(1.0).meta({ description: 'Initial phase-noise temperature T0.' }),
  beta: f32(z.number().gt(0).max(1)).default(0.98).meta({ description: 'Cooling factor: T_n = temperature0 x beta^n.' }),
  localityBias: f32(z.number().min(0).max(1)).default(0.3).meta({ description: 'Weight b of the locality factor (1 - b) + b min(p,q)/max(p,q) in the kernel (addition); ignored by `flow`.' }),
  learningRate: nonNegative().default(0.05).meta({ description: 'Learning rate of the `learned` mixer (addition); dt x learningRate > 2 is a 400 (diverges).' }),
}).meta({ id: 'MixerConfig', description: 'The coupling between primes (docs/model.md sections 2 and 4): its kernel, strength schedule and noise.' });

export const PrimePenalty = z.strictObject({
  enabled: z.boolean().default(true),
  lambdaPrime: nonNegative().default(0.1).meta({ description: 'Strength of the pull of mass towards the mean log-prime.' }),
}).meta({ id: 'PrimePenalty', description: 'A penalty on mass far (in log-prime) from the mass-weighted mean: keeps the mass in a band.' });

export const EntropyModel = z.strictObject({
  base: EntropyBase.default('shannon').meta({ description: 'How the entropy metric is measured: `shannon` normalised Shannon entropy; `kl_to_prior` 1 - KL(P || initial mass)/ln k.' }),
  lambda: nonNegative().default(0.02).meta({ description: 'Rate at which mass flows to primes in phase with their neighbourhood (entropy-driven collapse); 0 keeps the masses fixed.' }),
  primePenalty: PrimePenalty.default({ enabled: true, lambdaPrime: 0.1 }),
}).meta({ id: 'EntropyModel', description: 'How mass moves between primes and how its entropy is measured (docs/model.md sections 4.5 and 5).' });

export const BoundaryConditions = z.strictObject({
  norm: NormKind.default('L2').meta({ description: 'Amplitude from mass: `L2` a_i = sqrt(P_i), `L1` a_i = P_i.' }),
  enforceUnitNorm: z.boolean().default(true).meta({ description: 'false: with a resonance target, the reported amplitudes are scaled by a norm that shrinks or grows with R - r*.' }),
  projectorSweeps: z.number().int().min(0).max(64).default(1).meta({ description: 'Renormalisations of the masses after each step.' }),
}).meta({ id: 'BoundaryConditions', description: 'Normalisation of the state.' });

export const Observables = z.strictObject({
  recordAmplitudes: z.boolean().default(true).meta({ description: 'Snapshots carry `amplitudes`.' }),
  recordPhases: z.boolean().default(false).meta({ description: 'Snapshots carry `phases`.' }),
  metricsInterval: count(1).default(10).meta({ description: 'Steps between metrics records.' }),
  snapshotsInterval: count(1).default(32).meta({ description: 'Steps between snapshots (the final state is always one).' }),
}).meta({ id: 'Observables', description: 'What a run or session records, and how often. Larger intervals make smaller responses and streams.' });

export const EvolutionSchedule = z.strictObject({
  dt: f32(z.number().gt(0).max(10)).default(0.1).meta({ description: 'Time step h.' }),
  steps: count(0).default(256).meta({ description: 'Steps per restart; 0 visits the initial state only. The work charged is steps x (restarts + 1) x k^2.' }),
  restarts: z.number().int().min(0).max(1000).default(0).meta({ description: 'How many times a plateau or the end of the steps re-seeds the phases (masses kept) and runs again.' }),
  plateauEps: nonNegative().default(1e-6).meta({ description: 'An entropy drop smaller than this does not count as progress.' }),
  plateauT: count(1).default(150).meta({ description: 'Steps without progress that make a plateau.' }),
}).meta({ id: 'EvolutionSchedule', description: 'How long a run goes, and when it gives up (docs/model.md section 6).' });

export const HQEConfig = z.strictObject({
  primes: z
    .array(z.number().int().min(2).max(2 ** 31 - 1))
    .min(1)
    .meta({ description: 'The basis: distinct primes, sorted ascending by normalisation (per-prime arrays follow); at most the server\'s maxBasis (2048 by default).' }),
  initialAmplitudes: z.array(finite()).optional().meta({ description: 'Initial amplitude per prime, aligned with `primes` as sent: mass P_i proportional to A_i^2 (L2) or |A_i| (L1); missing entries are 1; omitted: uniform mass.' }),
  phaseSeeding: PhaseSeeding.default({ golden: false, silver: false }),
  resonanceTarget: ResonanceTarget.optional().meta({ description: 'Omitted: no target; the coupling grows every step and the run ends by plateau or when the steps run out.' }),
  mixer: MixerConfig.default({
    type: 'local', gamma0: 0.2, gammaGrowth: 0.001, temperature0: 1.0, beta: 0.98, localityBias: 0.3, learningRate: 0.05,
  }),
  entropy: EntropyModel.default({ base: 'shannon', lambda: 0.02, primePenalty: { enabled: true, lambdaPrime: 0.1 } }),
  boundary: BoundaryConditions.default({ norm: 'L2', enforceUnitNorm: true, projectorSweeps: 1 }),
  observables: Observables.default({ recordAmplitudes: true, recordPhases: false, metricsInterval: 10, snapshotsInterval: 32 }),
  schedule: EvolutionSchedule.default({ dt: 0.1, steps: 256, restarts: 0, plateauEps: 1e-6, plateauT: 150 }),
  /** Natural frequency scale s: w_i = 1 + s ln p_i. */
  frequencyScale: f32(z.number().min(0).max(100)).default(0.1).meta({ description: 'Natural frequency scale s (addition): w_i = 1 + s ln p_i.' }),
  seed: z.number().int().min(0).max(U32_MAX).optional().meta({ description: 'Seed of the phase noise (u32). Omitted: the server draws one and reports it; the same seed, config and backend give the same result.' }),
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
