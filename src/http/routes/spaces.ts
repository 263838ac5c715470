/**
 * The Spaces REST API (docs/spaces.md "REST"): create, list, read,
 * patch, lock/archive and delete spaces, replace the basis, snapshots, deltas, session tokens for the
 * realtime channels, the SSE telemetry stream and members. Per-space RBAC (docs/spaces.md "REST"): the
 * owner org's credentials act as `owner`, a session token as the role it was minted with, another org as
 * `reader` when the space allows guests; otherwise the space does not exist for the caller (404).
 */
import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { label } from '../../model/label.js';
import type { ZodOpenApiPathsObject, ZodOpenApiSchemaObject } from 'zod-openapi';
import { EntropyField, OperatorSet, PhaseProfile, SpaceBasis, SpaceConfig, SpacePolicy } from '../../model/space.js';
import { DeltaSchema } from '../../sim/deltas.js';
import type { SpaceHub, SpacePatch } from '../../sim/spaces.js';
import type { Quotas, UsageMeter } from '../../sim/quotas.js';
import type { MemberRow, SpaceRow } from '../../store/spaces.js';
import { orgCredentialOf, requireOrgCredential, requireScope } from '../auth.js';
import type { ServerConfig } from '../config.js';
import { notFound, Problem, spaceTitle, validationProblem } from '../problem.js';
import {
  authProblems, bodyProblems, Cursor, encodeCursor, idempotencyProblems, jsonRequest, jsonResponse, PageSize, problemResponse, RateLimitHeaders, sseResponse,
} from '../schemas.js';
import * as ex from '../openapi-examples.js';
import { pageQuery } from '../paging.js';
import type { RouteMiddleware } from '../idempotency.js';
import type { CredentialWatch } from '../revocations.js';
import { openSse, type SseStream } from '../sse.js';
import { issueSessionToken } from '../tokens.js';
import type { AppState, Principal } from '../types.js';
import { fieldErrors } from './webhooks.js';
import { type Role, ROLES, SPACE_STATUSES } from '@resonance/sdk/protocol';

export interface SpacesDeps {
  config: ServerConfig;
  hub: SpaceHub;
  /** Idempotency-Key replay, placed after each route's scope and access checks. */
  idempotent: RouteMiddleware;
  /** Ends a telemetry stream whose credential is revoked or whose member is removed. */
  credentials: CredentialWatch;
  /** Metering of the telemetry stream: bytes_sent and telemetry_frames, charged to the subscriber's org. */
  usage: UsageMeter;
  /** The streams quota of the subscriber's org. */
  quotas: Pick<Quotas, 'acquire'>;
  /** The spaces' live feeds, which the telemetry streams subscribe to. */
  streams: SpaceStreams;
}

/**
 * The live feed of a space for its SSE telemetry streams: one per space, shared with the WebSocket
 * connections (the realtime server implements it, src/realtime/feed.ts). The route keeps what is HTTP
 * (access, Last-Event-ID, the streams quota, problem answers, revocation, metering) and hands the feed an
 * SseStream, so the feed's start and fan-out are written once for both transports. Typed here because
 * src/realtime imports src/http and not the other way round; src/server.ts passes the realtime server in.
 */
export interface SpaceStreams {
  /**
   * Subscribe a stream to the space's feed. Rejects, before `stream` is called, when the space cannot be
   * attached (SpaceError, QuotaExceededError); once it is, opens the stream, puts its start on it (welcome,
   * then the deltas after `lastVersion` or a snapshot, the replay paced by the socket) and resolves. The
   * stream then gets the space's frames until it closes.
   */
  open(spaceId: string, request: SpaceStreamRequest): Promise<void>;
}

export interface SpaceStreamRequest {
  /** Resume after this version (Last-Event-ID). */
  lastVersion: number | undefined;
  /** The subscriber's role on the space, as its welcome says. */
  role: Role;
  /** Opens the response stream, once; until then a refusal is still a problem+json answer. */
  stream: () => SseStream;
  /** A telemetry event was sent (metering). */
  onTelemetry: () => void;
}

// ---- schemas ----

export const RoleSchema = z.enum(ROLES).meta({
  id: 'Role',
  description: 'A role on one space: `reader` reads and listens; `writer` also proposes phase deltas; `admin` also changes operators, entropy, policy and the basis; `owner` (the owner org) also changes the status, removes members and deletes.',
});
export const SpaceStatusSchema = z
  .enum(SPACE_STATUSES)
  .meta({ id: 'SpaceStatus', description: '`locked`: deltas are refused (409 space_locked); `archived`: read-only for good, no simulation.' });

export const SpaceSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    createdAt: z.string().meta({ format: 'date-time' }),
    updatedAt: z.string().meta({ format: 'date-time', description: 'Addition: when the space last changed.' }),
    ownerOrg: z.string().meta({ description: 'The org that created the space; its credentials act as owner.' }),
    epoch: z.number().int().meta({ description: 'Increments when the basis changes.' }),
    version: z.number().int().meta({ description: 'Monotone state version: every accepted delta, operator/entropy/policy PATCH and basis change adds one.' }),
    config: SpaceConfig,
    members: z.number().int().meta({ description: 'Members present now.' }),
    status: SpaceStatusSchema,
  })
  .meta({ id: 'Space', description: '`config` is normalized: every default filled in, the basis ordered, `seed` drawn when absent.' });

export const SpacePage = z
  .object({ items: z.array(SpaceSchema), next_cursor: z.string().nullable().meta({ description: 'Pass as `cursor` for the next page; null on the last.' }) })
  .meta({ id: 'SpacePage', description: 'A page of spaces, oldest first.' });

const metric = (meaning: string) => z.number().nullable().meta({ description: meaning });
export const SpaceMetricsSchema = z
  .object({
    resonanceStrength: metric('Mass-weighted phase order |sum P_i e^{i theta_i}|: 1 when every prime is in phase. The coupling grows until it reaches operators.resonanceTarget.'),
    coherence: metric('Kernel-weighted phase agreement of coupled primes.'),
    locality: metric('1 when the mass sits in a narrow band of log-prime.'),
    entropy: metric('Normalised Shannon entropy of the masses: 1 uniform, 0 collapsed on one prime.'),
    dominance: metric('The largest mass; a `collapse` event when it reaches entropy.collapseThreshold.'),
  })
  .meta({ id: 'SpaceMetrics', description: 'In [0, 1]; null only for a non-finite value.' });

export const SpaceSnapshotSchema = z
  .object({
    spaceId: z.string(),
    epoch: z.number().int().meta({ description: 'The basis generation: deltas must name this epoch (or omit it).' }),
    version: z.number().int().meta({ description: 'Every accepted delta up to this version is in the state.' }),
    t: z.number().int().meta({ description: 'Tick of the state within the epoch (addition). A space ticks at policy.publishHz only while a WebSocket or SSE client listens.' }),
    state: z.object({
      primes: z.array(z.number().int()).meta({ description: 'The ordered basis: phases[i] and masses[i] belong to primes[i] (addition).' }),
      phases: z.array(z.number()).meta({ description: 'Radians in [0, 2pi).' }),
      masses: z.array(z.number()).meta({ description: 'Probability mass per prime, summing to 1 (addition).' }),
      operators: OperatorSet,
      entropy: EntropyField,
      policy: SpacePolicy.meta({ description: 'Addition.' }),
    }).meta({ description: 'The simulated state; delta paths point into it (/state/phases/3, /state/operators/resonanceTarget ...).' }),
    metrics: SpaceMetricsSchema.nullable().meta({ description: 'Of the latest tick; null before the first tick of the epoch (addition).' }),
  })
  .meta({ id: 'SpaceSnapshot', description: 'The seed\'s Snapshot (named SpaceSnapshot here: `Snapshot` is the HQE one).' });

export const DeltaResultSchema = SpaceSnapshotSchema.extend({
  toVersion: z.number().int().meta({ description: 'The version the server assigned to this delta (addition). The snapshot is the state at toVersion or later: `version` >= `toVersion` when other deltas were accepted meanwhile.' }),
}).meta({ id: 'SpaceDeltaResult', description: 'Accepted and merged: the snapshot after the delta, plus the version it was given.' });

export const SpacePatchRequest = z
  .strictObject({
    phases: PhaseProfile.optional(),
    operators: OperatorSet.optional(),
    entropy: EntropyField.optional(),
    policy: SpacePolicy.optional(),
    status: z.enum(['active', 'locked', 'archived']).optional().meta({ description: 'Addition: lock (refuse deltas), unlock, or archive (read-only for good). Owner only.' }),
  })
  .meta({
    id: 'SpacePatch',
    description:
      'Merge patch: the fields sent replace those values, every other field keeps its current value (the defaults shown apply at creation, not here). ' +
      '`basis` is changed only by POST /basis; `operators.frequencyScale` is fixed at creation. Changed operator/entropy/policy fields become one logged delta (version + 1).',
  });

export const SessionRequest = z
  .strictObject({
    role: RoleSchema.optional().meta({ description: "Default: writer for the owner org's credentials, reader for guests. At most the caller's own role." }),
    displayName: label(100).optional().meta({ description: 'Shown to the other members (member.joined, GET /members).' }),
  })
  .meta({ id: 'SessionRequest', description: 'The member to create: its role and display name. The body may be omitted.' });

export const SessionTokenSchema = z
  .object({
    spaceId: z.string(),
    sessionId: z.string().meta({ description: 'Also the member id.' }),
    websocketUrl: z.string().meta({ description: 'ws(s)://<host>/spaces/{id}; send the token as Authorization: Bearer or ?token=.' }),
    sseUrl: z.string().meta({ description: 'http(s)://<host>/v1/spaces/{id}/telemetry; send the token as Authorization: Bearer or ?token=.' }),
    token: z.string().meta({ description: 'Session JWT: authenticates WebSocket, SSE and the REST routes of this one space.' }),
    expiresIn: z.number().int().meta({ description: 'Seconds.' }),
    role: RoleSchema.meta({ description: 'Addition: the role the token carries.' }),
  })
  .meta({ id: 'SessionToken', description: 'A member\'s credentials for one space: where to connect, and the token to connect with.' });

export const MemberSchema = z
  .object({
    id: z.string().meta({ description: 'The member id: the sessionId of its token.' }),
    userId: z.string().meta({ description: 'The API key or OAuth client that opened the session.' }),
    role: RoleSchema,
    displayName: z.string().nullable().meta({ description: 'Addition.' }),
    joinedAt: z.string().meta({ format: 'date-time' }),
  })
  .meta({ id: 'Member', description: 'One session token\'s member of a space.' });

export const MemberList = z.object({ items: z.array(MemberSchema) }).meta({ id: 'MemberList', description: 'The members present now, oldest first (not paged: at most policy.maxMembers).' });

// Payloads of the telemetry SSE stream (documented as components; the stream itself is text/event-stream).
export const SpaceWelcomeEvent = z
  .object({
    spaceId: z.string(),
    epoch: z.number().int().meta({ description: 'The current epoch.' }),
    version: z.number().int().meta({ description: 'The space\'s version now: the snapshot or the replayed deltas that follow bring the client to it.' }),
    role: RoleSchema,
  })
  .meta({ id: 'SpaceWelcomeEvent', description: 'SSE `welcome`: the version the stream starts from and the caller\'s role.' });
export const SpaceTelemetryEvent = SpaceMetricsSchema.extend({
  t: z.number().int().meta({ description: 'Tick within the epoch.' }),
  version: z.number().int().meta({ description: 'Highest version whose deltas the tick included.' }),
}).meta({ id: 'SpaceTelemetryEvent', description: 'SSE `telemetry` (the realtime `telemetry` frame without `type`).' });
export const SpaceDeltaEvent = z
  .object({
    fromVersion: z.number().int().meta({ description: 'Always toVersion - 1: the version it was applied on.' }),
    toVersion: z.number().int().meta({ description: 'The version this delta made.' }),
    epoch: z.number().int().meta({ description: 'The epoch it belongs to (a `replace_basis` op starts it).' }),
    ops: z.array(z.object({ op: z.string(), path: z.string(), value: z.unknown() })).meta({ description: 'Accepted ops with normalized values; a basis change is one `replace_basis` op.' }),
    author: z.string().nullable().meta({ description: 'Who proposed it: the member id of a session token, else the API key or OAuth client id.' }),
  })
  .meta({ id: 'SpaceDeltaEvent', description: 'SSE `delta` (id: toVersion).' });
export const SpaceEventEvent = z
  .object({
    name: z.enum(['space.updated', 'basis.changed', 'plateau', 'collapse', 'member.joined', 'member.left']).meta({ description: 'The event type, as for webhooks.' }),
    at: z.string().meta({ format: 'date-time', description: 'When it happened.' }),
    data: z.record(z.string(), z.unknown()).meta({ description: 'As SpaceWebhookEventData.' }),
  })
  .meta({ id: 'SpaceEventEvent', description: 'SSE `event`: the same names and data as the webhooks.' });
export const SpaceClosedEvent = z
  .object({ reason: z.enum(['archived', 'deleted']).meta({ description: 'Why the stream ends: the space was archived or deleted.' }) })
  .meta({ id: 'SpaceClosedEvent', description: 'SSE `closed`: the last event; the server ends the stream.' });

/** Schemas only the SSE stream uses, for the document's components. */
export const spacesComponents: Record<string, ZodOpenApiSchemaObject> = {
  SpaceWelcomeEvent, SpaceTelemetryEvent, SpaceDeltaEvent, SpaceEventEvent, SpaceClosedEvent,
};

const SpaceId = z.object({ id: z.string().meta({ description: 'Space id' }) });
const MemberPath = z.object({ id: z.string().meta({ description: 'Space id' }), memberId: z.string().meta({ description: 'Member (session) id' }) });
const CursorShape = z.object({ t: z.number().int(), id: z.string() });

// ---- access ----

const RANK: Record<Role, number> = { reader: 0, writer: 1, admin: 2, owner: 3 };

function principalOf(ctx: Context): Principal {
  const p = (ctx.state as AppState).principal;
  if (!p) throw new Problem(401, 'unauthorized', 'Unauthorized', 'credentials required');
  return p;
}

const insufficientRole = (role: Role, required: Role, what: string): Problem =>
  new Problem(403, 'insufficient_role', 'Insufficient role', `${what} needs the ${required} role on this space; the caller is ${role}`, { meta: { role, required } });

/**
 * The caller's role on a space. Session token: its role (on its own space only); the owner org: owner;
 * another org: reader when the space allows guests. A space the caller may not see is a 404.
 */
export function roleOn(principal: Principal, row: SpaceRow): Role | null {
  const guest = row.orgId !== principal.orgId;
  if (guest && !row.config.policy.allowGuest) return null;
  if (principal.session) return principal.session.spaceId === row.id ? principal.session.role : null;
  return guest ? 'reader' : 'owner';
}

const iso = (ms: number): string => new Date(ms).toISOString();

function memberView(m: MemberRow): z.input<typeof MemberSchema> {
  return { id: m.id, userId: m.userId, role: m.role, displayName: m.displayName, joinedAt: iso(m.joinedAt) };
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

// ---- routes ----

export function spacesRoutes(deps: SpacesDeps): Router {
  const { config, hub, idempotent, credentials, usage, quotas, streams } = deps;
  const router = new Router({ prefix: '/v1/spaces' });

  const spaceView = async (row: SpaceRow): Promise<z.input<typeof SpaceSchema>> => ({
    id: row.id,
    name: row.name,
    createdAt: iso(row.createdAt),
    updatedAt: iso(row.updatedAt),
    ownerOrg: row.orgId,
    epoch: row.epoch,
    version: row.version,
    config: row.config,
    members: (await hub.members(row.id)).length,
    status: row.status,
  });

  type Access = { row: SpaceRow; role: Role; principal: Principal };
  /** Looked up once per request: the route middleware checks first, the handler asks again. */
  const looked = new WeakMap<Context, Access>();

  /** The space of the route and the caller's role on it; 404 when the caller may not see it, 403 below `need`. */
  async function access(ctx: Context, need: Role, what: string): Promise<Access> {
    let found = looked.get(ctx);
    if (!found) {
      const principal = principalOf(ctx);
      const id = String(ctx.params.id);
      const row = await hub.get(id);
      const role = row ? roleOn(principal, row) : null;
      if (!row || !role) throw notFound(`space ${id}`);
      if (principal.session && (await hub.member(row.id, principal.session.memberId))?.removedAt != null) {
        throw new Problem(403, 'member_removed', 'Member removed', 'this session\'s member was removed from the space');
      }
      looked.set(ctx, (found = { row, role, principal }));
    }
    if (RANK[found.role] < RANK[need]) throw insufficientRole(found.role, need, what);
    return found;
  }

  /**
   * Route middleware: access() before the Idempotency-Key replay, so that a stored response goes only to a
   * caller who may still make the request (a removed member, or one below the role, is refused first).
   */
  const allowed = (need: Role | ((ctx: Context) => [Role, string]), what = ''): RouteMiddleware => async (ctx, next) => {
    const [role, doing] = typeof need === 'function' ? need(ctx) : [need, what];
    await access(ctx, role, doing);
    await next();
  };
  /** PATCH needs admin, and owner when it changes the status (as its handler decides). */
  const patchNeed = (ctx: Context): [Role, string] =>
    isObject(ctx.request.body) && ctx.request.body.status !== undefined ? ['owner', 'changing the status'] : ['admin', 'PATCH'];

  const author = (p: Principal): string => p.session?.memberId ?? p.subject;

  router.post('/', requireScope('spaces.write'), idempotent, async (ctx) => {
    const { row } = await hub.create(principalOf(ctx).orgId, ctx.request.body);
    ctx.status = 201;
    ctx.set('Location', `/v1/spaces/${row.id}`);
    ctx.body = await spaceView(row);
  });

  router.get('/', requireScope('spaces.read'), async (ctx) => {
    const { orgId } = principalOf(ctx);
    const { size, cursor } = pageQuery(ctx, CursorShape);
    const rows = await hub.list(orgId, cursor ? { createdAt: cursor.t, id: cursor.id } : null, size + 1);
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    ctx.body = {
      items: await Promise.all(page.map(spaceView)),
      next_cursor: rows.length > size && last ? encodeCursor({ t: last.createdAt, id: last.id }) : null,
    };
  });

  router.get('/:id', requireScope('spaces.read'), async (ctx) => {
    ctx.body = await spaceView((await access(ctx, 'reader', 'reading the space')).row);
  });

  router.patch('/:id', requireScope('spaces.write'), allowed(patchNeed), idempotent, async (ctx) => {
    const parsed = SpacePatchRequest.safeParse(ctx.request.body ?? {});
    if (!parsed.success) throw validationProblem(fieldErrors(parsed.error));
    const { status } = parsed.data;
    const { row, principal } = await access(ctx, status !== undefined ? 'owner' : 'admin', status !== undefined ? 'changing the status' : 'PATCH');
    // The sections as sent (a merge patch): the parsed ones would carry every default.
    const raw = ctx.request.body as Record<string, unknown>;
    const change: SpacePatch = {};
    for (const key of ['phases', 'operators', 'entropy', 'policy'] as const) if (raw[key] !== undefined) change[key] = raw[key];
    let current = row;
    if (Object.keys(change).length > 0) current = await hub.patch(row.id, change, author(principal));
    if (status !== undefined) current = await hub.setStatus(row.id, status);
    ctx.body = await spaceView(current);
  });

  router.delete('/:id', requireScope('spaces.write'), async (ctx) => {
    const { row } = await access(ctx, 'owner', 'deleting the space');
    await hub.remove(row.id);
    ctx.status = 204;
  });

  router.post('/:id/basis', requireScope('spaces.write'), allowed('admin', 'replacing the basis'), idempotent, async (ctx) => {
    const { row, principal } = await access(ctx, 'admin', 'replacing the basis');
    const body: unknown = ctx.request.body;
    if (!isObject(body)) throw validationProblem([{ pointer: '', code: 'invalid_type', message: 'the body is an object {primes, order?, cutoff?}' }]);
    ctx.body = await spaceView(await hub.replaceBasis(row.id, body, author(principal)));
  });

  router.get('/:id/snapshot', requireScope('spaces.read'), async (ctx) => {
    const { row } = await access(ctx, 'reader', 'reading the snapshot');
    ctx.body = await hub.snapshot(row.id);
  });

  router.post('/:id/deltas', requireScope('spaces.write'), allowed('reader', 'proposing a delta'), idempotent, async (ctx) => {
    // Per-op roles (writer: phases; admin: operators, entropy, policy) are the hub's: it is given the role.
    const { row, role, principal } = await access(ctx, 'reader', 'proposing a delta');
    const parsed = DeltaSchema.safeParse(ctx.request.body);
    if (!parsed.success) throw validationProblem(fieldErrors(parsed.error));
    const { frame, snapshot } = await hub.propose(row.id, parsed.data, role, author(principal));
    ctx.body = { ...snapshot(), toVersion: frame.toVersion };
  });

  const opening = 'opening a session';
  router.post('/:id/sessions', requireScope('spaces.read'), requireOrgCredential(opening), allowed('reader', opening), idempotent, async (ctx) => {
    const parsed = SessionRequest.safeParse(ctx.request.body ?? {});
    if (!parsed.success) throw validationProblem(fieldErrors(parsed.error));
    const { row, role: callerRole, principal } = await access(ctx, 'reader', opening);
    // The token names its minter: revoking that key or client refuses the token and ends its connections.
    const minter = orgCredentialOf(principal, opening);
    const role: Role = parsed.data.role ?? (RANK[callerRole] >= RANK.writer ? 'writer' : 'reader');
    if (RANK[role] > RANK[callerRole]) throw insufficientRole(callerRole, role, `a ${role} session`);
    if (role !== 'reader' && !principal.scopes.has('spaces.write')) {
      throw new Problem(403, 'insufficient_scope', 'Insufficient scope', `a ${role} session needs the spaces.write scope`, { meta: { required: 'spaces.write' } });
    }
    if (row.status === 'archived') throw new Problem(409, 'space_archived', spaceTitle('space_archived'), 'an archived space has no live sessions');
    const sessionId = `ses_${randomUUID().replaceAll('-', '')}`;
    await hub.join(row.id, {
      id: sessionId, userId: principal.subject, orgId: principal.orgId, role, displayName: parsed.data.displayName ?? null,
      expiresAt: Date.now() + config.sessionTokenTtlSeconds * 1000,
    });
    const token = await issueSessionToken(
      config.jwtSecret,
      { sub: sessionId, org: principal.orgId, space: row.id, role, minter: minter.id, minterKind: minter.kind },
      config.sessionTokenTtlSeconds,
    );
    const wsScheme = ctx.protocol === 'https' ? 'wss' : 'ws';
    ctx.status = 201;
    ctx.body = {
      spaceId: row.id,
      sessionId,
      websocketUrl: `${wsScheme}://${ctx.host}/spaces/${row.id}`,
      sseUrl: `${ctx.protocol}://${ctx.host}/v1/spaces/${row.id}/telemetry`,
      token,
      expiresIn: config.sessionTokenTtlSeconds,
      role,
    };
  });

  router.get('/:id/members', requireScope('spaces.read'), async (ctx) => {
    const { row } = await access(ctx, 'reader', 'listing members');
    ctx.body = { items: (await hub.members(row.id)).map(memberView) };
  });

  router.delete('/:id/members/:memberId', requireScope('spaces.write'), async (ctx) => {
    const { row } = await access(ctx, 'owner', 'removing a member');
    const memberId = String(ctx.params.memberId);
    if (!(await hub.leave(row.id, memberId, 'removed'))) throw notFound(`member ${memberId}`);
    ctx.status = 204;
  });

  router.get('/:id/telemetry', requireScope('spaces.read'), async (ctx) => {
    const { row, role, principal } = await access(ctx, 'reader', 'subscribing');
    const { orgId } = principal;
    const lastRaw = ctx.get('Last-Event-ID') || (typeof ctx.query.lastEventId === 'string' ? ctx.query.lastEventId : '');
    const lastVersion = /^(0|[1-9][0-9]{0,15})$/.test(lastRaw.trim()) ? Number(lastRaw.trim()) : undefined;

    // A place in the org's streams quota (409 quota_exceeded), held while the stream is open.
    const release = await quotas.acquire(orgId, 'streams');
    let opened = false;
    try {
      await streams.open(row.id, {
        lastVersion,
        role,
        onTelemetry: () => usage.add(orgId, 'telemetry_frames', 1),
        stream: () => {
          opened = true;
          const sse = openSse(ctx, {
            maxBufferBytes: config.streamBufferBytes, sendTimeoutMs: config.streamSendTimeoutMs, onWrite: (bytes) => usage.add(orgId, 'bytes_sent', bytes),
          });
          sse.onClose(release);
          sse.onClose(credentials.watchPrincipal(principalOf(ctx), () => sse.close()));
          // The client may have gone while the space was being attached: no 'close' event will come then.
          if (ctx.req.socket.destroyed) sse.close();
          return sse;
        },
      });
    } catch (err) {
      if (!opened) release();
      throw err;
    }
  });

  return router;
}

// ---- OpenAPI ----

const idempotencyHeader = z.object({
  'Idempotency-Key': z.string().max(128).optional().meta({ description: 'Replays the first response for 24 h (UUID recommended).' }),
});
const noSpace = { '404': problemResponse('No such space, or the caller may not see it (another org\'s space without allowGuest)') };
const roleProblems = {
  '401': authProblems['401'],
  '403': problemResponse('The credentials lack the scope (code insufficient_scope; a session token used outside its space too), or the caller\'s role on the space is too low (code insufficient_role)'),
  '429': authProblems['429'],
};
const archived = '409 space_archived: the space is archived (read-only)';
/** Org credentials everywhere; a session token on its own space's routes. */
type Security = Array<Record<string, string[]>>;
const orgOnly = (scope: string): Security => [{ ApiKeyAuth: [] }, { OAuth2CC: [scope] }];
const orgOrSession = (scope: string): Security => [...orgOnly(scope), { SpaceSession: [] }];

export const spacesPaths: ZodOpenApiPathsObject = {
  '/v1/spaces': {
    post: {
      tags: ['Spaces'], operationId: 'createSpace', security: orgOnly('spaces.write'), summary: 'Create a resonance space (scope spaces.write); the caller\'s org owns it',
      description:
        'Creates a live space owned by the caller\'s org, whose credentials act as its owner (org credentials only: an API key or an OAuth token with spaces.write). ' +
        'It counts against the org\'s spaces quota and simulates only while someone listens (WebSocket or SSE). ' +
        'Keep `id` from the answer; open a session (POST /v1/spaces/{id}/sessions) to join it in real time.',
      requestParams: { header: idempotencyHeader },
      requestBody: { required: true, ...jsonRequest(SpaceConfig, { basic: { summary: 'The demo room', value: ex.demoRoom } }) },
      responses: {
        '201': {
          description: 'Space created', headers: RateLimitHeaders.extend({ Location: z.string().meta({ description: 'The space: /v1/spaces/{id}.' }) }),
          ...jsonResponse(SpaceSchema, { basic: { summary: 'The demo room, normalized; seed drawn', value: ex.createdSpace } }),
        },
        '400': problemResponse('Invalid config: every failing field by JSON pointer (code validation_failed)'),
        ...bodyProblems, ...authProblems, ...idempotencyProblems,
        '409': problemResponse('The org\'s spaces or storage_bytes quota is reached (code quota_exceeded), or a request with this Idempotency-Key is in flight (code idempotency_in_flight)'),
      },
    },
    get: {
      tags: ['Spaces'], operationId: 'listSpaces', security: orgOnly('spaces.read'), summary: "The caller's org's spaces, oldest first (scope spaces.read)",
      description:
        'Lists the spaces the caller\'s org owns (not other orgs\' spaces open to guests), oldest first, with org credentials. ' +
        'Pass `next_cursor` back as `cursor` until it is null.',
      requestParams: { query: z.object({ cursor: Cursor, page_size: PageSize.optional() }) },
      responses: {
        '200': { description: 'A page', headers: RateLimitHeaders, ...jsonResponse(SpacePage, { one: { summary: 'The last page: one space', value: ex.spacePage } }) },
        '400': problemResponse('Bad cursor or page_size'), ...authProblems,
      },
    },
  },
  '/v1/spaces/{id}': {
    get: {
      tags: ['Spaces'], operationId: 'getSpace', security: orgOrSession('spaces.read'), summary: 'A space (any role)', requestParams: { path: SpaceId },
      description:
        'The space\'s normalized config, status, version, epoch and the number of members present (scope spaces.read, any role: the owner org, a guest when allowGuest, or a session token of this space). ' +
        'For the simulated state itself, read the snapshot or subscribe to the telemetry.',
      responses: {
        '200': { description: 'Space', ...jsonResponse(SpaceSchema, { rebased: { summary: 'After a delta, a PATCH and a basis change, with one member', value: ex.spaceWithMember } }) },
        ...noSpace, ...roleProblems,
      },
    },
    patch: {
      tags: ['Spaces'], operationId: 'updateSpace', security: orgOrSession('spaces.write'),
      summary: 'Update phases/operators/entropy/policy (admin), or the status (addition: lock, unlock, archive; owner)',
      description:
        'A merge patch (scope spaces.write): only the fields sent change. `phases`, `operators`, `entropy` and `policy` need the admin role: ' +
        'changed operator, entropy and policy values become one logged delta (version + 1, announced as space.updated), and a new phase profile seeds the primes added later. ' +
        '`status` needs the owner: `locked` refuses deltas, `active` unlocks, `archived` makes the space read-only for good. ' +
        'The answer is the whole space after the change.',
      requestParams: { path: SpaceId, header: idempotencyHeader },
      requestBody: {
        required: true,
        ...jsonRequest(SpacePatchRequest, {
          tune: { summary: 'Faster collapse, and guests may read', value: ex.patchRequest },
          lock: { summary: 'Lock the space (owner)', value: ex.lockRequest },
        }),
      },
      responses: {
        '200': { description: 'The updated space', ...jsonResponse(SpaceSchema, { tune: { summary: 'After the `tune` example', value: ex.patchedSpace } }) },
        '400': problemResponse('Invalid change: every failing field by JSON pointer'),
        ...noSpace, ...bodyProblems, ...roleProblems, ...idempotencyProblems,
        '409': problemResponse(`${archived}; or a request with this Idempotency-Key is in flight (idempotency_in_flight)`),
      },
    },
    delete: {
      tags: ['Spaces'], operationId: 'deleteSpace', security: orgOrSession('spaces.write'), summary: 'Delete a space and its history (addition; owner). Live streams get `closed`.', requestParams: { path: SpaceId },
      description:
        'Deletes the space, its delta log and its members for good (scope spaces.write, owner role), freeing its place in the org\'s spaces quota. ' +
        'WebSockets close and telemetry streams end with `closed` {reason: deleted}. To keep it readable instead, PATCH its status to archived.',
      responses: { '204': { description: 'Deleted' }, ...noSpace, ...roleProblems },
    },
  },
  '/v1/spaces/{id}/basis': {
    post: {
      tags: ['Spaces'], operationId: 'replaceSpaceBasis', security: orgOrSession('spaces.write'), summary: 'Replace the basis (admin): a new epoch; kept primes keep phase and mass',
      description:
        'Replaces the primes (scope spaces.write, admin role): the space enters a new epoch (version + 1), new primes start at their scaffold phase with mass 1/k, and every listener gets a snapshot. ' +
        'Deltas based on the old epoch are refused (409 stale_epoch): clients should take the new snapshot before proposing again.',
      requestParams: { path: SpaceId, header: idempotencyHeader },
      requestBody: { required: true, ...jsonRequest(SpaceBasis, { grow: { summary: 'Add 17 and 19', value: ex.basisRequest } }) },
      responses: {
        '200': { description: 'The space in its new epoch', ...jsonResponse(SpaceSchema, { grow: { summary: 'Epoch 1, eight primes', value: ex.rebasedSpace } }) },
        '400': problemResponse('Invalid basis: every failing field by JSON pointer into the body (e.g. /primes/1 not_prime)'),
        ...noSpace, ...bodyProblems, ...roleProblems, ...idempotencyProblems,
        '409': problemResponse(`${archived}; or idempotency_in_flight`),
      },
    },
  },
  '/v1/spaces/{id}/snapshot': {
    get: {
      tags: ['State'], operationId: 'getSpaceSnapshot', security: orgOrSession('spaces.read'), summary: 'The current compact snapshot, for catch-up (any role)', requestParams: { path: SpaceId },
      description:
        'The simulated state now: phases and masses per prime, operators, and the metrics of the latest tick (scope spaces.read, any role). ' +
        'An idle space is loaded into the engine to answer (the org\'s live_spaces quota). Propose deltas with `fromVersion` set to its `version`.',
      responses: {
        '200': { description: 'Snapshot', ...jsonResponse(SpaceSnapshotSchema, { live: { summary: 'Ticking in epoch 1', value: ex.liveSnapshot } }) },
        ...noSpace, ...roleProblems,
        '409': problemResponse('An idle space must be loaded and the org has as many resident spaces as its live_spaces quota allows (code quota_exceeded)'),
      },
    },
  },
  '/v1/spaces/{id}/deltas': {
    post: {
      tags: ['State'], operationId: 'proposeSpaceDelta', security: orgOrSession('spaces.write'),
      summary: 'Propose a delta (writer: set_phase/shift_phase; admin: every op); the server assigns the version and answers with the merged snapshot',
      description:
        'Proposes changes to the state (scope spaces.write): phase ops need the writer role, operator, entropy and policy ops admin. ' +
        'Each accepted delta is logged, gets the next version and goes to every listener; it counts against the org\'s deltas_per_minute quota. ' +
        'On a 409 conflict or stale_* refusal, read the snapshot and propose again from its version.',
      requestParams: { path: SpaceId, header: idempotencyHeader },
      requestBody: { required: true, ...jsonRequest(DeltaSchema, { nudge: { summary: 'Shift a phase and raise the target', value: ex.deltaRequest } }) },
      responses: {
        '200': {
          description: 'Accepted and merged: the snapshot, plus toVersion (addition)',
          ...jsonResponse(DeltaResultSchema, { nudge: { summary: 'Version 1; no tick yet (nobody listening)', value: ex.deltaResult } }),
        },
        '400': problemResponse('Invalid delta: every bad op by pointer (/ops/{n}/path, /ops/{n}/value)'),
        ...noSpace, ...bodyProblems, ...roleProblems, ...idempotencyProblems,
        '409': problemResponse(
          'Refused; `meta.currentVersion` is the space\'s version: conflict (a set_* path was written after fromVersion), stale_version (older than the retained history), ' +
            'version_ahead, stale_epoch (the basis changed), space_locked, space_archived; fetch the snapshot and retry. Or idempotency_in_flight, or quota_exceeded ' +
            '(an idle space must be loaded past the org\'s live_spaces quota). The org\'s deltas_per_minute quota answers 429 quota_exceeded.',
        ),
      },
    },
  },
  '/v1/spaces/{id}/sessions': {
    post: {
      tags: ['Sessions'], operationId: 'createSpaceSession', security: orgOnly('spaces.read'),
      summary: 'Join: a member and its session token for WebSocket, SSE and this space\'s REST routes (role at most the caller\'s; guests: reader only)',
      description:
        'Only org credentials (an API key or an OAuth access token) mint session tokens: a session token gets 403 org_credential_required. ' +
        'The token names the key or client that minted it; revoking that credential refuses the token (401 invalid_credentials) and ends its WebSockets (4401) and SSE streams. ' +
        'A role above reader needs spaces.write. Hand the token to the client that joins (a browser, a device): it connects to websocketUrl or sseUrl, and asks for a new token before expiresIn runs out.',
      requestParams: { path: SpaceId, header: idempotencyHeader },
      requestBody: { required: false, ...jsonRequest(SessionRequest, { writer: { summary: 'A writer named Ada', value: ex.sessionRequest } }) },
      responses: {
        '201': { description: 'Session token', ...jsonResponse(SessionTokenSchema, { writer: { summary: 'A writer token for 15 minutes', value: ex.sessionToken } }) },
        '400': problemResponse('Invalid body'),
        ...noSpace, ...bodyProblems, ...roleProblems, ...idempotencyProblems,
        '409': problemResponse('space_full (policy.maxMembers present), space_archived; or idempotency_in_flight'),
      },
    },
  },
  '/v1/spaces/{id}/telemetry': {
    get: {
      tags: ['Telemetry'], operationId: 'streamSpaceTelemetry', security: [...orgOrSession('spaces.read'), { SpaceSessionQuery: [] }],
      summary:
        'Server-Sent Events at policy.publishHz: `welcome` (SpaceWelcomeEvent), then `snapshot` (SpaceSnapshot, id = version) or, with Last-Event-ID, the missed `delta`s; ' +
        'then live `telemetry` (SpaceTelemetryEvent), `delta` (SpaceDeltaEvent, id = toVersion), `snapshot` (a new epoch), `event` (SpaceEventEvent) and a final `closed` (SpaceClosedEvent). ' +
        'A session token may be passed as ?token= (EventSource cannot set headers). The space simulates while someone listens.',
      description:
        'A read-only live feed of the space (scope spaces.read, any role); it neither joins nor leaves the member list. ' +
        'It holds a place in the org\'s streams quota and makes the space tick while open; its bytes and telemetry frames are metered. ' +
        'Apply each `delta` to the last snapshot; on reconnect send the last id as Last-Event-ID.',
      requestParams: {
        path: SpaceId,
        header: z.object({ 'Last-Event-ID': z.string().optional().meta({ description: 'A version: replay the deltas after it when still in history, else a snapshot.' }) }),
        query: z.object({ token: z.string().optional().meta({ description: 'Session token (this route only).' }) }),
      },
      responses: {
        '200': sseResponse('text/event-stream', {
          live: { summary: 'Opened on a live space; a writer proposes a delta', value: ex.telemetryStart },
          archived: { summary: 'The owner archives the space: the last events', value: ex.telemetryEnd },
        }),
        ...noSpace, ...roleProblems,
        '409': problemResponse(`${archived}; or quota_exceeded: the org's streams quota is full, or the space must be loaded past its live_spaces quota`),
      },
    },
  },
  '/v1/spaces/{id}/members': {
    get: {
      tags: ['Sessions'], operationId: 'listSpaceMembers', security: orgOrSession('spaces.read'), summary: 'Members present now (addition; any role)', requestParams: { path: SpaceId },
      description:
        'The members present now, oldest first (scope spaces.read, any role): one per session token, from its creation until it is removed, its last WebSocket closes or it expires unused.',
      responses: {
        '200': { description: 'Members, oldest first', ...jsonResponse(MemberList, { one: { summary: 'Ada, a writer', value: ex.memberList } }) },
        ...noSpace, ...roleProblems,
      },
    },
  },
  '/v1/spaces/{id}/members/{memberId}': {
    delete: {
      tags: ['Sessions'], operationId: 'removeSpaceMember', security: orgOrSession('spaces.write'), summary: 'Remove a member (addition; owner): its live connections are dropped', requestParams: { path: MemberPath },
      description:
        'Removes a member for good (scope spaces.write, owner role): its token is refused from then on (403 member_removed), its WebSockets close with 4403 and its telemetry streams end. ' +
        'Listeners get member.left with reason removed.',
      responses: { '204': { description: 'Removed' }, '404': problemResponse('No such space, or no such member present'), ...roleProblems },
    },
  },
};
