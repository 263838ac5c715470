/**
 * One WebSocket connection to a space, a subscriber of the space's feed (feed.ts): its session (member,
 * role, encoding, subscription), the start (hello -> welcome -> replay or snapshot -> live frames), client
 * frames, write coalescing (Flusher), and backpressure:
 *
 * - telemetry and phases are conflated while the send buffer holds more than `slowBytes`: only the
 *   latest is kept and sent once the buffer drains (checked on every tick, on the socket's 'drain' and
 *   every 50 ms);
 * - deltas are never dropped silently: past `capBytes` the connection turns stale and gets no more deltas;
 *   once it drains below `slowBytes` it is sent one fresh snapshot, whose version covers every delta it
 *   skipped, and the deltas after that snapshot, contiguously. Its own accepted proposals among the
 *   skipped deltas are listed, with their versions, in that snapshot's `acks`.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import WebSocket from 'ws';
import type { SessionClaims } from '../http/tokens.js';
import type { RateLimiter } from '../http/ratelimit.js';
import { QuotaExceededError } from '../sim/quotas.js';
import { SpaceError, type SpaceHub } from '../sim/spaces.js';
import { CloseCode, DEFAULT_SUBSCRIPTION, type DeltaFrame, type Encoding, type ServerFrame, type SpaceSnapshot, type SubscriptionKind } from '@resonance/sdk/protocol';
import { type Encoded, ProposeOrigin, type SpaceFeed, wireOf } from './feed.js';
import { type ClientFrame, decodeFrame } from './frames.js';
import type { FeedStart, SpaceSubscriber } from './subscriber.js';

export const BAD_FRAME_LIMIT = 10;
export const BAD_FRAME_WINDOW_MS = 10_000;
/** Proposals of one connection waiting for the hub; more are refused with an error frame. */
export const MAX_IN_FLIGHT = 64;

export interface ConnectionLimits {
  maxFrameBytes: number;
  slowBytes: number;
  capBytes: number;
  /** Replies (errors, pongs, conflicts) past this are not queued: the connection is closed with 1008. */
  hardCapBytes: number;
  helloTimeoutMs: number;
  /** Proposals one connection may make per second; more get an error frame `rate_limited`. */
  proposalsPerSecond: number;
}

/** The budget of the credential that minted a session token, shared with its REST requests (the HTTP rate limiter). */
export type ProposalBudget = Pick<RateLimiter, 'consume'>;

/** How long telemetry may wait for a delta's flush to share its write. */
export const TELEMETRY_HOLD_MS = 20;

/** Something with queued frames to write. */
export interface Flushable {
  flush(): void;
}

/**
 * One per process: the connections with queued frames, flushed together. A socket write costs far more
 * than building a frame (on loopback about 10-30 us per write whatever its size, measured in
 * bench/README.md), so each connection's queued frames go out in one write per flush. An urgent frame
 * (delta, snapshot, event, reply) schedules a flush in the same event-loop turn (setImmediate); telemetry
 * alone schedules one TELEMETRY_HOLD_MS later, to share the write of the next delta.
 */
export class Flusher {
  private dirty: Flushable[] = [];
  private immediate: NodeJS.Immediate | null = null;
  private timer: NodeJS.Timeout | null = null;

  /** `conn` has just queued its first frame since its last flush. */
  add(conn: Flushable): void {
    this.dirty.push(conn);
  }

  schedule(urgent: boolean): void {
    if (this.immediate) return;
    if (urgent) {
      this.immediate = setImmediate(this.run);
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
      }
    } else this.timer ??= setTimeout(this.run, TELEMETRY_HOLD_MS);
  }

  private readonly run = (): void => {
    this.immediate = null;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const dirty = this.dirty;
    this.dirty = [];
    for (const c of dirty) {
      try {
        c.flush();
      } catch {
        // A socket that fails here is closing; the others still get their frames.
      }
    }
  };
}

/** The server side a connection needs. */
export interface ConnectionHost {
  readonly hub: SpaceHub;
  readonly logger: Logger;
  readonly limits: ConnectionLimits;
  readonly flusher: Flusher;
  /** Process-wide: frames queued and socket writes made (a write carries one or more frames). */
  readonly counters: { frames: number; writes: number };
  /** The feed of the space (created on demand). */
  feed(spaceId: string): SpaceFeed;
  /** Ensure the member is present (rejoin if it left); throws SpaceError space_full. */
  joinMember(conn: Connection): Promise<void>;
  /** Charged one unit per proposal, keyed by the token's minter (absent: proposals cost no budget). */
  readonly budget?: ProposalBudget;
}

type DeltaState = 'live' | 'stale' | 'recovering';
type Buffered =
  | { kind: 'delta'; version: number; e: Encoded; own: boolean; requestId: string | undefined }
  | { kind: 'snapshot'; version: number; e: Encoded }
  | { kind: 'event'; e: Encoded };

export class Connection implements Flushable, SpaceSubscriber {
  readonly spaceId: string;
  readonly memberId: string;
  readonly role: SessionClaims['role'];
  encoding: Encoding;
  kinds = new Set<SubscriptionKind>(DEFAULT_SUBSCRIPTION);
  /** joining -> ready (member present) -> syncing (attach) -> live (in the feed) -> closed. */
  phase: 'joining' | 'ready' | 'syncing' | 'live' | 'closed' = 'joining';
  /** Set once, by hello or the hello timeout (or the first propose_delta). */
  private started: Promise<void> | null = null;
  private joined: Promise<boolean>;
  private helloTimer: NodeJS.Timeout | null = null;
  private feed: SpaceFeed | null = null;
  /** The member was removed: its sockets are closed and it must not be made to leave again. */
  removed = false;

  // backpressure
  private pendingTelemetry: Encoded | null = null;
  private pendingPhases: Encoded | null = null;
  deltaState: DeltaState = 'live';
  /** Version of the newest delta (or epoch snapshot) this connection skipped. */
  lastSkipped = -1;
  private recoveryBuffer: Buffered[] = [];
  /** This connection's accepted proposals whose delta frames were skipped. */
  private skippedAcks: Array<{ requestId: string; toVersion: number }> = [];

  /** WebSocket frames queued for the next flush (one write), and their size. */
  private outbox: Buffer[] = [];
  private outboxBytes = 0;

  private badFrames: number[] = [];
  private inFlight = 0;
  /** Proposals in the current one-second window of this connection. */
  private proposalWindow = { start: 0, count: 0 };
  /** Budget charges run in order, so proposals reach the hub in the order they came. */
  private charges: Promise<unknown> = Promise.resolve();
  /** Usage not yet handed to the meter (RealtimeServer collects it about once a second). */
  unmetered = { bytes: 0, telemetryFrames: 0 };
  readonly stats = { framesSent: 0, telemetryConflated: 0, staleEpisodes: 0, snapshotsRecovered: 0 };

  constructor(
    readonly ws: WebSocket,
    /** The upgraded socket under `ws`: queued frames are written to it directly (see flush). */
    private readonly socket: Duplex,
    readonly claims: SessionClaims & { exp: number },
    encoding: Encoding,
    private readonly host: ConnectionHost,
  ) {
    this.spaceId = claims.space;
    this.memberId = claims.sub;
    this.role = claims.role;
    this.encoding = encoding;
    this.joined = host.joinMember(this).then(
      () => {
        if (this.phase === 'joining') this.phase = 'ready';
        return true;
      },
      (err: unknown) => {
        if (err instanceof SpaceError && err.code === 'member_removed') {
          this.close(CloseCode.MEMBER_REMOVED, 'member removed', { type: 'error', code: err.code, message: err.message });
        } else if (err instanceof SpaceError && err.code === 'space_full') {
          this.close(CloseCode.SPACE_FULL, 'space full', { type: 'error', code: err.code, message: err.message });
        } else if (err instanceof SpaceError && (err.status === 404 || err.code === 'space_archived')) {
          this.close(CloseCode.SPACE_GONE, 'space gone', { type: 'error', code: err.status === 404 ? 'space_deleted' : 'space_archived', message: err.message });
        } else this.fail(err);
        return false;
      },
    );
    this.helloTimer = setTimeout(() => {
      this.helloTimer = null;
      this.start(undefined);
    }, host.limits.helloTimeoutMs);
    this.helloTimer.unref();
  }

  get closed(): boolean {
    return this.phase === 'closed';
  }

  /** Whether the member was present when this connection started (for the leave on close). */
  wasJoined(): Promise<boolean> {
    return this.joined;
  }

  // ---- sending ----

  /**
   * Bytes written but not yet taken by the peer (ws's and the socket's buffers). The outbox is not
   * counted: it is written in this event-loop turn (telemetry within TELEMETRY_HOLD_MS), so a burst of
   * frames in one turn is not mistaken for a slow reader.
   */
  private buffered(): number {
    return this.ws.bufferedAmount;
  }

  /**
   * Queue one WebSocket frame (see Flusher). Urgent frames are flushed in this event-loop turn;
   * telemetry may wait a little for company.
   */
  private queue(wire: Buffer, urgent = true): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.stats.framesSent++;
    this.host.counters.frames++;
    this.outbox.push(wire);
    this.outboxBytes += wire.length;
    if (this.outbox.length === 1) this.host.flusher.add(this);
    this.host.flusher.schedule(urgent);
  }

  private sendFrame(frame: ServerFrame): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.queue(wireOf(frame, this.encoding));
  }

  /**
   * Write the queued frames in one go. They are complete, unmasked frames written to the socket under ws:
   * with permessage-deflate off, ws's sender holds no state between messages (it queues only while
   * compressing), so whole frames written here interleave safely with its own control frames.
   */
  flush(): void {
    const out = this.outbox;
    if (out.length === 0) return;
    this.outbox = [];
    this.outboxBytes = 0;
    if (this.ws.readyState !== WebSocket.OPEN || !this.socket.writable) return;
    // One plain write: copying a few small frames costs less than the writev path.
    const chunk = out.length === 1 ? out[0]! : Buffer.concat(out);
    this.socket.write(chunk);
    this.unmetered.bytes += chunk.length;
    this.host.counters.writes++;
  }

  /** A reply to the client's own frame (error, pong, conflict): not queued without bound for a client that does not read. */
  private reply(frame: ServerFrame): void {
    if (this.buffered() > this.host.limits.hardCapBytes) {
      this.close(CloseCode.POLICY, 'send buffer overflow');
      return;
    }
    this.sendFrame(frame);
  }

  /** Send `frame` (if any), then close. */
  close(code: number, reason: string, frame?: ServerFrame): void {
    if (this.phase === 'closed') return;
    if (frame) this.sendFrame(frame);
    // Whatever is queued goes before the close frame.
    this.flush();
    this.phase = 'closed';
    this.clearTimers();
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code, reason);
  }

  fail(err: unknown): void {
    if (this.phase === 'closed') return;
    this.host.logger.error({ err, spaceId: this.spaceId, memberId: this.memberId }, 'realtime connection failed');
    this.close(CloseCode.INTERNAL, 'internal error', { type: 'error', code: 'internal', message: 'the server failed; reconnect' });
  }

  spaceClosed(reason: 'archived' | 'deleted'): void {
    this.close(CloseCode.SPACE_GONE, `space ${reason}`, {
      type: 'error', code: reason === 'archived' ? 'space_archived' : 'space_deleted', message: `the space was ${reason}`,
    });
  }

  /** The socket closed (either side): leave the feed. The server handles the member. */
  onClosed(): void {
    this.phase = 'closed';
    this.clearTimers();
    if (this.feed) {
      this.feed.release(this);
      this.feed = null;
    }
  }

  private clearTimers(): void {
    if (this.helloTimer) {
      clearTimeout(this.helloTimer);
      this.helloTimer = null;
    }
  }

  // ---- client frames ----

  onMessage(data: Buffer, isBinary: boolean): void {
    if (this.phase === 'closed') return;
    const decoded = decodeFrame(isBinary ? data : data.toString('utf8'), this.host.limits.maxFrameBytes);
    if (!decoded.ok) {
      this.badFrame(decoded.error);
      return;
    }
    const frame = decoded.frame;
    switch (frame.type) {
      case 'hello':
        if (this.started) this.reply({ type: 'error', code: 'already_started', message: 'hello is accepted once, before the session starts' });
        else this.start(frame);
        return;
      case 'ping':
        this.reply(frame.ts === undefined ? { type: 'pong' } : { type: 'pong', ts: frame.ts });
        return;
      case 'subscribe':
        this.subscribe(frame.kinds);
        return;
      case 'propose_delta':
        this.start(undefined).then(() => this.propose(frame), () => undefined);
        return;
    }
  }

  private badFrame(error: Extract<ServerFrame, { type: 'error' }>): void {
    const now = Date.now();
    this.badFrames.push(now);
    while (this.badFrames.length > 0 && this.badFrames[0]! <= now - BAD_FRAME_WINDOW_MS) this.badFrames.shift();
    if (this.badFrames.length > BAD_FRAME_LIMIT) {
      this.close(CloseCode.TOO_MANY_BAD_FRAMES, 'too many bad frames', { type: 'error', code: 'too_many_bad_frames', message: `more than ${BAD_FRAME_LIMIT} bad frames within ${BAD_FRAME_WINDOW_MS / 1000} s` });
      return;
    }
    this.reply(error);
  }

  private subscribe(kinds: SubscriptionKind[]): void {
    const hadDeltas = this.kinds.has('deltas');
    this.kinds = new Set(kinds);
    if (!this.kinds.has('telemetry')) this.pendingTelemetry = null;
    if (!this.kinds.has('phases')) this.pendingPhases = null;
    if (hadDeltas && !this.kinds.has('deltas')) {
      // Without deltas the client's state goes stale; subscribing again brings a fresh snapshot.
      if (this.deltaState === 'live') this.deltaState = 'stale';
    } else if (!hadDeltas && this.kinds.has('deltas')) this.checkRecovery();
  }

  /** Start the session once (hello, or the hello timeout, or the first proposal); later calls get the same promise. */
  private start(hello: Extract<ClientFrame, { type: 'hello' }> | undefined): Promise<void> {
    if (this.started) return this.started;
    this.clearTimers();
    if (hello?.encoding) this.encoding = hello.encoding;
    this.started = this.joined.then((ok) => (ok && this.phase === 'ready' ? this.sync(hello?.lastVersion) : Promise.reject(new Error('closed'))));
    this.started.catch((err: unknown) => {
      if ((err as Error).message !== 'closed') this.fail(err);
    });
    return this.started;
  }

  /** Join the space's feed, which puts the start on the wire (begin) and then the live frames. */
  private async sync(lastVersion: number | undefined): Promise<void> {
    this.phase = 'syncing';
    const feed = this.host.feed(this.spaceId);
    this.feed = feed;
    try {
      await feed.join(this, lastVersion);
    } catch (err) {
      this.startFailed(err);
    }
  }

  /** Welcome, then the replayed deltas after the hello's `lastVersion` or a snapshot; live from then on. */
  begin(start: FeedStart): void {
    this.sendFrame({
      type: 'welcome', spaceId: this.spaceId, epoch: start.row.epoch, version: start.row.version, role: this.role, encoding: this.encoding, sessionId: this.memberId,
    });
    if (start.replay) for (const frame of start.replay) this.sendFrame(frame);
    else this.sendFrame({ type: 'snapshot', snapshot: start.snapshot! });
    this.phase = 'live';
  }

  private startFailed(err: unknown): void {
    if (this.phase === 'closed') return;
    if (err instanceof QuotaExceededError) {
      this.close(CloseCode.QUOTA_EXCEEDED, 'quota exceeded', { type: 'error', code: 'quota_exceeded', message: err.message, meta: err.meta });
    } else if (err instanceof SpaceError && (err.status === 404 || err.code === 'space_archived')) {
      this.spaceClosed(err.status === 404 ? 'deleted' : 'archived');
    } else this.fail(err);
  }

  private propose(frame: Extract<ClientFrame, { type: 'propose_delta' }>): void {
    if (this.phase !== 'live') return;
    const requestId = frame.requestId;
    const rid = requestId !== undefined ? { requestId } : {};
    if (this.inFlight >= MAX_IN_FLIGHT) {
      this.reply({ type: 'error', code: 'too_many_requests', message: `at most ${MAX_IN_FLIGHT} proposals may wait at once`, ...rid });
      return;
    }
    const now = Date.now();
    if (now - this.proposalWindow.start >= 1000) this.proposalWindow = { start: now, count: 0 };
    if (++this.proposalWindow.count > this.host.limits.proposalsPerSecond) {
      const retryAfterMs = this.proposalWindow.start + 1000 - now;
      this.reply({
        type: 'error', code: 'rate_limited', message: `at most ${this.host.limits.proposalsPerSecond} proposals per second on one connection`,
        meta: { scope: 'connection', limit: this.host.limits.proposalsPerSecond, retryAfterMs }, ...rid,
      });
      return;
    }
    this.inFlight++;
    const budget = this.host.budget;
    const charged = this.charges.then(() => budget?.consume(this.claims.minter, 1));
    this.charges = charged.catch(() => undefined);
    charged.then(
      (decision) => {
        if (decision && !decision.allowed) {
          this.inFlight--;
          this.reply({
            type: 'error', code: 'rate_limited', message: `the credential's budget of ${decision.limit} units per window is spent; it resets in ${decision.resetSeconds} s`,
            meta: { scope: 'credential', limit: decision.limit, remaining: decision.remaining, resetSeconds: decision.resetSeconds }, ...rid,
          });
          return;
        }
        this.submit(frame);
      },
      (err: unknown) => {
        this.inFlight--;
        this.host.logger.error({ err, spaceId: this.spaceId }, 'proposal budget failed');
        this.reply({ type: 'error', code: 'internal', message: 'the server failed to apply the delta', ...rid });
      },
    );
  }

  /** Hand a charged proposal to the hub; its acknowledgement is the feed's delta frame, or an error/conflict reply. */
  private submit(frame: Extract<ClientFrame, { type: 'propose_delta' }>): void {
    const requestId = frame.requestId;
    // Success needs nothing here: the feed sends this connection its own copy (with requestId) in order.
    this.host.hub.propose(this.spaceId, frame.delta, this.role, this.memberId, requestId, new ProposeOrigin(this, requestId)).then(
      () => {
        this.inFlight--;
      },
      (err: unknown) => {
        this.inFlight--;
        const rid = requestId !== undefined ? { requestId } : {};
        if (err instanceof QuotaExceededError) {
          this.reply({ type: 'error', code: 'quota_exceeded', message: err.message, meta: err.meta, ...rid });
          return;
        }
        if (err instanceof SpaceError) {
          if (err.status === 409 && CONFLICT_CODES.has(err.code)) {
            const actual = typeof err.meta?.currentVersion === 'number' ? err.meta.currentVersion : -1;
            this.reply({ type: 'conflict', expectedFrom: frame.delta.fromVersion, actual, code: err.code, detail: err.message, ...rid });
          } else {
            this.reply({ type: 'error', code: err.code, message: err.message, ...(err.errors ? { errors: err.errors } : {}), ...rid });
          }
          return;
        }
        this.host.logger.error({ err, spaceId: this.spaceId }, 'propose failed');
        this.reply({ type: 'error', code: 'internal', message: 'the server failed to apply the delta', ...rid });
      },
    );
  }

  // ---- frames from the feed ----

  deliverTelemetry(t: Encoded, p: Encoded): void {
    const wantT = this.kinds.has('telemetry');
    const wantP = this.kinds.has('phases');
    if (wantT || wantP) {
      if (this.buffered() > this.host.limits.slowBytes) {
        if (wantT) this.pendingTelemetry = t;
        if (wantP) this.pendingPhases = p;
        this.stats.telemetryConflated++;
        this.feed?.watch(this);
        return;
      }
      this.pendingTelemetry = null;
      this.pendingPhases = null;
      if (wantT) {
        this.queue(t.wire(this.encoding), false);
        this.unmetered.telemetryFrames++;
      }
      if (wantP) this.queue(p.wire(this.encoding), false);
    }
    this.checkRecovery();
  }

  deliverDelta(e: Encoded, own: boolean, requestId: string | undefined): void {
    if (!this.kinds.has('deltas')) {
      this.lastSkipped = (e.frame as DeltaFrame).toVersion;
      if (this.deltaState === 'live') this.deltaState = 'stale';
      // The proposer's own copy is its acknowledgement: sent even without a deltas subscription.
      if (own) this.queue(this.ownCopy(e, requestId));
      return;
    }
    const version = (e.frame as DeltaFrame).toVersion;
    switch (this.deltaState) {
      case 'recovering':
        this.recoveryBuffer.push({ kind: 'delta', version, e, own, requestId });
        return;
      case 'stale':
        this.skip(version, own, requestId);
        this.checkRecovery();
        return;
      case 'live':
        if (this.buffered() > this.host.limits.capBytes) {
          this.deltaState = 'stale';
          this.stats.staleEpisodes++;
          this.skip(version, own, requestId);
          this.feed?.watch(this);
          return;
        }
        this.queue(own ? this.ownCopy(e, requestId) : e.wire(this.encoding));
    }
  }

  /** An epoch change from the hub (a new state). */
  deliverSnapshot(e: Encoded, version: number): void {
    if (!this.kinds.has('deltas')) {
      this.lastSkipped = version;
      if (this.deltaState === 'live') this.deltaState = 'stale';
      return;
    }
    switch (this.deltaState) {
      case 'recovering':
        this.recoveryBuffer.push({ kind: 'snapshot', version, e });
        return;
      case 'stale':
        this.lastSkipped = version;
        return;
      case 'live':
        if (this.buffered() > this.host.limits.capBytes) {
          this.deltaState = 'stale';
          this.stats.staleEpisodes++;
          this.lastSkipped = version;
          this.feed?.watch(this);
          return;
        }
        this.queue(e.wire(this.encoding));
    }
  }

  /** Events go out unless the connection is stale (its snapshot will carry the state). */
  deliverEvent(e: Encoded): void {
    if (!this.kinds.has('events')) return;
    if (this.deltaState === 'recovering') this.recoveryBuffer.push({ kind: 'event', e });
    else if (this.deltaState === 'live') this.queue(e.wire(this.encoding));
  }

  private ownCopy(e: Encoded, requestId: string | undefined): Buffer {
    return requestId === undefined ? e.wire(this.encoding) : wireOf({ ...(e.frame as DeltaFrame), requestId }, this.encoding);
  }

  private skip(version: number, own: boolean, requestId: string | undefined): void {
    this.lastSkipped = version;
    if (own && requestId !== undefined) this.skippedAcks.push({ requestId, toVersion: version });
  }

  /** A frame held while recovering, handed to the ordinary path. */
  private redeliver(b: Buffered): void {
    if (b.kind === 'delta') this.deliverDelta(b.e, b.own, b.requestId);
    else if (b.kind === 'snapshot') this.deliverSnapshot(b.e, b.version);
    else this.deliverEvent(b.e);
  }

  /** A stale connection whose buffer drained asks its feed for a fresh snapshot. */
  private checkRecovery(): void {
    if (this.deltaState !== 'stale' || this.phase !== 'live' || !this.kinds.has('deltas')) return;
    if (this.buffered() > this.host.limits.slowBytes) {
      this.feed?.watch(this);
      return;
    }
    this.deltaState = 'recovering';
    this.recoveryBuffer = [];
    this.feed?.requestSnapshot(this);
  }

  /** The feed's fresh snapshot (version >= lastSkipped): send it, then what came after it, in order. */
  recovered(snapshot: SpaceSnapshot, e: Encoded): void {
    if (this.deltaState !== 'recovering' || this.phase !== 'live') return;
    const held = this.recoveryBuffer;
    this.recoveryBuffer = [];
    const acks = this.skippedAcks;
    this.skippedAcks = [];
    for (const b of held) if (b.kind === 'delta' && b.version <= snapshot.version && b.own && b.requestId !== undefined) acks.push({ requestId: b.requestId, toVersion: b.version });
    this.deltaState = 'live';
    this.stats.snapshotsRecovered++;
    this.queue(acks.length > 0 ? wireOf({ type: 'snapshot', snapshot, acks }, this.encoding) : e.wire(this.encoding));
    for (const b of held) if (b.kind === 'event' || b.version > snapshot.version) this.redeliver(b);
  }

  /** The send buffer may have drained (socket 'drain', a tick, or the feed's lag timer). True: nothing left to wait for. */
  onWritable(): boolean {
    if (this.phase !== 'live') return true;
    if (this.buffered() > this.host.limits.slowBytes) return false;
    if (this.pendingTelemetry) {
      this.queue(this.pendingTelemetry.wire(this.encoding), false);
      this.unmetered.telemetryFrames++;
    }
    if (this.pendingPhases) this.queue(this.pendingPhases.wire(this.encoding), false);
    this.pendingTelemetry = null;
    this.pendingPhases = null;
    this.checkRecovery();
    return this.deltaState !== 'stale' || !this.kinds.has('deltas');
  }
}

/** Version conflicts of a proposal: answered with a `conflict` frame (the client should resync). */
const CONFLICT_CODES = new Set(['conflict', 'stale_version', 'version_ahead', 'stale_epoch']);
