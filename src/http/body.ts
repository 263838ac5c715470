/**
 * Request bodies before any route sees them: which Content-Encodings are read, how deep a JSON document may
 * nest, and how a body that cannot be read becomes a 4xx problem (never a 500). The parsing itself is
 * @koa/bodyparser's (co-body); these checks sit around it in app.ts. docs/errors.md lists the codes.
 */
import { bodyParser } from '@koa/bodyparser';
import type { Context, Next } from 'koa';
import type { FieldError } from '../model/normalize.js';
import { toPointer } from '../model/normalize.js';
import { Problem, validationProblem } from './problem.js';

/** Content-Encodings a request body may use (what the body parser decodes). */
export const BODY_ENCODINGS = ['identity', 'gzip', 'deflate', 'br'] as const;

/** Deepest nesting of objects and arrays a JSON body may have (the top-level object or array is 1). */
export const MAX_BODY_DEPTH = 64;

/** Field names refused anywhere in a body: assigning them elsewhere would rewrite an object's prototype. */
const FORBIDDEN_KEYS = new Set(['__proto__']);

/**
 * Whether a request has a body: chunked, or a non-zero Content-Length. (Header names on the path of every
 * request are written in lower case, as Node stores them: ctx.get() then has nothing to lower.)
 */
export const hasBody = (ctx: Context): boolean => ctx.get('transfer-encoding') !== '' || (ctx.request.length ?? 0) > 0;

/**
 * Before the body parser: 415 unsupported_content_encoding for a coding it cannot read (with Accept-Encoding,
 * RFC 9110 section 15.5.16), and 413 for a declared length over the limit (compressed bodies included, whose
 * decoded size the parser bounds as it reads).
 */
function preflight(ctx: Context, maxBodyBytes: number): void {
  const raw = ctx.get('content-encoding');
  if (raw !== '' && hasBody(ctx)) {
    const coding = raw.trim().toLowerCase();
    if (!(BODY_ENCODINGS as readonly string[]).includes(coding)) {
      throw new Problem(415, 'unsupported_content_encoding', 'Unsupported content encoding', `Content-Encoding "${raw}" is not supported; send ${BODY_ENCODINGS.join(', ')}`, {
        headers: { 'Accept-Encoding': BODY_ENCODINGS.filter((c) => c !== 'identity').join(', ') },
      });
    }
    // The decoder matches codings case-sensitively; the header's case is not meaningful (RFC 9110 8.4.1).
    ctx.req.headers['content-encoding'] = coding;
  }
  if (Number(ctx.get('content-length') || 0) > maxBodyBytes) throw new Problem(413, 'payload_too_large', 'Payload too large', `the request body exceeds ${maxBodyBytes} bytes`);
}

interface ParseError {
  status?: number;
  type?: string;
  message?: string;
  code?: string;
  /** co-body attaches the decoded text to a JSON parse failure. */
  body?: unknown;
}

/**
 * The body parser's failure as a problem (its `onError`; only errors of reading and parsing reach it):
 * a body its Content-Encoding does not decode is 400 malformed_encoding; a `__proto__` field is 400
 * validation_failed at its pointer; other client errors keep their status (problem.ts maps them).
 */
function bodyParseProblem(err: unknown, ctx: Context): unknown {
  const e = (err ?? {}) as ParseError;
  const coding = ctx.get('content-encoding');
  // zlib's errors (Z_DATA_ERROR, Z_BUF_ERROR, the brotli decoder's ERR_*) carry no HTTP status.
  if (e.status === undefined && coding !== '' && coding !== 'identity') {
    return new Problem(400, 'malformed_encoding', 'Malformed body encoding', `the body is not valid ${coding} data (Content-Encoding: ${coding})`, {
      errors: [{ pointer: '', code: 'malformed_encoding', message: `not valid ${coding}: ${e.message ?? 'decoding failed'}` }],
    });
  }
  if (e.status === 400 && typeof e.body === 'string' && /prototype/i.test(e.message ?? '')) {
    // The parser refuses the document outright; the plain JSON.parse below only locates the field.
    let parsed: unknown;
    try {
      parsed = JSON.parse(e.body);
    } catch {
      return err;
    }
    const found = inspectBody(parsed);
    if (found?.kind === 'forbidden') return forbiddenFieldProblem(found.error);
    if (found?.kind === 'deep') return tooDeepProblem(found.error);
  }
  return err;
}

const forbiddenFieldProblem = (error: FieldError): Problem => validationProblem([error], 'the body has a field name that is not accepted');

const tooDeepProblem = (error: FieldError): Problem =>
  new Problem(400, 'too_deep', 'Body nested too deeply', `objects and arrays may nest at most ${MAX_BODY_DEPTH} levels`, { errors: [error] });

/**
 * The first value nested deeper than MAX_BODY_DEPTH, or the first forbidden field name, in document order
 * (iterative: no recursion over what a client sent).
 */
export function inspectBody(root: unknown): { kind: 'deep' | 'forbidden'; error: FieldError } | null {
  interface Node {
    value: unknown;
    depth: number;
    key: string | number | null;
    parent: Node | null;
  }
  const pathOf = (node: Node): Array<string | number> => {
    const path: Array<string | number> = [];
    for (let n: Node | null = node; n && n.key !== null; n = n.parent) path.push(n.key);
    return path.reverse();
  };
  const stack: Node[] = [];
  if (root !== null && typeof root === 'object') stack.push({ value: root, depth: 1, key: null, parent: null });
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (node.depth > MAX_BODY_DEPTH) {
      return { kind: 'deep', error: { pointer: toPointer(pathOf(node)), code: 'too_deep', message: `nested deeper than ${MAX_BODY_DEPTH} levels` } };
    }
    // Only objects and arrays become nodes; children are pushed in reverse so they pop in document order.
    const nested: Node[] = [];
    const depth = node.depth + 1;
    if (Array.isArray(node.value)) {
      const items = node.value as unknown[];
      for (let i = 0; i < items.length; i++) {
        const child = items[i];
        if (child !== null && typeof child === 'object') nested.push({ value: child, depth, key: i, parent: node });
      }
    } else {
      const fields = node.value as Record<string, unknown>;
      for (const key in fields) {
        if (!Object.hasOwn(fields, key)) continue;
        if (FORBIDDEN_KEYS.has(key)) {
          const at: Node = { value: fields[key], depth, key, parent: node };
          return { kind: 'forbidden', error: { pointer: toPointer(pathOf(at)), code: 'forbidden_field', message: `"${key}" is not accepted as a field name` } };
        }
        const child = fields[key];
        if (child !== null && typeof child === 'object') nested.push({ value: child, depth, key, parent: node });
      }
    }
    for (let i = nested.length - 1; i >= 0; i--) stack.push(nested[i]!);
  }
  return null;
}

/**
 * Whether `value` nests at most MAX_BODY_DEPTH levels from `depth` and names no forbidden field: the quick
 * answer for the usual body, with no allocation (the recursion stops at the depth limit); inspectBody says
 * where it failed.
 */
function acceptableShape(value: object, depth: number): boolean {
  if (depth > MAX_BODY_DEPTH) return false;
  if (Array.isArray(value)) {
    for (const item of value as unknown[]) if (item !== null && typeof item === 'object' && !acceptableShape(item, depth + 1)) return false;
    return true;
  }
  const fields = value as Record<string, unknown>;
  for (const key in fields) {
    if (!Object.hasOwn(fields, key)) continue;
    if (FORBIDDEN_KEYS.has(key)) return false;
    const child = fields[key];
    if (child !== null && typeof child === 'object' && !acceptableShape(child, depth + 1)) return false;
  }
  return true;
}

/** After the body parser: a JSON body nested too deeply (400 too_deep) or with a forbidden field name (400 validation_failed). */
function checkShape(ctx: Context): void {
  const body: unknown = ctx.request.body;
  if (body !== null && typeof body === 'object' && (ctx.get('content-type') === 'application/json' || ctx.is('json')) && !acceptableShape(body, 1)) {
    const found = inspectBody(body);
    if (found?.kind === 'deep') throw tooDeepProblem(found.error);
    if (found?.kind === 'forbidden') throw forbiddenFieldProblem(found.error);
  }
}

/**
 * The body of every request, as one middleware: the preflight refusals, then @koa/bodyparser (JSON and
 * forms up to `maxBodyBytes`, its failures mapped by bodyParseProblem), then the shape checks.
 */
export function bodyReader(maxBodyBytes: number) {
  const parse = bodyParser({
    enableTypes: ['json', 'form'],
    jsonLimit: maxBodyBytes,
    formLimit: maxBodyBytes,
    // Only objects and arrays are JSON documents a route accepts; a bare scalar is malformed here.
    jsonStrict: true,
    onError: (err, ctx) => {
      throw bodyParseProblem(err, ctx);
    },
  });
  return (ctx: Context, next: Next): Promise<void> => {
    preflight(ctx, maxBodyBytes);
    return parse(ctx, () => {
      checkShape(ctx);
      return next();
    });
  };
}
