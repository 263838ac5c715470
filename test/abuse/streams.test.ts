/**
 * Streams against clients that do not keep up, on the real server process:
 *
 * - the HQE SSE stream holds a bounded buffer per client: ten raw TCP clients that send the GET and never
 *   read cost the server well under 100 MB, and the server ends their responses;
 * - a client cut off that way resumes with Last-Event-ID and gets exactly the events after it;
 * - a space resume (WebSocket hello.lastVersion, SSE Last-Event-ID) replays deltas only within the
 *   replay bounds (count and bytes of the stored ops); past them it gets a snapshot.
 */
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DEMO_ROOM, DEV_KEY, readSse, SseParser, type SseEvent, sleep, startServer, type TestServer } from '../helpers/server.js';

// Small enough to make the bounds bite after a few dozen deltas.
const REPLAY_MAX_DELTAS = 50;
/** One shift_phase op as stored: `[{"op":"shift_phase","path":"/state/phases/1","value":0.001}]`. */
const OPS = [{ op: 'shift_phase', path: '/state/phases/1', value: 0.001 }];
const OPS_BYTES = Buffer.byteLength(JSON.stringify(OPS));
const SEND_TIMEOUT_MS = 3000;
/** 30 deltas' ops fit, 31 do not. */
const REPLAY_MAX_BYTES = 30 * OPS_BYTES + Math.floor(OPS_BYTES / 2);

let srv: TestServer;

beforeAll(async () => {
  srv = await startServer({
    env: {
      RESONANCE_REPLAY_MAX_DELTAS: String(REPLAY_MAX_DELTAS),
      RESONANCE_REPLAY_MAX_BYTES: String(REPLAY_MAX_BYTES),
      // Clients that stall a paced replay are ended this long after they stop taking bytes.
      RESONANCE_STREAM_SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS),
      // The busy session writes a few MB/s of events: it must outlive the test, not meet its storage cap.
      RESONANCE_QUOTA_SESSION_STORAGE_BYTES: String(2 ** 40),
      RESONANCE_QUOTA_STORAGE_BYTES: String(2 ** 40),
    },
  });
});
afterAll(async () => {
  await srv?.stop();
});

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(srv.url + path, {
    method,
    signal: AbortSignal.timeout(20_000),
    headers: { 'x-api-key': DEV_KEY, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

function firstPrimes(n: number): number[] {
  const out: number[] = [];
  for (let x = 2; out.length < n; x++) if (out.every((p) => x % p !== 0)) out.push(x);
  return out;
}

/** A session that writes an event (snapshot and metrics) every step for far longer than the test runs. */
const BUSY_SESSION = {
  primes: firstPrimes(64),
  schedule: { steps: 1_000_000, dt: 0.05, plateauEps: 0 },
  observables: { snapshotsInterval: 1, metricsInterval: 1, recordAmplitudes: true, recordPhases: true },
  seed: 7,
};

/** A raw HTTP client that sends the GET and reads nothing until told to; then everything to the end. */
class NonReader {
  private readonly chunks: Buffer[] = [];
  private readonly ended: Promise<void>;
  private constructor(readonly socket: Socket) {
    socket.pause();
    socket.on('data', (chunk: Buffer) => this.chunks.push(chunk));
    // Whichever comes: the server's FIN ('end'), or the connection dropped ('close', after an error or not).
    this.ended = new Promise((resolve) => {
      socket.once('end', () => resolve());
      socket.once('close', () => resolve());
    });
    socket.on('error', () => undefined);
  }

  static async open(url: string, path: string): Promise<NonReader> {
    const { hostname, port } = new URL(url);
    const socket = connect({ host: hostname, port: Number(port) });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nX-Api-Key: ${DEV_KEY}\r\nAccept: text/event-stream\r\n\r\n`);
    return new NonReader(socket);
  }

  /** Read from now on; true when the server ended the stream within `timeoutMs`. */
  async readToEnd(timeoutMs: number): Promise<boolean> {
    this.socket.resume();
    return Promise.race([this.ended.then(() => true), sleep(timeoutMs).then(() => false)]);
  }

  /** The complete events of the response body (chunked transfer encoding), in order. */
  events(): { status: number; events: SseEvent[] } {
    const raw = Buffer.concat(this.chunks);
    const headEnd = raw.indexOf('\r\n\r\n');
    const status = Number(/^HTTP\/1\.1 (\d+)/.exec(raw.subarray(0, headEnd).toString('latin1'))?.[1]);
    const body: Buffer[] = [];
    for (let at = headEnd + 4; ; ) {
      const lineEnd = raw.indexOf('\r\n', at);
      if (lineEnd < 0) break;
      const size = parseInt(raw.subarray(at, lineEnd).toString('latin1'), 16);
      if (!Number.isFinite(size) || size === 0 || lineEnd + 2 + size > raw.length) {
        // A cut-off chunk still holds complete frames at its start.
        if (Number.isFinite(size) && size > 0) body.push(raw.subarray(lineEnd + 2));
        break;
      }
      body.push(raw.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
    return { status, events: new SseParser().push(Buffer.concat(body).toString('utf8')) };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

describe('HQE stream backpressure', () => {
  let sessionId = '';
  const clients: NonReader[] = [];

  afterAll(async () => {
    for (const c of clients) c.destroy();
    if (sessionId) await call('DELETE', `/v1/hqe/sessions/${sessionId}`);
  });

  it('10 clients that never read add < 100 MB RSS on a busy session, and the server ends their streams', async () => {
    const created = await call('POST', '/v1/hqe/sessions', BUSY_SESSION);
    expect(created.status).toBe(201);
    sessionId = String(created.json.id);
    // Let the session get busy, so the baseline holds what the session itself costs.
    await sleep(3000);
    const before = await rssBytes(srv.proc.pid!);
    for (let i = 0; i < 10; i++) clients.push(await NonReader.open(srv.url, `/v1/hqe/sessions/${sessionId}/stream`));
    let peak = 0;
    // Clients live on the session are ended once past their buffer; those that stalled a paced replay
    // once the send timeout passes.
    for (let t = 0; t < 10; t++) {
      await sleep(1000);
      peak = Math.max(peak, await rssBytes(srv.proc.pid!));
    }
    const growth = peak - before;
    expect(growth, `RSS ${(before / 2 ** 20).toFixed(0)} MB -> peak ${(peak / 2 ** 20).toFixed(0)} MB`).toBeLessThan(100 * 2 ** 20);

    const ended = await Promise.all(clients.map((c) => c.readToEnd(15_000)));
    expect(ended, clients.map((c) => `${c.events().events.length} events`).join(', ')).toEqual(Array(10).fill(true));
    for (const c of clients) {
      const { status, events } = c.events();
      expect(status).toBe(200);
      expect(events.length).toBeGreaterThan(0);
    }
    // The session was busy all along: the streams had far more than a buffer's worth to send.
    const session = await call('GET', `/v1/hqe/sessions/${sessionId}`);
    expect(session.json.status).toBe('running');
    expect(Number(session.json.step)).toBeGreaterThan(1000);
  }, 90_000);

  it('a cut-off client resumes with Last-Event-ID: exactly the events after it, no gap, no duplicate', async () => {
    expect(clients.length).toBe(10);
    const { events: got } = clients[0]!.events();
    const last = got[got.length - 1]!;
    expect(last.id).toBeDefined();
    const headers = { 'x-api-key': DEV_KEY };
    const url = `${srv.url}/v1/hqe/sessions/${sessionId}/stream`;
    const resumed = await readSse(url, { ...headers, 'Last-Event-ID': last.id! }, { stopWhen: (ev) => ev.length >= 200, timeoutMs: 30_000 });
    expect(resumed.events.length).toBeGreaterThanOrEqual(200);
    // The store's order, read from a point inside what the cut-off client got.
    const overlap = Math.min(20, got.length);
    const from = got[got.length - 1 - overlap]?.id ?? '0';
    const truth = await readSse(url, { ...headers, 'Last-Event-ID': from }, { stopWhen: (ev) => ev.length >= overlap + 200, timeoutMs: 30_000 });
    const key = (e: SseEvent): string => `${e.id}|${e.event}|${e.data}`;
    expect(truth.events.slice(0, overlap).map(key)).toEqual(got.slice(-overlap).map(key));
    expect(resumed.events.slice(0, 200).map(key)).toEqual(truth.events.slice(overlap, overlap + 200).map(key));
    // And every step of the session is there once: one metrics event per step (metricsInterval 1).
    const steps = [...got, ...resumed.events].filter((e) => e.event === 'metrics').map((e) => (JSON.parse(e.data) as { step: number }).step);
    expect(steps.length).toBeGreaterThan(100);
    for (let i = 1; i < steps.length; i++) expect(steps[i], `metrics step after ${steps[i - 1]}`).toBe(steps[i - 1]! + 1);
  }, 90_000);
});

describe('space resume bounds', () => {
  let spaceId = '';
  let version = 0;

  beforeAll(async () => {
    const created = await call('POST', '/v1/spaces', DEMO_ROOM);
    expect(created.status).toBe(201);
    spaceId = String(created.json.id);
    version = Number(created.json.version);
    // More deltas than the count bound (shift_phase is rebased: fromVersion may lag).
    for (let i = 0; i < REPLAY_MAX_DELTAS + 10; i++) {
      const r = await call('POST', `/v1/spaces/${spaceId}/deltas`, { fromVersion: version, ops: OPS });
      expect(r.status).toBe(200);
      version = Number(r.json.toVersion);
    }
  });

  /** welcome, then the first `count` delta or snapshot frames after it (the start: a replay, or a snapshot). */
  async function helloStart(lastVersion: number, count: number): Promise<{ welcome: Record<string, unknown>; start: Array<Record<string, unknown>> }> {
    const r = await call('POST', `/v1/spaces/${spaceId}/sessions`, { role: 'reader' });
    expect(r.status).toBe(201);
    const ws = new WebSocket(`${String(r.json.websocketUrl)}?token=${encodeURIComponent(String(r.json.token))}`, 'resonance.v1.json');
    const frames: Array<Record<string, unknown>> = [];
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no start within 10 s: ${JSON.stringify(frames.slice(0, 3))}`)), 10_000);
        ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', lastVersion })));
        ws.on('error', reject);
        ws.on('message', (data: Buffer) => {
          const frame = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
          if (frame.type === 'telemetry' || frame.type === 'event') return;
          frames.push(frame);
          if (frames.length > count) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
    } finally {
      ws.close();
    }
    expect(frames[0]!.type).toBe('welcome');
    return { welcome: frames[0]!, start: frames.slice(1) };
  }

  async function sseStart(lastVersion: number, count: number): Promise<SseEvent[]> {
    const read = await readSse(`${srv.url}/v1/spaces/${spaceId}/telemetry`, { 'x-api-key': DEV_KEY, 'Last-Event-ID': String(lastVersion) }, {
      stopWhen: (ev) => ev.filter((e) => e.event === 'delta' || e.event === 'snapshot').length >= count,
      timeoutMs: 10_000,
    });
    expect(read.events[0]!.event).toBe('welcome');
    return read.events.filter((e) => e.event === 'delta' || e.event === 'snapshot');
  }

  it('WebSocket hello {lastVersion} past the count or bytes bound gets welcome + snapshot; within both, the exact deltas', async () => {
    // 59 deltas: past the count bound; 40: within it, but their ops are past the bytes bound.
    for (const lastVersion of [1, version - 40]) {
      const { welcome, start } = await helloStart(lastVersion, 1);
      expect(start[0]!.type, `lastVersion ${lastVersion}`).toBe('snapshot');
      expect((start[0]!.snapshot as { version: number }).version).toBe(welcome.version);
      expect(welcome.version).toBe(version);
    }
    // 30 deltas: within both bounds.
    const { welcome, start } = await helloStart(version - 30, 30);
    expect(welcome.version).toBe(version);
    expect(start.slice(0, 30).map((f) => [f.type, f.toVersion])).toEqual(Array.from({ length: 30 }, (_, i) => ['delta', version - 29 + i]));
  }, 30_000);

  it('SSE Last-Event-ID on /telemetry follows the same bounds', async () => {
    for (const lastVersion of [1, version - 40]) {
      const start = await sseStart(lastVersion, 1);
      expect(start[0]!.event, `Last-Event-ID ${lastVersion}`).toBe('snapshot');
      expect((JSON.parse(start[0]!.data) as { version: number }).version).toBe(version);
    }
    const start = await sseStart(version - 30, 30);
    expect(start.slice(0, 30).map((e) => [e.event, Number(e.id)])).toEqual(Array.from({ length: 30 }, (_, i) => ['delta', version - 29 + i]));
  }, 30_000);
});
