/**
 * Crash and restart: the built server in a child process is SIGKILLed mid-session and restarted on the same
 * data directory, then stopped gracefully (SIGTERM) and restarted again. Sessions must resume from their
 * checkpoints with no gap and no duplicate in what they recorded, and a webhook delivery that was pending
 * when the process died must still arrive, under the same delivery id.
 *
 * Needs `npm run build`. Takes about half a minute (checkpoints are taken every ~5 s of running).
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEV_KEY, readSse, RecordingClient, sleep, startServer, type StatusRecord, type TestServer, waitFor } from './helpers/server.js';
import { openStoreOf } from './helpers/stores.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function firstPrimes(n: number): number[] {
  const ps: number[] = [];
  for (let c = 2; ps.length < n; c++) if (ps.every((p) => c % p !== 0)) ps.push(c);
  return ps;
}

const INTERVAL = 50;
/** Runs far longer than this file: k = 64, snapshots every 50 steps, never plateaus. */
const LONG_SESSION = {
  primes: firstPrimes(64),
  schedule: { steps: 2_000_000, plateauT: 1_000_000_000 },
  observables: { snapshotsInterval: INTERVAL, metricsInterval: 500 },
  seed: 2024,
};
/** Converges at step 131 (the HQE example). */
const CONVERGING = {
  primes: [2, 3, 5, 7], schedule: { steps: 256, dt: 0.1 }, entropy: { base: 'shannon', lambda: 0.03 },
  resonanceTarget: { value: 0.8, operator: 'R' }, phaseSeeding: { golden: true, silver: true }, seed: 42,
};

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
  at: number;
}

let dataDir: string;
let server: TestServer | null = null;
let api: RecordingClient;
const log: StatusRecord[] = [];
const receiver: { server: Server | null; url: string; status: number; received: Received[] } = { server: null, url: '', status: 503, received: [] };
const secret = 'restart-webhook-secret-' + randomUUID();

async function start(): Promise<void> {
  // Info logs: the graceful stop's last line is checked.
  server = await startServer({ dataDir, env: { RESONANCE_RATE_LIMIT: '1000000', RESONANCE_LOG_LEVEL: 'info' } });
  api = new RecordingClient(server.url, { 'X-Api-Key': DEV_KEY }, log);
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'resonance-restart-'));
  receiver.server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      receiver.received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), status: receiver.status, at: Date.now() });
      res.statusCode = receiver.status;
      res.end();
    });
  });
  await new Promise<void>((resolve) => receiver.server!.listen(0, '127.0.0.1', () => resolve()));
  receiver.url = `http://127.0.0.1:${(receiver.server.address() as AddressInfo).port}/hook`;
  await start();
});

afterAll(async () => {
  await server?.stop();
  if (receiver.server) {
    receiver.server.closeAllConnections();
    await new Promise<void>((resolve) => receiver.server!.close(() => resolve()));
  }
  await rm(dataDir, { recursive: true, force: true });
});

afterEach(() => {
  expect(log.filter((r) => r.status >= 500), `5xx responses (server output:\n${server?.logs().slice(-4000)})`).toEqual([]);
  expect(server?.logs() ?? '').not.toMatch(/unhandled error/);
});

// ---- helpers ----

async function getSession(id: string): Promise<Json> {
  const r = await api.request('GET', `/v1/hqe/sessions/${id}`);
  expect(r.status, r.text).toBe(200);
  return r.json as Json;
}

async function allSnapshots(id: string): Promise<Json[]> {
  const items: Json[] = [];
  let cursor: string | null = null;
  for (;;) {
    const r = await api.request('GET', `/v1/hqe/sessions/${id}/snapshots?page_size=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    expect(r.status, r.text).toBe(200);
    const page = r.json as { items: Json[]; next_cursor: string | null };
    items.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) return items;
  }
}

/** Snapshots are 0, 50, 100, ...: consecutive multiples of the interval, no gap, no duplicate. */
function expectConsecutive(snaps: Json[]): void {
  const steps = snaps.map((s) => s.step as number);
  const bad = steps.findIndex((s, i) => s !== i * INTERVAL);
  expect(bad, `snapshot steps break at index ${bad}: ${JSON.stringify(steps.slice(Math.max(0, bad - 3), bad + 3))}`).toBe(-1);
}

/** The stored checkpoint's step, read from the server's store (opened beside it). */
async function checkpointStep(id: string): Promise<number | null> {
  const store = await openStoreOf(dataDir);
  try {
    const row = await store.sessions.get(id);
    return row?.checkpoint ? ((JSON.parse(row.checkpoint) as { step: number }).step) : null;
  } finally {
    await store.close();
  }
}

function signatureValid(timestamp: string, rawBody: string, header: string): boolean {
  const expected = createHmac('sha256', secret).update(`${timestamp}.${rawBody}`).digest();
  const m = /^sha256=([0-9a-f]{64})$/.exec(header.trim());
  return m !== null && timingSafeEqual(Buffer.from(m[1]!, 'hex'), expected);
}

// ---- the scenario (tests run in order and share state) ----

describe('restart', () => {
  let longId: string;
  /** A second long session, stepped through the API right after the crash restart. */
  let steppedId: string;
  let steppedBefore: number;
  let convergedId: string;
  let deliveryId: string;
  let justAfterRestart: { getStep: number; stepAnswer: number };
  let beforeKill: { step: number; snapshots: Json[]; checkpoint: number; lastSnapshotEventId: string; lastSnapshotStep: number };

  it('queues a webhook delivery the receiver refuses (503)', async () => {
    const w = await api.request('POST', '/v1/hqe/webhooks', { body: { url: receiver.url, secret, events: ['hqe.converged'] } });
    expect(w.status, w.text).toBe(201);
    const s = await api.request('POST', '/v1/hqe/sessions', { body: CONVERGING });
    expect(s.status, s.text).toBe(201);
    convergedId = (s.json as Json).id as string;
    const first = await waitFor('the first delivery attempt', async () => receiver.received[0], 10_000);
    expect(first.status).toBe(503);
    expect(first.headers['x-rs-event']).toBe('hqe.converged');
    expect(first.headers['x-rs-attempt']).toBe('1');
    expect(JSON.parse(first.body).data.sessionId).toBe(convergedId);
    deliveryId = first.headers['x-rs-delivery'] as string;
    expect(deliveryId).toMatch(/\S{8,}/);
  });

  let completedId: string;

  it('has a completed session that was stepped past its schedule', async () => {
    const s = await api.request('POST', '/v1/hqe/sessions', { body: { primes: [2, 3, 5, 7, 11], schedule: { steps: 40 }, observables: { snapshotsInterval: 10 }, seed: 3 } });
    expect(s.status, s.text).toBe(201);
    completedId = (s.json as Json).id as string;
    await waitFor('the short session to complete', async () => ((await getSession(completedId)).status === 'completed' ? true : undefined));
    const r = await api.request('POST', `/v1/hqe/sessions/${completedId}/step`, { body: { steps: 7 } });
    expect(r.status, r.text).toBe(200);
    expect((r.json as Json).step).toBe(47);
  });

  it('runs a long session until it has a checkpoint', async () => {
    const s = await api.request('POST', '/v1/hqe/sessions', { body: LONG_SESSION });
    expect(s.status, s.text).toBe(201);
    longId = (s.json as Json).id as string;
    const t = await api.request('POST', '/v1/hqe/sessions', { body: { ...LONG_SESSION, seed: 7 } });
    expect(t.status, t.text).toBe(201);
    steppedId = (t.json as Json).id as string;
    const checkpoint = await waitFor('checkpoints of the long sessions', async () => {
      const step = await checkpointStep(longId);
      const other = await checkpointStep(steppedId);
      return step !== null && step > 0 && other !== null && other > 0 ? step : undefined;
    }, 15_000, 200);
    // Let it run past the checkpoint so the restart has states to replay.
    await sleep(700);
    const snapshots = await allSnapshots(longId);
    // Stream it up to the last stored snapshot: the SSE id of the last snapshot seen before the crash.
    const read = await readSse(`${server!.url}/v1/hqe/sessions/${longId}/stream`, { 'X-Api-Key': DEV_KEY }, {
      stopWhen: (events) => events.filter((e) => e.event === 'snapshot').length >= snapshots.length,
    });
    api.record('GET', `/v1/hqe/sessions/${longId}/stream`, read.status);
    const lastSnap = read.events.filter((e) => e.event === 'snapshot')[snapshots.length - 1]!;
    expect(JSON.parse(lastSnap.data)).toEqual(snapshots[snapshots.length - 1]);
    const step = (await getSession(longId)).step as number;
    steppedBefore = (await getSession(steppedId)).step as number;
    expect(step).toBeGreaterThan(checkpoint);
    expectConsecutive(snapshots);
    expect(snapshots[snapshots.length - 1]!.step).toBeLessThanOrEqual(step);
    beforeKill = { step, snapshots, checkpoint, lastSnapshotEventId: lastSnap.id!, lastSnapshotStep: JSON.parse(lastSnap.data).step as number };
  });

  it('after SIGKILL and a restart on the same data directory, the session resumes with no gap and no duplicate', async () => {
    const exit = await server!.kill('SIGKILL');
    expect(exit.signal).toBe('SIGKILL');
    receiver.status = 200;
    const killedAt = Date.now();
    await start();

    const resumed = await getSession(longId);
    const stepped = await api.request('POST', `/v1/hqe/sessions/${steppedId}/step`, { body: { steps: 10 } });
    expect(resumed.status).toBe('running');
    expect(stepped.status, stepped.text).toBe(200);
    justAfterRestart = { getStep: resumed.step as number, stepAnswer: (stepped.json as Json).step as number };
    // It resumes from the checkpoint (or later), never from scratch.
    expect(resumed.step).toBeGreaterThanOrEqual(beforeKill.checkpoint);
    const advanced = await waitFor('the session to pass its pre-kill step', async () => {
      const s = await getSession(longId);
      return (s.step as number) > beforeKill.step + 10 * INTERVAL ? s : undefined;
    }, 15_000, 100);
    expect(advanced.status).toBe('running');

    const after = await allSnapshots(longId);
    expectConsecutive(after);
    expect(after.length).toBeGreaterThan(beforeKill.snapshots.length);
    // Every snapshot recorded before the crash is still there, identical.
    expect(after.slice(0, beforeKill.snapshots.length)).toEqual(beforeKill.snapshots);

    // The whole event stream is free of repeats too: metrics every 500 steps, snapshots every 50, ids increasing.
    const full = await readSse(`${server!.url}/v1/hqe/sessions/${longId}/stream`, { 'X-Api-Key': DEV_KEY }, {
      stopWhen: (events) => events.filter((e) => e.event === 'snapshot').length >= after.length,
      timeoutMs: 20_000,
    });
    api.record('GET', `/v1/hqe/sessions/${longId}/stream`, full.status);
    const fullIds = full.events.map((e) => Number(e.id));
    expect(fullIds.every((id, i) => i === 0 || id > fullIds[i - 1]!)).toBe(true);
    const metricSteps = full.events.filter((e) => e.event === 'metrics').map((e) => (JSON.parse(e.data) as Json).step as number);
    expect(metricSteps.findIndex((step, i) => step !== i * 500)).toBe(-1);
    expect(full.events.filter((e) => e.event === 'snapshot').slice(0, after.length).map((e) => JSON.parse(e.data) as Json)).toEqual(after);
    expect(full.events.filter((e) => e.event === 'status').map((e) => (JSON.parse(e.data) as Json).status)).toEqual(['running']);

    // SSE ids survive the restart: resuming after the last snapshot event seen continues at the next snapshot.
    const resumedStream = await readSse(`${server!.url}/v1/hqe/sessions/${longId}/stream`, { 'X-Api-Key': DEV_KEY, 'Last-Event-ID': beforeKill.lastSnapshotEventId }, {
      stopWhen: (events) => events.filter((e) => e.event === 'snapshot').length >= 3,
    });
    api.record('GET', `/v1/hqe/sessions/${longId}/stream`, resumedStream.status);
    expect(resumedStream.status).toBe(200);
    const nextSnaps = resumedStream.events.filter((e) => e.event === 'snapshot').slice(0, 3).map((e) => JSON.parse(e.data) as Json);
    expect(nextSnaps.map((s) => s.step)).toEqual([1, 2, 3].map((i) => beforeKill.lastSnapshotStep + i * INTERVAL));
    const ids = resumedStream.events.map((e) => Number(e.id));
    expect(ids[0]).toBeGreaterThan(Number(beforeKill.lastSnapshotEventId));
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    expect(Date.now() - killedAt).toBeLessThan(30_000);
  });

  it('does not look younger after the crash: GET step never goes backwards, POST step counts from the step clients saw', async () => {
    // While the restarted engine re-runs the states between the checkpoint and the crash, the session must
    // not report an earlier step than it had reached, and "N steps beyond where it is" means beyond that step.
    expect.soft(justAfterRestart.getStep, `GET step just after the restart (${beforeKill.step} before the kill, checkpoint ${beforeKill.checkpoint})`)
      .toBeGreaterThanOrEqual(beforeKill.step);
    expect.soft(justAfterRestart.stepAnswer, `POST step {steps: 10} just after the restart; the session was at ${steppedBefore} before the kill`)
      .toBeGreaterThanOrEqual(steppedBefore + 10);
    // The stepped session's snapshots stay in step order, without repeats.
    const steppedSteps = (await allSnapshots(steppedId)).map((x) => x.step as number);
    const disorder = steppedSteps.findIndex((x, i) => i > 0 && x <= steppedSteps[i - 1]!);
    expect(disorder, `snapshot steps out of order at index ${disorder}: ${JSON.stringify(steppedSteps.slice(Math.max(0, disorder - 3), disorder + 3))}`).toBe(-1);
  });

  it('steps the completed session after the restart from where it ended', async () => {
    expect(await getSession(completedId)).toMatchObject({ status: 'completed', step: 47 });
    const r = await api.request('POST', `/v1/hqe/sessions/${completedId}/step`, { body: { steps: 5 } });
    expect(r.status, r.text).toBe(200);
    expect((r.json as Json).step).toBe(52);
    expect(await getSession(completedId)).toMatchObject({ status: 'completed', step: 52 });
    expect((await allSnapshots(completedId)).map((x) => x.step)).toEqual([0, 10, 20, 30, 40, 47, 50, 52]);
  });

  it('delivers the pending webhook after the restart, under the same delivery id', async () => {
    const delivered = await waitFor('the pending delivery to succeed', async () => receiver.received.find((r) => r.status === 200), 20_000, 100);
    const attempts = receiver.received.filter((r) => JSON.parse(r.body).data?.sessionId === convergedId);
    // One delivery (one id) for the one event: every attempt, failed or not, carries the same id.
    expect(new Set(attempts.map((a) => a.headers['x-rs-delivery']))).toEqual(new Set([deliveryId]));
    expect(new Set(attempts.map((a) => JSON.parse(a.body).id)).size).toBe(1);
    expect(delivered.headers['x-rs-delivery']).toBe(deliveryId);
    expect(Number(delivered.headers['x-rs-attempt'])).toBeGreaterThan(1);
    expect(attempts.map((a) => Number(a.headers['x-rs-attempt']))).toEqual(attempts.map((_, i) => i + 1));
    expect(signatureValid(delivered.headers['x-rs-timestamp'] as string, delivered.body, delivered.headers['x-rs-signature'] as string)).toBe(true);
    // The restart emitted no second event for the session that had already converged.
    await sleep(1200);
    expect(receiver.received.filter((r) => r.status === 200)).toHaveLength(1);
  });

  it('after a graceful SIGTERM stop and a restart, the session resumes from the checkpoint taken at shutdown', async () => {
    const before = await getSession(longId);
    const exit = await server!.kill('SIGTERM');
    expect(exit, `graceful stop\n${server!.logs().slice(-2000)}`).toEqual({ code: 0, signal: null });
    // The whole shutdown ran, to its last line (after the store is closed), not cut short by an early exit.
    expect(server!.logs()).toMatch(/"msg":"stopped"/);
    const atShutdown = await checkpointStep(longId);
    expect(atShutdown).not.toBeNull();
    // On failure, the log says whether the shutdown checkpoint was skipped (a lease lost to a stalled renewal).
    expect(atShutdown!, `checkpoint at shutdown\n${server!.logs().slice(-3000)}`).toBeGreaterThanOrEqual(before.step as number);
    const snapshotsAtShutdown = await (async () => {
      await start();
      return allSnapshots(longId);
    })();

    const resumed = await getSession(longId);
    expect(resumed.status).toBe('running');
    // Nothing is lost or replayed: it goes on from the state it stopped at.
    expect(resumed.step).toBeGreaterThanOrEqual(atShutdown!);
    const advanced = await waitFor('the session to advance after the graceful restart', async () => {
      const s = await getSession(longId);
      return (s.step as number) > atShutdown! + 10 * INTERVAL ? s : undefined;
    }, 15_000, 100);
    expect(advanced.status).toBe('running');
    const after = await allSnapshots(longId);
    expectConsecutive(after);
    expect(after.slice(0, snapshotsAtShutdown.length)).toEqual(snapshotsAtShutdown);
    expect(after.slice(0, beforeKill.snapshots.length)).toEqual(beforeKill.snapshots);
  });

  it('closes the sessions and the server still answers', async () => {
    expect((await api.request('DELETE', `/v1/hqe/sessions/${longId}`)).status).toBe(204);
    expect((await api.request('DELETE', `/v1/hqe/sessions/${steppedId}`)).status).toBe(204);
    expect((await getSession(longId)).status).toBe('closed');
    expect((await api.request('GET', '/healthz')).status).toBe(200);
  });
});
