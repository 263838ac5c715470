/** The space store on a real SQLite file: contiguous durable versions, replay, pruning, pagination. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { normalizeSpace } from '../src/model/space.js';
import { openDb } from '../src/store/db.js';
import { SqliteSpaceStore } from '../src/store/spaces.js';

function config() {
  const r = normalizeSpace({ name: 'demo-room', basis: { primes: [2, 3, 5, 7, 11, 13] }, seed: 1 });
  if (!r.ok) throw new Error('bad config');
  return r.normalized;
}

describe('SqliteSpaceStore', () => {
  it('appends deltas as contiguous versions that survive reopening, refusing a stale expected version', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'spaces-')), 'resonance.db');
    const store = new SqliteSpaceStore(openDb(file));
    await store.create({ id: 's1', orgId: 'o1', name: 'demo-room', config: config() });
    const op = { op: 'shift_phase', path: '/state/phases/1', value: 0.1 };
    for (let v = 0; v < 5; v++) {
      const stored = await store.appendDelta('s1', v, { epoch: 0, fromVersion: v, ops: [op], paths: [op.path], author: 'm1' });
      expect(stored?.version).toBe(v + 1);
    }
    expect(await store.appendDelta('s1', 3, { epoch: 0, fromVersion: 3, ops: [op], paths: [op.path], author: 'm2' })).toBeNull();
    const reopened = new SqliteSpaceStore(openDb(file));
    expect((await reopened.get('s1'))?.version).toBe(5);
    expect((await reopened.deltasSince('s1', 2, 100)).map((d) => d.version)).toEqual([3, 4, 5]);
    expect((await reopened.deltasSince('s1', 0, 100))[0]).toMatchObject({ ops: [op], paths: ['/state/phases/1'], author: 'm1' });
  });

  it('prunes old deltas and reports the oldest version a client may resume from', async () => {
    const store = new SqliteSpaceStore(openDb(join(mkdtempSync(join(tmpdir(), 'spaces-')), 'resonance.db')));
    await store.create({ id: 's', orgId: 'o', name: 'x', config: config() });
    const op = { op: 'set_phase', path: '/state/phases/0', value: 1 };
    for (let v = 0; v < 3; v++) await store.appendDelta('s', v, { epoch: 0, fromVersion: v, ops: [op], paths: [op.path], author: null });
    expect(await store.pruneDeltas('s', 0)).toBe(0);
    expect(await store.pruneDeltas('s', Date.now() + 1)).toBe(3);
    expect(await store.deltasSince('s', 0, 10)).toEqual([]);
  });

  it('lists an org’s spaces in pages, never another org’s', async () => {
    const store = new SqliteSpaceStore(openDb(join(mkdtempSync(join(tmpdir(), 'spaces-')), 'resonance.db')));
    for (let i = 0; i < 5; i++) await store.create({ id: `a${i}`, orgId: 'a', name: `n${i}`, config: config() });
    await store.create({ id: 'b0', orgId: 'b', name: 'other', config: config() });
    const first = await store.list('a', null, 3);
    const second = await store.list('a', { createdAt: first[2]!.createdAt, id: first[2]!.id }, 3);
    expect([...first, ...second].map((s) => s.id).sort()).toEqual(['a0', 'a1', 'a2', 'a3', 'a4']);
    expect(second).toHaveLength(2);
  });
});
