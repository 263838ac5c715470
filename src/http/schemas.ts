/**
 * Response and shared request schemas of the HTTP API. With the model's config schemas they are the single
 * source of the API's types and of openapi.yaml.
 */
import { z } from 'zod';
import { MAX_FIELD_ERRORS } from '../model/normalize.js';
import { HQE_SESSION_STATUSES, RUN_STATUSES } from '@resonance/sdk/protocol';

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    instance: z.string().optional(),
    code: z.string().meta({ description: 'Stable machine-readable error code (docs/errors.md).' }),
    errors: z
      .array(z.object({ pointer: z.string(), code: z.string(), message: z.string(), values: z.array(z.number()).optional() }))
      .optional()
      .meta({ description: `Every failing field, by JSON pointer into the request: the first ${MAX_FIELD_ERRORS}, with meta.errorCount and meta.truncated when there were more.` }),
    meta: z.record(z.string(), z.unknown()).optional(),
    requestId: z.string().optional(),
  })
  .meta({ id: 'Problem', description: 'RFC 9457 problem details.' });

export const problemResponse = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: ProblemSchema } },
});

/** Error responses of every operation that takes a JSON body. */
export const bodyProblems = {
  '413': problemResponse('The body exceeds the size limit (code payload_too_large)'),
  '415': problemResponse('The body is not application/json (code unsupported_media_type)'),
};

/** Error responses of an operation that honours Idempotency-Key. */
export const idempotencyProblems = {
  '409': problemResponse('A request with this Idempotency-Key is still in flight (code idempotency_in_flight)'),
  '422': problemResponse('This Idempotency-Key was used with a different request (code idempotency_key_reused)'),
};

/** The common error responses of an authenticated route. */
export const authProblems = {
  '401': problemResponse('Missing, invalid or expired credentials'),
  '403': problemResponse('The credentials lack the scope this operation needs'),
  '429': problemResponse('Rate limited; see Retry-After'),
  '503': problemResponse(
    'service_unavailable: the store or the broker cannot be reached now; owner_unreachable / owner_changed: the node that owns the space or session did not answer, or it is changing hands. Retry after Retry-After',
  ),
};

const metric = () => z.number().nullable().meta({ description: 'In [0, 1]; null only for a non-finite value of a failed state.' });

export const MetricsSchema = z
  .object({
    resonanceStrength: metric(),
    coherence: metric(),
    entropy: metric(),
    locality: metric(),
    dominance: metric(),
    plateauDetected: z.boolean(),
  })
  .meta({ id: 'Metrics' });

export const SnapshotSchema = z
  .object({
    step: z.number().int().meta({ description: 'Global step (all restarts).' }),
    restart: z.number().int(),
    metrics: MetricsSchema,
    amplitudes: z.array(z.number()).optional().meta({ description: 'e^lnNu * a_i, when observables.recordAmplitudes.' }),
    phases: z.array(z.number()).optional().meta({ description: 'theta_i in [0, 2pi), when observables.recordPhases.' }),
  })
  .meta({ id: 'Snapshot' });

export const RunStatus = z.enum(RUN_STATUSES).meta({ id: 'RunStatus' });

export const RunEventSchema = z
  .object({ type: z.enum(['plateau', 'converged', 'failed', 'restart']), step: z.number().int(), restart: z.number().int() })
  .meta({ id: 'RunEvent' });

/**
 * The engine that runs a simulation: the server's, except that an f32 engine runs a band of primes f32
 * cannot resolve on the CPU engine in f64 (docs/model.md section 9).
 */
export const EngineFields = z.object({
  backend: z.enum(['cpu', 'webgpu']).meta({ description: 'The engine that runs it (docs/model.md section 9: a band f32 cannot resolve runs on cpu).' }),
  adapter: z.string(),
  precision: z.enum(['f32', 'f64']).meta({ description: 'The precision of its state: f64 where f32 cannot resolve the band of primes (see the validate warning).' }),
});

export const HQERunResponse = z
  .object({
    runId: z.string(),
    status: RunStatus,
    seed: z.number().int(),
    steps: z.number().int().meta({ description: 'Global step of the final state.' }),
    restarts: z.number().int(),
    ...EngineFields.shape,
    finalMetrics: MetricsSchema,
    snapshots: z.array(SnapshotSchema),
    metrics: z.array(MetricsSchema.extend({ step: z.number().int(), restart: z.number().int() })),
    events: z.array(RunEventSchema),
    warnings: z.array(z.string()),
    elapsedMs: z.number(),
  })
  .meta({ id: 'HQERunResponse' });

export const SessionStatusSchema = z
  .enum(HQE_SESSION_STATUSES)
  .meta({ id: 'HQESessionStatus', description: '`completed`: the schedule ran out without converging (an addition to the original enum).' });

/** Page size of every list; paging.ts also refuses anything but plain decimal digits, and a repeated parameter. */
export const PageSize = z.coerce
  .number()
  .int()
  .min(1)
  .max(500)
  .default(100)
  .meta({ description: 'Items per page, 1..500 (default 100): plain decimal digits, given at most once (else 400 at /page_size).' });
export const Cursor = z.string().max(200).optional().meta({ description: 'Opaque cursor from next_cursor.' });

/** Opaque pagination cursors: base64url JSON, so clients never depend on their content. */
export function encodeCursor(value: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

export function decodeCursor<T extends Record<string, string | number>>(cursor: string | undefined, shape: z.ZodType<T>): T | null {
  if (!cursor) return null;
  try {
    const parsed = shape.safeParse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

export const RateLimitHeaders = z.object({
  'X-RateLimit-Limit': z.number().int().meta({ description: 'Units per window.' }),
  'X-RateLimit-Remaining': z.number().int(),
  'X-RateLimit-Reset': z.number().int().meta({ description: 'Seconds until the window resets.' }),
});
