/**
 * Counter-based noise of docs/model.md section 4: pcg4d. Bit-exact on every backend (the WGSL twin lives in
 * shaders/common.wgsl). All arithmetic wraps mod 2^32.
 */
export function pcg4d(a: number, b: number, c: number, d: number): [number, number, number, number] {
  const out = new Uint32Array(4);
  pcg4dInto(a, b, c, d, out);
  return [out[0]!, out[1]!, out[2]!, out[3]!];
}

/** pcg4d into `out` (x, y, z, w): the one implementation, which the hot path calls without allocating. */
function pcg4dInto(a: number, b: number, c: number, d: number, out: Uint32Array): void {
  let x = (Math.imul(a >>> 0, 1664525) + 1013904223) >>> 0;
  let y = (Math.imul(b >>> 0, 1664525) + 1013904223) >>> 0;
  let z = (Math.imul(c >>> 0, 1664525) + 1013904223) >>> 0;
  let w = (Math.imul(d >>> 0, 1664525) + 1013904223) >>> 0;
  x = (x + Math.imul(y, w)) >>> 0;
  y = (y + Math.imul(z, x)) >>> 0;
  z = (z + Math.imul(x, y)) >>> 0;
  w = (w + Math.imul(y, z)) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  y = (y ^ (y >>> 16)) >>> 0;
  z = (z ^ (z >>> 16)) >>> 0;
  w = (w ^ (w >>> 16)) >>> 0;
  x = (x + Math.imul(y, w)) >>> 0;
  y = (y + Math.imul(z, x)) >>> 0;
  z = (z + Math.imul(x, y)) >>> 0;
  w = (w + Math.imul(y, z)) >>> 0;
  out[0] = x;
  out[1] = y;
  out[2] = z;
  out[3] = w;
}

const TWO_POW_M24 = 2 ** -24;
/** uniform's words: the engines draw one per prime and step, so no array is made per draw. */
const drawn = new Uint32Array(4);

/** U(seed, rho, n, i) in (0, 1); exact in f32 (24 significant bits). */
export function uniform(seed: number, rho: number, n: number, i: number): number {
  pcg4dInto(seed, rho, n, i, drawn);
  return ((drawn[0]! >>> 8) + 0.5) * TWO_POW_M24;
}

/** sqrt(3) rounded as the spec writes it, so that 2U-1 scaled has unit variance. */
export const XI_SCALE = 1.7320508;

/** Unit-variance noise xi_{n,i} for restart rho. */
export function noise(seed: number, rho: number, n: number, i: number): number {
  return XI_SCALE * (2 * uniform(seed, rho, n, i) - 1);
}

/** The step index used for the restart jitter draw (docs/model.md section 3). */
export const JITTER_STREAM = 0xffffffff;
