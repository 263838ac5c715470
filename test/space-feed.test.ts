/**
 * One live feed per space for both transports, on a real server process: an SSE telemetry stream and a
 * WebSocket connection of the same space get the same frames in the same order, the feed outlives either
 * of them, and a member is present (not expired) while a WebSocket of it is open, through the broker's
 * presence, while an SSE stream keeps no member present (docs/spaces.md, "Live simulation").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Api, Client, type Frame } from './helpers/realtime.js';
import { DEV_KEY, SseParser, type SseEvent, sleep, startServer, type TestServer } from './helpers/server.js';

/** Session tokens (and so members' expiries) last this long. */
const TOKEN_TTL_S = 3;

/** An SSE reader that keeps every event and can be waited on. */
class SseClient {
  readonly events: SseEvent[] = [];
  ended = false;
  private readonly controller = new AbortController();
  private waiters: Array<() => void> = [];

  private constructor() {}

  static async open(url: string, headers: Record<string, string>): Promise<SseClient> {
    const c = new SseClient();
    const res = await fetch(url, { headers: { Accept: 'text/event-stream', ...headers }, signal: c.controller.signal });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const parser = new SseParser();
    const decoder = new TextDecoder();
    void (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          c.events.push(...parser.push(decoder.decode(value, { stream: true })));
          c.wake();
        }
      } catch {
        // Aborted by close().
      }
      c.ended = true;
      c.wake();
    })();
    return c;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  of(event: string): SseEvent[] {
    return this.events.filter((e) => e.event === event);
  }

  async waitFor(what: string, pred: () => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (this.ended) throw new Error(`stream ended while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; last events: ${JSON.stringify(this.events.slice(-3)).slice(0, 600)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.controller.abort();
  }
}

/** A comparable entry per delta, snapshot and event: its kind, its version (or event name) and its data. */
interface Entry {
  kind: string;
  key: number | string;
  data: unknown;
}

function wsEntries(frames: Frame[]): Entry[] {
  const out: Entry[] = [];
  for (const f of frames) {
    // The frame as sent, less its type, the proposer's requestId and the test client's own mark.
    const { type, requestId: _requestId, _binary, ...rest } = f;
    if (type === 'delta') out.push({ kind: 'delta', key: f.toVersion as number, data: rest });
    else if (type === 'snapshot') out.push({ kind: 'snapshot', key: f.snapshot.version as number, data: f.snapshot });
    else if (type === 'event') out.push({ kind: 'event', key: f.name as string, data: rest });
  }
  return out;
}

function sseEntries(events: SseEvent[]): Entry[] {
  const out: Entry[] = [];
  for (const e of events) {
    if (e.event === 'delta' || e.event === 'snapshot') out.push({ kind: e.event, key: Number(e.id), data: JSON.parse(e.data) });
    else if (e.event === 'event') out.push({ kind: 'event', key: (JSON.parse(e.data) as { name: string }).name, data: JSON.parse(e.data) });
  }
  return out;
}

/** The entries from the delta of version `from` to the one of version `to`, both included. */
function window(entries: Entry[], from: number, to: number): Entry[] {
  const start = entries.findIndex((e) => e.kind === 'delta' && e.key === from);
  const end = entries.findIndex((e) => e.kind === 'delta' && e.key === to);
  expect(start, `delta ${from}`).toBeGreaterThanOrEqual(0);
  expect(end, `delta ${to}`).toBeGreaterThanOrEqual(start);
  return entries.slice(start, end + 1);
}

describe('one feed per space for WebSocket and SSE', () => {
  let server: TestServer;
  let api: Api;

  beforeAll(async () => {
    server = await startServer({
      env: { RESONANCE_SESSION_TOKEN_TTL: String(TOKEN_TTL_S), RESONANCE_RATE_LIMIT: '100000', RESONANCE_WS_PROPOSALS_PER_SECOND: '100000' },
    });
    api = new Api(server.url);
  });
  afterAll(async () => {
    await server?.stop();
  });

  const telemetryUrl = (spaceId: string): string => `${server.url}/v1/spaces/${spaceId}/telemetry`;

  it('an SSE stream and a WebSocket of one space get the same deltas, snapshots and events, in the same order', async () => {
    const space = await api.space();
    const ws = await Client.started(await api.session(space.id));
    const sse = await SseClient.open(telemetryUrl(space.id), { 'x-api-key': DEV_KEY });
    await sse.waitFor('the SSE start', () => sse.of('snapshot').length > 0);
    const v0 = (JSON.parse(sse.of('snapshot')[0]!.data) as { version: number }).version;

    // WebSocket proposals (the proposer's own copies carry requestIds), a PATCH (a delta and
    // space.updated), a basis change (a delta, a new epoch's snapshot, basis.changed), more proposals.
    for (let i = 0; i < 10; i++) ws.send({ type: 'propose_delta', delta: { fromVersion: v0, ops: [{ op: 'shift_phase', path: `/state/phases/${i % 8}`, value: 0.01 }] }, requestId: `a${i}` });
    await ws.waitCount('10 deltas', (f) => f.type === 'delta', 10);
    expect((await api.call('PATCH', `/v1/spaces/${space.id}`, { operators: { resonanceTarget: 0.7 } })).status).toBe(200);
    const basis = await api.call('POST', `/v1/spaces/${space.id}/basis`, { primes: [2, 3, 5, 7, 11, 13, 17, 19, 23] });
    expect(basis.status).toBe(200);
    const vb = basis.json.version as number;
    for (let i = 0; i < 10; i++) ws.send({ type: 'propose_delta', delta: { fromVersion: vb, ops: [{ op: 'shift_phase', path: `/state/phases/${i % 9}`, value: 0.02 }] }, requestId: `b${i}` });
    const last = vb + 10;
    expect(last).toBe(v0 + 22);
    await ws.waitFor(`delta ${last}`, (f) => f.type === 'delta' && f.toVersion === last);
    await sse.waitFor(`delta ${last}`, () => sse.of('delta').some((e) => Number(e.id) === last));

    const fromWs = window(wsEntries(ws.frames), v0 + 1, last);
    const fromSse = window(sseEntries(sse.events), v0 + 1, last);
    expect(fromSse).toEqual(fromWs);
    // Contiguous versions, each once, on both; the new epoch's snapshot right after its delta.
    expect(fromSse.filter((e) => e.kind === 'delta').map((e) => e.key)).toEqual(Array.from({ length: 22 }, (_, i) => v0 + 1 + i));
    expect(fromSse.map((e) => `${e.kind}:${e.key}`)).toEqual(expect.arrayContaining(['event:space.updated', 'event:basis.changed', `snapshot:${vb}`]));
    const basisAt = fromSse.findIndex((e) => e.kind === 'delta' && e.key === vb);
    expect(fromSse[basisAt + 1]).toMatchObject({ kind: 'snapshot', key: vb });
    // The acknowledgement is the proposer's alone: no requestId reaches the stream.
    expect(ws.of('delta').filter((f) => f.requestId !== undefined)).toHaveLength(20);
    expect(sse.of('delta').every((e) => !('requestId' in (JSON.parse(e.data) as object)))).toBe(true);

    // The feed outlives either transport: the WebSocket goes, the stream still ticks and gets deltas.
    await ws.close();
    const ticks = sse.of('telemetry').length;
    const after = await api.call('POST', `/v1/spaces/${space.id}/deltas`, { fromVersion: last, ops: [{ op: 'shift_phase', path: '/state/phases/0', value: 0.5 }] });
    expect(after.status).toBe(200);
    await sse.waitFor('the delta after the WebSocket left, and more ticks', () => sse.of('delta').some((e) => Number(e.id) === last + 1) && sse.of('telemetry').length >= ticks + 3);
    // ... and a WebSocket joining later gets the same feed's frames.
    const late = await Client.started(await api.session(space.id, 'reader'));
    const next = await api.call('POST', `/v1/spaces/${space.id}/deltas`, { fromVersion: last + 1, ops: [{ op: 'shift_phase', path: '/state/phases/1', value: 0.5 }] });
    expect(next.status).toBe(200);
    await late.waitFor(`delta ${last + 2}`, (f) => f.type === 'delta' && f.toVersion === last + 2);
    await sse.waitFor(`delta ${last + 2}`, () => sse.of('delta').some((e) => Number(e.id) === last + 2));
    sse.close();
    await late.close();
  }, 40_000);

  it('a member whose token expired stays while its WebSocket is open; an SSE stream keeps no member present', async () => {
    const space = await api.space();
    const withSocket = await api.session(space.id);
    const ws = await Client.started(withSocket);
    const streamOnly = await api.session(space.id, 'reader');
    const sse = await SseClient.open(`${telemetryUrl(space.id)}?token=${encodeURIComponent(streamOnly.token)}`, {});
    await sse.waitFor('the SSE start', () => sse.of('snapshot').length > 0);
    const left = (id: string) => (e: SseEvent): boolean => {
      if (e.event !== 'event') return false;
      const ev = JSON.parse(e.data) as { name: string; data: { memberId?: string } };
      return ev.name === 'member.left' && ev.data.memberId === id;
    };

    // Both tokens expire; the hub's sweep (every second) expires the member with no socket.
    const expired = await ws.waitFor('member.left of the stream-only member', (f) => f.type === 'event' && f.name === 'member.left' && f.data.memberId === streamOnly.sessionId, (TOKEN_TTL_S + 5) * 1000);
    expect(expired.data.reason).toBe('expired');
    await sleep(1500);
    const members = (await api.call('GET', `/v1/spaces/${space.id}/members`)).json.items as Array<{ id: string }>;
    expect(members.map((m) => m.id)).toEqual([withSocket.sessionId]);
    expect(ws.of('event').filter((f) => f.name === 'member.left' && f.data.memberId === withSocket.sessionId)).toHaveLength(0);
    // Leaving does not end the stream (only revocation or removal does): it saw its own member leave.
    expect(sse.ended).toBe(false);
    expect(sse.events.filter(left(streamOnly.sessionId))).toHaveLength(1);

    // The socket closes: its member leaves as disconnected (the sweep did not take it first).
    await ws.close();
    await sse.waitFor('member.left of the socket member', () => sse.events.some(left(withSocket.sessionId)), 5000);
    const reason = (JSON.parse(sse.events.find(left(withSocket.sessionId))!.data) as { data: { reason: string } }).data.reason;
    expect(reason).toBe('disconnected');
    sse.close();
  }, 30_000);
});
