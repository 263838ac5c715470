/**
 * A page on another origin uses the API, as a third-party app would: Debian's Chromium (playwright-core)
 * loads a page from the app's own backend (a second origin), whose SDK joins a space with session tokens
 * that backend mints with its API key (authEndpoint), and calls REST with such a token across origins
 * (CORS). The server allows that origin only (RESONANCE_CORS_ORIGINS); a page on a third origin is refused.
 */
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCorsOrigins } from '../src/http/cors.js';
import { DEMO_ROOM, DEV_KEY, startServer, type TestServer } from './helpers/server.js';

const CHROMIUM = process.env.RESONANCE_CHROMIUM ?? '/usr/bin/chromium';
const SDK_ENTRY = fileURLToPath(new URL('../packages/sdk/dist/index.js', import.meta.url));

/** The SDK as a page loads it: one ES module. */
async function sdkBundle(): Promise<string> {
  const out = await build({ entryPoints: [SDK_ENTRY], bundle: true, format: 'esm', platform: 'browser', write: false, logLevel: 'silent' });
  return out.outputFiles[0]!.text;
}

/** What an app serves: read at each request, since the API's address is known only after the app's. */
interface AppContent {
  api: string;
  sdk: string;
  page: string;
}

/**
 * The app: its page, the SDK bundle, and its token endpoint, which mints a session token for the space
 * with the API key it keeps to itself (what the page's backend does in production).
 */
function appServer(content: AppContent): Promise<{ origin: string; server: Server }> {
  const { sdk } = content;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const send = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(body);
    };
    if (req.method === 'GET' && req.url === '/') return send(200, 'text/html; charset=utf-8', content.page);
    if (req.method === 'GET' && req.url === '/sdk.js') return send(200, 'text/javascript', sdk);
    if (req.method === 'POST' && req.url === '/token') {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const ask = JSON.parse(body) as { spaceId: string; role?: string; displayName?: string };
        // The backend decides what this page may be: here a writer, whatever it asked for.
        void fetch(`${content.api}/v1/spaces/${encodeURIComponent(ask.spaceId)}/sessions`, {
          method: 'POST',
          headers: { 'X-Api-Key': DEV_KEY, 'Content-Type': 'application/json' },
          body: JSON.stringify({ role: 'writer', displayName: ask.displayName ?? 'page' }),
        }).then(async (r) => send(r.status, 'application/json', await r.text()), (err: unknown) => send(502, 'text/plain', String(err)));
      });
      return;
    }
    send(404, 'text/plain', 'not found');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server })));
}

/** The page: join the space through the auth endpoint, wait for telemetry, propose, then read REST with the session token. */
const PAGE = (api: string, spaceId: string): string => `<!doctype html><meta charset="utf-8"><title>app</title>
<script type="module">
import { ResonanceClient } from '/sdk.js';
const out = {};
try {
  const rs = new ResonanceClient({ baseUrl: ${JSON.stringify(api)}, authEndpoint: '/token' });
  const session = await rs.sessions.open(${JSON.stringify(spaceId)}, { displayName: 'from-the-app' });
  out.role = session.role;
  out.telemetry = await new Promise((resolve) => session.on('telemetry', (m) => resolve(m.version)));
  out.proposed = await session.proposeDelta({ fromVersion: session.version, ops: [{ op: 'shift_phase', path: '/state/phases/1', value: 0.01 }] });
  // REST across origins with the session token: a preflighted request (Authorization).
  const token = (await (await fetch('/token', { method: 'POST', body: JSON.stringify({ spaceId: ${JSON.stringify(spaceId)} }) })).json()).token;
  const r = await fetch(${JSON.stringify(api)} + '/v1/spaces/' + ${JSON.stringify(spaceId)} + '/snapshot', { headers: { Authorization: 'Bearer ' + token } });
  out.snapshot = { status: r.status, version: (await r.json()).version, requestId: r.headers.get('X-Request-Id') };
  // A refusal is readable too: the problem's code, and the exposed rate-limit header.
  const bad = await fetch(${JSON.stringify(api)} + '/v1/spaces/' + ${JSON.stringify(spaceId)} + '/snapshot', { headers: { Authorization: 'Bearer nope' } });
  out.refused = { status: bad.status, code: (await bad.json()).code };
  session.close();
} catch (err) {
  out.error = String(err && err.stack || err);
}
window.result = out;
</script>`;

/** A page on an origin the server does not list: its cross-origin call must fail in the browser. */
const FOREIGN_PAGE = (api: string): string => `<!doctype html><meta charset="utf-8"><title>other</title>
<script type="module">
let outcome;
try {
  const r = await fetch(${JSON.stringify(api)} + '/v1/spaces', { headers: { 'X-Api-Key': 'rsk_guess' } });
  outcome = 'answered ' + r.status;
} catch (err) {
  outcome = 'blocked: ' + err.name;
}
window.result = { outcome };
</script>`;

describe('a page on another origin', () => {
  let api: TestServer;
  let browser: Browser;
  let app: { origin: string; server: Server };
  let foreign: { origin: string; server: Server };
  let spaceId = '';

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the browser tests need Debian's chromium (.ci/run installs it)`);
    const sdk = await sdkBundle();
    // The app's origin is the API's allowlist: the app listens first, and learns the API's address after.
    const content: AppContent = { api: '', sdk, page: '' };
    app = await appServer(content);
    api = await startServer({ env: { RESONANCE_CORS_ORIGINS: app.origin } });
    const created = await fetch(`${api.url}/v1/spaces`, { method: 'POST', headers: { 'X-Api-Key': DEV_KEY, 'Content-Type': 'application/json' }, body: JSON.stringify(DEMO_ROOM) });
    spaceId = ((await created.json()) as { id: string }).id;
    content.api = api.url;
    content.page = PAGE(api.url, spaceId);
    foreign = await appServer({ api: api.url, sdk, page: FOREIGN_PAGE(api.url) });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--no-first-run', '--disable-background-networking'] });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    app?.server.close();
    foreign?.server.close();
    await api?.stop();
  });

  /** What the page at `origin` left in window.result, in a fresh browser context. */
  async function resultOf(origin: string): Promise<Record<string, unknown>> {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(origin + '/');
      await page.waitForFunction(() => (window as unknown as { result?: unknown }).result !== undefined, undefined, { timeout: 30_000 });
      return (await page.evaluate(() => (window as unknown as { result: unknown }).result)) as Record<string, unknown>;
    } finally {
      await context.close();
    }
  }

  it('answers a preflight from a listed origin before authentication, and none from another', async () => {
    const preflight = (origin: string): Promise<Response> =>
      fetch(`${api.url}/v1/spaces/${spaceId}/snapshot`, {
        method: 'OPTIONS',
        headers: { Origin: origin, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' },
      });
    const ok = await preflight(app.origin);
    expect(ok.status).toBe(204);
    expect(ok.headers.get('access-control-allow-origin')).toBe(app.origin);
    expect(ok.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
    expect(ok.headers.get('access-control-allow-credentials')).toBeNull();
    const other = await preflight(foreign.origin);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('joins a space with tokens from its own backend and calls REST across origins', async () => {
    const result = await resultOf(app.origin);
    expect(result.error).toBeUndefined();
    expect(result.role).toBe('writer');
    expect(result.telemetry).toEqual(expect.any(Number));
    expect(result.proposed).toEqual(expect.any(Number));
    expect(result.snapshot).toMatchObject({ status: 200, version: expect.any(Number), requestId: expect.any(String) });
    expect(result.refused).toEqual({ status: 401, code: 'invalid_credentials' });
  }, 60_000);

  it('blocks a page on an origin the server does not list', async () => {
    expect((await resultOf(foreign.origin)).outcome).toBe('blocked: TypeError');
  }, 60_000);
});

describe('RESONANCE_CORS_ORIGINS', () => {
  it('takes origins as browsers send them, or *, and names a malformed one', () => {
    expect(parseCorsOrigins(undefined)).toEqual([]);
    expect(parseCorsOrigins(' https://app.example.com, http://localhost:5173 ')).toEqual(['https://app.example.com', 'http://localhost:5173']);
    expect(parseCorsOrigins('*')).toEqual(['*']);
    // A path, a missing scheme, another scheme, a default port written out: not what a browser sends.
    for (const bad of ['https://app.example.com/', 'app.example.com', 'ftp://files.example.com', 'https://app.example.com:443']) {
      expect(() => parseCorsOrigins(bad), bad).toThrow(new RegExp(`"${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}" is not an origin`));
    }
  });
});
