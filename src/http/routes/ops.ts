/** Operations: health, readiness, Prometheus metrics, the OpenAPI document and a docs page. */
import Router from '@koa/router';
import { z } from 'zod';
import type { ZodOpenApiPathsObject } from 'zod-openapi';
import type { Registry } from 'prom-client';

export interface OpsDeps {
  health: () => { backend: string; adapter: string; precision: string; store: string };
  ready: () => boolean;
  registry: Registry;
  openApiYaml: () => string;
  docsHtml: () => string;
}

export const Health = z
  .object({ status: z.literal('ok'), backend: z.string(), adapter: z.string(), precision: z.string(), store: z.string(), uptimeSeconds: z.number() })
  .meta({ id: 'Health' });

export function opsRoutes(deps: OpsDeps): Router {
  const router = new Router();
  const started = Date.now();
  let yamlCache: string | null = null;
  let docsCache: string | null = null;
  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok', ...deps.health(), uptimeSeconds: (Date.now() - started) / 1000 };
  });
  router.get('/readyz', (ctx) => {
    const ready = deps.ready();
    ctx.status = ready ? 200 : 503;
    ctx.body = { ready };
  });
  router.get('/metrics', async (ctx) => {
    ctx.type = deps.registry.contentType;
    ctx.body = await deps.registry.metrics();
  });
  router.get('/openapi.yaml', (ctx) => {
    ctx.type = 'application/yaml';
    ctx.body = yamlCache ??= deps.openApiYaml();
  });
  router.get('/docs', (ctx) => {
    ctx.type = 'text/html';
    ctx.body = docsCache ??= deps.docsHtml();
  });
  return router;
}

const noAuth: [] = [];
export const opsPaths: ZodOpenApiPathsObject = {
  '/healthz': {
    get: {
      tags: ['Ops'], summary: 'Liveness, with the engine backend, adapter and store', security: noAuth,
      responses: { '200': { description: 'Up', content: { 'application/json': { schema: Health } } } },
    },
  },
  '/readyz': {
    get: {
      tags: ['Ops'], summary: 'Readiness: 503 while starting or draining', security: noAuth,
      responses: {
        '200': { description: 'Ready', content: { 'application/json': { schema: z.object({ ready: z.boolean() }) } } },
        '503': { description: 'Not ready', content: { 'application/json': { schema: z.object({ ready: z.boolean() }) } } },
      },
    },
  },
  '/metrics': {
    get: {
      tags: ['Ops'], summary: 'Prometheus metrics', security: noAuth,
      responses: { '200': { description: 'Prometheus text format', content: { 'text/plain': { schema: z.string() } } } },
    },
  },
};
