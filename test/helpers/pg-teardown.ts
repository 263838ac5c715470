/** Global setup of the `postgres` test project: drops every test database once the run is over. */
import pg from 'pg';
import { PG_SERVER, TEST_DB_PREFIX } from './stores.js';

async function dropTestDatabases(): Promise<void> {
  const admin = new pg.Client({ connectionString: `${PG_SERVER}/postgres` });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ datname: string }>('SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [TEST_DB_PREFIX]);
    for (const { datname } of rows) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

export function setup(): () => Promise<void> {
  return dropTestDatabases;
}
