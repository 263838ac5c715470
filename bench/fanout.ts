/**
 * Realtime fan-out benchmark: one space (publishHz 30) on a real server process, N WebSocket subscribers
 * (default 1000, half JSON, half MessagePack) held by two worker threads so that the clients never share
 * the server's event loop, and one writer proposing deltas at a steady rate (default 50/s for 20 s).
 *
 * Propose-to-receive latency: the writer stamps each proposal's send time (performance.timeOrigin +
 * performance.now(), a wall clock with sub-millisecond resolution shared by all threads) and learns the
 * version it was given from its own copy (requestId); every subscriber stamps the receive time of every
 * version. Each delta's latency at each subscriber is receive - send. Every subscriber must see every
 * version of the run exactly once and in order (no gaps, no resync snapshots).
 *
 * Also: server CPU (utime + stime from /proc/<pid>/stat) and RSS sampled every second, frames/s delivered,
 * and "create space + open session + WebSocket welcome" over 200 iterations on loopback.
 *
 * Writes bench/results/fanout-<date>.json, results/fanout.svg and the table in bench/README.md (with
 * `--space-sync fsync`: fanout-<date>-fsync.json, fanout-fsync.svg and their own section).
 *
 *   npm run bench:fanout [-- --subscribers 1000 | --sweep 250,500,1000] [--rate 50 --seconds 20 --hz 30 --join 200]
 *                        [--space-sync wal|fsync]
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Worker } from 'node:worker_threads';
import type WebSocket from 'ws';
import { writeFanoutSvg } from './fanout-plot.js';
import { type BenchServer, connectClient, replaceResultsSection, startBenchServer } from './harness.js';
import type { FromWorker } from './fanout-worker.js';
import { startSubscriberThreads } from './fanout-threads.js';

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** utime + stime (clock ticks) and RSS (bytes) of a process, from /proc. */
async function procStat(pid: number): Promise<{ ticks: number; rss: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which is in parentheses and may contain spaces).
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
  return { ticks: Number(f[11]) + Number(f[12]), rss: rssKb * 1024 };
}
/** The machine's CPU time (all CPUs, clock ticks): total and stolen by the hypervisor (/proc/stat). */
async function hostCpu(): Promise<{ total: number; steal: number }> {
  const f = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { total: f.reduce((a, b) => a + b, 0), steal: f[7] ?? 0 };
}

/**
 * Commit latency of the disk the server writes to (SQLite WAL, synchronous FULL as the store opens it):
 * the server acknowledges a delta after its commit, on its event loop.
 */
async function commitProbe(dir: string, n = 200): Promise<{ p50: number; p99: number; max: number }> {
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(join(dir, 'probe.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE IF NOT EXISTS t (a INTEGER, b TEXT)');
  const ins = db.prepare('INSERT INTO t VALUES (?, ?)');
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    db.transaction(() => ins.run(i, 'x'.repeat(200)))();
    ms.push(performance.now() - t);
    await sleep(5);
  }
  db.close();
  ms.sort((a, b) => a - b);
  return { p50: pct(ms, 50), p99: pct(ms, 99), max: +ms[ms.length - 1]!.toFixed(2) };
}

/** USER_HZ: 100 on every Linux this runs on (sysconf(_SC_CLK_TCK)). */
const CLK_TCK = 100;

function pct(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return +sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!.toFixed(2);
}

class Api {
  constructor(
    readonly url: string,
    readonly key: string,
  ) {}

  async post<T>(path: string, body: unknown): Promise<T> {
    const res = await fetch(this.url + path, { method: 'POST', headers: { 'x-api-key': this.key, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`POST ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }
}

interface SessionOut {
  token: string;
  sessionId: string;
  websocketUrl: string;
}

async function joinBench(api: Api, iterations: number): Promise<{ iterations: number; p50: number; p95: number; p99: number; max: number; mean: number }> {
  const samples: number[] = [];
  for (let i = 0; i < iterations + 10; i++) {
    const t0 = performance.now();
    const space = await api.post<{ id: string }>('/v1/spaces', { name: `join-${i}`, basis: { primes: [2, 3, 5, 7, 11, 13] } });
    const s = await api.post<SessionOut>(`/v1/spaces/${space.id}/sessions`, {});
    const ws = await connectClient(s.websocketUrl, s.token, () => undefined);
    const ms = performance.now() - t0;
    ws.terminate();
    if (i >= 10) samples.push(ms); // the first 10 warm up
  }
  samples.sort((a, b) => a - b);
  return { iterations, p50: pct(samples, 50), p95: pct(samples, 95), p99: pct(samples, 99), max: +samples[samples.length - 1]!.toFixed(2), mean: +(samples.reduce((a, b) => a + b, 0) / samples.length).toFixed(2) };
}

interface RunOptions {
  subscribers: number;
  workers: number;
  rate: number;
  seconds: number;
  hz: number;
}

/** One measured run against `server`: a space, its subscribers and the writer, then the report. */
async function runOnce(server: BenchServer, api: Api, o: RunOptions) {
  const pid = server.proc.pid!;
  const workers: Worker[] = [];
  try {
    const primes = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53];
    const space = await api.post<{ id: string }>('/v1/spaces', { name: 'fanout', basis: { primes }, policy: { publishHz: o.hz, maxMembers: o.subscribers + 10 } });
    process.stderr.write(`space ${space.id}: minting ${o.subscribers} sessions\n`);
    const sessions: Array<{ url: string; token: string }> = [];
    for (let i = 0; i < o.subscribers; i += 25) {
      const batch = await Promise.all(Array.from({ length: Math.min(25, o.subscribers - i) }, () => api.post<SessionOut>(`/v1/spaces/${space.id}/sessions`, { role: 'reader' })));
      sessions.push(...batch.map((s) => ({ url: s.websocketUrl, token: s.token })));
    }
    const maxVersion = Math.ceil(o.rate * (o.seconds + 5) * 1.5) + 100;

    // The writer: its own copies (with requestId) give the version of each proposal.
    const writerSession = await api.post<SessionOut>(`/v1/spaces/${space.id}/sessions`, { role: 'writer' });
    const sentAtByRequest = new Map<string, number>();
    const sentAt = new Float64Array(maxVersion + 1);
    const ackMs: number[] = [];
    let writerVersion = 0;
    const writer = await connectClient(writerSession.websocketUrl, writerSession.token, (f) => {
      if (f.type === 'welcome') writerVersion = f.version as number;
      if (f.type === 'delta') {
        writerVersion = f.toVersion as number;
        const sent = typeof f.requestId === 'string' ? sentAtByRequest.get(f.requestId) : undefined;
        if (sent !== undefined) {
          if (writerVersion < sentAt.length) sentAt[writerVersion] = sent;
          ackMs.push(now() - sent);
        }
      }
      if (f.type === 'error' || f.type === 'conflict') process.stderr.write(`writer got ${JSON.stringify(f)}\n`);
    });
    writer.send(JSON.stringify({ type: 'subscribe', kinds: ['deltas'] }));

    // Subscribers in worker threads.
    const per = Math.ceil(o.subscribers / o.workers);
    const groups = Array.from({ length: o.workers }, (_, w) => sessions.slice(w * per, (w + 1) * per));
    const { ask, tell } = startSubscriberThreads(groups, maxVersion, workers, (message) => process.stderr.write(`${message}\n`));

    const t0 = performance.now();
    const opened = await Promise.all(workers.map((_, w) => ask(w, { cmd: 'open' })));
    const openSeconds = (performance.now() - t0) / 1000;
    const openFailures = opened.reduce((a, x) => a + (x.kind === 'opened' ? x.failures : 0), 0);
    process.stderr.write(`${o.subscribers - openFailures} subscribers started in ${openSeconds.toFixed(1)} s (${openFailures} failed); warming up\n`);

    // Warm-up: telemetry and a few deltas (JIT), then the measured window.
    let seq = 0;
    const propose = (): void => {
      const requestId = `r${seq++}`;
      sentAtByRequest.set(requestId, now());
      writer.send(JSON.stringify({ type: 'propose_delta', requestId, delta: { fromVersion: writerVersion, ops: [{ op: 'shift_phase', path: `/state/phases/${seq % primes.length}`, value: 0.001 }] } }));
    };
    for (let i = 0; i < 3 * o.rate; i++) {
      propose();
      await sleep(1000 / o.rate);
    }
    await sleep(1000);
    sentAt.fill(0);
    ackMs.length = 0;

    const before = await procStat(pid);
    const hostBefore = await hostCpu();
    const cpuBefore = process.cpuUsage();
    const samples: Array<{ cpu: number; rss: number }> = [];
    let last = before;
    let lastAt = performance.now();
    const sampler = setInterval(() => {
      void procStat(pid).then((st) => {
        const at = performance.now();
        samples.push({ cpu: ((st.ticks - last.ticks) / CLK_TCK / ((at - lastAt) / 1000)) * 100, rss: st.rss });
        last = st;
        lastAt = at;
      });
    }, 1000);
    tell({ cmd: 'window', on: true });
    const windowStart = performance.now();
    const total = o.rate * o.seconds;
    for (let i = 0; i < total; i++) {
      // Paced against the clock, not by summing sleeps.
      const wait = windowStart + (i * 1000) / o.rate - performance.now();
      if (wait > 0) await sleep(wait);
      propose();
    }
    await sleep(1000 / o.rate);
    const windowSeconds = (performance.now() - windowStart) / 1000;
    tell({ cmd: 'window', on: false });
    clearInterval(sampler);
    const after = await procStat(pid);
    const hostAfter = await hostCpu();
    const clientCpu = process.cpuUsage(cpuBefore);
    await sleep(1500); // stragglers
    // Only the measured proposals count (sentAt was cleared after the warm-up).
    const measuredVersions = [...sentAt].filter((x) => x > 0).length;

    const reports = (await Promise.all(workers.map((_, w) => ask(w, { cmd: 'report', sentAt })))) as Array<Extract<FromWorker, { kind: 'report' }>>;
    tell({ cmd: 'close' });
    writer.terminate();

    let n = 0;
    for (const r of reports) n += r.latencies.length;
    const all = new Float64Array(n);
    let off = 0;
    for (const r of reports) {
      all.set(r.latencies, off);
      off += r.latencies.length;
    }
    all.sort();
    const started = o.subscribers - openFailures;
    const expected = measuredVersions * started;
    const received = reports.reduce((a, r) => a + r.received, 0);
    const frames = reports.reduce((a, r) => a + r.framesInWindow, 0);
    const telemetry = reports.reduce((a, r) => a + r.telemetryInWindow, 0);
    const deltas = reports.reduce((a, r) => a + r.deltasInWindow, 0);
    ackMs.sort((a, b) => a - b);
    const cpuSeries = samples.map((x) => x.cpu);
    return {
      subscribers: o.subscribers,
      started,
      open: { seconds: +openSeconds.toFixed(2), failures: openFailures },
      deltas: {
        measured: measuredVersions, expectedDeliveries: expected, delivered: received, lost: expected - received,
        gaps: reports.reduce((a, r) => a + r.gaps, 0), resyncs: reports.reduce((a, r) => a + r.resyncs, 0),
        errors: reports.reduce((a, r) => a + r.errors, 0), closedEarly: reports.reduce((a, r) => a + r.closedEarly, 0),
      },
      latencyMs: { p50: pct(all, 50), p90: pct(all, 90), p99: pct(all, 99), p999: pct(all, 99.9), max: +all[all.length - 1]!.toFixed(2), mean: +(all.reduce((a, b) => a + b, 0) / all.length).toFixed(2) },
      writerAckMs: { p50: pct(ackMs, 50), p99: pct(ackMs, 99) },
      framesPerSecond: { total: Math.round(frames / windowSeconds), telemetry: Math.round(telemetry / windowSeconds), deltas: Math.round(deltas / windowSeconds) },
      server: {
        cpuPercent: { mean: +(((after.ticks - before.ticks) / CLK_TCK / windowSeconds) * 100).toFixed(1), max: +Math.max(...cpuSeries).toFixed(1), samples: cpuSeries.map((x) => +x.toFixed(1)) },
        rssMiB: { start: +(before.rss / 2 ** 20).toFixed(1), max: +(Math.max(before.rss, after.rss, ...samples.map((x) => x.rss)) / 2 ** 20).toFixed(1), end: +(after.rss / 2 ** 20).toFixed(1) },
      },
      clientsCpuPercent: +(((clientCpu.user + clientCpu.system) / 1e6 / windowSeconds) * 100).toFixed(1),
      /** Share of the machine's CPU time the hypervisor took during the window (noisy neighbours). */
      stealPercent: +(((hostAfter.steal - hostBefore.steal) / Math.max(1, hostAfter.total - hostBefore.total)) * 100).toFixed(1),
    };
  } finally {
    for (const w of workers) void w.terminate();
  }
}

/** The realtime counters the server logs when it stops (frames queued, socket writes). */
async function realtimeCounters(logFile: string): Promise<{ frames: number; writes: number } | null> {
  const lines = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').filter((l) => l.includes('"realtime stopped"'));
  if (lines.length === 0) return null;
  const j = JSON.parse(lines[lines.length - 1]!) as { frames: number; writes: number };
  return { frames: j.frames, writes: j.writes };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8398' },
      subscribers: { type: 'string', default: '1000' },
      /** Comma-separated subscriber counts, one fresh server each (overrides --subscribers). */
      sweep: { type: 'string' },
      workers: { type: 'string', default: '2' },
      rate: { type: 'string', default: '50' },
      seconds: { type: 'string', default: '20' },
      hz: { type: 'string', default: '30' },
      join: { type: 'string', default: '200' },
      'log-level': { type: 'string', default: 'info' },
      /** RESONANCE_SPACE_SYNC of the server: `wal` (its default) or `fsync` (results go to their own file and section). */
      'space-sync': { type: 'string', default: 'wal' },
    },
  });
  const spaceSync = values['space-sync'];
  if (spaceSync !== 'wal' && spaceSync !== 'fsync') throw new Error('--space-sync is wal or fsync');
  const counts = (values.sweep ?? values.subscribers).split(',').map(Number);
  const base = { workers: Number(values.workers), rate: Number(values.rate), seconds: Number(values.seconds), hz: Number(values.hz) };
  const key = 'bench-key-' + Math.random().toString(36).slice(2);
  // Limits far above the load: this measures fan-out, not quotas (1000 subscribers of one org, 210 spaces in the join run).
  const env = {
    RESONANCE_BOOTSTRAP_KEY: key, RESONANCE_RATE_LIMIT: '100000000', RESONANCE_LOG_LEVEL: values['log-level'], RESONANCE_SPACE_SYNC: spaceSync,
    RESONANCE_WS_PROPOSALS_PER_SECOND: '100000', RESONANCE_QUOTA_SOCKETS: '1000000', RESONANCE_QUOTA_SOCKETS_PER_MEMBER: '1000000', RESONANCE_QUOTA_LIVE_SPACES: '100000', RESONANCE_QUOTA_DELTAS_PER_MINUTE: '100000000',
  };
  const runs = [];
  const probeDir = await mkdtemp(join(tmpdir(), 'resonance-probe-'));
  const diskCommitMs = await commitProbe(probeDir);
  process.stderr.write(`disk commit with fsync (WAL, synchronous FULL): ${JSON.stringify(diskCommitMs)}\n`);
  for (const subscribers of counts) {
    const server = await startBenchServer(env, Number(values.port));
    try {
      const run = await runOnce(server, new Api(server.url, key), { ...base, subscribers });
      await server.stop();
      const counters = await realtimeCounters(server.logFile);
      runs.push({ ...run, serverRealtimeCounters: counters ? { ...counters, framesPerWrite: +(counters.frames / Math.max(1, counters.writes)).toFixed(2), note: 'whole server life: warm-up and window' } : null });
      process.stderr.write(`${subscribers}: ${JSON.stringify({ latencyMs: run.latencyMs, writerAckMs: run.writerAckMs, frames: run.framesPerSecond, cpu: run.server.cpuPercent.mean, clientsCpu: run.clientsCpuPercent, steal: run.stealPercent, rss: run.server.rssMiB.max, deltas: run.deltas })}\n`);
    } finally {
      await server.stop();
    }
  }
  let joinResult = null;
  if (Number(values.join) > 0) {
    process.stderr.write(`join benchmark (${values.join} iterations)\n`);
    const server = await startBenchServer(env, Number(values.port));
    try {
      joinResult = await joinBench(new Api(server.url, key), Number(values.join));
    } finally {
      await server.stop();
    }
    process.stderr.write(`join: ${JSON.stringify(joinResult)}\n`);
  }

  const date = new Date().toISOString().slice(0, 10);
  const summary = {
    kind: 'fanout',
    date,
    host: { cpus: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), node: process.version },
    setup: {
      encodings: 'half JSON, half MessagePack', clientThreads: base.workers, publishHz: base.hz, deltaRate: base.rate, seconds: base.seconds,
      basisK: 16, spaceSync, note: 'server process, subscriber threads and writer share this machine',
    },
    diskCommitMs,
    runs,
    join: joinResult,
  };
  const suffix = spaceSync === 'fsync' ? '-fsync' : '';
  const path = `bench/results/fanout-${date}${suffix}.json`;
  await writeFile(path, JSON.stringify(summary, null, 2) + '\n');
  process.stderr.write(`wrote ${path}\n`);

  // A plot needs more than one subscriber count.
  const plotted = runs.length > 1;
  if (plotted) await writeFanoutSvg(runs, `bench/results/fanout${suffix}.svg`);
  const lines = [
    `Run ${date} on ${summary.host.cpus}, ${summary.host.cores} cores, Node ${summary.host.node}; server, subscriber threads and writer on this one machine. ` +
      `Half JSON, half MessagePack subscribers, publishHz ${base.hz}, ${base.rate} deltas/s for ${base.seconds} s, \`RESONANCE_SPACE_SYNC=${spaceSync}\`. File: \`results/fanout-${date}${suffix}.json\`.`,
    '',
    `Disk commit latency with an fsync, before the runs (SQLite WAL, one row per commit): p50 ${diskCommitMs.p50} ms, p99 ${diskCommitMs.p99} ms, max ${diskCommitMs.max} ms.`,
    '',
    '| subscribers | propose-to-receive p50 ms | p99 ms | max ms | writer ack p50 / p99 ms | frames/s delivered | lost / gaps / resyncs | server CPU % mean (max) | clients CPU % | steal % | server RSS MiB (max) |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...runs.map(
      (r) =>
        `| ${r.started} | ${r.latencyMs.p50} | ${r.latencyMs.p99} | ${r.latencyMs.max} | ${r.writerAckMs.p50} / ${r.writerAckMs.p99} | ${r.framesPerSecond.total} | ` +
        `${r.deltas.lost} / ${r.deltas.gaps} / ${r.deltas.resyncs} | ${r.server.cpuPercent.mean} (${r.server.cpuPercent.max}) | ${r.clientsCpuPercent} | ${r.stealPercent} | ${r.server.rssMiB.max} |`,
    ),
    ...(joinResult ? ['', `Create space + open session + WebSocket welcome, ${joinResult.iterations} iterations in sequence on loopback: p50 ${joinResult.p50} ms, p95 ${joinResult.p95} ms, p99 ${joinResult.p99} ms, max ${joinResult.max} ms.`] : []),
    ...(plotted ? ['', `![propose-to-receive latency by subscribers](results/fanout${suffix}.svg)`] : []),
  ];
  await replaceResultsSection('bench/README.md', `fanout${suffix}`, lines.join('\n'));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
