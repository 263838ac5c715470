// layout.wgsl: the structs and constants every pass shares with the host.
// Generated from src/engine/webgpu/layout.ts by `npm run shaders`: do not edit.
//   Inputs: none. Outputs: none. Workgroup layout: none (declarations only).

struct SimParams {
  k: u32,
  seed: u32,
  mixer: u32,
  opts: u32,
  targetOp: u32,
  steps: u32,
  restarts: u32,
  plateauT: u32,
  convNeed: u32,
  metricsInterval: u32,
  snapshotsInterval: u32,
  sweeps: u32,
  learnedIndex: u32,
  dt: f32,
  hLambda: f32,
  hPenalty: f32,
  gammaInit: f32,
  gammaGrowth: f32,
  gammaMax: f32,
  temp0: f32,
  beta: f32,
  targetValue: f32,
  convThreshold: f32,
  plateauEps: f32,
  vmax: f32,
  kernelScale: f32,
  bias: f32,
  lnK: f32,
  jitter: f32,
  learnRate: f32,
  learnKeep: f32,
  collapseThreshold: f32,
}

struct SimHeader {
  status: u32,
  n: u32,
  restart: u32,
  step: u32,
  budget: u32,
  recCount: u32,
  snapCount: u32,
  didUpdate: u32,
  gamma: f32,
  temp: f32,
  lnNu: f32,
  ebest: f32,
  plateauCount: u32,
  convCount: u32,
  revisit: u32,
  snapAt: u32,
  pArmed: u32,
  pFalse: u32,
  cArmed: u32,
  cFalse: u32,
}

struct GpuRecord {
  step: u32,
  restart: u32,
  n: u32,
  flags: u32,
  resonance: f32,
  coherence: f32,
  entropy: f32,
  locality: f32,
  dominance: f32,
  plateau: u32,
  gamma: f32,
  lnNu: f32,
  controlled: f32,
  snap: u32,
  nonFinite: u32,
  pad1: u32,
}

const NONE: u32 = 4294967295u;

const TWO_PI_F: f32 = 6.2831854820251465f;

const PI_F: f32 = 3.1415927410125732f;

const TINY: f32 = 1e-30f;

const BIG: f32 = 3.4028234663852886e+38f;

const EXP_M80: f32 = 1.8048513285848406e-35f;

const MAX_PHASE_STEP: f32 = 1048576f;

const LN_F64_MAX: f32 = 709.7826538085938f;

const XI_SCALE: f32 = 1.7320508f;

const JITTER_STREAM: u32 = 4294967295u;

const MIXER_LOCAL: u32 = 0u;

const MIXER_FLOW: u32 = 1u;

const MIXER_LEARNED: u32 = 2u;

const OPT_SEMANTIC: u32 = 1u;

const OPT_L2: u32 = 2u;

const OPT_KL: u32 = 4u;

const OPT_TARGET: u32 = 8u;

const OPT_NORM_CHANNEL: u32 = 16u;

const OPT_SPACE: u32 = 32u;

const OP_R: u32 = 0u;

const OP_RQ: u32 = 1u;

const OP_CUSTOM: u32 = 2u;

const F_METRICS: u32 = 1u;

const F_SNAPSHOT: u32 = 2u;

const F_TERMINAL: u32 = 4u;

const F_PLATEAU: u32 = 8u;

const F_CONVERGED: u32 = 16u;

const F_FAILED: u32 = 32u;

const F_RESTART: u32 = 64u;

const F_COLLAPSE: u32 = 128u;

const ST_RUNNING: u32 = 0u;

const ST_PLATEAU: u32 = 1u;

const ST_CONVERGED: u32 = 2u;

const ST_FAILED: u32 = 3u;

const ST_COMPLETED: u32 = 4u;
