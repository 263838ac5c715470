/** Live spaces: their config and status, the durable delta log, and members. */
import type { NormalizedSpaceConfig } from '../model/space.js';
import type { Fence } from './leases.js';
import { setImmediate } from 'node:timers/promises';
import { type Db, durable, flushBehind, now, stmt, updateRow, write, written } from './db.js';
import type { Role, SpaceStatus } from '@resonance/sdk/protocol';


export interface SpaceRow {
  id: string;
  orgId: string;
  name: string;
  config: NormalizedSpaceConfig;
  status: SpaceStatus;
  epoch: number;
  version: number;
  checkpoint: string | null;
  checkpointVersion: number | null;
  createdAt: number;
  updatedAt: number;
}

export interface StoredDelta {
  version: number;
  epoch: number;
  fromVersion: number;
  ops: unknown[];
  paths: string[];
  author: string | null;
  createdAt: number;
}


/** A participant: one per realtime session token. Present while `leftAt` is null. */
export interface MemberRow {
  spaceId: string;
  id: string;
  userId: string;
  orgId: string;
  role: Role;
  displayName: string | null;
  joinedAt: number;
  leftAt: number | null;
  /** Set when the member was removed (not merely disconnected): it may not come back. */
  removedAt: number | null;
  /** When its newest session token expires (ms); a member with no connection leaves then. */
  expiresAt: number | null;
}

export interface SpaceStore {
  create(row: Pick<SpaceRow, 'id' | 'orgId' | 'name' | 'config'>): Promise<SpaceRow>;
  get(id: string): Promise<SpaceRow | null>;
  list(orgId: string, after: { createdAt: number; id: string } | null, limit: number): Promise<SpaceRow[]>;
  /** Spaces the org stores (its spaces quota). */
  count(orgId: string): Promise<number>;
  /** With a fence (the owner's checkpoints): refused with FencedError unless the writer holds the space's lease. */
  update(id: string, change: Partial<Pick<SpaceRow, 'config' | 'status' | 'epoch' | 'checkpoint' | 'checkpointVersion'>>, fence?: Fence): Promise<void>;
  /**
   * Append a delta as the next version, atomically with the space's version: durable when this resolves.
   * `expectedVersion` guards against a concurrent writer (null: nothing written); `fence`, when given, against
   * a writer that lost the space's lease (FencedError: nothing written). The embedded store serves one
   * process, which holds every lease: it takes the fence and has nothing to check.
   */
  appendDelta(
    spaceId: string,
    expectedVersion: number,
    delta: Omit<StoredDelta, 'version' | 'createdAt'>,
    config?: NormalizedSpaceConfig,
    fence?: Fence,
  ): Promise<StoredDelta | null>;
  /** Deltas with version > after, oldest first. */
  deltasSince(spaceId: string, after: number, limit: number): Promise<StoredDelta[]>;
  /**
   * The retained log in brief, without holding it in memory: the version before its oldest delta (null
   * when it is empty) and, per path, the last version that wrote it.
   */
  lastWrites(spaceId: string): Promise<{ oldestVersion: number | null; byPath: Map<string, number> }>;
  /**
   * Drop the oldest deltas, up to the first one created at or after `before` (ms) or above `upTo` (a delta
   * not yet in a checkpoint is kept: recovery replays it); returns the version a client may still resume
   * from. Costs what it drops, not what it keeps.
   */
  pruneDeltas(spaceId: string, before: number, upTo?: number): Promise<number>;
  delete(id: string): Promise<void>;
  /** Add a member, or bring back one that left (same id). */
  joinMember(row: Omit<MemberRow, 'joinedAt' | 'leftAt' | 'removedAt'>): Promise<MemberRow>;
  /** Present members whose token expired before `now`, across spaces. */
  expiredMembers(now: number): Promise<Array<{ spaceId: string; id: string }>>;
  getMember(spaceId: string, id: string): Promise<MemberRow | null>;
  /** Present members, oldest first. */
  listMembers(spaceId: string): Promise<MemberRow[]>;
  countMembers(spaceId: string): Promise<number>;
  /** Mark a member gone (for good when `removed`); false when it was not present. */
  leaveMember(spaceId: string, id: string, removed?: boolean): Promise<boolean>;
  /** Every member of every space leaves (a restart drops every connection). */
  leaveAll(): Promise<void>;
}

export interface SpaceDbRow {
  id: string;
  org_id: string;
  name: string;
  config: string;
  status: SpaceStatus;
  epoch: number;
  version: number;
  checkpoint: string | null;
  checkpoint_version: number | null;
  created_at: number;
  updated_at: number;
}

export interface DeltaDbRow {
  version: number;
  epoch: number;
  from_version: number;
  ops: string;
  paths: string;
  author: string | null;
  created_at: number;
}

export const fromSpaceRow = (r: SpaceDbRow): SpaceRow => ({
  id: r.id,
  orgId: r.org_id,
  name: r.name,
  config: JSON.parse(r.config) as NormalizedSpaceConfig,
  status: r.status,
  epoch: r.epoch,
  version: r.version,
  checkpoint: r.checkpoint,
  checkpointVersion: r.checkpoint_version,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export const fromDelta = (r: DeltaDbRow): StoredDelta => ({
  version: r.version,
  epoch: r.epoch,
  fromVersion: r.from_version,
  ops: JSON.parse(r.ops) as unknown[],
  paths: JSON.parse(r.paths) as string[],
  author: r.author,
  createdAt: r.created_at,
});

/** Deltas per statement when the log is summarised: each chunk is one short stretch of the event loop. */
export const SUMMARY_CHUNK = 10_000;

export const SPACE_UPDATE_COLUMNS: Record<string, string> = { config: 'config', status: 'status', epoch: 'epoch', checkpoint: 'checkpoint', checkpointVersion: 'checkpoint_version' };

/**
 * When the realtime writes (deltas, members joining and leaving) resolve:
 * - `wal`: once committed to the WAL, which survives a crash of the server process; the fsync that makes
 *   them survive power loss too starts at once, in the background. The default: on a disk whose fsync
 *   stalls for hundreds of milliseconds at times, waiting for it would stall every delta of the space.
 * - `fsync`: once that fsync is done, like every other write of the store.
 */
export type RealtimeSync = 'wal' | 'fsync';

export class SqliteSpaceStore implements SpaceStore {
  constructor(
    private readonly db: Db,
    private readonly realtimeSync: RealtimeSync = 'fsync',
  ) {}

  /** After a realtime write: see RealtimeSync. */
  private logged(): Promise<void> {
    if (this.realtimeSync === 'fsync') return durable(this.db);
    flushBehind(this.db);
    return Promise.resolve();
  }

  async create(row: Pick<SpaceRow, 'id' | 'orgId' | 'name' | 'config'>): Promise<SpaceRow> {
    const t = now();
    await written(this.db, () =>
      stmt(this.db, "INSERT INTO spaces (id, org_id, name, config, status, created_at, updated_at) VALUES (?, ?, ?, ?, 'active', ?, ?)")
        .run(row.id, row.orgId, row.name, JSON.stringify(row.config), t, t),
    );
    return (await this.get(row.id))!;
  }

  async get(id: string): Promise<SpaceRow | null> {
    const r = stmt(this.db, 'SELECT * FROM spaces WHERE id = ?').get(id) as SpaceDbRow | undefined;
    return r ? fromSpaceRow(r) : null;
  }

  async list(orgId: string, after: { createdAt: number; id: string } | null, limit: number): Promise<SpaceRow[]> {
    const rows = after
      ? (stmt(this.db, 'SELECT * FROM spaces WHERE org_id = ? AND (created_at, id) > (?, ?) ORDER BY created_at, id LIMIT ?').all(orgId, after.createdAt, after.id, limit) as SpaceDbRow[])
      : (stmt(this.db, 'SELECT * FROM spaces WHERE org_id = ? ORDER BY created_at, id LIMIT ?').all(orgId, limit) as SpaceDbRow[]);
    return rows.map(fromSpaceRow);
  }

  async count(orgId: string): Promise<number> {
    return (stmt(this.db, 'SELECT COUNT(*) AS n FROM spaces WHERE org_id = ?').get(orgId) as { n: number }).n;
  }

  async update(id: string, change: Partial<Pick<SpaceRow, 'config' | 'status' | 'epoch' | 'checkpoint' | 'checkpointVersion'>>): Promise<void> {
    await written(this.db, () => updateRow(this.db, 'spaces', id, change, SPACE_UPDATE_COLUMNS, ['config']));
  }

  async appendDelta(
    spaceId: string,
    expectedVersion: number,
    d: Omit<StoredDelta, 'version' | 'createdAt'>,
    config?: NormalizedSpaceConfig,
  ): Promise<StoredDelta | null> {
    const stored = this.db.transaction(() => {
      const ops = JSON.stringify(d.ops);
      const paths = JSON.stringify(d.paths);
      // delta_bytes counts what the log holds in UTF-8 bytes (as migration 4 measured it): ops + paths.
      const moved = stmt(this.db, 'UPDATE spaces SET version = version + 1, epoch = ?, updated_at = ?, delta_bytes = delta_bytes + length(CAST(? AS BLOB)) + length(CAST(? AS BLOB)) WHERE id = ? AND version = ?')
        .run(d.epoch, now(), ops, paths, spaceId, expectedVersion);
      if (moved.changes !== 1) return null;
      if (config) stmt(this.db, 'UPDATE spaces SET config = ? WHERE id = ?').run(JSON.stringify(config), spaceId);
      const stored: StoredDelta = { ...d, version: expectedVersion + 1, createdAt: now() };
      stmt(this.db, 'INSERT INTO space_deltas (space_id, version, epoch, from_version, ops, paths, author, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(spaceId, stored.version, stored.epoch, stored.fromVersion, ops, paths, stored.author, stored.createdAt);
      return stored;
    }).immediate();
    await (config ? durable(this.db) : this.logged());
    return stored;
  }

  async deltasSince(spaceId: string, after: number, limit: number): Promise<StoredDelta[]> {
    const rows = stmt(this.db, 'SELECT version, epoch, from_version, ops, paths, author, created_at FROM space_deltas WHERE space_id = ? AND version > ? ORDER BY version LIMIT ?')
      .all(spaceId, after, limit) as DeltaDbRow[];
    return rows.map(fromDelta);
  }

  async lastWrites(spaceId: string): Promise<{ oldestVersion: number | null; byPath: Map<string, number> }> {
    // Two statements: SQLite reads a lone MIN or MAX off the index, but scans every row for both at once.
    const lo = (stmt(this.db, 'SELECT MIN(version) AS v FROM space_deltas WHERE space_id = ?').get(spaceId) as { v: number | null }).v;
    const hi = (stmt(this.db, 'SELECT MAX(version) AS v FROM space_deltas WHERE space_id = ?').get(spaceId) as { v: number | null }).v;
    const byPath = new Map<string, number>();
    if (lo === null || hi === null) return { oldestVersion: null, byPath };
    // SQLite reads the paths (json_each) and keeps one row per distinct path; chunks of versions, oldest
    // first, so a later chunk's version replaces an earlier one, and other work runs between them.
    const chunk = stmt(
      this.db,
      'SELECT j.value AS path, MAX(d.version) AS version FROM space_deltas d, json_each(d.paths) j WHERE d.space_id = ? AND d.version >= ? AND d.version < ? GROUP BY j.value',
    );
    for (let from = lo; from <= hi; from += SUMMARY_CHUNK) {
      if (from > lo) await setImmediate();
      for (const r of chunk.all(spaceId, from, from + SUMMARY_CHUNK) as Array<{ path: string; version: number }>) byPath.set(r.path, r.version);
    }
    return { oldestVersion: lo - 1, byPath };
  }

  async pruneDeltas(spaceId: string, before: number, upTo = Number.MAX_SAFE_INTEGER): Promise<number> {
    return write(this.db, () => {
      // Only a prefix of the log goes (it stays contiguous even if the clock stepped back): the scan from
      // the oldest delta stops at the first one to keep, so a checkpoint costs the deltas it drops.
      const keep = stmt(this.db, 'SELECT version FROM space_deltas WHERE space_id = ? AND version <= ? AND created_at >= ? ORDER BY version LIMIT 1')
        .get(spaceId, upTo, before) as { version: number } | undefined;
      const below = keep ? keep.version : upTo + 1;
      const dropped = stmt(this.db, 'SELECT COUNT(*) AS n, COALESCE(SUM(length(CAST(ops AS BLOB)) + length(CAST(paths AS BLOB))), 0) AS bytes FROM space_deltas WHERE space_id = ? AND version < ?')
        .get(spaceId, below) as { n: number; bytes: number };
      if (dropped.n > 0) {
        stmt(this.db, 'DELETE FROM space_deltas WHERE space_id = ? AND version < ?').run(spaceId, below);
        stmt(this.db, 'UPDATE spaces SET delta_bytes = MAX(0, delta_bytes - ?) WHERE id = ?').run(dropped.bytes, spaceId);
      }
      const oldest = stmt(this.db, 'SELECT MIN(version) AS v FROM space_deltas WHERE space_id = ?').get(spaceId) as { v: number | null };
      const space = stmt(this.db, 'SELECT version FROM spaces WHERE id = ?').get(spaceId) as { version: number } | undefined;
      // A client may resume from the version just before the oldest retained delta.
      return oldest.v !== null ? oldest.v - 1 : (space?.version ?? 0);
    });
  }

  async delete(id: string): Promise<void> {
    await write(this.db, () => {
      stmt(this.db, 'DELETE FROM space_deltas WHERE space_id = ?').run(id);
      stmt(this.db, 'DELETE FROM space_members WHERE space_id = ?').run(id);
      stmt(this.db, 'DELETE FROM spaces WHERE id = ?').run(id);
    });
  }

  async joinMember(m: Omit<MemberRow, 'joinedAt' | 'leftAt' | 'removedAt'>): Promise<MemberRow> {
    stmt(
      this.db,
      `INSERT INTO space_members (space_id, id, user_id, org_id, role, display_name, joined_at, left_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)
       ON CONFLICT (space_id, id) DO UPDATE SET joined_at = excluded.joined_at, left_at = NULL, expires_at = excluded.expires_at`,
    ).run(m.spaceId, m.id, m.userId, m.orgId, m.role, m.displayName, now(), m.expiresAt);
    await this.logged();
    return (await this.getMember(m.spaceId, m.id))!;
  }

  async expiredMembers(at: number): Promise<Array<{ spaceId: string; id: string }>> {
    const rows = stmt(this.db, 'SELECT space_id, id FROM space_members WHERE left_at IS NULL AND expires_at < ?').all(at) as Array<{ space_id: string; id: string }>;
    return rows.map((r) => ({ spaceId: r.space_id, id: r.id }));
  }

  async getMember(spaceId: string, id: string): Promise<MemberRow | null> {
    const r = stmt(this.db, 'SELECT * FROM space_members WHERE space_id = ? AND id = ?').get(spaceId, id) as MemberDbRow | undefined;
    return r ? fromMember(r) : null;
  }

  async listMembers(spaceId: string): Promise<MemberRow[]> {
    const rows = stmt(this.db, 'SELECT * FROM space_members WHERE space_id = ? AND left_at IS NULL ORDER BY joined_at, id').all(spaceId) as MemberDbRow[];
    return rows.map(fromMember);
  }

  async countMembers(spaceId: string): Promise<number> {
    return (stmt(this.db, 'SELECT COUNT(*) AS n FROM space_members WHERE space_id = ? AND left_at IS NULL').get(spaceId) as { n: number }).n;
  }

  async leaveMember(spaceId: string, id: string, removed = false): Promise<boolean> {
    const t = now();
    if (removed) {
      // Removal also bars a member that had already disconnected.
      const r = await written(this.db, () =>
        stmt(this.db, 'UPDATE space_members SET left_at = COALESCE(left_at, ?), removed_at = ? WHERE space_id = ? AND id = ? AND removed_at IS NULL').run(t, t, spaceId, id),
      );
      return r.changes === 1;
    }
    const left = stmt(this.db, 'UPDATE space_members SET left_at = ? WHERE space_id = ? AND id = ? AND left_at IS NULL').run(t, spaceId, id).changes === 1;
    await this.logged();
    return left;
  }

  async leaveAll(): Promise<void> {
    await written(this.db, () => stmt(this.db, 'UPDATE space_members SET left_at = ? WHERE left_at IS NULL').run(now()));
  }
}

export interface MemberDbRow {
  space_id: string;
  id: string;
  user_id: string;
  org_id: string;
  role: Role;
  display_name: string | null;
  joined_at: number;
  left_at: number | null;
  removed_at: number | null;
  expires_at: number | null;
}

export const fromMember = (r: MemberDbRow): MemberRow => ({
  spaceId: r.space_id,
  id: r.id,
  userId: r.user_id,
  orgId: r.org_id,
  role: r.role,
  displayName: r.display_name,
  joinedAt: r.joined_at,
  leftAt: r.left_at,
  removedAt: r.removed_at,
  expiresAt: r.expires_at,
});
