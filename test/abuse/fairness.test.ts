/**
 * Sharing the engine between orgs, against a real server process: HQE sessions are charged by their work
 * like runs (and refused past the largest schedule), the hqe_sessions cap holds under concurrent
 * creations, the work_units_per_hour quota covers runs, sessions and steps, and one org's heavy session
 * does not hold another org's small run back.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cli, createKey, type Reply, request, startServer, type TestServer, waitFor } from '../helpers/server.js';

type Json = Record<string, unknown>;


let srv: TestServer;
/** The cap of running sessions per org on this server. */
const SESSION_CAP = 2;
const WORK_UNIT = 2 ** 24;
const RATE_LIMIT = 600;

async function call(method: string, path: string, apiKey: string, body?: unknown): Promise<Reply> {
  const r = await request(srv.url, method, path, { 'X-Api-Key': apiKey }, body);
  if (method === 'POST' && path === '/v1/hqe/sessions' && r.status === 201) opened.push({ id: r.json.id as string, apiKey });
  return r;
}

/** Sessions created by a test: each test closes what it opened, so none runs on into the next one. */
const opened: Array<{ id: string; apiKey: string }> = [];

function expectProblem(r: Reply, status: number, code: string): Json {
  expect({ status: r.status, code: r.json.code }, JSON.stringify(r.json).slice(0, 400)).toEqual({ status, code });
  return r.json;
}

function firstPrimes(n: number): number[] {
  const ps: number[] = [];
  for (let c = 2; ps.length < n; c++) if (ps.every((p) => p * p > c || c % p !== 0)) ps.push(c);
  return ps;
}

const remaining = (r: Reply): number => Number(r.headers.get('x-ratelimit-remaining'));
/** Runs far longer than this file (k = 2: 10^8 x 4 / 2^24 = 24 work units). */
const IDLE_SESSION = { primes: [2, 3], schedule: { steps: 100_000_000, plateauT: 1_000_000_000 }, observables: { metricsInterval: 1_000_000, snapshotsInterval: 1_000_000 }, seed: 1 };
/** A small run: k = 4, 256 steps, never ends early. */
const LIGHT_RUN = { primes: [2, 3, 5, 7], schedule: { steps: 256, plateauT: 1_000_000 }, seed: 3 };

beforeAll(async () => {
  srv = await startServer({ env: { RESONANCE_QUOTA_HQE_SESSIONS: String(SESSION_CAP), RESONANCE_RATE_LIMIT: String(RATE_LIMIT), RESONANCE_WORK_UNIT: String(WORK_UNIT) } });
});

afterEach(async () => {
  for (const { id, apiKey } of opened.splice(0)) await call('DELETE', `/v1/hqe/sessions/${id}`, apiKey);
});

afterAll(async () => {
  await srv?.stop();
});

describe('charging HQE sessions by their work', () => {
  it('refuses a session whose schedule is more than one rate window pays (400 session_too_large), before charging anything', async () => {
    const key = await createKey(srv.dataDir, 'huge');
    const huge = { primes: firstPrimes(2048), schedule: { steps: 1_000_000_000, restarts: 1000 }, seed: 1 };
    const r = await call('POST', '/v1/hqe/sessions', key, huge);
    const problem = expectProblem(r, 400, 'session_too_large');
    expect(problem.meta).toEqual({ work: 1e9 * 1001 * 2048 ** 2, limit: (RATE_LIMIT - 1) * WORK_UNIT });
    expect(problem.errors).toEqual([expect.objectContaining({ pointer: '/schedule/steps', code: 'session_too_large' })]);
    // Only the request itself was charged.
    expect(remaining(r)).toBe(RATE_LIMIT - 1);
  });

  it('charges a session its whole schedule in work units (rate budget and usage), and a step what it may run', async () => {
    const key = await createKey(srv.dataDir, 'payer');
    // k = 64, 200 000 steps, restarts 1: 200 000 x 2 x 4096 / 2^24 = 97.66 work units, charged 98.
    const config = { primes: firstPrimes(64), schedule: { steps: 200_000, restarts: 1, plateauT: 1_000_000_000 }, observables: { metricsInterval: 100_000, snapshotsInterval: 100_000 }, seed: 2 };
    const created = await call('POST', '/v1/hqe/sessions', key, config);
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    expect(remaining(created)).toBe(RATE_LIMIT - 1 - 98);
    // 3000 more steps in restart 0 lengthen restart 1 too: 3000 x 2 x 4096 / 2^24 = 1.46, charged 2.
    const step = await call('POST', `/v1/hqe/sessions/${created.json.id as string}/step`, key, { steps: 3000 });
    expect(step.status, JSON.stringify(step.json)).toBe(200);
    expect(remaining(created) - remaining(step)).toBe(1 + 2);
    const usage = await call('GET', '/v1/usage', key);
    expect(usage.status, JSON.stringify(usage.json)).toBe(200);
    expect((usage.json.totals as Json).work_units).toBe(100);
  });

  it('charges runs, sessions and steps to the org quota work_units_per_hour (429 quota_exceeded, nothing started)', async () => {
    const org = 'metered';
    const key = await createKey(srv.dataDir, org);
    // Before the org's first request: nothing of it is cached yet.
    const set = await cli(['orgs', 'set-quota', org, 'work_units_per_hour', '12'], srv.dataDir);
    expect(set.code, set.stderr).toBe(0);
    // k = 64, 20 480 steps: exactly 5 work units each.
    const five = { primes: firstPrimes(64), schedule: { steps: 20_480, plateauT: 1_000_000_000 }, observables: { metricsInterval: 100_000, snapshotsInterval: 100_000 }, seed: 4 };
    const session = await call('POST', '/v1/hqe/sessions', key, five);
    expect(session.status, JSON.stringify(session.json)).toBe(201);
    expect((await call('POST', '/v1/hqe/run', key, five)).status).toBe(200);
    const refused = await call('POST', '/v1/hqe/sessions', key, five);
    expect(expectProblem(refused, 429, 'quota_exceeded').meta).toEqual({ quota: 'work_units_per_hour', limit: 12, used: 10 });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    const id = session.json.id as string;
    // 20 480 more steps cost 5 units too: refused as well; 4096 (1 unit) fit.
    expectProblem(await call('POST', `/v1/hqe/sessions/${id}/step`, key, { steps: 20_480 }), 429, 'quota_exceeded');
    expectProblem(await call('POST', '/v1/hqe/run', key, five), 429, 'quota_exceeded');
    expect((await call('POST', `/v1/hqe/sessions/${id}/step`, key, { steps: 4096 })).status).toBe(200);
  });
});

describe('the hqe_sessions cap', () => {
  it('answers 409 quota_exceeded past the running sessions an org may hold, also under concurrent creations', async () => {
    const key = await createKey(srv.dataDir, 'capped');
    const replies = await Promise.all(Array.from({ length: 4 }, (_, i) => call('POST', '/v1/hqe/sessions', key, { ...IDLE_SESSION, seed: i + 1 })));
    const created = replies.filter((r) => r.status === 201);
    const refused = replies.filter((r) => r.status !== 201);
    expect(created).toHaveLength(SESSION_CAP);
    for (const r of refused) expect(expectProblem(r, 409, 'quota_exceeded').meta).toEqual({ quota: 'hqe_sessions', limit: SESSION_CAP, used: SESSION_CAP });
    // Another org is not affected.
    const other = await createKey(srv.dataDir, 'uncapped');
    const mine = await call('POST', '/v1/hqe/sessions', other, IDLE_SESSION);
    expect(mine.status).toBe(201);
    // Closing one makes room for one.
    expect((await call('DELETE', `/v1/hqe/sessions/${created[0]!.json.id as string}`, key)).status).toBe(204);
    const again = await call('POST', '/v1/hqe/sessions', key, IDLE_SESSION);
    expect(again.status, JSON.stringify(again.json)).toBe(201);
    expectProblem(await call('POST', '/v1/hqe/sessions', key, IDLE_SESSION), 409, 'quota_exceeded');
  });

  it('counts a completed session that a step runs again', async () => {
    const key = await createKey(srv.dataDir, 'stepper');
    const short = await call('POST', '/v1/hqe/sessions', key, { primes: [2, 3], schedule: { steps: 3 }, seed: 1 });
    expect(short.status).toBe(201);
    const id = short.json.id as string;
    await waitFor('the short session to complete', async () => ((await call('GET', `/v1/hqe/sessions/${id}`, key)).json.status === 'completed' ? true : undefined));
    const running = await Promise.all([call('POST', '/v1/hqe/sessions', key, IDLE_SESSION), call('POST', '/v1/hqe/sessions', key, IDLE_SESSION)]);
    expect(running.map((r) => r.status)).toEqual([201, 201]);
    expect(expectProblem(await call('POST', `/v1/hqe/sessions/${id}/step`, key, { steps: 5 }), 409, 'quota_exceeded').meta).toMatchObject({ quota: 'hqe_sessions' });
    await call('DELETE', `/v1/hqe/sessions/${running[0]!.json.id as string}`, key);
    const step = await call('POST', `/v1/hqe/sessions/${id}/step`, key, { steps: 5 });
    expect(step.status, JSON.stringify(step.json)).toBe(200);
    expect(step.json.step).toBe(8);
  });
});

describe('fair sharing of the engine', () => {
  it("keeps another org's small run fast while one org's k = 2048 session runs", async () => {
    const light = await createKey(srv.dataDir, 'light');
    const heavy = await createKey(srv.dataDir, 'heavy');
    const timeRun = async (seed: number): Promise<number> => {
      const started = performance.now();
      const r = await call('POST', '/v1/hqe/run', light, { ...LIGHT_RUN, seed });
      expect(r.status, JSON.stringify(r.json).slice(0, 300)).toBe(200);
      expect(r.json.steps).toBe(256);
      return performance.now() - started;
    };
    const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    await timeRun(100); // warm-up
    const alone = median([await timeRun(1), await timeRun(2), await timeRun(3)]);

    // k = 2048, 2000 steps: 500 work units, within one window's budget; one tick costs ~4M kernel entries,
    // and the old scheduler made every advance wait for one, 257 of them for the small run.
    const session = await call('POST', '/v1/hqe/sessions', heavy, {
      primes: firstPrimes(2048), schedule: { steps: 2000, plateauT: 1_000_000_000 }, observables: { metricsInterval: 100_000, snapshotsInterval: 100_000 }, seed: 5,
    });
    expect(session.status, JSON.stringify(session.json).slice(0, 300)).toBe(201);
    const id = session.json.id as string;
    const heavyStep = async (): Promise<number> => (await call('GET', `/v1/hqe/sessions/${id}`, heavy)).json.step as number;
    await waitFor('the heavy session to tick', async () => ((await heavyStep()) >= 2 ? true : undefined), 30_000, 100);
    const shared = median([await timeRun(4), await timeRun(5), await timeRun(6)]);
    const bound = Math.max(2000, 10 * alone);
    expect(shared, `small run: ${alone.toFixed(0)} ms alone, ${shared.toFixed(0)} ms beside the heavy session (bound ${bound.toFixed(0)} ms)`).toBeLessThan(bound);
    // The heavy session was not starved meanwhile.
    const before = await heavyStep();
    await waitFor('the heavy session to go on', async () => ((await heavyStep()) > before ? true : undefined), 30_000, 100);
  });
});
