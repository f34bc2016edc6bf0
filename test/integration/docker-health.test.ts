/**
 * The agent's health checks against Docker containers: HTTP and TCP probes reach a bridge-mode
 * busybox httpd through its mapped port on 127.0.0.1; COMMAND checks run inside the container
 * (docker exec). A test makes a task sick by dropping a marker file into its sandbox.
 */
import { writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Agent } from '../../agent/agent.ts';
import { CompositeContainerizer } from '../../agent/containerizers/composite.ts';
import { connectDocker, DockerContainerizer } from '../../agent/containerizers/docker.ts';
import { Label } from '../../agent/containerizers/docker-spec.ts';
import type { MasterServer } from '../../master/http/server.ts';
import type { HealthCheck, TaskInfo } from '../../master/protocol/messages.ts';
import { TEST_IMAGE } from '../docker-image.ts';
import { removeDir, startAgent, startMaster, tempDir, TestScheduler, waitFor } from './helpers.ts';

const engine = inject('docker');

describe.skipIf(!engine.available)('health checks on Docker containers', () => {
  let master: MasterServer;
  let agent: Agent;
  let scheduler: TestScheduler;
  let frameworkId: string;
  let docker: Docker;
  let containerizer: DockerContainerizer;
  const workDir = tempDir('agora-docker-health-');

  beforeAll(async () => {
    master = await startMaster();
    const connected = await connectDocker();
    docker = connected.docker;
    containerizer = new DockerContainerizer({ ...connected, workDir, retentionMs: 60_000 });
    agent = await startAgent(master, { workDir, containerizer: new CompositeContainerizer({ docker: containerizer }), resources: { cpus: 4, mem: 4096, disk: 1000, ports: [[31200, 31210]] } });
    scheduler = new TestScheduler(master, { name: 'docker-health' });
    frameworkId = await scheduler.start();
  });

  afterAll(async () => {
    await scheduler?.driver.stop({ teardown: true });
    await agent?.stop({ killTasks: true });
    containerizer?.close();
    await master?.close();
    const left = await docker.listContainers({ all: true, filters: { label: [`${Label.workDir}=${workDir}`] } });
    await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
    removeDir(workDir);
  });

  const fast = { delaySeconds: 0, intervalSeconds: 0.2, timeoutSeconds: 1, gracePeriodSeconds: 0, consecutiveFailures: 3 };
  /** httpd on container port 80 (mapped to the task's one port) until `stop` appears in the sandbox. */
  const SERVE = 'echo ok > index.html; httpd -p 80 -h "$AGORA_SANDBOX"; while [ ! -f stop ]; do sleep 0.1; done; killall httpd; exec sleep 3600';

  function task(taskId: string, port: number, healthCheck: HealthCheck, command = SERVE): TaskInfo {
    return {
      taskId,
      resources: { cpus: 0.2, mem: 32, ports: [[port, port]] },
      command: { value: command },
      container: { type: 'DOCKER', docker: { image: TEST_IMAGE, network: 'BRIDGE', portMappings: [{ containerPort: 80 }] } },
      healthCheck,
      killPolicy: { gracePeriodMs: 500 },
    };
  }

  function sandboxFile(taskId: string, name: string): string {
    return path.join(workDir, 'sandboxes', frameworkId, taskId, name);
  }

  async function healthyThenKilled(taskId: string, sicken: () => void): Promise<void> {
    await waitFor(() => scheduler.updates.find((u) => u.taskId === taskId && u.state === 'RUNNING' && u.healthy === true), `${taskId} to be healthy (seen: ${scheduler.statesOf(taskId)})`, 15_000);
    sicken();
    await waitFor(() => scheduler.updates.find((u) => u.taskId === taskId && u.healthy === false), `${taskId} to be unhealthy`, 15_000);
    const killed = await scheduler.waitForUpdate(taskId, 'KILLED', 15_000);
    expect(killed.reason).toBe('TASK_HEALTH_CHECK_FAILED');
  }

  it('HTTP: healthy while httpd answers on the mapped port, then unhealthy and killed once it is gone', async () => {
    scheduler.launchOnNextOffer(task('http', 31201, { type: 'HTTP', http: { portIndex: 0, path: '/index.html' }, ...fast }));
    await healthyThenKilled('http', () => writeFileSync(sandboxFile('http', 'stop'), ''));
  });

  it('TCP: healthy while a host-network container listens on its port, then killed', async () => {
    // Host networking: with a bridge mapping, docker-proxy accepts on the host port even when
    // nothing listens in the container, so a TCP check there cannot see the server go.
    const tcp = task('tcp', 31202, { type: 'TCP', tcp: { portIndex: 0 }, ...fast }, SERVE.replace('-p 80', '-p 127.0.0.1:$PORT0'));
    tcp.container = { type: 'DOCKER', docker: { image: TEST_IMAGE } };
    scheduler.launchOnNextOffer(tcp);
    await healthyThenKilled('tcp', () => writeFileSync(sandboxFile('tcp', 'stop'), ''));
  });

  it('COMMAND: runs inside the container, healthy while it exits 0, then killed', async () => {
    const marker = 'healthy';
    scheduler.launchOnNextOffer(task('command', 31203, { type: 'COMMAND', command: { value: `test -f /mnt/agora/sandbox/${marker}` }, ...fast }, `touch ${marker}; exec sleep 3600`));
    await healthyThenKilled('command', () => rmSync(sandboxFile('command', marker)));
  });
});
