// common.wgsl — shared helpers of every pass (docs/model.md, docs/engine.md).
//
// Not a pass on its own: the engine compiles each of dense.wgsl, visit.wgsl and learn.wgsl after
// layout.wgsl, the pass's binding declarations and this file. layout.wgsl is generated from
// src/engine/webgpu/layout.ts (wgslLayout in wgsl-layout.ts): the structs SimParams, SimHeader and
// GpuRecord from the typegpu schemas the host writes them with, and every constant (NONE, TWO_PI_F, PI_F,
// TINY, BIG, EXP_M80, MAX_PHASE_STEP, LN_F64_MAX, XI_SCALE, JITTER_STREAM, MIXER_*, OPT_*, OP_*, the record
// flags F_*, the statuses ST_*); the bindings come from PASS_BINDINGS there (bindingDeclarations).
//   Inputs:  none (no bindings are declared here).
//   Outputs: none.
//   Workgroup layout: none.
//
// Layout of one batch (one size class, padded basis PAD_K in {64, 128, ..., 2048}): simulation `sim`
// occupies slot `sim`; its per-element data live at [sim * PAD_K, sim * PAD_K + k).

// Padded basis of the size class (elements per simulation slot).
override PAD_K: u32 = 64u;
// Records per simulation ring (one record at most per tick).
override REC_CAP: u32 = 64u;
// Snapshots per simulation ring (theta and P of one state each).
override SNAP_CAP: u32 = 16u;

// A slot takes part in this tick: resident, running, ticks left, room for one record and one snapshot.
// A simulation with a full ring stalls (its tick does nothing) until the host has consumed the ring, so
// results never depend on how ticks are chunked into submits.
fn simActive(p: SimParams, h: SimHeader) -> bool {
  return p.k > 0u && h.status == ST_RUNNING && h.budget > 0u && h.recCount < REC_CAP && h.snapCount < SNAP_CAP;
}

// pcg4d of docs/model.md section 4 (all arithmetic wraps mod 2^32; the four updates of a line are sequential).
fn pcg4d(seedIn: vec4<u32>) -> vec4<u32> {
  var v = seedIn * 1664525u + 1013904223u;
  v.x += v.y * v.w;
  v.y += v.z * v.x;
  v.z += v.x * v.y;
  v.w += v.y * v.z;
  v = v ^ (v >> vec4<u32>(16u));
  v.x += v.y * v.w;
  v.y += v.z * v.x;
  v.z += v.x * v.y;
  v.w += v.y * v.z;
  return v;
}

// 2U - 1 for U(seed, rho, n, i) = ((x >> 8) + 0.5) 2^-24: (2m + 1 - 2^24) 2^-24 is exact in f32
// (U itself needs 25 significant bits when U >= 0.5, so it is never formed).
fn symUniform(seed: u32, rho: u32, n: u32, i: u32) -> f32 {
  let m = pcg4d(vec4<u32>(seed, rho, n, i)).x >> 8u;
  return f32(i32(2u * m + 1u) - 16777216) * 5.9604644775390625e-8;
}

// Unit-variance noise xi_{n,i}.
fn noiseXi(seed: u32, rho: u32, n: u32, i: u32) -> f32 {
  return XI_SCALE * symUniform(seed, rho, n, i);
}

// wrap_2pi exactly as the CPU engine writes it (wrapRounded, src/engine/edits.ts): x - 2pi floor(x / 2pi), and 0 when that lands on 2pi.
fn wrap2pi(x: f32) -> f32 {
  let w = x - TWO_PI_F * floor(x / TWO_PI_F);
  return select(w, 0.0, w >= TWO_PI_F);
}

// (cos u, sin u) for |u| <= pi (a little beyond is fine), to about 1 ulp: Cody-Waite reduction by pi/2 in
// three parts (q * part exact for |q| <= 2), then the minimax polynomials of Cephes' sinf/cosf on
// [-pi/4, pi/4] and the quadrant. Not the builtins: WGSL promises only 2^-11 absolute error for sin/cos on
// [-pi, pi], and software adapters use that room (Chromium's SwiftShader: 1.9e-4 measured), which alone
// breaks the parity bar of docs/model.md section 7 over a hundred steps (docs/engine.md, "Transcendentals").
fn cosSinReduced(u: f32) -> vec2<f32> {
  let q = round(u * 0.636619772367581343);
  let r = ((u - q * 1.5703125) - q * 4.83751296997070312e-4) - q * 7.54978995489188216e-8;
  let z = r * r;
  let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
  let c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
  switch (i32(q) & 3) {
    case 1: { return vec2<f32>(-s, c); }
    case 2: { return vec2<f32>(-c, -s); }
    case 3: { return vec2<f32>(s, -c); }
    default: { return vec2<f32>(c, s); }
  }
}

// (cos t, sin t) for a phase t in [0, 2pi): evaluated on [-pi, pi). t - f32(2pi) is exact for t >= pi
// (Sterbenz); the shift costs |2pi - f32(2pi)| < 1.8e-7 rad.
fn cosSin(t: f32) -> vec2<f32> {
  return cosSinReduced(select(t, t - TWO_PI_F, t >= PI_F));
}

// ln x to about 1 ulp for normal positive x (Cephes' logf: frexp, the mantissa folded into
// [sqrt(1/2), sqrt(2)), a degree-9 polynomial, ln 2 in two parts); WGSL's log promises 2^-21 absolute only
// near 1 and 3 ulp elsewhere, and software adapters are coarser (SwiftShader: 2.5e-5 relative measured).
// Zero, subnormals, negatives, infinities and NaN go to the builtin, which gives the IEEE special values.
fn lnAcc(x: f32) -> f32 {
  if (!(x >= 1.17549435e-38) || nonFinite(x)) {
    return log(x);
  }
  let fr = frexp(x);
  var m = fr.fract;
  var e = f32(fr.exp);
  if (m < 0.707106781186547524) {
    e = e - 1.0;
    m = m + m - 1.0;
  } else {
    m = m - 1.0;
  }
  let z = m * m;
  var y = 7.0376836292e-2;
  y = y * m - 1.1514610310e-1;
  y = y * m + 1.1676998740e-1;
  y = y * m - 1.2420140846e-1;
  y = y * m + 1.4249322787e-1;
  y = y * m - 1.6668057665e-1;
  y = y * m + 2.0000714765e-1;
  y = y * m - 2.4999993993e-1;
  y = y * m + 3.3333331174e-1;
  y = m * z * y;
  y = y + -2.12194440e-4 * e;
  y = y - 0.5 * z;
  return (m + y) + 0.693359375 * e;
}

// Amplitude from mass: sqrt(P) for L2, P for L1.
fn ampOf(p: f32, opts: u32) -> f32 {
  return select(p, sqrt(p), (opts & OPT_L2) != 0u);
}

// |(x, y)| without overflow or underflow: scaled by the larger magnitude before squaring (docs/model.md
// section 9; the CPU engine's Math.hypot).
fn modulus(x: f32, y: f32) -> f32 {
  let m = max(abs(x), abs(y));
  if (m == 0.0) {
    return 0.0;
  }
  let a = x / m;
  let b = y / m;
  return m * sqrt(a * a + b * b);
}

// Not finite (inf or NaN), from the bit pattern: the exponent is all ones. (x != x may be folded away by
// compilers that assume finite math.)
fn nonFinite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}
