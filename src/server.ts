/**
 * One Resonance server process: store, engine, scheduler, webhooks and the HTTP app, started in order and
 * shut down gracefully (stop accepting, drain requests and streams, checkpoint sessions, close the device).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { createEngine } from './engine/select.js';
import { createApp } from './http/app.js';
import { seedBootstrapKey } from './http/auth.js';
import type { ServerConfig } from './http/config.js';
import { Idempotency } from './http/idempotency.js';
import { CredentialWatch } from './http/revocations.js';
import { RealtimeServer } from './realtime/server.js';
import { Scheduler } from './sim/scheduler.js';
import { SpaceHub } from './sim/spaces.js';
import { SqliteAuthStore } from './store/auth.js';
import { Checkpointer } from './store/checkpointer.js';
import { openDb, syncStats } from './store/db.js';
import { SqliteIdempotencyStore } from './store/idempotency.js';
import { SqliteSessionStore } from './store/sessions.js';
import { SqliteSpaceStore } from './store/spaces.js';
import { Retention } from './store/retention.js';
import { SqliteUsageStore } from './store/usage.js';
import { MemoryRateLimiter } from './http/ratelimit.js';
import { SqliteWebhookStore } from './store/webhooks.js';
import { Quotas, UsageMeter } from './sim/quotas.js';
import { WebhookService } from './webhooks/service.js';

export interface RunningServer {
  url: string;
  port: number;
  logger: Logger;
  close(): Promise<void>;
}

/**
 * JSON logs on stdout, buffered (4 KiB chunks written asynchronously): a synchronous write per request
 * stalls the event loop whenever the log file's pages are being written back.
 */
export function createLogger(level: string): Logger {
  return pino({ level }, pino.destination({ dest: 1, sync: false, minLength: 4096 }));
}

export async function startServer(config: ServerConfig, logger: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  const dbPath = join(config.dataDir, 'resonance.db');
  const db = openDb(dbPath);
  const checkpointer = new Checkpointer(db, dbPath, 1000, (message) => logger.error({ message }, 'WAL checkpoint failed'));
  const authStore = new SqliteAuthStore(db);
  await seedBootstrapKey(authStore, config.bootstrapKey);
  const sessions = new SqliteSessionStore(db);
  const usageStore = new SqliteUsageStore(db);
  const quotas = new Quotas(usageStore, config.quotaDefaults);
  const usage = new UsageMeter(usageStore, (err) => logger.error({ err }, 'usage flush failed'));
  // One budget per credential for REST requests and WebSocket proposals alike.
  const rateLimiter = new MemoryRateLimiter(config.rateLimit, config.rateWindowSeconds);
  usage.start();
  const retention = new Retention(
    db,
    { sessionRetentionMs: config.sessionRetentionHours * 3_600_000, deliveryRetentionMs: config.deliveryRetentionHours * 3_600_000 },
    (err) => logger.error({ err }, 'retention sweep failed'),
  );
  retention.start();
  const engine = await createEngine({ backend: config.backend });
  logger.info({ backend: engine.info.backend, adapter: engine.info.adapter }, 'engine ready');
  const webhooks = new WebhookService({ store: new SqliteWebhookStore(db), allowPrivate: config.allowPrivateWebhooks, ports: config.webhookPorts, logger, quotas });
  const scheduler = new Scheduler({
    engine,
    sessions,
    onEvent: async (orgId, type, data) => {
      await webhooks.emit(orgId, type, data);
    },
    onError: (err) => logger.error({ err }, 'scheduler error'),
    quotas,
    usage,
    storageUsed: (orgId) => usageStore.storageBytes(orgId),
  });
  const spaces = new SpaceHub({
    scheduler,
    store: new SqliteSpaceStore(db, config.spaceSync),
    maxBasis: config.maxBasis,
    idleEvictMs: config.spaceIdleEvictMs,
    checkpointEveryMs: config.spaceCheckpointMs,
    replayMaxDeltas: config.replayMaxDeltas,
    replayMaxBytes: config.replayMaxBytes,
    onEvent: async (orgId, type, data) => {
      await webhooks.emit(orgId, type, data);
    },
    onError: (err) => logger.error({ err }, 'space error'),
    quotas,
    usage,
    storageUsed: (orgId) => usageStore.storageBytes(orgId),
  });
  await spaces.start();
  await scheduler.start();
  webhooks.start();
  // Releases Idempotency-Key claims left in flight by a process that died, then purges expired keys.
  const idempotency = new Idempotency(new SqliteIdempotencyStore(db), (err) => logger.error({ err }, 'idempotency purge failed'));
  await idempotency.start();
  // Ends WebSockets and SSE streams whose credential is revoked (by the CLI, another process) or member removed.
  const credentials = new CredentialWatch({
    authStore,
    memberRemoved: async (spaceId, memberId) => (await spaces.member(spaceId, memberId))?.removedAt != null,
    onError: (err) => logger.error({ err }, 'revocation sweep failed'),
  });
  credentials.start();

  let ready = true;
  const app = createApp({
    config, logger, scheduler, sessions, authStore, webhooks, spaces, quotas, usage, usageStore, rateLimiter,
    idempotency,
    credentials,
    isReady: () => ready,
    realtimeConnections: () => realtime.stats().connections,
    storeStats: () => {
      const c = checkpointer.stats();
      return { ...syncStats(db), checkpoints: c.checkpoints, truncations: c.truncations };
    },
  });
  const server: Server = createServer(app.callback());
  // WebSocket upgrades of /spaces/{id} on the same port.
  const realtime = new RealtimeServer({ config, spaces, logger, credentials, budget: rateLimiter, quotas, usage });
  realtime.listen(server);
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  logger.info({ url }, 'listening');

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      ready = false;
      const drained = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // WebSockets get a 1001 close (and up to 1 s for the handshake) before the hub stops.
      await realtime.close();
      // Streams (SSE) never finish by themselves: end them after a grace period for in-flight requests.
      const grace = setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, 2000);
      await drained;
      clearTimeout(grace);
      await credentials.stop();
      await idempotency.stop();
      await spaces.stop();
      await scheduler.stop();
      await webhooks.stop();
      await usage.stop();
      await retention.stop();
      await engine.destroy();
      await checkpointer.stop();
      db.close();
      logger.info('stopped');
      logger.flush();
    })());
  return { url, port, logger, close };
}
