/**
 * Authentication and rate limits as a client meets them: a real Koa app on an ephemeral port, a real SQLite
 * file, real fetch. The CLI commands are called in-process against the same data directory, so a key the
 * CLI prints is a key the server accepts.
 */
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import { decodeJwt } from 'jose';
import Koa from 'koa';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { clientsCommand, keysCommand } from '../src/cli/keys.js';
import { authenticate, requireScope, seedBootstrapKey } from '../src/http/auth.js';
import { configFromEnv } from '../src/http/config.js';
import { notFound, problemMiddleware } from '../src/http/problem.js';
import { chargeWork, WindowRateLimiter, rateLimit, workUnits } from '../src/http/ratelimit.js';
import { oauthRoutes } from '../src/http/routes/oauth.js';
import { issueSessionToken, issueToken, verifyToken } from '../src/http/tokens.js';
import { ALL_SCOPES, type AppState, type Scope } from '../src/http/types.js';
import { SqliteAuthStore } from '../src/store/auth.js';
import { type Db, openDb } from '../src/store/db.js';

const config = configFromEnv({}, { rateLimit: 10, rateWindowSeconds: 60, workUnit: 1000, tokenTtlSeconds: 120 });

let dir: string;
let db: Db;
let store: SqliteAuthStore;
let server: Server;
let base: string;
/** Errors that escaped as 500s: there must be none. */
const unexpected: unknown[] = [];
/** Times the /v1/work handler got past chargeWork. */
let workDone = 0;

function buildApp(): Koa {
  const app = new Koa();
  app.use(problemMiddleware((err) => unexpected.push(err)));
  app.use(bodyParser());
  app.use(oauthRoutes({ authStore: store, config }).routes());
  const api = new Router({ prefix: '/v1' });
  api.use(authenticate({ authStore: store, config }), rateLimit(new WindowRateLimiter(config.rateLimit, config.rateWindowSeconds)));
  api.get('/read', requireScope('hqe.read'), (ctx) => {
    const p = (ctx.state as AppState).principal!;
    ctx.body = { orgId: p.orgId, via: p.via, subject: p.subject, scopes: [...p.scopes] };
  });
  api.post('/work', requireScope('hqe.write'), async (ctx) => {
    const { steps, k } = ctx.request.body as { steps: number; k: number };
    await chargeWork(ctx, workUnits(steps * k * k, config.workUnit));
    workDone++;
    ctx.body = { ok: true };
  });
  const whoami = (ctx: Koa.Context): void => {
    const p = (ctx.state as AppState).principal!;
    ctx.body = { orgId: p.orgId, via: p.via, subject: p.subject, scopes: [...p.scopes], session: p.session ?? null };
  };
  api.get('/spaces/:id', requireScope('spaces.read'), whoami);
  api.get('/spaces/:id/telemetry', requireScope('spaces.read'), whoami);
  api.get('/missing', requireScope('hqe.read'), () => {
    throw notFound('thing 42');
  });
  app.use(api.routes());
  return app;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'resonance-auth-'));
  db = openDb(join(dir, 'resonance.db'));
  store = new SqliteAuthStore(db);
  server = buildApp().listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  db.close();
  await rm(dir, { recursive: true, force: true });
});

interface ProblemJson {
  code: string;
  status: number;
  title: string;
  detail?: string;
  meta?: Record<string, unknown>;
}

async function call(path: string, init: RequestInit = {}): Promise<{ res: Response; body: Record<string, unknown> }> {
  const res = await fetch(base + path, init);
  const text = await res.text();
  return { res, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

const withKey = (key: string, init: RequestInit = {}): RequestInit => ({ ...init, headers: { ...(init.headers as Record<string, string>), 'X-Api-Key': key } });
const withBearer = (token: string, init: RequestInit = {}): RequestInit => ({
  ...init,
  headers: { ...(init.headers as Record<string, string>), Authorization: `Bearer ${token}` },
});
const postJson = (body: unknown): RequestInit => ({ method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

async function newKey(scopes: Scope[] = ['hqe.read', 'hqe.write'], org = 'acme'): Promise<string> {
  return (await store.createApiKey(org, scopes)).key;
}

function expectProblem(res: Response, body: Record<string, unknown>, status: number, code: string): ProblemJson {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(body).toMatchObject({ status, code, type: `/problems/${code}` });
  return body as unknown as ProblemJson;
}

const rate = (res: Response) => ({
  limit: Number(res.headers.get('x-ratelimit-limit')),
  remaining: Number(res.headers.get('x-ratelimit-remaining')),
  reset: Number(res.headers.get('x-ratelimit-reset')),
});

describe('X-Api-Key', () => {
  it('accepts a valid key and identifies org, key and scopes', async () => {
    const { record, key } = await store.createApiKey('acme', ['hqe.read', 'hqe.write']);
    const { res, body } = await call('/v1/read', withKey(key));
    expect(res.status).toBe(200);
    expect(body).toEqual({ orgId: record.orgId, via: 'api_key', subject: record.id, scopes: ['hqe.read', 'hqe.write'] });
  });

  it('stores only a hash and a short display prefix', async () => {
    const { record, key } = await store.createApiKey('acme', ['hqe.read']);
    const row = db.prepare('SELECT * FROM api_keys WHERE id = ?').get(record.id) as Record<string, unknown>;
    expect(Object.values(row).some((v) => typeof v === 'string' && v.includes(key))).toBe(false);
    expect(row.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(key.startsWith(record.prefix)).toBe(true);
    expect(record.prefix.length).toBeLessThan(key.length / 2);
  });

  it('answers 401 unauthorized with WWW-Authenticate when no credential is sent', async () => {
    const { res, body } = await call('/v1/read');
    expectProblem(res, body, 401, 'unauthorized');
    expect(res.headers.get('www-authenticate')).toMatch(/ApiKey realm="resonance", Bearer realm="resonance"/);
    expect(res.headers.get('x-ratelimit-limit')).toBeNull();
  });

  it('answers 401 invalid_credentials to an unknown key', async () => {
    const { res, body } = await call('/v1/read', withKey('rsk_not-a-real-key'));
    expect(expectProblem(res, body, 401, 'invalid_credentials').detail).toBe('the credentials are invalid or expired');
    expect(res.headers.get('www-authenticate')).toContain('ApiKey');
  });

  it('answers 401 invalid_credentials to a revoked key, in the same words as an unknown one', async () => {
    const { record, key } = await store.createApiKey('acme', ['hqe.read']);
    expect((await call('/v1/read', withKey(key))).res.status).toBe(200);
    expect(await store.revokeApiKey(record.id)).toBe(true);
    const { res, body } = await call('/v1/read', withKey(key));
    expect(expectProblem(res, body, 401, 'invalid_credentials').detail).toBe('the credentials are invalid or expired');
  });

  it('refuses a request that carries both an API key and a bearer token', async () => {
    const key = await newKey();
    const { res, body } = await call('/v1/read', withBearer('abc', withKey(key)));
    expectProblem(res, body, 401, 'invalid_credentials');
  });

  it('seeds the bootstrap key for org "dev" with every scope, idempotently across restarts', async () => {
    const bootstrap = 'dev-bootstrap-key-for-tests';
    const first = await seedBootstrapKey(store, bootstrap);
    // A restart: a new handle on the same file.
    const db2 = openDb(join(dir, 'resonance.db'));
    const second = await seedBootstrapKey(new SqliteAuthStore(db2), bootstrap);
    db2.close();
    expect(second).toEqual(first);
    expect(first).toMatchObject({ orgName: 'dev', scopes: ALL_SCOPES, revokedAt: null });
    expect(await store.listApiKeys('dev')).toHaveLength(1);
    expect(await seedBootstrapKey(store, undefined)).toBeNull();
    const { res, body } = await call('/v1/read', withKey(bootstrap));
    expect(res.status).toBe(200);
    expect(body.orgId).toBe(first!.orgId);
  });
});

describe('POST /oauth/token', () => {
  let clientId: string;
  let clientSecret: string;

  beforeAll(async () => {
    const { record, secret } = await store.createClient('globex', ['hqe.read', 'hqe.write']);
    clientId = record.id;
    clientSecret = secret;
  });

  const basic = (id: string, secret: string): string => 'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');

  async function expectToken(res: Response, body: Record<string, unknown>, scope = 'hqe.read hqe.write'): Promise<string> {
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: config.tokenTtlSeconds, scope });
    const token = body.access_token as string;
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({ sub: clientId, iss: 'resonance', aud: 'resonance-api', scope });
    expect(claims.exp! - claims.iat!).toBe(config.tokenTtlSeconds);
    return token;
  }

  it('issues a token for a JSON body, and the token authenticates as the client', async () => {
    const { res, body } = await call('/oauth/token', postJson({ grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret }));
    const token = await expectToken(res, body);
    const me = await call('/v1/read', withBearer(token));
    expect(me.res.status).toBe(200);
    const org = await store.findOrg('globex');
    expect(me.body).toEqual({ orgId: org!.id, via: 'oauth', subject: clientId, scopes: ['hqe.read', 'hqe.write'] });
    expect(decodeJwt(token).org).toBe(org!.id);
  });

  it('issues a token for a form body', async () => {
    const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret });
    const { res, body } = await call('/oauth/token', { method: 'POST', body: form });
    await expectToken(res, body);
  });

  it('issues a token with HTTP Basic client authentication', async () => {
    const { res, body } = await call('/oauth/token', {
      method: 'POST',
      headers: { Authorization: basic(clientId, clientSecret) },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'hqe.read' }),
    });
    await expectToken(res, body, 'hqe.read');
  });

  it('answers 401 invalid_client with WWW-Authenticate to a wrong secret, an unknown client and no client auth', async () => {
    const cases: RequestInit[] = [
      postJson({ grant_type: 'client_credentials', client_id: clientId, client_secret: 'rcs_wrong' }),
      postJson({ grant_type: 'client_credentials', client_id: 'rc_nobody', client_secret: clientSecret }),
      postJson({ grant_type: 'client_credentials' }),
      { method: 'POST', headers: { Authorization: basic(clientId, 'wrong') }, body: new URLSearchParams({ grant_type: 'client_credentials' }) },
      { method: 'POST', headers: { Authorization: 'Basic !!!' }, body: new URLSearchParams({ grant_type: 'client_credentials' }) },
    ];
    for (const init of cases) {
      const { res, body } = await call('/oauth/token', init);
      expect(expectProblem(res, body, 401, 'invalid_client').detail).toBe('the client credentials are invalid');
      expect(res.headers.get('www-authenticate')).toBe('Basic realm="resonance"');
      expect(res.headers.get('cache-control')).toBe('no-store');
    }
  });

  it('answers 400 with the RFC 6749 error name as code for bad grants and malformed requests', async () => {
    let r = await call('/oauth/token', postJson({ grant_type: 'password', client_id: clientId, client_secret: clientSecret }));
    expectProblem(r.res, r.body, 400, 'unsupported_grant_type');
    r = await call('/oauth/token', postJson({ client_id: clientId, client_secret: clientSecret }));
    expectProblem(r.res, r.body, 400, 'invalid_request');
    // Basic and body credentials together: two authentication methods (RFC 6749 section 2.3).
    r = await call('/oauth/token', {
      method: 'POST',
      headers: { Authorization: basic(clientId, clientSecret) },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret }),
    });
    expectProblem(r.res, r.body, 400, 'invalid_request');
    // A repeated form parameter.
    r = await call('/oauth/token', { method: 'POST', body: `grant_type=client_credentials&client_id=${clientId}&client_id=x&client_secret=${clientSecret}`, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    expectProblem(r.res, r.body, 400, 'invalid_request');
    r = await call('/oauth/token', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'grant_type=client_credentials' });
    expectProblem(r.res, r.body, 415, 'unsupported_media_type');
  });

  it('grants a requested subset of the client scopes and refuses scopes the client lacks', async () => {
    const readOnly = await store.createClient('initech', ['hqe.read']);
    const ask = (id: string, secret: string, scope: string) =>
      call('/oauth/token', postJson({ grant_type: 'client_credentials', client_id: id, client_secret: secret, scope }));

    let r = await ask(readOnly.record.id, readOnly.secret, 'hqe.read');
    expect(r.res.status).toBe(200);
    expect(r.body.scope).toBe('hqe.read');
    r = await ask(readOnly.record.id, readOnly.secret, 'hqe.read hqe.write');
    expectProblem(r.res, r.body, 400, 'invalid_scope');
    r = await ask(clientId, clientSecret, 'hqe.admin');
    expectProblem(r.res, r.body, 400, 'invalid_scope');

    // A full client narrowing itself to hqe.read gets a token that cannot write.
    r = await ask(clientId, clientSecret, 'hqe.read');
    expect(r.body.scope).toBe('hqe.read');
    const denied = await call('/v1/work', withBearer(r.body.access_token as string, postJson({ steps: 1, k: 1 })));
    expectProblem(denied.res, denied.body, 403, 'insufficient_scope');
    expect(denied.res.headers.get('www-authenticate')).toBe('Bearer realm="resonance", error="insufficient_scope", scope="hqe.write"');
  });
});

describe('bearer tokens', () => {
  // Every token speaks for a stored client: one that is revoked (or never existed) is refused.
  const claims = { sub: '', org: '', scopes: ['hqe.read'] as Scope[] };
  beforeAll(async () => {
    const { record } = await store.createClient('bearer-org', ['hqe.read']);
    Object.assign(claims, { sub: record.id, org: record.orgId });
  });

  it('rejects an expired token with 401 invalid_credentials', async () => {
    // exp counts from iat in whole seconds (floored): a 2 s token lives more than 1 s and at most 2 s.
    const token = await issueToken(config.jwtSecret, claims, 2);
    expect((await call('/v1/read', withBearer(token))).res.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const { res, body } = await call('/v1/read', withBearer(token));
    expect(expectProblem(res, body, 401, 'invalid_credentials').detail).toBe('the credentials are invalid or expired');
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"');
  });

  it('rejects forged, foreign-audience, malformed and empty tokens the same way', async () => {
    const tokens = [
      await issueToken(new TextEncoder().encode('another secret entirely, 32+ bytes'), claims, 60),
      await issueToken(config.jwtSecret, claims, 60, { audience: 'resonance-realtime' }),
      'not.a.jwt',
      '',
    ];
    for (const token of tokens) {
      const { res, body } = await call('/v1/read', withBearer(token));
      expect(expectProblem(res, body, 401, 'invalid_credentials').detail).toBe('the credentials are invalid or expired');
    }
  });

  it('verifyToken round-trips claims for a chosen audience', async () => {
    const token = await issueToken(config.jwtSecret, claims, 60, { audience: 'resonance-realtime' });
    expect(await verifyToken(config.jwtSecret, token, { audience: 'resonance-realtime' })).toMatchObject(claims);
    expect(await verifyToken(config.jwtSecret, token)).toBeNull();
  });
});

describe('space session tokens', () => {
  // Minted by a stored API key: a token whose minter is revoked (or unknown) is refused.
  const claims = { sub: 'ses_1', org: 'org_a', space: 'spc_1', role: 'writer' as const, minter: '', minterKind: 'api_key' as const };
  beforeAll(async () => {
    const { record } = await store.createApiKey('session-org', ['spaces.read', 'spaces.write']);
    Object.assign(claims, { minter: record.id, org: record.orgId });
  });

  it('authenticate as a principal confined to the space, with spaces scopes by role and the minter as rate-limit identity', async () => {
    const writer = await issueSessionToken(config.jwtSecret, claims, 60);
    const { res, body } = await call('/v1/spaces/spc_1', withBearer(writer));
    expect(res.status).toBe(200);
    expect(body).toEqual({
      orgId: claims.org, via: 'session', subject: claims.minter, scopes: ['spaces.read', 'spaces.write'], session: { spaceId: 'spc_1', role: 'writer', memberId: 'ses_1' },
    });
    const reader = await issueSessionToken(config.jwtSecret, { ...claims, role: 'reader' }, 60);
    expect((await call('/v1/spaces/spc_1', withBearer(reader))).body.scopes).toEqual(['spaces.read']);
    // Anywhere else under /v1: 403 insufficient_scope, whatever the route needs.
    for (const path of ['/v1/spaces/spc_2', '/v1/read', '/v1/spaces/spc_10', '/v1/spaces/spc_10/telemetry']) {
      const r = await call(path, withBearer(writer));
      expect(expectProblem(r.res, r.body, 403, 'insufficient_scope').meta).toEqual({ spaceId: 'spc_1' });
    }
  });

  it('is read from ?token= on the telemetry route only, and never next to another credential', async () => {
    const token = await issueSessionToken(config.jwtSecret, claims, 60);
    expect((await call(`/v1/spaces/spc_1/telemetry?token=${token}`)).res.status).toBe(200);
    let r = await call(`/v1/spaces/spc_1?token=${token}`);
    expectProblem(r.res, r.body, 401, 'unauthorized');
    r = await call(`/v1/spaces/spc_1/telemetry?token=${token}`, withKey(await newKey()));
    expectProblem(r.res, r.body, 401, 'invalid_credentials');
    // An OAuth access token is not a session token.
    const access = await issueToken(config.jwtSecret, { sub: 'rc_x', org: 'org_a', scopes: ['spaces.read'] }, 60);
    r = await call(`/v1/spaces/spc_1/telemetry?token=${access}`);
    expectProblem(r.res, r.body, 401, 'invalid_credentials');
    r = await call('/v1/spaces/spc_1/telemetry?token=');
    expectProblem(r.res, r.body, 401, 'invalid_credentials');
  });

  it('rejects forged and expired session tokens as any other bad token', async () => {
    const forged = await issueSessionToken(new TextEncoder().encode('another secret entirely, 32+ bytes'), claims, 60);
    const { res, body } = await call('/v1/spaces/spc_1', withBearer(forged));
    expect(expectProblem(res, body, 401, 'invalid_credentials').detail).toBe('the credentials are invalid or expired');
  });
});

describe('scopes', () => {
  it('answers 403 insufficient_scope to a read-only key on a write route, with rate-limit headers', async () => {
    const key = await newKey(['hqe.read']);
    const { res, body } = await call('/v1/work', withKey(key, postJson({ steps: 1, k: 1 })));
    expect(expectProblem(res, body, 403, 'insufficient_scope').meta).toEqual({ required: 'hqe.write' });
    expect(rate(res)).toMatchObject({ limit: 10, remaining: 9 });
  });
});

describe('rate limits', () => {
  it('reports limit, decreasing remaining and seconds to reset on every response, errors included', async () => {
    const key = await newKey();
    const seen: Array<ReturnType<typeof rate>> = [];
    for (let i = 0; i < 3; i++) seen.push(rate((await call('/v1/read', withKey(key))).res));
    const missing = await call('/v1/missing', withKey(key));
    expectProblem(missing.res, missing.body, 404, 'not_found');
    seen.push(rate(missing.res));
    expect(seen.map((s) => s.remaining)).toEqual([9, 8, 7, 6]);
    for (const s of seen) {
      expect(s.limit).toBe(10);
      expect(s.reset).toBeGreaterThan(0);
      expect(s.reset).toBeLessThanOrEqual(60);
    }
  });

  it('answers 429 rate_limited with Retry-After once the budget is spent, without touching other keys', async () => {
    const key = await newKey();
    for (let i = 0; i < 10; i++) expect((await call('/v1/read', withKey(key))).res.status).toBe(200);
    const { res, body } = await call('/v1/read', withKey(key));
    expectProblem(res, body, 429, 'rate_limited');
    const retryAfter = Number(res.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(rate(res)).toEqual({ limit: 10, remaining: 0, reset: retryAfter });
    // Budgets are per key.
    expect((await call('/v1/read', withKey(await newKey()))).res.status).toBe(200);
  });

  it('charges work by steps x k^2 / workUnit and refuses work that does not fit before doing it', async () => {
    const key = await newKey();
    const before = workDone;
    // 30 x 10^2 / 1000 = 3 units of work + 1 for the request.
    let r = await call('/v1/work', withKey(key, postJson({ steps: 30, k: 10 })));
    expect(r.res.status).toBe(200);
    expect(rate(r.res).remaining).toBe(6);
    // 1 x 10^2 / 1000 rounds up to 1 unit.
    r = await call('/v1/work', withKey(key, postJson({ steps: 1, k: 10 })));
    expect(rate(r.res).remaining).toBe(4);
    // 50 x 10^2 / 1000 = 5 units: the request's unit leaves 3, so the work is refused and not charged.
    r = await call('/v1/work', withKey(key, postJson({ steps: 50, k: 10 })));
    expect(expectProblem(r.res, r.body, 429, 'rate_limited').meta).toMatchObject({ cost: 5, remaining: 3, limit: 10 });
    expect(r.res.headers.get('retry-after')).toBeTruthy();
    expect(rate(r.res).remaining).toBe(3);
    expect(workDone - before).toBe(2);
    // 3 units still fit: 1 for the request, 2 of work.
    r = await call('/v1/work', withKey(key, postJson({ steps: 20, k: 10 })));
    expect(r.res.status).toBe(200);
    expect(rate(r.res).remaining).toBe(0);
  });

  it('workUnits rounds kernel entries / workUnit up', () => {
    expect(workUnits(256 * 2048 * 2048, 2 ** 24)).toBe(64);
    expect(workUnits(1 * 2 * 2, 2 ** 24)).toBe(1);
    expect(workUnits(0, 2 ** 24)).toBe(0);
  });

  it('WindowRateLimiter opens a fresh window when the old one ends and reports exact seconds to reset', async () => {
    let t = 1_000_000;
    const limiter = new WindowRateLimiter(5, 10, () => t);
    expect(await limiter.consume('a', 5)).toEqual({ allowed: true, limit: 5, remaining: 0, resetSeconds: 10 });
    t += 2_500;
    expect(await limiter.consume('a', 1)).toEqual({ allowed: false, limit: 5, remaining: 0, resetSeconds: 8 });
    expect(await limiter.consume('b', 6)).toEqual({ allowed: false, limit: 5, remaining: 5, resetSeconds: 10 });
    t += 7_500;
    expect(await limiter.consume('a', 2)).toEqual({ allowed: true, limit: 5, remaining: 3, resetSeconds: 10 });
  });
});

describe('CLI: keys and clients', () => {
  let stdout = '';
  let stderr = '';

  const capture = () => {
    stdout = '';
    stderr = '';
    vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array) => {
      stdout += String(chunk);
      return true;
    }) as typeof process.stdout.write);
    vi.spyOn(process.stderr, 'write').mockImplementation(((chunk: string | Uint8Array) => {
      stderr += String(chunk);
      return true;
    }) as typeof process.stderr.write);
  };

  afterEach(() => {
    vi.restoreAllMocks();
    delete process.env.RESONANCE_DATA;
  });

  it('keys create prints a key once that the server accepts; list shows only its prefix; revoke disables it', async () => {
    capture();
    expect(await keysCommand(['create', '--org', 'cli-org', '--scopes', 'hqe.read', '--data', dir])).toBe(0);
    const lines = Object.fromEntries(stdout.trim().split('\n').map((l) => l.split(/\s+/, 2) as [string, string]));
    const key = lines.key!;
    expect(key).toMatch(/^rsk_[A-Za-z0-9_-]{43}$/);
    expect(stderr).toContain('not shown again');

    const ok = await call('/v1/read', withKey(key));
    expect(ok.res.status).toBe(200);
    expect(ok.body.scopes).toEqual(['hqe.read']);

    capture();
    process.env.RESONANCE_DATA = dir;
    expect(await keysCommand(['list', '--org', 'cli-org', '--json'])).toBe(0);
    const listed = JSON.parse(stdout) as Array<{ id: string; prefix: string; revokedAt: string | null }>;
    expect(listed).toHaveLength(1);
    expect(listed[0]!.id).toBe(lines.id);
    expect(stdout).not.toContain(key);
    expect(key.startsWith(listed[0]!.prefix)).toBe(true);

    capture();
    expect(await keysCommand(['revoke', lines.id!, '--data', dir])).toBe(0);
    expect(stdout).toContain(`revoked ${lines.id}`);
    expect((await call('/v1/read', withKey(key))).res.status).toBe(401);

    capture();
    expect(await keysCommand(['list', '--org', 'cli-org', '--data', dir])).toBe(0);
    expect(stdout).toMatch(/revoked \d{4}-/);
  });

  it('keys create --json defaults to every scope', async () => {
    capture();
    expect(await keysCommand(['create', '--org', 'cli-org-2', '--data', dir, '--json'])).toBe(0);
    const created = JSON.parse(stdout) as { key: string; scopes: string[]; org: string };
    expect(created).toMatchObject({ org: 'cli-org-2', scopes: ALL_SCOPES });
    expect((await store.verifyApiKey(created.key))?.orgName).toBe('cli-org-2');
  });

  it('exits 2 on usage errors and 1 on an unknown key id', async () => {
    capture();
    expect(await keysCommand(['create', '--data', dir])).toBe(2);
    expect(stderr).toContain('--org');
    expect(await keysCommand(['create', '--org', 'x', '--scopes', 'hqe.admin', '--data', dir])).toBe(2);
    expect(stderr).toContain('unknown scope "hqe.admin"');
    expect(await keysCommand(['create', '--org', 'x', '--bogus', '--data', dir])).toBe(2);
    expect(await keysCommand(['frobnicate'])).toBe(2);
    expect(await keysCommand(['revoke', 'key_nope', '--data', dir])).toBe(1);
    expect(await clientsCommand([])).toBe(2);
  });

  it('clients create prints client_id and client_secret once; they get a token', async () => {
    capture();
    expect(await clientsCommand(['create', '--org', 'cli-org', '--scopes', 'hqe.read,hqe.write', '--data', dir])).toBe(0);
    const lines = Object.fromEntries(stdout.trim().split('\n').map((l) => l.split(/\s+/, 2) as [string, string]));
    expect(lines.client_id).toMatch(/^rc_/);
    expect(lines.client_secret).toMatch(/^rcs_[A-Za-z0-9_-]{43}$/);
    const row = db.prepare('SELECT secret_hash FROM oauth_clients WHERE id = ?').get(lines.client_id) as { secret_hash: string };
    expect(row.secret_hash).not.toContain(lines.client_secret);

    const { res, body } = await call('/oauth/token', {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: lines.client_id!, client_secret: lines.client_secret! }),
    });
    expect(res.status).toBe(200);
    expect(body.scope).toBe('hqe.read hqe.write');

    capture();
    expect(await clientsCommand(['list', '--org', 'cli-org', '--data', dir])).toBe(0);
    expect(stdout).toContain(lines.client_id);
    expect(stdout).not.toContain(lines.client_secret);
  });
});

describe('robustness', () => {
  it('never answered a credential problem with a 500', () => {
    expect(unexpected).toEqual([]);
  });
});
