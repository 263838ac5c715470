/**
 * Credentials found on recent requests. Without it every request pays a store query for its credential (an
 * API key by its SHA-256, or a token's credential by id); with it, a busy credential costs one SHA-256 (API
 * keys) and a map lookup.
 *
 * Revocation is written by other processes (the CLI, other nodes of a cluster), which this cache cannot hear:
 * an entry is trusted for at most `ttlMs` from the moment its store query started, so a credential revoked
 * anywhere is refused by every node within that time (RESONANCE_AUTH_CACHE_MS, default 1 s; docs/tenancy.md).
 * A revocation this process sees (CredentialWatch) drops the credential's entries at once.
 *
 * What is kept is bounded: only credentials the store found active (an unknown or revoked key, or a token
 * whose credential is gone, is asked of the store every time and costs no memory), at most `maxEntries` of
 * them, least recently used first out (put()). API keys are keyed by their SHA-256, never by the secret itself.
 */
import { hash } from 'node:crypto';
import type { ApiKeyRecord, AuthStore, CredentialRef } from '../store/auth.js';

/** What authenticate() asks of the store on every request. */
export type CredentialLookups = Pick<AuthStore, 'verifyApiKey' | 'isActive'>;

export const DEFAULT_AUTH_CACHE_MS = 1000;
/** Far more credentials than one node serves within a second; each entry is a few hundred bytes. */
export const DEFAULT_AUTH_CACHE_ENTRIES = 4096;

export interface CredentialCacheOptions {
  /** How long a store answer is trusted (ms); 0 asks the store on every request. */
  ttlMs?: number;
  maxEntries?: number;
  /** Monotonic milliseconds. */
  clock?: () => number;
}

interface Entry {
  /** The API key or OAuth client the entry speaks for (what invalidate() is given). */
  credentialId: string;
  /** The key's record, for an API key's entry; null for a token credential's (it is active). */
  record: ApiKeyRecord | null;
  expiresAt: number;
}

export class CredentialCache implements CredentialLookups {
  private readonly entries = new Map<string, Entry>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly clock: () => number;
  /** Bumped by every invalidation: a store answer that started before it is not kept (it may predate the revocation). */
  private generation = 0;

  constructor(
    private readonly store: CredentialLookups,
    options: CredentialCacheOptions = {},
  ) {
    this.ttlMs = Math.max(0, options.ttlMs ?? DEFAULT_AUTH_CACHE_MS);
    this.maxEntries = Math.max(1, options.maxEntries ?? DEFAULT_AUTH_CACHE_ENTRIES);
    this.clock = options.clock ?? (() => performance.now());
  }

  /** Entries held now (expired ones included until they are met or pushed out). */
  get size(): number {
    return this.entries.size;
  }

  async verifyApiKey(key: string): Promise<ApiKeyRecord | null> {
    if (this.ttlMs === 0) return this.store.verifyApiKey(key);
    // The hash alone: base64 never holds the NUL that separates a token credential's kind from its id.
    const id = hash('sha256', key, 'base64');
    const hit = this.fresh(id);
    if (hit) return hit.record;
    const generation = this.generation;
    const asked = this.clock();
    const record = await this.store.verifyApiKey(key);
    if (record && generation === this.generation) this.put(id, { credentialId: record.id, record: Object.freeze(record), expiresAt: asked + this.ttlMs });
    return record;
  }

  async isActive(credential: CredentialRef): Promise<boolean> {
    if (this.ttlMs === 0) return this.store.isActive(credential);
    const id = `${credential.kind}\u0000${credential.id}`;
    if (this.fresh(id)) return true;
    const generation = this.generation;
    const asked = this.clock();
    const active = await this.store.isActive(credential);
    if (active && generation === this.generation) this.put(id, { credentialId: credential.id, record: null, expiresAt: asked + this.ttlMs });
    return active;
  }

  /** Forgets every entry of this API key or OAuth client: the next request asks the store. */
  invalidate(credentialId: string): void {
    this.generation++;
    // Revocations are rare and the map is bounded: a scan costs less than a second index kept on every insert.
    for (const [id, entry] of this.entries) if (entry.credentialId === credentialId) this.entries.delete(id);
  }

  clear(): void {
    this.generation++;
    this.entries.clear();
  }

  private fresh(id: string): Entry | undefined {
    const entry = this.entries.get(id);
    if (!entry || entry.expiresAt > this.clock()) return entry;
    this.entries.delete(id);
    return undefined;
  }

  /**
   * Map order is the order of the store's answers, and put() evicts the oldest. A credential in use is
   * asked again every ttlMs, so this is least-recently-used at that granularity, without reordering the
   * map on every hit.
   */
  private put(id: string, entry: Entry): void {
    this.entries.delete(id);
    this.entries.set(id, entry);
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
  }
}
