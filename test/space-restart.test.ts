/**
 * Recovery of a live space: SIGKILL the server while writers are proposing. After the restart every
 * acknowledged delta is in the log at the version it was acknowledged with, versions are contiguous, and
 * the simulation continues from its last checkpoint plus the log (t does not start again from 0).
 */
import { afterAll, expect, it } from 'vitest';
import { DEV_KEY, readSse, sleep, startServer, type TestServer } from './helpers/server.js';

const servers: TestServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});

const headers = { 'X-Api-Key': DEV_KEY, 'Content-Type': 'application/json' };

async function api<T>(server: TestServer, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(server.url + path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  return { status: res.status, body: (await res.json()) as T };
}

interface Snapshot {
  version: number;
  t: number;
  state: { phases: number[] };
}

it('keeps every acknowledged delta, contiguous, and continues the simulation after SIGKILL', async () => {
  // No rate limit: the writers propose as fast as the server acknowledges.
  const env = {
    RESONANCE_SPACE_CHECKPOINT_MS: '200', RESONANCE_JWT_SECRET: 'space-restart-test-secret', RESONANCE_RATE_LIMIT: '1000000', RESONANCE_QUOTA_DELTAS_PER_MINUTE: '100000000',
  };
  const first = await startServer({ env });
  servers.push(first);
  const created = await api<{ id: string }>(first, 'POST', '/v1/spaces', {
    name: 'crash-room', basis: { primes: [2, 3, 5, 7, 11, 13] }, policy: { publishHz: 30 }, seed: 5,
  });
  expect(created.status).toBe(201);
  const id = created.body.id;

  // A listener keeps the space ticking (and checkpointing) until the kill.
  const session = await api<{ token: string }>(first, 'POST', `/v1/spaces/${id}/sessions`, { role: 'reader' });
  const listening = readSse(`${first.url}/v1/spaces/${id}/telemetry?token=${encodeURIComponent(session.body.token)}`, {}, {
    stopWhen: () => false, timeoutMs: 60_000, allowTimeout: true,
  }).catch(() => null);
  await sleep(1000);

  // Four writers propose shift_phase with values unique to each proposal until the server dies.
  const acked = new Map<number, number>(); // toVersion -> value
  let dead = false;
  const writer = async (w: number): Promise<void> => {
    for (let i = 0; !dead; i++) {
      const value = (w * 1000 + i + 1) * 1e-6;
      try {
        const res = await fetch(`${first.url}/v1/spaces/${id}/deltas`, {
          method: 'POST', headers, body: JSON.stringify({ fromVersion: 0, ops: [{ op: 'shift_phase', path: `/state/phases/${w}`, value }] }),
        });
        if (res.status === 200) {
          const body = (await res.json()) as { version: number; toVersion?: number };
          acked.set(body.toVersion ?? body.version, value);
        }
      } catch {
        return; // the server is gone
      }
    }
  };
  const writers = [0, 1, 2, 3].map(writer);
  await sleep(800);
  const before = await api<Snapshot>(first, 'GET', `/v1/spaces/${id}/snapshot`);
  expect(before.status).toBe(200);
  await first.kill('SIGKILL');
  dead = true;
  await Promise.all(writers);
  await listening;
  expect(acked.size).toBeGreaterThan(10);

  const second = await startServer({ dataDir: first.dataDir, env });
  servers.push(second);
  const after = await api<Snapshot>(second, 'GET', `/v1/spaces/${id}/snapshot`);
  expect(after.status).toBe(200);
  const maxAcked = Math.max(...acked.keys());
  expect(after.body.version).toBeGreaterThanOrEqual(maxAcked);
  // Continued from a checkpoint, not from the start.
  expect(after.body.t).toBeGreaterThan(0);
  expect(after.body.t).toBeLessThanOrEqual(before.body.t + 60);

  // Replay the whole log over SSE (Last-Event-ID 0): contiguous versions, each acknowledged value in place.
  const token = (await api<{ token: string }>(second, 'POST', `/v1/spaces/${id}/sessions`, { role: 'reader' })).body.token;
  const read = await readSse(`${second.url}/v1/spaces/${id}/telemetry?token=${encodeURIComponent(token)}`, { 'Last-Event-ID': '0' }, {
    stopWhen: (events) => events.filter((e) => e.event === 'delta').length >= after.body.version && events.some((e) => e.event === 'telemetry'),
    timeoutMs: 20_000,
  });
  const deltas = read.events.filter((e) => e.event === 'delta').map((e) => JSON.parse(e.data) as { toVersion: number; ops: Array<{ value: number }> });
  expect(deltas.map((d) => d.toVersion)).toEqual(Array.from({ length: after.body.version }, (_, i) => i + 1));
  for (const [version, value] of acked) expect(deltas[version - 1]!.ops[0]!.value).toBe(value);
  const telemetry = read.events.filter((e) => e.event === 'telemetry').map((e) => JSON.parse(e.data) as { t: number; version: number });
  expect(telemetry[0]!.t).toBeGreaterThanOrEqual(after.body.t);
  expect(telemetry[0]!.version).toBe(after.body.version);
});
