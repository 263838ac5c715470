/**
 * HTTP benchmark of POST /v1/hqe/validate: the real server beside a bare Koa + zod peer (bench/peer-koa.ts),
 * each in its own process on loopback, driven by the same open-loop client. For each, the highest request
 * rate it sustains with p99 under 10 ms (a stepped search, the two searches' steps interleaved so that both
 * meet the same machine; a step during which other processes took more than --disturbed cores is run
 * again), and the ratio of the two; the whole search repeated --rounds times and the median ratio taken;
 * then the real server's latency at a fixed 500/s. On two or more cores the
 * client runs on CPU 0 and the servers on the others (--no-pin: wherever the scheduler puts them). Writes
 * bench/results/http-validate-<date>.json and updates bench/README.md (bench/README.md, "HTTP").
 *
 *   npm run bench:http [-- --rate 500 --seconds 20 --connections 64 --p99 10 --bar 0.5 --step-seconds 4
 *                         --start-rate 1000 --disturbed 0.1 --budget 120 --rounds 3 --log-level info --port 0 --peer-port 0 --no-pin]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { availableParallelism, cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { freePort, pinned, pinSelf, replaceResultsSection, startBenchServer } from './harness.js';

// ---- the client ----

/** What one paced run saw: latencies (ms, from each request's scheduled time) of the measured window. */
interface RunResult {
  target: number;
  seconds: number;
  latencies: Float64Array;
  /** Requests scheduled in the measured window and answered. */
  answered: number;
  /** Scheduled in the window but never sent (no free connection before the end) or never answered. */
  unanswered: number;
  non2xx: number;
  errors: number;
}

const HEADER_END = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i;

/** One keep-alive connection: one request at a time, responses framed by Content-Length. */
class Connection {
  private buffer: Buffer | null = null;
  /** Scheduled time of the request in flight (performance.now() ms), or null when idle. */
  inFlight: number | null = null;
  /** Whether the request in flight belongs to the measured window. */
  measured = false;
  closed = false;

  constructor(
    readonly socket: Socket,
    private readonly onResponse: (conn: Connection, status: number) => void,
    private readonly onError: (conn: Connection) => void,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      if (this.inFlight !== null) this.onError(this);
    });
  }

  private read(chunk: Buffer): void {
    let data = this.buffer ? Buffer.concat([this.buffer, chunk]) : chunk;
    for (;;) {
      const end = data.indexOf(HEADER_END);
      if (end < 0) break;
      const head = data.toString('latin1', 0, end);
      const length = CONTENT_LENGTH.exec(head);
      // Both servers frame every answer by Content-Length; anything else ends the connection as an error.
      if (!length) {
        this.socket.destroy();
        return;
      }
      const total = end + 4 + Number(length[1]);
      if (data.length < total) break;
      const status = Number(head.slice(9, 12));
      data = data.subarray(total);
      this.onResponse(this, status);
    }
    this.buffer = data.length > 0 ? data : null;
  }
}

/**
 * An open-loop client: requests are due at a steady rate whether or not earlier ones were answered, each is
 * sent on a free connection as soon as one is free, and its latency counts from the time it was due (so
 * time spent waiting for a connection counts: no coordinated omission). Arrivals are checked every
 * millisecond; what fell due in between goes out at once. Every run opens its own keep-alive connections
 * (none sits idle past a server's keep-alive timeout between runs).
 */
class OpenLoopClient {
  constructor(
    private readonly port: number,
    private readonly request: Buffer,
    private readonly connections: number,
  ) {}

  private async connect(onResponse: (conn: Connection, status: number | null) => void): Promise<Connection> {
    const socket = connect({ host: '127.0.0.1', port: this.port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new Connection(socket, (c, status) => onResponse(c, status), (c) => onResponse(c, null));
  }

  /** `warmSeconds` at `rate` unmeasured, then `seconds` measured; waits up to 5 s for the last answers. */
  async paced(rate: number, seconds: number, warmSeconds: number): Promise<RunResult> {
    const intervalMs = 1000 / rate;
    const total = Math.round(rate * (warmSeconds + seconds));
    const firstMeasured = Math.round(rate * warmSeconds);
    const latencies = new Float64Array(total - firstMeasured);
    let answered = 0;
    let non2xx = 0;
    let errors = 0;
    let scheduled = 0;
    let sent = 0;
    let outstanding = 0;
    let pacing = true;
    let start = 0;
    let finish = (): void => undefined;
    const idle: Connection[] = [];
    const send = (): void => {
      while (sent < scheduled && idle.length > 0) {
        const conn = idle.pop()!;
        if (conn.closed) continue;
        conn.inFlight = start + sent * intervalMs;
        conn.measured = sent >= firstMeasured;
        sent++;
        outstanding++;
        conn.socket.write(this.request);
      }
    };
    const onResponse = (conn: Connection, status: number | null): void => {
      const due = conn.inFlight;
      if (due === null) return;
      conn.inFlight = null;
      outstanding--;
      if (conn.measured) {
        if (status === null) errors++;
        else {
          latencies[answered++] = performance.now() - due;
          if (status < 200 || status >= 300) non2xx++;
        }
      }
      if (!conn.closed) idle.push(conn);
      send();
      if (!pacing && outstanding === 0) finish();
    };
    const conns = await Promise.all(Array.from({ length: this.connections }, () => this.connect(onResponse)));
    idle.push(...conns);
    start = performance.now();
    await new Promise<void>((resolve) => {
      const tick = (): void => {
        scheduled = Math.min(total, Math.floor((performance.now() - start) / intervalMs) + 1);
        send();
        if (scheduled < total) setTimeout(tick, 1);
        else resolve();
      };
      tick();
    });
    // What was due but never sent stays unsent: it was due within the window.
    const unsent = scheduled - sent;
    scheduled = sent;
    pacing = false;
    if (outstanding > 0) {
      await Promise.race([new Promise<void>((resolve) => (finish = resolve)), new Promise((resolve) => setTimeout(resolve, 5000))]);
    }
    const lost = outstanding;
    for (const c of conns) {
      c.inFlight = null;
      c.socket.destroy();
    }
    return {
      target: rate,
      seconds,
      latencies: latencies.subarray(0, answered),
      answered,
      unanswered: Math.min(latencies.length - answered, unsent + lost),
      non2xx,
      errors,
    };
  }
}

// ---- other processes ----

/** USER_HZ: 100 on every Linux this runs on (sysconf(_SC_CLK_TCK)). */
const CLK_TCK = 100;

/** CPU seconds spent by the whole machine outside idle (user, nice, system), and stolen by the hypervisor. */
function machineCpu(): { busy: number; steal: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { busy: ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0)) / CLK_TCK, steal: (f[7] ?? 0) / CLK_TCK };
}

/** CPU seconds of one process, all its threads (utime + stime). */
function processCpu(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/**
 * Measures how much CPU went elsewhere while `fn` ran: to processes other than this one and `pids`, and to
 * the hypervisor (steal), in cores (1 = a whole CPU). On a shared machine a step that others disturbed is
 * run again rather than believed. Zero where /proc cannot be read.
 */
async function foreignCpu<T>(pids: number[], fn: () => Promise<T>): Promise<{ result: T; foreignCores: number }> {
  const read = (): { machine: number; ours: number } | null => {
    try {
      const m = machineCpu();
      return { machine: m.busy + m.steal, ours: process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6 + pids.reduce((a, pid) => a + processCpu(pid), 0) };
    } catch {
      return null;
    }
  };
  const before = read();
  const t0 = performance.now();
  const result = await fn();
  const after = read();
  const seconds = (performance.now() - t0) / 1000;
  if (!before || !after) return { result, foreignCores: 0 };
  const foreign = after.machine - before.machine - (after.ours - before.ours);
  return { result, foreignCores: Math.max(0, +(foreign / seconds).toFixed(2)) };
}

// ---- the search ----

interface Step {
  target: number;
  /** CPU (cores) that other processes and the hypervisor took during the step. */
  foreignCores: number;
  achieved: number;
  p50: number;
  p99: number;
  max: number;
  unanswered: number;
  non2xx: number;
  errors: number;
  pass: boolean;
}

const percentile = (sorted: Float64Array, p: number): number =>
  sorted.length === 0 ? Infinity : sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const round2 = (v: number): number => (Number.isFinite(v) ? +v.toFixed(2) : v);

function summarise(r: RunResult, p99Bar: number, foreignCores = 0): Step {
  const sorted = r.latencies.slice().sort();
  const achieved = r.answered / r.seconds;
  const p99 = percentile(sorted, 99);
  return {
    target: Math.round(r.target),
    foreignCores,
    achieved: Math.round(achieved),
    p50: round2(percentile(sorted, 50)),
    p99: round2(p99),
    max: round2(sorted.length ? sorted[sorted.length - 1]! : Infinity),
    unanswered: r.unanswered,
    non2xx: r.non2xx,
    errors: r.errors,
    pass: p99 < p99Bar && r.unanswered === 0 && r.non2xx === 0 && r.errors === 0 && achieved >= 0.97 * r.target,
  };
}

/**
 * The highest passing rate, found by steps: up by `growth` from `start` until a step fails, then halving
 * the gap (geometric mean) until passing and failing rates are within `resolution`. A failing step is
 * run again once before it counts: this machine is shared, and one stall fails a p99.
 */
class RateSearch {
  readonly steps: Step[] = [];
  private best = 0;
  private lowestFail = Infinity;
  private retried = false;

  constructor(
    readonly name: string,
    private readonly start: number,
    private readonly growth = 1.6,
    private readonly resolution = 1.08,
    private readonly maxSteps = 16,
  ) {}

  get maxRate(): number {
    return this.best;
  }

  get done(): boolean {
    return this.steps.length >= this.maxSteps || this.lowestFail <= this.best * this.resolution;
  }

  next(): number {
    if (this.retried) return this.steps[this.steps.length - 1]!.target;
    if (this.lowestFail === Infinity) return this.best === 0 ? this.start : this.best * this.growth;
    return Math.sqrt(Math.max(this.best, this.start / this.growth) * this.lowestFail);
  }

  record(step: Step): void {
    this.steps.push(step);
    if (step.pass) {
      this.best = Math.max(this.best, step.target);
      this.retried = false;
    } else if (!this.retried && this.steps.length < this.maxSteps) {
      this.retried = true;
    } else {
      this.retried = false;
      this.lowestFail = Math.min(this.lowestFail, step.target);
    }
  }
}

// ---- the run ----

async function startPeer(port: number, cpus: string | undefined): Promise<{ proc: ChildProcess; stop(): Promise<void> }> {
  const [command, args] = pinned(cpus, process.execPath, ['dist/bench/peer-koa.js', '--port', String(port)]);
  const proc = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) throw new Error(`peer exited with ${proc.exitCode}`);
    if (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)) break;
    if (i > 200) throw new Error('peer did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    proc,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

function requestBytes(port: number, key: string, body: string): Buffer {
  return Buffer.from(
    `POST /v1/hqe/validate HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nX-Api-Key: ${key}\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'log-level': { type: 'string', default: 'info' },
      // 0: a free port, so that a server left running on a fixed one can never answer for this run's.
      port: { type: 'string', default: '0' },
      'peer-port': { type: 'string', default: '0' },
      rate: { type: 'string', default: '500' },
      seconds: { type: 'string', default: '20' },
      connections: { type: 'string', default: '64' },
      p99: { type: 'string', default: '10' },
      bar: { type: 'string', default: '0.5' },
      'step-seconds': { type: 'string', default: '4' },
      'start-rate': { type: 'string', default: '1000' },
      disturbed: { type: 'string', default: '0.1' },
      budget: { type: 'string', default: '120' },
      rounds: { type: 'string', default: '3' },
      // The client on CPU 0 and the servers on the others, unless --no-pin (Node 20's parseArgs has no negated booleans).
      'no-pin': { type: 'boolean', default: false },
    },
  });
  const key = 'bench-key-' + Math.random().toString(36).slice(2);
  const connections = Number(values.connections);
  const p99Bar = Number(values.p99);
  const bar = Number(values.bar);
  const stepSeconds = Number(values['step-seconds']);
  const disturbed = Number(values.disturbed);
  const budgetSeconds = Number(values.budget);
  const roundCount = Math.max(1, Math.floor(Number(values.rounds)));
  const warmSeconds = 0.5;
  const port = Number(values.port) || (await freePort());
  const peerPort = Number(values['peer-port']) || (await freePort());
  const body = JSON.stringify({ primes: [7, 2, 3, 5, 11, 13], schedule: { steps: 256, dt: 0.1 }, resonanceTarget: { value: 0.8 }, phaseSeeding: { golden: true } });

  const startedAt = Date.now();
  // The client on the first CPU, the server and the peer (one measured at a time) on the others: neither
  // server ever competes with the client for a core, whatever the scheduler would have placed where.
  const cores = availableParallelism();
  const serverCpus = !values['no-pin'] && cores >= 2 && pinSelf('0') ? (cores === 2 ? '1' : `1-${cores - 1}`) : undefined;
  // A budget no benchmark reaches: this measures the server, not the limiter's refusals.
  const server = await startBenchServer({ RESONANCE_BOOTSTRAP_KEY: key, RESONANCE_RATE_LIMIT: '100000000', RESONANCE_LOG_LEVEL: values['log-level'] }, port, serverCpus);
  const peer = await startPeer(peerPort, serverCpus);
  const clients = {
    server: new OpenLoopClient(port, requestBytes(port, key, body), connections),
    peer: new OpenLoopClient(peerPort, requestBytes(peerPort, key, body), connections),
  };
  try {
    // Warm-up: JIT, the SQLite page cache, the credential cache.
    for (const c of [clients.server, clients.peer]) await c.paced(1000, 2, 0);

    const pids = [server.proc.pid, peer.proc.pid].filter((pid): pid is number => pid !== undefined);
    /** Steps run again because other processes took more than `disturbed` cores meanwhile. */
    const discarded: Array<Step & { of: string; round: number }> = [];
    // Whole searches repeated: one search's figure swings with a single unlucky step (the peer's most, at
    // rates where the client and the peer share the machine); the median round speaks for the run.
    const rounds: Array<{ peer: RateSearch; server: RateSearch; ratio: number }> = [];
    for (let round = 1; round <= roundCount; round++) {
      const searches = { server: new RateSearch('server', Number(values['start-rate'])), peer: new RateSearch('peer', Number(values['start-rate'])) };
      const searchEnds = performance.now() + budgetSeconds * 1000;
      while ((!searches.server.done || !searches.peer.done) && performance.now() < searchEnds) {
        // One step of each in turn: both searches meet the machine in the same state, minute by minute.
        for (const name of ['peer', 'server'] as const) {
          const search = searches[name];
          if (search.done) continue;
          const rate = search.next();
          for (let attempt = 0; ; attempt++) {
            const { result, foreignCores } = await foreignCpu(pids, () => clients[name].paced(rate, stepSeconds, warmSeconds));
            const step = summarise(result, p99Bar, foreignCores);
            const disturbedStep = foreignCores > disturbed && attempt < 3 && performance.now() < searchEnds;
            process.stderr.write(
              `round ${round} ${name.padEnd(6)} ${String(step.target).padStart(6)}/s: achieved ${step.achieved}/s, p99 ${step.p99} ms, others ${foreignCores} cores` +
                `${disturbedStep ? ' (disturbed: again)' : step.pass ? '' : ' (fail)'}\n`,
            );
            await new Promise((r) => setTimeout(r, 200));
            if (disturbedStep) {
              discarded.push({ ...step, of: name, round });
              continue;
            }
            search.record(step);
            break;
          }
        }
      }
      const roundRatio = searches.peer.maxRate > 0 ? +(searches.server.maxRate / searches.peer.maxRate).toFixed(3) : 0;
      process.stderr.write(`round ${round}: peer ${searches.peer.maxRate}/s, server ${searches.server.maxRate}/s, ratio ${roundRatio}\n`);
      rounds.push({ ...searches, ratio: roundRatio });
    }
    const ratio = median(rounds.map((r) => r.ratio));

    // Latency at a fixed rate, as earlier runs of this benchmark measured it.
    const fixed = await clients.server.paced(Number(values.rate), Number(values.seconds), 2);
    const fixedStep = summarise(fixed, Infinity);
    const sorted = fixed.latencies.slice().sort();
    const mean = sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length);

    const date = new Date().toISOString().slice(0, 10);
    const summary = {
      kind: 'http',
      endpoint: 'POST /v1/hqe/validate',
      date,
      host: { cpus: cpus()[0]?.model ?? 'unknown', cores, node: process.version },
      client: {
        kind: 'open loop: requests due at a steady rate, latency counted from when each was due',
        connections,
        stepSeconds,
        warmSeconds,
        p99BarMs: p99Bar,
        searchBudgetSeconds: budgetSeconds,
        rerunAboveForeignCores: disturbed,
        pinning: serverCpus ? { client: '0', servers: serverCpus } : 'none',
      },
      discardedSteps: discarded,
      peer: { what: 'Koa + @koa/router + @koa/bodyparser + zod (bench/peer-koa.ts)', maxRate: median(rounds.map((r) => r.peer.maxRate)) },
      server: { what: 'resonance serve, CPU engine, default logging', maxRate: median(rounds.map((r) => r.server.maxRate)) },
      /** Each round's searches; `ratio` below is the median of the rounds' ratios, the rates above each side's median. */
      rounds: rounds.map((r) => ({ ratio: r.ratio, peer: { maxRate: r.peer.maxRate, steps: r.peer.steps }, server: { maxRate: r.server.maxRate, steps: r.server.steps } })),
      ratio,
      bar,
      pass: ratio >= bar,
      fixedRate: {
        targetRate: Number(values.rate),
        seconds: Number(values.seconds),
        requests: fixed.answered,
        achievedRate: fixedStep.achieved,
        unanswered: fixed.unanswered,
        non2xx: fixed.non2xx,
        errors: fixed.errors,
        latencyMs: { p50: round2(percentile(sorted, 50)), p90: round2(percentile(sorted, 90)), p99: round2(percentile(sorted, 99)), max: fixedStep.max, mean: round2(mean) },
      },
      wallSeconds: Math.round((Date.now() - startedAt) / 1000),
    };
    const path = `bench/results/http-validate-${date}.json`;
    await writeFile(path, JSON.stringify(summary, null, 2) + '\n');
    process.stderr.write(
      `median of ${rounds.length} rounds: peer ${summary.peer.maxRate}/s, server ${summary.server.maxRate}/s at p99 < ${p99Bar} ms: ratio ${ratio} (bar ${bar}: ${summary.pass ? 'pass' : 'FAIL'}); ` +
        `at ${summary.fixedRate.targetRate}/s ${JSON.stringify(summary.fixedRate.latencyMs)}; wrote ${path} in ${summary.wallSeconds} s\n`,
    );
    const f = summary.fixedRate;
    await replaceResultsSection(
      'bench/README.md',
      'http',
      [
        `Run ${date} on ${summary.host.cpus}, ${summary.host.cores} cores, Node ${summary.host.node}; the client, the server and the peer on this one machine${serverCpus ? ` (the client pinned to CPU 0, the servers to CPU ${serverCpus})` : ''}. File: \`results/http-validate-${date}.json\`.`,
        '',
        `| round | peer: max rate at p99 < ${p99Bar} ms | \`POST /v1/hqe/validate\` | ratio |`,
        '|---:|---:|---:|---:|',
        ...summary.rounds.map((r, i) => `| ${i + 1} | ${r.peer.maxRate} /s | ${r.server.maxRate} /s | ${r.ratio} |`),
        '',
        `Ratio server / peer, the median of the rounds: **${ratio}** (bar ${bar}: ${summary.pass ? 'pass' : 'fail'}). Steps run again because other processes took more than ${disturbed} cores meanwhile: ${discarded.length}.`,
        '',
        `At a steady ${f.targetRate}/s for ${f.seconds} s: ${f.requests} requests (achieved ${f.achievedRate}/s; non-2xx ${f.non2xx}, errors ${f.errors}, unanswered ${f.unanswered}).`,
        '',
        '| p50 ms | p90 ms | p99 ms | max ms |',
        '|---:|---:|---:|---:|',
        `| ${f.latencyMs.p50} | ${f.latencyMs.p90} | ${f.latencyMs.p99} | ${f.latencyMs.max} |`,
      ].join('\n'),
    );
  } finally {
    await Promise.all([server.stop(), peer.stop()]);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
