/** Group commit of the SQLite store: one fsync of the WAL covers every commit made before it started. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { durable, openDb, syncStats } from '../src/store/db.js';
import { WalSync } from '../src/store/wal-sync.js';

const dbFile = (): string => join(mkdtempSync(join(tmpdir(), 'walsync-')), 'resonance.db');

describe('WalSync', () => {
  it('starts one fsync at once and makes every caller that arrives while it runs share the next', async () => {
    const db = openDb(dbFile());
    db.exec('CREATE TABLE t (v INTEGER)');
    const before = syncStats(db).syncs;
    const calls: Array<Promise<void>> = [];
    for (let i = 0; i < 20; i++) {
      db.prepare('INSERT INTO t VALUES (?)').run(i);
      calls.push(durable(db));
    }
    await Promise.all(calls);
    // The first call's fsync may have started before the later commits: they need exactly one more.
    expect(syncStats(db).syncs - before).toBe(2);
    await durable(db);
    expect(syncStats(db).syncs - before).toBe(3);
    db.close();
  });

  it('resolves callers in the order they called', async () => {
    const db = openDb(dbFile());
    const order: number[] = [];
    await Promise.all(Array.from({ length: 10 }, (_, i) => durable(db).then(() => order.push(i))));
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    db.close();
  });

  it('has nothing to do when the WAL is gone (the last connection checkpointed and removed it)', async () => {
    const sync = new WalSync(join(mkdtempSync(join(tmpdir(), 'walsync-')), 'missing.db-wal'));
    await expect(sync.sync()).resolves.toBeUndefined();
    expect(sync.failures).toBe(0);
  });

  it('rejects, and counts, an fsync that fails', async () => {
    // A path through a regular file (ENOTDIR) stands in for an I/O error.
    const file = dbFile();
    writeFileSync(file, '');
    const sync = new WalSync(join(file, 'x-wal'));
    await expect(sync.sync()).rejects.toThrow();
    expect(sync.failures).toBe(1);
  });

  it('leaves an in-memory database alone', async () => {
    const db = openDb(':memory:');
    await durable(db);
    expect(syncStats(db).syncs).toBe(0);
    db.close();
  });
});
