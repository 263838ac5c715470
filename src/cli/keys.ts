/**
 * `resonance keys` and `resonance clients`: manage API keys and OAuth2 clients in the data directory's
 * SQLite file, or the cluster's Postgres (the server may be running: SQLite's WAL lets both use the file).
 * Secrets are printed once, at creation, and stored only as hashes. A running server refuses a revoked key
 * or client within about a second, new requests and open WebSockets and SSE streams alike
 * (src/http/revocations.ts); with RESONANCE_REDIS_URL set the revocation is also announced to every node,
 * which then acts at once.
 */
import { hostname } from 'node:os';
import { RedisBroker } from '../cluster/redis-broker.js';
import { configFromEnv } from '../http/config.js';
import { announceRevocation } from '../http/revocations.js';
import type { ApiKeyRecord, AuthStore, CredentialRef, OAuthClientRecord } from '../store/auth.js';
import { openCliStore } from './store.js';
import { ALL_SCOPES, type Scope } from '../http/types.js';
import { exitCodeFor, parseCommand, unknownAction, UsageError } from './args.js';

export const KEYS_USAGE = `usage:
  resonance keys create --org NAME [--scopes hqe.read,hqe.write] [--data DIR] [--json]
  resonance keys list --org NAME [--data DIR] [--json]
  resonance keys revoke ID [--data DIR]`;

export const CLIENTS_USAGE = `usage:
  resonance clients create --org NAME [--scopes hqe.read,hqe.write] [--data DIR] [--json]
  resonance clients list --org NAME [--data DIR] [--json]
  resonance clients revoke ID [--data DIR]`;

const OPTIONS = {
  org: { type: 'string' },
  scopes: { type: 'string' },
  data: { type: 'string' },
  json: { type: 'boolean' },
} as const;

interface Parsed {
  action: string | undefined;
  positionals: string[];
  org: string | undefined;
  scopes: string | undefined;
  data: string | undefined;
  json: boolean;
}

/** ACTION [ID] and the flags; --help throws HelpRequested with `usage`. */
function parse(name: 'keys' | 'clients', usage: string, args: string[]): Parsed {
  const { values, positionals } = parseCommand({ name, usage, positionals: 2 }, args, OPTIONS);
  const [action, ...rest] = positionals;
  return { action, positionals: rest, org: values.org, scopes: values.scopes, data: values.data, json: values.json ?? false };
}

/** "hqe.read,hqe.write" (commas or spaces); both scopes when the flag is absent, as the issue asks. */
export function parseScopeList(value: string | undefined): Scope[] {
  if (value === undefined) return [...ALL_SCOPES];
  const names = value.split(/[\s,]+/).filter(Boolean);
  if (names.length === 0) throw new UsageError(`--scopes needs at least one of ${ALL_SCOPES.join(', ')}`);
  for (const name of names) {
    if (!(ALL_SCOPES as string[]).includes(name)) throw new UsageError(`unknown scope "${name}" (known: ${ALL_SCOPES.join(', ')})`);
  }
  return [...new Set(names as Scope[])];
}

const requireOrg = (p: Parsed): string => {
  if (!p.org?.trim()) throw new UsageError('--org NAME is required');
  return p.org.trim();
};

/** --data, else RESONANCE_DATA, else ./data: the same directory `resonance serve` uses. */
const dataDir = (p: Parsed): string => p.data ?? (process.env.RESONANCE_DATA || './data');

/**
 * Announces a revocation to the cluster's nodes when RESONANCE_REDIS_URL is set (they act on it at once);
 * without Redis, or when it cannot be reached, every node refuses the credential within its credential
 * cache's time (RESONANCE_AUTH_CACHE_MS) anyway.
 */
async function announce(credential: CredentialRef): Promise<void> {
  if (!process.env.RESONANCE_REDIS_URL) return;
  let broker: RedisBroker | null = null;
  try {
    const config = configFromEnv();
    if (!config.redisUrl) return;
    broker = await RedisBroker.open({ url: config.redisUrl, nodeId: `cli:${hostname()}:${process.pid}`, prefix: config.redisPrefix });
    await announceRevocation(broker, credential);
  } catch (err) {
    process.stderr.write(`resonance: revoked, but not announced to the cluster (${(err as Error).message}); nodes refuse it within their credential cache time\n`);
  } finally {
    await broker?.close();
  }
}

async function withStore<T>(p: Parsed, fn: (store: AuthStore) => Promise<T>): Promise<T> {
  const store = await openCliStore(dataDir(p));
  try {
    return await fn(store.auth);
  } finally {
    await store.close();
  }
}

const out = (text: string): void => void process.stdout.write(text + '\n');
const iso = (ms: number | null): string => (ms === null ? '-' : new Date(ms).toISOString());

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}

const keyView = (k: ApiKeyRecord) => ({
  id: k.id,
  org: k.orgName,
  prefix: k.prefix,
  scopes: k.scopes,
  createdAt: iso(k.createdAt),
  revokedAt: k.revokedAt === null ? null : iso(k.revokedAt),
});

const clientView = (c: OAuthClientRecord) => ({
  client_id: c.id,
  org: c.orgName,
  scopes: c.scopes,
  createdAt: iso(c.createdAt),
  revokedAt: c.revokedAt === null ? null : iso(c.revokedAt),
});

const status = (revokedAt: number | null): string => (revokedAt === null ? 'active' : `revoked ${iso(revokedAt)}`);

async function runKeys(p: Parsed): Promise<number> {
  switch (p.action) {
    case 'create': {
      const org = requireOrg(p);
      const scopes = parseScopeList(p.scopes);
      const { record, key } = await withStore(p, (s) => s.createApiKey(org, scopes));
      if (p.json) out(JSON.stringify({ ...keyView(record), key }));
      else out(table([['key', key], ['id', record.id], ['org', record.orgName], ['scopes', record.scopes.join(' ')]]));
      process.stderr.write('store the key now: it is not shown again (only its hash is kept)\n');
      return 0;
    }
    case 'list': {
      const org = requireOrg(p);
      const keys = await withStore(p, (s) => s.listApiKeys(org));
      if (p.json) out(JSON.stringify(keys.map(keyView)));
      else if (keys.length === 0) out(`no keys for org "${org}"`);
      else {
        const rows = keys.map((k) => [k.id, `${k.prefix}...`, k.scopes.join(' '), iso(k.createdAt), status(k.revokedAt)]);
        out(table([['ID', 'KEY', 'SCOPES', 'CREATED', 'STATUS'], ...rows]));
      }
      return 0;
    }
    case 'revoke': {
      const id = p.positionals[0];
      if (!id) throw new UsageError('keys revoke needs the key ID (see `resonance keys list`)');
      const found = await withStore(p, (s) => s.revokeApiKey(id));
      if (!found) {
        process.stderr.write(`resonance: no key with id ${id}\n`);
        return 1;
      }
      await announce({ kind: 'api_key', id });
      out(`revoked ${id}`);
      return 0;
    }
    default:
      throw unknownAction('keys', p.action, ['create', 'list', 'revoke'], KEYS_USAGE);
  }
}

async function runClients(p: Parsed): Promise<number> {
  switch (p.action) {
    case 'create': {
      const org = requireOrg(p);
      const scopes = parseScopeList(p.scopes);
      const { record, secret } = await withStore(p, (s) => s.createClient(org, scopes));
      if (p.json) out(JSON.stringify({ ...clientView(record), client_secret: secret }));
      else out(table([['client_id', record.id], ['client_secret', secret], ['org', record.orgName], ['scopes', record.scopes.join(' ')]]));
      process.stderr.write('store the client secret now: it is not shown again (only its hash is kept)\n');
      return 0;
    }
    case 'list': {
      const org = requireOrg(p);
      const clients = await withStore(p, (s) => s.listClients(org));
      if (p.json) out(JSON.stringify(clients.map(clientView)));
      else if (clients.length === 0) out(`no clients for org "${org}"`);
      else out(table([['CLIENT_ID', 'SCOPES', 'CREATED', 'STATUS'], ...clients.map((c) => [c.id, c.scopes.join(' '), iso(c.createdAt), status(c.revokedAt)])]));
      return 0;
    }
    case 'revoke': {
      const id = p.positionals[0];
      if (!id) throw new UsageError('clients revoke needs the client ID (see `resonance clients list`)');
      const found = await withStore(p, (s) => s.revokeClient(id));
      if (!found) {
        process.stderr.write(`resonance: no client with id ${id}\n`);
        return 1;
      }
      await announce({ kind: 'oauth_client', id });
      out(`revoked ${id}`);
      return 0;
    }
    default:
      throw unknownAction('clients', p.action, ['create', 'list', 'revoke'], CLIENTS_USAGE);
  }
}

/** Exit codes as the rest of the CLI: 0 ok, 1 failure (unknown id), 2 usage error. */
export async function keysCommand(args: string[]): Promise<number> {
  try {
    return await runKeys(parse('keys', KEYS_USAGE, args));
  } catch (err) {
    return exitCodeFor(err);
  }
}

export async function clientsCommand(args: string[]): Promise<number> {
  try {
    return await runClients(parse('clients', CLIENTS_USAGE, args));
  } catch (err) {
    return exitCodeFor(err);
  }
}
