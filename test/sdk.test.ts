/**
 * The SDK against a real server: spaces and HQE over REST, a live session over WebSocket (MessagePack and
 * JSON), typed errors and conflicts, the quickstart example, and a session that outlives a server
 * kill: it reconnects by itself and resumes from its last version with no delta lost or duplicated.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConflictError, type Delta, type HqeConfigInput, type LiveSession, ResonanceClient, ResonanceError, type SessionTokenRequest, type StreamEvent, UnreachableError } from '@resonance/sdk';
import { DEMO_ROOM as demoRoom, DEV_KEY, sleep, startServer, type TestServer, waitFor } from './helpers/server.js';

describe('SDK', () => {
  let server: TestServer;
  let rs: ResonanceClient;
  const sessions: LiveSession[] = [];

  beforeAll(async () => {
    server = await startServer();
    rs = new ResonanceClient({ apiKey: DEV_KEY, baseUrl: server.url });
  });
  afterAll(async () => {
    for (const s of sessions) s.close();
    await server?.stop();
  });

  it('manages spaces over REST and raises typed errors with the problem body', async () => {
    const space = await rs.spaces.create(demoRoom);
    expect(space).toMatchObject({ name: 'demo-room', epoch: 0, version: 0, status: 'active' });
    expect((await rs.spaces.get(space.id)).id).toBe(space.id);
    const page = await rs.spaces.list({ pageSize: 1 });
    expect(page.items).toHaveLength(1);
    const patched = await rs.spaces.patch(space.id, { operators: { localityBias: 0.4 } });
    expect(patched.version).toBe(1);
    const basis = await rs.spaces.replaceBasis(space.id, { primes: [2, 3, 5, 7] });
    expect(basis.epoch).toBe(1);
    expect((await rs.spaces.snapshot(space.id)).state.primes).toEqual([2, 3, 5, 7]);

    const err = await rs.spaces.create({ ...demoRoom, basis: { primes: [2, 4] } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResonanceError);
    expect(err).toMatchObject({ status: 400, code: 'validation_failed' });
    // The composite at its own pointer (after the summary that lists every composite value).
    expect((err as ResonanceError).problem?.errors?.map((e) => e.pointer)).toContain('/basis/primes/1');
    await expect(rs.spaces.get('spc_missing')).rejects.toMatchObject({ status: 404, code: 'not_found' });
  });

  for (const encoding of ['msgpack', 'json'] as const) {
    it(`opens a live session (${encoding}): telemetry, deltas with their versions, and conflicts`, async () => {
      const space = await rs.spaces.create({ ...demoRoom, policy: { publishHz: 30 } });
      const a = await rs.sessions.open(space.id, { role: 'writer', displayName: 'a', encoding });
      const b = await rs.sessions.open(space.id, { role: 'writer', displayName: 'b', encoding: 'json' });
      sessions.push(a, b);
      expect(a.encoding).toBe(encoding);
      expect(a.version).toBe(0);
      expect(a.snapshot?.state.phases).toHaveLength(6);

      const telemetry: number[] = [];
      a.on('telemetry', (m) => telemetry.push(m.t));
      await waitFor('telemetry', async () => (telemetry.length >= 3 ? true : undefined));
      expect(telemetry[1]).toBe(telemetry[0]! + 1);

      const seenByB: Delta[] = [];
      b.on('delta', (d) => seenByB.push(d));
      const before = a.snapshot!.state.phases[3]!;
      const v = await a.proposeDelta({ fromVersion: a.version, toVersion: a.version + 1, cv: [a.version], ops: [{ op: 'shift_phase', path: '/state/phases/3', value: 0.0123 }] });
      expect(v).toBe(1);
      expect(a.version).toBe(1);
      expect(a.snapshot!.state.phases[3]).toBeCloseTo((before + 0.0123) % (2 * Math.PI), 6);
      await waitFor('delta at b', async () => (seenByB.length === 1 ? true : undefined));
      expect(seenByB[0]).toMatchObject({ fromVersion: 0, toVersion: 1 });

      // Both set the same phase from version 1: one wins, the other gets a ConflictError and a fresh snapshot.
      const results = await Promise.allSettled([
        a.proposeDelta({ fromVersion: 1, ops: [{ op: 'set_phase', path: '/state/phases/0', value: 1 }] }),
        b.proposeDelta({ fromVersion: 1, ops: [{ op: 'set_phase', path: '/state/phases/0', value: 2 }] }),
      ]);
      const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(rejected).toHaveLength(1);
      expect(rejected[0]!.reason).toBeInstanceOf(ConflictError);
      expect(rejected[0]!.reason).toMatchObject({ code: 'conflict', currentVersion: 2, expectedFrom: 1 });
      const loser = results[0]!.status === 'rejected' ? a : b;
      expect(loser.version).toBeGreaterThanOrEqual(2);

      // A reader's proposal is refused with a typed error naming the reason.
      const reader = await rs.sessions.open(space.id, { role: 'reader' });
      sessions.push(reader);
      await expect(reader.proposeDelta({ fromVersion: reader.version, ops: [{ op: 'shift_phase', path: '/state/phases/1', value: 0.1 }] }))
        .rejects.toMatchObject({ code: 'insufficient_role' });
    });
  }

  it('runs HQE: validate, run, sessions, snapshot pages and the stream', async () => {
    const config = JSON.parse(readFileSync(fileURLToPath(new URL('../examples/hqe.json', import.meta.url)), 'utf8')) as HqeConfigInput;
    expect((await rs.hqe.validate(config)).ok).toBe(true);
    const run = await rs.hqe.run(config);
    expect(run.status).toBe('converged');
    const session = await rs.hqe.sessions.create({ ...config, schedule: { steps: 64 }, observables: { snapshotsInterval: 8 } });
    const snap = await rs.hqe.sessions.step(session.id, 16);
    expect(snap.step).toBeGreaterThanOrEqual(16);
    await waitFor('completed', async () => ((await rs.hqe.sessions.get(session.id)).status === 'completed' ? true : undefined));
    const steps: number[] = [];
    for await (const s of rs.hqe.sessions.snapshots(session.id, { pageSize: 3 })) steps.push(s.step);
    expect(steps.length).toBeGreaterThan(3);
    expect(steps).toEqual([...steps].sort((x, y) => x - y));
    // The stream of a completed session ends by itself after its last event: `end` with the status.
    const events = await drain(rs.hqe.sessions.stream(session.id));
    expect(events.map((e) => e.event)).toContain('snapshot');
    expect(events.at(-2)).toMatchObject({ event: 'status', data: { status: 'completed' } });
    expect(events.at(-1)).toMatchObject({ event: 'end', data: { status: 'completed' } });
    // Resumed after its last event: only the end.
    const resumed = await drain(rs.hqe.sessions.stream(session.id, { lastEventId: events.at(-2)!.id! }));
    expect(resumed.map((e) => [e.event, e.data])).toEqual([['end', { status: 'completed' }]]);
  });

  it('closes the request when the loop over a stream is left: a Node process that breaks out exits on its own', async () => {
    // A running session whose stream is quiet after its first event: nothing fills the client's buffer, so
    // the server keeps the stream open (a busy one it would end), and so does an abandoned response's socket.
    const quiet = { metricsInterval: 1_000_000_000, snapshotsInterval: 1_000_000_000 };
    const session = await rs.hqe.sessions.create({ primes: [2, 3, 5, 7, 11, 13], schedule: { steps: 100_000_000, plateauT: 1_000_000_000 }, observables: quiet, seed: 3 });
    try {
      const sdk = new URL('../packages/sdk/dist/index.js', import.meta.url).href;
      const script = `
        import { ResonanceClient } from ${JSON.stringify(sdk)};
        const rs = new ResonanceClient({ apiKey: process.env.KEY, baseUrl: process.env.URL });
        for await (const e of rs.hqe.sessions.stream(process.env.ID)) { console.log('got', e.event); break; }
        console.log('left the loop');`;
      const started = Date.now();
      const out = await new Promise<{ err: Error | null; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, KEY: DEV_KEY, URL: server.url, ID: session.id }, timeout: 15_000 }, (err, stdout, stderr) =>
          resolve({ err, stdout, stderr }));
      });
      expect(out.stdout).toMatch(/left the loop/);
      expect(out.err, `the process did not exit by itself: ${out.stderr}`).toBeNull();
      expect(Date.now() - started).toBeLessThan(8000);
    } finally {
      await rs.hqe.sessions.close(session.id);
    }
  });

  it('raises UnreachableError, a ResonanceError naming the URL with the cause attached, when the server is down', async () => {
    // A port nothing listens on: one the system just handed out and took back.
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const url = `http://127.0.0.1:${port}`;
    const down = new ResonanceClient({ apiKey: DEV_KEY, baseUrl: url });
    for (const attempt of [() => down.spaces.list(), () => drain(down.hqe.sessions.stream('ses_x'))]) {
      const err = await attempt().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnreachableError);
      expect(err).toBeInstanceOf(ResonanceError);
      expect(err).toMatchObject({ status: 0, code: 'unreachable', url });
      expect((err as Error).message).toContain(`could not reach the server at ${url}: fetch failed (ECONNREFUSED`);
      expect((err as Error).cause).toBeInstanceOf(TypeError);
    }
  });

  it('joins with session tokens from an auth endpoint, holding no key: asked once per session, with the role and name', async () => {
    const space = await rs.spaces.create({ ...demoRoom, policy: { publishHz: 30 } });
    const asked: SessionTokenRequest[] = [];
    // What a page's backend does with its key; the page's client holds none.
    const page = new ResonanceClient({
      baseUrl: server.url,
      authEndpoint: async (request) => {
        asked.push(request);
        return rs.sessions.mintToken({ ...request, role: 'reader' });
      },
    });
    const live = await page.sessions.open(space.id, { role: 'writer', displayName: 'ada' });
    sessions.push(live);
    expect(asked).toEqual([{ spaceId: space.id, role: 'writer', displayName: 'ada' }]);
    // The backend decided: a reader, whatever the page asked for.
    expect(live.role).toBe('reader');
    await new Promise<void>((resolve) => live.on('telemetry', () => resolve()));
    // REST with no key and no token is the server's 401, not a client-side guess.
    await expect(page.spaces.get(space.id)).rejects.toMatchObject({ status: 401, code: 'unauthorized' });
  });

  it('refuses to make a client without credentials', () => {
    expect(() => new ResonanceClient({ baseUrl: server.url })).toThrow(ResonanceError);
    expect(() => new ResonanceClient({ baseUrl: server.url, apiKey: '' })).toThrow(/needs an apiKey .*, an accessToken .* or an authEndpoint/);
    expect(() => new ResonanceClient({ baseUrl: server.url, accessToken: 'tok' })).not.toThrow();
  });

  it('fails a live session the server closes with the status, code and detail of its problem', async () => {
    const space = await rs.spaces.create(demoRoom);
    const session = await rs.sessions.open(space.id, { role: 'reader' });
    sessions.push(session);
    const errors: ResonanceError[] = [];
    session.on('error', (e) => errors.push(e));
    await rs.spaces.delete(space.id);
    await waitFor('closed', async () => (session.state === 'closed' ? true : undefined));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ status: 404, code: 'space_deleted', problem: { status: 404, code: 'space_deleted', detail: 'the space was deleted' } });
    expect(errors[0]!.message).toMatch(/the space was deleted \(404 space_deleted\)/);
  });

  it('runs the quickstart example against a real server', async () => {
    const script = fileURLToPath(new URL('../dist/examples/quickstart.js', import.meta.url));
    const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [script], { env: { ...process.env, RESONANCE_API_KEY: DEV_KEY, RESONANCE_URL: server.url }, timeout: 30_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? 1 : 0, stdout, stderr }));
    });
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/^telemetry \{/m);
    expect(out.stdout).toMatch(/^delta v 1$/m);
  });
});

/** Every event of a stream, failing after `ms` if it does not end. */
async function drain(stream: AsyncGenerator<StreamEvent>, ms = 10_000): Promise<StreamEvent[]> {
  const events: StreamEvent[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the stream did not end within ${ms} ms (${events.length} events, last ${JSON.stringify(events.at(-1))})`)), ms);
  });
  try {
    await Promise.race([(async () => {
      for await (const e of stream) events.push(e);
    })(), timeout]);
  } finally {
    clearTimeout(timer);
    void stream.return(undefined);
  }
  return events;
}

describe('SDK against refused WebSocket upgrades', () => {
  let server: TestServer | undefined;
  afterAll(async () => {
    await server?.stop();
  });

  it('rejects open() with the HTTP status, code and detail of the refusal (a sockets quota)', async () => {
    server = await startServer({ env: { RESONANCE_QUOTA_SOCKETS: '1' } });
    const rs = new ResonanceClient({ apiKey: DEV_KEY, baseUrl: server.url });
    const space = await rs.spaces.create(demoRoom);
    const first = await rs.sessions.open(space.id, { role: 'reader' });
    try {
      const err = await Promise.race([rs.sessions.open(space.id, { role: 'reader' }).catch((e: unknown) => e), sleep(10_000).then(() => new Error('open() still waits 10 s later'))]);
      expect(err).toBeInstanceOf(ResonanceError);
      expect(err).toMatchObject({ status: 409, code: 'quota_exceeded', problem: { status: 409, code: 'quota_exceeded', meta: { quota: 'sockets', limit: 1 } } });
      expect((err as Error).message).toMatch(/refused the realtime connection: the org has its maximum of 1 open WebSocket connections \(409 quota_exceeded\)/);
    } finally {
      first.close();
    }
  });
});

describe('SDK session across a server kill', () => {
  const servers: TestServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.stop();
  });

  it('reconnects by itself and resumes from its last version: no delta lost or duplicated', async () => {
    const first = await startServer();
    servers.push(first);
    const port = Number(new URL(first.url).port);
    const rs = new ResonanceClient({ apiKey: DEV_KEY, baseUrl: first.url });
    const space = await rs.spaces.create({ ...demoRoom, policy: { publishHz: 20 } });
    const session = await rs.sessions.open(space.id, { role: 'reader', reconnect: { baseMs: 100, maxMs: 500 } });
    const seen: number[] = [];
    const states: string[] = [];
    session.on('delta', (d) => seen.push(d.toVersion));
    session.on('state', (s) => states.push(s));

    const propose = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) await rs.spaces.proposeDelta(space.id, { fromVersion: 0, ops: [{ op: 'shift_phase', path: '/state/phases/2', value: 0.001 }] });
    };
    await propose(5);
    await waitFor('5 deltas', async () => (seen.length === 5 ? true : undefined));

    await first.kill('SIGKILL');
    await waitFor('reconnecting', async () => (session.state === 'reconnecting' ? true : undefined));
    const second = await startServer({ dataDir: first.dataDir, port });
    servers.push(second);
    await propose(5); // while the session is still away, or just back
    await waitFor('reopened', async () => (session.state === 'open' ? true : undefined), 15_000);
    await propose(5);
    await waitFor('15 deltas', async () => (seen.length >= 15 ? true : undefined), 15_000);
    await sleep(300);
    expect(seen).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    expect(session.version).toBe(15);
    expect(states).toEqual(expect.arrayContaining(['reconnecting', 'open']));
    session.close();
  });
});
