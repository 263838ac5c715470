/**
 * The UsageStore contract (src/store/usage.ts) on the run's store (SQLite or Postgres): usage summed per
 * org, metric and hour, read back in hour or UTC-day buckets; quota overrides set and unset.
 */
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Store } from '../../src/store/store.js';
import { storePerFile } from '../helpers/stores.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Midnight UTC of 2024-03-10: the days below start there. */
const D0 = Date.UTC(2024, 2, 10);

// One store for the file (a fresh Postgres database costs about a second): each test has orgs of its own.
const file = storePerFile();
let store: Store;
beforeAll(() => {
  store = file.store;
});
let n = 0;
let a = '';
let b = '';
beforeEach(() => {
  n++;
  a = `a-${n}`;
  b = `b-${n}`;
});

describe('usage', () => {
  it('adds usage into hour buckets (within one call and across calls), per org and metric', async () => {
    await store.usage.addUsage([
      { orgId: a, metric: 'deltas', hour: D0, value: 3 },
      { orgId: a, metric: 'deltas', hour: D0, value: 4 },
      { orgId: a, metric: 'bytes_sent', hour: D0, value: 0.5 },
      { orgId: b, metric: 'deltas', hour: D0, value: 100 },
    ]);
    await store.usage.addUsage([
      { orgId: a, metric: 'deltas', hour: D0, value: 1 },
      { orgId: a, metric: 'bytes_sent', hour: D0, value: 0.25 },
      { orgId: a, metric: 'deltas', hour: D0 + HOUR, value: 2 },
    ]);
    await store.usage.addUsage([]);
    expect(await store.usage.usage(a, D0, D0 + DAY, 'hour')).toEqual([
      { metric: 'bytes_sent', start: D0, value: 0.75 },
      { metric: 'deltas', start: D0, value: 8 },
      { metric: 'deltas', start: D0 + HOUR, value: 2 },
    ]);
    expect(await store.usage.usage(b, D0, D0 + DAY, 'hour')).toEqual([{ metric: 'deltas', start: D0, value: 100 }]);
    expect(await store.usage.usage(`c-${n}`, D0, D0 + DAY, 'hour')).toEqual([]);
    // Usage survives a restart.
    const reopened = (store = await file.reopen());
    expect(await reopened.usage.usage(b, D0, D0 + DAY, 'hour')).toEqual([{ metric: 'deltas', start: D0, value: 100 }]);
  });

  it('reads buckets with from <= start < to, oldest first then by metric, by hour or by UTC day', async () => {
    const hours = [D0 - HOUR, D0, D0 + 5 * HOUR, D0 + 23 * HOUR, D0 + DAY, D0 + DAY + 2 * HOUR, D0 + 3 * DAY];
    await store.usage.addUsage(hours.flatMap((hour, i) => [
      { orgId: a, metric: 'work_units' as const, hour, value: 10 + i },
      { orgId: a, metric: 'deltas' as const, hour, value: 1 },
    ]));
    // The window: from inclusive, to exclusive.
    expect((await store.usage.usage(a, D0, D0 + DAY, 'hour')).map((r) => [r.start, r.metric, r.value])).toEqual([
      [D0, 'deltas', 1], [D0, 'work_units', 11],
      [D0 + 5 * HOUR, 'deltas', 1], [D0 + 5 * HOUR, 'work_units', 12],
      [D0 + 23 * HOUR, 'deltas', 1], [D0 + 23 * HOUR, 'work_units', 13],
    ]);
    // Days: the hours of each UTC day summed, the day keyed by its midnight.
    expect(await store.usage.usage(a, D0 - DAY, D0 + 4 * DAY, 'day')).toEqual([
      { metric: 'deltas', start: D0 - DAY, value: 1 },
      { metric: 'work_units', start: D0 - DAY, value: 10 },
      { metric: 'deltas', start: D0, value: 3 },
      { metric: 'work_units', start: D0, value: 11 + 12 + 13 },
      { metric: 'deltas', start: D0 + DAY, value: 2 },
      { metric: 'work_units', start: D0 + DAY, value: 14 + 15 },
      { metric: 'deltas', start: D0 + 3 * DAY, value: 1 },
      { metric: 'work_units', start: D0 + 3 * DAY, value: 16 },
    ]);
    // The window bounds the hours read, not the days: a day cut by `to` sums only the hours before it.
    expect(await store.usage.usage(a, D0, D0 + 6 * HOUR, 'day')).toEqual([
      { metric: 'deltas', start: D0, value: 2 },
      { metric: 'work_units', start: D0, value: 11 + 12 },
    ]);
  });

  it('sums concurrent additions to the same buckets, whatever order each call lists them in', async () => {
    const x = { orgId: a, metric: 'deltas' as const, hour: D0, value: 1 };
    const y = { orgId: a, metric: 'bytes_sent' as const, hour: D0 + HOUR, value: 2 };
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.usage.addUsage(i % 2 ? [x, y] : [y, x])));
    expect(await store.usage.usage(a, D0, D0 + DAY, 'hour')).toEqual([
      { metric: 'deltas', start: D0, value: 20 },
      { metric: 'bytes_sent', start: D0 + HOUR, value: 40 },
    ]);
  });

  it('sets, replaces and removes an org’s quota overrides', async () => {
    const acme = await store.auth.ensureOrg(a);
    const beta = await store.auth.ensureOrg(b);
    expect(await store.usage.quotaOverrides(acme.id)).toEqual({});
    await store.usage.setQuota(acme.id, 'spaces', 5);
    await store.usage.setQuota(acme.id, 'storage_bytes', 1.5e9);
    await store.usage.setQuota(beta.id, 'spaces', 7);
    expect(await store.usage.quotaOverrides(acme.id)).toEqual({ spaces: 5, storage_bytes: 1.5e9 });
    await store.usage.setQuota(acme.id, 'spaces', 9);
    expect(await store.usage.quotaOverrides(acme.id)).toEqual({ spaces: 9, storage_bytes: 1.5e9 });
    await store.usage.setQuota(acme.id, 'spaces', null);
    expect(await store.usage.quotaOverrides(acme.id)).toEqual({ storage_bytes: 1.5e9 });
    // Unsetting what is not set is no error.
    await store.usage.setQuota(acme.id, 'webhooks', null);
    expect(await store.usage.quotaOverrides(beta.id)).toEqual({ spaces: 7 });
    const reopened = (store = await file.reopen());
    expect(await reopened.usage.quotaOverrides(acme.id)).toEqual({ storage_bytes: 1.5e9 });
  });

  it('reports no stored bytes for an org with nothing stored', async () => {
    expect(await store.usage.storageBytes(`nobody-${n}`)).toBe(0);
  });
});
