/**
 * A worker thread of bench/fanout.ts: holds a share of the subscribers (WebSocket clients, half JSON and
 * half MessagePack), records the receive time of every delta per subscriber and checks that each one
 * sees contiguous versions. Only delta frames are fully decoded; other frames are classified by their
 * first bytes (the frame type is always the first key), so the clients stay cheap next to the server.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { decode } from '@msgpack/msgpack';
import WebSocket from 'ws';

export interface WorkerInput {
  sessions: Array<{ url: string; token: string }>;
  /** Largest version the run can reach (sizes the receive-time tables). */
  maxVersion: number;
  /** Connections opened at once. */
  openConcurrency: number;
}

export type ToWorker = { cmd: 'open' } | { cmd: 'window'; on: boolean } | { cmd: 'report'; sentAt: Float64Array } | { cmd: 'close' };
export type FromWorker =
  | { kind: 'opened'; ms: number; failures: number }
  | {
      kind: 'report';
      latencies: Float64Array;
      received: number;
      telemetryInWindow: number;
      deltasInWindow: number;
      framesInWindow: number;
      gaps: number;
      resyncs: number;
      errors: number;
      closedEarly: number;
      welcomeVersions: number[];
    };

const input = workerData as WorkerInput;
const now = (): number => performance.timeOrigin + performance.now();

interface Sub {
  ws: WebSocket;
  binary: boolean;
  /** Receive time of each version's delta (0: not received). */
  recvAt: Float64Array;
  /** Next version expected (welcome.version + 1, then +1 per delta); -1 before welcome. */
  next: number;
  welcome: number;
  closed: boolean;
}

const subs: Sub[] = [];
let inWindow = false;
let telemetryInWindow = 0;
let deltasInWindow = 0;
let framesInWindow = 0;
let gaps = 0;
let resyncs = 0;
let errors = 0;

const T = 0x74; // 't'
const D = 0x64; // 'd'
const W = 0x77; // 'w'
const S = 0x73; // 's'

function onMessage(sub: Sub, data: Buffer): void {
  const at = now();
  // JSON: {"type":"<name>"...: the name starts at byte 9. MessagePack: fixmap, "type", fixstr <name>: byte 7.
  const c = sub.binary ? data[7] : data[9];
  if (inWindow) framesInWindow++;
  if (c === T) {
    if (inWindow) telemetryInWindow++;
    return;
  }
  if (c === D) {
    const f = (sub.binary ? decode(data) : JSON.parse(data.toString('utf8'))) as { toVersion: number };
    if (inWindow) deltasInWindow++;
    if (f.toVersion !== sub.next) gaps++;
    sub.next = f.toVersion + 1;
    if (f.toVersion < sub.recvAt.length) sub.recvAt[f.toVersion] = at;
    return;
  }
  const f = (sub.binary ? decode(data) : JSON.parse(data.toString('utf8'))) as { type: string; version?: number; snapshot?: { version: number } };
  if (c === W && f.type === 'welcome') {
    sub.welcome = f.version!;
    sub.next = f.version! + 1;
  } else if (c === S && f.type === 'snapshot') {
    // The start's snapshot has the welcome's version; any later one is a resync (the client fell behind).
    if (f.snapshot!.version !== sub.welcome || sub.next !== sub.welcome + 1) resyncs++;
    sub.next = f.snapshot!.version + 1;
  } else if (f.type === 'error' || f.type === 'conflict') errors++;
}

function open(session: { url: string; token: string }, binary: boolean): Promise<Sub | null> {
  return new Promise((resolve) => {
    const ws = new WebSocket(session.url, [binary ? 'resonance.v1.msgpack' : 'resonance.v1.json'], {
      headers: { Authorization: `Bearer ${session.token}` },
      perMessageDeflate: false,
      skipUTF8Validation: true,
    });
    const sub: Sub = { ws, binary, recvAt: new Float64Array(input.maxVersion + 1), next: -1, welcome: -1, closed: false };
    let started = false;
    ws.on('message', (data: Buffer) => {
      onMessage(sub, data);
      if (!started && sub.next >= 0 && sub.welcome >= 0 && data !== undefined) {
        // welcome seen: the start (snapshot) follows; resolve on the first frame after the welcome
        if ((sub.binary ? data[7] : data[9]) !== W) {
          started = true;
          resolve(sub);
        }
      }
    });
    ws.once('open', () => ws.send(binary ? Buffer.from([0x81, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xa5, 0x68, 0x65, 0x6c, 0x6c, 0x6f]) : '{"type":"hello"}', { binary }));
    ws.once('error', () => {
      if (!started) resolve(null);
    });
    ws.on('close', () => {
      sub.closed = true;
      if (!started) resolve(null);
    });
  });
}

async function openAll(): Promise<{ ms: number; failures: number }> {
  const t0 = now();
  let failures = 0;
  let i = 0;
  const lanes = Array.from({ length: input.openConcurrency }, async () => {
    while (i < input.sessions.length) {
      const k = i++;
      const sub = await open(input.sessions[k]!, k % 2 === 1);
      if (sub) subs.push(sub);
      else failures++;
    }
  });
  await Promise.all(lanes);
  return { ms: now() - t0, failures };
}

parentPort!.on('message', (msg: ToWorker) => {
  if (msg.cmd === 'open') {
    void openAll().then((r) => parentPort!.postMessage({ kind: 'opened', ...r } satisfies FromWorker));
  } else if (msg.cmd === 'window') {
    inWindow = msg.on;
  } else if (msg.cmd === 'report') {
    const sentAt = msg.sentAt;
    let count = 0;
    let received = 0;
    for (let v = 0; v < sentAt.length; v++) if (sentAt[v]! > 0) count++;
    const latencies = new Float64Array(count * subs.length);
    let n = 0;
    for (const sub of subs) {
      for (let v = 0; v < sentAt.length; v++) {
        if (!(sentAt[v]! > 0)) continue;
        const r = sub.recvAt[v]!;
        if (r > 0) {
          latencies[n++] = r - sentAt[v]!;
          received++;
        }
      }
    }
    const out: FromWorker = {
      kind: 'report', latencies: latencies.subarray(0, n), received, telemetryInWindow, deltasInWindow, framesInWindow, gaps, resyncs, errors,
      closedEarly: subs.filter((s) => s.closed).length, welcomeVersions: [...new Set(subs.map((s) => s.welcome))],
    };
    parentPort!.postMessage(out, [out.latencies.buffer as ArrayBuffer]);
  } else if (msg.cmd === 'close') {
    for (const s of subs) s.ws.terminate();
    setTimeout(() => process.exit(0), 50);
  }
});
