/**
 * The SDK as a new user gets it: `npm pack` of the workspace, `npm install` of the tarball into an empty
 * project, the consumer's code type-checked against the shipped declarations under three module
 * resolutions, imported in Node (ESM and CJS), and bundled for the browser. Needs no store: it sits in the
 * sqlite project only (not in vitest.config.ts's Postgres list), so it runs once.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('..', import.meta.url));
const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
const TIMEOUT = 180_000;
const BUNDLE_LIMIT = 60 * 1024;
const INSTALL_LIMIT = 5 * 1024 * 1024;

/**
 * npm's own environment, minus what an enclosing `npm test` exported: npm_config_local_prefix (the repo)
 * and the workspace settings would point the consumer's install back at the repository.
 */
const npmEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) || /^npm_config_(cache|userconfig|registry)$/i.test(k)),
);

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], cwd: string): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: npmEnv, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

async function ok(cmd: string, args: string[], cwd: string): Promise<Ran> {
  const r = await run(cmd, args, cwd);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** Every file under `dir`, with its size. */
async function filesUnder(dir: string): Promise<Array<{ path: string; size: number }>> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return Promise.all(entries.filter((e) => e.isFile()).map(async (e) => {
    const path = join(e.parentPath, e.name);
    return { path, size: (await stat(path)).size };
  }));
}

/**
 * A consumer as users write it. The @ts-expect-error line must be an error, so the check fails (TS2578,
 * unused directive) if the declarations went missing or degraded to `any`.
 */
const CONSUMER_TS = `import { ResonanceClient, type HqeConfigInput, type LiveSession } from '@resonance/sdk';
import { CloseCode, ROLES } from '@resonance/sdk/protocol';

const client = new ResonanceClient({ apiKey: 'k', baseUrl: 'http://127.0.0.1:1' });
const config: HqeConfigInput = { primes: [2, 3, 5, 7], schedule: { steps: 64 }, mixer: { type: 'flow' } };
// @ts-expect-error primes is number[]: a string must not type-check
const bad: HqeConfigInput = { primes: 'x' };
const gone: 4410 = CloseCode.SPACE_GONE;
const first: 'owner' | 'admin' | 'writer' | 'reader' = ROLES[0];
let live: LiveSession | undefined;

export async function main(): Promise<number> {
  const run = await client.hqe.run(config);
  live = await client.sessions.open('space-id', { role: first, encoding: 'msgpack' });
  return run.steps + gone + live.version + bad.primes.length;
}
`;

const RUNTIME_MJS = `import { ResonanceClient, ResonanceError } from '@resonance/sdk';
import { CloseCode } from '@resonance/sdk/protocol';
const client = new ResonanceClient({ apiKey: 'k', baseUrl: 'http://127.0.0.1:1' });
let thrown = null;
try { new ResonanceClient({}); } catch (e) { thrown = e; }
console.log(JSON.stringify({
  client: client instanceof ResonanceClient && typeof client.hqe.run === 'function' && typeof client.sessions.open === 'function',
  thrown: thrown instanceof ResonanceError ? thrown.code : String(thrown),
  spaceGone: CloseCode.SPACE_GONE,
}));
`;

// Node 20.19+ (the package's engines) loads ESM through require(): what a node10/CommonJS consumer runs.
const RUNTIME_CJS = `const { ResonanceClient } = require('@resonance/sdk');
const { CloseCode } = require('@resonance/sdk/protocol');
console.log(JSON.stringify({ client: typeof new ResonanceClient({ accessToken: 't' }).spaces.create, spaceGone: CloseCode.SPACE_GONE }));
`;

const RESOLUTIONS = [
  { name: 'NodeNext', module: 'NodeNext', moduleResolution: 'NodeNext' },
  { name: 'Bundler', module: 'ESNext', moduleResolution: 'Bundler' },
  // node10 knows no "exports": the subpath resolves through typesVersions. module CommonJS ignores
  // "type": "module", so the same consumer.ts is checked as CommonJS.
  { name: 'node10', module: 'CommonJS', moduleResolution: 'node10' },
] as const;

function tsconfig(module: string, moduleResolution: string, files: string[]): string {
  return JSON.stringify({
    compilerOptions: {
      noEmit: true,
      strict: true,
      noPropertyAccessFromIndexSignature: true,
      noUncheckedIndexedAccess: true,
      exactOptionalPropertyTypes: true,
      // The package's own .d.ts files are checked too, against nothing but the ES and DOM libs.
      skipLibCheck: false,
      types: [],
      lib: ['ES2022', 'DOM'],
      target: 'ES2022',
      module,
      moduleResolution,
    },
    files,
  });
}

describe('@resonance/sdk as an installable package', () => {
  let work = '';
  let consumer = '';
  let tarball = '';
  let entries: string[] = [];

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'resonance-sdk-pack-'));
    // prepack builds dist/ (tsc -b, a no-op when it is current).
    const packed = await ok('npm', ['pack', '-w', '@resonance/sdk', '--pack-destination', work, '--json'], repo);
    // npm lists what it packed: the tarball's paths, under package/.
    const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    if (!info) throw new Error(`npm pack reported no tarball: ${packed.stdout}`);
    tarball = join(work, info.filename);
    entries = info.files.map((f) => `package/${f.path}`);

    consumer = join(work, 'consumer');
    await mkdir(consumer);
    await writeFile(join(consumer, 'package.json'), JSON.stringify({ name: 'sdk-consumer', private: true, type: 'module' }));
    await ok('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], consumer);
  }, TIMEOUT);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('packs the built entry points and declarations, and no sources, source maps, tests or build state', async () => {
    for (const p of ['dist/index.js', 'dist/index.d.ts', 'dist/protocol.js', 'dist/protocol.d.ts', 'package.json', 'README.md']) {
      expect(entries, `tarball lacks package/${p}`).toContain(`package/${p}`);
    }
    const sources = entries.filter((p) => /\.(c|m)?tsx?$/.test(p) && !/\.d\.(c|m)?ts$/.test(p));
    expect(sources, 'TypeScript sources in the tarball').toEqual([]);
    expect(entries.filter((p) => p.startsWith('package/src/')), 'src/ in the tarball').toEqual([]);
    expect(entries.filter((p) => /(^|\/)(test|tests|__tests__)\/|\.(test|spec)\.[cm]?[jt]s$/.test(p)), 'tests in the tarball').toEqual([]);
    expect(entries.filter((p) => p.endsWith('.tsbuildinfo')), 'tsc build state in the tarball').toEqual([]);
    // Maps would point at src/, which is not shipped.
    expect(entries.filter((p) => p.endsWith('.map')), 'source maps in the tarball').toEqual([]);
    // Every module shipped has its declarations and a source it was built from now (no stale output of a removed file).
    const modules = entries.filter((p) => /^package\/dist\/[^/]+\.js$/.test(p)).map((p) => p.slice('package/dist/'.length, -'.js'.length));
    expect(modules.length).toBeGreaterThanOrEqual(2);
    for (const m of modules) {
      expect(entries, `dist/${m}.js without dist/${m}.d.ts`).toContain(`package/dist/${m}.d.ts`);
      expect(existsSync(join(repo, 'packages', 'sdk', 'src', `${m}.ts`)), `dist/${m}.js has no packages/sdk/src/${m}.ts`).toBe(true);
    }
  });

  it('installs into an empty project with @msgpack/msgpack only: no install scripts, no native builds', async () => {
    const nm = join(consumer, 'node_modules');
    const pkg = JSON.parse(await readFile(join(nm, '@resonance', 'sdk', 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    expect(Object.keys(pkg.dependencies ?? {})).toEqual(['@msgpack/msgpack']);
    expect(existsSync(join(nm, '@msgpack', 'msgpack', 'package.json'))).toBe(true);

    // npm's hidden lockfile records every installed package, and whether it has an install script.
    const lock = JSON.parse(await readFile(join(nm, '.package-lock.json'), 'utf8')) as {
      packages: Record<string, { hasInstallScript?: boolean }>;
    };
    const installed = Object.keys(lock.packages).map((p) => p.replace(/^.*node_modules\//, ''));
    expect(installed).toContain('@resonance/sdk');
    expect(installed).toContain('@msgpack/msgpack');
    expect(installed.length, `installed: ${installed.join(', ')}`).toBeLessThanOrEqual(5);
    for (const name of ['ws', 'better-sqlite3', 'webgpu', 'esbuild', 'typescript']) expect(installed, `${name} was installed`).not.toContain(name);
    const scripted = Object.entries(lock.packages).filter(([, v]) => v.hasInstallScript).map(([k]) => k);
    expect(scripted, 'packages with install scripts').toEqual([]);
    const files = await filesUnder(nm);
    expect(files.map((f) => f.path).filter((p) => p.endsWith('/binding.gyp') || p.endsWith('.node')), 'native modules').toEqual([]);

    const size = files.reduce((sum, f) => sum + f.size, 0);
    console.log(`@resonance/sdk installed: ${installed.length} packages (${installed.join(', ')}), node_modules ${(size / 1024).toFixed(1)} KiB`);
    expect(size, `node_modules is ${size} bytes`).toBeLessThan(INSTALL_LIMIT);
  });

  it.each(RESOLUTIONS)(
    'type-checks a strict consumer against the shipped declarations: moduleResolution $name',
    async ({ name, module, moduleResolution }) => {
      await writeFile(join(consumer, 'consumer.ts'), CONSUMER_TS);
      const config = `tsconfig.${name}.json`;
      await writeFile(join(consumer, config), tsconfig(module, moduleResolution, ['consumer.ts']));
      const r = await run(process.execPath, [tsc, '-p', config, '--listFiles'], consumer);
      expect(r.code, `tsc (${module}/${moduleResolution}) failed:\n${r.stdout}${r.stderr}`).toBe(0);
      // The program read the installed package's declarations, not the repository's.
      const files = r.stdout.split('\n').map((l) => l.trim()).filter((l) => l.endsWith('.d.ts'));
      const installed = join(consumer, 'node_modules', '@resonance', 'sdk', 'dist');
      for (const d of ['index.d.ts', 'protocol.d.ts']) expect(files, `${d} under ${moduleResolution}`).toContain(join(installed, d));
      const tsLib = join(repo, 'node_modules', 'typescript', 'lib');
      expect(files.filter((f) => !f.startsWith(consumer) && !f.startsWith(tsLib)), 'declarations from outside the consumer').toEqual([]);
    },
    TIMEOUT,
  );

  it('type-checks the README examples against the shipped declarations', async () => {
    const readme = await readFile(join(consumer, 'node_modules', '@resonance', 'sdk', 'README.md'), 'utf8');
    const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    const files: string[] = [];
    for (const [i, code] of blocks.entries()) {
      files.push(`readme-${i}.ts`);
      await writeFile(join(consumer, `readme-${i}.ts`), `${code}\nexport {};\n`);
    }
    await writeFile(join(consumer, 'tsconfig.readme.json'), tsconfig('NodeNext', 'NodeNext', files));
    const r = await run(process.execPath, [tsc, '-p', 'tsconfig.readme.json'], consumer);
    expect(r.code, `README examples do not type-check:\n${r.stdout}${r.stderr}`).toBe(0);
  }, TIMEOUT);

  it('runs in Node: ESM import and CommonJS require of both entry points', async () => {
    await writeFile(join(consumer, 'runtime.mjs'), RUNTIME_MJS);
    const esm = await ok(process.execPath, ['runtime.mjs'], consumer);
    expect(JSON.parse(esm.stdout)).toEqual({ client: true, thrown: 'missing_credentials', spaceGone: 4410 });
    await writeFile(join(consumer, 'runtime.cjs'), RUNTIME_CJS);
    const cjs = await ok(process.execPath, ['runtime.cjs'], consumer);
    expect(JSON.parse(cjs.stdout)).toEqual({ client: 'function', spaceGone: 4410 });
  }, TIMEOUT);

  it(`bundles for the browser without ws, minified under ${BUNDLE_LIMIT / 1024} KiB`, async () => {
    await writeFile(join(consumer, 'entry.js'), "import { ResonanceClient } from '@resonance/sdk';\nexport const client = new ResonanceClient({ apiKey: 'k' });\n");
    // No `external`: the SDK's variable import specifier for ws must keep esbuild from resolving it.
    const result = await build({
      absWorkingDir: consumer,
      entryPoints: ['entry.js'],
      bundle: true,
      minify: true,
      format: 'esm',
      platform: 'browser',
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    expect(result.errors).toEqual([]);
    expect(result.warnings.map((w) => w.text)).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((p) => p.includes('node_modules/@resonance/sdk/dist/'))).toBe(true);
    expect(inputs.filter((p) => /node_modules\/ws\/|^node:/.test(p)), 'Node-only modules in the browser bundle').toEqual([]);
    const [out] = result.outputFiles;
    if (!out) throw new Error('esbuild wrote no output');
    const size = out.contents.byteLength;
    console.log(`@resonance/sdk browser bundle (esbuild, minified): ${size} bytes (${(size / 1024).toFixed(1)} KiB)`);
    expect(out.text).not.toMatch(/\brequire\(/);
    expect(size, `browser bundle is ${size} bytes`).toBeLessThan(BUNDLE_LIMIT);
  }, TIMEOUT);
});
