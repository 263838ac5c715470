/** What the HTTP layer attaches to every request. */
import type { Scope } from '../store/auth.js';

export { ALL_SCOPES, type Scope } from '../store/auth.js';

export interface Principal {
  orgId: string;
  scopes: Set<Scope>;
  /** How the caller authenticated: an API key or an OAuth2 access token. */
  via: 'api_key' | 'oauth';
  /** API key id or OAuth client id: the rate-limit identity. */
  subject: string;
}

export interface AppState {
  requestId: string;
  principal?: Principal;
}
