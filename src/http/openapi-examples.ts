/**
 * The request and response examples of openapi.yaml. They tell one story, taken from a real server (the CPU
 * engine; numbers rounded to 4 decimals): the config of examples/hqe.json validated, run and
 * followed as a session, and the demo room of the tests created, changed and joined. Each is typed by its
 * schema here, and test/openapi.test.ts checks every one against the document's JSON schemas.
 */
import type { z } from 'zod';
import type { HQEConfig } from '../model/config.js';
import { QUOTAS, type QuotaSpec } from '../model/tenancy.js';
import type { SpaceBasis, SpaceConfig } from '../model/space.js';
import type { DeltaSchema } from '../sim/deltas.js';
import type { HQERunResponse, MetricsSchema, SnapshotSchema } from './schemas.js';
import type { HQESession, HQEValidateResponse, SnapshotPage, StepRequest } from './routes/hqe.js';
import type {
  DeltaResultSchema, MemberList, SessionRequest, SessionTokenSchema, SpacePage, SpacePatchRequest, SpaceSchema, SpaceSnapshotSchema,
} from './routes/spaces.js';
import type { SpaceWebhookEventSchema, WebhookCreated, WebhookCreateRequest, WebhookEventSchema, WebhookPage, WebhookSchema } from './routes/webhooks.js';
import type { UsageReport } from './routes/usage.js';
import type { ClusterView } from './routes/cluster.js';
import type { TokenRequest, TokenResponse } from './routes/oauth.js';
import type { Health, Readiness } from './routes/ops.js';

type In<T extends z.ZodType> = z.input<T>;
type Out<T extends z.ZodType> = z.output<T>;
type Metrics = Out<typeof MetricsSchema>;

const metrics = (resonanceStrength: number, coherence: number, entropy: number, locality: number, dominance: number): Metrics => ({
  resonanceStrength, coherence, entropy, locality, dominance, plateauDetected: false,
});

// ---- HQE ----

/** examples/hqe.json, as it is (test/openapi.test.ts keeps them equal). */
export const exampleHqeConfig = {
  primes: [2, 3, 5, 7],
  schedule: { steps: 256, dt: 0.1 },
  entropy: { base: 'shannon', lambda: 0.03 },
  resonanceTarget: { value: 0.8, operator: 'R' },
  phaseSeeding: { golden: true, silver: true },
  seed: 42,
} satisfies In<typeof HQEConfig>;

/** The example config with every default filled in, as validate, sessions and session reads return it. */
const seedNormalized = {
  primes: [2, 3, 5, 7],
  phaseSeeding: { golden: true, silver: true },
  resonanceTarget: { value: 0.8, operator: 'R' },
  mixer: { type: 'local', gamma0: 0.2, gammaGrowth: 0.001, temperature0: 1, beta: 0.98, localityBias: 0.3, learningRate: 0.05, gammaMax: 1 },
  entropy: { base: 'shannon', lambda: 0.03, primePenalty: { enabled: true, lambdaPrime: 0.1 } },
  boundary: { norm: 'L2', enforceUnitNorm: true, projectorSweeps: 1 },
  observables: { recordAmplitudes: true, recordPhases: false, metricsInterval: 10, snapshotsInterval: 32 },
  schedule: { dt: 0.1, steps: 256, restarts: 0, plateauEps: 0.000001, plateauT: 150 },
  frequencyScale: 0.1,
  seed: 42,
} satisfies Out<typeof HQEConfig>;

export const validateResponse = { ok: true, warnings: [], normalized: seedNormalized } satisfies Out<typeof HQEValidateResponse>;

/** A config that validates with a warning: the basis is sorted. */
export const unsortedHqeConfig = { primes: [7, 3, 5, 2], schedule: { steps: 64 } } satisfies In<typeof HQEConfig>;

/** The example config, recording every 64 steps so that the whole answer fits on a page. */
export const exampleRunConfig = {
  ...exampleHqeConfig,
  observables: { metricsInterval: 64, snapshotsInterval: 64 },
} satisfies In<typeof HQEConfig>;

const CPU = { backend: 'cpu', adapter: 'cpu f64, WebAssembly simd, 2 worker threads', precision: 'f64' } as const;

// The states the example config visits (the same in a run and in a session: same config, same seed).
const at0 = { step: 0, restart: 0, metrics: metrics(0.158, 0, 1, 0.2359, 0.25), amplitudes: [0.5, 0.5, 0.5, 0.5] };
const at32 = { step: 32, restart: 0, metrics: metrics(0.5971, 0.1513, 0.9931, 0.2745, 0.2905), amplitudes: [0.4598, 0.539, 0.5269, 0.4696] };
const at64 = { step: 64, restart: 0, metrics: metrics(0.2467, 0, 0.9763, 0.308, 0.3338), amplitudes: [0.4271, 0.5778, 0.5388, 0.4399] };
const at96 = { step: 96, restart: 0, metrics: metrics(0.3467, 0, 0.9511, 0.3427, 0.36), amplitudes: [0.3911, 0.6, 0.5658, 0.4085] };
const at128 = { step: 128, restart: 0, metrics: metrics(0.872, 0.6153, 0.9124, 0.3814, 0.3967), amplitudes: [0.3528, 0.6298, 0.5852, 0.3694] };
const at131 = { step: 131, restart: 0, metrics: metrics(0.8339, 0.5218, 0.9086, 0.3848, 0.3999), amplitudes: [0.3495, 0.6324, 0.5867, 0.3658] };

export const runResponse = {
  runId: '93bbd540-bd81-44a4-893e-c5f7cba8e15a',
  status: 'converged',
  seed: 42,
  steps: 131,
  restarts: 0,
  ...CPU,
  finalMetrics: at131.metrics,
  snapshots: [at0, at64, at128, at131],
  metrics: [at0, at64, at128].map(({ step, restart, metrics: m }) => ({ step, restart, ...m })),
  events: [{ type: 'converged', step: 131, restart: 0 }],
  warnings: [],
  elapsedMs: 11.36,
} satisfies Out<typeof HQERunResponse>;

const SESSION_ID = 'ed904684-b0e6-4d1b-8053-7715885bffee';

export const createdSession = {
  id: SESSION_ID,
  status: 'running',
  step: 0,
  restart: 0,
  seed: 42,
  metrics: null,
  createdAt: '2026-12-02T03:23:03.794Z',
  updatedAt: '2026-12-02T03:23:03.794Z',
  config: seedNormalized,
  ...CPU,
} satisfies Out<typeof HQESession>;

export const convergedSession = {
  ...createdSession,
  status: 'converged',
  step: 131,
  metrics: at131.metrics,
  updatedAt: '2026-12-02T03:23:03.818Z',
} satisfies Out<typeof HQESession>;

export const stepRequest = { steps: 32 } satisfies In<typeof StepRequest>;

/** A session of the example config with schedule.steps 64 ends `completed` at step 64; 32 more steps reach 96. */
export const stepResponse = at96 satisfies Out<typeof SnapshotSchema>;

export const snapshotPage = { items: [at0, at32], next_cursor: 'eyJzZXEiOjd9' } satisfies Out<typeof SnapshotPage>;

const sse = (events: Array<{ id?: number; event: string; data: unknown }>, retry = false): string =>
  (retry ? 'retry: 2000\n\n' : '') + events.map((e) => `${e.id !== undefined ? `id: ${e.id}\n` : ''}event: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`).join('');

export const sessionStreamStart = sse([
  { id: 1, event: 'status', data: { status: 'running', step: 0, restart: 0 } },
  { id: 2, event: 'metrics', data: { step: 0, restart: 0, metrics: at0.metrics } },
  { id: 3, event: 'snapshot', data: at0 },
  { id: 4, event: 'metrics', data: { step: 10, restart: 0, metrics: metrics(0.4858, 0.0084, 0.9993, 0.2483, 0.2614) } },
], true);

export const sessionStreamEnd = sse([
  { id: 21, event: 'snapshot', data: at131 },
  { id: 22, event: 'event', data: { type: 'converged', step: 131, restart: 0, metrics: at131.metrics } },
  { id: 23, event: 'status', data: { status: 'converged', step: 131, restart: 0 } },
  { event: 'end', data: { status: 'converged' } },
], true);

// ---- Spaces ----

/** The demo room of the tests (test/helpers/server.ts DEMO_ROOM; test/openapi.test.ts keeps them equal). */
export const demoRoom = {
  name: 'demo-room',
  basis: { primes: [2, 3, 5, 7, 11, 13], cutoff: 1024 },
  phases: { golden: true, silver: true },
  operators: { resonanceTarget: 0.85 },
  entropy: { lambda: 0.03, collapseThreshold: 0.96 },
} satisfies In<typeof SpaceConfig>;

const SPACE_ID = 'spc_26775bb47a3045f7b0c12714f16a637e';
const ORG_ID = 'org_eIsBmJYHUgqGO-cm';
const KEY_ID = 'key_r9KnfiLa70CCAFLX';
const HOST = 'api.example.com';

const operators = (resonanceTarget: number) => ({
  mixer: { gamma0: 0.2, gammaGrowth: 0.001, temperature0: 1, beta: 0.98 },
  resonanceTarget, localityBias: 0.3, semantic: { enabled: false, kernel: 'prime' as const }, frequencyScale: 0.1,
});
const entropy = (lambda: number) => ({ lambda, plateauEps: 0.000001, plateauT: 150, collapseThreshold: 0.96 });
const policy = (allowGuest: boolean) => ({ maxMembers: 128, publishHz: 30, historySeconds: 600, allowGuest });

export const createdSpace = {
  id: SPACE_ID,
  name: 'demo-room',
  createdAt: '2026-12-02T03:23:12.410Z',
  updatedAt: '2026-12-02T03:23:12.410Z',
  ownerOrg: ORG_ID,
  epoch: 0,
  version: 0,
  config: {
    name: 'demo-room',
    basis: { primes: [2, 3, 5, 7, 11, 13], order: 'ascending', cutoff: 1024 },
    phases: { golden: true, silver: true },
    operators: operators(0.85),
    entropy: entropy(0.03),
    policy: policy(false),
    seed: 729254022,
  },
  members: 0,
  status: 'active',
} satisfies Out<typeof SpaceSchema>;

/** A writer nudges one phase; an admin (here the owner) raises the target. */
export const deltaRequest = {
  fromVersion: 0,
  ops: [
    { op: 'shift_phase', path: '/state/phases/2', value: 0.25 },
    { op: 'set_operator', path: '/state/operators/resonanceTarget', value: 0.9 },
  ],
} satisfies In<typeof DeltaSchema>;

const sixths = [0.1667, 0.1667, 0.1667, 0.1667, 0.1667, 0.1667];

export const deltaResult = {
  spaceId: SPACE_ID,
  epoch: 0,
  version: 1,
  t: 0,
  state: {
    primes: [2, 3, 5, 7, 11, 13],
    phases: [0, 3.478, 0.9228, 4.1508, 1.3456, 4.8236],
    masses: sixths,
    operators: operators(0.9),
    entropy: entropy(0.03),
    policy: policy(false),
  },
  metrics: null,
  toVersion: 1,
} satisfies Out<typeof DeltaResultSchema>;

export const patchRequest = { entropy: { lambda: 0.05 }, policy: { allowGuest: true } } satisfies In<typeof SpacePatchRequest>;
export const lockRequest = { status: 'locked' } satisfies In<typeof SpacePatchRequest>;

export const patchedSpace = {
  ...createdSpace,
  version: 2,
  config: { ...createdSpace.config, operators: operators(0.9), entropy: entropy(0.05), policy: policy(true) },
} satisfies Out<typeof SpaceSchema>;

export const basisRequest = { primes: [2, 3, 5, 7, 11, 13, 17, 19] } satisfies In<typeof SpaceBasis>;

/** The basis change: a new epoch; `cutoff` is the default again, as the body did not send one. */
export const rebasedSpace = {
  ...patchedSpace,
  epoch: 1,
  version: 3,
  config: { ...patchedSpace.config, basis: { primes: [2, 3, 5, 7, 11, 13, 17, 19], order: 'ascending', cutoff: 2048 } },
} satisfies Out<typeof SpaceSchema>;

export const spaceWithMember = { ...rebasedSpace, members: 1 } satisfies Out<typeof SpaceSchema>;

export const spacePage = { items: [spaceWithMember], next_cursor: null } satisfies Out<typeof SpacePage>;

const liveMetrics = { resonanceStrength: 0.1487, coherence: 0, locality: 0.3251, entropy: 0.9967, dominance: 0.1338 };

/** The space ticking in its second epoch (someone listens), six ticks after the basis change. */
export const liveSnapshot = {
  spaceId: SPACE_ID,
  epoch: 1,
  version: 3,
  t: 6,
  state: {
    primes: [2, 3, 5, 7, 11, 13, 17, 19],
    phases: [4.728, 1.434, 1.2818, 3.3522, 2.6589, 4.3036, 0.4907, 0.4891],
    masses: [0.1334, 0.133, 0.1338, 0.1327, 0.1337, 0.1328, 0.1002, 0.1004],
    operators: operators(0.9),
    entropy: entropy(0.05),
    policy: policy(true),
  },
  metrics: liveMetrics,
} satisfies Out<typeof SpaceSnapshotSchema>;

export const sessionRequest = { role: 'writer', displayName: 'Ada' } satisfies In<typeof SessionRequest>;

const MEMBER_ID = 'ses_967e0bcd8e3d402da1350cd51277f558';

export const sessionToken = {
  spaceId: SPACE_ID,
  sessionId: MEMBER_ID,
  websocketUrl: `wss://${HOST}/spaces/${SPACE_ID}`,
  sseUrl: `https://${HOST}/v1/spaces/${SPACE_ID}/telemetry`,
  token:
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJvcmciOiJvcmdfZUlzQm1KWUhVZ3FHTy1jbSIsInNwYWNlIjoic3BjXzI2Nzc1YmI0N2EzMDQ1ZjdiMGMxMjcxNGYxNmE2MzdlIiwicm9sZSI6IndyaXRlciIsIm1pbnRlciI6ImtleV9yOUtuZmlMYTcwQ0NBRkxYIiwibWludGVyX2tpbmQiOiJhcGlfa2V5Iiwic3ViIjoic2VzXzk2N2UwYmNkOGUzZDQwMmRhMTM1MGNkNTEyNzdmNTU4IiwiaXNzIjoicmVzb25hbmNlIiwiYXVkIjoicmVzb25hbmNlLXNwYWNlLXNlc3Npb24iLCJpYXQiOjE3OTYxODE3OTcsImV4cCI6MTc5NjE4MjY5N30.X3G369unrHEFKTkv2kDtYAG7z8qJA83-Oj69K1FRr70',
  expiresIn: 900,
  role: 'writer',
} satisfies Out<typeof SessionTokenSchema>;

export const memberList = {
  items: [{ id: MEMBER_ID, userId: KEY_ID, role: 'writer', displayName: 'Ada', joinedAt: '2026-12-02T03:23:17.568Z' }],
} satisfies Out<typeof MemberList>;

export const telemetryStart = sse([
  { event: 'welcome', data: { spaceId: SPACE_ID, epoch: 1, version: 3, role: 'owner' } },
  { id: 3, event: 'snapshot', data: liveSnapshot },
  { event: 'telemetry', data: { t: 7, version: 3, resonanceStrength: 0.1733, coherence: 0, locality: 0.3252, entropy: 0.9967, dominance: 0.1339 } },
  { id: 4, event: 'delta', data: { fromVersion: 3, toVersion: 4, epoch: 1, ops: [{ op: 'set_phase', path: '/state/phases/0', value: 1.5 }], author: KEY_ID } },
  { event: 'telemetry', data: { t: 8, version: 4, resonanceStrength: 0.293, coherence: 0, locality: 0.3253, entropy: 0.9967, dominance: 0.1339 } },
], true);

export const telemetryEnd = sse([
  { event: 'event', data: { name: 'space.updated', at: '2026-12-02T03:24:31.645Z', data: { spaceId: SPACE_ID, version: 4, status: 'archived' } } },
  { event: 'closed', data: { reason: 'archived' } },
]);

// ---- Webhooks ----

export const spaceWebhookRequest = {
  url: 'https://hooks.example.com/resonance',
  events: ['plateau', 'collapse', 'member.joined'],
} satisfies In<typeof WebhookCreateRequest>;

export const spaceWebhook = {
  id: 'wh_9b2f7fa3441c826837dcbe7355b17dca',
  url: 'https://hooks.example.com/resonance',
  events: ['plateau', 'collapse', 'member.joined'],
  createdAt: '2026-12-02T03:23:20.296Z',
} satisfies Out<typeof WebhookSchema>;

/** No secret was sent, so the server generated one: shown this once. */
export const spaceWebhookCreated = { ...spaceWebhook, secret: 'whsec_luEeddW2RCKs-8Jtydo0DXaTGiXMYV9gMkw1wawnKwA' } satisfies Out<typeof WebhookCreated>;

export const hqeWebhookRequest = {
  url: 'https://hooks.example.com/hqe',
  secret: 'whsec_0123456789abcdef',
  events: ['hqe.converged', 'hqe.plateau'],
} satisfies In<typeof WebhookCreateRequest>;

export const hqeWebhook = {
  id: 'wh_f41e8bade957e7531cc58158a17c46ef',
  url: 'https://hooks.example.com/hqe',
  events: ['hqe.converged', 'hqe.plateau'],
  createdAt: '2026-12-02T03:23:20.325Z',
} satisfies Out<typeof WebhookSchema>;

export const webhookPage = { items: [spaceWebhook, hqeWebhook], next_cursor: null } satisfies Out<typeof WebhookPage>;

type HqeEvent = In<typeof WebhookEventSchema>;
type SpaceEvent = In<typeof SpaceWebhookEventSchema>;
const CREATED_AT = '2026-12-02T03:23:03.818Z';
const hqeEvent = (type: HqeEvent['type'], id: string, data: Record<string, unknown>): HqeEvent => ({ id: `evt_${id}`, type, createdAt: CREATED_AT, data });
const spaceEvent = (type: SpaceEvent['type'], id: string, data: SpaceEvent['data']): SpaceEvent => ({ id: `evt_${id}`, type, createdAt: CREATED_AT, data });

/** The body POSTed to a receiver, per event type. */
export const webhookEvents: Record<string, HqeEvent | SpaceEvent> = {
  'hqe.plateau': hqeEvent('hqe.plateau', '1f6e0b3c9a2d4e5f8a7b6c5d4e3f2a10', {
    sessionId: '5d0c7e1a-7f0e-4b53-9a43-2c1f3e8e6b10', type: 'plateau', step: 156, restart: 0, metrics: { ...metrics(0.4127, 0, 0.9989, 0.2511, 0.2633), plateauDetected: true },
  }),
  'hqe.converged': hqeEvent('hqe.converged', 'c04b2e7d1a9f4c3b8e6d5a4f3b2c1d0e', { sessionId: SESSION_ID, type: 'converged', step: 131, restart: 0, metrics: at131.metrics }),
  'hqe.failed': hqeEvent('hqe.failed', '7a1c3e5b9d2f4a6c8e0b1d3f5a7c9e2b', {
    sessionId: '0b7f3c2e-91d4-4a6b-8c5e-7d2f1a3b4c5d', type: 'failed', step: 12, restart: 0,
    metrics: { resonanceStrength: null, coherence: null, entropy: 0.9981, locality: 0.2602, dominance: 0.2719, plateauDetected: false },
  }),
  'space.updated': spaceEvent('space.updated', '2b4d6f8a0c1e3a5c7e9b1d3f5a7c9e0d', { spaceId: SPACE_ID, version: 2 }),
  'basis.changed': spaceEvent('basis.changed', '3c5e7a9b1d2f4a6c8e0b2d4f6a8c0e1f', { spaceId: SPACE_ID, epoch: 1, version: 3, primes: [2, 3, 5, 7, 11, 13, 17, 19] }),
  plateau: spaceEvent('plateau', '4d6f8b0c2e3a5c7e9b1d3f5a7c9e1b2d', {
    spaceId: SPACE_ID, t: 151, version: 4, metrics: { resonanceStrength: 0.8712, coherence: 0.6031, locality: 0.3542, entropy: 0.9611, dominance: 0.1892 },
  }),
  collapse: spaceEvent('collapse', '5e7a9c1d3f4b6d8f0a2c4e6b8d0f2a3c', {
    spaceId: SPACE_ID, t: 2210, version: 4, metrics: { resonanceStrength: 0.9634, coherence: 0.9418, locality: 0.9902, entropy: 0.1187, dominance: 0.9613 },
  }),
  'member.joined': spaceEvent('member.joined', '6f8b0d2e4a5c7e9a1b3d5f7c9e1a3b4d', { spaceId: SPACE_ID, memberId: MEMBER_ID, userId: KEY_ID, role: 'writer', displayName: 'Ada' }),
  'member.left': spaceEvent('member.left', '7a9c1e3f5b6d8f0b2c4e6a8d0f2b4c5e', { spaceId: SPACE_ID, memberId: MEMBER_ID, reason: 'disconnected' }),
};

// ---- Usage, cluster, auth, ops ----

export const usageReport = {
  orgId: ORG_ID,
  from: '2026-11-03T00:00:00.000Z',
  to: '2026-12-03T00:00:00.000Z',
  granularity: 'day',
  buckets: [
    { start: '2026-12-02T00:00:00.000Z', space_minutes: 0.0056, deltas: 3, bytes_sent: 9417, telemetry_frames: 8, work_units: 5, storage_bytes_written: 8782 },
  ],
  totals: { space_minutes: 0.0056, deltas: 3, bytes_sent: 9417, telemetry_frames: 8, work_units: 5, storage_bytes_written: 8782 },
  storageBytes: 8782,
  // The defaults, as an org without overrides reads them.
  quotas: Object.fromEntries(
    Object.entries(QUOTAS).map(([name, q]: [string, QuotaSpec]) => [name, { kind: q.kind, limit: q.default, ...(q.windowSeconds ? { windowSeconds: q.windowSeconds } : {}), description: q.description }]),
  ),
} satisfies Out<typeof UsageReport>;

const NODE = '10.0.0.12:8080';

export const clusterView = {
  node: NODE,
  leaseTtlMs: 5000,
  nodes: [{ id: NODE, url: `http://${NODE}`, startedAt: '2026-12-02T03:22:53.206Z', lastHeartbeatAt: '2026-12-02T03:23:21.545Z' }],
  spaces: [{ spaceId: SPACE_ID, node: NODE, leaseEpoch: 1, leaseExpiresAt: '2026-12-02T03:23:26.545Z' }],
  sessions: [{ sessionId: SESSION_ID, node: NODE, leaseEpoch: 1, leaseExpiresAt: '2026-12-02T03:23:26.545Z' }],
} satisfies Out<typeof ClusterView>;

const CLIENT_ID = 'rc_aLz96aDiNUiWyPbe';

export const tokenRequest = { grant_type: 'client_credentials', scope: 'hqe.read hqe.write' } satisfies In<typeof TokenRequest>;
export const tokenRequestWithSecret = {
  grant_type: 'client_credentials', client_id: CLIENT_ID, client_secret: 'rcs_example-only-not-a-real-client-secret-0000000', scope: 'spaces.read spaces.write',
} satisfies In<typeof TokenRequest>;

export const tokenResponse = {
  access_token:
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJvcmciOiJvcmdfZUlzQm1KWUhVZ3FHTy1jbSIsInNjb3BlIjoiaHFlLnJlYWQgaHFlLndyaXRlIiwic3ViIjoicmNfYUx6OTZhRGlOVWlXeVBiZSIsImlzcyI6InJlc29uYW5jZSIsImF1ZCI6InJlc29uYW5jZS1hcGkiLCJpYXQiOjE3OTYxODE3OTcsImV4cCI6MTc5NjE4NTM5N30.FRlPzd3SvEPawmDFy-nNhdm_bTl24i1Vl_qv8VRLOcg',
  token_type: 'Bearer',
  expires_in: 3600,
  scope: 'hqe.read hqe.write',
} satisfies Out<typeof TokenResponse>;

const connections = { store: { kind: 'sqlite', ok: true }, broker: { kind: 'memory', ok: true } };

export const health = {
  status: 'ok', node: NODE, backend: 'cpu', adapter: CPU.adapter, precision: 'f64', store: 'sqlite', connections, uptimeSeconds: 29.799,
} satisfies Out<typeof Health>;

export const ready = { ready: true, draining: false, connections } satisfies Out<typeof Readiness>;
export const draining = { ready: false, draining: true, connections } satisfies Out<typeof Readiness>;

export const prometheusText = [
  '# HELP resonance_http_requests_total HTTP requests',
  '# TYPE resonance_http_requests_total counter',
  'resonance_http_requests_total{method="POST",route="/v1/hqe/run",status="200"} 2',
  'resonance_http_requests_total{method="POST",route="/v1/spaces",status="201"} 1',
  '',
].join('\n');
