// visit.wgsl — one tick's visit of the current state of every simulation of a size class (docs/engine.md,
// "Ticks" 2–5): metrics of docs/model.md section 5, the plateau and convergence counters, the decision, the
// record and snapshot ring writes, then the update of section 4 steps 3–6 and 8 or the restart re-seed.
// Space mode (OPT_SPACE): no steps limit, restarts or converged end; plateau and collapse are
// edge-triggered events that re-arm (docs/engine.md, "Space mode"); only a failure (docs/model.md section 9)
// ends it.
// A revisit tick (SimHeader.revisit, docs/engine.md "Checkpoints and patches") measures and updates only
// (or fails, when its step cannot be represented: docs/model.md section 9).
// (Step 7, the learned matrix, is learn.wgsl, dispatched after this pass.)
// The functions are the twins of src/engine/cpu/step.ts and carry their names: measure, visit (the counters
// and the decision), end, restart, update.
//
// Inputs (group 0, declared from PASS_BINDINGS in src/engine/webgpu/layout.ts by bindingDeclarations):
//   @binding(0) params  : array<SimParams>         read        per-simulation constants
//   @binding(1) headers : array<SimHeader>         read_write  counters, schedules, status, ring counts
//   @binding(2) elemF   : array<vec4<f32>>         read        per element (sqrt l_i, l_i, w_i, theta0_i)
//   @binding(3) elemG   : array<vec4<f32>>         read        per element (prior_i, custom weight_i, centred log
//                                                              l_i - l_ref, -)
//   @binding(4) state   : array<vec2<f32>>         read_write  per element (theta_i, P_i)
//   @binding(5) zq      : array<vec4<f32>>         read_write  the dense pass of this tick (Re z, Im z, q, -); the
//                                                              visit keeps each element's phase increment in .w
// Outputs:
//   @binding(4) state   (updated or re-seeded), @binding(1) headers, @binding(5) zq.w (phase increments),
//   @binding(6) records : array<GpuRecord>         write       ring of REC_CAP records per simulation
//   @binding(7) snaps   : array<f32>               write       ring of SNAP_CAP snapshots per simulation;
//                                                              entry e at (sim*SNAP_CAP + e) * 2*PAD_K:
//                                                              theta_0..k-1, then P_0..k-1
// Workgroup layout: @workgroup_size(WG_V) (a power of two); dispatch (slots). One workgroup per simulation;
//   invocation x owns the elements i = x, x + WG_V, x + 2 WG_V, ... < k for the whole tick (it alone reads
//   and writes them, so element updates need no barriers).
// Reductions (deterministic): each invocation accumulates its own elements in ascending i (f32), then a
//   fixed binary tree over the workgroup: at stride s = WG_V/2, WG_V/4, ..., 1, slot x += slot x + s.
//   Scalars and decisions that steer control flow come from workgroupUniformLoad, so every barrier sits
//   in uniform control flow.

override WG_V: u32 = 64u;

// (sum P cos, sum P sin, sum a (cos Re z + sin Im z), sum a q)
var<workgroup> redA: array<vec4<f32>, WG_V>;
// (sum P ln(P or P/prior), sum P (l - l_ref), sum w P cos, sum w P sin)
var<workgroup> redB: array<vec4<f32>, WG_V>;
// (sum w P, max P, any P > 0 with prior 0 (kl_to_prior), badness: max of 3 for a non-finite mass, 2 for a
// non-finite phase, 1 for a phase increment that is not finite or above MAX_PHASE_STEP, else 0)
var<workgroup> redC: array<vec4<f32>, WG_V>;
var<workgroup> red1: array<f32, WG_V>;
var<workgroup> wgHdr: SimHeader;

fn wgSum1(v: f32, lid: u32) -> f32 {
  red1[lid] = v;
  workgroupBarrier();
  for (var s = WG_V / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      red1[lid] = red1[lid] + red1[lid + s];
    }
    workgroupBarrier();
  }
  let r = workgroupUniformLoad(&red1[0]);
  workgroupBarrier();
  return r;
}

fn wgMax1(v: f32, lid: u32) -> f32 {
  red1[lid] = v;
  workgroupBarrier();
  for (var s = WG_V / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      red1[lid] = max(red1[lid], red1[lid + s]);
    }
    workgroupBarrier();
  }
  let r = workgroupUniformLoad(&red1[0]);
  workgroupBarrier();
  return r;
}

// An edge-triggered event of space mode: fires when armed and its condition holds, then re-arms after the
// condition was false for `need` consecutive visits. Returns (armed, falseCount, fired).
fn edgeEvent(armed: u32, falseCount: u32, condition: bool, need: u32) -> vec3<u32> {
  if (armed != 0u) {
    if (condition) {
      return vec3<u32>(0u, 0u, 1u);
    }
    return vec3<u32>(1u, falseCount, 0u);
  }
  if (condition) {
    return vec3<u32>(0u, 0u, 0u);
  }
  let f = falseCount + 1u;
  return vec3<u32>(select(0u, 1u, f >= need), f, 0u);
}

// The metrics of the visited state (docs/model.md section 5), what the decision reads, and (in zq.w) the
// phase increments of its step (section 4 step 4), as step.ts's measure.
struct Measured {
  rc: f32,
  cohc: f32,
  entc: f32,
  locc: f32,
  domc: f32,
  controlled: f32,
  mean: f32,
  // bit m set: metric m (resonanceStrength, coherence, entropy, locality, dominance) is not finite
  mask: u32,
  finite: bool,
  stepOk: bool,
}

fn measure(sim: u32, lid: u32, prm: SimParams, hdr: SimHeader) -> Measured {
  let k = prm.k;
  let base = sim * PAD_K;
  let opts = prm.opts;
  let kl = (opts & OPT_KL) != 0u;
  let noiseAmp = sqrt(2.0 * hdr.temp * prm.dt);
  var sA = vec4<f32>(0.0);
  var sB = vec4<f32>(0.0);
  var sC = vec4<f32>(0.0);
  for (var i = lid; i < k; i += WG_V) {
    let st = state[base + i];
    let p = st.y;
    let cs = cosSin(st.x);
    let a = ampOf(p, opts);
    let z = zq[base + i];
    let eg = elemG[base + i];
    sA += vec4<f32>(p * cs.x, p * cs.y, a * (cs.x * z.x + cs.y * z.y), a * z.z);
    var e = 0.0;
    if (p > 0.0) {
      if (kl) {
        if (eg.x > 0.0) {
          e = p * lnAcc(p / eg.x);
        } else {
          sC.z = 1.0;   // P ln(P/0) = +inf: entropy max(0, 1 - inf) = 0
        }
      } else {
        e = p * lnAcc(p);
      }
    }
    let w = eg.y;
    sB += vec4<f32>(e, p * eg.z, w * p * cs.x, w * p * cs.y);
    sC.x += w * p;
    sC.y = max(sC.y, p);
    // Section 4 step 4's increment, formed here so that a step that cannot be represented fails the state it
    // starts from (section 9); the update applies it from zq.w (this invocation owns element i).
    let torque = select((cs.x * z.y - cs.y * z.x) / z.z, 0.0, z.z < TINY);
    var dth = prm.dt * (hdr.gamma * torque - elemF[base + i].z);
    if (noiseAmp > 0.0) {
      dth = dth + noiseAmp * noiseXi(prm.seed, hdr.restart, hdr.n, i);
    }
    zq[base + i].w = dth;
    var bad = 0.0;
    if (nonFinite(dth) || abs(dth) > MAX_PHASE_STEP) {
      bad = 1.0;
    }
    if (nonFinite(st.x)) {
      bad = 2.0;
    }
    if (nonFinite(p)) {
      bad = 3.0;
    }
    sC.w = max(sC.w, bad);
  }
  redA[lid] = sA;
  redB[lid] = sB;
  redC[lid] = sC;
  workgroupBarrier();
  for (var s = WG_V / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      redA[lid] = redA[lid] + redA[lid + s];
      redB[lid] = redB[lid] + redB[lid + s];
      let c0 = redC[lid];
      let c1 = redC[lid + s];
      redC[lid] = vec4<f32>(c0.x + c1.x, max(c0.y, c1.y), max(c0.z, c1.z), max(c0.w, c1.w));
    }
    workgroupBarrier();
  }
  let rA = workgroupUniformLoad(&redA[0]);
  let rB = workgroupUniformLoad(&redB[0]);
  let rC = workgroupUniformLoad(&redC[0]);
  let mean = rB.y;

  var sV = 0.0;
  for (var i = lid; i < k; i += WG_V) {
    let d = elemG[base + i].z - mean;
    sV += state[base + i].y * d * d;
  }
  let variance = wgSum1(sV, lid);

  let r = sqrt(rA.x * rA.x + rA.y * rA.y);
  let coherence = select(rA.z / rA.w, 0.0, rA.w < TINY);
  var entropy = 0.0;
  if (k > 1u) {
    if (kl) {
      entropy = select(max(0.0, 1.0 - rB.x / prm.lnK), 0.0, rC.z > 0.0);
    } else {
      entropy = -rB.x / prm.lnK;
    }
  }
  let locality = 1.0 - sqrt(variance / prm.vmax);
  let dominance = rC.y;
  // A metric is not finite when its value is not, or when a mass (every metric) or a phase (those that read
  // phases) is not (docs/model.md section 9): explicit, since min/max/clamp of a NaN may give a number.
  let level = rC.w;
  var mask = 0u;
  if (nonFinite(r) || level >= 2.0) {
    mask |= 1u;
  }
  if (nonFinite(coherence) || level >= 2.0) {
    mask |= 2u;
  }
  if (nonFinite(entropy) || level >= 3.0) {
    mask |= 4u;
  }
  if (nonFinite(locality) || level >= 3.0) {
    mask |= 8u;
  }
  if (nonFinite(dominance) || level >= 3.0) {
    mask |= 16u;
  }
  // lnNu not NaN and the reported amplitudes e^lnNu a_i finite in f64 (formed on the host); -inf is a norm
  // that underflowed to 0: zero amplitudes, not a failure
  let normOk = bitcast<u32>(hdr.lnNu) == 0xff800000u || (!nonFinite(hdr.lnNu) && hdr.lnNu <= LN_F64_MAX);
  let finite = mask == 0u && normOk;
  let stepOk = level < 1.0;
  let rc = clamp(r, 0.0, 1.0);
  let cohc = clamp(coherence, 0.0, 1.0);
  let entc = clamp(entropy, 0.0, 1.0);
  let locc = clamp(locality, 0.0, 1.0);
  let domc = clamp(dominance, 0.0, 1.0);
  let hasTarget = (opts & OPT_TARGET) != 0u;
  var controlled = rc;
  if (hasTarget) {
    if (prm.targetOp == OP_RQ) {
      controlled = cohc;
    } else if (prm.targetOp == OP_CUSTOM) {
      // R = 0 when sum w_i P_i < TINY, as on the CPU (docs/model.md section 9).
      controlled = select(0.0, modulus(rB.z, rB.w) / rC.x, rC.x >= TINY);
    }
  }

  return Measured(rc, cohc, entc, locc, domc, controlled, mean, mask, finite, stepOk);
}

// Restart rho + 1 (step.ts, restart): the phases re-seeded with jitter; masses, lnNu and A are kept.
fn restart(sim: u32, lid: u32, prm: SimParams, h: ptr<function, SimHeader>) {
  let k = prm.k;
  let base = sim * PAD_K;
  let next = (*h).restart + 1u;
  for (var i = lid; i < k; i += WG_V) {
    let u = symUniform(prm.seed, next, JITTER_STREAM, i);
    state[base + i].x = wrap2pi(elemF[base + i].w + prm.jitter * u);
  }
  (*h).n = 0u;
  (*h).restart = next;
  (*h).gamma = prm.gammaInit;
  (*h).temp = prm.temp0;
  (*h).ebest = BIG;
  (*h).plateauCount = 0u;
  (*h).convCount = 0u;
}

// Section 4 steps 3–6 and 8 (step.ts, update); step 7, the learned matrix, is learn.wgsl.
fn update(sim: u32, lid: u32, prm: SimParams, h: ptr<function, SimHeader>, m: Measured) {
  let k = prm.k;
  let base = sim * PAD_K;
  let opts = prm.opts;
  let hasTarget = (opts & OPT_TARGET) != 0u;
  let mean = m.mean;
  let controlled = m.controlled;
  let gamma = (*h).gamma;
  var ymaxL = -BIG;
  for (var i = lid; i < k; i += WG_V) {
    let st = state[base + i];
    let cs = cosSin(st.x);
    let z = zq[base + i];
    let align = select((cs.x * z.x + cs.y * z.y) / z.z, 0.0, z.z < TINY);
    let th = wrap2pi(st.x + z.w);
    let d = elemG[base + i].z - mean;
    let y = lnAcc(max(st.y, EXP_M80)) + prm.hLambda * align - prm.hPenalty * (d * d);
    state[base + i] = vec2<f32>(th, y);   // y parked in the mass slot (this invocation owns i)
    ymaxL = max(ymaxL, y);
  }
  let ymax = wgMax1(ymaxL, lid);
  var totL = 0.0;
  for (var i = lid; i < k; i += WG_V) {
    let e = exp(state[base + i].y - ymax);
    state[base + i].y = e;
    totL += e;
  }
  let total = wgSum1(totL, lid);
  for (var i = lid; i < k; i += WG_V) {
    state[base + i].y = state[base + i].y / total;
  }
  for (var sweep = 0u; sweep < prm.sweeps; sweep++) {
    var sL = 0.0;
    for (var i = lid; i < k; i += WG_V) {
      sL += state[base + i].y;
    }
    let sum = wgSum1(sL, lid);
    for (var i = lid; i < k; i += WG_V) {
      state[base + i].y = state[base + i].y / sum;
    }
  }
  if ((opts & OPT_NORM_CHANNEL) != 0u) {
    (*h).lnNu = (*h).lnNu - prm.hLambda * (controlled - prm.targetValue);
  }
  if (!hasTarget || controlled < prm.targetValue) {
    (*h).gamma = min(gamma + prm.gammaGrowth, prm.gammaMax);
  }
  (*h).temp = (*h).temp * prm.beta;
  (*h).n = (*h).n + 1u;
  (*h).step = (*h).step + 1u;
  (*h).didUpdate = 1u;
}

// The record and snapshot of the visited state with `flags`, then its end, restart or update (step.ts, end).
fn end(sim: u32, lid: u32, prm: SimParams, h: ptr<function, SimHeader>, m: Measured, flags: u32, plateau: bool) {
  let k = prm.k;
  let base = sim * PAD_K;
  let doSnap = (flags & F_SNAPSHOT) != 0u;
  let snapIdx = (*h).snapCount;
  if (doSnap) {
    let sb = (sim * SNAP_CAP + snapIdx) * 2u * PAD_K;
    for (var i = lid; i < k; i += WG_V) {
      let st = state[base + i];
      snaps[sb + i] = st.x;
      snaps[sb + k + i] = st.y;
    }
  }
  if (lid == 0u && flags != 0u) {
    records[sim * REC_CAP + (*h).recCount] = GpuRecord(
      (*h).step, (*h).restart, (*h).n, flags,
      m.rc, m.cohc, m.entc, m.locc, m.domc, select(0u, 1u, plateau),
      (*h).gamma, (*h).lnNu, m.controlled, select(NONE, snapIdx, doSnap), m.mask, 0u);
  }
  if (flags != 0u) {
    (*h).recCount = (*h).recCount + 1u;
  }
  if (doSnap) {
    (*h).snapCount = (*h).snapCount + 1u;
  }
  (*h).budget = (*h).budget - 1u;
  (*h).didUpdate = 0u;

  if ((flags & F_TERMINAL) != 0u) {
    var st = ST_COMPLETED;
    if ((flags & F_FAILED) != 0u) {
      st = ST_FAILED;
    } else if ((flags & F_CONVERGED) != 0u) {
      st = ST_CONVERGED;
    } else if ((flags & F_PLATEAU) != 0u) {
      st = ST_PLATEAU;
    }
    (*h).status = st;
  } else if ((flags & F_RESTART) != 0u) {
    restart(sim, lid, prm, h);
  } else {
    update(sim, lid, prm, h, m);
  }
}

@compute @workgroup_size(WG_V)
fn visit(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let sim = wid.x;
  let lid = lid3.x;
  let prm = params[sim];
  if (lid == 0u) {
    wgHdr = headers[sim];
  }
  let hdr = workgroupUniformLoad(&wgHdr);
  if (!simActive(prm, hdr)) {
    if (lid == 0u && hdr.didUpdate != 0u) {
      headers[sim].didUpdate = 0u;
    }
    return;
  }
  let opts = prm.opts;
  let hasTarget = (opts & OPT_TARGET) != 0u;
  let m = measure(sim, lid, prm, hdr);
  let finite = m.finite;
  let stepOk = m.stepOk;
  let entc = m.entc;
  let domc = m.domc;
  let controlled = m.controlled;

  // ---- counters and decision (docs/engine.md, "Ticks" 2–3; first match wins) ----
  // A revisit (a completed run given extra steps: this state's counters, decision and record were done
  // when the run ended) skips all of it and goes straight to the update, without a record.
  var h = hdr;
  var flags = 0u;
  var plateau = false;
  if (h.revisit == 0u) {
    if (entc < h.ebest - prm.plateauEps) {
      h.ebest = entc;
      h.plateauCount = 0u;
    } else {
      h.plateauCount = h.plateauCount + 1u;
    }
    plateau = h.plateauCount >= prm.plateauT;
    if (hasTarget) {
      h.convCount = select(0u, h.convCount + 1u, controlled >= prm.convThreshold);
    }
    let converged = hasTarget && h.convCount >= prm.convNeed;
    let canRestart = h.restart < prm.restarts;
    // First match wins; a step that cannot be represented fails the state where that step would be applied.
    if (!finite || ((opts & OPT_SPACE) != 0u && !stepOk)) {
      flags = F_FAILED | F_TERMINAL;
    } else if ((opts & OPT_SPACE) != 0u) {
      // space mode: edge-triggered events, re-armed after plateauT visits with the condition false
      let p = edgeEvent(h.pArmed, h.pFalse, plateau, prm.plateauT);
      h.pArmed = p.x;
      h.pFalse = p.y;
      if (p.z != 0u) {
        flags |= F_PLATEAU;
      }
      let collapse = domc >= prm.collapseThreshold;
      let c = edgeEvent(h.cArmed, h.cFalse, collapse, prm.plateauT);
      h.cArmed = c.x;
      h.cFalse = c.y;
      if (c.z != 0u) {
        flags |= F_COLLAPSE;
      }
    } else if (converged) {
      flags = F_CONVERGED | F_TERMINAL;
    } else if (plateau) {
      flags = F_PLATEAU | select(F_TERMINAL, F_RESTART, canRestart);
    } else if (h.n >= prm.steps) {
      flags = select(F_TERMINAL, F_RESTART, canRestart);
    } else if (!stepOk) {
      flags = F_FAILED | F_TERMINAL;
    }
    if (prm.metricsInterval != 0u && h.step % prm.metricsInterval == 0u) {
      flags |= F_METRICS;
    }
    if ((prm.snapshotsInterval != 0u && h.step % prm.snapshotsInterval == 0u) || (flags & F_TERMINAL) != 0u) {
      flags |= F_SNAPSHOT;
    }
    if (h.step == h.snapAt) {
      flags |= F_SNAPSHOT;   // the host's one-shot snapshot step
      h.snapAt = NONE;
    }
  } else if (!stepOk) {
    // A revisit whose step cannot be represented: the run fails on this state after all, with its record.
    plateau = h.plateauCount >= prm.plateauT;
    flags = F_FAILED | F_TERMINAL | F_SNAPSHOT;
    if (prm.metricsInterval != 0u && h.step % prm.metricsInterval == 0u) {
      flags |= F_METRICS;
    }
  }
  h.revisit = 0u;

  end(sim, lid, prm, &h, m, flags, plateau);
  if (lid == 0u) {
    headers[sim] = h;
  }
}
