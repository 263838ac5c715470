/**
 * Live spaces (docs/spaces.md). Each active space is a simulation in
 * the scheduler's shared engine batch, ticked at its `policy.publishHz` while at least one realtime
 * connection listens; deltas are durable (the store's log) before they are acknowledged and fanned out,
 * and reach the engine at the next tick boundary, in version order. A space nobody listens to idles (no
 * ticks) and leaves the engine, checkpointed, after `idleEvictMs`; it resumes from the checkpoint plus the
 * logged deltas after it, which is also how it recovers from a crash.
 */
import { randomUUID } from 'node:crypto';
import type { Presence } from '../cluster/broker.js';
import type { NodeCluster } from '../cluster/node.js';
import { type Fence, FencedError } from '../store/leases.js';
import { type Precision, type SimPatch, type SimReport, type SpaceParams, Flag, type Engine } from '../engine/types.js';
import { checkpointText, stateOfCheckpointText } from '../engine/checkpoint.js';
import { applyPhaseEdits } from '../engine/edits.js';
import { type NormalizedSpaceConfig, normalizeSpace } from '../model/space.js';
import { specFromSpace } from '../model/spec.js';
import type { MemberRow, SpaceRow, SpaceStore } from '../store/spaces.js';
import { type AcceptedOp, type Delta, decideDelta } from './deltas.js';
import type { Quotas, UsageMeter } from './quotas.js';
import type { Scheduler, Ticker } from './scheduler.js';
import { carryState, orderBasis } from './space-basis.js';
import { SpaceError } from './space-error.js';
import { frameOf, fromRemoteError, spaceChannel, type SpaceMessage, SpaceRelay, spaceResource, WATCH_TTL_MS } from './space-cluster.js';
import type { BasisOp, DeltaFrame, EventFrame, PhasesFrame, Role, SpaceEventName, SpaceMetrics, SpaceSnapshot, SpaceStatus, TelemetryFrame } from '@resonance/sdk/protocol';

/** Defaults of RESONANCE_REPLAY_MAX_DELTAS and RESONANCE_REPLAY_MAX_BYTES: past either, a resume gets a snapshot. */
export const DEFAULT_REPLAY_MAX_DELTAS = 1000;
export const DEFAULT_REPLAY_MAX_BYTES = 1024 * 1024;

// ---- what listeners receive: the realtime frames of the protocol, as they are ----

/** The path of a basis change in the log (no client op can name it). */
const BASIS_PATH: BasisOp['path'] = '/state/basis';

export interface SpaceListener {
  telemetry(frame: TelemetryFrame, phases: PhasesFrame): void;
  /** `origin` is what the proposer passed to propose() (opaque to the hub): the realtime layer finds its own proposals by it. */
  delta(frame: DeltaFrame, origin?: unknown): void;
  /** A new epoch: the state was replaced. */
  snapshot(snapshot: SpaceSnapshot): void;
  event(frame: EventFrame): void;
  /** The space was archived or deleted: no more frames will come. */
  closed(reason: 'archived' | 'deleted'): void;
}

export { SpaceError } from './space-error.js';

export interface SpacePatch {
  phases?: unknown;
  operators?: unknown;
  entropy?: unknown;
  policy?: unknown;
}

export interface SpaceHubDeps {
  scheduler: Scheduler;
  store: SpaceStore;
  maxBasis: number;
  idleEvictMs: number;
  checkpointEveryMs: number;
  /** A resume replays at most this many deltas (default DEFAULT_REPLAY_MAX_DELTAS); more: a snapshot instead. */
  replayMaxDeltas?: number;
  /** ... and at most this many bytes of stored ops (default DEFAULT_REPLAY_MAX_BYTES). */
  replayMaxBytes?: number;
  /**
   * Per-org quotas (docs/tenancy.md): live_spaces caps the org's spaces resident in the engine,
   * deltas_per_minute its accepted deltas, storage_bytes what a new space may start from.
   */
  quotas?: Quotas;
  /** Metering: deltas, space_minutes, storage_bytes_written. */
  usage?: UsageMeter;
  /** Bytes the org stores now (for the storage_bytes quota). */
  storageUsed?: (orgId: string) => Promise<number>;
  /**
   * Which members have a realtime connection open, on any node (the broker's): a member whose token
   * expired stays while it has one. Absent: none has (a hub without a realtime server).
   */
  presence?: Presence;
  /**
   * The other nodes (space-cluster.ts): this node simulates a space only while it holds its lease; writes
   * to a space another node holds go to that node, and its frames are relayed here. Absent: one process.
   */
  cluster?: NodeCluster;
  /**
   * Mark every member gone at start: right for one process (every connection died with the previous one),
   * wrong for a node of a cluster (the other nodes' connections are open).
   */
  leaveAllOnStart?: boolean;
  /** Webhook events (awaited: a crash after it re-emits, never loses). */
  onEvent?: (orgId: string, name: SpaceEventName, data: Record<string, unknown>) => Promise<void>;
  onError?: (err: unknown) => void;
}

interface Pending {
  sets: Array<[number, number]>;
  shifts: Array<[number, number]>;
  params: Partial<SpaceParams>;
  /** plateauEps, plateauT, collapseThreshold: not patchable, the simulation is re-made from its checkpoint. */
  respec: boolean;
}

interface Live {
  row: SpaceRow;
  engineId: number | null;
  precision: Precision;
  t: number;
  metrics: SpaceMetrics | null;
  phases: number[];
  masses: number[];
  /** Highest version whose deltas the engine holds. */
  applied: number;
  pending: Pending;
  /**
   * The last version that wrote each path (for the conflict check, O(ops) per delta whatever the history's
   * length); entries at or below `oldest` are dropped at checkpoints. Bounded by the distinct valid paths.
   */
  lastWrites: Map<string, number>;
  /** Deltas from before this version are stale (older than the retained history or the epoch). */
  oldest: number;
  epochStart: number;
  listeners: Set<SpaceListener>;
  /** Other nodes that relay the space to listeners of theirs, until when (their watch renews it). */
  remote: Map<string, number>;
  nextTickAt: number;
  idleSince: number;
  lastCheckpointAt: number;
  /** Mutations of one space run one after another. */
  queue: Promise<unknown>;
  /** Mutations queued or running: a space is dropped from memory only when none is. */
  ops: number;
  /** Another node took the space: queued mutations are refused (503), to be retried there. */
  moved?: boolean;
  failed: boolean;
}

const emptyPending = (): Pending => ({ sets: [], shifts: [], params: {}, respec: false });

/** Delta paths that map to engine parameters. */
const PARAM_OF: Record<string, keyof SpaceParams> = {
  '/state/operators/resonanceTarget': 'target',
  '/state/operators/localityBias': 'localityBias',
  '/state/operators/semantic/enabled': 'semantic',
  '/state/operators/mixer/gamma0': 'gamma0',
  '/state/operators/mixer/gammaGrowth': 'gammaGrowth',
  '/state/operators/mixer/gammaMax': 'gammaMax',
  '/state/operators/mixer/temperature0': 'temperature0',
  '/state/operators/mixer/beta': 'beta',
  '/state/entropy/lambda': 'lambda',
};
const RESPEC_PATHS = new Set(['/state/entropy/plateauEps', '/state/entropy/plateauT', '/state/entropy/collapseThreshold']);

const metricsOf = (m: { resonanceStrength: number; coherence: number; locality: number; entropy: number; dominance: number }): SpaceMetrics => {
  const f = (x: number): number | null => (Number.isFinite(x) ? x : null);
  return { resonanceStrength: f(m.resonanceStrength), coherence: f(m.coherence), locality: f(m.locality), entropy: f(m.entropy), dominance: f(m.dominance) };
};

/** Set a leaf of the config by a delta path (/state/<section>/...); returns the new config. */
function withLeaf(config: NormalizedSpaceConfig, path: string, value: number | boolean): NormalizedSpaceConfig {
  const next = structuredClone(config) as unknown as Record<string, Record<string, unknown>>;
  const parts = path.split('/').slice(2);
  let node: Record<string, unknown> = next;
  for (const p of parts.slice(0, -1)) node = node[p] as Record<string, unknown>;
  node[parts[parts.length - 1]!] = value;
  return next as unknown as NormalizedSpaceConfig;
}

/** Leaf paths and values of a config section (for turning a PATCH into set_* ops). */
function leaves(prefix: string, value: unknown, out: Array<[string, unknown]> = []): Array<[string, unknown]> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) leaves(`${prefix}/${k}`, v, out);
  } else out.push([prefix, value]);
  return out;
}

function deepMerge(base: unknown, change: unknown): unknown {
  if (change === null || typeof change !== 'object' || Array.isArray(change) || base === null || typeof base !== 'object' || Array.isArray(base)) return change;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(change)) out[k] = deepMerge(out[k], v);
  return out;
}

const SECTION_OP = { operators: 'set_operator', entropy: 'set_entropy', policy: 'set_policy' } as const;

export class SpaceHub implements Ticker {
  private readonly live = new Map<string, Live>();
  private readonly byEngine = new Map<number, Live>();
  private readonly loading = new Map<string, Promise<Live>>();
  private maintenance: NodeJS.Timeout | null = null;
  /** Spaces another node owns that listeners of this node follow. */
  private readonly relays = new Map<string, SpaceRelay>();
  /** Proposals forwarded to an owner, by token, until their delta comes back through the relay. */
  private readonly origins = new Map<string, unknown>();
  private ownersTimer: NodeJS.Timeout | null = null;

  constructor(private readonly deps: SpaceHubDeps) {}

  async start(): Promise<void> {
    // One process: every connection died with the previous one; members reconnect (and rejoin) with their tokens.
    if (this.deps.leaveAllOnStart ?? true) await this.deps.store.leaveAll();
    this.deps.scheduler.attach(this);
    const cluster = this.deps.cluster;
    if (cluster) {
      this.serveOtherNodes(cluster);
      // A relayed space whose owner stopped renewing its lease is taken over within a quarter of the TTL.
      this.ownersTimer = setInterval(() => void this.checkOwners(cluster).catch((err) => this.deps.onError?.(err)), Math.max(200, cluster.leaseTtlMs / 4));
      this.ownersTimer.unref();
    }
    this.maintenance = setInterval(() => {
      this.deps.scheduler.exclusive(() => this.maintain(Date.now())).catch((err) => this.deps.onError?.(err));
      // Outside the engine lock: leave() waits for the space's queue, whose head may wait for the engine.
      this.expireMembers(Date.now()).catch((err) => this.deps.onError?.(err));
    }, 1000);
    this.maintenance.unref();
  }

  async stop(): Promise<void> {
    if (this.maintenance) clearInterval(this.maintenance);
    if (this.ownersTimer) clearInterval(this.ownersTimer);
    for (const relay of this.relays.values()) await relay.stop();
    this.relays.clear();
    await this.deps.scheduler.exclusive(async (engine) => {
      for (const l of this.live.values()) if (l.engineId !== null) await this.checkpoint(engine, l);
    });
  }

  stats(): { spaces: number; live: number } {
    let live = 0;
    const now = Date.now();
    for (const l of this.live.values()) if (this.listening(l, now)) live++;
    return { spaces: [...this.live.values()].filter((l) => l.engineId !== null).length, live };
  }

  // ---- spaces ----

  /** Validate and create a space (basis ordered by `order`; learned starts ascending: no masses yet). */
  async create(orgId: string, input: unknown): Promise<{ row: SpaceRow; warnings: string[] }> {
    const result = normalizeSpace(input, { maxBasis: this.deps.maxBasis });
    if (!result.ok) throw new SpaceError(400, 'validation_failed', 'the space config is invalid', result.errors);
    const cfg = result.normalized;
    if (this.deps.quotas) {
      await this.deps.quotas.checkCap(orgId, 'spaces', await this.deps.store.count(orgId));
      if (this.deps.storageUsed) await this.deps.quotas.checkCap(orgId, 'storage_bytes', await this.deps.storageUsed(orgId));
    }
    const config = { ...cfg, basis: { ...cfg.basis, primes: orderBasis(cfg.basis.primes, cfg.basis.order) } };
    const row = await this.deps.store.create({ id: `spc_${randomUUID().replaceAll('-', '')}`, orgId, name: config.name, config });
    return { row, warnings: result.warnings };
  }

  async get(id: string): Promise<SpaceRow | null> {
    return this.live.get(id)?.row ?? this.deps.store.get(id);
  }

  list(orgId: string, after: { createdAt: number; id: string } | null, limit: number): Promise<SpaceRow[]> {
    return this.deps.store.list(orgId, after, limit);
  }

  /** Merge-patch phases/operators/entropy/policy; changed leaves become one logged delta (last writer wins). */
  async patch(id: string, change: SpacePatch, author: string | null): Promise<SpaceRow> {
    return this.onOwner(id, 'patch', [change, author], () => this.serial(id, async (l) => {
      this.writable(l);
      const current = l.row.config;
      const merged = { ...current } as Record<string, unknown>;
      for (const key of ['phases', 'operators', 'entropy', 'policy'] as const) {
        if (change[key] !== undefined) merged[key] = deepMerge(current[key], change[key]);
      }
      const result = normalizeSpace(merged, { maxBasis: Number.MAX_SAFE_INTEGER });
      if (!result.ok) throw new SpaceError(400, 'validation_failed', 'the change is invalid', result.errors);
      const next: NormalizedSpaceConfig = { ...result.normalized, basis: current.basis, seed: current.seed };
      if (next.operators.frequencyScale !== current.operators.frequencyScale) {
        throw new SpaceError(400, 'validation_failed', 'the change is invalid', [
          { pointer: '/operators/frequencyScale', code: 'immutable', message: 'frequencyScale is fixed when the space is created' },
        ]);
      }
      const ops: AcceptedOp[] = [];
      for (const section of ['operators', 'entropy', 'policy'] as const) {
        const before = new Map(leaves('', current[section]));
        for (const [path, value] of leaves('', next[section])) {
          if (path === '/frequencyScale' || path === '/semantic/kernel' || before.get(path) === value) continue;
          if (typeof value === 'number' || typeof value === 'boolean') ops.push({ op: SECTION_OP[section], path: `/state/${section}${path}`, value });
        }
      }
      const phasesChanged = JSON.stringify(next.phases) !== JSON.stringify(current.phases);
      if (ops.length > 0) await this.append(l, l.row.epoch, l.row.version, ops, author, next);
      else if (phasesChanged) await this.deps.store.update(id, { config: next });
      l.row = { ...l.row, config: next };
      if (ops.length > 0 || phasesChanged) await this.emit(l, 'space.updated', { spaceId: id, version: l.row.version });
      return l.row;
    }));
  }

  async setStatus(id: string, status: SpaceStatus): Promise<SpaceRow> {
    return this.onOwner(id, 'setStatus', [status], () => this.serial(id, async (l) => {
      if (l.row.status === status) return l.row;
      if (l.row.status === 'archived') throw new SpaceError(409, 'space_archived', 'an archived space is read-only');
      await this.deps.store.update(id, { status });
      l.row = { ...l.row, status };
      // Announced first, so listeners see why the archived space then closes on them.
      await this.emit(l, 'space.updated', { spaceId: id, version: l.row.version, status });
      if (status === 'archived') {
        await this.deps.scheduler.exclusive(async (engine) => this.evict(engine, l));
        for (const listener of l.listeners) listener.closed('archived');
        l.listeners.clear();
        this.publish(l, { k: 'closed', reason: 'archived' });
      }
      return l.row;
    }));
  }

  async remove(id: string): Promise<void> {
    await this.onOwner(id, 'remove', [], () => this.serial(id, async (l) => {
      await this.deps.scheduler.exclusive(async (engine) => {
        if (l.engineId !== null) {
          engine.remove(l.engineId);
          this.byEngine.delete(l.engineId);
          l.engineId = null;
        }
      });
      await this.deps.store.delete(id);
      for (const listener of l.listeners) listener.closed('deleted');
      l.listeners.clear();
      this.publish(l, { k: 'closed', reason: 'deleted' });
      this.live.delete(id);
      await this.deps.cluster?.release(spaceResource(id));
    }));
  }

  /** A new epoch: kept primes keep phase and mass, new ones are seeded; `order: learned` sorts by mass. */
  async replaceBasis(id: string, basis: unknown, author: string | null): Promise<SpaceRow> {
    return this.onOwner(id, 'replaceBasis', [basis, author], () => this.serial(id, async (l) => {
      this.writable(l);
      const current = l.row.config;
      const result = normalizeSpace({ ...current, basis }, { maxBasis: this.deps.maxBasis });
      if (!result.ok) {
        const errors = result.errors.map((e) => ({ ...e, pointer: e.pointer.replace(/^\/basis/, '') }));
        throw new SpaceError(400, 'validation_failed', 'the basis is invalid', errors);
      }
      const b = result.normalized.basis;
      await this.deps.scheduler.exclusive(async (engine) => {
        await this.ensureResident(engine, l);
        // The phases to carry include accepted deltas the engine has not ticked with yet (l.phases does not).
        const phases = this.snapshotOf(l).state.phases;
        await this.applyPending(engine, l);
        const mass = new Map(current.basis.primes.map((p, i) => [p, l.masses[i]!]));
        const primes = orderBasis(b.primes, b.order, mass);
        const carried = carryState({ primes: current.basis.primes, phases, masses: l.masses }, primes, current.phases);
        const config: NormalizedSpaceConfig = { ...current, basis: { primes, order: b.order, cutoff: b.cutoff } };
        const op: BasisOp = { op: 'replace_basis', path: '/state/basis', value: { primes, order: b.order, cutoff: b.cutoff } };
        const epoch = l.row.epoch + 1;
        await this.append(l, epoch, l.row.version, [op], author, config);
        engine.remove(l.engineId!);
        this.byEngine.delete(l.engineId!);
        const spec = specFromSpace(config, carried.masses);
        const engineId = engine.add(spec);
        engine.patch(engineId, { setPhases: carried.phases.map((x, i) => [i, x]) });
        this.byEngine.set(engineId, l);
        // The new basis may run on another engine (routed.ts): its precision is the one phase edits emulate.
        Object.assign(l, { engineId, precision: engine.infoFor(spec).precision, t: 0, metrics: null, epochStart: l.row.version, applied: l.row.version, pending: emptyPending() });
        await this.readState(engine, l);
        await this.checkpoint(engine, l);
      });
      const snapshot = this.snapshotOf(l);
      for (const listener of l.listeners) listener.snapshot(snapshot);
      this.publish(l, { k: 'snapshot', snapshot });
      await this.emit(l, 'basis.changed', { spaceId: id, epoch: l.row.epoch, version: l.row.version, primes: l.row.config.basis.primes });
      return l.row;
    }));
  }

  async snapshot(id: string): Promise<SpaceSnapshot> {
    return this.onOwner(id, 'snapshot', [], () => this.serial(id, async (l) => {
      if (l.engineId === null && l.phases.length === 0) await this.deps.scheduler.exclusive(async (engine) => this.ensureResident(engine, l));
      return this.snapshotOf(l);
    }));
  }

  /** Accept (durably, then fan out) or refuse a delta. */
  async propose(id: string, delta: Delta, role: Role, author: string | null, requestId?: string, origin?: unknown): Promise<{ frame: DeltaFrame; snapshot: () => SpaceSnapshot }> {
    const owner = await this.ownerOf(id);
    if (owner !== null) return this.proposeAt(owner, id, delta, role, author, requestId, origin);
    return this.serial(id, async (l) => {
      this.writable(l);
      if (l.row.status === 'locked') throw new SpaceError(409, 'space_locked', 'the space is locked: deltas are refused', undefined, { currentVersion: l.row.version });
      // The reply's snapshot needs the state: a space never loaded into the engine has no phases yet.
      if (l.engineId === null && l.phases.length === 0) await this.deps.scheduler.exclusive(async (engine) => this.ensureResident(engine, l));
      const decision = decideDelta(delta, {
        epoch: l.row.epoch, version: l.row.version, oldestVersion: l.oldest, lastWrites: l.lastWrites, k: l.row.config.basis.primes.length, role,
      });
      if (!decision.ok) throw new SpaceError(decision.status, decision.code, decision.detail, decision.errors, { currentVersion: decision.currentVersion });
      if (delta.fromVersion < l.epochStart) {
        throw new SpaceError(409, 'stale_epoch', `the basis changed at version ${l.epochStart}, after fromVersion ${delta.fromVersion}`, undefined, { currentVersion: l.row.version });
      }
      let config = l.row.config;
      for (const op of decision.ops) if (op.op !== 'set_phase' && op.op !== 'shift_phase') config = withLeaf(config, op.path, op.value);
      const changed = config !== l.row.config;
      const frame = await this.append(l, l.row.epoch, delta.fromVersion, decision.ops, author, changed ? config : undefined, requestId, origin);
      if (changed) await this.emit(l, 'space.updated', { spaceId: id, version: l.row.version });
      return { frame, snapshot: () => this.snapshotOf(l) };
    });
  }

  /**
   * Listen to a space; the space ticks while anyone listens. Resolves with the state to start from: the
   * deltas after `lastVersion` when they are all still in history and within the replay bounds (count
   * and bytes of their stored ops), else a snapshot.
   */
  async attach(
    id: string,
    listener: SpaceListener,
    lastVersion?: number,
  ): Promise<{ detach: () => void; row: SpaceRow; replay: DeltaFrame[] | null; snapshot: SpaceSnapshot | null }> {
    const owner = await this.ownerOf(id);
    if (owner !== null) return this.attachRelay(id, owner, listener, lastVersion);
    return this.serial(id, async (l) => {
      if (l.row.status === 'archived') throw new SpaceError(409, 'space_archived', 'an archived space does not simulate');
      await this.deps.scheduler.exclusive(async (engine) => this.ensureResident(engine, l));
      // Versions are contiguous: the count is known without reading, and at most the bound is read.
      const inHistory = lastVersion !== undefined && lastVersion >= l.oldest && lastVersion >= l.epochStart;
      const replay = inHistory ? await this.replayOf(id, lastVersion, l.row) : null;
      const wasListening = this.listening(l, Date.now());
      l.listeners.add(listener);
      if (!wasListening) {
        l.nextTickAt = Date.now();
        this.deps.scheduler.kick();
      }
      return { detach: () => this.detach(id, listener), row: l.row, replay, snapshot: replay ? null : this.snapshotOf(l) };
    });
  }

  /**
   * The deltas after `lastVersion` up to `row`'s version when the log holds them all, within the current
   * epoch and the replay bounds (count, and bytes of their stored ops); null when a snapshot must do.
   */
  private async replayOf(id: string, lastVersion: number, row: SpaceRow): Promise<DeltaFrame[] | null> {
    const count = row.version - lastVersion;
    if (count < 0 || count > (this.deps.replayMaxDeltas ?? DEFAULT_REPLAY_MAX_DELTAS)) return null;
    const stored = await this.deps.store.deltasSince(id, lastVersion, count);
    const maxBytes = this.deps.replayMaxBytes ?? DEFAULT_REPLAY_MAX_BYTES;
    let bytes = 0;
    for (const d of stored) if ((bytes += Buffer.byteLength(JSON.stringify(d.ops))) > maxBytes) return null;
    if (stored.length !== count || stored[0]?.version !== (count > 0 ? lastVersion + 1 : undefined)) return null;
    if (stored.some((d) => d.epoch !== row.epoch)) return null;
    return stored.map(frameOf);
  }

  /** A listener leaves, wherever it listens from (the space may have changed hands meanwhile). */
  private detach(id: string, listener: SpaceListener): void {
    const l = this.live.get(id);
    if (l?.listeners.delete(listener) && l.listeners.size === 0) l.idleSince = Date.now();
    const relay = this.relays.get(id);
    if (relay?.listeners.delete(listener) && relay.listeners.size === 0) {
      this.relays.delete(id);
      void relay.stop().catch((err) => this.deps.onError?.(err));
    }
  }

  // ---- members ----

  /**
   * Add a member (or bring back one that left). `expiresAt`: when its session token expires; a member
   * without a connection then leaves (reason `expired`).
   */
  async join(
    id: string,
    member: { id: string; userId: string; orgId: string; role: Role; displayName: string | null; expiresAt: number | null },
  ): Promise<MemberRow> {
    return this.onOwner(id, 'join', [member], () => this.serial(id, async (l) => {
      const existing = await this.deps.store.getMember(id, member.id);
      if (existing?.removedAt != null) throw new SpaceError(403, 'member_removed', 'this member was removed from the space');
      if (existing && existing.leftAt === null) return existing;
      if ((await this.deps.store.countMembers(id)) >= l.row.config.policy.maxMembers) {
        throw new SpaceError(409, 'space_full', `the space has its maximum of ${l.row.config.policy.maxMembers} members`, undefined, { maxMembers: l.row.config.policy.maxMembers });
      }
      const row = await this.deps.store.joinMember({ spaceId: id, ...member });
      await this.emit(l, 'member.joined', { spaceId: id, memberId: row.id, userId: row.userId, role: row.role, displayName: row.displayName });
      return row;
    }));
  }

  /** A member row, present or gone (null when it never joined). */
  member(id: string, memberId: string): Promise<MemberRow | null> {
    return this.deps.store.getMember(id, memberId);
  }

  members(id: string): Promise<MemberRow[]> {
    return this.deps.store.listMembers(id);
  }

  /** A member leaves (removed, or its last connection closed); listeners see member.left and drop its sockets. */
  async leave(id: string, memberId: string, reason: 'removed' | 'disconnected' | 'expired'): Promise<boolean> {
    return this.onOwner(id, 'leave', [memberId, reason], () => this.serial(id, async (l) => {
      if (!(await this.deps.store.leaveMember(id, memberId, reason === 'removed'))) return false;
      await this.emit(l, 'member.left', { spaceId: id, memberId, reason });
      return true;
    }));
  }

  /** Members whose token expired with no connection open leave (REST- or SSE-only sessions, abandoned ones). */
  private async expireMembers(now: number): Promise<void> {
    const presence = this.deps.presence;
    for (const m of await this.deps.store.expiredMembers(now)) {
      if (!(await presence?.has(m.spaceId, m.id))) await this.leave(m.spaceId, m.id, 'expired').catch(() => false);
    }
  }

  // ---- the scheduler's side (under its engine lock) ----

  async prepare(engine: Engine, now: number): Promise<{ limits: Map<number, number>; wakeAt: number | null }> {
    const limits = new Map<number, number>();
    let wakeAt: number | null = null;
    for (const l of this.live.values()) {
      if (l.engineId === null) continue;
      let ticks = 0;
      if (this.listening(l, now) && l.row.status !== 'archived' && !l.failed) {
        const period = 1000 / l.row.config.policy.publishHz;
        if (now >= l.nextTickAt) {
          ticks = 1;
          // A late tick is not made up for: the simulation's time is ticks, not wall time.
          l.nextTickAt = Math.max(l.nextTickAt + period, now - period / 2);
          await this.applyPending(engine, l);
        }
        wakeAt = Math.min(wakeAt ?? Infinity, l.nextTickAt);
      }
      limits.set(l.engineId, ticks);
    }
    return { limits, wakeAt };
  }

  async settle(reports: Map<number, SimReport>): Promise<void> {
    for (const [engineId, report] of reports) {
      const l = this.byEngine.get(engineId);
      if (!l || report.records.length === 0) continue;
      this.deps.usage?.add(l.row.orgId, 'space_minutes', report.records.length / l.row.config.policy.publishHz / 60);
      for (const rec of report.records) {
        l.t = rec.step;
        l.metrics = metricsOf(rec.metrics);
        if (rec.phases && rec.amplitudes) {
          l.phases = Array.from(rec.phases);
          const sq = Array.from(rec.amplitudes, (a) => a * a);
          const total = sq.reduce((a, b) => a + b, 0);
          l.masses = sq.map((x) => (total > 0 ? x / total : 0));
        }
        for (const [flag, name] of [[Flag.PLATEAU, 'plateau'], [Flag.COLLAPSE, 'collapse']] as const) {
          if (rec.flags & flag) await this.emit(l, name, { spaceId: l.row.id, t: rec.step, version: l.applied, metrics: l.metrics });
        }
      }
      if (report.status === 'failed') {
        l.failed = true;
        this.deps.onError?.(new Error(`space ${l.row.id}: the simulation failed (non-finite state) at t=${l.t}`));
      }
      const telemetry: TelemetryFrame = { type: 'telemetry', t: l.t, version: l.applied, ...l.metrics! };
      const phases: PhasesFrame = { type: 'phases', t: l.t, version: l.applied, phases: l.phases, masses: l.masses };
      for (const listener of l.listeners) listener.telemetry(telemetry, phases);
      this.publish(l, { k: 'telemetry', telemetry, phases });
    }
  }

  // ---- internals ----

  private writable(l: Live): void {
    if (l.row.status === 'archived') throw new SpaceError(409, 'space_archived', 'an archived space is read-only', undefined, { currentVersion: l.row.version });
  }

  /** Run `fn` after every earlier mutation of the space, with the space loaded (404 when there is none). */
  private async serial<T>(id: string, fn: (l: Live) => Promise<T>): Promise<T> {
    const l = await this.load(id);
    l.ops++;
    const run = l.queue.then(() => (this.live.get(id) === l ? fn(l) : Promise.reject(l.moved ? movedError(id) : notFound(id)))).finally(() => l.ops--);
    l.queue = run.catch(() => undefined);
    return run;
  }

  /** The space in memory; callers that arrive while it loads share that load (the log summary is read once). */
  private load(id: string): Promise<Live> {
    const existing = this.live.get(id);
    if (existing) return Promise.resolve(existing);
    let loading = this.loading.get(id);
    if (!loading) {
      loading = this.loadFromStore(id).finally(() => this.loading.delete(id));
      this.loading.set(id, loading);
    }
    return loading;
  }

  private async loadFromStore(id: string): Promise<Live> {
    const row = await this.deps.store.get(id);
    if (!row) throw notFound(id);
    // The last write of each path, streamed from the log by the store: the retained deltas are never all
    // in memory. The basis's last replacement is where the epoch starts (0 when it left the history,
    // which is then no older than it).
    const { oldestVersion, byPath: lastWrites } = await this.deps.store.lastWrites(id);
    const again = this.live.get(id);
    if (again) return again;
    const l: Live = {
      row, engineId: null, precision: 'f64', t: 0, metrics: null, phases: [], masses: [], applied: row.version, pending: emptyPending(),
      lastWrites, oldest: oldestVersion ?? row.version, epochStart: lastWrites.get(BASIS_PATH) ?? 0, listeners: new Set(), remote: new Map(), nextTickAt: 0,
      idleSince: Date.now(), lastCheckpointAt: Date.now(), queue: Promise.resolve(), ops: 0, failed: false,
    };
    this.live.set(id, l);
    return l;
  }

  /** Into the engine from the checkpoint, then the logged deltas after it (under the engine lock). */
  private async ensureResident(engine: Engine, l: Live): Promise<void> {
    if (l.engineId !== null) return;
    if (this.deps.quotas) {
      let resident = 0;
      for (const other of this.live.values()) if (other.engineId !== null && other.row.orgId === l.row.orgId) resident++;
      await this.deps.quotas.checkCap(l.row.orgId, 'live_spaces', resident);
    }
    const checkpoint = l.row.checkpoint ? stateOfCheckpointText(l.row.checkpoint) : undefined;
    const from = checkpoint ? (l.row.checkpointVersion ?? 0) : l.epochStart;
    const spec = specFromSpace(l.row.config);
    const engineId = engine.add(spec, checkpoint);
    l.engineId = engineId;
    l.precision = engine.infoFor(spec).precision;
    this.byEngine.set(engineId, l);
    // Replay what the checkpoint does not hold; values equal to those in effect change nothing.
    const pending = emptyPending();
    for (const d of await this.deps.store.deltasSince(l.row.id, from, Number.MAX_SAFE_INTEGER)) {
      if (d.epoch === l.row.epoch) addOps(pending, d.ops as AcceptedOp[]);
    }
    l.pending = pending;
    l.applied = l.row.version;
    await this.applyPending(engine, l);
    await this.readState(engine, l);
  }

  private async readState(engine: Engine, l: Live): Promise<void> {
    const state = await engine.exportState(l.engineId!);
    l.phases = Array.from(state.phases);
    l.masses = Array.from(state.masses);
    l.t = state.step;
  }

  /** Pending deltas into the engine (a tick boundary). */
  private async applyPending(engine: Engine, l: Live): Promise<void> {
    const p = l.pending;
    l.pending = emptyPending();
    if (p.respec) {
      const cp = await engine.exportState(l.engineId!);
      engine.remove(l.engineId!);
      this.byEngine.delete(l.engineId!);
      l.engineId = engine.add(specFromSpace(l.row.config), cp);
      this.byEngine.set(l.engineId, l);
    }
    const change: SimPatch = {};
    if (p.sets.length > 0) change.setPhases = p.sets;
    if (p.shifts.length > 0) change.shiftPhases = p.shifts;
    if (Object.keys(p.params).length > 0) change.params = p.params;
    if (Object.keys(change).length > 0) engine.patch(l.engineId!, change);
    // The host copy follows with the engines' own arithmetic: a space that does not tick (nobody listens)
    // reads its phases from here, never from a later record.
    applyPhaseEdits(l.phases, p.sets, p.shifts, l.precision);
    l.applied = l.row.version;
  }

  /** Log a delta (durable), then update memory and fan it out. */
  private async append(
    l: Live, epoch: number, fromVersion: number, ops: AcceptedOp[] | BasisOp[], author: string | null, config?: NormalizedSpaceConfig, requestId?: string, origin?: unknown,
  ): Promise<DeltaFrame> {
    const paths = ops.map((o) => o.path);
    // Every logged delta (proposals, PATCH, basis changes) is charged, once it is known to be acceptable:
    // a refused one costs nothing.
    await this.deps.quotas?.charge(l.row.orgId, 'deltas_per_minute', 1);
    const stored = await this.fenced(l, () => this.deps.store.appendDelta(l.row.id, l.row.version, { epoch, fromVersion, ops, paths, author }, config, this.fenceOf(l)));
    if (!stored) throw new Error(`space ${l.row.id}: the stored version moved under the hub`);
    this.deps.usage?.add(l.row.orgId, 'deltas', 1);
    this.deps.usage?.add(l.row.orgId, 'storage_bytes_written', Buffer.byteLength(JSON.stringify(ops)) + Buffer.byteLength(JSON.stringify(paths)));
    l.row = { ...l.row, version: stored.version, epoch, ...(config ? { config } : {}) };
    for (const path of paths) l.lastWrites.set(path, stored.version);
    if ((ops[0] as { op: string }).op !== 'replace_basis') addOps(l.pending, ops as AcceptedOp[]);
    if (l.engineId === null) {
      // Not in the engine (evicted, nobody listens): fold the edits into the host copy now. Loading the
      // space replays the log after its checkpoint anyway, and pending edits kept here would grow, and be
      // replayed by every snapshot, for as long as REST deltas come.
      applyPhaseEdits(l.phases, l.pending.sets, l.pending.shifts, l.precision);
      l.pending = emptyPending();
    }
    const frame = frameOf(stored);
    for (const listener of l.listeners) listener.delta(frame, origin);
    this.publish(l, origin instanceof RemoteOrigin ? { k: 'delta', frame, origin: { node: origin.node, token: origin.token } } : { k: 'delta', frame });
    return requestId ? { ...frame, requestId } : frame;
  }

  private snapshotOf(l: Live): SpaceSnapshot {
    const phases = [...l.phases];
    // Accepted deltas the engine has not ticked with yet are part of this version's state.
    applyPhaseEdits(phases, l.pending.sets, l.pending.shifts, l.precision);
    const c = l.row.config;
    return {
      spaceId: l.row.id, epoch: l.row.epoch, version: l.row.version, t: l.t,
      state: { primes: c.basis.primes, phases, masses: [...l.masses], operators: c.operators, entropy: c.entropy, policy: c.policy },
      metrics: l.metrics,
    };
  }

  private async checkpoint(engine: Engine, l: Live): Promise<void> {
    if (l.engineId === null) return;
    await this.applyPending(engine, l);
    const checkpoint = checkpointText(await engine.exportState(l.engineId));
    await this.fenced(l, () => this.deps.store.update(l.row.id, { checkpoint, checkpointVersion: l.applied }, this.fenceOf(l)));
    l.row = { ...l.row, checkpoint, checkpointVersion: l.applied };
    l.lastCheckpointAt = Date.now();
    // History: keep historySeconds, and every delta the checkpoint does not hold.
    const before = Date.now() - l.row.config.policy.historySeconds * 1000;
    const resumable = await this.deps.store.pruneDeltas(l.row.id, before, l.applied);
    l.oldest = Math.max(l.oldest, Math.min(resumable, l.row.version));
    // No delta from `oldest` on can conflict with a write at or below it; the map stays one entry per path.
    for (const [path, version] of l.lastWrites) if (version <= l.oldest) l.lastWrites.delete(path);
  }

  private async evict(engine: Engine, l: Live): Promise<void> {
    if (l.engineId === null) return;
    await this.checkpoint(engine, l);
    engine.remove(l.engineId);
    this.byEngine.delete(l.engineId);
    l.engineId = null;
  }

  private async maintain(now: number): Promise<void> {
    const engine = this.deps.scheduler.engine;
    for (const l of [...this.live.values()]) {
      const listening = this.listening(l, now);
      if (l.engineId === null) {
        if (!listening && l.ops === 0 && now - l.idleSince > this.deps.idleEvictMs) {
          // Out of memory, and out of this node's hands: whichever node needs the space next takes it.
          this.live.delete(l.row.id);
          await this.deps.cluster?.release(spaceResource(l.row.id));
        }
        continue;
      }
      if (!listening && now - l.idleSince > this.deps.idleEvictMs) await this.evict(engine, l);
      else if (now - l.lastCheckpointAt > this.deps.checkpointEveryMs && listening) await this.checkpoint(engine, l);
    }
  }

  private async emit(l: Live, name: SpaceEventName, data: Record<string, unknown>): Promise<void> {
    try {
      await this.deps.onEvent?.(l.row.orgId, name, data);
    } catch (err) {
      this.deps.onError?.(err);
    }
    const frame: EventFrame = { type: 'event', name, at: new Date().toISOString(), data };
    for (const listener of l.listeners) listener.event(frame);
    this.publish(l, { k: 'event', frame });
  }

  // ---- the other nodes (space-cluster.ts; docs/scaling.md) ----

  /** Someone listens: here, or on another node that relays the space (expired relays are forgotten here). */
  private listening(l: Live, now: number): boolean {
    if (l.remote.size > 0) {
      for (const [node, until] of l.remote) if (until <= now) l.remote.delete(node);
      if (l.remote.size === 0 && l.listeners.size === 0) l.idleSince = now;
    }
    return l.listeners.size > 0 || l.remote.size > 0;
  }

  /** To the nodes that relay the space, in order; nothing when none does. */
  private publish(l: Live, message: SpaceMessage): void {
    const cluster = this.deps.cluster;
    if (!cluster || l.remote.size === 0) return;
    cluster.broker.publish(spaceChannel(l.row.id), JSON.stringify(message)).catch((err: unknown) => this.deps.onError?.(err));
  }

  private fenceOf(l: Live): Fence | undefined {
    return this.deps.cluster?.fence(spaceResource(l.row.id)) ?? undefined;
  }

  /** A fenced write; refused (another node took the space): this node lets the space go and the caller retries. */
  private async fenced<T>(l: Live, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (err) {
      if (!(err instanceof FencedError)) throw err;
      this.lost(l.row.id);
      throw movedError(l.row.id);
    }
  }

  /**
   * Where the space is simulated: null when here (this node holds its lease, taking it when it is free or
   * lapsed), else the node that holds it.
   */
  private async ownerOf(id: string): Promise<string | null> {
    const cluster = this.deps.cluster;
    if (!cluster) return null;
    const resource = spaceResource(id);
    if (cluster.fence(resource) && !this.relays.has(id)) return null;
    // A relayed space's owner is known (checkOwners follows it): no query per forwarded write. Taking the
    // lease is tried only when it looks free: the attempt would wait on the row lock of the owner's writes.
    const relayed = this.relays.get(id)?.owner;
    if (relayed) return relayed;
    // A process without a broker has no other node to ask: a lease another node id holds is an earlier
    // run's (restarted under another host:port), waited out rather than forwarded to nobody.
    const alone = cluster.broker.health().kind === 'memory';
    const deadline = Date.now() + cluster.leaseTtlMs + 1000;
    for (let attempt = 0; attempt < 3 || (alone && Date.now() < deadline); attempt++) {
      const [holder] = await cluster.leases([resource]);
      const held = holder && holder.nodeId !== cluster.nodeId && holder.expiresAt > Date.now();
      if (held && !alone) return holder.nodeId;
      const orgId = holder?.orgId ?? this.live.get(id)?.row.orgId ?? (await this.deps.store.get(id))?.orgId;
      if (orgId === undefined) throw notFound(id);
      if (await cluster.acquire(resource, orgId)) {
        if (this.relays.has(id)) await this.promote(id);
        return null;
      }
      if (alone) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new SpaceError(503, 'owner_unreachable', 'the space is changing hands; retry shortly', undefined, { retryAfterSeconds: 1 });
  }

  /** Runs `local` when this node simulates the space, else asks the node that does. */
  private async onOwner<T>(id: string, method: RemoteMethod, args: unknown[], local: () => Promise<T>): Promise<T> {
    const owner = await this.ownerOf(id);
    return owner === null ? local() : this.forward<T>(owner, id, method, args);
  }

  private async forward<T>(owner: string, id: string, method: RemoteMethod | 'watch', args: unknown[]): Promise<T> {
    try {
      return await this.deps.cluster!.call<T>(owner, method === 'watch' ? 'space.watch' : 'space.call', { id, method, args });
    } catch (err) {
      throw fromRemoteError(err, owner);
    }
  }

  /** A proposal made on this node for a space another node owns; the proposer's copy comes back through the relay. */
  private async proposeAt(
    owner: string, id: string, delta: Delta, role: Role, author: string | null, requestId: string | undefined, origin: unknown,
  ): Promise<{ frame: DeltaFrame; snapshot: () => SpaceSnapshot }> {
    const token = origin === undefined ? null : randomUUID();
    if (token) {
      this.origins.set(token, origin);
      setTimeout(() => this.origins.delete(token), 30_000).unref();
    }
    // A REST proposal answers with the state (snapshot); a realtime one only needs its acknowledgement.
    const r = await this.forward<{ frame: DeltaFrame; snapshot: SpaceSnapshot | null }>(owner, id, 'propose', [delta, role, author, requestId ?? null, token, origin === undefined]);
    const frame = requestId ? { ...r.frame, requestId } : r.frame;
    return { frame, snapshot: () => r.snapshot ?? (() => { throw new Error('no snapshot was asked for'); })() };
  }

  /** What another node asks of this one, the owner. */
  private serveOtherNodes(cluster: NodeCluster): void {
    cluster.handle('space.call', async (raw, from) => {
      const { id, method, args } = raw as { id: string; method: RemoteMethod; args: unknown[] };
      const a = args.map((v) => (v === null ? undefined : v));
      switch (method) {
        case 'patch':
          return this.patch(id, a[0] as SpacePatch, (a[1] as string | undefined) ?? null);
        case 'setStatus':
          return this.setStatus(id, a[0] as SpaceStatus);
        case 'remove':
          return this.remove(id);
        case 'replaceBasis':
          return this.replaceBasis(id, a[0], (a[1] as string | undefined) ?? null);
        case 'snapshot':
          return this.snapshot(id);
        case 'join':
          return this.join(id, a[0] as Parameters<SpaceHub['join']>[1]);
        case 'leave':
          return this.leave(id, a[0] as string, a[1] as 'removed' | 'disconnected' | 'expired');
        case 'propose': {
          const [delta, role, author, requestId, token, wantSnapshot] = a as [Delta, Role, string | undefined, string | undefined, string | undefined, boolean];
          const origin = token ? new RemoteOrigin(from, token) : undefined;
          const r = await this.propose(id, delta, role, author ?? null, requestId, origin);
          return { frame: r.frame, snapshot: wantSnapshot ? r.snapshot() : null };
        }
      }
    });
    // A node relays the space to listeners of its own: tick it, and publish its frames, while it does.
    cluster.handle('space.watch', async (raw, from) => {
      const { id } = raw as { id: string };
      if ((await this.ownerOf(id)) !== null) throw new SpaceError(409, 'not_owner', `this node no longer owns space ${id}`);
      await this.serial(id, async (l) => {
        if (l.row.status === 'archived') throw new SpaceError(409, 'space_archived', 'an archived space does not simulate');
        await this.deps.scheduler.exclusive(async (engine) => this.ensureResident(engine, l));
        const wasListening = this.listening(l, Date.now());
        l.remote.set(from, Date.now() + WATCH_TTL_MS);
        if (!wasListening) {
          l.nextTickAt = Date.now();
          this.deps.scheduler.kick();
        }
      });
    });
  }

  /**
   * Follow a space another node owns: the relay subscribes first, then the owner is told this node listens
   * (from then on it publishes every frame), then the start state is read; the listener gets the frames
   * after that state's version, from the relay, in order.
   */
  private async attachRelay(
    id: string, owner: string, listener: SpaceListener, lastVersion?: number,
  ): Promise<{ detach: () => void; row: SpaceRow; replay: DeltaFrame[] | null; snapshot: SpaceSnapshot | null }> {
    let relay = this.relays.get(id);
    if (!relay) {
      relay = this.newRelay(id, owner, -1);
      this.relays.set(id, relay);
      await relay.start();
    }
    const r = relay;
    try {
      // The start state, read in order with what the relay delivers.
      const start = await r.after(async () => {
        await this.forward(r.owner, id, 'watch', []);
        const stored = await this.deps.store.get(id);
        if (!stored) throw notFound(id);
        if (stored.status === 'archived') throw new SpaceError(409, 'space_archived', 'an archived space does not simulate');
        const replay = lastVersion !== undefined ? await this.replayOf(id, lastVersion, stored) : null;
        const snapshot = replay ? null : await this.forward<SpaceSnapshot>(r.owner, id, 'snapshot', []);
        const row = snapshot ? { ...stored, version: snapshot.version, epoch: snapshot.epoch } : stored;
        // Nothing delivered yet: the relay's stream starts at this state.
        if (r.version < 0) r.version = row.version;
        return { row, replay, snapshot };
      });
      // The log may be ahead of the relay: its messages up to the start state are on their way (each with
      // its proposer's tag, which a copy read from the log would lack). Let them come; fill from the log
      // only what does not.
      const { row } = start;
      if (!(await r.reach(row.version, RELAY_CATCH_UP_MS))) await r.after(() => r.fill(row.version));
      return await r.after(async () => {
        // The listener starts where the relay is: the versions it delivered past the start state come from the log.
        if (r.version > row.version) {
          for (const d of await this.deps.store.deltasSince(id, row.version, r.version - row.version)) listener.delta(frameOf(d));
        }
        r.add(listener, r.version);
        return { detach: () => this.detach(id, listener), ...start };
      });
    } catch (err) {
      if (r.listeners.size === 0 && this.relays.get(id) === r) {
        this.relays.delete(id);
        await r.stop();
      }
      throw err;
    }
  }

  private newRelay(id: string, owner: string, version: number): SpaceRelay {
    return new SpaceRelay(
      {
        spaceId: id,
        cluster: this.deps.cluster!,
        deltasSince: (after, limit) => this.deps.store.deltasSince(id, after, limit),
        originOf: (token) => {
          const origin = this.origins.get(token);
          this.origins.delete(token);
          return origin;
        },
        onError: (err) => this.deps.onError?.(err),
      },
      owner,
      version,
    );
  }

  /** Relayed spaces whose owner's lease lapsed are taken over; those that changed hands are followed to the new owner. */
  private async checkOwners(cluster: NodeCluster): Promise<void> {
    if (this.relays.size === 0) return;
    const ids = [...this.relays.keys()];
    const leases = new Map((await cluster.leases(ids.map(spaceResource))).map((l) => [l.resource, l]));
    for (const id of ids) {
      const relay = this.relays.get(id);
      if (!relay) continue;
      const lease = leases.get(spaceResource(id));
      if (lease && lease.nodeId !== cluster.nodeId && lease.expiresAt > Date.now()) {
        if (lease.nodeId !== relay.owner) {
          relay.owner = lease.nodeId;
          await relay.watch();
        }
        continue;
      }
      const orgId = lease?.orgId ?? (await this.deps.store.get(id))?.orgId;
      if (orgId !== undefined && (await cluster.acquire(spaceResource(id), orgId))) await this.promote(id);
    }
  }

  /**
   * This node took the lease of a space it relayed: load it (checkpoint and the logged deltas after it),
   * give its listeners the versions they have not seen, from the log, and tick on.
   */
  private async promote(id: string): Promise<void> {
    const relay = this.relays.get(id);
    if (!relay) return;
    this.relays.delete(id);
    // Whatever the relay was delivering finishes first; nothing after it is delivered.
    await relay.after(async () => relay.stop());
    if (relay.listeners.size === 0) return;
    await this.serial(id, async (l) => {
      await this.deps.scheduler.exclusive(async (engine) => this.ensureResident(engine, l));
      const missing = relay.version >= 0 && relay.version < l.row.version ? await this.deps.store.deltasSince(id, relay.version, l.row.version - relay.version) : [];
      for (const [listener, from] of relay.listeners) {
        for (const d of missing) if (d.version > from) listener.delta(frameOf(d));
        l.listeners.add(listener);
      }
      l.nextTickAt = Date.now();
      this.deps.scheduler.kick();
    });
  }

  /** This node lost the space's lease (another node holds it): out of the engine; its listeners follow the new owner. */
  lost(id: string): void {
    const l = this.live.get(id);
    if (!l) return;
    l.moved = true;
    this.live.delete(id);
    this.deps.scheduler
      .exclusive(async (engine) => {
        if (l.engineId === null) return;
        engine.remove(l.engineId);
        this.byEngine.delete(l.engineId);
        l.engineId = null;
      })
      .catch((err: unknown) => this.deps.onError?.(err));
    if (l.listeners.size === 0 || !this.deps.cluster) return;
    // The owner is found (or the space taken back) by the next checkOwners.
    const relay = this.newRelay(id, '', l.row.version);
    for (const listener of l.listeners) relay.add(listener, l.row.version);
    this.relays.set(id, relay);
    relay.start().catch((err: unknown) => this.deps.onError?.(err));
  }
}

/** How long a joining listener waits for its relay to deliver the versions of its start state before the log fills them in. */
const RELAY_CATCH_UP_MS = 2000;

/** The hub's methods another node may call on the owner (Rpc 'space.call'). */
type RemoteMethod = 'patch' | 'setStatus' | 'remove' | 'replaceBasis' | 'snapshot' | 'join' | 'leave' | 'propose';

/** A proposal forwarded by another node: the owner tags the delta it publishes with it. */
class RemoteOrigin {
  constructor(
    readonly node: string,
    readonly token: string,
  ) {}
}

function movedError(id: string): SpaceError {
  return new SpaceError(503, 'owner_changed', `space ${id} moved to another node; retry`, undefined, { retryAfterSeconds: 1 });
}

function addOps(p: Pending, ops: readonly AcceptedOp[]): void {
  for (const op of ops) {
    if (op.op === 'set_phase' || op.op === 'shift_phase') {
      const i = Number(op.path.slice('/state/phases/'.length));
      // A set after shifts replaces them: keep the order by folding into the lists the engine applies.
      if (op.op === 'set_phase') {
        p.shifts = p.shifts.filter(([j]) => j !== i);
        p.sets.push([i, op.value as number]);
      } else p.shifts.push([i, op.value as number]);
    } else if (PARAM_OF[op.path]) {
      (p.params as Record<string, unknown>)[PARAM_OF[op.path]!] = op.value;
    } else if (RESPEC_PATHS.has(op.path)) p.respec = true;
  }
}

function notFound(id: string): SpaceError {
  return new SpaceError(404, 'not_found', `space ${id} was not found`);
}
