/**
 * Which store a test run uses, and a fresh one of it. The vitest project `postgres` (vitest.config.ts) sets
 * RESONANCE_TEST_STORE=postgres: the store suites, and the server suites that touch the store, then run
 * against the machine's Postgres (RESONANCE_TEST_PG, default postgres://postgres@127.0.0.1:5432), each
 * store or data directory in a database of its own, created here and dropped by the project's teardown.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { openStore, type Store, type StoreKind, type StoreOptions } from '../../src/store/store.js';

export const TEST_STORE: StoreKind = process.env.RESONANCE_TEST_STORE === 'postgres' ? 'postgres' : 'sqlite';
export const PG_SERVER = process.env.RESONANCE_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432';
/**
 * Every database this run makes starts with it; the project's teardown drops them. The run id comes from
 * vitest.config.ts, so that runs side by side never drop each other's databases.
 */
export const TEST_DB_PREFIX = `resonance_t_${process.env.RESONANCE_TEST_RUN ?? 'adhoc'}_`;

/** The database a data directory stands for in Postgres runs: the same name on every restart. */
export function databaseUrlFor(dataDir: string): string {
  return `${PG_SERVER}/${TEST_DB_PREFIX}${createHash('sha256').update(dataDir).digest('hex').slice(0, 24)}`;
}

/** Creates the database of `url` unless it exists. */
export async function ensureDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const admin = new pg.Client({ connectionString: `${PG_SERVER}/postgres` });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) await admin.query(`CREATE DATABASE "${name}"`);
  } catch (err) {
    // Two starts racing for the same database: the other one made it.
    if ((err as { code?: string }).code !== '42P04') throw err;
  } finally {
    await admin.end();
  }
}

/** Drops the database of `url`, closing any connection still on it. */
export async function dropDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const admin = new pg.Client({ connectionString: `${PG_SERVER}/postgres` });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

/** The environment a server or CLI process needs to use the test store of `dataDir`. */
export async function storeEnv(dataDir: string): Promise<Record<string, string>> {
  if (TEST_STORE === 'sqlite') return {};
  const url = databaseUrlFor(dataDir);
  await ensureDatabase(url);
  return { RESONANCE_DATABASE_URL: url };
}

export interface TestStore {
  store: Store;
  /** Closes the store and opens the same data again (a restart). */
  reopen(): Promise<Store>;
  /** Closes the store and removes its data. */
  destroy(): Promise<void>;
  /**
   * Another store on the same data, as a second node (Postgres) or process (SQLite) has it; the caller
   * closes it before destroy().
   */
  openSecondHandle(): Promise<Store>;
}

/** A fresh, empty store of the run's kind. */
export async function openTestStore(options: Omit<StoreOptions, 'dataDir' | 'databaseUrl'> = {}): Promise<TestStore> {
  const dataDir = await mkdtemp(join(tmpdir(), 'resonance-store-'));
  const databaseUrl = TEST_STORE === 'postgres' ? `${PG_SERVER}/${TEST_DB_PREFIX}${randomBytes(8).toString('hex')}` : undefined;
  if (databaseUrl) await ensureDatabase(databaseUrl);
  const open = () => openStore({ ...options, dataDir, databaseUrl });
  let store = await open();
  return {
    get store() {
      return store;
    },
    reopen: async () => {
      await store.close();
      store = await open();
      return store;
    },
    destroy: async () => {
      await store.close();
      if (databaseUrl) await dropDatabase(databaseUrl);
      await rm(dataDir, { recursive: true, force: true });
    },
    openSecondHandle: open,
  };
}

/** The store a test server on `dataDir` uses (startServer), opened beside it: for reading what it wrote. */
export function openStoreOf(dataDir: string): Promise<Store> {
  return openStore({ dataDir, databaseUrl: TEST_STORE === 'postgres' ? databaseUrlFor(dataDir) : undefined });
}

/**
 * One fresh store for the whole test file (a fresh Postgres database costs about a second), opened before
 * its first test and destroyed after its last: tests keep to ids of their own.
 */
export function storePerFile(): { readonly store: Store; reopen(): Promise<Store> } {
  let t: TestStore | null = null;
  beforeAll(async () => {
    t = await openTestStore();
  });
  afterAll(async () => {
    await t?.destroy();
  });
  const opened = (): TestStore => {
    if (!t) throw new Error('the file store is opened in beforeAll');
    return t;
  };
  return {
    get store(): Store {
      return opened().store;
    },
    reopen: () => opened().reopen(),
  };
}
