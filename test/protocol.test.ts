/**
 * The wire contract (@resonance/sdk/protocol) against the server's zod schemas and openapi.yaml: the types
 * the SDK publishes must be the types the server accepts and answers with. The type checks fail the build
 * (tsc compiles this file); the runtime checks compare the lists the schemas and the reference publish.
 */
import { readFileSync } from 'node:fs';
import {
  type ClientFrame, CLOSE_STATUS, CloseCode, DELTA_OPS, type DeltaProposal, FINAL_CLOSE_CODES, HQE_SESSION_STATUSES, type HqeConfig, type HqeConfigInput,
  type NormalizedHqeConfig, ROLES, RUN_STATUSES, SPACE_EVENT_NAMES, SPACE_STATUSES, type SpaceConfig, type SpaceConfigInput, SUBPROTOCOL, SUBPROTOCOLS,
  SUBSCRIPTION_KINDS, WEBHOOK_EVENT_TYPES, type ConflictFrame, type DeltaFrame, type ErrorFrame, type EventFrame, type PhasesFrame, type ServerFrame,
  type SnapshotFrame, type TelemetryFrame, type WelcomeFrame,
} from '@resonance/sdk/protocol';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { parse } from 'yaml';
import type { z } from 'zod';
import type { HQEConfig, NormalizedConfig } from '../src/model/config.js';
import type { NormalizedSpaceConfig, SpaceConfig as SpaceConfigSchema } from '../src/model/space.js';
import type { ClientFrame as ClientFrameSchema } from '../src/realtime/frames.js';
import type * as ServerFrames from '../src/realtime/server-frames.js';
import type { DeltaSchema } from '../src/sim/deltas.js';

/** The same type written as plain objects at every depth (an intersection compares unequal to its flat form). */
type Plain<T> = T extends readonly unknown[] ? T : T extends object ? { [K in keyof T]: Plain<T[K]> } : T;

describe('the protocol module', () => {
  it('types the configs, proposals and client frames exactly as the server parses them (expectTypeOf: a mismatch fails the build)', () => {
    expectTypeOf<Plain<HqeConfigInput>>().toEqualTypeOf<Plain<z.input<typeof HQEConfig>>>();
    expectTypeOf<Plain<HqeConfig>>().toEqualTypeOf<Plain<z.output<typeof HQEConfig>>>();
    expectTypeOf<Plain<NormalizedHqeConfig>>().toEqualTypeOf<Plain<NormalizedConfig>>();
    expectTypeOf<Plain<SpaceConfigInput>>().toEqualTypeOf<Plain<z.input<typeof SpaceConfigSchema>>>();
    expectTypeOf<Plain<SpaceConfig>>().toEqualTypeOf<Plain<NormalizedSpaceConfig>>();
    expectTypeOf<Plain<DeltaProposal>>().toEqualTypeOf<Plain<z.input<typeof DeltaSchema>>>();
    expectTypeOf<Plain<ClientFrame>>().toEqualTypeOf<Plain<z.input<typeof ClientFrameSchema>>>();
  });

  it('types every server frame exactly as the schemas of asyncapi.yaml describe it (expectTypeOf: a mismatch fails the build)', () => {
    expectTypeOf<Plain<WelcomeFrame>>().toEqualTypeOf<Plain<z.output<typeof ServerFrames.WelcomeFrame>>>();
    expectTypeOf<Plain<SnapshotFrame>>().toEqualTypeOf<Plain<z.output<typeof ServerFrames.SnapshotFrame>>>();
    expectTypeOf<Plain<DeltaFrame>>().toEqualTypeOf<Plain<z.output<typeof ServerFrames.DeltaFrame>>>();
    expectTypeOf<Plain<TelemetryFrame>>().toEqualTypeOf<Plain<z.output<typeof ServerFrames.TelemetryFrame>>>();
    expectTypeOf<Plain<PhasesFrame>>().toEqualTypeOf<Plain<z.output<typeof ServerFrames.PhasesFrame>>>();
    expectTypeOf<Plain<EventFrame>>().toEqualTypeOf<Plain<z.output<typeof ServerFrames.EventFrame>>>();
    expectTypeOf<Plain<ConflictFrame>>().toEqualTypeOf<Plain<z.output<typeof ServerFrames.ConflictFrame>>>();
    expectTypeOf<Plain<Extract<ServerFrame, { type: 'pong' }>>>().toEqualTypeOf<Plain<z.output<typeof ServerFrames.PongFrame>>>();
    expectTypeOf<Plain<ErrorFrame>>().toEqualTypeOf<Plain<z.output<typeof ServerFrames.ErrorFrame>>>();
    // The union as a whole: a frame type added to protocol.ts without a schema fails here.
    expectTypeOf<Plain<ServerFrame>>().toEqualTypeOf<Plain<z.output<typeof ServerFrames.ServerFrame>>>();
  });

  it('publishes the lists openapi.yaml names: roles, statuses, event types', () => {
    const doc = parse(readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8')) as { components: { schemas: Record<string, { enum?: string[] }> } };
    const enumOf = (name: string): string[] | undefined => doc.components.schemas[name]?.enum;
    expect(enumOf('Role')).toEqual([...ROLES]);
    expect(enumOf('SpaceStatus')).toEqual([...SPACE_STATUSES]);
    expect(enumOf('HQESessionStatus')).toEqual([...HQE_SESSION_STATUSES]);
    expect(enumOf('RunStatus')).toEqual([...RUN_STATUSES]);
    expect(enumOf('WebhookEventType')).toEqual([...WEBHOOK_EVENT_TYPES]);
    expect(WEBHOOK_EVENT_TYPES).toEqual(expect.arrayContaining([...SPACE_EVENT_NAMES]));
    expect(DELTA_OPS).not.toContain('replace_basis');
    expect(SUBSCRIPTION_KINDS).toContain('phases');
  });

  it('gives each close code one meaning, and a status to every retryable refusal', () => {
    const codes = Object.values(CloseCode);
    expect(new Set(codes).size).toBe(codes.length);
    // The quota close may clear later, so a client retries it; a member removed may not come back.
    expect(FINAL_CLOSE_CODES.has(CloseCode.QUOTA_EXCEEDED)).toBe(false);
    expect(FINAL_CLOSE_CODES.has(CloseCode.MEMBER_REMOVED)).toBe(true);
    expect(CLOSE_STATUS[CloseCode.CREDENTIAL_REVOKED]).toBe(401);
    for (const code of codes) if (code >= 4000 && code !== CloseCode.SPACE_GONE) expect(CLOSE_STATUS[code], `close code ${code}`).toBeGreaterThanOrEqual(400);
  });

  it('maps subprotocols to encodings with no inherited keys', () => {
    expect(SUBPROTOCOLS.get(SUBPROTOCOL.msgpack)).toBe('msgpack');
    expect(SUBPROTOCOLS.get(SUBPROTOCOL.json)).toBe('json');
    expect(SUBPROTOCOLS.get('constructor')).toBeUndefined();
    expect(SUBPROTOCOLS.get('__proto__')).toBeUndefined();
  });
});
