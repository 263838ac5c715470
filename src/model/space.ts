/**
 * The configuration of a live space (SpaceConfig; docs/spaces.md) and its normalisation
 * (docs/model.md section 1 for the basis: composites and duplicates are errors, `cutoff` truncates with a
 * warning, k above maxBasis is an error). Objects are closed, as for HQE configs.
 */
import { z } from 'zod';
import { f32 } from './config.js';
import { label } from './label.js';
import {
  basisErrors, DEFAULT_MAX_BASIS, drawSeed, elementOf, type FieldError, narrowBandWarning, type NumberArrayField, screenNumberArrays, zodErrors,
} from './normalize.js';

export const SpaceBasis = z
  .strictObject({
    primes: z
      .array(z.number().int().min(2).max(2 ** 31 - 1))
      .min(1)
      .meta({ description: 'Distinct primes; composites and duplicates are listed in a 400.' }),
    order: z
      .enum(['ascending', 'learned'])
      .default('ascending')
      .meta({ description: '`ascending`: by value; `learned`: by the space\'s current mass, largest first (new primes after them, ascending).' }),
    cutoff: z.number().int().min(1).max(1_000_000).default(2048).meta({ description: 'Keep the first `cutoff` primes (a warning when more were sent); k must then be at most the server\'s maxBasis.' }),
  })
  .meta({ id: 'SpaceBasis', description: 'The primes a space simulates, and how they are ordered. Changing it (POST /v1/spaces/{id}/basis) starts a new epoch.' });

export const PhaseProfile = z
  .strictObject({
    golden: z.boolean().default(true).meta({ description: 'Add i x the golden angle to the scaffold phase of prime i.' }),
    silver: z.boolean().default(true).meta({ description: 'Add i x the silver angle to the scaffold phase of prime i.' }),
    custom: z.array(z.number()).optional().meta({ description: 'Radians added to the scaffold, one per prime of the ordered basis.' }),
  })
  .meta({ id: 'PhaseProfile', description: 'How primes are seeded: the initial phases, and those of primes a basis change adds later.' });

export const SpaceMixer = z
  .strictObject({
    gamma0: f32(z.number().min(0)).default(0.2).meta({ description: 'Initial coupling strength (at most gammaMax).' }),
    gammaGrowth: f32(z.number().min(0)).default(0.001).meta({ description: 'Added to the coupling each tick while resonanceStrength is below resonanceTarget, up to gammaMax.' }),
    gammaMax: f32(z.number().min(0)).optional().meta({ description: 'Upper bound of the coupling; default max(1, gamma0).' }),
    temperature0: f32(z.number().min(0)).default(1.0).meta({ description: 'Initial phase-noise temperature.' }),
    beta: f32(z.number().gt(0).max(1)).default(0.98).meta({ description: 'Cooling factor per tick.' }),
  })
  .meta({ id: 'SpaceMixer', description: 'The coupling schedule of a space (the HQE mixer `local`); changing it restarts the schedule from gamma0.' });

export const OperatorSet = z
  .strictObject({
    mixer: SpaceMixer.default({ gamma0: 0.2, gammaGrowth: 0.001, temperature0: 1.0, beta: 0.98 }),
    resonanceTarget: f32(z.number().min(0).max(1)).default(0.8).meta({ description: 'The resonanceStrength the coupling grows towards.' }),
    localityBias: f32(z.number().min(0).max(1)).default(0.3).meta({ description: 'Weight of the locality factor in the kernel: couples nearby primes more.' }),
    semantic: z
      .strictObject({ enabled: z.boolean().default(false), kernel: z.literal('prime').default('prime') })
      .default({ enabled: false, kernel: 'prime' })
      .meta({ description: 'The semantic kernel 1/(1 + |p - q|): when enabled, couples primes close in value more.' }),
    frequencyScale: f32(z.number().min(0).max(100)).default(0.1).meta({ description: 'Natural frequency scale s (w_i = 1 + s ln p_i); fixed at creation.' }),
  })
  .meta({ id: 'OperatorSet', description: 'The dynamics of a space: coupling, target and kernels (docs/model.md sections 2 and 4).' });

export const EntropyField = z
  .strictObject({
    lambda: f32(z.number().min(0)).default(0.02).meta({ description: 'Rate at which mass flows to primes in phase with their neighbourhood; 0 keeps the masses fixed.' }),
    plateauEps: f32(z.number().min(0)).default(1e-6).meta({ description: 'An entropy drop smaller than this does not count as progress.' }),
    plateauT: z.number().int().min(1).max(1_000_000_000).default(150).meta({ description: 'Ticks without progress that raise a `plateau` event.' }),
    collapseThreshold: f32(z.number().gt(0).max(1)).default(0.97).meta({ description: 'A `collapse` event when dominance (the largest mass) reaches this.' }),
  })
  .meta({ id: 'EntropyField', description: 'How mass concentrates, and when the space reports a plateau or a collapse.' });

export const SpacePolicy = z
  .strictObject({
    maxMembers: z.number().int().min(1).max(100_000).default(128).meta({ description: 'Members present at once; one more is 409 space_full.' }),
    publishHz: z.number().int().min(1).max(60).default(30).meta({ description: 'Ticks (and telemetry frames) per second while someone listens.' }),
    historySeconds: z.number().int().min(1).max(7 * 24 * 3600).default(600).meta({ description: 'How long deltas are kept for resumes; older ones are pruned (a resume from before gets a snapshot).' }),
    allowGuest: z.boolean().default(false).meta({ description: 'Other orgs may read the space (role reader); otherwise it does not exist for them (404).' }),
  })
  .meta({ id: 'SpacePolicy', description: 'Who may join and how the space is served.' });

export const SpaceConfig = z
  .strictObject({
    name: label(200).meta({ description: 'A label for people (1-200 printable characters); not unique.' }),
    basis: SpaceBasis,
    phases: PhaseProfile.default({ golden: true, silver: true }),
    operators: OperatorSet.default({
      mixer: { gamma0: 0.2, gammaGrowth: 0.001, temperature0: 1.0, beta: 0.98 },
      resonanceTarget: 0.8, localityBias: 0.3, semantic: { enabled: false, kernel: 'prime' }, frequencyScale: 0.1,
    }),
    entropy: EntropyField.default({ lambda: 0.02, plateauEps: 1e-6, plateauT: 150, collapseThreshold: 0.97 }),
    policy: SpacePolicy.default({ maxMembers: 128, publishHz: 30, historySeconds: 600, allowGuest: false }),
    seed: z.number().int().min(0).max(0xffffffff).optional().meta({ description: 'Seed of the phase noise (u32); drawn and reported when omitted.' }),
  })
  .meta({ id: 'SpaceConfig', description: 'The configuration of a live space (docs/spaces.md). Unknown fields are rejected; every omitted field takes the default shown.' });

export type SpaceConfigInput = z.input<typeof SpaceConfig>;
export type NormalizedSpaceConfig = Omit<z.output<typeof SpaceConfig>, 'seed'> & { seed: number };

export type SpaceNormalizeResult =
  | { ok: true; normalized: NormalizedSpaceConfig; warnings: string[] }
  | { ok: false; errors: FieldError[] };

/**
 * Validate a space config. The basis is kept in the order given here; ordering by `order` (ascending, or
 * learned from the space's masses) belongs to the space, which knows its state.
 */
/** The config's number arrays, whose elements are screened before zod (screenNumberArrays says why). */
const SPACE_NUMBER_ARRAYS: readonly NumberArrayField[] = [
  { path: ['basis', 'primes'], element: elementOf(SpaceBasis.shape.primes) },
  { path: ['phases', 'custom'], element: elementOf(PhaseProfile.shape.custom) },
];

export function normalizeSpace(input: unknown, options: { maxBasis?: number; drawSeed?: () => number } = {}): SpaceNormalizeResult {
  const maxBasis = options.maxBasis ?? DEFAULT_MAX_BASIS;
  const screened = screenNumberArrays(input, SPACE_NUMBER_ARRAYS);
  const parsed = SpaceConfig.safeParse(screened.input);
  const raw = (input as { basis?: { primes?: unknown } } | null)?.basis?.primes;
  const primeErrors = Array.isArray(raw) ? basisErrors(raw, '/basis/primes') : [];
  if (!parsed.success || screened.errors.length > 0) {
    return { ok: false, errors: [...screened.errors, ...(parsed.success ? [] : zodErrors(parsed.error)), ...primeErrors] };
  }
  const cfg = parsed.data;
  const errors = [...primeErrors];
  const warnings: string[] = [];
  let primes = cfg.basis.primes;
  if (primes.length > cfg.basis.cutoff) {
    warnings.push(`basis truncated to the first ${cfg.basis.cutoff} of ${primes.length} primes (cutoff)`);
    primes = primes.slice(0, cfg.basis.cutoff);
  }
  if (primes.length > maxBasis) {
    errors.push({ pointer: '/basis/primes', code: 'basis_too_large', message: `k = ${primes.length} primes exceeds maxBasis ${maxBasis}` });
  }
  if (cfg.phases.custom && cfg.phases.custom.length > primes.length) {
    errors.push({ pointer: '/phases/custom', code: 'too_long', message: `${cfg.phases.custom.length} phases for ${primes.length} primes` });
  }
  const mixer = cfg.operators.mixer;
  if (mixer.gammaMax !== undefined && mixer.gammaMax < mixer.gamma0) {
    warnings.push(`operators.mixer.gamma0 ${mixer.gamma0} is above gammaMax ${mixer.gammaMax}; coupling starts at gammaMax`);
  }
  if (errors.length > 0) return { ok: false, errors };
  const band = narrowBandWarning(primes, cfg.operators.frequencyScale);
  if (band) warnings.push(band);
  const seed = cfg.seed ?? (options.drawSeed ?? drawSeed)();
  return { ok: true, normalized: { ...cfg, basis: { ...cfg.basis, primes }, seed }, warnings };
}
