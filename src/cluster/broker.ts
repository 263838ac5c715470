/**
 * The seam between the nodes of a cluster (docs/scaling.md), split as Centrifuge splits its broker: one
 * interface, a memory implementation for a single process (memory-broker.ts) and a Redis one for a cluster.
 *
 * - pub/sub: a node publishes what the spaces and sessions it owns emit (deltas, telemetry, events,
 *   snapshots); every other node relays it to its own clients. Listeners in the publishing process are fed
 *   directly, not through the broker: `publish` reaches the other nodes' subscribers only.
 * - presence: which members of a space have a realtime connection open on some node.
 * - windows: the counters of rate limits and rate quotas, shared by every node.
 */

import type { WindowCounter } from './fixed-windows.js';

/** Stops a subscription. */
export type Unsubscribe = () => Promise<void>;

export interface Presence {
  /**
   * A realtime connection of `memberId` is open on this node; the returned function says it closed. A
   * member is present while any of its connections, on any node, is.
   */
  enter(spaceId: string, memberId: string): Promise<() => Promise<void>>;
  has(spaceId: string, memberId: string): Promise<boolean>;
}

export interface BrokerHealth {
  kind: 'memory' | 'redis';
  /** False while the broker cannot be reached (a cluster node is then not ready). */
  ok: boolean;
}

export interface Broker {
  /** This node's name (RESONANCE_NODE_ID; default host:port). */
  readonly nodeId: string;
  /** Sends `payload` to the subscribers of `channel` on the other nodes, in publication order. */
  publish(channel: string, payload: string): Promise<void>;
  /** Calls `handler` with every payload another node publishes on `channel`, in order. */
  subscribe(channel: string, handler: (payload: string) => void): Promise<Unsubscribe>;
  readonly presence: Presence;
  readonly windows: WindowCounter;
  health(): BrokerHealth;
  close(): Promise<void>;
}
