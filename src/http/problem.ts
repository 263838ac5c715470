/**
 * RFC 9457 problem details. Every error the API returns is a Problem with a stable `code`; validation
 * problems list each failing field by JSON pointer. docs/errors.md is the catalogue.
 */
import type { Context, Next } from 'koa';
import { capFieldErrors, type FieldError } from '../model/normalize.js';
import { QuotaExceededError } from '../sim/quotas.js';
import { OwnerUnreachableError } from '../sim/session-cluster.js';
import { SpaceError } from '../sim/space-error.js';
import { isUnavailable } from '../store/unavailable.js';
import { WebhookNotFoundError, WebhookTargetError } from '../webhooks/service.js';

export const PROBLEM_TYPE_BASE = '/problems/';

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  code: string;
  errors?: FieldError[];
  meta?: Record<string, unknown>;
  requestId?: string;
}

export class Problem extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    readonly detail?: string,
    readonly extra: { errors?: FieldError[]; meta?: Record<string, unknown>; headers?: Record<string, string> } = {},
  ) {
    super(detail ?? title);
  }

  body(ctx: Context): ProblemBody {
    return this.bodyAt(ctx.path, (ctx.state as { requestId?: string }).requestId);
  }

  /** The body for a request to `instance` (a path), outside Koa too (a refused WebSocket upgrade). */
  bodyAt(instance: string, requestId?: string): ProblemBody {
    const body: ProblemBody = { type: PROBLEM_TYPE_BASE + this.code, title: this.title, status: this.status, code: this.code, instance };
    if (this.detail) body.detail = this.detail;
    // At most MAX_FIELD_ERRORS errors; meta {errorCount, truncated} when there were more.
    const capped = this.extra.errors ? capFieldErrors(this.extra.errors) : null;
    if (capped) body.errors = capped.errors;
    if (this.extra.meta || capped?.meta) body.meta = { ...this.extra.meta, ...capped?.meta };
    if (requestId) body.requestId = requestId;
    return body;
  }
}

export const validationProblem = (errors: FieldError[], detail = 'the request has invalid fields'): Problem =>
  new Problem(400, 'validation_failed', 'Invalid request', detail, { errors });

export const notFound = (what: string): Problem => new Problem(404, 'not_found', 'Not found', `${what} does not exist`);

/** Errors thrown by Koa and its body parser carry a status and an `expose` flag; map the ones users cause. */
function fromHttpError(err: { status?: number; statusCode?: number; type?: string; message?: string; expose?: boolean }): Problem | null {
  const status = err.status ?? err.statusCode;
  if (!status || status >= 500) return null;
  if (status === 413) return new Problem(413, 'payload_too_large', 'Payload too large', 'the request body exceeds the limit');
  if (status === 415 && /content-encoding/i.test(err.message ?? '')) {
    return new Problem(415, 'unsupported_content_encoding', 'Unsupported content encoding', err.message);
  }
  if (status === 415) return new Problem(415, 'unsupported_media_type', 'Unsupported media type', 'send application/json');
  if (status === 400 && /json|parse|unexpected/i.test(`${err.type ?? ''} ${err.message ?? ''}`)) {
    return new Problem(400, 'malformed_json', 'Malformed JSON', err.message);
  }
  return new Problem(status, 'http_error', err.expose && err.message ? err.message : 'Request error', err.expose ? err.message : undefined);
}

/** 409 (a cap) or 429 (a rate, with Retry-After) quota_exceeded, meta {quota, limit, used}. */
function quotaProblem(err: QuotaExceededError): Problem {
  return new Problem(err.status, 'quota_exceeded', 'Quota exceeded', err.message, {
    meta: err.meta,
    ...(err.retryAfterSeconds !== undefined ? { headers: { 'Retry-After': String(err.retryAfterSeconds) } } : {}),
  });
}

/** The store or the broker cannot be reached now; the node reconnects by itself. */
export const unavailableProblem = (): Problem =>
  new Problem(503, 'service_unavailable', 'Service unavailable', 'a service this server depends on cannot be reached; retry shortly', { headers: { 'Retry-After': '1' } });

const SPACE_TITLES: Record<string, string> = {
  validation_failed: 'Invalid request', not_found: 'Not found', conflict: 'Conflict', stale_version: 'Stale version', version_ahead: 'Version ahead',
  stale_epoch: 'Stale epoch', space_locked: 'Space locked', space_archived: 'Space archived', space_full: 'Space full', insufficient_role: 'Insufficient role',
  member_removed: 'Member removed', owner_unreachable: 'Owner unreachable', owner_changed: 'Owner changed',
};

/** The title of a problem code the spaces API answers with. */
export const spaceTitle = (code: string): string => SPACE_TITLES[code] ?? 'Request refused';

/** A refusal of the space hub: status, code, detail, errors and meta as they are. */
function spaceProblem(err: SpaceError): Problem {
  return new Problem(err.status, err.code, spaceTitle(err.code), err.message, {
    ...(err.errors ? { errors: err.errors } : {}),
    ...(err.meta ? { meta: err.meta } : {}),
    // The space's owner did not answer or is changing hands: the lease moves within its TTL.
    ...(err.status === 503 ? { headers: { 'Retry-After': '1' } } : {}),
  });
}

function webhookProblem(err: WebhookTargetError): Problem {
  const errors = [{ pointer: '/url', code: err.code, message: err.message }];
  if (err.code === 'invalid_url') return validationProblem(errors);
  const title = err.code === 'webhook_target_forbidden' ? 'Webhook target forbidden' : 'Webhook target unresolvable';
  return new Problem(400, err.code, title, err.message, { errors });
}

/**
 * The one mapping of errors to problems, for every route and the WebSocket upgrade: the domain's refusals
 * (spaces, quotas, webhooks, a session's owner out of reach), a store or broker out of reach, and the client
 * errors of Koa and its body parser. Null for anything else: a failure of the server (500, logged).
 */
export function problemOf(err: unknown): Problem | null {
  if (err instanceof Problem) return err;
  if (err instanceof SpaceError) return spaceProblem(err);
  if (err instanceof QuotaExceededError) return quotaProblem(err);
  if (err instanceof OwnerUnreachableError) {
    return new Problem(503, 'owner_unreachable', 'Owner unreachable', err.message, { headers: { 'Retry-After': String(err.retryAfterSeconds) } });
  }
  if (err instanceof WebhookNotFoundError) return notFound(`webhook ${err.id}`);
  if (err instanceof WebhookTargetError) return webhookProblem(err);
  if (isUnavailable(err)) return unavailableProblem();
  return err !== null && typeof err === 'object' ? fromHttpError(err) : null;
}

/** Outermost error boundary: problemOf's problem becomes problem+json; anything else a 500 that is logged. */
export function problemMiddleware(log: (err: unknown, ctx: Context) => void) {
  return async (ctx: Context, next: Next): Promise<void> => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) throw new Problem(404, 'not_found', 'Not found', `no route for ${ctx.method} ${ctx.path}`);
      if (ctx.status === 405 && ctx.body === undefined) throw new Problem(405, 'method_not_allowed', 'Method not allowed', `${ctx.method} is not allowed on ${ctx.path}`);
    } catch (err) {
      const problem = problemOf(err);
      if (!problem) log(err, ctx);
      const p = problem ?? new Problem(500, 'internal', 'Internal error', 'the server failed; the request id identifies it in the logs');
      ctx.status = p.status;
      ctx.type = 'application/problem+json';
      for (const [name, value] of Object.entries(p.extra.headers ?? {})) ctx.set(name, value);
      ctx.body = p.body(ctx);
    }
  };
}
