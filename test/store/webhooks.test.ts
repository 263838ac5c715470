/**
 * The WebhookStore contract (src/store/webhooks.ts) on the run's store: registrations and their paging,
 * the outbox (enqueue for subscribed webhooks only), claims with a lease, the attempt-guarded outcomes,
 * and two handles on the same data (two nodes, or two processes) claiming at once.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { OutboxEvent, WebhookRecord, WebhookStore } from '../../src/store/webhooks.js';
import { openTestStore, type TestStore } from '../helpers/stores.js';

let ts: TestStore;
let store: WebhookStore;

beforeEach(async () => {
  ts = await openTestStore();
  store = ts.store.webhooks;
});

afterEach(async () => {
  await ts.destroy();
});

/** Store times are the caller's: a fixed epoch keeps the tests exact. */
const T = 1_700_000_000_000;
const LEASE = 30_000;

function webhook(id: string, over: Partial<WebhookRecord> = {}): WebhookRecord {
  return { id, orgId: 'org-a', url: `https://example.com/${id}`, secret: `whsec_${id}`, events: ['hqe.converged'], createdAt: T, ...over };
}

let events = 0;
function event(type: string, createdAt = T): OutboxEvent {
  const id = `evt_${++events}`;
  return { id, type, payload: JSON.stringify({ id, type, data: { n: events } }), createdAt };
}

let deliveries = 0;
const newId = () => `whd_${String(++deliveries).padStart(6, '0')}`;

describe('registrations', () => {
  it('inserts, gets (own org only), counts and deletes', async () => {
    const w = webhook('wh_1', { events: ['hqe.converged', 'space.updated'] });
    await store.insertWebhook(w);
    expect(await store.getWebhook('org-a', 'wh_1')).toEqual(w);
    expect(await store.getWebhook('org-b', 'wh_1')).toBeNull();
    expect(await store.getWebhook('org-a', 'wh_missing')).toBeNull();
    expect(await store.countWebhooks('org-a')).toBe(1);
    expect(await store.countWebhooks('org-b')).toBe(0);

    expect(await store.deleteWebhook('org-b', 'wh_1')).toBe(false);
    expect(await store.getWebhook('org-a', 'wh_1')).toEqual(w);
    expect(await store.deleteWebhook('org-a', 'wh_1')).toBe(true);
    expect(await store.getWebhook('org-a', 'wh_1')).toBeNull();
    expect(await store.deleteWebhook('org-a', 'wh_1')).toBe(false);
    expect(await store.countWebhooks('org-a')).toBe(0);
  });

  it('lists oldest first by (createdAt, id), keyset-paged, one org only', async () => {
    // Equal times tie-break on the id in byte order: upper case before lower case.
    const ws = [
      webhook('wh_b', { createdAt: T + 1 }),
      webhook('wh_A', { createdAt: T + 1 }),
      webhook('wh_a', { createdAt: T + 1 }),
      webhook('wh_z', { createdAt: T }),
      webhook('wh_c', { createdAt: T + 2 }),
    ];
    for (const w of ws) await store.insertWebhook(w);
    await store.insertWebhook(webhook('wh_other', { orgId: 'org-b', createdAt: T + 1 }));
    const order = ['wh_z', 'wh_A', 'wh_a', 'wh_b', 'wh_c'];
    expect((await store.listWebhooks('org-a', { limit: 10 })).map((w) => w.id)).toEqual(order);

    const seen: string[] = [];
    let after: { createdAt: number; id: string } | undefined;
    for (;;) {
      const page = await store.listWebhooks('org-a', { ...(after ? { after } : {}), limit: 2 });
      expect(page.length).toBeLessThanOrEqual(2);
      seen.push(...page.map((w) => w.id));
      const last = page[page.length - 1];
      if (!last) break;
      after = { createdAt: last.createdAt, id: last.id };
    }
    expect(seen).toEqual(order);
    expect(await store.listWebhooks('org-b', { limit: 10 })).toEqual([webhook('wh_other', { orgId: 'org-b', createdAt: T + 1 })]);
  });
});

describe('outbox', () => {
  it('enqueues one pending delivery per org webhook subscribed to the type, and none for others', async () => {
    await store.insertWebhook(webhook('wh_1', { events: ['hqe.converged', 'hqe.failed'] }));
    await store.insertWebhook(webhook('wh_2', { events: ['hqe.failed'], createdAt: T + 1 }));
    await store.insertWebhook(webhook('wh_3', { events: ['hqe.failed'], orgId: 'org-b' }));
    // A name that only contains a subscribed type is not that type.
    await store.insertWebhook(webhook('wh_4', { events: ['hqe.failed.x', 'x.hqe.converged'], createdAt: T + 2 }));

    const e1 = event('hqe.converged', T + 10);
    const made = await store.enqueueEvent('org-a', e1, newId);
    expect(made).toHaveLength(1);
    expect(made[0]).toMatchObject({
      webhookId: 'wh_1', eventId: e1.id, eventType: 'hqe.converged', payload: e1.payload, status: 'pending', attempts: 0,
      nextAttemptAt: T + 10, lastError: null, createdAt: T + 10, deliveredAt: null,
    });
    expect(await store.getDelivery(made[0]!.id)).toEqual(made[0]);

    const e2 = event('hqe.failed', T + 20);
    expect((await store.enqueueEvent('org-a', e2, newId)).map((d) => d.webhookId)).toEqual(['wh_1', 'wh_2']);
    expect(await store.enqueueEvent('org-a', event('hqe.plateau'), newId)).toEqual([]);
    expect(await store.enqueueEvent('org-c', event('hqe.failed'), newId)).toEqual([]);
    expect(await store.countPending()).toBe(3);
    expect(await store.getDelivery('whd_missing')).toBeNull();
  });

  it('lists a webhook’s deliveries newest first, up to the limit', async () => {
    await store.insertWebhook(webhook('wh_1'));
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await store.enqueueEvent('org-a', event('hqe.converged', T + i), newId))[0]!.id);
    expect((await store.listDeliveries('wh_1', 10)).map((d) => d.id)).toEqual([...ids].reverse());
    expect((await store.listDeliveries('wh_1', 2)).map((d) => d.id)).toEqual([ids[3], ids[2]]);
    expect(await store.listDeliveries('wh_none', 10)).toEqual([]);
  });

  it('deleting a webhook cancels its pending deliveries and leaves finished ones and other webhooks alone', async () => {
    await store.insertWebhook(webhook('wh_1'));
    await store.insertWebhook(webhook('wh_2', { events: ['hqe.failed'], createdAt: T + 1 }));
    const [done] = await store.enqueueEvent('org-a', event('hqe.converged', T), newId);
    expect((await store.claimDue(T, 10, T + LEASE)).map((d) => d.id)).toEqual([done!.id]);
    expect(await store.markDelivered(done!.id, 1, T + 5)).toBe(true);
    // An attempt in flight when its webhook goes: its outcome no longer applies.
    const [inFlight] = await store.enqueueEvent('org-a', event('hqe.converged', T + 10), newId);
    expect((await store.claimDue(T + 10, 10, T + 10 + LEASE)).map((d) => d.id)).toEqual([inFlight!.id]);
    const [queued] = await store.enqueueEvent('org-a', event('hqe.converged', T + 20), newId);
    const [otherWebhook] = await store.enqueueEvent('org-a', event('hqe.failed', T + 20), newId);
    expect(await store.countPending()).toBe(3);

    expect(await store.deleteWebhook('org-a', 'wh_1')).toBe(true);
    for (const d of [inFlight!, queued!]) expect(await store.getDelivery(d.id)).toMatchObject({ status: 'cancelled', lastError: 'webhook deleted' });
    expect(await store.getDelivery(done!.id)).toMatchObject({ status: 'delivered' });
    expect(await store.markDelivered(inFlight!.id, 1, T + 15)).toBe(false);
    expect(await store.getDelivery(otherWebhook!.id)).toMatchObject({ webhookId: 'wh_2', status: 'pending' });
    expect(await store.countPending()).toBe(1);
    expect((await store.claimDue(T + 100, 10, T + 100 + LEASE)).map((d) => d.id)).toEqual([otherWebhook!.id]);
  });
});

describe('claims and outcomes', () => {
  it('claims due deliveries oldest due first, with their webhook, leased until leaseUntil', async () => {
    await store.insertWebhook(webhook('wh_1'));
    const later = (await store.enqueueEvent('org-a', event('hqe.converged', T + 50), newId))[0]!;
    const first = (await store.enqueueEvent('org-a', event('hqe.converged', T + 10), newId))[0]!;
    const future = (await store.enqueueEvent('org-a', event('hqe.converged', T + 1000), newId))[0]!;

    expect(await store.claimDue(T, 10, T + LEASE)).toEqual([]);
    expect(await store.claimDue(T + 100, 0, T + LEASE)).toEqual([]);
    const claimed = await store.claimDue(T + 100, 10, T + 100 + LEASE);
    expect(claimed.map((d) => d.id)).toEqual([first.id, later.id]);
    expect(claimed[0]).toEqual({
      ...first, attempts: 1, nextAttemptAt: T + 100 + LEASE, orgId: 'org-a', url: 'https://example.com/wh_1', secret: 'whsec_wh_1',
    });
    expect(await store.getDelivery(first.id)).toMatchObject({ attempts: 1, nextAttemptAt: T + 100 + LEASE, status: 'pending' });
    // Leased: not claimed again before the lease ends, even though still pending.
    expect((await store.claimDue(T + 1000, 10, T + 1000 + LEASE)).map((d) => d.id)).toEqual([future.id]);
    expect(await store.countPending()).toBe(3);
    // The limit is respected.
    await store.enqueueEvent('org-a', event('hqe.converged', T + 2000), newId);
    await store.enqueueEvent('org-a', event('hqe.converged', T + 2001), newId);
    expect(await store.claimDue(T + 3000, 1, T + 3000 + LEASE)).toHaveLength(1);
  });

  it('delivered: once, for the current attempt only', async () => {
    await store.insertWebhook(webhook('wh_1'));
    const [d] = await store.enqueueEvent('org-a', event('hqe.converged'), newId);
    await store.claimDue(T, 10, T + LEASE);
    expect(await store.markDelivered(d!.id, 0, T + 1)).toBe(false);
    expect(await store.markDelivered(d!.id, 1, T + 2)).toBe(true);
    expect(await store.getDelivery(d!.id)).toMatchObject({ status: 'delivered', deliveredAt: T + 2, attempts: 1, lastError: null });
    expect(await store.markDelivered(d!.id, 1, T + 3)).toBe(false);
    expect(await store.markFailed(d!.id, 1, 'late')).toBe(false);
    expect(await store.countPending()).toBe(0);
    expect(await store.claimDue(T + 10 * LEASE, 10, T + 11 * LEASE)).toEqual([]);
    expect(await store.markDelivered('whd_missing', 1, T)).toBe(false);
  });

  it('retry reschedules with a clipped error; the next claim is attempt 2; failed is final', async () => {
    await store.insertWebhook(webhook('wh_1'));
    const [d] = await store.enqueueEvent('org-a', event('hqe.converged'), newId);
    await store.claimDue(T, 10, T + LEASE);
    expect(await store.markRetry(d!.id, 1, T + 500, 'x'.repeat(2000))).toBe(true);
    const retried = await store.getDelivery(d!.id);
    expect(retried).toMatchObject({ status: 'pending', attempts: 1, nextAttemptAt: T + 500 });
    expect(retried!.lastError).toBe('x'.repeat(500));
    expect(await store.claimDue(T + 499, 10, T + LEASE)).toEqual([]);
    const [again] = await store.claimDue(T + 500, 10, T + 500 + LEASE);
    expect(again).toMatchObject({ id: d!.id, attempts: 2, lastError: 'x'.repeat(500) });
    // The first attempt's outcome is stale now.
    expect(await store.markRetry(d!.id, 1, T + 600, 'stale')).toBe(false);
    expect(await store.markFailed(d!.id, 1, 'stale')).toBe(false);
    expect(await store.markFailed(d!.id, 2, 'HTTP 500')).toBe(true);
    expect(await store.getDelivery(d!.id)).toMatchObject({ status: 'failed', attempts: 2, lastError: 'HTTP 500', deliveredAt: null });
    expect(await store.markRetry(d!.id, 2, T + 700, 'after')).toBe(false);
    expect(await store.claimDue(T + 10 * LEASE, 10, T + 11 * LEASE)).toEqual([]);
    expect(await store.countPending()).toBe(0);
  });

  it('a lease that ran out is claimed again as the next attempt; the old worker’s outcome is refused', async () => {
    await store.insertWebhook(webhook('wh_1'));
    const [d] = await store.enqueueEvent('org-a', event('hqe.converged'), newId);
    const [first] = await store.claimDue(T, 10, T + LEASE);
    expect(await store.claimDue(T + LEASE - 1, 10, T + 2 * LEASE)).toEqual([]);
    const [second] = await store.claimDue(T + LEASE, 10, T + 2 * LEASE);
    expect(second).toMatchObject({ id: d!.id, attempts: 2 });
    expect(await store.markDelivered(first!.id, first!.attempts, T + LEASE + 1)).toBe(false);
    expect(await store.markDelivered(second!.id, second!.attempts, T + LEASE + 2)).toBe(true);
  });

  it('outbox rows survive a reopen', async () => {
    await store.insertWebhook(webhook('wh_1'));
    const [d] = await store.enqueueEvent('org-a', event('hqe.converged'), newId);
    const reopened = await ts.reopen();
    expect(await reopened.webhooks.countPending()).toBe(1);
    expect((await reopened.webhooks.claimDue(T, 10, T + LEASE)).map((c) => c.id)).toEqual([d!.id]);
  });
});

describe('two handles on the same data', () => {
  it('claiming at once never hands the same delivery to both, and every due delivery to one', async () => {
    for (let i = 0; i < 4; i++) await store.insertWebhook(webhook(`wh_${i}`, { createdAt: T + i }));
    const enqueued: string[] = [];
    for (let i = 0; i < 15; i++) enqueued.push(...(await store.enqueueEvent('org-a', event('hqe.converged', T + i), newId)).map((d) => d.id));
    expect(enqueued).toHaveLength(60);

    const other = await ts.openSecondHandle();
    try {
      // Eight claimers of 10 (80 places for 60 rows), half on each handle, started together.
      const batches = await Promise.all(
        Array.from({ length: 8 }, (_, i) => (i % 2 ? other.webhooks : store).claimDue(T + 100, 10, T + 100 + LEASE)),
      );
      const claimed = batches.flat().map((d) => d.id);
      expect(new Set(claimed).size).toBe(claimed.length);
      expect([...claimed].sort()).toEqual([...enqueued].sort());
      for (const d of batches.flat()) expect(d.attempts).toBe(1);
      // Both handles now see every row leased: nothing more to claim on either.
      expect(await other.webhooks.claimDue(T + 100, 10, T + 100 + LEASE)).toEqual([]);
      expect(await store.claimDue(T + 100, 10, T + 100 + LEASE)).toEqual([]);
      for (const id of enqueued) expect((await store.getDelivery(id))?.attempts).toBe(1);
    } finally {
      await other.close();
    }
  });
});
