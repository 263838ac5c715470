/**
 * HTTP benchmark: autocannon against POST /v1/hqe/validate of a real server (own process, loopback) at a
 * fixed request rate. Writes bench/results/http-validate-<date>.json and updates bench/README.md.
 *
 *   npm run bench:http [-- --rate 500 --seconds 20 --connections 20]
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { replaceResultsSection, startBenchServer } from './harness.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { 'log-level': { type: 'string', default: 'info' }, port: { type: 'string', default: '8399' }, rate: { type: 'string', default: '500' }, seconds: { type: 'string', default: '20' }, connections: { type: 'string', default: '20' } },
  });
  const key = 'bench-key-' + Math.random().toString(36).slice(2);
  // A budget no benchmark reaches: this measures the server, not the limiter's refusals.
  const server = await startBenchServer({ RESONANCE_BOOTSTRAP_KEY: key, RESONANCE_RATE_LIMIT: '100000000', RESONANCE_LOG_LEVEL: values['log-level'] }, Number(values.port));
  const body = JSON.stringify({ primes: [7, 2, 3, 5, 11, 13], schedule: { steps: 256, dt: 0.1 }, resonanceTarget: { value: 0.8 }, phaseSeeding: { golden: true } });
  const connections = Number(values.connections);
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  const base = {
    url: `${server.url}/v1/hqe/validate`,
    method: 'POST' as const,
    headers: { 'content-type': 'application/json', 'x-api-key': key },
    body,
  };
  // autocannon's rate limit refills each connection's quota once a second, so N connections all fire their
  // quota together at every second boundary: a burst, not a rate. One instance per connection, started at
  // evenly spread phases, turns that into a steady arrival rate; every response time is kept, so the
  // percentiles are exact over all of them.
  const paced = async (duration: number): Promise<{ samples: number[]; non2xx: number; errors: number; timeouts: number }> => {
    const samples: number[] = [];
    let non2xx = 0;
    const runs = Array.from({ length: connections }, (_, i) =>
      new Promise<autocannon.Result>((resolve, reject) => {
        setTimeout(() => {
          const instance = autocannon({ ...base, connections: 1, connectionRate: rate / connections, duration }, (err, res) => (err ? reject(err) : resolve(res)));
          instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
            samples.push(ms);
            if (status < 200 || status >= 300) non2xx++;
          });
        }, (i * 1000) / connections);
      }),
    );
    const results = await Promise.all(runs);
    return { samples, non2xx, errors: results.reduce((a, r) => a + r.errors, 0), timeouts: results.reduce((a, r) => a + r.timeouts, 0) };
  };
  try {
    await paced(2); // warm-up: JIT, SQLite page cache
    const run = await paced(seconds);
    const sorted = run.samples.slice().sort((a, b) => a - b);
    const pct = (p: number): number => +sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!.toFixed(2);
    const options = { overallRate: rate, connections, duration: seconds };
    const result = {
      requests: { total: sorted.length, average: sorted.length / seconds },
      non2xx: run.non2xx,
      errors: run.errors,
      timeouts: run.timeouts,
      latency: { p50: pct(50), p90: pct(90), p99: pct(99), max: +sorted[sorted.length - 1]!.toFixed(2), average: +(sorted.reduce((a, b) => a + b, 0) / sorted.length).toFixed(2) },
    };
    const date = new Date().toISOString().slice(0, 10);
    const summary = {
      kind: 'http',
      endpoint: 'POST /v1/hqe/validate',
      date,
      targetRate: options.overallRate,
      connections: options.connections,
      seconds: options.duration,
      requests: result.requests.total,
      achievedRate: result.requests.average,
      pacing: 'one autocannon instance per connection, phases spread evenly over each second',
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      latencyMs: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, max: result.latency.max, mean: result.latency.average },
    };
    const path = `bench/results/http-validate-${date}.json`;
    await writeFile(path, JSON.stringify(summary, null, 2) + '\n');
    process.stderr.write(`${JSON.stringify(summary.latencyMs)} at ${summary.achievedRate} req/s, non-2xx ${summary.non2xx}; wrote ${path}\n`);
    await replaceResultsSection(
      'bench/README.md',
      'http',
      [
        `Run ${date}: ${summary.requests} requests at a target of ${summary.targetRate}/s over ${summary.connections} connections for ${summary.seconds} s ` +
          `(achieved ${summary.achievedRate.toFixed(0)}/s; non-2xx ${summary.non2xx}, errors ${summary.errors}, timeouts ${summary.timeouts}). File: \`results/http-validate-${date}.json\`.`,
        '',
        '| p50 ms | p90 ms | p99 ms | max ms |',
        '|---:|---:|---:|---:|',
        `| ${summary.latencyMs.p50} | ${summary.latencyMs.p90} | ${summary.latencyMs.p99} | ${summary.latencyMs.max} |`,
      ].join('\n'),
    );
  } finally {
    await server.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
