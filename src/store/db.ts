/**
 * The embedded store: one SQLite file (WAL) opened with better-sqlite3, migrated on open. Repositories
 * (one file per area) take the handle; their interfaces are async so a networked store can stand in.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS } from './migrations.js';
import { WalSync } from './wal-sync.js';

export type Db = Database.Database;

export function openDb(path: string): Db {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  if (path !== ':memory:') {
    // Commits reach the WAL without an fsync; every write then waits for a group fsync on the threadpool
    // (wal-sync.ts), so an acknowledged write survives power loss and the event loop never waits on the disk.
    db.pragma('synchronous = NORMAL');
    // When the writer starts the WAL over, it cuts a file grown past this back to it (the checkpointer
    // truncates an idle one to zero).
    db.pragma(`journal_size_limit = ${16 * 2 ** 20}`);
    const totalChanges = db.prepare('SELECT total_changes()').pluck();
    syncs.set(db, new WalSync(`${path}-wal`, () => totalChanges.get() as number));
  }
  return db;
}

const syncs = new WeakMap<Db, WalSync>();

/** Resolves once every commit made so far on `db` is on disk (repositories write through `written` and `write`). */
export function durable(db: Db): Promise<void> {
  return syncs.get(db)?.sync() ?? Promise.resolve();
}

/** Start the fsync that makes the commits made so far survive power loss, without waiting for it. */
export function flushBehind(db: Db): void {
  syncs.get(db)?.sync().catch(() => undefined);
}

/**
 * Run `fn` (statements or a transaction) and resolve with its result once what it wrote is on disk; when
 * it changed no row (an update that matched nothing, an event nobody subscribed to) there is nothing to
 * wait for, even while other commits' fsync runs.
 */
export async function written<T>(db: Db, fn: () => T): Promise<T> {
  const sync = syncs.get(db);
  const before = sync?.changes();
  const out = fn();
  if (sync && sync.changes() !== before) await sync.sync();
  return out;
}

/**
 * `fn` as one transaction, resolved once it is on disk. BEGIN IMMEDIATE: the write lock is taken (waiting up
 * to busy_timeout) before the first read, so a transaction that reads then writes never finds another
 * process's commit between the two, which SQLite refuses at once ("database is locked") without waiting.
 */
export function write<T>(db: Db, fn: () => T): Promise<T> {
  return written(db, () => db.transaction(fn).immediate());
}

/** fsyncs of the WAL so far, and those that failed (0 for an in-memory database). */
export function syncStats(db: Db): { syncs: number; failures: number } {
  const s = syncs.get(db);
  return { syncs: s?.count ?? 0, failures: s?.failures ?? 0 };
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}

/** Milliseconds since the epoch: every timestamp in the store. */
export const now = (): number => Date.now();

const statements = new WeakMap<Db, Map<string, Database.Statement>>();

/** A prepared statement, compiled once per handle: preparing costs more than running a point query. */
export function stmt(db: Db, sql: string): Database.Statement {
  let cache = statements.get(db);
  if (!cache) statements.set(db, (cache = new Map()));
  let s = cache.get(sql);
  if (!s) cache.set(sql, (s = db.prepare(sql)));
  return s;
}

/**
 * `UPDATE table SET <the given columns>, updated_at = now WHERE id = ?` for a partial change: keys map to
 * columns through `columns`; undefined values are skipped; keys in `json` are stored as JSON (null stays NULL).
 */
export function updateRow(db: Db, table: string, id: string, change: object, columns: Record<string, string>, json: readonly string[] = []): void {
  const sets: string[] = [];
  const values: unknown[] = [];
  for (const [key, value] of Object.entries(change)) {
    const column = columns[key];
    if (!column || value === undefined) continue;
    sets.push(`${column} = ?`);
    values.push(json.includes(key) && value !== null ? JSON.stringify(value) : value);
  }
  if (sets.length === 0) return;
  stmt(db, `UPDATE ${table} SET ${sets.join(', ')}, updated_at = ? WHERE id = ?`).run(...values, now(), id);
}
