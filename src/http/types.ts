/** What the HTTP layer attaches to every request. */
import type { CredentialRef, Scope } from '../store/auth.js';
import type { Role } from '@resonance/sdk/protocol';

export { ALL_SCOPES, type Scope } from '../store/auth.js';

export interface Principal {
  orgId: string;
  scopes: Set<Scope>;
  /** How the caller authenticated: an API key, an OAuth2 access token, or a space session token. */
  via: 'api_key' | 'oauth' | 'session';
  /** API key id or OAuth client id (for a session token: the key or client that minted it): the rate-limit identity. */
  subject: string;
  /**
   * The stored credential behind the request (for a session token: the one that minted it). Revoking it
   * refuses the request and ends the streams and sockets it opened (src/http/revocations.ts).
   */
  credential?: CredentialRef;
  /**
   * Only for a session token (POST /v1/spaces/{id}/sessions): the one space it may touch, the role it was
   * minted with and its member (= session) id. Such a principal holds spaces.read (+ spaces.write unless a
   * reader) and is refused (403 insufficient_scope) anywhere under /v1 but /v1/spaces/{spaceId}.
   */
  session?: { spaceId: string; role: Role; memberId: string };
}

export interface AppState {
  requestId: string;
  principal?: Principal;
}
