/**
 * The space hub on a real SQLite file and the CPU engine, through the shared scheduler: ticking at
 * publishHz only while someone listens, deltas durable then fanned out and applied at tick boundaries,
 * epochs, and recovery (checkpoint + logged deltas) after the process is gone without a goodbye.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Presence } from '../src/cluster/broker.js';
import { MemoryBroker } from '../src/cluster/memory-broker.js';
import { CpuEngine } from '../src/engine/cpu/engine.js';
import { wrapPhase } from '../src/engine/edits.js';
import { normalize } from '../src/model/normalize.js';
import { firstPrimes } from '../src/model/primes.js';
import { Scheduler } from '../src/sim/scheduler.js';
import type { DeltaFrame, EventFrame, SpaceSnapshot, TelemetryFrame } from '@resonance/sdk/protocol';
import { type SpaceListener, SpaceHub } from '../src/sim/spaces.js';
import { openDb } from '../src/store/db.js';
import { SqliteSessionStore } from '../src/store/sessions.js';
import { SqliteSpaceStore } from '../src/store/spaces.js';
import { DEMO_ROOM } from './helpers/server.js';

interface Node {
  hub: SpaceHub;
  scheduler: Scheduler;
  engine: CpuEngine;
  events: Array<{ name: string; data: Record<string, unknown> }>;
}

const running: Node[] = [];

async function start(file: string, options: { idleEvictMs?: number; checkpointEveryMs?: number; presence?: Presence } = {}): Promise<Node> {
  const db = openDb(file);
  const engine = new CpuEngine({ precision: 'f64', threads: 0 });
  const scheduler = new Scheduler({ engine, sessions: new SqliteSessionStore(db) });
  const events: Node['events'] = [];
  const hub = new SpaceHub({
    scheduler, store: new SqliteSpaceStore(db), maxBasis: 2048,
    idleEvictMs: options.idleEvictMs ?? 60_000, checkpointEveryMs: options.checkpointEveryMs ?? 60_000, presence: options.presence,
    onEvent: async (_org, name, data) => {
      events.push({ name, data });
    },
  });
  await hub.start();
  await scheduler.start();
  const node = { hub, scheduler, engine, events };
  running.push(node);
  return node;
}

async function stop(node: Node, graceful: boolean): Promise<void> {
  running.splice(running.indexOf(node), 1);
  if (graceful) await node.hub.stop();
  await node.scheduler.stop();
  await node.engine.destroy();
}

afterEach(async () => {
  for (const n of [...running]) await stop(n, false);
});

class Recorder implements SpaceListener {
  telemetryFrames: TelemetryFrame[] = [];
  deltas: DeltaFrame[] = [];
  snapshots: SpaceSnapshot[] = [];
  eventFrames: EventFrame[] = [];
  closedWith: string | null = null;
  telemetry(frame: TelemetryFrame): void {
    this.telemetryFrames.push(frame);
  }
  delta(frame: DeltaFrame): void {
    this.deltas.push(frame);
  }
  snapshot(s: SpaceSnapshot): void {
    this.snapshots.push(s);
  }
  event(frame: EventFrame): void {
    this.eventFrames.push(frame);
  }
  closed(reason: string): void {
    this.closedWith = reason;
  }
}

const dbFile = (): string => join(mkdtempSync(join(tmpdir(), 'hub-')), 'resonance.db');
const demo = (publishHz = 30) => ({ ...DEMO_ROOM, policy: { publishHz }, seed: 7 });
const until = async (cond: () => boolean, ms = 5000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('SpaceHub', () => {
  it('ticks at publishHz only while someone listens, with telemetry carrying t and the applied version', async () => {
    const node = await start(dbFile());
    const { row } = await node.hub.create('org', demo(20));
    const idle = await node.hub.snapshot(row.id);
    await new Promise((r) => setTimeout(r, 200));
    expect((await node.hub.snapshot(row.id)).t).toBe(idle.t);

    const rec = new Recorder();
    const { detach, snapshot } = await node.hub.attach(row.id, rec);
    expect(snapshot?.version).toBe(0);
    const started = Date.now();
    await until(() => rec.telemetryFrames.length >= 10);
    const elapsed = Date.now() - started;
    // 20 Hz: 10 ticks take about 450 ms (the first is immediate)
    expect(elapsed).toBeGreaterThan(350);
    expect(elapsed).toBeLessThan(1500);
    const ts = rec.telemetryFrames.map((f) => f.t);
    expect(ts).toEqual(ts.map((_, i) => ts[0]! + i));
    expect(rec.telemetryFrames[0]!.resonanceStrength).toBeGreaterThan(0);
    detach();
    const n = rec.telemetryFrames.length;
    await new Promise((r) => setTimeout(r, 200));
    expect(rec.telemetryFrames.length).toBeLessThanOrEqual(n + 1);
  });

  it('keeps ticking at publishHz while an HQE run shares the engine batch', async () => {
    const node = await start(dbFile());
    const { row } = await node.hub.create('org', demo(30));
    const rec = new Recorder();
    await node.hub.attach(row.id, rec);
    const r = normalize({ primes: firstPrimes(96), schedule: { steps: 1_000_000, plateauT: 1_000_000 }, seed: 3 });
    if (!r.ok) throw new Error('bad config');
    const run = node.scheduler.run(r.normalized, []);
    await new Promise((res) => setTimeout(res, 300));
    const from = rec.telemetryFrames.length;
    const sinceRun = node.scheduler.stats().simSteps;
    await new Promise((res) => setTimeout(res, 1000));
    // 30 Hz for one second, with the run making progress in between
    expect(rec.telemetryFrames.length - from).toBeGreaterThanOrEqual(24);
    expect(node.scheduler.stats().simSteps - sinceRun).toBeGreaterThan(100);
    // one step per tick: the run's many ticks per advance never carry the space along
    const ts = rec.telemetryFrames.map((f) => f.t);
    expect(ts).toEqual(ts.map((_, i) => ts[0]! + i));
    await stop(node, false);
    await run.catch(() => undefined);
  });

  it('logs deltas with contiguous versions, fans them out, and applies them at the next tick', async () => {
    const node = await start(dbFile());
    const { row } = await node.hub.create('org', demo(30));
    const rec = new Recorder();
    await node.hub.attach(row.id, rec);
    await until(() => rec.telemetryFrames.length >= 2);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => node.hub.propose(row.id, { fromVersion: 0, ops: [{ op: 'shift_phase', path: `/state/phases/${i % 6}`, value: 0.01 }] }, 'writer', `m${i}`)),
    );
    expect(results.map((r) => r.frame.toVersion).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(rec.deltas.map((d) => d.toVersion)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(rec.deltas.every((d) => d.fromVersion === d.toVersion - 1)).toBe(true);
    await until(() => rec.telemetryFrames.some((f) => f.version === 20));

    // set_* on a path written since fromVersion conflicts; a parameter change is in the snapshot
    await node.hub.propose(row.id, { fromVersion: 20, ops: [{ op: 'set_phase', path: '/state/phases/0', value: 1 }] }, 'writer', 'a');
    await expect(node.hub.propose(row.id, { fromVersion: 20, ops: [{ op: 'set_phase', path: '/state/phases/0', value: 2 }] }, 'writer', 'b'))
      .rejects.toMatchObject({ status: 409, code: 'conflict', meta: { currentVersion: 21 } });
    await expect(node.hub.propose(row.id, { fromVersion: 21, ops: [{ op: 'set_operator', path: '/state/operators/localityBias', value: 0.5 }] }, 'writer', 'w'))
      .rejects.toMatchObject({ status: 403, code: 'insufficient_role' });
    await node.hub.propose(row.id, { fromVersion: 21, ops: [{ op: 'set_operator', path: '/state/operators/localityBias', value: 0.5 }] }, 'admin', 'adm');
    const snap = await node.hub.snapshot(row.id);
    expect(snap.version).toBe(22);
    expect(snap.state.operators.localityBias).toBe(0.5);
    expect(snap.state.phases[0]).toBeCloseTo(1, 12);
    expect(node.events.map((e) => e.name)).toContain('space.updated');
  });

  it('changes the basis in a new epoch, carrying kept primes and refusing deltas from the old one', async () => {
    const node = await start(dbFile());
    const { row } = await node.hub.create('org', demo());
    const before = await node.hub.snapshot(row.id);
    const rec = new Recorder();
    await node.hub.attach(row.id, rec);
    await until(() => rec.telemetryFrames.length >= 3);
    await node.hub.replaceBasis(row.id, { primes: [17, 3, 2, 5], order: 'learned' }, 'owner');
    expect(rec.snapshots).toHaveLength(1);
    const snap = rec.snapshots[0]!;
    expect(snap.epoch).toBe(1);
    expect(snap.version).toBe(1);
    expect(snap.state.primes.slice(-1)).toEqual([17]);
    expect(snap.state.primes.slice(0, 3).sort((a, b) => a - b)).toEqual([2, 3, 5]);
    expect(snap.state.masses.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 9);
    expect(before.state.primes).toEqual([2, 3, 5, 7, 11, 13]);
    await expect(node.hub.propose(row.id, { fromVersion: 0, ops: [{ op: 'shift_phase', path: '/state/phases/0', value: 0.1 }] }, 'writer', 'x'))
      .rejects.toMatchObject({ code: expect.stringMatching(/stale_epoch|stale_version/) });
    expect(node.events.map((e) => e.name)).toContain('basis.changed');
  });

  it('recovers after a crash from its checkpoint plus every logged delta', async () => {
    const file = dbFile();
    const first = await start(file, { checkpointEveryMs: 100 });
    const { row } = await first.hub.create('org', demo(30));
    const rec = new Recorder();
    await first.hub.attach(row.id, rec);
    await until(() => rec.telemetryFrames.length >= 5);
    await new Promise((r) => setTimeout(r, 1200)); // a checkpoint lands
    for (let i = 0; i < 5; i++) await first.hub.propose(row.id, { fromVersion: i, ops: [{ op: 'set_phase', path: `/state/phases/${i}`, value: i + 0.5 }] }, 'writer', 'm');
    await first.hub.propose(row.id, { fromVersion: 5, ops: [{ op: 'set_entropy', path: '/state/entropy/plateauT', value: 40 }] }, 'owner', 'o');
    // no stop(): the process "dies" here
    await stop(first, false);

    const second = await start(file);
    const snap = await second.hub.snapshot(row.id);
    expect(snap.version).toBe(6);
    expect(snap.state.entropy.plateauT).toBe(40);
    for (let i = 0; i < 5; i++) expect(snap.state.phases[i]).toBeCloseTo(wrapPhase(i + 0.5, 'f64'), 12);
    expect(snap.t).toBeGreaterThan(0);
    const again = new Recorder();
    await second.hub.attach(row.id, again);
    await until(() => again.telemetryFrames.length >= 3);
    expect(again.telemetryFrames[0]!.t).toBeGreaterThan(0);
    expect(again.telemetryFrames.every((f) => f.version === 6)).toBe(true);
  });

  it('a member whose token expired leaves unless it is connected; a removed one cannot come back', async () => {
    const broker = new MemoryBroker('test');
    const node = await start(dbFile(), { presence: broker.presence });
    const { row } = await node.hub.create('org', demo());
    const member = (id: string, expiresAt: number) => ({ id, userId: 'key', orgId: 'org', role: 'writer' as const, displayName: null, expiresAt });
    await broker.presence.enter(row.id, 'online');
    await node.hub.join(row.id, member('stale', Date.now() - 1));
    await node.hub.join(row.id, member('online', Date.now() - 1));
    await node.hub.join(row.id, member('fresh', Date.now() + 60_000));
    await until(() => node.events.some((e) => e.name === 'member.left'), 3000);
    expect(node.events.filter((e) => e.name === 'member.left').map((e) => e.data)).toEqual([expect.objectContaining({ memberId: 'stale', reason: 'expired' })]);
    expect((await node.hub.members(row.id)).map((m) => m.id).sort()).toEqual(['fresh', 'online']);

    await node.hub.leave(row.id, 'fresh', 'removed');
    await expect(node.hub.join(row.id, member('fresh', Date.now() + 60_000))).rejects.toMatchObject({ status: 403, code: 'member_removed' });
  });

  it('evicts an idle space with a checkpoint and resumes exactly from it', async () => {
    const node = await start(dbFile(), { idleEvictMs: 50 });
    const { row } = await node.hub.create('org', demo(60));
    const rec = new Recorder();
    const { detach } = await node.hub.attach(row.id, rec);
    await until(() => rec.telemetryFrames.length >= 5);
    detach();
    await new Promise((r) => setTimeout(r, 100));
    // A delta while nobody listens: no tick applies it; the eviction's checkpoint must hold it.
    const v = (await node.hub.snapshot(row.id)).version;
    await node.hub.propose(row.id, { fromVersion: v, ops: [{ op: 'set_phase', path: '/state/phases/2', value: 1.25 }] }, 'writer', 'm');
    const atDetach = await node.hub.snapshot(row.id);
    expect(atDetach.state.phases[2]).toBe(1.25);
    await until(() => node.hub.stats().spaces === 0, 4000);
    const resumed = await node.hub.snapshot(row.id);
    expect(resumed.t).toBe(atDetach.t);
    expect(resumed.state.phases).toEqual(atDetach.state.phases);
    expect(resumed.state.masses).toEqual(atDetach.state.masses);
    expect(resumed.version).toBe(atDetach.version);
  });
});
