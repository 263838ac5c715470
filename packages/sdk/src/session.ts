/**
 * A live space session over WebSocket: frames of the realtime protocol (MessagePack when the server offers
 * it, else JSON), the space's version, deltas applied to a local snapshot, proposals that resolve with
 * their accepted version, and automatic reconnection with jittered exponential backoff that resumes from
 * the last version seen (the server replays the missed deltas, or sends a snapshot).
 */
import { decode, encode } from '@msgpack/msgpack';
import { ConflictError, ConnectionLostError, type Problem, ResonanceError } from './errors.js';
import { errorFrom, type Http } from './http.js';
import {
  CLOSE_STATUS, type ClientFrame, type Delta, type DeltaProposal, type Encoding, FINAL_CLOSE_CODES, type Phases, type Role, type ServerFrame,
  type SpaceEvent, type SpaceSnapshot, SUBPROTOCOL, SUBPROTOCOLS, type SubscriptionKind, type Telemetry,
} from './protocol.js';
import type { SessionToken } from './types.js';

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ConflictInfo {
  expectedFrom: number;
  actual: number;
  code: string;
  detail: string;
}

export interface SessionEvents {
  telemetry: Telemetry;
  delta: Delta;
  snapshot: SpaceSnapshot;
  event: SpaceEvent;
  conflict: ConflictInfo;
  phases: Phases;
  state: ConnectionState;
  error: ResonanceError;
}

export interface OpenOptions {
  role?: Role;
  displayName?: string;
  /** Preferred encoding; MessagePack (the default) falls back to JSON when the server does not offer it. */
  encoding?: Encoding;
  /** What to receive; default telemetry, deltas and events. */
  subscribe?: SubscriptionKind[];
  /** Backoff of reconnection attempts (ms): base x 2^attempt, capped, times a random factor in [0.5, 1). */
  reconnect?: { baseMs?: number; maxMs?: number };
}

/** The constructor the session uses: the browser's WebSocket, or `ws` in Node. */
export type WebSocketLike = new (url: string, protocols?: string | string[]) => WebSocket;

interface PendingProposal {
  fromVersion: number;
  resolve: (version: number) => void;
  reject: (err: Error) => void;
}


export class LiveSession {
  /** The space's version as this session knows it: every delta up to it has been received. -1 before the first. */
  version = -1;
  epoch = 0;
  /** The space's state at `version` (phases and parameters kept up to date from deltas). */
  snapshot: SpaceSnapshot | null = null;
  state: ConnectionState = 'connecting';
  encoding: Encoding = 'json';
  private ws: WebSocket | null = null;
  private readonly listeners = new Map<keyof SessionEvents, Set<(value: never) => void>>();
  private readonly pending = new Map<string, PendingProposal>();
  private nextRequest = 1;
  private attempt = 0;
  private closedByUser = false;
  private tokenExpiresAt: number;
  private opened: { resolve: () => void; reject: (err: Error) => void } | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  /** The last error frame of the current connection that answered no request: why the server is closing it. */
  private closingError: ResonanceError | null = null;

  constructor(
    private readonly http: Http,
    private readonly WS: WebSocketLike,
    private token: SessionToken,
    private readonly options: OpenOptions,
    /** A new token for this session's space and role (the client's key, or its auth endpoint). */
    private readonly renew: () => Promise<SessionToken>,
  ) {
    this.tokenExpiresAt = Date.now() + token.expiresIn * 1000;
  }

  get spaceId(): string {
    return this.token.spaceId;
  }

  get sessionId(): string {
    return this.token.sessionId;
  }

  get role(): Role {
    return this.token.role;
  }

  on<K extends keyof SessionEvents>(name: K, fn: (value: SessionEvents[K]) => void): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(fn as (value: never) => void);
    return () => set.delete(fn as (value: never) => void);
  }

  /** Resolves once the session is welcomed and holds the space's state. */
  start(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.opened = { resolve, reject };
      this.connect();
    });
  }

  /**
   * Propose a delta; resolves with the version the server gave it. A refusal because the space moved on
   * rejects with ConflictError once the session holds a fresh snapshot; other refusals with ResonanceError.
   */
  proposeDelta(delta: DeltaProposal): Promise<number> {
    if (this.state === 'closed') return Promise.reject(new ResonanceError(0, 'session_closed', 'the session is closed'));
    if (!this.ws || this.ws.readyState !== 1) return Promise.reject(new ConnectionLostError('not connected; wait for state "open"'));
    const requestId = `r${this.nextRequest++}`;
    return new Promise<number>((resolve, reject) => {
      this.pending.set(requestId, { fromVersion: delta.fromVersion, resolve, reject });
      this.send({ type: 'propose_delta', requestId, delta });
    });
  }

  /** Replace what this session receives. */
  subscribe(kinds: SubscriptionKind[]): void {
    this.options.subscribe = kinds;
    if (this.ws?.readyState === 1) this.send({ type: 'subscribe', kinds });
  }

  close(): void {
    this.closedByUser = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.ws?.close(1000, 'client closed');
    this.setState('closed');
    this.failPending(new ResonanceError(0, 'session_closed', 'the session was closed'));
  }

  // ---- connection ----

  private connect(): void {
    const url = `${this.token.websocketUrl}?token=${encodeURIComponent(this.token.token)}`;
    const protocols = this.options.encoding === 'json' ? [SUBPROTOCOL.json] : [SUBPROTOCOL.msgpack, SUBPROTOCOL.json];
    const ws = new this.WS(url, protocols);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.closingError = null;
    let welcomed = false;
    // An upgrade the server refused with problem+json (401, 403, 404, 409, 503). Browsers hide that
    // answer; the `ws` package of Node shows it, and the session fails with it as a REST call would.
    let refusal: ResonanceError | null = null;
    onRefusedUpgrade(ws, (status, body) => {
      const err = errorFrom(status, body);
      refusal = new ResonanceError(err.status, err.code, `the server refused the realtime connection: ${withStatus(err.status, err.code, err.message)}`, err.problem);
    });
    ws.onopen = () => {
      this.encoding = SUBPROTOCOLS.get(ws.protocol) ?? 'json';
      this.send({ type: 'hello', version: 1, sessionId: this.token.sessionId, ...(this.version >= 0 ? { lastVersion: this.version } : {}) });
      if (this.options.subscribe) this.send({ type: 'subscribe', kinds: this.options.subscribe });
    };
    ws.onmessage = (ev: MessageEvent) => {
      let frame: ServerFrame;
      try {
        frame = (typeof ev.data === 'string' ? JSON.parse(ev.data) : decode(new Uint8Array(ev.data as ArrayBuffer))) as ServerFrame;
      } catch {
        return;
      }
      if (frame.type === 'welcome') {
        welcomed = true;
        this.attempt = 0;
      }
      this.handle(frame);
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.failPending(new ConnectionLostError());
      if (this.closedByUser) return;
      const starting = this.opened !== null;
      const said = this.closingError;
      const err = refusal ?? (ev.code >= 4000 || FINAL_CLOSE_CODES.has(ev.code) ? this.closeError(ev) : null);
      // While open() waits, a refusal ends it (the caller learns why at once) unless waiting may help.
      const final = refusal !== null
        ? starting ? refusal.status < 500 && refusal.status !== 429 : FINAL_REFUSALS.has(refusal.status) && refusal.code !== 'quota_exceeded'
        : FINAL_CLOSE_CODES.has(ev.code) || (starting && ev.code >= 4000);
      if (err && final) {
        this.setState('closed');
        this.opened?.reject(err);
        this.opened = null;
        if (err !== said) this.emit('error', err);
        return;
      }
      if (err && err !== said) this.emit('error', err);
      // A refused token (expired, or a restarted server's new key) is renewed before the next try.
      this.scheduleReconnect(welcomed, refusal?.status === 401);
    };
    ws.onerror = () => {
      // onclose follows with the code; nothing to add here
    };
  }

  /** Why the server closed the connection: its error frame, else the close code, with the HTTP status of either. */
  private closeError(ev: CloseEvent): ResonanceError {
    const said = this.closingError;
    const status = CLOSE_STATUS[ev.code] ?? said?.status ?? 0;
    const code = said?.code ?? `closed_${ev.code}`;
    if (said && said.status === status) return said;
    const detail = said?.problem?.detail ?? `close code ${ev.code}${ev.reason ? ` (${ev.reason})` : ''}`;
    const problem: Problem = { type: `/problems/${code}`, title: code, status, code, detail, ...(said?.problem?.meta ? { meta: said.problem.meta } : {}) };
    return new ResonanceError(status, code, `the server closed the realtime session: ${withStatus(status, code, detail)}`, problem);
  }

  private scheduleReconnect(wasOpen: boolean, renewToken = false): void {
    this.setState('reconnecting');
    const base = this.options.reconnect?.baseMs ?? 250;
    const max = this.options.reconnect?.maxMs ?? 10_000;
    const delay = Math.min(max, base * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    const failedBefore = renewToken || (!wasOpen && this.attempt > 0);
    this.attempt++;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.reconnect(failedBefore);
    }, delay);
  }

  /** A connection that never opened may have been refused for its token (expired, or a restarted server's new key): mint a new one. */
  private async reconnect(renewToken: boolean): Promise<void> {
    if (this.closedByUser) return;
    if (renewToken || Date.now() > this.tokenExpiresAt - 5000) {
      try {
        this.token = await this.renew();
        this.tokenExpiresAt = Date.now() + this.token.expiresIn * 1000;
      } catch (err) {
        if (err instanceof ResonanceError && err.status >= 400 && err.status < 500 && err.status !== 429) {
          this.setState('closed');
          this.emit('error', err);
          this.opened?.reject(err);
          this.opened = null;
          return;
        }
        this.scheduleReconnect(false);
        return;
      }
    }
    this.connect();
  }

  // ---- frames ----

  private handle(frame: ServerFrame): void {
    // An error frame tells why a close follows only when nothing came between them.
    if (frame.type !== 'error') this.closingError = null;
    switch (frame.type) {
      case 'welcome':
        this.epoch = frame.epoch;
        this.setState('open');
        break;
      case 'snapshot':
        // A connection that fell behind gets its own accepted proposals acknowledged in the snapshot.
        for (const ack of frame.acks ?? []) this.resolve(ack.requestId, ack.toVersion);
        this.takeSnapshot(frame.snapshot);
        break;
      case 'delta':
        this.takeDelta(frame);
        break;
      case 'telemetry': {
        const { type: _type, ...telemetry } = frame;
        this.emit('telemetry', telemetry);
        break;
      }
      case 'phases': {
        const { type: _type, ...phases } = frame;
        this.emit('phases', phases);
        break;
      }
      case 'event': {
        const { type: _type, ...event } = frame;
        this.emit('event', event);
        break;
      }
      case 'conflict':
        void this.takeConflict(frame);
        break;
      case 'error': {
        const code = String(frame.code);
        const requestId = typeof frame.requestId === 'string' ? frame.requestId : undefined;
        const status = statusOfFrame(code, requestId !== undefined);
        const detail = String(frame.message);
        const err = new ResonanceError(status, code, requestId !== undefined ? detail : withStatus(status, code, detail), {
          type: `/problems/${code}`, title: code, status, code, detail,
          ...(frame.errors ? { errors: frame.errors } : {}),
          ...(frame.meta ? { meta: frame.meta } : {}),
        });
        const p = requestId !== undefined ? this.pending.get(requestId) : undefined;
        if (p) {
          this.pending.delete(requestId!);
          p.reject(err);
        } else {
          if (requestId === undefined) this.closingError = err;
          this.emit('error', err);
        }
        break;
      }
      default:
        break; // pong, and frames of later protocol versions
    }
  }

  private takeSnapshot(s: SpaceSnapshot): void {
    // An older snapshot than what this session holds is stale news (a REST refresh that raced a delta).
    if (s.version < this.version && s.epoch === this.epoch) return;
    this.snapshot = structuredClone(s);
    this.version = s.version;
    this.epoch = s.epoch;
    this.opened?.resolve();
    this.opened = null;
    this.emit('snapshot', s);
  }

  private takeDelta(d: Delta & { requestId?: string }): void {
    if (d.requestId) this.resolve(d.requestId, d.toVersion);
    // Replays after a reconnect may overlap what was already seen: each version is delivered once.
    if (d.toVersion <= this.version) return;
    const { requestId: _r, type: _t, ...delta } = d as Delta & { requestId?: string; type?: string };
    this.version = d.toVersion;
    this.epoch = d.epoch;
    if (this.snapshot) applyDelta(this.snapshot, delta);
    this.opened?.resolve();
    this.opened = null;
    this.emit('delta', delta);
  }

  private async takeConflict(c: ConflictInfo & { requestId?: string }): Promise<void> {
    const { requestId, ...info } = c;
    this.emit('conflict', info);
    try {
      this.takeSnapshot(await this.http.request<SpaceSnapshot>('GET', `/v1/spaces/${this.spaceId}/snapshot`, undefined, { bearer: this.token.token }));
    } catch (err) {
      if (err instanceof ResonanceError) this.emit('error', err);
    }
    const p = requestId ? this.pending.get(requestId) : undefined;
    if (p) {
      this.pending.delete(requestId!);
      p.reject(new ConflictError(info.code, info.detail, info.actual, info.expectedFrom));
    }
  }

  private resolve(requestId: string, version: number): void {
    const p = this.pending.get(requestId);
    if (!p) return;
    this.pending.delete(requestId);
    p.resolve(version);
  }

  private send(frame: ClientFrame): void {
    this.ws?.send(this.encoding === 'msgpack' ? encode(frame) : JSON.stringify(frame));
  }

  private setState(state: ConnectionState): void {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state);
  }

  private failPending(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  private emit<K extends keyof SessionEvents>(name: K, value: SessionEvents[K]): void {
    for (const fn of this.listeners.get(name) ?? []) (fn as (v: SessionEvents[K]) => void)(value);
  }
}

/** Refusals that a later try cannot overcome (a quota_exceeded 409 may: another socket closes). */
const FINAL_REFUSALS = new Set([403, 404, 409, 410]);


/** The HTTP status a REST call gets for the code of an error frame (docs/errors.md). */
const FRAME_STATUS: Record<string, number> = {
  validation_failed: 400, invalid_frame: 400, malformed_frame: 400, frame_too_large: 400, already_started: 400, too_many_bad_frames: 400,
  credential_revoked: 401, invalid_credentials: 401,
  insufficient_role: 403, member_removed: 403,
  space_deleted: 404, not_found: 404,
  conflict: 409, stale_version: 409, version_ahead: 409, stale_epoch: 409, space_locked: 409, space_archived: 409, space_full: 409,
  rate_limited: 429, too_many_requests: 429,
  internal: 500, owner_unreachable: 503, owner_changed: 503, service_unavailable: 503, unavailable: 503,
};

/** quota_exceeded answering a proposal is a rate quota (429); closing a connection, a cap (409, live_spaces). */
function statusOfFrame(code: string, answersRequest: boolean): number {
  if (code === 'quota_exceeded') return answersRequest ? 429 : 409;
  return FRAME_STATUS[code] ?? 0;
}

/** A problem's detail with its status and code, as a message that says all of it. */
function withStatus(status: number, code: string, detail: string): string {
  return `${detail} (${status ? `${status} ` : ''}${code})`;
}

/** What the `ws` package shows of a refused upgrade, read whole; nothing happens with a browser's WebSocket. */
function onRefusedUpgrade(ws: WebSocket, fn: (status: number, body: string) => void): void {
  interface Body {
    statusCode?: number;
    on(event: 'data', cb: (chunk: Uint8Array) => void): void;
    on(event: 'end' | 'error', cb: () => void): void;
  }
  const node = ws as unknown as { on?: (event: 'unexpected-response', cb: (req: unknown, res: Body) => void) => void; terminate?: () => void };
  if (typeof node.on !== 'function') return;
  // With this listener `ws` leaves the failed handshake to us: terminate() then closes it (1006).
  node.on('unexpected-response', (_req, res) => {
    const decoder = new TextDecoder();
    let body = '';
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      fn(res.statusCode ?? 0, body + decoder.decode());
      if (node.terminate) node.terminate();
      else ws.close();
    };
    res.on('data', (chunk) => {
      body += decoder.decode(chunk, { stream: true });
    });
    res.on('end', finish);
    res.on('error', finish);
  });
}

const TWO_PI = 2 * Math.PI;
const wrap = (x: number): number => ((x % TWO_PI) + TWO_PI) % TWO_PI;

const PHASE_PATH = /^\/state\/phases\/(\d+)$/;

/** The phase ops of a delta applied to `phases` in place, as the server applies them (wrapped to [0, 2pi)). */
export function applyPhaseOps(phases: number[], ops: Delta['ops']): void {
  for (const op of ops) {
    const m = PHASE_PATH.exec(op.path);
    if (!m) continue;
    const i = Number(m[1]);
    const x = op.value as number;
    phases[i] = wrap(op.op === 'shift_phase' ? (phases[i] ?? 0) + x : x);
  }
}

/** A delta applied to a local snapshot, as the server applies it (phases wrapped to [0, 2pi)). */
export function applyDelta(s: SpaceSnapshot, d: Pick<Delta, 'ops' | 'toVersion' | 'epoch'>): void {
  applyPhaseOps(s.state.phases, d.ops);
  for (const op of d.ops) {
    if (PHASE_PATH.test(op.path)) continue;
    const parts = op.path.split('/').slice(2);
    let node = s.state as unknown as Record<string, unknown>;
    for (const key of parts.slice(0, -1)) {
      if (typeof node[key] !== 'object' || node[key] === null) break;
      node = node[key] as Record<string, unknown>;
    }
    const leaf = parts[parts.length - 1];
    if (leaf !== undefined && op.op !== 'replace_basis') node[leaf] = op.value;
  }
  s.version = d.toVersion;
  s.epoch = d.epoch;
}
