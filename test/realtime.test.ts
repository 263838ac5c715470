/**
 * The realtime WebSocket endpoint (/spaces/{id}) as clients see it: a real server process, real `ws`
 * clients speaking JSON and MessagePack, spaces and session tokens made through the REST API.
 */
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Api, Client, type Frame, refused } from './helpers/realtime.js';
import { cli, sleep, startServer, type TestServer } from './helpers/server.js';

const JWT_SECRET = 'realtime-test-secret-0123456789abcdef';

/** A session token signed by hand; `minter` names the API key it claims to be minted by. */
function signToken(claims: { sub: string; space: string; role?: string; minter?: string }, exp: number, secret = JWT_SECRET): Promise<string> {
  return new SignJWT({ org: 'org_x', space: claims.space, role: claims.role ?? 'writer', minter: claims.minter ?? 'key_x', minter_kind: 'api_key' })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(claims.sub)
    .setIssuer('resonance')
    .setAudience('resonance-space-session')
    .setIssuedAt(Math.min(exp - 60, Math.floor(Date.now() / 1000)))
    .setExpirationTime(exp)
    .sign(new TextEncoder().encode(secret));
}

const shift = (fromVersion: number, i: number, value = 0.01, requestId?: string): Frame => ({
  type: 'propose_delta',
  delta: { fromVersion, ops: [{ op: 'shift_phase', path: `/state/phases/${i}`, value }] },
  ...(requestId ? { requestId } : {}),
});

const deltaVersions = (c: Client): number[] => c.of('delta').map((f) => f.toVersion as number);
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('realtime endpoint', () => {
  let server: TestServer;
  let api: Api;

  beforeAll(async () => {
    server = await startServer({
      env: {
        RESONANCE_JWT_SECRET: JWT_SECRET, RESONANCE_SPACE_CHECKPOINT_MS: '400', RESONANCE_RATE_LIMIT: '100000',
        RESONANCE_WS_PROPOSALS_PER_SECOND: '100000', RESONANCE_QUOTA_DELTAS_PER_MINUTE: '1000000',
      },
    });
    api = new Api(server.url);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('refuses bad tokens, other spaces\' tokens, unknown and archived spaces before the upgrade (problem+json)', async () => {
    const space = await api.space();
    const other = await api.space();
    const s = await api.session(other.id);
    const wsUrl = s.websocketUrl.replace(other.id, space.id);
    const now = Math.floor(Date.now() / 1000);

    const missing = await refused(wsUrl);
    expect(missing.status).toBe(401);
    expect(missing.headers['content-type']).toBe('application/problem+json');
    expect(missing.headers['www-authenticate']).toMatch(/^Bearer /);
    expect(missing.body).toMatchObject({ status: 401, code: 'unauthorized' });

    const forged = await refused(wsUrl, { Authorization: `Bearer ${await signToken({ sub: 'ses_x', space: space.id }, now + 600, 'another-secret-entirely-0123456789')}` });
    expect(forged.status).toBe(401);
    expect(forged.body.code).toBe('invalid_credentials');
    expect(forged.headers['www-authenticate']).toMatch(/invalid_token/);

    const expired = await refused(`${wsUrl}?token=${await signToken({ sub: 'ses_x', space: space.id }, now - 5)}`);
    expect(expired.status).toBe(401);
    expect(expired.body.code).toBe('invalid_credentials');

    const wrongSpace = await refused(wsUrl, { Authorization: `Bearer ${s.token}` });
    expect(wrongSpace.status).toBe(401);
    expect(wrongSpace.body.code).toBe('invalid_credentials');

    const garbage = await refused(wsUrl, { Authorization: 'Bearer not.a.jwt' });
    expect(garbage.status).toBe(401);

    // A valid token (minted by the live dev key) for a space that does not exist.
    const devKey = (JSON.parse((await cli(['keys', 'list', '--org', 'dev', '--json'], server.dataDir)).stdout) as Array<{ id: string }>)[0]!.id;
    const ghost = 'spc_00000000000000000000000000000000';
    const unknown = await refused(wsUrl.replace(space.id, ghost), { Authorization: `Bearer ${await signToken({ sub: 'ses_x', space: ghost, minter: devKey }, now + 600)}` });
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('not_found');

    const badPath = await refused(wsUrl.replace('/spaces/', '/nowhere/'), { Authorization: `Bearer ${s.token}` });
    expect(badPath.status).toBe(404);

    // Archived: 409 before the upgrade (the token is otherwise fine).
    expect((await api.call('PATCH', `/v1/spaces/${other.id}`, { status: 'archived' })).status).toBe(200);
    const archived = await refused(s.websocketUrl, { Authorization: `Bearer ${s.token}` });
    expect(archived.status).toBe(409);
    expect(archived.body.code).toBe('space_archived');
  });

  it('welcome then a snapshot; telemetry at publishHz with increasing t; the hello timeout starts a silent client', async () => {
    const space = await api.space({ policy: { publishHz: 20 } });
    const s = await api.session(space.id);
    const opened = Date.now();
    const silent = await Client.open(await api.session(space.id, 'reader'), { hello: false, viaQuery: true });
    const c = await Client.started(s);
    const welcome = c.frames[0]!;
    expect(welcome).toMatchObject({ type: 'welcome', spaceId: space.id, epoch: 0, version: 0, role: 'writer', encoding: 'json', sessionId: s.sessionId });
    const snap = c.frames[1]!;
    expect(snap.type).toBe('snapshot');
    expect(snap.snapshot).toMatchObject({ spaceId: space.id, epoch: 0, version: 0 });
    expect(snap.snapshot.state.primes).toEqual([2, 3, 5, 7, 11, 13, 17, 19]);
    expect(snap.snapshot.state.phases).toHaveLength(8);

    const first = await c.waitFor('telemetry', (f) => f.type === 'telemetry');
    const t0 = Date.now();
    await sleep(1500);
    const tele = c.of('telemetry').slice(c.of('telemetry').indexOf(first));
    const rate = (tele.length - 1) / ((Date.now() - t0) / 1000);
    expect(rate).toBeGreaterThan(14);
    expect(rate).toBeLessThan(26);
    for (let i = 1; i < tele.length; i++) expect(tele[i]!.t).toBe(tele[i - 1]!.t + 1);
    expect(first).toMatchObject({ version: 0 });
    for (const k of ['resonanceStrength', 'coherence', 'locality', 'entropy', 'dominance']) expect(first).toHaveProperty(k);
    expect(c.of('phases')).toHaveLength(0);

    // phases on request; ping/pong
    c.send({ type: 'subscribe', kinds: ['phases'] });
    const ph = await c.waitFor('phases', (f) => f.type === 'phases');
    expect(ph.phases).toHaveLength(8);
    expect(ph.masses).toHaveLength(8);
    c.send({ type: 'ping', ts: 1737000123 });
    expect(await c.waitFor('pong', (f) => f.type === 'pong')).toEqual({ type: 'pong', ts: 1737000123, _binary: false });

    // The client that never said hello was started after the timeout (2 s), as hello {}.
    const w = await silent.waitFor('welcome', (f) => f.type === 'welcome');
    expect(Date.now() - opened).toBeGreaterThanOrEqual(1500);
    expect(w.role).toBe('reader');
    expect(silent.frames[1]!.type).toBe('snapshot');

    // Operators see it in /metrics: open connections and a space ticking.
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(Number(/^resonance_realtime_connections (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(2);
    expect(Number(/^resonance_live_spaces (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    expect(Number(/^resonance_resident_spaces (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    await Promise.all([c.close(), silent.close()]);
  });

  it('JSON and MessagePack clients see the same deltas; hello may switch the encoding', async () => {
    const space = await api.space();
    const json = await Client.started(await api.session(space.id));
    const mp = await Client.started(await api.session(space.id), { protocols: ['resonance.v1.msgpack'] });
    const switched = await Client.started(await api.session(space.id), { hello: { type: 'hello', encoding: 'msgpack' } });
    expect(mp.frames[0]).toMatchObject({ type: 'welcome', encoding: 'msgpack', _binary: true });
    expect(switched.frames[0]).toMatchObject({ type: 'welcome', encoding: 'msgpack', _binary: true });
    expect(json.frames[0]).toMatchObject({ encoding: 'json', _binary: false });
    for (let i = 0; i < 5; i++) mp.send(shift(0, i, 0.1 * (i + 1), `m${i}`));
    for (const c of [json, mp, switched]) await c.waitCount('5 deltas', (f) => f.type === 'delta', 5);
    const strip = (f: Frame): Frame => {
      const { _binary, requestId, ...rest } = f;
      void _binary;
      void requestId;
      return rest as Frame;
    };
    const a = json.of('delta').map(strip);
    expect(mp.of('delta').map(strip)).toEqual(a);
    expect(switched.of('delta').map(strip)).toEqual(a);
    expect(a.map((f) => f.toVersion)).toEqual([1, 2, 3, 4, 5]);
    expect(a[0]).toMatchObject({ fromVersion: 0, toVersion: 1, epoch: 0, ops: [{ op: 'shift_phase', path: '/state/phases/0', value: 0.1 }] });
    // Only the proposer's copies carry its requestIds; the others have none.
    expect(mp.of('delta').map((f) => f.requestId)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    expect(json.of('delta').every((f) => f.requestId === undefined)).toBe(true);
    // A MessagePack client may still send JSON text frames (and the reverse).
    mp.send({ type: 'ping', ts: 7 }, 'json');
    json.send({ type: 'ping', ts: 8 }, 'msgpack');
    expect(await mp.waitFor('pong', (f) => f.type === 'pong')).toMatchObject({ ts: 7, _binary: true });
    expect(await json.waitFor('pong', (f) => f.type === 'pong')).toMatchObject({ ts: 8, _binary: false });
    await Promise.all([json.close(), mp.close(), switched.close()]);
  });

  it('20 concurrent writers x 10 deltas: every client sees versions 1..200 once, in order; each proposer gets its requestIds', async () => {
    const space = await api.space();
    const writers = await Promise.all(Array.from({ length: 20 }, async (_, w) => Client.started(await api.session(space.id), w % 2 ? { protocols: ['resonance.v1.msgpack'] } : {})));
    const observers = [await Client.started(await api.session(space.id, 'reader')), await Client.started(await api.session(space.id, 'reader'), { protocols: ['resonance.v1.msgpack'] })];
    writers.forEach((c, w) => {
      for (let i = 0; i < 10; i++) c.send(shift(0, (w + i) % 8, 0.001 * (w + 1), `w${w}-${i}`));
    });
    const all = [...writers, ...observers];
    await Promise.all(all.map((c) => c.waitCount('200 deltas', (f) => f.type === 'delta', 200, 20_000)));
    await sleep(200); // nothing more (no duplicates) arrives
    for (const c of all) {
      expect(deltaVersions(c)).toEqual(range(1, 200));
      for (const d of c.of('delta')) expect(d.fromVersion).toBe(d.toVersion - 1);
    }
    writers.forEach((c, w) => {
      const mine = c.of('delta').filter((d) => d.requestId !== undefined);
      expect(mine.map((d) => d.requestId).sort()).toEqual(range(0, 9).map((i) => `w${w}-${i}`).sort());
      // In the order sent, and authored by this session.
      expect(mine.map((d) => d.requestId)).toEqual(range(0, 9).map((i) => `w${w}-${i}`));
      const sessionId = c.frames[0]!.sessionId as string;
      expect(mine.every((d) => d.author === sessionId)).toBe(true);
      expect(c.of('delta').filter((d) => d.author === sessionId)).toHaveLength(10);
    });
    expect(observers.every((c) => c.of('delta').every((d) => d.requestId === undefined))).toBe(true);
    expect(all.every((c) => c.of('error').length === 0 && c.of('conflict').length === 0)).toBe(true);
    await Promise.all(all.map((c) => c.close()));
  });

  it('conflict frame for a set_phase on a path written after fromVersion; error frames for a reader and invalid deltas', async () => {
    const space = await api.space();
    const a = await Client.started(await api.session(space.id));
    const b = await Client.started(await api.session(space.id));
    const reader = await Client.started(await api.session(space.id, 'reader'));
    const set = (value: number, requestId: string): Frame => ({ type: 'propose_delta', requestId, delta: { fromVersion: 0, ops: [{ op: 'set_phase', path: '/state/phases/2', value }] } });
    a.send(set(1, 'a1'));
    await a.waitFor('a1', (f) => f.requestId === 'a1');
    b.send(set(2, 'b1'));
    const conflict = await b.waitFor('conflict', (f) => f.type === 'conflict');
    expect(conflict).toMatchObject({ type: 'conflict', expectedFrom: 0, actual: 1, code: 'conflict', requestId: 'b1' });
    expect(typeof conflict.detail).toBe('string');
    expect(b.of('delta').map((d) => d.toVersion)).toEqual([1]);

    reader.send(shift(1, 0, 0.1, 'r1'));
    expect(await reader.waitFor('error', (f) => f.type === 'error')).toMatchObject({ code: 'insufficient_role', requestId: 'r1' });

    a.send({ type: 'propose_delta', requestId: 'bad', delta: { fromVersion: 1, ops: [{ op: 'shift_phase', path: '/state/phases/99', value: 1 }] } });
    const invalid = await a.waitFor('error', (f) => f.type === 'error');
    expect(invalid).toMatchObject({ code: 'validation_failed', requestId: 'bad' });
    expect(invalid.errors[0]).toMatchObject({ pointer: '/ops/0/path' });
    a.send(shift(7, 0, 0.1, 'ahead'));
    expect(await a.waitFor('ahead', (f) => f.type === 'conflict')).toMatchObject({ code: 'version_ahead', expectedFrom: 7, actual: 1, requestId: 'ahead' });
    await Promise.all([a.close(), b.close(), reader.close()]);
  });

  it('resume: hello lastVersion replays exactly the missed deltas; a version older than the history gets a snapshot', async () => {
    const space = await api.space({ policy: { historySeconds: 1 } });
    const writer = await Client.started(await api.session(space.id));
    const s = await api.session(space.id, 'reader');
    const c1 = await Client.started(s);
    for (let i = 0; i < 3; i++) writer.send(shift(0, i));
    await c1.waitCount('3 deltas', (f) => f.type === 'delta', 3);
    await c1.close();
    for (let i = 0; i < 4; i++) writer.send(shift(0, i, 0.02));
    await writer.waitCount('7 deltas', (f) => f.type === 'delta', 7);

    const c2 = await Client.started(s, { hello: { type: 'hello', lastVersion: 3 } });
    await c2.waitCount('replay', (f) => f.type === 'delta', 4);
    expect(c2.frames[0]).toMatchObject({ type: 'welcome', version: 7 });
    expect(c2.frames.slice(1, 5).map((f) => [f.type, f.toVersion])).toEqual([['delta', 4], ['delta', 5], ['delta', 6], ['delta', 7]]);
    expect(c2.of('snapshot')).toHaveLength(0);
    // Live deltas follow the replay without a gap.
    writer.send(shift(0, 0, 0.03));
    await c2.waitCount('delta 8', (f) => f.type === 'delta', 5);
    expect(deltaVersions(c2)).toEqual([4, 5, 6, 7, 8]);

    // historySeconds 1 and a checkpoint every 400 ms: versions 1..8 leave the history.
    await sleep(2500);
    const c3 = await Client.started(s, { hello: { type: 'hello', lastVersion: 1 } });
    expect(c3.frames[0]).toMatchObject({ type: 'welcome', version: 8 });
    expect(c3.frames[1]).toMatchObject({ type: 'snapshot', snapshot: { version: 8 } });
    expect(c3.of('delta')).toHaveLength(0);
    await Promise.all([writer.close(), c2.close(), c3.close()]);
  });

  it('a basis change mid-stream: every client gets delta(replace_basis), then a snapshot of epoch + 1', async () => {
    const space = await api.space();
    const json = await Client.started(await api.session(space.id));
    const mp = await Client.started(await api.session(space.id), { protocols: ['resonance.v1.msgpack'] });
    json.send(shift(0, 1, 0.5));
    await mp.waitFor('delta 1', (f) => f.type === 'delta');
    const r = await api.call('POST', `/v1/spaces/${space.id}/basis`, { primes: [2, 3, 5, 7, 11, 13, 17, 19, 23, 29] });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ epoch: 1, version: 2 });
    for (const c of [json, mp]) {
      const snap = await c.waitFor('epoch snapshot', (f) => f.type === 'snapshot' && f.snapshot.epoch === 1);
      const i = c.frames.indexOf(snap);
      expect(c.frames.slice(0, i).filter((f) => f.type === 'delta').map((f) => f.toVersion)).toEqual([1, 2]);
      const basis = c.of('delta')[1]!;
      expect(basis).toMatchObject({ fromVersion: 1, toVersion: 2, epoch: 1, ops: [{ op: 'replace_basis', path: '/state/basis' }] });
      expect(c.frames.indexOf(basis)).toBeLessThan(i);
      expect(snap.snapshot).toMatchObject({ epoch: 1, version: 2 });
      expect(snap.snapshot.state.primes).toHaveLength(10);
    }
    // The new epoch goes on: a delta of epoch 1 reaches both.
    json.send({ type: 'propose_delta', requestId: 'e1', delta: { fromVersion: 2, epoch: 1, ops: [{ op: 'shift_phase', path: '/state/phases/9', value: 0.1 }] } });
    for (const c of [json, mp]) expect(await c.waitFor('delta 3', (f) => f.type === 'delta' && f.toVersion === 3)).toMatchObject({ epoch: 1 });
    // A delta made for the old epoch is a conflict.
    mp.send({ type: 'propose_delta', requestId: 'old', delta: { fromVersion: 1, epoch: 0, ops: [{ op: 'shift_phase', path: '/state/phases/0', value: 0.1 }] } });
    expect(await mp.waitFor('stale', (f) => f.type === 'conflict')).toMatchObject({ code: 'stale_epoch', requestId: 'old' });
    await Promise.all([json.close(), mp.close()]);
  });

  it('abuse: bad frames get error frames, the 11th within 10 s closes with 4008, oversized ones 1009; the space carries on', async () => {
    const space = await api.space();
    const good = await Client.started(await api.session(space.id));
    const bad = await Client.started(await api.session(space.id));
    bad.send({ type: 'no_such_frame' });
    const invalid = await bad.waitFor('invalid', (f) => f.type === 'error');
    expect(invalid).toMatchObject({ code: 'invalid_frame' });
    bad.ws.send('{not json');
    bad.ws.send(Buffer.from([0xc1]), { binary: true });
    bad.ws.send('x'.repeat(70 * 1024)); // over the 64 KiB frame limit, under ws's hard cap
    bad.send({ type: 'propose_delta', delta: { fromVersion: -1, ops: [] } });
    const errs = await bad.waitCount('5 errors', (f) => f.type === 'error', 5);
    expect(errs.map((e) => e.code)).toEqual(['invalid_frame', 'malformed_frame', 'malformed_frame', 'frame_too_large', 'invalid_frame']);
    for (let i = 0; i < 6; i++) bad.ws.send('nope');
    expect(await bad.closed).toBe(4008);
    expect(bad.of('error').at(-1)).toMatchObject({ code: 'too_many_bad_frames' });
    expect(bad.of('error')).toHaveLength(11);

    const huge = await Client.started(await api.session(space.id));
    huge.ws.send(Buffer.alloc(300 * 1024), { binary: true });
    expect(await huge.closed).toBe(1009);

    good.send(shift(0, 0, 0.1, 'ok'));
    expect(await good.waitFor('ok', (f) => f.requestId === 'ok')).toMatchObject({ toVersion: 1 });
    await good.waitFor('telemetry after', (f) => f.type === 'telemetry' && f.version === 1);
    await good.close();
  });

  it('members: maxMembers refuses a third session and a rejoin (4409); removal closes 4403; leaving on the last close', async () => {
    const space = await api.space({ policy: { maxMembers: 2 } });
    const s1 = await api.session(space.id);
    const s2 = await api.session(space.id);
    const third = await api.call('POST', `/v1/spaces/${space.id}/sessions`, {});
    expect(third.status).toBe(409);
    expect(third.json.code).toBe('space_full');

    const members = async (): Promise<string[]> => ((await api.call('GET', `/v1/spaces/${space.id}/members`)).json.items as Array<{ id: string }>).map((m) => m.id).sort();
    // Two sockets of one member: it stays until the last closes.
    const c1a = await Client.started(s1);
    const c1b = await Client.started(s1);
    const c2 = await Client.started(s2);
    await c1a.close();
    await sleep(200);
    expect(await members()).toEqual([s1.sessionId, s2.sessionId].sort());
    await c1b.close();
    for (let i = 0; i < 50 && (await members()).length !== 1; i++) await sleep(50);
    expect(await members()).toEqual([s2.sessionId]);

    // Its seat is taken: reconnecting cannot rejoin.
    const s3 = await api.session(space.id);
    const again = await Client.open(s1);
    expect(await again.closed).toBe(4409);
    expect(again.of('error')[0]).toMatchObject({ code: 'space_full' });
    expect(again.of('welcome')).toHaveLength(0);

    // The owner removes a member: its socket closes with 4403 and it cannot come back with that token.
    const c3 = await Client.started(s3);
    expect((await api.call('DELETE', `/v1/spaces/${space.id}/members/${s3.sessionId}`)).status).toBe(204);
    expect(await c3.closed).toBe(4403);
    expect(c3.of('error').at(-1)).toMatchObject({ code: 'member_removed' });
    const back = await refused(s3.websocketUrl, { Authorization: `Bearer ${s3.token}` });
    expect(back.status).toBe(403);
    expect(c2.closeCode).toBeNull();
    await c2.close();
  });

  it('archive and delete close the sockets with 4410 after an error frame', async () => {
    const a = await api.space();
    const d = await api.space();
    const ca = await Client.started(await api.session(a.id));
    const cd = await Client.started(await api.session(d.id), { protocols: ['resonance.v1.msgpack'] });
    expect((await api.call('PATCH', `/v1/spaces/${a.id}`, { status: 'archived' })).status).toBe(200);
    expect(await ca.closed).toBe(4410);
    expect(ca.of('error').at(-1)).toMatchObject({ code: 'space_archived' });
    expect((await api.call('DELETE', `/v1/spaces/${d.id}`)).status).toBe(204);
    expect(await cd.closed).toBe(4410);
    expect(cd.of('error').at(-1)).toMatchObject({ code: 'space_deleted' });
  });
});

describe('realtime backpressure and shutdown', () => {
  let server: TestServer;
  let api: Api;
  beforeAll(async () => {
    server = await startServer({
      // Bursts of proposals far past the per-connection and per-org defaults: this is about backpressure.
      env: {
        RESONANCE_JWT_SECRET: JWT_SECRET, RESONANCE_WS_SLOW_BYTES: '16384', RESONANCE_WS_BUFFER_CAP_BYTES: '131072', RESONANCE_RATE_LIMIT: '100000',
        RESONANCE_WS_PROPOSALS_PER_SECOND: '100000', RESONANCE_QUOTA_DELTAS_PER_MINUTE: '1000000',
      },
    });
    api = new Api(server.url);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('a slow consumer: telemetry conflated, deltas skipped past the cap, then one snapshot and contiguous deltas; others get every delta', async () => {
    // 64 primes; deltas of 256 ops (~17 KB of JSON each) overflow the ~4 MB loopback buffers quickly.
    const primes: number[] = [];
    for (let n = 2; primes.length < 64; n++) if (primes.every((p) => n % p !== 0)) primes.push(n);
    const space = await api.space({ basis: { primes }, policy: { publishHz: 30 } });
    const writer = await Client.started(await api.session(space.id));
    const normal = await Client.started(await api.session(space.id, 'reader'));
    const slow = await Client.started(await api.session(space.id, 'reader'));
    writer.send({ type: 'subscribe', kinds: ['deltas'] });
    await slow.waitCount('telemetry', (f) => f.type === 'telemetry', 3);
    const socket = (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();

    const big = (n: number): Frame => ({
      type: 'propose_delta', requestId: `b${n}`,
      delta: { fromVersion: 0, ops: Array.from({ length: 256 }, (_, i) => ({ op: 'shift_phase', path: `/state/phases/${i % 64}`, value: 0.000123456789 * (i + 1) })) },
    });
    const N = 500;
    for (let sent = 0; sent < N; ) {
      const batch = Math.min(40, N - sent);
      for (let i = 0; i < batch; i++) writer.send(big(sent + i));
      sent += batch;
      await writer.waitCount('acks', (f) => f.type === 'delta', sent, 20_000);
    }
    await normal.waitCount('all deltas', (f) => f.type === 'delta', N, 20_000);
    await sleep(300);
    socket.resume();

    // The slow client catches up: a snapshot replaces what it skipped, then live deltas resume.
    const recovery = await slow.waitFor('recovery snapshot', (f) => f.type === 'snapshot' && f !== slow.frames[1], 20_000);
    for (let i = 0; i < 5; i++) writer.send(shift(N, i, 0.001, `after${i}`));
    await normal.waitCount('5 more', (f) => f.type === 'delta', N + 5);
    await slow.waitFor('last delta', (f) => f.type === 'delta' && f.toVersion === N + 5, 20_000);

    expect(deltaVersions(normal)).toEqual(range(1, N + 5));
    const at = slow.frames.indexOf(recovery);
    const before = slow.frames.slice(0, at).filter((f) => f.type === 'delta').map((f) => f.toVersion as number);
    const after = slow.frames.slice(at).filter((f) => f.type === 'delta').map((f) => f.toVersion as number);
    const v = recovery.snapshot.version as number;
    expect(before).toEqual(range(1, before.length));
    expect(before.length).toBeLessThan(N); // some were skipped
    expect(v).toBeGreaterThanOrEqual(before.length);
    expect(after).toEqual(range(v + 1, N + 5));
    expect(slow.of('snapshot')).toHaveLength(2);
    // Telemetry was conflated: a jump in t, and fewer frames than the normal client got.
    const ts = slow.of('telemetry').map((f) => f.t as number);
    expect(ts.some((t, i) => i > 0 && t - ts[i - 1]! > 1)).toBe(true);
    for (let i = 1; i < ts.length; i++) expect(ts[i]!).toBeGreaterThan(ts[i - 1]!);
    expect(slow.of('telemetry').length).toBeLessThan(normal.of('telemetry').length - 10);
    const nts = normal.of('telemetry').map((f) => f.t as number);
    for (let i = 1; i < nts.length; i++) expect(nts[i]).toBe(nts[i - 1]! + 1);
    await Promise.all([writer.close(), normal.close(), slow.close()]);
  });

  it('the writer proposing while stale gets its proposals acknowledged, with their versions, in the recovery snapshot', async () => {
    const space = await api.space();
    const writer = await Client.started(await api.session(space.id));
    const socket = (writer.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    await writer.waitFor('telemetry', (f) => f.type === 'telemetry');
    socket.pause();
    const big = (n: number): Frame => ({
      type: 'propose_delta', requestId: `p${n}`,
      delta: { fromVersion: 0, ops: Array.from({ length: 256 }, (_, i) => ({ op: 'shift_phase', path: `/state/phases/${i % 8}`, value: 0.000123456789 * (i + 1) })) },
    });
    // Paused, it cannot see acks: pace by the space's version over REST.
    for (let n = 0; n < 400; n++) {
      writer.send(big(n));
      if (n % 40 === 39) {
        for (let i = 0; i < 200; i++) {
          if ((await api.call('GET', `/v1/spaces/${space.id}`)).json.version >= n + 1) break;
          await sleep(20);
        }
      }
    }
    socket.resume();
    const recovery = await writer.waitFor('recovery snapshot', (f) => f.type === 'snapshot' && f !== writer.frames[1], 20_000);
    await sleep(300);
    const acks = (recovery.acks as Array<{ requestId: string; toVersion: number }> | undefined) ?? [];
    const acked = new Set([...writer.of('delta').map((d) => d.requestId as string), ...acks.map((a) => a.requestId)]);
    expect(acks.length).toBeGreaterThan(0);
    // Each ack names the version its delta got: within the snapshot, and none also delivered as a frame.
    for (const a of acks) expect(a.toVersion).toBeLessThanOrEqual(recovery.snapshot.version);
    expect(new Set([...writer.of('delta').map((d) => d.toVersion as number), ...acks.map((a) => a.toVersion)]).size).toBe(writer.of('delta').length + acks.length);
    expect(acked.size).toBe(400);
    expect(recovery.snapshot.version).toBe(400);
    await writer.close();
  });

  it('shutdown closes open sockets with 1001', async () => {
    const space = await api.space();
    const c = await Client.started(await api.session(space.id));
    await server.stop();
    expect(await c.closed).toBe(1001);
  });
});
