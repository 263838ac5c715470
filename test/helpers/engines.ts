/** Engine factories for tests that must hold on every backend. */
import { CpuEngine } from '../../src/engine/cpu/engine.js';
import type { Engine, SimReport, TickRecord } from '../../src/engine/types.js';
import { normalize } from '../../src/model/normalize.js';
import { type SimSpec, specFromConfig } from '../../src/model/spec.js';
import type { HQEConfigInput } from '../../src/model/config.js';

export interface EngineCase {
  name: string;
  /** Absolute tolerance per unit of accumulated rounding (f64 vs f32). */
  eps: number;
  make: () => Promise<Engine>;
}

export const cpuCases: EngineCase[] = [
  { name: 'cpu f64', eps: 1e-12, make: async () => new CpuEngine({ precision: 'f64', threads: 0 }) },
  { name: 'cpu f32', eps: 1e-6, make: async () => new CpuEngine({ precision: 'f32', threads: 0 }) },
  // The loops in WebAssembly SIMD (wasm/engine.ts): sums in vector lanes, so their own rounding.
  { name: 'cpu wasm f64', eps: 1e-12, make: async () => new CpuEngine({ precision: 'f64', threads: 0, loops: 'wasm' }) },
  { name: 'cpu wasm f32', eps: 1e-6, make: async () => new CpuEngine({ precision: 'f32', threads: 0, loops: 'wasm' }) },
];

/** The WebGPU engine on whatever adapter exists (llvmpipe in CI). Throws, naming what is missing, when none. */
export async function makeWebGpu(): Promise<Engine> {
  const { WebGpuEngine } = await import('../../src/engine/webgpu/engine.js');
  return WebGpuEngine.create({ allowSoftware: true });
}

export function specOf(input: HQEConfigInput): SimSpec {
  const r = normalize(input);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return specFromConfig(r.normalized);
}

/** Run one simulation to its end (or `maxTicks`), collecting every record. */
export async function runToEnd(engine: Engine, spec: SimSpec, maxTicks = 1e6): Promise<{ report: SimReport; records: TickRecord[] }> {
  const id = engine.add(spec);
  const records: TickRecord[] = [];
  let report: SimReport | undefined;
  try {
    for (let t = 0; t < maxTicks; t += 256) {
      report = (await engine.advance(256)).get(id)!;
      records.push(...report.records);
      if (report.status !== 'running') break;
    }
  } finally {
    engine.remove(id);
  }
  return { report: report!, records };
}

/** Make an engine, run `body` with it, always destroy it. */
export async function withEngine<T>(make: () => Promise<Engine>, body: (engine: Engine) => Promise<T>): Promise<T> {
  const engine = await make();
  try {
    return await body(engine);
  } finally {
    await engine.destroy();
  }
}

/** Distance of two phases on the circle, in [0, pi]. */
export function phaseDistance(a: number, b: number): number {
  const d = Math.abs(a - b) % (2 * Math.PI);
  return Math.min(d, 2 * Math.PI - d);
}

/** The masses P_i of a snapshot record (its amplitudes carry e^lnNu). */
export function massesOf(r: TickRecord, norm: 'L1' | 'L2'): number[] {
  const nu = Math.exp(r.lnNu);
  return [...r.amplitudes!].map((a) => (norm === 'L2' ? (a / nu) ** 2 : a / nu));
}
