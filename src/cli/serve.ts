/** `resonance serve`: the HTTP service, until SIGINT/SIGTERM (graceful). */
import { resolve } from 'node:path';
import { configFromEnv, type ServerConfig } from '../http/config.js';
import { BOOTSTRAP_ORG } from '../http/auth.js';
import { type RunningServer, startServer } from '../server.js';
import type { BackendChoice } from '../engine/types.js';
import { exitCodeFor, parseCommand, UsageError } from './args.js';

export const SERVE_USAGE = `usage: resonance serve [options]

Starts the HTTP service (REST API, WebSocket spaces, demo pages) until SIGINT/SIGTERM, then shuts down
gracefully. Prints "listening on URL" first, then where the demo pages, the API docs and the data are.

options:
  --port N                    port (default: RESONANCE_PORT, else PORT, else 8080; 0 picks a free one)
  --host ADDR                 listen address (default: RESONANCE_HOST, else 127.0.0.1)
  --data DIR                  data directory of the SQLite store (default: RESONANCE_DATA, else ./data)
  --backend auto|cpu|webgpu   engine (default: RESONANCE_BACKEND, else auto: WebGPU on a GPU, else CPU)
  -h, --help                  this text

Every other setting is a RESONANCE_* environment variable (README, "The HTTP service"). For a dev API key
of org "${BOOTSTRAP_ORG}", set RESONANCE_BOOTSTRAP_KEY; otherwise create keys with \`resonance keys create\`.

exit codes: 0 stopped by a signal, 1 could not start (port in use, store unreachable), 2 invalid flags`;

function serveConfig(args: string[]): ServerConfig {
  const { values } = parseCommand({ name: 'serve', usage: SERVE_USAGE, positionals: 0 }, args, {
    port: { type: 'string' },
    host: { type: 'string' },
    data: { type: 'string' },
    backend: { type: 'string' },
  });
  const overrides: Partial<ServerConfig> = {};
  if (values.port !== undefined) {
    const port = Number(values.port);
    if (values.port.trim() === '' || !Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be 0..65535 (got "${values.port}")`, 'serve');
    overrides.port = port;
  }
  if (values.host !== undefined) overrides.host = values.host;
  if (values.data !== undefined) overrides.dataDir = values.data;
  if (values.backend !== undefined) {
    if (!['auto', 'cpu', 'webgpu'].includes(values.backend)) throw new UsageError(`--backend must be auto, cpu or webgpu (got "${values.backend}")`, 'serve');
    overrides.backend = values.backend as BackendChoice;
  }
  try {
    return configFromEnv(process.env, overrides);
  } catch (err) {
    // A RESONANCE_* variable out of range: configFromEnv names it.
    throw new UsageError((err as Error).message, 'serve');
  }
}

/** One line for a port that cannot be bound, or null for any other error. */
function listenProblem(err: unknown, config: ServerConfig): string | null {
  const e = err as NodeJS.ErrnoException;
  if (e.syscall !== 'listen' && e.code !== 'ENOTFOUND') return null;
  const where = `port ${config.port} on ${config.host}`;
  switch (e.code) {
    case 'EADDRINUSE':
      return `${where} is in use (another server is listening there); choose another with --port N or RESONANCE_PORT (0 picks a free one)`;
    case 'EACCES':
      return `not permitted to listen on ${where} (ports below 1024 need privileges); choose another with --port N`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${config.host}: not an address of this machine (--host, RESONANCE_HOST)`;
    case 'ENOTFOUND':
      return `cannot listen on ${config.host}: no such host (--host, RESONANCE_HOST)`;
    default:
      return `cannot listen on ${where}: ${e.message}`;
  }
}

/** Where the data lives, without a password: the SQLite file, or the Postgres host and database. */
function dataLocation(config: ServerConfig): string {
  if (!config.databaseUrl) return `${resolve(config.dataDir, 'resonance.db')} (SQLite; --data, RESONANCE_DATA)`;
  const url = new URL(config.databaseUrl);
  return `postgres://${url.host}${url.pathname} (RESONANCE_DATABASE_URL)`;
}

/**
 * The start banner. Its first line, `listening on URL`, is parsed by scripts and tests (the port when
 * started with --port 0); the rest is for the person who started it. One write, so that no log line of the
 * (asynchronous) logger lands inside it.
 */
export function banner(server: RunningServer, config: ServerConfig): string {
  const { backend, adapter } = server.engine;
  const engine = `${adapter.startsWith(backend) ? adapter : `${backend}: ${adapter}`}${server.cpuFallback ? `; ${server.cpuFallback}` : ''}`;
  // `resonance keys` finds the same store by itself unless --data moved it.
  const dataFlag = config.databaseUrl || config.dataDir === (process.env.RESONANCE_DATA || './data') ? '' : ` --data ${config.dataDir}`;
  const key = config.bootstrapKey
    ? `X-Api-Key: the value of RESONANCE_BOOTSTRAP_KEY (org "${BOOTSTRAP_ORG}")`
    : `resonance keys create --org NAME${dataFlag}   (or a dev key: RESONANCE_BOOTSTRAP_KEY=...)`;
  return [
    `listening on ${server.url}`,
    `  demo     ${server.url}/demo`,
    `  API docs ${server.url}/docs`,
    `  engine   ${engine}`,
    `  data     ${dataLocation(config)}`,
    `  API key  ${key}`,
  ].join('\n') + '\n';
}

export async function serveCommand(args: string[]): Promise<number> {
  let config: ServerConfig;
  try {
    config = serveConfig(args);
  } catch (err) {
    return exitCodeFor(err);
  }
  let server: RunningServer;
  try {
    server = await startServer(config);
  } catch (err) {
    const problem = listenProblem(err, config);
    if (!problem) throw err;
    process.stderr.write(`resonance serve: ${problem}\n`);
    return 1;
  }
  process.stdout.write(banner(server, config));
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      server.logger.info({ signal }, 'shutting down');
      server.close().then(resolve, (err: unknown) => {
        server.logger.error({ err }, 'shutdown failed');
        resolve();
      });
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  return 0;
}
