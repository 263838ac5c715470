/**
 * The org's metered usage and its quotas (docs/tenancy.md): `GET /v1/usage?from=&to=&granularity=hour|day`.
 * Any org credential (API key or OAuth token) with a read scope; a space session token speaks for one
 * member of one space, not for the org, and is refused like anywhere outside its space (authenticate).
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { ZodOpenApiPathsObject } from 'zod-openapi';
import { zodErrors } from '../../model/normalize.js';
import { QUOTA_NAMES, QUOTAS, USAGE_METRICS, type UsageMetric } from '../../model/tenancy.js';
import type { Quotas, UsageMeter } from '../../sim/quotas.js';
import type { UsageStore } from '../../store/usage.js';
import { single } from '../paging.js';
import { orgPrincipal } from '../org-principal.js';
import { validationProblem } from '../problem.js';
import { authProblems, jsonResponse, problemResponse, RateLimitHeaders } from '../schemas.js';
import * as ex from '../openapi-examples.js';

export interface UsageDeps {
  usage: UsageMeter;
  usageStore: UsageStore;
  quotas: Quotas;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** The longest range one request may cover, per granularity (a bounded answer). */
const MAX_RANGE_MS = { hour: 31 * DAY_MS, day: 400 * DAY_MS } as const;

const Metrics = z.object(Object.fromEntries(USAGE_METRICS.map((m) => [m, z.number()])) as Record<UsageMetric, z.ZodNumber>);

export const UsageQuery = z.strictObject({
  from: z.iso.datetime({ offset: true }).optional().meta({ description: 'Start (inclusive), RFC 3339; rounded down to the bucket. Default: `to` minus 24 h (hour) or 30 days (day).' }),
  to: z.iso.datetime({ offset: true }).optional().meta({ description: 'End (exclusive), RFC 3339; rounded up to the bucket. Default: now.' }),
  granularity: z.enum(['hour', 'day']).default('hour').meta({ description: 'Bucket size (UTC). A range covers at most 31 days of hours or 400 days.' }),
});

export const UsageReport = z
  .object({
    orgId: z.string(),
    from: z.string().meta({ format: 'date-time', description: 'Start of the range, rounded down to the bucket.' }),
    to: z.string().meta({ format: 'date-time', description: 'End of the range (exclusive), rounded up to the bucket.' }),
    granularity: z.enum(['hour', 'day']).meta({ description: 'The bucket size.' }),
    buckets: z
      .array(z.object({ start: z.string().meta({ format: 'date-time' }), ...Metrics.shape }))
      .meta({ description: 'Buckets with any usage, oldest first.' }),
    totals: Metrics.meta({ description: 'Sums over the range.' }),
    storageBytes: z.number().int().meta({ description: 'Bytes stored now: HQE session events and space delta logs.' }),
    quotas: z
      .record(z.string(), z.object({ kind: z.enum(['cap', 'rate']), limit: z.number(), windowSeconds: z.number().int().optional(), description: z.string() }))
      .meta({ description: 'The org\'s quotas (defaults, or overrides set with `resonance orgs set-quota`).' }),
  })
  .meta({
    id: 'UsageReport',
    description:
      'Metered usage per bucket. space_minutes: minutes of live (ticking) spaces; deltas: space deltas accepted; bytes_sent: WebSocket and SSE bytes; ' +
      'telemetry_frames: telemetry frames sent; work_units: HQE work charged (steps x (restarts+1) x k^2 / RESONANCE_WORK_UNIT); ' +
      'storage_bytes_written: bytes of session events and space deltas stored.',
  });

/** Every query parameter as one string (a repeated one is a 400); unknown ones reach the strict schema. */
function singleQuery(ctx: Context): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of Object.keys(ctx.query)) {
    const value = single(ctx, name);
    if (value !== undefined) out[name] = value;
  }
  return out;
}

const zero = (): Record<UsageMetric, number> => Object.fromEntries(USAGE_METRICS.map((m) => [m, 0])) as Record<UsageMetric, number>;

export function usageRoutes(deps: UsageDeps): Router {
  const router = new Router();

  router.get('/v1/usage', async (ctx) => {
    const { orgId } = orgPrincipal(ctx, 'reading usage');
    const parsed = UsageQuery.safeParse(singleQuery(ctx));
    if (!parsed.success) {
      throw validationProblem(zodErrors(parsed.error));
    }
    const { granularity } = parsed.data;
    const size = granularity === 'hour' ? HOUR_MS : DAY_MS;
    const to = Math.ceil((parsed.data.to ? Date.parse(parsed.data.to) : Date.now() + 1) / size) * size;
    const from = Math.floor((parsed.data.from ? Date.parse(parsed.data.from) : to - (granularity === 'hour' ? DAY_MS : 30 * DAY_MS)) / size) * size;
    if (from >= to) throw validationProblem([{ pointer: '/from', code: 'invalid_range', message: 'from must be before to' }]);
    if (to - from > MAX_RANGE_MS[granularity]) {
      throw validationProblem([{ pointer: '/from', code: 'range_too_long', message: `a ${granularity} report covers at most ${MAX_RANGE_MS[granularity] / DAY_MS} days` }]);
    }
    // What was metered since the last periodic write is part of the answer.
    await deps.usage.flush();
    const rows = await deps.usageStore.usage(orgId, from, to, granularity);
    const buckets = new Map<number, Record<UsageMetric, number>>();
    const totals = zero();
    for (const r of rows) {
      let b = buckets.get(r.start);
      if (!b) buckets.set(r.start, (b = zero()));
      b[r.metric] += r.value;
      totals[r.metric] += r.value;
    }
    const quotas: Record<string, { kind: 'cap' | 'rate'; limit: number; windowSeconds?: number; description: string }> = {};
    for (const name of QUOTA_NAMES) {
      const spec: { kind: 'cap' | 'rate'; windowSeconds?: number; description: string } = QUOTAS[name];
      quotas[name] = {
        kind: spec.kind, limit: await deps.quotas.limit(orgId, name), description: spec.description,
        ...(spec.windowSeconds !== undefined ? { windowSeconds: spec.windowSeconds } : {}),
      };
    }
    ctx.body = {
      orgId,
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      granularity,
      buckets: [...buckets].map(([start, values]) => ({ start: new Date(start).toISOString(), ...values })),
      totals,
      storageBytes: await deps.usageStore.storageBytes(orgId),
      quotas,
    } satisfies z.input<typeof UsageReport>;
  });

  return router;
}

export const usagePaths: ZodOpenApiPathsObject = {
  '/v1/usage': {
    get: {
      tags: ['Usage'], operationId: 'getUsage',
      summary: "The caller's org's metered usage per hour or day, and its quotas (addition; any org credential with hqe.read or spaces.read)",
      description:
        'What the org has used, per UTC hour or day, with totals, bytes stored now and every quota with its limit (an API key or OAuth token with hqe.read or spaces.read; a session token is refused). ' +
        'Buckets without usage are left out. Use it for billing, and to see how close the org is to a quota before a 409 or 429 quota_exceeded.',
      requestParams: { query: UsageQuery },
      responses: {
        '200': {
          description: 'Usage report', headers: RateLimitHeaders,
          ...jsonResponse(UsageReport, { day: { summary: 'granularity=day: the last 30 days', value: ex.usageReport } }),
        },
        '400': problemResponse('Bad from/to/granularity, a repeated parameter, or a range too long'),
        ...authProblems,
      },
    },
  },
};
