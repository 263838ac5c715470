/**
 * Retention sweeps on Postgres: purgeExpired of ../retention.ts (docs/tenancy.md), the same bounded batches
 * with a session's events deleted before its row. Nodes may sweep at once: each takes the expired sessions
 * and finished deliveries no other sweep holds (SKIP LOCKED), so they share the work instead of queueing.
 */
import type pg from 'pg';
import { PURGE_BATCH, type PurgeReport, type RetentionPolicy } from '../retention.js';
import { changes, query, tx } from './pool.js';

/** One sweep; call it until it reports nothing left to do, or on a timer. */
export async function purgeExpired(pool: pg.Pool, now: number, policy: RetentionPolicy, batch = PURGE_BATCH): Promise<PurgeReport> {
  return tx(pool, async (c) => {
    const report: PurgeReport = { sessions: 0, events: 0, deliveries: 0 };
    const expired = await query<{ id: string }>(
      c,
      'SELECT id FROM hqe_sessions WHERE ended_at IS NOT NULL AND ended_at < $1 ORDER BY ended_at LIMIT 16 FOR UPDATE SKIP LOCKED',
      [now - policy.sessionRetentionMs],
    );
    let budget = batch;
    for (const { id } of expired) {
      // Events first, in batches (the cascade from the session row would delete them all in one statement).
      const events = await changes(c, 'DELETE FROM hqe_session_events WHERE seq IN (SELECT seq FROM hqe_session_events WHERE session_id = $1 ORDER BY seq LIMIT $2)', [id, budget]);
      report.events += events;
      budget -= events;
      if (budget <= 0) break;
      report.sessions += await changes(c, 'DELETE FROM hqe_sessions WHERE id = $1', [id]);
    }
    report.deliveries = await changes(
      c,
      "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND created_at < $1 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
      [now - policy.deliveryRetentionMs, batch],
    );
    return report;
  });
}
