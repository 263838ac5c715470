/**
 * The API reference, served by this server with nothing from elsewhere (README "API reference"):
 *   GET /docs              openapi.yaml rendered by Swagger UI (swagger-ui-dist, served from node_modules)
 *   GET /docs/realtime     the WebSocket protocol (asyncapi.yaml) as a page
 *   GET /docs/errors       docs/errors.md, every problem code with an anchor
 *   GET /problems/{code}   a problem's `type` URI: a redirect to its entry in /docs/errors (404 if unknown)
 *   GET /asyncapi.yaml     the realtime contract
 * No credentials. A CSP that allows this origin only; Swagger UI needs inline styles, nothing else.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Router from '@koa/router';
import type { Context } from 'koa';
import { marked } from 'marked';
import { Problem, PROBLEM_TYPE_BASE } from '../problem.js';

export const REFERENCE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  // Swagger UI sets style attributes as it renders.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** The files of swagger-ui-dist a page loads; nothing else of the package is served. */
const SWAGGER_ASSETS: Record<string, string> = {
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui.css': 'text/css; charset=utf-8',
};

/** Starts Swagger UI on the page (a file, not an inline script: the CSP allows none). */
const INIT_JS = `window.addEventListener('load', () => {
  window.ui = SwaggerUIBundle({ url: '/openapi.yaml', dom_id: '#reference', deepLinking: true, displayOperationId: true, defaultModelsExpandDepth: 0 });
});
`;

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** The page frame shared by the three pages: a title, the navigation between them, and the body. */
export function referencePage(title: string, body: string, head = '', mainClass = ''): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/docs/assets/reference.css">${head}</head>
<body><nav class="reference-nav"><strong>Resonance API</strong> <a href="/docs">HTTP (OpenAPI)</a> <a href="/docs/realtime">Realtime (AsyncAPI)</a>
<a href="/docs/errors">Errors</a> <a href="/openapi.yaml">openapi.yaml</a> <a href="/asyncapi.yaml">asyncapi.yaml</a> <a href="/demo">Demo pages</a></nav>
<main${mainClass ? ` class="${mainClass}"` : ''}>${body}</main></body></html>`;
}

const REFERENCE_CSS = `body{margin:0;font:15px/1.5 system-ui,sans-serif;color:#1d2330}
.reference-nav{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;padding:.6rem 1rem;background:#1d2330;color:#fff}
.reference-nav a{color:#cfe3ff}
main{max-width:72rem;margin:0 auto;padding:0 1rem 3rem}
main.prose table{border-collapse:collapse;width:100%}main.prose td,main.prose th{border:1px solid #d6dbe4;padding:.3rem .5rem;vertical-align:top}
code{background:#f1f3f7;padding:0 .2em;border-radius:3px}pre{background:#f1f3f7;padding:.75rem;overflow:auto}
tr:has(span:target){background:#fff4c2}
`;

/** The repository file `rel` (docs/errors.md, asyncapi.yaml): found beside the sources or the compiled server. */
export function projectFile(rel: string): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, rel);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

/**
 * docs/errors.md as HTML, and the codes it lists: each code in a table's code column gets an anchor with
 * its name, the target of /problems/{code}.
 */
export function errorsReference(markdown: string): { html: string; codes: Set<string> } {
  const codes = new Set<string>();
  const html = (marked.parse(markdown, { async: false }) as string)
    // Links to the repository's other docs (docs/engine.md, ...) name them; this server does not serve them.
    .replace(/<a href="(?!https?:)[^"]*\.md(?:#[^"]*)?">([\s\S]*?)<\/a>/g, '$1')
    .replace(
    /<tr>\s*<td([^>]*)>(\d{3})<\/td>\s*<td([^>]*)>([\s\S]*?)<\/td>/g,
    (_row, a: string, status: string, b: string, cell: string) => {
      const anchors = [...cell.matchAll(/<code>([a-z0-9_]+)<\/code>/g)]
        .map((m) => m[1]!)
        .filter((code) => !codes.has(code))
        .map((code) => {
          codes.add(code);
          return `<span id="${code}"></span>`;
        })
        .join('');
      return `<tr><td${a}>${status}</td><td${b}>${anchors}${cell}</td>`;
    },
  );
  return { html, codes };
}

export interface ReferenceDeps {
  /** The realtime protocol's contract (src/realtime/asyncapi.ts): the document, and as YAML. */
  realtimeContract: { document: () => AsyncApiDocument; yaml: () => string };
}

/** The parts of an AsyncAPI 3 document the realtime page shows. */
export interface AsyncApiDocument {
  info: { title: string; version: string; description?: string };
  servers?: Record<string, { host: string; protocol: string; pathname?: string; description?: string }>;
  channels?: Record<string, { address?: string | null; description?: string; parameters?: Record<string, { description?: string }> }>;
  operations?: Record<string, { action: 'send' | 'receive'; summary?: string; description?: string; messages?: Array<{ $ref: string }> }>;
  components?: { messages?: Record<string, AsyncApiMessage> };
  [extension: `x-${string}`]: unknown;
}

interface AsyncApiMessage {
  name?: string;
  title?: string;
  summary?: string;
  description?: string;
  payload?: unknown;
  examples?: Array<{ name?: string; summary?: string; payload?: unknown }>;
}

const inline = (text: string | undefined): string => (text ? (marked.parseInline(text, { async: false }) as string) : '');

/**
 * The realtime contract as a page: servers, the channel, then each operation's messages with their
 * payload schema and examples, and the document's extensions (the close codes). The AsyncAPI project's own
 * renderer (a React bundle) would add some 200 packages to the install for this one page.
 */
export function asyncApiHtml(doc: AsyncApiDocument): string {
  const out: string[] = [`<h1>${esc(doc.info.title)} <small>${esc(doc.info.version)}</small></h1>`, marked.parse(doc.info.description ?? '', { async: false }) as string];
  out.push('<h2>Servers</h2><ul>');
  for (const [name, server] of Object.entries(doc.servers ?? {})) {
    out.push(`<li><strong>${esc(name)}</strong>: <code>${esc(`${server.protocol}://${server.host}${server.pathname ?? ''}`)}</code> ${inline(server.description)}</li>`);
  }
  out.push('</ul><h2>Channels</h2>');
  for (const [name, channel] of Object.entries(doc.channels ?? {})) {
    out.push(`<h3 id="channel-${esc(name)}"><code>${esc(channel.address ?? name)}</code></h3>${marked.parse(channel.description ?? '', { async: false }) as string}`);
    const params = Object.entries(channel.parameters ?? {});
    if (params.length > 0) out.push(`<ul>${params.map(([p, v]) => `<li><code>${esc(p)}</code>: ${inline(v.description)}</li>`).join('')}</ul>`);
  }
  const messages = doc.components?.messages ?? {};
  for (const action of ['send', 'receive'] as const) {
    out.push(`<h2>${action === 'send' ? 'Client to server (send)' : 'Server to client (receive)'}</h2>`);
    for (const [name, op] of Object.entries(doc.operations ?? {})) {
      if (op.action !== action) continue;
      out.push(`<p>${inline(op.summary ?? name)} ${inline(op.description)}</p>`);
      for (const ref of op.messages ?? []) {
        const key = decodeURIComponent(ref.$ref.split('/').pop() ?? '');
        const m = messages[key];
        if (!m) continue;
        out.push(`<h3 id="message-${esc(key)}">${esc(m.title ?? m.name ?? key)}</h3><p>${inline(m.summary)}</p>${marked.parse(m.description ?? '', { async: false }) as string}`);
        out.push(`<details><summary>Payload schema</summary><pre><code>${esc(JSON.stringify(m.payload, null, 2))}</code></pre></details>`);
        for (const ex of m.examples ?? []) out.push(`<p>Example${ex.summary ? `: ${inline(ex.summary)}` : ''}</p><pre><code>${esc(JSON.stringify(ex.payload, null, 2))}</code></pre>`);
      }
    }
  }
  for (const [key, value] of Object.entries(doc)) {
    if (!key.startsWith('x-')) continue;
    out.push(`<h2>${esc(key.slice(2).replace(/-/g, ' '))}</h2>`);
    if (Array.isArray(value) && value.every((row) => row !== null && typeof row === 'object')) {
      const cols = [...new Set(value.flatMap((row) => Object.keys(row as object)))];
      out.push(`<table><tr>${cols.map((c) => `<th>${esc(c)}</th>`).join('')}</tr>`);
      for (const row of value as Array<Record<string, unknown>>) out.push(`<tr>${cols.map((c) => `<td>${esc(String(row[c] ?? ''))}</td>`).join('')}</tr>`);
      out.push('</table>');
    } else {
      out.push(`<pre><code>${esc(JSON.stringify(value, null, 2))}</code></pre>`);
    }
  }
  return out.join('\n');
}

export function referenceRoutes(deps: ReferenceDeps): Router {
  const router = new Router();
  const swaggerDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
  const errorsFile = projectFile(join('docs', 'errors.md'));
  let errors: { html: string; codes: Set<string> } | null = null;
  const errorsRef = (): { html: string; codes: Set<string> } => (errors ??= errorsReference(errorsFile ? readFileSync(errorsFile, 'utf8') : '# Errors\n\ndocs/errors.md is missing from this installation.\n'));
  const cache = new Map<string, string>();
  const once = (key: string, make: () => string): string => {
    let v = cache.get(key);
    if (v === undefined) cache.set(key, (v = make()));
    return v;
  };

  const page = (ctx: Context, html: string): void => {
    ctx.set('Content-Security-Policy', REFERENCE_CSP);
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = html;
  };

  router.get('/docs', (ctx) => {
    page(ctx, once('docs', () => referencePage('Resonance API reference', '<div id="reference"></div>',
      '<link rel="stylesheet" href="/docs/assets/swagger-ui.css"><script src="/docs/assets/swagger-ui-bundle.js" defer></script><script src="/docs/assets/init.js" defer></script>')));
  });
  router.get('/docs/realtime', (ctx) => page(ctx, once('realtime', () => referencePage('Resonance realtime protocol', asyncApiHtml(deps.realtimeContract.document()), '', 'prose'))));
  router.get('/docs/errors', (ctx) => page(ctx, once('errors', () => referencePage('Resonance API errors', errorsRef().html, '', 'prose'))));
  router.get('/docs/assets/:file', (ctx) => {
    const file = ctx.params.file ?? '';
    ctx.set('X-Content-Type-Options', 'nosniff');
    if (file === 'init.js' || file === 'reference.css') {
      ctx.type = file === 'init.js' ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8';
      ctx.body = file === 'init.js' ? INIT_JS : REFERENCE_CSS;
      return;
    }
    const type = SWAGGER_ASSETS[file];
    if (!type) {
      ctx.status = 404;
      ctx.type = 'text/plain';
      ctx.body = 'not found';
      return;
    }
    ctx.type = type;
    ctx.set('Cache-Control', 'public, max-age=86400');
    ctx.body = once(`asset:${file}`, () => readFileSync(join(swaggerDir, file), 'utf8'));
  });
  router.get('/asyncapi.yaml', (ctx) => {
    ctx.type = 'application/yaml';
    ctx.body = once('asyncapi', deps.realtimeContract.yaml);
  });
  // A problem's `type` (PROBLEM_TYPE_BASE + code) is a link to its entry.
  router.get(`${PROBLEM_TYPE_BASE}:code`, (ctx) => {
    const code = ctx.params.code ?? '';
    if (!errorsRef().codes.has(code)) throw new Problem(404, 'not_found', 'Not found', `no problem code "${code}"; the codes are listed at /docs/errors`);
    ctx.redirect(`/docs/errors#${code}`);
  });
  return router;
}
