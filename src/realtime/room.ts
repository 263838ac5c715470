/**
 * One room per live space: the space hub's single listener for every WebSocket connection to that space.
 * Each frame the hub delivers is wrapped once; its WebSocket frame (header and payload) is made at most
 * once per encoding (lazily, on the first connection that needs it) and the same Buffer is queued to every
 * connection of that encoding. Connections enter the room only after their own start (welcome + replay or
 * snapshot) is queued, so they get every later frame exactly once (see Connection.sync).
 *
 * Writes are coalesced (Flusher): a socket write costs far more than building a frame (on loopback
 * about 10-30 us per write whatever its size, measured in bench/README.md), so each connection's queued
 * frames go out in one write per flush. Deltas, snapshots, events and replies flush in the same event-loop
 * turn; telemetry waits up to TELEMETRY_HOLD_MS to share the write of the next delta.
 */
import type { DeltaFrame, EventFrame, PhasesFrame, SpaceHub, SpaceListener, SpaceSnapshot, TelemetryFrame } from '../sim/spaces.js';
import type { Connection } from './connection.js';
import { type Encoding, encodeFrameBytes, type ServerFrame } from './frames.js';

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

/** A server frame and its WebSocket frame, made on first use per encoding. */
export class Encoded {
  private json: Buffer | null = null;
  private msgpack: Buffer | null = null;

  constructor(readonly frame: ServerFrame) {}

  wire(encoding: Encoding): Buffer {
    if (encoding === 'json') return (this.json ??= wireOf(this.frame, 'json'));
    return (this.msgpack ??= wireOf(this.frame, 'msgpack'));
  }
}

/** How long telemetry may wait for a delta's flush to share its write. */
export const TELEMETRY_HOLD_MS = 20;

/** Something with queued frames to write. */
export interface Flushable {
  flush(): void;
}

/**
 * One per process: the connections with queued frames, flushed together. An urgent frame schedules a
 * flush in the same event-loop turn (setImmediate); telemetry alone schedules one TELEMETRY_HOLD_MS later.
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

/** What a connection passes to hub.propose() as `origin`: the room gives that connection its own copy. */
export class ProposeOrigin {
  constructor(
    readonly conn: Connection,
    readonly requestId: string | undefined,
  ) {}
}

export interface RoomOwner {
  /** The room is gone (disposed, failed or its space closed): forget it. */
  dropRoom(room: Room): void;
  /** A member was removed from the space (event member.left, reason removed). */
  memberRemoved(spaceId: string, memberId: string): void;
  onError(err: unknown, what: string): void;
}

/** How often connections that wait for their send buffer to drain are checked (besides 'drain' and ticks). */
const LAG_CHECK_MS = 50;

export class Room implements SpaceListener {
  /** Connections that get live frames (started and in the room). */
  readonly conns = new Set<Connection>();
  /** Connections that hold the room: live ones and those still starting. */
  private refs = 0;
  private attaching: Promise<void> | null = null;
  private detachHub: (() => void) | null = null;
  disposed = false;
  /** The space was archived or deleted. */
  closedReason: 'archived' | 'deleted' | null = null;
  /** Stale connections waiting for a fresh snapshot, and whether a hub.snapshot() is on its way. */
  private readonly awaitingSnapshot = new Set<Connection>();
  private fetching = false;
  /** Connections with conflated telemetry or a pending recovery: rechecked until their buffer drains. */
  private readonly laggards = new Set<Connection>();
  private lagTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly spaceId: string,
    private readonly hub: SpaceHub,
    private readonly owner: RoomOwner,
  ) {}

  /** Hold the room; resolves once the room listens to the space (rejects when the space cannot be attached). */
  acquire(): Promise<void> {
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

  /** A connection lets go (closed, or its start failed). */
  release(conn: Connection): void {
    this.conns.delete(conn);
    this.awaitingSnapshot.delete(conn);
    this.laggards.delete(conn);
    this.refs--;
    if (this.refs <= 0) this.dispose();
  }

  /** A connection whose start is on the wire joins the live fan-out. */
  add(conn: Connection): void {
    this.conns.add(conn);
  }

  private dispose(): void {
    if (!this.disposed) {
      this.disposed = true;
      this.owner.dropRoom(this);
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

  // ---- backpressure helpers ----

  /** Recheck `conn` every LAG_CHECK_MS until conn.onWritable() says it has nothing left to wait for. */
  watch(conn: Connection): void {
    this.laggards.add(conn);
    if (this.lagTimer || this.disposed) return;
    this.lagTimer = setInterval(() => {
      for (const c of this.laggards) if (c.onWritable()) this.laggards.delete(c);
      if (this.laggards.size === 0 && this.lagTimer) {
        clearInterval(this.lagTimer);
        this.lagTimer = null;
      }
    }, LAG_CHECK_MS);
    this.lagTimer.unref();
  }

  /**
   * A stale connection asks for a fresh snapshot. One hub.snapshot() serves every connection waiting when
   * it resolves whose skipped deltas it covers (hub.snapshot() is serialised with the space's mutations, so
   * its version is at least that of every delta delivered before it ran); the others ask again.
   */
  requestSnapshot(conn: Connection): void {
    this.awaitingSnapshot.add(conn);
    if (!this.fetching) this.fetchSnapshot();
  }

  private fetchSnapshot(): void {
    this.fetching = true;
    this.hub.snapshot(this.spaceId).then(
      (snapshot) => {
        this.fetching = false;
        const encoded = new Encoded({ type: 'snapshot', snapshot });
        for (const c of [...this.awaitingSnapshot]) {
          if (c.lastSkipped > snapshot.version) continue;
          this.awaitingSnapshot.delete(c);
          c.recovered(snapshot, encoded);
        }
        if (this.awaitingSnapshot.size > 0 && !this.disposed) this.fetchSnapshot();
      },
      (err: unknown) => {
        this.fetching = false;
        const waiting = [...this.awaitingSnapshot];
        this.awaitingSnapshot.clear();
        if (this.closedReason) return;
        this.owner.onError(err, `snapshot of space ${this.spaceId}`);
        for (const c of waiting) c.fail(err);
      },
    );
  }

  // ---- SpaceListener: the hub's frames, fanned out ----

  telemetry(frame: TelemetryFrame, phases: PhasesFrame): void {
    const t = new Encoded(frame);
    const p = new Encoded(phases);
    for (const c of this.conns) c.deliverTelemetry(t, p);
  }

  delta(frame: DeltaFrame, origin?: unknown): void {
    const e = new Encoded(frame);
    const own = origin instanceof ProposeOrigin ? origin : null;
    for (const c of this.conns) c.deliverDelta(e, own !== null && own.conn === c, own?.requestId);
  }

  snapshot(snapshot: SpaceSnapshot): void {
    const e = new Encoded({ type: 'snapshot', snapshot });
    for (const c of this.conns) c.deliverSnapshot(e, snapshot.version);
  }

  event(frame: EventFrame): void {
    const e = new Encoded(frame);
    for (const c of this.conns) c.deliverEvent(e);
    if (frame.name === 'member.left' && frame.data.reason === 'removed' && typeof frame.data.memberId === 'string') {
      this.owner.memberRemoved(this.spaceId, frame.data.memberId);
    }
  }

  closed(reason: 'archived' | 'deleted'): void {
    // The hub has dropped its listeners: nothing more will come.
    this.closedReason = reason;
    this.detachHub = null;
    this.dispose();
    for (const c of [...this.conns]) c.spaceClosed(reason);
  }
}
