/** Live spaces: their config and status, the durable delta log, and members. */
import type { NormalizedSpaceConfig } from '../model/space.js';
import { type Db, now, stmt, updateRow } from './db.js';

export type SpaceStatus = 'active' | 'locked' | 'archived';

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

export interface SpaceStore {
  create(row: Pick<SpaceRow, 'id' | 'orgId' | 'name' | 'config'>): Promise<SpaceRow>;
  get(id: string): Promise<SpaceRow | null>;
  list(orgId: string, after: { createdAt: number; id: string } | null, limit: number): Promise<SpaceRow[]>;
  update(id: string, change: Partial<Pick<SpaceRow, 'config' | 'status' | 'epoch' | 'checkpoint' | 'checkpointVersion'>>): Promise<void>;
  /**
   * Append a delta as the next version, atomically with the space's version: durable when this resolves.
   * `expectedVersion` guards against a concurrent writer (false: nothing written).
   */
  appendDelta(spaceId: string, expectedVersion: number, delta: Omit<StoredDelta, 'version' | 'createdAt'>): Promise<StoredDelta | null>;
  /** Deltas with version > after, oldest first. */
  deltasSince(spaceId: string, after: number, limit: number): Promise<StoredDelta[]>;
  /** Drop deltas created before `before` (ms); returns the oldest version still retained (or the current one). */
  pruneDeltas(spaceId: string, before: number): Promise<number>;
}

interface Row {
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

interface DeltaRow {
  version: number;
  epoch: number;
  from_version: number;
  ops: string;
  paths: string;
  author: string | null;
  created_at: number;
}

const fromRow = (r: Row): SpaceRow => ({
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

const fromDelta = (r: DeltaRow): StoredDelta => ({
  version: r.version,
  epoch: r.epoch,
  fromVersion: r.from_version,
  ops: JSON.parse(r.ops) as unknown[],
  paths: JSON.parse(r.paths) as string[],
  author: r.author,
  createdAt: r.created_at,
});

const COLUMNS: Record<string, string> = { config: 'config', status: 'status', epoch: 'epoch', checkpoint: 'checkpoint', checkpointVersion: 'checkpoint_version' };

export class SqliteSpaceStore implements SpaceStore {
  constructor(private readonly db: Db) {}

  async create(row: Pick<SpaceRow, 'id' | 'orgId' | 'name' | 'config'>): Promise<SpaceRow> {
    const t = now();
    stmt(this.db, "INSERT INTO spaces (id, org_id, name, config, status, created_at, updated_at) VALUES (?, ?, ?, ?, 'active', ?, ?)")
      .run(row.id, row.orgId, row.name, JSON.stringify(row.config), t, t);
    return (await this.get(row.id))!;
  }

  async get(id: string): Promise<SpaceRow | null> {
    const r = stmt(this.db, 'SELECT * FROM spaces WHERE id = ?').get(id) as Row | undefined;
    return r ? fromRow(r) : null;
  }

  async list(orgId: string, after: { createdAt: number; id: string } | null, limit: number): Promise<SpaceRow[]> {
    const rows = after
      ? (stmt(this.db, 'SELECT * FROM spaces WHERE org_id = ? AND (created_at, id) > (?, ?) ORDER BY created_at, id LIMIT ?').all(orgId, after.createdAt, after.id, limit) as Row[])
      : (stmt(this.db, 'SELECT * FROM spaces WHERE org_id = ? ORDER BY created_at, id LIMIT ?').all(orgId, limit) as Row[]);
    return rows.map(fromRow);
  }

  async update(id: string, change: Partial<Pick<SpaceRow, 'config' | 'status' | 'epoch' | 'checkpoint' | 'checkpointVersion'>>): Promise<void> {
    updateRow(this.db, 'spaces', id, change, COLUMNS, ['config']);
  }

  async appendDelta(spaceId: string, expectedVersion: number, d: Omit<StoredDelta, 'version' | 'createdAt'>): Promise<StoredDelta | null> {
    return this.db.transaction(() => {
      const moved = stmt(this.db, 'UPDATE spaces SET version = version + 1, updated_at = ? WHERE id = ? AND version = ?').run(now(), spaceId, expectedVersion);
      if (moved.changes !== 1) return null;
      const stored: StoredDelta = { ...d, version: expectedVersion + 1, createdAt: now() };
      stmt(this.db, 'INSERT INTO space_deltas (space_id, version, epoch, from_version, ops, paths, author, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(spaceId, stored.version, stored.epoch, stored.fromVersion, JSON.stringify(stored.ops), JSON.stringify(stored.paths), stored.author, stored.createdAt);
      return stored;
    })();
  }

  async deltasSince(spaceId: string, after: number, limit: number): Promise<StoredDelta[]> {
    const rows = stmt(this.db, 'SELECT version, epoch, from_version, ops, paths, author, created_at FROM space_deltas WHERE space_id = ? AND version > ? ORDER BY version LIMIT ?')
      .all(spaceId, after, limit) as DeltaRow[];
    return rows.map(fromDelta);
  }

  async pruneDeltas(spaceId: string, before: number): Promise<number> {
    return this.db.transaction(() => {
      stmt(this.db, 'DELETE FROM space_deltas WHERE space_id = ? AND created_at < ?').run(spaceId, before);
      const oldest = stmt(this.db, 'SELECT MIN(version) AS v FROM space_deltas WHERE space_id = ?').get(spaceId) as { v: number | null };
      const space = stmt(this.db, 'SELECT version FROM spaces WHERE id = ?').get(spaceId) as { version: number } | undefined;
      // A client may resume from the version just before the oldest retained delta.
      return oldest.v !== null ? oldest.v - 1 : (space?.version ?? 0);
    })();
  }
}
