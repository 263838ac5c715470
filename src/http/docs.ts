/** A self-contained HTML page describing the API from its OpenAPI document (no external requests). */
import type { createDocument } from 'zod-openapi';

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function docsHtml(doc: ReturnType<typeof createDocument>): string {
  const rows: string[] = [];
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const method of ['get', 'post', 'patch', 'put', 'delete'] as const) {
      const op = (item as Record<string, { summary?: string; tags?: string[]; responses?: Record<string, { description?: string }> } | undefined>)[method];
      if (!op) continue;
      const responses = Object.entries(op.responses ?? {}).map(([code, r]) => `<li><code>${code}</code> ${esc(r.description ?? '')}</li>`).join('');
      rows.push(`<section><h3><code>${method.toUpperCase()} ${esc(path)}</code></h3><p>${esc(op.summary ?? '')}</p><ul>${responses}</ul></section>`);
    }
  }
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(doc.info.title)}</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}code{background:#f3f3f3;padding:0 .2em}section{border-top:1px solid #ddd}</style>
</head><body><main><h1>${esc(doc.info.title)} <small>${esc(doc.info.version)}</small></h1>
<p>${esc(doc.info.description ?? '')}</p><p>Machine-readable contract: <a href="/openapi.yaml">/openapi.yaml</a>. Authenticate with <code>X-Api-Key</code> or an OAuth2 bearer token from <code>POST /oauth/token</code>.</p>
${rows.join('\n')}</main></body></html>`;
}
