/** Space configuration (SpaceConfig) and its validation. */
import { describe, expect, it } from 'vitest';
import { normalizeSpace } from '../src/model/space.js';

describe('normalizeSpace', () => {
  it('fills the documented defaults for the seed example (demo-room)', () => {
    const r = normalizeSpace({
      name: 'demo-room', basis: { primes: [2, 3, 5, 7, 11, 13], cutoff: 1024 }, phases: { golden: true, silver: true },
      operators: { resonanceTarget: 0.85 }, entropy: { lambda: 0.03, collapseThreshold: 0.96 }, seed: 7,
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.normalized).toMatchObject({
      basis: { primes: [2, 3, 5, 7, 11, 13], order: 'ascending', cutoff: 1024 },
      operators: { resonanceTarget: 0.85, localityBias: 0.3, semantic: { enabled: false, kernel: 'prime' }, mixer: { gamma0: 0.2, beta: 0.98 } },
      entropy: { lambda: 0.03, collapseThreshold: 0.96, plateauT: 150, plateauEps: 1e-6 },
      policy: { maxMembers: 128, publishHz: 30, historySeconds: 600, allowGuest: false },
      seed: 7,
    });
    expect(r.warnings).toEqual([]);
  });

  it('truncates at cutoff with a warning, and refuses k above maxBasis after the cutoff', () => {
    const r = normalizeSpace({ name: 'x', basis: { primes: [2, 3, 5, 7, 11], cutoff: 3 } });
    expect(r.ok && r.normalized.basis.primes).toEqual([2, 3, 5]);
    expect(r.ok && r.warnings[0]).toMatch(/truncated to the first 3 of 5/);
    const big = normalizeSpace({ name: 'x', basis: { primes: [2, 3, 5, 7] } }, { maxBasis: 3 });
    expect(big.ok ? null : big.errors[0]).toMatchObject({ pointer: '/basis/primes', code: 'basis_too_large' });
  });

  it('lists composites, duplicates, ranges and unknown fields by pointer', () => {
    const r = normalizeSpace({ name: '', basis: { primes: [2, 9, 3, 3] }, policy: { publishHz: 120 }, operators: { warp: 1 } });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const pointers = r.errors.map((e) => `${e.pointer}:${e.code}`);
    expect(pointers).toEqual(expect.arrayContaining([
      '/name:too_small', '/basis/primes/1:not_prime', '/basis/primes/3:duplicate_prime', '/policy/publishHz:too_big', '/operators/warp:unknown_field',
    ]));
  });

  it('refuses more custom phases than primes', () => {
    const r = normalizeSpace({ name: 'x', basis: { primes: [2, 3] }, phases: { custom: [0, 1, 2] } });
    expect(r.ok ? null : r.errors[0]?.pointer).toBe('/phases/custom');
  });
});
