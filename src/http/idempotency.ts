/**
 * Idempotency-Key on POST and PATCH: the first response (status, body, Location) is stored for 24 h and
 * replayed with `Idempotent-Replayed: true`; the same key with another request is a 422; while the first
 * request is still running, a duplicate is a 409.
 *
 * Keys belong to the credential that sent them (API key, OAuth client, or the member of a space session
 * token), never to the whole org, and the replay runs as a route middleware placed after the route's scope
 * and access checks: a caller gets a stored response only where it may make that request itself.
 *
 * Crashes: a claim records the process that made it (a random boot id). A claim in flight under another
 * boot id was left by a process that died mid-request; it is released (at start, and whenever it is met)
 * and the retry runs. So after a restart a key is either done (replayed) or free, never stuck.
 */
import { createHash } from 'node:crypto';
import type { Context, Next } from 'koa';
import type { IdempotencyStore } from '../store/idempotency.js';
import { Problem } from './problem.js';
import type { AppState, Principal } from './types.js';

/** How long a stored response is replayed. */
export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 128;
const REPLAYED_HEADERS = ['content-type', 'location'];
/** Expired records are deleted in batches of this many, every PURGE_EVERY_MS. */
const PURGE_BATCH = 1000;
const PURGE_EVERY_MS = 60_000;

/** Whose keys: the API key or OAuth client; for a space session token its member (its own credential). */
export const idempotencySubject = (p: Principal): string => p.session?.memberId ?? p.subject;

export type RouteMiddleware = (ctx: Context, next: Next) => Promise<void>;

export class Idempotency {
  private timer: NodeJS.Timeout | null = null;
  private purging: Promise<void> | null = null;

  constructor(
    private readonly store: IdempotencyStore,
    /**
     * This run of the process: its claims carry it. Another boot id's in-flight claim is a dead process's
     * (one process), or a node's that no longer beats (a cluster: the store checks its heartbeat).
     */
    readonly bootId: string,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  /** Releases the claims of processes that died, purges expired records, then purges once a minute. */
  async start(): Promise<void> {
    await this.store.releaseStale(this.bootId);
    await this.purge();
    this.timer = setInterval(() => void this.purge(), PURGE_EVERY_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.purging;
  }

  /** Deletes every record older than the TTL, a bounded batch at a time. */
  purge(): Promise<void> {
    // Cleared by .finally, which runs after the assignment even when the purge finishes synchronously.
    this.purging ??= this.purgeAll()
      .catch((err: unknown) => this.onError(err))
      .finally(() => {
        this.purging = null;
      });
    return this.purging;
  }

  private async purgeAll(): Promise<void> {
    const before = Date.now() - IDEMPOTENCY_TTL_MS;
    while ((await this.store.purgeExpired(before, PURGE_BATCH)) === PURGE_BATCH) {
      // Let requests in between batches.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** The route middleware: put it after requireScope and the route's access check, right before the handler. */
  readonly middleware: RouteMiddleware = (ctx, next) => {
    const key = ctx.get('idempotency-key');
    const principal = (ctx.state as AppState).principal;
    // Most requests send no key: they pass on without a promise of this middleware's own.
    if (!key || !principal || (ctx.method !== 'POST' && ctx.method !== 'PATCH')) return next();
    return this.keyed(ctx, next, key, principal);
  };

  private async keyed(ctx: Context, next: Next, key: string, principal: Principal): Promise<void> {
    if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
      throw new Problem(400, 'validation_failed', 'Invalid request', `Idempotency-Key is longer than ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`, {
        errors: [{ pointer: '', code: 'too_long', message: `header Idempotency-Key: at most ${MAX_IDEMPOTENCY_KEY_LENGTH} characters` }],
      });
    }
    const subject = idempotencySubject(principal);
    // The bytes as sent: hashing the parsed body would walk it (deeply nested JSON overflowed the stack).
    const raw = (ctx.request as { rawBody?: unknown }).rawBody;
    const bodyHash = createHash('sha256')
      .update(`${ctx.method} ${ctx.path}\n`)
      .update(typeof raw === 'string' ? raw : '')
      .digest('hex');
    const existing = await this.store.claim({ subject, key, method: ctx.method, path: ctx.path, bodyHash, bootId: this.bootId }, IDEMPOTENCY_TTL_MS);
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
      await this.store.release(subject, key);
      throw err;
    }
    const headers: Record<string, string> = {};
    for (const name of REPLAYED_HEADERS) {
      const v = ctx.response.get(name);
      if (v) headers[name] = v;
    }
    const body = typeof ctx.body === 'string' ? ctx.body : JSON.stringify(ctx.body ?? null);
    await this.store.complete(subject, key, ctx.status, headers, body);
  }
}

/** For routers built without the service (tests of a router alone): no replay. */
export const noIdempotency: RouteMiddleware = (_ctx, next) => next();
