/**
 * The scheduler owns the engine and every simulation resident in it: HQE sessions (long-lived, persisted,
 * streamed) and HQE runs (ephemeral, awaited). One loop advances the whole batch; every other engine call
 * (add, patch, export, remove) is serialised with it, between advances.
 */
import type { NormalizedConfig } from '../model/config.js';
import { specFromConfig } from '../model/spec.js';
import { type Engine, Flag, type SimCheckpoint, type SimReport, type SimStatus, type TickRecord } from '../engine/types.js';
import type { NewSessionEvent, SessionChange, SessionEvent, SessionRow, SessionStatus, SessionStore } from '../store/sessions.js';
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
}

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
  private readonly listeners = new Map<string, Set<(e: SessionEvent) => void>>();
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

  constructor(private readonly deps: SchedulerDeps) {}

  get engineInfo(): Engine['info'] {
    return this.deps.engine.info;
  }

  get engine(): Engine {
    return this.deps.engine;
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

  /** Resume every session that was running when the process stopped, then start the loop. */
  async start(): Promise<void> {
    for (const row of await this.deps.sessions.listActive()) {
      await this.withEngine(async () => this.admit(row));
    }
    this.loopDone = this.loop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.loopDone;
    await this.withEngine(async () => {
      for (const r of this.residents.values()) if (r.session && r.status === 'running') await this.checkpoint(r);
    });
    for (const r of this.residents.values()) r.run?.reject(new Error('server shutting down'));
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
    const row = await this.deps.sessions.create({ id, orgId, config, status: 'running' });
    // The first event of every stream, before the loop can append any of the simulation's.
    await this.deps.sessions.appendEvents(id, [statusEvent('running', 0, 0)]);
    await this.withEngine(async () => this.admit(row));
    this.kick();
    return row;
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
   * snapshot of that state, or of the state it ended on first.
   */
  step(sessionId: string, steps: number, orgId: string): Promise<Snapshot> {
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
          // A session that completed before a restart is not resident: bring it back from its checkpoint.
          const row = await this.deps.sessions.get(sessionId);
          if (row?.status === 'completed') r = this.admit(row);
          else throw new SessionEndedError(row?.status ?? 'closed');
        }
        if (!r.session || (r.status !== 'running' && r.status !== 'completed')) throw new SessionEndedError(r.status as SessionStatus);
        const target = Math.max(r.step, r.session.highWater) + steps;
        this.deps.engine.patch(r.engineId, { extraSteps: steps, snapshotAt: target });
        const row = await this.deps.sessions.get(sessionId);
        const change = { extraSteps: (row?.extraSteps ?? 0) + steps, status: 'running' as const };
        if (r.status === 'completed') this.notify(r, await this.append(r, [statusEvent('running', r.step, r.restart)], change));
        else await this.deps.sessions.update(sessionId, change);
        r.status = 'running';
        r.session.waiters.push({ target, resolve, reject });
        this.kick();
      }).catch(reject);
    });
  }

  async close(sessionId: string): Promise<void> {
    await this.withEngine(async () => {
      const r = this.bySession.get(sessionId);
      if (r?.session) {
        this.evict(r);
        for (const w of r.session.waiters) w.reject(new SessionEndedError('closed'));
        this.notify(r, await this.append(r, [statusEvent('closed', r.step, r.restart)], { status: 'closed' }));
      } else await this.deps.sessions.update(sessionId, { status: 'closed' });
    });
  }

  /** Live events of a session, after those already stored. Returns the unsubscribe function. */
  subscribe(sessionId: string, listener: (e: SessionEvent) => void): () => void {
    let set = this.listeners.get(sessionId);
    if (!set) this.listeners.set(sessionId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(sessionId);
    };
  }

  // ---- internals ----

  private withEngine<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.engineLock.then(fn);
    this.engineLock = next.catch(() => undefined);
    return next;
  }

  private admit(row: SessionRow): Resident {
    const checkpoint = row.checkpoint ? (JSON.parse(row.checkpoint) as SimCheckpoint) : undefined;
    const engineId = this.deps.engine.add(specFromConfig(row.config), checkpoint);
    // Steps granted by POST .../step after the checkpoint (or with none) are granted again.
    const missing = row.extraSteps - (checkpoint?.extraSteps ?? 0);
    if (missing > 0) this.deps.engine.patch(engineId, { extraSteps: missing });
    const resident: Resident = {
      engineId, config: row.config, status: row.status === 'completed' ? 'completed' : 'running',
      step: checkpoint?.step ?? 0, restart: checkpoint?.restart ?? 0,
      orgId: row.orgId, share: newShare(row.config),
      session: { id: row.id, orgId: row.orgId, waiters: [], lastSnapshot: null, lastCheckpoint: Date.now(), highWater: row.step, storedBytes: row.eventBytes },
    };
    this.residents.set(engineId, resident);
    this.bySession.set(row.id, resident);
    return resident;
  }

  private evict(r: Resident): void {
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
            r.run.resolve(resultFromRecords(r.run.records, r.config, r.run.warnings, this.deps.engine.info, r.run.started));
          } catch (err) {
            r.run.reject(err as Error);
          }
        }
      } else if (r.session) {
        await this.processSession(r, report);
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
    this.notify(r, await this.append(r, events, change));
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
      // it back from the checkpoint): finished sessions must not pile up in engine memory.
      await this.checkpoint(r);
      this.evict(r);
    } else if (report.status !== 'running') {
      this.evict(r);
    } else if (Date.now() - s.lastCheckpoint > (this.deps.checkpointEveryMs ?? 5000)) {
      await this.checkpoint(r);
    }
  }

  /** Store a session's new events (a replayed one is stored once) with its row's `change`; returns those inserted. */
  private async append(r: Resident, events: NewSessionEvent[], change?: SessionChange): Promise<SessionEvent[]> {
    if (!r.session || (events.length === 0 && !change)) return [];
    const inserted = (await this.deps.sessions.appendEvents(r.session.id, events, change)).filter((e): e is SessionEvent => e !== null);
    let bytes = 0;
    for (const e of inserted) bytes += Buffer.byteLength(e.body);
    r.session.storedBytes += bytes;
    this.deps.usage?.add(r.session.orgId, 'storage_bytes_written', bytes);
    return inserted;
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
    this.evict(r);
    for (const w of s.waiters) w.reject(new SessionEndedError('closed'));
    s.waiters = [];
    const reason = { reason: 'quota_exceeded', quota: 'session_storage_bytes', limit, used: s.storedBytes };
    const event: NewSessionEvent = { kind: 'status', step: r.step, restart: r.restart, body: JSON.stringify({ status: 'closed', step: r.step, restart: r.restart, ...reason }) };
    this.notify(r, await this.append(r, [event], { status: 'closed' }));
    return true;
  }

  private notify(r: Resident, inserted: SessionEvent[]): void {
    const listeners = r.session ? this.listeners.get(r.session.id) : undefined;
    if (listeners) for (const e of inserted) for (const l of listeners) l(e);
  }

  private async checkpoint(r: Resident): Promise<void> {
    const checkpoint = await this.deps.engine.exportState(r.engineId);
    await this.deps.sessions.update(r.session!.id, { checkpoint: JSON.stringify(checkpoint), step: r.step, restart: r.restart });
    r.session!.lastCheckpoint = Date.now();
  }
}

function statusEvent(status: SimStatus | SessionStatus, step: number, restart: number): NewSessionEvent {
  return { kind: 'status', step, restart, body: JSON.stringify({ status, step, restart }) };
}
