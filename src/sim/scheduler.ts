/**
 * The scheduler owns the engine and every simulation resident in it: HQE sessions (long-lived, persisted,
 * streamed) and HQE runs (ephemeral, awaited). One loop advances the whole batch; every other engine call
 * (add, patch, export, remove) is serialised with it, between advances.
 *
 * In a cluster (docs/engine.md, "Sessions in a cluster") a session is simulated by the node that holds its
 * lease, and every write for it is fenced by that lease: the scheduler takes the lease before it admits a
 * session, gives it up when the session leaves its engine, and drops a session at once, without writing,
 * when its lease is lost. Step and close requests for a session another node holds are forwarded there.
 */
import { type NodeCluster, soloCluster } from '../cluster/node.js';
import { RpcRemoteError, RpcTimeout } from '../cluster/rpc.js';
import type { NormalizedConfig } from '../model/config.js';
import { specFromConfig } from '../model/spec.js';
import { type Engine, Flag, type SimReport, type SimStatus, type TickRecord } from '../engine/types.js';
import { checkpointText, stateOfCheckpointText } from '../engine/checkpoint.js';
import { type Fence, FencedError, type Lease, type LeaseResource } from '../store/leases.js';
import type { NewSessionEvent, SessionChange, SessionEvent, SessionRef, SessionRow, SessionStatus, SessionStore } from '../store/sessions.js';
import {
  type CommitListener, NotOwnerError, type Outcome, OwnerUnreachableError, SessionFeeds, sessionResource, type StepReply,
  StepTickets,
} from './session-cluster.js';
import type { Quotas, UsageMeter } from './quotas.js';
import { ADVANCE_MS, ADVANCE_MS_LIVE, ADVANCE_WORK, ADVANCE_WORK_LIVE, newShare, type Share, shareAdvance } from './fair-share.js';
import { eventsOf, type HqeRunResult, resultFromRecords, type Snapshot, snapshotOf } from './run.js';

export type HqeEventType = 'hqe.plateau' | 'hqe.converged' | 'hqe.failed';

export interface SchedulerDeps {
  engine: Engine;
  sessions: SessionStore;
  /**
   * Called for each event a session emits, and awaited before the event is stored: a crash in between
   * means the event is emitted again after recovery (at least once), never lost. Events already stored
   * (replayed after recovery) are not emitted again.
   */
  onEvent?: (orgId: string, type: HqeEventType, data: Record<string, unknown>) => Promise<void>;
  onError?: (err: unknown) => void;
  /** How often a running session's engine state is checkpointed to the store. */
  checkpointEveryMs?: number;
  /** The session_storage_bytes quota: a session whose stored events reach it is closed (docs/tenancy.md). */
  quotas?: Quotas;
  /** Metering of stored bytes (storage_bytes_written). */
  usage?: UsageMeter;
  /** Bytes the org stores now (for the storage_bytes quota). */
  storageUsed?: (orgId: string) => Promise<number>;
  /** Leases, forwarding and commit notices between nodes; by default a single process (soloCluster). */
  cluster?: NodeCluster;
  /** Told when a session changes hands (taken over here, or dropped because another node took it). */
  onWarning?: (message: string, fields: Record<string, unknown>) => void;
}

/** Statuses of a session that runs (or must): whoever holds no lease on one takes it over. */
const ACTIVE: ReadonlySet<SessionStatus> = new Set(['initializing', 'running']);
/** Sessions one periodic scan looks at for take-over (the scan at start reads them all). */
const SCAN_PAGE = 32;

interface Waiter {
  target: number;
  resolve: (s: Snapshot) => void;
  reject: (err: Error) => void;
}

interface Resident {
  engineId: number;
  config: NormalizedConfig;
  status: SimStatus;
  step: number;
  restart: number;
  /** The org whose share of the engine this simulation runs in ('' for runs started outside the API). */
  orgId: string;
  /** Its place in the fair sharing of advances (shareAdvance). */
  share: Share;
  /** Sessions only. */
  session?: {
    id: string;
    orgId: string;
    waiters: Waiter[];
    lastSnapshot: Snapshot | null;
    lastCheckpoint: number;
    /** Bytes of its stored events (its storage charge). */
    storedBytes: number;
    /**
     * The furthest step the session has reported. After recovery the engine replays from the checkpoint,
     * behind this: the stored session never moves backwards and step targets count from here.
     */
    highWater: number;
    /** The highest seq of its events this node committed; null until its first commit here (SessionCommit.after). */
    lastSeq: number | null;
  };
  /** Runs only. */
  run?: { records: TickRecord[]; warnings: string[]; started: number; resolve: (r: HqeRunResult) => void; reject: (e: Error) => void };
}

/**
 * Another owner of simulations in the shared batch (live spaces): asked, under the engine lock, which of
 * its simulations tick in the next advance, and given the reports after it.
 */
export interface Ticker {
  /** Tick limits of the ticker's simulations for the next advance (0 holds one), and when it next needs one. */
  prepare(engine: Engine, now: number): Promise<{ limits: Map<number, number>; wakeAt: number | null }>;
  settle(reports: Map<number, SimReport>): Promise<void>;
}

export class SessionEndedError extends Error {
  constructor(readonly status: SessionStatus) {
    super(`the session has ended (${status})`);
  }
}

const EVENT_TYPES: Partial<Record<string, HqeEventType>> = { plateau: 'hqe.plateau', converged: 'hqe.converged', failed: 'hqe.failed' };

export class Scheduler {
  private readonly residents = new Map<number, Resident>();
  private readonly bySession = new Map<string, Resident>();
  /** The step request of each session that runs last (POST .../step is serialised per session). */
  private readonly stepping = new Map<string, Promise<Snapshot>>();
  /** The org of each session in `stepping` (the hqe_sessions quota counts them). */
  private readonly steppingOrg = new Map<string, string>();
  private engineLock: Promise<unknown> = Promise.resolve();
  private wake: (() => void) | null = null;
  private ticker: Ticker | null = null;
  /**
   * Engine time and HQE work of recent advances (decaying sums): their ratio, milliseconds per unit of
   * work, sizes each advance's budget. Weighted by work, so tiny advances (mostly fixed costs) hardly count.
   */
  private measured = { ms: 0, work: 0 };
  /** Advances so far (the fair share's clock). */
  private advances = 0;
  private stopping = false;
  private loopDone: Promise<void> | null = null;
  private simSteps = 0;
  private readonly cluster: NodeCluster;
  private readonly feeds: SessionFeeds;
  /** Steps other nodes forwarded here that are still running. */
  private readonly tickets = new StepTickets<Snapshot>();
  /** Sessions being created here: not yet admitted, and not to be taken over. */
  private readonly creating = new Set<string>();
  /** Requests acting on a session here (step, close), by session: its lease is not given up under them. */
  private readonly pinned = new Map<string, number>();
  private scanTimer: NodeJS.Timeout | null = null;
  private scanning: Promise<void> | null = null;
  /** Where the next periodic scan for sessions without an owner continues (null: from the start). */
  private scanAfter: string | null = null;

  constructor(private readonly deps: SchedulerDeps) {
    this.cluster = deps.cluster ?? soloCluster();
    this.feeds = new SessionFeeds(this.cluster.broker, (err) => this.deps.onError?.(err));
    // What other nodes forward to the holder of a session's lease. Replies carry an Outcome rather than
    // throwing, so that a refusal keeps its status and code whatever the Rpc's own error mapping is.
    this.cluster.handle('session.step', (args, from) => {
      const { id, orgId, steps } = args as { id: string; orgId: string; steps: number };
      return this.tickets.hold(this.outcome(this.here(id, orgId, () => this.stepHere(id, steps, orgId))), from);
    });
    this.cluster.handle('session.stepResult', (args, from) => this.tickets.poll(String((args as { ticket: unknown }).ticket), from));
    this.cluster.handle('session.close', (args) => {
      const { id, orgId } = args as { id: string; orgId: string };
      return this.outcome(this.here(id, orgId, () => this.closeHere(id)).then(() => null));
    });
  }

  get engineInfo(): Engine['info'] {
    return this.deps.engine.info;
  }

  get engine(): Engine {
    return this.deps.engine;
  }

  /** The engine that runs a simulation of `config` here (an f32 engine sends bands it cannot resolve to CPU f64). */
  engineInfoFor(config: NormalizedConfig): Engine['info'] {
    return this.deps.engine.infoFor(specFromConfig(config));
  }

  attach(ticker: Ticker): void {
    this.ticker = ticker;
  }

  /** Run `fn` between advances, with nothing else touching the engine. */
  exclusive<T>(fn: (engine: Engine) => Promise<T>): Promise<T> {
    return this.withEngine(() => fn(this.deps.engine));
  }

  /** Wake the loop (new work, or a space that starts ticking). */
  kick(): void {
    this.wake?.();
  }

  /**
   * Resume every session that was running when the process stopped and that no other node holds, then
   * start the loop; from then on, every third of the lease TTL, take over sessions whose owner is gone.
   */
  async start(): Promise<void> {
    // All of them, this node's own leases of a previous run included (its heartbeat renewed them).
    await this.scan(Infinity, this.cluster.nodeId);
    this.loopDone = this.loop();
    this.scanTimer = setInterval(() => {
      this.scanning ??= this.scan(1)
        .catch((err: unknown) => this.deps.onError?.(err))
        .finally(() => {
          this.scanning = null;
        });
    }, this.cluster.leaseTtlMs / 3);
    this.scanTimer.unref();
  }

  /** Stops the loop and checkpoints every running session (fenced); the caller then hands the leases over. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.scanTimer) clearInterval(this.scanTimer);
    await this.scanning;
    this.wake?.();
    await this.loopDone;
    await this.withEngine(async () => {
      for (const r of [...this.residents.values()]) {
        if (!r.session || r.status !== 'running') continue;
        try {
          await this.checkpoint(r);
        } catch (err) {
          if (!(err instanceof FencedError)) throw err;
          this.lose(r);
        }
      }
    });
    for (const r of this.residents.values()) r.run?.reject(new Error('server shutting down'));
  }

  /** Ownership's onLost for `session:<id>`: another node took the session; drop it without writing. */
  leaseLost(resource: LeaseResource): void {
    if (!resource.startsWith('session:')) return;
    const id = resource.slice('session:'.length);
    void this.withEngine(async () => {
      const r = this.bySession.get(id);
      if (r) this.lose(r);
    });
  }

  stats(): { sessions: number; runs: number; simSteps: number } {
    let sessions = 0;
    let runs = 0;
    for (const r of this.residents.values()) {
      if (r.status !== 'running') continue;
      if (r.session) sessions++;
      else runs++;
    }
    return { sessions, runs, simSteps: this.simSteps };
  }

  /**
   * Sessions of one org that run (its hqe_sessions quota counts these): those running in the engine, and
   * those a step request is about to run again (a completed session is out of the engine until stepped).
   * `except`: the session a step is asked for, which does not count against itself.
   */
  runningSessionsOf(orgId: string, except?: string): number {
    const ids = new Set<string>();
    for (const r of this.residents.values()) if (r.session && r.orgId === orgId && r.status === 'running') ids.add(r.session.id);
    for (const [id, org] of this.steppingOrg) if (org === orgId) ids.add(id);
    if (except !== undefined) ids.delete(except);
    return ids.size;
  }

  /** Throws QuotaExceededError when the org's stored bytes reached its storage_bytes quota: it starts nothing that stores more. */
  async checkStorage(orgId: string): Promise<void> {
    if (this.deps.quotas && this.deps.storageUsed) await this.deps.quotas.checkCap(orgId, 'storage_bytes', await this.deps.storageUsed(orgId));
  }

  async createSession(id: string, orgId: string, config: NormalizedConfig): Promise<SessionRow> {
    const resource = sessionResource(id);
    this.creating.add(id);
    try {
      if (!(await this.cluster.acquire(resource, orgId))) throw new Error(`the lease of the new session ${id} is held by another node`);
      const row = await this.deps.sessions.create({ id, orgId, config, status: 'running' });
      await this.withEngine(async () => {
        const r = this.admit(row);
        try {
          // The first event of every stream, before the loop can append any of the simulation's.
          await this.commit(r, [statusEvent('running', 0, 0)]);
        } catch (err) {
          this.evict(r);
          throw err;
        }
      });
      this.kick();
      return row;
    } catch (err) {
      // A row left behind runs wherever the next scan takes it.
      await this.cluster.release(resource).catch(() => undefined);
      throw err;
    } finally {
      this.creating.delete(id);
    }
  }

  /** Run a config to its end inside the shared batch, in `orgId`'s share of the engine. */
  run(config: NormalizedConfig, warnings: string[], orgId = ''): Promise<HqeRunResult> {
    return new Promise<HqeRunResult>((resolve, reject) => {
      this.withEngine(async () => {
        const engineId = this.deps.engine.add(specFromConfig(config));
        this.residents.set(engineId, {
          engineId, config, status: 'running', step: 0, restart: 0, orgId, share: newShare(config),
          run: { records: [], warnings, started: performance.now(), resolve, reject },
        });
        this.kick();
      }).catch(reject);
    });
  }

  /**
   * Advance a session `steps` further than where it is now (extending its schedule) and resolve with the
   * snapshot of that state, or of the state it ended on first. On the node that holds the session's lease
   * (taken here when free); forwarded to that node otherwise.
   */
  step(sessionId: string, steps: number, orgId: string): Promise<Snapshot> {
    return this.routed(sessionId, orgId, () => this.stepHere(sessionId, steps, orgId), async (owner) => {
      let reply = await this.callOwner<StepReply<Snapshot>>(owner, 'session.step', { id: sessionId, orgId, steps });
      // A long step answers with a ticket: ask again until its snapshot is there.
      while (!reply.done) reply = await this.callOwner<StepReply<Snapshot>>(owner, 'session.stepResult', { ticket: reply.ticket });
      return unwrap(reply.outcome, sessionId);
    });
  }

  /** step() on this node, which holds the lease. */
  private stepHere(sessionId: string, steps: number, orgId: string): Promise<Snapshot> {
    // One at a time per session: each request's target is where the previous one left the session.
    const run = (this.stepping.get(sessionId) ?? Promise.resolve()).then(
      () => this.stepNow(sessionId, steps),
      () => this.stepNow(sessionId, steps),
    );
    this.stepping.set(sessionId, run);
    this.steppingOrg.set(sessionId, orgId);
    const forget = (): void => {
      if (this.stepping.get(sessionId) !== run) return;
      this.stepping.delete(sessionId);
      this.steppingOrg.delete(sessionId);
    };
    run.then(forget, forget);
    return run;
  }

  private stepNow(sessionId: string, steps: number): Promise<Snapshot> {
    return new Promise<Snapshot>((resolve, reject) => {
      this.withEngine(async () => {
        let r = this.bySession.get(sessionId);
        if (!r) {
          // A completed session is out of the engine, and a running one whose owner is gone is not here
          // yet: bring it back from its checkpoint (this node holds its lease).
          const row = await this.deps.sessions.get(sessionId);
          if (row && (row.status === 'completed' || ACTIVE.has(row.status))) r = this.admitHeld(row);
          else throw new SessionEndedError(row?.status ?? 'closed');
        }
        if (!r.session || (r.status !== 'running' && r.status !== 'completed')) throw new SessionEndedError(r.status as SessionStatus);
        const target = Math.max(r.step, r.session.highWater) + steps;
        this.deps.engine.patch(r.engineId, { extraSteps: steps, snapshotAt: target });
        const row = await this.deps.sessions.get(sessionId);
        const change = { extraSteps: (row?.extraSteps ?? 0) + steps, status: 'running' as const };
        try {
          if (r.status === 'completed') await this.commit(r, [statusEvent('running', r.step, r.restart)], change);
          else await this.deps.sessions.update(sessionId, change, this.fenceOf(sessionId));
        } catch (err) {
          if (!(err instanceof FencedError)) throw err;
          // Nothing was written: the step may be asked of the new owner.
          this.lose(r);
          throw new NotOwnerError(sessionId);
        }
        r.status = 'running';
        r.session.waiters.push({ target, resolve, reject });
        this.kick();
      }).catch(reject);
    });
  }

  /** Close a session, on the node that holds its lease (as step()). */
  close(sessionId: string, orgId: string): Promise<void> {
    return this.routed(sessionId, orgId, () => this.closeHere(sessionId), async (owner) => {
      unwrap(await this.callOwner<Outcome<null>>(owner, 'session.close', { id: sessionId, orgId }), sessionId);
    });
  }

  private async closeHere(sessionId: string): Promise<void> {
    await this.withEngine(async () => {
      const r = this.bySession.get(sessionId);
      if (r?.session) {
        try {
          await this.commit(r, [statusEvent('closed', r.step, r.restart)], { status: 'closed' });
        } catch (err) {
          if (!(err instanceof FencedError)) throw err;
          this.lose(r);
          throw new NotOwnerError(sessionId);
        }
        this.evict(r);
        for (const w of r.session.waiters) w.reject(new SessionEndedError('closed'));
        await this.cluster.release(sessionResource(sessionId));
        return;
      }
      const row = await this.deps.sessions.get(sessionId);
      if (!row) return;
      const fence = this.fenceOf(sessionId);
      if (row.status === 'completed' || ACTIVE.has(row.status)) {
        // Not in an engine (completed, or its owner is gone): its streams still get the closing status.
        await this.appendFenced(sessionId, row.orgId, [statusEvent('closed', row.step, row.restart)], { status: 'closed' }, null);
      } else await this.deps.sessions.update(sessionId, { status: 'closed' }, fence);
    });
  }

  /**
   * The commits of a session (SessionCommit), whichever node makes them, from now on; resolves once
   * subscribed (rejects when the broker cannot be reached). Returns the unsubscribe function.
   */
  subscribe(sessionId: string, listener: CommitListener): Promise<() => void> {
    return this.feeds.subscribe(sessionId, listener);
  }

  // ---- cluster ----

  /**
   * Runs `here` on this node when it holds the session's lease or can take it (free or lapsed), else
   * `remote` with the holder. A holder that turns out not to hold it any more, or a lease that changes
   * hands meanwhile, is asked about again, for up to a lease TTL and a second.
   */
  private async routed<T>(sessionId: string, orgId: string, here: () => Promise<T>, remote: (owner: Lease) => Promise<T>): Promise<T> {
    const resource = sessionResource(sessionId);
    const deadline = Date.now() + this.cluster.leaseTtlMs + 1000;
    for (;;) {
      let wait = 100;
      try {
        if (this.cluster.fence(resource)) return await this.here(sessionId, orgId, here);
        const [lease] = await this.cluster.leases([resource]);
        const other = lease && lease.nodeId !== this.cluster.nodeId && lease.expiresAt > Date.now() ? lease : null;
        if (!other) return await this.here(sessionId, orgId, here);
        if (this.cluster.broker.health().kind !== 'memory') return await remote(other);
        // Without a broker no other node can be reached: the holder is this node's previous run under
        // another name. Its lease lapses by itself.
        wait = Math.max(50, other.expiresAt - Date.now() + 20);
      } catch (err) {
        if (!(err instanceof NotOwnerError)) throw err;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new OwnerUnreachableError(`session ${sessionId} is changing hands; retry shortly`);
      await new Promise((resolve) => setTimeout(resolve, Math.min(wait, left)));
    }
  }

  /**
   * `fn` on this node under the session's lease (taken when free or lapsed; NotOwnerError, with nothing
   * done, while another node holds it). The lease is given up afterwards unless the session stays here.
   */
  private async here<T>(sessionId: string, orgId: string, fn: () => Promise<T>): Promise<T> {
    const resource = sessionResource(sessionId);
    this.pinned.set(sessionId, (this.pinned.get(sessionId) ?? 0) + 1);
    try {
      if (!this.cluster.fence(resource) && !(await this.cluster.acquire(resource, orgId))) throw new NotOwnerError(sessionId);
      return await fn();
    } finally {
      const n = (this.pinned.get(sessionId) ?? 1) - 1;
      if (n > 0) this.pinned.set(sessionId, n);
      else this.pinned.delete(sessionId);
      await this.withEngine(async () => {
        if (!this.bySession.has(sessionId) && !this.pinned.has(sessionId) && !this.creating.has(sessionId) && this.cluster.fence(resource)) {
          await this.cluster.release(resource);
        }
      }).catch((err: unknown) => this.deps.onError?.(err));
    }
  }

  /** A call to the session's owner; no answer in time is OwnerUnreachableError, to retry once its lease may have lapsed. */
  private async callOwner<T>(owner: Lease, method: string, args: unknown): Promise<T> {
    try {
      return await this.cluster.call<T>(owner.nodeId, method, args);
    } catch (err) {
      if (err instanceof RpcTimeout) {
        throw new OwnerUnreachableError(`the node that simulates this session (${owner.nodeId}) did not answer; retry shortly`, Math.max(1, Math.ceil((owner.expiresAt - Date.now()) / 1000)));
      }
      // The owner could not run the handler at all (an older node, one stopping).
      if (err instanceof RpcRemoteError && err.remote.status === 503) throw new OwnerUnreachableError(`node ${owner.nodeId}: ${err.remote.message}`);
      throw err;
    }
  }

  /** What a forwarded call answers: its result, or its error by status and code. */
  private outcome<T>(p: Promise<T>): Promise<Outcome<T>> {
    return p.then(
      (value) => ({ ok: true as const, value }),
      (err: unknown) => {
        if (err instanceof SessionEndedError) return { ok: false as const, error: { status: 409, code: 'session_ended', message: err.message, meta: { status: err.status } } };
        if (err instanceof NotOwnerError) return { ok: false as const, error: { status: 503, code: 'not_owner', message: err.message } };
        if (err instanceof OwnerUnreachableError) {
          return { ok: false as const, error: { status: 503, code: 'owner_unreachable', message: err.message, meta: { retryAfterSeconds: err.retryAfterSeconds } } };
        }
        this.deps.onError?.(err);
        return { ok: false as const, error: { status: 500, code: 'internal', message: err instanceof Error ? err.message : String(err) } };
      },
    );
  }

  /**
   * Looks for active sessions that no node holds (their owner died or left) and takes over those whose
   * lease it gets: `pages` pages of SCAN_PAGE, from where the last scan stopped. `heldBy`: also those whose
   * lease this node holds in the store but not here (its previous run's).
   */
  private async scan(pages: number, heldBy?: string): Promise<void> {
    for (let page = 0; page < pages && !this.stopping; page++) {
      const refs = await this.deps.sessions.listUnowned({ after: this.scanAfter, limit: SCAN_PAGE, ...(heldBy ? { heldBy } : {}) });
      this.scanAfter = refs.length === SCAN_PAGE ? refs[refs.length - 1]!.id : null;
      await this.takeOver(refs);
      if (this.scanAfter === null) return;
    }
  }

  private async takeOver(refs: SessionRef[]): Promise<void> {
    const todo = refs.filter((s) => !this.bySession.has(s.id) && !this.creating.has(s.id) && !this.pinned.has(s.id));
    if (todo.length === 0) return;
    const leases = new Map((await this.cluster.leases(todo.map((s) => sessionResource(s.id)))).map((l) => [l.resource, l]));
    for (const s of todo) {
      const resource = sessionResource(s.id);
      const before = leases.get(resource);
      if (before && before.nodeId !== this.cluster.nodeId && before.expiresAt > Date.now()) continue;
      const lease = await this.cluster.acquire(resource, s.orgId);
      if (!lease || this.stopping) continue;
      await this.withEngine(async () => {
        if (this.bySession.has(s.id)) return;
        const row = await this.deps.sessions.get(s.id);
        if (!row || !ACTIVE.has(row.status)) {
          await this.cluster.release(resource);
          return;
        }
        // From its checkpoint, as after a restart: what it replays up to highWater is stored once.
        this.admit(row);
        if (before && before.nodeId !== this.cluster.nodeId) this.deps.onWarning?.('session taken over', { sessionId: s.id, from: before.nodeId, epoch: lease.epoch });
      });
      this.kick();
    }
  }

  /** The fence of this node's lease on the session, for a write; FencedError (nothing written) when it holds none. */
  private fenceOf(sessionId: string): Fence {
    const resource = sessionResource(sessionId);
    const fence = this.cluster.fence(resource);
    if (!fence) throw new FencedError(resource, { nodeId: this.cluster.nodeId, epoch: 0 });
    return fence;
  }

  /** Another node holds the session now: out of the engine at once, without a write; its waiters may retry there. */
  private lose(r: Resident): void {
    const s = r.session;
    if (!s || this.bySession.get(s.id) !== r) return;
    this.evict(r);
    for (const w of s.waiters) w.reject(new OwnerUnreachableError(`session ${s.id} moved to another node; retry`));
    s.waiters = [];
    this.deps.onWarning?.('session dropped: its lease is lost', { sessionId: s.id, step: r.step });
    // Forgets it in this node's leases; the store's lease, another node's now, is not touched.
    void this.cluster.release(sessionResource(s.id)).catch(() => undefined);
  }

  // ---- internals ----

  private withEngine<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.engineLock.then(fn);
    this.engineLock = next.catch(() => undefined);
    return next;
  }

  /** admit() a session whose lease this node holds (NotOwnerError otherwise). */
  private admitHeld(row: SessionRow): Resident {
    if (!this.cluster.fence(sessionResource(row.id))) throw new NotOwnerError(row.id);
    return this.admit(row);
  }

  private admit(row: SessionRow): Resident {
    const checkpoint = row.checkpoint ? stateOfCheckpointText(row.checkpoint) : undefined;
    const engineId = this.deps.engine.add(specFromConfig(row.config), checkpoint);
    // Steps granted by POST .../step after the checkpoint (or with none) are granted again.
    const missing = row.extraSteps - (checkpoint?.extraSteps ?? 0);
    if (missing > 0) this.deps.engine.patch(engineId, { extraSteps: missing });
    const resident: Resident = {
      engineId, config: row.config, status: row.status === 'completed' ? 'completed' : 'running',
      step: checkpoint?.step ?? 0, restart: checkpoint?.restart ?? 0,
      orgId: row.orgId, share: newShare(row.config),
      session: { id: row.id, orgId: row.orgId, waiters: [], lastSnapshot: null, lastCheckpoint: Date.now(), highWater: row.step, storedBytes: row.eventBytes, lastSeq: null },
    };
    this.residents.set(engineId, resident);
    this.bySession.set(row.id, resident);
    return resident;
  }

  private evict(r: Resident): void {
    if (this.residents.get(r.engineId) !== r) return;
    this.deps.engine.remove(r.engineId);
    this.residents.delete(r.engineId);
    if (r.session) this.bySession.delete(r.session.id);
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      let sleepUntil: number | null;
      try {
        sleepUntil = await this.withEngine(() => this.advanceOnce());
      } catch (err) {
        this.deps.onError?.(err);
        sleepUntil = Date.now() + 100;
      }
      if (sleepUntil === null) {
        // Let requests in between advances even when the engine ran on this thread.
        await new Promise<void>((resolve) => setImmediate(resolve));
        continue;
      }
      // stop() may have come during the advance, when there was no sleep to wake: do not start one.
      if (this.stopping) break;
      await new Promise<void>((resolve) => {
        const timer = Number.isFinite(sleepUntil) ? setTimeout(resolve, Math.max(0, sleepUntil! - Date.now())) : null;
        this.wake = () => {
          if (timer) clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  /** One advance of the batch; or, with nothing to run, the time to sleep until (Infinity: until kicked). */
  private async advanceOnce(): Promise<number | null> {
    const running: Resident[] = [];
    for (const r of this.residents.values()) if (r.status === 'running') running.push(r);
    const plan = this.ticker ? await this.ticker.prepare(this.deps.engine, Date.now()) : { limits: new Map<number, number>(), wakeAt: null };
    let ticking = false;
    for (const n of plan.limits.values()) if (n > 0) ticking = true;
    if (running.length === 0 && !ticking) return plan.wakeAt ?? Infinity;
    // Live spaces tick at their publishHz: keep HQE advances shorter while any is live.
    const [targetMs, floor] = plan.wakeAt !== null ? [ADVANCE_MS_LIVE, ADVANCE_WORK_LIVE] : [ADVANCE_MS, ADVANCE_WORK];
    const budget = this.measured.work > 0 ? Math.max(floor, (targetMs * this.measured.work) / this.measured.ms) : ADVANCE_WORK;
    // Every HQE simulation gets its own limit (0 holds it still; the ticker's simulations keep theirs);
    // the engine's `ticks` is the largest of them.
    const limits = new Map(plan.limits);
    let ticks = ticking ? 1 : 0;
    let work = 0;
    const grants = shareAdvance(running, budget, this.advances++);
    for (const r of running) {
      const n = grants.get(r) ?? 0;
      limits.set(r.engineId, n);
      ticks = Math.max(ticks, n);
      work += n * r.share.cost;
    }
    const started = performance.now();
    const reports = await this.deps.engine.advance(ticks, limits);
    if (work > 0) {
      this.measured.ms = 0.8 * this.measured.ms + Math.max(1e-3, performance.now() - started);
      this.measured.work = 0.8 * this.measured.work + work;
    }
    await this.process(reports);
    await this.ticker?.settle(reports);
    return null;
  }

  private async process(reports: Map<number, SimReport>): Promise<void> {
    for (const [engineId, report] of reports) {
      const r = this.residents.get(engineId);
      if (!r || r.status !== 'running') continue;
      this.simSteps += Math.max(0, report.step - r.step);
      r.step = report.step;
      r.restart = report.restart;
      r.status = report.status;
      if (r.run) {
        r.run.records.push(...report.records);
        if (report.status !== 'running') {
          this.evict(r);
          try {
            r.run.resolve(resultFromRecords(r.run.records, r.config, r.run.warnings, this.engineInfoFor(r.config), r.run.started));
          } catch (err) {
            r.run.reject(err as Error);
          }
        }
      } else if (r.session) {
        try {
          await this.processSession(r, report);
        } catch (err) {
          // Another node took the session: this one stops simulating it at once.
          if (!(err instanceof FencedError)) throw err;
          this.lose(r);
        }
      }
    }
  }

  private async processSession(r: Resident, report: SimReport): Promise<void> {
    const s = r.session!;
    const events: NewSessionEvent[] = [];
    let latest: TickRecord | null = null;
    const reached: Array<() => void> = [];
    for (const rec of report.records) {
      latest = rec;
      const base = { step: rec.step, restart: rec.restart };
      if (rec.flags & Flag.METRICS) events.push({ kind: 'metrics', ...base, body: JSON.stringify({ ...base, metrics: rec.metrics }) });
      if (rec.flags & Flag.SNAPSHOT) {
        const snap = snapshotOf(rec, r.config.observables);
        s.lastSnapshot = snap;
        events.push({ kind: 'snapshot', ...base, body: JSON.stringify(snap) });
        // A step request resolves with the snapshot at its target (patched snapshotAt), not a later one,
        // once the session's row shows it (below): a read right after the reply sees that step.
        s.waiters = s.waiters.filter((w) => (snap.step >= w.target ? (reached.push(() => w.resolve(snap)), false) : true));
      }
      for (const e of eventsOf(rec)) events.push({ kind: 'event', ...base, body: JSON.stringify({ ...e, metrics: rec.metrics }) });
    }
    if (report.status !== 'running') events.push(statusEvent(report.status, report.step, report.restart));
    for (const e of events) {
      if (e.kind !== 'event' || !this.deps.onEvent) continue;
      const body = JSON.parse(e.body) as { type: string };
      const type = EVENT_TYPES[body.type];
      if (type && !(await this.deps.sessions.hasEvent(s.id, e))) await this.deps.onEvent(s.orgId, type, { sessionId: s.id, ...body });
    }
    let change: SessionChange | undefined;
    if (report.step >= s.highWater || report.status !== 'running') {
      s.highWater = Math.max(s.highWater, report.step);
      change = { status: report.status as SessionStatus, step: report.step, restart: report.restart, ...(latest ? { metrics: latest.metrics } : {}) };
    }
    // The row changes with its events; listeners and step replies only then: whoever reads the session
    // after an event or a reply sees its row there.
    await this.commit(r, events, change);
    for (const resolve of reached) resolve();
    if (report.status === 'running' && (await this.overStorage(r))) return;
    if (report.status !== 'running') {
      // Ended before the target: the state it ended on (its terminal snapshot).
      for (const w of s.waiters) {
        if (s.lastSnapshot) w.resolve(s.lastSnapshot);
        else w.reject(new SessionEndedError(report.status as SessionStatus));
      }
      s.waiters = [];
    }
    if (report.status === 'completed') {
      // Checkpointed, because POST .../step may extend it, and out of the engine until then (a step brings
      // it back from the checkpoint, on whichever node takes its lease): finished sessions must not pile up
      // in engine memory.
      await this.checkpoint(r);
      this.evict(r);
      await this.cluster.release(sessionResource(s.id));
    } else if (report.status !== 'running') {
      this.evict(r);
      await this.cluster.release(sessionResource(s.id));
    } else if (Date.now() - s.lastCheckpoint > (this.deps.checkpointEveryMs ?? 5000)) {
      await this.checkpoint(r);
    }
  }

  /**
   * Store a resident session's new events (a replayed one is stored once) with its row's `change`, fenced
   * by its lease, and announce those inserted.
   */
  private async commit(r: Resident, events: NewSessionEvent[], change?: SessionChange): Promise<void> {
    const s = r.session;
    if (!s || (events.length === 0 && !change)) return;
    const { bytes, lastSeq } = await this.appendFenced(s.id, s.orgId, events, change, s.lastSeq);
    s.storedBytes += bytes;
    if (lastSeq !== null) s.lastSeq = lastSeq;
  }

  /** appendEvents fenced by this node's lease; meters and announces what was inserted (`after`: SessionCommit.after). */
  private async appendFenced(
    sessionId: string, orgId: string, events: NewSessionEvent[], change: SessionChange | undefined, after: number | null,
  ): Promise<{ bytes: number; lastSeq: number | null }> {
    const inserted = (await this.deps.sessions.appendEvents(sessionId, events, change, this.fenceOf(sessionId)))
      .filter((e): e is SessionEvent => e !== null)
      .sort((a, b) => a.seq - b.seq);
    let bytes = 0;
    for (const e of inserted) bytes += Buffer.byteLength(e.body);
    this.deps.usage?.add(orgId, 'storage_bytes_written', bytes);
    const last = inserted[inserted.length - 1];
    if (last) this.feeds.publish(sessionId, { after, upTo: last.seq, events: inserted });
    return { bytes, lastSeq: last?.seq ?? null };
  }

  /**
   * A session whose stored events reached its org's session_storage_bytes quota is closed: it can store no
   * more, and running on unrecorded would bill work nobody can read. Its final status event says why.
   */
  private async overStorage(r: Resident): Promise<boolean> {
    const s = r.session;
    if (!s || !this.deps.quotas) return false;
    const limit = await this.deps.quotas.limit(s.orgId, 'session_storage_bytes');
    if (s.storedBytes < limit) return false;
    const reason = { reason: 'quota_exceeded', quota: 'session_storage_bytes', limit, used: s.storedBytes };
    const event: NewSessionEvent = { kind: 'status', step: r.step, restart: r.restart, body: JSON.stringify({ status: 'closed', step: r.step, restart: r.restart, ...reason }) };
    await this.commit(r, [event], { status: 'closed' });
    this.evict(r);
    for (const w of s.waiters) w.reject(new SessionEndedError('closed'));
    s.waiters = [];
    await this.cluster.release(sessionResource(s.id));
    return true;
  }

  private async checkpoint(r: Resident): Promise<void> {
    const checkpoint = await this.deps.engine.exportState(r.engineId);
    await this.deps.sessions.update(r.session!.id, { checkpoint: checkpointText(checkpoint), step: r.step, restart: r.restart }, this.fenceOf(r.session!.id));
    r.session!.lastCheckpoint = Date.now();
  }
}

/** A forwarded call's result, or what its owner threw, as this node throws it. */
function unwrap<T>(outcome: Outcome<T>, sessionId: string): T {
  if (outcome.ok) return outcome.value;
  const { status, code, message, meta } = outcome.error;
  if (code === 'session_ended') throw new SessionEndedError((meta?.status as SessionStatus | undefined) ?? 'closed');
  if (code === 'not_owner') throw new NotOwnerError(sessionId);
  if (status === 503) throw new OwnerUnreachableError(message, typeof meta?.retryAfterSeconds === 'number' ? meta.retryAfterSeconds : 1);
  throw new Error(`the session's owner failed: ${message}`);
}

function statusEvent(status: SimStatus | SessionStatus, step: number, restart: number): NewSessionEvent {
  return { kind: 'status', step, restart, body: JSON.stringify({ status, step, restart }) };
}
