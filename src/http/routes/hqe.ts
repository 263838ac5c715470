/** The HQE API: validate, run, sessions, stepping, snapshots and their SSE stream. */
import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { ZodOpenApiPathsObject } from 'zod-openapi';
import { HQEConfig, type NormalizedConfig } from '../../model/config.js';
import { normalize, zodErrors } from '../../model/normalize.js';
import type { EngineInfo } from '../../engine/types.js';
import type { Quotas, UsageMeter } from '../../sim/quotas.js';
import { type Scheduler, SessionEndedError } from '../../sim/scheduler.js';
import type { SessionCommit } from '../../sim/session-cluster.js';
import type { SessionEvent, SessionRow, SessionStore } from '../../store/sessions.js';
import { requireScope } from '../auth.js';
import type { ServerConfig } from '../config.js';
import { Problem, notFound, unavailableProblem, validationProblem } from '../problem.js';
import { chargeWork, workUnits } from '../ratelimit.js';
import {
  authProblems, bodyProblems, Cursor, EngineFields, idempotencyProblems, encodeCursor, HQERunResponse, jsonRequest, jsonResponse, MetricsSchema, PageSize, problemResponse,
  RateLimitHeaders, SessionStatusSchema, SnapshotSchema, sseResponse,
} from '../schemas.js';
import * as ex from '../openapi-examples.js';
import { pageQuery } from '../paging.js';
import type { RouteMiddleware } from '../idempotency.js';
import type { CredentialWatch } from '../revocations.js';
import { openSse } from '../sse.js';
import type { AppState } from '../types.js';

export interface HqeDeps {
  config: ServerConfig;
  scheduler: Scheduler;
  sessions: SessionStore;
  /** work_units_per_hour (runs, sessions, steps) and hqe_sessions (running sessions of an org). */
  quotas: Quotas;
  /** Meters the work units charged (work_units). */
  usage: UsageMeter;
  /** Idempotency-Key replay (after the scope check of each POST). */
  idempotent: RouteMiddleware;
  /** Ends a stream whose credential is revoked. */
  credentials: CredentialWatch;
}

// ---- schemas ----

export const HQEValidateResponse = z
  .object({
    ok: z.literal(true),
    warnings: z.array(z.string()).meta({ description: 'What normalisation changed or noticed: a basis sorted, a band of primes f32 cannot resolve (run in f64 on the CPU).' }),
    normalized: HQEConfig.meta({ description: 'The config as it would run: every default filled in, the basis sorted with its per-prime arrays, gammaMax and the seed resolved.' }),
  })
  .meta({ id: 'HQEValidateResponse', description: 'A valid config: its normalized form, and warnings.' });

export const HQESession = z
  .object({
    id: z.string(),
    status: SessionStatusSchema,
    step: z.number().int().meta({ description: 'Global step of the latest state.' }),
    restart: z.number().int().meta({ description: 'Restart index of the latest state.' }),
    seed: z.number().int().meta({ description: 'The seed it runs with (drawn when the config had none).' }),
    metrics: MetricsSchema.nullable().meta({ description: 'Of the latest state; null until the first is recorded.' }),
    createdAt: z.string().meta({ format: 'date-time' }),
    updatedAt: z.string().meta({ format: 'date-time' }),
    config: HQEConfig.meta({ description: 'The normalized config.' }),
    ...EngineFields.shape,
  })
  .meta({ id: 'HQESession', description: 'A stored HQE simulation that runs in the background: where it is, how it is doing, and what it runs.' });

export const StepRequest = z
  .strictObject({ steps: z.number().int().min(1).max(1_000_000).default(32).meta({ description: 'Steps to add beyond the current state.' }) })
  .meta({ id: 'HQEStepRequest', description: 'How far to advance a session. The body may be omitted (32 steps).' });

export const SnapshotPage = z
  .object({ items: z.array(SnapshotSchema), next_cursor: z.string().nullable().meta({ description: 'Pass as `cursor` for the next page; null on the last page so far.' }) })
  .meta({ id: 'SnapshotPage', description: 'A page of a session\'s snapshots, oldest first.' });

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

/** The largest schedule a session may be created with (README, "Charging HQE work"). */
// One unit less than the window: the request itself costs one unit of it.
const sessionWorkLimit = (config: ServerConfig): number => config.maxSessionWork ?? (config.rateLimit - 1) * config.workUnit;

/**
 * Runs `fn` after every earlier admission of the same org has finished: the count of its running sessions
 * that the hqe_sessions cap checks is then the count `fn` adds to, even under concurrent requests.
 */
function serialPerOrg(): <T>(orgId: string, fn: () => Promise<T>) => Promise<T> {
  const tails = new Map<string, Promise<unknown>>();
  return (orgId, fn) => {
    const run = (tails.get(orgId) ?? Promise.resolve()).then(fn, fn);
    const tail = run.catch(() => undefined);
    tails.set(orgId, tail);
    void tail.then(() => {
      if (tails.get(orgId) === tail) tails.delete(orgId);
    });
    return run;
  };
}

/** A session as the API shows it; `engine`: the engine that runs it (Scheduler.engineInfoFor). */
function sessionView(row: SessionRow, engine: EngineInfo): z.input<typeof HQESession> {
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
    backend: engine.backend,
    adapter: engine.adapter,
    precision: engine.precision,
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
  const { config, scheduler, sessions, idempotent, credentials } = deps;
  const router = new Router({ prefix: '/v1/hqe' });
  const admitting = serialPerOrg();

  /**
   * Charges `work` (kernel entries x steps) before it starts: work units against the key's rate budget,
   * then the org's work_units_per_hour quota (429 rate_limited / quota_exceeded, nothing started); then
   * meters them. A quota refusal leaves the request's rate units spent (the rate window is short).
   */
  const chargeHqeWork = async (ctx: Context, work: number): Promise<void> => {
    const { orgId } = principalOf(ctx);
    const units = workUnits(work, config.workUnit);
    await chargeWork(ctx, units);
    await deps.quotas.charge(orgId, 'work_units_per_hour', units);
    deps.usage.add(orgId, 'work_units', units);
  };
  const checkSessionCap = (orgId: string, except?: string): Promise<void> => deps.quotas.checkCap(orgId, 'hqe_sessions', scheduler.runningSessionsOf(orgId, except));

  router.post('/validate', requireScope('hqe.read'), idempotent, (ctx) => {
    const { cfg, warnings } = normalized(ctx, config);
    ctx.body = { ok: true, warnings, normalized: cfg };
  });

  router.post('/run', requireScope('hqe.write'), idempotent, async (ctx) => {
    const { cfg, warnings } = normalized(ctx, config);
    const work = workOf(cfg);
    if (work > config.maxRunWork) {
      throw new Problem(400, 'run_too_large', 'Run too large', `steps x (restarts + 1) x k^2 = ${work} exceeds the limit ${config.maxRunWork} of one run; use a session`, {
        errors: [{ pointer: '/schedule/steps', code: 'run_too_large', message: `at most ${config.maxRunWork} of steps x (restarts + 1) x k^2` }],
        meta: { work, limit: config.maxRunWork },
      });
    }
    await chargeHqeWork(ctx, work);
    ctx.body = await scheduler.run(cfg, warnings, principalOf(ctx).orgId);
  });

  router.post('/sessions', requireScope('hqe.write'), idempotent, async (ctx) => {
    const { cfg } = normalized(ctx, config);
    const work = workOf(cfg);
    const limit = sessionWorkLimit(config);
    if (work > limit) {
      throw new Problem(400, 'session_too_large', 'Session too large', `steps x (restarts + 1) x k^2 = ${work} exceeds the limit ${limit} of a session's schedule; create a shorter one and extend it with POST /v1/hqe/sessions/{id}/step`, {
        errors: [{ pointer: '/schedule/steps', code: 'session_too_large', message: `at most ${limit} of steps x (restarts + 1) x k^2` }],
        meta: { work, limit },
      });
    }
    const { orgId } = principalOf(ctx);
    const row = await admitting(orgId, async () => {
      await checkSessionCap(orgId);
      // Refused before anything is charged.
      await scheduler.checkStorage(orgId);
      // The whole schedule is paid for now; the session then runs it in the background with no further charge.
      await chargeHqeWork(ctx, work);
      return scheduler.createSession(randomUUID(), orgId, cfg);
    });
    ctx.status = 201;
    ctx.set('Location', `/v1/hqe/sessions/${row.id}`);
    ctx.body = sessionView(row, scheduler.engineInfoFor(row.config));
  });

  router.get('/sessions/:id', requireScope('hqe.read'), async (ctx) => {
    const row = await ownSession(ctx, sessions);
    ctx.body = sessionView(row, scheduler.engineInfoFor(row.config));
  });

  router.delete('/sessions/:id', requireScope('hqe.write'), async (ctx) => {
    const row = await ownSession(ctx, sessions);
    // On the node that simulates the session (forwarded there when that is another node).
    await scheduler.close(row.id, row.orgId);
    ctx.status = 204;
  });

  router.post('/sessions/:id/step', requireScope('hqe.write'), idempotent, async (ctx) => {
    const row = await ownSession(ctx, sessions);
    const parsed = StepRequest.safeParse(ctx.request.body ?? {});
    if (!parsed.success) {
      throw validationProblem(zodErrors(parsed.error));
    }
    const sessionEnded = (status: string): Problem =>
      new Problem(409, 'session_ended', 'Session ended', `the session ended with status ${status}; only running or completed sessions can be stepped`, {
        meta: { status },
      });
    // Refused before anything is charged.
    if (isTerminal(row.status)) throw sessionEnded(row.status);
    const { steps } = parsed.data;
    // The steps extend the current restart and every later one, so they may cost that many times over.
    const work = workOf(row.config, steps * (row.config.schedule.restarts - Math.min(row.restart, row.config.schedule.restarts) + 1));
    try {
      if (row.status === 'completed') {
        // A completed session runs again: it counts against the hqe_sessions cap once more, from the
        // moment its step is requested (Scheduler.runningSessionsOf).
        const requested = await admitting(row.orgId, async () => {
          await checkSessionCap(row.orgId, row.id);
          await chargeHqeWork(ctx, work);
          return { snapshot: scheduler.step(row.id, steps, row.orgId) };
        });
        ctx.body = await requested.snapshot;
      } else {
        await chargeHqeWork(ctx, work);
        ctx.body = await scheduler.step(row.id, steps, row.orgId);
      }
    } catch (err) {
      if (err instanceof SessionEndedError) throw sessionEnded(err.status);
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
    const { orgId } = principalOf(ctx);
    // A place in the org's streams quota (409 quota_exceeded), held while the stream is open.
    const release = await deps.quotas.acquire(orgId, 'streams');
    let last = Number.isFinite(lastId) ? lastId : 0;
    // The stream reads the store, which holds every event in seq order whichever node wrote it; commit
    // notices (SessionCommit, from this node or the session's owner elsewhere) wake it, and one that
    // continues exactly where it is is taken as it comes, without a read.
    let reading = false;
    let again = false;
    let wokenAt = Date.now();
    let readStore: () => Promise<void> = async () => undefined;
    let deliver: (e: SessionEvent) => void = () => undefined;
    const wake = (): void => {
      wokenAt = Date.now();
      if (reading) again = true;
      else void readStore();
    };
    const onCommit = (c: SessionCommit): void => {
      if (c.upTo <= last) return;
      if (!reading && c.events && c.after !== null && c.after <= last) {
        wokenAt = Date.now();
        for (const e of c.events) deliver(e);
        endIfFinished();
        return;
      }
      wake();
    };
    // Subscribed before the store is read: a commit during the read is noted and read too.
    let unsubscribe: () => void;
    try {
      unsubscribe = await scheduler.subscribe(row.id, onCommit);
    } catch {
      // The broker that carries the owner's commits cannot be reached now.
      release();
      throw unavailableProblem();
    }
    const sse = openSse(ctx, {
      maxBufferBytes: config.streamBufferBytes, sendTimeoutMs: config.streamSendTimeoutMs, onWrite: (bytes) => deps.usage.add(orgId, 'bytes_sent', bytes),
    });
    sse.onClose(release);
    sse.onClose(unsubscribe);
    sse.onClose(credentials.watchPrincipal(principalOf(ctx), () => sse.close()));
    // The status the session finished on when the last event sent (or, before any, the row) says it
    // finished. It is decided once every event stored so far is sent: a `completed` in a replay may be
    // followed by the `running` of a later step, and the stream goes on through it.
    let finished: string | null = streamEnds(row.status) ? row.status : null;
    const endIfFinished = (): void => {
      if (finished === null || sse.closed) return;
      // No id: Last-Event-ID stays on the last stored event, so a resume gets this `end` again.
      sse.send('end', JSON.stringify({ status: finished }));
      sse.close();
    };
    deliver = (e) => {
      if (e.seq <= last || sse.closed) return;
      // Not sent (the client is past its buffer and the stream was ended): it resumes from `last`.
      if (!sse.send(e.kind === 'event' ? 'event' : e.kind, e.body, e.seq)) return;
      last = e.seq;
      // Only a status event moves it: whatever else a status is followed by does not reopen the session.
      if (e.kind === 'status') {
        const status = (JSON.parse(e.body) as { status: string }).status;
        finished = streamEnds(status) ? status : null;
      }
    };
    // Reads are paced by the client: the next event is written only once the socket drains. They are sized
    // to about REPLAY_BATCH_BYTES (what a stalled client keeps in memory), and each is a turn of the event
    // loop of its own, so a fast reader does not hold it for the whole history.
    let rows = 32;
    let failure: unknown = null;
    readStore = async () => {
      reading = true;
      try {
        do {
          again = false;
          for (;;) {
            const batch = await sessions.events(row.id, last, rows);
            let bytes = 0;
            for (const e of batch) {
              bytes += e.body.length;
              deliver(e);
              if (!(await sse.drained())) return;
            }
            if (batch.length < rows) break;
            rows = Math.max(1, Math.min(REPLAY_MAX_ROWS, Math.floor((REPLAY_BATCH_BYTES * batch.length) / Math.max(1, bytes))));
            await new Promise<void>((resolve) => setImmediate(resolve));
          }
        } while (again && !sse.closed);
        endIfFinished();
      } catch (err) {
        // The store failed: the stream ends and the client resumes with Last-Event-ID (the first read's
        // failure is rethrown below, to be logged).
        failure ??= err;
        if (!sse.closed) sse.close();
      } finally {
        reading = false;
      }
    };
    await readStore();
    if (failure) throw failure;
    if (sse.closed) return;
    // A notice lost between nodes (the owner died right after a commit, the broker blinked) is made up for
    // by reading the store when none came for a while.
    const resync = setInterval(() => {
      if (Date.now() - wokenAt >= STREAM_RESYNC_MS) wake();
    }, STREAM_RESYNC_MS);
    resync.unref();
    sse.onClose(() => clearInterval(resync));
  });

  return router;
}

/** A stream's replay reads the store in batches of about this many bytes of events, at most REPLAY_MAX_ROWS. */
const REPLAY_BATCH_BYTES = 256 * 1024;
const REPLAY_MAX_ROWS = 500;
/** A stream with no commit notice for this long reads the store anyway. */
const STREAM_RESYNC_MS = 5000;

/** A session that may not be stepped any more (`completed` may: its schedule is extended). */
const isTerminal = (status: string): boolean => status !== 'running' && status !== 'initializing' && status !== 'completed';
/** A session that runs no more unless stepped: its stream ends after its last event (`completed` too). */
const streamEnds = (status: string): boolean => status !== 'running' && status !== 'initializing';

// ---- OpenAPI ----

const idempotencyHeader = z.object({
  'Idempotency-Key': z.string().max(128).optional().meta({ description: 'Replays the first response for 24 h (UUID recommended).' }),
});
const invalid = { '400': problemResponse('Invalid config: every failing field by JSON pointer') };
const workRefused = problemResponse("The key's rate budget (code rate_limited) or the org's work_units_per_hour quota (code quota_exceeded) cannot pay for the work; see Retry-After");
const exampleRequest = { example: { summary: 'examples/hqe.json', value: ex.exampleHqeConfig } };

export const hqePaths: ZodOpenApiPathsObject = {
  '/v1/hqe/validate': {
    post: {
      tags: ['HQE'], operationId: 'validateHqeConfig', summary: 'Validate and normalize an HQE configuration',
      description:
        'Checks a config without running it (scope hqe.read; one rate-limit unit, no work charged): a 400 lists every failing field by JSON pointer, ' +
        'a 200 returns the config with every default filled in, the basis sorted and the seed fixed, and warnings (a sorted basis, a band of primes f32 cannot resolve). ' +
        'Send the normalized config to /run or /sessions to get exactly what was validated.',
      requestBody: jsonRequest(HQEConfig, {
        ...exampleRequest,
        unsorted: { summary: 'An unsorted basis: valid, with a warning', value: ex.unsortedHqeConfig },
      }),
      responses: {
        '200': {
          description: 'Valid; the normalized config and warnings', headers: RateLimitHeaders,
          ...jsonResponse(HQEValidateResponse, { example: { summary: 'examples/hqe.json, normalized', value: ex.validateResponse } }),
        },
        ...invalid, ...bodyProblems, ...authProblems,
      },
    },
  },
  '/v1/hqe/run': {
    post: {
      tags: ['HQE'], operationId: 'runHqe', summary: 'Run a config to its end; snapshots and final metrics', requestParams: { header: idempotencyHeader },
      description:
        'Runs the config synchronously and answers with the whole result; nothing is stored (scope hqe.write). ' +
        'Costs steps x (restarts + 1) x k^2 kernel entries in work units, charged up front to the key\'s rate budget and the org\'s work_units_per_hour quota; ' +
        'more than the server\'s run limit is a 400 run_too_large. For long schedules, or to watch progress, create a session instead.',
      requestBody: jsonRequest(HQEConfig, {
        example: { summary: 'examples/hqe.json, recording every 64 steps', value: ex.exampleRunConfig },
      }),
      responses: {
        '200': {
          description: 'Completed run', headers: RateLimitHeaders,
          ...jsonResponse(HQERunResponse, { converged: { summary: 'The example config converges at step 131', value: ex.runResponse } }),
        },
        '400': problemResponse('Invalid config, or more work than one run may do (code run_too_large)'),
        ...bodyProblems,
        ...authProblems,
        ...idempotencyProblems,
        '429': workRefused,
      },
    },
  },
  '/v1/hqe/sessions': {
    post: {
      tags: ['HQE'], operationId: 'createHqeSession', summary: 'Create a long-running session (runs its schedule in the background)', requestParams: { header: idempotencyHeader },
      description:
        'Starts a stored session that runs its schedule in the background (scope hqe.write). The whole schedule is charged at creation in work units; ' +
        'a schedule above the session limit is a 400 session_too_large (create a shorter one and extend it with /step), and the org\'s hqe_sessions quota caps running sessions (409). ' +
        'Follow it with GET /v1/hqe/sessions/{id}/stream (or poll GET /v1/hqe/sessions/{id}); the Location header names it.',
      requestBody: jsonRequest(HQEConfig, exampleRequest),
      responses: {
        '201': {
          description: 'Session created', headers: RateLimitHeaders.extend({ Location: z.string().meta({ description: 'The session: /v1/hqe/sessions/{id}.' }) }),
          ...jsonResponse(HQESession, { created: { summary: 'Just created: running, no metrics yet', value: ex.createdSession } }),
        },
        '400': problemResponse('Invalid config, or a schedule of more work than a session may be created with (code session_too_large)'),
        ...bodyProblems,
        ...authProblems,
        ...idempotencyProblems,
        '409': problemResponse('The org runs as many sessions as its hqe_sessions quota allows (code quota_exceeded), or a request with this Idempotency-Key is in flight (code idempotency_in_flight)'),
        '429': workRefused,
      },
    },
  },
  '/v1/hqe/sessions/{id}': {
    get: {
      tags: ['HQE'], operationId: 'getHqeSession', summary: 'Session state and latest metrics', requestParams: { path: SessionId },
      description:
        'The session\'s status, step and latest metrics, and its normalized config (scope hqe.read; one rate-limit unit). ' +
        'A status other than running or initializing means it runs no more unless stepped: completed sessions can be extended with /step; the others have ended. ' +
        'Another org\'s session is a 404.',
      responses: {
        '200': { description: 'Session', ...jsonResponse(HQESession, { converged: { summary: 'The example session, converged', value: ex.convergedSession } }) },
        '404': problemResponse('No such session (or not yours)'), ...authProblems,
      },
    },
    delete: {
      tags: ['HQE'], operationId: 'closeHqeSession', summary: 'Close a session (its data stays readable)', requestParams: { path: SessionId },
      description:
        'Stops the session and marks it closed (scope hqe.write); its state, snapshots and stream stay readable until the retention period deletes them. ' +
        'Work already charged is not refunded. Open streams end with `end` {status: closed}.',
      responses: { '204': { description: 'Closed' }, '404': problemResponse('No such session'), ...authProblems },
    },
  },
  '/v1/hqe/sessions/{id}/step': {
    post: {
      tags: ['HQE'], operationId: 'stepHqeSession', summary: 'Advance a session N steps beyond where it is; the snapshot of that state',
      description:
        'Extends the session\'s schedule by `steps` and waits for the state that many steps beyond where it was (scope hqe.write). ' +
        'Charged steps x (restarts still to come + 1) x k^2 in work units. A running or completed session may be stepped (a completed one runs again and counts against hqe_sessions); ' +
        'one that converged, plateaued, failed or was closed is a 409 session_ended.',
      requestParams: { path: SessionId, header: idempotencyHeader },
      requestBody: jsonRequest(StepRequest, { steps: { summary: '32 more steps', value: ex.stepRequest } }),
      responses: {
        '200': {
          description: 'Snapshot after the steps (or of the state the session ended on first)',
          ...jsonResponse(SnapshotSchema, { completed: { summary: 'A session that completed at step 64, stepped 32 more', value: ex.stepResponse } }),
        },
        '400': problemResponse('Invalid body'), '404': problemResponse('No such session'),
        ...bodyProblems,
        ...authProblems,
        ...idempotencyProblems,
        '409': problemResponse(
          'The session has ended (code session_ended), a completed session would run again past the org\'s hqe_sessions quota (code quota_exceeded), or a request with this Idempotency-Key is in flight (code idempotency_in_flight)',
        ),
        '429': workRefused,
      },
    },
  },
  '/v1/hqe/sessions/{id}/snapshots': {
    get: {
      tags: ['Telemetry'], operationId: 'listHqeSnapshots', summary: 'Page through stored snapshots, oldest first',
      description:
        'The snapshots the session has stored, oldest first (scope hqe.read). Pass `next_cursor` back as `cursor` until it is null; ' +
        'a session still running adds more later, so a client may keep the last cursor and ask again.',
      requestParams: { path: SessionId, query: z.object({ cursor: Cursor, page_size: PageSize.optional() }) },
      responses: {
        '200': { description: 'A page', ...jsonResponse(SnapshotPage, { first: { summary: 'The first page of the example session, page_size=2', value: ex.snapshotPage } }) },
        '400': problemResponse('Bad cursor or page_size'), '404': problemResponse('No such session'), ...authProblems,
      },
    },
  },
  '/v1/hqe/sessions/{id}/stream': {
    get: {
      tags: ['Telemetry'], operationId: 'streamHqeSession',
      summary: 'Server-Sent Events: `snapshot`, `metrics`, `event` and `status` events (JSON data, id = sequence); Last-Event-ID resumes. Once the session has finished (converged, plateau, failed, completed, closed) the stream ends after its last event with `end` {status} (no id)',
      description:
        'Replays the session\'s stored events, then sends new ones live (scope hqe.read); holds a place in the org\'s streams quota while open. ' +
        'Reconnect with Last-Event-ID (EventSource does) to get exactly the events after it. On `end`, close the stream: the session runs no more unless stepped.',
      requestParams: { path: SessionId, header: z.object({ 'Last-Event-ID': z.string().optional().meta({ description: 'The id of the last event received: resume after it.' }) }) },
      responses: {
        '200': sseResponse('text/event-stream', {
          start: { summary: 'From the start', value: ex.sessionStreamStart },
          resume: { summary: 'Resumed with Last-Event-ID: 20, to the end', value: ex.sessionStreamEnd },
        }),
        '404': problemResponse('No such session'), ...authProblems,
        '409': problemResponse('The org has as many open streams as its streams quota allows (code quota_exceeded)'),
      },
    },
  },
};
