/** Query parameters of every paged list: `page_size` and the opaque `cursor` (400 naming the bad one). */
import type { Context } from 'koa';
import type { z } from 'zod';
import { validationProblem } from './problem.js';
import { decodeCursor, PageSize } from './schemas.js';

/** A query parameter given at most once: a repeated one is refused rather than one of its values picked. */
export function single(ctx: Context, name: string): string | undefined {
  const value = ctx.query[name];
  if (Array.isArray(value)) throw validationProblem([{ pointer: `/${name}`, code: 'repeated', message: `${name} must be given at most once` }]);
  return value;
}

export function pageQuery<T extends Record<string, string | number>>(ctx: Context, shape: z.ZodType<T>): { size: number; cursor: T | null } {
  const rawSize = single(ctx, 'page_size');
  // Plain decimal digits only: Number() would also take "1e2", "0x10" and " 1".
  const size = rawSize === undefined || /^[0-9]{1,6}$/.test(rawSize) ? PageSize.safeParse(rawSize) : null;
  if (!size?.success) throw validationProblem([{ pointer: '/page_size', code: 'out_of_range', message: 'page_size must be an integer in 1..500' }]);
  const raw = single(ctx, 'cursor');
  const cursor = decodeCursor(raw, shape);
  if (raw && !cursor) throw validationProblem([{ pointer: '/cursor', code: 'invalid_cursor', message: 'cursor is not one this API issued' }]);
  return { size: size.data, cursor };
}
