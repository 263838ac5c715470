/** Quota enforcement and usage metering (the catalogue is src/model/tenancy.ts; docs/tenancy.md). */
import { QUOTAS, type QuotaName, type QuotaSpec, type UsageMetric } from '../model/tenancy.js';
import type { UsageStore } from '../store/usage.js';
import { FixedWindows, type WindowCounter } from '../cluster/fixed-windows.js';

/** A quota refused the request; the HTTP layer answers problem quota_exceeded, the realtime layer an error frame. */
export class QuotaExceededError extends Error {
  readonly status: 409 | 429;
  constructor(
    readonly quota: QuotaName,
    readonly limit: number,
    readonly used: number,
    /** Rate quotas: seconds until the window resets. */
    readonly retryAfterSeconds?: number,
  ) {
    super(
      QUOTAS[quota].kind === 'cap'
        ? `the ${quota} quota (${QUOTAS[quota].description}) is ${limit}; ${used} in use`
        : `the ${quota} quota (${QUOTAS[quota].description}) is ${limit} per window; ${used} used, resets in ${retryAfterSeconds ?? 0} s`,
    );
    this.status = QUOTAS[quota].kind === 'cap' ? 409 : 429;
  }

  get meta(): { quota: QuotaName; limit: number; used: number } {
    return { quota: this.quota, limit: this.limit, used: this.used };
  }
}

/** Where per-org overrides come from (the store's org_quotas table). */
export type QuotaOverrides = Pick<UsageStore, 'quotaOverrides'>;

/** Where metered usage is kept (the store's usage table). */
export type UsageSink = Pick<UsageStore, 'addUsage'>;

const HOUR_MS = 3_600_000;
/** Overrides are re-read this often, so `orgs set-quota` takes effect on a running server within seconds. */
const OVERRIDE_TTL_MS = 5_000;

export class Quotas {
  private readonly overrides = new Map<string, { at: number; values: Partial<Record<QuotaName, number>> }>();
  private readonly windows: WindowCounter;
  private nextSweep = 0;
  /** Places held of in-process caps (acquire), by quota and key. */
  private readonly held = new Map<string, number>();

  constructor(
    private readonly source: QuotaOverrides,
    /** Server-wide defaults (RESONANCE_QUOTA_*), falling back to the catalogue. */
    private readonly defaults: Partial<Record<QuotaName, number>> = {},
    private readonly clock: () => number = Date.now,
    /** Rate quotas' windows: this process's, or the cluster's (Redis) so that every node charges one quota. */
    windows?: WindowCounter,
  ) {
    this.windows = windows ?? new FixedWindows(clock);
  }

  /** The org's limit for `name`. */
  async limit(orgId: string, name: QuotaName): Promise<number> {
    const t = this.clock();
    let cached = this.overrides.get(orgId);
    if (!cached || t - cached.at > OVERRIDE_TTL_MS) {
      cached = { at: t, values: await this.source.quotaOverrides(orgId) };
      this.overrides.set(orgId, cached);
      // Entries of orgs gone quiet are dropped at most once a minute: the cache follows active orgs.
      if (t >= this.nextSweep) {
        this.nextSweep = t + 60_000;
        for (const [org, o] of this.overrides) if (t - o.at > OVERRIDE_TTL_MS) this.overrides.delete(org);
      }
    }
    return cached.values[name] ?? this.defaults[name] ?? QUOTAS[name].default;
  }

  /** Throws QuotaExceededError when holding `used + adding` would pass the org's cap. */
  async checkCap(orgId: string, name: QuotaName, used: number, adding = 1): Promise<void> {
    const limit = await this.limit(orgId, name);
    if (used + adding > limit) throw new QuotaExceededError(name, limit, used);
  }

  /**
   * Holds one place of a cap counted in this process (open sockets and streams) for as long as the
   * returned release function is not called; throws QuotaExceededError when the org's cap is full. `key`
   * narrows what is counted (a member's sockets); by default the org's. Releasing twice releases once.
   */
  async acquire(orgId: string, name: QuotaName, key: string = orgId): Promise<() => void> {
    const limit = await this.limit(orgId, name);
    // Counted synchronously once the limit is known: concurrent requests cannot both take the last place.
    const held = `${name}\u0000${key}`;
    const used = this.held.get(held) ?? 0;
    if (used + 1 > limit) throw new QuotaExceededError(name, limit, used);
    this.held.set(held, used + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.held.get(held) ?? 1) - 1;
      if (n > 0) this.held.set(held, n);
      else this.held.delete(held);
    };
  }

  /** Charges `units` to a rate quota, all or nothing; throws QuotaExceededError (nothing charged) when they do not fit. */
  async charge(orgId: string, name: QuotaName, units: number): Promise<void> {
    const spec: QuotaSpec = QUOTAS[name];
    if (spec.kind !== 'rate' || units <= 0) return;
    const limit = await this.limit(orgId, name);
    const r = await this.windows.consume(`quota:${orgId}\u0000${name}`, units, limit, (spec.windowSeconds ?? 60) * 1000);
    if (!r.allowed) throw new QuotaExceededError(name, limit, r.used, r.resetSeconds);
  }
}

/**
 * Usage counters: added in memory as the work happens, written to the store every `flushMs` (and at stop)
 * as per-hour sums. Process totals per org feed /metrics.
 */
export class UsageMeter {
  private pending = new Map<string, number>();
  private readonly totals = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly sink: UsageSink,
    private readonly onError: (err: unknown) => void = () => undefined,
    private readonly clock: () => number = Date.now,
  ) {}

  start(flushMs = 5_000): void {
    this.timer = setInterval(() => void this.flush(), flushMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }

  add(orgId: string, metric: UsageMetric, value: number): void {
    if (!(value > 0)) return;
    const hour = Math.floor(this.clock() / HOUR_MS) * HOUR_MS;
    const key = `${orgId}\u0000${metric}\u0000${hour}`;
    this.pending.set(key, (this.pending.get(key) ?? 0) + value);
    const total = `${orgId}\u0000${metric}`;
    this.totals.set(total, (this.totals.get(total) ?? 0) + value);
  }

  /** Process-lifetime totals per org and metric (Prometheus counters). */
  snapshot(): Array<{ orgId: string; metric: UsageMetric; value: number }> {
    return [...this.totals].map(([key, value]) => {
      const [orgId, metric] = key.split('\u0000') as [string, UsageMetric];
      return { orgId, metric, value };
    });
  }

  /** Writes what was added since the last flush (one at a time; a failed write is added back). */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.pending.size === 0) return;
      const batch = this.pending;
      this.pending = new Map();
      const rows = [...batch].map(([key, value]) => {
        const [orgId, metric, hour] = key.split('\u0000') as [string, UsageMetric, string];
        return { orgId, metric, hour: Number(hour), value };
      });
      try {
        await this.sink.addUsage(rows);
      } catch (err) {
        for (const [key, value] of batch) this.pending.set(key, (this.pending.get(key) ?? 0) + value);
        this.onError(err);
      }
    });
    return this.flushing;
  }
}
