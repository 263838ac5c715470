/**
 * asyncapi.yaml, the realtime protocol as an AsyncAPI 3.0 document: generated from the zod schemas, the
 * committed file must be the current one, the official parser must accept it, and its examples must be
 * frames the schemas and the server accept.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { encode } from '@msgpack/msgpack';
import { DiagnosticSeverity, Parser } from '@asyncapi/parser';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { CLOSE_STATUS, CloseCode, FINAL_CLOSE_CODES, SUBPROTOCOL } from '@resonance/sdk/protocol';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { asyncApiDocument, asyncApiYaml, CONTENT_TYPE } from '../src/realtime/asyncapi.js';
import { ClientFrame, decodeFrame } from '../src/realtime/frames.js';
import { ServerFrame } from '../src/realtime/server-frames.js';

interface Message {
  name: string;
  title?: string;
  summary?: string;
  description?: string;
  payload: { $ref: string };
  examples?: Array<{ name: string; summary: string; payload: Record<string, unknown> }>;
}
interface Doc {
  asyncapi: string;
  channels: { space: { address: string; messages: Record<string, { $ref: string }>; description: string; 'x-close-codes': Array<{ code: number; name: string; final: boolean; status?: number; meaning: string }> } };
  operations: Record<string, { action: string; messages: Array<{ $ref: string }> }>;
  components: { schemas: Record<string, unknown>; messages: Record<string, Message>; securitySchemes: Record<string, Record<string, unknown>> };
  'x-encodings': Array<{ encoding: string; subprotocol: string; contentType: string; websocketFrame: string }>;
}

const file = new URL('../asyncapi.yaml', import.meta.url);
const committed = readFileSync(file, 'utf8');
const doc = parse(committed) as Doc;
const messages = Object.values(doc.components.messages);
const CLIENT_TYPES = ClientFrame.options.map((o) => o.shape.type.value);
const SERVER_TYPES = ServerFrame.options.map((o) => o.shape.type.value);
const MAX_FRAME_BYTES = 64 * 1024;

/** Each example, by message, with the ajv validator of the message's payload schema. */
let validators: Map<string, ValidateFunction>;

beforeAll(() => {
  const ajv = new Ajv({ allErrors: true });
  (addFormatsModule as unknown as (a: Ajv) => void)(ajv);
  // The schemas at the place their refs name (#/components/schemas/X), under an id of their own; strict
  // mode checks the schemas' keywords, and `components` is only their container.
  ajv.addKeyword('components');
  ajv.addSchema({ $id: 'asyncapi', components: { schemas: doc.components.schemas } });
  validators = new Map(messages.map((m) => [m.name, ajv.getSchema(`asyncapi${m.payload.$ref}`)!]));
});

describe('asyncapi.yaml', () => {
  it('is up to date with the schemas (regenerate with `npm run asyncapi`)', () => {
    expect(committed === asyncApiYaml(), 'asyncapi.yaml is stale: run `npm run asyncapi` and commit it').toBe(true);
  });

  it('is printed by `resonance asyncapi`', async () => {
    const bin = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
    const { stdout } = await promisify(execFile)('node', [bin, 'asyncapi'], { maxBuffer: 16 * 1024 * 1024 });
    expect(stdout === committed).toBe(true);
    const help = await promisify(execFile)('node', [bin, 'asyncapi', '--help']);
    expect(help.stdout).toMatch(/^usage: resonance asyncapi/);
  });

  it('is a valid AsyncAPI 3.0 document for the official parser', async () => {
    const { document, diagnostics } = await new Parser().parse(committed);
    const problems = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning);
    expect(problems.map((d) => `${d.code} at ${d.path.join('.')}: ${d.message}`)).toEqual([]);
    expect(document).toBeDefined();
    expect(document!.version()).toBe('3.0.0');
    const server = document!.servers().all()[0]!;
    expect([server.host(), server.protocol()]).toEqual(['{host}', 'ws']);
    expect(server.security().map((requirements) => requirements.all().map((r) => r.scheme().type()))).toEqual([['http'], ['httpApiKey']]);
    const channel = document!.channels().get('space')!;
    expect(channel.address()).toBe('/spaces/{spaceId}');
    expect(channel.parameters().all().map((p) => p.id())).toEqual(['spaceId']);
    const operations = Object.fromEntries(document!.operations().all().map((o) => [o.id(), { action: o.action(), messages: o.messages().all().map((m) => m.id()) }]));
    expect(operations).toEqual({ send: { action: 'send', messages: CLIENT_TYPES }, receive: { action: 'receive', messages: SERVER_TYPES } });
  });

  it('describes every frame of the protocol with a title, summary, description and examples', () => {
    expect(Object.keys(doc.channels.space.messages)).toEqual([...CLIENT_TYPES, ...SERVER_TYPES]);
    expect(messages.map((m) => m.name)).toEqual([...CLIENT_TYPES, ...SERVER_TYPES]);
    for (const m of messages) {
      expect(m.title, m.name).toBeTruthy();
      expect(m.summary, m.name).toBeTruthy();
      expect(m.description, m.name).toBeTruthy();
      expect(m.examples?.length, m.name).toBeGreaterThan(0);
      for (const e of m.examples!) expect(e.payload.type, `${m.name}/${e.name}`).toBe(m.name);
    }
  });

  it('validates every example against its payload schema, and refuses a changed one', () => {
    for (const m of messages) {
      const validate = validators.get(m.name)!;
      for (const e of m.examples!) {
        expect(validate(e.payload), `${m.name}/${e.name}: ${JSON.stringify(validate.errors)}`).toBe(true);
        // The schemas say something: an unknown field, another type or a missing field is refused.
        expect(validate({ ...e.payload, unknownField: 1 }), `${m.name}/${e.name} + unknownField`).toBe(false);
        expect(validate({ ...e.payload, type: 'nope' }), `${m.name}/${e.name} type nope`).toBe(false);
        const { type: _type, ...untyped } = e.payload;
        expect(validate(untyped), `${m.name}/${e.name} without type`).toBe(false);
      }
    }
  });

  it('shows client frames the server accepts, as JSON text and as MessagePack', () => {
    for (const type of CLIENT_TYPES) {
      for (const e of doc.components.messages[type]!.examples!) {
        for (const data of [JSON.stringify(e.payload), encode(e.payload)]) {
          const decoded = decodeFrame(data, MAX_FRAME_BYTES);
          expect(decoded, `${type}/${e.name}`).toMatchObject({ ok: true, frame: e.payload });
        }
        // What the schema refuses the server refuses too.
        expect(decodeFrame(JSON.stringify({ ...e.payload, unknownField: 1 }), MAX_FRAME_BYTES)).toMatchObject({ ok: false, error: { code: 'invalid_frame' } });
      }
    }
  });

  it('shows server frames the server-frame schemas accept', () => {
    for (const type of SERVER_TYPES) for (const e of doc.components.messages[type]!.examples!) expect(ServerFrame.safeParse(e.payload).success, `${type}/${e.name}`).toBe(true);
  });

  it('lists every close code with its meaning, whether it is final and its status', () => {
    const codes = doc.channels.space['x-close-codes'];
    expect(codes.map((c) => c.code)).toEqual(Object.values(CloseCode));
    for (const c of codes) {
      expect(c.code, c.name).toBe(CloseCode[c.name as keyof typeof CloseCode]);
      expect(c.final, c.name).toBe(FINAL_CLOSE_CODES.has(c.code));
      expect(c.status, c.name).toBe(CLOSE_STATUS[c.code]);
      expect(c.meaning.length, c.name).toBeGreaterThan(10);
      expect(doc.channels.space.description).toContain(`| ${c.code} | ${c.name} |`);
    }
  });

  it('names both encodings, their subprotocols and content types, and both ways to send the token', () => {
    expect(doc['x-encodings']).toEqual([
      { encoding: 'json', subprotocol: SUBPROTOCOL.json, contentType: 'application/json', websocketFrame: 'text' },
      { encoding: 'msgpack', subprotocol: SUBPROTOCOL.msgpack, contentType: 'application/msgpack', websocketFrame: 'binary' },
    ]);
    expect(CONTENT_TYPE).toEqual({ json: 'application/json', msgpack: 'application/msgpack' });
    expect(Object.values(doc.components.securitySchemes)).toEqual([
      expect.objectContaining({ type: 'http', scheme: 'bearer' }),
      expect.objectContaining({ type: 'httpApiKey', in: 'query', name: 'token' }),
    ]);
    // The document object is the same one the YAML prints (nothing is added in between).
    expect(parse(asyncApiYaml())).toEqual(JSON.parse(JSON.stringify(asyncApiDocument())));
  });
});
