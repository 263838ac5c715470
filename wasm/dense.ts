/**
 * The dense pass of docs/model.md section 4 step 1 in WebAssembly SIMD (AssemblyScript; part of the CPU
 * engine's module, wasm/engine.ts; engine-relaxed.wasm uses relaxed SIMD's multiply-add):
 *
 *   z_i = sum_j Kn_ij a_j e^{i theta_j},   q_i = sum_j Kn_ij a_j
 *
 * Inputs, all in the engine's shared memory (imported as env.memory, so every worker thread reads one copy
 * of a kernel): the kernel Kn, row-major k x k; per simulation a record of six addresses (SIM_RECORD bytes:
 * a_j cos theta_j, a_j sin theta_j, a_j, then the outputs z re, z im, q; each k values). Outputs: rows
 * [i0, i1) of z and q of every simulation of the table, so that workers can split one pass by rows.
 *
 * Layout of the loops: two kernel rows at a time, each simulation of the table in turn (each amplitude load
 * serves both rows, and the two rows stay in L1 while the simulations pass); each of a row's three running
 * sums is four lanes wide (f32x4; f64x2 in the f64 mode) over j = 0, 4, 8, ...; the lanes are added
 * (0 + 1) + (2 + 3) at the end of the row, then the columns past the last multiple of four in index order.
 * A simulation's sums never depend on the others in the table, so its results do not depend on the batch.
 * The order is fixed, so one build gives bit-identical results on every run; the relaxed build may fuse the
 * multiply-add (one rounding instead of two), so it is a backend of its own. One generic over the value type
 * T (f32 or f64) serves both modes: the lane type, width and shifts follow from T at compile time.
 */

/** Bytes of a simulation's record: six u32 addresses. */
const SIM_RECORD: usize = 24;

// @ts-ignore: decorator
@inline
function zero(): v128 {
  return i64x2.splat(0);
}

/** a * b + c lane by lane, in T (fused in the relaxed build). */
// @ts-ignore: decorator
@inline
function madd<T>(a: v128, b: v128, c: v128): v128 {
  if (sizeof<T>() == 4) {
    if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
    return f32x4.add(f32x4.mul(a, b), c);
  }
  if (ASC_FEATURE_RELAXED_SIMD) return f64x2.relaxed_madd(a, b, c);
  return f64x2.add(f64x2.mul(a, b), c);
}

/** The lanes added: (0 + 1) + (2 + 3) for f32, 0 + 1 for f64. */
// @ts-ignore: decorator
@inline
function sum<T>(v: v128): T {
  if (sizeof<T>() == 4) return <T>((f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3)));
  return <T>(f64x2.extract_lane(v, 0) + f64x2.extract_lane(v, 1));
}

// @ts-ignore: decorator
@inline
function field(table: usize, s: i32, n: i32): usize {
  return <usize>load<u32>(table + <usize>s * SIM_RECORD + (<usize>n << 2));
}

/** One row of one simulation: the sums over the columns that the vectors do not cover, then the stores. */
// @ts-ignore: decorator
@inline
function rowTail<T>(K: usize, k: i32, i: i32, j0: i32, table: usize, s: i32, zr: T, zi: T, q: T): void {
  const ac = field(table, s, 0);
  const as = field(table, s, 1);
  const a = field(table, s, 2);
  const row = K + ((<usize>i * <usize>k) << alignof<T>());
  for (let j = j0; j < k; j++) {
    const o = <usize>j << alignof<T>();
    const kij = load<T>(row + o);
    zr += kij * load<T>(ac + o);
    zi += kij * load<T>(as + o);
    q += kij * load<T>(a + o);
  }
  const out = <usize>i << alignof<T>();
  store<T>(field(table, s, 3) + out, zr);
  store<T>(field(table, s, 4) + out, zi);
  store<T>(field(table, s, 5) + out, q);
}

/** Rows [i0, i1) of z and q for `sims` simulations sharing the kernel at `K`, in T. */
function dense<T>(K: usize, k: i32, i0: i32, i1: i32, table: usize, sims: i32): void {
  const W: i32 = 16 / sizeof<T>(); // lanes in a vector
  const kv = k & ~(W - 1);
  const shift = alignof<T>();
  const stride = (<usize>k) << shift;
  let i = i0;
  // Two rows at a time, each simulation in turn: 5 loads feed 6 multiply-adds, and the 6 running sums, the
  // two kernel vectors and the amplitude vector stay in registers (a block of two simulations needs more
  // than the 16 vector registers of x86-64 and ran at 60% of this speed at batch 16). The five streams are
  // walked by pointers bumped one vector a step: V8 then loads from each pointer as it is, where an index
  // added to five bases cost an address computation per load and a register (10-15% faster; unrolling
  // further made V8 spill the sums).
  const vbytes = (<usize>kv) << shift;
  for (; i + 1 < i1; i += 2) {
    const rowA = K + <usize>i * stride;
    for (let s = 0; s < sims; s++) {
      let pc = field(table, s, 0), ps = field(table, s, 1), pa = field(table, s, 2);
      let ra = rowA, rb = rowA + stride;
      const end = pc + vbytes;
      let zra = zero(), zia = zero(), qa = zero();
      let zrb = zero(), zib = zero(), qb = zero();
      while (pc < end) {
        const ka = v128.load(ra);
        const kb = v128.load(rb);
        let v = v128.load(pc);
        zra = madd<T>(ka, v, zra);
        zrb = madd<T>(kb, v, zrb);
        v = v128.load(ps);
        zia = madd<T>(ka, v, zia);
        zib = madd<T>(kb, v, zib);
        v = v128.load(pa);
        qa = madd<T>(ka, v, qa);
        qb = madd<T>(kb, v, qb);
        ra += 16;
        rb += 16;
        pc += 16;
        ps += 16;
        pa += 16;
      }
      rowTail<T>(K, k, i, kv, table, s, sum<T>(zra), sum<T>(zia), sum<T>(qa));
      rowTail<T>(K, k, i + 1, kv, table, s, sum<T>(zrb), sum<T>(zib), sum<T>(qb));
    }
  }
  // The last row of an odd range.
  if (i < i1) {
    const row = K + <usize>i * stride;
    for (let s = 0; s < sims; s++) {
      const ac = field(table, s, 0), as = field(table, s, 1), a = field(table, s, 2);
      let zr = zero(), zi = zero(), q = zero();
      for (let j = 0; j < kv; j += W) {
        const o = <usize>j << shift;
        const kvec = v128.load(row + o);
        zr = madd<T>(kvec, v128.load(ac + o), zr);
        zi = madd<T>(kvec, v128.load(as + o), zi);
        q = madd<T>(kvec, v128.load(a + o), q);
      }
      rowTail<T>(K, k, i, kv, table, s, sum<T>(zr), sum<T>(zi), sum<T>(q));
    }
  }
}

/** Rows [i0, i1) of z and q for `sims` simulations sharing the f32 kernel at `K` (four lanes of f32). */
export function dense32(K: usize, k: i32, i0: i32, i1: i32, table: usize, sims: i32): void {
  dense<f32>(K, k, i0, i1, table, sims);
}

/** Rows [i0, i1) of z and q for `sims` simulations sharing the f64 kernel at `K` (two lanes of f64). */
export function dense64(K: usize, k: i32, i0: i32, i1: i32, table: usize, sims: i32): void {
  dense<f64>(K, k, i0, i1, table, sims);
}
