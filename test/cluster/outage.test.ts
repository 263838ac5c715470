/**
 * Postgres or Redis going away under a running cluster node: it answers 503 problems for what needs them,
 * reports itself not ready, never exits, and carries on when they are back. The outage is real for the
 * node: its connections go through a TCP relay that this test cuts (every open connection reset, new
 * ones refused) and restores.
 */
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, REDIS_URL } from '../helpers/cluster.js';
import { Api } from '../helpers/realtime.js';
import { startServer, type TestServer, waitFor } from '../helpers/server.js';
import { dropDatabase, ensureDatabase, PG_SERVER, TEST_DB_PREFIX } from '../helpers/stores.js';

/** A TCP relay to `target` on a fixed local port, which can be cut and restored. */
class Relay {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  private constructor(
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  static async open(target: { host: string; port: number }): Promise<Relay> {
    const relay = new Relay(await freePort(), target);
    await relay.restore();
    return relay;
  }

  restore(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.target);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    this.server = server;
    return new Promise((resolve) => server.listen(this.port, '127.0.0.1', () => resolve()));
  }

  cut(): Promise<void> {
    for (const s of this.sockets) s.resetAndDestroy();
    const server = this.server;
    this.server = null;
    return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }
}

let node: TestServer;
let pg: Relay;
let redis: Relay;
let databaseUrl: string;
let api: Api;

beforeAll(async () => {
  const run = randomBytes(4).toString('hex');
  databaseUrl = `${PG_SERVER}/${TEST_DB_PREFIX}outage_${run}`;
  await ensureDatabase(databaseUrl);
  const pgUrl = new URL(databaseUrl);
  const redisUrl = new URL(REDIS_URL);
  pg = await Relay.open({ host: pgUrl.hostname, port: Number(pgUrl.port || 5432) });
  redis = await Relay.open({ host: redisUrl.hostname, port: Number(redisUrl.port || 6379) });
  pgUrl.host = `127.0.0.1:${pg.port}`;
  node = await startServer({
    env: {
      RESONANCE_DATABASE_URL: pgUrl.toString(),
      RESONANCE_REDIS_URL: `redis://127.0.0.1:${redis.port}`,
      RESONANCE_REDIS_PREFIX: `resonance-test:${run}:`,
      RESONANCE_NODE_ID: 'outage-node',
    },
  });
  api = new Api(node.url);
}, 60_000);

afterAll(async () => {
  await node?.stop();
  await pg?.cut();
  await redis?.cut();
  await dropDatabase(databaseUrl);
});

const ready = async (): Promise<{ status: number; json: Record<string, unknown> }> => {
  const r = await fetch(`${node.url}/readyz`);
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
};

describe('a node whose dependencies go away', () => {
  it('answers 503 while Postgres is unreachable, stays up, and carries on when it is back', async () => {
    const space = await api.space();
    expect((await ready()).status).toBe(200);
    await pg.cut();
    const down = await waitFor('not ready', async () => {
      const r = await ready();
      return r.status === 503 ? r : undefined;
    }, 10_000, 100);
    expect(down.json).toMatchObject({ ready: false, connections: { store: { kind: 'postgres', ok: false }, broker: { kind: 'redis', ok: true } } });
    // A request that needs the store: a problem with Retry-After, not a 500 and not a hang.
    const started = Date.now();
    const r = await api.call('POST', '/v1/spaces', { name: 'during-outage', basis: { primes: [2, 3, 5] } });
    expect(Date.now() - started).toBeLessThan(8000);
    expect(r.status).toBe(503);
    expect(r.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(r.json).toMatchObject({ status: 503, code: 'service_unavailable' });
    expect(r.headers.get('retry-after')).toBe('1');
    expect((await fetch(`${node.url}/healthz`)).status).toBe(200);

    await pg.restore();
    await waitFor('ready again', async () => ((await ready()).status === 200 ? true : undefined), 15_000, 200);
    const after = await api.call('GET', `/v1/spaces/${space.id}`);
    expect(after.status).toBe(200);
    expect((await api.call('POST', '/v1/spaces', { name: 'after-outage', basis: { primes: [2, 3, 5] } })).status).toBe(201);
    expect(node.proc.exitCode).toBeNull();
  });

  it('answers 503 to what needs Redis while it is unreachable, and resumes when it is back', async () => {
    await redis.cut();
    const down = await waitFor('not ready', async () => {
      const r = await ready();
      return r.status === 503 ? r : undefined;
    }, 10_000, 100);
    expect(down.json).toMatchObject({ ready: false, connections: { store: { ok: true }, broker: { kind: 'redis', ok: false } } });
    // Every /v1 request charges the shared rate limit, which lives in Redis.
    const r = await api.call('GET', '/v1/spaces');
    expect(r.status).toBe(503);
    expect(r.json).toMatchObject({ code: 'service_unavailable' });
    await redis.restore();
    await waitFor('ready again', async () => ((await ready()).status === 200 ? true : undefined), 15_000, 200);
    expect((await api.call('GET', '/v1/spaces')).status).toBe(200);
    expect(node.proc.exitCode).toBeNull();
    expect(node.logs()).not.toMatch(/uncaught|unhandled/i);
  });
});
