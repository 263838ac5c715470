/**
 * The SessionStore contract (src/store/sessions.ts) on the run's store (SQLite or Postgres): events in
 * order with paging and kind filters, an identical event stored once, storage charged for what was stored,
 * the row's change committed with its events, ended_at stamped once.
 */
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { NormalizedConfig } from '../../src/model/config.js';
import { normalize } from '../../src/model/normalize.js';
import type { NewSessionEvent, SessionEventKind } from '../../src/store/sessions.js';
import type { Store } from '../../src/store/store.js';
import { storePerFile } from '../helpers/stores.js';

function config(seed = 1): NormalizedConfig {
  const r = normalize({ primes: [2, 3, 5], seed }, { maxBasis: 2048 });
  if (!r.ok) throw new Error('fixture config is invalid');
  return r.normalized;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const ev = (kind: SessionEventKind, step: number, body: unknown = { step }, restart = 0): NewSessionEvent => ({ kind, step, restart, body: JSON.stringify(body) });
const bytes = (events: NewSessionEvent[]): number => events.reduce((n, e) => n + Buffer.byteLength(e.body), 0);

// One store for the file (a fresh Postgres database costs about a second): each test has a session `s`
// and an org `org` of its own, and names any other session with uid().
const file = storePerFile();
let store: Store;
beforeAll(() => {
  store = file.store;
});
let n = 0;
/** A name no other test of the file uses. */
const uid = (prefix: string): string => `${prefix}-${++n}`;
let s = '';
let org = '';
beforeEach(async () => {
  s = uid('s');
  org = uid('o');
  await store.sessions.create({ id: s, orgId: org, config: config(), status: 'initializing' });
});

describe('sessions', () => {
  it('creates a session with nothing run, stored or ended, and reads it back after a restart', async () => {
    const s2 = uid('s');
    const created = await store.sessions.create({ id: s2, orgId: org, config: config(4), status: 'running' });
    expect(created).toMatchObject({
      id: s2, orgId: org, config: config(4), status: 'running', step: 0, restart: 0, metrics: null, extraSteps: 0, checkpoint: null, eventBytes: 0, endedAt: null,
    });
    expect(created.updatedAt).toBe(created.createdAt);
    const reopened = (store = await file.reopen());
    expect(await reopened.sessions.get(s2)).toEqual(created);
    expect(await reopened.sessions.get('missing')).toBeNull();
  });

  it('changes only the fields an update names', async () => {
    const before = (await store.sessions.get(s))!;
    await sleep(3);
    await store.sessions.update(s, { status: 'running', step: 12, metrics: { energy: 1.5, converged: false, gap: null }, extraSteps: 40 });
    const after = (await store.sessions.get(s))!;
    expect(after).toMatchObject({ status: 'running', step: 12, restart: 0, metrics: { energy: 1.5, converged: false, gap: null }, extraSteps: 40, checkpoint: null });
    expect(after.updatedAt).toBeGreaterThan(before.updatedAt);
    await store.sessions.update(s, { checkpoint: '{"engine":1}', restart: 2, metrics: null });
    expect(await store.sessions.get(s)).toMatchObject({ status: 'running', step: 12, restart: 2, metrics: null, extraSteps: 40, checkpoint: '{"engine":1}' });
  });

  it('lists the sessions to resume after a restart (initializing and running), oldest first', async () => {
    const [r1, r2] = [uid('r'), uid('r')];
    for (const [id, status] of [[r1, 'running'], [uid('c'), 'completed'], [uid('p'), 'plateau'], [r2, 'running'], [uid('f'), 'failed']] as const) {
      await sleep(2);
      await store.sessions.create({ id, orgId: org, config: config(), status });
    }
    // Other tests of the file left sessions of their own: only this test's are looked at.
    const ours = async () => (await store.sessions.listActive()).map((x) => x.id).filter((id) => [s, r1, r2].includes(id));
    expect(await ours()).toEqual([s, r1, r2]);
    await store.sessions.update(r1, { status: 'closed' });
    expect(await ours()).toEqual([s, r2]);
  });

  it('stamps ended_at once, when a status ends the session (completed does not)', async () => {
    await store.sessions.update(s, { status: 'completed' });
    expect((await store.sessions.get(s))!.endedAt).toBeNull();
    await store.sessions.update(s, { status: 'running' });
    const t0 = Date.now();
    await store.sessions.update(s, { status: 'plateau' });
    const ended = (await store.sessions.get(s))!.endedAt!;
    expect(ended).toBeGreaterThanOrEqual(t0);
    await sleep(5);
    await store.sessions.update(s, { status: 'closed' });
    expect(await store.sessions.get(s)).toMatchObject({ status: 'closed', endedAt: ended });
    // The same through appendEvents' change.
    const other = uid('s');
    await store.sessions.create({ id: other, orgId: org, config: config(), status: 'running' });
    await store.sessions.appendEvents(other, [ev('status', 3, { status: 'converged' })], { status: 'converged', step: 3 });
    const b = (await store.sessions.get(other))!.endedAt!;
    expect(b).not.toBeNull();
    await sleep(5);
    await store.sessions.appendEvents(other, [], { status: 'failed' });
    expect(await store.sessions.get(other)).toMatchObject({ status: 'failed', step: 3, endedAt: b });
  });
});

describe('session events', () => {
  it('returns events oldest first with increasing seqs, pages with afterSeq and limit, and filters by kind', async () => {
    const batch = [ev('status', 0, { status: 'running' }), ev('metrics', 1), ev('snapshot', 1), ev('event', 1, { type: 'x' }), ev('metrics', 2), ev('snapshot', 2)];
    const stored = await store.sessions.appendEvents(s, batch);
    expect(stored.map((e) => e && { kind: e.kind, step: e.step, restart: e.restart, body: e.body })).toEqual(batch);
    const seqs = stored.map((e) => e!.seq);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
    // A later batch comes after the first.
    const more = await store.sessions.appendEvents(s, [ev('metrics', 3), ev('snapshot', 3)]);
    expect(more[0]!.seq).toBeGreaterThan(seqs.at(-1)!);

    const all = await store.sessions.events(s, 0, 100);
    expect(all.map((e) => e.seq)).toEqual([...seqs, more[0]!.seq, more[1]!.seq]);
    expect(all[1]).toEqual({ seq: seqs[1], kind: 'metrics', step: 1, restart: 0, body: JSON.stringify({ step: 1 }) });
    // Pages: after the second seq, three at a time.
    const page = await store.sessions.events(s, seqs[1]!, 3);
    expect(page.map((e) => e.seq)).toEqual(seqs.slice(2, 5));
    expect(await store.sessions.events(s, all.at(-1)!.seq, 10)).toEqual([]);
    // Kinds: one, several, or none (no filter).
    expect((await store.sessions.events(s, 0, 100, ['snapshot'])).map((e) => e.step)).toEqual([1, 2, 3]);
    expect((await store.sessions.events(s, seqs[2]!, 2, ['snapshot', 'metrics'])).map((e) => [e.kind, e.step])).toEqual([['metrics', 2], ['snapshot', 2]]);
    expect(await store.sessions.events(s, 0, 100, [])).toHaveLength(8);
    // Another session's events are its own.
    const other = uid('s');
    await store.sessions.create({ id: other, orgId: org, config: config(), status: 'running' });
    await store.sessions.appendEvents(other, [ev('metrics', 1)]);
    expect(await store.sessions.events(s, 0, 100)).toHaveLength(8);
    expect(await store.sessions.events(other, 0, 100)).toHaveLength(1);
  });

  it('stores an identical event once (already stored, or twice in one batch) and says which were new', async () => {
    const a = ev('snapshot', 5, { step: 5, phases: [0.1, 0.2] });
    const first = await store.sessions.appendEvents(s, [a, ev('metrics', 5)]);
    expect(first.every((e) => e !== null)).toBe(true);
    // Recovery from a checkpoint visits step 5 again: the same events, then a new one.
    const again = await store.sessions.appendEvents(s, [a, ev('metrics', 5), ev('metrics', 6)]);
    expect(again[0]).toBeNull();
    expect(again[1]).toBeNull();
    expect(again[2]).toMatchObject({ kind: 'metrics', step: 6 });
    expect(again[2]!.seq).toBeGreaterThan(first[1]!.seq);
    // In one batch: the first copy is stored, the second is not.
    const twice = await store.sessions.appendEvents(s, [ev('event', 7, { type: 'y' }), ev('metrics', 7), ev('event', 7, { type: 'y' })]);
    expect(twice.map((e) => e !== null)).toEqual([true, true, false]);
    expect(twice[0]!.seq).toBeLessThan(twice[1]!.seq);
    // The same body under another kind, step or restart is another event.
    const variants = await store.sessions.appendEvents(s, [ev('metrics', 5, { step: 5, phases: [0.1, 0.2] }), ev('snapshot', 6, { step: 5, phases: [0.1, 0.2] }), ev('snapshot', 5, { step: 5, phases: [0.1, 0.2] }, 1)]);
    expect(variants.every((e) => e !== null)).toBe(true);
    expect(await store.sessions.events(s, 0, 100)).toHaveLength(8);

    expect(await store.sessions.hasEvent(s, a)).toBe(true);
    expect(await store.sessions.hasEvent(s, { ...a, restart: 2 })).toBe(false);
    expect(await store.sessions.hasEvent(s, { ...a, body: JSON.stringify({ step: 5, phases: [0.1, 0.3] }) })).toBe(false);
    expect(await store.sessions.hasEvent(uid('s'), a)).toBe(false);
  });

  it('stores a large event once too', async () => {
    // Far beyond what one index entry can hold: the store must still find it again.
    const big = ev('snapshot', 1, { step: 1, phases: Array.from({ length: 20_000 }, (_, i) => Math.sin(i)) });
    expect(big.body.length).toBeGreaterThan(200_000);
    expect((await store.sessions.appendEvents(s, [big]))[0]).not.toBeNull();
    expect(await store.sessions.appendEvents(s, [big])).toEqual([null]);
    expect(await store.sessions.hasEvent(s, big)).toBe(true);
    expect((await store.sessions.events(s, 0, 10))[0]!.body).toBe(big.body);
    expect((await store.sessions.get(s))!.eventBytes).toBe(Buffer.byteLength(big.body));
  });

  it('charges the UTF-8 bytes of the events it stored, and only those', async () => {
    const batch = [ev('event', 1, { note: 'é✓🙂' }), ev('metrics', 1, { label: 'ascii' })];
    await store.sessions.appendEvents(s, batch);
    const charged = bytes(batch);
    expect(charged).toBeGreaterThan(batch.reduce((n, e) => n + e.body.length, 0));
    expect((await store.sessions.get(s))!.eventBytes).toBe(charged);
    const extra = ev('metrics', 2, { label: 'ü' });
    await store.sessions.appendEvents(s, [...batch, extra]);
    expect((await store.sessions.get(s))!.eventBytes).toBe(charged + bytes([extra]));
    // storageBytes is the org's sum over its sessions.
    const [x, y] = [uid('s'), uid('s')];
    await store.sessions.create({ id: x, orgId: org, config: config(), status: 'running' });
    await store.sessions.appendEvents(x, [ev('metrics', 1)]);
    await store.sessions.create({ id: y, orgId: uid('o'), config: config(), status: 'running' });
    await store.sessions.appendEvents(y, [ev('metrics', 1)]);
    expect(await store.usage.storageBytes(org)).toBe(charged + bytes([extra]) + bytes([ev('metrics', 1)]));
  });

  it('commits the row’s change with its events, and a change alone', async () => {
    const out = await store.sessions.appendEvents(s, [ev('metrics', 4), ev('snapshot', 4)], { status: 'running', step: 4, restart: 1, metrics: { energy: 2 } });
    expect(out.every((e) => e !== null)).toBe(true);
    expect(await store.sessions.get(s)).toMatchObject({ status: 'running', step: 4, restart: 1, metrics: { energy: 2 } });
    // Every event a duplicate: the change still applies.
    expect(await store.sessions.appendEvents(s, [ev('metrics', 4)], { step: 5 })).toEqual([null]);
    expect((await store.sessions.get(s))!.step).toBe(5);
    expect(await store.sessions.appendEvents(s, [], { extraSteps: 10 })).toEqual([]);
    expect((await store.sessions.get(s))!.extraSteps).toBe(10);
  });

  it('keeps a session’s seqs in commit order and stores a racing duplicate once when appends run concurrently', async () => {
    const writers = Array.from({ length: 12 }, (_, w) =>
      store.sessions.appendEvents(s, Array.from({ length: 5 }, (_, i) => ev('metrics', w * 10 + i)), { step: w }),
    );
    // The same event from several appends at once: one stores it.
    const dup = ev('status', 99, { status: 'running' });
    const racing = Array.from({ length: 6 }, () => store.sessions.appendEvents(s, [dup]));
    const results = await Promise.all([...writers, ...racing]);
    expect(results.slice(12).filter((r) => r[0] !== null)).toHaveLength(1);
    // Each batch got increasing seqs, and batches did not interleave: seqs commit in order.
    const spans = results.slice(0, 12).map((r) => {
      const seqs = r.map((e) => e!.seq);
      expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
      return [seqs[0]!, seqs.at(-1)!] as const;
    });
    spans.sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThan(spans[i - 1]![1]);
    const all = await store.sessions.events(s, 0, 1000);
    expect(all).toHaveLength(61);
    // Paging in small pages meets every event once.
    const paged: number[] = [];
    for (let after = 0; ; ) {
      const page = await store.sessions.events(s, after, 7);
      if (page.length === 0) break;
      paged.push(...page.map((e) => e.seq));
      after = page.at(-1)!.seq;
    }
    expect(paged).toEqual(all.map((e) => e.seq));
    expect((await store.sessions.get(s))!.eventBytes).toBe(all.reduce((n, e) => n + Buffer.byteLength(e.body), 0));
  });
});
