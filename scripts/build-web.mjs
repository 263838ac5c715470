#!/usr/bin/env node
/**
 * Bundles the demo pages (web/*.ts, one entry per page; web/common.ts is shared) with esbuild into
 * dist/web/ and copies their HTML and CSS beside them. The WGSL of shaders/ is bundled as text, so the
 * browser runs exactly the server's shaders, and the WebAssembly dense pass as bytes (the server's module). Served at /demo by `resonance serve` (src/http/routes/demo.ts).
 * Type checking is `tsc -p web` (esbuild does none); `npm run build` runs both.
 * `--if-stale` (npm start): nothing is done when the bundles and pages are newer than every file the last
 * bundle was made of (esbuild's list, kept in dist/web.inputs.json), the pages' HTML and CSS and this script.
 */
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { upToDate } from './stale.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const webDir = join(root, 'web');
const outDir = join(root, 'dist', 'web');
const inputsFile = join(root, 'dist', 'web.inputs.json');
const PAGES = ['playground', 'space'];
const assets = (await readdir(webDir)).filter((name) => name.endsWith('.html') || name.endsWith('.css'));

if (process.argv.includes('--if-stale')) {
  const bundled = await readFile(inputsFile, 'utf8').then((text) => JSON.parse(text).map((f) => join(root, f)), () => null);
  const outputs = [...PAGES.map((p) => join(outDir, `${p}.js`)), ...assets.map((name) => join(outDir, name))];
  const inputs = [...(bundled ?? []), ...assets.map((name) => join(webDir, name)), fileURLToPath(import.meta.url)];
  if (bundled && (await upToDate(outputs, inputs))) {
    console.log('web: up to date');
    process.exit(0);
  }
}
const { build } = await import('esbuild');

await rm(outDir, { recursive: true, force: true });
await mkdir(outDir, { recursive: true });

const result = await build({
  absWorkingDir: root,
  entryPoints: PAGES.map((p) => join(webDir, `${p}.ts`)),
  outdir: outDir,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: true,
  minify: true,
  legalComments: 'linked',
  // The CPU engine's WebAssembly module (dist/wasm, built before this script) travels in the bundle.
  loader: { '.wgsl': 'text', '.wasm': 'binary' },
  logLevel: 'warning',
  metafile: true,
});

for (const name of assets) await copyFile(join(webDir, name), join(outDir, name));
// What the bundles were made of (paths relative to the root), for --if-stale.
await writeFile(inputsFile, JSON.stringify(Object.keys(result.metafile.inputs)));

const sizes = Object.entries(result.metafile.outputs)
  .filter(([file]) => file.endsWith('.js'))
  .map(([file, out]) => `${file.split('/').pop()} ${(out.bytes / 1024).toFixed(0)} KiB`);
console.log(`web: ${sizes.join(', ')} -> dist/web`);
