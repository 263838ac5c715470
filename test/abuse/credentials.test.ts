/**
 * Credentials as an attacker and an operator meet them, against a real server process and its SQLite file:
 * who may mint session tokens, what revoking a key or an OAuth client (with the CLI, another process) does
 * to requests, WebSockets and SSE streams already open, and Idempotency-Key scoping, ordering and crashes.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, refused, type Session } from '../helpers/realtime.js';
import { cli, DEMO_ROOM, DEV_KEY, readSse, type Reply, request, type SseRead, startServer, type TestServer, waitFor } from '../helpers/server.js';

type Json = Record<string, unknown>;


let srv: TestServer;

const call = (method: string, path: string, headers: Record<string, string>, body?: unknown, base = srv.url): Promise<Reply> => request(base, method, path, headers, body);

const key = (k: string): Record<string, string> => ({ 'X-Api-Key': k });
const bearer = (t: string): Record<string, string> => ({ Authorization: `Bearer ${t}` });

function expectProblem(r: Reply, status: number, code: string): void {
  expect({ status: r.status, code: r.json.code }, JSON.stringify(r.json)).toEqual({ status, code });
}

/** `keys create --json`: id and secret of a new API key of org `dev`. */
async function newKey(scopes = 'hqe.read,hqe.write,spaces.read,spaces.write', org = 'dev'): Promise<{ id: string; key: string }> {
  const r = await cli(['keys', 'create', '--org', org, '--scopes', scopes, '--json'], srv.dataDir);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { id: string; key: string };
}

async function newSpace(headers: Record<string, string>, body: Json = {}): Promise<string> {
  const r = await call('POST', '/v1/spaces', headers, { ...DEMO_ROOM, ...body });
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  return r.json.id as string;
}

async function mint(spaceId: string, headers: Record<string, string>, body: Json = {}): Promise<Session> {
  const r = await call('POST', `/v1/spaces/${spaceId}/sessions`, headers, body);
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  return r.json as unknown as Session;
}

/** An SSE stream read in the background: `opened` once its headers came, `done` when it ends (or after 20 s). */
function stream(path: string, headers: Record<string, string>): { opened: Promise<void>; done: Promise<SseRead> } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const done = readSse(srv.url + path, headers, { timeoutMs: 20_000, allowTimeout: true, onOpen: () => open() });
  return { opened, done };
}

/** Ends, in time, only when the server ends it: a stream still open after the revocation reads until its timeout. */
async function expectEnded(s: { done: Promise<SseRead> }, what: string): Promise<void> {
  const read = await s.done;
  expect(read.status, what).toBe(200);
  expect(read.ended, `${what} was still open 20 s later`).toBe(true);
}

/** Runs for a few seconds on the CPU engine (k = 64). */
function slowRun(steps: number, seed: number): Json {
  const primes: number[] = [];
  for (let c = 2; primes.length < 64; c++) if (primes.every((p) => c % p !== 0)) primes.push(c);
  return { primes, schedule: { steps, plateauT: 1_000_000_000 }, observables: { metricsInterval: 1_000_000, snapshotsInterval: 1_000_000 }, seed };
}

beforeAll(async () => {
  srv = await startServer();
});

afterAll(async () => {
  await srv?.stop();
});

describe('minting session tokens', () => {
  it('is for org credentials only: a session token gets 403 org_credential_required', async () => {
    const space = await newSpace(key(DEV_KEY));
    const owner = await mint(space, key(DEV_KEY), { role: 'owner' });
    const renewed = await call('POST', `/v1/spaces/${space}/sessions`, bearer(owner.token), { role: 'reader' });
    expectProblem(renewed, 403, 'org_credential_required');
    expect(renewed.json.token).toBeUndefined();
  });
});

describe('revoking an API key', () => {
  it('refuses its session tokens within a second (REST, SSE, upgrade) and ends their open WebSockets and SSE streams', async () => {
    const minter = await newKey();
    const space = await newSpace(key(minter.key));
    const [wsSession, sseSession] = [await mint(space, key(minter.key)), await mint(space, key(minter.key), { role: 'reader' })];
    const socket = await Client.started(wsSession);
    const telemetry = stream(`/v1/spaces/${space}/telemetry`, bearer(sseSession.token));
    const hqe = await call('POST', '/v1/hqe/sessions', key(minter.key), { ...slowRun(1_000_000, 3), primes: [2, 3, 5, 7] });
    expect(hqe.status).toBe(201);
    const hqeStream = stream(`/v1/hqe/sessions/${hqe.json.id as string}/stream`, key(minter.key));
    await Promise.all([telemetry.opened, hqeStream.opened]);
    // Still fine before the revocation.
    expect((await call('GET', `/v1/spaces/${space}`, bearer(wsSession.token))).status).toBe(200);

    const revoked = await cli(['keys', 'revoke', minter.id], srv.dataDir);
    expect(revoked.code, revoked.stderr).toBe(0);

    // For every new request, once the credential cache's answer (at most RESONANCE_AUTH_CACHE_MS, 1 s) is stale.
    // (The key's lookup by hash and its tokens' check by id are cached apart: each answer is at most 1 s old.)
    const refusedSoon = (headers: Record<string, string>) =>
      waitFor('refused', async () => ((await call('GET', `/v1/spaces/${space}`, headers)).status === 401 ? true : undefined), 2000, 50);
    await refusedSoon(key(minter.key));
    await refusedSoon(bearer(wsSession.token));
    expectProblem(await call('GET', `/v1/spaces/${space}`, bearer(wsSession.token)), 401, 'invalid_credentials');
    expectProblem(await call('GET', `/v1/spaces/${space}/snapshot`, key(minter.key)), 401, 'invalid_credentials');
    const sse = await fetch(`${srv.url}/v1/spaces/${space}/telemetry?token=${sseSession.token}`);
    expect(sse.status).toBe(401);
    expect(((await sse.json()) as Json).code).toBe('invalid_credentials');
    const upgrade = await refused(wsSession.websocketUrl, bearer(wsSession.token));
    expect([upgrade.status, upgrade.body.code]).toEqual([401, 'invalid_credentials']);

    // Within the sweep, for what was already open.
    expect(await socket.closed).toBe(4401);
    expect(socket.frames.find((f) => f.type === 'error')).toMatchObject({ code: 'credential_revoked' });
    await expectEnded(telemetry, 'the telemetry stream');
    await expectEnded(hqeStream, 'the HQE session stream');
    // Ended by the revocation, not by the session: it is still running (or done with its schedule, which keeps a stream open).
    expect(['running', 'completed']).toContain((await call('GET', `/v1/hqe/sessions/${hqe.json.id as string}`, key(DEV_KEY))).json.status);
    // The session keeps running for its org (the dev key's): stop it to keep the CPU free.
    expect((await call('DELETE', `/v1/hqe/sessions/${hqe.json.id as string}`, key(DEV_KEY))).status).toBe(204);
  }, 40_000);
});

describe('revoking an OAuth client', () => {
  it('refuses its access tokens, the session tokens they minted and new tokens, and closes its sockets', async () => {
    const created = await cli(['clients', 'create', '--org', 'dev', '--json'], srv.dataDir);
    const client = JSON.parse(created.stdout) as { client_id: string; client_secret: string };
    const grant = { grant_type: 'client_credentials', client_id: client.client_id, client_secret: client.client_secret };
    const issued = await call('POST', '/oauth/token', {}, grant);
    expect(issued.status).toBe(200);
    const access = issued.json.access_token as string;
    const space = await newSpace(bearer(access));
    const session = await mint(space, bearer(access));
    const socket = await Client.started(session);

    const revoked = await cli(['clients', 'revoke', client.client_id], srv.dataDir);
    expect(revoked.code, revoked.stderr).toBe(0);
    const listed = await cli(['clients', 'list', '--org', 'dev', '--json'], srv.dataDir);
    expect((JSON.parse(listed.stdout) as Json[]).find((c) => c.client_id === client.client_id)?.revokedAt).toEqual(expect.any(String));

    // Within the credential cache's second.
    for (const token of [access, session.token]) {
      await waitFor('refused', async () => ((await call('GET', `/v1/spaces/${space}`, bearer(token))).status === 401 ? true : undefined), 2000, 50);
    }
    expectProblem(await call('GET', `/v1/spaces/${space}`, bearer(access)), 401, 'invalid_credentials');
    expectProblem(await call('GET', `/v1/spaces/${space}`, bearer(session.token)), 401, 'invalid_credentials');
    expectProblem(await call('POST', '/oauth/token', {}, grant), 401, 'invalid_client');
    expect(await socket.closed).toBe(4401);
    expect(socket.frames.find((f) => f.type === 'error')).toMatchObject({ code: 'credential_revoked' });
  }, 30_000);
});

describe('removing a member', () => {
  it('ends its open telemetry stream', async () => {
    const space = await newSpace(key(DEV_KEY));
    const member = await mint(space, key(DEV_KEY), { role: 'reader' });
    const telemetry = stream(`/v1/spaces/${space}/telemetry?token=${member.token}`, {});
    await telemetry.opened;
    expect((await call('DELETE', `/v1/spaces/${space}/members/${member.sessionId}`, key(DEV_KEY))).status).toBe(204);
    await expectEnded(telemetry, 'the removed member\'s telemetry stream');
  }, 30_000);
});

describe('Idempotency-Key', () => {
  it("is the credential's own: a reader reusing the owner's key does not get the owner's token", async () => {
    const space = await newSpace(key(DEV_KEY));
    const idem = { 'Idempotency-Key': randomUUID() };
    const owner = await call('POST', `/v1/spaces/${space}/sessions`, { ...key(DEV_KEY), ...idem }, { role: 'owner' });
    expect(owner.status).toBe(201);
    const reader = await mint(space, key(DEV_KEY), { role: 'reader' });
    const stolen = await call('POST', `/v1/spaces/${space}/sessions`, { ...bearer(reader.token), ...idem }, { role: 'owner' });
    expectProblem(stolen, 403, 'org_credential_required');
    expect(stolen.headers.get('idempotent-replayed')).toBeNull();

    // Another key of the same org: without the scope it is refused first; with it, the key is a new one.
    idem['Idempotency-Key'] = randomUUID();
    const body = { primes: [2, 3], schedule: { steps: 3 }, seed: 4 };
    const first = await call('POST', '/v1/hqe/sessions', { ...key(DEV_KEY), ...idem }, body);
    expect(first.status).toBe(201);
    expectProblem(await call('POST', '/v1/hqe/sessions', { ...key((await newKey('hqe.read')).key), ...idem }, body), 403, 'insufficient_scope');
    const other = await call('POST', '/v1/hqe/sessions', { ...key((await newKey('hqe.write')).key), ...idem }, body);
    expect(other.status).toBe(201);
    expect(other.headers.get('idempotent-replayed')).toBeNull();
    expect(other.json.id).not.toBe(first.json.id);
    // The same key of the same credential still replays.
    const again = await call('POST', '/v1/hqe/sessions', { ...key(DEV_KEY), ...idem }, body);
    expect([again.status, again.headers.get('idempotent-replayed'), again.json.id]).toEqual([201, 'true', first.json.id]);
  });

  it('replays only after the access checks: a removed member, or a guest no longer let in, is refused', async () => {
    const space = await newSpace(key(DEV_KEY), { policy: { allowGuest: true } });
    const writer = await mint(space, key(DEV_KEY), { role: 'writer' });
    const idem = { 'Idempotency-Key': randomUUID() };
    const delta = { fromVersion: 0, ops: [{ op: 'shift_phase', path: '/state/phases/0', value: 0.01 }] };
    expect((await call('POST', `/v1/spaces/${space}/deltas`, { ...bearer(writer.token), ...idem }, delta)).status).toBe(200);
    expect((await call('DELETE', `/v1/spaces/${space}/members/${writer.sessionId}`, key(DEV_KEY))).status).toBe(204);
    expectProblem(await call('POST', `/v1/spaces/${space}/deltas`, { ...bearer(writer.token), ...idem }, delta), 403, 'member_removed');

    idem['Idempotency-Key'] = randomUUID();
    const guest = await newKey('spaces.read,spaces.write', 'guests');
    expect((await call('POST', `/v1/spaces/${space}/sessions`, { ...key(guest.key), ...idem }, {})).status).toBe(201);
    expect((await call('PATCH', `/v1/spaces/${space}`, key(DEV_KEY), { policy: { allowGuest: false } })).status).toBe(200);
    expectProblem(await call('POST', `/v1/spaces/${space}/sessions`, { ...key(guest.key), ...idem }, {}), 404, 'not_found');
  });

  it('hashes the body as sent: a deeply nested body with a key is a 400, never a 500', async () => {
    const deep = `{"primes":[2,3],"x":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    const res = await fetch(`${srv.url}/v1/hqe/run`, { method: 'POST', headers: { ...key(DEV_KEY), 'content-type': 'application/json', 'Idempotency-Key': randomUUID() }, body: deep });
    expect(res.status).toBe(400);
  });
});

describe('Idempotency-Key across a crash', () => {
  it('releases a key whose request died with the process, replays a completed one after a restart, purges expired ones', async () => {
    const crashing = await startServer();
    const dataDir = crashing.dataDir;
    const servers: TestServer[] = [crashing];
    try {
      const idem = { ...key(DEV_KEY), 'Idempotency-Key': randomUUID() };
      const body = slowRun(60_000, 9);
      const pending = call('POST', '/v1/hqe/run', idem, body, crashing.url).catch((err: unknown) => err);
      // Killed while the claim is in flight (the run takes seconds).
      const db = new Database(join(dataDir, 'resonance.db'), { readonly: true, fileMustExist: true });
      try {
        await waitFor('the in-flight claim', async () => (db.prepare("SELECT 1 AS x FROM idempotency_keys WHERE state = 'in_flight'").get() as { x: number } | undefined)?.x);
      } finally {
        db.close();
      }
      await crashing.kill('SIGKILL');
      await pending;

      const restarted = await startServer({ dataDir });
      servers.push(restarted);
      const retried = await call('POST', '/v1/hqe/run', idem, body, restarted.url);
      expect(retried.status, JSON.stringify(retried.json)).toBe(200);
      expect(retried.headers.get('idempotent-replayed')).toBeNull();
      await restarted.kill('SIGKILL');

      // An expired record, written as the previous process could have left it, goes at the next start.
      const writer = new Database(join(dataDir, 'resonance.db'));
      writer.prepare("INSERT INTO idempotency_keys (subject, key, method, path, body_hash, state, status, headers, body, boot_id, created_at) VALUES ('key_old', 'old', 'POST', '/v1/hqe/run', 'h', 'done', 200, '{}', '{}', 'gone', ?)")
        .run(Date.now() - 25 * 3600 * 1000);
      writer.close();

      const again = await startServer({ dataDir });
      servers.push(again);
      const replayed = await call('POST', '/v1/hqe/run', idem, body, again.url);
      expect([replayed.status, replayed.headers.get('idempotent-replayed'), replayed.json.runId]).toEqual([200, 'true', retried.json.runId]);
      const check = new Database(join(dataDir, 'resonance.db'), { readonly: true });
      try {
        expect(check.prepare("SELECT count(*) AS n FROM idempotency_keys WHERE key = 'old'").get()).toEqual({ n: 0 });
      } finally {
        check.close();
      }
    } finally {
      // The first server made the data directory: stopping it last removes it.
      for (const s of servers.reverse()) await s.stop();
    }
  }, 90_000);
});
