/**
 * asyncapi.yaml: the realtime WebSocket protocol of live spaces (docs/spaces.md "Realtime") as an AsyncAPI
 * 3.0 document (`resonance asyncapi`; npm run asyncapi writes the committed file). Payload schemas are
 * converted from the zod schemas (client frames: the ones the server validates with; server frames:
 * server-frames.ts, type-checked against @resonance/sdk/protocol), close codes and subprotocols are read
 * from the protocol module, and every example is typed as the frame it shows. Only prose is written here.
 */
import { isDeepStrictEqual } from 'node:util';
import { stringify } from 'yaml';
import { z } from 'zod';
import { SpaceSnapshotSchema } from '../http/routes/spaces.js';
import { ProblemSchema } from '../http/schemas.js';
import { SpaceConfig } from '../model/space.js';
import { ClientFrame } from './frames.js';
import { ServerFrame } from './server-frames.js';
import {
  CLOSE_STATUS, CloseCode, type ClientFrame as ClientFrameType, DEFAULT_SUBSCRIPTION, type Encoding, FINAL_CLOSE_CODES, type ServerFrame as ServerFrameType,
  SUBPROTOCOL, SUBSCRIPTION_KINDS,
} from '@resonance/sdk/protocol';

type JsonSchema = { [key: string]: unknown };
type Ref = { $ref: string };

export const CONTENT_TYPE = { json: 'application/json', msgpack: 'application/msgpack' } as const satisfies Record<Encoding, string>;

// ---- schemas ----

const SCHEMAS = '#/components/schemas/';

/** `#/definitions/X` (zod's refs to schemas with a meta id) as `#/components/schemas/X`, at any depth. */
function relocateRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(relocateRefs);
  if (value === null || typeof value !== 'object') return value;
  const out: JsonSchema = {};
  for (const [key, v] of Object.entries(value)) {
    out[key] = key === '$ref' && typeof v === 'string' && v.startsWith('#/definitions/') ? SCHEMAS + v.slice('#/definitions/'.length) : relocateRefs(v);
  }
  return out;
}

/**
 * components.schemas, filled from zod schemas: each root under its name, every schema with a meta id it
 * uses under that id, shared by all roots. Draft 7 is the dialect of AsyncAPI's default schema format.
 */
class Schemas {
  readonly components: Record<string, JsonSchema> = {};

  /** `descriptions`: this document's own words for schemas shared with openapi.yaml. */
  constructor(private readonly descriptions: ReadonlyMap<z.core.$ZodType, string> = new Map()) {}

  /** `io`: what a client may send (defaults optional) or what the server sends (defaults filled in). */
  add(name: string, schema: z.ZodType, io: 'input' | 'output'): Ref {
    const { $schema: _dialect, definitions, ...root } = z.toJSONSchema(schema, {
      target: 'draft-7',
      io,
      override: (ctx) => {
        const description = this.descriptions.get(ctx.zodSchema);
        if (description !== undefined) ctx.jsonSchema.description = description;
      },
    }) as JsonSchema & { definitions?: Record<string, JsonSchema> };
    for (const [id, def] of Object.entries(definitions ?? {})) this.put(id, relocateRefs(def) as JsonSchema);
    // A root with a meta id is itself one of the definitions, and the root only a $ref to it.
    const ref = relocateRefs(root) as JsonSchema;
    if (Object.keys(ref).length === 1 && typeof ref.$ref === 'string') {
      if (ref.$ref !== SCHEMAS + name) throw new Error(`schema ${name} has the meta id of ${ref.$ref}`);
      return { $ref: ref.$ref };
    }
    this.put(name, ref);
    return { $ref: SCHEMAS + name };
  }

  /** One id, one schema: an id converted differently for two roots (input and output differ) is a bug here. */
  private put(id: string, schema: JsonSchema): void {
    const known = this.components[id];
    if (known !== undefined && !isDeepStrictEqual(known, schema)) throw new Error(`schema ${id} converts differently for two frames`);
    this.components[id] = schema;
  }
}

// ---- messages ----

interface Example<F> {
  name: string;
  summary: string;
  payload: F;
}

interface MessageSpec<F> {
  /** Component name of the payload schema. */
  schema: string;
  title: string;
  summary: string;
  description: string;
  examples: Array<Example<F>>;
}

type Specs<U extends { type: string }> = { [T in U['type']]: MessageSpec<Extract<U, { type: T }>> };

const SPACE = 'spc_3f9c2a7b1d4e4f0a9b8c7d6e5f4a3b2c';
const SESSION = 'ses_8e1d2c3b4a5f46e7a8b9c0d1e2f3a4b5';
const PRIMES = [2, 3, 5, 7];
// A space's defaults, from the schema that fills them in (the snapshot example carries every field).
const CONFIG = SpaceConfig.parse({ name: 'demo', basis: { primes: PRIMES } });

/** Client frames (action `send`), in the order a session uses them. */
const CLIENT_MESSAGES: Specs<ClientFrameType> = {
  hello: {
    schema: 'HelloFrame',
    title: 'Hello',
    summary: 'Start the session: choose the encoding, resume after a version.',
    description:
      'Optional and accepted once, before the session starts; a second one is answered `error {code: already_started}`. Without one within 2 s the ' +
      'session starts as if `hello {}` had come, and a `propose_delta` before it starts the session at once. `encoding` overrides the subprotocol ' +
      'for every later server frame, from `welcome` on. `lastVersion` resumes: the deltas after it are replayed when they are still in history, ' +
      'in this epoch and within the replay bound (1000 deltas, 1 MiB of ops by default); otherwise a snapshot is sent. `sessionId` is accepted ' +
      'and ignored: the session is the one the token names. The answer is `welcome`, then the replayed deltas or a `snapshot`, then live frames.',
    examples: [
      { name: 'resume', summary: 'Resume after version 41, in JSON', payload: { type: 'hello', version: 1, encoding: 'json', lastVersion: 41 } },
      { name: 'msgpack', summary: 'Switch to MessagePack; start from a snapshot', payload: { type: 'hello', encoding: 'msgpack' } },
    ],
  },
  subscribe: {
    schema: 'SubscribeFrame',
    title: 'Subscribe',
    summary: "Replace the connection's subscription.",
    description:
      `Kinds: ${SUBSCRIPTION_KINDS.map((k) => `\`${k}\``).join(', ')}. Until the first \`subscribe\` a connection has ` +
      `${DEFAULT_SUBSCRIPTION.map((k) => `\`${k}\``).join(', ')}; \`phases\` (every phase and mass, each tick) is opt-in. Taking \`deltas\` again ` +
      'after dropping it brings a fresh `snapshot` first. No reply.',
    examples: [
      { name: 'everything', summary: 'Telemetry, deltas, events and phases', payload: { type: 'subscribe', kinds: ['telemetry', 'deltas', 'events', 'phases'] } },
      { name: 'telemetry-only', summary: 'Metrics only', payload: { type: 'subscribe', kinds: ['telemetry'] } },
    ],
  },
  propose_delta: {
    schema: 'ProposeDeltaFrame',
    title: 'Propose a delta',
    summary: "Propose ops on the space's state, with the session's role.",
    description:
      'Runs the delta rules of docs/spaces.md ("Deltas") with the role of the session token. Accepted: the proposer receives its own copy of the ' +
      '`delta` frame, with its `requestId`, at its place in the stream (even when not subscribed to deltas); everyone else receives the same frame ' +
      'without it. A version conflict is answered `conflict`; any other refusal (`insufficient_role`, `validation_failed`, `space_locked`, ' +
      '`rate_limited`, `quota_exceeded`, `too_many_requests`, ...) `error`, both with the `requestId`. Each proposal costs the credential that ' +
      'minted the token one unit of its rate limit; at most 64 may wait for the server at once.',
    examples: [
      {
        name: 'shift-phase',
        summary: 'Shift the phase of the fourth prime (commutes: rebased onto the current version)',
        payload: { type: 'propose_delta', requestId: 'req-7', delta: { fromVersion: 42, ops: [{ op: 'shift_phase', path: '/state/phases/3', value: 0.25 }] } },
      },
      {
        name: 'set-operator',
        summary: 'Set the resonance target (admin or owner)',
        payload: { type: 'propose_delta', requestId: 'req-8', delta: { fromVersion: 42, epoch: 0, ops: [{ op: 'set_operator', path: '/state/operators/resonanceTarget', value: 0.85 }] } },
      },
    ],
  },
  ping: {
    schema: 'PingFrame',
    title: 'Ping',
    summary: 'Ask for a pong.',
    description: 'Answered `pong` with the same `ts` (any number the client chooses, e.g. its clock, to measure the round trip).',
    examples: [{ name: 'ping', summary: 'A ping with the client clock', payload: { type: 'ping', ts: 1767225600000 } }],
  },
};

const snapshotExample = (version: number) => ({
  spaceId: SPACE,
  epoch: 0,
  version,
  t: 1200,
  state: {
    primes: PRIMES,
    phases: [0.61, 2.24, 4.89, 1.57],
    masses: [0.31, 0.27, 0.23, 0.19],
    operators: CONFIG.operators,
    entropy: CONFIG.entropy,
    policy: CONFIG.policy,
  },
  metrics: { resonanceStrength: 0.71, coherence: 0.64, locality: 0.52, entropy: 0.38, dominance: 0.21 },
});

/** Server frames (action `receive`). */
const SERVER_MESSAGES: Specs<ServerFrameType> = {
  welcome: {
    schema: 'WelcomeFrame',
    title: 'Welcome',
    summary: 'The session started.',
    description:
      "The first frame of a session, in the session's encoding: then the deltas after `hello.lastVersion`, or a `snapshot` at `welcome.version`, " +
      'then live frames. Nothing is lost or repeated between the start and the live frames.',
    examples: [{ name: 'writer', summary: 'A writer session in JSON at version 42', payload: { type: 'welcome', spaceId: SPACE, epoch: 0, version: 42, role: 'writer', encoding: 'json', sessionId: SESSION } }],
  },
  snapshot: {
    schema: 'SnapshotFrame',
    title: 'Snapshot',
    summary: 'The whole state of the space at a version.',
    description:
      'Sent at the start (when no replay applies), after a basis change (the state of the new epoch), when `deltas` is subscribed again, and to a ' +
      'connection that fell behind: past the send-buffer cap a connection gets no deltas until it has drained, then one snapshot covering every delta ' +
      'it skipped, with `acks` for its own proposals among them. Deltas after it follow contiguously.',
    examples: [
      { name: 'start', summary: 'A snapshot at the start', payload: { type: 'snapshot', snapshot: snapshotExample(42) } },
      { name: 'recovery', summary: 'A snapshot after a slow connection recovered, acknowledging its proposal', payload: { type: 'snapshot', snapshot: snapshotExample(57), acks: [{ requestId: 'req-9', toVersion: 51 }] } },
    ],
  },
  delta: {
    schema: 'DeltaFrame',
    title: 'Delta',
    summary: 'An accepted change of the state: version toVersion.',
    description:
      'Versions are contiguous: a delta always has `fromVersion` = `toVersion` - 1. The proposer\'s own copy carries its `requestId` (its ' +
      'acknowledgement). A basis change is one `replace_basis` op by no author (null), followed by a `snapshot` of the new epoch.',
    examples: [
      { name: 'own', summary: "The proposer's copy of its accepted shift", payload: { type: 'delta', requestId: 'req-7', fromVersion: 42, toVersion: 43, epoch: 0, ops: [{ op: 'shift_phase', path: '/state/phases/3', value: 1.82 }], author: SESSION } },
      {
        name: 'basis-change',
        summary: 'A basis change by the server',
        payload: { type: 'delta', fromVersion: 57, toVersion: 58, epoch: 1, ops: [{ op: 'replace_basis', path: '/state/basis', value: { primes: [2, 3, 5, 7, 11], order: 'ascending', cutoff: 2048 } }], author: null },
      },
    ],
  },
  telemetry: {
    schema: 'TelemetryFrame',
    title: 'Telemetry',
    summary: "The space's metrics at a tick.",
    description:
      'At `policy.publishHz` while anyone listens (subscription `telemetry`). A connection whose send buffer is over the slow mark gets only the ' +
      'latest one once it drains. The SSE stream GET /v1/spaces/{id}/telemetry carries the same data as its `telemetry` event.',
    examples: [{ name: 'tick', summary: 'Metrics at tick 1200', payload: { type: 'telemetry', t: 1200, version: 43, resonanceStrength: 0.71, coherence: 0.64, locality: 0.52, entropy: 0.38, dominance: 0.21 } }],
  },
  phases: {
    schema: 'PhasesFrame',
    title: 'Phases',
    summary: 'Every phase and mass at a tick.',
    description: 'Subscription `phases` (opt-in), each tick; conflated like telemetry on a slow connection.',
    examples: [{ name: 'tick', summary: 'Four primes at tick 1200', payload: { type: 'phases', t: 1200, version: 43, phases: [0.61, 2.24, 4.89, 1.57], masses: [0.31, 0.27, 0.23, 0.19] } }],
  },
  event: {
    schema: 'EventFrame',
    title: 'Event',
    summary: 'Something happened in the space.',
    description: 'Subscription `events`: the same names and data as the webhooks of a space (docs/webhooks.md).',
    examples: [
      { name: 'member-joined', summary: 'A member joined', payload: { type: 'event', name: 'member.joined', at: '2026-01-01T12:00:00.000Z', data: { spaceId: SPACE, memberId: SESSION, userId: 'key_r9KnfiLa70CCAFLX', role: 'writer', displayName: 'Ada' } } },
      {
        name: 'plateau',
        summary: 'The entropy reached a plateau',
        payload: {
          type: 'event', name: 'plateau', at: '2026-01-01T12:00:05.000Z',
          data: { spaceId: SPACE, t: 1350, version: 43, metrics: { resonanceStrength: 0.72, coherence: 0.66, locality: 0.52, entropy: 0.37, dominance: 0.22 } },
        },
      },
    ],
  },
  conflict: {
    schema: 'ConflictFrame',
    title: 'Conflict',
    summary: 'A proposal refused for its version.',
    description:
      'Codes: `conflict` (a path it sets was written after `fromVersion`), `stale_version` (older than the retained history), `version_ahead`, ' +
      '`stale_epoch`. Propose again from `actual` (after the deltas up to it, or a snapshot).',
    examples: [{ name: 'conflict', summary: 'A set_phase on a path written since', payload: { type: 'conflict', expectedFrom: 40, actual: 43, code: 'conflict', detail: '/state/phases/1 was written at version 42', requestId: 'req-8' } }],
  },
  pong: {
    schema: 'PongFrame',
    title: 'Pong',
    summary: 'The answer to a ping.',
    description: "Carries the ping's `ts` when it had one.",
    examples: [{ name: 'pong', summary: 'The pong of a ping', payload: { type: 'pong', ts: 1767225600000 } }],
  },
  error: {
    schema: 'ErrorFrame',
    title: 'Error',
    summary: 'A frame or proposal refused, or the reason of a close.',
    description:
      'A bad frame: `frame_too_large`, `malformed_frame` (not JSON or MessagePack), `invalid_frame` (with `errors`); the 11th within 10 s is ' +
      '`too_many_bad_frames` and closes 4008. `already_started` for a second hello. A refused proposal (with its `requestId`): `insufficient_role`, ' +
      '`validation_failed`, `space_locked`, `rate_limited` and `quota_exceeded` (with `meta`), `too_many_requests`, `internal`. Before a close: ' +
      '`space_full` (4409), `member_removed` (4403), `space_archived` / `space_deleted` (4410), `credential_revoked` (4401), `quota_exceeded` (4429), ' +
      '`internal` (1011).',
    examples: [
      {
        name: 'invalid-frame',
        summary: 'A frame that is no protocol frame',
        payload: { type: 'error', code: 'invalid_frame', message: 'the frame does not match the protocol', errors: [{ pointer: '/kinds', code: 'invalid_type', message: 'Invalid input: expected array, received undefined' }] },
      },
      {
        name: 'rate-limited',
        summary: 'Too many proposals on one connection',
        payload: { type: 'error', code: 'rate_limited', message: 'at most 100 proposals per second on one connection', meta: { scope: 'connection', limit: 100, retryAfterMs: 420 }, requestId: 'req-9' },
      },
    ],
  },
};

/** The frame schemas of a discriminated union, by their `type` literal. */
function variants(union: { options: readonly z.ZodType[] }): Map<string, z.ZodType> {
  const out = new Map<string, z.ZodType>();
  for (const option of union.options) {
    const type = (option as z.ZodObject<{ type: z.ZodLiteral<string> }>).shape.type.value;
    out.set(type, option);
  }
  return out;
}

function messages(specs: Record<string, MessageSpec<{ type: string }>>, schemas: Map<string, z.ZodType>, into: Schemas, io: 'input' | 'output'): Record<string, JsonSchema> {
  if (!isDeepStrictEqual([...schemas.keys()].sort(), Object.keys(specs).sort())) throw new Error(`frame types ${[...schemas.keys()].join(', ')} differ from the documented ones`);
  const out: Record<string, JsonSchema> = {};
  for (const [type, spec] of Object.entries(specs)) {
    out[type] = {
      name: type,
      title: spec.title,
      summary: spec.summary,
      description: spec.description,
      payload: into.add(spec.schema, schemas.get(type)!, io),
      examples: spec.examples.map((e) => ({ name: e.name, summary: e.summary, payload: e.payload })),
    };
  }
  return out;
}

// ---- close codes ----

const CLOSE_MEANINGS: Record<keyof typeof CloseCode, string> = {
  NORMAL: 'Normal closure.',
  GOING_AWAY: 'The server is shutting down: reconnect (to another node).',
  POLICY: 'The client does not read: replies to its own frames overflowed 4 × the send-buffer cap.',
  INTERNAL: 'The server failed while starting the session.',
  TOO_MANY_BAD_FRAMES: 'More than 10 bad frames within 10 s (after error too_many_bad_frames).',
  CREDENTIAL_REVOKED: 'The API key or OAuth client that minted the session token was revoked (after error credential_revoked).',
  MEMBER_REMOVED: 'The member was removed from the space (after error member_removed).',
  SPACE_FULL: 'The space has policy.maxMembers members already (after error space_full).',
  SPACE_GONE: 'The space was archived or deleted (after error space_archived, status 409, or space_deleted, status 404).',
  QUOTA_EXCEEDED: 'An org quota refused the session (after error quota_exceeded with meta); it may clear later, so a client may retry.',
};

export interface CloseCodeEntry {
  code: number;
  name: keyof typeof CloseCode;
  meaning: string;
  /** Reconnecting cannot help (FINAL_CLOSE_CODES). */
  final: boolean;
  /** The HTTP status it stands for (CLOSE_STATUS), where it has one. */
  status?: number;
}

export function closeCodes(): CloseCodeEntry[] {
  return (Object.entries(CloseCode) as Array<[keyof typeof CloseCode, number]>).map(([name, code]) => {
    const status = CLOSE_STATUS[code];
    return { code, name, meaning: CLOSE_MEANINGS[name], final: FINAL_CLOSE_CODES.has(code), ...(status === undefined ? {} : { status }) };
  });
}

// ---- the document ----

const BEARER = 'sessionBearer';
const QUERY_TOKEN = 'sessionQuery';

export function asyncApiDocument(): Record<string, unknown> {
  const schemas = new Schemas(new Map([[SpaceSnapshotSchema, 'The state of a space at a version: the same as GET /v1/spaces/{id}/snapshot answers.']]));
  const clientMessages = messages(CLIENT_MESSAGES, variants(ClientFrame), schemas, 'input');
  const serverMessages = messages(SERVER_MESSAGES, variants(ServerFrame), schemas, 'output');
  const problem = schemas.add('Problem', ProblemSchema, 'output');
  const encodings = (Object.entries(SUBPROTOCOL) as Array<[Encoding, string]>).map(([encoding, subprotocol]) => ({
    encoding, subprotocol, contentType: CONTENT_TYPE[encoding], websocketFrame: encoding === 'json' ? 'text' : 'binary',
  }));
  const codes = closeCodes();
  const refs = (names: string[]): Ref[] => names.map((n) => ({ $ref: `#/channels/space/messages/${n}` }));

  return {
    asyncapi: '3.0.0',
    id: 'urn:resonance:realtime',
    info: {
      title: 'Resonance realtime API',
      version: '1.0.0',
      description:
        'The WebSocket protocol of live spaces (docs/spaces.md "Realtime"), seen from a client: `send` is what a client sends, `receive` what the ' +
        'server sends it. Open a session with POST /v1/spaces/{id}/sessions (openapi.yaml), then connect to its `websocketUrl` with the token.\n\n' +
        '**Encodings.** Every frame exists as JSON (a text WebSocket message, content type application/json) and as MessagePack (a binary message, ' +
        `application/msgpack), with the same payload schema. The subprotocol offered at the upgrade chooses the server's encoding ` +
        `(${encodings.map((e) => `\`${e.subprotocol}\`: ${e.encoding}`).join(', ')}; none: JSON), and \`hello.encoding\` may change it before the ` +
        'session starts. The server reads each client message by its kind, whatever the encoding: text as JSON, binary as MessagePack. ' +
        'The `x-encodings` extension lists them.\n\n' +
        '**Server-sent events.** The same feed (telemetry, deltas, events, snapshots) is also served read-only as SSE at ' +
        'GET /v1/spaces/{id}/telemetry, described in openapi.yaml. Schemas shared with openapi.yaml keep its notes: "addition" marks what ' +
        'was added to the original Spaces API.',
    },
    defaultContentType: CONTENT_TYPE.json,
    'x-encodings': encodings,
    servers: {
      resonance: {
        host: '{host}',
        protocol: 'ws',
        title: 'A Resonance server',
        description: 'The HTTP API\'s own host and port (`resonance serve`, default port 8080); `wss` where it is served over TLS.',
        variables: { host: { default: 'localhost:8080', description: 'host[:port] of the HTTP API.' } },
        security: [{ $ref: `#/components/securitySchemes/${BEARER}` }, { $ref: `#/components/securitySchemes/${QUERY_TOKEN}` }],
      },
    },
    channels: {
      space: {
        address: '/spaces/{spaceId}',
        title: 'A live space',
        summary: "A session on one space: its state's deltas, telemetry and events, and the member's proposals.",
        description:
          '**Upgrade.** `GET /spaces/{spaceId}` with the session token of POST /v1/spaces/{spaceId}/sessions, as `Authorization: Bearer` or ' +
          '`?token=` (browsers cannot set headers). A refused upgrade is an HTTP answer, application/problem+json (the `Problem` schema), written ' +
          'before any WebSocket exists: 401 `unauthorized` or `invalid_credentials` (with `WWW-Authenticate: Bearer`), 403 `member_removed`, 404 ' +
          '`not_found`, 409 `space_archived` or `quota_exceeded` (sockets per org or per member), 503 while the server shuts down; the ' +
          '`x-upgrade-refusals` extension lists them. `permessage-deflate` is off.\n\n' +
          '**Start.** `hello` (optional) is answered `welcome`, then the deltas after `hello.lastVersion` or a `snapshot`, then live frames.\n\n' +
          '**Close codes** (also the `x-close-codes` extension; final: reconnecting cannot help):\n\n' +
          '| code | name | final | status | meaning |\n|---:|---|---|---:|---|\n' +
          codes.map((c) => `| ${c.code} | ${c.name} | ${c.final ? 'yes' : 'no'} | ${c.status ?? ''} | ${c.meaning} |`).join('\n') +
          '\n\nThe WebSocket layer itself closes with 1009 a message over 4 × the frame limit (64 KiB by default), and with 1007 invalid UTF-8 text.',
        parameters: {
          spaceId: { description: 'The space id (`spc_…`): 1 to 100 of A-Z, a-z, 0-9, `_` and `-`.', examples: [SPACE] },
        },
        messages: Object.fromEntries(Object.keys({ ...clientMessages, ...serverMessages }).map((n) => [n, { $ref: `#/components/messages/${n}` }])),
        bindings: {
          ws: {
            method: 'GET',
            query: {
              type: 'object',
              properties: { token: { type: 'string', description: 'The session token, where no Authorization header can be sent.' } },
            },
            headers: {
              type: 'object',
              properties: {
                Authorization: { type: 'string', pattern: '^Bearer\\s+\\S+\\s*$', description: 'Bearer and the session token (used when present, instead of ?token=).' },
                'Sec-WebSocket-Protocol': {
                  type: 'string',
                  description: `The encodings the client speaks, by preference: ${encodings.map((e) => e.subprotocol).join(', ')}. The server takes the first it speaks; none: JSON.`,
                },
              },
            },
            bindingVersion: '0.1.0',
          },
        },
        'x-close-codes': codes,
        'x-upgrade-refusals': {
          contentType: 'application/problem+json',
          schema: problem,
          refusals: [
            { status: 401, codes: ['unauthorized'], meaning: 'No session token.' },
            { status: 401, codes: ['invalid_credentials'], meaning: 'A token forged, expired, minted for another space, or minted by a credential since revoked.' },
            { status: 403, codes: ['member_removed'], meaning: 'The member was removed from the space.' },
            { status: 404, codes: ['not_found'], meaning: 'No such space, or a path other than /spaces/{spaceId}.' },
            { status: 409, codes: ['space_archived', 'quota_exceeded'], meaning: 'The space is archived; or the org or the member has its most open sockets.' },
            { status: 503, codes: ['unavailable'], meaning: 'The server is shutting down (Retry-After: 1).' },
          ],
        },
      },
    },
    operations: {
      send: {
        action: 'send',
        channel: { $ref: '#/channels/space' },
        title: 'Send client frames',
        summary: 'What a client sends: hello, subscribe, propose_delta, ping.',
        description: 'Frames over 64 KiB (RESONANCE_WS_MAX_FRAME_BYTES), not JSON or MessagePack, or not one of these are answered `error`; the 11th bad frame within 10 s closes 4008.',
        messages: refs(Object.keys(clientMessages)),
      },
      receive: {
        action: 'receive',
        channel: { $ref: '#/channels/space' },
        title: 'Receive server frames',
        summary: 'What the server sends: the start, the live feed, and the replies to client frames.',
        messages: refs(Object.keys(serverMessages)),
      },
    },
    components: {
      schemas: schemas.components,
      messages: { ...clientMessages, ...serverMessages },
      securitySchemes: {
        [BEARER]: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description: 'The session token of POST /v1/spaces/{id}/sessions, in `Authorization: Bearer`: valid for that space only, with the role it was minted with. Checked at the upgrade only.',
        },
        [QUERY_TOKEN]: { type: 'httpApiKey', in: 'query', name: 'token', description: 'The same session token as `?token=` (for browsers, which cannot set headers on a WebSocket).' },
      },
    },
  };
}

export function asyncApiYaml(): string {
  return stringify(asyncApiDocument(), { aliasDuplicateObjects: false, lineWidth: 0 });
}
