/** Wire types of the Resonance API (openapi.yaml), as the SDK's users see them. */

export type Role = 'owner' | 'admin' | 'writer' | 'reader';
export type SpaceStatus = 'active' | 'locked' | 'archived';

export interface SpaceConfigInput {
  name: string;
  basis: { primes: number[]; order?: 'ascending' | 'learned'; cutoff?: number };
  phases?: { golden?: boolean; silver?: boolean; custom?: number[] };
  operators?: {
    mixer?: { gamma0?: number; gammaGrowth?: number; gammaMax?: number; temperature0?: number; beta?: number };
    resonanceTarget?: number;
    localityBias?: number;
    semantic?: { enabled?: boolean; kernel?: 'prime' };
    frequencyScale?: number;
  };
  entropy?: { lambda?: number; plateauEps?: number; plateauT?: number; collapseThreshold?: number };
  policy?: { maxMembers?: number; publishHz?: number; historySeconds?: number; allowGuest?: boolean };
  seed?: number;
}

export interface Space {
  id: string;
  name: string;
  createdAt: string;
  ownerOrg: string;
  epoch: number;
  version: number;
  status: SpaceStatus;
  members: number;
  config: Required<SpaceConfigInput>;
}

export interface SpaceMetrics {
  resonanceStrength: number | null;
  coherence: number | null;
  locality: number | null;
  entropy: number | null;
  dominance: number | null;
}

export interface SpaceSnapshot {
  spaceId: string;
  epoch: number;
  version: number;
  t: number;
  state: {
    primes: number[];
    phases: number[];
    masses: number[];
    operators: Record<string, unknown>;
    entropy: Record<string, unknown>;
    policy: Record<string, unknown>;
  };
  metrics: SpaceMetrics | null;
}

export interface DeltaOp {
  op: 'set_phase' | 'shift_phase' | 'set_operator' | 'set_entropy' | 'set_policy';
  path: string;
  value: unknown;
  meta?: Record<string, unknown>;
}

export interface DeltaProposal {
  fromVersion: number;
  toVersion?: number;
  epoch?: number;
  cv?: number[];
  ops: DeltaOp[];
}

export interface Delta {
  fromVersion: number;
  toVersion: number;
  epoch: number;
  ops: Array<{ op: string; path: string; value: unknown }>;
  author: string | null;
}

export type Telemetry = { t: number; version: number } & SpaceMetrics;

export interface PhasesFrame {
  t: number;
  version: number;
  phases: number[];
  masses: number[];
}

export interface SpaceEvent {
  name: 'space.updated' | 'basis.changed' | 'plateau' | 'collapse' | 'member.joined' | 'member.left';
  at: string;
  data: Record<string, unknown>;
}

export interface SessionToken {
  spaceId: string;
  sessionId: string;
  websocketUrl: string;
  sseUrl: string;
  token: string;
  expiresIn: number;
  role: Role;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface HqeMetrics {
  resonanceStrength: number | null;
  coherence: number | null;
  entropy: number | null;
  locality: number | null;
  dominance: number | null;
  plateauDetected: boolean;
}

export interface HqeSnapshot {
  step: number;
  restart: number;
  metrics: HqeMetrics;
  amplitudes?: number[];
  phases?: number[];
}

export interface HqeSession {
  id: string;
  status: 'initializing' | 'running' | 'plateau' | 'converged' | 'failed' | 'completed' | 'closed';
  step: number;
  restart: number;
  seed: number;
  metrics: HqeMetrics | null;
  createdAt: string;
  updatedAt: string;
  config: Record<string, unknown>;
  /** The engine that runs it: CPU f64 for a band of primes f32 cannot resolve, else the server's. */
  backend: 'cpu' | 'webgpu';
  adapter: string;
  precision: 'f32' | 'f64';
}

export interface HqeRunResult {
  runId: string;
  status: 'converged' | 'plateau' | 'completed' | 'failed';
  seed: number;
  steps: number;
  restarts: number;
  backend: 'cpu' | 'webgpu';
  adapter: string;
  precision: 'f32' | 'f64';
  finalMetrics: HqeMetrics;
  snapshots: HqeSnapshot[];
  metrics: Array<HqeMetrics & { step: number; restart: number }>;
  events: Array<{ type: string; step: number; restart: number }>;
  warnings: string[];
  elapsedMs: number;
}

/** One event of an SSE stream. */
export interface StreamEvent<T = unknown> {
  event: string;
  id: string | undefined;
  data: T;
}

export interface Member {
  id: string;
  userId: string;
  role: Role;
  displayName: string | null;
  joinedAt: string;
}
