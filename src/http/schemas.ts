/**
 * Response and shared request schemas of the HTTP API. With the model's config schemas they are the single
 * source of the API's types and of openapi.yaml.
 */
import { z } from 'zod';
import { MAX_FIELD_ERRORS } from '../model/normalize.js';
import { HQE_SESSION_STATUSES, RUN_STATUSES } from '@resonance/sdk/protocol';

export const ProblemSchema = z
  .object({
    type: z.string().meta({ description: '`/problems/{code}`.' }),
    title: z.string().meta({ description: 'A short summary for people; may change. Branch on `code`.' }),
    status: z.number().int().meta({ description: 'The HTTP status, repeated.' }),
    detail: z.string().optional().meta({ description: 'What went wrong in this request, for people.' }),
    instance: z.string().optional().meta({ description: 'The request path.' }),
    code: z.string().meta({ description: 'Stable machine-readable error code (docs/errors.md).' }),
    errors: z
      .array(
        z.object({
          pointer: z.string().meta({ description: 'JSON pointer into the request body (or /page_size, /cursor, /from ... for query parameters); "" is the body itself.' }),
          code: z.string().meta({ description: 'How the field is wrong: not_prime, unknown_field, too_big, not_f32, ...' }),
          message: z.string(),
          values: z.array(z.number()).optional().meta({ description: 'For a basis summary entry: the first offending values.' }),
        }),
      )
      .optional()
      .meta({ description: `Every failing field, by JSON pointer into the request: the first ${MAX_FIELD_ERRORS}, with meta.errorCount and meta.truncated when there were more.` }),
    meta: z.record(z.string(), z.unknown()).optional().meta({ description: 'Facts of the error: quota, limit and used for quota_exceeded; currentVersion for a refused delta; work and limit for run_too_large ...' }),
    requestId: z.string().optional().meta({ description: 'The X-Request-Id of the request, also in the server log.' }),
  })
  .meta({ id: 'Problem', description: 'RFC 9457 problem details: every error of the API. Branch on `code`; show `detail` and `errors` to people.' });

/** A named example of a request or response body (an OpenAPI Example Object). */
export interface BodyExample<T> {
  summary: string;
  description?: string;
  value: T;
}

/** An application/json body a client sends, with examples typed by what the schema accepts. */
export const jsonRequest = <T extends z.ZodType>(schema: T, examples: Record<string, BodyExample<z.input<T>>>) => ({
  content: { 'application/json': { schema, examples } },
});

/** An application/json body the server answers with, with examples typed by what the schema emits. */
export const jsonResponse = <T extends z.ZodType>(schema: T, examples: Record<string, BodyExample<z.output<T>>>) => ({
  content: { 'application/json': { schema, examples } },
});

/** A text/event-stream response: the events are described in words, the example shows the wire. */
export const sseResponse = (description: string, examples: Record<string, BodyExample<string>>) => ({
  description,
  content: { 'text/event-stream': { schema: z.string(), examples } },
});

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

const metric = (meaning: string) => z.number().nullable().meta({ description: `${meaning} In [0, 1]; null only for a non-finite value of a failed state.` });

export const MetricsSchema = z
  .object({
    resonanceStrength: metric('Mass-weighted Kuramoto order parameter |sum P_i e^{i theta_i}|: 1 when every prime is in phase.'),
    coherence: metric('Kernel-weighted phase agreement of coupled primes: 1 when every coupled pair is in phase.'),
    entropy: metric('Normalised entropy of the masses (entropy.base): 1 for uniform mass, 0 when one prime holds it all.'),
    locality: metric('1 when the mass sits in a narrow band of log-prime, 0 when it is split between the extremes.'),
    dominance: metric('The largest mass max_i P_i (at least 1/k).'),
    plateauDetected: z.boolean().meta({ description: 'Entropy has not improved by plateauEps for plateauT steps.' }),
  })
  .meta({ id: 'Metrics', description: 'The metrics of one state (docs/model.md section 5).' });

export const SnapshotSchema = z
  .object({
    step: z.number().int().meta({ description: 'Global step (all restarts).' }),
    restart: z.number().int().meta({ description: 'Restart index, from 0.' }),
    metrics: MetricsSchema,
    amplitudes: z.array(z.number()).optional().meta({ description: 'e^lnNu * a_i, when observables.recordAmplitudes.' }),
    phases: z.array(z.number()).optional().meta({ description: 'theta_i in [0, 2pi), when observables.recordPhases.' }),
  })
  .meta({ id: 'Snapshot', description: 'A recorded HQE state: its step, its metrics, and amplitudes and phases when the config records them.' });

export const RunStatus = z.enum(RUN_STATUSES).meta({
  id: 'RunStatus',
  description: 'How a run ended: `converged` (held the resonance target), `plateau` (entropy stalled with no restart left), `completed` (the steps ran out), `failed` (a non-finite state).',
});

export const RunEventSchema = z
  .object({
    type: z
      .enum(['plateau', 'converged', 'failed', 'restart'])
      .meta({ description: '`restart`: a plateau or the end of the steps started the next restart; the others as the run statuses.' }),
    step: z.number().int().meta({ description: 'Global step of the state.' }),
    restart: z.number().int().meta({ description: 'Restart index of the state.' }),
  })
  .meta({ id: 'RunEvent', description: 'Something that happened during a run, at the state where it happened.' });

/**
 * The engine that runs a simulation: the server's, except that an f32 engine runs a band of primes f32
 * cannot resolve on the CPU engine in f64 (docs/model.md section 9).
 */
export const EngineFields = z.object({
  backend: z.enum(['cpu', 'webgpu']).meta({ description: 'The engine that runs it (docs/model.md section 9: a band f32 cannot resolve runs on cpu).' }),
  adapter: z.string().meta({ description: 'The engine in words: the GPU adapter, or the CPU engine and its threads.' }),
  precision: z.enum(['f32', 'f64']).meta({ description: 'The precision of its state: f64 where f32 cannot resolve the band of primes (see the validate warning).' }),
});

export const HQERunResponse = z
  .object({
    runId: z.string().meta({ description: 'A fresh id for this run. Runs are not stored: create a session to keep one.' }),
    status: RunStatus,
    seed: z.number().int().meta({ description: 'The seed used (drawn when the config had none): send it back to reproduce the run.' }),
    steps: z.number().int().meta({ description: 'Global step of the final state.' }),
    restarts: z.number().int().meta({ description: 'Restarts taken.' }),
    ...EngineFields.shape,
    finalMetrics: MetricsSchema.meta({ description: 'The metrics of the final state.' }),
    snapshots: z.array(SnapshotSchema).meta({ description: 'The states at steps 0, I, 2I, ... (I = observables.snapshotsInterval) and the final state.' }),
    metrics: z
      .array(MetricsSchema.extend({ step: z.number().int(), restart: z.number().int() }))
      .meta({ description: 'Metrics every observables.metricsInterval steps.' }),
    events: z.array(RunEventSchema).meta({ description: 'Events in the order they happened.' }),
    warnings: z.array(z.string()).meta({ description: 'What normalisation changed or noticed (as POST /v1/hqe/validate reports).' }),
    elapsedMs: z.number().meta({ description: 'Wall time the engine took.' }),
  })
  .meta({ id: 'HQERunResponse', description: 'The whole result of a run: how it ended, what it recorded, and the engine that ran it.' });

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
