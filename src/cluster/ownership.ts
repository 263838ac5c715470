/**
 * This node's leases (src/store/leases.ts): taken on demand, renewed together every third of the TTL with
 * the node's heartbeat, and reported when lost (another node took one after this node failed to renew in
 * time: a long pause, a partition). Stopping hands every lease over at once (SIGTERM).
 */
import { type ClusterStore, type Fence, type Lease, type LeaseResource, NODE_ALIVE_MS } from '../store/leases.js';

export interface OwnershipOptions {
  cluster: ClusterStore;
  nodeId: string;
  /** This run of the process (idempotency claims carry it too). */
  bootId: string;
  /** Where other nodes and GET /v1/cluster reach this one. */
  url: string;
  startedAt: number;
  /** How long a lease outlives its last renewal (RESONANCE_LEASE_TTL_MS). */
  ttlMs: number;
  /** A lease this node held is no longer its own: stop simulating the resource. */
  onLost: (resource: LeaseResource) => void;
  onError: (err: unknown) => void;
}

export class Ownership {
  private readonly held = new Map<LeaseResource, Lease>();
  private timer: NodeJS.Timeout | null = null;
  private beating: Promise<void> = Promise.resolve();

  constructor(private readonly options: OwnershipOptions) {}

  get nodeId(): string {
    return this.options.nodeId;
  }

  get ttlMs(): number {
    return this.options.ttlMs;
  }

  async start(): Promise<void> {
    // Leases an earlier run of this node id still holds (it was killed and restarted within the TTL) are
    // handed over now: this run holds none of them, and its renewals must not keep them alive.
    await this.options.cluster.leave(this.options.nodeId);
    await this.beat();
    this.timer = setInterval(() => {
      this.beating = this.beating.then(() => this.beat());
    }, Math.min(this.options.ttlMs / 3, NODE_ALIVE_MS / 3));
    this.timer.unref();
  }

  /** The lease on `resource` for this node (taken or renewed), or null while another node holds it. */
  async acquire(resource: LeaseResource, orgId: string): Promise<Lease | null> {
    const lease = await this.options.cluster.acquire(resource, orgId, this.options.nodeId, this.options.ttlMs);
    if (lease) this.held.set(resource, lease);
    return lease;
  }

  /** The fence of a lease this node holds, for its writes; null when it holds none. */
  fence(resource: LeaseResource): Fence | null {
    const lease = this.held.get(resource);
    return lease ? { nodeId: this.options.nodeId, epoch: lease.epoch } : null;
  }

  async release(resource: LeaseResource): Promise<void> {
    if (!this.held.delete(resource)) return;
    await this.options.cluster.release(resource, this.options.nodeId);
  }

  /** Hands every lease over and leaves the node list. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.beating;
    this.held.clear();
    await this.options.cluster.leave(this.options.nodeId);
  }

  private async beat(): Promise<void> {
    try {
      const { cluster, nodeId, bootId, url, ttlMs } = this.options;
      await cluster.heartbeat({ id: nodeId, bootId, url, startedAt: this.options.startedAt });
      // Judge only the leases held when the renewal began: one taken while it ran is not in its answer,
      // and one released or taken again meanwhile is judged at the next beat.
      const before = new Map(this.held);
      const kept = new Map((await cluster.renew(nodeId, ttlMs)).map((l) => [l.resource, l]));
      for (const [resource, lease] of before) {
        if (this.held.get(resource) !== lease) continue;
        const now = kept.get(resource);
        if (now && now.epoch === lease.epoch) this.held.set(resource, now);
        else {
          this.held.delete(resource);
          this.options.onLost(resource);
        }
      }
    } catch (err) {
      // The store is unreachable: leases lapse on their own if this lasts; writes stay fenced meanwhile.
      this.options.onError(err);
    }
  }
}
