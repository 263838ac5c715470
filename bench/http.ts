/**
 * HTTP benchmark: autocannon against POST /v1/hqe/validate of a real server (own process, loopback) at a
 * fixed request rate. Writes bench/results/http-validate-<date>.json and updates bench/README.md.
 *
 *   npm run bench:http [-- --rate 500 --seconds 20 --connections 20]
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';

const START = '<!-- http-results:start -->';
const END = '<!-- http-results:end -->';

async function startServer(env: NodeJS.ProcessEnv): Promise<{ url: string; stop: () => Promise<void> }> {
  const data = await mkdtemp(join(tmpdir(), 'resonance-bench-'));
  const proc = spawn(process.execPath, ['dist/src/cli/main.js', 'serve', '--port', '0', '--data', data, '--backend', 'cpu'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    proc.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return {
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { rate: { type: 'string', default: '500' }, seconds: { type: 'string', default: '20' }, connections: { type: 'string', default: '20' } },
  });
  const key = 'bench-key-' + Math.random().toString(36).slice(2);
  // A budget no benchmark reaches: this measures the server, not the limiter's refusals.
  const server = await startServer({ RESONANCE_BOOTSTRAP_KEY: key, RESONANCE_RATE_LIMIT: '100000000' });
  const body = JSON.stringify({ primes: [7, 2, 3, 5, 11, 13], schedule: { steps: 256, dt: 0.1 }, resonanceTarget: { value: 0.8 }, phaseSeeding: { golden: true } });
  const options = {
    url: `${server.url}/v1/hqe/validate`,
    method: 'POST' as const,
    headers: { 'content-type': 'application/json', 'x-api-key': key },
    body,
    connections: Number(values.connections),
    overallRate: Number(values.rate),
    duration: Number(values.seconds),
  };
  try {
    await autocannon({ ...options, duration: 2 }); // warm-up: JIT, SQLite page cache
    const result = await autocannon(options);
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
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      latencyMs: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, max: result.latency.max, mean: result.latency.average },
    };
    const path = `bench/results/http-validate-${date}.json`;
    await writeFile(path, JSON.stringify(summary, null, 2) + '\n');
    process.stderr.write(`${JSON.stringify(summary.latencyMs)} at ${summary.achievedRate} req/s, non-2xx ${summary.non2xx}; wrote ${path}\n`);
    const readme = await readFile('bench/README.md', 'utf8');
    const start = readme.indexOf(START);
    const end = readme.indexOf(END);
    if (start >= 0 && end > start) {
      const table = [
        `Run ${date}: ${summary.requests} requests at a target of ${summary.targetRate}/s over ${summary.connections} connections for ${summary.seconds} s ` +
          `(achieved ${summary.achievedRate.toFixed(0)}/s; non-2xx ${summary.non2xx}, errors ${summary.errors}, timeouts ${summary.timeouts}). File: \`results/http-validate-${date}.json\`.`,
        '',
        '| p50 ms | p90 ms | p99 ms | max ms |',
        '|---:|---:|---:|---:|',
        `| ${summary.latencyMs.p50} | ${summary.latencyMs.p90} | ${summary.latencyMs.p99} | ${summary.latencyMs.max} |`,
      ].join('\n');
      await writeFile('bench/README.md', readme.slice(0, start + START.length) + '\n' + table + '\n' + readme.slice(end));
    }
  } finally {
    await server.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
