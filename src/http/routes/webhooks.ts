/** Webhook registrations (`/v1/hqe/webhooks` and `/v1/webhooks`, create/list/get/delete) and the event payload (docs/webhooks.md). */
import type {} from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context, Next } from 'koa';
import { z } from 'zod';
import type { ZodOpenApiPathsObject } from 'zod-openapi';
import { type FieldError, toPointer } from '../../model/normalize.js';
import { WEBHOOK_EVENT_TYPES, type WebhookService } from '../../webhooks/service.js';
import { parseTargetUrl } from '../../webhooks/targets.js';
import { Problem, validationProblem } from '../problem.js';
import { authProblems, Cursor, encodeCursor, jsonRequest, jsonResponse, PageSize, problemResponse, bodyProblems, idempotencyProblems } from '../schemas.js';
import * as ex from '../openapi-examples.js';
import { noIdempotency, type RouteMiddleware } from '../idempotency.js';
import { pageQuery } from '../paging.js';
import type { AppState, Principal, Scope } from '../types.js';
import { ROLES, SPACE_STATUSES } from '@resonance/sdk/protocol';

// ---- schemas ----

export const WebhookEventTypeSchema = z.enum(WEBHOOK_EVENT_TYPES).meta({
  id: 'WebhookEventType',
  description: 'hqe.* for HQE sessions of the org (plateau, converged, failed); the others for its spaces (docs/webhooks.md "Space events").',
});

export const WebhookCreateRequest = z
  .strictObject({
    url: z
      .string()
      .max(2048)
      .superRefine((value, ctx) => {
        const parsed = parseTargetUrl(value);
        if (!parsed.ok) ctx.addIssue({ code: 'custom', message: `url ${parsed.message}`, params: { code: 'invalid_url' } });
      })
      .meta({ format: 'uri', description: 'http(s) URL of the receiver; private, loopback and link-local targets are refused (webhook_target_forbidden).' }),
    secret: z
      .string()
      .min(16)
      .max(256)
      .optional()
      .meta({ description: 'HMAC key for X-RS-Signature. Omit it and the server generates one, returned once in the 201 body.' }),
    events: z
      .array(WebhookEventTypeSchema)
      .min(1)
      .max(WEBHOOK_EVENT_TYPES.length)
      .superRefine((events, ctx) => {
        const seen = new Map<string, number>();
        events.forEach((e, i) => {
          const first = seen.get(e);
          if (first !== undefined) ctx.addIssue({ code: 'custom', path: [i], message: `${e} repeats /events/${first}`, params: { code: 'duplicate_event' } });
          else seen.set(e, i);
        });
      })
      .meta({ description: 'Event types to receive; non-empty, no repeats.' }),
  })
  .meta({ id: 'WebhookCreateRequest', description: 'A new registration: where to deliver, which events, and optionally the signing secret.' });

export const WebhookSchema = z
  .object({
    id: z.string(),
    url: z.string().meta({ format: 'uri' }),
    events: z.array(WebhookEventTypeSchema).meta({ description: 'The event types delivered to it.' }),
    createdAt: z.string().meta({ format: 'date-time' }),
  })
  .meta({ id: 'Webhook', description: 'A registration; its secret is never returned.' });

export const WebhookCreated = WebhookSchema.extend({
  secret: z.string().optional().meta({ description: 'Only when the server generated the secret: shown this once, store it.' }),
}).meta({ id: 'WebhookCreated', description: 'The registration just made, with the generated secret when the request had none.' });

export const WebhookPage = z
  .object({ items: z.array(WebhookSchema), next_cursor: z.string().nullable().meta({ description: 'Pass as `cursor` for the next page; null on the last.' }) })
  .meta({ id: 'WebhookPage', description: 'A page of registrations, oldest first.' });

export const WebhookEventSchema = z
  .object({
    id: z.string().meta({ description: 'Event id: the same for every webhook the event went to, and across retries.' }),
    type: WebhookEventTypeSchema,
    createdAt: z.string().meta({ format: 'date-time', description: 'When the event happened (deliveries are not ordered: order by this).' }),
    data: z
      .record(z.string(), z.unknown())
      .meta({
        description:
          'For hqe.* events: sessionId, type (plateau|converged|failed), step, restart and metrics at that step. ' +
          'For space events: see SpaceWebhookEvent.',
      }),
  })
  .meta({ id: 'WebhookEvent', description: 'Body POSTed to receivers.' });

const SPACE_EVENT_TYPES = WEBHOOK_EVENT_TYPES.filter((t) => !t.startsWith('hqe.'));

export const SpaceWebhookEventData = z
  .object({
    spaceId: z.string(),
    version: z.number().int().optional().meta({ description: 'space.updated, basis.changed, plateau, collapse: the space version.' }),
    status: z.enum(SPACE_STATUSES).optional().meta({ description: 'space.updated after a status change.' }),
    epoch: z.number().int().optional().meta({ description: 'basis.changed: the new epoch.' }),
    primes: z.array(z.number().int()).optional().meta({ description: 'basis.changed: the new ordered basis.' }),
    t: z.number().int().optional().meta({ description: 'plateau, collapse: tick within the epoch.' }),
    metrics: z.record(z.string(), z.number().nullable()).nullable().optional().meta({ description: 'plateau, collapse: the metrics at that tick.' }),
    memberId: z.string().optional().meta({ description: 'member.joined, member.left.' }),
    userId: z.string().optional().meta({ description: 'member.joined.' }),
    role: z.enum(ROLES).optional().meta({ description: 'member.joined.' }),
    displayName: z.string().nullable().optional().meta({ description: 'member.joined.' }),
    reason: z.enum(['removed', 'disconnected', 'expired']).optional().meta({ description: 'member.left.' }),
  })
  .meta({ id: 'SpaceWebhookEventData', description: 'The `data` of a space event: `spaceId` always, the other fields by event type.' });

export const SpaceWebhookEventSchema = WebhookEventSchema.extend({
  type: z.enum(SPACE_EVENT_TYPES as [string, ...string[]]).meta({ description: 'A space event type.' }),
  data: SpaceWebhookEventData,
}).meta({ id: 'SpaceWebhookEvent', description: 'Body POSTed to receivers for a space event (space.updated, basis.changed, plateau, collapse, member.joined, member.left).' });

const WebhookId = z.object({ id: z.string().meta({ description: 'Webhook id' }) });
const CursorShape = z.object({ t: z.number().int(), id: z.string() });

// ---- helpers ----

function principalOf(ctx: Context): Principal {
  const p = (ctx.state as AppState).principal;
  if (!p) throw new Problem(401, 'unauthorized', 'Unauthorized', 'credentials required');
  return p;
}

/** Tiny scope guard (principal set upstream): any one of `scopes`. */
const needScope = (...scopes: Scope[]) => async (ctx: Context, next: Next): Promise<void> => {
  const held = principalOf(ctx).scopes;
  if (!scopes.some((s) => held.has(s))) throw new Problem(403, 'insufficient_scope', 'Insufficient scope', `this operation needs the ${scopes.join(' or ')} scope`);
  await next();
};

/**
 * Every zod issue as a FieldError; unknown fields get one entry each, at their own pointer. A field of the
 * wrong type reports only that (zod 4 still runs length checks on, e.g., a string where an array belongs).
 */
export function fieldErrors(error: z.ZodError): FieldError[] {
  const wrongType = new Set(error.issues.filter((i) => i.code === 'invalid_type').map((i) => toPointer(i.path)));
  const issues = error.issues.filter((i) => i.code === 'invalid_type' || !wrongType.has(toPointer(i.path)));
  return issues.flatMap((issue): FieldError[] => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ pointer: toPointer([...issue.path, key]), code: 'unknown_field', message: `unknown field ${key}` }));
    }
    const custom = issue.code === 'custom' ? (issue.params as { code?: unknown } | undefined)?.code : undefined;
    return [{ pointer: toPointer(issue.path), code: typeof custom === 'string' ? custom : issue.code, message: issue.message }];
  });
}

// ---- routes ----

/**
 * Mounted twice over the same registrations: `/v1/hqe/webhooks` (the HQE contract; hqe.* scopes) and
 * `/v1/webhooks` (the Spaces API's path; hqe.* or spaces.* scopes). Every event type can be chosen at both.
 */
export function webhookRoutes(deps: { webhooks: WebhookService; prefix?: '/v1/hqe/webhooks' | '/v1/webhooks'; idempotent?: RouteMiddleware }): Router {
  const { webhooks, idempotent = noIdempotency } = deps;
  const prefix = deps.prefix ?? '/v1/hqe/webhooks';
  const router = new Router({ prefix });
  const spaces = prefix === '/v1/webhooks';
  const read: Scope[] = spaces ? ['hqe.read', 'spaces.read'] : ['hqe.read'];
  const write: Scope[] = spaces ? ['hqe.write', 'spaces.write'] : ['hqe.write'];

  router.post('/', needScope(...write), idempotent, async (ctx) => {
    const { orgId } = principalOf(ctx);
    const parsed = WebhookCreateRequest.safeParse(ctx.request.body);
    if (!parsed.success) throw validationProblem(fieldErrors(parsed.error));
    const created = await webhooks.register(orgId, parsed.data);
    ctx.status = 201;
    ctx.set('Location', `${prefix}/${encodeURIComponent(created.id)}`);
    ctx.body = created;
  });

  router.get('/', needScope(...read), async (ctx) => {
    const { orgId } = principalOf(ctx);
    const { size, cursor } = pageQuery(ctx, CursorShape);
    const page = await webhooks.list(orgId, { after: cursor ? { createdAt: cursor.t, id: cursor.id } : undefined, limit: size });
    ctx.body = { items: page.items, next_cursor: page.nextAfter ? encodeCursor({ t: page.nextAfter.createdAt, id: page.nextAfter.id }) : null };
  });

  router.get('/:id', needScope(...read), async (ctx) => {
    ctx.body = await webhooks.get(principalOf(ctx).orgId, ctx.params.id ?? '');
  });

  router.delete('/:id', needScope(...write), async (ctx) => {
    await webhooks.delete(principalOf(ctx).orgId, ctx.params.id ?? '');
    ctx.status = 204;
  });

  return router;
}

// ---- OpenAPI ----

/** operationIds per mount: the Spaces API's path gets the plain names. */
const OPERATION_IDS = {
  '/v1/hqe/webhooks': { create: 'createHqeWebhook', list: 'listHqeWebhooks', get: 'getHqeWebhook', delete: 'deleteHqeWebhook' },
  '/v1/webhooks': { create: 'createWebhook', list: 'listWebhooks', get: 'getWebhook', delete: 'deleteWebhook' },
} as const;

function pathsAt(prefix: '/v1/hqe/webhooks' | '/v1/webhooks'): ZodOpenApiPathsObject {
  const spaces = prefix === '/v1/webhooks';
  const ids = OPERATION_IDS[prefix];
  const scopes = spaces ? 'hqe.write or spaces.write' : 'hqe.write';
  const readScopes = spaces ? 'hqe.read or spaces.read' : 'hqe.read';
  const same = spaces ? ' The same registrations as /v1/hqe/webhooks (the Spaces API\'s path).' : ' The same registrations as /v1/webhooks.';
  const created = spaces ? ex.spaceWebhookCreated : ex.hqeWebhook;
  return {
    [prefix]: {
      post: {
        tags: ['Webhooks'], operationId: ids.create,
        summary: spaces ? 'Register a webhook for space (and HQE) events' : 'Register a webhook for HQE (and space) events',
        description:
          `Scope ${scopes}; events: hqe.plateau, hqe.converged, hqe.failed (HQE sessions) and space.updated, basis.changed, plateau, collapse, ` +
          'member.joined, member.left (spaces of the org). Deliveries are signed (X-RS-Signature, see docs/webhooks.md), at least once, ' +
          `retried with exponential backoff for 24 h; the org's webhooks quota caps registrations. Store the secret: it is shown only in this answer, and only when the server generated it.${same}`,
        requestBody: {
          required: true,
          ...jsonRequest(WebhookCreateRequest, spaces
            ? { space: { summary: 'Space events; the server generates the secret', value: ex.spaceWebhookRequest } }
            : { hqe: { summary: 'HQE session events, with a secret of your own', value: ex.hqeWebhookRequest } }),
        },
        responses: {
          '201': {
            description: 'Webhook registered (secret present only when generated)',
            headers: z.object({ Location: z.string().meta({ description: `The webhook: ${prefix}/{id}.` }) }),
            ...jsonResponse(WebhookCreated, {
              [spaces ? 'space' : 'hqe']: { summary: spaces ? 'The generated secret, shown once' : 'The secret was sent, so none is returned', value: created },
            }),
          },
          '400': problemResponse('Invalid body (every failing field by JSON pointer), or a target that is not public (code webhook_target_forbidden) or does not resolve (webhook_target_unresolvable)'),
          ...bodyProblems,
          ...authProblems,
          ...idempotencyProblems,
          '409': problemResponse('The org has as many webhooks as its webhooks quota allows (code quota_exceeded), or a request with this Idempotency-Key is in flight (code idempotency_in_flight)'),
        },
      },
      get: {
        tags: ['Webhooks'], operationId: ids.list,
        summary: `The org's webhooks, oldest first (scope ${readScopes})`,
        description: `Lists the org's registrations, oldest first, without their secrets (scope ${readScopes}). Pass \`next_cursor\` back as \`cursor\` until it is null.`,
        requestParams: { query: z.object({ cursor: Cursor, page_size: PageSize.optional() }) },
        responses: {
          '200': { description: 'A page', ...jsonResponse(WebhookPage, { two: { summary: 'Two registrations, the last page', value: ex.webhookPage } }) },
          '400': problemResponse('Bad cursor or page_size'), ...authProblems,
        },
      },
    },
    [`${prefix}/{id}`]: {
      get: {
        tags: ['Webhooks'], operationId: ids.get,
        summary: 'One webhook',
        description: `One registration, without its secret (scope ${readScopes}). Another org's webhook is a 404.`,
        requestParams: { path: WebhookId },
        responses: {
          '200': { description: 'Webhook', ...jsonResponse(WebhookSchema, { hqe: { summary: 'An HQE webhook', value: ex.hqeWebhook } }) },
          '404': problemResponse('No such webhook (or not yours)'), ...authProblems,
        },
      },
      delete: {
        tags: ['Webhooks'], operationId: ids.delete,
        summary: 'Delete a webhook; its pending deliveries are cancelled',
        description: `Deletes the registration (scope ${scopes}) and frees its place in the org's webhooks quota; deliveries not yet made are cancelled.`,
        requestParams: { path: WebhookId },
        responses: { '204': { description: 'Deleted' }, '404': problemResponse('No such webhook (or not yours)'), ...authProblems },
      },
    },
  };
}

export const webhookPaths: ZodOpenApiPathsObject = { ...pathsAt('/v1/hqe/webhooks'), ...pathsAt('/v1/webhooks') };

/** An event type as an operationId: hqe.converged -> onHqeConverged, member.left -> onMemberLeft. */
const eventOperationId = (type: string): string => 'on' + type.split('.').map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');

/** The outgoing requests, for the OpenAPI 3.1 `webhooks` section of the document. */
export const webhookEventPaths: ZodOpenApiPathsObject = Object.fromEntries(
  WEBHOOK_EVENT_TYPES.map((type) => [
    type,
    {
      post: {
        tags: ['Webhooks'], operationId: eventOperationId(type),
        summary: `${type} event delivered to a registered URL`,
        description:
          'What the server POSTs to each webhook subscribed to this event type. Verify X-RS-Signature over the raw body, ' +
          'reject timestamps far from your clock, deduplicate on X-RS-Delivery, and answer 2xx within 10 seconds (do slow work afterwards).',
        requestParams: {
          header: z.object({
            'X-RS-Event': z.literal(type),
            'X-RS-Delivery': z.string().meta({ description: 'Delivery id: the same across retries of this delivery; dedupe on it.' }),
            'X-RS-Timestamp': z.string().meta({ description: 'Unix seconds when this attempt was signed.' }),
            'X-RS-Signature': z.string().meta({ description: 'sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>' }),
            'X-RS-Attempt': z.string().meta({ description: 'Attempt number, from 1.' }),
          }),
        },
        requestBody: {
          required: true,
          ...jsonRequest(type.startsWith('hqe.') ? WebhookEventSchema : SpaceWebhookEventSchema, { [type]: { summary: `A ${type} event`, value: ex.webhookEvents[type]! } }),
        },
        responses: { '2XX': { description: 'Accepted; any other status (3xx included) or a timeout is retried' } },
      },
    },
  ]),
);
