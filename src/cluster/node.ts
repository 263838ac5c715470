/**
 * This process as a node of the cluster: its leases (Ownership), the broker and calls to the other nodes
 * (Rpc), in the one shape the space hub and the scheduler depend on (NodeCluster). One process is a
 * cluster of one: memory broker, memory leases, and calls that never leave.
 */
import { type ClusterStore, type Fence, type Lease, type LeaseResource, memoryCluster } from '../store/leases.js';
import type { Broker, Unsubscribe } from './broker.js';
import type { Ownership } from './ownership.js';
import type { Rpc } from './rpc.js';

/**
 * What the space hub and the scheduler need of the cluster: this node's leases (Ownership), the store's view
 * of everyone's (ClusterStore.leases), calls to other nodes (Rpc) and the broker.
 */
export interface NodeCluster {
  readonly nodeId: string;
  /** How long a lease outlives its last renewal (RESONANCE_LEASE_TTL_MS). */
  readonly leaseTtlMs: number;
  /** The lease for this node (taken or renewed), or null while another node holds it. */
  acquire(resource: LeaseResource, orgId: string): Promise<Lease | null>;
  /** The fence of a lease this node holds, for its writes; null when it holds none. */
  fence(resource: LeaseResource): Fence | null;
  release(resource: LeaseResource): Promise<void>;
  /** The current leases of these resources (lapsed ones too), as the store has them. */
  leases(resources: LeaseResource[]): Promise<Lease[]>;
  readonly broker: Pick<Broker, 'publish' | 'subscribe' | 'health'>;
  call<T>(nodeId: string, method: string, args: unknown): Promise<T>;
  handle(method: string, handler: (args: unknown, from: string) => Promise<unknown>): void;
}

/** The cluster of one process without a server around it (tests, benchmarks): every lease its own, nobody to call. */
export function soloCluster(nodeId = 'local', leaseTtlMs = 5000): NodeCluster {
  const store: ClusterStore = memoryCluster();
  const held = new Map<LeaseResource, Lease>();
  return {
    nodeId,
    leaseTtlMs,
    async acquire(resource, orgId) {
      const lease = await store.acquire(resource, orgId, nodeId, leaseTtlMs);
      if (lease) held.set(resource, lease);
      return lease;
    },
    fence: (resource) => {
      const lease = held.get(resource);
      return lease ? { nodeId, epoch: lease.epoch } : null;
    },
    async release(resource) {
      if (held.delete(resource)) await store.release(resource, nodeId);
    },
    leases: (resources) => store.leases(resources),
    broker: {
      publish: async () => undefined,
      subscribe: async (): Promise<Unsubscribe> => async () => undefined,
      health: () => ({ kind: 'memory', ok: true }),
    },
    call: () => Promise.reject(new Error('a single process has no other node to call')),
    handle: () => undefined,
  };
}

export class ClusterNode implements NodeCluster {
  constructor(
    readonly ownership: Ownership,
    readonly broker: Broker,
    readonly rpc: Rpc,
    private readonly store: ClusterStore,
  ) {}

  get nodeId(): string {
    return this.ownership.nodeId;
  }

  get leaseTtlMs(): number {
    return this.ownership.ttlMs;
  }

  acquire(resource: LeaseResource, orgId: string): Promise<Lease | null> {
    return this.ownership.acquire(resource, orgId);
  }

  fence(resource: LeaseResource): Fence | null {
    return this.ownership.fence(resource);
  }

  release(resource: LeaseResource): Promise<void> {
    return this.ownership.release(resource);
  }

  leases(resources: LeaseResource[]): Promise<Lease[]> {
    return this.store.leases(resources);
  }

  call<T>(nodeId: string, method: string, args: unknown): Promise<T> {
    return this.rpc.call<T>(nodeId, method, args);
  }

  handle(method: string, handler: (args: unknown, from: string) => Promise<unknown>): void {
    this.rpc.handle(method, handler);
  }
}
