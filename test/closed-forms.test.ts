/** docs/model.md section 8: closed forms, on the CPU engine (f64, f32) and the WebGPU engine (llvmpipe in CI). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basisConstants } from '../src/model/basis.js';
import { Flag, type Engine } from '../src/engine/types.js';
import type { HQEConfigInput } from '../src/model/config.js';
import { cpuCases, type EngineCase, makeWebGpu, runToEnd, specOf } from './helpers/engines.js';

const TWO_PI = 2 * Math.PI;
/** Distance of two angles on the circle. */
const angleGap = (a: number, b: number): number => {
  const d = Math.abs(a - b) % TWO_PI;
  return Math.min(d, TWO_PI - d);
};

const still = { gamma0: 0, gammaGrowth: 0, temperature0: 0 };
const noMassFlow = { lambda: 0, primePenalty: { enabled: false } };

function closedForms(c: EngineCase, engine: () => Engine): void {
  it('free rotation: theta_i(n) = sigma_i - n h w_i, masses constant', async () => {
    const input: HQEConfigInput = {
      primes: [2, 3, 5, 7, 11, 13, 17, 19, 23], initialAmplitudes: [1, -2, 0.5, 1, 1, 3, 1, 1, 0.25],
      phaseSeeding: { golden: true, silver: true, customPhases: [0.3] }, mixer: still, entropy: noMassFlow,
      schedule: { dt: 0.05, steps: 200, plateauT: 1e6 }, observables: { snapshotsInterval: 50, recordPhases: true }, seed: 3,
    };
    const spec = specOf(input);
    const basis = basisConstants(spec);
    const { report, records } = await runToEnd(engine(), spec);
    expect(report.status).toBe('completed');
    const snaps = records.filter((r) => r.flags & Flag.SNAPSHOT);
    expect(snaps.map((r) => r.step)).toEqual([0, 50, 100, 150, 200]);
    for (const snap of snaps) {
      snap.phases!.forEach((theta, i) => {
        const expected = basis.theta0[i]! - snap.step * spec.dt * basis.omega[i]!;
        expect(angleGap(theta, expected)).toBeLessThan(c.eps * (10 + 4 * snap.step));
      });
      snap.amplitudes!.forEach((a, i) => expect(Math.abs(a * a - basis.mass0[i]!)).toBeLessThan(c.eps * 10));
    }
  });

  it('two primes, flow mixer: phase difference obeys the map and locks at sin D* = s ln(p2/p1) / 2 gamma', async () => {
    const gamma = 0.05;
    const s = 0.1;
    const spec = specOf({
      primes: [2, 3], frequencyScale: s, mixer: { type: 'flow', gamma0: gamma, gammaGrowth: 0, temperature0: 0 },
      entropy: noMassFlow, schedule: { dt: 0.1, steps: 3000, plateauT: 1e6 },
      observables: { snapshotsInterval: 1, metricsInterval: 1000, recordPhases: true }, seed: 11,
    });
    const { records } = await runToEnd(engine(), spec);
    const snaps = records.filter((r) => r.flags & Flag.SNAPSHOT);
    const diff = (i: number): number => {
      const p = snaps[i]!.phases!;
      const d = (p[0]! - p[1]!) % TWO_PI;
      return d > Math.PI ? d - TWO_PI : d <= -Math.PI ? d + TWO_PI : d;
    };
    const drive = s * Math.log(3 / 2);
    for (const n of [0, 1, 2, 10, 100]) {
      const predicted = diff(n) + spec.dt * (drive - 2 * gamma * Math.sin(diff(n)));
      expect(angleGap(diff(n + 1), predicted)).toBeLessThan(c.eps * 20);
    }
    const lockD = Math.asin(drive / (2 * gamma));
    const last = snaps[snaps.length - 1]!;
    expect(last.step).toBe(3000);
    expect(angleGap(diff(snaps.length - 1), lockD)).toBeLessThan(1e-6 + c.eps * 100);
    expect(last.metrics.resonanceStrength).toBeCloseTo(Math.cos(lockD / 2), 5);
  });

  it('lambda = 0 without prime penalty: the masses never change, whatever the phases do', async () => {
    const spec = specOf({
      primes: [2, 3, 5, 7, 11, 13, 17], initialAmplitudes: [5, 1, 2, 0.1, 1, 3, 1],
      mixer: { type: 'learned', gamma0: 0.5, gammaGrowth: 0.01, temperature0: 0.8 }, entropy: noMassFlow,
      schedule: { steps: 150, plateauT: 1e6 }, observables: { snapshotsInterval: 30 }, seed: 8,
    });
    const basis = basisConstants(spec);
    const { records } = await runToEnd(engine(), spec);
    const snaps = records.filter((r) => r.flags & Flag.SNAPSHOT);
    expect(snaps).toHaveLength(6);
    for (const snap of snaps) {
      snap.amplitudes!.forEach((a, i) => expect(Math.abs(a * a / basis.mass0[i]! - 1)).toBeLessThan(c.eps * 40));
    }
  });
}

for (const c of cpuCases) {
  describe(`closed forms on ${c.name}`, () => {
    let engine: Engine;
    beforeAll(async () => {
      engine = await c.make();
    });
    afterAll(() => engine.destroy());
    closedForms(c, () => engine);
  });
}

describe('closed forms on webgpu', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await makeWebGpu();
  });
  afterAll(() => engine?.destroy());
  closedForms({ name: 'webgpu', eps: 1e-6, make: makeWebGpu }, () => engine);
});
