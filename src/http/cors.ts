/**
 * Requests from pages on other origins (RESONANCE_CORS_ORIGINS; README "Browsers on other origins"). Every
 * credential of this API travels in a header the page sets itself (X-Api-Key, Authorization, ?token= on
 * SSE), never in a cookie, so a cross-origin request carries no ambient authority: allowing an origin lets
 * its pages call with credentials they hold, nothing more, and `*` is a safe setting. Credentials mode
 * stays off. Preflights are answered here, before authentication: a browser sends them without credentials.
 */
import cors from '@koa/cors';
import type { Middleware } from 'koa';

/** Request headers a page may send. */
export const CORS_ALLOW_HEADERS = ['Authorization', 'X-Api-Key', 'Content-Type', 'Content-Encoding', 'Idempotency-Key', 'Last-Event-ID'];

/** Response headers a page may read, beyond the CORS-safelisted ones. */
export const CORS_EXPOSE_HEADERS = [
  'X-Request-Id', 'X-Resonance-Node', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset', 'Retry-After', 'Location',
  'Idempotent-Replayed', 'WWW-Authenticate',
];

/** How long a browser may reuse a preflight's answer (seconds). */
const PREFLIGHT_MAX_AGE = 600;

/**
 * `RESONANCE_CORS_ORIGINS` read: a comma-separated list of origins (`https://app.example.com`), or `*`.
 * Each must be an origin exactly as browsers send it (scheme, host, port if not the default; no path).
 */
export function parseCorsOrigins(value: string | undefined, name = 'RESONANCE_CORS_ORIGINS'): string[] {
  const origins = (value ?? '').split(',').map((o) => o.trim()).filter((o) => o !== '');
  for (const origin of origins) {
    if (origin === '*') continue;
    const parsed = URL.canParse(origin) ? new URL(origin) : null;
    if (!parsed || !['http:', 'https:'].includes(parsed.protocol) || parsed.origin !== origin) {
      throw new Error(`${name}: "${origin}" is not an origin; write it as browsers send it, e.g. https://app.example.com or http://localhost:5173`);
    }
  }
  return origins;
}

/** The CORS middleware for `origins`, or null when none is allowed (same-origin pages only, the default). */
export function corsMiddleware(origins: readonly string[]): Middleware | null {
  if (origins.length === 0) return null;
  const any = origins.includes('*');
  const allowed = new Set(origins);
  return cors({
    // An origin not listed gets no CORS headers: its browser refuses to show the page the answer.
    origin: (ctx) => {
      const origin = ctx.get('origin');
      return any ? '*' : allowed.has(origin) ? origin : '';
    },
    allowMethods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowHeaders: CORS_ALLOW_HEADERS,
    exposeHeaders: CORS_EXPOSE_HEADERS,
    maxAge: PREFLIGHT_MAX_AGE,
    // Problems (4xx, 5xx) keep the headers too: a page must be able to read why it was refused.
    keepHeadersOnError: true,
  });
}
