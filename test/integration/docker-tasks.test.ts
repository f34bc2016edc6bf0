/**
 * The Docker containerizer against the real engine: a real master, a real agent running the
 * process+docker composite, and a scheduler on the SDK. Loopback only: a bridge-mode container is
 * reached through its mapped port on 127.0.0.1, never through its bridge IP.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Agent } from '../../agent/agent.ts';
import { CompositeContainerizer } from '../../agent/containerizers/composite.ts';
import { connectDocker, DockerContainerizer } from '../../agent/containerizers/docker.ts';
import { Label } from '../../agent/containerizers/docker-spec.ts';
import { ProcessContainerizer } from '../../agent/containerizers/process.ts';
import type { MasterServer } from '../../master/http/server.ts';
import type { ContainerInfo, TaskInfo } from '../../master/protocol/messages.ts';
import { TEST_IMAGE } from '../docker-image.ts';
import { removeDir, startAgent, startMaster, tempDir, TestScheduler, waitFor } from './helpers.ts';

const engine = inject('docker');

describe.skipIf(!engine.available)('Docker tasks through a real master and agent', () => {
  let master: MasterServer;
  let agent: Agent;
  let scheduler: TestScheduler;
  let frameworkId: string;
  let docker: Docker;
  let dockerContainerizer: DockerContainerizer;
  const workDir = tempDir('agora-docker-agent-');
  const allowed = tempDir('agora-docker-allowed-');

  beforeAll(async () => {
    master = await startMaster();
    const connected = await connectDocker();
    docker = connected.docker;
    dockerContainerizer = new DockerContainerizer({ ...connected, workDir, allowedVolumes: [allowed], retentionMs: 1500 });
    agent = await startAgent(master, {
      workDir,
      containerizer: new CompositeContainerizer({ process: new ProcessContainerizer({ cgroups: false }), docker: dockerContainerizer }),
      resources: { cpus: 4, mem: 4096, disk: 10000, ports: [[31000, 31100]] },
    });
    scheduler = new TestScheduler(master, { name: 'docker-tests' });
    frameworkId = await scheduler.start();
  });

  afterAll(async () => {
    await scheduler?.driver.stop({ teardown: true });
    await agent?.stop({ killTasks: true });
    dockerContainerizer?.close();
    await master?.close();
    const left = await docker.listContainers({ all: true, filters: { label: [`${Label.workDir}=${workDir}`] } });
    await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
    removeDir(workDir);
    removeDir(allowed);
  });

  let seq = 0;
  function dockerTask(command: string, extra: Partial<TaskInfo> = {}, docker: Partial<ContainerInfo['docker']> = {}, volumes?: ContainerInfo['volumes']): TaskInfo {
    return {
      taskId: `d${++seq}`,
      resources: { cpus: 0.5, mem: 64 },
      command: { value: command },
      container: { type: 'DOCKER', docker: { image: TEST_IMAGE, ...docker }, ...(volumes ? { volumes } : {}) },
      ...extra,
    };
  }

  /** Launches one task and returns its id. */
  function launch(task: TaskInfo): string {
    scheduler.launchOnNextOffer(task);
    return task.taskId;
  }

  async function containerOf(taskId: string): Promise<Docker.ContainerInfo> {
    return waitFor(async () => {
      const list = await docker.listContainers({ all: true, filters: { label: [`${Label.taskId}=${taskId}`, `${Label.workDir}=${workDir}`] } });
      return list[0];
    }, `the container of ${taskId}`);
  }

  function sandboxFile(taskId: string, name: 'stdout' | 'stderr'): string {
    const file = path.join(workDir, 'sandboxes', frameworkId, taskId, name);
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  it('runs a shell command in a container and finishes with its output in the sandbox', async () => {
    const id = launch(dockerTask('echo "out $AGORA_TASK_ID"; echo err >&2; cat /proc/1/comm >&2'));
    const running = await scheduler.waitForUpdate(id, 'RUNNING');
    expect(running.message).toMatch(/^container [0-9a-f]{12}$/);
    const done = await scheduler.waitForUpdate(id, 'FINISHED');
    expect(done.exitCode).toBe(0);
    expect(sandboxFile(id, 'stdout')).toBe(`out ${id}\n`);
    expect(sandboxFile(id, 'stderr')).toBe('err\ndocker-init\n');
    // Ended containers go after the retention period (1.5 s here).
    const { Id } = await containerOf(id);
    await waitFor(async () => !(await docker.listContainers({ all: true })).some((c) => c.Id === Id), 'the ended container to be removed', 10_000);
  });

  it('runs a program without a shell with its arguments, with PORT0 and the labels set', async () => {
    const id = launch(dockerTask('env', { command: { value: 'env', shell: false }, resources: { cpus: 0.1, mem: 32, ports: [[31010, 31011]] }, labels: { team: 'infra' } }));
    await scheduler.waitForUpdate(id, 'FINISHED');
    const env = sandboxFile(id, 'stdout');
    expect(env).toContain('PORT0=31010\n');
    expect(env).toContain('PORT1=31011\n');
    expect(env).toContain(`AGORA_FRAMEWORK_ID=${frameworkId}\n`);
    const info = await containerOf(id);
    expect(info.Labels).toMatchObject({ team: 'infra', [Label.frameworkId]: frameworkId, [Label.taskId]: id, [Label.agentId]: agent.agentId });

    const echo = launch(dockerTask('echo', { command: { value: 'echo', shell: false, arguments: ['a b', 'c'] } }));
    await scheduler.waitForUpdate(echo, 'FINISHED');
    expect(sandboxFile(echo, 'stdout')).toBe('a b c\n');
  });

  it('enforces cpu, memory and pids limits and hardens the container', async () => {
    const id = launch(dockerTask('sleep 60', { resources: { cpus: 0.5, mem: 48 } }));
    await scheduler.waitForUpdate(id, 'RUNNING');
    const inspect = await docker.getContainer((await containerOf(id)).Id).inspect();
    const host = inspect.HostConfig;
    expect(host.NanoCpus).toBe(500_000_000);
    expect(host.Memory).toBe(48 * 1024 * 1024);
    expect(host.MemorySwap).toBe(48 * 1024 * 1024);
    expect(host.PidsLimit).toBe(1024);
    expect(host.Privileged).toBe(false);
    expect(host.CapDrop).toEqual(['ALL']);
    expect(host.CapAdd).toEqual(expect.arrayContaining(['CHOWN', 'KILL', 'NET_BIND_SERVICE']));
    expect(host.SecurityOpt).toContain('no-new-privileges');
    expect(host.NetworkMode).toBe('host');

    // A command that exits on SIGTERM ends KILLED at once, not after the grace period.
    const started = Date.now();
    scheduler.driver.kill(id, { gracePeriodMs: 20_000 });
    const killed = await scheduler.waitForUpdate(id, 'KILLED');
    expect(killed.message).toMatch(/SIGTERM/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('reports a container the kernel OOM-killed as FAILED with CONTAINER_LIMITATION_MEMORY', async () => {
    // 200 MB of 'a' in a shell variable, with a 32 MB limit and no swap.
    const id = launch(dockerTask('x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo survived', { resources: { cpus: 1, mem: 32 } }));
    const failed = await scheduler.waitForUpdate(id, 'FAILED', 30_000);
    expect(failed.reason).toBe('CONTAINER_LIMITATION_MEMORY');
    expect(failed.exitCode).toBe(137);
    expect(sandboxFile(id, 'stdout')).not.toContain('survived');
  });

  it('maps a bridge container port to one of the task\'s ports on 127.0.0.1', async () => {
    const id = launch(dockerTask('echo hello-from-httpd > index.html; exec httpd -f -p 80 -h "$AGORA_SANDBOX"', { resources: { cpus: 0.2, mem: 32, ports: [[31050, 31050]] } }, { network: 'BRIDGE', portMappings: [{ containerPort: 80 }] }));
    await scheduler.waitForUpdate(id, 'RUNNING');
    const body = await waitFor(async () => {
      try {
        const res = await fetch('http://127.0.0.1:31050/index.html');
        return res.ok ? await res.text() : undefined;
      } catch {
        return undefined;
      }
    }, 'httpd to answer on 127.0.0.1:31050');
    expect(body).toBe('hello-from-httpd\n');
    const inspect = await docker.getContainer((await containerOf(id)).Id).inspect();
    expect(inspect.HostConfig.PortBindings).toEqual({ '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '31050' }] });
    scheduler.driver.kill(id);
    await scheduler.waitForUpdate(id, 'KILLED');
  });

  it('refuses a host port that is not the task\'s', async () => {
    const id = launch(dockerTask('true', { resources: { cpus: 0.1, mem: 32, ports: [[31060, 31060]] } }, { network: 'BRIDGE', portMappings: [{ containerPort: 80, hostPort: 31061 }] }));
    const failed = await scheduler.waitForUpdate(id, 'FAILED');
    expect(failed.message).toMatch(/host port 31061 is not in the task's ports resource \(31060\)/);
  });

  it('SIGKILLs a container that ignores SIGTERM once the grace period is over', async () => {
    const id = launch(dockerTask('trap "" TERM; sleep 60', { killPolicy: { gracePeriodMs: 1000 } }));
    await scheduler.waitForUpdate(id, 'RUNNING');
    await containerOf(id);
    const started = Date.now();
    scheduler.driver.kill(id);
    const killed = await scheduler.waitForUpdate(id, 'KILLED', 15_000);
    expect(killed.message).toMatch(/SIGKILL after the grace period/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('fails a task whose image cannot be pulled with CONTAINER_IMAGE_PULL_FAILED and the engine\'s message', async () => {
    const id = launch(dockerTask('true', {}, { image: 'agora-test/no-such-image:missing' }));
    const failed = await scheduler.waitForUpdate(id, 'FAILED', 60_000);
    expect(failed.reason).toBe('CONTAINER_IMAGE_PULL_FAILED');
    expect(failed.message).toMatch(/^cannot pull image agora-test\/no-such-image:missing: .{10,}/);
    expect(scheduler.updates.some((u) => u.taskId === id && u.state === 'STARTING' && /pulling image agora-test\/no-such-image:missing/.test(u.message ?? ''))).toBe(true);
  }, 90_000);

  it('launches tasks of one image together, and fails each task of a missing image', async () => {
    const present = [1, 2, 3].map(() => dockerTask('sleep 30', { resources: { cpus: 0.1, mem: 32 } }));
    const missing = [1, 2].map(() => dockerTask('true', { resources: { cpus: 0.1, mem: 32 } }, { image: 'agora-test/no-such-image:together' }));
    scheduler.launchOnNextOffer([...present, ...missing]);
    for (const task of present) await scheduler.waitForUpdate(task.taskId, 'RUNNING', 30_000);
    for (const task of missing) {
      const failed = await scheduler.waitForUpdate(task.taskId, 'FAILED', 60_000);
      expect(failed.reason).toBe('CONTAINER_IMAGE_PULL_FAILED');
      expect(failed.message).toMatch(/^cannot pull image agora-test\/no-such-image:together: /);
    }
    // The image check is not cached past its answer: a task launched after the image exists runs.
    await docker.getImage(TEST_IMAGE).tag({ repo: 'agora-test/no-such-image', tag: 'together' });
    try {
      const later = dockerTask('true', { resources: { cpus: 0.1, mem: 32 } }, { image: 'agora-test/no-such-image:together' });
      launch(later);
      await scheduler.waitForUpdate(later.taskId, 'FINISHED', 30_000);
    } finally {
      for (const task of present) scheduler.driver.kill(task.taskId);
      await docker.getImage('agora-test/no-such-image:together').remove({ noprune: true }).catch(() => {});
    }
    for (const task of present) await scheduler.waitForUpdate(task.taskId, 'KILLED', 30_000);
  }, 120_000);

  it('mounts volumes only from the allow-list, and never the Docker socket', async () => {
    const data = path.join(allowed, 'data');
    mkdirSync(data);
    const ok = launch(dockerTask('echo written > /data/file', {}, {}, [{ hostPath: data, containerPath: '/data', mode: 'RW' }]));
    await scheduler.waitForUpdate(ok, 'FINISHED');
    expect(readFileSync(path.join(data, 'file'), 'utf8')).toBe('written\n');

    const outside = launch(dockerTask('true', {}, {}, [{ hostPath: '/etc', containerPath: '/host-etc' }]));
    expect((await scheduler.waitForUpdate(outside, 'FAILED')).message).toMatch(/volume \/etc is not under a path this agent allows for volumes: /);

    for (const hostPath of ['/var/run/docker.sock', '/run', '/']) {
      const socket = launch(dockerTask('true', {}, {}, [{ hostPath, containerPath: '/sock' }]));
      expect((await scheduler.waitForUpdate(socket, 'FAILED')).message).toMatch(/is or contains the Docker socket .*; tasks can never mount it/);
    }
  });

  it('runs COMMAND checks inside the container with docker exec (driven directly)', async () => {
    const sandbox = tempDir('agora-docker-sandbox-');
    const statuses: string[] = [];
    const container = dockerContainerizer.launch({ frameworkId: 'direct', sandbox, task: dockerTask('echo ready > /mnt/agora/sandbox/ready; exec sleep 60') }, (status) => statuses.push(status.state));
    await waitFor(() => statuses.includes('RUNNING'), 'RUNNING');
    expect(await container.runCheckCommand!('test "$AGORA_FRAMEWORK_ID" = direct && grep -q ready /mnt/agora/sandbox/ready', 5000)).toBe(0);
    expect(await container.runCheckCommand!('exit 3', 5000)).toBe(3);
    await expect(container.runCheckCommand!('sleep 5', 300)).rejects.toThrow(/did not finish within 300 ms/);
    container.kill(0);
    await waitFor(() => statuses.includes('KILLED'), 'KILLED');
    await expect(container.runCheckCommand!('true', 1000)).rejects.toThrow(/not running/);
    removeDir(sandbox);
  });

  it('runs a read-only root filesystem when asked', async () => {
    const id = launch(dockerTask('touch /ro-test', {}, { readOnlyRootFilesystem: true }));
    const failed = await scheduler.waitForUpdate(id, 'FAILED');
    expect(failed.exitCode).toBe(1);
    expect(sandboxFile(id, 'stderr')).toMatch(/Read-only file system/);
  });
});
