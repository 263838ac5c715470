/** Delta validation, roles and version rules of a live space; the delta log's summary, pruning and byte count. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuEngine } from '../src/engine/cpu/engine.js';
import { normalizeSpace } from '../src/model/space.js';
import { decideDelta, type Delta, type DeltaContext } from '../src/sim/deltas.js';
import { Scheduler } from '../src/sim/scheduler.js';
import { SpaceHub } from '../src/sim/spaces.js';
import { openDb } from '../src/store/db.js';
import { SqliteSessionStore } from '../src/store/sessions.js';
import { SqliteSpaceStore } from '../src/store/spaces.js';
import { DEMO_ROOM } from './helpers/server.js';

// Versions 11 and 12 wrote these paths (/state/phases/0 was last written at 7, before the retained history).
const lastWrites = new Map([
  ['/state/phases/0', 7],
  ['/state/phases/1', 11],
  ['/state/operators/resonanceTarget', 12],
]);
const ctx = (over: Partial<DeltaContext> = {}): DeltaContext => ({ epoch: 2, version: 12, oldestVersion: 10, lastWrites, k: 6, role: 'writer', ...over });

describe('decideDelta', () => {
  it('rebases shift_phase onto the current version, even on a path written since', () => {
    const d = decideDelta({ fromVersion: 10, ops: [{ op: 'shift_phase', path: '/state/phases/1', value: 0.01 }] }, ctx());
    expect(d).toEqual({ ok: true, ops: [{ op: 'shift_phase', path: '/state/phases/1', value: 0.01 }] });
  });

  it('refuses a set_* on a path written after fromVersion with 409 and the current version', () => {
    const d = decideDelta({ fromVersion: 10, ops: [{ op: 'set_phase', path: '/state/phases/1', value: 1 }] }, ctx());
    expect(d).toMatchObject({ ok: false, status: 409, code: 'conflict', currentVersion: 12 });
    const fresh = decideDelta({ fromVersion: 11, ops: [{ op: 'set_phase', path: '/state/phases/1', value: 1 }] }, ctx());
    expect(fresh.ok).toBe(true);
    const other = decideDelta({ fromVersion: 10, ops: [{ op: 'set_phase', path: '/state/phases/2', value: 1 }] }, ctx());
    expect(other.ok).toBe(true);
  });

  it('refuses deltas older than the history, from the future, or from another epoch', () => {
    const op = { op: 'shift_phase' as const, path: '/state/phases/0', value: 0.1 };
    expect(decideDelta({ fromVersion: 9, ops: [op] }, ctx())).toMatchObject({ status: 409, code: 'stale_version' });
    expect(decideDelta({ fromVersion: 13, ops: [op] }, ctx())).toMatchObject({ status: 409, code: 'version_ahead' });
    expect(decideDelta({ fromVersion: 12, epoch: 1, ops: [op] }, ctx())).toMatchObject({ status: 409, code: 'stale_epoch' });
    expect(decideDelta({ fromVersion: 12, epoch: 2, ops: [op] }, ctx()).ok).toBe(true);
  });

  it('checks roles per op: readers nothing, writers phases, admins everything', () => {
    const target = { op: 'set_operator' as const, path: '/state/operators/resonanceTarget', value: 0.9 };
    const phase = { op: 'set_phase' as const, path: '/state/phases/0', value: 0 };
    expect(decideDelta({ fromVersion: 12, ops: [phase] }, ctx({ role: 'reader' }))).toMatchObject({ status: 403, code: 'insufficient_role' });
    expect(decideDelta({ fromVersion: 12, ops: [target] }, ctx({ role: 'writer' }))).toMatchObject({ status: 403 });
    expect(decideDelta({ fromVersion: 12, ops: [target, phase] }, ctx({ role: 'admin' })).ok).toBe(true);
    expect(decideDelta({ fromVersion: 12, ops: [target] }, ctx({ role: 'owner' })).ok).toBe(true);
  });

  it('validates every op by pointer: paths, indices and values against the space schemas', () => {
    const d = decideDelta(
      {
        fromVersion: 12,
        ops: [
          { op: 'set_phase', path: '/state/phases/6', value: 0 },
          { op: 'shift_phase', path: '/state/phases/2', value: 'x' },
          { op: 'set_operator', path: '/state/operators/resonanceTarget', value: 1.5 },
          { op: 'set_policy', path: '/state/policy/publishHz', value: 61 },
          { op: 'set_entropy', path: '/state/operators/localityBias', value: 0.1 },
          { op: 'set_operator', path: '/state/operators/mixer/gamma0', value: 0.4 },
          { op: 'set_operator', path: '/state/operators/semantic/enabled', value: true },
        ],
      },
      ctx({ role: 'admin' }),
    );
    expect(d.ok).toBe(false);
    if (d.ok) return;
    expect(d.status).toBe(400);
    expect(d.errors?.map((e) => e.pointer)).toEqual(['/ops/0/path', '/ops/1/value', '/ops/2/value', '/ops/3/value', '/ops/4/path']);
  });

  it('a path last written at or before fromVersion does not conflict, also when that write left the history', () => {
    const set = (path: string, fromVersion: number): Delta => ({ fromVersion, ops: [{ op: 'set_phase', path, value: 1 }] });
    expect(decideDelta(set('/state/phases/0', 10), ctx()).ok).toBe(true); // written at 7, oldest 10
    expect(decideDelta(set('/state/phases/1', 11), ctx()).ok).toBe(true); // written exactly at fromVersion
    expect(decideDelta(set('/state/phases/1', 10), ctx())).toMatchObject({ code: 'conflict' });
    expect(decideDelta(set('/state/phases/1', 10), ctx({ lastWrites: new Map() })).ok).toBe(true);
  });

  it('decides exactly as a scan of the retained history would, on random histories', () => {
    // The rule of docs/spaces.md, read off the list of retained deltas: conflict when a delta after
    // fromVersion wrote the path of a set_* op.
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const paths = ['/state/phases/0', '/state/phases/1', '/state/phases/2', '/state/operators/resonanceTarget', '/state/entropy/lambda'];
    for (let trial = 0; trial < 200; trial++) {
      const version = 1 + rand(60);
      const history = Array.from({ length: version }, (_, i) => ({ toVersion: i + 1, paths: [paths[rand(5)]!, paths[rand(5)]!] }));
      const oldestVersion = rand(version + 1);
      const lastWrites = new Map<string, number>();
      // Every write, or only those after oldestVersion (what a checkpoint leaves): both must decide alike.
      const pruned = rand(2) === 1;
      for (const h of history) if (!pruned || h.toVersion > oldestVersion) for (const p of h.paths) lastWrites.set(p, h.toVersion);
      for (let q = 0; q < 20; q++) {
        const fromVersion = Math.max(0, oldestVersion - 2 + rand(version - oldestVersion + 5));
        const path = paths[rand(5)]!;
        const op = path.startsWith('/state/phases/') ? (rand(2) ? 'set_phase' : 'shift_phase') : path.startsWith('/state/entropy') ? 'set_entropy' : 'set_operator';
        const delta = { fromVersion, ops: [{ op, path, value: 0.5 }] } as Delta;
        const d = decideDelta(delta, { epoch: 0, version, oldestVersion, lastWrites, k: 3, role: 'admin' });
        let expected = 'ok';
        if (fromVersion > version) expected = 'version_ahead';
        else if (fromVersion < oldestVersion) expected = 'stale_version';
        else if (op !== 'shift_phase' && history.some((h) => h.toVersion > Math.max(fromVersion, oldestVersion) && h.paths.includes(path))) expected = 'conflict';
        expect(d.ok ? 'ok' : d.code, JSON.stringify({ trial, q, fromVersion, oldestVersion, version, path, op })).toBe(expected);
      }
    }
  });
});

describe('the delta log', () => {
  const config = () => {
    const r = normalizeSpace({ name: 'log', basis: { primes: [2, 3, 5, 7] }, seed: 1 });
    if (!r.ok) throw new Error('bad config');
    return r.normalized;
  };
  const open = async () => {
    const db = openDb(join(mkdtempSync(join(tmpdir(), 'deltas-')), 'resonance.db'));
    const store = new SqliteSpaceStore(db, 'wal');
    await store.create({ id: 's', orgId: 'o', name: 'log', config: config() });
    const bytes = (): number => (db.prepare('SELECT delta_bytes AS b FROM spaces WHERE id = ?').get('s') as { b: number }).b;
    const counted = (): number =>
      (db.prepare('SELECT COALESCE(SUM(length(ops) + length(paths)), 0) AS b FROM space_deltas WHERE space_id = ?').get('s') as { b: number }).b;
    return { db, store, bytes, counted };
  };

  it('summarises the last write of each path and the oldest retained version, across chunks', async () => {
    const { db, store } = await open();
    expect(await store.lastWrites('s')).toEqual({ oldestVersion: null, byPath: new Map() });
    // Several chunks of the summary (10 000 deltas each), written straight into the log in one transaction.
    const n = 45_000;
    const insert = db.prepare('INSERT INTO space_deltas (space_id, version, epoch, from_version, ops, paths, author, created_at) VALUES (?, ?, 0, ?, ?, ?, NULL, ?)');
    db.transaction(() => {
      for (let v = 0; v < n; v++) {
        const paths = [`/state/phases/${v % 4}`, ...(v === 30_000 ? ['/state/operators/resonanceTarget'] : [])];
        insert.run('s', v + 1, v, JSON.stringify(paths.map((path) => ({ op: 'x', path, value: 0 }))), JSON.stringify(paths), Date.now());
      }
      db.prepare('UPDATE spaces SET version = ? WHERE id = ?').run(n, 's');
    })();
    const summary = await store.lastWrites('s');
    expect(summary.oldestVersion).toBe(0);
    expect(Object.fromEntries(summary.byPath)).toEqual({
      '/state/phases/0': 44_997, '/state/phases/1': 44_998, '/state/phases/2': 44_999, '/state/phases/3': 45_000,
      '/state/operators/resonanceTarget': 30_001,
    });
    expect(await store.pruneDeltas('s', Date.now() + 1, 40_000)).toBe(40_000);
    expect((await store.lastWrites('s')).oldestVersion).toBe(40_000);
  });

  it('prunes a prefix of the log only, and keeps delta_bytes equal to the bytes of its ops and paths', async () => {
    const { db, store, bytes, counted } = await open();
    const op = { op: 'set_phase', path: '/state/phases/0', value: 1 };
    for (let v = 0; v < 10; v++) await store.appendDelta('s', v, { epoch: 0, fromVersion: v, ops: [op], paths: [op.path], author: null });
    expect(bytes()).toBe(counted());
    expect(bytes()).toBe(10 * (JSON.stringify([op]).length + JSON.stringify([op.path]).length));
    // Versions 1-3 and 6 are old, 4-5 recent (a clock that stepped back): only 1-3 go, the log stays contiguous.
    const at = db.prepare('UPDATE space_deltas SET created_at = ? WHERE space_id = ? AND version = ?');
    for (const v of [1, 2, 3, 6]) at.run(1000, 's', v);
    for (const v of [4, 5, 7, 8, 9, 10]) at.run(5000, 's', v);
    expect(await store.pruneDeltas('s', 2000)).toBe(3);
    expect((await store.deltasSince('s', 0, 100)).map((d) => d.version)).toEqual([4, 5, 6, 7, 8, 9, 10]);
    expect(bytes()).toBe(counted());
    // upTo: what no checkpoint holds stays, old or not.
    expect(await store.pruneDeltas('s', 9000, 8)).toBe(8);
    expect((await store.deltasSince('s', 0, 100)).map((d) => d.version)).toEqual([9, 10]);
    expect(bytes()).toBe(counted());
    expect(await store.pruneDeltas('s', 9000)).toBe(10);
    expect(bytes()).toBe(0);
  });

  it('prunes through the primary key: every statement of a prune reads a range of versions', () => {
    const db = openDb(':memory:');
    const plan = (sql: string): string =>
      (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...sql.split('?').slice(1).map(() => 1)) as Array<{ detail: string }>).map((r) => r.detail).join('; ');
    for (const sql of [
      'SELECT version FROM space_deltas WHERE space_id = ? AND version <= ? AND created_at >= ? ORDER BY version LIMIT 1',
      'SELECT COUNT(*) AS n, COALESCE(SUM(length(ops) + length(paths)), 0) AS bytes FROM space_deltas WHERE space_id = ? AND version < ?',
      'DELETE FROM space_deltas WHERE space_id = ? AND version < ?',
    ]) {
      expect(plan(sql), sql).toMatch(/^SEARCH space_deltas USING (COVERING )?INDEX sqlite_autoindex_space_deltas_1 \(space_id=\? AND version<\?\)$/);
    }
  });
});

describe('a space loaded again from its log', () => {
  it('keeps the conflict and epoch rules: the last writes and the epoch start are read back from the log', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'deltas-hub-')), 'resonance.db');
    const start = async () => {
      const engine = new CpuEngine({ precision: 'f64', threads: 0 });
      const scheduler = new Scheduler({ engine, sessions: new SqliteSessionStore(openDb(file)) });
      const hub = new SpaceHub({ scheduler, store: new SqliteSpaceStore(openDb(file)), maxBasis: 2048, idleEvictMs: 60_000, checkpointEveryMs: 60_000 });
      await hub.start();
      await scheduler.start();
      return { hub, stop: async () => (await hub.stop(), await scheduler.stop(), await engine.destroy()) };
    };
    const set = (path: string, fromVersion: number, value = 0.5): Delta => ({ fromVersion, ops: [{ op: 'set_phase', path, value }] });
    const first = await start();
    const { row } = await first.hub.create('org', { ...DEMO_ROOM, seed: 1 });
    await first.hub.propose(row.id, set('/state/phases/1', 0), 'writer', 'a'); // version 1
    await first.hub.propose(row.id, { fromVersion: 1, ops: [{ op: 'set_operator', path: '/state/operators/resonanceTarget', value: 0.7 }] }, 'admin', 'a'); // 2
    await first.hub.replaceBasis(row.id, { primes: [2, 3, 5, 7, 11] }, 'owner'); // 3, epoch 1
    await first.hub.propose(row.id, set('/state/phases/2', 3), 'writer', 'a'); // 4
    await first.stop();

    const second = await start();
    try {
      await expect(second.hub.propose(row.id, { fromVersion: 2, ops: [{ op: 'shift_phase', path: '/state/phases/0', value: 0.1 }] }, 'writer', 'b'))
        .rejects.toMatchObject({ code: 'stale_epoch' });
      await expect(second.hub.propose(row.id, set('/state/phases/2', 3), 'writer', 'b')).rejects.toMatchObject({ code: 'conflict', meta: { currentVersion: 4 } });
      await expect(second.hub.propose(row.id, { fromVersion: 3, ops: [{ op: 'set_operator', path: '/state/operators/resonanceTarget', value: 0.9 }] }, 'admin', 'b'))
        .resolves.toMatchObject({ frame: { toVersion: 5 } });
      await expect(second.hub.propose(row.id, set('/state/phases/1', 3), 'writer', 'b')).resolves.toMatchObject({ frame: { toVersion: 6 } });
      await expect(second.hub.propose(row.id, { fromVersion: 4, ops: [{ op: 'set_operator', path: '/state/operators/resonanceTarget', value: 0.8 }] }, 'admin', 'b'))
        .rejects.toMatchObject({ code: 'conflict' });
    } finally {
      await second.stop();
    }
  });
});

