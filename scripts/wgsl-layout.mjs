#!/usr/bin/env node
/** Writes shaders/layout.wgsl from the compiled GPU contract (dist/src/engine/webgpu/wgsl-layout.js). */
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { wgslLayout } = await import(join(root, 'dist', 'src', 'engine', 'webgpu', 'wgsl-layout.js'));
await writeFile(join(root, 'shaders', 'layout.wgsl'), wgslLayout());
process.stdout.write('shaders/layout.wgsl written\n');
