/**
 * The broker of a cluster node, on Redis (`ioredis`): pub/sub for the fan-out between nodes, a sorted set
 * per member for presence. Every key and channel starts with the deployment's prefix (RESONANCE_REDIS_PREFIX),
 * so that several deployments (or test runs) share one Redis without meeting.
 *
 * Redis going away is not fatal: ioredis reconnects (and resubscribes) by itself; meanwhile commands fail at
 * once (no offline queue) so that callers answer 503 instead of waiting, and health() reports it.
 */
import { Redis } from 'ioredis';
import type { Broker, BrokerHealth, Presence, Unsubscribe } from './broker.js';
import { RedisWindows } from './redis-windows.js';

export interface RedisBrokerOptions {
  url: string;
  nodeId: string;
  prefix: string;
  /** A node's presence entries outlive it by at most this (they are renewed at a third of it). */
  presenceTtlMs?: number;
  onError?: (err: Error) => void;
}

/** Separates the publishing node's id from the payload in a pub/sub message (node ids never contain it). */
const SEP = '\n';

const connect = (options: RedisBrokerOptions, name: string): Redis =>
  new Redis(options.url, {
    connectionName: `resonance:${options.nodeId}:${name}`,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // Reconnect forever, backing off to one attempt a second.
    retryStrategy: (times) => Math.min(50 * times, 1000),
  });

class RedisPresence implements Presence {
  /** This node's entries: ZSET key -> members (an entry per open connection), renewed together. */
  private readonly mine = new Map<string, Set<string>>();
  private seq = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly nodeId: string,
    private readonly prefix: string,
    private readonly ttlMs: number,
    private readonly onError: (err: Error) => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.renew().catch(this.onError), this.ttlMs / 3);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private key(spaceId: string, memberId: string): string {
    return `${this.prefix}presence:${spaceId}:${memberId}`;
  }

  async enter(spaceId: string, memberId: string): Promise<() => Promise<void>> {
    const key = this.key(spaceId, memberId);
    const entry = `${this.nodeId}#${++this.seq}`;
    let set = this.mine.get(key);
    if (!set) this.mine.set(key, (set = new Set()));
    set.add(entry);
    await this.redis.multi().zadd(key, Date.now() + this.ttlMs, entry).pexpire(key, 2 * this.ttlMs).exec();
    let left = false;
    return async () => {
      if (left) return;
      left = true;
      const s = this.mine.get(key);
      s?.delete(entry);
      if (s?.size === 0) this.mine.delete(key);
      await this.redis.zrem(key, entry);
    };
  }

  async has(spaceId: string, memberId: string): Promise<boolean> {
    // Entries of a node that died stop counting when their time is up, even before the key expires.
    return (await this.redis.zcount(this.key(spaceId, memberId), Date.now(), '+inf')) > 0;
  }

  private async renew(): Promise<void> {
    if (this.mine.size === 0) return;
    const until = Date.now() + this.ttlMs;
    const m = this.redis.multi();
    for (const [key, entries] of this.mine) {
      for (const e of entries) m.zadd(key, until, e);
      m.pexpire(key, 2 * this.ttlMs);
    }
    await m.exec();
  }
}

export class RedisBroker implements Broker {
  readonly nodeId: string;
  readonly presence: RedisPresence;
  readonly windows: RedisWindows;
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly handlers = new Map<string, Set<(payload: string) => void>>();

  private constructor(private readonly options: RedisBrokerOptions) {
    if (options.nodeId.includes(SEP)) throw new Error('a node id cannot contain a newline');
    this.nodeId = options.nodeId;
    this.cmd = connect(options, 'cmd');
    this.sub = connect(options, 'sub');
    const onError = options.onError ?? (() => undefined);
    // Without listeners ioredis logs connection errors itself; they are reported once per outage upstream.
    this.cmd.on('error', onError);
    this.sub.on('error', onError);
    this.sub.on('message', (channel: string, message: string) => this.dispatch(channel, message));
    this.presence = new RedisPresence(this.cmd, this.nodeId, options.prefix, options.presenceTtlMs ?? 15_000, onError);
    this.windows = new RedisWindows(this.cmd, options.prefix);
  }

  static async open(options: RedisBrokerOptions): Promise<RedisBroker> {
    const broker = new RedisBroker(options);
    try {
      await Promise.all([broker.cmd.connect(), broker.sub.connect()]);
    } catch (err) {
      broker.cmd.disconnect();
      broker.sub.disconnect();
      throw err;
    }
    broker.presence.start();
    return broker;
  }

  async publish(channel: string, payload: string): Promise<void> {
    await this.cmd.publish(this.options.prefix + channel, this.nodeId + SEP + payload);
  }

  async subscribe(channel: string, handler: (payload: string) => void): Promise<Unsubscribe> {
    const name = this.options.prefix + channel;
    let set = this.handlers.get(name);
    if (!set) {
      // Registered once Redis confirmed: a failed SUBSCRIBE leaves nothing behind that later calls would trust.
      await this.sub.subscribe(name);
      set = this.handlers.get(name) ?? new Set();
      this.handlers.set(name, set);
    }
    set.add(handler);
    let done = false;
    return async () => {
      if (done) return;
      done = true;
      const s = this.handlers.get(name);
      if (!s?.delete(handler) || s.size > 0) return;
      this.handlers.delete(name);
      await this.sub.unsubscribe(name).catch(() => undefined);
    };
  }

  private dispatch(channel: string, message: string): void {
    const at = message.indexOf(SEP);
    // Our own publications come back to us: local listeners were fed directly.
    if (at < 0 || message.slice(0, at) === this.nodeId) return;
    const payload = message.slice(at + 1);
    for (const h of this.handlers.get(channel) ?? []) h(payload);
  }

  health(): BrokerHealth {
    return { kind: 'redis', ok: this.cmd.status === 'ready' && this.sub.status === 'ready' };
  }

  async close(): Promise<void> {
    this.presence.stop();
    await Promise.allSettled([this.cmd.quit(), this.sub.quit()]);
  }
}
