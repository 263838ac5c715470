/**
 * Realtime frames of the Spaces API (docs/spaces.md "Realtime"), as JSON text or
 * MessagePack binary. Client frames are validated here; a frame that is malformed, of an unknown type or
 * over the size limit becomes an `error` frame, never an exception.
 */
import { decode, encode } from '@msgpack/msgpack';
import { z } from 'zod';
import { sseEvent } from '../http/sse.js';
import { DeltaSchema } from '../sim/deltas.js';
import { type Encoding, type ServerFrame, SUBSCRIPTION_KINDS } from '@resonance/sdk/protocol';

export const SubscriptionKind = z.enum(SUBSCRIPTION_KINDS);

export const ClientFrame = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('hello'),
    version: z.literal(1).default(1),
    sessionId: z.string().max(200).optional(),
    encoding: z.enum(['json', 'msgpack']).optional(),
    /** Resume: replay the deltas after this version when it is still in history, else send a snapshot. */
    lastVersion: z.number().int().min(0).optional(),
  }),
  /** Replaces the connection's subscription. Default: telemetry, deltas and events; `phases` is opt-in. */
  z.strictObject({ type: z.literal('subscribe'), kinds: z.array(SubscriptionKind).min(1) }),
  z.strictObject({ type: z.literal('propose_delta'), delta: DeltaSchema, requestId: z.string().max(100).optional() }),
  z.strictObject({ type: z.literal('ping'), ts: z.number().optional() }),
]);
export type ClientFrame = z.infer<typeof ClientFrame>;

export function encodeFrame(frame: ServerFrame, encoding: Encoding): string | Uint8Array {
  return encoding === 'json' ? JSON.stringify(frame) : encode(frame);
}

/**
 * The frame as the bytes of one WebSocket message (JSON as UTF-8, sent as a text frame): encoded once,
 * the same Buffer goes to every connection of that encoding without a per-send conversion.
 */
export function encodeFrameBytes(frame: ServerFrame, encoding: Encoding): Buffer {
  if (encoding === 'json') return Buffer.from(JSON.stringify(frame), 'utf8');
  const bytes = encode(frame, { ignoreUndefined: true });
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A frame's fields without `type` (and the proposer's `requestId`): the data of its SSE event. */
const sseData = <T extends { type?: string; requestId?: string }>(frame: T): Omit<T, 'type' | 'requestId'> => {
  const { type: _type, requestId: _requestId, ...rest } = frame;
  return rest;
};

/**
 * The SSE event of a frame of the space telemetry stream (docs/spaces.md, "Telemetry (SSE)"): `telemetry`,
 * `delta` (id = toVersion) and `event` carry the realtime frame without `type`, `snapshot` (id = its version)
 * the snapshot itself. Other frames have no SSE form.
 */
export function sseEventOf(frame: ServerFrame): string {
  switch (frame.type) {
    case 'telemetry':
      return sseEvent('telemetry', JSON.stringify(sseData(frame)));
    case 'delta':
      return sseEvent('delta', JSON.stringify(sseData(frame)), frame.toVersion);
    case 'snapshot':
      return sseEvent('snapshot', JSON.stringify(frame.snapshot), frame.snapshot.version);
    case 'event':
      return sseEvent('event', JSON.stringify(sseData(frame)));
    default:
      throw new Error(`a ${frame.type} frame has no SSE event`);
  }
}

export type Decoded = { ok: true; frame: ClientFrame } | { ok: false; error: Extract<ServerFrame, { type: 'error' }> };

/** Decode one client message: text is JSON, binary is MessagePack, whatever the session's encoding. */
export function decodeFrame(data: string | Uint8Array, maxBytes: number): Decoded {
  const size = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
  if (size > maxBytes) return { ok: false, error: { type: 'error', code: 'frame_too_large', message: `frames are at most ${maxBytes} bytes` } };
  let raw: unknown;
  try {
    raw = typeof data === 'string' ? JSON.parse(data) : decode(data);
  } catch {
    return { ok: false, error: { type: 'error', code: 'malformed_frame', message: typeof data === 'string' ? 'not JSON' : 'not MessagePack' } };
  }
  const parsed = ClientFrame.safeParse(raw);
  if (!parsed.success) {
    return {
      ok: false,
      error: {
        type: 'error', code: 'invalid_frame', message: 'the frame does not match the protocol',
        errors: parsed.error.issues.map((i) => ({ pointer: i.path.map((p) => `/${String(p)}`).join(''), code: i.code, message: i.message })),
      },
    };
  }
  return { ok: true, frame: parsed.data };
}
