/**
 * HQE sessions on a cluster of three real server processes sharing one Postgres database and one Redis
 * (a fresh key prefix per run): the node holding a session's lease simulates it; the others forward step
 * and close to it and stream its events from the store; when it is SIGKILLed, another node takes the lease
 * after its TTL and the session goes on from its checkpoint with no gap and no duplicate.
 *
 * Needs `npm run build`, Postgres at 127.0.0.1:5432 and Redis at 127.0.0.1:6379.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEV_KEY, readSse, RecordingClient, request, sleep, startServer, type StatusRecord, type TestServer, waitFor } from '../helpers/server.js';
import { dropDatabase, ensureDatabase, PG_SERVER, TEST_DB_PREFIX } from '../helpers/stores.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const REDIS_URL = process.env.RESONANCE_TEST_REDIS ?? 'redis://127.0.0.1:6379';
const LEASE_TTL_MS = 1500;
const INTERVAL = 50;

function firstPrimes(n: number): number[] {
  const ps: number[] = [];
  for (let c = 2; ps.length < n; c++) if (ps.every((p) => c % p !== 0)) ps.push(c);
  return ps;
}

/** Runs far longer than this file: snapshots every 50 steps, never plateaus. */
const LONG_SESSION = {
  primes: firstPrimes(48),
  schedule: { steps: 2_000_000, plateauT: 1_000_000_000 },
  observables: { snapshotsInterval: INTERVAL, metricsInterval: 500 },
  seed: 2024,
};
/** Cheap, and never ends: k = 4, a snapshot every 10000 steps. */
const QUIET_SESSION = { primes: [2, 3, 5, 7], schedule: { steps: 2_000_000, plateauT: 1_000_000_000 }, observables: { snapshotsInterval: 10_000, metricsInterval: 10_000 }, seed: 5 };
/** Completes at step 40. */
const SHORT_SESSION = { primes: [2, 3, 5, 7, 11], schedule: { steps: 40 }, observables: { snapshotsInterval: 10 }, seed: 3 };

const databaseUrl = `${PG_SERVER}/${TEST_DB_PREFIX}cluster_${randomBytes(6).toString('hex')}`;
const redisPrefix = `resonance-test:${randomBytes(6).toString('hex')}:`;
const nodes: Record<'a' | 'b' | 'c', TestServer | null> = { a: null, b: null, c: null };
const log: StatusRecord[] = [];
const api = (n: 'a' | 'b' | 'c'): RecordingClient => new RecordingClient(nodes[n]!.url, { 'X-Api-Key': DEV_KEY }, log);

async function startNode(id: 'a' | 'b' | 'c'): Promise<void> {
  nodes[id] = await startServer({
    env: {
      RESONANCE_DATABASE_URL: databaseUrl,
      RESONANCE_REDIS_URL: REDIS_URL,
      RESONANCE_REDIS_PREFIX: redisPrefix,
      RESONANCE_NODE_ID: id,
      RESONANCE_LEASE_TTL_MS: String(LEASE_TTL_MS),
      RESONANCE_RATE_LIMIT: '1000000',
    },
  });
}

beforeAll(async () => {
  await ensureDatabase(databaseUrl);
  // One after the other: the first migrates the database.
  for (const id of ['a', 'b', 'c'] as const) await startNode(id);
});

afterAll(async () => {
  await Promise.all(Object.values(nodes).map((n) => n?.stop()));
  await dropDatabase(databaseUrl);
});

afterEach(() => {
  const logs = Object.entries(nodes).map(([id, n]) => `--- node ${id} ---\n${n?.logs().slice(-3000) ?? ''}`).join('\n');
  // 503 owner_unreachable is allowed only where a test expects it (none does).
  expect(log.filter((r) => r.status >= 500), `5xx responses\n${logs}`).toEqual([]);
  for (const n of Object.values(nodes)) expect(n?.logs() ?? '').not.toMatch(/unhandled error/);
});

// ---- helpers ----

async function createSession(on: 'a' | 'b' | 'c', body: unknown): Promise<string> {
  const r = await api(on).request('POST', '/v1/hqe/sessions', { body });
  expect(r.status, r.text).toBe(201);
  return (r.json as Json).id as string;
}

async function getSession(on: 'a' | 'b' | 'c', id: string): Promise<Json> {
  const r = await api(on).request('GET', `/v1/hqe/sessions/${id}`);
  expect(r.status, r.text).toBe(200);
  return r.json as Json;
}

async function allSnapshots(on: 'a' | 'b' | 'c', id: string): Promise<Json[]> {
  const items: Json[] = [];
  let cursor: string | null = null;
  for (;;) {
    const r = await api(on).request('GET', `/v1/hqe/sessions/${id}/snapshots?page_size=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    expect(r.status, r.text).toBe(200);
    const page = r.json as { items: Json[]; next_cursor: string | null };
    items.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) return items;
  }
}

/** The owner of a session by GET /v1/cluster on `on`: node and lease epoch, or null while none holds it. */
async function ownerOf(on: 'a' | 'b' | 'c', id: string): Promise<{ node: string; leaseEpoch: number } | null> {
  const r = await api(on).request('GET', '/v1/cluster');
  expect(r.status, r.text).toBe(200);
  const s = ((r.json as Json).sessions as Json[]).find((x) => x.sessionId === id);
  return s ? { node: s.node as string, leaseEpoch: s.leaseEpoch as number } : null;
}

/** Snapshots are 0, 50, 100, ...: consecutive multiples of the interval, no gap, no duplicate. */
function expectConsecutive(steps: number[]): void {
  const bad = steps.findIndex((s, i) => s !== i * INTERVAL);
  expect(bad, `snapshot steps break at index ${bad}: ${JSON.stringify(steps.slice(Math.max(0, bad - 3), bad + 3))}`).toBe(-1);
}

/** Running sessions in a node's engine (GET /metrics, resonance_resident_sessions). */
async function residentSessions(on: 'a' | 'b' | 'c'): Promise<number> {
  const r = await api(on).raw('GET', '/metrics');
  expect(r.status).toBe(200);
  const m = /^resonance_resident_sessions (\d+)$/m.exec(r.text);
  expect(m, 'resonance_resident_sessions in /metrics').not.toBeNull();
  return Number(m![1]);
}

const streamUrl = (on: 'a' | 'b' | 'c', id: string): string => `${nodes[on]!.url}/v1/hqe/sessions/${id}/stream`;

// ---- the scenario (tests run in order and share state) ----

describe('sessions in a cluster', () => {
  let longId: string;
  /** Another session of a's, stepped right after a dies. */
  let quietId: string;

  it('simulates a session on the node that created it; every node reports that owner', async () => {
    longId = await createSession('a', LONG_SESSION);
    for (const n of ['a', 'b', 'c'] as const) expect(await ownerOf(n, longId)).toMatchObject({ node: 'a' });
    const c = await api('b').request('GET', '/v1/cluster');
    expect(((c.json as Json).nodes as Json[]).map((x) => x.id).sort()).toEqual(['a', 'b', 'c']);
    await waitFor('the session to run on a', async () => (((await getSession('c', longId)).step as number) > 10 * INTERVAL ? true : undefined), 20_000, 100);
  });

  it('streams it from another node: every event once, in order, snapshots contiguous', async () => {
    const stored = await allSnapshots('b', longId);
    const want = stored.length + 10;
    const read = await readSse(streamUrl('b', longId), { 'X-Api-Key': DEV_KEY }, {
      stopWhen: (events) => events.filter((e) => e.event === 'snapshot').length >= want,
      timeoutMs: 30_000,
    });
    api('b').record('GET', `/v1/hqe/sessions/${longId}/stream`, read.status);
    expect(read.status).toBe(200);
    const ids = read.events.map((e) => Number(e.id));
    expect(ids.every((id, i) => i === 0 || id > ids[i - 1]!)).toBe(true);
    const snaps = read.events.filter((e) => e.event === 'snapshot').map((e) => JSON.parse(e.data) as Json);
    // Past what was stored when the stream opened: the live part came through b too.
    expect(snaps.length).toBeGreaterThanOrEqual(want);
    expectConsecutive(snaps.map((s) => s.step as number));
    expect(snaps.slice(0, stored.length)).toEqual(stored);
    expect(read.events[0]!.event).toBe('status');
  });

  it('forwards a step sent to another node to the owner, which answers with the snapshot at the target', async () => {
    const id = await createSession('a', { ...LONG_SESSION, seed: 7 });
    await waitFor('the second session to run', async () => (((await getSession('a', id)).step as number) > 0 ? true : undefined), 20_000, 50);
    const before = await ownerOf('b', id);
    expect(before).toMatchObject({ node: 'a' });
    const at = (await getSession('b', id)).step as number;
    const r = await api('b').request('POST', `/v1/hqe/sessions/${id}/step`, { body: { steps: 25 } });
    expect(r.status, r.text).toBe(200);
    const snap = r.json as Json;
    expect(snap.step).toBeGreaterThanOrEqual(at + 25);
    // Served by a, which still holds the lease under the same epoch: b did not take the session.
    expect(await ownerOf('c', id)).toEqual(before);
    expect((await allSnapshots('c', id)).some((s) => s.step === snap.step)).toBe(true);

    // Close through the third node: forwarded too; the session leaves a's engine and its lease goes.
    const closed = await api('c').request('DELETE', `/v1/hqe/sessions/${id}`);
    expect(closed.status, closed.text).toBe(204);
    const row = await getSession('a', id);
    expect(row.status).toBe('closed');
    expect(await ownerOf('b', id)).toBeNull();
    await sleep(300);
    expect((await getSession('b', id)).step).toBe(row.step);
    // Its stream, from any node, ends with the closing status.
    const tail = await readSse(streamUrl('b', id), { 'X-Api-Key': DEV_KEY }, { timeoutMs: 20_000 });
    api('b').record('GET', `/v1/hqe/sessions/${id}/stream`, tail.status);
    expect(tail.ended).toBe(true);
    expect(JSON.parse(tail.events[tail.events.length - 1]!.data)).toMatchObject({ status: 'closed' });
    const step = await api('b').request('POST', `/v1/hqe/sessions/${id}/step`, { body: { steps: 1 } });
    expect(step.status).toBe(409);
    expect((step.json as Json).code).toBe('session_ended');
  });

  it('a completed session has no owner: the node a step reaches takes it and runs it', async () => {
    const id = await createSession('a', SHORT_SESSION);
    await waitFor('the short session to complete', async () => ((await getSession('a', id)).status === 'completed' ? true : undefined), 20_000, 50);
    // Out of a's engine once checkpointed, its lease given up.
    await waitFor('the completed session to have no owner', async () => ((await ownerOf('a', id)) === null ? true : undefined), 5000, 50);
    const r = await api('c').request('POST', `/v1/hqe/sessions/${id}/step`, { body: { steps: 7 } });
    expect(r.status, r.text).toBe(200);
    expect((r.json as Json).step).toBe(47);
    expect(await getSession('b', id)).toMatchObject({ status: 'completed', step: 47 });
    expect((await allSnapshots('b', id)).map((x) => x.step)).toEqual([0, 10, 20, 30, 40, 47]);
    // Completed again: out of c's engine, lease given up.
    await waitFor('the session to leave c', async () => ((await ownerOf('b', id)) === null ? true : undefined), 5000, 50);
  });

  it('after SIGKILL of the owner, another node takes the lease within its TTL + 1 s; the stream on a third node goes on with no gap and no duplicate', async () => {
    const owner = await ownerOf('b', longId);
    expect(owner).toMatchObject({ node: 'a' });
    quietId = await createSession('a', QUIET_SESSION);
    const beforeKill = (await getSession('b', longId)).step as number;
    // Reading on c from the start, across the kill.
    const stored = await allSnapshots('c', longId);
    let killed = false;
    let passedAt = 0;
    const streaming = readSse(streamUrl('c', longId), { 'X-Api-Key': DEV_KEY }, {
      stopWhen: (events) => {
        if (!killed) return false;
        const snaps = events.filter((e) => e.event === 'snapshot');
        const last = snaps[snaps.length - 1];
        return last !== undefined && (JSON.parse(last.data) as Json).step >= passedAt;
      },
      timeoutMs: 60_000,
    });
    await waitFor('the stream to catch up', async () => ((await allSnapshots('c', longId)).length > stored.length + 5 ? true : undefined), 20_000, 100);

    const exit = await nodes.a!.kill('SIGKILL');
    expect(exit.signal).toBe('SIGKILL');
    const killedAt = Date.now();
    // A step sent meanwhile is forwarded to a, which does not answer: 503 owner_unreachable, retry later.
    const refused = request(nodes.b!.url, 'POST', `/v1/hqe/sessions/${quietId}/step`, { 'X-Api-Key': DEV_KEY }, { steps: 5 });
    const taken = await waitFor('another node to take the session', async () => {
      const now = await ownerOf('b', longId);
      return now && now.node !== 'a' ? now : undefined;
    }, 10_000, 50);
    const tookMs = Date.now() - killedAt;
    expect(tookMs, `taken over by ${taken.node} after ${tookMs} ms`).toBeLessThanOrEqual(LEASE_TTL_MS + 1000);
    expect(['b', 'c']).toContain(taken.node);
    expect(taken.leaseEpoch).toBeGreaterThan(owner!.leaseEpoch);
    const r = await refused;
    expect(r.status, JSON.stringify(r.json)).toBe(503);
    expect(r.json.code).toBe('owner_unreachable');
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // The other session of a's is taken over too.
    await waitFor('the quiet session to be taken over', async () => {
      const o = await ownerOf('c', quietId);
      return o && o.node !== 'a' ? true : undefined;
    }, 5000, 50);

    // It goes on from its checkpoint, past where it was.
    const advanced = await waitFor('the session to pass its pre-kill step', async () => {
      const s = await getSession(taken.node === 'b' ? 'c' : 'b', longId);
      return (s.step as number) > beforeKill + 10 * INTERVAL ? s : undefined;
    }, 30_000, 100);
    expect(advanced.status).toBe('running');
    passedAt = advanced.step as number;
    killed = true;

    const read = await streaming;
    api('c').record('GET', `/v1/hqe/sessions/${longId}/stream`, read.status);
    const ids = read.events.map((e) => Number(e.id));
    expect(ids.every((id, i) => i === 0 || id > ids[i - 1]!), 'SSE ids strictly increasing').toBe(true);
    const streamed = read.events.filter((e) => e.event === 'snapshot').map((e) => JSON.parse(e.data) as Json);
    expectConsecutive(streamed.map((s) => s.step as number));
    expect(streamed[streamed.length - 1]!.step).toBeGreaterThanOrEqual(passedAt);
    const metricSteps = read.events.filter((e) => e.event === 'metrics').map((e) => (JSON.parse(e.data) as Json).step as number);
    expect(metricSteps.findIndex((step, i) => step !== i * 500)).toBe(-1);
    expect(read.events.filter((e) => e.event === 'status').map((e) => (JSON.parse(e.data) as Json).status)).toEqual(['running']);

    // What is stored agrees, and the stream saw exactly that.
    const after = await allSnapshots('b', longId);
    expectConsecutive(after.map((s) => s.step as number));
    expect(after.slice(0, stored.length)).toEqual(stored);
    expect(streamed).toEqual(after.slice(0, streamed.length));
  });

  it('an owner paused past its lease loses the session when it resumes: one node simulates it, snapshots stay contiguous', async () => {
    const owner = (await ownerOf('b', longId))!;
    const paused = owner.node as 'b' | 'c';
    const other = paused === 'b' ? 'c' : 'b';
    nodes[paused]!.proc.kill('SIGSTOP');
    try {
      await sleep(LEASE_TTL_MS + 1500);
    } finally {
      nodes[paused]!.proc.kill('SIGCONT');
    }
    // Its lease lapsed while it slept: whichever node holds the session now holds it under a newer epoch,
    // and that node alone has it in its engine (the paused one, awake again, dropped it instead of writing).
    const now = await waitFor('a newer lease', async () => {
      const o = await ownerOf(other, longId);
      return o && o.leaseEpoch > owner.leaseEpoch ? o : undefined;
    }, 10_000, 50);
    // Each node simulates exactly the sessions whose leases it holds.
    await waitFor('every node to simulate just what it holds', async () => {
      const r = await api(other).request('GET', '/v1/cluster');
      const held = { b: 0, c: 0 };
      for (const x of (r.json as Json).sessions as Json[]) held[x.node as 'b' | 'c']++;
      return held.b + held.c === 2 && (await residentSessions('b')) === held.b && (await residentSessions('c')) === held.c ? true : undefined;
    }, 10_000, 100);
    const at = (await getSession(other, longId)).step as number;
    await waitFor('the session to run on', async () => (((await getSession(other, longId)).step as number) > at + 5 * INTERVAL ? true : undefined), 20_000, 100);
    expectConsecutive((await allSnapshots(other, longId)).map((s) => s.step as number));
    expect(now.leaseEpoch).toBeGreaterThan(owner.leaseEpoch);
  });

  it('the surviving nodes still forward to the new owner and close the session', async () => {
    const owner = (await ownerOf('b', longId))!;
    const other = owner.node === 'b' ? 'c' : 'b';
    const closed = await api(other).request('DELETE', `/v1/hqe/sessions/${longId}`);
    expect(closed.status, closed.text).toBe(204);
    expect((await getSession(owner.node as 'b' | 'c', longId)).status).toBe('closed');
    expect(await ownerOf(other, longId)).toBeNull();
    for (const via of ['b', 'c'] as const) {
      const r = await api(via).request('DELETE', `/v1/hqe/sessions/${quietId}`);
      expect(r.status, r.text).toBe(204);
    }
    expect((await getSession('b', quietId)).status).toBe('closed');
    expect(await ownerOf('c', quietId)).toBeNull();
  });
});
