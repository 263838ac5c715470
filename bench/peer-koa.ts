/**
 * The bare peer of `POST /v1/hqe/validate` (bench/http.ts): Koa, @koa/router and @koa/bodyparser as the server
 * uses them, parsing the same JSON body and validating it against a small zod schema of the benchmark body's
 * shape, answering 200 with JSON. No auth, rate limit, logging, metrics or normalisation: what is left is the
 * price of the framework and the socket, the floor the real route is measured against.
 *
 *   node dist/bench/peer-koa.js --port 8398
 */
import { parseArgs } from 'node:util';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import Koa from 'koa';
import { z } from 'zod';

const Body = z.strictObject({
  primes: z.array(z.number().int().min(2).max(2 ** 31 - 1)).min(1),
  schedule: z.strictObject({ steps: z.number().int().min(0).default(256), dt: z.number().gt(0).max(10).default(0.1) }).optional(),
  resonanceTarget: z.strictObject({ value: z.number().min(0).max(1) }).optional(),
  phaseSeeding: z.strictObject({ golden: z.boolean().default(false), silver: z.boolean().default(false) }).optional(),
  seed: z.number().int().min(0).max(0xffffffff).optional(),
});

const { values } = parseArgs({ options: { port: { type: 'string', default: '8398' }, host: { type: 'string', default: '127.0.0.1' } } });
const app = new Koa();
const router = new Router();
router.get('/healthz', (ctx) => {
  ctx.body = { ok: true };
});
router.post('/v1/hqe/validate', (ctx) => {
  const parsed = Body.safeParse(ctx.request.body);
  if (!parsed.success) {
    ctx.status = 400;
    ctx.body = { ok: false, errors: parsed.error.issues.map((i) => ({ path: i.path.join('/'), message: i.message })) };
    return;
  }
  ctx.body = { ok: true, warnings: [], normalized: parsed.data };
});
app.use(bodyParser({ enableTypes: ['json'], jsonStrict: true }));
app.use(router.routes()).use(router.allowedMethods());
app.listen(Number(values.port), values.host, () => process.stdout.write(`listening on http://${values.host}:${values.port}\n`));
process.on('SIGTERM', () => process.exit(0));
