/**
 * The SpaceStore contract (src/store/spaces.ts) on the run's store (SQLite or Postgres): contiguous durable
 * versions, one winner among concurrent appends, replay, pruning, storage accounting, pagination, members.
 */
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { normalizeSpace } from '../../src/model/space.js';
import type { NormalizedSpaceConfig } from '../../src/model/space.js';
import { randomBytes } from 'node:crypto';
import { openPg } from '../../src/store/postgres/pool.js';
import { PgSpaceStore } from '../../src/store/postgres/spaces.js';
import type { Store } from '../../src/store/store.js';
import { dropDatabase, ensureDatabase, PG_SERVER, TEST_DB_PREFIX, TEST_STORE, storePerFile } from '../helpers/stores.js';

function config(seed = 1): NormalizedSpaceConfig {
  const r = normalizeSpace({ name: 'demo-room', basis: { primes: [2, 3, 5, 7, 11, 13] }, seed });
  if (!r.ok) throw new Error('bad config');
  return r.normalized;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const op = (path: string, value: unknown = 0.1) => ({ op: 'shift_phase', path, value });
/** What a delta costs in storage: the UTF-8 bytes of its ops and paths as JSON. */
const bytesOf = (ops: unknown[], paths: string[]): number => Buffer.byteLength(JSON.stringify(ops)) + Buffer.byteLength(JSON.stringify(paths));

// One store for the file (a fresh Postgres database costs about a second): each test names its own
// spaces and orgs.
const file = storePerFile();
let store: Store;
beforeAll(() => {
  store = file.store;
});
let n = 0;
/** A name no other test of the file uses. */
const uid = (prefix: string): string => `${prefix}-${++n}`;

describe('space deltas', () => {
  it('appends deltas as contiguous versions that survive reopening, refusing a stale expected version', async () => {
    const s = uid('s');
    const org = uid('o');
    await store.spaces.create({ id: s, orgId: org, name: 'demo-room', config: config() });
    const o = op('/state/phases/1');
    for (let v = 0; v < 5; v++) {
      const stored = await store.spaces.appendDelta(s, v, { epoch: 0, fromVersion: v, ops: [o], paths: [o.path], author: 'm1' });
      expect(stored).toMatchObject({ version: v + 1, fromVersion: v, epoch: 0, author: 'm1' });
    }
    expect(await store.spaces.appendDelta(s, 3, { epoch: 0, fromVersion: 3, ops: [o], paths: [o.path], author: 'm2' })).toBeNull();
    // A space that does not exist takes no delta.
    expect(await store.spaces.appendDelta('nope', 0, { epoch: 0, fromVersion: 0, ops: [o], paths: [o.path], author: null })).toBeNull();
    // A restart: the log is durable.
    const reopened = (store = await file.reopen());
    expect((await reopened.spaces.get(s))?.version).toBe(5);
    expect((await reopened.spaces.deltasSince(s, 2, 100)).map((d) => d.version)).toEqual([3, 4, 5]);
    expect((await reopened.spaces.deltasSince(s, 0, 2)).map((d) => d.version)).toEqual([1, 2]);
    const first = (await reopened.spaces.deltasSince(s, 0, 100))[0]!;
    expect(first).toMatchObject({ version: 1, fromVersion: 0, ops: [o], paths: ['/state/phases/1'], author: 'm1' });
    expect(first.createdAt).toBeGreaterThan(Date.now() - 60_000);
  });

  it('lets exactly one of many concurrent appends from the same version win, and keeps versions contiguous under contention', async () => {
    const s = uid('s');
    const org = uid('o');
    await store.spaces.create({ id: s, orgId: org, name: 'x', config: config() });
    const o = op('/state/phases/0');
    const racers = await Promise.all(
      Array.from({ length: 16 }, (_, i) => store.spaces.appendDelta(s, 0, { epoch: 0, fromVersion: 0, ops: [o], paths: [o.path], author: `m${i}` })),
    );
    const winners = racers.filter((r) => r !== null);
    expect(winners).toHaveLength(1);
    expect(winners[0]!.version).toBe(1);
    const log = await store.spaces.deltasSince(s, 0, 100);
    expect(log).toHaveLength(1);
    expect(log[0]!.author).toBe(winners[0]!.author);

    // Eight writers each append five deltas, retrying from the version they read whenever they lose.
    const writer = async (w: number): Promise<number> => {
      let losses = 0;
      for (let done = 0; done < 5; ) {
        const v = (await store.spaces.get(s))!.version;
        const r = await store.spaces.appendDelta(s, v, { epoch: 0, fromVersion: v, ops: [op(`/state/phases/${w}`)], paths: [`/state/phases/${w}`], author: `w${w}` });
        if (r) {
          expect(r.version).toBe(v + 1);
          done++;
        } else losses++;
      }
      return losses;
    };
    await Promise.all(Array.from({ length: 8 }, (_, w) => writer(w)));
    const all = await store.spaces.deltasSince(s, 0, 1000);
    expect(all.map((d) => d.version)).toEqual(Array.from({ length: 41 }, (_, i) => i + 1));
    expect(all.every((d) => d.fromVersion === d.version - 1)).toBe(true);
    expect((await store.spaces.get(s))!.version).toBe(41);
    for (let w = 0; w < 8; w++) expect(all.filter((d) => d.author === `w${w}`)).toHaveLength(5);
    // Every stored delta was charged once, none of the refused ones.
    expect(await store.usage.storageBytes(org)).toBe(all.reduce((n, d) => n + bytesOf(d.ops, d.paths), 0));
  });

  it('moves the epoch with each delta and stores a config change with the delta that made it', async () => {
    const s = uid('s');
    const org = uid('o');
    const before = await store.spaces.create({ id: s, orgId: org, name: 'x', config: config(1) });
    const o = op('/state/phases/0');
    await store.spaces.appendDelta(s, 0, { epoch: 2, fromVersion: 0, ops: [o], paths: [o.path], author: null });
    expect(await store.spaces.get(s)).toMatchObject({ epoch: 2, version: 1, config: config(1) });
    await store.spaces.appendDelta(s, 1, { epoch: 2, fromVersion: 1, ops: [o], paths: [o.path], author: null }, config(7));
    const after = (await store.spaces.get(s))!;
    expect(after).toMatchObject({ version: 2, config: config(7) });
    expect(after.updatedAt).toBeGreaterThanOrEqual(before.updatedAt);
    // A refused delta changes nothing, its config included.
    expect(await store.spaces.appendDelta(s, 0, { epoch: 3, fromVersion: 0, ops: [o], paths: [o.path], author: null }, config(9))).toBeNull();
    expect(await store.spaces.get(s)).toMatchObject({ epoch: 2, version: 2, config: config(7) });
  });

  it('prunes old deltas and reports the oldest version a client may resume from', async () => {
    const s = uid('s');
    const org = uid('o');
    await store.spaces.create({ id: s, orgId: org, name: 'x', config: config() });
    const o = { op: 'set_phase', path: '/state/phases/0', value: 1 };
    for (let v = 0; v < 3; v++) await store.spaces.appendDelta(s, v, { epoch: 0, fromVersion: v, ops: [o], paths: [o.path], author: null });
    expect(await store.spaces.pruneDeltas(s, 0)).toBe(0);
    expect(await store.spaces.pruneDeltas(s, Date.now() + 1)).toBe(3);
    expect(await store.spaces.deltasSince(s, 0, 10)).toEqual([]);
    expect(await store.usage.storageBytes(org)).toBe(0);
    // An empty log: a client resumes from the space's version; the next delta continues it.
    expect(await store.spaces.pruneDeltas(s, Date.now() + 1)).toBe(3);
    expect((await store.spaces.appendDelta(s, 3, { epoch: 0, fromVersion: 3, ops: [o], paths: [o.path], author: null }))?.version).toBe(4);
    expect(await store.spaces.pruneDeltas('nope', Date.now())).toBe(0);
  });

  it('prunes only a prefix: up to the first delta to keep by time, never past upTo, charging back what it drops', async () => {
    const s = uid('s');
    const org = uid('o');
    await store.spaces.create({ id: s, orgId: org, name: 'x', config: config() });
    // Non-ASCII text: storage counts UTF-8 bytes, not characters.
    const ops = [op('/state/phases/0', 'é✓🙂')];
    const paths = ['/state/phases/0'];
    for (let v = 0; v < 3; v++) await store.spaces.appendDelta(s, v, { epoch: 0, fromVersion: v, ops, paths, author: null });
    await sleep(5);
    const cut = Date.now();
    await sleep(5);
    for (let v = 3; v < 6; v++) await store.spaces.appendDelta(s, v, { epoch: 0, fromVersion: v, ops, paths, author: null });
    const each = bytesOf(ops, paths);
    expect(each).toBeGreaterThan(JSON.stringify(ops).length + JSON.stringify(paths).length);
    expect(await store.usage.storageBytes(org)).toBe(6 * each);

    // Deltas not yet in a checkpoint stay whatever their age.
    expect(await store.spaces.pruneDeltas(s, Date.now() + 1, 2)).toBe(2);
    expect((await store.spaces.deltasSince(s, 0, 10)).map((d) => d.version)).toEqual([3, 4, 5, 6]);
    expect(await store.usage.storageBytes(org)).toBe(4 * each);
    // Deltas made at or after `before` stay.
    expect(await store.spaces.pruneDeltas(s, cut)).toBe(3);
    expect((await store.spaces.deltasSince(s, 0, 10)).map((d) => d.version)).toEqual([4, 5, 6]);
    expect(await store.usage.storageBytes(org)).toBe(3 * each);
    expect(await store.spaces.pruneDeltas(s, cut)).toBe(3);
  });

  it('summarises the retained log: the version before its oldest delta and the last version that wrote each path', async () => {
    const s = uid('s');
    const org = uid('o');
    await store.spaces.create({ id: s, orgId: org, name: 'x', config: config() });
    expect(await store.spaces.lastWrites(s)).toEqual({ oldestVersion: null, byPath: new Map() });
    const writes = [['/a', '/b'], ['/b'], ['/c', '/a'], ['/d'], ['/b']];
    for (const [v, paths] of writes.entries()) {
      await store.spaces.appendDelta(s, v, { epoch: 0, fromVersion: v, ops: paths.map((p) => op(p)), paths, author: null });
    }
    expect(await store.spaces.lastWrites(s)).toEqual({ oldestVersion: 0, byPath: new Map([['/a', 3], ['/b', 5], ['/c', 3], ['/d', 4]]) });
    await store.spaces.pruneDeltas(s, Date.now() + 1, 3);
    expect(await store.spaces.lastWrites(s)).toEqual({ oldestVersion: 3, byPath: new Map([['/b', 5], ['/d', 4]]) });
  });
});

describe('spaces', () => {
  it('lists an org’s spaces in pages, never another org’s, and counts them', async () => {
    const [a, b] = [uid('a'), uid('b')];
    for (let i = 0; i < 5; i++) await store.spaces.create({ id: `${a}-${i}`, orgId: a, name: `n${i}`, config: config() });
    await store.spaces.create({ id: `${b}-0`, orgId: b, name: 'other', config: config() });
    const first = await store.spaces.list(a, null, 3);
    const second = await store.spaces.list(a, { createdAt: first[2]!.createdAt, id: first[2]!.id }, 3);
    expect(first).toHaveLength(3);
    expect(second).toHaveLength(2);
    expect([...first, ...second].map((s) => s.id).sort()).toEqual([0, 1, 2, 3, 4].map((i) => `${a}-${i}`));
    const all = [...first, ...second];
    for (let i = 1; i < all.length; i++) expect(all[i]!.createdAt).toBeGreaterThanOrEqual(all[i - 1]!.createdAt);
    expect(await store.spaces.count(a)).toBe(5);
    expect(await store.spaces.count(b)).toBe(1);
    expect(await store.spaces.count(uid('c'))).toBe(0);
  });

  it('creates a space active at version 0 and changes only the fields an update names', async () => {
    const s = uid('s');
    const org = uid('o');
    const created = await store.spaces.create({ id: s, orgId: org, name: 'room', config: config() });
    expect(created).toMatchObject({ id: s, orgId: org, name: 'room', config: config(), status: 'active', epoch: 0, version: 0, checkpoint: null, checkpointVersion: null });
    expect(created.updatedAt).toBe(created.createdAt);
    await sleep(3);
    await store.spaces.update(s, { status: 'locked', checkpoint: '{"v":1}', checkpointVersion: 4 });
    const changed = (await store.spaces.get(s))!;
    expect(changed).toMatchObject({ status: 'locked', checkpoint: '{"v":1}', checkpointVersion: 4, epoch: 0, config: config() });
    expect(changed.updatedAt).toBeGreaterThan(created.updatedAt);
    await store.spaces.update(s, { checkpoint: null, epoch: 3, config: config(5) });
    expect(await store.spaces.get(s)).toMatchObject({ status: 'locked', checkpoint: null, checkpointVersion: 4, epoch: 3, config: config(5) });
    expect(await store.spaces.get('nope')).toBeNull();
  });

  it('deletes a space with its log and members', async () => {
    const s = uid('s');
    const keep = uid('keep');
    const org = uid('o');
    await store.spaces.create({ id: s, orgId: org, name: 'x', config: config() });
    await store.spaces.create({ id: keep, orgId: org, name: 'y', config: config() });
    const o = op('/state/phases/0');
    await store.spaces.appendDelta(s, 0, { epoch: 0, fromVersion: 0, ops: [o], paths: [o.path], author: null });
    await store.spaces.appendDelta(keep, 0, { epoch: 0, fromVersion: 0, ops: [o], paths: [o.path], author: null });
    await store.spaces.joinMember({ spaceId: s, id: 'm', userId: 'u', orgId: org, role: 'owner', displayName: null, expiresAt: null });
    await store.spaces.delete(s);
    expect(await store.spaces.get(s)).toBeNull();
    expect(await store.spaces.deltasSince(s, 0, 10)).toEqual([]);
    expect(await store.spaces.getMember(s, 'm')).toBeNull();
    expect(await store.spaces.count(org)).toBe(1);
    expect(await store.usage.storageBytes(org)).toBe(bytesOf([o], [o.path]));
  });
});

describe('space members', () => {
  let s = '';
  const member = (id: string, expiresAt: number | null = null) =>
    ({ spaceId: s, id, userId: `u-${id}`, orgId: 'o', role: 'writer', displayName: `name ${id}`, expiresAt }) as const;

  beforeEach(async () => {
    s = uid(s);
    await store.spaces.create({ id: s, orgId: 'o', name: 'x', config: config() });
  });

  it('joins, lists present members oldest first, and counts them', async () => {
    const a = await store.spaces.joinMember(member('a'));
    expect(a).toMatchObject({ spaceId: s, id: 'a', userId: 'u-a', orgId: 'o', role: 'writer', displayName: 'name a', leftAt: null, removedAt: null, expiresAt: null });
    await sleep(2);
    await store.spaces.joinMember(member('b', 123));
    expect((await store.spaces.listMembers(s)).map((m) => m.id)).toEqual(['a', 'b']);
    expect(await store.spaces.countMembers(s)).toBe(2);
    expect(await store.spaces.getMember(s, 'b')).toMatchObject({ expiresAt: 123 });
    expect(await store.spaces.getMember(s, 'zz')).toBeNull();
  });

  it('lets a member leave and come back, and keeps a removed one marked after it rejoins', async () => {
    await store.spaces.joinMember(member('a'));
    expect(await store.spaces.leaveMember(s, 'a')).toBe(true);
    expect(await store.spaces.leaveMember(s, 'a')).toBe(false);
    expect(await store.spaces.countMembers(s)).toBe(0);
    expect((await store.spaces.getMember(s, 'a'))!.leftAt).not.toBeNull();
    const back = await store.spaces.joinMember(member('a', 99));
    expect(back).toMatchObject({ leftAt: null, expiresAt: 99 });
    expect(await store.spaces.countMembers(s)).toBe(1);

    // Removal works on a member that already left, once.
    await store.spaces.leaveMember(s, 'a');
    const left = (await store.spaces.getMember(s, 'a'))!.leftAt;
    await sleep(2);
    expect(await store.spaces.leaveMember(s, 'a', true)).toBe(true);
    const removed = (await store.spaces.getMember(s, 'a'))!;
    expect(removed.leftAt).toBe(left);
    expect(removed.removedAt).not.toBeNull();
    expect(await store.spaces.leaveMember(s, 'a', true)).toBe(false);
    expect(await store.spaces.leaveMember(s, 'nobody', true)).toBe(false);
  });

  it('finds present members whose token expired, across spaces, and lets every member leave at once', async () => {
    const first = s;
    await store.spaces.joinMember(member('old', 1000));
    await store.spaces.joinMember(member('new', 5000));
    await store.spaces.joinMember(member('forever', null));
    await store.spaces.joinMember(member('gone', 1000));
    await store.spaces.leaveMember(s, 'gone');
    s = uid('s');
    await store.spaces.create({ id: s, orgId: 'o', name: 'y', config: config() });
    await store.spaces.joinMember(member('late', 1500));
    // Other tests of the file left members of their own spaces: only these two spaces are looked at.
    const ours = (at: number) => store.spaces.expiredMembers(at).then((all) => all.filter((m) => m.spaceId === first || m.spaceId === s));
    expect(await ours(2000)).toEqual(expect.arrayContaining([{ spaceId: first, id: 'old' }, { spaceId: s, id: 'late' }]));
    expect(await ours(2000)).toHaveLength(2);
    expect(await ours(1200)).toEqual([{ spaceId: first, id: 'old' }]);
    await store.spaces.leaveAll();
    expect(await store.spaces.countMembers(first)).toBe(0);
    expect(await store.spaces.countMembers(s)).toBe(0);
    expect(await store.spaces.expiredMembers(10_000)).toEqual([]);
  });
});

// The summary's chunks need more than 10 000 deltas: appended one by one, each a commit, that takes far
// too long, so the log is written straight into the database (test/deltas.test.ts does the same on SQLite).
describe.runIf(TEST_STORE === 'postgres')('space deltas on Postgres', () => {
  it('summarises the log across chunks of versions', async () => {
    const url = `${PG_SERVER}/${TEST_DB_PREFIX}${randomBytes(8).toString('hex')}`;
    await ensureDatabase(url);
    const pool = await openPg(url);
    try {
      const spaces = new PgSpaceStore(pool);
      await spaces.create({ id: 's', orgId: 'o', name: 'x', config: config() });
      const n = 25_000;
      await pool.query(
        `INSERT INTO space_deltas (space_id, version, epoch, from_version, ops, paths, author, created_at)
         SELECT 's', v, 0, v - 1, '[]',
           CASE WHEN v = 20001 THEN '["/state/phases/' || (v - 1) % 4 || '","/state/operators/resonanceTarget"]' ELSE '["/state/phases/' || (v - 1) % 4 || '"]' END,
           NULL, $2
         FROM generate_series(1, $1::bigint) AS v`,
        [n, Date.now()],
      );
      await pool.query('UPDATE spaces SET version = $1 WHERE id = $2', [n, 's']);
      const summary = await spaces.lastWrites('s');
      expect(summary.oldestVersion).toBe(0);
      expect(Object.fromEntries(summary.byPath)).toEqual({
        '/state/phases/0': 24_997, '/state/phases/1': 24_998, '/state/phases/2': 24_999, '/state/phases/3': 25_000,
        '/state/operators/resonanceTarget': 20_001,
      });
      expect(await spaces.pruneDeltas('s', Date.now() + 1, 15_000)).toBe(15_000);
      expect((await spaces.lastWrites('s')).oldestVersion).toBe(15_000);
      expect((await spaces.lastWrites('s')).byPath.get('/state/operators/resonanceTarget')).toBe(20_001);
    } finally {
      await pool.end();
      await dropDatabase(url);
    }
  });
});
