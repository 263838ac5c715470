import { randomBytes } from 'node:crypto';
import { defineConfig } from 'vitest/config';

// Names this run's test databases (test/helpers/stores.ts), so that runs side by side keep to their own.
process.env.RESONANCE_TEST_RUN ??= randomBytes(4).toString('hex');

/**
 * Suites that touch the store, run a second time on Postgres (RESONANCE_TEST_STORE=postgres): the store
 * contract itself and the server suites whose behaviour rests on it.
 */
const POSTGRES_SUITES = [
  'test/store/**/*.test.ts',
  'test/api.test.ts',
  'test/spaces-api.test.ts',
  'test/realtime.test.ts',
  'test/restart.test.ts',
  'test/space-restart.test.ts',
];

export default defineConfig({
  test: {
    // Dawn holds native handles; separate processes keep each file's device isolated and let it exit.
    pool: 'forks',
    testTimeout: 300_000,
    hookTimeout: 60_000,
    projects: [
      { extends: true, test: { name: 'sqlite', include: ['test/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'postgres',
          include: POSTGRES_SUITES,
          env: { RESONANCE_TEST_STORE: 'postgres' },
          globalSetup: ['test/helpers/pg-teardown.ts'],
        },
      },
    ],
  },
});
