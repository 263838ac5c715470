/**
 * The Resonance TypeScript SDK: REST through fetch with X-Api-Key, live space
 * sessions over WebSocket. Runs in browsers and in Node 20 (where the `ws` package stands in for the
 * WebSocket that Node 20 lacks). Depends on nothing but what browsers provide and @msgpack/msgpack.
 */
import { ResonanceError } from './errors.js';
import { Http, postJson } from './http.js';
import { LiveSession, type OpenOptions, type WebSocketLike } from './session.js';
import type { DeltaProposal, HqeConfigInput, NormalizedHqeConfig, Role, SpaceConfigInput, SpaceSnapshot, SpaceStatus } from './protocol.js';
import type { AuthEndpoint, HqeRunResult, HqeSession, HqeSnapshot, Member, Page, SessionToken, SessionTokenRequest, Space, StreamEvent } from './types.js';

export { ConflictError, ConnectionLostError, type Problem, ResonanceError, UnreachableError } from './errors.js';
export { applyDelta, applyPhaseOps, type ConflictInfo, type ConnectionState, LiveSession, type OpenOptions, type SessionEvents } from './session.js';
export type * from './types.js';
export * from './protocol.js';

export interface ClientOptions {
  /** An API key (X-Api-Key). */
  apiKey?: string | undefined;
  /** Or an OAuth2 access token from /oauth/token. */
  accessToken?: string | undefined;
  /**
   * Or, in a browser that must not hold a key: where live sessions get their session tokens (a URL of the
   * page's own backend, or a function; types.ts AuthEndpoint). Used by `sessions.open` whenever it is given;
   * REST calls still need an apiKey or accessToken.
   */
  authEndpoint?: AuthEndpoint | undefined;
  /** Default http://127.0.0.1:8080 (`npm start`). */
  baseUrl?: string | undefined;
  fetch?: typeof fetch | undefined;
  /** A WebSocket constructor; default the global one, else the `ws` package (Node 20). */
  WebSocket?: WebSocketLike | undefined;
}

const q = (params: Record<string, string | number | undefined>): string => {
  const entries = Object.entries(params).filter((e): e is [string, string | number] => e[1] !== undefined);
  return entries.length === 0 ? '' : `?${new URLSearchParams(entries.map(([k, v]) => [k, String(v)])).toString()}`;
};

async function webSocketClass(given: WebSocketLike | undefined): Promise<WebSocketLike> {
  if (given) return given;
  if (typeof globalThis.WebSocket === 'function') return globalThis.WebSocket;
  // Node 20: no global WebSocket. The specifier is a variable so browser bundlers leave it alone.
  const name = 'ws';
  const mod = (await import(name)) as { WebSocket: unknown };
  return mod.WebSocket as WebSocketLike;
}

export class ResonanceClient {
  readonly spaces: SpacesApi;
  readonly sessions: SessionsApi;
  readonly hqe: HqeApi;
  private readonly http: Http;

  /** Throws at once without an `apiKey`, an `accessToken` or an `authEndpoint`: every route but health checks needs one. */
  constructor(options: ClientOptions = {}) {
    if (!options.apiKey?.trim() && !options.accessToken?.trim() && options.authEndpoint === undefined) {
      throw new ResonanceError(
        0, 'missing_credentials',
        'ResonanceClient needs an apiKey (X-Api-Key), an accessToken (from POST /oauth/token) or an authEndpoint (session tokens from your backend); none was given',
      );
    }
    const f = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.http = new Http({
      baseUrl: (options.baseUrl ?? 'http://127.0.0.1:8080').replace(/\/+$/, ''),
      fetch: f,
      ...(options.apiKey ? { apiKey: options.apiKey } : {}),
      ...(options.accessToken ? { accessToken: options.accessToken } : {}),
    });
    this.spaces = new SpacesApi(this.http);
    const endpoint = options.authEndpoint;
    const fromEndpoint = typeof endpoint === 'string' ? (r: SessionTokenRequest) => postJson<SessionToken>(f, endpoint, r) : endpoint;
    this.sessions = new SessionsApi(this.http, options.WebSocket, fromEndpoint);
    this.hqe = new HqeApi(this.http);
  }
}

export class SpacesApi {
  constructor(private readonly http: Http) {}

  create(config: SpaceConfigInput, opts: { idempotencyKey?: string } = {}): Promise<Space> {
    return this.http.request('POST', '/v1/spaces', config, opts);
  }

  get(id: string): Promise<Space> {
    return this.http.request('GET', `/v1/spaces/${encodeURIComponent(id)}`);
  }

  /** One page; pass `next_cursor` back as `cursor` for the next. */
  list(opts: { cursor?: string; pageSize?: number } = {}): Promise<Page<Space>> {
    return this.http.request('GET', `/v1/spaces${q({ cursor: opts.cursor, page_size: opts.pageSize })}`);
  }

  patch(
    id: string,
    change: Partial<Pick<SpaceConfigInput, 'phases' | 'operators' | 'entropy' | 'policy'>> & { status?: SpaceStatus },
    opts: { idempotencyKey?: string } = {},
  ): Promise<Space> {
    return this.http.request('PATCH', `/v1/spaces/${encodeURIComponent(id)}`, change, opts);
  }

  /** A new epoch with another basis (kept primes keep their phase and mass). */
  replaceBasis(id: string, basis: { primes: number[]; order?: 'ascending' | 'learned'; cutoff?: number }, opts: { idempotencyKey?: string } = {}): Promise<Space> {
    return this.http.request('POST', `/v1/spaces/${encodeURIComponent(id)}/basis`, basis, opts);
  }

  snapshot(id: string): Promise<SpaceSnapshot> {
    return this.http.request('GET', `/v1/spaces/${encodeURIComponent(id)}/snapshot`);
  }

  /** Propose a delta over REST; resolves with the merged snapshot and the delta's version. */
  proposeDelta(id: string, delta: DeltaProposal, opts: { idempotencyKey?: string } = {}): Promise<SpaceSnapshot & { toVersion: number }> {
    return this.http.request('POST', `/v1/spaces/${encodeURIComponent(id)}/deltas`, delta, opts);
  }

  members(id: string): Promise<{ items: Member[] }> {
    return this.http.request('GET', `/v1/spaces/${encodeURIComponent(id)}/members`);
  }

  removeMember(id: string, memberId: string): Promise<void> {
    return this.http.request('DELETE', `/v1/spaces/${encodeURIComponent(id)}/members/${encodeURIComponent(memberId)}`);
  }

  delete(id: string): Promise<void> {
    return this.http.request('DELETE', `/v1/spaces/${encodeURIComponent(id)}`);
  }
}

export class SessionsApi {
  constructor(
    private readonly http: Http,
    private readonly WebSocketCtor: WebSocketLike | undefined,
    /** Where `open` gets its tokens when the client was given an authEndpoint; else mintToken. */
    private readonly authEndpoint: ((request: SessionTokenRequest) => Promise<SessionToken>) | undefined,
  ) {}

  /**
   * A session token for a space, minted with this client's key or access token: what an app's backend
   * hands its pages (their authEndpoint), which then join without holding a key.
   */
  mintToken(request: SessionTokenRequest): Promise<SessionToken> {
    return this.http.request<SessionToken>('POST', `/v1/spaces/${encodeURIComponent(request.spaceId)}/sessions`, {
      ...(request.role ? { role: request.role } : {}),
      ...(request.displayName ? { displayName: request.displayName } : {}),
    });
  }

  /** Mint a session token and join the space over WebSocket; resolves once the session holds the state. */
  async open(spaceId: string, options: OpenOptions & { role?: Role; displayName?: string } = {}): Promise<LiveSession> {
    const request: SessionTokenRequest = { spaceId, ...(options.role ? { role: options.role } : {}), ...(options.displayName ? { displayName: options.displayName } : {}) };
    const mint = this.authEndpoint ?? ((r: SessionTokenRequest) => this.mintToken(r));
    const token = await mint(request);
    // Renewals ask for the role the first token was given.
    const renew = (): Promise<SessionToken> => mint({ ...request, role: token.role });
    const session = new LiveSession(this.http, await webSocketClass(this.WebSocketCtor), token, options, renew);
    await session.start();
    return session;
  }
}

export class HqeApi {
  readonly sessions: HqeSessionsApi;

  constructor(private readonly http: Http) {
    this.sessions = new HqeSessionsApi(http);
  }

  validate(config: HqeConfigInput): Promise<{ ok: true; warnings: string[]; normalized: NormalizedHqeConfig }> {
    return this.http.request('POST', '/v1/hqe/validate', config);
  }

  run(config: HqeConfigInput, opts: { idempotencyKey?: string } = {}): Promise<HqeRunResult> {
    return this.http.request('POST', '/v1/hqe/run', config, opts);
  }
}

export class HqeSessionsApi {
  constructor(private readonly http: Http) {}

  create(config: HqeConfigInput, opts: { idempotencyKey?: string } = {}): Promise<HqeSession> {
    return this.http.request('POST', '/v1/hqe/sessions', config, opts);
  }

  get(id: string): Promise<HqeSession> {
    return this.http.request('GET', `/v1/hqe/sessions/${encodeURIComponent(id)}`);
  }

  /** Advance `steps` further; resolves with the snapshot at the new step. */
  step(id: string, steps: number, opts: { idempotencyKey?: string } = {}): Promise<HqeSnapshot> {
    return this.http.request('POST', `/v1/hqe/sessions/${encodeURIComponent(id)}/step`, { steps }, opts);
  }

  close(id: string): Promise<void> {
    return this.http.request('DELETE', `/v1/hqe/sessions/${encodeURIComponent(id)}`);
  }

  /** Every snapshot, page after page. */
  async *snapshots(id: string, opts: { pageSize?: number } = {}): AsyncGenerator<HqeSnapshot> {
    let cursor: string | undefined;
    do {
      const page = await this.http.request<Page<HqeSnapshot>>('GET', `/v1/hqe/sessions/${encodeURIComponent(id)}/snapshots${q({ cursor, page_size: opts.pageSize })}`);
      yield* page.items;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  /**
   * The session's live stream (snapshot, metrics, event, status events); resume with `lastEventId`. Once
   * the session has finished (converged, plateau, failed, completed or closed) the last event is `end`
   * `{status}` and the iteration ends. Leaving the loop early closes the request.
   */
  stream(id: string, opts: { lastEventId?: string; signal?: AbortSignal } = {}): AsyncGenerator<StreamEvent> {
    return this.http.stream(`/v1/hqe/sessions/${encodeURIComponent(id)}/stream`, { ...opts, isLast: (e) => e.event === 'end' });
  }
}
