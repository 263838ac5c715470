/**
 * Revocation of open connections. A WebSocket or SSE stream is authenticated once, when it opens; a
 * credential revoked afterwards (`resonance keys revoke` / `clients revoke`, written by another process
 * into the same SQLite file) or a space member removed must still end it. CredentialWatch keeps, per
 * credential, the callbacks of the connections standing on it, and once a second asks the store about each
 * watched credential (a point query by id each: no scan, however many keys exist) and runs the callbacks of
 * those revoked. New requests do not wait for the sweep: authenticate checks the credential on every request,
 * through the CredentialCache, which trusts an answer for at most RESONANCE_AUTH_CACHE_MS (default 1 s). A
 * revocation seen here (by the sweep, or revoked() when this process revoked) also drops the credential
 * from that cache at once. In a cluster, whoever revokes (the CLI) also announces it on the broker
 * (announceRevocation); every node that hears it (followRevocations) acts at once, so the cache's second is
 * the bound only while Redis is away.
 */
import { z } from 'zod';
import type { Broker, Unsubscribe } from '../cluster/broker.js';
import type { AuthStore, CredentialRef } from '../store/auth.js';
import type { CredentialCache } from './credential-cache.js';
import type { Principal } from './types.js';

/** What can be revoked under an open connection: the API key or OAuth client, or a session token's member. */
export type Watched = CredentialRef | { kind: 'member'; spaceId: string; memberId: string };

export interface CredentialWatchDeps {
  /** The store itself, never a cache: the sweep is how a revocation written elsewhere is seen. */
  authStore: Pick<AuthStore, 'isActive'>;
  /** Forgets a revoked credential at once (the authentication path's CredentialCache). */
  cache?: Pick<CredentialCache, 'invalidate'>;
  /** True once the member was removed from the space (its session token is refused from then on). */
  memberRemoved: (spaceId: string, memberId: string) => Promise<boolean>;
  /** Sweep period; default REVOCATION_SWEEP_MS. */
  intervalMs?: number;
  onError?: (err: unknown) => void;
}

/** How often open connections are checked against revocations: the most a revoked stream lives on. */
export const REVOCATION_SWEEP_MS = 1000;

/** The broker channel of revocations: a CredentialRef as JSON, published by whoever revoked. */
export const REVOCATIONS_CHANNEL = 'credentials:revoked';

const RevokedMessage = z.object({ kind: z.enum(['api_key', 'oauth_client']), id: z.string().min(1).max(256) });

/** Tells every node that `credential` was revoked (its store write is done). */
export function announceRevocation(broker: Pick<Broker, 'publish'>, credential: CredentialRef): Promise<void> {
  return broker.publish(REVOCATIONS_CHANNEL, JSON.stringify({ kind: credential.kind, id: credential.id }));
}

const keyOf = (w: Watched): string => (w.kind === 'member' ? `member\u0000${w.spaceId}\u0000${w.memberId}` : `${w.kind}\u0000${w.id}`);

export class CredentialWatch {
  private readonly watched = new Map<string, { target: Watched; callbacks: Set<() => void> }>();
  private timer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;

  constructor(private readonly deps: CredentialWatchDeps) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.sweep(), this.deps.intervalMs ?? REVOCATION_SWEEP_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.sweeping;
  }

  /** Credentials being watched now (for tests and metrics). */
  get size(): number {
    return this.watched.size;
  }

  /** Calls `onRevoked` once when `target` is revoked; the returned function stops watching. */
  watch(target: Watched, onRevoked: () => void): () => void {
    const key = keyOf(target);
    let entry = this.watched.get(key);
    if (!entry) this.watched.set(key, (entry = { target, callbacks: new Set() }));
    // A wrapper per call: the same function watched twice must be unwatched twice.
    const callback = (): void => onRevoked();
    entry.callbacks.add(callback);
    return () => {
      const current = this.watched.get(key);
      if (!current) return;
      current.callbacks.delete(callback);
      if (current.callbacks.size === 0) this.watched.delete(key);
    };
  }

  /** Everything a principal's connection stands on: its credential (the minter's, for a session token) and its member. */
  watchPrincipal(principal: Principal, onRevoked: () => void): () => void {
    let fired = false;
    const once = (): void => {
      if (fired) return;
      fired = true;
      onRevoked();
    };
    const unwatch: Array<() => void> = [];
    if (principal.credential) unwatch.push(this.watch(principal.credential, once));
    if (principal.session) unwatch.push(this.watch({ kind: 'member', spaceId: principal.session.spaceId, memberId: principal.session.memberId }, once));
    return () => {
      for (const fn of unwatch) fn();
    };
  }

  /**
   * This process revoked `credential` (its store write is done): new requests are refused from now on and
   * the connections standing on it end now, not at the next sweep.
   */
  revoked(credential: CredentialRef): void {
    this.deps.cache?.invalidate(credential.id);
    const entry = this.watched.get(keyOf(credential));
    if (!entry) return;
    this.watched.delete(keyOf(credential));
    this.fire(entry.callbacks);
  }

  /** Acts on the revocations other processes announce on the broker, as on one made here. */
  follow(broker: Pick<Broker, 'subscribe'>): Promise<Unsubscribe> {
    return broker.subscribe(REVOCATIONS_CHANNEL, (payload) => {
      let message: unknown;
      try {
        message = JSON.parse(payload);
      } catch {
        return;
      }
      const parsed = RevokedMessage.safeParse(message);
      if (parsed.success) this.revoked(parsed.data);
    });
  }

  /** One pass over the watched credentials; runs the callbacks of the revoked ones (one pass at a time). */
  sweep(): Promise<void> {
    // Cleared by .finally, which runs after the assignment even when the pass finishes synchronously.
    this.sweeping ??= this.pass().finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  private async pass(): Promise<void> {
    for (const [key, entry] of [...this.watched]) {
      let revoked: boolean;
      try {
        revoked = await this.isRevoked(entry.target);
      } catch (err) {
        this.deps.onError?.(err);
        continue;
      }
      if (!revoked) continue;
      if (entry.target.kind !== 'member') this.deps.cache?.invalidate(entry.target.id);
      if (this.watched.get(key) !== entry) continue;
      this.watched.delete(key);
      this.fire(entry.callbacks);
    }
  }

  private fire(callbacks: Iterable<() => void>): void {
    for (const callback of callbacks) {
      try {
        callback();
      } catch (err) {
        this.deps.onError?.(err);
      }
    }
  }

  /** One point query: true when the credential is revoked or gone, or the member removed. */
  async isRevoked(target: Watched): Promise<boolean> {
    if (target.kind === 'member') return this.deps.memberRemoved(target.spaceId, target.memberId);
    return !(await this.deps.authStore.isActive(target));
  }
}
