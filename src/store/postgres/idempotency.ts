/**
 * Idempotency keys in Postgres: the IdempotencyStore contract of ../idempotency.ts. A claim is one
 * INSERT … ON CONFLICT DO UPDATE … WHERE <the existing row is expired or a dead process's claim>: the
 * conflict takes the row's lock, so of any number of concurrent claims of one key, on any nodes, exactly
 * one gets it.
 */
import type pg from 'pg';
import { NODE_ALIVE_MS } from '../leases.js';
import { type IdempotencyClaim, type IdempotencyRecord, type IdempotencyRow, type IdempotencyStore, toIdempotencyRecord } from '../idempotency.js';
import { changes, DB_NOW_MS, one } from './pool.js';

/**
 * A claim that lost finds the winner's row, unless that row went (released, purged) in between: then it
 * claims again. Each extra round needs another delete racing it; a bound turns a pathological loop into
 * an error.
 */
const CLAIM_ROUNDS = 5;

/**
 * Many processes share this table: another process's in-flight claim is a dead process's only when no node
 * of that boot id has beaten within NODE_ALIVE_MS (src/store/leases.ts); a live node's claim stands, and a
 * retry of its request on another node gets the 409 it would get on the same node.
 */
const DEAD_CLAIMER = `NOT EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.boot_id = k.boot_id AND n.heartbeat_at > ${DB_NOW_MS} - ${NODE_ALIVE_MS})`;

export class PgIdempotencyStore implements IdempotencyStore {
  constructor(private readonly pool: pg.Pool) {}

  async claim(c: IdempotencyClaim, ttlMs: number): Promise<IdempotencyRecord | null> {
    for (let round = 0; round < CLAIM_ROUNDS; round++) {
      const at = Date.now();
      const claimed = await changes(
        this.pool,
        `INSERT INTO idempotency_keys AS k (subject, key, method, path, body_hash, state, boot_id, created_at)
         VALUES ($1, $2, $3, $4, $5, 'in_flight', $6, $7)
         ON CONFLICT (subject, key) DO UPDATE
            SET method = EXCLUDED.method, path = EXCLUDED.path, body_hash = EXCLUDED.body_hash, state = 'in_flight',
                status = NULL, headers = NULL, body = NULL, boot_id = EXCLUDED.boot_id, created_at = EXCLUDED.created_at
          WHERE k.created_at < $8 OR (k.state = 'in_flight' AND k.boot_id <> EXCLUDED.boot_id AND ${DEAD_CLAIMER})`,
        [c.subject, c.key, c.method, c.path, c.bodyHash, c.bootId, at, at - ttlMs],
      );
      if (claimed === 1) return null;
      const existing = await one<IdempotencyRow>(this.pool, 'SELECT * FROM idempotency_keys WHERE subject = $1 AND key = $2', [c.subject, c.key]);
      if (existing) return toIdempotencyRecord(existing);
    }
    throw new Error(`idempotency key ${c.key} kept changing while it was claimed`);
  }

  async complete(subject: string, key: string, status: number, headers: Record<string, string>, body: string): Promise<void> {
    await this.pool.query("UPDATE idempotency_keys SET state = 'done', status = $1, headers = $2, body = $3 WHERE subject = $4 AND key = $5", [
      status,
      JSON.stringify(headers),
      body,
      subject,
      key,
    ]);
  }

  async release(subject: string, key: string): Promise<void> {
    await this.pool.query("DELETE FROM idempotency_keys WHERE subject = $1 AND key = $2 AND state = 'in_flight'", [subject, key]);
  }

  releaseStale(bootId: string): Promise<number> {
    return changes(this.pool, `DELETE FROM idempotency_keys k WHERE state = 'in_flight' AND boot_id <> $1 AND ${DEAD_CLAIMER}`, [bootId]);
  }

  purgeExpired(before: number, limit: number): Promise<number> {
    // Bounded by the created_at index; SKIP LOCKED lets the nodes' purges run side by side without
    // waiting on each other (or on a claim taking over an expired row).
    return changes(
      this.pool,
      `DELETE FROM idempotency_keys WHERE (subject, key) IN (
         SELECT subject, key FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
      [before, limit],
    );
  }
}
