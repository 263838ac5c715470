#!/usr/bin/env node
/**
 * Builds the WebAssembly dense pass (wasm/dense.ts, AssemblyScript) into dist/wasm/: dense.wasm with
 * WebAssembly SIMD, and dense-relaxed.wasm from the same source with relaxed SIMD's fused multiply-add
 * (loaded only where the runtime validates it; src/engine/cpu/wasm-dense.ts). Both import one shared
 * memory, so every worker thread reads the same kernels.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import asc from 'assemblyscript/asc';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'dist', 'wasm');
await mkdir(outDir, { recursive: true });

/** The shared memory's largest size, in 64 KiB pages (2 GiB: sixteen f64 kernels of k = 2048). Kept in step with MAX_PAGES. */
const MAX_PAGES = 32768;

for (const [name, features] of [['dense', ['simd', 'threads']], ['dense-relaxed', ['simd', 'threads', 'relaxed-simd']]]) {
  const { error, stderr } = await asc.main([
    join(root, 'wasm', 'dense.ts'),
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
process.stdout.write(`wasm: dense.wasm, dense-relaxed.wasm -> dist/wasm\n`);
