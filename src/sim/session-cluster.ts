/**
 * HQE sessions across nodes (docs/engine.md, "Sessions in a cluster"). One node, the holder of a session's
 * lease (`session:<id>`), simulates it and makes every write for it, fenced by that lease; the others forward
 * step and close requests to it (Rpc) and follow its commits on the broker channel `session:<id>`. This file
 * holds what crosses between nodes for sessions: the cluster seam the scheduler needs, the commit notices,
 * the per-node fan-out of those notices, and the tickets of steps forwarded from other nodes.
 */
import type { Unsubscribe } from '../cluster/broker.js';
import type { NodeCluster } from '../cluster/node.js';
import type { LeaseResource } from '../store/leases.js';
import type { SessionEvent } from '../store/sessions.js';

export const sessionResource = (sessionId: string): LeaseResource => `session:${sessionId}`;
export const sessionChannel = (sessionId: string): string => `session:${sessionId}`;

/**
 * The node asked to act for a session does not hold its lease, and did nothing: the caller may ask again
 * (the lease's holder, or itself once the lease is free).
 */
export class NotOwnerError extends Error {
  constructor(readonly sessionId: string) {
    super(`this node does not hold the lease of session ${sessionId}`);
  }
}

/**
 * The node that simulates the session did not answer (it died or is cut off), or the session changed hands
 * while a request waited on it: answered 503 owner_unreachable with Retry-After.
 */
export class OwnerUnreachableError extends Error {
  constructor(
    message: string,
    readonly retryAfterSeconds = 1,
  ) {
    super(message);
  }
}

/**
 * What a session's owner announces after each commit of its events: to this node's listeners directly, and
 * on the broker channel `session:<id>` to the other nodes'. A listener that has every event of the session
 * up to `after` can take `events` as they are; any other (or one given no `events`) reads the store after
 * what it has, up to `upTo`: the store is the record, and a session's seqs commit in order.
 */
export interface SessionCommit {
  /** The highest seq of the session committed before these; null when unknown (the owner just took it). */
  after: number | null;
  /** The highest seq committed now. */
  upTo: number;
  /** The events inserted, in seq order; absent from a notice too large to carry them. */
  events?: SessionEvent[];
}

/** A notice carries its events when their bodies take at most this many bytes (a broker message stays small). */
export const COMMIT_EVENTS_MAX_BYTES = 64 * 1024;

export type CommitListener = (commit: SessionCommit) => void;

function parseCommit(payload: string): SessionCommit | null {
  try {
    const c = JSON.parse(payload) as Partial<SessionCommit>;
    if (typeof c.upTo !== 'number' || (c.after !== null && typeof c.after !== 'number')) return null;
    return { after: c.after, upTo: c.upTo, ...(Array.isArray(c.events) ? { events: c.events } : {}) };
  } catch {
    return null;
  }
}

/**
 * The commits of sessions, for this node's listeners (SSE streams): those this node makes, given directly,
 * and those other nodes publish, through one broker subscription per followed session.
 */
export class SessionFeeds {
  private readonly listeners = new Map<string, Set<CommitListener>>();
  private readonly remote = new Map<string, Promise<Unsubscribe>>();

  constructor(
    private readonly broker: NodeCluster['broker'],
    private readonly onError: (err: unknown) => void,
  ) {}

  /**
   * Follows `sessionId`'s commits from every node; resolves once the broker subscription is in place (so a
   * reader that subscribes before it reads the store misses nothing). Returns the unsubscribe function.
   */
  async subscribe(sessionId: string, listener: CommitListener): Promise<() => void> {
    let set = this.listeners.get(sessionId);
    if (!set) this.listeners.set(sessionId, (set = new Set()));
    set.add(listener);
    const drop = (): void => {
      set.delete(listener);
      if (set.size > 0 || this.listeners.get(sessionId) !== set) return;
      this.listeners.delete(sessionId);
      const sub = this.remote.get(sessionId);
      this.remote.delete(sessionId);
      void sub?.then((unsubscribe) => unsubscribe()).catch(() => undefined);
    };
    let sub = this.remote.get(sessionId);
    if (!sub) {
      sub = this.broker.subscribe(sessionChannel(sessionId), (payload) => {
        const commit = parseCommit(payload);
        if (commit) this.dispatch(sessionId, commit);
      });
      this.remote.set(sessionId, sub);
    }
    try {
      await sub;
    } catch (err) {
      if (this.remote.get(sessionId) === sub) this.remote.delete(sessionId);
      drop();
      throw err;
    }
    return drop;
  }

  /** Announces a commit this node made: to its own listeners now, to the other nodes' through the broker. */
  publish(sessionId: string, commit: SessionCommit): void {
    this.dispatch(sessionId, commit);
    let bytes = 0;
    for (const e of commit.events ?? []) bytes += Buffer.byteLength(e.body);
    const notice: SessionCommit = bytes <= COMMIT_EVENTS_MAX_BYTES ? commit : { after: commit.after, upTo: commit.upTo };
    // Not awaited: the engine loop does not wait on the broker. A notice lost here only delays the other
    // nodes' streams until the next one, or their periodic read of the store.
    this.broker.publish(sessionChannel(sessionId), JSON.stringify(notice)).catch(this.onError);
  }

  private dispatch(sessionId: string, commit: SessionCommit): void {
    for (const l of this.listeners.get(sessionId) ?? []) l(commit);
  }
}

/** A forwarded call's outcome as it travels back: the result, or the error by status and code. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: { status: number; code: string; message: string; meta?: Record<string, unknown> } };

/** What a forwarded step answers: its outcome, or a ticket to ask for it again (the step is still running). */
export type StepReply<T> = { done: true; outcome: Outcome<T> } | { done: false; ticket: string };

/**
 * How long the owner holds a call open waiting for a step's result before it answers with a ticket: well
 * inside the Rpc timeout (2 s), so that a step of any length never reads as an unreachable owner.
 */
export const STEP_HOLD_MS = 1000;
/** A ticket nobody asked about for this long is forgotten (its caller gave up). */
const TICKET_IDLE_MS = 30_000;

/**
 * Steps forwarded to this node and still running, by ticket: the caller asks again until the outcome is
 * there (each call held open up to STEP_HOLD_MS), so that a long step never hits the Rpc timeout.
 */
export class StepTickets<T> {
  private readonly open = new Map<string, { from: string; outcome: Promise<Outcome<T>>; touched: number }>();
  private seq = 0;

  /** Waits up to STEP_HOLD_MS for `outcome`; a ticket for it if it is not there yet. */
  async hold(outcome: Promise<Outcome<T>>, from: string): Promise<StepReply<T>> {
    this.sweep();
    const now = await within(outcome, STEP_HOLD_MS);
    if (now) return { done: true, outcome: now };
    const ticket = `${Date.now().toString(36)}.${++this.seq}`;
    this.open.set(ticket, { from, outcome, touched: Date.now() });
    return { done: false, ticket };
  }

  async poll(ticket: string, from: string): Promise<StepReply<T>> {
    this.sweep();
    const entry = this.open.get(ticket);
    if (!entry || entry.from !== from) {
      return { done: true, outcome: { ok: false, error: { status: 503, code: 'owner_unreachable', message: 'the step is no longer known to the node that ran it' } } };
    }
    entry.touched = Date.now();
    const now = await within(entry.outcome, STEP_HOLD_MS);
    if (!now) return { done: false, ticket };
    this.open.delete(ticket);
    return { done: true, outcome: now };
  }

  private sweep(): void {
    const before = Date.now() - TICKET_IDLE_MS;
    for (const [ticket, e] of this.open) if (e.touched < before) this.open.delete(ticket);
  }
}

/** `p`'s value if it settles within `ms`, else null (`p` never rejects here). */
async function within<V>(p: Promise<V>, ms: number): Promise<V | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
