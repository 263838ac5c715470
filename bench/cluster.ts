/**
 * Cluster benchmark (docs/scaling.md): realtime fan-out on one node against three nodes, and the failover
 * of a live space when its owner is SIGKILLed, in one run on this machine.
 *
 * Fan-out: one space (16 primes, publishHz 30), N WebSocket subscribers (default 1000, half JSON, half
 * MessagePack, held by worker threads running bench/fanout-worker.ts's raw-TCP client) and one writer
 * proposing `shift_phase` deltas at fixed rates (one window per rate, default 20/s and 50/s), latency from
 * the writer's send to each subscriber's receipt (as bench/fanout.ts measures it). Topologies, each on
 * fresh processes, a fresh Postgres database and a fresh Redis prefix:
 *   - single: one node on Postgres + Redis (a cluster of one: only the topology differs from the cluster);
 *   - sqlite (optional): the default single server, SQLite and no Redis;
 *   - cluster: three nodes; the subscribers spread evenly, each connected straight to its node (the
 *     websocketUrl of a session points at the node that minted it); node-0 owns the space (its first
 *     session was minted there); two windows: the writer on node-1 (not the owner: its proposals are
 *     forwarded to node-0 and its copy comes back through node-1's relay), then the writer on node-0.
 * The bar: cluster p99 (writer on a non-owner node) <= 2 x single-node p99 at the first rate; not
 * measurable where the single node cannot keep up with the rate (its writer's proposals refused).
 *
 * Failover (on the same three nodes, a fresh space, publishHz 20): a reader on every node, three HTTP
 * writers (one per node) proposing throughout. Each round finds the owner (GET /v1/cluster), SIGKILLs it,
 * times kill -> the first telemetry frame of the new owner on a surviving node's reader (and on every
 * surviving reader), restarts the killed node (same port, node id and data directory) and waits until it is
 * ready and its reader has telemetry again. Afterwards every acknowledged delta must be in the log at the
 * version it was acknowledged with (read from the store), the log must be contiguous, and every reader's
 * versions contiguous. The bar: p99 of the kill-to-telemetry times <= lease TTL + 1 s.
 *
 * Writes bench/results/cluster-<date>.json, bench/results/cluster.svg and the cluster section of
 * bench/README.md.
 *
 *   npm run bench:cluster [-- --subscribers 1000 --rates 20,50 --seconds 12 --hz 30 --workers 3 --kills 10
 *                            --ttl 1500 --sqlite on --write-rate 30]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Worker } from 'node:worker_threads';
import WebSocket from 'ws';
import { openStore } from '../src/store/store.js';
import {
  CLK_TCK, createDatabase, deleteRedisPrefix, hostCpu, NodeProcess, procStat, REDIS_URL, removeDir,
} from './cluster-nodes.js';
import { type PlotInput, writeClusterSvg } from './cluster-plot.js';
import type { FromWorker } from './fanout-worker.js';
import { startSubscriberThreads } from './fanout-threads.js';
import { connectClient, freePort, replaceResultsSection } from './harness.js';

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const started = now();
const log = (msg: string): void => void process.stderr.write(`[${((now() - started) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);

function pct(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  return +sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!.toFixed(2);
}
const round = (x: number, d = 1): number => +x.toFixed(d);
function stats(values: number[]): { n: number; p50: number; p99: number; max: number; mean: number } {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, p50: pct(s, 50), p99: pct(s, 99), max: s.length ? +s[s.length - 1]!.toFixed(2) : NaN, mean: s.length ? round(s.reduce((a, b) => a + b, 0) / s.length, 2) : NaN };
}

// ---------------------------------------------------------------- HTTP

class Api {
  constructor(
    readonly url: string,
    readonly key: string,
  ) {}

  async call<T>(method: string, path: string, body?: unknown, timeoutMs = 15_000): Promise<{ status: number; json: T }> {
    const res = await fetch(this.url + path, {
      method,
      headers: { 'x-api-key': this.key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    return { status: res.status, json: (text ? JSON.parse(text) : {}) as T };
  }

  async ok<T>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await this.call<T>(method, path, body);
    if (r.status >= 300) throw new Error(`${method} ${this.url}${path}: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json;
  }

  session(spaceId: string, role: 'reader' | 'writer'): Promise<SessionOut> {
    return this.ok<SessionOut>('POST', `/v1/spaces/${spaceId}/sessions`, { role });
  }

  async owner(spaceId: string): Promise<{ node: string; leaseEpoch: number; leaseExpiresAt: string } | undefined> {
    const view = await this.ok<{ spaces: Array<{ spaceId: string; node: string; leaseEpoch: number; leaseExpiresAt: string }> }>('GET', '/v1/cluster');
    return view.spaces.find((s) => s.spaceId === spaceId);
  }
}

interface SessionOut {
  token: string;
  sessionId: string;
  websocketUrl: string;
}

// ---------------------------------------------------------------- topologies

const KEY = `rsk_bench-cluster-${randomBytes(12).toString('hex')}`;
const RUN = randomBytes(4).toString('hex');
/** Undone in reverse order at the end of the run, whatever happened. */
const cleanups: Array<() => Promise<void>> = [];

interface Topology {
  name: string;
  nodes: NodeProcess[];
  apis: Api[];
  /** RESONANCE_NODE_ID of each node. */
  ids: string[];
  databaseUrl: string | null;
  prefix: string | null;
}

async function startTopology(name: string, n: number, store: 'postgres' | 'sqlite', ttlMs: number): Promise<Topology> {
  const base: Record<string, string> = {
    RESONANCE_BOOTSTRAP_KEY: KEY,
    RESONANCE_LOG_LEVEL: 'info',
    RESONANCE_BACKEND: 'cpu',
    // Limits far above the load: this measures fan-out and failover, not quotas.
    RESONANCE_RATE_LIMIT: '100000000', RESONANCE_WS_PROPOSALS_PER_SECOND: '100000', RESONANCE_QUOTA_SOCKETS: '1000000',
    RESONANCE_QUOTA_SOCKETS_PER_MEMBER: '1000000', RESONANCE_QUOTA_LIVE_SPACES: '100000', RESONANCE_QUOTA_DELTAS_PER_MINUTE: '100000000',
  };
  let databaseUrl: string | null = null;
  let prefix: string | null = null;
  if (store === 'postgres') {
    const db = await createDatabase(`resonance_bench_${RUN}_${name}`);
    cleanups.push(() => db.drop());
    databaseUrl = db.url;
    prefix = `resonance-bench:${RUN}:${name}:`;
    const p = prefix;
    cleanups.push(async () => void (await deleteRedisPrefix(p)));
    Object.assign(base, {
      RESONANCE_DATABASE_URL: databaseUrl, RESONANCE_REDIS_URL: REDIS_URL, RESONANCE_REDIS_PREFIX: prefix,
      RESONANCE_LEASE_TTL_MS: String(ttlMs),
      // One secret for the deployment: a session token minted by one node is good on every node.
      RESONANCE_JWT_SECRET: `bench-cluster-${RUN}`,
    });
  }
  const nodes: NodeProcess[] = [];
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const dataDir = await mkdtemp(join(tmpdir(), `resonance-bench-${name}-${i}-`));
    // Kept (with the node's log) when the run fails.
    cleanups.push(async () => (process.exitCode ? log(`kept ${dataDir} (server.log)`) : removeDir(dataDir)));
    const id = store === 'postgres' ? `${name === 'cluster' ? 'node' : name}-${i}` : undefined;
    const node = new NodeProcess({ ...(id ? { id } : {}), port: await freePort(), dataDir, logFile: join(dataDir, 'server.log'), env: base });
    cleanups.push(() => node.stop());
    // One at a time: the first runs the migrations.
    await node.start();
    nodes.push(node);
    ids.push(id ?? `${name}-${i}`);
  }
  return { name, nodes, apis: nodes.map((node) => new Api(node.url, KEY)), ids, databaseUrl, prefix };
}

async function stopTopology(t: Topology): Promise<void> {
  await Promise.all(t.nodes.map((node) => node.stop()));
}

// ---------------------------------------------------------------- fan-out

interface FanoutOptions {
  subscribers: number;
  workers: number;
  seconds: number;
  warmupSeconds: number;
  hz: number;
  /** Proposals one at a time before each window. */
  probe: number;
}

/** A window whose median ack exceeds this multiple of the unloaded (one at a time) median ack is saturated. */
const SATURATED_ACK_FACTOR = 4;

const PRIMES = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53];

interface WindowResult {
  label: string;
  /** Deltas proposed per second in the window. */
  rate: number;
  /**
   * The writer's path did not keep up with the rate: some proposals were refused (too many waiting, owner
   * unreachable) or never answered, or the writer's median ack was more than SATURATED_ACK_FACTOR times
   * its median ack one at a time (a queue built up). Latency then measures the queue, not the path.
   */
  saturated: boolean;
  writerNode: string;
  writerIsOwner: boolean;
  subscribers: number;
  /** Proposals sent in the window, and those acknowledged (each measured at every subscriber). */
  proposed: number;
  measuredDeltas: number;
  /** Proposals of the window the server refused (error or conflict frames), by code. */
  writerRefusals: Record<string, number>;
  /** Proposals neither acknowledged nor refused 20 s after the window (not measured). */
  unansweredAfterWindow: number;
  /** Before the window: proposals one at a time, each after the previous ack (no queue). */
  sequentialAckMs: { count: number; refused: number; p50: number; p99: number; max: number };
  deliveries: { expected: number; delivered: number; lost: number; gaps: number; resyncs: number; errors: number; closedEarly: number };
  latencyMs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  /** Cluster only: the subscribers of each node (one worker thread each). */
  perNode: Array<{ node: string; owner: boolean; subscribers: number; p50: number; p99: number; max: number }> | null;
  writerAckMs: { p50: number; p99: number };
  framesPerSecond: { total: number; telemetry: number; deltas: number };
  /** Mean CPU of each server process over the window (% of one core). */
  nodesCpuPercent: Record<string, number>;
  nodesCpuPercentTotal: number;
  /** Share of the whole machine (all cores) busy over the window: servers, Postgres, Redis, clients and anything else. */
  hostBusyPercent: number;
  stealPercent: number;
  /** The benchmark process: writer, subscriber threads, bookkeeping (% of one core). */
  clientsCpuPercent: number;
  /** The rest of the machine's busy time: Postgres, Redis and any other process (% of one core). */
  restCpuPercent: number;
}

/**
 * One space on `t`, its subscribers spread over the nodes, and one measured window per entry of
 * `windows` (the writer on that node). Node 0 mints the first session: it owns the space.
 */
async function fanout(t: Topology, o: FanoutOptions, windows: Array<{ label: string; writerNode: number; rate: number }>): Promise<{ owner: string; open: { seconds: number; failures: number }; windows: WindowResult[] }> {
  const n = t.nodes.length;
  const workers: Worker[] = [];
  const writers: WebSocket[] = [];
  try {
    const space = await t.apis[0]!.ok<{ id: string }>('POST', '/v1/spaces', {
      name: `fanout-${t.name}`, basis: { primes: PRIMES }, policy: { publishHz: o.hz, maxMembers: o.subscribers + 20 },
    });
    // The first session, minted on node 0, makes node 0 the owner (its join takes the space's lease).
    const first = await t.apis[0]!.session(space.id, 'reader');
    const owner = t.databaseUrl ? (await t.apis[0]!.owner(space.id))?.node ?? 'none' : t.ids[0]!;
    if (owner !== t.ids[0]) throw new Error(`expected ${t.ids[0]} to own the space, GET /v1/cluster says ${owner}`);
    log(`[fanout ${t.name}] space ${space.id} owned by ${owner}; minting ${o.subscribers} sessions over ${n} node(s)`);
    // Subscriber i on node i % n; worker w holds the subscribers of node w % n (in the cluster: one node each).
    const byNode: Array<Array<{ url: string; token: string }>> = Array.from({ length: n }, () => []);
    byNode[0]!.push({ url: first.websocketUrl, token: first.token });
    for (let i = 1; i < o.subscribers; i += 25) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(25, o.subscribers - i) }, (_, j) => {
          const node = (i + j) % n;
          return t.apis[node]!.session(space.id, 'reader').then((s) => ({ node, s }));
        }),
      );
      for (const { node, s } of batch) byNode[node]!.push({ url: s.websocketUrl, token: s.token });
    }
    const workerSessions: Array<{ node: number; sessions: Array<{ url: string; token: string }> }> = [];
    if (n === 1) {
      const all = byNode[0]!;
      const per = Math.ceil(all.length / o.workers);
      for (let w = 0; w < o.workers; w++) workerSessions.push({ node: 0, sessions: all.slice(w * per, (w + 1) * per) });
    } else {
      for (let node = 0; node < n; node++) workerSessions.push({ node, sessions: byNode[node]! });
    }
    const maxVersion = Math.ceil(windows.reduce((a, w) => a + w.rate * (o.seconds + o.warmupSeconds + 5) + o.probe, 0) * 1.5) + 200;

    // The writers: each one's own copies (with requestId) give the version of each of its proposals.
    const sentAtByRequest = new Map<string, number>();
    /** Proposals waited on one at a time (the probe): resolved with the ack latency, or null when refused. */
    const waiting = new Map<string, (ms: number | null) => void>();
    let writerErrors: Record<string, number> = {};
    let sentAt = new Float64Array(maxVersion + 1);
    let ackMs: number[] = [];
    const writerVersion = new Map<number, number>();
    const writerFor = new Map<number, WebSocket>();
    for (const node of new Set(windows.map((w) => w.writerNode))) {
      const s = await t.apis[node]!.session(space.id, 'writer');
      const ws = await connectClient(s.websocketUrl, s.token, (f) => {
        if (f.type === 'welcome') writerVersion.set(node, f.version as number);
        if (f.type === 'delta') {
          const v = f.toVersion as number;
          writerVersion.set(node, v);
          const sent = typeof f.requestId === 'string' ? sentAtByRequest.get(f.requestId) : undefined;
          if (sent !== undefined) {
            sentAtByRequest.delete(f.requestId as string);
            if (v < sentAt.length) sentAt[v] = sent;
            ackMs.push(now() - sent);
            waiting.get(f.requestId as string)?.(now() - sent);
          }
        }
        if (f.type === 'error' || f.type === 'conflict') {
          // Counted per window (a refused proposal has no version, so no latency); the first few are shown.
          const code = `${f.type} ${String(f.code ?? '')}`.trim();
          if (Object.values(writerErrors).reduce((a, b) => a + b, 0) < 3) log(`writer on ${t.ids[node]} got ${JSON.stringify(f)}`);
          writerErrors[code] = (writerErrors[code] ?? 0) + 1;
          if (typeof f.requestId === 'string') {
            sentAtByRequest.delete(f.requestId);
            waiting.get(f.requestId)?.(null);
          }
        }
      });
      ws.send(JSON.stringify({ type: 'subscribe', kinds: ['deltas'] }));
      writers.push(ws);
      writerFor.set(node, ws);
    }

    const { ask, tell } = startSubscriberThreads(workerSessions.map((ws) => ws.sessions), maxVersion, workers, log);

    const t0 = performance.now();
    const opened = await Promise.all(workers.map((_, w) => ask(w, { cmd: 'open' })));
    const openSeconds = (performance.now() - t0) / 1000;
    const openFailures = opened.reduce((a, x) => a + (x.kind === 'opened' ? x.failures : 0), 0);
    const startedSubs = o.subscribers - openFailures;
    log(`[fanout ${t.name}] ${startedSubs} subscribers started in ${openSeconds.toFixed(1)} s (${openFailures} failed)`);

    let seq = 0;
    const propose = (node: number): string => {
      const requestId = `r${seq++}`;
      sentAtByRequest.set(requestId, now());
      writerFor.get(node)!.send(JSON.stringify({
        type: 'propose_delta', requestId,
        delta: { fromVersion: writerVersion.get(node) ?? 0, ops: [{ op: 'shift_phase', path: `/state/phases/${seq % PRIMES.length}`, value: 0.001 }] },
      }));
      return requestId;
    };
    /** One proposal at a time, each after the previous one's ack: the path's latency without any queue. */
    const probe = async (node: number, count: number): Promise<{ count: number; refused: number; p50: number; p99: number; max: number }> => {
      const ms: number[] = [];
      let refused = 0;
      for (let i = 0; i < count; i++) {
        const requestId = propose(node);
        const got = await new Promise<number | null>((resolve) => {
          waiting.set(requestId, resolve);
          setTimeout(() => resolve(null), 5000);
        });
        waiting.delete(requestId);
        if (got === null) refused++;
        else ms.push(got);
      }
      const st = stats(ms);
      return { count, refused, p50: st.p50, p99: st.p99, max: st.max };
    };

    type Report = Extract<FromWorker, { kind: 'report' }>;
    let previous: Report[] | null = null;
    const results: WindowResult[] = [];
    for (const win of windows) {
      const rate = win.rate;
      log(`[fanout ${t.name}] window "${win.label}": warm-up ${o.warmupSeconds} s, then ${rate} deltas/s for ${o.seconds} s from ${t.ids[win.writerNode]}`);
      const sequentialAckMs = await probe(win.writerNode, o.probe);
      log(`[fanout ${t.name}] ${o.probe} proposals one at a time from ${t.ids[win.writerNode]}: ack p50 ${sequentialAckMs.p50} p99 ${sequentialAckMs.p99} ms (${sequentialAckMs.refused} refused)`);
      for (let i = 0; i < o.warmupSeconds * rate; i++) {
        propose(win.writerNode);
        await sleep(1000 / rate);
      }
      // Whatever the warm-up left waiting is acknowledged (or refused) before the window starts.
      await until('the warm-up proposals', () => (sentAtByRequest.size === 0 ? true : undefined), 10_000, 20).catch(() => sentAtByRequest.clear());
      await sleep(1000);
      sentAt = new Float64Array(maxVersion + 1);
      ackMs = [];
      writerErrors = {};
      let proposed = 0;

      const pids = t.nodes.map((node) => node.pid);
      const before = await Promise.all(pids.map(procStat));
      const hostBefore = await hostCpu();
      const cpuBefore = process.cpuUsage();
      tell({ cmd: 'window', on: true });
      const windowStart = performance.now();
      const total = rate * o.seconds;
      for (let i = 0; i < total; i++) {
        // Paced against the clock, not by summing sleeps.
        const wait = windowStart + (i * 1000) / rate - performance.now();
        if (wait > 0) await sleep(wait);
        propose(win.writerNode);
        proposed++;
      }
      await sleep(1000 / rate);
      const windowSeconds = (performance.now() - windowStart) / 1000;
      tell({ cmd: 'window', on: false });
      const after = await Promise.all(pids.map(procStat));
      const hostAfter = await hostCpu();
      const clientCpu = process.cpuUsage(cpuBefore);
      // Every proposal of the window acknowledged or refused (a queue behind the writer drains), then the
      // subscribers' stragglers: a late ack is measured, never dropped from the latencies.
      const drained = await until('the window\'s proposals', () => (sentAtByRequest.size === 0 ? true : undefined), 20_000, 20).then(() => true, () => false);
      if (!drained) log(`[fanout ${t.name}] ${sentAtByRequest.size} proposals still unanswered 20 s after the window`);
      const unanswered = sentAtByRequest.size;
      sentAtByRequest.clear();
      await sleep(1500);
      const measured = [...sentAt].filter((x) => x > 0).length;
      const reports = (await Promise.all(workers.map((_, w) => ask(w, { cmd: 'report', sentAt })))) as Report[];
      // The workers' counters run over the whole life of the space: each window counts its own increase.
      const inc = (w: number, key: 'gaps' | 'resyncs' | 'errors' | 'framesInWindow' | 'telemetryInWindow' | 'deltasInWindow'): number =>
        reports[w]![key] - (previous?.[w]?.[key] ?? 0);
      const sum = (key: Parameters<typeof inc>[1]): number => reports.reduce((a, _, w) => a + inc(w, key), 0);
      const counted = {
        gaps: sum('gaps'), resyncs: sum('resyncs'), errors: sum('errors'),
        frames: sum('framesInWindow'), telemetry: sum('telemetryInWindow'), deltas: sum('deltasInWindow'),
      };
      previous = reports;

      const all = new Float64Array(reports.reduce((a, r) => a + r.latencies.length, 0));
      let off = 0;
      for (const r of reports) {
        all.set(r.latencies, off);
        off += r.latencies.length;
      }
      all.sort();
      const received = reports.reduce((a, r) => a + r.received, 0);
      const expected = measured * startedSubs;
      ackMs.sort((a, b) => a - b);
      const nodesCpu: Record<string, number> = {};
      t.ids.forEach((id, i) => (nodesCpu[id] = round(((after[i]!.ticks - before[i]!.ticks) / CLK_TCK / windowSeconds) * 100)));
      const hostTotal = Math.max(1, hostAfter.total - hostBefore.total);
      const perNode = n === 1 ? null : workerSessions.map((ws, w) => {
        const l = Float64Array.from(reports[w]!.latencies).sort();
        return { node: t.ids[ws.node]!, owner: ws.node === 0, subscribers: ws.sessions.length, p50: pct(l, 50), p99: pct(l, 99), max: l.length ? +l[l.length - 1]!.toFixed(2) : NaN };
      });
      const result: WindowResult = {
        label: win.label,
        rate,
        // Refusals, or acknowledgements that are mostly queue: more than 4 times the one-at-a-time latency.
        saturated: Object.keys(writerErrors).length > 0 || unanswered > 0 || pct(ackMs, 50) > SATURATED_ACK_FACTOR * sequentialAckMs.p50,
        writerNode: t.ids[win.writerNode]!,
        writerIsOwner: win.writerNode === 0,
        subscribers: startedSubs,
        proposed,
        measuredDeltas: measured,
        // A copy: the next window's warm-up must not count here.
        writerRefusals: { ...writerErrors },
        unansweredAfterWindow: unanswered,
        sequentialAckMs,
        deliveries: {
          expected, delivered: received, lost: expected - received, gaps: counted.gaps, resyncs: counted.resyncs, errors: counted.errors,
          closedEarly: reports.reduce((a, r) => a + r.closedEarly, 0),
        },
        latencyMs: { p50: pct(all, 50), p90: pct(all, 90), p99: pct(all, 99), p999: pct(all, 99.9), max: all.length ? +all[all.length - 1]!.toFixed(2) : NaN, mean: round(all.reduce((a, b) => a + b, 0) / Math.max(1, all.length), 2) },
        perNode,
        writerAckMs: { p50: pct(ackMs, 50), p99: pct(ackMs, 99) },
        framesPerSecond: { total: Math.round(counted.frames / windowSeconds), telemetry: Math.round(counted.telemetry / windowSeconds), deltas: Math.round(counted.deltas / windowSeconds) },
        nodesCpuPercent: nodesCpu,
        nodesCpuPercentTotal: round(Object.values(nodesCpu).reduce((a, b) => a + b, 0)),
        hostBusyPercent: round((1 - (hostAfter.idle - hostBefore.idle) / hostTotal) * 100),
        stealPercent: round(((hostAfter.steal - hostBefore.steal) / hostTotal) * 100),
        clientsCpuPercent: round(((clientCpu.user + clientCpu.system) / 1e6 / windowSeconds) * 100),
        restCpuPercent: 0,
      };
      // What the machine spent outside the servers and this process: Postgres, Redis, and whatever else runs here.
      result.restCpuPercent = round(Math.max(0, result.hostBusyPercent * availableParallelism() - result.nodesCpuPercentTotal - result.clientsCpuPercent));
      results.push(result);
      log(`[fanout ${t.name}] "${win.label}": p50 ${result.latencyMs.p50} p99 ${result.latencyMs.p99} max ${result.latencyMs.max} ms; ` +
        `lost ${result.deliveries.lost}, gaps ${result.deliveries.gaps}, resyncs ${result.deliveries.resyncs}; nodes CPU ${JSON.stringify(nodesCpu)}, host busy ${result.hostBusyPercent}%, steal ${result.stealPercent}%`);
    }
    tell({ cmd: 'close' });
    return { owner, open: { seconds: round(openSeconds, 2), failures: openFailures }, windows: results };
  } finally {
    for (const ws of writers) ws.terminate();
    for (const w of workers) void w.terminate();
  }
}

// ---------------------------------------------------------------- failover

/** A `ws` reader of one node that records what failover is judged by: telemetry arrivals and delta versions. */
class Reader {
  readonly telemetry: Array<{ at: number; t: number; version: number }> = [];
  readonly versions: number[] = [];
  /** Version of the start state (welcome, then its snapshot). */
  start = -1;
  snapshots = 0;
  gaps = 0;
  duplicates = 0;
  /** Each gap or repeated version: when, and what came instead of what. */
  readonly anomalies: Array<{ kind: 'gap' | 'duplicate'; got: number; expected: number; at: number }> = [];
  closedAt: number | null = null;
  /** Highest version held: the start's, then each new delta's. */
  highest = -1;

  private constructor(
    readonly node: string,
    readonly ws: WebSocket,
  ) {
    ws.on('message', (data: Buffer) => {
      const at = now();
      const f = JSON.parse(data.toString('utf8')) as { type: string; t?: number; version?: number; toVersion?: number; snapshot?: { version: number } };
      switch (f.type) {
        case 'telemetry':
          this.telemetry.push({ at, t: f.t!, version: f.version! });
          break;
        case 'welcome':
          this.start = f.version!;
          this.highest = f.version!;
          break;
        case 'snapshot':
          // The start's snapshot has the welcome's version; a later one is a resync.
          if (this.versions.length > 0 || f.snapshot!.version !== this.start) this.snapshots++;
          this.highest = f.snapshot!.version;
          break;
        case 'delta': {
          const v = f.toVersion!;
          // Anything at or below the highest version already held (its start included) came twice.
          if (v <= this.highest) {
            this.duplicates++;
            this.anomalies.push({ kind: 'duplicate', got: v, expected: this.highest + 1, at });
            break;
          }
          if (v !== this.highest + 1) {
            this.gaps++;
            this.anomalies.push({ kind: 'gap', got: v, expected: this.highest + 1, at });
          }
          this.highest = v;
          this.versions.push(v);
          break;
        }
      }
    });
    ws.on('close', () => (this.closedAt = now()));
    ws.on('error', () => undefined);
  }

  static async open(api: Api, node: string, spaceId: string): Promise<Reader> {
    const s = await api.session(spaceId, 'reader');
    const ws = new WebSocket(s.websocketUrl, ['resonance.v1.json'], { headers: { Authorization: `Bearer ${s.token}` }, perMessageDeflate: false });
    const r = new Reader(node, ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => {
        ws.send('{"type":"hello"}');
        resolve();
      });
      ws.once('error', reject);
      ws.once('unexpected-response', (_q, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    });
    return r;
  }

  get open(): boolean {
    return this.closedAt === null;
  }

  lastTelemetryAt(): number {
    return this.telemetry.at(-1)?.at ?? 0;
  }

  /**
   * The first telemetry frame after `killAt` that follows a silence of at least `gapMs`: the new owner's.
   * Frames the old owner published just before it died arrive without such a silence (it published every
   * 1/publishHz s), and no node can take the lease before the dead owner's lapses (about 2/3 of the TTL
   * at the earliest), so the silence is always there. Also: the frames that came after the kill before it.
   */
  recovery(killAt: number, gapMs: number): { at: number; t: number; lastTBefore: number | null; stragglers: number } | null {
    let prev = -Infinity;
    let lastT: number | null = null;
    let stragglers = 0;
    for (const f of this.telemetry) {
      if (f.at > killAt) {
        if (f.at - prev >= gapMs) return { at: f.at, t: f.t, lastTBefore: lastT, stragglers };
        stragglers++;
      }
      prev = f.at;
      lastT = f.t;
    }
    return null;
  }
}

async function until<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs: number, everyMs = 10): Promise<T> {
  const deadline = now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

interface KillRound {
  round: number;
  killed: string;
  leaseEpochBefore: number;
  newOwner: string | null;
  leaseEpochAfter: number | null;
  /** Kill to the first new-owner telemetry on any surviving reader; null when none came within the timeout. */
  firstMs: number | null;
  /** Kill to new-owner telemetry on every surviving reader. */
  allMs: number | null;
  perReader: Array<{ node: string; ms: number | null; stragglers: number; lastTBefore: number | null; firstTAfter: number | null }>;
  /** Deltas the killed owner acknowledged to a writer in the last 500 ms before the kill (HTTP, directly). */
  ackedByOwnerJustBeforeKill: number;
  restartMs: number;
}

async function failover(t: Topology, o: { kills: number; hz: number; ttlMs: number; writeRate: number; deadline: number }) {
  const ids = t.ids;
  const down = new Set<number>();
  const space = await t.apis[0]!.ok<{ id: string }>('POST', '/v1/spaces', { name: 'failover', basis: { primes: PRIMES.slice(0, 8) }, policy: { publishHz: o.hz } });
  const readers: Reader[] = [];
  const current: Reader[] = [];
  // Node 0's reader first: node 0 takes the lease.
  for (let i = 0; i < t.nodes.length; i++) {
    const r = await Reader.open(t.apis[i]!, ids[i]!, space.id);
    readers.push(r);
    current[i] = r;
  }
  await until('telemetry on every reader', () => (current.every((r) => r.telemetry.length > 2) ? true : undefined), 10_000);

  // Writers: one per node over HTTP, each at writeRate / nodes; a request to a dead or dying node simply fails.
  const acked: Array<{ version: number; value: number; node: number; at: number }> = [];
  const failures = new Map<string, number>();
  const fail = (why: string): void => void failures.set(why, (failures.get(why) ?? 0) + 1);
  let proposed = 0;
  let seq = 0;
  let maxAcked = 0;
  let writing = true;
  const interval = (1000 * t.nodes.length) / o.writeRate;
  const writerLoops = t.nodes.map(async (_, j) => {
    for (let next = performance.now(); writing; ) {
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
      next = Math.max(next + interval, performance.now() - interval);
      if (down.has(j)) continue;
      const n = seq++;
      // A value of its own per proposal: the log is checked for it at the version it was acknowledged with.
      const value = (n + 1) * 1e-9;
      proposed++;
      try {
        const r = await t.apis[j]!.call<{ toVersion?: number; code?: string }>('POST', `/v1/spaces/${space.id}/deltas`, {
          fromVersion: maxAcked, ops: [{ op: 'shift_phase', path: `/state/phases/${n % 8}`, value }],
        }, 5000);
        if (r.status < 300 && typeof r.json.toVersion === 'number') {
          acked.push({ version: r.json.toVersion, value, node: j, at: now() });
          maxAcked = Math.max(maxAcked, r.json.toVersion);
        } else fail(`${r.status} ${r.json.code ?? ''}`.trim());
      } catch (err) {
        fail(err instanceof Error ? (err.name === 'TimeoutError' ? 'timeout' : ((err.cause as { code?: string } | undefined)?.code ?? err.name)) : 'error');
      }
    }
  });

  const gapMs = Math.max(300, 6 * (1000 / o.hz));
  const rounds: KillRound[] = [];
  const killTimes: Array<{ round: number; node: string; at: number }> = [];
  try {
    await sleep(1000);
    for (let k = 1; k <= o.kills; k++) {
      if (now() > o.deadline) {
        log(`[failover] stopping after ${k - 1} kills: the run's time is up`);
        break;
      }
      const before = await t.apis[(k + 1) % t.nodes.length]!.owner(space.id);
      if (!before) throw new Error('GET /v1/cluster lists no owner for the failover space');
      const victim = ids.indexOf(before.node);
      if (victim < 0) throw new Error(`unknown owner ${before.node}`);
      const survivors = current.filter((_, i) => i !== victim);
      // Steady state first: every surviving reader has had telemetry in the last few publish intervals.
      await until('steady telemetry', () => (survivors.every((r) => now() - r.lastTelemetryAt() < gapMs / 2) ? true : undefined), 10_000);
      const killAt = now();
      killTimes.push({ round: k, node: before.node, at: killAt });
      down.add(victim);
      const killed = t.nodes[victim]!.kill('SIGKILL');
      log(`[failover] round ${k}/${o.kills}: SIGKILL owner ${before.node} (lease epoch ${before.leaseEpoch})`);
      await killed;
      const recoveries = await until('telemetry from a new owner on every surviving reader', () => {
        const r = survivors.map((s) => s.recovery(killAt, gapMs));
        return r.every((x) => x !== null) || now() - killAt > 15_000 ? r : undefined;
      }, 20_000);
      const times = recoveries.map((r) => (r ? round(r.at - killAt, 1) : null));
      const got = times.filter((x): x is number => x !== null);
      const after = await until('the new owner in GET /v1/cluster', async () => {
        const o2 = await t.apis[ids.indexOf(survivors[0]!.node)]!.owner(space.id).catch(() => undefined);
        return o2 && o2.node !== before.node ? o2 : undefined;
      }, 10_000, 50).catch(() => null);
      const ackedJustBefore = acked.filter((a) => a.node === victim && a.at <= killAt && a.at > killAt - 500).length;
      // Back as the same node: same port, node id and data directory.
      const r0 = now();
      await t.nodes[victim]!.start();
      const restartMs = round(now() - r0, 0);
      down.delete(victim);
      const fresh = await Reader.open(t.apis[victim]!, ids[victim]!, space.id);
      readers.push(fresh);
      current[victim] = fresh;
      await until('telemetry on the restarted node', () => (fresh.telemetry.length > 2 ? true : undefined), 10_000);
      const row: KillRound = {
        round: k,
        killed: before.node,
        leaseEpochBefore: before.leaseEpoch,
        newOwner: after?.node ?? null,
        leaseEpochAfter: after?.leaseEpoch ?? null,
        firstMs: got.length > 0 ? Math.min(...got) : null,
        allMs: got.length === survivors.length ? Math.max(...got) : null,
        perReader: survivors.map((s, i) => ({ node: s.node, ms: times[i]!, stragglers: recoveries[i]?.stragglers ?? 0, lastTBefore: recoveries[i]?.lastTBefore ?? null, firstTAfter: recoveries[i]?.t ?? null })),
        ackedByOwnerJustBeforeKill: ackedJustBefore,
        restartMs,
      };
      rounds.push(row);
      log(`[failover] round ${k}/${o.kills}: new owner ${row.newOwner} (epoch ${row.leaseEpochAfter}); telemetry after ${row.firstMs} ms (first), ${row.allMs} ms (every surviving reader: ${row.perReader.map((p) => `${p.node} ${p.ms}`).join(', ')}); ${before.node} restarted and ready in ${restartMs} ms`);
      await sleep(500);
    }
  } finally {
    writing = false;
    await Promise.all(writerLoops);
  }

  // Every acknowledged delta is in the log, at its version; the log and every reader are contiguous.
  log('[failover] checking the log against every acknowledged delta');
  await sleep(1500);
  const heads = await Promise.all(t.apis.map((a) => a.ok<{ version: number }>('GET', `/v1/spaces/${space.id}`).then((s) => s.version)));
  const head = Math.max(...heads);
  const store = await openStore({ dataDir: tmpdir(), databaseUrl: t.databaseUrl! });
  const logged = new Map<number, unknown[]>();
  try {
    for (let after = 0; ; ) {
      const page = await store.spaces.deltasSince(space.id, after, 1000);
      if (page.length === 0) break;
      for (const d of page) logged.set(d.version, d.ops);
      after = page[page.length - 1]!.version;
    }
  } finally {
    await store.close();
  }
  const logVersions = [...logged.keys()].sort((a, b) => a - b);
  const holes = logVersions.length === 0 ? 0 : logVersions[logVersions.length - 1]! - logVersions[0]! + 1 - logVersions.length;
  const lostDetails: Array<{ version: number; value: number; node: string; why: string }> = [];
  const seenVersion = new Map<number, number>();
  for (const a of acked) {
    const ops = logged.get(a.version) as Array<{ op: string; value: number }> | undefined;
    const why = a.version > head ? `above the head ${head}`
      : !ops ? 'not in the log'
      : !ops.some((op) => op.op === 'shift_phase' && Math.abs(op.value - a.value) <= 1e-12 * a.value) ? `the log has ${JSON.stringify(ops)} at that version`
      : seenVersion.has(a.version) ? `version also acknowledged to proposal ${seenVersion.get(a.version)}`
      : null;
    seenVersion.set(a.version, a.value);
    if (why) lostDetails.push({ version: a.version, value: a.value, node: ids[a.node]!, why });
  }
  // The readers still connected reach the head; every reader's versions are contiguous while it was connected.
  const live = readers.filter((r) => r.open);
  await until('every connected reader at the head', () => (live.every((r) => r.highest >= head) ? true : undefined), 10_000).catch(() => undefined);
  const readerReport = readers.map((r) => ({
    node: r.node, connectedAtEnd: r.open, start: r.start, last: r.highest, deltas: r.versions.length,
    gaps: r.gaps, duplicates: r.duplicates, resyncSnapshots: r.snapshots,
    // Placed against the kills: the round before it and how long after that kill it came.
    anomalies: r.anomalies.map((a) => {
      const k = [...killTimes].reverse().find((x) => x.at <= a.at);
      return { kind: a.kind, got: a.got, expected: a.expected, afterKill: k ? { round: k.round, killed: k.node, ms: round(a.at - k.at, 1) } : null };
    }),
  }));
  const firsts = rounds.map((r) => r.firstMs).filter((x): x is number => x !== null);
  const alls = rounds.map((r) => r.allMs).filter((x): x is number => x !== null);
  const missing = rounds.filter((r) => r.firstMs === null).length;
  const missingAll = rounds.filter((r) => r.allMs === null).length;
  const limitMs = o.ttlMs + 1000;
  const firstStats = stats(firsts);
  const allStats = stats(alls);
  const failoverMs = {
    first: { ...firstStats, missing },
    everySurvivor: { ...allStats, missing: missingAll },
  };
  return {
    spaceId: space.id,
    ttlMs: o.ttlMs,
    publishHz: o.hz,
    silenceMs: gapMs,
    kills: rounds.length,
    rounds,
    failoverMs,
    bar: {
      rule: 'p99 of kill -> first telemetry from the new owner on a surviving node <= lease TTL + 1 s',
      limitMs,
      p99: firstStats.p99,
      pass: missing === 0 && rounds.length > 0 && firstStats.p99 <= limitMs,
      everySurvivor: { p99: allStats.p99, pass: missingAll === 0 && rounds.length > 0 && allStats.p99 <= limitMs },
    },
    writes: {
      writers: `${t.nodes.length} HTTP writers (POST /v1/spaces/{id}/deltas), one per node, ${o.writeRate} proposals/s together`,
      proposed, acknowledged: acked.length, refusedOrFailed: Object.fromEntries(failures),
      lost: lostDetails.length, lostDetails: lostDetails.slice(0, 20),
      ackedByKilledOwnerInLast500msBeforeKill: rounds.reduce((a, r) => a + r.ackedByOwnerJustBeforeKill, 0),
    },
    log: { head, headByNode: Object.fromEntries(ids.map((id, i) => [id, heads[i]])), deltas: logVersions.length, first: logVersions[0] ?? null, last: logVersions.at(-1) ?? null, holes },
    readers: {
      opened: readers.length,
      gaps: readers.reduce((a, r) => a + r.gaps, 0),
      duplicates: readers.reduce((a, r) => a + r.duplicates, 0),
      resyncSnapshots: readers.reduce((a, r) => a + r.snapshots, 0),
      connectedAtEnd: live.length,
      connectedAtHead: live.filter((r) => r.highest >= head).length,
      each: readerReport,
    },
  };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      subscribers: { type: 'string', default: '1000' },
      workers: { type: 'string', default: '3' },
      /** Deltas per second, one window each per topology (the SQLite row: the first only); the bar is taken at the first. */
      rates: { type: 'string', default: '20,50' },
      seconds: { type: 'string', default: '12' },
      warmup: { type: 'string', default: '3' },
      probe: { type: 'string', default: '40' },
      hz: { type: 'string', default: '30' },
      /** Also the default single server (SQLite, no Redis): on | off. */
      sqlite: { type: 'string', default: 'on' },
      kills: { type: 'string', default: '10' },
      ttl: { type: 'string', default: '1500' },
      'failover-hz': { type: 'string', default: '20' },
      'write-rate': { type: 'string', default: '30' },
      /** The run stops starting new kill rounds after this many seconds. */
      budget: { type: 'string', default: '330' },
    },
  });
  const fo: FanoutOptions = {
    subscribers: Number(values.subscribers), workers: Number(values.workers), seconds: Number(values.seconds),
    warmupSeconds: Number(values.warmup), hz: Number(values.hz), probe: Number(values.probe),
  };
  const rates = values.rates.split(',').map(Number);
  if (rates.length === 0 || rates.some((r) => !(r > 0))) throw new Error('--rates is a list of deltas per second, e.g. 20,50');
  const ttlMs = Number(values.ttl);
  const deadline = started + Number(values.budget) * 1000;
  const host = { cpus: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), node: process.version, loadAverageAtStart: loadavg().map((x) => round(x, 2)) };
  log(`cluster benchmark ${RUN} on ${host.cpus}, ${host.cores} cores, load average ${host.loadAverageAtStart.join(' ')}`);

  let single: Awaited<ReturnType<typeof fanout>>;
  let sqlite: Awaited<ReturnType<typeof fanout>> | null = null;
  let clustered: Awaited<ReturnType<typeof fanout>>;
  let fail: Awaited<ReturnType<typeof failover>>;
  {
    log('[fanout single] starting one node on Postgres + Redis');
    const t = await startTopology('single', 1, 'postgres', ttlMs);
    single = await fanout(t, fo, rates.map((rate) => ({ label: `single node (Postgres + Redis), ${rate}/s`, writerNode: 0, rate })));
    await stopTopology(t);
  }
  if (values.sqlite === 'on') {
    log('[fanout sqlite] starting one node on SQLite, no Redis');
    const t = await startTopology('sqlite', 1, 'sqlite', ttlMs);
    sqlite = await fanout(t, fo, [{ label: `single node (SQLite), ${rates[0]}/s`, writerNode: 0, rate: rates[0]! }]);
    await stopTopology(t);
  }
  {
    log('[fanout cluster] starting three nodes on one Postgres database and one Redis prefix');
    const t = await startTopology('cluster', 3, 'postgres', ttlMs);
    clustered = await fanout(t, fo, rates.flatMap((rate) => [
      { label: `cluster, writer on node-1 (not the owner), ${rate}/s`, writerNode: 1, rate },
      { label: `cluster, writer on node-0 (the owner), ${rate}/s`, writerNode: 0, rate },
    ]));
    // The fan-out's sockets are gone; let the nodes settle their members' departures before the kills.
    await sleep(3000);
    log(`[failover] ${values.kills} owner kills, lease TTL ${ttlMs} ms`);
    fail = await failover(t, { kills: Number(values.kills), hz: Number(values['failover-hz']), ttlMs, writeRate: Number(values['write-rate']), deadline });
    await stopTopology(t);
  }

  // The bar at each rate. A single node that cannot keep up with the rate (saturated) is no baseline: the
  // bar is then not measurable at that rate rather than passed.
  const bars = rates.map((rate, i) => {
    const s1 = single.windows[i]!;
    const nonOwner = clustered.windows[2 * i]!;
    const ownerW = clustered.windows[2 * i + 1]!;
    const limit = round(2 * s1.latencyMs.p99, 2);
    const verdict = (w: WindowResult): boolean | null => (s1.saturated ? null : w.latencyMs.p99 <= limit);
    return {
      rate,
      singleP99: s1.latencyMs.p99,
      limitMs: limit,
      singleSaturated: s1.saturated,
      writerOnNonOwner: { p99: nonOwner.latencyMs.p99, ratio: round(nonOwner.latencyMs.p99 / s1.latencyMs.p99, 2), saturated: nonOwner.saturated, pass: verdict(nonOwner) },
      writerOnOwner: { p99: ownerW.latencyMs.p99, ratio: round(ownerW.latencyMs.p99 / s1.latencyMs.p99, 2), saturated: ownerW.saturated, pass: verdict(ownerW) },
    };
  });
  const fanoutBar = {
    rule: 'cluster p99 (writer on a non-owner node, its proposals forwarded) <= 2 x single-node p99 (Postgres + Redis), same rate; not measurable (pass: null) when the single node is saturated at that rate',
    rate: rates[0]!,
    pass: bars[0]!.writerOnNonOwner.pass,
    byRate: bars,
  };
  const at = (rate: number) => ({
    single: single.windows[rates.indexOf(rate)]!,
    nonOwner: clustered.windows[2 * rates.indexOf(rate)]!,
    owner: clustered.windows[2 * rates.indexOf(rate) + 1]!,
  });
  const first = at(rates[0]!);
  const windows: Array<{ topology: string; w: WindowResult }> = rates.flatMap((rate) => {
    const x = at(rate);
    return [
      { topology: '1 node, Postgres + Redis', w: x.single },
      ...(sqlite && rate === rates[0] ? [{ topology: '1 node, SQLite', w: sqlite.windows[0]! }] : []),
      { topology: '3 nodes, Postgres + Redis', w: x.nonOwner },
      { topology: '3 nodes, Postgres + Redis', w: x.owner },
    ];
  });
  const plot: PlotInput = {
    subscribers: fo.subscribers,
    fanout: [
      { label: `1 node, PG + Redis\n${rates[0]}/s`, latencyMs: first.single.latencyMs },
      ...(sqlite ? [{ label: `1 node, SQLite\n${rates[0]}/s`, latencyMs: sqlite.windows[0]!.latencyMs }] : []),
      { label: `3 nodes, writer on\nnon-owner, ${rates[0]}/s`, latencyMs: first.nonOwner.latencyMs },
      { label: `3 nodes, writer on\nowner, ${rates[0]}/s`, latencyMs: first.owner.latencyMs },
    ],
    fanoutBarMs: bars[0]!.limitMs,
    kills: fail.rounds.map((r) => ({ round: r.round, firstMs: r.firstMs, allMs: r.allMs })),
    ttlMs,
    failoverBarMs: fail.bar.limitMs,
  };
  const date = new Date().toISOString().slice(0, 10);
  const summary = {
    kind: 'cluster',
    date,
    host,
    setup: {
      note: 'every server process, Postgres, Redis, the subscriber threads and the writers share this one machine',
      fanout: {
        subscribers: fo.subscribers, encodings: 'half JSON, half MessagePack',
        clientThreads: 'one per node in the cluster (its subscribers); the same number, split evenly, on one node',
        workers: fo.workers, publishHz: fo.hz, rates, warmupSeconds: fo.warmupSeconds, seconds: fo.seconds, probe: fo.probe, basisK: PRIMES.length,
        store: 'Postgres (one fresh database per topology) and Redis (one fresh prefix per topology), except the SQLite row',
      },
      failover: { leaseTtlMs: ttlMs, publishHz: fail.publishHz, kills: fail.kills, writeRate: Number(values['write-rate']), silenceMs: fail.silenceMs },
    },
    fanout: {
      single: { open: single.open, windows: single.windows },
      ...(sqlite ? { sqlite: { open: sqlite.open, windows: sqlite.windows } } : {}),
      cluster: { owner: clustered.owner, open: clustered.open, windows: clustered.windows },
      bar: fanoutBar,
    },
    failover: fail,
    seconds: round((now() - started) / 1000),
    plot,
  };
  const path = `bench/results/cluster-${date}.json`;
  await writeFile(path, JSON.stringify(summary, null, 2) + '\n');
  await writeClusterSvg(plot);
  log(`wrote ${path} and bench/results/cluster.svg`);

  const f = fail;
  const pf = (b: boolean | null): string => (b === null ? 'not measurable (the single node is saturated)' : b ? 'pass' : '**fail**');
  const perNode = (w: WindowResult): string => w.perNode!.map((p) => `${p.node}${p.owner ? ' (owner)' : ''} ${p.p99}`).join(', ');
  const lines = [
    `Run ${date} on ${host.cpus}, ${host.cores} cores, Node ${host.node}; every server process, Postgres, Redis, the subscriber threads and the writers on this one machine (load average ${host.loadAverageAtStart.join(' ')} at the start). ` +
      `${fo.subscribers} subscribers (half JSON, half MessagePack), publishHz ${fo.hz}, ${fo.seconds} s per window after a ${fo.warmupSeconds} s warm-up and ${fo.probe} proposals one at a time; lease TTL ${ttlMs} ms. ` +
      `Whole run ${summary.seconds} s. File: \`results/cluster-${date}.json\`.`,
    '',
    '| topology | writer on | deltas/s | p50 ms | p99 ms | max ms | writer ack p50 / p99 ms | acked / refused | ack one at a time p50 / p99 ms | lost / gaps / resyncs | server CPU % (per node) | clients CPU % | rest of the machine CPU % | machine busy % | steal % |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...windows.map(({ topology, w }) => {
      const refused = Object.values(w.writerRefusals).reduce((a, b) => a + b, 0) + w.unansweredAfterWindow;
      const writer = w.writerNode + (topology.startsWith('3') ? (w.writerIsOwner ? ' (the owner)' : ' (not the owner)') : '');
      return `| ${topology} | ${writer} | ${w.rate}${w.saturated ? ' (saturated)' : ''} | ${w.latencyMs.p50} | ${w.latencyMs.p99} | ${w.latencyMs.max} | ${w.writerAckMs.p50} / ${w.writerAckMs.p99} | ` +
        `${w.measuredDeltas} / ${refused} | ${w.sequentialAckMs.p50} / ${w.sequentialAckMs.p99} | ${w.deliveries.lost} / ${w.deliveries.gaps} / ${w.deliveries.resyncs} | ` +
        `${w.nodesCpuPercentTotal} (${Object.values(w.nodesCpuPercent).join(' / ')}) | ${w.clientsCpuPercent} | ${w.restCpuPercent} | ${w.hostBusyPercent} | ${w.stealPercent} |`;
    }),
    '',
    `CPU % is of one core (the machine has ${host.cores}); machine busy % is of all of them. "Rest of the machine" is Postgres, Redis and any other process running here at the time: this machine is shared, and the rows were measured one after the other.`,
    '',
    `Saturated: the writer's path did not keep up with the rate — proposals refused (\`too_many_requests\`: at most 64 may wait on one connection; \`owner_unreachable\`) or a median ack more than ${SATURATED_ACK_FACTOR} times the one-at-a-time median — so its latencies measure a queue.`,
    '',
    ...rates.map((rate) => `Cluster p99 ms by the subscribers' node at ${rate}/s, writer on node-1: ${perNode(at(rate).nonOwner)}; writer on node-0: ${perNode(at(rate).owner)}.`),
    '',
    ...bars.map((b) => `Bar at ${b.rate}/s, cluster p99 ≤ 2 × single-node p99 (${b.limitMs} ms): writer on a non-owner node ${b.writerOnNonOwner.p99} ms (ratio ${b.writerOnNonOwner.ratio}) — ${pf(b.writerOnNonOwner.pass)}; ` +
      `writer on the owner ${b.writerOnOwner.p99} ms (ratio ${b.writerOnOwner.ratio}) — ${pf(b.writerOnOwner.pass)}.`),
    '',
    `Failover, ${f.kills} SIGKILLs of the owner (lease TTL ${ttlMs} ms, publishHz ${f.publishHz}), kill → first telemetry of the new owner:`,
    '',
    '| | p50 ms | p99 ms | max ms | rounds without |',
    '|---|---:|---:|---:|---:|',
    `| on the first surviving node | ${f.failoverMs.first.p50} | ${f.failoverMs.first.p99} | ${f.failoverMs.first.max} | ${f.failoverMs.first.missing} |`,
    `| on every surviving node | ${f.failoverMs.everySurvivor.p50} | ${f.failoverMs.everySurvivor.p99} | ${f.failoverMs.everySurvivor.max} | ${f.failoverMs.everySurvivor.missing} |`,
    '',
    `Per kill (first / every surviving node, ms): ${f.rounds.map((r) => `${r.firstMs ?? '–'} / ${r.allMs ?? '–'}`).join(', ')}. ` +
      `Restart of the killed node until ready: ${stats(f.rounds.map((r) => r.restartMs)).p50} ms median.`,
    '',
    `Bar, p99 ≤ TTL + 1 s (${f.bar.limitMs} ms): ${f.bar.p99} ms — ${pf(f.bar.pass)} (every surviving node: ${f.bar.everySurvivor.p99} ms — ${pf(f.bar.everySurvivor.pass)}).`,
    '',
    `Writes during the kills: ${f.writes.proposed} proposed, ${f.writes.acknowledged} acknowledged (${f.writes.ackedByKilledOwnerInLast500msBeforeKill} of them by the owner in the 500 ms before it was killed), ` +
      `**lost: ${f.writes.lost}**; the log holds versions ${f.log.first}–${f.log.last} with ${f.log.holes} holes. ` +
      `Readers: ${f.readers.opened} opened, ${f.readers.gaps} gaps, ${f.readers.duplicates} deltas at or below a version already seen, ${f.readers.resyncSnapshots} resync snapshots; ${f.readers.connectedAtHead} of ${f.readers.connectedAtEnd} still connected at the head (${f.log.head}).`,
    '',
    '![fan-out latency by topology, and failover time per kill](results/cluster.svg)',
  ];
  if (!(await replaceResultsSection('bench/README.md', 'cluster', lines.join('\n')))) log('bench/README.md lacks the cluster-results markers: section not written');
}

let cleaning: Promise<void> | null = null;
async function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => log(`cleanup: ${err instanceof Error ? err.message : String(err)}`));
  })();
  return cleaning;
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping the nodes and dropping the databases`);
    void cleanup().finally(() => process.exit(130));
  });
}

main()
  .catch((err: unknown) => {
    log(`bench: ${err instanceof Error ? err.stack : String(err)}`);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
