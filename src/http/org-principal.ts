/** The caller of an org-wide read (usage, cluster): any org credential with a read scope. */
import type { Context } from 'koa';
import { Problem } from './problem.js';
import type { AppState, Principal } from './types.js';

export function orgPrincipal(ctx: Context, what: string): Principal {
  const p = (ctx.state as AppState).principal;
  if (!p) throw new Problem(401, 'unauthorized', 'Unauthorized', 'credentials required');
  if (!p.scopes.has('hqe.read') && !p.scopes.has('spaces.read')) {
    throw new Problem(403, 'insufficient_scope', 'Insufficient scope', `${what} needs the hqe.read or spaces.read scope`, { meta: { required: 'hqe.read' } });
  }
  return p;
}
