/**
 * The SQLite store's disk work off the event loop: group commit (one fsync of the WAL covers every commit
 * made before it started) and WAL checkpoints in a worker thread.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { durable, openDb, syncStats, write, written } from '../src/store/db.js';
import { Checkpointer } from '../src/store/checkpointer.js';
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
    // Nothing committed since: nothing to wait for.
    await durable(db);
    expect(syncStats(db).syncs - before).toBe(2);
    db.prepare('INSERT INTO t VALUES (?)').run(20);
    await durable(db);
    expect(syncStats(db).syncs - before).toBe(3);
    db.close();
  });

  it('resolves callers in the order they called, and a caller covered by the running fsync waits only for it', async () => {
    const db = openDb(dbFile());
    db.exec('CREATE TABLE t (v INTEGER)');
    const insert = db.prepare('INSERT INTO t VALUES (?)');
    const before = syncStats(db).syncs;
    const order: number[] = [];
    insert.run(0);
    const calls = [durable(db).then(() => order.push(0)), durable(db).then(() => order.push(1))];
    for (let i = 2; i < 10; i++) {
      insert.run(i);
      calls.push(durable(db).then(() => order.push(i)));
    }
    await Promise.all(calls);
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(syncStats(db).syncs - before).toBe(2);
    db.close();
  });

  it('lets a write that changed no row resolve without waiting for the fsync of others', async () => {
    const db = openDb(dbFile());
    db.exec('CREATE TABLE t (v INTEGER)');
    db.prepare('INSERT INTO t VALUES (1)').run();
    const order: string[] = [];
    const before = syncStats(db).syncs;
    const others = durable(db).then(() => order.push('fsync'));
    const nothing = written(db, () => db.prepare('UPDATE t SET v = 2 WHERE v = -1').run()).then(() => order.push('no-op write'));
    await Promise.all([others, nothing]);
    expect(order).toEqual(['no-op write', 'fsync']);
    // A write that changed a row waits for an fsync that covers it.
    await written(db, () => db.prepare('UPDATE t SET v = 2 WHERE v = 1').run());
    expect(syncStats(db).syncs - before).toBe(2);
    db.close();
  });

  it('has nothing to do when the WAL is gone (the last connection checkpointed and removed it)', async () => {
    let changes = 0;
    const sync = new WalSync(join(mkdtempSync(join(tmpdir(), 'walsync-')), 'missing.db-wal'), () => ++changes);
    await expect(sync.sync()).resolves.toBeUndefined();
    expect(sync.failures).toBe(0);
  });

  it('rejects, and counts, an fsync that fails', async () => {
    // A path through a regular file (ENOTDIR) stands in for an I/O error.
    const file = dbFile();
    writeFileSync(file, '');
    const sync = new WalSync(join(file, 'x-wal'), () => 1);
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

describe('Checkpointer', () => {
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  it('checkpoints from its worker so the writer reuses the WAL, and hands checkpoints back when stopped', async () => {
    const path = dbFile();
    const db = openDb(path);
    db.exec('CREATE TABLE t (v BLOB)');
    const checkpointer = new Checkpointer(db, path, 20);
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
    const insert = db.prepare('INSERT INTO t VALUES (?)');
    const page = Buffer.alloc(4096, 7);
    // 1500 commits of at least one page each: past SQLite's 1000-page autocheckpoint, which is off here.
    for (let i = 0; i < 1500; i++) {
      insert.run(page);
      if (i % 50 === 49) await sleep(25);
    }
    const complete = (): boolean => {
      const last = checkpointer.stats().last;
      return last !== null && last.checkpointed === last.log;
    };
    for (let i = 0; i < 250 && !complete(); i++) await sleep(20);
    expect(complete()).toBe(true);
    const stats = checkpointer.stats();
    expect(stats.failures).toBe(0);
    expect(stats.checkpoints).toBeGreaterThan(5);
    // Everything is in the database file: the next commit starts the WAL again from its first frame.
    insert.run(page);
    const seen = checkpointer.stats().checkpoints;
    for (let i = 0; i < 250 && checkpointer.stats().checkpoints === seen; i++) await sleep(20);
    expect(checkpointer.stats().last!.log).toBeLessThan(10);
    expect((db.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n).toBe(1501);
    await checkpointer.stop();
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    db.close();
  });
});

describe('write transactions beside another process', () => {
  it('hold the write lock from their first read: another connection cannot commit between a read and a write', async () => {
    // Two handles on one file, as the server and the CLI. With a deferred transaction the other handle's
    // commit would land between this read and write, and SQLite would then refuse the write at once
    // ("database is locked", no waiting): what `keys revoke` met while a session wrote its events.
    const file = dbFile();
    const mine = openDb(file);
    const other = openDb(file);
    other.pragma('busy_timeout = 0');
    mine.exec('CREATE TABLE counter (n INTEGER); INSERT INTO counter VALUES (0)');
    let interleaved: unknown = null;
    const result = await write(mine, () => {
      const n = mine.prepare('SELECT n FROM counter').pluck().get() as number;
      try {
        other.prepare('UPDATE counter SET n = n + 100').run();
      } catch (err) {
        interleaved = err;
      }
      mine.prepare('UPDATE counter SET n = ?').run(n + 1);
      return n + 1;
    });
    expect(result).toBe(1);
    expect((interleaved as { code?: string } | null)?.code).toBe('SQLITE_BUSY');
    expect(other.prepare('SELECT n FROM counter').pluck().get()).toBe(1);
    mine.close();
    other.close();
  });
});
