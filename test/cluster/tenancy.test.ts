/**
 * What the nodes of a cluster share (3 real nodes on the machine's Postgres and Redis): a key revoked by the
 * CLI is refused by every node at once (announced through Redis), one rate limit per credential and one quota per org
 * whichever nodes the requests reach, and each webhook event delivered once although every node runs a
 * dispatcher.
 */
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, startCluster } from '../helpers/cluster.js';
import { Api } from '../helpers/realtime.js';
import { BIN, sleep, waitFor } from '../helpers/server.js';

let cluster: Cluster;

/** The CLI against the cluster's store (what an operator runs beside the nodes). */
function cli(args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...cluster.env, RESONANCE_LOG_LEVEL: 'warn' } }, (err, stdout) =>
      resolve({ code: err ? 1 : 0, stdout }),
    );
  });
}

async function newKey(org: string, scopes = 'hqe.read,hqe.write,spaces.read,spaces.write'): Promise<{ key: string; id: string }> {
  const r = await cli(['keys', 'create', '--org', org, '--scopes', scopes, '--json']);
  expect(r.code).toBe(0);
  const out = JSON.parse(r.stdout) as { key: string; id: string };
  return { key: out.key, id: out.id };
}

beforeAll(async () => {
  // Credentials cached for a minute: a revocation must reach the nodes through the broker, not the cache's expiry.
  cluster = await startCluster(3, { RESONANCE_RATE_LIMIT: '30', RESONANCE_QUOTA_DELTAS_PER_MINUTE: '6', RESONANCE_AUTH_CACHE_MS: '60000' });
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('a cluster of three nodes shares', () => {
  it('revocation: a key revoked by the CLI is refused by every node at once, though each cached it', async () => {
    const { key, id } = await newKey('revoker');
    const onEach = () => Promise.all(cluster.nodes.map((n) => new Api(n.url, key).call('GET', '/v1/spaces')));
    // Used on every node first, so each holds it in its credential cache (trusted for a minute here).
    expect((await onEach()).map((r) => r.status)).toEqual([200, 200, 200]);
    expect((await cli(['keys', 'revoke', id])).code).toBe(0);
    const revokedAt = Date.now();
    await waitFor('refused everywhere', async () => ((await onEach()).every((r) => r.status === 401) ? true : undefined), 3000, 20);
    // The CLI published before it exited; each node drops the cached credential when the message arrives.
    expect(Date.now() - revokedAt).toBeLessThan(500);
  });

  it('one rate limit per credential, whichever node a request reaches', async () => {
    const { key } = await newKey('limited');
    const statuses: number[] = [];
    let remaining: string | null = null;
    for (let i = 0; i < 30; i++) {
      const r = await new Api(cluster.nodes[i % 3]!.url, key).call('GET', '/v1/spaces');
      statuses.push(r.status);
      remaining = r.headers.get('x-ratelimit-remaining');
    }
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(remaining).toBe('0');
    for (const n of cluster.nodes) {
      const r = await new Api(n.url, key).call('GET', '/v1/spaces');
      expect(r.status).toBe(429);
      expect(r.json).toMatchObject({ code: 'rate_limited' });
    }
  });

  it('one quota per org: deltas accepted on different nodes count against one deltas_per_minute', async () => {
    const { key } = await newKey('quota-org');
    const owner = new Api(cluster.nodes[0]!.url, key);
    const space = await owner.space();
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await new Api(cluster.nodes[i % 3]!.url, key).call('POST', `/v1/spaces/${space.id}/deltas`, {
        fromVersion: 0, ops: [{ op: 'shift_phase', path: '/state/phases/0', value: 0.01 }],
      });
      statuses.push(r.status);
      if (r.status === 429) expect(r.json).toMatchObject({ code: 'quota_exceeded', meta: { quota: 'deltas_per_minute', limit: 6 } });
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429, 429]);
  });

  it('webhook deliveries: each event once, though every node runs a dispatcher', async () => {
    const received: string[] = [];
    const receiver: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        received.push(`${req.headers['x-rs-delivery']} ${JSON.parse(body).id as string}`);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', () => resolve()));
    try {
      const { key } = await newKey('hooks');
      const api = new Api(cluster.nodes[1]!.url, key);
      const hook = await api.call('POST', '/v1/webhooks', { url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`, events: ['space.updated'] });
      expect(hook.status).toBe(201);
      const space = await api.space();
      // Each PATCH is a logged delta: within the org's deltas_per_minute (6 here).
      const events = 6;
      for (let i = 0; i < events; i++) {
        const r = await new Api(cluster.nodes[i % 3]!.url, key).call('PATCH', `/v1/spaces/${space.id}`, { operators: { resonanceTarget: 0.5 + i / 100 } });
        expect(r.status).toBe(200);
      }
      await waitFor('every event', async () => (received.length >= events ? true : undefined), 15_000, 100);
      // Give a duplicate the time to show up.
      await sleep(1500);
      expect(received).toHaveLength(events);
      expect(new Set(received.map((r) => r.split(' ')[1])).size).toBe(events);
    } finally {
      receiver.close();
    }
  });
});
