/**
 * A worker thread of bench/fanout.ts: holds a share of the subscribers (half JSON, half MessagePack),
 * records the receive time of every delta per subscriber and checks that each one sees every version
 * exactly once and in order.
 *
 * The subscribers are a minimal WebSocket client on raw TCP (node:net), not the `ws` package: a load
 * generator must cost far less than the server it measures (with `ws`, the two subscriber threads took more
 * than one of this machine's two cores at 1000 subscribers). Per socket: the HTTP upgrade (subprotocol
 * resonance.v1.json or resonance.v1.msgpack, ?token=), then server frames parsed in place from the bytes
 * read (one static read buffer per thread via `onread`, no per-read allocation, no stream machinery).
 * Each message is classified by its `type` value's bytes (the type is always the first key): telemetry,
 * phases, pong and events are only counted; delta, snapshot, welcome, error and conflict frames are
 * decoded in full (JSON.parse / MessagePack decode). Anything that does not look as expected is decoded
 * in full too, so the fast path never hides a frame. Pings are answered, a close is answered and ends
 * the socket; fragmented messages are reassembled (the server does not fragment).
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { decode } from '@msgpack/msgpack';

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
      /** Frames the fast classification could not place (decoded in full instead); 0 expected. */
      unclassified: number;
      /** Protocol faults seen by the raw client (masked server frame, bad opcode, bad handshake...). */
      protocolErrors: number;
    };

const input = workerData as WorkerInput;
const now = (): number => performance.timeOrigin + performance.now();

/** Frame kinds, from the `type` value. */
const enum K {
  Telemetry,
  Phases,
  Delta,
  Snapshot,
  Welcome,
  Error,
  Conflict,
  Pong,
  Event,
  /** Not recognised from its first bytes: decoded in full. */
  Other,
}
const NAMES: Array<[K, Buffer]> = (
  [
    [K.Telemetry, 'telemetry'], [K.Phases, 'phases'], [K.Delta, 'delta'], [K.Snapshot, 'snapshot'], [K.Welcome, 'welcome'],
    [K.Error, 'error'], [K.Conflict, 'conflict'], [K.Pong, 'pong'], [K.Event, 'event'],
  ] as Array<[K, string]>
).map(([k, s]) => [k, Buffer.from(s, 'latin1')]);
const BY_TYPE: Record<string, K> = { telemetry: K.Telemetry, phases: K.Phases, delta: K.Delta, snapshot: K.Snapshot, welcome: K.Welcome, error: K.Error, conflict: K.Conflict, pong: K.Pong, event: K.Event };

/** `{"type":"` */
const JSON_HEAD = Buffer.from('{"type":"', 'latin1');
/** MessagePack fixstr "type" */
const MP_TYPE = Buffer.from([0xa4, 0x74, 0x79, 0x70, 0x65]);

function nameAt(data: Buffer, off: number, len: number): K {
  for (const [k, name] of NAMES) {
    if (name.length !== len) continue;
    let i = 0;
    while (i < len && data[off + i] === name[i]) i++;
    if (i === len) return k;
  }
  return K.Other;
}

/** The kind of a message from the bytes of its first key's value (`type`), without decoding it. */
function classify(data: Buffer, binary: boolean): K {
  if (!binary) {
    if (data.length < 12) return K.Other;
    for (let i = 0; i < 9; i++) if (data[i] !== JSON_HEAD[i]) return K.Other;
    let end = 9;
    while (end < data.length && end < 24 && data[end] !== 0x22) end++;
    return data[end] === 0x22 ? nameAt(data, 9, end - 9) : K.Other;
  }
  const h = data[0]!;
  const p = h >= 0x80 && h <= 0x8f ? 1 : h === 0xde ? 3 : h === 0xdf ? 5 : -1;
  if (p < 0 || data.length < p + 7) return K.Other;
  for (let i = 0; i < 5; i++) if (data[p + i] !== MP_TYPE[i]) return K.Other;
  const s = data[p + 5]!;
  if (s < 0xa0 || s > 0xbf) return K.Other;
  const len = s & 0x1f;
  return data.length >= p + 6 + len ? nameAt(data, p + 6, len) : K.Other;
}

interface Sub {
  socket: Socket;
  binary: boolean;
  /** Receive time of each version's delta (0: not received). */
  recvAt: Float64Array;
  /** Next version expected (welcome.version + 1, then +1 per delta); -1 before welcome. */
  next: number;
  welcome: number;
  closed: boolean;
  /** HTTP response bytes until the upgrade completes; null after. */
  handshake: Buffer | null;
  /** Bytes of an incomplete frame carried to the next read. */
  rest: Buffer | null;
  /** Fragments of a message in progress (opcode and payloads). */
  fragOpcode: number;
  frags: Buffer[] | null;
  /** Called on the first frame after the welcome (the start is on the wire), or with false on failure. */
  started: ((ok: boolean) => void) | null;
}

const subs: Sub[] = [];
let inWindow = false;
let telemetryInWindow = 0;
let deltasInWindow = 0;
let framesInWindow = 0;
let gaps = 0;
let resyncs = 0;
let errors = 0;
let unclassified = 0;
let protocolErrors = 0;

/** A masked client frame (RFC 6455 5.3): FIN, `opcode`, `payload` (< 126 bytes here or longer). */
function clientFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(head + 4 + n);
  out[0] = 0x80 | opcode;
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeUInt32BE(Math.floor(n / 2 ** 32), 2);
    out.writeUInt32BE(n >>> 0, 6);
  }
  const mask = randomBytes(4);
  mask.copy(out, head);
  for (let i = 0; i < n; i++) out[head + 4 + i] = payload[i]! ^ mask[i & 3]!;
  return out;
}

const HELLO_JSON = Buffer.from('{"type":"hello"}', 'utf8');
/** MessagePack {type: "hello"} */
const HELLO_MSGPACK = Buffer.from([0x81, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xa5, 0x68, 0x65, 0x6c, 0x6c, 0x6f]);

function onMessage(sub: Sub, data: Buffer, at: number): void {
  if (inWindow) framesInWindow++;
  let k = classify(data, sub.binary);
  if (k === K.Telemetry || k === K.Phases) {
    if (inWindow && k === K.Telemetry) telemetryInWindow++;
    return;
  }
  if (k === K.Pong || k === K.Event) return;
  const f = (sub.binary ? decode(data) : JSON.parse(data.toString('utf8'))) as {
    type: string; toVersion?: number; version?: number; snapshot?: { version: number };
  };
  if (k === K.Other) {
    unclassified++;
    k = BY_TYPE[f.type] ?? K.Other;
    if (k === K.Telemetry && inWindow) telemetryInWindow++;
  } else if (f.type !== NAMES.find(([n]) => n === k)![1].toString('latin1')) {
    // The fast classification disagrees with the decoded frame: it must not happen.
    protocolErrors++;
    k = BY_TYPE[f.type] ?? K.Other;
  }
  switch (k) {
    case K.Delta: {
      const v = f.toVersion!;
      if (inWindow) deltasInWindow++;
      if (v !== sub.next) gaps++;
      sub.next = v + 1;
      if (v < sub.recvAt.length) sub.recvAt[v] = at;
      break;
    }
    case K.Welcome:
      sub.welcome = f.version!;
      sub.next = f.version! + 1;
      break;
    case K.Snapshot:
      // The start's snapshot has the welcome's version; any later one is a resync (the client fell behind).
      if (f.snapshot!.version !== sub.welcome || sub.next !== sub.welcome + 1) resyncs++;
      sub.next = f.snapshot!.version + 1;
      break;
    case K.Error:
    case K.Conflict:
      errors++;
      break;
    default:
      break;
  }
  if (sub.started && sub.welcome >= 0 && k !== K.Welcome) {
    // welcome seen: the start (snapshot) follows; the subscriber is started on the first frame after it
    const s = sub.started;
    sub.started = null;
    s(true);
  }
}

function protocolError(sub: Sub): void {
  protocolErrors++;
  sub.socket.destroy();
}

/** Parse every complete frame of `buf` (from `off`); keep the incomplete tail (copied) for the next read. */
function onFrames(sub: Sub, buf: Buffer, at: number): void {
  let off = 0;
  const end = buf.length;
  while (end - off >= 2) {
    const b0 = buf[off]!;
    const b1 = buf[off + 1]!;
    if (b1 & 0x80) return protocolError(sub); // server frames are never masked
    let len = b1 & 0x7f;
    let head = 2;
    if (len === 126) {
      if (end - off < 4) break;
      len = buf.readUInt16BE(off + 2);
      head = 4;
    } else if (len === 127) {
      if (end - off < 10) break;
      len = buf.readUInt32BE(off + 2) * 2 ** 32 + buf.readUInt32BE(off + 6);
      head = 10;
    }
    if (end - off < head + len) break;
    const payload = buf.subarray(off + head, off + head + len);
    off += head + len;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if (opcode === 0x1 || opcode === 0x2) {
      if (sub.frags || (opcode === 0x1) === sub.binary) return protocolError(sub);
      if (fin) onMessage(sub, payload, at);
      else {
        sub.fragOpcode = opcode;
        sub.frags = [Buffer.from(payload)];
      }
    } else if (opcode === 0x0) {
      if (!sub.frags) return protocolError(sub);
      sub.frags.push(Buffer.from(payload));
      if (fin) {
        const whole = Buffer.concat(sub.frags);
        sub.frags = null;
        onMessage(sub, whole, at);
      }
    } else if (opcode === 0x9) {
      sub.socket.write(clientFrame(0xa, payload));
    } else if (opcode === 0xa) {
      // unsolicited pong: nothing to do
    } else if (opcode === 0x8) {
      // Echo the status code and end.
      sub.socket.end(clientFrame(0x8, payload.subarray(0, Math.min(2, payload.length))));
      sub.closed = true;
      return;
    } else return protocolError(sub);
  }
  sub.rest = off < end ? Buffer.from(buf.subarray(off, end)) : null;
}

/** Bytes read on this thread's sockets (one shared buffer: every read is handled before the next). */
const readBuffer = Buffer.allocUnsafe(256 * 1024);

function onRead(sub: Sub, nread: number, buf: Buffer): void {
  const at = now();
  let chunk = buf.subarray(0, nread);
  if (sub.handshake) {
    const hs = Buffer.concat([sub.handshake, chunk]);
    const endOfHead = hs.indexOf('\r\n\r\n');
    if (endOfHead < 0) {
      if (hs.length > 16384) return protocolError(sub);
      sub.handshake = hs;
      return;
    }
    sub.handshake = null;
    if (!checkHandshake(sub, hs.subarray(0, endOfHead).toString('latin1'))) {
      sub.socket.destroy();
      return;
    }
    sub.socket.write(clientFrame(sub.binary ? 0x2 : 0x1, sub.binary ? HELLO_MSGPACK : HELLO_JSON));
    chunk = hs.subarray(endOfHead + 4);
    if (chunk.length === 0) return;
  }
  if (sub.rest) {
    chunk = Buffer.concat([sub.rest, chunk]);
    sub.rest = null;
  }
  onFrames(sub, chunk, at);
}

const keys = new WeakMap<Sub, string>();

function checkHandshake(sub: Sub, head: string): boolean {
  const lines = head.split('\r\n');
  if (!/^HTTP\/1\.1 101 /.test(lines[0] ?? '')) return false;
  const h = new Map<string, string>();
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) h.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
  }
  const accept = createHash('sha1').update(keys.get(sub)! + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  if (h.get('sec-websocket-accept') !== accept) {
    protocolErrors++;
    return false;
  }
  if (h.get('sec-websocket-protocol') !== (sub.binary ? 'resonance.v1.msgpack' : 'resonance.v1.json')) {
    protocolErrors++;
    return false;
  }
  return true;
}

function open(session: { url: string; token: string }, binary: boolean): Promise<Sub | null> {
  return new Promise((resolve) => {
    const url = new URL(session.url);
    const key = randomBytes(16).toString('base64');
    let sub: Sub;
    const socket = connect({
      host: url.hostname,
      port: Number(url.port || 80),
      noDelay: true,
      onread: { buffer: readBuffer, callback: (n: number, buf: Uint8Array) => {
        onRead(sub, n, buf as Buffer);
        return true;
      } },
    });
    sub = {
      socket, binary, recvAt: new Float64Array(input.maxVersion + 1), next: -1, welcome: -1, closed: false,
      handshake: Buffer.alloc(0), rest: null, fragOpcode: 0, frags: null,
      started: (ok) => resolve(ok ? sub : null),
    };
    keys.set(sub, key);
    socket.once('connect', () => {
      socket.write(
        `GET ${url.pathname}?token=${encodeURIComponent(session.token)} HTTP/1.1\r\n` +
          `Host: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
          `Sec-WebSocket-Protocol: ${binary ? 'resonance.v1.msgpack' : 'resonance.v1.json'}\r\n\r\n`,
      );
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      sub.closed = true;
      if (sub.started) {
        const s = sub.started;
        sub.started = null;
        s(false);
      }
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
    if (unclassified > 0 || protocolErrors > 0) {
      process.stderr.write(`fanout worker: ${unclassified} frames decoded in full (not classified by their first bytes), ${protocolErrors} protocol errors (counted as errors)\n`);
    }
    const out: FromWorker = {
      kind: 'report', latencies: latencies.subarray(0, n), received, telemetryInWindow, deltasInWindow, framesInWindow, gaps, resyncs, errors: errors + protocolErrors,
      closedEarly: subs.filter((s) => s.closed).length, welcomeVersions: [...new Set(subs.map((s) => s.welcome))], unclassified, protocolErrors,
    };
    parentPort!.postMessage(out, [out.latencies.buffer as ArrayBuffer]);
  } else if (msg.cmd === 'close') {
    for (const s of subs) s.socket.destroy();
    setTimeout(() => process.exit(0), 50);
  }
});
