#!/usr/bin/env node
/**
 * Bundles the demo pages (web/*.ts, one entry per page; web/common.ts is shared) with esbuild into
 * dist/web/ and copies their HTML and CSS beside them. The WGSL of shaders/ is bundled as text, so the
 * browser runs exactly the server's shaders, and the WebAssembly dense pass as bytes (the server's module). Served at /demo by `resonance serve` (src/http/routes/demo.ts).
 * Type checking is `tsc -p web` (esbuild does none); `npm run build` runs both.
 */
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const webDir = join(root, 'web');
const outDir = join(root, 'dist', 'web');
const PAGES = ['playground', 'space'];

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
  // The CPU engine's WebAssembly dense pass (dist/wasm, built before this script) travels in the bundle.
  loader: { '.wgsl': 'text', '.wasm': 'binary' },
  logLevel: 'warning',
  metafile: true,
});

for (const name of await readdir(webDir)) {
  if (name.endsWith('.html') || name.endsWith('.css')) await copyFile(join(webDir, name), join(outDir, name));
}

const sizes = Object.entries(result.metafile.outputs)
  .filter(([file]) => file.endsWith('.js'))
  .map(([file, out]) => `${file.split('/').pop()} ${(out.bytes / 1024).toFixed(0)} KiB`);
console.log(`web: ${sizes.join(', ')} -> dist/web`);
