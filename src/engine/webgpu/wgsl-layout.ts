/**
 * shaders/layout.wgsl from the GPU contract of layout.ts: the structs (tgpu.resolve of their typegpu
 * schemas) and every constant. `npm run shaders` writes it; test/wgsl-layout.test.ts checks that the
 * committed file is current. Kept apart from layout.ts so that engines and browser bundles need none of
 * typegpu's code generator.
 */
import tgpu, { d } from 'typegpu';
import { STRUCTS, WGSL_CONSTANTS } from './layout.js';

export function wgslLayout(): string {
  const constants = Object.entries(WGSL_CONSTANTS).map(([name, c]) => tgpu.const(c.type === 'u32' ? d.u32 : d.f32, c.value).$name(name));
  return [
    '// layout.wgsl: the structs and constants every pass shares with the host.',
    '// Generated from src/engine/webgpu/layout.ts by `npm run shaders`: do not edit.',
    '//   Inputs: none. Outputs: none. Workgroup layout: none (declarations only).',
    '',
    tgpu.resolve([...Object.values(STRUCTS), ...constants]),
    '',
  ].join('\n');
}
