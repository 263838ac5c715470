/**
 * Credentials in Postgres: the AuthStore contract of ../auth.ts, with its hashing, prefixes, ids and scope
 * encoding (imported from there, so a key made by one store verifies in the other). Nodes starting
 * together with the same bootstrap key all end up with one org and one key: every creation is an
 * INSERT … ON CONFLICT DO NOTHING on a unique column, then a read of whichever row won.
 */
import type pg from 'pg';
import {
  type ApiKeyRecord,
  type AuthStore,
  CLIENT_COLUMNS,
  CLIENT_SECRET_PREFIX,
  type ClientRow,
  type CredentialRef,
  DISPLAY_PREFIX_LENGTH,
  encodeScopes,
  KEY_COLUMNS,
  KEY_PREFIX,
  type KeyRow,
  matchClient,
  type OAuthClientRecord,
  type Org,
  orgNameOf,
  type OrgRow,
  randomId,
  type Scope,
  secret,
  sha256,
  toClient,
  toKey,
  toOrg,
} from '../auth.js';
import { changes, one, type Queryable, query, tx } from './pool.js';

const now = (): number => Date.now();

/** Ties of created_at break by id in byte order, as in SQLite, whatever the database's collation. */
const KEY_ORDER = 'ORDER BY k.created_at, k.id COLLATE "C"';
const CLIENT_ORDER = 'ORDER BY c.created_at, c.id COLLATE "C"';

export class PgAuthStore implements AuthStore {
  constructor(private readonly pool: pg.Pool) {}

  private async ensureOrgOn(db: Queryable, name: string): Promise<Org> {
    const trimmed = orgNameOf(name);
    // A concurrent insert of the same name makes this one wait for it and then do nothing; the read
    // (a new snapshot under READ COMMITTED) sees the winner's row.
    await db.query('INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING', [randomId('org_'), trimmed, now()]);
    return toOrg((await one<OrgRow>(db, 'SELECT id, name, created_at FROM orgs WHERE name = $1', [trimmed]))!);
  }

  private async keyByHash(db: Queryable, hash: string): Promise<ApiKeyRecord | null> {
    const row = await one<KeyRow>(db, `SELECT ${KEY_COLUMNS} FROM api_keys k JOIN orgs o ON o.id = k.org_id WHERE k.hash = $1`, [hash]);
    return row ? toKey(row) : null;
  }

  private insertKey(orgName: string, key: string, scopes: Scope[]): Promise<ApiKeyRecord> {
    return tx(this.pool, async (c) => {
      const org = await this.ensureOrgOn(c, orgName);
      const hash = sha256(key);
      await c.query('INSERT INTO api_keys (id, org_id, hash, prefix, scopes, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hash) DO NOTHING', [
        randomId('key_'),
        org.id,
        hash,
        key.slice(0, DISPLAY_PREFIX_LENGTH),
        encodeScopes(scopes),
        now(),
      ]);
      return (await this.keyByHash(c, hash))!;
    });
  }

  ensureOrg(name: string): Promise<Org> {
    return this.ensureOrgOn(this.pool, name);
  }

  async findOrg(name: string): Promise<Org | null> {
    const row = await one<OrgRow>(this.pool, 'SELECT id, name, created_at FROM orgs WHERE name = $1', [name.trim()]);
    return row ? toOrg(row) : null;
  }

  async createApiKey(orgName: string, scopes: Scope[]): Promise<{ record: ApiKeyRecord; key: string }> {
    const key = secret(KEY_PREFIX);
    return { record: await this.insertKey(orgName, key, scopes), key };
  }

  async ensureApiKey(orgName: string, key: string, scopes: Scope[]): Promise<ApiKeyRecord> {
    // A stored key (revoked or not) and its org are left alone; otherwise the insert is race-free by the
    // unique hash: of several nodes starting at once, one inserts and the others read its row.
    return (await this.keyByHash(this.pool, sha256(key))) ?? this.insertKey(orgName, key, scopes);
  }

  async listApiKeys(orgName: string): Promise<ApiKeyRecord[]> {
    const rows = await query<KeyRow>(
      this.pool,
      `SELECT ${KEY_COLUMNS} FROM api_keys k JOIN orgs o ON o.id = k.org_id WHERE o.name = $1 ${KEY_ORDER}`,
      [orgName.trim()],
    );
    return rows.map(toKey);
  }

  async revokeApiKey(id: string): Promise<boolean> {
    // One statement: matches any existing key, and keeps the first revocation time.
    return (await changes(this.pool, 'UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2', [now(), id])) > 0;
  }

  async verifyApiKey(key: string): Promise<ApiKeyRecord | null> {
    const record = await this.keyByHash(this.pool, sha256(key));
    return record && record.revokedAt === null ? record : null;
  }

  async createClient(orgName: string, scopes: Scope[]): Promise<{ record: OAuthClientRecord; secret: string }> {
    const clientSecret = secret(CLIENT_SECRET_PREFIX);
    const row = await tx(this.pool, async (c) => {
      const org = await this.ensureOrgOn(c, orgName);
      const id = randomId('rc_');
      await c.query('INSERT INTO oauth_clients (id, org_id, secret_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5)', [
        id,
        org.id,
        sha256(clientSecret),
        encodeScopes(scopes),
        now(),
      ]);
      return (await this.clientById(c, id))!;
    });
    return { record: toClient(row), secret: clientSecret };
  }

  private clientById(db: Queryable, id: string): Promise<ClientRow | null> {
    return one<ClientRow>(db, `SELECT ${CLIENT_COLUMNS} FROM oauth_clients c JOIN orgs o ON o.id = c.org_id WHERE c.id = $1`, [id]);
  }

  async listClients(orgName: string): Promise<OAuthClientRecord[]> {
    const rows = await query<ClientRow>(
      this.pool,
      `SELECT ${CLIENT_COLUMNS} FROM oauth_clients c JOIN orgs o ON o.id = c.org_id WHERE o.name = $1 ${CLIENT_ORDER}`,
      [orgName.trim()],
    );
    return rows.map(toClient);
  }

  async revokeClient(id: string): Promise<boolean> {
    return (await changes(this.pool, 'UPDATE oauth_clients SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2', [now(), id])) > 0;
  }

  async verifyClient(clientId: string, clientSecret: string): Promise<OAuthClientRecord | null> {
    return matchClient(await this.clientById(this.pool, clientId), clientSecret);
  }

  async isActive(credential: CredentialRef): Promise<boolean> {
    const table = credential.kind === 'api_key' ? 'api_keys' : 'oauth_clients';
    const row = await one<{ revoked_at: number | null }>(this.pool, `SELECT revoked_at FROM ${table} WHERE id = $1`, [credential.id]);
    return row !== null && row.revoked_at === null;
  }
}
