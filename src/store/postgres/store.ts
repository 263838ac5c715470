/** The networked store: the Postgres repositories on one pool (shared by every node of a cluster). */
import type { Store, StoreOptions } from '../store.js';
import { PgAuthStore } from './auth.js';
import { PgClusterStore } from './cluster.js';
import { PgIdempotencyStore } from './idempotency.js';
import { openPg } from './pool.js';
import { purgeExpired } from './retention.js';
import { PgSessionStore } from './sessions.js';
import { PgSpaceStore } from './spaces.js';
import { PgUsageStore } from './usage.js';
import { PgWebhookStore } from './webhooks.js';

export async function openPostgresStore(url: string, options: Pick<StoreOptions, 'onError'> = {}): Promise<Store> {
  const pool = await openPg(url, { onError: (err) => options.onError?.('postgres connection error', err) });
  return {
    kind: 'postgres',
    auth: new PgAuthStore(pool),
    sessions: new PgSessionStore(pool),
    spaces: new PgSpaceStore(pool),
    usage: new PgUsageStore(pool),
    idempotency: new PgIdempotencyStore(pool),
    webhooks: new PgWebhookStore(pool),
    cluster: new PgClusterStore(pool),
    purgeExpired: (now, policy, batch) => purgeExpired(pool, now, policy, batch),
    ping: async () => {
      await pool.query('SELECT 1');
    },
    stats: () => ({ syncs: 0, failures: 0, checkpoints: 0, truncations: 0 }),
    close: () => pool.end(),
  };
}
