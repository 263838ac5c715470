/** Usage per org, metric and hour, and the per-org quota overrides, on Postgres (the UsageStore contract of ../usage.ts). */
import type pg from 'pg';
import type { QuotaName, UsageMetric } from '../../model/tenancy.js';
import type { UsageRow, UsageStore } from '../usage.js';
import { one, query } from './pool.js';

const DAY_MS = 86_400_000;

export class PgUsageStore implements UsageStore {
  constructor(private readonly pool: pg.Pool) {}

  async addUsage(rows: Array<{ orgId: string; metric: UsageMetric; hour: number; value: number }>): Promise<void> {
    // One statement may not upsert a row twice: rows for the same bucket are summed first. Buckets go in
    // key order so that nodes adding to the same buckets at once lock them in the same order (no deadlock).
    const sums = new Map<string, { orgId: string; metric: UsageMetric; hour: number; value: number }>();
    for (const r of rows) {
      const key = JSON.stringify([r.orgId, r.metric, r.hour]);
      const sum = sums.get(key);
      if (sum) sum.value += r.value;
      else sums.set(key, { ...r });
    }
    if (sums.size === 0) return;
    const buckets = [...sums.values()].sort((a, b) => (a.orgId < b.orgId ? -1 : a.orgId > b.orgId ? 1 : a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : a.hour - b.hour));
    await this.pool.query(
      `INSERT INTO usage (org_id, metric, hour, value)
       SELECT org_id, metric, hour, value FROM unnest($1::text[], $2::text[], $3::bigint[], $4::float8[]) WITH ORDINALITY AS t(org_id, metric, hour, value, i) ORDER BY i
       ON CONFLICT (org_id, metric, hour) DO UPDATE SET value = usage.value + excluded.value`,
      [buckets.map((b) => b.orgId), buckets.map((b) => b.metric), buckets.map((b) => b.hour), buckets.map((b) => b.value)],
    );
  }

  async usage(orgId: string, from: number, to: number, granularity: 'hour' | 'day'): Promise<UsageRow[]> {
    // A UTC day bucket as SQLite computes it: integer division of the BIGINT hour (ms).
    const bucket = granularity === 'hour' ? 'hour' : `(hour / ${DAY_MS}) * ${DAY_MS}`;
    return query<UsageRow>(
      this.pool,
      `SELECT metric, ${bucket} AS start, SUM(value) AS value FROM usage WHERE org_id = $1 AND hour >= $2 AND hour < $3 GROUP BY metric, start ORDER BY start, metric COLLATE "C"`,
      [orgId, from, to],
    );
  }

  async quotaOverrides(orgId: string): Promise<Partial<Record<QuotaName, number>>> {
    const rows = await query<{ name: QuotaName; value: number }>(this.pool, 'SELECT name, value FROM org_quotas WHERE org_id = $1', [orgId]);
    return Object.fromEntries(rows.map((r) => [r.name, r.value]));
  }

  async setQuota(orgId: string, name: QuotaName, value: number | null): Promise<void> {
    if (value === null) await this.pool.query('DELETE FROM org_quotas WHERE org_id = $1 AND name = $2', [orgId, name]);
    else {
      await this.pool.query('INSERT INTO org_quotas (org_id, name, value) VALUES ($1, $2, $3) ON CONFLICT (org_id, name) DO UPDATE SET value = excluded.value', [orgId, name, value]);
    }
  }

  async storageBytes(orgId: string): Promise<number> {
    // SUM of BIGINT is NUMERIC (a string in pg): cast back, the totals are far below 2^53.
    const r = await one<{ n: number }>(
      this.pool,
      `SELECT (SELECT COALESCE(SUM(event_bytes), 0) FROM hqe_sessions WHERE org_id = $1)::bigint
            + (SELECT COALESCE(SUM(delta_bytes), 0) FROM spaces WHERE org_id = $1)::bigint AS n`,
      [orgId],
    );
    return r!.n;
  }
}
