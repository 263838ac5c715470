/**
 * Webhook registrations and the delivery outbox in Postgres: the WebhookStore contract of ../webhooks.ts.
 * Several nodes run a dispatcher on the same outbox. A claim locks the due rows it takes with
 * `FOR UPDATE SKIP LOCKED` and, in the same transaction, pushes their `next_attempt_at` to the lease's end
 * and counts the attempt: another node's claim skips the locked rows while the transaction runs and finds
 * them not due once it committed, so two nodes never hold the same delivery at once. Outcomes are guarded
 * by the attempt number, as in SQLite, so a worker whose lease ran out cannot overwrite a newer attempt.
 */
import type pg from 'pg';
import {
  type ClaimedDelivery,
  type ClaimRow,
  clip,
  type DeliveryRecord,
  type DeliveryRow,
  newDelivery,
  type OutboxEvent,
  type PageAfter,
  toDelivery,
  toWebhook,
  type WebhookRecord,
  type WebhookRow,
  type WebhookStore,
} from '../webhooks.js';
import { changes, one, query, tx } from './pool.js';

/** Ids break ties in byte order, as in SQLite, whatever the database's collation. */
const WEBHOOK_ORDER = 'ORDER BY created_at, id COLLATE "C"';
/** The org's webhooks subscribed to the event type $2 (`events` is a JSON array of type names). */
const SUBSCRIBED = `SELECT id FROM webhooks WHERE org_id = $1 AND (events::jsonb) ? $2 ${WEBHOOK_ORDER}`;

export class PgWebhookStore implements WebhookStore {
  constructor(private readonly pool: pg.Pool) {}

  async insertWebhook(w: WebhookRecord): Promise<void> {
    await this.pool.query('INSERT INTO webhooks (id, org_id, url, secret, events, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [
      w.id,
      w.orgId,
      w.url,
      w.secret,
      JSON.stringify(w.events),
      w.createdAt,
    ]);
  }

  async getWebhook(orgId: string, id: string): Promise<WebhookRecord | null> {
    const row = await one<WebhookRow>(this.pool, 'SELECT * FROM webhooks WHERE org_id = $1 AND id = $2', [orgId, id]);
    return row ? toWebhook(row) : null;
  }

  async listWebhooks(orgId: string, opts: { after?: PageAfter; limit: number }): Promise<WebhookRecord[]> {
    const rows = opts.after
      ? await query<WebhookRow>(
          this.pool,
          `SELECT * FROM webhooks WHERE org_id = $1 AND (created_at > $2 OR (created_at = $2 AND id COLLATE "C" > $3)) ${WEBHOOK_ORDER} LIMIT $4`,
          [orgId, opts.after.createdAt, opts.after.id, opts.limit],
        )
      : await query<WebhookRow>(this.pool, `SELECT * FROM webhooks WHERE org_id = $1 ${WEBHOOK_ORDER} LIMIT $2`, [orgId, opts.limit]);
    return rows.map(toWebhook);
  }

  deleteWebhook(orgId: string, id: string): Promise<boolean> {
    return tx(this.pool, async (c) => {
      if ((await changes(c, 'DELETE FROM webhooks WHERE org_id = $1 AND id = $2', [orgId, id])) === 0) return false;
      // Waits for a claim holding one of these rows; a row it claimed is still pending and is cancelled
      // here, so that attempt's outcome no longer applies.
      await c.query("UPDATE webhook_deliveries SET status = 'cancelled', last_error = 'webhook deleted' WHERE status = 'pending' AND webhook_id = $1", [id]);
      return true;
    });
  }

  async countWebhooks(orgId: string): Promise<number> {
    return (await one<{ n: number }>(this.pool, 'SELECT count(*) AS n FROM webhooks WHERE org_id = $1', [orgId]))?.n ?? 0;
  }

  async enqueueEvent(orgId: string, event: OutboxEvent, newDeliveryId: () => string): Promise<DeliveryRecord[]> {
    // Most events have no subscriber: one read answers those without a transaction.
    if ((await query<{ id: string }>(this.pool, SUBSCRIBED, [orgId, event.type])).length === 0) return [];
    return tx(this.pool, async (c) => {
      // KEY SHARE holds off a concurrent delete of these webhooks until the rows below are committed, so its
      // cancellation sees them (no pending row outlives its webhook).
      const webhookIds = (await query<{ id: string }>(c, `${SUBSCRIBED} FOR KEY SHARE`, [orgId, event.type])).map((r) => r.id);
      const out = webhookIds.map((webhookId) => newDelivery(newDeliveryId(), webhookId, event));
      if (out.length === 0) return out;
      await c.query(
        `INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, payload, status, attempts, next_attempt_at, created_at)
         SELECT d.id, d.webhook_id, $3, $4, $5, 'pending', 0, $6, $6 FROM unnest($1::text[], $2::text[]) AS d(id, webhook_id)`,
        [out.map((d) => d.id), webhookIds, event.id, event.type, event.payload, event.createdAt],
      );
      return out;
    });
  }

  async claimDue(now: number, limit: number, leaseUntil: number): Promise<ClaimedDelivery[]> {
    if (limit <= 0) return [];
    return tx(this.pool, async (c) => {
      const due = await query<ClaimRow>(
        c,
        `SELECT d.*, w.org_id AS w_org_id, w.url AS w_url, w.secret AS w_secret
           FROM webhook_deliveries d LEFT JOIN webhooks w ON w.id = d.webhook_id
          WHERE d.status = 'pending' AND d.next_attempt_at <= $1
          ORDER BY d.next_attempt_at, d.created_at, d.id COLLATE "C"
          LIMIT $2
          FOR UPDATE OF d SKIP LOCKED`,
        [now, limit],
      );
      const orphans: string[] = [];
      const claimed: ClaimedDelivery[] = [];
      for (const row of due) {
        if (row.w_url === null || row.w_secret === null || row.w_org_id === null) {
          orphans.push(row.id);
          continue;
        }
        const d = toDelivery(row);
        claimed.push({ ...d, attempts: d.attempts + 1, nextAttemptAt: leaseUntil, orgId: row.w_org_id, url: row.w_url, secret: row.w_secret });
      }
      if (orphans.length > 0) {
        await c.query("UPDATE webhook_deliveries SET status = 'cancelled', last_error = 'webhook deleted' WHERE id = ANY($1::text[])", [orphans]);
      }
      if (claimed.length > 0) {
        // The rows are locked by this transaction since the SELECT, so they are exactly as read.
        await c.query('UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $1 WHERE id = ANY($2::text[])', [
          leaseUntil,
          claimed.map((d) => d.id),
        ]);
      }
      return claimed;
    });
  }

  async markDelivered(id: string, attempt: number, at: number): Promise<boolean> {
    return (
      (await changes(
        this.pool,
        "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = $1, last_error = NULL WHERE id = $2 AND attempts = $3 AND status = 'pending'",
        [at, id, attempt],
      )) === 1
    );
  }

  async markRetry(id: string, attempt: number, nextAttemptAt: number, error: string): Promise<boolean> {
    return (
      (await changes(
        this.pool,
        "UPDATE webhook_deliveries SET next_attempt_at = $1, last_error = $2 WHERE id = $3 AND attempts = $4 AND status = 'pending'",
        [nextAttemptAt, clip(error), id, attempt],
      )) === 1
    );
  }

  async markFailed(id: string, attempt: number, error: string): Promise<boolean> {
    return (
      (await changes(this.pool, "UPDATE webhook_deliveries SET status = 'failed', last_error = $1 WHERE id = $2 AND attempts = $3 AND status = 'pending'", [
        clip(error),
        id,
        attempt,
      ])) === 1
    );
  }

  async getDelivery(id: string): Promise<DeliveryRecord | null> {
    const row = await one<DeliveryRow>(this.pool, 'SELECT * FROM webhook_deliveries WHERE id = $1', [id]);
    return row ? toDelivery(row) : null;
  }

  async listDeliveries(webhookId: string, limit: number): Promise<DeliveryRecord[]> {
    const rows = await query<DeliveryRow>(
      this.pool,
      'SELECT * FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT $2',
      [webhookId, limit],
    );
    return rows.map(toDelivery);
  }

  async countPending(): Promise<number> {
    return (await one<{ n: number }>(this.pool, "SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'pending'"))?.n ?? 0;
  }
}
