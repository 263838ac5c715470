/**
 * RFC 9457 problem details. Every error the API returns is a Problem with a stable `code`; validation
 * problems list each failing field by JSON pointer. docs/errors.md is the catalogue.
 */
import type { Context, Next } from 'koa';
import { capFieldErrors, type FieldError } from '../model/normalize.js';
import { QuotaExceededError } from '../sim/quotas.js';
import { isUnavailable } from '../store/unavailable.js';

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
    const body: ProblemBody = { type: PROBLEM_TYPE_BASE + this.code, title: this.title, status: this.status, code: this.code, instance: ctx.path };
    if (this.detail) body.detail = this.detail;
    // At most MAX_FIELD_ERRORS errors; meta {errorCount, truncated} when there were more.
    const capped = this.extra.errors ? capFieldErrors(this.extra.errors) : null;
    if (capped) body.errors = capped.errors;
    if (this.extra.meta || capped?.meta) body.meta = { ...this.extra.meta, ...capped?.meta };
    const requestId = (ctx.state as { requestId?: string }).requestId;
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
export function quotaProblem(err: QuotaExceededError): Problem {
  return new Problem(err.status, 'quota_exceeded', 'Quota exceeded', err.message, {
    meta: err.meta,
    ...(err.retryAfterSeconds !== undefined ? { headers: { 'Retry-After': String(err.retryAfterSeconds) } } : {}),
  });
}

/** The store or the broker cannot be reached now; the node reconnects by itself. */
export const unavailableProblem = (): Problem =>
  new Problem(503, 'service_unavailable', 'Service unavailable', 'a service this server depends on cannot be reached; retry shortly', { headers: { 'Retry-After': '1' } });

/** Outermost error boundary: a Problem (or a client error from Koa) becomes problem+json; anything else a 500 that is logged. */
export function problemMiddleware(log: (err: unknown, ctx: Context) => void) {
  return async (ctx: Context, next: Next): Promise<void> => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) throw new Problem(404, 'not_found', 'Not found', `no route for ${ctx.method} ${ctx.path}`);
      if (ctx.status === 405 && ctx.body === undefined) throw new Problem(405, 'method_not_allowed', 'Method not allowed', `${ctx.method} is not allowed on ${ctx.path}`);
    } catch (err) {
      const problem =
        err instanceof Problem ? err
        : err instanceof QuotaExceededError ? quotaProblem(err)
        : isUnavailable(err) ? unavailableProblem()
        : fromHttpError(err as object);
      if (!problem) log(err, ctx);
      const p = problem ?? new Problem(500, 'internal', 'Internal error', 'the server failed; the request id identifies it in the logs');
      ctx.status = p.status;
      ctx.type = 'application/problem+json';
      for (const [name, value] of Object.entries(p.extra.headers ?? {})) ctx.set(name, value);
      ctx.body = p.body(ctx);
    }
  };
}
