/**
 * Who is calling: `X-Api-Key: rsk_...`, `Authorization: Bearer <access token from /oauth/token>`, or
 * `Authorization: Bearer <session token from POST /v1/spaces/{id}/sessions>` (also `?token=` on the
 * telemetry SSE route, since EventSource cannot set headers). A session token is confined to its space.
 * Every failure is a 401 with WWW-Authenticate (RFC 9110 section 11.6.1) and one of two codes:
 *   unauthorized         no supported credential was sent
 *   invalid_credentials  a credential was sent and is unknown, revoked, forged or expired; the answer is
 *                        the same for all of these so it tells a prober nothing
 * A missing scope is a 403 insufficient_scope (RFC 6750 section 3.1).
 *
 * Access and session tokens are JWTs, valid by signature alone; revocation is stored (and written by the CLI,
 * another process), so every request also checks the token's credential by id: the OAuth client of an access
 * token, the API key or OAuth client that minted a session token. The server asks through a CredentialCache
 * (credential-cache.ts): one point query per credential per RESONANCE_AUTH_CACHE_MS at most, not per request.
 */
import type { Context, Next } from 'koa';
import type { ApiKeyRecord, AuthStore, CredentialRef } from '../store/auth.js';
import type { ServerConfig } from './config.js';
import type { CredentialLookups } from './credential-cache.js';
import { Problem } from './problem.js';
import { type SessionClaims, verifySessionToken, verifyToken } from './tokens.js';
import { ALL_SCOPES, type AppState, type Principal, type Scope } from './types.js';

export interface AuthDeps {
  /** The store, or a CredentialCache in front of it (the server's). */
  authStore: CredentialLookups;
  config: Pick<ServerConfig, 'jwtSecret'>;
}

const REALM = 'realm="resonance"';
/** Offered when nothing usable was sent: both ways in. ("ApiKey" is not a registered scheme, but is the usual name.) */
const CHALLENGE_ANY = `ApiKey ${REALM}, Bearer ${REALM}`;
/** Keys are ~47 characters; anything far longer is not one of ours and is refused without a lookup. */
const MAX_CREDENTIAL_LENGTH = 512;

const unauthorized = (): Problem =>
  new Problem(401, 'unauthorized', 'Unauthorized', 'send an API key in X-Api-Key or an access token in Authorization: Bearer', {
    headers: { 'WWW-Authenticate': CHALLENGE_ANY },
  });

const invalidCredentials = (challenge: string): Problem =>
  new Problem(401, 'invalid_credentials', 'Invalid credentials', 'the credentials are invalid or expired', {
    headers: { 'WWW-Authenticate': challenge },
  });

/** One principal per key record: the credential cache hands out the same record until it refreshes it. */
const keyPrincipals = new WeakMap<ApiKeyRecord, Principal>();

function keyPrincipal(key: ApiKeyRecord): Principal {
  const known = keyPrincipals.get(key);
  if (known) return known;
  const principal: Principal = { orgId: key.orgId, scopes: new Set(key.scopes), via: 'api_key', subject: key.id, credential: { kind: 'api_key', id: key.id } };
  keyPrincipals.set(key, Object.freeze(principal));
  return principal;
}

async function fromApiKey(store: CredentialLookups, key: string): Promise<Principal> {
  const record = key.length <= MAX_CREDENTIAL_LENGTH ? await store.verifyApiKey(key) : null;
  if (!record) throw invalidCredentials(`ApiKey ${REALM}`);
  return keyPrincipal(record);
}

// RFC 6750 section 3: the error attribute tells a client to fetch a new token; it does not say why.
const invalidToken = (): Problem => invalidCredentials(`Bearer ${REALM}, error="invalid_token", error_description="the access token is invalid or expired"`);

/** A session token speaks for one member of one space: spaces.read, plus spaces.write unless it is a reader's. */
const sessionPrincipal = (c: SessionClaims): Principal => ({
  orgId: c.org,
  scopes: new Set<Scope>(c.role === 'reader' ? ['spaces.read'] : ['spaces.read', 'spaces.write']),
  via: 'session',
  // The minter's budget: a key cannot multiply its rate limit by minting session tokens.
  subject: c.minter,
  credential: { kind: c.minterKind, id: c.minter },
  session: { spaceId: c.space, role: c.role, memberId: c.sub },
});

/** A token whose credential was revoked (or deleted) is refused like a forged one. */
async function active(store: CredentialLookups, principal: Principal): Promise<Principal> {
  if (principal.credential && !(await store.isActive(principal.credential))) throw invalidToken();
  return principal;
}

async function fromBearer(store: CredentialLookups, secret: Uint8Array, token: string): Promise<Principal> {
  const usable = token && token.length <= 8 * MAX_CREDENTIAL_LENGTH;
  const claims = usable ? await verifyToken(secret, token) : null;
  if (claims) {
    return active(store, { orgId: claims.org, scopes: new Set(claims.scopes), via: 'oauth', subject: claims.sub, credential: { kind: 'oauth_client', id: claims.sub } });
  }
  // Not an access token: perhaps a session token (its own audience, so neither passes for the other).
  const session = usable ? await verifySessionToken(secret, token) : null;
  if (session) return active(store, sessionPrincipal(session));
  throw invalidToken();
}

/** `?token=` is read only where EventSource needs it, and only as a session token. */
const QUERY_TOKEN_PATH = /^\/v1\/spaces\/[^/]+\/telemetry$/;

async function fromQueryToken(store: CredentialLookups, secret: Uint8Array, token: string): Promise<Principal> {
  const session = token && token.length <= 8 * MAX_CREDENTIAL_LENGTH ? await verifySessionToken(secret, token) : null;
  if (!session) throw invalidToken();
  return active(store, sessionPrincipal(session));
}

/** A session principal may only use its own space's routes: anything else is 403 insufficient_scope. */
function confineSession(principal: Principal, path: string): void {
  if (!principal.session) return;
  const own = `/v1/spaces/${encodeURIComponent(principal.session.spaceId)}`;
  if (path === own || path.startsWith(`${own}/`)) return;
  throw new Problem(403, 'insufficient_scope', 'Insufficient scope', `a session token may only be used on ${own}`, {
    meta: { spaceId: principal.session.spaceId },
    headers: { 'WWW-Authenticate': `Bearer ${REALM}, error="insufficient_scope"` },
  });
}

/** Requires a credential and sets ctx.state.principal; put it in front of every /v1 router. */
export function authenticate(deps: AuthDeps) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const apiKey = ctx.get('x-api-key').trim();
    const authorization = ctx.get('authorization').trim();
    const bearer = authorization === '' ? null : /^Bearer(?:\s+(.*))?$/i.exec(authorization);
    const queryToken = ctx.method === 'GET' && QUERY_TOKEN_PATH.test(ctx.path) && typeof ctx.query.token === 'string' ? ctx.query.token : undefined;
    // Two credentials could name two orgs; guessing which one wins is how privilege bugs start.
    if (Number(apiKey !== '') + Number(bearer !== null) + Number(queryToken !== undefined && queryToken !== '') > 1) throw invalidCredentials(CHALLENGE_ANY);
    let principal: Principal;
    if (apiKey) principal = await fromApiKey(deps.authStore, apiKey);
    else if (bearer) principal = await fromBearer(deps.authStore, deps.config.jwtSecret, (bearer[1] ?? '').trim());
    else if (queryToken !== undefined) principal = await fromQueryToken(deps.authStore, deps.config.jwtSecret, queryToken.trim());
    else throw unauthorized();
    confineSession(principal, ctx.path);
    (ctx.state as AppState).principal = principal;
    await next();
  };
}

/** 403 unless the principal holds `scope`. */
export function requireScope(scope: Scope) {
  // Not async: a refusal throws at once, and a pass adds no promise of its own (the chain catches both).
  return (ctx: Context, next: Next): Promise<void> => {
    const principal = (ctx.state as AppState).principal;
    if (!principal) throw unauthorized();
    if (!principal.scopes.has(scope)) {
      throw new Problem(403, 'insufficient_scope', 'Insufficient scope', `this operation needs the ${scope} scope`, {
        meta: { required: scope },
        headers: principal.via !== 'api_key' ? { 'WWW-Authenticate': `Bearer ${REALM}, error="insufficient_scope", scope="${scope}"` } : {},
      });
    }
    return next();
  };
}

/**
 * The API key or OAuth client of an org credential. A session token is refused (403
 * org_credential_required): were it allowed to mint its successor, access would renew for ever, past the
 * revocation of the key that minted the first token.
 */
export function orgCredentialOf(principal: Principal, what: string): CredentialRef {
  if (principal.session || !principal.credential) {
    throw new Problem(403, 'org_credential_required', 'Org credential required', `${what} needs an API key or an OAuth access token, not a session token`);
  }
  return principal.credential;
}

/** Route middleware: orgCredentialOf, before the route's access checks. */
export function requireOrgCredential(what: string) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const principal = (ctx.state as AppState).principal;
    if (!principal) throw unauthorized();
    orgCredentialOf(principal, what);
    await next();
  };
}

/** The org of the RESONANCE_BOOTSTRAP_KEY dev key. */
export const BOOTSTRAP_ORG = 'dev';

/** Registers the dev key for org "dev" with every scope; safe on every start (the key's hash is unique). */
export async function seedBootstrapKey(store: AuthStore, key: string | undefined): Promise<ApiKeyRecord | null> {
  if (!key) return null;
  return store.ensureApiKey(BOOTSTRAP_ORG, key, ALL_SCOPES);
}
