/**
 * A space's basis over its epochs (docs/model.md section 1, `POST /v1/spaces/{id}/basis`): ordering
 * (`ascending`, or `learned` from the space's current masses) and the state carried into a new epoch.
 */
import { scaffoldPhases, wrap2pi } from '../model/basis.js';

/**
 * `ascending`: by value. `learned`: by the current mass P descending (ties: smaller prime first), primes
 * new to the space after them, ascending.
 */
export function orderBasis(primes: readonly number[], order: 'ascending' | 'learned', mass: ReadonlyMap<number, number> = new Map()): number[] {
  const ascending = [...primes].sort((a, b) => a - b);
  if (order === 'ascending') return ascending;
  const known = ascending.filter((p) => mass.has(p));
  const fresh = ascending.filter((p) => !mass.has(p));
  known.sort((a, b) => mass.get(b)! - mass.get(a)! || a - b);
  return [...known, ...fresh];
}

export interface CarriedState {
  primes: number[];
  phases: number[];
  masses: number[];
}

/**
 * The first state of a new epoch: kept primes keep their phase and mass; a new prime starts at its scaffold
 * phase (index in the new order) with the mean mass 1/k; the masses are then renormalised to sum 1.
 */
export function carryState(
  previous: { primes: readonly number[]; phases: ArrayLike<number>; masses: ArrayLike<number> },
  nextPrimes: readonly number[],
  scaffold: { golden: boolean; silver: boolean; custom?: number[] | undefined },
): CarriedState {
  const index = new Map(previous.primes.map((p, i) => [p, i]));
  const seeded = scaffoldPhases({ primes: [...nextPrimes], golden: scaffold.golden, silver: scaffold.silver, customPhases: scaffold.custom ?? null });
  const k = nextPrimes.length;
  const phases: number[] = [];
  const masses: number[] = [];
  nextPrimes.forEach((p, i) => {
    const j = index.get(p);
    phases.push(j === undefined ? seeded[i]! : wrap2pi(previous.phases[j]!));
    masses.push(j === undefined ? 1 / k : previous.masses[j]!);
  });
  const total = masses.reduce((a, b) => a + b, 0);
  return { primes: [...nextPrimes], phases, masses: masses.map((m) => (total > 0 ? m / total : 1 / k)) };
}
