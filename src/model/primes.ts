/** Primality for the basis: deterministic for every 32-bit integer. */

const SMALL_PRIMES: number[] = (() => {
  // All primes below sqrt(2^32) = 65536, by a sieve; enough for trial division of any u32.
  const n = 65536;
  const composite = new Uint8Array(n);
  const out: number[] = [];
  for (let i = 2; i < n; i++) {
    if (composite[i]) continue;
    out.push(i);
    for (let j = i * i; j < n; j += i) composite[j] = 1;
  }
  return out;
})();

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  for (const p of SMALL_PRIMES) {
    if (p * p > n) return true;
    if (n % p === 0) return n === p;
  }
  return true;
}

/** The first `count` primes, ascending. */
export function firstPrimes(count: number): number[] {
  if (count <= SMALL_PRIMES.length) return SMALL_PRIMES.slice(0, count);
  const out = SMALL_PRIMES.slice();
  for (let c = 65537; out.length < count; c += 2) if (isPrime(c)) out.push(c);
  return out;
}

export const MAX_PRIME = 2 ** 31 - 1;
