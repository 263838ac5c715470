/**
 * The real server as a user runs it: `node dist/src/cli/main.js serve` in a child process (so a test can
 * SIGKILL it), on port 0 and a temporary data directory. Run `npm run build` first.
 *
 * Also: the CLI for keys and clients against the same data directory, and a ContractClient that records the
 * status of every response it receives, so a test file can assert that none of them was a 500.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ContractClient, type ContractResponse } from './contract-client.js';
import { databaseUrlFor, dropDatabase, storeEnv, TEST_STORE } from './stores.js';

export const BIN = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));
/** The published example space (`demo-room`), as a create body. */
export const DEMO_ROOM = {
  name: 'demo-room',
  basis: { primes: [2, 3, 5, 7, 11, 13], cutoff: 1024 },
  phases: { golden: true, silver: true },
  operators: { resonanceTarget: 0.85 },
  entropy: { lambda: 0.03, collapseThreshold: 0.96 },
};

export const DEV_KEY = 'rsk_dev-bootstrap-key-for-e2e-tests-0123456789';

export interface StartOptions {
  /** Reuse a data directory (a restart); otherwise a fresh temporary one, removed by stop(). */
  dataDir?: string;
  /** Extra RESONANCE_* variables; the defaults set the dev key, private webhooks and log level warn. */
  env?: Record<string, string>;
  /** How long to wait for the `listening on` line. */
  startTimeoutMs?: number;
  /** A fixed port (a restart where clients reconnect to the same address); default an ephemeral one. */
  port?: number;
  /** The engine (`--backend`); default cpu. webgpu takes a software adapter (llvmpipe) where there is no GPU. */
  backend?: 'cpu' | 'webgpu';
}

export interface TestServer {
  url: string;
  proc: ChildProcess;
  dataDir: string;
  /** stdout after the listening line (pino logs) and stderr, for failure messages. */
  logs(): string;
  /** Sends `signal` and waits for the process to exit; resolves with its exit code or signal. */
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Graceful stop (SIGTERM, SIGKILL after 15 s) and removal of a data directory this server created. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
// A test runner that dies (or a hook that fails) must not leave servers behind.
process.once('exit', () => {
  for (const p of live) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

function requireBuild(): void {
  if (!existsSync(BIN)) throw new Error(`${BIN} does not exist: run \`npm run build\` before these tests`);
}

export async function startServer(options: StartOptions = {}): Promise<TestServer> {
  requireBuild();
  const ownsDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'resonance-e2e-')));
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    RESONANCE_BOOTSTRAP_KEY: DEV_KEY,
    RESONANCE_ALLOW_PRIVATE_WEBHOOKS: '1',
    RESONANCE_LOG_LEVEL: 'warn',
    RESONANCE_BACKEND: options.backend ?? 'cpu',
    // The run's store (test/helpers/stores.ts): in the postgres project, a database per data directory.
    ...(await storeEnv(dataDir)),
    ...options.env,
  };
  const proc = spawn(process.execPath, [BIN, 'serve', '--port', String(options.port ?? 0), '--host', '127.0.0.1', '--data', dataDir, '--backend', options.backend ?? 'cpu'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(proc);
  let log = '';
  let stdoutBuf = '';
  let url: string | null = null;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('exit', (code, signal) => {
      live.delete(proc);
      resolve({ code, signal });
    });
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    log += chunk;
  });

  try {
    url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not print "listening on" within ${options.startTimeoutMs ?? 30_000} ms`)), options.startTimeoutMs ?? 30_000);
      proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        if (url !== null) {
          log += chunk;
          return;
        }
        stdoutBuf += chunk;
        const m = /listening on (http:\/\/\S+)\n/.exec(stdoutBuf);
        if (m) {
          clearTimeout(timer);
          log += stdoutBuf.replace(m[0], '');
          resolve(m[1]!);
        }
      });
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`server exited before listening (code ${code}, signal ${signal})`));
      });
    });
  } catch (err) {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
    if (ownsDir) await rm(dataDir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}\n--- server output ---\n${stdoutBuf}${log}`);
  }

  let stopped: Promise<void> | null = null;
  const kill = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    return exited;
  };
  return {
    url,
    proc,
    dataDir,
    logs: () => log,
    kill,
    stop: () =>
      (stopped ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill('SIGTERM');
          const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
          await exited;
          clearTimeout(timer);
        }
        if (ownsDir) {
          await rm(dataDir, { recursive: true, force: true });
          if (TEST_STORE === 'postgres') await dropDatabase(databaseUrlFor(dataDir));
        }
      })()),
  };
}

/** A JSON reply: status, headers and the parsed body ({} when empty). */
export interface Reply<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  json: T;
}

/** One HTTP request with a JSON body (when given) to `base + path`. */
export async function request<T = Record<string, unknown>>(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Reply<T>> {
  const res = await fetch(base + path, {
    method,
    headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: (text ? JSON.parse(text) : {}) as T };
}

/** Runs the resonance CLI (e.g. `keys create --org other --json`) against `dataDir`. */
export async function cli(args: string[], dataDir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  requireBuild();
  const env = { ...process.env, RESONANCE_LOG_LEVEL: 'warn', ...(await storeEnv(dataDir)) };
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args, '--data', dataDir], { env }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** `keys create --json`: a new API key of `org` with `scopes`. */
export async function createKey(dataDir: string, org: string, scopes = 'hqe.read,hqe.write'): Promise<string> {
  const r = await cli(['keys', 'create', '--org', org, '--scopes', scopes, '--json'], dataDir);
  if (r.code !== 0 || !r.stdout.trim()) throw new Error(`keys create failed (exit ${r.code}): stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr)}`);
  return (JSON.parse(r.stdout) as { key: string }).key;
}

/** A response status the server should never send, with where it came from. */
export interface StatusRecord {
  method: string;
  path: string;
  status: number;
}

/**
 * A ContractClient whose every checked response (and every raw response passed to record()) lands in a
 * shared log; `serverErrors()` lists the 5xx among them (a 503 from /readyz while draining excepted).
 */
export class RecordingClient extends ContractClient {
  constructor(
    baseUrl: string,
    defaultHeaders: Record<string, string> = {},
    readonly log: StatusRecord[] = [],
  ) {
    super(baseUrl, defaultHeaders);
  }

  override withHeaders(headers: Record<string, string>): RecordingClient {
    return new RecordingClient(this.baseUrl, { ...this.defaultHeaders, ...headers }, this.log);
  }

  override check(method: string, path: string, status: number, contentType: string, json: unknown): void {
    this.record(method, path, status);
    super.check(method, path, status, contentType, json);
  }

  record(method: string, path: string, status: number): void {
    this.log.push({ method: method.toUpperCase(), path, status });
  }

  /** A request whose path openapi.yaml does not describe (unknown routes, /docs): recorded, not checked. */
  async raw(method: string, path: string, init: RequestInit = {}): Promise<ContractResponse> {
    const res = await fetch(this.baseUrl + path, { method, ...init, headers: { ...this.defaultHeaders, ...(init.headers as Record<string, string> | undefined) } });
    const text = await res.text();
    this.record(method, path, res.status);
    const type = res.headers.get('content-type') ?? '';
    return { status: res.status, headers: res.headers, text, json: /json/.test(type) && text ? (JSON.parse(text) as unknown) : undefined };
  }

  serverErrors(): StatusRecord[] {
    return this.log.filter((r) => r.status >= 500 && !(r.path === '/readyz' && r.status === 503));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `fn` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** One Server-Sent Event. */
export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

/** An incremental text/event-stream parser (WHATWG rules for id, event, data; comments and retry ignored). */
export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined = undefined;
  private sawId = false;

  push(chunk: string): SseEvent[] {
    this.buffer += chunk;
    const out: SseEvent[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      if (line === '') {
        if (this.data.length > 0) out.push({ id: this.sawId ? this.id : undefined, event: this.event || 'message', data: this.data.join('\n') });
        this.data = [];
        this.event = '';
        this.sawId = false;
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') this.data.push(value);
      else if (field === 'event') this.event = value;
      else if (field === 'id') {
        this.id = value;
        this.sawId = true;
      }
    }
    return out;
  }
}

export interface SseRead {
  status: number;
  contentType: string;
  events: SseEvent[];
  /** True when the server ended the stream; false when the reader stopped (stopWhen or timeout). */
  ended: boolean;
}

/**
 * Reads an SSE response with fetch until the server ends it, `stopWhen` returns true (then the connection
 * is aborted) or `timeoutMs` passes (an error, unless `allowTimeout`).
 */
export async function readSse(
  url: string,
  headers: Record<string, string>,
  opts: { stopWhen?: (events: SseEvent[]) => boolean; timeoutMs?: number; allowTimeout?: boolean; onOpen?: (res: Response) => void } = {},
): Promise<SseRead> {
  const controller = new AbortController();
  const timeoutMs = opts.timeoutMs ?? 15_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  const events: SseEvent[] = [];
  try {
    const res = await fetch(url, { headers: { Accept: 'text/event-stream', ...headers }, signal: controller.signal });
    opts.onOpen?.(res);
    const contentType = res.headers.get('content-type') ?? '';
    if (!res.body || !contentType.startsWith('text/event-stream')) {
      const text = await res.text();
      return { status: res.status, contentType, events: [{ id: undefined, event: 'body', data: text }], ended: true };
    }
    const parser = new SseParser();
    const decoder = new TextDecoder();
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return { status: res.status, contentType, events, ended: true };
        events.push(...parser.push(decoder.decode(value, { stream: true })));
        if (opts.stopWhen?.(events)) {
          controller.abort();
          return { status: res.status, contentType, events, ended: false };
        }
      }
    } catch (err) {
      if (timedOut) {
        if (opts.allowTimeout) return { status: res.status, contentType, events, ended: false };
        throw new Error(`SSE read timed out after ${timeoutMs} ms with ${events.length} events: ${JSON.stringify(events.slice(-3))}`);
      }
      throw err;
    }
  } finally {
    clearTimeout(timer);
  }
}
