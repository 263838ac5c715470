/**
 * The networked store's connection pool (`pg`), migrated at start, and the two ways repositories use it:
 * a single statement on any pooled connection (`query`), or several in one transaction (`tx`).
 *
 * Durability: every connection runs with `synchronous_commit = on`, so a commit (a delta, a session event)
 * returns only once the server has flushed it to its WAL: what is acknowledged survives a crash of the
 * database server as well as of this process. The flush happens in the database server, so it never stalls
 * this event loop, and concurrent commits share one flush (group commit): SQLite's `RESONANCE_SPACE_SYNC=wal`
 * trade-off is not needed here.
 */
import pg from 'pg';
import { type Fence, FencedError, type LeaseResource } from '../leases.js';
import { PG_MIGRATIONS } from './migrations.js';

export type Queryable = pg.Pool | pg.PoolClient;

export interface PgOptions {
  /** Connections per node (the pool queues beyond it). */
  max?: number;
  /** Called for errors of idle connections (the server went away): logged, never fatal. */
  onError?: (err: Error) => void;
}

/** BIGINT (oid 20) as a JS number: every BIGINT here is a count or a ms timestamp, far below 2^53. */
const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format ?? 'text')) as typeof pg.types.getTypeParser,
};

/** Serialises migrations between nodes that start together (any constant; the key space is ours). */
const MIGRATION_LOCK = 0x7265736f; // "reso"

export async function openPg(url: string, options: PgOptions = {}): Promise<pg.Pool> {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    types,
    // A database that is down answers a request with a 503 in seconds, not a hung request.
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    options: '-c synchronous_commit=on -c statement_timeout=30000',
    application_name: 'resonance',
  });
  // Without a listener an idle connection's error (the server restarted) is thrown out of the event loop.
  pool.on('error', (err) => options.onError?.(err));
  try {
    await migrate(pool);
  } catch (err) {
    await pool.end();
    throw err;
  }
  return pool;
}

async function migrate(pool: pg.Pool): Promise<void> {
  await tx(pool, async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await c.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
    const { rows } = await c.query<{ n: number | null }>('SELECT max(version) AS n FROM schema_migrations');
    for (let v = rows[0]?.n ?? 0; v < PG_MIGRATIONS.length; v++) {
      await c.query(PG_MIGRATIONS[v]!);
      await c.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [v + 1, Date.now()]);
    }
  });
}

/** `fn` in one transaction on one connection: committed when it resolves, rolled back when it throws. */
export async function tx<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** Rows of one statement. */
export async function query<R extends pg.QueryResultRow>(db: Queryable, sql: string, params: unknown[] = []): Promise<R[]> {
  return (await db.query<R>(sql, params)).rows;
}

/** The first row of one statement, or null. */
export async function one<R extends pg.QueryResultRow>(db: Queryable, sql: string, params: unknown[] = []): Promise<R | null> {
  return (await db.query<R>(sql, params)).rows[0] ?? null;
}

/** Rows a statement changed. */
export async function changes(db: Queryable, sql: string, params: unknown[] = []): Promise<number> {
  return (await db.query(sql, params)).rowCount ?? 0;
}

/**
 * `UPDATE table SET <the given columns>, updated_at = now WHERE id = $n` for a partial change, as `updateRow`
 * in ../db.ts: keys map to columns through `columns`; undefined values are skipped; keys in `json` are stored
 * as JSON text (null stays NULL). Rows changed (0 when there was nothing to set).
 */
export async function updateRow(db: Queryable, table: string, id: string, change: object, columns: Record<string, string>, json: readonly string[] = []): Promise<number> {
  const sets: string[] = [];
  const values: unknown[] = [];
  for (const [key, value] of Object.entries(change)) {
    const column = columns[key];
    if (!column || value === undefined) continue;
    values.push(json.includes(key) && value !== null ? JSON.stringify(value) : value);
    sets.push(`${column} = $${values.length}`);
  }
  if (sets.length === 0) return 0;
  values.push(Date.now(), id);
  return changes(db, `UPDATE ${table} SET ${sets.join(', ')}, updated_at = $${values.length - 1} WHERE id = $${values.length}`, values);
}

/** The database's clock in ms: one clock for every node, whatever theirs say. */
export const DB_NOW_MS = `(extract(epoch from clock_timestamp()) * 1000)::bigint`;

/**
 * Inside a transaction: holds the lease row of `resource` (FOR SHARE: a node taking the lease waits for this
 * transaction) and throws FencedError unless `fence` still holds it.
 */
export async function checkFence(c: pg.PoolClient, resource: LeaseResource, fence: Fence): Promise<void> {
  const { rowCount } = await c.query(
    `SELECT 1 FROM leases WHERE resource = $1 AND node_id = $2 AND epoch = $3 AND expires_at > ${DB_NOW_MS} FOR SHARE`,
    [resource, fence.nodeId, fence.epoch],
  );
  if (!rowCount) throw new FencedError(resource, fence);
}
