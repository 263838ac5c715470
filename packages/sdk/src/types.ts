/** REST resources of the Resonance API (openapi.yaml) as the SDK returns them; the wire contract they share with the server is protocol.ts. */
import type {
  Backend, HqeSessionStatus, NormalizedHqeConfig, Precision, Role, RunStatus, SpaceConfig, SpaceStatus,
} from './protocol.js';

export interface Space {
  id: string;
  name: string;
  createdAt: string;
  ownerOrg: string;
  epoch: number;
  version: number;
  status: SpaceStatus;
  members: number;
  config: SpaceConfig;
}

/** What a session token is minted for: one space, with the role and display name the member asks for. */
export interface SessionTokenRequest {
  spaceId: string;
  role?: Role | undefined;
  displayName?: string | undefined;
}

/**
 * Where a client without an API key gets its session tokens: a URL of the page's own backend, which is
 * POSTed a SessionTokenRequest as JSON and answers with the SessionToken that POST /v1/spaces/{id}/sessions
 * gave it; or a function that returns one.
 */
export type AuthEndpoint = string | ((request: SessionTokenRequest) => Promise<SessionToken>);

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
  status: HqeSessionStatus;
  step: number;
  restart: number;
  seed: number;
  metrics: HqeMetrics | null;
  createdAt: string;
  updatedAt: string;
  config: NormalizedHqeConfig;
  /** The engine that runs it: CPU f64 for a band of primes f32 cannot resolve, else the server's. */
  backend: Backend;
  adapter: string;
  precision: Precision;
}

export interface HqeRunResult {
  runId: string;
  status: RunStatus;
  seed: number;
  steps: number;
  restarts: number;
  backend: Backend;
  adapter: string;
  precision: Precision;
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
