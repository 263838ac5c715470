/** The HQE API (hqe-api.md): validate, run, sessions, stepping, snapshots and their SSE stream. */
import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { ZodOpenApiPathsObject } from 'zod-openapi';
import { HQEConfig, type NormalizedConfig } from '../../model/config.js';
import { normalize } from '../../model/normalize.js';
import { type Scheduler, SessionEndedError } from '../../sim/scheduler.js';
import type { SessionEvent, SessionRow, SessionStore } from '../../store/sessions.js';
import { requireScope } from '../auth.js';
import type { ServerConfig } from '../config.js';
import { Problem, notFound, validationProblem } from '../problem.js';
import { chargeWork } from '../ratelimit.js';
import {
  authProblems, bodyProblems, Cursor, idempotencyProblems, encodeCursor, HQERunResponse, MetricsSchema, PageSize, problemResponse, RateLimitHeaders,
  SessionStatusSchema, SnapshotSchema,
} from '../schemas.js';
import { pageQuery } from '../paging.js';
import { openSse } from '../sse.js';
import type { AppState } from '../types.js';

export interface HqeDeps {
  config: ServerConfig;
  scheduler: Scheduler;
  sessions: SessionStore;
}

// ---- schemas ----

export const HQEValidateResponse = z
  .object({ ok: z.literal(true), warnings: z.array(z.string()), normalized: HQEConfig })
  .meta({ id: 'HQEValidateResponse' });

export const HQESession = z
  .object({
    id: z.string(),
    status: SessionStatusSchema,
    step: z.number().int().meta({ description: 'Global step of the latest state.' }),
    restart: z.number().int(),
    seed: z.number().int(),
    metrics: MetricsSchema.nullable(),
    createdAt: z.string().meta({ format: 'date-time' }),
    updatedAt: z.string().meta({ format: 'date-time' }),
    config: HQEConfig,
  })
  .meta({ id: 'HQESession' });

export const StepRequest = z
  .strictObject({ steps: z.number().int().min(1).max(1_000_000).default(32) })
  .meta({ id: 'HQEStepRequest' });

export const SnapshotPage = z
  .object({ items: z.array(SnapshotSchema), next_cursor: z.string().nullable() })
  .meta({ id: 'SnapshotPage' });

const SessionId = z.object({ id: z.string().meta({ description: 'Session id' }) });
const CursorShape = z.object({ seq: z.number().int().min(0) });

// ---- helpers ----

function principalOf(ctx: Context): NonNullable<AppState['principal']> {
  const p = (ctx.state as AppState).principal;
  if (!p) throw new Problem(401, 'unauthorized', 'Unauthorized', 'credentials required');
  return p;
}

function normalized(ctx: Context, config: ServerConfig): { cfg: NormalizedConfig; warnings: string[] } {
  const result = normalize(ctx.request.body, { maxBasis: config.maxBasis });
  if (!result.ok) throw validationProblem(result.errors);
  return { cfg: result.normalized, warnings: result.warnings };
}

/** steps x (restarts + 1) x k^2: the dense work a config may cost at most. */
const workOf = (cfg: NormalizedConfig, steps = cfg.schedule.steps * (cfg.schedule.restarts + 1)): number => steps * cfg.primes.length ** 2;

function sessionView(row: SessionRow): z.input<typeof HQESession> {
  return {
    id: row.id,
    status: row.status,
    step: row.step,
    restart: row.restart,
    seed: row.config.seed,
    metrics: row.metrics as z.input<typeof MetricsSchema> | null,
    createdAt: new Date(row.createdAt).toISOString(),
    updatedAt: new Date(row.updatedAt).toISOString(),
    config: row.config,
  };
}

async function ownSession(ctx: Context, sessions: SessionStore): Promise<SessionRow> {
  const row = await sessions.get(String(ctx.params.id));
  // Another org's session is indistinguishable from a missing one.
  if (!row || row.orgId !== principalOf(ctx).orgId) throw notFound(`session ${String(ctx.params.id)}`);
  return row;
}

// ---- routes ----

export function hqeRoutes(deps: HqeDeps): Router {
  const { config, scheduler, sessions } = deps;
  const router = new Router({ prefix: '/v1/hqe' });

  router.post('/validate', requireScope('hqe.read'), (ctx) => {
    const { cfg, warnings } = normalized(ctx, config);
    ctx.body = { ok: true, warnings, normalized: cfg };
  });

  router.post('/run', requireScope('hqe.write'), async (ctx) => {
    const { cfg, warnings } = normalized(ctx, config);
    const work = workOf(cfg);
    if (work > config.maxRunWork) {
      throw new Problem(400, 'run_too_large', 'Run too large', `steps x (restarts + 1) x k^2 = ${work} exceeds the limit ${config.maxRunWork} of one run; use a session`, {
        errors: [{ pointer: '/schedule/steps', code: 'run_too_large', message: `at most ${config.maxRunWork} of steps x (restarts + 1) x k^2` }],
        meta: { work, limit: config.maxRunWork },
      });
    }
    await chargeWork(ctx, Math.ceil(work / config.workUnit));
    ctx.body = await scheduler.run(cfg, warnings);
  });

  router.post('/sessions', requireScope('hqe.write'), async (ctx) => {
    const { cfg } = normalized(ctx, config);
    const row = await scheduler.createSession(randomUUID(), principalOf(ctx).orgId, cfg);
    ctx.status = 201;
    ctx.set('Location', `/v1/hqe/sessions/${row.id}`);
    ctx.body = sessionView(row);
  });

  router.get('/sessions/:id', requireScope('hqe.read'), async (ctx) => {
    ctx.body = sessionView(await ownSession(ctx, sessions));
  });

  router.delete('/sessions/:id', requireScope('hqe.write'), async (ctx) => {
    await ownSession(ctx, sessions);
    await scheduler.close(String(ctx.params.id));
    ctx.status = 204;
  });

  router.post('/sessions/:id/step', requireScope('hqe.write'), async (ctx) => {
    const row = await ownSession(ctx, sessions);
    const parsed = StepRequest.safeParse(ctx.request.body ?? {});
    if (!parsed.success) {
      throw validationProblem(parsed.error.issues.map((i) => ({ pointer: i.path.map((p) => `/${String(p)}`).join(''), code: i.code, message: i.message })));
    }
    await chargeWork(ctx, Math.ceil(workOf(row.config, parsed.data.steps) / config.workUnit));
    try {
      ctx.body = await scheduler.step(row.id, parsed.data.steps);
    } catch (err) {
      if (err instanceof SessionEndedError) {
        throw new Problem(409, 'session_ended', 'Session ended', `the session ended with status ${err.status}; only running or completed sessions can be stepped`, {
          meta: { status: err.status },
        });
      }
      throw err;
    }
  });

  router.get('/sessions/:id/snapshots', requireScope('hqe.read'), async (ctx) => {
    const row = await ownSession(ctx, sessions);
    const { size, cursor } = pageQuery(ctx, CursorShape);
    const events = await sessions.events(row.id, cursor?.seq ?? 0, size + 1, ['snapshot']);
    const page = events.slice(0, size);
    ctx.body = {
      items: page.map((e) => JSON.parse(e.body) as unknown),
      next_cursor: events.length > size ? encodeCursor({ seq: page[page.length - 1]!.seq }) : null,
    };
  });

  router.get('/sessions/:id/stream', requireScope('hqe.read'), async (ctx) => {
    const row = await ownSession(ctx, sessions);
    const lastId = Number(ctx.get('Last-Event-ID') || ctx.query.lastEventId || 0);
    const sse = openSse(ctx);
    // Subscribe first, buffer, then replay from the store: no event falls between the two.
    const pending: SessionEvent[] = [];
    let live = false;
    let last = Number.isFinite(lastId) ? lastId : 0;
    const deliver = (e: SessionEvent): void => {
      if (e.seq <= last) return;
      last = e.seq;
      const kind = e.kind === 'event' ? 'event' : e.kind;
      sse.send(kind, e.body, e.seq);
      if (e.kind === 'status' && isTerminal((JSON.parse(e.body) as { status: string }).status)) sse.close();
    };
    const unsubscribe = scheduler.subscribe(row.id, (e) => (live ? deliver(e) : pending.push(e)));
    sse.onClose(unsubscribe);
    for (;;) {
      const batch = await sessions.events(row.id, last, 500);
      for (const e of batch) deliver(e);
      if (batch.length < 500 || sse.closed) break;
    }
    for (const e of pending) deliver(e);
    live = true;
    const current = await sessions.get(row.id);
    if (current && isTerminal(current.status) && !sse.closed) sse.close();
  });

  return router;
}

const isTerminal = (status: string): boolean => status !== 'running' && status !== 'initializing' && status !== 'completed';

// ---- OpenAPI ----

const json = <T extends z.ZodType>(schema: T) => ({ content: { 'application/json': { schema } } });
const idempotencyHeader = z.object({
  'Idempotency-Key': z.string().max(128).optional().meta({ description: 'Replays the first response for 24 h (UUID recommended).' }),
});
const invalid = { '400': problemResponse('Invalid config: every failing field by JSON pointer') };

export const hqePaths: ZodOpenApiPathsObject = {
  '/v1/hqe/validate': {
    post: {
      tags: ['HQE'], summary: 'Validate and normalize an HQE configuration', requestBody: json(HQEConfig),
      responses: { '200': { description: 'Valid; the normalized config and warnings', headers: RateLimitHeaders, ...json(HQEValidateResponse) }, ...invalid, ...bodyProblems, ...authProblems },
    },
  },
  '/v1/hqe/run': {
    post: {
      tags: ['HQE'], summary: 'Run a config to its end; snapshots and final metrics', requestParams: { header: idempotencyHeader },
      requestBody: json(HQEConfig),
      responses: {
        '200': { description: 'Completed run', headers: RateLimitHeaders, ...json(HQERunResponse) },
        '400': problemResponse('Invalid config, or more work than one run may do (code run_too_large)'),
        ...bodyProblems,
        ...authProblems,
        ...idempotencyProblems,
      },
    },
  },
  '/v1/hqe/sessions': {
    post: {
      tags: ['HQE'], summary: 'Create a long-running session (runs its schedule in the background)', requestParams: { header: idempotencyHeader },
      requestBody: json(HQEConfig),
      responses: { '201': { description: 'Session created', headers: RateLimitHeaders, ...json(HQESession) }, ...invalid, ...bodyProblems, ...authProblems, ...idempotencyProblems },
    },
  },
  '/v1/hqe/sessions/{id}': {
    get: {
      tags: ['HQE'], summary: 'Session state and latest metrics', requestParams: { path: SessionId },
      responses: { '200': { description: 'Session', ...json(HQESession) }, '404': problemResponse('No such session (or not yours)'), ...authProblems },
    },
    delete: {
      tags: ['HQE'], summary: 'Close a session (its data stays readable)', requestParams: { path: SessionId },
      responses: { '204': { description: 'Closed' }, '404': problemResponse('No such session'), ...authProblems },
    },
  },
  '/v1/hqe/sessions/{id}/step': {
    post: {
      tags: ['HQE'], summary: 'Advance a session N steps beyond where it is; the snapshot of that state',
      requestParams: { path: SessionId, header: idempotencyHeader }, requestBody: json(StepRequest),
      responses: {
        '200': { description: 'Snapshot after the steps (or of the state the session ended on first)', ...json(SnapshotSchema) },
        '400': problemResponse('Invalid body'), '404': problemResponse('No such session'),
        ...bodyProblems,
        ...authProblems,
        ...idempotencyProblems,
        '409': problemResponse('The session has ended (code session_ended), or a request with this Idempotency-Key is in flight (code idempotency_in_flight)'),
      },
    },
  },
  '/v1/hqe/sessions/{id}/snapshots': {
    get: {
      tags: ['Telemetry'], summary: 'Page through stored snapshots, oldest first',
      requestParams: { path: SessionId, query: z.object({ cursor: Cursor, page_size: PageSize.optional() }) },
      responses: { '200': { description: 'A page', ...json(SnapshotPage) }, '400': problemResponse('Bad cursor or page_size'), '404': problemResponse('No such session'), ...authProblems },
    },
  },
  '/v1/hqe/sessions/{id}/stream': {
    get: {
      tags: ['Telemetry'],
      summary: 'Server-Sent Events: `snapshot`, `metrics`, `event` and `status` events (JSON data, id = sequence); Last-Event-ID resumes',
      requestParams: { path: SessionId, header: z.object({ 'Last-Event-ID': z.string().optional() }) },
      responses: {
        '200': { description: 'text/event-stream', content: { 'text/event-stream': { schema: z.string() } } },
        '404': problemResponse('No such session'), ...authProblems,
      },
    },
  },
};
