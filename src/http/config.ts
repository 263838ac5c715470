/** Server settings: flags override RESONANCE_* environment variables, which override defaults (README). */
import { randomBytes } from 'node:crypto';
import type { BackendChoice } from '../engine/types.js';

export interface ServerConfig {
  host: string;
  port: number;
  dataDir: string;
  backend: BackendChoice;
  /** A dev API key created at start-up for org "dev" (never logged). */
  bootstrapKey?: string;
  /** HS256 key of access and session tokens; random per process when unset (tokens then die with it). */
  jwtSecret: Uint8Array;
  tokenTtlSeconds: number;
  maxBodyBytes: number;
  maxBasis: number;
  /** Largest steps x k^2 one /v1/hqe/run may ask for (work budget of a synchronous request). */
  maxRunWork: number;
  /** Rate limit per key: work units per window (a request costs 1 unit, run and step cost steps x k^2 / workUnit). */
  rateLimit: number;
  rateWindowSeconds: number;
  workUnit: number;
  allowPrivateWebhooks: boolean;
  logLevel: string;
}

const num = (v: string | undefined, fallback: number): number => {
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`expected a number, got "${v}"`);
  return n;
};

export function configFromEnv(env: NodeJS.ProcessEnv = process.env, overrides: Partial<ServerConfig> = {}): ServerConfig {
  const backend = (env.RESONANCE_BACKEND ?? 'auto') as BackendChoice;
  if (!['auto', 'cpu', 'webgpu'].includes(backend)) throw new Error(`RESONANCE_BACKEND must be auto, cpu or webgpu`);
  return {
    host: env.RESONANCE_HOST ?? '127.0.0.1',
    port: num(env.RESONANCE_PORT ?? env.PORT, 8080),
    dataDir: env.RESONANCE_DATA ?? './data',
    backend,
    bootstrapKey: env.RESONANCE_BOOTSTRAP_KEY || undefined,
    jwtSecret: env.RESONANCE_JWT_SECRET ? new TextEncoder().encode(env.RESONANCE_JWT_SECRET) : randomBytes(32),
    tokenTtlSeconds: num(env.RESONANCE_TOKEN_TTL, 3600),
    maxBodyBytes: num(env.RESONANCE_MAX_BODY_BYTES, 1 << 20),
    maxBasis: num(env.RESONANCE_MAX_BASIS, 2048),
    maxRunWork: num(env.RESONANCE_MAX_RUN_WORK, 2 ** 32),
    rateLimit: num(env.RESONANCE_RATE_LIMIT, 600),
    rateWindowSeconds: num(env.RESONANCE_RATE_WINDOW, 60),
    workUnit: num(env.RESONANCE_WORK_UNIT, 2 ** 24),
    allowPrivateWebhooks: env.RESONANCE_ALLOW_PRIVATE_WEBHOOKS === '1' || env.RESONANCE_ALLOW_PRIVATE_WEBHOOKS === 'true',
    logLevel: env.RESONANCE_LOG_LEVEL ?? 'info',
    ...overrides,
  };
}
