/** Server-Sent Events over Koa: a stream body, `id`/`event`/`data` frames, heartbeats, cleanup on close. */
import { PassThrough } from 'node:stream';
import type { Context } from 'koa';

export interface SseStream {
  send(event: string, data: string, id?: string | number): void;
  close(): void;
  readonly closed: boolean;
  /** Bytes written but not yet sent to the client: a backed-up stream may skip (conflate) frames of which only the latest matters. */
  readonly backlog: number;
  onClose(fn: () => void): void;
}

export function openSse(ctx: Context, heartbeatMs = 15_000): SseStream {
  ctx.req.socket.setTimeout(0);
  ctx.req.socket.setNoDelay(true);
  ctx.req.socket.setKeepAlive(true);
  ctx.status = 200;
  ctx.set({ 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache, no-transform', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
  const stream = new PassThrough();
  ctx.body = stream;
  const closers: Array<() => void> = [];
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    clearInterval(heartbeat);
    for (const fn of closers) fn();
    stream.end();
  };
  const heartbeat = setInterval(() => stream.write(': heartbeat\n\n'), heartbeatMs);
  ctx.req.on('close', close);
  stream.write('retry: 2000\n\n');
  return {
    send(event, data, id) {
      if (closed) return;
      let frame = '';
      if (id !== undefined) frame += `id: ${id}\n`;
      frame += `event: ${event}\n`;
      for (const line of data.split('\n')) frame += `data: ${line}\n`;
      stream.write(frame + '\n');
    },
    close,
    get closed() {
      return closed;
    },
    get backlog() {
      return stream.readableLength + stream.writableLength + ctx.res.writableLength + (ctx.req.socket.writableLength ?? 0);
    },
    onClose(fn) {
      closers.push(fn);
    },
  };
}
