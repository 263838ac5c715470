/**
 * Memory of the HQE SSE stream against clients that never read: one busy session (k = 64, a snapshot and
 * a metrics event every step) on a real server process, first with no stream clients, then with N raw TCP
 * clients (default 10) that send `GET /v1/hqe/sessions/{id}/stream` and read nothing. The server's RSS
 * (VmRSS from /proc/<pid>/status) is sampled every second in both phases; the growth is the peak with the
 * clients minus the peak without them, compared in the same run with the limit (default 100 MB).
 *
 * Also: /healthz latency while the clients sit there, and whether the server ended every one of those
 * streams (each client reads to the end afterwards).
 *
 * Writes bench/results/stream-rss-<date>.json and prints pass or fail (exit code 1 on fail).
 *
 *   npm run bench:streams [-- --clients 10 --seconds 20 --limit-mb 100]
 */
import { readFile, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { availableParallelism, cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { firstPrimes } from '../src/model/primes.js';
import { freePort, startBenchServer } from './harness.js';

const KEY = 'bench-stream-rss-key';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

/** A request that gives up after 5 s (a server whose event loop is stuck must not stall the benchmark). */
const HEALTHZ_TIMEOUT_MS = 5000;

/** Samples RSS and /healthz latency (HEALTHZ_TIMEOUT_MS when it gave up) once a second for `seconds`. */
async function sample(pid: number, url: string, seconds: number): Promise<{ rssMb: number[]; healthzMs: number[] }> {
  const rss: number[] = [];
  const healthz: number[] = [];
  for (let t = 0; t < seconds; t++) {
    await sleep(1000);
    rss.push(+(await rssMb(pid)).toFixed(1));
    const started = performance.now();
    await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(HEALTHZ_TIMEOUT_MS) }).then((r) => r.arrayBuffer(), () => undefined);
    healthz.push(+Math.min(HEALTHZ_TIMEOUT_MS, performance.now() - started).toFixed(1));
  }
  return { rssMb: rss, healthzMs: healthz };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      clients: { type: 'string', default: '10' },
      seconds: { type: 'string', default: '20' },
      'limit-mb': { type: 'string', default: '100' },
    },
  });
  const clients = Number(values.clients);
  const seconds = Number(values.seconds);
  const limitMb = Number(values['limit-mb']);
  const server = await startBenchServer(
    {
      RESONANCE_BOOTSTRAP_KEY: KEY,
      // The session writes a few MB/s of events for the whole run: no storage cap may close it.
      RESONANCE_QUOTA_SESSION_STORAGE_BYTES: String(2 ** 40),
      RESONANCE_QUOTA_STORAGE_BYTES: String(2 ** 40),
    },
    await freePort(),
  );
  const pid = server.proc.pid!;
  const sockets: Socket[] = [];
  try {
    const headers = { 'x-api-key': KEY, 'content-type': 'application/json' };
    const config = {
      primes: firstPrimes(64),
      schedule: { steps: 1_000_000, dt: 0.05, plateauEps: 0 },
      observables: { snapshotsInterval: 1, metricsInterval: 1, recordAmplitudes: true, recordPhases: true },
      seed: 7,
    };
    const created = await fetch(`${server.url}/v1/hqe/sessions`, { method: 'POST', headers, body: JSON.stringify(config) });
    if (created.status !== 201) throw new Error(`create session: ${created.status} ${await created.text()}`);
    const session = (await created.json()) as { id: string };
    await sleep(3000);

    console.log(`phase 1: the busy session alone, ${seconds} s`);
    const alone = await sample(pid, server.url, seconds);

    console.log(`phase 2: ${clients} clients that never read, ${seconds} s`);
    const { hostname, port } = new URL(server.url);
    for (let i = 0; i < clients; i++) {
      const socket = connect({ host: hostname, port: Number(port) });
      socket.pause();
      socket.on('error', () => undefined);
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      socket.write(`GET /v1/hqe/sessions/${session.id}/stream HTTP/1.1\r\nHost: ${hostname}:${port}\r\nX-Api-Key: ${KEY}\r\nAccept: text/event-stream\r\n\r\n`);
      sockets.push(socket);
    }
    const withClients = await sample(pid, server.url, seconds);
    const { step, status } = (await fetch(`${server.url}/v1/hqe/sessions/${session.id}`, { headers, signal: AbortSignal.timeout(HEALTHZ_TIMEOUT_MS) }).then(
      (r) => r.json(),
      () => ({ step: null, status: 'no answer' }),
    )) as { step: number | null; status: string };

    // Every stream should have been ended by the server: read each to its end.
    const received: number[] = [];
    const ended = await Promise.all(
      sockets.map((socket, i) => {
        received[i] = 0;
        socket.on('data', (chunk: Buffer) => (received[i]! += chunk.length));
        socket.resume();
        return Promise.race([
          new Promise<boolean>((resolve) => {
            socket.once('end', () => resolve(true));
            socket.once('close', () => resolve(true));
          }),
          sleep(20_000).then(() => false),
        ]);
      }),
    );

    const peakAlone = Math.max(...alone.rssMb);
    const peakWith = Math.max(...withClients.rssMb);
    const growthMb = +(peakWith - peakAlone).toFixed(1);
    const pass = growthMb < limitMb && ended.every(Boolean);
    const date = new Date().toISOString().slice(0, 10);
    const summary = {
      kind: 'stream-rss',
      date,
      host: { cpus: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), node: process.version },
      endpoint: 'GET /v1/hqe/sessions/{id}/stream',
      session: { k: config.primes.length, snapshotsInterval: 1, metricsInterval: 1, recordPhases: true, stepAtEnd: step, statusAtEnd: status },
      clients,
      seconds,
      settings: { RESONANCE_STREAM_BUFFER_BYTES: 'default (1 MiB)', RESONANCE_STREAM_SEND_TIMEOUT_MS: 'default (10 s)' },
      alone: { ...alone, peakMb: peakAlone },
      withClients: { ...withClients, peakMb: peakWith },
      growthMb,
      limitMb,
      streamsEnded: ended.filter(Boolean).length,
      bytesReceivedPerClient: received,
      healthzMaxMs: Math.max(...withClients.healthzMs),
      pass,
    };
    const path = `bench/results/stream-rss-${date}.json`;
    await writeFile(path, JSON.stringify(summary, null, 2) + '\n');
    console.log(
      `RSS peak ${peakAlone.toFixed(0)} MB alone, ${peakWith.toFixed(0)} MB with ${clients} non-reading clients: growth ${growthMb} MB (limit ${limitMb} MB); ` +
        `streams ended by the server ${summary.streamsEnded}/${clients}; /healthz max ${summary.healthzMaxMs} ms. ${pass ? 'PASS' : 'FAIL'} (${path})`,
    );
    if (!pass) process.exitCode = 1;
  } finally {
    for (const s of sockets) s.destroy();
    // A server that cannot drain in time is killed: the benchmark reports, it does not hang.
    const killer = setTimeout(() => server.proc.kill('SIGKILL'), 15_000);
    await server.stop();
    clearTimeout(killer);
  }
}

await main();
