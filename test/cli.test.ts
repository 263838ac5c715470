/** The `resonance` CLI as a user runs it: the compiled binary in a child process. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { normalize } from '../src/model/normalize.js';
import { runReference } from './helpers/reference.js';

const bin = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
const seedExample = fileURLToPath(new URL('../examples/seed-hqe.json', import.meta.url));

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', [bin, ...args], { env: { ...process.env, RESONANCE_BACKEND: 'cpu' } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('resonance CLI', () => {
  it('runs the seed example and prints a table whose metrics match the reference implementation', async () => {
    const { code, stdout } = await cli(['run', seedExample]);
    expect(code).toBe(0);
    const config = JSON.parse(await readFile(seedExample, 'utf8')) as unknown;
    const norm = normalize(config);
    if (!norm.ok) throw new Error();
    const ref = runReference(norm.normalized);
    expect(stdout).toContain(`status     ${ref.status}`);
    expect(stdout).toContain(`steps      ${ref.step}`);
    const line = stdout.split('\n').find((l) => l.startsWith('resonanceStrength'))!;
    expect(Number(line.split(/\s+/)[1])).toBeCloseTo(ref.finalMetrics.resonanceStrength as number, 4);
  });

  it('prints JSON with --json and writes snapshots as JSON lines', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'resonance-cli-'));
    const file = join(dir, 'snaps.jsonl');
    const { code, stdout } = await cli(['run', seedExample, '--json', '--snapshots', file, '--backend', 'cpu']);
    expect(code).toBe(0);
    const result = JSON.parse(stdout) as { status: string; seed: number; backend: string; snapshots: Array<{ step: number }> };
    expect(result).toMatchObject({ status: 'converged', seed: 42, backend: 'cpu' });
    const lines = (await readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { step: number });
    expect(lines.map((l) => l.step)).toEqual(result.snapshots.map((s) => s.step));
  });

  it('exits 2 and lists every bad field of an invalid config', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'resonance-cli-'));
    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ primes: [2, 4, 7, 7], schedule: { dt: 0 }, seed: -1 }));
    for (const command of ['run', 'validate']) {
      const { code, stderr } = await cli([command, bad]);
      expect(code).toBe(2);
      for (const pointer of ['/primes/1', '/primes/3', '/schedule/dt', '/seed']) expect(stderr).toContain(pointer);
      expect(stderr).toContain('4 is not prime');
    }
  });

  it('exits 2 on unreadable input, malformed JSON and bad flags', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'resonance-cli-'));
    const broken = join(dir, 'broken.json');
    await writeFile(broken, '{"primes": [2, 3');
    expect((await cli(['run', join(dir, 'missing.json')])).code).toBe(2);
    const malformed = await cli(['run', broken]);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('not valid JSON');
    expect((await cli(['run', seedExample, '--backend', 'gpu'])).code).toBe(2);
    expect((await cli(['run', seedExample, '--frobnicate'])).code).toBe(2);
    expect((await cli(['nonsense'])).code).toBe(2);
  });

  it('validate prints the normalized config with its warnings', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'resonance-cli-'));
    const file = join(dir, 'unsorted.json');
    await writeFile(file, JSON.stringify({ primes: [5, 2, 3], seed: 9 }));
    const { code, stdout, stderr } = await cli(['validate', file]);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ ok: true, normalized: { primes: [2, 3, 5], seed: 9, mixer: { gammaMax: 1 } } });
    expect(stderr).toContain('warning: primes were not in ascending order');
  });
});
