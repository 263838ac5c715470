/**
 * Versioned deltas of a live space (docs/spaces.md "Deltas"): validation of each op against the space's state,
 * role checks, and the version rules. The server is authoritative and assigns versions: `shift_phase`
 * commutes and is always rebased onto the current version; a `set_*` op whose path was written after the
 * delta's `fromVersion` conflicts; a delta older than the retained history, or from another epoch, is stale.
 * Pure: the space keeps the last version that wrote each path and applies what this accepts. Deciding
 * costs O(ops), whatever the length of the retained history.
 */
import { z } from 'zod';
import type { FieldError } from '../model/normalize.js';
import { EntropyField, OperatorSet, SpaceMixer, SpacePolicy } from '../model/space.js';
import { DELTA_OPS, type DeltaOpName, type Role } from '@resonance/sdk/protocol';


export const DeltaOpSchema = z
  .strictObject({
    op: z.enum(DELTA_OPS).meta({ description: 'set_* replaces the value; shift_phase adds radians to a phase (and commutes, so it never conflicts).' }),
    path: z.string().max(200).meta({ description: 'JSON pointer into the snapshot state, e.g. /state/phases/3' }),
    value: z.unknown().meta({ description: 'A number (radians for phases), or a boolean for semantic.enabled and allowGuest: validated like the same field of SpaceConfig.' }),
    meta: z.record(z.string(), z.unknown()).optional().meta({ description: 'Accepted and ignored.' }),
  })
  .meta({
    id: 'DeltaOp',
    description: 'One change: `set_phase`/`shift_phase` on /state/phases/{i} (writer), `set_operator`, `set_entropy`, `set_policy` on the fields under /state/operators, /state/entropy, /state/policy (admin).',
  });

export const DeltaSchema = z
  .strictObject({
    fromVersion: z.number().int().min(0).meta({
      description: "The version the ops were based on (the snapshot's `version`): a set_* op on a path written since is a 409 conflict; shift_phase is rebased.",
    }),
    toVersion: z.number().int().min(0).optional().meta({ description: 'Ignored: the server assigns versions.' }),
    epoch: z.number().int().min(0).optional().meta({ description: 'The epoch the ops were based on; another epoch is a 409 stale_epoch.' }),
    cv: z.array(z.number().int()).optional().meta({ description: 'Accepted for compatibility with the original Spaces API; ignored.' }),
    ops: z.array(DeltaOpSchema).min(1).max(256).meta({ description: 'At most 256 ops.' }),
  })
  .meta({ id: 'Delta', description: "A proposed change to a space's state: ops applied together at the next version, or refused together." });

export type Delta = z.infer<typeof DeltaSchema>;

/** An accepted op, its value validated and normalised. */
export interface AcceptedOp {
  op: DeltaOpName;
  path: string;
  value: number | boolean;
}

export interface DeltaContext {
  epoch: number;
  version: number;
  /** The oldest version a delta may start from (older history was dropped). */
  oldestVersion: number;
  /**
   * The last version that wrote each path, for at least every path written after oldestVersion (an entry
   * at or below it can never conflict: a delta that is not stale starts at oldestVersion or later).
   */
  lastWrites: ReadonlyMap<string, number>;
  /** Number of primes: phase indices are 0..k-1. */
  k: number;
  role: Role;
}

export type DeltaDecision =
  | { ok: true; ops: AcceptedOp[] }
  | { ok: false; status: 400 | 403 | 409; code: string; detail: string; errors?: FieldError[]; currentVersion: number };

const ROLE_OPS: Record<Role, ReadonlySet<DeltaOpName>> = {
  reader: new Set(),
  writer: new Set(['set_phase', 'shift_phase']),
  admin: new Set(['set_phase', 'shift_phase', 'set_operator', 'set_entropy', 'set_policy']),
  owner: new Set(['set_phase', 'shift_phase', 'set_operator', 'set_entropy', 'set_policy']),
};

export function roleMayApply(role: Role, op: DeltaOpName): boolean {
  return ROLE_OPS[role].has(op);
}

/** Leaf schemas by path, taken from the space config schemas so both validate alike. */
const LEAVES: Record<string, { op: DeltaOpName; schema: z.ZodType<number | boolean> }> = (() => {
  const out: Record<string, { op: DeltaOpName; schema: z.ZodType<number | boolean> }> = {};
  const add = (op: DeltaOpName, prefix: string, shape: Record<string, z.ZodType>): void => {
    for (const [key, schema] of Object.entries(shape)) {
      const inner = schema instanceof z.ZodDefault || schema instanceof z.ZodOptional ? (schema.unwrap() as z.ZodType) : schema;
      if (inner instanceof z.ZodNumber || inner instanceof z.ZodBoolean) out[`${prefix}/${key}`] = { op, schema: inner as z.ZodType<number | boolean> };
    }
  };
  // frequencyScale is fixed for a space's life: it is not a field of an OperatorSet.
  const { frequencyScale: _fixed, ...operators } = OperatorSet.shape;
  add('set_operator', '/state/operators', operators);
  add('set_operator', '/state/operators/mixer', SpaceMixer.shape);
  out['/state/operators/semantic/enabled'] = { op: 'set_operator', schema: z.boolean() };
  add('set_entropy', '/state/entropy', EntropyField.shape);
  add('set_policy', '/state/policy', SpacePolicy.shape);
  return out;
})();

const PHASE_PATH = /^\/state\/phases\/(0|[1-9][0-9]*)$/;

function checkOp(op: Delta['ops'][number], index: number, k: number): { accepted?: AcceptedOp; error?: FieldError } {
  const at = `/ops/${index}`;
  if (op.op === 'set_phase' || op.op === 'shift_phase') {
    const m = PHASE_PATH.exec(op.path);
    if (!m || Number(m[1]) >= k) {
      return { error: { pointer: `${at}/path`, code: 'invalid_path', message: `${op.op} takes /state/phases/{i} with i in 0..${k - 1}` } };
    }
    if (typeof op.value !== 'number' || !Number.isFinite(op.value)) {
      return { error: { pointer: `${at}/value`, code: 'invalid_value', message: 'a phase is a finite number of radians' } };
    }
    return { accepted: { op: op.op, path: op.path, value: op.value } };
  }
  const leaf = LEAVES[op.path];
  if (!leaf || leaf.op !== op.op) {
    return { error: { pointer: `${at}/path`, code: 'invalid_path', message: `${op.path} is not a field ${op.op} can set` } };
  }
  const parsed = leaf.schema.safeParse(op.value);
  if (!parsed.success) return { error: { pointer: `${at}/value`, code: 'invalid_value', message: parsed.error.issues[0]?.message ?? 'invalid value' } };
  return { accepted: { op: op.op, path: op.path, value: parsed.data } };
}

/** Accept or refuse a proposed delta against the space's current version, last writes and the caller's role. */
export function decideDelta(delta: Delta, ctx: DeltaContext): DeltaDecision {
  const refuse = (status: 400 | 403 | 409, code: string, detail: string, errors?: FieldError[]): DeltaDecision => ({
    ok: false, status, code, detail, currentVersion: ctx.version, ...(errors ? { errors } : {}),
  });
  const forbidden = delta.ops.findIndex((op) => !roleMayApply(ctx.role, op.op));
  if (forbidden >= 0) return refuse(403, 'insufficient_role', `role ${ctx.role} may not ${delta.ops[forbidden]!.op}`);
  const accepted: AcceptedOp[] = [];
  const errors: FieldError[] = [];
  delta.ops.forEach((op, i) => {
    const r = checkOp(op, i, ctx.k);
    if (r.error) errors.push(r.error);
    else accepted.push(r.accepted!);
  });
  if (errors.length > 0) return refuse(400, 'validation_failed', 'the delta has invalid ops', errors);
  if (delta.epoch !== undefined && delta.epoch !== ctx.epoch) {
    return refuse(409, 'stale_epoch', `the basis changed: epoch ${ctx.epoch}, the delta was made for epoch ${delta.epoch}`);
  }
  if (delta.fromVersion > ctx.version) return refuse(409, 'version_ahead', `fromVersion ${delta.fromVersion} is ahead of the space (version ${ctx.version})`);
  if (delta.fromVersion < ctx.oldestVersion) {
    return refuse(409, 'stale_version', `fromVersion ${delta.fromVersion} is older than the retained history (from ${ctx.oldestVersion}); take a snapshot`);
  }
  const clash = accepted.find((op) => op.op !== 'shift_phase' && (ctx.lastWrites.get(op.path) ?? -1) > delta.fromVersion);
  if (clash) return refuse(409, 'conflict', `${clash.path} changed after version ${delta.fromVersion}`);
  return { ok: true, ops: accepted };
}
