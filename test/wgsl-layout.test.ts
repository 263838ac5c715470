/**
 * The GPU contract (src/engine/webgpu/layout.ts) and the WGSL generated from it: shaders/layout.wgsl must be
 * the current output of wgslLayout, and each pass's bindings are declared from its named bindings in order.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Flag, SIM_STATUSES } from '../src/engine/types.js';
import { bindingDeclarations, GpuRecord, H_BUDGET, H_GAMMA, H_SNAPAT, HEADER_SIZE, P_STEPS, PARAMS_SIZE, PASS_BINDINGS, RECORD_SIZE, SimHeader } from '../src/engine/webgpu/layout.js';
import { wgslLayout } from '../src/engine/webgpu/wgsl-layout.js';

const committed = readFileSync(new URL('../shaders/layout.wgsl', import.meta.url), 'utf8');

describe('the WGSL layout', () => {
  it('is generated from the TypeScript contract, and the committed file is current', () => {
    expect(committed === wgslLayout(), 'shaders/layout.wgsl is stale: run `npm run shaders` and commit it').toBe(true);
  });

  it('declares every struct field, flag and status the host reads and writes', () => {
    for (const field of Object.keys(SimHeader.propTypes)) expect(committed).toMatch(new RegExp(`struct SimHeader \\{[^}]*\\b${field}: `));
    for (const field of Object.keys(GpuRecord.propTypes)) expect(committed).toMatch(new RegExp(`struct GpuRecord \\{[^}]*\\b${field}: `));
    for (const [name, bit] of Object.entries(Flag)) expect(committed).toContain(`const F_${name}: u32 = ${bit}u;`);
    SIM_STATUSES.forEach((status, code) => expect(committed).toContain(`const ST_${status.toUpperCase()}: u32 = ${code}u;`));
    // The layouts the host writes at fixed offsets: a change of a struct must be meant (and met here).
    expect([PARAMS_SIZE, HEADER_SIZE, RECORD_SIZE]).toEqual([128, 80, 64]);
    expect([H_BUDGET, H_GAMMA, H_SNAPAT, P_STEPS]).toEqual([16, 32, 60, 20]);
  });

  it('binds each pass by name, in the order of its named bindings', () => {
    for (const pass of ['dense', 'visit', 'learn'] as const) {
      const lines = bindingDeclarations(pass).split('\n');
      expect(lines.map((l) => /@binding\((\d+)\) var<storage, \w+> (\w+):/.exec(l)?.slice(1))).toEqual(Object.keys(PASS_BINDINGS[pass]).map((name, i) => [String(i), name]));
      // Every binding is used by the pass: none is left over from an older layout.
      const source = readFileSync(new URL(`../shaders/${pass}.wgsl`, import.meta.url), 'utf8');
      for (const name of Object.keys(PASS_BINDINGS[pass])) expect(source, `${pass}.wgsl uses ${name}`).toMatch(new RegExp(`\\b${name}\\[`));
    }
  });
});
