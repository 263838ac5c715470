/**
 * Server processes for bench/cluster.ts: a node of a cluster (`resonance serve` with RESONANCE_* settings)
 * that can be SIGKILLed and started again on the same port, node id and data directory; a fresh Postgres
 * database and Redis key prefix per topology; /proc readings; and the cleanup that leaves no process,
 * database or key behind, also when the run fails or is interrupted.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { open, readFile, rm } from 'node:fs/promises';
import { Redis } from 'ioredis';
import pg from 'pg';

export const PG_ADMIN_URL = process.env.RESONANCE_BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.RESONANCE_BENCH_REDIS ?? 'redis://127.0.0.1:6379';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Every server process started here, so that an exit of any kind takes them along. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of children) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

export interface NodeOptions {
  /** RESONANCE_NODE_ID (absent: a process that is not named, as a single server runs). */
  id?: string;
  port: number;
  dataDir: string;
  /** Log file (stdout and stderr), appended to across restarts. */
  logFile: string;
  env: Record<string, string>;
}

/** One `resonance serve` process that can be killed and started again as the same node. */
export class NodeProcess {
  proc: ChildProcess | null = null;
  readonly url: string;
  private exited: Promise<void> = Promise.resolve();

  constructor(readonly options: NodeOptions) {
    this.url = `http://127.0.0.1:${options.port}`;
  }

  get pid(): number {
    const pid = this.proc?.pid;
    if (pid === undefined) throw new Error(`${this.options.id ?? this.url} is not running`);
    return pid;
  }

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Starts the process and resolves once /readyz answers 200 (store and broker reachable). */
  async start(timeoutMs = 30_000): Promise<void> {
    if (this.running) throw new Error(`${this.options.id ?? this.url} is already running`);
    const { id, port, dataDir, logFile, env } = this.options;
    const log = await open(logFile, 'a');
    const proc = spawn(process.execPath, ['dist/src/cli/main.js', 'serve', '--port', String(port), '--host', '127.0.0.1', '--data', dataDir, '--backend', 'cpu'], {
      env: { ...process.env, ...env, ...(id ? { RESONANCE_NODE_ID: id } : {}) },
      stdio: ['ignore', log.fd, log.fd],
    });
    children.add(proc);
    this.proc = proc;
    this.exited = new Promise<void>((resolve) =>
      proc.once('exit', () => {
        children.delete(proc);
        void log.close().then(() => resolve(), () => resolve());
      }),
    );
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${id ?? this.url} exited while starting:\n${await tail(logFile)}`);
      const ok = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false);
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`${id ?? this.url} was not ready within ${timeoutMs} ms:\n${await tail(logFile)}`);
      await sleep(50);
    }
  }

  /** Sends `signal` and waits for the process to be gone. */
  async kill(signal: NodeJS.Signals): Promise<void> {
    if (this.running) this.proc!.kill(signal);
    await this.exited;
  }

  /** SIGTERM (the node hands its leases over), SIGKILL if it has not exited after 10 s. */
  async stop(): Promise<void> {
    if (!this.running) return this.exited;
    this.proc!.kill('SIGTERM');
    const timer = setTimeout(() => this.proc?.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

async function tail(file: string, lines = 30): Promise<string> {
  return (await readFile(file, 'utf8').catch(() => '')).split('\n').slice(-lines).join('\n');
}

/** A database of its own on the machine's Postgres; `drop` removes it (closing any connection left on it). */
export async function createDatabase(name: string): Promise<{ url: string; drop(): Promise<void> }> {
  if (!/^[a-z0-9_]{1,60}$/.test(name)) throw new Error(`unsafe database name ${name}`);
  const admin = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = new pg.Client({ connectionString: PG_ADMIN_URL });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  };
  await admin((c) => c.query(`CREATE DATABASE "${name}"`));
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    url: url.toString(),
    drop: async () => {
      if (dropped) return;
      dropped = true;
      await admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
    },
  };
}

/** Deletes every Redis key under `prefix` (the run's own; channels leave nothing behind). */
export async function deleteRedisPrefix(prefix: string): Promise<number> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 2 });
  await redis.connect();
  let deleted = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) deleted += await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return deleted;
}

/** USER_HZ: 100 on every Linux this runs on (sysconf(_SC_CLK_TCK)). */
export const CLK_TCK = 100;

/** utime + stime (clock ticks) and RSS (bytes) of a process, from /proc. */
export async function procStat(pid: number): Promise<{ ticks: number; rss: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which is in parentheses and may contain spaces).
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
  return { ticks: Number(f[11]) + Number(f[12]), rss: rssKb * 1024 };
}

/** The machine's CPU time (all CPUs, clock ticks): total, idle (with iowait) and stolen by the hypervisor (/proc/stat). */
export async function hostCpu(): Promise<{ total: number; idle: number; steal: number }> {
  const f = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { total: f.reduce((a, b) => a + b, 0), idle: (f[3] ?? 0) + (f[4] ?? 0), steal: f[7] ?? 0 };
}

/** Removes a directory tree, never failing the run over it. */
export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true }).catch(() => undefined);
}
