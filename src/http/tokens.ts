/**
 * HS256 JWTs: OAuth2 access tokens and (later) short-lived realtime session tokens share this one module so
 * both are signed, checked and parsed the same way. Each kind gets its own audience, which keeps a token
 * minted for one use from being replayed at the other.
 */
import { SignJWT, jwtVerify } from 'jose';
import { type CredentialKind, parseScopes } from '../store/auth.js';
import type { Scope } from './types.js';
import type { Role } from '@resonance/sdk/protocol';

export const TOKEN_ISSUER = 'resonance';
/** Audience of OAuth2 access tokens accepted by the REST API. */
export const API_AUDIENCE = 'resonance-api';

export interface TokenClaims {
  /** Who the token speaks for: the OAuth client id (the rate-limit identity). */
  sub: string;
  /** Org id the subject belongs to. */
  org: string;
  scopes: Scope[];
}

export interface VerifiedToken extends TokenClaims {
  /** Expiry, seconds since the epoch. */
  exp: number;
}

export interface TokenOptions {
  /** Defaults to API_AUDIENCE. */
  audience?: string;
}

/** Signs `claims` for `ttlSeconds`. The scope claim is the space-separated OAuth form (RFC 8693 section 4.2). */
export async function issueToken(secret: Uint8Array, claims: TokenClaims, ttlSeconds: number, options: TokenOptions = {}): Promise<string> {
  const iat = Math.floor(Date.now() / 1000);
  return new SignJWT({ org: claims.org, scope: claims.scopes.join(' ') })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(claims.sub)
    .setIssuer(TOKEN_ISSUER)
    .setAudience(options.audience ?? API_AUDIENCE)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ttlSeconds)
    .sign(secret);
}

/**
 * The token's claims when its signature, issuer, audience and expiry all check out; otherwise null. Callers
 * get no reason on purpose: whatever they answer must not tell a caller which part was wrong.
 */
export async function verifyToken(secret: Uint8Array, token: string, options: TokenOptions = {}): Promise<VerifiedToken | null> {
  try {
    const { payload } = await jwtVerify(token, secret, {
      // Pinned: never let the token's header pick the algorithm (alg=none and key-confusion attacks).
      algorithms: ['HS256'],
      issuer: TOKEN_ISSUER,
      audience: options.audience ?? API_AUDIENCE,
      requiredClaims: ['sub', 'exp', 'org', 'scope'],
    });
    const { sub, exp, org, scope } = payload;
    if (typeof sub !== 'string' || typeof exp !== 'number' || typeof org !== 'string' || typeof scope !== 'string') return null;
    return { sub, org, scopes: parseScopes(scope), exp };
  } catch {
    // jose throws a JOSEError subclass for every malformed, forged or expired token.
    return null;
  }
}

/** Audience of realtime session tokens (POST /v1/spaces/{id}/sessions): WebSocket, SSE and REST on that space. */
export const SESSION_AUDIENCE = 'resonance-space-session';

export interface SessionClaims {
  /** Session id = member id. */
  sub: string;
  org: string;
  space: string;
  role: Role;
  /** Who minted it (API key or OAuth client id): the rate-limit identity. */
  minter: string;
  /** What `minter` is: revoking that credential refuses the token (and ends its sockets and streams). */
  minterKind: CredentialKind;
}

export async function issueSessionToken(secret: Uint8Array, claims: SessionClaims, ttlSeconds: number): Promise<string> {
  const iat = Math.floor(Date.now() / 1000);
  return new SignJWT({ org: claims.org, space: claims.space, role: claims.role, minter: claims.minter, minter_kind: claims.minterKind })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(claims.sub)
    .setIssuer(TOKEN_ISSUER)
    .setAudience(SESSION_AUDIENCE)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ttlSeconds)
    .sign(secret);
}

/** The claims of a valid, unexpired session token; null otherwise (no reason, as for access tokens). */
export async function verifySessionToken(secret: Uint8Array, token: string): Promise<(SessionClaims & { exp: number }) | null> {
  try {
    const { payload } = await jwtVerify(token, secret, {
      algorithms: ['HS256'],
      issuer: TOKEN_ISSUER,
      audience: SESSION_AUDIENCE,
      // A token without minter_kind names no credential that could be checked for revocation: refused.
      requiredClaims: ['sub', 'exp', 'org', 'space', 'role', 'minter', 'minter_kind'],
    });
    const { sub, exp, org, space, role, minter, minter_kind: minterKind } = payload;
    if (typeof sub !== 'string' || typeof exp !== 'number' || typeof org !== 'string' || typeof space !== 'string' || typeof minter !== 'string') return null;
    if (role !== 'owner' && role !== 'admin' && role !== 'writer' && role !== 'reader') return null;
    if (minterKind !== 'api_key' && minterKind !== 'oauth_client') return null;
    return { sub, exp, org, space, role, minter, minterKind };
  } catch {
    return null;
  }
}
