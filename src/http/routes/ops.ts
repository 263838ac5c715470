/** Operations: health, readiness, Prometheus metrics, the OpenAPI document, and the root's redirect to /demo (the reference pages: reference.ts). */
import { createHash, timingSafeEqual } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import Router from '@koa/router';
import { z } from 'zod';
import type { ZodOpenApiPathsObject } from 'zod-openapi';
import type { Registry } from 'prom-client';
import { Problem } from '../problem.js';
import { jsonResponse, problemResponse } from '../schemas.js';
import * as ex from '../openapi-examples.js';

/** Reachability of the store and the broker, checked when asked (a load balancer asks every few seconds). */
export interface Connections {
  store: { kind: string; ok: boolean };
  broker: { kind: string; ok: boolean };
}

export interface OpsDeps {
  health: () => { backend: string; adapter: string; precision: string; store: string; node: string };
  connections: () => Promise<Connections>;
  /** False while draining (SIGTERM). */
  ready: () => boolean;
  registry: Registry;
  openApiYaml: () => string;
  /** Who may read /metrics (see metricsAccess). */
  metrics: MetricsAccess;
}

/**
 * /metrics tells whoever reads it about traffic and tenants, so it is not public by default: with a token
 * it needs `Authorization: Bearer <token>`; without one it answers only when the server listens on a
 * loopback address (then only this host can reach it), and is a 404 otherwise.
 */
export interface MetricsAccess {
  token?: string | undefined;
  /** The address the server listens on (RESONANCE_HOST / --host). */
  listenHost: string;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Whether a listen address only accepts connections from this host (127.0.0.0/8, ::1 and IPv4-mapped forms, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  const family = isIP(h);
  return family !== 0 && LOOPBACK.check(h, family === 6 ? 'ipv6' : 'ipv4');
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Throws the problem that keeps the caller out of /metrics, if any. */
function checkMetricsAccess(access: MetricsAccess, authorization: string): void {
  if (access.token === undefined) {
    if (!isLoopbackHost(access.listenHost)) throw new Problem(404, 'not_found', 'Not found', 'no route for GET /metrics');
    return;
  }
  const challenge = { headers: { 'WWW-Authenticate': 'Bearer realm="metrics"' } };
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match) throw new Problem(401, 'unauthorized', 'Unauthorized', 'GET /metrics needs Authorization: Bearer <RESONANCE_METRICS_TOKEN>', challenge);
  // Compared as digests: constant time, whatever the lengths.
  if (!timingSafeEqual(digest(match[1]!), digest(access.token))) throw new Problem(401, 'invalid_credentials', 'Invalid credentials', 'the metrics token is wrong', challenge);
}

const Connection = z.object({ kind: z.string(), ok: z.boolean() });
const ConnectionsSchema = z
  .object({ store: Connection, broker: Connection })
  .meta({ description: 'The store (sqlite or postgres) and the broker (memory or redis), and whether each answers now.' });

export const Health = z
  .object({
    status: z.literal('ok'),
    node: z.string().meta({ description: 'This node\'s id (also in the X-Resonance-Node header).' }),
    backend: z.string().meta({ description: 'The engine: cpu or webgpu.' }),
    adapter: z.string().meta({ description: 'The engine in words: the GPU adapter, or the CPU engine and its threads.' }),
    precision: z.string().meta({ description: 'The engine\'s precision: f32 or f64.' }),
    store: z.string().meta({ description: 'sqlite or postgres.' }),
    connections: ConnectionsSchema,
    uptimeSeconds: z.number(),
  })
  .meta({ id: 'Health', description: 'The process is alive (always 200 while it answers); `connections` says what it can reach.' });

export const Readiness = z
  .object({
    ready: z.boolean(),
    draining: z.boolean().meta({ description: 'The node is shutting down (SIGTERM): it finishes what it has and takes nothing new.' }),
    connections: ConnectionsSchema,
  })
  .meta({ id: 'Readiness', description: 'Ready: not draining, and both the store and the broker answer.' });

export function opsRoutes(deps: OpsDeps): Router {
  const router = new Router();
  const started = Date.now();
  let yamlCache: string | null = null;
  router.get('/healthz', async (ctx) => {
    ctx.body = { status: 'ok', ...deps.health(), connections: await deps.connections(), uptimeSeconds: (Date.now() - started) / 1000 } satisfies z.input<typeof Health>;
  });
  router.get('/readyz', async (ctx) => {
    const connections = await deps.connections();
    const draining = !deps.ready();
    const ready = !draining && connections.store.ok && connections.broker.ok;
    ctx.status = ready ? 200 : 503;
    ctx.body = { ready, draining, connections } satisfies z.input<typeof Readiness>;
  });
  router.get('/metrics', async (ctx) => {
    checkMetricsAccess(deps.metrics, ctx.get('Authorization'));
    ctx.type = deps.registry.contentType;
    ctx.body = await deps.registry.metrics();
  });
  router.get('/openapi.yaml', (ctx) => {
    ctx.type = 'application/yaml';
    ctx.body = yamlCache ??= deps.openApiYaml();
  });
  // The root is where a person's browser lands first: the demo pages, which link the API reference.
  router.get('/', (ctx) => {
    ctx.redirect('/demo');
  });
  return router;
}

const noAuth: [] = [];
export const opsPaths: ZodOpenApiPathsObject = {
  '/healthz': {
    get: {
      tags: ['Ops'], operationId: 'getHealth', summary: 'Liveness, with the node, engine backend, adapter, store, and what the node can reach', security: noAuth,
      description:
        'No credentials, not rate limited. Always 200 while the process answers, whatever it can reach: use it for liveness probes, and read `connections` to see whether the store and the broker answer. ' +
        'For load balancers, use /readyz.',
      responses: { '200': { description: 'Up', ...jsonResponse(Health, { up: { summary: 'A node on the CPU engine with SQLite', value: ex.health } }) } },
    },
  },
  '/readyz': {
    get: {
      tags: ['Ops'], operationId: 'getReadiness', summary: 'Readiness: 503 while draining, or while the store or the broker cannot be reached', security: noAuth,
      description: 'No credentials, not rate limited. A load balancer sends traffic only while this is 200: a node shutting down (while it drains), or one that cannot reach its store or broker, answers 503.',
      responses: {
        '200': { description: 'Ready', ...jsonResponse(Readiness, { ready: { summary: 'Ready', value: ex.ready } }) },
        '503': { description: 'Not ready', ...jsonResponse(Readiness, { draining: { summary: 'Shutting down', value: ex.draining } }) },
      },
    },
  },
  '/metrics': {
    get: {
      tags: ['Ops'], operationId: 'getMetrics',
      summary: 'Prometheus metrics',
      description:
        'With RESONANCE_METRICS_TOKEN set: needs `Authorization: Bearer <token>`. Without it: answers only when the server listens on a loopback address, else 404. ' +
        'Request counts and latencies, resident runs, sessions and spaces, realtime connections, the webhook queue, and usage per org (resonance_usage_total): for a Prometheus scraper, not for API clients.',
      security: noAuth,
      responses: {
        '200': { description: 'Prometheus text format', content: { 'text/plain': { schema: z.string(), examples: { excerpt: { summary: 'An excerpt', value: ex.prometheusText } } } } },
        '401': problemResponse('RESONANCE_METRICS_TOKEN is set and the request lacks it (code unauthorized) or has another (code invalid_credentials)'),
        '404': problemResponse('No token is configured and the server listens on a non-loopback address (code not_found)'),
      },
    },
  },
};
