/** Query parameters of every paged list: `page_size` and the opaque `cursor` (400 naming the bad one). */
import type { Context } from 'koa';
import type { z } from 'zod';
import { validationProblem } from './problem.js';
import { decodeCursor, PageSize } from './schemas.js';

export function pageQuery<T extends Record<string, string | number>>(ctx: Context, shape: z.ZodType<T>): { size: number; cursor: T | null } {
  const size = PageSize.safeParse(ctx.query.page_size ?? undefined);
  if (!size.success) throw validationProblem([{ pointer: '/page_size', code: 'out_of_range', message: 'page_size must be an integer in 1..500' }]);
  const raw = typeof ctx.query.cursor === 'string' ? ctx.query.cursor : undefined;
  const cursor = decodeCursor(raw, shape);
  if (raw && !cursor) throw validationProblem([{ pointer: '/cursor', code: 'invalid_cursor', message: 'cursor is not one this API issued' }]);
  return { size: size.data, cursor };
}
