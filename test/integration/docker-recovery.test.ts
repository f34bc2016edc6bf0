/**
 * A SIGKILLed agent and its containers: the agent runs as a child process (`agora agent
 * --containerizers process,docker`) so the test can kill -9 it; the master and the scheduler are
 * real. Containers are not restarted: a restarted agent re-attaches, or reports how they ended.
 */
import type { ChildProcess } from 'node:child_process';
import Docker from 'dockerode';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectDocker } from '../../agent/containerizers/docker.ts';
import { Label } from '../../agent/containerizers/docker-spec.ts';
import type { MasterServer } from '../../master/http/server.ts';
import type { TaskInfo } from '../../master/protocol/messages.ts';
import { TEST_IMAGE } from '../docker-image.ts';
import { removeDir, startAgentProcess, startMaster, tempDir, TestScheduler, waitFor } from './helpers.ts';

const engine = inject('docker');

describe.skipIf(!engine.available)('a Docker agent killed with SIGKILL and restarted', () => {
  let docker: Docker;
  const cleanups: Array<() => unknown> = [];
  const workDirs: string[] = [];

  beforeAll(async () => {
    docker = (await connectDocker()).docker;
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    for (const workDir of workDirs) {
      const left = await docker.listContainers({ all: true, filters: { label: [`${Label.workDir}=${workDir}`] } });
      await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
      removeDir(workDir);
    }
  });

  async function agentProcess(master: MasterServer, workDir: string): Promise<ChildProcess> {
    const child = startAgentProcess(master.wsUrl, workDir, ['--containerizers', 'process,docker', '--docker-retention', '600']);
    cleanups.push(() => child.kill('SIGKILL'));
    await waitFor(() => master.master.state().agents.some((a) => a.status === 'ACTIVE'), 'the agent process to register', 20_000);
    return child;
  }

  async function setUp() {
    const master = await startMaster({ agentReregisterTimeoutMs: 500 });
    cleanups.push(() => master.close());
    const workDir = tempDir('agora-docker-agent-');
    workDirs.push(workDir);
    const first = await agentProcess(master, workDir);
    const s = new TestScheduler(master, { name: 'docker-recovery', capabilities: ['PARTITION_AWARE'], failoverTimeoutMs: 60_000 });
    cleanups.push(() => s.driver.stop({ teardown: true }));
    await s.start();
    return { master, workDir, first, s };
  }

  function dockerTask(taskId: string, command: string): TaskInfo {
    return { taskId, resources: { cpus: 0.1, mem: 32 }, command: { value: command }, container: { type: 'DOCKER', docker: { image: TEST_IMAGE } } };
  }

  async function containerOf(workDir: string, taskId: string): Promise<Docker.ContainerInspectInfo> {
    const info = await waitFor(async () => (await docker.listContainers({ all: true, filters: { label: [`${Label.taskId}=${taskId}`, `${Label.workDir}=${workDir}`] } }))[0], `the container of ${taskId}`);
    return docker.getContainer(info.Id).inspect();
  }

  it('re-attaches to a container that kept running: same container, RUNNING again, nothing restarted', async () => {
    const { master, workDir, first, s } = await setUp();
    s.launchOnNextOffer(dockerTask('long', 'echo started; exec sleep 60'));
    await s.waitForUpdate('long', 'RUNNING');
    const before = await containerOf(workDir, 'long');

    first.kill('SIGKILL');
    await s.waitForUpdate('long', 'UNREACHABLE', 15_000);
    s.updates.length = 0;
    await agentProcess(master, workDir);
    const back = await s.waitForUpdate('long', 'RUNNING', 20_000);
    expect(back.reason).toBe('AGENT_REREGISTERED');

    const after = await containerOf(workDir, 'long');
    expect(after.Id).toBe(before.Id);
    expect(after.State.Running).toBe(true);
    expect(after.State.StartedAt).toBe(before.State.StartedAt);
    expect(after.RestartCount).toBe(0);
    const all = await docker.listContainers({ all: true, filters: { label: [`${Label.workDir}=${workDir}`] } });
    expect(all).toHaveLength(1);

    // Still under control: a kill reaches the re-attached container.
    s.driver.kill('long');
    const killed = await s.waitForUpdate('long', 'KILLED', 15_000);
    expect(killed.message).toMatch(/SIGTERM/);
  });

  it('reports a container that ended while the agent was down with its real exit code, and removes unknown ones', async () => {
    const { master, workDir, first, s } = await setUp();
    s.launchOnNextOffer(dockerTask('short', 'sleep 2; exit 7'));
    await s.waitForUpdate('short', 'RUNNING');
    const container = await containerOf(workDir, 'short');
    first.kill('SIGKILL');
    await waitFor(async () => !(await docker.getContainer(container.Id).inspect()).State.Running, 'the container to exit while the agent is down', 15_000);

    // A container of this agent that no checkpoint knows (as if the agent died right after creating it).
    const orphan = await docker.createContainer({ Image: TEST_IMAGE, Cmd: ['sleep', '60'], Labels: { [Label.workDir]: workDir, [Label.taskId]: 'orphan' } });
    await orphan.start();

    await agentProcess(master, workDir);
    const failed = await s.waitForUpdate('short', 'FAILED', 20_000);
    expect(failed.exitCode).toBe(7);
    expect(failed.message).toBe('exited with code 7');
    expect(s.updates.filter((u) => u.taskId === 'short' && u.state === 'RUNNING').every((u) => u.reason === 'AGENT_REREGISTERED' || u.source === 'EXECUTOR')).toBe(true);
    await waitFor(async () => !(await docker.listContainers({ all: true })).some((c) => c.Id === orphan.id), 'the orphan container to be removed', 15_000);
    // The task's own container stays for its retention period (600 s here).
    expect((await docker.getContainer(container.Id).inspect()).State.ExitCode).toBe(7);
  });
});
