/** HQE sessions and everything they emitted (snapshots, metrics, events, status changes). */
import type { NormalizedConfig } from '../model/config.js';
import { type Db, now, stmt, updateRow, write, written } from './db.js';

export type SessionStatus = 'initializing' | 'running' | 'plateau' | 'converged' | 'failed' | 'completed' | 'closed';
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

export interface SessionStore {
  create(row: Pick<SessionRow, 'id' | 'orgId' | 'config' | 'status'>): Promise<SessionRow>;
  get(id: string): Promise<SessionRow | null>;
  /** Sessions the scheduler must resume after a restart. */
  listActive(): Promise<SessionRow[]>;
  update(id: string, change: SessionChange): Promise<void>;
  /**
   * Append events in order, with the session's `change` if any, in one transaction: whoever reads an event
   * reads the row it goes with. An event identical to one already stored (a state visited again after
   * recovery from a checkpoint) is skipped; the result says which were new.
   */
  appendEvents(sessionId: string, events: NewSessionEvent[], change?: SessionChange): Promise<Array<SessionEvent | null>>;
  /** Whether this exact event is already stored. */
  hasEvent(sessionId: string, event: NewSessionEvent): Promise<boolean>;
  /** Events after `afterSeq`, oldest first; `kinds` filters. */
  events(sessionId: string, afterSeq: number, limit: number, kinds?: SessionEventKind[]): Promise<SessionEvent[]>;
}

interface Row {
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

const fromRow = (r: Row): SessionRow => ({
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

const COLUMNS: Record<string, string> = {
  status: 'status',
  step: 'step',
  restart: 'restart',
  metrics: 'metrics',
  extraSteps: 'extra_steps',
  checkpoint: 'checkpoint',
};

/** Statuses a session never leaves (`completed` may be stepped on). */
const ENDED: ReadonlySet<SessionStatus> = new Set(['plateau', 'converged', 'failed', 'closed']);

/** Store `change`; a status that ends the session stamps ended_at the first time only (retention counts from there). */
function updateSession(db: Db, id: string, change: SessionChange): void {
  updateRow(db, 'hqe_sessions', id, change, COLUMNS, ['metrics']);
  if (change.status !== undefined && ENDED.has(change.status)) stmt(db, 'UPDATE hqe_sessions SET ended_at = COALESCE(ended_at, ?) WHERE id = ?').run(now(), id);
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
    const r = this.selectGet.get(id) as Row | undefined;
    return r ? fromRow(r) : null;
  }

  async listActive(): Promise<SessionRow[]> {
    const rows = stmt(this.db, "SELECT * FROM hqe_sessions WHERE status IN ('initializing', 'running') ORDER BY created_at").all() as Row[];
    return rows.map(fromRow);
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
