/**
 * POST /oauth/token: the OAuth2 client credentials grant (RFC 6749 section 4.4).
 *
 * Accepts form (the RFC's encoding, what OAuth libraries send) and JSON bodies, and client authentication by
 * HTTP Basic or by client_id/client_secret in the body (section 2.3.1), never both. Success is the RFC's
 * JSON token response. Errors are problem+json like the rest of the API, with `code` set to the RFC error
 * name so OAuth-aware clients can still branch on it:
 *   400 invalid_request         malformed request, or two client authentication methods
 *   400 unsupported_grant_type  grant_type other than client_credentials
 *   400 invalid_scope           a requested scope the client does not hold
 *   401 invalid_client          unknown or revoked client, wrong secret or no client authentication (WWW-Authenticate: Basic)
 * invalid_grant never occurs: the client credentials grant carries no grant that could be invalid.
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { ZodOpenApiPathsObject } from 'zod-openapi';
import type { AuthStore, OAuthClientRecord } from '../../store/auth.js';
import type { ServerConfig } from '../config.js';
import { Problem } from '../problem.js';
import { jsonResponse, problemResponse } from '../schemas.js';
import * as ex from '../openapi-examples.js';
import { issueToken } from '../tokens.js';
import { ALL_SCOPES, type Scope } from '../types.js';

export interface OAuthDeps {
  authStore: AuthStore;
  config: ServerConfig;
}

// ---- schemas ----

export const TokenRequest = z
  .object({
    grant_type: z.literal('client_credentials'),
    client_id: z.string().optional().meta({ description: 'With client_secret, when the client does not authenticate with HTTP Basic.' }),
    client_secret: z.string().optional().meta({ description: 'With client_id, when the client does not authenticate with HTTP Basic.' }),
    scope: z
      .string()
      .optional()
      .meta({ description: "Space-separated subset of the client's scopes; all of them when absent.", example: 'hqe.read hqe.write' }),
  })
  .meta({ id: 'OAuthTokenRequest', description: 'RFC 6749 section 4.4 token request; form-encoded or JSON.' });

export const TokenResponse = z
  .object({
    access_token: z.string().meta({ description: 'HS256 JWT: sub = client id, org, scope; iss "resonance", aud "resonance-api".' }),
    token_type: z.literal('Bearer'),
    expires_in: z.number().int().positive().meta({ description: 'Seconds until the token expires.' }),
    scope: z.string().meta({ description: 'Space-separated scopes granted.' }),
  })
  .meta({ id: 'OAuthTokenResponse', description: 'RFC 6749 section 5.1 token response: send `Authorization: Bearer <access_token>` until it expires, then ask again.' });

export type TokenResponseBody = z.infer<typeof TokenResponse>;

// ---- errors ----

const oauthProblem = (status: 400 | 401, code: string, title: string, detail: string, headers: Record<string, string> = {}): Problem =>
  // RFC 6749 section 5.1/5.2: token responses and their errors must not be cached.
  new Problem(status, code, title, detail, { headers: { 'Cache-Control': 'no-store', Pragma: 'no-cache', ...headers } });

const invalidRequest = (detail: string): Problem => oauthProblem(400, 'invalid_request', 'Invalid token request', detail);
const invalidClient = (): Problem =>
  oauthProblem(401, 'invalid_client', 'Client authentication failed', 'the client credentials are invalid', {
    'WWW-Authenticate': 'Basic realm="resonance"',
  });

// ---- request handling ----

interface ClientCredentials {
  id: string;
  secret: string;
}

/** RFC 6749 section 2.3.1: Basic credentials are form-urlencoded before base64, so decode both layers. */
function basicCredentials(header: string): ClientCredentials | 'absent' | 'malformed' {
  const value = header.trim();
  if (!/^Basic\b/i.test(value)) return 'absent';
  const match = /^Basic\s+([A-Za-z0-9+/]+={0,2})$/i.exec(value);
  if (!match) return 'malformed';
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return 'malformed';
  try {
    const unform = (s: string): string => decodeURIComponent(s.replace(/\+/g, ' '));
    return { id: unform(decoded.slice(0, colon)), secret: unform(decoded.slice(colon + 1)) };
  } catch {
    return 'malformed';
  }
}

function parseRequest(ctx: Context): { request: z.infer<typeof TokenRequest>; credentials: ClientCredentials } {
  if (!ctx.is('application/x-www-form-urlencoded', 'application/json')) {
    throw new Problem(415, 'unsupported_media_type', 'Unsupported media type', 'send application/x-www-form-urlencoded or application/json');
  }
  const body = (ctx.request as { body?: unknown }).body;
  const fields = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  if (fields.grant_type === undefined) throw invalidRequest('grant_type is required');
  if (fields.grant_type !== 'client_credentials') {
    throw oauthProblem(400, 'unsupported_grant_type', 'Unsupported grant type', 'only grant_type=client_credentials is supported');
  }
  const parsed = TokenRequest.safeParse(fields);
  if (!parsed.success) {
    // A parameter sent twice in a form arrives as an array; RFC 6749 section 3.2 forbids repeating them.
    const names = [...new Set(parsed.error.issues.map((i) => String(i.path[0] ?? '')))].join(', ');
    throw invalidRequest(`each of ${names} must be a single string`);
  }
  const { client_id, client_secret } = parsed.data;
  const basic = basicCredentials(ctx.get('Authorization'));
  if (basic === 'malformed') throw invalidClient();
  const inBody = client_id !== undefined || client_secret !== undefined;
  if (basic !== 'absent' && inBody) throw invalidRequest('authenticate the client with HTTP Basic or with client_id/client_secret in the body, not both');
  const credentials = basic !== 'absent' ? basic : client_id && client_secret ? { id: client_id, secret: client_secret } : null;
  if (!credentials) throw invalidClient();
  return { request: parsed.data, credentials };
}

/** The requested scopes, which must all be the client's; all of the client's when none are requested. */
function grantedScopes(client: OAuthClientRecord, requested: string | undefined): Scope[] {
  const names = (requested ?? '').split(' ').filter(Boolean);
  if (names.length === 0) return client.scopes;
  const granted = new Set<Scope>();
  for (const name of names) {
    if (!(ALL_SCOPES as string[]).includes(name) || !client.scopes.includes(name as Scope)) {
      throw oauthProblem(400, 'invalid_scope', 'Invalid scope', `the client may request only: ${client.scopes.join(' ') || '(no scopes)'}`);
    }
    granted.add(name as Scope);
  }
  return [...granted];
}

export function oauthRoutes(deps: OAuthDeps): Router {
  const { authStore, config } = deps;
  const router = new Router();

  router.post('/oauth/token', async (ctx) => {
    const { request, credentials } = parseRequest(ctx);
    // A revoked client gets no new token; the tokens it holds are refused by every request (auth.ts).
    const client = await authStore.verifyClient(credentials.id, credentials.secret);
    if (!client) throw invalidClient();
    const scopes = grantedScopes(client, request.scope);
    const accessToken = await issueToken(config.jwtSecret, { sub: client.id, org: client.orgId, scopes }, config.tokenTtlSeconds);
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Pragma', 'no-cache');
    const body: TokenResponseBody = { access_token: accessToken, token_type: 'Bearer', expires_in: config.tokenTtlSeconds, scope: scopes.join(' ') };
    ctx.body = body;
  });

  return router;
}

// ---- contract ----

export const oauthPaths: ZodOpenApiPathsObject = {
  '/oauth/token': {
    post: {
      tags: ['Auth'], operationId: 'issueToken',
      summary: 'Get an access token (OAuth2 client credentials)',
      description:
        'RFC 6749 section 4.4. Authenticate the client with HTTP Basic (`Authorization: Basic base64(client_id:client_secret)`) ' +
        'or with client_id and client_secret in the body, not both. Errors are problem+json whose `code` is the RFC 6749 error name. ' +
        'No API key is needed; the token carries the requested scopes (all of the client\'s when none are asked for) and expires after expires_in seconds: cache it and ask again shortly before.',
      security: [],
      requestBody: {
        required: true,
        content: {
          'application/x-www-form-urlencoded': { schema: TokenRequest, examples: { basic: { summary: 'Client authenticated with HTTP Basic', value: ex.tokenRequest } } },
          'application/json': { schema: TokenRequest, examples: { body: { summary: 'Client id and secret in the body', value: ex.tokenRequestWithSecret } } },
        },
      },
      responses: {
        '200': {
          description: 'Access token',
          headers: z.object({ 'Cache-Control': z.literal('no-store') }),
          ...jsonResponse(TokenResponse, { token: { summary: 'An hour-long token for hqe.read and hqe.write', value: ex.tokenResponse } }),
        },
        '400': problemResponse('invalid_request, unsupported_grant_type or invalid_scope'),
        '401': problemResponse('invalid_client: unknown or revoked client, wrong secret or no client authentication'),
        '413': problemResponse('payload_too_large: the body exceeds the size limit'),
        '415': problemResponse('unsupported_media_type: the body is neither form nor JSON'),
      },
    },
  },
};
