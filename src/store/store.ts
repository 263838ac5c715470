/**
 * The store seam: every repository a process uses, opened together. SQLite (one file under the data
 * directory; the default, `npm start` needs no service) or Postgres (`RESONANCE_DATABASE_URL`, shared by
 * the nodes of a cluster; docs/scaling.md). Both pass the same store suites (test/store/).
 */
import type { AuthStore } from './auth.js';
import type { IdempotencyStore } from './idempotency.js';
import type { ClusterStore } from './leases.js';
import type { PurgeReport, RetentionPolicy } from './retention.js';
import type { SessionStore } from './sessions.js';
import type { RealtimeSync, SpaceStore } from './spaces.js';
import type { UsageStore } from './usage.js';
import type { WebhookStore } from './webhooks.js';

export type StoreKind = 'sqlite' | 'postgres';

/** Counters for /metrics: the embedded store's WAL work (zero for Postgres, which does its own). */
export interface StoreStats {
  syncs: number;
  failures: number;
  checkpoints: number;
  /** Checkpoints that truncated an idle WAL file to zero bytes. */
  truncations: number;
}

export interface Store {
  readonly kind: StoreKind;
  readonly auth: AuthStore;
  readonly sessions: SessionStore;
  readonly spaces: SpaceStore;
  readonly usage: UsageStore;
  readonly idempotency: IdempotencyStore;
  readonly webhooks: WebhookStore;
  /** Nodes and ownership leases (one node, in memory, for SQLite). */
  readonly cluster: ClusterStore;
  /** One retention sweep (docs/tenancy.md), bounded by `batch` rows per table. */
  purgeExpired(now: number, policy: RetentionPolicy, batch?: number): Promise<PurgeReport>;
  /** Resolves once the store answered a trivial query; rejects when it cannot be reached. */
  ping(): Promise<void>;
  stats(): StoreStats;
  close(): Promise<void>;
}

export interface StoreOptions {
  /** SQLite: the data directory (its file is resonance.db), or ':memory:'. */
  dataDir: string;
  /** Postgres when set (postgres://…). */
  databaseUrl?: string | undefined;
  /** SQLite only: when realtime writes resolve (spaces.ts RealtimeSync). */
  spaceSync?: RealtimeSync;
  /** SQLite only: run WAL checkpoints on a worker thread (the server does; short-lived CLI commands don't). */
  checkpoints?: boolean;
  onError?: (message: string, err?: unknown) => void;
}

export async function openStore(options: StoreOptions): Promise<Store> {
  if (options.databaseUrl) {
    const { openPostgresStore } = await import('./postgres/store.js');
    return openPostgresStore(options.databaseUrl, options);
  }
  const { openSqliteStore } = await import('./sqlite-store.js');
  return openSqliteStore(options);
}
