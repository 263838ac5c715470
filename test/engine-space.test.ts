/**
 * Space mode (docs/engine.md, "Space mode") on the CPU engine (f64, f32) and the WebGPU engine (llvmpipe
 * here): never terminal (but failed), edge-triggered re-arming plateau and collapse events, the patch
 * extensions setPhases / shiftPhases / params, CPU f32 vs WebGPU parity over a scripted sequence of patches,
 * and bit-identical checkpoint continuation.
 */
import { describe, expect, it } from 'vitest';
import { CpuEngine } from '../src/engine/cpu/engine.js';
import { type Engine, Flag, type Precision, type SimCheckpoint, type SimPatch, type SimState, type SpaceParams, type TickRecord } from '../src/engine/types.js';
import { decodeCheckpoint, encodeCheckpoint } from '../src/engine/checkpoint.js';
import { spaceParamsOf, wrapPhase } from '../src/engine/edits.js';
import type { HQEConfigInput } from '../src/model/config.js';
import { firstPrimes } from '../src/model/primes.js';
import type { SimSpec } from '../src/model/spec.js';
import { specOf, withEngine } from './helpers/engines.js';
import { useGpuDevice } from './helpers/gpu.js';

const gpu = useGpuDevice();

interface Kind {
  name: string;
  precision: Precision;
  make: () => Promise<Engine>;
  /** Ticks for the "never terminal" test (llvmpipe is slow). */
  longTicks: number;
}

const kinds: Kind[] = [
  { name: 'cpu f64', precision: 'f64', make: async () => new CpuEngine({ precision: 'f64', threads: 0 }), longTicks: 5000 },
  { name: 'cpu f32', precision: 'f32', make: async () => new CpuEngine({ precision: 'f32', threads: 0 }), longTicks: 5000 },
  { name: 'cpu wasm f64', precision: 'f64', make: async () => new CpuEngine({ precision: 'f64', threads: 0, loops: 'wasm' }), longTicks: 5000 },
  { name: 'cpu wasm f32', precision: 'f32', make: async () => new CpuEngine({ precision: 'f32', threads: 0, loops: 'wasm' }), longTicks: 5000 },
  { name: 'webgpu', precision: 'f32', make: () => gpu.engine(), longTicks: 400 },
];

// ---- specs (k <= 32) ----

const PLATEAU_T = 10;
const THRESHOLD = 0.5;

/** Steps 1 and no restarts: an HQE run would end at step 1. lambda 0: the entropy is flat. */
const flat: HQEConfigInput = {
  primes: firstPrimes(16), mixer: { temperature0: 0.2, gamma0: 0.5, gammaGrowth: 0.01 },
  entropy: { lambda: 0, primePenalty: { enabled: false } },
  schedule: { steps: 1, restarts: 0, plateauT: PLATEAU_T, plateauEps: 1e-4 },
  observables: { metricsInterval: 1, snapshotsInterval: 50 }, seed: 9,
};

function space(input: HQEConfigInput, extra: Partial<SimSpec> = {}): SimSpec {
  return { ...specOf(input), mode: 'space', collapseThreshold: THRESHOLD, ...extra };
}

// ---- helpers ----

async function tick(engine: Engine, id: number, ticks: number, into: TickRecord[]): Promise<void> {
  const rep = (await engine.advance(ticks)).get(id)!;
  expect(rep.status).toBe('running');
  into.push(...rep.records);
}

const stepsWith = (records: TickRecord[], flag: number): number[] => records.filter((r) => r.flags & flag).map((r) => r.step);

/**
 * The steps an edge-triggered event re-arming after `T` false visits fires on, given its condition on every
 * visited step (metricsInterval 1: one record per step, in order).
 */
function expectedFires(records: TickRecord[], cond: (r: TickRecord) => boolean, T: number): number[] {
  let armed = true;
  let falseCount = 0;
  const out: number[] = [];
  for (const r of records) {
    const c = cond(r);
    if (armed) {
      if (c) {
        out.push(r.step);
        armed = false;
        falseCount = 0;
      }
    } else if (c) falseCount = 0;
    else if (++falseCount >= T) armed = true;
  }
  return out;
}

const plateauCond = (r: TickRecord): boolean => r.metrics.plateauDetected;
const collapseCond = (r: TickRecord): boolean => r.metrics.dominance >= THRESHOLD;

function expectOneRecordPerStep(records: TickRecord[], from = 0): void {
  expect(records.map((r) => r.step)).toEqual(records.map((_, i) => from + i));
}

/** What a state goes through when stored and loaded again. */
const viaJson = (state: SimState): SimState => decodeCheckpoint(JSON.parse(JSON.stringify(encodeCheckpoint(state))) as SimCheckpoint);

// A scripted sequence of advances and patches (used for parity and checkpoints).
type Script = Array<number | ((ids: number[]) => Array<[number, SimPatch]>)>;

const parityInputs: HQEConfigInput[] = [
  // the plateau scenario, L2, local mixer
  flat,
  // mass flow with a target and the norm channel, flow mixer, L1
  {
    primes: firstPrimes(8), mixer: { type: 'flow', temperature0: 0.1, gamma0: 0.4, gammaGrowth: 0.02 },
    entropy: { lambda: 2, primePenalty: { enabled: false } }, boundary: { norm: 'L1', enforceUnitNorm: false },
    resonanceTarget: { value: 0.9, operator: 'R' },
    schedule: { steps: 3, restarts: 1, plateauT: 8, plateauEps: 1e-4 }, observables: { metricsInterval: 1, snapshotsInterval: 7 }, seed: 3,
  },
  // learned mixer, k = 32
  {
    primes: firstPrimes(32), mixer: { type: 'learned', temperature0: 0.05, gamma0: 0.3, gammaGrowth: 0.01, learningRate: 0.2 },
    entropy: { lambda: 1, primePenalty: { enabled: false } },
    schedule: { steps: 2, restarts: 0, plateauT: 12, plateauEps: 1e-4 }, observables: { metricsInterval: 1, snapshotsInterval: 9 }, seed: 11,
  },
  // the collapse scenario: high lambda drives dominance over the threshold
  { ...flat, entropy: { lambda: 20, primePenalty: { enabled: false } }, seed: 21 },
];
const paritySpecs = (): SimSpec[] => parityInputs.map((i) => space(i));

const script: Script = [
  23,
  (ids) => [
    [ids[0]!, { setPhases: [[0, 1.25], [3, -0.5]], shiftPhases: [[3, 0.25], [7, 3.5]], params: { lambda: 1.5 } }],
    [ids[1]!, { params: { gamma0: 0.2, gammaMax: 0.6, temperature0: 0.05 } }],
    [ids[2]!, { shiftPhases: [[31, -2]], params: { localityBias: 0.9 } }],
  ],
  17,
  (ids) => [
    [ids[3]!, { shiftPhases: [[0, 3], [2, 3], [4, 3], [6, 3], [8, 3], [10, 3], [12, 3], [14, 3]], params: { gamma0: 0.1, gammaMax: 0.1 } }],
    [ids[0]!, { params: { semantic: true, beta: 0.99 } }],
    [ids[1]!, { params: { target: null, lambda: 0.5 }, snapshotAt: 45 }],
    [ids[2]!, { setPhases: [[0, 10]], params: { target: 0.99 } }],
  ],
  30,
  (ids) => [
    [ids[3]!, { shiftPhases: [[1, 3], [3, 3], [5, 3], [7, 3], [9, 3], [11, 3], [13, 3], [15, 3]] }],
    [ids[0]!, { params: { lambda: 0 } }],
    [ids[1]!, { shiftPhases: [[2, 1], [2, 1]], params: { target: 0.5, gammaGrowth: 0.05 } }],
  ],
  25,
];
const SCRIPT_TICKS = 23 + 17 + 30 + 25;

/** Run a script on one engine; optionally checkpoint after `cutAfter` script entries into a fresh engine. */
async function runScript(make: () => Promise<Engine>, specs: SimSpec[], cutAfter?: number): Promise<TickRecord[][]> {
  const out: TickRecord[][] = specs.map(() => []);
  let engine = await make();
  try {
    let ids = specs.map((s) => engine.add(s));
    for (let e = 0; e < script.length; e++) {
      const entry = script[e]!;
      if (typeof entry === 'number') {
        const reports = await engine.advance(entry);
        ids.forEach((id, s) => {
          const rep = reports.get(id)!;
          expect(rep.status).toBe('running');
          out[s]!.push(...rep.records);
        });
      } else {
        for (const [id, change] of entry(ids)) engine.patch(id, change);
      }
      if (cutAfter === e) {
        // right after a patch: pending edits must travel in the checkpoint
        const cps = await Promise.all(ids.map(async (id) => viaJson(await engine.exportState(id))));
        await engine.destroy();
        engine = await make();
        ids = specs.map((s, i) => engine.add(s, cps[i]));
      }
    }
  } finally {
    await engine.destroy();
  }
  return out;
}

// ---- per backend ----

for (const kind of kinds) {
  describe(`space mode on ${kind.name}`, () => {
    it('is never terminal: no steps limit, no restarts, no converged end', async () => {
      // A target that is reached at once: an HQE run would converge (or complete at step 1).
      const input: HQEConfigInput = { ...flat, resonanceTarget: { value: 0.05, operator: 'R' }, entropy: { lambda: 0.5, primePenalty: { enabled: false } } };
      await withEngine(kind.make, async (engine) => {
        const hqe = engine.add(specOf(input));
        const id = engine.add(space(input));
        const records: TickRecord[] = [];
        const reports = await engine.advance(kind.longTicks);
        expect(reports.get(hqe)!.status).not.toBe('running');
        const rep = reports.get(id)!;
        records.push(...rep.records);
        expect([rep.status, rep.step, rep.restart]).toEqual(['running', kind.longTicks, 0]);
        expectOneRecordPerStep(records);
        for (const r of records) {
          expect(r.flags & (Flag.TERMINAL | Flag.RESTART | Flag.CONVERGED | Flag.FAILED)).toBe(0);
          expect(r.restart).toBe(0);
          expect(r.n).toBe(r.step);
        }
        // the target still drives gamma (held once reached) and lnNu (enforceUnitNorm defaults true: fixed)
        expect(records.some((r) => r.flags & Flag.PLATEAU)).toBe(true);
        await tick(engine, id, 3, records);
        expect(records.at(-1)!.step).toBe(kind.longTicks + 2);
      });
    });

    it('plateau fires once, then re-arms only after plateauDetected was false for plateauT steps', async () => {
      await withEngine(kind.make, async (engine) => {
        const id = engine.add(space(flat));
        const records: TickRecord[] = [];
        await tick(engine, id, 25, records);
        // lambda 0: the entropy is flat, the counter reaches plateauT at step 10 and stays detected
        expect(stepsWith(records, Flag.PLATEAU)).toEqual([PLATEAU_T]);
        expect(records.filter(plateauCond).length).toBe(25 - PLATEAU_T);
        // mass flow breaks the plateau; lambda back to 0 makes it flat again
        engine.patch(id, { params: { lambda: 3 } });
        await tick(engine, id, 60, records);
        engine.patch(id, { params: { lambda: 0 } });
        await tick(engine, id, 40, records);
        expectOneRecordPerStep(records);
        const fires = stepsWith(records, Flag.PLATEAU);
        expect(fires).toEqual(expectedFires(records, plateauCond, PLATEAU_T));
        expect(fires.length).toBeGreaterThanOrEqual(2);
        // between two fires the condition was false for at least plateauT consecutive steps
        for (let f = 1; f < fires.length; f++) {
          const between = records.filter((r) => r.step > fires[f - 1]! && r.step < fires[f]!);
          let run = 0;
          let best = 0;
          for (const r of between) best = Math.max(best, (run = plateauCond(r) ? 0 : run + 1));
          expect(best).toBeGreaterThanOrEqual(PLATEAU_T);
        }
        // lambda is not a mixer parameter: n was never reset
        for (const r of records) expect(r.n).toBe(r.step);
      });
    });

    it('collapse fires when dominance crosses collapseThreshold, and re-arms', async () => {
      const input: HQEConfigInput = { ...flat, entropy: { lambda: 20, primePenalty: { enabled: false } } };
      await withEngine(kind.make, async (engine) => {
        const id = engine.add(space(input));
        const records: TickRecord[] = [];
        await tick(engine, id, 90, records);
        const first = records.find(collapseCond)!;
        expect(first).toBeDefined();
        expect(stepsWith(records, Flag.COLLAPSE)).toEqual([first.step]);
        expect(records.filter(collapseCond).length).toBeGreaterThan(3);
        // knock the dominant prime out of phase: mass leaves it, dominance drops, the event re-arms
        engine.patch(id, { snapshotAt: 90 });
        await tick(engine, id, 1, records);
        const amps = records.at(-1)!.amplitudes!;
        let top = 0;
        for (let i = 1; i < amps.length; i++) if (amps[i]! > amps[top]!) top = i;
        engine.patch(id, { shiftPhases: [[top, Math.PI]], params: { gamma0: 0.1, gammaMax: 0.1 } });
        await tick(engine, id, 80, records);
        expectOneRecordPerStep(records);
        const fires = stepsWith(records, Flag.COLLAPSE);
        expect(fires).toEqual(expectedFires(records, collapseCond, PLATEAU_T));
        expect(fires.length).toBeGreaterThanOrEqual(2);
        expect(records.every((r) => !(r.flags & Flag.TERMINAL))).toBe(true);
      });
    });

    it('setPhases and shiftPhases show exactly in the next snapshot', async () => {
      await withEngine(kind.make, async (engine) => {
        const spec = space(flat);
        const id = engine.add(spec);
        const records: TickRecord[] = [];
        await tick(engine, id, 7, records);
        const cp = await engine.exportState(id);
        const before = cp.phases;
        engine.patch(id, { setPhases: [[0, 1.25], [3, -0.5], [5, 7]], shiftPhases: [[3, 0.25], [1, 2 * Math.PI + 0.1], [1, -0.3]] });
        engine.patch(id, { shiftPhases: [[0, 0.5]], snapshotAt: 7 });
        await tick(engine, id, 1, records);
        const snap = records.at(-1)!;
        expect([snap.step, snap.flags & Flag.SNAPSHOT]).toEqual([7, Flag.SNAPSHOT]);
        const R = kind.precision === 'f32' ? Math.fround : (x: number): number => x;
        const want = Array.from(before);
        want[0] = wrapPhase(R(wrapPhase(R(1.25), kind.precision) + R(0.5)), kind.precision);
        want[3] = wrapPhase(R(wrapPhase(R(-0.5), kind.precision) + R(0.25)), kind.precision);
        want[5] = wrapPhase(R(7), kind.precision);
        want[1] = wrapPhase(R(wrapPhase(R(before[1]! + R(2 * Math.PI + 0.1)), kind.precision) + R(-0.3)), kind.precision);
        expect(Array.from(snap.phases!)).toEqual(want);
        // and the values are what they say, within f32 rounding
        expect(want[0]).toBeCloseTo(1.75, 5);
        expect(want[3]).toBeCloseTo(2 * Math.PI - 0.25, 5);
        expect(want[5]).toBeCloseTo(7 - 2 * Math.PI, 5);
        for (const w of want) expect(w >= 0 && w < 2 * Math.PI).toBe(true);
      });
    });

    it('a mixer parameter change resets n, gamma and the temperature; other changes do not', async () => {
      await withEngine(kind.make, async (engine) => {
        const id = engine.add(space({ ...flat, entropy: { lambda: 0.5, primePenalty: { enabled: false } } }));
        const records: TickRecord[] = [];
        await tick(engine, id, 20, records);
        expect(records.at(-1)!.n).toBe(19);
        engine.patch(id, { params: { lambda: 1, target: 0.99 } });
        await tick(engine, id, 5, records);
        expect(records.slice(-5).map((r) => r.n)).toEqual([20, 21, 22, 23, 24]);
        engine.patch(id, { params: { gamma0: 0.2, gammaMax: 0.3 } });
        await tick(engine, id, 15, records);
        const after = records.slice(-15);
        expect(after.map((r) => r.n)).toEqual(Array.from({ length: 15 }, (_, i) => i));
        expect(after.map((r) => r.step)).toEqual(Array.from({ length: 15 }, (_, i) => 25 + i));
        expect(after[0]!.gamma).toBe(kind.precision === 'f32' ? Math.fround(0.2) : 0.2);
        expect(after[1]!.gamma).toBeCloseTo(0.21, 6);
        expect(after[14]!.gamma).toBeCloseTo(0.3, 6);
        // an unchanged value is no change
        engine.patch(id, { params: { gamma0: 0.2 } });
        await tick(engine, id, 1, records);
        expect(records.at(-1)!.n).toBe(15);
        // a kernel change (localityBias) resets too
        engine.patch(id, { params: { localityBias: 0.8 } });
        await tick(engine, id, 1, records);
        expect([records.at(-1)!.n, records.at(-1)!.gamma]).toEqual([0, after[0]!.gamma]);
        const cp = await engine.exportState(id);
        expect(cp.space!.params).toMatchObject({ gamma0: 0.2, gammaMax: 0.3, lambda: 1, target: 0.99, localityBias: 0.8 });
      });
    });

    it('a kernel change of one simulation leaves a simulation sharing its basis alone', async () => {
      const spec = space({ ...flat, entropy: { lambda: 2, primePenalty: { enabled: false } } });
      const alone = await withEngine(kind.make, async (engine) => {
        const id = engine.add(spec);
        const records: TickRecord[] = [];
        await tick(engine, id, 40, records);
        return records;
      });
      await withEngine(kind.make, async (engine) => {
        const a = engine.add(spec);
        const b = engine.add(spec);
        const ra: TickRecord[] = [];
        const rb: TickRecord[] = [];
        const run = async (ticks: number): Promise<void> => {
          const reps = await engine.advance(ticks);
          ra.push(...reps.get(a)!.records);
          rb.push(...reps.get(b)!.records);
        };
        await run(10);
        engine.patch(b, { params: { localityBias: 0.95, semantic: true } });
        await run(30);
        expect(ra).toEqual(alone);
        expect(rb.slice(0, 10)).toEqual(alone.slice(0, 10));
        expect(rb[20]!.metrics).not.toEqual(alone[20]!.metrics);
      });
    });

    it('checkpoint continuation is bit-identical in space mode (patches, events, pending phase edits)', async () => {
      const specs = paritySpecs();
      const want = await runScript(kind.make, specs);
      for (const recs of want) expectOneRecordPerStep(recs);
      for (const cut of [0, 1, 3, 4]) {
        const got = await runScript(kind.make, specs, cut);
        expect(got).toEqual(want);
      }
    });

    it('a stored space state carries every parameter in effect; one that lacks one is refused', async () => {
      await withEngine(kind.make, async (engine) => {
        const id = engine.add(space(flat));
        engine.patch(id, { params: { lambda: 0.7 } });
        const stored = JSON.parse(JSON.stringify(encodeCheckpoint(await engine.exportState(id)))) as SimCheckpoint;
        expect(stored.space?.params.lambda).toBe(0.7);
        expect(decodeCheckpoint(stored).space?.params).toEqual(spaceParamsOf({ ...space(flat), lambda: 0.7 }));
        const { lambda: _dropped, ...partial } = stored.space!.params;
        expect(() => decodeCheckpoint({ ...stored, space: { ...stored.space!, params: partial as SpaceParams } })).toThrow(/space.params lacks lambda/);
      });
    });

    it('rejects space patches on HQE simulations and bad values', async () => {
      await withEngine(kind.make, async (engine) => {
        const hqe = engine.add(specOf(flat));
        expect(() => engine.patch(hqe, { setPhases: [[0, 1]] })).toThrow(/space-mode simulations only/);
        expect(() => engine.patch(hqe, { params: { lambda: 1 } })).toThrow(/space-mode simulations only/);
        expect(() => engine.add(space(flat, { collapseThreshold: 2 }))).toThrow(/collapseThreshold must be in \[0, 1\]/);
        expect(() => engine.add({ ...specOf(flat), mode: 'live' as never })).toThrow(/unknown mode "live"/);
        const id = engine.add(space(flat));
        expect(() => engine.patch(id, { extraSteps: 5 })).toThrow(/extraSteps does not apply/);
        expect(() => engine.patch(id, { setPhases: [[16, 1]] })).toThrow(/index must be an integer in \[0, 16\)/);
        expect(() => engine.patch(id, { shiftPhases: [[0, NaN]] })).toThrow(/radians must be finite/);
        expect(() => engine.patch(id, { params: { beta: 2 } })).toThrow(/beta must be in/);
        expect(() => engine.patch(id, { params: { dt: 1 } as never })).toThrow(/unknown parameter "dt"/);
        // nothing of a rejected patch was applied
        expect(() => engine.patch(id, { setPhases: [[0, 1]], params: { gamma0: -1 } })).toThrow(/gamma0/);
        const records: TickRecord[] = [];
        engine.patch(id, { snapshotAt: 0 });
        await tick(engine, id, 1, records);
        expect(records[0]!.phases![0]).not.toBe(kind.precision === 'f32' ? Math.fround(1) : 1);
      });
    });
  });
}

// ---- worker threads ----

describe('space mode on CPU worker threads', () => {
  it('patches (phase edits in shared memory, params and kernels re-sent) give the calling-thread records', async () => {
    const specs = paritySpecs();
    for (const loops of ['ts', 'wasm'] as const) {
      for (const precision of ['f64', 'f32'] as const) {
        const inline = await runScript(async () => new CpuEngine({ precision, threads: 0, loops }), specs);
        const workers = await runScript(async () => new CpuEngine({ precision, threads: 2, inlineWork: 0, loops }), specs);
        const resumed = await runScript(async () => new CpuEngine({ precision, threads: 2, inlineWork: 0, loops }), specs, 3);
        expect(workers).toEqual(inline);
        expect(resumed).toEqual(inline);
      }
    }
  });
});

// ---- CPU f32 vs WebGPU ----

describe('space mode parity: CPU f32 vs WebGPU', () => {
  it('identical flags and metrics within 1e-4 over a scripted sequence of patches', async () => {
    const specs = paritySpecs();
    const cpu = await runScript(async () => new CpuEngine({ precision: 'f32', threads: 0 }), specs);
    const gpuRecs = await runScript(() => gpu.engine(), specs);
    for (let s = 0; s < specs.length; s++) {
      const c = cpu[s]!;
      const g = gpuRecs[s]!;
      expect(g.length).toBe(SCRIPT_TICKS);
      expect(g.map((r) => [r.step, r.n, r.flags])).toEqual(c.map((r) => [r.step, r.n, r.flags]));
      for (let i = 0; i < c.length; i++) {
        const a = c[i]!;
        const b = g[i]!;
        for (const key of ['resonanceStrength', 'coherence', 'entropy', 'locality', 'dominance'] as const) {
          expect(Math.abs(a.metrics[key] - b.metrics[key]), `sim ${s} step ${a.step} ${key}`).toBeLessThan(1e-4);
        }
        expect(b.metrics.plateauDetected).toBe(a.metrics.plateauDetected);
        expect(Math.abs(a.gamma - b.gamma)).toBeLessThan(1e-4);
        expect(Math.abs(a.lnNu - b.lnNu)).toBeLessThan(1e-4);
      }
    }
    // the script exercises both events
    const all = cpu.flat();
    expect(all.some((r) => r.flags & Flag.PLATEAU)).toBe(true);
    expect(cpu[3]!.filter((r) => r.flags & Flag.COLLAPSE).length).toBeGreaterThanOrEqual(2);
    expect(all.some((r) => r.flags & Flag.SNAPSHOT)).toBe(true);
  });
});
