/**
 * Server-Sent Events over Koa, written to the response directly (not as a Koa body, which is sent only once
 * the route returns): `id`/`event`/`data` frames, heartbeats, cleanup on close, and a bounded buffer per
 * client:
 *
 * - frames sent in one turn of the event loop go out in one write;
 * - a frame is not queued while the client already holds more than `maxBufferBytes` unsent: the server
 *   ends the stream instead (after the complete frames before it), closes the connection once they are
 *   sent, and the client resumes with `Last-Event-ID`;
 * - producers that can wait (replays) pace themselves with `drained()`;
 * - a client that does not drain to the low-water mark within `sendTimeoutMs` while the server waits on
 *   it is ended the same way, and an ended stream whose client does not take its last bytes within
 *   another `sendTimeoutMs` is dropped.
 */
import type { Context } from 'koa';

/** Default of RESONANCE_STREAM_BUFFER_BYTES. */
export const DEFAULT_STREAM_BUFFER_BYTES = 1024 * 1024;
/** A replay writes while fewer than this many bytes (or half the cap, if smaller) are unsent. */
export const STREAM_LOW_WATER_BYTES = 64 * 1024;
/** Default of RESONANCE_STREAM_SEND_TIMEOUT_MS: how long a stream waits on its client (nginx's send_timeout, for a stream). */
export const DEFAULT_SEND_TIMEOUT_MS = 10_000;

export interface SseOptions {
  /** Unsent bytes a client may hold before the stream is ended (RESONANCE_STREAM_BUFFER_BYTES). */
  maxBufferBytes: number;
  /** How long the server waits for the client to drain to the low-water mark (RESONANCE_STREAM_SEND_TIMEOUT_MS). */
  sendTimeoutMs: number;
  heartbeatMs?: number;
  /** Told the size of every write to the socket (usage metering of bytes sent). */
  onWrite?: (bytes: number) => void;
}

/** One event as written on the stream: `id` (when given), `event`, one `data` line per line of `data`, a blank line. */
export function sseEvent(event: string, data: string, id?: string | number): string {
  let frame = '';
  if (id !== undefined) frame += `id: ${id}\n`;
  frame += `event: ${event}\n`;
  for (const line of data.split('\n')) frame += `data: ${line}\n`;
  return frame + '\n';
}

export interface SseStream {
  /** Queue one event. False when the stream is closed, or was just ended because the client is past its buffer. */
  send(event: string, data: string, id?: string | number): boolean;
  /** Queue one event made by sseEvent() (made once, it may go to many streams); as send(). */
  sendEvent(text: string): boolean;
  close(): void;
  readonly closed: boolean;
  /** True when the server ended the stream because the client did not keep up. */
  readonly overflowed: boolean;
  /** Bytes written but not yet sent to the client: a backed-up stream may skip (conflate) frames of which only the latest matters. */
  readonly backlog: number;
  /**
   * Resolves true once the client holds at most the low-water mark unsent (at once when it does), false
   * when the stream closed meanwhile or did not drain within `sendTimeoutMs` (the stream is then ended).
   */
  drained(): Promise<boolean>;
  /** End the stream of a client that did not keep up, as past its buffer (it resumes with Last-Event-ID). */
  cutOff(): void;
  onClose(fn: () => void): void;
}

export function openSse(ctx: Context, options: SseOptions): SseStream {
  const { maxBufferBytes, sendTimeoutMs, heartbeatMs = 15_000, onWrite } = options;
  const lowWater = Math.min(STREAM_LOW_WATER_BYTES, Math.floor(maxBufferBytes / 2));
  const { res } = ctx;
  const socket = ctx.req.socket;
  socket.setTimeout(0);
  socket.setNoDelay(true);
  socket.setKeepAlive(true);
  ctx.status = 200;
  ctx.set({ 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache, no-transform', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
  ctx.respond = false;
  res.flushHeaders();
  // A client that went away mid-write must not take the process down.
  res.on('error', () => undefined);
  const closers: Array<() => void> = [];
  const waiters = new Set<() => void>();
  let closed = false;
  let overflowed = false;
  // Frames of this turn, written together on the next tick (their UTF-16 length: the frames are ASCII but for rare names).
  let pending: string[] = [];
  let pendingBytes = 0;
  let flushQueued = false;
  const flush = (): void => {
    flushQueued = false;
    if (pending.length === 0 || res.writableEnded || res.destroyed) return;
    const chunk = pending.length === 1 ? pending[0]! : pending.join('');
    pending = [];
    pendingBytes = 0;
    res.write(chunk);
    onWrite?.(Buffer.byteLength(chunk));
  };
  // Unsent bytes: this turn's frames, then the response's and its socket's buffers (res.writableLength includes the socket's).
  const backlog = (): number => pendingBytes + res.writableLength;
  const close = (): void => {
    if (closed) return;
    closed = true;
    clearInterval(heartbeat);
    for (const fn of closers) fn();
    for (const wake of [...waiters]) wake();
    flush();
    if (!res.writableEnded && !res.destroyed) res.end();
  };
  /** End the stream of a client that does not keep up; its connection goes once the queued frames are sent. */
  const overflow = (): void => {
    if (closed) return;
    overflowed = true;
    close();
    res.once('finish', () => socket.end());
    const drop = setTimeout(() => socket.destroy(), sendTimeoutMs);
    drop.unref();
    socket.once('close', () => clearTimeout(drop));
  };
  const write = (frame: string): boolean => {
    if (closed) return false;
    // Past the cap nothing more is queued: the client resumes from the last complete frame it got.
    if (backlog() > maxBufferBytes) {
      overflow();
      return false;
    }
    pending.push(frame);
    pendingBytes += frame.length;
    if (!flushQueued) {
      flushQueued = true;
      process.nextTick(flush);
    }
    return true;
  };
  const heartbeat = setInterval(() => write(': heartbeat\n\n'), heartbeatMs);
  ctx.req.on('close', close);
  res.on('close', close);
  write('retry: 2000\n\n');
  return {
    send(event, data, id) {
      if (closed) return false;
      return write(sseEvent(event, data, id));
    },
    sendEvent: write,
    close,
    get closed() {
      return closed;
    },
    get overflowed() {
      return overflowed;
    },
    get backlog() {
      return backlog();
    },
    drained() {
      if (closed) return Promise.resolve(false);
      if (backlog() <= lowWater) return Promise.resolve(true);
      // What this turn queued goes out now: the socket may take it at once.
      flush();
      if (backlog() <= lowWater) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const check = (): void => {
          if (closed) done(false);
          else if (backlog() <= lowWater) done(true);
        };
        const done = (ok: boolean): void => {
          clearInterval(poll);
          clearTimeout(timeout);
          res.off('drain', check);
          socket.off('drain', check);
          waiters.delete(check);
          resolve(ok);
        };
        // 'drain' covers most of it; the poll covers the rest cheaply.
        res.on('drain', check);
        socket.on('drain', check);
        waiters.add(check);
        const poll = setInterval(check, 100);
        const timeout = setTimeout(() => {
          overflow();
          done(false);
        }, sendTimeoutMs);
      });
    },
    cutOff: overflow,
    onClose(fn) {
      closers.push(fn);
    },
  };
}
