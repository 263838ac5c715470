/**
 * Stored responses of POSTs sent with an Idempotency-Key (24 h), one namespace per credential (`subject`).
 * Each claim records the process that made it (`bootId`): a claim still in flight under another process's
 * boot id was left by a process that died, and is released instead of answering 409 for a day.
 */
import { type Db, now, stmt, write, written } from './db.js';

export interface IdempotencyRecord {
  /** API key id, OAuth client id or space member id: keys of one credential never meet another's. */
  subject: string;
  key: string;
  method: string;
  path: string;
  bodyHash: string;
  state: 'in_flight' | 'done';
  status: number | null;
  headers: Record<string, string> | null;
  body: string | null;
  /** The process that claimed the key. */
  bootId: string;
  createdAt: number;
}

export type IdempotencyClaim = Pick<IdempotencyRecord, 'subject' | 'key' | 'method' | 'path' | 'bodyHash' | 'bootId'>;

export interface IdempotencyStore {
  /**
   * Claim the key for `claim.bootId`; returns the existing record when it was already claimed and is neither
   * expired nor an in-flight claim of another process (those are dropped and the key is claimed anew).
   */
  claim(claim: IdempotencyClaim, ttlMs: number): Promise<IdempotencyRecord | null>;
  complete(subject: string, key: string, status: number, headers: Record<string, string>, body: string): Promise<void>;
  /** Forget a claim whose request failed before producing a response worth replaying. */
  release(subject: string, key: string): Promise<void>;
  /** Drop the in-flight claims of every process but `bootId` (run at start: those processes are gone). */
  releaseStale(bootId: string): Promise<number>;
  /** Delete up to `limit` records created before `before`; returns how many went. */
  purgeExpired(before: number, limit: number): Promise<number>;
}

/** A stored row, as both stores hold it (headers as JSON text). */
export interface IdempotencyRow {
  subject: string;
  key: string;
  method: string;
  path: string;
  body_hash: string;
  state: 'in_flight' | 'done';
  status: number | null;
  headers: string | null;
  body: string | null;
  boot_id: string;
  created_at: number;
}

export const toIdempotencyRecord = (r: IdempotencyRow): IdempotencyRecord => ({
  subject: r.subject,
  key: r.key,
  method: r.method,
  path: r.path,
  bodyHash: r.body_hash,
  state: r.state,
  status: r.status,
  headers: r.headers ? (JSON.parse(r.headers) as Record<string, string>) : null,
  body: r.body,
  bootId: r.boot_id,
  createdAt: r.created_at,
});

export class SqliteIdempotencyStore implements IdempotencyStore {
  constructor(private readonly db: Db) {}

  async claim(c: IdempotencyClaim, ttlMs: number): Promise<IdempotencyRecord | null> {
    return write(this.db, () => {
      stmt(this.db, "DELETE FROM idempotency_keys WHERE subject = ? AND key = ? AND (created_at < ? OR (state = 'in_flight' AND boot_id <> ?))")
        .run(c.subject, c.key, now() - ttlMs, c.bootId);
      const existing = stmt(this.db, 'SELECT * FROM idempotency_keys WHERE subject = ? AND key = ?').get(c.subject, c.key) as IdempotencyRow | undefined;
      if (existing) return toIdempotencyRecord(existing);
      stmt(this.db, "INSERT INTO idempotency_keys (subject, key, method, path, body_hash, state, boot_id, created_at) VALUES (?, ?, ?, ?, ?, 'in_flight', ?, ?)")
        .run(c.subject, c.key, c.method, c.path, c.bodyHash, c.bootId, now());
      return null;
    });
  }

  async complete(subject: string, key: string, status: number, headers: Record<string, string>, body: string): Promise<void> {
    await written(this.db, () =>
      stmt(this.db, "UPDATE idempotency_keys SET state = 'done', status = ?, headers = ?, body = ? WHERE subject = ? AND key = ?")
        .run(status, JSON.stringify(headers), body, subject, key),
    );
  }

  async release(subject: string, key: string): Promise<void> {
    await written(this.db, () => stmt(this.db, "DELETE FROM idempotency_keys WHERE subject = ? AND key = ? AND state = 'in_flight'").run(subject, key));
  }

  async releaseStale(bootId: string): Promise<number> {
    return written(this.db, () => stmt(this.db, "DELETE FROM idempotency_keys WHERE state = 'in_flight' AND boot_id <> ?").run(bootId).changes);
  }

  async purgeExpired(before: number, limit: number): Promise<number> {
    // Bounded (by the created_at index) so one purge never holds the write lock for long.
    return written(this.db, () =>
      stmt(this.db, 'DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys WHERE created_at < ? ORDER BY created_at LIMIT ?)')
        .run(before, limit).changes,
    );
  }
}
