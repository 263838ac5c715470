/** Stored responses of POSTs sent with an Idempotency-Key (24 h). */
import { type Db, now, stmt, write, written } from './db.js';

export interface IdempotencyRecord {
  orgId: string;
  key: string;
  method: string;
  path: string;
  bodyHash: string;
  state: 'in_flight' | 'done';
  status: number | null;
  headers: Record<string, string> | null;
  body: string | null;
  createdAt: number;
}

export interface IdempotencyStore {
  /** Claim the key; returns the existing record when it was already claimed (and not expired). */
  claim(rec: Pick<IdempotencyRecord, 'orgId' | 'key' | 'method' | 'path' | 'bodyHash'>, ttlMs: number): Promise<IdempotencyRecord | null>;
  complete(orgId: string, key: string, status: number, headers: Record<string, string>, body: string): Promise<void>;
  /** Forget a claim whose request failed before producing a response worth replaying. */
  release(orgId: string, key: string): Promise<void>;
}

interface Row {
  org_id: string;
  key: string;
  method: string;
  path: string;
  body_hash: string;
  state: 'in_flight' | 'done';
  status: number | null;
  headers: string | null;
  body: string | null;
  created_at: number;
}

export class SqliteIdempotencyStore implements IdempotencyStore {
  constructor(private readonly db: Db) {}

  async claim(rec: Pick<IdempotencyRecord, 'orgId' | 'key' | 'method' | 'path' | 'bodyHash'>, ttlMs: number): Promise<IdempotencyRecord | null> {
    return write(this.db, () => {
      stmt(this.db, 'DELETE FROM idempotency_keys WHERE org_id = ? AND key = ? AND created_at < ?').run(rec.orgId, rec.key, now() - ttlMs);
      const existing = stmt(this.db, 'SELECT * FROM idempotency_keys WHERE org_id = ? AND key = ?').get(rec.orgId, rec.key) as Row | undefined;
      if (existing) {
        return {
          orgId: existing.org_id,
          key: existing.key,
          method: existing.method,
          path: existing.path,
          bodyHash: existing.body_hash,
          state: existing.state,
          status: existing.status,
          headers: existing.headers ? (JSON.parse(existing.headers) as Record<string, string>) : null,
          body: existing.body,
          createdAt: existing.created_at,
        };
      }
      stmt(this.db, "INSERT INTO idempotency_keys (org_id, key, method, path, body_hash, state, created_at) VALUES (?, ?, ?, ?, ?, 'in_flight', ?)")
        .run(rec.orgId, rec.key, rec.method, rec.path, rec.bodyHash, now());
      return null;
    });
  }

  async complete(orgId: string, key: string, status: number, headers: Record<string, string>, body: string): Promise<void> {
    await written(this.db, () =>
      stmt(this.db, "UPDATE idempotency_keys SET state = 'done', status = ?, headers = ?, body = ? WHERE org_id = ? AND key = ?")
        .run(status, JSON.stringify(headers), body, orgId, key),
    );
  }

  async release(orgId: string, key: string): Promise<void> {
    await written(this.db, () => stmt(this.db, "DELETE FROM idempotency_keys WHERE org_id = ? AND key = ? AND state = 'in_flight'").run(orgId, key));
  }
}
