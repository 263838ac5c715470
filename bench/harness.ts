/** What every benchmark shares: a real server in its own process, and its section of bench/README.md. */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, open, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';

export interface BenchServer {
  url: string;
  proc: ChildProcess;
  logFile: string;
  stop(): Promise<void>;
}

/** `resonance serve` (CPU engine) on `port` with a fresh data directory, ready when /healthz answers. */
export async function startBenchServer(env: NodeJS.ProcessEnv, port: number, cpus?: string): Promise<BenchServer> {
  const data = await mkdtemp(join(tmpdir(), 'resonance-bench-'));
  // Logs go to a file, as in a deployment: the server never waits on this process to read them.
  const logFile = join(data, 'server.log');
  const log = await open(logFile, 'w');
  const [command, args] = pinned(cpus, process.execPath, ['dist/src/cli/main.js', 'serve', '--port', String(port), '--data', data, '--backend', 'cpu']);
  const proc = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', log.fd, 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode}; see ${logFile}`);
    if (await fetch(`${url}/healthz`).then((r) => r.ok, () => false)) break;
    if (i > 400) throw new Error('server did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  let stopped: Promise<void> | null = null;
  return {
    url,
    proc,
    logFile,
    stop: () =>
      (stopped ??= new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return void log.close().then(() => resolve());
        proc.once('exit', () => void log.close().then(() => resolve()));
        proc.kill('SIGTERM');
      })),
  };
}

/**
 * The command line that runs `command` on the CPUs `cpus` (a taskset list such as "1" or "1-3"), or as it
 * is when no list is given. taskset execs the command, so the child's pid is the command's.
 */
export function pinned(cpus: string | undefined, command: string, args: string[]): [string, string[]] {
  return cpus ? ['taskset', ['-c', cpus, command, ...args]] : [command, args];
}

/** Pins every thread of this process to `cpus`; false where taskset is missing or refuses. */
export function pinSelf(cpus: string): boolean {
  return spawnSync('taskset', ['-a', '-c', '-p', cpus, String(process.pid)], { stdio: 'ignore' }).status === 0;
}

/**
 * Replace what stands between `<!-- NAME-results:start -->` and `<!-- NAME-results:end -->` in a README;
 * false (nothing written) when the markers are missing.
 */
export async function replaceResultsSection(readmePath: string, name: string, body: string): Promise<boolean> {
  const START = `<!-- ${name}-results:start -->`;
  const END = `<!-- ${name}-results:end -->`;
  const readme = await readFile(readmePath, 'utf8');
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) return false;
  await writeFile(readmePath, readme.slice(0, start + START.length) + '\n' + body + '\n' + readme.slice(end));
  return true;
}

/** A free TCP port on 127.0.0.1 (a node keeps it across restarts: its clients and peers find it again). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A realtime client (JSON frames) that resolves once welcomed; `onFrame` sees every frame, the welcome too. */
export function connectClient(url: string, token: string, onFrame: (f: Record<string, unknown>) => void): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['resonance.v1.json'], { headers: { Authorization: `Bearer ${token}` }, perMessageDeflate: false });
    ws.on('message', (data: Buffer) => {
      const f = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
      if (f.type === 'welcome') resolve(ws);
      onFrame(f);
    });
    ws.once('open', () => ws.send('{"type":"hello"}'));
    ws.once('error', reject);
    ws.once('unexpected-response', (_q, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
}

/** Timed repeats of a compute benchmark's cell; the fastest is reported (other load only ever slows a repeat down). */
export const REPEATS = 3;

/**
 * Times `run(n)` (seconds for n units of work) REPEATS times with an n that makes one run last a third of
 * `seconds`: n grows from `start` (at most `max`) until a run lasts that long, and again if the fastest
 * repeat then falls below half of it (the calibrating run was slowed down, by a compiler or by other load).
 */
export async function timeRepeats(run: (n: number) => Promise<number>, seconds: number, start: number, max: number): Promise<{ n: number; times: number[] }> {
  const each = seconds / REPEATS;
  const grow = (n: number, elapsed: number): number => Math.min(max, Math.max(n * 2, Math.ceil((n * each * 1.2) / Math.max(elapsed, 1e-4))));
  let n = start;
  for (;;) {
    const elapsed = await run(n);
    if (elapsed >= each || n >= max) break;
    n = grow(n, elapsed);
  }
  for (let round = 0; ; round++) {
    const times: number[] = [];
    for (let r = 0; r < REPEATS; r++) times.push(await run(n));
    const fastest = Math.min(...times);
    if (fastest >= each / 2 || n >= max || round === 2) return { n, times };
    n = grow(n, fastest);
  }
}
