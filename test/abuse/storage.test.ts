/**
 * What the store gives back by itself (docs/tenancy.md "Retention"): ended HQE sessions and their events
 * after the retention period, finished webhook deliveries, and the WAL file cut back once idle. On a real
 * SQLite file with the store's own repositories.
 */
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { normalize } from '../../src/model/normalize.js';
import type { NormalizedConfig } from '../../src/model/config.js';
import { Checkpointer } from '../../src/store/checkpointer.js';
import { openDb } from '../../src/store/db.js';
import { purgeExpired } from '../../src/store/retention.js';
import { SqliteSessionStore } from '../../src/store/sessions.js';

const dbFile = (): string => join(mkdtempSync(join(tmpdir(), 'retention-')), 'resonance.db');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const HOUR = 3_600_000;

function config(): NormalizedConfig {
  const r = normalize({ primes: [2, 3, 5], seed: 1 }, { maxBasis: 2048 });
  if (!r.ok) throw new Error('fixture config is invalid');
  return r.normalized;
}

describe('retention', () => {
  it('deletes ended sessions and their events after the retention period, in bounded batches; running and recent ones stay', async () => {
    const db = openDb(dbFile());
    const sessions = new SqliteSessionStore(db);
    const cfg = config();
    for (const id of ['old', 'recent', 'running', 'completed']) {
      await sessions.create({ id, orgId: 'org_a', config: cfg, status: 'running' });
      const events = Array.from({ length: 30 }, (_, i) => ({ kind: 'metrics' as const, step: i, restart: 0, body: JSON.stringify({ step: i, id }) }));
      await sessions.appendEvents(id, events);
    }
    expect((await sessions.get('old'))!.eventBytes).toBeGreaterThan(30 * 10);
    await sessions.update('old', { status: 'converged' });
    await sessions.update('recent', { status: 'closed' });
    // `completed` may be stepped again: it has not ended.
    await sessions.update('completed', { status: 'completed' });
    expect((await sessions.get('old'))!.endedAt).not.toBeNull();
    expect((await sessions.get('completed'))!.endedAt).toBeNull();
    db.prepare("UPDATE hqe_sessions SET ended_at = ended_at - ? WHERE id = 'old'").run(10 * HOUR);

    const policy = { sessionRetentionMs: 5 * HOUR, deliveryRetentionMs: 5 * HOUR };
    // A batch of 20 rows: the 30 events of the old session take two sweeps, the row goes with the second.
    const first = await purgeExpired(db, Date.now(), policy, 20);
    expect(first).toMatchObject({ sessions: 0, events: 20 });
    expect(await sessions.get('old')).not.toBeNull();
    const second = await purgeExpired(db, Date.now(), policy, 20);
    expect(second).toMatchObject({ sessions: 1, events: 10 });
    expect(await sessions.get('old')).toBeNull();
    for (const id of ['recent', 'running', 'completed']) expect((await sessions.events(id, 0, 100)).length).toBe(30);
    db.close();
  });

  it('deletes finished webhook deliveries after the retention period and keeps pending ones', async () => {
    const db = openDb(dbFile());
    const insert = db.prepare(
      "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, payload, status, next_attempt_at, created_at) VALUES (?, 'wh', 'ev', 'hqe.plateau', '{}', ?, 0, ?)",
    );
    const old = Date.now() - 10 * HOUR;
    insert.run('d1', 'delivered', old);
    insert.run('d2', 'failed', old);
    insert.run('d3', 'pending', old);
    insert.run('d4', 'delivered', Date.now());
    const r = await purgeExpired(db, Date.now(), { sessionRetentionMs: HOUR, deliveryRetentionMs: 5 * HOUR });
    expect(r.deliveries).toBe(2);
    const left = (db.prepare('SELECT id FROM webhook_deliveries ORDER BY id').all() as Array<{ id: string }>).map((x) => x.id);
    expect(left).toEqual(['d3', 'd4']);
    db.close();
  });
});

describe('WAL size', () => {
  it('caps the WAL the writer restarts (journal_size_limit) and truncates an idle, fully checkpointed WAL to zero', async () => {
    const path = dbFile();
    const db = openDb(path);
    expect(db.pragma('journal_size_limit', { simple: true })).toBe(16 * 2 ** 20);
    db.exec('CREATE TABLE t (v BLOB)');
    const checkpointer = new Checkpointer(db, path, 20, () => undefined, 256 * 1024);
    const insert = db.prepare('INSERT INTO t VALUES (?)');
    // One transaction of 8 MiB: the WAL file grows to about that while it is written.
    db.transaction(() => {
      for (let i = 0; i < 2048; i++) insert.run(Buffer.alloc(4096, i & 0xff));
    })();
    expect(statSync(`${path}-wal`).size).toBeGreaterThan(4 * 2 ** 20);
    for (let i = 0; i < 250 && checkpointer.stats().truncations === 0; i++) await sleep(20);
    expect(checkpointer.stats().truncations).toBeGreaterThan(0);
    expect(statSync(`${path}-wal`).size).toBe(0);
    expect((db.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n).toBe(2048);
    // The writer goes on after a truncation.
    insert.run(Buffer.alloc(16));
    expect((db.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n).toBe(2049);
    await checkpointer.stop();
    db.close();
  });
});
