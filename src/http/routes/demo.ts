/**
 * The demo pages (web/, bundled into dist/web by scripts/build-web.mjs): GET /demo (an index), /demo/playground,
 * /demo/space and their assets. No credentials: the pages ask for an API key themselves. A strict CSP: only
 * this origin's scripts, styles and connections (its WebSockets included, none to other hosts), nothing
 * inline, no frames.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Router from '@koa/router';
import type { Context } from 'koa';

export const DEMO_CSP = [
  "default-src 'self'",
  // 'wasm-unsafe-eval': compiling the CPU engine's WebAssembly dense pass (no JavaScript eval).
  "script-src 'self' 'wasm-unsafe-eval'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  // CSP3: 'self' also matches ws: and wss: on this host and port, which is all the space viewer connects to.
  "connect-src 'self'",
  "worker-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

/** File names an asset request may name: no directories, no dot files. */
const ASSET = /^[A-Za-z0-9][A-Za-z0-9_-]*\.(js|css|js\.map)$/;

/** dist/web beside the compiled server (dist/src/http/routes -> dist/web), or under the package root from the sources. */
export function webDirectory(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    for (const candidate of [join(dir, 'web'), join(dir, 'dist', 'web')]) {
      if (existsSync(join(candidate, 'playground.js'))) return candidate;
    }
    const parent = dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

export function demoRoutes(opts: { webDir?: string } = {}): Router {
  const router = new Router();
  const dir = opts.webDir ?? webDirectory();

  const send = async (ctx: Context, file: string): Promise<void> => {
    const ext = file.endsWith('.js.map') ? '.map' : file.slice(file.lastIndexOf('.'));
    const type = TYPES[ext];
    if (!dir || !type) {
      ctx.status = 404;
      ctx.type = 'text/plain';
      ctx.body = dir ? 'not found' : 'the demo pages are not built: run `npm run build`';
      return;
    }
    let body: Buffer;
    try {
      body = await readFile(join(dir, file));
    } catch {
      ctx.status = 404;
      ctx.type = 'text/plain';
      ctx.body = 'not found';
      return;
    }
    ctx.set('Content-Security-Policy', DEMO_CSP);
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    // Cross-origin isolation: the CPU engine's WebAssembly dense pass works in a shared memory.
    ctx.set('Cross-Origin-Opener-Policy', 'same-origin');
    ctx.set('Cross-Origin-Embedder-Policy', 'require-corp');
    ctx.set('Cache-Control', 'no-cache');
    ctx.type = type;
    ctx.body = body;
  };

  router.get('/demo', (ctx) => send(ctx, 'index.html'));
  router.get('/demo/playground', (ctx) => send(ctx, 'playground.html'));
  router.get('/demo/space', (ctx) => send(ctx, 'space.html'));
  router.get('/demo/:file', async (ctx) => {
    const file = String(ctx.params.file);
    if (!ASSET.test(file)) {
      ctx.status = 404;
      ctx.type = 'text/plain';
      ctx.body = 'not found';
      return;
    }
    await send(ctx, file);
  });
  return router;
}
