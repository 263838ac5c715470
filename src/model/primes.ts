/**
 * Primality for the basis: deterministic for every safe integer, and cheap at the top of the basis range
 * (2^31): a request body may hold ~95 000 such numbers, each checked before the server answers.
 */

const SMALL_PRIMES: number[] = (() => {
  // All primes below 65536, by a sieve (firstPrimes reads them).
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

/** Odd primes tried by division first: they settle most composites for the price of a few remainders. */
const TRIAL = [3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61];
/** Below this (67^2), an odd number with no factor in TRIAL is prime. */
const TRIAL_BOUND = 67 * 67;

/**
 * The fast path below is exact for n < 2^32 - 2^12 (see mulMod); above it, and up to 2^53, BigInt.
 * Bases {2, 7, 61} make Miller-Rabin deterministic for n < 4 759 123 141 (Jaeschke 1993).
 */
const FAST_LIMIT = 0xffff0000;
/** The first 12 primes as bases: deterministic for n < 3.18e23, beyond every safe integer (Sorenson & Webster 2015). */
const BIG_BASES = [2n, 3n, 5n, 7n, 11n, 13n, 17n, 19n, 23n, 29n, 31n, 37n];
/** Adding then subtracting 1.5 * 2^52 rounds a double of magnitude below 2^51 to the nearest integer. */
const ROUND = 6755399441055744;

/**
 * a * b mod n for n < FAST_LIMIT, exactly, without BigInt or a double `%` (a call into C), as a signed
 * residue: |a|, |b| <= n (1/2 + 2^-21) in, the same bound out, so every value is an int32 and the engine
 * keeps the whole chain in integer registers. q = round(a * b / n) in doubles is within 1/2 + 2^-21 of the
 * true quotient, so r = a * b - q * n lies in (-2^31, 2^31): its low 32 bits, which Math.imul computes
 * exactly, are all of it.
 */
function mulMod(a: number, b: number, n: number, inverse: number): number {
  const q = a * b * inverse + ROUND - ROUND;
  return (Math.imul(a, b) - Math.imul(q, n)) | 0;
}

/** n - 1 = d * 2^s with d odd (n odd, n < 2^32, so d < 2^31). */
function splitPow2(n: number): { d: number; s: number } {
  let d = n - 1;
  let s = 0;
  while ((d & 1) === 0) {
    d /= 2;
    s++;
  }
  return { d, s };
}

/**
 * After x = base^d (a signed residue): does the rest of the strong test pass, x = 1 or x^(2^r) = -1 for
 * some r < s? 1 and -1 have one signed residue each within the bound, so equality is enough.
 */
function strongTail(x: number, n: number, s: number, inverse: number): boolean {
  if (x === 1 || x === -1) return true;
  for (let r = 1; r < s; r++) {
    x = mulMod(x, x, n, inverse);
    if (x === -1) return true;
  }
  return false;
}

/** The strong tests to bases 2, 7 and 61 with their squarings interleaved: three independent chains keep the CPU busy. */
function fastMillerRabin(n: number): boolean {
  const { d, s } = splitPow2(n);
  const inverse = 1 / n;
  let x2 = 1;
  let x7 = 1;
  let x61 = 1;
  let b2 = 2;
  let b7 = 7;
  let b61 = 61;
  for (let e = d; e !== 0; e >>>= 1) {
    if (e & 1) {
      x2 = mulMod(x2, b2, n, inverse);
      x7 = mulMod(x7, b7, n, inverse);
      x61 = mulMod(x61, b61, n, inverse);
    }
    b2 = mulMod(b2, b2, n, inverse);
    b7 = mulMod(b7, b7, n, inverse);
    b61 = mulMod(b61, b61, n, inverse);
  }
  return strongTail(x2, n, s, inverse) && strongTail(x7, n, s, inverse) && strongTail(x61, n, s, inverse);
}

function bigPowMod(base: bigint, e: bigint, n: bigint): bigint {
  let x = 1n;
  let b = base % n;
  for (; e > 0n; e >>= 1n) {
    if (e & 1n) x = (x * b) % n;
    b = (b * b) % n;
  }
  return x;
}

function bigStrongTest(n: bigint, base: bigint): boolean {
  let d = n - 1n;
  let s = 0;
  while ((d & 1n) === 0n) {
    d >>= 1n;
    s++;
  }
  let x = bigPowMod(base, d, n);
  if (x === 1n || x === n - 1n) return true;
  for (let r = 1; r < s; r++) {
    x = (x * x) % n;
    if (x === n - 1n) return true;
  }
  return false;
}

/**
 * Whether odd n > 61 passes the strong probable-prime test to `base` (exposed for tests: the strong
 * pseudoprimes of single bases must pass it, and fail isPrime).
 */
export function isStrongProbablePrime(n: number, base: number): boolean {
  if (n < FAST_LIMIT && base < n / 2) {
    const { d, s } = splitPow2(n);
    const inverse = 1 / n;
    let x = 1;
    let b = base;
    for (let e = d; e !== 0; e >>>= 1) {
      if (e & 1) x = mulMod(x, b, n, inverse);
      b = mulMod(b, b, n, inverse);
    }
    return strongTail(x, n, s, inverse);
  }
  return bigStrongTest(BigInt(n), BigInt(base));
}

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  // Every double above 2^53 is even.
  if (n > Number.MAX_SAFE_INTEGER) return false;
  if (n % 2 === 0) return n === 2;
  if (n < FAST_LIMIT) {
    // An int32 or uint32 remainder, not a double one.
    const u = n >>> 0;
    for (const p of TRIAL) if (u % p === 0) return u === p;
    if (u < TRIAL_BOUND) return true;
    return fastMillerRabin(u);
  }
  for (const p of TRIAL) if (n % p === 0) return false;
  const big = BigInt(n);
  return BIG_BASES.every((base) => bigStrongTest(big, base));
}

/** The first `count` primes, ascending. */
export function firstPrimes(count: number): number[] {
  if (count <= SMALL_PRIMES.length) return SMALL_PRIMES.slice(0, count);
  const out = SMALL_PRIMES.slice();
  for (let c = 65537; out.length < count; c += 2) if (isPrime(c)) out.push(c);
  return out;
}

export const MAX_PRIME = 2 ** 31 - 1;
