/**
 * The IdempotencyStore contract (src/store/idempotency.ts) on the run's store: claim, complete and
 * replay, release, the claims of dead processes, expiry, and concurrent claims of one key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IdempotencyClaim, IdempotencyStore } from '../../src/store/idempotency.js';
import type { Store } from '../../src/store/store.js';
import { openTestStore, TEST_STORE, type TestStore } from '../helpers/stores.js';

// One store for the file: every test uses subjects of its own, so they never meet.
let ts: TestStore;
let store: IdempotencyStore;

beforeAll(async () => {
  ts = await openTestStore();
  store = ts.store.idempotency;
});

afterAll(async () => {
  await ts.destroy();
});

const DAY = 24 * 3600 * 1000;
let counter = 0;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A claim on a subject no other test uses. */
function claimOf(over: Partial<IdempotencyClaim> = {}): IdempotencyClaim {
  return { subject: `key_${++counter}`, key: 'k1', method: 'POST', path: '/v1/things', bodyHash: 'h1', bootId: 'boot-a', ...over };
}

describe('claim, complete, replay', () => {
  it('the first claim gets the key; a repeat while in flight sees the claim', async () => {
    const c = claimOf();
    const before = Date.now();
    expect(await store.claim(c, DAY)).toBeNull();
    const seen = await store.claim(c, DAY);
    expect(seen).toMatchObject({ ...c, state: 'in_flight', status: null, headers: null, body: null });
    expect(seen!.createdAt).toBeGreaterThanOrEqual(before);
    // Another request under the same key is shown the stored one (the caller answers 422 on the hash).
    expect(await store.claim({ ...c, bodyHash: 'h2', path: '/v1/other' }, DAY)).toMatchObject({ bodyHash: 'h1', path: '/v1/things' });
  });

  it('a completed claim replays its status, headers and body, to every process', async () => {
    const c = claimOf();
    await store.claim(c, DAY);
    await store.complete(c.subject, c.key, 201, { 'content-type': 'application/json', location: '/v1/things/1' }, '{"id":1}');
    const replay = { ...c, state: 'done', status: 201, headers: { 'content-type': 'application/json', location: '/v1/things/1' }, body: '{"id":1}' };
    expect(await store.claim(c, DAY)).toMatchObject(replay);
    // A done record is kept whatever process asks: only in-flight claims die with their process.
    expect(await store.claim({ ...c, bootId: 'boot-b' }, DAY)).toMatchObject({ ...replay, bootId: 'boot-a' });
  });

  it('keys are per subject: the same key under another subject is free', async () => {
    const c = claimOf();
    expect(await store.claim(c, DAY)).toBeNull();
    expect(await store.claim({ ...c, subject: `${c.subject}-other` }, DAY)).toBeNull();
    expect(await store.claim({ ...c, key: 'k2' }, DAY)).toBeNull();
  });

  it('release frees an in-flight claim and leaves a completed one alone', async () => {
    const c = claimOf();
    await store.claim(c, DAY);
    await store.release(c.subject, c.key);
    expect(await store.claim({ ...c, bodyHash: 'h2' }, DAY)).toBeNull();
    expect(await store.claim(c, DAY)).toMatchObject({ bodyHash: 'h2', state: 'in_flight' });
    await store.complete(c.subject, c.key, 200, {}, 'ok');
    await store.release(c.subject, c.key);
    expect(await store.claim(c, DAY)).toMatchObject({ state: 'done', status: 200, body: 'ok', headers: {} });
  });

  it('an expired record is claimed anew, as a fresh in-flight claim', async () => {
    const c = claimOf();
    await store.claim(c, DAY);
    await store.complete(c.subject, c.key, 200, {}, 'old');
    await sleep(10);
    expect(await store.claim({ ...c, bodyHash: 'h2' }, 5)).toBeNull();
    expect(await store.claim(c, DAY)).toMatchObject({ state: 'in_flight', bodyHash: 'h2', status: null, body: null, headers: null });
  });
});

describe('claims of processes that died', () => {
  it('an in-flight claim of another boot id is taken over by a claim', async () => {
    const c = claimOf();
    await store.claim(c, DAY);
    expect(await store.claim({ ...c, bootId: 'boot-b', bodyHash: 'h2' }, DAY)).toBeNull();
    expect(await store.claim({ ...c, bootId: 'boot-b' }, DAY)).toMatchObject({ bootId: 'boot-b', bodyHash: 'h2', state: 'in_flight' });
  });

  it('releaseStale drops the in-flight claims of every other boot id, and nothing else', async () => {
    // A store of its own: releaseStale counts every subject's rows.
    const own = await openTestStore();
    try {
      const s = own.store.idempotency;
      const deadInFlight = claimOf({ bootId: 'boot-dead' });
      const deadDone = claimOf({ bootId: 'boot-dead' });
      const gone = claimOf({ bootId: 'boot-gone' });
      const live = claimOf({ bootId: 'boot-live' });
      for (const c of [deadInFlight, deadDone, gone, live]) expect(await s.claim(c, DAY)).toBeNull();
      await s.complete(deadDone.subject, deadDone.key, 204, {}, '');
      expect(await s.releaseStale('boot-live')).toBe(2);
      expect(await s.releaseStale('boot-live')).toBe(0);
      // The dead processes' in-flight keys are free; the completed one and the live claim stand.
      expect(await s.claim({ ...deadInFlight, bootId: 'boot-live' }, DAY)).toBeNull();
      expect(await s.claim({ ...gone, bootId: 'boot-live' }, DAY)).toBeNull();
      expect(await s.claim({ ...deadDone, bootId: 'boot-live' }, DAY)).toMatchObject({ state: 'done', status: 204, bootId: 'boot-dead' });
      expect(await s.claim(live, DAY)).toMatchObject({ state: 'in_flight', bootId: 'boot-live' });
    } finally {
      await own.destroy();
    }
  });
});

describe('claims of live nodes in a cluster', () => {
  it.runIf(TEST_STORE === 'postgres')('an in-flight claim of another node that still beats stands, for claims and for releaseStale', async () => {
    const c = claimOf({ bootId: 'boot-node-a' });
    expect(await store.claim(c, DAY)).toBeNull();
    // Node A is alive (its heartbeat names its boot id): node B's retry sees the claim, and B's start leaves it.
    await ts.store.cluster.heartbeat({ id: 'node-a', bootId: 'boot-node-a', url: 'http://a', startedAt: Date.now() });
    expect(await store.claim({ ...c, bootId: 'boot-node-b' }, DAY)).toMatchObject({ state: 'in_flight', bootId: 'boot-node-a' });
    await store.releaseStale('boot-node-b');
    expect(await store.claim({ ...c, bootId: 'boot-node-b' }, DAY)).toMatchObject({ state: 'in_flight', bootId: 'boot-node-a' });
    // Node A stops: its claim is a dead process's claim.
    await ts.store.cluster.leave('node-a');
    expect(await store.claim({ ...c, bootId: 'boot-node-b' }, DAY)).toBeNull();
  });
});

describe('concurrency', () => {
  it('of many concurrent claims of one key, from two handles on the same data, exactly one wins', async () => {
    const other: Store = await ts.openSecondHandle();
    try {
      const c = claimOf();
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? other.idempotency : store).claim(c, DAY)));
      expect(results.filter((r) => r === null)).toHaveLength(1);
      for (const r of results) if (r) expect(r).toMatchObject({ subject: c.subject, key: c.key, state: 'in_flight' });
    } finally {
      await other.close();
    }
  });

  it('concurrent take-overs of a dead process’s claim: exactly one wins', async () => {
    const c = claimOf({ bootId: 'boot-dead' });
    await store.claim(c, DAY);
    const results = await Promise.all(Array.from({ length: 8 }, () => store.claim({ ...c, bootId: 'boot-new' }, DAY)));
    expect(results.filter((r) => r === null)).toHaveLength(1);
  });
});

describe('purge', () => {
  it('deletes records created before the cut, oldest first, at most `limit` a call', async () => {
    // A store of its own: purge counts every subject's rows.
    const own = await openTestStore();
    try {
      const s = own.store.idempotency;
      const old = Array.from({ length: 5 }, () => claimOf());
      for (const c of old) await s.claim(c, DAY);
      await s.complete(old[0]!.subject, old[0]!.key, 200, {}, 'done');
      await sleep(5);
      const cut = Date.now();
      await sleep(5);
      const fresh = claimOf();
      await s.claim(fresh, DAY);

      expect(await s.purgeExpired(cut, 2)).toBe(2);
      expect(await s.purgeExpired(cut, 2)).toBe(2);
      expect(await s.purgeExpired(cut, 2)).toBe(1);
      expect(await s.purgeExpired(cut, 2)).toBe(0);
      // Every old key is free again (in flight or done alike); the fresh claim stands.
      for (const c of old) expect(await s.claim({ ...c, bootId: 'boot-a' }, DAY)).toBeNull();
      expect(await s.claim(fresh, DAY)).toMatchObject({ state: 'in_flight' });
    } finally {
      await own.destroy();
    }
  });
});
