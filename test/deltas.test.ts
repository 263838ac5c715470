/** Delta validation, roles and version rules of a live space. */
import { describe, expect, it } from 'vitest';
import { decideDelta, type DeltaContext, type DeltaRecord } from '../src/sim/deltas.js';

const history: DeltaRecord[] = [
  { epoch: 2, fromVersion: 10, toVersion: 11, paths: ['/state/phases/1'] },
  { epoch: 2, fromVersion: 11, toVersion: 12, paths: ['/state/operators/resonanceTarget'] },
];
const ctx = (over: Partial<DeltaContext> = {}): DeltaContext => ({ epoch: 2, version: 12, oldestVersion: 10, history, k: 6, role: 'writer', ...over });

describe('decideDelta', () => {
  it('rebases shift_phase onto the current version, even on a path written since', () => {
    const d = decideDelta({ fromVersion: 10, ops: [{ op: 'shift_phase', path: '/state/phases/1', value: 0.01 }] }, ctx());
    expect(d).toEqual({ ok: true, ops: [{ op: 'shift_phase', path: '/state/phases/1', value: 0.01 }] });
  });

  it('refuses a set_* on a path written after fromVersion with 409 and the current version', () => {
    const d = decideDelta({ fromVersion: 10, ops: [{ op: 'set_phase', path: '/state/phases/1', value: 1 }] }, ctx());
    expect(d).toMatchObject({ ok: false, status: 409, code: 'conflict', currentVersion: 12 });
    const fresh = decideDelta({ fromVersion: 11, ops: [{ op: 'set_phase', path: '/state/phases/1', value: 1 }] }, ctx());
    expect(fresh.ok).toBe(true);
    const other = decideDelta({ fromVersion: 10, ops: [{ op: 'set_phase', path: '/state/phases/2', value: 1 }] }, ctx());
    expect(other.ok).toBe(true);
  });

  it('refuses deltas older than the history, from the future, or from another epoch', () => {
    const op = { op: 'shift_phase' as const, path: '/state/phases/0', value: 0.1 };
    expect(decideDelta({ fromVersion: 9, ops: [op] }, ctx())).toMatchObject({ status: 409, code: 'stale_version' });
    expect(decideDelta({ fromVersion: 13, ops: [op] }, ctx())).toMatchObject({ status: 409, code: 'version_ahead' });
    expect(decideDelta({ fromVersion: 12, epoch: 1, ops: [op] }, ctx())).toMatchObject({ status: 409, code: 'stale_epoch' });
    expect(decideDelta({ fromVersion: 12, epoch: 2, ops: [op] }, ctx()).ok).toBe(true);
  });

  it('checks roles per op: readers nothing, writers phases, admins everything', () => {
    const target = { op: 'set_operator' as const, path: '/state/operators/resonanceTarget', value: 0.9 };
    const phase = { op: 'set_phase' as const, path: '/state/phases/0', value: 0 };
    expect(decideDelta({ fromVersion: 12, ops: [phase] }, ctx({ role: 'reader' }))).toMatchObject({ status: 403, code: 'insufficient_role' });
    expect(decideDelta({ fromVersion: 12, ops: [target] }, ctx({ role: 'writer' }))).toMatchObject({ status: 403 });
    expect(decideDelta({ fromVersion: 12, ops: [target, phase] }, ctx({ role: 'admin' })).ok).toBe(true);
    expect(decideDelta({ fromVersion: 12, ops: [target] }, ctx({ role: 'owner' })).ok).toBe(true);
  });

  it('validates every op by pointer: paths, indices and values against the space schemas', () => {
    const d = decideDelta(
      {
        fromVersion: 12,
        ops: [
          { op: 'set_phase', path: '/state/phases/6', value: 0 },
          { op: 'shift_phase', path: '/state/phases/2', value: 'x' },
          { op: 'set_operator', path: '/state/operators/resonanceTarget', value: 1.5 },
          { op: 'set_policy', path: '/state/policy/publishHz', value: 61 },
          { op: 'set_entropy', path: '/state/operators/localityBias', value: 0.1 },
          { op: 'set_operator', path: '/state/operators/mixer/gamma0', value: 0.4 },
          { op: 'set_operator', path: '/state/operators/semantic/enabled', value: true },
        ],
      },
      ctx({ role: 'admin' }),
    );
    expect(d.ok).toBe(false);
    if (d.ok) return;
    expect(d.status).toBe(400);
    expect(d.errors?.map((e) => e.pointer)).toEqual(['/ops/0/path', '/ops/1/value', '/ops/2/value', '/ops/3/value', '/ops/4/path']);
  });
});
