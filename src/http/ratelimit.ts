/**
 * Per-key rate limits measured in work units: a request costs 1 unit, routes that simulate charge more
 * through chargeWork() before they start. Headers (docs/tenancy.md):
 *   X-RateLimit-Limit      units per window
 *   X-RateLimit-Remaining  units left in the current window
 *   X-RateLimit-Reset      SECONDS UNTIL the current window ends (a delta, as in the IETF RateLimit-headers
 *                          draft, not an epoch timestamp: clients need no synchronised clock)
 * and a 429 carries Retry-After (the same delta) as well.
 */
import type { Context, Next } from 'koa';
import { FixedWindows, type WindowCharge, type WindowCounter } from '../cluster/fixed-windows.js';
import { Problem } from './problem.js';
import type { AppState } from './types.js';

export interface RateState {
  limit: number;
  remaining: number;
  /** Seconds until the window resets (at least 1). */
  resetSeconds: number;
}

export interface RateDecision extends RateState {
  /** False when the charge would exceed the budget; nothing was charged then. */
  allowed: boolean;
}

/** The limiter behind the middleware: in memory here, Redis (shared by every node) for scale-out. */
export interface RateLimiter {
  /** Charges `units` to `key` if they fit in the key's remaining budget, all or nothing (at once when counted in this process). */
  consume(key: string, units: number): RateDecision | Promise<RateDecision>;
}

/** Per-key windows of `limit` units each (cluster/fixed-windows.ts): the budget is a fairness device, not a hard capacity guarantee. */
export class WindowRateLimiter implements RateLimiter {
  private readonly windows: WindowCounter;
  private readonly windowMs: number;

  /** `windows`: this process's counters, or the cluster's (Redis) so that every node charges one budget. */
  constructor(
    private readonly limit: number,
    windowSeconds: number,
    clock: () => number = Date.now,
    windows?: WindowCounter,
  ) {
    this.windowMs = windowSeconds * 1000;
    this.windows = windows ?? new FixedWindows(clock);
  }

  consume(key: string, units: number): RateDecision | Promise<RateDecision> {
    const charged = this.windows.consume(`rate:${key}`, units, this.limit, this.windowMs);
    return charged instanceof Promise ? charged.then((c) => this.decision(c)) : this.decision(charged);
  }

  private decision({ allowed, used, resetSeconds }: WindowCharge): RateDecision {
    return { allowed, limit: this.limit, remaining: Math.max(0, this.limit - used), resetSeconds };
  }
}

/** Work units of `entries` kernel entries (steps x (restarts + 1) x k^2 of a run or session): entries / workUnit, rounded up. */
export const workUnits = (entries: number, workUnit: number): number => Math.ceil(entries / workUnit);

/** Which limiter and key a request charges: set by rateLimit() in the request's state, so chargeWork() needs only the context. */
interface RateBinding {
  limiter: RateLimiter;
  key: string;
}
type BoundState = { rateLimit?: RateBinding };

export const rateLimitHeaders = (s: RateState): Record<string, string> => ({
  'X-RateLimit-Limit': String(s.limit),
  'X-RateLimit-Remaining': String(s.remaining),
  'X-RateLimit-Reset': String(s.resetSeconds),
});

/** All the limiter needs of a Koa context (any router's context type fits). */
type HeaderTarget = Pick<Context, 'set'>;
type ChargeTarget = HeaderTarget & { state: unknown };

/** Charges `units`, at once when the limiter counts in this process (no promise on the path of every request). */
function charge(ctx: HeaderTarget, limiter: RateLimiter, key: string, units: number): void | Promise<void> {
  const decision = limiter.consume(key, units);
  return decision instanceof Promise ? decision.then((d) => settle(ctx, d, units)) : settle(ctx, decision, units);
}

/** Reports the budget in the response headers; throws the 429 when the charge did not fit. */
function settle(ctx: HeaderTarget, decision: RateDecision, units: number): void {
  // Set now, so every later response (a success or any problem a route throws) reports the current budget.
  // One header at a time: no object is made on the path of every request.
  ctx.set('X-RateLimit-Limit', String(decision.limit));
  ctx.set('X-RateLimit-Remaining', String(decision.remaining));
  ctx.set('X-RateLimit-Reset', String(decision.resetSeconds));
  if (decision.allowed) return;
  const headers = rateLimitHeaders(decision);
  const over = units > decision.limit;
  throw new Problem(
    429,
    'rate_limited',
    'Too many requests',
    over
      ? `this request costs ${units} units, more than the budget of ${decision.limit} per window; ask for less work`
      : `this request costs ${units} units and ${decision.remaining} remain; the window resets in ${decision.resetSeconds} s`,
    {
      headers: { ...headers, 'Retry-After': String(decision.resetSeconds) },
      meta: { cost: units, limit: decision.limit, remaining: decision.remaining, resetSeconds: decision.resetSeconds },
    },
  );
}

/**
 * Charges 1 unit per request to the authenticated principal (place it after authenticate()); requests
 * without a principal (public routes) pass uncharged.
 */
export function rateLimit(limiter: RateLimiter) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const principal = (ctx.state as AppState).principal;
    if (!principal) return next();
    (ctx.state as BoundState).rateLimit = { limiter, key: principal.subject };
    const charging = charge(ctx, limiter, principal.subject, 1);
    if (charging) await charging;
    await next();
  };
}

/**
 * Charges `units` more for work a route is about to do, throwing the 429 before the work starts when the
 * budget cannot cover it (then nothing is charged). Use workUnits() for runs, sessions and steps. Await it: the
 * limiter may be remote (Redis), so the 429 arrives as a rejection.
 */
export async function chargeWork(ctx: ChargeTarget, units: number): Promise<void> {
  const binding = (ctx.state as BoundState).rateLimit;
  // A programming error, not a client's: a work route mounted without rateLimit() would run unmetered.
  if (!binding) throw new Error('chargeWork() needs the rateLimit() middleware in front of the route');
  const cost = Math.ceil(units);
  if (cost <= 0) return;
  await charge(ctx, binding.limiter, binding.key, cost);
}
