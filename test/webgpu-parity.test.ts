/**
 * The WebGPU engine against the CPU engine in f32 mode (docs/model.md section 7), on whatever adapter this
 * machine has: Mesa llvmpipe through Dawn's OpenGL backend on a machine without a GPU. No adapter is a
 * failure, never a skip.
 *
 * Parity bars: after one step every phase within 1e-5 rad (mod 2pi) and every mass within 1e-5 relative;
 * metrics within 1e-4 over 64 steps; events (record flags) identical. Same seed twice on WebGPU, any
 * chunking of ticks into advance() calls and submits, and any batch composition: bit-identical records.
 */
import { describe, expect, it } from 'vitest';
import { CpuEngine } from '../src/engine/cpu/engine.js';
import { Flag, type Engine, type SimCheckpoint, type SimStatus, statusOfFlags, type TickRecord } from '../src/engine/types.js';
import { decodeCheckpoint, encodeCheckpoint } from '../src/engine/checkpoint.js';
import { acquireDevice, nodeShaderSource } from '../src/engine/webgpu/device.js';
import { WebGpuEngine } from '../src/engine/webgpu/engine.js';
import { useGpuDevice } from './helpers/gpu.js';
import { massesOf, phaseDistance } from './helpers/engines.js';
import type { HQEConfigInput } from '../src/model/config.js';
import { normalize } from '../src/model/normalize.js';
import { firstPrimes } from '../src/model/primes.js';
import { pcg4d, uniform } from '../src/model/rng.js';
import { type MixerKind, type SimSpec, specFromConfig } from '../src/model/spec.js';

const gpuDevice = useGpuDevice();
const gpu = gpuDevice.device;
const gpuEngine = gpuDevice.engine;

// ---- specs ----

type TargetKind = 'none' | 'R' | 'R_q' | 'custom';

interface Case {
  k: number;
  mixer: MixerKind;
  norm: 'L1' | 'L2';
  base: 'shannon' | 'kl_to_prior';
  target: TargetKind;
  seed: number;
  temperature0?: number;
  lambda?: number;
  lambdaPrime?: number;
  steps?: number;
  restarts?: number;
  plateauT?: number;
  semantic?: boolean;
}

function label(c: Case): string {
  return `k=${c.k} ${c.mixer} ${c.norm} ${c.base} target=${c.target} T0=${c.temperature0 ?? 0.5} seed=${c.seed}${c.semantic ? ' semantic' : ''}`;
}

function makeSpec(c: Case): SimSpec {
  const k = c.k;
  const amplitudes = Array.from({ length: k }, (_, i) => (i === 1 ? -0.8 : 1 + 0.5 * Math.sin(1.3 * i + c.seed)));
  const config: HQEConfigInput = {
    primes: firstPrimes(k),
    initialAmplitudes: amplitudes,
    phaseSeeding: { golden: true, silver: c.seed % 2 === 0 },
    mixer: {
      type: c.mixer,
      gamma0: 0.3,
      gammaGrowth: 0.01,
      gammaMax: 1.2,
      temperature0: c.temperature0 ?? 0.5,
      beta: 0.97,
      localityBias: 0.3,
      learningRate: 0.5,
    },
    entropy: {
      base: c.base,
      lambda: c.lambda ?? 0.5,
      primePenalty: { enabled: (c.lambdaPrime ?? 0.2) > 0, lambdaPrime: c.lambdaPrime ?? 0.2 },
    },
    boundary: { norm: c.norm, enforceUnitNorm: c.target !== 'R_q' && c.target !== 'custom', projectorSweeps: 1 + (c.seed % 2) },
    observables: { metricsInterval: 1, snapshotsInterval: 1 },
    schedule: { dt: 0.1, steps: c.steps ?? 30, restarts: c.restarts ?? 2, plateauEps: 1e-6, plateauT: c.plateauT ?? 40 },
    seed: c.seed,
  };
  if (c.target === 'R') config.resonanceTarget = { value: 0.9, operator: 'R' };
  if (c.target === 'R_q') config.resonanceTarget = { value: 0.9, operator: 'R_q' };
  if (c.target === 'custom') {
    config.resonanceTarget = { value: 0.85, operator: 'custom', weights: Array.from({ length: k }, (_, i) => i % 3) };
  }
  const result = normalize(config);
  if (!result.ok) throw new Error(`bad test config ${label(c)}: ${JSON.stringify(result.errors)}`);
  return { ...specFromConfig(result.normalized), semantic: c.semantic ?? false };
}

// ---- running and comparing ----

async function runAll(engine: Engine, specs: SimSpec[], ticks: number): Promise<TickRecord[][]> {
  const ids = specs.map((s) => engine.add(s));
  const reports = await engine.advance(ticks);
  return ids.map((id) => reports.get(id)!.records);
}



/** Mismatches of one simulation's records against the CPU's (empty when within the parity bars). */
function compareRecords(name: string, spec: SimSpec, cpu: TickRecord[], gpuRecs: TickRecord[], metricsTol = 1e-4): string[] {
  const out: string[] = [];
  if (cpu.length !== gpuRecs.length) out.push(`${name}: ${gpuRecs.length} GPU records, ${cpu.length} CPU records`);
  const n = Math.min(cpu.length, gpuRecs.length);
  for (let t = 0; t < n && out.length < 8; t++) {
    const c = cpu[t]!;
    const g = gpuRecs[t]!;
    const at = `${name} record ${t} (step ${c.step})`;
    if (g.step !== c.step || g.restart !== c.restart || g.n !== c.n || g.flags !== c.flags) {
      out.push(`${at}: step/restart/n/flags GPU ${g.step}/${g.restart}/${g.n}/${g.flags}, CPU ${c.step}/${c.restart}/${c.n}/${c.flags}`);
      continue;
    }
    if (c.flags & Flag.FAILED) continue; // metrics of a failed state are not finite
    for (const key of ['resonanceStrength', 'coherence', 'entropy', 'locality', 'dominance'] as const) {
      const d = Math.abs(g.metrics[key] - c.metrics[key]);
      if (!(d <= metricsTol)) out.push(`${at}: ${key} GPU ${g.metrics[key]} CPU ${c.metrics[key]} (|d| = ${d})`);
    }
    if (g.metrics.plateauDetected !== c.metrics.plateauDetected) out.push(`${at}: plateauDetected differs`);
    for (const key of ['gamma', 'lnNu', 'controlled'] as const) {
      const d = Math.abs(g[key] - c[key]);
      if (!(d <= metricsTol)) out.push(`${at}: ${key} GPU ${g[key]} CPU ${c[key]} (|d| = ${d})`);
    }
    // After one step: every phase within 1e-5 rad, every mass within 1e-5 relative.
    if (c.step <= 1 && c.restart === 0 && c.phases && g.phases) {
      const pc = massesOf(c, spec.norm);
      const pg = massesOf(g, spec.norm);
      for (let i = 0; i < c.phases.length; i++) {
        const dp = phaseDistance(g.phases[i]!, c.phases[i]!);
        if (!(dp <= 1e-5)) out.push(`${at}: phase ${i} GPU ${g.phases[i]} CPU ${c.phases[i]} (|d| = ${dp})`);
        const dm = Math.abs(pg[i]! - pc[i]!) / Math.max(pc[i]!, 1e-30);
        if (!(dm <= 1e-5)) out.push(`${at}: mass ${i} GPU ${pg[i]} CPU ${pc[i]} (rel ${dm})`);
      }
    }
  }
  return out;
}

async function parity(cases: Case[], ticks: number, events: (keyof typeof Flag | SimStatus)[] = []): Promise<void> {
  const specs = cases.map(makeSpec);
  const cpu = new CpuEngine({ precision: 'f32', threads: 0 });
  const engine = await gpuEngine();
  try {
    const want = await runAll(cpu, specs, ticks);
    const got = await runAll(engine, specs, ticks);
    // The covering set must reach the events it claims to compare.
    const seen = new Set<string>();
    for (const recs of want) {
      for (const r of recs) {
        for (const [name, bit] of Object.entries(Flag)) if (r.flags & bit) seen.add(name);
        if (r.flags & Flag.TERMINAL) seen.add(statusOfFlags(r.flags, 'running'));
      }
    }
    for (const name of events) expect(seen, `event ${name} never occurs`).toContain(name);
    const problems = cases.flatMap((c, s) => compareRecords(label(c), specs[s]!, want[s]!, got[s]!));
    expect(problems.slice(0, 30)).toEqual([]);
    // Every simulation was visited at step 1 with a snapshot (the one-step bar was checked).
    for (const recs of got) expect(recs.some((r) => r.step === 1 && r.phases)).toBe(true);
  } finally {
    await engine.destroy();
    await cpu.destroy();
  }
}

/** Records must be bit-identical (same backend, same config). */
function expectIdentical(a: TickRecord[][], b: TickRecord[][]): void {
  expect(a.length).toBe(b.length);
  for (let s = 0; s < a.length; s++) expect(b[s]).toEqual(a[s]);
}

// ---- tests ----

describe('WebGPU engine', () => {
  it('acquires an adapter and names it', async () => {
    const a = gpu();
    const engine = await gpuEngine();
    expect(engine.info.backend).toBe('webgpu');
    expect(engine.info.precision).toBe('f32');
    expect(engine.info.adapter).toMatch(/core|compatibility/);
    expect(engine.info.adapter).toMatch(/backend/);
    await engine.destroy();
    // Without a device, create() acquires (and on destroy() releases) one of its own, as select.ts does.
    const own = await WebGpuEngine.create({ allowSoftware: true });
    const id = own.add(makeSpec({ k: 5, mixer: 'local', norm: 'L2', base: 'shannon', target: 'none', seed: 3 }));
    expect((await own.advance(3)).get(id)!.records.map((r) => r.step)).toEqual([0, 1, 2]);
    await own.destroy();
    if (a.software) {
      await expect(acquireDevice({ allowSoftware: false })).rejects.toThrow(/software adapters are not allowed/);
    }
  });

  it('pcg4d in common.wgsl matches the docs/model.md test vectors and rng.ts', async () => {
    const device = gpu().device;
    const inputs: [number, number, number, number][] = [
      [0, 0, 0, 0],
      [42, 0, 7, 3],
      [4294967295, 1, 100, 2047],
    ];
    let x = 12345;
    const next = (): number => (x = (Math.imul(x, 1103515245) + 12345) >>> 0);
    for (let i = 0; i < 61; i++) inputs.push([next(), next() % 1000, next(), next() % 2048]);
    const code = `${nodeShaderSource('layout')}
${nodeShaderSource('common')}
@group(0) @binding(0) var<storage, read> inputs: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> hashes: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> sym: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let v = inputs[gid.x];
  hashes[gid.x] = pcg4d(v);
  sym[gid.x] = symUniform(v.x, v.y, v.z, v.w);
}`;
    const module = device.createShaderModule({ code });
    const info = await module.getCompilationInfo();
    expect(info.messages.filter((m) => m.type === 'error').map((m) => m.message)).toEqual([]);
    const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const STORAGE = 0x80;
    const COPY_SRC = 0x4;
    const COPY_DST = 0x8;
    const MAP_READ = 0x1;
    const n = inputs.length;
    const inBuf = device.createBuffer({ size: n * 16, usage: STORAGE | COPY_DST });
    device.queue.writeBuffer(inBuf, 0, Uint32Array.from(inputs.flat()));
    const hashBuf = device.createBuffer({ size: n * 16, usage: STORAGE | COPY_SRC });
    const symBuf = device.createBuffer({ size: n * 4, usage: STORAGE | COPY_SRC });
    const stage = device.createBuffer({ size: n * 20, usage: MAP_READ | COPY_DST });
    const bind = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [inBuf, hashBuf, symBuf].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(Math.ceil(n / 64));
    pass.end();
    encoder.copyBufferToBuffer(hashBuf, 0, stage, 0, n * 16);
    encoder.copyBufferToBuffer(symBuf, 0, stage, n * 16, n * 4);
    device.queue.submit([encoder.finish()]);
    await stage.mapAsync(MAP_READ);
    const bytes = stage.getMappedRange().slice(0);
    stage.unmap();
    for (const b of [inBuf, hashBuf, symBuf, stage]) b.destroy();
    const hashes = new Uint32Array(bytes, 0, n * 4);
    const sym = new Float32Array(bytes, n * 16, n);
    const vectors = [
      [0x0f02f829, 0x2d568769, 0x32b0c43b, 0xd32548ea, 0.058639079332351685],
      [0xf5869ae5, 0x060a962b, 0x4c869276, 0xd70d1840, 0.9590851366519928],
      [0x2204d036, 0x61d156fc, 0x3e19f4eb, 0x90a2c79f, 0.13288596272468567],
    ];
    vectors.forEach((v, i) => {
      expect([...hashes.subarray(4 * i, 4 * i + 4)]).toEqual(v.slice(0, 4));
      expect((sym[i]! + 1) / 2).toBe(v[4]);
    });
    inputs.forEach((v, i) => {
      expect([...hashes.subarray(4 * i, 4 * i + 4)]).toEqual(pcg4d(...v));
      expect(sym[i]).toBe(2 * uniform(...v) - 1);
    });
  });

  it('parity, k in {2, 7, 64}: every mixer x norm x entropy base x target, 64 steps, one batch', async () => {
    const cases: Case[] = [];
    let seed = 100;
    for (const k of [2, 7, 64]) {
      for (const mixer of ['local', 'flow', 'learned'] as const) {
        for (const norm of ['L1', 'L2'] as const) {
          for (const base of ['shannon', 'kl_to_prior'] as const) {
            for (const target of ['none', 'R', 'R_q', 'custom'] as const) {
              seed++;
              cases.push({ k, mixer, norm, base, target, seed, temperature0: seed % 3 === 0 ? 0 : 0.5 });
            }
          }
        }
      }
    }
    // Events: plateaus with restarts (lambda 0 keeps the entropy flat), runs that complete, and the
    // semantic kernel (set on the SimSpec directly).
    cases.push({ k: 7, mixer: 'local', norm: 'L2', base: 'shannon', target: 'none', seed: 900, lambda: 0, lambdaPrime: 0, plateauT: 10, restarts: 3 });
    cases.push({ k: 64, mixer: 'learned', norm: 'L1', base: 'kl_to_prior', target: 'none', seed: 901, lambda: 0, lambdaPrime: 0, plateauT: 12, restarts: 1 });
    cases.push({ k: 7, mixer: 'flow', norm: 'L2', base: 'shannon', target: 'R', seed: 902, steps: 20, restarts: 1 });
    cases.push({ k: 64, mixer: 'local', norm: 'L2', base: 'shannon', target: 'R', seed: 903, semantic: true });
    cases.push({ k: 64, mixer: 'learned', norm: 'L1', base: 'kl_to_prior', target: 'custom', seed: 904, semantic: true });
    await parity(cases, 65, ['METRICS', 'SNAPSHOT', 'RESTART', 'TERMINAL', 'CONVERGED', 'PLATEAU', 'converged', 'plateau', 'completed']);
  });

  // About 55 s of this file on a 2-core machine (llvmpipe ~250 ms per tick for the four, the f32 CPU engine
  // about as much). The first restart is at step 30, so the RESTART check below needs more than 31 ticks.
  const TICKS_2048 = 65;
  it(`parity, k = 2048: local, flow, learned and semantic, ${TICKS_2048 - 1} steps`, async () => {
    await parity(
      [
        { k: 2048, mixer: 'local', norm: 'L2', base: 'shannon', target: 'none', seed: 7, temperature0: 0.5 },
        { k: 2048, mixer: 'flow', norm: 'L1', base: 'kl_to_prior', target: 'R', seed: 8, temperature0: 0 },
        { k: 2048, mixer: 'learned', norm: 'L2', base: 'kl_to_prior', target: 'custom', seed: 9, temperature0: 0.5 },
        { k: 2048, mixer: 'local', norm: 'L1', base: 'shannon', target: 'R_q', seed: 10, temperature0: 0.5, semantic: true },
      ],
      TICKS_2048,
      ['RESTART'],
    );
  });

  it('a non-finite state fails on the same step as the CPU engine', async () => {
    // dt * lambda overflows f32: the mass update produces NaN, the next state is not finite.
    const base: Case = { k: 7, mixer: 'local', norm: 'L2', base: 'shannon', target: 'none', seed: 5 };
    const spec = { ...makeSpec(base), lambda: 1e40 };
    const cpu = new CpuEngine({ precision: 'f32', threads: 0 });
    const engine = await gpuEngine();
    const [want] = await runAll(cpu, [spec], 10);
    const gotId = engine.add(spec);
    const report = (await engine.advance(10)).get(gotId)!;
    expect(report.status).toBe('failed');
    expect(report.records.map((r) => [r.step, r.flags])).toEqual(want!.map((r) => [r.step, r.flags]));
    expect(report.records.at(-1)!.flags & Flag.FAILED).toBeTruthy();
    await engine.destroy();
    await cpu.destroy();
  });

  const mixedCases: Case[] = [
    { k: 2, mixer: 'local', norm: 'L2', base: 'shannon', target: 'R', seed: 11 },
    { k: 7, mixer: 'flow', norm: 'L1', base: 'kl_to_prior', target: 'none', seed: 12 },
    { k: 64, mixer: 'learned', norm: 'L2', base: 'shannon', target: 'R_q', seed: 13 },
    { k: 33, mixer: 'learned', norm: 'L1', base: 'shannon', target: 'custom', seed: 14 },
    { k: 50, mixer: 'local', norm: 'L1', base: 'kl_to_prior', target: 'none', seed: 15, semantic: true },
    { k: 100, mixer: 'local', norm: 'L2', base: 'shannon', target: 'R', seed: 16 },
    { k: 300, mixer: 'learned', norm: 'L2', base: 'kl_to_prior', target: 'none', seed: 17 },
    { k: 5, mixer: 'flow', norm: 'L2', base: 'shannon', target: 'none', seed: 18, lambda: 0, lambdaPrime: 0, plateauT: 6, restarts: 2 },
  ];

  it('custom target with weights near f32 underflow: converges on the same step as the CPU engine', async () => {
    // |sum w_i P_i e^{i theta_i}| with w_i = 1e-25: squaring the sums (1e-50) underflows f32 unless the
    // modulus is scaled first (docs/model.md section 9). Phases all 0: R = 1 from the start, target 0.5.
    const r = normalize({
      primes: firstPrimes(7),
      phaseSeeding: { customPhases: new Array<number>(7).fill(0) },
      resonanceTarget: { operator: 'custom', value: 0.5, weights: new Array<number>(7).fill(1e-25) },
      mixer: { type: 'local', temperature0: 0 },
      schedule: { steps: 40, plateauT: 10 },
      seed: 1,
    });
    if (!r.ok) throw new Error(JSON.stringify(r.errors));
    const spec = specFromConfig(r.normalized);
    const cpu = new CpuEngine({ precision: 'f32', threads: 0 });
    const engine = await gpuEngine();
    try {
      const cpuId = cpu.add(spec);
      const gpuId = engine.add(spec);
      const [want, got] = [(await cpu.advance(64)).get(cpuId)!, (await engine.advance(64)).get(gpuId)!];
      expect(want.status).toBe('converged');
      expect([got.status, got.step]).toEqual([want.status, want.step]);
    } finally {
      await engine.destroy();
      await cpu.destroy();
    }
  });

  it('same seed twice gives bit-identical records', async () => {
    const specs = mixedCases.map(makeSpec);
    const a = await gpuEngine();
    const first = await runAll(a, specs, 40);
    await a.destroy();
    const b = await gpuEngine();
    const second = await runAll(b, specs, 40);
    await b.destroy();
    expectIdentical(first, second);
  });

  it('results do not depend on chunking: small submits and full snapshot rings stall, then resume', async () => {
    const specs = mixedCases.map(makeSpec);
    const whole = await gpuEngine();
    const want = await runAll(whole, specs, 40);
    await whole.destroy();
    // 3 ticks per submit and room for 2 snapshots: every simulation stalls and is resumed many times.
    const chunked = await gpuEngine({ ticksPerSubmit: 3, snapshotRingBytes: 1 });
    const ids = specs.map((s) => chunked.add(s));
    const got: TickRecord[][] = ids.map(() => []);
    for (const t of [1, 6, 13, 20]) {
      const reports = await chunked.advance(t);
      ids.forEach((id, s) => got[s]!.push(...reports.get(id)!.records));
    }
    await chunked.destroy();
    expectIdentical(want, got);
  });

  it('patches (snapshotAt, extraSteps on completed runs) give the same flags and records as the CPU engine (f32)', async () => {
    const cases: Case[] = [
      { k: 7, mixer: 'local', norm: 'L2', base: 'shannon', target: 'none', seed: 31, steps: 12, restarts: 1 },
      { k: 33, mixer: 'learned', norm: 'L1', base: 'kl_to_prior', target: 'R_q', seed: 32, steps: 12, restarts: 1 },
      { k: 64, mixer: 'flow', norm: 'L2', base: 'shannon', target: 'custom', seed: 33, steps: 12, restarts: 0 },
      { k: 5, mixer: 'local', norm: 'L1', base: 'shannon', target: 'none', seed: 34, lambda: 0, lambdaPrime: 0, plateauT: 5, restarts: 1 },
    ];
    const specs = cases.map((c) => ({ ...makeSpec(c), metricsInterval: 5, snapshotsInterval: 1000 }));
    const script = async (engine: Engine): Promise<{ records: TickRecord[][]; statuses: SimStatus[][] }> => {
      const ids = specs.map((s) => engine.add(s));
      const records: TickRecord[][] = ids.map(() => []);
      const statuses: SimStatus[][] = ids.map(() => []);
      const run = async (ticks: number): Promise<void> => {
        const reports = await engine.advance(ticks);
        ids.forEach((id, s) => {
          records[s]!.push(...reports.get(id)!.records);
          statuses[s]!.push(reports.get(id)!.status);
        });
      };
      await run(9);
      ids.forEach((id, s) => engine.patch(id, { snapshotAt: 9 + (s % 3) }));
      await run(20);
      for (const id of ids) {
        const cp = await engine.exportState(id);
        if (cp.status === 'completed') engine.patch(id, { extraSteps: 7, snapshotAt: cp.step + 3 });
      }
      await run(20);
      return { records, statuses };
    };
    const cpu = new CpuEngine({ precision: 'f32', threads: 0 });
    const engine = await gpuEngine();
    try {
      const want = await script(cpu);
      const got = await script(engine);
      expect(got.statuses).toEqual(want.statuses);
      // The script reaches what it claims: completed runs continued, plateau ends, patched snapshots.
      expect(want.statuses.map((st) => st[1])).toEqual(['completed', 'completed', 'completed', 'plateau']);
      expect(want.records.every((recs, s) => recs.some((r) => r.step === 9 + (s % 3) && r.flags & Flag.SNAPSHOT))).toBe(true);
      expect(want.statuses.map((st) => st[2])).toEqual(['completed', 'completed', 'completed', 'plateau']);
      expect(want.records.map((recs) => recs.at(-1)!.step)).toEqual([31, 31, 19, want.records[3]!.at(-1)!.step]);
      expect(want.records[0]!.some((r) => r.step === 27 && r.flags === Flag.SNAPSHOT)).toBe(true);
      const problems = cases.flatMap((c, s) => compareRecords(label(c), specs[s]!, want.records[s]!, got.records[s]!));
      expect(problems.slice(0, 30)).toEqual([]);
    } finally {
      await engine.destroy();
      await cpu.destroy();
    }
  });

  it('a checkpoint crosses backends (CPU f32 -> WebGPU, WebGPU -> CPU f32) and continues within the parity bars', async () => {
    const cases: Case[] = [
      { k: 7, mixer: 'local', norm: 'L2', base: 'shannon', target: 'R', seed: 41, steps: 15, restarts: 1 },
      { k: 40, mixer: 'learned', norm: 'L2', base: 'kl_to_prior', target: 'none', seed: 42, steps: 15, restarts: 1 },
      { k: 64, mixer: 'flow', norm: 'L1', base: 'shannon', target: 'custom', seed: 43 },
    ];
    const specs = cases.map(makeSpec);
    const cpu = (): CpuEngine => new CpuEngine({ precision: 'f32', threads: 0 });
    const N = 10;
    const TOTAL = 32;
    for (const direction of ['cpu->webgpu', 'webgpu->cpu'] as const) {
      const [from, to]: [Engine, Engine] = direction === 'cpu->webgpu' ? [cpu(), await gpuEngine()] : [await gpuEngine(), cpu()];
      const straightEngine: Engine = direction === 'cpu->webgpu' ? await gpuEngine() : cpu();
      try {
        const want = await runAll(straightEngine, specs, TOTAL);
        const ids = specs.map((s) => from.add(s));
        await from.advance(N);
        // Through the stored form, as a checkpoint travels between nodes.
        const cps = await Promise.all(ids.map(async (id) => decodeCheckpoint(JSON.parse(JSON.stringify(encodeCheckpoint(await from.exportState(id)))) as SimCheckpoint)));
        expect(cps.map((cp) => cp.backend)).toEqual(specs.map(() => from.info.backend));
        const resumed = specs.map((s, i) => to.add(s, cps[i]));
        const reports = await to.advance(TOTAL - N);
        const problems = cases.flatMap((c, s) => {
          const got = reports.get(resumed[s]!)!.records;
          return compareRecords(`${direction} ${label(c)}`, specs[s]!, want[s]!.slice(-got.length), got);
        });
        expect(problems.slice(0, 30)).toEqual([]);
        for (const s of resumed) expect(reports.get(s)!.records.length).toBeGreaterThan(15);
      } finally {
        await from.destroy();
        await to.destroy();
        await straightEngine.destroy();
      }
    }
  });

  it('a batch (several k and mixers resident at once, growing, with removal) equals each simulation alone', async () => {
    // Early: the k <= 64 class full at its initial 4 slots (2 learned), one simulation each of k <= 128 and 512.
    const early = [0, 1, 2, 3, 5, 6].map((i) => makeSpec(mixedCases[i]!));
    const late = [
      makeSpec(mixedCases[4]!),
      makeSpec(mixedCases[7]!),
      makeSpec({ k: 40, mixer: 'learned', norm: 'L2', base: 'shannon', target: 'none', seed: 19 }),
      makeSpec({ k: 60, mixer: 'learned', norm: 'L1', base: 'shannon', target: 'R', seed: 20 }),
    ];
    const batch = await gpuEngine();
    const earlyIds = early.map((s) => batch.add(s));
    const first = await batch.advance(10);
    batch.remove(earlyIds[1]!); // frees a slot of the k <= 64 class
    // Late arrivals: reuse the freed slot, then grow the class (4 -> 8 slots) and its learned pool (2 -> 4)
    // while the resident simulations are mid-run: their state must survive the copy.
    const lateIds = late.map((s) => batch.add(s));
    const second = await batch.advance(15);
    await batch.destroy();

    const alone = await gpuEngine();
    const single = async (spec: SimSpec, phases: number[]): Promise<TickRecord[][]> => {
      const id = alone.add(spec);
      const out: TickRecord[][] = [];
      for (const t of phases) out.push((await alone.advance(t)).get(id)!.records);
      alone.remove(id);
      return out;
    };
    for (let s = 0; s < early.length; s++) {
      const [a, b] = await single(early[s]!, [10, 15]);
      expect(first.get(earlyIds[s]!)!.records).toEqual(a);
      if (s !== 1) expect(second.get(earlyIds[s]!)!.records).toEqual(b);
      else expect(second.has(earlyIds[s]!)).toBe(false);
    }
    for (let s = 0; s < late.length; s++) {
      const [b] = await single(late[s]!, [15]);
      expect(second.get(lateIds[s]!)!.records).toEqual(b);
    }
    await alone.destroy();
  });
});
