/**
 * The wire contract of the Resonance API, written once: roles, statuses, event names, close codes, the
 * realtime frames, snapshots and configurations. The server and the SDK both import it; it has no runtime
 * dependency, so a browser bundle pays only for the constants it uses. The server's zod schemas are built
 * from these lists, and a type test checks that what they accept and produce is what these types say.
 */

// ---- roles and statuses ----

/** A member's role in a space, from most to least privileged. */
export const ROLES = ['owner', 'admin', 'writer', 'reader'] as const;
export type Role = (typeof ROLES)[number];

export const SPACE_STATUSES = ['active', 'locked', 'archived'] as const;
export type SpaceStatus = (typeof SPACE_STATUSES)[number];

/** An HQE session's status: `completed` ran its whole schedule without converging; `closed` was deleted. */
export const HQE_SESSION_STATUSES = ['initializing', 'running', 'plateau', 'converged', 'failed', 'completed', 'closed'] as const;
export type HqeSessionStatus = (typeof HQE_SESSION_STATUSES)[number];

/** How a run (or a session's schedule) ended. */
export const RUN_STATUSES = ['converged', 'plateau', 'completed', 'failed'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const BACKENDS = ['cpu', 'webgpu'] as const;
export type Backend = (typeof BACKENDS)[number];
export const PRECISIONS = ['f32', 'f64'] as const;
export type Precision = (typeof PRECISIONS)[number];

// ---- event names ----

/** Events of a space, in `event` frames and on its SSE stream. */
export const SPACE_EVENT_NAMES = ['space.updated', 'basis.changed', 'plateau', 'collapse', 'member.joined', 'member.left'] as const;
export type SpaceEventName = (typeof SPACE_EVENT_NAMES)[number];

/** Events of an HQE session's SSE stream; `end` is the last, once the session is finished. */
export const HQE_STREAM_EVENTS = ['snapshot', 'metrics', 'event', 'status', 'end'] as const;
export type HqeStreamEvent = (typeof HQE_STREAM_EVENTS)[number];

/** Webhook event types (docs/webhooks.md). */
export const WEBHOOK_EVENT_TYPES = ['hqe.plateau', 'hqe.converged', 'hqe.failed', ...SPACE_EVENT_NAMES] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

// ---- deltas ----

/** What a client may propose; `replace_basis` is written by the server alone (POST /basis). */
export const DELTA_OPS = ['set_phase', 'shift_phase', 'set_operator', 'set_entropy', 'set_policy'] as const;
export type DeltaOpName = (typeof DELTA_OPS)[number];

export interface DeltaOp {
  op: DeltaOpName;
  /** A JSON pointer into the snapshot's state, e.g. `/state/phases/3`. */
  path: string;
  value: unknown;
  meta?: Record<string, unknown>;
}

/** A proposal: based on `fromVersion`; the server assigns the version it becomes. */
export interface DeltaProposal {
  fromVersion: number;
  /** Ignored: the server assigns versions. */
  toVersion?: number;
  epoch?: number;
  cv?: number[];
  ops: DeltaOp[];
}

/** The log entry of a basis change (written by the server; no client op can name it). */
export interface BasisOp {
  op: 'replace_basis';
  path: '/state/basis';
  value: { primes: number[]; order: BasisOrder; cutoff: number };
}

/** An accepted delta as every listener receives it. */
export interface Delta {
  /** Always toVersion - 1: the version the server applied it on (a shift_phase is rebased onto it). */
  fromVersion: number;
  toVersion: number;
  epoch: number;
  ops: Array<{ op: DeltaOpName; path: string; value: unknown }> | BasisOp[];
  /** The member that proposed it; null for the server's own (a basis change). */
  author: string | null;
}

// ---- space configuration ----

export type BasisOrder = 'ascending' | 'learned';

/** A space's configuration after normalisation: every default filled in. */
export interface SpaceConfig {
  name: string;
  basis: { primes: number[]; order: BasisOrder; cutoff: number };
  phases: { golden: boolean; silver: boolean; custom?: number[] | undefined };
  operators: SpaceOperators;
  entropy: SpaceEntropy;
  policy: SpacePolicy;
  seed: number;
}

export interface SpaceOperators {
  mixer: { gamma0: number; gammaGrowth: number; gammaMax?: number | undefined; temperature0: number; beta: number };
  resonanceTarget: number;
  localityBias: number;
  semantic: { enabled: boolean; kernel: 'prime' };
  frequencyScale: number;
}

export interface SpaceEntropy {
  lambda: number;
  plateauEps: number;
  plateauT: number;
  collapseThreshold: number;
}

export interface SpacePolicy {
  maxMembers: number;
  publishHz: number;
  historySeconds: number;
  allowGuest: boolean;
}

/** What a client may leave out of a configuration: any field with a default, at any depth (arrays are values). */
type Input<T> = { [K in keyof T]?: InputValue<T[K]> };
type InputValue<V> = V extends readonly unknown[] ? V : V extends object ? Input<V> : V;
/** One object type rather than an intersection: what editors show, and what type equality compares. */
type Flat<T> = { [K in keyof T]: T[K] } & {};

/** What a client sends to create a space: a name and primes; anything else has a default. */
export type SpaceConfigInput = Flat<Input<Omit<SpaceConfig, 'name' | 'basis'>> & { name: string; basis: Flat<{ primes: number[] } & Input<Omit<SpaceConfig['basis'], 'primes'>>> }>;

// ---- HQE configuration ----

export type ResonanceOperator = 'R' | 'R_q' | 'custom';
export type MixerType = 'local' | 'flow' | 'learned';
export type EntropyBase = 'shannon' | 'kl_to_prior';
export type NormKind = 'L1' | 'L2';

/** An HQE configuration after parsing (docs/model.md section 1): every default filled in. */
export interface HqeConfig {
  primes: number[];
  initialAmplitudes?: number[] | undefined;
  phaseSeeding: { golden: boolean; silver: boolean; customPhases?: number[] | undefined };
  resonanceTarget?: { value: number; operator: ResonanceOperator; notes?: string | undefined; weights?: number[] | undefined } | undefined;
  mixer: {
    type: MixerType;
    gamma0: number;
    gammaGrowth: number;
    gammaMax?: number | undefined;
    temperature0: number;
    beta: number;
    localityBias: number;
    learningRate: number;
  };
  entropy: { base: EntropyBase; lambda: number; primePenalty: { enabled: boolean; lambdaPrime: number } };
  boundary: { norm: NormKind; enforceUnitNorm: boolean; projectorSweeps: number };
  observables: { recordAmplitudes: boolean; recordPhases: boolean; metricsInterval: number; snapshotsInterval: number };
  schedule: { dt: number; steps: number; restarts: number; plateauEps: number; plateauT: number };
  /** w_i = 1 + frequencyScale * ln p_i. */
  frequencyScale: number;
  seed?: number | undefined;
}

/** What a client sends: `primes`, and whatever it wants other than the defaults. */
export type HqeConfigInput = Flat<Input<Omit<HqeConfig, 'primes' | 'resonanceTarget'>> & {
  primes: number[];
  resonanceTarget?: Flat<{ value: number } & Input<Omit<NonNullable<HqeConfig['resonanceTarget']>, 'value'>>> | undefined;
}>;

/** A normalized config, as a validation, a run or a session reports it: sorted basis, seed and gammaMax resolved. */
export type NormalizedHqeConfig = Flat<Omit<HqeConfig, 'seed' | 'mixer'> & { seed: number; mixer: Flat<HqeConfig['mixer'] & { gammaMax: number }> }>;

// ---- snapshots and telemetry ----

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
  /** Tick of the state within the epoch. */
  t: number;
  state: {
    /** The ordered basis: phase i belongs to primes[i]. */
    primes: number[];
    phases: number[];
    masses: number[];
    operators: SpaceOperators;
    entropy: SpaceEntropy;
    policy: SpacePolicy;
  };
  metrics: SpaceMetrics | null;
}

export type Telemetry = { t: number; version: number } & SpaceMetrics;

// ---- realtime frames (docs/spaces.md "Realtime") ----

export type Encoding = 'json' | 'msgpack';

/** The WebSocket subprotocol of each encoding: it chooses the encoding at the upgrade (`hello` may choose later). */
export const SUBPROTOCOL = { json: 'resonance.v1.json', msgpack: 'resonance.v1.msgpack' } as const satisfies Record<Encoding, string>;

/** The encoding a subprotocol names, or undefined for any other string (a Map: no inherited keys answer). */
export const SUBPROTOCOLS: ReadonlyMap<string, Encoding> = new Map(Object.entries(SUBPROTOCOL).map(([encoding, name]) => [name, encoding as Encoding]));

export const SUBSCRIPTION_KINDS = ['telemetry', 'deltas', 'events', 'phases'] as const;
export type SubscriptionKind = (typeof SUBSCRIPTION_KINDS)[number];
/** A connection's subscription until it sends `subscribe`: `phases` is opt-in. */
export const DEFAULT_SUBSCRIPTION: readonly SubscriptionKind[] = ['telemetry', 'deltas', 'events'];

export type ClientFrame =
  | { type: 'hello'; version?: 1; sessionId?: string; encoding?: Encoding; lastVersion?: number }
  | { type: 'subscribe'; kinds: SubscriptionKind[] }
  | { type: 'propose_delta'; delta: DeltaProposal; requestId?: string }
  | { type: 'ping'; ts?: number };

export interface WelcomeFrame {
  type: 'welcome';
  spaceId: string;
  epoch: number;
  version: number;
  role: Role;
  encoding: Encoding;
  sessionId: string;
}
export interface SnapshotFrame {
  type: 'snapshot';
  snapshot: SpaceSnapshot;
  /** This connection's accepted proposals whose delta frames the snapshot replaces (a stale connection). */
  acks?: Array<{ requestId: string; toVersion: number }>;
}
/** `requestId` only on the proposer's own copy over WebSocket. */
export type DeltaFrame = { type: 'delta'; requestId?: string } & Delta;
export type TelemetryFrame = { type: 'telemetry' } & Telemetry;
/** Every phase and mass at a tick (the opt-in `phases` subscription). */
export interface Phases {
  t: number;
  version: number;
  phases: number[];
  masses: number[];
}
export type PhasesFrame = { type: 'phases' } & Phases;
export interface SpaceEvent {
  name: SpaceEventName;
  at: string;
  data: Record<string, unknown>;
}
export type EventFrame = { type: 'event' } & SpaceEvent;
export interface ConflictFrame {
  type: 'conflict';
  expectedFrom: number;
  actual: number;
  code: string;
  detail: string;
  requestId?: string;
}
export interface FieldError {
  /** RFC 6901 pointer into the request body. */
  pointer: string;
  code: string;
  message: string;
}
export interface ErrorFrame {
  type: 'error';
  code: string;
  message: string;
  errors?: FieldError[];
  /** Details a client acts on: the quota and limit of quota_exceeded, the retry time of rate_limited. */
  meta?: Record<string, unknown>;
  requestId?: string;
}
export type ServerFrame = WelcomeFrame | SnapshotFrame | DeltaFrame | TelemetryFrame | PhasesFrame | EventFrame | ConflictFrame | { type: 'pong'; ts?: number } | ErrorFrame;

// ---- close codes ----

/** WebSocket close codes (docs/spaces.md "Realtime"). */
export const CloseCode = {
  NORMAL: 1000,
  /** The server is shutting down: reconnect (to another node). */
  GOING_AWAY: 1001,
  /** The client does not read: replies to its own requests overflowed the hard send-buffer limit. */
  POLICY: 1008,
  /** The server failed while starting the session. */
  INTERNAL: 1011,
  /** Too many bad frames within a short window. */
  TOO_MANY_BAD_FRAMES: 4008,
  /** The API key or OAuth client that minted the session token was revoked. */
  CREDENTIAL_REVOKED: 4401,
  /** The member was removed from the space. */
  MEMBER_REMOVED: 4403,
  /** The space has policy.maxMembers members already. */
  SPACE_FULL: 4409,
  /** The space was archived or deleted. */
  SPACE_GONE: 4410,
  /** An org quota refused the session (docs/tenancy.md): it may clear later, so a client may retry. */
  QUOTA_EXCEEDED: 4429,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Close codes after which reconnecting cannot help. */
export const FINAL_CLOSE_CODES: ReadonlySet<number> = new Set([
  CloseCode.NORMAL, CloseCode.TOO_MANY_BAD_FRAMES, CloseCode.CREDENTIAL_REVOKED, CloseCode.MEMBER_REMOVED, CloseCode.SPACE_FULL, CloseCode.SPACE_GONE,
]);

/** The HTTP status a close code stands for (SPACE_GONE's comes with its error frame: 404 deleted, 409 archived). */
export const CLOSE_STATUS: Readonly<Record<number, number>> = {
  [CloseCode.GOING_AWAY]: 503,
  [CloseCode.POLICY]: 400,
  [CloseCode.INTERNAL]: 500,
  [CloseCode.TOO_MANY_BAD_FRAMES]: 400,
  [CloseCode.CREDENTIAL_REVOKED]: 401,
  [CloseCode.MEMBER_REMOVED]: 403,
  [CloseCode.SPACE_FULL]: 409,
  [CloseCode.QUOTA_EXCEEDED]: 409,
};
