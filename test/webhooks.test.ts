/**
 * Webhooks end to end: a Koa app with the webhook router on an ephemeral port (real fetch), a real SQLite
 * file, and a real receiver (node:http on 127.0.0.1) that verifies every signature it gets.
 */
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bodyParser } from '@koa/bodyparser';
import Koa from 'koa';
import { pino } from 'pino';
import { createDocument } from 'zod-openapi';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { problemMiddleware } from '../src/http/problem.js';
import { webhookEventPaths, webhookPaths, webhookRoutes } from '../src/http/routes/webhooks.js';
import { ALL_SCOPES, type Principal, type Scope } from '../src/http/types.js';
import { type Db, openDb } from '../src/store/db.js';
import { type DeliveryRecord, SqliteWebhookStore } from '../src/store/webhooks.js';
import { retryDelayMs, WEBHOOK_EVENT_TYPES, type WebhookServiceOptions, WebhookService, type WebhookTiming } from '../src/webhooks/service.js';
import { generateSecret, sign, verifySignature } from '../src/webhooks/signing.js';
import { checkTarget, defaultLookup, forbiddenAddressReason, type LookupAll } from '../src/webhooks/targets.js';

// ---- fixtures ----

let dir: string;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'resonance-webhooks-'));
});

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const FAST: Partial<WebhookTiming> = { baseDelayMs: 50, maxDelayMs: 1_000, pollIntervalMs: 10, timeoutMs: 1_000, leaseGraceMs: 100, jitter: 0.1 };
let dbCounter = 0;

interface Harness {
  db: Db;
  path: string;
  service: WebhookService;
}

function makeService(opts: Partial<Omit<WebhookServiceOptions, 'store'>> & { path?: string } = {}): Harness {
  const path = opts.path ?? join(dir, `wh-${++dbCounter}.sqlite`);
  const db = openDb(path);
  const service = new WebhookService({
    allowPrivate: true,
    logger: pino({ level: 'silent' }),
    ...opts,
    timing: { ...FAST, ...opts.timing },
    store: new SqliteWebhookStore(db),
  });
  cleanups.push(async () => {
    await service.stop();
    if (db.open) db.close();
  });
  return { db, path, service };
}

/** The test app: problems, body parser, a principal from X-Test-Org / X-Test-Scopes, the webhook router. */
async function startApp(service: WebhookService): Promise<string> {
  const app = new Koa();
  app.use(problemMiddleware((err) => console.error(err)));
  app.use(bodyParser());
  app.use(async (ctx, next) => {
    const scopes = ctx.get('X-Test-Scopes');
    const principal: Principal = {
      orgId: ctx.get('X-Test-Org') || 'org-a',
      scopes: new Set<Scope>(scopes ? (scopes.split(',') as Scope[]) : ALL_SCOPES),
      via: 'api_key',
      subject: 'test-key',
    };
    ctx.state.principal = principal;
    await next();
  });
  const router = webhookRoutes({ webhooks: service });
  app.use(router.routes());
  app.use(router.allowedMethods());
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface ApiResponse {
  status: number;
  type: string;
  headers: Headers;
  body: Record<string, unknown>;
}

async function api(base: string, method: string, path: string, opts: { body?: unknown; org?: string; scopes?: string } = {}): Promise<ApiResponse> {
  const headers: Record<string, string> = { 'X-Test-Org': opts.org ?? 'org-a' };
  if (opts.scopes !== undefined) headers['X-Test-Scopes'] = opts.scopes;
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(base + path, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type') ?? '', headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
  verified: boolean;
}

type Reply = number | 'hang' | { status: number; delayMs?: number; headers?: Record<string, string> };

/** A webhook receiver: answers per `plan(n)` (n = 0-based request index) and checks every signature against `secret`. */
async function startReceiver(plan: (n: number) => Reply, secret = 'a-test-secret-of-some-length'): Promise<{ url: string; received: Received[]; secret: string }> {
  const received: Received[] = [];
  const hanging: ServerResponse[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const header = (name: string): string | undefined => {
        const v = req.headers[name];
        return Array.isArray(v) ? v[0] : v;
      };
      const verified = verifySignature(secret, header('x-rs-timestamp'), body, header('x-rs-signature'), 300);
      const n = received.length;
      received.push({ headers: req.headers, body, at: Date.now(), verified });
      const reply = plan(n);
      if (reply === 'hang') {
        hanging.push(res);
        return;
      }
      const r = typeof reply === 'number' ? { status: reply } : reply;
      const send = () => {
        res.writeHead(verified ? r.status : 401, r.headers);
        res.end('ok');
      };
      if (r.delayMs) setTimeout(send, r.delayMs);
      else send();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received, secret };
}

async function until<T>(what: string, probe: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function onlyDelivery(service: WebhookService, orgId: string, webhookId: string): Promise<DeliveryRecord> {
  const list = await service.deliveries(orgId, webhookId);
  expect(list).toHaveLength(1);
  return list[0]!;
}

const errorsOf = (body: Record<string, unknown>): Array<{ pointer: string; code: string; message: string }> =>
  (body.errors ?? []) as Array<{ pointer: string; code: string; message: string }>;

// ---- signing ----

describe('signatures', () => {
  const secret = 'whsec_test';
  const body = '{"id":"evt_1","type":"hqe.converged"}';

  it('verifies what it signs, within the tolerance, and nothing else', () => {
    const now = 1_700_000_000;
    const header = sign(secret, now, body);
    expect(header).toMatch(/^sha256=[0-9a-f]{64}$/);
    expect(verifySignature(secret, String(now), body, header, 300, now)).toBe(true);
    expect(verifySignature(secret, now, Buffer.from(body), header, 300, now + 299)).toBe(true);
    expect(verifySignature(secret, now, body, header, 300, now + 301)).toBe(false); // too old
    expect(verifySignature(secret, now, body, header, 300, now - 301)).toBe(false); // from the future
    expect(verifySignature(secret, now, body + ' ', header, 300, now)).toBe(false); // body changed
    expect(verifySignature(secret, now + 1, body, header, 300, now)).toBe(false); // timestamp changed
    expect(verifySignature('other', now, body, header, 300, now)).toBe(false);
    expect(verifySignature(secret, now, body, header.replace('sha256=', 'sha1='), 300, now)).toBe(false);
    expect(verifySignature(secret, now, body, 'sha256=abc', 300, now)).toBe(false);
    expect(verifySignature(secret, now, body, undefined, 300, now)).toBe(false);
    expect(verifySignature(secret, 'nope', body, header, 300, now)).toBe(false);
    // several signatures (secret rotation): any one matching is enough
    expect(verifySignature(secret, now, body, `${sign('old', now, body)}, ${header}`, 300, now)).toBe(true);
  });

  it('generates distinct high-entropy secrets', () => {
    const a = generateSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(generateSecret()).not.toBe(a);
  });
});

// ---- target guard ----

describe('target guard', () => {
  it('classifies addresses', () => {
    const forbidden = [
      '127.0.0.1', '127.255.0.9', '10.0.0.5', '172.16.3.4', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1',
      '100.127.255.254', '0.0.0.0', '224.0.0.1', '255.255.255.255', '::', '::1', 'fe80::1', 'fe80::1%eth0', 'fc00::1', 'fd12:3456::1',
      '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.1.2.3', '::ffff:169.254.1.1', '64:ff9b::a00:1', '2002:7f00:1::', 'ff02::1', '[::1]',
    ];
    for (const ip of forbidden) expect(forbiddenAddressReason(ip), ip).not.toBeNull();
    const allowed = ['8.8.8.8', '93.184.215.14', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1'];
    for (const ip of allowed) expect(forbiddenAddressReason(ip), ip).toBeNull();
    expect(forbiddenAddressReason('::ffff:127.0.0.1')).toBe('loopback');
    expect(forbiddenAddressReason('100.64.0.1')).toBe('cgnat');
    expect(forbiddenAddressReason('fd00::1')).toBe('unique-local');
    expect(forbiddenAddressReason('169.254.0.1')).toBe('link-local');
  });

  it('refuses a host name when any of its addresses is private, and names that do not resolve', async () => {
    const lookup: LookupAll = async (host) => {
      if (host === 'mixed.test') return ['93.184.215.14', '10.0.0.7'];
      if (host === 'public.test') return ['93.184.215.14', '2606:4700:4700::1111'];
      throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    };
    expect(await checkTarget('https://mixed.test/x', { allowPrivate: false, lookup })).toMatchObject({ ok: false, code: 'webhook_target_forbidden' });
    expect(await checkTarget('https://public.test/x', { allowPrivate: false, lookup })).toMatchObject({ ok: true });
    expect(await checkTarget('https://nowhere.test/x', { allowPrivate: false, lookup })).toMatchObject({ ok: false, code: 'webhook_target_unresolvable' });
    // WHATWG URL canonicalises numeric shorthands before the check
    expect(await checkTarget('http://2130706433/', { allowPrivate: false, lookup })).toMatchObject({ ok: false, code: 'webhook_target_forbidden' });
    expect(await checkTarget('http://0x7f.1/', { allowPrivate: false, lookup })).toMatchObject({ ok: false, code: 'webhook_target_forbidden' });
    expect(await checkTarget('http://127.0.0.1/', { allowPrivate: true })).toMatchObject({ ok: true });
    expect(await checkTarget('ftp://example.com/', { allowPrivate: true })).toMatchObject({ ok: false, code: 'invalid_url' });
  });

  it('resolves names with dns.lookup (all addresses): localhost is loopback', async () => {
    const addresses = await defaultLookup('localhost');
    expect(addresses.length).toBeGreaterThan(0);
    for (const a of addresses) expect(forbiddenAddressReason(a)).toBe('loopback');
  });

  it('backs off exponentially with bounded jitter and a cap', () => {
    const t = { baseDelayMs: 10_000, maxDelayMs: 3_600_000, jitter: 0.1 };
    expect([1, 2, 3, 4].map((n) => retryDelayMs(n, t, () => 0.5))).toEqual([10_000, 20_000, 40_000, 80_000]);
    expect(retryDelayMs(1, t, () => 0)).toBe(9_000);
    expect(retryDelayMs(1, t, () => 1)).toBe(11_000);
    expect(retryDelayMs(20, t, () => 1)).toBe(3_600_000);
    expect(retryDelayMs(200, t, () => 0.5)).toBe(3_600_000);
  });
});

// ---- registration API ----

describe('webhook registration API', () => {
  it('registers, lists, gets and deletes; the secret is returned only when generated', async () => {
    const { service } = makeService();
    const base = await startApp(service);

    const generated = await api(base, 'POST', '/v1/hqe/webhooks', { body: { url: 'https://hooks.example.com/a', events: ['hqe.converged', 'hqe.failed'] } });
    expect(generated.status).toBe(201);
    expect(generated.body).toMatchObject({ url: 'https://hooks.example.com/a', events: ['hqe.converged', 'hqe.failed'] });
    expect(generated.body.id).toMatch(/^wh_/);
    expect(typeof generated.body.secret).toBe('string');
    expect(new Date(generated.body.createdAt as string).toISOString()).toBe(generated.body.createdAt);
    expect(generated.headers.get('location')).toBe(`/v1/hqe/webhooks/${generated.body.id as string}`);

    const given = await api(base, 'POST', '/v1/hqe/webhooks', { body: { url: 'http://hooks.example.com/b', secret: 'my-own-secret-value', events: ['hqe.plateau'] } });
    expect(given.status).toBe(201);
    expect(given.body).not.toHaveProperty('secret');

    const got = await api(base, 'GET', `/v1/hqe/webhooks/${generated.body.id as string}`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual({ id: generated.body.id, url: 'https://hooks.example.com/a', events: ['hqe.converged', 'hqe.failed'], createdAt: generated.body.createdAt });

    const list = await api(base, 'GET', '/v1/hqe/webhooks');
    expect(list.status).toBe(200);
    expect((list.body.items as Array<Record<string, unknown>>).map((w) => w.id)).toEqual([generated.body.id, given.body.id]);
    for (const w of list.body.items as Array<Record<string, unknown>>) expect(w).not.toHaveProperty('secret');
    expect(list.body.next_cursor).toBeNull();

    const del = await api(base, 'DELETE', `/v1/hqe/webhooks/${generated.body.id as string}`);
    expect(del.status).toBe(204);
    expect((await api(base, 'GET', `/v1/hqe/webhooks/${generated.body.id as string}`)).status).toBe(404);
    const del2 = await api(base, 'DELETE', `/v1/hqe/webhooks/${generated.body.id as string}`);
    expect(del2.status).toBe(404);
    expect(del2.type).toContain('application/problem+json');
    expect(del2.body.code).toBe('not_found');
  });

  it('paginates with opaque cursors', async () => {
    const { service } = makeService();
    const base = await startApp(service);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await api(base, 'POST', '/v1/hqe/webhooks', { body: { url: `https://hooks.example.com/${i}`, events: ['hqe.failed'] } });
      ids.push(r.body.id as string);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `?page_size=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const page = await api(base, 'GET', `/v1/hqe/webhooks${q}`);
      expect(page.status).toBe(200);
      const items = page.body.items as Array<{ id: string }>;
      expect(items.length).toBeLessThanOrEqual(2);
      seen.push(...items.map((w) => w.id));
      cursor = page.body.next_cursor as string | null;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual(ids);
    expect(((await api(base, 'GET', '/v1/hqe/webhooks?page_size=500')).body.items as unknown[]).length).toBe(5);

    for (const bad of ['0', '501', 'x', '1.5']) {
      const r = await api(base, 'GET', `/v1/hqe/webhooks?page_size=${bad}`);
      expect(r.status, bad).toBe(400);
      expect(errorsOf(r.body)[0]?.pointer).toBe('/page_size');
    }
    const badCursor = await api(base, 'GET', '/v1/hqe/webhooks?cursor=garbage');
    expect(badCursor.status).toBe(400);
    expect(errorsOf(badCursor.body)[0]).toMatchObject({ pointer: '/cursor', code: 'invalid_cursor' });
  });

  it("hides one org's webhooks from another (404, not 403)", async () => {
    const { service } = makeService();
    const base = await startApp(service);
    const mine = await api(base, 'POST', '/v1/hqe/webhooks', { body: { url: 'https://hooks.example.com/a', events: ['hqe.failed'] }, org: 'org-a' });
    const id = mine.body.id as string;
    expect((await api(base, 'GET', `/v1/hqe/webhooks/${id}`, { org: 'org-b' })).status).toBe(404);
    expect((await api(base, 'DELETE', `/v1/hqe/webhooks/${id}`, { org: 'org-b' })).status).toBe(404);
    expect((await api(base, 'GET', '/v1/hqe/webhooks', { org: 'org-b' })).body.items).toEqual([]);
    expect((await api(base, 'GET', `/v1/hqe/webhooks/${id}`, { org: 'org-a' })).status).toBe(200);
    expect((await api(base, 'GET', '/v1/hqe/webhooks/wh_nope')).status).toBe(404);
  });

  it('checks scopes: hqe.write to register and delete, hqe.read to read', async () => {
    const { service } = makeService();
    const base = await startApp(service);
    const body = { url: 'https://hooks.example.com/a', events: ['hqe.failed'] };
    const denied = await api(base, 'POST', '/v1/hqe/webhooks', { body, scopes: 'hqe.read' });
    expect(denied.status).toBe(403);
    expect(denied.body.code).toBe('insufficient_scope');
    const ok = await api(base, 'POST', '/v1/hqe/webhooks', { body, scopes: 'hqe.write' });
    expect(ok.status).toBe(201);
    expect((await api(base, 'GET', '/v1/hqe/webhooks', { scopes: 'hqe.write' })).status).toBe(403);
    expect((await api(base, 'GET', `/v1/hqe/webhooks/${ok.body.id as string}`, { scopes: 'hqe.write' })).status).toBe(403);
    expect((await api(base, 'DELETE', `/v1/hqe/webhooks/${ok.body.id as string}`, { scopes: 'hqe.read' })).status).toBe(403);
    expect((await api(base, 'GET', '/v1/hqe/webhooks', { scopes: 'hqe.read' })).status).toBe(200);
  });

  it('reports every bad field of a body by JSON pointer', async () => {
    const { service } = makeService();
    const base = await startApp(service);
    const cases: Array<{ body: unknown; expected: Array<{ pointer: string; code?: string }> }> = [
      { body: {}, expected: [{ pointer: '/url' }, { pointer: '/events' }] },
      { body: { url: 'ftp://hooks.example.com/', events: ['hqe.failed'] }, expected: [{ pointer: '/url', code: 'invalid_url' }] },
      { body: { url: 'not a url', events: ['hqe.failed'] }, expected: [{ pointer: '/url', code: 'invalid_url' }] },
      { body: { url: 'https://user:pw@hooks.example.com/', events: ['hqe.failed'] }, expected: [{ pointer: '/url', code: 'invalid_url' }] },
      { body: { url: 42, events: ['hqe.failed'] }, expected: [{ pointer: '/url', code: 'invalid_type' }] },
      { body: { url: 'https://hooks.example.com/', events: [] }, expected: [{ pointer: '/events', code: 'too_small' }] },
      { body: { url: 'https://hooks.example.com/', events: ['hqe.failed', 'hqe.nope'] }, expected: [{ pointer: '/events/1', code: 'invalid_value' }] },
      { body: { url: 'https://hooks.example.com/', events: ['hqe.failed', 'hqe.plateau', 'hqe.failed'] }, expected: [{ pointer: '/events/2', code: 'duplicate_event' }] },
      { body: { url: 'https://hooks.example.com/', events: 'hqe.failed' }, expected: [{ pointer: '/events', code: 'invalid_type' }] },
      { body: { url: 'https://hooks.example.com/', events: ['hqe.failed'], secret: 'short' }, expected: [{ pointer: '/secret', code: 'too_small' }] },
      { body: { url: 'https://hooks.example.com/', events: ['hqe.failed'], secret: 7 }, expected: [{ pointer: '/secret', code: 'invalid_type' }] },
      {
        body: { url: 'https://hooks.example.com/', events: ['hqe.failed'], active: true, 'a/b': 1 },
        expected: [{ pointer: '/active', code: 'unknown_field' }, { pointer: '/a~1b', code: 'unknown_field' }],
      },
      { body: [1, 2], expected: [{ pointer: '' }] },
    ];
    for (const c of cases) {
      const r = await api(base, 'POST', '/v1/hqe/webhooks', { body: c.body });
      const label = JSON.stringify(c.body);
      expect(r.status, label).toBe(400);
      expect(r.type, label).toContain('application/problem+json');
      expect(r.body.code, label).toBe('validation_failed');
      const errors = errorsOf(r.body);
      expect(errors.map((e) => e.pointer).sort(), label).toEqual(c.expected.map((e) => e.pointer).sort());
      for (const e of c.expected) if (e.code) expect(errors.find((x) => x.pointer === e.pointer)?.code, label).toBe(e.code);
    }
    const malformed = await fetch(`${base}/v1/hqe/webhooks`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"url":' });
    expect(malformed.status).toBe(400);
    expect(((await api(base, 'GET', '/v1/hqe/webhooks')).body.items as unknown[]).length).toBe(0);
  });

  it('refuses private, loopback and link-local targets unless allowed', async () => {
    const strict = await startApp(makeService({ allowPrivate: false }).service);
    const lenient = await startApp(makeService({ allowPrivate: true }).service);
    const targets = [
      'http://127.0.0.1:8080/hook', 'http://[::1]/hook', 'http://10.1.2.3/hook', 'http://169.254.169.254/latest/meta-data', 'http://localhost:3000/hook',
      'http://[::ffff:127.0.0.1]/hook', 'http://192.168.0.10/', 'http://172.20.1.1/', 'http://100.64.1.1/', 'http://0.0.0.0/', 'http://[fd00::1]/',
      'http://[fe80::1]/', 'http://2130706433/', 'https://api.localhost/',
    ];
    for (const url of targets) {
      const r = await api(strict, 'POST', '/v1/hqe/webhooks', { body: { url, events: ['hqe.failed'] } });
      expect(r.status, url).toBe(400);
      expect(r.type, url).toContain('application/problem+json');
      expect(r.body.code, url).toBe('webhook_target_forbidden');
      expect(errorsOf(r.body)[0]?.pointer, url).toBe('/url');
      const allowed = await api(lenient, 'POST', '/v1/hqe/webhooks', { body: { url, events: ['hqe.failed'] } });
      expect(allowed.status, url).toBe(201);
    }
    // a public address literal passes the strict guard (no DNS needed)
    expect((await api(strict, 'POST', '/v1/hqe/webhooks', { body: { url: 'https://93.184.215.14/hook', events: ['hqe.failed'] } })).status).toBe(201);
    expect(((await api(strict, 'GET', '/v1/hqe/webhooks')).body.items as unknown[]).length).toBe(1);
  });

  it('documents the paths in OpenAPI with reusable schemas and problem+json errors', () => {
    const doc = createDocument({ openapi: '3.1.0', info: { title: 't', version: '1' }, paths: webhookPaths, webhooks: webhookEventPaths });
    const schemas = doc.components?.schemas ?? {};
    for (const id of ['Webhook', 'WebhookCreated', 'WebhookCreateRequest', 'WebhookPage', 'WebhookEvent', 'WebhookEventType', 'Problem']) expect(schemas, id).toHaveProperty(id);
    expect(schemas.WebhookCreateRequest).toMatchObject({ additionalProperties: false, required: ['url', 'events'] });
    const post = doc.paths?.['/v1/hqe/webhooks']?.post;
    expect(post?.responses?.['400']).toMatchObject({ content: { 'application/problem+json': {} } });
    expect(doc.paths?.['/v1/hqe/webhooks/{id}']?.delete?.responses?.['204']).toBeDefined();
    // The Spaces API's path serves the same registrations.
    expect(doc.paths?.['/v1/webhooks']?.post?.responses?.['201']).toBeDefined();
    expect(doc.paths?.['/v1/webhooks/{id}']?.delete?.responses?.['204']).toBeDefined();
    expect(Object.keys(doc.webhooks ?? {})).toEqual([...WEBHOOK_EVENT_TYPES]);
    expect(schemas).toHaveProperty('SpaceWebhookEvent');
  });
});

// ---- delivery ----

describe('webhook delivery', () => {
  it('delivers a signed event with every header, once per subscribed webhook', async () => {
    const receiver = await startReceiver(() => 204);
    const { service } = makeService();
    const wh = await service.register('org-a', { url: receiver.url, secret: receiver.secret, events: ['hqe.converged'] });
    const other = await service.register('org-a', { url: receiver.url, secret: receiver.secret, events: ['hqe.failed'] });
    await service.register('org-b', { url: receiver.url, secret: receiver.secret, events: ['hqe.converged'] });
    service.start();

    const data = { sessionId: 'ses_1', type: 'converged', step: 420, restart: 0, metrics: { coherence: 0.97 } };
    const emitted = await service.emit('org-a', 'hqe.converged', data);
    expect(emitted.deliveryIds).toHaveLength(1);
    expect(emitted.eventId).toMatch(/^evt_/);

    const [got] = await until('the delivery', () => receiver.received.length >= 1 && receiver.received);
    expect(got!.verified).toBe(true);
    const h = got!.headers;
    expect(h['content-type']).toBe('application/json');
    expect(h['x-rs-event']).toBe('hqe.converged');
    expect(h['x-rs-delivery']).toBe(emitted.deliveryIds[0]);
    expect(h['x-rs-attempt']).toBe('1');
    expect(h['user-agent']).toMatch(/^Resonance-Webhooks\//);
    const ts = Number(h['x-rs-timestamp']);
    expect(Math.abs(ts - Date.now() / 1000)).toBeLessThan(5);
    expect(h['x-rs-signature']).toBe(sign(receiver.secret, ts, got!.body));
    const payload = JSON.parse(got!.body) as Record<string, unknown>;
    expect(payload).toEqual({ id: emitted.eventId, type: 'hqe.converged', createdAt: expect.any(String), data });

    const d = await until('delivered status', async () => {
      const row = await onlyDelivery(service, 'org-a', wh.id);
      return row.status === 'delivered' && row;
    });
    expect(d.attempts).toBe(1);
    expect(d.deliveredAt).not.toBeNull();
    expect(await service.deliveries('org-a', other.id)).toHaveLength(0);
    await new Promise((r) => setTimeout(r, 100));
    expect(receiver.received).toHaveLength(1); // org-b's webhook got nothing
    expect(await service.queueDepth()).toBe(0);
  });

  it('retries 5xx with growing delays and delivers on the third attempt', async () => {
    const receiver = await startReceiver((n) => (n < 2 ? 500 : 200));
    const { service } = makeService({ timing: { baseDelayMs: 250, jitter: 0.1 } });
    const wh = await service.register('org-a', { url: receiver.url, secret: receiver.secret, events: ['hqe.failed'] });
    service.start();
    const { deliveryIds } = await service.emit('org-a', 'hqe.failed', { sessionId: 's' });

    const d = await until('delivery after retries', async () => {
      const row = await onlyDelivery(service, 'org-a', wh.id);
      return row.status === 'delivered' && row;
    });
    expect(d.attempts).toBe(3);
    expect(receiver.received.map((r) => r.headers['x-rs-delivery'])).toEqual([deliveryIds[0], deliveryIds[0], deliveryIds[0]]);
    expect(receiver.received.map((r) => r.headers['x-rs-attempt'])).toEqual(['1', '2', '3']);
    expect(receiver.received.every((r) => r.verified)).toBe(true);
    expect(new Set(receiver.received.map((r) => r.body)).size).toBe(1); // same event body on every attempt
    const [a, b, c] = receiver.received.map((r) => r.at);
    const gap1 = b! - a!;
    const gap2 = c! - b!;
    expect(gap1).toBeGreaterThanOrEqual(250 * 0.9 - 5);
    expect(gap2).toBeGreaterThanOrEqual(500 * 0.9 - 5);
    expect(gap2).toBeGreaterThan(gap1);
  });

  it('marks a delivery failed once retries would pass the maximum age', async () => {
    const receiver = await startReceiver(() => 503);
    const { service } = makeService({ timing: { baseDelayMs: 40, maxAgeMs: 400 } });
    const wh = await service.register('org-a', { url: receiver.url, secret: receiver.secret, events: ['hqe.plateau'] });
    service.start();
    const emitted = Date.now();
    await service.emit('org-a', 'hqe.plateau', { sessionId: 's' });
    const d = await until('failed status', async () => {
      const row = await onlyDelivery(service, 'org-a', wh.id);
      return row.status === 'failed' && row;
    });
    // Tries at about 0, 40, 120 and 280 ms; the next would be ~600 ms > 400 ms (fewer if the machine is slow).
    expect(d.attempts).toBeGreaterThanOrEqual(2);
    expect(d.attempts).toBeLessThanOrEqual(4);
    expect(d.attempts).toBe(receiver.received.length);
    expect(d.lastError).toBe('HTTP 503');
    expect(d.deliveredAt).toBeNull();
    expect(receiver.received[0]!.at - emitted).toBeLessThan(400);
    await new Promise((r) => setTimeout(r, 200));
    expect(receiver.received.length).toBe(d.attempts); // nothing after failing
  });

  it('treats redirects and timeouts as failures (no redirect is followed)', async () => {
    const receiver = await startReceiver((n) => (n === 0 ? { status: 302, headers: { Location: '/elsewhere' } } : 'hang'));
    const { service } = makeService({ timing: { timeoutMs: 200, baseDelayMs: 60_000, maxDelayMs: 3_600_000 } });
    const wh = await service.register('org-a', { url: receiver.url, secret: receiver.secret, events: ['hqe.plateau'] });
    await service.emit('org-a', 'hqe.plateau', {});
    expect(await service.runOnce()).toBe(1);
    let d = await onlyDelivery(service, 'org-a', wh.id);
    expect(d).toMatchObject({ status: 'pending', attempts: 1, lastError: 'HTTP 302 (redirects are not followed)' });
    expect(receiver.received).toHaveLength(1);
    expect(d.nextAttemptAt - Date.now()).toBeGreaterThan(50_000);

    await service.emit('org-a', 'hqe.plateau', {});
    const started = Date.now();
    expect(await service.runOnce()).toBe(1);
    expect(Date.now() - started).toBeLessThan(1_500);
    d = (await service.deliveries('org-a', wh.id))[0]!;
    expect(d).toMatchObject({ status: 'pending', attempts: 1, lastError: 'timeout after 200 ms' });
  });

  it('checks the target again at delivery time (DNS can change)', async () => {
    const receiver = await startReceiver(() => 200);
    const port = new URL(receiver.url).port;
    let answer = ['93.184.215.14'];
    const { service } = makeService({ allowPrivate: false, lookup: async () => answer });
    const wh = await service.register('org-a', { url: `http://rebinding.test:${port}/hook`, secret: receiver.secret, events: ['hqe.failed'] });
    answer = ['127.0.0.1'];
    await service.emit('org-a', 'hqe.failed', {});
    expect(await service.runOnce()).toBe(1);
    const d = await onlyDelivery(service, 'org-a', wh.id);
    expect(d.status).toBe('pending');
    expect(d.lastError).toMatch(/^webhook_target_forbidden: .*127\.0\.0\.1.*loopback/);
    expect(receiver.received).toHaveLength(0);
  });

  it('cancels pending deliveries of a deleted webhook', async () => {
    const receiver = await startReceiver(() => 200);
    const { service, db } = makeService();
    const wh = await service.register('org-a', { url: receiver.url, secret: receiver.secret, events: ['hqe.failed'] });
    const { deliveryIds } = await service.emit('org-a', 'hqe.failed', {});
    await service.delete('org-a', wh.id);
    expect(await service.runOnce()).toBe(0);
    const row = db.prepare('SELECT status FROM webhook_deliveries WHERE id = ?').get(deliveryIds[0]) as { status: string };
    expect(row.status).toBe('cancelled');
    expect(receiver.received).toHaveLength(0);
  });

  it('stop() waits for attempts in flight', async () => {
    const receiver = await startReceiver(() => ({ status: 200, delayMs: 300 }));
    const { service } = makeService();
    const wh = await service.register('org-a', { url: receiver.url, secret: receiver.secret, events: ['hqe.failed'] });
    service.start();
    await service.emit('org-a', 'hqe.failed', {});
    await until('the request', () => receiver.received.length === 1);
    await service.stop();
    expect((await onlyDelivery(service, 'org-a', wh.id)).status).toBe('delivered');
  });

  it('delivers rows left pending by a stopped process after a restart', async () => {
    const receiver = await startReceiver(() => 200);
    const first = makeService();
    const wh = await first.service.register('org-a', { url: receiver.url, secret: receiver.secret, events: ['hqe.converged'] });
    await first.service.emit('org-a', 'hqe.converged', { sessionId: 's' }); // dispatcher never started
    first.db.close(); // the process goes away

    const second = makeService({ path: first.path });
    second.service.start();
    const d = await until('delivery after restart', async () => {
      const row = await onlyDelivery(second.service, 'org-a', wh.id);
      return row.status === 'delivered' && row;
    });
    expect(d.attempts).toBe(1);
    expect(receiver.received).toHaveLength(1);
    expect(receiver.received[0]!.verified).toBe(true);
  });

  it('redelivers an attempt that was in flight when the process crashed', async () => {
    const receiver = await startReceiver((n) => (n === 0 ? 'hang' : 200));
    const timing = { timeoutMs: 300, leaseGraceMs: 100 };
    const first = makeService({ timing });
    const wh = await first.service.register('org-a', { url: receiver.url, secret: receiver.secret, events: ['hqe.failed'] });
    first.service.start();
    const { deliveryIds } = await first.service.emit('org-a', 'hqe.failed', { sessionId: 's' });
    await until('the first (hanging) attempt', () => receiver.received.length === 1);
    first.db.close(); // crash: no stop(), the attempt is still in flight

    const second = makeService({ path: first.path, timing });
    second.service.start();
    const d = await until('redelivery after the lease', async () => {
      const row = await onlyDelivery(second.service, 'org-a', wh.id);
      return row.status === 'delivered' && row;
    });
    expect(d.attempts).toBe(2);
    expect(receiver.received.map((r) => r.headers['x-rs-delivery'])).toEqual([deliveryIds[0], deliveryIds[0]]);
    // not before the first attempt's lease (claim + timeout 300 + grace 100 ms) ran out
    expect(receiver.received[1]!.at - receiver.received[0]!.at).toBeGreaterThanOrEqual(200);
  });
});
