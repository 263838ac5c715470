/**
 * Retention (docs/tenancy.md): what the store deletes by itself, in small batches so that no sweep holds
 * the event loop for long.
 * - an HQE session that ended (converged, plateau, failed, closed) and its events, `sessionRetentionMs`
 *   after it ended;
 * - webhook deliveries that are finished (delivered, failed, cancelled), `deliveryRetentionMs` after they
 *   were made.
 * Idempotency keys expire by their own TTL (idempotency.ts); space deltas by each space's historySeconds.
 */
import { type Db, stmt, write } from './db.js';

export interface RetentionPolicy {
  sessionRetentionMs: number;
  deliveryRetentionMs: number;
}

export interface PurgeReport {
  sessions: number;
  events: number;
  deliveries: number;
}

/** Rows one sweep deletes at most, per table: a few milliseconds of work. */
export const PURGE_BATCH = 2000;

/** One sweep; call it until it reports nothing left to do, or on a timer. */
export async function purgeExpired(db: Db, now: number, policy: RetentionPolicy, batch = PURGE_BATCH): Promise<PurgeReport> {
  return write(db, () => {
    const report: PurgeReport = { sessions: 0, events: 0, deliveries: 0 };
    const expired = stmt(db, 'SELECT id FROM hqe_sessions WHERE ended_at IS NOT NULL AND ended_at < ? ORDER BY ended_at LIMIT 16')
      .all(now - policy.sessionRetentionMs) as Array<{ id: string }>;
    let budget = batch;
    for (const { id } of expired) {
      // Events first, in batches (a cascade from the session row would delete them all in one statement).
      const events = stmt(db, 'DELETE FROM hqe_session_events WHERE seq IN (SELECT seq FROM hqe_session_events WHERE session_id = ? ORDER BY seq LIMIT ?)')
        .run(id, budget).changes;
      report.events += events;
      budget -= events;
      if (budget <= 0) break;
      report.sessions += stmt(db, 'DELETE FROM hqe_sessions WHERE id = ?').run(id).changes;
    }
    report.deliveries = stmt(
      db,
      "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND created_at < ? ORDER BY created_at LIMIT ?)",
    ).run(now - policy.deliveryRetentionMs, batch).changes;
    return report;
  });
}

/** Sweeps every `everyMs` (unreferenced: it never keeps the process alive). */
export class Retention {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();
  readonly totals: PurgeReport = { sessions: 0, events: 0, deliveries: 0 };

  constructor(
    private readonly purge: (now: number, policy: RetentionPolicy) => Promise<PurgeReport>,
    private readonly policy: RetentionPolicy,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  start(everyMs = 10_000): void {
    this.timer = setInterval(() => void this.sweep(), everyMs);
    this.timer.unref();
  }

  /** One sweep now (sweeps never overlap). */
  sweep(): Promise<void> {
    this.running = this.running.then(async () => {
      try {
        const r = await this.purge(Date.now(), this.policy);
        this.totals.sessions += r.sessions;
        this.totals.events += r.events;
        this.totals.deliveries += r.deliveries;
      } catch (err) {
        this.onError(err);
      }
    });
    return this.running;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}
