/** Basis ordering and the state carried across an epoch bump. */
import { describe, expect, it } from 'vitest';
import { scaffoldPhases } from '../src/model/basis.js';
import { carryState, orderBasis } from '../src/sim/space-basis.js';

describe('orderBasis', () => {
  it('sorts ascending', () => {
    expect(orderBasis([7, 2, 5, 3], 'ascending')).toEqual([2, 3, 5, 7]);
  });
  it('orders learned by mass descending, ties by the smaller prime, new primes last ascending', () => {
    const mass = new Map([[2, 0.1], [3, 0.4], [5, 0.4], [7, 0.1]]);
    expect(orderBasis([13, 7, 5, 3, 2, 11], 'learned', mass)).toEqual([3, 5, 2, 7, 11, 13]);
  });
});

describe('carryState', () => {
  it('keeps phases and masses of kept primes, seeds new ones, renormalises', () => {
    const previous = { primes: [2, 3, 5], phases: [0.5, 1.5, 7], masses: [0.2, 0.3, 0.5] };
    const next = carryState(previous, [3, 5, 11], { golden: true, silver: false });
    expect(next.primes).toEqual([3, 5, 11]);
    expect(next.phases[0]).toBe(1.5);
    expect(next.phases[1]).toBeCloseTo(7 - 2 * Math.PI, 12);
    expect(next.phases[2]).toBeCloseTo(scaffoldPhases({ primes: [3, 5, 11], golden: true, silver: false, customPhases: null })[2]!, 12);
    const total = 0.3 + 0.5 + 1 / 3;
    expect(next.masses.map((m) => +m.toFixed(12))).toEqual([0.3 / total, 0.5 / total, 1 / 3 / total].map((m) => +m.toFixed(12)));
  });
});
