/**
 * One feed per live space: the space hub's single listener for every client of that space, WebSocket
 * connections and SSE telemetry streams alike (SpaceSubscriber). Each frame the hub delivers is wrapped
 * once (Encoded); its encodings (a WebSocket frame per encoding, an SSE event) are made at most once, lazily,
 * on the first subscriber that needs them, and the same bytes go to every subscriber of that format.
 *
 * Subscribers enter the feed through one start (join): the feed listens first, a catcher listener held over
 * hub.attach() keeps what the feed fans out before the subscriber is in it, and the subscriber's start
 * (welcome + replay or snapshot) goes out before those frames and the live ones, each exactly once.
 *
 * Backpressure is the subscriber's (conflation, a cap, an end of stream); the feed serves the recovery of
 * those that skip deltas: rechecking them until they drain (watch) and one shared fresh snapshot for all
 * that wait for one (requestSnapshot).
 */
import { SpaceError, type SpaceHub, type SpaceListener } from '../sim/spaces.js';
import type { DeltaFrame, Encoding, EventFrame, PhasesFrame, ServerFrame, SpaceSnapshot, TelemetryFrame } from '@resonance/sdk/protocol';
import { encodeFrameBytes, sseEventOf } from './frames.js';
import type { SpaceSubscriber } from './subscriber.js';

/**
 * An unmasked, unfragmented WebSocket data frame (RFC 6455 section 5.2) around `payload`: text for JSON,
 * binary for MessagePack. Built once, it is written to any number of sockets as it is.
 */
export function wireFrame(payload: Buffer, binary: boolean): Buffer {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(head + n);
  out[0] = 0x80 | (binary ? 0x2 : 0x1);
  if (n < 126) out[1] = n;
  else if (n < 65536) {
    out[1] = 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 127;
    out.writeUInt32BE(Math.floor(n / 2 ** 32), 2);
    out.writeUInt32BE(n >>> 0, 6);
  }
  payload.copy(out, head);
  return out;
}

/** The WebSocket frame of a server frame in an encoding. */
export const wireOf = (frame: ServerFrame, encoding: Encoding): Buffer => wireFrame(encodeFrameBytes(frame, encoding), encoding === 'msgpack');

/** A server frame and its encodings for each transport, made on first use. */
export class Encoded {
  private json: Buffer | null = null;
  private msgpack: Buffer | null = null;
  private event: string | null = null;

  constructor(readonly frame: ServerFrame) {}

  /** The WebSocket frame in `encoding`. */
  wire(encoding: Encoding): Buffer {
    if (encoding === 'json') return (this.json ??= wireOf(this.frame, 'json'));
    return (this.msgpack ??= wireOf(this.frame, 'msgpack'));
  }

  /** The SSE event (telemetry, delta, snapshot and event frames only). */
  sse(): string {
    return (this.event ??= sseEventOf(this.frame));
  }
}

/** What a WebSocket connection passes to hub.propose() as `origin`: the feed gives that subscriber its own copy. */
export class ProposeOrigin {
  constructor(
    readonly subscriber: SpaceSubscriber,
    readonly requestId: string | undefined,
  ) {}
}

export interface FeedOwner {
  /** The feed is gone (disposed, failed or its space closed): forget it. */
  dropFeed(feed: SpaceFeed): void;
  /** A member was removed from the space (event member.left, reason removed). */
  memberRemoved(spaceId: string, memberId: string): void;
  onError(err: unknown, what: string): void;
}

/** How often subscribers that wait for their send buffer to drain are checked (besides their own drain signals). */
const LAG_CHECK_MS = 50;

/** A frame caught while a subscriber attaches, handed to it after its start. */
type Caught = { kind: 'delta'; e: Encoded } | { kind: 'snapshot'; e: Encoded; version: number } | { kind: 'event'; e: Encoded };

export class SpaceFeed implements SpaceListener {
  /** Subscribers that get live frames (started and in the feed). */
  readonly subscribers = new Set<SpaceSubscriber>();
  /** Subscribers that hold the feed: live ones and those still starting. */
  private refs = 0;
  private attaching: Promise<void> | null = null;
  private detachHub: (() => void) | null = null;
  disposed = false;
  /** The space was archived or deleted. */
  closedReason: 'archived' | 'deleted' | null = null;
  /** Stale subscribers waiting for a fresh snapshot, and whether a hub.snapshot() is on its way. */
  private readonly awaitingSnapshot = new Set<SpaceSubscriber>();
  private fetching = false;
  /** Subscribers with conflated telemetry or a pending recovery: rechecked until their buffer drains. */
  private readonly laggards = new Set<SpaceSubscriber>();
  private lagTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly spaceId: string,
    private readonly hub: SpaceHub,
    private readonly owner: FeedOwner,
  ) {}

  /** Hold the feed; resolves once the feed listens to the space (rejects when the space cannot be attached). */
  private acquire(): Promise<void> {
    this.refs++;
    this.attaching ??= this.hub.attach(this.spaceId, this).then(
      (r) => {
        this.detachHub = r.detach;
        if (this.refs === 0 || this.disposed) this.dispose();
      },
      (err: unknown) => {
        this.dispose();
        throw err;
      },
    );
    return this.attaching;
  }

  /**
   * Start `sub` and put it in the feed: the feed listens first, then a listener of the subscriber's own
   * is held over hub.attach(), which runs in order with the space's mutations, so it catches exactly the
   * frames after the state the attach returns. Then, in one event-loop turn: the subscriber's start
   * (sub.begin), the caught frames, and from then on the feed's frames: nothing is lost, nothing comes twice.
   *
   * Holds the feed for `sub` from the call on, whatever the outcome: the subscriber calls release() once
   * it is gone. Rejects before begin() when the space cannot be attached (SpaceError, QuotaExceededError),
   * and with a SpaceError (404 or space_archived) when the space closed meanwhile.
   */
  async join(sub: SpaceSubscriber, lastVersion: number | undefined): Promise<void> {
    await this.acquire();
    if (sub.closed) return;
    const caught: Caught[] = [];
    let closedReason: 'archived' | 'deleted' | null = null;
    const catcher: SpaceListener = {
      telemetry: () => undefined,
      delta: (frame: DeltaFrame) => caught.push({ kind: 'delta', e: new Encoded(frame) }),
      snapshot: (s: SpaceSnapshot) => caught.push({ kind: 'snapshot', e: new Encoded({ type: 'snapshot', snapshot: s }), version: s.version }),
      event: (f: EventFrame) => caught.push({ kind: 'event', e: new Encoded(f) }),
      closed: (reason) => {
        closedReason = reason;
      },
    };
    const { detach, ...start } = await this.hub.attach(this.spaceId, catcher, lastVersion);
    detach();
    if (sub.closed) return;
    const gone = closedReason ?? this.closedReason;
    // As an attach a moment later would answer: a WebSocket closes 4410, an SSE request gets its problem.
    if (gone === 'deleted') throw new SpaceError(404, 'not_found', `space ${this.spaceId} was not found`);
    if (gone === 'archived') throw new SpaceError(409, 'space_archived', 'an archived space does not simulate');
    sub.begin(start);
    if (sub.closed) return;
    this.subscribers.add(sub);
    for (const c of caught) {
      if (c.kind === 'delta') sub.deliverDelta(c.e, false, undefined);
      else if (c.kind === 'snapshot') sub.deliverSnapshot(c.e, c.version);
      else sub.deliverEvent(c.e);
    }
  }

  /** A subscriber lets go (closed, or its start failed); once for each join(). */
  release(sub: SpaceSubscriber): void {
    this.subscribers.delete(sub);
    this.awaitingSnapshot.delete(sub);
    this.laggards.delete(sub);
    this.refs--;
    if (this.refs <= 0) this.dispose();
  }

  private dispose(): void {
    if (!this.disposed) {
      this.disposed = true;
      this.owner.dropFeed(this);
    }
    if (this.detachHub) {
      this.detachHub();
      this.detachHub = null;
    }
    if (this.lagTimer) {
      clearInterval(this.lagTimer);
      this.lagTimer = null;
    }
  }

  // ---- recovery ----

  /** Recheck `sub` every LAG_CHECK_MS until sub.onWritable() says it has nothing left to wait for. */
  watch(sub: SpaceSubscriber): void {
    this.laggards.add(sub);
    if (this.lagTimer || this.disposed) return;
    this.lagTimer = setInterval(() => {
      for (const s of this.laggards) if (s.onWritable()) this.laggards.delete(s);
      if (this.laggards.size === 0 && this.lagTimer) {
        clearInterval(this.lagTimer);
        this.lagTimer = null;
      }
    }, LAG_CHECK_MS);
    this.lagTimer.unref();
  }

  /**
   * A stale subscriber asks for a fresh snapshot. One hub.snapshot() serves every subscriber waiting when
   * it resolves whose skipped deltas it covers (hub.snapshot() is serialised with the space's mutations, so
   * its version is at least that of every delta delivered before it ran); the others ask again.
   */
  requestSnapshot(sub: SpaceSubscriber): void {
    this.awaitingSnapshot.add(sub);
    if (!this.fetching) this.fetchSnapshot();
  }

  private fetchSnapshot(): void {
    this.fetching = true;
    this.hub.snapshot(this.spaceId).then(
      (snapshot) => {
        this.fetching = false;
        const encoded = new Encoded({ type: 'snapshot', snapshot });
        for (const s of [...this.awaitingSnapshot]) {
          if (s.lastSkipped > snapshot.version) continue;
          this.awaitingSnapshot.delete(s);
          s.recovered(snapshot, encoded);
        }
        if (this.awaitingSnapshot.size > 0 && !this.disposed) this.fetchSnapshot();
      },
      (err: unknown) => {
        this.fetching = false;
        const waiting = [...this.awaitingSnapshot];
        this.awaitingSnapshot.clear();
        if (this.closedReason) return;
        this.owner.onError(err, `snapshot of space ${this.spaceId}`);
        for (const s of waiting) s.fail(err);
      },
    );
  }

  // ---- SpaceListener: the hub's frames, fanned out ----

  telemetry(frame: TelemetryFrame, phases: PhasesFrame): void {
    const t = new Encoded(frame);
    const p = new Encoded(phases);
    for (const s of this.subscribers) s.deliverTelemetry(t, p);
  }

  delta(frame: DeltaFrame, origin?: unknown): void {
    const e = new Encoded(frame);
    const own = origin instanceof ProposeOrigin ? origin : null;
    for (const s of this.subscribers) s.deliverDelta(e, own !== null && own.subscriber === s, own?.requestId);
  }

  snapshot(snapshot: SpaceSnapshot): void {
    const e = new Encoded({ type: 'snapshot', snapshot });
    for (const s of this.subscribers) s.deliverSnapshot(e, snapshot.version);
  }

  event(frame: EventFrame): void {
    const e = new Encoded(frame);
    for (const s of this.subscribers) s.deliverEvent(e);
    if (frame.name === 'member.left' && frame.data.reason === 'removed' && typeof frame.data.memberId === 'string') {
      this.owner.memberRemoved(this.spaceId, frame.data.memberId);
    }
  }

  closed(reason: 'archived' | 'deleted'): void {
    // The hub has dropped its listeners: nothing more will come.
    this.closedReason = reason;
    this.detachHub = null;
    this.dispose();
    for (const s of [...this.subscribers]) s.spaceClosed(reason);
  }
}
