/**
 * The HQE HTTP API end to end: the built server (`resonance serve`) in a child process, real fetch, and every
 * response checked against the committed openapi.yaml by ContractClient (status, content type, JSON schema).
 * Paths the document does not describe (unknown routes, /openapi.yaml, /docs) and methods it does not list
 * go through `raw`, which still records the status for the no-500 check.
 *
 * Needs `npm run build` (the server is dist/src/cli/main.js) and python3 (the reference implementation).
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NormalizedConfig } from '../src/model/config.js';
import type { ContractResponse } from './helpers/contract-client.js';
import { runReference } from './helpers/reference.js';
import { TEST_STORE } from './helpers/stores.js';
import {
  cli, createKey, DEV_KEY, readSse, RecordingClient, type SseEvent, SseParser, sleep, startServer, type StatusRecord, type TestServer, waitFor,
} from './helpers/server.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const OPENAPI_PATH = fileURLToPath(new URL('../openapi.yaml', import.meta.url));

// ---- fixtures ----

const SEED_EXAMPLE = {
  primes: [2, 3, 5, 7],
  schedule: { steps: 256, dt: 0.1 },
  entropy: { base: 'shannon', lambda: 0.03 },
  resonanceTarget: { value: 0.8, operator: 'R' },
  phaseSeeding: { golden: true, silver: true },
};

function firstPrimes(n: number): number[] {
  const ps: number[] = [];
  for (let c = 2; ps.length < n; c++) if (ps.every((p) => c % p !== 0)) ps.push(c);
  return ps;
}
const P64 = firstPrimes(64);

/** A session that never ends by itself within a test (k = 64, ~20k steps/s on the CPU engine). */
const LONG_SESSION = {
  primes: P64,
  schedule: { steps: 100_000_000, plateauT: 1_000_000_000 },
  observables: { metricsInterval: 200, snapshotsInterval: 400 },
  seed: 11,
};
/** Ends `plateau` within a few steps: nothing ever improves Ebest by plateauEps = 1. */
const PLATEAU_SESSION = { primes: [2, 3, 5, 7], schedule: { steps: 1000, plateauT: 5, plateauEps: 1 }, seed: 5 };
/** A /v1/hqe/run that takes a second or two (for concurrent Idempotency-Key requests). */
const SLOW_RUN = { primes: P64, schedule: { steps: 40_000, plateauT: 1_000_000_000 }, observables: { metricsInterval: 1_000_000, snapshotsInterval: 1_000_000 }, seed: 9 };

const METRIC_KEYS = ['resonanceStrength', 'coherence', 'entropy', 'locality', 'dominance'] as const;

let srv: TestServer;
const log: StatusRecord[] = [];
let api: RecordingClient;
let anon: RecordingClient;
let ajv: Ajv2020;
const extraServers: TestServer[] = [];

beforeAll(async () => {
  // A generous budget: polling must never trip the limiter here; limits are tested on a server of their own.
  srv = await startServer({ env: { RESONANCE_RATE_LIMIT: '1000000' } });
  api = new RecordingClient(srv.url, { 'X-Api-Key': DEV_KEY }, log);
  anon = new RecordingClient(srv.url, {}, log);
  ajv = new Ajv2020({ strict: false, allErrors: true });
  (addFormatsModule as unknown as (a: Ajv2020) => void)(ajv);
  ajv.addSchema(api.spec, 'openapi');
});

afterAll(async () => {
  await Promise.all([srv?.stop(), ...extraServers.map((s) => s.stop())]);
});

// The shared robustness check: no response of any test was a 5xx, and the server logged no unhandled error.
afterEach((ctx) => {
  const errors = log.filter((r) => r.status >= 500 && !(r.path === '/readyz' && r.status === 503));
  expect(errors, `5xx responses (server output:\n${srv?.logs().slice(-4000)})`).toEqual([]);
  for (const s of [srv, ...extraServers]) expect(s.logs(), `${ctx.task.name}: unhandled error in the server log`).not.toMatch(/unhandled error/);
});

// ---- helpers ----

function expectProblem(r: ContractResponse, status: number, code: string): Json {
  expect(r.status, r.text.slice(0, 500)).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const body = r.json as Json;
  expect(body).toMatchObject({ status, code, type: `/problems/${code}` });
  expect(typeof body.title).toBe('string');
  return body;
}

/** Validates `value` against a schema of openapi.yaml by JSON pointer (for bodies ContractClient cannot see). */
function expectSchema(pointer: string, value: unknown): void {
  const validate = ajv.getSchema(`openapi#${pointer}`) ?? ajv.compile({ $ref: `openapi#${pointer}` });
  expect(validate(value), `${pointer}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value).slice(0, 400)}`).toBe(true);
}

const pointers = (problem: Json): string[] => (problem.errors as Array<{ pointer: string }>).map((e) => e.pointer);

async function createSession(config: unknown, client = api): Promise<Json> {
  const r = await client.request('POST', '/v1/hqe/sessions', { body: config });
  expect(r.status, r.text).toBe(201);
  return r.json as Json;
}

async function getSession(id: string, client = api): Promise<Json> {
  const r = await client.request('GET', `/v1/hqe/sessions/${id}`);
  expect(r.status, r.text).toBe(200);
  return r.json as Json;
}

/** Polls the session until `pred` holds. */
function waitSession(id: string, what: string, pred: (s: Json) => boolean, timeoutMs = 15_000): Promise<Json> {
  return waitFor(what, async () => {
    const s = await getSession(id);
    return pred(s) ? s : undefined;
  }, timeoutMs);
}

const waitEnded = (id: string, statuses: string[]) => waitSession(id, `session ${id} to end ${statuses.join('|')}`, (s) => statuses.includes(s.status as string));

async function allSnapshots(id: string, pageSize = 500): Promise<Json[]> {
  const items: Json[] = [];
  let cursor: string | null = null;
  for (let pages = 0; ; pages++) {
    if (pages > 10_000) throw new Error('snapshot pagination does not end');
    const q: string = `?page_size=${pageSize}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const r = await api.request('GET', `/v1/hqe/sessions/${id}/snapshots${q}`);
    expect(r.status, r.text).toBe(200);
    const page = r.json as { items: Json[]; next_cursor: string | null };
    expect(page.items.length).toBeLessThanOrEqual(pageSize);
    items.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) return items;
  }
}

function expectIncreasingIds(events: SseEvent[]): void {
  const ids = events.map((e) => Number(e.id));
  for (const id of ids) expect(Number.isInteger(id) && id > 0, `SSE id ${String(id)}`).toBe(true);
  for (let i = 1; i < ids.length; i++) expect(ids[i]!, `SSE ids ${ids.slice(Math.max(0, i - 2), i + 1).join(',')}`).toBeGreaterThan(ids[i - 1]!);
}

const streamUrl = (id: string): string => `${srv.url}/v1/hqe/sessions/${id}/stream`;

/** Reads a session's stream with fetch; the response head is checked against the contract. */
async function stream(id: string, opts: Parameters<typeof readSse>[2] & { lastEventId?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { 'X-Api-Key': DEV_KEY, ...opts.headers };
  if (opts.lastEventId !== undefined) headers['Last-Event-ID'] = opts.lastEventId;
  const read = await readSse(streamUrl(id), headers, opts);
  const body = read.contentType.startsWith('text/event-stream') ? undefined : JSON.parse(read.events[0]!.data);
  api.check('GET', `/v1/hqe/sessions/${id}/stream`, read.status, read.contentType, body);
  return read;
}

/** Checks the payload of every SSE event against the documented schemas. */
function checkSsePayloads(events: SseEvent[]): void {
  for (const e of events) {
    const data = JSON.parse(e.data) as Json;
    if (e.event === 'snapshot') expectSchema('/components/schemas/Snapshot', data);
    else if (e.event === 'metrics') {
      expect(Number.isInteger(data.step)).toBe(true);
      expectSchema('/components/schemas/Metrics', data.metrics);
    } else if (e.event === 'status') {
      expectSchema('/components/schemas/HQESessionStatus', data.status);
      expect(Number.isInteger(data.step)).toBe(true);
    } else if (e.event === 'event') {
      expect(['plateau', 'converged', 'failed', 'restart']).toContain(data.type);
    } else if (e.event === 'end') {
      expect(e, 'end is the last event, without an id').toBe(events[events.length - 1]);
      expect(e.id).toBeUndefined();
      expect(Object.keys(data)).toEqual(['status']);
      expectSchema('/components/schemas/HQESessionStatus', data.status);
    } else throw new Error(`unexpected SSE event type ${e.event}`);
  }
}

/** An independent check of X-RS-Signature: sha256=hex(HMAC-SHA256(secret, "<timestamp>.<raw body>")). */
function signatureValid(secret: string, timestamp: string, rawBody: string, header: string): boolean {
  const expected = createHmac('sha256', secret).update(`${timestamp}.${rawBody}`).digest();
  return header.split(',').some((part) => {
    const m = /^sha256=([0-9a-f]{64})$/.exec(part.trim());
    return m !== null && timingSafeEqual(Buffer.from(m[1]!, 'hex'), expected);
  });
}

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

/** A webhook receiver on 127.0.0.1 answering `status` (changeable) to every POST. */
async function receiver(): Promise<{ url: string; received: Received[]; setStatus(s: number): void; close(): Promise<void> }> {
  const received: Received[] = [];
  let status = 200;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() });
      res.statusCode = status;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    setStatus: (s) => {
      status = s;
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

// ---- tests ----

describe('POST /v1/hqe/run', () => {
  it("runs the HQE example; with a fixed seed its finalMetrics equal the independent reference to 1e-6", async () => {
    const config = { ...SEED_EXAMPLE, seed: 42 };
    const v = await api.request('POST', '/v1/hqe/validate', { body: config });
    expect(v.status, v.text).toBe(200);
    const normalized = (v.json as Json).normalized as NormalizedConfig;
    expect(normalized.seed).toBe(42);
    const ref = runReference(normalized);

    const r = await api.request('POST', '/v1/hqe/run', { body: config });
    expect(r.status, r.text).toBe(200);
    const run = r.json as Json;
    expect(run.runId).toEqual(expect.any(String));
    expect(run).toMatchObject({ status: ref.status, steps: ref.step, seed: 42, backend: 'cpu', restarts: ref.restart });
    for (const key of METRIC_KEYS) {
      expect(Math.abs((run.finalMetrics[key] as number) - (ref.finalMetrics[key] as number)), key).toBeLessThanOrEqual(1e-6);
    }
    expect(run.finalMetrics.plateauDetected).toBe(ref.finalMetrics.plateauDetected);
    // Snapshots at 0, 32, 64, ... and the final state; the documented rate-limit headers.
    const steps = (run.snapshots as Json[]).map((s) => s.step as number);
    expect(steps[0]).toBe(0);
    expect(steps[steps.length - 1]).toBe(ref.step);
    for (const s of steps.slice(0, -1)) expect(s % 32).toBe(0);
    for (const h of ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset']) expect(r.headers.get(h)).toMatch(/^\d+$/);
  });

  it('draws and reports a seed when none is given, and that seed reproduces the run', async () => {
    const a = await api.request('POST', '/v1/hqe/run', { body: SEED_EXAMPLE });
    expect(a.status, a.text).toBe(200);
    const first = a.json as Json;
    const b = await api.request('POST', '/v1/hqe/run', { body: { ...SEED_EXAMPLE, seed: first.seed } });
    const second = b.json as Json;
    expect(second.runId).not.toBe(first.runId);
    expect(second.finalMetrics).toEqual(first.finalMetrics);
    expect(second.steps).toBe(first.steps);
  });

  it('refuses a run over the work limit with 400 run_too_large', async () => {
    const r = await api.request('POST', '/v1/hqe/run', { body: { primes: P64, schedule: { steps: 2_000_000 } } });
    const p = expectProblem(r, 400, 'run_too_large');
    expect(p.meta).toMatchObject({ work: 2_000_000 * 64 * 64, limit: 2 ** 32 });
  });
});

describe('POST /v1/hqe/validate', () => {
  it('accepts unsorted primes with a warning and sorts them, per-prime arrays with them', async () => {
    const r = await api.request('POST', '/v1/hqe/validate', { body: { primes: [7, 2, 5, 3], initialAmplitudes: [4, 1, 3, 2], seed: 1 } });
    expect(r.status, r.text).toBe(200);
    const body = r.json as Json;
    expect(body.ok).toBe(true);
    expect(body.warnings).toEqual([expect.stringMatching(/ascending|sorted/)]);
    expect(body.normalized.primes).toEqual([2, 3, 5, 7]);
    expect(body.normalized.initialAmplitudes).toEqual([1, 2, 3, 4]);
    // Defaults are filled in.
    expect(body.normalized.schedule).toMatchObject({ steps: 256, dt: 0.1 });
    const again = await api.request('POST', '/v1/hqe/validate', { body: body.normalized });
    expect((again.json as Json).warnings).toEqual([]);
    expect((again.json as Json).normalized).toEqual(body.normalized);
  });

  it('lists every composite, duplicate and mistyped field by pointer in one 400', async () => {
    const r = await api.request('POST', '/v1/hqe/validate', {
      body: { primes: [2, 4, 3, 3, 9, 1.5, 'x'], schedule: { steps: 'many', dt: -1 }, mixer: { type: 'bogus' }, seed: -1 },
    });
    const p = expectProblem(r, 400, 'validation_failed');
    const ptrs = pointers(p);
    for (const ptr of ['/primes/1', '/primes/3', '/primes/4', '/primes/5', '/primes/6', '/schedule/steps', '/schedule/dt', '/mixer/type', '/seed']) {
      expect(ptrs, ptr).toContain(ptr);
    }
    const errors = p.errors as Array<{ pointer: string; code: string; values?: number[] }>;
    expect(errors.find((e) => e.pointer === '/primes/1')?.code).toBe('not_prime');
    expect(errors.find((e) => e.pointer === '/primes/3')?.code).toBe('duplicate_prime');
    expect(errors.find((e) => e.pointer === '/primes' && e.code === 'not_prime')?.values).toEqual([4, 9]);
    expect(errors.find((e) => e.pointer === '/primes' && e.code === 'duplicate_prime')?.values).toEqual([3]);
  });

  it('reports a missing or mistyped primes field', async () => {
    for (const body of [{}, { primes: '2,3' }, { primes: [] }, []]) {
      const r = await api.request('POST', '/v1/hqe/validate', { body });
      expect(pointers(expectProblem(r, 400, 'validation_failed')), JSON.stringify(body)).toContain(body instanceof Array ? '' : '/primes');
    }
  });

  it('reports each unknown field at its own pointer', async () => {
    const r = await api.request('POST', '/v1/hqe/validate', { body: { primes: [2, 3], bogus: 1, observables: { foo: true, bar: 2 } } });
    const p = expectProblem(r, 400, 'validation_failed');
    const unknown = (p.errors as Array<{ pointer: string; code: string }>).filter((e) => e.code === 'unknown_field').map((e) => e.pointer).sort();
    // RFC 6901 pointers to the fields themselves, as POST /v1/hqe/webhooks reports them.
    expect(unknown).toEqual(['/bogus', '/observables/bar', '/observables/foo']);
  });
});

describe('sessions', () => {
  it('creates a session: 201 with Location, readable at that location', async () => {
    const r = await api.request('POST', '/v1/hqe/sessions', { body: { ...SEED_EXAMPLE, seed: 42 } });
    expect(r.status, r.text).toBe(201);
    const created = r.json as Json;
    expect(r.headers.get('location')).toBe(`/v1/hqe/sessions/${created.id}`);
    expect(created).toMatchObject({ seed: 42, config: { primes: [2, 3, 5, 7], seed: 42 } });
    expect(['initializing', 'running']).toContain(created.status);
    const got = await api.request('GET', r.headers.get('location')!);
    expect(got.status).toBe(200);
    expect((got.json as Json).id).toBe(created.id);
    // The seed example converges at the reference's step.
    const ended = await waitEnded(created.id, ['converged']);
    const ref = runReference(created.config as NormalizedConfig);
    expect(ended.step).toBe(ref.step);
    for (const key of METRIC_KEYS) expect(Math.abs(ended.metrics[key] - (ref.finalMetrics[key] as number)), key).toBeLessThanOrEqual(1e-6);
  });

  it('404s an unknown session id on every session route', async () => {
    const id = randomUUID();
    expectProblem(await api.request('GET', `/v1/hqe/sessions/${id}`), 404, 'not_found');
    expectProblem(await api.request('DELETE', `/v1/hqe/sessions/${id}`), 404, 'not_found');
    expectProblem(await api.request('POST', `/v1/hqe/sessions/${id}/step`, { body: { steps: 1 } }), 404, 'not_found');
    expectProblem(await api.request('GET', `/v1/hqe/sessions/${id}/snapshots`), 404, 'not_found');
    expectProblem(await api.request('GET', `/v1/hqe/sessions/${id}/stream`), 404, 'not_found');
  });

  it('steps a completed session to exactly step + N and continues it', async () => {
    const s = await createSession({ primes: [2, 3, 5, 7, 11], schedule: { steps: 40 }, observables: { snapshotsInterval: 10 }, seed: 3 });
    const done = await waitEnded(s.id, ['completed']);
    expect(done.step).toBe(40);

    let r = await api.request('POST', `/v1/hqe/sessions/${s.id}/step`, { body: { steps: 7 } });
    expect(r.status, r.text).toBe(200);
    expect((r.json as Json).step).toBe(47);
    expect((r.json as Json).amplitudes).toHaveLength(5);
    let now = await getSession(s.id);
    expect(now).toMatchObject({ step: 47, status: 'completed' });

    // The default is 32 steps.
    r = await api.request('POST', `/v1/hqe/sessions/${s.id}/step`, { body: {} });
    expect(r.status, r.text).toBe(200);
    expect((r.json as Json).step).toBe(79);
    now = await getSession(s.id);
    expect(now).toMatchObject({ step: 79, status: 'completed' });

    // Snapshots: every 10 steps, plus the states the steps stopped at.
    const steps = (await allSnapshots(s.id)).map((x) => x.step as number);
    expect(steps).toEqual([0, 10, 20, 30, 40, 47, 50, 60, 70, 79]);
  });

  it('serialises concurrent steps of a completed session: each snapshot is at its own step + N', async () => {
    const s = await createSession({ primes: [2, 3, 5, 7, 11], schedule: { steps: 40 }, observables: { snapshotsInterval: 1000 }, seed: 3 });
    await waitEnded(s.id, ['completed']);
    const [a, b] = await Promise.all([5, 9].map((steps) => api.request('POST', `/v1/hqe/sessions/${s.id}/step`, { body: { steps } })));
    const got = [(a!.json as Json).step as number, (b!.json as Json).step as number];
    // Either order is fine; both must hold for one of them.
    expect([[45, 54], [54, 49]]).toContainEqual(got);
    expect(await getSession(s.id)).toMatchObject({ status: 'completed', step: 54 });
    const steps = (await allSnapshots(s.id)).map((x) => x.step as number);
    expect(steps).toEqual([0, 40, Math.min(...got), 54]);
  });

  it('steps a running session: the answer is the snapshot at the step it asked for', async () => {
    // Snapshots every 50 steps: a running session passes several of them in one engine advance.
    const s = await createSession({ ...LONG_SESSION, observables: { metricsInterval: 1000, snapshotsInterval: 50 } });
    try {
      await waitSession(s.id, 'some steps', (x) => (x.step as number) > 0);
      const before = (await getSession(s.id)).step as number;
      const r = await api.request('POST', `/v1/hqe/sessions/${s.id}/step`, { body: { steps: 7 } });
      expect(r.status, r.text).toBe(200);
      const answered = (r.json as Json).step as number;
      expect(answered).toBeGreaterThanOrEqual(before + 7);
      // The requested state (current + 7) is recorded as a snapshot, off the regular grid unless it falls on
      // it; that is the answer.
      await api.request('DELETE', `/v1/hqe/sessions/${s.id}`);
      const snapshots = await allSnapshots(s.id);
      const extra = snapshots.filter((x) => (x.step as number) % 50 !== 0);
      if (answered % 50 === 0) {
        expect(extra).toHaveLength(0);
        expect(r.json).toEqual(snapshots.find((x) => x.step === answered));
      } else {
        expect(extra.map((x) => x.step)).toHaveLength(1);
        expect(answered, `answered a snapshot at ${answered}; the requested one is at ${extra[0]!.step as number}`).toBe(extra[0]!.step);
        expect(r.json).toEqual(extra[0]);
      }
    } finally {
      await api.request('DELETE', `/v1/hqe/sessions/${s.id}`);
    }
  });

  it('answers 409 session_ended to a step on a converged or plateau session', async () => {
    const converged = await createSession({ ...SEED_EXAMPLE, seed: 42 });
    const plateau = await createSession(PLATEAU_SESSION);
    await waitEnded(converged.id, ['converged']);
    await waitEnded(plateau.id, ['plateau']);
    for (const [id, status] of [[converged.id, 'converged'], [plateau.id, 'plateau']] as const) {
      const r = await api.request('POST', `/v1/hqe/sessions/${id}/step`, { body: { steps: 5 } });
      expect(expectProblem(r, 409, 'session_ended').meta).toEqual({ status });
      expect((await getSession(id)).status).toBe(status);
    }
  });

  it('validates the step body', async () => {
    const s = await createSession({ primes: [2, 3], schedule: { steps: 5 }, seed: 1 });
    await waitEnded(s.id, ['completed']);
    for (const [body, ptr] of [[{ steps: 0 }, '/steps'], [{ steps: 'x' }, '/steps'], [{ steps: 1.5 }, '/steps'], [{ steps: 2_000_000 }, '/steps']] as const) {
      const r = await api.request('POST', `/v1/hqe/sessions/${s.id}/step`, { body });
      expect(pointers(expectProblem(r, 400, 'validation_failed')), JSON.stringify(body)).toContain(ptr);
    }
    const r = await api.request('POST', `/v1/hqe/sessions/${s.id}/step`, { body: { steps: 1, extra: true } });
    expectProblem(r, 400, 'validation_failed');
    expect((await getSession(s.id)).step).toBe(5);
  });

  describe('snapshots', () => {
    let id: string;
    const expected = Array.from({ length: 20 }, (_, i) => i * 5); // 0..95

    beforeAll(async () => {
      id = (await createSession({ primes: [2, 3, 5, 7], schedule: { steps: 95 }, observables: { snapshotsInterval: 5, recordPhases: true }, seed: 8 })).id;
      await waitEnded(id, ['completed']);
    });

    it('returns every snapshot oldest first in one page of up to 500', async () => {
      const r = await api.request('GET', `/v1/hqe/sessions/${id}/snapshots?page_size=500`);
      expect(r.status, r.text).toBe(200);
      const page = r.json as { items: Json[]; next_cursor: string | null };
      expect(page.items.map((s) => s.step)).toEqual(expected);
      expect(page.next_cursor).toBeNull();
      for (const s of page.items) {
        expect(s.amplitudes).toHaveLength(4);
        expect(s.phases).toHaveLength(4);
      }
      // The default page size is 100.
      const d = await api.request('GET', `/v1/hqe/sessions/${id}/snapshots`);
      expect((d.json as Json).items).toHaveLength(20);
    });

    it('walks pages of every size with the cursor: all snapshots, in order, no duplicates', async () => {
      const full = ((await api.request('GET', `/v1/hqe/sessions/${id}/snapshots?page_size=500`)).json as Json).items as Json[];
      for (const size of [1, 3, 7, 19, 20]) {
        const walked = await allSnapshots(id, size);
        expect(walked.map((s) => s.step), `page_size ${size}`).toEqual(expected);
        expect(walked).toEqual(full);
      }
      // A page that ends exactly at the last snapshot: its next_cursor leads to an empty last page or none.
      const first = await api.request('GET', `/v1/hqe/sessions/${id}/snapshots?page_size=10`);
      const next = (first.json as Json).next_cursor as string;
      const second = await api.request('GET', `/v1/hqe/sessions/${id}/snapshots?page_size=10&cursor=${encodeURIComponent(next)}`);
      expect(((second.json as Json).items as Json[]).map((s) => s.step)).toEqual(expected.slice(10));
    });

    it('answers 400 to page_size outside 1..500 and to a cursor it did not issue', async () => {
      for (const size of ['0', '501', '-1', 'abc', '1.5']) {
        const r = await api.request('GET', `/v1/hqe/sessions/${id}/snapshots?page_size=${size}`);
        expect(pointers(expectProblem(r, 400, 'validation_failed')), `page_size=${size}`).toContain('/page_size');
      }
      const forged = Buffer.from(JSON.stringify({ seq: -5 })).toString('base64url');
      for (const cursor of ['garbage', '!!!', forged, Buffer.from('[1,2]').toString('base64url')]) {
        const r = await api.request('GET', `/v1/hqe/sessions/${id}/snapshots?cursor=${encodeURIComponent(cursor)}`);
        expect(pointers(expectProblem(r, 400, 'validation_failed')), `cursor=${cursor}`).toContain('/cursor');
      }
    });
  });

  it('DELETE closes a session: 204, then GET shows closed and its data stays readable', async () => {
    const s = await createSession(LONG_SESSION);
    await waitSession(s.id, 'some steps', (x) => (x.step as number) > 0);
    const r = await api.request('DELETE', `/v1/hqe/sessions/${s.id}`);
    expect(r.status).toBe(204);
    expect(r.text).toBe('');
    const closed = await getSession(s.id);
    expect(closed.status).toBe('closed');
    await sleep(300);
    expect((await getSession(s.id)).step).toBe(closed.step);
    expect((await allSnapshots(s.id)).length).toBeGreaterThan(0);
    expectProblem(await api.request('POST', `/v1/hqe/sessions/${s.id}/step`, { body: { steps: 1 } }), 409, 'session_ended');
  });

  it("hides a session from another org: 404 on every session route, and the session is untouched", async () => {
    const other = api.withHeaders({ 'X-Api-Key': await createKey(srv.dataDir, 'other') });
    const s = await createSession(LONG_SESSION);
    try {
      const id = s.id as string;
      for (const [method, path, body] of [
        ['GET', `/v1/hqe/sessions/${id}`, undefined],
        ['DELETE', `/v1/hqe/sessions/${id}`, undefined],
        ['POST', `/v1/hqe/sessions/${id}/step`, { steps: 1 }],
        ['GET', `/v1/hqe/sessions/${id}/snapshots`, undefined],
        ['GET', `/v1/hqe/sessions/${id}/stream`, undefined],
      ] as const) {
        const r = await other.request(method, path, body === undefined ? {} : { body });
        const p = expectProblem(r, 404, 'not_found');
        expect(p.detail).toBe(`session ${id} does not exist`);
      }
      expect((await getSession(id)).status).toBe('running');
      // And the other org's own sessions are its own.
      const mine = await createSession({ primes: [2, 3], schedule: { steps: 3 }, seed: 1 }, other);
      expect((await other.request('GET', `/v1/hqe/sessions/${mine.id}`)).status).toBe(200);
      expectProblem(await api.request('GET', `/v1/hqe/sessions/${mine.id}`), 404, 'not_found');
    } finally {
      await api.request('DELETE', `/v1/hqe/sessions/${s.id}`);
    }
  });
});

describe('SSE stream', () => {
  it('streams status, metrics and snapshot events with increasing ids; Last-Event-ID resumes with no gap and no repeat', async () => {
    const s = await createSession(LONG_SESSION);
    let contentType = '';
    // Live, from the start.
    const a = await stream(s.id, {
      onOpen: (res) => {
        contentType = res.headers.get('content-type') ?? '';
      },
      stopWhen: (ev) => ev.filter((e) => e.event === 'snapshot').length >= 3,
    });
    expect(a.status).toBe(200);
    expect(contentType).toMatch(/^text\/event-stream/);
    expect(a.events[0]!.event).toBe('status');
    expect(JSON.parse(a.events[0]!.data)).toMatchObject({ status: 'running', step: 0 });
    expect(new Set(a.events.map((e) => e.event))).toEqual(new Set(['status', 'metrics', 'snapshot']));
    expectIncreasingIds(a.events);
    checkSsePayloads(a.events);

    // Reconnect mid-stream while the session still runs: replay, then live, seamlessly.
    const cut = a.events[4]!;
    const b = await stream(s.id, { lastEventId: cut.id!, stopWhen: (ev) => ev.length >= 25 });
    expect(b.events.length).toBeGreaterThanOrEqual(25);
    expectIncreasingIds(b.events);
    expect(Number(b.events[0]!.id)).toBeGreaterThan(Number(cut.id));

    // Close the session: the stream then ends after the terminal status, with `end`.
    expect((await api.request('DELETE', `/v1/hqe/sessions/${s.id}`)).status).toBe(204);
    const whole = await stream(s.id);
    expect(whole.ended).toBe(true);
    checkSsePayloads(whole.events);
    const end = whole.events[whole.events.length - 1]!;
    expect(end).toEqual({ id: undefined, event: 'end', data: JSON.stringify({ status: 'closed' }) });
    const all = { ...whole, events: whole.events.slice(0, -1) };
    expectIncreasingIds(all.events);
    const last = all.events[all.events.length - 1]!;
    expect(last.event).toBe('status');
    expect(JSON.parse(last.data).status).toBe('closed');
    expect(all.events.filter((e) => e.event === 'status').map((e) => JSON.parse(e.data).status)).toEqual(['running', 'closed']);
    const key = (e: SseEvent) => `${e.id}|${e.event}|${e.data}`;
    expect(all.events.slice(0, a.events.length).map(key)).toEqual(a.events.map(key));
    const from = all.events.findIndex((e) => e.id === cut.id);
    expect(all.events.slice(from + 1, from + 1 + b.events.length).map(key)).toEqual(b.events.map(key));

    // Snapshot events are exactly the stored snapshots.
    const snaps = await allSnapshots(s.id);
    expect(all.events.filter((e) => e.event === 'snapshot').map((e) => JSON.parse(e.data))).toEqual(snaps);

    // Resuming after an ended stream: exactly the events after the id, then the end.
    for (const at of [0, 7, all.events.length - 2, all.events.length - 1]) {
      const r = await stream(s.id, { lastEventId: all.events[at]!.id! });
      expect(r.ended).toBe(true);
      expect(r.events.map(key), `Last-Event-ID at index ${at}`).toEqual([...all.events.slice(at + 1), end].map(key));
    }
  });

  it('ends the stream of a completed session, and goes on through a completion that a step extended', async () => {
    const s = await createSession({ primes: [2, 3, 5, 7, 11], schedule: { steps: 40 }, observables: { snapshotsInterval: 10 }, seed: 3 });
    await waitFor('completed', async () => ((await getSession(s.id)).status === 'completed' ? true : undefined));
    const first = await stream(s.id, { timeoutMs: 10_000 });
    expect(first.ended).toBe(true);
    checkSsePayloads(first.events);
    const statuses = (r: typeof first): unknown[] => r.events.filter((e) => e.event === 'status' || e.event === 'end').map((e) => [e.event, JSON.parse(e.data).status]);
    expect(statuses(first)).toEqual([['status', 'running'], ['status', 'completed'], ['end', 'completed']]);

    // Stepped on, it runs and completes again: a replay passes the first completion and ends after the second.
    expect((await api.request('POST', `/v1/hqe/sessions/${s.id}/step`, { body: { steps: 20 } })).status).toBe(200);
    await waitFor('completed again', async () => ((await getSession(s.id)).status === 'completed' ? true : undefined));
    const again = await stream(s.id, { timeoutMs: 10_000 });
    expect(again.ended).toBe(true);
    checkSsePayloads(again.events);
    expectIncreasingIds(again.events.slice(0, -1));
    expect(statuses(again)).toEqual([['status', 'running'], ['status', 'completed'], ['status', 'running'], ['status', 'completed'], ['end', 'completed']]);
    const snaps = again.events.filter((e) => e.event === 'snapshot').map((e) => JSON.parse(e.data).step as number);
    expect(snaps.at(-1)).toBe((await getSession(s.id)).step);
  });

  it('ends the stream of a converged session after its event and terminal status', async () => {
    const s = await createSession({ ...SEED_EXAMPLE, seed: 42, observables: { snapshotsInterval: 16, metricsInterval: 8 } });
    // Through ContractClient: the whole body (the stream ends by itself).
    const r = await api.request('GET', `/v1/hqe/sessions/${s.id}/stream`);
    expect(r.status).toBe(200);
    const events = new SseParser().push(r.text + '\n\n');
    checkSsePayloads(events);
    expectIncreasingIds(events.slice(0, -1));
    const tail = events.slice(-3).map((e) => [e.event, JSON.parse(e.data).type ?? JSON.parse(e.data).status]);
    expect(tail).toEqual([['event', 'converged'], ['status', 'converged'], ['end', 'converged']]);
    const session = await getSession(s.id);
    const snaps = events.filter((e) => e.event === 'snapshot').map((e) => JSON.parse(e.data).step as number);
    expect(snaps[snaps.length - 1]).toBe(session.step);
    const metricSteps = events.filter((e) => e.event === 'metrics').map((e) => JSON.parse(e.data).step as number);
    expect(metricSteps.every((x) => x % 8 === 0)).toBe(true);
  });

  it('answers 401 without credentials', async () => {
    const s = await createSession({ primes: [2, 3], schedule: { steps: 3 }, seed: 1 });
    expectProblem(await anon.request('GET', `/v1/hqe/sessions/${s.id}/stream`), 401, 'unauthorized');
  });
});

describe('error paths', () => {
  it('answers 400 malformed_json to a body that is not JSON', async () => {
    for (const path of ['/v1/hqe/validate', '/v1/hqe/run', '/v1/hqe/sessions']) {
      for (const raw of ['{"primes": [2, 3', '{primes: [2]}', '42', '"text"']) {
        const r = await api.request('POST', path, { rawBody: raw, headers: { 'content-type': 'application/json' } });
        expectProblem(r, 400, 'malformed_json');
      }
    }
  });

  it('answers 400 validation_failed to wrong types, with pointers', async () => {
    const r = await api.request('POST', '/v1/hqe/run', { body: { primes: [2, '3'], schedule: { dt: 'fast' }, phaseSeeding: { golden: 'yes' } } });
    expect(pointers(expectProblem(r, 400, 'validation_failed')).sort()).toEqual(['/phaseSeeding/golden', '/primes/1', '/schedule/dt']);
    const s = await api.request('POST', '/v1/hqe/sessions', { body: { primes: 7 } });
    expect(pointers(expectProblem(s, 400, 'validation_failed'))).toEqual(['/primes']);
  });

  it('answers 415 unsupported_media_type to a body that is not application/json', async () => {
    const body = JSON.stringify({ primes: [2, 3], seed: 1 });
    for (const [path, type, raw] of [
      ['/v1/hqe/validate', 'text/plain', body],
      ['/v1/hqe/run', 'text/plain', body],
      ['/v1/hqe/sessions', 'application/x-www-form-urlencoded', 'primes=2&primes=3'],
      ['/v1/hqe/validate', 'application/xml', '<primes><p>2</p></primes>'],
    ] as const) {
      const r = await api.request('POST', path, { rawBody: raw, headers: { 'content-type': type } });
      expectProblem(r, 415, 'unsupported_media_type');
    }
  });

  it('answers 415 to a non-JSON body sent chunked (no Content-Length) too', async () => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(JSON.stringify({ primes: [2, 3], seed: 1 })));
        controller.close();
      },
    });
    const r = await api.raw('POST', '/v1/hqe/validate', { body, headers: { 'content-type': 'text/plain' }, duplex: 'half' } as RequestInit);
    expectProblem(r, 415, 'unsupported_media_type');
  });

  it('answers 413 payload_too_large to a body over 1 MiB, as documented', async () => {
    const big = JSON.stringify({ primes: [2, 3], pad: 'x'.repeat((1 << 20) + 16) });
    for (const path of ['/v1/hqe/validate', '/v1/hqe/run', '/v1/hqe/sessions']) {
      const r = await api.raw('POST', path, { body: big, headers: { 'content-type': 'application/json' } });
      expectProblem(r, 413, 'payload_too_large');
      expectSchema('/components/schemas/Problem', r.json);
      // The contract: 413 must be a documented response of every operation with a request body.
      expect(() => api.check('POST', path, r.status, r.headers.get('content-type') ?? '', r.json)).not.toThrow();
    }
  });

  it('answers 401 to a missing, unknown or malformed credential on every /v1 route', async () => {
    const id = randomUUID();
    const routes: Array<[string, string, unknown]> = [
      ['POST', '/v1/hqe/validate', { primes: [2] }],
      ['POST', '/v1/hqe/run', { primes: [2] }],
      ['POST', '/v1/hqe/sessions', { primes: [2] }],
      ['GET', `/v1/hqe/sessions/${id}`, undefined],
      ['DELETE', `/v1/hqe/sessions/${id}`, undefined],
      ['POST', `/v1/hqe/sessions/${id}/step`, { steps: 1 }],
      ['GET', `/v1/hqe/sessions/${id}/snapshots`, undefined],
      ['GET', `/v1/hqe/sessions/${id}/stream`, undefined],
      ['POST', '/v1/hqe/webhooks', { url: 'http://127.0.0.1:9/x', events: ['hqe.plateau'] }],
      ['GET', '/v1/hqe/webhooks', undefined],
    ];
    for (const [method, path, body] of routes) {
      const opts = body === undefined ? {} : { body };
      const none = await anon.request(method, path, opts);
      expectProblem(none, 401, 'unauthorized');
      expect(none.headers.get('www-authenticate')).toContain('ApiKey');
      expectProblem(await anon.request(method, path, { ...opts, headers: { 'X-Api-Key': 'rsk_not-a-key' } }), 401, 'invalid_credentials');
      expectProblem(await anon.request(method, path, { ...opts, headers: { Authorization: 'Bearer not.a.jwt' } }), 401, 'invalid_credentials');
    }
  });

  it('answers 403 insufficient_scope to a read-only key on write routes, and serves its reads', async () => {
    const reader = api.withHeaders({ 'X-Api-Key': await createKey(srv.dataDir, 'dev', 'hqe.read') });
    const s = await createSession({ primes: [2, 3, 5], schedule: { steps: 10 }, seed: 2 });
    await waitEnded(s.id, ['completed']);
    for (const [method, path, body] of [
      ['POST', '/v1/hqe/run', SEED_EXAMPLE],
      ['POST', '/v1/hqe/sessions', SEED_EXAMPLE],
      ['POST', `/v1/hqe/sessions/${s.id}/step`, { steps: 1 }],
      ['DELETE', `/v1/hqe/sessions/${s.id}`, undefined],
      ['POST', '/v1/hqe/webhooks', { url: 'http://127.0.0.1:9/x', events: ['hqe.plateau'] }],
    ] as const) {
      const r = await reader.request(method, path, body === undefined ? {} : { body });
      expect(expectProblem(r, 403, 'insufficient_scope').detail, `${method} ${path}`).toContain('hqe.write');
    }
    expect((await reader.request('POST', '/v1/hqe/validate', { body: SEED_EXAMPLE })).status).toBe(200);
    expect((await reader.request('GET', `/v1/hqe/sessions/${s.id}`)).status).toBe(200);
    expect((await reader.request('GET', `/v1/hqe/sessions/${s.id}/snapshots`)).status).toBe(200);
    expect((await getSession(s.id))).toMatchObject({ status: 'completed', step: 10 });
  });

  it('answers 404 problem+json to an unknown route and 405 with Allow to a wrong method', async () => {
    for (const [client, path] of [[api, '/v1/hqe/nothing'], [api, '/v1/hqe/sessions/x/y/z'], [anon, '/nothing']] as const) {
      const r = await client.raw('GET', path);
      expectProblem(r, 404, 'not_found');
      expectSchema('/components/schemas/Problem', r.json);
    }
    for (const [method, path, allow] of [['PUT', '/v1/hqe/validate', 'POST'], ['GET', '/v1/hqe/run', 'POST'], ['PATCH', `/v1/hqe/sessions/${randomUUID()}`, 'GET']] as const) {
      const r = await api.raw(method, path);
      expectProblem(r, 405, 'method_not_allowed');
      expectSchema('/components/schemas/Problem', r.json);
      expect(r.headers.get('allow'), `${method} ${path}`).toContain(allow);
    }
  });

  describe('Idempotency-Key', () => {
    it('replays the first response with Idempotent-Replayed: true and the same runId', async () => {
      const key = randomUUID();
      const body = { ...SEED_EXAMPLE, seed: 7 };
      const first = await api.request('POST', '/v1/hqe/run', { body, headers: { 'Idempotency-Key': key } });
      expect(first.status, first.text).toBe(200);
      expect(first.headers.get('idempotent-replayed')).toBeNull();
      const again = await api.request('POST', '/v1/hqe/run', { body, headers: { 'Idempotency-Key': key } });
      expect(again.status).toBe(200);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect((again.json as Json).runId).toBe((first.json as Json).runId);
      expect(again.json).toEqual(first.json);
      // Without the key a run is a new run.
      const fresh = await api.request('POST', '/v1/hqe/run', { body });
      expect((fresh.json as Json).runId).not.toBe((first.json as Json).runId);
    });

    it('replays a session creation (201, same id and Location)', async () => {
      const key = randomUUID();
      const body = { primes: [2, 3], schedule: { steps: 3 }, seed: 4 };
      const first = await api.request('POST', '/v1/hqe/sessions', { body, headers: { 'Idempotency-Key': key } });
      const again = await api.request('POST', '/v1/hqe/sessions', { body, headers: { 'Idempotency-Key': key } });
      expect(first.status).toBe(201);
      expect(again.status).toBe(201);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect((again.json as Json).id).toBe((first.json as Json).id);
      expect(again.headers.get('location')).toBe(first.headers.get('location'));
    });

    it('answers 422 to the same key with another body', async () => {
      const key = randomUUID();
      const first = await api.request('POST', '/v1/hqe/run', { body: { ...SEED_EXAMPLE, seed: 1 }, headers: { 'Idempotency-Key': key } });
      expect(first.status).toBe(200);
      const other = await api.request('POST', '/v1/hqe/run', { body: { ...SEED_EXAMPLE, seed: 2 }, headers: { 'Idempotency-Key': key } });
      expectProblem(other, 422, 'idempotency_key_reused');
    });

    it('answers 409 to a concurrent duplicate while the first is running, then replays it', async () => {
      const key = randomUUID();
      const send = () => api.request('POST', '/v1/hqe/run', { body: SLOW_RUN, headers: { 'Idempotency-Key': key } });
      const started = performance.now();
      const [a, b] = await Promise.all([send(), sleep(100).then(send)]);
      const ms = performance.now() - started;
      const ok = [a, b].find((r) => r.status === 200);
      const conflict = [a, b].find((r) => r.status !== 200);
      expect(ok, `both answered ${a.status}/${b.status} in ${ms.toFixed(0)} ms`).toBeDefined();
      expectProblem(conflict!, 409, 'idempotency_in_flight');
      expect(Number(conflict!.headers.get('retry-after'))).toBeGreaterThan(0);
      const replay = await send();
      expect(replay.status).toBe(200);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect((replay.json as Json).runId).toBe((ok!.json as Json).runId);
    });

    it('keeps no record of a failed request: the key can be used again', async () => {
      const key = randomUUID();
      expectProblem(await api.request('POST', '/v1/hqe/run', { body: { primes: [4] }, headers: { 'Idempotency-Key': key } }), 400, 'validation_failed');
      const r = await api.request('POST', '/v1/hqe/run', { body: { ...SEED_EXAMPLE, seed: 3 }, headers: { 'Idempotency-Key': key } });
      expect(r.status).toBe(200);
      expect(r.headers.get('idempotent-replayed')).toBeNull();
    });

    it('refuses a key longer than 128 characters', async () => {
      const r = await api.request('POST', '/v1/hqe/run', { body: SEED_EXAMPLE, headers: { 'Idempotency-Key': 'k'.repeat(129) } });
      expectProblem(r, 400, 'validation_failed');
    });
  });

  describe('limits on a server of their own', () => {
    let small: TestServer;
    let client: RecordingClient;

    beforeAll(async () => {
      small = await startServer({ env: { RESONANCE_RATE_LIMIT: '4', RESONANCE_MAX_BODY_BYTES: '2048', RESONANCE_MAX_RUN_WORK: '100000' } });
      extraServers.push(small);
      client = new RecordingClient(small.url, {}, log);
    });

    it('answers 413 to a body over RESONANCE_MAX_BODY_BYTES and accepts one under it', async () => {
      const fresh = client.withHeaders({ 'X-Api-Key': await createKey(small.dataDir, 'dev') });
      const config = { primes: [2, 3], seed: 1, resonanceTarget: { value: 0.5, notes: '' } };
      const under = { ...config, resonanceTarget: { value: 0.5, notes: 'n'.repeat(900) } };
      expect((await fresh.request('POST', '/v1/hqe/validate', { body: under })).status).toBe(200);
      const over = JSON.stringify({ ...config, resonanceTarget: { value: 0.5, notes: 'n'.repeat(999) }, pad: 'x'.repeat(2048) });
      const r = await fresh.raw('POST', '/v1/hqe/validate', { body: over, headers: { 'content-type': 'application/json' } });
      expectProblem(r, 413, 'payload_too_large');
    });

    it('answers 400 run_too_large over RESONANCE_MAX_RUN_WORK; a session may do that work', async () => {
      const fresh = client.withHeaders({ 'X-Api-Key': await createKey(small.dataDir, 'dev') });
      const body = { primes: firstPrimes(10), schedule: { steps: 1001 }, seed: 1 }; // 100 100 > 100 000
      expect(expectProblem(await fresh.request('POST', '/v1/hqe/run', { body }), 400, 'run_too_large').meta).toMatchObject({ work: 100_100, limit: 100_000 });
      expect((await fresh.request('POST', '/v1/hqe/run', { body: { ...body, schedule: { steps: 1000 } } })).status).toBe(200);
      // A session pays its schedule too (one work unit here): a key of its own, so the 4-unit budget above is not the limit.
      const another = client.withHeaders({ 'X-Api-Key': await createKey(small.dataDir, 'dev') });
      expect((await another.request('POST', '/v1/hqe/sessions', { body })).status).toBe(201);
    });

    it('answers 429 rate_limited with Retry-After once the per-key budget is spent', async () => {
      const fresh = client.withHeaders({ 'X-Api-Key': await createKey(small.dataDir, 'limited') });
      const remaining: number[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await fresh.request('POST', '/v1/hqe/validate', { body: { primes: [2, 3] } });
        expect(r.status).toBe(200);
        expect(r.headers.get('x-ratelimit-limit')).toBe('4');
        remaining.push(Number(r.headers.get('x-ratelimit-remaining')));
      }
      expect(remaining).toEqual([3, 2, 1, 0]);
      const r = await fresh.request('POST', '/v1/hqe/validate', { body: { primes: [2, 3] } });
      expectProblem(r, 429, 'rate_limited');
      const retry = Number(r.headers.get('retry-after'));
      expect(retry).toBeGreaterThan(0);
      expect(retry).toBeLessThanOrEqual(60);
      expect(r.headers.get('x-ratelimit-remaining')).toBe('0');
      // Every route is limited, and other keys are not affected.
      expectProblem(await fresh.request('GET', `/v1/hqe/sessions/${randomUUID()}`), 429, 'rate_limited');
      const other = client.withHeaders({ 'X-Api-Key': await createKey(small.dataDir, 'limited') });
      expect((await other.request('POST', '/v1/hqe/validate', { body: { primes: [2, 3] } })).status).toBe(200);
    });

    it('still answers /healthz', async () => {
      expect((await client.request('GET', '/healthz')).status).toBe(200);
    });
  });
});

describe('webhooks', () => {
  let hook: Awaited<ReturnType<typeof receiver>>;
  const secret = 'e2e-webhook-secret-' + randomUUID();
  let webhookId: string;

  beforeAll(async () => {
    hook = await receiver();
  });
  afterAll(async () => {
    await hook?.close();
  });

  it('registers a receiver: 201, Location, no secret echoed', async () => {
    const r = await api.request('POST', '/v1/hqe/webhooks', { body: { url: hook.url, secret, events: ['hqe.converged', 'hqe.plateau'] } });
    expect(r.status, r.text).toBe(201);
    const body = r.json as Json;
    webhookId = body.id as string;
    expect(body).toMatchObject({ url: hook.url, events: ['hqe.converged', 'hqe.plateau'] });
    expect(body.secret).toBeUndefined();
    expect(r.headers.get('location')).toBe(`/v1/hqe/webhooks/${webhookId}`);
    expect((await api.request('GET', `/v1/hqe/webhooks/${webhookId}`)).status).toBe(200);
  });

  it('delivers hqe.converged and hqe.plateau, signed; the signature verifies with an independent HMAC', async () => {
    const converging = await createSession({ ...SEED_EXAMPLE, seed: 42 });
    const plateauing = await createSession(PLATEAU_SESSION);
    const ended: Record<string, Json> = {};
    ended[converging.id as string] = await waitEnded(converging.id, ['converged']);
    ended[plateauing.id as string] = await waitEnded(plateauing.id, ['plateau']);
    const deliveries = await waitFor('both deliveries', async () => {
      const mine = hook.received.filter((d) => [converging.id, plateauing.id].includes((JSON.parse(d.body) as Json).data?.sessionId));
      return mine.length >= 2 ? mine : undefined;
    }, 15_000);
    expect(deliveries).toHaveLength(2);
    for (const d of deliveries) {
      const payload = JSON.parse(d.body) as Json;
      const session = ended[payload.data.sessionId as string]!;
      const type = `hqe.${session.status as string}`;
      expect(d.headers['x-rs-event']).toBe(type);
      expect(payload).toMatchObject({ type, data: { sessionId: session.id, type: session.status, step: session.step } });
      expect(payload.id).toEqual(expect.any(String));
      expect(Number.isNaN(Date.parse(payload.createdAt as string))).toBe(false);
      expect(d.headers['content-type']).toMatch(/^application\/json/);
      expect(d.headers['x-rs-delivery']).toMatch(/\S{8,}/);
      const ts = d.headers['x-rs-timestamp'] as string;
      expect(ts).toMatch(/^\d+$/);
      expect(Math.abs(Number(ts) - Date.now() / 1000)).toBeLessThan(60);
      expect(signatureValid(secret, ts, d.body, d.headers['x-rs-signature'] as string)).toBe(true);
      // A forged body or another secret does not verify.
      expect(signatureValid(secret, ts, d.body.replace('"step"', '"stop"'), d.headers['x-rs-signature'] as string)).toBe(false);
      expect(signatureValid(secret + 'x', ts, d.body, d.headers['x-rs-signature'] as string)).toBe(false);
    }
    expect(new Set(deliveries.map((d) => d.headers['x-rs-delivery'])).size).toBe(2);
  });

  it('documents the delivered payload in openapi.yaml (OpenAPI 3.1 webhooks)', async () => {
    const webhooks = api.spec.webhooks as Json | undefined;
    expect(Object.keys(webhooks ?? {}).sort(), 'openapi.yaml has no `webhooks` section for hqe.* and space deliveries').toEqual(
      ['basis.changed', 'collapse', 'hqe.converged', 'hqe.failed', 'hqe.plateau', 'member.joined', 'member.left', 'plateau', 'space.updated'],
    );
    const delivered = hook.received[0];
    expect(delivered).toBeDefined();
    const payload = JSON.parse(delivered!.body) as Json;
    expectSchema(`/webhooks/${payload.type as string}/post/requestBody/content/application~1json/schema`, payload);
  });

  it("does not deliver another org's events", async () => {
    const other = api.withHeaders({ 'X-Api-Key': await createKey(srv.dataDir, 'other') });
    const s = await createSession({ ...SEED_EXAMPLE, seed: 42 }, other);
    const mark = hook.received.length;
    await waitFor('other session to converge', async () => {
      const r = await other.request('GET', `/v1/hqe/sessions/${s.id}`);
      return (r.json as Json).status === 'converged' ? true : undefined;
    });
    await sleep(1500);
    expect(hook.received.slice(mark).filter((d) => (JSON.parse(d.body) as Json).data?.sessionId === s.id)).toEqual([]);
  });

  it('validates registrations by pointer', async () => {
    let r = await api.request('POST', '/v1/hqe/webhooks', { body: { url: 'not a url', events: [] } });
    expect(pointers(expectProblem(r, 400, 'validation_failed')).sort()).toEqual(['/events', '/url']);
    r = await api.request('POST', '/v1/hqe/webhooks', { body: { url: hook.url, events: ['hqe.bogus'], extra: 1 } });
    expect(pointers(expectProblem(r, 400, 'validation_failed')).sort()).toEqual(['/events/0', '/extra']);
  });

  it('deletes a registration: 204, then 404', async () => {
    expect((await api.request('DELETE', `/v1/hqe/webhooks/${webhookId}`)).status).toBe(204);
    expectProblem(await api.request('GET', `/v1/hqe/webhooks/${webhookId}`), 404, 'not_found');
  });
});

describe('operations', () => {
  it('/ sends a browser to the demo pages (it was a JSON 404)', async () => {
    const r = await fetch(`${srv.url}/`, { redirect: 'manual' });
    expect(r.status).toBe(302);
    expect(r.headers.get('location')).toBe('/demo');
  });

  it('/healthz names the backend, adapter and store', async () => {
    const r = await anon.request('GET', '/healthz');
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ status: 'ok', backend: 'cpu', adapter: expect.stringMatching(/\S/), store: TEST_STORE });
  });

  it('/readyz is ready, naming the store and broker it reached; /healthz names the node, which every response carries', async () => {
    const r = await anon.request('GET', '/readyz');
    expect(r.status).toBe(200);
    const store = { kind: TEST_STORE, ok: true };
    expect(r.json).toEqual({ ready: true, draining: false, connections: { store, broker: { kind: 'memory', ok: true } } });
    const h = await anon.request('GET', '/healthz');
    expect(h.json).toMatchObject({ status: 'ok', store: TEST_STORE, connections: { store } });
    expect(h.headers.get('x-resonance-node')).toBe((h.json as { node: string }).node);
    expect((h.json as { node: string }).node).toBe(new URL(srv.url).host);
  });

  it('/metrics is Prometheus text with request counts, engine steps and store fsyncs', async () => {
    const r = await anon.request('GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(r.text).toMatch(/^# TYPE resonance_http_requests_total counter$/m);
    expect(r.text).toMatch(/^resonance_http_requests_total\{[^}]*status="200"[^}]*\} \d+/m);
    const steps = /^resonance_engine_sim_steps_total (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(r.text);
    expect(steps, 'resonance_engine_sim_steps_total sample').not.toBeNull();
    expect(Number(steps![1])).toBeGreaterThan(0);
    // Every write of the tests so far was made durable by a WAL fsync, and none failed (the embedded store's
    // own fsyncs: Postgres flushes its WAL itself).
    if (TEST_STORE === 'sqlite') expect(Number(/^resonance_store_fsyncs_total (\d+)$/m.exec(r.text)?.[1])).toBeGreaterThan(0);
    expect(r.text).toMatch(/^resonance_store_fsync_failures_total 0$/m);
  });

  it('/openapi.yaml is the committed openapi.yaml byte for byte', async () => {
    const res = await fetch(`${srv.url}/openapi.yaml`);
    log.push({ method: 'GET', path: '/openapi.yaml', status: res.status });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/yaml/);
    const served = Buffer.from(await res.arrayBuffer());
    expect(served.equals(readFileSync(OPENAPI_PATH)), 'served /openapi.yaml differs from the committed file: run `npm run openapi`').toBe(true);
  });

  it('/docs is an HTML page that loads openapi.yaml (test/reference-pages.test.ts renders it)', async () => {
    const r = await anon.raw('GET', '/docs');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/html/);
    expect(r.text).toMatch(/^<!doctype html>/i);
    expect((await anon.raw('GET', '/docs/assets/init.js')).text).toContain("url: '/openapi.yaml'");
  });
});

describe('OAuth2 client credentials', () => {
  it('a client from `resonance clients create` gets a token (form body) that calls the API as Bearer', async () => {
    const created = await cli(['clients', 'create', '--org', 'dev', '--json'], srv.dataDir);
    expect(created.code, created.stderr).toBe(0);
    const { client_id, client_secret } = JSON.parse(created.stdout) as { client_id: string; client_secret: string };
    const form = new URLSearchParams({ grant_type: 'client_credentials', client_id, client_secret }).toString();
    const t = await anon.request('POST', '/oauth/token', { rawBody: form, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(t.status, t.text).toBe(200);
    const token = t.json as Json;
    expect(token).toMatchObject({ token_type: 'Bearer', scope: 'hqe.read hqe.write spaces.read spaces.write' });
    expect(t.headers.get('cache-control')).toBe('no-store');
    const bearer = anon.withHeaders({ Authorization: `Bearer ${token.access_token as string}` });
    const v = await bearer.request('POST', '/v1/hqe/validate', { body: SEED_EXAMPLE });
    expect(v.status, v.text).toBe(200);
    expect((v.json as Json).ok).toBe(true);
    // The token's org is dev: it sees dev's sessions.
    const s = await createSession({ primes: [2, 3], schedule: { steps: 2 }, seed: 1 });
    expect((await bearer.request('GET', `/v1/hqe/sessions/${s.id}`)).status).toBe(200);
    // A wrong secret is 401 invalid_client.
    const bad = new URLSearchParams({ grant_type: 'client_credentials', client_id, client_secret: client_secret + 'x' }).toString();
    expectProblem(await anon.request('POST', '/oauth/token', { rawBody: bad, headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 401, 'invalid_client');
  });
});

describe('robustness', () => {
  it('still answers /healthz after everything, and no response was a 5xx', async () => {
    expect((await anon.request('GET', '/healthz')).status).toBe(200);
    expect(log.length).toBeGreaterThan(100);
    expect(log.filter((r) => r.status >= 500)).toEqual([]);
    // Coverage: every documented HQE operation was exercised.
    const seen = [...new Set(log.map((r) => `${r.method} ${r.path.replace(/[0-9a-f-]{36}/g, '{id}').split('?')[0]}`))];
    for (const op of ['POST /v1/hqe/validate', 'POST /v1/hqe/run', 'POST /v1/hqe/sessions', 'GET /v1/hqe/sessions/{id}', 'DELETE /v1/hqe/sessions/{id}',
      'POST /v1/hqe/sessions/{id}/step', 'GET /v1/hqe/sessions/{id}/snapshots', 'GET /v1/hqe/sessions/{id}/stream', 'POST /v1/hqe/webhooks']) {
      expect(seen, op).toContain(op);
    }
  });
});
