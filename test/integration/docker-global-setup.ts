/**
 * Vitest global setup for the Docker suite (test/integration/docker-*.test.ts): decides once
 * whether a Docker engine answers, builds the test image, and tells the test files through
 * `inject('docker')`. Without an engine the suite is skipped with one line saying why — unless
 * CI=true, where a missing engine fails the run (CI must test Docker, never skip it silently).
 */
import type { TestProject } from 'vitest/node';
import { connectDocker } from '../../agent/containerizers/docker.ts';
import { ensureTestImage } from '../docker-image.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** `{available: true}` or why the Docker suite cannot run. */
    docker: { available: true } | { available: false; reason: string };
  }
}

export default async function setup(project: TestProject): Promise<void> {
  let reason: string | undefined;
  try {
    const { docker } = await connectDocker(undefined, 5000);
    await ensureTestImage(docker);
  } catch (error) {
    reason = (error as Error).message;
  }
  if (reason === undefined) {
    project.provide('docker', { available: true });
    return;
  }
  if (process.env.CI === 'true') throw new Error(`CI=true but the Docker suite cannot run: ${reason}`);
  process.stderr.write(`\n*** SKIPPING the Docker suite (test/integration/docker-*.test.ts): ${reason} ***\n\n`);
  project.provide('docker', { available: false, reason });
}
