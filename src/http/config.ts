/** Server settings: flags override RESONANCE_* environment variables, which override defaults (README). */
import { randomBytes } from 'node:crypto';
import type { BackendChoice } from '../engine/types.js';
import { QUOTA_NAMES, type QuotaName } from '../model/tenancy.js';
import { DEFAULT_REPLAY_MAX_BYTES, DEFAULT_REPLAY_MAX_DELTAS } from '../sim/spaces.js';
import type { RealtimeSync } from '../store/spaces.js';
import { parseWebhookPorts } from '../webhooks/targets.js';
import { DEFAULT_AUTH_CACHE_MS } from './credential-cache.js';
import { DEFAULT_SEND_TIMEOUT_MS, DEFAULT_STREAM_BUFFER_BYTES } from './sse.js';
import { parseCorsOrigins } from './cors.js';

/**
 * `errors` logs the requests answered with a status >= 400 or slower than SLOW_REQUEST_MS: at thousands of
 * requests a second a line for every success costs a tenth of a node's capacity, and the metrics count them.
 */
export const ACCESS_LOGS = ['all', 'errors', 'off'] as const;
export type AccessLog = (typeof ACCESS_LOGS)[number];

/** A request slower than this is logged under RESONANCE_ACCESS_LOG=errors, whatever its status. */
export const SLOW_REQUEST_MS = 1000;

export interface ServerConfig {
  host: string;
  port: number;
  dataDir: string;
  /** Postgres instead of the SQLite file under dataDir (RESONANCE_DATABASE_URL; docs/scaling.md). */
  databaseUrl?: string;
  /** Makes the process a cluster node: Redis carries what the nodes share (RESONANCE_REDIS_URL; docs/scaling.md). */
  redisUrl?: string;
  /** Starts every Redis key and channel of this deployment (RESONANCE_REDIS_PREFIX). */
  redisPrefix: string;
  /** This node's name (RESONANCE_NODE_ID); default host:port as listening (the machine's name for a wildcard host). */
  nodeId?: string;
  /** How long an owner's lease on a space or HQE session outlives its last renewal: the longest failover wait (ms). */
  leaseTtlMs: number;
  backend: BackendChoice;
  /** A dev API key created at start-up for org "dev" (never logged). */
  bootstrapKey?: string;
  /** HS256 key of access and session tokens; random per process when unset (tokens then die with it). */
  jwtSecret: Uint8Array;
  tokenTtlSeconds: number;
  /**
   * How long (ms) a credential the store found active is trusted without asking again (credential-cache.ts):
   * the most a revocation written by another process takes to reach this one. 0: ask on every request.
   */
  authCacheMs: number;
  maxBodyBytes: number;
  maxBasis: number;
  /** Largest steps x k^2 one /v1/hqe/run may ask for (work budget of a synchronous request). */
  maxRunWork: number;
  /**
   * Largest steps x (restarts + 1) x k^2 of a session's schedule, all charged at its creation; unset: what
   * one rate window pays besides the request's own unit ((rateLimit - 1) x workUnit). Longer work continues
   * through POST .../step.
   */
  maxSessionWork?: number;
  /** Rate limit per key: work units per window (a request costs 1 unit; runs, sessions and steps also their work, README "Charging HQE work"). */
  rateLimit: number;
  rateWindowSeconds: number;
  workUnit: number;
  allowPrivateWebhooks: boolean;
  /** Ports a webhook URL may name (RESONANCE_WEBHOOK_PORTS); any port while private webhooks are allowed. */
  webhookPorts: number[];
  /** Origins whose pages may call the API from a browser (RESONANCE_CORS_ORIGINS; cors.ts); none by default. */
  corsOrigins: string[];
  /** When set, GET /metrics needs `Authorization: Bearer <token>`; unset, it answers only on a loopback listen address. */
  metricsToken?: string;
  logLevel: string;
  /** Which requests get a log line (RESONANCE_ACCESS_LOG; app.ts): every one, the failed and slow ones, or none. */
  accessLog: AccessLog;
  /** Lifetime of the realtime session tokens minted by POST /v1/spaces/{id}/sessions. */
  sessionTokenTtlSeconds: number;
  /** A space with no realtime connection stops ticking at once and leaves the engine (checkpointed) after this. */
  spaceIdleEvictMs: number;
  /** How often a live space's engine state is checkpointed. */
  spaceCheckpointMs: number;
  /** Largest client frame accepted over WebSocket; larger ones get an error frame. */
  wsMaxFrameBytes: number;
  /** Telemetry is conflated while a connection's send buffer holds more than this (bytes). */
  wsSlowBytes: number;
  /** Past this many buffered bytes a connection stops getting deltas and is sent a fresh snapshot once it drains. */
  wsBufferCapBytes: number;
  /** Proposals one WebSocket connection may make per second (each also costs its credential one rate-limit unit). */
  wsProposalsPerSecond: number;
  /** Unsent bytes an SSE stream may hold for its client; past them the server ends the stream (Last-Event-ID resumes it). */
  streamBufferBytes: number;
  /** An SSE stream whose client takes nothing for this long while the server waits on it is ended (ms). */
  streamSendTimeoutMs: number;
  /** A resume (WebSocket hello.lastVersion, SSE Last-Event-ID) replays at most this many deltas; more: a snapshot instead. */
  replayMaxDeltas: number;
  /** ... and at most this many bytes of stored ops; more: a snapshot instead. */
  replayMaxBytes: number;
  /** When space deltas and member joins are acknowledged: in the WAL (`wal`) or after its fsync (`fsync`); see docs/spaces.md. */
  spaceSync: RealtimeSync;
  /** An ended HQE session and its events are deleted this long after it ended (hours). */
  sessionRetentionHours: number;
  /** Finished webhook deliveries are deleted this long after they were made (hours). */
  deliveryRetentionHours: number;
  /** Quota defaults for every org (RESONANCE_QUOTA_<NAME>); `resonance orgs set-quota` overrides them per org. */
  quotaDefaults: Partial<Record<QuotaName, number>>;
}

/** RESONANCE_QUOTA_<NAME> (e.g. RESONANCE_QUOTA_HQE_SESSIONS) for each quota of the catalogue. */
function quotaDefaults(env: NodeJS.ProcessEnv): Partial<Record<QuotaName, number>> {
  const out: Partial<Record<QuotaName, number>> = {};
  for (const name of QUOTA_NAMES) {
    const variable = `RESONANCE_QUOTA_${name.toUpperCase()}`;
    const v = env[variable];
    if (v === undefined || v === '') continue;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${variable} must be a non-negative number (got "${v}")`);
    out[name] = n;
  }
  return out;
}

const num = (v: string | undefined, fallback: number): number => {
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`expected a number, got "${v}"`);
  return n;
};

/** The variable `name` of `env` as a number >= 0, `fallback` when unset; anything else is an error naming it. */
function nonNegative(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number (got "${v}")`);
  return n;
}

/** The variable `name` of `env` when it is one of `allowed`, `fallback` when unset; anything else is an error naming it. */
function oneOf<T extends string>(env: NodeJS.ProcessEnv, name: string, allowed: readonly T[], fallback: T): T {
  const v = env[name];
  if (v === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(v)) {
    throw new Error(`${name} must be ${allowed.slice(0, -1).join(', ')} or ${allowed[allowed.length - 1]} (got "${v}")`);
  }
  return v as T;
}

/** A postgres:// URL, checked at start so that a typo is named rather than met as a connection error. */
function databaseUrl(v: string): string {
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw new Error('RESONANCE_DATABASE_URL must be a postgres:// URL');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') throw new Error(`RESONANCE_DATABASE_URL must be a postgres:// URL (got ${url.protocol}//…)`);
  return v;
}

function redisUrl(v: string): string {
  const ok = URL.canParse(v) && ['redis:', 'rediss:'].includes(new URL(v).protocol);
  if (!ok) throw new Error('RESONANCE_REDIS_URL must be a redis:// or rediss:// URL');
  return v;
}

/** Shown in headers and logs and used in Redis channel names: printable, no spaces, bounded. */
function nodeId(v: string): string {
  if (!/^[A-Za-z0-9._:@-]{1,128}$/.test(v)) throw new Error(`RESONANCE_NODE_ID must be 1-128 characters of A-Z a-z 0-9 . _ : @ - (got "${v}")`);
  return v;
}

export function configFromEnv(env: NodeJS.ProcessEnv = process.env, overrides: Partial<ServerConfig> = {}): ServerConfig {
  const backend = oneOf<BackendChoice>(env, 'RESONANCE_BACKEND', ['auto', 'cpu', 'webgpu'], 'auto');
  return {
    host: env.RESONANCE_HOST ?? '127.0.0.1',
    port: num(env.RESONANCE_PORT ?? env.PORT, 8080),
    dataDir: env.RESONANCE_DATA ?? './data',
    ...(env.RESONANCE_DATABASE_URL ? { databaseUrl: databaseUrl(env.RESONANCE_DATABASE_URL) } : {}),
    ...(env.RESONANCE_REDIS_URL ? { redisUrl: redisUrl(env.RESONANCE_REDIS_URL) } : {}),
    redisPrefix: env.RESONANCE_REDIS_PREFIX || 'resonance:',
    ...(env.RESONANCE_NODE_ID ? { nodeId: nodeId(env.RESONANCE_NODE_ID) } : {}),
    leaseTtlMs: num(env.RESONANCE_LEASE_TTL_MS, 5000),
    backend,
    bootstrapKey: env.RESONANCE_BOOTSTRAP_KEY || undefined,
    jwtSecret: env.RESONANCE_JWT_SECRET ? new TextEncoder().encode(env.RESONANCE_JWT_SECRET) : randomBytes(32),
    tokenTtlSeconds: num(env.RESONANCE_TOKEN_TTL, 3600),
    authCacheMs: nonNegative(env, 'RESONANCE_AUTH_CACHE_MS', DEFAULT_AUTH_CACHE_MS),
    maxBodyBytes: num(env.RESONANCE_MAX_BODY_BYTES, 1 << 20),
    maxBasis: num(env.RESONANCE_MAX_BASIS, 2048),
    maxRunWork: num(env.RESONANCE_MAX_RUN_WORK, 2 ** 32),
    ...(env.RESONANCE_MAX_SESSION_WORK ? { maxSessionWork: num(env.RESONANCE_MAX_SESSION_WORK, 0) } : {}),
    rateLimit: num(env.RESONANCE_RATE_LIMIT, 600),
    rateWindowSeconds: num(env.RESONANCE_RATE_WINDOW, 60),
    workUnit: num(env.RESONANCE_WORK_UNIT, 2 ** 24),
    allowPrivateWebhooks: env.RESONANCE_ALLOW_PRIVATE_WEBHOOKS === '1' || env.RESONANCE_ALLOW_PRIVATE_WEBHOOKS === 'true',
    webhookPorts: parseWebhookPorts(env.RESONANCE_WEBHOOK_PORTS, 'RESONANCE_WEBHOOK_PORTS'),
    corsOrigins: parseCorsOrigins(env.RESONANCE_CORS_ORIGINS),
    metricsToken: env.RESONANCE_METRICS_TOKEN || undefined,
    logLevel: env.RESONANCE_LOG_LEVEL ?? 'info',
    accessLog: oneOf<AccessLog>(env, 'RESONANCE_ACCESS_LOG', ACCESS_LOGS, 'errors'),
    sessionTokenTtlSeconds: num(env.RESONANCE_SESSION_TOKEN_TTL, 900),
    spaceIdleEvictMs: num(env.RESONANCE_SPACE_IDLE_EVICT_MS, 60_000),
    spaceCheckpointMs: num(env.RESONANCE_SPACE_CHECKPOINT_MS, 5_000),
    wsMaxFrameBytes: num(env.RESONANCE_WS_MAX_FRAME_BYTES, 64 * 1024),
    wsSlowBytes: num(env.RESONANCE_WS_SLOW_BYTES, 64 * 1024),
    wsBufferCapBytes: num(env.RESONANCE_WS_BUFFER_CAP_BYTES, 1024 * 1024),
    wsProposalsPerSecond: num(env.RESONANCE_WS_PROPOSALS_PER_SECOND, 100),
    streamBufferBytes: num(env.RESONANCE_STREAM_BUFFER_BYTES, DEFAULT_STREAM_BUFFER_BYTES),
    streamSendTimeoutMs: num(env.RESONANCE_STREAM_SEND_TIMEOUT_MS, DEFAULT_SEND_TIMEOUT_MS),
    replayMaxDeltas: num(env.RESONANCE_REPLAY_MAX_DELTAS, DEFAULT_REPLAY_MAX_DELTAS),
    replayMaxBytes: num(env.RESONANCE_REPLAY_MAX_BYTES, DEFAULT_REPLAY_MAX_BYTES),
    spaceSync: oneOf(env, 'RESONANCE_SPACE_SYNC', ['wal', 'fsync'] as const, 'wal'),
    quotaDefaults: quotaDefaults(env),
    sessionRetentionHours: num(env.RESONANCE_SESSION_RETENTION_HOURS, 168),
    deliveryRetentionHours: num(env.RESONANCE_WEBHOOK_DELIVERY_RETENTION_HOURS, 168),
    ...overrides,
  };
}
