/**
 * Live spaces across nodes (docs/scaling.md). One node, the holder of a space's lease, simulates it and
 * sequences its writes: the others forward writes to it (Rpc) and relay its frames to their own listeners
 * (broker channel `space:<id>`). This file holds what crosses between nodes for spaces: the messages on the
 * channel, how the hub's refusals travel over Rpc, and the relay of one space on a node that does not own it.
 */
import type { Unsubscribe } from '../cluster/broker.js';
import type { NodeCluster } from '../cluster/node.js';
import { type RemoteError, RpcRemoteError, RpcTimeout } from '../cluster/rpc.js';
import type { QuotaName } from '../model/tenancy.js';
import type { LeaseResource } from '../store/leases.js';
import type { StoredDelta } from '../store/spaces.js';
import { QuotaExceededError } from './quotas.js';
import { SpaceError } from './space-error.js';
import type { SpaceListener } from './spaces.js';
import type { DeltaFrame, EventFrame, PhasesFrame, SpaceSnapshot, TelemetryFrame } from '@resonance/sdk/protocol';

export const spaceResource = (spaceId: string): LeaseResource => `space:${spaceId}`;
export const spaceChannel = (spaceId: string): string => `space:${spaceId}`;

/** A proposal forwarded from a relay: the owner tags the delta it publishes, so the relay finds its proposer. */
export interface RemoteOrigin {
  node: string;
  token: string;
}

/** What an owner publishes on `space:<id>`, in order. */
export type SpaceMessage =
  | { k: 'telemetry'; telemetry: TelemetryFrame; phases: PhasesFrame }
  | { k: 'delta'; frame: DeltaFrame; origin?: RemoteOrigin }
  | { k: 'snapshot'; snapshot: SpaceSnapshot }
  | { k: 'event'; frame: EventFrame }
  | { k: 'closed'; reason: 'archived' | 'deleted' };

/** The hub's refusals (SpaceError, QuotaExceededError) as an Rpc error, and back: the caller throws what the owner threw. */
export function toRemoteError(err: unknown): RemoteError {
  if (err instanceof SpaceError) {
    return { status: err.status, code: err.code, message: err.message, errors: err.errors, meta: { kind: 'space', ...(err.meta ? { meta: err.meta } : {}) } };
  }
  if (err instanceof QuotaExceededError) {
    return { status: err.status, code: 'quota_exceeded', message: err.message, meta: { kind: 'quota', quota: err.quota, limit: err.limit, used: err.used, retryAfterSeconds: err.retryAfterSeconds } };
  }
  return { status: 500, code: 'internal', message: err instanceof Error ? err.message : String(err) };
}

export function fromRemoteError(err: unknown, owner: string): Error {
  if (err instanceof RpcTimeout) {
    return new SpaceError(503, 'owner_unreachable', `the node that owns this space (${owner}) did not answer; retry shortly`, undefined, { retryAfterSeconds: 1 });
  }
  if (!(err instanceof RpcRemoteError)) return err instanceof Error ? err : new Error(String(err));
  const r = err.remote;
  const meta = (r.meta ?? {}) as { kind?: string; meta?: Record<string, unknown>; quota?: QuotaName; limit?: number; used?: number; retryAfterSeconds?: number };
  if (meta.kind === 'space') {
    return new SpaceError(r.status as SpaceError['status'], r.code ?? 'internal', r.message, r.errors as SpaceError['errors'], meta.meta);
  }
  if (meta.kind === 'quota' && meta.quota) return new QuotaExceededError(meta.quota, meta.limit ?? 0, meta.used ?? 0, meta.retryAfterSeconds);
  return new Error(`owner ${owner}: ${r.message}`);
}

/** The delta frame of a logged delta (its version was applied on the one before). */
export const frameOf = (d: StoredDelta): DeltaFrame => ({
  type: 'delta', fromVersion: d.version - 1, toVersion: d.version, epoch: d.epoch, ops: d.ops as DeltaFrame['ops'], author: d.author,
});

export interface RelayDeps {
  spaceId: string;
  cluster: NodeCluster;
  /** Deltas after `after`, from the store (committed before they are published): fills a gap in the stream. */
  deltasSince: (after: number, limit: number) => Promise<StoredDelta[]>;
  /** Proposals this node forwarded, by token: their delta goes to the proposer as its own copy. */
  originOf: (token: string) => unknown;
  onError: (err: unknown) => void;
}

/** How often a relay tells the owner it still has listeners (the owner ticks while any node listens). */
export const WATCH_EVERY_MS = 1000;
/** A relay not heard from for this long is forgotten by the owner. */
export const WATCH_TTL_MS = 3500;

/**
 * One space relayed on a node that does not own it: the owner's frames from the broker, in order, to this
 * node's listeners. Delta versions are checked as they come: a gap (a message lost while the owner changed)
 * is filled from the store before anything after it is delivered, so listeners see every version once.
 */
export class SpaceRelay {
  readonly listeners = new Map<SpaceListener, number>();
  /** Highest delta version delivered to listeners. */
  version: number;
  owner: string;
  private unsubscribe: Unsubscribe | null = null;
  private queue: Promise<void> = Promise.resolve();
  /** Those waiting for the relay to reach a version (reach()). */
  private readonly waiting = new Set<{ version: number; resolve: () => void }>();
  private watchTimer: NodeJS.Timeout | null = null;
  closed = false;

  constructor(
    private readonly deps: RelayDeps,
    owner: string,
    version: number,
  ) {
    this.owner = owner;
    this.version = version;
  }

  async start(): Promise<void> {
    this.unsubscribe = await this.deps.cluster.broker.subscribe(spaceChannel(this.deps.spaceId), (payload) => {
      this.queue = this.queue.then(() => this.receive(payload)).catch(this.deps.onError);
    });
    this.watchTimer = setInterval(() => void this.watch(), WATCH_EVERY_MS);
    this.watchTimer.unref();
  }

  /** Tells the owner this node listens (it then ticks the space and publishes its frames). */
  async watch(): Promise<void> {
    if (this.listeners.size === 0 || this.closed) return;
    await this.deps.cluster.call(this.owner, 'space.watch', { id: this.deps.spaceId }).catch(() => undefined);
  }

  /** `listener` gets the frames after version `from` (its start state). */
  add(listener: SpaceListener, from: number): void {
    this.listeners.set(listener, from);
  }

  /**
   * Resolves once the relay delivered `version` (true), or after `timeoutMs` without it (false): the
   * owner publishes every delta it commits, so a version in the log reaches the relay unless a message
   * was lost.
   */
  reach(version: number, timeoutMs: number): Promise<boolean> {
    if (this.version >= version || this.closed) return Promise.resolve(this.version >= version);
    return new Promise((resolve) => {
      const w = {
        version,
        resolve: () => {
          clearTimeout(timer);
          this.waiting.delete(w);
          resolve(true);
        },
      };
      const timer = setTimeout(() => {
        this.waiting.delete(w);
        resolve(false);
      }, timeoutMs);
      this.waiting.add(w);
    });
  }

  /** Runs `fn` after every message received so far was delivered. */
  after<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.then(() => undefined, () => undefined);
    return run;
  }

  async stop(): Promise<void> {
    this.closed = true;
    if (this.watchTimer) clearInterval(this.watchTimer);
    await this.unsubscribe?.();
    this.unsubscribe = null;
  }

  private async receive(payload: string): Promise<void> {
    if (this.closed) return;
    const m = JSON.parse(payload) as SpaceMessage;
    switch (m.k) {
      case 'telemetry':
        for (const l of this.listeners.keys()) l.telemetry(m.telemetry, m.phases);
        return;
      case 'delta': {
        if (m.frame.toVersion <= this.version) return;
        if (m.frame.fromVersion > this.version) await this.fill(m.frame.fromVersion);
        this.deliver(m.frame, m.origin && m.origin.node === this.deps.cluster.nodeId ? this.deps.originOf(m.origin.token) : undefined);
        return;
      }
      case 'snapshot':
        this.version = Math.max(this.version, m.snapshot.version);
        for (const w of this.waiting) if (this.version >= w.version) w.resolve();
        for (const l of this.listeners.keys()) l.snapshot(m.snapshot);
        return;
      case 'event':
        for (const l of this.listeners.keys()) l.event(m.frame);
        return;
      case 'closed':
        for (const l of this.listeners.keys()) l.closed(m.reason);
        this.listeners.clear();
        return;
    }
  }

  /** Delivers the stored deltas after `version` up to `upTo` (inclusive). */
  async fill(upTo: number): Promise<void> {
    while (this.version < upTo) {
      const stored = await this.deps.deltasSince(this.version, Math.min(1000, upTo - this.version));
      if (stored.length === 0) break;
      for (const d of stored) this.deliver(frameOf(d));
    }
  }

  private deliver(frame: DeltaFrame, origin?: unknown): void {
    if (frame.toVersion !== this.version + 1) return;
    this.version = frame.toVersion;
    for (const [l, from] of this.listeners) if (frame.toVersion > from) l.delta(frame, origin);
    for (const w of this.waiting) if (this.version >= w.version) w.resolve();
  }
}
