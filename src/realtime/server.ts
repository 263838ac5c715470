/**
 * The WebSocket endpoint of live spaces: `GET /spaces/{id}` upgraded on the HTTP server's port
 * (behaviour and close codes in docs/spaces.md "Realtime"),
 * and the per-space feeds (feed.ts) that its connections and the SSE telemetry streams of the HTTP API
 * (SpaceStreams) subscribe to alike.
 *
 * The upgrade is authorised before any WebSocket exists: a session token (Authorization: Bearer, or
 * ?token=) for this space whose minting API key or OAuth client is not revoked, a member not removed, a
 * space that exists and is not archived. Refusals are problem+json HTTP responses written on the raw socket
 * (401 with WWW-Authenticate, 403, 404, 409, 503). A socket open when its minter is revoked is closed 4401
 * (the credential watch's sweep, about once a second).
 *
 * Presence goes through the broker (src/cluster/broker.ts): an open socket makes its member present there,
 * and the hub asks the broker, not this server, before it expires a member.
 */
import { type IncomingMessage, type Server, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import WebSocket, { WebSocketServer } from 'ws';
import type { Presence } from '../cluster/broker.js';
import type { ServerConfig } from '../http/config.js';
import type { CredentialWatch } from '../http/revocations.js';
import type { SpaceStreamRequest, SpaceStreams } from '../http/routes/spaces.js';
import { type SessionClaims, verifySessionToken } from '../http/tokens.js';
import { notFound, Problem, problemOf, spaceTitle } from '../http/problem.js';
import type { SpaceHub } from '../sim/spaces.js';
import { QuotaExceededError, type Quotas, type UsageMeter } from '../sim/quotas.js';
import { Connection, type ConnectionHost, type ConnectionLimits, Flusher, type ProposalBudget } from './connection.js';
import { type FeedOwner, SpaceFeed } from './feed.js';
import { CloseCode, type Encoding, SUBPROTOCOLS } from '@resonance/sdk/protocol';
import { SseSubscriber } from './sse-subscriber.js';

export interface RealtimeOptions {
  config: Pick<ServerConfig, 'jwtSecret' | 'wsMaxFrameBytes' | 'wsSlowBytes' | 'wsBufferCapBytes' | 'wsProposalsPerSecond' | 'replayMaxDeltas'>;
  spaces: SpaceHub;
  /** Where an open socket makes its member present (the broker's; the hub reads it). */
  presence: Presence;
  logger: Logger;
  /** Revocation of the tokens' minters: checked at the upgrade, and open sockets closed when it happens. */
  credentials: CredentialWatch;
  /** Without a hello within this time the session starts as if `hello {}` had come (default 2000 ms). */
  helloTimeoutMs?: number;
  /** The HTTP rate limiter: each proposal costs its token's minter one unit, like a REST request. */
  budget?: ProposalBudget;
  /** sockets and sockets_per_member caps (docs/tenancy.md). */
  quotas?: Quotas;
  /** Metering of bytes_sent and telemetry_frames. */
  usage?: UsageMeter;
}

/** Frames above wsMaxFrameBytes get an error frame; ws itself closes the connection (1009) above this multiple. */
export const MAX_PAYLOAD_FACTOR = 4;
const SPACE_PATH = /^\/spaces\/([A-Za-z0-9_-]{1,100})\/?$/;
const MAX_TOKEN_LENGTH = 4096;
const REALM = 'realm="resonance"';

interface Admitted {
  claims: SessionClaims & { exp: number };
}

/** Subprotocol choice: the first of the client's offers that we speak (none: JSON, no protocol header). */
function chooseProtocol(offered: Set<string>): string | false {
  for (const p of offered) if (SUBPROTOCOLS.has(p)) return p;
  return false;
}

function bearer(req: IncomingMessage, url: URL): string | null {
  const header = req.headers.authorization;
  if (header) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return m ? m[1]! : null;
  }
  return url.searchParams.get('token');
}

export class RealtimeServer implements FeedOwner, ConnectionHost, SpaceStreams {
  readonly wss: WebSocketServer;
  readonly hub: SpaceHub;
  readonly logger: Logger;
  readonly limits: ConnectionLimits;
  readonly flusher = new Flusher();
  readonly counters = { frames: 0, writes: 0 };
  private readonly feeds = new Map<string, SpaceFeed>();
  /** This server's open connections per member of a space (key: spaceId + NUL + memberId), to close a removed member's. */
  private readonly members = new Map<string, Set<Connection>>();
  private readonly conns = new Set<Connection>();
  readonly budget: ProposalBudget | undefined;
  private meterTimer: NodeJS.Timeout | null = null;
  private closing: Promise<void> | null = null;

  constructor(private readonly options: RealtimeOptions) {
    const { config } = options;
    this.hub = options.spaces;
    this.logger = options.logger;
    this.limits = {
      maxFrameBytes: config.wsMaxFrameBytes,
      slowBytes: config.wsSlowBytes,
      capBytes: config.wsBufferCapBytes,
      hardCapBytes: Math.max(4 * config.wsBufferCapBytes, config.wsBufferCapBytes + 4 * config.wsMaxFrameBytes),
      helloTimeoutMs: options.helloTimeoutMs ?? 2000,
      proposalsPerSecond: config.wsProposalsPerSecond,
    };
    this.budget = options.budget;
    if (options.usage) {
      const usage = options.usage;
      this.meterTimer = setInterval(() => this.meter(this.conns, usage), 1000);
      this.meterTimer.unref();
    }
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: MAX_PAYLOAD_FACTOR * config.wsMaxFrameBytes,
      perMessageDeflate: false,
      clientTracking: false,
      handleProtocols: chooseProtocol,
    });
  }

  /** Route every HTTP upgrade of `server` here. */
  listen(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.handleUpgrade(req, socket, head));
  }

  stats(): { connections: number; feeds: number; frames: number; writes: number } {
    return { connections: this.conns.size, feeds: this.feeds.size, ...this.counters };
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // A client that goes away mid-handshake must not become an uncaught 'error'.
    socket.on('error', () => undefined);
    this.upgrade(req, socket, head).catch((err: unknown) => {
      // The same answers as the HTTP API's (a store out of reach is a 503); anything else is the server's failure.
      const problem = problemOf(err);
      if (!problem) this.logger.error({ err }, 'realtime upgrade failed');
      refuse(socket, problem ?? new Problem(500, 'internal', 'Internal error', 'the server failed'), req.url ?? '/');
    });
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const result = await this.admit(req);
    if (result instanceof Problem) return refuse(socket, result, req.url ?? '/');
    if (this.closing) return refuse(socket, unavailable(), req.url ?? '/');
    const held = await this.hold(result.claims);
    if (held instanceof Problem) return refuse(socket, held, req.url ?? '/');
    // The client may have left while its places were taken: its 'close' has fired already.
    if (socket.destroyed) return held.release();
    // A handshake that fails (or a client that leaves) before accept() gives its places back.
    let accepted = false;
    socket.once('close', () => {
      if (!accepted) held.release();
    });
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      accepted = true;
      this.accept(ws, socket, req, result, held.release);
    });
  }

  private async admit(req: IncomingMessage): Promise<Admitted | Problem> {
    if (this.closing) return unavailable();
    const url = new URL(req.url ?? '/', 'http://localhost');
    const m = SPACE_PATH.exec(url.pathname);
    if (!m) return new Problem(404, 'not_found', 'Not found', `no WebSocket endpoint at ${url.pathname}; use /spaces/{id}`);
    const spaceId = m[1]!;
    const token = bearer(req, url);
    if (!token) {
      return new Problem(401, 'unauthorized', 'Unauthorized', 'send the session token of POST /v1/spaces/{id}/sessions in Authorization: Bearer or ?token=', {
        headers: { 'WWW-Authenticate': `Bearer ${REALM}` },
      });
    }
    const claims = token.length <= MAX_TOKEN_LENGTH ? await verifySessionToken(this.options.config.jwtSecret, token) : null;
    // Another space's token, or one whose minter was revoked, is refused exactly like a forged or expired one.
    if (!claims || claims.space !== spaceId || (await this.options.credentials.isRevoked({ kind: claims.minterKind, id: claims.minter }))) {
      return new Problem(401, 'invalid_credentials', 'Invalid credentials', 'the session token is invalid, expired, revoked or for another space', {
        headers: { 'WWW-Authenticate': `Bearer ${REALM}, error="invalid_token"` },
      });
    }
    // Removal is stored: its tokens stay refused after a restart too.
    if ((await this.hub.member(spaceId, claims.sub))?.removedAt != null) {
      return new Problem(403, 'member_removed', spaceTitle('member_removed'), 'this member was removed from the space');
    }
    const row = await this.hub.get(spaceId);
    if (!row) return notFound(`space ${spaceId}`);
    if (row.status === 'archived') return new Problem(409, 'space_archived', spaceTitle('space_archived'), 'the space is archived');
    return { claims };
  }

  /**
   * Take the socket's places in the org's `sockets` and the member's `sockets_per_member` quotas before
   * the upgrade (a refusal is a 409 problem quota_exceeded); released when the socket closes.
   */
  private async hold(claims: SessionClaims): Promise<{ release: () => void } | Problem> {
    const quotas = this.options.quotas;
    if (!quotas) return { release: () => undefined };
    let member: (() => void) | null = null;
    try {
      member = await quotas.acquire(claims.org, 'sockets_per_member', memberKey(claims.space, claims.sub));
      const org = await quotas.acquire(claims.org, 'sockets');
      const mine = member;
      return {
        release: () => {
          mine();
          org();
        },
      };
    } catch (err) {
      member?.();
      if (!(err instanceof QuotaExceededError)) throw err;
      // The quota's problem, told in terms of sockets.
      const detail = err.quota === 'sockets' ? `the org has its maximum of ${err.limit} open WebSocket connections` : `this member has its maximum of ${err.limit} open WebSocket connections`;
      return new Problem(409, 'quota_exceeded', 'Quota exceeded', detail, { meta: err.meta });
    }
  }

  private accept(ws: WebSocket, socket: Duplex, req: IncomingMessage, admitted: Admitted, release: () => void): void {
    const encoding: Encoding = SUBPROTOCOLS.get(ws.protocol) ?? 'json';
    ws.once('close', release);
    if (this.closing) {
      ws.close(CloseCode.GOING_AWAY, 'server shutting down');
      return;
    }
    const key = memberKey(admitted.claims.space, admitted.claims.sub);
    let set = this.members.get(key);
    if (!set) this.members.set(key, (set = new Set()));
    // Present before the join, so that a close of another of its sockets does not make the member leave,
    // and whatever its token's expiry: the hub expires only members without a socket.
    const entered = this.options.presence.enter(admitted.claims.space, admitted.claims.sub);
    entered.catch((err: unknown) => this.onError(err, `presence of ${admitted.claims.sub}`));
    const conn = new Connection(ws, socket, admitted.claims, encoding, this);
    set.add(conn);
    this.conns.add(conn);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      try {
        conn.onMessage(data, isBinary);
      } catch (err) {
        conn.fail(err);
      }
    });
    ws.on('error', (err) => this.logger.debug({ err, spaceId: conn.spaceId }, 'websocket error'));
    const unwatch = this.options.credentials.watch({ kind: admitted.claims.minterKind, id: admitted.claims.minter }, () =>
      conn.close(CloseCode.CREDENTIAL_REVOKED, 'credential revoked', {
        type: 'error', code: 'credential_revoked', message: 'the API key or OAuth client that opened this session was revoked',
      }),
    );
    ws.on('close', () => {
      unwatch();
      this.closed(conn, key, entered);
    });
    socket.on('drain', () => conn.onWritable());
    this.logger.debug({ spaceId: conn.spaceId, memberId: conn.memberId, encoding, ip: req.socket.remoteAddress }, 'realtime connected');
  }

  /**
   * Hand the connections' bytes and telemetry frames since the last call to the usage meter, summed per
   * org first: one meter entry per org, not per socket, each second (and once more as a socket closes).
   */
  private meter(conns: Iterable<Connection>, usage: UsageMeter): void {
    const byOrg = new Map<string, { bytes: number; telemetryFrames: number }>();
    for (const c of conns) {
      const u = c.unmetered;
      if (u.bytes === 0 && u.telemetryFrames === 0) continue;
      const sum = byOrg.get(c.claims.org);
      if (sum) {
        sum.bytes += u.bytes;
        sum.telemetryFrames += u.telemetryFrames;
      } else byOrg.set(c.claims.org, { ...u });
      u.bytes = 0;
      u.telemetryFrames = 0;
    }
    for (const [org, u] of byOrg) {
      usage.add(org, 'bytes_sent', u.bytes);
      usage.add(org, 'telemetry_frames', u.telemetryFrames);
    }
  }

  private closed(conn: Connection, key: string, entered: Promise<() => Promise<void>>): void {
    conn.onClosed();
    if (this.options.usage) this.meter([conn], this.options.usage);
    this.conns.delete(conn);
    const set = this.members.get(key);
    set?.delete(conn);
    if (set && set.size === 0) this.members.delete(key);
    const left = entered.then((leave) => leave());
    if (this.closing || conn.removed) {
      left.catch((err: unknown) => this.onError(err, `presence of ${conn.memberId}`));
      return;
    }
    const { spaceId, memberId } = conn;
    void Promise.all([conn.wasJoined(), left])
      // The member leaves when its last socket is gone (and none opened meanwhile, on any node).
      .then(async ([joined]) => joined && !this.closing && !(await this.options.presence.has(spaceId, memberId)))
      .then(
        (leaves) => {
          if (!leaves) return;
          this.hub.leave(spaceId, memberId, 'disconnected').catch((err: unknown) => {
            if ((err as { status?: number }).status !== 404) this.onError(err, `leave of ${memberId}`);
          });
        },
        (err: unknown) => this.onError(err, `presence of ${memberId}`),
      );
  }

  // ---- ConnectionHost ----

  feed(spaceId: string): SpaceFeed {
    let feed = this.feeds.get(spaceId);
    if (!feed) this.feeds.set(spaceId, (feed = new SpaceFeed(spaceId, this.hub, this)));
    return feed;
  }

  async joinMember(conn: Connection): Promise<void> {
    const present = await this.hub.member(conn.spaceId, conn.memberId);
    if (present && present.leftAt === null) return;
    const c = conn.claims;
    await this.hub.join(conn.spaceId, {
      id: conn.memberId,
      userId: present?.userId ?? c.minter,
      orgId: present?.orgId ?? c.org,
      role: c.role,
      displayName: present?.displayName ?? null,
      expiresAt: c.exp * 1000,
    });
  }

  // ---- SpaceStreams: an SSE telemetry stream joins the same feed ----

  async open(spaceId: string, request: SpaceStreamRequest): Promise<void> {
    const feed = this.feed(spaceId);
    // An SSE stream neither joins nor leaves the space, nor makes its member present (docs/spaces.md).
    const sub = new SseSubscriber(feed, request, { slowBytes: this.limits.slowBytes, maxHeld: this.options.config.replayMaxDeltas });
    try {
      await feed.join(sub, request.lastVersion);
    } catch (err) {
      sub.release();
      throw err;
    }
  }

  // ---- FeedOwner ----

  dropFeed(feed: SpaceFeed): void {
    if (this.feeds.get(feed.spaceId) === feed) this.feeds.delete(feed.spaceId);
  }

  memberRemoved(spaceId: string, memberId: string): void {
    const key = memberKey(spaceId, memberId);
    for (const c of [...(this.members.get(key) ?? [])]) {
      c.removed = true;
      c.close(CloseCode.MEMBER_REMOVED, 'member removed', { type: 'error', code: 'member_removed', message: 'you were removed from the space' });
    }
  }

  onError(err: unknown, what: string): void {
    this.logger.error({ err, what }, 'realtime error');
  }

  /** Close every connection with 1001 (waiting up to `graceMs` for the close handshakes), then refuse upgrades. */
  close(graceMs = 1000): Promise<void> {
    return (this.closing ??= (async () => {
      const conns = [...this.conns];
      const done = Promise.all(conns.map((c) => (c.ws.readyState === WebSocket.CLOSED ? null : new Promise<void>((resolve) => c.ws.once('close', () => resolve())))));
      for (const c of conns) c.close(CloseCode.GOING_AWAY, 'server shutting down');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
      for (const c of conns) if (c.ws.readyState !== WebSocket.CLOSED) c.ws.terminate();
      await new Promise<void>((resolve) => this.wss.close(() => resolve()));
      if (this.meterTimer) clearInterval(this.meterTimer);
      this.logger.info({ frames: this.counters.frames, writes: this.counters.writes }, 'realtime stopped');
    })());
  }
}

const memberKey = (spaceId: string, memberId: string): string => `${spaceId}\u0000${memberId}`;

const unavailable = (): Problem => new Problem(503, 'unavailable', 'Service unavailable', 'the server is shutting down', { headers: { 'Retry-After': '1' } });

/** An HTTP answer on the socket of a refused upgrade (problem+json), then the socket is closed. */
function refuse(socket: Duplex, r: Problem, path: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify(r.bodyAt(path.split('?')[0] ?? '/'));
  const headers = {
    Connection: 'close',
    'Content-Type': 'application/problem+json',
    'Content-Length': String(Buffer.byteLength(body)),
    'Cache-Control': 'no-store',
    ...r.extra.headers,
  };
  const head = `HTTP/1.1 ${r.status} ${STATUS_CODES[r.status] ?? ''}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`;
  socket.end(head + body);
  // end() sends FIN after the answer; a client that never closes its side is dropped.
  setTimeout(() => socket.destroy(), 2000).unref();
}
