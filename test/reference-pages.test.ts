/**
 * The API reference as a reader meets it, from a real server: Swagger UI renders openapi.yaml in Chromium
 * with nothing fetched from elsewhere and no CSP violation; the realtime page shows the AsyncAPI contract;
 * every problem's `type` URI resolves to its entry in the errors reference.
 */
import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_KEY, startServer, type TestServer } from './helpers/server.js';

const CHROMIUM = process.env.RESONANCE_CHROMIUM ?? '/usr/bin/chromium';

describe('the API reference', () => {
  let server: TestServer;
  let browser: Browser;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the browser tests need Debian's chromium (.ci/run installs it)`);
    server = await startServer();
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--no-first-run', '--disable-background-networking'] });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  /** Opens `path`, collecting requests to other origins and console errors (CSP violations among them). */
  async function visit(path: string, ready: string): Promise<{ foreign: string[]; errors: string[]; count: number }> {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const origin = new URL(server.url).origin;
      const foreign: string[] = [];
      const errors: string[] = [];
      page.on('request', (r) => {
        if (!r.url().startsWith(origin) && !/^(data|blob):/.test(r.url())) foreign.push(r.url());
      });
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(server.url + path);
      await page.waitForSelector(ready, { timeout: 30_000 });
      return { foreign, errors, count: await page.locator(ready).count() };
    } finally {
      await context.close();
    }
  }

  it('renders every operation of openapi.yaml with Swagger UI, served by this server alone', async () => {
    const yaml = await (await fetch(`${server.url}/openapi.yaml`)).text();
    const operations = (yaml.match(/^ {4}(get|post|put|patch|delete):$/gm) ?? []).length;
    expect(operations).toBeGreaterThan(25);
    const seen = await visit('/docs', '.opblock');
    expect(seen.count).toBe(operations);
    expect(seen.foreign).toEqual([]);
    expect(seen.errors).toEqual([]);
    const docs = await fetch(`${server.url}/docs`);
    expect(docs.headers.get('content-security-policy')).toContain("script-src 'self'");
    // Only the two files the page loads are served from the package.
    expect((await fetch(`${server.url}/docs/assets/swagger-ui-bundle.js`)).status).toBe(200);
    expect((await fetch(`${server.url}/docs/assets/package.json`)).status).toBe(404);
    expect((await fetch(`${server.url}/docs/assets/..%2Fpackage.json`)).status).toBe(404);
  }, 60_000);

  it('shows the realtime protocol from asyncapi.yaml: every message, and the close codes', async () => {
    const yaml = await (await fetch(`${server.url}/asyncapi.yaml`)).text();
    expect(yaml).toMatch(/^asyncapi: 3\./m);
    const seen = await visit('/docs/realtime', 'h3[id^="message-"]');
    // hello, subscribe, propose_delta, ping; welcome, snapshot, delta, telemetry, phases, event, conflict, pong, error.
    expect(seen.count).toBeGreaterThanOrEqual(13);
    expect(seen.errors).toEqual([]);
    const html = await (await fetch(`${server.url}/docs/realtime`)).text();
    for (const code of ['4401', '4410', '4429']) expect(html).toContain(code);
  }, 60_000);

  it("resolves a problem's type URI to its entry in the errors reference", async () => {
    const refused = await fetch(`${server.url}/v1/hqe/validate`, {
      method: 'POST', headers: { 'X-Api-Key': DEV_KEY, 'Content-Type': 'application/json' }, body: JSON.stringify({ primes: [2, 4] }),
    });
    const problem = (await refused.json()) as { type: string; code: string };
    expect(problem.code).toBe('validation_failed');
    const typeUrl = new URL(problem.type, server.url);
    const hop = await fetch(typeUrl, { redirect: 'manual' });
    expect(hop.status).toBe(302);
    const target = new URL(hop.headers.get('location')!, server.url);
    expect(target.pathname + target.hash).toBe('/docs/errors#validation_failed');
    const page = await (await fetch(target)).text();
    expect(page).toContain('id="validation_failed"');
    // Every code the catalogue lists resolves; an unknown one is a 404 problem.
    for (const code of ['unauthorized', 'insufficient_role', 'quota_exceeded', 'owner_unreachable', 'rate_limited']) {
      expect((await fetch(`${server.url}/problems/${code}`, { redirect: 'manual' })).status, code).toBe(302);
      expect(page).toContain(`id="${code}"`);
    }
    const unknown = await fetch(`${server.url}/problems/no_such_code`, { redirect: 'manual' });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { code: string }).code).toBe('not_found');
  });
});
