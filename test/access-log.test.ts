/**
 * Which requests get a log line (RESONANCE_ACCESS_LOG): by default those that failed (status >= 400) or
 * were slow, each with its X-Request-Id; `all` logs every request; `off` none. Logs are read after the
 * server stopped (the logger writes in batches and flushes on exit).
 */
import { describe, expect, it } from 'vitest';
import { DEV_KEY, startServer } from './helpers/server.js';

interface RequestLine {
  msg: string;
  requestId: string;
  status: number;
  path: string;
}

/** Sends one validate that succeeds and one that fails; returns their request ids and the request lines logged. */
async function exchange(accessLog?: string): Promise<{ ok: string; bad: string; lines: RequestLine[] }> {
  const srv = await startServer({ env: { RESONANCE_LOG_LEVEL: 'info', ...(accessLog ? { RESONANCE_ACCESS_LOG: accessLog } : {}) } });
  const validate = (body: unknown) =>
    fetch(`${srv.url}/v1/hqe/validate`, { method: 'POST', headers: { 'X-Api-Key': DEV_KEY, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  try {
    const ok = await validate({ primes: [2, 3, 5] });
    const bad = await validate({ primes: [4] });
    expect([ok.status, bad.status]).toEqual([200, 400]);
    await srv.kill('SIGTERM');
    const lines = srv
      .logs()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as RequestLine)
      .filter((l) => l.msg === 'request');
    return { ok: ok.headers.get('x-request-id') ?? '', bad: bad.headers.get('x-request-id') ?? '', lines };
  } finally {
    await srv.stop();
  }
}

describe('access log', () => {
  it('logs failed requests only by default, with their request id and status', async () => {
    const { ok, bad, lines } = await exchange();
    expect(lines.map((l) => l.requestId)).not.toContain(ok);
    expect(lines.find((l) => l.requestId === bad)).toMatchObject({ status: 400, path: '/v1/hqe/validate' });
  });

  it('logs every request with RESONANCE_ACCESS_LOG=all, and none with off', async () => {
    const all = await exchange('all');
    expect(all.lines.find((l) => l.requestId === all.ok)).toMatchObject({ status: 200 });
    expect(all.lines.find((l) => l.requestId === all.bad)).toMatchObject({ status: 400 });
    const off = await exchange('off');
    expect(off.lines).toEqual([]);
  });
});
