/**
 * The Koa application: request ids and logs, metrics, problem+json, body limits, OAuth, then the
 * authenticated /v1 API (auth -> rate limit -> routers; each route: scope -> access -> idempotency -> handler).
 * Ops routes need no credentials.
 */
import { randomUUID } from 'node:crypto';
import Koa, { type Context, type Next } from 'koa';
import type { Logger } from 'pino';
import type { Scheduler } from '../sim/scheduler.js';
import type { SpaceHub } from '../sim/spaces.js';
import type { AuthStore } from '../store/auth.js';
import type { SessionStore } from '../store/sessions.js';
import type { UsageStore } from '../store/usage.js';
import type { Quotas, UsageMeter } from '../sim/quotas.js';
import type { WebhookService } from '../webhooks/service.js';
import { authenticate } from './auth.js';
import { type ServerConfig, SLOW_REQUEST_MS } from './config.js';
import type { CredentialCache } from './credential-cache.js';
import { bodyReader, hasBody } from './body.js';
import { corsMiddleware } from './cors.js';
import type { Idempotency } from './idempotency.js';
import type { ClusterStore } from '../store/leases.js';
import type { StoreKind, StoreStats } from '../store/store.js';
import { createMetrics } from './metrics.js';
import { openApiYaml } from './openapi.js';
import { Problem, problemMiddleware } from './problem.js';
import { rateLimit, type RateLimiter } from './ratelimit.js';
import { demoRoutes } from './routes/demo.js';
import { type ReferenceDeps, referenceRoutes } from './routes/reference.js';
import { hqeRoutes } from './routes/hqe.js';
import { oauthRoutes } from './routes/oauth.js';
import { type Connections, opsRoutes } from './routes/ops.js';
import { clusterRoutes } from './routes/cluster.js';
import { type SpaceStreams, spacesRoutes } from './routes/spaces.js';
import { usageRoutes } from './routes/usage.js';
import { webhookRoutes } from './routes/webhooks.js';
import type { CredentialWatch } from './revocations.js';
import type { AppState } from './types.js';

export interface AppDeps {
  config: ServerConfig;
  logger: Logger;
  scheduler: Scheduler;
  sessions: SessionStore;
  authStore: AuthStore;
  /** Idempotency-Key replay, a route middleware placed after each route's scope and access checks. */
  idempotency: Idempotency;
  /** Ends open streams whose credential is revoked. */
  credentials: CredentialWatch;
  /** What authenticate asks instead of authStore: store answers trusted for RESONANCE_AUTH_CACHE_MS. */
  credentialCache: CredentialCache;
  webhooks: WebhookService;
  spaces: SpaceHub;
  /** The spaces' live feeds, shared by WebSocket and SSE subscribers (the realtime server). */
  spaceStreams: SpaceStreams;
  /** Per-org quotas and usage metering (docs/tenancy.md). */
  quotas: Quotas;
  usage: UsageMeter;
  usageStore: UsageStore;
  /** Per-credential budget of requests and work (shared with the realtime server's proposals). */
  rateLimiter: RateLimiter;
  isReady: () => boolean;
  /** This node's name (RESONANCE_NODE_ID; every response carries it in X-Resonance-Node). */
  nodeId: () => string;
  storeKind: StoreKind;
  /** Whether the store and the broker answer (/healthz, /readyz). */
  connections: () => Promise<Connections>;
  /** Nodes and ownership leases (GET /v1/cluster). */
  cluster: ClusterStore;
  leaseTtlMs: number;
  /** Open WebSocket connections (the realtime server is attached to the HTTP server after the app). */
  realtimeConnections?: () => number;
  /**
   * The realtime protocol's contract for /docs/realtime and /asyncapi.yaml (src/realtime/asyncapi.ts),
   * passed in: the realtime layer builds on this one, not the other way round.
   */
  realtimeContract: ReferenceDeps['realtimeContract'];
  /** fsyncs of the store's WAL, failed ones, and WAL checkpoints. */
  storeStats?: () => StoreStats;
}

/** The /v1 API reads JSON only: a body of any other type is a 415, not a silently empty request. */
function requireJson(ctx: Context, next: Next): Promise<void> {
  // The usual header is exactly `application/json`: taken as it is, without parsing the media type.
  const json = (type: string): boolean => type === 'application/json' || Boolean(ctx.is('application/json'));
  // An empty body is no body: routing decides (e.g. 405).
  if ((ctx.method === 'POST' || ctx.method === 'PATCH') && hasBody(ctx) && !json(ctx.get('content-type'))) {
    throw new Problem(415, 'unsupported_media_type', 'Unsupported media type', 'send the body as application/json');
  }
  return next();
}

/** `middlewares`, in order, for the requests outside /v1 only (one path check for all of them). */
function outsideV1<C extends Context>(...middlewares: Array<(ctx: C, next: Next) => unknown>): (ctx: C, next: Next) => unknown {
  return (ctx, next) => {
    if (ctx.path.startsWith('/v1/')) return next();
    const run = (i: number): unknown => {
      const middleware = middlewares[i];
      return middleware ? middleware(ctx, () => Promise.resolve(run(i + 1))) : next();
    };
    return run(0);
  };
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
    storeStats: () => deps.storeStats?.() ?? { syncs: 0, failures: 0, checkpoints: 0, truncations: 0 },
    usage: () => deps.usage.snapshot(),
  });

  // First: a request id, this node's name, then (after everything) the metrics and the access log line
  // (RESONANCE_ACCESS_LOG). One middleware for all of them keeps the path of every request short.
  const logged = (status: number, ms: number): boolean =>
    config.accessLog === 'all' || (config.accessLog === 'errors' && (status >= 400 || ms >= SLOW_REQUEST_MS));
  app.use(async (ctx: Context, next: Next) => {
    const requestId = randomUUID();
    (ctx.state as AppState).requestId = requestId;
    // Which node answered: behind a load balancer, the one to look at in its logs.
    ctx.set('X-Request-Id', requestId);
    ctx.set('X-Resonance-Node', deps.nodeId());
    const started = performance.now();
    try {
      await next();
    } finally {
      const ms = performance.now() - started;
      const route = (ctx as Context & { _matchedRoute?: string | RegExp })._matchedRoute;
      metrics.record(ctx.method, route === undefined ? 'unmatched' : String(route), ctx.status, ms / 1000);
      if (logged(ctx.status, ms)) logger.info({ requestId, method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(ms * 100) / 100 }, 'request');
    }
  });
  app.use(problemMiddleware((err, ctx) => logger.error({ err, requestId: (ctx.state as AppState).requestId }, 'unhandled error')));
  // Pages on the allowed origins (RESONANCE_CORS_ORIGINS): preflights are answered here, before the body and auth.
  const cors = corsMiddleware(config.corsOrigins);
  if (cors) app.use(cors);
  // Body reading (body.ts): unsupported codings and oversized declared lengths are refused before reading;
  // what cannot be decoded or parsed, nests too deeply or names __proto__ is a 4xx, never a 500.
  app.use(bodyReader(config.maxBodyBytes));

  const ops = opsRoutes({
    health: () => ({ ...scheduler.engineInfo, store: deps.storeKind, node: deps.nodeId() }),
    connections: deps.connections,
    ready: deps.isReady,
    registry: metrics.registry,
    openApiYaml,
    metrics: { token: config.metricsToken, listenHost: config.host },
  });
  const oauth = oauthRoutes({ authStore: deps.authStore, config });
  // The routes outside /v1: ops, OAuth and the demo pages at /demo (no credentials; web/, docs/web.md). A /v1
  // request skips them: each router matches every request against all its routes (and parses Host) first.
  // The reference pages (/docs, /docs/realtime, /docs/errors, /problems/{code}, /asyncapi.yaml).
  const reference = referenceRoutes({ realtimeContract: deps.realtimeContract });
  app.use(outsideV1(reference.routes(), ops.routes(), ops.allowedMethods(), oauth.routes(), oauth.allowedMethods(), demoRoutes().routes()));

  const api = [
    hqeRoutes({ config, scheduler, sessions: deps.sessions, idempotent: deps.idempotency.middleware, credentials: deps.credentials, quotas: deps.quotas, usage: deps.usage }),
    webhookRoutes({ webhooks: deps.webhooks, idempotent: deps.idempotency.middleware }),
    // The Spaces API's path for the same registrations (hqe.* or spaces.* scopes).
    webhookRoutes({ webhooks: deps.webhooks, prefix: '/v1/webhooks', idempotent: deps.idempotency.middleware }),
    spacesRoutes({ config, hub: deps.spaces, idempotent: deps.idempotency.middleware, credentials: deps.credentials, usage: deps.usage, quotas: deps.quotas, streams: deps.spaceStreams }),
    usageRoutes({ usage: deps.usage, usageStore: deps.usageStore, quotas: deps.quotas }),
    clusterRoutes({ cluster: deps.cluster, nodeId: deps.nodeId, leaseTtlMs: deps.leaseTtlMs }),
  ];
  const auth = authenticate({ authStore: deps.credentialCache, config });
  const limiter = rateLimit(deps.rateLimiter);
  app.use((ctx: Context, next: Next) => {
    if (!ctx.path.startsWith('/v1/')) return next();
    return auth(ctx, () => limiter(ctx, () => requireJson(ctx, next)));
  });
  for (const router of api) app.use(router.routes()).use(router.allowedMethods());
  return app;
}
