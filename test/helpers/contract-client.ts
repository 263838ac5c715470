/**
 * An HTTP client that knows the API only through the committed openapi.yaml: every response it receives is
 * checked against the documented status codes, content types and JSON schemas (ajv, JSON Schema 2020-12).
 * It imports nothing from src/, so it checks the server as an outside client would.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { parse } from 'yaml';

type Json = Record<string, unknown>;
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;

const specPath = fileURLToPath(new URL('../../openapi.yaml', import.meta.url));

export interface ContractResponse {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

const pointerEscape = (s: string): string => s.replace(/~/g, '~0').replace(/\//g, '~1');

export class ContractClient {
  readonly spec: Json;
  private readonly ajv: Ajv2020;
  private readonly templates: Array<{ template: string; regex: RegExp }>;
  /** Every (method template status) seen: the tests check coverage with it. */
  readonly seen = new Set<string>();

  constructor(readonly baseUrl: string, readonly defaultHeaders: Record<string, string> = {}) {
    this.spec = parse(readFileSync(specPath, 'utf8')) as Json;
    this.ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
    addFormats(this.ajv);
    this.ajv.addSchema(this.spec, 'openapi');
    const paths = Object.keys(this.spec.paths as Json);
    this.templates = paths.map((template) => ({
      template,
      regex: new RegExp('^' + template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+') + '$'),
    }));
  }

  withHeaders(headers: Record<string, string>): ContractClient {
    return new ContractClient(this.baseUrl, { ...this.defaultHeaders, ...headers });
  }

  async request(method: string, path: string, options: { body?: unknown; rawBody?: string; headers?: Record<string, string> } = {}): Promise<ContractResponse> {
    const headers: Record<string, string> = { ...this.defaultHeaders, ...options.headers };
    let body: string | undefined = options.rawBody;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(this.baseUrl + path, { method, headers, body });
    const text = await res.text();
    let json: unknown = undefined;
    const type = res.headers.get('content-type') ?? '';
    if (/json/.test(type) && text.length > 0) json = JSON.parse(text);
    this.check(method, path, res.status, type, json);
    return { status: res.status, headers: res.headers, text, json };
  }

  /** Throws when the response is not one the document describes. */
  check(method: string, path: string, status: number, contentType: string, json: unknown): void {
    const bare = path.split('?')[0]!;
    const match = this.templates.find((t) => t.regex.test(bare));
    if (!match) throw new Error(`${method} ${bare}: path not in openapi.yaml`);
    const op = ((this.spec.paths as Json)[match.template] as Json)[method.toLowerCase()] as Json | undefined;
    if (!op) throw new Error(`${method} ${match.template}: operation not in openapi.yaml`);
    const responses = op.responses as Json;
    const key = String(status) in responses ? String(status) : 'default' in responses ? 'default' : null;
    if (!key) throw new Error(`${method} ${match.template}: status ${status} not documented (documented: ${Object.keys(responses).join(', ')})`);
    this.seen.add(`${method.toUpperCase()} ${match.template} ${status}`);
    const content = (responses[key] as Json).content as Json | undefined;
    if (!content) {
      if (json !== undefined) throw new Error(`${method} ${match.template} ${status}: body present but none documented`);
      return;
    }
    const mediaType = contentType.split(';')[0]!.trim();
    if (!(mediaType in content)) throw new Error(`${method} ${match.template} ${status}: content type ${mediaType} not documented (${Object.keys(content).join(', ')})`);
    if (json === undefined) return;
    const pointer = ['paths', match.template, method.toLowerCase(), 'responses', key, 'content', mediaType, 'schema'].map(pointerEscape).join('/');
    const validate = this.ajv.getSchema(`openapi#/${pointer}`) ?? this.ajv.compile({ $ref: `openapi#/${pointer}` });
    if (!validate(json)) {
      throw new Error(`${method} ${match.template} ${status}: body does not match openapi.yaml: ${this.ajv.errorsText(validate.errors)}\n${JSON.stringify(json).slice(0, 500)}`);
    }
  }
}
