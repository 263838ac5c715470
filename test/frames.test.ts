/** Realtime frames: both encodings, and every kind of bad input becomes an error frame. */
import { decode, encode } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame } from '../src/realtime/frames.js';
import type { AcceptedOp } from '../src/sim/deltas.js';

describe('realtime frames', () => {
  const delta = { fromVersion: 3, ops: [{ op: 'shift_phase', path: '/state/phases/2', value: 0.0123 }] };

  it('decodes client frames from JSON text and MessagePack binary alike', () => {
    for (const frame of [{ type: 'hello', lastVersion: 7 }, { type: 'subscribe', kinds: ['telemetry', 'deltas'] }, { type: 'propose_delta', delta }, { type: 'ping', ts: 5 }]) {
      const fromJson = decodeFrame(JSON.stringify(frame), 1024);
      const fromMsgpack = decodeFrame(encode(frame), 1024);
      expect(fromJson.ok && fromJson.frame.type).toBe(frame.type);
      expect(fromMsgpack).toEqual(fromJson);
    }
  });

  it('encodes server frames in the session encoding', () => {
    const frame = { type: 'delta' as const, fromVersion: 3, toVersion: 4, epoch: 1, ops: delta.ops as AcceptedOp[], author: null };
    expect(JSON.parse(encodeFrame(frame, 'json') as string)).toEqual(frame);
    expect(decode(encodeFrame(frame, 'msgpack') as Uint8Array)).toEqual(frame);
  });

  it('turns oversized, malformed and invalid frames into error frames with pointers', () => {
    expect(decodeFrame('x'.repeat(2000), 1024)).toMatchObject({ ok: false, error: { code: 'frame_too_large' } });
    expect(decodeFrame('{"type":', 1024)).toMatchObject({ ok: false, error: { code: 'malformed_frame' } });
    expect(decodeFrame(new Uint8Array([0xc1]), 1024)).toMatchObject({ ok: false, error: { code: 'malformed_frame' } });
    const unknown = decodeFrame(JSON.stringify({ type: 'launch' }), 1024);
    expect(unknown).toMatchObject({ ok: false, error: { code: 'invalid_frame' } });
    const bad = decodeFrame(JSON.stringify({ type: 'propose_delta', delta: { fromVersion: -1, ops: [] } }), 1024);
    expect(bad.ok ? [] : bad.error.errors?.map((e) => e.pointer)).toEqual(['/delta/fromVersion', '/delta/ops']);
  });
});
