/**
 * Fairness benchmark: how much one org's heavy HQE session slows another org's light /v1/hqe/run.
 *
 * A real server (CPU engine, own process). Org `light` runs a small config (k = 4, 256 steps, never ends
 * early) `--runs` times alone and `--runs` times while org `heavy` holds a session of k = `--heavy-k`
 * with a schedule far longer than the benchmark (created for each round, and closed after it), in four
 * alternating rounds, so that the load of other processes weighs on both alike. Latency is measured by
 * the client (request to response), each run after a pause of 0-30 ms so that runs arrive at random
 * points of the heavy session's ticks. Also the heavy session's steps per second alone and while the
 * light runs go on, so that fairness is not bought by starving it.
 *
 * The bar: p50 with the heavy session at most `--bar` times p50 alone (default 3).
 * Writes bench/results/fairness-<date>[-<label>].json.
 *
 *   npm run bench:fairness [-- --runs 20 --heavy-k 2048 --bar 3 --label NAME]
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { firstPrimes } from '../src/model/primes.js';
import { startBenchServer } from './harness.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `resonance keys create` against the server's data directory: a key of a new org. */
function createKey(dataDir: string, org: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['dist/src/cli/main.js', 'keys', 'create', '--org', org, '--scopes', 'hqe.read,hqe.write', '--json', '--data', dataDir], (err, stdout, stderr) => {
      if (err) reject(new Error(`keys create failed: ${stderr}`));
      else resolve((JSON.parse(stdout) as { key: string }).key);
    });
  });
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((sorted.length * p) / 100) - 1))]!;
const round = (x: number): number => +x.toFixed(2);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '20' },
      'heavy-k': { type: 'string', default: '2048' },
      bar: { type: 'string', default: '3' },
      port: { type: 'string', default: '8398' },
      label: { type: 'string', default: '' },
    },
  });
  const runs = Number(values.runs);
  const heavyK = Number(values['heavy-k']);
  const bar = Number(values.bar);
  const unlimited = '1000000000000';
  // Budgets no benchmark reaches: this measures the scheduler, not the limits in front of it.
  const server = await startBenchServer(
    { RESONANCE_RATE_LIMIT: unlimited, RESONANCE_QUOTA_WORK_UNITS_PER_HOUR: unlimited, RESONANCE_MAX_SESSION_WORK: '1e30', RESONANCE_LOG_LEVEL: 'warn' },
    Number(values.port),
  );
  try {
    const dataDir = dirname(server.logFile);
    const lightKey = await createKey(dataDir, 'light');
    const heavyKey = await createKey(dataDir, 'heavy');
    const post = async (key: string, path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
      const res = await fetch(server.url + path, { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    };
    const sessionStep = async (id: string): Promise<number> => {
      const res = await fetch(`${server.url}/v1/hqe/sessions/${id}`, { headers: { 'x-api-key': heavyKey } });
      return ((await res.json()) as { step: number }).step;
    };
    /** A light run: k = 4, 256 steps, no target and no plateau, so every run does the same 257 ticks. */
    const lightRun = async (seed: number): Promise<number> => {
      const started = performance.now();
      const r = await post(lightKey, '/v1/hqe/run', { primes: [2, 3, 5, 7], schedule: { steps: 256, plateauT: 1_000_000 }, seed });
      const ms = performance.now() - started;
      if (r.status !== 200 || r.json.steps !== 256) throw new Error(`light run: ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`);
      return ms;
    };
    // A pause of 0-30 ms (fixed pseudo-random sequence) before each run: a client that asks again the
    // instant it has its answer always arrives as the heavy session's next tick starts, and measures that
    // tick every time; real requests arrive at random points of it.
    let lcg = 12345;
    const pause = (): Promise<void> => sleep(((lcg = (lcg * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 30);
    const series = async (from: number, n: number): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        await pause();
        out.push(await lightRun(from + i));
      }
      return out;
    };
    const stats = (ms: number[]) => {
      const sorted = ms.slice().sort((a, b) => a - b);
      return { p50: round(percentile(sorted, 50)), p95: round(percentile(sorted, 95)), max: round(sorted[sorted.length - 1]!), mean: round(ms.reduce((a, b) => a + b, 0) / ms.length) };
    };

    for (let i = 0; i < 3; i++) await lightRun(1000 + i); // warm-up: JIT, SQLite page cache
    // Alone and beside the heavy session in alternating rounds, so that a change in the machine's load
    // (other processes) weighs on both alike.
    const rounds = 4;
    const perRound = Math.ceil(runs / rounds);
    const alone: number[] = [];
    const during: number[] = [];
    const heavyRate = { aloneSteps: 0, aloneMs: 0, duringSteps: 0, duringMs: 0 };
    for (let round = 0; round < rounds; round++) {
      alone.push(...(await series(round * 1000, perRound)));
      const heavy = await post(heavyKey, '/v1/hqe/sessions', {
        primes: firstPrimes(heavyK),
        schedule: { steps: 1_000_000_000, plateauT: 1_000_000_000 },
        observables: { metricsInterval: 1_000_000, snapshotsInterval: 1_000_000 },
        seed: 7 + round,
      });
      if (heavy.status !== 201) throw new Error(`heavy session: ${heavy.status} ${JSON.stringify(heavy.json).slice(0, 300)}`);
      const heavyId = heavy.json.id as string;
      while ((await sessionStep(heavyId)) < 1) await sleep(50);
      // The heavy session alone for a second, for its rate; then beside the light runs.
      const from = { step: await sessionStep(heavyId), at: performance.now() };
      await sleep(1000);
      const mid = { step: await sessionStep(heavyId), at: performance.now() };
      during.push(...(await series(round * 1000 + 500, perRound)));
      const to = { step: await sessionStep(heavyId), at: performance.now() };
      heavyRate.aloneSteps += mid.step - from.step;
      heavyRate.aloneMs += mid.at - from.at;
      heavyRate.duringSteps += to.step - mid.step;
      heavyRate.duringMs += to.at - mid.at;
      const closed = await fetch(`${server.url}/v1/hqe/sessions/${heavyId}`, { method: 'DELETE', headers: { 'x-api-key': heavyKey } });
      if (closed.status !== 204) throw new Error(`closing the heavy session: ${closed.status}`);
    }

    const aloneStats = stats(alone);
    const duringStats = stats(during);
    const ratio = { p50: round(duringStats.p50 / aloneStats.p50), p95: round(duringStats.p95 / aloneStats.p95) };
    const date = new Date().toISOString().slice(0, 10);
    const summary = {
      kind: 'fairness',
      date,
      label: values.label || null,
      host: { cpus: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version },
      light: { org: 'light', endpoint: 'POST /v1/hqe/run', k: 4, steps: 256, runs: alone.length, rounds: `alone and beside the heavy session alternately, ${rounds} rounds of ${perRound}` },
      heavy: { org: 'heavy', endpoint: 'POST /v1/hqe/sessions', k: heavyK },
      latencyMs: { alone: aloneStats, withHeavy: duringStats },
      samplesMs: { alone: alone.map(round), withHeavy: during.map(round) },
      ratio,
      heavyStepsPerSecond: { alone: round((heavyRate.aloneSteps * 1000) / heavyRate.aloneMs), duringLightRuns: round((heavyRate.duringSteps * 1000) / heavyRate.duringMs) },
      bar: { metric: 'ratio.p50', max: bar },
      pass: ratio.p50 <= bar,
    };
    const path = `bench/results/fairness-${date}${values.label ? `-${values.label}` : ''}.json`;
    await writeFile(path, JSON.stringify(summary, null, 2) + '\n');
    process.stderr.write(
      `light p50/p95 alone ${aloneStats.p50}/${aloneStats.p95} ms, with k=${heavyK} heavy ${duringStats.p50}/${duringStats.p95} ms: ratio p50 ${ratio.p50}, p95 ${ratio.p95} ` +
        `(bar ${bar}: ${summary.pass ? 'pass' : 'FAIL'}); heavy steps/s alone ${summary.heavyStepsPerSecond.alone}, during ${summary.heavyStepsPerSecond.duringLightRuns}; wrote ${path}\n`,
    );
    if (!summary.pass) process.exitCode = 1;
  } finally {
    await server.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
