/**
 * HQE sessions and their events on Postgres (the SessionStore contract of ../sessions.ts). An event is
 * stored once: the schema's unique key is over a digest of its body (a btree entry cannot hold a large body).
 */
import type pg from 'pg';
import type { Fence } from '../leases.js';
import {
  ENDED_STATUSES, fromSessionRow, type NewSessionEvent, SESSION_UPDATE_COLUMNS, type SessionChange, type SessionDbRow, type SessionEvent, type SessionEventKind,
  type SessionRef, type SessionRow, type SessionStore, type UnownedQuery,
} from '../sessions.js';
import { checkFence, DB_NOW_MS, type Queryable, one, query, tx, updateRow } from './pool.js';

const ends = (change: SessionChange): boolean => change.status !== undefined && ENDED_STATUSES.has(change.status);

/** Store `change`; a status that ends the session stamps ended_at the first time only (retention counts from there). */
async function updateSession(c: Queryable, id: string, change: SessionChange): Promise<void> {
  await updateRow(c, 'hqe_sessions', id, change, SESSION_UPDATE_COLUMNS, ['metrics']);
  if (ends(change)) await c.query('UPDATE hqe_sessions SET ended_at = COALESCE(ended_at, $2) WHERE id = $1', [id, Date.now()]);
}

export class PgSessionStore implements SessionStore {
  constructor(private readonly pool: pg.Pool) {}

  async create(row: Pick<SessionRow, 'id' | 'orgId' | 'config' | 'status'>): Promise<SessionRow> {
    const t = Date.now();
    const r = await one<SessionDbRow>(
      this.pool,
      'INSERT INTO hqe_sessions (id, org_id, config, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) RETURNING *',
      [row.id, row.orgId, JSON.stringify(row.config), row.status, t],
    );
    return fromSessionRow(r!);
  }

  async get(id: string): Promise<SessionRow | null> {
    const r = await one<SessionDbRow>(this.pool, 'SELECT * FROM hqe_sessions WHERE id = $1', [id]);
    return r ? fromSessionRow(r) : null;
  }

  async listActive(): Promise<SessionRow[]> {
    const rows = await query<SessionDbRow>(this.pool, "SELECT * FROM hqe_sessions WHERE status IN ('initializing', 'running') ORDER BY created_at, id COLLATE \"C\"");
    return rows.map(fromSessionRow);
  }

  async listUnowned(q: UnownedQuery): Promise<SessionRef[]> {
    // A lease counts while it has not lapsed, unless it is `heldBy`'s own.
    const rows = await query<{ id: string; org_id: string }>(
      this.pool,
      `SELECT s.id, s.org_id FROM hqe_sessions s
       WHERE s.status IN ('initializing', 'running') AND s.id COLLATE "C" > $1
         AND NOT EXISTS (
           SELECT 1 FROM leases l WHERE l.resource = 'session:' || s.id AND l.expires_at > ${DB_NOW_MS} AND l.node_id IS DISTINCT FROM $3
         )
       ORDER BY s.id COLLATE "C" LIMIT $2`,
      [q.after ?? '', q.limit, q.heldBy ?? null],
    );
    return rows.map((r) => ({ id: r.id, orgId: r.org_id }));
  }

  async update(id: string, change: SessionChange, fence?: Fence): Promise<void> {
    if (fence) {
      await tx(this.pool, async (c) => {
        await checkFence(c, `session:${id}`, fence);
        await updateSession(c, id, change);
      });
    } else if (ends(change)) await tx(this.pool, (c) => updateSession(c, id, change));
    else await updateRow(this.pool, 'hqe_sessions', id, change, SESSION_UPDATE_COLUMNS, ['metrics']);
  }

  async appendEvents(sessionId: string, events: NewSessionEvent[], change?: SessionChange, fence?: Fence): Promise<Array<SessionEvent | null>> {
    return tx(this.pool, async (c) => {
      if (fence) await checkFence(c, `session:${sessionId}`, fence);
      // Appends to one session take turns on its row, so its seqs commit in order: a reader paging with
      // afterSeq never passes a seq that a slower transaction commits later.
      await c.query('SELECT 1 FROM hqe_sessions WHERE id = $1 FOR NO KEY UPDATE', [sessionId]);
      const out: Array<SessionEvent | null> = events.map(() => null);
      if (events.length > 0) {
        // One statement for the batch, inserted in order (seqs follow it). An event already stored, or
        // repeated earlier in the batch, conflicts and is skipped; each inserted row is matched back to the
        // first input it came from.
        const rows = await query<{ seq: number; i: number }>(
          c,
          `WITH input AS (
             SELECT * FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[]) WITH ORDINALITY AS t(kind, step, restart, body, i)
           ), ins AS (
             INSERT INTO hqe_session_events (session_id, kind, step, restart, body)
             SELECT $1::text, kind, step, restart, body FROM input ORDER BY i
             ON CONFLICT (session_id, kind, step, restart, body_digest) DO NOTHING
             RETURNING seq, kind, step, restart, body
           )
           SELECT DISTINCT ON (ins.seq) ins.seq, input.i
           FROM ins JOIN input ON input.kind = ins.kind AND input.step = ins.step AND input.restart = ins.restart AND input.body = ins.body
           ORDER BY ins.seq, input.i`,
          [sessionId, events.map((e) => e.kind), events.map((e) => e.step), events.map((e) => e.restart), events.map((e) => e.body)],
        );
        let bytes = 0;
        for (const r of rows) {
          const e = events[r.i - 1]!;
          out[r.i - 1] = { seq: r.seq, ...e };
          // Charged as the SQLite store charges it: UTF-8 bytes of the body, inserted rows only.
          bytes += Buffer.byteLength(e.body);
        }
        if (bytes > 0) await c.query('UPDATE hqe_sessions SET event_bytes = event_bytes + $2 WHERE id = $1', [sessionId, bytes]);
      }
      if (change) await updateSession(c, sessionId, change);
      return out;
    });
  }

  async hasEvent(sessionId: string, e: NewSessionEvent): Promise<boolean> {
    // The key the schema dedups on, so this agrees with appendEvents.
    const row = await one(
      this.pool,
      "SELECT 1 FROM hqe_session_events WHERE session_id = $1 AND kind = $2 AND step = $3 AND restart = $4 AND body_digest = utf8_sha224($5::text)",
      [sessionId, e.kind, e.step, e.restart, e.body],
    );
    return row !== null;
  }

  async events(sessionId: string, afterSeq: number, limit: number, kinds?: SessionEventKind[]): Promise<SessionEvent[]> {
    const filtered = kinds && kinds.length > 0;
    return query<SessionEvent>(
      this.pool,
      `SELECT seq, kind, step, restart, body FROM hqe_session_events WHERE session_id = $1 AND seq > $2 ${filtered ? 'AND kind = ANY($4::text[])' : ''} ORDER BY seq LIMIT $3`,
      filtered ? [sessionId, afterSeq, limit, kinds] : [sessionId, afterSeq, limit],
    );
  }
}
