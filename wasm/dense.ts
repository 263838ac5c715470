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
 * Layout of the loops: two kernel rows and two simulations at a time (each kernel load serves two
 * simulations, each amplitude load two rows); each simulation's three running sums of a row are four lanes
 * wide (f32x4; f64x2 in the f64 mode) over j = 0, 4, 8, ...; the lanes are added (0 + 1) + (2 + 3) at the
 * end of the row, then the columns past the last multiple of four in index order.
 * The order is fixed, so one build gives bit-identical results on every run; the relaxed build may fuse the
 * multiply-add (one rounding instead of two), so it is a backend of its own.
 */

/** Bytes of a simulation's record: six u32 addresses. */
const SIM_RECORD: usize = 24;

// @ts-ignore: decorator
@inline
function madd32(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

// @ts-ignore: decorator
@inline
function madd64(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f64x2.relaxed_madd(a, b, c);
  return f64x2.add(f64x2.mul(a, b), c);
}

// @ts-ignore: decorator
@inline
function sum32(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

// @ts-ignore: decorator
@inline
function sum64(v: v128): f64 {
  return f64x2.extract_lane(v, 0) + f64x2.extract_lane(v, 1);
}

// @ts-ignore: decorator
@inline
function field(table: usize, s: i32, n: i32): usize {
  return <usize>load<u32>(table + <usize>s * SIM_RECORD + (<usize>n << 2));
}

/** One row of one simulation, f32: the sums over the columns that four-wide vectors do not cover. */
function rowTail32(K: usize, k: i32, i: i32, j0: i32, table: usize, s: i32, zr: f32, zi: f32, q: f32): void {
  const ac = field(table, s, 0);
  const as = field(table, s, 1);
  const a = field(table, s, 2);
  const row = K + ((<usize>i * <usize>k) << 2);
  for (let j = j0; j < k; j++) {
    const o = <usize>j << 2;
    const kij = load<f32>(row + o);
    zr += kij * load<f32>(ac + o);
    zi += kij * load<f32>(as + o);
    q += kij * load<f32>(a + o);
  }
  const out = <usize>i << 2;
  store<f32>(field(table, s, 3) + out, zr);
  store<f32>(field(table, s, 4) + out, zi);
  store<f32>(field(table, s, 5) + out, q);
}

/** Rows [i0, i1) of z and q for `sims` simulations sharing the f32 kernel at `K`. */
export function dense32(K: usize, k: i32, i0: i32, i1: i32, table: usize, sims: i32): void {
  const k4 = k & ~3;
  const stride = (<usize>k) << 2;
  let i = i0;
  // Two rows and two simulations at a time: 8 loads feed 12 multiply-adds.
  for (; i + 1 < i1; i += 2) {
    const ra = K + <usize>i * stride;
    const rb = ra + stride;
    let s = 0;
    for (; s + 1 < sims; s += 2) {
      const ac0 = field(table, s, 0), as0 = field(table, s, 1), a0 = field(table, s, 2);
      const ac1 = field(table, s + 1, 0), as1 = field(table, s + 1, 1), a1 = field(table, s + 1, 2);
      let zra0 = f32x4.splat(0), zia0 = f32x4.splat(0), qa0 = f32x4.splat(0);
      let zrb0 = f32x4.splat(0), zib0 = f32x4.splat(0), qb0 = f32x4.splat(0);
      let zra1 = f32x4.splat(0), zia1 = f32x4.splat(0), qa1 = f32x4.splat(0);
      let zrb1 = f32x4.splat(0), zib1 = f32x4.splat(0), qb1 = f32x4.splat(0);
      for (let j = 0; j < k4; j += 4) {
        const o = <usize>j << 2;
        const ka = v128.load(ra + o);
        const kb = v128.load(rb + o);
        let v = v128.load(ac0 + o);
        zra0 = madd32(ka, v, zra0);
        zrb0 = madd32(kb, v, zrb0);
        v = v128.load(as0 + o);
        zia0 = madd32(ka, v, zia0);
        zib0 = madd32(kb, v, zib0);
        v = v128.load(a0 + o);
        qa0 = madd32(ka, v, qa0);
        qb0 = madd32(kb, v, qb0);
        v = v128.load(ac1 + o);
        zra1 = madd32(ka, v, zra1);
        zrb1 = madd32(kb, v, zrb1);
        v = v128.load(as1 + o);
        zia1 = madd32(ka, v, zia1);
        zib1 = madd32(kb, v, zib1);
        v = v128.load(a1 + o);
        qa1 = madd32(ka, v, qa1);
        qb1 = madd32(kb, v, qb1);
      }
      rowTail32(K, k, i, k4, table, s, sum32(zra0), sum32(zia0), sum32(qa0));
      rowTail32(K, k, i + 1, k4, table, s, sum32(zrb0), sum32(zib0), sum32(qb0));
      rowTail32(K, k, i, k4, table, s + 1, sum32(zra1), sum32(zia1), sum32(qa1));
      rowTail32(K, k, i + 1, k4, table, s + 1, sum32(zrb1), sum32(zib1), sum32(qb1));
    }
    if (s < sims) {
      const ac = field(table, s, 0), as = field(table, s, 1), a = field(table, s, 2);
      let zra = f32x4.splat(0), zia = f32x4.splat(0), qa = f32x4.splat(0);
      let zrb = f32x4.splat(0), zib = f32x4.splat(0), qb = f32x4.splat(0);
      for (let j = 0; j < k4; j += 4) {
        const o = <usize>j << 2;
        const ka = v128.load(ra + o);
        const kb = v128.load(rb + o);
        let v = v128.load(ac + o);
        zra = madd32(ka, v, zra);
        zrb = madd32(kb, v, zrb);
        v = v128.load(as + o);
        zia = madd32(ka, v, zia);
        zib = madd32(kb, v, zib);
        v = v128.load(a + o);
        qa = madd32(ka, v, qa);
        qb = madd32(kb, v, qb);
      }
      rowTail32(K, k, i, k4, table, s, sum32(zra), sum32(zia), sum32(qa));
      rowTail32(K, k, i + 1, k4, table, s, sum32(zrb), sum32(zib), sum32(qb));
    }
  }
  // The last row of an odd range.
  if (i < i1) {
    const row = K + <usize>i * stride;
    for (let s = 0; s < sims; s++) {
      const ac = field(table, s, 0), as = field(table, s, 1), a = field(table, s, 2);
      let zr = f32x4.splat(0), zi = f32x4.splat(0), q = f32x4.splat(0);
      for (let j = 0; j < k4; j += 4) {
        const o = <usize>j << 2;
        const kv = v128.load(row + o);
        zr = madd32(kv, v128.load(ac + o), zr);
        zi = madd32(kv, v128.load(as + o), zi);
        q = madd32(kv, v128.load(a + o), q);
      }
      rowTail32(K, k, i, k4, table, s, sum32(zr), sum32(zi), sum32(q));
    }
  }
}

/** One row of one simulation, f64: the column past the last multiple of two. */
function rowTail64(K: usize, k: i32, i: i32, j0: i32, table: usize, s: i32, zr: f64, zi: f64, q: f64): void {
  const ac = field(table, s, 0);
  const as = field(table, s, 1);
  const a = field(table, s, 2);
  const row = K + ((<usize>i * <usize>k) << 3);
  for (let j = j0; j < k; j++) {
    const o = <usize>j << 3;
    const kij = load<f64>(row + o);
    zr += kij * load<f64>(ac + o);
    zi += kij * load<f64>(as + o);
    q += kij * load<f64>(a + o);
  }
  const out = <usize>i << 3;
  store<f64>(field(table, s, 3) + out, zr);
  store<f64>(field(table, s, 4) + out, zi);
  store<f64>(field(table, s, 5) + out, q);
}

/** Rows [i0, i1) of z and q for `sims` simulations sharing the f64 kernel at `K` (two lanes of f64). */
export function dense64(K: usize, k: i32, i0: i32, i1: i32, table: usize, sims: i32): void {
  const k2 = k & ~1;
  const stride = (<usize>k) << 3;
  let i = i0;
  // Two rows and two simulations at a time: 8 loads feed 12 multiply-adds.
  for (; i + 1 < i1; i += 2) {
    const ra = K + <usize>i * stride;
    const rb = ra + stride;
    let s = 0;
    for (; s + 1 < sims; s += 2) {
      const ac0 = field(table, s, 0), as0 = field(table, s, 1), a0 = field(table, s, 2);
      const ac1 = field(table, s + 1, 0), as1 = field(table, s + 1, 1), a1 = field(table, s + 1, 2);
      let zra0 = f64x2.splat(0), zia0 = f64x2.splat(0), qa0 = f64x2.splat(0);
      let zrb0 = f64x2.splat(0), zib0 = f64x2.splat(0), qb0 = f64x2.splat(0);
      let zra1 = f64x2.splat(0), zia1 = f64x2.splat(0), qa1 = f64x2.splat(0);
      let zrb1 = f64x2.splat(0), zib1 = f64x2.splat(0), qb1 = f64x2.splat(0);
      for (let j = 0; j < k2; j += 2) {
        const o = <usize>j << 3;
        const ka = v128.load(ra + o);
        const kb = v128.load(rb + o);
        let v = v128.load(ac0 + o);
        zra0 = madd64(ka, v, zra0);
        zrb0 = madd64(kb, v, zrb0);
        v = v128.load(as0 + o);
        zia0 = madd64(ka, v, zia0);
        zib0 = madd64(kb, v, zib0);
        v = v128.load(a0 + o);
        qa0 = madd64(ka, v, qa0);
        qb0 = madd64(kb, v, qb0);
        v = v128.load(ac1 + o);
        zra1 = madd64(ka, v, zra1);
        zrb1 = madd64(kb, v, zrb1);
        v = v128.load(as1 + o);
        zia1 = madd64(ka, v, zia1);
        zib1 = madd64(kb, v, zib1);
        v = v128.load(a1 + o);
        qa1 = madd64(ka, v, qa1);
        qb1 = madd64(kb, v, qb1);
      }
      rowTail64(K, k, i, k2, table, s, sum64(zra0), sum64(zia0), sum64(qa0));
      rowTail64(K, k, i + 1, k2, table, s, sum64(zrb0), sum64(zib0), sum64(qb0));
      rowTail64(K, k, i, k2, table, s + 1, sum64(zra1), sum64(zia1), sum64(qa1));
      rowTail64(K, k, i + 1, k2, table, s + 1, sum64(zrb1), sum64(zib1), sum64(qb1));
    }
    if (s < sims) {
      const ac = field(table, s, 0), as = field(table, s, 1), a = field(table, s, 2);
      let zra = f64x2.splat(0), zia = f64x2.splat(0), qa = f64x2.splat(0);
      let zrb = f64x2.splat(0), zib = f64x2.splat(0), qb = f64x2.splat(0);
      for (let j = 0; j < k2; j += 2) {
        const o = <usize>j << 3;
        const ka = v128.load(ra + o);
        const kb = v128.load(rb + o);
        let v = v128.load(ac + o);
        zra = madd64(ka, v, zra);
        zrb = madd64(kb, v, zrb);
        v = v128.load(as + o);
        zia = madd64(ka, v, zia);
        zib = madd64(kb, v, zib);
        v = v128.load(a + o);
        qa = madd64(ka, v, qa);
        qb = madd64(kb, v, qb);
      }
      rowTail64(K, k, i, k2, table, s, sum64(zra), sum64(zia), sum64(qa));
      rowTail64(K, k, i + 1, k2, table, s, sum64(zrb), sum64(zib), sum64(qb));
    }
  }
  // The last row of an odd range.
  if (i < i1) {
    const row = K + <usize>i * stride;
    for (let s = 0; s < sims; s++) {
      const ac = field(table, s, 0), as = field(table, s, 1), a = field(table, s, 2);
      let zr = f64x2.splat(0), zi = f64x2.splat(0), q = f64x2.splat(0);
      for (let j = 0; j < k2; j += 2) {
        const o = <usize>j << 3;
        const kv = v128.load(row + o);
        zr = madd64(kv, v128.load(ac + o), zr);
        zi = madd64(kv, v128.load(as + o), zi);
        q = madd64(kv, v128.load(a + o), q);
      }
      rowTail64(K, k, i, k2, table, s, sum64(zr), sum64(zi), sum64(q));
    }
  }
}
