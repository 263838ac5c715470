/**
 * A space's SSE telemetry stream (GET /v1/spaces/{id}/telemetry) as a subscriber of the space's feed, like
 * the WebSocket connections: the same start (welcome, then the deltas after Last-Event-ID or a snapshot)
 * and the same frames, written as SSE events (docs/spaces.md, "Telemetry (SSE)").
 *
 * Backpressure is the stream's own (src/http/sse.ts): every event goes through its bounded buffer, and a
 * client past it has its stream ended after its last complete event (it resumes with Last-Event-ID), never
 * an event dropped from the middle; telemetry is skipped while the client holds more than the slow mark.
 * The replay is paced by the socket; frames that arrive meanwhile wait (telemetry: only the latest), and a
 * client that lets more than `maxHeld` of them pile up is cut off the same way.
 */
import type { SpaceStreamRequest } from '../http/routes/spaces.js';
import type { SseStream } from '../http/sse.js';
import type { DeltaFrame } from '@resonance/sdk/protocol';
import type { Encoded, SpaceFeed } from './feed.js';
import { sseEventOf } from './frames.js';
import type { FeedStart, SpaceSubscriber } from './subscriber.js';

export interface SseLimits {
  /** Telemetry is skipped while the client holds more than this unsent (RESONANCE_WS_SLOW_BYTES). */
  slowBytes: number;
  /** Frames that may wait for a paced replay (RESONANCE_REPLAY_MAX_DELTAS); past it the stream is cut off. */
  maxHeld: number;
}

export class SseSubscriber implements SpaceSubscriber {
  private sse: SseStream | null = null;
  /** While the replay is paced: what arrived meanwhile, in order (null once live). */
  private held: Array<() => void> | null = null;
  private heldTelemetry: Encoded | null = null;
  private released = false;
  /** Never stale: a client that falls behind is cut off and resumes by itself. */
  readonly lastSkipped = -1;

  constructor(
    private readonly feed: SpaceFeed,
    private readonly request: SpaceStreamRequest,
    private readonly limits: SseLimits,
  ) {}

  get closed(): boolean {
    return this.released || (this.sse?.closed ?? false);
  }

  /** Let go of the feed (once): the stream closed, or it never opened. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.feed.release(this);
  }

  begin(start: FeedStart): void {
    const sse = (this.sse = this.request.stream());
    sse.onClose(() => this.release());
    // Closed as it opened (the client left while the space was attached): no close event will come.
    if (sse.closed) return this.release();
    const { row } = start;
    sse.send('welcome', JSON.stringify({ spaceId: row.id, epoch: row.epoch, version: row.version, role: this.request.role }));
    if (start.replay && start.replay.length > 0) {
      this.held = [];
      void this.replay(sse, start.replay);
    } else if (start.snapshot) sse.sendEvent(sseEventOf({ type: 'snapshot', snapshot: start.snapshot }));
  }

  /** Bounded by the hub (RESONANCE_REPLAY_MAX_*), and paced by the socket draining. */
  private async replay(sse: SseStream, frames: DeltaFrame[]): Promise<void> {
    for (const frame of frames) {
      sse.sendEvent(sseEventOf(frame));
      if (!(await sse.drained())) return;
    }
    const held = this.held ?? [];
    this.held = null;
    for (const fn of held) fn();
    const t = this.heldTelemetry;
    this.heldTelemetry = null;
    if (t && !sse.closed) this.sendTelemetry(t);
  }

  /** Now, or after the replay. */
  private inOrder(fn: () => void): void {
    if (this.held === null) fn();
    else if (this.held.push(fn) > this.limits.maxHeld) this.sse?.cutOff();
  }

  private sendTelemetry(t: Encoded): void {
    const sse = this.sse!;
    // Conflated: a backed-up stream skips telemetry (the next tick's replaces it).
    if (sse.backlog <= this.limits.slowBytes && sse.sendEvent(t.sse())) this.request.onTelemetry();
  }

  // ---- frames from the feed ----

  deliverTelemetry(telemetry: Encoded): void {
    if (this.held === null) this.sendTelemetry(telemetry);
    else this.heldTelemetry = telemetry;
  }

  deliverDelta(delta: Encoded): void {
    this.inOrder(() => this.sse!.sendEvent(delta.sse()));
  }

  deliverSnapshot(snapshot: Encoded): void {
    this.inOrder(() => this.sse!.sendEvent(snapshot.sse()));
  }

  deliverEvent(event: Encoded): void {
    this.inOrder(() => this.sse!.sendEvent(event.sse()));
  }

  spaceClosed(reason: 'archived' | 'deleted'): void {
    this.inOrder(() => {
      this.sse!.send('closed', JSON.stringify({ reason }));
      this.sse!.close();
    });
  }

  fail(): void {
    this.sse?.close();
  }

  onWritable(): boolean {
    return true;
  }

  recovered(): void {
    // Never asks for a snapshot.
  }
}
