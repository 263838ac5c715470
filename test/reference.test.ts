/**
 * The CPU engine (f64) against an independent Python implementation of docs/model.md, record by record:
 * the HQE example and configs that exercise every branch (mixers, norms, bases, operators,
 * restarts, noise, the norm channel).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CpuEngine } from '../src/engine/cpu/engine.js';
import { Flag } from '../src/engine/types.js';
import { normalize } from '../src/model/normalize.js';
import { runHqe } from '../src/sim/run.js';
import type { HQEConfigInput, NormalizedConfig } from '../src/model/config.js';
import { specFromConfig } from '../src/model/spec.js';
import { runReference } from './helpers/reference.js';

/** examples/hqe.json: the HQE example of the README and the API reference. */
const HQE_EXAMPLE = JSON.parse(readFileSync(new URL('../examples/hqe.json', import.meta.url), 'utf8')) as HQEConfigInput;

function norm(input: HQEConfigInput): NormalizedConfig {
  const r = normalize(input);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.normalized;
}

const METRIC_KEYS = ['resonanceStrength', 'coherence', 'entropy', 'locality', 'dominance'] as const;

async function compare(input: HQEConfigInput, tol = 1e-7): Promise<void> {
  const cfg = norm(input);
  const ref = runReference(cfg);
  const engine = new CpuEngine({ precision: 'f64', threads: 0 });
  const id = engine.add(specFromConfig(cfg));
  const records = [];
  for (;;) {
    const report = (await engine.advance(64)).get(id)!;
    records.push(...report.records);
    if (report.status !== 'running') {
      expect(report.status).toBe(ref.status);
      break;
    }
  }
  await engine.destroy();
  expect(records.map((r) => [r.step, r.restart, r.n, r.flags])).toEqual(ref.records.map((r) => [r.step, r.restart, r.n, r.flags]));
  records.forEach((r, idx) => {
    const expected = ref.records[idx]!;
    for (const key of METRIC_KEYS) expect(r.metrics[key]).toBeCloseTo(expected.metrics[key] as number, -Math.log10(tol));
    expect(r.metrics.plateauDetected).toBe(expected.metrics.plateauDetected);
    expect(r.gamma).toBeCloseTo(expected.gamma, 9);
    expect(r.lnNu).toBeCloseTo(expected.lnNu, 7);
    if (r.flags & Flag.SNAPSHOT) {
      r.amplitudes!.forEach((a, i) => expect(a).toBeCloseTo(expected.amplitudes![i]!, 6));
    }
  });
}

describe('CPU engine agrees with the independent reference', () => {
  it('on the HQE example, through runHqe', async () => {
    const ref = runReference(norm(HQE_EXAMPLE));
    const result = await runHqe(HQE_EXAMPLE, { backend: 'cpu', threads: 0 });
    expect(result.status).toBe(ref.status);
    expect(result.steps).toBe(ref.step);
    for (const key of METRIC_KEYS) expect(result.finalMetrics[key]).toBeCloseTo(ref.finalMetrics[key] as number, 7);
    expect(result.seed).toBe(42);
    expect(result.backend).toBe('cpu');
    await compare(HQE_EXAMPLE);
  });

  const cases: Array<[string, HQEConfigInput]> = [
    ['learned mixer, L1, kl_to_prior, R_q target, free norm', {
      primes: [3, 5, 7, 11, 13, 17, 19], initialAmplitudes: [1, 2, -1, 0.5, 3, 1, 1],
      mixer: { type: 'learned', temperature0: 0.5, gamma0: 0.4 }, boundary: { norm: 'L1', enforceUnitNorm: false, projectorSweeps: 2 },
      entropy: { base: 'kl_to_prior', lambda: 0.2 }, resonanceTarget: { value: 0.9, operator: 'R_q' },
      schedule: { steps: 120 }, observables: { snapshotsInterval: 7, metricsInterval: 3 }, seed: 7,
    }],
    ['flow mixer, custom operator, restarts on plateau', {
      primes: [2, 3, 5, 7, 11], mixer: { type: 'flow', gamma0: 0.05, gammaGrowth: 0.01, temperature0: 0.2 },
      resonanceTarget: { value: 1, operator: 'custom', weights: [1, 0, 2, 1, 0.5] },
      entropy: { lambda: 0, primePenalty: { enabled: false } }, schedule: { steps: 200, plateauT: 12, restarts: 2 }, seed: 99,
    }],
    ['local mixer, no target, restarts when steps run out, golden scaffold', {
      primes: [29, 2, 23, 3, 19, 5, 17, 7, 13, 11], phaseSeeding: { golden: true, customPhases: [0.1, 0.2] },
      schedule: { steps: 40, restarts: 2 }, observables: { snapshotsInterval: 5 }, seed: 4242,
    }],
  ];
  for (const [name, input] of cases) it(name, () => compare(input));
});
