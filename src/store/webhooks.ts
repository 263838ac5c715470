/**
 * Webhook registrations and the delivery outbox. A delivery row is written, in the same transaction for
 * every webhook an event matches, before `emit` returns; the dispatcher claims due rows with a lease
 * (`next_attempt_at` pushed past the attempt's timeout, `attempts` incremented), so a process that dies
 * mid-attempt leaves a row that becomes due again when the lease runs out. Every state change after a
 * claim is guarded by the attempt number, so a stale worker cannot overwrite a newer outcome.
 */
import { type Db, stmt, written } from './db.js';

export interface WebhookRecord {
  id: string;
  orgId: string;
  url: string;
  secret: string;
  events: string[];
  /** Milliseconds since the epoch. */
  createdAt: number;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed' | 'cancelled';

export interface DeliveryRecord {
  id: string;
  webhookId: string;
  eventId: string;
  eventType: string;
  /** The JSON body POSTed to the receiver, exactly as signed. */
  payload: string;
  status: DeliveryStatus;
  /** Attempts started (a claimed attempt counts even if the process died during it). */
  attempts: number;
  nextAttemptAt: number;
  lastError: string | null;
  createdAt: number;
  deliveredAt: number | null;
}

/** A delivery claimed for one attempt, with what the attempt needs from its webhook. */
export interface ClaimedDelivery extends DeliveryRecord {
  orgId: string;
  url: string;
  secret: string;
}

/** Keyset position in a listing ordered by (createdAt, id). */
export interface PageAfter {
  createdAt: number;
  id: string;
}

export interface OutboxEvent {
  id: string;
  type: string;
  payload: string;
  createdAt: number;
}

export interface WebhookStore {
  insertWebhook(webhook: WebhookRecord): Promise<void>;
  getWebhook(orgId: string, id: string): Promise<WebhookRecord | null>;
  /** Oldest first; `limit` rows after `after`. */
  listWebhooks(orgId: string, opts: { after?: PageAfter; limit: number }): Promise<WebhookRecord[]>;
  /** Deletes the webhook and cancels its pending deliveries; false when the org has no such webhook. */
  deleteWebhook(orgId: string, id: string): Promise<boolean>;
  /** Webhooks the org has registered (its webhooks quota). */
  countWebhooks(orgId: string): Promise<number>;
  /** In one transaction: one pending delivery (due at event.createdAt) per org webhook subscribed to event.type. */
  enqueueEvent(orgId: string, event: OutboxEvent, newDeliveryId: () => string): Promise<DeliveryRecord[]>;
  /**
   * Claims up to `limit` pending deliveries due at `now` (oldest due first): each gets attempts + 1 and
   * next_attempt_at = leaseUntil. Deliveries whose webhook is gone are cancelled instead.
   */
  claimDue(now: number, limit: number, leaseUntil: number): Promise<ClaimedDelivery[]>;
  /** Outcomes of the attempt numbered `attempt`; false when the row moved on meanwhile. */
  markDelivered(id: string, attempt: number, at: number): Promise<boolean>;
  markRetry(id: string, attempt: number, nextAttemptAt: number, error: string): Promise<boolean>;
  markFailed(id: string, attempt: number, error: string): Promise<boolean>;
  getDelivery(id: string): Promise<DeliveryRecord | null>;
  /** Newest first. */
  listDeliveries(webhookId: string, limit: number): Promise<DeliveryRecord[]>;
  /** Deliveries still pending (queue depth). */
  countPending(): Promise<number>;
}

// Rows and their records, shared with the Postgres store.
export interface WebhookRow {
  id: string;
  org_id: string;
  url: string;
  secret: string;
  events: string;
  created_at: number;
}

export interface DeliveryRow {
  id: string;
  webhook_id: string;
  event_id: string;
  event_type: string;
  payload: string;
  status: string;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  created_at: number;
  delivered_at: number | null;
}

export interface ClaimRow extends DeliveryRow {
  w_org_id: string | null;
  w_url: string | null;
  w_secret: string | null;
}

const STATUSES: readonly DeliveryStatus[] = ['pending', 'delivered', 'failed', 'cancelled'];

export function toWebhook(row: WebhookRow): WebhookRecord {
  const events: unknown = JSON.parse(row.events);
  return {
    id: row.id,
    orgId: row.org_id,
    url: row.url,
    secret: row.secret,
    events: Array.isArray(events) ? events.filter((e): e is string => typeof e === 'string') : [],
    createdAt: row.created_at,
  };
}

export function toDelivery(row: DeliveryRow): DeliveryRecord {
  const status = STATUSES.find((s) => s === row.status);
  if (!status) throw new Error(`webhook delivery ${row.id} has unknown status ${row.status}`);
  return {
    id: row.id,
    webhookId: row.webhook_id,
    eventId: row.event_id,
    eventType: row.event_type,
    payload: row.payload,
    status,
    attempts: row.attempts,
    nextAttemptAt: row.next_attempt_at,
    lastError: row.last_error,
    createdAt: row.created_at,
    deliveredAt: row.delivered_at,
  };
}

/** The row enqueueEvent writes for one subscribed webhook: pending, due when the event happened. */
export function newDelivery(id: string, webhookId: string, event: OutboxEvent): DeliveryRecord {
  return {
    id,
    webhookId,
    eventId: event.id,
    eventType: event.type,
    payload: event.payload,
    status: 'pending',
    attempts: 0,
    nextAttemptAt: event.createdAt,
    lastError: null,
    createdAt: event.createdAt,
    deliveredAt: null,
  };
}

const MAX_ERROR_CHARS = 500;
/** Stored errors are bounded: a receiver's answer must not grow a row without limit. */
export const clip = (s: string): string => (s.length > MAX_ERROR_CHARS ? s.slice(0, MAX_ERROR_CHARS) : s);

export class SqliteWebhookStore implements WebhookStore {
  private readonly st;
  private readonly enqueueTx;
  private readonly claimTx;
  private readonly deleteTx;

  constructor(private readonly db: Db) {
    this.st = {
      insert: db.prepare<[string, string, string, string, string, number]>(
        'INSERT INTO webhooks (id, org_id, url, secret, events, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      get: db.prepare<[string, string], WebhookRow>('SELECT * FROM webhooks WHERE org_id = ? AND id = ?'),
      listFirst: db.prepare<[string, number], WebhookRow>('SELECT * FROM webhooks WHERE org_id = ? ORDER BY created_at, id LIMIT ?'),
      listAfter: db.prepare<[string, number, number, string, number], WebhookRow>(
        'SELECT * FROM webhooks WHERE org_id = ? AND (created_at > ? OR (created_at = ? AND id > ?)) ORDER BY created_at, id LIMIT ?',
      ),
      delete: db.prepare<[string, string]>('DELETE FROM webhooks WHERE org_id = ? AND id = ?'),
      cancelPending: db.prepare<[string, string]>(
        "UPDATE webhook_deliveries SET status = 'cancelled', last_error = ? WHERE status = 'pending' AND webhook_id = ?",
      ),
      subscribed: db.prepare<[string, string], { id: string }>(
        'SELECT w.id FROM webhooks w WHERE w.org_id = ? AND EXISTS (SELECT 1 FROM json_each(w.events) e WHERE e.value = ?) ORDER BY w.created_at, w.id',
      ),
      insertDelivery: db.prepare<[string, string, string, string, string, number, number]>(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, payload, status, attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
      ),
      due: db.prepare<[number, number], ClaimRow>(
        `SELECT d.*, w.org_id AS w_org_id, w.url AS w_url, w.secret AS w_secret
           FROM webhook_deliveries d LEFT JOIN webhooks w ON w.id = d.webhook_id
          WHERE d.status = 'pending' AND d.next_attempt_at <= ?
          ORDER BY d.next_attempt_at, d.created_at LIMIT ?`,
      ),
      claim: db.prepare<[number, string, number]>(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ? AND status = 'pending' AND attempts = ?",
      ),
      cancelOne: db.prepare<[string, string]>("UPDATE webhook_deliveries SET status = 'cancelled', last_error = ? WHERE id = ? AND status = 'pending'"),
      delivered: db.prepare<[number, string, number]>(
        "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = ?, last_error = NULL WHERE id = ? AND attempts = ? AND status = 'pending'",
      ),
      retry: db.prepare<[number, string, string, number]>(
        "UPDATE webhook_deliveries SET next_attempt_at = ?, last_error = ? WHERE id = ? AND attempts = ? AND status = 'pending'",
      ),
      failed: db.prepare<[string, string, number]>(
        "UPDATE webhook_deliveries SET status = 'failed', last_error = ? WHERE id = ? AND attempts = ? AND status = 'pending'",
      ),
      getDelivery: db.prepare<[string], DeliveryRow>('SELECT * FROM webhook_deliveries WHERE id = ?'),
      countPending: db.prepare<[], { n: number }>("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status = 'pending'"),
      listDeliveries: db.prepare<[string, number], DeliveryRow>(
        'SELECT * FROM webhook_deliveries WHERE webhook_id = ? ORDER BY created_at DESC, id DESC LIMIT ?',
      ),
    };

    this.enqueueTx = db.transaction((orgId: string, event: OutboxEvent, newId: () => string): DeliveryRecord[] => {
      const out: DeliveryRecord[] = [];
      for (const { id: webhookId } of this.st.subscribed.all(orgId, event.type)) {
        const id = newId();
        this.st.insertDelivery.run(id, webhookId, event.id, event.type, event.payload, event.createdAt, event.createdAt);
        out.push(newDelivery(id, webhookId, event));
      }
      return out;
    });

    this.claimTx = db.transaction((now: number, limit: number, leaseUntil: number): ClaimedDelivery[] => {
      const claimed: ClaimedDelivery[] = [];
      for (const row of this.st.due.all(now, limit)) {
        if (row.w_url === null || row.w_secret === null || row.w_org_id === null) {
          this.st.cancelOne.run('webhook deleted', row.id);
          continue;
        }
        if (this.st.claim.run(leaseUntil, row.id, row.attempts).changes !== 1) continue;
        const d = toDelivery(row);
        claimed.push({ ...d, attempts: d.attempts + 1, nextAttemptAt: leaseUntil, orgId: row.w_org_id, url: row.w_url, secret: row.w_secret });
      }
      return claimed;
    });

    this.deleteTx = db.transaction((orgId: string, id: string): boolean => {
      if (this.st.delete.run(orgId, id).changes === 0) return false;
      this.st.cancelPending.run('webhook deleted', id);
      return true;
    });
  }

  async insertWebhook(w: WebhookRecord): Promise<void> {
    await written(this.db, () => this.st.insert.run(w.id, w.orgId, w.url, w.secret, JSON.stringify(w.events), w.createdAt));
  }

  async getWebhook(orgId: string, id: string): Promise<WebhookRecord | null> {
    const row = this.st.get.get(orgId, id);
    return row ? toWebhook(row) : null;
  }

  async listWebhooks(orgId: string, opts: { after?: PageAfter; limit: number }): Promise<WebhookRecord[]> {
    const rows = opts.after
      ? this.st.listAfter.all(orgId, opts.after.createdAt, opts.after.createdAt, opts.after.id, opts.limit)
      : this.st.listFirst.all(orgId, opts.limit);
    return rows.map(toWebhook);
  }

  async deleteWebhook(orgId: string, id: string): Promise<boolean> {
    return written(this.db, () => this.deleteTx.immediate(orgId, id));
  }

  async countWebhooks(orgId: string): Promise<number> {
    return (stmt(this.db, 'SELECT COUNT(*) AS n FROM webhooks WHERE org_id = ?').get(orgId) as { n: number }).n;
  }

  async enqueueEvent(orgId: string, event: OutboxEvent, newDeliveryId: () => string): Promise<DeliveryRecord[]> {
    return written(this.db, () => this.enqueueTx.immediate(orgId, event, newDeliveryId));
  }

  async claimDue(now: number, limit: number, leaseUntil: number): Promise<ClaimedDelivery[]> {
    if (limit <= 0) return [];
    return written(this.db, () => this.claimTx.immediate(now, limit, leaseUntil));
  }

  async markDelivered(id: string, attempt: number, at: number): Promise<boolean> {
    return written(this.db, () => this.st.delivered.run(at, id, attempt).changes === 1);
  }

  async markRetry(id: string, attempt: number, nextAttemptAt: number, error: string): Promise<boolean> {
    return written(this.db, () => this.st.retry.run(nextAttemptAt, clip(error), id, attempt).changes === 1);
  }

  async markFailed(id: string, attempt: number, error: string): Promise<boolean> {
    return written(this.db, () => this.st.failed.run(clip(error), id, attempt).changes === 1);
  }

  async getDelivery(id: string): Promise<DeliveryRecord | null> {
    const row = this.st.getDelivery.get(id);
    return row ? toDelivery(row) : null;
  }

  async listDeliveries(webhookId: string, limit: number): Promise<DeliveryRecord[]> {
    return this.st.listDeliveries.all(webhookId, limit).map(toDelivery);
  }

  async countPending(): Promise<number> {
    return this.st.countPending.get()?.n ?? 0;
  }
}
