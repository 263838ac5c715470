/**
 * Ownership in a cluster (docs/scaling.md): each live space and each running HQE session is simulated by one
 * node, the holder of its lease. A lease lasts `ttlMs` unless renewed; whoever takes it after it lapsed gets
 * the next `epoch`, and every write the owner makes is fenced by (node, epoch), so a node that lost its lease
 * can never append. Nodes also record themselves here (heartbeats) for GET /v1/cluster.
 *
 * The embedded store serves one process: its leases live in memory (memoryCluster below) and are always this
 * node's. Postgres keeps them in a table, timed by the database's clock so that the nodes' clocks don't matter.
 */

/** `space:<id>` or `session:<id>`. */
export type LeaseResource = `space:${string}` | `session:${string}`;

export interface Lease {
  resource: LeaseResource;
  /** The org whose space or session it is (GET /v1/cluster lists an org's own). */
  orgId: string;
  nodeId: string;
  /** Increases each time the lease changes hands: the fencing token. */
  epoch: number;
  /** ms since the epoch, by the store's clock. */
  expiresAt: number;
}

/**
 * A node not heard from for this long is gone (its heartbeats come every third of the lease TTL, at most
 * every 5 s): other nodes may take over what it left in flight (idempotency claims).
 */
export const NODE_ALIVE_MS = 15_000;

export interface NodeRecord {
  id: string;
  /** This run of the node's process (a restarted node keeps its id and gets a new boot id). */
  bootId: string;
  url: string;
  startedAt: number;
  heartbeatAt: number;
}

/** The writer's proof of ownership, checked by every fenced write. */
export interface Fence {
  nodeId: string;
  epoch: number;
}

/** A fenced write refused: the writer no longer holds the lease (another node took it). Nothing was written. */
export class FencedError extends Error {
  constructor(readonly resource: LeaseResource, readonly fence: Fence) {
    super(`${resource}: node ${fence.nodeId} no longer holds the lease of epoch ${fence.epoch}`);
  }
}

export interface ClusterStore {
  /** Records this node as alive now (its first call registers it). */
  heartbeat(node: Omit<NodeRecord, 'heartbeatAt'>): Promise<void>;
  /** Nodes heard from within `withinMs`, oldest first. */
  nodes(withinMs: number): Promise<NodeRecord[]>;
  /** The node stops: its record and its leases go at once (a SIGTERM hands ownership over). */
  leave(nodeId: string): Promise<void>;
  /**
   * Takes `resource` for `nodeId` when it is free, lapsed or already this node's (renewed, same epoch);
   * null while another node holds it.
   */
  acquire(resource: LeaseResource, orgId: string, nodeId: string, ttlMs: number): Promise<Lease | null>;
  /**
   * Renews every lease `nodeId` still holds, at its epoch; returns them (a lease missing from the answer was
   * taken by another node or released). One that lapsed while nobody took it is still held: a renewal that
   * came late (a stalled process) keeps it, and the fence refused the holder's writes in between.
   */
  renew(nodeId: string, ttlMs: number): Promise<Lease[]>;
  /** Gives a lease up (when its holder is `nodeId`); the next taker needs no wait. */
  release(resource: LeaseResource, nodeId: string): Promise<void>;
  /** Current leases (lapsed ones included: their expiresAt says so) of the given resources. */
  leases(resources: LeaseResource[]): Promise<Lease[]>;
  /** The org's leases that have not lapsed, by resource. */
  orgLeases(orgId: string): Promise<Lease[]>;
}

/** The single-process cluster: one node, which holds every lease. */
export function memoryCluster(): ClusterStore {
  const nodes = new Map<string, NodeRecord>();
  const held = new Map<LeaseResource, Lease>();
  return {
    async heartbeat(node) {
      nodes.set(node.id, { ...node, heartbeatAt: Date.now() });
    },
    async nodes(withinMs) {
      const since = Date.now() - withinMs;
      return [...nodes.values()].filter((n) => n.heartbeatAt >= since).sort((a, b) => a.startedAt - b.startedAt);
    },
    async leave(nodeId) {
      nodes.delete(nodeId);
      for (const l of held.values()) if (l.nodeId === nodeId) l.expiresAt = 0;
    },
    async acquire(resource, orgId, nodeId, ttlMs) {
      const now = Date.now();
      const l = held.get(resource);
      if (l && l.nodeId !== nodeId && l.expiresAt > now) return null;
      const lease: Lease = { resource, orgId, nodeId, epoch: l && l.nodeId === nodeId && l.expiresAt > now ? l.epoch : (l?.epoch ?? 0) + 1, expiresAt: now + ttlMs };
      held.set(resource, lease);
      return { ...lease };
    },
    async renew(nodeId, ttlMs) {
      const now = Date.now();
      const out: Lease[] = [];
      for (const l of held.values()) {
        // Released (0) or another node's: not this node's to renew.
        if (l.nodeId !== nodeId || l.expiresAt === 0) continue;
        l.expiresAt = now + ttlMs;
        out.push({ ...l });
      }
      return out;
    },
    async release(resource, nodeId) {
      const l = held.get(resource);
      if (l?.nodeId === nodeId) l.expiresAt = 0;
    },
    async orgLeases(orgId) {
      const now = Date.now();
      return [...held.values()].filter((l) => l.orgId === orgId && l.expiresAt > now).map((l) => ({ ...l })).sort((a, b) => a.resource.localeCompare(b.resource));
    },
    async leases(resources) {
      return resources.flatMap((r) => {
        const l = held.get(r);
        return l ? [{ ...l }] : [];
      });
    },
  };
}
