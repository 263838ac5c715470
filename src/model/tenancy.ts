/**
 * The tenancy contract: per-org quotas and usage metrics (docs/tenancy.md). The catalogue below is the one list of quota names,
 * their defaults and how they are enforced; `resonance orgs set-quota ORG NAME VALUE` overrides a default
 * for one org. Two kinds:
 *   cap   a bound on what an org holds at once (resident sessions, live spaces, sockets, stored bytes):
 *         refused with 409 quota_exceeded (an `error` frame and close code 4429 over WebSocket)
 *   rate  a budget per fixed window (deltas per minute, work units per hour): 429 quota_exceeded with
 *         Retry-After
 * Every refusal carries meta {quota, limit, used}.
 */

export type QuotaKind = 'cap' | 'rate';

export interface QuotaSpec {
  kind: QuotaKind;
  /** Default limit (RESONANCE_QUOTA_<NAME> overrides it for every org; the CLI for one org). */
  default: number;
  /** Window of a rate quota, seconds. */
  windowSeconds?: number;
  description: string;
}

export const QUOTAS = {
  hqe_sessions: { kind: 'cap', default: 16, description: 'running HQE sessions resident in the engine' },
  live_spaces: { kind: 'cap', default: 64, description: 'spaces resident in the engine (ticking, or idle and not yet evicted)' },
  spaces: { kind: 'cap', default: 1000, description: 'spaces stored (active, locked or archived; deleting one frees its place)' },
  webhooks: { kind: 'cap', default: 25, description: 'webhook registrations (each event is delivered to every subscribed one)' },
  sockets: { kind: 'cap', default: 10_000, description: 'open WebSocket connections' },
  streams: { kind: 'cap', default: 1000, description: 'open SSE streams (HQE session streams and space telemetry)' },
  sockets_per_member: { kind: 'cap', default: 8, description: 'open WebSocket connections of one space member (session token)' },
  storage_bytes: { kind: 'cap', default: 2 ** 30, description: 'bytes of stored HQE session events and space delta logs' },
  session_storage_bytes: { kind: 'cap', default: 64 * 2 ** 20, description: 'bytes of stored events of one HQE session; a session that reaches it is closed' },
  deltas_per_minute: { kind: 'rate', default: 6000, windowSeconds: 60, description: 'space deltas logged (proposals over REST and WebSocket, PATCH and basis changes)' },
  work_units_per_hour: { kind: 'rate', default: 200_000, windowSeconds: 3600, description: 'HQE work units (steps x (restarts+1) x k^2 / RESONANCE_WORK_UNIT) of runs, sessions and steps' },
} as const satisfies Record<string, QuotaSpec>;

export type QuotaName = keyof typeof QUOTAS;
export const QUOTA_NAMES = Object.keys(QUOTAS) as QuotaName[];
export const isQuotaName = (s: string): s is QuotaName => Object.hasOwn(QUOTAS, s);

/** Metered per org and hour; GET /v1/usage and /metrics report them. */
export const USAGE_METRICS = ['space_minutes', 'deltas', 'bytes_sent', 'telemetry_frames', 'work_units', 'storage_bytes_written'] as const;
export type UsageMetric = (typeof USAGE_METRICS)[number];

