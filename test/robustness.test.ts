/**
 * Numerical robustness (docs/model.md section 9) on every engine: CPU f64 and f32, the WebAssembly dense pass
 * in f64 and f32, and WebGPU (llvmpipe on a machine without a GPU; no adapter is a failure, never a skip).
 * Each engine must give the same status and events for the same config, and no valid config may fail for
 * reasons of representation alone: narrow bands of large primes, extreme initial amplitudes, failures
 * (metrics, the norm channel, phase increments), parameters f32 cannot hold, and the bands f32 cannot
 * resolve, which run on CPU f64 whatever the server's engine.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuEngine } from '../src/engine/cpu/engine.js';
import { needsF64, RoutedEngine } from '../src/engine/routed.js';
import { createEngine } from '../src/engine/select.js';
import { type Engine, Flag, type SimReport, type TickRecord } from '../src/engine/types.js';
import { basisConstants, unresolvedBand } from '../src/model/basis.js';
import { F32_MAX, type HQEConfigInput, type NormalizedConfig } from '../src/model/config.js';
import { normalize } from '../src/model/normalize.js';
import { firstPrimes, isPrime } from '../src/model/primes.js';
import { normalizeSpace } from '../src/model/space.js';
import { type SimSpec, specFromConfig } from '../src/model/spec.js';
import { resultFromRecords, runHqe } from '../src/sim/run.js';
import { cpuCases, type EngineCase, massesOf, phaseDistance, withEngine } from './helpers/engines.js';
import { useGpuDevice } from './helpers/gpu.js';
import { runReference } from './helpers/reference.js';
import { DEV_KEY, RecordingClient, startServer, type StatusRecord, type TestServer, waitFor } from './helpers/server.js';

const gpu = useGpuDevice();

/** Every engine: the CPU cases, then WebGPU on this machine's adapter. */
const engines: EngineCase[] = [...cpuCases, { name: 'webgpu', eps: 1e-6, make: () => gpu.engine() }];
const f32Engines = engines.filter((e) => e.name.endsWith('f32') || e.name === 'webgpu');
const reference = (): Engine => new CpuEngine({ precision: 'f64', threads: 0 });

const METRIC_KEYS = ['resonanceStrength', 'coherence', 'entropy', 'locality', 'dominance'] as const;
const TWO_PI = 2 * Math.PI;

/** `k` consecutive primes from `from` on. */
function consecutive(from: number, k: number): number[] {
  const out: number[] = [];
  for (let p = from; out.length < k; p++) if (isPrime(p)) out.push(p);
  return out;
}

function normalized(input: HQEConfigInput): NormalizedConfig {
  const r = normalize(input);
  if (!r.ok) throw new Error(`bad test config: ${JSON.stringify(r.errors)}`);
  return r.normalized;
}

const specOf = (input: HQEConfigInput): SimSpec => specFromConfig(normalized(input));

/** One simulation from its start to its end (or `maxTicks`), alone on a fresh engine. */
async function runOn(make: () => Promise<Engine>, spec: SimSpec, maxTicks = 4096): Promise<{ report: SimReport; records: TickRecord[]; info: Engine['info'] }> {
  return withEngine(make, async (engine) => {
    const id = engine.add(spec);
    const records: TickRecord[] = [];
    let report: SimReport | undefined;
    for (let t = 0; t < maxTicks; t += 128) {
      report = (await engine.advance(128)).get(id)!;
      records.push(...report.records);
      if (report.status !== 'running') break;
    }
    return { report: report!, records, info: engine.infoFor(spec) };
  });
}

const events = (records: TickRecord[]): Array<[number, number]> =>
  records.filter((r) => r.flags & (Flag.PLATEAU | Flag.CONVERGED | Flag.FAILED | Flag.RESTART | Flag.TERMINAL)).map((r) => [r.step, r.flags]);


/**
 * The parity bars of docs/model.md section 7 against CPU f64: the same flags on every record, metrics
 * within 1e-4, and after one step every phase within 1e-5 rad and every mass within 1e-5 relative.
 */
function parityProblems(name: string, spec: SimSpec, want: TickRecord[], got: TickRecord[]): string[] {
  const out: string[] = [];
  if (want.length !== got.length) out.push(`${name}: ${got.length} records, CPU f64 ${want.length}`);
  for (let t = 0; t < Math.min(want.length, got.length) && out.length < 8; t++) {
    const [c, g] = [want[t]!, got[t]!];
    const at = `${name} step ${c.step}`;
    if (g.step !== c.step || g.flags !== c.flags) {
      out.push(`${at}: step/flags ${g.step}/${g.flags}, CPU f64 ${c.step}/${c.flags}`);
      continue;
    }
    for (const key of METRIC_KEYS) {
      const d = Math.abs(g.metrics[key] - c.metrics[key]);
      if (!(d <= 1e-4)) out.push(`${at}: ${key} ${g.metrics[key]}, CPU f64 ${c.metrics[key]} (|d| = ${d.toExponential(2)})`);
    }
    if (c.step === 1 && c.phases && g.phases) {
      const [pc, pg] = [massesOf(c, spec.norm), massesOf(g, spec.norm)];
      for (let i = 0; i < c.phases.length; i++) {
        const dp = phaseDistance(g.phases[i]!, c.phases[i]!);
        if (!(dp <= 1e-5)) out.push(`${at}: phase ${i} off by ${dp.toExponential(2)} rad`);
        const dm = Math.abs(pg[i]! - pc[i]!) / Math.max(pc[i]!, 1e-30);
        if (!(dm <= 1e-5)) out.push(`${at}: mass ${i} off by ${dm.toExponential(2)} relative`);
      }
    }
  }
  return out;
}

// ---- 1. narrow bands of primes: centred logs ----

/**
 * A band of consecutive primes with noise, the prime penalty and mass flow: every difference of l_i
 * matters. `learned`: the learned mixer, L1, kl_to_prior and a custom target on the norm channel.
 */
function bandConfig(primes: number[], seed: number, learned = false): HQEConfigInput {
  return {
    primes,
    initialAmplitudes: primes.map((_, i) => 1 + 0.5 * Math.sin(1.3 * i + seed)),
    phaseSeeding: { golden: true, silver: seed % 2 === 0 },
    mixer: { type: learned ? 'learned' : 'local', gamma0: 0.3, gammaGrowth: 0.01, temperature0: 0.5, beta: 0.97, learningRate: 0.5 },
    entropy: { base: learned ? 'kl_to_prior' : 'shannon', lambda: 0.5, primePenalty: { enabled: true, lambdaPrime: 0.2 } },
    ...(learned
      ? {
          boundary: { norm: 'L1' as const, enforceUnitNorm: false },
          resonanceTarget: { value: 0.9, operator: 'custom' as const, weights: primes.map((_, i) => i % 3) },
        }
      : {}),
    observables: { metricsInterval: 1, snapshotsInterval: 1 },
    schedule: { steps: 64, plateauT: 1000 },
    seed,
  };
}

const BANDS: Array<[string, number[]]> = [
  ['64 consecutive primes from 10^4', consecutive(10_000, 64)],
  ['64 consecutive primes from 2^17', consecutive(2 ** 17, 64)],
  ['64 consecutive primes ending below 10^6', consecutive(999_000, 64)],
  ['the twin primes 999959, 999961', [999_959, 999_961]],
];

describe('narrow bands of primes up to 10^6 (centred logs)', () => {
  it('are resolved in f32: no warning, nothing routed to f64', () => {
    for (const [, primes] of BANDS) {
      expect(unresolvedBand(primes, 0.1)).toBeNull();
      expect(normalize(bandConfig(primes, 1)).ok && normalize(bandConfig(primes, 1))).toMatchObject({ warnings: [] });
    }
  });

  for (const c of engines) {
    it(`${c.name} meets the parity bars against CPU f64 over 64 steps`, async () => {
      const problems: string[] = [];
      for (const [name, primes] of BANDS) {
        for (const learned of [false, true]) {
          const spec = specOf(bandConfig(primes, primes.length, learned));
          const want = await runOn(async () => reference(), spec);
          const got = await runOn(c.make, spec);
          expect(want.report.status).toBe('completed');
          expect(want.records.length).toBe(65);
          problems.push(...parityProblems(`${name}${learned ? ' (learned)' : ''}`, spec, want.records, got.records));
        }
      }
      expect(problems.slice(0, 20)).toEqual([]);
    });
  }

  it('the centred logs are l_i - (lmin + lmax)/2, formed in float64', () => {
    const primes = consecutive(999_000, 8);
    const b = basisConstants(specOf(bandConfig(primes, 1)));
    const ref = (Math.log(primes[0]!) + Math.log(primes[7]!)) / 2;
    b.logC.forEach((l, i) => expect(l).toBe(Math.log(primes[i]!) - ref));
    // symmetric about 0 to float64 rounding of l_ref (about 1e-15), far below the band's 4e-5
    expect(Math.abs(b.logC[0]! + b.logC[7]!)).toBeLessThan(1e-14);
    expect(b.logC[7]).toBeGreaterThan(4e-5);
  });
});

// ---- 2-5. failures, and what must not fail ----

/** The record a failed run ended on: FAILED | TERMINAL with a snapshot. */
function failedRecord(records: TickRecord[]): TickRecord {
  const last = records.at(-1)!;
  expect(last.flags & (Flag.FAILED | Flag.TERMINAL | Flag.SNAPSHOT)).toBe(Flag.FAILED | Flag.TERMINAL | Flag.SNAPSHOT);
  return last;
}

const small: HQEConfigInput = {
  primes: [2, 3, 5, 7, 11], phaseSeeding: { golden: true }, mixer: { temperature0: 0.2 }, entropy: { lambda: 0.3 },
  observables: { metricsInterval: 1, snapshotsInterval: 1 }, schedule: { steps: 12 }, seed: 3,
};

/** Norm channel on, a custom target whose weights are all 0: R = 0, so lnNu grows by dt*lambda = 10 a step. */
const growingNorm: HQEConfigInput = {
  primes: [2, 3, 5, 7, 11], phaseSeeding: { golden: true }, mixer: { temperature0: 0 }, entropy: { lambda: 100, primePenalty: { enabled: false } },
  boundary: { enforceUnitNorm: false }, resonanceTarget: { value: 1, operator: 'custom', weights: [0, 0, 0, 0, 0] },
  observables: { metricsInterval: 10, snapshotsInterval: 10 }, schedule: { dt: 0.1, steps: 100 }, seed: 4,
};

describe('a failed state', () => {
  for (const c of engines) {
    it(`${c.name}: non-finite masses make every metric null on the wire, not a clamped number`, async () => {
      // lambda = Infinity: no valid config has it (normalize refuses), so the spec goes to the engine. The
      // first update makes every mass NaN, on every backend.
      const spec = { ...specOf(small), lambda: Infinity };
      const { report, records, info } = await runOn(c.make, spec);
      expect([report.status, report.step]).toEqual(['failed', 1]);
      const last = failedRecord(records);
      for (const key of METRIC_KEYS) expect(last.metrics[key], key).toBeNaN();
      const wire = JSON.parse(JSON.stringify(resultFromRecords(records, normalized(small), [], info, 0))) as { finalMetrics: Record<string, unknown> };
      expect(wire.finalMetrics).toMatchObject(Object.fromEntries(METRIC_KEYS.map((k) => [k, null])));
    });
  }

  for (const c of engines) {
    it(`${c.name}: a norm channel that overflows the reported amplitudes fails, with the event`, async () => {
      // lnNu = 10 n: e^lnNu overflows float64 at step 71 (lnNu 710 > 709.78); the metrics stay finite.
      const { report, records, info } = await runOn(c.make, specOf(growingNorm));
      expect([report.status, report.step]).toEqual(['failed', 71]);
      const last = failedRecord(records);
      expect(last.lnNu).toBeCloseTo(710, 3);
      for (const key of METRIC_KEYS) expect(Number.isFinite(last.metrics[key])).toBe(true);
      for (const r of records.slice(0, -1)) expect(r.amplitudes!.every(Number.isFinite)).toBe(true);
      const result = resultFromRecords(records, normalized(growingNorm), [], info, 0);
      expect(result.events).toEqual([{ type: 'failed', step: 71, restart: 0 }]);
      expect(result.snapshots.at(-1)!.amplitudes).toContain(Infinity);
    });
  }

  for (const c of engines) {
    it(`${c.name}: a phase increment above 2^20 rad fails the state it starts from`, async () => {
      // gamma0 = 1e300 (beyond f32: the spec goes to the engine) and a valid 1e30 alike: the first step's
      // increments h*gamma*tau are astronomically large (f32: infinite). State 0 fails, its phases intact.
      expect(specOf({ ...small, mixer: { gamma0: 1e30 } }).gammaMax).toBe(1e30);
      for (const gamma0 of [1e300, 1e30]) {
        const spec = { ...specOf(small), gamma0, gammaMax: gamma0 };
        const { report, records } = await runOn(c.make, spec);
        expect([report.status, report.step], `gamma0 ${gamma0}`).toEqual(['failed', 0]);
        const last = failedRecord(records);
        expect(records.length).toBe(1);
        for (const key of METRIC_KEYS) expect(Number.isFinite(last.metrics[key])).toBe(true);
        expect(last.phases!.every((t) => t >= 0 && t < TWO_PI)).toBe(true);
        last.phases!.forEach((t, i) => expect(phaseDistance(t, basisConstants(spec).theta0[i]!)).toBeLessThan(1e-6));
      }
    });
  }

  for (const c of engines) {
    it(`${c.name}: such a step fails a completed run given extra steps, and a space, on the same state`, async () => {
      // steps 0: state 0 ends the run `completed` (it applies no step, so its increments do not matter).
      const spec = specOf({ ...small, mixer: { gamma0: 1e30, temperature0: 0 }, schedule: { steps: 0 } });
      await withEngine(c.make, async (engine) => {
        const id = engine.add(spec);
        expect((await engine.advance(3)).get(id)!.status).toBe('completed');
        engine.patch(id, { extraSteps: 5 });
        const report = (await engine.advance(3)).get(id)!;
        expect([report.status, report.step]).toEqual(['failed', 0]);
        expect(report.records.map((r) => [r.step, r.flags])).toEqual([[0, Flag.FAILED | Flag.TERMINAL | Flag.SNAPSHOT | Flag.METRICS]]);
        const space = engine.add({ ...spec, mode: 'space' });
        const rep = (await engine.advance(3)).get(space)!;
        expect([rep.status, rep.records.map((r) => [r.step, r.flags])]).toEqual(['failed', [[0, Flag.FAILED | Flag.TERMINAL | Flag.SNAPSHOT | Flag.METRICS]]]);
      });
    });
  }

  it('events are evaluated on the state after the last step: a run may end plateau there', async () => {
    // Nothing improves Ebest by plateauEps = 1: c reaches plateauT = 4 on the state after step 4, the last.
    const spec = specOf({ primes: [2, 3, 5], schedule: { steps: 4, plateauT: 4, plateauEps: 1 }, observables: { metricsInterval: 1 }, seed: 1 });
    for (const c of engines) {
      const { report, records } = await runOn(c.make, spec);
      expect([c.name, report.status, report.step]).toEqual([c.name, 'plateau', 4]);
      expect(records.at(-1)!.flags & Flag.PLATEAU).toBeTruthy();
    }
  });
});

describe('initial amplitudes of any magnitude', () => {
  const cases: Array<[string, HQEConfigInput, number[]]> = [
    ['[1e200, 1, 1, 1, 1] (L2)', { ...small, initialAmplitudes: [1e200, 1, 1, 1, 1] }, [1, 0, 0, 0, 0]],
    ['[1e200, 1, 1, 1, 1] (L1)', { ...small, initialAmplitudes: [1e200, 1, 1, 1, 1], boundary: { norm: 'L1' } }, [1, 1e-200, 1e-200, 1e-200, 1e-200]],
    ['all 1e-200', { ...small, initialAmplitudes: [1e-200, -1e-200, 1e-200, 1e-200, 1e-200] }, [0.2, 0.2, 0.2, 0.2, 0.2]],
    ['all 1e300 (L1)', { ...small, initialAmplitudes: [1e300, 1e300, 2e300, 1e300, 1e300], boundary: { norm: 'L1' } }, [1 / 6, 1 / 6, 1 / 3, 1 / 6, 1 / 6]],
  ];

  it('are valid, and the initial mass is formed after scaling by the largest', () => {
    for (const [name, input, mass] of cases) {
      const b = basisConstants(specOf(input));
      b.mass0.forEach((m, i) => expect(m, `${name} mass ${i}`).toBeCloseTo(mass[i]!, 14));
    }
  });

  for (const c of engines) {
    it(`${c.name} runs them`, async () => {
      for (const [name, input, mass] of cases) {
        const { report, records } = await runOn(c.make, specOf(input));
        expect([name, report.status]).toEqual([name, 'completed']);
        const first = records[0]!;
        for (const key of METRIC_KEYS) expect(Number.isFinite(first.metrics[key]), `${name}: ${key}`).toBe(true);
        massesOf(first, input.boundary?.norm ?? 'L2').forEach((m, i) => expect(Math.abs(m - mass[i]!), `${name} mass ${i}`).toBeLessThan(1e-6));
      }
    });
  }
});

describe('the independent float64 reference (test/reference/hqe_reference.py) follows section 9 too', () => {
  const cases: Array<[string, HQEConfigInput, string, number]> = [
    ['a norm channel that overflows', growingNorm, 'failed', 71],
    ['a phase increment above 2^20 rad', { ...small, mixer: { gamma0: 1e30, temperature0: 0.2 } }, 'failed', 0],
    ['amplitudes [1e200, 1, ...]', { ...small, initialAmplitudes: [1e200, 1, 1, 1, 1] }, 'completed', 12],
    ['amplitudes all 1e-200', { ...small, initialAmplitudes: [1e-200, 1e-200, 1e-200, 1e-200, 1e-200] }, 'completed', 12],
    ['a narrow band below 10^6', bandConfig(consecutive(999_000, 16), 3), 'completed', 64],
  ];
  for (const [name, input, status, step] of cases) {
    it(`on ${name}, record for record with CPU f64`, async () => {
      const ref = runReference(normalized(input));
      expect([ref.status, ref.step]).toEqual([status, step]);
      const { records } = await runOn(async () => reference(), specOf(input));
      expect(records.map((r) => [r.step, r.flags])).toEqual(ref.records.map((r) => [r.step, r.flags]));
      records.forEach((r, t) => {
        for (const key of METRIC_KEYS) expect(Math.abs(r.metrics[key] - (ref.records[t]!.metrics[key] as number)), `${name} step ${r.step} ${key}`).toBeLessThan(1e-7);
      });
    });
  }
});

// ---- 6. parameters f32 cannot hold ----

describe('parameters f32 cannot hold are refused', () => {
  const errorsOf = (input: unknown): Array<{ pointer: string; code: string }> => {
    const r = normalize(input);
    expect(r.ok).toBe(false);
    return r.ok ? [] : r.errors.map(({ pointer, code }) => ({ pointer, code }));
  };

  it('above the f32 range or nonzero below its normal range, at the failing field', () => {
    const base = { primes: [2, 3, 5] };
    expect(errorsOf({ ...base, entropy: { lambda: 1e39 } })).toEqual([{ pointer: '/entropy/lambda', code: 'too_big' }]);
    expect(errorsOf({ ...base, mixer: { gamma0: 1e39 } })).toEqual([{ pointer: '/mixer/gamma0', code: 'too_big' }]);
    expect(errorsOf({ ...base, mixer: { temperature0: 1e-40 } })).toEqual([{ pointer: '/mixer/temperature0', code: 'not_f32' }]);
    expect(errorsOf({ ...base, mixer: { gamma0: 5e-39, gammaMax: 1e-45 } })).toEqual([
      { pointer: '/mixer/gamma0', code: 'not_f32' },
      { pointer: '/mixer/gammaMax', code: 'not_f32' },
    ]);
    expect(errorsOf({ ...base, schedule: { dt: 1e-39 } })).toEqual([{ pointer: '/schedule/dt', code: 'not_f32' }]);
    expect(errorsOf({ ...base, entropy: { primePenalty: { lambdaPrime: 1e-300 } } })).toEqual([{ pointer: '/entropy/primePenalty/lambdaPrime', code: 'not_f32' }]);
    expect(errorsOf({ ...base, resonanceTarget: { value: 0.5, operator: 'custom', weights: [1, 1e39, 1e-40] } })).toEqual([
      { pointer: '/resonanceTarget/weights/1', code: 'too_big' },
      { pointer: '/resonanceTarget/weights/2', code: 'not_f32' },
    ]);
    // The rates of one step: dt * lambda above half the f32 range, or a learned matrix that diverges.
    expect(errorsOf({ ...base, entropy: { lambda: 1e38 }, schedule: { dt: 10 } })).toEqual([{ pointer: '/entropy/lambda', code: 'not_f32' }]);
    expect(errorsOf({ ...base, mixer: { type: 'learned', learningRate: 30 } })).toEqual([{ pointer: '/mixer/learningRate', code: 'diverges' }]);
    // dt * lambdaPrime / Vmax on a narrow band (Vmax 1.2e-15): 8e38 overflows f32, though lambdaPrime does not.
    const penalty = { primes: [999_999_937, 1_000_000_007], entropy: { primePenalty: { lambdaPrime: 1e25 } } };
    expect(errorsOf(penalty)).toEqual([{ pointer: '/entropy/primePenalty/lambdaPrime', code: 'not_f32' }]);
    expect(normalize({ ...penalty, entropy: { primePenalty: { lambdaPrime: 1e23 } } })).toMatchObject({ ok: true });
    // At the ends of the range, and 0 and the amplitudes (host float64 only), all valid.
    for (const ok of [
      { ...base, entropy: { lambda: F32_MAX / 10 }, mixer: { gamma0: F32_MAX, temperature0: 2 ** -126 } },
      { ...base, mixer: { gammaGrowth: 0, temperature0: 0 }, resonanceTarget: { value: 0.5, operator: 'custom', weights: [0, F32_MAX, 2 ** -126] } },
      { ...base, initialAmplitudes: [1e-300, 1e300, -1e-320], phaseSeeding: { customPhases: [1e-320, 1e300] } },
    ]) expect(normalize(ok), JSON.stringify(ok)).toMatchObject({ ok: true });
  });

  it('in a space config too', () => {
    const r = normalizeSpace({ name: 'x', basis: { primes: [2, 3] }, operators: { mixer: { gamma0: 1e-39 } }, entropy: { lambda: 1e40 } });
    expect(r.ok ? [] : r.errors.map(({ pointer, code }) => ({ pointer, code }))).toEqual([
      { pointer: '/operators/mixer/gamma0', code: 'not_f32' },
      { pointer: '/entropy/lambda', code: 'too_big' },
    ]);
  });
});

// ---- 7. bands f32 cannot resolve: a warning, and CPU f64 ----

const NEAR_1E9 = consecutive(1_000_000_000, 16);
/** The six largest primes below 2^31 (the largest is 2^31 - 1); the closest two are 8 apart. */
const NEAR_2_31 = [2147483549, 2147483563, 2147483579, 2147483587, 2147483629, 2147483647];

describe('bands f32 cannot resolve', () => {
  it('are named by a validation warning: consecutive primes near 10^9 and 2^31 - 1, not below 10^6', () => {
    expect(NEAR_2_31.every(isPrime) && consecutive(2147483549, 6)).toEqual(NEAR_2_31);
    for (const primes of [NEAR_1E9, NEAR_2_31, [999_999_937, 1_000_000_007]]) {
      expect(needsF64({ primes, frequencyScale: 0.1 })).toBe(true);
      const r = normalize({ primes });
      expect(r.ok && r.warnings.some((w) => /f32 cannot resolve this band/.test(w) && /runs on the CPU engine in f64/.test(w))).toBe(true);
    }
    // s = 0: no frequency differences to resolve; a wide basis with a large prime; the bands above 10^6.
    expect(needsF64({ primes: NEAR_1E9, frequencyScale: 0 })).toBe(false);
    expect(needsF64({ primes: [2, 3, 2147483647], frequencyScale: 0.1 })).toBe(false);
    for (const [, primes] of BANDS) expect(needsF64({ primes, frequencyScale: 0.1 })).toBe(false);
    const space = normalizeSpace({ name: 's', basis: { primes: NEAR_1E9 } });
    expect(space.ok && space.warnings.some((w) => /f32 cannot resolve this band/.test(w))).toBe(true);
  });

  const narrow: HQEConfigInput = {
    primes: NEAR_1E9, phaseSeeding: { golden: true }, mixer: { temperature0: 0.3 }, observables: { metricsInterval: 1, snapshotsInterval: 8 },
    schedule: { steps: 40 }, seed: 21,
  };
  const wide: HQEConfigInput = { ...narrow, primes: firstPrimes(16) };

  it('run on CPU f64 behind an f32 engine (CPU f32 and WebGPU), which runs the others, and say so', async () => {
    const want = await runOn(async () => reference(), specOf(narrow));
    const makers: Array<[string, () => Promise<Engine>]> = [
      ['cpu f32', () => createEngine({ backend: 'cpu', precision: 'f32', threads: 0, loops: 'ts' })],
      ['webgpu', async () => new RoutedEngine(await gpu.engine(), () => new CpuEngine({ precision: 'f64', threads: 0 }))],
    ];
    for (const [name, make] of makers) {
      await withEngine(make, async (engine) => {
        expect(engine.info.precision, name).toBe('f32');
        const a = await runHqe(narrow, { engine });
        expect([name, a.backend, a.precision, a.adapter]).toEqual([name, 'cpu', 'f64', expect.stringMatching(/^cpu f64/)]);
        expect(a.warnings.some((w) => /f32 cannot resolve/.test(w))).toBe(true);
        const b = await runHqe(wide, { engine });
        expect([name, b.backend, b.precision]).toEqual([name, engine.info.backend, 'f32']);
        // The narrow run is CPU f64's, bit for bit, also when both are resident together.
        expect(a.snapshots.map((s) => s.phases ?? s.amplitudes)).toEqual(
          want.records.filter((r) => r.flags & Flag.SNAPSHOT).map((r) => Array.from(r.amplitudes!)),
        );
        const ids = [engine.add(specOf(narrow)), engine.add(specOf(wide))];
        expect(engine.infoFor(specOf(narrow)).precision).toBe('f64');
        const reports = await engine.advance(64);
        expect(reports.get(ids[0]!)!.records).toEqual(want.records);
        expect(reports.get(ids[1]!)!.status).toBe('completed');
        const cp = await engine.exportState(ids[0]!);
        expect([cp.backend, cp.precision]).toEqual(['cpu', 'f64']);
        // A space on such a band too; patches reach it through the router.
        const spaceSpec: SimSpec = { ...specOf(narrow), mode: 'space', target: { value: 0.8, operator: 'R' } };
        expect(engine.infoFor(spaceSpec).precision).toBe('f64');
        const space = engine.add(spaceSpec);
        engine.patch(space, { setPhases: [[0, 1.25]] });
        const spaceCp = await engine.exportState(space);
        expect([spaceCp.precision, spaceCp.phases[0]]).toEqual(['f64', 1.25]);
        expect((await engine.advance(2)).get(space)!.records.map((r) => r.step)).toEqual([0, 1]);
      });
    }
  });

  it('and the f32 engine alone would not follow them (the reason for the rule)', async () => {
    // Free rotation: the phase differences drift by h s ln(q/p) ~ 1e-9 a step, less than f32 rounds them.
    const free: HQEConfigInput = {
      ...narrow, mixer: { gamma0: 0, gammaGrowth: 0, temperature0: 0 }, entropy: { lambda: 0, primePenalty: { enabled: false } },
      schedule: { steps: 4000, plateauT: 1_000_000_000 }, observables: { metricsInterval: 4000, snapshotsInterval: 4000 },
    };
    const spec = specOf(free);
    const exact = (await runOn(async () => reference(), spec)).records.at(-1)!;
    const f32 = (await runOn(async () => new CpuEngine({ precision: 'f32', threads: 0 }), spec)).records.at(-1)!;
    const b = basisConstants(spec);
    // CPU f64 follows the closed form theta_i(n) = sigma_i - n h w_i of the differences ...
    const diff = (phases: Float64Array, i: number): number => phaseDistance(phases[i]! - phases[0]!, -4000 * 0.1 * (b.omega[i]! - b.omega[0]!) + b.theta0[i]! - b.theta0[0]!);
    for (let i = 1; i < 16; i++) expect(diff(exact.phases!, i)).toBeLessThan(1e-9);
    // ... which f32 loses: its differences are off by more than the drift itself.
    expect(Math.max(...Array.from({ length: 15 }, (_, i) => diff(f32.phases!, i + 1)))).toBeGreaterThan(1e-6);
  });
});

// ---- the HTTP API: 400, the validate warning, and the engine reported ----

describe('over HTTP, on a WebGPU server', () => {
  let srv: TestServer;
  const log: StatusRecord[] = [];
  let api: RecordingClient;
  beforeAll(async () => {
    srv = await startServer({ backend: 'webgpu', env: { RESONANCE_RATE_LIMIT: '1000000' } });
    api = new RecordingClient(srv.url, { 'X-Api-Key': DEV_KEY }, log);
  });
  afterAll(async () => {
    await srv?.stop();
    expect(log.filter((r) => r.status >= 500)).toEqual([]);
  });

  const narrow = { primes: NEAR_2_31, schedule: { steps: 30 }, seed: 5 };
  const wide = { primes: [2, 3, 5, 7], schedule: { steps: 30 }, seed: 5 };

  it('a parameter f32 cannot hold is a 400 problem naming the field', async () => {
    for (const path of ['/v1/hqe/validate', '/v1/hqe/run', '/v1/hqe/sessions']) {
      const r = await api.request('POST', path, { body: { ...wide, mixer: { gamma0: 1e-40 }, entropy: { lambda: 1e39 } } });
      expect(r.status, r.text).toBe(400);
      expect(r.json).toMatchObject({
        code: 'validation_failed',
        errors: [
          { pointer: '/mixer/gamma0', code: 'not_f32' },
          { pointer: '/entropy/lambda', code: 'too_big' },
        ],
      });
    }
  });

  it('validate warns of a band f32 cannot resolve; run and sessions run it on CPU f64 and say so', async () => {
    const v = await api.request('POST', '/v1/hqe/validate', { body: narrow });
    expect(v.status, v.text).toBe(200);
    expect((v.json as { warnings: string[] }).warnings).toEqual([expect.stringMatching(/^f32 cannot resolve this band of primes: the frequencies of 2147483579 and 2147483587 differ/)]);
    const w = await api.request('POST', '/v1/hqe/validate', { body: wide });
    expect((w.json as { warnings: string[] }).warnings).toEqual([]);

    const run = await api.request('POST', '/v1/hqe/run', { body: narrow });
    expect(run.status, run.text).toBe(200);
    expect(run.json).toMatchObject({ status: 'completed', backend: 'cpu', precision: 'f64', adapter: expect.stringMatching(/^cpu f64/) });
    const other = await api.request('POST', '/v1/hqe/run', { body: wide });
    expect(other.json).toMatchObject({ backend: 'webgpu', precision: 'f32' });

    const created = await api.request('POST', '/v1/hqe/sessions', { body: narrow });
    expect(created.status, created.text).toBe(201);
    expect(created.json).toMatchObject({ backend: 'cpu', precision: 'f64' });
    const id = (created.json as { id: string }).id;
    const ended = await waitFor('the session to complete', async () => {
      const s = await api.request('GET', `/v1/hqe/sessions/${id}`);
      return (s.json as { status: string }).status === 'completed' ? (s.json as Record<string, unknown>) : undefined;
    }, 30_000);
    expect(ended).toMatchObject({ backend: 'cpu', precision: 'f64', step: 30 });
    expect((run.json as { finalMetrics: unknown }).finalMetrics).toEqual(ended.metrics);
  });
});
