/**
 * Fixed-window counters keyed by string: the per-credential rate limit (http/ratelimit.ts) and the per-org
 * rate quotas (sim/quotas.ts) both count with it. A window starts at a key's first charge (not at wall-clock
 * boundaries, so keys do not all reset in the same millisecond). The known cost of fixed windows: a client
 * can spend up to twice the budget across a window boundary; in exchange the state is two numbers per key
 * and the reset time is exact.
 */

interface Window {
  start: number;
  used: number;
  ms: number;
}

export interface WindowCharge {
  /** False when the units did not fit in what is left of the window; nothing was charged then. */
  allowed: boolean;
  /** Units charged in the window, after this charge. */
  used: number;
  /** Seconds until the window ends (at least 1). */
  resetSeconds: number;
}

/** Where windows are counted: in this process (FixedWindows), or in Redis for every node of a cluster. */
export interface WindowCounter {
  /** Charges `units` to `key`'s window of `windowMs` if they fit under `limit`, all or nothing. */
  consume(key: string, units: number, limit: number, windowMs: number): WindowCharge | Promise<WindowCharge>;
}

export class FixedWindows implements WindowCounter {
  private readonly windows = new Map<string, Window>();
  private nextSweep = 0;

  constructor(private readonly clock: () => number = Date.now) {}

  /** Charges `units` to `key`'s window of `windowMs` if they fit under `limit`, all or nothing. */
  consume(key: string, units: number, limit: number, windowMs: number): WindowCharge {
    const t = this.clock();
    this.sweep(t, windowMs);
    let w = this.windows.get(key);
    if (!w || t >= w.start + w.ms) this.windows.set(key, (w = { start: t, used: 0, ms: windowMs }));
    const allowed = w.used + units <= limit;
    if (allowed) w.used += units;
    return { allowed, used: w.used, resetSeconds: Math.max(1, Math.ceil((w.start + w.ms - t) / 1000)) };
  }

  /** Drops ended windows at most once per window length, so memory follows active keys without a timer. */
  private sweep(t: number, windowMs: number): void {
    if (t < this.nextSweep) return;
    this.nextSweep = t + windowMs;
    for (const [key, w] of this.windows) if (t >= w.start + w.ms) this.windows.delete(key);
  }
}
