/**
 * Webhooks: registration, the durable outbox and the dispatcher.
 *
 * `emit` writes one delivery row per subscribed webhook in a single transaction and returns; the dispatcher
 * loop (`start`/`stop`) claims due rows with a lease, POSTs the signed payload, and records the outcome:
 * 2xx = delivered; anything else (3xx included: redirects are not followed), a timeout or a network error is
 * retried with exponential backoff and jitter until the next try would fall more than `maxAgeMs` after the
 * event, then the row is `failed`. Delivery is at least once: a row is marked delivered only after a 2xx,
 * so a crash between the receiver's 2xx and that write repeats the delivery (receivers dedupe on
 * `X-RS-Delivery` or the payload `id`). Rows outlive the process: a restarted dispatcher picks up pending
 * rows, and rows claimed by a process that died become due again once their lease (timeout + grace) ends.
 *
 * Every attempt resolves the target and checks it again (targets.ts), then connects to exactly the addresses
 * that check vetted: the HTTP client gets a lookup that answers with them, so DNS cannot send the request
 * elsewhere in between (rebinding). TLS still verifies the certificate against the URL's host name.
 */
import { randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import type { Quotas } from '../sim/quotas.js';
import type { ClaimedDelivery, DeliveryRecord, PageAfter, WebhookRecord, WebhookStore } from '../store/webhooks.js';
import { generateSecret, sign } from './signing.js';
import { checkTarget, type LookupAll, pinnedLookup, targetHost } from './targets.js';

export const WEBHOOK_EVENT_TYPES = [
  'hqe.plateau', 'hqe.converged', 'hqe.failed',
  'space.updated', 'basis.changed', 'plateau', 'collapse', 'member.joined', 'member.left',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];
export const isWebhookEventType = (v: unknown): v is WebhookEventType => (WEBHOOK_EVENT_TYPES as readonly unknown[]).includes(v);

export interface WebhookTiming {
  /** Delay before the 2nd attempt; doubles per attempt. Default 10 s. */
  baseDelayMs: number;
  /** Largest delay between attempts. Default 1 h. */
  maxDelayMs: number;
  /** No attempt is scheduled later than this after the event; the row is then `failed`. Default 24 h. */
  maxAgeMs: number;
  /** How often the dispatcher looks for due rows (emit also wakes it). Default 1 s. */
  pollIntervalMs: number;
  /** Per-attempt HTTP timeout. Default 10 s. */
  timeoutMs: number;
  /** Attempts in flight at once. Default 8. */
  concurrency: number;
  /** Relative jitter: each delay is scaled by a uniform factor in [1 - jitter, 1 + jitter]. Default 0.1. */
  jitter: number;
  /** A claimed row is leased for timeoutMs + leaseGraceMs; after a crash it is retried when that ends. Default 5 s. */
  leaseGraceMs: number;
}

export const DEFAULT_WEBHOOK_TIMING: Readonly<WebhookTiming> = Object.freeze({
  baseDelayMs: 10_000,
  maxDelayMs: 3_600_000,
  maxAgeMs: 86_400_000,
  pollIntervalMs: 1_000,
  timeoutMs: 10_000,
  concurrency: 8,
  jitter: 0.1,
  leaseGraceMs: 5_000,
});

/** Structured logger; a pino logger fits. */
export interface WebhookLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const silentLogger: WebhookLogger = { debug() {}, info() {}, warn() {}, error() {} };

export interface WebhookServiceOptions {
  store: WebhookStore;
  /** Allow private, loopback and other non-public targets (tests, closed networks). */
  allowPrivate: boolean;
  timing?: Partial<WebhookTiming>;
  logger?: WebhookLogger;
  /** Host resolution of the target guard, whose answer each attempt connects to; default dns.lookup with all: true. */
  lookup?: LookupAll;
  /**
   * Target ports allowed when private targets are not (checked at registration and at every attempt);
   * undefined allows every port. The server passes RESONANCE_WEBHOOK_PORTS (default 80, 443, 8080, 8443).
   */
  ports?: readonly number[];
  userAgent?: string;
  /** The org's webhooks quota (registrations); absent: no cap. */
  quotas?: Pick<Quotas, 'checkCap'>;
  /** Default Math.random (jitter). */
  random?: () => number;
}

/** A webhook as the API shows it: never the secret. */
export interface WebhookView {
  id: string;
  url: string;
  events: WebhookEventType[];
  /** ISO 8601. */
  createdAt: string;
}

export interface RegisterInput {
  url: string;
  secret?: string | undefined;
  events: WebhookEventType[];
}

export interface EmitResult {
  eventId: string;
  /** Delivery ids, one per subscribed webhook (empty when none is). */
  deliveryIds: string[];
}

/** The JSON body POSTed to receivers. */
export interface WebhookEventPayload {
  id: string;
  type: WebhookEventType;
  createdAt: string;
  data: Record<string, unknown>;
}

export const WEBHOOK_USER_AGENT = 'Resonance-Webhooks/1.0';

const newId = (prefix: string): string => `${prefix}_${randomBytes(16).toString('hex')}`;

/** Delay after the `attempt`-th failed attempt (1-based): base * 2^(attempt-1), jittered, capped. */
export function retryDelayMs(attempt: number, timing: Pick<WebhookTiming, 'baseDelayMs' | 'maxDelayMs' | 'jitter'>, random: () => number = Math.random): number {
  const exp = Math.min(Math.max(attempt - 1, 0), 52);
  const raw = Math.min(timing.maxDelayMs, timing.baseDelayMs * 2 ** exp);
  const factor = 1 + timing.jitter * (2 * random() - 1);
  return Math.max(0, Math.round(Math.min(timing.maxDelayMs, raw * factor)));
}

function view(w: WebhookRecord): WebhookView {
  return { id: w.id, url: w.url, events: w.events.filter(isWebhookEventType), createdAt: new Date(w.createdAt).toISOString() };
}

function describeError(err: unknown, timeoutMs: number): string {
  if (err instanceof Error) {
    if (err.name === 'TimeoutError' || err.name === 'AbortError') return `timeout after ${timeoutMs} ms`;
    // node:http errors carry the errno code (ECONNREFUSED, ERR_TLS_CERT_ALTNAME_INVALID, …) beside the message.
    const ownCode = (err as Error & { code?: string }).code;
    if (ownCode && !err.message.includes(ownCode)) return `${err.message} (${ownCode})`;
    const cause = (err as Error & { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as Error & { code?: string }).code;
      return `${err.message}: ${code ? `${code} ` : ''}${cause.message}`.trim();
    }
    return err.message;
  }
  return String(err);
}

/** A target URL that is malformed, not public, or does not resolve (the HTTP layer makes it a 400). */
export class WebhookTargetError extends Error {
  constructor(readonly code: 'invalid_url' | 'webhook_target_forbidden' | 'webhook_target_unresolvable', message: string) {
    super(message);
  }
}

/** No such webhook, or another org's (indistinguishable by design). */
export class WebhookNotFoundError extends Error {
  constructor(readonly id: string) {
    super(`webhook ${id} does not exist`);
  }
}

export class WebhookService {
  readonly timing: Readonly<WebhookTiming>;
  private readonly store: WebhookStore;
  private readonly allowPrivate: boolean;
  private readonly log: WebhookLogger;
  private readonly lookup: LookupAll | undefined;
  private readonly ports: readonly number[] | undefined;
  private readonly userAgent: string;
  private readonly random: () => number;
  private readonly quotas: Pick<Quotas, 'checkCap'> | undefined;

  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private readonly inflight = new Set<Promise<void>>();

  constructor(opts: WebhookServiceOptions) {
    this.store = opts.store;
    this.allowPrivate = opts.allowPrivate;
    this.timing = Object.freeze({ ...DEFAULT_WEBHOOK_TIMING, ...opts.timing });
    this.log = opts.logger ?? silentLogger;
    this.lookup = opts.lookup;
    this.ports = opts.ports === undefined ? undefined : Object.freeze([...opts.ports]);
    this.userAgent = opts.userAgent ?? WEBHOOK_USER_AGENT;
    this.random = opts.random ?? Math.random;
    this.quotas = opts.quotas;
    if (!(this.timing.concurrency >= 1)) throw new Error('webhook concurrency must be at least 1');
  }

  // ---- registrations ----

  /**
   * Registers a webhook after the target guard (400 webhook_target_forbidden / webhook_target_unresolvable).
   * The result carries `secret` only when the server generated it: it is shown this once.
   */
  async register(orgId: string, input: RegisterInput): Promise<WebhookView & { secret?: string }> {
    const check = await checkTarget(input.url, { allowPrivate: this.allowPrivate, lookup: this.lookup, ports: this.ports });
    if (!check.ok) throw new WebhookTargetError(check.code, check.message);
    await this.quotas?.checkCap(orgId, 'webhooks', await this.store.countWebhooks(orgId));
    const generated = input.secret === undefined ? generateSecret() : undefined;
    const record: WebhookRecord = {
      id: newId('wh'),
      orgId,
      url: check.url.href,
      secret: input.secret ?? generated!,
      events: [...new Set(input.events)],
      createdAt: Date.now(),
    };
    await this.store.insertWebhook(record);
    this.log.info({ webhookId: record.id, orgId, events: record.events }, 'webhook registered');
    return generated === undefined ? view(record) : { ...view(record), secret: generated };
  }

  /** Oldest first; `nextAfter` is the keyset position of the next page, or null on the last page. */
  async list(orgId: string, opts: { after?: PageAfter | undefined; limit: number }): Promise<{ items: WebhookView[]; nextAfter: PageAfter | null }> {
    const rows = await this.store.listWebhooks(orgId, { ...(opts.after ? { after: opts.after } : {}), limit: opts.limit + 1 });
    const page = rows.slice(0, opts.limit);
    const last = page[page.length - 1];
    return { items: page.map(view), nextAfter: rows.length > opts.limit && last ? { createdAt: last.createdAt, id: last.id } : null };
  }

  /** 404 for unknown ids and for other orgs' webhooks alike. */
  async get(orgId: string, id: string): Promise<WebhookView> {
    const w = await this.store.getWebhook(orgId, id);
    if (!w) throw new WebhookNotFoundError(id);
    return view(w);
  }

  /** Deletes the webhook; its pending deliveries are cancelled. */
  async delete(orgId: string, id: string): Promise<void> {
    if (!(await this.store.deleteWebhook(orgId, id))) throw new WebhookNotFoundError(id);
    this.log.info({ webhookId: id, orgId }, 'webhook deleted');
  }

  /** Recent deliveries of one of the org's webhooks, newest first (operations and tests). */
  async deliveries(orgId: string, webhookId: string, limit = 50): Promise<DeliveryRecord[]> {
    await this.get(orgId, webhookId);
    return this.store.listDeliveries(webhookId, limit);
  }

  /** Deliveries waiting for a (first or further) attempt: the queue-depth gauge. */
  queueDepth(): Promise<number> {
    return this.store.countPending();
  }

  // ---- events ----

  /**
   * Queues an event for every webhook of `orgId` subscribed to `type`: the rows are durable when this
   * resolves. Delivery happens in the dispatcher; a running dispatcher is woken at once.
   */
  async emit(orgId: string, type: WebhookEventType, data: Record<string, unknown>): Promise<EmitResult> {
    if (!isWebhookEventType(type)) throw new Error(`unknown webhook event type ${String(type)}`);
    const createdAt = Date.now();
    const payload: WebhookEventPayload = { id: newId('evt'), type, createdAt: new Date(createdAt).toISOString(), data };
    const rows = await this.store.enqueueEvent(orgId, { id: payload.id, type, payload: JSON.stringify(payload), createdAt }, () => newId('whd'));
    if (rows.length > 0) {
      this.log.debug({ eventId: payload.id, type, orgId, deliveries: rows.length }, 'webhook event queued');
      this.wake();
    }
    return { eventId: payload.id, deliveryIds: rows.map((r) => r.id) };
  }

  // ---- dispatcher ----

  get isRunning(): boolean {
    return this.running;
  }

  /** Starts the dispatcher loop (idempotent). Pending rows from earlier processes are picked up too. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.log.info({ timing: this.timing }, 'webhook dispatcher started');
    this.schedule(0);
  }

  /** Stops claiming new rows and waits for the attempts in flight (each bounded by timeoutMs). */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.ticking) await this.ticking;
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    this.log.info({}, 'webhook dispatcher stopped');
  }

  /**
   * Claims what is due now (up to the free concurrency) and waits for those attempts; the number claimed.
   * The loop does the same on every poll; this is for one-shot use (scripts, tests) without `start`.
   */
  async runOnce(): Promise<number> {
    const started = await this.claimAndLaunch();
    await Promise.allSettled(started);
    return started.length;
  }

  private wake(): void {
    if (this.running) this.schedule(0);
  }

  private schedule(ms: number): void {
    if (!this.running) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.tick();
    }, ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (!this.running) return;
    if (this.ticking) {
      // A claim is under way; look again right after it.
      await this.ticking;
      this.schedule(0);
      return;
    }
    let claimed = 0;
    this.ticking = (async () => {
      try {
        claimed = (await this.claimAndLaunch()).length;
      } catch (err) {
        this.log.error({ err }, 'webhook dispatcher could not claim deliveries');
      }
    })();
    await this.ticking;
    this.ticking = null;
    // A full batch may mean more is due: look again as soon as a slot frees (attempt completion wakes us).
    const full = this.inflight.size >= this.timing.concurrency;
    this.schedule(claimed > 0 && !full ? 0 : this.timing.pollIntervalMs);
  }

  private async claimAndLaunch(): Promise<Array<Promise<void>>> {
    const free = this.timing.concurrency - this.inflight.size;
    if (free <= 0) return [];
    const now = Date.now();
    const rows = await this.store.claimDue(now, free, now + this.timing.timeoutMs + this.timing.leaseGraceMs);
    return rows.map((row) => {
      const p: Promise<void> = this.attempt(row).finally(() => {
        this.inflight.delete(p);
        this.wake();
      });
      this.inflight.add(p);
      return p;
    });
  }

  /**
   * POSTs `body` to `url` over a connection to one of `addresses` (pinned: the host name is not resolved
   * again), within timeoutMs; resolves with the status. Redirects are not followed; the response body is not
   * read. The Host header and TLS server name are the URL's, so virtual hosts and certificates work as usual.
   */
  private post(url: URL, addresses: readonly string[], headers: Record<string, string>, body: string): Promise<number> {
    const host = targetHost(url);
    const options: RequestOptions & { servername?: string } = {
      method: 'POST',
      hostname: host,
      port: url.port || undefined,
      path: `${url.pathname}${url.search}`,
      headers: { ...headers, Host: url.host, 'Content-Length': String(Buffer.byteLength(body)) },
      // A fresh connection per attempt: a pooled socket could outlive the check it was made under.
      agent: false,
      signal: AbortSignal.timeout(this.timing.timeoutMs),
    };
    // An IP literal is connected to as is; a name only ever to the addresses the guard vetted.
    if (!isIP(host)) {
      options.lookup = pinnedLookup(addresses);
      if (url.protocol === 'https:') options.servername = host;
    }
    return new Promise<number>((resolve, reject) => {
      const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(options, (res: IncomingMessage) => {
        resolve(res.statusCode ?? 0);
        res.destroy();
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  /** One attempt of one delivery; never throws. */
  private async attempt(d: ClaimedDelivery): Promise<void> {
    const started = Date.now();
    let error: string | null = null;
    let status: number | undefined;
    try {
      // Resolved and vetted now, and the request connects to exactly these addresses (no second lookup).
      const check = await checkTarget(d.url, { allowPrivate: this.allowPrivate, lookup: this.lookup, ports: this.ports, resolve: true });
      if (!check.ok) error = `${check.code}: ${check.message}`;
      else {
        const timestamp = Math.floor(Date.now() / 1000);
        status = await this.post(check.url, check.addresses, {
          'Content-Type': 'application/json',
          'User-Agent': this.userAgent,
          'X-RS-Event': d.eventType,
          'X-RS-Delivery': d.id,
          'X-RS-Timestamp': String(timestamp),
          'X-RS-Signature': sign(d.secret, timestamp, d.payload),
          'X-RS-Attempt': String(d.attempts),
        }, d.payload);
        if (status < 200 || status >= 300) {
          error = status >= 300 && status < 400 ? `HTTP ${status} (redirects are not followed)` : `HTTP ${status}`;
        }
      }
    } catch (err) {
      error = describeError(err, this.timing.timeoutMs);
    }

    const ctx = { deliveryId: d.id, webhookId: d.webhookId, eventId: d.eventId, attempt: d.attempts, status, ms: Date.now() - started };
    try {
      if (error === null) {
        await this.store.markDelivered(d.id, d.attempts, Date.now());
        this.log.info(ctx, 'webhook delivered');
        return;
      }
      const next = Date.now() + retryDelayMs(d.attempts, this.timing, this.random);
      if (next > d.createdAt + this.timing.maxAgeMs) {
        await this.store.markFailed(d.id, d.attempts, error);
        this.log.warn({ ...ctx, error }, 'webhook delivery failed for good');
      } else {
        await this.store.markRetry(d.id, d.attempts, next, error);
        this.log.info({ ...ctx, error, retryAt: new Date(next).toISOString() }, 'webhook attempt failed; will retry');
      }
    } catch (err) {
      // The row keeps its lease and is retried when the lease ends.
      this.log.error({ ...ctx, err }, 'webhook outcome could not be recorded');
    }
  }
}
