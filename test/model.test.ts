import { describe, expect, it } from 'vitest';
import { pcg4d, uniform } from '../src/model/rng.js';
import { firstPrimes, isPrime } from '../src/model/primes.js';
import { normalize, type FieldError } from '../src/model/normalize.js';
import { basisConstants, kernelMatrix, scaffoldPhases, GOLDEN_ANGLE, SILVER_ANGLE } from '../src/model/basis.js';
import { specFromConfig } from '../src/model/spec.js';

describe('pcg4d (MODEL.md section 4 test vectors)', () => {
  const vectors: Array<[[number, number, number, number], [number, number, number, number], number]> = [
    [[0, 0, 0, 0], [0x0f02f829, 0x2d568769, 0x32b0c43b, 0xd32548ea], 0.058639079332351685],
    [[42, 0, 7, 3], [0xf5869ae5, 0x060a962b, 0x4c869276, 0xd70d1840], 0.9590851366519928],
    [[4294967295, 1, 100, 2047], [0x2204d036, 0x61d156fc, 0x3e19f4eb, 0x90a2c79f], 0.13288596272468567],
  ];
  for (const [input, out, u] of vectors) {
    it(`pcg4d(${input.join(', ')})`, () => {
      expect(pcg4d(...input)).toEqual(out);
      expect(uniform(...input)).toBe(u);
    });
  }
});

describe('primes', () => {
  it('classifies small and large integers', () => {
    expect([2, 3, 5, 7, 11, 13].every(isPrime)).toBe(true);
    expect([0, 1, 4, 9, 15, 21, 25, 49, 91].some(isPrime)).toBe(false);
    expect(isPrime(2 ** 31 - 1)).toBe(true);
    expect(isPrime(2147483647 - 2)).toBe(false); // 2147483645 = 5 * 429496729
    expect(isPrime(65537)).toBe(true);
    expect(isPrime(65521 * 32749)).toBe(false); // product of two primes near the trial-division bound
  });
  it('lists the first primes', () => {
    expect(firstPrimes(10)).toEqual([2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
    expect(firstPrimes(2048).at(-1)).toBe(17863);
  });
});

function errorsOf(input: unknown, maxBasis?: number): FieldError[] {
  const r = normalize(input, { maxBasis });
  if (r.ok) throw new Error('expected errors');
  return r.errors;
}

describe('normalize', () => {
  it('fills defaults, sorts the basis with its per-prime arrays and reports the warning', () => {
    const r = normalize({ primes: [7, 2, 5], initialAmplitudes: [3, 1], phaseSeeding: { customPhases: [0.7, 0.2, 0.5] }, seed: 5 });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.normalized.primes).toEqual([2, 5, 7]);
    expect(r.normalized.initialAmplitudes).toEqual([1, 1, 3]);
    expect(r.normalized.phaseSeeding.customPhases).toEqual([0.2, 0.5, 0.7]);
    expect(r.normalized.mixer).toMatchObject({ type: 'local', gamma0: 0.2, gammaMax: 1, localityBias: 0.3, learningRate: 0.05 });
    expect(r.normalized.schedule).toEqual({ dt: 0.1, steps: 256, restarts: 0, plateauEps: 1e-6, plateauT: 150 });
    expect(r.normalized.frequencyScale).toBe(0.1);
    expect(r.warnings.join()).toMatch(/sorted/);
    // normalizing a normalized config changes nothing
    const again = normalize(r.normalized);
    expect(again.ok && again.normalized).toEqual(r.normalized);
  });

  it('draws a u32 seed when none is given', () => {
    const r = normalize({ primes: [2, 3] });
    expect(r.ok && Number.isInteger(r.normalized.seed) && r.normalized.seed >= 0 && r.normalized.seed <= 0xffffffff).toBe(true);
  });

  it('lists every composite and duplicate by pointer', () => {
    const errors = errorsOf({ primes: [2, 4, 3, 9, 3, 2] });
    const pointers = errors.map((e) => `${e.pointer}:${e.code}`);
    expect(pointers).toEqual(expect.arrayContaining(['/primes/1:not_prime', '/primes/3:not_prime', '/primes/4:duplicate_prime', '/primes/5:duplicate_prime']));
    expect(errors.find((e) => e.pointer === '/primes' && e.code === 'not_prime')?.values).toEqual([4, 9]);
    expect(errors.find((e) => e.pointer === '/primes' && e.code === 'duplicate_prime')?.values).toEqual([3, 2]);
  });

  it('reports schema errors together with basis errors', () => {
    const errors = errorsOf({ primes: [2, 4], schedule: { dt: -1 }, mixer: { type: 'warp' }, seed: 2 ** 32, bogus: 1 });
    const pointers = errors.map((e) => e.pointer);
    expect(pointers).toEqual(expect.arrayContaining(['/primes/1', '/schedule/dt', '/mixer/type', '/seed', '/bogus']));
    expect(errors.find((e) => e.pointer === '/bogus')?.code).toBe('unknown_field');
  });

  it('rejects lengths, all-zero amplitudes, missing custom weights and k above maxBasis', () => {
    expect(errorsOf({ primes: [2, 3], initialAmplitudes: [1, 2, 3] })[0]?.pointer).toBe('/initialAmplitudes');
    expect(errorsOf({ primes: [2, 3], initialAmplitudes: [0, 0] })[0]?.code).toBe('all_zero');
    expect(errorsOf({ primes: [2, 3], phaseSeeding: { customPhases: [1, 2, 3] } })[0]?.pointer).toBe('/phaseSeeding/customPhases');
    expect(errorsOf({ primes: [2, 3], resonanceTarget: { value: 0.5, operator: 'custom' } })[0]?.pointer).toBe('/resonanceTarget/weights');
    expect(errorsOf({ primes: [2, 3], resonanceTarget: { value: 0.5, operator: 'custom', weights: [1] } })[0]?.code).toBe('wrong_length');
    expect(errorsOf({ primes: [2, 3, 5] }, 2)[0]).toMatchObject({ pointer: '/primes', code: 'basis_too_large' });
    expect(errorsOf({ primes: [2, 3], resonanceTarget: { value: 1.5 } })[0]?.pointer).toBe('/resonanceTarget/value');
    expect(errorsOf({ primes: [] })[0]?.pointer).toBe('/primes');
    expect(errorsOf({ primes: [2, 3.5] })[0]?.pointer).toBe('/primes/1');
  });
});

describe('host constants', () => {
  it('scaffold phases are angle multiples mod 2pi', () => {
    const phases = scaffoldPhases({ primes: [2, 3, 5], golden: true, silver: true, customPhases: [0, 0, 1] });
    const expected = [0, GOLDEN_ANGLE + SILVER_ANGLE, 2 * GOLDEN_ANGLE + 2 * SILVER_ANGLE + 1].map((x) => x % (2 * Math.PI));
    phases.forEach((p, i) => expect(p).toBeCloseTo(expected[i]!, 12));
  });

  it('normalises the kernel by its largest row sum (half of it for learned), with a zero diagonal', () => {
    const r = normalize({ primes: [2, 3, 5, 7, 11], seed: 1 });
    if (!r.ok) throw new Error();
    const spec = specFromConfig(r.normalized);
    const basis = basisConstants(spec);
    const K = kernelMatrix(spec, basis);
    const rows = [0, 1, 2, 3, 4].map((i) => K.slice(i * 5, i * 5 + 5).reduce((a, b) => a + b, 0));
    expect(Math.max(...rows)).toBeCloseTo(1, 14);
    for (let i = 0; i < 5; i++) expect(K[i * 5 + i]).toBe(0);
    expect(K[1]).toBeCloseTo(K[5]!, 14); // symmetric
    const learned = kernelMatrix({ ...spec, mixer: 'learned' }, basisConstants({ ...spec, mixer: 'learned' }));
    expect(learned[1]).toBeCloseTo(K[1]! / 2, 14);
    const single = basisConstants({ ...spec, primes: [7] });
    expect(single.kernelScale).toBe(0);
    expect(single.vmax).toBe(1);
  });

  it('initial mass follows the norm and negative amplitudes flip the phase', () => {
    const r = normalize({ primes: [2, 3], initialAmplitudes: [-1, 2], boundary: { norm: 'L2' }, seed: 1 });
    if (!r.ok) throw new Error();
    const b = basisConstants(specFromConfig(r.normalized));
    expect([...b.mass0]).toEqual([0.2, 0.8]);
    expect(b.theta0[0]).toBeCloseTo(Math.PI, 14);
    const l1 = basisConstants({ ...specFromConfig(r.normalized), norm: 'L1' });
    expect(l1.mass0[0]).toBeCloseTo(1 / 3, 14);
  });
});
