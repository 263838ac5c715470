/**
 * openapi.yaml is generated from the zod schemas; the committed file must be the current one, and it must be a
 * reference a new user can learn the API from: every operation named, described and summarised, every schema
 * described, and every example valid against the schema it illustrates (ajv, JSON Schema 2020-12, as
 * test/helpers/contract-client.ts checks the server's responses).
 */
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { openApiYaml } from '../src/http/openapi.js';
import { DEMO_ROOM } from './helpers/server.js';

type Json = Record<string, unknown>;
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;

const committed = readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8');
const spec = parse(committed) as Json;
const schemas = (spec.components as { schemas: Record<string, Json> }).schemas;

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'] as const;
const pointerEscape = (s: string): string => s.replace(/~/g, '~0').replace(/\//g, '~1');
const pointerOf = (parts: string[]): string => '/' + parts.map(pointerEscape).join('/');

interface Operation {
  /** "POST /v1/hqe/run", or "webhook hqe.converged" for the document's `webhooks` section. */
  name: string;
  /** JSON pointer parts to the operation object. */
  at: string[];
  op: Json;
}

/** Every operation of `paths` and of `webhooks`. */
function operations(): Operation[] {
  const out: Operation[] = [];
  for (const section of ['paths', 'webhooks'] as const) {
    for (const [key, item] of Object.entries((spec[section] ?? {}) as Record<string, Json>)) {
      for (const method of METHODS) {
        const op = item[method] as Json | undefined;
        if (op) out.push({ name: section === 'paths' ? `${method.toUpperCase()} ${key}` : `webhook ${key}`, at: [section, key, method], op });
      }
    }
  }
  return out;
}

interface MediaExample {
  /** Where the example is: "POST /v1/hqe/run 200 application/json seed". */
  where: string;
  /** Pointer parts to the media type object. */
  at: string[];
  value: unknown;
}

/** The media type objects of an operation's request body and of its responses whose status matches `statuses`. */
function mediaTypes(o: Operation, statuses: (status: string) => boolean): Array<{ where: string; at: string[]; media: Json }> {
  const out: Array<{ where: string; at: string[]; media: Json }> = [];
  const body = o.op.requestBody as { content?: Record<string, Json> } | undefined;
  for (const [type, media] of Object.entries(body?.content ?? {})) out.push({ where: `${o.name} request ${type}`, at: [...o.at, 'requestBody', 'content', type], media });
  for (const [status, response] of Object.entries((o.op.responses ?? {}) as Record<string, { content?: Record<string, Json> }>)) {
    if (!statuses(status)) continue;
    for (const [type, media] of Object.entries(response.content ?? {})) out.push({ where: `${o.name} ${status} ${type}`, at: [...o.at, 'responses', status, 'content', type], media });
  }
  return out;
}

function examplesOf(where: string, at: string[], media: Json): MediaExample[] {
  const out: MediaExample[] = [];
  if ('example' in media) out.push({ where, at, value: media.example });
  for (const [name, ex] of Object.entries((media.examples ?? {}) as Record<string, { value?: unknown }>)) out.push({ where: `${where} ${name}`, at, value: ex.value });
  return out;
}

function validator(): Ajv2020 {
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
  addFormats(ajv);
  ajv.addSchema(spec, 'openapi');
  return ajv;
}

/** The value at `parts` in the document (undefined when absent). */
function lookup(parts: string[]): unknown {
  let node: unknown = spec;
  for (const part of parts) node = node && typeof node === 'object' ? (node as Json)[part] : undefined;
  return node;
}

/** Validates `value` against the schema at `pointer` in the document; the errors as text, or null. */
function validate(ajv: Ajv2020, pointer: string, value: unknown): string | null {
  const check = ajv.getSchema(`openapi#${pointer}`) ?? ajv.compile({ $ref: `openapi#${pointer}` });
  return check(value) ? null : ajv.errorsText(check.errors);
}

/** The operationIds clients and SDK generators use: renaming one breaks them, so each is pinned here. */
const OPERATION_IDS: Record<string, string> = {
  'POST /v1/hqe/validate': 'validateHqeConfig',
  'POST /v1/hqe/run': 'runHqe',
  'POST /v1/hqe/sessions': 'createHqeSession',
  'GET /v1/hqe/sessions/{id}': 'getHqeSession',
  'DELETE /v1/hqe/sessions/{id}': 'closeHqeSession',
  'POST /v1/hqe/sessions/{id}/step': 'stepHqeSession',
  'GET /v1/hqe/sessions/{id}/snapshots': 'listHqeSnapshots',
  'GET /v1/hqe/sessions/{id}/stream': 'streamHqeSession',
  'POST /v1/spaces': 'createSpace',
  'GET /v1/spaces': 'listSpaces',
  'GET /v1/spaces/{id}': 'getSpace',
  'PATCH /v1/spaces/{id}': 'updateSpace',
  'DELETE /v1/spaces/{id}': 'deleteSpace',
  'POST /v1/spaces/{id}/basis': 'replaceSpaceBasis',
  'GET /v1/spaces/{id}/snapshot': 'getSpaceSnapshot',
  'POST /v1/spaces/{id}/deltas': 'proposeSpaceDelta',
  'POST /v1/spaces/{id}/sessions': 'createSpaceSession',
  'GET /v1/spaces/{id}/telemetry': 'streamSpaceTelemetry',
  'GET /v1/spaces/{id}/members': 'listSpaceMembers',
  'DELETE /v1/spaces/{id}/members/{memberId}': 'removeSpaceMember',
  'POST /v1/hqe/webhooks': 'createHqeWebhook',
  'GET /v1/hqe/webhooks': 'listHqeWebhooks',
  'GET /v1/hqe/webhooks/{id}': 'getHqeWebhook',
  'DELETE /v1/hqe/webhooks/{id}': 'deleteHqeWebhook',
  'POST /v1/webhooks': 'createWebhook',
  'GET /v1/webhooks': 'listWebhooks',
  'GET /v1/webhooks/{id}': 'getWebhook',
  'DELETE /v1/webhooks/{id}': 'deleteWebhook',
  'GET /v1/usage': 'getUsage',
  'GET /v1/cluster': 'getCluster',
  'POST /oauth/token': 'issueToken',
  'GET /healthz': 'getHealth',
  'GET /readyz': 'getReadiness',
  'GET /metrics': 'getMetrics',
  'webhook hqe.plateau': 'onHqePlateau',
  'webhook hqe.converged': 'onHqeConverged',
  'webhook hqe.failed': 'onHqeFailed',
  'webhook space.updated': 'onSpaceUpdated',
  'webhook basis.changed': 'onBasisChanged',
  'webhook plateau': 'onPlateau',
  'webhook collapse': 'onCollapse',
  'webhook member.joined': 'onMemberJoined',
  'webhook member.left': 'onMemberLeft',
};

/** Properties whose name says all: the rest of every component schema's properties carry a description. */
const SELF_EVIDENT = new Set([
  'id', 'name', 'createdAt', 'updatedAt', 'joinedAt', 'spaceId', 'orgId', 'items', 'ok', 'url', 'enabled', 'grant_type', 'token_type', 'status', 'ready', 'uptimeSeconds',
]);

describe('openapi.yaml', () => {
  it('is up to date with the schemas (regenerate with `npm run openapi`)', () => {
    expect(committed === openApiYaml(), 'openapi.yaml is stale: run `npm run openapi` and commit it').toBe(true);
  });

  it('documents every operation of the HQE contract', () => {
    for (const path of ['/v1/hqe/validate:', '/v1/hqe/run:', '/v1/hqe/sessions:', '/v1/hqe/sessions/{id}:', '/v1/hqe/sessions/{id}/step:',
      '/v1/hqe/sessions/{id}/snapshots:', '/v1/hqe/sessions/{id}/stream:', '/v1/hqe/webhooks:', '/oauth/token:']) {
      expect(committed).toContain(`\n  ${path}\n`);
    }
  });

  it('documents every operation of the Spaces contract', () => {
    for (const path of ['/v1/spaces:', '/v1/spaces/{id}:', '/v1/spaces/{id}/basis:', '/v1/spaces/{id}/snapshot:', '/v1/spaces/{id}/deltas:',
      '/v1/spaces/{id}/sessions:', '/v1/spaces/{id}/telemetry:', '/v1/spaces/{id}/members:', '/v1/webhooks:']) {
      expect(committed).toContain(`\n  ${path}\n`);
    }
    for (const schema of ['Space:', 'SpaceSnapshot:', 'SpacePage:', 'SessionToken:', 'Member:', 'SpaceWebhookEvent:']) expect(committed).toContain(`\n    ${schema}\n`);
  });

  it('names every operation with a unique, camelCase, pinned operationId, and gives each a summary and a description', () => {
    const ops = operations();
    const ids = new Map<string, string>();
    for (const { name, op } of ops) {
      const id = op.operationId;
      expect(typeof id === 'string' && /^[a-z][a-zA-Z0-9]*$/.test(id), `${name}: operationId ${String(id)} is not camelCase`).toBe(true);
      expect(ids.get(id as string), `${name}: operationId ${String(id)} is also used by another operation`).toBeUndefined();
      ids.set(id as string, name);
      for (const field of ['summary', 'description'] as const) {
        expect(typeof op[field] === 'string' && (op[field] as string).trim().length > 0, `${name}: no ${field}`).toBe(true);
      }
      expect(op.description, `${name}: the description only repeats the summary`).not.toBe(op.summary);
    }
    // Exactly the pinned set: a new operation gets its name here, a renamed one fails.
    expect(Object.fromEntries(ops.map(({ name, op }) => [name, op.operationId]))).toEqual(OPERATION_IDS);
  });

  it('describes every component schema, and every property whose name does not say all', () => {
    const undescribed = Object.entries(schemas).filter(([, s]) => typeof s.description !== 'string' || s.description.trim() === '').map(([n]) => n);
    expect(undescribed, 'component schemas without a description').toEqual([]);
    const isDescribed = (p: Json): boolean => {
      if (typeof p.description === 'string' && p.description.trim() !== '') return true;
      // A reference (or a nullable one) is described by the component it names.
      const refs = [p, ...((p.anyOf ?? []) as Json[])].map((s) => s.$ref).filter((r): r is string => typeof r === 'string');
      return refs.some((r) => typeof schemas[r.split('/').pop()!]?.description === 'string');
    };
    const missing: string[] = [];
    for (const [name, s] of Object.entries(schemas)) {
      for (const [prop, p] of Object.entries((s.properties ?? {}) as Record<string, Json>)) {
        if (!SELF_EVIDENT.has(prop) && !isDescribed(p)) missing.push(`${name}.${prop}`);
      }
    }
    expect(missing, 'properties without a description').toEqual([]);
  });

  it('has an example for every request body and every 2xx response body', () => {
    const without: string[] = [];
    for (const o of operations()) {
      for (const { where, at, media } of mediaTypes(o, (status) => status.startsWith('2'))) {
        if (examplesOf(where, at, media).length === 0) without.push(where);
      }
    }
    expect(without, 'bodies without an example').toEqual([]);
  });

  it('has examples that the schemas they illustrate accept', () => {
    const ajv = validator();
    const examples = operations().flatMap((o) => mediaTypes(o, () => true).flatMap(({ where, at, media }) => examplesOf(where, at, media)));
    expect(examples.length).toBeGreaterThan(40);
    const invalid = examples
      .map((e) => ({ where: e.where, errors: validate(ajv, pointerOf([...e.at, 'schema']), e.value) }))
      .filter((e) => e.errors !== null);
    expect(invalid, 'examples the document\'s own schemas refuse').toEqual([]);
  });

  it('checks examples against schemas that can refuse them', () => {
    // The check above means something only if the schemas reached by those pointers are the real ones.
    const ajv = validator();
    const run = ['paths', '/v1/hqe/run', 'post', 'responses', '200', 'content', 'application/json'];
    const value = lookup([...run, 'examples', 'converged', 'value']) as Json;
    const schema = pointerOf([...run, 'schema']);
    expect(validate(ajv, schema, value)).toBeNull();
    expect(validate(ajv, schema, { ...value, status: 'finished' })).toMatch(/status/);
    expect(validate(ajv, schema, Object.fromEntries(Object.entries(value).filter(([k]) => k !== 'seed')))).toMatch(/seed/);
    const config = pointerOf(['paths', '/v1/hqe/validate', 'post', 'requestBody', 'content', 'application/json', 'schema']);
    expect(validate(ajv, config, { primes: [2, 3], schedule: { stepz: 10 } })).toMatch(/additional/);
  });

  it('validates the examples inside schemas too', () => {
    const ajv = validator();
    const found: Array<{ pointer: string; value: unknown }> = [];
    const walk = (node: unknown, at: string[]): void => {
      if (Array.isArray(node)) node.forEach((n, i) => walk(n, [...at, String(i)]));
      else if (node && typeof node === 'object') {
        const obj = node as Json;
        if ('example' in obj && ('type' in obj || '$ref' in obj || 'anyOf' in obj)) found.push({ pointer: pointerOf(at), value: obj.example });
        for (const [k, v] of Object.entries(obj)) if (k !== 'example' && k !== 'examples') walk(v, [...at, k]);
      }
    };
    walk(spec.components, ['components']);
    expect(found.length).toBeGreaterThan(0);
    for (const { pointer, value } of found) expect(validate(ajv, pointer, value), pointer).toBeNull();
  });

  it('shows the project\'s own example configs', () => {
    const example = (path: string, name: string): unknown => lookup(['paths', path, 'post', 'requestBody', 'content', 'application/json', 'examples', name, 'value']);
    const hqe = JSON.parse(readFileSync(new URL('../examples/hqe.json', import.meta.url), 'utf8')) as unknown;
    expect(example('/v1/hqe/validate', 'example')).toEqual(hqe);
    expect(example('/v1/hqe/sessions', 'example')).toEqual(hqe);
    expect(example('/v1/spaces', 'basic')).toEqual(DEMO_ROOM);
  });
});
