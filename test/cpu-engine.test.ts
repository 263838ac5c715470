/** CPU engine: determinism, batching and worker threads, and the run outputs of docs/model.md section 6. */
import { describe, expect, it } from 'vitest';
import { CpuEngine } from '../src/engine/cpu/engine.js';
import { Flag, type TickRecord } from '../src/engine/types.js';
import { resultFromRecords, runHqe } from '../src/sim/run.js';
import type { HQEConfigInput, NormalizedConfig } from '../src/model/config.js';
import { normalize } from '../src/model/normalize.js';
import { runToEnd, specOf } from './helpers/engines.js';

const noisy: HQEConfigInput = {
  primes: [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31], mixer: { temperature0: 1, gamma0: 0.3 },
  entropy: { lambda: 0.1 }, schedule: { steps: 300, restarts: 1, plateauT: 40, plateauEps: 1e-4 },
  observables: { snapshotsInterval: 16, metricsInterval: 4 }, seed: 1234,
};

function normalized(input: HQEConfigInput): NormalizedConfig {
  const r = normalize(input);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.normalized;
}

const strip = (records: TickRecord[]): unknown => records.map((r) => ({ ...r, phases: r.phases && [...r.phases], amplitudes: r.amplitudes && [...r.amplitudes] }));

/** Every record of each input's simulation, all stepped together on `engine` (37 ticks an advance) until none runs. */
async function runBatch(engine: CpuEngine, inputs: HQEConfigInput[]): Promise<TickRecord[][]> {
  try {
    const ids = inputs.map((input) => engine.add(specOf(input)));
    const got = new Map<number, TickRecord[]>(ids.map((id) => [id, []]));
    for (let t = 0; t < 2000; t += 37) {
      const reports = await engine.advance(37);
      for (const [id, rep] of reports) got.get(id)!.push(...rep.records);
      if ([...reports.values()].every((r) => r.status !== 'running')) break;
    }
    return ids.map((id) => got.get(id)!);
  } finally {
    await engine.destroy();
  }
}

describe('CPU engine', () => {
  for (const loops of ['ts', 'wasm'] as const) {
    for (const precision of ['f64', 'f32'] as const) {
      it(`is bit-identical run to run with the same seed (${precision}, ${loops} loops)`, async () => {
        const a = await runToEnd(new CpuEngine({ precision, threads: 0, loops }), specOf(noisy));
        const b = await runToEnd(new CpuEngine({ precision, threads: 0, loops }), specOf(noisy));
        expect(a.records.length).toBeGreaterThan(10);
        expect(strip(a.records)).toEqual(strip(b.records));
        const other = await runToEnd(new CpuEngine({ precision, threads: 0, loops }), specOf({ ...noisy, seed: 1235 }));
        expect(strip(other.records)).not.toEqual(strip(a.records));
      });
    }
  }

  it('steps a small batch with every worker thread on every simulation (rows split), bit-identical to one thread', async () => {
    const inputs: HQEConfigInput[] = [
      { ...noisy, primes: Array.from({ length: 45 }, (_, i) => [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167, 173, 179, 181, 191, 193, 197][i]!) },
      { ...noisy, seed: 7 },
      { ...noisy, mixer: { type: 'learned', temperature0: 0.3 } },
    ];
    for (const precision of ['f64', 'f32'] as const) {
      for (const batch of [inputs.slice(0, 1), inputs]) {
        const solo = await Promise.all(batch.map(async (input) => (await runToEnd(new CpuEngine({ precision, threads: 0, loops: 'wasm' }), specOf(input))).records));
        // Fewer simulations than two per thread: the threads step them as a gang.
        const together = await runBatch(new CpuEngine({ precision, threads: 2, inlineWork: 0, loops: 'wasm' }), batch);
        together.forEach((records, i) => expect(strip(records)).toEqual(strip(solo[i]!)));
      }
    }
  });

  it('runs the per-prime loops in WebAssembly as the TypeScript loops do, on every branch they take', async () => {
    // L1 and L2 norms, both entropy bases, the custom operator's weights, noise, restarts, projector sweeps:
    // every per-prime vector of the record is read by one of them, so a vector out of its slot shows.
    const primes = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59];
    const inputs: HQEConfigInput[] = [
      noisy,
      { ...noisy, entropy: { lambda: 0.2, base: 'kl_to_prior' }, boundary: { norm: 'L1', projectorSweeps: 3 } },
      { ...noisy, primes, resonanceTarget: { value: 0.9, operator: 'custom', weights: primes.map((p) => 1 / p) }, entropy: { lambda: 0.05 } },
      { ...noisy, resonanceTarget: { value: 0.7, operator: 'R_q' }, mixer: { type: 'learned', temperature0: 0.4 } },
    ];
    for (const [precision, tol] of [['f64', 1e-9], ['f32', 2e-4]] as const) {
      for (const input of inputs) {
        const ts = (await runToEnd(new CpuEngine({ precision, threads: 0, loops: 'ts' }), specOf(input))).records;
        const wasm = (await runToEnd(new CpuEngine({ precision, threads: 0, loops: 'wasm' }), specOf(input))).records;
        expect(wasm.map((r) => [r.step, r.restart, r.flags])).toEqual(ts.map((r) => [r.step, r.restart, r.flags]));
        wasm.forEach((r, i) => {
          const t = ts[i]!;
          for (const [key, v] of Object.entries(r.metrics)) {
            if (typeof v === 'number') expect(Math.abs(v - (t.metrics[key as keyof typeof t.metrics] as number)), `${precision} step ${r.step} ${key}`).toBeLessThan(tol);
          }
          expect(Math.abs(r.lnNu - t.lnNu)).toBeLessThan(tol);
          r.amplitudes?.forEach((a, j) => expect(Math.abs(a - t.amplitudes![j]!), `${precision} step ${r.step} amplitude ${j}`).toBeLessThan(tol));
        });
      }
    }
  });

  it('gives the WebAssembly arena back: kernels with their last simulation, every other block with its own', async () => {
    const engine = new CpuEngine({ threads: 0, loops: 'wasm' });
    try {
      const empty = engine.arenaBytes;
      const bases = [[2, 3, 5, 7], [2, 3, 5, 7, 11], [3, 5, 7, 11, 13, 17]];
      for (let round = 0; round < 3; round++) {
        const ids = bases.flatMap((primes) => [engine.add(specOf({ ...noisy, primes })), engine.add(specOf({ ...noisy, primes }))]);
        // A learned mixer's kernel is its own.
        ids.push(engine.add(specOf({ ...noisy, mixer: { type: 'learned', temperature0: 0.2 } })));
        // Spaces whose kernel a params patch swaps: to a kernel shared with another, then to one of its own.
        const spaces = [0, 1].map(() => engine.add({ ...specOf({ ...noisy, primes: [2, 3, 5, 7, 11, 13] }), mode: 'space' }));
        await engine.advance(5);
        engine.patch(spaces[0]!, { params: { localityBias: 0.9 } });
        engine.patch(spaces[1]!, { params: { localityBias: 0.9 } });
        engine.patch(spaces[1]!, { params: { semantic: true } });
        await engine.advance(5);
        expect(engine.arenaBytes).toBeGreaterThan(empty);
        for (const id of [...ids, ...spaces]) engine.remove(id);
        expect(engine.arenaBytes).toBe(empty);
      }
    } finally {
      await engine.destroy();
    }
  });

  it('gives each simulation of a mixed batch, spread over worker threads, exactly its solo result', async () => {
    const inputs: HQEConfigInput[] = [
      noisy,
      { ...noisy, seed: 99 },
      { ...noisy, primes: [2, 3, 5], mixer: { type: 'flow' } },
      { ...noisy, mixer: { type: 'learned', temperature0: 0.3 } },
      { ...noisy, primes: Array.from({ length: 60 }, (_, i) => [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167, 173, 179, 181, 191, 193, 197, 199, 211, 223, 227, 229, 233, 239, 241, 251, 257, 263, 269, 271, 277, 281][i]!) },
    ];
    const solo = await Promise.all(inputs.map(async (input) => (await runToEnd(new CpuEngine({ threads: 0 }), specOf(input))).records));
    const together = await runBatch(new CpuEngine({ threads: 2, inlineWork: 0 }), inputs);
    together.forEach((records, i) => expect(strip(records)).toEqual(strip(solo[i]!)));
  });
});

describe('runHqe outputs', () => {
  it('snapshots every snapshotsInterval steps and the final state, metrics every metricsInterval', async () => {
    const r = await runHqe(
      { primes: [2, 3, 5, 7], mixer: { gamma0: 0, gammaGrowth: 0 }, schedule: { steps: 100 }, observables: { snapshotsInterval: 32, metricsInterval: 10, recordPhases: true }, seed: 5 },
      { backend: 'cpu', threads: 0 },
    );
    expect(r.status).toBe('completed');
    expect(r.steps).toBe(100);
    expect(r.snapshots.map((s) => s.step)).toEqual([0, 32, 64, 96, 100]);
    expect(r.metrics.map((m) => m.step)).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    expect(r.snapshots.every((s) => s.phases?.length === 4 && s.amplitudes?.length === 4)).toBe(true);
    expect(r.finalMetrics).toEqual(r.snapshots.at(-1)!.metrics);
  });

  it('omits what the observables do not record and reports restarts and the plateau that ends the run', async () => {
    const r = await runHqe(
      { primes: [2, 3, 5], entropy: { lambda: 0, primePenalty: { enabled: false } }, schedule: { steps: 500, plateauT: 20, restarts: 2 }, observables: { recordAmplitudes: false }, seed: 6 },
      { backend: 'cpu', threads: 0 },
    );
    expect(r.status).toBe('plateau');
    expect(r.restarts).toBe(2);
    expect(r.events.map((e) => `${e.type}@${e.step}/${e.restart}`)).toEqual([
      'plateau@20/0', 'restart@20/0', 'plateau@40/1', 'restart@40/1', 'plateau@60/2',
    ]);
    expect(r.snapshots.every((s) => s.amplitudes === undefined && s.phases === undefined)).toBe(true);
    expect(r.finalMetrics.plateauDetected).toBe(true);
  });

  it('reports progress up to the final step', async () => {
    const seen: number[] = [];
    await runHqe({ primes: [2, 3, 5, 7, 11], schedule: { steps: 3000, plateauT: 1e6 }, seed: 1 }, { backend: 'cpu', threads: 0, onProgress: (p) => seen.push(p.step) });
    expect(seen.length).toBeGreaterThan(1);
    expect(seen.at(-1)).toBe(3000);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
  });

  it('ends failed when a metric goes non-finite, with null (never NaN) on the wire', async () => {
    // dt * lambda = 1e309 overflows: no valid config does this (normalize refuses it, docs/model.md
    // section 9), so the spec goes to the engine directly.
    const input: HQEConfigInput = { primes: [2, 3, 5], seed: 2 };
    const spec = { ...specOf(input), lambda: 1e308, dt: 10 };
    const engine = new CpuEngine({ threads: 0 });
    const { report, records } = await runToEnd(engine, spec);
    const r = resultFromRecords(records, normalized(input), [], engine.info, 0);
    await engine.destroy();
    expect([report.status, r.status]).toEqual(['failed', 'failed']);
    expect(r.events.at(-1)).toMatchObject({ type: 'failed', step: 1 });
    const wire = JSON.parse(JSON.stringify(r)) as { finalMetrics: Record<string, unknown> };
    expect(Object.values(wire.finalMetrics)).toContain(null);
    expect(JSON.stringify(r)).not.toContain('NaN');
  });

  it('flags the terminal snapshot', async () => {
    const spec = specOf({ primes: [2, 3], schedule: { steps: 5 }, seed: 1 });
    const { records } = await runToEnd(new CpuEngine({ threads: 0 }), spec);
    expect(records.at(-1)!.flags & (Flag.TERMINAL | Flag.SNAPSHOT)).toBe(Flag.TERMINAL | Flag.SNAPSHOT);
  });
});
