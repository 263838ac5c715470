/**
 * `npm start` builds with `--if-stale`: the WebAssembly and demo-page steps are skipped while their outputs
 * are newer than their inputs. Run on a copy of the sources in a temporary directory, so that the
 * repository's dist/ (which other suites read) is never rebuilt here.
 */
import { execFile } from 'node:child_process';
import { cp, mkdtemp, stat, symlink, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('..', import.meta.url));
let dir = '';

function script(name: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('node', [join(dir, 'scripts', name), ...args], (err, stdout, stderr) => (err ? reject(new Error(`${name}: ${stderr}`)) : resolve(stdout)));
  });
}

const mtimes = (files: string[]): Promise<number[]> => Promise.all(files.map(async (f) => (await stat(f)).mtimeMs));

/** `file` edited after the last build: its time just past the newest of `outputs` (a rebuild then writes later ones). */
async function edit(file: string, outputs: string[]): Promise<void> {
  const t = new Date(Math.max(...(await mtimes(outputs))) + 5);
  await utimes(file, t, t);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'resonance-build-'));
  for (const path of ['scripts', 'wasm', 'web', 'src', 'shaders', 'examples', 'tsconfig.json']) await cp(join(repo, path), join(dir, path), { recursive: true });
  await symlink(join(repo, 'node_modules'), join(dir, 'node_modules'));
});

describe('build steps that npm start skips when nothing changed', () => {
  it('the WebAssembly build: skipped while both modules are newer than wasm/; always built without --if-stale', async () => {
    const outputs = ['engine', 'engine-relaxed'].map((n) => join(dir, 'dist', 'wasm', `${n}.wasm`));
    expect(await script('build-wasm.mjs', '--if-stale')).toContain('-> dist/wasm'); // nothing there yet
    const built = await mtimes(outputs);
    expect(await script('build-wasm.mjs', '--if-stale')).toBe('wasm: up to date\n');
    expect(await mtimes(outputs)).toEqual(built);
    await edit(join(dir, 'wasm', 'dense.ts'), outputs);
    expect(await script('build-wasm.mjs', '--if-stale')).toContain('-> dist/wasm');
    expect(await script('build-wasm.mjs', '--if-stale')).toBe('wasm: up to date\n');
    expect(await script('build-wasm.mjs')).toContain('-> dist/wasm');
  });

  it('the demo bundle: skipped until a file it was made of or a page changes', async () => {
    const outputs = ['playground.js', 'space.js', 'style.css'].map((f) => join(dir, 'dist', 'web', f));
    expect(await script('build-web.mjs', '--if-stale')).toContain('-> dist/web');
    expect(await script('build-web.mjs', '--if-stale')).toBe('web: up to date\n');
    // The server is not in the bundle; the CPU engine's RNG and the pages' CSS are.
    await edit(join(dir, 'src', 'server.ts'), outputs);
    expect(await script('build-web.mjs', '--if-stale')).toBe('web: up to date\n');
    await edit(join(dir, 'src', 'model', 'rng.ts'), outputs);
    expect(await script('build-web.mjs', '--if-stale')).toContain('-> dist/web');
    await edit(join(dir, 'web', 'style.css'), outputs);
    expect(await script('build-web.mjs', '--if-stale')).toContain('-> dist/web');
    // A rebuilt WebAssembly module is bundled too.
    await script('build-wasm.mjs');
    expect(await script('build-web.mjs', '--if-stale')).toContain('-> dist/web');
    expect(await script('build-web.mjs', '--if-stale')).toBe('web: up to date\n');
  });
});
