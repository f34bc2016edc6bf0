import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Checks the Docker engine and builds the test image once for the docker-*.test.ts files.
    globalSetup: ['test/integration/docker-global-setup.ts'],
    // Integration tests start real masters, agents and processes on loopback ports; they need time.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: running many integration files at once only makes them fight over the CPU.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
