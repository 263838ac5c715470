/**
 * Idempotency-Key on POST and PATCH: the first response (status, body, Location) is stored for 24 h and
 * replayed with `Idempotent-Replayed: true`; the same key with another body is a 422; while the first
 * request is still running, a duplicate is a 409.
 */
import { createHash } from 'node:crypto';
import type { Context, Next } from 'koa';
import type { IdempotencyStore } from '../store/idempotency.js';
import { Problem } from './problem.js';
import type { AppState } from './types.js';

const TTL_MS = 24 * 3600 * 1000;
const REPLAYED_HEADERS = ['content-type', 'location'];

export function idempotency(store: IdempotencyStore) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const key = ctx.get('Idempotency-Key');
    const principal = (ctx.state as AppState).principal;
    if (!key || !principal || (ctx.method !== 'POST' && ctx.method !== 'PATCH')) return next();
    if (key.length > 128) {
      throw new Problem(400, 'validation_failed', 'Invalid request', 'Idempotency-Key is longer than 128 characters', {
        errors: [{ pointer: '', code: 'too_long', message: 'header Idempotency-Key: at most 128 characters' }],
      });
    }
    const bodyHash = createHash('sha256').update(`${ctx.method} ${ctx.path}\n${JSON.stringify(ctx.request.body ?? null)}`).digest('hex');
    const existing = await store.claim({ orgId: principal.orgId, key, method: ctx.method, path: ctx.path, bodyHash }, TTL_MS);
    if (existing) {
      if (existing.bodyHash !== bodyHash) {
        throw new Problem(422, 'idempotency_key_reused', 'Idempotency key reused', 'this Idempotency-Key was used with a different request');
      }
      if (existing.state === 'in_flight') {
        throw new Problem(409, 'idempotency_in_flight', 'Request in flight', 'a request with this Idempotency-Key is still being processed', {
          headers: { 'Retry-After': '1' },
        });
      }
      ctx.status = existing.status ?? 200;
      for (const [name, value] of Object.entries(existing.headers ?? {})) ctx.set(name, value);
      ctx.set('Idempotent-Replayed', 'true');
      ctx.body = existing.body ?? '';
      return;
    }
    try {
      await next();
    } catch (err) {
      await store.release(principal.orgId, key);
      throw err;
    }
    const headers: Record<string, string> = {};
    for (const name of REPLAYED_HEADERS) {
      const v = ctx.response.get(name);
      if (v) headers[name] = v;
    }
    const body = typeof ctx.body === 'string' ? ctx.body : JSON.stringify(ctx.body ?? null);
    await store.complete(principal.orgId, key, ctx.status, headers, body);
  };
}
