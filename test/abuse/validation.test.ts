/**
 * The largest body a client may send (RESONANCE_MAX_BODY_BYTES, 1 MiB) to the validators, against a real
 * server process: ~95 000 numbers near 2^31, primes, composites and repeats. The answer is a small problem
 * document (the first field errors and their total count), the primality checks stay cheap at 2^31, and the
 * server goes on answering other requests meanwhile.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_ROOM, DEV_KEY, startServer, type TestServer } from '../helpers/server.js';

const MAX_BODY = 1024 * 1024;
const TOP = 2 ** 31;

let srv: TestServer;

beforeAll(async () => {
  // Request lines (with their server-side duration) are logged at info.
  srv = await startServer({ env: { RESONANCE_LOG_LEVEL: 'info', RESONANCE_ACCESS_LOG: 'all' } });
});

afterAll(async () => {
  await srv?.stop();
});

/** Primality of every number in [lo, hi) by a segmented sieve (the reference, independent of the server's test). */
function sieveWindow(lo: number, hi: number): Uint8Array {
  const prime = new Uint8Array(hi - lo).fill(1);
  for (let p = 2; p * p < hi; p++) {
    let small = true;
    for (let d = 2; d * d <= p; d++) if (p % d === 0) small = false;
    if (!small) continue;
    for (let m = Math.max(p * p, Math.ceil(lo / p) * p); m < hi; m += p) prime[m - lo] = 0;
  }
  return prime;
}

const WINDOW_LO = TOP - 3_000_000;
const isPrimeInWindow = sieveWindow(WINDOW_LO, TOP);
/** Odd numbers below 2^31, from the top down, that are prime (or composite). */
function oddsBelowTop(wantPrime: boolean, count: number): number[] {
  const out: number[] = [];
  for (let n = TOP - 1; out.length < count; n -= 2) if ((isPrimeInWindow[n - WINDOW_LO] === 1) === wantPrime) out.push(n);
  return out;
}

/** As many of `values` (in order, cycling) as fit in a JSON body of `wrap(array)` under the limit. */
function fill(values: number[], wrap: (primes: number[]) => unknown): { body: string; primes: number[] } {
  const primes: number[] = [];
  let bytes = JSON.stringify(wrap([])).length;
  for (let i = 0; ; i++) {
    const v = values[i % values.length]!;
    const extra = String(v).length + (primes.length > 0 ? 1 : 0);
    if (bytes + extra > MAX_BODY) break;
    primes.push(v);
    bytes += extra;
  }
  const body = JSON.stringify(wrap(primes));
  expect(body.length).toBeLessThanOrEqual(MAX_BODY);
  expect(body.length).toBeGreaterThan(MAX_BODY - 16);
  return { body, primes };
}

interface Answer {
  status: number;
  bytes: number;
  json: { code?: string; errors?: Array<{ pointer: string; code: string; values?: number[] }>; meta?: { errorCount?: number; truncated?: boolean } };
  ms: number;
  requestId: string;
}

async function post(path: string, body: string): Promise<Answer> {
  const started = performance.now();
  const res = await fetch(srv.url + path, { method: 'POST', headers: { 'X-Api-Key': DEV_KEY, 'content-type': 'application/json' }, body });
  const text = await res.text();
  return { status: res.status, bytes: Buffer.byteLength(text), json: JSON.parse(text) as Answer['json'], ms: performance.now() - started, requestId: res.headers.get('x-request-id') ?? '' };
}

/**
 * The server's own duration of a request (the `ms` of its request log line, found by its X-Request-Id).
 * The logger writes in 4 KiB batches: cheap requests push the line out.
 */
async function serverMs(answer: Answer): Promise<number> {
  expect(answer.requestId).not.toBe('');
  for (let i = 0; i < 100; i++) {
    const line = srv.logs().split('\n').find((l) => l.includes('"msg":"request"') && l.includes(`"requestId":"${answer.requestId}"`));
    if (line) return (JSON.parse(line) as { ms: number }).ms;
    await Promise.all(Array.from({ length: 10 }, () => fetch(`${srv.url}/healthz`).then((r) => r.arrayBuffer())));
  }
  throw new Error(`no log line for request ${answer.requestId}`);
}

/** `request` while polling /healthz one call after another; resolves with it and the slowest /healthz. */
async function whilePollingHealth<T>(request: Promise<T>): Promise<{ result: T; healthMs: number[]; healthStatuses: number[] }> {
  let done = false;
  const healthMs: number[] = [];
  const healthStatuses: number[] = [];
  const poll = (async () => {
    while (!done) {
      const t = performance.now();
      const r = await fetch(`${srv.url}/healthz`);
      await r.arrayBuffer();
      healthMs.push(performance.now() - t);
      healthStatuses.push(r.status);
    }
  })();
  const result = await request.finally(() => {
    done = true;
  });
  await poll;
  return { result, healthMs, healthStatuses };
}

describe('1 MiB bodies of numbers near 2^31', () => {
  it('composites and repeats: 400 with the first 100 errors, the total in meta, a small document; /healthz answers meanwhile', async () => {
    // Thirds: composites (odd, so no cheap factor of 2), distinct primes, and one prime repeated.
    const composites = oddsBelowTop(false, 40_000);
    const primes = oddsBelowTop(true, 40_000);
    const mixed = composites.flatMap((c, i) => [c, primes[i]!, 2147483647]);
    const { body, primes: sent } = fill(mixed, (p) => ({ primes: p }));
    const compositeCount = sent.filter((_, i) => i % 3 === 0).length;
    const repeatCount = sent.filter((p) => p === 2147483647).length - 1;
    expect(compositeCount + repeatCount).toBeGreaterThan(60_000);

    const { result: r, healthMs, healthStatuses } = await whilePollingHealth(post('/v1/hqe/validate', body));
    expect(r.status).toBe(400);
    expect(r.json.code).toBe('validation_failed');
    expect(r.bytes).toBeLessThan(64 * 1024);
    expect(r.json.errors!.length).toBeLessThanOrEqual(100);
    expect(r.json.meta).toMatchObject({ truncated: true });
    expect(r.json.meta!.errorCount).toBeGreaterThanOrEqual(compositeCount + repeatCount);
    // The summaries come first and name the first values of each kind.
    const notPrime = r.json.errors!.find((e) => e.pointer === '/primes' && e.code === 'not_prime');
    expect(notPrime?.values?.slice(0, 3)).toEqual([sent[0], sent[3], sent[6]]);
    expect(r.json.errors!.find((e) => e.pointer === '/primes' && e.code === 'duplicate_prime')?.values?.[0]).toBe(2147483647);
    expect(r.json.errors!.some((e) => e.pointer === '/primes/0' && e.code === 'not_prime')).toBe(true);
    expect(r.json.errors!.some((e) => e.pointer === '/primes/5' && e.code === 'duplicate_prime')).toBe(true);
    // Generous bounds (a shared machine): the old validator took seconds here, and held /healthz as long.
    expect(await serverMs(r)).toBeLessThan(1000);
    expect(healthStatuses.length).toBeGreaterThan(0);
    expect(healthStatuses.every((s) => s === 200)).toBe(true);
    expect(Math.max(...healthMs)).toBeLessThan(2000);
  });

  it('distinct primes: every one is tested, the only error is the size of the basis', async () => {
    const { body } = fill(oddsBelowTop(true, 120_000), (p) => ({ primes: p }));
    const r = await post('/v1/hqe/validate', body);
    expect(r.status).toBe(400);
    expect(r.json.errors).toEqual([expect.objectContaining({ pointer: '/primes', code: 'basis_too_large' })]);
    expect(r.json.meta).toBeUndefined();
    const ms = await serverMs(r);
    console.log(`1 MiB of distinct primes below 2^31: ${ms} ms in the server, ${r.ms.toFixed(1)} ms round trip`);
    expect(ms).toBeLessThan(1000);
  });

  it('a space basis of composites: the same cap on POST /v1/spaces', async () => {
    const { body, primes } = fill(oddsBelowTop(false, 120_000), (p) => ({ ...DEMO_ROOM, basis: { primes: p } }));
    const r = await post('/v1/spaces', body);
    expect(r.status).toBe(400);
    expect(r.json.code).toBe('validation_failed');
    expect(r.bytes).toBeLessThan(64 * 1024);
    expect(r.json.errors!.length).toBeLessThanOrEqual(100);
    expect(r.json.meta).toMatchObject({ truncated: true });
    expect(r.json.meta!.errorCount).toBeGreaterThanOrEqual(primes.length);
    expect(r.json.errors![0]).toMatchObject({ pointer: '/basis/primes', code: 'not_prime' });
    expect(r.json.errors![0]!.values).toHaveLength(100);
    expect(await serverMs(r)).toBeLessThan(1000);
  });

  it('500 000 elements of the wrong kind: zod\'s codes for the first 100, the total in meta, a small document', async () => {
    const { body, primes } = fill([1, 0, 1, 1], (p) => ({ primes: p }));
    expect(primes.length).toBeGreaterThan(500_000);
    const r = await post('/v1/hqe/validate', body);
    expect(r.status).toBe(400);
    expect(r.bytes).toBeLessThan(64 * 1024);
    expect(r.json.errors).toHaveLength(100);
    expect(r.json.errors![1]).toEqual({ pointer: '/primes/1', code: 'too_small', message: 'Too small: expected number to be >=2' });
    expect(r.json.meta).toEqual({ errorCount: primes.length, truncated: true });
    console.log(`1 MiB of ${primes.length} small integers: ${await serverMs(r)} ms in the server, ${r.ms.toFixed(1)} ms round trip`);
  });

  it('a handful of errors: no meta, every error listed', async () => {
    const r = await post('/v1/hqe/validate', JSON.stringify({ primes: [2, 4, 3, 3, 2147483647, 2147483645] }));
    expect(r.status).toBe(400);
    expect(r.json.meta).toBeUndefined();
    expect(r.json.errors!.map((e) => `${e.pointer}:${e.code}`).sort()).toEqual(
      ['/primes:not_prime', '/primes:duplicate_prime', '/primes/1:not_prime', '/primes/3:duplicate_prime', '/primes/5:not_prime'].sort(),
    );
  });
});
