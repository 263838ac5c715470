/** Usage per org, metric and hour, and the per-org quota overrides (docs/tenancy.md). */
import type { QuotaName, UsageMetric } from '../model/tenancy.js';
import { type Db, stmt, write } from './db.js';

export interface UsageRow {
  metric: UsageMetric;
  /** Start of the bucket, ms since the epoch. */
  start: number;
  value: number;
}

export interface UsageStore {
  addUsage(rows: Array<{ orgId: string; metric: UsageMetric; hour: number; value: number }>): Promise<void>;
  quotaOverrides(orgId: string): Promise<Partial<Record<QuotaName, number>>>;
  /** Sums per metric and bucket (hour or UTC day) with from <= start < to, oldest first. */
  usage(orgId: string, from: number, to: number, granularity: 'hour' | 'day'): Promise<UsageRow[]>;
  setQuota(orgId: string, name: QuotaName, value: number | null): Promise<void>;
  /** Bytes an org has stored: events of its HQE sessions and the delta logs of its spaces. */
  storageBytes(orgId: string): Promise<number>;
}

const DAY_MS = 86_400_000;

export class SqliteUsageStore implements UsageStore {
  constructor(private readonly db: Db) {}

  async addUsage(rows: Array<{ orgId: string; metric: UsageMetric; hour: number; value: number }>): Promise<void> {
    await write(this.db, () => {
      const upsert = stmt(
        this.db,
        'INSERT INTO usage (org_id, metric, hour, value) VALUES (?, ?, ?, ?) ON CONFLICT (org_id, metric, hour) DO UPDATE SET value = value + excluded.value',
      );
      for (const r of rows) upsert.run(r.orgId, r.metric, r.hour, r.value);
    });
  }

  async usage(orgId: string, from: number, to: number, granularity: 'hour' | 'day'): Promise<UsageRow[]> {
    const bucket = granularity === 'hour' ? 'hour' : `(hour / ${DAY_MS}) * ${DAY_MS}`;
    const rows = stmt(
      this.db,
      `SELECT metric, ${bucket} AS start, SUM(value) AS value FROM usage WHERE org_id = ? AND hour >= ? AND hour < ? GROUP BY metric, start ORDER BY start, metric`,
    ).all(orgId, from, to) as Array<{ metric: UsageMetric; start: number; value: number }>;
    return rows;
  }

  async quotaOverrides(orgId: string): Promise<Partial<Record<QuotaName, number>>> {
    const rows = stmt(this.db, 'SELECT name, value FROM org_quotas WHERE org_id = ?').all(orgId) as Array<{ name: QuotaName; value: number }>;
    return Object.fromEntries(rows.map((r) => [r.name, r.value]));
  }

  async setQuota(orgId: string, name: QuotaName, value: number | null): Promise<void> {
    await write(this.db, () => {
      if (value === null) stmt(this.db, 'DELETE FROM org_quotas WHERE org_id = ? AND name = ?').run(orgId, name);
      else {
        stmt(this.db, 'INSERT INTO org_quotas (org_id, name, value) VALUES (?, ?, ?) ON CONFLICT (org_id, name) DO UPDATE SET value = excluded.value')
          .run(orgId, name, value);
      }
    });
  }

  async storageBytes(orgId: string): Promise<number> {
    const s = stmt(this.db, 'SELECT COALESCE(SUM(event_bytes), 0) AS n FROM hqe_sessions WHERE org_id = ?').get(orgId) as { n: number };
    const d = stmt(this.db, 'SELECT COALESCE(SUM(delta_bytes), 0) AS n FROM spaces WHERE org_id = ?').get(orgId) as { n: number };
    return s.n + d.n;
  }
}
