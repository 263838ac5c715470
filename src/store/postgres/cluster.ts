/** Nodes and leases in Postgres (ClusterStore, ../leases.ts), timed by the database's clock. */
import type pg from 'pg';
import type { ClusterStore, Lease, LeaseResource, NodeRecord } from '../leases.js';
import { DB_NOW_MS as NOW, query } from './pool.js';

interface LeaseRow {
  resource: LeaseResource;
  org_id: string;
  node_id: string;
  epoch: number;
  expires_at: number;
}

const fromLease = (r: LeaseRow): Lease => ({ resource: r.resource, orgId: r.org_id, nodeId: r.node_id, epoch: r.epoch, expiresAt: r.expires_at });

export class PgClusterStore implements ClusterStore {
  constructor(private readonly pool: pg.Pool) {}

  async heartbeat(node: Omit<NodeRecord, 'heartbeatAt'>): Promise<void> {
    await this.pool.query(
      `INSERT INTO cluster_nodes (id, boot_id, url, started_at, heartbeat_at) VALUES ($1, $4, $2, $3, ${NOW})
       ON CONFLICT (id) DO UPDATE SET boot_id = excluded.boot_id, url = excluded.url, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`,
      [node.id, node.url, node.startedAt, node.bootId],
    );
  }

  async nodes(withinMs: number): Promise<NodeRecord[]> {
    const rows = await query<{ id: string; boot_id: string; url: string; started_at: number; heartbeat_at: number }>(
      this.pool,
      `SELECT id, boot_id, url, started_at, heartbeat_at FROM cluster_nodes WHERE heartbeat_at >= ${NOW} - $1 ORDER BY started_at, id`,
      [withinMs],
    );
    return rows.map((r) => ({ id: r.id, bootId: r.boot_id, url: r.url, startedAt: r.started_at, heartbeatAt: r.heartbeat_at }));
  }

  async leave(nodeId: string): Promise<void> {
    await this.pool.query(`UPDATE leases SET expires_at = 0 WHERE node_id = $1`, [nodeId]);
    await this.pool.query('DELETE FROM cluster_nodes WHERE id = $1', [nodeId]);
  }

  async acquire(resource: LeaseResource, orgId: string, nodeId: string, ttlMs: number): Promise<Lease | null> {
    // One statement: free -> insert at epoch 1; lapsed or another holder's lapsed -> next epoch; ours ->
    // renewed at the same epoch; held by another node -> no row.
    const rows = await query<LeaseRow>(
      this.pool,
      `INSERT INTO leases (resource, org_id, node_id, epoch, expires_at) VALUES ($1, $4, $2, 1, ${NOW} + $3)
       ON CONFLICT (resource) DO UPDATE SET
         epoch = CASE WHEN leases.node_id = excluded.node_id AND leases.expires_at > ${NOW} THEN leases.epoch ELSE leases.epoch + 1 END,
         node_id = excluded.node_id,
         expires_at = excluded.expires_at
       WHERE leases.node_id = excluded.node_id OR leases.expires_at <= ${NOW}
       RETURNING resource, org_id, node_id, epoch, expires_at`,
      [resource, nodeId, ttlMs, orgId],
    );
    return rows[0] ? fromLease(rows[0]) : null;
  }

  async renew(nodeId: string, ttlMs: number): Promise<Lease[]> {
    const rows = await query<LeaseRow>(
      this.pool,
      // A lapsed lease nobody took is still this node's (its writes meanwhile were refused by the fence); a
      // released one (expires_at 0) is not.
      `UPDATE leases SET expires_at = ${NOW} + $2 WHERE node_id = $1 AND expires_at > 0 RETURNING resource, org_id, node_id, epoch, expires_at`,
      [nodeId, ttlMs],
    );
    return rows.map(fromLease);
  }

  async release(resource: LeaseResource, nodeId: string): Promise<void> {
    await this.pool.query('UPDATE leases SET expires_at = 0 WHERE resource = $1 AND node_id = $2', [resource, nodeId]);
  }

  async orgLeases(orgId: string): Promise<Lease[]> {
    const rows = await query<LeaseRow>(
      this.pool,
      `SELECT resource, org_id, node_id, epoch, expires_at FROM leases WHERE org_id = $1 AND expires_at > ${NOW} ORDER BY resource`,
      [orgId],
    );
    return rows.map(fromLease);
  }

  async leases(resources: LeaseResource[]): Promise<Lease[]> {
    if (resources.length === 0) return [];
    const rows = await query<LeaseRow>(this.pool, 'SELECT resource, org_id, node_id, epoch, expires_at FROM leases WHERE resource = ANY($1)', [resources]);
    return rows.map(fromLease);
  }
}
