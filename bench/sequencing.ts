/**
 * Where a cluster sequences a space's writes (docs/scaling.md, "Sequencing writes"), measured side by side
 * on the machine's Postgres and Redis: the latency of one accepted delta, proposals one after another.
 *
 *   owner       the owner appends (fenced appendDelta): what every accepted delta costs in any design
 *   forwarded   a node that does not own the space forwards the proposal to the owner over Redis (Rpc),
 *               which appends and answers: the design Resonance uses
 *   database    the node that received the proposal sequences it in Postgres itself: the version row
 *               locked, the conflict check in SQL against a last-writer-per-path table, the append, that
 *               table updated, then a notice published to the owner (which must still apply the delta)
 *
 *   npm run bench:sequencing [-- --proposals 500]
 *
 * Writes bench/results/sequencing-<date>.json and its section of bench/README.md.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { RedisBroker } from '../src/cluster/redis-broker.js';
import { Rpc } from '../src/cluster/rpc.js';
import { normalizeSpace } from '../src/model/space.js';
import { PgClusterStore } from '../src/store/postgres/cluster.js';
import { openPg } from '../src/store/postgres/pool.js';
import { PgSpaceStore } from '../src/store/postgres/spaces.js';
import { createDatabase, deleteRedisPrefix, REDIS_URL } from './cluster-nodes.js';
import { replaceResultsSection } from './harness.js';


const pct = (sorted: number[], p: number): number => +sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!.toFixed(3);
const summary = (ms: number[]) => {
  const s = ms.slice().sort((a, b) => a - b);
  return { n: s.length, p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99), mean: +(s.reduce((a, b) => a + b, 0) / s.length).toFixed(3) };
};

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { proposals: { type: 'string', default: '500' } } });
  const n = Number(values.proposals);
  const run = randomBytes(4).toString('hex');
  const db = await createDatabase(`resonance_bench_seq_${run}`);
  const pool = await openPg(db.url);
  const prefix = `resonance-bench:${run}:`;
  const owner = await RedisBroker.open({ url: REDIS_URL, nodeId: 'owner', prefix });
  const other = await RedisBroker.open({ url: REDIS_URL, nodeId: 'other', prefix });
  const ownerRpc = new Rpc(owner);
  const otherRpc = new Rpc(other);
  try {
    await ownerRpc.start();
    await otherRpc.start();
    const spaces = new PgSpaceStore(pool);
    const cluster = new PgClusterStore(pool);
    const cfg = normalizeSpace({ name: 'seq', basis: { primes: [2, 3, 5, 7, 11, 13] }, seed: 1 });
    if (!cfg.ok) throw new Error('bad config');
    const op = (i: number) => ({ op: 'shift_phase', path: `/state/phases/${i % 6}`, value: 0.001 });

    // Each design on a space of its own, so every one appends to a log of the same length.
    const space = async (id: string): Promise<{ fence: { nodeId: string; epoch: number }; version: number }> => {
      await spaces.create({ id, orgId: 'org', name: 'seq', config: cfg.normalized });
      const lease = await cluster.acquire(`space:${id}`, 'org', 'owner', 600_000);
      return { fence: { nodeId: 'owner', epoch: lease!.epoch }, version: 0 };
    };
    const timed = async (label: string, once: (i: number) => Promise<void>): Promise<number[]> => {
      for (let i = 0; i < 20; i++) await once(-1 - i); // warm-up
      const ms: number[] = [];
      for (let i = 0; i < n; i++) {
        const t = performance.now();
        await once(i);
        ms.push(performance.now() - t);
      }
      process.stdout.write(`${label}: ${JSON.stringify(summary(ms))}\n`);
      return ms;
    };

    // 1. The owner appends.
    const s1 = await space('spc_owner');
    const ownerMs = await timed('owner', async (i) => {
      const d = await spaces.appendDelta('spc_owner', s1.version, { epoch: 0, fromVersion: s1.version, ops: [op(i)], paths: [op(i).path], author: 'm' }, undefined, s1.fence);
      s1.version = d!.version;
    });

    // 2. Forwarded to the owner over Redis.
    const s2 = await space('spc_fwd');
    ownerRpc.handle('append', async (args) => {
      const { i } = args as { i: number };
      const d = await spaces.appendDelta('spc_fwd', s2.version, { epoch: 0, fromVersion: s2.version, ops: [op(i)], paths: [op(i).path], author: 'm' }, undefined, s2.fence);
      s2.version = d!.version;
      return { version: d!.version };
    });
    const forwardedMs = await timed('forwarded', async (i) => {
      await otherRpc.call('owner', 'append', { i });
    });

    // 3. Sequenced in Postgres by the receiving node, then a notice to the owner.
    const s3 = await space('spc_db');
    await pool.query('CREATE TABLE bench_path_writes (space_id TEXT NOT NULL, path TEXT NOT NULL, version BIGINT NOT NULL, PRIMARY KEY (space_id, path))');
    const databaseMs = await timed('database', async (i) => {
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        const { rows } = await c.query<{ version: number }>('SELECT version FROM spaces WHERE id = $1 FOR UPDATE', ['spc_db']);
        const version = rows[0]!.version;
        const paths = [op(i).path];
        // The conflict check a non-owner would need: the last write of each path the delta touches.
        await c.query('SELECT path, version FROM bench_path_writes WHERE space_id = $1 AND path = ANY($2)', ['spc_db', paths]);
        await c.query('UPDATE spaces SET version = version + 1, updated_at = $2 WHERE id = $1', ['spc_db', Date.now()]);
        await c.query(
          'INSERT INTO space_deltas (space_id, version, epoch, from_version, ops, paths, author, created_at) VALUES ($1, $2, 0, $3, $4, $5, $6, $7)',
          ['spc_db', version + 1, version, JSON.stringify([op(i)]), JSON.stringify(paths), 'm', Date.now()],
        );
        await c.query(
          'INSERT INTO bench_path_writes (space_id, path, version) SELECT $1, unnest($2::text[]), $3 ON CONFLICT (space_id, path) DO UPDATE SET version = excluded.version',
          ['spc_db', paths, version + 1],
        );
        await c.query('COMMIT');
        s3.version = version + 1;
      } finally {
        c.release();
      }
      await other.publish('space:spc_db', JSON.stringify({ version: s3.version }));
    });

    const result = {
      kind: 'sequencing',
      date: new Date().toISOString().slice(0, 10),
      proposals: n,
      note: 'sequential proposals, one client; Postgres 15 and Redis 7 on this machine (loopback), synchronous_commit=on',
      owner: summary(ownerMs),
      forwarded: summary(forwardedMs),
      database: summary(databaseMs),
      forwardingCostMs: +(summary(forwardedMs).p50 - summary(ownerMs).p50).toFixed(3),
      databaseCostMs: +(summary(databaseMs).p50 - summary(ownerMs).p50).toFixed(3),
    };
    const path = `bench/results/sequencing-${result.date}.json`;
    await writeFile(path, JSON.stringify(result, null, 2) + '\n');
    const row = (name: string, s: ReturnType<typeof summary>, what: string) => `| ${name} | ${s.p50} | ${s.p90} | ${s.p99} | ${what} |`;
    const table = [
      `Latency of one accepted delta, ${n} sequential proposals (\`npm run bench:sequencing\`, ${result.date}; \`${path}\`):`,
      '',
      '| design | p50 ms | p90 ms | p99 ms | what it includes |',
      '|---|---|---|---|---|',
      row('owner appends', result.owner, 'the fenced append every design pays'),
      row('forwarded to the owner (used)', result.forwarded, 'a Redis round trip to the owner, which appends'),
      row('sequenced in Postgres by the receiving node', result.database, 'row lock, SQL conflict check, append, path index update, notice to the owner'),
      '',
      `Forwarding adds ${result.forwardingCostMs} ms at the median; sequencing in the database adds ${result.databaseCostMs} ms, and the owner`,
      'would still have to learn of each delta (the notice) and apply them in version order before its next tick.',
    ].join('\n');
    await replaceResultsSection('bench/README.md', 'sequencing', table);
    process.stdout.write(`wrote ${path}\n`);
  } finally {
    await otherRpc.stop();
    await ownerRpc.stop();
    await owner.close();
    await other.close();
    await pool.end();
    await db.drop();
    await deleteRedisPrefix(prefix);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
