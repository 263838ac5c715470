import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Dawn holds native handles; separate processes keep each file's device isolated and let it exit.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 60_000,
  },
});
