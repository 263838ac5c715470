// learn.wgsl — docs/model.md section 4 step 7 for the simulations of mixer `learned` in a size class:
//   A_ij <- (1 - h eta) A_ij + h eta max(0, cos(theta_i - theta_j)),   A_ii = 0,
// on the phases after this tick's phase update (visit.wgsl runs first in the same tick). Only
// simulations whose visit applied the update this tick (SimHeader.didUpdate == 1) change: a restart, an
// end, a stall or an exhausted budget leaves A as it is.
//
// Inputs (group 0, declared from PASS_BINDINGS in src/engine/webgpu/layout.ts by bindingDeclarations):
//   @binding(0) params       : array<SimParams>    read        k, learnRate (f32(h eta)), learnKeep (f32(1 - h eta))
//   @binding(1) headers      : array<SimHeader>    read        didUpdate
//   @binding(2) state        : array<vec2<f32>>    read        per element (theta_i, P_i), updated phases
//   @binding(3) learnedSlots : array<u32>          read        pool index -> simulation slot (NONE: free)
// Outputs:
//   @binding(4) learned      : array<f32>          read_write  A of pool entry e at e * PAD_K^2, row-major
// Workgroup layout: @workgroup_size(WG_L); dispatch (PAD_K / WG_L, PAD_K, pool size). Invocation x of
//   workgroup (bx, i, e) updates A_ij with j = bx * WG_L + x. No barriers, no reductions.

override WG_L: u32 = 64u;

@compute @workgroup_size(WG_L)
fn learn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let entry = wid.z;
  let sim = learnedSlots[entry];
  if (sim == NONE) {
    return;
  }
  let prm = params[sim];
  if (prm.k == 0u || headers[sim].didUpdate == 0u) {
    return;
  }
  let k = prm.k;
  let i = wid.y;
  let j = wid.x * WG_L + lid3.x;
  if (i >= k || j >= k || i == j) {
    return;
  }
  let base = sim * PAD_K;
  // theta_i - theta_j lies in (-2pi, 2pi); fold it into [-pi, pi] (cos is even and 2pi-periodic).
  var dth = state[base + i].x - state[base + j].x;
  if (dth > PI_F) {
    dth = dth - TWO_PI_F;
  } else if (dth < -PI_F) {
    dth = dth + TWO_PI_F;
  }
  let pull = max(0.0, cosSinReduced(dth).x);
  let idx = (entry * PAD_K + i) * PAD_K + j;
  learned[idx] = prm.learnKeep * learned[idx] + prm.learnRate * pull;
}
