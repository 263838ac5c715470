/** The `resonance` CLI as a user runs it: the compiled binary in a child process. */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { normalize } from '../src/model/normalize.js';
import { runReference } from './helpers/reference.js';

const bin = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
const example = fileURLToPath(new URL('../examples/hqe.json', import.meta.url));

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', [bin, ...args], { env: { ...process.env, RESONANCE_BACKEND: 'cpu' } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('resonance CLI', () => {
  it('runs the seed example and prints a table whose metrics match the reference implementation', async () => {
    const { code, stdout } = await cli(['run', example]);
    expect(code).toBe(0);
    const config = JSON.parse(await readFile(example, 'utf8')) as unknown;
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
    const { code, stdout } = await cli(['run', example, '--json', '--snapshots', file, '--backend', 'cpu']);
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
    expect(malformed.stderr).toContain(`${broken}:1:17: Expected ',' or ']' after array element`);
    expect((await cli(['run', example, '--backend', 'gpu'])).code).toBe(2);
    expect((await cli(['run', example, '--frobnicate'])).code).toBe(2);
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

/** The CLI with `env` added, and how it ended: an exit code, or the signal that ended it (a timeout). */
function cliRun(args: string[], env: Record<string, string> = {}, timeout = 60_000): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', [bin, ...args], { env: { ...process.env, RESONANCE_BACKEND: 'cpu', ...env }, timeout }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, signal: err?.signal ?? null, stdout, stderr });
    });
  });
}

/** Lines of the non-TTY progress report (a slow machine may print one); not what these tests look at. */
const withoutProgress = (stderr: string): string => stderr.replace(/^step \d+\/\d+ \(restart \d+\)\n/gm, '');

interface Served {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  stop: () => Promise<void>;
}

/** `resonance serve ARGS` until its banner is complete (the line `  API key ...`). */
async function serve(args: string[], env: Record<string, string> = {}): Promise<Served> {
  const child = spawn('node', [bin, 'serve', ...args], { env: { ...process.env, RESONANCE_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL'); // not left running when the banner never comes
      reject(new Error(`no banner within 30 s: ${out} ${err}`));
    }, 30_000);
    const check = (): void => {
      if (/^ {2}API key .*\n/m.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => reject(new Error(`serve exited (${code}): ${out} ${err}`)));
  });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

const packageVersion = (JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { version: string }).version;
const COMMANDS = ['run', 'validate', 'serve', 'keys', 'clients', 'orgs', 'openapi'];

describe('resonance CLI: help, version, mistakes', () => {
  it('--help and -h print each command its own usage and exit 0', async () => {
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    for (const command of COMMANDS) expect(top.stdout).toMatch(new RegExp(`^ {2}${command}\\b`, 'm'));
    expect(top.stdout).toContain('exit codes: 0 ok, 1 failure, 2 invalid input');
    for (const command of COMMANDS) {
      for (const flag of ['--help', '-h']) {
        const { code, stdout, stderr } = await cli([command, flag]);
        expect({ command, flag, code, stderr }).toEqual({ command, flag, code: 0, stderr: '' });
        expect(stdout).toMatch(/^usage:/);
        expect(stdout).toContain(`resonance ${command}`);
        expect(stdout).not.toContain('openapi: 3.1');
      }
    }
    // Options documented where the command is: run's and serve's flags in their own usage.
    expect((await cli(['run', '--help'])).stdout).toContain('--snapshots FILE.jsonl');
    expect((await cli(['serve', '--help'])).stdout).toContain('--port N');
    expect((await cli(['help', 'serve'])).stdout).toBe((await cli(['serve', '--help'])).stdout);
  });

  it('--version, -v and version print the version of package.json', async () => {
    for (const flag of ['--version', '-v', 'version']) {
      const { code, stdout } = await cli([flag]);
      expect(code).toBe(0);
      expect(stdout).toBe(`resonance ${packageVersion}\n`);
    }
  });

  it('an unknown command or flag is named, with the nearest known name when one is close, exit 2', async () => {
    const serv = await cli(['serv']);
    expect(serv.code).toBe(2);
    expect(serv.stderr).toContain('unknown command "serv" (did you mean "serve"?)');
    const backnd = await cli(['run', example, '--backnd', 'cpu']);
    expect(backnd.code).toBe(2);
    expect(backnd.stderr).toContain('unknown option --backnd (did you mean --backend?)');
    const port = await cli(['serve', '--prot', '8080']);
    expect(port.code).toBe(2);
    expect(port.stderr).toContain('unknown option --prot (did you mean --port?)');
    const action = await cli(['keys', 'lsit', '--org', 'x']);
    expect(action.code).toBe(2);
    expect(action.stderr).toContain('unknown action "lsit" (did you mean "list"?)');
    // Nothing close: no suggestion.
    const nonsense = await cli(['frobnicate']);
    expect(nonsense.code).toBe(2);
    expect(nonsense.stderr).toContain('unknown command "frobnicate"');
    expect(nonsense.stderr).not.toContain('did you mean');
    // validate takes one file, not a flag as its name.
    const extra = await cli(['validate', '--nope']);
    expect(extra.code).toBe(2);
    expect(extra.stderr).toContain('unknown option --nope');
  });

  it('malformed JSON is reported as FILE:LINE:COLUMN with the line, exit 2', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'resonance-cli-'));
    const cases: Array<[string, string, string]> = [
      ['comma.json', '{\n  "primes": [2, 3, 5],\n  "seed": 42 "schedule": {}\n}\n', `:3:14: Expected ',' or '}' after property value`],
      // V8 names no position for these two: an unexpected token, and the end.
      ['token.json', '{\n  "primes": [2, 3, 5],\n  "seed": tru\n}\n', `:3:14: Unexpected token '\\n'`],
      ['end.json', '{\n  "primes": [2, 3, 5],\n  "seed":', `:3:10: Unexpected end of JSON input`],
    ];
    for (const [name, text, where] of cases) {
      const file = join(dir, name);
      await writeFile(file, text);
      for (const command of ['run', 'validate']) {
        const { code, stderr } = await cli([command, file]);
        expect(code).toBe(2);
        expect(stderr.split('\n')[0]).toBe(`resonance ${command}: ${file}${where}`);
      }
    }
    const shown = (await cli(['validate', join(dir, 'comma.json')])).stderr.split('\n');
    expect(shown.slice(1, 3)).toEqual(['    "seed": 42 "schedule": {}', '               ^']);
    // A byte order mark (some editors save one) is not an error.
    await writeFile(join(dir, 'bom.json'), '\ufeff{"primes": [2, 3, 5], "seed": 1}');
    expect((await cli(['validate', join(dir, 'bom.json')])).code).toBe(0);
    const missing = await cli(['run', join(dir, 'missing.json')]);
    expect(missing.stderr).toBe(`resonance run: cannot read ${join(dir, 'missing.json')}: no such file\n`);
  });
});

describe('resonance serve', () => {
  it('prints one line and exits 1 at once when the port is in use', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const dir = await mkdtemp(join(tmpdir(), 'resonance-cli-'));
      const started = Date.now();
      const r = await cliRun(['serve', '--port', String(port), '--data', dir], {}, 20_000);
      expect(r.signal).toBeNull();
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`resonance serve: port ${port} on 127.0.0.1 is in use (another server is listening there); choose another with --port N or RESONANCE_PORT (0 picks a free one)\n`);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      blocker.close();
    }
  });

  it('exits when a part fails after the store and workers started (Redis unreachable), instead of hanging', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'resonance-cli-'));
    // Port 1 refuses at once: the store, usage meter and retention have started by then and must be stopped.
    const r = await cliRun(['serve', '--port', '0', '--data', dir], { RESONANCE_REDIS_URL: 'redis://127.0.0.1:1' }, 30_000);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('resonance: cannot connect to Redis (RESONANCE_REDIS_URL)');
  });

  it('prints a banner after "listening on URL": demo and docs URLs, the engine, the data, how to get a key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'resonance-cli-'));
    // auto: on a machine without a GPU, the CPU engine and why, and none of Dawn's warnings on stderr.
    const s = await serve(['--port', '0', '--data', dir, '--backend', 'auto']);
    try {
      const lines = s.stdout().split('\n');
      const url = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(lines[0]!)?.[1];
      expect(url).toBeDefined();
      const banner = lines.slice(1, 6);
      expect(banner[0]).toBe(`  demo     ${url}/demo`);
      expect(banner[1]).toBe(`  API docs ${url}/docs`);
      expect(banner[2]).toMatch(/^ {2}engine {3}(cpu f64, .+; no GPU adapter \(.+\)|webgpu: .+)$/);
      expect(banner[3]).toBe(`  data     ${join(dir, 'resonance.db')} (SQLite; --data, RESONANCE_DATA)`);
      expect(banner[4]).toBe(`  API key  resonance keys create --org NAME --data ${dir}   (or a dev key: RESONANCE_BOOTSTRAP_KEY=...)`);
      for (const path of ['/demo', '/docs']) expect((await fetch(`${url}${path}`)).status).toBe(200);
      // The command it suggests works against the running server's store.
      expect((await cli(['keys', 'create', '--org', 'banner-org', '--data', dir])).code).toBe(0);
      expect(s.stderr()).not.toMatch(/Couldn't load Vulkan|Warning/);
    } finally {
      await s.stop();
    }
    const key = 'rsk_banner-test-key-0123456789abcdef';
    const withKey = await serve(['--port', '0', '--data', dir, '--backend', 'cpu'], { RESONANCE_BOOTSTRAP_KEY: key });
    try {
      expect(withKey.stdout()).toMatch(/^ {2}API key {2}X-Api-Key: the value of RESONANCE_BOOTSTRAP_KEY \(org "dev"\)$/m);
      expect(withKey.stdout()).toMatch(/^ {2}engine {3}cpu f64, [^;]+$/m);
      expect(withKey.stdout()).not.toContain(key);
    } finally {
      await withKey.stop();
    }
  });
});

describe('resonance run: engine choice', () => {
  it('auto without a GPU says so in one line instead of Dawn warnings; cpu looks for no GPU at all', async () => {
    const auto = await cli(['run', example, '--json', '--backend', 'auto']);
    expect(auto.code).toBe(0);
    const stderr = withoutProgress(auto.stderr);
    expect(stderr).not.toMatch(/Couldn't load Vulkan|Warning/);
    const result = JSON.parse(auto.stdout) as { backend: string };
    if (result.backend === 'cpu') expect(stderr).toMatch(/^resonance: no GPU adapter \(.+\); using the CPU engine\n$/);
    else expect(stderr).toBe('');
    const cpu = await cli(['run', example, '--json', '--backend', 'cpu']);
    expect(cpu.code).toBe(0);
    expect(withoutProgress(cpu.stderr)).toBe('');
  });
});
