/**
 * Checkpoints (exportState / add(spec, checkpoint)) and patches (extraSteps, snapshotAt) on the CPU engine
 * (f64, f32, worker threads) and the WebGPU engine (llvmpipe here): docs/engine.md, "Checkpoints and
 * patches". Same backend and precision: bit-identical continuation. Across backends or precisions: accepted
 * and converted, then within the parity bars.
 */
import { describe, expect, it } from 'vitest';
import { basisConstants } from '../src/model/basis.js';
import { CpuEngine } from '../src/engine/cpu/engine.js';
import { Flag, type Engine, type SimCheckpoint, type SimReport, type SimState, type TickRecord } from '../src/engine/types.js';
import { decodeCheckpoint, encodeCheckpoint } from '../src/engine/checkpoint.js';
import type { HQEConfigInput } from '../src/model/config.js';
import { firstPrimes } from '../src/model/primes.js';
import type { SimSpec } from '../src/model/spec.js';
import { specOf, withEngine } from './helpers/engines.js';
import { useGpuDevice } from './helpers/gpu.js';

const gpu = useGpuDevice();
const webgpu = (): Promise<Engine> => gpu.engine();

interface Kind {
  name: string;
  make: () => Promise<Engine>;
  /** Absolute tolerance of the closed form per step. */
  eps: number;
}

const kinds: Kind[] = [
  { name: 'cpu f64', make: async () => new CpuEngine({ precision: 'f64', threads: 0 }), eps: 1e-12 },
  { name: 'cpu f32', make: async () => new CpuEngine({ precision: 'f32', threads: 0 }), eps: 1e-6 },
  { name: 'webgpu', make: webgpu, eps: 1e-6 },
];

// ---- specs (k <= 64: llvmpipe is slow) ----

/** Noise, restarts at steps 25 and 50 (steps ran out), snapshots every 4. */
const noisy: HQEConfigInput = {
  primes: firstPrimes(11), mixer: { temperature0: 1, gamma0: 0.3, gammaGrowth: 0.01 },
  entropy: { lambda: 0.1 }, schedule: { steps: 25, restarts: 2, plateauT: 40, plateauEps: 1e-4 },
  observables: { snapshotsInterval: 4, metricsInterval: 1 }, seed: 1234,
};
/** Learned mixer with noise, a target and the norm channel (lnNu moves), restarts at 20, 40. */
const learned: HQEConfigInput = {
  primes: firstPrimes(24), initialAmplitudes: Array.from({ length: 24 }, (_, i) => 1 + 0.5 * Math.sin(i)),
  mixer: { type: 'learned', temperature0: 0.3, gamma0: 0.2, gammaGrowth: 0.02, learningRate: 0.5 },
  entropy: { lambda: 0.3 }, resonanceTarget: { value: 0.95, operator: 'R' }, boundary: { enforceUnitNorm: false },
  schedule: { steps: 20, restarts: 2, plateauT: 50 }, observables: { snapshotsInterval: 5, metricsInterval: 2 }, seed: 77,
};
/** Plateau restarts (lambda 0 keeps the entropy flat), flow mixer, L1. */
const plateaus: HQEConfigInput = {
  primes: firstPrimes(7), mixer: { type: 'flow', temperature0: 0.5 }, entropy: { lambda: 0, primePenalty: { enabled: false } },
  boundary: { norm: 'L1' }, schedule: { steps: 100, restarts: 6, plateauT: 6 }, observables: { snapshotsInterval: 3, metricsInterval: 1 }, seed: 5,
};
const specs: SimSpec[] = [noisy, learned, plateaus].map(specOf);

// ---- helpers ----

type Streams = Map<number, TickRecord[]>;

async function advance(engine: Engine, ids: number[], ticks: number, into?: TickRecord[][]): Promise<Map<number, SimReport>> {
  const reports = await engine.advance(ticks);
  if (into) ids.forEach((id, s) => into[s]!.push(...reports.get(id)!.records));
  return reports;
}

/** An exported state as it is stored: its checkpoint's JSON text, parsed. */
const stored = (state: SimState): SimCheckpoint => JSON.parse(JSON.stringify(encodeCheckpoint(state))) as SimCheckpoint;
/** What a state goes through when stored and loaded again. */
const viaJson = (state: SimState): SimState => decodeCheckpoint(stored(state));

/** Records of `specs` over `ticks` ticks, one advance per entry of `chunks` (default: one). */
async function straight(make: () => Promise<Engine>, list: SimSpec[], ticks: number): Promise<{ records: TickRecord[][]; reports: SimReport[] }> {
  return withEngine(make, async (engine) => {
    const ids = list.map((s) => engine.add(s));
    const records: TickRecord[][] = ids.map(() => []);
    const reports = await advance(engine, ids, ticks, records);
    return { records, reports: ids.map((id) => reports.get(id)!) };
  });
}

/** Bit-identical records (toEqual compares numbers and typed-array elements exactly). */
function expectSame(got: TickRecord[][], want: TickRecord[][]): void {
  expect(got.length).toBe(want.length);
  for (let s = 0; s < want.length; s++) {
    expect(got[s]!.length, `simulation ${s}: record count`).toBe(want[s]!.length);
    expect(got[s]).toEqual(want[s]);
  }
}

const stepsOf = (records: TickRecord[]): number[] => records.map((r) => r.step);

// ---- checkpoints on the same backend: bit-identical continuation ----

for (const kind of kinds) {
  describe(`checkpoints on ${kind.name}`, () => {
    const TOTAL = 60;

    it('N ticks, export (through JSON), a fresh engine, M ticks = N + M ticks straight (noise, learned, restarts after the checkpoint)', async () => {
      const want = await straight(kind.make, specs, TOTAL);
      // The streams reach restarts of both kinds, and a restart after every checkpoint below.
      expect(want.records[0]!.filter((r) => r.flags & Flag.RESTART).map((r) => r.step)).toEqual([25, 50]);
      expect(want.records[1]!.filter((r) => r.flags & Flag.RESTART).map((r) => r.step)).toEqual([20, 40]);
      expect(want.records[2]!.filter((r) => r.flags & Flag.PLATEAU).length).toBeGreaterThan(3);
      // N = 0: the initial state; 26: just after noisy's restart (Ebest = +infinity); 13 and 41: mid-restart.
      for (const N of [0, 13, 26, 41]) {
        const first: TickRecord[][] = specs.map(() => []);
        const checkpoints = await withEngine(kind.make, async (engine) => {
          const ids = specs.map((s) => engine.add(s));
          await advance(engine, ids, N, first);
          const exported = await Promise.all(ids.map((id) => engine.exportState(id)));
          // Typed arrays in the engine's own precision, before any encoding.
          for (const state of exported) expect(state.phases).toBeInstanceOf(kind.name === 'cpu f64' ? Float64Array : Float32Array);
          return exported.map(viaJson);
        });
        for (const cp of checkpoints) {
          expect(cp.backend).toBe(kind.name === 'webgpu' ? 'webgpu' : 'cpu');
          expect(cp.precision).toBe(kind.name === 'cpu f64' ? 'f64' : 'f32');
          expect(cp.phases).toBeInstanceOf(kind.name === 'cpu f64' ? Float64Array : Float32Array);
        }
        if (N === 0 || N === 26) expect(checkpoints[0]!.ebest).toBe(Infinity);
        if (N === 26) expect(checkpoints[0]!.n).toBe(0);
        if (N === 13) expect(typeof checkpoints[0]!.ebest).toBe('number');
        expect(checkpoints[1]!.learned).not.toBeNull();
        expect(checkpoints[0]!.learned).toBeNull();
        const rest = await withEngine(kind.make, async (engine) => {
          const ids = specs.map((s, i) => engine.add(s, checkpoints[i]));
          const records: TickRecord[][] = ids.map(() => []);
          const reports = await advance(engine, ids, TOTAL - N, records);
          return { records, reports: ids.map((id) => reports.get(id)!) };
        });
        expectSame(first.map((r, s) => [...r, ...rest.records[s]!]), want.records);
        rest.reports.forEach((rep, s) => {
          expect([rep.status, rep.step, rep.restart]).toEqual([want.reports[s]!.status, want.reports[s]!.step, want.reports[s]!.restart]);
        });
      }
    });

    it('a checkpoint of an ended simulation stays ended; malformed or mismatched checkpoints are rejected', async () => {
      const spec = specOf({ ...noisy, schedule: { steps: 12, restarts: 0 } });
      await withEngine(kind.make, async (engine) => {
        const id = engine.add(spec);
        const rep = (await engine.advance(20)).get(id)!;
        expect(rep.status).toBe('completed');
        const cp = viaJson(await engine.exportState(id));
        expect(cp.status).toBe('completed');
        const again = engine.add(spec, cp);
        const r2 = (await engine.advance(5)).get(again)!;
        expect([r2.status, r2.step, r2.records.length]).toEqual(['completed', 12, 0]);

        const other = specOf({ ...noisy, primes: firstPrimes(12) });
        expect(() => engine.add(other, cp)).toThrow(/k = 11 does not match the spec's k = 12/);
        expect(() => engine.add(specOf({ ...noisy, mixer: { type: 'learned' } }), cp)).toThrow(/no learned matrix/);
        expect(() => engine.add(spec, { ...cp, phases: cp.phases.slice(4) })).toThrow(/phases holds 7 values, expected 11/);
        // The stored form: floats that are not finite as strings, arrays as base64, each field checked.
        const json = stored(cp);
        expect([stored({ ...cp, ebest: Infinity }).ebest, stored({ ...cp, lnNu: -Infinity }).lnNu, stored({ ...cp, gamma: NaN }).gamma]).toEqual(['Infinity', '-Infinity', 'NaN']);
        expect(decodeCheckpoint(stored({ ...cp, ebest: Infinity })).ebest).toBe(Infinity);
        expect(() => decodeCheckpoint({ ...json, phases: json.phases.slice(4) })).toThrow(/phases holds/);
        expect(() => decodeCheckpoint({ ...json, masses: '!!!!' })).toThrow(/masses is not base64/);
        expect(() => decodeCheckpoint({ ...json, version: 2 } as unknown as SimCheckpoint)).toThrow(/unknown format/);
        expect(() => decodeCheckpoint({ ...json, ebest: 'inf' } as unknown as SimCheckpoint)).toThrow(/ebest is not a number/);
        await expect(engine.exportState(9999)).rejects.toThrow(/no simulation 9999/);
      });
    });

    // ---- patches ----

    it('extraSteps continues a completed run exactly as a patch before the end would have, through checkpoints too', async () => {
      // Last restart: steps 40..60 (restart 2 of noisy with steps 20); learned: steps 20, restarts at 20, 40.
      const list = [specOf({ ...noisy, schedule: { steps: 20, restarts: 2, plateauT: 60 } }), specs[1]!];
      const END = 60;
      const EXTRA = 15;
      // (a) the patch while the last restart is still running (tick 50 visits step 48 of restart 2)
      const early = await withEngine(kind.make, async (engine) => {
        const ids = list.map((s) => engine.add(s));
        const recs: TickRecord[][] = ids.map(() => []);
        await advance(engine, ids, 50, recs);
        for (const id of ids) engine.patch(id, { extraSteps: EXTRA });
        const reports = await advance(engine, ids, 100, recs);
        return { recs, reports: ids.map((id) => reports.get(id)!) };
      });
      for (const rep of early.reports) expect([rep.status, rep.step]).toEqual(['completed', END + EXTRA]);
      // (b) the patch after the run completed at step 60
      const late = await withEngine(kind.make, async (engine) => {
        const ids = list.map((s) => engine.add(s));
        const recs: TickRecord[][] = ids.map(() => []);
        const ended = await advance(engine, ids, 100, recs);
        for (const id of ids) expect([ended.get(id)!.status, ended.get(id)!.step]).toEqual(['completed', END]);
        const cps = await Promise.all(ids.map((id) => engine.exportState(id)));
        for (const id of ids) engine.patch(id, { extraSteps: EXTRA });
        const revived = await Promise.all(ids.map(async (id) => viaJson(await engine.exportState(id))));
        const reports = await advance(engine, ids, 100, recs);
        return { recs, cps, revived, reports: ids.map((id) => reports.get(id)!) };
      });
      for (const rep of late.reports) expect([rep.status, rep.step]).toEqual(['completed', END + EXTRA]);
      for (const cp of late.revived) expect([cp.status, cp.revisit, cp.extraSteps]).toEqual(['running', true, EXTRA]);
      for (let s = 0; s < list.length; s++) {
        // The terminal state (step 60) is recorded once, as terminal; it is not re-recorded on the revisit.
        const terminal = late.recs[s]!.filter((r) => r.step === END);
        expect(terminal.map((r) => r.flags & Flag.TERMINAL)).toEqual([Flag.TERMINAL]);
        const noEnd = (recs: TickRecord[]): TickRecord[] => recs.filter((r) => r.step !== END);
        expect(noEnd(late.recs[s]!)).toEqual(noEnd(early.recs[s]!));
        expect(early.recs[s]!.filter((r) => r.step === END).every((r) => !(r.flags & Flag.TERMINAL))).toBe(true);
      }
      // (c) the completed checkpoint in a fresh engine, patched there; and the revived checkpoint
      for (const which of ['completed', 'revived'] as const) {
        const cont = await withEngine(kind.make, async (engine) => {
          const ids = list.map((s, i) => engine.add(s, which === 'completed' ? late.cps[i]! : late.revived[i]!));
          if (which === 'completed') for (const id of ids) engine.patch(id, { extraSteps: EXTRA });
          const recs: TickRecord[][] = ids.map(() => []);
          await advance(engine, ids, 100, recs);
          return recs;
        });
        for (let s = 0; s < list.length; s++) {
          expect(cont[s]).toEqual(late.recs[s]!.filter((r) => r.step > END));
        }
      }
    });

    it('extraSteps on a completed single-restart run = a run with the larger steps from the start', async () => {
      const base = { ...noisy, schedule: { steps: 30, restarts: 0, plateauT: 100 } };
      const want = await straight(kind.make, [specOf({ ...base, schedule: { ...base.schedule, steps: 45 } })], 100);
      const got = await withEngine(kind.make, async (engine) => {
        const id = engine.add(specOf(base));
        const recs: TickRecord[][] = [[]];
        await advance(engine, [id], 100, recs);
        engine.patch(id, { extraSteps: 10 });
        engine.patch(id, { extraSteps: 5 }); // cumulative
        const rep = await advance(engine, [id], 100, recs);
        expect(rep.get(id)!.status).toBe('completed');
        return recs[0]!;
      });
      const w = want.records[0]!;
      expect(got.filter((r) => r.step !== 30)).toEqual(w.filter((r) => r.step !== 30));
      expect(got.filter((r) => r.step === 30).map((r) => r.flags)).toEqual([Flag.METRICS | Flag.SNAPSHOT | Flag.TERMINAL]);
      expect(stepsOf(got).at(-1)).toBe(45);
    });

    it('snapshotAt: one extra snapshot at any step, one shot, carried by checkpoints', async () => {
      const spec = specOf({ ...noisy, schedule: { steps: 20, restarts: 1, plateauT: 100 }, observables: { metricsInterval: 4, snapshotsInterval: 1000 } });
      const plain = (await straight(kind.make, [spec], 60)).records[0]!;
      const got = await withEngine(kind.make, async (engine) => {
        const id = engine.add(spec);
        const recs: TickRecord[][] = [[]];
        await advance(engine, [id], 5, recs);
        engine.patch(id, { snapshotAt: 17 });
        await advance(engine, [id], 10, recs); // visits steps 5..14
        const cp = viaJson(await engine.exportState(id));
        expect(cp.snapshotAt).toBe(17);
        engine.remove(id);
        const id2 = engine.add(spec, cp);
        await advance(engine, [id2], 4, recs); // steps 15..18: the snapshot at 17
        engine.patch(id2, { snapshotAt: 20 }); // the restart step: visited twice, only the first snapshots
        expect(() => engine.patch(id2, { snapshotAt: 18 })).toThrow(/lies before the next visited step 19/);
        await advance(engine, [id2], 60, recs);
        expect((await engine.exportState(id2)).snapshotAt).toBeNull();
        return recs[0]!;
      });
      const at17 = got.filter((r) => r.step === 17);
      expect(at17.map((r) => r.flags)).toEqual([Flag.SNAPSHOT]);
      expect(at17[0]!.phases).toHaveLength(11);
      expect(at17[0]!.amplitudes).toHaveLength(11);
      const at20 = got.filter((r) => r.step === 20);
      expect(at20.map((r) => r.flags)).toEqual([Flag.METRICS | Flag.RESTART | Flag.SNAPSHOT, Flag.METRICS]);
      expect(at20[1]!.phases).toBeUndefined();
      // Everything else is the unpatched run.
      const strip = (recs: TickRecord[]): unknown[] => recs.filter((r) => r.step !== 17).map((r) => (r.step === 20 ? { ...r, flags: r.flags & ~Flag.SNAPSHOT, phases: undefined, amplitudes: undefined } : r));
      expect(strip(got)).toEqual(strip(plain));
    });

    it('patch rejects ended simulations (other than completed with extra steps) and bad values', async () => {
      await withEngine(kind.make, async (engine) => {
        const plateau = engine.add(specOf({ ...plateaus, schedule: { steps: 100, restarts: 0, plateauT: 6 } }));
        const done = engine.add(specOf({ ...noisy, schedule: { steps: 5, restarts: 0 } }));
        const running = engine.add(specOf(noisy));
        const reps = await engine.advance(10);
        expect(reps.get(plateau)!.status).toBe('plateau');
        expect(reps.get(done)!.status).toBe('completed');
        expect(() => engine.patch(plateau, { extraSteps: 10 })).toThrow(/ended \(plateau\)/);
        expect(() => engine.patch(done, { snapshotAt: 50 })).toThrow(/only extraSteps > 0/);
        expect(() => engine.patch(done, { extraSteps: 0 })).toThrow(/only extraSteps > 0/);
        expect(() => engine.patch(done, { extraSteps: 2, snapshotAt: 5 })).toThrow(/before the next visited step 6/);
        expect(() => engine.patch(running, { extraSteps: -1 })).toThrow(/non-negative integer/);
        expect(() => engine.patch(running, { snapshotAt: 1.5 })).toThrow(/non-negative integer/);
        expect(() => engine.patch(running, { snapshotAt: 9 })).toThrow(/before the next visited step 10/);
        expect(() => engine.patch(9999, { extraSteps: 1 })).toThrow(/no simulation 9999/);
        // Nothing was changed by the rejected patches.
        const cp = await engine.exportState(done);
        expect([cp.status, cp.extraSteps, cp.snapshotAt, cp.revisit]).toEqual(['completed', 0, null, false]);
      });
    });

    it('closed form across a patch: free rotation continued by extraSteps, with a snapshot at step 137', async () => {
      const input: HQEConfigInput = {
        primes: [2, 3, 5, 7, 11, 13, 17, 19, 23], initialAmplitudes: [1, -2, 0.5, 1, 1, 3, 1, 1, 0.25],
        phaseSeeding: { golden: true, silver: true }, mixer: { gamma0: 0, gammaGrowth: 0, temperature0: 0 },
        entropy: { lambda: 0, primePenalty: { enabled: false } }, schedule: { dt: 0.05, steps: 100, plateauT: 1e6 },
        observables: { snapshotsInterval: 50, metricsInterval: 1000 }, seed: 3,
      };
      const spec = specOf(input);
      const basis = basisConstants(spec);
      const snaps = await withEngine(kind.make, async (engine) => {
        const id = engine.add(spec);
        const recs: TickRecord[][] = [[]];
        expect((await advance(engine, [id], 500, recs)).get(id)!.status).toBe('completed');
        engine.patch(id, { extraSteps: 60, snapshotAt: 137 });
        const rep = (await advance(engine, [id], 500, recs)).get(id)!;
        expect([rep.status, rep.step]).toEqual(['completed', 160]);
        return recs[0]!.filter((r) => r.flags & Flag.SNAPSHOT);
      });
      expect(stepsOf(snaps)).toEqual([0, 50, 100, 137, 150, 160]);
      for (const snap of snaps) {
        snap.phases!.forEach((theta, i) => {
          const expected = basis.theta0[i]! - snap.step * spec.dt * basis.omega[i]!;
          const d = Math.abs(theta - expected) % (2 * Math.PI);
          expect(Math.min(d, 2 * Math.PI - d)).toBeLessThan(kind.eps * (10 + 4 * snap.step));
        });
      }
    });
  });
}

// ---- across precisions and threads (CPU) ----

describe('checkpoints across precisions and threads', () => {
  it('f64 <-> f32: accepted and converted, then close to the straight run of the receiving precision', async () => {
    const f64 = async (): Promise<Engine> => new CpuEngine({ precision: 'f64', threads: 0 });
    const f32 = async (): Promise<Engine> => new CpuEngine({ precision: 'f32', threads: 0 });
    for (const [from, to] of [[f64, f32], [f32, f64]] as const) {
      const want = await straight(to, specs, 40);
      const cps = await withEngine(from, async (engine) => {
        const ids = specs.map((s) => engine.add(s));
        await engine.advance(15);
        return Promise.all(ids.map(async (id) => viaJson(await engine.exportState(id))));
      });
      const got = await withEngine(to, async (engine) => {
        const ids = specs.map((s, i) => engine.add(s, cps[i]));
        const recs: TickRecord[][] = ids.map(() => []);
        await advance(engine, ids, 25, recs);
        return recs;
      });
      for (let s = 0; s < specs.length; s++) {
        // The continuation's records are the tail of the straight run's.
        const w = want.records[s]!.slice(-got[s]!.length);
        expect(got[s]!.length).toBeGreaterThan(5);
        expect(got[s]!.map((r) => [r.step, r.restart, r.n, r.flags])).toEqual(w.map((r) => [r.step, r.restart, r.n, r.flags]));
        got[s]!.forEach((r, t) => {
          for (const key of ['resonanceStrength', 'coherence', 'entropy', 'locality', 'dominance'] as const) {
            expect(Math.abs(r.metrics[key] - w[t]!.metrics[key])).toBeLessThan(1e-4);
          }
        });
      }
    }
  });

  it('worker threads: export, resume and patch give the calling-thread results', async () => {
    const run = async (threads: number): Promise<TickRecord[][]> =>
      withEngine(async () => new CpuEngine({ precision: 'f64', threads, inlineWork: 0 }), async (engine) => {
        const spec = specOf({ ...noisy, schedule: { steps: 20, restarts: 0 } });
        const ids = [engine.add(spec), engine.add(specs[1]!)];
        const recs: TickRecord[][] = ids.map(() => []);
        await advance(engine, ids, 30, recs);
        const cps = await Promise.all(ids.map((id) => engine.exportState(id)));
        ids.forEach((id) => engine.remove(id));
        const again = [engine.add(spec, cps[0]), engine.add(specs[1]!, cps[1])];
        engine.patch(again[0]!, { extraSteps: 7, snapshotAt: 25 });
        engine.patch(again[1]!, { snapshotAt: 33 });
        await advance(engine, again, 30, recs);
        return recs;
      });
    const inline = await run(0);
    const threaded = await run(2);
    expect(inline[0]!.some((r) => r.step === 25 && r.flags === Flag.METRICS + Flag.SNAPSHOT)).toBe(true);
    expectSame(threaded, inline);
  });
});
