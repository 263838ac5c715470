/**
 * Per-simulation tick limits of advance(ticks, limits) (docs/engine.md, "Per-simulation limits") on the CPU
 * engine (f64, f32; calling thread and worker threads) and the WebGPU engine (llvmpipe here): a held
 * simulation (limit 0) stays bit-identical while others in the batch advance, a limited one ends exactly
 * where the same number of ticks in one advance ends, and bad limits throw before anything runs.
 */
import { describe, expect, it } from 'vitest';
import { CpuEngine } from '../src/engine/cpu/engine.js';
import type { Engine, SimState, TickRecord } from '../src/engine/types.js';
import type { HQEConfigInput } from '../src/model/config.js';
import { firstPrimes } from '../src/model/primes.js';
import type { SimSpec } from '../src/model/spec.js';
import { specOf, withEngine } from './helpers/engines.js';
import { useGpuDevice } from './helpers/gpu.js';

const gpu = useGpuDevice();

interface Kind {
  name: string;
  make: () => Promise<Engine>;
}

const kinds: Kind[] = [
  { name: 'cpu f64', make: async () => new CpuEngine({ precision: 'f64', threads: 0 }) },
  { name: 'cpu f32', make: async () => new CpuEngine({ precision: 'f32', threads: 0 }) },
  { name: 'cpu wasm f64', make: async () => new CpuEngine({ precision: 'f64', threads: 0, loops: 'wasm' }) },
  { name: 'cpu wasm f32', make: async () => new CpuEngine({ precision: 'f32', threads: 0, loops: 'wasm' }) },
  // Workers run dist/ (npm run build): every advance goes to them (inlineWork 0).
  { name: 'cpu f64 workers', make: async () => new CpuEngine({ precision: 'f64', threads: 2, inlineWork: 0 }) },
  { name: 'cpu f32 workers', make: async () => new CpuEngine({ precision: 'f32', threads: 2, inlineWork: 0 }) },
  { name: 'webgpu', make: () => gpu.engine() },
];

// ---- specs (k <= 12: llvmpipe is slow) ----

/** Noise (temperature), a target (norm channel), snapshots every 3 steps. */
const live: HQEConfigInput = {
  primes: firstPrimes(12), mixer: { temperature0: 0.3, gamma0: 0.4, gammaGrowth: 0.02 },
  entropy: { lambda: 1.5, primePenalty: { enabled: false } }, resonanceTarget: { value: 0.9, operator: 'R' },
  schedule: { steps: 1, restarts: 0, plateauT: 6, plateauEps: 1e-4 }, observables: { metricsInterval: 1, snapshotsInterval: 3 }, seed: 7,
};
/** An HQE run on the same basis and mixer (the CPU engine groups it with the space on one kernel). */
const hqe: HQEConfigInput = { ...live, resonanceTarget: undefined, schedule: { steps: 400, restarts: 0, plateauT: 1000 }, seed: 8 };

const space = (): SimSpec => ({ ...specOf(live), mode: 'space', collapseThreshold: 0.6 });

const limit = (...pairs: Array<[number, number]>): Map<number, number> => new Map(pairs);

/** A space advanced `ticks` in one advance, alone in a fresh engine: its records and final checkpoint. */
async function straight(make: () => Promise<Engine>, ticks: number): Promise<{ records: TickRecord[]; cp: SimState }> {
  return withEngine(make, async (engine) => {
    const id = engine.add(space());
    const rep = (await engine.advance(ticks)).get(id)!;
    expect([rep.status, rep.step]).toEqual(['running', ticks]);
    return { records: rep.records, cp: await engine.exportState(id) };
  });
}

for (const kind of kinds) {
  describe(`tick limits on ${kind.name}`, () => {
    it('holds a simulation with limit 0 bit-identical while the batch advances', async () => {
      const want = await straight(kind.make, 6);
      await withEngine(kind.make, async (engine) => {
        const sp = engine.add(space());
        const other = engine.add(specOf(hqe));
        // with 2 worker threads, this one shares a lane with the held space
        const third = engine.add(specOf({ ...hqe, seed: 9 }));
        const records: TickRecord[] = [];
        records.push(...(await engine.advance(2, limit([sp, 2]))).get(sp)!.records);
        const before = await engine.exportState(sp);
        // held for three advances (a limit of an absent id is ignored), ticks 0 included
        for (const ticks of [5, 3, 0]) {
          const reports = await engine.advance(ticks, limit([sp, 0], [999, 0]));
          expect(reports.get(sp)).toEqual({ status: 'running', step: 2, restart: 0, records: [] });
          expect(await engine.exportState(sp)).toEqual(before);
        }
        // the others got every tick
        const reports = await engine.advance(4, limit([sp, 4]));
        expect([reports.get(other)!.step, reports.get(third)!.step]).toEqual([14, 14]);
        records.push(...reports.get(sp)!.records);
        // after the hold it went on exactly as if it had never been held
        expect(reports.get(sp)!.step).toBe(6);
        expect(await engine.exportState(sp)).toEqual(want.cp);
        expect(records).toEqual(want.records);
      });
    });

    it('1 tick in each of N advances ends bit-identical to N ticks at once', async () => {
      const N = 7;
      const want = await straight(kind.make, N);
      await withEngine(kind.make, async (engine) => {
        const other = engine.add(specOf(hqe));
        const sp = engine.add(space());
        const records: TickRecord[] = [];
        for (let a = 0; a < N; a++) {
          const reports = await engine.advance(3, limit([sp, 1]));
          const rep = reports.get(sp)!;
          expect([rep.status, rep.step]).toEqual(['running', a + 1]);
          expect(rep.records.length).toBe(1);
          records.push(...rep.records);
          expect(reports.get(other)!.step).toBe(3 * (a + 1));
        }
        const cp = await engine.exportState(sp);
        expect(cp.phases).toEqual(want.cp.phases);
        expect(cp.masses).toEqual(want.cp.masses);
        expect(cp).toEqual(want.cp);
        expect(records).toEqual(want.records);
        expect(records.some((r) => r.phases !== undefined)).toBe(true);
      });
      // Other splits (limits above ticks, ticks 0) end in the same place.
      await withEngine(kind.make, async (engine) => {
        engine.add(specOf(hqe));
        const sp = engine.add(space());
        const records: TickRecord[] = [];
        for (const [ticks, n] of [[2, 5], [0, 1], [4, 2], [1, 0], [9, 3]] as const) records.push(...(await engine.advance(ticks, limit([sp, n]))).get(sp)!.records);
        expect(await engine.exportState(sp)).toEqual(want.cp);
        expect(records).toEqual(want.records);
      });
    });

    it('rejects a bad limit before anything runs', async () => {
      await withEngine(kind.make, async (engine) => {
        const sp = engine.add(space());
        const other = engine.add(specOf(hqe));
        await engine.advance(1);
        const before = [await engine.exportState(sp), await engine.exportState(other)];
        for (const bad of [-1, 0.5, NaN, Infinity, -Infinity, '2' as unknown as number]) {
          await expect(engine.advance(3, limit([other, 1], [sp, bad]))).rejects.toThrow(/limit/);
        }
        await expect(engine.advance(3, [[sp, 1]] as unknown as Map<number, number>)).rejects.toThrow(/limits/);
        expect([await engine.exportState(sp), await engine.exportState(other)]).toEqual(before);
      });
    });
  });
}
