/**
 * Batch jobs in Docker containers through the real engine: an indexed array whose tasks see
 * AGORA_TASK_INDEX inside the container, a failing container retried then failed with its exit
 * code, and a container past its timeout killed.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { TEST_IMAGE } from '../docker-image.ts';
import { BatchCluster } from './batch-cluster.ts';
import type { DockerAgent } from './framework-cluster.ts';

const engine = inject('docker');

describe.skipIf(!engine.available)('batch jobs in Docker containers', () => {
  let cluster: BatchCluster;
  let agent: DockerAgent;

  beforeAll(async () => {
    cluster = await BatchCluster.start();
    agent = await cluster.addDockerAgent({ cpus: 4, mem: 4096, disk: 1000 });
    await cluster.startFramework();
  });

  afterAll(async () => {
    await cluster?.close();
  });

  const container = { type: 'DOCKER' as const, docker: { image: TEST_IMAGE } };

  it('runs an array in containers, each task seeing its index, and its output is in the task log', async () => {
    const run = await cluster.run({ id: 'docker-array', cmd: 'echo "task $AGORA_TASK_INDEX of $AGORA_TASK_COUNT in $(hostname)"', container, cpus: 0.2, mem: 32, array: '0-3%2' });
    const ended = await cluster.ended(run.id, 60_000);
    expect(ended.state).toBe('succeeded');
    expect(ended.counts.succeeded).toBe(4);
    for (const index of [0, 3]) {
      const log = await cluster.api.taskLog(run.id, index);
      expect(log.data.toString()).toMatch(new RegExp(`^task ${index} of 4 in `));
      expect(log.ended).toBe(true);
    }
  }, 90_000);

  it('retries a failing container and fails the run with its exit code', async () => {
    const run = await cluster.run({ id: 'docker-fail', cmd: 'exit 42', container, cpus: 0.2, mem: 32, retries: { count: 1, backoffSeconds: 0 } });
    const ended = await cluster.ended(run.id, 60_000);
    expect(ended.state).toBe('failed');
    expect(ended.taskList[0]!.attempts.map((a) => a.exitCode)).toEqual([42, 42]);
    expect(ended.reason).toContain('exited with 42 after 2 attempt(s)');
  }, 90_000);

  it('kills a container past its timeout', async () => {
    const run = await cluster.run({ id: 'docker-slow', cmd: 'sleep 60', container, cpus: 0.2, mem: 32, timeoutSeconds: 2, killGracePeriodSeconds: 0.5 });
    const ended = await cluster.ended(run.id, 60_000);
    expect(ended.state).toBe('timed_out');
    const running = await agent.runningContainers();
    expect(running).toHaveLength(0);
  }, 90_000);
});
