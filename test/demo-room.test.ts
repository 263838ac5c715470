/**
 * The example space (`demo-room`) end to end over REST, WebSocket and SSE, driven by
 * examples/demo_room.py: a client written against the contract alone, in Python's standard library.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DEV_KEY, startServer, type TestServer } from './helpers/server.js';

const SCRIPT = fileURLToPath(new URL('../examples/demo_room.py', import.meta.url));
let server: TestServer;

beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server?.stop();
});

it('runs the demo-room example from an independent client', async () => {
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile('python3', [SCRIPT, server.url, DEV_KEY], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
  expect(code, `${stdout}\n${stderr}\n${server.logs()}`).toBe(0);
  const steps = stdout.trim().split('\n').map((l) => JSON.parse(l) as { step: string; [k: string]: unknown });
  expect(steps.map((s) => s.step)).toEqual(['created', 'session', 'welcome', 'telemetry', 'delta', 'sse', 'snapshot']);
  expect(steps.find((s) => s.step === 'delta')).toMatchObject({ fromVersion: 0, toVersion: 1 });
  expect(steps.find((s) => s.step === 'snapshot')).toMatchObject({ version: 1, epoch: 0 });
});
