/**
 * What a space's feed (feed.ts) needs of a client, whatever its transport: a WebSocket connection
 * (connection.ts) or an SSE telemetry stream (sse-subscriber.ts). The feed hands every subscriber the same
 * Encoded frames; each subscriber writes them in its own format and applies its own backpressure.
 */
import type { SpaceHub } from '../sim/spaces.js';
import type { SpaceSnapshot } from '@resonance/sdk/protocol';
import type { Encoded } from './feed.js';

/**
 * Where a subscriber starts (SpaceHub.attach): the space's row, then the deltas after its `lastVersion` when
 * the hub could replay them (`replay`, possibly empty), else the state at `row.version` (`snapshot`).
 */
export type FeedStart = Omit<Awaited<ReturnType<SpaceHub['attach']>>, 'detach'>;

export interface SpaceSubscriber {
  /** The subscriber has gone (closed, failed, space closed): the feed stops starting it. */
  readonly closed: boolean;
  /**
   * Put the start on the wire: welcome, then the replay or the snapshot. Called once, in the same
   * event-loop turn as the subscriber enters the feed and gets the frames that arrived while it attached.
   */
  begin(start: FeedStart): void;

  /** Every tick: telemetry, and the phases frame of the same tick. */
  deliverTelemetry(telemetry: Encoded, phases: Encoded): void;
  /** An accepted delta; `own`: this subscriber proposed it (the WebSocket acknowledgement carries `requestId`). */
  deliverDelta(delta: Encoded, own: boolean, requestId: string | undefined): void;
  /** A new epoch's snapshot (a basis change). */
  deliverSnapshot(snapshot: Encoded, version: number): void;
  deliverEvent(event: Encoded): void;
  /** The space was archived or deleted: nothing more will come. */
  spaceClosed(reason: 'archived' | 'deleted'): void;
  /** The feed could not serve this subscriber (a failed snapshot): it must close. */
  fail(err: unknown): void;

  // ---- recovery, for subscribers that skip deltas (feed.watch, feed.requestSnapshot) ----

  /** Version of the newest delta (or epoch snapshot) the subscriber skipped; -1 when none. */
  readonly lastSkipped: number;
  /** Its send buffer may have drained. True: nothing left to wait for (the feed stops rechecking it). */
  onWritable(): boolean;
  /** The fresh snapshot it asked for (version >= lastSkipped), and its encoding. */
  recovered(snapshot: SpaceSnapshot, encoded: Encoded): void;
}
