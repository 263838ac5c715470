/**
 * The frames the server sends on a space's WebSocket (docs/spaces.md "Realtime"), as zod schemas: the
 * source of their JSON Schemas in asyncapi.yaml. The server builds its frames as the `ServerFrame` type of
 * @resonance/sdk/protocol; test/protocol.test.ts checks that each schema's output type is that type, so
 * the two cannot drift. Nothing validates outgoing frames at runtime.
 */
import { z } from 'zod';
import { SpaceBasis } from '../model/space.js';
import { SpaceMetricsSchema, SpaceSnapshotSchema } from '../http/routes/spaces.js';
import { DELTA_OPS, ROLES, SPACE_EVENT_NAMES } from '@resonance/sdk/protocol';

const version = () => z.number().int().min(0);
const Encoding = z.enum(['json', 'msgpack']);

export const WelcomeFrame = z
  .object({
    type: z.literal('welcome'),
    spaceId: z.string(),
    epoch: version(),
    version: version().meta({ description: 'The version the session starts from: the replayed deltas follow it, or a snapshot at it.' }),
    role: z.enum(ROLES).meta({ description: 'The role the session token was minted with.' }),
    encoding: Encoding.meta({ description: 'The encoding of every later frame, both ways.' }),
    sessionId: z.string().meta({ description: 'The member id.' }),
  })
  .meta({ id: 'WelcomeFrame' });

export const SnapshotFrame = z
  .object({
    type: z.literal('snapshot'),
    snapshot: SpaceSnapshotSchema,
    acks: z
      .array(z.object({ requestId: z.string(), toVersion: version() }))
      .optional()
      .meta({ description: "This connection's accepted proposals whose delta frames the snapshot replaces (a connection that fell behind)." }),
  })
  .meta({ id: 'SnapshotFrame' });

/** An op a member proposed, as accepted (its value normalised). */
const AcceptedOp = z.object({ op: z.enum(DELTA_OPS), path: z.string(), value: z.unknown() });
/** A basis change: written by the server alone (POST /basis), the one op of its delta. */
const BasisOp = z.object({ op: z.literal('replace_basis'), path: z.literal('/state/basis'), value: SpaceBasis });

export const DeltaFrame = z
  .object({
    type: z.literal('delta'),
    requestId: z.string().optional().meta({ description: "Only on the proposer's own copy: the requestId of its propose_delta." }),
    fromVersion: version().meta({ description: 'Always toVersion - 1: the version the delta was applied on.' }),
    toVersion: version(),
    epoch: version(),
    ops: z.union([z.array(AcceptedOp), z.array(BasisOp)]),
    author: z.string().nullable().meta({ description: "The member that proposed it; null for the server's own (a basis change)." }),
  })
  .meta({ id: 'DeltaFrame' });

export const TelemetryFrame = SpaceMetricsSchema.extend({
  type: z.literal('telemetry'),
  t: z.number().int().meta({ description: 'Tick within the epoch.' }),
  version: version().meta({ description: 'Highest version whose deltas the tick included.' }),
}).meta({ id: 'TelemetryFrame' });

export const PhasesFrame = z
  .object({
    type: z.literal('phases'),
    t: z.number().int(),
    version: version(),
    phases: z.array(z.number()).meta({ description: 'Radians, one per prime of the ordered basis.' }),
    masses: z.array(z.number()).meta({ description: 'Probability mass per prime, summing to 1.' }),
  })
  .meta({ id: 'PhasesFrame' });

export const EventFrame = z
  .object({
    type: z.literal('event'),
    name: z.enum(SPACE_EVENT_NAMES),
    at: z.string().meta({ format: 'date-time' }),
    data: z.record(z.string(), z.unknown()).meta({ description: 'The same data as the webhook of that event (docs/webhooks.md).' }),
  })
  .meta({ id: 'EventFrame' });

export const ConflictFrame = z
  .object({
    type: z.literal('conflict'),
    expectedFrom: version().meta({ description: "The proposal's delta.fromVersion." }),
    actual: version().meta({ description: "The space's current version." }),
    code: z.string().meta({ description: 'conflict, stale_version, version_ahead or stale_epoch.' }),
    detail: z.string(),
    requestId: z.string().optional(),
  })
  .meta({ id: 'ConflictFrame' });

export const PongFrame = z.object({ type: z.literal('pong'), ts: z.number().optional().meta({ description: "The ping's ts, echoed." }) }).meta({ id: 'PongFrame' });

export const ErrorFrame = z
  .object({
    type: z.literal('error'),
    code: z.string().meta({ description: 'Stable machine-readable error code (docs/errors.md).' }),
    message: z.string(),
    errors: z
      .array(z.object({ pointer: z.string().meta({ description: 'RFC 6901 pointer into the frame.' }), code: z.string(), message: z.string() }))
      .optional(),
    meta: z
      .record(z.string(), z.unknown())
      .optional()
      .meta({ description: 'Details a client acts on: the quota and limit of quota_exceeded, the retry time of rate_limited.' }),
    requestId: z.string().optional().meta({ description: 'The requestId of the propose_delta refused.' }),
  })
  .meta({ id: 'ErrorFrame' });

export const ServerFrame = z.discriminatedUnion('type', [
  WelcomeFrame, SnapshotFrame, DeltaFrame, TelemetryFrame, PhasesFrame, EventFrame, ConflictFrame, PongFrame, ErrorFrame,
]);
