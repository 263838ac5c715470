/**
 * The Koa application: request ids and logs, metrics, problem+json, body limits, OAuth, then the
 * authenticated /v1 API (auth -> rate limit -> idempotency -> routers). Ops routes need no credentials.
 */
import { randomUUID } from 'node:crypto';
import { bodyParser } from '@koa/bodyparser';
import Koa, { type Context, type Next } from 'koa';
import type { Logger } from 'pino';
import type { Scheduler } from '../sim/scheduler.js';
import type { SpaceHub } from '../sim/spaces.js';
import type { AuthStore } from '../store/auth.js';
import type { IdempotencyStore } from '../store/idempotency.js';
import type { SessionStore } from '../store/sessions.js';
import type { UsageStore } from '../store/usage.js';
import type { Quotas, UsageMeter } from '../sim/quotas.js';
import type { WebhookService } from '../webhooks/service.js';
import { authenticate } from './auth.js';
import type { ServerConfig } from './config.js';
import { docsHtml } from './docs.js';
import { idempotency } from './idempotency.js';
import { createMetrics, type StoreStats } from './metrics.js';
import { openApiDocument, openApiYaml } from './openapi.js';
import { Problem, problemMiddleware } from './problem.js';
import { MemoryRateLimiter, rateLimit } from './ratelimit.js';
import { demoRoutes } from './routes/demo.js';
import { hqeRoutes } from './routes/hqe.js';
import { oauthRoutes } from './routes/oauth.js';
import { opsRoutes } from './routes/ops.js';
import { spacesRoutes } from './routes/spaces.js';
import { webhookRoutes } from './routes/webhooks.js';
import type { AppState } from './types.js';

export interface AppDeps {
  config: ServerConfig;
  logger: Logger;
  scheduler: Scheduler;
  sessions: SessionStore;
  authStore: AuthStore;
  idempotencyStore: IdempotencyStore;
  webhooks: WebhookService;
  spaces: SpaceHub;
  /** Per-org quotas and usage metering (docs/tenancy.md). */
  quotas: Quotas;
  usage: UsageMeter;
  usageStore: UsageStore;
  isReady: () => boolean;
  /** Open WebSocket connections (the realtime server is attached to the HTTP server after the app). */
  realtimeConnections?: () => number;
  /** fsyncs of the store's WAL, failed ones, and WAL checkpoints. */
  storeStats?: () => StoreStats;
}

/** The /v1 API reads JSON only: a body of any other type is a 415, not a silently empty request. */
async function requireJson(ctx: Context, next: Next): Promise<void> {
  // A body is chunked or has a non-zero Content-Length; an empty one is no body (routing decides, e.g. 405).
  const hasBody = ctx.get('Transfer-Encoding') !== '' || (ctx.request.length ?? 0) > 0;
  if ((ctx.method === 'POST' || ctx.method === 'PATCH') && hasBody && !ctx.is('application/json')) {
    throw new Problem(415, 'unsupported_media_type', 'Unsupported media type', 'send the body as application/json');
  }
  await next();
}

export function createApp(deps: AppDeps): Koa<AppState> {
  const { config, logger, scheduler } = deps;
  const app = new Koa<AppState>();
  app.proxy = false;
  // Koa's own error printing is replaced by the logger in problemMiddleware.
  app.silent = true;

  const metrics = createMetrics({
    simSteps: () => scheduler.stats().simSteps,
    residentSessions: () => scheduler.stats().sessions,
    residentRuns: () => scheduler.stats().runs,
    webhookQueueDepth: () => deps.webhooks.queueDepth(),
    spaces: () => {
      const s = deps.spaces.stats();
      return { resident: s.spaces, live: s.live };
    },
    realtimeConnections: () => deps.realtimeConnections?.() ?? 0,
    storeStats: () => deps.storeStats?.() ?? { syncs: 0, failures: 0, checkpoints: 0 },
  });

  app.use(async (ctx: Context, next: Next) => {
    const requestId = randomUUID();
    (ctx.state as AppState).requestId = requestId;
    ctx.set('X-Request-Id', requestId);
    const started = performance.now();
    await next();
    logger.info({ requestId, method: ctx.method, path: ctx.path, status: ctx.status, ms: +(performance.now() - started).toFixed(2) }, 'request');
  });
  app.use(metrics.middleware);
  app.use(problemMiddleware((err, ctx) => logger.error({ err, requestId: (ctx.state as AppState).requestId }, 'unhandled error')));
  app.use(
    bodyParser({
      enableTypes: ['json', 'form'],
      jsonLimit: config.maxBodyBytes,
      formLimit: config.maxBodyBytes,
      // Only objects and arrays are JSON documents a route accepts; a bare scalar is malformed here.
      jsonStrict: true,
    }),
  );

  const ops = opsRoutes({
    health: () => ({ ...scheduler.engineInfo, store: 'sqlite' }),
    ready: deps.isReady,
    registry: metrics.registry,
    openApiYaml,
    docsHtml: () => docsHtml(openApiDocument()),
  });
  app.use(ops.routes()).use(ops.allowedMethods());
  const oauth = oauthRoutes({ authStore: deps.authStore, config });
  app.use(oauth.routes()).use(oauth.allowedMethods());
  app.use(demoRoutes().routes()); // the demo pages at /demo (no credentials; web/, docs/web.md)

  const api = [
    hqeRoutes({ config, scheduler, sessions: deps.sessions }),
    webhookRoutes({ webhooks: deps.webhooks }),
    // The spaces contract's path for the same registrations (hqe.* or spaces.* scopes).
    webhookRoutes({ webhooks: deps.webhooks, prefix: '/v1/webhooks' }),
    spacesRoutes({ config, hub: deps.spaces }),
  ];
  const auth = authenticate({ authStore: deps.authStore, config });
  const limiter = rateLimit(new MemoryRateLimiter(config.rateLimit, config.rateWindowSeconds));
  const replay = idempotency(deps.idempotencyStore);
  app.use(async (ctx: Context, next: Next) => {
    if (!ctx.path.startsWith('/v1/')) return next();
    await auth(ctx, () => limiter(ctx, () => requireJson(ctx, () => replay(ctx, next))));
  });
  for (const router of api) app.use(router.routes()).use(router.allowedMethods());
  return app;
}
