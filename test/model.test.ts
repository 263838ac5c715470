import { describe, expect, it } from 'vitest';
import { pcg4d, uniform } from '../src/model/rng.js';
import { firstPrimes, isPrime, isStrongProbablePrime } from '../src/model/primes.js';
import { basisErrors, capFieldErrors, MAX_FIELD_ERRORS, normalize, zodErrors, type FieldError } from '../src/model/normalize.js';
import { HQEConfig } from '../src/model/config.js';
import { normalizeSpace, SpaceConfig } from '../src/model/space.js';
import { basisConstants, kernelMatrix, scaffoldPhases, GOLDEN_ANGLE, SILVER_ANGLE } from '../src/model/basis.js';
import { specFromConfig } from '../src/model/spec.js';

describe('pcg4d (docs/model.md section 4 test vectors)', () => {
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
  it('uniform draws the first word of pcg4d over many counters (the engines draw it without the other three)', () => {
    for (let i = 0; i < 2000; i++) {
      const input: [number, number, number, number] = [(i * 2654435761) >>> 0, i % 7, (i * 40503) >>> 0, i];
      expect(uniform(...input)).toBe(((pcg4d(...input)[0] >>> 8) + 0.5) * 2 ** -24);
    }
  });
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

  // The references: trial division (every odd divisor up to the square root) and the strong test in BigInt.
  const byTrialDivision = (n: number): boolean => {
    if (n < 2) return false;
    if (n % 2 === 0) return n === 2;
    for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
    return true;
  };
  const strongByBigInt = (n: number, base: number): boolean => {
    const N = BigInt(n);
    let d = N - 1n;
    let s = 0;
    while ((d & 1n) === 0n) {
      d >>= 1n;
      s++;
    }
    let x = 1n;
    for (let b = BigInt(base) % N, e = d; e > 0n; e >>= 1n, b = (b * b) % N) if (e & 1n) x = (x * b) % N;
    if (x === 1n || x === N - 1n) return true;
    for (let r = 1; r < s; r++) if ((x = (x * x) % N) === N - 1n) return true;
    return false;
  };
  let seed = 2463534242;
  const randomU32 = (): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };

  it('agrees with trial division below 200 000, near 2^31 and 2^32, and on 100 000 random 32-bit integers', () => {
    const disagree: number[] = [];
    const check = (n: number): void => {
      if (isPrime(n) !== byTrialDivision(n)) disagree.push(n);
    };
    for (let n = 0; n < 200_000; n++) check(n);
    for (let n = 2 ** 31 - 30_000; n < 2 ** 31 + 30_000; n++) check(n);
    // Around the end of the fast path (0xffff0000) and of 32 bits, where BigInt takes over.
    for (let n = 0xffff0000 - 10_000; n < 0xffff0000 + 10_000; n++) check(n);
    for (let n = 2 ** 32 - 20_000; n < 2 ** 32 + 2_000; n++) check(n);
    for (let i = 0; i < 100_000; i++) check(randomU32());
    expect(disagree).toEqual([]);
  });

  it('rejects Carmichael numbers and strong pseudoprimes that pass single bases', () => {
    const carmichael = [561, 1105, 1729, 2465, 2821, 6601, 8911, 10585, 15841, 29341, 41041, 46657, 52633, 62745, 63973, 75361, 101101, 115921, 126217, 162401, 172081, 188461, 252601, 278545, 294409, 314821, 334153, 340561, 399001, 410041, 449065, 488881, 512461];
    // Strong pseudoprimes to base 2 (OEIS A001262) and base 7 (A020135)...
    const spsp2 = [2047, 3277, 4033, 4681, 8321, 15841, 29341, 42799, 49141, 52633, 65281, 74665, 80581, 85489, 88357, 90751];
    const spsp7 = [25, 325, 703, 2101, 2353, 4525, 11041, 14089, 20197, 29857, 29891, 39331, 49241, 58825, 64681, 76627, 78937];
    // ... and ones that pass several: 3215031751 = 151 * 751 * 28351 passes 2, 3, 5 and 7; above 2^32, the
    // BigInt path's bases must catch 4759123141 (passes 2, 7, 61), 2152302898747 (2..11), 3474749660383 (2..13)
    // and 341550071728321 (2..17).
    const multi = [3215031751, 4759123141, 2152302898747, 3474749660383, 341550071728321];
    for (const n of [...carmichael, ...spsp2, ...spsp7, ...multi]) expect(isPrime(n), String(n)).toBe(false);
    for (const n of spsp2) expect(isStrongProbablePrime(n, 2), String(n)).toBe(true);
    for (const n of spsp7) expect(isStrongProbablePrime(n, 7), String(n)).toBe(true);
    for (const base of [2, 7]) expect(isStrongProbablePrime(3215031751, base)).toBe(true);
    for (const base of [2, 7, 61]) expect(isStrongProbablePrime(4759123141, base)).toBe(true);
    // Base 61 has its own pseudoprimes: found with the BigInt reference, each one refused.
    const spsp61: number[] = [];
    for (let n = 63; spsp61.length < 10; n += 2) if (!byTrialDivision(n) && strongByBigInt(n, 61)) spsp61.push(n);
    for (const n of spsp61) {
      expect(isStrongProbablePrime(n, 61), String(n)).toBe(true);
      expect(isPrime(n), String(n)).toBe(false);
    }
    expect([2 ** 31 - 1, 4294967291, 2 ** 53 - 111].every(isPrime)).toBe(true); // the largest primes below 2^31, 2^32, 2^53
    expect([2 ** 53, 2 ** 60, 1e300, Number.MAX_VALUE, 2 ** 31 - 1 + 0.5, -7, NaN, Infinity].some(isPrime)).toBe(false);
  });

  it('computes the strong test exactly in 32 bits: the same answer as BigInt arithmetic', () => {
    const disagree: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const n = (randomU32() | 1) >>> 0;
      if (n < 200 || n >= 0xffff0000) continue;
      const base = [2, 7, 61, 3 + (randomU32() % 97)][i % 4]!;
      if (isStrongProbablePrime(n, base) !== strongByBigInt(n, base)) disagree.push(`${n}:${base}`);
    }
    expect(disagree).toEqual([]);
  });
});

describe('basis errors', () => {
  it('name at most MAX_FIELD_ERRORS values in a summary, which comes first, then the first MAX_FIELD_ERRORS indices, then counts', () => {
    const primes = [3, ...Array.from({ length: 300 }, (_, i) => 1000 + 2 * i), 3, 3];
    const errors = basisErrors(primes);
    expect(errors[0]).toMatchObject({ pointer: '/primes', code: 'not_prime', message: expect.stringMatching(/^not prime: 1000, 1002, .* and 200 more$/) });
    expect(errors[0]?.values).toHaveLength(MAX_FIELD_ERRORS);
    expect(errors[1]).toMatchObject({ pointer: '/primes', code: 'duplicate_prime', message: 'duplicates: 3, 3', values: [3, 3] });
    expect(errors.slice(2, 2 + MAX_FIELD_ERRORS).map((e) => e.pointer)).toEqual(Array.from({ length: MAX_FIELD_ERRORS }, (_, i) => `/primes/${i + 1}`));
    expect(errors[2]).toEqual({ pointer: '/primes/1', code: 'not_prime', message: '1000 is not prime' });
    expect(errors.slice(2 + MAX_FIELD_ERRORS)).toEqual([
      { pointer: '/primes', code: 'not_prime', message: 'not prime: 200 more elements', count: 200 },
      { pointer: '/primes', code: 'duplicate_prime', message: 'repeats: 2 more elements', count: 2 },
    ]);
    // A response lists the first MAX_FIELD_ERRORS and counts all of them: 2 summaries and 302 elements.
    expect(capFieldErrors(errors)).toEqual({ errors: errors.slice(0, MAX_FIELD_ERRORS), meta: { errorCount: 304, truncated: true } });
    expect(basisErrors([3, 4, 3])).toEqual([
      { pointer: '/primes', code: 'not_prime', message: 'not prime: 4', values: [4] },
      { pointer: '/primes', code: 'duplicate_prime', message: 'duplicates: 3', values: [3] },
      { pointer: '/primes/1', code: 'not_prime', message: '4 is not prime' },
      { pointer: '/primes/2', code: 'duplicate_prime', message: '3 repeats /primes/0' },
    ]);
  });

  it('refuses array elements with the codes and messages zod gives them, without asking zod for each', () => {
    const pool: unknown[] = [2, 3, 7, 'x', '', null, [], {}, true, 1.5, -1, 0, 1, -0.5, 1e-300, 2 ** 31, 2 ** 31 - 1, 1e300, -1e300, 2 ** 53, -(2 ** 53), 2 ** 53 - 1, Infinity, -Infinity, NaN, 0.3, 1e15 + 0.5];
    let seed = 7;
    const pick = (): unknown => pool[(seed = (Math.imul(seed, 48271) + 11) >>> 0) % pool.length];
    const arrays = (n: number): unknown[] => Array.from({ length: n }, pick);
    const ELEMENT = /^\/(primes|initialAmplitudes|phaseSeeding\/customPhases|resonanceTarget\/weights|basis\/primes|phases\/custom)\/\d+$/;
    const elementErrors = (errors: FieldError[]): string[] =>
      errors.filter((e) => ELEMENT.test(e.pointer) && e.code !== 'not_prime' && e.code !== 'duplicate_prime').map((e) => `${e.pointer} ${e.code} ${e.message}`).sort();
    for (let trial = 0; trial < 50; trial++) {
      const hqe = { primes: arrays(40), initialAmplitudes: arrays(10), phaseSeeding: { customPhases: arrays(10) }, resonanceTarget: { value: 0.5, weights: arrays(10) } };
      const zod = HQEConfig.safeParse(hqe);
      const ours = normalize(hqe);
      expect(ours.ok).toBe(false);
      expect(elementErrors(ours.ok ? [] : ours.errors)).toEqual(elementErrors(zod.success ? [] : zodErrors(zod.error)));
      const space = { name: 'x', basis: { primes: arrays(40) }, phases: { custom: arrays(10) } };
      const zodSpace = SpaceConfig.safeParse(space);
      const oursSpace = normalizeSpace(space);
      expect(elementErrors(oursSpace.ok ? [] : oursSpace.errors)).toEqual(elementErrors(zodSpace.success ? [] : zodErrors(zodSpace.error)));
    }
    // Other fields' errors are still zod's, next to the elements'.
    const r = normalize({ primes: [2, 'x'], schedule: { dt: -1 } });
    expect(r.ok ? [] : r.errors.map((e) => e.pointer)).toEqual(['/primes/1', '/schedule/dt']);
  });

  it('leaves values outside the schema\'s range to the schema', () => {
    expect(basisErrors([2, 2 ** 32, 2 ** 31 + 1, 1.5, 'x', -3])).toEqual([]);
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
