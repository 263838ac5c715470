// dense.wgsl — the dense pass of docs/model.md section 4 step 1 for every simulation of a size class:
//   z_i = sum_j Kn_ij a_j e^{i theta_j},   q_i = sum_j Kn_ij a_j.
//
// Inputs (group 0, declared from PASS_BINDINGS in src/engine/webgpu/layout.ts by bindingDeclarations):
//   @binding(0) params  : array<SimParams>         read   per-simulation constants (k, mixer, kernelScale, ...)
//   @binding(1) headers : array<SimHeader>         read   status/budget/ring counts: inactive slots are skipped
//   @binding(2) elemF   : array<vec4<f32>>         read   per element (sqrt l_i, l_i, w_i, theta0_i)
//   @binding(3) primes  : array<u32>               read   per element p_i
//   @binding(4) state   : array<vec2<f32>>         read   per element (theta_i, P_i)
//   @binding(5) learned : array<f32>               read   learned matrices A (PAD_K x PAD_K each), pool index
//                                                          SimParams.learnedIndex
// Outputs:
//   @binding(6) zq      : array<vec4<f32>>         write  per element (Re z_i, Im z_i, q_i, 0)
// Workgroup layout: @workgroup_size(WG_D); dispatch (PAD_K / WG_D, slots). Invocation x of workgroup (bx, sim)
//   owns row i = bx * WG_D + x of simulation `sim`. The j loop runs over tiles of WG_D columns staged in
//   workgroup memory (a_j, a_j cos theta_j, a_j sin theta_j, sqrt l_j, l_j, p_j; each tile loaded once per
//   workgroup, one column per invocation).
// Summation order: j ascending within a tile into a tile partial (f32), tile partials added to the row sum
//   in ascending tile order (f32). Deterministic; not bit-identical to the CPU's f64 row sums.
//
// Kernel: Kn_ij is computed on the fly from per-element constants, not streamed from a stored k x k matrix.
//   G.L.S = 2 sqrt(l_i) sqrt(l_j) ((1 - b) max(p) + b min(p)) / ((l_i + l_j) max(p) (1 + |p_i - p_j|)),
//   one division per pair (the (1 + |p_i - p_j|) factor only with the semantic kernel; |p_i - p_j| is
//   formed exactly in u32, then converted). Kn = kernelScale * K with the host's f64 kernelScale.
//   Why: simulations of a batch each have their own basis, so a stored Kn costs PAD_K^2 floats per
//   simulation (16 MiB at k = 2048: 8 of them fill a 128 MiB binding) plus an O(k^2) build and upload per
//   simulation; recomputing costs ~10 flops and one division per pair and no memory. Measured on llvmpipe
//   (one tick, dense + visit + learn of one learned simulation, the learn writes disabled): streaming a
//   stored matrix vs recomputing = 6.9 vs 9.4 ms at k = 512, 102 vs 108 ms at k = 2048, i.e. the kernel
//   arithmetic costs ~5% once the matrix no longer fits in cache. On a GPU the streamed matrix is
//   bandwidth-bound (4 bytes per pair) while the arithmetic is not, so recomputing is the better side there.

override WG_D: u32 = 64u;

// (a_j, a_j cos theta_j, a_j sin theta_j, sqrt l_j)
var<workgroup> tileA: array<vec4<f32>, WG_D>;
// (l_j, p_j)
var<workgroup> tileL: array<f32, WG_D>;
var<workgroup> tileP: array<u32, WG_D>;

// Raw local kernel G.L.S for i != j.
fn kernelRaw(semantic: bool, b: f32, sli: f32, li: f32, pi: u32, slj: f32, lj: f32, pj: u32) -> f32 {
  let pmax = max(pi, pj);
  let pmin = min(pi, pj);
  let mx = f32(pmax);
  var den = (li + lj) * mx;
  if (semantic) {
    den = den * (1.0 + f32(pmax - pmin));
  }
  return (2.0 * sli * slj) * ((1.0 - b) * mx + b * f32(pmin)) / den;
}

@compute @workgroup_size(WG_D)
fn dense(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let sim = wid.y;
  let lid = lid3.x;
  // Read-only storage at a uniform index: uniform values, so the early exits keep the barriers uniform.
  let prm = params[sim];
  let hdr = headers[sim];
  if (!simActive(prm, hdr)) {
    return;
  }
  let k = prm.k;
  let rowBase = wid.x * WG_D;
  if (rowBase >= k) {
    return;
  }
  let base = sim * PAD_K;
  let i = rowBase + lid;
  let rowValid = i < k;
  let ii = min(i, k - 1u);
  let ei = elemF[base + ii];
  let sli = ei.x;
  let li = ei.y;
  let pi = primes[base + ii];
  let semantic = (prm.opts & OPT_SEMANTIC) != 0u;
  let b = prm.bias;
  let scale = prm.kernelScale;
  let mixer = prm.mixer;
  var aRow = 0u;
  if (mixer == MIXER_LEARNED) {
    aRow = (prm.learnedIndex * PAD_K + ii) * PAD_K;
  }

  var zr = 0.0;
  var zi = 0.0;
  var qq = 0.0;
  for (var t0 = 0u; t0 < k; t0 += WG_D) {
    let jl = t0 + lid;
    if (jl < k) {
      let st = state[base + jl];
      let a = ampOf(st.y, prm.opts);
      let cs = cosSin(st.x);
      let ej = elemF[base + jl];
      tileA[lid] = vec4<f32>(a, a * cs.x, a * cs.y, ej.x);
      tileL[lid] = ej.y;
      tileP[lid] = primes[base + jl];
    }
    workgroupBarrier();
    let cnt = min(WG_D, k - t0);
    var pr = 0.0;
    var pim = 0.0;
    var pq = 0.0;
    if (mixer == MIXER_FLOW) {
      for (var jj = 0u; jj < cnt; jj++) {
        let kij = select(scale, 0.0, t0 + jj == i);
        let t = tileA[jj];
        pr += kij * t.y;
        pim += kij * t.z;
        pq += kij * t.x;
      }
    } else if (mixer == MIXER_LEARNED) {
      for (var jj = 0u; jj < cnt; jj++) {
        let j = t0 + jj;
        let t = tileA[jj];
        let kn = scale * kernelRaw(semantic, b, sli, li, pi, t.w, tileL[jj], tileP[jj]);
        let kij = select(kn * (1.0 + learned[aRow + j]), 0.0, j == i);
        pr += kij * t.y;
        pim += kij * t.z;
        pq += kij * t.x;
      }
    } else {
      for (var jj = 0u; jj < cnt; jj++) {
        let t = tileA[jj];
        let kn = scale * kernelRaw(semantic, b, sli, li, pi, t.w, tileL[jj], tileP[jj]);
        let kij = select(kn, 0.0, t0 + jj == i);
        pr += kij * t.y;
        pim += kij * t.z;
        pq += kij * t.x;
      }
    }
    zr += pr;
    zi += pim;
    qq += pq;
    workgroupBarrier();
  }
  if (rowValid) {
    zq[base + i] = vec4<f32>(zr, zi, qq, 0.0);
  }
}
