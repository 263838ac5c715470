/**
 * Retention sweeps (Store.purgeExpired, docs/tenancy.md "Retention") on the run's store (SQLite or
 * Postgres): ended sessions and their events after the retention period, finished webhook deliveries after
 * theirs, each sweep bounded by its batch, a session's events before its row.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NormalizedConfig } from '../../src/model/config.js';
import { normalize } from '../../src/model/normalize.js';
import type { Store } from '../../src/store/store.js';
import { openTestStore, type TestStore } from '../helpers/stores.js';

const HOUR = 3_600_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function config(): NormalizedConfig {
  const r = normalize({ primes: [2, 3, 5], seed: 1 }, { maxBasis: 2048 });
  if (!r.ok) throw new Error('fixture config is invalid');
  return r.normalized;
}

let t: TestStore;
let store: Store;
beforeEach(async () => {
  t = await openTestStore();
  store = t.store;
});
afterEach(async () => {
  await t.destroy();
});

/** A session with `n` stored events, ended with `status` unless that is running or completed. */
async function session(id: string, n: number, status: 'running' | 'completed' | 'converged' | 'closed' | 'failed' | 'plateau'): Promise<number | null> {
  await store.sessions.create({ id, orgId: 'o', config: config(), status: 'running' });
  await store.sessions.appendEvents(id, Array.from({ length: n }, (_, i) => ({ kind: 'metrics' as const, step: i, restart: 0, body: JSON.stringify({ step: i, id }) })));
  if (status !== 'running') await store.sessions.update(id, { status });
  await sleep(2);
  return (await store.sessions.get(id))!.endedAt;
}

describe('session retention', () => {
  it('deletes sessions that ended before the retention period with their events, in bounded batches; running, completed and recent ones stay', async () => {
    const old = (await session('old', 30, 'converged'))!;
    const recent = (await session('recent', 30, 'closed'))!;
    await session('running', 30, 'running');
    await session('completed', 30, 'completed');
    expect(recent).toBeGreaterThan(old);
    // The period ends between the two: `old` is past it, `recent` is not.
    const now = recent + 10 * HOUR;
    const policy = { sessionRetentionMs: 10 * HOUR, deliveryRetentionMs: 10 * HOUR };

    // A batch of 20 rows: the 30 events of the old session take two sweeps; its row goes with the second.
    expect(await store.purgeExpired(now, policy, 20)).toEqual({ sessions: 0, events: 20, deliveries: 0 });
    expect(await store.sessions.get('old')).not.toBeNull();
    expect(await store.sessions.events('old', 0, 100)).toHaveLength(10);
    expect(await store.purgeExpired(now, policy, 20)).toEqual({ sessions: 1, events: 10, deliveries: 0 });
    expect(await store.sessions.get('old')).toBeNull();
    expect(await store.sessions.events('old', 0, 100)).toEqual([]);
    expect(await store.purgeExpired(now, policy, 20)).toEqual({ sessions: 0, events: 0, deliveries: 0 });
    for (const id of ['recent', 'running', 'completed']) expect(await store.sessions.events(id, 0, 100)).toHaveLength(30);
    // Its storage is given back with it.
    let kept = 0;
    for (const id of ['recent', 'running', 'completed']) kept += (await store.sessions.get(id))!.eventBytes;
    expect(kept).toBeGreaterThan(0);
    expect(await store.usage.storageBytes('o')).toBe(kept);
  });

  it('spends one batch across sessions, oldest ended first, and deletes a row only once its events are gone', async () => {
    await session('a', 10, 'failed');
    await session('b', 10, 'plateau');
    const last = (await session('c', 10, 'closed'))!;
    const now = last + HOUR + 1;
    const policy = { sessionRetentionMs: HOUR, deliveryRetentionMs: HOUR };
    // 15 rows: a's events and row, then five of b's events.
    expect(await store.purgeExpired(now, policy, 15)).toEqual({ sessions: 1, events: 15, deliveries: 0 });
    expect(await store.sessions.get('a')).toBeNull();
    expect(await store.sessions.events('b', 0, 100)).toHaveLength(5);
    // 5 rows: exactly b's remaining events; its row waits for the next sweep.
    expect(await store.purgeExpired(now, policy, 5)).toEqual({ sessions: 0, events: 5, deliveries: 0 });
    expect(await store.sessions.get('b')).not.toBeNull();
    expect(await store.purgeExpired(now, policy, 100)).toEqual({ sessions: 2, events: 10, deliveries: 0 });
    expect(await store.sessions.get('b')).toBeNull();
    expect(await store.sessions.get('c')).toBeNull();
  });
});

describe('delivery retention', () => {
  it('deletes finished deliveries (delivered, failed, cancelled) after the retention period, in batches, and keeps pending and recent ones', async () => {
    const old = Date.now() - 10 * HOUR;
    await store.webhooks.insertWebhook({ id: 'wh', orgId: 'o', url: 'https://example.test/hook', secret: 's', events: ['hqe.plateau'], createdAt: old });
    await store.webhooks.insertWebhook({ id: 'wh2', orgId: 'o', url: 'https://example.test/other', secret: 's', events: ['hqe.converged'], createdAt: old });
    let n = 0;
    const enqueue = async (type: string, createdAt: number): Promise<string> => {
      const [d] = await store.webhooks.enqueueEvent('o', { id: `ev${n}`, type, payload: '{}', createdAt }, () => `d${n++}`);
      return d!.id;
    };
    const delivered = [await enqueue('hqe.plateau', old), await enqueue('hqe.plateau', old), await enqueue('hqe.plateau', old)];
    const failed = await enqueue('hqe.plateau', old + 1);
    const pending = await enqueue('hqe.plateau', old + 2);
    const recent = await enqueue('hqe.plateau', Date.now());
    // Claimed in the order they fell due; all but `pending` get an outcome.
    const claimed = await store.webhooks.claimDue(Date.now(), 100, Date.now() + 60_000);
    expect(claimed.map((c) => c.id).sort()).toEqual([...delivered, failed, pending, recent].sort());
    for (const id of [...delivered, recent]) expect(await store.webhooks.markDelivered(id, 1, Date.now())).toBe(true);
    expect(await store.webhooks.markFailed(failed, 1, 'gave up')).toBe(true);
    // A webhook deleted: its pending delivery is cancelled, a finished one.
    const cancelled = await enqueue('hqe.converged', old);
    expect(await store.webhooks.deleteWebhook('o', 'wh2')).toBe(true);
    expect((await store.webhooks.getDelivery(cancelled))!.status).toBe('cancelled');

    const policy = { sessionRetentionMs: HOUR, deliveryRetentionMs: 5 * HOUR };
    expect(await store.purgeExpired(Date.now(), policy, 3)).toEqual({ sessions: 0, events: 0, deliveries: 3 });
    expect(await store.purgeExpired(Date.now(), policy, 3)).toEqual({ sessions: 0, events: 0, deliveries: 2 });
    expect(await store.purgeExpired(Date.now(), policy, 3)).toEqual({ sessions: 0, events: 0, deliveries: 0 });
    for (const id of [...delivered, failed, cancelled]) expect(await store.webhooks.getDelivery(id)).toBeNull();
    expect((await store.webhooks.getDelivery(pending))!.status).toBe('pending');
    expect((await store.webhooks.getDelivery(recent))!.status).toBe('delivered');
  });
});
