/**
 * Delta throughput of one live space against the length of its retained history: accepted deltas per
 * second through the space hub (the code behind POST /v1/spaces/{id}/deltas and the WebSocket's
 * propose_delta), on a real SQLite file with the server's settings (deltas acknowledged once in the WAL,
 * a checkpoint and history pruning every 5 s), with 0, 100 000 and 500 000 deltas already retained.
 * Accepting a delta must cost the same whatever the history holds: the run passes when the rate at the
 * largest history is at least `--bar` (0.8) of the rate at none. Writes bench/results/deltas-<date>.json
 * and updates bench/README.md.
 *
 *   npm run bench:deltas [-- --levels 0,100000,500000 --seconds 3 --rounds 3 --bar 0.8]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { checkpointText } from '../src/engine/checkpoint.js';
import { CpuEngine } from '../src/engine/cpu/engine.js';
import { firstPrimes } from '../src/model/primes.js';
import { specFromSpace } from '../src/model/spec.js';
import type { AcceptedOp } from '../src/sim/deltas.js';
import { Scheduler } from '../src/sim/scheduler.js';
import type { DeltaFrame, EventFrame } from '@resonance/sdk/protocol';
import { type SpaceListener, SpaceHub } from '../src/sim/spaces.js';
import { type Db, openDb } from '../src/store/db.js';
import { SqliteSessionStore } from '../src/store/sessions.js';
import { SqliteSpaceStore } from '../src/store/spaces.js';
import { replaceResultsSection } from './harness.js';

const K = 16;
/** The server's defaults (RESONANCE_SPACE_CHECKPOINT_MS, policy.historySeconds): every delta below stays retained. */
const CHECKPOINT_MS = 5000;

interface Level {
  retained: number;
  dir: string;
  db: Db;
  hub: SpaceHub;
  scheduler: Scheduler;
  engine: CpuEngine;
  spaceId: string;
  version: number;
  /** First request to the space: it is read from the store (the history's summary) and enters the engine. */
  loadMs: number;
  rounds: Array<{ deltasPerSecond: number; p50Ms: number; p99Ms: number }>;
}

/** A listener that keeps the space live (ticking at publishHz, checkpointed every 5 s) and drops what it gets. */
const listener: SpaceListener = {
  telemetry: () => undefined,
  delta: (_f: DeltaFrame) => undefined,
  snapshot: () => undefined,
  event: (_e: EventFrame) => undefined,
  closed: () => undefined,
};

let seed = 1;
const rand = (n: number): number => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed % n;
};

/** One delta as clients send them: mostly shift_phase (rebased), one in ten a set_phase. */
function randomOp(): AcceptedOp {
  const path = `/state/phases/${rand(K)}`;
  return rand(10) === 0 ? { op: 'set_phase', path, value: rand(6283) / 1000 } : { op: 'shift_phase', path, value: (rand(200) - 100) / 10_000 };
}

async function setUp(retained: number): Promise<Level> {
  const dir = mkdtempSync(join(tmpdir(), 'resonance-bench-deltas-'));
  const db = openDb(join(dir, 'resonance.db'));
  const engine = new CpuEngine({ precision: 'f64', threads: 0 });
  const scheduler = new Scheduler({ engine, sessions: new SqliteSessionStore(db) });
  const store = new SqliteSpaceStore(db, 'wal');
  const hub = new SpaceHub({ scheduler, store, maxBasis: 2048, idleEvictMs: 60_000, checkpointEveryMs: CHECKPOINT_MS });
  await hub.start();
  await scheduler.start();
  const { row } = await hub.create('bench', { name: 'bench', basis: { primes: firstPrimes(K) }, seed: 1 });
  // The log as a live space leaves it: `retained` deltas, all younger than historySeconds, and a checkpoint
  // at the newest (a live space is checkpointed every 5 s). Written straight into SQLite, in one transaction.
  const insert = db.prepare('INSERT INTO space_deltas (space_id, version, epoch, from_version, ops, paths, author, created_at) VALUES (?, ?, 0, ?, ?, ?, ?, ?)');
  const now = Date.now();
  let bytes = 0;
  db.transaction(() => {
    for (let v = 1; v <= retained; v++) {
      const op = randomOp();
      const ops = JSON.stringify([op]);
      const paths = JSON.stringify([op.path]);
      bytes += ops.length + paths.length;
      insert.run(row.id, v, v - 1, ops, paths, 'writer', now);
    }
    db.prepare('UPDATE spaces SET version = ?, delta_bytes = ? WHERE id = ?').run(retained, bytes, row.id);
  })();
  if (retained > 0) {
    const side = new CpuEngine({ precision: 'f64', threads: 0 });
    const checkpoint = await side.exportState(side.add(specFromSpace(row.config)));
    await side.destroy();
    await store.update(row.id, { checkpoint: checkpointText(checkpoint), checkpointVersion: retained });
  }
  const started = performance.now();
  const { row: attached } = await hub.attach(row.id, listener);
  const loadMs = performance.now() - started;
  return { retained, dir, db, hub, scheduler, engine, spaceId: row.id, version: attached.version, loadMs, rounds: [] };
}

/** One writer proposing back to back for `seconds`: accepted deltas per second and the latency of each. */
async function measure(level: Level, seconds: number): Promise<{ deltasPerSecond: number; p50Ms: number; p99Ms: number }> {
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const t = performance.now();
    const { frame } = await level.hub.propose(level.spaceId, { fromVersion: level.version, ops: [randomOp()] }, 'writer', 'writer');
    latencies.push(performance.now() - t);
    level.version = frame.toVersion;
  }
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => +latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))]!.toFixed(3);
  return { deltasPerSecond: +(latencies.length / seconds).toFixed(1), p50Ms: pct(50), p99Ms: pct(99) };
}

/** What a checkpoint's pruning costs at this history (nothing is old enough to go): ms per call. */
async function pruneMs(level: Level): Promise<number> {
  const store = new SqliteSpaceStore(level.db, 'wal');
  const before = Date.now() - 600_000;
  const started = performance.now();
  for (let i = 0; i < 5; i++) await store.pruneDeltas(level.spaceId, before, level.version);
  return +((performance.now() - started) / 5).toFixed(3);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      levels: { type: 'string', default: '0,100000,500000' },
      seconds: { type: 'string', default: '3' },
      rounds: { type: 'string', default: '3' },
      bar: { type: 'string', default: '0.8' },
      warmup: { type: 'string', default: '1' },
    },
  });
  const retainedLevels = values.levels.split(',').map(Number);
  const seconds = Number(values.seconds);
  const bar = Number(values.bar);
  const levels: Level[] = [];
  for (const retained of retainedLevels) {
    const started = performance.now();
    levels.push(await setUp(retained));
    console.log(`retained ${retained}: set up in ${((performance.now() - started) / 1000).toFixed(1)} s, first request ${levels.at(-1)!.loadMs.toFixed(1)} ms`);
  }
  try {
    for (const level of levels) await measure(level, Number(values.warmup));
    // Rounds interleave the levels, so a slow minute of a shared machine falls on all of them.
    for (let round = 0; round < Number(values.rounds); round++) {
      for (const level of levels) {
        const r = await measure(level, seconds);
        level.rounds.push(r);
        console.log(`round ${round + 1}, retained ${level.retained}: ${r.deltasPerSecond} deltas/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms`);
      }
    }
    const rows = [];
    for (const level of levels) {
      rows.push({
        retained: level.retained,
        deltasPerSecond: median(level.rounds.map((r) => r.deltasPerSecond)),
        p50Ms: median(level.rounds.map((r) => r.p50Ms)),
        p99Ms: median(level.rounds.map((r) => r.p99Ms)),
        firstRequestMs: +level.loadMs.toFixed(1),
        pruneMs: await pruneMs(level),
        rounds: level.rounds,
      });
    }
    const base = rows[0]!;
    const top = rows.at(-1)!;
    const ratio = +(top.deltasPerSecond / base.deltasPerSecond).toFixed(3);
    const date = new Date().toISOString().slice(0, 10);
    const host = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version };
    const summary = {
      kind: 'deltas',
      date,
      host,
      method: `one space (k = ${K}, publishHz 30, one listener), one writer proposing back to back through SpaceHub.propose; RESONANCE_SPACE_SYNC=wal; checkpoint every ${CHECKPOINT_MS} ms; median of ${values.rounds} interleaved rounds of ${seconds} s`,
      levels: rows,
      ratio: { of: `${top.retained}/${base.retained}`, value: ratio, bar, pass: ratio >= bar },
    };
    const path = `bench/results/deltas-${date}.json`;
    await writeFile(path, JSON.stringify(summary, null, 2) + '\n');
    const table = [
      '| retained deltas | deltas/s (median) | p50 ms | p99 ms | first request ms | prune ms |',
      '|---:|---:|---:|---:|---:|---:|',
      ...rows.map((r) => `| ${r.retained} | ${r.deltasPerSecond} | ${r.p50Ms} | ${r.p99Ms} | ${r.firstRequestMs} | ${r.pruneMs} |`),
    ].join('\n');
    const verdict = `Rate at ${top.retained} retained / rate at ${base.retained}: **${ratio}** (bar ${bar}: ${ratio >= bar ? 'pass' : 'FAIL'}).`;
    const body = `Run ${date} on ${host.cpu}, ${host.cores} cores, Node ${host.node}. File: \`results/deltas-${date}.json\`.\n\n${table}\n\n${verdict}`;
    if (!(await replaceResultsSection('bench/README.md', 'deltas', body))) console.log('bench/README.md has no deltas-results markers; not updated');
    console.log(`\n${table}\n\n${verdict}\nwrote ${path}`);
    if (ratio < bar) process.exitCode = 1;
  } finally {
    for (const level of levels) {
      await level.hub.stop();
      await level.scheduler.stop();
      await level.engine.destroy();
      level.db.close();
      rmSync(level.dir, { recursive: true, force: true });
    }
  }
}

await main();
