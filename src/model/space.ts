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
    primes: z.array(z.number().int().min(2).max(2 ** 31 - 1)).min(1),
    order: z.enum(['ascending', 'learned']).default('ascending'),
    cutoff: z.number().int().min(1).max(1_000_000).default(2048),
  })
  .meta({ id: 'SpaceBasis' });

export const PhaseProfile = z
  .strictObject({
    golden: z.boolean().default(true),
    silver: z.boolean().default(true),
    custom: z.array(z.number()).optional().meta({ description: 'Radians added to the scaffold, one per prime of the ordered basis.' }),
  })
  .meta({ id: 'PhaseProfile' });

export const SpaceMixer = z
  .strictObject({
    gamma0: f32(z.number().min(0)).default(0.2),
    gammaGrowth: f32(z.number().min(0)).default(0.001),
    gammaMax: f32(z.number().min(0)).optional(),
    temperature0: f32(z.number().min(0)).default(1.0),
    beta: f32(z.number().gt(0).max(1)).default(0.98),
  })
  .meta({ id: 'SpaceMixer' });

export const OperatorSet = z
  .strictObject({
    mixer: SpaceMixer.default({ gamma0: 0.2, gammaGrowth: 0.001, temperature0: 1.0, beta: 0.98 }),
    resonanceTarget: f32(z.number().min(0).max(1)).default(0.8),
    localityBias: f32(z.number().min(0).max(1)).default(0.3),
    semantic: z
      .strictObject({ enabled: z.boolean().default(false), kernel: z.literal('prime').default('prime') })
      .default({ enabled: false, kernel: 'prime' }),
    frequencyScale: f32(z.number().min(0).max(100)).default(0.1),
  })
  .meta({ id: 'OperatorSet' });

export const EntropyField = z
  .strictObject({
    lambda: f32(z.number().min(0)).default(0.02),
    plateauEps: f32(z.number().min(0)).default(1e-6),
    plateauT: z.number().int().min(1).max(1_000_000_000).default(150),
    collapseThreshold: f32(z.number().gt(0).max(1)).default(0.97),
  })
  .meta({ id: 'EntropyField' });

export const SpacePolicy = z
  .strictObject({
    maxMembers: z.number().int().min(1).max(100_000).default(128),
    publishHz: z.number().int().min(1).max(60).default(30),
    historySeconds: z.number().int().min(1).max(7 * 24 * 3600).default(600),
    allowGuest: z.boolean().default(false),
  })
  .meta({ id: 'SpacePolicy' });

export const SpaceConfig = z
  .strictObject({
    name: label(200),
    basis: SpaceBasis,
    phases: PhaseProfile.default({ golden: true, silver: true }),
    operators: OperatorSet.default({
      mixer: { gamma0: 0.2, gammaGrowth: 0.001, temperature0: 1.0, beta: 0.98 },
      resonanceTarget: 0.8, localityBias: 0.3, semantic: { enabled: false, kernel: 'prime' }, frequencyScale: 0.1,
    }),
    entropy: EntropyField.default({ lambda: 0.02, plateauEps: 1e-6, plateauT: 150, collapseThreshold: 0.97 }),
    policy: SpacePolicy.default({ maxMembers: 128, publishHz: 30, historySeconds: 600, allowGuest: false }),
    seed: z.number().int().min(0).max(0xffffffff).optional(),
  })
  .meta({ id: 'SpaceConfig' });

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
