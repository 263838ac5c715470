/**
 * Credentials repository: orgs, API keys and OAuth2 clients.
 *
 * Secrets never reach the database. API keys and client secrets are 32 random bytes (256 bits) and are
 * stored as their SHA-256. A slow password hash (scrypt, argon2) exists to make guessing a *low-entropy*
 * secret expensive; a 256-bit random secret cannot be guessed at any speed, so SHA-256 gives the same
 * protection against a stolen database while keeping every authenticated request and every /oauth/token
 * call cheap (scrypt at useful cost is tens of ms and MiBs per call: a denial-of-service lever on an
 * unauthenticated endpoint). API keys are found by hash (unique index); client secrets are compared in
 * constant time after the client is found by id.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { now, type Db, stmt, write } from './db.js';

/** OAuth2 scopes of the API (README, "The HTTP service"). */
export type Scope = 'hqe.read' | 'hqe.write' | 'spaces.read' | 'spaces.write';
export const ALL_SCOPES: Scope[] = ['hqe.read', 'hqe.write', 'spaces.read', 'spaces.write'];

export interface Org {
  id: string;
  name: string;
  createdAt: number;
}

export interface ApiKeyRecord {
  id: string;
  orgId: string;
  orgName: string;
  /** The first characters of the key: enough to recognise it in a list, useless to an attacker. */
  prefix: string;
  scopes: Scope[];
  createdAt: number;
  revokedAt: number | null;
}

export interface OAuthClientRecord {
  id: string;
  orgId: string;
  orgName: string;
  scopes: Scope[];
  createdAt: number;
  revokedAt: number | null;
}

/** The stored credentials a request (or a session token, through its minter) stands on. */
export type CredentialKind = 'api_key' | 'oauth_client';
export interface CredentialRef {
  kind: CredentialKind;
  id: string;
}

export interface AuthStore {
  /** The org with this name, created on first use. */
  ensureOrg(name: string): Promise<Org>;
  findOrg(name: string): Promise<Org | null>;
  /** A new API key; `key` is the only copy of the secret (show it once). */
  createApiKey(orgName: string, scopes: Scope[]): Promise<{ record: ApiKeyRecord; key: string }>;
  /**
   * Registers a caller-chosen key (the RESONANCE_BOOTSTRAP_KEY dev key) unless its hash is already stored;
   * idempotent across restarts. A key that was revoked stays revoked: revocation is an operator's decision.
   */
  ensureApiKey(orgName: string, key: string, scopes: Scope[]): Promise<ApiKeyRecord>;
  listApiKeys(orgName: string): Promise<ApiKeyRecord[]>;
  /** False when no key has this id; revoking twice keeps the first revocation time. */
  revokeApiKey(id: string): Promise<boolean>;
  /** The active (not revoked) key with this secret, or null. */
  verifyApiKey(key: string): Promise<ApiKeyRecord | null>;
  createClient(orgName: string, scopes: Scope[]): Promise<{ record: OAuthClientRecord; secret: string }>;
  listClients(orgName: string): Promise<OAuthClientRecord[]>;
  /** False when no client has this id; revoking twice keeps the first revocation time. */
  revokeClient(id: string): Promise<boolean>;
  /** The active client when id and secret match, else null (the caller cannot tell which was wrong). */
  verifyClient(clientId: string, secret: string): Promise<OAuthClientRecord | null>;
  /**
   * True while the API key or OAuth client exists and is not revoked: one point query by id, made on every
   * request that carries an access token or a session token (revocation is written by another process).
   */
  isActive(credential: CredentialRef): Promise<boolean>;
}

// What follows up to SqliteAuthStore is shared by every AuthStore (the Postgres one too), so that keys,
// ids and scopes are written the same way whichever store holds them.

/** Recognisable prefixes let secret scanners (and people) tell a Resonance key from a client secret. */
export const KEY_PREFIX = 'rsk_';
export const CLIENT_SECRET_PREFIX = 'rcs_';
/** Shown in listings: "rsk_" plus 8 characters (48 bits of the key's 256: not enough to help a guesser). */
export const DISPLAY_PREFIX_LENGTH = 12;

export const randomId = (prefix: string): string => prefix + randomBytes(12).toString('base64url');
export const secret = (prefix: string): string => prefix + randomBytes(32).toString('base64url');
export const sha256 = (value: string): string => createHash('sha256').update(value, 'utf8').digest('hex');

/** An org name as stored: trimmed, never empty. */
export function orgNameOf(name: string): string {
  const trimmed = name.trim();
  if (!trimmed) throw new Error('org name must not be empty');
  return trimmed;
}

/** Scopes are stored space-separated (the OAuth wire form); unknown names are dropped, never trusted. */
export const encodeScopes = (scopes: Scope[]): string => [...new Set(scopes)].join(' ');
export const parseScopes = (value: string): Scope[] =>
  value.split(/[\s,]+/).filter((s): s is Scope => (ALL_SCOPES as string[]).includes(s));

export interface OrgRow {
  id: string;
  name: string;
  created_at: number;
}
export interface KeyRow {
  id: string;
  org_id: string;
  org_name: string;
  prefix: string;
  scopes: string;
  created_at: number;
  revoked_at: number | null;
}
export interface ClientRow {
  id: string;
  org_id: string;
  org_name: string;
  secret_hash: string;
  scopes: string;
  created_at: number;
  revoked_at: number | null;
}

export const toOrg = (r: OrgRow): Org => ({ id: r.id, name: r.name, createdAt: r.created_at });
export const toKey = (r: KeyRow): ApiKeyRecord => ({
  id: r.id,
  orgId: r.org_id,
  orgName: r.org_name,
  prefix: r.prefix,
  scopes: parseScopes(r.scopes),
  createdAt: r.created_at,
  revokedAt: r.revoked_at,
});
export const toClient = (r: ClientRow): OAuthClientRecord => ({
  id: r.id,
  orgId: r.org_id,
  orgName: r.org_name,
  scopes: parseScopes(r.scopes),
  createdAt: r.created_at,
  revokedAt: r.revoked_at,
});

export const KEY_COLUMNS = 'k.id, k.org_id, o.name AS org_name, k.prefix, k.scopes, k.created_at, k.revoked_at';
export const CLIENT_COLUMNS = 'c.id, c.org_id, o.name AS org_name, c.secret_hash, c.scopes, c.created_at, c.revoked_at';

/**
 * The active client of `row` when `clientSecret` is its secret, else null. Hashes and compares even when
 * no client was found (row null), so an unknown id and a wrong secret cost the same.
 */
export function matchClient(row: ClientRow | null, clientSecret: string): OAuthClientRecord | null {
  const given = Buffer.from(sha256(clientSecret), 'hex');
  const stored = Buffer.from(row?.secret_hash ?? sha256(''), 'hex');
  const match = given.length === stored.length && timingSafeEqual(given, stored);
  return row && match && row.revoked_at === null ? toClient(row) : null;
}

/** AuthStore over the embedded SQLite file. better-sqlite3 is synchronous; the async surface is the contract. */
export class SqliteAuthStore implements AuthStore {
  constructor(private readonly db: Db) {}

  private ensureOrgSync(name: string): Org {
    const trimmed = orgNameOf(name);
    // INSERT OR IGNORE + SELECT is race-free across processes (the CLI and the server share the file).
    stmt(this.db, 'INSERT OR IGNORE INTO orgs (id, name, created_at) VALUES (?, ?, ?)').run(randomId('org_'), trimmed, now());
    return toOrg(stmt(this.db, 'SELECT id, name, created_at FROM orgs WHERE name = ?').get(trimmed) as OrgRow);
  }

  private keyByHash(hash: string): ApiKeyRecord | null {
    const row = stmt(this.db, `SELECT ${KEY_COLUMNS} FROM api_keys k JOIN orgs o ON o.id = k.org_id WHERE k.hash = ?`).get(hash) as
      | KeyRow
      | undefined;
    return row ? toKey(row) : null;
  }

  private insertKey(orgName: string, key: string, scopes: Scope[]): ApiKeyRecord {
    const org = this.ensureOrgSync(orgName);
    const id = randomId('key_');
    const hash = sha256(key);
    stmt(this.db, 'INSERT OR IGNORE INTO api_keys (id, org_id, hash, prefix, scopes, created_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(id, org.id, hash, key.slice(0, DISPLAY_PREFIX_LENGTH), encodeScopes(scopes), now());
    return this.keyByHash(hash)!;
  }

  async ensureOrg(name: string): Promise<Org> {
    return write(this.db, () => this.ensureOrgSync(name));
  }

  async findOrg(name: string): Promise<Org | null> {
    const row = stmt(this.db, 'SELECT id, name, created_at FROM orgs WHERE name = ?').get(name.trim()) as OrgRow | undefined;
    return row ? toOrg(row) : null;
  }

  async createApiKey(orgName: string, scopes: Scope[]): Promise<{ record: ApiKeyRecord; key: string }> {
    const key = secret(KEY_PREFIX);
    return { record: await write(this.db, () => this.insertKey(orgName, key, scopes)), key };
  }

  async ensureApiKey(orgName: string, key: string, scopes: Scope[]): Promise<ApiKeyRecord> {
    // The hash is unique: a second start finds the first start's row and leaves it (and its org) alone.
    return write(this.db, () => this.keyByHash(sha256(key)) ?? this.insertKey(orgName, key, scopes));
  }

  async listApiKeys(orgName: string): Promise<ApiKeyRecord[]> {
    const rows = stmt(this.db, `SELECT ${KEY_COLUMNS} FROM api_keys k JOIN orgs o ON o.id = k.org_id WHERE o.name = ? ORDER BY k.created_at, k.id`)
      .all(orgName.trim()) as KeyRow[];
    return rows.map(toKey);
  }

  async revokeApiKey(id: string): Promise<boolean> {
    return write(this.db, () => {
      const found = stmt(this.db, 'SELECT 1 FROM api_keys WHERE id = ?').get(id) !== undefined;
      if (found) stmt(this.db, 'UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now(), id);
      return found;
    });
  }

  async verifyApiKey(key: string): Promise<ApiKeyRecord | null> {
    // Looking up by hash leaks nothing useful through timing: an attacker learns about SHA-256 outputs of
    // their own guesses, not about the stored keys.
    const record = this.keyByHash(sha256(key));
    return record && record.revokedAt === null ? record : null;
  }

  async createClient(orgName: string, scopes: Scope[]): Promise<{ record: OAuthClientRecord; secret: string }> {
    const clientSecret = secret(CLIENT_SECRET_PREFIX);
    const record = await write(this.db, () => {
      const org = this.ensureOrgSync(orgName);
      const id = randomId('rc_');
      stmt(this.db, 'INSERT INTO oauth_clients (id, org_id, secret_hash, scopes, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(id, org.id, sha256(clientSecret), encodeScopes(scopes), now());
      return this.clientById(id)!;
    });
    return { record: toClient(record), secret: clientSecret };
  }

  private clientById(id: string): ClientRow | null {
    const row = stmt(this.db, `SELECT ${CLIENT_COLUMNS} FROM oauth_clients c JOIN orgs o ON o.id = c.org_id WHERE c.id = ?`).get(id) as
      | ClientRow
      | undefined;
    return row ?? null;
  }

  async listClients(orgName: string): Promise<OAuthClientRecord[]> {
    const rows = stmt(this.db, `SELECT ${CLIENT_COLUMNS} FROM oauth_clients c JOIN orgs o ON o.id = c.org_id WHERE o.name = ? ORDER BY c.created_at, c.id`)
      .all(orgName.trim()) as ClientRow[];
    return rows.map(toClient);
  }

  async verifyClient(clientId: string, clientSecret: string): Promise<OAuthClientRecord | null> {
    return matchClient(this.clientById(clientId), clientSecret);
  }

  async revokeClient(id: string): Promise<boolean> {
    return write(this.db, () => {
      const found = stmt(this.db, 'SELECT 1 FROM oauth_clients WHERE id = ?').get(id) !== undefined;
      if (found) stmt(this.db, 'UPDATE oauth_clients SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now(), id);
      return found;
    });
  }

  async isActive(credential: CredentialRef): Promise<boolean> {
    const table = credential.kind === 'api_key' ? 'api_keys' : 'oauth_clients';
    const row = stmt(this.db, `SELECT revoked_at FROM ${table} WHERE id = ?`).get(credential.id) as { revoked_at: number | null } | undefined;
    return row !== undefined && row.revoked_at === null;
  }
}
