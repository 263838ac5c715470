/**
 * Live spaces on a cluster of 3 real nodes (the machine's Postgres and Redis), with haproxy in front for the
 * client that must survive its node's death: one owner simulates the space and sequences its writes, every
 * node serves readers and writers, and when the owner is killed another node takes over without losing an
 * acknowledged delta.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LiveSession, ResonanceClient } from '@resonance/sdk';
import { type Cluster, type LoadBalancer, startCluster, startHaproxy } from '../helpers/cluster.js';
import { Api, Client, type Frame } from '../helpers/realtime.js';
import { DEV_KEY, sleep, waitFor } from '../helpers/server.js';

const TTL_MS = 1500;
let cluster: Cluster;
let lb: LoadBalancer;
let apis: Api[];
let spaceId: string;
const readers: Client[] = [];

const shift = (fromVersion: number, i: number, requestId: string): Frame => ({
  type: 'propose_delta',
  requestId,
  delta: { fromVersion, ops: [{ op: 'shift_phase', path: `/state/phases/${i}`, value: 0.01 }] },
});
const deltas = (c: Client): Frame[] => c.of('delta');
const versions = (c: Client): number[] => deltas(c).map((f) => f.toVersion as number);
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function owner(): Promise<{ node: string; leaseEpoch: number } | undefined> {
  const r = await apis[1]!.call('GET', '/v1/cluster');
  return (r.json.spaces as Array<{ spaceId: string; node: string; leaseEpoch: number }>).find((s) => s.spaceId === spaceId);
}

beforeAll(async () => {
  // A budget no test here reaches: the writers run flat out.
  cluster = await startCluster(3, { RESONANCE_LEASE_TTL_MS: String(TTL_MS), RESONANCE_RATE_LIMIT: '1000000' });
  lb = await startHaproxy(cluster.nodes);
  apis = cluster.nodes.map((n) => new Api(n.url));
  spaceId = (await apis[0]!.space({ policy: { publishHz: 20 } })).id;
}, 120_000);

afterAll(async () => {
  for (const r of readers) r.ws.terminate();
  await lb?.stop();
  await cluster?.stop();
});

describe('a space on three nodes', () => {
  it('is owned by the node of its first listener, and every node lists the same nodes and owner', async () => {
    readers.push(await Client.started(await apis[0]!.session(spaceId, 'reader')));
    readers.push(await Client.started(await apis[1]!.session(spaceId, 'reader')));
    readers.push(await Client.started(await apis[2]!.session(spaceId, 'reader')));
    const views = await Promise.all(apis.map((a) => a.call('GET', '/v1/cluster')));
    for (const [i, v] of views.entries()) {
      expect(v.status).toBe(200);
      expect(v.headers.get('x-resonance-node')).toBe(`node-${i}`);
      expect((v.json.nodes as Array<{ id: string }>).map((n) => n.id)).toEqual(['node-0', 'node-1', 'node-2']);
      expect(v.json.spaces).toEqual([expect.objectContaining({ spaceId, node: 'node-0', leaseEpoch: 1 })]);
    }
    // Telemetry reaches the readers of the nodes that relay the space.
    for (const r of readers) await r.waitFor('telemetry', (f) => f.type === 'telemetry');
  });

  it('sequences writers on two other nodes into one contiguous history that every reader sees identically', async () => {
    const writers = [await Client.started(await apis[1]!.session(spaceId, 'writer')), await Client.started(await apis[2]!.session(spaceId, 'writer'))];
    const perWriter = 15;
    for (let i = 0; i < perWriter; i++) {
      for (const [w, c] of writers.entries()) c.send(shift(0, w + 1, `w${w}-${i}`));
      await sleep(5);
    }
    // Each writer's own proposals come back with its requestId (its acknowledgements), exactly once.
    for (const [w, c] of writers.entries()) {
      const acks = await c.waitCount('acks', (f) => f.type === 'delta' && typeof f.requestId === 'string', perWriter);
      expect(acks.map((f) => f.requestId).sort()).toEqual(Array.from({ length: perWriter }, (_, i) => `w${w}-${i}`).sort());
    }
    const total = 2 * perWriter;
    for (const r of readers) await r.waitCount('all deltas', (f) => f.type === 'delta', total);
    const reference = deltas(readers[0]!).map((f) => JSON.stringify({ v: f.toVersion, ops: f.ops, author: f.author }));
    expect(versions(readers[0]!)).toEqual(range(1, total));
    for (const r of readers.slice(1)) {
      expect(versions(r)).toEqual(range(1, total));
      expect(deltas(r).map((f) => JSON.stringify({ v: f.toVersion, ops: f.ops, author: f.author }))).toEqual(reference);
      expect(deltas(r).some((f) => 'requestId' in f)).toBe(false);
    }
    for (const c of writers) c.ws.terminate();
  });

  it('starts a reader joining a relaying node where its start state ends, however far the relay lags the log', async () => {
    // Writes through two nodes, so the log runs ahead of what a relay has delivered when a reader joins.
    let writing = true;
    const writer = (async () => {
      for (let n = 0; writing; n++) {
        await apis[n % 2]!.call('POST', `/v1/spaces/${spaceId}/deltas`, { fromVersion: 0, ops: [{ op: 'shift_phase', path: '/state/phases/5', value: 0.001 }] });
        await sleep(15);
      }
    })();
    try {
      for (let i = 0; i < 12; i++) {
        // Each reader alone on node-2: its relay starts with it.
        const c = await Client.started(await apis[2]!.session(spaceId, 'reader'));
        await sleep(150);
        const start = c.frames.find((f) => f.type === 'snapshot')?.snapshot?.version as number;
        const after = versions(c);
        c.ws.terminate();
        expect(after.length, 'deltas after the start').toBeGreaterThan(0);
        expect(after, `reader ${i}: snapshot at ${start}`).toEqual(range(start + 1, start + after.length));
      }
    } finally {
      writing = false;
      await writer;
    }
  });

  it('survives a SIGKILL of its owner: no acknowledged delta lost, versions contiguous everywhere, telemetry resumes within the lease TTL', async () => {
    // A client through the load balancer on each node (least connections spreads them): one is on the owner.
    const sdk = new ResonanceClient({ baseUrl: lb.url, apiKey: DEV_KEY, WebSocket: WebSocket as never });
    const sessions: LiveSession[] = [];
    const seen: number[][] = [];
    for (let i = 0; i < 3; i++) {
      const s = await sdk.sessions.open(spaceId, { role: 'writer', encoding: 'json', reconnect: { baseMs: 100, maxMs: 500 } });
      const mine: number[] = [s.version];
      s.on('delta', (d) => mine.push(d.toVersion));
      s.on('snapshot', (snap) => mine.push(-snap.version));
      sessions.push(s);
      seen.push(mine);
    }
    const before = await owner();
    expect(before).toMatchObject({ node: 'node-0', leaseEpoch: 1 });

    // Writers keep proposing through the load balancer while the owner dies; every acknowledged version is kept.
    const acked = new Map<number, number>();
    let writing = true;
    const writer = (async () => {
      for (let n = 0; writing; n++) {
        const s = sessions[n % sessions.length]!;
        if (s.state !== 'open') {
          await sleep(20);
          continue;
        }
        try {
          // An answer that does not come in time is no acknowledgement either (and must not stall the writer).
          const v = await Promise.race([
            s.proposeDelta({ fromVersion: s.version, ops: [{ op: 'shift_phase', path: '/state/phases/3', value: 0.001 }] }),
            sleep(5000).then(() => Promise.reject(new Error('no answer'))),
          ]);
          acked.set(v, n);
        } catch {
          // Refused or cut off by the failover: not acknowledged, so not owed.
        }
        await sleep(10);
      }
    })();
    await sleep(500);
    const survivors = readers.slice(1);
    const telemetryBefore = survivors.map((r) => r.of('telemetry').length);
    const killedAt = Date.now();
    await cluster.nodes[0]!.kill('SIGKILL');
    // A surviving node takes the lease (next epoch) within the TTL and its readers get telemetry again.
    const after = await waitFor('a new owner', async () => {
      const o = await owner().catch(() => undefined);
      return o && o.node !== 'node-0' ? o : undefined;
    }, 10_000, 100);
    expect(after.leaseEpoch).toBe(2);
    await waitFor('telemetry on the survivors', async () => (survivors.every((r, i) => r.of('telemetry').length > telemetryBefore[i]! + 2) ? true : undefined), 10_000, 50);
    expect(Date.now() - killedAt).toBeLessThan(TTL_MS + 4000);
    await sleep(1000);
    writing = false;
    await writer;
    expect(acked.size).toBeGreaterThan(10);

    // The log holds every acknowledged delta, at the version it was acknowledged with.
    const head = (await apis[1]!.call('GET', `/v1/spaces/${spaceId}`)).json.version as number;
    for (const v of acked.keys()) expect(v).toBeLessThanOrEqual(head);
    for (const r of survivors) {
      await r.waitFor('the head', () => versions(r).at(-1) === head, 10_000);
      expect(versions(r)).toEqual(range(1, head));
    }
    // The SDK clients (one of them was on the dead node) reconnected by themselves and resumed without a gap.
    for (const [i, s] of sessions.entries()) {
      await waitFor(`sdk ${i} at the head`, async () => (s.state === 'open' && s.version === head ? true : undefined), 10_000, 50);
      const mine = seen[i]!;
      expect(mine.filter((v) => v < 0), 'a resume by replay, not a snapshot').toEqual([]);
      expect(mine, `sdk ${i}: version ${s.version}, head ${head}`).toEqual(range(mine[0]!, head));
    }
    for (const s of sessions) s.close();
  });
});
