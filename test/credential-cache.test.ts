/**
 * The credential cache in front of the auth store (src/http/credential-cache.ts): what it keeps, for how long,
 * and how a revocation gets through it. A real SQLite file; "another process" is a second connection to it
 * (as the CLI and other nodes write), and the end-to-end case is the real server and the real CLI.
 */
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticate } from '../src/http/auth.js';
import { configFromEnv } from '../src/http/config.js';
import { CredentialCache, type CredentialLookups } from '../src/http/credential-cache.js';
import { problemMiddleware } from '../src/http/problem.js';
import { CredentialWatch } from '../src/http/revocations.js';
import { ALL_SCOPES, type AppState } from '../src/http/types.js';
import { SqliteAuthStore } from '../src/store/auth.js';
import { type Db, openDb } from '../src/store/db.js';
import { cli, request, sleep, startServer, type TestServer } from './helpers/server.js';

let dir: string;
let db: Db;
/** This process's store, and a second connection to the same file: another process's writes. */
let store: SqliteAuthStore;
let otherDb: Db;
let other: SqliteAuthStore;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'resonance-credcache-'));
  db = openDb(join(dir, 'resonance.db'));
  store = new SqliteAuthStore(db);
  otherDb = openDb(join(dir, 'resonance.db'));
  other = new SqliteAuthStore(otherDb);
});

afterAll(async () => {
  otherDb.close();
  db.close();
  await rm(dir, { recursive: true, force: true });
});

/** The real store, counting the queries that reach it. */
function counted(inner: CredentialLookups): CredentialLookups & { queries: number } {
  const c = {
    queries: 0,
    verifyApiKey(key: string) {
      c.queries++;
      return inner.verifyApiKey(key);
    },
    isActive(ref: Parameters<CredentialLookups['isActive']>[0]) {
      c.queries++;
      return inner.isActive(ref);
    },
  };
  return c;
}

/** A clock the test moves. */
function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe('CredentialCache', () => {
  it('answers a key from memory within the TTL, and asks the store again once it has passed', async () => {
    const { key, record } = await store.createApiKey('cache-ttl', ['hqe.read']);
    const clock = manualClock();
    const lookups = counted(store);
    const cache = new CredentialCache(lookups, { ttlMs: 1000, clock: clock.now });
    expect(await cache.verifyApiKey(key)).toMatchObject({ id: record.id, orgName: 'cache-ttl', scopes: ['hqe.read'] });
    expect(await cache.verifyApiKey(key)).toMatchObject({ id: record.id });
    expect(lookups.queries).toBe(1);

    // Revoked by another process: this one cannot know, and keeps the answer until the TTL runs out.
    expect(await other.revokeApiKey(record.id)).toBe(true);
    clock.advance(999);
    expect(await cache.verifyApiKey(key)).toMatchObject({ id: record.id });
    clock.advance(1);
    expect(await cache.verifyApiKey(key)).toBeNull();
    expect(lookups.queries).toBe(2);
  });

  it('forgets a credential at once when told it was revoked', async () => {
    const { key, record } = await store.createApiKey('cache-invalidate', ['hqe.read']);
    const client = await store.createClient('cache-invalidate', ['hqe.read']);
    const ref = { kind: 'oauth_client' as const, id: client.record.id };
    const cache = new CredentialCache(store, { ttlMs: 60_000 });
    expect(await cache.verifyApiKey(key)).not.toBeNull();
    expect(await cache.isActive(ref)).toBe(true);
    await other.revokeApiKey(record.id);
    await other.revokeClient(client.record.id);
    expect(await cache.verifyApiKey(key)).not.toBeNull();
    expect(await cache.isActive(ref)).toBe(true);
    cache.invalidate(record.id);
    cache.invalidate(client.record.id);
    expect(await cache.verifyApiKey(key)).toBeNull();
    expect(await cache.isActive(ref)).toBe(false);
  });

  it('keeps at most maxEntries credentials, dropping the oldest answers first', async () => {
    const keys = await Promise.all(Array.from({ length: 5 }, () => store.createApiKey('cache-bound', ['hqe.read'])));
    const lookups = counted(store);
    const cache = new CredentialCache(lookups, { ttlMs: 60_000, maxEntries: 3 });
    for (const k of keys) await cache.verifyApiKey(k.key);
    expect(cache.size).toBe(3);
    expect(lookups.queries).toBe(5);
    // The newest three are answered from memory; the first two were pushed out and go to the store.
    for (const k of keys.slice(2)) await cache.verifyApiKey(k.key);
    expect(lookups.queries).toBe(5);
    await cache.verifyApiKey(keys[0]!.key);
    expect(lookups.queries).toBe(6);
    expect(cache.size).toBe(3);
  });

  it('keeps nothing for unknown or revoked keys, however many are tried', async () => {
    const { key, record } = await store.createApiKey('cache-misses', ['hqe.read']);
    await store.revokeApiKey(record.id);
    const lookups = counted(store);
    const cache = new CredentialCache(lookups, { ttlMs: 60_000 });
    for (let i = 0; i < 2000; i++) expect(await cache.verifyApiKey(`rsk_guess-${i}`)).toBeNull();
    expect(await cache.verifyApiKey(key)).toBeNull();
    expect(await cache.verifyApiKey(key)).toBeNull();
    expect(cache.size).toBe(0);
    // Each one was asked of the store: a refusal is never remembered.
    expect(lookups.queries).toBe(2002);
    expect(await cache.isActive({ kind: 'api_key', id: record.id })).toBe(false);
    expect(await cache.isActive({ kind: 'oauth_client', id: 'rc_nope' })).toBe(false);
    expect(cache.size).toBe(0);
  });

  it('asks the store every time with a TTL of 0', async () => {
    const { key } = await store.createApiKey('cache-off', ['hqe.read']);
    const lookups = counted(store);
    const cache = new CredentialCache(lookups, { ttlMs: 0 });
    await cache.verifyApiKey(key);
    await cache.verifyApiKey(key);
    expect(lookups.queries).toBe(2);
    expect(cache.size).toBe(0);
  });

  it('does not keep an answer that was in flight when the credential was invalidated', async () => {
    const { key, record } = await store.createApiKey('cache-race', ['hqe.read']);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    // The store's answer (active) arrives after this process revoked the key and invalidated it.
    const slow: CredentialLookups = {
      verifyApiKey: async (k) => {
        const answer = await store.verifyApiKey(k);
        await gate;
        return answer;
      },
      isActive: (ref) => store.isActive(ref),
    };
    const cache = new CredentialCache(slow, { ttlMs: 60_000 });
    const inFlight = cache.verifyApiKey(key);
    await store.revokeApiKey(record.id);
    cache.invalidate(record.id);
    release();
    expect(await inFlight).not.toBeNull();
    expect(cache.size).toBe(0);
  });
});

describe('revocation through the authentication path', () => {
  let server: Server;
  let base: string;
  let cache: CredentialCache;
  let watch: CredentialWatch;
  const config = configFromEnv({});

  beforeAll(async () => {
    // A TTL far longer than any test: what is refused here was refused by an invalidation, not by expiry.
    cache = new CredentialCache(store, { ttlMs: 60_000 });
    watch = new CredentialWatch({ authStore: store, cache, memberRemoved: async () => false });
    const app = new Koa();
    app.use(problemMiddleware(() => undefined));
    app.use(bodyParser());
    const api = new Router({ prefix: '/v1' });
    api.use(authenticate({ authStore: cache, config }));
    api.get('/whoami', (ctx) => {
      ctx.body = { orgId: (ctx.state as AppState).principal!.orgId };
    });
    app.use(api.routes());
    server = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await watch.stop();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const whoami = async (key: string): Promise<number> => (await request(base, 'GET', '/v1/whoami', { 'X-Api-Key': key })).status;

  it("is immediate when this process revokes: the cached key is refused on the next request and its connections end", async () => {
    const { key, record } = await store.createApiKey('own-path', ALL_SCOPES);
    expect(await whoami(key)).toBe(200);
    let ended = 0;
    watch.watch({ kind: 'api_key', id: record.id }, () => ended++);
    await store.revokeApiKey(record.id);
    watch.revoked({ kind: 'api_key', id: record.id });
    expect(ended).toBe(1);
    expect(await whoami(key)).toBe(401);
  });

  it('is immediate for a watched credential once the sweep sees another process revoke it', async () => {
    const { key, record } = await store.createApiKey('swept', ALL_SCOPES);
    expect(await whoami(key)).toBe(200);
    let ended = 0;
    watch.watch({ kind: 'api_key', id: record.id }, () => ended++);
    await other.revokeApiKey(record.id);
    // Still cached: nothing in this process has seen the revocation yet.
    expect(await whoami(key)).toBe(200);
    await watch.sweep();
    expect(ended).toBe(1);
    expect(await whoami(key)).toBe(401);
  });
});

/** `keys create --json` (the CLI, another process): id and secret of a new hqe.read key. */
async function newKey(dataDir: string): Promise<{ id: string; key: string }> {
  const r = await cli(['keys', 'create', '--org', 'cli-revoke', '--scopes', 'hqe.read', '--json'], dataDir);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { id: string; key: string };
}

describe('a key revoked with the CLI against a running server', () => {
  let srv: TestServer;

  beforeAll(async () => {
    srv = await startServer();
  });

  afterAll(async () => {
    await srv?.stop();
  });

  it('is refused within a second of the revocation, though it was in use (cached) up to it', async () => {
    const { id, key } = await newKey(srv.dataDir);
    const validate = async (): Promise<number> => (await request(srv.url, 'POST', '/v1/hqe/validate', { 'X-Api-Key': key }, { primes: [2, 3] })).status;
    // In use, back to back, until the revocation starts: the server holds it in its cache.
    for (let i = 0; i < 20; i++) expect(await validate()).toBe(200);
    const revoked = await cli(['keys', 'revoke', id], srv.dataDir);
    expect(revoked.code, revoked.stderr).toBe(0);
    const done = performance.now();
    let status = await validate();
    while (status === 200 && performance.now() - done < 3000) {
      await sleep(20);
      status = await validate();
    }
    expect(status).toBe(401);
    // RESONANCE_AUTH_CACHE_MS is 1000 by default; the cache entry is older than the revocation's end.
    expect(performance.now() - done).toBeLessThan(1000);
  });

  it('is refused at once with RESONANCE_AUTH_CACHE_MS=0 (no cache)', async () => {
    const uncached = await startServer({ env: { RESONANCE_AUTH_CACHE_MS: '0' } });
    try {
      const { id, key } = await newKey(uncached.dataDir);
      expect((await request(uncached.url, 'POST', '/v1/hqe/validate', { 'X-Api-Key': key }, { primes: [2] })).status).toBe(200);
      expect((await cli(['keys', 'revoke', id], uncached.dataDir)).code).toBe(0);
      expect((await request(uncached.url, 'POST', '/v1/hqe/validate', { 'X-Api-Key': key }, { primes: [2] })).status).toBe(401);
    } finally {
      await uncached.stop();
    }
  });
});
