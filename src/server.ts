/**
 * One Resonance server process: store, engine, scheduler, webhooks and the HTTP app, started in order and
 * shut down gracefully (stop accepting, drain requests and streams, checkpoint sessions, close the device).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import type { AddressInfo, Socket } from 'node:net';
import { pino, type Logger } from 'pino';
import type { Broker } from './cluster/broker.js';
import { MemoryBroker } from './cluster/memory-broker.js';
import { ClusterNode } from './cluster/node.js';
import { Ownership } from './cluster/ownership.js';
import { Rpc } from './cluster/rpc.js';
import { RedisBroker } from './cluster/redis-broker.js';
import { createEngine } from './engine/select.js';
import type { EngineInfo } from './engine/types.js';
import { createApp } from './http/app.js';
import { seedBootstrapKey } from './http/auth.js';
import type { ServerConfig } from './http/config.js';
import { Idempotency } from './http/idempotency.js';
import { CredentialCache } from './http/credential-cache.js';
import { CredentialWatch } from './http/revocations.js';
import { RealtimeServer } from './realtime/server.js';
import { asyncApiDocument, asyncApiYaml } from './realtime/asyncapi.js';
import type { AsyncApiDocument } from './http/routes/reference.js';
import { Scheduler } from './sim/scheduler.js';
import { toRemoteError } from './sim/space-cluster.js';
import { SpaceHub } from './sim/spaces.js';
import { Retention } from './store/retention.js';
import { openStore } from './store/store.js';
import { WindowRateLimiter } from './http/ratelimit.js';
import { Quotas, UsageMeter } from './sim/quotas.js';
import { WebhookService } from './webhooks/service.js';

export interface RunningServer {
  url: string;
  port: number;
  logger: Logger;
  /** The engine chosen: backend, adapter, precision. */
  engine: EngineInfo;
  /** Why RESONANCE_BACKEND=auto took the CPU engine (one line), or null. */
  cpuFallback: string | null;
  close(): Promise<void>;
}

/**
 * JSON logs on stdout, buffered (4 KiB chunks written asynchronously): a synchronous write per request
 * stalls the event loop whenever the log file's pages are being written back.
 */
export function createLogger(level: string): Logger {
  return pino({ level }, pino.destination({ dest: 1, sync: false, minLength: 4096 }));
}

/** Answers every request while the process starts: the port is bound first, so the node knows its name. */
function starting(_req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(503, { 'content-type': 'application/problem+json', 'retry-after': '1' });
  res.end(JSON.stringify({ type: 'about:blank', title: 'Starting', status: 503, code: 'starting', detail: 'the server is starting' }));
}

/** RESONANCE_NODE_ID, else host:port as listening (with the machine's name when listening on every address). */
function nodeName(config: ServerConfig, port: number): string {
  if (config.nodeId) return config.nodeId;
  const wildcard = config.host === '0.0.0.0' || config.host === '::' || config.host === '';
  const host = wildcard ? hostname() : config.host.includes(':') ? `[${config.host}]` : config.host;
  return `${host}:${port}`;
}

export async function startServer(config: ServerConfig, logger: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  // Listen first: a port in use fails at once, and the node's default name (host:port) is known before
  // anything that names it starts. Until the app is ready every request gets a 503.
  const server: Server = createServer(starting);
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
  const nodeId = nodeName(config, port);
  const bootId = randomUUID();
  try {
    return await startNode(config, logger, { server, sockets, port, url, nodeId, bootId });
  } catch (err) {
    server.close();
    for (const s of sockets) s.destroy();
    throw err;
  }
}

interface Listening {
  server: Server;
  sockets: Set<Socket>;
  port: number;
  url: string;
  nodeId: string;
  bootId: string;
}

/**
 * Starts everything after the port. Each part that has started registers how to stop it in `undo`; when a
 * later part fails (Redis or Postgres unreachable, a bad engine), those are stopped in reverse order so that
 * the process can exit instead of hanging on a worker thread, a connection or a timer.
 */
async function startNode(config: ServerConfig, logger: Logger, listening: Listening): Promise<RunningServer> {
  const undo: Array<() => unknown> = [];
  try {
    return await startParts(config, logger, listening, undo);
  } catch (err) {
    for (const stop of undo.reverse()) {
      try {
        await stop();
      } catch (stopErr) {
        logger.warn({ err: stopErr }, 'stopping after a failed start');
      }
    }
    throw err;
  }
}

async function startParts(config: ServerConfig, logger: Logger, { server, sockets, port, url, nodeId, bootId }: Listening, undo: Array<() => unknown>): Promise<RunningServer> {
  const store = await openStore({
    dataDir: config.dataDir,
    databaseUrl: config.databaseUrl,
    spaceSync: config.spaceSync,
    checkpoints: true,
    onError: (message, err) => logger.error({ err }, message),
  });
  undo.push(() => store.close());
  logger.info({ store: store.kind }, 'store ready');
  const authStore = store.auth;
  await seedBootstrapKey(authStore, config.bootstrapKey);
  const sessions = store.sessions;
  const usageStore = store.usage;
  // The broker between nodes (src/cluster/broker.ts): Redis for a cluster node, memory for one process.
  const broker: Broker = config.redisUrl
    ? await RedisBroker.open({ url: config.redisUrl, nodeId, prefix: config.redisPrefix, onError: (err) => logger.warn({ err: err.message }, 'redis connection error') }).catch(
        (err: Error) => {
          // ioredis says only "Connection is closed."; the URL is not repeated (it may hold a password).
          throw new Error(`cannot connect to Redis (RESONANCE_REDIS_URL): ${err.message}`, { cause: err });
        },
      )
    : new MemoryBroker(nodeId);
  undo.push(() => broker.close());
  const quotas = new Quotas(usageStore, config.quotaDefaults, Date.now, broker.windows);
  const usage = new UsageMeter(usageStore, (err) => logger.error({ err }, 'usage flush failed'));
  // One budget per credential for REST requests and WebSocket proposals alike, on every node.
  const rateLimiter = new WindowRateLimiter(config.rateLimit, config.rateWindowSeconds, Date.now, broker.windows);
  usage.start();
  undo.push(() => usage.stop());
  const retention = new Retention(
    (now, policy) => store.purgeExpired(now, policy),
    { sessionRetentionMs: config.sessionRetentionHours * 3_600_000, deliveryRetentionMs: config.deliveryRetentionHours * 3_600_000 },
    (err) => logger.error({ err }, 'retention sweep failed'),
  );
  retention.start();
  undo.push(() => retention.stop());
  let cpuFallback: string | null = null;
  const engine = await createEngine({ backend: config.backend, onCpuFallback: (reason) => void (cpuFallback = reason) });
  undo.push(() => engine.destroy());
  logger.info({ backend: engine.info.backend, adapter: engine.info.adapter, ...(cpuFallback ? { cpuFallback } : {}) }, 'engine ready');
  const webhooks = new WebhookService({ store: store.webhooks, allowPrivate: config.allowPrivateWebhooks, ports: config.webhookPorts, logger, quotas });
  // This node's heartbeat and leases (GET /v1/cluster; ownership of spaces and sessions).
  const ownership = new Ownership({
    cluster: store.cluster, nodeId, bootId, url, startedAt: Date.now(), ttlMs: config.leaseTtlMs,
    onLost: (resource) => {
      logger.warn({ resource }, 'lease lost');
      if (resource.startsWith('space:')) spaces.lost(resource.slice('space:'.length));
      else scheduler.leaseLost(resource);
    },
    onError: (err) => logger.error({ err }, 'heartbeat failed'),
  });
  await ownership.start();
  undo.push(() => ownership.stop());
  // Calls between nodes: writes to a space or session go to the node that owns it.
  const rpc = new Rpc(broker, 2000, toRemoteError);
  await rpc.start();
  undo.push(() => rpc.stop());
  const node = new ClusterNode(ownership, broker, rpc, store.cluster);
  logger.info({ node: nodeId, store: store.kind, broker: broker.health().kind }, 'node ready');
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
    // Sessions are simulated by the holder of their lease; steps and closes are forwarded to it.
    cluster: node,
    onWarning: (message, fields) => logger.warn(fields, message),
  });
  const spaces = new SpaceHub({
    scheduler,
    cluster: node,
    leaveAllOnStart: store.kind === 'sqlite',
    presence: broker.presence,
    store: store.spaces,
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
  undo.push(() => spaces.stop());
  await scheduler.start();
  // Both stopped as close() stops them: the spaces first.
  undo.splice(-1, 1, async () => {
    await spaces.stop();
    await scheduler.stop();
  });
  webhooks.start();
  undo.push(() => webhooks.stop());
  // Releases Idempotency-Key claims left in flight by a process that died, then purges expired keys.
  const idempotency = new Idempotency(store.idempotency, bootId, (err) => logger.error({ err }, 'idempotency purge failed'));
  await idempotency.start();
  undo.push(() => idempotency.stop());
  // Ends WebSockets and SSE streams whose credential is revoked (by the CLI, another process) or member removed.
  // Requests ask it instead of the store: a credential is looked up once per RESONANCE_AUTH_CACHE_MS at most.
  const credentialCache = new CredentialCache(authStore, { ttlMs: config.authCacheMs });
  const credentials = new CredentialWatch({
    authStore,
    cache: credentialCache,
    memberRemoved: async (spaceId, memberId) => (await spaces.member(spaceId, memberId))?.removedAt != null,
    onError: (err) => logger.error({ err }, 'revocation sweep failed'),
  });
  credentials.start();
  undo.push(() => credentials.stop());
  // A revocation announced by another process (the CLI) acts here at once, not after the cache's second.
  const unfollowRevocations = await credentials.follow(broker);
  undo.push(unfollowRevocations);

  // WebSocket upgrades of /spaces/{id} (listening below), and the per-space feeds the SSE streams share.
  const realtime = new RealtimeServer({ config, spaces, presence: broker.presence, logger, credentials, budget: rateLimiter, quotas, usage });
  let ready = true;
  const app = createApp({
    config, logger, scheduler, sessions, authStore, webhooks, spaces, spaceStreams: realtime, quotas, usage, usageStore, rateLimiter,
    idempotency,
    credentials,
    credentialCache,
    isReady: () => ready,
    nodeId: () => nodeId,
    storeKind: store.kind,
    connections: async () => ({
      store: { kind: store.kind, ok: await store.ping().then(() => true, () => false) },
      broker: broker.health(),
    }),
    cluster: store.cluster,
    leaseTtlMs: config.leaseTtlMs,
    realtimeConnections: () => realtime.stats().connections,
    storeStats: () => store.stats(),
    // The document is this project's own: the reference page reads the parts it shows.
    realtimeContract: { document: () => asyncApiDocument() as unknown as AsyncApiDocument, yaml: asyncApiYaml },
  });
  server.removeListener('request', starting);
  server.on('request', app.callback());
  // WebSocket upgrades of /spaces/{id} on the same port.
  realtime.listen(server);
  logger.info({ url, node: nodeId }, 'listening');

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
      // Leases are handed over at once (the next owner need not wait for them to lapse).
      await ownership.stop();
      await rpc.stop();
      await unfollowRevocations();
      await broker.close();
      await store.close();
      logger.info('stopped');
      logger.flush();
    })());
  return { url, port, logger, engine: engine.info, cpuFallback, close };
}
