/** HQE sessions and everything they emitted (snapshots, metrics, events, status changes). */
import type { NormalizedConfig } from '../model/config.js';
import type { Fence } from './leases.js';
import { type Db, now, stmt, updateRow, write, written } from './db.js';
import type { HqeSessionStatus } from '@resonance/sdk/protocol';

export type SessionStatus = HqeSessionStatus;
export type SessionEventKind = 'snapshot' | 'metrics' | 'event' | 'status';

export interface SessionRow {
  id: string;
  orgId: string;
  config: NormalizedConfig;
  status: SessionStatus;
  step: number;
  restart: number;
  metrics: Record<string, number | boolean | null> | null;
  /** Steps added by POST .../step beyond the config's schedule. */
  extraSteps: number;
  /** Engine checkpoint (JSON), when one was taken. */
  checkpoint: string | null;
  /** Bytes of the event bodies stored for it (its storage charge). */
  eventBytes: number;
  /** When it ended for good (converged, plateau, failed, closed); retention counts from here. */
  endedAt: number | null;
  createdAt: number;
  updatedAt: number;
}

export interface SessionEvent {
  seq: number;
  kind: SessionEventKind;
  step: number;
  restart: number;
  body: string;
}

export interface NewSessionEvent {
  kind: SessionEventKind;
  step: number;
  restart: number;
  body: string;
}

export type SessionChange = Partial<Pick<SessionRow, 'status' | 'step' | 'restart' | 'metrics' | 'extraSteps' | 'checkpoint'>>;

/** A session named with its org (the lease of `session:<id>` is taken for that org). */
export interface SessionRef {
  id: string;
  orgId: string;
}

export interface UnownedQuery {
  /** Ids after this one (byte order); null from the start. */
  after: string | null;
  limit: number;
  /** Also those whose lease this node holds: a restarted node's leases of its previous run, renewed by its heartbeat. */
  heldBy?: string;
}

export interface SessionStore {
  create(row: Pick<SessionRow, 'id' | 'orgId' | 'config' | 'status'>): Promise<SessionRow>;
  get(id: string): Promise<SessionRow | null>;
  /** Sessions the scheduler must resume after a restart. */
  listActive(): Promise<SessionRow[]>;
  /**
   * Active sessions (initializing, running) that may need a node to simulate them, by id: their lease
   * (`session:<id>`, src/store/leases.ts) is free or lapsed. Postgres joins its leases table; the embedded
   * store's leases live in its one process (memoryCluster), so it lists every active session and the caller
   * checks their leases.
   */
  listUnowned(query: UnownedQuery): Promise<SessionRef[]>;
  /** `fence`: as for appendEvents. */
  update(id: string, change: SessionChange, fence?: Fence): Promise<void>;
  /**
   * Append events in order, with the session's `change` if any, in one transaction: whoever reads an event
   * reads the row it goes with. An event identical to one already stored (a state visited again after
   * recovery from a checkpoint) is skipped; the result says which were new. With a `fence`, refused with
   * FencedError (nothing written) once the writer no longer holds the session's lease; the embedded store
   * serves one process, which holds every lease, and has nothing to check.
   */
  appendEvents(sessionId: string, events: NewSessionEvent[], change?: SessionChange, fence?: Fence): Promise<Array<SessionEvent | null>>;
  /** Whether this exact event is already stored. */
  hasEvent(sessionId: string, event: NewSessionEvent): Promise<boolean>;
  /** Events after `afterSeq`, oldest first; `kinds` filters. */
  events(sessionId: string, afterSeq: number, limit: number, kinds?: SessionEventKind[]): Promise<SessionEvent[]>;
}

export interface SessionDbRow {
  id: string;
  org_id: string;
  config: string;
  status: SessionStatus;
  step: number;
  restart: number;
  metrics: string | null;
  extra_steps: number;
  checkpoint: string | null;
  event_bytes: number;
  ended_at: number | null;
  created_at: number;
  updated_at: number;
}

export const fromSessionRow = (r: SessionDbRow): SessionRow => ({
  id: r.id,
  orgId: r.org_id,
  config: JSON.parse(r.config) as NormalizedConfig,
  status: r.status,
  step: r.step,
  restart: r.restart,
  metrics: r.metrics ? (JSON.parse(r.metrics) as SessionRow['metrics']) : null,
  extraSteps: r.extra_steps,
  checkpoint: r.checkpoint,
  eventBytes: r.event_bytes,
  endedAt: r.ended_at,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export const SESSION_UPDATE_COLUMNS: Record<string, string> = {
  status: 'status',
  step: 'step',
  restart: 'restart',
  metrics: 'metrics',
  extraSteps: 'extra_steps',
  checkpoint: 'checkpoint',
};

/** Statuses a session never leaves (`completed` may be stepped on). */
export const ENDED_STATUSES: ReadonlySet<SessionStatus> = new Set(['plateau', 'converged', 'failed', 'closed']);

/** Store `change`; a status that ends the session stamps ended_at the first time only (retention counts from there). */
function updateSession(db: Db, id: string, change: SessionChange): void {
  updateRow(db, 'hqe_sessions', id, change, SESSION_UPDATE_COLUMNS, ['metrics']);
  if (change.status !== undefined && ENDED_STATUSES.has(change.status)) stmt(db, 'UPDATE hqe_sessions SET ended_at = COALESCE(ended_at, ?) WHERE id = ?').run(now(), id);
}

export class SqliteSessionStore implements SessionStore {
  private readonly insertEvent;
  private readonly selectGet;

  constructor(private readonly db: Db) {
    this.insertEvent = db.prepare(
      'INSERT OR IGNORE INTO hqe_session_events (session_id, kind, step, restart, body) VALUES (?, ?, ?, ?, ?) RETURNING seq',
    );
    this.selectGet = db.prepare('SELECT * FROM hqe_sessions WHERE id = ?');
  }

  async create(row: Pick<SessionRow, 'id' | 'orgId' | 'config' | 'status'>): Promise<SessionRow> {
    const t = now();
    await written(this.db, () =>
      stmt(this.db, 'INSERT INTO hqe_sessions (id, org_id, config, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)')
        .run(row.id, row.orgId, JSON.stringify(row.config), row.status, t, t),
    );
    return (await this.get(row.id))!;
  }

  async get(id: string): Promise<SessionRow | null> {
    const r = this.selectGet.get(id) as SessionDbRow | undefined;
    return r ? fromSessionRow(r) : null;
  }

  async listActive(): Promise<SessionRow[]> {
    const rows = stmt(this.db, "SELECT * FROM hqe_sessions WHERE status IN ('initializing', 'running') ORDER BY created_at").all() as SessionDbRow[];
    return rows.map(fromSessionRow);
  }

  async listUnowned(q: UnownedQuery): Promise<SessionRef[]> {
    const rows = stmt(this.db, "SELECT id, org_id FROM hqe_sessions WHERE status IN ('initializing', 'running') AND id > ? ORDER BY id LIMIT ?")
      .all(q.after ?? '', q.limit) as Array<{ id: string; org_id: string }>;
    return rows.map((r) => ({ id: r.id, orgId: r.org_id }));
  }

  async update(id: string, change: SessionChange): Promise<void> {
    await write(this.db, () => updateSession(this.db, id, change));
  }

  async appendEvents(sessionId: string, events: NewSessionEvent[], change?: SessionChange): Promise<Array<SessionEvent | null>> {
    return write(this.db, () => {
      let bytes = 0;
      const out = events.map((e) => {
        const r = this.insertEvent.get(sessionId, e.kind, e.step, e.restart, e.body) as { seq: number } | undefined;
        if (r) bytes += Buffer.byteLength(e.body);
        return r ? { seq: r.seq, ...e } : null;
      });
      if (bytes > 0) stmt(this.db, 'UPDATE hqe_sessions SET event_bytes = event_bytes + ? WHERE id = ?').run(bytes, sessionId);
      if (change) updateSession(this.db, sessionId, change);
      return out;
    });
  }

  async hasEvent(sessionId: string, e: NewSessionEvent): Promise<boolean> {
    const row = stmt(this.db, 'SELECT 1 FROM hqe_session_events WHERE session_id = ? AND kind = ? AND step = ? AND restart = ? AND body = ?')
      .get(sessionId, e.kind, e.step, e.restart, e.body);
    return row !== undefined;
  }

  async events(sessionId: string, afterSeq: number, limit: number, kinds?: SessionEventKind[]): Promise<SessionEvent[]> {
    const kindFilter = kinds && kinds.length > 0 ? `AND kind IN (${kinds.map(() => '?').join(', ')})` : '';
    return stmt(this.db, `SELECT seq, kind, step, restart, body FROM hqe_session_events WHERE session_id = ? AND seq > ? ${kindFilter} ORDER BY seq LIMIT ?`)
      .all(sessionId, afterSeq, ...(kinds ?? []), limit) as SessionEvent[];
  }
}
