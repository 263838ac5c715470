/**
 * Bad input must be a documented 4xx, never a 500: bodies whose Content-Encoding lies, unknown codings,
 * `__proto__` fields, absurd nesting, sloppy or repeated paging parameters, unknown fields of `/step`. Also
 * the small exposures: /metrics off a public listen address unless a token is configured, the demo pages'
 * CSP, and the documented basis limit. Everything against the built server in a child process, with raw
 * node:http requests so the test controls every header and byte.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { type IncomingHttpHeaders, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, DEV_KEY, startServer, type TestServer } from '../helpers/server.js';

const METRICS_TOKEN = 'metrics-token-for-the-abuse-tests-0123456789';

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: { code?: string; errors?: Array<{ pointer: string; code: string; message: string }>; [k: string]: unknown } | undefined;
}

/** One HTTP/1.1 request with exactly these headers and bytes (Content-Length added unless chunked is asked for). */
function raw(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer | string): Promise<RawResponse> {
  const url = new URL(path, base);
  const bytes = body === undefined ? undefined : typeof body === 'string' ? Buffer.from(body) : body;
  const all: Record<string, string> = { ...headers };
  if (bytes && !Object.keys(all).some((h) => h.toLowerCase() === 'transfer-encoding')) all['Content-Length'] = String(bytes.length);
  return new Promise((resolve, reject) => {
    const req = request({ hostname: url.hostname, port: url.port, path: url.pathname + url.search, method, headers: all, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const type = res.headers['content-type'] ?? '';
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: /json/.test(type) && text ? (JSON.parse(text) as RawResponse['json']) : undefined });
      });
    });
    req.on('error', reject);
    req.end(bytes);
  });
}

const JSON_HEADERS = { 'X-Api-Key': DEV_KEY, 'Content-Type': 'application/json' };
const VALID_CONFIG = {
  primes: [2, 3, 5, 7],
  schedule: { steps: 64, dt: 0.1 },
  entropy: { base: 'shannon', lambda: 0.03 },
  resonanceTarget: { value: 0.8, operator: 'R' },
  phaseSeeding: { golden: true, silver: true },
};

/** The first n primes. */
function primes(n: number): number[] {
  const out: number[] = [];
  for (let c = 2; out.length < n; c++) if (out.every((p) => p * p > c || c % p !== 0)) out.push(c);
  return out;
}

let server: TestServer;
let base: string;

beforeAll(async () => {
  server = await startServer({ env: { RESONANCE_METRICS_TOKEN: METRICS_TOKEN } });
  base = server.url;
});

afterAll(async () => {
  await server?.stop();
});

/** A problem+json 4xx with `code`; returns its errors. */
function expectProblem(r: RawResponse, status: number, code: string, label = ''): Array<{ pointer: string; code: string; message: string }> {
  expect(r.status, `${label} ${r.text}`).toBe(status);
  expect(r.headers['content-type'], label).toContain('application/problem+json');
  expect(r.json?.code, label).toBe(code);
  return r.json?.errors ?? [];
}

describe('Content-Encoding', () => {
  it('reads gzip, deflate and br bodies (the coding is case-insensitive)', async () => {
    const body = JSON.stringify(VALID_CONFIG);
    for (const [coding, bytes] of [['gzip', gzipSync(body)], ['GZip', gzipSync(body)], ['deflate', deflateSync(body)], ['br', brotliCompressSync(body)]] as const) {
      const r = await raw(base, 'POST', '/v1/hqe/validate', { ...JSON_HEADERS, 'Content-Encoding': coding }, bytes);
      expect(r.status, `${coding}: ${r.text}`).toBe(200);
    }
  });

  it('a body that is not what its Content-Encoding says is 400 malformed_encoding, not a 500', async () => {
    const json = Buffer.from(JSON.stringify(VALID_CONFIG));
    const truncated = gzipSync(json).subarray(0, 20);
    const cases: Array<[string, Buffer]> = [
      ['gzip', Buffer.from('this is not gzip at all')],
      ['gzip', truncated],
      ['br', Buffer.from('this is not brotli either')],
      ['br', gzipSync(json)],
      ['deflate', json],
    ];
    for (const [coding, bytes] of cases) {
      for (const path of ['/v1/hqe/validate', '/v1/spaces', '/oauth/token']) {
        const label = `${coding} ${path}`;
        const errors = expectProblem(await raw(base, 'POST', path, { ...JSON_HEADERS, 'Content-Encoding': coding }, bytes), 400, 'malformed_encoding', label);
        expect(errors[0]?.pointer, label).toBe('');
      }
    }
  });

  it('an unknown coding is 415 unsupported_content_encoding, naming it, with Accept-Encoding', async () => {
    for (const coding of ['compress', 'zstd', 'gzip, br', 'x-gzip']) {
      const r = await raw(base, 'POST', '/v1/hqe/validate', { ...JSON_HEADERS, 'Content-Encoding': coding }, JSON.stringify(VALID_CONFIG));
      expectProblem(r, 415, 'unsupported_content_encoding', coding);
      expect(String(r.json?.detail), coding).toContain(coding);
      expect(r.headers['accept-encoding'], coding).toBe('gzip, deflate, br');
    }
  });

  it('a compressed body that inflates past the size limit is 413 payload_too_large', async () => {
    const bomb = gzipSync(Buffer.alloc(8 * 1024 * 1024, 0x20)); // 8 MiB of spaces, ~8 KiB on the wire
    expect(bomb.length).toBeLessThan(64 * 1024);
    expectProblem(await raw(base, 'POST', '/v1/hqe/validate', { ...JSON_HEADERS, 'Content-Encoding': 'gzip' }, bomb), 413, 'payload_too_large');
  });
});

describe('JSON bodies', () => {
  it('__proto__ anywhere is 400 validation_failed at its pointer', async () => {
    const cases: Array<[string, string]> = [
      ['{"__proto__":{"admin":true},"primes":[2,3]}', '/__proto__'],
      ['{"primes":[2,3],"schedule":{"steps":4,"__proto__":{"x":1}}}', '/schedule/__proto__'],
      ['{"primes":[2,3],"list":[{"a":1},{"\\u005f_proto__":1}]}', '/list/1/__proto__'],
    ];
    for (const [body, pointer] of cases) {
      const errors = expectProblem(await raw(base, 'POST', '/v1/hqe/validate', JSON_HEADERS, body), 400, 'validation_failed', body);
      expect(errors, body).toEqual([expect.objectContaining({ pointer, code: 'forbidden_field' })]);
    }
  });

  it('nesting beyond 64 levels is 400 too_deep at the pointer of the value too deep, on every route', async () => {
    const deepArray = (n: number) => '['.repeat(n) + ']'.repeat(n);
    const expectedArrayPointer = '/0'.repeat(64);
    for (const path of ['/v1/hqe/validate', '/v1/hqe/run', '/v1/hqe/sessions', '/v1/spaces', '/v1/webhooks', '/oauth/token']) {
      const errors = expectProblem(await raw(base, 'POST', path, { ...JSON_HEADERS, 'Idempotency-Key': `deep-${path}` }, deepArray(5000)), 400, 'too_deep', path);
      expect(errors, path).toEqual([expect.objectContaining({ pointer: expectedArrayPointer, code: 'too_deep' })]);
    }
    const deepObject = `{"primes":[2,3],"x":${'{"a":'.repeat(200)}1${'}'.repeat(200)}}`;
    const errors = expectProblem(await raw(base, 'POST', '/v1/hqe/validate', JSON_HEADERS, deepObject), 400, 'too_deep');
    expect(errors[0]?.pointer).toBe(`/x${'/a'.repeat(63)}`);
    // As deep as the body limit allows: still a 400, quickly.
    const half = Math.floor((1024 * 1024 - 16) / 2);
    expectProblem(await raw(base, 'POST', '/v1/hqe/validate', JSON_HEADERS, deepArray(half)), 400, 'too_deep');
    // 64 levels are accepted (the route then judges the content).
    const ok = await raw(base, 'POST', '/v1/hqe/validate', JSON_HEADERS, `{"primes":[2,3],"x":${'['.repeat(63)}${']'.repeat(63)}}`);
    expect(ok.status).toBe(400);
    expect(ok.json?.code).toBe('validation_failed');
  });

  it('no body of a zoo of odd ones is a 500', async () => {
    const bodies: Array<[Record<string, string>, Buffer | string]> = [
      [{}, ''],
      [{}, '{'],
      [{}, 'null'],
      [{}, '"a string"'],
      [{}, '{"a":1e400}'],
      [{}, '\uFEFF{"primes":[2,3]}'],
      [{}, Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])],
      [{}, '{"primes":[2,3]}\u0000'],
      [{ 'Content-Type': 'application/json; charset=utf-16' }, '{"primes":[2,3]}'],
      [{ 'Transfer-Encoding': 'chunked' }, '{"primes":[2,3]}'],
      [{ 'Content-Encoding': 'identity' }, '{"primes":[2,3]}'],
      [{ 'Content-Encoding': 'gzip' }, ''],
    ];
    for (const [headers, body] of bodies) {
      for (const path of ['/v1/hqe/validate', '/v1/spaces', '/v1/webhooks', '/oauth/token']) {
        const r = await raw(base, 'POST', path, { ...JSON_HEADERS, ...headers }, body);
        const label = `${path} ${JSON.stringify(headers)} ${JSON.stringify(body.toString())}`;
        expect(r.status, `${label}: ${r.text}`).toBeLessThan(500);
        if (r.status >= 400) expect(r.headers['content-type'], label).toContain('application/problem+json');
      }
    }
  });

  it('POST …/step names an unknown field at its own pointer', async () => {
    const created = await raw(base, 'POST', '/v1/hqe/sessions', JSON_HEADERS, JSON.stringify(VALID_CONFIG));
    expect(created.status, created.text).toBe(201);
    const id = String(created.json?.sessionId ?? created.json?.id);
    const errors = expectProblem(await raw(base, 'POST', `/v1/hqe/sessions/${id}/step`, JSON_HEADERS, '{"steps":1,"foo":1,"bar~/x":2}'), 400, 'validation_failed');
    expect(errors.map((e) => [e.pointer, e.code]).sort()).toEqual([['/bar~0~1x', 'unknown_field'], ['/foo', 'unknown_field']]);
  });
});

describe('paging parameters', () => {
  it('page_size must be plain decimal digits in 1..500, given once; cursor once', async () => {
    const lists = ['/v1/spaces', '/v1/webhooks', '/v1/hqe/webhooks'];
    for (const list of lists) {
      for (const value of ['1e2', '0x10', '%20%201', '1%20', '1.0', '-1', '0', '501', '', '+5', '1_0']) {
        const errors = expectProblem(await raw(base, 'GET', `${list}?page_size=${value}`, JSON_HEADERS), 400, 'validation_failed', `${list} ${value}`);
        expect(errors, `${list} ${value}`).toEqual([expect.objectContaining({ pointer: '/page_size' })]);
      }
      const twiceSize = expectProblem(await raw(base, 'GET', `${list}?page_size=2&page_size=3`, JSON_HEADERS), 400, 'validation_failed', list);
      expect(twiceSize).toEqual([expect.objectContaining({ pointer: '/page_size', code: 'repeated' })]);
      const twiceCursor = expectProblem(await raw(base, 'GET', `${list}?cursor=a&cursor=b`, JSON_HEADERS), 400, 'validation_failed', list);
      expect(twiceCursor).toEqual([expect.objectContaining({ pointer: '/cursor', code: 'repeated' })]);
      expect((await raw(base, 'GET', `${list}?page_size=2`, JSON_HEADERS)).status, list).toBe(200);
      expect((await raw(base, 'GET', `${list}?page_size=500`, JSON_HEADERS)).status, list).toBe(200);
    }
  });
});

describe('exposures', () => {
  it('/metrics needs the bearer token when RESONANCE_METRICS_TOKEN is set', async () => {
    const none = await raw(base, 'GET', '/metrics');
    expectProblem(none, 401, 'unauthorized');
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    expectProblem(await raw(base, 'GET', '/metrics', { Authorization: 'Bearer not-the-token' }), 401, 'invalid_credentials');
    expectProblem(await raw(base, 'GET', '/metrics', { Authorization: `Basic ${Buffer.from(`x:${METRICS_TOKEN}`).toString('base64')}` }), 401, 'unauthorized');
    const ok = await raw(base, 'GET', '/metrics', { Authorization: `Bearer ${METRICS_TOKEN}` });
    expect(ok.status).toBe(200);
    expect(ok.text).toContain('resonance_http_requests_total');
  });

  it('/metrics is a 404 without a token when the server listens on a non-loopback address', async () => {
    // No API key is configured: nothing but the ops routes answers on this briefly public listener.
    const dataDir = await mkdtemp(join(tmpdir(), 'resonance-abuse-public-'));
    const env = { ...process.env, RESONANCE_LOG_LEVEL: 'warn', RESONANCE_BACKEND: 'cpu' } as Record<string, string>;
    delete env.RESONANCE_BOOTSTRAP_KEY;
    delete env.RESONANCE_METRICS_TOKEN;
    const proc: ChildProcess = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--host', '0.0.0.0', '--data', dataDir, '--backend', 'cpu'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      let out = '';
      const port = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "listening on" within 30 s: ${out}`)), 30_000);
        proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
          out += chunk;
          const m = /listening on http:\/\/[^\s]*:(\d+)\n/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]!);
          }
        });
        proc.once('exit', (code) => reject(new Error(`server exited (${code}): ${out}`)));
      });
      const local = `http://127.0.0.1:${port}`;
      expectProblem(await raw(local, 'GET', '/metrics'), 404, 'not_found');
      expect((await raw(local, 'GET', '/healthz')).status).toBe(200);
    } finally {
      proc.kill('SIGTERM');
      if (proc.exitCode === null && proc.signalCode === null) await once(proc, 'exit');
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('the demo pages allow connections to their own origin only (no ws: or wss: to any host)', async () => {
    for (const path of ['/demo', '/demo/space', '/demo/playground']) {
      const r = await raw(base, 'GET', path);
      expect(r.status, path).toBe(200);
      const csp = String(r.headers['content-security-policy']);
      expect(csp, path).toMatch(/(^|; )connect-src 'self'(;|$)/);
      expect(csp, path).not.toMatch(/ws:|wss:|\*/);
    }
  });

  it('docs/spaces.md states the basis limit the server enforces (RESONANCE_MAX_BASIS, 2048)', async () => {
    const doc = await readFile(new URL('../../docs/spaces.md', import.meta.url), 'utf8');
    const config = doc.slice(doc.indexOf('## Configuration'), doc.indexOf('## Basis and epochs'));
    expect(config).toContain('RESONANCE_MAX_BASIS');
    expect(config).toContain('2048');
    expect(config).not.toMatch(/primes \(400\)/);
    const space = (k: number) => JSON.stringify({ name: `k${k}`, basis: { primes: primes(k), cutoff: 1_000_000 } });
    const created = await raw(base, 'POST', '/v1/spaces', JSON_HEADERS, space(401));
    expect(created.status, created.text).toBe(201);
    const tooMany = await raw(base, 'POST', '/v1/spaces', JSON_HEADERS, space(2049));
    expect(expectProblem(tooMany, 400, 'validation_failed')).toEqual(expect.arrayContaining([expect.objectContaining({ pointer: '/basis/primes', code: 'basis_too_large' })]));
  });
});
