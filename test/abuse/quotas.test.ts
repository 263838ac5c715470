/**
 * Per-org quotas and usage metering as a tenant meets them (docs/tenancy.md): a real server process on a
 * real SQLite file, real WebSocket clients, quotas set with the CLI (`resonance orgs set-quota`) and
 * defaults from RESONANCE_QUOTA_*.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Api, Client, type Frame, refused } from '../helpers/realtime.js';
import { cli, createKey, DEV_KEY, readSse, type Reply, request, sleep, startServer, type TestServer, waitFor } from '../helpers/server.js';

const SPACE = { name: 'quota-room', basis: { primes: [2, 3, 5, 7, 11, 13] }, policy: { publishHz: 20 } };
const shift = (fromVersion: number, i = 0): Record<string, unknown> => ({ fromVersion, ops: [{ op: 'shift_phase', path: `/state/phases/${i}`, value: 0.01 }] });

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

const call = (url: string, key: string, method: string, path: string, body?: unknown): Promise<Reply<Json>> => request<Json>(url, method, path, { 'x-api-key': key }, body);

describe('quotas and usage', () => {
  let server: TestServer;
  let api: Api;

  beforeAll(async () => {
    server = await startServer({
      env: {
        RESONANCE_QUOTA_LIVE_SPACES: '1',
        RESONANCE_QUOTA_SOCKETS_PER_MEMBER: '2',
        RESONANCE_WS_PROPOSALS_PER_SECOND: '5',
        RESONANCE_QUOTA_SESSION_STORAGE_BYTES: '30000',
        RESONANCE_QUOTA_STREAMS: '3',
      },
    });
    api = new Api(server.url);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('meters usage per org and reports it by hour and day, with the quotas; /metrics exports the counters', async () => {
    const key = await createKey(server.dataDir, 'metered', 'hqe.read,hqe.write,spaces.read,spaces.write');
    const other = await createKey(server.dataDir, 'quiet', 'hqe.read,spaces.read');
    const a = new Api(server.url, key);
    const run = await a.call('POST', '/v1/hqe/run', { primes: [2, 3, 5, 7], schedule: { steps: 64 }, seed: 1 });
    expect(run.status).toBe(200);
    const space = await a.space(SPACE);
    const session = await a.session(space.id, 'writer');
    const ws = await Client.started(session);
    for (let v = 0; v < 3; v++) expect((await a.call('POST', `/v1/spaces/${space.id}/deltas`, shift(v))).status).toBe(200);
    await ws.waitCount('telemetry', (f) => f.type === 'telemetry', 10);
    await ws.close();
    // SSE subscribers are metered too.
    const sse = await readSse(`${server.url}/v1/spaces/${space.id}/telemetry`, { 'x-api-key': key }, {
      stopWhen: (events) => events.filter((e) => e.event === 'telemetry').length >= 5,
    });
    expect(sse.events.filter((e) => e.event === 'telemetry').length).toBeGreaterThanOrEqual(5);

    // Socket usage reaches the meter about once a second and when the socket closes.
    const report = await waitFor('usage with the telemetry frames sent', async () => {
      const r = await call(server.url, key, 'GET', '/v1/usage');
      return r.status === 200 && r.json.totals.telemetry_frames >= 15 ? r.json : undefined;
    });
    expect(report.totals.bytes_sent).toBeGreaterThan(0);
    expect(report.granularity).toBe('hour');
    expect(report.totals.deltas).toBe(3);
    expect(report.totals.telemetry_frames).toBeGreaterThanOrEqual(10);
    expect(report.totals.space_minutes).toBeGreaterThan(0);
    expect(report.totals.work_units).toBeGreaterThan(0);
    expect(report.totals.storage_bytes_written).toBeGreaterThan(0);
    expect(report.buckets.length).toBeGreaterThanOrEqual(1);
    expect(report.storageBytes).toBeGreaterThan(0);
    expect(report.quotas.live_spaces).toMatchObject({ kind: 'cap', limit: 1 });
    expect(report.quotas.deltas_per_minute).toMatchObject({ kind: 'rate', windowSeconds: 60 });

    const daily = await call(server.url, key, 'GET', '/v1/usage?granularity=day');
    expect(daily.status).toBe(200);
    expect(daily.json.totals.deltas).toBe(3);
    expect(daily.json.buckets[0].start).toMatch(/T00:00:00\.000Z$/);
    // Another org sees only its own usage.
    const quiet = await call(server.url, other, 'GET', '/v1/usage');
    expect(quiet.json.totals.deltas).toBe(0);

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const orgId = report.orgId as string;
    expect(metrics).toMatch(new RegExp(`resonance_usage_total\\{org="${orgId}",metric="deltas"\\} 3`));
  });

  it('refuses bad usage queries with the failing parameter, and space session tokens', async () => {
    const bad = await call(server.url, DEV_KEY, 'GET', '/v1/usage?granularity=minute');
    expect(bad.status).toBe(400);
    expect(bad.json.errors[0].pointer).toBe('/granularity');
    const repeated = await call(server.url, DEV_KEY, 'GET', '/v1/usage?from=2026-01-01T00:00:00Z&from=2026-01-02T00:00:00Z');
    expect(repeated.status).toBe(400);
    expect(repeated.json.errors[0].pointer).toBe('/from');
    const tooLong = await call(server.url, DEV_KEY, 'GET', '/v1/usage?from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z');
    expect(tooLong.status).toBe(400);
    expect(tooLong.json.errors[0].code).toBe('range_too_long');
    const space = await api.space(SPACE);
    const session = await api.session(space.id, 'reader');
    const res = await fetch(`${server.url}/v1/usage`, { headers: { Authorization: `Bearer ${session.token}` } });
    expect(res.status).toBe(403);
  });

  it('deltas_per_minute, set for one org with the CLI, answers 429 quota_exceeded over REST and an error frame over WebSocket', async () => {
    const key = await createKey(server.dataDir, 'chatty', 'spaces.read,spaces.write');
    const set = await cli(['orgs', 'set-quota', 'chatty', 'deltas_per_minute', '3'], server.dataDir);
    expect(set.code).toBe(0);
    expect((await cli(['orgs', 'set-quota', 'chatty', 'no_such_quota', '3'], server.dataDir)).code).toBe(2);
    const a = new Api(server.url, key);
    const space = await a.space(SPACE);
    for (let v = 0; v < 3; v++) expect((await a.call('POST', `/v1/spaces/${space.id}/deltas`, shift(v))).status).toBe(200);
    const over = await call(server.url, key, 'POST', `/v1/spaces/${space.id}/deltas`, shift(3));
    expect(over.status).toBe(429);
    expect(over.json.code).toBe('quota_exceeded');
    expect(over.json.meta).toEqual({ quota: 'deltas_per_minute', limit: 3, used: 3 });
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(0);
    // PATCH logs a delta too, and is charged like one.
    const patch = await call(server.url, key, 'PATCH', `/v1/spaces/${space.id}`, { operators: { resonanceTarget: 0.5 } });
    expect(patch.status).toBe(429);
    expect(patch.json.meta.quota).toBe('deltas_per_minute');
    // Nothing was written: the version is still 3.
    expect((await a.call('GET', `/v1/spaces/${space.id}`)).json.version).toBe(3);

    const ws = await Client.started(await a.session(space.id, 'writer'));
    ws.send({ type: 'propose_delta', requestId: 'q1', delta: shift(3) });
    const err = await ws.waitFor('quota error', (f) => f.type === 'error' && f.requestId === 'q1');
    expect(err.code).toBe('quota_exceeded');
    expect(err.meta).toMatchObject({ quota: 'deltas_per_minute', limit: 3 });
    await ws.close();
    expect((await cli(['orgs', 'set-quota', 'chatty', 'deltas_per_minute', 'default'], server.dataDir)).code).toBe(0);
  });

  it('limits WebSocket proposals per connection per second', async () => {
    const space = await api.space(SPACE);
    const ws = await Client.started(await api.session(space.id, 'writer'));
    for (let i = 0; i < 8; i++) ws.send({ type: 'propose_delta', requestId: `p${i}`, delta: shift(0, i % 6) });
    const limited = await ws.waitFor('rate_limited', (f) => f.type === 'error' && f.code === 'rate_limited');
    expect(limited.meta).toMatchObject({ scope: 'connection', limit: 5 });
    await ws.waitCount('accepted', (f) => f.type === 'delta' && typeof f.requestId === 'string', 5);
    await sleep(300);
    expect(ws.of('delta').length).toBe(5);
    expect(ws.of('error').filter((f) => f.code === 'rate_limited').length).toBe(3);
    await ws.close();
  });

  it('caps sockets per member (409 quota_exceeded before the upgrade) and resident spaces per org (409 over REST, close 4429 over WebSocket)', async () => {
    const key = await createKey(server.dataDir, 'crowded', 'spaces.read,spaces.write');
    const a = new Api(server.url, key);
    const first = await a.space(SPACE);
    const session = await a.session(first.id, 'reader');
    const c1 = await Client.started(session);
    const c2 = await Client.started(session);
    const third = await refused(session.websocketUrl, { Authorization: `Bearer ${session.token}` });
    expect(third.status).toBe(409);
    expect(third.body.code).toBe('quota_exceeded');
    expect(third.body.meta).toMatchObject({ quota: 'sockets_per_member', limit: 2, used: 2 });
    await c2.close();
    // The closed socket gave its place back; so do handshakes the client abandons half way.
    for (let i = 0; i < 5; i++) {
      const { port } = new URL(server.url);
      const raw = connect(Number(port), '127.0.0.1');
      raw.write(`GET /spaces/${first.id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${Buffer.from(`abandoned-${i}-key`).toString('base64')}\r\nAuthorization: Bearer ${session.token}\r\n\r\n`);
      raw.destroy();
    }
    await sleep(300);
    const c3 = await Client.started(session);

    // live_spaces = 1: the first space is resident, a second cannot be loaded.
    const second = await a.space(SPACE);
    const snap = await a.call('GET', `/v1/spaces/${second.id}/snapshot`);
    expect(snap.status).toBe(409);
    expect(snap.json.code).toBe('quota_exceeded');
    expect((snap.json.meta as Frame).quota).toBe('live_spaces');
    const ws = await Client.open(await a.session(second.id, 'reader'));
    expect(await ws.closed).toBe(4429);
    const err = ws.of('error')[0]!;
    expect(err.code).toBe('quota_exceeded');
    await c1.close();
    await c3.close();
  });

  it('closes an HQE session that reaches session_storage_bytes, with the reason in its last status event', async () => {
    const created = await call(server.url, DEV_KEY, 'POST', '/v1/hqe/sessions', {
      primes: [2, 3, 5, 7, 11, 13, 17, 19], schedule: { steps: 100_000_000, plateauT: 1_000_000_000 },
      observables: { metricsInterval: 1, snapshotsInterval: 1, recordPhases: true, recordAmplitudes: true }, seed: 3,
    });
    expect(created.status).toBe(201);
    const id = created.json.id as string;
    const closed = await waitFor('closed by the storage quota', async () => {
      const r = await call(server.url, DEV_KEY, 'GET', `/v1/hqe/sessions/${id}`);
      return r.json.status === 'closed' ? r.json : undefined;
    }, 20_000);
    expect(closed.status).toBe('closed');
    const stream = await readSse(`${server.url}/v1/hqe/sessions/${id}/stream`, { 'x-api-key': DEV_KEY }, { timeoutMs: 10_000 });
    const last = stream.events.filter((e) => e.event === 'status').at(-1)!;
    expect(JSON.parse(last.data)).toMatchObject({ status: 'closed', reason: 'quota_exceeded', quota: 'session_storage_bytes', limit: 30000 });
    const report = (await call(server.url, DEV_KEY, 'GET', '/v1/usage')).json;
    expect(report.storageBytes).toBeGreaterThanOrEqual(30000);
    // Stepping it is over.
    expect((await call(server.url, DEV_KEY, 'POST', `/v1/hqe/sessions/${id}/step`, { steps: 1 })).status).toBe(409);
  });

  it('caps open SSE streams per org (409 quota_exceeded); a closed stream frees its place', async () => {
    const key = await createKey(server.dataDir, 'streamer', 'spaces.read,spaces.write');
    const a = new Api(server.url, key);
    const space = await a.space(SPACE);
    const open = async (): Promise<{ status: number; abort: AbortController; body: string }> => {
      const abort = new AbortController();
      const res = await fetch(`${server.url}/v1/spaces/${space.id}/telemetry`, { headers: { 'x-api-key': key }, signal: abort.signal });
      return { status: res.status, abort, body: res.status === 200 ? '' : await res.text() };
    };
    const streams = [await open(), await open(), await open()];
    expect(streams.map((s) => s.status)).toEqual([200, 200, 200]);
    const fourth = await open();
    expect(fourth.status).toBe(409);
    expect(JSON.parse(fourth.body)).toMatchObject({ code: 'quota_exceeded', meta: { quota: 'streams', limit: 3, used: 3 } });
    streams[0]!.abort.abort();
    const again = await waitFor('a place freed', async () => {
      const s = await open();
      if (s.status === 200) return s;
      return undefined;
    });
    for (const s of [...streams.slice(1), again]) s.abort.abort();
  });

  it('caps stored spaces and webhook registrations per org; deleting one frees its place', async () => {
    const key = await createKey(server.dataDir, 'collector', 'hqe.read,hqe.write,spaces.read,spaces.write');
    expect((await cli(['orgs', 'set-quota', 'collector', 'spaces', '2'], server.dataDir)).code).toBe(0);
    expect((await cli(['orgs', 'set-quota', 'collector', 'webhooks', '1'], server.dataDir)).code).toBe(0);
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await call(server.url, key, 'POST', '/v1/spaces', SPACE);
      expect(r.status).toBe(201);
      ids.push(r.json.id as string);
    }
    const third = await call(server.url, key, 'POST', '/v1/spaces', SPACE);
    expect(third.status).toBe(409);
    expect(third.json.meta).toEqual({ quota: 'spaces', limit: 2, used: 2 });
    expect((await call(server.url, key, 'DELETE', `/v1/spaces/${ids[0]!}`)).status).toBe(204);
    expect((await call(server.url, key, 'POST', '/v1/spaces', SPACE)).status).toBe(201);

    const hook = { url: 'http://127.0.0.1:9/hook', events: ['hqe.converged'] };
    expect((await call(server.url, key, 'POST', '/v1/hqe/webhooks', hook)).status).toBe(201);
    const second = await call(server.url, key, 'POST', '/v1/hqe/webhooks', hook);
    expect(second.status).toBe(409);
    expect(second.json).toMatchObject({ code: 'quota_exceeded', meta: { quota: 'webhooks', limit: 1, used: 1 } });
  });

  it('refuses new sessions and spaces of an org whose stored bytes reached storage_bytes', async () => {
    const key = await createKey(server.dataDir, 'hoarder', 'hqe.read,hqe.write,spaces.read,spaces.write');
    const first = await call(server.url, key, 'POST', '/v1/hqe/sessions', { primes: [2, 3, 5], schedule: { steps: 200 }, observables: { snapshotsInterval: 1 }, seed: 1 });
    expect(first.status).toBe(201);
    await waitFor('session done', async () => {
      const r = await call(server.url, key, 'GET', `/v1/hqe/sessions/${first.json.id as string}`);
      return r.json.status !== 'running' ? true : undefined;
    });
    const set = await cli(['orgs', 'set-quota', 'hoarder', 'storage_bytes', '1000'], server.dataDir);
    expect(set.code, set.stderr).toBe(0);
    // Overrides are re-read within a few seconds.
    const refusedSession = await waitFor('storage quota applies', async () => {
      const r = await call(server.url, key, 'POST', '/v1/hqe/sessions', { primes: [2, 3, 5], schedule: { steps: 10 }, seed: 1 });
      return r.status === 409 ? r : undefined;
    }, 10_000, 500);
    expect(refusedSession.json).toMatchObject({ code: 'quota_exceeded', meta: { quota: 'storage_bytes', limit: 1000 } });
    const space = await call(server.url, key, 'POST', '/v1/spaces', SPACE);
    expect(space.status).toBe(409);
    expect(space.json.meta.quota).toBe('storage_bytes');
  });
});

describe('WebSocket proposals and the credential\'s rate budget', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ env: { RESONANCE_RATE_LIMIT: '10' } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('charges each proposal one unit of the budget of the key that minted the token, as a REST request would be', async () => {
    const api = new Api(server.url);
    const space = await api.space(SPACE); // 1 unit
    const ws = await Client.started(await api.session(space.id, 'writer')); // 1 unit: 8 left
    for (let i = 0; i < 12; i++) ws.send({ type: 'propose_delta', requestId: `c${i}`, delta: shift(0, i % 6) });
    await ws.waitCount('refusals', (f) => f.type === 'error' && f.code === 'rate_limited', 4);
    await ws.waitCount('accepted', (f) => f.type === 'delta' && typeof f.requestId === 'string', 8);
    const refusals = ws.of('error');
    expect(refusals.map((f) => f.requestId)).toEqual(['c8', 'c9', 'c10', 'c11']);
    expect(refusals[0]!.meta).toMatchObject({ scope: 'credential', limit: 10, remaining: 0 });
    // The same budget: REST is refused too now.
    const rest = await api.call('GET', `/v1/spaces/${space.id}`);
    expect(rest.status).toBe(429);
    await ws.close();
  });
});
