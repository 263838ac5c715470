/**
 * Live spaces on Postgres (the SpaceStore contract of ../spaces.ts). Many nodes write at once: the version
 * check of appendDelta is a conditional UPDATE, so of two appends from the same version exactly one wins.
 */
import type pg from 'pg';
import type { NormalizedSpaceConfig } from '../../model/space.js';
import { type Fence, FencedError } from '../leases.js';
import {
  type DeltaDbRow, fromDelta, fromMember, fromSpaceRow, type MemberDbRow, type MemberRow, SPACE_UPDATE_COLUMNS, type SpaceDbRow, type SpaceRow,
  type SpaceStore, type StoredDelta, SUMMARY_CHUNK,
} from '../spaces.js';
import { changes, checkFence, DB_NOW_MS, one, query, tx, updateRow } from './pool.js';

const SPACE_COLUMNS = 'id, org_id, name, config, status, epoch, version, checkpoint, checkpoint_version, created_at, updated_at';

export class PgSpaceStore implements SpaceStore {
  constructor(private readonly pool: pg.Pool) {}

  async create(row: Pick<SpaceRow, 'id' | 'orgId' | 'name' | 'config'>): Promise<SpaceRow> {
    const t = Date.now();
    const r = await one<SpaceDbRow>(
      this.pool,
      `INSERT INTO spaces (id, org_id, name, config, status, created_at, updated_at) VALUES ($1, $2, $3, $4, 'active', $5, $5) RETURNING ${SPACE_COLUMNS}`,
      [row.id, row.orgId, row.name, JSON.stringify(row.config), t],
    );
    return fromSpaceRow(r!);
  }

  async get(id: string): Promise<SpaceRow | null> {
    const r = await one<SpaceDbRow>(this.pool, `SELECT ${SPACE_COLUMNS} FROM spaces WHERE id = $1`, [id]);
    return r ? fromSpaceRow(r) : null;
  }

  async list(orgId: string, after: { createdAt: number; id: string } | null, limit: number): Promise<SpaceRow[]> {
    // Ties on created_at go by id byte for byte (COLLATE "C"), as SQLite's BINARY collation orders them:
    // pages come out in the same order on both stores whatever the database's locale.
    const rows = after
      ? await query<SpaceDbRow>(
          this.pool,
          `SELECT ${SPACE_COLUMNS} FROM spaces WHERE org_id = $1 AND (created_at, id COLLATE "C") > ($2, $3) ORDER BY created_at, id COLLATE "C" LIMIT $4`,
          [orgId, after.createdAt, after.id, limit],
        )
      : await query<SpaceDbRow>(this.pool, `SELECT ${SPACE_COLUMNS} FROM spaces WHERE org_id = $1 ORDER BY created_at, id COLLATE "C" LIMIT $2`, [orgId, limit]);
    return rows.map(fromSpaceRow);
  }

  async count(orgId: string): Promise<number> {
    return (await one<{ n: number }>(this.pool, 'SELECT COUNT(*) AS n FROM spaces WHERE org_id = $1', [orgId]))!.n;
  }

  async update(id: string, change: Partial<Pick<SpaceRow, 'config' | 'status' | 'epoch' | 'checkpoint' | 'checkpointVersion'>>, fence?: Fence): Promise<void> {
    if (!fence) {
      await updateRow(this.pool, 'spaces', id, change, SPACE_UPDATE_COLUMNS, ['config']);
      return;
    }
    await tx(this.pool, async (c) => {
      await checkFence(c, `space:${id}`, fence);
      await updateRow(c, 'spaces', id, change, SPACE_UPDATE_COLUMNS, ['config']);
    });
  }

  async appendDelta(
    spaceId: string,
    expectedVersion: number,
    d: Omit<StoredDelta, 'version' | 'createdAt'>,
    config?: NormalizedSpaceConfig,
    fence?: Fence,
  ): Promise<StoredDelta | null> {
    const t = Date.now();
    // One statement, so one transaction and one round trip (the hot path of every accepted delta). The
    // fence holds the writer's lease row (FOR SHARE: a node taking the lease waits for this commit); the
    // UPDATE matches only while the writer holds it and the space is at `expectedVersion`: a concurrent
    // append from the same version waits for the row lock, then finds the version moved and matches
    // nothing, so the INSERT gets no row. delta_bytes counts the log's UTF-8 bytes, ops + paths, as the
    // SQLite store and pruneDeltas measure them.
    const r = await one<{ version: number }>(
      this.pool,
      `WITH lease AS (
         SELECT 1 FROM leases
         WHERE $10::text IS NOT NULL AND resource = 'space:' || $1::text AND node_id = $10::text AND epoch = $11::bigint AND expires_at > ${DB_NOW_MS}
         FOR SHARE
       ), moved AS (
         UPDATE spaces SET version = version + 1, epoch = $3::bigint, updated_at = $4::bigint,
           delta_bytes = delta_bytes + octet_length($6::text) + octet_length($7::text), config = COALESCE($9::text, config)
         WHERE id = $1::text AND version = $2::bigint AND ($10::text IS NULL OR EXISTS (SELECT 1 FROM lease))
         RETURNING version
       )
       INSERT INTO space_deltas (space_id, version, epoch, from_version, ops, paths, author, created_at)
       SELECT $1::text, moved.version, $3::bigint, $5::bigint, $6::text, $7::text, $8::text, $4::bigint FROM moved
       RETURNING version`,
      [
        spaceId, expectedVersion, d.epoch, t, d.fromVersion, JSON.stringify(d.ops), JSON.stringify(d.paths), d.author,
        config ? JSON.stringify(config) : null, fence?.nodeId ?? null, fence?.epoch ?? null,
      ],
    );
    if (r) return { ...d, version: r.version, createdAt: t };
    // Nothing written: a stale version (null), or a lost lease.
    if (fence && !(await one(this.pool, `SELECT 1 FROM leases WHERE resource = $1 AND node_id = $2 AND epoch = $3 AND expires_at > ${DB_NOW_MS}`, [`space:${spaceId}`, fence.nodeId, fence.epoch]))) {
      throw new FencedError(`space:${spaceId}`, fence);
    }
    return null;
  }

  async deltasSince(spaceId: string, after: number, limit: number): Promise<StoredDelta[]> {
    const rows = await query<DeltaDbRow>(
      this.pool,
      'SELECT version, epoch, from_version, ops, paths, author, created_at FROM space_deltas WHERE space_id = $1 AND version > $2 ORDER BY version LIMIT $3',
      [spaceId, after, limit],
    );
    return rows.map(fromDelta);
  }

  async lastWrites(spaceId: string): Promise<{ oldestVersion: number | null; byPath: Map<string, number> }> {
    // Postgres reads both ends off the primary key in one statement.
    const ends = (await one<{ lo: number | null; hi: number | null }>(
      this.pool,
      'SELECT MIN(version) AS lo, MAX(version) AS hi FROM space_deltas WHERE space_id = $1',
      [spaceId],
    ))!;
    const byPath = new Map<string, number>();
    if (ends.lo === null || ends.hi === null) return { oldestVersion: null, byPath };
    // Chunks of versions, oldest first (a later chunk's version replaces an earlier one): each answer is
    // one row per distinct path of its chunk, never the whole log.
    for (let from = ends.lo; from <= ends.hi; from += SUMMARY_CHUNK) {
      const rows = await query<{ path: string; version: number }>(
        this.pool,
        `SELECT p.path, MAX(d.version) AS version
         FROM space_deltas d CROSS JOIN LATERAL jsonb_array_elements_text(d.paths::jsonb) AS p(path)
         WHERE d.space_id = $1 AND d.version >= $2 AND d.version < $3 GROUP BY p.path`,
        [spaceId, from, from + SUMMARY_CHUNK],
      );
      for (const r of rows) byPath.set(r.path, r.version);
    }
    return { oldestVersion: ends.lo - 1, byPath };
  }

  async pruneDeltas(spaceId: string, before: number, upTo = Number.MAX_SAFE_INTEGER): Promise<number> {
    return tx(this.pool, async (c) => {
      // The space row first: prunes of one space run one at a time, and its version is read under the lock.
      const space = await one<{ version: number }>(c, 'SELECT version FROM spaces WHERE id = $1 FOR NO KEY UPDATE', [spaceId]);
      // Only a prefix of the log goes (it stays contiguous even if the clock stepped back): the primary-key
      // scan from the oldest delta stops at the first one to keep, so a checkpoint costs the deltas it drops.
      const keep = await one<{ version: number }>(
        c,
        'SELECT version FROM space_deltas WHERE space_id = $1 AND version <= $2 AND created_at >= $3 ORDER BY version LIMIT 1',
        [spaceId, upTo, before],
      );
      const below = keep ? keep.version : upTo + 1;
      const dropped = (await one<{ n: number; bytes: number }>(
        c,
        `WITH gone AS (DELETE FROM space_deltas WHERE space_id = $1 AND version < $2 RETURNING octet_length(ops) + octet_length(paths) AS bytes)
         SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0)::bigint AS bytes FROM gone`,
        [spaceId, below],
      ))!;
      if (dropped.n > 0) await c.query('UPDATE spaces SET delta_bytes = GREATEST(0, delta_bytes - $2) WHERE id = $1', [spaceId, dropped.bytes]);
      const oldest = (await one<{ v: number | null }>(c, 'SELECT MIN(version) AS v FROM space_deltas WHERE space_id = $1', [spaceId]))!;
      // A client may resume from the version just before the oldest retained delta.
      return oldest.v !== null ? oldest.v - 1 : (space?.version ?? 0);
    });
  }

  async delete(id: string): Promise<void> {
    await tx(this.pool, async (c) => {
      await c.query('DELETE FROM space_deltas WHERE space_id = $1', [id]);
      await c.query('DELETE FROM space_members WHERE space_id = $1', [id]);
      await c.query('DELETE FROM spaces WHERE id = $1', [id]);
    });
  }

  async joinMember(m: Omit<MemberRow, 'joinedAt' | 'leftAt' | 'removedAt'>): Promise<MemberRow> {
    const r = await one<MemberDbRow>(
      this.pool,
      `INSERT INTO space_members (space_id, id, user_id, org_id, role, display_name, joined_at, left_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8)
       ON CONFLICT (space_id, id) DO UPDATE SET joined_at = excluded.joined_at, left_at = NULL, expires_at = excluded.expires_at
       RETURNING *`,
      [m.spaceId, m.id, m.userId, m.orgId, m.role, m.displayName, Date.now(), m.expiresAt],
    );
    return fromMember(r!);
  }

  async expiredMembers(at: number): Promise<Array<{ spaceId: string; id: string }>> {
    const rows = await query<{ space_id: string; id: string }>(this.pool, 'SELECT space_id, id FROM space_members WHERE left_at IS NULL AND expires_at < $1', [at]);
    return rows.map((r) => ({ spaceId: r.space_id, id: r.id }));
  }

  async getMember(spaceId: string, id: string): Promise<MemberRow | null> {
    const r = await one<MemberDbRow>(this.pool, 'SELECT * FROM space_members WHERE space_id = $1 AND id = $2', [spaceId, id]);
    return r ? fromMember(r) : null;
  }

  async listMembers(spaceId: string): Promise<MemberRow[]> {
    const rows = await query<MemberDbRow>(this.pool, 'SELECT * FROM space_members WHERE space_id = $1 AND left_at IS NULL ORDER BY joined_at, id COLLATE "C"', [spaceId]);
    return rows.map(fromMember);
  }

  async countMembers(spaceId: string): Promise<number> {
    return (await one<{ n: number }>(this.pool, 'SELECT COUNT(*) AS n FROM space_members WHERE space_id = $1 AND left_at IS NULL', [spaceId]))!.n;
  }

  async leaveMember(spaceId: string, id: string, removed = false): Promise<boolean> {
    const t = Date.now();
    if (removed) {
      // Removal also bars a member that had already disconnected.
      return (
        (await changes(this.pool, 'UPDATE space_members SET left_at = COALESCE(left_at, $1), removed_at = $1 WHERE space_id = $2 AND id = $3 AND removed_at IS NULL', [t, spaceId, id])) === 1
      );
    }
    return (await changes(this.pool, 'UPDATE space_members SET left_at = $1 WHERE space_id = $2 AND id = $3 AND left_at IS NULL', [t, spaceId, id])) === 1;
  }

  async leaveAll(): Promise<void> {
    await this.pool.query('UPDATE space_members SET left_at = $1 WHERE left_at IS NULL', [Date.now()]);
  }
}
