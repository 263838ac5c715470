/**
 * The embedded store: one SQLite file (WAL) opened with better-sqlite3, migrated on open. Repositories
 * (one file per area) take the handle; their interfaces are async so a networked store can stand in.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS } from './migrations.js';

export type Db = Database.Database;

export function openDb(path: string): Db {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  // Every acknowledged write survives a process kill (WAL + NORMAL survives process crashes; FULL also
  // survives power loss at a small cost per commit).
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  return db;
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
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
