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
