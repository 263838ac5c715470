/**
 * The Spaces REST API end to end: the built server (`resonance serve`) in a child process, real fetch, every
 * response checked against the committed openapi.yaml by ContractClient, SSE payloads against its
 * components. Needs `npm run build`.
 *
 * A space simulates (ticks) only while a WebSocket or SSE client listens: over REST alone its phases change
 * only by deltas, which is what makes the exact phase checks here possible.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ContractResponse } from './helpers/contract-client.js';
import { createKey, DEMO_ROOM as DEMO, DEV_KEY, readSse, RecordingClient, type SseEvent, sleep, startServer, type StatusRecord, type TestServer, waitFor } from './helpers/server.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const TAU = 2 * Math.PI;

let srv: TestServer;
const log: StatusRecord[] = [];
let api: RecordingClient;
let anon: RecordingClient;
/** Another organisation's key (a guest on dev's spaces). */
let other: RecordingClient;
let ajv: Ajv2020;

beforeAll(async () => {
  srv = await startServer({ env: { RESONANCE_RATE_LIMIT: '1000000' } });
  api = new RecordingClient(srv.url, { 'X-Api-Key': DEV_KEY }, log);
  anon = new RecordingClient(srv.url, {}, log);
  other = anon.withHeaders({ 'X-Api-Key': await createKey(srv.dataDir, 'other', 'spaces.read,spaces.write') });
  ajv = new Ajv2020({ strict: false, allErrors: true });
  (addFormatsModule as unknown as (a: Ajv2020) => void)(ajv);
  ajv.addSchema(api.spec, 'openapi');
}, 60_000);

afterAll(async () => {
  await srv?.stop();
});

afterEach((ctx) => {
  expect(log.filter((r) => r.status >= 500), `5xx responses (server output:\n${srv?.logs().slice(-4000)})`).toEqual([]);
  expect(srv.logs(), `${ctx.task.name}: unhandled error in the server log`).not.toMatch(/unhandled error/);
});

// ---- helpers ----

function expectProblem(r: ContractResponse, status: number, code: string): Json {
  expect(r.status, r.text.slice(0, 500)).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const body = r.json as Json;
  expect(body).toMatchObject({ status, code, type: `/problems/${code}` });
  return body;
}

function expectSchema(pointer: string, value: unknown): void {
  const validate = ajv.getSchema(`openapi#${pointer}`) ?? ajv.compile({ $ref: `openapi#${pointer}` });
  expect(validate(value), `${pointer}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value).slice(0, 400)}`).toBe(true);
}

const errorsOf = (problem: Json): Array<{ pointer: string; code: string }> => (problem.errors as Array<{ pointer: string; code: string }>).map(({ pointer, code }) => ({ pointer, code }));

async function createSpace(body: unknown = DEMO, client: RecordingClient = api): Promise<Json> {
  const r = await client.request('POST', '/v1/spaces', { body });
  expect(r.status, r.text).toBe(201);
  return r.json as Json;
}

async function getSpace(id: string, client: RecordingClient = api): Promise<Json> {
  const r = await client.request('GET', `/v1/spaces/${id}`);
  expect(r.status, r.text).toBe(200);
  return r.json as Json;
}

async function snapshot(id: string, client: RecordingClient = api): Promise<Json> {
  const r = await client.request('GET', `/v1/spaces/${id}/snapshot`);
  expect(r.status, r.text).toBe(200);
  return r.json as Json;
}

async function openSession(id: string, body: Json = {}, client: RecordingClient = api): Promise<Json> {
  const r = await client.request('POST', `/v1/spaces/${id}/sessions`, { body });
  expect(r.status, r.text).toBe(201);
  return r.json as Json;
}

/** Anything that makes contract-checked requests. */
type Caller = Pick<RecordingClient, 'request'>;

/** A session token's requests (through `anon`: a new client per token would parse openapi.yaml again). */
const asSession = (token: string): Caller => ({
  request: (method, path, options = {}) => anon.request(method, path, { ...options, headers: { ...options.headers, Authorization: `Bearer ${token}` } }),
});

const proposeDelta = (id: string, body: unknown, client: Caller = api): Promise<ContractResponse> =>
  client.request('POST', `/v1/spaces/${id}/deltas`, { body });

const shift = (fromVersion: number, i: number, value: number) => ({ fromVersion, ops: [{ op: 'shift_phase', path: `/state/phases/${i}`, value }] });
const setPhase = (fromVersion: number, i: number, value: number) => ({ fromVersion, ops: [{ op: 'set_phase', path: `/state/phases/${i}`, value }] });

/** Distance between two angles on the circle. */
const angleGap = (a: number, b: number): number => {
  const d = (((a - b) % TAU) + TAU) % TAU;
  return Math.min(d, TAU - d);
};

const telemetryUrl = (id: string, token?: string): string => `${srv.url}/v1/spaces/${id}/telemetry${token ? `?token=${encodeURIComponent(token)}` : ''}`;

/** Reads the telemetry stream; the response head goes through the contract check. */
async function telemetry(id: string, opts: Parameters<typeof readSse>[2] & { token?: string; headers?: Record<string, string> } = {}) {
  const read = await readSse(telemetryUrl(id, opts.token), opts.headers ?? {}, opts);
  const body = read.contentType.startsWith('text/event-stream') ? undefined : JSON.parse(read.events[0]!.data);
  api.check('GET', `/v1/spaces/${id}/telemetry`, read.status, read.contentType, body);
  return read;
}

const SSE_SCHEMAS: Record<string, string> = {
  welcome: 'SpaceWelcomeEvent', snapshot: 'SpaceSnapshot', telemetry: 'SpaceTelemetryEvent', delta: 'SpaceDeltaEvent', event: 'SpaceEventEvent', closed: 'SpaceClosedEvent',
};

function checkSsePayloads(events: SseEvent[]): void {
  for (const e of events) {
    const schema = SSE_SCHEMAS[e.event];
    expect(schema, `unexpected SSE event ${e.event}`).toBeDefined();
    expectSchema(`/components/schemas/${schema!}`, JSON.parse(e.data));
  }
}

const ofType = (events: SseEvent[], type: string): Json[] => events.filter((e) => e.event === type).map((e) => JSON.parse(e.data) as Json);

// ---- tests ----

describe('create, read, list', () => {
  it("creates the example demo-room and answers with its normalized config", async () => {
    const r = await api.request('POST', '/v1/spaces', { body: DEMO });
    expect(r.status, r.text).toBe(201);
    const space = r.json as Json;
    expect(r.headers.get('location')).toBe(`/v1/spaces/${space.id as string}`);
    expect(space).toMatchObject({ name: 'demo-room', epoch: 0, version: 0, members: 0, status: 'active', ownerOrg: expect.any(String) });
    expect(space.config).toEqual({
      name: 'demo-room',
      basis: { primes: [2, 3, 5, 7, 11, 13], order: 'ascending', cutoff: 1024 },
      phases: { golden: true, silver: true },
      operators: {
        mixer: { gamma0: 0.2, gammaGrowth: 0.001, temperature0: 1, beta: 0.98 },
        resonanceTarget: 0.85, localityBias: 0.3, semantic: { enabled: false, kernel: 'prime' }, frequencyScale: 0.1,
      },
      entropy: { lambda: 0.03, plateauEps: 1e-6, plateauT: 150, collapseThreshold: 0.96 },
      policy: { maxMembers: 128, publishHz: 30, historySeconds: 600, allowGuest: false },
      seed: expect.any(Number),
    });
    expect(await getSpace(space.id)).toEqual(space);
    const snap = await snapshot(space.id);
    expect(snap).toMatchObject({ spaceId: space.id, epoch: 0, version: 0, t: 0 });
    expect(snap.state.primes).toEqual([2, 3, 5, 7, 11, 13]);
    expect(snap.state.phases).toHaveLength(6);
    expect((snap.state.masses as number[]).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    expect(snap.state.operators.resonanceTarget).toBe(0.85);
  });

  it('reports every invalid field by JSON pointer', async () => {
    let p = expectProblem(await api.request('POST', '/v1/spaces', { body: { ...DEMO, basis: { primes: [2, 4, 5, 5] }, colour: 'red' } }), 400, 'validation_failed');
    expect(errorsOf(p)).toEqual(expect.arrayContaining([
      { pointer: '/colour', code: 'unknown_field' },
      { pointer: '/basis/primes/1', code: 'not_prime' },
      { pointer: '/basis/primes/3', code: 'duplicate_prime' },
    ]));
    p = expectProblem(await api.request('POST', '/v1/spaces', { body: { basis: { primes: [] }, policy: { publishHz: 0 } } }), 400, 'validation_failed');
    expect(errorsOf(p).map((e) => e.pointer)).toEqual(expect.arrayContaining(['/name', '/basis/primes', '/policy/publishHz']));
    expectProblem(await api.request('POST', '/v1/spaces', { rawBody: '{"name":', headers: { 'content-type': 'application/json' } }), 400, 'malformed_json');
    expectProblem(await api.request('POST', '/v1/spaces', { rawBody: 'name=x', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
  });

  it("lists only the caller's org's spaces, oldest first, in cursor pages", async () => {
    const third = anon.withHeaders({ 'X-Api-Key': await createKey(srv.dataDir, 'third', 'spaces.read,spaces.write') });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await createSpace({ ...DEMO, name: `room-${i}` }, third)).id as string);
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 10; pages++) {
      const q: string = `?page_size=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const r = await third.request('GET', `/v1/spaces${q}`);
      expect(r.status, r.text).toBe(200);
      const page = r.json as { items: Json[]; next_cursor: string | null };
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items.map((s) => s.id as string));
      cursor = page.next_cursor;
      if (!cursor) break;
    }
    expect(seen).toEqual(ids);
    const dev = (await api.request('GET', '/v1/spaces?page_size=500')).json as { items: Json[] };
    expect(dev.items.some((s) => ids.includes(s.id as string))).toBe(false);
    expectProblem(await third.request('GET', '/v1/spaces?cursor=bogus'), 400, 'validation_failed');
    expect(errorsOf(expectProblem(await third.request('GET', '/v1/spaces?page_size=0'), 400, 'validation_failed'))).toEqual([{ pointer: '/page_size', code: 'out_of_range' }]);
  });
});

describe('PATCH and basis', () => {
  it('PATCH operators bumps the version and shows in the snapshot; phases alone do not; bad fields by pointer', async () => {
    const space = await createSpace();
    const r = await api.request('PATCH', `/v1/spaces/${space.id as string}`, { body: { operators: { resonanceTarget: 0.9, mixer: { beta: 0.95 } } } });
    expect(r.status, r.text).toBe(200);
    const patched = r.json as Json;
    expect(patched.version).toBe(1);
    // A merge patch: the other fields keep their values.
    expect(patched.config.operators).toMatchObject({ resonanceTarget: 0.9, localityBias: 0.3, mixer: { gamma0: 0.2, beta: 0.95 } });
    expect(patched.config.entropy).toEqual(space.config.entropy);
    const snap = await snapshot(space.id);
    expect(snap.version).toBe(1);
    expect(snap.state.operators).toMatchObject({ resonanceTarget: 0.9, mixer: { beta: 0.95 } });

    const phases = (await api.request('PATCH', `/v1/spaces/${space.id as string}`, { body: { phases: { silver: false } } })).json as Json;
    expect(phases.version).toBe(1);
    expect(phases.config.phases).toEqual({ golden: true, silver: false });

    let p = expectProblem(await api.request('PATCH', `/v1/spaces/${space.id as string}`, { body: { operators: { resonanceTarget: 2 }, basis: { primes: [2] } } }), 400, 'validation_failed');
    expect(errorsOf(p).map((e) => e.pointer).sort()).toEqual(['/basis', '/operators/resonanceTarget']);
    p = expectProblem(await api.request('PATCH', `/v1/spaces/${space.id as string}`, { body: { operators: { frequencyScale: 0.5 } } }), 400, 'validation_failed');
    expect(errorsOf(p)).toEqual([{ pointer: '/operators/frequencyScale', code: 'immutable' }]);
    p = expectProblem(await api.request('PATCH', `/v1/spaces/${space.id as string}`, { body: { status: 'gone' } }), 400, 'validation_failed');
    expect(errorsOf(p)[0]!.pointer).toBe('/status');
    expect((await getSpace(space.id)).version).toBe(1);
  });

  it('a basis change starts an epoch; kept primes keep their phases (pending deltas included); learned order follows the masses', async () => {
    const space = await createSpace({ ...DEMO, policy: { publishHz: 60 } });
    const id = space.id as string;
    // Let it simulate a little (someone listens), so that the masses differ.
    await telemetry(id, { headers: { 'X-Api-Key': DEV_KEY }, stopWhen: (ev) => ev.filter((e) => e.event === 'telemetry').length >= 8 });
    await waitFor('the space to stop ticking', async () => {
      const a = await snapshot(id);
      await sleep(120);
      const b = await snapshot(id);
      return a.t === b.t ? b : undefined;
    });
    // A delta the engine has not ticked with yet must survive the change.
    const v = (await getSpace(id)).version as number;
    expect((await proposeDelta(id, shift(v, 1, 0.25))).status).toBe(200);
    const before = await snapshot(id);
    expect(before.t).toBeGreaterThan(0);

    const r = await api.request('POST', `/v1/spaces/${id}/basis`, { body: { primes: [13, 5, 17, 2, 3], order: 'learned' } });
    expect(r.status, r.text).toBe(200);
    const changed = r.json as Json;
    expect(changed).toMatchObject({ epoch: 1, version: before.version + 1 });
    const mass = new Map((before.state.primes as number[]).map((p, i) => [p, before.state.masses[i] as number]));
    const expectedOrder = [...[2, 3, 5, 13].sort((a, b) => mass.get(b)! - mass.get(a)! || a - b), 17];
    expect(changed.config.basis).toEqual({ primes: expectedOrder, order: 'learned', cutoff: 2048 });

    const after = await snapshot(id);
    expect(after).toMatchObject({ epoch: 1, version: changed.version, t: 0 });
    expect(after.state.primes).toEqual(expectedOrder);
    const phaseBefore = new Map((before.state.primes as number[]).map((p, i) => [p, before.state.phases[i] as number]));
    (after.state.primes as number[]).forEach((p, i) => {
      if (phaseBefore.has(p)) expect(angleGap(after.state.phases[i], phaseBefore.get(p)!), `phase of ${p}`).toBeLessThan(1e-12);
    });
    expect((after.state.masses as number[]).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);

    let p = expectProblem(await api.request('POST', `/v1/spaces/${id}/basis`, { body: { primes: [2, 4] } }), 400, 'validation_failed');
    expect(errorsOf(p)).toContainEqual({ pointer: '/primes/1', code: 'not_prime' });
    p = expectProblem(await api.request('POST', `/v1/spaces/${id}/basis`, { body: { order: 'learned', extra: 1 } }), 400, 'validation_failed');
    expect(errorsOf(p).map((e) => e.pointer).sort()).toEqual(['/extra', '/primes']);
    expect((await getSpace(id)).epoch).toBe(1);
  });
});

describe('deltas', () => {
  it('20 concurrent writers get versions 1..20 exactly once; the phase is the sum of the shifts', async () => {
    const space = await createSpace();
    const id = space.id as string;
    const start = (await snapshot(id)).state.phases[2] as number;
    const shifts = Array.from({ length: 20 }, (_, i) => 0.05 * (i + 1) + 1e-3 * i * i);
    const writers = await Promise.all(Array.from({ length: 20 }, async () => (await openSession(id, { role: 'writer' })).token as string));
    const replies = await Promise.all(shifts.map((s, i) => proposeDelta(id, shift(0, 2, s), asSession(writers[i]!))));
    for (const r of replies) expect(r.status, r.text).toBe(200);
    const versions = replies.map((r) => (r.json as Json).toVersion as number).sort((a, b) => a - b);
    expect(versions).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    for (const r of replies) expect((r.json as Json).version).toBeGreaterThanOrEqual((r.json as Json).toVersion);
    const final = await snapshot(id);
    expect(final.version).toBe(20);
    expect(final.t).toBe(0);
    const expected = start + shifts.reduce((a, b) => a + b, 0);
    expect(angleGap(final.state.phases[2], expected)).toBeLessThan(1e-9);
    expect(final.state.phases[2]).toBeGreaterThanOrEqual(0);
    expect(final.state.phases[2]).toBeLessThan(TAU);
  });

  it('set_* on a path written since fromVersion is a 409 conflict; shift_phase is rebased; bad versions and ops are refused', async () => {
    const space = await createSpace();
    const id = space.id as string;
    const a = await proposeDelta(id, setPhase(0, 1, 1.5));
    expect(a.status, a.text).toBe(200);
    expect(a.json).toMatchObject({ toVersion: 1, version: 1 });
    expect((a.json as Json).state.phases[1]).toBeCloseTo(1.5, 12);
    const clash = expectProblem(await proposeDelta(id, setPhase(0, 1, 2.5)), 409, 'conflict');
    expect(clash.meta).toMatchObject({ currentVersion: 1 });
    // Another path from the same old version is fine; a shift of the written one too (rebased).
    expect((await proposeDelta(id, setPhase(0, 0, 0.5))).status).toBe(200);
    const rebased = await proposeDelta(id, shift(0, 1, 0.25));
    expect(rebased.status, rebased.text).toBe(200);
    expect(rebased.json).toMatchObject({ toVersion: 3 });
    expect((rebased.json as Json).state.phases[1]).toBeCloseTo(1.75, 12);
    // set_operator (admin op; the owner org is owner) conflicts the same way.
    const op = { op: 'set_operator', path: '/state/operators/resonanceTarget', value: 0.7 };
    expect((await proposeDelta(id, { fromVersion: 3, ops: [op] })).status).toBe(200);
    expect(expectProblem(await proposeDelta(id, { fromVersion: 3, ops: [{ ...op, value: 0.6 }] }), 409, 'conflict').meta).toMatchObject({ currentVersion: 4 });
    expect((await snapshot(id)).state.operators.resonanceTarget).toBe(0.7);

    expect(expectProblem(await proposeDelta(id, shift(99, 0, 0.1)), 409, 'version_ahead').meta).toMatchObject({ currentVersion: 4 });
    let p = expectProblem(await proposeDelta(id, { fromVersion: 4, ops: [{ op: 'shift_phase', path: '/state/phases/6', value: 0.1 }, { op: 'set_entropy', path: '/state/entropy/lambda', value: -1 }] }), 400, 'validation_failed');
    expect(errorsOf(p)).toEqual([{ pointer: '/ops/0/path', code: 'invalid_path' }, { pointer: '/ops/1/value', code: 'invalid_value' }]);
    p = expectProblem(await proposeDelta(id, { fromVersion: 4, ops: [], extra: true }), 400, 'validation_failed');
    expect(errorsOf(p).map((e) => e.pointer).sort()).toEqual(['/extra', '/ops']);

    // A basis change: deltas made before it (or for the old epoch) are stale.
    expect((await api.request('POST', `/v1/spaces/${id}/basis`, { body: { primes: [2, 3, 5, 7] } })).status).toBe(200);
    expect(expectProblem(await proposeDelta(id, shift(4, 0, 0.1)), 409, 'stale_epoch').meta).toMatchObject({ currentVersion: 5 });
    expectProblem(await proposeDelta(id, { ...shift(5, 0, 0.1), epoch: 0 }), 409, 'stale_epoch');
    const ok = await proposeDelta(id, { ...shift(5, 0, 0.1), epoch: 1 });
    expect(ok.json).toMatchObject({ toVersion: 6, epoch: 1 });
  });

  it('Idempotency-Key replays a delta reply instead of applying it twice', async () => {
    const space = await createSpace();
    const id = space.id as string;
    const key = `delta-${id}`;
    const first = await api.request('POST', `/v1/spaces/${id}/deltas`, { body: shift(0, 0, 0.5), headers: { 'Idempotency-Key': key } });
    const again = await api.request('POST', `/v1/spaces/${id}/deltas`, { body: shift(0, 0, 0.5), headers: { 'Idempotency-Key': key } });
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.json).toEqual(first.json);
    expect((await getSpace(id)).version).toBe(1);
    expectProblem(await api.request('POST', `/v1/spaces/${id}/deltas`, { body: shift(0, 0, 0.4), headers: { 'Idempotency-Key': key } }), 422, 'idempotency_key_reused');
    // PATCH too.
    const patch = { operators: { resonanceTarget: 0.6 } };
    const p1 = await api.request('PATCH', `/v1/spaces/${id}`, { body: patch, headers: { 'Idempotency-Key': `patch-${id}` } });
    const p2 = await api.request('PATCH', `/v1/spaces/${id}`, { body: patch, headers: { 'Idempotency-Key': `patch-${id}` } });
    expect(p2.headers.get('idempotent-replayed')).toBe('true');
    expect(p2.json).toEqual(p1.json);
  });

  it('a full space opens no more sessions (409 space_full) until a member leaves', async () => {
    const space = await createSpace({ ...DEMO, policy: { maxMembers: 2 } });
    const id = space.id as string;
    const a = await openSession(id);
    await openSession(id);
    const full = expectProblem(await api.request('POST', `/v1/spaces/${id}/sessions`, { body: {} }), 409, 'space_full');
    expect(full.meta).toMatchObject({ maxMembers: 2 });
    expect((await api.request('DELETE', `/v1/spaces/${id}/members/${a.sessionId as string}`)).status).toBe(204);
    expect((await openSession(id)).role).toBe('writer');
    // A removed member's session token is refused from then on.
    const asRemoved = await api.request('GET', `/v1/spaces/${id}/snapshot`, { headers: { Authorization: `Bearer ${a.token as string}`, 'X-Api-Key': '' } });
    expectProblem(asRemoved, 403, 'member_removed');
  });

  it('a locked space refuses deltas (409 space_locked) until unlocked; an archived one is read-only for good', async () => {
    const space = await createSpace();
    const id = space.id as string;
    const patch = (body: unknown) => api.request('PATCH', `/v1/spaces/${id}`, { body });
    expect(((await patch({ status: 'locked' })).json as Json).status).toBe('locked');
    expect(expectProblem(await proposeDelta(id, shift(0, 0, 0.1)), 409, 'space_locked').meta).toMatchObject({ currentVersion: 0 });
    expect(((await patch({ status: 'active' })).json as Json).status).toBe('active');
    expect((await proposeDelta(id, shift(0, 0, 0.1))).status).toBe(200);

    expect(((await patch({ status: 'archived' })).json as Json).status).toBe('archived');
    expect(await getSpace(id)).toMatchObject({ status: 'archived', version: 1 });
    expect((await snapshot(id)).version).toBe(1);
    expectProblem(await proposeDelta(id, shift(1, 0, 0.1)), 409, 'space_archived');
    expectProblem(await patch({ operators: { resonanceTarget: 0.5 } }), 409, 'space_archived');
    expectProblem(await patch({ status: 'active' }), 409, 'space_archived');
    expectProblem(await api.request('POST', `/v1/spaces/${id}/basis`, { body: { primes: [2, 3] } }), 409, 'space_archived');
    expectProblem(await api.request('POST', `/v1/spaces/${id}/sessions`, { body: {} }), 409, 'space_archived');
    const sse = await telemetry(id, { headers: { 'X-Api-Key': DEV_KEY } });
    expect(sse.status).toBe(409);
    // Delete: gone for everyone.
    expect((await api.request('DELETE', `/v1/spaces/${id}`)).status).toBe(204);
    expectProblem(await api.request('GET', `/v1/spaces/${id}`), 404, 'not_found');
    expectProblem(await api.request('DELETE', `/v1/spaces/${id}`), 404, 'not_found');
  });
});

describe('RBAC', () => {
  const OPS = ['get', 'snapshot', 'patch', 'shift_phase', 'set_operator', 'session_writer', 'delete_member', 'basis', 'lock'] as const;
  type Op = (typeof OPS)[number];
  type Actor = 'owner' | 'admin' | 'writer' | 'reader' | 'guest' | 'guest_private';
  const row = (...s: number[]): Record<Op, number> => Object.fromEntries(OPS.map((op, i) => [op, s[i]!])) as Record<Op, number>;
  const EXPECTED: Record<Actor, Record<Op, number>> = {
    //                 get  snap patch shift setop sess  delm basis lock
    owner: row(200, 200, 200, 200, 200, 201, 204, 200, 200),
    // Only org credentials mint session tokens: a session token asking for another is a 403 at any role.
    admin: row(200, 200, 200, 200, 200, 403, 403, 200, 403),
    writer: row(200, 200, 403, 200, 403, 403, 403, 403, 403),
    reader: row(200, 200, 403, 403, 403, 403, 403, 403, 403),
    guest: row(200, 200, 403, 403, 403, 403, 403, 403, 403),
    guest_private: row(404, 404, 404, 404, 404, 404, 404, 404, 404),
  };

  it('gives each role exactly its operations', async () => {
    const actual = {} as Record<Actor, Record<Op, number>>;
    for (const actor of Object.keys(EXPECTED) as Actor[]) {
      const space = await createSpace({ ...DEMO, policy: { allowGuest: actor !== 'guest_private' } });
      const id = space.id as string;
      const victim = (await openSession(id, { role: 'reader', displayName: 'victim' })).sessionId as string;
      const client = actor === 'owner' ? api : actor.startsWith('guest') ? other : asSession((await openSession(id, { role: actor })).token as string);
      const version = async (): Promise<number> => (await getSpace(id)).version as number;
      const run: Record<Op, () => Promise<ContractResponse>> = {
        get: () => client.request('GET', `/v1/spaces/${id}`),
        snapshot: () => client.request('GET', `/v1/spaces/${id}/snapshot`),
        patch: () => client.request('PATCH', `/v1/spaces/${id}`, { body: { operators: { localityBias: 0.25 } } }),
        shift_phase: async () => proposeDelta(id, shift(await version(), 0, 0.01), client),
        set_operator: async () => proposeDelta(id, { fromVersion: await version(), ops: [{ op: 'set_operator', path: '/state/operators/resonanceTarget', value: 0.7 }] }, client),
        session_writer: () => client.request('POST', `/v1/spaces/${id}/sessions`, { body: { role: 'writer' } }),
        delete_member: () => client.request('DELETE', `/v1/spaces/${id}/members/${victim}`),
        basis: () => client.request('POST', `/v1/spaces/${id}/basis`, { body: { primes: [2, 3, 5, 7, 11] } }),
        lock: () => client.request('PATCH', `/v1/spaces/${id}`, { body: { status: 'locked' } }),
      };
      actual[actor] = {} as Record<Op, number>;
      for (const op of OPS) {
        const r = await run[op]();
        actual[actor][op] = r.status;
        if (r.status === 403) expect(['insufficient_role', 'insufficient_scope', 'org_credential_required'], `${actor} ${op}`).toContain((r.json as Json).code);
        if (r.status === 404) expectProblem(r, 404, 'not_found');
      }
    }
    expect(actual).toEqual(EXPECTED);
  });

  it("hides another org's private space; guests join only as readers; session tokens stay in their space", async () => {
    const priv = await createSpace();
    const open = await createSpace({ ...DEMO, policy: { allowGuest: true } });
    for (const path of ['', '/snapshot', '/members', '/telemetry']) expectProblem(await other.request('GET', `/v1/spaces/${priv.id as string}${path}`), 404, 'not_found');
    expectProblem(await other.request('POST', `/v1/spaces/${priv.id as string}/sessions`, { body: {} }), 404, 'not_found');
    expect(((await other.request('GET', '/v1/spaces')).json as Json).items.some((s: Json) => s.id === priv.id || s.id === open.id)).toBe(false);

    // A guest's default (and only) role is reader.
    const guest = await openSession(open.id, { displayName: 'guest' }, other);
    expect(guest).toMatchObject({ spaceId: open.id, role: 'reader', expiresIn: expect.any(Number) });
    expect(guest.websocketUrl).toBe(`${srv.url.replace(/^http/, 'ws')}/spaces/${open.id as string}`);
    expect(guest.sseUrl).toBe(`${srv.url}/v1/spaces/${open.id as string}/telemetry`);
    const denied = expectProblem(await other.request('POST', `/v1/spaces/${open.id as string}/sessions`, { body: { role: 'writer' } }), 403, 'insufficient_role');
    expect(denied.meta).toMatchObject({ role: 'reader', required: 'writer' });
    // The owner org's default is writer.
    expect((await openSession(open.id)).role).toBe('writer');

    const members = (await api.request('GET', `/v1/spaces/${open.id as string}/members`)).json as { items: Json[] };
    expect(members.items.map((m) => m.role).sort()).toEqual(['reader', 'writer']);
    expect(members.items.find((m) => m.id === guest.sessionId)).toMatchObject({ role: 'reader', displayName: 'guest', userId: expect.any(String), joinedAt: expect.any(String) });
    expect((await getSpace(open.id)).members).toBe(2);
    expect((await api.request('DELETE', `/v1/spaces/${open.id as string}/members/${guest.sessionId as string}`)).status).toBe(204);
    expectProblem(await api.request('DELETE', `/v1/spaces/${open.id as string}/members/${guest.sessionId as string}`), 404, 'not_found');
    expect((await getSpace(open.id)).members).toBe(1);

    // Turning guests off hides the space from the guest org again, session tokens included.
    expectProblem(await asSession(guest.token).request('GET', `/v1/spaces/${open.id as string}`), 403, 'member_removed');
    const reader = asSession((await openSession(open.id, { displayName: 'guest again' }, other)).token);
    expect((await reader.request('GET', `/v1/spaces/${open.id as string}`)).status).toBe(200);
    expect((await api.request('PATCH', `/v1/spaces/${open.id as string}`, { body: { policy: { allowGuest: false } } })).status).toBe(200);
    expectProblem(await reader.request('GET', `/v1/spaces/${open.id as string}`), 404, 'not_found');
    expectProblem(await other.request('GET', `/v1/spaces/${open.id as string}`), 404, 'not_found');

    // A session token is confined to its space.
    const own = asSession((await openSession(priv.id, { role: 'admin' })).token as string);
    expect((await own.request('GET', `/v1/spaces/${priv.id as string}`)).status).toBe(200);
    for (const [method, path] of [['GET', '/v1/spaces'], ['POST', '/v1/spaces'], ['GET', `/v1/spaces/${open.id as string}`], ['POST', '/v1/hqe/validate'], ['GET', '/v1/hqe/webhooks'], ['GET', '/v1/webhooks']] as const) {
      const r = await own.request(method, path, method === 'POST' ? { body: DEMO } : {});
      expectProblem(r, 403, 'insufficient_scope');
    }
    // Forged, expired-looking and access-token-shaped junk are all 401.
    expectProblem(await asSession('not.a.jwt').request('GET', `/v1/spaces/${priv.id as string}`), 401, 'invalid_credentials');
    expectProblem(await anon.request('GET', `/v1/spaces/${priv.id as string}`), 401, 'unauthorized');
    // ?token= is for the telemetry stream only.
    const token = (await openSession(priv.id, { role: 'reader' })).token as string;
    expectProblem(await anon.request('GET', `/v1/spaces/${priv.id as string}?token=${encodeURIComponent(token)}`), 401, 'unauthorized');
  });
});

describe('telemetry (SSE)', () => {
  it('streams welcome, snapshot, telemetry at publishHz and accepted deltas; Last-Event-ID replays missed deltas', async () => {
    const space = await createSpace({ ...DEMO, policy: { publishHz: 20 } });
    const id = space.id as string;
    const token = (await openSession(id, { role: 'reader' })).token as string;
    const arrivals: number[] = [];
    let posted: Promise<ContractResponse> | null = null;
    const first = await telemetry(id, {
      token,
      stopWhen: (ev) => {
        const n = ev.filter((e) => e.event === 'telemetry').length;
        while (arrivals.length < n) arrivals.push(performance.now());
        if (n >= 4 && !posted) posted = proposeDelta(id, shift(0, 3, 0.5));
        return ev.some((e) => e.event === 'delta');
      },
    });
    expect(first.status).toBe(200);
    checkSsePayloads(first.events);
    const [welcome, snap] = first.events;
    expect(welcome!.event).toBe('welcome');
    expect(JSON.parse(welcome!.data)).toEqual({ spaceId: id, epoch: 0, version: 0, role: 'reader' });
    expect(snap!.event).toBe('snapshot');
    expect(snap!.id).toBe('0');
    const ticks = ofType(first.events, 'telemetry');
    expect(ticks.length).toBeGreaterThanOrEqual(4);
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]!.t).toBeGreaterThan(ticks[i - 1]!.t);
    // 20 Hz: 50 ms a tick (generous bounds for a loaded machine).
    const period = (arrivals[arrivals.length - 1]! - arrivals[0]!) / (arrivals.length - 1);
    expect(period).toBeGreaterThan(20);
    expect(period).toBeLessThan(250);
    const reply = await posted!;
    expect(reply.status, reply.text).toBe(200);
    const toVersion = (reply.json as Json).toVersion as number;
    const delta = first.events.find((e) => e.event === 'delta')!;
    expect(delta.id).toBe(String(toVersion));
    expect(JSON.parse(delta.data)).toMatchObject({ fromVersion: toVersion - 1, toVersion, epoch: 0, ops: [{ op: 'shift_phase', path: '/state/phases/3', value: 0.5 }] });

    // Missed while away: two deltas. Resuming from the last id replays exactly them, no snapshot.
    const missed = [await proposeDelta(id, shift(toVersion, 0, 0.1)), await proposeDelta(id, setPhase(toVersion, 1, 1))];
    for (const r of missed) expect(r.status, r.text).toBe(200);
    const resumed = await telemetry(id, { token, headers: { 'Last-Event-ID': delta.id! }, stopWhen: (ev) => ev.filter((e) => e.event === 'delta').length >= 2 });
    checkSsePayloads(resumed.events);
    expect(resumed.events[0]!.event).toBe('welcome');
    expect(JSON.parse(resumed.events[0]!.data)).toMatchObject({ version: toVersion + 2 });
    expect(resumed.events.some((e) => e.event === 'snapshot')).toBe(false);
    expect(resumed.events.filter((e) => e.event === 'delta').map((e) => e.id)).toEqual([String(toVersion + 1), String(toVersion + 2)]);

    // Up to date: no replay and no snapshot, straight to telemetry.
    const current = await telemetry(id, { token, headers: { 'Last-Event-ID': String(toVersion + 2) }, stopWhen: (ev) => ev.some((e) => e.event === 'telemetry') });
    expect(current.events.map((e) => e.event)).toEqual(['welcome', 'telemetry']);
    // An unknown version (ahead of the space): a snapshot.
    const ahead = await telemetry(id, { token, headers: { 'Last-Event-ID': '999' }, stopWhen: (ev) => ev.some((e) => e.event === 'snapshot') });
    expect(ahead.events.map((e) => e.event).slice(0, 2)).toEqual(['welcome', 'snapshot']);

    // A bad token is a problem, not a stream.
    const bad = await telemetry(id, { token: `${token}x` });
    expect(bad.status).toBe(401);
  });

  it('sends `closed` and ends the stream when the space is archived', async () => {
    const space = await createSpace({ ...DEMO, policy: { publishHz: 20 } });
    const id = space.id as string;
    let archived: Promise<ContractResponse> | null = null;
    const read = await telemetry(id, {
      headers: { 'X-Api-Key': DEV_KEY },
      stopWhen: (ev) => {
        if (ev.some((e) => e.event === 'telemetry') && !archived) archived = api.request('PATCH', `/v1/spaces/${id}`, { body: { status: 'archived' } });
        return false;
      },
    });
    expect(read.ended).toBe(true);
    expect((await archived!)?.status).toBe(200);
    checkSsePayloads(read.events);
    const last = read.events[read.events.length - 1]!;
    expect(last.event).toBe('closed');
    expect(JSON.parse(last.data)).toEqual({ reason: 'archived' });
    expect(ofType(read.events, 'telemetry').length).toBeGreaterThan(0);
  });
});

describe('webhooks for space events', () => {
  it('POST /v1/webhooks registers space events; deliveries match the documented payload', async () => {
    const received: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
    const server: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      const r = await api.request('POST', '/v1/webhooks', { body: { url, events: ['space.updated', 'basis.changed', 'member.joined'] } });
      expect(r.status, r.text).toBe(201);
      expect(r.headers.get('location')).toBe(`/v1/webhooks/${(r.json as Json).id as string}`);
      // The same registrations under both paths.
      expect((await api.request('GET', `/v1/hqe/webhooks/${(r.json as Json).id as string}`)).status).toBe(200);
      const space = await createSpace();
      await openSession(space.id, { displayName: 'hooked' });
      await api.request('PATCH', `/v1/spaces/${space.id as string}`, { body: { operators: { resonanceTarget: 0.5 } } });
      await api.request('POST', `/v1/spaces/${space.id as string}/basis`, { body: { primes: [2, 3, 5] } });
      const payloads = await waitFor('three deliveries', async () => {
        const mine = received.map((d) => JSON.parse(d.body) as Json).filter((p) => p.data?.spaceId === space.id);
        return mine.length >= 3 ? mine : undefined;
      });
      expect(payloads.map((p) => p.type).sort()).toEqual(['basis.changed', 'member.joined', 'space.updated']);
      for (const p of payloads) expectSchema(`/webhooks/${p.type as string}/post/requestBody/content/application~1json/schema`, p);
      expect(payloads.find((p) => p.type === 'member.joined')!.data).toMatchObject({ displayName: 'hooked', role: 'writer' });
      expect(payloads.find((p) => p.type === 'basis.changed')!.data).toMatchObject({ epoch: 1, primes: [2, 3, 5] });
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('robustness', () => {
  it('exercised every documented spaces operation without a 5xx', () => {
    const seen = log.map((r) => `${r.method} ${r.path.split('?')[0]!.replace(/spc_[0-9a-f]+/g, '{id}').replace(/ses_[0-9a-f]+/g, '{memberId}')} ${r.status}`);
    for (const op of ['POST /v1/spaces', 'GET /v1/spaces', 'GET /v1/spaces/{id}', 'PATCH /v1/spaces/{id}', 'DELETE /v1/spaces/{id}', 'POST /v1/spaces/{id}/basis',
      'GET /v1/spaces/{id}/snapshot', 'POST /v1/spaces/{id}/deltas', 'POST /v1/spaces/{id}/sessions', 'GET /v1/spaces/{id}/telemetry', 'GET /v1/spaces/{id}/members',
      'DELETE /v1/spaces/{id}/members/{memberId}']) {
      expect(seen.some((s) => s.startsWith(`${op} `)), op).toBe(true);
    }
    expect(log.filter((r) => r.status >= 500)).toEqual([]);
  });
});
