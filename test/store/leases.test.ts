/** Ownership leases and node records (src/store/leases.ts) on the run's store. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { normalize } from '../../src/model/normalize.js';
import { normalizeSpace } from '../../src/model/space.js';
import { Ownership } from '../../src/cluster/ownership.js';
import { type ClusterStore, FencedError } from '../../src/store/leases.js';
import { openTestStore, TEST_STORE, type TestStore } from '../helpers/stores.js';

let t: TestStore;
let cluster: ClusterStore;
beforeEach(async () => {
  t = await openTestStore();
  cluster = t.store.cluster;
});
afterEach(() => t.destroy());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('leases', () => {
  it('are taken by one node at a time; the holder renews at the same epoch', async () => {
    const a = await cluster.acquire('space:s1', 'org1', 'a', 5000);
    expect(a).toMatchObject({ resource: 'space:s1', nodeId: 'a', epoch: 1 });
    expect(await cluster.acquire('space:s1', 'org1', 'b', 5000)).toBeNull();
    const again = await cluster.acquire('space:s1', 'org1', 'a', 5000);
    expect(again).toMatchObject({ nodeId: 'a', epoch: 1 });
    expect(again!.expiresAt).toBeGreaterThanOrEqual(a!.expiresAt);
    expect((await cluster.renew('a', 5000)).map((l) => l.resource)).toEqual(['space:s1']);
  });

  it('pass to another node with the next epoch once lapsed, and the old holder can no longer renew', async () => {
    await cluster.acquire('session:x', 'org1', 'a', 150);
    await sleep(250);
    const b = await cluster.acquire('session:x', 'org1', 'b', 5000);
    expect(b).toMatchObject({ nodeId: 'b', epoch: 2 });
    expect(await cluster.renew('a', 5000)).toEqual([]);
    expect(await cluster.leases(['session:x', 'session:none'])).toEqual([expect.objectContaining({ nodeId: 'b', epoch: 2 })]);
    expect(await cluster.orgLeases('org1')).toEqual([expect.objectContaining({ resource: 'session:x', orgId: 'org1', nodeId: 'b', epoch: 2 })]);
    expect(await cluster.orgLeases('org2')).toEqual([]);
  });

  it('stay with a holder whose renewal came late while nobody took them, at the same epoch; not once released', async () => {
    await cluster.acquire('session:late', 'org1', 'a', 150);
    await cluster.acquire('session:gone', 'org1', 'a', 150);
    await cluster.release('session:gone', 'a');
    await sleep(250);
    const renewed = await cluster.renew('a', 5000);
    expect(renewed.map((l) => [l.resource, l.epoch])).toEqual([['session:late', 1]]);
    expect(await cluster.acquire('session:late', 'org1', 'b', 5000)).toBeNull();
  });

  it('are handed over at once when released or when their node leaves', async () => {
    await cluster.acquire('space:r', 'org1', 'a', 60_000);
    await cluster.acquire('space:q', 'org1', 'a', 60_000);
    await cluster.release('space:r', 'a');
    expect(await cluster.acquire('space:r', 'org1', 'b', 60_000)).toMatchObject({ nodeId: 'b', epoch: 2 });
    await cluster.leave('a');
    expect(await cluster.acquire('space:q', 'org1', 'c', 60_000)).toMatchObject({ nodeId: 'c', epoch: 2 });
  });

  it('give exactly one winner when nodes race for a free or lapsed lease', async () => {
    const wins = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((n) => cluster.acquire('space:race', 'org1', n, 60_000)));
    expect(wins.filter((w) => w !== null)).toHaveLength(1);
  });
});

describe('nodes', () => {
  it('are listed while they beat, oldest first, and gone when they leave', async () => {
    await cluster.heartbeat({ id: 'n2', bootId: 'b2', url: 'http://127.0.0.1:2', startedAt: 2000 });
    await cluster.heartbeat({ id: 'n1', bootId: 'b1', url: 'http://127.0.0.1:1', startedAt: 1000 });
    expect((await cluster.nodes(10_000)).map((n) => n.id)).toEqual(['n1', 'n2']);
    const [n1] = await cluster.nodes(10_000);
    expect(n1).toMatchObject({ bootId: 'b1', url: 'http://127.0.0.1:1', startedAt: 1000 });
    expect(n1!.heartbeatAt).toBeGreaterThan(Date.now() - 60_000);
    await cluster.leave('n1');
    expect((await cluster.nodes(10_000)).map((n) => n.id)).toEqual(['n2']);
    await sleep(60);
    expect(await cluster.nodes(20)).toEqual([]);
  });
});

describe("a node's ownership (src/cluster/ownership.ts)", () => {
  it('keeps a lease taken while a renewal is under way (the renewal does not know it yet)', async () => {
    // The run's store, with renewals held at a gate the test opens: the race made deterministic.
    let holdRenewals = false;
    let renewing: () => void = () => undefined;
    const entered = new Promise<void>((resolve) => (renewing = resolve));
    let openGate: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const gated = new Proxy(cluster, {
      get(target, key, receiver) {
        if (key === 'renew') {
          return async (nodeId: string, ttlMs: number) => {
            const leases = await target.renew(nodeId, ttlMs);
            if (holdRenewals) {
              renewing();
              await gate;
            }
            return leases;
          };
        }
        const value: unknown = Reflect.get(target, key, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const lost: string[] = [];
    const own = new Ownership({ cluster: gated, nodeId: 'n', bootId: 'b', url: 'http://127.0.0.1:1', startedAt: Date.now(), ttlMs: 600, onLost: (r) => lost.push(r), onError: () => undefined });
    await own.start();
    try {
      holdRenewals = true;
      await entered; // a beat's renewal has run and waits at the gate
      expect(await own.acquire('session:s', 'org1')).toMatchObject({ nodeId: 'n' });
      holdRenewals = false;
      openGate();
      await sleep(450); // that beat ends, and the next ones renew the lease
      expect(lost).toEqual([]);
      expect(own.fence('session:s')).toMatchObject({ nodeId: 'n' });
      expect((await cluster.leases(['session:s']))[0]).toMatchObject({ nodeId: 'n' });
    } finally {
      await own.stop();
    }
  });
});

describe('fenced writes', () => {
  // The embedded store serves one process, which holds every lease: only Postgres has fences to check.
  it.runIf(TEST_STORE === 'postgres')('of a node that lost its lease are refused and write nothing; the new holder writes on', async () => {
    const { store } = t;
    const space = normalizeSpace({ name: 'fenced', basis: { primes: [2, 3, 5] }, seed: 1 });
    if (!space.ok) throw new Error('bad config');
    await store.spaces.create({ id: 'spc_f', orgId: 'org1', name: 'fenced', config: space.normalized });
    const hqe = normalize({ primes: [2, 3, 5], seed: 1 }, { maxBasis: 2048 });
    if (!hqe.ok) throw new Error('bad config');
    await store.sessions.create({ id: 'ses_f', orgId: 'org1', config: hqe.normalized, status: 'running' });
    const op = { op: 'set_phase', path: '/state/phases/0', value: 1 };
    const delta = { epoch: 0, fromVersion: 0, ops: [op], paths: [op.path], author: null };
    const event = { kind: 'snapshot' as const, step: 0, restart: 0, body: '{"step":0}' };

    const a1 = { nodeId: 'a', epoch: (await cluster.acquire('space:spc_f', 'org1', 'a', 150))!.epoch };
    const s1 = { nodeId: 'a', epoch: (await cluster.acquire('session:ses_f', 'org1', 'a', 150))!.epoch };
    expect(await store.spaces.appendDelta('spc_f', 0, delta, undefined, a1)).toMatchObject({ version: 1 });
    expect(await store.sessions.appendEvents('ses_f', [event], undefined, s1)).toHaveLength(1);
    await sleep(250);
    const b2 = { nodeId: 'b', epoch: (await cluster.acquire('space:spc_f', 'org1', 'b', 60_000))!.epoch };
    const sb = { nodeId: 'b', epoch: (await cluster.acquire('session:ses_f', 'org1', 'b', 60_000))!.epoch };
    expect(b2.epoch).toBe(2);

    await expect(store.spaces.appendDelta('spc_f', 1, { ...delta, fromVersion: 1 }, undefined, a1)).rejects.toBeInstanceOf(FencedError);
    await expect(store.spaces.update('spc_f', { checkpoint: 'stale', checkpointVersion: 1 }, a1)).rejects.toBeInstanceOf(FencedError);
    await expect(store.sessions.appendEvents('ses_f', [{ ...event, step: 1 }], { step: 1 }, s1)).rejects.toBeInstanceOf(FencedError);
    await expect(store.sessions.update('ses_f', { step: 5 }, s1)).rejects.toBeInstanceOf(FencedError);
    expect(await store.spaces.get('spc_f')).toMatchObject({ version: 1, checkpoint: null });
    expect(await store.sessions.get('ses_f')).toMatchObject({ step: 0 });
    expect(await store.sessions.events('ses_f', 0, 10)).toHaveLength(1);

    expect(await store.spaces.appendDelta('spc_f', 1, { ...delta, fromVersion: 1 }, undefined, b2)).toMatchObject({ version: 2 });
    await store.sessions.update('ses_f', { step: 5 }, sb);
    expect(await store.sessions.get('ses_f')).toMatchObject({ step: 5 });
  });
});
