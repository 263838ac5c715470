/**
 * A cluster as an operator runs one: N real server processes on one fresh Postgres database and one Redis
 * key prefix, with distinct node ids, and Debian's haproxy in front when one entry URL is needed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type TestServer } from './server.js';
import { dropDatabase, ensureDatabase, PG_SERVER, TEST_DB_PREFIX } from './stores.js';

export const REDIS_URL = process.env.RESONANCE_TEST_REDIS ?? 'redis://127.0.0.1:6379';

export interface Cluster {
  nodes: TestServer[];
  databaseUrl: string;
  env: Record<string, string>;
  /** Starts node `i` again (same id and port) after it was killed. */
  restart(i: number): Promise<TestServer>;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (a node keeps its port across a restart, so clients and haproxy find it again). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startCluster(n: number, env: Record<string, string> = {}): Promise<Cluster> {
  const run = randomBytes(4).toString('hex');
  const databaseUrl = `${PG_SERVER}/${TEST_DB_PREFIX}cluster_${run}`;
  await ensureDatabase(databaseUrl);
  const shared = {
    RESONANCE_DATABASE_URL: databaseUrl,
    RESONANCE_REDIS_URL: REDIS_URL,
    RESONANCE_REDIS_PREFIX: `resonance-test:${run}:`,
    RESONANCE_LEASE_TTL_MS: '1500',
    // One secret for the whole deployment: a token minted by one node is good on every node.
    RESONANCE_JWT_SECRET: `cluster-test-secret-${run}`,
    ...env,
  };
  const ports = await Promise.all(Array.from({ length: n }, () => freePort()));
  const start = (i: number): Promise<TestServer> =>
    startServer({ port: ports[i]!, env: { ...shared, RESONANCE_NODE_ID: `node-${i}` } });
  // One at a time: the first runs the migrations (the others would wait on its lock anyway).
  const nodes: TestServer[] = [];
  for (let i = 0; i < n; i++) nodes.push(await start(i));
  return {
    nodes,
    databaseUrl,
    env: shared,
    restart: async (i) => (nodes[i] = await start(i)),
    stop: async () => {
      await Promise.all(nodes.map((s) => s.stop()));
      await dropDatabase(databaseUrl);
    },
  };
}

export interface LoadBalancer {
  url: string;
  stop(): Promise<void>;
}

/**
 * haproxy in front of `nodes` (HTTP, WebSocket upgrades tunnelled): least connections, so long-lived
 * sockets spread over the nodes; a node is checked on /readyz every 200 ms and a connection to a dead one
 * is redispatched.
 */
export async function startHaproxy(nodes: TestServer[]): Promise<LoadBalancer> {
  const dir = await mkdtemp(join(tmpdir(), 'resonance-haproxy-'));
  const port = await freePort();
  const servers = nodes.map((s, i) => `  server node${i} ${new URL(s.url).host} check inter 200 fall 2 rise 1`).join('\n');
  const config = `global
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
  retries 3
  option redispatch
frontend api
  bind 127.0.0.1:${port}
  default_backend nodes
backend nodes
  balance leastconn
  option httpchk GET /readyz
${servers}
`;
  const file = join(dir, 'haproxy.cfg');
  await writeFile(file, config);
  const proc: ChildProcess = spawn('haproxy', ['-f', file, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (log += c));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  // Ready once it answers through to a node.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`haproxy did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    stop: async () => {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
