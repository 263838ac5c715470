/** The embedded store: the SQLite repositories on one file (WAL), checkpointed off the event loop. */
import { join } from 'node:path';
import { SqliteAuthStore } from './auth.js';
import { Checkpointer } from './checkpointer.js';
import { openDb, syncStats } from './db.js';
import { SqliteIdempotencyStore } from './idempotency.js';
import { memoryCluster } from './leases.js';
import { purgeExpired } from './retention.js';
import { SqliteSessionStore } from './sessions.js';
import { SqliteSpaceStore } from './spaces.js';
import type { Store, StoreOptions } from './store.js';
import { SqliteUsageStore } from './usage.js';
import { SqliteWebhookStore } from './webhooks.js';

export function openSqliteStore(options: StoreOptions): Store {
  const path = options.dataDir === ':memory:' ? ':memory:' : join(options.dataDir, 'resonance.db');
  const db = openDb(path);
  const checkpointer =
    options.checkpoints && path !== ':memory:'
      ? new Checkpointer(db, path, 1000, (message) => options.onError?.('WAL checkpoint failed', message))
      : null;
  return {
    kind: 'sqlite',
    auth: new SqliteAuthStore(db),
    sessions: new SqliteSessionStore(db),
    spaces: new SqliteSpaceStore(db, options.spaceSync),
    usage: new SqliteUsageStore(db),
    idempotency: new SqliteIdempotencyStore(db),
    webhooks: new SqliteWebhookStore(db),
    cluster: memoryCluster(),
    purgeExpired: (now, policy, batch) => purgeExpired(db, now, policy, batch),
    ping: async () => {
      db.prepare('SELECT 1').get();
    },
    stats: () => {
      const c = checkpointer?.stats();
      return { ...syncStats(db), checkpoints: c?.checkpoints ?? 0, truncations: c?.truncations ?? 0 };
    },
    close: async () => {
      await checkpointer?.stop();
      db.close();
    },
  };
}
