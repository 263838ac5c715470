/**
 * Realtime test clients: REST calls with an API key (Api), a `ws` client that records every frame and its
 * close (Client), and an upgrade that must be refused (refused).
 */
import { decode, encode } from '@msgpack/msgpack';
import WebSocket from 'ws';
import { DEV_KEY, type Reply, request } from './server.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Frame = Record<string, any> & { type: string };

export interface Session {
  token: string;
  sessionId: string;
  websocketUrl: string;
  role: string;
}

export class Api {
  constructor(
    readonly url: string,
    /** The credential every call sends (X-Api-Key). */
    readonly key: string = DEV_KEY,
  ) {}

  call(method: string, path: string, body?: unknown): Promise<Reply<Frame>> {
    return request<Frame>(this.url, method, path, { 'x-api-key': this.key }, body);
  }

  async space(body: Record<string, unknown> = {}): Promise<{ id: string; version: number; epoch: number }> {
    const r = await this.call('POST', '/v1/spaces', { name: 'rt', basis: { primes: [2, 3, 5, 7, 11, 13, 17, 19] }, ...body });
    if (r.status !== 201) throw new Error(`create space: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json as unknown as { id: string; version: number; epoch: number };
  }

  async session(spaceId: string, role?: string): Promise<Session> {
    const r = await this.call('POST', `/v1/spaces/${spaceId}/sessions`, role ? { role } : {});
    if (r.status !== 201) throw new Error(`session: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json as unknown as Session;
  }
}

export interface OpenOptions {
  /** Subprotocols offered; default resonance.v1.json. */
  protocols?: string[];
  /** Token in ?token= instead of the Authorization header. */
  viaQuery?: boolean;
  /** The hello frame to send on open (false: none). Default {type: 'hello'}. */
  hello?: Frame | false;
}

export class Client {
  readonly frames: Frame[] = [];
  closeCode: number | null = null;
  closeReason = '';
  readonly closed: Promise<number>;
  private waiters: Array<() => void> = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const frame = (isBinary ? decode(data) : JSON.parse(data.toString('utf8'))) as Frame;
      (frame as { _binary?: boolean })._binary = isBinary;
      this.frames.push(frame);
      for (const w of this.waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        for (const w of this.waiters.splice(0)) w();
        resolve(code);
      }),
    );
  }

  static open(session: Session, options: OpenOptions = {}): Promise<Client> {
    const url = options.viaQuery ? `${session.websocketUrl}?token=${encodeURIComponent(session.token)}` : session.websocketUrl;
    const ws = new WebSocket(url, options.protocols ?? ['resonance.v1.json'], options.viaQuery ? {} : { headers: { Authorization: `Bearer ${session.token}` } });
    const client = new Client(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => {
        if (options.hello !== false) client.send(options.hello ?? { type: 'hello' });
        resolve(client);
      });
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  /** Open and wait for welcome and the start (a snapshot, or the replay up to the welcome's version). */
  static async started(session: Session, options: OpenOptions = {}): Promise<Client> {
    const c = await Client.open(session, options);
    const welcome = await c.waitFor('welcome', (f) => f.type === 'welcome');
    const lastVersion = options.hello ? (options.hello.lastVersion as number | undefined) : undefined;
    if (welcome.version !== lastVersion) {
      await c.waitFor('start', (f) => f.type === 'snapshot' || (f.type === 'delta' && f.toVersion >= welcome.version));
    }
    return c;
  }

  get binary(): boolean {
    return this.ws.protocol === 'resonance.v1.msgpack';
  }

  send(frame: unknown, as: 'json' | 'msgpack' = this.binary ? 'msgpack' : 'json'): void {
    this.ws.send(as === 'json' ? JSON.stringify(frame) : encode(frame));
  }

  of(type: string): Frame[] {
    return this.frames.filter((f) => f.type === type);
  }

  /** Resolves with the first frame matching `pred` (searching what already came, then waiting). */
  async waitFor(what: string, pred: (f: Frame) => boolean, timeoutMs = 10_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.frames.find(pred);
      if (hit) return hit;
      if (this.closeCode !== null) throw new Error(`closed (${this.closeCode} ${this.closeReason}) while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; last frames: ${JSON.stringify(this.frames.slice(-3)).slice(0, 600)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits until `n` frames match. */
  async waitCount(what: string, pred: (f: Frame) => boolean, n: number, timeoutMs = 10_000): Promise<Frame[]> {
    await this.waitFor(what, () => this.frames.filter(pred).length >= n, timeoutMs);
    return this.frames.filter(pred);
  }

  close(): Promise<number> {
    this.ws.close();
    return this.closed;
  }
}

/** An upgrade that must be refused: the HTTP answer the client got. */
export function refused(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; body: Frame }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => {
      ws.close();
      reject(new Error('the upgrade was accepted'));
    });
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) as Frame }));
    });
    ws.once('error', () => undefined);
  });
}

