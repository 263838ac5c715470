#!/usr/bin/env node
/**
 * Builds the CPU engine's WebAssembly module (wasm/engine.ts: the dense pass and the per-prime loops,
 * AssemblyScript) into dist/wasm/: engine.wasm with WebAssembly SIMD, and engine-relaxed.wasm from the
 * same source with relaxed SIMD's fused multiply-add
 * (loaded only where the runtime validates it; src/engine/cpu/wasm.ts). Both import one shared
 * memory, so every worker thread reads the same kernels.
 * `--if-stale` (npm start): nothing is done when both files are newer than wasm/, this script and the compiler.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { filesUnder, upToDate } from './stale.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'dist', 'wasm');
const outputs = ['engine', 'engine-relaxed'].map((name) => join(outDir, `${name}.wasm`));
const inputs = [...(await filesUnder(join(root, 'wasm'))), fileURLToPath(import.meta.url), join(root, 'node_modules', 'assemblyscript', 'package.json')];
if (process.argv.includes('--if-stale') && (await upToDate(outputs, inputs))) {
  process.stdout.write('wasm: up to date\n');
  process.exit(0);
}
// Loaded only when there is something to compile (the compiler takes a while to load).
const { default: asc } = await import('assemblyscript/asc');
await mkdir(outDir, { recursive: true });

/** The shared memory's largest size, in 64 KiB pages (2 GiB: sixteen f64 kernels of k = 2048). Kept in step with MAX_PAGES. */
const MAX_PAGES = 32768;

for (const [name, features] of [['engine', ['simd', 'threads']], ['engine-relaxed', ['simd', 'threads', 'relaxed-simd']]]) {
  const { error, stderr } = await asc.main([
    join(root, 'wasm', 'engine.ts'),
    '-O3', '--noAssert', '--runtime', 'stub',
    ...features.flatMap((f) => ['--enable', f]),
    '--importMemory', '--sharedMemory', '--initialMemory', '1', '--maximumMemory', String(MAX_PAGES),
    '-o', join(outDir, `${name}.wasm`),
  ]);
  if (error) {
    process.stderr.write(stderr.toString());
    throw error;
  }
}
process.stdout.write(`wasm: engine.wasm, engine-relaxed.wasm -> dist/wasm\n`);
