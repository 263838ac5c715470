/** The Redis broker between nodes, on the machine's Redis (a fresh key prefix per run). */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisBroker } from '../../src/cluster/redis-broker.js';
import { REDIS_URL } from '../helpers/cluster.js';
const prefix = `resonance-test:${randomBytes(6).toString('hex')}:`;
const open: RedisBroker[] = [];

async function node(nodeId: string, presenceTtlMs?: number): Promise<RedisBroker> {
  const b = await RedisBroker.open({ url: REDIS_URL, nodeId, prefix, ...(presenceTtlMs ? { presenceTtlMs } : {}) });
  open.push(b);
  return b;
}

const until = async (what: string, check: () => boolean | Promise<boolean>, ms = 3000): Promise<void> => {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
});

describe('RedisBroker', () => {
  it('delivers a node’s publications to the other nodes in order, never back to itself', async () => {
    const a = await node('a:1');
    const b = await node('b:1');
    const c = await node('c:1');
    const got: Record<string, string[]> = { a: [], b: [], c: [] };
    await a.subscribe('space:s1', (p) => got.a!.push(p));
    await b.subscribe('space:s1', (p) => got.b!.push(p));
    await c.subscribe('space:other', (p) => got.c!.push(p));
    const sent = Array.from({ length: 200 }, (_, i) => JSON.stringify({ v: i + 1, text: 'line\nbreak' }));
    for (const p of sent) void a.publish('space:s1', p);
    await until('200 messages on b', () => got.b!.length === 200);
    expect(got.b).toEqual(sent);
    expect(got.a).toEqual([]);
    expect(got.c).toEqual([]);
  });

  it('stops delivering once every handler of a channel unsubscribed', async () => {
    const a = await node('a:2');
    const b = await node('b:2');
    const first: string[] = [];
    const second: string[] = [];
    const un1 = await b.subscribe('ch', (p) => first.push(p));
    const un2 = await b.subscribe('ch', (p) => second.push(p));
    await a.publish('ch', 'one');
    await until('one', () => first.length === 1 && second.length === 1);
    await un1();
    await a.publish('ch', 'two');
    await until('two', () => second.length === 2);
    expect(first).toEqual(['one']);
    await un2();
    await a.publish('ch', 'three');
    await a.publish('probe', 'x');
    await new Promise((r) => setTimeout(r, 100));
    expect(second).toEqual(['one', 'two']);
  });

  it('shares presence across nodes: present while any connection on any node is open', async () => {
    const a = await node('a:3');
    const b = await node('b:3');
    expect(await b.presence.has('s', 'm1')).toBe(false);
    const leaveA = await a.presence.enter('s', 'm1');
    const leaveB = await b.presence.enter('s', 'm1');
    expect(await b.presence.has('s', 'm1')).toBe(true);
    expect(await a.presence.has('s', 'm2')).toBe(false);
    await leaveA();
    expect(await a.presence.has('s', 'm1')).toBe(true);
    await leaveB();
    await leaveB();
    expect(await a.presence.has('s', 'm1')).toBe(false);
  });

  it('forgets the presence of a node that died once its TTL is past, and keeps a live node’s by renewing it', async () => {
    const live = await node('live:4', 300);
    const doomed = await node('doomed:4', 300);
    await live.presence.enter('s', 'alive');
    await doomed.presence.enter('s', 'ghost');
    // The doomed node goes without releasing anything (its process died).
    open.splice(open.indexOf(doomed), 1);
    await doomed.close();
    await new Promise((r) => setTimeout(r, 700));
    expect(await live.presence.has('s', 'ghost')).toBe(false);
    expect(await live.presence.has('s', 'alive')).toBe(true);
  });

  it('reports its health and refuses to open on an unreachable Redis', async () => {
    const a = await node('a:5');
    expect(a.health()).toEqual({ kind: 'redis', ok: true });
    await expect(RedisBroker.open({ url: 'redis://127.0.0.1:1', nodeId: 'x', prefix })).rejects.toThrow();
  });
});

describe('Rpc over the broker', () => {
  it('calls a method on another node and carries results and errors back', async () => {
    const { Rpc, RpcRemoteError, RpcTimeout } = await import('../../src/cluster/rpc.js');
    const a = new Rpc(await node('rpc-a'), 300);
    const b = new Rpc(await node('rpc-b'), 300, (err) => ({ status: 409, code: 'conflict', message: (err as Error).message }));
    await a.start();
    await b.start();
    b.handle('add', async (args, from) => ({ sum: (args as { x: number; y: number }).x + (args as { x: number; y: number }).y, from }));
    b.handle('refuse', async () => {
      throw new Error('stale');
    });
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => a.call<{ sum: number; from: string }>('rpc-b', 'add', { x: i, y: 1 })));
    expect(answers.map((r) => r.sum)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(answers[0]!.from).toBe('rpc-a');
    const refused = await a.call('rpc-b', 'refuse', {}).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RpcRemoteError);
    expect((refused as InstanceType<typeof RpcRemoteError>).remote).toEqual({ status: 409, code: 'conflict', message: 'stale' });
    // Nobody listens on a node that is gone: the call times out rather than hanging.
    await expect(a.call('rpc-gone', 'add', { x: 1, y: 1 })).rejects.toBeInstanceOf(RpcTimeout);
    await a.stop();
    await b.stop();
  });
});
