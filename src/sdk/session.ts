/**
 * A live space session over WebSocket: frames of the realtime protocol (MessagePack when the server offers
 * it, else JSON), the space's version, deltas applied to a local snapshot, proposals that resolve with
 * their accepted version, and automatic reconnection with jittered exponential backoff that resumes from
 * the last version seen (the server replays the missed deltas, or sends a snapshot).
 */
import { decode, encode } from '@msgpack/msgpack';
import { ConflictError, ConnectionLostError, ResonanceError } from './errors.js';
import type { Http } from './http.js';
import type { Delta, DeltaProposal, PhasesFrame, Role, SessionToken, SpaceEvent, SpaceSnapshot, Telemetry } from './types.js';

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';
export type Encoding = 'json' | 'msgpack';
export type SubscriptionKind = 'telemetry' | 'deltas' | 'events' | 'phases';

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
  phases: PhasesFrame;
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

/**
 * Close codes after which reconnecting cannot help (docs/spaces.md, "Realtime"). 4429 (an org quota) is
 * not among them: a resident space frees its place when another goes idle, so backing off may succeed.
 */
const FINAL_CLOSE_CODES = new Set([1000, 4008, 4401, 4403, 4409, 4410]);

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

  constructor(
    private readonly http: Http,
    private readonly WS: WebSocketLike,
    private token: SessionToken,
    private readonly options: OpenOptions,
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
    const protocols = this.options.encoding === 'json' ? ['resonance.v1.json'] : ['resonance.v1.msgpack', 'resonance.v1.json'];
    const ws = new this.WS(url, protocols);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    let welcomed = false;
    ws.onopen = () => {
      this.encoding = ws.protocol === 'resonance.v1.msgpack' ? 'msgpack' : 'json';
      this.send({ type: 'hello', version: 1, sessionId: this.token.sessionId, ...(this.version >= 0 ? { lastVersion: this.version } : {}) });
      if (this.options.subscribe) this.send({ type: 'subscribe', kinds: this.options.subscribe });
    };
    ws.onmessage = (ev: MessageEvent) => {
      let frame: Record<string, unknown>;
      try {
        frame = (typeof ev.data === 'string' ? JSON.parse(ev.data) : decode(new Uint8Array(ev.data as ArrayBuffer))) as Record<string, unknown>;
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
      if (FINAL_CLOSE_CODES.has(ev.code)) {
        const err = new ResonanceError(0, `closed_${ev.code}`, `the server closed the session (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`);
        this.setState('closed');
        this.opened?.reject(err);
        this.opened = null;
        this.emit('error', err);
        return;
      }
      this.scheduleReconnect(welcomed);
    };
    ws.onerror = () => {
      // onclose follows with the code; nothing to add here
    };
  }

  private scheduleReconnect(wasOpen: boolean): void {
    this.setState('reconnecting');
    const base = this.options.reconnect?.baseMs ?? 250;
    const max = this.options.reconnect?.maxMs ?? 10_000;
    const delay = Math.min(max, base * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    const failedBefore = !wasOpen && this.attempt > 0;
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
        const body = { ...(this.token.role ? { role: this.token.role } : {}), ...(this.options.displayName ? { displayName: this.options.displayName } : {}) };
        this.token = await this.http.request<SessionToken>('POST', `/v1/spaces/${this.token.spaceId}/sessions`, body);
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

  private handle(frame: Record<string, unknown>): void {
    switch (frame.type) {
      case 'welcome':
        this.epoch = frame.epoch as number;
        this.setState('open');
        break;
      case 'snapshot':
        // A connection that fell behind gets its own accepted proposals acknowledged in the snapshot.
        for (const ack of (frame.acks as Array<{ requestId: string; toVersion: number }> | undefined) ?? []) this.resolve(ack.requestId, ack.toVersion);
        this.takeSnapshot(frame.snapshot as SpaceSnapshot);
        break;
      case 'delta':
        this.takeDelta(frame as unknown as Delta & { requestId?: string });
        break;
      case 'telemetry': {
        const { type: _type, ...telemetry } = frame;
        this.emit('telemetry', telemetry as unknown as Telemetry);
        break;
      }
      case 'phases': {
        const { type: _type, ...phases } = frame;
        this.emit('phases', phases as unknown as PhasesFrame);
        break;
      }
      case 'event': {
        const { type: _type, ...event } = frame;
        this.emit('event', event as unknown as SpaceEvent);
        break;
      }
      case 'conflict':
        void this.takeConflict(frame as unknown as ConflictInfo & { requestId?: string });
        break;
      case 'error': {
        const err = new ResonanceError(0, String(frame.code), String(frame.message), {
          type: 'about:blank', title: String(frame.code), status: 0, code: String(frame.code), detail: String(frame.message),
          ...(frame.errors ? { errors: frame.errors as Array<{ pointer: string; code: string; message: string }> } : {}),
        });
        const p = typeof frame.requestId === 'string' ? this.pending.get(frame.requestId) : undefined;
        if (p) {
          this.pending.delete(frame.requestId as string);
          p.reject(err);
        } else this.emit('error', err);
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

  private send(frame: Record<string, unknown>): void {
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
