/**
 * Webhook targets an attacker controls: a name that rebinds to loopback between the address check and the
 * connection, and ports outside the allowed list. The dispatcher runs in-process against a real SQLite file
 * and a real receiver on 127.0.0.1; the port list is also checked through the real server.
 *
 * DNS is played by a scripted resolver: the service's `lookup` option is the answer its guard sees, and for
 * the rebinding case the process's own resolver (dns.lookup, which any connection without a pinned lookup
 * uses) answers from the same script, so a delivery that resolved the name a second time would reach the
 * receiver.
 */
import dns from 'node:dns';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDb } from '../../src/store/db.js';
import { type DeliveryRecord, SqliteWebhookStore } from '../../src/store/webhooks.js';
import { WebhookService, type WebhookServiceOptions, WebhookTargetError } from '../../src/webhooks/service.js';
import { verifySignature } from '../../src/webhooks/signing.js';
import { DEFAULT_WEBHOOK_PORTS, type LookupAll } from '../../src/webhooks/targets.js';
import { DEV_KEY, startServer } from '../helpers/server.js';

const PUBLIC = '93.184.215.14';
const SECRET = 'an-abuse-test-secret-of-some-length';

let dir: string;
const cleanups: Array<() => Promise<void> | void> = [];
let dbCounter = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'resonance-abuse-webhooks-'));
});

afterEach(async () => {
  vi.restoreAllMocks();
  while (cleanups.length > 0) await cleanups.pop()!();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function makeService(opts: Partial<Omit<WebhookServiceOptions, 'store'>> & { path?: string }): { service: WebhookService; path: string } {
  const path = opts.path ?? join(dir, `wh-${++dbCounter}.sqlite`);
  const db = openDb(path);
  const service = new WebhookService({
    allowPrivate: false,
    logger: pino({ level: 'silent' }),
    ...opts,
    timing: { baseDelayMs: 60_000, maxDelayMs: 60_000, pollIntervalMs: 10, timeoutMs: 500, leaseGraceMs: 100, jitter: 0 },
    store: new SqliteWebhookStore(db),
  });
  cleanups.push(async () => {
    await service.stop();
    if (db.open) db.close();
  });
  return { service, path };
}

interface Received {
  headers: IncomingHttpHeaders;
  verified: boolean;
}

/** A receiver on 127.0.0.1 that answers 204 and records every request with its signature check. */
async function startReceiver(): Promise<{ port: number; received: Received[] }> {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const one = (name: string): string | undefined => {
        const v = req.headers[name];
        return Array.isArray(v) ? v[0] : v;
      };
      received.push({ headers: req.headers, verified: verifySignature(SECRET, one('x-rs-timestamp'), Buffer.concat(chunks), one('x-rs-signature'), 300) });
      res.writeHead(204).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as AddressInfo).port, received };
}

/** A scripted resolver: answer(n) for its n-th question (0-based); an Error is thrown as ENOTFOUND. */
function scriptedDns(answer: (n: number) => string[] | null): { lookup: LookupAll; calls: () => number } {
  let calls = 0;
  const lookup: LookupAll = async (host) => {
    const addresses = answer(calls++);
    if (addresses === null) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return addresses;
  };
  return { lookup, calls: () => calls };
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address?: string | dns.LookupAddress[], family?: number) => void;

/** Makes the process resolver answer `host` from `lookup` (everything else as before). */
function resolveSystemWide(host: string, lookup: LookupAll): void {
  const original = dns.lookup;
  vi.spyOn(dns, 'lookup').mockImplementation(((name: string, options: unknown, callback?: unknown) => {
    const cb = (typeof options === 'function' ? options : callback) as LookupCallback;
    const opts = (typeof options === 'object' && options !== null ? options : {}) as dns.LookupOptions;
    if (name !== host) return (original as (...args: unknown[]) => void)(name, options, callback);
    lookup(name).then(
      (addresses) => {
        const entries = addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
        if (opts.all) cb(null, entries);
        else cb(null, entries[0]!.address, entries[0]!.family);
      },
      (err: NodeJS.ErrnoException) => cb(err),
    );
  }) as typeof dns.lookup);
}

async function onlyDelivery(service: WebhookService, webhookId: string): Promise<DeliveryRecord> {
  const list = await service.deliveries('org-a', webhookId);
  expect(list).toHaveLength(1);
  return list[0]!;
}

describe('DNS rebinding', () => {
  it('never connects to an address the guard did not vet: a name that turns into loopback after the check gets nothing delivered locally', async () => {
    const receiver = await startReceiver();
    // Public for the registration check and the attempt's check, loopback for anyone who asks again.
    const resolver = scriptedDns((n) => (n < 2 ? [PUBLIC] : ['127.0.0.1']));
    resolveSystemWide('rebind.test', resolver.lookup);
    const { service } = makeService({ allowPrivate: false, lookup: resolver.lookup, ports: [receiver.port] });

    const wh = await service.register('org-a', { url: `http://rebind.test:${receiver.port}/hook`, secret: SECRET, events: ['hqe.failed'] });
    expect(resolver.calls()).toBe(1);
    await service.emit('org-a', 'hqe.failed', { sessionId: 's' });
    expect(await service.runOnce()).toBe(1);

    expect(receiver.received).toHaveLength(0);
    // One resolution per check, none at connection time: the attempt went to the vetted public address.
    expect(resolver.calls()).toBe(2);
    const d = await onlyDelivery(service, wh.id);
    expect(d.status).toBe('pending');
    expect(d.lastError).not.toBeNull();
  });

  it('connects to the address the attempt vetted, with the URL host in Host, and resolves again on every attempt', async () => {
    const receiver = await startReceiver();
    // Only the first question is answered; a connection that resolved the name itself would fail.
    const resolver = scriptedDns((n) => (n === 0 ? ['127.0.0.1'] : null));
    const { service } = makeService({ allowPrivate: true, lookup: resolver.lookup });

    const wh = await service.register('org-a', { url: `http://pinned.test:${receiver.port}/hook?x=1`, secret: SECRET, events: ['hqe.failed'] });
    expect(resolver.calls()).toBe(0); // registration with private targets allowed checks the URL's shape only
    await service.emit('org-a', 'hqe.failed', { sessionId: 's' });
    expect(await service.runOnce()).toBe(1);

    expect(receiver.received).toHaveLength(1);
    expect(receiver.received[0]!.verified).toBe(true);
    expect(receiver.received[0]!.headers.host).toBe(`pinned.test:${receiver.port}`);
    expect((await onlyDelivery(service, wh.id)).status).toBe('delivered');
    expect(resolver.calls()).toBe(1);

    // The next attempt resolves afresh (and this time the name does not resolve).
    await service.emit('org-a', 'hqe.failed', { sessionId: 's2' });
    expect(await service.runOnce()).toBe(1);
    const [latest] = await service.deliveries('org-a', wh.id);
    expect(latest).toMatchObject({ status: 'pending', attempts: 1 });
    expect(latest!.lastError).toMatch(/^webhook_target_unresolvable: .*pinned\.test/);
    expect(receiver.received).toHaveLength(1);
    expect(resolver.calls()).toBe(2);
  });
});

describe('target ports', () => {
  it('refuses ports outside the list at registration, naming the port; private targets allowed means any port', async () => {
    const { service } = makeService({ allowPrivate: false, ports: DEFAULT_WEBHOOK_PORTS });
    const refused = await service.register('org-a', { url: `https://${PUBLIC}:6379/hook`, events: ['hqe.failed'] }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(WebhookTargetError);
    expect((refused as WebhookTargetError).code).toBe('webhook_target_forbidden');
    expect((refused as WebhookTargetError).message).toContain('6379');
    for (const url of [`https://${PUBLIC}/hook`, `http://${PUBLIC}/hook`, `https://${PUBLIC}:8443/hook`, `http://${PUBLIC}:8080/hook`]) {
      await expect(service.register('org-a', { url, events: ['hqe.failed'] }), url).resolves.toMatchObject({ url });
    }
    const lenient = makeService({ allowPrivate: true, ports: DEFAULT_WEBHOOK_PORTS }).service;
    await expect(lenient.register('org-a', { url: 'http://127.0.0.1:6379/hook', events: ['hqe.failed'] })).resolves.toMatchObject({ url: 'http://127.0.0.1:6379/hook' });
  });

  it('checks the port again at delivery: a target registered under another list is not contacted', async () => {
    const receiver = await startReceiver();
    const resolver = scriptedDns(() => [PUBLIC]);
    const before = makeService({ allowPrivate: false, lookup: resolver.lookup });
    const wh = await before.service.register('org-a', { url: `http://hooks.test:${receiver.port}/hook`, secret: SECRET, events: ['hqe.failed'] });
    const after = makeService({ allowPrivate: false, lookup: resolver.lookup, ports: [443], path: before.path });
    await after.service.emit('org-a', 'hqe.failed', {});
    expect(await after.service.runOnce()).toBe(1);
    const d = await onlyDelivery(after.service, wh.id);
    expect(d.status).toBe('pending');
    expect(d.lastError).toBe(`webhook_target_forbidden: the target port ${receiver.port} is not allowed (allowed: 443)`);
    expect(resolver.calls()).toBe(1); // refused before resolving
    expect(receiver.received).toHaveLength(0);
  });

  it('the server takes its list from RESONANCE_WEBHOOK_PORTS: 400 webhook_target_forbidden at /url naming the port', async () => {
    const server = await startServer({ env: { RESONANCE_ALLOW_PRIVATE_WEBHOOKS: '0', RESONANCE_WEBHOOK_PORTS: '443, 9443' } });
    cleanups.push(() => server.stop());
    const post = (url: string) =>
      fetch(`${server.url}/v1/hqe/webhooks`, {
        method: 'POST',
        headers: { 'X-Api-Key': DEV_KEY, 'Content-Type': 'application/json' },
        body: JSON.stringify({ url, events: ['hqe.failed'] }),
      });
    const refused = await post(`https://${PUBLIC}:8443/hook`);
    expect(refused.status).toBe(400);
    expect(refused.headers.get('content-type')).toContain('application/problem+json');
    const body = (await refused.json()) as { code: string; errors: Array<{ pointer: string; code: string; message: string }> };
    expect(body.code).toBe('webhook_target_forbidden');
    expect(body.errors).toEqual([{ pointer: '/url', code: 'webhook_target_forbidden', message: expect.stringContaining('port 8443') as unknown as string }]);
    expect((await post(`https://${PUBLIC}:9443/hook`)).status).toBe(201);
    expect((await post(`https://${PUBLIC}/hook`)).status).toBe(201);
  });
});
